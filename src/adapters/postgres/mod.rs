//! The production state store: PostgreSQL (`database.url`, migrations in `migrations/postgres/`),
//! and the transactional [`outbox`] that carries domain events to the brokers. Driver errors are
//! translated here, once: unique violation (23505) → `AlreadyExists`, connection trouble →
//! `Unavailable`.

pub mod outbox;
mod subscriptions;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod webhooks;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, postgres::PgConnectOptions};
use uuid::Uuid;

use crate::adapters::group_commit::{Apply, AttemptWrite, GroupCommit, VideoWrite, apply_attempts, apply_video_writes};
use crate::adapters::settings::{DatabaseSettings, redact_url};
use crate::domain::search::{FoundPassage, IndexedVideo, Passage, PassageKind, SearchQuery};
use crate::domain::{
    AttemptOutcome, AttemptProgress, AttemptRecord, ChannelId, DomainEvent, JobId, JobLease, JobRecord, JobStatus,
    NodeRecord, Stage, StageCommand, VideoCounts, VideoId, VideoMeta, VideoRecord, VideoStatus, VideoUpdate, workflow,
};
use crate::ports::{
    Fence, Finish, JobStore, PortError, PortResult, already_final, finish_status_only, found_passage, parse_stages,
    stages_text, write_refused,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Jobs and videos in PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The outbox's sinks, when events go through the outbox: job endings are then written with
    /// their event in one transaction.
    outbox_sinks: Option<Vec<String>>,
    /// Video-row writes, grouped (see [`group_commit`]).
    videos: Arc<GroupCommit<VideoWrite>>,
    /// Stage-attempt rows taken and ended, grouped the same way.
    attempts: Arc<GroupCommit<AttemptWrite>>,
}

/// Writes a batch of video rows with one `UPDATE … FROM unnest(…)` per round (a row at most once
/// in each), each row only where its fence holds; the rows it returns are the writes done.
struct VideoWrites {
    pool: PgPool,
}

#[async_trait]
impl Apply<VideoWrite> for VideoWrites {
    async fn apply(&self, writes: &[VideoWrite]) -> Vec<PortResult<()>> {
        apply_video_writes(writes, |batch| self.write(batch), |w| self.refused(w)).await
    }
}

impl VideoWrites {
    /// Writes a round; returns the (job, video) rows it changed.
    async fn write(&self, batch: Vec<&VideoWrite>) -> PortResult<HashSet<(JobId, String)>> {
        let done: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE job_videos AS v SET status = u.status, attempts = u.attempts, error = u.error, \
             updated_at = now(), changes = v.changes + 1 \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::int8[]) \
             AS u(job_id, video_id, status, attempts, error, owner, epoch) \
             WHERE v.job_id = u.job_id AND v.video_id = u.video_id AND (u.owner IS NULL OR EXISTS \
             (SELECT 1 FROM jobs WHERE jobs.job_id = v.job_id AND jobs.owner = u.owner AND jobs.epoch = u.epoch)) \
             RETURNING v.job_id, v.video_id",
        )
        .bind(batch.iter().map(|w| w.job_id.0).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| w.video_id.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| w.update.status.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| i32::try_from(w.update.attempts).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| w.update.error.as_deref()).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| w.fence.as_ref().map(|f| f.owner.as_str())).collect::<Vec<_>>())
        .bind(batch.iter().map(|w| w.fence.as_ref().map(|f| f.epoch)).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.into_iter().map(|(job, video)| (JobId(job), video)).collect())
    }

    /// Why a write changed nothing: the video is not there, or the job moved on without the writer.
    async fn refused(&self, write: &VideoWrite) -> PortError {
        let holder = match &write.fence {
            Some(_) => match self.pool.acquire().await {
                Ok(mut conn) => match job_holder(&mut conn, write.job_id).await {
                    Ok(holder) => holder,
                    Err(e) => return e,
                },
                Err(e) => return translate(e),
            },
            None => None,
        };
        write.refused(holder)
    }
}

