//! Discovery: the channel's videos, from its Atom feed (default), from `yt-dlp --flat-playlist`
//! (the full history), or from the YouTube Data API ([`data_api`]: the full history, paged). Records them for the job and reports `video_discovered` for each.

pub mod data_api;
pub mod feed;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{StageContext, StageError, StageResult, StageWork, fill, process};
use crate::domain::subscriptions::Validators;
use crate::domain::{ChannelId, DomainEvent, EventPayload, StageCommand, VideoId, VideoMeta};
use crate::stages::settings::{DiscoveryMode, YoutubeSettings};

/// Why a channel named by handle could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("no channel has the handle @{0}")]
    NotFound(String),
    #[error("could not resolve @{handle}: {reason}")]
    Unavailable { handle: String, reason: String },
}

/// The id of the channel whose handle is `handle` (without the `@`), read from its page
/// (`youtube.handle_url`): the canonical link `…/channel/UC…`, else the `externalId`/`channelId`
/// the page's data carries.
pub async fn resolve_handle(youtube: &YoutubeSettings, handle: &str) -> Result<ChannelId, HandleError> {
    let unavailable = |reason: String| HandleError::Unavailable { handle: handle.to_owned(), reason };
    let url = fill(&youtube.handle_url, "handle", handle);
    let http = http_client(youtube).map_err(|e| unavailable(e.to_string()))?;
    let response = http.get(&url).send().await.map_err(|e| unavailable(format!("fetching {url}: {e}")))?;
    match response.status() {
        reqwest::StatusCode::NOT_FOUND => return Err(HandleError::NotFound(handle.to_owned())),
        status if !status.is_success() => return Err(unavailable(format!("{url} answered {status}"))),
        _ => {}
    }
    let page = response.text().await.map_err(|e| unavailable(format!("reading {url}: {e}")))?;
    channel_id_in_page(&page).ok_or_else(|| unavailable(format!("{url} names no channel id")))
}

fn channel_id_in_page(page: &str) -> Option<ChannelId> {
    static PATTERNS: std::sync::LazyLock<[regex::Regex; 2]> = std::sync::LazyLock::new(|| {
        [
            regex::Regex::new(r#"<link rel="canonical" href="[^"]*/channel/(UC[A-Za-z0-9_-]{22})""#).expect("regex"),
            regex::Regex::new(r#""(?:externalId|channelId)"\s*:\s*"(UC[A-Za-z0-9_-]{22})""#).expect("regex"),
        ]
    });
    PATTERNS.iter().find_map(|re| re.captures(page)).and_then(|c| ChannelId::parse(&c[1]).ok())
}

/// What a (conditional) request for a channel's feed answered.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedAnswer {
    /// `304 Not Modified`: nothing changed since the validators were given.
    NotModified,
    /// The feed's uploads, newest first, and its validators for the next request.
    Listed { videos: Vec<VideoMeta>, validators: Validators },
}

/// Requests channel `channel`'s feed (`template`: `youtube.feed_url`), conditionally when
/// `validators` has any (`If-None-Match`, `If-Modified-Since`). 404 is a permanent error (no such
/// channel), 5xx and 429 retryable ones.
pub async fn fetch_feed(
    http: &reqwest::Client,
    template: &str,
    channel: &ChannelId,
    validators: &Validators,
) -> Result<FeedAnswer, StageError> {
    let url = fill(template, "channel_id", channel.as_str());
    let mut request = http.get(&url);
    if let Some(etag) = &validators.etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    if let Some(modified) = &validators.last_modified {
        request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
    }
    let response =
        request.send().await.map_err(|e| StageError::Retryable(format!("fetching the channel feed {url}: {e}")))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(FeedAnswer::NotModified);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(StageError::Permanent(format!("channel {channel} not found: its feed {url} answered 404")));
    }
    if !status.is_success() {
        let msg = format!("the channel feed {url} answered {status}");
        return Err(if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            StageError::Retryable(msg)
        } else {
            StageError::Permanent(msg)
        });
    }
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let validators =
        Validators { etag: header(reqwest::header::ETAG), last_modified: header(reqwest::header::LAST_MODIFIED) };
    let body =
        response.text().await.map_err(|e| StageError::Retryable(format!("reading the channel feed {url}: {e}")))?;
    let parsed = feed::parse_feed(&body)
        .map_err(|e| StageError::Permanent(format!("the channel feed {url} is not a valid feed: {e}")))?;
    let videos = parsed
        .entries
        .into_iter()
        .filter_map(|entry| match VideoId::parse(&entry.video_id) {
            Ok(video_id) => {
                Some(VideoMeta { published_at: entry.published_at, ..VideoMeta::new(video_id, entry.title) })
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "skipping feed entry with an invalid video id");
                None
            }
        })
        .collect();
    Ok(FeedAnswer::Listed { videos, validators })
}

