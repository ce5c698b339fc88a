//! Authentication: `Authorization: Bearer <JWT>`, HS256 with the platform's secret
//! (`JWT_SECRET`), `exp` and `sub` required; `nbf` honoured and `iat` not in the future (both
//! with the same leeway as `exp`); `aud`/`iss` checked when the deployment configures them
//! ([`TokenRules`]). `buckets` lists the buckets the token may use — fail closed: a token without
//! it may use none, unless the deployment opts into open buckets. `scope` (space-separated string
//! or array) with `events:publish` makes a producer token: it may publish ([`Producer`]) and
//! nothing else ([`Auth`], the management routes, answers 403 `insufficient_scope`).
//!
//! Keys: HS256 with the platform secret, always; and, when the deployment configures a JWKS
//! ([`crate::jwks`], `JWKS_URL`), RS256 or ES256 with the set's key the token's `kid` names
//! (`kid` required). The algorithm is chosen by the key, never by the token: HS256 only ever
//! verifies with the platform secret, RS256/ES256 only with a JWKS key of that type, anything
//! else (`alg: none` included) is refused. `jku`, `x5u` and `jwk` headers are never read (the
//! key is never taken from the token). The claims rules are the same for every key.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use webhooks_core::webhook_service::Caller;
use webhooks_core::{BucketId, OwnerId};

use crate::error::ApiError;
use crate::jwks::Jwks;

/// The claims this service reads. Other claims are allowed and ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Not before (unix seconds): refused until then, minus the leeway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at (unix seconds): refused when later than now plus the leeway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Audience: one string or a list (RFC 7519); checked when [`TokenRules::audience`] is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Scope>,
    /// Issuer; checked when [`TokenRules::issuer`] is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// What a deployment decides about tokens (the API Lambda reads it from its environment; see
/// `config`). The default is the strict one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// A token without a `buckets` claim may use any bucket (`OPEN_BUCKETS=true`). Off by
    /// default: such a token may use no bucket. The local mode's development setup turns it on.
    pub open_buckets: bool,
    /// When set, the token's `aud` must include it (`JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// When set, the token's `iss` must equal it (`JWT_ISSUER`).
    pub issuer: Option<String>,
}

/// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
pub const TOKEN_LEEWAY_SECONDS: u64 = 5;

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
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    open_buckets: bool,
    /// The deployment's key set for RS256/ES256 tokens, when configured.
    jwks: Option<Arc<Jwks>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<secret redacted>)")
    }
}

impl Authenticator {
    /// With the strict default [`TokenRules`]. Fails only for a secret the JWT library refuses
    /// (such as an empty one).
    pub fn new(secret: &[u8]) -> Result<Self, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = TOKEN_LEEWAY_SECONDS;
        let me = Self {
            decoding: DecodingKey::from_secret(secret)?,
            encoding: EncodingKey::from_secret(secret)?,
            validation,
            open_buckets: false,
            jwks: None,
        };
        Ok(me.rules(&TokenRules::default()))
    }

    /// With the deployment's rules.
    pub fn with_rules(
        secret: &[u8],
        rules: &TokenRules,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self::new(secret)?.rules(rules))
    }

    /// This authenticator with the deployment's rules, same key.
    pub fn rules(&self, rules: &TokenRules) -> Self {
        let mut validation = self.validation.clone();
        validation.validate_aud = rules.audience.is_some();
        validation.aud = None;
        validation.iss = None;
        let mut required = vec!["exp", "sub"];
        if let Some(aud) = &rules.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Self {
            validation,
            open_buckets: rules.open_buckets,
            ..self.clone()
        }
    }

    /// This authenticator also accepting RS256/ES256 tokens signed with a key of `jwks`.
    pub fn with_jwks(&self, jwks: Arc<Jwks>) -> Self {
        Self {
            jwks: Some(jwks),
            ..self.clone()
        }
    }

    /// Signs `claims` with HS256.
    pub fn mint(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Checks a bearer token and returns its claims, or the reason in words (401; 503
    /// `jwks_unavailable` when a JWKS token's key set cannot be had).
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("token is malformed"))?;
        let jwks_key;
        let (key, validation) =
            match (header.alg, &self.jwks) {
                (Algorithm::HS256, _) => (&self.decoding, self.validation.clone()),
                (Algorithm::RS256 | Algorithm::ES256, Some(jwks)) => {
                    let kid = header.kid.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
                    ApiError::unauthorized(
                        "a token signed with RS256 or ES256 must name its key (`kid` header)",
                    )
                })?;
                    jwks_key = jwks.key(kid).await?;
                    if jwks_key.alg != header.alg {
                        return Err(ApiError::unauthorized(
                            "token algorithm does not match its key's type",
                        ));
                    }
                    let mut validation = self.validation.clone();
                    validation.algorithms = vec![jwks_key.alg];
                    (&jwks_key.key, validation)
                }
                (_, Some(_)) => {
                    return Err(ApiError::unauthorized(
                        "token algorithm must be HS256, RS256 or ES256",
                    ));
                }
                (_, None) => return Err(ApiError::unauthorized("token algorithm must be HS256")),
            };
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token has expired",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token algorithm does not match its key"
                    }
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" || c == "iss" => {
                        "token must carry the `aud` and `iss` this deployment expects"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "token must carry `exp` and `sub` claims",
                    ErrorKind::ImmatureSignature => "token is not valid yet",
                    ErrorKind::InvalidAudience => "token audience is not this service",
                    ErrorKind::InvalidIssuer => "token issuer is not trusted here",
                    _ => "token is malformed",
                })
            })?;
        // jsonwebtoken does not check `iat`: a token issued in the future is refused here.
        if claims
            .iat
            .is_some_and(|iat| iat > unix_now() + TOKEN_LEEWAY_SECONDS as i64)
        {
            return Err(ApiError::unauthorized("token is issued in the future"));
        }
        Ok(claims)
    }

    /// Whether a token without a `buckets` claim may use any bucket on this deployment.
    pub fn open_buckets(&self) -> bool {
        self.open_buckets
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
        Ok(Caller::from_token(owner, buckets, self.open_buckets))
    }
}

