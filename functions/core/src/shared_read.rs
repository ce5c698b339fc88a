//! [`SharedReads`]: one store read per webhook per moment, shared by every delivery of an
//! instance that needs it — a cache with a time to live whose reads are single flight.
//!
//! The delivery function handles a batch's records at once, and records to one webhook ask for
//! the same per-webhook state together (the circuit breaker's health, the notice last told). A
//! plain cache misses for all of them until the first read comes back, so a batch of ten read
//! the same item ten times; here the first caller starts the read and the others wait for its
//! answer, which then serves everyone for the time to live. A read that fails is not kept: the
//! next caller reads again.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server (any executor runs it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::WebhookId;

/// A read under way or done: its answer, or the error's text.
type Read<V> = Shared<BoxFuture<'static, Result<V, String>>>;

/// Entries kept before the stale ones are dropped (a few webhooks per instance in practice).
const PRUNE_ABOVE: usize = 10_000;

/// Per-webhook reads of one kind, shared for `ttl` from when each read started.
pub struct SharedReads<V: Clone + Send + Sync + 'static> {
    ttl: Duration,
    entries: Mutex<HashMap<WebhookId, (Instant, Read<V>)>>,
}

impl<V: Clone + Send + Sync + 'static> std::fmt::Debug for SharedReads<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReads")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> SharedReads<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookId, (Instant, Read<V>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `id`: the fresh one, the one being read, or `read()`'s (started here, and
    /// shared with whoever asks meanwhile). A failed read is answered to everyone who waited
    /// for it and then forgotten.
    pub async fn get_or_read(
        &self,
        id: &WebhookId,
        read: impl FnOnce() -> BoxFuture<'static, Result<V, String>>,
    ) -> Result<V, String> {
        let shared = {
            let mut entries = self.entries();
            match entries.get(id) {
                Some((at, r)) if at.elapsed() < self.ttl => r.clone(),
                _ => {
                    if entries.len() > PRUNE_ABOVE {
                        let ttl = self.ttl;
                        entries.retain(|_, (at, _)| at.elapsed() < ttl);
                    }
                    let r = read().shared();
                    entries.insert(id.clone(), (Instant::now(), r.clone()));
                    r
                }
            }
        };
        let out = shared.clone().await;
        if out.is_err() {
            let mut entries = self.entries();
            if entries
                .get(id)
                .is_some_and(|(_, r)| Shared::ptr_eq(r, &shared))
            {
                entries.remove(id);
            }
        }
        out
    }

    /// The value for `id` if one was read or put within the time to live (a read still under
    /// way is not waited for).
    pub fn fresh(&self, id: &WebhookId) -> Option<V> {
        let entries = self.entries();
        let (at, r) = entries.get(id)?;
        if at.elapsed() >= self.ttl {
            return None;
        }
        r.peek().and_then(|v| v.as_ref().ok()).cloned()
    }

    /// Keeps `value` for `id` from now (after this instance wrote it).
    pub fn put(&self, id: &WebhookId, value: V) {
        let ready: BoxFuture<'static, Result<V, String>> =
            futures::future::ready(Ok(value)).boxed();
        let mut entries = self.entries();
        if entries.len() > PRUNE_ABOVE {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(id.clone(), (Instant::now(), ready.shared()));
    }

    /// Forgets `id`: the next caller reads.
    pub fn forget(&self, id: &WebhookId) {
        self.entries().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn id(n: u8) -> WebhookId {
        WebhookId::parse(&format!("{n:024x}")).unwrap()
    }

    /// A read that counts itself and answers `value` after a short wait (so callers overlap).
    fn counted(
        reads: &Arc<AtomicUsize>,
        value: Result<u32, String>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<u32, String>> + use<> {
        let reads = reads.clone();
        move || {
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                value
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_read_and_later_ones_the_cached_answer() {
        // GIVEN a cache with a long time to live
        let cache = SharedReads::<u32>::new(Duration::from_secs(60));
        let reads = Arc::new(AtomicUsize::new(0));
        // WHEN ten callers ask for one webhook at once, then one more later
        let one = id(1);
        let answers = futures::future::join_all(
            (0..10).map(|_| cache.get_or_read(&one, counted(&reads, Ok(7)))),
        )
        .await;
        let later = cache.get_or_read(&id(1), counted(&reads, Ok(8))).await;
        // THEN the store was read once and everyone got its answer
        assert!(answers.iter().all(|a| a == &Ok(7)), "{answers:?}");
        assert_eq!(later, Ok(7));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.fresh(&id(1)), Some(7));
        // AND another webhook is read on its own
        assert_eq!(
            cache.get_or_read(&id(2), counted(&reads, Ok(9))).await,
            Ok(9)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_answered_to_its_waiters_then_read_again() {
        let cache = SharedReads::<u32>::new(Duration::from_secs(60));
        let reads = Arc::new(AtomicUsize::new(0));
        // WHEN a read fails while three callers wait for it
        let one = id(1);
        let answers = futures::future::join_all(
            (0..3).map(|_| cache.get_or_read(&one, counted(&reads, Err("down".into())))),
        )
        .await;
        // THEN each of them gets the error, and nothing is kept
        assert!(answers.iter().all(|a| a == &Err("down".to_owned())));
        assert_eq!(cache.fresh(&id(1)), None);
        // AND the next caller reads again
        assert_eq!(
            cache.get_or_read(&id(1), counted(&reads, Ok(3))).await,
            Ok(3)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_expired_answer_is_read_again_and_put_or_forget_replace_it() {
        let cache = SharedReads::<u32>::new(Duration::from_millis(30));
        let reads = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            cache.get_or_read(&id(1), counted(&reads, Ok(1))).await,
            Ok(1)
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        // An expired answer is neither fresh nor served: the next caller reads.
        assert_eq!(cache.fresh(&id(1)), None);
        assert_eq!(
            cache.get_or_read(&id(1), counted(&reads, Ok(2))).await,
            Ok(2)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A value put is served without a read; a forgotten one is read.
        cache.put(&id(1), 5);
        assert_eq!(
            cache.get_or_read(&id(1), counted(&reads, Ok(6))).await,
            Ok(5)
        );
        cache.forget(&id(1));
        assert_eq!(
            cache.get_or_read(&id(1), counted(&reads, Ok(6))).await,
            Ok(6)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
