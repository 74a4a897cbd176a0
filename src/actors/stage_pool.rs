//! StagePool: one per stage. Consumes the stage's queue with at most `stages.<stage>.workers`
//! commands running at once (the rest wait in the queue: backpressure, not memory), runs each on its
//! own task so a panic is contained, bounds it by the stage timeout, publishes the resulting events
//! (or a `stage_failed` event) and only then acknowledges the delivery. A worker is free for the
//! next command once the work is done: recording how the attempt ended, publishing and the ack go
//! on beside it (at most as many commands again, [`FINISHING_PER_WORKER`]). If the consumer breaks
//! the pool fails and the RootSupervisor restarts it.
//!
//! The pool owns its running work: the workers are a `JoinSet` held by the pump's drain, and each
//! stage runs under an abort-on-drop handle, so stopping the pool (or a timeout) stops the work
//! with it; subprocesses are killed when their handle drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::pump::{self, Drain, Pump};
use super::steps::Step;
use super::{Deps, fail};
use crate::domain::{AttemptOutcome, DomainEvent, EventPayload, JobId, Stage, StageCommand, workflow};
use crate::ports::{Delivery, PortError};
use crate::stages::{StageError, StageWork};

pub struct StagePool {
    pub deps: Deps,
}

#[derive(Debug, Clone)]
pub struct StagePoolArgs {
    pub stage: Stage,
    /// This process's name in the stage attempts it records.
    pub node: String,
}

pub struct StagePoolState {
    stage: Stage,
    counters: Arc<Counters>,
    _pump: Pump,
}

/// The stage executions running in this process, by job: cancelling a job stops its running
/// stages at once (each execution watches its job's token).
#[derive(Debug, Default)]
pub struct RunningStages {
    jobs: Mutex<HashMap<JobId, (CancellationToken, usize)>>,
}

impl RunningStages {
    /// Registers one execution for `job`; it is unregistered when the guard drops.
    pub fn enter(self: &Arc<Self>, job: JobId) -> Running {
        let mut jobs = self.jobs.lock().expect("running stages lock");
        let (token, count) = jobs.entry(job).or_insert_with(|| (CancellationToken::new(), 0));
        *count += 1;
        Running { registry: self.clone(), job, token: token.clone() }
    }

    /// Stops every execution of `job` running here; returns how many there were.
    pub fn cancel(&self, job: JobId) -> usize {
        let jobs = self.jobs.lock().expect("running stages lock");
        jobs.get(&job).map_or(0, |(token, count)| {
            token.cancel();
            *count
        })
    }
}

/// One registered execution; see [`RunningStages::enter`].
pub struct Running {
    registry: Arc<RunningStages>,
    job: JobId,
    token: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut jobs = self.registry.jobs.lock().expect("running stages lock");
        if let Some((_, count)) = jobs.get_mut(&self.job) {
            *count -= 1;
            if *count == 0 {
                jobs.remove(&self.job);
            }
        }
    }
}

/// One pool's counters, as the ops console and the metrics show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub stage: Stage,
    pub workers: usize,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    running: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum StagePoolMsg {
    /// The queue consumer ended; the pool fails so that it is restarted.
    ConsumerStopped(String),
    Stats(RpcReplyPort<PoolStats>),
}

impl Actor for StagePool {
    type Msg = StagePoolMsg;
    type State = StagePoolState;
    type Arguments = StagePoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StagePoolMsg>,
        args: StagePoolArgs,
    ) -> Result<StagePoolState, ActorProcessingErr> {
        let stage = args.stage;
        let workers = self.deps.settings.workers(stage);
        let deliveries = self.deps.commands.consume(stage, workers).await?;
        let counters = Arc::new(Counters::default());
        let drain = Workers {
            deps: self.deps.clone(),
            node: args.node.into(),
            work: self.deps.stages.get(stage),
            counters: counters.clone(),
            slots: Arc::new(Semaphore::new(workers)),
            held: Arc::new(Semaphore::new(workers.saturating_mul(FINISHING_PER_WORKER))),
            running: JoinSet::new(),
        };
        tracing::debug!(%stage, workers, "stage pool started");
        Ok(StagePoolState {
            stage,
            counters,
            _pump: pump::spawn(myself, deliveries, drain, StagePoolMsg::ConsumerStopped),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<StagePoolMsg>,
        msg: StagePoolMsg,
        state: &mut StagePoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StagePoolMsg::ConsumerStopped(reason) => Err(fail(format!("{} pool: queue {reason}", state.stage))),
            StagePoolMsg::Stats(reply) => {
                let c = &state.counters;
                let _ = reply.send(PoolStats {
                    stage: state.stage,
                    workers: self.deps.settings.workers(state.stage),
                    running: c.running.load(Ordering::Relaxed),
                    succeeded: c.succeeded.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                });
                Ok(())
            }
        }
    }
}

