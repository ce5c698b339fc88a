//! Pagination cursors: opaque to clients, signed so a tampered or foreign cursor is refused
//! (400 `invalid_cursor`) rather than silently misread. A cursor is bound to the owner and the
//! query it was issued for: the `bucketId` filter of the webhook list, or the webhook and the
//! filters of a delivery or dead-letter list ([`CursorCodec::seal`]/[`CursorCodec::open`], the
//! position being the delivery log's own).

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
    /// The query it was issued for: the bucket filter of the webhook list ("" for none), or a
    /// delivery list's scope.
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
        let scope = bucket.map(ToString::to_string).unwrap_or_default();
        self.seal(owner, &scope, after.as_str())
    }

    pub fn decode(
        &self,
        owner: &OwnerId,
        bucket: Option<&BucketId>,
        cursor: &str,
    ) -> Result<WebhookId, ApiError> {
        let scope = bucket.map(ToString::to_string).unwrap_or_default();
        let after = self.open(owner, &scope, cursor).map_err(|e| {
            if e.message.contains("different") {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor was issued for a different bucketId filter",
                )
            } else {
                e
            }
        })?;
        WebhookId::parse(&after).map_err(|_| bad_cursor())
    }

    /// A cursor for `owner` to continue a list after `after`, valid only for the query named by
    /// `scope` (a canonical text of what the list is and its filters).
    pub fn seal(&self, owner: &OwnerId, scope: &str, after: &str) -> String {
        let payload = Payload {
            v: 1,
            a: after.to_owned(),
            b: scope.to_owned(),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let tag = self.tag(owner, &json).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The position sealed in `cursor`, if this API sealed it for `owner` and `scope`.
    pub fn open(&self, owner: &OwnerId, scope: &str, cursor: &str) -> Result<String, ApiError> {
        let (p, t) = cursor.split_once('.').ok_or_else(bad_cursor)?;
        let json = URL_SAFE_NO_PAD.decode(p).map_err(|_| bad_cursor())?;
        let tag = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad_cursor())?;
        self.tag(owner, &json)
            .verify_slice(&tag)
            .map_err(|_| bad_cursor())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| bad_cursor())?;
        if payload.v != 1 || payload.b != scope {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "cursor was issued for a different list or different filters",
            ));
        }
        Ok(payload.a)
    }
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "cursor is not one this API issued for this query",
    )
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

    #[test]
    fn sealed_positions_open_only_for_their_owner_and_scope() {
        let codec = CursorCodec::new(b"secret");
        let alice = OwnerId::parse("alice").unwrap();
        let c = codec.seal(
            &alice,
            "dead-letters/w1/event=",
            "1700000000.65a4e5f0aabbccddeeff0011",
        );
        assert_eq!(
            codec.open(&alice, "dead-letters/w1/event=", &c).unwrap(),
            "1700000000.65a4e5f0aabbccddeeff0011"
        );
        let other = codec.open(&alice, "dead-letters/w1/event=alert.triggered", &c);
        assert_eq!(other.unwrap_err().code, "invalid_cursor");
        assert!(
            codec
                .open(
                    &OwnerId::parse("bob").unwrap(),
                    "dead-letters/w1/event=",
                    &c
                )
                .is_err()
        );
        // A webhook-list cursor is not a delivery-list cursor and the reverse.
        let list = codec.encode(
            &alice,
            None,
            &WebhookId::parse("507f1f77bcf86cd799439016").unwrap(),
        );
        assert!(codec.open(&alice, "dead-letters/w1/event=", &list).is_err());
        assert!(codec.decode(&alice, None, &c).is_err());
    }
}
