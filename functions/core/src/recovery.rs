//! Recovery after an outage: `POST /api/webhooks/{id}/recover {since, until?}` redelivers every
//! dead letter of a webhook given up in a time window, however many, as a **job** whose progress
//! is read at `GET /api/webhooks/{id}/recover/{jobId}`.
//!
//! ## How a job runs
//!
//! A [`RecoverJob`] is a row in the delivery log ([`crate::ports::DeliveryLog::create_recover_job`]) holding
//! the window, the counters and a position in the walk of the window's dead letters. Work is
//! done in **steps** ([`DeliveryService::continue_recover`]): a step takes the job's lease (a
//! compare-and-set on its `version`, so two runners never walk the same pages), then redelivers
//! pages of dead letters — each page's letters claimed, enqueued as new generations (claimed
//! ones not queued are put back), then the job's position and counters saved — until the
//! window is done or the step's time budget is spent, and gives the lease back. The walk's
//! position moves past a page only when every letter of it was queued: a letter whose
//! redelivery could not be queued (the queue failed, or the budget ran out while queueing) is
//! read again by the next step, never skipped. Pages are sized to what fits the time left at
//! the pace of the step's first page (at most [`RECOVER_PAGE`]), so a slow queue or store
//! makes smaller pages rather than unqueued letters. A runner that dies mid-step leaves its
//! lease to expire after [`RECOVER_LEASE`]; the next step resumes from the last saved page.
//!
//! Who runs the steps is the runtime's choice, the only difference between the two:
//! - **local mode**: a task in the process loops over steps until the job completes (the API
//!   answers `202` at once); reading a running job whose lease has lapsed (the process was
//!   restarted) starts a task again.
//! - **AWS**: the API Lambda can do no work after answering, so each request on the job — the
//!   `POST` (repeated: same window, same job) and every `GET` of a running job — runs one step
//!   of at most [`PUBLISH_BUDGET`](crate::delivery_service::PUBLISH_BUDGET) before it answers. A client
//!   polling the job drives it to completion; nothing else is deployed for it.
//!
//! ## Idempotency
//!
//! The job id is derived from the webhook and the window as asked ([`RecoverJobId::derive`]):
//! the same request names the same job, and a job that exists is returned as it is (running, or
//! completed) rather than started again — except a completed job whose window still holds dead
//! letters (one put back by a concurrent redelivery that could not queue it after the walk
//! passed it, or letters an older version of the job skipped), which the repeat opens again to
//! walk the window once more. A dead letter is removed once its redelivery is queued,
//! so it is redelivered once however often a window is asked for; dead letters given up later
//! are recovered by asking for another window. The window ends at `until` or when the job is
//! created, whichever is earlier, so a delivery that fails again while the job runs is not
//! picked up by the same job.
//!
//! Must not depend on the AWS SDK, the Lambda runtime or an HTTP server.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::delivery::DeadLetter;
use crate::delivery_service::{DeliveryService, PublishError, QueuedDelivery};
use crate::ports::DeadLetterQuery;
use crate::validate::ValidationError;
use crate::webhook_service::{Caller, ServiceError};
use crate::{RecoverJobId, Timestamp, WebhookId};

/// Dead letters read and redelivered per page of a job (and the page size of counting them).
pub const RECOVER_PAGE: usize = 100;
/// How long a step holds a job before another runner may take it over (a runner that died).
/// Longer than any step: a step's budget is at most [`crate::delivery_service::PUBLISH_BUDGET`].
pub const RECOVER_LEASE: Duration = Duration::from_secs(60);
/// However late a page's claims end, its letters get this long to be queued (past the step's
/// budget if need be: the API function's timeout leaves 5 s beyond it). A send cut off in
/// flight may still have been queued, and the letter put back after it would be queued again
/// by the next step.
pub const RECOVER_ENQUEUE_MIN: Duration = Duration::from_secs(3);
/// A step does not start another page with less than this left of its budget.
pub const RECOVER_PAGE_MIN_TIME: Duration = Duration::from_secs(2);

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Dead letters of the window remain to be walked.
    Running,
    /// Every dead letter of the window was redelivered (`done`), or the job ended for a
    /// permanent reason (`failed`: the webhook is gone).
    Completed,
}

