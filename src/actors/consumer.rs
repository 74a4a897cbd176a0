//! EventConsumer: one per decoupled event consumer (analytics, the event log, webhooks). Subscribes to the
//! event bus in its own consumer group and feeds every event to its [`EventSink`]; if the
//! subscription breaks the consumer fails and the RootSupervisor restarts it (the sink keeps its
//! state and drops the events it sees again).

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::pump::{self, Pump};
use super::{Deps, fail};
use crate::domain::DomainEvent;

/// Something fed every event a consumer group delivers (delivery is at-least-once: a sink sees
/// duplicates and drops them by `event_id`).
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// A short name for logs and the actor tree.
    fn name(&self) -> &'static str;
    /// Handles one delivery (possibly a duplicate). Only once it returns `Ok` is the event
    /// acknowledged to the bus; an error fails the consumer, which the RootSupervisor restarts, and
    /// the event is delivered again. It may wait on a durable write (the next event waits too).
    async fn accept(&self, event: &DomainEvent) -> Result<(), String>;
}

/// Feeds a sink, one event at a time.
struct SinkDrain(Arc<dyn EventSink>);

#[async_trait::async_trait]
impl super::pump::Drain<DomainEvent> for SinkDrain {
    async fn take(&mut self, event: DomainEvent) -> Result<(), String> {
        self.0.accept(&event).await
    }
}

pub struct EventConsumer {
    pub deps: Deps,
}

#[derive(Clone)]
pub struct EventConsumerArgs {
    /// The consumer group (each group sees every event; members of one group share them).
    pub group: String,
    pub sink: Arc<dyn EventSink>,
}

pub struct EventConsumerState {
    _pump: Pump,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum EventConsumerMsg {
    SubscriptionEnded(String),
}

impl Actor for EventConsumer {
    type Msg = EventConsumerMsg;
    type State = EventConsumerState;
    type Arguments = EventConsumerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EventConsumerMsg>,
        args: EventConsumerArgs,
    ) -> Result<EventConsumerState, ActorProcessingErr> {
        let events = self.deps.events.subscribe_group(&args.group).await?;
        let drain = SinkDrain(args.sink);
        Ok(EventConsumerState { _pump: pump::spawn(myself, events, drain, EventConsumerMsg::SubscriptionEnded) })
    }

    async fn handle(
        &self,
        myself: ActorRef<EventConsumerMsg>,
        msg: EventConsumerMsg,
        _state: &mut EventConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventConsumerMsg::SubscriptionEnded(reason) => {
                Err(fail(format!("{}: event {reason}", myself.get_name().unwrap_or_default())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::actors::testing::{FnWork, TestPorts, eventually, settings};
    use crate::domain::{EventPayload, JobId, JobStatus};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<DomainEvent>>);

    #[async_trait::async_trait]
    impl EventSink for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn accept(&self, event: &DomainEvent) -> Result<(), String> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }

    /// A sink whose disk is full.
    struct Refuser;

    #[async_trait::async_trait]
    impl EventSink for Refuser {
        fn name(&self) -> &'static str {
            "refuser"
        }
        async fn accept(&self, _: &DomainEvent) -> Result<(), String> {
            Err("no space left on device".into())
        }
    }

    #[tokio::test]
    async fn a_consumer_feeds_its_sink_every_event() {
        let ports = TestPorts::new(settings(1, 60), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await;
        let sink = Arc::new(Recorder::default());
        let args = EventConsumerArgs { group: "test-group".into(), sink: sink.clone() };
        let (consumer, _) = Actor::spawn(None, EventConsumer { deps: ports.deps.clone() }, args).await.unwrap();
        let finished = |job| DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Failed });
        let (a, b) = (finished(JobId::new()), finished(JobId::new()));
        ports.deps.events.publish(a.clone()).await.unwrap();
        ports.deps.events.publish(b.clone()).await.unwrap();
        eventually("both events reach the sink", || sink.0.lock().unwrap().len() == 2).await;
        assert_eq!(*sink.0.lock().unwrap(), [a, b]);
        consumer.stop(None);
    }

    #[tokio::test]
    async fn a_sink_that_cannot_take_an_event_fails_its_consumer() {
        let ports = TestPorts::new(settings(1, 60), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await;
        let args = EventConsumerArgs { group: "refusing-group".into(), sink: Arc::new(Refuser) };
        let (consumer, handle) = Actor::spawn(None, EventConsumer { deps: ports.deps.clone() }, args).await.unwrap();
        let event = DomainEvent::new(JobId::new(), None, EventPayload::JobFinished { status: JobStatus::Failed });
        ports.deps.events.publish(event).await.unwrap();
        // It fails (for its supervisor to restart it) instead of passing over the event.
        tokio::time::timeout(std::time::Duration::from_secs(5), handle).await.expect("the consumer failed").unwrap();
        assert_eq!(consumer.get_status(), ractor::ActorStatus::Stopped);
    }
}
