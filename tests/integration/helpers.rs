//! Shared test plumbing: one way to build an app (on port 0, a fresh data dir, the backends the
//! settings choose) — [`TestApp::builder`] — and polling with a deadline. `TEST_LOG=1` turns
//! tracing on (see `tubesum::observability::telemetry::init_for_tests`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tubesum::actors::Deps;
use tubesum::api::Application;
use tubesum::app::{Settings, Wiring};
use tubesum::cli::bench::noop;
use tubesum::domain::{Stage, VideoId, VideoMeta};
use tubesum::stages::{StageContext, Stages};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

type MakeStages = Box<dyn FnOnce(&StageContext) -> Stages>;
type Adjust = Box<dyn FnOnce(&mut Deps)>;

/// How a [`TestApp`] is built; every part is optional.
#[must_use]
pub struct TestAppBuilder {
    env: Vec<(String, String)>,
    data: Option<tempfile::TempDir>,
    stages: Option<MakeStages>,
    adjust: Option<Adjust>,
    pools: Vec<Stage>,
}

impl TestAppBuilder {
    /// Settings overrides in `TUBESUM_*` form (the backends come from `TUBESUM_BACKENDS`, …).
    pub fn env(mut self, env: &[(&str, String)]) -> Self {
        self.env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self
    }

    /// Runs on an existing data dir (a restart of an earlier app).
    pub fn data(mut self, data: tempfile::TempDir) -> Self {
        self.data = Some(data);
        self
    }

    /// Stage work from `make` (fakes, fault injection) instead of the real stages.
    pub fn stages(mut self, make: impl FnOnce(&StageContext) -> Stages + 'static) -> Self {
        self.stages = Some(Box::new(make));
        self
    }

    /// No-op stage work (the benchmark's) whose discovery lists `ids`.
    pub fn noop_stages(self, ids: &[&str]) -> Self {
        let videos = metas(ids);
        self.stages(move |ctx| noop::stages(ctx, videos))
    }

    /// Changes the wired ports before the app starts (e.g. wrapping a bus).
    pub fn adjust(mut self, adjust: impl FnOnce(&mut Deps) + 'static) -> Self {
        self.adjust = Some(Box::new(adjust));
        self
    }

    /// Runs only these stage pools (as `serve --stages`); all by default.
    pub fn pools(mut self, pools: Vec<Stage>) -> Self {
        self.pools = pools;
        self
    }

    pub async fn spawn(self) -> TestApp {
        tubesum::observability::telemetry::init_for_tests();
        let data = self.data.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let env: Vec<(&str, String)> = self.env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut wiring =
            Wiring::from_settings(settings(&data, &env)).await.expect("the configured backends are reachable");
        if let Some(make) = self.stages {
            wiring = wiring.with_stages(make);
        }
        if let Some(adjust) = self.adjust {
            adjust(&mut wiring.deps);
        }
        let app = Application::start(wiring, self.pools).await.expect("app builds");
        let address = format!("http://{}", app.address());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp { address, client: reqwest::Client::new(), data, stop: Some(stop), server: Some(server) }
    }
}

/// Settings that send every YouTube request to the stand-in, and the test Whisper models.
pub fn standin_env(standin: &youtube_standin::StandIn) -> Vec<(&'static str, String)> {
    vec![
        ("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()),
        ("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template()),
        ("TUBESUM_YOUTUBE__CHANNEL_URL", standin.channel_url_template()),
        ("TUBESUM_YOUTUBE__HANDLE_URL", standin.handle_url_template()),
    ]
    .into_iter()
    .chain(model_env())
    .collect()
}

/// Settings that point both local engines at the test models.
pub fn model_env() -> [(&'static str, String); 2] {
    [
        ("TUBESUM_WHISPER__MODEL", whisper_model().display().to_string()),
        ("TUBESUM_CTRANSLATE2__MODEL", ct2_model_dir().display().to_string()),
    ]
}

/// The whisper model tests use: `$WHISPER_MODEL` or `models/ggml-tiny.en.bin`.
pub fn whisper_model() -> PathBuf {
    let path = std::env::var_os("WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ggml-tiny.en.bin"));
    assert!(
        path.is_file(),
        "whisper model {} is missing: run scripts/setup.sh (it converts tiny.en) or set WHISPER_MODEL",
        path.display()
    );
    path
}

/// The faster-whisper (CTranslate2) tiny.en directory scripts/setup.sh installs: `$CT2_MODEL_DIR`
/// or what `scripts/ct2-model-dir` prints.
pub fn ct2_model_dir() -> PathBuf {
    let dir = std::env::var_os("CT2_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ct2-model-dir");
        let output = std::process::Command::new(&script).output().expect("scripts/ct2-model-dir runs");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    });
    assert!(
        dir.join("model.bin").is_file(),
        "faster-whisper tiny.en is missing at {}: run scripts/setup.sh or set CT2_MODEL_DIR",
        dir.display()
    );
    dir
}

/// yt-dlp: `$YT_DLP`, else the repo's venv, else PATH.
pub fn yt_dlp() -> PathBuf {
    if let Some(p) = std::env::var_os("YT_DLP") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/yt-dlp");
    if venv.is_file() { venv } else { PathBuf::from("yt-dlp") }
}

