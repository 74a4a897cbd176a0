//! JobActor: one per running job. Runs discovery (with retries), records the videos, then
//! supervises one VideoActor per video that still has work, re-spawning a failed one after a
//! capped backoff with jitter (only that one). When every video is final it writes the job's final
//! status, publishes `job_finished` and stops. A restarted JobActor reloads everything from the
//! store and picks up where the job was.

use std::collections::{HashMap, HashSet};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::restarts::Restarts;
use super::video::{VideoActor, VideoArgs, VideoMsg};
use super::{Deps, fail, ownership_lost, video_actor_name};
use crate::domain::workflow::{self, VideoEvent};
use crate::domain::{
    AttemptProgress, DomainEvent, EventPayload, JobId, JobStatus, Stage, StageCommand, VideoId, VideoRecord,
    VideoStatus, VideoUpdate,
};
use crate::ports::Fence;

pub struct JobActor {
    pub deps: Deps,
}

#[derive(Debug, Clone)]
pub struct JobArgs {
    pub job_id: JobId,
    /// The claim this process holds on the job: every write for it carries it.
    pub fence: Fence,
}

pub struct JobState {
    job_id: JobId,
    fence: Fence,
    force: bool,
    /// Discovery's attempt in flight, if any.
    discovery_attempt: Option<u32>,
    /// Running VideoActors, by actor id.
    children: HashMap<ActorId, (VideoId, ActorRef<VideoMsg>)>,
    /// VideoActor restarts so far, per video (for the backoff).
    restarts: Restarts<VideoId>,
    /// Videos waiting out a backoff before their re-spawn.
    pending: usize,
    cancelled: bool,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum JobMsg {
    Event(DomainEvent),
    RetryDiscovery {
        attempt: u32,
    },
    /// Looks at the discovery attempt's record, as a VideoActor looks at its stage's
    /// ([`super::video::VideoMsg::Watch`]).
    WatchDiscovery {
        attempt: u32,
    },
    SpawnVideo(VideoId),
    Cancel,
    /// Results may have been missed (the event subscription broke): ask again for what is awaited.
    Resync,
    /// Its VideoActors as they are now (the ops console's drill-down).
    Actors(ractor::RpcReplyPort<JobActors>),
}

/// A JobActor's VideoActors, for the ops console.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JobActors {
    pub actors: Vec<VideoActorLine>,
    /// Videos whose actor failed and waits out its backoff before it is started again.
    pub restarting: usize,
}

/// One VideoActor.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct VideoActorLine {
    pub video_id: String,
    /// ractor's status, lower case (`running`, `stopping`, …).
    pub status: String,
    /// The stage whose result it waits for (none: between stages).
    pub stage: Option<Stage>,
    /// How often its actor was started again after failing.
    pub restarts: u32,
    /// Since this actor (this incarnation of it) started.
    pub uptime_ms: u64,
    /// Events routed to it and not handled yet: its mailbox, as tubesum counts it.
    pub mailbox: u64,
}

impl Actor for JobActor {
    type Msg = JobMsg;
    type State = JobState;
    type Arguments = JobArgs;

    async fn pre_start(&self, _myself: ActorRef<JobMsg>, args: JobArgs) -> Result<JobState, ActorProcessingErr> {
        let job = self
            .deps
            .store
            .get_job(args.job_id)
            .await?
            .ok_or_else(|| fail(format!("job {} does not exist", args.job_id)))?;
        Ok(JobState {
            job_id: job.job_id,
            fence: args.fence,
            force: job.force,
            discovery_attempt: None,
            children: HashMap::new(),
            restarts: Restarts::new(self.deps.settings.backoff(), &self.deps.restarts.videos),
            pending: 0,
            cancelled: false,
        })
    }

    async fn post_start(&self, myself: ActorRef<JobMsg>, state: &mut JobState) -> Result<(), ActorProcessingErr> {
        self.deps.board.joined(myself.get_cell());
        let job = self.deps.store.get_job(state.job_id).await?.ok_or_else(|| fail("job vanished"))?;
        match job.status {
            JobStatus::Pending | JobStatus::Discovering => self.discover(&myself, state, 1).await,
            JobStatus::Running => self.run_videos(&myself, state).await,
            JobStatus::Completed | JobStatus::CompletedWithErrors | JobStatus::Failed | JobStatus::Cancelled => {
                // Ended (cancelled, say) while its actors were down: what it left unfinished is
                // cancelled with it.
                self.cancel_unfinished_videos(state).await?;
                myself.stop(Some(job.status.to_string()));
                Ok(())
            }
        }
    }

