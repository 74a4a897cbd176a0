//! Webhook deliveries over HTTP ([`HttpWebhookSender`]), and the guard every webhook URL passes
//! ([`check_url`]): `http` or `https` with a host, and — unless `webhooks.allow_private_addresses`
//! — every address its host resolves to public (see [`non_public`]).
//!
//! The guard runs when a webhook is registered and again at every delivery; the client also
//! resolves through it (its `GuardedResolver`), so the address a delivery connects to is one that
//! was checked (a name re-pointed at a private address between the check and the connection —
//! DNS rebinding — is refused too). Redirects are not followed and no proxy is used: a receiver
//! cannot steer a delivery elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;

use super::settings::WebhookSettings;
use crate::domain::webhooks::non_public;
use crate::ports::{SendOutcome, WebhookRequest, WebhookSender};

/// The longest webhook URL taken.
pub const MAX_URL_CHARS: usize = 2048;
/// How long resolving a webhook's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a failed answer's body is kept in the delivery's `last_error`.
const ERROR_BODY_CHARS: usize = 200;

/// Why a webhook URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("invalid webhook url {url:?}: {reason}")]
    Invalid { url: String, reason: String },
    /// An address webhooks may not reach by default.
    #[error(
        "webhook url {url:?} is refused: {}: a {reason} address; webhooks reach such addresses only when \
         webhooks.allow_private_addresses = true (TUBESUM_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES)",
        where_to(host, ip)
    )]
    Private { url: String, host: String, ip: IpAddr, reason: &'static str },
    /// The host did not resolve (it may later: at delivery time this is worth a retry).
    #[error("webhook url {url:?}: cannot resolve {host}: {reason}")]
    Unresolvable { url: String, host: String, reason: String },
}

/// `127.0.0.1`, or `localhost resolves to 127.0.0.1`.
fn where_to(host: &str, ip: &IpAddr) -> String {
    if host.parse::<IpAddr>().is_ok_and(|h| h == *ip) { ip.to_string() } else { format!("{host} resolves to {ip}") }
}

/// `raw` as a webhook URL: absolute, `http` or `https`, with a host, no fragment, at most
/// [`MAX_URL_CHARS`].
pub fn parse_url(raw: &str) -> Result<Url, UrlRefused> {
    let invalid = |reason: &str| UrlRefused::Invalid { url: raw.to_owned(), reason: reason.to_owned() };
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(invalid(&format!("longer than {MAX_URL_CHARS} characters")));
    }
    let url = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if url.fragment().is_some() {
        return Err(invalid("a fragment (#…) is never sent; leave it out"));
    }
    Ok(url)
}

/// Parses `raw` ([`parse_url`]) and resolves its host; unless `allow_private`, refuses it when
/// any address the host resolves to is not public. Returns the addresses.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Vec<SocketAddr>, UrlRefused> {
    let url = parse_url(raw)?;
    let port = url.port_or_known_default().unwrap_or(80);
    // An IPv6 host comes bracketed: `[::1]`.
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let addrs = resolve(&host, port).await.map_err(|reason| UrlRefused::Unresolvable {
        url: raw.to_owned(),
        host: host.clone(),
        reason,
    })?;
    if !allow_private {
        refuse_private(&addrs).map_err(|(ip, reason)| UrlRefused::Private { url: raw.to_owned(), host, ip, reason })?;
    }
    Ok(addrs)
}

/// Every address `host` resolves to (an IP address is itself), within [`RESOLVE_TIMEOUT`].
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

/// The first address that is not public, with why.
fn refuse_private(addrs: &[SocketAddr]) -> Result<(), (IpAddr, &'static str)> {
    match addrs.iter().find_map(|a| non_public(a.ip()).map(|reason| (a.ip(), reason))) {
        Some(refused) => Err(refused),
        None => Ok(()),
    }
}

