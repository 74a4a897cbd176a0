//! Summarization: the stored transcript → a stored summary with key points and moment links, by
//! the built-in offline summarizer ([`textrank`]) or any OpenAI-compatible chat model ([`llm`],
//! map-reduce over token-budget [`chunk`]s).

pub mod chunk;
pub mod llm;
pub mod summarizer;
pub mod textrank;

use std::sync::Arc;

use async_trait::async_trait;

pub use summarizer::{NO_SPEECH_SUMMARIZER, NO_SPEECH_SUMMARY, Summarizer, TextRank, summarize_transcript};

use super::{StageContext, StageError, StageResult, StageWork, video_of};
use crate::domain::{DomainEvent, EventPayload, StageCommand};

pub struct Summarization {
    ctx: StageContext,
    summarizer: Arc<dyn Summarizer>,
}

impl Summarization {
    pub fn new(ctx: StageContext) -> Result<Self, StageError> {
        let summarizer = summarizer::from_settings(&ctx.settings.llm, &ctx.settings.summary);
        Ok(Self { ctx, summarizer })
    }
}

#[async_trait]
impl StageWork for Summarization {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let video_id = video_of(command)?;
        let summary = match self.ctx.artifacts.get_summary(video_id).await? {
            // This job's, or (unless forced) one another job made meanwhile: not made again.
            Some(existing) if self.ctx.may_reuse(command, existing.job_id).await? => existing,
            _ => {
                let transcript = self
                    .ctx
                    .artifacts
                    .get_transcript(video_id)
                    .await?
                    .ok_or_else(|| StageError::Permanent(format!("no transcript stored for {video_id}")))?;
                let mut summary = summarize_transcript(self.summarizer.as_ref(), &transcript).await?;
                summary.job_id = command.job_id;
                self.ctx.store_summary(&summary).await?;
                summary
            }
        };
        Ok(vec![DomainEvent::new(
            command.job_id,
            Some(video_id.clone()),
            EventPayload::SummarizationCompleted { summarizer: summary.summarizer },
        )])
    }
}