/// A client for channels' feeds (subscriptions poll with it).
#[derive(Clone)]
pub struct UploadsFeed {
    http: reqwest::Client,
    template: String,
}

impl UploadsFeed {
    pub fn new(youtube: &YoutubeSettings) -> Result<Self, StageError> {
        Ok(Self { http: http_client(youtube)?, template: youtube.feed_url.clone() })
    }

    /// Channel `channel`'s feed, conditionally on `validators`.
    pub async fn poll(&self, channel: &ChannelId, validators: &Validators) -> Result<FeedAnswer, StageError> {
        fetch_feed(&self.http, &self.template, channel, validators).await
    }
}

fn http_client(youtube: &YoutubeSettings) -> Result<reqwest::Client, StageError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(youtube.request_timeout_secs))
        .user_agent(concat!("tubesum/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StageError::Permanent(format!("http client: {e}")))
}

pub struct Discovery {
    ctx: StageContext,
    http: reqwest::Client,
}

impl Discovery {
    pub fn new(ctx: StageContext) -> Result<Self, StageError> {
        let http = http_client(&ctx.settings.youtube)?;
        Ok(Self { ctx, http })
    }

    async fn list_feed(&self, channel: &ChannelId) -> Result<Vec<VideoMeta>, StageError> {
        let template = &self.ctx.settings.youtube.feed_url;
        match fetch_feed(&self.http, template, channel, &Validators::default()).await? {
            FeedAnswer::Listed { videos, .. } => Ok(videos),
            FeedAnswer::NotModified => Err(StageError::Retryable(format!(
                "the feed of {channel} answered 304 Not Modified to an unconditional request"
            ))),
        }
    }

    async fn list_yt_dlp(&self, channel: &ChannelId) -> Result<Vec<VideoMeta>, StageError> {
        let settings = &self.ctx.settings;
        let url = fill(&settings.youtube.channel_url, "channel_id", channel.as_str());
        let timeout = settings.stages.timeout(crate::domain::Stage::Discovery);
        let output = process::run(
            &settings.download.yt_dlp,
            ["--ignore-config", "--flat-playlist", "-J", "--no-warnings", "--", url.as_str()],
            timeout,
        )
        .await
        .map_err(|e| classify_listing_error(channel, e))?;
        parse_listing(&output.stdout)
    }
}

#[async_trait]
impl StageWork for Discovery {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let job = self
            .ctx
            .store
            .get_job(command.job_id)
            .await?
            .ok_or_else(|| StageError::Permanent(format!("job {} does not exist", command.job_id)))?;
        let mut videos = match self.ctx.settings.discovery.mode {
            DiscoveryMode::Feed => self.list_feed(&job.channel_id).await?,
            DiscoveryMode::YtDlp => self.list_yt_dlp(&job.channel_id).await?,
            DiscoveryMode::DataApi => {
                let youtube = &self.ctx.settings.youtube;
                let key = youtube.api_key.as_ref().ok_or_else(|| {
                    StageError::Permanent("discovery.mode = \"data_api\" needs youtube.api_key".into())
                })?;
                let max = self.ctx.settings.discovery.max_videos;
                data_api::list(&self.http, &youtube.data_api_url, key, &job.channel_id, max).await?
            }
        };
        dedup(&mut videos);
        let max = self.ctx.settings.discovery.max_videos;
        if max > 0 {
            videos.truncate(max);
        }
        // Committed before the events: a redelivery re-adds nothing (the store ignores known ids).
        self.ctx.store.add_videos(job.job_id, &videos).await?;
        let mut events: Vec<DomainEvent> = videos
            .iter()
            .map(|v| {
                DomainEvent::new(
                    job.job_id,
                    Some(v.video_id.clone()),
                    EventPayload::VideoDiscovered { title: v.title.clone(), published_at: v.published_at },
                )
            })
            .collect();
        events.push(DomainEvent::new(job.job_id, None, EventPayload::DiscoveryCompleted { videos: videos.len() }));
        Ok(events)
    }
}

fn dedup(videos: &mut Vec<VideoMeta>) {
    let mut seen = std::collections::HashSet::new();
    videos.retain(|v| seen.insert(v.video_id.clone()));
}

