//! Watching channels: the SubscriptionSupervisor holds leases on subscriptions (as the
//! JobSupervisor does on jobs, so that one process polls each) and runs one SubscriptionActor per
//! subscription it holds. A SubscriptionActor polls its channel's feed with conditional requests
//! every interval (jittered by a tenth either way; backing off while polls fail) and records each
//! poll, with the job for the uploads it had not seen, in one write fenced by its lease; then it
//! starts that job here. A poll asked for (a WebSub notification) reaches it at the next lease
//! round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::Deserialize;
use uuid::Uuid;

use super::Deps;
use super::restarts::Restarts;
use super::root::RootMsg;
use crate::domain::JobId;
use crate::domain::backoff::Backoff;
use crate::domain::subscriptions::{PollOutcome, PollRecord, Subscription};
use crate::ports::{PortError, SubscriptionStore};
use crate::stages::discovery::{FeedAnswer, UploadsFeed};

/// `[subscriptions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// Whether this process polls subscriptions at all (the API still records them).
    pub enabled: bool,
    /// The interval of a subscription that names none.
    pub default_interval_secs: u64,
    /// The shortest interval a subscription may ask for (YouTube's feeds change rarely; be kind).
    pub min_interval_secs: u64,
    /// The longest wait between polls while they fail (the backoff doubles from the interval).
    pub max_backoff_secs: u64,
    /// The secret WebSub hubs sign notifications with (`X-Hub-Signature`); empty: the WebSub
    /// callback refuses every notification.
    pub websub_secret: secrecy::SecretString,
}

/// What watching needs beyond the actors' [`Deps`].
#[derive(Clone)]
pub struct Watch {
    pub store: Arc<dyn SubscriptionStore>,
    pub feed: UploadsFeed,
    pub settings: SubscriptionSettings,
}

pub struct SubscriptionSupervisor {
    pub deps: Deps,
    pub watch: Watch,
}

pub struct SubscriptionSupervisorArgs {
    /// This process's name in leases.
    pub node: String,
    /// Where the jobs that polls submit are started.
    pub root: ActorRef<RootMsg>,
}