/// A recovery job, as stored (the API shows all but the runner's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverJob {
    pub id: RecoverJobId,
    pub webhook_id: WebhookId,
    /// Dead letters given up at or after this time…
    pub since: Timestamp,
    /// …and before this one (the `until` asked for, or the job's creation if earlier).
    pub until: Timestamp,
    pub state: JobState,
    /// Dead letters in the window when the job was created.
    pub total: u64,
    /// Redelivered (queued again as a new generation, removed from the dead letters).
    pub done: u64,
    /// Not redelivered for a permanent reason (the webhook is gone). A letter whose redelivery
    /// could not be queued (the queue failed, the step's time ran out) is not failed: it stays
    /// a dead letter and the next step tries it again.
    pub failed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The walk's position: the log's position after the last page done (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Until when a runner holds the job (none: nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
    /// Bumped by every write ([`crate::ports::DeliveryLog::update_recover_job`] compares it).
    pub version: u64,
}

/// The window of a recovery, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverWindow {
    pub since: Timestamp,
    /// As asked (none: up to the job's creation).
    pub until: Option<Timestamp>,
}

impl RecoverWindow {
    /// `since` and `until` as the API receives them (RFC 3339): `since` required, not in the
    /// future; `until`, when given, after `since`.
    pub fn parse(
        since: &str,
        until: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let time = |field: &str, v: &str| {
            Timestamp::parse(v).map_err(|_| {
                ValidationError::new(
                    "invalid_window",
                    format!("{field} {v:?} is not an RFC 3339 time"),
                )
            })
        };
        let since = time("since", since)?;
        let until = until.map(|u| time("until", u)).transpose()?;
        if since > now {
            return Err(ValidationError::new(
                "invalid_window",
                "since is in the future",
            ));
        }
        if until.is_some_and(|u| u <= since) {
            return Err(ValidationError::new(
                "invalid_window",
                "until must be later than since",
            ));
        }
        Ok(Self { since, until })
    }

    /// The job that recovers this window of `webhook`.
    pub fn job_id(&self, webhook: &WebhookId) -> RecoverJobId {
        let until = self
            .until
            .map_or_else(|| "-".to_owned(), |u| u.unix().to_string());
        RecoverJobId::derive(&format!(
            "recover/v1\n{webhook}\n{}\n{until}",
            self.since.unix()
        ))
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// The job is completed (by this step or before).
    Completed,
    /// The budget ran out with pages left; the lease is given back.
    OutOfTime,
    /// Another runner holds the job.
    Busy,
}

impl DeliveryService {
    /// Starts recovering `window` of `caller`'s webhook `id`, or finds the job that already does:
    /// `(job, true)` when created now. Counts the window's dead letters (the job's `total`); runs
    /// nothing — see [`continue_recover`](Self::continue_recover).
    pub async fn start_recover(
        &self,
        caller: &Caller,
        id: &WebhookId,
        window: RecoverWindow,
    ) -> Result<(RecoverJob, bool), ServiceError> {
        self.owned(caller, id).await?;
        let job_id = window.job_id(id);
        if let Some(job) = self.log.recover_job(id, &job_id).await? {
            return self.resume_if_left(id, job).await.map(|j| (j, false));
        }
        let now = self.now();
        let until = window.until.map_or(now, |u| u.min(now));
        let total = if until > window.since {
            let query = DeadLetterQuery {
                since: Some(window.since),
                until: Some(until),
                ..DeadLetterQuery::default()
            };
            self.log.count_dead_letters(id, &query).await?
        } else {
            0
        };
        let job = RecoverJob {
            id: job_id,
            webhook_id: id.clone(),
            since: window.since,
            until,
            state: if total == 0 {
                JobState::Completed
            } else {
                JobState::Running
            },
            total,
            done: 0,
            failed: 0,
            created_at: now,
            updated_at: now,
            after: None,
            lease_until: None,
            version: 1,
        };
        if self.log.create_recover_job(&job).await? {
            tracing::info!(webhook = %id, job = %job.id, total, "recovery job created");
            return Ok((job, true));
        }
        // Created meanwhile by the same request, repeated.
        let existing = self.log.recover_job(id, &job.id).await?;
        Ok((existing.ok_or(ServiceError::NotFound)?, false))
    }

