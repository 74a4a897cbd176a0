//! A channel's digest: the topics that recur across its summarized videos, each with links to
//! the moments that discuss it. Offline, topics are the significant words the videos' key points
//! share (a word in the key points of two or more videos is a recurring topic; topics whose
//! moments another covers are folded in). With an LLM, map-reduce: the model groups the numbered
//! key points into named topics, batch by batch, then merges the batches' topics; tubesum turns the
//! numbers into moment links — the model never writes a time or a URL.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ask::Asker;
use crate::app::export::timestamp;
use crate::domain::{ChannelId, Summary, VideoRecord, VideoStatus, moment_url};
use crate::ports::{ArtifactStore, JobStore, PortError};
use crate::stages::StageError;
use crate::stages::summarization::chunk::estimate_tokens;
use crate::stages::summarization::textrank::is_stop_word;

/// The most topics a digest names.
pub const MAX_TOPICS: usize = 10;
/// The most moments listed under one topic.
pub const MAX_MOMENTS: usize = 6;
/// The most key points the LLM is shown (the newest videos' first), in batches of at most
/// `llm.max_chunk_tokens` tokens each.
pub const MAX_LLM_POINTS: usize = 2000;

const PROMPT: &str = "You find the recurring topics of a YouTube channel from the numbered key points of its videos. \
Answer with JSON only: {\"topics\": [{\"topic\": \"<a short name>\", \"points\": [<numbers of the key points about it>]}]}. \
Give at most 10 topics, the ones that come up in the most videos first. Use only numbers that appear in the list. \
Do not write times or URLs.";

const MERGE_PROMPT: &str = "You merge the topics found in parts of a YouTube channel's key points into the channel's \
recurring topics. The topics are numbered, each with how many key points and videos it covers. Answer with JSON only: \
{\"topics\": [{\"topic\": \"<a short name>\", \"parts\": [<numbers of the topics it merges>]}]}. Merge topics that are \
the same subject; give at most 10, the ones in the most videos first. Use only numbers that appear in the list.";

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Digest {
    #[schema(value_type = String)]
    pub channel_id: ChannelId,
    /// Only videos published since then (when given).
    pub since: Option<DateTime<Utc>>,
    /// Summarized videos looked at.
    pub videos: usize,
    /// `keywords` (offline) or `llm:<model>`.
    pub made_by: String,
    pub topics: Vec<Topic>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Topic {
    pub topic: String,
    /// How many videos discuss it.
    pub videos: usize,
    pub moments: Vec<Moment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Moment {
    pub video_id: String,
    pub title: String,
    pub start: f64,
    pub url: String,
    pub text: String,
}

/// A key point of one of the channel's videos.
struct Point {
    video: usize,
    moment: Moment,
}

/// The channel's summarized videos (published since `since`, when given), newest job's record
/// of each, with their summaries.
async fn summarized(
    store: &dyn JobStore,
    artifacts: &dyn ArtifactStore,
    channel: &ChannelId,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<(VideoRecord, Summary)>, PortError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (_, video) in super::search::job_videos(store, Some(channel)).await? {
        let recent = since.is_none_or(|since| video.published_at.is_some_and(|at| at >= since));
        if video.status != VideoStatus::Summarized || !recent || !seen.insert(video.video_id.clone()) {
            continue;
        }
        if let Some(summary) = artifacts.get_summary(&video.video_id).await? {
            out.push((video, summary));
        }
    }
    Ok(out)
}

/// The channel's digest.
pub async fn digest(
    store: &dyn JobStore,
    artifacts: &dyn ArtifactStore,
    asker: Option<&Asker>,
    channel: &ChannelId,
    since: Option<DateTime<Utc>>,
) -> Result<Digest, DigestError> {
    let mut videos = summarized(store, artifacts, channel, since).await?;
    // Newest first, so a budget keeps the newest.
    videos.sort_by_key(|(video, _)| std::cmp::Reverse(video.published_at));
    let points: Vec<Point> = videos
        .iter()
        .enumerate()
        .flat_map(|(i, (video, summary))| {
            summary.key_points.iter().map(move |k| Point {
                video: i,
                moment: Moment {
                    video_id: video.video_id.to_string(),
                    title: video.title.clone(),
                    start: k.start,
                    url: moment_url(&video.video_id, k.start),
                    text: k.text.trim().to_owned(),
                },
            })
        })
        .collect();
    let (topics, made_by) = match asker {
        Some(asker) if !points.is_empty() => {
            let chat = |system: &'static str, user: String| asker.chat(system, user);
            (llm_topics(chat, &points, asker.budget()).await?, asker.name())
        }
        _ => (keyword_topics(&points, videos.len()), "keywords".to_owned()),
    };
    Ok(Digest { channel_id: channel.clone(), since, videos: videos.len(), made_by, topics })
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] PortError),
    #[error("the LLM: {0}")]
    Llm(StageError),
}

