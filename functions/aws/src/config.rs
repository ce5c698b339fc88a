//! Configuration of the AWS adapters: the SDK's shared config (region, credentials, endpoint) and
//! the names of the resources `template.yaml` creates, read from the environment SAM sets.
//!
//! Must not depend on anything but the AWS SDK config crates: entry points call this at cold start
//! and fail early with a message that names what is missing.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the AWS SDK configuration the usual way: environment, profile, container/instance
/// credentials. It honours `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_DYNAMODB`), so pointing the
/// service at a local emulator needs no code branch.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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

/// Where the DynamoDB store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoDbConfig {
    /// The webhooks table (`WebhooksTable` in `template.yaml`).
    pub table_name: String,
}

impl DynamoDbConfig {
    /// The variable holding the webhooks table's name; `template.yaml` sets it to
    /// `!Ref WebhooksTable`.
    pub const TABLE_ENV: &'static str = "WEBHOOKS_TABLE";

    /// Reads [`Self::TABLE_ENV`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment in production, a map in tests,
    /// so tests never mutate the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (name, what) = (Self::TABLE_ENV, "the DynamoDB table of webhooks");
        match lookup(name) {
            None => Err(ConfigError::Missing { name, what }),
            Some(v) if v.trim().is_empty() => Err(ConfigError::Empty { name, what }),
            Some(v) => Ok(Self {
                table_name: v.trim().to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_the_table_name_and_names_the_missing_variable() {
        let ok = DynamoDbConfig::from_lookup(|n| (n == "WEBHOOKS_TABLE").then(|| "t1".into()));
        assert_eq!(
            ok,
            Ok(DynamoDbConfig {
                table_name: "t1".into()
            })
        );

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
}
