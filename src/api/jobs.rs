//! `/jobs`: submit a channel, follow it, list, cancel.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody, body_rejection};
use crate::actors::job::{JobActors, VideoActorLine};
use crate::app::ChannelError;
use crate::app::pipeline::CancelOutcome;
use crate::domain::{
    AttemptRecord, ChannelId, JobId, JobRecord, JobStatus, VideoCounts, VideoRecord, VideoStatus, workflow,
};
use crate::ports::PortError;
use crate::stages::discovery::HandleError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// The channel: its id (`UC` followed by 22 characters of `[A-Za-z0-9_-]`), its URL
    /// (`https://www.youtube.com/channel/UC…`), or its handle (`@name` or
    /// `https://www.youtube.com/@name`, resolved through YouTube).
    #[schema(
        example = "UCabcdefghijklmnopqrstuv",
        pattern = r"^[ \t\r\n]*(UC[A-Za-z0-9_-]{22}|(https?://)?((www|m)\.)?youtube\.com/(channel/UC[A-Za-z0-9_-]{22}|@[A-Za-z0-9._-]{3,30})([/?#].*)?|@[A-Za-z0-9._-]{3,30})[ \t\r\n]*$"
    )]
    pub channel_id: String,
    /// Redo videos already summarized by earlier jobs.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobCreated {
    pub job_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VideoView {
    pub video_id: String,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    /// Its length in seconds, where discovery's listing stated it (the Data API, yt-dlp).
    pub duration_secs: Option<u32>,
    pub status: VideoStatus,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    pub channel_id: String,
    pub status: JobStatus,
    pub force: bool,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Videos per status (every status is present), plus `total`: always the whole job's.
    pub counts: BTreeMap<String, u64>,
    /// One page of the job's videos, in discovery order (see `limit`, `offset`, `status`).
    pub videos: Vec<VideoView>,
    /// The page: at most `limit` videos from the `offset`-th of those that match `status`.
    pub limit: u32,
    pub offset: u32,
    /// How many videos match the page's `status` filter (all of them without one).
    pub matching: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptPage {
    pub attempts: Vec<AttemptRecord>,
    /// How many attempts the job has in all.
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobSummaryView {
    pub job_id: String,
    pub channel_id: String,
    pub status: JobStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobSummaryView>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Where the page starts (0 by default).
    #[param(maximum = 2147483647)]
    pub offset: Option<u32>,
    /// Only this channel's jobs (its id, `UC…`).
    #[param(pattern = r"^UC[A-Za-z0-9_-]{22}$")]
    pub channel_id: Option<String>,
}

/// The most videos (or attempts) one page holds, and the default page size.
pub const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VideoPage {
    /// At most 1000; default 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts (0 by default).
    #[param(maximum = 2147483647)]
    pub offset: Option<u32>,
    /// Only the videos in this status.
    pub status: Option<VideoStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// At most 1000; default 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where the page starts (0 by default).
    #[param(maximum = 2147483647)]
    pub offset: Option<u32>,
}

/// A job's view: `counts` of the whole job, `videos` one page of it.
pub fn job_view(
    job: JobRecord,
    counted: &[(VideoStatus, u64)],
    videos: Vec<VideoRecord>,
    (limit, offset, status): (u32, u32, Option<VideoStatus>),
) -> JobView {
    let counts = counts_by_status(counted);
    let total = counts["total"];
    let matching = status.map_or(total, |wanted| counted.iter().find(|(s, _)| *s == wanted).map_or(0, |(_, n)| *n));
    JobView {
        job_id: job.job_id.to_string(),
        channel_id: job.channel_id.to_string(),
        status: job.status,
        force: job.force,
        error: job.error,
        created_at: job.created_at,
        updated_at: job.updated_at,
        counts,
        videos: videos
            .into_iter()
            .map(|v| VideoView {
                video_id: v.video_id.to_string(),
                title: v.title,
                published_at: v.published_at,
                duration_secs: v.duration_secs,
                status: v.status,
                attempts: v.attempts,
                error: v.error,
            })
            .collect(),
        limit,
        offset,
        matching,
    }
}

/// Videos per status, every status present, plus `total`.
pub fn counts_by_status(counted: &[(VideoStatus, u64)]) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = VideoStatus::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for (status, n) in counted {
        counts.insert(status.to_string(), *n);
    }
    counts.insert("total".into(), counted.iter().map(|(_, n)| n).sum());
    counts
}

pub fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("job {raw} not found")))
}

