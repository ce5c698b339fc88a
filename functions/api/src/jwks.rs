//! Platform tokens signed with RS256 or ES256, verified against the deployment's JSON Web Key
//! Set (`JWKS_URL`; the template's `JwksUrl`, the local mode's `serve --jwks-url`). HS256 with
//! the platform secret stays the default and keeps working beside it ([`crate::auth`]).
//!
//! The set is fetched with its URL only (a token's `jku`, `x5u` and `jwk` headers are never
//! read), kept [`JWKS_TTL`], and fetched again early when a token names a `kid` the set does not
//! hold (a key rotation) — at most once per [`JWKS_REFETCH_INTERVAL`], so a flood of made-up
//! `kid`s costs the key server one request per interval. A refresh that fails keeps the last
//! good set for up to [`JWKS_MAX_STALE`] (an outage of the key server does not sign everyone
//! out); with no usable set a JWKS token is answered 503 `jwks_unavailable`.
//!
//! Only signing keys with a `kid` are taken: RSA keys as RS256, P-256 EC keys as ES256 (a key's
//! own `alg`, when given, must say the same; `use`, when given, must be `sig`). Symmetric (`oct`)
//! keys and other types are ignored, so a JWKS can never turn into an HMAC key, and a token's
//! `alg` must be its key's (no algorithm confusion either way).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::ApiError;

/// How long a fetched key set is used before it is fetched again.
pub const JWKS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches, whatever asks for one (an unknown `kid`, an expired
/// set, or a retry after a failed fetch).
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long past its fetch a set is still used while refreshing it fails.
pub const JWKS_MAX_STALE: Duration = Duration::from_secs(3600);
/// One fetch's whole time (connect, headers, body).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest key set read (a real one is a few KiB).
pub const JWKS_MAX_BYTES: usize = 64 * 1024;

/// The cache's timings (the constants above; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksTimings {
    pub ttl: Duration,
    pub refetch_interval: Duration,
    pub max_stale: Duration,
}

impl Default for JwksTimings {
    fn default() -> Self {
        Self {
            ttl: JWKS_TTL,
            refetch_interval: JWKS_REFETCH_INTERVAL,
            max_stale: JWKS_MAX_STALE,
        }
    }
}

/// A verification key from the set and the one algorithm it verifies.
#[derive(Clone)]
pub struct JwksKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey").field("alg", &self.alg).finish()
    }
}

struct KeySet {
    keys: HashMap<String, JwksKey>,
    fetched: Instant,
}

/// The deployment's key set: fetched, cached and refreshed as the module docs say.
pub struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    timings: JwksTimings,
    set: RwLock<Option<KeySet>>,
    /// When the last fetch started (successful or not).
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url.as_str())
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set at `url`: `https://`, or `http://` to a loopback host (a key server beside the
    /// local mode, tests). Nothing is fetched until the first JWKS token.
    pub fn new(url: &str, timings: JwksTimings) -> Result<Self, String> {
        let parsed = check_url(url)?;
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .connect_timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            url: parsed,
            client,
            timings,
            set: RwLock::new(None),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named `kid`: from the cached set, or after fetching it (first use, expired, or
    /// an unknown `kid` once per refetch interval). 401 for a `kid` the set does not hold, 503
    /// `jwks_unavailable` when no usable set could be had.
    pub async fn key(&self, kid: &str) -> Result<JwksKey, ApiError> {
        if let Some(found) = self.lookup(kid, /* fresh_only */ true) {
            return found;
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(found) = self.lookup(kid, /* fresh_only */ true) {
            return found;
        }
        let due = {
            let mut last = self.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let due = last.is_none_or(|t| now.duration_since(t) >= self.timings.refetch_interval);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                    *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(KeySet {
                        keys,
                        fetched: Instant::now(),
                    });
                }
                Err(why) => tracing::warn!(url = %self.url, error = %why, "JWKS fetch failed"),
            }
        }
        self.lookup(kid, /* fresh_only */ false)
            .unwrap_or_else(|| Err(unavailable()))
    }

    /// `None` when the cache cannot answer (no set; or, with `fresh_only`, an expired set or a
    /// `kid` it lacks); otherwise the key or why not.
    fn lookup(&self, kid: &str, fresh_only: bool) -> Option<Result<JwksKey, ApiError>> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let set = set.as_ref()?;
        let age = set.fetched.elapsed();
        let key = set.keys.get(kid);
        if fresh_only && (age >= self.timings.ttl || key.is_none()) {
            return None;
        }
        if age >= self.timings.max_stale {
            return Some(Err(unavailable()));
        }
        Some(key.cloned().ok_or_else(|| {
            ApiError::unauthorized("the token's key id (`kid`) is not in this deployment's JWKS")
        }))
    }

    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, String> {
        let mut res = self
            .client
            .get(self.url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("answered {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(format!("larger than {JWKS_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_key_set(&body)
    }
}

/// `url` if it may serve the key set: `https://`, or `http://` to a loopback host.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err("must be an https:// URL (http:// only to a loopback host)".into()),
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "jwks_unavailable",
        "the keys that verify this token (the deployment's JWKS) could not be fetched; try again later",
    )
}

/// The usable signing keys of a JWKS document, by `kid` (see the module docs for which).
/// Keys that do not qualify are skipped, so one odd key does not hide the others.
pub fn parse_key_set(body: &[u8]) -> Result<HashMap<String, JwksKey>, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some((kid, key)) = usable(&jwk) {
            keys.insert(kid, key);
        }
    }
    Ok(keys)
}

fn usable(jwk: &Jwk) -> Option<(String, JwksKey)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let (alg, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, JwksKey { alg, key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_with_a_kid_of_rsa_or_p256_are_taken() {
        // GIVEN a set with one key of each kind (the EC point is P-256's generator)
        let rsa = r#"{"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
        let ec = r#"{"kty":"EC","kid":"e","crv":"P-256","x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY","y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}"#;
        let set = format!(
            r#"{{"keys":[{rsa},{ec},
            {{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
            {{"kty":"RSA","n":"AQAB","e":"AQAB"}},
            {{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}},
            {{"kty":"RSA","kid":"ps","alg":"PS256","n":"AQAB","e":"AQAB"}},
            {{"kty":"weird","kid":"w"}}]}}"#
        );
        // WHEN parsed THEN the RSA key is RS256, the EC key ES256, and nothing else is taken
        let keys = parse_key_set(set.as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["e", "r"]);
        assert_eq!(keys["r"].alg, Algorithm::RS256);
        assert_eq!(keys["e"].alg, Algorithm::ES256);
        // AND a document that is no JWKS is an error, not an empty set
        assert!(parse_key_set(b"<html>").is_err());
    }

    #[test]
    fn the_url_must_be_https_or_loopback_http() {
        let t = JwksTimings::default();
        assert!(Jwks::new("https://idp.example.com/.well-known/jwks.json", t).is_ok());
        assert!(Jwks::new("http://127.0.0.1:9/jwks", t).is_ok());
        assert!(Jwks::new("http://localhost:9/jwks", t).is_ok());
        assert!(Jwks::new("http://idp.example.com/jwks", t).is_err());
        assert!(Jwks::new("file:///etc/passwd", t).is_err());
        assert!(Jwks::new("not a url", t).is_err());
    }
}
