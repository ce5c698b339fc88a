//! Platform tokens signed with RS256 or ES256 against the deployment's JWKS (`JWKS_URL`),
//! through the Router: the key server is a real HTTP server started by each test, serving keys
//! generated in the test (no key material in the repository). Checks the key choice (`kid`
//! required, the key decides the algorithm, `jku`/`x5u`/`jwk` never followed), rotation, the
//! refetch bound and a key server that is down.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use axum::http::{Method, StatusCode};
use base64::Engine;
use common::{App, app_with, now};
use serde_json::{Value, json};
use webhooks_api::auth::TokenRules;
use webhooks_api::jwks::{Jwks, JwksTimings};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A test signing key: RSA-2048 or P-256, generated here.
enum TestKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl TestKey {
    fn rsa() -> Self {
        TestKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    fn ec() -> Self {
        TestKey::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    /// The public key as a JWK with this `kid`.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            TestKey::Ec(k) => {
                // Uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": kid, "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    /// The JWS signature of `input` (RS256: PKCS#1 v1.5; ES256: r || s).
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                sig
            }
            TestKey::Ec(k) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
        }
    }
}

/// A compact JWS of `claims` with this `header`, signed by `sign`.
fn jwt(header: Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn hs256(key: &[u8], input: &[u8]) -> Vec<u8> {
    aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        input,
    )
    .as_ref()
    .to_vec()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 3600, "iat": now()})
}

