//! End to end on the embedded stack: a local YouTube stand-in (feed + media made here with
//! espeak-ng and ffmpeg), real yt-dlp, real ffmpeg, real whisper (tiny.en), offline summarizer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tubesum::cli::bench::noop;
use tubesum::domain::Stage;
use tubesum::stages::Stages;
use tubesum::stages::discovery::Discovery;
use tubesum::stages::download::Download;
use tubesum::stages::summarization::NO_SPEECH_SUMMARY;
use youtube_standin::media::{self, Container};
use youtube_standin::{StandIn, StandInChannel, StandInVideo, demo};

use crate::helpers::{TestApp, poll_until, standin_env, videos};

const CHANNEL: &str = "UCpipelinepipelinepipeli";

/// The demo's three spoken videos (mp4/AAC, webm/Opus, m4a with captions) plus silence, a
/// music-like tone, a video whose media answers 404, and a broken file.
async fn test_channel(dir: &std::path::Path) -> StandInChannel {
    let spoken = demo::demo_channel(dir).await.expect("espeak-ng and ffmpeg make the demo media");
    let mut channel = StandInChannel::new(CHANNEL, "Pipeline test channel");
    channel.videos = spoken.videos;
    let quiet = dir.join("quiet.m4a");
    media::silence(8.0, &quiet).await.unwrap();
    let music = dir.join("music.webm");
    media::tone(8.0, 220, &music).await.unwrap();
    let broken = dir.join("broken.mp4");
    media::garbage(&broken).await.unwrap();
    channel
        .video(StandInVideo::new("silentVideo", "Nothing to hear").media(&quiet, Container::M4a.content_type()))
        .video(StandInVideo::new("musicVideo1", "Only music").media(&music, Container::WebmOpus.content_type()))
        .video(StandInVideo::new("missingMdia", "Gone"))
        .video(StandInVideo::new("brokenMedia", "Broken upload").media(&broken, "video/mp4"))
}

fn by_id<'a>(job: &'a Value, id: &str) -> &'a Value {
    job["videos"].as_array().unwrap().iter().find(|v| v["video_id"] == id).unwrap_or_else(|| panic!("{id} missing"))
}

