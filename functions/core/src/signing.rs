//! Signatures (DESIGN.md §4). Pure functions: the caller passes the timestamp from its `Clock`.
//!
//! - The guide's header, `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, keyed
//!   with the secret string's UTF-8 bytes, exactly as the guide's Node.js and Python checks do.
//! - Standard Webhooks, `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`,
//!   where the key is the base64-decoded part of a `whsec_…` secret (so that string goes into a
//!   Standard Webhooks library as it is), or the UTF-8 bytes of any other secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::webhook::Secret;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `sha256=<hex>`: the guide's `X-Webhook-Signature`.
pub fn guide_signature(secret: &Secret, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac(secret.expose().as_bytes(), &[body]))
    )
}

/// The Standard Webhooks key of a secret.
pub fn standard_webhooks_key(secret: &Secret) -> Vec<u8> {
    secret
        .expose()
        .strip_prefix(Secret::GENERATED_PREFIX)
        .and_then(|k| STANDARD.decode(k).ok())
        .unwrap_or_else(|| secret.expose().as_bytes().to_vec())
}

/// `v1,<base64>`: one Standard Webhooks signature over `{id}.{timestamp}.{body}`.
pub fn standard_webhooks_signature(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let ts = timestamp.to_string();
    let sig = hmac(
        &standard_webhooks_key(secret),
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(sig))
}

/// Constant-time check of a guide signature (used by `listen` and tests).
pub fn verify_guide_signature(secret: &Secret, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Checks a Standard Webhooks `webhook-signature` header (one or more space-separated
/// `v1,<base64>` entries; any match verifies), in constant time per entry. The caller checks the
/// timestamp's age.
pub fn verify_standard_webhooks(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let ts = timestamp.to_string();
    let key = standard_webhooks_key(secret);
    header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            let Ok(given) = STANDARD.decode(sig) else {
                return false;
            };
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            for p in [msg_id.as_bytes(), b".", ts.as_bytes(), b".", body] {
                mac.update(p);
            }
            mac.verify_slice(&given).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The test vector of the Standard Webhooks reference libraries.
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let sig = standard_webhooks_signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify_standard_webhooks(
            &secret,
            id,
            1614265330,
            body,
            &format!("v1,bad= {sig}")
        ));
        assert!(!verify_standard_webhooks(
            &secret, id, 1614265331, body, &sig
        ));
        assert!(!verify_standard_webhooks(
            &secret, id, 1614265330, b"{}", &sig
        ));
        assert!(!verify_standard_webhooks(
            &secret, id, 1614265330, body, "v2,abc"
        ));
    }

    #[test]
    fn guide_signature_is_hex_hmac_of_the_body_with_the_secret_string() {
        // echo -n '{"a":1}' | openssl dgst -sha256 -hmac your_webhook_secret
        let secret = Secret::new("your_webhook_secret".into());
        let sig = guide_signature(&secret, br#"{"a":1}"#);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_guide_signature(&secret, br#"{"a":1}"#, &sig));
        assert!(!verify_guide_signature(&secret, br#"{"a":2}"#, &sig));
        assert!(!verify_guide_signature(
            &secret,
            br#"{"a":1}"#,
            "sha256=test"
        ));
        assert!(!verify_guide_signature(&secret, br#"{"a":1}"#, &sig[7..]));
    }

    #[test]
    fn non_whsec_secrets_key_standard_webhooks_with_their_bytes() {
        let plain = Secret::new("your_webhook_secret".into());
        assert_eq!(standard_webhooks_key(&plain), b"your_webhook_secret");
    }
}
