//! The web console over HTTP: the jobs list's progress stream, the ops stream and its size for a
//! 1,000-video job, the exports, the channel filter, and the pages' gate (sign-in, forms only
//! from these pages). The browser drives the pages in [`crate::browser`].

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, poll_until};
use crate::live::{Stream, gated_app_of};

const CHANNEL: &str = "UCabcdefghijklmnopqrstuv";
const OTHER: &str = "UCzyxwvutsrqponmlkjihgfe";
const IDS: [&str; 3] = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"];
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_progress_stream_reports_each_job_that_moves_and_jobs_filter_by_channel() {
    let (app, gate) = gated_app_of(&[], &IDS).await;
    let mut stream = Stream::connect(&app, "/progress", None).await;
    let job_id = app.submit(CHANNEL, false).await;
    let first = stream.until("progress").await.pop().unwrap().json();
    assert_eq!(first["job_id"], job_id.as_str(), "{first}");
    gate.add_permits(IDS.len());
    loop {
        let progress = stream.until("progress").await.pop().unwrap().json();
        assert_eq!(progress["job_id"], job_id.as_str(), "{progress}");
        if progress["status"] == "completed" {
            assert_eq!(
                (progress["counts"]["summarized"].as_u64(), progress["counts"]["total"].as_u64()),
                (Some(3), Some(3))
            );
            break;
        }
    }

    let other = app.submit(OTHER, false).await;
    let (status, listed) = app.get_json(&format!("/jobs?channel_id={OTHER}")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!((ids, listed["total"].as_u64()), (vec![other.as_str()], Some(1)));
    let (status, all) = app.get_json("/jobs").await;
    assert_eq!((status, all["total"].as_u64()), (200, Some(2)));
    let (status, refused) = app.get_json("/jobs?channel_id=nope").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_query")), "{refused}");
    app.shutdown().await;
}

#[tokio::test]
async fn summaries_and_transcripts_download_as_markdown_json_srt_and_webvtt() {
    let (app, gate) = gated_app_of(&[], &IDS).await;
    let job_id = app.submit(CHANNEL, false).await;
    gate.add_permits(IDS.len());
    app.wait_for_job(&job_id, DEADLINE).await;
    let get = |path: String| app.client.get(app.url(&path)).send();
    let download = |response: &reqwest::Response| {
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), header("content-type"), header("content-disposition"))
    };

    let md = get(format!("/videos/aaaaaaaaaaa/summary?format=md&job_id={job_id}")).await.unwrap();
    let expected =
        (200, Some("text/markdown; charset=utf-8".into()), Some("attachment; filename=\"aaaaaaaaaaa.md\"".into()));
    assert_eq!(download(&md), expected);
    let md = md.text().await.unwrap();
    assert!(md.starts_with("# video aaaaaaaaaaa\n"), "the title from the job's record: {md}");
    assert!(
        md.contains("- [00:00](https://www.youtube.com/watch?v=aaaaaaaaaaa&t=0s) This is video aaaaaaaaaaa."),
        "{md}"
    );

    let srt = get("/videos/aaaaaaaaaaa/transcript?format=srt".into()).await.unwrap();
    assert_eq!(download(&srt).2.as_deref(), Some("attachment; filename=\"aaaaaaaaaaa.srt\""));
    let srt = srt.text().await.unwrap();
    assert!(
        srt.starts_with("1\n00:00:00,000 --> 00:00:05,000\nThis is video aaaaaaaaaaa.\n\n2\n00:00:05,000"),
        "{srt}"
    );
    let vtt = get("/videos/aaaaaaaaaaa/transcript?format=vtt".into()).await.unwrap();
    assert_eq!(download(&vtt).1.as_deref(), Some("text/vtt; charset=utf-8"));
    assert!(vtt.text().await.unwrap().starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nThis is video"));
    let (status, json) = app.get_json("/videos/aaaaaaaaaaa/transcript?format=json").await;
    assert_eq!((status, json["segments"].as_array().map(Vec::len)), (200, Some(2)));

    let (status, refused) = app.get_json("/videos/aaaaaaaaaaa/transcript?format=docx").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_query")), "{refused}");
    let (status, _) = app.get_json("/videos/zzzzzzzzzzz/summary?format=md").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

/// A 1,000-video job with every video waiting at download: the ops view and the job's progress
/// stay a few KB per update (aggregates and one line per job, not one per video). The sizes are
/// printed for the README (`cargo test --test integration console:: -- --nocapture`).
#[tokio::test]
async fn the_consoles_data_per_update_is_bounded_for_a_thousand_video_job() {
    let ids: Vec<String> = (0..1000).map(|i| format!("v{i:010}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (app, gate) = gated_app_of(&[], &refs).await;
    let job_id = app.submit(CHANNEL, false).await;
    let all_waiting = poll_until(DEADLINE, || async {
        let (_, view) = app.get_json(&format!("/jobs/{job_id}")).await;
        view["counts"]["downloading"] == 1000
    })
    .await;
    assert!(all_waiting, "every video dispatched to download");

    let mut ops = Stream::connect(&app, "/ops/events", None).await;
    let view = ops.until("ops").await.pop().unwrap();
    let here = &view.json()["here"];
    let line = here["jobs"].as_array().unwrap().iter().find(|j| j["job_id"] == job_id.as_str()).cloned();
    let line = line.unwrap_or_else(|| panic!("the job's line: {here}"));
    assert_eq!((line["videos"].as_u64(), line["stages"]["download"].as_u64()), (Some(1000), Some(1000)), "{line}");
    assert_eq!(here["actors"]["video"], 1000, "{here}");
    let download = here["pools"].as_array().unwrap().iter().find(|p| p["stage"] == "download").unwrap();
    assert_eq!(download["awaiting"], 1000, "{download}");
    let ops_bytes = view.data.len();

    let mut fragments = Stream::connect(&app, "/ui/ops/live", None).await;
    let fragment = fragments.until("fragment").await.pop().unwrap();
    assert!(fragment.data.contains(&format!("run-{job_id}")), "{}", fragment.data);
    let fragment_bytes = fragment.data.len();

    let mut job = Stream::connect(&app, &format!("/jobs/{job_id}/events"), None).await;
    let progress_bytes = job.until("progress").await.pop().unwrap().data.len();
    eprintln!(
        "per update, 1,000-video job: ops event {ops_bytes} B, ops page fragment {fragment_bytes} B, \
         job progress {progress_bytes} B"
    );
    for (what, bytes, bound) in
        [("ops", ops_bytes, 8_192), ("fragment", fragment_bytes, 16_384), ("progress", progress_bytes, 1_024)]
    {
        assert!(bytes < bound, "{what}: {bytes} B per update");
    }

    // The job's page shows one page of rows, not the whole job.
    let page = app.client.get(app.url(&format!("/ui/jobs/{job_id}"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(page.matches("<tr id=\"v-").count(), 500, "one page of videos");
    let range =
        page.contains(r#"<span id="range-to">500</span> of <span id="range-of" data-filtered="false">1000</span>"#);
    assert!(range && page.contains("offset=500"), "videos 1–500 of 1000, and a link to the next page");
    drop((ops, fragments, job));
    gate.add_permits(1000);
    app.shutdown().await;
}

#[tokio::test]
async fn the_pages_ask_for_the_token_once_and_take_forms_only_from_themselves() {
    let app = TestApp::builder().env(&[("TUBESUM_SERVER__API_TOKEN", "s3cret".into())]).noop_stages(&IDS).spawn().await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = no_redirects.get(app.url("/ui/jobs/x?status=failed")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ui/sign-in?next=/ui/jobs/x%3Fstatus%3Dfailed");

    let origin = app.address.clone();
    let sign_in = |token: &'static str, origin: &str| {
        no_redirects
            .post(app.url("/ui/sign-in"))
            .header("origin", origin)
            .form(&json!({"token": token, "next": "/ui/ops"}))
            .send()
    };
    let wrong = sign_in("nope", &origin).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let wrong = wrong.text().await.unwrap();
    assert!(wrong.contains("That is not this server"), "{wrong}");
    assert_eq!(sign_in("s3cret", "http://evil.example").await.unwrap().status(), 403, "login from another site");
    let signed = sign_in("s3cret", &origin).await.unwrap();
    assert_eq!((signed.status().as_u16(), signed.headers()["location"].to_str().unwrap()), (303, "/ui/ops"));
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();

    let ops = no_redirects.get(app.url("/ui/ops")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(ops.status(), 200);
    assert!(ops.text().await.unwrap().contains("Operations"));
    let submit = |origin: Option<&str>| {
        let mut request =
            no_redirects.post(app.url("/ui/jobs")).header("cookie", &cookie).form(&json!({"channel": CHANNEL}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(submit(Some("http://evil.example")).await.unwrap().status(), 403);
    assert_eq!(submit(None).await.unwrap().status(), 403);
    let made = submit(Some(&origin)).await.unwrap();
    assert_eq!(made.status(), 303);
    let job_page = made.headers()["location"].to_str().unwrap().to_owned();
    assert!(job_page.starts_with("/ui/jobs/"), "{job_page}");
    let bad = no_redirects
        .post(app.url("/ui/jobs"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .form(&json!({"channel": "not a channel"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("That is not a channel"), "the form again, saying what is wrong");

    let out = no_redirects
        .post(app.url("/ui/sign-out"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, _): (u16, Value) = app.get_json("/progress").await;
    assert_eq!(status, 401, "the new streams take the token like the rest of the API");
    app.shutdown().await;
}
