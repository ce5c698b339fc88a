//! The API Lambda's configuration, read once at cold start from the variables `template.yaml`
//! sets. A missing or bad variable stops the start with a message naming it.

use webhooks_core::validate::UrlPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Configuration shared by the API entry points.
pub struct ApiConfig {
    /// HS256 key for user tokens (`JWT_SECRET`, at least 32 bytes).
    pub jwt_secret: Vec<u8>,
    /// `ALLOW_INSECURE_URLS=true` accepts http:// and private targets (never in production).
    pub url_policy: UrlPolicy,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("jwt_secret", &"<redacted>")
            .field("url_policy", &self.url_policy)
            .finish()
    }
}

pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret = get("JWT_SECRET").ok_or(ConfigError::Missing("JWT_SECRET"))?;
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                why: format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            });
        }
        let insecure = match get("ALLOW_INSECURE_URLS").as_deref() {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "ALLOW_INSECURE_URLS",
                    why: format!("expected true or false, got {other:?}"),
                });
            }
        };
        Ok(Self {
            jwt_secret: secret.into_bytes(),
            url_policy: if insecure {
                UrlPolicy::LOCAL
            } else {
                UrlPolicy::PRODUCTION
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_short_and_bad_variables_are_named() {
        let e = ApiConfig::from_lookup(|_| None).unwrap_err();
        assert!(e.to_string().contains("JWT_SECRET"));
        let e =
            ApiConfig::from_lookup(|k| (k == "JWT_SECRET").then(|| "short".into())).unwrap_err();
        assert!(e.to_string().contains("at least 32"));
        let e = ApiConfig::from_lookup(|k| match k {
            "JWT_SECRET" => Some("x".repeat(32)),
            _ => Some("maybe".into()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("ALLOW_INSECURE_URLS"));
        let ok = ApiConfig::from_lookup(|k| (k == "JWT_SECRET").then(|| "x".repeat(32))).unwrap();
        assert_eq!(ok.url_policy, UrlPolicy::PRODUCTION);
        assert!(!format!("{ok:?}").contains("xxxx"));
    }
}
