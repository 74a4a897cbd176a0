//! [`ArtifactStore`] on MongoDB: the production home of transcripts and summaries.
//!
//! Two collections, one document per video in each, unique on `video_id`:
//!
//! ```text
//! transcripts { video_id, job_id, source, language, text, segments: [{ start, end, text }], updated_at }
//! summaries   { video_id, job_id, summary, key_points: [{ text, start, url }], summarizer, updated_at }
//! ```
//!
//! A put replaces the video's document (an upsert), so puts are idempotent and the latest wins.
//! Puts and gets are batched across callers ([`batched`]): the ones queued behind a round trip go
//! in one command. Driver errors are translated here, once: duplicate key (code 11000) →
//! [`PortError::AlreadyExists`], no reachable server / network / timeouts →
//! [`PortError::Unavailable`], documents that do not decode → [`PortError::Corrupt`].
//!
//! MongoDB limits a document to 16 MiB, a transcript's text and segments together (a ten-hour
//! video's transcript is about 1 MiB); a put over the limit is refused before it is sent.

pub mod batched;
pub mod media;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{self, Document, RawDocument, RawDocumentBuf, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use self::batched::{AT_ONCE, Gets, Put, Puts, find_by_video};
use crate::adapters::group_commit::GroupCommit;
use crate::adapters::settings::redact_url;
use crate::domain::{JobId, KeyPoint, Segment, Summary, Transcript, TranscriptSource, VideoId};
use crate::ports::{ArtifactStore, PortError, PortResult};

/// How long `connect` waits for a server before giving up, unless the URL sets
/// `serverSelectionTimeoutMS` (raise it there for replica sets, whose elections take longer).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The collection of transcripts, one document per video.
pub const TRANSCRIPTS: &str = "transcripts";
/// The collection of summaries, one document per video.
pub const SUMMARIES: &str = "summaries";
const DUPLICATE_KEY: i32 = 11000;
/// MongoDB's `maxBsonObjectSize`.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
/// Server error codes that mean "not now" rather than "never": the node is unreachable, shutting
/// down, stepping down or not (yet) primary.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Transcripts and summaries in one MongoDB database. Cheap to clone (the driver's client and the
/// batching queues are shared).
#[derive(Clone)]
pub struct MongoArtifactStore {
    database: Database,
    summaries: Collection<RawDocumentBuf>,
    put_transcripts: Arc<GroupCommit<Put>>,
    put_summaries: Arc<GroupCommit<Put>>,
    get_transcripts: Arc<GroupCommit<VideoId, Option<Transcript>>>,
    get_summaries: Arc<GroupCommit<VideoId, Option<Summary>>>,
}

impl std::fmt::Debug for MongoArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoArtifactStore").field("database", &self.database.name()).finish_non_exhaustive()
    }
}

impl MongoArtifactStore {
    /// The database behind the store (tests inspect the stored documents through it).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Connects to `url`, checks a server answers, and creates the unique indexes (idempotent).
    ///
    /// Fails with [`PortError::Unavailable`] naming the URL (password redacted) when no server
    /// answers within a few seconds.
    pub async fn connect(url: &str, database: &str) -> PortResult<Self> {
        let at_url = |e: mongodb::error::Error| {
            classify(&e)(format!("mongodb at {}: {}", redact_url(url), scrub(&e.to_string(), url)))
        };
        let mut options = ClientOptions::parse(url).await.map_err(at_url)?;
        options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.app_name.get_or_insert_with(|| "tubesum".to_owned());
        let client = Client::with_options(options).map_err(at_url)?;
        let database = client.database(database);
        database.run_command(doc! { "ping": 1 }).await.map_err(at_url)?;

        for collection in [TRANSCRIPTS, SUMMARIES] {
            create_unique_video_index(&database, collection).await?;
        }
        let puts = |name| Puts { database: database.clone(), collection: database.collection(name) };
        Ok(Self {
            put_transcripts: Arc::new(GroupCommit::start(puts(TRANSCRIPTS), AT_ONCE)),
            put_summaries: Arc::new(GroupCommit::start(puts(SUMMARIES), AT_ONCE)),
            get_transcripts: Arc::new(GroupCommit::start(
                Gets { collection: database.collection(TRANSCRIPTS), decode: transcript_of },
                AT_ONCE,
            )),
            get_summaries: Arc::new(GroupCommit::start(
                Gets { collection: database.collection(SUMMARIES), decode: summary_of },
                AT_ONCE,
            )),
            summaries: database.collection(SUMMARIES),
            database,
        })
    }
}

