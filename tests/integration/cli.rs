//! The `tubesum` binary itself, configured only through the environment, as a user runs it.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use youtube_standin::Segment;
use youtube_standin::media;
use youtube_standin::{StandIn, StandInChannel, StandInVideo};

use crate::helpers::{ct2_model_dir, model_env, poll_until, stdout_of, whisper_model, yt_dlp};

const CHANNEL: &str = "UCclicliclicliclicliclic";

/// The binary under test: this build's, or another build's given as `TEST_TUBESUM_BIN` (the test
/// command runs these tests again against the laptop build's binary).
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("TEST_TUBESUM_BIN").map_or_else(|| env!("CARGO_BIN_EXE_tubesum").into(), Into::into)
}

/// What the binary under test carries, from `tubesum --version`: whether it has PostgreSQL.
async fn has_postgres() -> bool {
    let output = Command::new(binary()).arg("--version").output().await.unwrap();
    let version = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(version.contains("(backends: embedded"), "{version}");
    // Both local engines, in every build the test command makes.
    assert!(version.contains("local whisper: CTranslate2, whisper.cpp)"), "{version}");
    version.contains("postgres")
}

async fn standin(dir: &std::path::Path) -> StandIn {
    let quiet = dir.join("q.m4a");
    media::silence(2.0, &quiet).await.unwrap();
    let captions = vec![
        Segment { start: 0.0, end: 3.0, text: "Volcanoes form where magma reaches the surface.".into() },
        Segment { start: 3.0, end: 6.0, text: "Some erupt explosively while others ooze lava.".into() },
        Segment { start: 6.0, end: 9.0, text: "Ash from large eruptions can cool the whole planet.".into() },
    ];
    let channel = StandInChannel::new(CHANNEL, "CLI")
        .video(StandInVideo::new("cliCaption1", "Volcanoes").media(&quiet, "audio/mp4").captions(captions))
        .video(StandInVideo::new("cliSilence1", "Quiet").media(&quiet, "audio/mp4"));
    StandIn::start(vec![channel]).await.unwrap()
}

fn tubesum(standin: &StandIn, data: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template())
        .env("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template())
        .envs(model_env())
        .env("TUBESUM_DOWNLOAD__YT_DLP", yt_dlp())
        .env("TUBESUM_DATA_DIR", data)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn summarize_writes_markdown_for_a_channel() {
    let dir = tempfile::tempdir().unwrap();
    let standin = standin(dir.path()).await;
    let out = dir.path().join("out");
    let stdout =
        stdout_of(tubesum(&standin, &dir.path().join("data")).args(["summarize", CHANNEL, "--out"]).arg(&out)).await;
    assert!(stdout.contains("completed — 2/2 videos summarized"), "{stdout}");
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert!(index.contains("[Volcanoes](cliCaption1.md)") && index.contains("[Quiet](cliSilence1.md)"), "{index}");
    let video = std::fs::read_to_string(out.join("cliCaption1.md")).unwrap();
    assert!(video.contains("## Key points"), "{video}");
    assert!(video.contains("https://www.youtube.com/watch?v=cliCaption1&t="), "{video}");

    // What was said is searchable from the command line, with the moment's link; the index can
    // be rebuilt from what is stored.
    let search = |args: &[&str]| {
        let mut cmd = tubesum(&standin, &dir.path().join("data"));
        cmd.arg("search").args(args);
        cmd
    };
    let found = stdout_of(&mut search(&["ash cooling the planet"])).await;
    assert!(found.contains("Volcanoes (cliCaption1, transcript)"), "{found}");
    assert!(found.contains("https://www.youtube.com/watch?v=cliCaption1&t=6s"), "{found}");
    assert!(found.contains("«Ash»") && found.contains("«planet»"), "the matches are marked: {found}");
    let rebuilt = search(&["--reindex", "ooze lava"]).output().await.unwrap();
    assert!(rebuilt.status.success());
    assert!(String::from_utf8_lossy(&rebuilt.stderr).contains("reindexed 2 videos"), "{rebuilt:?}");
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("&t=3s"), "{rebuilt:?}");
    let none = stdout_of(&mut search(&["submarine"])).await;
    assert!(none.contains("no passage matches"), "{none}");

    // Invalid input is refused before anything runs.
    let bad = tubesum(&standin, &dir.path().join("data")).args(["summarize", "UCshort"]).output().await.unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid channel \"UCshort\"") && stderr.contains("@name"), "{stderr}");
    // So is an unknown configuration key.
    let typo = tubesum(&standin, &dir.path().join("data"))
        .env("TUBESUM_LLM__BASEURL", "x")
        .args(["summarize", CHANNEL])
        .output()
        .await
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("baseurl"));
}

