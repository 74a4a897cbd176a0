//! JobSupervisor: starts one JobActor per job this process holds a lease on, and re-spawns a
//! failed one after a capped backoff (its `pre_start` reloads the job). A JobActor that stops
//! normally has finished its job. When a JobActor fails, its VideoActors are stopped too: the
//! re-spawned JobActor starts fresh ones from the persisted state.
//!
//! Ownership: a job runs in one process at a time. Before starting a JobActor the supervisor
//! claims the job's lease in the job store ([`JobStore::claim_job`]); every third of the lease
//! ([`StagesSettings::job_lease`]) it renews its leases and claims the unfinished jobs nobody holds
//! (at start: the jobs a stopped process left; later: those of a process that died). A job that
//! it runs but no longer holds was cancelled elsewhere (it is cancelled here too) or taken over
//! after this process failed to renew in time (its actors stop here). Leases are released on
//! shutdown, so another process resumes the jobs at its next renewal.
//!
//! [`JobStore::claim_job`]: crate::ports::JobStore::claim_job
//! [`StagesSettings::job_lease`]: crate::stages::StagesSettings::job_lease

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::job::{JobActor, JobArgs, JobMsg};
use super::restarts::Restarts;
use super::{Deps, job_actor_name, ownership_lost};
use crate::domain::{JobId, JobStatus};

pub struct JobSupervisor {
    pub deps: Deps,
}

pub struct JobSupervisorArgs {
    /// This process's name in job leases and stage attempts.
    pub node: String,
}

