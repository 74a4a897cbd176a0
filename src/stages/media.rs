//! A host's media: `data_dir/media/{video_id}` holds a video's download and extracted audio, shared
//! by every job of this host that wants the video. Whoever touches it holds the video's lock — in
//! this process a keyed async mutex, across processes on the host an exclusive lock on
//! `media/.locks/{video_id}` — so one (video, stage) runs at a time however many jobs or attempts
//! want it, and the media is never deleted under a stage that reads it. It is deleted once no
//! unfinished job needs it any more (the store says which do).
//!
//! Where the nodes have disks of their own, media travels between stages through a shared
//! [`MediaStore`] (production: MongoDB): a stage publishes what it made, and the next one,
//! on whichever node, fetches it when it is not on its own disk — streamed, then checked against
//! the size and SHA-256 its maker recorded. The local directory is then a cache, trimmed to
//! `download.media_cache_mb` (least recently used first). Media the shared store lost is
//! [`StageError::Missing`]: the stage that makes it runs again.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedMutexGuard;

use super::StageError;
use super::settings::StageSettings;
use crate::domain::{JobId, Stage, VideoId, VideoStatus};
use crate::ports::{JobStore, MediaInfo, MediaStore};

/// How often a lock held by another process is tried again.
const RETRY_LOCK: Duration = Duration::from_millis(100);
/// The read size when hashing and streaming media files.
const CHUNK: usize = 256 * 1024;

/// What a video's media directory holds, each made by one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// The download (`source.<ext>`).
    Source,
    /// The extracted 16 kHz mono WAV (`audio.wav`).
    Audio,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Source => "source",
            MediaKind::Audio => "audio",
        }
    }

    /// The stage that makes it.
    pub fn made_by(self) -> Stage {
        match self {
            MediaKind::Source => Stage::Download,
            MediaKind::Audio => Stage::AudioExtraction,
        }
    }

    /// Where it is in a video's media directory, if it is there (complete).
    pub async fn local(self, video_dir: &Path) -> Option<PathBuf> {
        match self {
            MediaKind::Source => super::download::source_file(video_dir).await,
            MediaKind::Audio => {
                let path = super::audio::audio_path(video_dir);
                tokio::fs::try_exists(&path).await.unwrap_or(false).then_some(path)
            }
        }
    }
}

/// What this process moved through the shared media store since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaTraffic {
    pub stored_files: u64,
    pub stored_bytes: u64,
    pub fetched_files: u64,
    pub fetched_bytes: u64,
}

