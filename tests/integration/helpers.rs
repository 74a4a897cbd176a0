//! Shared test plumbing: an app on port 0 with a fresh data dir, polling with a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tubesum::actors::Deps;
use tubesum::app::Application;
use tubesum::config::Settings;
use tubesum::stages::{StageContext, Stages};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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

impl TestApp {
    /// The real embedded stack.
    pub async fn spawn(env: &[(&str, String)]) -> TestApp {
        TestApp::spawn_configured(env).await
    }

    /// The stack the settings choose (`TUBESUM_BACKENDS`), real stages.
    pub async fn spawn_configured(env: &[(&str, String)]) -> TestApp {
        let data = tempfile::tempdir().unwrap();
        let deps = Deps::from_settings(settings(&data, env)).await.expect("configured backends are reachable");
        TestApp::with_deps(deps, data).await
    }

    /// The stack the settings choose with stages from `make` (fakes, fault injection).
    pub async fn spawn_with_stages(env: &[(&str, String)], make: impl FnOnce(&StageContext) -> Stages) -> TestApp {
        TestApp::spawn_with_stages_in(tempfile::tempdir().unwrap(), env, make).await
    }

    /// As `spawn_with_stages`, on an existing data dir (a restart).
    pub async fn spawn_with_stages_in(
        data: tempfile::TempDir,
        env: &[(&str, String)],
        make: impl FnOnce(&StageContext) -> Stages,
    ) -> TestApp {
        TestApp::spawn_custom(data, env, make, |_| {}).await
    }

    /// The stack the settings choose (embedded by default) with stages from `make`, then `adjust`
    /// (e.g. wrapping a bus).
    pub async fn spawn_custom(
        data: tempfile::TempDir,
        env: &[(&str, String)],
        make: impl FnOnce(&StageContext) -> Stages,
        adjust: impl FnOnce(&mut Deps),
    ) -> TestApp {
        let mut deps = Deps::from_settings(settings(&data, env)).await.expect("deps");
        let ctx = StageContext {
            settings: deps.settings.clone(),
            store: deps.store.clone(),
            artifacts: deps.artifacts.clone(),
        };
        deps.stages = make(&ctx);
        adjust(&mut deps);
        TestApp::with_deps(deps, data).await
    }

    async fn with_deps(deps: Deps, data: tempfile::TempDir) -> TestApp {
        TestApp::with_deps_and_stages(deps, data, tubesum::domain::Stage::ALL.to_vec()).await
    }

    /// An app on `deps` running only the `stages` pools (as `serve --stages`).
    pub async fn with_deps_and_stages(
        deps: Deps,
        data: tempfile::TempDir,
        stages: Vec<tubesum::domain::Stage>,
    ) -> TestApp {
        let app = Application::with_deps_and_stages(deps, stages).await.expect("app builds");
        let address = format!("http://{}", app.address());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp { address, client: reqwest::Client::new(), data, stop: Some(stop), server: Some(server) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn submit(&self, channel_id: &str, force: bool) -> String {
        let response = self
            .client
            .post(self.url("/jobs"))
            .json(&serde_json::json!({"channel_id": channel_id, "force": force}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
        let body: Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().to_owned()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the job until it is final; panics with its last state after `deadline`.
    pub async fn wait_for_job(&self, job_id: &str, deadline: Duration) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        let (done, last) = loop {
            let (_, job) = self.get_json(&format!("/jobs/{job_id}")).await;
            let status = job["status"].as_str().unwrap_or("").to_owned();
            if ["completed", "completed_with_errors", "failed", "cancelled"].contains(&status.as_str()) {
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
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<tubesum::adapters::DomainEvent>>>;

/// Collects a stream's events in the background until the handle is dropped.
pub fn collect(mut stream: tubesum::adapters::EventStream) -> (Seen, tokio_util::task::AbortOnDropHandle<()>) {
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
