//! A host's media: `data_dir/media/{video_id}` holds a video's download and extracted audio, shared
//! by every job of this host that wants the video. Whoever touches it holds the video's lock — in
//! this process a keyed async mutex, across processes on the host an exclusive lock on
//! `media/.locks/{video_id}` — so one (video, stage) runs at a time however many jobs or attempts
//! want it, and the media is never deleted under a stage that reads it. It is deleted once no
//! unfinished job needs it any more (the store says which do).

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use super::StageError;
use super::settings::StageSettings;
use crate::domain::{JobId, VideoId, VideoStatus};
use crate::ports::JobStore;

/// How often a lock held by another process is tried again.
const RETRY_LOCK: Duration = Duration::from_millis(100);

/// This host's media directory and its locks; cheap to clone.
#[derive(Clone)]
pub struct Media {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    keep_media: bool,
    keep_failed: bool,
    store: Arc<dyn JobStore>,
    held: Mutex<HashMap<VideoId, Weak<tokio::sync::Mutex<()>>>>,
}

/// The exclusive right to a video's media on this host; released when dropped.
pub struct MediaLock {
    media: Media,
    video_id: VideoId,
    _file: File,
    _local: OwnedMutexGuard<()>,
}

impl Media {
    pub fn new(settings: &StageSettings, store: Arc<dyn JobStore>) -> Self {
        let download = &settings.download;
        let keep_failed = download.keep_media || download.keep_failed_media;
        Self::with(settings.media_dir.clone(), download.keep_media, keep_failed, store)
    }

    /// Media in `dir`, deleted as soon as no job needs it.
    pub fn in_dir(dir: PathBuf, store: Arc<dyn JobStore>) -> Self {
        Self::with(dir, false, false, store)
    }

    fn with(dir: PathBuf, keep_media: bool, keep_failed: bool, store: Arc<dyn JobStore>) -> Self {
        Self { inner: Arc::new(Inner { dir, keep_media, keep_failed, store, held: Mutex::default() }) }
    }

    /// `data_dir/media/{video_id}`.
    pub fn video_dir(&self, video_id: &VideoId) -> PathBuf {
        self.inner.dir.join(video_id.as_str())
    }

    /// Waits for the video's lock: first among this process's tasks, then among the host's processes.
    pub async fn lock(&self, video_id: &VideoId) -> Result<MediaLock, StageError> {
        let local = self.local_mutex(video_id).lock_owned().await;
        let file = lock_file(&self.lock_path(video_id)).await?;
        Ok(MediaLock { media: self.clone(), video_id: video_id.clone(), _file: file, _local: local })
    }

    fn lock_path(&self, video_id: &VideoId) -> PathBuf {
        self.inner.dir.join(".locks").join(video_id.as_str())
    }

    fn local_mutex(&self, video_id: &VideoId) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mutex) = held.get(video_id).and_then(Weak::upgrade) {
            return mutex;
        }
        held.retain(|_, weak| weak.strong_count() > 0);
        let mutex = Arc::new(tokio::sync::Mutex::new(()));
        held.insert(video_id.clone(), Arc::downgrade(&mutex));
        mutex
    }

    /// `job_id` is done with the video's media, the video being `status` there (e.g. it failed, was
    /// cancelled or reused an earlier summary): the media is deleted (in the background, once the
    /// lock is free) unless another job still needs it, or the video failed and
    /// `download.keep_failed_media` (or `keep_media`) keeps it for debugging.
    pub fn release(&self, job_id: JobId, video_id: &VideoId, status: VideoStatus) {
        let inner = &self.inner;
        if inner.keep_media || (status == VideoStatus::Failed && inner.keep_failed) {
            return;
        }
        // Nothing of the video on this host (stages that keep no media, a video another job
        // finished): no lock to take, no store to ask.
        if !self.video_dir(video_id).exists() && !self.lock_path(video_id).exists() {
            return;
        }
        let (media, video_id) = (self.clone(), video_id.clone());
        tokio::spawn(async move {
            match media.lock(&video_id).await {
                Ok(lock) => lock.release(job_id).await,
                Err(e) => tracing::warn!(%video_id, error = %e, "could not lock media to delete it"),
            }
        });
    }
}

impl MediaLock {
    pub fn video_dir(&self) -> PathBuf {
        self.media.video_dir(&self.video_id)
    }

    /// `job_id` is done with the media: it is deleted unless another unfinished job needs it (or
    /// `download.keep_media` keeps everything).
    pub async fn release(self, job_id: JobId) {
        let inner = &self.media.inner;
        if inner.keep_media {
            return;
        }
        let video_id = &self.video_id;
        match inner.store.jobs_needing_media(video_id).await {
            Ok(jobs) if jobs.iter().any(|j| *j != job_id) => {
                tracing::debug!(%video_id, jobs = jobs.len(), "media kept for other jobs");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%video_id, error = %e, "could not tell whether other jobs need the media; kept");
                return;
            }
        }
        let path = self.video_dir();
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => tracing::debug!(%video_id, %job_id, "media deleted"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(%video_id, path = %path.display(), error = %e, "could not delete media");
                return;
            }
        }
        // Deleted while held: whoever waits on it takes the lock again on a new file.
        let _ = tokio::fs::remove_file(self.media.lock_path(video_id)).await;
    }
}

/// Takes an exclusive lock on `path` (created if missing), retrying while another process holds
/// it. The holder that deletes a video's media deletes its lock file too, so a lock taken on a
/// file no longer at `path` is let go and taken again on the current one.
async fn lock_file(path: &Path) -> Result<File, StageError> {
    use std::os::unix::fs::MetadataExt;
    let io = |e: std::io::Error| StageError::Retryable(format!("locking {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    loop {
        let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io)?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => tokio::time::sleep(RETRY_LOCK).await,
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let held = file.metadata().map_err(io)?;
        match std::fs::metadata(path) {
            Ok(current) if current.dev() == held.dev() && current.ino() == held.ino() => return Ok(file),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
}

/// A per-attempt working directory inside a video's media directory, removed when dropped (also
/// when the attempt is stopped): what a stage makes lands in the media directory only by rename.
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub async fn create(video_dir: &Path, attempt: &uuid::Uuid) -> Result<Self, StageError> {
        let path = video_dir.join(format!(".attempt-{attempt}"));
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| StageError::Retryable(format!("creating {}: {e}", path.display())))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_work_dir_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let work = WorkDir::create(dir.path(), &uuid::Uuid::now_v7()).await.unwrap();
        std::fs::write(work.path().join("source.webm.part"), b"x").unwrap();
        let path = work.path().to_owned();
        drop(work);
        assert!(!path.exists());
    }
}
