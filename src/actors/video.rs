//! VideoActor: one per video of a running job; a thin driver around [`workflow`].
//!
//! On start it reloads the video's persisted record and either dispatches the next stage, or —
//! after a restart — re-dispatches the stage that was in flight with the next attempt number. It
//! takes [`VideoMsg::Event`]s (stage results routed from the event bus), [`VideoMsg::Watch`] (a look
//! at the awaited attempt's record: a command waiting in its queue is never timed out, an attempt
//! whose worker went silent is) and [`VideoMsg::Cancel`]. The stage's own time limit is the
//! worker's, counted from when it starts the stage. On a retryable stage failure it records
//! the error and fails on purpose, so that its JobActor re-spawns it after a backoff; on a permanent
//! failure, or when the attempts are spent, it persists `failed` and stops normally. It stops
//! normally in every final state.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::task::AbortOnDropHandle;

use super::steps::Step;
use super::{Deps, fail};
use crate::domain::workflow::{self, VideoEvent};
use crate::domain::{
    AttemptProgress, DomainEvent, EventPayload, JobId, Stage, StageCommand, VideoId, VideoRecord, VideoStatus,
    VideoUpdate,
};
use crate::ports::Fence;

pub struct VideoActor {
    pub deps: Deps,
}

/// Everything needed to rebuild the actor: a restart is a re-spawn that reloads durable state.
#[derive(Debug, Clone)]
pub struct VideoArgs {
    pub job_id: JobId,
    pub video_id: VideoId,
    /// The job's owner and epoch: every write carries it, and is refused once another process
    /// took the job over (the actor then fails with [`crate::ports::PortError::OwnershipLost`]).
    pub fence: Fence,
    /// The video's record as its JobActor has just read it, for the first start (saves reading
    /// it again); `None` reloads it, as every restart does.
    pub record: Option<VideoRecord>,
}

pub struct VideoState {
    record: VideoRecord,
    fence: Fence,
    /// The stage and attempt whose result is awaited.
    awaiting: Option<(Stage, u32)>,
    /// The [`VideoMsg::Watch`] ticker; stopped with the actor.
    watch: Option<AbortOnDropHandle<()>>,
}

#[derive(Debug)]
#[cfg_attr(feature = "cluster", derive(ractor_cluster::RactorMessage))]
pub enum VideoMsg {
    Event(DomainEvent),
    /// Looks at the awaited attempt's record (every `3 × stages.heartbeat_ms`): queued or running
    /// is fine however long it takes; a silent one lost its worker and is retried; one that ended
    /// without its result arriving is asked for again.
    Watch,
    Cancel,
    /// Results may have been missed: send the awaited stage's command again (same attempt; the
    /// stage is idempotent, so committed work is only reported again).
    Resync,
}

impl Actor for VideoActor {
    type Msg = VideoMsg;
    type State = VideoState;
    type Arguments = VideoArgs;

    async fn pre_start(&self, _myself: ActorRef<VideoMsg>, args: VideoArgs) -> Result<VideoState, ActorProcessingErr> {
        let record = match args.record {
            Some(record) => record,
            None => self
                .deps
                .store
                .get_video(args.job_id, &args.video_id)
                .await?
                .ok_or_else(|| fail(format!("video {} of job {} is not recorded", args.video_id, args.job_id)))?,
        };
        Ok(VideoState { record, fence: args.fence, awaiting: None, watch: None })
    }

    async fn post_start(&self, myself: ActorRef<VideoMsg>, state: &mut VideoState) -> Result<(), ActorProcessingErr> {
        self.deps.board.joined(myself.get_cell());
        let every = self.deps.settings.silence();
        state.watch = Some(AbortOnDropHandle::new(myself.send_interval(every, || VideoMsg::Watch)));
        let result = self.drive(&myself, state).await;
        self.deps.board.stage(myself.get_id(), state.awaiting.map(|(stage, _)| stage));
        result
    }

