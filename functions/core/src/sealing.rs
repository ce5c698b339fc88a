//! Secrets at rest: envelope encryption of what a store keeps that is a credential — a webhook's
//! signing secret, its rotated-out previous secret, and its custom headers' values.
//!
//! A store never writes those in clear: it writes [`DataKey::seal`]'s output,
//!
//! ```text
//! sealed:v1:<key reference>:<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>
//! ```
//!
//! with the **webhook id as associated data**, so a value copied into another webhook's item
//! (or a whole item copied under another id) does not open: it fails with
//! [`SealError::DoesNotOpen`], never a panic, never a wrong secret. The key reference says which
//! data key sealed it, so a key can change without rewriting anything:
//!
//! - on AWS ([`KeyRing`] in `webhooks-aws`): a data key from KMS `GenerateDataKey`, made once per
//!   cold start; its reference is the *encrypted* data key (base64url), which a reader turns back
//!   into the key with one KMS `Decrypt` and then caches. Nothing in the table opens without KMS.
//! - locally: one key from the data directory's `secret-key` file ([`StaticKeyRing`]); its
//!   reference is a fingerprint, so a value sealed under another key file is named as such.
//!
//! **Legacy values**: anything without the prefix is a value written before sealing existed and
//! is read as it is (a user secret cannot start with [`SEALED_PREFIX`]: validation refuses it,
//! and stored headers are JSON, which starts with `[`). Stores seal every value they write, so a
//! legacy value is sealed at its webhook's next write.
//!
//! What decides is here (format, algorithm, associated data, what is legacy); adapters only
//! supply keys. Pure apart from the [`KeyRing`] port (and the OS random source for nonces).

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::WebhookId;

/// What every sealed value starts with (`v1`: AES-256-GCM, 96-bit random nonce, webhook id as
/// associated data).
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// What a user secret may not start with (it would read as a sealed value).
pub const RESERVED_SECRET_PREFIX: &str = "sealed:";
/// Bytes of a data key (AES-256).
pub const DATA_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Why a value could not be sealed or opened. Messages never carry a value or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The stored text has the prefix but not the shape of a sealed value.
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// Authentication failed: the value was sealed for another webhook, or altered.
    #[error("sealed value does not open: sealed for another webhook, or altered")]
    DoesNotOpen,
    /// The value names a data key this process cannot have (another key file, a foreign KMS
    /// key, a data key KMS refused to decrypt).
    #[error("sealed with a key this process does not have ({0})")]
    UnknownKey(String),
    /// The key service could not answer (KMS throttled or unreachable): retry later.
    #[error("key service unavailable: {0}")]
    Unavailable(String),
    /// A data key of the wrong length, or an unusable reference.
    #[error("bad data key: {0}")]
    BadKey(&'static str),
}

impl SealError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SealError::Unavailable(_))
    }
}

/// One data key and the reference stored beside what it seals. `Debug` shows the reference's
/// start only, never the key.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
    reference: String,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.reference.chars().take(12).collect();
        write!(f, "DataKey({shown}…)")
    }
}

