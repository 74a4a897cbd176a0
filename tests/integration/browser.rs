//! The web console in a real browser: headless Chromium (Debian's `chromium`) driven over
//! WebDriver (`chromedriver`) by fantoccini. One server with an API token and the real stages on
//! the YouTube stand-in; the browser is refused without the token and signs in, submits a channel
//! through the form and watches its progress reach 100 % without reloading, follows the jobs
//! list's live progress, opens a video and checks its key points' moment links, searches what was
//! said, looks at the ops page and one job's VideoActors, and cancels a job through the
//! confirmation dialog.
//! Screenshots of each page go to `$CARGO_TARGET_TMPDIR/browser/` (the README's come from there).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tubesum::domain::{Stage, StageCommand};
use tubesum::stages::{StageResult, StageWork, Stages};
use youtube_standin::{Segment, StandIn, StandInChannel, StandInVideo, media};

use crate::helpers::{TestApp, free_port, poll_until, standin_env, yt_dlp};

const TOKEN: &str = "browser-s3cret";
/// Its one video is summarized from its captions straight away.
const QUICK: &str = "UCbrowserQuickChannel000";
/// Its one video's download waits for a gate: the job stays running until cancelled.
const HELD: &str = "UCbrowserHeldChannel0000";
/// Its one video's download waits for another gate: the jobs list watches it finish.
const WATCHED: &str = "UCbrowserWatchedChannel0";
const DEADLINE: Duration = Duration::from_secs(60);

/// Downloads of the videos named in `gates` wait for their gate's permit.
struct GatedVideos {
    inner: Arc<dyn StageWork>,
    gates: HashMap<String, Arc<Semaphore>>,
}

#[async_trait]
impl StageWork for GatedVideos {
    async fn run(&self, command: &StageCommand) -> StageResult {
        if let Some(gate) = command.video_id.as_ref().and_then(|v| self.gates.get(v.as_str())) {
            let _ = gate.acquire().await;
        }
        self.inner.run(command).await
    }
}

