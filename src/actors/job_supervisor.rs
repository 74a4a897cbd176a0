//! JobSupervisor: starts one JobActor per job and re-spawns a failed one after a capped backoff
//! (its `pre_start` reloads the job). A JobActor that stops normally has finished its job. When a
//! JobActor fails, its VideoActors are stopped too: the re-spawned JobActor starts fresh ones from
//! the persisted state.

use std::collections::HashMap;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::backoff::Restarts;
use super::job::{JobActor, JobArgs, JobMsg};
use super::{Deps, job_actor_name};
use crate::domain::JobId;

pub struct JobSupervisor {
    pub deps: Deps,
}

pub struct JobSupervisorState {
    children: HashMap<ActorId, JobId>,
    jobs: HashMap<JobId, ActorRef<JobMsg>>,
    restarts: Restarts<JobId>,
}

#[derive(Debug)]
pub enum JobSupervisorMsg {
    /// Starts (or resumes) a job; a job already running is left alone.
    Start(JobId),
    /// Cancels a running job; replies false when it is not running here.
    Cancel(JobId, RpcReplyPort<bool>),
    /// The running jobs, for the ops console.
    Running(RpcReplyPort<Vec<JobId>>),
}

impl Actor for JobSupervisor {
    type Msg = JobSupervisorMsg;
    type State = JobSupervisorState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, _: ()) -> Result<Self::State, ActorProcessingErr> {
        Ok(JobSupervisorState {
            children: HashMap::new(),
            jobs: HashMap::new(),
            restarts: Restarts::new(self.deps.settings.stages.backoff()),
        })
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
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, _state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(Some("shutdown".into()), Some(std::time::Duration::from_secs(10))).await;
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
                for video in cell.get_children() {
                    video.unlink(cell.clone());
                    video.kill();
                }
                let (restart, delay) = state.restarts.next(job_id);
                tracing::warn!(%job_id, %error, restart, ?delay, "job actor failed; restarting it");
                myself.send_after(delay, move || JobSupervisorMsg::Start(job_id));
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl JobSupervisor {
    async fn start(&self, myself: &ActorRef<JobSupervisorMsg>, state: &mut JobSupervisorState, job_id: JobId) {
        if state.jobs.contains_key(&job_id) {
            return;
        }
        let actor = JobActor { deps: self.deps.clone() };
        match Actor::spawn_linked(Some(job_actor_name(job_id)), actor, JobArgs { job_id }, myself.get_cell()).await {
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
}
