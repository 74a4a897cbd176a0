//! The LLM path against an OpenAI-compatible test server that records what it is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use youtube_standin::Segment;
use youtube_standin::media;
use youtube_standin::{StandIn, StandInChannel, StandInVideo};

use crate::helpers::{TestApp, model_env};

const CHANNEL: &str = "UCllmllmllmllmllmllmllml";

/// A chat-completions server: map requests (numbered segments) get a JSON summary citing the
/// first segment they contain; merge requests get a fixed merged summary.
struct FakeLlm {
    base_url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

async fn chat(State(requests): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>) -> Json<Value> {
    requests.lock().unwrap().push(body.clone());
    let user =
        body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    let content = if system.contains("recurring topics") {
        json!({"topics": [{"topic": "Bees and honey", "points": [1, 2, 999]}]}).to_string()
    } else if user.starts_with("Question:") {
        // An answer citing the passage that talks of pruning, and one that does not exist.
        let cited = user
            .lines()
            .find(|l| l.starts_with('[') && l.contains("prune"))
            .and_then(|l| l.split(']').next())
            .unwrap_or("[0");
        format!("Gardeners prune in autumn {cited}]. Nothing else says so [99].")
    } else if user.starts_with("Part 1:") {
        json!({"summary": "MERGED SUMMARY of the whole video."}).to_string()
    } else {
        let first = user.split(']').next().unwrap_or("[0").trim_start_matches('[').trim().parse::<u64>().unwrap_or(0);
        let answer = json!({
            "summary": format!("Part starting at segment {first}."),
            "key_points": [{"text": format!("point from segment {first}"), "segment": first}]
        });
        format!("```json\n{answer}\n```")
    };
    Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
}

impl FakeLlm {
    async fn start() -> FakeLlm {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLlm { base_url: format!("http://{addr}/v1"), requests }
    }