pub struct JobSupervisorState {
    node: String,
    children: HashMap<ActorId, JobId>,
    jobs: HashMap<JobId, ActorRef<JobMsg>>,
    restarts: Restarts<JobId>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum JobSupervisorMsg {
    /// Claims and starts (or resumes) a job; a job already running, or held elsewhere, is left alone.
    Start(JobId),
    /// Cancels a running job; replies false when it is not running here.
    Cancel(JobId, RpcReplyPort<bool>),
    /// The running jobs, for the ops console.
    Running(RpcReplyPort<Vec<JobId>>),
    /// Renews this process's leases and claims the jobs nobody holds.
    Tick,
    /// Passes [`JobMsg::Resync`] to every running job.
    Resync,
}

impl Actor for JobSupervisor {
    type Msg = JobSupervisorMsg;
    type State = JobSupervisorState;
    type Arguments = JobSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: JobSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(JobSupervisorState {
            node: args.node,
            children: HashMap::new(),
            jobs: HashMap::new(),
            restarts: Restarts::new(self.deps.settings.backoff(), &self.deps.restarts.jobs),
            ticker: None,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // The first tick resumes what is unfinished and unheld; then one every third of a lease.
        myself.cast(JobSupervisorMsg::Tick)?;
        let every = self.deps.settings.job_lease() / 3;
        state.ticker = Some(myself.send_interval(every.max(Duration::from_millis(100)), || JobSupervisorMsg::Tick));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JobSupervisorMsg::Start(job_id) => self.start(&myself, state, job_id).await,
            JobSupervisorMsg::Cancel(job_id, reply) => {
                let running = state.jobs.get(&job_id).map(|job| job.cast(JobMsg::Cancel).is_ok()).unwrap_or(false);
                let _ = reply.send(running);
            }
            JobSupervisorMsg::Running(reply) => {
                let _ = reply.send(state.jobs.keys().copied().collect());
            }
            JobSupervisorMsg::Tick => self.tick(&myself, state).await,
            JobSupervisorMsg::Resync => {
                for job in state.jobs.values() {
                    let _ = job.cast(JobMsg::Resync);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        myself.stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await;
        // Another process may resume them at once.
        for job_id in state.jobs.keys() {
            if let Err(e) = self.deps.store.release_job(*job_id, &state.node).await {
                tracing::warn!(%job_id, error = %e, "could not release the job's lease; it frees itself when it runs out");
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
                if let Some(job_id) = state.children.remove(&cell.get_id()) {
                    state.jobs.remove(&job_id);
                    state.restarts.forget(&job_id);
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(job_id) = state.children.remove(&cell.get_id()) else {
                    tracing::warn!(actor = ?cell.get_id(), %error, "unknown child failed");
                    return Ok(());
                };
                state.jobs.remove(&job_id);
                stop_videos(&cell);
                if ownership_lost(&error) {
                    // Another process took the job over while this one stalled: it runs it now.
                    tracing::warn!(%job_id, %error, "ownership lost; the job's actors stopped here");
                    state.restarts.forget(&job_id);
                    return Ok(());
                }
                let (restart, delay) = state.restarts.next(job_id);
                tracing::warn!(%job_id, %error, restart, ?delay, "job actor failed; restarting it");
                myself.send_after(delay, move || JobSupervisorMsg::Start(job_id));
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            #[cfg(feature = "cluster")]
            SupervisionEvent::PidLifecycleEvent(_) => {}
        }
        Ok(())
    }
}

impl JobSupervisor {
    async fn start(&self, myself: &ActorRef<JobSupervisorMsg>, state: &mut JobSupervisorState, job_id: JobId) {
        if state.jobs.contains_key(&job_id) {
            return;
        }
        let lease = self.deps.settings.job_lease();
        let fence = match self.deps.store.claim_job(job_id, &state.node, lease).await {
            Ok(Some(fence)) => fence,
            Ok(None) => {
                tracing::debug!(%job_id, "job is final or held by another process");
                return;
            }
            Err(e) => {
                let (_, delay) = state.restarts.next(job_id);
                tracing::warn!(%job_id, error = %e, ?delay, "could not claim the job; retrying");
                myself.send_after(delay, move || JobSupervisorMsg::Start(job_id));
                return;
            }
        };
        let actor = JobActor { deps: self.deps.clone() };
        let args = JobArgs { job_id, fence };
        match Actor::spawn_linked(Some(job_actor_name(job_id)), actor, args, myself.get_cell()).await {
            Ok((job_ref, _)) => {
                state.children.insert(job_ref.get_id(), job_id);
                state.jobs.insert(job_id, job_ref);
            }
            Err(e) => {
                let (_, delay) = state.restarts.next(job_id);
                tracing::warn!(%job_id, error = %e, ?delay, "could not start job actor; retrying");
                myself.send_after(delay, move || JobSupervisorMsg::Start(job_id));
            }
        }
    }

    /// Renews the leases, lets go of jobs that are no longer ours, and claims unheld ones.
    /// This node's heartbeat in the store, and the rows of nodes silent for ten leases forgotten.
    async fn beat(&self, node: &str, lease: Duration) {
        let store = &self.deps.store;
        match store.node_heartbeat(node).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                node,
                "this node's registration is gone: another process registered under its name \
                 (cluster.node_name must be unique), or it was silent for ten job leases"
            ),
            Err(e) => tracing::warn!(error = %e, "could not record this node's heartbeat"),
        }
        if let Err(e) = store.forget_nodes(None, lease * 10).await {
            tracing::warn!(error = %e, "could not forget long-silent nodes");
        }
    }

    async fn tick(&self, myself: &ActorRef<JobSupervisorMsg>, state: &mut JobSupervisorState) {
        let store = &self.deps.store;
        let lease = self.deps.settings.job_lease();
        self.beat(&state.node, lease).await;
        let held = match store.renew_leases(&state.node, lease).await {
            Ok(held) => held,
            Err(e) => {
                // Keep running: the leases last a while, and the next tick tries again.
                tracing::warn!(error = %e, "could not renew job leases");
                return;
            }
        };
        let lost: Vec<JobId> = state.jobs.keys().filter(|id| !held.contains(id)).copied().collect();
        for job_id in lost {
            match store.get_job(job_id).await {
                Ok(Some(job)) if job.status == JobStatus::Cancelled => {
                    tracing::info!(%job_id, "job was cancelled elsewhere; cancelling it here");
                    if let Some(job_ref) = state.jobs.get(&job_id) {
                        let _ = job_ref.cast(JobMsg::Cancel);
                    }
                    self.deps.running.cancel(job_id);
                }
                Ok(job) => {
                    // Ended (by another process that took it over, or by its own actor, which is
                    // stopping anyway) or taken over: its actors here have nothing left to do.
                    let ended = job.is_some_and(|job| job.status.is_final());
                    if ended {
                        tracing::info!(%job_id, "job ended while this process no longer held it; stopping it here");
                    } else {
                        tracing::warn!(%job_id, "another process took the job over (lease not renewed in time); stopping it here");
                    }
                    if let Some(job_ref) = state.jobs.remove(&job_id) {
                        state.children.remove(&job_ref.get_id());
                        stop_videos(&job_ref.get_cell());
                        job_ref.stop(Some("lease lost".into()));
                    }
                }
                Err(e) => tracing::warn!(%job_id, error = %e, "could not check a job whose lease was not renewed"),
            }
        }
        // Held here but not running: created for this process (a submission, a subscription's
        // poll) while its start did not arrive, or before this supervisor restarted.
        let idle: Vec<JobId> = held.into_iter().filter(|id| !state.jobs.contains_key(id)).collect();
        for job_id in idle {
            self.start(myself, state, job_id).await;
        }
        match store.claimable_jobs().await {
            Ok(jobs) => {
                for job_id in jobs {
                    self.start(myself, state, job_id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the jobs to resume"),
        }
    }
}

/// Stops a JobActor's VideoActors without telling the JobActor (it is going away).
fn stop_videos(job: &ractor::ActorCell) {
    for video in job.get_children() {
        video.unlink(job.clone());
        video.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::actors::testing::{FnWork, TestPorts, settings};
    use crate::domain::Stage;

    async fn running(supervisor: &ActorRef<JobSupervisorMsg>) -> Vec<JobId> {
        ractor::call_t!(supervisor, JobSupervisorMsg::Running, 1_000).unwrap()
    }

    #[tokio::test]
    async fn a_job_runs_only_where_its_lease_is_held() {
        let ports = TestPorts::new(settings(1, 3600), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await;
        let (job, _) = ports.job_with_video("aaaaaaaaaaa").await;
        let store = &ports.deps.store;
        assert!(store.claim_job(job, "other-process", Duration::from_secs(600)).await.unwrap().is_some());

        let args = JobSupervisorArgs { node: "this-process".into() };
        let (supervisor, _) = Actor::spawn(None, JobSupervisor { deps: ports.deps.clone() }, args).await.unwrap();
        supervisor.cast(JobSupervisorMsg::Start(job)).unwrap();
        assert!(running(&supervisor).await.is_empty(), "another process holds the job");

        // Released (that process stopped): the next lease round takes it and starts it here.
        store.release_job(job, "other-process").await.unwrap();
        supervisor.cast(JobSupervisorMsg::Tick).unwrap();
        assert_eq!(running(&supervisor).await, [job]);
        assert_eq!(ports.next_command(Stage::Discovery).await.job_id, job, "its JobActor runs discovery");
        assert!(
            store.claim_job(job, "other-process", Duration::from_secs(600)).await.unwrap().is_none(),
            "held here now"
        );

        // Stopping releases the lease at once.
        supervisor.stop_and_wait(None, None).await.unwrap();
        assert!(store.claim_job(job, "other-process", Duration::from_secs(600)).await.unwrap().is_some());
    }
}
