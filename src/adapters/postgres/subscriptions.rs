//! [`SubscriptionStore`] on PostgreSQL: one row per watched channel; a poll and the job it submits
//! are one transaction, fenced by the poller's lease (the row is locked while it is checked).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, insert_job, insert_videos, translate};
use crate::domain::subscriptions::{PollOutcome, PollRecord, Subscription, Validators};
use crate::domain::{ChannelId, JobId, JobStatus, VideoId};
use crate::ports::{PortError, PortResult, SubscriptionStore};

/// A lease that has run out, or whose holder's node registered again under a new incarnation.
macro_rules! claimable {
    () => {
        "(owner IS NULL OR lease_until < now() \
     OR (NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.node = subscriptions.owner) \
         AND EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = split_part(subscriptions.owner, '#', 1))))"
    };
}

fn subscription_from_row(row: &PgRow) -> PortResult<Subscription> {
    let id: Uuid = row.get("subscription_id");
    let channel: String = row.get("channel_id");
    let corrupt = |what: &str, raw: &str| PortError::Corrupt(format!("subscription {id}: {what} {raw:?}"));
    let outcome: Option<String> = row.get("last_outcome");
    let seen: Vec<String> = row.get("seen");
    Ok(Subscription {
        subscription_id: id,
        channel_id: ChannelId::parse(&channel).map_err(|_| corrupt("channel id", &channel))?,
        interval_secs: u64::try_from(row.get::<i64, _>("interval_secs")).unwrap_or(0),
        backfill: row.get("backfill"),
        created_at: row.get("created_at"),
        last_polled_at: row.get("last_polled_at"),
        last_outcome: outcome.as_deref().and_then(PollOutcome::parse),
        last_error: row.get("last_error"),
        failures: u32::try_from(row.get::<i32, _>("failures")).unwrap_or(0),
        last_job_id: row.get::<Option<Uuid>, _>("last_job_id").map(JobId),
        polls: u64::try_from(row.get::<i64, _>("polls")).unwrap_or(0),
        jobs: u64::try_from(row.get::<i64, _>("jobs")).unwrap_or(0),
        owner: row.get("owner"),
        poll_requested: row.get("poll_requested"),
        validators: Validators { etag: row.get("etag"), last_modified: row.get("last_modified") },
        seen: seen
            .iter()
            .map(|v| VideoId::parse(v).map_err(|_| corrupt("seen video id", v)))
            .collect::<PortResult<_>>()?,
    })
}

#[async_trait]
impl SubscriptionStore for PgStore {
    async fn create_subscription(
        &self,
        channel_id: &ChannelId,
        interval: Duration,
        backfill: bool,
    ) -> PortResult<Subscription> {
        let row = sqlx::query(
            "INSERT INTO subscriptions (subscription_id, channel_id, interval_secs, backfill) \
             VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(Uuid::now_v7())
        .bind(channel_id.as_str())
        .bind(i64::try_from(interval.as_secs()).unwrap_or(i64::MAX))
        .bind(backfill)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match translate(e) {
            PortError::AlreadyExists(_) => PortError::AlreadyExists(format!("a subscription to {channel_id}")),
            other => other,
        })?;
        subscription_from_row(&row)
    }

    async fn get_subscription(&self, id: Uuid) -> PortResult<Option<Subscription>> {
        sqlx::query("SELECT * FROM subscriptions WHERE subscription_id = $1")
            .bind(id)
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
        let done = sqlx::query("DELETE FROM subscriptions WHERE subscription_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn claimable_subscriptions(&self) -> PortResult<Vec<Uuid>> {
        sqlx::query_scalar(concat!(
            "SELECT subscription_id FROM subscriptions WHERE ",
            claimable!(),
            " ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)
    }

    async fn claim_subscription(&self, id: Uuid, owner: &str, lease: Duration) -> PortResult<bool> {
        let done = sqlx::query(concat!(
            "UPDATE subscriptions SET owner = $2, lease_until = now() + make_interval(secs => $3) \
             WHERE subscription_id = $1 AND (owner = $2 OR ",
            claimable!(),
            ")"
        ))
        .bind(id)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn renew_subscription_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<(Uuid, bool)>> {
        // The old row's ask, read in the same statement that clears it.
        let rows: Vec<(Uuid, bool)> = sqlx::query_as(
            "UPDATE subscriptions s SET lease_until = now() + make_interval(secs => $2), poll_requested = false \
             FROM (SELECT subscription_id, poll_requested FROM subscriptions WHERE owner = $1 FOR UPDATE) old \
             WHERE s.subscription_id = old.subscription_id RETURNING s.subscription_id, old.poll_requested",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(rows)
    }

    async fn release_subscription(&self, id: Uuid, owner: &str) -> PortResult<()> {
        sqlx::query(
            "UPDATE subscriptions SET owner = NULL, lease_until = NULL WHERE subscription_id = $1 AND owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn request_poll(&self, id: Uuid) -> PortResult<bool> {
        let done = sqlx::query("UPDATE subscriptions SET poll_requested = true WHERE subscription_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_poll(&self, id: Uuid, owner: &str, lease: Duration, poll: &PollRecord) -> PortResult<()> {
        let mut tx = self.pool.begin().await.map_err(translate)?;
        let held: Option<(Option<String>, bool, String)> = sqlx::query_as(
            "SELECT owner, coalesce(lease_until >= now(), false), channel_id FROM subscriptions \
             WHERE subscription_id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(translate)?;
        let channel = match held {
            None => return Err(PortError::NotFound(format!("subscription {id}"))),
            Some((Some(holder), true, channel)) if holder == owner => channel,
            Some((holder, _, _)) => {
                let holder = holder.unwrap_or_else(|| "nobody".into());
                return Err(PortError::OwnershipLost(format!("subscription {id} is polled by {holder}")));
            }
        };
        let seen: Vec<&str> = poll.seen.iter().map(VideoId::as_str).collect();
        let failed = poll.outcome == PollOutcome::Failed;
        sqlx::query(
            "UPDATE subscriptions SET etag = $2, last_modified = $3, seen = $4, last_polled_at = now(), \
             last_outcome = $5, last_error = $6, failures = CASE WHEN $7 THEN failures + 1 ELSE 0 END, \
             last_job_id = coalesce($8, last_job_id), polls = polls + 1, jobs = jobs + $9 \
             WHERE subscription_id = $1",
        )
        .bind(id)
        .bind(&poll.validators.etag)
        .bind(&poll.validators.last_modified)
        .bind(&seen)
        .bind(poll.outcome.as_str())
        .bind(&poll.error)
        .bind(failed)
        .bind(poll.job.as_ref().map(|(job, _)| job.0))
        .bind(i64::from(poll.job.is_some()))
        .execute(&mut *tx)
        .await
        .map_err(translate)?;
        if let Some((job_id, videos)) = &poll.job {
            let channel = ChannelId::parse(&channel)
                .map_err(|_| PortError::Corrupt(format!("subscription {id}: channel id {channel:?}")))?;
            insert_job(&mut tx, *job_id, &channel, false, JobStatus::Running, Some((owner, lease))).await?;
            insert_videos(&mut tx, *job_id, videos).await?;
        }
        tx.commit().await.map_err(translate)
    }
}