#[tokio::test]
async fn a_channel_is_transcribed_and_summarized_end_to_end() {
    let media_dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(vec![test_channel(media_dir.path()).await]).await.unwrap();
    let app = TestApp::builder().env(&standin_env(&standin)).spawn().await;

    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "completed_with_errors", "{job:#}");
    assert_eq!(job["counts"]["total"], 7);
    assert_eq!(job["counts"]["summarized"], 5, "{job:#}");
    assert_eq!(job["counts"]["failed"], 2, "{job:#}");
    assert_eq!(by_id(&job, "demoBicycle")["title"], "A Short History of the Bicycle");
    assert!(by_id(&job, "demoBicycle")["published_at"].is_string());

    // Whisper on mp4/AAC and webm/Opus speech.
    for (id, words) in [("demoBicycle", ["bicycle", "wheel"]), ("demoSkyBlue", ["blue", "light"])] {
        let (status, t) = app.get_json(&format!("/videos/{id}/transcript")).await;
        assert_eq!(status, 200);
        assert_eq!(t["source"], "whisper", "{id}");
        let text = t["text"].as_str().unwrap().to_lowercase();
        for word in words {
            assert!(text.contains(word), "{id}: {word:?} not in {text:?}");
        }
        let segments = t["segments"].as_array().unwrap();
        assert!(segments.len() >= 2, "{t:#}");
        assert!(segments.windows(2).all(|w| w[0]["start"].as_f64() <= w[1]["start"].as_f64()));
        let (_, s) = app.get_json(&format!("/videos/{id}/summary")).await;
        assert_eq!(s["summarizer"], "textrank");
        assert!(!s["summary"].as_str().unwrap().is_empty());
        let starts: Vec<f64> = segments.iter().map(|s| s["start"].as_f64().unwrap()).collect();
        for point in s["key_points"].as_array().unwrap() {
            let start = point["start"].as_f64().unwrap();
            assert!(starts.contains(&start), "key point start {start} is not a segment start");
            let url = format!("https://www.youtube.com/watch?v={id}&t={}s", start.floor() as u64);
            assert_eq!(point["url"], url.as_str());
        }
    }
    // Captions first: the mp4 with captions was never downloaded nor transcribed.
    let (_, t) = app.get_json("/videos/demoBeesHny/transcript").await;
    assert_eq!(t["source"], "captions");
    assert!(t["text"].as_str().unwrap().starts_with("Honey bees make honey from the nectar of flowers."));
    assert!(!standin.requests().iter().any(|r| r.starts_with("/media/demoBeesHny")), "{:?}", standin.requests());

    // Silence and music: no invented text, a summary that says so.
    for id in ["silentVideo", "musicVideo1"] {
        let (_, t) = app.get_json(&format!("/videos/{id}/transcript")).await;
        assert_eq!(t["text"], "", "{id} invented {t:#}");
        let (_, s) = app.get_json(&format!("/videos/{id}/summary")).await;
        assert_eq!(s["summary"], NO_SPEECH_SUMMARY, "{id}");
        assert_eq!(s["key_points"].as_array().unwrap().len(), 0);
    }

    // Failures say why.
    let missing = by_id(&job, "missingMdia");
    assert_eq!(missing["status"], "failed");
    assert!(missing["error"].as_str().unwrap().contains("404"), "{missing:#}");
    let broken = by_id(&job, "brokenMedia");
    assert_eq!(broken["status"], "failed");
    assert!(broken["error"].as_str().unwrap().contains("ffmpeg"), "{broken:#}");
    assert_eq!(broken["attempts"], 1, "a permanent error is not retried");

    // Resubmitting reuses what was summarized: no new download or transcription.
    let before = standin.requests().len();
    let again = app.submit(CHANNEL, false).await;
    let job2 = app.wait_for_job(&again, Duration::from_secs(120)).await;
    assert_eq!(job2["counts"]["summarized"], 5);
    let new_requests: Vec<String> = standin.requests()[before..].to_vec();
    for id in ["demoBeesHny", "demoBicycle", "demoSkyBlue", "silentVideo", "musicVideo1"] {
        assert!(!new_requests.iter().any(|r| r.contains(id)), "{id} fetched again: {new_requests:?}");
        let (_, t) = app.get_json(&format!("/videos/{id}/transcript")).await;
        assert_eq!(t["job_id"], job_id.as_str(), "{id} was transcribed again");
    }
    // No media is left behind after transcription.
    let media = app.data.path().join("media");
    let leftovers: Vec<_> =
        std::fs::read_dir(&media).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .map(|n| n.to_string_lossy())
            .all(|n| n.starts_with("brokenMedia") || n.starts_with("missingMdia") || n == ".locks"),
        "{leftovers:?}"
    );

    app.shutdown().await;
    standin.shutdown().await.unwrap();
}

/// What people paste: a channel URL or a handle (resolved through the channel's page); a handle
/// nobody has is a 404 before any job exists.
#[tokio::test]
async fn a_channel_is_submitted_by_its_url_or_its_handle() {
    let standin = StandIn::start(vec![StandInChannel::new(CHANNEL, "Handled").handle("PipelineTest")]).await.unwrap();
    let app = TestApp::builder().env(&standin_env(&standin)).spawn().await;
    let post =
        |channel: &str| app.client.post(app.url("/jobs")).json(&serde_json::json!({ "channel_id": channel })).send();
    for input in [format!("https://www.youtube.com/channel/{CHANNEL}/videos"), "@pipelinetest".into()] {
        let response = post(&input).await.unwrap();
        assert_eq!(response.status(), 202, "{input}");
        let job_id = response.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_owned();
        let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
        assert_eq!(job["channel_id"], CHANNEL, "{input}");
    }
    let jobs_before = app.get_json("/jobs").await.1["total"].clone();
    let response = post("https://www.youtube.com/@nobodyhasthis").await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "channel_not_found", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("@nobodyhasthis"), "{body}");
    let response = post("just some words").await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_channel_id", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("handle"), "says what is accepted: {body}");
    assert_eq!(app.get_json("/jobs").await.1["total"], jobs_before, "no job for either");
    app.shutdown().await;
}

