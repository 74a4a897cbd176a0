//! Download: captions first (manual subtitles in the wanted language become the transcript and
//! audio + whisper are skipped), else the audio with yt-dlp into a per-attempt directory, moved to
//! `media/{video_id}/source.*` once complete, and stored for the other nodes where media is shared.
//! A transcript another job already stored is reused
//! (unless the job is forced), and a download already on this host is not made again.

pub mod vtt;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::media::{MediaKind, WorkDir};
use super::{StageContext, StageError, StageResult, StageWork, fill, process, video_of};
use crate::domain::{DomainEvent, EventPayload, Stage, StageCommand, Transcript, TranscriptSource, VideoId};
use crate::stages::settings::CaptionsPolicy;

pub struct Download {
    ctx: StageContext,
    http: reqwest::Client,
}

impl Download {
    pub fn new(ctx: StageContext) -> Result<Self, StageError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(ctx.settings.youtube.request_timeout_secs))
            .build()
            .map_err(|e| StageError::Permanent(format!("http client: {e}")))?;
        Ok(Self { ctx, http })
    }

    fn yt_dlp(&self) -> &Path {
        &self.ctx.settings.download.yt_dlp
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.ctx.settings.download.timeout_secs)
            .min(self.ctx.settings.stages.timeout(Stage::Download))
    }

    /// `yt-dlp -J`: the video's info, written to `info.json` for the download to reuse.
    async fn info(&self, video_id: &VideoId, dir: &Path) -> Result<(Value, PathBuf), StageError> {
        let url = fill(&self.ctx.settings.youtube.video_url, "video_id", video_id.as_str());
        let output = process::run(
            self.yt_dlp(),
            ["--ignore-config", "--no-playlist", "--no-warnings", "-J", "--", url.as_str()],
            self.timeout(),
        )
        .await
        .map_err(|e| classify(video_id, e))?;
        let info: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| StageError::Permanent(format!("yt-dlp printed invalid JSON for {video_id}: {e}")))?;
        let path = dir.join("info.json");
        tokio::fs::write(&path, &output.stdout)
            .await
            .map_err(|e| StageError::Retryable(format!("writing {}: {e}", path.display())))?;
        Ok((info, path))
    }

    /// Stores manual subtitles in the wanted language as the transcript; false if there are none.
    async fn try_captions(&self, command: &StageCommand, video_id: &VideoId, info: &Value) -> Result<bool, StageError> {
        let language = &self.ctx.settings.transcription.language;
        let Some(track) = pick_captions(info, language) else {
            return Ok(false);
        };
        let body = match self.http.get(&track.url).send().await.and_then(|r| r.error_for_status()) {
            Ok(response) => response
                .text()
                .await
                .map_err(|e| StageError::Retryable(format!("reading captions of {video_id}: {e}")))?,
            Err(e) => {
                tracing::warn!(%video_id, error = %e, "captions listed but not fetchable; transcribing audio instead");
                return Ok(false);
            }
        };
        let segments = match vtt::parse_vtt(&body) {
            Ok(segments) if !segments.is_empty() => segments,
            Ok(_) | Err(_) => {
                tracing::warn!(%video_id, "captions empty or unreadable; transcribing audio instead");
                return Ok(false);
            }
        };
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        let transcript = Transcript {
            video_id: video_id.clone(),
            source: TranscriptSource::Captions,
            language: Some(track.language),
            text,
            segments,
            job_id: command.job_id,
        };
        self.ctx.store_transcript(&transcript).await?;
        Ok(true)
    }
}