#[derive(Default)]
struct Traffic {
    stored_files: AtomicU64,
    stored_bytes: AtomicU64,
    fetched_files: AtomicU64,
    fetched_bytes: AtomicU64,
}

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
    /// Where media travels between nodes; None when this host's directory is the only copy.
    shared: Option<Arc<dyn MediaStore>>,
    /// The bound of the local directory, in bytes, when `shared` is set.
    cache_bytes: u64,
    traffic: Traffic,
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
    /// The media directory of the settings; `shared`, when given, carries media between nodes.
    pub fn new(settings: &StageSettings, store: Arc<dyn JobStore>, shared: Option<Arc<dyn MediaStore>>) -> Self {
        let download = &settings.download;
        let keep_failed = download.keep_media || download.keep_failed_media;
        let inner = Inner {
            dir: settings.media_dir.clone(),
            keep_media: download.keep_media,
            keep_failed,
            store,
            shared,
            cache_bytes: download.media_cache_mb.saturating_mul(1024 * 1024),
            traffic: Traffic::default(),
            held: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Media in `dir` only, deleted as soon as no job needs it.
    pub fn in_dir(dir: PathBuf, store: Arc<dyn JobStore>) -> Self {
        let inner = Inner {
            dir,
            keep_media: false,
            keep_failed: false,
            store,
            shared: None,
            cache_bytes: u64::MAX,
            traffic: Traffic::default(),
            held: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// What this process moved through the shared media store so far.
    pub fn traffic(&self) -> MediaTraffic {
        let t = &self.inner.traffic;
        MediaTraffic {
            stored_files: t.stored_files.load(Ordering::Relaxed),
            stored_bytes: t.stored_bytes.load(Ordering::Relaxed),
            fetched_files: t.fetched_files.load(Ordering::Relaxed),
            fetched_bytes: t.fetched_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether media travels through a shared store (the local directory is a cache).
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
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
        // Nothing of the video on this host and no shared copy (stages that keep no media, a
        // video another job finished): no lock to take, no store to ask.
        if !self.is_shared() && !self.video_dir(video_id).exists() && !self.lock_path(video_id).exists() {
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
        if let Some(shared) = &inner.shared {
            match shared.delete(video_id).await {
                Ok(n) => tracing::debug!(%video_id, files = n, "shared media deleted"),
                Err(e) => tracing::warn!(%video_id, error = %e, "could not delete the shared media"),
            }
        }
        // Deleted while held: whoever waits on it takes the lock again on a new file.
        let _ = tokio::fs::remove_file(self.media.lock_path(video_id)).await;
    }

    /// Makes `path`, the video's `kind` just made in its directory, available to the other nodes
    /// (a no-op without a shared store). Streamed: hashed in one pass, uploaded in another.
    pub async fn publish(&self, kind: MediaKind, path: &Path) -> Result<(), StageError> {
        let Some(shared) = &self.media.inner.shared else {
            return Ok(());
        };
        let (size, sha256) = hash_file(path).await?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let info = MediaInfo { file_name, size, sha256 };
        let file = tokio::fs::File::open(path).await.map_err(|e| io(path, e))?;
        let body = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, CHUNK));
        shared.put(&self.video_id, kind.as_str(), &info, body).await.map_err(|e| {
            StageError::Retryable(format!("storing the {} of {} in the media store: {e}", kind.as_str(), self.video_id))
        })?;
        let traffic = &self.media.inner.traffic;
        traffic.stored_files.fetch_add(1, Ordering::Relaxed);
        traffic.stored_bytes.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(video_id = %self.video_id, kind = kind.as_str(), bytes = size, "media published");
        self.media.trim(&self.video_id).await;
        Ok(())
    }

    /// Whether the shared store holds the video's `kind` (false without one).
    pub async fn has_shared(&self, kind: MediaKind) -> Result<bool, StageError> {
        let Some(shared) = &self.media.inner.shared else {
            return Ok(false);
        };
        Ok(shared.open(&self.video_id, kind.as_str()).await?.is_some())
    }

    /// The video's `kind` on this host's disk: where it is, or fetched from the shared store and
    /// checked against what its maker recorded. [`StageError::Missing`] when the shared store lost
    /// it too; without a shared store, media not here is a permanent failure.
    pub async fn fetch(&self, kind: MediaKind) -> Result<PathBuf, StageError> {
        let dir = self.video_dir();
        if let Some(path) = kind.local(&dir).await {
            return Ok(path);
        }
        let missing = || StageError::Missing {
            redo: kind.made_by(),
            reason: format!("the {} of {} is gone (not here, nor in a media store)", kind.as_str(), self.video_id),
        };
        let Some(shared) = &self.media.inner.shared else {
            // Without a shared store, running the maker again could land on another disk again.
            return Err(StageError::Permanent(format!(
                "no {} of {} in {} (the stages of a video must share a data_dir unless media is shared \
                 through the production artifact store: download.share_media)",
                kind.as_str(),
                self.video_id,
                dir.display()
            )));
        };
        let Some((info, mut body)) = shared.open(&self.video_id, kind.as_str()).await? else {
            return Err(missing());
        };
        let name = Path::new(&info.file_name);
        if name.file_name() != Some(name.as_os_str()) || info.file_name.starts_with('.') {
            return Err(StageError::Permanent(format!("the media store names a bad file: {:?}", info.file_name)));
        }
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io(&dir, e))?;
        let tmp = dir.join(format!(".fetch-{}", uuid::Uuid::now_v7()));
        let copied = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| io(&tmp, e))?;
            let (mut size, mut hash) = (0u64, Sha256::new());
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    StageError::Retryable(format!("fetching the {} of {}: {e}", kind.as_str(), self.video_id))
                })?;
                hash.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| io(&tmp, e))?;
            }
            file.sync_all().await.map_err(|e| io(&tmp, e))?;
            Ok::<_, StageError>((size, hex::encode(hash.finalize())))
        }
        .await;
        let checked = copied.and_then(|(size, sha256)| {
            if size == info.size && sha256 == info.sha256 {
                Ok(size)
            } else {
                Err(StageError::Retryable(format!(
                    "the {} of {} fetched from the media store is {size} bytes with SHA-256 {sha256}, \
                     not {} bytes with {} as stored",
                    kind.as_str(),
                    self.video_id,
                    info.size,
                    info.sha256
                )))
            }
        });
        let size = match checked {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let path = dir.join(name);
        tokio::fs::rename(&tmp, &path).await.map_err(|e| io(&path, e))?;
        let traffic = &self.media.inner.traffic;
        traffic.fetched_files.fetch_add(1, Ordering::Relaxed);
        traffic.fetched_bytes.fetch_add(size, Ordering::Relaxed);
        tracing::info!(video_id = %self.video_id, kind = kind.as_str(), bytes = size, "media fetched from the media store");
        self.media.trim(&self.video_id).await;
        Ok(path)
    }
}

