//! The messages that cross process boundaries: the [`StageCommand`]s on the stage queues and the
//! [`DomainEvent`]s on the event bus. Their JSON form is the wire format of every broker.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{JobId, JobStatus, Stage, TranscriptSource, VideoId};

/// Work for one stage. The ids make the handler idempotent: a redelivery of a command whose
/// result is already committed does no work again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCommand {
    pub command_id: Uuid,
    pub job_id: JobId,
    /// None for discovery, which is job-level.
    pub video_id: Option<VideoId>,
    pub stage: Stage,
    pub attempt: u32,
}

impl StageCommand {
    pub fn new(job_id: JobId, video_id: Option<VideoId>, stage: Stage, attempt: u32) -> Self {
        Self { command_id: Uuid::now_v7(), job_id, video_id, stage, attempt }
    }
}

/// A domain event: what happened to a job or a video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub job_id: JobId,
    pub video_id: Option<VideoId>,
    /// How long the stage worked on the command this event reports (stage results only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The attempt of the command whose work this event reports (stage results only), so a result
    /// of an older attempt is recognised as such. (Not `attempt`: `stage_failed` has one.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_attempt: Option<u32>,
    #[serde(flatten)]
    pub payload: EventPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventPayload {
    VideoDiscovered {
        title: String,
        published_at: Option<DateTime<Utc>>,
    },
    /// `captions`: the download stage found captions and stored them as the transcript.
    /// `reused`: a transcript another job of this video stored is used (the job is not forced).
    /// Either way audio extraction and transcription are skipped.
    VideoDownloaded {
        captions: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reused: bool,
    },
    AudioExtracted {
        seconds: f64,
    },
    TranscriptionCompleted {
        source: TranscriptSource,
        segments: usize,
    },
    SummarizationCompleted {
        summarizer: String,
    },
    DiscoveryCompleted {
        videos: usize,
    },
    /// `redo`: the stage that makes what this one needs, to run again first (its output is missing,
    /// e.g. lost from the media store); the failure spends no attempt of this stage.
    StageFailed {
        stage: Stage,
        attempt: u32,
        retryable: bool,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redo: Option<Stage>,
    },
    JobFinished {
        status: JobStatus,
    },
}

impl EventPayload {
    /// The event's type name, also its Kafka topic.
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::VideoDiscovered { .. } => "video_discovered",
            EventPayload::VideoDownloaded { .. } => "video_downloaded",
            EventPayload::AudioExtracted { .. } => "audio_extracted",
            EventPayload::TranscriptionCompleted { .. } => "transcription_completed",
            EventPayload::SummarizationCompleted { .. } => "summarization_completed",
            EventPayload::DiscoveryCompleted { .. } => "discovery_completed",
            EventPayload::StageFailed { .. } => "stage_failed",
            EventPayload::JobFinished { .. } => "job_finished",
        }
    }
}

/// Namespace of [`DomainEvent::stable`] ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8f0c_54a1_6a43_4d8e_9a1f_4c1b_7d2e_3f60);

impl DomainEvent {
    pub fn new(job_id: JobId, video_id: Option<VideoId>, payload: EventPayload) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            job_id,
            video_id,
            duration_ms: None,
            from_attempt: None,
            payload,
        }
    }

    /// Gives the event the id it has whenever it is produced again: a redelivered command or a
    /// re-dispatched stage whose work is already committed, a restarted actor. The id is derived
    /// from the job, the video and the event type, which happen once per job, so consumers that
    /// deduplicate by `event_id` see a redone stage once. A `stage_failed` event keeps its own id:
    /// each failed attempt is news.
    pub fn stable(mut self) -> Self {
        if !matches!(self.payload, EventPayload::StageFailed { .. }) {
            let video = self.video_id.as_ref().map_or("", VideoId::as_str);
            let name = format!("{}/{video}/{}", self.job_id, self.payload.kind());
            self.event_id = Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_event_id_is_the_same_whenever_the_event_recurs() {
        let job = JobId::new();
        let video = Some(VideoId::parse("aaaaaaaaaaa").unwrap());
        let done = |seconds| DomainEvent::new(job, video.clone(), EventPayload::AudioExtracted { seconds }).stable();
        assert_eq!(done(1.0).event_id, done(2.0).event_id, "the same stage of the same video");
        let other_kind =
            DomainEvent::new(job, video.clone(), EventPayload::VideoDownloaded { captions: false, reused: false })
                .stable();
        assert_ne!(done(1.0).event_id, other_kind.event_id);
        let other_job =
            DomainEvent::new(JobId::new(), video.clone(), EventPayload::AudioExtracted { seconds: 1.0 }).stable();
        assert_ne!(done(1.0).event_id, other_job.event_id);
        let failed = |attempt| {
            DomainEvent::new(
                job,
                video.clone(),
                EventPayload::StageFailed {
                    stage: Stage::Download,
                    attempt,
                    retryable: true,
                    reason: "x".into(),
                    redo: None,
                },
            )
            .stable()
        };
        assert_ne!(failed(1).event_id, failed(1).event_id, "each failure is its own event");
    }

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        let job = JobId::new();
        let video = Some(VideoId::parse("aaaaaaaaaaa").unwrap());
        let payloads = [
            EventPayload::VideoDiscovered { title: "t".into(), published_at: Some(Utc::now()) },
            EventPayload::VideoDownloaded { captions: true, reused: false },
            EventPayload::AudioExtracted { seconds: 1.5 },
            EventPayload::TranscriptionCompleted { source: TranscriptSource::Captions, segments: 3 },
            EventPayload::SummarizationCompleted { summarizer: "textrank".into() },
            EventPayload::DiscoveryCompleted { videos: 2 },
            EventPayload::StageFailed {
                stage: Stage::Download,
                attempt: 2,
                retryable: true,
                reason: "r".into(),
                redo: None,
            },
            EventPayload::JobFinished { status: JobStatus::Completed },
        ];
        for payload in payloads {
            let mut event = DomainEvent::new(job, video.clone(), payload);
            event.duration_ms = Some(12);
            event.from_attempt = Some(2);
            let wire = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<DomainEvent>(&wire).unwrap(), event, "{wire}");
        }
    }
}
