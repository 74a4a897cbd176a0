//! What a video's results are exported as: the summary in Markdown (`tubesum summarize`'s files,
//! the web console's download, `GET /videos/{id}/summary?format=md`), and the transcript as SRT
//! or WebVTT subtitles (`GET /videos/{id}/transcript?format=srt|vtt`).

use std::fmt::Write as _;

use crate::domain::{Segment, Summary, VideoRecord};

/// `mm:ss`, or `h:mm:ss` from an hour on.
pub fn timestamp(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m:02}:{s:02}") }
}

/// A video's summary as a Markdown document: title, link, summary, key points with their moments.
/// Without the video's record (`None`), the heading is the video's id.
pub fn video_markdown(video: Option<&VideoRecord>, summary: &Summary) -> String {
    let mut md = String::new();
    let title = video.map_or_else(|| summary.video_id.to_string(), |v| v.title.trim().to_owned());
    let _ = writeln!(md, "# {title}\n");
    let _ = writeln!(md, "<https://www.youtube.com/watch?v={}>\n", summary.video_id);
    if let Some(at) = video.and_then(|v| v.published_at) {
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

/// The transcript as SubRip subtitles (`HH:MM:SS,mmm`, cues numbered from 1).
pub fn srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (n, segment) in cues(segments).enumerate() {
        let (start, end) = (clock(segment.start, ','), clock(segment.end.max(segment.start), ','));
        let _ = write!(out, "{}\n{start} --> {end}\n{}\n\n", n + 1, one_line(&segment.text));
    }
    out
}

/// The transcript as WebVTT subtitles (`HH:MM:SS.mmm`).
pub fn webvtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for segment in cues(segments) {
        let (start, end) = (clock(segment.start, '.'), clock(segment.end.max(segment.start), '.'));
        // `-->` and blank lines would end a cue early; `&` and `<` would start an entity or a tag.
        let text = one_line(&segment.text).replace('&', "&amp;").replace('<', "&lt;").replace("-->", "--&gt;");
        let _ = write!(out, "{start} --> {end}\n{text}\n\n");
    }
    out
}

/// The segments that say something.
fn cues(segments: &[Segment]) -> impl Iterator<Item = &Segment> {
    segments.iter().filter(|s| !s.text.trim().is_empty())
}

/// A cue's text on one line (a blank line ends a cue in both formats).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `HH:MM:SS{sep}mmm`.
fn clock(seconds: f64, sep: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::download::vtt::parse_vtt;

    fn segment(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.into() }
    }

    #[test]
    fn timestamps_are_readable() {
        assert_eq!(timestamp(0.0), "00:00");
        assert_eq!(timestamp(61.7), "01:01");
        assert_eq!(timestamp(3725.0), "1:02:05");
    }

    #[test]
    fn srt_numbers_its_cues_and_uses_commas() {
        let srt = srt(&[segment(0.0, 1.5, "Hello\nthere."), segment(2.0, 3.0, "  "), segment(3661.25, 3662.0, "Bye.")]);
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,250 --> 01:01:02,000\nBye.\n\n");
    }

    #[test]
    fn webvtt_reads_back_as_the_same_segments() {
        let segments = vec![
            segment(0.0, 2.5, "Cats & dogs <3"),
            segment(2.5, 5.0, "a --> b"),
            segment(3600.0, 3601.004, "An hour in."),
        ];
        let vtt = webvtt(&segments);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n"), "{vtt}");
        let read = parse_vtt(&vtt).unwrap();
        let texts: Vec<&str> = read.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["Cats & dogs <3", "a --> b", "An hour in."]);
        assert_eq!(read[2].start, 3600.0);
        assert!((read[2].end - 3601.004).abs() < 1e-9);
    }
}
