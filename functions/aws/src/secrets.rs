//! The API function's JWT key from AWS Secrets Manager: when `template.yaml`'s `JwtSecretId` is
//! given, the function gets the secret's ARN (`JWT_SECRET_ID`), never its value, and reads the
//! value here once at cold start (one `GetSecretValue`; the process keeps it). Nothing that can
//! read the function's configuration (`lambda:GetFunctionConfiguration`) sees the key, and a
//! rotated secret is picked up by the next cold start, with no redeploy.
//!
//! Errors name the secret id and the error code, never a value.

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

/// Why the key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager GetSecretValue of {id}: {detail}")]
    Fetch { id: String, detail: String },
    #[error("secret {id} has no SecretString (binary secrets are not supported)")]
    NotText { id: String },
}

/// The `SecretString` of secret `id` (name or ARN), as bytes.
pub async fn secret_string(sdk: &SdkConfig, id: &str) -> Result<Vec<u8>, SecretError> {
    let out = Client::new(sdk)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            id: id.to_owned(),
            detail: detail(&e),
        })?;
    out.secret_string
        .map(String::into_bytes)
        .ok_or_else(|| SecretError::NotText { id: id.to_owned() })
}

fn detail<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(e) => e.err().code().unwrap_or("service error").to_owned(),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach Secrets Manager".to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        _ => "failed".to_owned(),
    }
}
