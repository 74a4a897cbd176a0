//! Production mode end to end: PostgreSQL, MongoDB (nx-27017), RabbitMQ and Kafka (Tansu), all
//! real local servers, each test isolated by its own database names, queue prefix, exchange and
//! topic prefix.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tubesum::adapters::kafka::KafkaEventBus;
use tubesum::adapters::mongodb::MongoArtifactStore;
use tubesum::adapters::postgres::testing::TestDatabase;
use tubesum::adapters::rabbitmq::RabbitEventBus;
use tubesum::adapters::settings::{AmqpSettings, KafkaSettings};
use tubesum::domain::VideoId;
use tubesum::ports::EventBus;
use youtube_standin::Segment;
use youtube_standin::media::{self, Container};
use youtube_standin::{StandIn, StandInChannel, StandInVideo};

use std::sync::Arc;

use tokio::sync::Semaphore;
use tubesum::cli::bench::noop;
use tubesum::domain::Stage;

use crate::delivery::Gated;
use crate::helpers::{Seen, TestApp, collect, metas, model_env, poll_until};

const CHANNEL: &str = "UCproductionproductionpr";
pub(crate) const FIVE: [&str; 5] =
    ["video_discovered", "video_downloaded", "audio_extracted", "transcription_completed", "summarization_completed"];

/// Every video of the job got each of the five events, each under one event id (redeliveries of
/// the same id are what consumers deduplicate).
pub(crate) async fn each_event_once(seen: &Seen, job_id: &str, ids: &[&str]) {
    let complete = || {
        let events = seen.lock().unwrap();
        let mut per: HashMap<(String, String), HashSet<uuid::Uuid>> = HashMap::new();
        for e in events.iter().filter(|e| e.job_id.to_string() == job_id) {
            let video = e.video_id.as_ref().map(ToString::to_string).unwrap_or_default();
            per.entry((e.payload.kind().to_owned(), video)).or_default().insert(e.event_id);
        }
        per
    };
    let arrived = poll_until(Duration::from_secs(90), || async {
        let per = complete();
        ids.iter().all(|id| FIVE.iter().all(|k| per.contains_key(&((*k).to_owned(), (*id).to_owned()))))
    })
    .await;
    let per = complete();
    assert!(arrived, "events missing: {:?}", per.keys().collect::<Vec<_>>());
    let dupes: Vec<_> = per.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(dupes.is_empty(), "one event reported under several ids: {dupes:?}");
}

/// Event ids seen for a job, and how many times each.
pub(crate) fn ids_seen(seen: &Seen, job_id: &str) -> HashMap<uuid::Uuid, (String, usize)> {
    let mut ids: HashMap<uuid::Uuid, (String, usize)> = HashMap::new();
    for e in seen.lock().unwrap().iter().filter(|e| e.job_id.to_string() == job_id) {
        ids.entry(e.event_id).or_insert_with(|| (e.payload.kind().to_owned(), 0)).1 += 1;
    }
    ids
}

/// `env` for one node of a cluster on 127.0.0.1: its name, and a free port to listen on.
pub(crate) fn cluster_node(env: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    let mut env = env.to_vec();
    env.extend([
        ("TUBESUM_CLUSTER__NODE_NAME", name.to_owned()),
        ("TUBESUM_CLUSTER__LISTEN", format!("127.0.0.1:{}", crate::helpers::free_port())),
    ]);
    env
}

/// Independent observers on both event channels: the RabbitMQ fanout and Kafka (`group`).
pub(crate) struct Observers {
    pub(crate) on_fanout: Seen,
    pub(crate) on_kafka: Seen,
    _tasks: [tokio_util::task::AbortOnDropHandle<()>; 2],
}

impl Observers {
    pub(crate) async fn start(iso: &Isolation, group: &str) -> Observers {
        let fanout = RabbitEventBus::connect(&iso.amqp, &iso.amqp.events_exchange).await.unwrap();
        let (on_fanout, fanout_task) = collect(fanout.subscribe().await.unwrap());
        let kafka = KafkaEventBus::connect(&iso.kafka).await.unwrap();
        let (on_kafka, kafka_task) = collect(kafka.consume(group).await.unwrap());
        Observers { on_fanout, on_kafka, _tasks: [fanout_task, kafka_task] }
    }

