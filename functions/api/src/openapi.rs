//! The OpenAPI 3 document of the API, generated from the handlers' annotations and the types they
//! use, so it cannot drift from the code. Served at `GET /api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{deliveries, events, notifications, webhooks};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "dakkio webhooks",
        description = "Subscribe HTTPS URLs to events of a dakkio bucket and receive each event as a signed, retried POST."
    ),
    paths(
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate_secret,
        webhooks::filter_test,
        deliveries::test, deliveries::list, deliveries::hourly, deliveries::dead_letters, deliveries::redeliver_one,
        deliveries::redeliver_all, deliveries::recover, deliveries::recover_job, events::publish,
        notifications::put, notifications::get, notifications::delete
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "webhooks", description = "Webhook subscriptions"),
        (name = "deliveries", description = "Test sends, delivery history, dead letters and redelivery"),
        (name = "events", description = "Publishing events (producers)"),
        (name = "notifications", description = "Operational notifications: webhook.failing, webhook.disabled, webhook.recovered")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT: HS256 with the platform's secret; or, when the deployment sets \
                         JWKS_URL, RS256/ES256 by the key its `kid` header names in that JWKS \
                         (`jku`/`x5u`/`jwk` headers are never followed). `exp` and `sub` \
                         required, `nbf`/`iat` honoured, `aud`/`iss` when configured; `buckets` \
                         scopes every route; `scope` with `events:publish` publishes only. 401 \
                         `unauthorized` says why a token is refused; 503 `jwks_unavailable` when \
                         the JWKS cannot be fetched.",
                    ))
                    .build(),
            ),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