/// Settings for a test: a fresh data dir, port 0, fast backoff, 1 whisper thread, plus `env`
/// overrides in `TUBESUM_*` form.
pub fn settings(data: &tempfile::TempDir, env: &[(&str, String)]) -> Settings {
    let mut vars: Vec<(String, String)> = vec![
        ("TUBESUM_DATA_DIR".into(), data.path().display().to_string()),
        ("TUBESUM_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("TUBESUM_STAGES__BACKOFF_INITIAL_MS".into(), "20".into()),
        ("TUBESUM_STAGES__BACKOFF_MAX_MS".into(), "200".into()),
        ("TUBESUM_STAGES__TRANSCRIPTION__WORKERS".into(), "1".into()),
        ("TUBESUM_WHISPER__THREADS".into(), "1".into()),
        ("TUBESUM_DOWNLOAD__YT_DLP".into(), yt_dlp().display().to_string()),
    ];
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Settings::load(None, vars).expect("test settings are valid")
}

/// Videos as discovery finds them, titled after their ids.
pub fn metas(ids: &[&str]) -> Vec<VideoMeta> {
    ids.iter().map(|id| VideoMeta::new(VideoId::parse(id).unwrap(), format!("video {id}"))).collect()
}

impl TestApp {
    /// An app on the embedded stack with the real stages, unless the builder says otherwise.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder { env: Vec::new(), data: None, stages: None, adjust: None, pools: Stage::ALL.to_vec() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn submit(&self, channel_id: &str, force: bool) -> String {
        self.submit_as(channel_id, force, None).await
    }

    /// `submit` with `Authorization: Bearer <token>`.
    pub async fn submit_with(&self, channel_id: &str, token: &str) -> String {
        self.submit_as(channel_id, false, Some(token)).await
    }

    async fn submit_as(&self, channel_id: &str, force: bool, token: Option<&str>) -> String {
        let mut request =
            self.client.post(self.url("/jobs")).json(&serde_json::json!({"channel_id": channel_id, "force": force}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
        let body: Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        self.get_json_as(path, None).await
    }

    /// `get_json` with `Authorization: Bearer <token>`.
    pub async fn get_json_with(&self, path: &str, token: &str) -> (u16, Value) {
        self.get_json_as(path, Some(token)).await
    }

    async fn get_json_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the job until it and the videos it shows are final (a cancelled job's videos
    /// follow its cancel); panics with its last state after `deadline`.
    pub async fn wait_for_job(&self, job_id: &str, deadline: Duration) -> Value {
        wait_for_job_at(&self.address, job_id, deadline).await
    }

    /// Stops the server and the actor tree; panics if they do not stop.
    pub async fn shutdown(self) {
        self.stop_keeping_data().await;
    }

    /// Stops like `shutdown` and hands back the data dir (to start again on it).
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("app stops within 30 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
        self.data
    }
}

/// Polls `check` every 50 ms until it is true or `deadline` passes.
pub async fn poll_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Videos of a job by id: (status, attempts, error).
pub fn videos(job: &Value) -> Vec<(String, String, u64, Option<String>)> {
    job["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["video_id"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
                v["attempts"].as_u64().unwrap(),
                v["error"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Events a subscription delivered, as they come.
#[cfg(feature = "production")]
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<tubesum::domain::DomainEvent>>>;

/// Collects a stream's events in the background until the handle is dropped.
#[cfg(feature = "production")]
pub fn collect(mut stream: tubesum::ports::EventStream) -> (Seen, tokio_util::task::AbortOnDropHandle<()>) {
    use futures::StreamExt;
    let seen: Seen = std::sync::Arc::default();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            if let Ok(event) = item {
                out.lock().unwrap().push(event);
            }
        }
    });
    (seen, tokio_util::task::AbortOnDropHandle::new(task))
}

/// Reads a started `tubesum serve`'s stderr until it says where it listens; returns that URL
/// (`http://…`) and keeps draining the rest so the process never blocks on its logs.
pub async fn listening_url(child: &mut tokio::process::Child) -> String {
    listening_url_and_log(child).await.0
}

/// What a process wrote to stderr so far, line by line.
pub type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// [`listening_url`], keeping the process's stderr lines in a [`Log`].
pub async fn listening_url_and_log(child: &mut tokio::process::Child) -> (String, Log) {
    use tokio::io::AsyncBufReadExt;
    let log = Log::default();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("tubesum exited before listening");
    })
    .await
    .expect("tubesum listens within 60 s");
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    (url, log)
}

/// Polls job `job_id` at the API at `base` until it and the videos it shows are final; panics
/// with its last state after `deadline`.
pub async fn wait_for_job_at(base: &str, job_id: &str, deadline: Duration) -> Value {
    const FINAL_JOB: [&str; 4] = ["completed", "completed_with_errors", "failed", "cancelled"];
    const FINAL_VIDEO: [&str; 3] = ["summarized", "failed", "cancelled"];
    let client = reqwest::Client::new();
    let until = tokio::time::Instant::now() + deadline;
    let (done, last) = loop {
        let job: Value = match client.get(format!("{base}/jobs/{job_id}")).send().await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let job_final = FINAL_JOB.contains(&job["status"].as_str().unwrap_or(""));
        let videos_final = job["videos"]
            .as_array()
            .is_none_or(|videos| videos.iter().all(|v| FINAL_VIDEO.contains(&v["status"].as_str().unwrap_or(""))));
        if job_final && videos_final {
            break (true, job);
        }
        if tokio::time::Instant::now() >= until {
            break (false, job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(done, "job {job_id} not final after {deadline:?}: {last:#}");
    last
}

/// Submits `channel` to the API at `url` (a server of its own process); returns the job id.
pub async fn submit_to(url: &str, channel: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{url}/jobs"))
        .json(&serde_json::json!({ "channel_id": channel }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    created["job_id"].as_str().unwrap().to_owned()
}

/// A port the OS says is free now (for a server that must be told its port before it binds).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `command` to its end (killed if the test is dropped first) and returns what it printed on
/// standard output; a command that fails fails the test, with both of its outputs.
pub async fn stdout_of(command: &mut tokio::process::Command) -> String {
    let output = command.kill_on_drop(true).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}
