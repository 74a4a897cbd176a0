//! Webhooks out: the endpoints people register for chosen events, the deliveries made to them,
//! the signed body each delivery carries, and which network addresses a delivery may reach.
//!
//! Pure: the store keeps these ([`crate::ports::WebhookStore`]), an adapter sends them, and the
//! actor runtime decides when.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DomainEvent, JobId, VideoId};

/// The events a webhook may ask for: the domain events' kinds
/// ([`EventPayload::kind`](super::EventPayload::kind)).
pub const EVENT_NAMES: &[&str] = &[
    "video_discovered",
    "discovery_completed",
    "video_downloaded",
    "audio_extracted",
    "transcription_completed",
    "summarization_completed",
    "stage_failed",
    "job_finished",
];

/// Other names accepted for an event, and the event each names.
pub const EVENT_ALIASES: &[(&str, &str)] = &[("video_summarized", "summarization_completed")];

/// The header that carries a delivery's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Tubesum-Signature";
/// The header that names the event a delivery reports.
pub const EVENT_HEADER: &str = "X-Tubesum-Event";
/// The header that carries a delivery's id (the same on every attempt: receivers deduplicate by it).
pub const DELIVERY_HEADER: &str = "X-Tubesum-Delivery";

text_enum!(
    /// Where a delivery stands: `pending` (not sent yet, or to be tried again at
    /// `next_attempt_at`), `delivered` (the receiver answered 2xx), `failed` (given up).
    DeliveryStatus {
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
    }
);

/// A registered endpoint. Its secret is kept by the store and never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub webhook_id: Uuid,
    /// Where deliveries are POSTed.
    #[schema(example = "https://hooks.example.com/tubesum")]
    pub url: String,
    /// The events delivered to it (their kinds; an alias is stored as the event it names).
    #[schema(example = json!(["summarization_completed", "job_finished"]))]
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether the webhook asked for events of this kind.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }
}

/// One event for one webhook, and how sending it went so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    /// The event's kind.
    pub event: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the last answer, when the last attempt got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When it is tried next (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The events named by `names` (aliases resolved, each once, in the order given), or why not:
/// an empty list, or unknown names (listed, with the valid ones).
pub fn parse_events(names: &[String]) -> Result<Vec<String>, String> {
    let valid = || {
        let aliases = EVENT_ALIASES.iter().map(|(alias, _)| *alias);
        EVENT_NAMES.iter().copied().chain(aliases).collect::<Vec<_>>().join(", ")
    };
    if names.is_empty() {
        return Err(format!("events must name at least one event; valid events: {}", valid()));
    }
    let mut events: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        let canonical = EVENT_ALIASES.iter().find(|(alias, _)| alias == name).map_or(name.as_str(), |(_, e)| *e);
        if !EVENT_NAMES.contains(&canonical) {
            unknown.push(format!("{name:?}"));
        } else if !events.iter().any(|e| e == canonical) {
            events.push(canonical.to_owned());
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "unknown event{} {}; valid events: {}",
            plural(unknown.len()),
            unknown.join(", "),
            valid()
        ));
    }
    Ok(events)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The JSON body of a delivery (the same on every attempt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBody {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    /// The event's kind (also in `X-Tubesum-Event`).
    pub event: String,
    pub event_id: Uuid,
    pub job_id: JobId,
    pub video_id: Option<VideoId>,
    pub occurred_at: DateTime<Utc>,
    /// The event's own fields, with its `type`.
    pub data: serde_json::Value,
}

impl DeliveryBody {
    pub fn new(delivery_id: Uuid, webhook_id: Uuid, event: &DomainEvent) -> Self {
        let mut data = serde_json::to_value(&event.payload).unwrap_or(serde_json::Value::Null);
        if let (Some(ms), serde_json::Value::Object(fields)) = (event.duration_ms, &mut data) {
            fields.insert("duration_ms".into(), ms.into());
        }
        Self {
            delivery_id,
            webhook_id,
            event: event.payload.kind().to_owned(),
            event_id: event.event_id,
            job_id: event.job_id,
            video_id: event.video_id.clone(),
            occurred_at: event.occurred_at,
            data,
        }
    }
}

/// The `X-Tubesum-Signature` value for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// What a receiver does with a delivery: checks its signature header against the body as
/// received, in constant time, and that it was signed within `tolerance_secs` of `now` (a
/// replayed delivery is refused).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else { return false };
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    signatures.iter().any(|s| mac(secret, timestamp, body).verify_slice(s).is_ok())
}

