//! Webhooks out, end to end: a receiver in the test (axum on 127.0.0.1, port 0) records what it is
//! sent and checks each signature with the secret, computed here independently (HMAC-SHA256 over
//! `<t>.<body>`); a receiver that fails twice gets the delivery on the third try; addresses on
//! this machine are refused unless the settings allow them, when registered and at delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::TestApp;

const CHANNEL: &str = "UCabcdefghijklmnopqrstuv";
const SECRET: &str = "a-webhook-secret-for-the-tests";
const DEADLINE: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Received>,
    by_path: HashMap<String, u32>,
}

/// An HTTP receiver: `/fail-twice` answers 500 to its first two requests, `/always-fails` to all,
/// anything else 204.
struct Receiver {
    base: String,
    seen: Arc<Mutex<Seen>>,
    _server: tokio_util::task::AbortOnDropHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        async fn take(State(seen): State<Arc<Mutex<Seen>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
            let mut seen = seen.lock().unwrap();
            let path = uri.path().to_owned();
            let n = {
                let n = seen.by_path.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            seen.requests.push(Received { path: path.clone(), headers, body });
            match path.as_str() {
                "/fail-twice" if n <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
                "/always-fails" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::NO_CONTENT,
            }
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let router = axum::Router::new().fallback(take).with_state(seen.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver { base, seen, _server: tokio_util::task::AbortOnDropHandle::new(server) }
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        self.seen.lock().unwrap().requests.iter().filter(|r| r.path == path).cloned().collect()
    }
}

/// Checks a delivery's signature as a receiver would: HMAC-SHA256 keyed with the secret over
/// `<t>.<raw body>`, hex, in `X-Tubesum-Signature: t=…,v1=…`, signed within five minutes.
fn signed_with(secret: &str, received: &Received) -> bool {
    let header = received.headers.get("x-tubesum-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut parts = header.split(',').filter_map(|p| p.split_once('='));
    let (Some(("t", t)), Some(("v1", v1))) = (parts.next(), parts.next()) else { return false };
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap_or(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    age.abs() < 300 && expected == v1
}

/// Settings for quick deliveries: allowed to reach this machine (the receiver), fast retries.
fn quick(allow_private: bool) -> Vec<(&'static str, String)> {
    vec![
        ("TUBESUM_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", allow_private.to_string()),
        ("TUBESUM_WEBHOOKS__POLL_INTERVAL_MS", "50".into()),
        ("TUBESUM_WEBHOOKS__BACKOFF_INITIAL_MS", "50".into()),
        ("TUBESUM_WEBHOOKS__BACKOFF_MAX_MS", "200".into()),
        ("TUBESUM_WEBHOOKS__MAX_ATTEMPTS", "3".into()),
    ]
}

/// `POST /webhooks`: status and body.
async fn register(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app.client.post(app.url("/webhooks")).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers a webhook for `events` at `url`; returns its id.
async fn webhook(app: &TestApp, url: &str, events: &[&str]) -> String {
    let (status, created) = register(app, json!({"url": url, "events": events, "secret": SECRET})).await;
    assert_eq!(status, 201, "{created}");
    created["webhook_id"].as_str().unwrap().to_owned()
}

/// Polls a webhook's deliveries until `done` holds of them; returns them.
async fn deliveries_when(app: &TestApp, webhook_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/webhooks/{webhook_id}/deliveries");
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, page) = app.get_json(&path).await;
        let deliveries = page["deliveries"].as_array().cloned().unwrap_or_default();
        if done(&deliveries) {
            return deliveries;
        }
        assert!(tokio::time::Instant::now() < until, "deliveries of {webhook_id}: {deliveries:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_delivered(n: usize) -> impl Fn(&[Value]) -> bool {
    move |d: &[Value]| d.len() == n && d.iter().all(|d| d["status"] == "delivered")
}

/// A job with a webhook for `job_finished` and `video_summarized`: one signed delivery per
/// summarized video and one for the job's end, each as the API lists it.
async fn signed_deliveries_arrive(env: &[(&'static str, String)]) {
    let receiver = Receiver::start().await;
    let ids = ["hookVideo01", "hookVideo02"];
    let app = TestApp::builder().env(env).env(&quick(true)).noop_stages(&ids).spawn().await;
    let url = format!("{}/hooks/in?source=tubesum", receiver.base);
    let response = app
        .client
        .post(app.url("/webhooks"))
        .json(&json!({"url": url, "events": ["job_finished", "video_summarized"], "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let webhook_id = created["webhook_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/webhooks/{webhook_id}"));
    assert_eq!(created["events"], json!(["job_finished", "summarization_completed"]), "the alias resolved");
    assert_eq!(created["url"], url.as_str());
    assert!(created.get("secret").is_none() && !created.to_string().contains(SECRET), "{created}");

    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, DEADLINE).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let listed = deliveries_when(&app, &webhook_id, all_delivered(3)).await;

    let received = receiver.requests("/hooks/in");
    assert_eq!(received.len(), 3, "{received:#?}");
    let mut kinds = Vec::new();
    for request in &received {
        assert!(signed_with(SECRET, request), "a bad signature: {request:?}");
        assert!(!signed_with("some-other-secret-entirely", request));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("x-tubesum-event"), body["event"].as_str().unwrap());
        assert_eq!(header("x-tubesum-delivery"), body["delivery_id"].as_str().unwrap());
        assert_eq!(
            (body["webhook_id"].as_str(), body["job_id"].as_str()),
            (Some(webhook_id.as_str()), Some(job_id.as_str()))
        );
        assert!(listed.iter().any(|d| d["delivery_id"] == body["delivery_id"] && d["event_id"] == body["event_id"]));
        match body["event"].as_str().unwrap() {
            "summarization_completed" => {
                assert!(ids.contains(&body["video_id"].as_str().unwrap()), "{body}");
                assert_eq!(body["data"]["type"], "summarization_completed");
            }
            "job_finished" => assert_eq!(body["data"]["status"], "completed", "{body}"),
            other => panic!("an event nobody asked for: {other}"),
        }
        kinds.push(body["event"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["job_finished", "summarization_completed", "summarization_completed"]);
    for delivery in &listed {
        assert_eq!(
            (delivery["attempts"].as_u64(), delivery["last_status"].as_u64()),
            (Some(1), Some(204)),
            "{delivery}"
        );
        assert!(delivery["delivered_at"].is_string() && delivery["next_attempt_at"].is_null(), "{delivery}");
    }

    let (status, one) = app.get_json(&format!("/webhooks/{webhook_id}")).await;
    assert_eq!((status, &one), (200, &created));
    let (_, all) = app.get_json("/webhooks").await;
    assert_eq!(all["webhooks"], json!([created]));
    let (_, delivered) =
        app.get_json(&format!("/webhooks/{webhook_id}/deliveries?status=delivered&limit=1&offset=2")).await;
    assert_eq!((delivered["total"].as_u64(), delivered["deliveries"].as_array().map(Vec::len)), (Some(3), Some(1)));
    let (_, pending) = app.get_json(&format!("/webhooks/{webhook_id}/deliveries?status=pending")).await;
    assert_eq!(pending["total"], 0);

    let delete = || app.client.delete(app.url(&format!("/webhooks/{webhook_id}"))).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(delete().await.unwrap().status(), 404);
    assert_eq!(app.get_json(&format!("/webhooks/{webhook_id}")).await.0, 404);
    assert_eq!(app.get_json(&format!("/webhooks/{webhook_id}/deliveries")).await.0, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_job_sends_signed_deliveries_for_the_events_a_webhook_chose() {
    signed_deliveries_arrive(&[]).await;
}

/// The same on the production backends: the consumer group on Kafka, the deliveries in PostgreSQL.
#[cfg(feature = "production")]
#[tokio::test]
async fn a_job_sends_signed_deliveries_on_the_production_backends() {
    let iso = crate::production::Isolation::new().await;
    signed_deliveries_arrive(&iso.env()).await;
    iso.db.drop_now().await;
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_delivery_on_the_third_try_and_one_that_always_fails_is_given_up() {
    let receiver = Receiver::start().await;
    let app = TestApp::builder().env(&quick(true)).noop_stages(&["hookVideo03"]).spawn().await;
    let flaky = webhook(&app, &format!("{}/fail-twice", receiver.base), &["job_finished"]).await;
    let broken = webhook(&app, &format!("{}/always-fails", receiver.base), &["job_finished"]).await;
    let job_id = app.submit(CHANNEL, false).await;
    app.wait_for_job(&job_id, DEADLINE).await;

    let delivered = deliveries_when(&app, &flaky, all_delivered(1)).await;
    assert_eq!((delivered[0]["attempts"].as_u64(), delivered[0]["last_status"].as_u64()), (Some(3), Some(204)));
    assert!(delivered[0]["last_error"].is_null(), "{:?}", delivered[0]);
    let tries = receiver.requests("/fail-twice");
    assert_eq!(tries.len(), 3);
    let ids: Vec<&str> = tries.iter().map(|r| r.headers["x-tubesum-delivery"].to_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == delivered[0]["delivery_id"]), "one delivery id on every attempt: {ids:?}");
    assert!(
        tries.iter().all(|r| signed_with(SECRET, r)) && tries[0].body == tries[2].body,
        "the same body, signed each time"
    );

    let failed = deliveries_when(&app, &broken, |d| d.len() == 1 && d[0]["status"] == "failed").await;
    assert_eq!(
        (failed[0]["attempts"].as_u64(), failed[0]["last_status"].as_u64()),
        (Some(3), Some(500)),
        "max_attempts = 3"
    );
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 500") && error.contains("gave up after 3 attempts"), "{error}");
    assert_eq!(receiver.requests("/always-fails").len(), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn webhooks_to_this_machine_are_refused_unless_allowed_and_bad_input_is_a_400() {
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let app = TestApp::builder().env(&quick(false)).noop_stages(&["hookVideo04"]).spawn().await;
    for (url, address) in [
        (format!("http://127.0.0.1:{port}/hook"), "127.0.0.1"),
        (format!("http://localhost:{port}/hook"), "localhost resolves to"),
        ("http://[::1]/hook".to_owned(), "::1"),
        ("http://169.254.169.254/latest/meta-data".to_owned(), "link-local"),
        ("http://10.0.0.7/hook".to_owned(), "private"),
    ] {
        let (status, refused) = register(&app, json!({"url": url, "events": ["job_finished"], "secret": SECRET})).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("webhook_url_refused")), "{url}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(address) && message.contains("webhooks.allow_private_addresses"), "{message}");
    }
    for (body, code, says) in [
        (
            json!({"url": "ftp://example.com/", "events": ["job_finished"], "secret": SECRET}),
            "invalid_webhook_url",
            "http or https",
        ),
        (
            json!({"url": "http://no-such-host.invalid/", "events": ["job_finished"], "secret": SECRET}),
            "webhook_url_unresolvable",
            "cannot resolve",
        ),
        (
            json!({"url": "http://8.8.8.8/", "events": ["job_exploded"], "secret": SECRET}),
            "invalid_events",
            "video_summarized",
        ),
        (json!({"url": "http://8.8.8.8/", "events": [], "secret": SECRET}), "invalid_events", "at least one"),
        (
            json!({"url": "http://8.8.8.8/", "events": ["job_finished"], "secret": "short"}),
            "invalid_secret",
            "16 to 256",
        ),
        (json!({"url": "http://8.8.8.8/", "events": ["job_finished"]}), "invalid_body", "secret"),
    ] {
        let (status, refused) = register(&app, body.clone()).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (400, Some(code)), "{body}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(says), "{refused}");
    }
    let (_, listed) = app.get_json("/webhooks").await;
    assert_eq!(listed["webhooks"], json!([]), "nothing was registered");
    for path in ["/webhooks/not-a-uuid", "/webhooks/0190f3b2-1111-7000-8000-000000000000/deliveries"] {
        assert_eq!(app.get_json(path).await.0, 404, "{path}");
    }
    app.shutdown().await;

    // Allowed, it is taken; if the setting is turned off later, its deliveries are refused for
    // good (never sent), not retried.
    let app = TestApp::builder().env(&quick(true)).noop_stages(&["hookVideo04"]).spawn().await;
    let local = webhook(&app, &format!("http://localhost:{port}/hook"), &["job_finished"]).await;
    let data = app.stop_keeping_data().await;
    let app = TestApp::builder().data(data).env(&quick(false)).noop_stages(&["hookVideo04"]).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    app.wait_for_job(&job_id, DEADLINE).await;
    let refused = deliveries_when(&app, &local, |d| d.len() == 1 && d[0]["status"] == "failed").await;
    assert_eq!(refused[0]["attempts"], 1, "not retried: {:?}", refused[0]);
    assert!(refused[0]["last_error"].as_str().unwrap().contains("loopback"), "{:?}", refused[0]);
    assert!(receiver.requests("/hook").is_empty(), "nothing reached the receiver");
    app.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_webhook_routes() {
    let app = TestApp::builder().noop_stages(&[]).spawn().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    for (path, methods) in [
        ("/webhooks", &["post", "get"][..]),
        ("/webhooks/{webhook_id}", &["get", "delete"][..]),
        ("/webhooks/{webhook_id}/deliveries", &["get"][..]),
    ] {
        for method in methods {
            assert!(doc["paths"][path].get(*method).is_some(), "{method} {path} missing");
        }
    }
    let create = &doc["components"]["schemas"]["CreateWebhook"]["properties"];
    let events: Vec<&str> =
        create["events"]["items"]["enum"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    for name in ["job_finished", "video_summarized", "summarization_completed", "stage_failed"] {
        assert!(events.contains(&name), "{name} missing from {events:?}");
    }
    assert_eq!(
        (create["secret"]["minLength"].as_u64(), create["secret"]["writeOnly"].as_bool()),
        (Some(16), Some(true))
    );
    assert!(doc["components"]["schemas"]["Webhook"]["properties"].get("secret").is_none(), "never shown");
    let post = &doc["paths"]["/webhooks"]["post"];
    assert!(post["description"].as_str().unwrap().contains("X-Tubesum-Signature"), "how to verify is documented");
    assert_eq!(
        post["responses"]["201"]["links"]["ListDeliveries"]["parameters"]["webhook_id"],
        "$response.body#/webhook_id"
    );
    app.shutdown().await;
}
