//! Configuration of the AWS adapters: the SDK's shared config (region, credentials, endpoint) and
//! the names of the resources `template.yaml` creates, read from the environment SAM sets.
//!
//! Must not depend on anything but the AWS SDK config crates: entry points call this at cold start
//! and fail early with a message that names what is missing.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// How long the SDK waits for a TCP/TLS connection to DynamoDB or SQS. A connection inside an
/// AWS region takes milliseconds; one that takes seconds will not come.
pub const SDK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt of an SDK call (one HTTP request) may take. DynamoDB and SQS answer in
/// milliseconds (p99 tens of ms); an attempt still open after 3 s is hung, and the SDK's retry
/// (standard mode: 3 attempts) does better on a fresh connection than waiting on it.
pub const SDK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one SDK call may take with its retries. Below both functions' deadlines with room
/// to spare: the API function's `Timeout` is 15 s (a publish answers within its 10 s budget,
/// `webhooks_core::delivery_service::PUBLISH_BUDGET`), the delivery function's 60 s; so one hung call can
/// never eat a whole invocation, and the caller still has time to answer or to report.
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

/// The SDK timeouts every client of the service gets (see the constants).
pub fn sdk_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(SDK_CONNECT_TIMEOUT)
        .operation_attempt_timeout(SDK_ATTEMPT_TIMEOUT)
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build()
}

/// Loads the AWS SDK configuration the usual way: environment, profile, container/instance
/// credentials, with [`sdk_timeouts`] (the SDK sets no operation or attempt timeout by itself).
/// It honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_DYNAMODB`), so pointing the service at a
/// local emulator needs no code branch.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// What [`load_sdk_config`] loads with (tests add a region, so nothing asks the instance
/// metadata service).
pub fn sdk_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(sdk_timeouts())
}

/// A configuration value is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set ({what})")]
    Missing {
        name: &'static str,
        what: &'static str,
    },
    #[error("environment variable {name} is empty ({what})")]
    Empty {
        name: &'static str,
        what: &'static str,
    },
}

/// Reads the required variable `name` through `lookup`: trimmed, and neither missing nor empty.
fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    what: &'static str,
) -> Result<String, ConfigError> {
    match lookup(name) {
        None => Err(ConfigError::Missing { name, what }),
        Some(v) if v.trim().is_empty() => Err(ConfigError::Empty { name, what }),
        Some(v) => Ok(v.trim().to_owned()),
    }
}

/// Where the DynamoDB store keeps its data, and the KMS key its secrets are sealed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoDbConfig {
    /// The webhooks table (`WebhooksTable` in `template.yaml`).
    pub table_name: String,
    /// The KMS key (ARN, id or alias) whose data keys seal webhook secrets and header values
    /// (`SecretsKey` in `template.yaml`; see [`crate::kms`]).
    pub secrets_key_arn: String,
    /// The index an owner's list is read from when it is not the current one
    /// ([`crate::dynamodb::BY_OWNER_INDEX`]): `byOwner` while a stack is between the steps of
    /// the index upgrade (`template.yaml`, parameter `WebhookIndexUpgrade`), otherwise `None`.
    pub owner_index: Option<String>,
}

impl DynamoDbConfig {
    /// The variable holding the webhooks table's name; `template.yaml` sets it to
    /// `!Ref WebhooksTable`.
    pub const TABLE_ENV: &'static str = "WEBHOOKS_TABLE";
    /// The variable holding the secrets key's ARN (`!GetAtt SecretsKey.Arn`).
    pub const SECRETS_KEY_ENV: &'static str = "SECRETS_KEY_ARN";
    /// The variable naming the owner index to list from during the index upgrade, optional.
    pub const OWNER_INDEX_ENV: &'static str = "WEBHOOKS_OWNER_INDEX";

    /// Reads [`Self::TABLE_ENV`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment in production, a map in tests,
    /// so tests never mutate the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required(&lookup, Self::TABLE_ENV, "the DynamoDB table of webhooks")?,
            secrets_key_arn: required(
                &lookup,
                Self::SECRETS_KEY_ENV,
                "the KMS key webhook secrets are sealed under",
            )?,
            owner_index: lookup(Self::OWNER_INDEX_ENV)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        })
    }
}