/// Commands a pool holds at once, per worker: one running, and one whose worker has moved on while
/// its attempt's end is recorded, its result published and its delivery acknowledged.
pub const FINISHING_PER_WORKER: usize = 2;

/// The pool's workers: each delivery waits until the pool holds fewer than
/// [`FINISHING_PER_WORKER`] × workers commands, then runs on a task of the set, where it waits for
/// a free worker (see [`Slot`]). Dropping the set (the pool's pump is aborted) aborts every command.
struct Workers {
    deps: Deps,
    node: Arc<str>,
    work: Arc<dyn StageWork>,
    counters: Arc<Counters>,
    /// One per worker.
    slots: Arc<Semaphore>,
    /// One per command held.
    held: Arc<Semaphore>,
    running: JoinSet<()>,
}

#[async_trait]
impl Drain<Delivery> for Workers {
    async fn take(&mut self, delivery: Delivery) -> Result<(), String> {
        while let Some(done) = self.running.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "stage worker crashed");
            }
        }
        let held = self.held.clone().acquire_owned().await.map_err(|e| e.to_string())?; // never closed
        let (deps, work, counters, node, slots) =
            (self.deps.clone(), self.work.clone(), self.counters.clone(), self.node.clone(), self.slots.clone());
        self.running.spawn(async move {
            let Ok(permit) = slots.acquire_owned().await else { return }; // never closed
            let slot = Slot::taken(permit, counters.clone());
            handle_delivery(&deps, &node, work, delivery, &counters, slot).await;
            drop(held);
        });
        Ok(())
    }
}