    /// Each stage result of every video under one event id and one job_finished, on both; on
    /// Kafka each id once. (On the fanout an id may arrive twice: a new owner asks again for a
    /// result the old one never took, and it is routed again under the same id.)
    pub(crate) async fn each_result_once(&self, job_id: &str, ids: &[&str]) {
        for (name, seen) in [("fanout", &self.on_fanout), ("kafka", &self.on_kafka)] {
            each_event_once(seen, job_id, ids).await;
            let finished = ids_seen(seen, job_id).values().filter(|(kind, _)| kind == "job_finished").count();
            assert_eq!(finished, 1, "{name}: one job_finished id");
        }
        let twice: Vec<_> = ids_seen(&self.on_kafka, job_id).into_iter().filter(|(_, (_, n))| *n > 1).collect();
        assert!(twice.is_empty(), "kafka: event ids seen more than once: {twice:?}");
    }
}

pub(crate) struct Isolation {
    pub(crate) db: TestDatabase,
    pub(crate) mongo_db: String,
    pub(crate) amqp: AmqpSettings,
    pub(crate) kafka: KafkaSettings,
}

impl Isolation {
    pub(crate) async fn new() -> Isolation {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let amqp_url =
            std::env::var("AMQP_TEST_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        Isolation {
            db: TestDatabase::create().await,
            mongo_db: format!("tubesum_test_{tag}"),
            amqp: AmqpSettings {
                url: amqp_url.into(),
                retry_delay_ms: 200,
                max_deliveries: 5,
                events_exchange: format!("tubesum.events.{tag}"),
                queue_prefix: format!("t{tag}."),
            },
            kafka: KafkaSettings {
                brokers: std::env::var("KAFKA_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
                topic_prefix: format!("t{tag}_"),
            },
        }
    }

    /// [`Isolation::env`] with YouTube at `standin`, the test's Whisper models and yt-dlp.
    pub(crate) fn env_for(&self, standin: &StandIn) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        env.extend([
            ("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()),
            ("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template()),
            ("TUBESUM_DOWNLOAD__YT_DLP", crate::helpers::yt_dlp().display().to_string()),
        ]);
        env.extend(model_env());
        env
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        use secrecy::ExposeSecret;
        vec![
            ("TUBESUM_BACKENDS", "production".into()),
            ("TUBESUM_DATABASE__URL", self.db.settings.url.expose_secret().to_owned()),
            ("TUBESUM_MONGODB__URL", mongo_url()),
            ("TUBESUM_MONGODB__DATABASE", self.mongo_db.clone()),
            ("TUBESUM_AMQP__URL", self.amqp.url.expose_secret().to_owned()),
            ("TUBESUM_AMQP__EVENTS_EXCHANGE", self.amqp.events_exchange.clone()),
            ("TUBESUM_AMQP__QUEUE_PREFIX", self.amqp.queue_prefix.clone()),
            ("TUBESUM_AMQP__RETRY_DELAY_MS", "200".into()),
            ("TUBESUM_KAFKA__BROKERS", self.kafka.brokers.clone()),
            ("TUBESUM_KAFKA__TOPIC_PREFIX", self.kafka.topic_prefix.clone()),
        ]
    }
}

/// The stand-in serving channel `channel`, whose videos `ids` are each `seconds` of silence; the
/// directory holding the media lives as long as the stand-in is needed.
pub(crate) async fn quiet_channel(channel: &str, ids: &[&str], seconds: f32) -> (StandIn, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.m4a");
    media::silence(seconds, &quiet).await.unwrap();
    let mut listed = StandInChannel::new(channel, "Quiet");
    for &id in ids {
        listed = listed.video(StandInVideo::new(id, id).media(&quiet, Container::M4a.content_type()));
    }
    (StandIn::start(vec![listed]).await.unwrap(), dir)
}

pub(crate) fn mongo_url() -> String {
    std::env::var("MONGODB_TEST_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into())
}

fn kinds_of(seen: &Seen, job_id: &str) -> HashSet<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| e.job_id.to_string() == job_id)
        .map(|e| e.payload.kind().to_owned())
        .collect()
}

#[tokio::test]
async fn a_channel_completes_on_the_production_backends() {
    let iso = Isolation::new().await;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("s.wav");
    media::speak("The river carries sand down to the sea, where it builds wide beaches.", &wav).await.unwrap();
    let spoken = dir.path().join("s.webm");
    media::encode(&wav, &spoken, Container::WebmOpus).await.unwrap();
    let captions = vec![
        Segment { start: 0.0, end: 3.0, text: "Glaciers carve valleys into the shape of the letter U.".into() },
        Segment { start: 3.0, end: 6.0, text: "Rivers carve valleys shaped like the letter V.".into() },
    ];
    let channel = StandInChannel::new(CHANNEL, "Production")
        .video(StandInVideo::new("prodSpoken1", "Rivers").media(&spoken, Container::WebmOpus.content_type()))
        .video(
            StandInVideo::new("prodCaption", "Valleys")
                .media(&spoken, Container::WebmOpus.content_type())
                .captions(captions),
        );
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let app = TestApp::builder().env(&iso.env_for(&standin)).spawn().await;

    // Independent observers on both event channels.
    let fanout = RabbitEventBus::connect(&iso.amqp, &iso.amqp.events_exchange).await.unwrap();
    let (on_fanout, _fanout_observer) = collect(fanout.subscribe().await.unwrap());
    let kafka = KafkaEventBus::connect(&iso.kafka).await.unwrap();
    let (on_kafka, _kafka_observer) = collect(kafka.consume("test-observer").await.unwrap());

    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(300)).await;
    assert_eq!(job["status"], "completed", "{job:#}");

