//! Live views, as Server-Sent Events (`text/event-stream`): `GET /events` (every event this
//! process sees) and `GET /jobs/{id}/events` (one job's: its events, its progress, its end).
//!
//! Each domain event goes out as `id: {the feed's id}`, `event: {its type}` (`video_downloaded`,
//! `stage_failed`, …), `data: {the event as JSON}`. A client that reconnects with `Last-Event-ID`
//! (browsers' `EventSource` does by itself) gets what it missed, in order, nothing twice; when
//! that is no longer possible (the process restarted, or the events were dropped from its
//! history, `server.event_history`) it gets `event: reset` first and should reload the state
//! (`GET /jobs/{id}`). A job's stream also says `event: progress` (no id: the job's status and
//! its videos per status, read from the store) when it opens and then at most every
//! [`PROGRESS_EVERY`] while the job moves, and `event: end` once the job has ended, then closes.
//! Idle streams send a keep-alive comment every `server.events_keep_alive_ms`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::jobs::{counts_by_status, existing_job, parse_job_id};
use crate::actors::feed::Feed;
use crate::domain::{DomainEvent, EventPayload, JobId, JobStatus};

/// The most often a job's stream reads and sends its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How long a job's stream waits for the job's last events once the store says it has ended.
const END_GRACE: Duration = Duration::from_secs(2);

/// Events taken from the feed at a time.
const BATCH: usize = 256;

/// A job's `event: progress`: where it stands, counted in the store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    pub job_id: String,
    pub channel_id: String,
    pub status: JobStatus,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Videos per status (every status is present), plus `total`.
    pub counts: BTreeMap<String, u64>,
}

/// Where a stream starts, for a client that cannot send `Last-Event-ID` on its first request
/// (a page's `EventSource`): the feed position the page was rendered at.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// An event id, as `Last-Event-ID` takes it: the stream starts right after it. A
    /// `Last-Event-ID` header (a reconnect) wins over it.
    pub after: Option<String>,
}

/// Every event this process sees, as it sees it (`text/event-stream`; see the module's docs for
/// the event format, `Last-Event-ID` and `event: reset`). Try `curl -N`.
#[utoipa::path(get, path = "/events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The id of the last event received: the stream resumes right after it"), Resume),
    responses((status = 200, content_type = "text/event-stream",
        description = "Events as they happen: `id`, `event` (its type) and `data` (the event as JSON)")))]
pub async fn events(State(app): State<AppState>, ApiQuery(resume): ApiQuery<Resume>, headers: HeaderMap) -> Response {
    let feed = app.pipeline.deps.feed.clone();
    let (after, reset) = start(&feed, &headers, &resume);
    let (tx, rx) = mpsc::channel(BATCH);
    tokio::spawn(async move {
        if reset {
            let _ = tx.send(reset_event()).await;
        }
        follow(&feed, after, None, &tx, |_| async { true }).await;
    });
    stream(&app, rx)
}

/// One job's events as they happen, its progress, and its end (`text/event-stream`; see the
/// module's docs). The stream closes after `event: end`.
#[utoipa::path(get, path = "/jobs/{job_id}/events", tag = "events",
    params(("job_id" = String, Path, description = "The job's id"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last event received: the stream resumes right after it"), Resume),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "`event: progress` (data: JobProgress) first, then the job's events (`id`, `event` (its \
                type), `data` (the event as JSON)) and progress as they happen; `event: end` once the job has \
                ended"),
        (status = 404, body = ErrorBody)))]
pub async fn job_events(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(resume): ApiQuery<Resume>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let job_id = parse_job_id(&job_id)?;
    let feed = app.pipeline.deps.feed.clone();
    // Where to start, before the job is read: an event after the reading is never missed.
    let (after, reset) = start(&feed, &headers, &resume);
    let first = progress(&app, job_id).await?;
    let (tx, rx) = mpsc::channel(BATCH);
    let state = app.clone();
    tokio::spawn(async move {
        if reset {
            let _ = tx.send(reset_event()).await;
        }
        let ended = first.status.is_final();
        if tx.send(progress_event(&first)).await.is_err() {
            return;
        }
        if ended {
            // What a client that resumes missed, then the end.
            if drain(&feed, after, Some(job_id), &tx, |_| async { true }).await.is_none() {
                return;
            }
            let _ = tx.send(Event::default().event("end").data(first.status.to_string())).await;
            return;
        }
        follow_job(&state, &feed, after, job_id, &tx).await;
    });
    Ok(stream(&app, rx))
}

/// The most jobs one `GET /progress` tick reports (the rest wait for the next tick).
const PROGRESS_JOBS: usize = 100;

/// Every job's progress as it moves (`text/event-stream`): an `event: progress` (data:
/// JobProgress) for each job with new events, at most every [`PROGRESS_EVERY`] per job — what a
/// list of jobs needs to stay live, without a stream per job. Nothing is sent for a quiet
/// deployment but keep-alives.
#[utoipa::path(get, path = "/progress", tag = "events", params(Resume),
    responses((status = 200, content_type = "text/event-stream",
        description = "`event: progress` (data: JobProgress) for each job that moved, as it moves")))]
