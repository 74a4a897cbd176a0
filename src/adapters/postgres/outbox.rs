//! The transactional outbox (PostgreSQL): in production, publishing a domain event means inserting
//! it into `outbox` (in the transaction of the change it reports, where there is one) together with
//! one `outbox_pending` row per sink (the RabbitMQ fanout exchange, Kafka). One relay loop per sink
//! publishes that sink's pending rows and deletes them, so a broker that is down only delays its
//! own events: they wait in the table while the other sink carries on (the actors route results
//! through the fanout exchange, so a Kafka outage does not stall the pipeline). Several processes
//! share the table with `FOR UPDATE SKIP LOCKED` on the pending rows. Delivery is at-least-once (a
//! crash between publishing and deleting republishes), so consumers deduplicate by `event_id`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::Row;
use uuid::Uuid;

use super::translate;
use crate::adapters::group_commit::{Apply, GroupCommit, by_rounds};
use crate::domain::{Backoff, DomainEvent};
use crate::ports::{EventBus, EventStream, PortError, PortResult};

const NOTIFY_CHANNEL: &str = "tubesum_outbox";
const BATCH: i64 = 200;

/// A broker the relay publishes to, and the name its pending rows are kept under.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub bus: Arc<dyn EventBus>,
}

impl Sink {
    pub fn new(name: &str, bus: Arc<dyn EventBus>) -> Self {
        Self { name: name.to_owned(), bus }
    }
}

/// Publishes into the outbox, for every sink named; subscribes through `subscriptions` (the fanout
/// exchange) and, as a consumer group, through `groups` (Kafka). Events published at once by many
/// workers are inserted together (see [`group_commit`](crate::adapters::group_commit)).
pub struct OutboxEventBus {
    pool: PgPool,
    writes: GroupCommit<DomainEvent>,
    subscriptions: Arc<dyn EventBus>,
    groups: Arc<dyn EventBus>,
}

impl OutboxEventBus {
    /// `batch`: at most this many events in one insert (1: each publisher inserts its own).
    pub fn new(
        pool: PgPool,
        sinks: &[Sink],
        subscriptions: Arc<dyn EventBus>,
        groups: Arc<dyn EventBus>,
        batch: usize,
    ) -> Self {
        let sinks = sinks.iter().map(|s| s.name.clone()).collect();
        let writes = GroupCommit::start(Enqueue { pool: pool.clone(), sinks }, batch);
        Self { pool, writes, subscriptions, groups }
    }
}

/// Inserts a batch of events into the outbox: one statement per round (an event id at most once
/// in each), as [`enqueue`] does for one.
struct Enqueue {
    pool: PgPool,
    sinks: Vec<String>,
}

#[async_trait]
impl Apply<DomainEvent> for Enqueue {
    async fn apply(&self, events: &[DomainEvent]) -> Vec<PortResult<()>> {
        by_rounds(events, |e| e.event_id, |batch| self.insert(batch), |_, ()| ()).await
    }
}

impl Enqueue {
    async fn insert(&self, events: Vec<&DomainEvent>) -> PortResult<()> {
        enqueue_all(&self.pool, &events, &self.sinks).await
    }
}

/// The sink that routes results to the actors waiting for them (the fanout exchange): the only
/// one an event is published to again.
pub const ROUTING_SINK: &str = "fanout";

/// Inserts `event` into the outbox, pending for each of `sinks`, within `executor` (a
/// transaction or the pool). A second insert of the same `event_id` (a stage redone after a
/// redelivery, or asked for again: see [`DomainEvent::stable`]) keeps the first event as it was
/// and makes it pending again for the [`ROUTING_SINK`] only, so that whoever waits for it hears
/// it; the event log (Kafka) has it already and gets each event id once.
pub async fn enqueue<'e, E>(executor: E, event: &DomainEvent, sinks: &[String]) -> PortResult<()>
where
    E: sqlx::PgExecutor<'e>,
{
    enqueue_all(executor, &[event], sinks).await
}

