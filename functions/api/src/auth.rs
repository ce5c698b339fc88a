//! Authentication: `Authorization: Bearer <JWT>`, HS256 with the platform's secret
//! (`JWT_SECRET`), `exp` and `sub` required; `buckets` (optional) limits the buckets the user may
//! use; `scope` (space-separated string or array) carries `events:publish` for producers.
//! The algorithm is pinned to HS256, so `alg: none` and algorithm-confusion tokens are refused.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use webhooks_core::service::Caller;
use webhooks_core::{BucketId, OwnerId};

use crate::error::ApiError;

/// The claims this service reads. Other claims (`iat`, `iss`, …) are allowed and ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// OAuth-style scope: `"events:publish other"` or `["events:publish", "other"]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Scope {
    Text(String),
    List(Vec<String>),
}

impl Scope {
    pub fn includes(&self, wanted: &str) -> bool {
        match self {
            Scope::Text(s) => s.split_whitespace().any(|x| x == wanted),
            Scope::List(l) => l.iter().any(|x| x == wanted),
        }
    }
}

/// Verifies tokens (and mints them, for the local mode's `token` command and tests).
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<secret redacted>)")
    }
}

impl Authenticator {
    /// Fails only for a secret the JWT library refuses (such as an empty one).
    pub fn new(secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.leeway = 5;
        Ok(Self {
            decoding: DecodingKey::from_secret(secret)?,
            encoding: EncodingKey::from_secret(secret)?,
            validation,
        })
    }

    /// Signs `claims` with HS256.
    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Checks a bearer token and returns its claims, or the reason in words.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token has expired",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token algorithm must be HS256"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "token must carry `exp` and `sub` claims",
                    ErrorKind::ImmatureSignature => "token is not valid yet",
                    _ => "token is malformed",
                })
            })
    }

    /// A caller from a verified token: `sub` as owner, `buckets` as the allowed buckets.
    pub fn caller(&self, claims: &Claims) -> Result<Caller, ApiError> {
        let owner =
            OwnerId::parse(&claims.sub).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let buckets = claims
            .buckets
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|b| BucketId::parse(b))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|_| {
                ApiError::unauthorized("token claim `buckets` must list bucket ObjectIds")
            })?;
        Ok(Caller { owner, buckets })
    }
}

/// The authenticated user of a request (extractor).
#[derive(Debug, Clone)]
pub struct Auth {
    pub caller: Caller,
    pub claims: Claims,
}

impl<S> FromRequestParts<S> for Auth
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Arc::<Authenticator>::from_ref(state);
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authorization header must be `Bearer <token>`")
            })?;
        let claims = auth.verify(token)?;
        let caller = auth.caller(&claims)?;
        Ok(Auth { caller, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

    fn claims(exp_offset: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp: chrono_now() + exp_offset,
            buckets: None,
            scope: None,
        }
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    #[test]
    fn a_minted_token_verifies_and_bad_ones_say_why() {
        let auth = Authenticator::new(SECRET).unwrap();
        let good = auth.mint(&claims(3600)).unwrap();
        assert_eq!(auth.verify(&good).unwrap().sub, "alice");

        let expired = auth.mint(&claims(-3600)).unwrap();
        assert_eq!(
            auth.verify(&expired).unwrap_err().message,
            "token has expired"
        );

        let other = Authenticator::new(b"another-secret-another-secret-12345").unwrap();
        let forged = other.mint(&claims(3600)).unwrap();
        assert_eq!(
            auth.verify(&forged).unwrap_err().message,
            "token signature is invalid"
        );

        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"sub":"alice","exp":{}}}"#,
                chrono_now() + 3600
            ))
        );
        assert!(auth.verify(&none).is_err());
        assert_eq!(auth.verify("not.a.jwt").unwrap_err().code, "unauthorized");

        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp {
                sub: "alice".into(),
            },
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert!(auth.verify(&no_exp).is_err());
    }

    #[test]
    fn scope_reads_both_forms() {
        assert!(Scope::Text("read events:publish".into()).includes("events:publish"));
        assert!(Scope::List(vec!["events:publish".into()]).includes("events:publish"));
        assert!(!Scope::Text("events:publisher".into()).includes("events:publish"));
    }
}
