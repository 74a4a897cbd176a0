//! One conformance suite per port, run against every implementation: the embedded adapters in their
//! unit tests, the production ones against live servers in `tests/integration/adapters/`. Each
//! function panics on the first broken contract. Compiled for tests and with the `test-support`
//! feature.

mod webhooks;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::StreamExt;

use super::{ArtifactStore, CommandBus, Delivery, DeliveryStream, EventBus, Finish, JobStore, PortError};
use crate::domain::{
    AttemptOutcome, AttemptProgress, ChannelId, DomainEvent, EventPayload, JobId, JobStatus, KeyPoint, Segment, Stage,
    StageCommand, Summary, Transcript, TranscriptSource, VideoId, VideoMeta, VideoStatus, VideoUpdate,
};

pub use webhooks::webhook_store;

fn video(id: &str, title: &str) -> VideoMeta {
    VideoMeta {
        video_id: VideoId::parse(id).expect("valid id"),
        title: title.into(),
        published_at: Some(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()),
        duration_secs: Some(125),
    }
}

pub async fn job_store(store: &dyn JobStore) {
    search_index(store).await;
    let channel = ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap();
    let job = JobId::new();
    let created = store.create_job(job, &channel, true, None).await.expect("create");
    assert_eq!(created.status, JobStatus::Pending);
    assert!(created.force);
    assert!(store.create_job(job, &channel, false, None).await.is_err(), "duplicate job id accepted");
    assert!(store.get_job(JobId::new()).await.unwrap().is_none());

    store.set_job_status(job, JobStatus::Discovering, Some("feed unavailable")).await.unwrap();
    let got = store.get_job(job).await.unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Discovering);
    assert_eq!(got.error.as_deref(), Some("feed unavailable"));
    assert!(matches!(store.set_job_status(JobId::new(), JobStatus::Failed, None).await, Err(PortError::NotFound(_))));
    store.set_job_status(job, JobStatus::Running, None).await.unwrap();
    final_statuses_stay(store, &channel).await;
    assert!(store.claimable_jobs().await.unwrap().contains(&job), "an unfinished, unheld job");

    let videos = [video("aaaaaaaaaaa", "First & <best>"), video("bbbbbbbbbbb", "Second")];
    store.add_videos(job, &videos).await.unwrap();
    // Idempotent: a redelivered discovery neither duplicates nor resets videos.
    let a = &videos[0].video_id;
    let update = VideoUpdate { status: VideoStatus::Downloading, attempts: 2, error: Some("timeout".into()) };
    store.update_video(job, a, &update).await.unwrap();
    store.add_videos(job, &videos).await.unwrap();
    let listed = store.list_videos(job).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].video_id, *a, "discovery order kept");
    assert_eq!(listed[0].title, "First & <best>");
    assert_eq!(listed[0].status, VideoStatus::Downloading);
    assert_eq!(listed[0].attempts, 2);
    assert_eq!(listed[0].error.as_deref(), Some("timeout"));
    assert_eq!(listed[0].published_at, videos[0].published_at);
    assert_eq!(listed[0].duration_secs, Some(125), "the listing's duration kept");
    assert_eq!(listed[1].status, VideoStatus::Discovered);
    let one = store.get_video(job, a).await.unwrap().unwrap();
    assert_eq!(one, listed[0]);
    assert!(store.get_video(JobId::new(), a).await.unwrap().is_none());
    let missing = VideoId::parse("zzzzzzzzzzz").unwrap();
    assert!(store.update_video(job, &missing, &update).await.is_err());

    // A listing is written at once: a video it names twice keeps its first place, and a listing
    // without dates or durations leaves them empty.
    let other = JobId::new();
    store.create_job(other, &channel, false, None).await.unwrap();
    let bare = VideoMeta::new(VideoId::parse("eeeeeeeeeee").unwrap(), "Bare");
    store.add_videos(other, &[videos[1].clone(), bare, videos[1].clone(), videos[0].clone()]).await.unwrap();
    let listed = store.list_videos(other).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|v| v.video_id.as_str()).collect();
    assert_eq!(ids, ["bbbbbbbbbbb", "eeeeeeeeeee", "aaaaaaaaaaa"]);
    assert_eq!((listed[1].published_at, listed[1].duration_secs), (None, None));
    assert_eq!((listed[2].published_at, listed[2].duration_secs), (videos[0].published_at, Some(125)));

    // Pages of a job's videos, filtered by status; counts per status cover them all.
    // (A redelivered discovery that found two more: the first two are left as they are.)
    let all = [videos[0].clone(), videos[1].clone(), video("ccccccccccc", "Third"), video("ddddddddddd", "Fourth")];
    store.add_videos(job, &all).await.unwrap();
    let ids =
        |page: Vec<crate::domain::VideoRecord>| page.into_iter().map(|v| v.video_id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(store.videos_page(job, None, 2, 1).await.unwrap()), ["bbbbbbbbbbb", "ccccccccccc"]);
    assert!(store.videos_page(job, None, 2, 10).await.unwrap().is_empty(), "past the end");
    let discovered = store.videos_page(job, Some(VideoStatus::Discovered), 2, 1).await.unwrap();
    assert_eq!(ids(discovered), ["ccccccccccc", "ddddddddddd"], "the filter before the page");
    let downloading = store.videos_page(job, Some(VideoStatus::Downloading), 10, 0).await.unwrap();
    assert_eq!(ids(downloading), ["aaaaaaaaaaa"]);
    let mut counts = store.video_counts(job).await.unwrap();
    counts.by_status.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(counts.by_status, [(VideoStatus::Discovered, 3), (VideoStatus::Downloading, 1)]);
    assert_eq!(counts.total(), 4);
    assert!(store.video_counts(JobId::new()).await.unwrap().by_status.is_empty());
    // Every update of any of the job's videos is one more change, even one that leaves the
    // counts as they were.
    let before = counts.changes;
    let same = VideoUpdate { status: VideoStatus::Downloading, attempts: 2, error: None };
    store.update_video(job, a, &same).await.unwrap();
    let after = store.video_counts(job).await.unwrap();
    assert_eq!((after.total(), after.changes), (4, before + 1));
    // The job and its counts in one read: the same as the two reads.
    let (read, mut together) = store.job_with_counts(job).await.unwrap().expect("the job");
    let mut after = after;
    together.by_status.sort_by_key(|(status, _)| status.as_str());
    after.by_status.sort_by_key(|(status, _)| status.as_str());
    assert_eq!((Some(read), together), (store.get_job(job).await.unwrap(), after));
    assert!(store.job_with_counts(JobId::new()).await.unwrap().is_none(), "no such job");

    // Listing: newest first, paginated, with the total.
    let second = JobId::new();
    store.create_job(second, &channel, false, None).await.unwrap();
    let (_, none) = store.job_with_counts(second).await.unwrap().expect("a job without videos");
    assert_eq!((none.total(), none.changes), (0, 0), "a job without videos has no counts");
    let (page, total) = store.list_jobs(None, 1, 0).await.unwrap();
    assert!(total >= 2);
    assert_eq!(page.len(), 1);
    let (all, _) = store.list_jobs(None, 100, 0).await.unwrap();
    let pos = |id| all.iter().position(|j| j.job_id == id).unwrap();
    assert!(pos(second) < pos(job), "newest first");
    // One channel's jobs only.
    let elsewhere = ChannelId::parse(&format!("UC{}", &JobId::new().to_string().replace('-', "")[..22])).unwrap();
    let third = JobId::new();
    store.create_job(third, &elsewhere, false, None).await.unwrap();
    let (theirs, counted) = store.list_jobs(Some(&elsewhere), 100, 0).await.unwrap();
    assert_eq!((theirs.iter().map(|j| j.job_id).collect::<Vec<_>>(), counted), (vec![third], 1));
    let (ours, counted) = store.list_jobs(Some(&channel), 100, 0).await.unwrap();
    assert!(ours.iter().all(|j| j.channel_id == channel) && ours.len() as u64 == counted && counted >= 2);
    store.set_job_status(job, JobStatus::Completed, None).await.unwrap();
    assert!(!store.claimable_jobs().await.unwrap().contains(&job), "a final job");

    leases(store, &channel).await;
    attempts(store, &channel).await;
    media_users(store, &channel).await;
}