    /// A completed `job` whose window still holds dead letters (left by a step that could not
    /// queue them, or by an older version that moved past them) is opened again: walked from
    /// the start, its `total` what it has done plus what is left. Otherwise `job` as it is.
    async fn resume_if_left(
        &self,
        id: &WebhookId,
        mut job: RecoverJob,
    ) -> Result<RecoverJob, ServiceError> {
        if job.state != JobState::Completed || job.until <= job.since {
            return Ok(job);
        }
        let query = DeadLetterQuery {
            since: Some(job.since),
            until: Some(job.until),
            ..DeadLetterQuery::default()
        };
        let left = self.log.count_dead_letters(id, &query).await?;
        if left == 0 {
            return Ok(job);
        }
        job.state = JobState::Running;
        job.after = None;
        job.total = job.done + left;
        job.failed = 0;
        job.updated_at = self.now();
        if !self.save(&mut job).await? {
            // Resumed (or moved on) meanwhile by a concurrent repeat: answer what is stored.
            return self
                .log
                .recover_job(id, &job.id)
                .await?
                .ok_or(ServiceError::NotFound);
        }
        tracing::info!(webhook = %id, job = %job.id, left, "recovery job resumed: its window still has dead letters");
        Ok(job)
    }

    /// `caller`'s recovery job `job` of webhook `id`.
    pub async fn recover_job(
        &self,
        caller: &Caller,
        id: &WebhookId,
        job: &RecoverJobId,
    ) -> Result<RecoverJob, ServiceError> {
        self.owned(caller, id).await?;
        self.log
            .recover_job(id, job)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    /// One step of a job (see the module docs): takes its lease, redelivers pages of its window
    /// until the window is done or `budget` is spent, and gives the lease back. No owner check:
    /// the API calls it after [`start_recover`](Self::start_recover) or
    /// [`recover_job`](Self::recover_job).
    pub async fn continue_recover(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
        budget: Duration,
    ) -> Result<(RecoverJob, StepEnd), ServiceError> {
        let deadline = Instant::now() + budget;
        let mut job = self
            .log
            .recover_job(webhook, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if job.state == JobState::Completed {
            return Ok((job, StepEnd::Completed));
        }
        let now = self.now();
        if job.lease_until.is_some_and(|l| l > now) {
            return Ok((job, StepEnd::Busy));
        }
        job.lease_until = Some(lease_from(now));
        if !self.save(&mut job).await? {
            return self.busy(webhook, id).await;
        }
        if self.store.get(webhook).await?.is_none() {
            // Permanent: the webhook is gone, nothing of the window can be redelivered.
            job.failed = job.total.saturating_sub(job.done);
            job.state = JobState::Completed;
            job.lease_until = None;
            job.updated_at = self.now();
            if !self.save(&mut job).await? {
                return self.busy(webhook, id).await;
            }
            tracing::warn!(webhook = %webhook, job = %id, failed = job.failed, "recovery job ended: the webhook is gone");
            return Ok((job, StepEnd::Completed));
        }
        let step_start = Instant::now();
        // Time per letter seen so far in this step (claim + enqueue): sizes the next page so
        // that what a page claims can be queued within the budget.
        let mut per_letter: Option<Duration> = None;
        // The size of the next page: decided once per page, after the one before (never 0).
        let mut limit = RECOVER_PAGE;
        loop {
            let query = DeadLetterQuery {
                since: Some(job.since),
                until: Some(job.until),
                after: job.after.clone(),
                limit,
                ..DeadLetterQuery::default()
            };
            let page_start = Instant::now();
            let page = self.log.dead_letters_page(webhook, &query).await?;
            let read = page.items.len();
            let (queued, not_queued) = self
                .redeliver_letters(webhook, page.items, deadline)
                .await?;
            if read > 0 {
                per_letter = Some(page_start.elapsed() / read as u32);
            }
            job.done += queued.len() as u64;
            let now = self.now();
            job.updated_at = now;
            // A letter not queued (the queue failed, or the budget ran out) was put back: the
            // walk stays where it was, so the next step reads it again (the letters queued
            // meanwhile are gone from the dead letters and do not come back).
            let all_queued = not_queued.is_empty();
            if all_queued {
                job.after = page.next_after;
            } else {
                tracing::info!(webhook = %webhook, job = %id, not_queued = not_queued.len(), "recovery step: letters left for the next step");
            }
            let more = !all_queued || job.after.is_some();
            let time_left = deadline.saturating_duration_since(Instant::now());
            limit = page_limit(time_left, per_letter);
            if !more {
                job.state = JobState::Completed;
                job.lease_until = None;
            } else if !all_queued || limit == 0 {
                job.lease_until = None;
            } else {
                job.lease_until = Some(lease_from(now));
            }
            if !self.save(&mut job).await? {
                // Only a runner whose lease lapsed gets here (a step far slower than the lease).
                tracing::warn!(webhook = %webhook, job = %id, "recovery job taken over by another runner");
                return self.busy(webhook, id).await;
            }
            match (more, job.lease_until) {
                (false, _) => {
                    tracing::info!(webhook = %webhook, job = %id, done = job.done, failed = job.failed, "recovery job completed");
                    return Ok((job, StepEnd::Completed));
                }
                (true, None) => {
                    tracing::debug!(webhook = %webhook, job = %id, done = job.done, ms = step_start.elapsed().as_millis() as u64, "recovery step out of time");
                    return Ok((job, StepEnd::OutOfTime));
                }
                (true, Some(_)) => {}
            }
        }
    }

    /// Writes `job` one version on (compare and set); `false` when another writer got there.
    async fn save(&self, job: &mut RecoverJob) -> Result<bool, ServiceError> {
        let expected = job.version;
        job.version += 1;
        Ok(self.log.update_recover_job(job, expected).await?)
    }

    async fn busy(
        &self,
        webhook: &WebhookId,
        id: &RecoverJobId,
    ) -> Result<(RecoverJob, StepEnd), ServiceError> {
        let job = self
            .log
            .recover_job(webhook, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let end = match job.state {
            JobState::Completed => StepEnd::Completed,
            JobState::Running => StepEnd::Busy,
        };
        Ok((job, end))
    }

    /// Redelivers `dead` (letters of `webhook`) the way a redelivery does
    /// ([`DeliveryService::claim_and_redeliver`]: each claimed, queued as a new generation, put
    /// back if not queued): `(queued, not queued)`. A letter claimed by a concurrent redelivery
    /// is in neither.
    pub(crate) async fn redeliver_letters(
        &self,
        webhook: &WebhookId,
        dead: Vec<DeadLetter>,
        deadline: Instant,
    ) -> Result<(Vec<QueuedDelivery>, Vec<QueuedDelivery>), ServiceError> {
        if dead.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        match self
            .claim_and_redeliver(webhook, dead, deadline, RECOVER_ENQUEUE_MIN)
            .await
        {
            Ok(queued) => Ok((queued.unwrap_or_default(), Vec::new())),
            Err(PublishError::Enqueue {
                queued, not_queued, ..
            }) => Ok((queued, not_queued)),
            Err(PublishError::Service(e)) => Err(e),
            // A dead letter's task was queued once already: it cannot be too large; and
            // redelivery takes no Idempotency-Key.
            Err(
                e @ (PublishError::TooLarge { .. }
                | PublishError::KeyReused
                | PublishError::KeyInProgress),
            ) => Err(ServiceError::Store(crate::ports::StoreError::Corrupt(
                e.to_string(),
            ))),
        }
    }
}

/// How many dead letters the next page of a step may take with `time_left` of its budget. The
/// first page of a step (no pace seen yet: `per_letter` none) is a full one, so every step makes
/// progress; after it none with less than [`RECOVER_PAGE_MIN_TIME`] left, else as many as fit in
/// half the time left past that margin at the pace seen so far, at least 1 and at most
/// [`RECOVER_PAGE`].
fn page_limit(time_left: Duration, per_letter: Option<Duration>) -> usize {
    match per_letter {
        None => RECOVER_PAGE,
        Some(_) if time_left < RECOVER_PAGE_MIN_TIME => 0,
        Some(p) if p.is_zero() => RECOVER_PAGE,
        Some(p) => {
            let usable = (time_left - RECOVER_PAGE_MIN_TIME) / 2;
            ((usable.as_nanos() / p.as_nanos()) as usize).clamp(1, RECOVER_PAGE)
        }
    }
}

fn lease_from(now: Timestamp) -> Timestamp {
    Timestamp::from_unix(now.unix() + RECOVER_LEASE.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::delivery::{DeadLetter, DeliveryTask};
    use crate::ports::memory::{MemoryLog, MemoryQueue, MemoryStore};
    use crate::ports::{Clock, DeliveryLog, SubscriptionStore};
    use crate::time::FixedClock;
    use crate::webhook::Webhook;
    use crate::{DeliveryId, EventType, OwnerId};

    struct World {
        service: DeliveryService,
        store: Arc<MemoryStore>,
        log: Arc<MemoryLog>,
        queue: Arc<MemoryQueue>,
        clock: Arc<FixedClock>,
        caller: Caller,
        webhook: Webhook,
    }

    async fn world() -> World {
        let store = Arc::new(MemoryStore::default());
        let log = Arc::new(MemoryLog::new(store.clone()));
        let queue = Arc::new(MemoryQueue::default());
        let clock = Arc::new(FixedClock::at(Timestamp::from_unix(1_760_000_000)));
        let webhook = webhook("alice");
        store.create(&webhook).await.unwrap();
        let service =
            DeliveryService::new(store.clone(), log.clone(), queue.clone(), clock.clone());
        World {
            service,
            store,
            log,
            queue,
            clock,
            caller: Caller {
                owner: OwnerId::parse("alice").unwrap(),
                buckets: None,
            },
            webhook,
        }
    }

    fn webhook(owner: &str) -> Webhook {
        Webhook::for_tests(
            OwnerId::parse(owner).unwrap(),
            Timestamp::from_unix(1_700_000_000),
        )
    }

    async fn seed(w: &World, n: i64, first_at: i64) {
        for i in 0..n {
            let at = first_at + i;
            w.log
                .put_dead_letter(&DeadLetter {
                    task: DeliveryTask {
                        delivery_id: DeliveryId::generate(at - 60),
                        webhook_id: w.webhook.id.clone(),
                        event: EventType::AlertTriggered,
                        generation: 0,
                        attempts_made: 0,
                        body: format!("{{\"n\":{i}}}"),
                        created_at: Timestamp::from_unix(at - 60),
                    },
                    error: "receiver answered HTTP 500".into(),
                    attempts: 4,
                    at: Timestamp::from_unix(at),
                })
                .await
                .unwrap();
        }
    }

    #[test]
    fn windows_are_validated_and_name_their_job() {
        let now = Timestamp::from_unix(1_760_000_000);
        let w = WebhookId::parse("507f1f77bcf86cd799439011").unwrap();
        let ok = RecoverWindow::parse("2025-10-09T00:00:00Z", None, now).unwrap();
        assert_eq!(ok.job_id(&w), ok.job_id(&w), "same window, same job");
        let bounded =
            RecoverWindow::parse("2025-10-09T00:00:00Z", Some("2025-10-09T01:00:00Z"), now)
                .unwrap();
        assert_ne!(ok.job_id(&w), bounded.job_id(&w));
        let other = WebhookId::parse("507f1f77bcf86cd799439012").unwrap();
        assert_ne!(ok.job_id(&w), ok.job_id(&other));
        for (since, until) in [
            ("yesterday", None),
            ("2025-10-09T00:00:00Z", Some("soon")),
            ("2025-10-09T01:00:00Z", Some("2025-10-09T01:00:00Z")),
            ("2025-10-09T02:00:00Z", Some("2025-10-09T01:00:00Z")),
            ("2030-01-01T00:00:00Z", None),
        ] {
            let e = RecoverWindow::parse(since, until, now).unwrap_err();
            assert_eq!(e.code, "invalid_window", "{since} {until:?}");
        }
    }

    #[tokio::test]
    async fn a_job_redelivers_every_dead_letter_of_its_window_once_in_steps() {
        // GIVEN 250 dead letters in the window and 5 outside it
        let w = world().await;
        seed(&w, 250, 1_759_990_000).await;
        seed(&w, 5, 1_759_980_000).await;
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        // WHEN the job is started and stepped with no time budget (one page per step)
        let (job, created) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        assert!(created);
        assert_eq!((job.total, job.state), (250, JobState::Running));
        let mut steps = 0;
        loop {
            let (job, end) = w
                .service
                .continue_recover(&w.webhook.id, &job.id, Duration::ZERO)
                .await
                .unwrap();
            steps += 1;
            if end == StepEnd::Completed {
                assert_eq!((job.done, job.failed), (250, 0));
                break;
            }
            assert_eq!(end, StepEnd::OutOfTime);
            assert!(steps < 10);
        }
        // THEN every letter of the window was queued once, as generation 1; the others stay
        assert_eq!(steps, 3, "pages of {RECOVER_PAGE}");
        let queued = w.queue.tasks();
        assert_eq!(queued.len(), 250);
        assert!(queued.iter().all(|t| t.generation == 1));
        let ids: std::collections::BTreeSet<_> = queued.iter().map(|t| &t.delivery_id).collect();
        assert_eq!(ids.len(), 250);
        assert_eq!(
            w.log.dead_letters(&w.webhook.id, 100).await.unwrap().len(),
            5
        );
        // AND asking again for the same window names the completed job and queues nothing
        let (again, created) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!((again.state, again.done), (JobState::Completed, 250));
        let (_, end) = w
            .service
            .continue_recover(&w.webhook.id, &again.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(end, StepEnd::Completed);
        assert_eq!(w.queue.tasks().len(), 250);
    }

    #[tokio::test]
    async fn a_held_job_is_left_to_its_runner_until_the_lease_lapses() {
        // GIVEN a job whose lease another runner holds
        let w = world().await;
        seed(&w, 3, 1_759_990_000).await;
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        let (mut job, _) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        let expected = job.version;
        job.version += 1;
        job.lease_until = Some(lease_from(w.clock.now()));
        assert!(w.log.update_recover_job(&job, expected).await.unwrap());
        // WHEN another step comes
        let (_, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        // THEN it does nothing; once the lease has lapsed, a step finishes the job
        assert_eq!(end, StepEnd::Busy);
        assert!(w.queue.tasks().is_empty());
        w.clock.advance(RECOVER_LEASE.as_secs() as i64 + 1);
        let (job, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((end, job.done), (StepEnd::Completed, 3));
        // AND a stale writer's compare-and-set fails
        assert!(!w.log.update_recover_job(&job, expected).await.unwrap());
    }

    #[tokio::test]
    async fn another_owners_webhook_has_no_recovery_and_an_empty_window_completes_at_once() {
        let w = world().await;
        let bob = Caller {
            owner: OwnerId::parse("bob").unwrap(),
            buckets: None,
        };
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        assert!(matches!(
            w.service.start_recover(&bob, &w.webhook.id, window).await,
            Err(ServiceError::NotFound)
        ));
        let (job, created) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        assert!(created);
        assert_eq!((job.state, job.total), (JobState::Completed, 0));
        assert!(matches!(
            w.service.recover_job(&bob, &w.webhook.id, &job.id).await,
            Err(ServiceError::NotFound)
        ));
    }
    #[tokio::test]
    async fn letters_the_queue_refused_are_tried_again_by_the_next_step_never_skipped() {
        // GIVEN 150 dead letters in the window, and a queue that refuses everything
        let w = world().await;
        seed(&w, 150, 1_759_990_000).await;
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        let (job, _) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        w.queue.fail_with(Some("throttled"));
        // WHEN a step runs
        let (after_fail, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        // THEN it ends at once, nothing counted failed, every letter still a dead letter
        assert_eq!(end, StepEnd::OutOfTime);
        assert_eq!(
            (after_fail.state, after_fail.done, after_fail.failed),
            (JobState::Running, 0, 0)
        );
        assert_eq!(after_fail.after, None, "the walk did not move past them");
        assert_eq!(
            w.log.dead_letters(&w.webhook.id, 200).await.unwrap().len(),
            150
        );
        // AND once the queue works, the next steps queue every letter once
        w.queue.fail_with(None);
        let (done, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(end, StepEnd::Completed);
        assert_eq!((done.done, done.failed), (150, 0));
        let ids: std::collections::BTreeSet<_> =
            w.queue.tasks().into_iter().map(|t| t.delivery_id).collect();
        assert_eq!((ids.len(), w.queue.tasks().len()), (150, 150));
        assert!(
            w.log
                .dead_letters(&w.webhook.id, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn asking_again_for_a_completed_window_that_still_has_dead_letters_resumes_it() {
        // GIVEN a completed job of 3 letters, and one letter of its window dead again (put back
        // by a concurrent redelivery that could not queue it)
        let w = world().await;
        seed(&w, 3, 1_759_990_000).await;
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        let (job, _) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        let (_, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(end, StepEnd::Completed);
        let again = w.queue.tasks()[0].clone();
        w.log
            .put_dead_letter(&DeadLetter {
                task: again.clone(),
                error: "receiver answered HTTP 500".into(),
                attempts: 4,
                at: Timestamp::from_unix(1_759_990_001),
            })
            .await
            .unwrap();
        // WHEN the same window is asked for again
        let (resumed, created) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        // THEN the same job runs again, over what is left only
        assert!(!created);
        assert_eq!(resumed.id, job.id);
        assert_eq!((resumed.state, resumed.total), (JobState::Running, 4));
        let (finished, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((end, finished.done), (StepEnd::Completed, 4));
        assert_eq!(w.queue.tasks().len(), 4);
        assert_eq!(w.queue.tasks()[3].delivery_id, again.delivery_id);
        // AND a further repeat finds nothing left: the job stays completed, nothing queued
        let (same, _) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        assert_eq!(
            (same.state, same.version),
            (JobState::Completed, finished.version)
        );
        assert_eq!(w.queue.tasks().len(), 4);
    }

    #[tokio::test]
    async fn a_job_whose_webhook_is_gone_completes_with_the_rest_failed() {
        // GIVEN a running job, then its webhook deleted
        let w = world().await;
        seed(&w, 5, 1_759_990_000).await;
        let window = RecoverWindow {
            since: Timestamp::from_unix(1_759_990_000),
            until: None,
        };
        let (job, _) = w
            .service
            .start_recover(&w.caller, &w.webhook.id, window)
            .await
            .unwrap();
        w.store
            .delete(&w.webhook.owner_id, &w.webhook.id)
            .await
            .unwrap();
        // WHEN a step runs
        let (job, end) = w
            .service
            .continue_recover(&w.webhook.id, &job.id, Duration::from_secs(5))
            .await
            .unwrap();
        // THEN the job ends, every letter failed for good, nothing queued
        assert_eq!(end, StepEnd::Completed);
        assert_eq!((job.done, job.failed), (0, 5));
        assert!(w.queue.tasks().is_empty());
    }

    #[test]
    fn pages_are_sized_to_the_time_left_at_the_pace_seen() {
        let ms = Duration::from_millis;
        // The first page of a step is a full one, whatever the time.
        assert_eq!(page_limit(Duration::ZERO, None), RECOVER_PAGE);
        // Then none below the margin…
        assert_eq!(page_limit(RECOVER_PAGE_MIN_TIME - ms(1), Some(ms(1))), 0);
        // …a full page at a fast pace…
        assert_eq!(
            page_limit(Duration::from_secs(8), Some(ms(1))),
            RECOVER_PAGE
        );
        // …and what fits half the time left past the margin at a slow one: (8 - 2) / 2 s at
        // 100 ms a letter.
        assert_eq!(page_limit(Duration::from_secs(8), Some(ms(100))), 30);
        assert_eq!(
            page_limit(RECOVER_PAGE_MIN_TIME, Some(Duration::from_secs(9))),
            1
        );
    }
}
