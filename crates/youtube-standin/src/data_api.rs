//! The YouTube Data API v3's `channels`, `playlistItems` and `videos` (enough of them for
//! discovery): a channel's uploads playlist is `UU` + its id after `UC`, paged like the real API
//! (`maxResults` up to 50, default 5; `nextPageToken`); `videos` gives up to 50 videos' ISO 8601
//! durations (`P0D`, as for a live stream, where the stand-in video states none). The key comes in `X-Goog-Api-Key` (or `key=`); none
//! answers 403 `forbidden`, and [`QUOTA_EXCEEDED_KEY`] answers 403 `quotaExceeded`, as a spent
//! daily quota does.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::routes::Shared;

const PLAYLIST_NOT_FOUND: &str = "The playlist identified with the request's playlistId parameter cannot be found.";

/// The key whose every call answers `quotaExceeded`.
pub const QUOTA_EXCEEDED_KEY: &str = "stand-in-quota-exceeded";

#[derive(Deserialize)]
pub(crate) struct ChannelsQuery {
    id: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlaylistQuery {
    playlist_id: Option<String>,
    max_results: Option<usize>,
    page_token: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct VideosQuery {
    id: Option<String>,
    key: Option<String>,
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"message": message, "domain": "youtube", "reason": reason}]}});
    (status, axum::Json(body)).into_response()
}

/// The call's key, checked: `None` when it may go on, else the error answer.
fn refused(headers: &HeaderMap, key: Option<&str>) -> Option<Response> {
    let key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()).or(key).filter(|k| !k.is_empty());
    match key {
        None => Some(error(StatusCode::FORBIDDEN, "forbidden", "The request is missing a valid API key.")),
        Some(QUOTA_EXCEEDED_KEY) => Some(error(
            StatusCode::FORBIDDEN,
            "quotaExceeded",
            "The request cannot be completed because you have exceeded your quota.",
        )),
        Some(_) => None,
    }
}

pub(crate) async fn channels(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ChannelsQuery>,
) -> Response {
    if let Some(refused) = refused(&headers, query.key.as_deref()) {
        return refused;
    }
    let id = query.id.unwrap_or_default();
    let items: Vec<_> = shared
        .channels()
        .iter()
        .filter(|c| c.id == id)
        .map(|c| {
            let uploads = format!("UU{}", c.id.get(2..).unwrap_or_default());
            json!({"kind": "youtube#channel", "id": c.id, "contentDetails": {"relatedPlaylists": {"uploads": uploads}}})
        })
        .collect();
    axum::Json(json!({"kind": "youtube#channelListResponse", "items": items})).into_response()
}

pub(crate) async fn playlist_items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<PlaylistQuery>,
) -> Response {
    if let Some(refused) = refused(&headers, query.key.as_deref()) {
        return refused;
    }
    let playlist = query.playlist_id.unwrap_or_default();
    let Some(channel_id) = playlist.strip_prefix("UU").map(|rest| format!("UC{rest}")) else {
        return error(StatusCode::NOT_FOUND, "playlistNotFound", PLAYLIST_NOT_FOUND);
    };
    let per_page = query.max_results.unwrap_or(5).clamp(1, 50);
    let start: usize = match query.page_token.as_deref() {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(start) => start,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalidPageToken",
                    "The request specifies an invalid page token.",
                );
            }
        },
    };
    let channels = shared.channels();
    let Some(channel) = channels.iter().find(|c| c.id == channel_id) else {
        return error(StatusCode::NOT_FOUND, "playlistNotFound", PLAYLIST_NOT_FOUND);
    };
    let items: Vec<_> = channel
        .videos
        .iter()
        .skip(start)
        .take(per_page)
        .map(|v| {
            let published = v.published_at.map(|at| at.to_rfc3339());
            json!({
                "kind": "youtube#playlistItem",
                "snippet": {"title": v.title, "publishedAt": published, "playlistId": playlist},
                "contentDetails": {"videoId": v.id, "videoPublishedAt": published},
            })
        })
        .collect();
    let next = start + per_page;
    let mut body = json!({"kind": "youtube#playlistItemListResponse", "items": items,
        "pageInfo": {"totalResults": channel.videos.len(), "resultsPerPage": per_page}});
    if next < channel.videos.len() {
        body["nextPageToken"] = json!(format!("page-{next}"));
    }
    axum::Json(body).into_response()
}

pub(crate) async fn videos(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<VideosQuery>,
) -> Response {
    if let Some(refused) = refused(&headers, query.key.as_deref()) {
        return refused;
    }
    let ids: Vec<&str> = query.id.as_deref().unwrap_or_default().split(',').filter(|id| !id.is_empty()).collect();
    if ids.len() > 50 {
        return error(StatusCode::BAD_REQUEST, "tooManyIds", "The request specifies more than 50 video ids.");
    }
    let items: Vec<_> = ids
        .iter()
        .filter_map(|id| {
            shared.with_video(id, |v| {
                Some(json!({"kind": "youtube#video", "id": v.id,
                    "contentDetails": {"duration": iso8601_duration(v.duration_secs.unwrap_or(0))}}))
            })
        })
        .collect();
    axum::Json(json!({"kind": "youtube#videoListResponse", "items": items})).into_response()
}

/// `PT1H2M3S`, as the API writes durations (`P0D` for none).
fn iso8601_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "P0D".into();
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::from("PT");
    for (n, unit) in [(h, 'H'), (m, 'M'), (s, 'S')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}