    async fn handle(
        &self,
        myself: ActorRef<JobMsg>,
        msg: JobMsg,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JobMsg::Event(event) => {
                self.deps.board.taken(myself.get_id());
                self.on_event(&myself, state, event).await
            }
            JobMsg::RetryDiscovery { attempt } => self.discover(&myself, state, attempt).await,
            JobMsg::WatchDiscovery { attempt } => self.watch_discovery(&myself, state, attempt).await,
            JobMsg::SpawnVideo(video_id) => {
                state.pending = state.pending.saturating_sub(1);
                if !state.cancelled {
                    self.spawn_video(&myself, state, video_id, None).await?;
                }
                self.finish_if_done(&myself, state).await
            }
            JobMsg::Cancel => self.cancel(&myself, state).await,
            JobMsg::Resync => {
                self.resend_discovery(state).await;
                for (_, video) in state.children.values() {
                    let _ = video.cast(VideoMsg::Resync);
                }
                Ok(())
            }
            JobMsg::Actors(reply) => {
                let _ = reply.send(self.actors(state));
                Ok(())
            }
        }
    }

    async fn post_stop(&self, myself: ActorRef<JobMsg>, _state: &mut JobState) -> Result<(), ActorProcessingErr> {
        self.deps.board.left(myself.get_id());
        myself.stop_children_and_wait(Some("shutdown".into()), Some(std::time::Duration::from_secs(10))).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<JobMsg>,
        event: SupervisionEvent,
        state: &mut JobState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if state.children.remove(&cell.get_id()).is_some() {
                    self.finish_if_done(&myself, state).await?;
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some((video_id, _)) = state.children.remove(&cell.get_id()) else {
                    tracing::warn!(actor = ?cell.get_id(), %error, "unknown child failed");
                    return Ok(());
                };
                if ownership_lost(&error) {
                    // Another process runs the job now: this one's actors for it stop, all of them.
                    return Err(error);
                }
                let (restart, delay) = state.restarts.next(video_id.clone());
                tracing::info!(job_id = %state.job_id, %video_id, restart, ?delay, %error, "video actor failed; restarting it");
                state.pending += 1;
                myself.send_after(delay, move || JobMsg::SpawnVideo(video_id));
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            #[cfg(feature = "cluster")]
            SupervisionEvent::PidLifecycleEvent(_) => {}
        }
        Ok(())
    }
}

impl JobActor {
    /// Its VideoActors as the board and the restart counts have them, by video.
    fn actors(&self, state: &JobState) -> JobActors {
        let mut actors: Vec<VideoActorLine> = state
            .children
            .iter()
            .map(|(id, (video_id, video))| {
                let entry = self.deps.board.get(*id);
                VideoActorLine {
                    video_id: video_id.to_string(),
                    status: format!("{:?}", video.get_status()).to_lowercase(),
                    stage: entry.and_then(|e| e.stage),
                    restarts: state.restarts.count(video_id),
                    uptime_ms: entry.map_or(0, |e| e.since.elapsed().as_millis() as u64),
                    mailbox: entry.map_or(0, |e| e.waiting),
                }
            })
            .collect();
        actors.sort_by(|a, b| a.video_id.cmp(&b.video_id));
        JobActors { actors, restarting: state.pending }
    }

    async fn discover(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        attempt: u32,
    ) -> Result<(), ActorProcessingErr> {
        let fence = Some(&state.fence);
        self.deps.store.set_job_status_fenced(state.job_id, JobStatus::Discovering, None, fence).await?;
        self.deps.commands.send(StageCommand::new(state.job_id, None, Stage::Discovery, attempt)).await?;
        state.discovery_attempt = Some(attempt);
        myself.send_after(self.deps.settings.silence(), move || JobMsg::WatchDiscovery { attempt });
        Ok(())
    }

