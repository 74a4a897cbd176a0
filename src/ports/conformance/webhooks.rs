//! The [`WebhookStore`] conformance suite: webhooks kept and removed, one delivery per (webhook,
//! event) for the webhooks that ask for its kind, claims that hand a delivery to one dispatcher
//! at a time, and outcomes recorded only under a claim that still holds.

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::domain::webhooks::{DeliveryStatus, Webhook};
use crate::domain::{DomainEvent, EventPayload, JobId, JobStatus, VideoId};
use crate::ports::{AttemptResult, WebhookStore};

fn webhook(url: &str, events: &[&str]) -> Webhook {
    Webhook {
        webhook_id: Uuid::now_v7(),
        url: url.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        // Stores keep microseconds; created a little before the events below.
        created_at: Utc::now().trunc_subsecs(6) - chrono::Duration::seconds(5),
    }
}

pub async fn webhook_store(store: &dyn WebhookStore) {
    let a = webhook("https://a.example.com/hook", &["job_finished", "summarization_completed"]);
    let b = webhook("https://b.example.com/hook?x=1", &["job_finished"]);
    let secret = SecretString::from("a-secret-of-twenty-chars");
    store.create_webhook(&a, &secret).await.unwrap();
    store.create_webhook(&b, &SecretString::from("another-secret-entirely")).await.unwrap();
    assert!(store.create_webhook(&a, &secret).await.is_err(), "duplicate webhook id accepted");
    assert_eq!(store.get_webhook(a.webhook_id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(store.get_webhook(Uuid::now_v7()).await.unwrap(), None);
    let listed: Vec<Uuid> = store.list_webhooks().await.unwrap().iter().map(|w| w.webhook_id).collect();
    let (pa, pb) = (listed.iter().position(|id| *id == a.webhook_id), listed.iter().position(|id| *id == b.webhook_id));
    assert!(pa.is_some() && pa < pb, "oldest first: {listed:?}");

    // One delivery per webhook that asks for the kind, once per event.
    let job = JobId::new();
    let finished = DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Completed });
    let summarized = DomainEvent::new(
        job,
        Some(VideoId::parse("aaaaaaaaaaa").unwrap()),
        EventPayload::SummarizationCompleted { summarizer: "textrank".into() },
    );
    let discovered =
        DomainEvent::new(job, None, EventPayload::VideoDiscovered { title: "t".into(), published_at: None });
    assert_eq!(store.enqueue_deliveries(&finished).await.unwrap(), 2);
    assert_eq!(store.enqueue_deliveries(&finished).await.unwrap(), 0, "a redelivered event makes none");
    assert_eq!(store.enqueue_deliveries(&summarized).await.unwrap(), 1);
    assert_eq!(store.enqueue_deliveries(&discovered).await.unwrap(), 0, "nobody asked for it");
    let mut before = finished.clone();
    before.event_id = Uuid::now_v7();
    before.occurred_at = a.created_at - chrono::Duration::seconds(60);
    assert_eq!(store.enqueue_deliveries(&before).await.unwrap(), 0, "an event older than the webhooks");

    let (deliveries, total) = store.list_deliveries(a.webhook_id, None, 10, 0).await.unwrap();
    assert_eq!(total, 2);
    let kinds: Vec<&str> = deliveries.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(kinds, ["summarization_completed", "job_finished"], "newest first");
    let first = &deliveries[1];
    assert_eq!((first.webhook_id, first.event_id), (a.webhook_id, finished.event_id));
    assert_eq!((first.status, first.attempts, first.last_status), (DeliveryStatus::Pending, 0, None));
    assert!(first.next_attempt_at.is_some() && first.delivered_at.is_none());

    // A claim takes each due delivery once, with what sending it needs.
    let claimed = store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    assert!(store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap().is_empty(), "claimed already");
    let of = |webhook: Uuid, event: Uuid| {
        claimed.iter().find(|c| c.delivery.webhook_id == webhook && c.delivery.event_id == event).expect("claimed")
    };
    let (a_finished, a_summarized, b_finished) = (
        of(a.webhook_id, finished.event_id),
        of(a.webhook_id, summarized.event_id),
        of(b.webhook_id, finished.event_id),
    );
    assert_eq!(
        (a_summarized.url.as_str(), a_summarized.secret.expose_secret()),
        (a.url.as_str(), secret.expose_secret())
    );
    assert_eq!(a_summarized.event, summarized, "the event as it was published");
    assert_eq!(b_finished.url, b.url);

    // Outcomes are recorded under the claim only.
    let delivered = AttemptResult::Delivered { status: 204 };
    assert!(!store.record_attempt(a_finished.delivery.delivery_id, Uuid::now_v7(), &delivered).await.unwrap());
    assert!(store.record_attempt(a_finished.delivery.delivery_id, a_finished.claim, &delivered).await.unwrap());
    assert!(
        !store.record_attempt(a_finished.delivery.delivery_id, a_finished.claim, &delivered).await.unwrap(),
        "an outcome is recorded once"
    );
    let failed = AttemptResult::Failed { status: None, error: "address refused".into() };
    assert!(store.record_attempt(b_finished.delivery.delivery_id, b_finished.claim, &failed).await.unwrap());
    let due_now = Utc::now() - chrono::Duration::seconds(1);
    let retry = AttemptResult::Retry { status: Some(500), error: "HTTP 500".into(), next_attempt_at: due_now };
    assert!(store.record_attempt(a_summarized.delivery.delivery_id, a_summarized.claim, &retry).await.unwrap());

    // A retry is due again; a claim that runs out lets another take the delivery, and the first
    // claim's outcome is then refused.
    let again = store.claim_deliveries(10, Duration::from_millis(300)).await.unwrap();
    assert_eq!(again.len(), 1, "only the retried one: {again:?}");
    let retried = &again[0].delivery;
    assert_eq!(retried.delivery_id, a_summarized.delivery.delivery_id);
    assert_eq!(
        (retried.attempts, retried.last_status, retried.last_error.as_deref()),
        (1, Some(500), Some("HTTP 500"))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let taken_over = loop {
        let taken = store.claim_deliveries(10, Duration::from_secs(60)).await.unwrap();
        if let Some(taken) = taken.into_iter().next() {
            break taken;
        }
        assert!(tokio::time::Instant::now() < deadline, "the claim never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken_over.delivery.delivery_id, retried.delivery_id);
    assert!(!store.record_attempt(retried.delivery_id, again[0].claim, &delivered).await.unwrap(), "ran out");
    assert!(store.record_attempt(retried.delivery_id, taken_over.claim, &delivered).await.unwrap());

    // Listed with their outcomes, filtered by status, a page at a time.
    let (done, total) = store.list_deliveries(a.webhook_id, Some(DeliveryStatus::Delivered), 10, 0).await.unwrap();
    assert_eq!(total, 2);
    let summarized_delivery = done.iter().find(|d| d.event_id == summarized.event_id).unwrap();
    assert_eq!((summarized_delivery.attempts, summarized_delivery.last_status), (2, Some(204)));
    assert!(summarized_delivery.delivered_at.is_some() && summarized_delivery.next_attempt_at.is_none());
    assert_eq!(summarized_delivery.last_error, None, "a delivery clears the last error");
    let (page, total) = store.list_deliveries(a.webhook_id, None, 1, 1).await.unwrap();
    assert_eq!((page.len(), total, page[0].event_id), (1, 2, finished.event_id));
    let (gave_up, _) = store.list_deliveries(b.webhook_id, Some(DeliveryStatus::Failed), 10, 0).await.unwrap();
    assert_eq!(gave_up.len(), 1);
    assert_eq!((gave_up[0].attempts, gave_up[0].last_error.as_deref()), (1, Some("address refused")));
    assert!(store.list_deliveries(b.webhook_id, Some(DeliveryStatus::Pending), 10, 0).await.unwrap().0.is_empty());

    // Deleting a webhook removes it and its deliveries; later events skip it.
    assert!(store.delete_webhook(a.webhook_id).await.unwrap());
    assert!(!store.delete_webhook(a.webhook_id).await.unwrap());
    assert_eq!(store.get_webhook(a.webhook_id).await.unwrap(), None);
    assert_eq!(store.list_deliveries(a.webhook_id, None, 10, 0).await.unwrap(), (Vec::new(), 0));
    let later = DomainEvent::new(JobId::new(), None, EventPayload::JobFinished { status: JobStatus::Failed });
    assert_eq!(store.enqueue_deliveries(&later).await.unwrap(), 1, "b only");
    assert!(store.delete_webhook(b.webhook_id).await.unwrap());
}
