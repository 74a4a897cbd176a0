//! The embedded state and artifact store: one SQLite file under the data dir (WAL mode).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use uuid::Uuid;

use crate::adapters::group_commit::{
    Apply, AttemptWrite, GroupCommit, VideoWrite, apply_attempts, apply_video_writes, by_rounds, by_size,
};
use crate::domain::search::{FoundPassage, IndexedVideo, Passage, PassageKind, SearchQuery, fts5_query};
use crate::domain::{
    AttemptOutcome, AttemptProgress, AttemptRecord, ChannelId, JobId, JobLease, JobRecord, JobStatus, NodeRecord,
    Stage, StageCommand, Summary, Transcript, VideoCounts, VideoId, VideoMeta, VideoRecord, VideoStatus, VideoUpdate,
    workflow,
};
use crate::ports::{
    ArtifactStore, Fence, JobStore, PortError, PortResult, found_passage, parse_stages, stages_text, write_refused,
};

mod subscriptions;
mod webhooks;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Jobs, videos, transcripts and summaries in one SQLite database. Every write goes through one
/// connection (SQLite takes one writer at a time: writers on several connections would wait on
/// each other's locks, sleeping), reads through a pool of several.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// Video-row writes, grouped into one statement (see [`group_commit`]).
    videos: Arc<GroupCommit<VideoWrite>>,
    /// Stage-attempt rows taken and ended, grouped the same way.
    attempts: Arc<GroupCommit<AttemptWrite>>,
    /// Transcripts and summaries put, and got, many callers' at once (see [`ArtifactPuts`]).
    put_transcripts: Arc<GroupCommit<ArtifactRow>>,
    put_summaries: Arc<GroupCommit<ArtifactRow>>,
    get_transcripts: Arc<GroupCommit<VideoId, Option<Transcript>>>,
    get_summaries: Arc<GroupCommit<VideoId, Option<Summary>>>,
}

/// Writes gathered at once: at most this many in one statement.
const WRITES_AT_ONCE: usize = 256;

/// Writes a batch of video rows with one `UPDATE … FROM jsonb_each(…)` per round (a row at most
/// once in each), each only where its fence holds; the rows it returns are the writes done.
struct VideoWrites {
    pool: SqlitePool,
    writer: SqlitePool,
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
        let rows: Vec<serde_json::Value> = batch
            .iter()
            .map(|w| {
                serde_json::json!({
                    "job_id": w.job_id.to_string(),
                    "video_id": w.video_id.as_str(),
                    "status": w.update.status.as_str(),
                    "attempts": w.update.attempts,
                    "error": w.update.error,
                    "owner": w.fence.as_ref().map(|f| f.owner.as_str()),
                    "epoch": w.fence.as_ref().map(|f| f.epoch),
                })
            })
            .collect();
        let written: Vec<(String, String)> = sqlx::query_as(
            "UPDATE job_videos SET status = u.status, attempts = u.attempts, error = u.error, updated_at = ?2, \
             changes = changes + 1 \
             FROM (SELECT value ->> 'job_id' AS job_id, value ->> 'video_id' AS video_id, value ->> 'status' AS status, \
             value ->> 'attempts' AS attempts, value ->> 'error' AS error, value ->> 'owner' AS owner, \
             value ->> 'epoch' AS epoch FROM jsonb_each(?1)) AS u \
             WHERE job_videos.job_id = u.job_id AND job_videos.video_id = u.video_id AND (u.owner IS NULL OR EXISTS \
             (SELECT 1 FROM jobs WHERE jobs.job_id = job_videos.job_id AND jobs.owner = u.owner AND jobs.epoch = u.epoch)) \
             RETURNING job_videos.job_id, job_videos.video_id",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(now())
        .fetch_all(&self.writer)
        .await
        .map_err(translate)?;
        written.into_iter().map(|(job, video)| Ok((parse("job id", &job)?, video))).collect()
    }

    /// Why a write changed nothing: the video is not there, or the job moved on without the writer.
    async fn refused(&self, write: &VideoWrite) -> PortError {
        let holder = match &write.fence {
            Some(_) => match job_holder(&self.pool, write.job_id).await {
                Ok(holder) => holder,
                Err(e) => return e,
            },
            None => None,
        };
        write.refused(holder)
    }
}

/// Writes a batch of attempt rows: per round one `INSERT … SELECT FROM jsonb_each(…)` of the
/// attempts taken (the checked ones only where still wanted) and one `UPDATE … FROM jsonb_each(…)`
/// of those ended (see [`apply_attempts`]).
struct AttemptWrites {
    writer: SqlitePool,
}

#[async_trait]
impl Apply<AttemptWrite> for AttemptWrites {
    async fn apply(&self, writes: &[AttemptWrite]) -> Vec<PortResult<()>> {
        apply_attempts(writes, |batch| async move { self.write(&batch).await }).await
    }
}

