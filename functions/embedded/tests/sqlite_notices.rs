//! `SqliteNoticeStore` on a real SQLite file: the `NoticeStore` contract (compare-and-set,
//! one winner of concurrent first writes) and durability across a reopen.

use webhooks_core::notify::{Level, Notice, NoticeStore, conformance};
use webhooks_core::{Timestamp, WebhookId};
use webhooks_embedded::{Database, SqliteNoticeStore};

#[tokio::test]
async fn the_sqlite_notice_store_keeps_the_contract_and_survives_a_reopen() {
    // GIVEN a store on a real file
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteNoticeStore::new(Database::open(&path).unwrap());

    // WHEN the contract runs, and one more notice is written
    conformance::check(&store).await;
    let w = WebhookId::generate(1_800_000_000);
    let n = Notice {
        level: Level::Disabled,
        failing_since: Timestamp::from_unix(1_800_000_000),
    };
    assert!(store.replace_notice(&w, None, Some(&n)).await.unwrap());
    drop(store);

    // THEN it is there after a reopen
    let reopened = SqliteNoticeStore::new(Database::open(&path).unwrap());
    assert_eq!(reopened.notice(&w).await.unwrap(), Some(n));
}