/// [`enqueue`]s `events` in one statement; each event id at most once among them.
async fn enqueue_all<'e, E>(executor: E, events: &[&DomainEvent], sinks: &[String]) -> PortResult<()>
where
    E: sqlx::PgExecutor<'e>,
{
    let payloads = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PortError::Other(format!("encoding event: {e}")))?;
    // (The NOT EXISTS reads the table as it was before this statement: an event id new to it.)
    sqlx::query(
        "WITH ins AS (INSERT INTO outbox (event_id, topic, key, payload) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) \
         ON CONFLICT (event_id) DO UPDATE SET published_at = NULL RETURNING id, event_id), \
         pending AS (INSERT INTO outbox_pending (outbox_id, sink) SELECT ins.id, sink FROM ins, unnest($5::text[]) AS sink \
         WHERE sink = $7 OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = ins.event_id) ON CONFLICT DO NOTHING) \
         SELECT pg_notify($6, '') FROM (SELECT 1 FROM ins LIMIT 1) AS written",
    )
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.payload.kind()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.video_id.as_ref().map(|v| v.to_string())).collect::<Vec<_>>())
    .bind(payloads)
    .bind(sinks)
    .bind(NOTIFY_CHANNEL)
    .bind(ROUTING_SINK)
    .execute(executor)
    .await
    .map_err(translate)?;
    Ok(())
}

#[async_trait]
impl EventBus for OutboxEventBus {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        self.writes.submit(event).await
    }

    async fn subscribe(&self) -> PortResult<EventStream> {
        self.subscriptions.subscribe().await
    }

    async fn subscribe_group(&self, group: &str) -> PortResult<EventStream> {
        self.groups.subscribe_group(group).await
    }

    async fn backlog(&self) -> PortResult<Option<u64>> {
        Ok(Some(pending(&self.pool).await?.try_into().unwrap_or_default()))
    }

    async fn dead_letters(&self) -> PortResult<Option<u64>> {
        Ok(Some(dead_letters(&self.pool).await?.try_into().unwrap_or_default()))
    }
}

/// How many times a sink may refuse an event (other than by being away) before the event is moved
/// to `outbox_dead` for that sink.
pub const MAX_REFUSALS: i32 = 5;

/// Publishes one batch of `sink`'s pending events, oldest first, all at once, and takes the ones
/// the sink took off its list. An event that does not decode, or that the sink refused
/// [`MAX_REFUSALS`] times, goes to `outbox_dead` instead of blocking the rows behind it; events the
/// sink could not take because it is away stay pending and make this an `Unavailable` error (the
/// relay backs off). Returns how many were published.
pub async fn relay_once(pool: &PgPool, sink: &Sink) -> PortResult<usize> {
    relay_round(pool, sink).await.map(|round| round.published)
}

/// One round of the relay: how many pending rows it took, and how many of them went out.
struct Round {
    taken: usize,
    published: usize,
}

/// [`relay_once`], telling also how many rows the round took.
async fn relay_round(pool: &PgPool, sink: &Sink) -> PortResult<Round> {
    let mut tx = pool.begin().await.map_err(translate)?;
    let rows = sqlx::query(
        "SELECT p.outbox_id, p.failures, o.payload FROM outbox_pending p JOIN outbox o ON o.id = p.outbox_id \
         WHERE p.sink = $1 ORDER BY p.outbox_id LIMIT $2 FOR UPDATE OF p SKIP LOCKED",
    )
    .bind(&sink.name)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await
    .map_err(translate)?;
    if rows.is_empty() {
        return Ok(Round { taken: 0, published: 0 });
    }
    let mut batch = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.get("outbox_id");
        let failures: i32 = row.get("failures");
        match serde_json::from_value::<DomainEvent>(row.get("payload")) {
            Ok(event) => batch.push((id, failures, event)),
            Err(e) => bury(&mut tx, sink, id, &format!("undecodable outbox row: {e}")).await?,
        }
    }
    let results = futures::future::join_all(batch.iter().map(|(_, _, event)| sink.bus.publish(event.clone()))).await;
    let (mut published, mut away) = (Vec::new(), None);
    for ((id, failures, event), result) in batch.iter().zip(results) {
        match result {
            Ok(()) => published.push(*id),
            Err(e @ PortError::Unavailable(_)) => away = Some(e),
            Err(e) if failures + 1 >= MAX_REFUSALS => {
                let reason = format!("{} refused {} times; last: {e}", event.payload.kind(), failures + 1);
                bury(&mut tx, sink, *id, &reason).await?;
            }
            Err(e) => {
                sqlx::query(
                    "UPDATE outbox_pending SET failures = failures + 1, last_error = $3 WHERE sink = $1 AND outbox_id = $2",
                )
                .bind(&sink.name)
                .bind(id)
                .bind(e.to_string())
                .execute(&mut *tx)
                .await
                .map_err(translate)?;
            }
        }
    }
    // Off the sink's list, and when it last went out (to any sink): pending rows say what still
    // waits. One statement.
    sqlx::query(
        "WITH gone AS (DELETE FROM outbox_pending WHERE sink = $1 AND outbox_id = ANY($2)) \
         UPDATE outbox SET published_at = now() WHERE id = ANY($2)",
    )
    .bind(&sink.name)
    .bind(&published)
    .execute(&mut *tx)
    .await
    .map_err(translate)?;
    tx.commit().await.map_err(translate)?;
    match away {
        Some(e) if published.is_empty() => Err(e),
        _ => Ok(Round { taken: rows.len(), published: published.len() }),
    }
}

