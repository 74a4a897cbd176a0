//! [`SubscriptionStore`] on SQLite: one row per watched channel; a poll and the job it submits
//! are one transaction.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, after, insert_job, insert_videos, now, parse, parse_time, translate};
use crate::domain::subscriptions::{PollOutcome, PollRecord, Subscription, Validators};
use crate::domain::{ChannelId, JobStatus, VideoId};
use crate::ports::{PortError, PortResult, SubscriptionStore};

/// A lease that has run out, or whose holder's node registered again under a new incarnation.
macro_rules! claimable {
    () => {
        "(owner IS NULL OR lease_until < ? \
     OR (NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.node = subscriptions.owner) \
         AND EXISTS (SELECT 1 FROM cluster_nodes n \
                     WHERE n.name = substr(subscriptions.owner, 1, instr(subscriptions.owner, '#') - 1))))"
    };
}

fn subscription_from_row(row: &SqliteRow) -> PortResult<Subscription> {
    let id: String = row.get("subscription_id");
    let channel: String = row.get("channel_id");
    let created: String = row.get("created_at");
    let polled: Option<String> = row.get("last_polled_at");
    let outcome: Option<String> = row.get("last_outcome");
    let job: Option<String> = row.get("last_job_id");
    let seen: String = row.get("seen");
    let seen: Vec<String> =
        serde_json::from_str(&seen).map_err(|e| PortError::Corrupt(format!("subscription {id}: seen: {e}")))?;
    Ok(Subscription {
        subscription_id: parse("subscription id", &id)?,
        channel_id: parse::<ChannelId>("channel id", &channel)?,
        interval_secs: u64::try_from(row.get::<i64, _>("interval_secs")).unwrap_or(0),
        backfill: row.get::<i64, _>("backfill") != 0,
        created_at: parse_time(&created)?,
        last_polled_at: polled.as_deref().map(parse_time).transpose()?,
        last_outcome: outcome.as_deref().and_then(PollOutcome::parse),
        last_error: row.get("last_error"),
        failures: u32::try_from(row.get::<i64, _>("failures")).unwrap_or(0),
        last_job_id: job.as_deref().map(|j| parse("job id", j)).transpose()?,
        polls: u64::try_from(row.get::<i64, _>("polls")).unwrap_or(0),
        jobs: u64::try_from(row.get::<i64, _>("jobs")).unwrap_or(0),
        owner: row.get("owner"),
        poll_requested: row.get::<i64, _>("poll_requested") != 0,
        validators: Validators { etag: row.get("etag"), last_modified: row.get("last_modified") },
        seen: seen.iter().map(|v| parse::<VideoId>("seen video id", v)).collect::<PortResult<_>>()?,
    })
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        channel_id: &ChannelId,
        interval: Duration,
        backfill: bool,
    ) -> PortResult<Subscription> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO subscriptions (subscription_id, channel_id, interval_secs, backfill, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(channel_id.as_str())
        .bind(i64::try_from(interval.as_secs()).unwrap_or(i64::MAX))
        .bind(i64::from(backfill))
        .bind(now())
        .execute(&self.writer)
        .await
        .map_err(|e| match translate(e) {
            PortError::AlreadyExists(_) => PortError::AlreadyExists(format!("a subscription to {channel_id}")),
            other => other,
        })?;
        self.get_subscription(id).await?.ok_or_else(|| PortError::NotFound(format!("subscription {id}")))
    }

    async fn get_subscription(&self, id: Uuid) -> PortResult<Option<Subscription>> {
        sqlx::query("SELECT * FROM subscriptions WHERE subscription_id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .as_ref()
            .map(subscription_from_row)
            .transpose()
    }

    async fn list_subscriptions(&self) -> PortResult<Vec<Subscription>> {
        sqlx::query("SELECT * FROM subscriptions ORDER BY created_at, subscription_id")
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?
            .iter()
            .map(subscription_from_row)
            .collect()
    }

    async fn delete_subscription(&self, id: Uuid) -> PortResult<bool> {
        let done = sqlx::query("DELETE FROM subscriptions WHERE subscription_id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claimable_subscriptions(&self) -> PortResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT subscription_id FROM subscriptions WHERE ",
            claimable!(),
            " ORDER BY created_at"
        ))
        .bind(now())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        ids.iter().map(|id| parse("subscription id", id)).collect()
    }

    async fn claim_subscription(&self, id: Uuid, owner: &str, lease: Duration) -> PortResult<bool> {
        let done = sqlx::query(concat!(
            "UPDATE subscriptions SET owner = ?, lease_until = ? WHERE subscription_id = ? AND (owner = ? OR ",
            claimable!(),
            ")"
        ))
        .bind(owner)
        .bind(after(lease))
        .bind(id.to_string())
        .bind(owner)
        .bind(now())
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn renew_subscription_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<(Uuid, bool)>> {
        // RETURNING reads the row as written: the ask is read before it is cleared.
        let mut tx = self.writer.begin().await.map_err(translate)?;
        let asked: Vec<String> =
            sqlx::query_scalar("SELECT subscription_id FROM subscriptions WHERE owner = ? AND poll_requested = 1")
                .bind(owner)
                .fetch_all(&mut *tx)
                .await
                .map_err(translate)?;
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE subscriptions SET lease_until = ?, poll_requested = 0 WHERE owner = ? RETURNING subscription_id",
        )
        .bind(after(lease))
        .bind(owner)
        .fetch_all(&mut *tx)
        .await
        .map_err(translate)?;
        tx.commit().await.map_err(translate)?;
        held.iter().map(|id| Ok((parse("subscription id", id)?, asked.contains(id)))).collect()
    }

    async fn release_subscription(&self, id: Uuid, owner: &str) -> PortResult<()> {
        sqlx::query(
            "UPDATE subscriptions SET owner = NULL, lease_until = NULL WHERE subscription_id = ? AND owner = ?",
        )
        .bind(id.to_string())
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn request_poll(&self, id: Uuid) -> PortResult<bool> {
        let done = sqlx::query("UPDATE subscriptions SET poll_requested = 1 WHERE subscription_id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_poll(&self, id: Uuid, owner: &str, lease: Duration, poll: &PollRecord) -> PortResult<()> {
        let mut tx = self.writer.begin().await.map_err(translate)?;
        let held: Option<(Option<String>, Option<String>, String)> =
            sqlx::query_as("SELECT owner, lease_until, channel_id FROM subscriptions WHERE subscription_id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(translate)?;
        let channel = match held {
            None => return Err(PortError::NotFound(format!("subscription {id}"))),
            Some((Some(holder), Some(until), channel)) if holder == owner && until >= now() => channel,
            Some((holder, _, _)) => {
                let holder = holder.unwrap_or_else(|| "nobody".into());
                return Err(PortError::OwnershipLost(format!("subscription {id} is polled by {holder}")));
            }
        };
        let seen: Vec<&str> = poll.seen.iter().map(VideoId::as_str).collect();
        let seen = serde_json::to_string(&seen).map_err(|e| PortError::Other(e.to_string()))?;
        let failed = poll.outcome == PollOutcome::Failed;
        sqlx::query(
            "UPDATE subscriptions SET etag = ?, last_modified = ?, seen = ?, last_polled_at = ?, last_outcome = ?, \
             last_error = ?, failures = CASE WHEN ? THEN failures + 1 ELSE 0 END, \
             last_job_id = coalesce(?, last_job_id), polls = polls + 1, jobs = jobs + ? \
             WHERE subscription_id = ?",
        )
        .bind(&poll.validators.etag)
        .bind(&poll.validators.last_modified)
        .bind(seen)
        .bind(now())
        .bind(poll.outcome.as_str())
        .bind(&poll.error)
        .bind(failed)
        .bind(poll.job.as_ref().map(|(job, _)| job.to_string()))
        .bind(i64::from(poll.job.is_some()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(translate)?;
        if let Some((job_id, videos)) = &poll.job {
            let channel = parse::<ChannelId>("channel id", &channel)?;
            insert_job(&mut tx, *job_id, &channel, false, JobStatus::Running, Some((owner, lease))).await?;
            insert_videos(&mut tx, *job_id, videos).await?;
        }
        tx.commit().await.map_err(translate)
    }
}