impl AttemptWrites {
    /// Writes the batch; returns the commands whose start it recorded.
    async fn write(&self, batch: &[&AttemptWrite]) -> PortResult<HashSet<Uuid>> {
        let (mut started, mut finished) = (Vec::new(), Vec::new());
        for write in batch {
            match write {
                AttemptWrite::Started { command, owner, checked } => started.push(serde_json::json!({
                    "command_id": command.command_id.to_string(),
                    "job_id": command.job_id.to_string(),
                    "video_id": command.video_id.as_ref().map(VideoId::as_str),
                    "stage": command.stage.as_str(),
                    "attempt": command.attempt,
                    "owner": owner,
                    "checked": checked,
                    "in_flight": workflow::in_flight_state(command.stage).map(VideoStatus::as_str),
                })),
                AttemptWrite::Finished { command_id, outcome, error } => finished.push(serde_json::json!({
                    "command_id": command_id.to_string(),
                    "outcome": outcome.as_str(),
                    "error": error,
                })),
            }
        }
        let mut recorded = HashSet::new();
        if !started.is_empty() {
            // Wanted: the job has not ended and the video waits on this stage with no later
            // attempt sent; for discovery, the job is discovering.
            let ids: Vec<String> = sqlx::query_scalar(
                "INSERT INTO stage_attempts (command_id, job_id, video_id, stage, attempt, claimed_by, started_at, heartbeat_at) \
                 SELECT u.command_id, u.job_id, u.video_id, u.stage, u.attempt, u.owner, ?2, ?2 FROM \
                 (SELECT value ->> 'command_id' AS command_id, value ->> 'job_id' AS job_id, value ->> 'video_id' AS video_id, \
                 value ->> 'stage' AS stage, value ->> 'attempt' AS attempt, value ->> 'owner' AS owner, \
                 value ->> 'checked' AS checked, value ->> 'in_flight' AS in_flight FROM jsonb_each(?1)) AS u \
                 WHERE NOT u.checked OR EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = u.job_id AND CASE \
                 WHEN u.video_id IS NULL THEN j.status = 'discovering' \
                 ELSE j.status IN ('pending', 'discovering', 'running') AND EXISTS (SELECT 1 FROM job_videos v \
                 WHERE v.job_id = u.job_id AND v.video_id = u.video_id AND v.status = u.in_flight AND v.attempts <= u.attempt) END) \
                 ON CONFLICT (command_id) DO UPDATE SET claimed_by = excluded.claimed_by, \
                 started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, finished_at = NULL, \
                 outcome = NULL, error = NULL RETURNING command_id",
            )
            .bind(serde_json::Value::Array(started).to_string())
            .bind(now())
            .fetch_all(&self.writer)
            .await
            .map_err(translate)?;
            for id in ids {
                recorded.insert(parse("command id", &id)?);
            }
        }
        if !finished.is_empty() {
            sqlx::query(
                "UPDATE stage_attempts SET finished_at = ?2, outcome = u.outcome, error = u.error \
                 FROM (SELECT value ->> 'command_id' AS command_id, value ->> 'outcome' AS outcome, \
                 value ->> 'error' AS error FROM jsonb_each(?1)) AS u WHERE stage_attempts.command_id = u.command_id",
            )
            .bind(serde_json::Value::Array(finished).to_string())
            .bind(now())
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        }
        Ok(recorded)
    }
}

/// One video's transcript or summary, its columns as a JSON object, to upsert.
struct ArtifactRow {
    video_id: VideoId,
    json: String,
}

impl ArtifactRow {
    fn new(video_id: &VideoId, columns: serde_json::Value) -> Self {
        Self { video_id: video_id.clone(), json: columns.to_string() }
    }
}

/// JSON of artifact rows in one statement at most: a batch of long transcripts goes in several.
const ARTIFACT_STATEMENT_BYTES: usize = 8 * 1024 * 1024;

/// Upserts the transcripts (or summaries) of a batch with one `INSERT … SELECT FROM jsonb_each(…)
/// ON CONFLICT` per round: a thousand stages finishing at once pay for a few commits, not one each
/// (see [`by_rounds`]: a video put twice goes in a later round, so the later put wins, and a round
/// refused as a whole is written again one put at a time).
struct ArtifactPuts {
    writer: SqlitePool,
    /// The upsert: `?1` the rows, a JSON array of objects; `?2` the time.
    upsert: &'static str,
}

#[async_trait]
impl Apply<ArtifactRow> for ArtifactPuts {
    async fn apply(&self, rows: &[ArtifactRow]) -> Vec<PortResult<()>> {
        by_rounds(rows, |row| row.video_id.clone(), |round| self.write(round), |_, ()| ()).await
    }
}