#[tokio::test]
async fn an_unknown_channel_fails_the_job_with_the_reason() {
    let standin = StandIn::start(vec![]).await.unwrap();
    let app = TestApp::builder().env(&standin_env(&standin)).spawn().await;
    let job_id = app.submit("UCnosuchchannelnosuchcha", false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("not found") && error.contains("UCnosuchchannelnosuchcha"), "{error}");
    assert_eq!(videos(&job).len(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_ids_never_reach_youtube() {
    let standin = StandIn::start(vec![]).await.unwrap();
    let app = TestApp::builder().env(&standin_env(&standin)).spawn().await;
    for bad in ["UC123", "../feeds/videos.xml", "UCabcdefghijklmnopqrstu&x=1"] {
        let response =
            app.client.post(app.url("/jobs")).json(&serde_json::json!({"channel_id": bad})).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert!(standin.requests().is_empty(), "{:?}", standin.requests());
    app.shutdown().await;
}

#[tokio::test]
async fn yt_dlp_discovery_lists_the_whole_channel() {
    let media_dir = tempfile::tempdir().unwrap();
    let quiet = media_dir.path().join("q.m4a");
    media::silence(1.0, &quiet).await.unwrap();
    let mut channel = StandInChannel::new(CHANNEL, "Listing");
    for id in ["listVideo01", "listVideo02", "listVideo03"] {
        channel = channel.video(StandInVideo::new(id, format!("Title {id}")).media(&quiet, "audio/mp4"));
    }
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let mut env = standin_env(&standin);
    env.push(("TUBESUM_DISCOVERY__MODE", "yt_dlp".into()));
    // Real discovery (yt-dlp --flat-playlist), instant everything else.
    let app = TestApp::builder()
        .env(&env)
        .stages(|ctx| {
            let real = Stages::real(ctx).unwrap();
            noop::stages(ctx, Vec::new()).with(Stage::Discovery, Arc::clone(&real.discovery))
        })
        .spawn()
        .await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let ids: Vec<String> = videos(&job).into_iter().map(|v| v.0).collect();
    assert_eq!(ids, ["listVideo01", "listVideo02", "listVideo03"]);
    assert_eq!(by_id(&job, "listVideo02")["title"], "Title listVideo02");
    assert!(standin.requests().iter().any(|r| r.starts_with(&format!("/channel/{CHANNEL}/videos"))));

    let unknown = app.submit("UCnosuchchannelnosuchcha", false).await;
    let job = app.wait_for_job(&unknown, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap().contains("not found"), "{job:#}");
    app.shutdown().await;
}

/// The stand-in video ids a request asked for (`/watch?v=…`, `/media/….m4a`).
fn queued_ids_in(requests: &[String]) -> std::collections::HashSet<String> {
    let pattern = regex::Regex::new(r"queued\d{5}").unwrap();
    requests.iter().flat_map(|r| pattern.find_iter(r).map(|m| m.as_str().to_owned())).collect()
}

/// A video longer than `download.max_duration_secs` fails with the reason, and none of its media
/// is downloaded; one whose page does not state its length fails once its audio shows it; a short
/// one beside them is summarized.
#[tokio::test]
async fn a_video_over_the_duration_limit_fails_before_its_media_is_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.m4a");
    media::silence(2.0, &quiet).await.unwrap();
    let longer = dir.path().join("longer.m4a");
    media::silence(6.0, &longer).await.unwrap();
    let m4a = Container::M4a.content_type();
    let channel = StandInChannel::new(CHANNEL, "Long and short")
        .video(StandInVideo::new("longVideo01", "Two hours").media(&quiet, m4a).duration_secs(7200))
        .video(StandInVideo::new("noLength001", "Six seconds, unstated").media(&longer, m4a))
        .video(StandInVideo::new("shortVideo1", "Two seconds").media(&quiet, m4a).duration_secs(2));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let mut env = standin_env(&standin);
    env.push(("TUBESUM_DOWNLOAD__MAX_DURATION_SECS", "4".into()));
    let app = TestApp::builder().env(&env).spawn().await;

    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed_with_errors", "{job:#}");
    let long = by_id(&job, "longVideo01");
    assert_eq!((long["status"].as_str(), long["attempts"].as_u64()), (Some("failed"), Some(1)), "{job:#}");
    let error = long["error"].as_str().unwrap();
    assert!(error.contains("2 h 00 min 00 s") && error.contains("download.max_duration_secs = 4"), "{error}");
    let unstated = by_id(&job, "noLength001");
    assert_eq!(unstated["status"], "failed", "{job:#}");
    let error = unstated["error"].as_str().unwrap();
    assert!(error.contains("is 6 s long") && error.contains("download.max_duration_secs = 4"), "{error}");
    assert_eq!(by_id(&job, "shortVideo1")["status"], "summarized", "{job:#}");
    // yt-dlp -J opens the media URL a JSON-LD page links once, to identify it; the download is a
    // request more. The long video had the first and not the second.
    let requests = standin.requests();
    let media_requests = |id: &str| requests.iter().filter(|r| r.starts_with(&format!("/media/{id}"))).count();
    assert_eq!(media_requests("shortVideo1"), 2, "{requests:#?}");
    assert_eq!(media_requests("longVideo01"), 1, "the long video was downloaded: {requests:#?}");
    app.shutdown().await;
}

/// The same channel submitted twice at once: both jobs complete, and this host downloads (and
/// fetches the page of) each video once for both: the second job waits for the first's work and
/// reuses it instead of racing it on the shared media directory. No media is left afterwards.
#[tokio::test]
async fn the_same_channel_twice_at_once_is_downloaded_once_and_both_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut channel = StandInChannel::new(CHANNEL, "Submitted twice");
    channel.videos = demo::demo_channel(dir.path()).await.expect("demo media").videos;
    let ids: Vec<String> = channel.videos.iter().map(|v| v.id.clone()).collect();
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let mut env = standin_env(&standin);
    env.push(("TUBESUM_STAGES__DOWNLOAD__WORKERS", "2".into()));
    let app = TestApp::builder().env(&env).spawn().await;

    let (first, second) = tokio::join!(app.submit(CHANNEL, false), app.submit(CHANNEL, false));
    for job_id in [&first, &second] {
        let job = app.wait_for_job(job_id, Duration::from_secs(600)).await;
        assert_eq!(job["status"], "completed", "{job:#}");
        assert_eq!(job["counts"]["summarized"], ids.len(), "{job:#}");
    }
    // One download is two requests of the watch URL for a video without captions (the stand-in
    // serves its media there: yt-dlp reads it with -J, then fetches it), the watch page and the
    // captions for one with captions.
    let requests = standin.requests();
    for id in &ids {
        let count = |prefix: &str| requests.iter().filter(|r| r.starts_with(&format!("{prefix}{id}"))).count();
        let (watch, captions) = (count("/watch?v="), count("/captions/"));
        let once = if captions > 0 { (1, 1) } else { (2, 0) };
        assert_eq!((watch, captions), once, "{id} downloaded more than once: {requests:#?}");
    }
    let media = app.data.path().join("media");
    let left = || -> Vec<String> {
        std::fs::read_dir(&media)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|name| !name.starts_with('.'))
            .collect()
    };
    let gone = poll_until(Duration::from_secs(30), || async { left().is_empty() }).await;
    assert!(gone, "media left after both jobs: {:?}", left());
    app.shutdown().await;
}

/// Cancel while 20 downloads wait in the queue: no download starts after the cancel (the queued
/// commands are dropped when taken, the running one is stopped), and the job's media is deleted.
#[tokio::test]
async fn a_cancelled_job_starts_no_more_downloads_and_leaves_no_media() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.m4a");
    media::silence(2.0, &quiet).await.unwrap();
    let mut channel = StandInChannel::new(CHANNEL, "A long queue");
    for i in 0..22 {
        let video = StandInVideo::new(format!("queued{i:05}"), format!("Queued {i}"));
        channel = channel.video(video.media(&quiet, Container::M4a.content_type()));
    }
    let after = StandInChannel::new("UCaftercancelaftercancel", "Submitted after the cancel")
        .video(StandInVideo::new("afterCancel", "After").media(&quiet, Container::M4a.content_type()));
    let standin = StandIn::start(vec![channel, after]).await.unwrap();
    let mut env = standin_env(&standin);
    env.push(("TUBESUM_STAGES__DOWNLOAD__WORKERS", "1".into()));
    let app = TestApp::builder().env(&env).spawn().await;

    let job_id = app.submit(CHANNEL, false).await;
    let started = || async { queued_ids_in(&standin.requests()).len() >= 2 };
    assert!(poll_until(Duration::from_secs(120), started).await, "downloads never started");
    let response = app.client.delete(app.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let before_cancel = queued_ids_in(&standin.requests());
    assert!(before_cancel.len() < 20, "the queue ran dry before the cancel: {before_cancel:?}");

    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "cancelled", "{job:#}");
    // One download worker takes commands in order: once a job submitted after the cancel is done,
    // every command the cancelled job left in the queue was taken, and dropped.
    let next = app.submit("UCaftercancelaftercancel", false).await;
    let next = app.wait_for_job(&next, Duration::from_secs(300)).await;
    assert_eq!(next["status"], "completed", "{next:#}");
    let all = queued_ids_in(&standin.requests());
    let late: Vec<_> = all.difference(&before_cancel).collect();
    assert!(late.is_empty(), "downloads started after the cancel: {late:?}");

    let media = app.data.path().join("media");
    let leftovers = || {
        std::fs::read_dir(&media)
            .map(|dir| dir.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("queued")).count())
            .unwrap_or(0)
    };
    assert!(
        poll_until(Duration::from_secs(30), || async { leftovers() == 0 }).await,
        "media left of the cancelled job"
    );
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    let unfinished = [
        "discovered",
        "downloading",
        "downloaded",
        "extracting_audio",
        "audio_extracted",
        "transcribing",
        "transcribed",
        "summarizing",
    ];
    for status in unfinished {
        assert_eq!(job["counts"][status], 0, "{status}: {:#}", job["counts"]);
    }
    app.shutdown().await;
}

