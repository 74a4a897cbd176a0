//! A channel's digest: the topics that recur across its summarized videos, each with links to
//! the moments that discuss it. Offline, topics are the significant words the videos' key points
//! share (a word in the key points of two or more videos is a recurring topic; topics whose
//! moments another covers are folded in). With an LLM, the model groups the numbered key points
//! into named topics and tubesum turns the numbers into moment links — the model never writes a
//! time or a URL.

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
/// The most tokens of key points sent to the LLM (the newest videos' first).
pub const LLM_BUDGET_TOKENS: usize = 3000;

const PROMPT: &str = "You find the recurring topics of a YouTube channel from the numbered key points of its videos. \
Answer with JSON only: {\"topics\": [{\"topic\": \"<a short name>\", \"points\": [<numbers of the key points about it>]}]}. \
Give at most 10 topics, the ones that come up in the most videos first. Use only numbers that appear in the list. \
Do not write times or URLs.";

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
        Some(asker) if !points.is_empty() => (llm_topics(asker, &points).await?, asker.name()),
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
struct LlmTopic {
    topic: String,
    #[serde(default)]
    points: Vec<usize>,
}

/// Topics named by the model from the numbered key points (the newest videos' within the budget).
async fn llm_topics(asker: &Asker, points: &[Point]) -> Result<Vec<Topic>, DigestError> {
    let mut list = String::new();
    let mut shown = 0;
    for (i, point) in points.iter().enumerate() {
        let line = format!(
            "[{}] ({}, at {}) {}\n",
            i + 1,
            point.moment.title,
            timestamp(point.moment.start),
            point.moment.text
        );
        if estimate_tokens(&list) + estimate_tokens(&line) > LLM_BUDGET_TOKENS {
            break;
        }
        list.push_str(&line);
        shown += 1;
    }
    let answer = asker.chat(PROMPT, list).await.map_err(DigestError::Llm)?;
    let json = answer.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let parsed: LlmTopics = serde_json::from_str(json).map_err(|e| {
        DigestError::Llm(StageError::Retryable(format!("the model's topics are not the JSON asked for: {e}")))
    })?;
    Ok(parsed
        .topics
        .into_iter()
        .take(MAX_TOPICS)
        .filter_map(|t| {
            let mut found: Vec<usize> =
                t.points.into_iter().filter(|n| (1..=shown).contains(n)).map(|n| n - 1).collect();
            found.dedup();
            let videos = found.iter().map(|i| points[*i].video).collect::<HashSet<_>>().len();
            (!found.is_empty() && !t.topic.trim().is_empty()).then(|| Topic {
                topic: t.topic.trim().to_owned(),
                videos,
                moments: found.iter().take(MAX_MOMENTS).map(|i| points[*i].moment.clone()).collect(),
            })
        })
        .collect())
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
