//! SDK errors to [`StoreError`]: the only place that looks inside an `SdkError`.
//!
//! - a failed condition (`ConditionalCheckFailedException`) is reported by [`condition_failed`]
//!   and turned into `NotFound` or `Conflict` by the operation that set the condition;
//! - everything else the backend or the network does (throttling, timeouts, unreachable
//!   endpoint, unreadable responses, other service errors) is `Unavailable`;
//! - an item that cannot be decoded is `Corrupt` ([`corrupt`]).
//!
//! Messages name the operation and the error code, never the secret: the service's message is
//! kept for debugging, and [`redact`] strips a known secret from any message before it leaves the
//! adapter.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use webhooks_core::WebhookId;
use webhooks_core::ports::StoreError;
use webhooks_core::webhook::Secret;

/// Whether `err` is DynamoDB refusing a write because its condition expression was false.
pub(crate) fn condition_failed<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// `err` as the retryable `Unavailable`, with `op` (the DynamoDB operation) for context.
pub(crate) fn unavailable<E, R>(op: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let detail = match &err {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => {
            format!("could not reach DynamoDB: {}", DisplayErrorContext(&err))
        }
        SdkError::ResponseError(_) => "unreadable response from DynamoDB".to_owned(),
        SdkError::ConstructionFailure(_) => {
            format!("request not built: {}", DisplayErrorContext(&err))
        }
        SdkError::ServiceError(e) => {
            let e = e.err();
            match e.message() {
                Some(m) => format!("{}: {m}", e.code().unwrap_or("unknown error")),
                None => e.code().unwrap_or("unknown error").to_owned(),
            }
        }
        // `SdkError` is non-exhaustive.
        _ => DisplayErrorContext(&err).to_string(),
    };
    StoreError::Unavailable(format!("DynamoDB {op}: {detail}"))
}

/// An item of webhook `id` that could not be decoded (or encoded). `problem` must not contain the
/// secret (pass it through [`redact_str`] first): it is logged here.
pub(crate) fn corrupt(id: &str, problem: impl std::fmt::Display) -> StoreError {
    tracing::error!(webhook_id = id, %problem, "undecodable webhook item in DynamoDB");
    StoreError::Corrupt(format!("webhook item {id}: {problem}"))
}

/// Removes `secret` from the message of `err` (for errors of requests that carried it).
pub(crate) fn redact(err: StoreError, secret: &Secret) -> StoreError {
    let clean = |m: String| redact_str(m, secret);
    match err {
        StoreError::Conflict(m) => StoreError::Conflict(clean(m)),
        StoreError::Unavailable(m) => StoreError::Unavailable(clean(m)),
        StoreError::Corrupt(m) => StoreError::Corrupt(clean(m)),
        StoreError::NotFound => StoreError::NotFound,
    }
}

/// `message` with every occurrence of `secret` replaced.
pub(crate) fn redact_str(message: String, secret: &Secret) -> String {
    match secret.expose() {
        "" => message,
        s => message.replace(s, "<redacted>"),
    }
}

/// The `Conflict` of a `create` whose id is taken.
pub(crate) fn id_taken(id: &WebhookId) -> StoreError {
    StoreError::Conflict(format!("webhook {id} already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
        ThrottlingException,
    };

    #[test]
    fn a_failed_condition_is_recognised_and_nothing_else_is() {
        // GIVEN a conditional-check failure and a throttling error, as the SDK reports them
        let ccf: SdkError<PutItemError, ()> = SdkError::service_error(
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .build(),
                    )
                    .build(),
            ),
            (),
        );
        let throttled: SdkError<PutItemError, ()> = SdkError::service_error(
            PutItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("ProvisionedThroughputExceededException")
                            .build(),
                    )
                    .build(),
            ),
            (),
        );
        // WHEN classified THEN only the first is a failed condition
        assert!(condition_failed(&ccf));
        assert!(!condition_failed(&throttled));
    }

    #[test]
    fn throttling_timeouts_and_unreachable_endpoints_are_unavailable_and_retryable() {
        // GIVEN a throttled update and a timed-out update
        let throttled: SdkError<UpdateItemError, ()> = SdkError::service_error(
            UpdateItemError::ThrottlingException(
                ThrottlingException::builder()
                    .message("Rate of requests exceeds the allowed throughput.")
                    .meta(ErrorMetadata::builder().code("ThrottlingException").build())
                    .build(),
            ),
            (),
        );
        let timeout: SdkError<UpdateItemError, ()> = SdkError::timeout_error("slow");
        // WHEN mapped THEN both are Unavailable (retryable), naming the operation and the code
        let e = unavailable("UpdateItem", throttled);
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            e.to_string().contains("UpdateItem") && e.to_string().contains("ThrottlingException")
        );
        let e = unavailable("UpdateItem", timeout);
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("timed out")),
            "{e:?}"
        );
    }

    #[test]
    fn redaction_removes_the_secret_from_every_message() {
        // GIVEN an error whose message happens to contain the secret
        let secret = Secret::new("s3cr3t-value".into());
        let err = StoreError::Unavailable("ValidationException: bad value s3cr3t-value".into());
        // WHEN redacted THEN the secret is gone and the rest is kept
        let msg = redact(err, &secret).to_string();
        assert!(
            !msg.contains("s3cr3t-value") && msg.contains("ValidationException"),
            "{msg}"
        );
    }
}