impl DataKey {
    /// A data key of [`DATA_KEY_BYTES`] bytes, known by `reference` (base64url characters only,
    /// since it sits between `:` separators).
    pub fn new(key: &[u8], reference: impl Into<String>) -> Result<Self, SealError> {
        if key.len() != DATA_KEY_BYTES {
            return Err(SealError::BadKey("a data key is 32 bytes"));
        }
        let reference = reference.into();
        let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if reference.is_empty() || !reference.chars().all(url_safe) {
            return Err(SealError::BadKey(
                "a key reference is non-empty base64url text",
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::BadKey("length"))?;
        Ok(Self { cipher, reference })
    }

    /// A key known by its fingerprint (`k` and the first 16 hex digits of its SHA-256): the local
    /// mode's key file.
    pub fn fingerprinted(key: &[u8]) -> Result<Self, SealError> {
        let digest = Sha256::digest(key);
        Self::new(key, format!("k{}", &hex::encode(digest)[..16]))
    }

    /// What sealed values name this key by.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// `plaintext` sealed for webhook `id` under this key (a fresh random nonce each time).
    pub fn seal(&self, id: &WebhookId, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: id.as_str().as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_else(|_| unreachable!("AES-GCM seals any input under 64 GiB"));
        let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!(
            "{SEALED_PREFIX}{}:{}",
            self.reference,
            URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Opens a value this key sealed for webhook `id`.
    fn open_sealed(&self, id: &WebhookId, sealed: &Sealed<'_>) -> Result<String, SealError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.payload)
            .map_err(|_| SealError::Malformed("payload is not base64url"))?;
        if raw.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SealError::Malformed("payload too short"));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: id.as_str().as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed("plaintext is not UTF-8"))
    }

    /// What a store read, in clear: a legacy (unsealed) value as it is, a value this key sealed
    /// opened. For stores with one key (the local mode), which need no [`KeyRing`] round trip.
    pub fn open_stored(&self, id: &WebhookId, stored: &str) -> Result<String, SealError> {
        match Sealed::parse(stored)? {
            None => Ok(stored.to_owned()),
            Some(s) if s.key_ref == self.reference => self.open_sealed(id, &s),
            Some(s) => Err(SealError::UnknownKey(short(s.key_ref))),
        }
    }
}

/// The first characters of a key reference, for messages.
fn short(reference: &str) -> String {
    let head: String = reference.chars().take(17).collect();
    if head.len() < reference.len() {
        format!("{head}…")
    } else {
        head
    }
}

/// A sealed value taken apart (borrowed from the stored text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The reference of the data key that sealed it.
    pub key_ref: &'a str,
    payload: &'a str,
}

impl<'a> Sealed<'a> {
    /// `Ok(None)` for a legacy (unsealed) value, the parts of a sealed one, or `Malformed`.
    pub fn parse(stored: &'a str) -> Result<Option<Self>, SealError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(None);
        };
        let (key_ref, payload) = rest
            .split_once(':')
            .ok_or(SealError::Malformed("no key reference"))?;
        if key_ref.is_empty() || payload.is_empty() {
            return Err(SealError::Malformed("empty part"));
        }
        Ok(Some(Self { key_ref, payload }))
    }
}

/// Whether a stored value is sealed (anything else is a legacy value, to seal at the next write).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// Where data keys come from.
///
/// Contract: [`current`](Self::current) is the key new values are sealed with; it may be made
/// lazily (KMS: once per process) and then stays the same for the process's life.
/// [`key`](Self::key) gives the key a stored reference names, from a cache when it has one;
/// `UnknownKey` when the reference can never be opened here, `Unavailable` when the key service
/// did not answer.
#[async_trait]
pub trait KeyRing: Send + Sync + fmt::Debug {
    async fn current(&self) -> Result<Arc<DataKey>, SealError>;
    async fn key(&self, reference: &str) -> Result<Arc<DataKey>, SealError>;
}

/// A key ring of one key (the local mode's key file; tests).
#[derive(Debug, Clone)]
pub struct StaticKeyRing(pub Arc<DataKey>);

#[async_trait]
impl KeyRing for StaticKeyRing {
    async fn current(&self) -> Result<Arc<DataKey>, SealError> {
        Ok(self.0.clone())
    }

    async fn key(&self, reference: &str) -> Result<Arc<DataKey>, SealError> {
        if reference == self.0.reference() {
            Ok(self.0.clone())
        } else {
            Err(SealError::UnknownKey(short(reference)))
        }
    }
}

/// Seals and opens values through a [`KeyRing`] (what the DynamoDB store holds).
#[derive(Debug, Clone)]
pub struct SecretCipher {
    ring: Arc<dyn KeyRing>,
}

impl SecretCipher {
    pub fn new(ring: Arc<dyn KeyRing>) -> Self {
        Self { ring }
    }

    /// A cipher with one key.
    pub fn with_key(key: DataKey) -> Self {
        Self::new(Arc::new(StaticKeyRing(Arc::new(key))))
    }

    /// `plaintext` sealed for webhook `id` with the current data key.
    pub async fn seal(&self, id: &WebhookId, plaintext: &str) -> Result<String, SealError> {
        Ok(self.ring.current().await?.seal(id, plaintext))
    }

