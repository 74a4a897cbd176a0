//! Webhooks out, in two halves that share only the store:
//!
//! - [`WebhookSink`], fed by an [`EventConsumer`](super::consumer::EventConsumer) in the consumer
//!   group every process shares: for each event, one pending delivery per webhook that asks for
//!   it, written before the event is acknowledged (and unique per webhook and event, so an event
//!   seen twice makes one delivery). It wakes this process's dispatcher. Which webhooks exist it
//!   reads at most every [`RELOAD_EVERY`], not once per event.
//! - [`WebhookDispatcher`], a child of the RootSupervisor: every `webhooks.poll_interval_ms`, and
//!   at once when woken, it claims the due deliveries ([`WebhookStore::claim_deliveries`]: a
//!   claimed delivery is nobody else's until the claim runs out), POSTs them signed, at most
//!   `webhooks.concurrency` at a time, each on a task of its own, and records each outcome. A
//!   failed attempt is retried after a capped exponential backoff with jitter, up to
//!   `webhooks.max_attempts`; a refused address is not retried.
//!
//! Nothing here holds up the pipeline: the sink costs one store write per interesting event, and
//! the deliveries run on their own tasks. If the dispatcher fails (the store is unreachable), the
//! RootSupervisor re-creates it; the deliveries it was sending are claimed again when their
//! claims run out (delivery is at-least-once: receivers deduplicate by `X-Tubesum-Delivery`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::EventSink;
use crate::adapters::settings::WebhookSettings;
use crate::domain::DomainEvent;
use crate::domain::webhooks::{DELIVERY_HEADER, DeliveryBody, EVENT_HEADER, SIGNATURE_HEADER, Webhook, signature};
use crate::ports::{AttemptResult, ClaimedDelivery, SendOutcome, WebhookRequest, WebhookSender, WebhookStore};

/// Turns events into pending deliveries.
///
/// Most events interest no webhook, and asking the store about each one was most of the embedded
/// store's statements (five per video). The sink keeps the list of webhooks instead, read at a
/// known time, and decides from it every event that occurred [`SETTLE`] before that time: a webhook
/// created before such an event was committed (and is in the list) by then. For a later event it
/// waits until the event is that old, and reads the list again at most every [`RELOAD_EVERY`], so
/// one read serves every event of that span. A webhook the list says wants an event is asked
/// about in the store as before (it may have been deleted since). Deliveries start up to
/// `SETTLE + RELOAD_EVERY` later than they would if each event were looked up.
pub struct WebhookSink {
    store: Arc<dyn WebhookStore>,
    wake: Arc<Notify>,
    known: tokio::sync::Mutex<Option<KnownWebhooks>>,
}

/// How long after an event's time a webhook created before it may still be committing, or the
/// clocks of the process that created it and this one may differ.
pub const SETTLE: Duration = Duration::from_millis(100);
/// The list of webhooks is read at most this often.
pub const RELOAD_EVERY: Duration = Duration::from_millis(100);

/// The webhooks as read at `read_at` (this process's clock, before the read was sent).
struct KnownWebhooks {
    webhooks: Vec<Webhook>,
    read_at: DateTime<Utc>,
}

impl KnownWebhooks {
    /// Whether the list answers for an event that occurred at `at`.
    fn covers(&self, at: DateTime<Utc>) -> bool {
        at + SETTLE <= self.read_at
    }

    fn anyone_wants(&self, event: &DomainEvent) -> bool {
        let kind = event.payload.kind();
        self.webhooks.iter().any(|w| w.wants(kind) && w.created_at <= event.occurred_at)
    }
}

impl WebhookSink {
    /// `wake`: this process's dispatcher's ([`WebhookDispatcherArgs::wake`]).
    pub fn new(store: Arc<dyn WebhookStore>, wake: Arc<Notify>) -> Self {
        Self { store, wake, known: tokio::sync::Mutex::new(None) }
    }