    async fn handle(
        &self,
        myself: ActorRef<VideoMsg>,
        msg: VideoMsg,
        state: &mut VideoState,
    ) -> Result<(), ActorProcessingErr> {
        let awaited = state.awaiting.map(|(stage, _)| stage);
        let result = match msg {
            VideoMsg::Event(event) => {
                self.deps.board.taken(myself.get_id());
                self.on_event(&myself, state, event).await
            }
            VideoMsg::Watch => self.watch(&myself, state).await,
            VideoMsg::Resync => {
                self.resend(state).await;
                Ok(())
            }
            VideoMsg::Cancel => {
                state.awaiting = None;
                if !workflow::is_final(state.record.status) {
                    self.transition(state, VideoEvent::Cancel, None).await?;
                }
                myself.stop(Some("cancelled".into()));
                Ok(())
            }
        };
        // Only a change goes to the board (most messages are watch ticks that change nothing).
        let awaiting = state.awaiting.map(|(stage, _)| stage);
        if awaiting != awaited {
            self.deps.board.stage(myself.get_id(), awaiting);
        }
        result
    }

    async fn post_stop(&self, myself: ActorRef<VideoMsg>, _state: &mut VideoState) -> Result<(), ActorProcessingErr> {
        self.deps.board.left(myself.get_id());
        Ok(())
    }
}

impl VideoActor {
    /// Moves the video on from where it rests: dispatch the next stage, re-dispatch the one in
    /// flight (after a restart), or stop in a final state.
    async fn drive(&self, myself: &ActorRef<VideoMsg>, state: &mut VideoState) -> Result<(), ActorProcessingErr> {
        let status = state.record.status;
        if workflow::is_final(status) {
            myself.stop(Some(status.to_string()));
            return Ok(());
        }
        let max = self.deps.settings.max_attempts;
        let (stage, in_flight, attempt) = match (workflow::in_flight(status), workflow::next_stage(status)) {
            (Some(stage), _) => {
                // Restarted mid-stage: this is another attempt at it.
                if state.record.attempts >= max {
                    let reason = state.record.error.clone().unwrap_or_else(|| "the stage kept crashing".into());
                    return self.give_up(myself, state, stage, reason).await;
                }
                (stage, status, state.record.attempts + 1)
            }
            (None, Some(stage)) => (stage, workflow::on(status, VideoEvent::Dispatch(stage))?, 1),
            (None, None) => return Err(fail(format!("video in state {status} has nowhere to go"))),
        };
        // The dispatch and its attempt in one write (with the result that led here, when there
        // was one), committed before the command is sent.
        let (before, error) = (state.record.attempts, state.record.error.clone());
        self.persist(state, in_flight, attempt, error.clone()).await?;
        let command = StageCommand::new(state.record.job_id, Some(state.record.video_id.clone()), stage, attempt);
        if let Err(e) = self.deps.steps.time(Step::Dispatch, self.deps.commands.send(command)).await {
            // A broker that is down fails this actor, and the re-spawned one tries the same
            // attempt again: an outage spends no attempts (if this write is lost too, one).
            if let Err(undo) = self.persist(state, in_flight, before, error).await {
                tracing::warn!(video_id = %state.record.video_id, %stage, error = %undo, "could not take the unsent attempt back");
            }
            return Err(e.into());
        }
        state.awaiting = Some((stage, attempt));
        tracing::debug!(video_id = %state.record.video_id, %stage, attempt, "stage dispatched");
        Ok(())
    }

