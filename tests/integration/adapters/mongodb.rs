//! The MongoDB artifact store against the local MongoDB-protocol server (`MONGODB_TEST_URL`, default
//! `mongodb://127.0.0.1:27017/?directConnection=true`; `scripts/services.sh` starts one). Each test
//! uses a database of its own.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use tubesum::adapters::mongodb::{MAX_DOCUMENT_BYTES, MongoArtifactStore, SUMMARIES, TRANSCRIPTS, translate};
use tubesum::domain::{JobId, Segment, Summary, Transcript, TranscriptSource, VideoId};
use tubesum::ports::{ArtifactStore, PortError, conformance};

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
    store.database().drop().await.expect("drop the test database");
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
    store.put_transcript(&transcript).await.unwrap();
    let raw = store.database().collection::<Document>(TRANSCRIPTS);
    let stored = raw.find_one(doc! { "video_id": "tenmegabyte" }).await.unwrap().expect("stored");
    let size = mongodb::bson::to_vec(&stored).unwrap().len();
    assert!((10 << 20..16 << 20).contains(&size), "document is {size} bytes");
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
    let raw = store.database().collection::<Document>(TRANSCRIPTS);
    let stored = raw.find_one(doc! { "video_id": id.as_str() }).await.unwrap().expect("stored");
    assert_eq!(stored.get_str("source").unwrap(), "captions");
    assert_eq!(stored.get_str("job_id").unwrap(), transcript.job_id.to_string());
    let segment = stored.get_array("segments").unwrap()[0].as_document().expect("a sub-document");
    assert_eq!(segment.get_f64("end").unwrap(), 1.5);
    assert!(stored.get_datetime("updated_at").is_ok());

    for collection in [TRANSCRIPTS, SUMMARIES] {
        let indexes: Vec<IndexModel> = store
            .database()
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
    assert!(matches!(translate(e), PortError::AlreadyExists(_)));
    let summaries = store.database().collection::<Document>(SUMMARIES);
    summaries.insert_one(doc! { "video_id": id.as_str() }).await.unwrap();
    let e = summaries.insert_one(doc! { "video_id": id.as_str() }).await.expect_err("duplicate accepted");
    assert!(matches!(translate(e), PortError::AlreadyExists(_)));
    drop_database(store).await;
}

#[tokio::test]
async fn undecodable_documents_are_corrupt() {
    let store = fresh_store().await;
    let raw = store.database().collection::<Document>(SUMMARIES);
    raw.insert_one(doc! { "video_id": "corruptdocs", "job_id": "not a uuid", "summary": "s",
    "key_points": [], "summarizer": "textrank" })
        .await
        .unwrap();
    let e = store.get_summary(&video("corruptdocs")).await.expect_err("bad job id accepted");
    assert!(matches!(e, PortError::Corrupt(_)), "{e:?}");
    raw.insert_one(doc! { "video_id": "missingkeys" }).await.unwrap();
    let e = store.get_summary(&video("missingkeys")).await.expect_err("missing fields accepted");
    assert!(matches!(e, PortError::Corrupt(_)), "{e:?}");
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
    let PortError::Unavailable(message) = &e else { panic!("expected unavailable, got {e:?}") };
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
    let PortError::Other(message) = &e else { panic!("expected other, got {e:?}") };
    assert!(message.contains("oversizeddd") && message.contains("document limit"), "{message}");
    assert!(store.get_transcript(&transcript.video_id).await.unwrap().is_none());
    drop_database(store).await;
}

/// Two processes' stores (two clients) put a video's first summary at once: one insert loses the
/// race to the unique index, inside a batched command or alone, and is written again.
#[tokio::test]
async fn concurrent_first_puts_of_a_video_all_succeed() {
    let store = fresh_store().await;
    let other = MongoArtifactStore::connect(&test_url(), store.database().name()).await.unwrap();
    let puts = (0..16).map(|i| {
        let store = if i % 2 == 0 { store.clone() } else { other.clone() };
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

/// Puts queued together whose documents add up to more than a command may hold (16 MiB) go in
/// several commands, and every one lands.
#[tokio::test]
async fn puts_too_big_for_one_command_together_all_land() {
    let store = fresh_store().await;
    let transcript = |i: usize| Transcript {
        video_id: video(&format!("bigbatch{i:03}")),
        source: TranscriptSource::Whisper,
        language: Some("en".into()),
        text: format!("{i} {}", "three megabytes of speech ".repeat(120_000)),
        segments: vec![],
        job_id: JobId::new(),
    };
    let transcripts: Vec<Transcript> = (0..12).map(transcript).collect();
    let puts = transcripts.iter().map(|t| store.put_transcript(t));
    for put in futures::future::join_all(puts).await {
        put.expect("a large transcript in a batch");
    }
    let gets = transcripts.iter().map(|t| store.get_transcript(&t.video_id));
    for (t, got) in transcripts.iter().zip(futures::future::join_all(gets).await) {
        assert_eq!(got.unwrap().as_ref(), Some(t));
    }
    drop_database(store).await;
}

/// A URL's write concern goes with the batched commands too (the driver adds it only to its own).
#[tokio::test]
async fn a_write_concern_in_the_url_is_sent_with_batched_puts() {
    let url = test_url();
    let name = format!("tubesum_test_{}", uuid::Uuid::new_v4().simple());
    let with_concern = format!("{url}{}w=1&journal=true", if url.contains('?') { '&' } else { '?' });
    let store = MongoArtifactStore::connect(&with_concern, &name).await.unwrap();
    conformance::artifact_store(&store).await;
    drop_database(store).await;
}

/// Two rustls crypto providers are in the tree (ring from here, aws-lc-rs from reqwest), so rustls
/// has no process default; the driver must bring its own instead of panicking.
#[tokio::test]
async fn tls_needs_no_process_wide_crypto_provider() {
    let url = test_url();
    let tls = format!("{url}{}tls=true", if url.contains('?') { '&' } else { '?' });
    let result = MongoArtifactStore::connect(&tls, "tubesum_tls").await;
    assert!(matches!(result, Err(PortError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn malformed_urls_are_not_reported_as_unavailable() {
    let e = MongoArtifactStore::connect("mongodb://u:pw-secret@127.0.0.1:notaport/", "tubesum").await.unwrap_err();
    let PortError::Other(message) = &e else { panic!("expected other, got {e:?}") };
    assert!(message.contains("mongodb://u:***@127.0.0.1:notaport/") && !message.contains("pw-secret"), "{message}");
}

#[tokio::test]
async fn mongo_media_store_conforms() {
    let store = fresh_store().await;
    let media = tubesum::adapters::mongodb::media::MongoMediaStore::new(store.database()).await.unwrap();
    conformance::media_store(&media).await;
    drop_database(store).await;
}