/// Where the delivery log keeps attempts, final markers and dead letters, and the webhooks table
/// whose counters `finish` updates in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLogConfig {
    /// The deliveries table (`DeliveriesTable` in `template.yaml`).
    pub deliveries_table: String,
    /// The webhooks table (`WebhooksTable`).
    pub webhooks_table: String,
}

impl DeliveryLogConfig {
    /// The variable holding the deliveries table's name (`!Ref DeliveriesTable`).
    pub const TABLE_ENV: &'static str = "DELIVERIES_TABLE";

    /// Reads [`Self::TABLE_ENV`] and [`DynamoDbConfig::TABLE_ENV`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            deliveries_table: required(
                &lookup,
                Self::TABLE_ENV,
                "the DynamoDB table of delivery attempts and dead letters",
            )?,
            webhooks_table: required(
                &lookup,
                DynamoDbConfig::TABLE_ENV,
                "the DynamoDB table of webhooks",
            )?,
        })
    }
}

/// The delivery queue, as the API (which enqueues) needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsConfig {
    /// The URL of the delivery queue (`DeliveryQueue` in `template.yaml`).
    pub queue_url: String,
}

impl SqsConfig {
    /// The variable holding the delivery queue's URL (`!Ref DeliveryQueue`).
    pub const QUEUE_ENV: &'static str = "QUEUE_URL";

    /// Reads [`Self::QUEUE_ENV`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            queue_url: required(&lookup, Self::QUEUE_ENV, "the SQS delivery queue's URL")?,
        })
    }
}

/// The queues, as the delivery worker needs them: the delivery queue (to change a message's
/// visibility), the dead-letter queue (to move a delivery that gave up) and the slow lane's
/// queue (to move the deliveries of webhooks that are timing out or whose breaker is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsWorkerConfig {
    pub queue_url: String,
    /// The URL of the dead-letter queue (`DeadLetterQueue` in `template.yaml`).
    pub dead_letter_queue_url: String,
    /// The URL of the slow lane's queue (`SlowQueue` in `template.yaml`; DESIGN.md §7), when
    /// set. Optional: without it the function has one lane (`webhooks_core::flow::Lane::Only`)
    /// and every deferral stays on the delivery queue, as before the slow lane existed (a
    /// deployment from an older template, a local emulator set up without it).
    pub slow_queue_url: Option<String>,
}

impl SqsWorkerConfig {
    /// The variable holding the dead-letter queue's URL (`!Ref DeadLetterQueue`).
    pub const DLQ_ENV: &'static str = "DLQ_URL";
    /// The variable holding the slow lane's queue URL (`!Ref SlowQueue`), optional.
    pub const SLOW_QUEUE_ENV: &'static str = "SLOW_QUEUE_URL";

