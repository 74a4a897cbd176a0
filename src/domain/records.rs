//! What the job store keeps: a job, its videos, and the stage attempts workers made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AttemptOutcome, ChannelId, JobId, JobStatus, Stage, VideoId, VideoStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    pub channel_id: ChannelId,
    pub force: bool,
    pub status: JobStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRecord {
    pub job_id: JobId,
    pub video_id: VideoId,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    /// Its length, where discovery's listing stated it.
    pub duration_secs: Option<u32>,
    /// Order in which discovery listed it (newest first for feeds).
    pub position: i64,
    pub status: VideoStatus,
    /// Attempts made at the stage the video is in (1 on first dispatch).
    pub attempts: u32,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A running process of the deployment (a node), as it registered in the job store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Stable across restarts (`cluster.node_name`).
    pub name: String,
    /// This boot of it, `{name}#{incarnation}`: the owner its job leases name.
    pub node: String,
    /// Where its HTTP API listens.
    pub http_addr: Option<String>,
    /// Where its cluster port listens, when clustered.
    pub cluster_addr: Option<String>,
    pub version: String,
    /// The stage pools it runs.
    pub stages: Vec<Stage>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl NodeRecord {
    /// The boot id of node `name` for `incarnation`.
    pub fn node_id(name: &str, incarnation: &str) -> String {
        format!("{name}#{incarnation}")
    }

    /// The incarnation part of the boot id.
    pub fn incarnation(&self) -> &str {
        self.node.rsplit_once('#').map_or("", |(_, incarnation)| incarnation)
    }
}

/// Who holds an unfinished job, as the store says now.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLease {
    pub job_id: JobId,
    pub owner: Option<String>,
    /// How long the owner's lease still runs (zero: run out).
    pub left: Option<std::time::Duration>,
}

/// A state change of one video in one job.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoUpdate {
    pub status: VideoStatus,
    pub attempts: u32,
    pub error: Option<String>,
}

/// One stage command as a worker took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    #[schema(value_type = String)]
    pub command_id: Uuid,
    #[schema(value_type = Option<String>)]
    pub video_id: Option<VideoId>,
    pub stage: Stage,
    pub attempt: u32,
    /// The process (node id) whose worker took it.
    pub claimed_by: String,
    pub started_at: DateTime<Utc>,
    /// The worker's last sign of life while it ran the attempt.
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// None while it runs (or when its process died running it).
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}

/// Where one stage attempt stands, as its worker recorded it: what a VideoActor waiting for the
/// result needs to know, whatever the queue's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptProgress {
    /// No worker has taken it yet: it waits in its queue (however long; that is no failure).
    Queued,
    /// A worker runs it and gave a sign of life recently.
    Running,
    /// A worker took it but has been silent for longer than allowed: it died with the attempt.
    Silent,
    /// It ended a while ago, with this outcome, and its result should have arrived by now.
    Finished(AttemptOutcome),
}

impl AttemptProgress {
    /// Classifies an attempt's latest record as of `now` (one clock: the store's). `taken` is when
    /// a worker took it and its last sign of life since; `finished` when and how it ended.
    pub fn of(
        now: DateTime<Utc>,
        taken: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
        finished: Option<(DateTime<Utc>, AttemptOutcome)>,
        silence: std::time::Duration,
    ) -> AttemptProgress {
        let silence = chrono::Duration::from_std(silence).unwrap_or(chrono::Duration::MAX);
        let long_ago = |at: DateTime<Utc>| now.signed_duration_since(at) > silence;
        match (taken, finished) {
            (None, _) => AttemptProgress::Queued,
            (Some(_), Some((at, outcome))) if long_ago(at) => AttemptProgress::Finished(outcome),
            (Some(_), Some(_)) => AttemptProgress::Running,
            (Some((started, heartbeat)), None) if long_ago(heartbeat.unwrap_or(started).max(started)) => {
                AttemptProgress::Silent
            }
            (Some(_), None) => AttemptProgress::Running,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn an_attempt_is_queued_running_silent_or_finished() {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let silence = Duration::from_secs(30);
        let now = at(100);
        assert_eq!(AttemptProgress::of(now, None, None, silence), AttemptProgress::Queued, "however long it waited");
        assert_eq!(AttemptProgress::of(now, Some((at(0), Some(at(80)))), None, silence), AttemptProgress::Running);
        assert_eq!(AttemptProgress::of(now, Some((at(0), Some(at(60)))), None, silence), AttemptProgress::Silent);
        assert_eq!(AttemptProgress::of(now, Some((at(90), None)), None, silence), AttemptProgress::Running);
        assert_eq!(AttemptProgress::of(now, Some((at(10), None)), None, silence), AttemptProgress::Silent);
        let ended = |s| Some((at(s), AttemptOutcome::Succeeded));
        assert_eq!(AttemptProgress::of(now, Some((at(0), None)), ended(95), silence), AttemptProgress::Running);
        assert_eq!(
            AttemptProgress::of(now, Some((at(0), None)), ended(50), silence),
            AttemptProgress::Finished(AttemptOutcome::Succeeded)
        );
    }
}

/// A job's videos counted: how many are in each status (statuses with none left out), and the
/// updates they have seen in all, which goes up with every change to any of them (what a
/// "not modified" answer is decided by).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoCounts {
    pub by_status: Vec<(VideoStatus, u64)>,
    pub changes: u64,
}

/// A job read with its counts in one statement: the job's columns on every row, and one row per
/// video status (`counted`: its `(status, count, changes)`, `None` on the one row of a job without
/// videos). `None` when there is no row: no such job.
pub fn job_and_counts<R, E>(
    rows: &[R],
    counted: impl Fn(&R) -> Option<(String, i64, i64)>,
    parse_status: impl Fn(&str) -> Result<VideoStatus, E>,
    job: impl Fn(&R) -> Result<JobRecord, E>,
) -> Result<Option<(JobRecord, VideoCounts)>, E> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let counts = VideoCounts::from_rows(rows.iter().filter_map(counted).collect(), parse_status)?;
    Ok(Some((job(first)?, counts)))
}

impl VideoCounts {
    /// From `(status, count, changes)` rows, one per status.
    pub fn from_rows<E>(
        rows: Vec<(String, i64, i64)>,
        parse: impl Fn(&str) -> Result<VideoStatus, E>,
    ) -> Result<VideoCounts, E> {
        let mut counts = VideoCounts::default();
        for (status, n, changes) in rows {
            counts.by_status.push((parse(&status)?, u64::try_from(n).unwrap_or(0)));
            counts.changes += u64::try_from(changes).unwrap_or(0);
        }
        Ok(counts)
    }

    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }
}
