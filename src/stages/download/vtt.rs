//! WebVTT subtitles → transcript segments. The stand-in's writer (`youtube_standin::vtt`) is a
//! separate implementation the tests round-trip through.
//!
//! [`parse_vtt`] follows the WebVTT block structure: a `WEBVTT` header block, then blocks
//! separated by empty lines. `NOTE`, `STYLE` and `REGION` blocks and blocks without a
//! `-->` timing line are skipped; a cue may start with an identifier line; cue settings after
//! the end time are ignored. Cue text lines are stripped of tags (`<c>`, `<v Speaker>`,
//! `<00:00:01.000>`, `<b>` …), entities are decoded, and the lines are joined with one space.
//!
//! YouTube automatic captions "roll": each cue repeats the previous cue's last line above the
//! new words, and short transition cues repeat the whole previous text. So, comparing every cue
//! with the cue just before it (before de-duplication):
//! - a cue whose text equals the previous cue's is dropped (the kept segment's end is extended);
//! - a leading line equal to the previous cue's last line is removed.
//!
//! Cues left without text are dropped. A side effect: two consecutive identical cues in
//! hand-made subtitles ("No." / "No.") become one segment.
//!
//! Leniencies: `,` is accepted as the millisecond separator (SRT habit); an end time before
//! the start time is clamped to the start time.

use crate::domain::Segment;

/// Why a WebVTT document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VttError {
    #[error("missing webvtt header")]
    MissingHeader,
    #[error("invalid cue timing on line {line}: `{value}`")]
    InvalidTiming { line: usize, value: String },
}

/// Parses a WebVTT document into transcript segments, in cue order.
pub fn parse_vtt(input: &str) -> Result<Vec<Segment>, VttError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let normalized = input.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();

    let header = lines.first().copied().unwrap_or_default();
    let valid_header =
        header.strip_prefix("WEBVTT").is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
    if !valid_header {
        return Err(VttError::MissingHeader);
    }

    let mut segments: Vec<Segment> = Vec::new();
    let mut previous_lines: Vec<String> = Vec::new();
    // Skip the header block (it may carry `Kind:`/`Language:` lines), then walk the blocks.
    for block in blocks(&lines).skip(1) {
        let Some(cue) = parse_block(&block)? else {
            continue;
        };
        let text_lines: Vec<String> =
            cue.text_lines.iter().map(|line| clean_text(line)).filter(|line| !line.is_empty()).collect();
        if text_lines.is_empty() {
            continue;
        }
        let is_repeat = text_lines == previous_lines
            || (!previous_lines.is_empty() && text_lines.join(" ") == previous_lines.join(" "));
        let kept: &[String] = if previous_lines.last() == text_lines.first() { &text_lines[1..] } else { &text_lines };
        if is_repeat {
            if let Some(last) = segments.last_mut() {
                last.end = last.end.max(cue.end);
            }
        } else if !kept.is_empty() {
            segments.push(Segment { start: cue.start, end: cue.end, text: kept.join(" ") });
        }
        previous_lines = text_lines;
    }
    Ok(segments)
}

/// A block: its first line's 1-based number and its lines.
struct Block<'a> {
    first_line: usize,
    lines: Vec<&'a str>,
}

/// Splits lines into blocks separated by one or more empty lines. A line holding only spaces
/// is *not* a separator (YouTube puts such lines inside cues).
fn blocks<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = Block<'a>> + 'a {
    let mut index = 0;
    std::iter::from_fn(move || {
        while lines.get(index).is_some_and(|line| line.is_empty()) {
            index += 1;
        }
        if index >= lines.len() {
            return None;
        }
        let first_line = index + 1;
        let mut block = Vec::new();
        while let Some(line) = lines.get(index).filter(|line| !line.is_empty()) {
            block.push(*line);
            index += 1;
        }
        Some(Block { first_line, lines: block })
    })
}

struct Cue<'a> {
    start: f64,
    end: f64,
    text_lines: &'a [&'a str],
}

