//! [`WebhookStore`] on PostgreSQL (migration `0012_webhooks.sql`). A claim is one
//! `UPDATE … WHERE delivery_id IN (SELECT … FOR UPDATE SKIP LOCKED)`: dispatchers of several
//! processes claiming at once each take different deliveries, and none waits on another.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, parse, translate};
use crate::domain::DomainEvent;
use crate::domain::webhooks::{DeliveryStatus, Webhook, WebhookDelivery};
use crate::ports::{AttemptResult, ClaimedDelivery, PortError, PortResult, WebhookStore};

/// The delivery columns every read selects (the payload as text: sqlx here decodes no JSON).
const DELIVERY_COLUMNS: &str = "d.delivery_id, d.webhook_id, d.event_id, d.event, d.payload::text AS payload, \
     d.status, d.attempts, d.last_status, d.last_error, d.next_attempt_at, d.created_at, d.delivered_at";

fn webhook_from_row(row: &PgRow) -> Webhook {
    Webhook {
        webhook_id: row.get("webhook_id"),
        url: row.get("url"),
        events: row.get("events"),
        created_at: row.get("created_at"),
    }
}

fn delivery_from_row(row: &PgRow) -> PortResult<WebhookDelivery> {
    let status: String = row.get("status");
    let status: DeliveryStatus = parse("delivery status", &status)?;
    Ok(WebhookDelivery {
        delivery_id: row.get("delivery_id"),
        webhook_id: row.get("webhook_id"),
        event_id: row.get("event_id"),
        event: row.get("event"),
        status,
        attempts: u32::try_from(row.get::<i32, _>("attempts")).unwrap_or(0),
        last_status: row.get::<Option<i32>, _>("last_status").and_then(|s| u16::try_from(s).ok()),
        last_error: row.get("last_error"),
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| row.get("next_attempt_at")),
        created_at: row.get("created_at"),
        delivered_at: row.get("delivered_at"),
    })
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(&self, webhook: &Webhook, secret: &SecretString) -> PortResult<()> {
        sqlx::query("INSERT INTO webhooks (webhook_id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(webhook.webhook_id)
            .bind(&webhook.url)
            .bind(&webhook.events)
            .bind(secret.expose_secret())
            .bind(webhook.created_at)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn get_webhook(&self, webhook_id: Uuid) -> PortResult<Option<Webhook>> {
        let row = sqlx::query("SELECT webhook_id, url, events, created_at FROM webhooks WHERE webhook_id = $1")
            .bind(webhook_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?;
        Ok(row.as_ref().map(webhook_from_row))
    }

    async fn list_webhooks(&self) -> PortResult<Vec<Webhook>> {
        let rows =
            sqlx::query("SELECT webhook_id, url, events, created_at FROM webhooks ORDER BY created_at, webhook_id")
                .fetch_all(&self.pool)
                .await
                .map_err(translate)?;
        Ok(rows.iter().map(webhook_from_row).collect())
    }

    async fn delete_webhook(&self, webhook_id: Uuid) -> PortResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE webhook_id = $1")
            .bind(webhook_id)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue_deliveries(&self, event: &DomainEvent) -> PortResult<u64> {
        let kind = event.payload.kind();
        // Most events interest no webhook: a read, and no write at all.
        let wanting: Vec<Uuid> =
            sqlx::query_scalar("SELECT webhook_id FROM webhooks WHERE $1 = ANY (events) AND created_at <= $2")
                .bind(kind)
                .bind(event.occurred_at)
                .fetch_all(&self.pool)
                .await
                .map_err(translate)?;
        if wanting.is_empty() {
            return Ok(0);
        }
        let payload = serde_json::to_string(event).map_err(|e| PortError::Other(format!("encoding an event: {e}")))?;
        let ids: Vec<Uuid> = wanting.iter().map(|_| Uuid::now_v7()).collect();
        // From the webhooks' rows: one deleted meanwhile gets nothing.
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event_id, event, payload, status) \
             SELECT u.delivery_id, w.webhook_id, $3, $4, $5::jsonb, 'pending' \
             FROM unnest($1::uuid[], $2::uuid[]) AS u(delivery_id, webhook_id) \
             JOIN webhooks w ON w.webhook_id = u.webhook_id \
             ON CONFLICT (webhook_id, event_id) DO NOTHING",
        )
        .bind(ids)
        .bind(wanting)
        .bind(event.event_id)
        .bind(kind)
        .bind(payload)
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn claim_deliveries(&self, limit: u32, claim: Duration) -> PortResult<Vec<ClaimedDelivery>> {
        let token = Uuid::now_v7();
        let query = format!(
            "WITH d AS (UPDATE webhook_deliveries SET next_attempt_at = now() + $1 * interval '1 millisecond', \
             claim_token = $2 WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at, delivery_id \
             LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING *) \
             SELECT {DELIVERY_COLUMNS}, w.url, w.secret FROM d JOIN webhooks w ON w.webhook_id = d.webhook_id \
             ORDER BY d.next_attempt_at, d.delivery_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(i64::try_from(claim.as_millis()).unwrap_or(i64::MAX))
            .bind(token)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?;
        rows.iter()
            .map(|row| {
                let payload: String = row.get("payload");
                Ok(ClaimedDelivery {
                    delivery: delivery_from_row(row)?,
                    event: serde_json::from_str(&payload)
                        .map_err(|e| PortError::Corrupt(format!("webhook delivery payload: {e}")))?,
                    url: row.get("url"),
                    secret: SecretString::from(row.get::<String, _>("secret")),
                    claim: token,
                })
            })
            .collect()
    }

    async fn record_attempt(&self, delivery_id: Uuid, claim: Uuid, result: &AttemptResult) -> PortResult<bool> {
        let (status, code, error, next): (_, _, _, Option<DateTime<Utc>>) = match result {
            AttemptResult::Delivered { status } => (DeliveryStatus::Delivered, Some(*status), None, None),
            AttemptResult::Retry { status, error, next_attempt_at } => {
                (DeliveryStatus::Pending, *status, Some(error.as_str()), Some(*next_attempt_at))
            }
            AttemptResult::Failed { status, error } => (DeliveryStatus::Failed, *status, Some(error.as_str()), None),
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_error = $3, \
             next_attempt_at = coalesce($4, now()), \
             delivered_at = CASE WHEN $1 = 'delivered' THEN now() END, claim_token = NULL \
             WHERE delivery_id = $5 AND claim_token = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(code.map(i32::from))
        .bind(error)
        .bind(next)
        .bind(delivery_id)
        .bind(claim)
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_deliveries(
        &self,
        webhook_id: Uuid,
        status: Option<DeliveryStatus>,
        limit: u32,
        offset: u32,
    ) -> PortResult<(Vec<WebhookDelivery>, u64)> {
        let status = status.map(DeliveryStatus::as_str);
        let query = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.webhook_id = $1 \
             AND ($2::text IS NULL OR d.status = $2) ORDER BY d.delivery_id DESC LIMIT $3 OFFSET $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(webhook_id)
            .bind(status)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)",
        )
        .bind(webhook_id)
        .bind(status)
        .fetch_one(&self.pool)
        .await
        .map_err(translate)?;
        let deliveries = rows.iter().map(delivery_from_row).collect::<PortResult<_>>()?;
        Ok((deliveries, u64::try_from(total).unwrap_or(0)))
    }
}
