//! The embedded database's schema: the migration steps ([`MIGRATIONS`]) and how a file is brought
//! to the latest one ([`migrate`]), in one transaction when [`Database`](super::Database) opens it.
//! Every table's adapter documents its own tables; the steps here are their history.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// The schema, as steps: `MIGRATIONS[i]` takes a file from `PRAGMA user_version` `i` to `i + 1`.
///
/// Append only. A step that has shipped is never edited: existing files already ran it, and
/// opening a file runs only the steps it has not run yet.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: webhook subscriptions (`webhooks_core::webhook::Webhook`, one row each).
    "CREATE TABLE webhooks (
        id                     TEXT    NOT NULL PRIMARY KEY,
        owner_id               TEXT    NOT NULL,
        bucket_id              TEXT    NOT NULL,
        url                    TEXT    NOT NULL,
        -- JSON array of event names, e.g. [\"alert.triggered\",\"data.received\"]
        events                 TEXT    NOT NULL,
        description            TEXT,
        active                 INTEGER NOT NULL CHECK (active IN (0, 1)),
        max_retries            INTEGER NOT NULL,
        backoff_multiplier     REAL    NOT NULL,
        initial_delay_seconds  INTEGER NOT NULL,
        secret                 TEXT    NOT NULL,
        total_deliveries       INTEGER NOT NULL DEFAULT 0,
        successful_deliveries  INTEGER NOT NULL DEFAULT 0,
        failed_deliveries      INTEGER NOT NULL DEFAULT 0,
        -- unix seconds
        last_delivery_at       INTEGER,
        last_delivery_status   TEXT    CHECK (last_delivery_status IN ('success', 'failed')),
        created_at             INTEGER NOT NULL,
        updated_at             INTEGER NOT NULL
    ) STRICT;
    -- An owner's webhooks, newest first (ids are time-ordered ObjectIds).
    CREATE INDEX webhooks_by_owner ON webhooks (owner_id, id DESC);
    -- Fan-out: the subscribers of a bucket.
    CREATE INDEX webhooks_by_bucket ON webhooks (bucket_id);",
    // 2: the delivery side. The delivery log (`SqliteDeliveryLog`): attempts, finished markers and
    // dead letters; and the queue (`SqliteQueue`): messages and their dead-letter table. No
    // foreign keys to `webhooks`: history and dead letters outlive a deleted webhook, as they do
    // in DynamoDB, and a queued delivery of a deleted webhook is dropped by the dispatcher.
    "CREATE TABLE delivery_attempts (
        webhook_id     TEXT    NOT NULL,
        delivery_id    TEXT    NOT NULL,
        generation     INTEGER NOT NULL CHECK (generation >= 0),
        attempt        INTEGER NOT NULL CHECK (attempt >= 1),
        event          TEXT    NOT NULL,
        status         TEXT    NOT NULL CHECK (status IN ('success', 'failed')),
        status_code    INTEGER,
        duration_ms    INTEGER NOT NULL,
        error          TEXT,
        response_body  TEXT,
        -- unix seconds
        at             INTEGER NOT NULL,
        PRIMARY KEY (webhook_id, delivery_id, generation, attempt)
    ) STRICT, WITHOUT ROWID;
    -- A webhook's recent attempts, newest first (the `DeliveryLog::recent_attempts` order).
    CREATE INDEX delivery_attempts_recent
        ON delivery_attempts (webhook_id, at DESC, delivery_id DESC, generation DESC, attempt DESC);
    -- Pruning after `ATTEMPT_RETENTION_SECS`.
    CREATE INDEX delivery_attempts_by_age ON delivery_attempts (at);

    -- One row per (delivery, generation) whose final outcome is counted on its webhook.
    CREATE TABLE finished_deliveries (
        delivery_id  TEXT    NOT NULL,
        generation   INTEGER NOT NULL,
        webhook_id   TEXT    NOT NULL,
        status       TEXT    NOT NULL CHECK (status IN ('success', 'failed')),
        -- unix seconds
        at           INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, generation)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX finished_deliveries_by_age ON finished_deliveries (at);

    -- Deliveries given up (`webhooks_core::delivery::DeadLetter`), kept until redelivered.
    CREATE TABLE dead_letters (
        webhook_id   TEXT    NOT NULL,
        delivery_id  TEXT    NOT NULL,
        -- the `DeliveryTask` as JSON (its body included, so it can be redelivered)
        task         TEXT    NOT NULL,
        error        TEXT    NOT NULL,
        attempts     INTEGER NOT NULL,
        -- unix seconds
        at           INTEGER NOT NULL,
        PRIMARY KEY (webhook_id, delivery_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX dead_letters_oldest_first ON dead_letters (webhook_id, at, delivery_id);

    -- The delivery queue. AUTOINCREMENT: a message id is never reused, so a stale receipt can
    -- never match a later message.
    CREATE TABLE queue_messages (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        -- a `QueueTask` as JSON, exactly as enqueued
        body           TEXT    NOT NULL,
        -- read from the body at enqueue (NULL if unreadable), for the log's pruning guard
        delivery_id    TEXT,
        receive_count  INTEGER NOT NULL DEFAULT 0 CHECK (receive_count >= 0),
        -- unix milliseconds
        visible_at     INTEGER NOT NULL,
        enqueued_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX queue_messages_by_visibility ON queue_messages (visible_at, id);
    CREATE INDEX queue_messages_by_delivery ON queue_messages (delivery_id);

    -- The queue's dead-letter queue: messages moved out after a give-up, the redrive guard, or
    -- an unreadable body. `id` is the message id it had in `queue_messages`.
    CREATE TABLE queue_dead_letters (
        id             INTEGER PRIMARY KEY,
        body           TEXT    NOT NULL,
        error          TEXT    NOT NULL,
        receive_count  INTEGER NOT NULL,
        -- unix milliseconds
        enqueued_at    INTEGER NOT NULL,
        dead_at        INTEGER NOT NULL
    ) STRICT;",
    // 3: native formats, secret rotation, auto-disable.
    "ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'json'
         CHECK (format IN ('json', 'slack', 'discord'));
    -- the secret a rotation replaced, and until when (unix seconds) it still signs
    ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
    ALTER TABLE webhooks ADD COLUMN previous_secret_expires_at INTEGER;
    -- start (unix seconds) of the current run of failed deliveries; NULL after a success
    ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;
    ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT;",
    // 4: fewer pages written per delivery. Attempts are keyed by delivery first (delivery ids are
    // time-ordered ObjectIds, so new attempts of every webhook land on the same last pages,
    // instead of on one page per webhook); the webhook stays the first column of the index the
    // history is read through. Three indexes only the hourly prune used go: it now finds old
    // attempts and markers by their delivery id's time (an ObjectId starts with its creation
    // time, and nothing about a delivery happens before it was created), and reads the queue's
    // delivery ids once per run.
    "CREATE TABLE delivery_attempts_v4 (
        webhook_id     TEXT    NOT NULL,
        delivery_id    TEXT    NOT NULL,
        generation     INTEGER NOT NULL CHECK (generation >= 0),
        attempt        INTEGER NOT NULL CHECK (attempt >= 1),
        event          TEXT    NOT NULL,
        status         TEXT    NOT NULL CHECK (status IN ('success', 'failed')),
        status_code    INTEGER,
        duration_ms    INTEGER NOT NULL,
        error          TEXT,
        response_body  TEXT,
        -- unix seconds
        at             INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, generation, attempt)
    ) STRICT, WITHOUT ROWID;
    INSERT OR REPLACE INTO delivery_attempts_v4
        SELECT webhook_id, delivery_id, generation, attempt, event, status, status_code,
               duration_ms, error, response_body, at
        FROM delivery_attempts;
    DROP TABLE delivery_attempts;
    ALTER TABLE delivery_attempts_v4 RENAME TO delivery_attempts;
    CREATE INDEX delivery_attempts_recent
        ON delivery_attempts (webhook_id, at DESC, delivery_id DESC, generation DESC, attempt DESC);
    DROP INDEX queue_messages_by_delivery;
    DROP INDEX finished_deliveries_by_age;",
    // 5: payload filters (`webhooks_core::filter`): the filter as the user wrote it (JSON text),
    // NULL for none. Parsed when the row is read; evaluated at publish time.
    "ALTER TABLE webhooks ADD COLUMN filter TEXT;",
    // 6: custom headers (`webhooks_core::headers`): a JSON array of {name, value}, NULL for none.
    // Values are credentials, like `secret`: never logged, never in a queue message.
    "ALTER TABLE webhooks ADD COLUMN headers TEXT;",
    // 7: each webhook's circuit breaker state (core::health), apart from the webhook's row:
    // written only on the breaker's transitions. The JSON of `WebhookHealth`.
    "CREATE TABLE webhook_health (
        webhook_id TEXT NOT NULL PRIMARY KEY,
        health     TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 8: recovery jobs (`webhooks_core::recovery`): the JSON of a `RecoverJob`, and its version
    // for the compare-and-set of each step.
    "CREATE TABLE recover_jobs (
        webhook_id TEXT    NOT NULL,
        job_id     TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        job        TEXT    NOT NULL,
        PRIMARY KEY (webhook_id, job_id)
    ) STRICT, WITHOUT ROWID;",
    // 9: `Idempotency-Key` records of POST /api/events (`webhooks_core::idempotency`), one per
    // (producer `sub`, key): the `IdempotencyRecord` as JSON, and what its conditions need.
    "CREATE TABLE idempotency_keys (
        scope        TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        -- the condition of every write (one more on each)
        version      INTEGER NOT NULL,
        -- unix seconds; the row is ignored from then on, and pruned
        expires_at   INTEGER NOT NULL,
        -- 1 while a request publishes under the key (its lease is in `record`)
        in_progress  INTEGER NOT NULL CHECK (in_progress IN (0, 1)),
        record       TEXT    NOT NULL,
        PRIMARY KEY (scope, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);",
    // 10: a webhook's `rateLimit` (deliveries per second, `webhooks_core::flow::RateLimiter`),
    // NULL for none.
    "ALTER TABLE webhooks ADD COLUMN rate_limit INTEGER;",
    // 11: what each webhook's owner was last told (`webhooks_core::notify::Notice`), apart
    // from the webhook's row: written only when an operational notification is decided.
    "CREATE TABLE webhook_notices (
        webhook_id    TEXT    NOT NULL PRIMARY KEY,
        level         TEXT    NOT NULL,
        failing_since INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 12: each webhook's hourly delivery aggregates (`webhooks_core::hourly`), added to by the
    // transaction that counts a finished delivery; pruned two days after their hour.
    "CREATE TABLE webhook_hourly (
        webhook_id TEXT    NOT NULL,
        -- unix seconds / 3600
        hour       INTEGER NOT NULL,
        delivered  INTEGER NOT NULL,
        failed     INTEGER NOT NULL,
        -- JSON array of the latency buckets' counts (`webhooks_core::hourly::LATENCY_BOUNDS_MS`)
        latency    TEXT    NOT NULL,
        PRIMARY KEY (webhook_id, hour)
    ) STRICT, WITHOUT ROWID;",
    // 13: parking (`webhooks_core::flow`, parking; `queue::SqliteQueue::park`): each message's
    // webhook (read from the body at enqueue; NULL if unreadable), indexed by itself only, so a
    // receipt's change of `visible_at` does not touch it; and the webhooks whose messages are
    // held back until a time (a row per parked webhook, removed once past).
    "ALTER TABLE queue_messages ADD COLUMN webhook_id TEXT;
    UPDATE queue_messages SET webhook_id = json_extract(body, '$.webhookId')
        WHERE json_valid(body) AND json_type(body, '$.webhookId') = 'text';
    CREATE INDEX queue_messages_by_webhook ON queue_messages (webhook_id);
    CREATE TABLE queue_parked (
        webhook_id TEXT    NOT NULL PRIMARY KEY,
        -- unix milliseconds: its messages are visible from then on
        until      INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
];

