//! The API Lambda: wiring only. Tracing, configuration from the environment (failing at cold
//! start with the missing variable's name), SDK clients and adapters built once, then
//! `lambda_http` serves the same Router the local mode serves.

use std::sync::Arc;

use webhooks_api::config::ApiConfig;
use webhooks_api::{AppState, Ports, router};
use webhooks_aws::{
    DeliveryLogConfig, DynamoDbConfig, DynamoDbDeliveryLog, DynamoDbHealthStore,
    DynamoDbIdempotencyStore, DynamoDbSubscriptionStore, SqsConfig, SqsDeliveryQueue,
    load_sdk_config,
};
use webhooks_core::time::SystemClock;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps each line
        .init();
    let mut config = ApiConfig::from_env()?;
    let sdk = load_sdk_config().await;
    // JwtSecretId: the key is read once here, never put into the environment.
    if let Some(id) = config.jwt_secret_id.clone() {
        config.set_jwt_secret(webhooks_aws::secrets::secret_string(&sdk, &id).await?)?;
    }
    let log_config = DeliveryLogConfig::from_env()?;
    let ports = Ports {
        store: Arc::new(
            DynamoDbSubscriptionStore::from_config(&sdk, &DynamoDbConfig::from_env()?)
                .with_fan_out_cache(webhooks_api::SUBSCRIBERS_CACHE_TTL),
        ),
        log: Arc::new(DynamoDbDeliveryLog::from_config(&sdk, &log_config)),
        queue: Arc::new(SqsDeliveryQueue::from_config(&sdk, &SqsConfig::from_env()?)),
        clock: Arc::new(SystemClock),
    };
    let mut state = AppState::new(ports, config.url_policy, &config.jwt_secret)?
        .with_idempotency(Arc::new(DynamoDbIdempotencyStore::from_config(
            &sdk,
            &log_config,
        )))
        .with_health(Arc::new(DynamoDbHealthStore::from_config(
            &sdk,
            &log_config,
        )))
        .with_token_rules(&config.token_rules)
        // Publish sizes as CloudWatch EMF lines on stdout (webhooks_aws::emf).
        .with_metrics(Arc::new(webhooks_aws::emf::EmfSink::stdout("api")));
    // JwksUrl: RS256/ES256 tokens beside HS256; the set is fetched on first use.
    if let Some(url) = &config.jwks_url {
        let jwks = webhooks_api::jwks::Jwks::new(url, Default::default())
            .map_err(|why| format!("JWKS_URL: {why}"))?;
        state = state.with_jwks(Arc::new(jwks));
    }
    lambda_http::run(router(state)).await
}
