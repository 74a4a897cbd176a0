//! Discovery through the YouTube Data API v3: the channel's uploads playlist (`channels`, then
//! `playlistItems` paged with `pageToken`, 50 a page), titles and publication times included, and
//! each page's durations (`videos?part=contentDetails`, the page's ids in one call: one quota unit).
//! The key goes in the `X-Goog-Api-Key` header, so it never appears in a URL, a log or an error.
//! A quota or rate error is retryable (the attempt is made again after the stage's backoff); a
//! refused key or an unknown channel is not.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{ChannelId, VideoId, VideoMeta};
use crate::stages::StageError;

/// The most items the API gives per page.
const PAGE: usize = 50;

/// Lists the channel's uploads, newest first: all of them, or the first `max` (`0`: all).
pub async fn list(
    http: &reqwest::Client,
    base_url: &str,
    key: &SecretString,
    channel: &ChannelId,
    max: usize,
) -> Result<Vec<VideoMeta>, StageError> {
    let base = base_url.trim_end_matches('/');
    let channels: Channels =
        get(http, key, &format!("{base}/channels"), &[("part", "contentDetails"), ("id", channel.as_str())]).await?;
    let uploads = channels
        .items
        .into_iter()
        .next()
        .map(|c| c.content_details.related_playlists.uploads)
        .ok_or_else(|| StageError::Permanent(format!("channel {channel} not found (YouTube Data API)")))?;
    let mut videos = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page_size = PAGE.to_string();
        let mut query =
            vec![("part", "snippet,contentDetails"), ("playlistId", uploads.as_str()), ("maxResults", &page_size)];
        if let Some(token) = &token {
            query.push(("pageToken", token));
        }
        let page: PlaylistItems = get(http, key, &format!("{base}/playlistItems"), &query).await?;
        let listed = videos.len();
        for item in page.items {
            let Ok(video_id) = VideoId::parse(&item.content_details.video_id) else {
                tracing::warn!(%channel, id = %item.content_details.video_id, "skipping a playlist item with an invalid video id");
                continue;
            };
            let published_at = item.content_details.video_published_at.or(item.snippet.published_at);
            videos.push(VideoMeta { published_at, ..VideoMeta::new(video_id, item.snippet.title) });
            if max > 0 && videos.len() >= max {
                break;
            }
        }
        add_durations(http, key, base, &mut videos[listed..]).await?;
        if max > 0 && videos.len() >= max {
            return Ok(videos);
        }
        match page.next_page_token {
            Some(next) if Some(&next) != token.as_ref() => token = Some(next),
            _ => return Ok(videos),
        }
    }
}

/// Fills in `videos`' durations (at most a page of them: one `videos` call).
async fn add_durations(
    http: &reqwest::Client,
    key: &SecretString,
    base: &str,
    videos: &mut [VideoMeta],
) -> Result<(), StageError> {
    if videos.is_empty() {
        return Ok(());
    }
    let ids = videos.iter().map(|v| v.video_id.as_str()).collect::<Vec<_>>().join(",");
    let found: Videos =
        get(http, key, &format!("{base}/videos"), &[("part", "contentDetails"), ("id", &ids), ("maxResults", "50")])
            .await?;
    let durations: std::collections::HashMap<String, Option<u32>> =
        found.items.into_iter().map(|v| (v.id, parse_duration(&v.content_details.duration))).collect();
    for video in videos {
        video.duration_secs = durations.get(video.video_id.as_str()).copied().flatten();
    }
    Ok(())
}

/// An ISO 8601 duration as the API writes them (`PT1H2M3S`, `P1DT2H`), in seconds; `None` for
/// `P0D` (a live stream or a premiere: no length yet) and anything that is not one.
fn parse_duration(iso: &str) -> Option<u32> {
    let rest = iso.strip_prefix('P')?;
    let (days, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total: u64 = 0;
    for (part, units) in [(days, &[('W', 604_800), ('D', 86_400)][..]), (time, &[('H', 3600), ('M', 60), ('S', 1)][..])]
    {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, scale) = units.iter().find(|(unit, _)| *unit == c)?;
            total += number.parse::<u64>().ok()? * scale;
            number.clear();
        }
        if !number.is_empty() {
            return None;
        }
    }
    u32::try_from(total).ok().filter(|&t| t > 0)
}