/// Moves `sink`'s pending event `id` to `outbox_dead`, with why.
async fn bury(tx: &mut sqlx::PgConnection, sink: &Sink, id: i64, reason: &str) -> PortResult<()> {
    tracing::error!(sink = %sink.name, outbox_id = id, reason, "outbox: an event is moved to outbox_dead");
    sqlx::query(
        "WITH gone AS (DELETE FROM outbox_pending WHERE sink = $1 AND outbox_id = $2 RETURNING outbox_id) \
         INSERT INTO outbox_dead (outbox_id, sink, error) SELECT outbox_id, $1, $3 FROM gone ON CONFLICT DO NOTHING",
    )
    .bind(&sink.name)
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await
    .map_err(translate)?;
    Ok(())
}

/// How many events some sink gave up on (`outbox_dead`).
pub async fn dead_letters(pool: &PgPool) -> PortResult<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox_dead").fetch_one(pool).await.map_err(translate)
}

/// How many events wait in the outbox for at least one sink.
pub async fn pending(pool: &PgPool) -> PortResult<i64> {
    sqlx::query_scalar("SELECT COUNT(DISTINCT outbox_id) FROM outbox_pending").fetch_one(pool).await.map_err(translate)
}

/// Deletes the events every sink published more than `retention` ago; returns how many.
pub async fn prune(pool: &PgPool, retention: Duration) -> PortResult<u64> {
    let done = sqlx::query(
        "DELETE FROM outbox o WHERE o.published_at < now() - make_interval(secs => $1) \
         AND NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.outbox_id = o.id) \
         AND NOT EXISTS (SELECT 1 FROM outbox_dead d WHERE d.outbox_id = o.id)",
    )
    .bind(retention.as_secs_f64())
    .execute(pool)
    .await
    .map_err(translate)?;
    Ok(done.rows_affected())
}

/// Runs one relay loop per sink until the task is dropped, and prunes published events older
/// than `retention` (when set) every hour.
pub async fn run_relay(pool: PgPool, sinks: Vec<Sink>, poll: Duration, backoff: Backoff, retention: Option<Duration>) {
    let pruner = async {
        let Some(retention) = retention else { return };
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            match prune(&pool, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(events = n, "outbox: pruned published events"),
                Err(e) => tracing::warn!(error = %e, "outbox: pruning failed"),
            }
        }
    };
    let relays = futures::future::join_all(sinks.into_iter().map(|sink| relay_loop(pool.clone(), sink, poll, backoff)));
    tokio::join!(pruner, relays);
}

/// Relays `sink`'s events: woken by NOTIFY or every `poll`, backing off while the sink or the
/// database is unavailable.
async fn relay_loop(pool: PgPool, sink: Sink, poll: Duration, backoff: Backoff) {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.ok();
    if let Some(l) = listener.as_mut()
        && l.listen(NOTIFY_CHANNEL).await.is_err()
    {
        listener = None;
    }
    let mut failures = 0u32;
    loop {
        match relay_round(&pool, &sink).await {
            // A full batch: more may wait behind it.
            Ok(round) if round.taken >= BATCH as usize => {
                failures = 0;
                continue;
            }
            // What was inserted before this round went out with it; what comes after notifies.
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                let delay = backoff.delay(failures);
                tracing::warn!(sink = %sink.name, error = %e, ?delay, "outbox relay: publishing failed; events wait in the outbox");
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        match listener.as_mut() {
            Some(l) => {
                let _ = tokio::time::timeout(poll, l.try_recv()).await;
                // The notifications already here are answered by one round, not one each.
                while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::ZERO, l.try_recv()).await {}
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// When an event was published: `None` if it is not in the outbox, `Some(None)` while a sink
/// still waits for it.
pub async fn published_at(pool: &PgPool, event_id: Uuid) -> PortResult<Option<Option<chrono::DateTime<chrono::Utc>>>> {
    let row = sqlx::query(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM outbox_pending p WHERE p.outbox_id = o.id) THEN NULL \
         ELSE o.published_at END AS published_at FROM outbox o WHERE o.event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(pool)
    .await
    .map_err(translate)?;
    Ok(row.map(|r| r.get("published_at")))
}
