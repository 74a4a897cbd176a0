//! `StandIn`: a local HTTP server imitating the parts of YouTube tubesum talks to, so tests and demos never
//! reach the internet. A tool, not part of tubesum's pipeline: tubesum's tests use it, and `tubesum demo`
//! (the `demo` feature) serves its [`demo`] channel with it. The app is pointed at it through its `youtube.*_url` settings (see
//! [`StandIn::feed_url_template`] and friends).
//!
//! | route                                | answer                                                          |
//! |--------------------------------------|-----------------------------------------------------------------|
//! | `GET /feeds/videos.xml?channel_id=X` | YouTube-style Atom feed (`application/atom+xml`) with `ETag` and `Last-Modified`, `304` to a matching conditional request, 404 if unknown |
//! | `GET /watch?v=ID`                    | captioned video: an HTML5 `<video>` page with a `<track>`; otherwise the media bytes (Content-Type, Range); 404 if unknown or without media |
//! | `GET /media/{ID.ext}`                | the media bytes (Range supported)                               |
//! | `GET /captions/{ID}.en.vtt`          | the captions as WebVTT                                          |
//! | `GET /channel/{X}/videos`            | RSS 2.0 listing, read by `yt-dlp --flat-playlist -J` as a playlist |
//! | `GET /youtube/v3/channels`, `/youtube/v3/playlistItems`, `/youtube/v3/videos` | the YouTube Data API v3's answers for a channel's uploads playlist, paged, and its videos' durations ([`data_api`]) |
//!
//! yt-dlp reaches every route through its generic extractor. Listings keep the order videos were given in
//! (YouTube lists newest first). Every request's path and query is logged ([`StandIn::requests`]).

pub mod data_api;
pub mod demo;
pub mod feed;
pub mod media;
mod routes;
pub mod vtt;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use routes::{Shared, router};

/// A timed piece of speech or caption, in seconds from the start of the video.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// How long [`StandIn::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running stand-in server; dropping it stops the server too (without waiting).
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// A channel served by the stand-in; with a `handle`, its page is at `/@handle` too.
pub struct StandInChannel {
    pub id: String,
    pub title: String,
    pub handle: Option<String>,
    pub videos: Vec<StandInVideo>,
}

/// A video served by the stand-in. `media: None` makes `/watch` answer 404; `captions` (language `en`) make
/// `/watch` an HTML page with a subtitle track instead of the bare media; `duration_secs` (without
/// captions) makes it a page whose schema.org VideoObject (JSON-LD, as YouTube's pages carry)
/// states the duration and links the media, so yt-dlp knows the length before downloading.
pub struct StandInVideo {
    pub id: String,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub media: Option<StandInMedia>,
    pub captions: Option<Vec<Segment>>,
    pub duration_secs: Option<u64>,
}

/// A media file on disk and the Content-Type it is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInMedia {
    pub path: PathBuf,
    pub content_type: String,
}