/// A worker, from taking a command until its work has ended: the command counts as running.
struct Slot {
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Slot {
    fn taken(permit: OwnedSemaphorePermit, counters: Arc<Counters>) -> Self {
        counters.running.fetch_add(1, Ordering::Relaxed);
        Self { _permit: permit, counters }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stages allowed to run longer than this are acknowledged when taken, not when done: brokers
/// close a channel that holds a delivery too long (RabbitMQ: 30 minutes by default). Their safety
/// net is the VideoActor's own deadline for the stage, which re-dispatches a command whose result
/// never came; stages are idempotent, so that never redoes committed work.
pub const EARLY_ACK_AFTER: Duration = Duration::from_secs(20 * 60);

/// Runs one command and reports it: events first, ack after (at-least-once) — or ack first for
/// stages that may outlast the broker's acknowledgement timeout (see [`EARLY_ACK_AFTER`]).
async fn handle_delivery(
    deps: &Deps,
    node: &str,
    work: Arc<dyn StageWork>,
    delivery: Delivery,
    counters: &Counters,
    slot: Slot,
) {
    let command = delivery.command;
    let stage = command.stage;
    // Registered before the check: a cancel recorded after it reaches this execution.
    let running = deps.running.enter(command.job_id);
    // The check that the command is still wanted and the attempt's record, in one step.
    match deps.steps.time(Step::Take, deps.store.take_command(&command, node)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(%stage, video_id = ?command.video_id, attempt = command.attempt, "dropping a superseded command");
            if let Err(e) = delivery.acker.ack().await {
                tracing::warn!(%stage, error = %e, "ack of a superseded command failed");
            }
            return;
        }
        // Cannot tell (the store is away): run it; stages are idempotent, and the attempt's
        // record is bookkeeping only.
        Err(e) => tracing::warn!(%stage, error = %e, "could not check whether the command is current"),
    }
    let timeout = deps.settings.timeout(stage);
    let early_ack = timeout > EARLY_ACK_AFTER;
    if early_ack && let Err(e) = delivery.acker.ack().await {
        tracing::warn!(%stage, error = %e, "early ack failed (the command may be redelivered; stages are idempotent)");
    }
    let task_command = command.clone();
    let started = std::time::Instant::now();
    // Its own task: a panic in the stage is caught here instead of taking the pool down; the
    // handle aborts the work when the deadline drops it.
    let mut task = AbortOnDropHandle::new(tokio::spawn(async move { work.run(&task_command).await }));
    // The timeout counts from here, when a worker starts the stage: time in the queue spends none.
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, &mut task) => Ok(outcome),
        () = running.token.cancelled() => Err("its job was cancelled"),
        // (The job cancelled in another process, or a later attempt sent.)
        () = heartbeats(deps, &command) => Err("it is no longer wanted"),
    };
    if !matches!(outcome, Ok(Ok(_))) {
        // Past its limit, or no longer wanted: cancel it and wait until it is gone (its
        // subprocess killed, whisper told to stop) before this worker's slot goes to the next.
        task.abort();
        let _ = (&mut task).await;
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(why) => return stopped(deps, &command, &*delivery.acker, early_ack, why).await,
    };
    deps.steps.record(Step::Work, started.elapsed());
    // The worker is free for the next command; this one's end is recorded beside it.
    drop(slot);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let result = match outcome {
        Ok(Ok(Ok(events))) => Ok(events),
        Ok(Ok(Err(error))) => Err((AttemptOutcome::Failed, error)),
        Ok(Err(join_error)) => {
            let reason = panic_message(join_error);
            tracing::error!(%stage, video_id = ?command.video_id, %reason, "stage panicked");
            Err((AttemptOutcome::Crashed, StageError::Retryable(format!("{stage} crashed: {reason}"))))
        }
        Err(_) => {
            let error = StageError::Retryable(format!("{stage} did not finish within {} s", timeout.as_secs()));
            Err((AttemptOutcome::TimedOut, error))
        }
    };
    let (attempt, error, events) = match result {
        Ok(events) => {
            counters.succeeded.fetch_add(1, Ordering::Relaxed);
            (AttemptOutcome::Succeeded, None, events)
        }
        Err((attempt, error)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            (attempt, Some(error.to_string()), vec![failed_event(&command, &error)])
        }
    };
    let finish = deps.store.attempt_finished(command.command_id, attempt, error.as_deref());
    if let Err(e) = deps.steps.time(Step::Finish, finish).await {
        tracing::warn!(%stage, error = %e, "could not record how the stage attempt ended");
    }
    let events = events.into_iter().map(|mut event| {
        event.duration_ms = Some(duration_ms);
        event.from_attempt = Some(command.attempt);
        event.stable()
    });
    for event in events {
        if let Err(e) = deps.steps.time(Step::Publish, publish_patiently(deps, event)).await {
            if early_ack {
                tracing::warn!(%stage, error = %e, "could not publish the result; the video's stage deadline will retry it");
            } else {
                tracing::warn!(%stage, error = %e, "could not publish the result; redelivering the command");
                let _ = delivery.acker.nack(true, &e.to_string()).await;
            }
            return;
        }
    }
    if early_ack {
        return;
    }
    if let Err(e) = delivery.acker.ack().await {
        tracing::warn!(%stage, error = %e, "ack failed (the command may be redelivered; stages are idempotent)");
    }
}

/// Reports a stage stopped while it ran because it was no longer wanted: no result, the attempt
/// recorded `stopped`, the delivery taken off the queue. A stopped video's media goes if its job
/// has ended (a superseded attempt's media is the next attempt's to use).
async fn stopped(deps: &Deps, command: &StageCommand, acker: &dyn crate::ports::Acker, early_ack: bool, why: &str) {
    let stage = command.stage;
    tracing::info!(%stage, job_id = %command.job_id, video_id = ?command.video_id, "stopped the stage: {why}");
    let error = format!("stopped: {why}");
    if let Err(e) = deps.store.attempt_finished(command.command_id, AttemptOutcome::Stopped, Some(&error)).await {
        tracing::warn!(%stage, error = %e, "could not record how the stage attempt ended");
    }
    let ended = matches!(deps.store.get_job(command.job_id).await, Ok(Some(job)) if job.status.is_final());
    if ended && let Some(video_id) = &command.video_id {
        deps.stages.media.release(command.job_id, video_id, crate::domain::VideoStatus::Cancelled);
    }
    if !early_ack && let Err(e) = acker.ack().await {
        tracing::warn!(%stage, error = %e, "ack of a stopped command failed");
    }
}