/// Submit a channel.
#[utoipa::path(post, path = "/jobs", request_body = CreateJob, tag = "jobs",
    responses(
        (status = 202, description = "Accepted; follow it at the Location", body = JobCreated),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 404, description = "No channel has this handle (`channel_not_found`)", body = ErrorBody),
        (status = 502, description = "YouTube could not resolve the handle (`youtube_unavailable`)", body = ErrorBody),
    ))]
pub async fn create_job(
    State(app): State<AppState>,
    body: Result<Json<CreateJob>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(body) = body.map_err(body_rejection)?;
    let channel = app.pipeline.resolve_channel(&body.channel_id).await.map_err(channel_error)?;
    let job = app.pipeline.submit(&channel, body.force).await.map_err(|e| ApiError::from(e).into_response())?;
    let location = format!("/jobs/{}", job.job_id);
    let mut response = (StatusCode::ACCEPTED, Json(JobCreated { job_id: job.job_id.to_string() })).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The answer to a channel a user named that cannot be run: 400 `invalid_channel_id`, 404
/// `channel_not_found` (no such handle), 502 `youtube_unavailable`.
pub fn channel_error(e: ChannelError) -> Response {
    match e {
        ChannelError::Invalid(e) => ApiError::with_code(StatusCode::BAD_REQUEST, "invalid_channel_id", e.to_string()),
        ChannelError::Handle(e @ HandleError::NotFound(_)) => {
            ApiError::with_code(StatusCode::NOT_FOUND, "channel_not_found", e.to_string())
        }
        ChannelError::Handle(e @ HandleError::Unavailable { .. }) => {
            ApiError::with_code(StatusCode::BAD_GATEWAY, "youtube_unavailable", e.to_string())
        }
    }
}

/// A page's start: `offset` up to `i32::MAX` (what the schema states); beyond it, a 400.
pub fn page_offset(offset: Option<u32>) -> Result<u32, ApiError> {
    match offset {
        Some(n) if n > i32::MAX as u32 => {
            Err(ApiError::InvalidQuery(format!("offset must be at most {}, not {n}", i32::MAX)))
        }
        n => Ok(n.unwrap_or(0)),
    }
}

/// A page's size: `limit` within 1..=`max` (default `default`); outside it, a 400.
pub fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::InvalidQuery(format!("limit must be between 1 and {max}, not {n}"))),
    }
}