/// The jobs that still need a video's media: unfinished, and the video not transcribed or ended.
async fn media_users(store: &dyn JobStore, channel: &ChannelId) {
    let shared = video("mmmmmmmmmmm", "Shared by three jobs");
    let id = &shared.video_id;
    let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
    for job in [a, b, c] {
        store.create_job(job, channel, false, None).await.unwrap();
        store.set_job_status(job, JobStatus::Running, None).await.unwrap();
        store.add_videos(job, std::slice::from_ref(&shared)).await.unwrap();
    }
    let mut users = store.jobs_needing_media(id).await.unwrap();
    users.sort();
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(users, all);
    let set = |status| VideoUpdate { status, attempts: 1, error: None };
    store.update_video(a, id, &set(VideoStatus::Transcribed)).await.unwrap();
    store.update_video(b, id, &set(VideoStatus::Transcribing)).await.unwrap();
    assert_eq!(store.jobs_needing_media(id).await.unwrap().len(), 2, "a transcribed video needs no media");
    store.set_job_status(c, JobStatus::Cancelled, None).await.unwrap();
    assert_eq!(store.jobs_needing_media(id).await.unwrap(), [b], "an ended job needs none");
    store.update_video(b, id, &set(VideoStatus::Failed)).await.unwrap();
    assert!(store.jobs_needing_media(id).await.unwrap().is_empty());
}

/// A job ends once: its final status is never overwritten, by a status or by another ending.
async fn final_statuses_stay(store: &dyn JobStore, channel: &ChannelId) {
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    let ending = |status| DomainEvent::new(job, None, EventPayload::JobFinished { status });
    let first = store.finish_job(job, JobStatus::Completed, None, &ending(JobStatus::Completed)).await.unwrap();
    assert!(matches!(first, Finish::WithEvent | Finish::StatusOnly), "{first:?}");
    let second = store.finish_job(job, JobStatus::Cancelled, None, &ending(JobStatus::Cancelled)).await.unwrap();
    assert_eq!(second, Finish::AlreadyFinal(JobStatus::Completed), "a late cancel does not undo completed");
    let err = store.set_job_status(job, JobStatus::Running, None).await.unwrap_err();
    assert!(matches!(err, PortError::Stale(_)), "{err}");
    assert_eq!(store.get_job(job).await.unwrap().unwrap().status, JobStatus::Completed);
    let missing = JobId::new();
    let err = store.finish_job(missing, JobStatus::Failed, None, &ending(JobStatus::Failed)).await.unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err}");
}

