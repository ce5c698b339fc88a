//! The API function's JWT key from Secrets Manager (`JwtSecretId`), against moto: read once at
//! cold start through `webhooks_aws::secrets`, checked like `JWT_SECRET`, and errors that name
//! the secret, never a value.

use webhooks_api::config::ApiConfig;
use webhooks_aws::secrets::{SecretError, secret_string};

use crate::helpers::dynamo::sdk_config_for;
use crate::helpers::moto;

async fn create_secret(name: &str, value: Option<&str>) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config_for(moto::endpoint()));
    let mut req = sm.create_secret().name(name);
    req = match value {
        Some(v) => req.secret_string(v),
        None => req.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![1, 2, 3])),
    };
    req.send()
        .await
        .expect("CreateSecret on moto")
        .arn
        .expect("an ARN")
}

#[tokio::test]
async fn the_api_reads_its_jwt_key_from_secrets_manager_once_given_the_secrets_arn() {
    // GIVEN a secret holding a 40-byte key, and the API's config naming only its ARN
    let key = "jwt-key-from-secrets-manager-0123456789";
    let arn = create_secret(&format!("jwt-{}", std::process::id()), Some(key)).await;
    let mut config =
        ApiConfig::from_lookup(|k| (k == "JWT_SECRET_ID").then(|| arn.clone())).expect("config");
    assert!(config.jwt_secret.is_empty(), "no key in the environment");
    // WHEN the entry point reads it (what main does at cold start)
    let sdk = sdk_config_for(moto::endpoint());
    let value = secret_string(&sdk, config.jwt_secret_id.as_deref().unwrap())
        .await
        .expect("read");
    config.set_jwt_secret(value).expect("long enough");
    // THEN the key is the secret's value
    assert_eq!(config.jwt_secret, key.as_bytes());
}

#[tokio::test]
async fn a_missing_binary_or_short_secret_stops_the_start_naming_the_secret_not_a_value() {
    let sdk = sdk_config_for(moto::endpoint());
    // GIVEN no such secret THEN the error names it and the service's code
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf";
    let err = secret_string(&sdk, missing).await.unwrap_err();
    assert!(matches!(err, SecretError::Fetch { .. }), "{err:?}");
    assert!(
        err.to_string().contains(missing) && err.to_string().contains("ResourceNotFound"),
        "{err}"
    );
    // GIVEN a binary secret THEN refused
    let binary = create_secret(&format!("jwt-binary-{}", std::process::id()), None).await;
    assert!(matches!(
        secret_string(&sdk, &binary).await,
        Err(SecretError::NotText { .. })
    ));
    // GIVEN a short key THEN the config refuses it without quoting it
    let short = create_secret(
        &format!("jwt-short-{}", std::process::id()),
        Some("short-key"),
    )
    .await;
    let mut config =
        ApiConfig::from_lookup(|k| (k == "JWT_SECRET_ID").then(|| short.clone())).unwrap();
    let err = config
        .set_jwt_secret(secret_string(&sdk, &short).await.unwrap())
        .unwrap_err();
    assert!(!err.to_string().contains("short-key"), "{err}");
}
