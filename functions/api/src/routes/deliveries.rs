//! A webhook's deliveries: test sends, the attempt history, dead letters and their redelivery,
//! and recovery jobs (every dead letter of a time window, see `webhooks_core::recovery`).
//!
//! The history and the dead letters are paginated with the same signed cursors as the webhook
//! list ([`crate::cursor`]), each bound to its webhook and filters.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use webhooks_core::delivery::{AttemptRecord, AttemptStatus, DeadLetter};
use webhooks_core::delivery_service::QueuedDelivery;
use webhooks_core::hourly::HourPoint;
use webhooks_core::ports::{AttemptQuery, DeadLetterQuery};
use webhooks_core::recovery::{JobState, RecoverJob, RecoverWindow, StepEnd};
use webhooks_core::{DeliveryId, EventType, OwnerId, RecoverJobId, Timestamp, WebhookId};

use crate::AppState;
use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, parse_json, query, require_json};
use crate::routes::webhooks::webhook_id;

/// `POST /api/webhooks/{id}/test` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRequest {
    /// Which event's sample to send (default: the webhook's first event).
    pub event: Option<String>,
}

/// One page of attempts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptList {
    pub data: Vec<AttemptRecord>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page. A
    /// page may be shorter than `limit` and still have a next one.
    pub next_cursor: Option<String>,
}

/// A dead letter as listed (the body is not repeated here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub delivery_id: DeliveryId,
    pub event: EventType,
    pub error: String,
    pub attempts: u32,
    pub at: Timestamp,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            delivery_id: d.task.delivery_id,
            event: d.task.event,
            error: d.error,
            attempts: d.attempts,
            at: d.at,
        }
    }
}

/// One page of dead letters, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    pub data: Vec<DeadLetterView>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redelivered {
    pub deliveries: Vec<QueuedDelivery>,
}

/// Query of `GET …/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptParams {
    /// 1–100 (default 50).
    pub limit: Option<String>,
    /// `nextCursor` of the previous page (with the same filters).
    pub cursor: Option<String>,
    /// Only attempts with this result: `success` or `failed`.
    pub status: Option<String>,
    /// Only attempts of this event (`alert.triggered`, `data.received`, `bucket.updated`,
    /// `webhook.test`).
    pub event: Option<String>,
    /// Only attempts made at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only attempts made before this time (RFC 3339).
    pub until: Option<String>,
}

/// Query of `GET …/dead-letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// 1–100 (default 50).
    pub limit: Option<String>,
    /// `nextCursor` of the previous page (with the same filters).
    pub cursor: Option<String>,
    /// Only dead letters of this event.
    pub event: Option<String>,
    /// Only deliveries given up at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only deliveries given up before this time (RFC 3339).
    pub until: Option<String>,
}

/// Page size of the delivery lists when none is asked for.
pub const DEFAULT_LIMIT: usize = 50;

fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=crate::routes::webhooks::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "limit must be a whole number from 1 to 100",
                )
            }),
    }
}

fn event_filter(raw: Option<&str>) -> Result<Option<EventType>, ApiError> {
    raw.map(|e| {
        e.parse::<EventType>().map_err(|_| {
            ApiError::bad_request(
                "invalid_event",
                format!(
                    "unknown event {e:?}; known events: alert.triggered, data.received, bucket.updated, webhook.test"
                ),
            )
        })
    })
    .transpose()
}

/// `since` and `until` (RFC 3339; `since` before `until` when both are given).
fn time_window(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ApiError> {
    let time = |name: &str, v: Option<&str>| {
        v.map(|v| {
            Timestamp::parse(v).map_err(|_| {
                ApiError::bad_request(
                    "invalid_time",
                    format!("{name} {v:?} is not an RFC 3339 time (e.g. 2024-01-15T10:30:00Z)"),
                )
            })
        })
        .transpose()
    };
    let (since, until) = (time("since", since)?, time("until", until)?);
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(ApiError::bad_request(
            "invalid_time",
            "until must be later than since",
        ));
    }
    Ok((since, until))
}

