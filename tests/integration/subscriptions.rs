//! Subscriptions against the stand-in's feed (with its ETag and 304s): new uploads only, exactly
//! them, across a restart; WebSub verification and signed notifications; one poller per
//! subscription across processes sharing PostgreSQL.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use youtube_standin::{StandIn, StandInChannel, StandInVideo};

use crate::helpers::{TestApp, poll_until, standin_env};

const CHANNEL: &str = "UCwatchedwatchedwatchedw";
const QUIET: &str = "UCquietquietquietquietqu";

/// Subscriptions may poll every second here, and leases (so lease rounds) are short.
fn fast() -> Vec<(&'static str, String)> {
    vec![
        ("TUBESUM_SUBSCRIPTIONS__MIN_INTERVAL_SECS", "1".into()),
        ("TUBESUM_STAGES__JOB_LEASE_SECS", "3".into()),
        ("TUBESUM_SUBSCRIPTIONS__WEBSUB_SECRET", "hub-secret".into()),
    ]
}

async fn subscribe(app: &TestApp, channel: &str, interval: u64) -> (u16, Value) {
    let body = json!({"channel_id": channel, "interval_secs": interval});
    let response = app.client.post(app.url("/subscriptions")).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn subscription(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/subscriptions/{id}")).await;
    assert_eq!(status, 200, "{body:#}");
    body
}

/// Polls the subscription until `check` holds; panics with its last state after `deadline`.
async fn wait_for(app: &TestApp, id: &str, deadline: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let reached = poll_until(deadline, || async { check(&subscription(app, id).await) }).await;
    let last = subscription(app, id).await;
    assert!(reached, "the subscription never got there: {last:#}");
    last
}

/// The video ids of a finished job, in its order.
async fn job_videos(app: &TestApp, job_id: &str) -> Vec<String> {
    let job = app.wait_for_job(job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    job["videos"].as_array().unwrap().iter().map(|v| v["video_id"].as_str().unwrap().to_owned()).collect()
}

#[cfg(feature = "production")]
fn feed_requests(standin: &StandIn, channel: &str) -> usize {
    standin.requests().iter().filter(|r| r.starts_with("/feeds/videos.xml") && r.contains(channel)).count()
}

fn app(standin: &StandIn) -> crate::helpers::TestAppBuilder {
    let mut env = standin_env(standin);
    env.extend(fast());
    TestApp::builder().env(&env).noop_stages(&[])
}

/// The first poll only notes the feed; unchanged polls (304s) submit nothing; an upload that
/// appears between two polls gets a job with exactly that video, summarized; after a restart the
/// subscription and what it saw are kept, so only the next new upload is submitted.
#[tokio::test]
async fn a_subscription_submits_exactly_the_new_uploads_and_keeps_what_it_saw_across_a_restart() {
    let channel = StandInChannel::new(CHANNEL, "Watched")
        .video(StandInVideo::new("watchOld002", "Old two"))
        .video(StandInVideo::new("watchOld001", "Old one"));
    let standin = StandIn::start(vec![channel]).await.unwrap();
    let app = app(&standin).spawn().await;

    let (status, body) = subscribe(&app, CHANNEL, 0).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("interval_too_short")), "{body:#}");
    let (status, body) = subscribe(&app, CHANNEL, 40_000_000).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("interval_too_long")), "{body:#}");
    let (_, doc) = app.get_json("/openapi.json").await;
    let interval = &doc["components"]["schemas"]["CreateSubscription"]["properties"]["interval_secs"];
    assert_eq!(interval["minimum"], 1, "the document states this server's minimum: {interval:#}");
    let (status, created) = subscribe(&app, CHANNEL, 1).await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["subscription_id"].as_str().unwrap().to_owned();
    let (status, again) = subscribe(&app, CHANNEL, 5).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("subscription_exists")), "{again:#}");
    assert!(again["error"]["message"].as_str().unwrap().contains(&id), "{again:#}");

    // Baseline, then 304s: no job.
    let first = wait_for(&app, &id, Duration::from_secs(30), |s| s["polls"].as_u64() >= Some(1)).await;
    assert_eq!(first["jobs"], 0, "{first:#}");
    let quiet = wait_for(&app, &id, Duration::from_secs(30), |s| {
        s["polls"].as_u64() >= Some(3) && s["last_outcome"] == "not_modified"
    })
    .await;
    assert_eq!(
        (quiet["jobs"].as_u64(), quiet["last_job_id"].as_str()),
        (Some(0), None),
        "a 304 costs no job: {quiet:#}"
    );
    let (_, jobs) = app.get_json(&format!("/jobs?channel_id={CHANNEL}")).await;
    assert_eq!(jobs["total"], 0, "{jobs:#}");

    // A new upload between two polls: one job, with exactly it.
    assert!(standin.add_video(CHANNEL, StandInVideo::new("watchNew001", "New one")));
    let found = wait_for(&app, &id, Duration::from_secs(30), |s| s["jobs"] == 1).await;
    assert_eq!(found["last_outcome"], "new_uploads", "{found:#}");
    let job_id = found["last_job_id"].as_str().unwrap().to_owned();
    assert_eq!(job_videos(&app, &job_id).await, ["watchNew001"]);
    let (_, summary) = app.get_json("/videos/watchNew001/summary").await;
    assert!(summary["summary"].is_string(), "{summary:#}");
    // Later polls find nothing new.
    let polls = found["polls"].as_u64().unwrap();
    let later = wait_for(&app, &id, Duration::from_secs(30), |s| s["polls"].as_u64() >= Some(polls + 2)).await;
    assert_eq!(later["jobs"], 1, "{later:#}");

    // Restarted on the same data: the subscription, and what it saw, are kept.
    let data = app.stop_keeping_data().await;
    let kept_polls = subscription_polls(&data).await;
    assert!(standin.add_video(CHANNEL, StandInVideo::new("watchNew002", "New two")));
    let mut env = standin_env(&standin);
    env.extend(fast());
    let app = TestApp::builder().env(&env).noop_stages(&[]).data(data).spawn().await;
    let (_, list) = app.get_json("/subscriptions").await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1, "{list:#}");
    let resumed = wait_for(&app, &id, Duration::from_secs(30), |s| s["jobs"] == 2).await;
    assert!(resumed["polls"].as_u64() > Some(kept_polls), "{resumed:#}");
    let second = resumed["last_job_id"].as_str().unwrap().to_owned();
    assert_ne!(second, job_id);
    assert_eq!(job_videos(&app, &second).await, ["watchNew002"], "only the upload not seen before the restart");
    let (_, jobs) = app.get_json(&format!("/jobs?channel_id={CHANNEL}")).await;
    assert_eq!(jobs["total"], 2, "{jobs:#}");

    let deleted = app.client.delete(app.url(&format!("/subscriptions/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = app.get_json(&format!("/subscriptions/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json("/subscriptions/not-a-uuid").await;
    assert_eq!(status, 404);
    app.shutdown().await;
    standin.shutdown().await.unwrap();
}

/// The polls a stopped app's subscription had made, read from its SQLite database.
async fn subscription_polls(data: &tempfile::TempDir) -> u64 {
    use tubesum::ports::SubscriptionStore;
    let store = tubesum::adapters::embedded::SqliteStore::open(&data.path().join("tubesum.sqlite")).await.unwrap();
    let subscriptions = store.list_subscriptions().await.unwrap();
    assert_eq!(subscriptions.len(), 1);
    assert!(!subscriptions[0].seen.is_empty(), "what it saw is stored");
    subscriptions[0].polls
}

fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap().chain_update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// WebSub: the hub's verification is answered with its challenge only for the subscription's own
/// topic; a notification signed with the secret makes the subscription poll at once (its interval
/// is an hour), one wrongly signed is acknowledged and ignored.
#[tokio::test]
async fn a_signed_websub_notification_polls_at_once_and_a_forged_one_is_ignored() {
    let standin =
        StandIn::start(vec![StandInChannel::new(QUIET, "Quiet").video(StandInVideo::new("quietOld001", "Old"))])
            .await
            .unwrap();
    let app = app(&standin).spawn().await;
    let (status, created) = subscribe(&app, QUIET, 3600).await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["subscription_id"].as_str().unwrap().to_owned();
    wait_for(&app, &id, Duration::from_secs(30), |s| s["polls"] == 1).await;

    let topic = standin.feed_url(QUIET);
    let verify = |mode: &str, topic: &str| {
        let url = app.url(&format!("/websub/{id}"));
        let query =
            [("hub.mode", mode), ("hub.topic", topic), ("hub.challenge", "ch4llenge"), ("hub.lease_seconds", "864000")];
        app.client.get(url).query(&query).send()
    };
    let confirmed = verify("subscribe", &topic).await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(confirmed.text().await.unwrap(), "ch4llenge");
    let other = standin.feed_url("UCzzzzzzzzzzzzzzzzzzzzzz");
    assert_eq!(verify("subscribe", &other).await.unwrap().status(), 404, "another channel's topic");
    assert_eq!(verify("unsubscribe", &topic).await.unwrap().status(), 404, "still wanted");

    assert!(standin.add_video(QUIET, StandInVideo::new("quietNew001", "New")));
    let body = b"<feed xmlns=\"http://www.w3.org/2005/Atom\"></feed>".to_vec();
    let notify = |signature: String| {
        app.client
            .post(app.url(&format!("/websub/{id}")))
            .header("content-type", "application/atom+xml")
            .header("x-hub-signature", signature)
            .body(body.clone())
            .send()
    };
    assert_eq!(notify(hub_signature("wrong-secret", &body)).await.unwrap().status(), 202);
    let ignored = subscription(&app, &id).await;
    assert_eq!((ignored["poll_requested"].as_bool(), ignored["polls"].as_u64()), (Some(false), Some(1)), "{ignored:#}");
    assert_eq!(notify(hub_signature("hub-secret", &body)).await.unwrap().status(), 202);
    let polled = wait_for(&app, &id, Duration::from_secs(30), |s| s["jobs"] == 1).await;
    assert_eq!(polled["polls"], 2, "{polled:#}");
    assert_eq!(job_videos(&app, polled["last_job_id"].as_str().unwrap()).await, ["quietNew001"]);
    app.shutdown().await;
    standin.shutdown().await.unwrap();
}

/// Two processes on one PostgreSQL: one of them polls the subscription (every feed request is a
/// poll it recorded: none is made by the other); when it stops, the other takes over.
#[cfg(feature = "production")]
#[tokio::test]
async fn two_processes_never_both_poll_one_subscription() {
    let iso = crate::production::Isolation::new().await;
    let standin =
        StandIn::start(vec![StandInChannel::new(CHANNEL, "Shared").video(StandInVideo::new("sharedOld01", "Old"))])
            .await
            .unwrap();
    let mut env = iso.env();
    env.push(("TUBESUM_YOUTUBE__FEED_URL", standin.feed_url_template()));
    env.extend(fast());
    let a = TestApp::builder().env(&env).noop_stages(&[]).spawn().await;
    let b = TestApp::builder().env(&env).noop_stages(&[]).spawn().await;
    let (status, created) = subscribe(&a, CHANNEL, 1).await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["subscription_id"].as_str().unwrap().to_owned();

    // Several polls, and several lease rounds of both processes.
    let polled = wait_for(&b, &id, Duration::from_secs(60), |s| s["polls"].as_u64() >= Some(8)).await;
    let owner = polled["owner"].as_str().unwrap().to_owned();
    let settled = wait_for(&b, &id, Duration::from_secs(30), |s| s["polls"].as_u64() >= Some(10)).await;
    assert_eq!(settled["owner"].as_str(), Some(owner.as_str()), "one holder throughout: {settled:#}");
    // Each request is a recorded poll (a second poller's would be refused, and so unrecorded);
    // at most the one in flight now is not recorded yet.
    let requests = feed_requests(&standin, CHANNEL) as u64;
    let recorded = subscription(&a, &id).await["polls"].as_u64().unwrap();
    assert!(requests == recorded || requests == recorded + 1, "{requests} feed requests for {recorded} polls");

    // The holder stops: the other polls from then on.
    let a_node = a.get_json("/cluster").await.1["node"].as_str().map(str::to_owned);
    let (stopping, staying) = if a_node.as_deref() == Some(owner.as_str()) { (a, b) } else { (b, a) };
    stopping.shutdown().await;
    let polls = subscription(&staying, &id).await["polls"].as_u64().unwrap();
    let taken = wait_for(&staying, &id, Duration::from_secs(30), |s| {
        s["owner"] != owner.as_str() && s["polls"].as_u64() > Some(polls + 1)
    })
    .await;
    assert!(taken["owner"].is_string(), "{taken:#}");
    staying.shutdown().await;
    standin.shutdown().await.unwrap();
    iso.db.drop_now().await;
}