/// Writes a batch of attempt rows: per round one `INSERT … SELECT FROM unnest(…)` of the attempts
/// taken (the checked ones only where still wanted) and one `UPDATE … FROM unnest(…)` of those
/// ended (see [`apply_attempts`]).
struct AttemptWrites {
    pool: PgPool,
}

#[async_trait]
impl Apply<AttemptWrite> for AttemptWrites {
    async fn apply(&self, writes: &[AttemptWrite]) -> Vec<PortResult<()>> {
        apply_attempts(writes, |batch| async move { self.write(&batch).await.map_err(translate) }).await
    }
}

impl AttemptWrites {
    /// Writes the batch; returns the commands whose start it recorded.
    async fn write(&self, batch: &[&AttemptWrite]) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
        let (mut started, mut finished) = (Vec::new(), Vec::new());
        for write in batch {
            match write {
                AttemptWrite::Started { .. } => started.push(*write),
                AttemptWrite::Finished { .. } => finished.push(*write),
            }
        }
        let mut recorded = std::collections::HashSet::new();
        if !started.is_empty() {
            let mut columns =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for write in started {
                if let AttemptWrite::Started { command, owner, checked } = write {
                    columns.0.push(command.command_id);
                    columns.1.push(command.job_id.0);
                    columns.2.push(command.video_id.as_ref().map(VideoId::as_str));
                    columns.3.push(command.stage.as_str());
                    columns.4.push(i32::try_from(command.attempt).unwrap_or(i32::MAX));
                    columns.5.push(owner.as_str());
                    columns.6.push(*checked);
                    columns.7.push(workflow::in_flight_state(command.stage).map(VideoStatus::as_str));
                }
            }
            // Wanted: the job has not ended and the video waits on this stage with no later
            // attempt sent; for discovery, the job is discovering.
            let rows: Vec<(Uuid,)> = sqlx::query_as(
                "INSERT INTO stage_attempts (command_id, job_id, video_id, stage, attempt, claimed_by, started_at, heartbeat_at) \
                 SELECT u.command_id, u.job_id, u.video_id, u.stage, u.attempt, u.owner, now(), now() \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::bool[], $8::text[]) \
                 AS u(command_id, job_id, video_id, stage, attempt, owner, checked, in_flight) \
                 WHERE NOT u.checked OR EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = u.job_id AND CASE \
                 WHEN u.video_id IS NULL THEN j.status = 'discovering' \
                 ELSE j.status IN ('pending', 'discovering', 'running') AND EXISTS (SELECT 1 FROM job_videos v \
                 WHERE v.job_id = u.job_id AND v.video_id = u.video_id AND v.status = u.in_flight AND v.attempts <= u.attempt) END) \
                 ON CONFLICT (command_id) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, \
                 started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, finished_at = NULL, \
                 outcome = NULL, error = NULL RETURNING command_id",
            )
            .bind(columns.0)
            .bind(columns.1)
            .bind(columns.2)
            .bind(columns.3)
            .bind(columns.4)
            .bind(columns.5)
            .bind(columns.6)
            .bind(columns.7)
            .fetch_all(&self.pool)
            .await?;
            recorded.extend(rows.into_iter().map(|(id,)| id));
        }
        if !finished.is_empty() {
            let mut columns = (Vec::new(), Vec::new(), Vec::new());
            for write in finished {
                if let AttemptWrite::Finished { command_id, outcome, error } = write {
                    columns.0.push(*command_id);
                    columns.1.push(outcome.as_str());
                    columns.2.push(error.as_deref());
                }
            }
            sqlx::query(
                "UPDATE stage_attempts AS a SET finished_at = now(), outcome = u.outcome, error = u.error \
                 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(command_id, outcome, error) \
                 WHERE a.command_id = u.command_id",
            )
            .bind(columns.0)
            .bind(columns.1)
            .bind(columns.2)
            .execute(&self.pool)
            .await?;
        }
        Ok(recorded)
    }
}