/// What a delivery-list cursor is bound to: the list, the webhook and every filter.
fn scope(list: &str, webhook: &WebhookId, filters: &[(&str, Option<String>)]) -> String {
    let mut s = format!("{list}/{webhook}");
    for (name, v) in filters {
        s.push_str(&format!("/{name}={}", v.as_deref().unwrap_or("")));
    }
    s
}

fn opt<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// Send a signed `webhook.test` delivery now.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/test", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    request_body(content = Option<TestRequest>, description = "Optional: which event's sample to send"),
    responses(
        (status = 202, description = "Queued", body = QueuedDelivery),
        (status = 400, description = "`invalid_id`, `invalid_event`, `webhook_inactive`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<QueuedDelivery>), ApiError> {
    let id = webhook_id(&id)?;
    let req: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest::default()
    } else {
        require_json(&headers)?;
        // `null` is the same as no body.
        parse_json::<Option<TestRequest>>(&body)?.unwrap_or_default()
    };
    let sample = req
        .event
        .map(|e| {
            e.parse::<EventType>()
                .ok()
                .filter(|e| EventType::SUBSCRIBABLE.contains(e))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_event", format!("unknown event {e:?}"))
                })
        })
        .transpose()?;
    let queued = state
        .deliveries
        .send_test(&auth.caller, &id, sample)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// Delivery attempts, newest first, paginated and filtered.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), AttemptParams),
    responses(
        (status = 200, body = AttemptList),
        (status = 400, description = "`invalid_id`, `invalid_query` (limit, unknown parameter), `invalid_status`, `invalid_event`, `invalid_time`, `invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<AttemptList>, ApiError> {
    let id = webhook_id(&id)?;
    let p: AttemptParams = query(&uri)?;
    let limit = limit(p.limit.as_deref())?;
    let status = p
        .status
        .as_deref()
        .map(|s| match s {
            "success" => Ok(AttemptStatus::Success),
            "failed" => Ok(AttemptStatus::Failed),
            other => Err(ApiError::bad_request(
                "invalid_status",
                format!("status {other:?} is not `success` or `failed`"),
            )),
        })
        .transpose()?;
    let event = event_filter(p.event.as_deref())?;
    let (since, until) = time_window(p.since.as_deref(), p.until.as_deref())?;
    let owner = &auth.caller.owner;
    let scope = scope(
        "deliveries",
        &id,
        &[
            ("status", p.status.clone()),
            ("event", opt(event.map(|e| e.as_str()))),
            ("since", opt(since.map(|t| t.unix()))),
            ("until", opt(until.map(|t| t.unix()))),
        ],
    );
    let after = opened(&state, owner, &scope, p.cursor.as_deref())?;
    let q = AttemptQuery {
        status,
        event,
        since,
        until,
        after,
        limit,
    };
    let page = state.deliveries.history(&auth.caller, &id, &q).await?;
    Ok(Json(AttemptList {
        data: page.items,
        next_cursor: page
            .next_after
            .map(|a| state.cursors.seal(owner, &scope, &a)),
    }))
}

fn opened(
    state: &AppState,
    owner: &OwnerId,
    scope: &str,
    cursor: Option<&str>,
) -> Result<Option<String>, ApiError> {
    cursor
        .map(|c| state.cursors.open(owner, scope, c))
        .transpose()
}

/// `GET …/stats/hourly` takes no query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A webhook's last 24 hours, one entry per hour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourlyList {
    /// 24 hours, oldest first; the last is the current (partial) hour. An hour with no finished
    /// delivery has zeros and null latencies.
    pub data: Vec<HourPoint>,
}

/// Deliveries finished per hour over the last 24 hours, by outcome, with the p50/p95 latency
/// of the delivering attempts: read from hourly aggregates the store keeps as deliveries
/// finish (`webhooks_core::hourly`), never from the history.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/stats/hourly", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, body = HourlyList),
        (status = 400, description = "`invalid_id`, `invalid_query` (any query parameter)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn hourly(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<HourlyList>, ApiError> {
    let id = webhook_id(&id)?;
    let NoParams {} = query(&uri)?;
    let data = state.deliveries.hourly(&auth.caller, &id).await?;
    Ok(Json(HourlyList { data }))
}