/// Job ownership: one live lease per unfinished job; an expired or released one may be taken.
/// Each change of owner is a new epoch, and writes made under an older fence are refused.
async fn leases(store: &dyn JobStore, channel: &ChannelId) {
    let long = Duration::from_secs(600);
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    assert!(store.claimable_jobs().await.unwrap().contains(&job), "a new job is claimable");
    let a1 = store.claim_job(job, "node-a", long).await.unwrap().expect("claimed");
    assert_eq!(a1.owner, "node-a");
    let again = store.claim_job(job, "node-a", long).await.unwrap().expect("the holder may extend its lease");
    assert_eq!(again, a1, "extending is the same epoch");
    assert!(store.claim_job(job, "node-b", long).await.unwrap().is_none(), "a live lease is exclusive");
    assert!(!store.claimable_jobs().await.unwrap().contains(&job));
    assert!(store.claim_job(JobId::new(), "node-a", long).await.unwrap().is_none(), "a missing job");
    assert_eq!(store.renew_leases("node-a", long).await.unwrap(), vec![job]);
    assert!(store.renew_leases("node-b", long).await.unwrap().is_empty());

    // Created held (submitted to node-a): nobody else claims it, and node-a's claim keeps its epoch.
    let held = JobId::new();
    store.create_job(held, channel, false, Some(("node-a", long))).await.unwrap();
    assert!(!store.claimable_jobs().await.unwrap().contains(&held), "a job created held is not claimable");
    assert!(store.claim_job(held, "node-b", long).await.unwrap().is_none(), "created held is exclusive");
    let first = store.claim_job(held, "node-a", long).await.unwrap().expect("its holder claims it");
    assert_eq!(store.claim_job(held, "node-a", long).await.unwrap(), Some(first));
    store.set_job_status(held, JobStatus::Cancelled, None).await.unwrap();

    // Released: another node takes it at once, at a new epoch.
    store.release_job(job, "node-b").await.unwrap();
    assert!(store.claim_job(job, "node-b", long).await.unwrap().is_none(), "only the holder releases");
    store.release_job(job, "node-a").await.unwrap();
    assert!(store.claimable_jobs().await.unwrap().contains(&job));
    let b2 = store.claim_job(job, "node-b", Duration::ZERO).await.unwrap().expect("released: claimable");
    assert!(b2.epoch > a1.epoch, "a new owner, a new epoch: {b2:?} after {a1:?}");

    // Expired (node-b stopped renewing): node-a takes it over, and node-b learns it lost it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.claimable_jobs().await.unwrap().contains(&job) {
        assert!(std::time::Instant::now() < deadline, "a zero-length lease never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let a3 = store.claim_job(job, "node-a", long).await.unwrap().expect("expired: claimable");
    assert!(a3.epoch > b2.epoch);
    assert!(store.renew_leases("node-b", long).await.unwrap().is_empty());
    fencing(store, job, &a1, &b2, &a3).await;

    // A final job is neither claimable nor renewed.
    store.set_job_status(job, JobStatus::Cancelled, None).await.unwrap();
    assert!(store.renew_leases("node-a", long).await.unwrap().is_empty());
    assert!(store.claim_job(job, "node-a", long).await.unwrap().is_none());
    assert!(!store.claimable_jobs().await.unwrap().contains(&job));
    membership(store, channel).await;
}

fn node(name: &str, incarnation: &str, stages: &[Stage]) -> crate::domain::NodeRecord {
    crate::domain::NodeRecord {
        name: name.into(),
        node: crate::domain::NodeRecord::node_id(name, incarnation),
        http_addr: Some(format!("http://{name}:8080")),
        cluster_addr: None,
        version: "0.1.0".into(),
        stages: stages.to_vec(),
        started_at: Utc::now(),
        heartbeat_at: Utc::now(),
    }
}

/// Nodes register and beat; a node that registers again (it restarted) replaces its earlier
/// incarnation, whose job leases can be claimed at once, however long they still run.
async fn membership(store: &dyn JobStore, channel: &ChannelId) {
    let long = Duration::from_secs(3600);
    let (first, other) = (node("alpha", "one", &[Stage::Download, Stage::Transcription]), node("beta", "one", &[]));
    store.register_node(&first).await.unwrap();
    store.register_node(&other).await.unwrap();
    assert!(store.node_heartbeat(&first.node).await.unwrap());
    let (nodes, now) = store.list_nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["alpha", "beta"]);
    let alpha = &nodes[0];
    assert_eq!((alpha.node.as_str(), alpha.incarnation()), ("alpha#one", "one"));
    assert_eq!((&alpha.stages, &alpha.http_addr), (&first.stages, &first.http_addr));
    assert!(now >= alpha.heartbeat_at - chrono::Duration::seconds(1), "the store's clock ages heartbeats");

    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    store.claim_job(job, &first.node, long).await.unwrap().expect("unheld");
    assert!(store.claim_job(job, &other.node, long).await.unwrap().is_none(), "alpha#one holds it");
    assert!(!store.claimable_jobs().await.unwrap().contains(&job));
    let leases = store.job_leases(None).await.unwrap();
    let lease = leases.iter().find(|l| l.job_id == job).expect("listed");
    assert_eq!(lease.owner.as_deref(), Some("alpha#one"));
    assert!(lease.left.unwrap() > Duration::from_secs(3000), "{lease:?}");
    let one: Vec<_> = store.job_leases(Some(job)).await.unwrap().into_iter().map(|l| (l.job_id, l.owner)).collect();
    assert_eq!(one, [(job, lease.owner.clone())], "one job's lease alone");
    assert!(store.job_leases(Some(JobId::new())).await.unwrap().is_empty());

    // alpha restarts: its old incarnation is gone, and so is its hold on the job.
    let again = node("alpha", "two", &[]);
    store.register_node(&again).await.unwrap();
    assert!(!store.node_heartbeat(&first.node).await.unwrap(), "the old incarnation has no row");
    let (nodes, _) = store.list_nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["alpha#two", "beta#one"]);
    assert!(store.claimable_jobs().await.unwrap().contains(&job));
    let taken = store.claim_job(job, &other.node, long).await.unwrap().expect("the replaced owner's lease yields");
    assert!(store.claim_job(job, &again.node, long).await.unwrap().is_none(), "beta#one holds it now");
    assert!(taken.epoch >= 2);

    assert_eq!(store.forget_nodes(None, long).await.unwrap(), 0, "nobody silent that long");
    assert_eq!(store.forget_nodes(Some(&again.node), long).await.unwrap(), 1);
    assert_eq!(store.list_nodes().await.unwrap().0.len(), 1);
    store.set_job_status(job, JobStatus::Cancelled, None).await.unwrap();
}

/// Writes for a job under a fence pass only while it holds: the current owner's do; those under
/// an older epoch (node-a's first claim, node-b's) are refused as ownership lost and change nothing.
async fn fencing(store: &dyn JobStore, job: JobId, a1: &super::Fence, b2: &super::Fence, a3: &super::Fence) {
    let lost = |r: Result<_, PortError>| matches!(r, Err(PortError::OwnershipLost(_)));
    let video = video("fffffffffff", "Fenced");
    store.add_videos(job, std::slice::from_ref(&video)).await.unwrap();
    let id = &video.video_id;
    let update = |status| VideoUpdate { status, attempts: 1, error: None };
    store.update_video_fenced(job, id, &update(VideoStatus::Downloading), Some(a3)).await.unwrap();
    for stale in [a1, b2] {
        let r = store.update_video_fenced(job, id, &update(VideoStatus::Failed), Some(stale)).await;
        assert!(lost(r), "a stale fence ({stale:?}) wrote a video");
        let r = store.set_job_status_fenced(job, JobStatus::Running, None, Some(stale)).await;
        assert!(lost(r), "a stale fence ({stale:?}) set the job's status");
        let ending = DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Failed });
        let r = store.finish_job_fenced(job, JobStatus::Failed, None, &ending, Some(stale)).await;
        assert!(matches!(r, Err(PortError::OwnershipLost(_))), "a stale fence ({stale:?}) ended the job: {r:?}");
    }
    let row = store.get_video(job, id).await.unwrap().unwrap();
    assert_eq!(row.status, VideoStatus::Downloading, "nothing the stale writers sent landed");
    assert_eq!(store.get_job(job).await.unwrap().unwrap().status, JobStatus::Pending);
    store.set_job_status_fenced(job, JobStatus::Running, None, Some(a3)).await.unwrap();
    let missing = VideoId::parse("zzzzzzzzzzz").unwrap();
    let r = store.update_video_fenced(job, &missing, &update(VideoStatus::Failed), Some(a3)).await;
    assert!(matches!(r, Err(PortError::NotFound(_))), "a missing video under a good fence: {r:?}");
}