/// Why an address is not one webhooks may reach by default (loopback, private, link-local, …);
/// `None` for a public address. IPv4 addresses written as IPv6 (mapped, compatible, NAT64, 6to4)
/// are judged as the IPv4 address they carry.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_broadcast() => "broadcast",
        (0, ..) => "\"this network\" (0.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(reason)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    // ::a.b.c.d (IPv4-compatible, deprecated) and 64:ff9b::a.b.c.d (NAT64).
    if (segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified())
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return non_public_v4(Ipv4Addr::from(((segments[6] as u32) << 16) | segments[7] as u32));
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if segments[0] == 0x2002 {
        let carried = Ipv4Addr::from(((segments[1] as u32) << 16) | segments[2] as u32);
        if let Some(reason) = non_public_v4(carried) {
            return Some(reason);
        }
    }
    let reason = match segments[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        s if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        s if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        s if s & 0xff00 == 0xff00 => "multicast",
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        _ => return None,
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventPayload, JobStatus, Stage, TranscriptSource};

    #[test]
    fn every_event_kind_can_be_asked_for() {
        let payloads = [
            EventPayload::VideoDiscovered { title: "t".into(), published_at: None },
            EventPayload::VideoDownloaded { captions: false, reused: false },
            EventPayload::AudioExtracted { seconds: 1.0 },
            EventPayload::TranscriptionCompleted { source: TranscriptSource::Whisper, segments: 1 },
            EventPayload::SummarizationCompleted { summarizer: "textrank".into() },
            EventPayload::DiscoveryCompleted { videos: 1 },
            EventPayload::StageFailed {
                stage: Stage::Download,
                attempt: 1,
                retryable: true,
                reason: "r".into(),
                redo: None,
            },
            EventPayload::JobFinished { status: JobStatus::Completed },
        ];
        assert_eq!(payloads.len(), EVENT_NAMES.len());
        for payload in payloads {
            assert!(EVENT_NAMES.contains(&payload.kind()), "{} is missing", payload.kind());
        }
    }

    #[test]
    fn event_names_resolve_aliases_once_and_unknown_ones_are_listed() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let events = parse_events(&names(&["job_finished", "video_summarized", "summarization_completed"])).unwrap();
        assert_eq!(events, ["job_finished", "summarization_completed"]);
        let err = parse_events(&names(&["job_finished", "video_exploded", "nope"])).unwrap_err();
        assert!(err.starts_with("unknown events \"video_exploded\", \"nope\""), "{err}");
        assert!(err.contains("video_summarized") && err.contains("stage_failed"), "the valid ones: {err}");
        assert!(parse_events(&[]).unwrap_err().contains("at least one"));
    }

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        let body = br#"{"event":"job_finished"}"#;
        let header = signature(b"s3cret-s3cret-s3cret", 1_700_000_000, body);
        // HMAC-SHA256("s3cret-s3cret-s3cret", "1700000000.{body}"), computed with Python's hmac.
        let expected = "t=1700000000,v1=37f5460af91291c40b7d171159b79fa6255b77e8c9f1ffe264d2026a042d681b";
        assert_eq!(header, expected);
        assert!(verify(b"s3cret-s3cret-s3cret", &header, body, 1_700_000_100, 300));
        assert!(!verify(b"another-secret-entirely", &header, body, 1_700_000_100, 300), "wrong secret");
        assert!(!verify(b"s3cret-s3cret-s3cret", &header, br#"{"event":"job_failed"}"#, 1_700_000_100, 300));
        assert!(!verify(b"s3cret-s3cret-s3cret", &header, body, 1_700_000_301, 300), "too old: a replay");
        assert!(!verify(b"s3cret-s3cret-s3cret", "v1=00", body, 1_700_000_000, 300), "no timestamp");
    }

    #[test]
    fn private_and_special_addresses_are_told_apart_from_public_ones() {
        for (ip, reason) in [
            ("127.0.0.1", "loopback"),
            ("127.5.6.7", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local"),
            ("fc00::1", "unique local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            let got = non_public(ip.parse().unwrap());
            assert!(got.is_some_and(|r| r.contains(reason)), "{ip}: {got:?}, not {reason}");
        }
        for ip in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
        {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[test]
    fn a_body_carries_the_event_and_its_fields() {
        let job = JobId::new();
        let mut event = DomainEvent::new(
            job,
            Some(VideoId::parse("aaaaaaaaaaa").unwrap()),
            EventPayload::SummarizationCompleted { summarizer: "textrank".into() },
        );
        event.duration_ms = Some(42);
        let (delivery, webhook) = (Uuid::now_v7(), Uuid::now_v7());
        let body = serde_json::to_value(DeliveryBody::new(delivery, webhook, &event)).unwrap();
        assert_eq!(body["event"], "summarization_completed");
        assert_eq!(body["event_id"], event.event_id.to_string());
        assert_eq!(body["job_id"], job.to_string());
        assert_eq!(body["video_id"], "aaaaaaaaaaa");
        assert_eq!(body["delivery_id"], delivery.to_string());
        assert_eq!(
            body["data"],
            serde_json::json!({"type": "summarization_completed", "summarizer": "textrank", "duration_ms": 42})
        );
    }
}