    /// A stored value in clear: legacy values as they are, sealed ones opened with the key they
    /// name.
    pub async fn open(&self, id: &WebhookId, stored: &str) -> Result<String, SealError> {
        match Sealed::parse(stored)? {
            None => Ok(stored.to_owned()),
            Some(s) => self.ring.key(s.key_ref).await?.open_sealed(id, &s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> WebhookId {
        WebhookId::parse(&format!("507f1f77bcf86cd7994390{n:02x}")).unwrap()
    }

    fn key(byte: u8) -> DataKey {
        DataKey::fingerprinted(&[byte; DATA_KEY_BYTES]).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_for_its_webhook_only_and_never_shows_the_plaintext() {
        // GIVEN a key and a secret sealed for webhook 1
        let k = key(7);
        let sealed = k.seal(&id(1), "whsec_c2VjcmV0LXNlY3JldA==");
        // THEN the stored text is prefixed, names the key, and does not contain the secret
        assert!(sealed.starts_with(SEALED_PREFIX) && is_sealed(&sealed));
        assert!(sealed.contains(k.reference()));
        assert!(!sealed.contains("c2VjcmV0"));
        // AND it opens for webhook 1
        assert_eq!(
            k.open_stored(&id(1), &sealed).unwrap(),
            "whsec_c2VjcmV0LXNlY3JldA=="
        );
        // AND not for webhook 2 (an item copied under another id)
        assert_eq!(
            k.open_stored(&id(2), &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
        // AND sealing twice gives two different texts (fresh nonces)
        assert_ne!(k.seal(&id(1), "x"), k.seal(&id(1), "x"));
    }

    #[test]
    fn legacy_altered_malformed_and_foreign_values_are_told_apart() {
        let k = key(7);
        // GIVEN a legacy (plaintext) value THEN it reads as it is
        assert_eq!(
            k.open_stored(&id(1), "your_webhook_secret").unwrap(),
            "your_webhook_secret"
        );
        assert_eq!(k.open_stored(&id(1), "[]").unwrap(), "[]");
        // GIVEN a value sealed under another key THEN it is named unknown, not "does not open"
        let foreign = key(8).seal(&id(1), "secret");
        assert!(matches!(
            k.open_stored(&id(1), &foreign),
            Err(SealError::UnknownKey(_))
        ));
        // GIVEN an altered payload THEN it does not open
        let sealed = k.seal(&id(1), "secret");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            k.open_stored(&id(1), &altered).unwrap_err(),
            SealError::DoesNotOpen
        );
        // GIVEN malformed sealed texts THEN Malformed, never a panic
        for bad in [
            "sealed:v1:",
            "sealed:v1:abc",
            "sealed:v1::xyz",
            &format!("sealed:v1:{}:%%%", k.reference()),
            &format!("sealed:v1:{}:AAAA", k.reference()),
        ] {
            assert!(
                matches!(k.open_stored(&id(1), bad), Err(SealError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn data_keys_must_be_32_bytes_with_a_url_safe_reference() {
        assert!(DataKey::new(&[0; 16], "k1").is_err());
        assert!(DataKey::new(&[0; 32], "").is_err());
        assert!(DataKey::new(&[0; 32], "a:b").is_err());
        assert!(DataKey::new(&[0; 32], "AQID-_x").is_ok());
        // AND Debug never shows the key
        assert!(!format!("{:?}", key(7)).contains("0707"));
    }

    #[tokio::test]
    async fn the_cipher_seals_with_the_current_key_and_opens_by_reference() {
        // GIVEN a cipher on one key
        let cipher = SecretCipher::with_key(key(3));
        // WHEN a value is sealed and opened THEN it round-trips
        let sealed = cipher.seal(&id(1), "value").await.unwrap();
        assert_eq!(cipher.open(&id(1), &sealed).await.unwrap(), "value");
        // AND a legacy value passes, a copied one does not open, a foreign one is unknown
        assert_eq!(cipher.open(&id(1), "plain").await.unwrap(), "plain");
        assert_eq!(
            cipher.open(&id(2), &sealed).await.unwrap_err(),
            SealError::DoesNotOpen
        );
        let foreign = key(4).seal(&id(1), "v");
        assert!(matches!(
            cipher.open(&id(1), &foreign).await,
            Err(SealError::UnknownKey(_))
        ));
    }
}