    // PostgreSQL holds the rows, MongoDB the artifacts.
    let store = iso.db.store().await;
    let videos = tubesum::ports::JobStore::list_videos(&store, job_id.parse().unwrap()).await.unwrap();
    assert_eq!(videos.len(), 2);
    let mongo = MongoArtifactStore::connect(&mongo_url(), &iso.mongo_db).await.unwrap();
    for id in ["prodSpoken1", "prodCaption"] {
        let id = VideoId::parse(id).unwrap();
        let artifacts: &dyn tubesum::ports::ArtifactStore = &mongo;
        assert!(artifacts.get_transcript(&id).await.unwrap().is_some(), "{id}");
        assert!(artifacts.get_summary(&id).await.unwrap().is_some(), "{id}");
    }
    let (_, t) = app.get_json("/videos/prodSpoken1/transcript").await;
    assert!(t["text"].as_str().unwrap().to_lowercase().contains("river"), "{t:#}");

    // Each of the five event types was seen on Kafka and on the fanout exchange.
    for (name, seen) in [("fanout", &on_fanout), ("kafka", &on_kafka)] {
        let mut all = false;
        for _ in 0..600 {
            if FIVE.iter().all(|k| kinds_of(seen, &job_id).contains(*k)) {
                all = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(all, "{name} saw only {:?}", kinds_of(seen, &job_id));
    }
    assert_eq!(tubesum::adapters::postgres::outbox::pending(store.pool()).await.unwrap(), 0, "the outbox drained");

    // The analytics consumer (its own Kafka consumer group) counted the job's stages.
    let path = format!("/analytics?job_id={job_id}");
    let counted = crate::helpers::poll_until(Duration::from_secs(60), || async {
        let (_, a) = app.get_json(&path).await;
        a["stages"].as_array().is_some_and(|s| s.iter().any(|s| s["stage"] == "summarization" && s["completed"] == 2))
    })
    .await;
    assert!(counted, "analytics: {:#}", app.get_json(&path).await.1);
    app.shutdown().await;
    iso.db.drop_now().await;
}

#[tokio::test]
async fn production_mode_names_the_missing_backend() {
    let iso = Isolation::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env = iso.env();
    env.push(("TUBESUM_AMQP__URL", format!("amqp://guest:secretpw@127.0.0.1:{closed}/%2f")));
    let data = tempfile::tempdir().unwrap();
    let err = tubesum::app::Wiring::from_settings(crate::helpers::settings(&data, &env))
        .await
        .err()
        .expect("no broker there");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("127.0.0.1:{closed}")) && msg.contains("production"), "{msg}");
    assert!(!msg.contains("secretpw"), "{msg}");
    iso.db.drop_now().await;
}