/// One API call, its errors classified.
async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    key: &SecretString,
    url: &str,
    query: &[(&str, &str)],
) -> Result<T, StageError> {
    let response = http
        .get(url)
        .query(query)
        .header("x-goog-api-key", key.expose_secret())
        .send()
        .await
        .map_err(|e| StageError::Retryable(format!("YouTube Data API {url}: {}", e.without_url())))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        StageError::Retryable(format!("YouTube Data API {url}: reading the answer: {}", e.without_url()))
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            StageError::Permanent(format!("YouTube Data API {url}: an answer that is not what it documents: {e}"))
        });
    }
    Err(classify(url, status, &body))
}

/// What an error answer means: quota and rate limits and server errors pass (retryable); a
/// refused key, a bad request or a missing resource do not.
fn classify(url: &str, status: reqwest::StatusCode, body: &[u8]) -> StageError {
    let error: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let reason = error.as_ref().and_then(|e| e.error.errors.first()).map_or("", |e| e.reason.as_str()).to_owned();
    let message = error.map(|e| e.error.message).unwrap_or_default();
    let said = format!("YouTube Data API {url} answered {status} {reason}: {message}");
    match reason.as_str() {
        "quotaExceeded" | "dailyLimitExceeded" | "rateLimitExceeded" | "userRateLimitExceeded" => {
            StageError::Retryable(format!(
                "{said} (the Data API quota is spent: the listing is tried again later; quotas reset daily)"
            ))
        }
        "keyInvalid" | "keyExpired" | "forbidden" | "accessNotConfigured" => {
            StageError::Permanent(format!("{said} (check youtube.api_key)"))
        }
        _ if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            StageError::Retryable(said)
        }
        _ => StageError::Permanent(said),
    }
}

#[derive(Deserialize)]
struct Channels {
    #[serde(default)]
    items: Vec<ChannelItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelItem {
    content_details: ChannelDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelDetails {
    related_playlists: RelatedPlaylists,
}

#[derive(Deserialize)]
struct RelatedPlaylists {
    uploads: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlaylistItems {
    #[serde(default)]
    items: Vec<PlaylistItem>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlaylistItem {
    snippet: Snippet,
    content_details: ItemDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snippet {
    #[serde(default)]
    title: String,
    published_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemDetails {
    video_id: String,
    video_published_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct Videos {
    #[serde(default)]
    items: Vec<VideoItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoItem {
    id: String,
    content_details: VideoDetails,
}

#[derive(Deserialize)]
struct VideoDetails {
    #[serde(default)]
    duration: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorReason>,
}

#[derive(Deserialize)]
struct ErrorReason {
    #[serde(default)]
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_from_iso_8601() {
        assert_eq!(parse_duration("PT4M13S"), Some(253));
        assert_eq!(parse_duration("PT1H"), Some(3600));
        assert_eq!(parse_duration("P1DT2H3M"), Some(86_400 + 7200 + 180));
        assert_eq!(parse_duration("PT15S"), Some(15));
        assert_eq!(parse_duration("P0D"), None, "a live stream has no length");
        for junk in ["", "4M13S", "PT4X", "PT12", "PTS"] {
            assert_eq!(parse_duration(junk), None, "{junk}");
        }
    }

    #[test]
    fn quota_errors_are_retryable_and_a_refused_key_is_not() {
        let body =
            |reason: &str| format!(r#"{{"error":{{"code":403,"message":"m","errors":[{{"reason":"{reason}"}}]}}}}"#);
        let forbidden = reqwest::StatusCode::FORBIDDEN;
        let quota = classify("u", forbidden, body("quotaExceeded").as_bytes());
        assert!(quota.is_retryable() && quota.to_string().contains("quota"), "{quota}");
        assert!(!classify("u", forbidden, body("keyInvalid").as_bytes()).is_retryable());
        assert!(!classify("u", reqwest::StatusCode::NOT_FOUND, b"{}").is_retryable());
        assert!(classify("u", reqwest::StatusCode::SERVICE_UNAVAILABLE, b"oops").is_retryable());
    }
}
