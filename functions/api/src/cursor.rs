//! Pagination cursors: opaque to clients, signed so a tampered or foreign cursor is refused
//! (400 `invalid_cursor`) rather than silently misread. A cursor is bound to the owner and the
//! `bucketId` filter it was issued for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use webhooks_core::{BucketId, OwnerId, WebhookId};

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(<key redacted>)")
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    /// Last id of the previous page.
    a: String,
    /// The bucket filter it was issued for ("" for none).
    b: String,
}

impl CursorCodec {
    /// Derives the cursor key from the service secret, so no extra secret is needed.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = mac(secret);
        mac.update(b"dakkio-webhooks/cursor/v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn tag(&self, owner: &OwnerId, payload: &[u8]) -> HmacSha256 {
        let mut m = mac(&self.key);
        m.update(owner.as_str().as_bytes());
        m.update(b"\n");
        m.update(payload);
        m
    }

    pub fn encode(&self, owner: &OwnerId, bucket: Option<&BucketId>, after: &WebhookId) -> String {
        let payload = Payload {
            v: 1,
            a: after.to_string(),
            b: bucket.map(ToString::to_string).unwrap_or_default(),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let tag = self.tag(owner, &json).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    pub fn decode(
        &self,
        owner: &OwnerId,
        bucket: Option<&BucketId>,
        cursor: &str,
    ) -> Result<WebhookId, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "invalid_cursor",
                "cursor is not one this API issued for this query",
            )
        };
        let (p, t) = cursor.split_once('.').ok_or_else(bad)?;
        let json = URL_SAFE_NO_PAD.decode(p).map_err(|_| bad())?;
        let tag = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
        self.tag(owner, &json)
            .verify_slice(&tag)
            .map_err(|_| bad())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| bad())?;
        let want_bucket = bucket.map(ToString::to_string).unwrap_or_default();
        if payload.v != 1 || payload.b != want_bucket {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "cursor was issued for a different bucketId filter",
            ));
        }
        WebhookId::parse(&payload.a).map_err(|_| bad())
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_tampering_other_owners_and_other_filters() {
        let codec = CursorCodec::new(b"secret");
        let alice = OwnerId::parse("alice").unwrap();
        let bob = OwnerId::parse("bob").unwrap();
        let id = WebhookId::parse("507f1f77bcf86cd799439016").unwrap();
        let c = codec.encode(&alice, None, &id);
        assert_eq!(codec.decode(&alice, None, &c).unwrap(), id);

        assert!(
            codec.decode(&bob, None, &c).is_err(),
            "another owner's cursor"
        );
        let bucket = BucketId::parse("507f1f77bcf86cd799439011").unwrap();
        assert!(
            codec.decode(&alice, Some(&bucket), &c).is_err(),
            "other filter"
        );
        let mut tampered = c.clone();
        tampered.replace_range(0..1, if c.starts_with('e') { "f" } else { "e" });
        assert!(codec.decode(&alice, None, &tampered).is_err());
        for junk in ["", ".", "abc", "abc.def", "eyJ2IjoxfQ"] {
            assert_eq!(
                codec.decode(&alice, None, junk).unwrap_err().code,
                "invalid_cursor"
            );
        }
        assert!(CursorCodec::new(b"other").decode(&alice, None, &c).is_err());
    }
}
