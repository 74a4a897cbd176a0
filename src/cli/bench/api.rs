//! `tubesum bench api`: `GET /jobs/{id}` under load. A job of N videos runs to the end with
//! no-op stage work on the configured backends, the API serves it on a port of its own, and wrk
//! (`apt install wrk`) loads it twice: the whole page (a 200 with every video), and the page
//! revalidated with its ETag (a bodiless 304), as pollers do.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::process::Command;

use super::{isolated, noop_wiring};
use crate::api::Application;
use crate::app::Settings;
use crate::domain::Stage;

const CHANNEL: &str = "UCbenchapibenchapibencha";

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
    let wrk = which("wrk").context("bench api runs wrk: install it (Debian: apt install wrk)")?;
    let _data = isolated(&mut settings)?;
    settings.server.listen = "127.0.0.1:0".parse().expect("an address");
    let token = settings.server.api_token.as_ref().map(|t| t.expose_secret().to_owned());
    let backends = settings.backends;
    let app = Application::start(noop_wiring(settings, videos).await?, Stage::ALL.to_vec()).await?;
    let base = format!("http://{}", app.address());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let result = async {
        let client = reqwest::Client::new();
        let auth = |r: reqwest::RequestBuilder| match &token {
            Some(token) => r.bearer_auth(token),
            None => r,
        };
        let created: serde_json::Value = auth(client.post(format!("{base}/jobs")))
            .json(&serde_json::json!({ "channel_id": CHANNEL, "force": true }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let job_id = created["job_id"].as_str().context("no job id")?.to_owned();
        let url = format!("{base}/jobs/{job_id}");
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let tag = loop {
            let response = auth(client.get(&url)).send().await?.error_for_status()?;
            let tag = response.headers().get("etag").and_then(|t| t.to_str().ok()).map(str::to_owned);
            let job: serde_json::Value = response.json().await?;
            if job["status"] == "completed" {
                break tag.context("no ETag")?;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < until,
                "the job did not complete in 600 s: {}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut headers = Vec::new();
        if let Some(token) = &token {
            headers.push(format!("Authorization: Bearer {token}"));
        }
        let full = wrk_run(&wrk, &url, &headers, load).await?;
        headers.push(format!("If-None-Match: {tag}"));
        let revalidated = wrk_run(&wrk, &url, &headers, load).await?;
        let Load { threads, connections, seconds } = load;
        let mut out = format!(
            "GET /jobs/{{id}}, a finished job of {videos} videos (backends: {backends:?}), \
             wrk -t{threads} -c{connections} -d{seconds}s:\n"
        );
        for (name, run) in [("whole page (200)", full), ("If-None-Match (304)", revalidated)] {
            out += &format!(
                "  {name:<20} {:>9.0} req/s   p50 {:>9}   p99 {:>9}   read {:>9}/s\n",
                run.requests_per_second, run.p50, run.p99, run.transfer
            );
        }
        Ok(out)
    }
    .await;
    let _ = stop.send(());
    let _ = server.await;
    result
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

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
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