    /// Whether any webhook may want `event`, from a list of webhooks read late enough to know.
    async fn anyone_wants(&self, event: &DomainEvent) -> Result<bool, String> {
        let mut known = self.known.lock().await;
        if let Some(list) = known.as_ref().filter(|list| list.covers(event.occurred_at)) {
            return Ok(list.anyone_wants(event));
        }
        let settled = (event.occurred_at + SETTLE - Utc::now()).to_std().unwrap_or_default();
        let since = |list: &KnownWebhooks| (Utc::now() - list.read_at).to_std().unwrap_or_default();
        let paced = known.as_ref().map_or(Duration::ZERO, |list| RELOAD_EVERY.saturating_sub(since(list)));
        tokio::time::sleep(settled.max(paced)).await;
        let read_at = Utc::now();
        let webhooks = self.store.list_webhooks().await.map_err(|e| format!("reading the webhooks: {e}"))?;
        let list = KnownWebhooks { webhooks, read_at };
        let wants = list.anyone_wants(event);
        *known = Some(list);
        Ok(wants)
    }
}

#[async_trait::async_trait]
impl EventSink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    /// The deliveries are in the store before this returns `Ok` (and the event is acknowledged).
    async fn accept(&self, event: &DomainEvent) -> Result<(), String> {
        if !self.anyone_wants(event).await? {
            return Ok(());
        }
        let added = self
            .store
            .enqueue_deliveries(event)
            .await
            .map_err(|e| format!("recording the webhook deliveries of event {}: {e}", event.event_id))?;
        if added > 0 {
            tracing::debug!(event_id = %event.event_id, r#type = event.payload.kind(), added, "webhook deliveries enqueued");
            self.wake.notify_one();
        }
        Ok(())
    }
}

pub struct WebhookDispatcher;

/// Everything the dispatcher is re-created from.
#[derive(Clone)]
pub struct WebhookDispatcherArgs {
    pub store: Arc<dyn WebhookStore>,
    pub sender: Arc<dyn WebhookSender>,
    pub settings: Arc<WebhookSettings>,
    /// Notified when deliveries were enqueued in this process.
    pub wake: Arc<Notify>,
}

pub struct WebhookDispatcherState {
    args: WebhookDispatcherArgs,
    /// The deliveries being sent; aborted if the dispatcher stops (their claims run out, and they
    /// are sent again).
    sending: JoinSet<()>,
    _ticker: AbortOnDropHandle<()>,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum WebhookDispatcherMsg {
    /// Claim and send what is due, as far as free slots go.
    Dispatch,
    /// A delivery's attempt ended (a slot is free).
    Sent,
}

impl Actor for WebhookDispatcher {
    type Msg = WebhookDispatcherMsg;
    type State = WebhookDispatcherState;
    type Arguments = WebhookDispatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WebhookDispatcherMsg>,
        args: WebhookDispatcherArgs,
    ) -> Result<WebhookDispatcherState, ActorProcessingErr> {
        let every = Duration::from_millis(args.settings.poll_interval_ms.max(10));
        let (actor, wake) = (myself.clone(), args.wake.clone());
        // At once (what an earlier run left), then on every tick or wake-up.
        let ticker = tokio::spawn(async move {
            while actor.cast(WebhookDispatcherMsg::Dispatch).is_ok() {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = wake.notified() => {}
                }
            }
        });
        Ok(WebhookDispatcherState { args, sending: JoinSet::new(), _ticker: AbortOnDropHandle::new(ticker) })
    }

    async fn handle(
        &self,
        myself: ActorRef<WebhookDispatcherMsg>,
        msg: WebhookDispatcherMsg,
        state: &mut WebhookDispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WebhookDispatcherMsg::Dispatch | WebhookDispatcherMsg::Sent => {
                while state.sending.try_join_next().is_some() {}
                let free = state.args.settings.concurrency.max(1).saturating_sub(state.sending.len());
                if free == 0 {
                    return Ok(());
                }
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                let claimed = state.args.store.claim_deliveries(limit, claim_for(&state.args.settings)).await?;
                for delivery in claimed {
                    let (args, actor) = (state.args.clone(), myself.clone());
                    state.sending.spawn(async move {
                        deliver(&args, delivery).await;
                        let _ = actor.cast(WebhookDispatcherMsg::Sent);
                    });
                }
            }
        }
        Ok(())
    }
}

/// How long a claim lasts: longer than an attempt can take (resolving, connecting, the answer).
fn claim_for(settings: &WebhookSettings) -> Duration {
    settings.timeout() * 2 + Duration::from_secs(30)
}