async fn standin(dir: &std::path::Path) -> StandIn {
    let quiet = dir.join("quiet.m4a");
    media::silence(2.0, &quiet).await.unwrap();
    let captions = |topic: &str| {
        vec![
            Segment { start: 0.0, end: 4.0, text: format!("{topic} begin with a single seed in the spring.") },
            Segment {
                start: 4.0,
                end: 9.5,
                text: format!("Most {topic} need water, light and patience to grow tall."),
            },
            Segment { start: 9.5, end: 15.0, text: format!("Gardeners prune {topic} in autumn so they flower again.") },
            Segment {
                start: 15.0,
                end: 21.0,
                text: format!("Old {topic} can live for hundreds of years in a quiet park."),
            },
        ]
    };
    let video = |id: &str, title: &str, topic: &str| {
        StandInVideo::new(id, title).media(&quiet, "audio/mp4").captions(captions(topic))
    };
    StandIn::start(vec![
        StandInChannel::new(QUICK, "Quick").video(video("quickTrees1", "How trees grow", "trees")),
        StandInChannel::new(HELD, "Held").video(video("heldRoses01", "Roses", "roses")),
        StandInChannel::new(WATCHED, "Watched").video(video("watchedOak1", "Oaks", "oaks")),
    ])
    .await
    .unwrap()
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: Child,
    shots: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let ready = poll_until(Duration::from_secs(20), || async {
            reqwest::get(format!("{url}/status")).await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "chromedriver answers on {url}");
        let mut capabilities = serde_json::Map::new();
        let args =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"];
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": "/usr/bin/chromium", "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await.expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { client, _driver: driver, shots }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits for the page (after a click that navigates) to be one whose path `is` takes.
    async fn wait_path(&self, is: impl Fn(&str) -> bool) -> String {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let path = self.path().await;
            if is(&path) && self.client.find(Locator::Css("main")).await.is_ok() {
                return path;
            }
            assert!(tokio::time::Instant::now() < until, "still at {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the element's text is `want`; the text last seen otherwise.
    async fn wait_text(&self, css: &str, want: &str) -> Result<(), String> {
        let mut last = String::new();
        let until = tokio::time::Instant::now() + DEADLINE;
        while tokio::time::Instant::now() < until {
            last = self.text(css).await;
            if last.trim() == want {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    /// Marks the page: a reload (or another page) loses the mark.
    async fn mark(&self) {
        self.client.execute("window.stayed = true; return true;", vec![]).await.unwrap();
    }

    async fn still_marked(&self) -> bool {
        self.client.execute("return window.stayed === true;", vec![]).await.unwrap() == Value::Bool(true)
    }
}

#[tokio::test]
async fn the_console_in_a_browser_signs_in_submits_watches_reads_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let standin = standin(dir.path()).await;
    let held = Arc::new(Semaphore::new(0));
    let watched = Arc::new(Semaphore::new(0));
    let gates: HashMap<String, Arc<Semaphore>> =
        [("heldRoses01".to_owned(), held.clone()), ("watchedOak1".to_owned(), watched.clone())].into();
    let mut env = standin_env(&standin);
    env.push(("TUBESUM_SERVER__API_TOKEN", TOKEN.into()));
    env.push(("TUBESUM_DOWNLOAD__YT_DLP", yt_dlp().display().to_string()));
    let app = TestApp::builder()
        .env(&env)
        .stages(move |ctx| {
            let real = Stages::real(ctx).expect("the real stages");
            let download = Arc::new(GatedVideos { inner: real.get(Stage::Download), gates });
            real.with(Stage::Download, download)
        })
        .spawn()
        .await;
    let browser = Browser::start().await;
    let b = &browser;

    // Refused without the token: every page leads to the sign-in form; a wrong token stays there.
    b.client.goto(&app.url("/ui")).await.unwrap();
    assert_eq!(b.path().await, "/ui/sign-in");
    b.fill("#token", "not-the-token").await;
    b.click("form.card button[type=submit]").await;
    b.wait_text("#sign-in-error", "That is not this server's API token.").await.unwrap();
    b.screenshot("sign-in").await;
    b.fill("#token", TOKEN).await;
    b.click("form.card button[type=submit]").await;
    b.wait_path(|p| p == "/ui").await; // signed in, back where it was going
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "the token never appears in a URL: {url}");

    // Submit through the form; the job's page follows it to 100 % without a reload.
    b.fill("#channel", QUICK).await;
    b.click("#submit button[type=submit]").await;
    let job_path = b.wait_path(|p| p.starts_with("/ui/jobs/")).await;
    let job_id = job_path.trim_start_matches("/ui/jobs/").to_owned();
    b.mark().await;
    b.wait_text("#job-percent", "100 %").await.unwrap_or_else(|seen| panic!("progress stuck at {seen:?}"));
    b.wait_text("#job-status .badge", "completed").await.unwrap();
    b.wait_text("#v-quickTrees1 .status .badge", "summarized").await.unwrap();
    assert!(b.still_marked().await, "updated live, not reloaded");
    b.screenshot("job").await;

    // The video: key points link to their moment (the summary's own links, `&t=` whole seconds).
    b.click("#v-quickTrees1 a").await;
    b.wait_path(|p| p == "/ui/videos/quickTrees1").await;
    let (_, summary) = app.get_json_with("/videos/quickTrees1/summary", TOKEN).await;
    let points = b.client.find_all(Locator::Css("#key-points a.moment")).await.unwrap();
    let expected: Vec<&Value> = summary["key_points"].as_array().unwrap().iter().collect();
    assert!(!expected.is_empty() && points.len() == expected.len(), "{summary}");
    for (link, point) in points.iter().zip(&expected) {
        let href = link.attr("href").await.unwrap().unwrap();
        let seconds = point["start"].as_f64().unwrap().floor() as u64;
        assert_eq!(href, format!("https://www.youtube.com/watch?v=quickTrees1&t={seconds}s"));
        assert_eq!(href, point["url"].as_str().unwrap());
    }
    assert!(expected.iter().any(|p| p["start"].as_f64().unwrap() > 0.0), "a moment past the start: {summary}");
    let stamps = b.client.find_all(Locator::Css("#transcript a.moment")).await.unwrap();
    assert_eq!(stamps.len(), 4, "one clickable timestamp per transcript segment");
    assert_eq!(stamps[2].attr("href").await.unwrap().unwrap(), "https://www.youtube.com/watch?v=quickTrees1&t=9s");
    let vtt = b.client.find(Locator::Css("a[href$='format=vtt']")).await.unwrap();
    assert_eq!(vtt.attr("href").await.unwrap().unwrap(), "/videos/quickTrees1/transcript?format=vtt");
    b.screenshot("video").await;

    // Search: what was said, highlighted, linking to its moment.
    b.client.goto(&app.url("/ui/search?q=gardeners+prune")).await.unwrap();
    let first = b.client.find(Locator::Css("#hits li a.moment")).await.unwrap();
    assert_eq!(first.attr("href").await.unwrap().unwrap(), "https://www.youtube.com/watch?v=quickTrees1&t=9s");
    assert!(b.text("#hits li .snippet mark").await.to_lowercase().starts_with("garden"), "the match is highlighted");
    b.screenshot("search").await;

    // Subscriptions: watch a channel through the form; it is listed, and its first poll only
    // notes the feed (shown once the page is loaded again).
    b.client.goto(&app.url("/ui/subscriptions")).await.unwrap();
    b.fill("#watch-channel", QUICK).await;
    b.click("#watch button[type=submit]").await;
    b.wait_path(|p| p == "/ui/subscriptions").await;
    b.wait_text("#subscriptions tbody td code", QUICK).await.unwrap();
    let noted = poll_until(Duration::from_secs(30), || async {
        b.client.refresh().await.unwrap();
        b.text("#subscriptions tbody td:nth-child(3) .badge").await == "baseline"
    })
    .await;
    assert!(noted, "the first poll is shown: {}", b.text("#subscriptions tbody").await);
    b.screenshot("subscriptions").await;

    // The jobs list follows a job to 100 % live.
    let watched_id = app.submit_with(WATCHED, TOKEN).await;
    b.client.goto(&app.url("/ui")).await.unwrap();
    let row = format!("#job-{watched_id}");
    assert!(b.text(&format!("{row} .percent")).await.starts_with('0'), "not started yet");
    assert_eq!(b.text(&format!("#job-{job_id} .percent")).await, "100 %");
    b.mark().await;
    watched.add_permits(1);
    b.wait_text(&format!("{row} .percent"), "100 %").await.unwrap_or_else(|seen| panic!("list stuck at {seen:?}"));
    b.wait_text(&format!("{row} .status .badge"), "completed").await.unwrap();
    assert!(b.still_marked().await, "the list updated live");
    b.screenshot("jobs").await;

    // A job held at download: the ops page shows its line, the drill-down its VideoActor.
    b.fill("#channel", HELD).await;
    b.click("#submit button[type=submit]").await;
    let held_path = b.wait_path(|p| p.starts_with("/ui/jobs/") && p != job_path).await;
    let held_id = held_path.trim_start_matches("/ui/jobs/").to_owned();
    b.wait_text("#v-heldRoses01 a", "Roses").await.unwrap();
    b.client.goto(&app.url("/ui/ops")).await.unwrap();
    b.wait_text(&format!("#run-{held_id} td:nth-child(3)"), "download 1")
        .await
        .unwrap_or_else(|seen| panic!("{seen:?}"));
    // One VideoActor awaits download.
    b.wait_text("#pools tr[data-stage=download] td:nth-child(4)", "1").await.unwrap();
    b.screenshot("ops").await;
    // (The section is re-rendered every second: its link is read, not clicked.)
    let drill = b
        .client
        .execute(&format!("return document.querySelector('#run-{held_id} a').getAttribute('href');"), vec![])
        .await
        .unwrap();
    assert_eq!(drill, Value::String(format!("/ui/ops/jobs/{held_id}")));
    b.client.goto(&app.url(&format!("/ui/ops/jobs/{held_id}"))).await.unwrap();
    b.wait_text("#video-actors tbody td:nth-child(3)", "download").await.unwrap();
    b.screenshot("ops-job").await;

    // Cancel, through the confirmation: first kept running, then cancelled.
    b.client.goto(&app.url(&format!("/ui/jobs/{held_id}"))).await.unwrap();
    // By keyboard: Enter on the button opens the confirmation, focused on the safe choice;
    // Escape closes it.
    b.client.execute("document.getElementById('cancel-open').focus(); return true;", vec![]).await.unwrap();
    b.client.active_element().await.unwrap().send_keys(&Key::Enter).await.unwrap();
    assert!(b.client.find(Locator::Css("#cancel-dialog[open]")).await.is_ok(), "Enter opens the confirmation");
    let focused = b.client.active_element().await.unwrap().attr("id").await.unwrap();
    assert_eq!(focused.as_deref(), Some("cancel-keep"), "focus on keeping the job");
    b.client.active_element().await.unwrap().send_keys(&Key::Escape).await.unwrap();
    assert!(b.client.find(Locator::Css("#cancel-dialog[open]")).await.is_err(), "Escape closes it");
    // By mouse.
    b.click("#cancel-open").await;
    assert!(b.client.find(Locator::Css("#cancel-dialog[open]")).await.is_ok(), "the confirmation opens");
    b.screenshot("cancel").await;
    b.click("#cancel-keep").await;
    assert!(b.client.find(Locator::Css("#cancel-dialog[open]")).await.is_err(), "kept running");
    let (_, job) = app.get_json_with(&format!("/jobs/{held_id}"), TOKEN).await;
    assert_eq!(job["status"], "running", "{job}");
    b.click("#cancel-open").await;
    b.click("#cancel-confirm").await;
    b.wait_text("#job-status .badge", "cancelled").await.unwrap();
    let (_, job) = app.get_json_with(&format!("/jobs/{held_id}"), TOKEN).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(b.client.find(Locator::Css("#cancel-open")).await.is_err(), "nothing left to cancel");

    // At a phone's width every page fits: nothing wider than the screen but the tables, which
    // scroll inside their own box.
    b.client.set_window_size(390, 844).await.unwrap();
    for path in [
        "/ui".to_owned(),
        format!("/ui/jobs/{job_id}"),
        format!("/ui/videos/quickTrees1?job={job_id}"),
        "/ui/ops".into(),
    ] {
        b.client.goto(&app.url(&path)).await.unwrap();
        let fits = "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;";
        assert_eq!(b.client.execute(fits, vec![]).await.unwrap(), Value::Bool(true), "{path} is wider than a phone");
        if path.starts_with("/ui/jobs/") {
            b.screenshot("phone-job").await;
        }
    }
    b.client.set_window_size(1280, 1000).await.unwrap();

    // Signed out: refused again.
    b.click("header form button").await;
    b.wait_path(|p| p == "/ui/sign-in").await;
    b.client.goto(&app.url("/ui/ops")).await.unwrap();
    assert_eq!(b.path().await, "/ui/sign-in");

    held.add_permits(1);
    browser.client.close().await.unwrap();
    app.shutdown().await;
    standin.shutdown().await.unwrap();
}