impl PgStore {
    /// Connects (failing fast, with the URL minus its password, when the database is unreachable)
    /// and runs the migrations.
    pub async fn connect(settings: &DatabaseSettings) -> PortResult<Self> {
        let url = settings.url.expose_secret();
        let unavailable =
            |e: &dyn std::fmt::Display| PortError::Unavailable(format!("PostgreSQL at {}: {e}", redact_url(url)));
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| unavailable(&e))?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| unavailable(&e))?;
        MIGRATOR.run(&pool).await.map_err(|e| unavailable(&format!("migrations failed: {e}")))?;
        let videos = Arc::new(GroupCommit::start(VideoWrites { pool: pool.clone() }, settings.write_batch));
        let attempts = Arc::new(GroupCommit::start(AttemptWrites { pool: pool.clone() }, settings.write_batch));
        Ok(Self { pool, outbox_sinks: None, videos, attempts })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes job endings and their `job_finished` event in one transaction, the event pending for
    /// `sinks` in the outbox.
    pub fn with_outbox(mut self, sinks: &[&str]) -> Self {
        self.outbox_sinks = Some(sinks.iter().map(|s| (*s).to_owned()).collect());
        self
    }
}

/// Translates a driver error into the port's error.
pub fn translate(e: sqlx::Error) -> PortError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PortError::AlreadyExists(db.constraint().unwrap_or("row").to_owned())
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            PortError::NotFound(db.constraint().unwrap_or("referenced row").to_owned())
        }
        sqlx::Error::RowNotFound => PortError::NotFound("row".into()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            PortError::Unavailable(e.to_string())
        }
        // Admin shutdown, crash recovery, connection failures (class 08 and 57P0x).
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) => {
            PortError::Unavailable(e.to_string())
        }
        _ => PortError::Other(e.to_string()),
    }
}

fn parse<T: std::str::FromStr>(what: &str, raw: &str) -> PortResult<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse::<T>().map_err(|e| PortError::Corrupt(format!("{what} {raw:?}: {e}")))
}

