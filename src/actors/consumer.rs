//! EventConsumer: one per decoupled event consumer (analytics, event log). Subscribes to the event
//! bus in its own consumer group and feeds every event to its sink; if the subscription breaks
//! the consumer fails and the RootSupervisor restarts it (the sink keeps its state and drops the
//! events it sees again).

use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::{Deps, fail};
use crate::analytics::EventSink;

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
    task: JoinHandle<()>,
}

#[derive(Debug)]
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
        let mut events = self.deps.events.subscribe_group(&args.group).await?;
        let sink = args.sink;
        let task = tokio::spawn(async move {
            let reason = loop {
                match events.next().await {
                    Some(Ok(event)) => sink.accept(&event),
                    Some(Err(e)) => break format!("{}: event stream error: {e}", sink.name()),
                    None => break format!("{}: event stream closed", sink.name()),
                }
            };
            let _ = myself.cast(EventConsumerMsg::SubscriptionEnded(reason));
        });
        Ok(EventConsumerState { task })
    }

    async fn handle(
        &self,
        _myself: ActorRef<EventConsumerMsg>,
        msg: EventConsumerMsg,
        _state: &mut EventConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventConsumerMsg::SubscriptionEnded(reason) => Err(fail(reason)),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<EventConsumerMsg>,
        state: &mut EventConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        state.task.abort();
        Ok(())
    }
}