impl ArtifactPuts {
    async fn write(&self, round: Vec<&ArtifactRow>) -> PortResult<()> {
        for run in by_size(&round, |row| row.json.len(), ARTIFACT_STATEMENT_BYTES) {
            let mut array = String::with_capacity(run.iter().map(|row| row.json.len() + 1).sum::<usize>() + 1);
            array.push('[');
            for (i, row) in run.iter().enumerate() {
                if i > 0 {
                    array.push(',');
                }
                array.push_str(&row.json);
            }
            array.push(']');
            sqlx::query(self.upsert).bind(array).bind(now()).execute(&self.writer).await.map_err(translate)?;
        }
        Ok(())
    }
}

/// The upserts of [`ArtifactPuts`], one per table.
const UPSERT_TRANSCRIPTS: &str = "INSERT INTO transcripts (video_id, job_id, source, language, text, segments, updated_at) \
     SELECT value ->> 'video_id', value ->> 'job_id', value ->> 'source', value ->> 'language', \
     value ->> 'text', value ->> 'segments', ?2 FROM jsonb_each(?1) WHERE true \
     ON CONFLICT (video_id) DO UPDATE SET job_id = excluded.job_id, source = excluded.source, \
     language = excluded.language, text = excluded.text, segments = excluded.segments, updated_at = excluded.updated_at";
const UPSERT_SUMMARIES: &str = "INSERT INTO summaries (video_id, job_id, summary, key_points, summarizer, updated_at) \
     SELECT value ->> 'video_id', value ->> 'job_id', value ->> 'summary', value ->> 'key_points', \
     value ->> 'summarizer', ?2 FROM jsonb_each(?1) WHERE true \
     ON CONFLICT (video_id) DO UPDATE SET job_id = excluded.job_id, summary = excluded.summary, \
     key_points = excluded.key_points, summarizer = excluded.summarizer, updated_at = excluded.updated_at";

/// Reads the transcripts (or summaries) of a batch of videos with one query.
struct ArtifactGets<T> {
    pool: SqlitePool,
    /// The query: `?1` the video ids, a JSON array.
    select: &'static str,
    decode: fn(&VideoId, &SqliteRow) -> PortResult<T>,
}

#[async_trait]
impl<T: Send + 'static> Apply<VideoId, Option<T>> for ArtifactGets<T> {
    async fn apply(&self, ids: &[VideoId]) -> Vec<PortResult<Option<T>>> {
        let list = serde_json::Value::from(ids.iter().map(VideoId::as_str).collect::<Vec<_>>()).to_string();
        let rows = match sqlx::query(self.select).bind(list).fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(e) => {
                let error = translate(e);
                return ids.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let found: HashMap<String, SqliteRow> = rows.into_iter().map(|row| (row.get("video_id"), row)).collect();
        ids.iter().map(|id| found.get(id.as_str()).map(|row| (self.decode)(id, row)).transpose()).collect()
    }
}

fn transcript_of(video_id: &VideoId, row: &SqliteRow) -> PortResult<Transcript> {
    let segments: String = row.get("segments");
    let source: String = row.get("source");
    let job_id: String = row.get("job_id");
    Ok(Transcript {
        video_id: video_id.clone(),
        source: parse("transcript source", &source)?,
        language: row.get("language"),
        text: row.get("text"),
        segments: serde_json::from_str(&segments).map_err(|e| PortError::Corrupt(format!("segments: {e}")))?,
        job_id: parse("job id", &job_id)?,
    })
}

fn summary_of(video_id: &VideoId, row: &SqliteRow) -> PortResult<Summary> {
    let key_points: String = row.get("key_points");
    let job_id: String = row.get("job_id");
    Ok(Summary {
        video_id: video_id.clone(),
        summary: row.get("summary"),
        key_points: serde_json::from_str(&key_points).map_err(|e| PortError::Corrupt(format!("key points: {e}")))?,
        summarizer: row.get("summarizer"),
        job_id: parse("job id", &job_id)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path) -> PortResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| PortError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let connect = |connections| SqlitePoolOptions::new().max_connections(connections).connect_with(options.clone());
        let unavailable = |e: sqlx::Error| PortError::Unavailable(format!("sqlite {}: {e}", path.display()));
        let writer = connect(1).await.map_err(unavailable)?;
        MIGRATOR.run(&writer).await.map_err(|e| PortError::Unavailable(format!("sqlite migrations failed: {e}")))?;
        let pool = connect(8).await.map_err(unavailable)?;
        let videos = VideoWrites { pool: pool.clone(), writer: writer.clone() };
        let videos = Arc::new(GroupCommit::start(videos, WRITES_AT_ONCE));
        let attempts = Arc::new(GroupCommit::start(AttemptWrites { writer: writer.clone() }, WRITES_AT_ONCE));
        let puts =
            |upsert| Arc::new(GroupCommit::start(ArtifactPuts { writer: writer.clone(), upsert }, WRITES_AT_ONCE));
        let (put_transcripts, put_summaries) = (puts(UPSERT_TRANSCRIPTS), puts(UPSERT_SUMMARIES));
        let get_transcripts = Arc::new(GroupCommit::start(
            ArtifactGets {
                pool: pool.clone(),
                select: "SELECT * FROM transcripts WHERE video_id IN (SELECT value FROM json_each(?1))",
                decode: transcript_of,
            },
            WRITES_AT_ONCE,
        ));
        let get_summaries = Arc::new(GroupCommit::start(
            ArtifactGets {
                pool: pool.clone(),
                select: "SELECT * FROM summaries WHERE video_id IN (SELECT value FROM json_each(?1))",
                decode: summary_of,
            },
            WRITES_AT_ONCE,
        ));
        Ok(Self { pool, writer, videos, attempts, put_transcripts, put_summaries, get_transcripts, get_summaries })
    }
}