/// Whether a command is still wanted: its job has not ended (a cancelled job's commands are
/// dropped), its video is still in the command's stage and no later attempt was sent (for
/// discovery: the job is discovering). A command that waited while its video failed, was
/// cancelled or moved on is dropped unrun.
async fn is_current(deps: &Deps, command: &StageCommand) -> Result<bool, PortError> {
    let Some(job) = deps.store.get_job(command.job_id).await? else {
        return Ok(false);
    };
    Ok(match &command.video_id {
        Some(_) if job.status.is_final() => false,
        Some(video_id) => match deps.store.get_video(command.job_id, video_id).await? {
            Some(video) => {
                workflow::in_flight(video.status) == Some(command.stage) && video.attempts <= command.attempt
            }
            None => false,
        },
        None => job.status == crate::domain::JobStatus::Discovering,
    })
}

/// Records a sign of life for the running attempt every `stages.heartbeat_ms` (the VideoActor
/// waiting for the result tells a lost worker from a slow one by it), and returns when the
/// attempt is no longer wanted (its job was cancelled in another process, or a later attempt was
/// sent): the caller then stops the stage. Runs until then, or until the caller drops it.
async fn heartbeats(deps: &Deps, command: &StageCommand) {
    let mut every = tokio::time::interval(deps.settings.heartbeat());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is at once; take_command has just recorded one
    loop {
        every.tick().await;
        let command_id = command.command_id;
        if let Err(e) = deps.store.attempt_heartbeat(command_id).await {
            tracing::warn!(%command_id, error = %e, "could not record the attempt's heartbeat");
        }
        if let Ok(false) = is_current(deps, command).await {
            return;
        }
    }
}

/// How long a worker keeps trying to publish a result whose work is done (the event store or
/// broker briefly down) before it gives the command back; giving it back costs one of the
/// command's deliveries, and redoing committed work only reports it again.
const RESULT_PATIENCE: Duration = Duration::from_secs(120);

