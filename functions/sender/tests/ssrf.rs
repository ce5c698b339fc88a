//! SSRF: in production configuration a webhook may reach only public unicast addresses. A table
//! of vectors, each checked at both gates: validation at create/update time (`validate_url`),
//! and the sender at connect time (IP literals checked before connecting; names through the DNS
//! answer, here from an injected lookup, so a name that resolves privately is refused too).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use webhooks_core::ports::{OutgoingRequest, SendError, WebhookSender};
use webhooks_core::validate::{UrlPolicy, validate_url};
use webhooks_sender::{HostLookup, ReqwestWebhookSender, SenderConfig};

#[derive(Debug)]
struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

impl HostLookup for FakeDns {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let r = self
            .0
            .get(host.as_str())
            .cloned()
            .ok_or_else(|| std::io::Error::other("NXDOMAIN"));
        Box::pin(async move { r })
    }
}

fn dns() -> Arc<FakeDns> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Arc::new(FakeDns(HashMap::from([
        ("internal.example.com", vec![ip("10.0.0.5")]),
        ("metadata.example.com", vec![ip("169.254.169.254")]),
        ("loopback.example.com", vec![ip("127.0.0.1")]),
        ("v6loop.example.com", vec![ip("::1")]),
        ("mapped.example.com", vec![ip("::ffff:192.168.0.1")]),
        ("ula.example.com", vec![ip("fd12:3456::1")]),
        ("cgnat.example.com", vec![ip("100.100.100.100")]),
        (
            "split.example.com",
            vec![ip("93.184.216.34"), ip("127.0.0.1")],
        ),
        ("zero.example.com", vec![ip("0.0.0.0")]),
        ("nat64local.example.com", vec![ip("64:ff9b:1::a00:5")]),
        (
            "teredo.example.com",
            vec![ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")],
        ),
        ("public.example.com", vec![ip("93.184.216.34")]),
    ])))
}

/// Literal and encoded addresses: refused by validation and by the sender.
const LITERALS: &[&str] = &[
    "https://127.0.0.1/",
    "https://127.1/",
    "https://127.0.0.1:443/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0x7f.0.0.1/",
    "https://017700000001/",
    "https://0177.0.0.1/",
    "https://10.0.0.1/",
    "https://10.255.255.255/",
    "https://172.16.0.1/",
    "https://172.31.255.254/",
    "https://192.168.0.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.170.2/v2/credentials",
    "https://100.64.0.1/",
    "https://100.127.255.254/",
    "https://0.0.0.0/",
    "https://0/",
    "https://255.255.255.255/",
    "https://224.0.0.1/",
    "https://239.255.255.250/",
    "https://192.0.0.8/",
    "https://192.0.2.1/",
    "https://198.51.100.1/",
    "https://203.0.113.1/",
    "https://198.18.0.1/",
    "https://240.0.0.1/",
    "https://[::1]/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[::127.0.0.1]/",
    "https://[64:ff9b::7f00:1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[2002:7f00:1::]/",
    "https://[fc00::1]/",
    "https://[fd00:ec2::254]/",
    "https://[fe80::1]/",
    "https://[fec0::1]/",
    "https://[ff02::1]/",
    "https://[2001:db8::1]/",
    "https://[64:ff9b:1::a00:1]/",
    "https://[64:ff9b:1:ffff::5db8:d822]/",
    "https://[2001::1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "https://user@127.0.0.1/",
    "https://public.example.com@10.0.0.1/",
];

/// Names refused by validation (by convention private) — the sender refuses them too, by DNS.
const NAMES: &[&str] = &[
    "https://localhost/",
    "https://LOCALHOST./",
    "https://app.localhost/",
    "https://printer.local/",
    "https://db.internal/",
    "https://intranet/",
];

/// Names that pass validation but resolve to private addresses: only the sender can refuse them.
const RESOLVING_PRIVATELY: &[&str] = &[
    "https://internal.example.com/hook",
    "https://metadata.example.com/latest",
    "https://loopback.example.com/",
    "https://v6loop.example.com/",
    "https://mapped.example.com/",
    "https://ula.example.com/",
    "https://cgnat.example.com/",
    "https://split.example.com/",
    "https://zero.example.com/",
    "https://nat64local.example.com/",
    "https://teredo.example.com/",
];

fn request(url: &str) -> OutgoingRequest {
    OutgoingRequest {
        url: url.to_owned(),
        headers: vec![],
        body: "{}".into(),
    }
}

#[tokio::test]
async fn every_private_vector_is_refused_in_production_configuration() {
    let sender = ReqwestWebhookSender::with_lookup(SenderConfig::default(), dns()).unwrap();
    let total = LITERALS.len() + NAMES.len() + RESOLVING_PRIVATELY.len();
    assert!(total >= 40, "{total} vectors");
    for url in LITERALS.iter().chain(NAMES) {
        let err = validate_url(url, UrlPolicy::PRODUCTION).expect_err(url);
        assert_eq!(err.code, "invalid_url", "{url}");
    }
    for url in LITERALS.iter().filter(|u| !u.contains('@')) {
        let err = sender.send(&request(url)).await.expect_err(url);
        assert!(matches!(err, SendError::Refused(_)), "{url}: {err:?}");
    }
    for url in RESOLVING_PRIVATELY {
        assert!(
            validate_url(url, UrlPolicy::PRODUCTION).is_ok(),
            "{url} is a public-looking name"
        );
        let err = sender.send(&request(url)).await.expect_err(url);
        assert!(matches!(err, SendError::Refused(_)), "{url}: {err:?}");
        assert!(
            !err.to_string().contains("/hook"),
            "no path in the error: {err}"
        );
    }
}

#[tokio::test]
async fn public_targets_are_accepted() {
    for url in [
        "https://93.184.216.34/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://hooks.slack.com/services/T0/B0/X",
        "https://public.example.com/webhook",
        "https://8.8.8.8:8443/x",
    ] {
        assert!(validate_url(url, UrlPolicy::PRODUCTION).is_ok(), "{url}");
    }
    // A public name passes the resolver's check: the failure is then a connection error,
    // not a refusal (nothing listens on that address from this sandbox).
    let sender = ReqwestWebhookSender::with_lookup(
        SenderConfig {
            timeout: std::time::Duration::from_millis(300),
            allow_private: false,
        },
        dns(),
    )
    .unwrap();
    let err = sender
        .send(&request("https://public.example.com/webhook"))
        .await
        .expect_err("no route");
    assert!(!matches!(err, SendError::Refused(_)), "{err:?}");
}
