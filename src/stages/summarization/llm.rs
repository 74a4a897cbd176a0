//! Summaries from an OpenAI-compatible chat model (OpenAI, Ollama, vLLM, …), map-reduce over
//! token-budget chunks: each chunk is summarized with key points that cite a segment number, then
//! the chunk summaries are merged. Nothing is truncated. The model cites segments; start times and
//! links come from the transcript.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestSystemMessageContent,
    ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent, CreateChatCompletionRequest,
};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::chunk::{Chunk, chunk_segments};
use super::summarizer::{Draft, Summarizer};
use super::textrank::KeyPointCandidate;
use crate::domain::Segment;
use crate::stages::StageError;
use crate::stages::settings::LlmSettings;

const MAP_PROMPT: &str = "You summarize part of a video transcript. Each line starts with a segment number in \
square brackets. Answer with JSON only, no prose around it: {\"summary\": \"<2-4 sentence summary of this part>\", \
\"key_points\": [{\"text\": \"<one key point>\", \"segment\": <number of the segment where it is said>}]}. \
Give at most MAX key points. Use only segment numbers that appear in the text.";

const REDUCE_PROMPT: &str = "You merge summaries of consecutive parts of one video into a single summary of the \
whole video, 3-6 sentences, without repeating yourself. Answer with JSON only: {\"summary\": \"...\"}.";

/// An async-openai client for `base_url` with a request timeout.
pub fn openai_client(base_url: &str, api_key: Option<&SecretString>, timeout_secs: u64) -> Client<OpenAIConfig> {
    let mut config = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
    // Local servers (Ollama, vLLM) need no key, but the header must not be empty for some.
    config = config.with_api_key(api_key.map_or("none", |k| k.expose_secret()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(timeout_secs)).build().unwrap_or_default();
    Client::with_config(config).with_http_client(http)
}

/// One chat completion: a system and a user message, the answer's text.
pub async fn chat(
    client: &Client<OpenAIConfig>,
    model: &str,
    temperature: f32,
    system: &str,
    user: String,
) -> Result<String, StageError> {
    let messages: Vec<ChatCompletionRequestMessage> = vec![
        ChatCompletionRequestSystemMessage::from(ChatCompletionRequestSystemMessageContent::from(system)).into(),
        ChatCompletionRequestUserMessage::from(ChatCompletionRequestUserMessageContent::from(user)).into(),
    ];
    let request = CreateChatCompletionRequest {
        model: model.to_owned(),
        messages,
        temperature: Some(temperature),
        ..Default::default()
    };
    let response = client.chat().create(request).await.map_err(classify_openai_error)?;
    response
        .choices
        .into_iter()
        .find_map(|c| c.message.content)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| StageError::Retryable("the model answered with no content".into()))
}

/// Classifies an API failure for the retry policy.
pub fn classify_openai_error(e: OpenAIError) -> StageError {
    match &e {
        OpenAIError::ApiError(api) => {
            let status = api.status_code;
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                StageError::Retryable(format!("model API error: {e}"))
            } else {
                StageError::Permanent(format!("model API refused the request: {e}"))
            }
        }
        OpenAIError::Reqwest(_) | OpenAIError::StreamError(_) => {
            StageError::Retryable(format!("model API unreachable: {e}"))
        }
        OpenAIError::JSONDeserialize(..)
        | OpenAIError::FileSaveError(_)
        | OpenAIError::FileReadError(_)
        | OpenAIError::InvalidArgument(_) => StageError::Permanent(format!("model API: {e}")),
    }
}

pub struct LlmSummarizer {
    client: Client<OpenAIConfig>,
    model: String,
    temperature: f32,
    budget: usize,
    max_key_points: usize,
}

impl LlmSummarizer {
    pub fn new(settings: &LlmSettings, max_key_points: usize) -> Self {
        Self {
            client: openai_client(&settings.base_url, settings.api_key.as_ref(), settings.timeout_secs),
            model: settings.model.clone(),
            temperature: settings.temperature,
            budget: settings.max_chunk_tokens,
            max_key_points,
        }
    }

    async fn chat(&self, system: &str, user: String) -> Result<String, StageError> {
        chat(&self.client, &self.model, self.temperature, system, user).await
    }

    async fn map(&self, chunk: &Chunk, segments: &[Segment]) -> Result<Draft, StageError> {
        let prompt = MAP_PROMPT.replace("MAX", &self.max_key_points.to_string());
        let answer = self.chat(&prompt, chunk.text.clone()).await?;
        Ok(parse_map_answer(&answer, chunk, segments))
    }
}

#[async_trait]
impl Summarizer for LlmSummarizer {
    fn name(&self) -> String {
        format!("llm:{}", self.model)
    }

    async fn summarize(&self, segments: &[Segment]) -> Result<Draft, StageError> {
        let chunks = chunk_segments(segments, self.budget);
        let mut parts = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            parts.push(self.map(chunk, segments).await?);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let key_points = spread(parts.iter().flat_map(|p| p.key_points.iter().cloned()).collect(), self.max_key_points);
        // Reduce; if the merged summaries themselves exceed the budget, merge them in rounds.
        let mut summaries: Vec<String> = parts.into_iter().map(|p| p.summary).collect();
        while summaries.len() > 1 {
            let mut next = Vec::new();
            let mut batch = String::new();
            for (i, s) in summaries.iter().enumerate() {
                let piece = format!("Part {}: {s}\n\n", i + 1);
                if !batch.is_empty()
                    && super::chunk::estimate_tokens(&batch) + super::chunk::estimate_tokens(&piece) > self.budget
                {
                    next.push(self.reduce(std::mem::take(&mut batch)).await?);
                }
                batch.push_str(&piece);
            }
            next.push(self.reduce(batch).await?);
            if next.len() >= summaries.len() {
                // No progress possible (a single part over budget): keep what the model gave.
                summaries = next;
                break;
            }
            summaries = next;
        }
        Ok(Draft { summary: summaries.join(" "), key_points })
    }
}