/// `discovery.mode = "data_api"`: the uploads playlist is paged through (120 videos, three pages
/// of 50) with each page's durations, the key travels in a header, never in a URL; a spent quota
/// fails the listing with a retryable error that says so; a video listed longer than
/// `download.max_duration_secs` fails before yt-dlp is asked about it.
#[tokio::test]
async fn data_api_discovery_pages_through_the_uploads_playlist() {
    const LONG_CHANNEL: &str = "UClonglonglonglonglonglo";
    let mut channel = StandInChannel::new(CHANNEL, "Data API");
    for i in 0..120 {
        channel =
            channel.video(StandInVideo::new(format!("dataApi{i:04}"), format!("Upload {i}")).duration_secs(60 + i));
    }
    let long = StandInChannel::new(LONG_CHANNEL, "Long")
        .video(StandInVideo::new("tooLongVid1", "Three hours").duration_secs(3 * 3600 + 5));
    let standin = StandIn::start(vec![channel, long]).await.unwrap();
    // (The real download, where it runs, asks yt-dlp: only the over-long video's job has it.)
    let app_with = |key: &str, download: bool| {
        let mut env = standin_env(&standin);
        env.push(("TUBESUM_DISCOVERY__MODE", "data_api".into()));
        env.push(("TUBESUM_YOUTUBE__DATA_API_URL", standin.data_api_url()));
        env.push(("TUBESUM_YOUTUBE__API_KEY", key.to_owned()));
        env.push(("TUBESUM_STAGES__MAX_ATTEMPTS", "2".into()));
        env.push(("TUBESUM_DOWNLOAD__MAX_DURATION_SECS", "3600".into()));
        TestApp::builder()
            .env(&env)
            .stages(move |ctx| {
                let discovery = Discovery::new(ctx.clone()).unwrap();
                let stages = noop::stages(ctx, Vec::new()).with(Stage::Discovery, Arc::new(discovery));
                if download {
                    stages.with(Stage::Download, Arc::new(Download::new(ctx.clone()).unwrap()))
                } else {
                    stages
                }
            })
            .spawn()
    };
    let app = app_with("stand-in-key", false).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!((job["status"].as_str(), job["counts"]["total"].as_u64()), (Some("completed"), Some(120)), "{job:#}");
    assert_eq!(job["videos"][0]["title"], "Upload 0", "the playlist's order");
    assert_eq!(job["videos"][119]["video_id"], "dataApi0119");
    assert_eq!(
        (job["videos"][0]["duration_secs"].as_u64(), job["videos"][119]["duration_secs"].as_u64()),
        (Some(60), Some(179))
    );
    let requests = standin.requests();
    let pages: Vec<&String> = requests.iter().filter(|r| r.starts_with("/youtube/v3/playlistItems")).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages[1].contains("pageToken=page-50") && pages[2].contains("pageToken=page-100"), "{pages:?}");
    let durations: Vec<&String> = requests.iter().filter(|r| r.starts_with("/youtube/v3/videos")).collect();
    assert_eq!(durations.len(), 3, "one durations call a page: {durations:?}");
    assert!(!requests.iter().any(|r| r.contains("stand-in-key")), "the key is never in a URL: {requests:?}");
    app.shutdown().await;

    let app = app_with("stand-in-key", true).await;
    let job_id = app.submit(LONG_CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    let video = by_id(&job, "tooLongVid1");
    assert_eq!((video["status"].as_str(), video["duration_secs"].as_u64()), (Some("failed"), Some(3 * 3600 + 5)));
    let error = video["error"].as_str().unwrap_or_default();
    assert!(error.contains("3 h 00 min 05 s") && error.contains("as discovery listed it"), "{error}");
    let asked = standin.requests().into_iter().filter(|r| r.contains("tooLongVid1") && !r.starts_with("/youtube/v3/"));
    assert_eq!(asked.count(), 0, "yt-dlp never asked about the over-long video");
    app.shutdown().await;

    let spent = app_with(youtube_standin::data_api::QUOTA_EXCEEDED_KEY, false).await;
    let job_id = spent.submit(CHANNEL, false).await;
    let job = spent.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("quotaExceeded") && error.contains("tried again later"), "{error}");
    let (_, attempts) = spent.get_json(&format!("/jobs/{job_id}/attempts")).await;
    assert_eq!(attempts["total"], 2, "retried: {attempts:#}");
    spent.shutdown().await;
    standin.shutdown().await.unwrap();
}