    /// Looks at the discovery attempt's record, as a VideoActor does for its stages: a queued or
    /// running discovery is waited for however long; a silent one (its worker died) is retried;
    /// one that ended without its result arriving is asked for again. Looks again later while
    /// the attempt is awaited.
    async fn watch_discovery(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        attempt: u32,
    ) -> Result<(), ActorProcessingErr> {
        if state.discovery_attempt != Some(attempt) {
            return Ok(());
        }
        let silence = self.deps.settings.silence();
        let progress = self.deps.store.attempt_progress(state.job_id, None, Stage::Discovery, attempt, silence).await;
        match progress {
            Ok(AttemptProgress::Silent) => {
                let reason = format!(
                    "the worker running discovery attempt {attempt} stopped answering (no sign of life for {} s)",
                    silence.as_secs_f64()
                );
                return self.discovery_failed(myself, state, attempt, true, reason).await;
            }
            Ok(AttemptProgress::Finished(_)) => self.resend_discovery(state).await,
            Ok(AttemptProgress::Queued | AttemptProgress::Running) => {}
            Err(e) => tracing::warn!(job_id = %state.job_id, error = %e, "could not look at the discovery attempt"),
        }
        myself.send_after(silence, move || JobMsg::WatchDiscovery { attempt });
        Ok(())
    }

    /// Sends the discovery command again, same attempt (discovery is idempotent).
    async fn resend_discovery(&self, state: &JobState) {
        if let Some(attempt) = state.discovery_attempt {
            let command = StageCommand::new(state.job_id, None, Stage::Discovery, attempt);
            if let Err(e) = self.deps.commands.send(command).await {
                tracing::warn!(job_id = %state.job_id, error = %e, "could not re-send discovery");
            }
        }
    }

    async fn on_event(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        event: DomainEvent,
    ) -> Result<(), ActorProcessingErr> {
        let Some(attempt) = state.discovery_attempt else {
            return Ok(());
        };
        match event.payload {
            EventPayload::DiscoveryCompleted { videos } => {
                tracing::info!(job_id = %state.job_id, videos, "discovery completed");
                state.discovery_attempt = None;
                let fence = Some(&state.fence);
                self.deps.store.set_job_status_fenced(state.job_id, JobStatus::Running, None, fence).await?;
                self.run_videos(myself, state).await
            }
            EventPayload::StageFailed { stage: Stage::Discovery, attempt: failed, retryable, reason, .. }
                if failed == attempt =>
            {
                self.discovery_failed(myself, state, attempt, retryable, reason).await
            }
            EventPayload::StageFailed { .. }
            | EventPayload::VideoDiscovered { .. }
            | EventPayload::VideoDownloaded { .. }
            | EventPayload::AudioExtracted { .. }
            | EventPayload::TranscriptionCompleted { .. }
            | EventPayload::SummarizationCompleted { .. }
            | EventPayload::JobFinished { .. } => Ok(()),
        }
    }

    async fn discovery_failed(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        attempt: u32,
        retryable: bool,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        state.discovery_attempt = None;
        let max = self.deps.settings.max_attempts;
        if retryable && attempt < max {
            let delay = self.deps.settings.backoff().delay(attempt);
            tracing::warn!(job_id = %state.job_id, attempt, %reason, ?delay, "discovery failed; will retry");
            myself.send_after(delay, move || JobMsg::RetryDiscovery { attempt: attempt + 1 });
            return Ok(());
        }
        let error = if retryable { format!("discovery failed after {attempt} attempts: {reason}") } else { reason };
        self.finish(myself, state, JobStatus::Failed, Some(error)).await
    }

    /// Spawns a VideoActor for every video with work left (reusing earlier summaries unless forced).
    async fn run_videos(&self, myself: &ActorRef<JobMsg>, state: &mut JobState) -> Result<(), ActorProcessingErr> {
        let videos = self.deps.store.list_videos(state.job_id).await?;
        let fresh: Vec<VideoId> =
            videos.iter().filter(|v| v.status == VideoStatus::Discovered).map(|v| v.video_id.clone()).collect();
        // Summaries other jobs wrote, asked about once for the whole channel.
        let reusable = if state.force || fresh.is_empty() {
            HashSet::new()
        } else {
            self.deps.artifacts.summarized(&fresh).await?
        };
        for video in videos {
            if workflow::is_final(video.status) {
                continue;
            }
            if video.status == VideoStatus::Discovered && reusable.contains(&video.video_id) {
                let to = workflow::on(video.status, VideoEvent::Reuse)?;
                let update = VideoUpdate { status: to, attempts: 0, error: None };
                let fence = Some(&state.fence);
                self.deps.store.update_video_fenced(state.job_id, &video.video_id, &update, fence).await?;
                // Kept for this job while another one finished it: no longer needed here.
                self.deps.stages.media.release(state.job_id, &video.video_id, to);
                continue;
            }
            self.spawn_video(myself, state, video.video_id.clone(), Some(video)).await?;
        }
        self.finish_if_done(myself, state).await
    }

