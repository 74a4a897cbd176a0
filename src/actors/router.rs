//! EventRouter: subscribes to the event bus and hands each stage result to the actor it concerns
//! (looked up by registry name). An event for an actor that is not running here — restarting, or
//! living in another process — is dropped: that actor re-dispatches from persisted state, and stages
//! are idempotent. If the subscription breaks, the router fails and is restarted, and the
//! RootSupervisor then has every running job ask again for the results it waits for
//! ([`super::job::JobMsg::Resync`]): events published while no subscription existed reached no one.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::job::JobMsg;
use super::pump::{self, Pump};
use super::video::VideoMsg;
use super::{Deps, fail, job_actor_name, video_actor_name};
use crate::domain::{DomainEvent, EventPayload};

pub struct EventRouter {
    pub deps: Deps,
}

pub struct EventRouterState {
    _pump: Pump,
}

#[derive(Debug)]
pub enum EventRouterMsg {
    SubscriptionEnded(String),
}

impl Actor for EventRouter {
    type Msg = EventRouterMsg;
    type State = EventRouterState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<EventRouterMsg>, _: ()) -> Result<EventRouterState, ActorProcessingErr> {
        let events = self.deps.events.subscribe().await?;
        Ok(EventRouterState { _pump: pump::spawn(myself, events, route, EventRouterMsg::SubscriptionEnded) })
    }

    async fn handle(
        &self,
        _myself: ActorRef<EventRouterMsg>,
        msg: EventRouterMsg,
        _state: &mut EventRouterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventRouterMsg::SubscriptionEnded(reason) => Err(fail(format!("event router: event {reason}"))),
        }
    }
}

fn route(event: DomainEvent) {
    let to_job = match &event.payload {
        EventPayload::DiscoveryCompleted { .. } => true,
        EventPayload::StageFailed { .. } => event.video_id.is_none(),
        EventPayload::VideoDownloaded { .. }
        | EventPayload::AudioExtracted { .. }
        | EventPayload::TranscriptionCompleted { .. }
        | EventPayload::SummarizationCompleted { .. } => false,
        // Nobody in the tree waits for these.
        EventPayload::VideoDiscovered { .. } | EventPayload::JobFinished { .. } => return,
    };
    if to_job {
        if let Some(cell) = ractor::registry::where_is(job_actor_name(event.job_id)) {
            let job: ActorRef<JobMsg> = cell.into();
            let _ = job.cast(JobMsg::Event(event));
        }
    } else if let Some(video_id) = &event.video_id
        && let Some(cell) = ractor::registry::where_is(video_actor_name(event.job_id, video_id))
    {
        let video: ActorRef<VideoMsg> = cell.into();
        let _ = video.cast(VideoMsg::Event(event));
    }
}