/// The client's resolver: the system's, with the same guard as [`check_url`], so the client only
/// ever connects to addresses that passed it.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await.map_err(|reason| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(UrlRefused::Unresolvable { url: String::new(), host: host.clone(), reason })
            })?;
            if !allow_private && let Err((ip, reason)) = refuse_private(&addrs) {
                return Err(Box::new(UrlRefused::Private { url: String::new(), host, ip, reason }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends deliveries with one HTTP client (connections are reused across deliveries).
pub struct HttpWebhookSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl HttpWebhookSender {
    pub fn new(settings: &WebhookSettings) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout())
            .connect_timeout(settings.timeout())
            .user_agent(concat!("tubesum-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private: settings.allow_private_addresses }))
            .build()
            .map_err(|e| format!("building the webhook HTTP client: {e}"))?;
        Ok(Self { client, allow_private: settings.allow_private_addresses })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        match check_url(&request.url, self.allow_private).await {
            Ok(_) => {}
            Err(e @ UrlRefused::Unresolvable { .. }) => {
                return SendOutcome::Failed { status: None, error: e.to_string() };
            }
            Err(e) => return SendOutcome::Refused { error: e.to_string() },
        }
        let mut post = self.client.post(&request.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in &request.headers {
            post = post.header(*name, value);
        }
        let response = match post.body(request.body.clone()).send().await {
            Ok(response) => response,
            Err(e) => {
                return match refusal(&e) {
                    Some(refused @ UrlRefused::Private { .. }) => SendOutcome::Refused { error: refused.to_string() },
                    _ => SendOutcome::Failed { status: None, error: describe(&e) },
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return SendOutcome::Delivered { status: status.as_u16() };
        }
        let mut error = format!("HTTP {status}");
        if status.is_redirection() {
            error.push_str(" (redirects are not followed: register the URL it points to)");
        } else if let Ok(body) = response.text().await {
            let body: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
            if !body.is_empty() {
                error = format!("{error}: {body}");
            }
        }
        SendOutcome::Failed { status: Some(status.as_u16()), error }
    }
}

/// The guard's refusal somewhere in an error's chain of causes.
fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<UrlRefused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<UrlRefused>() {
            return Some(refused.clone());
        }
        cause = e.source();
    }
    None
}

/// A transport error with its causes (reqwest's own message is only the outermost).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_owned() } else { error.to_string() };
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_with_a_host_are_taken() {
        for ok in ["http://example.com/hook", "https://example.com:8443/a?b=c", "http://[2606:4700::1111]/x"] {
            assert!(parse_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://example.com/", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("example.com/hook", "relative URL"),
            ("https://example.com/#top", "fragment"),
            ("", "relative URL"),
        ] {
            let err = parse_url(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).unwrap_err().to_string().contains("longer than"));
    }

    #[tokio::test]
    async fn private_addresses_are_refused_after_resolution_unless_allowed() {
        for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]/", "http://169.254.169.254/"] {
            let err = check_url(url, false).await.unwrap_err();
            assert!(matches!(err, UrlRefused::Private { .. }), "{url}: {err}");
            let message = err.to_string();
            assert!(message.contains("webhooks.allow_private_addresses"), "{message}");
            assert!(check_url(url, true).await.is_ok(), "{url} is allowed when configured");
        }
        let err = check_url("http://localhost:9/hook", false).await.unwrap_err().to_string();
        assert!(err.contains("localhost resolves to 127.0.0.1: a loopback") || err.contains("to ::1"), "{err}");
        let err = check_url("http://10.1.2.3/", false).await.unwrap_err().to_string();
        assert!(err.contains("is refused: 10.1.2.3: a private (10.0.0.0/8) address"), "{err}");
        assert!(check_url("http://8.8.8.8/hook", false).await.is_ok(), "a public address (no connection made)");
    }

    fn sender(allow_private: bool) -> HttpWebhookSender {
        HttpWebhookSender::new(&WebhookSettings {
            allow_private_addresses: allow_private,
            max_attempts: 3,
            backoff_initial_ms: 10,
            backoff_max_ms: 100,
            timeout_secs: 5,
            concurrency: 1,
            poll_interval_ms: 100,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_delivery_to_a_refused_address_is_never_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}/hook", listener.local_addr().unwrap().port());
        let request = WebhookRequest { url, body: bytes::Bytes::from_static(b"{}"), headers: Vec::new() };
        let outcome = sender(false).send(&request).await;
        assert!(matches!(&outcome, SendOutcome::Refused { error } if error.contains("loopback")), "{outcome:?}");
        // Allowed, it is sent: nothing answers HTTP there (the listener never accepts), so it fails
        // for a reason worth a retry, not a refusal.
        drop(listener);
        let outcome = sender(true).send(&request).await;
        assert!(matches!(outcome, SendOutcome::Failed { status: None, .. }), "{outcome:?}");
    }
}