    /// Spawns the video's actor; `record`: the video as just read (else the actor reads it).
    async fn spawn_video(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        video_id: VideoId,
        record: Option<VideoRecord>,
    ) -> Result<(), ActorProcessingErr> {
        let name = video_actor_name(state.job_id, &video_id);
        let actor = VideoActor { deps: self.deps.clone() };
        let args = VideoArgs { job_id: state.job_id, video_id: video_id.clone(), fence: state.fence.clone(), record };
        match Actor::spawn_linked(Some(name), actor, args, myself.get_cell()).await {
            Ok((video_ref, _)) => {
                state.children.insert(video_ref.get_id(), (video_id, video_ref));
            }
            Err(e) => {
                // E.g. the store is briefly unavailable: try again later, like a crash.
                let (_, delay) = state.restarts.next(video_id.clone());
                tracing::warn!(job_id = %state.job_id, %video_id, error = %e, ?delay, "could not start video actor; retrying");
                state.pending += 1;
                myself.send_after(delay, move || JobMsg::SpawnVideo(video_id));
            }
        }
        Ok(())
    }

    async fn finish_if_done(&self, myself: &ActorRef<JobMsg>, state: &mut JobState) -> Result<(), ActorProcessingErr> {
        if !state.children.is_empty() || (state.pending > 0 && !state.cancelled) || state.discovery_attempt.is_some() {
            return Ok(());
        }
        if state.cancelled {
            self.cancel_unfinished_videos(state).await?;
            return self.finish(myself, state, JobStatus::Cancelled, None).await;
        }
        let videos = self.deps.store.list_videos(state.job_id).await?;
        if videos.iter().any(|v| !workflow::is_final(v.status)) {
            // A video with work left and no actor (e.g. after a restart race): drive it.
            for v in videos.into_iter().filter(|v| !workflow::is_final(v.status)) {
                self.spawn_video(myself, state, v.video_id.clone(), Some(v)).await?;
            }
            return Ok(());
        }
        let failed = videos.iter().filter(|v| v.status == VideoStatus::Failed).count();
        let (status, error) = if failed > 0 {
            (JobStatus::CompletedWithErrors, Some(format!("{failed} of {} videos failed", videos.len())))
        } else {
            (JobStatus::Completed, None)
        };
        self.finish(myself, state, status, error).await
    }

    async fn finish(
        &self,
        myself: &ActorRef<JobMsg>,
        state: &mut JobState,
        status: JobStatus,
        error: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        let ended = self.deps.finish_job(state.job_id, status, error.as_deref(), Some(&state.fence)).await?;
        if ended == status {
            tracing::info!(job_id = %state.job_id, %status, "job finished");
        } else {
            tracing::info!(job_id = %state.job_id, %ended, "job had ended already");
        }
        myself.stop(Some(ended.to_string()));
        Ok(())
    }

    /// Cancels the videos of the job that have not ended (those no VideoActor runs), and deletes
    /// their media.
    async fn cancel_unfinished_videos(&self, state: &JobState) -> Result<(), ActorProcessingErr> {
        let job_id = state.job_id;
        for video in self.deps.store.list_videos(job_id).await? {
            if workflow::is_final(video.status) {
                continue;
            }
            let to = workflow::on(video.status, VideoEvent::Cancel)?;
            let update = VideoUpdate { status: to, attempts: video.attempts, error: None };
            self.deps.store.update_video_fenced(job_id, &video.video_id, &update, Some(&state.fence)).await?;
            self.deps.stages.media.release(job_id, &video.video_id, to);
        }
        Ok(())
    }

    /// Cancels the job: every VideoActor cancels its video (in order with the results it is
    /// handling), and the job ends `cancelled` once they have all stopped.
    async fn cancel(&self, myself: &ActorRef<JobMsg>, state: &mut JobState) -> Result<(), ActorProcessingErr> {
        state.cancelled = true;
        state.discovery_attempt = None;
        for (_, video_ref) in state.children.values() {
            let _ = video_ref.cast(VideoMsg::Cancel);
        }
        self.finish_if_done(myself, state).await
    }
}
