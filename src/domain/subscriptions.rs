//! Subscriptions: channels tubesum watches for new uploads. Each poll of a channel's feed either
//! finds nothing new (unchanged, or `304 Not Modified`), or finds uploads it has not seen, for which
//! one job is submitted, with exactly those videos.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ChannelId, JobId, VideoId, VideoMeta};

/// How many of a channel's uploads a subscription remembers having seen (a feed lists the latest
/// 15; the rest keeps uploads that drop out of the feed and come back from being resubmitted).
pub const SEEN_KEPT: usize = 500;

/// A watched channel, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    #[schema(value_type = String, format = Uuid)]
    pub subscription_id: Uuid,
    #[schema(value_type = String, example = "UCXuqSBlHAE6Xw-yeJA0Tunw")]
    pub channel_id: ChannelId,
    /// Seconds between polls (each one jittered by up to a tenth either way).
    pub interval_secs: u64,
    /// Whether the first poll submits the uploads already in the feed (else it only notes them).
    pub backfill: bool,
    pub created_at: DateTime<Utc>,
    /// When the feed was last asked; none before the first poll.
    pub last_polled_at: Option<DateTime<Utc>>,
    /// What the last poll found.
    pub last_outcome: Option<PollOutcome>,
    /// Why the last poll failed (cleared by the next success).
    pub last_error: Option<String>,
    /// Failed polls in a row (the backoff grows with them).
    pub failures: u32,
    /// The last job a poll submitted.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub last_job_id: Option<JobId>,
    /// Polls made, and jobs they submitted.
    pub polls: u64,
    pub jobs: u64,
    /// The process that polls it now (its lease holder), if any.
    pub owner: Option<String>,
    /// A poll was asked for (a signed WebSub notification) and its poller has not taken it yet.
    pub poll_requested: bool,
    /// The feed's validators, sent back on the next poll (`If-None-Match`, `If-Modified-Since`).
    #[serde(skip)]
    pub validators: Validators,
    /// Uploads already seen, newest first (at most [`SEEN_KEPT`]).
    #[serde(skip)]
    pub seen: Vec<VideoId>,
}

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PollOutcome {
    /// `304 Not Modified`: the feed did not change.
    NotModified,
    /// The feed answered, with no upload not seen before.
    Unchanged,
    /// The first poll noted the feed's uploads as seen (no backfill asked).
    Baseline,
    /// Uploads not seen before: a job was submitted for them.
    NewUploads,
    /// The feed could not be read (see `last_error`).
    Failed,
}

impl PollOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::NotModified => "not_modified",
            PollOutcome::Unchanged => "unchanged",
            PollOutcome::Baseline => "baseline",
            PollOutcome::NewUploads => "new_uploads",
            PollOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::NotModified, Self::Unchanged, Self::Baseline, Self::NewUploads, Self::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An HTTP answer's validators (`ETag`, `Last-Modified`), kept to make the next request
/// conditional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a poll records, in one write with the job it submits (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct PollRecord {
    pub outcome: PollOutcome,
    pub validators: Validators,
    /// The seen list after this poll (unchanged when nothing was read).
    pub seen: Vec<VideoId>,
    pub error: Option<String>,
    /// The job to submit, with exactly these videos (new uploads, newest first).
    pub job: Option<(JobId, Vec<VideoMeta>)>,
}

impl Subscription {
    /// The result of reading the feed's `listed` uploads (newest first): the uploads to submit, and
    /// the record of the poll. The first poll only notes what is there, unless backfill was asked.
    pub fn read_feed(&self, listed: Vec<VideoMeta>, validators: Validators, job_id: JobId) -> PollRecord {
        let first = self.last_polled_at.is_none() && self.seen.is_empty();
        let new: Vec<VideoMeta> = listed.into_iter().filter(|v| !self.seen.contains(&v.video_id)).collect();
        let mut seen: Vec<VideoId> = new.iter().map(|v| v.video_id.clone()).collect();
        seen.extend(self.seen.iter().cloned());
        seen.truncate(SEEN_KEPT);
        let (outcome, job) = match (first && !self.backfill, new.is_empty()) {
            (true, _) => (PollOutcome::Baseline, None),
            (false, true) => (PollOutcome::Unchanged, None),
            (false, false) => (PollOutcome::NewUploads, Some((job_id, new))),
        };
        PollRecord { outcome, validators, seen, error: None, job }
    }

