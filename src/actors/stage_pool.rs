//! StagePool: one per stage. Consumes the stage's queue with at most `stages.<stage>.workers`
//! commands running at once (the rest wait in the queue: backpressure, not memory), runs each on its
//! own task so a panic is contained, bounds it by the stage timeout, publishes the resulting events
//! (or a `stage_failed` event) and only then acknowledges the delivery. If the consumer breaks the
//! pool fails and the RootSupervisor restarts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Deps, fail};
use crate::adapters::{Delivery, DomainEvent, EventPayload};
use crate::domain::{AttemptOutcome, Stage};
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
    consumer: JoinHandle<()>,
    pub stats: Arc<PoolStats>,
}

/// Counters for the ops console and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub running: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug)]
pub enum StagePoolMsg {
    /// The queue consumer ended; the pool fails so that it is restarted.
    ConsumerStopped(String),
    /// (workers, running, succeeded, failed)
    Stats(ractor::RpcReplyPort<(usize, u64, u64, u64)>),
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
        let workers = self.deps.settings.stages.workers(stage);
        let mut deliveries = self.deps.commands.consume(stage, workers).await?;
        let work = self.deps.stages.get(stage);
        let deps = self.deps.clone();
        let stats = Arc::new(PoolStats::default());
        let task_stats = stats.clone();
        let node: Arc<str> = args.node.into();
        let consumer = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(workers));
            let reason = loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break "worker semaphore closed".to_owned();
                };
                match deliveries.next().await {
                    Some(Ok(delivery)) => {
                        let (deps, work, stats, node) = (deps.clone(), work.clone(), task_stats.clone(), node.clone());
                        tokio::spawn(async move {
                            stats.running.fetch_add(1, Ordering::Relaxed);
                            handle_delivery(&deps, &node, work, delivery, &stats).await;
                            stats.running.fetch_sub(1, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => break format!("consumer error: {e}"),
                    None => break "queue closed".to_owned(),
                }
            };
            let _ = myself.cast(StagePoolMsg::ConsumerStopped(reason));
        });
        tracing::debug!(%stage, workers, "stage pool started");
        Ok(StagePoolState { stage, consumer, stats })
    }

    async fn handle(
        &self,
        _myself: ActorRef<StagePoolMsg>,
        msg: StagePoolMsg,
        state: &mut StagePoolState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StagePoolMsg::ConsumerStopped(reason) => Err(fail(format!("{} pool: {reason}", state.stage))),
            StagePoolMsg::Stats(reply) => {
                let s = &state.stats;
                let _ = reply.send((
                    self.deps.settings.stages.workers(state.stage),
                    s.running.load(Ordering::Relaxed),
                    s.succeeded.load(Ordering::Relaxed),
                    s.failed.load(Ordering::Relaxed),
                ));
                Ok(())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<StagePoolMsg>,
        state: &mut StagePoolState,
    ) -> Result<(), ActorProcessingErr> {
        state.consumer.abort();
        Ok(())
    }
}

/// Stages allowed to run longer than this are acknowledged when taken, not when done: brokers
/// close a channel that holds a delivery too long (RabbitMQ: 30 minutes by default). Their safety
/// net is the VideoActor's own deadline for the stage, which re-dispatches a command whose result
/// never came; stages are idempotent, so that never redoes committed work.
pub const EARLY_ACK_AFTER: Duration = Duration::from_secs(20 * 60);

/// Runs one command and reports it: events first, ack after (at-least-once) — or ack first for
/// stages that may outlast the broker's acknowledgement timeout (see [`EARLY_ACK_AFTER`]).
async fn handle_delivery(deps: &Deps, node: &str, work: Arc<dyn StageWork>, delivery: Delivery, stats: &PoolStats) {
    let command = delivery.command;
    let stage = command.stage;
    let timeout = deps.settings.stages.timeout(stage);
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
    // Its own task: a panic in the stage is caught here instead of taking the pool down.
    let outcome = tokio::time::timeout(timeout, tokio::spawn(async move { work.run(&task_command).await })).await;
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
            stats.succeeded.fetch_add(1, Ordering::Relaxed);
            (AttemptOutcome::Succeeded, None, events)
        }
        Err((attempt, error)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
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

async fn publish_patiently(deps: &Deps, event: DomainEvent) -> Result<(), crate::adapters::AdapterError> {
    let backoff = deps.settings.stages.backoff();
    let give_up_at = tokio::time::Instant::now() + RESULT_PATIENCE;
    let mut failures = 0;
    loop {
        match deps.events.publish(event.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ crate::adapters::AdapterError::Unavailable(_)) if tokio::time::Instant::now() < give_up_at => {
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

fn failed_event(command: &crate::adapters::StageCommand, error: &StageError) -> DomainEvent {
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
