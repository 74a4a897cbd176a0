//! Markdown output of `tubesum summarize` / `tubesum demo`: one file per video and an index.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::app::export::video_markdown;
use crate::domain::{JobRecord, Summary, VideoRecord, VideoStatus};

/// Writes `{video_id}.md` per summarized video and `index.md`; returns the index path.
pub fn write(out: &Path, job: &JobRecord, videos: &[(VideoRecord, Option<Summary>)]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let mut index = String::new();
    let _ = writeln!(index, "# Channel {}\n", job.channel_id);
    let _ = writeln!(
        index,
        "Job `{}`: **{}**{}\n",
        job.job_id,
        job.status,
        job.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
    );
    for (video, summary) in videos {
        match (video.status, summary) {
            (VideoStatus::Summarized, Some(summary)) => {
                let file = format!("{}.md", video.video_id);
                std::fs::write(out.join(&file), video_markdown(Some(video), summary))?;
                let first = summary.summary.split_inclusive(". ").next().unwrap_or("").trim();
                let _ = writeln!(index, "- [{}]({file}) — {first}", video.title.trim());
            }
            (status, _) => {
                let why = video.error.as_deref().unwrap_or("");
                let _ = writeln!(index, "- {} — _{status}_ {why}", video.title.trim());
            }
        }
    }
    let path = out.join("index.md");
    std::fs::write(&path, index)?;
    Ok(path)
}
