//! The stand-in's routes: what each YouTube URL answers (see the table in the crate docs).

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::feed::{FeedEntry, render_feed};
use crate::vtt::render_vtt;
use crate::{StandInChannel, StandInMedia, StandInVideo};

/// What the server and its handle share.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) channels: RwLock<Vec<StandInChannel>>,
    pub(crate) requests: Mutex<Vec<String>>,
}

#[derive(Deserialize)]
struct FeedQuery {
    channel_id: Option<String>,
}

#[derive(Deserialize)]
struct WatchQuery {
    v: Option<String>,
}

/// What `/watch` should do for a video, copied out of the lock.
enum WatchAnswer {
    Page(String),
    File(StandInMedia),
}

impl Shared {
    pub(crate) fn video_url(&self, video_id: &str) -> String {
        format!("{}/watch?v={video_id}", self.base_url)
    }

    pub(crate) fn channels(&self) -> std::sync::RwLockReadGuard<'_, Vec<StandInChannel>> {
        self.channels.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with_video<T>(&self, video_id: &str, f: impl FnOnce(&StandInVideo) -> Option<T>) -> Option<T> {
        self.channels().iter().flat_map(|c| &c.videos).find(|v| v.id == video_id).and_then(f)
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/feeds/videos.xml", get(feed))
        .route("/watch", get(watch))
        .route("/media/{file}", get(media_file))
        .route("/captions/{file}", get(captions))
        .route("/channel/{channel_id}/videos", get(channel_videos))
        .route("/youtube/v3/channels", get(crate::data_api::channels))
        .route("/youtube/v3/playlistItems", get(crate::data_api::playlist_items))
        .route("/youtube/v3/videos", get(crate::data_api::videos))
        .route("/{handle_page}", get(handle_page))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), log_request))
        .with_state(shared)
}

async fn log_request(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let uri = request.uri();
    let target = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    tracing::debug!(method = %request.method(), target = %target, "youtube stand-in request");
    shared.requests.lock().unwrap_or_else(PoisonError::into_inner).push(target);
    next.run(request).await
}

async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// The channel's Atom feed, with an `ETag` (of the body) and a `Last-Modified` (its newest upload's
/// date); `304 Not Modified` when the request's `If-None-Match` (or, without one, its
/// `If-Modified-Since`) matches, as YouTube answers pollers.
async fn feed(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<FeedQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(channel_id) = query.channel_id else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (body, newest) = {
        let channels = shared.channels();
        let Some(channel) = channels.iter().find(|c| c.id == channel_id) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let entries: Vec<FeedEntry> = channel
            .videos
            .iter()
            .map(|v| FeedEntry {
                video_id: v.id.clone(),
                title: v.title.clone(),
                published_at: v.published_at,
                description: v.description.clone(),
            })
            .collect();
        let newest = channel.videos.iter().filter_map(|v| v.published_at).max();
        (render_feed(&channel.id, &channel.title, &entries, |id| shared.video_url(id)), newest)
    };
    let etag = format!("\"{:016x}\"", {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        hasher.finish()
    });
    let modified = newest.map(|at| at.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    let asked = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let unchanged = match (asked(header::IF_NONE_MATCH), asked(header::IF_MODIFIED_SINCE)) {
        (Some(tags), _) => tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"),
        (None, Some(since)) => modified.as_deref() == Some(since),
        (None, None) => false,
    };
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("a hex etag"));
    if let Some(modified) = modified.and_then(|m| HeaderValue::from_str(&m).ok()) {
        headers.insert(header::LAST_MODIFIED, modified);
    }
    response
}