    /// Reads [`SqsConfig::QUEUE_ENV`] and [`Self::DLQ_ENV`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            queue_url: SqsConfig::from_lookup(&lookup)?.queue_url,
            dead_letter_queue_url: required(
                &lookup,
                Self::DLQ_ENV,
                "the SQS dead-letter queue's URL",
            )?,
            slow_queue_url: lookup(Self::SLOW_QUEUE_ENV)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_client_gets_operation_and_attempt_timeouts_below_the_functions_deadlines() {
        // GIVEN the loader the Lambda mains use WHEN a config is loaded
        let sdk = sdk_loader()
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        // THEN it carries the three timeouts (the SDK sets no operation or attempt timeout)
        let t = sdk.timeout_config().expect("a timeout config");
        assert_eq!(t.connect_timeout(), Some(SDK_CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(SDK_ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(SDK_OPERATION_TIMEOUT));
        // AND a hung call ends before a publish's budget (itself below the API function's
        // 15 s timeout; tests/it/template.rs checks that against template.yaml)
        assert!(SDK_ATTEMPT_TIMEOUT < SDK_OPERATION_TIMEOUT);
        assert!(SDK_OPERATION_TIMEOUT < webhooks_core::delivery_service::PUBLISH_BUDGET);
    }

    #[test]
    fn config_reads_the_table_name_and_names_the_missing_variable() {
        let ok = DynamoDbConfig::from_lookup(|n| match n {
            "WEBHOOKS_TABLE" => Some("t1".into()),
            "SECRETS_KEY_ARN" => Some("arn:aws:kms:us-east-1:1:key/k".into()),
            _ => None,
        });
        assert_eq!(
            ok,
            Ok(DynamoDbConfig {
                table_name: "t1".into(),
                secrets_key_arn: "arn:aws:kms:us-east-1:1:key/k".into(),
                owner_index: None,
            })
        );
        // AND the owner index of an upgrade in progress is read when set
        let upgrading = DynamoDbConfig::from_lookup(|n| match n {
            "WEBHOOKS_OWNER_INDEX" => Some(" byOwner ".into()),
            _ => Some("x".into()),
        });
        assert_eq!(upgrading.unwrap().owner_index.as_deref(), Some("byOwner"));
        // AND without the secrets key the function does not start: it would store secrets in
        // clear
        let err = DynamoDbConfig::from_lookup(|n| (n == "WEBHOOKS_TABLE").then(|| "t1".into()))
            .unwrap_err();
        assert!(err.to_string().contains("SECRETS_KEY_ARN"), "{err}");

        let err = DynamoDbConfig::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("WEBHOOKS_TABLE"), "{err}");
        assert!(matches!(err, ConfigError::Missing { .. }));

        let err = DynamoDbConfig::from_lookup(|_| Some("  ".into())).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Empty {
                    name: "WEBHOOKS_TABLE",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn delivery_side_configs_read_their_variables_and_name_the_missing_one() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let all = env(&[
            ("WEBHOOKS_TABLE", "w"),
            ("DELIVERIES_TABLE", " d "),
            ("QUEUE_URL", "http://q"),
            ("DLQ_URL", "http://dlq"),
        ]);
        assert_eq!(
            DeliveryLogConfig::from_lookup(all),
            Ok(DeliveryLogConfig {
                deliveries_table: "d".into(),
                webhooks_table: "w".into()
            })
        );
        assert_eq!(
            SqsWorkerConfig::from_lookup(all),
            Ok(SqsWorkerConfig {
                queue_url: "http://q".into(),
                dead_letter_queue_url: "http://dlq".into(),
                slow_queue_url: None,
            })
        );
        // AND the slow lane's queue is read when set (empty: none)
        let with_slow = env(&[
            ("QUEUE_URL", "http://q"),
            ("DLQ_URL", "http://dlq"),
            ("SLOW_QUEUE_URL", " http://slow "),
        ]);
        assert_eq!(
            SqsWorkerConfig::from_lookup(with_slow)
                .unwrap()
                .slow_queue_url
                .as_deref(),
            Some("http://slow")
        );
        let empty = env(&[
            ("QUEUE_URL", "http://q"),
            ("DLQ_URL", "http://dlq"),
            ("SLOW_QUEUE_URL", " "),
        ]);
        assert_eq!(
            SqsWorkerConfig::from_lookup(empty).unwrap().slow_queue_url,
            None
        );
        assert_eq!(SqsConfig::from_lookup(all).unwrap().queue_url, "http://q");

        let err = DeliveryLogConfig::from_lookup(env(&[("DELIVERIES_TABLE", "d")])).unwrap_err();
        assert!(err.to_string().contains("WEBHOOKS_TABLE"), "{err}");
        let err = SqsWorkerConfig::from_lookup(env(&[("QUEUE_URL", "q")])).unwrap_err();
        assert!(err.to_string().contains("DLQ_URL"), "{err}");
        let err = SqsConfig::from_lookup(env(&[("QUEUE_URL", "")])).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Empty {
                    name: "QUEUE_URL",
                    ..
                }
            ),
            "{err}"
        );
    }
}
