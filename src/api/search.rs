//! `/search`: full-text search over every transcript and summary, with moment links; and
//! `/channels/{id}/ask`: a question answered from a channel's passages.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody, model_failed};
use crate::app::search::MAX_HITS;
use crate::domain::search::SearchHit;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What to look for: words (stemmed: `pedal` finds `pedals`), `"a phrase"`, `-excluded`.
    #[param(min_length = 1)]
    pub q: String,
    /// Only this channel's videos: its id (`UC…`) or URL.
    #[param(
        pattern = r"^[ \t\r\n]*(UC[A-Za-z0-9_-]{22}|(https?://)?((www|m)\.)?youtube\.com/channel/UC[A-Za-z0-9_-]{22}([/?#].*)?)[ \t\r\n]*$"
    )]
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
    // (A `q` with nothing to look for, blank or all operators, finds nothing: not an error.)
    if params.q.is_empty() {
        return Err(ApiError::InvalidQuery("q must not be empty".into()).into());
    }
    let limit = super::jobs::page_limit(params.limit, 20, MAX_HITS)?;
    let channel = match params.channel_id.as_deref() {
        Some(raw) => match crate::domain::ChannelRef::parse(raw) {
            Ok(crate::domain::ChannelRef::Id(id)) => Some(id),
            Ok(crate::domain::ChannelRef::Handle(_)) => {
                return Err(
                    ApiError::InvalidQuery("channel_id: give the channel's id or URL, not its handle".into()).into()
                );
            }
            Err(e) => return Err(ApiError::InvalidQuery(format!("channel_id: {e}")).into()),
        },
        None => None,
    };
    let hits = crate::app::search::search(app.pipeline.deps.store.as_ref(), &params.q, channel, limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(SearchResults { q: params.q, hits }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// At most 1,000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    pub question: String,
}

/// Asks a channel: the passages of its videos that best answer the question, and with an LLM
/// configured (`llm.base_url`) an answer written from them, its citations turned into moment links.
#[utoipa::path(post, path = "/channels/{channel_id}/ask", tag = "search", request_body = Question,
    params(("channel_id" = String, Path, description = "The channel's id (UC…) or URL")),
    responses((status = 200, body = crate::app::ask::Answer),
        (status = 400, description = "No question, or one over 1,000 characters", body = ErrorBody),
        (status = 404, description = "Not a channel id", body = ErrorBody),
        (status = 502, description = "The LLM failed", body = ErrorBody)))]
pub async fn ask(
    State(app): State<AppState>,
    axum::extract::Path(channel_id): axum::extract::Path<String>,
    body: Result<Json<Question>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::app::ask::Answer>, Response> {
    use crate::app::ask::AskError;
    let Json(body) = body.map_err(super::error::body_rejection)?;
    let question = body.question.trim();
    if body.question.is_empty() || body.question.chars().count() > 1000 {
        let message = "question must have 1 to 1,000 characters";
        return Err(ApiError::with_code(StatusCode::BAD_REQUEST, "invalid_question", message));
    }
    let channel = channel_of(&channel_id)?;
    let answer = crate::app::ask::ask(app.pipeline.deps.store.as_ref(), app.asker.as_ref(), &channel, question)
        .await
        .map_err(|e| match e {
        AskError::Store(e) => ApiError::from(e).into_response(),
        AskError::Llm(e) => model_failed("llm_failed", &e),
    })?;
    Ok(Json(answer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DigestParams {
    /// Only videos published since then (RFC 3339, e.g. `2026-01-01T00:00:00Z`).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// `json` (the default) or `md` (a Markdown document, as a download).
    pub format: Option<super::videos::SummaryFormat>,
}

/// A channel's digest: the topics that recur across its summarized videos, each with links to
/// the moments that discuss it (offline: the words their key points share; with an LLM: topics
/// the model names from the numbered key points).
#[utoipa::path(get, path = "/channels/{channel_id}/digest", tag = "search",
    params(("channel_id" = String, Path, description = "The channel's id (UC…) or URL"), DigestParams),
    responses((status = 200, body = crate::app::digest::Digest, description = "The digest",
            content((crate::app::digest::Digest = "application/json"), (String = "text/markdown"))),
        (status = 404, description = "Not a channel id", body = ErrorBody),
        (status = 502, description = "The LLM failed", body = ErrorBody)))]
pub async fn digest(
    State(app): State<AppState>,
    axum::extract::Path(channel_id): axum::extract::Path<String>,
    ApiQuery(params): ApiQuery<DigestParams>,
) -> Result<Response, Response> {
    use crate::app::digest::DigestError;
    let channel = channel_of(&channel_id)?;
    let deps = &app.pipeline.deps;
    let digest = crate::app::digest::digest(
        deps.store.as_ref(),
        deps.artifacts.as_ref(),
        app.asker.as_ref(),
        &channel,
        params.since,
    )
    .await
    .map_err(|e| match e {
        DigestError::Store(e) => ApiError::from(e).into_response(),
        DigestError::Llm(e) => model_failed("llm_failed", &e),
    })?;
    Ok(match params.format.unwrap_or_default() {
        super::videos::SummaryFormat::Json => Json(digest).into_response(),
        super::videos::SummaryFormat::Md => super::videos::download(
            &format!("{channel}.digest.md"),
            "text/markdown; charset=utf-8",
            crate::app::digest::markdown(&digest),
        ),
    })
}

/// The channel a path names by its id (or URL); a handle is not resolved here.
fn channel_of(raw: &str) -> Result<crate::domain::ChannelId, ApiError> {
    match crate::domain::ChannelRef::parse(raw) {
        Ok(crate::domain::ChannelRef::Id(id)) => Ok(id),
        _ => Err(ApiError::NotFound(format!("channel {raw} not found: give its id (UC…)"))),
    }
}
