//! Identifiers. Webhooks, buckets and deliveries are named by 24 lowercase hex characters, the
//! MongoDB ObjectId form the rest of dakkio uses (`507f1f77bcf86cd799439011`). Generated ids are
//! real ObjectIds: 4 bytes of Unix seconds, 5 random bytes fixed per process, a 3-byte counter, so
//! ids sort by creation time (the list endpoints rely on this for newest-first order).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 24 lowercase hexadecimal characters (an ObjectId), got {0:?}")]
    NotObjectId(String),
    #[error("user id (JWT `sub`) must be 1 to 128 printable characters")]
    BadOwner,
}

fn is_object_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_object_id(unix_seconds: u32) -> String {
    static PROCESS: OnceLock<[u8; 5]> = OnceLock::new();
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    let process = PROCESS.get_or_init(|| rand::rng().random());
    let counter = COUNTER
        .get_or_init(|| AtomicU32::new(rand::rng().random::<u32>() & 0x00ff_ffff))
        .fetch_add(1, Ordering::Relaxed)
        & 0x00ff_ffff;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&unix_seconds.to_be_bytes());
    bytes[4..9].copy_from_slice(process);
    bytes[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
    hex::encode(bytes)
}

macro_rules! object_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
        #[schema(value_type = String, pattern = "^[0-9a-f]{24}$", example = "507f1f77bcf86cd799439011")]
        pub struct $name(String);

        impl $name {
            /// Parses the 24-hex ObjectId form; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if is_object_id(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::NotObjectId(s.chars().take(64).collect()))
                }
            }

            /// A fresh, time-ordered id for an object created at `unix_seconds`.
            pub fn generate(unix_seconds: i64) -> Self {
                Self(new_object_id(unix_seconds.clamp(0, u32::MAX as i64) as u32))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

object_id!(
    /// A recovery job (`POST /api/webhooks/{id}/recover`): derived from the webhook and the
    /// window asked for, so asking again for the same window names the same job.
    RecoverJobId
);

impl RecoverJobId {
    /// The job id of `key` (the webhook and the window as asked): the first 12 bytes of its
    /// SHA-256, in the ObjectId form.
    pub fn derive(key: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        Self(hex::encode(&digest[..12]))
    }
}

object_id!(
    /// A webhook subscription.
    WebhookId
);
object_id!(
    /// A dakkio bucket (owned by the platform; this service only references it).
    BucketId
);
object_id!(
    /// One (event, webhook) delivery; the same across all its attempts. Receivers deduplicate on it.
    DeliveryId
);

/// The user a webhook belongs to: the JWT `sub`. Opaque to this service.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OwnerId(String);

impl OwnerId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
            return Err(IdError::BadOwner);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OwnerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<OwnerId> for String {
    fn from(o: OwnerId) -> String {
        o.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_parse_only_in_24_lowercase_hex() {
        assert!(WebhookId::parse("507f1f77bcf86cd799439011").is_ok());
        for bad in [
            "",
            "507f1f77bcf86cd79943901",
            "507f1f77bcf86cd7994390111",
            "507F1F77BCF86CD799439011",
            "507f1f77bcf86cd79943901g",
            "../../etc/passwd",
        ] {
            assert!(WebhookId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_ids_are_valid_unique_and_time_ordered() {
        let a = WebhookId::generate(1_700_000_000);
        let b = WebhookId::generate(1_700_000_000);
        let c = WebhookId::generate(1_700_000_001);
        assert!(WebhookId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a.as_str().starts_with("6553f100"));
    }

    #[test]
    fn owner_ids_refuse_empty_long_and_control_characters() {
        assert!(OwnerId::parse("user_1").is_ok());
        assert!(OwnerId::parse("").is_err());
        assert!(OwnerId::parse(&"x".repeat(129)).is_err());
        assert!(OwnerId::parse("a\nb").is_err());
    }
}