impl Media {
    /// Keeps the local cache under its bound (only where media is shared): the directories of
    /// other videos, least recently changed first, that no task of this host holds.
    pub async fn trim(&self, keep: &VideoId) {
        let inner = &self.inner;
        if inner.shared.is_none() {
            return;
        }
        let mut videos = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&inner.dir).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(video_id) = VideoId::parse(&name) else { continue };
            let (size, changed) = dir_usage(&entry.path()).await;
            videos.push((changed, size, video_id));
        }
        let mut total: u64 = videos.iter().map(|(_, size, _)| size).sum();
        if total <= inner.cache_bytes {
            return;
        }
        videos.sort();
        for (_, size, video_id) in videos {
            if total <= inner.cache_bytes {
                break;
            }
            if video_id == *keep {
                continue;
            }
            // Only what nobody here is using: the lock taken without waiting.
            let Ok(local) = self.local_mutex(&video_id).try_lock_owned() else { continue };
            let Ok(file) = try_lock_file(&self.lock_path(&video_id)) else { continue };
            let path = self.video_dir(&video_id);
            if tokio::fs::remove_dir_all(&path).await.is_ok() {
                total = total.saturating_sub(size);
                tracing::debug!(%video_id, bytes = size, "media evicted from the local cache");
                let _ = tokio::fs::remove_file(self.lock_path(&video_id)).await;
            }
            drop((file, local));
        }
    }
}

/// The bytes under a video's directory and when it last changed.
async fn dir_usage(dir: &Path) -> (u64, std::time::SystemTime) {
    let mut size = 0;
    let mut changed = std::time::SystemTime::UNIX_EPOCH;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { continue };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(meta) = entry.metadata().await else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                size += meta.len();
            }
            changed = changed.max(meta.modified().unwrap_or(changed));
        }
    }
    (size, changed)
}

/// The size and lowercase hex SHA-256 of a file, read in chunks.
pub async fn hash_file(path: &Path) -> Result<(u64, String), StageError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| io(path, e))?;
    let (mut size, mut hash, mut buf) = (0u64, Sha256::new(), vec![0; CHUNK]);
    loop {
        let n = file.read(&mut buf).await.map_err(|e| io(path, e))?;
        if n == 0 {
            return Ok((size, hex::encode(hash.finalize())));
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
}

fn io(path: &Path, e: std::io::Error) -> StageError {
    StageError::Retryable(format!("{}: {e}", path.display()))
}

/// An exclusive lock on `path` if nobody holds one, without waiting.
fn try_lock_file(path: &Path) -> std::io::Result<File> {
    let file = File::options().create(true).truncate(false).write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(TryLockError::Error(e)) => Err(e),
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