/// A job with the count of its videos per status, and a page of its videos. The answer carries an
/// `ETag`; sent back in `If-None-Match`, it gets a `304` with no body while nothing the answer
/// shows has changed (pollers cost one small count, not the page).
#[utoipa::path(get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id"), VideoPage,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer")),
    responses(
        (status = 200, body = JobView, headers(("ETag" = String, description = "This answer's version"))),
        (status = 304, description = "Unchanged since the answer whose ETag was sent"),
        (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(page): ApiQuery<VideoPage>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Response> {
    let limit = page_limit(page.limit, MAX_PAGE, MAX_PAGE)?;
    let offset = page_offset(page.offset)?;
    let job_id = parse_job_id(&job_id)?;
    let key = (job_id, limit, offset, page.status);
    if let Some(rendered) = app.pages.finished(&key) {
        return Ok(answer(&headers, rendered));
    }
    let store = &app.pipeline.deps.store;
    let (job, counts) = store
        .job_with_counts(job_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound(format!("job {job_id} not found")))?;
    // Read before the page: a page newer than its tag only costs the poller one more full answer.
    let tag = job_etag(&job, &counts, (limit, offset, page.status));
    if not_modified(&headers, &tag) {
        return Ok(answer(&headers, Rendered { tag, body: Bytes::new() }));
    }
    // Nothing changed since the last rendering of this page: that one, without the store.
    if let Some(rendered) = app.pages.current(&key, &tag) {
        return Ok(answer(&headers, rendered));
    }
    // One rendering per tag: readers that miss at once wait for the first one's.
    let render = {
        let (store, key) = (store.clone(), key);
        let tag = tag.clone();
        let pages = app.pages.clone();
        async move {
            let finished =
                job.status.is_final() && counts.by_status.iter().all(|(status, _)| workflow::is_final(*status));
            let videos = store.videos_page(job.job_id, page.status, limit, offset).await?;
            let view = job_view(job, &counts.by_status, videos, (limit, offset, page.status));
            let body = serde_json::to_vec(&view).map_err(|e| PortError::Other(format!("encoding the page: {e}")))?;
            let rendered = Rendered { tag, body: Bytes::from(body) };
            pages.put(key, rendered.clone(), finished);
            Ok(rendered)
        }
    };
    let rendered = app.pages.render(key, &tag, render).await.map_err(ApiError::from)?;
    Ok(answer(&headers, rendered))
}

/// A rendered page of a job, with its ETag.
#[derive(Clone)]
pub struct Rendered {
    tag: HeaderValue,
    body: Bytes,
}

/// The page, or a bodiless 304 when `If-None-Match` names its tag.
fn answer(headers: &axum::http::HeaderMap, page: Rendered) -> Response {
    let cache = [(header::ETAG, page.tag.clone()), (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))];
    if not_modified(headers, &page.tag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    (cache, json, page.body).into_response()
}

/// Job pages as last rendered, by the page asked for, with their ETags: the most recently read
/// [`KEPT_PAGES`]. A running job's page is answered from here while its tag (read from the store,
/// one small count) is unchanged, so pollers of a quiet job, or many pollers between two changes,
/// cost one rendering per change. A job that has ended with every video final changes no more (a
/// final status is never overwritten, and its owner writes nothing after), so its pages are
/// answered from here without the store at all.
pub struct Pages {
    pages: std::sync::Mutex<lru::LruCache<PageKey, Kept>>,
    /// Renderings under way, by page, with the tag each renders.
    rendering: std::sync::Mutex<HashMap<PageKey, (HeaderValue, Rendering)>>,
}

/// A page's rendering, awaited by every reader that missed it at its tag.
type Rendering = futures::future::Shared<futures::future::BoxFuture<'static, Result<Rendered, PortError>>>;

type PageKey = (JobId, u32, u32, Option<VideoStatus>);

struct Kept {
    page: Rendered,
    finished: bool,
}

/// At most 64 pages of up to 1,000 videos (~250 KB each) are kept.
pub const KEPT_PAGES: usize = 64;

impl Default for Pages {
    fn default() -> Self {
        let size = std::num::NonZeroUsize::new(KEPT_PAGES).expect("not zero");
        Self { pages: std::sync::Mutex::new(lru::LruCache::new(size)), rendering: Default::default() }
    }
}

impl Pages {
    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<PageKey, Kept>> {
        self.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The page of a finished job.
    fn finished(&self, key: &PageKey) -> Option<Rendered> {
        self.lock().get(key).filter(|kept| kept.finished).map(|kept| kept.page.clone())
    }

    /// The page as last rendered, if that was at `tag`.
    fn current(&self, key: &PageKey, tag: &HeaderValue) -> Option<Rendered> {
        self.lock().get(key).filter(|kept| kept.page.tag == tag).map(|kept| kept.page.clone())
    }

    fn put(&self, key: PageKey, page: Rendered, finished: bool) {
        self.lock().put(key, Kept { page, finished });
    }

    /// The page rendered at `tag`: by `render`, unless a rendering of it at that tag is under
    /// way, whose result is then this one's too (many pollers of a changing job cost one
    /// rendering per change, not one each).
    async fn render(
        &self,
        key: PageKey,
        tag: &HeaderValue,
        render: impl Future<Output = Result<Rendered, PortError>> + Send + 'static,
    ) -> Result<Rendered, PortError> {
        let rendering = {
            let mut rendering = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
            match rendering.get(&key) {
                Some((at, under_way)) if at == tag => under_way.clone(),
                _ => {
                    let under_way = render.boxed().shared();
                    rendering.insert(key, (tag.clone(), under_way.clone()));
                    under_way
                }
            }
        };
        // Forgotten once it is done, or once a reader stops waiting for it (a client that went
        // away): nothing is left under way for a page nobody asks for again.
        let _forget = Forget { pages: self, key, tag };
        rendering.await
    }
}

/// Takes a page's rendering at a tag off [`Pages`] when dropped.
struct Forget<'a> {
    pages: &'a Pages,
    key: PageKey,
    tag: &'a HeaderValue,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut rendering = self.pages.rendering.lock().unwrap_or_else(|e| e.into_inner());
        if rendering.get(&self.key).is_some_and(|(at, _)| at == self.tag) {
            rendering.remove(&self.key);
        }
    }
}

/// The version of one page of a job: what the answer shows changes only with the job's row, its
/// videos' changes, and the page asked for (and the release answering).
fn job_etag(
    job: &JobRecord,
    counts: &VideoCounts,
    (limit, offset, status): (u32, u32, Option<VideoStatus>),
) -> HeaderValue {
    let status = status.map_or("all", |s| s.as_str());
    let tag = format!(
        "\"{}-{}-{}-{}-{}-{limit}-{offset}-{status}\"",
        env!("CARGO_PKG_VERSION"),
        job.updated_at.timestamp_micros(),
        job.status.as_str(),
        counts.total(),
        counts.changes,
    );
    HeaderValue::from_str(&tag).expect("an ASCII tag")
}

/// Whether `If-None-Match` names `tag` (or is `*`).
fn not_modified(headers: &axum::http::HeaderMap, tag: &HeaderValue) -> bool {
    let Some(tag) = tag.to_str().ok() else { return false };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| value.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == tag || t == "*"))
}

