//! Live views: Server-Sent Events (`GET /events`, `GET /jobs/{id}/events` — order, progress,
//! end, resumption with `Last-Event-ID`, keep-alives, auth) and a job's actors
//! (`GET /jobs/{id}/actors`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tubesum::cli::bench::noop;
use tubesum::domain::StageCommand;
use tubesum::stages::{StageResult, StageWork};

use crate::helpers::{TestApp, metas, poll_until};

const CHANNEL: &str = "UCabcdefghijklmnopqrstuv";
const IDS: [&str; 3] = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"];
const DEADLINE: Duration = Duration::from_secs(30);

/// One message of a stream: its id, type and data (comments are counted apart).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

impl Message {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A `text/event-stream` response read message by message.
pub(crate) struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    comments: usize,
}

impl Stream {
    async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>, token: Option<&str>) -> reqwest::Response {
        let mut request = app.client.get(app.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn connect(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Stream {
        let response = Self::open(app, path, last_event_id, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream", "{path}");
        Stream { body: response.bytes_stream().boxed(), buffer: String::new(), comments: 0 }
    }

    /// The next message; `None` when the stream ended. Panics after the deadline.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(DEADLINE, self.read()).await.expect("a message within the deadline")
    }

    async fn read(&mut self) -> Option<Message> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message { id: None, event: "message".into(), data: String::new() };
                let mut fields = 0;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.trim_start()));
                    fields += 1;
                    match field {
                        "id" => message.id = Some(value.to_owned()),
                        "event" => message.event = value.to_owned(),
                        "data" => message.data.push_str(value),
                        _ => {}
                    }
                }
                if fields > 0 {
                    return Some(message);
                }
            }
            let chunk = self.body.next().await?.expect("the stream reads");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Messages up to and including the first of type `event`.
    pub(crate) async fn until(&mut self, event: &str) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let message = self.next().await.unwrap_or_else(|| panic!("ended before `{event}`: {seen:?}"));
            let last = message.event == event;
            seen.push(message);
            if last {
                return seen;
            }
        }
    }
}

/// Download waits for the gate's permits: the job stays running until the test opens it.
pub(crate) struct Gated {
    pub(crate) inner: Arc<dyn StageWork>,
    pub(crate) gate: Arc<Semaphore>,
}

#[async_trait]
impl StageWork for Gated {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let _ = self.gate.acquire().await;
        self.inner.run(command).await
    }
}

async fn gated_app(env: &[(&str, String)]) -> (TestApp, Arc<Semaphore>) {
    gated_app_of(env, &IDS).await
}

/// An app whose discovery lists `ids` and whose downloads wait for the gate's permits.
pub(crate) async fn gated_app_of(env: &[(&str, String)], ids: &[&str]) -> (TestApp, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let videos = metas(ids);
    let app = TestApp::builder()
        .env(env)
        .stages(move |ctx| {
            let mut stages = noop::stages(ctx, videos);
            stages.download = Arc::new(Gated { inner: stages.download, gate: held });
            stages
        })
        .spawn()
        .await;
    (app, gate)
}

/// Each video's results in stage order, `job_finished` after all of them, ids increasing, no
/// event twice.
fn assert_in_order(events: &[Message]) {
    let order = [
        "video_discovered",
        "video_downloaded",
        "audio_extracted",
        "transcription_completed",
        "summarization_completed",
    ];
    let mut reached: HashMap<String, usize> = HashMap::new();
    let mut ids = HashSet::new();
    let mut last_seq = 0;
    for message in events.iter().filter(|m| m.id.is_some()) {
        let event = message.json();
        assert!(ids.insert(event["event_id"].as_str().unwrap().to_owned()), "{message:?} twice");
        let seq: u64 = message.id.as_ref().unwrap().rsplit_once('-').unwrap().1.parse().unwrap();
        assert!(seq > last_seq, "ids increase: {events:?}");
        last_seq = seq;
        assert_eq!(event["type"], message.event.as_str(), "the message's type is the event's");
        if let Some(at) = order.iter().position(|kind| *kind == message.event) {
            let video = event["video_id"].as_str().unwrap().to_owned();
            let before = reached.insert(video.clone(), at);
            assert!(before.is_none_or(|b| b < at), "{video}: {} after a later stage", message.event);
        }
        if message.event == "job_finished" {
            assert!(IDS.iter().all(|v| reached.get(*v) == Some(&4)), "job_finished before every summary: {events:?}");
        }
    }
}