    fn user_messages(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn long_captions() -> Vec<Segment> {
    (0..60)
        .map(|i| Segment {
            start: f64::from(i) * 7.5,
            end: f64::from(i) * 7.5 + 7.0,
            text: format!("Sentence number {i} explains another detail about orbital mechanics and rocket engines."),
        })
        .collect()
}

#[tokio::test]
async fn a_long_transcript_is_chunked_and_merged_by_the_llm() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("q.m4a");
    media::silence(1.0, &quiet).await.unwrap();
    let captions = long_captions();
    let channel = StandInChannel::new(CHANNEL, "LLM")
        .video(StandInVideo::new("longCaption", "Rockets").media(&quiet, "audio/mp4").captions(captions.clone()));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let env: Vec<_> = [
        ("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()),
        ("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template()),
        ("TUBESUM_LLM__BASE_URL", llm.base_url.clone()),
        ("TUBESUM_LLM__MODEL", "test-model".into()),
        ("TUBESUM_LLM__API_KEY", "sk-test".into()),
        ("TUBESUM_LLM__MAX_CHUNK_TOKENS", "300".into()),
    ]
    .into_iter()
    .chain(model_env())
    .collect();
    let app = TestApp::builder().env(&env).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job:#}");

    let messages = llm.user_messages();
    let maps: Vec<&String> = messages.iter().filter(|m| !m.starts_with("Part 1:")).collect();
    assert!(maps.len() >= 3, "a 60-segment transcript at 300 tokens per chunk needs several chunks: {}", maps.len());
    assert!(messages.iter().any(|m| m.starts_with("Part 1:")), "the chunk summaries were merged");
    // Every segment reached the model, exactly once, in order: nothing truncated.
    let sent = maps.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("\n");
    let mut from = 0;
    for seg in &captions {
        let at = sent[from..].find(&seg.text).unwrap_or_else(|| panic!("{:?} never sent", seg.text));
        from += at + seg.text.len();
    }
    // The model was asked for `test-model` with our key.
    let first = llm.requests.lock().unwrap()[0].clone();
    assert_eq!(first["model"], "test-model");

    let (_, summary) = app.get_json("/videos/longCaption/summary").await;
    assert_eq!(summary["summarizer"], "llm:test-model");
    assert_eq!(summary["summary"], "MERGED SUMMARY of the whole video.");
    let points = summary["key_points"].as_array().unwrap();
    assert!(!points.is_empty());
    for p in points {
        // The fake cites the first segment of its chunk: the start must be that segment's.
        let cited: usize = p["text"].as_str().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(p["start"].as_f64().unwrap(), captions[cited].start);
        assert_eq!(
            p["url"],
            format!("https://www.youtube.com/watch?v=longCaption&t={}s", captions[cited].start.floor() as u64).as_str()
        );
    }

    // /summarize-text goes to the same model.
    let before = llm.requests.lock().unwrap().len();
    let response =
        app.client.post(app.url("/summarize-text")).json(&json!({"text": "Rockets are fast."})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["summary"], "Part starting at segment 0.");
    assert_eq!(llm.requests.lock().unwrap().len(), before + 1);
    assert!(llm.user_messages().last().unwrap().contains("Rockets are fast."));
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_llm_fails_the_video_with_the_reason_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("q.m4a");
    media::silence(1.0, &quiet).await.unwrap();
    let channel = StandInChannel::new(CHANNEL, "LLM down").video(
        StandInVideo::new("shortCaptns", "Short").media(&quiet, "audio/mp4").captions(long_captions()[..3].to_vec()),
    );
    let standin = StandIn::start(vec![channel]).await.unwrap();
    // A port that nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let env = [
        ("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()),
        ("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template()),
        ("TUBESUM_LLM__BASE_URL", format!("http://{closed}/v1")),
    ];
    let app = TestApp::builder().env(&env).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed_with_errors");
    let video = &job["videos"][0];
    assert_eq!(video["status"], "failed");
    assert_eq!(video["attempts"], 3);
    assert!(video["error"].as_str().unwrap().contains("summarization failed after 3 attempts"), "{video:#}");
    app.shutdown().await;
}

/// An OpenAI-compatible `/audio/transcriptions` endpoint: records the multipart bodies it gets
/// and answers `verbose_json` with fixed segments.
async fn fake_transcriber() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    async fn transcribe(State(bodies): State<Arc<Mutex<Vec<Vec<u8>>>>>, body: axum::body::Bytes) -> Json<Value> {
        bodies.lock().unwrap().push(body.to_vec());
        Json(json!({
            "task": "transcribe", "language": "english", "duration": 3.0,
            "text": "Rockets need fuel. They also need oxygen.",
            "segments": [
                {"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": " Rockets need fuel.", "tokens": [], "temperature": 0.0,
                 "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.01},
                {"id": 1, "seek": 0, "start": 1.5, "end": 3.0, "text": " They also need oxygen.", "tokens": [], "temperature": 0.0,
                 "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.02}
            ]
        }))
    }
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route("/v1/audio/transcriptions", post(transcribe)).with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), bodies)
}

#[tokio::test]
async fn the_openai_transcription_backend_sends_the_audio_and_keeps_its_segments() {
    let (base_url, bodies) = fake_transcriber().await;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("s.wav");
    media::speak("Rockets need fuel. They also need oxygen.", &wav).await.unwrap();
    let m4a = dir.path().join("s.m4a");
    media::encode(&wav, &m4a, media::Container::M4a).await.unwrap();
    let quiet = dir.path().join("q.m4a");
    media::silence(2.0, &quiet).await.unwrap();
    let channel = StandInChannel::new(CHANNEL, "Transcription API")
        .video(StandInVideo::new("apiSpeech01", "Speech").media(&m4a, "audio/mp4"))
        .video(StandInVideo::new("apiSilence1", "Silence").media(&quiet, "audio/mp4"));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let env = [
        ("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()),
        ("TUBESUM_YOUTUBE__VIDEO_URL", standin.video_url_template()),
        ("TUBESUM_TRANSCRIPTION__BACKEND", "openai".into()),
        ("TUBESUM_OPENAI_TRANSCRIPTION__BASE_URL", base_url),
        ("TUBESUM_OPENAI_TRANSCRIPTION__MODEL", "whisper-test".into()),
    ];
    let app = TestApp::builder().env(&env).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let (_, t) = app.get_json("/videos/apiSpeech01/transcript").await;
    assert_eq!(t["source"], "openai");
    assert_eq!(t["text"], "Rockets need fuel. They also need oxygen.");
    assert_eq!(t["segments"][1]["start"], 1.5);
    // One request, for the speech only: silence is never sent.
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let body = String::from_utf8_lossy(&bodies[0]);
    assert!(body.contains("whisper-test") && body.contains("verbose_json") && body.contains("RIFF"), "multipart body");
    let (_, silent) = app.get_json("/videos/apiSilence1/transcript").await;
    assert_eq!(silent["text"], "");
    app.shutdown().await;
}

/// A chat-completions server whose answers wait for `gate`; `asked` counts the requests.
async fn gated_llm(gate: Arc<tokio::sync::Semaphore>, asked: Arc<Mutex<u32>>) -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let (gate, asked) = (gate.clone(), asked.clone());
            async move {
                *asked.lock().unwrap() += 1;
                let _pass = gate.acquire().await.unwrap();
                let content = json!({"summary": "Gated summary."}).to_string();
                Json(json!({
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn summarize_text_answers_429_beyond_its_concurrency() {
    let (gate, asked) = (Arc::new(tokio::sync::Semaphore::new(0)), Arc::new(Mutex::new(0)));
    let base_url = gated_llm(gate.clone(), asked.clone()).await;
    let env = [
        ("TUBESUM_LLM__BASE_URL", base_url),
        ("TUBESUM_LLM__MODEL", "test-model".into()),
        ("TUBESUM_SERVER__SUMMARIZE_TEXT_CONCURRENCY", "1".into()),
    ];
    let app = TestApp::builder().env(&env).noop_stages(&[]).spawn().await;
    let ask = || app.client.post(app.url("/summarize-text")).json(&json!({"text": "Rockets are fast."})).send();
    let first = tokio::spawn(ask());
    let waiting = crate::helpers::poll_until(Duration::from_secs(10), || async { *asked.lock().unwrap() == 1 }).await;
    assert!(waiting, "the first request reached the model");
    let second = ask().await.unwrap();
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    gate.add_permits(1);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(*asked.lock().unwrap(), 1, "the refused request never reached the model");
    app.shutdown().await;
}

/// A channel answers a question from its passages: offline the passages themselves (the one that
/// answers first); with the LLM, its answer's citations become links to their moments.
#[tokio::test]
async fn a_channel_answers_from_its_passages_and_the_llms_citations_become_moment_links() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("q.m4a");
    media::silence(1.0, &quiet).await.unwrap();
    let captions = [
        (0.0, "Trees begin with a single seed in the spring."),
        (4.0, "Most trees need water, light and patience to grow tall."),
        (9.5, "Gardeners prune the trees in autumn so they flower again."),
        (15.0, "Old trees can live for hundreds of years in a quiet park."),
    ]
    .map(|(start, text)| Segment { start, end: start + 4.0, text: text.into() })
    .to_vec();
    let channel = StandInChannel::new(CHANNEL, "Ask")
        .video(StandInVideo::new("askTrees001", "How trees grow").media(&quiet, "audio/mp4").captions(captions));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let question = json!({"question": "When do gardeners prune their trees?"});
    let ask = |app: &TestApp| {
        let request = app.client.post(app.url(&format!("/channels/{CHANNEL}/ask"))).json(&question);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };

    let mut env = crate::helpers::standin_env(&standin);
    let offline = TestApp::builder().env(&env).spawn().await;
    let job_id = offline.submit(CHANNEL, false).await;
    offline.wait_for_job(&job_id, Duration::from_secs(120)).await;
    let (status, answer) = ask(&offline).await;
    assert_eq!((status, answer["answered_by"].as_str()), (200, Some("passages")), "{answer:#}");
    let best = &answer["passages"][0];
    assert!(best["snippet"].as_str().unwrap().contains("prune"), "the passage that answers comes first: {answer:#}");
    assert_eq!(best["url"], "https://www.youtube.com/watch?v=askTrees001&t=9s");
    assert!(answer["answer"].is_null() && answer["citations"] == json!([]));
    let empty = offline
        .client
        .post(offline.url(&format!("/channels/{CHANNEL}/ask")))
        .json(&json!({"question": "the of and?"}))
        .send()
        .await
        .unwrap();
    let empty: Value = empty.json().await.unwrap();
    assert_eq!(empty["passages"], json!([]), "nothing to look for, nothing found: {empty:#}");
    let long = "why ".repeat(250) + "?";
    let refused = offline
        .client
        .post(offline.url(&format!("/channels/{CHANNEL}/ask")))
        .json(&json!({"question": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "over 1,000 characters");
    let data = offline.stop_keeping_data().await;

    // The same data, now with an LLM.
    env.extend([("TUBESUM_LLM__BASE_URL", llm.base_url.clone()), ("TUBESUM_LLM__MODEL", "test-model".into())]);
    let online = TestApp::builder().env(&env).data(data).spawn().await;
    let (status, answer) = ask(&online).await;
    assert_eq!((status, answer["answered_by"].as_str()), (200, Some("llm:test-model")), "{answer:#}");
    let cited = &answer["citations"];
    assert_eq!(cited.as_array().map(Vec::len), Some(1), "the made-up [99] is dropped: {answer:#}");
    assert_eq!((cited[0]["video_id"].as_str(), cited[0]["start"].as_f64()), (Some("askTrees001"), Some(9.5)));
    let n = cited[0]["n"].as_u64().unwrap();
    let markdown = answer["answer_markdown"].as_str().unwrap();
    let link = format!("[{n}](https://www.youtube.com/watch?v=askTrees001&t=9s)");
    assert!(markdown.contains(&link) && !markdown.contains("[99]"), "{markdown}");
    let asked = llm.user_messages().into_iter().find(|m| m.starts_with("Question:")).unwrap();
    assert!(asked.contains("When do gardeners prune their trees?") && !asked.contains("http"), "{asked}");
    online.shutdown().await;
    standin.shutdown().await.unwrap();
}

/// A channel's digest: offline, the words its videos' key points share, with moment links (and
/// as Markdown); with the LLM, the topics it names, its point numbers turned into moment links.
#[tokio::test]
async fn a_channels_digest_names_its_recurring_topics_with_moment_links() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("q.m4a");
    media::silence(1.0, &quiet).await.unwrap();
    let captions = |lines: [(f64, &str); 3]| {
        lines.map(|(start, text)| Segment { start, end: start + 4.0, text: text.into() }).to_vec()
    };
    let channel = StandInChannel::new(CHANNEL, "Digest")
        .video(StandInVideo::new("digestBees1", "Bees").media(&quiet, "audio/mp4").captions(captions([
            (0.0, "Honey bees collect nectar from flowers."),
            (5.0, "The hive turns nectar into honey over the summer."),
            (11.0, "Beekeepers take only the extra honey."),
        ])))
        .video(StandInVideo::new("digestHony2", "Breakfast").media(&quiet, "audio/mp4").captions(captions([
            (0.0, "Toast tastes better with butter."),
            (6.0, "A spoon of honey sweetens the porridge."),
            (12.0, "Raw honey keeps for years in the cupboard."),
        ])));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let mut env = crate::helpers::standin_env(&standin);
    let offline = TestApp::builder().env(&env).spawn().await;
    let job_id = offline.submit(CHANNEL, false).await;
    offline.wait_for_job(&job_id, Duration::from_secs(120)).await;

    let (status, digest) = offline.get_json(&format!("/channels/{CHANNEL}/digest")).await;
    assert_eq!(
        (status, digest["made_by"].as_str(), digest["videos"].as_u64()),
        (200, Some("keywords"), Some(2)),
        "{digest:#}"
    );
    let honey = digest["topics"].as_array().unwrap().iter().find(|t| t["topic"].as_str().unwrap().contains("honey"));
    let honey = honey.unwrap_or_else(|| panic!("honey recurs: {digest:#}"));
    assert_eq!(honey["videos"], 2, "{honey:#}");
    let moments = honey["moments"].as_array().unwrap();
    assert!(
        moments
            .iter()
            .any(|m| m["video_id"] == "digestHony2" && m["url"] == "https://www.youtube.com/watch?v=digestHony2&t=6s"),
        "{honey:#}"
    );
    assert!(moments.iter().all(|m| m["text"].as_str().unwrap().to_lowercase().contains("honey")), "{honey:#}");

    let md = offline.client.get(offline.url(&format!("/channels/{CHANNEL}/digest?format=md"))).send().await.unwrap();
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    let md = md.text().await.unwrap();
    assert!(md.contains("(2 videos)") && md.contains("(https://www.youtube.com/watch?v=digestHony2&t=6s)"), "{md}");
    let (_, later) = offline.get_json(&format!("/channels/{CHANNEL}/digest?since=2100-01-01T00:00:00Z")).await;
    assert_eq!((later["videos"].as_u64(), later["topics"].as_array().map(Vec::len)), (Some(0), Some(0)), "{later:#}");
    let data = offline.stop_keeping_data().await;

    env.extend([("TUBESUM_LLM__BASE_URL", llm.base_url.clone()), ("TUBESUM_LLM__MODEL", "test-model".into())]);
    let online = TestApp::builder().env(&env).data(data).spawn().await;
    let (status, digest) = online.get_json(&format!("/channels/{CHANNEL}/digest")).await;
    assert_eq!((status, digest["made_by"].as_str()), (200, Some("llm:test-model")), "{digest:#}");
    let topic = &digest["topics"][0];
    assert_eq!(topic["topic"], "Bees and honey");
    let urls: Vec<&str> = topic["moments"].as_array().unwrap().iter().map(|m| m["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 2, "the made-up point 999 is dropped: {digest:#}");
    assert!(
        urls.iter().all(|u| u.starts_with("https://www.youtube.com/watch?v=digest") && u.contains("&t=")),
        "{urls:?}"
    );
    online.shutdown().await;
    standin.shutdown().await.unwrap();
}
