//! # webhooks-sender
//!
//! [`ReqwestWebhookSender`], the [`WebhookSender`] used by the delivery Lambda and the local
//! worker. It must not depend on AWS, Lambda or axum crates.
//!
//! What it guarantees (DESIGN.md §4):
//! - a timeout on the whole request (30 s by default, per deployment);
//! - redirects are never followed: a 3xx is returned as the answer (and the dispatcher counts
//!   it a failure);
//! - unless private targets are allowed (local mode, tests), a target that is or resolves to a
//!   non-public address is refused: IP literals are checked before connecting, names through a
//!   DNS resolver that drops the whole answer if any address is private, so the connection goes
//!   only to an address that was checked;
//! - only the first [`MAX_RESPONSE_EXCERPT`] bytes of a response body are read and kept;
//! - connections are pooled and kept alive per receiver;
//! - error texts never include the URL (receiver URLs can carry tokens, like Slack's).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use webhooks_core::delivery::{MAX_RESPONSE_EXCERPT, excerpt};
use webhooks_core::ports::{OutgoingRequest, SendError, SenderResponse, WebhookSender};
use webhooks_core::validate::is_public_ip;

/// Per-deployment settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    pub timeout: Duration,
    /// Allow loopback, private and other non-public targets (local mode and tests only).
    pub allow_private: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            allow_private: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReqwestWebhookSender {
    client: reqwest::Client,
    config: SenderConfig,
}

/// The resolver's refusal, recognised in the error chain.
#[derive(Debug)]
struct PrivateTarget(String);

impl std::fmt::Display for PrivateTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to a non-public address", self.0)
    }
}

impl std::error::Error for PrivateTarget {}

/// Looks up a host name's addresses. The system resolver in production; tests inject names
/// that resolve to private addresses.
pub trait HostLookup: Send + Sync + std::fmt::Debug + 'static {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// getaddrinfo, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Keeps a DNS answer only if every address in it is public, so a name with one private
/// address (DNS rebinding, split answers) is refused as a whole, and reqwest connects only to
/// addresses that were checked.
#[derive(Debug)]
struct PublicOnlyResolver(Arc<dyn HostLookup>);

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.0.clone();
        Box::pin(async move {
            let ips = lookup.lookup(host.clone()).await?;
            if ips.is_empty() || ips.iter().any(|ip| !is_public_ip(*ip)) {
                return Err(
                    Box::new(PrivateTarget(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}

impl ReqwestWebhookSender {
    pub fn new(config: SenderConfig) -> Result<Self, reqwest::Error> {
        Self::with_lookup(config, Arc::new(SystemLookup))
    }

    /// With a custom name lookup (tests).
    pub fn with_lookup(
        config: SenderConfig,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .no_proxy();
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver(lookup)));
        }
        Ok(Self {
            client: builder.build()?,
            config,
        })
    }

    fn classify(&self, e: reqwest::Error) -> SendError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(p) = s.downcast_ref::<PrivateTarget>() {
                return SendError::Refused(p.to_string());
            }
            source = s.source();
        }
        if e.is_timeout() {
            return SendError::Timeout(self.config.timeout.as_secs());
        }
        let connect = e.is_connect();
        let text = chain(&e.without_url());
        if connect {
            SendError::Connect(text)
        } else {
            SendError::Other(text)
        }
    }
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[async_trait]
impl WebhookSender for ReqwestWebhookSender {
    async fn send(&self, request: &OutgoingRequest) -> Result<SenderResponse, SendError> {
        let url =
            url::Url::parse(&request.url).map_err(|e| SendError::Other(format!("bad url: {e}")))?;
        if !self.config.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| !is_public_ip(*ip)) {
                return Err(SendError::Refused(format!("{ip} is not a public address")));
            }
        }
        let mut req = self.client.post(url).body(request.body.clone());
        for (name, value) in &request.headers {
            req = req.header(name.as_ref(), value);
        }
        let mut res = req.send().await.map_err(|e| self.classify(e))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        // Read just enough for the history; a failure to read the rest does not change the answer.
        while body.len() <= MAX_RESPONSE_EXCERPT {
            match res.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %chain(&e.without_url()), "response body cut short");
                    break;
                }
            }
        }
        Ok(SenderResponse {
            status,
            retry_after,
            body_excerpt: excerpt(&body),
        })
    }
}
