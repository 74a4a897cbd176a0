//! Full-text search over what was said and summarized: the passages the index holds (transcript
//! segments, summaries and key points, each with its moment), and what a search finds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ChannelId, Segment, Summary, VideoId, moment_url};

/// Marks the start of a match in a snippet as the stores return it.
pub const MATCH_START: char = '\u{2}';
/// Marks the end of a match.
pub const MATCH_END: char = '\u{3}';

text_enum!(
    /// What a passage is from.
    PassageKind {
        Transcript => "transcript",
        Summary => "summary",
    }
);

/// A piece of indexed text and where in the video it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub start: f64,
    pub text: String,
}

/// What a video's passages are filed under.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedVideo {
    pub video_id: VideoId,
    pub channel_id: ChannelId,
    pub title: String,
}

/// The passages of a transcript: its segments that say something.
pub fn transcript_passages(segments: &[Segment]) -> Vec<Passage> {
    segments
        .iter()
        .filter(|s| !s.text.trim().is_empty())
        .map(|s| Passage { start: s.start, text: s.text.trim().to_owned() })
        .collect()
}

/// The passages of a summary: the summary itself (at the start) and each key point at its moment.
pub fn summary_passages(summary: &Summary) -> Vec<Passage> {
    let mut passages = Vec::with_capacity(1 + summary.key_points.len());
    if !summary.summary.trim().is_empty() {
        passages.push(Passage { start: 0.0, text: summary.summary.trim().to_owned() });
    }
    passages.extend(summary.key_points.iter().map(|k| Passage { start: k.start, text: k.text.trim().to_owned() }));
    passages
}

/// A search: the words (a phrase in quotes, `-word` to exclude; as people type them), the channel
/// it is limited to, and how many hits at most. `any`: a passage matches with any of the words
/// (ranked by how well), not only with all of them — for finding passages that answer a question.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    pub channel: Option<ChannelId>,
    pub limit: u32,
    pub any: bool,
}

impl SearchQuery {
    /// The words of the query alone, each once, as `websearch_to_tsquery` reads "any of them".
    pub fn any_of(&self) -> String {
        let mut seen = Vec::new();
        for word in words(&self.text) {
            if !seen.contains(&word) {
                seen.push(word);
            }
        }
        seen.join(" or ")
    }
}

/// A hit as a store finds it: the passage, its snippet (matches between [`MATCH_START`] and
/// [`MATCH_END`]), and its rank (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPassage {
    pub video_id: VideoId,
    pub channel_id: ChannelId,
    pub title: String,
    pub kind: PassageKind,
    pub start: f64,
    pub snippet: String,
    pub rank: f64,
}

/// A search hit, as the API and the CLI give it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    #[schema(value_type = String)]
    pub video_id: VideoId,
    #[schema(value_type = String)]
    pub channel_id: ChannelId,
    pub title: String,
    pub kind: PassageKind,
    /// Seconds from the start of the video.
    pub start: f64,
    /// The moment: `https://www.youtube.com/watch?v=…&t=…s`.
    pub url: String,
    /// The passage around the match, as plain text.
    pub snippet: String,
    /// The same, as HTML: escaped, the matching words in `<mark>`.
    pub snippet_html: String,
    /// Higher is better (comparable within one search).
    pub rank: f64,
}

impl From<FoundPassage> for SearchHit {
    fn from(found: FoundPassage) -> Self {
        let plain: String = found.snippet.chars().filter(|c| *c != MATCH_START && *c != MATCH_END).collect();
        let mut html = String::with_capacity(found.snippet.len() + 16);
        for c in found.snippet.chars() {
            match c {
                MATCH_START => html.push_str("<mark>"),
                MATCH_END => html.push_str("</mark>"),
                '&' => html.push_str("&amp;"),
                '<' => html.push_str("&lt;"),
                '>' => html.push_str("&gt;"),
                '"' => html.push_str("&quot;"),
                c => html.push(c),
            }
        }
        SearchHit {
            url: moment_url(&found.video_id, found.start),
            video_id: found.video_id,
            channel_id: found.channel_id,
            title: found.title,
            kind: found.kind,
            start: found.start,
            snippet: plain,
            snippet_html: html,
            rank: found.rank,
        }
    }
}

/// The words of a query, for a store whose query language must not see the user's syntax
/// (SQLite FTS5): each word quoted, `-word` kept as an exclusion, a quoted phrase kept whole.
pub fn fts5_query(text: &str, any: bool) -> Option<String> {
    if any {
        let terms: Vec<String> = words(text).into_iter().map(|w| format!("\"{w}\"")).collect();
        return (!terms.is_empty()).then(|| terms.join(" OR "));
    }
    let mut terms = Vec::new();
    let mut excluded = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('"') {
            let (phrase, tail) = after.split_once('"').unwrap_or((after, ""));
            let words = words(phrase);
            if !words.is_empty() {
                terms.push(format!("\"{}\"", words.join(" ")));
            }
            rest = tail;
            continue;
        }
        let (word, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (negated, word) = word.strip_prefix('-').map_or((false, word), |w| (true, w));
        for w in words(word) {
            if negated { excluded.push(format!("\"{w}\"")) } else { terms.push(format!("\"{w}\"")) }
        }
        rest = tail;
    }
    if terms.is_empty() {
        return None;
    }
    let mut query = terms.join(" ");
    for term in excluded {
        query.push_str(" NOT ");
        query.push_str(&term);
    }
    Some(query)
}

/// The word characters of `text`, split where anything else is.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_quoted_for_fts5() {
        assert_eq!(fts5_query("honey  bees", false).as_deref(), Some(r#""honey" "bees""#));
        assert_eq!(
            fts5_query(r#""nectar of flowers" -wasp"#, false).as_deref(),
            Some(r#""nectar of flowers" NOT "wasp""#)
        );
        assert_eq!(fts5_query(r#"a"b OR c*"#, false).as_deref(), Some(r#""a" "b" "or" "c""#));
        assert_eq!(fts5_query("  -- * ", false), None);
        assert_eq!(fts5_query("bees -hive", true).as_deref(), Some(r#""bees" OR "hive""#));
    }

    #[test]
    fn snippets_become_plain_text_and_safe_html() {
        let found = FoundPassage {
            video_id: VideoId::parse("aaaaaaaaaaa").unwrap(),
            channel_id: ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap(),
            title: "T".into(),
            kind: PassageKind::Transcript,
            start: 61.9,
            snippet: "a <b> \u{2}bee\u{3} & more".into(),
            rank: 1.0,
        };
        let hit = SearchHit::from(found);
        assert_eq!(hit.snippet, "a <b> bee & more");
        assert_eq!(hit.snippet_html, "a &lt;b&gt; <mark>bee</mark> &amp; more");
        assert_eq!(hit.url, "https://www.youtube.com/watch?v=aaaaaaaaaaa&t=61s");
    }
}
