//! Searching what was said and summarized ([`search`]), and filing what is already stored in the
//! search index again ([`reindex`]: for data stored before the index existed, or after it was
//! lost). The index itself lives in the job store; the stages keep it current
//! (`StageContext::store_transcript` / `store_summary`).

use std::collections::HashSet;

use crate::domain::search::{IndexedVideo, PassageKind, SearchHit, SearchQuery, summary_passages, transcript_passages};
use crate::domain::{ChannelId, VideoRecord};
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
    let mut done = Reindexed::default();
    let mut seen = HashSet::new();
    for (channel_id, video) in job_videos(store, None).await? {
        if !seen.insert(video.video_id.clone()) {
            continue;
        }
        let filed = IndexedVideo { video_id: video.video_id.clone(), channel_id, title: video.title.clone() };
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
    Ok(done)
}

/// Every job's record of every video, with the job's channel: the newest jobs' first (all jobs,
/// or `channel`'s). A video that several jobs hold comes once per job.
pub async fn job_videos(
    store: &dyn JobStore,
    channel: Option<&ChannelId>,
) -> Result<Vec<(ChannelId, VideoRecord)>, PortError> {
    const PAGE: u32 = 100;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (jobs, total) = store.list_jobs(channel, PAGE, offset).await?;
        for job in &jobs {
            out.extend(store.list_videos(job.job_id).await?.into_iter().map(|v| (job.channel_id.clone(), v)));
        }
        offset += PAGE;
        if jobs.is_empty() || u64::from(offset) >= total {
            return Ok(out);
        }
    }
}
