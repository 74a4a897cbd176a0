//! The domain, shared by every layer and depending on none: identifiers (validated once, at the
//! edge), statuses, the artifacts a video produces, the [`messages`] that cross processes, the
//! [`records`] the job store keeps, the video [`workflow`] as a pure state machine, the
//! [`backoff`] policy of every retry, and the [`webhooks`] that report events out.

pub mod backoff;
pub mod messages;
pub mod records;
pub mod workflow;

pub use backoff::Backoff;
pub use messages::{DomainEvent, EventPayload, StageCommand};
pub use records::{
    AttemptProgress, AttemptRecord, JobLease, JobRecord, NodeRecord, VideoCounts, VideoRecord, VideoUpdate,
};

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

static CHANNEL_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^UC[A-Za-z0-9_-]{22}$").expect("valid regex"));
static VIDEO_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{11}$").expect("valid regex"));
/// `youtube.com/channel/UC…` with or without scheme, `www.`/`m.`, and what follows the id.
static CHANNEL_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:https?://)?(?:(?:www|m)\.)?youtube\.com/channel/(UC[A-Za-z0-9_-]{22})(?:[/?#].*)?$")
        .expect("valid regex")
});
/// `@name` or `youtube.com/@name…`: YouTube handles are 3 to 30 of `[A-Za-z0-9._-]`.
static HANDLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:https?://)?(?:(?:www|m)\.)?youtube\.com/)?@([A-Za-z0-9._-]{3,30})(?:[/?#].*)?$")
        .expect("valid regex")
});

/// An input that is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("invalid channel id {0:?}: expected \"UC\" followed by 22 characters of [A-Za-z0-9_-]")]
    Channel(String),
    #[error("invalid video id {0:?}: expected 11 characters of [A-Za-z0-9_-]")]
    Video(String),
    #[error("invalid job id {0:?}: expected a UUID")]
    Job(String),
    #[error(
        "invalid channel {0:?}: expected a channel id (\"UC\" followed by 22 characters of [A-Za-z0-9_-]), \
         a channel URL (https://www.youtube.com/channel/UC…) or a handle (@name or https://www.youtube.com/@name)"
    )]
    ChannelRef(String),
}

/// A channel as people name it: its id (also inside a channel URL), or its handle, which YouTube
/// resolves to an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRef {
    Id(ChannelId),
    /// Without the `@`.
    Handle(String),
}

impl ChannelRef {
    /// Surrounding spaces, tabs and line breaks are ignored (what the API's schema allows).
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let input = input.trim_matches([' ', '\t', '\r', '\n']);
        if let Ok(id) = ChannelId::parse(input) {
            return Ok(Self::Id(id));
        }
        if let Some(id) = CHANNEL_URL.captures(input).and_then(|c| ChannelId::parse(&c[1]).ok()) {
            return Ok(Self::Id(id));
        }
        match HANDLE.captures(input) {
            Some(c) => Ok(Self::Handle(c[1].to_owned())),
            None => Err(IdError::ChannelRef(input.to_owned())),
        }
    }
}

