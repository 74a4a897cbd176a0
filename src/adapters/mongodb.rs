//! [`ArtifactStore`] on MongoDB: the production home of transcripts and summaries.
//!
//! Two collections, one document per video in each, unique on `video_id`:
//!
//! ```text
//! transcripts { video_id, job_id, source, language, text, segments: [{ start, end, text }], updated_at }
//! summaries   { video_id, job_id, summary, key_points: [{ text, start, url }], summarizer, updated_at }
//! ```
//!
//! A put replaces the video's document (`replace_one` with upsert), so puts are idempotent and the
//! latest wins. Driver errors are translated here, once: duplicate key (code 11000) →
//! [`AdapterError::AlreadyExists`], no reachable server / network / timeouts →
//! [`AdapterError::Unavailable`], documents that do not decode → [`AdapterError::Corrupt`].
//!
//! MongoDB limits a document to 16 MiB, a transcript's text and segments together (a ten-hour
//! video's transcript is about 1 MiB); a put over the limit is refused before it is sent.

use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{self, Document, RawDocumentBuf, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{AdapterError, AdapterResult, ArtifactStore};
use crate::config::redact_url;
use crate::domain::{JobId, KeyPoint, Segment, Summary, Transcript, TranscriptSource, VideoId};

/// How long `connect` waits for a server before giving up, unless the URL sets
/// `serverSelectionTimeoutMS` (raise it there for replica sets, whose elections take longer).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
const TRANSCRIPTS: &str = "transcripts";
const SUMMARIES: &str = "summaries";
const DUPLICATE_KEY: i32 = 11000;
/// MongoDB's `maxBsonObjectSize`.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;
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

/// Transcripts and summaries in one MongoDB database. Cheap to clone (the driver's client is shared).
#[derive(Debug, Clone)]
pub struct MongoArtifactStore {
    database: Database,
    transcripts: Collection<StoredTranscript>,
    summaries: Collection<StoredSummary>,
}

impl MongoArtifactStore {
    /// Connects to `url`, checks a server answers, and creates the unique indexes (idempotent).
    ///
    /// Fails with [`AdapterError::Unavailable`] naming the URL (password redacted) when no server
    /// answers within a few seconds.
    pub async fn connect(url: &str, database: &str) -> AdapterResult<Self> {
        let at_url = |e: mongodb::error::Error| {
            classify(&e)(format!("mongodb at {}: {}", redact_url(url), scrub(&e.to_string(), url)))
        };
        let mut options = ClientOptions::parse(url).await.map_err(at_url)?;
        options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.app_name.get_or_insert_with(|| "tubesum".to_owned());
        let client = Client::with_options(options).map_err(at_url)?;
        let database = client.database(database);
        database.run_command(doc! { "ping": 1 }).await.map_err(at_url)?;

        let store =
            Self { transcripts: database.collection(TRANSCRIPTS), summaries: database.collection(SUMMARIES), database };
        for collection in [TRANSCRIPTS, SUMMARIES] {
            store.create_unique_video_index(collection).await?;
        }
        Ok(store)
    }

    async fn create_unique_video_index(&self, collection: &str) -> AdapterResult<()> {
        let index = IndexModel::builder()
            .keys(doc! { "video_id": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build();
        self.database.collection::<Document>(collection).create_index(index).await.map(drop).map_err(|e| {
            match translate(e) {
                unavailable @ AdapterError::Unavailable(_) => unavailable,
                // Existing documents that share a video id make the index impossible: say where.
                other => AdapterError::Other(format!("creating the unique video_id index on {collection}: {other}")),
            }
        })
    }
}

#[async_trait]
impl ArtifactStore for MongoArtifactStore {
    async fn put_transcript(&self, t: &Transcript) -> AdapterResult<()> {
        let document = encode("transcript", &t.video_id, &TranscriptDoc::new(t))?;
        upsert(&self.transcripts.clone_with_type(), &t.video_id, &document).await
    }

    async fn get_transcript(&self, video_id: &VideoId) -> AdapterResult<Option<Transcript>> {
        let Some(stored) = self.transcripts.find_one(by_video(video_id)).await.map_err(translate)? else {
            return Ok(None);
        };
        Ok(Some(Transcript {
            video_id: stored.video_id,
            source: stored.source,
            language: stored.language,
            text: stored.text,
            segments: stored.segments,
            job_id: parse_job_id(&stored.job_id)?,
        }))
    }

    async fn put_summary(&self, s: &Summary) -> AdapterResult<()> {
        let document = SummaryDoc {
            video_id: s.video_id.as_str(),
            job_id: s.job_id.to_string(),
            summary: &s.summary,
            key_points: &s.key_points,
            summarizer: &s.summarizer,
            updated_at: bson::DateTime::now(),
        };
        let document = encode("summary", &s.video_id, &document)?;
        upsert(&self.summaries.clone_with_type(), &s.video_id, &document).await
    }

    async fn get_summary(&self, video_id: &VideoId) -> AdapterResult<Option<Summary>> {
        let Some(stored) = self.summaries.find_one(by_video(video_id)).await.map_err(translate)? else {
            return Ok(None);
        };
        Ok(Some(Summary {
            video_id: stored.video_id,
            summary: stored.summary,
            key_points: stored.key_points,
            summarizer: stored.summarizer,
            job_id: parse_job_id(&stored.job_id)?,
        }))
    }
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
fn encode(what: &str, video_id: &VideoId, document: &impl Serialize) -> AdapterResult<RawDocumentBuf> {
    let raw = bson::to_raw_document_buf(document).map_err(|e| AdapterError::Other(format!("encoding {what}: {e}")))?;
    let size = raw.as_bytes().len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(AdapterError::Other(format!(
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
) -> AdapterResult<()> {
    let put = || collection.replace_one(by_video(video_id), document).upsert(true);
    match put().await {
        Ok(_) => Ok(()),
        // Two first puts of one video can race: both miss, both insert, the unique index rejects
        // one. The document exists now, so a second try replaces it.
        Err(e) if duplicate_key(&e) => put().await.map(drop).map_err(translate),
        Err(e) => Err(translate(e)),
    }
}

fn parse_job_id(raw: &str) -> AdapterResult<JobId> {
    raw.parse().map_err(|e| AdapterError::Corrupt(format!("job id {raw:?}: {e}")))
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
fn translate(e: mongodb::error::Error) -> AdapterError {
    classify(&e)(e.to_string())
}

/// The port's error for a driver error, decided by kind and server code, never by message.
fn classify(e: &mongodb::error::Error) -> fn(String) -> AdapterError {
    if duplicate_key(e) {
        return AdapterError::AlreadyExists;
    }
    if server_code(e).is_some_and(|code| TRANSIENT_CODES.contains(&code)) {
        return AdapterError::Unavailable;
    }
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => AdapterError::Unavailable,
        ErrorKind::BsonDeserialization(_) => AdapterError::Corrupt,
        _ => AdapterError::Other,
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
    use std::time::Instant;

    use futures::TryStreamExt;

    use super::*;
    use crate::adapters::conformance;

    /// The MongoDB-protocol server the tests talk to; `scripts/services.sh` starts one here.
    fn test_url() -> String {
        std::env::var("MONGODB_TEST_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into())
    }

    /// A store on a fresh database of its own; fails the test when no server answers.
    async fn fresh_store() -> MongoArtifactStore {
        let url = test_url();
        let name = format!("tubesum_test_{}", uuid::Uuid::new_v4().simple());
        MongoArtifactStore::connect(&url, &name)
            .await
            .unwrap_or_else(|e| panic!("no MongoDB test server: {e} (start one with scripts/services.sh)"))
    }

    async fn drop_database(store: MongoArtifactStore) {
        store.database.drop().await.expect("drop the test database");
    }

    fn video(id: &str) -> VideoId {
        VideoId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn mongo_artifact_store_conforms() {
        let store = fresh_store().await;
        conformance::artifact_store(&store).await;
        drop_database(store).await;
    }

    #[tokio::test]
    async fn ten_megabyte_transcript_round_trips() {
        let store = fresh_store().await;
        let segments: Vec<Segment> = (0..50_000)
            .map(|i| Segment {
                start: f64::from(i) * 2.0,
                end: f64::from(i) * 2.0 + 1.75,
                text: format!("{i:06} {}", "ünïcode speech, ".repeat(6)),
            })
            .collect();
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        let transcript = Transcript {
            video_id: video("tenmegabyte"),
            source: TranscriptSource::Whisper,
            language: Some("en".into()),
            text,
            segments,
            job_id: JobId::new(),
        };
        let size =
            encode("transcript", &transcript.video_id, &TranscriptDoc::new(&transcript)).unwrap().as_bytes().len();
        assert!((10 << 20..16 << 20).contains(&size), "document is {size} bytes");

        store.put_transcript(&transcript).await.unwrap();
        assert_eq!(store.get_transcript(&transcript.video_id).await.unwrap(), Some(transcript));
        drop_database(store).await;
    }

    #[tokio::test]
    async fn documents_are_bson_with_a_unique_video_id() {
        let store = fresh_store().await;
        let id = video("uniqueindex");
        let transcript = Transcript {
            video_id: id.clone(),
            source: TranscriptSource::Captions,
            language: None,
            text: "hello there".into(),
            segments: vec![Segment { start: 0.0, end: 1.5, text: "hello there".into() }],
            job_id: JobId::new(),
        };
        store.put_transcript(&transcript).await.unwrap();

        // Stored as a real document: fields, an array of sub-documents, a date.
        let raw = store.database.collection::<Document>(TRANSCRIPTS);
        let stored = raw.find_one(by_video(&id)).await.unwrap().expect("stored");
        assert_eq!(stored.get_str("source").unwrap(), "captions");
        assert_eq!(stored.get_str("job_id").unwrap(), transcript.job_id.to_string());
        let segment = stored.get_array("segments").unwrap()[0].as_document().expect("a sub-document");
        assert_eq!(segment.get_f64("end").unwrap(), 1.5);
        assert!(stored.get_datetime("updated_at").is_ok());

        for collection in [TRANSCRIPTS, SUMMARIES] {
            let indexes: Vec<IndexModel> = store
                .database
                .collection::<Document>(collection)
                .list_indexes()
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let unique_video_id = |i: &IndexModel| {
                i.keys == doc! { "video_id": 1 } && i.options.as_ref().and_then(|o| o.unique) == Some(true)
            };
            assert!(indexes.iter().any(unique_video_id), "{collection} indexes: {indexes:?}");
        }

        // The index itself rejects a second document for the video, as code 11000.
        let mut duplicate = stored.clone();
        duplicate.remove("_id");
        let e = raw.insert_one(duplicate).await.expect_err("duplicate video_id accepted");
        assert_eq!(server_code(&e), Some(DUPLICATE_KEY), "{e}");
        assert!(matches!(translate(e), AdapterError::AlreadyExists(_)));
        let summaries = store.database.collection::<Document>(SUMMARIES);
        summaries.insert_one(doc! { "video_id": id.as_str() }).await.unwrap();
        let e = summaries.insert_one(doc! { "video_id": id.as_str() }).await.expect_err("duplicate accepted");
        assert!(matches!(translate(e), AdapterError::AlreadyExists(_)));
        drop_database(store).await;
    }

    #[tokio::test]
    async fn undecodable_documents_are_corrupt() {
        let store = fresh_store().await;
        let raw = store.database.collection::<Document>(SUMMARIES);
        raw.insert_one(doc! { "video_id": "corruptdocs", "job_id": "not a uuid", "summary": "s",
        "key_points": [], "summarizer": "textrank" })
            .await
            .unwrap();
        let e = store.get_summary(&video("corruptdocs")).await.expect_err("bad job id accepted");
        assert!(matches!(e, AdapterError::Corrupt(_)), "{e:?}");
        raw.insert_one(doc! { "video_id": "missingkeys" }).await.unwrap();
        let e = store.get_summary(&video("missingkeys")).await.expect_err("missing fields accepted");
        assert!(matches!(e, AdapterError::Corrupt(_)), "{e:?}");
        drop_database(store).await;
    }

    #[tokio::test]
    async fn connecting_to_a_closed_port_fails_fast_with_the_password_redacted() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("mongodb://tubesum:s3cr3t-pw@127.0.0.1:{port}/?directConnection=true");
        let started = Instant::now();
        let e = MongoArtifactStore::connect(&url, "tubesum_unreachable").await.expect_err("connected to nothing");
        assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
        let AdapterError::Unavailable(message) = &e else { panic!("expected unavailable, got {e:?}") };
        assert!(message.contains(&format!("mongodb://tubesum:***@127.0.0.1:{port}/")), "{message}");
        assert!(!message.contains("s3cr3t-pw"), "{message}");
    }

    #[tokio::test]
    async fn transcripts_over_the_document_limit_are_refused() {
        let store = fresh_store().await;
        let transcript = Transcript {
            video_id: video("oversizeddd"),
            source: TranscriptSource::Whisper,
            language: None,
            text: "x".repeat(MAX_DOCUMENT_BYTES),
            segments: vec![],
            job_id: JobId::new(),
        };
        let e = store.put_transcript(&transcript).await.expect_err("oversized transcript accepted");
        let AdapterError::Other(message) = &e else { panic!("expected other, got {e:?}") };
        assert!(message.contains("oversizeddd") && message.contains("document limit"), "{message}");
        assert!(store.get_transcript(&transcript.video_id).await.unwrap().is_none());
        drop_database(store).await;
    }

    #[tokio::test]
    async fn concurrent_first_puts_of_a_video_all_succeed() {
        let store = fresh_store().await;
        let puts = (0..8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let summary = Summary {
                    video_id: video("racingputss"),
                    summary: format!("version {i}"),
                    key_points: vec![],
                    summarizer: "textrank".into(),
                    job_id: JobId::new(),
                };
                store.put_summary(&summary).await
            })
        });
        for put in futures::future::join_all(puts).await {
            put.unwrap().unwrap();
        }
        let stored = store.get_summary(&video("racingputss")).await.unwrap().expect("one summary");
        assert!(stored.summary.starts_with("version "));
        drop_database(store).await;
    }

    /// Two rustls crypto providers are in the tree (ring from here, aws-lc-rs from reqwest), so rustls
    /// has no process default; the driver must bring its own instead of panicking.
    #[tokio::test]
    async fn tls_needs_no_process_wide_crypto_provider() {
        let url = test_url();
        let tls = format!("{url}{}tls=true", if url.contains('?') { '&' } else { '?' });
        let result = MongoArtifactStore::connect(&tls, "tubesum_tls").await;
        assert!(matches!(result, Err(AdapterError::Unavailable(_))), "{result:?}");
    }

    #[tokio::test]
    async fn malformed_urls_are_not_reported_as_unavailable() {
        let e = MongoArtifactStore::connect("mongodb://u:pw-secret@127.0.0.1:notaport/", "tubesum").await.unwrap_err();
        let AdapterError::Other(message) = &e else { panic!("expected other, got {e:?}") };
        assert!(message.contains("mongodb://u:***@127.0.0.1:notaport/") && !message.contains("pw-secret"), "{message}");
    }

    #[test]
    fn scrub_removes_the_password() {
        assert_eq!(scrub("auth failed for a:pw@h", "mongodb://a:pw@h/"), "auth failed for a:***@h");
        assert_eq!(scrub("no password", "mongodb://h/"), "no password");
    }
}