#[tokio::test]
async fn serve_listens_where_told_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let standin = standin(dir.path()).await;
    let mut child = tubesum(&standin, &dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let address = crate::helpers::listening_url(&mut child).await;

    let client = reqwest::Client::new();
    let health = client.get(format!("{address}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let job_id = crate::helpers::submit_to(&address, CHANNEL).await;
    let job_url = format!("{address}/jobs/{job_id}");
    let done = poll_until(Duration::from_secs(120), || async {
        let job: serde_json::Value = client.get(&job_url).send().await.unwrap().json().await.unwrap();
        job["status"] == "completed"
    })
    .await;
    assert!(done, "job did not complete");

    // SIGTERM: a graceful stop with exit status 0.
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops").unwrap();
    assert!(status.success(), "{status}");
}

/// `tubesum demo`, the README's first command: a local channel made with espeak-ng and ffmpeg,
/// served by the stand-in, summarized end to end by the binary (in whichever build ran the tests).
#[tokio::test]
async fn demo_summarizes_its_local_channel() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stdout = stdout_of(
        Command::new(binary())
            .envs(model_env())
            .env("TUBESUM_DOWNLOAD__YT_DLP", yt_dlp())
            .env("TUBESUM_DATA_DIR", dir.path().join("data"))
            .env("TUBESUM_WHISPER__THREADS", "1")
            .args(["demo", "--out"])
            .arg(&out)
            .stdin(Stdio::null()),
    )
    .await;
    assert!(stdout.contains("completed — 3/3 videos summarized"), "{stdout}");
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert_eq!(index.matches(".md)").count(), 3, "{index}");
}

/// A production backend is refused at start by a build without it, naming the features it lacks,
/// before anything is created; a build with it tries to connect and names the server it tried.
#[tokio::test]
async fn a_production_backend_is_named_at_start_whether_built_in_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let standin = standin(dir.path()).await;
    let output = tubesum(&standin, &dir.path().join("data"))
        .env("TUBESUM_BACKENDS", "production")
        .env("TUBESUM_DATABASE__URL", "postgres://tubesum:hunter2@127.0.0.1:1/nowhere")
        .args(["summarize", CHANNEL])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    if has_postgres().await {
        assert!(stderr.contains("PostgreSQL at postgres://tubesum:***@127.0.0.1:1/nowhere"), "{stderr}");
    } else {
        assert!(stderr.contains("`postgres`") && stderr.contains("ports.store"), "{stderr}");
        assert!(!dir.path().join("data").exists(), "nothing was created before the refusal");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `serve` beyond loopback without a token is refused before it listens, naming the settings; so
/// is an empty token.
#[tokio::test]
async fn serve_refuses_an_open_api_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(binary());
        cmd.env("TUBESUM_DATA_DIR", dir.path()).args(["serve", "--listen", "0.0.0.0:0"]).kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let open = serve(&[]).await.unwrap();
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(!open.status.success(), "{stderr}");
    assert!(stderr.contains("server.api_token") && stderr.contains("server.allow_unauthenticated"), "{stderr}");
    let empty = serve(&[("TUBESUM_SERVER__API_TOKEN", "")]).await.unwrap();
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("must not be empty"));
}