impl StandIn {
    /// Binds 127.0.0.1 on a free port and serves `channels` until [`StandIn::shutdown`] (or drop).
    ///
    /// Fails with `InvalidInput` when a video id appears twice.
    pub async fn start(channels: Vec<StandInChannel>) -> io::Result<StandIn> {
        let mut ids: Vec<&str> = channels.iter().flat_map(|c| c.videos.iter().map(|v| v.id.as_str())).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("video id {} is served twice", pair[0])));
        }

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            channels: RwLock::new(channels),
            requests: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(listener, router(shared.clone())).with_graceful_shutdown(async move {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        });
        let task = tokio::spawn(server.into_future());
        tracing::debug!(%addr, "youtube stand-in listening");
        Ok(StandIn { addr, shared, stop: Some(stop), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `youtube.feed_url`: `{base}/feeds/videos.xml?channel_id={channel_id}`.
    pub fn feed_url_template(&self) -> String {
        format!("{}/feeds/videos.xml?channel_id={{channel_id}}", self.shared.base_url)
    }

    /// `youtube.video_url`: `{base}/watch?v={video_id}`.
    pub fn video_url_template(&self) -> String {
        format!("{}/watch?v={{video_id}}", self.shared.base_url)
    }

    /// `youtube.channel_url`: `{base}/channel/{channel_id}/videos`.
    pub fn channel_url_template(&self) -> String {
        format!("{}/channel/{{channel_id}}/videos", self.shared.base_url)
    }

    /// `youtube.handle_url`: `{base}/@{handle}`, a channel's page found by its handle.
    pub fn handle_url_template(&self) -> String {
        format!("{}/@{{handle}}", self.shared.base_url)
    }

    /// `youtube.data_api_url`: `{base}/youtube/v3` (`channels`, `playlistItems` and `videos`; see [`data_api`]).
    pub fn data_api_url(&self) -> String {
        format!("{}/youtube/v3", self.shared.base_url)
    }

    /// The feed URL of one channel.
    pub fn feed_url(&self, channel_id: &str) -> String {
        self.feed_url_template().replace("{channel_id}", channel_id)
    }

    /// The watch URL of one video.
    pub fn video_url(&self, video_id: &str) -> String {
        self.shared.video_url(video_id)
    }

    /// The video listing URL of one channel.
    pub fn channel_url(&self, channel_id: &str) -> String {
        self.channel_url_template().replace("{channel_id}", channel_id)
    }

    /// Path and query of every request so far, in arrival order (e.g. `/watch?v=abc`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Adds `video` to the front of channel `channel_id`'s listings (a new upload). False if the channel is
    /// unknown or the video id is already served.
    pub fn add_video(&self, channel_id: &str, video: StandInVideo) -> bool {
        let mut channels = self.shared.channels.write().unwrap_or_else(PoisonError::into_inner);
        if channels.iter().flat_map(|c| &c.videos).any(|v| v.id == video.id) {
            return false;
        }
        match channels.iter_mut().find(|c| c.id == channel_id) {
            Some(channel) => {
                channel.videos.insert(0, video);
                true
            }
            None => false,
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds) and waits for the server to end.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => joined.map_err(io::Error::other)?,
            Err(_) => {
                tracing::warn!(addr = %self.addr, "youtube stand-in connections still open at shutdown; aborting");
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIn").field("base_url", &self.shared.base_url).finish_non_exhaustive()
    }
}

impl StandInChannel {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        StandInChannel { id: id.into(), title: title.into(), handle: None, videos: Vec::new() }
    }

    /// The channel's handle (without the `@`): `/@handle` serves its page.
    pub fn handle(mut self, handle: impl Into<String>) -> Self {
        self.handle = Some(handle.into());
        self
    }

    /// Appends a video (listings keep this order; YouTube's are newest first).
    pub fn video(mut self, video: StandInVideo) -> Self {
        self.videos.push(video);
        self
    }
}

impl fmt::Debug for StandInChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInChannel")
            .field("id", &self.id)
            .field("title", &self.title)
            .field("videos", &self.videos)
            .finish()
    }
}

impl StandInVideo {
    /// A video with no date, description, media or captions.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        StandInVideo {
            id: id.into(),
            title: title.into(),
            published_at: None,
            description: None,
            media: None,
            captions: None,
            duration_secs: None,
        }
    }

    /// The length the watch page states (whatever the media's real length).
    pub fn duration_secs(mut self, seconds: u64) -> Self {
        self.duration_secs = Some(seconds);
        self
    }

    pub fn published_at(mut self, at: DateTime<Utc>) -> Self {
        self.published_at = Some(at);
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Serves `path` as this video's media with `content_type` (e.g. `video/mp4`, `audio/webm`, `audio/mp4`;
    /// see [`media::Container::content_type`]).
    pub fn media(mut self, path: impl AsRef<Path>, content_type: impl Into<String>) -> Self {
        self.media = Some(StandInMedia { path: path.as_ref().to_owned(), content_type: content_type.into() });
        self
    }

    /// English captions; `/watch` then answers with an HTML page carrying a subtitle track.
    pub fn captions(mut self, segments: Vec<Segment>) -> Self {
        self.captions = Some(segments);
        self
    }

    /// The name the media is served under: `ID.ext`, the extension taken from the file.
    fn media_file_name(&self) -> Option<String> {
        let media = self.media.as_ref()?;
        let ext = media.path.extension().and_then(|e| e.to_str()).unwrap_or("bin");
        Some(format!("{}.{ext}", self.id))
    }
}