/// Deliveries that failed for good and can be redelivered, oldest first, paginated and
/// filtered.
#[utoipa::path(
    get, path = "/api/webhooks/{id}/dead-letters", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), DeadLetterParams),
    responses(
        (status = 200, body = DeadLetterList),
        (status = 400, description = "`invalid_id`, `invalid_query` (limit, unknown parameter), `invalid_event`, `invalid_time`, `invalid_cursor`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Json<DeadLetterList>, ApiError> {
    let id = webhook_id(&id)?;
    let p: DeadLetterParams = query(&uri)?;
    let limit = limit(p.limit.as_deref())?;
    let event = event_filter(p.event.as_deref())?;
    let (since, until) = time_window(p.since.as_deref(), p.until.as_deref())?;
    let owner = &auth.caller.owner;
    let scope = scope(
        "dead-letters",
        &id,
        &[
            ("event", opt(event.map(|e| e.as_str()))),
            ("since", opt(since.map(|t| t.unix()))),
            ("until", opt(until.map(|t| t.unix()))),
        ],
    );
    let after = opened(&state, owner, &scope, p.cursor.as_deref())?;
    let q = DeadLetterQuery {
        event,
        since,
        until,
        after,
        limit,
    };
    let page = state.deliveries.dead_letters(&auth.caller, &id, &q).await?;
    Ok(Json(DeadLetterList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page
            .next_after
            .map(|a| state.cursors.seal(owner, &scope, &a)),
    }))
}

/// Redeliver one dead letter: same `deliveryId` and body, attempts counted from 1 again.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), ("deliveryId" = String, Path, description = "Delivery id")),
    responses(
        (status = 202, body = Redelivered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody),
        (status = 404, description = "No such webhook, or no dead letter with that id (already redelivered, possibly by a concurrent call: each dead letter is claimed by exactly one)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redeliver_one(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = webhook_id(&id)?;
    let delivery = DeliveryId::parse(&delivery)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("delivery id {e}")))?;
    let deliveries = state
        .deliveries
        .redeliver(&auth.caller, &id, Some(&delivery), 1)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { deliveries })))
}

/// Redeliver all of a webhook's dead letters (up to 100 per call). A dead letter a concurrent
/// call claimed first is left to it (each is queued once).
#[utoipa::path(
    post, path = "/api/webhooks/{id}/deliveries/redeliver", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 202, body = Redelivered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn redeliver_all(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id = webhook_id(&id)?;
    let deliveries = state
        .deliveries
        .redeliver(&auth.caller, &id, None, 100)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { deliveries })))
}

/// `POST /api/webhooks/{id}/recover` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverRequest {
    /// Redeliver dead letters given up at or after this time (RFC 3339).
    #[schema(example = "2024-01-15T02:00:00Z")]
    pub since: String,
    /// …and before this time (RFC 3339; default: when the job starts).
    pub until: Option<String>,
}