/// Topics from the words key points share: a word recurs when it is in the key points of two or
/// more videos (of two or more key points, when there is one video).
fn keyword_topics(points: &[Point], videos: usize) -> Vec<Topic> {
    let mut by_word: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, point) in points.iter().enumerate() {
        let mut words: Vec<String> = significant_words(&point.moment.text).collect();
        words.sort();
        words.dedup();
        for word in words {
            by_word.entry(word).or_default().push(i);
        }
    }
    let reach = |found: &[usize]| found.iter().map(|i| points[*i].video).collect::<HashSet<_>>().len();
    let threshold_videos = if videos > 1 { 2 } else { 1 };
    let mut candidates: Vec<(String, Vec<usize>, usize)> = by_word
        .into_iter()
        .map(|(word, found)| {
            let n = reach(&found);
            (word, found, n)
        })
        .filter(|(_, found, n)| *n >= threshold_videos && found.len() >= 2)
        .collect();
    candidates.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.len().cmp(&a.1.len())).then(a.0.cmp(&b.0)));
    let mut topics: Vec<(String, Vec<usize>, usize)> = Vec::new();
    for (word, found, n) in candidates {
        // A word whose moments a chosen topic already covers names the same topic.
        if let Some(topic) = topics.iter_mut().find(|t| found.iter().all(|i| t.1.contains(i))) {
            if topic.0.split(", ").count() < 3 {
                topic.0.push_str(", ");
                topic.0.push_str(&word);
            }
            continue;
        }
        if topics.len() < MAX_TOPICS {
            topics.push((word, found, n));
        }
    }
    topics
        .into_iter()
        .map(|(topic, found, videos)| Topic {
            topic,
            videos,
            moments: found.iter().take(MAX_MOMENTS).map(|i| points[*i].moment.clone()).collect(),
        })
        .collect()
}

/// The words that can name a topic: lower case, no stop words, at least 4 letters, a plural's
/// `s` dropped.
fn significant_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.to_lowercase().replace('\'', ""))
        .filter(|w| w.chars().count() >= 4 && !is_stop_word(w) && !w.chars().all(|c| c.is_numeric()))
        .map(|w| if w.ends_with('s') && !w.ends_with("ss") { w[..w.len() - 1].to_owned() } else { w })
}

#[derive(Deserialize)]
struct LlmTopics {
    topics: Vec<LlmTopic>,
}

#[derive(Deserialize)]
struct LlmMerged {
    topics: Vec<LlmMergedTopic>,
}

#[derive(Deserialize)]
struct LlmMergedTopic {
    topic: String,
    #[serde(default)]
    parts: Vec<usize>,
}

#[derive(Deserialize)]
struct LlmTopic {
    topic: String,
    #[serde(default)]
    points: Vec<usize>,
}

