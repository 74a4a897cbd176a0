//! Captions as WebVTT, as a caption download returns them.

use crate::Segment;

/// Renders segments as a plain WebVTT document (what a caption download would return).
///
/// Text is escaped (`&`, `<`, `>`) and written on one line; times are rounded to the
/// millisecond. `parse_vtt(&render_vtt(s)) == s` for segments with millisecond times,
/// single-spaced non-empty text and no two consecutive identical texts.
pub fn render_vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for segment in segments {
        let text = segment
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        out.push_str(&format!("{} --> {}\n{text}\n\n", format_timestamp(segment.start), format_timestamp(segment.end)));
    }
    out
}

fn format_timestamp(seconds: f64) -> String {
    // Negative and NaN times become zero; `as` saturates.
    let total_ms = (seconds * 1000.0).round().max(0.0) as u64;
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{secs:02}.{millis:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.into() }
    }

    #[test]
    fn render_flattens_newlines_and_clamps_bad_times() {
        let rendered = render_vtt(&[seg(-1.0, f64::NAN, "two\n\nlines")]);
        assert_eq!(rendered, "WEBVTT\n\n00:00:00.000 --> 00:00:00.000\ntwo lines\n\n");
        assert_eq!(render_vtt(&[]), "WEBVTT\n\n");
    }
}