fn translate(e: sqlx::Error) -> PortError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => PortError::AlreadyExists(db.message().to_owned()),
        sqlx::Error::RowNotFound => PortError::NotFound("row".into()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            PortError::Unavailable(e.to_string())
        }
        _ => PortError::Other(e.to_string()),
    }
}

fn parse<T: FromStr>(what: &str, raw: &str) -> PortResult<T>
where
    T::Err: std::fmt::Display,
{
    raw.parse::<T>().map_err(|e| PortError::Corrupt(format!("{what} {raw:?}: {e}")))
}

fn parse_time(raw: &str) -> PortResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PortError::Corrupt(format!("timestamp {raw:?}: {e}")))
}

fn now() -> String {
    timestamp(Utc::now())
}

/// `lease` from now (leases compare as text: one fixed-width UTC format).
fn after(lease: Duration) -> String {
    timestamp(Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1)))
}

/// Inserts a job row; with `holder`, leased to that process for that long.
async fn insert_job(
    conn: &mut SqliteConnection,
    job_id: JobId,
    channel_id: &ChannelId,
    force: bool,
    status: JobStatus,
    holder: Option<(&str, Duration)>,
) -> PortResult<()> {
    let at = now();
    sqlx::query(
        "INSERT INTO jobs (job_id, channel_id, force, status, error, created_at, updated_at, owner, lease_until) \
         VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?)",
    )
    .bind(job_id.to_string())
    .bind(channel_id.as_str())
    .bind(i64::from(force))
    .bind(status.as_str())
    .bind(&at)
    .bind(&at)
    .bind(holder.map(|(owner, _)| owner))
    .bind(holder.map(|(_, lease)| after(lease)))
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    Ok(())
}