/// One attempt at a claimed delivery: signed, sent, and its outcome recorded.
async fn deliver(args: &WebhookDispatcherArgs, claimed: ClaimedDelivery) {
    let ClaimedDelivery { delivery, event, url, secret, claim } = claimed;
    let body = DeliveryBody::new(delivery.delivery_id, delivery.webhook_id, &event);
    let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("a delivery body encodes"));
    let sent_at = Utc::now();
    let request = WebhookRequest {
        url,
        headers: vec![
            (EVENT_HEADER, delivery.event.clone()),
            (DELIVERY_HEADER, delivery.delivery_id.to_string()),
            (SIGNATURE_HEADER, signature(secret.expose_secret().as_bytes(), sent_at.timestamp(), &body)),
        ],
        body,
    };
    // The sender has its own timeout; this one is the backstop.
    let limit = claim_for(&args.settings) / 2;
    let outcome = match tokio::time::timeout(limit, args.sender.send(&request)).await {
        Ok(outcome) => outcome,
        Err(_) => SendOutcome::Failed { status: None, error: format!("no outcome within {} s", limit.as_secs()) },
    };
    let attempt = delivery.attempts + 1;
    let delay = args.settings.backoff().delay(attempt);
    let result = attempt_result(outcome, attempt, args.settings.max_attempts, delay, Utc::now());
    let (id, webhook) = (delivery.delivery_id, delivery.webhook_id);
    match &result {
        AttemptResult::Delivered { status } => {
            tracing::info!(delivery_id = %id, webhook_id = %webhook, event = %delivery.event, attempt, status, "webhook delivered");
        }
        AttemptResult::Retry { error, next_attempt_at, .. } => {
            tracing::warn!(delivery_id = %id, webhook_id = %webhook, attempt, %error, %next_attempt_at, "webhook delivery failed; will retry");
        }
        AttemptResult::Failed { error, .. } => {
            tracing::warn!(delivery_id = %id, webhook_id = %webhook, attempt, %error, "webhook delivery failed for good");
        }
    }
    match args.store.record_attempt(id, claim, &result).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(delivery_id = %id, "webhook delivery's claim ran out (or its webhook was deleted); outcome not recorded")
        }
        Err(e) => {
            tracing::warn!(delivery_id = %id, error = %e, "could not record a webhook delivery's outcome; it is sent again")
        }
    }
}

