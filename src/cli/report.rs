//! Markdown output of `tubesum summarize` / `tubesum demo`: one file per video and an index.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::domain::{JobRecord, Summary, VideoRecord, VideoStatus};

/// `[mm:ss]` or `[h:mm:ss]`.
pub fn timestamp(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m:02}:{s:02}") }
}

pub fn video_markdown(video: &VideoRecord, summary: &Summary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", video.title.trim());
    let _ = writeln!(md, "<https://www.youtube.com/watch?v={}>\n", video.video_id);
    if let Some(at) = video.published_at {
        let _ = writeln!(md, "Published {}\n", at.format("%Y-%m-%d"));
    }
    let _ = writeln!(md, "## Summary\n\n{}\n", summary.summary.trim());
    if !summary.key_points.is_empty() {
        let _ = writeln!(md, "## Key points\n");
        for k in &summary.key_points {
            let _ = writeln!(md, "- [{}]({}) {}", timestamp(k.start), k.url, k.text.trim());
        }
        md.push('\n');
    }
    let _ = writeln!(md, "_Summarized by {}._", summary.summarizer);
    md
}

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
                std::fs::write(out.join(&file), video_markdown(video, summary))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_readable() {
        assert_eq!(timestamp(0.0), "00:00");
        assert_eq!(timestamp(61.7), "01:01");
        assert_eq!(timestamp(3725.0), "1:02:05");
    }
}
