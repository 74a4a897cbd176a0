//! EventRouter: subscribes to the event bus and hands each stage result to the actor it concerns
//! (looked up by registry name), and every event to the process's [`Feed`](super::feed::Feed)
//! (the live views). An event for an actor that is not running here — restarting, or
//! living in another process — is dropped: that actor re-dispatches from persisted state, and stages
//! are idempotent. If the subscription breaks, the router fails and is restarted, and the
//! RootSupervisor then has every running job ask again for the results it waits for
//! ([`super::job::JobMsg::Resync`]): events published while no subscription existed reached no one.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::board::Board;
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
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum EventRouterMsg {
    SubscriptionEnded(String),
}

impl Actor for EventRouter {
    type Msg = EventRouterMsg;
    type State = EventRouterState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<EventRouterMsg>, _: ()) -> Result<EventRouterState, ActorProcessingErr> {
        let events = self.deps.events.subscribe().await?;
        let (board, feed) = (self.deps.board.clone(), self.deps.feed.clone());
        let route = move |event: DomainEvent| {
            feed.push(&event);
            route(&board, event)
        };
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

/// Casts the event to its actor, counting it on the board as waiting there.
fn route(board: &Board, event: DomainEvent) {
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
            board.sent(cell.get_id());
            let job: ActorRef<JobMsg> = cell.into();
            let _ = job.cast(JobMsg::Event(event));
        }
    } else if let Some(video_id) = &event.video_id
        && let Some(cell) = ractor::registry::where_is(video_actor_name(event.job_id, video_id))
    {
        board.sent(cell.get_id());
        let video: ActorRef<VideoMsg> = cell.into();
        let _ = video.cast(VideoMsg::Event(event));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::actors::testing::{ChildEnd, FnWork, Probe, TestPorts, Watcher, next, settings};
    use crate::domain::{JobId, JobStatus, VideoId};
    use crate::ports::{EventBus, EventStream, PortResult};

    #[tokio::test]
    async fn results_reach_the_actor_they_are_about_and_nothing_else() {
        let ports = TestPorts::new(settings(1, 60), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await;
        let (job, video) = (JobId::new(), VideoId::parse("routedvideo").unwrap());
        let (job_probe, mut to_job) = Probe::<JobMsg>::spawn(Some(job_actor_name(job))).await;
        let (video_probe, mut to_video) = Probe::<VideoMsg>::spawn(Some(video_actor_name(job, &video))).await;
        let (router, _) = Actor::spawn(None, EventRouter { deps: ports.deps.clone() }, ()).await.unwrap();
        let board = &ports.deps.board;
        board.joined(job_probe.get_cell());
        board.joined(video_probe.get_cell());

        let events = &ports.deps.events;
        let about_video = |payload| DomainEvent::new(job, Some(video.clone()), payload);
        // Not for anyone in the tree: never delivered.
        events
            .publish(about_video(EventPayload::VideoDiscovered { title: "t".into(), published_at: None }))
            .await
            .unwrap();
        events
            .publish(DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Completed }))
            .await
            .unwrap();
        // Another job's video: no actor by that name here.
        let stranger =
            DomainEvent::new(JobId::new(), Some(video.clone()), EventPayload::AudioExtracted { seconds: 1.0 });
        events.publish(stranger).await.unwrap();
        events.publish(about_video(EventPayload::AudioExtracted { seconds: 2.0 })).await.unwrap();
        events.publish(DomainEvent::new(job, None, EventPayload::DiscoveryCompleted { videos: 1 })).await.unwrap();

        match next(&mut to_video).await {
            VideoMsg::Event(e) => assert_eq!(e.payload, EventPayload::AudioExtracted { seconds: 2.0 }),
            other => panic!("{other:?}"),
        }
        match next(&mut to_job).await {
            JobMsg::Event(e) => assert_eq!(e.payload, EventPayload::DiscoveryCompleted { videos: 1 }),
            other => panic!("{other:?}"),
        }
        assert!(to_video.try_recv().is_err() && to_job.try_recv().is_err(), "one delivery each");
        // Counted in as waiting (a probe never counts them out, as the real actors do).
        for probe in [job_probe.get_id(), video_probe.get_id()] {
            assert_eq!(board.get(probe).unwrap().waiting, 1);
        }
        for actor in [router.get_cell(), job_probe.get_cell(), video_probe.get_cell()] {
            actor.stop(None);
        }
    }

    /// An event bus whose subscriptions end at once (a broker connection that breaks).
    struct Broken;

    #[async_trait::async_trait]
    impl EventBus for Broken {
        async fn publish(&self, _: DomainEvent) -> PortResult<()> {
            Ok(())
        }
        async fn subscribe(&self) -> PortResult<EventStream> {
            Ok(Box::pin(futures::stream::empty()))
        }
    }

    #[tokio::test]
    async fn a_router_whose_subscription_ends_fails_for_its_supervisor() {
        let mut ports = TestPorts::new(settings(1, 60), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await;
        ports.deps.events = Arc::new(Broken);
        let (watcher, mut ends) = Watcher::spawn().await;
        Actor::spawn_linked(None, EventRouter { deps: ports.deps.clone() }, (), watcher.get_cell()).await.unwrap();
        assert_eq!(next(&mut ends).await, ChildEnd::Failed("event router: event stream closed".into()));
        watcher.stop(None);
    }
}