#[tokio::test]
async fn a_jobs_stream_shows_its_events_in_order_its_progress_and_its_end() {
    let (app, gate) = gated_app(&[]).await;
    let job_id = app.submit(CHANNEL, false).await;
    let mut stream = Stream::connect(&app, &format!("/jobs/{job_id}/events"), None).await;
    let first = stream.next().await.unwrap();
    assert_eq!((first.event.as_str(), first.id.as_ref()), ("progress", None), "{first:?}");
    assert_eq!(first.json()["job_id"], job_id.as_str());
    assert!(first.json()["counts"]["total"].is_u64(), "{first:?}");
    gate.add_permits(IDS.len());

    let seen = stream.until("end").await;
    assert!(stream.next().await.is_none(), "the stream closes after `end`");
    assert_eq!(seen.last().unwrap().data, "completed");
    assert_in_order(&seen);
    let kinds: Vec<&str> = seen.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "summarization_completed").count(), IDS.len(), "{kinds:?}");
    assert!(kinds.contains(&"job_finished"), "{kinds:?}");
    let progress = seen.iter().rev().find(|m| m.event == "progress").expect("a progress before the end");
    let counts = &progress.json()["counts"];
    assert_eq!((counts["total"].as_u64(), counts["summarized"].as_u64()), (Some(3), Some(3)), "{progress:?}");
    assert_eq!(progress.json()["status"], "completed");
    // Progress is spaced out: far fewer readings than events.
    assert!(kinds.iter().filter(|k| **k == "progress").count() < kinds.len() / 2, "{kinds:?}");

    // An ended job's stream: where it stands, and the end. Resumed, with what was missed first.
    let mut again = Stream::connect(&app, &format!("/jobs/{job_id}/events"), None).await;
    let kinds: Vec<String> = [again.next().await, again.next().await, again.next().await]
        .into_iter()
        .map(|m| m.map_or("(closed)".into(), |m| m.event))
        .collect();
    assert_eq!(kinds, ["progress", "end", "(closed)"]);
    let ids: Vec<&Message> = seen.iter().filter(|m| m.id.is_some()).collect();
    let resume_at = ids.len() - 3;
    let mut resumed = Stream::connect(&app, &format!("/jobs/{job_id}/events"), ids[resume_at].id.as_deref()).await;
    let replay: Vec<Message> = resumed.until("end").await.into_iter().filter(|m| m.id.is_some()).collect();
    let expected: Vec<Message> = ids[resume_at + 1..].iter().map(|m| (*m).clone()).collect();
    assert_eq!(replay, expected, "what came after the Last-Event-ID, nothing else");

    let (status, _) = app.get_json("/jobs/0190f3b2-1111-7000-8000-000000000000/events").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_resumes_after_the_last_event_id_without_gaps_or_repeats() {
    let env = [("TUBESUM_SERVER__EVENTS_KEEP_ALIVE_MS", "50".to_owned())];
    let (app, gate) = gated_app(&env).await;
    let mut stream = Stream::connect(&app, "/events", None).await;
    let job_id = app.submit(CHANNEL, false).await;
    gate.add_permits(IDS.len());
    let seen = stream.until("job_finished").await;
    assert!(seen.iter().all(|m| m.json()["job_id"] == job_id.as_str()), "{seen:?}");
    assert_in_order(&seen);
    assert_eq!(seen.len(), 1 + IDS.len() * 5 + 1, "discovery_completed, five per video, job_finished: {seen:?}");

    // Idle: keep-alive comments, no messages.
    let comments = stream.comments;
    let more = tokio::time::timeout(Duration::from_millis(500), stream.read()).await;
    assert!(more.is_err(), "nothing more to say: {more:?}");
    assert!(stream.comments > comments, "keep-alives while idle");

    // Reconnect after the fourth: exactly the rest, in order.
    let mut resumed = Stream::connect(&app, "/events", seen[3].id.as_deref()).await;
    let mut replay = Vec::new();
    while replay.len() < seen.len() - 4 {
        replay.push(resumed.next().await.unwrap());
    }
    assert_eq!(replay, seen[4..], "no gap, no repeat");
    assert!(tokio::time::timeout(Duration::from_millis(300), resumed.read()).await.is_err(), "and nothing more");

    // An id this process never gave (or no longer keeps): reset, then live.
    let mut reset = Stream::connect(&app, "/events", Some("0badcafe-3")).await;
    assert_eq!(reset.next().await.unwrap().event, "reset");
    app.shutdown().await;
}

#[tokio::test]
async fn event_streams_take_the_api_token() {
    let token = "s3cret";
    let app = TestApp::builder().env(&[("TUBESUM_SERVER__API_TOKEN", token.into())]).noop_stages(&IDS).spawn().await;
    let refused = Stream::open(&app, "/events", None, None).await;
    assert_eq!(refused.status(), 401);
    let refused = Stream::open(&app, "/jobs/0190f3b2-1111-7000-8000-000000000000/events", None, Some("nope")).await;
    assert_eq!(refused.status(), 401);
    let taken = Stream::open(&app, "/events", None, Some(token)).await;
    assert_eq!(taken.status(), 200);
    drop(taken);
    // An open stream does not keep the server from stopping.
    let _open = Stream::open(&app, "/events", None, Some(token)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_running_jobs_video_actors_are_listed_with_the_stage_each_waits_for() {
    let (app, gate) = gated_app(&[]).await;
    let job_id = app.submit(CHANNEL, false).await;
    let path = format!("/jobs/{job_id}/actors");
    let waiting_on_download = poll_until(DEADLINE, || async {
        let (_, view) = app.get_json(&path).await;
        view["actors"].as_array().is_some_and(|a| a.len() == IDS.len() && a.iter().all(|v| v["stage"] == "download"))
    })
    .await;
    let (status, view) = app.get_json(&path).await;
    assert!(waiting_on_download, "{view}");
    assert_eq!((status, view["here"].as_bool(), view["restarting"].as_u64()), (200, Some(true), Some(0)), "{view}");
    let first = &view["actors"][0];
    assert_eq!((first["video_id"].as_str(), first["status"].as_str()), (Some(IDS[0]), Some("running")), "{view}");
    assert_eq!((first["restarts"].as_u64(), first["mailbox"].as_u64()), (Some(0), Some(0)), "{view}");
    assert!(first["uptime_ms"].is_u64(), "{view}");

    gate.add_permits(IDS.len());
    app.wait_for_job(&job_id, DEADLINE).await;
    let ended = poll_until(DEADLINE, || async { app.get_json(&path).await.1["here"] == false }).await;
    let (_, view) = app.get_json(&path).await;
    assert!(ended && view["actors"].as_array().is_some_and(Vec::is_empty), "an ended job has no actors: {view}");
    let (status, _) = app.get_json("/jobs/0190f3b2-1111-7000-8000-000000000000/actors").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}
