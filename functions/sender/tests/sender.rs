//! The sender against real HTTP servers on 127.0.0.1 (axum, and a raw TCP listener for a
//! connection that closes without answering).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use webhooks_core::ports::{OutgoingRequest, SendError, WebhookSender};
use webhooks_sender::{ReqwestWebhookSender, SenderConfig};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn local(timeout_ms: u64) -> ReqwestWebhookSender {
    ReqwestWebhookSender::new(SenderConfig {
        timeout: Duration::from_millis(timeout_ms),
        allow_private: true,
    })
    .unwrap()
}

fn req(url: String) -> OutgoingRequest {
    OutgoingRequest {
        url,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-webhook-id".into(), "abc".into()),
        ],
        body: r#"{"a":1}"#.into(),
    }
}

#[tokio::test]
async fn posts_body_and_headers_and_reads_status_retry_after_and_a_bounded_excerpt() {
    let app = Router::new().route(
        "/hook",
        post(|headers: HeaderMap, body: String| async move {
            assert_eq!(headers["x-webhook-id"], "abc");
            assert_eq!(body, r#"{"a":1}"#);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "7")],
                "x".repeat(100_000),
            )
        }),
    );
    let base = serve(app).await;
    let res = local(5000)
        .send(&req(format!("{base}/hook")))
        .await
        .unwrap();
    assert_eq!(res.status, 429);
    assert_eq!(res.retry_after.as_deref(), Some("7"));
    assert_eq!(res.body_excerpt.len(), 1024);
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let followed = Arc::new(AtomicUsize::new(0));
    let f = followed.clone();
    let app = Router::new()
        .route(
            "/hook",
            post(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response()
            }),
        )
        .route(
            "/elsewhere",
            post(move || {
                f.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            })
            .get(|| async { "ok" }),
        );
    let base = serve(app).await;
    let res = local(5000)
        .send(&req(format!("{base}/hook")))
        .await
        .unwrap();
    assert_eq!(res.status, 302);
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out() {
    let app = Router::new().route(
        "/hook",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let base = serve(app).await;
    let started = std::time::Instant::now();
    let err = local(300)
        .send(&req(format!("{base}/hook")))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_closed_connection_and_a_refused_port_are_failures_without_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            drop(sock); // close without answering
        }
    });
    let err = local(5000)
        .send(&req(format!("http://{addr}/secret-token-in-path")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Other(_) | SendError::Connect(_)),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret-token"), "{err}");

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = local(5000)
        .send(&req(format!("http://{free}/x")))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn production_config_refuses_private_literals_and_names_that_resolve_privately() {
    let prod = ReqwestWebhookSender::new(SenderConfig::default()).unwrap();
    let base = serve(Router::new().route("/hook", post(|| async { "ok" }))).await;
    for url in [
        format!("{base}/hook"),
        "http://10.0.0.1/x".into(),
        "http://[::1]/x".into(),
    ] {
        let err = prod.send(&req(url.clone())).await.unwrap_err();
        assert!(matches!(err, SendError::Refused(_)), "{url}: {err:?}");
    }
    let port = base.rsplit(':').next().unwrap();
    let err = prod
        .send(&req(format!("http://localhost:{port}/hook")))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "localhost: {err:?}");
}