#[async_trait]
impl StageWork for Download {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let video_id = video_of(command)?;
        let done = |captions, reused| {
            Ok(vec![DomainEvent::new(
                command.job_id,
                Some(video_id.clone()),
                EventPayload::VideoDownloaded { captions, reused },
            )])
        };
        // Work of this job or (unless forced) of another one is reused, not redone.
        if let Some((captions, reused)) = self.stored_transcript(command, video_id).await? {
            return done(captions, reused);
        }
        // A length discovery's listing stated refuses the video before yt-dlp is even asked.
        let listed = self.ctx.store.get_video(command.job_id, video_id).await?.and_then(|v| v.duration_secs);
        if let Some(reason) = listed.and_then(|d| self.ctx.settings.download.too_long(f64::from(d))) {
            return Err(StageError::Permanent(format!("{video_id}: {reason} (as discovery listed it)")));
        }
        let lock = self.ctx.media.lock(video_id).await?;
        // Looked at again with the lock held: another job may have just stored it.
        if let Some((captions, reused)) = self.stored_transcript(command, video_id).await? {
            return done(captions, reused);
        }
        let dir = lock.video_dir();
        if let Some(source) = source_file(&dir).await {
            // Here already; stored for the other nodes unless it is there too (a download that
            // stopped between landing and being stored).
            if !lock.has_shared(MediaKind::Source).await? {
                lock.publish(MediaKind::Source, &source).await?;
            }
            return done(false, false);
        }
        if lock.has_shared(MediaKind::Source).await? {
            // Downloaded on another node: the next stage fetches it from there.
            return done(false, false);
        }
        let work = WorkDir::create(&dir, &command.command_id).await?;
        let (info, info_path) = self.info(video_id, work.path()).await?;
        if let Some(reason) =
            info.get("duration").and_then(Value::as_f64).and_then(|d| self.ctx.settings.download.too_long(d))
        {
            return Err(StageError::Permanent(format!("{video_id}: {reason}")));
        }
        if self.ctx.settings.transcription.captions == CaptionsPolicy::Prefer
            && self.try_captions(command, video_id, &info).await?
        {
            return done(true, false);
        }
        let settings = &self.ctx.settings.download;
        let template = work.path().join("source.%(ext)s");
        let args: Vec<String> = vec![
            "--ignore-config".into(),
            "--no-playlist".into(),
            "--no-progress".into(),
            "--no-warnings".into(),
            "--no-mtime".into(),
            "--socket-timeout".into(),
            "30".into(),
            "--retries".into(),
            "3".into(),
            "-f".into(),
            settings.format.clone(),
            "--max-filesize".into(),
            settings.max_filesize.clone(),
            "-o".into(),
            template.display().to_string(),
            "--load-info-json".into(),
            info_path.display().to_string(),
        ];
        process::run(self.yt_dlp(), &args, self.timeout()).await.map_err(|e| classify(video_id, e))?;
        let Some(downloaded) = source_file(work.path()).await else {
            // yt-dlp exits 0 when --max-filesize skips the file.
            return Err(StageError::Permanent(format!(
                "yt-dlp produced no file for {video_id} (larger than download.max_filesize = {}?)",
                settings.max_filesize
            )));
        };
        // Lands whole or not at all.
        let name = downloaded.file_name().unwrap_or_default();
        let source = dir.join(name);
        tokio::fs::rename(&downloaded, &source)
            .await
            .map_err(|e| StageError::Retryable(format!("moving the download of {video_id} into place: {e}")))?;
        lock.publish(MediaKind::Source, &source).await?;
        done(false, false)
    }
}

impl Download {
    /// `(captions, reused)` when the video's transcript is already stored and this job may use
    /// it: captions this job stored, or a transcript of another job (unless this one is forced).
    async fn stored_transcript(
        &self,
        command: &StageCommand,
        video_id: &VideoId,
    ) -> Result<Option<(bool, bool)>, StageError> {
        let Some(transcript) = self.ctx.artifacts.get_transcript(video_id).await? else {
            return Ok(None);
        };
        let own_captions = transcript.job_id == command.job_id && transcript.source == TranscriptSource::Captions;
        if own_captions {
            return Ok(Some((true, false)));
        }
        Ok(self.ctx.may_reuse(command, transcript.job_id).await?.then_some((false, true)))
    }
}

/// The downloaded media of a video (`source.<ext>`), if complete.
pub async fn source_file(dir: &Path) -> Option<PathBuf> {
    let mut entries = tokio::fs::read_dir(dir).await.ok()?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("source.") && !name.ends_with(".part") && !name.ends_with(".ytdl") {
            return Some(entry.path());
        }
    }
    None
}