/// Two processes (two actor trees with their own pools) share the production backends: one runs
/// the API with discovery and summarization, the other the media stages. With no-op stage work,
/// counted per process.
#[tokio::test]
async fn two_processes_share_the_work_of_one_channel() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tubesum::domain::Stage;

    use crate::actors::{Fault, Faulty};

    let iso = Isolation::new().await;
    let ids = ["twoProc0001", "twoProc0002", "twoProc0003", "twoProc0004"];
    type Runs = Arc<Mutex<HashMap<String, u32>>>;
    let mut apps = Vec::new();
    let mut counters: Vec<HashMap<Stage, Runs>> = Vec::new();
    for pools in [
        vec![Stage::Discovery, Stage::Summarization],
        vec![Stage::Download, Stage::AudioExtraction, Stage::Transcription],
    ] {
        let runs: HashMap<Stage, Runs> = Stage::ALL.iter().map(|stage| (*stage, Runs::default())).collect();
        let counted = runs.clone();
        let app = TestApp::builder()
            .env(&iso.env())
            .pools(pools)
            .stages(move |ctx| {
                let mut stages = noop::stages(ctx, metas(&ids));
                for (stage, counter) in counted {
                    let wrapped = Faulty { inner: stages.get(stage), target: None, fault: Fault::None, runs: counter };
                    stages = stages.with(stage, Arc::new(wrapped));
                }
                stages
            })
            .spawn()
            .await;
        counters.push(runs);
        apps.push(app);
    }
    let kafka = KafkaEventBus::connect(&iso.kafka).await.unwrap();
    let (on_kafka, _observer) = collect(kafka.consume("test-two-processes").await.unwrap());

    let job_id = apps[0].submit(CHANNEL, false).await;
    let job = apps[0].wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    // The other process sees the same state.
    let (_, seen_by_b) = apps[1].get_json(&format!("/jobs/{job_id}")).await;
    assert_eq!(seen_by_b["status"], "completed");

    // Each stage ran exactly once per video, in the process that runs its pool.
    let total = |p: usize, s: Stage| counters[p][&s].lock().unwrap().values().sum::<u32>();
    assert_eq!((total(0, Stage::Discovery), total(1, Stage::Discovery)), (1, 0));
    for stage in [Stage::Download, Stage::AudioExtraction, Stage::Transcription] {
        assert_eq!((total(0, stage), total(1, stage)), (0, ids.len() as u32), "{stage}");
        assert!(counters[1][&stage].lock().unwrap().values().all(|n| *n == 1), "{stage} ran twice for a video");
    }
    assert_eq!((total(0, Stage::Summarization), total(1, Stage::Summarization)), (ids.len() as u32, 0));

    // Every completion event was published once (none duplicated across processes).
    let mut ok = false;
    for _ in 0..600 {
        let events = on_kafka.lock().unwrap().clone();
        let ours: Vec<_> = events.iter().filter(|e| e.job_id.to_string() == job_id).collect();
        if ours.iter().filter(|e| e.payload.kind() == "summarization_completed").count() == ids.len() {
            let mut per_kind: HashMap<(String, Option<String>), usize> = HashMap::new();
            for e in &ours {
                *per_kind
                    .entry((e.payload.kind().to_owned(), e.video_id.as_ref().map(ToString::to_string)))
                    .or_default() += 1;
            }
            let dupes: Vec<_> = per_kind.iter().filter(|(_, n)| **n > 1).collect();
            assert!(dupes.is_empty(), "duplicated events: {dupes:?}");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "not every summarization_completed reached Kafka");
    for app in apps {
        app.shutdown().await;
    }
    iso.db.drop_now().await;
}

