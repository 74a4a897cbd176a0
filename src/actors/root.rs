//! RootSupervisor: owns the EventRouter, the stage pools this process runs, the event consumers,
//! the WebhookDispatcher, and the JobSupervisor. A child that fails is re-spawned alone after a capped backoff with jitter; callers
//! reach the current JobSupervisor through the root, so they never hold a stale reference.

use std::collections::HashMap;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::consumer::{EventConsumer, EventConsumerArgs};
use super::job_supervisor::{JobSupervisor, JobSupervisorArgs, JobSupervisorMsg};
use super::restarts::Restarts;
use super::router::EventRouter;
use super::stage_pool::{PoolStats, StagePool, StagePoolArgs, StagePoolMsg};
use super::subscriptions::{SubscriptionSupervisor, SubscriptionSupervisorArgs, SubscriptionSupervisorMsg, Watch};
use super::webhooks::{WebhookDispatcher, WebhookDispatcherArgs};
use super::{Deps, fail};
use crate::domain::{JobId, Stage};

pub struct RootSupervisor {
    pub deps: Deps,
}

#[derive(Clone)]
pub struct RootArgs {
    /// The stage pools this process runs.
    pub stages: Vec<Stage>,
    /// Prefix of the children's registry names (names are process-global; several pipelines may
    /// share a process, as in tests).
    pub instance: String,
    /// This process's name in job leases and stage attempts (unique per running tree).
    pub node: String,
    /// The decoupled event consumers (analytics, event log, webhooks).
    pub consumers: Vec<EventConsumerArgs>,
    /// Watching channels for new uploads (none: this process polls no subscription).
    pub watch: Option<Watch>,
    /// What the webhook dispatcher sends with.
    pub webhooks: WebhookDispatcherArgs,
}

/// The root's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Child {
    Router,
    Pool(Stage),
    Jobs,
    /// An event consumer, by its index in [`RootArgs::consumers`].
    Consumer(usize),
    Subscriptions,
    Webhooks,
}