/// Stage attempts: who took a command and how it ended; a redelivery overwrites.
async fn attempts(store: &dyn JobStore, channel: &ChannelId) {
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    let first = StageCommand::new(job, None, Stage::Discovery, 1);
    store.attempt_started(&first, "node-a").await.unwrap();
    let second = StageCommand::new(job, Some(VideoId::parse("ddddddddddd").unwrap()), Stage::Download, 2);
    store.attempt_started(&second, "node-a").await.unwrap();
    store.attempt_started(&second, "node-b").await.unwrap();
    store.attempt_finished(first.command_id, AttemptOutcome::Succeeded, None).await.unwrap();
    store.attempt_finished(second.command_id, AttemptOutcome::Failed, Some("HTTP 403")).await.unwrap();
    let rows = store.list_attempts(job).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let by_id = |id| rows.iter().find(|r| r.command_id == id).unwrap();
    let a = by_id(first.command_id);
    assert_eq!((a.stage, a.attempt, a.video_id.as_ref()), (Stage::Discovery, 1, None));
    assert_eq!((a.outcome, a.claimed_by.as_str()), (Some(AttemptOutcome::Succeeded), "node-a"));
    assert!(a.finished_at.is_some_and(|f| f >= a.started_at));
    let b = by_id(second.command_id);
    assert_eq!(b.video_id, second.video_id);
    assert_eq!((b.stage, b.attempt), (Stage::Download, 2));
    assert_eq!(b.claimed_by, "node-b", "the redelivery's taker");
    assert_eq!((b.outcome, b.error.as_deref()), (Some(AttemptOutcome::Failed), Some("HTTP 403")));
    assert!(store.list_attempts(JobId::new()).await.unwrap().is_empty());
    let (page, total) = store.attempts_page(job, 1, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2), "a page of the attempts, and how many in all");
    assert_eq!(page[0].command_id, rows[1].command_id, "the same order as the whole list");
    assert_eq!(store.attempts_page(job, 5, 7).await.unwrap(), (Vec::new(), 2), "past the end: still the total");
    progress(store, channel).await;
    interrupted(store, channel).await;
    taking(store, channel).await;
}

/// A worker takes a command only while it is wanted, and records its attempt in the same step.
async fn taking(store: &dyn JobStore, channel: &ChannelId) {
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    let (a, b) = (VideoId::parse("jjjjjjjjjjj").unwrap(), VideoId::parse("kkkkkkkkkkk").unwrap());
    let discovery = StageCommand::new(job, None, Stage::Discovery, 1);
    assert!(!store.take_command(&discovery, "node-a").await.unwrap(), "discovery of a job not discovering");
    store.set_job_status(job, JobStatus::Discovering, None).await.unwrap();
    assert!(store.take_command(&discovery, "node-a").await.unwrap(), "discovery of a discovering job");
    store.add_videos(job, &[video(a.as_str(), "a"), video(b.as_str(), "b")]).await.unwrap();
    store.set_job_status(job, JobStatus::Running, None).await.unwrap();
    let waiting = VideoUpdate { status: VideoStatus::Downloading, attempts: 2, error: None };
    store.update_video(job, &a, &waiting).await.unwrap();
    let command = |video: &VideoId, stage, attempt| StageCommand::new(job, Some(video.clone()), stage, attempt);
    let current = command(&a, Stage::Download, 2);
    let superseded = [
        command(&a, Stage::Download, 1),        // a later attempt was sent
        command(&a, Stage::AudioExtraction, 2), // the video waits on another stage
        command(&b, Stage::Download, 1),        // the video is not in flight
        command(&VideoId::parse("lllllllllll").unwrap(), Stage::Download, 1), // no such video
        StageCommand::new(JobId::new(), Some(a.clone()), Stage::Download, 2), // no such job
    ];
    for stale in &superseded {
        assert!(!store.take_command(stale, "node-a").await.unwrap(), "{stale:?} taken");
    }
    assert!(store.take_command(&current, "node-a").await.unwrap());
    assert!(store.take_command(&current, "node-b").await.unwrap(), "a redelivery of a wanted command");
    assert!(store.take_command(&command(&a, Stage::Download, 3), "node-a").await.unwrap(), "a later attempt");
    let rows = store.list_attempts(job).await.unwrap();
    let recorded: Vec<_> = rows.iter().map(|r| (r.command_id, r.claimed_by.as_str())).collect();
    assert_eq!(recorded.len(), 3, "only the wanted ones recorded: {rows:?}");
    assert!(recorded.contains(&(current.command_id, "node-b")), "{recorded:?}");
    store.set_job_status(job, JobStatus::Cancelled, None).await.unwrap();
    assert!(!store.take_command(&command(&a, Stage::Download, 4), "node-a").await.unwrap(), "its job ended");
}