/// What the store records for an attempt (the `attempt`-th) that ended with `outcome`: a refusal
/// or the last allowed attempt's failure is final, another failure is retried `delay` after `now`.
pub fn attempt_result(
    outcome: SendOutcome,
    attempt: u32,
    max_attempts: u32,
    delay: Duration,
    now: DateTime<Utc>,
) -> AttemptResult {
    match outcome {
        SendOutcome::Delivered { status } => AttemptResult::Delivered { status },
        SendOutcome::Refused { error } => AttemptResult::Failed { status: None, error },
        SendOutcome::Failed { status, error } if attempt >= max_attempts => {
            AttemptResult::Failed { status, error: format!("{error} (gave up after {attempt} attempts)") }
        }
        SendOutcome::Failed { status, error } => {
            let next_attempt_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            AttemptResult::Retry { status, error, next_attempt_at }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use chrono::SubsecRound;
    use secrecy::SecretString;
    use uuid::Uuid;

    use super::*;
    use crate::actors::testing::eventually_async;
    use crate::adapters::embedded::SqliteStore;
    use crate::domain::webhooks::{DeliveryStatus, verify};
    use crate::domain::{EventPayload, JobId, JobStatus};

    #[test]
    fn failures_are_retried_with_backoff_until_the_last_attempt_and_refusals_never() {
        let now = Utc::now();
        let failed = || SendOutcome::Failed { status: Some(503), error: "HTTP 503".into() };
        let delay = Duration::from_secs(8);
        assert_eq!(
            attempt_result(failed(), 2, 3, delay, now),
            AttemptResult::Retry {
                status: Some(503),
                error: "HTTP 503".into(),
                next_attempt_at: now + chrono::Duration::seconds(8)
            }
        );
        assert_eq!(
            attempt_result(failed(), 3, 3, delay, now),
            AttemptResult::Failed { status: Some(503), error: "HTTP 503 (gave up after 3 attempts)".into() }
        );
        let refused = SendOutcome::Refused { error: "loopback".into() };
        assert_eq!(
            attempt_result(refused, 1, 3, delay, now),
            AttemptResult::Failed { status: None, error: "loopback".into() }
        );
        let delivered = SendOutcome::Delivered { status: 200 };
        assert_eq!(attempt_result(delivered, 3, 3, delay, now), AttemptResult::Delivered { status: 200 });
    }

    /// A receiver that fails its first `failures` requests, and records what it is sent.
    struct FlakyReceiver {
        failures: u32,
        seen: AtomicU32,
        requests: Mutex<Vec<WebhookRequest>>,
    }

    #[async_trait::async_trait]
    impl WebhookSender for FlakyReceiver {
        async fn send(&self, request: &WebhookRequest) -> SendOutcome {
            self.requests.lock().unwrap().push(request.clone());
            if self.seen.fetch_add(1, Ordering::SeqCst) < self.failures {
                SendOutcome::Failed { status: Some(500), error: "HTTP 500".into() }
            } else {
                SendOutcome::Delivered { status: 200 }
            }
        }
    }

    fn settings(max_attempts: u32) -> WebhookSettings {
        WebhookSettings {
            allow_private_addresses: false,
            max_attempts,
            backoff_initial_ms: 10,
            backoff_max_ms: 40,
            timeout_secs: 5,
            concurrency: 2,
            poll_interval_ms: 20,
        }
    }

    /// The SQLite store, counting how often the sink asks it which webhooks exist and for
    /// deliveries.
    struct Counting {
        store: SqliteStore,
        lists: AtomicU32,
        enqueues: AtomicU32,
    }

    #[async_trait::async_trait]
    impl WebhookStore for Counting {
        async fn create_webhook(&self, webhook: &Webhook, secret: &SecretString) -> crate::ports::PortResult<()> {
            self.store.create_webhook(webhook, secret).await
        }
        async fn get_webhook(&self, id: Uuid) -> crate::ports::PortResult<Option<Webhook>> {
            self.store.get_webhook(id).await
        }
        async fn list_webhooks(&self) -> crate::ports::PortResult<Vec<Webhook>> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.store.list_webhooks().await
        }
        async fn delete_webhook(&self, id: Uuid) -> crate::ports::PortResult<bool> {
            self.store.delete_webhook(id).await
        }
        async fn enqueue_deliveries(&self, event: &DomainEvent) -> crate::ports::PortResult<u64> {
            self.enqueues.fetch_add(1, Ordering::SeqCst);
            self.store.enqueue_deliveries(event).await
        }
        async fn claim_deliveries(
            &self,
            limit: u32,
            claim: Duration,
        ) -> crate::ports::PortResult<Vec<ClaimedDelivery>> {
            self.store.claim_deliveries(limit, claim).await
        }
        async fn record_attempt(
            &self,
            id: Uuid,
            claim: Uuid,
            result: &AttemptResult,
        ) -> crate::ports::PortResult<bool> {
            self.store.record_attempt(id, claim, result).await
        }
        async fn list_deliveries(
            &self,
            id: Uuid,
            status: Option<DeliveryStatus>,
            limit: u32,
            offset: u32,
        ) -> crate::ports::PortResult<(Vec<crate::domain::webhooks::WebhookDelivery>, u64)> {
            self.store.list_deliveries(id, status, limit, offset).await
        }
    }

    /// One read of the webhooks answers for every event old enough; an event newer than the read
    /// is answered from a new one, so a webhook created just before it is not missed.
    #[tokio::test]
    async fn the_sink_reads_the_webhooks_once_for_many_events_and_misses_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
        let store = Arc::new(Counting { store, lists: AtomicU32::new(0), enqueues: AtomicU32::new(0) });
        let secret = SecretString::from("sixteen-chars-at-least");
        let webhook = |events: &[&str], created_at| Webhook {
            webhook_id: Uuid::now_v7(),
            url: "https://hooks.example.com/in".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            created_at,
        };
        let a_second_ago = Utc::now().trunc_subsecs(6) - chrono::Duration::seconds(1);
        let finished = webhook(&["job_finished"], a_second_ago - chrono::Duration::seconds(1));
        store.create_webhook(&finished, &secret).await.unwrap();
        let sink = WebhookSink::new(store.clone(), Arc::new(Notify::new()));
        let event = |payload, at| {
            let mut event = DomainEvent::new(JobId::new(), None, payload);
            event.occurred_at = at;
            event
        };
        let downloaded = || EventPayload::VideoDownloaded { captions: false, reused: false };

        for _ in 0..20 {
            sink.accept(&event(downloaded(), a_second_ago)).await.unwrap();
        }
        sink.accept(&event(EventPayload::JobFinished { status: JobStatus::Completed }, a_second_ago)).await.unwrap();
        assert_eq!(store.lists.load(Ordering::SeqCst), 1, "one read for 21 events");
        assert_eq!(store.enqueues.load(Ordering::SeqCst), 1, "only the event a webhook wants goes to the store");
        let (page, _) = store.list_deliveries(finished.webhook_id, None, 10, 0).await.unwrap();
        assert_eq!(page.len(), 1);

        // Created after the list was read, before the event.
        let now = Utc::now().trunc_subsecs(6);
        let fresh = webhook(&["video_downloaded"], now);
        store.create_webhook(&fresh, &secret).await.unwrap();
        sink.accept(&event(downloaded(), now + chrono::Duration::milliseconds(1))).await.unwrap();
        assert_eq!(store.lists.load(Ordering::SeqCst), 2);
        let (page, _) = store.list_deliveries(fresh.webhook_id, None, 10, 0).await.unwrap();
        assert_eq!(page.len(), 1, "the new webhook gets the event that followed it");
        // An event from before it was created is not its.
        sink.accept(&event(downloaded(), a_second_ago)).await.unwrap();
        let (page, _) = store.list_deliveries(fresh.webhook_id, None, 10, 0).await.unwrap();
        assert_eq!(page.len(), 1);
    }

    #[tokio::test]
    async fn an_enqueued_event_is_sent_signed_and_retried_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn WebhookStore> = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap());
        let webhook = Webhook {
            webhook_id: Uuid::now_v7(),
            url: "https://hooks.example.com/in".into(),
            events: vec!["job_finished".into()],
            created_at: Utc::now().trunc_subsecs(6) - chrono::Duration::seconds(1),
        };
        store.create_webhook(&webhook, &SecretString::from("sixteen-chars-at-least")).await.unwrap();
        let receiver = Arc::new(FlakyReceiver { failures: 2, seen: AtomicU32::new(0), requests: Mutex::default() });
        let wake = Arc::new(Notify::new());
        let args = WebhookDispatcherArgs {
            store: store.clone(),
            sender: receiver.clone(),
            settings: Arc::new(settings(5)),
            wake: wake.clone(),
        };
        let (dispatcher, handle) = Actor::spawn(None, WebhookDispatcher, args).await.unwrap();
        let sink = WebhookSink::new(store.clone(), wake);
        let event = DomainEvent::new(JobId::new(), None, EventPayload::JobFinished { status: JobStatus::Completed });
        sink.accept(&event).await.unwrap();
        sink.accept(&event).await.unwrap();

        eventually_async("the delivery is delivered", || async {
            let (page, _) = store.list_deliveries(webhook.webhook_id, None, 10, 0).await.unwrap();
            page.first().is_some_and(|d| d.status == DeliveryStatus::Delivered)
        })
        .await;
        let (page, _) = store.list_deliveries(webhook.webhook_id, None, 10, 0).await.unwrap();
        assert_eq!(page.len(), 1, "one delivery for the event seen twice");
        assert_eq!((page[0].attempts, page[0].last_status, page[0].last_error.as_deref()), (3, Some(200), None));
        let requests = receiver.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 3);
        let request = &requests[2];
        let header = |name: &str| request.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(header(EVENT_HEADER), "job_finished");
        assert_eq!(header(DELIVERY_HEADER), page[0].delivery_id.to_string());
        let now = Utc::now().timestamp();
        assert!(verify(b"sixteen-chars-at-least", &header(SIGNATURE_HEADER), &request.body, now, 60));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["event_id"], event.event_id.to_string());
        assert_eq!(body["data"]["status"], "completed");
        dispatcher.stop(None);
        handle.await.unwrap();
    }
}
