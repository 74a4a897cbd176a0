//! Webhooks as the API offers them: registered after their URL passed the address guard, listed,
//! removed, and their deliveries paged. Sending is the actor runtime's
//! ([`crate::actors::webhooks`]).

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::adapters::webhooks::{UrlRefused, check_url};
use crate::domain::webhooks::{DeliveryStatus, Webhook, WebhookDelivery, parse_events};
use crate::ports::{PortError, WebhookStore};

/// The shortest and longest secrets taken, in characters.
pub const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

/// A webhook to register.
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub secret: SecretString,
}

/// Why a webhook was not registered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Events(String),
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Url(#[from] UrlRefused),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The webhooks' store, and the guard their URLs pass.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    allow_private: bool,
}

impl Webhooks {
    pub fn new(store: Arc<dyn WebhookStore>, allow_private: bool) -> Self {
        Self { store, allow_private }
    }

    pub fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.store
    }

    /// Registers a webhook: its events known, its secret long enough, its URL usable and (unless
    /// configured otherwise) resolving to public addresses only. Deliveries start with the events
    /// that occur from now on.
    pub async fn create(&self, new: NewWebhook) -> Result<Webhook, WebhookError> {
        let events = parse_events(&new.events).map_err(WebhookError::Events)?;
        let chars = secrecy::ExposeSecret::expose_secret(&new.secret).chars().count();
        if !SECRET_CHARS.contains(&chars) {
            return Err(WebhookError::Secret(format!(
                "secret must be {} to {} characters long, not {chars}",
                SECRET_CHARS.start(),
                SECRET_CHARS.end()
            )));
        }
        check_url(&new.url, self.allow_private).await?;
        let webhook =
            Webhook { webhook_id: Uuid::now_v7(), url: new.url, events, created_at: Utc::now().trunc_subsecs(6) };
        self.store.create_webhook(&webhook, &new.secret).await?;
        tracing::info!(webhook_id = %webhook.webhook_id, events = ?webhook.events, "webhook registered");
        Ok(webhook)
    }

    pub async fn list(&self) -> Result<Vec<Webhook>, PortError> {
        self.store.list_webhooks().await
    }

    pub async fn get(&self, webhook_id: Uuid) -> Result<Option<Webhook>, PortError> {
        self.store.get_webhook(webhook_id).await
    }

    /// False when there was none.
    pub async fn delete(&self, webhook_id: Uuid) -> Result<bool, PortError> {
        let deleted = self.store.delete_webhook(webhook_id).await?;
        if deleted {
            tracing::info!(%webhook_id, "webhook deleted");
        }
        Ok(deleted)
    }

    /// A page of a webhook's deliveries, newest first; None when there is no such webhook.
    pub async fn deliveries(
        &self,
        webhook_id: Uuid,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> Result<Option<(Vec<WebhookDelivery>, u64)>, PortError> {
        if self.store.get_webhook(webhook_id).await?.is_none() {
            return Ok(None);
        }
        self.store.list_deliveries(webhook_id, status, limit, offset).await.map(Some)
    }
}
