//! The [`Summarizer`] trait and its offline implementation, [`TextRank`]; the LLM one is in
//! [`super::llm`]. Key points always carry the start of a transcript segment; their links are
//! computed here, never written by a model.

use std::sync::Arc;

use async_trait::async_trait;

use super::{llm, textrank};
use crate::domain::{KeyPoint, Segment, Summary, Transcript, moment_url};
use crate::stages::StageError;
use crate::stages::settings::{LlmSettings, SummarySettings};

/// What a summary says when there was no speech to summarize.
pub const NO_SPEECH_SUMMARY: &str = "No speech was detected in this video, so there is nothing to summarize.";
pub const NO_SPEECH_SUMMARIZER: &str = "none (no speech detected)";

/// A summary before it is tied to a video: key points with their start times.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub summary: String,
    pub key_points: Vec<textrank::KeyPointCandidate>,
}

#[async_trait]
pub trait Summarizer: Send + Sync + 'static {
    /// `textrank` or `llm:<model>`.
    fn name(&self) -> String;
    /// Summarizes non-empty segments.
    async fn summarize(&self, segments: &[Segment]) -> Result<Draft, StageError>;
}

/// The summarizer the settings ask for: the LLM when `llm.base_url` is set, else TextRank.
pub fn from_settings(llm: &LlmSettings, summary: &SummarySettings) -> Arc<dyn Summarizer> {
    if llm.enabled() {
        Arc::new(llm::LlmSummarizer::new(llm, summary.max_key_points))
    } else {
        Arc::new(TextRank { max_sentences: summary.max_sentences, max_key_points: summary.max_key_points })
    }
}

/// The offline, extractive summarizer.
pub struct TextRank {
    pub max_sentences: usize,
    pub max_key_points: usize,
}

#[async_trait]
impl Summarizer for TextRank {
    fn name(&self) -> String {
        "textrank".into()
    }

    async fn summarize(&self, segments: &[Segment]) -> Result<Draft, StageError> {
        let segments = segments.to_vec();
        let (sentences, points) = (self.max_sentences, self.max_key_points);
        // O(n²) in sentences: off the async runtime.
        let extractive = tokio::task::spawn_blocking(move || textrank::summarize(&segments, sentences, points))
            .await
            .map_err(|e| StageError::Retryable(format!("summarizer crashed: {e}")))?;
        Ok(match extractive {
            Some(e) => Draft { summary: e.summary, key_points: e.key_points },
            None => Draft { summary: NO_SPEECH_SUMMARY.into(), key_points: Vec::new() },
        })
    }
}

/// Summarizes a transcript into a stored summary (the no-speech case included).
pub async fn summarize_transcript(summarizer: &dyn Summarizer, transcript: &Transcript) -> Result<Summary, StageError> {
    let segments: Vec<Segment> = transcript.segments.iter().filter(|s| !s.text.trim().is_empty()).cloned().collect();
    if segments.is_empty() {
        return Ok(Summary {
            video_id: transcript.video_id.clone(),
            summary: NO_SPEECH_SUMMARY.into(),
            key_points: Vec::new(),
            summarizer: NO_SPEECH_SUMMARIZER.into(),
            job_id: transcript.job_id,
        });
    }
    let draft = summarizer.summarize(&segments).await?;
    let key_points = draft
        .key_points
        .into_iter()
        .map(|k| KeyPoint { url: moment_url(&transcript.video_id, k.start), text: k.text, start: k.start })
        .collect();
    Ok(Summary {
        video_id: transcript.video_id.clone(),
        summary: draft.summary,
        key_points,
        summarizer: summarizer.name(),
        job_id: transcript.job_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobId, TranscriptSource, VideoId};

    fn transcript(segments: Vec<Segment>) -> Transcript {
        Transcript {
            video_id: VideoId::parse("aaaaaaaaaaa").unwrap(),
            source: TranscriptSource::Whisper,
            language: Some("en".into()),
            text: String::new(),
            segments,
            job_id: JobId::new(),
        }
    }

    #[tokio::test]
    async fn no_speech_is_summarized_as_such() {
        let summarizer = TextRank { max_sentences: 3, max_key_points: 3 };
        let s = summarize_transcript(&summarizer, &transcript(vec![])).await.unwrap();
        assert_eq!(s.summary, NO_SPEECH_SUMMARY);
        assert!(s.key_points.is_empty());
        assert_eq!(s.summarizer, NO_SPEECH_SUMMARIZER);
    }

    #[tokio::test]
    async fn key_points_link_to_their_segment_start() {
        let seg = |start: f64, text: &str| Segment { start, end: start + 5.0, text: text.into() };
        let t = transcript(vec![
            seg(0.0, "Honey bees collect nectar from flowers across the meadow."),
            seg(5.0, "The bees store the nectar in wax cells inside the hive."),
            seg(10.0, "Bees fan their wings to evaporate water from the nectar, which turns into honey."),
            seg(65.5, "Finally the bees cap the honey cells with fresh wax."),
        ]);
        let s = summarize_transcript(&TextRank { max_sentences: 2, max_key_points: 3 }, &t).await.unwrap();
        assert_eq!(s.summarizer, "textrank");
        assert!(!s.summary.is_empty());
        assert!(!s.key_points.is_empty());
        for k in &s.key_points {
            assert!(t.segments.iter().any(|seg| seg.start == k.start), "{k:?}");
            assert_eq!(k.url, moment_url(&t.video_id, k.start));
        }
    }
}