/// A key server on 127.0.0.1:0: serves `body` with `status` at `/jwks`, counting requests.
#[derive(Clone)]
struct KeyServer {
    url: String,
    body: Arc<Mutex<(u16, Value)>>,
    hits: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: Value) -> Self {
        let body = Arc::new(Mutex::new((200, keys)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (b, h) = (b.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, v) = b.lock().unwrap().clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(v))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/jwks"),
            body,
            hits,
        }
    }

    fn serve(&self, status: u16, keys: Value) {
        *self.body.lock().unwrap() = (status, keys);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The Router (open buckets) accepting HS256 and the key server's keys.
fn app_with_jwks(url: &str, timings: JwksTimings) -> App {
    let mut app = app_with(&TokenRules {
        open_buckets: true,
        ..Default::default()
    });
    app.state = app
        .state
        .with_jwks(Arc::new(Jwks::new(url, timings).unwrap()));
    app
}

/// GET /api/webhooks with `token`: the status and the error body.
async fn list(app: &App, token: &str) -> (StatusCode, Value) {
    app.call(Method::GET, "/api/webhooks", token, None).await
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_jwks_are_accepted_beside_hs256() {
    // GIVEN a JWKS with an RSA and a P-256 key
    let (rsa, ec) = (TestKey::rsa(), TestKey::ec());
    let server = KeyServer::start(json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1")]})).await;
    let app = app_with_jwks(&server.url, JwksTimings::default());
    // WHEN tokens signed with each (and an HS256 one) list webhooks THEN all are accepted
    let rs = jwt(json!({"alg": "RS256", "kid": "rsa-1"}), &claims(), |m| {
        rsa.sign(m)
    });
    let es = jwt(
        json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}),
        &claims(),
        |m| ec.sign(m),
    );
    let hs = common::token("alice", None, None);
    for (what, token) in [("RS256", &rs), ("ES256", &es), ("HS256", &hs)] {
        let (status, body) = list(&app, token).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
    }
    // AND the set was fetched once (cached), not per token
    assert_eq!(server.hits(), 1);
    // AND the claims rules are the same as HS256's
    let expired = json!({"sub": "alice", "exp": now() - 3600});
    let early = json!({"sub": "alice", "exp": now() + 3600, "nbf": now() + 3600});
    let future = json!({"sub": "alice", "exp": now() + 3600, "iat": now() + 3600});
    for (c, why) in [
        (expired, "token has expired"),
        (early, "token is not valid yet"),
        (future, "token is issued in the future"),
    ] {
        for token in [
            jwt(json!({"alg": "RS256", "kid": "rsa-1"}), &c, |m| rsa.sign(m)),
            jwt(json!({"alg": "ES256", "kid": "ec-1"}), &c, |m| ec.sign(m)),
        ] {
            let (status, body) = list(&app, &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
            assert_eq!(body["error"]["message"], why);
        }
    }
}

#[tokio::test]
async fn a_jwks_token_needs_its_keys_kid_and_algorithm() {
    // GIVEN the same JWKS
    let (rsa, ec) = (TestKey::rsa(), TestKey::ec());
    let server = KeyServer::start(json!({"keys": [rsa.jwk("rsa-1"), ec.jwk("ec-1")]})).await;
    let app = app_with_jwks(&server.url, JwksTimings::default());
    let c = claims();
    let rsa_jwk = serde_json::to_vec(&rsa.jwk("rsa-1")).unwrap();
    let TestKey::Rsa(rsa_pair) = &rsa else {
        unreachable!()
    };
    let rsa_der = rsa_pair.public_key().as_ref().to_vec();
    let forger = TestKey::rsa();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "RS256 without kid",
            jwt(json!({"alg": "RS256"}), &c, |m| rsa.sign(m)),
            "a token signed with RS256 or ES256 must name its key (`kid` header)",
        ),
        (
            "ES256 with an empty kid",
            jwt(json!({"alg": "ES256", "kid": ""}), &c, |m| ec.sign(m)),
            "a token signed with RS256 or ES256 must name its key (`kid` header)",
        ),
        (
            "unknown kid",
            jwt(json!({"alg": "RS256", "kid": "nope"}), &c, |m| rsa.sign(m)),
            "the token's key id (`kid`) is not in this deployment's JWKS",
        ),
        (
            "signed by another key under a known kid",
            jwt(json!({"alg": "RS256", "kid": "rsa-1"}), &c, |m| {
                forger.sign(m)
            }),
            "token signature is invalid",
        ),
        (
            "ES256 header naming the RSA key",
            jwt(json!({"alg": "ES256", "kid": "rsa-1"}), &c, |m| ec.sign(m)),
            "token algorithm does not match its key's type",
        ),
        (
            "RS256 header naming the EC key",
            jwt(json!({"alg": "RS256", "kid": "ec-1"}), &c, |m| rsa.sign(m)),
            "token algorithm does not match its key's type",
        ),
        (
            "HS256 keyed with the RSA key's JWK (algorithm confusion)",
            jwt(json!({"alg": "HS256", "kid": "rsa-1"}), &c, |m| {
                hs256(&rsa_jwk, m)
            }),
            "token signature is invalid",
        ),
        (
            "HS256 keyed with the RSA public key's DER (algorithm confusion)",
            jwt(json!({"alg": "HS256", "kid": "rsa-1"}), &c, |m| {
                hs256(&rsa_der, m)
            }),
            "token signature is invalid",
        ),
        (
            "RS512 with the RSA key",
            jwt(json!({"alg": "RS512", "kid": "rsa-1"}), &c, |m| rsa.sign(m)),
            "token algorithm must be HS256, RS256 or ES256",
        ),
        (
            "PS256 with the RSA key",
            jwt(json!({"alg": "PS256", "kid": "rsa-1"}), &c, |m| rsa.sign(m)),
            "token algorithm must be HS256, RS256 or ES256",
        ),
        (
            "alg none naming a key",
            jwt(json!({"alg": "none", "kid": "rsa-1"}), &c, |_| Vec::new()),
            "token is malformed",
        ),
    ];
    for (what, token, why) in &cases {
        // WHEN used THEN 401, saying why
        let (status, body) = list(&app, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["message"], *why, "{what}");
    }
    // AND the unknown kid fetched nothing more: the first fetch is under the refetch interval
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_never_followed() {
    // GIVEN the deployment's JWKS, and an attacker's key server holding the attacker's key
    let rsa = TestKey::rsa();
    let server = KeyServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let attacker_key = TestKey::rsa();
    let attacker =
        KeyServer::start(json!({"keys": [attacker_key.jwk("evil"), attacker_key.jwk("rsa-1")]}))
            .await;
    let app = app_with_jwks(&server.url, JwksTimings::default());
    let c = claims();
    // WHEN tokens signed with the attacker's key point at it in every header form
    for header in [
        json!({"alg": "RS256", "kid": "evil", "jku": attacker.url}),
        json!({"alg": "RS256", "kid": "rsa-1", "jku": attacker.url}),
        json!({"alg": "RS256", "kid": "rsa-1", "x5u": attacker.url}),
        json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker_key.jwk("rsa-1")}),
        json!({"alg": "RS256", "kid": "evil", "jwk": attacker_key.jwk("evil")}),
    ] {
        let token = jwt(header.clone(), &c, |m| attacker_key.sign(m));
        let (status, body) = list(&app, &token).await;
        // THEN refused
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}: {body}");
    }
    // AND the attacker's server was never asked
    assert_eq!(attacker.hits(), 0);
    // AND the deployment's own key still works with the same headers present
    let token = jwt(
        json!({"alg": "RS256", "kid": "rsa-1", "jku": attacker.url}),
        &c,
        |m| rsa.sign(m),
    );
    assert_eq!(list(&app, &token).await.0, StatusCode::OK);
    assert_eq!(attacker.hits(), 0);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_its_kid_appears_at_most_once_per_interval() {
    // GIVEN a JWKS with key 1, refetched on an unknown kid at most every 300 ms
    let (old, new) = (TestKey::ec(), TestKey::rsa());
    let server = KeyServer::start(json!({"keys": [old.jwk("k1")]})).await;
    let interval = Duration::from_millis(300);
    let app = app_with_jwks(
        &server.url,
        JwksTimings {
            refetch_interval: interval,
            ..Default::default()
        },
    );
    let c = claims();
    let by_old = jwt(json!({"alg": "ES256", "kid": "k1"}), &c, |m| old.sign(m));
    let by_new = jwt(json!({"alg": "RS256", "kid": "k2"}), &c, |m| new.sign(m));
    assert_eq!(list(&app, &by_old).await.0, StatusCode::OK);
    // WHEN the issuer rotates to key 2 (key 1 withdrawn)
    server.serve(200, json!({"keys": [new.jwk("k2")]}));
    // THEN within the interval a flood of tokens with the new (or made-up) kid fetches nothing
    for _ in 0..20 {
        assert_eq!(list(&app, &by_new).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(server.hits(), 1);
    // AND once the interval has passed, the new kid fetches the set once and is accepted
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    let (status, body) = list(&app, &by_new).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.hits(), 2);
    // AND the withdrawn key 1 is refused now
    assert_eq!(list(&app, &by_old).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_server_that_is_down_answers_503_jwks_unavailable_and_hs256_still_works() {
    let rsa = TestKey::rsa();
    let c = claims();
    let token = jwt(json!({"alg": "RS256", "kid": "rsa-1"}), &c, |m| rsa.sign(m));
    // GIVEN a JWKS URL where nothing listens
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = app_with_jwks(&format!("http://{closed}/jwks"), JwksTimings::default());
    // WHEN a JWKS token comes THEN 503 jwks_unavailable, with Retry-After's meaning
    let (status, body) = list(&app, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "jwks_unavailable");
    // AND HS256 tokens are not affected
    let hs = common::token("alice", None, None);
    assert_eq!(list(&app, &hs).await.0, StatusCode::OK);

    // GIVEN key servers answering 500 or something that is not a JWKS
    for (status, body) in [
        (500, json!({"keys": [rsa.jwk("rsa-1")]})),
        (200, json!([1])),
    ] {
        let server = KeyServer::start(json!({})).await;
        server.serve(status, body);
        let app = app_with_jwks(&server.url, JwksTimings::default());
        // THEN the same clear 503
        let (got, err) = list(&app, &token).await;
        assert_eq!(got, StatusCode::SERVICE_UNAVAILABLE, "{err}");
        assert_eq!(err["error"]["code"], "jwks_unavailable");
    }

    // GIVEN a set fetched while the server was up, expiring at once
    let server = KeyServer::start(json!({"keys": [rsa.jwk("rsa-1")]})).await;
    let timings = JwksTimings {
        ttl: Duration::ZERO,
        refetch_interval: Duration::ZERO,
        max_stale: Duration::from_secs(3600),
    };
    let app = app_with_jwks(&server.url, timings);
    assert_eq!(list(&app, &token).await.0, StatusCode::OK);
    // WHEN the server fails THEN the last good set is used (tried again each time: interval 0)
    server.serve(500, json!({}));
    assert_eq!(list(&app, &token).await.0, StatusCode::OK);
    assert_eq!(server.hits(), 2);
    // AND past max_stale it is not
    let app = app_with_jwks(
        &server.url,
        JwksTimings {
            max_stale: Duration::from_millis(200),
            ..timings
        },
    );
    server.serve(200, json!({"keys": [rsa.jwk("rsa-1")]}));
    assert_eq!(list(&app, &token).await.0, StatusCode::OK);
    server.serve(500, json!({}));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, body) = list(&app, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "jwks_unavailable");
}
