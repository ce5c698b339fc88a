//! The API Lambda's configuration, read once at cold start from the variables `template.yaml`
//! sets. A missing or bad variable stops the start with a message naming it.

use webhooks_core::validate::UrlPolicy;

use crate::auth::TokenRules;

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
    /// `OPEN_BUCKETS=true` lets a token without a `buckets` claim use any bucket (default: no
    /// bucket); `JWT_AUDIENCE` / `JWT_ISSUER`, when not empty, are required in every token.
    pub token_rules: TokenRules,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("jwt_secret", &"<redacted>")
            .field("url_policy", &self.url_policy)
            .field("token_rules", &self.token_rules)
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
        let flag = |name: &'static str| match get(name).as_deref() {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                why: format!("expected true or false, got {other:?}"),
            }),
        };
        let insecure = flag("ALLOW_INSECURE_URLS")?;
        let text = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(Self {
            token_rules: TokenRules {
                open_buckets: flag("OPEN_BUCKETS")?,
                audience: text("JWT_AUDIENCE"),
                issuer: text("JWT_ISSUER"),
            },
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
        // Strict token rules unless the deployment says otherwise.
        assert_eq!(ok.token_rules, TokenRules::default());
        assert!(!ok.token_rules.open_buckets);
        let e = ApiConfig::from_lookup(|k| match k {
            "JWT_SECRET" => Some("x".repeat(32)),
            "OPEN_BUCKETS" => Some("yes".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("OPEN_BUCKETS"));
        let open = ApiConfig::from_lookup(|k| match k {
            "JWT_SECRET" => Some("x".repeat(32)),
            "OPEN_BUCKETS" => Some("true".into()),
            "JWT_AUDIENCE" => Some("dakkio-webhooks".into()),
            "JWT_ISSUER" => Some(" ".into()),
            _ => None,
        })
        .unwrap();
        assert!(open.token_rules.open_buckets);
        assert_eq!(
            open.token_rules.audience.as_deref(),
            Some("dakkio-webhooks")
        );
        assert_eq!(open.token_rules.issuer, None);
        assert!(!format!("{ok:?}").contains("xxxx"));
    }
}