/// Topics named by the model, map-reduced: every key point (up to [`MAX_LLM_POINTS`], the newest
/// videos' first), numbered once, goes to the model in batches of at most `batch_tokens` — each
/// batch's answer names topics by the numbers of its points; with more than one batch, the
/// batches' topics (numbered, with their counts) go to the model once more to be merged into the
/// channel's recurring ones, whose points are those of the topics merged. Numbers the model makes
/// up (or takes from another batch) are dropped.
async fn llm_topics<F, Fut>(chat: F, points: &[Point], batch_tokens: usize) -> Result<Vec<Topic>, DigestError>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<String, StageError>>,
{
    let points = &points[..points.len().min(MAX_LLM_POINTS)];
    let mut found: Vec<(String, Vec<usize>)> = Vec::new();
    let batches = batches(points, batch_tokens);
    for (range, list) in &batches {
        let answer: LlmTopics = parse_json(&chat(PROMPT, list.clone()).await.map_err(DigestError::Llm)?)?;
        for topic in answer.topics {
            let mut numbers: Vec<usize> =
                topic.points.into_iter().filter(|n| range.contains(&n.wrapping_sub(1))).map(|n| n - 1).collect();
            numbers.dedup();
            if !numbers.is_empty() && !topic.topic.trim().is_empty() {
                found.push((topic.topic.trim().to_owned(), numbers));
            }
        }
    }
    if batches.len() > 1 && !found.is_empty() {
        found = merge(&chat, points, found).await?;
    }
    Ok(found
        .into_iter()
        .take(MAX_TOPICS)
        .map(|(topic, numbers)| Topic {
            topic,
            videos: numbers.iter().map(|i| points[*i].video).collect::<HashSet<_>>().len(),
            moments: numbers.iter().take(MAX_MOMENTS).map(|i| points[*i].moment.clone()).collect(),
        })
        .collect())
}

/// The points as numbered lines, in batches of at most `budget` tokens (a batch holds one point
/// at least), each with the indexes it covers.
fn batches(points: &[Point], budget: usize) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut list = String::new();
    let mut first = 0;
    for (i, point) in points.iter().enumerate() {
        let moment = &point.moment;
        let line = format!("[{}] ({}, at {}) {}\n", i + 1, moment.title, timestamp(moment.start), moment.text);
        if !list.is_empty() && estimate_tokens(&list) + estimate_tokens(&line) > budget {
            out.push((first..i, std::mem::take(&mut list)));
            first = i;
        }
        list.push_str(&line);
    }
    if !list.is_empty() {
        out.push((first..points.len(), list));
    }
    out
}

/// The reduce step: the batches' topics merged by the model; a merged topic's points are those of
/// the topics it names (in their order, each once).
async fn merge<F, Fut>(
    chat: &F,
    points: &[Point],
    found: Vec<(String, Vec<usize>)>,
) -> Result<Vec<(String, Vec<usize>)>, DigestError>
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = Result<String, StageError>>,
{
    let mut list = String::new();
    for (i, (topic, numbers)) in found.iter().enumerate() {
        let videos = numbers.iter().map(|n| points[*n].video).collect::<HashSet<_>>().len();
        let _ = writeln!(list, "[{}] {topic} ({} key points, {videos} videos)", i + 1, numbers.len());
    }
    let answer: LlmMerged = parse_json(&chat(MERGE_PROMPT, list).await.map_err(DigestError::Llm)?)?;
    Ok(answer
        .topics
        .into_iter()
        .filter_map(|merged| {
            let mut numbers: Vec<usize> = Vec::new();
            for part in merged.parts.into_iter().filter(|n| (1..=found.len()).contains(n)) {
                for n in &found[part - 1].1 {
                    if !numbers.contains(n) {
                        numbers.push(*n);
                    }
                }
            }
            (!numbers.is_empty() && !merged.topic.trim().is_empty()).then(|| (merged.topic.trim().to_owned(), numbers))
        })
        .collect())
}

/// The model's JSON answer (a Markdown code fence around it is taken off).
fn parse_json<T: serde::de::DeserializeOwned>(answer: &str) -> Result<T, DigestError> {
    let json = answer.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    serde_json::from_str(json).map_err(|e| {
        DigestError::Llm(StageError::Retryable(format!("the model's topics are not the JSON asked for: {e}")))
    })
}

