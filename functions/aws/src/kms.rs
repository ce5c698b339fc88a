//! [`KmsKeyRing`]: the [`KeyRing`] of the Lambda functions — data keys from AWS KMS for sealing
//! webhook secrets and header values at rest ([`webhooks_core::sealing`]).
//!
//! - The key new values are sealed with comes from one `GenerateDataKey` (AES-256) per process
//!   (per cold start), made at the first write that needs it.
//! - A sealed value names its data key by the **encrypted** data key (base64url), so a reader
//!   needs KMS to open it: one `Decrypt` per data key per process (concurrent first reads wait
//!   for one), then a cache.
//! - Every call carries the encryption context [`ENCRYPTION_CONTEXT`] and the key id, so a data
//!   key made for another purpose or under another KMS key does not decrypt here; the webhook id
//!   binds each value to its item (AEAD associated data, in core).
//!
//! Errors: KMS refusing a ciphertext (`InvalidCiphertextException`, `IncorrectKeyException`,
//! `AccessDeniedException`, a disabled or missing key) is `UnknownKey` — the value cannot be
//! opened here; anything else (throttling, timeouts) is `Unavailable`, which callers retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webhooks_core::sealing::{DataKey, KeyRing, SealError};

/// The encryption context of every data key: what it is for.
pub const ENCRYPTION_CONTEXT: (&str, &str) = ("purpose", "dakkio-webhooks/secrets");

/// Decrypted data keys kept above this many are dropped all at once (a bound on memory: a
/// process sees a handful of data keys, one per cold start of a writer).
const CACHE_MAX: usize = 1_000;

/// Data keys from one KMS key (see the module docs).
#[derive(Debug)]
pub struct KmsKeyRing {
    client: Client,
    key_id: String,
    current: tokio::sync::OnceCell<Arc<DataKey>>,
    cache: Mutex<HashMap<String, Arc<DataKey>>>,
    /// One `Decrypt` at a time: the first deliveries of a cold batch all need the same data
    /// key, and without this each would decrypt it (lambda-cost counted 10 per cold start).
    decrypting: tokio::sync::Mutex<()>,
}

impl KmsKeyRing {
    /// Data keys under KMS key `key_id` (an ARN, key id or alias).
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            current: tokio::sync::OnceCell::new(),
            cache: Mutex::default(),
            decrypting: tokio::sync::Mutex::new(()),
        }
    }

    /// A key ring on the shared SDK config (what the Lambda mains build at cold start).
    pub fn from_config(sdk: &SdkConfig, key_id: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), key_id)
    }

    fn cached(&self, reference: &str) -> Option<Arc<DataKey>> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
            .cloned()
    }

    fn remember(&self, key: Arc<DataKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.reference().to_owned(), key);
    }

    async fn generate(&self) -> Result<Arc<DataKey>, SealError> {
        let (name, value) = ENCRYPTION_CONTEXT;
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(name, value)
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", e))?;
        let (Some(plain), Some(encrypted)) = (out.plaintext, out.ciphertext_blob) else {
            return Err(SealError::Unavailable(
                "KMS GenerateDataKey answered without a key".into(),
            ));
        };
        let key = Arc::new(DataKey::new(
            plain.as_ref(),
            URL_SAFE_NO_PAD.encode(encrypted.as_ref()),
        )?);
        self.remember(key.clone());
        Ok(key)
    }
}

#[async_trait]
impl KeyRing for KmsKeyRing {
    async fn current(&self) -> Result<Arc<DataKey>, SealError> {
        self.current
            .get_or_try_init(|| self.generate())
            .await
            .cloned()
    }

    async fn key(&self, reference: &str) -> Result<Arc<DataKey>, SealError> {
        if let Some(key) = self.cached(reference) {
            return Ok(key);
        }
        let _one_decrypt = self.decrypting.lock().await;
        // Another task may have decrypted it while this one waited.
        if let Some(key) = self.cached(reference) {
            return Ok(key);
        }
        let encrypted = URL_SAFE_NO_PAD
            .decode(reference)
            .map_err(|_| SealError::Malformed("key reference is not base64url"))?;
        let (name, value) = ENCRYPTION_CONTEXT;
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(encrypted))
            .encryption_context(name, value)
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", e))?;
        let plain = out
            .plaintext
            .ok_or_else(|| SealError::Unavailable("KMS Decrypt answered without a key".into()))?;
        let key = Arc::new(DataKey::new(plain.as_ref(), reference)?);
        self.remember(key.clone());
        Ok(key)
    }
}

/// A KMS error as a [`SealError`] (see the module docs). The message names the operation and
/// the error code only.
fn kms_error<E: ProvideErrorMetadata, R>(op: &str, err: SdkError<E, R>) -> SealError {
    const REFUSED: [&str; 6] = [
        "InvalidCiphertextException",
        "IncorrectKeyException",
        "AccessDeniedException",
        "DisabledException",
        "NotFoundException",
        "KMSInvalidStateException",
    ];
    match err.as_service_error().and_then(|e| e.code()) {
        Some(code) if REFUSED.contains(&code) => SealError::UnknownKey(format!("KMS {op}: {code}")),
        Some(code) => SealError::Unavailable(format!("KMS {op}: {code}")),
        None => SealError::Unavailable(format!("KMS {op}: {}", kind(&err))),
    }
}

fn kind<E, R>(err: &SdkError<E, R>) -> &'static str {
    match err {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "could not reach KMS",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ConstructionFailure(_) => "request not built",
        _ => "failed",
    }
}