/// Search finds a phrase spoken in a video (whisper's transcript, real speech) and links to within
/// 2 s of where it is spoken; the summary is searchable too.
#[tokio::test]
async fn search_finds_a_spoken_phrase_and_links_to_its_moment() {
    let dir = tempfile::tempdir().unwrap();
    let sentences = [
        "The lighthouse keeper climbed the tower every evening.",
        "He polished the great glass lens until it shone.",
        "Sailors far out at sea could see the bright beam.",
    ];
    let wav = dir.path().join("lighthouse.wav");
    let spoken = media::speak_script(&sentences, &wav).await.unwrap();
    let m4a = dir.path().join("lighthouse.m4a");
    media::encode(&wav, &m4a, Container::M4a).await.unwrap();
    let channel = StandInChannel::new(CHANNEL, "Search test")
        .video(StandInVideo::new("lighthouse1", "The lighthouse").media(&m4a, Container::M4a.content_type()));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let app = TestApp::builder().env(&standin_env(&standin)).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(300)).await;
    assert_eq!(job["counts"]["summarized"], 1, "{job:#}");

    // (tiny.en hears "the bright beam" as "the right mean": the words searched for are ones it gets.)
    let (status, found) = app.get_json("/search?q=sailors%20at%20sea").await;
    assert_eq!(status, 200, "{found}");
    let hit = found["hits"].as_array().unwrap().iter().find(|h| h["kind"] == "transcript").cloned();
    let hit = hit.unwrap_or_else(|| panic!("the spoken phrase is found: {found:#}"));
    assert_eq!((hit["video_id"].as_str(), hit["title"].as_str()), (Some("lighthouse1"), Some("The lighthouse")));
    let start = hit["start"].as_f64().unwrap();
    assert!((start - spoken[2].start).abs() <= 2.0, "found at {start} s, spoken at {} s", spoken[2].start);
    assert_eq!(hit["url"], format!("https://www.youtube.com/watch?v=lighthouse1&t={}s", start.floor() as u64));
    assert!(hit["snippet_html"].as_str().unwrap().contains("<mark>"), "{hit}");
    assert_eq!(hit["channel_id"], CHANNEL);

    let (_, in_channel) = app.get_json(&format!("/search?q=tower%20evening&channel_id={CHANNEL}")).await;
    assert!(in_channel["hits"].as_array().unwrap().iter().any(|h| h["kind"] == "summary"), "{in_channel:#}");
    let (_, elsewhere) = app.get_json("/search?q=tower&channel_id=UCzzzzzzzzzzzzzzzzzzzzzz").await;
    assert_eq!(elsewhere["hits"], serde_json::json!([]));
    let (status, blank) = app.get_json("/search?q=%20").await;
    assert_eq!((status, &blank["hits"]), (200, &serde_json::json!([])), "nothing to look for, nothing found");
    let (status, refused) = app.get_json("/search?q=tower&channel_id=@handle").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_query")));
    let page = app.client.get(app.url("/ui/search?q=sailors")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<mark>") && page.contains("watch?v=lighthouse1&amp;t="), "the console's search: {page}");
    app.shutdown().await;
    standin.shutdown().await.unwrap();
}
