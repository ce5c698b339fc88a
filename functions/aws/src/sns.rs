//! [`SnsOperatorAlerts`]: the core's [`OperatorAlerts`] on SNS. When `template.yaml`'s
//! `OperatorTopicArn` is given, the delivery function publishes there every `webhook.disabled`
//! and every `webhook.failing` of a run that reached the last repeat (24 h by default; the rule
//! is `webhooks_core::notify::operator_subject`) (`OPERATOR_TOPIC_ARN`; the function may
//! `sns:Publish` to that topic only): one `Publish` per event, the subject naming the webhook,
//! the message the event's JSON envelope — what the owner's endpoint gets, never a secret. Operators subscribe what they like (email, chat,
//! a queue).
//!
//! Errors name the SNS error code only; the caller logs them and carries on (a notification
//! never fails the delivery that caused it).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use webhooks_core::notify::OperatorAlerts;

/// SNS's longest `Subject` (printable ASCII, no line breaks).
pub const MAX_SUBJECT: usize = 100;

/// Publishes operators' alerts to one SNS topic.
#[derive(Debug, Clone)]
pub struct SnsOperatorAlerts {
    client: Client,
    topic_arn: String,
}

impl SnsOperatorAlerts {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// An adapter on the shared SDK config (what the delivery function builds at cold start).
    pub fn from_config(sdk: &SdkConfig, topic_arn: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), topic_arn)
    }
}

/// `subject` as SNS takes it: printable ASCII (others become `?`), at most [`MAX_SUBJECT`].
pub fn sns_subject(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT)
        .collect()
}

#[async_trait]
impl OperatorAlerts for SnsOperatorAlerts {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(sns_subject(subject))
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SNS Publish to {}: {}", self.topic_arn, detail(&e)))
    }
}

fn detail<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(e) => e.err().code().unwrap_or("service error").to_owned(),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach SNS".to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        _ => "failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_printable_ascii_of_at_most_100_characters() {
        assert_eq!(
            sns_subject("dakkio webhook 1 disabled"),
            "dakkio webhook 1 disabled"
        );
        assert_eq!(sns_subject("a\nb — c"), "a?b ? c");
        assert_eq!(sns_subject(&"x".repeat(300)).len(), MAX_SUBJECT);
    }
}