/// An app on the production backends with no-op stages; transcription waits for `gate`.
pub(crate) async fn gated_app(
    iso: &Isolation,
    extra: &[(&'static str, String)],
    ids: &[&str],
    gate: Arc<Semaphore>,
) -> TestApp {
    let videos = metas(ids);
    TestApp::builder()
        .env(&iso.env())
        .env(extra)
        .stages(move |ctx| {
            let stages = noop::stages(ctx, videos);
            let gated = Gated { inner: stages.get(Stage::Transcription), gate, runs: Arc::default() };
            stages.with(Stage::Transcription, Arc::new(gated))
        })
        .spawn()
        .await
}

/// `tubesum serve` as a process of its own (so that it can be paused), its stderr drained.
pub(crate) struct Process {
    pub(crate) url: String,
    child: tokio::process::Child,
    pub(crate) log: crate::helpers::Log,
}

impl Process {
    pub(crate) async fn serve(env: &[(&'static str, String)], data: &std::path::Path, stages: &str) -> Process {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tubesum"))
            .args(["serve", "--listen", "127.0.0.1:0", "--stages", stages])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("TUBESUM_DATA_DIR", data)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tubesum starts");
        let (url, log) = crate::helpers::listening_url_and_log(&mut child).await;
        Process { child, url, log }
    }

    /// Whether the process has logged a line containing `text`.
    pub(crate) fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }

    /// `GET path` as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap().json().await.unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    pub(crate) async fn runs_job(&self, job_id: &str) -> bool {
        let tree: serde_json::Value =
            reqwest::get(format!("{}/console/tree", self.url)).await.unwrap().json().await.unwrap();
        runs_job(&tree, job_id)
    }
}

pub(crate) fn runs_job(tree: &serde_json::Value, job_id: &str) -> bool {
    tree.to_string().contains(&format!("job:{job_id}"))
}

/// One process runs a job (holds its lease) while another idles beside it; when the first stops,
/// the second takes the job over and finishes it.
#[tokio::test]
async fn a_job_runs_in_one_process_and_is_handed_over_when_it_stops() {
    let iso = Isolation::new().await;
    // Long enough that a renewal delayed by a loaded machine does not hand the job over early.
    let lease = [("TUBESUM_STAGES__JOB_LEASE_SECS", "6".to_owned())];
    let ids = ["handOver001", "handOver002"];
    let (gate_a, gate_b) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let a = gated_app(&iso, &lease, &ids, gate_a.clone()).await;
    let b = gated_app(&iso, &lease, &ids, gate_b.clone()).await;

    let job_id = a.submit(CHANNEL, false).await;
    let store = iso.db.store().await;
    let transcribing = crate::helpers::poll_until(Duration::from_secs(60), || async {
        let videos = tubesum::ports::JobStore::list_videos(&store, job_id.parse().unwrap()).await.unwrap();
        videos.len() == ids.len() && videos.iter().all(|v| v.status.as_str() == "transcribing")
    })
    .await;
    assert!(transcribing);
    // Whichever process claimed it first (the submitter, or the other at its lease round) runs
    // it; several lease renewals later, only that one does.
    let (tree_a, tree_b) = (a.get_json("/console/tree").await.1, b.get_json("/console/tree").await.1);
    let (in_a, in_b) = (runs_job(&tree_a, &job_id), runs_job(&tree_b, &job_id));
    assert!(in_a ^ in_b, "exactly one process runs the job:\nA {tree_a:#}\nB {tree_b:#}");
    let (running, idle) = if in_a { (a, b) } else { (b, a) };

    running.shutdown().await;
    gate_a.add_permits(1000);
    gate_b.add_permits(1000);
    let job = idle.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let attempts = tubesum::ports::JobStore::list_attempts(&store, job_id.parse().unwrap()).await.unwrap();
    let nodes: HashSet<&str> = attempts.iter().map(|a| a.claimed_by.as_str()).collect();
    assert!(nodes.len() >= 2, "both processes took stage work: {nodes:?}");
    idle.shutdown().await;
    iso.db.drop_now().await;
}

/// `ports.store = "production"` alone: PostgreSQL state, everything else embedded.
#[tokio::test]
async fn one_port_on_production_the_rest_embedded() {
    use secrecy::ExposeSecret;
    let iso = Isolation::new().await;
    let env = [
        ("TUBESUM_PORTS__STORE", "production".to_owned()),
        ("TUBESUM_DATABASE__URL", iso.db.settings.url.expose_secret().to_owned()),
        // Nothing listens there: only the store may be production.
        ("TUBESUM_AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        (
            "TUBESUM_MONGODB__URL",
            "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=500".to_owned(),
        ),
    ];
    let ids = ["portMix0001"];
    let app = TestApp::builder().env(&env).noop_stages(&ids).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let store = iso.db.store().await;
    let record = tubesum::ports::JobStore::get_job(&store, job_id.parse().unwrap()).await.unwrap();
    assert_eq!(record.map(|j| j.status.as_str()), Some("completed"), "the job lives in PostgreSQL");
    // Artifacts are embedded: the SQLite file holds the summary, not the job.
    let sqlite = tubesum::adapters::embedded::SqliteStore::open(&app.data.path().join("tubesum.sqlite")).await.unwrap();
    assert!(tubesum::ports::JobStore::get_job(&sqlite, job_id.parse().unwrap()).await.unwrap().is_none());
    let summary = tubesum::ports::ArtifactStore::get_summary(&sqlite, &VideoId::parse(ids[0]).unwrap()).await;
    assert!(summary.unwrap().is_some());
    app.shutdown().await;
    iso.db.drop_now().await;
}

/// A message on a stage queue that is not a command of that stage (a poison command) ends in the
/// stage's dead-letter queue with the reason in its headers, and the pipeline goes on.
#[tokio::test]
async fn a_poison_command_ends_in_the_dead_letter_queue_with_its_reason() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
    use lapin::types::AMQPValue;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    use secrecy::ExposeSecret;

    let iso = Isolation::new().await;
    let ids = ["poisonPill1"];
    let app = gated_app(&iso, &[], &ids, Arc::new(Semaphore::new(1000))).await;
    let connection = Connection::connect(iso.amqp.url.expose_secret(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let queue = format!("{}download_queue", iso.amqp.queue_prefix);
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{not json",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());

    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "completed", "the pipeline goes on: {job:#}");

    let dlq = format!("{queue}.dlq");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        if let Some(message) = channel.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            break message;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing in {dlq}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.delivery.data, b"{not json");
    let reason = dead.delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-tubesum-reason").cloned());
    match reason {
        Some(AMQPValue::LongString(why)) => assert!(why.to_string().starts_with("invalid command"), "{why}"),
        other => panic!("no reason header: {other:?}"),
    }
    app.shutdown().await;
    iso.db.drop_now().await;
}

/// The long channel of `actors::a_long_queue_times_nothing_out_and_each_stage_runs_once` on the
/// production backends, split between two processes that each run one download worker: nothing
/// times out in the queue, and each stage of each video runs once in the cluster.
#[tokio::test]
async fn a_long_queue_over_two_processes_times_nothing_out() {
    use tubesum::domain::Stage;

    use crate::actors::{assert_each_stage_ran_once, long_channel, long_queue_env, long_queue_stages};

    let iso = Isolation::new().await;
    let ids = long_channel(300);
    let mut apps = Vec::new();
    for pools in [
        vec![Stage::Discovery, Stage::Download, Stage::Summarization],
        vec![Stage::Download, Stage::AudioExtraction, Stage::Transcription],
    ] {
        let stage_ids = ids.clone();
        let app = TestApp::builder()
            .env(&iso.env())
            .env(&long_queue_env())
            .pools(pools)
            .stages(move |ctx| long_queue_stages(ctx, &stage_ids))
            .spawn()
            .await;
        apps.push(app);
    }
    let job_id = apps[0].submit(CHANNEL, false).await;
    assert_each_stage_ran_once(&apps[0], &job_id, ids.len()).await;
    for app in apps {
        app.shutdown().await;
    }
    iso.db.drop_now().await;
}
