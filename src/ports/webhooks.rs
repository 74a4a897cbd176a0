//! The webhooks' ports: [`WebhookStore`] (the endpoints and their deliveries, durable) and
//! [`WebhookSender`] (one HTTP POST to an endpoint).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::PortResult;
use crate::domain::DomainEvent;
use crate::domain::webhooks::{DeliveryStatus, Webhook, WebhookDelivery};

/// A delivery a dispatcher took to send: what it needs to send it, and its claim.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: WebhookDelivery,
    /// The event it reports, as the bus carried it.
    pub event: DomainEvent,
    pub url: String,
    pub secret: SecretString,
    /// The claim's token: the outcome is recorded only under it ([`WebhookStore::record_attempt`]).
    pub claim: Uuid,
}

/// How one attempt at a delivery ended, as the store records it. Each counts one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It failed; tried again at `next_attempt_at`.
    Retry { status: Option<u16>, error: String, next_attempt_at: DateTime<Utc> },
    /// It failed for good (out of attempts, or refused).
    Failed { status: Option<u16>, error: String },
}

/// Webhook endpoints and their deliveries. Deliveries are unique per (webhook, event): an event
/// seen again (redelivered by the bus, or handled by two processes) makes no second delivery.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Records a webhook with the secret its deliveries are signed with.
    async fn create_webhook(&self, webhook: &Webhook, secret: &SecretString) -> PortResult<()>;
    async fn get_webhook(&self, webhook_id: Uuid) -> PortResult<Option<Webhook>>;
    /// Every webhook, oldest first.
    async fn list_webhooks(&self) -> PortResult<Vec<Webhook>>;
    /// Removes a webhook and its deliveries (those not sent yet are not sent); false when there
    /// was none.
    async fn delete_webhook(&self, webhook_id: Uuid) -> PortResult<bool>;
    /// A pending delivery of `event`, due now, for every webhook that asks for its kind and
    /// existed when it occurred (none for a webhook that has one already); returns how many were
    /// added.
    async fn enqueue_deliveries(&self, event: &DomainEvent) -> PortResult<u64>;
    /// Takes up to `limit` pending deliveries that are due, oldest due first, for `claim`: until
    /// then (or until their outcome is recorded) nobody else takes them; if the taker never
    /// records an outcome, they are due again when the claim runs out.
    async fn claim_deliveries(&self, limit: u32, claim: Duration) -> PortResult<Vec<ClaimedDelivery>>;
    /// Records an attempt at a claimed delivery; false (nothing written) when the claim no
    /// longer holds (it ran out and another took the delivery, or its webhook was deleted).
    async fn record_attempt(&self, delivery_id: Uuid, claim: Uuid, result: &AttemptResult) -> PortResult<bool>;
    /// A page of a webhook's deliveries, newest first (only those in `status` when given), and how
    /// many match in all.
    async fn list_deliveries(
        &self,
        webhook_id: Uuid,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> PortResult<(Vec<WebhookDelivery>, u64)>;
}

/// One POST of a delivery.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    pub body: bytes::Bytes,
    /// Besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
}

/// How a POST went.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Another answer, or none (connection refused, timeout, …): worth another attempt.
    Failed { status: Option<u16>, error: String },
    /// Never sent, and sending again will not change that: an address webhooks may not reach, a
    /// URL that cannot be used.
    Refused { error: String },
}

/// Sends webhook deliveries over HTTP.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome;
}
