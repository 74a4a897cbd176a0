//! StagePool: one per stage. Consumes the stage's queue with at most `stages.<stage>.workers`
//! commands running at once (the rest wait in the queue: backpressure, not memory), runs each on its
//! own task so a panic is contained, bounds it by the stage timeout, publishes the resulting events
//! (or a `stage_failed` event) and only then acknowledges the delivery. If the consumer breaks the
//! pool fails and the RootSupervisor restarts it.
//!
//! The pool owns its running work: the workers are a `JoinSet` held by the pump's drain, and each
//! stage runs under an abort-on-drop handle, so stopping the pool (or a timeout) stops the work
//! with it; subprocesses are killed when their handle drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::pump::{self, Drain, Pump};
use super::{Deps, fail};
use crate::domain::{AttemptOutcome, DomainEvent, EventPayload, Stage, StageCommand};
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
            permits: Arc::new(Semaphore::new(workers)),
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

/// The pool's workers: each delivery waits for a free worker, then runs on a task of the set.
/// Dropping the set (the pool's pump is aborted) aborts every running command.
struct Workers {
    deps: Deps,
    node: Arc<str>,
    work: Arc<dyn StageWork>,
    counters: Arc<Counters>,
    permits: Arc<Semaphore>,
    running: JoinSet<()>,
}

#[async_trait]
impl Drain<Delivery> for Workers {
    async fn take(&mut self, delivery: Delivery) {
        while let Some(done) = self.running.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "stage worker crashed");
            }
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return; // never closed
        };
        let (deps, work, counters, node) =
            (self.deps.clone(), self.work.clone(), self.counters.clone(), self.node.clone());
        self.running.spawn(async move {
            counters.running.fetch_add(1, Ordering::Relaxed);
            handle_delivery(&deps, &node, work, delivery, &counters).await;
            counters.running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Stages allowed to run longer than this are acknowledged when taken, not when done: brokers
/// close a channel that holds a delivery too long (RabbitMQ: 30 minutes by default). Their safety
/// net is the VideoActor's own deadline for the stage, which re-dispatches a command whose result
/// never came; stages are idempotent, so that never redoes committed work.
pub const EARLY_ACK_AFTER: Duration = Duration::from_secs(20 * 60);

/// Runs one command and reports it: events first, ack after (at-least-once) — or ack first for
/// stages that may outlast the broker's acknowledgement timeout (see [`EARLY_ACK_AFTER`]).
async fn handle_delivery(deps: &Deps, node: &str, work: Arc<dyn StageWork>, delivery: Delivery, counters: &Counters) {
    let command = delivery.command;
    let stage = command.stage;
    let timeout = deps.settings.timeout(stage);
    let early_ack = timeout > EARLY_ACK_AFTER;
    if early_ack && let Err(e) = delivery.acker.ack().await {
        tracing::warn!(%stage, error = %e, "early ack failed (the command may be redelivered; stages are idempotent)");
    }
    // Bookkeeping only: the work goes on without it.
    if let Err(e) = deps.store.attempt_started(&command, node).await {
        tracing::warn!(%stage, error = %e, "could not record the stage attempt");
    }
    let task_command = command.clone();
    let started = std::time::Instant::now();
    // Its own task: a panic in the stage is caught here instead of taking the pool down; the
    // handle aborts the work when the deadline drops it.
    let task = AbortOnDropHandle::new(tokio::spawn(async move { work.run(&task_command).await }));
    let outcome = tokio::time::timeout(timeout, task).await;
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
    if let Err(e) = deps.store.attempt_finished(command.command_id, attempt, error.as_deref()).await {
        tracing::warn!(%stage, error = %e, "could not record how the stage attempt ended");
    }
    let events = events.into_iter().map(|mut event| {
        event.duration_ms = Some(duration_ms);
        event.stable()
    });
    for event in events {
        if let Err(e) = publish_patiently(deps, event).await {
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