/// Attempts left open are closed as interrupted: those of a stopping process, and silent ones.
async fn interrupted(store: &dyn JobStore, channel: &ChannelId) {
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    let started = |id: &str| StageCommand::new(job, Some(VideoId::parse(id).unwrap()), Stage::Download, 1);
    let (stopping, silent, live, done) =
        (started("fffffffffff"), started("ggggggggggg"), started("hhhhhhhhhhh"), started("iiiiiiiiiii"));
    let owner = format!("stopping-{}", uuid::Uuid::now_v7());
    store.attempt_started(&stopping, &owner).await.unwrap();
    for command in [&silent, &live, &done] {
        store.attempt_started(command, "elsewhere").await.unwrap();
    }
    store.attempt_finished(done.command_id, AttemptOutcome::Succeeded, None).await.unwrap();
    let outcome = |rows: &[crate::domain::AttemptRecord], id| {
        let row = rows.iter().find(|r| r.command_id == id).unwrap();
        (row.outcome, row.error.clone())
    };
    let epoch = chrono::DateTime::UNIX_EPOCH;
    assert_eq!(store.interrupt_attempts(Some(&owner), epoch, "stopped").await.unwrap(), 1, "only its own");
    let rows = store.list_attempts(job).await.unwrap();
    assert_eq!(outcome(&rows, stopping.command_id), (Some(AttemptOutcome::Interrupted), Some("stopped".into())));
    assert_eq!(outcome(&rows, silent.command_id), (None, None));

    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.attempt_heartbeat(live.command_id).await.unwrap();
    assert_eq!(store.interrupt_attempts(None, cutoff, "died").await.unwrap(), 1, "only the silent one");
    let rows = store.list_attempts(job).await.unwrap();
    assert_eq!(outcome(&rows, silent.command_id), (Some(AttemptOutcome::Interrupted), Some("died".into())));
    assert_eq!(outcome(&rows, live.command_id), (None, None), "a sign of life since");
    assert_eq!(outcome(&rows, done.command_id).0, Some(AttemptOutcome::Succeeded), "an ended one stays");
}

/// An attempt's progress: queued however long, running while its worker gives signs of life,
/// silent when they stop, finished once it ended a while ago.
async fn progress(store: &dyn JobStore, channel: &ChannelId) {
    let job = JobId::new();
    store.create_job(job, channel, false, None).await.unwrap();
    let video = VideoId::parse("eeeeeeeeeee").unwrap();
    let (long, none) = (Duration::from_secs(600), Duration::ZERO);
    let of = |attempt, silence| store.attempt_progress(job, Some(&video), Stage::Transcription, attempt, silence);
    assert_eq!(of(1, none).await.unwrap(), AttemptProgress::Queued, "not taken: queued, never silent");
    let command = StageCommand::new(job, Some(video.clone()), Stage::Transcription, 1);
    store.attempt_started(&command, "node-a").await.unwrap();
    assert_eq!(of(1, long).await.unwrap(), AttemptProgress::Running);
    assert_eq!(of(2, long).await.unwrap(), AttemptProgress::Queued, "another attempt");
    let discovery = store.attempt_progress(job, None, Stage::Transcription, 1, long).await.unwrap();
    assert_eq!(discovery, AttemptProgress::Queued, "a job-level attempt is another one");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(of(1, none).await.unwrap(), AttemptProgress::Silent);
    store.attempt_heartbeat(command.command_id).await.unwrap();
    let beat = store.list_attempts(job).await.unwrap()[0].heartbeat_at.expect("a heartbeat");
    assert!(beat >= store.list_attempts(job).await.unwrap()[0].started_at);
    assert_eq!(of(1, long).await.unwrap(), AttemptProgress::Running);
    store.attempt_finished(command.command_id, AttemptOutcome::Succeeded, None).await.unwrap();
    assert_eq!(of(1, long).await.unwrap(), AttemptProgress::Running, "just ended: its result may be on its way");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(of(1, none).await.unwrap(), AttemptProgress::Finished(AttemptOutcome::Succeeded));
}

pub async fn artifact_store(store: &dyn ArtifactStore) {
    let id = VideoId::parse("ccccccccccc").unwrap();
    assert!(store.get_transcript(&id).await.unwrap().is_none());
    assert!(store.get_summary(&id).await.unwrap().is_none());
    // A multi-megabyte transcript round-trips.
    let segments: Vec<Segment> = (0..20_000)
        .map(|i| Segment {
            start: f64::from(i), end: f64::from(i) + 0.5, text: format!("segment number {i} ünïcode")
        })
        .collect();
    let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
    let transcript = Transcript {
        video_id: id.clone(),
        source: TranscriptSource::Whisper,
        language: Some("en".into()),
        text,
        segments,
        job_id: JobId::new(),
    };
    store.put_transcript(&transcript).await.unwrap();
    assert_eq!(store.get_transcript(&id).await.unwrap().as_ref(), Some(&transcript));
    // Putting again replaces (idempotent by video id).
    let mut newer = transcript.clone();
    newer.source = TranscriptSource::Captions;
    newer.segments.truncate(1);
    store.put_transcript(&newer).await.unwrap();
    store.put_transcript(&newer).await.unwrap();
    assert_eq!(store.get_transcript(&id).await.unwrap(), Some(newer));

    let summary = Summary {
        video_id: id.clone(),
        summary: "It is about bees.".into(),
        key_points: vec![KeyPoint { text: "Bees".into(), start: 12.5, url: "u".into() }],
        summarizer: "textrank".into(),
        job_id: JobId::new(),
    };
    store.put_summary(&summary).await.unwrap();
    store.put_summary(&summary).await.unwrap();
    assert_eq!(store.get_summary(&id).await.unwrap(), Some(summary));

    artifacts_of_many_videos_at_once(store).await;
}

