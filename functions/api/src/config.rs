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
    /// HS256 key for user tokens (`JWT_SECRET`, at least 32 bytes). Empty when
    /// [`jwt_secret_id`](Self::jwt_secret_id) is set, until the entry point has read it
    /// ([`set_jwt_secret`](Self::set_jwt_secret)).
    pub jwt_secret: Vec<u8>,
    /// `JWT_SECRET_ID`: the Secrets Manager secret (ARN or name) the key is read from at cold
    /// start instead of `JWT_SECRET` (which must then be unset).
    pub jwt_secret_id: Option<String>,
    /// `ALLOW_INSECURE_URLS=true` accepts http:// and private targets (never in production).
    pub url_policy: UrlPolicy,
    /// `OPEN_BUCKETS=true` lets a token without a `buckets` claim use any bucket (default: no
    /// bucket); `JWT_AUDIENCE` / `JWT_ISSUER`, when not empty, are required in every token.
    pub token_rules: TokenRules,
    /// `JWKS_URL`: when set, RS256/ES256 tokens are also accepted, verified with the key their
    /// `kid` names in this JSON Web Key Set (`crate::jwks`); HS256 keeps working.
    pub jwks_url: Option<String>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("jwt_secret", &"<redacted>")
            .field("jwt_secret_id", &self.jwt_secret_id)
            .field("url_policy", &self.url_policy)
            .field("token_rules", &self.token_rules)
            .field("jwks_url", &self.jwks_url)
            .finish()
    }
}

pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret_id = get("JWT_SECRET_ID")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let secret = match (&secret_id, get("JWT_SECRET")) {
            (Some(_), Some(s)) if !s.is_empty() => {
                return Err(ConfigError::Invalid {
                    name: "JWT_SECRET",
                    why: "set JWT_SECRET or JWT_SECRET_ID, not both".into(),
                });
            }
            (Some(_), _) => Vec::new(),
            (None, None) => return Err(ConfigError::Missing("JWT_SECRET")),
            (None, Some(s)) => checked_jwt_secret("JWT_SECRET", s.into_bytes())?,
        };
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
            jwks_url: text("JWKS_URL")
                .map(|url| match crate::jwks::check_url(&url) {
                    Ok(_) => Ok(url),
                    Err(why) => Err(ConfigError::Invalid {
                        name: "JWKS_URL",
                        why,
                    }),
                })
                .transpose()?,
            jwt_secret: secret,
            jwt_secret_id: secret_id,
            url_policy: if insecure {
                UrlPolicy::LOCAL
            } else {
                UrlPolicy::PRODUCTION
            },
        })
    }
}

impl ApiConfig {
    /// Sets the key read from [`jwt_secret_id`](Self::jwt_secret_id), checked like `JWT_SECRET`.
    pub fn set_jwt_secret(&mut self, secret: Vec<u8>) -> Result<(), ConfigError> {
        self.jwt_secret = checked_jwt_secret("JWT_SECRET_ID", secret)?;
        Ok(())
    }
}

/// `secret` if it is long enough (the error names where it came from, never the value).
fn checked_jwt_secret(name: &'static str, secret: Vec<u8>) -> Result<Vec<u8>, ConfigError> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            name,
            why: format!("the key must be at least {MIN_JWT_SECRET_BYTES} bytes"),
        });
    }
    Ok(secret)
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
            "JWT_SECRET_ID" => None,
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
        // JWKS_URL: none by default; https (or loopback http) only
        assert_eq!(ok.jwks_url, None);
        let jwks = |url: &str| {
            let url = url.to_owned();
            ApiConfig::from_lookup(move |k| match k {
                "JWT_SECRET" => Some("x".repeat(32)),
                "JWKS_URL" => Some(url.clone()),
                _ => None,
            })
        };
        let with = jwks("https://idp.example.com/.well-known/jwks.json").unwrap();
        assert_eq!(
            with.jwks_url.as_deref(),
            Some("https://idp.example.com/.well-known/jwks.json")
        );
        assert_eq!(jwks(" ").unwrap().jwks_url, None);
        let e = jwks("http://idp.example.com/jwks").unwrap_err();
        assert!(e.to_string().contains("JWKS_URL"), "{e}");
    }

    #[test]
    fn a_secrets_manager_id_replaces_jwt_secret_and_its_value_is_checked_when_read() {
        // GIVEN JWT_SECRET_ID alone WHEN read THEN no key yet, the id kept
        let id = "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt-AbCdEf";
        let mut c = ApiConfig::from_lookup(|k| (k == "JWT_SECRET_ID").then(|| id.into())).unwrap();
        assert_eq!(c.jwt_secret_id.as_deref(), Some(id));
        assert!(c.jwt_secret.is_empty());
        // WHEN the value read is short THEN refused, naming the variable, not the value
        let e = c.set_jwt_secret(b"short-key".to_vec()).unwrap_err();
        assert!(e.to_string().contains("JWT_SECRET_ID") && !e.to_string().contains("short-key"));
        c.set_jwt_secret(vec![b'k'; 32]).unwrap();
        assert_eq!(c.jwt_secret.len(), 32);
        // GIVEN both variables THEN refused: one source only
        let e = ApiConfig::from_lookup(|k| match k {
            "JWT_SECRET_ID" => Some(id.into()),
            "JWT_SECRET" => Some("x".repeat(32)),
            _ => None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        // AND an empty JWT_SECRET beside the id is no second source (SAM may set it empty)
        assert!(
            ApiConfig::from_lookup(|k| match k {
                "JWT_SECRET_ID" => Some(id.into()),
                "JWT_SECRET" => Some(String::new()),
                _ => None,
            })
            .is_ok()
        );
    }
}