/// A recovery job and its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverJobView {
    #[schema(value_type = String, pattern = "^[0-9a-f]{24}$")]
    pub id: RecoverJobId,
    pub webhook_id: WebhookId,
    pub since: Timestamp,
    /// The end of the window: `until` as asked, or when the job started if earlier.
    pub until: Timestamp,
    /// `running` until every dead letter of the window was walked, then `completed`.
    pub state: JobState,
    /// Dead letters in the window when the job started.
    pub total: u64,
    /// Redelivered so far (queued again with the same `deliveryId` and body).
    pub done: u64,
    /// Not redelivered for good (the webhook is gone). A letter whose redelivery could not be
    /// queued yet is not counted here: it stays a dead letter and a later step retries it.
    pub failed: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<RecoverJob> for RecoverJobView {
    fn from(j: RecoverJob) -> Self {
        Self {
            id: j.id,
            webhook_id: j.webhook_id,
            since: j.since,
            until: j.until,
            state: j.state,
            total: j.total,
            done: j.done,
            failed: j.failed,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

/// Redeliver every dead letter given up in a time window, however many, as a job.
///
/// Answered `202` with the job; its progress is at `Location` (`GET …/recover/{jobId}`).
/// Asking again for the same window names the same job (answered as it stands; resumed when
/// its window still holds dead letters) and redelivers nothing twice. In the local mode the job runs in the background; on AWS each request on a
/// running job (this `POST` repeated, or a `GET` of it) works on it for up to 10 s before
/// answering, so polling the job until `state` is `completed` finishes it.
#[utoipa::path(
    post, path = "/api/webhooks/{id}/recover", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = RecoverRequest,
    responses(
        (status = 202, description = "The job (new, or the one this window already has)", body = RecoverJobView,
            headers(("Location" = String, description = "Where the job's progress is"))),
        (status = 400, description = "`invalid_id`, `malformed_json`, `invalid_body`, `invalid_window`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn recover(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RecoverRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id = webhook_id(&id)?;
    let window = RecoverWindow::parse(&body.since, body.until.as_deref(), state.deliveries.now())
        .map_err(webhooks_core::webhook_service::ServiceError::from)?;
    let (job, created) = state
        .deliveries
        .start_recover(&auth.caller, &id, window)
        .await?;
    if created {
        tracing::info!(webhook = %id, job = %job.id, total = job.total, "recovery requested");
    }
    let job = advance(&state, job).await?;
    let location = format!("/api/webhooks/{id}/recover/{}", job.id);
    let mut res = (StatusCode::ACCEPTED, Json(RecoverJobView::from(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// A recovery job's progress (on AWS, a running job is worked on for up to 10 s first).
#[utoipa::path(
    get, path = "/api/webhooks/{id}/recover/{jobId}", tag = "deliveries",
    params(("id" = String, Path, description = "Webhook id"), ("jobId" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = RecoverJobView), (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`insufficient_scope`: a producer token", body = ErrorBody),
        (status = 404, description = "No such webhook, or no such job of it", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn recover_job(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, job)): Path<(String, String)>,
) -> Result<Json<RecoverJobView>, ApiError> {
    let id = webhook_id(&id)?;
    let job = RecoverJobId::parse(&job)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("job id {e}")))?;
    let job = state
        .deliveries
        .recover_job(&auth.caller, &id, &job)
        .await?;
    Ok(Json(advance(&state, job).await?.into()))
}

/// Moves a running job on, the runtime's way (see `webhooks_core::recovery`): in the
/// background (a task, unless a runner holds it), or here within the request's budget.
async fn advance(state: &AppState, job: RecoverJob) -> Result<RecoverJob, ApiError> {
    if job.state == JobState::Completed {
        return Ok(job);
    }
    if state.recover_in_background {
        let held = job.lease_until.is_some_and(|l| l > state.deliveries.now());
        if !held {
            spawn_runner(
                state.deliveries.clone(),
                job.webhook_id.clone(),
                job.id.clone(),
            );
        }
        return Ok(job);
    }
    let (job, _) = state
        .deliveries
        .continue_recover(&job.webhook_id, &job.id, state.deliveries.budget())
        .await?;
    Ok(job)
}

/// Steps a job until it completes, another runner holds it, or the store keeps failing (a
/// later `GET` starts a runner again).
fn spawn_runner(
    deliveries: webhooks_core::delivery_service::DeliveryService,
    webhook: WebhookId,
    job: RecoverJobId,
) {
    const MAX_ERRORS: u32 = 5;
    tokio::spawn(async move {
        let mut errors = 0;
        loop {
            match deliveries
                .continue_recover(&webhook, &job, deliveries.budget())
                .await
            {
                Ok((_, StepEnd::OutOfTime)) => {}
                Ok((_, StepEnd::Completed | StepEnd::Busy)) => return,
                Err(e) => {
                    errors += 1;
                    tracing::warn!(webhook = %webhook, job = %job, error = %e, errors, "recovery step failed");
                    if errors >= MAX_ERRORS {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}
