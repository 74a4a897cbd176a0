//! [`WebhookStore`] on the embedded SQLite database (migration `0010_webhooks.sql`). Writes go
//! through the one writer connection, so a claim (one `UPDATE … RETURNING`) never hands a
//! delivery to two dispatchers.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, after, now, parse, parse_time, timestamp, translate};
use crate::domain::DomainEvent;
use crate::domain::webhooks::{DeliveryStatus, Webhook, WebhookDelivery};
use crate::ports::{AttemptResult, ClaimedDelivery, PortError, PortResult, WebhookStore};

/// A webhook's events as stored: `,kind,kind,` (one kind matches with `instr(events, ',kind,')`).
fn events_text(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

fn webhook_from_row(row: &SqliteRow) -> PortResult<Webhook> {
    let id: String = row.get("webhook_id");
    let events: String = row.get("events");
    let created: String = row.get("created_at");
    Ok(Webhook {
        webhook_id: parse("webhook id", &id)?,
        url: row.get("url"),
        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        created_at: parse_time(&created)?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> PortResult<WebhookDelivery> {
    let text = |column: &str| row.get::<String, _>(column);
    let status: DeliveryStatus = parse("delivery status", &text("status"))?;
    let next: String = row.get("next_attempt_at");
    let delivered: Option<String> = row.get("delivered_at");
    Ok(WebhookDelivery {
        delivery_id: parse("delivery id", &text("delivery_id"))?,
        webhook_id: parse("webhook id", &text("webhook_id"))?,
        event_id: parse("event id", &text("event_id"))?,
        event: text("event"),
        status,
        attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
        last_status: row.get::<Option<i64>, _>("last_status").and_then(|s| u16::try_from(s).ok()),
        last_error: row.get("last_error"),
        next_attempt_at: (status == DeliveryStatus::Pending).then(|| parse_time(&next)).transpose()?,
        created_at: parse_time(&text("created_at"))?,
        delivered_at: delivered.as_deref().map(parse_time).transpose()?,
    })
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, webhook: &Webhook, secret: &SecretString) -> PortResult<()> {
        sqlx::query("INSERT INTO webhooks (webhook_id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(webhook.webhook_id.to_string())
            .bind(&webhook.url)
            .bind(events_text(&webhook.events))
            .bind(secret.expose_secret())
            .bind(timestamp(webhook.created_at))
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn get_webhook(&self, webhook_id: Uuid) -> PortResult<Option<Webhook>> {
        sqlx::query("SELECT * FROM webhooks WHERE webhook_id = ?")
            .bind(webhook_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .as_ref()
            .map(webhook_from_row)
            .transpose()
    }

    async fn list_webhooks(&self) -> PortResult<Vec<Webhook>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY created_at, webhook_id")
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?;
        rows.iter().map(webhook_from_row).collect()
    }

    async fn delete_webhook(&self, webhook_id: Uuid) -> PortResult<bool> {
        let done = sqlx::query("DELETE FROM webhooks WHERE webhook_id = ?")
            .bind(webhook_id.to_string())
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue_deliveries(&self, event: &DomainEvent) -> PortResult<u64> {
        let kind = event.payload.kind();
        // Most events interest no webhook: a read, and no write at all.
        let wanting: Vec<String> =
            sqlx::query_scalar("SELECT webhook_id FROM webhooks WHERE instr(events, ?) > 0 AND created_at <= ?")
                .bind(format!(",{kind},"))
                .bind(timestamp(event.occurred_at))
                .fetch_all(&self.pool)
                .await
                .map_err(translate)?;
        if wanting.is_empty() {
            return Ok(0);
        }
        let payload = serde_json::to_string(event).map_err(|e| PortError::Other(format!("encoding an event: {e}")))?;
        let at = now();
        let mut tx = self.writer.begin().await.map_err(translate)?;
        let mut added = 0;
        for webhook_id in wanting {
            // From the webhook's row: one deleted meanwhile gets nothing.
            let done = sqlx::query(
                "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event_id, event, payload, status, \
                 next_attempt_at, created_at) SELECT ?, webhook_id, ?, ?, ?, 'pending', ?, ? FROM webhooks \
                 WHERE webhook_id = ? ON CONFLICT (webhook_id, event_id) DO NOTHING",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(event.event_id.to_string())
            .bind(kind)
            .bind(&payload)
            .bind(&at)
            .bind(&at)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
            added += done.rows_affected();
        }
        tx.commit().await.map_err(translate)?;
        Ok(added)
    }

    async fn claim_deliveries(&self, limit: u32, claim: Duration) -> PortResult<Vec<ClaimedDelivery>> {
        let token = Uuid::now_v7();
        let claimed = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = ?1, claim_token = ?2 WHERE delivery_id IN \
             (SELECT delivery_id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?3 \
             ORDER BY next_attempt_at, delivery_id LIMIT ?4)",
        )
        .bind(after(claim))
        .bind(token.to_string())
        .bind(now())
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        if claimed.rows_affected() == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT d.*, w.url, w.secret FROM webhook_deliveries d JOIN webhooks w ON w.webhook_id = d.webhook_id \
             WHERE d.claim_token = ? ORDER BY d.next_attempt_at, d.delivery_id",
        )
        .bind(token.to_string())
        .fetch_all(&self.writer)
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
        let at = now();
        let (status, code, error, next, delivered) = match result {
            AttemptResult::Delivered { status } => {
                (DeliveryStatus::Delivered, Some(*status), None, at.clone(), Some(&at))
            }
            AttemptResult::Retry { status, error, next_attempt_at } => {
                (DeliveryStatus::Pending, *status, Some(error.as_str()), timestamp(*next_attempt_at), None)
            }
            AttemptResult::Failed { status, error } => {
                (DeliveryStatus::Failed, *status, Some(error.as_str()), at.clone(), None)
            }
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?, \
             next_attempt_at = ?, delivered_at = ?, claim_token = NULL \
             WHERE delivery_id = ? AND claim_token = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(code.map(i64::from))
        .bind(error)
        .bind(next)
        .bind(delivered)
        .bind(delivery_id.to_string())
        .bind(claim.to_string())
        .execute(&self.writer)
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
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2) \
             ORDER BY delivery_id DESC LIMIT ?3 OFFSET ?4",
        )
        .bind(webhook_id.to_string())
        .bind(status)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2)",
        )
        .bind(webhook_id.to_string())
        .bind(status)
        .fetch_one(&self.pool)
        .await
        .map_err(translate)?;
        let deliveries = rows.iter().map(delivery_from_row).collect::<PortResult<_>>()?;
        Ok((deliveries, u64::try_from(total).unwrap_or(0)))
    }
}