/// Brings the schema to `migrations.len()`, running only the steps the file has not run yet, all
/// in one write transaction: two processes opening one new file at once migrate it once, and a
/// failed step leaves the file as it was.
pub(super) fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    path: &Path,
) -> Result<(), DbError> {
    let context = format!("migrating the schema of {}", path.display());
    let sqlite = |e: rusqlite::Error| DbError::from_sqlite(&context, &e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let current: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    let known = migrations.len();
    let current = usize::try_from(current)
        .ok()
        .filter(|v| *v <= known)
        .ok_or_else(|| {
            DbError::Unusable(format!(
                "{} has schema version {current}, this build knows up to {known}: \
                 it was written by a newer version of dakkio webhooks",
                path.display()
            ))
        })?;
    for (step, sql) in migrations.iter().enumerate().skip(current) {
        let version = step + 1;
        tx.execute_batch(sql).map_err(sqlite)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(sqlite)?;
        tracing::info!(path = %path.display(), version, "applied schema migration");
    }
    tx.commit().map_err(sqlite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{BUSY_TIMEOUT, Database};

    fn user_version(db: &Database) -> i64 {
        db.read(|conn| conn.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap()
    }

    /// A second, ordinary connection to the file (for test set-up and checks).
    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(BUSY_TIMEOUT).unwrap();
        conn
    }

    #[test]
    fn reopening_runs_only_the_migrations_a_file_has_not_run() {
        // Arrange: a file at version 1 with a row in it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let v1: &[&str] = &["CREATE TABLE things (name TEXT NOT NULL) STRICT;"];
        let db = Database::open_with(&path, v1).expect("open v1");
        raw(&path)
            .execute("INSERT INTO things (name) VALUES ('kept')", [])
            .unwrap();
        drop(db);

        // Act: a later build adds a table; then the same build opens the file again. Were step 1
        // run again, its CREATE TABLE would fail on the existing table.
        let v2: &[&str] = &[v1[0], "CREATE TABLE more (n INTEGER NOT NULL) STRICT;"];
        drop(Database::open_with(&path, v2).expect("open v2"));
        let db = Database::open_with(&path, v2).expect("reopen v2");

        // Assert
        assert_eq!(user_version(&db), 2);
        let conn = raw(&path);
        let name: String = conn
            .query_row("SELECT name FROM things", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "kept");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM more", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_failed_migration_leaves_the_file_at_its_previous_version() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let v1: &[&str] = &["CREATE TABLE things (name TEXT NOT NULL) STRICT;"];
        drop(Database::open_with(&path, v1).expect("open v1"));

        // Act
        let broken: &[&str] = &[v1[0], "CREATE TABLE ok (n INTEGER); THIS IS NOT SQL;"];
        let err = Database::open_with(&path, broken).expect_err("broken step");

        // Assert
        assert!(matches!(err, DbError::Unusable(_)), "{err:?}");
        let db = Database::open_with(&path, v1).expect("reopen v1");
        assert_eq!(user_version(&db), 1);
        let conn = raw(&path);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'ok'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            tables, 0,
            "the failed step's first statement was rolled back"
        );
    }

    #[test]
    fn a_file_from_before_the_delivery_tables_gets_them_and_keeps_its_webhooks() {
        // GIVEN a file written by a build that knew only the webhooks table
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = Database::open_with(&path, &MIGRATIONS[..1]).expect("open v1");
        raw(&path)
            .execute_batch(
                "INSERT INTO webhooks VALUES ('507f1f77bcf86cd799439011', 'u', \
                 '507f1f77bcf86cd799439012', 'https://x', '[]', NULL, 1, 3, 2.0, 1, 's', \
                 0, 0, 0, NULL, NULL, 1, 1);",
            )
            .unwrap();
        drop(db);

        // WHEN this build opens it
        let db = Database::open(&path).expect("open latest");

        // THEN the delivery tables exist and the webhook is still there
        assert_eq!(user_version(&db), MIGRATIONS.len() as i64);
        let conn = raw(&path);
        for table in [
            "webhooks",
            "delivery_attempts",
            "finished_deliveries",
            "dead_letters",
            "queue_messages",
            "queue_dead_letters",
        ] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, i64::from(table == "webhooks"), "{table}");
        }
    }

    #[test]
    fn messages_queued_before_version_13_get_their_webhook_for_parking() {
        // GIVEN a file at version 12 with a queued delivery and an unreadable message
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Database::open_with(&path, &MIGRATIONS[..12]).expect("open v12"));
        raw(&path)
            .execute_batch(
                r#"INSERT INTO queue_messages (body, delivery_id, visible_at, enqueued_at) VALUES
                   ('{"type":"delivery.v1","webhookId":"w1","deliveryId":"d1"}', 'd1', 0, 0),
                   ('not json', NULL, 0, 0),
                   ('{"webhookId":7}', NULL, 0, 0);"#,
            )
            .unwrap();

        // WHEN this build opens it
        let db = Database::open(&path).expect("open latest");

        // THEN the readable message names its webhook, the others none, and nothing is parked
        assert_eq!(user_version(&db), MIGRATIONS.len() as i64);
        let conn = raw(&path);
        let webhooks: Vec<Option<String>> = conn
            .prepare("SELECT webhook_id FROM queue_messages ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(webhooks, [Some("w1".to_owned()), None, None]);
        let parked: i64 = conn
            .query_row("SELECT count(*) FROM queue_parked", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parked, 0);
    }

    #[test]
    fn attempts_written_before_version_4_are_kept_under_the_new_key() {
        // GIVEN a file at version 3 with two attempts of one delivery and a queued message
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Database::open_with(&path, &MIGRATIONS[..3]).expect("open v3"));
        raw(&path)
            .execute_batch(
                "INSERT INTO delivery_attempts VALUES
                   ('w1', 'd1', 0, 1, 'alert.triggered', 'failed', 500, 12, 'HTTP 500', NULL, 100),
                   ('w1', 'd1', 0, 2, 'alert.triggered', 'success', 200, 9, NULL, 'ok', 160);
                 INSERT INTO queue_messages (body, delivery_id, visible_at, enqueued_at)
                   VALUES ('{}', 'd2', 0, 0);",
            )
            .unwrap();

        // WHEN this build opens it
        let db = Database::open(&path).expect("open latest");

        // THEN both attempts are there, keyed by delivery, and the queue index is gone
        assert_eq!(user_version(&db), MIGRATIONS.len() as i64);
        let conn = raw(&path);
        let rows: Vec<(String, i64, String)> = conn
            .prepare("SELECT webhook_id, attempt, status FROM delivery_attempts ORDER BY attempt")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("w1".to_owned(), 1, "failed".to_owned()),
                ("w1".to_owned(), 2, "success".to_owned())
            ]
        );
        let pk: String = conn
            .query_row(
                "SELECT group_concat(name) FROM pragma_index_info(
                     (SELECT name FROM pragma_index_list('delivery_attempts') WHERE origin = 'pk'))",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pk, "delivery_id,generation,attempt");
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
                 ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "dead_letters_oldest_first",
                "delivery_attempts_recent",
                "idempotency_keys_by_expiry",
                "queue_messages_by_visibility",
                "queue_messages_by_webhook",
                "webhooks_by_bucket",
                "webhooks_by_owner"
            ]
        );
    }

    #[test]
    fn a_schema_newer_than_this_build_is_refused_and_left_alone() {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let newer: &[&str] = &[MIGRATIONS[0], "CREATE TABLE future (n INTEGER) STRICT;"];
        drop(Database::open_with(&path, newer).expect("open newer"));

        // Act
        let err = Database::open_with(&path, &newer[..1]).expect_err("older build");

        // Assert
        assert!(
            matches!(err, DbError::Unusable(ref m) if m.contains("newer")),
            "{err:?}"
        );
        let db = Database::open_with(&path, newer).expect("the newer build still opens it");
        assert_eq!(user_version(&db), 2);
    }
}