/// What a store that batches many callers' puts and gets (or answers each alone) must keep: each
/// caller's own answer, the later of one caller's two puts, and `summarized` over a whole channel.
async fn artifacts_of_many_videos_at_once(store: &dyn ArtifactStore) {
    let ids: Vec<VideoId> = (0..300).map(|i| VideoId::parse(&format!("many{i:07}")).unwrap()).collect();
    let job_id = JobId::new();
    let transcript = |id: &VideoId, version: u32| Transcript {
        video_id: id.clone(),
        source: TranscriptSource::Whisper,
        language: None,
        text: format!("{id} version {version}"),
        segments: vec![Segment { start: 0.0, end: 1.0, text: format!("{id}") }],
        job_id,
    };
    let summary = |id: &VideoId| Summary {
        video_id: id.clone(),
        summary: format!("about {id}"),
        key_points: vec![],
        summarizer: "textrank".into(),
        job_id,
    };
    // Every video's two puts in order, all videos at once; summaries for the even ones only.
    let puts = ids.iter().enumerate().map(|(i, id)| async move {
        store.put_transcript(&transcript(id, 1)).await?;
        store.put_transcript(&transcript(id, 2)).await?;
        if i % 2 == 0 {
            store.put_summary(&summary(id)).await?;
        }
        Ok::<_, PortError>(())
    });
    for put in futures::future::join_all(puts).await {
        put.expect("put");
    }
    let missing = VideoId::parse("neverput000").unwrap();
    let asked: Vec<&VideoId> = ids.iter().chain([&missing]).chain(ids.iter().take(3)).collect();
    let gets = asked.iter().map(|id| async move { (store.get_transcript(id).await, store.get_summary(id).await) });
    for (id, (got_transcript, got_summary)) in asked.iter().zip(futures::future::join_all(gets).await) {
        let (got_transcript, got_summary) = (got_transcript.expect("get"), got_summary.expect("get"));
        if *id == &missing {
            assert_eq!((got_transcript, got_summary), (None, None), "nothing was put for {id}");
            continue;
        }
        assert_eq!(got_transcript, Some(transcript(id, 2)), "the later put wins");
        let even = ids.iter().position(|i| i == *id).unwrap() % 2 == 0;
        assert_eq!(got_summary, even.then(|| summary(id)), "{id}'s own summary");
    }
    let summarized = store.summarized(&asked.iter().map(|id| (*id).clone()).collect::<Vec<_>>()).await.unwrap();
    let expected: std::collections::HashSet<VideoId> = ids.iter().step_by(2).cloned().collect();
    assert_eq!(summarized, expected, "exactly the videos with a summary");
    assert!(store.summarized(&[]).await.unwrap().is_empty());
}

pub async fn command_bus(bus: &dyn CommandBus) {
    let job = JobId::new();
    let mut stream = bus.consume(Stage::Download, 4).await.expect("consume");
    let first = StageCommand::new(job, Some(VideoId::parse("ddddddddddd").unwrap()), Stage::Download, 1);
    bus.send(first.clone()).await.unwrap();
    let got = next_within(&mut stream).await;
    assert_eq!(got.command, first);
    // A nack with requeue redelivers the same command.
    got.acker.nack(true, "try again").await.unwrap();
    let again = next_within(&mut stream).await;
    assert_eq!(again.command.command_id, first.command_id);
    again.acker.ack().await.unwrap();
    // Other stages' queues are separate.
    let other = StageCommand::new(job, None, Stage::Discovery, 1);
    bus.send(other.clone()).await.unwrap();
    let mut discovery = bus.consume(Stage::Discovery, 1).await.unwrap();
    let got = next_within(&mut discovery).await;
    assert_eq!(got.command, other);
    got.acker.ack().await.unwrap();
}

pub async fn event_bus(bus: &dyn EventBus) {
    let mut a = bus.subscribe().await.unwrap();
    let mut b = bus.subscribe().await.unwrap();
    let event = DomainEvent::new(
        JobId::new(),
        Some(VideoId::parse("eeeeeeeeeee").unwrap()),
        EventPayload::VideoDownloaded { captions: false, reused: false },
    );
    bus.publish(event.clone()).await.unwrap();
    for stream in [&mut a, &mut b] {
        let got = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("event ok");
        assert_eq!(got, event, "every subscriber sees every event");
    }
}

async fn next_within(stream: &mut DeliveryStream) -> Delivery {
    tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("delivery within 10 s")
        .expect("stream open")
        .expect("delivery ok")
}

/// A body of `len` bytes in chunks of `chunk` bytes, with the bytes themselves.
fn media_body(len: usize, chunk: usize) -> (Vec<u8>, super::ByteStream) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<std::io::Result<bytes::Bytes>> =
        bytes.chunks(chunk.max(1)).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    (bytes, Box::pin(futures::stream::iter(chunks)))
}

async fn read_all(mut body: super::ByteStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.expect("a chunk"));
    }
    all
}

fn media_info(file_name: &str, size: usize, sha256: &str) -> super::MediaInfo {
    super::MediaInfo { file_name: file_name.into(), size: size as u64, sha256: sha256.into() }
}

pub async fn media_store(store: &dyn super::MediaStore) {
    let (a, b) = (VideoId::parse("mediaaaaaaa").unwrap(), VideoId::parse("mediabbbbbb").unwrap());
    assert!(store.open(&a, "source").await.unwrap().is_none(), "nothing stored yet");
    // A few megabytes in odd-sized chunks round-trip, with what was recorded of them.
    let (bytes, body) = media_body(3 * 1024 * 1024 + 17, 100_003);
    let info = media_info("source.webm", bytes.len(), "aa");
    store.put(&a, "source", &info, body).await.unwrap();
    let (got, body) = store.open(&a, "source").await.unwrap().expect("stored");
    assert_eq!(got, info);
    assert!(read_all(body).await == bytes, "the contents changed on the way");
    // Kinds and videos are apart; an empty file is a file.
    let (_, empty) = media_body(0, 1);
    store.put(&a, "audio", &media_info("audio.wav", 0, "bb"), empty).await.unwrap();
    let (small, body) = media_body(10, 3);
    store.put(&b, "source", &media_info("source.m4a", 10, "cc"), body).await.unwrap();
    let (got, body) = store.open(&a, "audio").await.unwrap().expect("stored");
    assert_eq!((got.file_name.as_str(), got.size), ("audio.wav", 0));
    assert!(read_all(body).await.is_empty());
    // The latest put wins.
    let (newer, body) = media_body(5, 2);
    store.put(&b, "source", &media_info("source.mp4", 5, "dd"), body).await.unwrap();
    let (got, body) = store.open(&b, "source").await.unwrap().expect("stored");
    assert_eq!(got.file_name, "source.mp4");
    assert_eq!(read_all(body).await, newer);
    assert_ne!(newer, small);
    // A put whose body fails part-way stores nothing and leaves the earlier file as it was.
    let failing: super::ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"partial")),
        Err(std::io::Error::other("the disk went away")),
    ]));
    assert!(store.put(&b, "source", &media_info("source.ogg", 99, "ee"), failing).await.is_err());
    assert_eq!(store.open(&b, "source").await.unwrap().expect("kept").0.file_name, "source.mp4");
    // Deleting a video deletes its files only.
    assert_eq!(store.delete(&a).await.unwrap(), 2);
    assert!(store.open(&a, "source").await.unwrap().is_none());
    assert!(store.open(&a, "audio").await.unwrap().is_none());
    assert!(store.open(&b, "source").await.unwrap().is_some());
    assert_eq!(store.delete(&a).await.unwrap(), 0, "deleting again is fine");
    assert_eq!(store.delete(&b).await.unwrap(), 1, "the replaced file is gone already");

    // Many videos released at once (a store may answer them together): each caller is told its
    // own video's count, a video deleted twice at once is deleted once, and a video not asked
    // about keeps its files.
    let videos: Vec<VideoId> = (0..40).map(|i| VideoId::parse(&format!("mediamany{i:02}")).unwrap()).collect();
    for (i, video) in videos.iter().enumerate() {
        for kind in ["source", "audio"].iter().take(1 + i % 2) {
            let (_, body) = media_body(3, 3);
            store.put(video, kind, &media_info("f", 3, "ff"), body).await.unwrap();
        }
    }
    let (kept, doomed) = videos.split_last().unwrap();
    let deleting = doomed.iter().chain(&doomed[..5]).map(|v| store.delete(v));
    let counts = futures::future::join_all(deleting).await.into_iter().map(Result::unwrap).collect::<Vec<_>>();
    for (i, video) in doomed.iter().enumerate() {
        let twice = if i < 5 { counts[doomed.len() + i] } else { 0 };
        assert_eq!(counts[i] + twice, 1 + i as u64 % 2, "{video}: one delete of the two got its files");
        assert!(store.open(video, "source").await.unwrap().is_none(), "{video} deleted");
    }
    assert!(store.open(kept, "source").await.unwrap().is_some(), "a video nobody released keeps its media");
    assert_eq!(store.delete(kept).await.unwrap(), 1 + (videos.len() as u64 - 1) % 2);
}