async fn watch(State(shared): State<Arc<Shared>>, Query(query): Query<WatchQuery>, request: Request) -> Response {
    let Some(video_id) = query.v else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = shared.with_video(&video_id, |video| {
        let media = video.media.as_ref()?;
        match (&video.captions, video.duration_secs) {
            (Some(_), _) => Some(WatchAnswer::Page(watch_page(video, media))),
            (None, Some(seconds)) => Some(WatchAnswer::Page(json_ld_page(&shared.base_url, video, seconds))),
            (None, None) => Some(WatchAnswer::File(media.clone())),
        }
    });
    match answer {
        Some(WatchAnswer::Page(html)) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Some(WatchAnswer::File(media)) => serve_media(media, request).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn media_file(State(shared): State<Arc<Shared>>, UrlPath(file): UrlPath<String>, request: Request) -> Response {
    let media = shared.with_video(file.split('.').next().unwrap_or_default(), |video| {
        (video.media_file_name()? == file).then(|| video.media.clone()).flatten()
    });
    match media {
        Some(media) => serve_media(media, request).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn captions(State(shared): State<Arc<Shared>>, UrlPath(file): UrlPath<String>) -> Response {
    let vtt = file
        .strip_suffix(".en.vtt")
        .and_then(|video_id| shared.with_video(video_id, |video| video.captions.as_deref().map(render_vtt)));
    match vtt {
        Some(vtt) => ([(header::CONTENT_TYPE, "text/vtt; charset=utf-8")], vtt).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn channel_videos(State(shared): State<Arc<Shared>>, UrlPath(channel_id): UrlPath<String>) -> Response {
    let body = {
        let channels = shared.channels();
        let Some(channel) = channels.iter().find(|c| c.id == channel_id) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        channel_rss(&shared, channel)
    };
    ([(header::CONTENT_TYPE, "application/rss+xml; charset=utf-8")], body).into_response()
}

/// The bytes of `media` with its Content-Type; Range, HEAD and conditional requests come from `ServeFile`.
async fn serve_media(media: StandInMedia, request: Request) -> Response {
    let served = ServeFile::new(&media.path).oneshot(request).await;
    let mut response = match served {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if response.status().is_success() {
        match HeaderValue::from_str(&media.content_type) {
            Ok(value) => {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            Err(_) => {
                tracing::warn!(content_type = %media.content_type, "invalid stand-in content type; serving a guess");
            }
        }
    }
    response
}

/// An HTML5 page yt-dlp's generic extractor reads as one format plus `subtitles.en`.
fn watch_page(video: &StandInVideo, media: &StandInMedia) -> String {
    let file = video.media_file_name().unwrap_or_default();
    let title = xml_escape(&video.title);
    let description = video.description.as_deref().map(xml_escape).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n</head>\n<body>\n\
         <h1>{title}</h1>\n<video controls>\
         <source src=\"/media/{file}\" type=\"{content_type}\">\
         <track kind=\"subtitles\" srclang=\"en\" label=\"English\" src=\"/captions/{id}.en.vtt\">\
         </video>\n<p>{description}</p>\n</body>\n</html>\n",
        file = xml_escape(&file),
        content_type = xml_escape(&media.content_type),
        id = xml_escape(&video.id),
    )
}

/// A page whose only video is a schema.org VideoObject in JSON-LD: yt-dlp's generic extractor takes
/// the duration and title from it and downloads `contentUrl`.
fn json_ld_page(base_url: &str, video: &StandInVideo, seconds: u64) -> String {
    let object = serde_json::json!({
        "@context": "https://schema.org",
        "@type": "VideoObject",
        "name": video.title,
        "duration": format!("PT{seconds}S"),
        "contentUrl": format!("{base_url}/media/{}", video.media_file_name().unwrap_or_default()),
    });
    // `</` cannot end the script early once escaped.
    let json = object.to_string().replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <script type=\"application/ld+json\">{json}</script>\n</head>\n<body>\n<h1>{title}</h1>\n</body>\n</html>\n",
        title = xml_escape(&video.title),
    )
}

/// `/@handle`: the channel's page, naming its id as YouTube's pages do (canonical link, `channelId`).
async fn handle_page(State(shared): State<Arc<Shared>>, UrlPath(segment): UrlPath<String>) -> Response {
    let Some(handle) = segment.strip_prefix('@') else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page = {
        let channels = shared.channels();
        let Some(channel) =
            channels.iter().find(|c| c.handle.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(handle)))
        else {
            return StatusCode::NOT_FOUND.into_response();
        };
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
             <link rel=\"canonical\" href=\"{base}/channel/{id}\">\n</head>\n<body>\n<h1>{title}</h1>\n\
             <script>var ytInitialData = {{\"metadata\":{{\"channelMetadataRenderer\":{{\"externalId\":\"{id}\"}}}}}};</script>\n\
             </body>\n</html>\n",
            title = xml_escape(&channel.title),
            base = shared.base_url,
            id = xml_escape(&channel.id),
        )
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// RSS 2.0 listing of a channel's videos; yt-dlp's generic extractor turns each `<item>` into an entry.
fn channel_rss(shared: &Shared, channel: &StandInChannel) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\">\n<channel>\n<title>{}</title>\n\
         <link>{}/channel/{}/videos</link>\n<description>Videos of {}</description>\n",
        xml_escape(&channel.title),
        shared.base_url,
        xml_escape(&channel.id),
        xml_escape(&channel.title),
    );
    for video in &channel.videos {
        out.push_str(&format!(
            "<item>\n<title>{}</title>\n<link>{}</link>\n",
            xml_escape(&video.title),
            xml_escape(&shared.video_url(&video.id)),
        ));
        if let Some(description) = &video.description {
            out.push_str(&format!("<description>{}</description>\n", xml_escape(description)));
        }
        if let Some(at) = video.published_at {
            out.push_str(&format!("<pubDate>{}</pubDate>\n", at.to_rfc2822()));
        }
        out.push_str("</item>\n");
    }
    out.push_str("</channel>\n</rss>\n");
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
