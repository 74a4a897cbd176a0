//! `/search`: full-text search over every transcript and summary, with moment links.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::app::ChannelError;
use crate::app::search::MAX_HITS;
use crate::domain::search::SearchHit;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What to look for: words (stemmed: `pedal` finds `pedals`), `"a phrase"`, `-excluded`.
    #[param(min_length = 1)]
    pub q: String,
    /// Only this channel's videos: its id or URL.
    pub channel_id: Option<String>,
    /// At most 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub q: String,
    /// Best first.
    pub hits: Vec<SearchHit>,
}

/// Searches every transcript and summary: ranked passages, each with a highlighted snippet and a
/// link to its moment in the video.
#[utoipa::path(get, path = "/search", tag = "search", params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, Response> {
    if params.q.trim().is_empty() {
        return Err(ApiError::with_code(StatusCode::BAD_REQUEST, "invalid_query", "q must not be empty"));
    }
    let limit = super::jobs::page_limit(params.limit, 20, MAX_HITS)?;
    let channel = match params.channel_id.as_deref() {
        Some(raw) => Some(app.pipeline.resolve_channel(raw).await.map_err(|e| match e {
            ChannelError::Invalid(e) => ApiError::InvalidQuery(format!("channel_id: {e}")),
            ChannelError::Handle(e) => ApiError::InvalidQuery(format!("channel_id: {e}")),
        })?),
        None => None,
    };
    let hits = crate::app::search::search(app.pipeline.deps.store.as_ref(), &params.q, channel, limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SearchResults { q: params.q, hits }))
}