async fn create_unique_video_index(database: &Database, collection: &str) -> PortResult<()> {
    let index = IndexModel::builder()
        .keys(doc! { "video_id": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    database.collection::<Document>(collection).create_index(index).await.map(drop).map_err(|e| match translate(e) {
        unavailable @ PortError::Unavailable(_) => unavailable,
        // Existing documents that share a video id make the index impossible: say where.
        other => PortError::Other(format!("creating the unique video_id index on {collection}: {other}")),
    })
}

#[async_trait]
impl ArtifactStore for MongoArtifactStore {
    async fn put_transcript(&self, t: &Transcript) -> PortResult<()> {
        let document = encode("transcript", &t.video_id, &TranscriptDoc::new(t))?;
        self.put_transcripts.submit(Put { video_id: t.video_id.clone(), document }).await
    }

    async fn get_transcript(&self, video_id: &VideoId) -> PortResult<Option<Transcript>> {
        self.get_transcripts.submit(video_id.clone()).await
    }

    async fn put_summary(&self, s: &Summary) -> PortResult<()> {
        let document = SummaryDoc {
            video_id: s.video_id.as_str(),
            job_id: s.job_id.to_string(),
            summary: &s.summary,
            key_points: &s.key_points,
            summarizer: &s.summarizer,
            updated_at: bson::DateTime::now(),
        };
        let document = encode("summary", &s.video_id, &document)?;
        self.put_summaries.submit(Put { video_id: s.video_id.clone(), document }).await
    }

    async fn get_summary(&self, video_id: &VideoId) -> PortResult<Option<Summary>> {
        self.get_summaries.submit(video_id.clone()).await
    }

    async fn summarized(&self, video_ids: &[VideoId]) -> PortResult<HashSet<VideoId>> {
        let mut summarized = HashSet::new();
        for chunk in video_ids.chunks(IDS_PER_QUERY) {
            let ids = chunk.iter().map(VideoId::as_str).collect();
            let found = find_by_video(&self.summaries, ids, Some(doc! { "_id": 0, "video_id": 1 })).await?;
            summarized.extend(chunk.iter().filter(|id| found.contains_key(id.as_str())).cloned());
        }
        Ok(summarized)
    }
}

/// Video ids in one `$in` query at most (a 16 MiB command would hold far more).
const IDS_PER_QUERY: usize = 1_000;

fn transcript_of(raw: &RawDocument) -> PortResult<Transcript> {
    let stored: StoredTranscript = decode("transcript", raw)?;
    Ok(Transcript {
        video_id: stored.video_id,
        source: stored.source,
        language: stored.language,
        text: stored.text,
        segments: stored.segments,
        job_id: parse_job_id(&stored.job_id)?,
    })
}

fn summary_of(raw: &RawDocument) -> PortResult<Summary> {
    let stored: StoredSummary = decode("summary", raw)?;
    Ok(Summary {
        video_id: stored.video_id,
        summary: stored.summary,
        key_points: stored.key_points,
        summarizer: stored.summarizer,
        job_id: parse_job_id(&stored.job_id)?,
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, raw: &RawDocument) -> PortResult<T> {
    bson::from_slice(raw.as_bytes()).map_err(|e| PortError::Corrupt(format!("{what} document: {e}")))
}

/// A transcript as written (borrows the transcript: a multi-megabyte text is not copied).
#[derive(Serialize)]
struct TranscriptDoc<'a> {
    video_id: &'a str,
    /// The UUID as text, as the other stores keep it.
    job_id: String,
    source: TranscriptSource,
    language: Option<&'a str>,
    text: &'a str,
    segments: &'a [Segment],
    updated_at: bson::DateTime,
}

impl<'a> TranscriptDoc<'a> {
    fn new(t: &'a Transcript) -> Self {
        Self {
            video_id: t.video_id.as_str(),
            job_id: t.job_id.to_string(),
            source: t.source,
            language: t.language.as_deref(),
            text: &t.text,
            segments: &t.segments,
            updated_at: bson::DateTime::now(),
        }
    }
}

/// A transcript as read back; decoding validates the video id and the source.
#[derive(Debug, Deserialize)]
struct StoredTranscript {
    video_id: VideoId,
    job_id: String,
    source: TranscriptSource,
    language: Option<String>,
    text: String,
    segments: Vec<Segment>,
}

#[derive(Serialize)]
struct SummaryDoc<'a> {
    video_id: &'a str,
    job_id: String,
    summary: &'a str,
    key_points: &'a [KeyPoint],
    summarizer: &'a str,
    updated_at: bson::DateTime,
}

#[derive(Debug, Deserialize)]
struct StoredSummary {
    video_id: VideoId,
    job_id: String,
    summary: String,
    key_points: Vec<KeyPoint>,
    summarizer: String,
}

fn by_video(video_id: &VideoId) -> Document {
    doc! { "video_id": video_id.as_str() }
}

/// Encodes a document, refusing one MongoDB would reject for its size.
fn encode(what: &str, video_id: &VideoId, document: &impl Serialize) -> PortResult<RawDocumentBuf> {
    let raw = bson::to_raw_document_buf(document).map_err(|e| PortError::Other(format!("encoding {what}: {e}")))?;
    let size = raw.as_bytes().len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(PortError::Other(format!(
            "{what} of video {video_id} is {size} bytes, over MongoDB's {MAX_DOCUMENT_BYTES}-byte document limit"
        )));
    }
    Ok(raw)
}

/// Replaces the video's document, inserting it if there is none.
async fn upsert(
    collection: &Collection<RawDocumentBuf>,
    video_id: &VideoId,
    document: &RawDocumentBuf,
) -> PortResult<()> {
    let put = || collection.replace_one(by_video(video_id), document).upsert(true);
    match put().await {
        Ok(_) => Ok(()),
        // Two first puts of one video can race: both miss, both insert, the unique index rejects
        // one. The document exists now, so a second try replaces it.
        Err(e) if duplicate_key(&e) => put().await.map(drop).map_err(translate),
        Err(e) => Err(translate(e)),
    }
}

fn parse_job_id(raw: &str) -> PortResult<JobId> {
    raw.parse().map_err(|e| PortError::Corrupt(format!("job id {raw:?}: {e}")))
}

/// The server's error code, wherever the driver put it.
fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first().map(|w| w.code))
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

fn duplicate_key(e: &mongodb::error::Error) -> bool {
    server_code(e) == Some(DUPLICATE_KEY)
}

/// Translates a driver error into the port's terms.
/// The port error a driver error means (duplicate key → `AlreadyExists`, no server → `Unavailable`).
pub fn translate(e: mongodb::error::Error) -> PortError {
    classify(&e)(e.to_string())
}

/// The port's error for a driver error, decided by kind and server code, never by message.
fn classify(e: &mongodb::error::Error) -> fn(String) -> PortError {
    if duplicate_key(e) {
        return PortError::AlreadyExists;
    }
    if server_code(e).is_some_and(|code| TRANSIENT_CODES.contains(&code)) {
        return PortError::Unavailable;
    }
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => PortError::Unavailable,
        ErrorKind::BsonDeserialization(_) => PortError::Corrupt,
        _ => PortError::Other,
    }
}

/// Removes the URL's password from a driver message, in case the driver echoed it.
fn scrub(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => message.replace(password, "***"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_password() {
        assert_eq!(scrub("auth failed for a:pw@h", "mongodb://a:pw@h/"), "auth failed for a:***@h");
        assert_eq!(scrub("no password", "mongodb://h/"), "no password");
    }
}
