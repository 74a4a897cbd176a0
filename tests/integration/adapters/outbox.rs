//! The transactional outbox against the local PostgreSQL: events wait while their broker is down,
//! the relay publishes soon after an insert.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tubesum::adapters::embedded::InProcessEventBus;
use tubesum::adapters::postgres::outbox::{
    MAX_REFUSALS, OutboxEventBus, Sink, dead_letters, enqueue, pending, prune, published_at, relay_once, run_relay,
};
use tubesum::adapters::postgres::testing::TestDatabase;
use tubesum::domain::{DomainEvent, EventPayload, JobId, VideoId};
use tubesum::ports::{EventBus, EventStream, PortError, PortResult};
use uuid::Uuid;

/// A sink that is down until switched on, and records what it took.
#[derive(Default)]
struct Switchable {
    up: Mutex<bool>,
    taken: Mutex<Vec<DomainEvent>>,
}

#[async_trait]
impl EventBus for Switchable {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        if !*self.up.lock().unwrap() {
            return Err(PortError::Unavailable("broker down".into()));
        }
        self.taken.lock().unwrap().push(event);
        Ok(())
    }
    async fn subscribe(&self) -> PortResult<EventStream> {
        Err(PortError::Other("not a source".into()))
    }
}

fn event(n: u32) -> DomainEvent {
    DomainEvent::new(
        JobId::new(),
        Some(VideoId::parse("aaaaaaaaaaa").unwrap()),
        EventPayload::AudioExtracted { seconds: f64::from(n) },
    )
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_their_broker_is_down() {
    let db = TestDatabase::create().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let fanout = Arc::new(InProcessEventBus::default());
    let down = Arc::new(Switchable::default());
    let (to_down, to_fanout) = (Sink::new("down", down.clone()), Sink::new("fanout", fanout.clone()));
    let bus =
        OutboxEventBus::new(pool.clone(), &[to_down.clone(), to_fanout.clone()], fanout.clone(), fanout.clone(), 64);
    let events: Vec<DomainEvent> = (0..3).map(event).collect();
    for e in &events {
        bus.publish(e.clone()).await.unwrap();
    }
    bus.publish(events[0].clone()).await.unwrap(); // a duplicate is one row
    assert_eq!(pending(&pool).await.unwrap(), 3);

    // One broker down holds back only its own events.
    let mut subscription = bus.subscribe().await.unwrap();
    assert!(relay_once(&pool, &to_down).await.is_err());
    assert_eq!(relay_once(&pool, &to_fanout).await.unwrap(), 3);
    assert_eq!(subscription.next().await.unwrap().unwrap(), events[0]);
    assert_eq!(pending(&pool).await.unwrap(), 3, "nothing is lost while a broker is down");
    assert_eq!(published_at(&pool, events[2].event_id).await.unwrap(), Some(None));

    *down.up.lock().unwrap() = true;
    assert_eq!(relay_once(&pool, &to_down).await.unwrap(), 3);
    assert_eq!(relay_once(&pool, &to_down).await.unwrap(), 0);
    assert_eq!(pending(&pool).await.unwrap(), 0);
    assert_eq!(*down.taken.lock().unwrap(), events, "published once each, in order");
    assert!(published_at(&pool, events[2].event_id).await.unwrap().unwrap().is_some());
    assert_eq!(published_at(&pool, Uuid::new_v4()).await.unwrap(), None);

    // The same event produced again (a redone stage, a result asked for again) is published again,
    // as it first was, to the routing sink only: the other (the event log) has it already.
    let mut again = events[0].clone();
    again.duration_ms = Some(99);
    bus.publish(again).await.unwrap();
    assert_eq!(pending(&pool).await.unwrap(), 1);
    assert_eq!(relay_once(&pool, &to_down).await.unwrap(), 0, "not to the log again");
    assert_eq!(relay_once(&pool, &to_fanout).await.unwrap(), 1);
    assert_eq!(subscription.next().await.unwrap().unwrap(), events[1]);
    assert_eq!(subscription.next().await.unwrap().unwrap(), events[2]);
    assert_eq!(subscription.next().await.unwrap().unwrap(), events[0], "again, as it first was");
    assert_eq!(*down.taken.lock().unwrap(), events, "the log got each event once");

    // Pruning takes only what every sink has, and only once it is old enough.
    bus.publish(event(9)).await.unwrap();
    assert_eq!(prune(&pool, Duration::from_secs(3600)).await.unwrap(), 0, "too young");
    sqlx::query("UPDATE outbox SET published_at = now() - interval '2 hours'").execute(&pool).await.unwrap();
    assert_eq!(prune(&pool, Duration::from_secs(3600)).await.unwrap(), 3, "the waiting one stays");
    assert_eq!(pending(&pool).await.unwrap(), 1);
    db.drop_now().await;
}

#[tokio::test]
async fn events_published_at_once_are_inserted_together_each_as_if_alone() {
    let db = TestDatabase::create().await;
    let pool = db.store().await.pool().clone();
    let fanout = Arc::new(InProcessEventBus::default());
    let log = Arc::new(Switchable::default());
    let (to_log, to_fanout) = (Sink::new("log", log.clone()), Sink::new("fanout", fanout.clone()));
    let bus = OutboxEventBus::new(pool.clone(), &[to_log, to_fanout], fanout.clone(), fanout.clone(), 16);
    let old = event(0);
    bus.publish(old.clone()).await.unwrap();
    sqlx::query("DELETE FROM outbox_pending").execute(&pool).await.unwrap(); // as if relayed
    // 40 new events and the old one again (twice), from 42 publishers at once.
    let wave: Vec<DomainEvent> = (1..=40).map(event).chain([old.clone(), old.clone()]).collect();
    let results = futures::future::join_all(wave.iter().cloned().map(|e| bus.publish(e))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let per_sink: Vec<(String, i64)> =
        sqlx::query_as("SELECT sink, count(*) FROM outbox_pending GROUP BY sink ORDER BY sink")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(per_sink, [("fanout".to_owned(), 41), ("log".to_owned(), 40)], "the old event to the routing sink only");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 41, "one row per event id");
    db.drop_now().await;
}

#[tokio::test]
async fn the_relay_task_publishes_soon_after_an_insert() {
    let db = TestDatabase::create().await;
    let pool = db.store().await.pool().clone();
    let sink = Arc::new(Switchable::default());
    *sink.up.lock().unwrap() = true;
    let backoff = tubesum::domain::Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(100) };
    let relay = tokio::spawn(run_relay(
        pool.clone(),
        vec![Sink::new("s", sink.clone())],
        Duration::from_secs(30),
        backoff,
        None,
    ));
    let e = event(7);
    enqueue(&pool, &e, &["s".to_owned()]).await.unwrap();
    // NOTIFY wakes the relay long before its 30 s poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sink.taken.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "relay did not publish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.abort();
    db.drop_now().await;
}