/// The digest as a Markdown document.
pub fn markdown(digest: &Digest) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Channel {} — recurring topics\n", digest.channel_id);
    let since = digest.since.map(|s| format!(" published since {}", s.format("%Y-%m-%d"))).unwrap_or_default();
    let _ = writeln!(md, "From {} summarized videos{since} ({}).\n", digest.videos, digest.made_by);
    if digest.topics.is_empty() {
        let _ = writeln!(md, "No topic comes up in more than one video yet.");
    }
    for topic in &digest.topics {
        let _ = writeln!(md, "## {} ({} videos)\n", topic.topic, topic.videos);
        for m in &topic.moments {
            let _ = writeln!(md, "- [{} {}]({}) {}", m.title.trim(), timestamp(m.start), m.url, m.text);
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(video: usize, start: f64, text: &str) -> Point {
        let moment = Moment {
            video_id: format!("video{video:06}"),
            title: format!("Video {video}"),
            start,
            url: String::new(),
            text: text.into(),
        };
        Point { video, moment }
    }

    /// The map step sees every point in small batches, each citing its own numbers (and some made
    /// up); the reduce step merges the batches' topics.
    #[tokio::test]
    async fn the_llm_digest_maps_over_batches_and_reduces_their_topics() {
        let points: Vec<Point> = (0..12)
            .map(|i| point(i % 4, f64::from(i as u32) * 10.0, &format!("Key point {i} about bees and their honey.")))
            .collect();
        let asked = std::sync::Mutex::new(Vec::new());
        let chat = |system: &'static str, user: String| {
            asked.lock().unwrap().push((system, user.clone()));
            async move {
                if system == MERGE_PROMPT {
                    // Topics 1.. are one per batch: merge them all, plus one that does not exist.
                    let parts: Vec<usize> = (1..=user.lines().count()).chain([99]).collect();
                    return Ok(serde_json::json!({"topics": [{"topic": "Bees", "parts": parts}]}).to_string());
                }
                let numbers: Vec<usize> = user
                    .lines()
                    .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
                    .chain([1, 500])
                    .collect();
                Ok(format!("```json\n{}\n```", serde_json::json!({"topics": [{"topic": "bees", "points": numbers}]})))
            }
        };
        let topics = llm_topics(chat, &points, 40).await.unwrap();
        let asked = asked.into_inner().unwrap();
        let maps: Vec<&String> = asked.iter().filter(|(s, _)| *s == PROMPT).map(|(_, u)| u).collect();
        assert!(maps.len() > 2, "several batches: {maps:?}");
        assert!(maps.iter().all(|u| estimate_tokens(u) <= 40), "each within the budget: {maps:?}");
        let listed: usize = maps.iter().map(|u| u.lines().count()).sum();
        assert_eq!(listed, 12, "every point, once");
        assert_eq!(asked.iter().filter(|(s, _)| *s == MERGE_PROMPT).count(), 1, "one reduce");
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].topic, "Bees");
        assert_eq!(topics[0].videos, 4, "every video's points, merged");
        let starts: Vec<f64> = topics[0].moments.iter().map(|m| m.start).collect();
        assert_eq!(starts, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0], "in order, each once, at most {MAX_MOMENTS}");
    }

    #[test]
    fn words_that_recur_across_videos_are_topics_with_their_moments() {
        let points = [
            point(0, 5.0, "Honey bees make honey from nectar."),
            point(0, 30.0, "A volcano erupts."),
            point(1, 12.0, "Bees dance to share where flowers are."),
            point(1, 40.0, "Beekeepers harvest honey in summer."),
            point(2, 3.0, "Flowers need bees to spread pollen."),
        ];
        let topics = keyword_topics(&points, 3);
        let names: Vec<&str> = topics.iter().map(|t| t.topic.as_str()).collect();
        // Every moment of "flower" is one of "bee"'s: one topic.
        assert_eq!(names[0], "bee, flower", "in three videos: {names:?}");
        assert_eq!(topics[0].videos, 3);
        let starts: Vec<f64> = topics[0].moments.iter().map(|m| m.start).collect();
        assert_eq!(starts, [5.0, 12.0, 3.0]);
        assert!(names.contains(&"honey"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("volcano")), "in one video only: {names:?}");
    }
}