pub async fn all_progress(
    State(app): State<AppState>,
    ApiQuery(resume): ApiQuery<Resume>,
    headers: HeaderMap,
) -> Response {
    let feed = app.pipeline.deps.feed.clone();
    // From where the page was rendered: a job that moved since is reported at once.
    let (start_after, _) = start(&feed, &headers, &resume);
    let (tx, rx) = mpsc::channel(BATCH);
    let state = app.clone();
    tokio::spawn(async move {
        let closing = feed.closing();
        let mut changed = feed.watch();
        let mut after = start_after;
        let mut moved = std::collections::BTreeSet::new();
        loop {
            changed.borrow_and_update();
            loop {
                let (batch, last) = feed.after(after, |_| true, BATCH);
                if batch.is_empty() {
                    break;
                }
                after = last;
                moved.extend(batch.into_iter().map(|(_, e)| e.job_id));
            }
            let now: Vec<JobId> = moved.iter().copied().take(PROGRESS_JOBS).collect();
            for job_id in now {
                moved.remove(&job_id);
                match progress(&state, job_id).await {
                    Ok(p) if tx.send(progress_event(&p)).await.is_err() => return,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%job_id, error = ?e, "could not read a job's progress for /progress"),
                }
            }
            // At most one tick per PROGRESS_EVERY; wait for news only when nothing is left over.
            let pause = tokio::time::sleep(PROGRESS_EVERY);
            tokio::select! {
                () = closing.cancelled() => return,
                () = tx.closed() => return,
                () = pause => {}
            }
            if moved.is_empty() {
                tokio::select! {
                    () = closing.cancelled() => return,
                    () = tx.closed() => return,
                    changed = changed.changed() => if changed.is_err() { return },
                }
            }
        }
    });
    stream(&app, rx)
}

/// How often the ops view is sent while someone watches.
pub const OPS_EVERY: Duration = Duration::from_secs(1);

/// `GET /ops/events`' `event: ops`: this node's report and the deployment's nodes.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsView {
    /// This node: actors by kind, supervisors, pools, one line per job (bounded: aggregates,
    /// never one line per video).
    pub here: crate::actors::snapshot::NodeSnapshot,
    /// The deployment's nodes (heartbeat age, incarnation, jobs held; each live node's own report
    /// when clustered) and the jobs no live node holds.
    pub cluster: crate::app::pipeline::ClusterView,
}

/// The ops view, live (`text/event-stream`): `event: ops` (data: OpsView) now and every second
/// while the stream is open. Nothing is collected while nobody watches.
#[utoipa::path(get, path = "/ops/events", tag = "events",
    responses((status = 200, content_type = "text/event-stream",
        description = "`event: ops` (data: OpsView) every second")))]
pub async fn ops_events(State(app): State<AppState>) -> Response {
    ticking(app, OPS_EVERY, |app| async move {
        match ops_view(&app).await {
            Ok(view) => ("ops", serde_json::to_string(&view).unwrap_or_default()),
            Err(e) => ("ops_error", e.to_string()),
        }
    })
}

/// A stream that sends `make`'s event (its type and data) now and every `every` while it is
/// open, unless it is the same as the one sent last. Nothing is made while nobody listens.
pub(crate) fn ticking<F, Fut>(app: AppState, every: Duration, make: F) -> Response
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (&'static str, String)> + Send,
{
    let (tx, rx) = mpsc::channel(2);
    let closing = app.pipeline.deps.feed.closing();
    let response = stream(&app, rx);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tokio::select! {
                () = closing.cancelled() => return,
                () = tx.closed() => return,
                _ = ticks.tick() => {}
            }
            let made = make(app.clone()).await;
            if last.as_ref() == Some(&made) {
                continue;
            }
            if tx.send(Event::default().event(made.0).data(&made.1)).await.is_err() {
                return;
            }
            last = Some(made);
        }
    });
    response
}

/// What `GET /ops/events` sends.
pub async fn ops_view(app: &AppState) -> Result<OpsView, ApiError> {
    let (here, cluster) = tokio::join!(app.pipeline.snapshot(), app.pipeline.cluster());
    Ok(OpsView { here, cluster: cluster? })
}