    /// What the awaited attempt's record says; see [`VideoMsg::Watch`].
    async fn watch(&self, myself: &ActorRef<VideoMsg>, state: &mut VideoState) -> Result<(), ActorProcessingErr> {
        let Some((stage, attempt)) = state.awaiting else {
            return Ok(());
        };
        let silence = self.deps.settings.silence();
        let (job_id, video_id) = (state.record.job_id, &state.record.video_id);
        match self.deps.store.attempt_progress(job_id, Some(video_id), stage, attempt, silence).await {
            Ok(AttemptProgress::Queued | AttemptProgress::Running) => Ok(()),
            Ok(AttemptProgress::Silent) => {
                let reason = format!(
                    "the worker running {stage} attempt {attempt} stopped answering (no sign of life for {} s)",
                    silence.as_secs_f64()
                );
                self.on_failure(myself, state, stage, true, reason).await
            }
            Ok(AttemptProgress::Finished(outcome)) => {
                tracing::info!(%video_id, %stage, attempt, %outcome, "the attempt ended but its result never came; asking again");
                self.resend(state).await;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%video_id, %stage, error = %e, "could not look at the running attempt; next time");
                Ok(())
            }
        }
    }

    /// Sends the awaited stage's command again, same attempt: the stage is idempotent, so work
    /// already committed is only reported again.
    async fn resend(&self, state: &VideoState) {
        if let Some((stage, attempt)) = state.awaiting {
            let record = &state.record;
            let command = StageCommand::new(record.job_id, Some(record.video_id.clone()), stage, attempt);
            if let Err(e) = self.deps.commands.send(command).await {
                tracing::warn!(video_id = %record.video_id, %stage, error = %e, "could not re-send the stage");
            }
        }
    }

    async fn on_event(
        &self,
        myself: &ActorRef<VideoMsg>,
        state: &mut VideoState,
        event: DomainEvent,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(transit) = (chrono::Utc::now() - event.occurred_at).to_std() {
            self.deps.steps.record(Step::Deliver, transit);
        }
        let Some((stage, attempt)) = state.awaiting else {
            return Ok(());
        };
        let outcome = match &event.payload {
            EventPayload::VideoDownloaded { captions, reused } if stage == Stage::Download => {
                Some(if *captions || *reused { VideoEvent::TranscriptStored } else { VideoEvent::Succeed(stage) })
            }
            EventPayload::AudioExtracted { .. } if stage == Stage::AudioExtraction => Some(VideoEvent::Succeed(stage)),
            EventPayload::TranscriptionCompleted { .. } if stage == Stage::Transcription => {
                Some(VideoEvent::Succeed(stage))
            }
            EventPayload::SummarizationCompleted { .. } if stage == Stage::Summarization => {
                Some(VideoEvent::Succeed(stage))
            }
            EventPayload::StageFailed { stage: failed, attempt: failed_attempt, redo: Some(redo), reason, .. }
                if *failed == stage && *failed_attempt == attempt =>
            {
                return self.redo(state, stage, *redo, reason.clone()).await;
            }
            EventPayload::StageFailed { stage: failed, attempt: failed_attempt, retryable, reason, redo: None }
                if *failed == stage && *failed_attempt == attempt =>
            {
                return self.on_failure(myself, state, stage, *retryable, reason.clone()).await;
            }
            // Stale or duplicate results (at-least-once delivery) and events of other kinds.
            EventPayload::VideoDiscovered { .. }
            | EventPayload::VideoDownloaded { .. }
            | EventPayload::AudioExtracted { .. }
            | EventPayload::TranscriptionCompleted { .. }
            | EventPayload::SummarizationCompleted { .. }
            | EventPayload::DiscoveryCompleted { .. }
            | EventPayload::StageFailed { .. }
            | EventPayload::JobFinished { .. } => None,
        };
        let Some(outcome) = outcome else {
            return Ok(());
        };
        state.awaiting = None;
        let done = workflow::on(state.record.status, outcome)?;
        if workflow::next_stage(done).is_some() && !workflow::is_final(done) && workflow::in_flight(done).is_none() {
            // The result and the next stage's dispatch in one write: `drive` writes them with
            // the next stage's first attempt, then sends it.
            state.record.status = done;
            state.record.attempts = 0;
            state.record.error = None;
            let driven = self.drive(myself, state).await;
            if state.record.status != done {
                // Written (whether or not the command went out after).
                self.release_if_done_with_media(state, done);
            }
            return driven;
        }
        self.transition(state, outcome, None).await?;
        self.drive(myself, state).await
    }

    async fn on_failure(
        &self,
        myself: &ActorRef<VideoMsg>,
        state: &mut VideoState,
        stage: Stage,
        retryable: bool,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        state.awaiting = None;
        let attempts = state.record.attempts;
        let max = self.deps.settings.max_attempts;
        if !retryable || attempts >= max {
            return self.give_up(myself, state, stage, reason).await;
        }
        tracing::warn!(video_id = %state.record.video_id, %stage, attempt = attempts, %reason, "stage failed; will retry");
        self.persist(state, state.record.status, attempts, Some(reason.clone())).await?;
        // Failing hands the retry to the supervisor: backoff, re-spawn, reload, re-dispatch.
        Err(fail(format!("{stage} attempt {attempts} failed: {reason}")))
    }

    /// What `stage` needs is gone: the video goes back to where `redo` (which makes it) starts,
    /// and the actor fails on purpose, so that its supervisor re-spawns it after a backoff and it
    /// dispatches `redo` as a first attempt.
    async fn redo(
        &self,
        state: &mut VideoState,
        stage: Stage,
        redo: Stage,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        state.awaiting = None;
        let Ok(back) = workflow::on(state.record.status, VideoEvent::Redo(redo)) else {
            // A stage that cannot be redone from here: an ordinary retry of this one.
            let attempts = state.record.attempts;
            self.persist(state, state.record.status, attempts, Some(reason.clone())).await?;
            return Err(fail(format!("{stage} attempt {attempts} failed: {reason}")));
        };
        tracing::warn!(video_id = %state.record.video_id, %stage, %redo, %reason, "input missing; redoing the stage that makes it");
        self.persist(state, back, 0, Some(reason.clone())).await?;
        Err(fail(format!("{stage} needs {redo} again: {reason}")))
    }

    async fn give_up(
        &self,
        myself: &ActorRef<VideoMsg>,
        state: &mut VideoState,
        stage: Stage,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let attempts = state.record.attempts.max(1);
        let error =
            format!("{stage} failed after {attempts} attempt{}: {reason}", if attempts == 1 { "" } else { "s" });
        tracing::warn!(video_id = %state.record.video_id, %stage, %error, "video failed");
        self.transition(state, VideoEvent::GiveUp(stage), Some(error)).await?;
        myself.stop(Some("failed".into()));
        Ok(())
    }

    /// Applies one event of the state machine and persists the result.
    async fn transition(
        &self,
        state: &mut VideoState,
        event: VideoEvent,
        error: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        let to = workflow::on(state.record.status, event)?;
        let attempts = if workflow::is_final(to) { state.record.attempts } else { 0 };
        let error = if to == VideoStatus::Failed { error } else { None };
        self.persist(state, to, attempts, error).await?;
        self.release_if_done_with_media(state, to);
        Ok(())
    }

    /// Lets go of the video's media once it has reached `reached` (recorded first: of jobs
    /// sharing the media, the last to let go sees no other needing it).
    fn release_if_done_with_media(&self, state: &VideoState, reached: VideoStatus) {
        if matches!(reached, VideoStatus::Transcribed | VideoStatus::Failed | VideoStatus::Cancelled) {
            self.deps.stages.media.release(state.record.job_id, &state.record.video_id, reached);
        }
    }

    async fn persist(
        &self,
        state: &mut VideoState,
        status: VideoStatus,
        attempts: u32,
        error: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        let update = VideoUpdate { status, attempts, error };
        let (job_id, video_id) = (state.record.job_id, &state.record.video_id);
        let write = self.deps.store.update_video_fenced(job_id, video_id, &update, Some(&state.fence));
        self.deps.steps.time(Step::Persist, write).await?;
        state.record.status = update.status;
        state.record.attempts = update.attempts;
        state.record.error = update.error;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::actors::testing::{ChildEnd, FnWork, TestPorts, Watcher, eventually_async, next, settings};
    use crate::domain::AttemptOutcome;

    async fn ports() -> TestPorts {
        TestPorts::new(settings(1, 3600), Arc::new(FnWork(|_| async { Ok(Vec::new()) }))).await
    }

    /// Spawns the video's actor under a watcher; returns it with how it ends.
    async fn spawn(
        ports: &TestPorts,
        job_id: JobId,
        video_id: &VideoId,
    ) -> (ActorRef<VideoMsg>, tokio::sync::mpsc::UnboundedReceiver<ChildEnd>, ActorRef<()>) {
        let (watcher, ends) = Watcher::spawn().await;
        let args = VideoArgs { job_id, video_id: video_id.clone(), fence: ports.fence(job_id).await, record: None };
        let actor = VideoActor { deps: ports.deps.clone() };
        let (video, _) = Actor::spawn_linked(None, actor, args, watcher.get_cell()).await.unwrap();
        (video, ends, watcher)
    }

    async fn record(ports: &TestPorts, job_id: JobId, video_id: &VideoId) -> VideoRecord {
        ports.deps.store.get_video(job_id, video_id).await.unwrap().unwrap()
    }

    fn failed(stage: Stage, attempt: u32, retryable: bool) -> EventPayload {
        EventPayload::StageFailed { stage, attempt, retryable, reason: "boom".into(), redo: None }
    }

    #[tokio::test]
    async fn a_new_video_dispatches_download_and_moves_on_with_its_result() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("aaaaaaaaaaa").await;
        let (actor, _ends, watcher) = spawn(&ports, job, &video).await;
        let sent = ports.next_command(Stage::Download).await;
        assert_eq!((sent.attempt, sent.video_id.as_ref()), (1, Some(&video)));
        assert_eq!(record(&ports, job, &video).await.status, VideoStatus::Downloading, "persisted before sending");
        let board = &ports.deps.board;
        let id = actor.get_id();
        let on_board = move |stage| async move { board.get(id).is_some_and(|e| e.stage == Some(stage)) };
        eventually_async("waiting on download, on the board", || on_board(Stage::Download)).await;

        // A result for another attempt or stage is stale: ignored.
        let event = |payload| VideoMsg::Event(DomainEvent::new(job, Some(video.clone()), payload));
        for payload in [
            failed(Stage::Download, 7, false),
            EventPayload::AudioExtracted { seconds: 1.0 },
            EventPayload::VideoDownloaded { captions: false, reused: false },
        ] {
            board.sent(actor.get_id()); // as the router counts what it casts
            actor.cast(event(payload)).unwrap();
        }
        let next_stage = ports.next_command(Stage::AudioExtraction).await;
        assert_eq!(next_stage.attempt, 1);
        let now = record(&ports, job, &video).await;
        assert_eq!((now.status, now.error), (VideoStatus::ExtractingAudio, None), "persisted before sending");
        eventually_async("waiting on audio extraction", || on_board(Stage::AudioExtraction)).await;
        assert_eq!(board.get(actor.get_id()).unwrap().waiting, 0, "each event counted out when handled");
        actor.stop(None);
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_transcript_reused_from_another_job_goes_straight_to_summarization() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("ddddddddddd").await;
        let (actor, _ends, watcher) = spawn(&ports, job, &video).await;
        ports.next_command(Stage::Download).await;
        let reused = EventPayload::VideoDownloaded { captions: false, reused: true };
        actor.cast(VideoMsg::Event(DomainEvent::new(job, Some(video.clone()), reused))).unwrap();
        assert_eq!(ports.next_command(Stage::Summarization).await.attempt, 1);
        assert_eq!(record(&ports, job, &video).await.status, VideoStatus::Summarizing);
        actor.stop(None);
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_restarted_video_sends_its_stage_again_as_the_next_attempt() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("bbbbbbbbbbb").await;
        let update = VideoUpdate { status: VideoStatus::Transcribing, attempts: 1, error: Some("crashed".into()) };
        ports.deps.store.update_video(job, &video, &update).await.unwrap();
        let (actor, _ends, watcher) = spawn(&ports, job, &video).await;
        assert_eq!(ports.next_command(Stage::Transcription).await.attempt, 2);
        assert_eq!(record(&ports, job, &video).await.attempts, 2, "counted before it was sent");
        actor.stop(None);
        watcher.stop(None);
    }

    /// A command bus whose broker is away.
    struct BrokerDown;

    #[async_trait::async_trait]
    impl crate::ports::CommandBus for BrokerDown {
        async fn send(&self, _: StageCommand) -> crate::ports::PortResult<()> {
            Err(crate::ports::PortError::Unavailable("the broker is away".into()))
        }

        async fn consume(&self, _: Stage, _: usize) -> crate::ports::PortResult<crate::ports::DeliveryStream> {
            Err(crate::ports::PortError::Unavailable("the broker is away".into()))
        }
    }

    #[tokio::test]
    async fn a_broker_outage_spends_no_attempt() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("eeeeeeeeeee").await;
        let (watcher, mut ends) = Watcher::spawn().await;
        let deps = Deps { commands: Arc::new(BrokerDown), ..ports.deps.clone() };
        let args = VideoArgs { job_id: job, video_id: video.clone(), fence: ports.fence(job).await, record: None };
        let _ = Actor::spawn_linked(None, VideoActor { deps }, args, watcher.get_cell()).await;
        assert!(matches!(next(&mut ends).await, ChildEnd::Failed(e) if e.contains("the broker is away")));
        let after = record(&ports, job, &video).await;
        assert_eq!((after.status, after.attempts), (VideoStatus::Downloading, 0), "the unsent attempt taken back");
        // The broker is back: the re-spawned actor sends the first attempt.
        let (actor, _ends, _) = spawn(&ports, job, &video).await;
        assert_eq!(ports.next_command(Stage::Download).await.attempt, 1);
        assert_eq!(record(&ports, job, &video).await.attempts, 1, "counted before it was sent");
        actor.stop(None);
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_retryable_failure_fails_the_actor_so_its_supervisor_retries() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("ccccccccccc").await;
        let (actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        ports.next_command(Stage::Download).await;
        actor
            .cast(VideoMsg::Event(DomainEvent::new(job, Some(video.clone()), failed(Stage::Download, 1, true))))
            .unwrap();
        match next(&mut ends).await {
            ChildEnd::Failed(reason) => assert!(reason.contains("download attempt 1 failed: boom"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let kept = record(&ports, job, &video).await;
        assert_eq!((kept.status, kept.attempts, kept.error.as_deref()), (VideoStatus::Downloading, 1, Some("boom")));
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_permanent_failure_fails_the_video_and_the_actor_stops_normally() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("ddddddddddd").await;
        let (actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        ports.next_command(Stage::Download).await;
        actor
            .cast(VideoMsg::Event(DomainEvent::new(job, Some(video.clone()), failed(Stage::Download, 1, false))))
            .unwrap();
        assert_eq!(next(&mut ends).await, ChildEnd::Terminated);
        let kept = record(&ports, job, &video).await;
        assert_eq!(kept.status, VideoStatus::Failed);
        assert_eq!(kept.error.as_deref(), Some("download failed after 1 attempt: boom"));
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_missing_input_sends_the_video_back_to_the_stage_that_makes_it() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("redovideo01").await;
        let update = VideoUpdate { status: VideoStatus::Transcribing, attempts: 2, error: None };
        ports.deps.store.update_video(job, &video, &update).await.unwrap();
        let (actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        assert_eq!(ports.next_command(Stage::Transcription).await.attempt, 3);
        let missing = EventPayload::StageFailed {
            stage: Stage::Transcription,
            attempt: 3,
            retryable: true,
            reason: "the audio of redovideo01 is gone".into(),
            redo: Some(Stage::AudioExtraction),
        };
        actor.cast(VideoMsg::Event(DomainEvent::new(job, Some(video.clone()), missing))).unwrap();
        match next(&mut ends).await {
            ChildEnd::Failed(reason) => assert!(reason.contains("needs audio_extraction again"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let kept = record(&ports, job, &video).await;
        assert_eq!((kept.status, kept.attempts), (VideoStatus::Downloaded, 0), "back before audio extraction");
        assert!(kept.error.unwrap_or_default().contains("is gone"));
        // Re-spawned, as its supervisor does: audio extraction runs again, as a first attempt.
        let (_again, _ends, second) = spawn(&ports, job, &video).await;
        assert_eq!(ports.next_command(Stage::AudioExtraction).await.attempt, 1);
        watcher.stop(None);
        second.stop(None);
    }

    #[tokio::test]
    async fn the_last_attempt_spent_fails_the_video_at_restart() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("eeeeeeeeeee").await;
        let update = VideoUpdate { status: VideoStatus::Summarizing, attempts: 3, error: Some("timed out".into()) };
        ports.deps.store.update_video(job, &video, &update).await.unwrap();
        let (_actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        assert_eq!(next(&mut ends).await, ChildEnd::Terminated);
        let kept = record(&ports, job, &video).await;
        assert_eq!(kept.status, VideoStatus::Failed);
        assert_eq!(kept.error.as_deref(), Some("summarization failed after 3 attempts: timed out"));
        watcher.stop(None);
    }

    #[tokio::test]
    async fn cancel_persists_cancelled_and_stops() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("fffffffffff").await;
        let (actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        ports.next_command(Stage::Download).await;
        actor.cast(VideoMsg::Cancel).unwrap();
        assert_eq!(next(&mut ends).await, ChildEnd::Terminated);
        assert_eq!(record(&ports, job, &video).await.status, VideoStatus::Cancelled);
        watcher.stop(None);
    }

    #[tokio::test]
    async fn a_command_waiting_in_its_queue_is_never_failed() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("queuedvideo").await;
        let (actor, _ends, watcher) = spawn(&ports, job, &video).await;
        // Nobody takes the command: many watch periods pass (3 × 50 ms each), and more looks.
        tokio::time::sleep(ports.deps.settings.silence() * 4).await;
        for _ in 0..3 {
            actor.cast(VideoMsg::Watch).unwrap();
        }
        let event = DomainEvent::new(
            job,
            Some(video.clone()),
            EventPayload::VideoDownloaded { captions: false, reused: false },
        );
        actor.cast(VideoMsg::Event(event)).unwrap();
        assert_eq!(ports.next_command(Stage::Download).await.attempt, 1, "sent once");
        assert_eq!(ports.next_command(Stage::AudioExtraction).await.attempt, 1, "still alive, moved on");
        actor.stop(None);
        watcher.stop(None);
    }

    #[tokio::test]
    async fn an_attempt_whose_worker_went_silent_is_retried() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("silentvideo").await;
        let (_actor, mut ends, watcher) = spawn(&ports, job, &video).await;
        let taken = ports.next_command(Stage::Download).await;
        // A worker took it, then died: no sign of life after the start.
        ports.deps.store.attempt_started(&taken, "a-worker-that-dies").await.unwrap();
        match next(&mut ends).await {
            ChildEnd::Failed(reason) => assert!(reason.contains("stopped answering"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let kept = record(&ports, job, &video).await;
        assert_eq!((kept.status, kept.attempts), (VideoStatus::Downloading, 1), "retried as attempt 2 on restart");
        watcher.stop(None);
    }

    #[tokio::test]
    async fn an_attempt_that_ended_without_its_result_arriving_is_asked_for_again() {
        let ports = ports().await;
        let (job, video) = ports.job_with_video("lostresultv").await;
        let (actor, _ends, watcher) = spawn(&ports, job, &video).await;
        let taken = ports.next_command(Stage::Download).await;
        ports.deps.store.attempt_started(&taken, "a-worker").await.unwrap();
        ports.deps.store.attempt_finished(taken.command_id, AttemptOutcome::Succeeded, None).await.unwrap();
        let again = ports.next_command(Stage::Download).await;
        assert_eq!((again.attempt, again.video_id.as_ref()), (1, Some(&video)), "the same attempt, sent again");
        assert_ne!(again.command_id, taken.command_id);
        actor.stop(None);
        watcher.stop(None);
    }
}