pub struct SubscriptionSupervisorState {
    node: String,
    root: ActorRef<RootMsg>,
    actors: HashMap<Uuid, ActorRef<SubscriptionMsg>>,
    children: HashMap<ActorId, Uuid>,
    restarts: Restarts<Uuid>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum SubscriptionSupervisorMsg {
    /// Renew the leases, stop what is no longer held, claim what nobody holds.
    Tick,
    /// Start the actor of a subscription this process holds (after a failed one's backoff).
    Spawn(Uuid),
    /// The subscriptions polled here.
    Held(ractor::RpcReplyPort<Vec<Uuid>>),
}

impl Actor for SubscriptionSupervisor {
    type Msg = SubscriptionSupervisorMsg;
    type State = SubscriptionSupervisorState;
    type Arguments = SubscriptionSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SubscriptionSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SubscriptionSupervisorState {
            node: args.node,
            root: args.root,
            actors: HashMap::new(),
            children: HashMap::new(),
            restarts: Restarts::new(self.deps.settings.backoff(), &self.deps.restarts.supervisors),
            ticker: None,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        myself.cast(SubscriptionSupervisorMsg::Tick)?;
        let every = (self.deps.settings.job_lease() / 3).max(Duration::from_millis(100));
        state.ticker = Some(myself.send_interval(every, || SubscriptionSupervisorMsg::Tick));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SubscriptionSupervisorMsg::Tick => self.tick(&myself, state).await,
            SubscriptionSupervisorMsg::Spawn(id) => {
                // Only while it is still held here (the next round claims it again otherwise).
                let lease = self.deps.settings.job_lease();
                match self.watch.store.claim_subscription(id, &state.node, lease).await {
                    Ok(true) => self.spawn(&myself, state, id).await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(subscription = %id, error = %e, "could not claim the subscription"),
                }
            }
            SubscriptionSupervisorMsg::Held(reply) => {
                let _ = reply.send(state.actors.keys().copied().collect());
            }
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        myself.stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await;
        // Another process may poll them at once.
        for id in state.actors.keys() {
            if let Err(e) = self.watch.store.release_subscription(*id, &state.node).await {
                tracing::warn!(subscription = %id, error = %e, "could not release the subscription's lease");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = state.children.remove(&cell.get_id()) {
                    state.actors.remove(&id);
                    state.restarts.forget(&id);
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(id) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                state.actors.remove(&id);
                let (restart, delay) = state.restarts.next(id);
                tracing::warn!(subscription = %id, %error, restart, ?delay, "subscription actor failed; restarting it");
                myself.send_after(delay, move || SubscriptionSupervisorMsg::Spawn(id));
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            #[cfg(feature = "cluster")]
            SupervisionEvent::PidLifecycleEvent(_) => {}
        }
        Ok(())
    }
}

impl SubscriptionSupervisor {
    async fn tick(&self, myself: &ActorRef<SubscriptionSupervisorMsg>, state: &mut SubscriptionSupervisorState) {
        let store = &self.watch.store;
        let lease = self.deps.settings.job_lease();
        let held = match store.renew_subscription_leases(&state.node, lease).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew subscription leases");
                return;
            }
        };
        let lost: Vec<Uuid> = state.actors.keys().filter(|id| !held.iter().any(|(h, _)| h == *id)).copied().collect();
        for id in lost {
            tracing::info!(subscription = %id, "subscription no longer held here (deleted, or taken over); stopping its poller");
            if let Some(actor) = state.actors.remove(&id) {
                state.children.remove(&actor.get_id());
                actor.stop(Some("lease lost".into()));
            }
        }
        for (id, asked) in &held {
            match state.actors.get(id) {
                Some(actor) if *asked => {
                    let _ = actor.cast(SubscriptionMsg::PollNow);
                }
                Some(_) => {}
                None => self.spawn(myself, state, *id).await,
            }
        }
        match store.claimable_subscriptions().await {
            Ok(ids) => {
                for id in ids {
                    match store.claim_subscription(id, &state.node, lease).await {
                        Ok(true) => self.spawn(myself, state, id).await,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(subscription = %id, error = %e, "could not claim the subscription"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the subscriptions to poll"),
        }
    }

    async fn spawn(
        &self,
        myself: &ActorRef<SubscriptionSupervisorMsg>,
        state: &mut SubscriptionSupervisorState,
        id: Uuid,
    ) {
        if state.actors.contains_key(&id) {
            return;
        }
        let actor = SubscriptionActor { deps: self.deps.clone(), watch: self.watch.clone() };
        let args = SubscriptionArgs { id, node: state.node.clone(), root: state.root.clone() };
        match Actor::spawn_linked(None, actor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                state.children.insert(actor.get_id(), id);
                state.actors.insert(id, actor);
            }
            Err(e) => tracing::warn!(subscription = %id, error = %e, "could not start the subscription's poller"),
        }
    }
}

/// Polls one subscription.
pub struct SubscriptionActor {
    deps: Deps,
    watch: Watch,
}

pub struct SubscriptionArgs {
    id: Uuid,
    node: String,
    root: ActorRef<RootMsg>,
}

pub struct SubscriptionState {
    id: Uuid,
    node: String,
    root: ActorRef<RootMsg>,
    /// The next poll, scheduled.
    next: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<SubscriptionMsg>>>>,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum SubscriptionMsg {
    /// The scheduled poll.
    Poll,
    /// Poll now (a WebSub notification), instead of at the scheduled time.
    PollNow,
}

impl Actor for SubscriptionActor {
    type Msg = SubscriptionMsg;
    type State = SubscriptionState;
    type Arguments = SubscriptionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SubscriptionMsg>,
        args: SubscriptionArgs,
    ) -> Result<SubscriptionState, ActorProcessingErr> {
        Ok(SubscriptionState { id: args.id, node: args.node, root: args.root, next: None })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SubscriptionMsg>,
        state: &mut SubscriptionState,
    ) -> Result<(), ActorProcessingErr> {
        // Resumes the schedule it had: due at the last poll plus the wait it chose then.
        let Some(subscription) = self.watch.store.get_subscription(state.id).await? else {
            myself.stop(Some("deleted".into()));
            return Ok(());
        };
        let wait = match subscription.last_polled_at {
            None => Duration::ZERO,
            Some(at) => {
                let since = (chrono::Utc::now() - at).to_std().unwrap_or_default();
                self.wait(&subscription, 0.5).saturating_sub(since)
            }
        };
        state.next = Some(myself.send_after(wait, || SubscriptionMsg::Poll));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SubscriptionMsg>,
        msg: SubscriptionMsg,
        state: &mut SubscriptionState,
    ) -> Result<(), ActorProcessingErr> {
        if let (SubscriptionMsg::PollNow, Some(next)) = (&msg, state.next.take()) {
            next.abort();
        }
        let Some(subscription) = self.watch.store.get_subscription(state.id).await? else {
            myself.stop(Some("deleted".into()));
            return Ok(());
        };
        let record = self.poll(&subscription).await;
        let lease = self.deps.settings.job_lease();
        match self.watch.store.record_poll(state.id, &state.node, lease, &record).await {
            Ok(()) => {}
            Err(PortError::OwnershipLost(reason) | PortError::NotFound(reason)) => {
                tracing::info!(subscription = %state.id, %reason, "no longer this process's to poll");
                myself.stop(Some(reason));
                return Ok(());
            }
            Err(e) => {
                // Nothing was recorded: the same uploads are found new again next time.
                tracing::warn!(subscription = %state.id, error = %e, "could not record the poll");
            }
        }
        self.log(&subscription, &record);
        if let Some((job_id, _)) = &record.job {
            state.root.cast(RootMsg::StartJob(*job_id))?;
        }
        let after = Subscription {
            failures: if record.outcome == PollOutcome::Failed { subscription.failures + 1 } else { 0 },
            ..subscription
        };
        let wait = self.wait(&after, rand::random::<f64>());
        state.next = Some(myself.send_after(wait, || SubscriptionMsg::Poll));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SubscriptionMsg>,
        state: &mut SubscriptionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(next) = state.next.take() {
            next.abort();
        }
        Ok(())
    }
}

impl SubscriptionActor {
    /// One conditional request for the feed, and what it makes of the answer.
    async fn poll(&self, subscription: &Subscription) -> PollRecord {
        match self.watch.feed.poll(&subscription.channel_id, &subscription.validators).await {
            Ok(FeedAnswer::NotModified) => subscription.unchanged(PollOutcome::NotModified, None),
            Ok(FeedAnswer::Listed { videos, validators }) => subscription.read_feed(videos, validators, JobId::new()),
            Err(e) => subscription.unchanged(PollOutcome::Failed, Some(e.to_string())),
        }
    }

    fn log(&self, subscription: &Subscription, record: &PollRecord) {
        let (id, channel) = (subscription.subscription_id, &subscription.channel_id);
        match (&record.job, &record.error) {
            (Some((job_id, videos)), _) => {
                tracing::info!(subscription = %id, %channel, %job_id, videos = videos.len(), "new uploads; job submitted")
            }
            (None, Some(error)) => tracing::warn!(subscription = %id, %channel, %error, "poll failed"),
            (None, None) => tracing::debug!(subscription = %id, %channel, outcome = record.outcome.as_str(), "polled"),
        }
    }

    /// The wait before the next poll: the interval, or while polls fail a backoff doubling from it
    /// (capped by `max_backoff_secs`); jittered by a tenth either way (`unit` in [0, 1)).
    fn wait(&self, subscription: &Subscription, unit: f64) -> Duration {
        let settings = &self.watch.settings;
        let interval = Duration::from_secs(subscription.interval_secs.max(1));
        let base = if subscription.failures == 0 {
            interval
        } else {
            let max = Duration::from_secs(settings.max_backoff_secs).max(interval);
            Backoff { initial: interval, max }.ceiling(subscription.failures + 1)
        };
        base.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
    }
}
