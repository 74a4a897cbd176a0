//! `tubesum bench api`: `GET /jobs/{id}` under load. A job of N videos runs with no-op stage work
//! on the configured backends and the API serves it on a port of its own; wrk (`apt install wrk`)
//! loads its page, whole (a 200 with every video) and revalidated with its ETag (a bodiless 304,
//! as pollers do), twice: while the job runs (only discovery runs, so its videos wait for a
//! download), and once it has finished (its pages are kept rendered). While it runs, the page is
//! loaded quiet (rendered once, then answered while its tag stands: each read costs the store one
//! count) and changing: one of its videos is written [`CHANGES_PER_SECOND`] times a second, and
//! each change makes the next read render the page from the store again.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::process::Command;

use super::{isolated, noop_wiring};
use crate::api::Application;
use crate::app::Settings;
use crate::domain::Stage;
use crate::stages::process::on_path;

const CHANNEL: &str = "UCbenchapibenchapibencha";

/// How often a video of the running job changes in the "changing" load: a 1,000-video job moving
/// at 25 videos/s through four stages (two writes each) changes about 200 times a second.
pub const CHANGES_PER_SECOND: u32 = 200;

/// The load wrk puts on.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
}

/// One wrk run: requests per second and latency percentiles, as wrk reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub requests_per_second: f64,
    pub p50: String,
    pub p99: String,
    /// Bytes read per second, as wrk writes it (`1.20GB`).
    pub transfer: String,
}

pub async fn api(mut settings: Settings, videos: usize, load: Load) -> anyhow::Result<String> {
    let wrk =
        on_path(std::path::Path::new("wrk")).context("bench api runs wrk: install it (Debian: apt install wrk)")?;
    let _data = isolated(&mut settings)?;
    settings.server.listen = "127.0.0.1:0".parse().expect("an address");
    let backends = settings.backends;

    // First discovery alone: the job runs, its videos wait for a download worker, and every read
    // of its page goes to the store.
    let running = Served::start(&settings, videos, vec![Stage::Discovery]).await?;
    let read = async {
        let job_id = running.submit().await?;
        let tag = running.wait(&job_id, |job| job["counts"]["downloading"] == videos as u64).await?;
        let url = running.url(&job_id);
        let quiet = wrk_both(&wrk, &url, &running.headers(), &tag, load).await?;
        let changing = {
            let _writer = running.keep_changing(&job_id).await?;
            wrk_run(&wrk, &url, &running.headers(), load).await?
        };
        Ok::<_, anyhow::Error>((job_id, quiet, changing))
    }
    .await;
    running.stop().await;
    let (job_id, from_store, changing) = read?;
    // Then every stage: the job resumes, ends, and its pages are kept rendered.
    let finished = Served::start(&settings, videos, Stage::ALL.to_vec()).await?;
    let read = async {
        let tag = finished.wait(&job_id, |job| job["status"] == "completed").await?;
        wrk_both(&wrk, &finished.url(&job_id), &finished.headers(), &tag, load).await
    }
    .await;
    finished.stop().await;
    let from_memory = read?;

    let Load { threads, connections, seconds } = load;
    let mut out = format!(
        "GET /jobs/{{id}} of a job of {videos} videos (backends: {backends:?}), wrk -t{threads} -c{connections} -d{seconds}s:\n"
    );
    for (name, run) in [
        ("running, whole page (200)", &from_store.0),
        ("changing, whole page (200)", &changing),
        ("running, If-None-Match (304)", &from_store.1),
        ("finished, whole page (200)", &from_memory.0),
        ("finished, If-None-Match (304)", &from_memory.1),
    ] {
        out += &format!(
            "  {name:<30} {:>9.0} req/s   p50 {:>9}   p99 {:>9}   read {:>9}/s\n",
            run.requests_per_second, run.p50, run.p99, run.transfer
        );
    }
    Ok(out)
}

/// The API on no-op stage work, serving on a port of its own until stopped.
struct Served {
    store: std::sync::Arc<dyn crate::ports::JobStore>,
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    async fn start(settings: &Settings, videos: usize, pools: Vec<Stage>) -> anyhow::Result<Served> {
        let token = settings.server.api_token.as_ref().map(|t| t.expose_secret().to_owned());
        let app = Application::start(noop_wiring(settings.clone(), videos).await?, pools).await?;
        let base = format!("http://{}", app.address());
        let store = app.pipeline.deps.store.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Ok(Served { store, base, token, client: reqwest::Client::new(), stop, server })
    }