impl LlmSummarizer {
    async fn reduce(&self, parts: String) -> Result<String, StageError> {
        let answer = self.chat(REDUCE_PROMPT, parts).await?;
        Ok(parse_reduce_answer(&answer))
    }
}

#[derive(Deserialize)]
struct MapAnswer {
    summary: String,
    #[serde(default)]
    key_points: Vec<MapKeyPoint>,
}

#[derive(Deserialize)]
struct MapKeyPoint {
    text: String,
    #[serde(default)]
    segment: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ReduceAnswer {
    summary: String,
}

/// The JSON object in a model's answer (models like to wrap it in ``` fences or prose).
fn json_object(answer: &str) -> Option<&str> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    (end > start).then(|| &answer[start..=end])
}

/// Reads a map answer; key points cite segments of the chunk, or are matched to the chunk segment
/// sharing the most words when the citation is missing or outside the chunk. A non-JSON answer is
/// kept as the summary with no key points.
fn parse_map_answer(answer: &str, chunk: &Chunk, segments: &[Segment]) -> Draft {
    let Some(parsed) = json_object(answer).and_then(|j| serde_json::from_str::<MapAnswer>(j).ok()) else {
        return Draft { summary: answer.trim().to_owned(), key_points: Vec::new() };
    };
    let key_points = parsed
        .key_points
        .into_iter()
        .filter(|k| !k.text.trim().is_empty())
        .map(|k| {
            let cited = k
                .segment
                .as_ref()
                .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim_matches(['[', ']']).parse().ok())))
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| chunk.segments.contains(n));
            let index = cited.unwrap_or_else(|| best_match(&k.text, chunk, segments));
            KeyPointCandidate { text: k.text.trim().to_owned(), start: segments[index].start }
        })
        .collect();
    Draft { summary: parsed.summary.trim().to_owned(), key_points }
}

fn parse_reduce_answer(answer: &str) -> String {
    json_object(answer)
        .and_then(|j| serde_json::from_str::<ReduceAnswer>(j).ok())
        .map_or_else(|| answer.trim().to_owned(), |r| r.summary.trim().to_owned())
}

/// The segment of the chunk sharing the most (lowercased) words with `text`.
fn best_match(text: &str, chunk: &Chunk, segments: &[Segment]) -> usize {
    let words = |s: &str| -> std::collections::HashSet<String> {
        s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2).map(str::to_lowercase).collect()
    };
    let wanted = words(text);
    chunk
        .segments
        .clone()
        .max_by_key(|&i| (wanted.intersection(&words(&segments[i].text)).count(), std::cmp::Reverse(i)))
        .unwrap_or(chunk.segments.start)
}

/// At most `max` key points spread evenly over the video, in time order.
fn spread(mut points: Vec<KeyPointCandidate>, max: usize) -> Vec<KeyPointCandidate> {
    points.sort_by(|a, b| a.start.total_cmp(&b.start));
    if points.len() <= max {
        return points;
    }
    if max == 0 {
        return Vec::new();
    }
    let step = points.len() as f64 / max as f64;
    (0..max).map(|i| points[(i as f64 * step) as usize].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments() -> Vec<Segment> {
        (0..6)
            .map(|i| Segment {
                start: f64::from(i) * 10.0,
                end: f64::from(i) * 10.0 + 9.0,
                text: format!("topic{i} words here"),
            })
            .collect()
    }

    #[test]
    fn map_answers_cite_segments_of_the_chunk() {
        let segs = segments();
        let chunk = Chunk { segments: 2..5, text: String::new() };
        let answer = "```json\n{\"summary\": \"S\", \"key_points\": [\
            {\"text\": \"a\", \"segment\": 3}, {\"text\": \"topic4 matters\", \"segment\": 99}, \
            {\"text\": \"c\", \"segment\": \"[2]\"}, {\"text\": \"  \"}]}\n```";
        let draft = parse_map_answer(answer, &chunk, &segs);
        assert_eq!(draft.summary, "S");
        let starts: Vec<f64> = draft.key_points.iter().map(|k| k.start).collect();
        assert_eq!(starts, [30.0, 40.0, 20.0], "out-of-chunk citation matched by words");
    }

    #[test]
    fn prose_answers_are_kept_without_key_points() {
        let chunk = Chunk { segments: 0..1, text: String::new() };
        let draft = parse_map_answer("This video is about bees.", &chunk, &segments());
        assert_eq!(draft.summary, "This video is about bees.");
        assert!(draft.key_points.is_empty());
        assert_eq!(parse_reduce_answer("{\"summary\": \"merged\"}"), "merged");
        assert_eq!(parse_reduce_answer("just text"), "just text");
    }

    #[test]
    fn key_points_are_spread_in_time_order() {
        let points: Vec<_> =
            (0..10).rev().map(|i| KeyPointCandidate { text: i.to_string(), start: f64::from(i) }).collect();
        let picked = spread(points.clone(), 3);
        assert_eq!(picked.iter().map(|k| k.start).collect::<Vec<_>>(), [0.0, 3.0, 6.0]);
        assert_eq!(spread(points, 20).len(), 10);
    }
}