macro_rules! string_id {
    ($name:ident, $re:ident, $err:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if $re.is_match(s) { Ok(Self(s.to_owned())) } else { Err(IdError::$err(s.to_owned())) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(ChannelId, CHANNEL_ID, Channel);
string_id!(VideoId, VIDEO_ID, Video);

/// A job's identifier (a UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}
impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}
impl FromStr for JobId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::Job(s.to_owned()))
    }
}
impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Declares a plain enum stored and shown as snake_case text, with exhaustive string conversion.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name { $(#[serde(rename = $text)] #[schema(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a job stands. `completed`, `completed_with_errors`, `failed` and `cancelled` are final.
    JobStatus {
        Pending => "pending",
        Discovering => "discovering",
        Running => "running",
        Completed => "completed",
        CompletedWithErrors => "completed_with_errors",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl JobStatus {
    pub fn is_final(self) -> bool {
        match self {
            JobStatus::Pending | JobStatus::Discovering | JobStatus::Running => false,
            JobStatus::Completed | JobStatus::CompletedWithErrors | JobStatus::Failed | JobStatus::Cancelled => true,
        }
    }
}

text_enum!(
    /// Where a video stands; driven by [`workflow`].
    VideoStatus {
        Discovered => "discovered",
        Downloading => "downloading",
        Downloaded => "downloaded",
        ExtractingAudio => "extracting_audio",
        AudioExtracted => "audio_extracted",
        Transcribing => "transcribing",
        Transcribed => "transcribed",
        Summarizing => "summarizing",
        Summarized => "summarized",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// The pipeline's stages, each with its own worker pool and queue.
    Stage {
        Discovery => "discovery",
        Download => "download",
        AudioExtraction => "audio_extraction",
        Transcription => "transcription",
        Summarization => "summarization",
    }
);

impl Stage {
    /// The durable queue name used by brokers.
    pub fn queue_name(self) -> String {
        format!("{}_queue", self.as_str())
    }
}

text_enum!(
    /// How a stage attempt ended (`stopped`: while it ran, its job was cancelled or a later
    /// attempt replaced it; `interrupted`: its process stopped or died while it ran).
    AttemptOutcome {
        Succeeded => "succeeded",
        Failed => "failed",
        Crashed => "crashed",
        TimedOut => "timed_out",
        Stopped => "stopped",
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// Where a transcript came from.
    TranscriptSource {
        Whisper => "whisper",
        Captions => "captions",
        OpenAi => "openai",
    }
);

// After `text_enum!`, which they use.
pub mod search;
pub mod subscriptions;
pub mod webhooks;

/// A timed piece of transcript, in seconds from the start of the video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

impl Segment {
    /// The segment `by` seconds later (a piece of audio's segment, placed in the whole).
    pub fn shifted(self, by: f64) -> Self {
        Self { start: self.start + by, end: self.end + by, ..self }
    }
}

/// A video as discovery found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoMeta {
    pub video_id: VideoId,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    /// Its length, where the listing states it (the Data API, yt-dlp); a feed does not.
    #[serde(default)]
    pub duration_secs: Option<u32>,
}

impl VideoMeta {
    /// A video known by its id and title only.
    pub fn new(video_id: VideoId, title: impl Into<String>) -> Self {
        Self { video_id, title: title.into(), published_at: None, duration_secs: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Transcript {
    #[schema(value_type = String)]
    pub video_id: VideoId,
    pub source: TranscriptSource,
    pub language: Option<String>,
    pub text: String,
    pub segments: Vec<Segment>,
    /// The job that produced it (idempotency key with the video id).
    #[schema(value_type = String)]
    pub job_id: JobId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyPoint {
    pub text: String,
    /// Seconds from the start of the video, taken from a transcript segment.
    pub start: f64,
    /// A link to that moment, computed by tubesum.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    #[schema(value_type = String)]
    pub video_id: VideoId,
    pub summary: String,
    pub key_points: Vec<KeyPoint>,
    /// Which summarizer made it: `textrank` or `llm:<model>`.
    pub summarizer: String,
    #[schema(value_type = String)]
    pub job_id: JobId,
}

/// `https://www.youtube.com/watch?v={video_id}&t={seconds}s` — the moment link of a key point.
pub fn moment_url(video_id: &VideoId, start: f64) -> String {
    let seconds = start.max(0.0).floor() as u64;
    format!("https://www.youtube.com/watch?v={video_id}&t={seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_taken_as_ids_urls_or_handles() {
        let id = |s: &str| ChannelRef::Id(ChannelId::parse(s).unwrap());
        let handle = |s: &str| ChannelRef::Handle(s.to_owned());
        for (input, expected) in [
            (" UCabcdefghijklmnopqrstuv ", id("UCabcdefghijklmnopqrstuv")),
            ("https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv", id("UCabcdefghijklmnopqrstuv")),
            ("youtube.com/channel/UCabcdefghijklmnopqrstuv/videos?view=0", id("UCabcdefghijklmnopqrstuv")),
            ("http://m.youtube.com/channel/UC_-0123456789abcdefghij", id("UC_-0123456789abcdefghij")),
            ("@Some.Channel-1", handle("Some.Channel-1")),
            ("https://www.youtube.com/@veritasium/videos", handle("veritasium")),
            ("youtube.com/@abc", handle("abc")),
        ] {
            assert_eq!(ChannelRef::parse(input), Ok(expected), "{input:?}");
        }
        for bad in [
            "",
            "veritasium",
            "@ab",
            "@a-name-much-longer-than-thirty-chars",
            "https://example.com/channel/UCabcdefghijklmnopqrstuv",
            "https://www.youtube.com/channel/UCshort",
            "https://www.youtube.com/watch?v=abcdefghijk",
            "@bad name",
        ] {
            assert!(matches!(ChannelRef::parse(bad), Err(IdError::ChannelRef(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn channel_ids_are_validated() {
        assert!(ChannelId::parse("UCabcdefghijklmnopqrstuv").is_ok());
        assert!(ChannelId::parse("UC_-0123456789abcdefghij").is_ok());
        for bad in [
            "",
            "UC",
            "UCabcdefghijklmnopqrstu",
            "UCabcdefghijklmnopqrstuvw",
            "XXabcdefghijklmnopqrstuv",
            "UCabcdefghijklmnopqrst/v",
            "UCabcdefghijklmnopqrst v",
            "../../etc/passwd",
        ] {
            assert!(ChannelId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn video_ids_are_validated() {
        assert!(VideoId::parse("dQw4w9WgXcQ").is_ok());
        assert!(VideoId::parse("a-b_c-d_e-f").is_ok());
        for bad in ["", "dQw4w9WgXc", "dQw4w9WgXcQQ", "dQw4w9WgX;Q", "-- --rm -rf"] {
            assert!(VideoId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<VideoId>("\"dQw4w9WgXcQ\"").is_ok());
        assert!(serde_json::from_str::<VideoId>("\"nope\"").is_err());
    }

    #[test]
    fn text_enums_round_trip() {
        for s in VideoStatus::ALL {
            assert_eq!(s.as_str().parse::<VideoStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for s in TranscriptSource::ALL {
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Stage::AudioExtraction.queue_name(), "audio_extraction_queue");
        assert!("bogus".parse::<Stage>().is_err());
    }

    #[test]
    fn moment_urls_use_whole_seconds() {
        let id = VideoId::parse("dQw4w9WgXcQ").unwrap();
        assert_eq!(moment_url(&id, 61.9), "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=61s");
        assert_eq!(moment_url(&id, -1.0), "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=0s");
    }
}