fn classify(video_id: &VideoId, e: process::ProcessError) -> StageError {
    match &e {
        process::ProcessError::NotFound { .. } => StageError::Permanent(e.to_string()),
        process::ProcessError::TimedOut { .. } => StageError::Retryable(format!("downloading {video_id}: {e}")),
        process::ProcessError::Failed { stderr, .. } => {
            let permanent = [
                "HTTP Error 404",
                "HTTP Error 403",
                "HTTP Error 410",
                "Unsupported URL",
                "Video unavailable",
                "Private video",
                "This video is not available",
                "Requested format is not available",
            ];
            if permanent.iter().any(|p| stderr.contains(p)) {
                StageError::Permanent(format!("downloading {video_id} failed: {e}"))
            } else {
                StageError::Retryable(format!("downloading {video_id} failed: {e}"))
            }
        }
    }
}

#[derive(Debug, PartialEq)]
struct CaptionTrack {
    language: String,
    url: String,
}

#[derive(Deserialize)]
struct SubtitleFormat {
    ext: Option<String>,
    url: Option<String>,
}

/// Manual subtitles (not automatic captions) in `language` (or a regional variant), as VTT.
fn pick_captions(info: &Value, language: &str) -> Option<CaptionTrack> {
    let subtitles = info.get("subtitles")?.as_object()?;
    let mut languages: Vec<&String> =
        subtitles.keys().filter(|lang| *lang == language || lang.split(['-', '_']).next() == Some(language)).collect();
    languages.sort_by_key(|lang| (*lang != language, (*lang).clone()));
    languages.into_iter().find_map(|lang| {
        let formats: Vec<SubtitleFormat> = serde_json::from_value(subtitles.get(lang)?.clone()).ok()?;
        formats
            .into_iter()
            .find(|f| f.ext.as_deref() == Some("vtt"))
            .and_then(|f| f.url)
            .map(|url| CaptionTrack { language: lang.clone(), url })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_manual_vtt_captions_in_the_language() {
        let info = json!({
            "subtitles": {
                "de": [{"ext": "vtt", "url": "http://x/de.vtt"}],
                "en-GB": [{"ext": "srv3", "url": "http://x/gb.srv3"}, {"ext": "vtt", "url": "http://x/gb.vtt"}],
                "en": [{"ext": "json3", "url": "http://x/en.json3"}, {"ext": "vtt", "url": "http://x/en.vtt"}]
            },
            "automatic_captions": {"fr": [{"ext": "vtt", "url": "http://x/auto.vtt"}]}
        });
        assert_eq!(
            pick_captions(&info, "en"),
            Some(CaptionTrack { language: "en".into(), url: "http://x/en.vtt".into() })
        );
        assert_eq!(pick_captions(&info, "de").unwrap().url, "http://x/de.vtt");
        assert_eq!(pick_captions(&info, "fr"), None, "automatic captions are not used");
        assert_eq!(pick_captions(&json!({}), "en"), None);
    }

    #[test]
    fn regional_variants_count_when_the_exact_language_is_missing() {
        let info = json!({"subtitles": {"en-US": [{"ext": "vtt", "url": "http://x/us.vtt"}]}});
        assert_eq!(pick_captions(&info, "en").unwrap().language, "en-US");
    }

    #[test]
    fn download_errors_are_classified() {
        let id = VideoId::parse("aaaaaaaaaaa").unwrap();
        let failed = |stderr: &str| process::ProcessError::Failed {
            program: "yt-dlp".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        };
        assert!(!classify(&id, failed("ERROR: Unable to download webpage: HTTP Error 404: Not Found")).is_retryable());
        assert!(classify(&id, failed("ERROR: Connection reset by peer")).is_retryable());
        let msg = classify(&id, failed("HTTP Error 404: Not Found")).to_string();
        assert!(msg.contains("404") && msg.contains("aaaaaaaaaaa"), "{msg}");
    }

    #[tokio::test]
    async fn partial_files_are_not_complete_downloads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(source_file(dir.path()).await.is_none());
        std::fs::write(dir.path().join("source.webm.part"), b"x").unwrap();
        std::fs::write(dir.path().join("info.json"), b"{}").unwrap();
        assert!(source_file(dir.path()).await.is_none());
        std::fs::write(dir.path().join("source.webm"), b"x").unwrap();
        assert_eq!(source_file(dir.path()).await.unwrap(), dir.path().join("source.webm"));
    }
}
