//! The production adapters' settings (`[database]`, `[mongodb]`, `[amqp]`, `[kafka]`), compiled
//! whatever features are on: a configuration stays valid for every build, and asking a build for a
//! backend it lacks is refused when the adapters are wired, naming the feature. Also `[webhooks]`:
//! how deliveries are sent (the HTTP adapter) and retried (the dispatcher).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    /// How long events stay in the outbox once every broker has them (0 = for ever).
    pub outbox_retention_hours: u64,
    /// Video-row writes committed together at most (group commit); 1 = each write alone.
    pub write_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    pub url: SecretString,
    pub database: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: SecretString,
    pub retry_delay_ms: u64,
    pub max_deliveries: u32,
    pub events_exchange: String,
    pub queue_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic_prefix: String,
}

/// `[webhooks]`: outgoing webhook deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Let webhook URLs reach loopback, private, link-local and other non-public addresses
    /// (checked after DNS resolution, when a webhook is registered and at every delivery).
    pub allow_private_addresses: bool,
    /// Attempts at a delivery before it is `failed`.
    pub max_attempts: u32,
    /// Retries wait a capped exponential backoff with jitter: from this …
    pub backoff_initial_ms: u64,
    /// … up to this.
    pub backoff_max_ms: u64,
    /// One attempt's limit (connect, send, answer).
    pub timeout_secs: u64,
    /// Deliveries sent at once by each process.
    pub concurrency: usize,
    /// How often each process looks for due deliveries (it also looks at once when it enqueued some).
    pub poll_interval_ms: u64,
}

impl WebhookSettings {
    pub fn backoff(&self) -> crate::domain::Backoff {
        crate::domain::Backoff {
            initial: std::time::Duration::from_millis(self.backoff_initial_ms),
            max: std::time::Duration::from_millis(self.backoff_max_ms.max(self.backoff_initial_ms)),
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

/// Query parameters whose values are secrets (compared without case).
const SECRET_PARAMS: &[&str] =
    &["password", "passwd", "pass", "pwd", "sslpassword", "secret", "token", "access_token", "api_key", "apikey"];

/// A URL with its secrets replaced by `***`, for messages: the password of its user info
/// (`scheme://user:***@host`) and the values of query parameters such as `password=` or `token=`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match base[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
            None => base.to_owned(),
        },
        _ => base.to_owned(),
    };
    let Some(query) = query else { return base };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(key)) => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("amqp://guest:guest@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/db"), "postgres://postgres@127.0.0.1/db");
        assert_eq!(redact_url("mongodb://u:p@a:1,b:2/?x=1"), "mongodb://u:***@a:1,b:2/?x=1");
        assert_eq!(
            redact_url("postgres://h/db?user=me&Password=s3cret&sslmode=require&token=t"),
            "postgres://h/db?user=me&Password=***&sslmode=require&token=***"
        );
        assert_eq!(redact_url("amqp://u:p@h/%2f?password=x"), "amqp://u:***@h/%2f?password=***");
        assert_eq!(redact_url("http://h/?a=b@c"), "http://h/?a=b@c", "an @ in the query is not user info");
    }
}