fn classify_listing_error(channel: &ChannelId, e: process::ProcessError) -> StageError {
    match &e {
        process::ProcessError::Failed { stderr, .. }
            if stderr.contains("404") || stderr.contains("does not exist") || stderr.contains("not found") =>
        {
            StageError::Permanent(format!("channel {channel} not found: {e}"))
        }
        process::ProcessError::NotFound { .. } => StageError::Permanent(e.to_string()),
        process::ProcessError::Failed { .. } | process::ProcessError::TimedOut { .. } => {
            StageError::Retryable(format!("listing channel {channel} with yt-dlp: {e}"))
        }
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    entries: Vec<ListingEntry>,
}

#[derive(Deserialize)]
struct ListingEntry {
    id: Option<String>,
    url: Option<String>,
    title: Option<String>,
    timestamp: Option<i64>,
    duration: Option<f64>,
    #[serde(default)]
    entries: Vec<ListingEntry>,
}

/// Parses `yt-dlp --flat-playlist -J` output: entries' `id` when it is a video id, else the `v=`
/// parameter of their `url`. Nested playlists (a channel's "Videos"/"Shorts" tabs) are flattened.
pub fn parse_listing(json: &[u8]) -> Result<Vec<VideoMeta>, StageError> {
    let listing: Listing = serde_json::from_slice(json)
        .map_err(|e| StageError::Permanent(format!("yt-dlp listing is not valid JSON: {e}")))?;
    let mut out = Vec::new();
    flatten(&listing.entries, &mut out);
    Ok(out)
}

fn flatten(entries: &[ListingEntry], out: &mut Vec<VideoMeta>) {
    for entry in entries {
        if !entry.entries.is_empty() {
            flatten(&entry.entries, out);
            continue;
        }
        let id = entry
            .id
            .as_deref()
            .and_then(|id| VideoId::parse(id).ok())
            .or_else(|| entry.url.as_deref().and_then(video_id_from_url));
        if let Some(video_id) = id {
            out.push(VideoMeta {
                title: entry.title.clone().unwrap_or_else(|| video_id.to_string()),
                published_at: entry.timestamp.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
                duration_secs: entry.duration.filter(|d| d.is_finite() && *d > 0.0).map(|d| d.round() as u32),
                video_id,
            });
        }
    }
}

/// The `v` query parameter of a watch URL, if it is a valid video id.
pub fn video_id_from_url(url: &str) -> Option<VideoId> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "v")
        .and_then(|(_, v)| VideoId::parse(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_page_names_its_id() {
        let canonical = r#"<link rel="canonical" href="https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv">"#;
        assert_eq!(channel_id_in_page(canonical).unwrap().as_str(), "UCabcdefghijklmnopqrstuv");
        let data = r#"var ytInitialData = {"metadata":{"channelMetadataRenderer":{"externalId": "UC_-0123456789abcdefghij"}}}"#;
        assert_eq!(channel_id_in_page(data).unwrap().as_str(), "UC_-0123456789abcdefghij");
        assert!(channel_id_in_page("<html>no id here</html>").is_none());
    }

    #[test]
    fn listing_takes_ids_or_watch_urls_and_flattens_tabs() {
        let json = br#"{"_type":"playlist","entries":[
            {"id":"aaaaaaaaaaa","title":"A","url":"https://www.youtube.com/watch?v=aaaaaaaaaaa","duration":125.4},
            {"_type":"url","url":"http://127.0.0.1:9/watch?v=bbbbbbbbbbb&x=1","title":"B"},
            {"id":"not-a-video-id","url":"http://127.0.0.1:9/other"},
            {"_type":"playlist","entries":[{"id":"ccccccccccc","timestamp":1700000000}]}
        ]}"#;
        let videos = parse_listing(json).unwrap();
        let ids: Vec<_> = videos.iter().map(|v| v.video_id.as_str()).collect();
        assert_eq!(ids, ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"]);
        assert_eq!(videos[1].title, "B");
        assert_eq!(videos[2].title, "ccccccccccc");
        assert!(videos[2].published_at.is_some());
        assert_eq!((videos[0].duration_secs, videos[1].duration_secs), (Some(125), None));
        assert!(parse_listing(b"not json").is_err());
    }

    #[test]
    fn duplicates_are_dropped_keeping_order() {
        let v = |id: &str| VideoMeta::new(VideoId::parse(id).unwrap(), id);
        let mut videos = vec![v("aaaaaaaaaaa"), v("bbbbbbbbbbb"), v("aaaaaaaaaaa")];
        dedup(&mut videos);
        assert_eq!(videos.len(), 2);
    }
}