/// `Ok(None)` for blocks that are not cues (NOTE, STYLE, REGION, stray text).
fn parse_block<'a>(block: &'a Block<'a>) -> Result<Option<Cue<'a>>, VttError> {
    let Some(first) = block.lines.first() else {
        return Ok(None);
    };
    if ["NOTE", "STYLE", "REGION"]
        .iter()
        .any(|kw| first.strip_prefix(kw).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t'])))
    {
        return Ok(None);
    }
    // The timing line is the first line, or the second after a cue identifier.
    let Some(timing_index) = block.lines.iter().take(2).position(|line| line.contains("-->")) else {
        return Ok(None);
    };
    let timing = block.lines[timing_index];
    let invalid = || VttError::InvalidTiming { line: block.first_line + timing_index, value: timing.to_owned() };
    let (left, right) = timing.split_once("-->").ok_or_else(invalid)?;
    let start = parse_timestamp(left.trim()).ok_or_else(invalid)?;
    let end_token = right.split_whitespace().next().ok_or_else(invalid)?;
    let end = parse_timestamp(end_token).ok_or_else(invalid)?;
    Ok(Some(Cue { start, end: end.max(start), text_lines: &block.lines[timing_index + 1..] }))
}

/// `[hh:]mm:ss.ttt` → seconds. Hours may have any number of digits; minutes and seconds
/// have two and are below 60; milliseconds have three.
fn parse_timestamp(value: &str) -> Option<f64> {
    let (clock, millis) = value.rsplit_once(['.', ','])?;
    if millis.len() != 3 {
        return None;
    }
    let millis = parse_digits(millis)?;
    let parts: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match parts.as_slice() {
        [m, s] => (0, *m, *s),
        [h, m, s] if !h.is_empty() => (parse_digits(h)?, *m, *s),
        _ => return None,
    };
    if minutes.len() != 2 || seconds.len() != 2 {
        return None;
    }
    let (minutes, seconds) = (parse_digits(minutes)?, parse_digits(seconds)?);
    if minutes >= 60 || seconds >= 60 {
        return None;
    }
    let total_ms =
        hours.checked_mul(3600)?.checked_add(minutes * 60 + seconds)?.checked_mul(1000)?.checked_add(millis)?;
    // Integer milliseconds divided once: the nearest f64 to the written time.
    Some(total_ms as f64 / 1000.0)
}

fn parse_digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Strips tags, decodes entities and collapses whitespace in one cue text line.
fn clean_text(line: &str) -> String {
    let mut untagged = String::with_capacity(line.len());
    let mut in_tag = false;
    for ch in line.chars() {
        match (in_tag, ch) {
            (false, '<') => in_tag = true,
            (false, c) => untagged.push(c),
            (true, '>') => in_tag = false,
            (true, _) => {}
        }
    }
    let decoded = decode_entities(&untagged);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the character references WebVTT text uses; unknown ones stay literal.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after
            .find(';')
            .filter(|&semi| semi <= 10)
            .and_then(|semi| decode_entity(&after[..semi]).map(|s| (s, semi)));
        match decoded {
            Some((replacement, semi)) => {
                out.push_str(&replacement);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(name: &str) -> Option<String> {
    let named = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        // Non-breaking space reads as a plain space in a transcript.
        "nbsp" => " ",
        "lrm" | "rlm" => "",
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            return char::from_u32(code).filter(|c| *c != '\0').map(String::from);
        }
    };
    Some(named.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.into() }
    }

    fn standin_segment(s: &Segment) -> youtube_standin::Segment {
        youtube_standin::Segment { start: s.start, end: s.end, text: s.text.clone() }
    }

    #[test]
    fn parses_a_simple_document() {
        let vtt = "WEBVTT\n\n00:01.000 --> 00:04.000\nHello there.\n\n00:00:04.500 --> 00:00:06.250\nGeneral Kenobi!\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(1.0, 4.0, "Hello there."), seg(4.5, 6.25, "General Kenobi!")]);
    }

    #[test]
    fn header_is_required() {
        assert_eq!(parse_vtt(""), Err(VttError::MissingHeader));
        assert_eq!(parse_vtt("00:01.000 --> 00:02.000\nhi\n"), Err(VttError::MissingHeader));
        assert_eq!(parse_vtt("WEBVTTX\n"), Err(VttError::MissingHeader));
        assert_eq!(parse_vtt(" WEBVTT\n"), Err(VttError::MissingHeader));
        assert_eq!(parse_vtt("WEBVTT").unwrap(), vec![]);
        assert_eq!(parse_vtt("WEBVTT - some title\n\n").unwrap(), vec![]);
        assert_eq!(parse_vtt("WEBVTT\tx").unwrap(), vec![]);
    }

    #[test]
    fn bom_crlf_and_header_metadata() {
        let vtt = "\u{feff}WEBVTT\r\nKind: captions\r\nLanguage: en\r\n\r\n\
                   00:00:01.000 --> 00:00:02.000\r\nline one\r\nline two\r\n\r\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(1.0, 2.0, "line one line two")]);
    }

    #[test]
    fn skips_note_style_region_and_identifiers() {
        let vtt = "WEBVTT\n\nNOTE this is a comment\nspanning lines\n\nSTYLE\n::cue { color: red }\n\n\
                   REGION\nid:fred width:40%\n\nNOTE\n\n\
                   intro\n00:00:00.000 --> 00:00:01.000\nFirst\n\n\
                   42\n00:00:01.000 --> 00:00:02.000 align:start position:0% line:90%\nSecond\n\n\
                   NOTEBOOK is not a note\n00:00:02.000 --> 00:00:03.000\nThird\n\n\
                   stray text block without timing\n\n";
        assert_eq!(
            parse_vtt(vtt).unwrap(),
            vec![seg(0.0, 1.0, "First"), seg(1.0, 2.0, "Second"), seg(2.0, 3.0, "Third")]
        );
    }

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(parse_timestamp("00:01.500"), Some(1.5));
        assert_eq!(parse_timestamp("01:02:03.004"), Some(3723.004));
        assert_eq!(parse_timestamp("123:00:00.000"), Some(442_800.0));
        assert_eq!(parse_timestamp("00:00:01,250"), Some(1.25));
        for bad in [
            "1.000",
            "0:01.000",
            "00:60.000",
            "60:00.000",
            "00:01.00",
            "00:01.0000",
            "aa:bb.ccc",
            ":00:01.000",
            "00:01",
            "",
            "-00:01.000",
            "99999999999999999:00:00.000",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_timing_is_an_error_with_its_line() {
        let vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:xx.000 --> 00:00:03.000\nbad\n";
        assert_eq!(
            parse_vtt(vtt),
            Err(VttError::InvalidTiming { line: 6, value: "00:00:xx.000 --> 00:00:03.000".into() })
        );
        let missing_end = "WEBVTT\n\n00:00:01.000 -->\ntext\n";
        assert!(matches!(parse_vtt(missing_end), Err(VttError::InvalidTiming { line: 3, .. })));
    }

    #[test]
    fn end_before_start_is_clamped() {
        let vtt = "WEBVTT\n\n00:00:05.000 --> 00:00:04.000\nbackwards\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(5.0, 5.0, "backwards")]);
    }

    #[test]
    fn strips_tags_and_decodes_entities() {
        let vtt = "WEBVTT\n\n00:00.000 --> 00:02.000\n\
                   <v Roger Bingham>We are in <b>New</b> <i.loud>York</i> &amp; <c.yellow>Paris</c>\n\
                   &lt;tag&gt;&nbsp;&quot;q&quot; &#39;s&#x27; &lrm;R&amp;D &bogus; AT&T &\n";
        assert_eq!(
            parse_vtt(vtt).unwrap(),
            vec![seg(0.0, 2.0, "We are in New York & Paris <tag> \"q\" 's' R&D &bogus; AT&T &")]
        );
    }

    #[test]
    fn inline_timestamps_and_unclosed_tags() {
        assert_eq!(clean_text("so<00:00:01.120><c> this</c><00:00:01.360><c> is</c>"), "so this is");
        assert_eq!(clean_text("text <unclosed"), "text");
        assert_eq!(clean_text("  spaced \t out  "), "spaced out");
    }

    #[test]
    fn empty_cues_are_dropped() {
        let vtt = "WEBVTT\n\n00:00.000 --> 00:01.000\n\n00:01.000 --> 00:02.000\n \n<c></c>\n\n\
                   00:02.000 --> 00:03.000\nreal\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(2.0, 3.0, "real")]);
    }

    #[test]
    fn youtube_rolling_auto_captions_are_deduplicated() {
        // Shape of yt-dlp's `--write-auto-subs` output.
        let vtt = "WEBVTT\nKind: captions\nLanguage: en\n\n\
00:00:00.160 --> 00:00:02.310 align:start position:0%\n \nhello<00:00:00.480><c> everyone</c><00:00:00.800><c> and</c>\n\n\
00:00:02.310 --> 00:00:02.320 align:start position:0%\nhello everyone and\n \n\n\
00:00:02.320 --> 00:00:05.110 align:start position:0%\nhello everyone and\nwelcome<00:00:02.960><c> back</c>\n\n\
00:00:05.110 --> 00:00:05.120 align:start position:0%\nwelcome back\n \n\n\
00:00:05.120 --> 00:00:07.000 align:start position:0%\nwelcome back\nto<00:00:05.500><c> the</c><00:00:06.000><c> channel</c>\n";
        assert_eq!(
            parse_vtt(vtt).unwrap(),
            vec![
                seg(0.16, 2.32, "hello everyone and"),
                seg(2.32, 5.11, "welcome back"),
                seg(5.12, 7.0, "to the channel"),
            ]
        );
    }

    #[test]
    fn identical_consecutive_cues_merge_but_later_repeats_stay() {
        let vtt = "WEBVTT\n\n00:00.000 --> 00:01.000\nNo.\n\n00:01.000 --> 00:02.000\nNo.\n\n\
                   00:02.000 --> 00:03.000\nYes.\n\n00:03.000 --> 00:04.000\nNo.\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(0.0, 2.0, "No."), seg(2.0, 3.0, "Yes."), seg(3.0, 4.0, "No.")]);
    }

    #[test]
    fn repeated_text_split_differently_is_still_a_repeat() {
        let vtt = "WEBVTT\n\n00:00.000 --> 00:01.000\na b\nc\n\n00:01.000 --> 00:02.000\na\nb c\n";
        assert_eq!(parse_vtt(vtt).unwrap(), vec![seg(0.0, 2.0, "a b c")]);
    }

    #[test]
    fn render_then_parse_round_trips() {
        let segments = vec![
            seg(0.0, 1.5, "Fish & chips <cheap>"),
            seg(1.5, 3.001, "Ünïcödé — 日本語 🎉"),
            seg(61.234, 3723.004, "arrow --> inside"),
            seg(3723.004, 360_000.999, "last"),
        ];
        let rendered = youtube_standin::vtt::render_vtt(&segments.iter().map(standin_segment).collect::<Vec<_>>());
        assert!(rendered.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n"));
        assert!(rendered.contains("01:02:03.004 --> 100:00:00.999"));
        assert_eq!(parse_vtt(&rendered).unwrap(), segments);
    }
}
