//! `/videos/{video_id}/transcript` and `/videos/{video_id}/summary`.

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::domain::{Summary, Transcript, VideoId};

fn video_id(raw: &str) -> Result<VideoId, ApiError> {
    VideoId::parse(raw).map_err(|_| ApiError::NotFound(format!("video {raw} not found")))
}

/// A video's transcript.
#[utoipa::path(get, path = "/videos/{video_id}/transcript", tag = "videos",
    params(("video_id" = String, Path, description = "YouTube video id")),
    responses((status = 200, body = Transcript), (status = 404, body = ErrorBody)))]
pub async fn transcript(State(app): State<AppState>, Path(raw): Path<String>) -> Result<Json<Transcript>, ApiError> {
    let id = video_id(&raw)?;
    let found = app.pipeline.deps.artifacts.get_transcript(&id).await?;
    found.map(Json).ok_or_else(|| ApiError::NotFound(format!("no transcript for video {id}")))
}

/// A video's summary, with key points linking to their moment in the video.
#[utoipa::path(get, path = "/videos/{video_id}/summary", tag = "videos",
    params(("video_id" = String, Path, description = "YouTube video id")),
    responses((status = 200, body = Summary), (status = 404, body = ErrorBody)))]
pub async fn summary(State(app): State<AppState>, Path(raw): Path<String>) -> Result<Json<Summary>, ApiError> {
    let id = video_id(&raw)?;
    let found = app.pipeline.deps.artifacts.get_summary(&id).await?;
    found.map(Json).ok_or_else(|| ApiError::NotFound(format!("no summary for video {id}")))
}