/// The response: the events, with keep-alives; unbuffered by proxies that honour the header.
fn stream(app: &AppState, rx: mpsc::Receiver<Event>) -> Response {
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let keep_alive = KeepAlive::new().interval(app.events_keep_alive);
    let mut response = Sse::new(events).keep_alive(keep_alive).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Where a stream starts: after the event its `Last-Event-ID` (else its `?after=`) names, or
/// after the newest event (then `true` when an id was given but cannot be resumed from).
fn start(feed: &Feed, headers: &HeaderMap, resume: &Resume) -> (u64, bool) {
    let latest = feed.latest();
    let given = headers.get("last-event-id").and_then(|v| v.to_str().ok()).or(resume.after.as_deref());
    match given {
        None => (latest, false),
        Some(id) => feed.resume_after(id).map_or((latest, true), |after| (after, false)),
    }
}

fn reset_event() -> Event {
    Event::default()
        .event("reset")
        .data("events since the Last-Event-ID are no longer kept here: reload the state, then follow on")
}

/// A domain event as it goes out: its feed id, its type, itself as JSON.
fn domain_event(feed: &Feed, seq: u64, event: &DomainEvent) -> Event {
    let out = Event::default().id(feed.id(seq)).event(event.payload.kind());
    out.json_data(event).unwrap_or_else(|_| Event::default().id(feed.id(seq)).comment("undecodable event"))
}

fn progress_event(progress: &JobProgress) -> Event {
    Event::default().event("progress").json_data(progress).unwrap_or_else(|_| Event::default().comment("progress"))
}

/// Sends the feed's events after `after` that `job` (all when `None`) concerns, as they come,
/// each once `sent` has looked at it (it answers whether to go on), until the client goes, the
/// process stops serving, or `sent` says stop.
async fn follow<F, Fut>(feed: &Feed, mut after: u64, job: Option<JobId>, tx: &mpsc::Sender<Event>, sent: F)
where
    F: Fn(Arc<DomainEvent>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let closing = feed.closing();
    let mut changed = feed.watch();
    loop {
        changed.borrow_and_update();
        match drain(feed, after, job, tx, &sent).await {
            Some(last) => after = last,
            None => return,
        }
        tokio::select! {
            () = closing.cancelled() => return,
            () = tx.closed() => return,
            changed = changed.changed() => if changed.is_err() { return },
        }
    }
}

/// Sends every kept event after `after` that `job` (all when `None`) concerns, each once `sent`
/// has looked at it; the `seq` looked at last, or `None` once the client went or `sent` said stop.
async fn drain<F, Fut>(
    feed: &Feed,
    mut after: u64,
    job: Option<JobId>,
    tx: &mpsc::Sender<Event>,
    sent: F,
) -> Option<u64>
where
    F: Fn(Arc<DomainEvent>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let (batch, last) = feed.after(after, |e| job.is_none_or(|j| e.job_id == j), BATCH);
        if batch.is_empty() {
            return Some(last);
        }
        after = last;
        for (seq, event) in batch {
            if tx.send(domain_event(feed, seq, &event)).await.is_err() || !sent(event).await {
                return None;
            }
        }
    }
}

/// A job's part of the feed, with its progress at most every [`PROGRESS_EVERY`] while it moves,
/// until it has ended.
async fn follow_job(app: &AppState, feed: &Feed, after: u64, job_id: JobId, tx: &mpsc::Sender<Event>) {
    // Events of the job go out as they come; each one asks for a progress, and the asks that
    // come within one PROGRESS_EVERY are answered by one reading.
    let moved = tokio::sync::Notify::new();
    let events = follow(feed, after, Some(job_id), tx, |event| {
        moved.notify_one();
        let finished = matches!(event.payload, EventPayload::JobFinished { .. });
        async move { !finished }
    });
    tokio::pin!(events);
    let progress_loop = async {
        let mut last_sent = tokio::time::Instant::now();
        loop {
            moved.notified().await;
            tokio::time::sleep_until(last_sent + PROGRESS_EVERY).await;
            last_sent = tokio::time::Instant::now();
            match progress(app, job_id).await {
                Ok(now) if now.status.is_final() => return,
                Ok(now) => {
                    if tx.send(progress_event(&now)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(%job_id, error = ?e, "could not read a job's progress for its stream"),
            }
        }
    };
    // Either way the job has ended (its `job_finished`, or a progress that says so) or the
    // client went: the last progress and the end follow.
    tokio::select! {
        _ = &mut events => {}
        // Ended in the store: its last events (`job_finished`) are on their way.
        () = progress_loop => {
            let _ = tokio::time::timeout(END_GRACE, &mut events).await;
        }
    }
    if tx.is_closed() || feed.closing().is_cancelled() {
        return;
    }
    if let Ok(last) = progress(app, job_id).await {
        let _ = tx.send(progress_event(&last)).await;
        if last.status.is_final() {
            let _ = tx.send(Event::default().event("end").data(last.status.to_string())).await;
        }
    }
}

/// The job's progress as the store has it.
pub async fn progress(app: &AppState, job_id: JobId) -> Result<JobProgress, ApiError> {
    let job = existing_job(app, job_id).await?;
    let counts = app.pipeline.deps.store.video_counts(job_id).await?;
    Ok(JobProgress {
        job_id: job.job_id.to_string(),
        channel_id: job.channel_id.to_string(),
        status: job.status,
        error: job.error,
        updated_at: job.updated_at,
        counts: counts_by_status(&counts.by_status),
    })
}
