//! Searching what was said and summarized ([`search`]), and filing what is already stored in the
//! search index again ([`reindex`]: for data stored before the index existed, or after it was
//! lost). The index itself lives in the job store; the stages keep it current
//! (`StageContext::store_transcript` / `store_summary`).

use std::collections::HashSet;

use crate::domain::ChannelId;
use crate::domain::search::{IndexedVideo, PassageKind, SearchHit, SearchQuery, summary_passages, transcript_passages};
use crate::ports::{ArtifactStore, JobStore, PortError};

/// The most hits one search returns.
pub const MAX_HITS: u32 = 100;

/// The passages that match `text` (in `channel`'s videos only, when given), best first.
pub async fn search(
    store: &dyn JobStore,
    text: &str,
    channel: Option<ChannelId>,
    limit: u32,
) -> Result<Vec<SearchHit>, PortError> {
    let query = SearchQuery { text: text.to_owned(), channel, limit: limit.clamp(1, MAX_HITS), any: false };
    Ok(store.search(&query).await?.into_iter().map(SearchHit::from).collect())
}

/// What [`reindex`] filed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reindexed {
    pub videos: usize,
    pub transcripts: usize,
    pub summaries: usize,
}

/// Files every stored transcript and summary of every job's videos in the search index again
/// (each video once, under its newest job's channel and title).
pub async fn reindex(store: &dyn JobStore, artifacts: &dyn ArtifactStore) -> Result<Reindexed, PortError> {
    const PAGE: u32 = 100;
    let mut done = Reindexed::default();
    let mut seen = HashSet::new();
    let mut offset = 0;
    loop {
        let (jobs, total) = store.list_jobs(None, PAGE, offset).await?;
        for job in &jobs {
            for video in store.list_videos(job.job_id).await? {
                if !seen.insert(video.video_id.clone()) {
                    continue;
                }
                let filed = IndexedVideo {
                    video_id: video.video_id.clone(),
                    channel_id: job.channel_id.clone(),
                    title: video.title.clone(),
                };
                let mut any = false;
                if let Some(transcript) = artifacts.get_transcript(&video.video_id).await? {
                    let passages = transcript_passages(&transcript.segments);
                    store.index_passages(&filed, PassageKind::Transcript, &passages).await?;
                    done.transcripts += 1;
                    any = true;
                }
                if let Some(summary) = artifacts.get_summary(&video.video_id).await? {
                    store.index_passages(&filed, PassageKind::Summary, &summary_passages(&summary)).await?;
                    done.summaries += 1;
                    any = true;
                }
                done.videos += usize::from(any);
            }
        }
        offset += PAGE;
        if jobs.is_empty() || u64::from(offset) >= total {
            return Ok(done);
        }
    }
}