/// Inserts a job's discovered videos, in their listing's order; known ones are left as they are.
async fn insert_videos(conn: &mut SqliteConnection, job_id: JobId, videos: &[VideoMeta]) -> PortResult<()> {
    // One statement for the whole listing, its rows in a JSON array (`key`: the position).
    let rows: Vec<serde_json::Value> = videos
        .iter()
        .map(|v| {
            serde_json::json!({
                "video_id": v.video_id.as_str(),
                "title": v.title,
                "published_at": v.published_at.map(|t| t.to_rfc3339()),
                "duration_secs": v.duration_secs,
            })
        })
        .collect();
    sqlx::query(
        "INSERT INTO job_videos (job_id, video_id, title, published_at, duration_secs, position, status, attempts, error, updated_at) \
         SELECT ?1, value ->> 'video_id', value ->> 'title', value ->> 'published_at', value ->> 'duration_secs', key, \
         'discovered', 0, NULL, ?2 FROM json_each(?3) WHERE true ORDER BY key ON CONFLICT (job_id, video_id) DO NOTHING",
    )
    .bind(job_id.to_string())
    .bind(now())
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    Ok(())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> PortResult<JobRecord> {
    let job_id: String = row.get("job_id");
    let channel_id: String = row.get("channel_id");
    let status: String = row.get("status");
    let created: String = row.get("created_at");
    let updated: String = row.get("updated_at");
    Ok(JobRecord {
        job_id: parse("job id", &job_id)?,
        channel_id: parse::<ChannelId>("channel id", &channel_id)?,
        force: row.get::<i64, _>("force") != 0,
        status: parse("job status", &status)?,
        error: row.get("error"),
        created_at: parse_time(&created)?,
        updated_at: parse_time(&updated)?,
    })
}

fn video_from_row(row: &sqlx::sqlite::SqliteRow) -> PortResult<VideoRecord> {
    let job_id: String = row.get("job_id");
    let video_id: String = row.get("video_id");
    let status: String = row.get("status");
    let published: Option<String> = row.get("published_at");
    let updated: String = row.get("updated_at");
    Ok(VideoRecord {
        job_id: parse("job id", &job_id)?,
        video_id: parse::<VideoId>("video id", &video_id)?,
        title: row.get("title"),
        published_at: published.as_deref().map(parse_time).transpose()?,
        duration_secs: row.get::<Option<i64>, _>("duration_secs").and_then(|d| u32::try_from(d).ok()),
        position: row.get("position"),
        status: parse("video status", &status)?,
        attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
        error: row.get("error"),
        updated_at: parse_time(&updated)?,
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(
        &self,
        job_id: JobId,
        channel_id: &ChannelId,
        force: bool,
        holder: Option<(&str, Duration)>,
    ) -> PortResult<JobRecord> {
        let mut conn = self.writer.acquire().await.map_err(translate)?;
        insert_job(&mut conn, job_id, channel_id, force, JobStatus::Pending, holder).await?;
        drop(conn);
        self.get_job(job_id).await?.ok_or_else(|| PortError::NotFound(format!("job {job_id}")))
    }

    async fn get_job(&self, job_id: JobId) -> PortResult<Option<JobRecord>> {
        sqlx::query("SELECT * FROM jobs WHERE job_id = ?")
            .bind(job_id.to_string())
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
            "SELECT * FROM jobs WHERE ?1 IS NULL OR channel_id = ?1 ORDER BY created_at DESC, job_id DESC LIMIT ?2 OFFSET ?3",
        )
        .bind(channel)
        .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(translate)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE ?1 IS NULL OR channel_id = ?1")
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
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ? \
             WHERE job_id = ? AND status IN ('pending', 'discovering', 'running') \
             AND (? IS NULL OR (owner = ? AND epoch = ?))",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now())
        .bind(job_id.to_string())
        .bind(fence.map(|f| f.owner.as_str()))
        .bind(fence.map(|f| f.owner.as_str()))
        .bind(fence.map(|f| f.epoch))
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        Err(write_refused(job_id, fence, job_holder(&self.pool, job_id).await?))
    }

    async fn claimable_jobs(&self) -> PortResult<Vec<JobId>> {
        let ids: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT job_id FROM jobs WHERE status IN ('pending', 'discovering', 'running') \
                 AND (owner IS NULL OR lease_until < ? OR ",
            replaced_owner!(),
            ") ORDER BY created_at"
        ))
        .bind(now())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        ids.iter().map(|id| parse("job id", id)).collect()
    }

    async fn claim_job(&self, job_id: JobId, owner: &str, lease: Duration) -> PortResult<Option<Fence>> {
        // A change of owner is a new epoch (SET reads the row as it was).
        let epoch: Option<i64> = sqlx::query_scalar(concat!(
            "UPDATE jobs SET epoch = CASE WHEN owner IS ? THEN epoch ELSE epoch + 1 END, owner = ?, lease_until = ? \
             WHERE job_id = ? AND status IN ('pending', 'discovering', 'running') \
             AND (owner IS NULL OR owner = ? OR lease_until < ? OR ",
            replaced_owner!(),
            ") RETURNING epoch",
        ))
        .bind(owner)
        .bind(owner)
        .bind(after(lease))
        .bind(job_id.to_string())
        .bind(owner)
        .bind(now())
        .fetch_optional(&self.writer)
        .await
        .map_err(translate)?;
        Ok(epoch.map(|epoch| Fence { owner: owner.to_owned(), epoch }))
    }

    async fn renew_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<JobId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET lease_until = ? \
             WHERE owner = ? AND status IN ('pending', 'discovering', 'running') RETURNING job_id",
        )
        .bind(after(lease))
        .bind(owner)
        .fetch_all(&self.writer)
        .await
        .map_err(translate)?;
        ids.iter().map(|id| parse("job id", id)).collect()
    }

    async fn register_node(&self, node: &NodeRecord) -> PortResult<()> {
        sqlx::query(
            "INSERT INTO cluster_nodes (name, node, http_addr, cluster_addr, version, stages, started_at, heartbeat_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (name) DO UPDATE SET node = excluded.node, \
             http_addr = excluded.http_addr, cluster_addr = excluded.cluster_addr, version = excluded.version, \
             stages = excluded.stages, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&node.name)
        .bind(&node.node)
        .bind(&node.http_addr)
        .bind(&node.cluster_addr)
        .bind(&node.version)
        .bind(stages_text(&node.stages))
        .bind(now())
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn node_heartbeat(&self, node: &str) -> PortResult<bool> {
        let done = sqlx::query("UPDATE cluster_nodes SET heartbeat_at = ? WHERE node = ?")
            .bind(now())
            .bind(node)
            .execute(&self.writer)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_nodes(&self) -> PortResult<(Vec<NodeRecord>, DateTime<Utc>)> {
        let rows = sqlx::query(
            "SELECT name, node, http_addr, cluster_addr, version, stages, started_at, heartbeat_at \
             FROM cluster_nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
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
                    started_at: parse_time(row.get("started_at"))?,
                    heartbeat_at: parse_time(row.get("heartbeat_at"))?,
                })
            })
            .collect::<PortResult<_>>()?;
        Ok((nodes, Utc::now()))
    }

    async fn forget_nodes(&self, node: Option<&str>, silent: Duration) -> PortResult<u64> {
        let done = match node {
            Some(node) => sqlx::query("DELETE FROM cluster_nodes WHERE node = ?").bind(node.to_owned()),
            None => {
                let since = Utc::now() - chrono::Duration::from_std(silent).unwrap_or(chrono::Duration::days(1));
                sqlx::query("DELETE FROM cluster_nodes WHERE heartbeat_at < ?").bind(timestamp(since))
            }
        }
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn job_leases(&self, job: Option<JobId>) -> PortResult<Vec<JobLease>> {
        let rows = sqlx::query(
            "SELECT job_id, owner, lease_until FROM jobs \
             WHERE status IN ('pending', 'discovering', 'running') AND (?1 IS NULL OR job_id = ?1) \
             ORDER BY created_at",
        )
        .bind(job.map(|j| j.to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        let now = Utc::now();
        rows.iter()
            .map(|row| {
                let until: Option<String> = row.get("lease_until");
                let left = match until {
                    Some(until) => Some((parse_time(&until)? - now).to_std().unwrap_or_default()),
                    None => None,
                };
                Ok(JobLease { job_id: parse("job id", row.get("job_id"))?, owner: row.get("owner"), left })
            })
            .collect()
    }

    async fn release_job(&self, job_id: JobId, owner: &str) -> PortResult<()> {
        sqlx::query("UPDATE jobs SET owner = NULL, lease_until = NULL WHERE job_id = ? AND owner = ?")
            .bind(job_id.to_string())
            .bind(owner)
            .execute(&self.writer)
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
        sqlx::query("UPDATE stage_attempts SET heartbeat_at = ? WHERE command_id = ? AND finished_at IS NULL")
            .bind(now())
            .bind(command_id.to_string())
            .execute(&self.writer)
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
        let row = sqlx::query(
            "SELECT started_at, heartbeat_at, finished_at, outcome FROM stage_attempts \
             WHERE job_id = ? AND video_id IS ? AND stage = ? AND attempt = ? ORDER BY started_at DESC LIMIT 1",
        )
        .bind(job_id.to_string())
        .bind(video_id.map(VideoId::as_str))
        .bind(stage.as_str())
        .bind(i64::from(attempt))
        .fetch_optional(&self.pool)
        .await
        .map_err(translate)?;
        let Some(row) = row else {
            return Ok(AttemptProgress::of(Utc::now(), None, None, silence));
        };
        let time = |column: &str| row.get::<Option<String>, _>(column).as_deref().map(parse_time).transpose();
        let started = time("started_at")?.ok_or_else(|| PortError::Corrupt("attempt without a start".into()))?;
        let outcome: Option<String> = row.get("outcome");
        let finished = match (time("finished_at")?, outcome) {
            (Some(at), Some(outcome)) => Some((at, parse("outcome", &outcome)?)),
            _ => None,
        };
        Ok(AttemptProgress::of(Utc::now(), Some((started, time("heartbeat_at")?)), finished, silence))
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
            "UPDATE stage_attempts SET finished_at = ?, outcome = 'interrupted', error = ? \
             WHERE outcome IS NULL AND (claimed_by = ? OR COALESCE(heartbeat_at, started_at) < ?)",
        )
        .bind(now())
        .bind(reason)
        .bind(owner)
        .bind(timestamp(silent_since))
        .execute(&self.writer)
        .await
        .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn attempts_page(&self, job_id: JobId, limit: u32, offset: u32) -> PortResult<(Vec<AttemptRecord>, u64)> {
        let rows = sqlx::query(
            "SELECT * FROM stage_attempts WHERE job_id = ? ORDER BY started_at, command_id LIMIT ? OFFSET ?",
        )
        .bind(job_id.to_string())
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stage_attempts WHERE job_id = ?")
            .bind(job_id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(translate)?;
        let attempts = rows
            .iter()
            .map(|row| {
                let command_id: String = row.get("command_id");
                let video_id: Option<String> = row.get("video_id");
                let stage: String = row.get("stage");
                let started: String = row.get("started_at");
                let heartbeat: Option<String> = row.get("heartbeat_at");
                let finished: Option<String> = row.get("finished_at");
                let outcome: Option<String> = row.get("outcome");
                Ok(AttemptRecord {
                    command_id: parse("command id", &command_id)?,
                    video_id: video_id.as_deref().map(|v| parse("video id", v)).transpose()?,
                    stage: parse("stage", &stage)?,
                    attempt: u32::try_from(row.get::<i64, _>("attempt")).unwrap_or(0),
                    claimed_by: row.get("claimed_by"),
                    started_at: parse_time(&started)?,
                    heartbeat_at: heartbeat.as_deref().map(parse_time).transpose()?,
                    finished_at: finished.as_deref().map(parse_time).transpose()?,
                    outcome: outcome.as_deref().map(|o| parse("outcome", o)).transpose()?,
                    error: row.get("error"),
                })
            })
            .collect::<PortResult<_>>()?;
        Ok((attempts, u64::try_from(total).unwrap_or(0)))
    }

    async fn add_videos(&self, job_id: JobId, videos: &[VideoMeta]) -> PortResult<()> {
        let mut tx = self.writer.begin().await.map_err(translate)?;
        insert_videos(&mut tx, job_id, videos).await?;
        tx.commit().await.map_err(translate)
    }

    async fn index_passages(&self, video: &IndexedVideo, kind: PassageKind, passages: &[Passage]) -> PortResult<()> {
        let mut tx = self.writer.begin().await.map_err(translate)?;
        sqlx::query("DELETE FROM search_passages WHERE video_id = ? AND kind = ?")
            .bind(video.video_id.as_str())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        for passage in passages {
            sqlx::query(
                "INSERT INTO search_passages (video_id, channel_id, title, kind, start, text) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(video.video_id.as_str())
            .bind(video.channel_id.as_str())
            .bind(&video.title)
            .bind(kind.as_str())
            .bind(passage.start)
            .bind(&passage.text)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        }
        tx.commit().await.map_err(translate)
    }

    async fn search(&self, query: &SearchQuery) -> PortResult<Vec<FoundPassage>> {
        // FTS5's query language is not for users: their words are quoted (see `fts5_query`).
        let Some(matching) = fts5_query(&query.text, query.any) else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT p.video_id, p.channel_id, p.title, p.kind, p.start, \
                    snippet(search_fts, 0, char(2), char(3), '…', 24) AS snippet, bm25(search_fts) AS rank \
             FROM search_fts JOIN search_passages p ON p.id = search_fts.rowid \
             WHERE search_fts MATCH ?1 AND (?2 IS NULL OR p.channel_id = ?2) \
             ORDER BY rank, p.video_id, p.start LIMIT ?3",
        )
        .bind(matching)
        .bind(query.channel.as_ref().map(|c| c.as_str()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        rows.iter()
            .map(|row| {
                let [video_id, channel_id, title, kind] =
                    ["video_id", "channel_id", "title", "kind"].map(|c| row.get::<String, _>(c));
                // bm25 is lower for better matches: negated, higher is better as the port says.
                found_passage((
                    video_id,
                    channel_id,
                    title,
                    kind,
                    row.get("start"),
                    row.get("snippet"),
                    -row.get::<f64, _>("rank"),
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
            "SELECT * FROM job_videos WHERE job_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY position LIMIT ?3 OFFSET ?4",
        )
        .bind(job_id.to_string())
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
            "SELECT status, COUNT(*), COALESCE(SUM(changes), 0) FROM job_videos WHERE job_id = ? GROUP BY status",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        VideoCounts::from_rows(rows, |status| parse("video status", status))
    }

    async fn job_with_counts(&self, job_id: JobId) -> PortResult<Option<(JobRecord, VideoCounts)>> {
        let rows = sqlx::query(
            "SELECT j.*, c.video_status, c.n, c.changes FROM jobs j LEFT JOIN \
             (SELECT status AS video_status, COUNT(*) AS n, COALESCE(SUM(changes), 0) AS changes \
             FROM job_videos WHERE job_id = ?1 GROUP BY status) c ON true WHERE j.job_id = ?1",
        )
        .bind(job_id.to_string())
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
        sqlx::query("SELECT * FROM job_videos WHERE job_id = ? AND video_id = ?")
            .bind(job_id.to_string())
            .bind(video_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(translate)?
            .as_ref()
            .map(video_from_row)
            .transpose()
    }

    async fn jobs_needing_media(&self, video_id: &VideoId) -> PortResult<Vec<JobId>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT v.job_id FROM job_videos v JOIN jobs j ON j.job_id = v.job_id \
             WHERE v.video_id = ? \
             AND v.status IN ('discovered', 'downloading', 'downloaded', 'extracting_audio', 'audio_extracted', 'transcribing') \
             AND j.status IN ('pending', 'discovering', 'running')",
        )
        .bind(video_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(translate)?;
        rows.into_iter().map(|(id,)| parse("job id", &id)).collect()
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

/// A job's status, owner and epoch, to tell why a write changed nothing.
async fn job_holder(pool: &SqlitePool, job_id: JobId) -> PortResult<Option<(String, Option<String>, i64)>> {
    sqlx::query_as("SELECT status, owner, epoch FROM jobs WHERE job_id = ?")
        .bind(job_id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(translate)
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn put_transcript(&self, t: &Transcript) -> PortResult<()> {
        let segments = serde_json::to_string(&t.segments).map_err(|e| PortError::Other(e.to_string()))?;
        let row = serde_json::json!({
            "video_id": t.video_id.as_str(),
            "job_id": t.job_id.to_string(),
            "source": t.source.as_str(),
            "language": t.language,
            "text": t.text,
            "segments": segments,
        });
        self.put_transcripts.submit(ArtifactRow::new(&t.video_id, row)).await
    }

    async fn get_transcript(&self, video_id: &VideoId) -> PortResult<Option<Transcript>> {
        self.get_transcripts.submit(video_id.clone()).await
    }

    async fn put_summary(&self, s: &Summary) -> PortResult<()> {
        let key_points = serde_json::to_string(&s.key_points).map_err(|e| PortError::Other(e.to_string()))?;
        let row = serde_json::json!({
            "video_id": s.video_id.as_str(),
            "job_id": s.job_id.to_string(),
            "summary": s.summary,
            "key_points": key_points,
            "summarizer": s.summarizer,
        });
        self.put_summaries.submit(ArtifactRow::new(&s.video_id, row)).await
    }

    async fn get_summary(&self, video_id: &VideoId) -> PortResult<Option<Summary>> {
        self.get_summaries.submit(video_id.clone()).await
    }

    async fn summarized(&self, video_ids: &[VideoId]) -> PortResult<HashSet<VideoId>> {
        let ids = serde_json::Value::from(video_ids.iter().map(VideoId::as_str).collect::<Vec<_>>());
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT video_id FROM summaries WHERE video_id IN (SELECT value FROM json_each(?))")
                .bind(ids.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(translate)?;
        rows.iter().map(|id| parse("video id", id)).collect()
    }
}

/// A job whose owner's node has registered again since (a new incarnation replaced its row): the
/// old incarnation is gone, whatever its lease says. (A macro: the queries are `concat!`ed literals.)
macro_rules! replaced_owner {
    () => {
        "(owner IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.node = jobs.owner) \
         AND EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = substr(jobs.owner, 1, instr(jobs.owner, '#') - 1)))"
    };
}
use replaced_owner;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::conformance;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db/t.sqlite")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn sqlite_job_store_conforms() {
        let (_dir, store) = store().await;
        conformance::job_store(&store).await;
    }

    #[tokio::test]
    async fn sqlite_subscription_store_conforms() {
        let (_dir, store) = store().await;
        conformance::subscription_store(&store).await;
    }

    #[tokio::test]
    async fn sqlite_artifact_store_conforms() {
        let (_dir, store) = store().await;
        conformance::artifact_store(&store).await;
    }

    #[tokio::test]
    async fn a_batch_of_puts_keeps_the_later_of_a_video_put_twice_and_fails_only_a_bad_one() {
        let (_dir, store) = store().await;
        let puts = ArtifactPuts { writer: store.writer.clone(), upsert: UPSERT_SUMMARIES };
        let [a, b, c] = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"].map(|id| VideoId::parse(id).unwrap());
        let job_id = JobId::new();
        let row = |id: &VideoId, summary: Option<&str>| {
            let columns = serde_json::json!({ "video_id": id.as_str(), "job_id": job_id.to_string(),
                "summary": summary, "key_points": "[]", "summarizer": "textrank" });
            ArtifactRow::new(id, columns)
        };
        // `c` without a summary breaks NOT NULL: its round is refused, then written put by put.
        let rows = [row(&a, Some("first")), row(&b, Some("only")), row(&c, None), row(&a, Some("second"))];
        let results = puts.apply(&rows).await;
        assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok(), "{results:?}");
        assert!(matches!(results[2], Err(PortError::Other(_))), "{results:?}");
        let store = &store;
        let summary = |id| async move { store.get_summary(id).await.unwrap().map(|s| s.summary) };
        assert_eq!(summary(&a).await.as_deref(), Some("second"), "the later put wins");
        assert_eq!(summary(&b).await.as_deref(), Some("only"));
        assert_eq!(summary(&c).await, None);
    }

    #[tokio::test]
    async fn sqlite_webhook_store_conforms() {
        let (_dir, store) = store().await;
        conformance::webhook_store(&store).await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let id = JobId::new();
        let channel = ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap();
        SqliteStore::open(&path).await.unwrap().create_job(id, &channel, false, None).await.unwrap();
        let again = SqliteStore::open(&path).await.unwrap();
        assert_eq!(again.get_job(id).await.unwrap().unwrap().channel_id, channel);
    }
}