/// The job, or a 404.
pub async fn existing_job(app: &AppState, job_id: JobId) -> Result<JobRecord, ApiError> {
    app.pipeline.deps.store.get_job(job_id).await?.ok_or_else(|| ApiError::NotFound(format!("job {job_id} not found")))
}

/// A job's VideoActors, where this process runs them.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobActorsView {
    pub job_id: String,
    /// Whether the job's actors run in this process. In a cluster they run on the node that
    /// holds the job (`GET /cluster` lists each node's jobs and address); elsewhere this is false
    /// and `actors` empty. A job that has ended has none anywhere.
    pub here: bool,
    /// Its live VideoActors (videos not yet final), by video id.
    pub actors: Vec<VideoActorLine>,
    /// Videos whose actor failed and waits out its backoff before it starts again.
    pub restarting: usize,
}

/// The job's live VideoActors: status, the stage each waits for, restarts, uptime, mailbox.
#[utoipa::path(get, path = "/jobs/{job_id}/actors", tag = "ops",
    params(("job_id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobActorsView), (status = 404, body = ErrorBody)))]
pub async fn job_actors(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobActorsView>, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    existing_job(&app, job_id).await?;
    let found = app.pipeline.job_actors(job_id).await;
    let here = found.is_some();
    let JobActors { actors, restarting } = found.unwrap_or(JobActors { actors: Vec::new(), restarting: 0 });
    Ok(Json(JobActorsView { job_id: job_id.to_string(), here, actors, restarting }))
}

/// A page of a job's stage attempts, oldest first: which process took each stage command and how
/// it ended.
#[utoipa::path(get, path = "/jobs/{job_id}/attempts", tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id"), AttemptQuery),
    responses((status = 200, body = AttemptPage), (status = 404, body = ErrorBody)))]