/// `tubesum bench api` reports wrk's load on a small job's page, whole and revalidated, while the
/// job runs and once it has finished (wrk is installed by scripts/setup.sh).
#[tokio::test]
async fn the_api_benchmark_reports_both_loads() {
    let data = tempfile::tempdir().unwrap();
    let report = stdout_of(
        Command::new(binary())
            .args(["bench", "api", "--videos", "20", "--seconds", "1", "--connections", "4"])
            .env("TUBESUM_DATA_DIR", data.path()),
    )
    .await;
    assert!(report.contains("a job of 20 videos"), "{report}");
    for row in [
        "running, whole page (200)",
        "changing, whole page (200)",
        "running, If-None-Match (304)",
        "finished, whole page (200)",
        "finished, If-None-Match (304)",
    ] {
        let line = report.lines().find(|l| l.trim_start().starts_with(row)).unwrap_or_else(|| panic!("{report}"));
        let rate: f64 = line[line.find(')').unwrap() + 1..].split_whitespace().next().unwrap().parse().unwrap();
        assert!(rate > 0.0, "{line}");
    }
}

/// `bench transcription` on the stand-in's speech, two files at once, with the default engine
/// (Whisper on CTranslate2): speed and word error rate per file and over all; on named files, with
/// whisper.cpp, the reference text is read from beside each one.
#[tokio::test]
async fn the_transcription_benchmark_reports_speed_and_word_error_rate() {
    let run = |backend: &'static str, args: Vec<std::ffi::OsString>| async move {
        stdout_of(
            Command::new(binary())
                .args(["bench", "transcription"])
                .args(args)
                .env("TUBESUM_TRANSCRIPTION__BACKEND", backend)
                .env("TUBESUM_WHISPER__MODEL", whisper_model())
                .env("TUBESUM_WHISPER__THREADS", "1")
                .env("TUBESUM_CTRANSLATE2__MODEL", ct2_model_dir()),
        )
        .await
    };
    // "| name | 27.3 s | 1.20 s | 22.7× real time | 4.1 % (3 of 73 words) |" → (speed, WER %).
    let row = |report: &str, name: &str| {
        let line = report.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap_or_else(|| panic!("{report}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let speed: f64 = cells[4].split('×').next().unwrap().parse().unwrap();
        let wer = cells[5].split(' ').next().unwrap().parse::<f64>().ok();
        (speed, wer)
    };

    let kept = tempfile::tempdir().unwrap();
    let report =
        run("ctranslate2", vec!["--workers".into(), "2".into(), "--keep-audio".into(), kept.path().into()]).await;
    assert!(report.contains("engine: Whisper on CTranslate2") && report.contains("2 workers at once"), "{report}");
    for name in ["demoBeesHny", "demoBicycle", "demoSkyBlue", "all"] {
        let (speed, wer) = row(&report, name);
        assert!(speed > 0.0, "{report}");
        // tiny.en on espeak-ng speech: a few words in five (numbers spelled out count).
        assert!(wer.is_some_and(|wer| wer < 40.0), "{report}");
        if name != "all" {
            // The input as transcribed, for another engine: 16 kHz mono WAV and its text.
            let wav = hound::WavReader::open(kept.path().join(format!("{name}.wav"))).unwrap().spec();
            assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
            let text = std::fs::read_to_string(kept.path().join(format!("{name}.txt"))).unwrap();
            assert!(text.split_whitespace().count() > 50, "{text}");
        }
    }
    assert_eq!(std::fs::read_dir(kept.path()).unwrap().count(), 6, "nothing else is left there");

    let dir = tempfile::tempdir().unwrap();
    let (talk, quiet) = (dir.path().join("talk.wav"), dir.path().join("quiet.m4a"));
    let said = "The river carries sand down to the sea.";
    media::speak(said, &talk).await.unwrap();
    std::fs::write(dir.path().join("talk.txt"), said).unwrap();
    media::silence(2.0, &quiet).await.unwrap();
    let report = run("whisper", vec![talk.into(), quiet.into()]).await;
    assert!(report.contains("engine: whisper.cpp"), "{report}");
    assert!(row(&report, "talk.wav").1.is_some_and(|wer| wer < 40.0), "{report}");
    assert!(report.contains("| quiet.m4a | 2.0 s |") && report.contains("no reference text"), "{report}");
}