impl fmt::Debug for StandInVideo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInVideo")
            .field("id", &self.id)
            .field("title", &self.title)
            .field("published_at", &self.published_at)
            .field("media", &self.media)
            .field("captions", &self.captions.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};

    use super::*;

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.to_owned() }
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::get(url).await.expect("stand-in reachable")
    }

    fn content_type(response: &reqwest::Response) -> String {
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn feed_lists_the_channel_as_atom() {
        let channel = StandInChannel::new("UCaaaaaaaaaaaaaaaaaaaaaa", "Tests & Co")
            .video(StandInVideo::new("aaaaaaaaaa1", "First <one>").description("about one"))
            .video(StandInVideo::new("aaaaaaaaaa2", "Second"));
        let stand_in = StandIn::start(vec![channel]).await.expect("start");

        let response = get(&stand_in.feed_url("UCaaaaaaaaaaaaaaaaaaaaaa")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(content_type(&response).starts_with("application/atom+xml"));
        let body = response.text().await.expect("body");
        assert!(body.contains("aaaaaaaaaa1") && body.contains("aaaaaaaaaa2"), "{body}");
        assert!(body.contains(&stand_in.video_url("aaaaaaaaaa1")), "{body}");

        assert_eq!(
            stand_in.feed_url_template(),
            format!("{}/feeds/videos.xml?channel_id={{channel_id}}", stand_in.base_url())
        );
        assert_eq!(stand_in.video_url_template(), format!("{}/watch?v={{video_id}}", stand_in.base_url()));
        assert_eq!(stand_in.channel_url_template(), format!("{}/channel/{{channel_id}}/videos", stand_in.base_url()));
        stand_in.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn unknown_things_are_404_and_every_request_is_logged() {
        let channel = StandInChannel::new("UCbbbbbbbbbbbbbbbbbbbbbb", "B")
            .video(StandInVideo::new("nomedia0001", "No media").captions(vec![seg(0.0, 1.0, "hi")]));
        let stand_in = StandIn::start(vec![channel]).await.expect("start");
        let base = stand_in.base_url();
        for path in [
            "/feeds/videos.xml?channel_id=UCnope",
            "/feeds/videos.xml",
            "/watch?v=missing0001",
            "/watch?v=nomedia0001",
            "/watch",
            "/media/nomedia0001.mp4",
            "/captions/missing0001.en.vtt",
            "/captions/nomedia0001.fr.vtt",
            "/channel/UCnope/videos",
            "/elsewhere",
        ] {
            assert_eq!(get(&format!("{base}{path}")).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let vtt = get(&format!("{base}/captions/nomedia0001.en.vtt")).await;
        assert_eq!(vtt.status(), StatusCode::OK);
        assert!(content_type(&vtt).starts_with("text/vtt"));
        assert!(vtt.text().await.expect("vtt").contains("hi"));

        let log = stand_in.requests();
        assert_eq!(log.len(), 11, "{log:?}");
        assert_eq!(log[0], "/feeds/videos.xml?channel_id=UCnope");
        assert_eq!(log[9], "/elsewhere");
        assert!(!log.iter().any(|r| r.contains("invalid")));
        stand_in.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn watch_serves_media_with_ranges_or_a_captions_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let file = dir.path().join("clip.webm");
        tokio::fs::write(&file, &bytes).await.expect("write media");
        let channel = StandInChannel::new("UCcccccccccccccccccccccc", "C")
            .video(StandInVideo::new("direct00001", "Direct").media(&file, "audio/webm"))
            .video(StandInVideo::new("paged000001", "Paged").media(&file, "audio/webm").captions(vec![seg(
                0.0,
                1.5,
                "hello there",
            )]));
        let stand_in = StandIn::start(vec![channel]).await.expect("start");

        let full = get(&stand_in.video_url("direct00001")).await;
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(content_type(&full), "audio/webm");
        assert_eq!(full.bytes().await.expect("bytes").as_ref(), bytes.as_slice());

        let client = reqwest::Client::new();
        let ranged = client
            .get(stand_in.video_url("direct00001"))
            .header(header::RANGE, "bytes=100-109")
            .send()
            .await
            .expect("range request");
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(content_type(&ranged), "audio/webm");
        assert_eq!(ranged.bytes().await.expect("bytes").as_ref(), &bytes[100..110]);

        let page = get(&stand_in.video_url("paged000001")).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(content_type(&page).starts_with("text/html"));
        let html = page.text().await.expect("html");
        assert!(html.contains("<source src=\"/media/paged000001.webm\" type=\"audio/webm\">"), "{html}");
        assert!(html.contains("src=\"/captions/paged000001.en.vtt\""), "{html}");

        let media = get(&format!("{}/media/paged000001.webm", stand_in.base_url())).await;
        assert_eq!(media.status(), StatusCode::OK);
        assert_eq!(media.bytes().await.expect("bytes").len(), bytes.len());
        let wrong_ext = get(&format!("{}/media/paged000001.mp4", stand_in.base_url())).await;
        assert_eq!(wrong_ext.status(), StatusCode::NOT_FOUND);
        stand_in.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn channel_listing_is_rss_and_new_uploads_appear_first() {
        let published = DateTime::parse_from_rfc3339("2024-05-03T12:00:00Z").expect("date").to_utc();
        let channel = StandInChannel::new("UCdddddddddddddddddddddd", "D")
            .video(StandInVideo::new("olderupload", "Older").published_at(published));
        let stand_in = StandIn::start(vec![channel]).await.expect("start");
        assert!(stand_in.add_video("UCdddddddddddddddddddddd", StandInVideo::new("newerupload", "Newer")));
        assert!(!stand_in.add_video("UCdddddddddddddddddddddd", StandInVideo::new("newerupload", "Again")));
        assert!(!stand_in.add_video("UCnope", StandInVideo::new("elsewhere01", "Nowhere")));

        let rss = get(&stand_in.channel_url("UCdddddddddddddddddddddd")).await;
        assert_eq!(rss.status(), StatusCode::OK);
        let body = rss.text().await.expect("rss");
        let newer = body.find(&stand_in.video_url("newerupload")).expect("newer listed");
        let older = body.find(&stand_in.video_url("olderupload")).expect("older listed");
        assert!(newer < older, "{body}");
        assert!(body.contains("<pubDate>Fri, 3 May 2024 12:00:00 +0000</pubDate>"), "{body}");
        stand_in.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn duplicate_video_ids_are_rejected() {
        let channel = StandInChannel::new("UCeeeeeeeeeeeeeeeeeeeeee", "E")
            .video(StandInVideo::new("sameid00001", "A"))
            .video(StandInVideo::new("sameid00001", "B"));
        let err = StandIn::start(vec![channel]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    // ---- the real yt-dlp against the stand-in ----

    fn yt_dlp_program() -> String {
        std::env::var("YT_DLP").unwrap_or_else(|_| "yt-dlp".to_owned())
    }

    async fn yt_dlp(args: &[&str]) -> String {
        let program = yt_dlp_program();
        let output = tokio::process::Command::new(&program)
            .args(["--ignore-config", "--no-cache-dir", "--no-progress"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("yt-dlp is required (set YT_DLP; tried {program}): {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "yt-dlp {args:?} failed: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn yt_dlp_json(args: &[&str]) -> serde_json::Value {
        let stdout = yt_dlp(args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("yt-dlp json: {e}: {stdout}"))
    }

    #[tokio::test]
    async fn real_yt_dlp_reads_and_downloads_from_the_stand_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("s.wav");
        let segments =
            media::speak_script(&["Testing one two three.", "This is the stand in."], &wav).await.expect("speech");
        let m4a = dir.path().join("direct.m4a");
        let mp4 = dir.path().join("paged.mp4");
        media::encode(&wav, &m4a, media::Container::M4a).await.expect("m4a");
        media::encode(&wav, &mp4, media::Container::Mp4Aac).await.expect("mp4");
        let channel = StandInChannel::new("UCffffffffffffffffffffff", "Yt-dlp Channel")
            .video(
                StandInVideo::new("direct00001", "Direct Media")
                    .description("served bare")
                    .media(&m4a, media::Container::M4a.content_type()),
            )
            .video(
                StandInVideo::new("paged000001", "Captioned Page")
                    .media(&mp4, media::Container::Mp4Aac.content_type())
                    .captions(segments),
            );
        let stand_in = StandIn::start(vec![channel]).await.expect("start");
        let downloads = dir.path().join("downloads");

        // Direct media: one format, no subtitles, downloaded byte for byte.
        let direct_url = stand_in.video_url("direct00001");
        let info = yt_dlp_json(&["-J", "--no-playlist", "--", &direct_url]).await;
        assert_eq!(info["extractor"], "generic", "{info:#}");
        assert_eq!(info["formats"].as_array().map(Vec::len), Some(1), "{info:#}");
        assert_eq!(info["ext"], "m4a", "{info:#}");
        assert!(info["subtitles"].as_object().is_none_or(|s| s.is_empty()), "{info:#}");
        let template = format!("{}/direct00001.%(ext)s", downloads.display());
        yt_dlp(&["-f", "bestaudio/best", "--no-playlist", "-o", &template, "--", &direct_url]).await;
        let got = tokio::fs::read(downloads.join("direct00001.m4a")).await.expect("direct download");
        assert_eq!(got, tokio::fs::read(&m4a).await.expect("source"));

        // Captions page: one format from <source>, subtitles.en from <track>.
        let paged_url = stand_in.video_url("paged000001");
        let info = yt_dlp_json(&["-J", "--no-playlist", "--", &paged_url]).await;
        // yt-dlp's html5 embed extractor suffixes the page title with the entry number.
        assert_eq!(info["title"], "Captioned Page (1)", "{info:#}");
        let en = &info["subtitles"]["en"][0];
        assert_eq!(en["ext"], "vtt", "{info:#}");
        assert_eq!(en["url"], format!("{}/captions/paged000001.en.vtt", stand_in.base_url()), "{info:#}");
        let format_url = info["formats"][0]["url"].as_str().unwrap_or_default();
        assert_eq!(format_url, format!("{}/media/paged000001.mp4", stand_in.base_url()), "{info:#}");
        let template = format!("{}/paged000001.%(ext)s", downloads.display());
        yt_dlp(&["-f", "bestaudio/best", "--no-playlist", "-o", &template, "--", &paged_url]).await;
        let got = tokio::fs::read(downloads.join("paged000001.mp4")).await.expect("paged download");
        assert_eq!(got, tokio::fs::read(&mp4).await.expect("source"));

        // Channel listing: a flat playlist of the watch URLs.
        let listing =
            yt_dlp_json(&["--flat-playlist", "-J", "--", &stand_in.channel_url("UCffffffffffffffffffffff")]).await;
        assert_eq!(listing["_type"], "playlist", "{listing:#}");
        let entries = listing["entries"].as_array().expect("entries");
        let urls: Vec<&str> = entries.iter().filter_map(|e| e["url"].as_str()).collect();
        assert_eq!(urls, [direct_url.as_str(), paged_url.as_str()], "{listing:#}");
        assert_eq!(entries[0]["title"], "Direct Media", "{listing:#}");

        // Unknown ids are plain 404s, and yt-dlp is told so.
        let missing = tokio::process::Command::new(yt_dlp_program())
            .args(["--ignore-config", "-J", "--no-playlist", "--"])
            .arg(stand_in.video_url("missing0001"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("yt-dlp");
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
        stand_in.shutdown().await.expect("shutdown");
    }
}