fn job_from_row(row: &PgRow) -> PortResult<JobRecord> {
    let channel_id: String = row.get("channel_id");
    let status: String = row.get("status");
    Ok(JobRecord {
        job_id: JobId(row.get::<Uuid, _>("job_id")),
        channel_id: parse::<ChannelId>("channel id", &channel_id)?,
        force: row.get("force"),
        status: parse("job status", &status)?,
        error: row.get("error"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

/// Sets the status of a job that has not ended; a final status is never changed.
async fn set_unfinished_status(
    conn: &mut sqlx::PgConnection,
    job_id: JobId,
    status: JobStatus,
    error: Option<&str>,
    fence: Option<&Fence>,
) -> PortResult<()> {
    let done = sqlx::query(
        "UPDATE jobs SET status = $1, error = $2, updated_at = now() \
         WHERE job_id = $3 AND status IN ('pending', 'discovering', 'running') \
         AND ($4::text IS NULL OR (owner = $4 AND epoch = $5))",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(job_id.0)
    .bind(fence.map(|f| f.owner.as_str()))
    .bind(fence.map(|f| f.epoch))
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    Err(write_refused(job_id, fence, job_holder(conn, job_id).await?))
}

/// A job's status, owner and epoch, to tell why a write changed nothing.
async fn job_holder(conn: &mut sqlx::PgConnection, job_id: JobId) -> PortResult<Option<(String, Option<String>, i64)>> {
    sqlx::query_as("SELECT status, owner, epoch FROM jobs WHERE job_id = $1")
        .bind(job_id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(translate)
}

fn video_from_row(row: &PgRow) -> PortResult<VideoRecord> {
    let video_id: String = row.get("video_id");
    let status: String = row.get("status");
    Ok(VideoRecord {
        job_id: JobId(row.get::<Uuid, _>("job_id")),
        video_id: parse::<VideoId>("video id", &video_id)?,
        title: row.get("title"),
        published_at: row.get::<Option<DateTime<Utc>>, _>("published_at"),
        duration_secs: row.get::<Option<i32>, _>("duration_secs").and_then(|d| u32::try_from(d).ok()),
        position: row.get("position"),
        status: parse("video status", &status)?,
        attempts: u32::try_from(row.get::<i32, _>("attempts")).unwrap_or(0),
        error: row.get("error"),
        updated_at: row.get("updated_at"),
    })
}

/// Inserts a job row; with `holder`, leased to that process for that long.
async fn insert_job(
    conn: &mut PgConnection,
    job_id: JobId,
    channel_id: &ChannelId,
    force: bool,
    status: JobStatus,
    holder: Option<(&str, Duration)>,
) -> PortResult<JobRecord> {
    let row = sqlx::query(
        "INSERT INTO jobs (job_id, channel_id, force, status, error, created_at, updated_at, owner, lease_until) \
         VALUES ($1, $2, $3, $4, NULL, now(), now(), $5, now() + make_interval(secs => $6)) RETURNING *",
    )
    .bind(job_id.0)
    .bind(channel_id.as_str())
    .bind(force)
    .bind(status.as_str())
    .bind(holder.map(|(owner, _)| owner))
    .bind(holder.map(|(_, lease)| lease.as_secs_f64()))
    .fetch_one(&mut *conn)
    .await
    .map_err(translate)?;
    job_from_row(&row)
}

/// Inserts a job's discovered videos, in their listing's order; known ones are left as they are.
async fn insert_videos(conn: &mut PgConnection, job_id: JobId, videos: &[VideoMeta]) -> PortResult<()> {
    // One statement for the whole listing (a channel of thousands is one round trip, not
    // thousands); `WITH ORDINALITY` numbers the rows in the listing's order.
    sqlx::query(
        "INSERT INTO job_videos (job_id, video_id, title, published_at, duration_secs, position, status, attempts, error, updated_at) \
         SELECT $1, u.video_id, u.title, u.published_at, u.duration_secs, u.n - 1, 'discovered', 0, NULL, now() \
         FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::int4[]) WITH ORDINALITY \
         AS u(video_id, title, published_at, duration_secs, n) ORDER BY u.n ON CONFLICT (job_id, video_id) DO NOTHING",
    )
    .bind(job_id.0)
    .bind(videos.iter().map(|v| v.video_id.as_str()).collect::<Vec<_>>())
    .bind(videos.iter().map(|v| v.title.as_str()).collect::<Vec<_>>())
    .bind(videos.iter().map(|v| v.published_at).collect::<Vec<_>>())
    .bind(videos.iter().map(|v| v.duration_secs.and_then(|d| i32::try_from(d).ok())).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    Ok(())
}

#[async_trait]
impl JobStore for PgStore {
    async fn create_job(
        &self,
        job_id: JobId,
        channel_id: &ChannelId,
        force: bool,
        holder: Option<(&str, Duration)>,
    ) -> PortResult<JobRecord> {
        let mut conn = self.pool.acquire().await.map_err(translate)?;
        insert_job(&mut conn, job_id, channel_id, force, JobStatus::Pending, holder).await
    }

    async fn get_job(&self, job_id: JobId) -> PortResult<Option<JobRecord>> {
        sqlx::query("SELECT * FROM jobs WHERE job_id = $1")
            .bind(job_id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    async fn list_jobs(
        &self,
        channel: Option<&ChannelId>,
        limit: u32,
        offset: u32,
    ) -> PortResult<(Vec<JobRecord>, u64)> {
        let channel = channel.map(|c| c.as_str());
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE $1::text IS NULL OR channel_id = $1 ORDER BY created_at DESC, job_id DESC LIMIT $2 OFFSET $3",
        )
        .bind(channel)
        .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE $1::text IS NULL OR channel_id = $1")
            .bind(channel)
            .fetch_one(&self.pool)
            .await
            .map_err(translate)?;
        let jobs = rows.iter().map(job_from_row).collect::<PortResult<_>>()?;
        Ok((jobs, u64::try_from(total).unwrap_or(0)))
    }

    async fn set_job_status_fenced(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        fence: Option<&Fence>,
    ) -> PortResult<()> {
        let mut conn = self.pool.acquire().await.map_err(translate)?;
        set_unfinished_status(&mut conn, job_id, status, error, fence).await
    }

    async fn finish_job_fenced(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        event: &DomainEvent,
        fence: Option<&Fence>,
    ) -> PortResult<Finish> {
        let Some(sinks) = &self.outbox_sinks else {
            return finish_status_only(self, job_id, status, error, fence).await;
        };
        let mut tx = self.pool.begin().await.map_err(translate)?;
        match set_unfinished_status(&mut tx, job_id, status, error, fence).await {
            Ok(()) => {}
            Err(PortError::Stale(_)) => return already_final(self, job_id).await,
            Err(e) => return Err(e),
        }
        outbox::enqueue(&mut *tx, event, sinks).await?;
        tx.commit().await.map_err(translate)?;
        Ok(Finish::WithEvent)
    }

    async fn claimable_jobs(&self) -> PortResult<Vec<JobId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(concat!(
            "SELECT job_id FROM jobs WHERE status IN ('pending', 'discovering', 'running') \
                 AND (owner IS NULL OR lease_until < now() OR ",
            replaced_owner!(),
            ") ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn claim_job(&self, job_id: JobId, owner: &str, lease: Duration) -> PortResult<Option<Fence>> {
        // The database's clock decides, so that the processes' clocks need not agree. A change of
        // owner is a new epoch (SET reads the row as it was).
        let epoch: Option<i64> = sqlx::query_scalar(concat!(
            "UPDATE jobs SET epoch = CASE WHEN owner IS NOT DISTINCT FROM $2 THEN epoch ELSE epoch + 1 END, \
             owner = $2, lease_until = now() + make_interval(secs => $3) \
             WHERE job_id = $1 AND status IN ('pending', 'discovering', 'running') \
             AND (owner IS NULL OR owner = $2 OR lease_until < now() OR ",
            replaced_owner!(),
            ") RETURNING epoch",
        ))
        .bind(job_id.0)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(translate)?;
        Ok(epoch.map(|epoch| Fence { owner: owner.to_owned(), epoch }))
    }

    async fn renew_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<JobId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $2) \
             WHERE owner = $1 AND status IN ('pending', 'discovering', 'running') RETURNING job_id",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn register_node(&self, node: &NodeRecord) -> PortResult<()> {
        sqlx::query(
            "INSERT INTO cluster_nodes (name, node, http_addr, cluster_addr, version, stages, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now(), now()) ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, \
             http_addr = EXCLUDED.http_addr, cluster_addr = EXCLUDED.cluster_addr, version = EXCLUDED.version, \
             stages = EXCLUDED.stages, started_at = now(), heartbeat_at = now()",
        )
        .bind(&node.name)
        .bind(&node.node)
        .bind(&node.http_addr)
        .bind(&node.cluster_addr)
        .bind(&node.version)
        .bind(stages_text(&node.stages))
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn node_heartbeat(&self, node: &str) -> PortResult<bool> {
        let done = sqlx::query("UPDATE cluster_nodes SET heartbeat_at = now() WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_nodes(&self) -> PortResult<(Vec<NodeRecord>, DateTime<Utc>)> {
        let rows = sqlx::query(
            "SELECT name, node, http_addr, cluster_addr, version, stages, started_at, heartbeat_at, now() AS now \
             FROM cluster_nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        let now = match rows.first() {
            Some(row) => row.get("now"),
            None => sqlx::query_scalar("SELECT now()").fetch_one(&self.pool).await.map_err(translate)?,
        };
        let nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeRecord {
                    name: row.get("name"),
                    node: row.get("node"),
                    http_addr: row.get("http_addr"),
                    cluster_addr: row.get("cluster_addr"),
                    version: row.get("version"),
                    stages: parse_stages(row.get("stages"))?,
                    started_at: row.get("started_at"),
                    heartbeat_at: row.get("heartbeat_at"),
                })
            })
            .collect::<PortResult<_>>()?;
        Ok((nodes, now))
    }

    async fn forget_nodes(&self, node: Option<&str>, silent: Duration) -> PortResult<u64> {
        let done = match node {
            Some(node) => sqlx::query("DELETE FROM cluster_nodes WHERE node = $1").bind(node),
            None => sqlx::query("DELETE FROM cluster_nodes WHERE heartbeat_at < now() - make_interval(secs => $1)")
                .bind(silent.as_secs_f64()),
        }
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn job_leases(&self, job: Option<JobId>) -> PortResult<Vec<JobLease>> {
        let rows = sqlx::query(
            "SELECT job_id, owner, GREATEST(EXTRACT(EPOCH FROM lease_until - now()), 0)::float8 AS left_secs \
             FROM jobs WHERE status IN ('pending', 'discovering', 'running') \
             AND ($1::uuid IS NULL OR job_id = $1) ORDER BY created_at",
        )
        .bind(job.map(|j| j.0))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(rows
            .iter()
            .map(|row| JobLease {
                job_id: JobId(row.get("job_id")),
                owner: row.get("owner"),
                left: row.get::<Option<f64>, _>("left_secs").map(Duration::from_secs_f64),
            })
            .collect())
    }

    async fn release_job(&self, job_id: JobId, owner: &str) -> PortResult<()> {
        sqlx::query("UPDATE jobs SET owner = NULL, lease_until = NULL WHERE job_id = $1 AND owner = $2")
            .bind(job_id.0)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn attempt_started(&self, command: &StageCommand, owner: &str) -> PortResult<()> {
        AttemptWrite::start(&self.attempts, command, owner, false).await.map(drop)
    }

    async fn take_command(&self, command: &StageCommand, owner: &str) -> PortResult<bool> {
        AttemptWrite::start(&self.attempts, command, owner, true).await
    }

    async fn attempt_heartbeat(&self, command_id: Uuid) -> PortResult<()> {
        sqlx::query("UPDATE stage_attempts SET heartbeat_at = now() WHERE command_id = $1 AND finished_at IS NULL")
            .bind(command_id)
            .execute(&self.pool)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn attempt_progress(
        &self,
        job_id: JobId,
        video_id: Option<&VideoId>,
        stage: Stage,
        attempt: u32,
        silence: Duration,
    ) -> PortResult<AttemptProgress> {
        // The database's clock throughout: every timestamp of the table is its now().
        let row = sqlx::query(
            "SELECT now() AS db_now, a.started_at, a.heartbeat_at, a.finished_at, a.outcome \
             FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT * FROM stage_attempts \
             WHERE job_id = $1 AND video_id IS NOT DISTINCT FROM $2 AND stage = $3 AND attempt = $4 \
             ORDER BY started_at DESC LIMIT 1) AS a ON true",
        )
        .bind(job_id.0)
        .bind(video_id.map(VideoId::as_str))
        .bind(stage.as_str())
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .fetch_one(&self.pool)
        .await
        .map_err(translate)?;
        let now: DateTime<Utc> = row.get("db_now");
        let started: Option<DateTime<Utc>> = row.get("started_at");
        let outcome: Option<String> = row.get("outcome");
        let finished = match (row.get::<Option<DateTime<Utc>>, _>("finished_at"), outcome) {
            (Some(at), Some(outcome)) => Some((at, parse("outcome", &outcome)?)),
            _ => None,
        };
        let taken = started.map(|at| (at, row.get::<Option<DateTime<Utc>>, _>("heartbeat_at")));
        Ok(AttemptProgress::of(now, taken, finished, silence))
    }

    async fn attempt_finished(&self, command_id: Uuid, outcome: AttemptOutcome, error: Option<&str>) -> PortResult<()> {
        let error = error.map(str::to_owned);
        self.attempts.submit(AttemptWrite::Finished { command_id, outcome, error }).await
    }

    async fn interrupt_attempts(
        &self,
        owner: Option<&str>,
        silent_since: DateTime<Utc>,
        reason: &str,
    ) -> PortResult<u64> {
        let done = sqlx::query(
            "UPDATE stage_attempts SET finished_at = now(), outcome = 'interrupted', error = $3 \
             WHERE outcome IS NULL AND (claimed_by = $1 OR COALESCE(heartbeat_at, started_at) < $2)",
        )
        .bind(owner)
        .bind(silent_since)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn attempts_page(&self, job_id: JobId, limit: u32, offset: u32) -> PortResult<(Vec<AttemptRecord>, u64)> {
        let rows = sqlx::query(
            "SELECT *, COUNT(*) OVER () AS total FROM stage_attempts WHERE job_id = $1 \
             ORDER BY started_at, command_id LIMIT $2 OFFSET $3",
        )
        .bind(job_id.0)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        let total = match rows.first() {
            Some(row) => row.get::<i64, _>("total"),
            // Past the end (or none at all): count them apart.
            None => sqlx::query_scalar("SELECT COUNT(*) FROM stage_attempts WHERE job_id = $1")
                .bind(job_id.0)
                .fetch_one(&self.pool)
                .await
                .map_err(translate)?,
        };
        let attempts = rows
            .iter()
            .map(|row| {
                let video_id: Option<String> = row.get("video_id");
                let stage: String = row.get("stage");
                let outcome: Option<String> = row.get("outcome");
                Ok(AttemptRecord {
                    command_id: row.get("command_id"),
                    video_id: video_id.as_deref().map(|v| parse("video id", v)).transpose()?,
                    stage: parse("stage", &stage)?,
                    attempt: u32::try_from(row.get::<i32, _>("attempt")).unwrap_or(0),
                    claimed_by: row.get("claimed_by"),
                    started_at: row.get("started_at"),
                    heartbeat_at: row.get("heartbeat_at"),
                    finished_at: row.get("finished_at"),
                    outcome: outcome.as_deref().map(|o| parse("outcome", o)).transpose()?,
                    error: row.get("error"),
                })
            })
            .collect::<PortResult<_>>()?;
        Ok((attempts, u64::try_from(total).unwrap_or(0)))
    }

    async fn add_videos(&self, job_id: JobId, videos: &[VideoMeta]) -> PortResult<()> {
        let mut tx = self.pool.begin().await.map_err(translate)?;
        insert_videos(&mut tx, job_id, videos).await?;
        tx.commit().await.map_err(translate)
    }

    async fn index_passages(&self, video: &IndexedVideo, kind: PassageKind, passages: &[Passage]) -> PortResult<()> {
        let mut tx = self.pool.begin().await.map_err(translate)?;
        sqlx::query("DELETE FROM search_passages WHERE video_id = $1 AND kind = $2")
            .bind(video.video_id.as_str())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        if !passages.is_empty() {
            let starts: Vec<f64> = passages.iter().map(|p| p.start).collect();
            let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
            sqlx::query(
                "INSERT INTO search_passages (video_id, channel_id, title, kind, start, text) \
                 SELECT $1, $2, $3, $4, start, text FROM UNNEST($5::float8[], $6::text[]) AS p(start, text)",
            )
            .bind(video.video_id.as_str())
            .bind(video.channel_id.as_str())
            .bind(&video.title)
            .bind(kind.as_str())
            .bind(&starts)
            .bind(&texts)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        }
        tx.commit().await.map_err(translate)
    }

    async fn search(&self, query: &SearchQuery) -> PortResult<Vec<FoundPassage>> {
        // websearch_to_tsquery takes what people type (words, "a phrase", -excluded) and never
        // fails on it.
        let rows = sqlx::query(
            "SELECT p.video_id, p.channel_id, p.title, p.kind, p.start, \
                    ts_headline('english', p.text, q, \
                        format('StartSel=%s, StopSel=%s, MaxWords=24, MinWords=8', chr(2), chr(3))) AS snippet, \
                    ts_rank_cd(p.tsv, q)::float8 AS rank \
             FROM search_passages p, websearch_to_tsquery('english', $1) q \
             WHERE p.tsv @@ q AND ($2::text IS NULL OR p.channel_id = $2) \
             ORDER BY rank DESC, p.video_id, p.start LIMIT $3",
        )
        .bind(if query.any { query.any_of() } else { query.text.clone() })
        .bind(query.channel.as_ref().map(|c| c.as_str()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        rows.iter()
            .map(|row| {
                let [video_id, channel_id, title, kind] =
                    ["video_id", "channel_id", "title", "kind"].map(|c| row.get::<String, _>(c));
                found_passage((
                    video_id,
                    channel_id,
                    title,
                    kind,
                    row.get("start"),
                    row.get("snippet"),
                    row.get("rank"),
                ))
            })
            .collect()
    }

    async fn videos_page(
        &self,
        job_id: JobId,
        status: Option<VideoStatus>,
        limit: u32,
        offset: u32,
    ) -> PortResult<Vec<VideoRecord>> {
        sqlx::query(
            "SELECT * FROM job_videos WHERE job_id = $1 AND ($2::text IS NULL OR status = $2) \
             ORDER BY position LIMIT $3 OFFSET $4",
        )
        .bind(job_id.0)
        .bind(status.map(VideoStatus::as_str))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?
        .iter()
        .map(video_from_row)
        .collect()
    }

    async fn video_counts(&self, job_id: JobId) -> PortResult<VideoCounts> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*), COALESCE(SUM(changes), 0)::int8 FROM job_videos WHERE job_id = $1 GROUP BY status",
        )
        .bind(job_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        VideoCounts::from_rows(rows, |status| parse("video status", status))
    }

    async fn job_with_counts(&self, job_id: JobId) -> PortResult<Option<(JobRecord, VideoCounts)>> {
        let rows = sqlx::query(
            "SELECT j.*, c.video_status, c.n, c.changes FROM jobs j LEFT JOIN LATERAL \
             (SELECT status AS video_status, COUNT(*)::int8 AS n, COALESCE(SUM(changes), 0)::int8 AS changes \
             FROM job_videos WHERE job_id = j.job_id GROUP BY status) c ON true WHERE j.job_id = $1",
        )
        .bind(job_id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        crate::domain::records::job_and_counts(
            &rows,
            |row| {
                let status: Option<String> = row.get("video_status");
                status.map(|s| (s, row.get("n"), row.get("changes")))
            },
            |status| parse("video status", status),
            job_from_row,
        )
    }

    async fn get_video(&self, job_id: JobId, video_id: &VideoId) -> PortResult<Option<VideoRecord>> {
        sqlx::query("SELECT * FROM job_videos WHERE job_id = $1 AND video_id = $2")
            .bind(job_id.0)
            .bind(video_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .as_ref()
            .map(video_from_row)
            .transpose()
    }

    async fn jobs_needing_media(&self, video_id: &VideoId) -> PortResult<Vec<JobId>> {
        let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT v.job_id FROM job_videos v JOIN jobs j ON j.job_id = v.job_id \
             WHERE v.video_id = $1 \
             AND v.status IN ('discovered', 'downloading', 'downloaded', 'extracting_audio', 'audio_extracted', 'transcribing') \
             AND j.status IN ('pending', 'discovering', 'running')",
        )
        .bind(video_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        Ok(rows.into_iter().map(|(id,)| JobId(id)).collect())
    }

    async fn update_video_fenced(
        &self,
        job_id: JobId,
        video_id: &VideoId,
        update: &VideoUpdate,
        fence: Option<&Fence>,
    ) -> PortResult<()> {
        self.videos.submit(VideoWrite::new(job_id, video_id, update, fence)).await
    }
}

/// A job whose owner's node has registered again since (a new incarnation replaced its row): the
/// old incarnation is gone, whatever its lease says. (A macro: the queries are `concat!`ed literals.)
macro_rules! replaced_owner {
    () => {
        "(owner IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.node = jobs.owner) \
         AND EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = split_part(jobs.owner, '#', 1)))"
    };
}
use replaced_owner;
