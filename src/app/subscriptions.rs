//! Subscribing to channels (the API's `/subscriptions` and `tubesum watch`), and the WebSub
//! callback's checks: the hub's verification of intent, and the signature of its notifications.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};

use crate::actors::subscriptions::SubscriptionSettings;
use crate::domain::ChannelId;
use crate::domain::subscriptions::Subscription;
use crate::ports::{PortError, SubscriptionStore};

/// The longest interval a subscription may ask for: a year.
pub const MAX_INTERVAL_SECS: u64 = 365 * 24 * 3600;

/// Why a subscription was not made.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("interval_secs must be at least {min} (subscriptions.min_interval_secs), not {given}")]
    IntervalTooShort { min: u64, given: u64 },
    #[error("interval_secs must be at most {MAX_INTERVAL_SECS} (a year), not {0}")]
    IntervalTooLong(u64),
    #[error("channel {} already has a subscription ({})", .0.channel_id, .0.subscription_id)]
    Exists(Box<Subscription>),
    #[error(transparent)]
    Store(#[from] PortError),
}

/// Records a subscription to `channel`: every `interval` seconds (default
/// `subscriptions.default_interval_secs`), new uploads only unless `backfill`.
pub async fn subscribe(
    store: &dyn SubscriptionStore,
    settings: &SubscriptionSettings,
    channel: &ChannelId,
    interval: Option<u64>,
    backfill: bool,
) -> Result<Subscription, SubscribeError> {
    let interval = interval.unwrap_or(settings.default_interval_secs);
    if interval < settings.min_interval_secs {
        return Err(SubscribeError::IntervalTooShort { min: settings.min_interval_secs, given: interval });
    }
    if interval > MAX_INTERVAL_SECS {
        return Err(SubscribeError::IntervalTooLong(interval));
    }
    match store.create_subscription(channel, Duration::from_secs(interval), backfill).await {
        Ok(subscription) => {
            tracing::info!(subscription = %subscription.subscription_id, %channel, interval, "subscribed");
            Ok(subscription)
        }
        Err(PortError::AlreadyExists(what)) => {
            let existing = store.list_subscriptions().await?.into_iter().find(|s| &s.channel_id == channel);
            match existing {
                Some(existing) => Err(SubscribeError::Exists(Box::new(existing))),
                // Deleted meanwhile: the conflict as the store told it.
                None => Err(PortError::AlreadyExists(what).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `topic` (a WebSub `hub.topic`) is the feed of `channel`: a URL whose `channel_id`
/// query parameter names it, as YouTube's hub topics do.
pub fn topic_names(topic: &str, channel: &ChannelId) -> bool {
    let Ok(url) = reqwest::Url::parse(topic) else { return false };
    url.query_pairs().any(|(key, value)| key == "channel_id" && value == channel.as_str())
}

/// Whether `header` (`X-Hub-Signature: sha1=<hex>`, or `sha256=<hex>`) is the HMAC of `body`
/// under `secret`. An empty secret accepts nothing.
pub fn hub_signature_valid(secret: &SecretString, body: &[u8], header: Option<&str>) -> bool {
    let secret = secret.expose_secret().as_bytes();
    let Some((method, given)) = header.and_then(|h| h.trim().split_once('=')) else { return false };
    let Ok(given) = hex::decode(given) else { return false };
    if secret.is_empty() {
        return false;
    }
    match method {
        "sha1" => {
            Hmac::<sha1::Sha1>::new_from_slice(secret).map(|mac| mac.chain_update(body).verify_slice(&given).is_ok())
        }
        "sha256" => {
            Hmac::<sha2::Sha256>::new_from_slice(secret).map(|mac| mac.chain_update(body).verify_slice(&given).is_ok())
        }
        _ => return false,
    }
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap().chain_update(body);
        format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_notification_is_taken_only_with_the_hmac_of_its_body() {
        let secret = SecretString::from("s3cret".to_owned());
        let body = b"<feed>...</feed>";
        assert!(hub_signature_valid(&secret, body, Some(&sign("s3cret", body))));
        assert!(!hub_signature_valid(&secret, body, Some(&sign("other", body))));
        assert!(!hub_signature_valid(&secret, b"<feed>changed</feed>", Some(&sign("s3cret", body))));
        assert!(!hub_signature_valid(&secret, body, None));
        assert!(!hub_signature_valid(&secret, body, Some("md5=00")));
        assert!(!hub_signature_valid(&secret, body, Some("sha1=not-hex")));
        let empty = SecretString::from(String::new());
        assert!(!hub_signature_valid(&empty, body, Some(&sign("", body))), "no secret, no notification");
    }

    #[test]
    fn a_topic_names_its_channel_by_its_query() {
        let channel = ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap();
        let topic = "https://www.youtube.com/xml/feeds/videos.xml?channel_id=UCabcdefghijklmnopqrstuv";
        assert!(topic_names(topic, &channel));
        assert!(!topic_names(
            "https://www.youtube.com/xml/feeds/videos.xml?channel_id=UCzzzzzzzzzzzzzzzzzzzzzz",
            &channel
        ));
        assert!(!topic_names("not a url", &channel));
    }
}
