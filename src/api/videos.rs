//! `/videos/{video_id}/transcript` and `/videos/{video_id}/summary`, as JSON or as files
//! (`?format=`): the summary in Markdown, the transcript as SRT or WebVTT subtitles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::app::export;
use crate::domain::{Summary, Transcript, VideoId};

fn video_id(raw: &str) -> Result<VideoId, ApiError> {
    VideoId::parse(raw).map_err(|_| ApiError::NotFound(format!("video {raw} not found")))
}

/// How a transcript is answered.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptFormat {
    /// The transcript as JSON (`Transcript`).
    #[default]
    Json,
    /// SubRip subtitles, as a download.
    Srt,
    /// WebVTT subtitles, as a download.
    Vtt,
}

/// How a summary is answered.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SummaryFormat {
    /// The summary as JSON (`Summary`).
    #[default]
    Json,
    /// A Markdown document, as a download.
    Md,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TranscriptQuery {
    /// `json` (the default), `srt` or `vtt`.
    pub format: Option<TranscriptFormat>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// `json` (the default) or `md`.
    pub format: Option<SummaryFormat>,
    /// The job whose record of the video gives the Markdown its title and date (optional).
    #[param(value_type = Option<String>, format = Uuid)]
    pub job_id: Option<String>,
}

/// A video's transcript: JSON, or SRT / WebVTT subtitles (`?format=`).
#[utoipa::path(get, path = "/videos/{video_id}/transcript", tag = "videos",
    params(("video_id" = String, Path, description = "YouTube video id"), TranscriptQuery),
    responses(
        (status = 200, description = "The transcript",
            content((Transcript = "application/json"), (String = "application/x-subrip"), (String = "text/vtt"))),
        (status = 404, body = ErrorBody)))]
pub async fn transcript(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    ApiQuery(query): ApiQuery<TranscriptQuery>,
) -> Result<Response, Response> {
    let id = video_id(&raw)?;
    let found = app.pipeline.deps.artifacts.get_transcript(&id).await.map_err(ApiError::from)?;
    let transcript = found.ok_or_else(|| ApiError::NotFound(format!("no transcript for video {id}")))?;
    Ok(match query.format.unwrap_or_default() {
        TranscriptFormat::Json => Json(transcript).into_response(),
        TranscriptFormat::Srt => {
            download(&format!("{id}.srt"), "application/x-subrip", export::srt(&transcript.segments))
        }
        TranscriptFormat::Vtt => {
            download(&format!("{id}.vtt"), "text/vtt; charset=utf-8", export::webvtt(&transcript.segments))
        }
    })
}

/// A video's summary, with key points linking to their moment in the video: JSON, or a Markdown
/// document (`?format=md`).
#[utoipa::path(get, path = "/videos/{video_id}/summary", tag = "videos",
    params(("video_id" = String, Path, description = "YouTube video id"), SummaryQuery),
    responses(
        (status = 200, description = "The summary",
            content((Summary = "application/json"), (String = "text/markdown"))),
        (status = 404, body = ErrorBody)))]
pub async fn summary(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    ApiQuery(query): ApiQuery<SummaryQuery>,
) -> Result<Response, Response> {
    let id = video_id(&raw)?;
    let job_id = query
        .job_id
        .as_deref()
        .map(|raw| raw.parse().map_err(|_| ApiError::InvalidQuery(format!("job_id: {raw:?} is not a job id"))))
        .transpose()?;
    let found = app.pipeline.deps.artifacts.get_summary(&id).await.map_err(ApiError::from)?;
    let summary = found.ok_or_else(|| ApiError::NotFound(format!("no summary for video {id}")))?;
    Ok(match query.format.unwrap_or_default() {
        SummaryFormat::Json => Json(summary).into_response(),
        SummaryFormat::Md => {
            let video = match job_id {
                Some(job_id) => app.pipeline.deps.store.get_video(job_id, &id).await.map_err(ApiError::from)?,
                None => None,
            };
            let markdown = export::video_markdown(video.as_ref(), &summary);
            download(&format!("{id}.md"), "text/markdown; charset=utf-8", markdown)
        }
    })
}

/// A file to save, named `file_name`.
pub fn download(file_name: &str, content_type: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{file_name}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
