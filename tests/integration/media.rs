//! A host's media directory shared by jobs: one holder of a video's lock at a time (in a process
//! and across processes), and media deleted only when no unfinished job needs it.

use std::fs::{File, TryLockError};
use std::sync::Arc;
use std::time::Duration;

use tubesum::adapters::embedded::SqliteStore;
use tubesum::domain::{ChannelId, JobId, JobStatus, VideoId, VideoMeta, VideoStatus, VideoUpdate};
use tubesum::ports::JobStore;
use tubesum::stages::media::Media;

use crate::helpers::{poll_until, settings};

async fn media(data: &tempfile::TempDir, env: &[(&str, String)]) -> (Media, Arc<dyn JobStore>) {
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&data.path().join("db.sqlite")).await.unwrap());
    (Media::new(&settings(data, env).stage_settings(), store.clone(), None), store)
}

async fn job_with(store: &dyn JobStore, video: &VideoId) -> JobId {
    let job = JobId::new();
    store.create_job(job, &ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap(), false, None).await.unwrap();
    store.set_job_status(job, JobStatus::Running, None).await.unwrap();
    let meta = VideoMeta::new(video.clone(), "t");
    store.add_videos(job, &[meta]).await.unwrap();
    job
}

fn set(status: VideoStatus) -> VideoUpdate {
    VideoUpdate { status, attempts: 1, error: None }
}

#[tokio::test]
async fn media_is_deleted_only_when_no_other_job_needs_it() {
    let data = tempfile::tempdir().unwrap();
    let (media, store) = media(&data, &[]).await;
    let video = VideoId::parse("aaaaaaaaaaa").unwrap();
    let (a, b) = (job_with(&*store, &video).await, job_with(&*store, &video).await);
    let dir = media.video_dir(&video);
    std::fs::create_dir_all(&dir).unwrap();
    store.update_video(a, &video, &set(VideoStatus::Transcribing)).await.unwrap();
    media.lock(&video).await.unwrap().release(a).await;
    assert!(dir.exists(), "job b has not transcribed it yet");
    store.update_video(b, &video, &set(VideoStatus::Transcribed)).await.unwrap();
    media.lock(&video).await.unwrap().release(a).await;
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_cancelled_videos_media_is_deleted_a_failed_ones_kept_when_asked() {
    let video = VideoId::parse("aaaaaaaaaaa").unwrap();
    for (keep_failed, status, kept) in
        [(true, VideoStatus::Failed, true), (true, VideoStatus::Cancelled, false), (false, VideoStatus::Failed, false)]
    {
        let data = tempfile::tempdir().unwrap();
        let env = [("TUBESUM_DOWNLOAD__KEEP_FAILED_MEDIA", keep_failed.to_string())];
        let (media, store) = media(&data, &env).await;
        let job = job_with(&*store, &video).await;
        let dir = media.video_dir(&video);
        std::fs::create_dir_all(&dir).unwrap();
        store.update_video(job, &video, &set(status)).await.unwrap();
        // Held: the deletion waits for the lock.
        let held = media.lock(&video).await.unwrap();
        media.release(job, &video, status);
        assert!(dir.exists());
        drop(held);
        if kept {
            // Nothing to wait for: taking the lock after the discard shows it did not delete.
            drop(media.lock(&video).await.unwrap());
            assert!(dir.exists(), "kept for debugging");
        } else {
            assert!(poll_until(Duration::from_secs(10), || async { !dir.exists() }).await, "{status} media deleted");
        }
    }
}

#[tokio::test]
async fn one_holder_at_a_time_in_this_process_and_across_processes() {
    let data = tempfile::tempdir().unwrap();
    let (media, _) = media(&data, &[]).await;
    let video = VideoId::parse("aaaaaaaaaaa").unwrap();
    let held = media.lock(&video).await.unwrap();
    let waiting = tokio::spawn({
        let (media, video) = (media.clone(), video.clone());
        async move { media.lock(&video).await.map(|_| ()) }
    });
    // Another process's view: its own open of the lock file cannot take the lock.
    let lock_file = settings(&data, &[]).stage_settings().media_dir.join(".locks/aaaaaaaaaaa");
    let other = File::options().write(true).open(&lock_file).unwrap();
    assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "a second holder in this process waits");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    // And a holder in another process keeps this one waiting until it lets go.
    other.try_lock().expect("free once every holder let go");
    let blocked = tokio::spawn({
        let (media, video) = (media.clone(), video.clone());
        async move { media.lock(&video).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!blocked.is_finished(), "waits for the other process");
    other.unlock().unwrap();
    tokio::time::timeout(Duration::from_secs(10), blocked).await.unwrap().unwrap().unwrap();
}

/// The holder that deletes a video's media deletes its lock file too: a process waiting on the
/// old file must end up holding the current one, not a lock nobody else can see.
#[tokio::test]
async fn a_waiter_holds_the_current_lock_file_after_the_media_was_deleted() {
    let data = tempfile::tempdir().unwrap();
    let (media, store) = media(&data, &[]).await;
    // A second process on the same host: its own in-process locks, the same directory.
    let other_process = Media::new(&settings(&data, &[]).stage_settings(), store.clone(), None);
    let video = VideoId::parse("aaaaaaaaaaa").unwrap();
    let job = job_with(&*store, &video).await;
    std::fs::create_dir_all(media.video_dir(&video)).unwrap();
    let held = media.lock(&video).await.unwrap();
    let waiting = tokio::spawn({
        let video = video.clone();
        async move { other_process.lock(&video).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    store.update_video(job, &video, &set(VideoStatus::Transcribed)).await.unwrap();
    held.release(job).await;
    assert!(!media.video_dir(&video).exists());
    let now_held = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    let lock_file = settings(&data, &[]).stage_settings().media_dir.join(".locks/aaaaaaaaaaa");
    let third = File::options().create(true).truncate(false).write(true).open(&lock_file).unwrap();
    assert!(matches!(third.try_lock(), Err(TryLockError::WouldBlock)), "the waiter holds the file at the path");
    drop(now_held);
    third.try_lock().unwrap();
}
