//! `/healthz`, `/summarize-text`, `/cluster`, `/console/tree` (the live actor tree), `/analytics`, `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, body_rejection, model_failed};
use crate::app::pipeline::ActorNode;
use crate::domain::Segment;
use crate::observability::AnalyticsReport;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness (never needs a token).
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummarizeText {
    #[schema(min_length = 1)]
    pub text: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TextSummary {
    pub summary: String,
}

/// Summarizes a text with the configured summarizer (stateless).
#[utoipa::path(post, path = "/summarize-text", tag = "summaries", request_body = SummarizeText,
    responses((status = 200, body = TextSummary), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn summarize_text(
    State(app): State<AppState>,
    body: Result<Json<SummarizeText>, JsonRejection>,
) -> Result<Json<TextSummary>, Response> {
    let Json(body) = body.map_err(body_rejection)?;
    if body.text.trim().is_empty() {
        return Err(ApiError::with_code(StatusCode::BAD_REQUEST, "empty_text", "text must not be empty"));
    }
    let chars = body.text.chars().count();
    if chars > app.summarize_max_chars {
        let message = format!(
            "the text has {chars} characters; /summarize-text takes at most {} (server.summarize_text_max_chars)",
            app.summarize_max_chars
        );
        return Err(ApiError::with_code(StatusCode::PAYLOAD_TOO_LARGE, "text_too_long", message));
    }
    let Ok(_slot) = app.summarize_slots.try_acquire() else {
        let message =
            "too many /summarize-text requests at once (server.summarize_text_concurrency); try again shortly";
        return Err(ApiError::with_code(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message));
    };
    let segments = vec![Segment { start: 0.0, end: 0.0, text: body.text }];
    let draft = app.summarizer.summarize(&segments).await.map_err(|e| model_failed("summarizer_failed", &e))?;
    Ok(Json(TextSummary { summary: draft.summary }))
}

#[derive(Serialize, ToSchema)]
pub struct PoolView {
    pub stage: String,
    pub workers: usize,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConsoleTree {
    pub tree: ActorNode,
    pub pools: Vec<PoolView>,
}

/// The deployment's nodes (registered in the job store, heartbeat every third of a job lease),
/// the jobs each holds, and the unfinished jobs whose holder is gone.
#[utoipa::path(get, path = "/cluster", tag = "ops",
    responses((status = 200, body = crate::app::pipeline::ClusterView), (status = 503, body = ErrorBody)))]
pub async fn cluster(State(app): State<AppState>) -> Result<Json<crate::app::pipeline::ClusterView>, ApiError> {
    Ok(Json(app.pipeline.cluster().await?))
}

/// The live actor tree and stage pool counters.
#[utoipa::path(get, path = "/console/tree", tag = "ops", responses((status = 200, body = ConsoleTree)))]
pub async fn console_tree(State(app): State<AppState>) -> Json<ConsoleTree> {
    let pools = app
        .pipeline
        .pool_stats()
        .await
        .into_iter()
        .map(|p| PoolView {
            stage: p.stage.to_string(),
            workers: p.workers,
            running: p.running,
            succeeded: p.succeeded,
            failed: p.failed,
        })
        .collect();
    Json(ConsoleTree { tree: app.pipeline.tree(), pools })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// Only this job's events.
    #[param(value_type = String, format = Uuid, required = false)]
    pub job_id: Option<String>,
}

/// What the analytics consumer counted from the event stream: per-stage completions, failures and
/// durations, jobs finished. Overall (every event retained on the event log) or for one job.
#[utoipa::path(get, path = "/analytics", tag = "ops", params(AnalyticsQuery),
    responses((status = 200, body = AnalyticsReport), (status = 400, body = ErrorBody)))]
pub async fn analytics(
    State(app): State<AppState>,
    super::error::ApiQuery(query): super::error::ApiQuery<AnalyticsQuery>,
) -> Result<Json<AnalyticsReport>, Response> {
    let job_id = query
        .job_id
        .as_deref()
        .map(|raw| raw.parse().map_err(|_| ApiError::InvalidQuery(format!("job_id: {raw:?} is not a job id"))))
        .transpose()?;
    Ok(Json(app.pipeline.analytics.report(job_id)))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.pipeline.prometheus().await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