pub async fn list_attempts(
    State(app): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(page): ApiQuery<AttemptQuery>,
) -> Result<Json<AttemptPage>, Response> {
    let limit = page_limit(page.limit, MAX_PAGE, MAX_PAGE)?;
    let offset = page_offset(page.offset)?;
    let job = existing_job(&app, parse_job_id(&job_id)?).await?;
    let (attempts, total) =
        app.pipeline.deps.store.attempts_page(job.job_id, limit, offset).await.map_err(ApiError::from)?;
    Ok(Json(AttemptPage { attempts, total, limit, offset }))
}

/// Jobs, newest first (all, or one channel's).
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(Page), responses((status = 200, body = JobList)))]
pub async fn list_jobs(State(app): State<AppState>, ApiQuery(page): ApiQuery<Page>) -> Result<Json<JobList>, Response> {
    let limit = page_limit(page.limit, 20, 100)?;
    let offset = page_offset(page.offset)?;
    let channel = page
        .channel_id
        .as_deref()
        .map(|raw| ChannelId::parse(raw).map_err(|e| ApiError::InvalidQuery(format!("channel_id: {e}"))))
        .transpose()?;
    let (jobs, total) =
        app.pipeline.deps.store.list_jobs(channel.as_ref(), limit, offset).await.map_err(ApiError::from)?;
    let jobs = jobs
        .into_iter()
        .map(|j| JobSummaryView {
            job_id: j.job_id.to_string(),
            channel_id: j.channel_id.to_string(),
            status: j.status,
            error: j.error,
            created_at: j.created_at,
            updated_at: j.updated_at,
        })
        .collect();
    Ok(Json(JobList { jobs, total, limit, offset }))
}

/// Cancel a job.
#[utoipa::path(delete, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Cancelling"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ))]
pub async fn cancel_job(State(app): State<AppState>, Path(job_id): Path<String>) -> Result<StatusCode, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    match app.pipeline.cancel(job_id).await? {
        CancelOutcome::Cancelling => Ok(StatusCode::ACCEPTED),
        CancelOutcome::AlreadyFinished(status) => {
            Err(ApiError::Conflict(format!("job {job_id} already finished ({status})")))
        }
        CancelOutcome::NotFound => Err(ApiError::NotFound(format!("job {job_id} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Readers that miss a page at the same tag share one rendering; a new tag renders again.
    #[tokio::test]
    async fn a_page_is_rendered_once_per_tag_however_many_miss_it() {
        let pages = Arc::new(Pages::default());
        let key = (JobId::new(), 1000, 0, None);
        let renders = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = released.shared();
        let render = |tag: &'static str| {
            let (renders, released) = (renders.clone(), released.clone());
            async move {
                renders.fetch_add(1, Ordering::SeqCst);
                let _ = released.await;
                Ok(Rendered { tag: HeaderValue::from_static(tag), body: Bytes::from_static(tag.as_bytes()) })
            }
        };
        let tag = HeaderValue::from_static("\"a\"");
        let mut readers: Vec<_> = (0..8).map(|_| Box::pin(pages.render(key, &tag, render("\"a\"")))).collect();
        // Each reader gets as far as waiting for the rendering (the first one's holds until released).
        for reader in &mut readers {
            assert!(futures::poll!(reader).is_pending());
        }
        release.send(()).unwrap();
        for reader in futures::future::join_all(readers).await {
            assert_eq!(reader.unwrap().body, Bytes::from_static(b"\"a\""));
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1, "one rendering for eight readers");
        assert!(pages.rendering.lock().unwrap().is_empty(), "nothing left under way");
        let next = pages.render(key, &HeaderValue::from_static("\"b\""), render("\"b\"")).await.unwrap();
        assert_eq!((next.body, renders.load(Ordering::SeqCst)), (Bytes::from_static(b"\"b\""), 2));
        // A reader that gives up (its client went away) leaves nothing behind.
        let c = HeaderValue::from_static("\"c\"");
        let never = pages.render(key, &c, std::future::pending());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(1), never).await.is_err());
        assert!(pages.rendering.lock().unwrap().is_empty(), "an abandoned rendering is forgotten");
    }
}