/// The search index: stemmed words, phrases, exclusions, one channel, ranked hits with marked
/// snippets; indexing a video's passages again replaces them.
async fn search_index(store: &dyn JobStore) {
    use crate::domain::search::{IndexedVideo, MATCH_END, MATCH_START, Passage, PassageKind, SearchQuery};
    // A channel of this run's own: the database may hold other runs' passages.
    let random = JobId::new().to_string().replace('-', "");
    let channel = ChannelId::parse(&format!("UC{}", &random[random.len() - 22..])).unwrap();
    let video = |id: &str, title: &str| IndexedVideo {
        video_id: VideoId::parse(&format!("{id}{}", &random[..11 - id.len()])).unwrap(),
        channel_id: channel.clone(),
        title: title.into(),
    };
    let passage = |start: f64, text: &str| Passage { start, text: text.into() };
    let (bees, bikes) = (video("bee", "Bees"), video("bike", "Bicycles"));
    let bee_transcript = [
        passage(0.0, "Honey bees make honey from the nectar of flowers."),
        passage(4.5, "A hive may hold tens of thousands of bees."),
    ];
    store.index_passages(&bees, PassageKind::Transcript, &bee_transcript).await.unwrap();
    let bee_summary = [passage(0.0, "Bees make honey."), passage(4.5, "A hive holds thousands of bees.")];
    store.index_passages(&bees, PassageKind::Summary, &bee_summary).await.unwrap();
    let bike_transcript = [
        passage(0.0, "Bicycles were invented in the nineteenth century."),
        passage(7.25, "Early bicycles had no pedals."),
    ];
    store.index_passages(&bikes, PassageKind::Transcript, &bike_transcript).await.unwrap();

    let search = |text: &str, limit: u32| {
        let query = SearchQuery { text: text.into(), channel: Some(channel.clone()), limit, any: false };
        async move { store.search(&query).await.unwrap() }
    };
    let hits = search("nectar", 10).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!((&hits[0].video_id, hits[0].kind, hits[0].start), (&bees.video_id, PassageKind::Transcript, 0.0));
    assert_eq!((hits[0].title.as_str(), &hits[0].channel_id), ("Bees", &channel));
    let marked = format!("{MATCH_START}nectar{MATCH_END}");
    assert!(hits[0].snippet.contains(&marked), "the match is marked: {:?}", hits[0].snippet);

    let hits = search("pedal bicycle", 10).await;
    let found: Vec<(&VideoId, f64)> = hits.iter().map(|h| (&h.video_id, h.start)).collect();
    assert_eq!(found, [(&bikes.video_id, 7.25)], "stemmed words, all of them");
    let hits = search("\"tens of thousands\"", 10).await;
    assert_eq!(hits.iter().map(|h| h.start).collect::<Vec<_>>(), [4.5], "a phrase: {hits:?}");
    let hits = search("bees -hive", 10).await;
    assert!(hits.len() == 2 && hits.iter().all(|h| h.start == 0.0 && h.video_id == bees.video_id), "{hits:?}");
    let hits = search("bees", 10).await;
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].rank >= w[1].rank), "best first: {hits:?}");
    assert_eq!(search("bees", 3).await.len(), 3, "the limit");
    assert!(search("-- * \"", 10).await.is_empty(), "nothing to look for");
    let elsewhere = SearchQuery {
        text: "nectar".into(),
        channel: Some(ChannelId::parse("UCzzzzzzzzzzzzzzzzzzzzzz").unwrap()),
        limit: 10,
        any: false,
    };
    // Any of the words: passages with either, those with more of them first.
    let any = SearchQuery { text: "pedals nectar".into(), channel: Some(channel.clone()), limit: 10, any: true };
    let either: Vec<f64> = store.search(&any).await.unwrap().iter().map(|h| h.start).collect();
    assert!(either.len() == 2 && either.contains(&7.25) && either.contains(&0.0), "{either:?}");
    assert!(store.search(&elsewhere).await.unwrap().is_empty(), "another channel's");

    // Indexed again: what it held is replaced, the other kind kept.
    store.index_passages(&bees, PassageKind::Transcript, &[passage(2.0, "Wasps do not make honey.")]).await.unwrap();
    assert!(search("nectar", 10).await.is_empty());
    let honey: Vec<(PassageKind, f64)> = search("honey", 10).await.iter().map(|h| (h.kind, h.start)).collect();
    assert_eq!(honey.len(), 2, "{honey:?}");
    assert!(honey.contains(&(PassageKind::Transcript, 2.0)) && honey.contains(&(PassageKind::Summary, 0.0)));
}