async fn publish_patiently(deps: &Deps, event: DomainEvent) -> Result<(), PortError> {
    let backoff = deps.settings.backoff();
    let give_up_at = tokio::time::Instant::now() + RESULT_PATIENCE;
    let mut failures = 0;
    loop {
        match deps.events.publish(event.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ PortError::Unavailable(_)) if tokio::time::Instant::now() < give_up_at => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(kind = event.payload.kind(), error = %e, "could not publish a result; retrying");
                }
                tokio::time::sleep(backoff.delay(failures)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn failed_event(command: &StageCommand, error: &StageError) -> DomainEvent {
    DomainEvent::new(
        command.job_id,
        command.video_id.clone(),
        EventPayload::StageFailed {
            stage: command.stage,
            attempt: command.attempt,
            retryable: error.is_retryable(),
            reason: error.to_string(),
            redo: error.redo(),
        },
    )
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use futures::{FutureExt, StreamExt};

    use super::*;
    use crate::actors::testing::{DropFlag, FnWork, TestPorts, eventually, eventually_async, settings};
    use crate::domain::{VideoId, VideoStatus, VideoUpdate};

    async fn spawn_pool(ports: &TestPorts, stage: Stage) -> ActorRef<StagePoolMsg> {
        let args = StagePoolArgs { stage, node: "test-node".into() };
        Actor::spawn(None, StagePool { deps: ports.deps.clone() }, args).await.expect("pool starts").0
    }

    /// Stage work that never finishes; `started` counts the runs, `dropped` tells it was cancelled.
    fn hanging(started: Arc<AtomicUsize>, dropped: Arc<AtomicBool>) -> Arc<dyn StageWork> {
        Arc::new(FnWork(move |_| {
            let (started, flag) = (started.clone(), DropFlag(dropped.clone()));
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let _held = flag;
                std::future::pending::<()>().await;
                Ok(Vec::new())
            }
        }))
    }

    #[tokio::test]
    async fn stopping_a_pool_stops_the_work_it_runs() {
        let (started, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let ports = TestPorts::new(settings(2, 3600), hanging(started.clone(), dropped.clone())).await;
        let pool = spawn_pool(&ports, Stage::Transcription).await;
        ports.deps.commands.send(ports.current_command(Stage::Transcription, "aaaaaaaaaaa").await).await.unwrap();
        eventually("the stage runs", || started.load(Ordering::SeqCst) == 1).await;
        let stats = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap();
        assert_eq!((stats.stage, stats.workers, stats.running), (Stage::Transcription, 2, 1));

        pool.stop_and_wait(None, None).await.unwrap();
        eventually("the running stage is cancelled", || dropped.load(Ordering::SeqCst)).await;
    }

    #[tokio::test]
    async fn cancelling_a_job_stops_its_running_stage_with_no_result() {
        let (started, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let ports = TestPorts::new(settings(1, 3600), hanging(started.clone(), dropped.clone())).await;
        let mut events = ports.deps.events.subscribe().await.unwrap();
        let pool = spawn_pool(&ports, Stage::Download).await;
        let command = ports.current_command(Stage::Download, "cancelledvv").await;
        ports.deps.commands.send(command.clone()).await.unwrap();
        eventually("the stage runs", || started.load(Ordering::SeqCst) == 1).await;

        assert_eq!(ports.deps.running.cancel(command.job_id), 1, "one execution of the job runs here");
        eventually("the running stage is stopped", || dropped.load(Ordering::SeqCst)).await;
        let stopped = || async {
            let attempts = ports.deps.store.list_attempts(command.job_id).await.unwrap();
            attempts.first().and_then(|a| a.outcome) == Some(AttemptOutcome::Stopped)
        };
        eventually_async("the attempt is recorded stopped", stopped).await;
        let stats = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap();
        assert_eq!((stats.running, stats.succeeded, stats.failed), (0, 0, 0), "no result either way");
        assert!(events.next().now_or_never().is_none(), "nothing published for a stopped stage");
        assert_eq!(ports.deps.running.cancel(command.job_id), 0, "nothing of the job runs any more");
        pool.stop(None);
    }

    #[tokio::test]
    async fn a_stage_past_its_deadline_is_cancelled_and_reported_timed_out() {
        let (started, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let ports = TestPorts::new(settings(1, 1), hanging(started, dropped.clone())).await;
        let mut events = ports.deps.events.subscribe().await.unwrap();
        let pool = spawn_pool(&ports, Stage::AudioExtraction).await;
        let sent = ports.current_command(Stage::AudioExtraction, "bbbbbbbbbbb").await;
        let job = sent.job_id;
        ports.deps.commands.send(sent.clone()).await.unwrap();

        let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
        match event.payload {
            EventPayload::StageFailed { stage, attempt, retryable, reason, .. } => {
                assert_eq!((stage, attempt, retryable), (Stage::AudioExtraction, 1, true));
                assert_eq!(reason, "audio_extraction did not finish within 1 s");
            }
            other => panic!("expected a stage failure, got {other:?}"),
        }
        assert!(dropped.load(Ordering::SeqCst), "the work was cancelled, not left running");
        let attempts = ports.deps.store.list_attempts(job).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(), [Some(AttemptOutcome::TimedOut)]);
        assert_eq!(ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap().failed, 1);
        pool.stop(None);
    }

    /// The in-process bus, its acks held until `gate` lets each through.
    struct GatedAcks {
        inner: crate::adapters::embedded::InProcessCommandBus,
        gate: Arc<Semaphore>,
    }

    struct GatedAcker {
        inner: Box<dyn crate::ports::Acker>,
        gate: Arc<Semaphore>,
    }

    #[async_trait]
    impl crate::ports::Acker for GatedAcker {
        async fn ack(&self) -> crate::ports::PortResult<()> {
            self.gate.acquire().await.expect("gate open").forget();
            self.inner.ack().await
        }

        async fn nack(&self, requeue: bool, reason: &str) -> crate::ports::PortResult<()> {
            self.inner.nack(requeue, reason).await
        }
    }

    #[async_trait]
    impl crate::ports::CommandBus for GatedAcks {
        async fn send(&self, command: StageCommand) -> crate::ports::PortResult<()> {
            self.inner.send(command).await
        }

        async fn consume(
            &self,
            stage: Stage,
            prefetch: usize,
        ) -> crate::ports::PortResult<crate::ports::DeliveryStream> {
            let gate = self.gate.clone();
            let stream = self.inner.consume(stage, prefetch).await?.map(move |delivery| {
                delivery.map(|d| Delivery {
                    command: d.command,
                    acker: Box::new(GatedAcker { inner: d.acker, gate: gate.clone() }),
                })
            });
            Ok(stream.boxed())
        }
    }

    #[tokio::test]
    async fn a_worker_runs_the_next_command_while_the_last_one_is_acknowledged() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let work = Arc::new(FnWork(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok(Vec::new()) }
        }));
        // (A timeout under EARLY_ACK_AFTER: acknowledged when done, not when taken.)
        let mut ports = TestPorts::new(settings(1, 60), work).await;
        let gate = Arc::new(Semaphore::new(0));
        ports.deps.commands = Arc::new(GatedAcks { inner: Default::default(), gate: gate.clone() });
        let pool = spawn_pool(&ports, Stage::Download).await;
        for video in ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"] {
            ports.deps.commands.send(ports.current_command(Stage::Download, video).await).await.unwrap();
        }
        // One worker, and no ack has returned: the first command's ack holds no worker, so the
        // second runs; the pool holds two commands per worker, so the third waits for an ack.
        eventually("two commands ran before any ack", || ran.load(Ordering::SeqCst) == 2).await;
        let stats = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap();
        assert_eq!((stats.running, stats.succeeded), (0, 2), "both done, neither holding the worker");
        gate.add_permits(3);
        eventually("the third ran once an ack returned", || ran.load(Ordering::SeqCst) == 3).await;
        pool.stop(None);
    }

    #[tokio::test]
    async fn a_pool_runs_at_most_its_workers_at_once_and_contains_panics() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (r, m, g) = (running.clone(), most.clone(), gate.clone());
        let work = Arc::new(FnWork(move |command: StageCommand| {
            let (running, most, gate) = (r.clone(), m.clone(), g.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _permit = gate.acquire().await.unwrap();
                running.fetch_sub(1, Ordering::SeqCst);
                assert_ne!(command.video_id.as_ref().map(VideoId::as_str), Some("panicpanicp"), "injected panic");
                Ok(Vec::new())
            }
        }));
        let ports = TestPorts::new(settings(2, 3600), work).await;
        let pool = spawn_pool(&ports, Stage::Download).await;
        for video in ["aaaaaaaaaaa", "bbbbbbbbbbb", "panicpanicp", "ddddddddddd", "eeeeeeeeeee"] {
            ports.deps.commands.send(ports.current_command(Stage::Download, video).await).await.unwrap();
        }
        eventually("two run", || running.load(Ordering::SeqCst) == 2).await;
        gate.add_permits(5);
        let done = || async {
            let stats = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap();
            stats.succeeded + stats.failed == 5 && stats.running == 0
        };
        eventually_async("all five end", done).await;
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the pool's workers");
        let stats = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000).unwrap();
        assert_eq!((stats.succeeded, stats.failed, stats.running), (4, 1, 0), "the panic was one failed command");
        pool.stop(None);
    }

    #[tokio::test]
    async fn a_command_superseded_while_it_waited_is_dropped_unrun() {
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = ran.clone();
        let work = Arc::new(FnWork(move |command: StageCommand| {
            seen.lock().unwrap().push(command.video_id.clone().unwrap());
            async { Ok(Vec::new()) }
        }));
        let ports = TestPorts::new(settings(1, 60), work).await;
        let store = &ports.deps.store;
        // A later attempt was sent meanwhile.
        let superseded = ports.current_command(Stage::Download, "supersededd").await;
        let later = VideoUpdate { status: VideoStatus::Downloading, attempts: 2, error: None };
        store.update_video(superseded.job_id, superseded.video_id.as_ref().unwrap(), &later).await.unwrap();
        // The video failed (or its job was cancelled) meanwhile.
        let abandoned = ports.current_command(Stage::Download, "abandonedvv").await;
        let failed = VideoUpdate { status: VideoStatus::Failed, attempts: 1, error: Some("gone".into()) };
        store.update_video(abandoned.job_id, abandoned.video_id.as_ref().unwrap(), &failed).await.unwrap();
        let current = ports.current_command(Stage::Download, "currentvvvv").await;
        for command in [superseded, abandoned, current.clone()] {
            ports.deps.commands.send(command).await.unwrap();
        }
        let pool = spawn_pool(&ports, Stage::Download).await;
        eventually("the current command runs", || !ran.lock().unwrap().is_empty()).await;
        // One worker takes them in order: the two before it were taken, and dropped.
        assert_eq!(*ran.lock().unwrap(), [current.video_id.unwrap()]);
        pool.stop(None);
    }

    #[tokio::test]
    async fn a_running_stage_gives_signs_of_life() {
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let work = Arc::new(FnWork(move |_| {
            let gate = held.clone();
            async move {
                let _permit = gate.acquire().await.unwrap();
                Ok(Vec::new())
            }
        }));
        let ports = TestPorts::new(settings(1, 60), work).await;
        let command = ports.current_command(Stage::Summarization, "heartbeatvv").await;
        ports.deps.commands.send(command.clone()).await.unwrap();
        let pool = spawn_pool(&ports, Stage::Summarization).await;
        let beat_after_start = || async {
            let attempts = ports.deps.store.list_attempts(command.job_id).await.unwrap();
            attempts.first().and_then(|a| a.heartbeat_at.map(|h| h - a.started_at)).unwrap_or_default()
        };
        eventually_async("a heartbeat after the start", || async {
            beat_after_start().await >= chrono::Duration::milliseconds(100)
        })
        .await;
        let (job, video) = (command.job_id, command.video_id.as_ref());
        let progress =
            ports.deps.store.attempt_progress(job, video, Stage::Summarization, 1, Duration::from_millis(150));
        assert_eq!(progress.await.unwrap(), crate::domain::AttemptProgress::Running);
        gate.add_permits(1);
        pool.stop(None);
    }

    /// Counts itself out of `running` when dropped (its stage's future went away).
    struct Running(Arc<AtomicUsize>);

    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether a process is gone: no longer in /proc, or dead and waiting to be reaped.
    fn gone(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_or(true, |status| status.lines().any(|l| l.starts_with("State:") && l.contains("Z")))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stage_past_its_limit_is_gone_with_its_subprocess_before_the_next_starts() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, m, d) = (running.clone(), most.clone(), dir.clone());
        let work = Arc::new(FnWork(move |command: StageCommand| {
            let (running, most, dir) = (r.clone(), m.clone(), d.clone());
            async move {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let _counted = Running(running);
                let pidfile = dir.path().join(command.video_id.unwrap().as_str());
                let script = format!("echo $$ > {}; exec sleep 300", pidfile.display());
                crate::stages::process::run(std::path::Path::new("sh"), ["-c", &script], Duration::from_secs(600))
                    .await
                    .map_err(|e| StageError::Retryable(e.to_string()))?;
                Ok(Vec::new())
            }
        }));
        let ports = TestPorts::new(settings(1, 1), work).await;
        let mut events = ports.deps.events.subscribe().await.unwrap();
        let videos = ["outlives001", "outlives002", "outlives003"];
        for video in videos {
            ports.deps.commands.send(ports.current_command(Stage::Download, video).await).await.unwrap();
        }
        let pool = spawn_pool(&ports, Stage::Download).await;
        for _ in videos {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
            assert!(matches!(event.payload, EventPayload::StageFailed { retryable: true, .. }), "{event:?}");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "a timed-out stage overlapped the next one");
        for video in videos {
            let pid = std::fs::read_to_string(dir.path().join(video)).unwrap().trim().to_owned();
            eventually(&format!("subprocess {pid} of {video} is gone"), || gone(&pid)).await;
        }
        pool.stop(None);
    }
}