fn unix_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Whether the token is a producer's (`scope` includes `events:publish`).
pub fn is_producer(claims: &Claims) -> bool {
    claims
        .scope
        .as_ref()
        .is_some_and(|s| s.includes(PUBLISH_SCOPE))
}

/// The scope a producer token carries; such a token publishes and does nothing else.
pub const PUBLISH_SCOPE: &str = "events:publish";

/// The authenticated user of a management route (extractor): any valid token but a producer's,
/// which gets 403 `insufficient_scope`.
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
        let (caller, claims) = authenticate(parts, &Arc::<Authenticator>::from_ref(state)).await?;
        if is_producer(&claims) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!(
                    "a token whose scope includes `{PUBLISH_SCOPE}` may only publish events; managing webhooks needs a user token"
                ),
            ));
        }
        Ok(Auth { caller, claims })
    }
}

/// The authenticated producer of `POST /api/events` (extractor): a token whose scope includes
/// `events:publish`, else 403 `insufficient_scope`.
#[derive(Debug, Clone)]
pub struct Producer {
    pub caller: Caller,
    pub claims: Claims,
}

impl<S> FromRequestParts<S> for Producer
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (caller, claims) = authenticate(parts, &Arc::<Authenticator>::from_ref(state)).await?;
        if !is_producer(&claims) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("publishing needs a token whose scope includes `{PUBLISH_SCOPE}`"),
            ));
        }
        Ok(Producer { caller, claims })
    }
}

async fn authenticate(parts: &Parts, auth: &Authenticator) -> Result<(Caller, Claims), ApiError> {
    {
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
        let claims = auth.verify(token).await?;
        let caller = auth.caller(&claims)?;
        Ok((caller, claims))
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
            ..Default::default()
        }
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_bad_ones_say_why() {
        let auth = Authenticator::new(SECRET).unwrap();
        let good = auth.mint(&claims(3600)).unwrap();
        assert_eq!(auth.verify(&good).await.unwrap().sub, "alice");

        let expired = auth.mint(&claims(-3600)).unwrap();
        assert_eq!(
            auth.verify(&expired).await.unwrap_err().message,
            "token has expired"
        );

        let other = Authenticator::new(b"another-secret-another-secret-12345").unwrap();
        let forged = other.mint(&claims(3600)).unwrap();
        assert_eq!(
            auth.verify(&forged).await.unwrap_err().message,
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
        assert!(auth.verify(&none).await.is_err());
        assert_eq!(
            auth.verify("not.a.jwt").await.unwrap_err().code,
            "unauthorized"
        );

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
        assert!(auth.verify(&no_exp).await.is_err());
    }

    #[test]
    fn scope_reads_both_forms() {
        assert!(Scope::Text("read events:publish".into()).includes("events:publish"));
        assert!(Scope::List(vec!["events:publish".into()]).includes("events:publish"));
        assert!(!Scope::Text("events:publisher".into()).includes("events:publish"));
    }
}