/// Subscriptions: one per channel; one poller at a time (leased); a poll and its job are one write,
/// refused to a process that does not hold the lease.
pub async fn subscription_store<S: JobStore + super::SubscriptionStore>(store: &S) {
    use crate::domain::subscriptions::{PollOutcome, Validators};
    let channel = ChannelId::parse("UCsubscribedsubscribedsu").unwrap();
    let long = Duration::from_secs(600);
    let sub = store.create_subscription(&channel, Duration::from_secs(300), false).await.unwrap();
    assert_eq!((sub.interval_secs, sub.backfill, sub.polls), (300, false, 0));
    assert!(sub.last_polled_at.is_none() && sub.seen.is_empty() && sub.owner.is_none());
    let err = store.create_subscription(&channel, Duration::from_secs(60), true).await.unwrap_err();
    assert!(matches!(err, PortError::AlreadyExists(_)), "{err}");
    let id = sub.subscription_id;
    assert_eq!(store.list_subscriptions().await.unwrap().len(), 1);

    // Leased: one holder at a time; a poll is recorded only by the holder.
    assert!(store.claimable_subscriptions().await.unwrap().contains(&id));
    assert!(store.claim_subscription(id, "node-a", long).await.unwrap());
    assert!(!store.claim_subscription(id, "node-b", long).await.unwrap(), "a live lease is exclusive");
    assert!(!store.claimable_subscriptions().await.unwrap().contains(&id));
    let first = sub.read_feed(
        vec![video("aaaaaaaaaaa", "old")],
        Validators { etag: Some("\"v1\"".into()), last_modified: Some("Wed, 01 May 2024 12:00:00 GMT".into()) },
        JobId::new(),
    );
    let err = store.record_poll(id, "node-b", long, &first).await.unwrap_err();
    assert!(matches!(err, PortError::OwnershipLost(_)), "{err}");
    store.record_poll(id, "node-a", long, &first).await.unwrap();
    let sub = store.get_subscription(id).await.unwrap().unwrap();
    assert_eq!(sub.last_outcome, Some(PollOutcome::Baseline));
    assert_eq!(sub.validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(sub.seen, [VideoId::parse("aaaaaaaaaaa").unwrap()]);
    assert!(sub.last_polled_at.is_some() && sub.polls == 1 && sub.jobs == 0);
    assert_eq!(sub.owner.as_deref(), Some("node-a"));

    // New uploads: the job, running, held by the poller, with exactly those videos.
    let job = JobId::new();
    let second = sub.read_feed(
        vec![video("bbbbbbbbbbb", "new"), video("aaaaaaaaaaa", "old")],
        Validators { etag: Some("\"v2\"".into()), last_modified: None },
        job,
    );
    store.record_poll(id, "node-a", long, &second).await.unwrap();
    let record = store.get_job(job).await.unwrap().expect("the poll's job");
    assert_eq!((record.status, record.force, &record.channel_id), (JobStatus::Running, false, &channel));
    let videos = store.list_videos(job).await.unwrap();
    assert_eq!(videos.iter().map(|v| v.video_id.as_str()).collect::<Vec<_>>(), ["bbbbbbbbbbb"]);
    let leases = store.job_leases(Some(job)).await.unwrap();
    assert_eq!(leases[0].owner.as_deref(), Some("node-a"), "the poller holds the job");
    let sub = store.get_subscription(id).await.unwrap().unwrap();
    assert_eq!((sub.polls, sub.jobs, sub.last_job_id), (2, 1, Some(job)));
    assert_eq!(sub.seen.len(), 2);

    // A failure counts up and keeps what was seen; a success clears it.
    store.record_poll(id, "node-a", long, &sub.unchanged(PollOutcome::Failed, Some("boom".into()))).await.unwrap();
    let failed = store.get_subscription(id).await.unwrap().unwrap();
    assert_eq!((failed.failures, failed.last_error.as_deref()), (1, Some("boom")));
    assert_eq!((failed.seen.len(), failed.validators.etag.as_deref()), (2, Some("\"v2\"")));
    store.record_poll(id, "node-a", long, &failed.unchanged(PollOutcome::NotModified, None)).await.unwrap();
    let ok = store.get_subscription(id).await.unwrap().unwrap();
    assert_eq!((ok.failures, ok.last_error.as_deref(), ok.last_outcome), (0, None, Some(PollOutcome::NotModified)));

    // A poll asked for is reported once by the holder's renewal.
    assert!(store.request_poll(id).await.unwrap());
    assert_eq!(store.renew_subscription_leases("node-a", long).await.unwrap(), [(id, true)]);
    assert_eq!(store.renew_subscription_leases("node-a", long).await.unwrap(), [(id, false)]);
    assert!(store.renew_subscription_leases("node-b", long).await.unwrap().is_empty());

    // Released, then run out: another takes it; the old holder's polls are refused.
    store.release_subscription(id, "node-a").await.unwrap();
    assert!(store.claim_subscription(id, "node-b", Duration::ZERO).await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.claimable_subscriptions().await.unwrap().contains(&id) {
        assert!(std::time::Instant::now() < deadline, "a zero-length lease never ran out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = store.record_poll(id, "node-b", long, &ok.unchanged(PollOutcome::Unchanged, None)).await.unwrap_err();
    assert!(matches!(err, PortError::OwnershipLost(_)), "a run-out lease records nothing: {err}");
    assert!(store.claim_subscription(id, "node-a", long).await.unwrap());

    assert!(store.delete_subscription(id).await.unwrap());
    assert!(!store.delete_subscription(id).await.unwrap());
    assert!(store.get_subscription(id).await.unwrap().is_none());
    assert!(!store.request_poll(id).await.unwrap());
    let err = store.record_poll(id, "node-a", long, &ok.unchanged(PollOutcome::Unchanged, None)).await.unwrap_err();
    assert!(matches!(err, PortError::NotFound(_)), "{err}");
}