/// A sink that refuses one event for good (as a broker refuses a message it cannot take) and takes
/// the others.
struct Refuses {
    refused: Uuid,
    taken: Mutex<Vec<DomainEvent>>,
}

#[async_trait]
impl EventBus for Refuses {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        if event.event_id == self.refused {
            return Err(PortError::Other("message too large".into()));
        }
        self.taken.lock().unwrap().push(event);
        Ok(())
    }
    async fn subscribe(&self) -> PortResult<EventStream> {
        Err(PortError::Other("not a source".into()))
    }
}

#[tokio::test]
async fn a_poison_row_is_moved_aside_and_holds_back_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store().await;
    let pool = store.pool().clone();
    let refused = event(1);
    let sink = Sink::new("picky", Arc::new(Refuses { refused: refused.event_id, taken: Mutex::new(Vec::new()) }));
    let sinks = ["picky".to_owned()];
    // An undecodable row first in line, then a refused event, then good ones.
    sqlx::query(
        "WITH o AS (INSERT INTO outbox (event_id, topic, payload) VALUES ($1, 'x', '{\"not\": \"an event\"}') RETURNING id) \
         INSERT INTO outbox_pending (outbox_id, sink) SELECT id, 'picky' FROM o",
    )
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap();
    enqueue(&pool, &refused, &sinks).await.unwrap();
    let good: Vec<DomainEvent> = (2..5).map(event).collect();
    for e in &good {
        enqueue(&pool, e, &sinks).await.unwrap();
    }

    assert_eq!(relay_once(&pool, &sink).await.unwrap(), 3, "the good ones go out past the poison");
    assert_eq!(dead_letters(&pool).await.unwrap(), 1, "the undecodable row is dead at once");
    // The refused one is tried again, then given up on.
    for _ in 1..MAX_REFUSALS {
        assert_eq!(pending(&pool).await.unwrap(), 1);
        relay_once(&pool, &sink).await.unwrap();
    }
    assert_eq!(pending(&pool).await.unwrap(), 0);
    assert_eq!(dead_letters(&pool).await.unwrap(), 2);
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT error FROM outbox_dead ORDER BY outbox_id").fetch_all(&pool).await.unwrap();
    assert!(reasons[0].contains("undecodable"), "{reasons:?}");
    assert!(reasons[1].contains("refused 5 times") && reasons[1].contains("message too large"), "{reasons:?}");
    // Dead letters are kept (with their payload) when published events are pruned.
    prune(&pool, Duration::ZERO).await.unwrap();
    assert_eq!(dead_letters(&pool).await.unwrap(), 2);
    db.drop_now().await;
}