    /// Writes the job's first video back as it is, [`CHANGES_PER_SECOND`] times a second (each
    /// write counts as a change), until the handle is dropped.
    async fn keep_changing(&self, job_id: &str) -> anyhow::Result<tokio_util::task::AbortOnDropHandle<()>> {
        let job_id = job_id.parse().map_err(|e| anyhow::anyhow!("job id {job_id}: {e}"))?;
        let store = self.store.clone();
        let videos = store.videos_page(job_id, None, 1, 0).await?;
        let video = videos.into_iter().next().context("the job has no videos")?;
        let same = crate::domain::VideoUpdate { status: video.status, attempts: video.attempts, error: video.error };
        let mut every = tokio::time::interval(Duration::from_secs(1) / CHANGES_PER_SECOND);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                every.tick().await;
                if let Err(e) = store.update_video(job_id, &video.video_id, &same).await {
                    tracing::warn!(error = %e, "bench api: could not change the video");
                }
            }
        })))
    }

    fn url(&self, job_id: &str) -> String {
        format!("{}/jobs/{job_id}", self.base)
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The headers every wrk request carries.
    fn headers(&self) -> Vec<String> {
        self.token.iter().map(|token| format!("Authorization: Bearer {token}")).collect()
    }

    async fn submit(&self) -> anyhow::Result<String> {
        let created: serde_json::Value = self
            .auth(self.client.post(format!("{}/jobs", self.base)))
            .json(&serde_json::json!({ "channel_id": CHANNEL, "force": true }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created["job_id"].as_str().context("no job id")?.to_owned())
    }

    /// Polls the job's page until `ready` says so; its ETag then.
    async fn wait(&self, job_id: &str, ready: impl Fn(&serde_json::Value) -> bool) -> anyhow::Result<String> {
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let response = self.auth(self.client.get(self.url(job_id))).send().await?.error_for_status()?;
            let tag = response.headers().get("etag").and_then(|t| t.to_str().ok()).map(str::to_owned);
            let job: serde_json::Value = response.json().await?;
            if ready(&job) {
                return tag.context("no ETag");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < until,
                "the job did not get there in 600 s: {}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// The page, then the page revalidated with `tag`.
async fn wrk_both(
    wrk: &std::path::Path,
    url: &str,
    headers: &[String],
    tag: &str,
    load: Load,
) -> anyhow::Result<(Run, Run)> {
    let full = wrk_run(wrk, url, headers, load).await?;
    let mut revalidating = headers.to_vec();
    revalidating.push(format!("If-None-Match: {tag}"));
    Ok((full, wrk_run(wrk, url, &revalidating, load).await?))
}

async fn wrk_run(wrk: &std::path::Path, url: &str, headers: &[String], load: Load) -> anyhow::Result<Run> {
    let mut command = Command::new(wrk);
    command.args([
        format!("-t{}", load.threads),
        format!("-c{}", load.connections),
        format!("-d{}s", load.seconds),
        "--latency".to_owned(),
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(url).kill_on_drop(true).output().await.context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&text).with_context(|| format!("wrk said something unexpected:\n{text}"))
}

/// Requests/sec and the 50 % / 99 % latencies of wrk's `--latency` report. Any non-2xx/3xx answer
/// makes the run fail (wrk counts them apart).
pub fn parse_wrk(text: &str) -> anyhow::Result<Run> {
    anyhow::ensure!(!text.contains("Non-2xx or 3xx responses"), "some answers were errors");
    let field = |prefix: &str| {
        text.lines().map(str::trim).find_map(|line| line.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let requests_per_second = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p50 = field("50%").context("no 50% latency")?;
    let p99 = field("99%").context("no 99% latency")?;
    let transfer = field("Transfer/sec:").context("no Transfer/sec")?;
    Ok(Run { requests_per_second, p50, p99, transfer })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:1/jobs/x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  300.00us   9.00ms   90.00%
    Req/Sec     7.90k   500.00     8.50k    70.00%
  Latency Distribution
     50%  0.95ms
     75%    1.10ms
     90%    1.30ms
     99%    2.40ms
  157000 requests in 10.00s, 1.20GB read
Requests/sec:  15700.12
Transfer/sec:    122.00MB
";

    #[test]
    fn wrk_reports_are_read() {
        let run = parse_wrk(REPORT).unwrap();
        let expected = Run {
            requests_per_second: 15700.12,
            p50: "0.95ms".into(),
            p99: "2.40ms".into(),
            transfer: "122.00MB".into(),
        };
        assert_eq!(run, expected);
        let errors = REPORT.replace("Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec");
        assert!(parse_wrk(&errors).is_err(), "error answers fail the run");
    }
}