    /// The record of a poll that changed nothing: `304`, or a failure (`error`).
    pub fn unchanged(&self, outcome: PollOutcome, error: Option<String>) -> PollRecord {
        PollRecord { outcome, validators: self.validators.clone(), seen: self.seen.clone(), error, job: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> VideoMeta {
        VideoMeta::new(VideoId::parse(id).unwrap(), id)
    }

    fn subscription(backfill: bool) -> Subscription {
        Subscription {
            subscription_id: Uuid::nil(),
            channel_id: ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap(),
            interval_secs: 60,
            backfill,
            created_at: Utc::now(),
            last_polled_at: None,
            last_outcome: None,
            last_error: None,
            failures: 0,
            last_job_id: None,
            polls: 0,
            jobs: 0,
            owner: None,
            poll_requested: false,
            validators: Validators::default(),
            seen: Vec::new(),
        }
    }

    #[test]
    fn the_first_poll_notes_the_feed_and_later_ones_submit_only_what_is_new() {
        let mut sub = subscription(false);
        let first = sub.read_feed(vec![meta("bbbbbbbbbbb"), meta("aaaaaaaaaaa")], Validators::default(), JobId::new());
        assert_eq!(first.outcome, PollOutcome::Baseline);
        assert!(first.job.is_none());
        sub.seen = first.seen;
        sub.last_polled_at = Some(Utc::now());
        let feed = vec![meta("ccccccccccc"), meta("bbbbbbbbbbb"), meta("aaaaaaaaaaa")];
        let second = sub.read_feed(feed.clone(), Validators::default(), JobId::new());
        assert_eq!(second.outcome, PollOutcome::NewUploads);
        let (_, videos) = second.job.unwrap();
        assert_eq!(videos, vec![meta("ccccccccccc")]);
        assert_eq!(second.seen.len(), 3);
        assert_eq!(second.seen[0].as_str(), "ccccccccccc", "newest first");
        sub.seen = second.seen;
        assert_eq!(sub.read_feed(feed, Validators::default(), JobId::new()).outcome, PollOutcome::Unchanged);
    }

    #[test]
    fn backfill_submits_the_first_feed() {
        let sub = subscription(true);
        let first = sub.read_feed(vec![meta("aaaaaaaaaaa")], Validators::default(), JobId::new());
        assert_eq!(first.outcome, PollOutcome::NewUploads);
        assert_eq!(first.job.unwrap().1.len(), 1);
    }

    #[test]
    fn the_seen_list_is_bounded() {
        let mut sub = subscription(false);
        sub.last_polled_at = Some(Utc::now());
        sub.seen = (0..SEEN_KEPT).map(|i| VideoId::parse(&format!("{i:0>11}")).unwrap()).collect();
        let record = sub.read_feed(vec![meta("zzzzzzzzzzz")], Validators::default(), JobId::new());
        assert_eq!(record.seen.len(), SEEN_KEPT);
        assert_eq!(record.seen[0].as_str(), "zzzzzzzzzzz");
    }

    #[test]
    fn outcomes_round_trip() {
        for o in [
            PollOutcome::NotModified,
            PollOutcome::Unchanged,
            PollOutcome::Baseline,
            PollOutcome::NewUploads,
            PollOutcome::Failed,
        ] {
            assert_eq!(PollOutcome::parse(o.as_str()), Some(o));
        }
    }
}