pub struct RootState {
    children: HashMap<ActorId, (Child, ActorCell)>,
    restarts: Restarts<Child>,
    shutting_down: bool,
    instance: String,
    node: String,
    consumers: Vec<EventConsumerArgs>,
    watch: Option<Watch>,
    webhooks: WebhookDispatcherArgs,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum RootMsg {
    StartJob(JobId),
    CancelJob(JobId, RpcReplyPort<bool>),
    RunningJobs(RpcReplyPort<Vec<JobId>>),
    /// Counters of every running pool.
    PoolStats(RpcReplyPort<Vec<PoolStats>>),
    Respawn(Child),
    /// Renew leases and look for claimable jobs and subscriptions now, not at the next tick (a
    /// peer went away, a subscription was made).
    CheckLeases,
    /// Stops every child (jobs first, then pools, then the router) and replies when done.
    Shutdown(RpcReplyPort<()>),
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let mut state = RootState {
            children: HashMap::new(),
            restarts: Restarts::new(self.deps.settings.backoff(), &self.deps.restarts.supervisors),
            shutting_down: false,
            instance: args.instance.clone(),
            node: args.node.clone(),
            consumers: args.consumers.clone(),
            watch: args.watch.clone(),
            webhooks: args.webhooks.clone(),
        };
        // Attempts whose process died while they ran (this one before a restart, or another).
        let silent_since = chrono::Utc::now() - self.deps.settings.silence();
        let reason = "interrupted: its process stopped giving signs of life";
        match self.deps.store.interrupt_attempts(None, silent_since, reason).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(attempts = n, "closed stage attempts left open by a process that died"),
            Err(e) => tracing::warn!(error = %e, "could not close the attempts of dead processes"),
        }
        // Router first: results must have somewhere to go before any work is taken.
        self.spawn_child(&myself, &mut state, Child::Router).await?;
        for stage in args.stages {
            self.spawn_child(&myself, &mut state, Child::Pool(stage)).await?;
        }
        for index in 0..state.consumers.len() {
            self.spawn_child(&myself, &mut state, Child::Consumer(index)).await?;
        }
        self.spawn_child(&myself, &mut state, Child::Webhooks).await?;
        self.spawn_child(&myself, &mut state, Child::Jobs).await?;
        if state.watch.is_some() {
            self.spawn_child(&myself, &mut state, Child::Subscriptions).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::StartJob(job_id) => {
                // While the JobSupervisor restarts, the job waits unclaimed: the new one's first
                // lease round takes it.
                if let Ok(jobs) = jobs_ref(state) {
                    jobs.cast(JobSupervisorMsg::Start(job_id))?;
                }
            }
            RootMsg::CancelJob(job_id, reply) => match jobs_ref(state) {
                Ok(jobs) => {
                    // Forward and let the JobSupervisor answer the caller directly.
                    jobs.cast(JobSupervisorMsg::Cancel(job_id, reply))?;
                }
                Err(_) => {
                    let _ = reply.send(false);
                }
            },
            RootMsg::CheckLeases => {
                if let Ok(jobs) = jobs_ref(state) {
                    jobs.cast(JobSupervisorMsg::Tick)?;
                }
                for (child, cell) in state.children.values() {
                    if *child == Child::Subscriptions {
                        let _ = cell.send_message(SubscriptionSupervisorMsg::Tick);
                    }
                }
            }
            RootMsg::RunningJobs(reply) => match jobs_ref(state) {
                Ok(jobs) => jobs.cast(JobSupervisorMsg::Running(reply))?,
                Err(_) => {
                    let _ = reply.send(Vec::new());
                }
            },
            RootMsg::PoolStats(reply) => {
                let mut out = Vec::new();
                for (child, cell) in state.children.values() {
                    if let Child::Pool(_) = child {
                        let pool: ActorRef<StagePoolMsg> = cell.clone().into();
                        if let Ok(stats) = ractor::call_t!(pool, StagePoolMsg::Stats, 1_000) {
                            out.push(stats);
                        }
                    }
                }
                out.sort_by_key(|s| Stage::ALL.iter().position(|x| *x == s.stage));
                let _ = reply.send(out);
            }
            RootMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let timeout = Some(std::time::Duration::from_secs(10));
                for kind in [Child::Subscriptions, Child::Jobs, Child::Router] {
                    for (child, cell) in state.children.values() {
                        let with_router = matches!(child, Child::Pool(_) | Child::Consumer(_) | Child::Webhooks);
                        if *child == kind || (kind == Child::Router && with_router) {
                            cell.stop_and_wait(Some("shutdown".into()), timeout).await?;
                        }
                    }
                }
                state.children.clear();
                // The pools stopped their running work: its attempts end here.
                let reason = "interrupted: the process stopped";
                match self.deps.store.interrupt_attempts(Some(&state.node), chrono::DateTime::UNIX_EPOCH, reason).await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(attempts = n, "closed the stage attempts this process was running"),
                    Err(e) => tracing::warn!(error = %e, "could not close this process's running attempts"),
                }
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
            RootMsg::Respawn(_) if state.shutting_down => {}
            RootMsg::Respawn(child) => match self.spawn_child(&myself, state, child).await {
                // Results published while the router was away reached no one: the jobs ask again.
                Ok(()) if child == Child::Router => {
                    if let Ok(jobs) = jobs_ref(state) {
                        jobs.cast(JobSupervisorMsg::Resync)?;
                    }
                }
                Ok(()) => {}
                Err(e) => self.schedule_respawn(&myself, state, child, &e.to_string()),
            },
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if state.shutting_down {
            return Ok(());
        }
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some((child, _)) = state.children.remove(&cell.get_id()) {
                    self.schedule_respawn(&myself, state, child, &error.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // Children stop only when the root is shutting down; anything else is a fault.
                if let Some((child, _)) = state.children.remove(&cell.get_id()) {
                    self.schedule_respawn(&myself, state, child, reason.as_deref().unwrap_or("stopped"));
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            #[cfg(feature = "cluster")]
            SupervisionEvent::PidLifecycleEvent(_) => {}
        }
        Ok(())
    }
}

impl RootSupervisor {
    async fn spawn_child(
        &self,
        myself: &ActorRef<RootMsg>,
        state: &mut RootState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let supervisor = myself.get_cell();
        let deps = self.deps.clone();
        let cell = match child {
            Child::Router => {
                let name = format!("{}/event-router", state.instance);
                Actor::spawn_linked(Some(name), EventRouter { deps }, (), supervisor).await?.0.get_cell()
            }
            Child::Pool(stage) => {
                let name = format!("{}/pool:{stage}", state.instance);
                let args = StagePoolArgs { stage, node: state.node.clone() };
                Actor::spawn_linked(Some(name), StagePool { deps }, args, supervisor).await?.0.get_cell()
            }
            Child::Jobs => {
                let name = format!("{}/job-supervisor", state.instance);
                let args = JobSupervisorArgs { node: state.node.clone() };
                Actor::spawn_linked(Some(name), JobSupervisor { deps }, args, supervisor).await?.0.get_cell()
            }
            Child::Consumer(index) => {
                let args = state.consumers[index].clone();
                let name = format!("{}/consumer:{}", state.instance, args.sink.name());
                Actor::spawn_linked(Some(name), EventConsumer { deps }, args, supervisor).await?.0.get_cell()
            }
            Child::Subscriptions => {
                let name = format!("{}/subscription-supervisor", state.instance);
                let watch = state.watch.clone().ok_or_else(|| fail("watching is not configured"))?;
                let args = SubscriptionSupervisorArgs { node: state.node.clone(), root: myself.clone() };
                let actor = SubscriptionSupervisor { deps, watch };
                Actor::spawn_linked(Some(name), actor, args, supervisor).await?.0.get_cell()
            }
            Child::Webhooks => {
                let name = format!("{}/webhook-dispatcher", state.instance);
                let args = state.webhooks.clone();
                Actor::spawn_linked(Some(name), WebhookDispatcher, args, supervisor).await?.0.get_cell()
            }
        };
        // A new JobSupervisor resumes the unfinished jobs nobody holds by itself.
        state.children.insert(cell.get_id(), (child, cell));
        Ok(())
    }

    fn schedule_respawn(&self, myself: &ActorRef<RootMsg>, state: &mut RootState, child: Child, reason: &str) {
        let (restart, delay) = state.restarts.next(child);
        tracing::error!(?child, restart, ?delay, reason, "supervised child failed; restarting it");
        myself.send_after(delay, move || RootMsg::Respawn(child));
    }
}

fn jobs_ref(state: &RootState) -> Result<ActorRef<JobSupervisorMsg>, ActorProcessingErr> {
    state
        .children
        .values()
        .find(|(child, _)| *child == Child::Jobs)
        .map(|(_, cell)| cell.clone().into())
        .ok_or_else(|| fail("the job supervisor is restarting"))
}
