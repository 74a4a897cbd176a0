//! The HTTP API (axum): `router(state)` builds every route; one file per resource; errors are
//! mapped to HTTP once, in [`error`].

pub mod error;
pub mod jobs;
pub mod misc;
pub mod server;
pub mod videos;

pub use server::Application;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::app::Pipeline;
use crate::stages::summarization::Summarizer;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    /// For `/summarize-text`.
    pub summarizer: Arc<dyn Summarizer>,
    /// `/summarize-text` requests that may run at once; the others get 429.
    pub summarize_slots: Arc<tokio::sync::Semaphore>,
    /// The longest text `/summarize-text` takes (it bounds the LLM calls one request makes).
    pub summarize_max_chars: usize,
    pub api_token: Option<SecretString>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tubesum", description = "Turns a YouTube channel into per-video transcripts and summaries."),
    paths(
        jobs::create_job, jobs::get_job, jobs::list_jobs, jobs::cancel_job, jobs::list_attempts,
        videos::transcript, videos::summary,
        misc::healthz, misc::summarize_text, misc::console_tree, misc::analytics, misc::metrics,
    ),
    components(schemas(
        jobs::CreateJob, jobs::JobCreated, jobs::JobView, jobs::VideoView, jobs::JobList, jobs::JobSummaryView,
        misc::SummarizeText, misc::TextSummary, misc::Health, misc::ConsoleTree, misc::PoolView,
        jobs::AttemptPage, crate::domain::AttemptRecord, crate::observability::AnalyticsReport,
        error::ErrorBody, error::ErrorDetail,
    )),
    modifiers(&BearerAuth, &Responses),
    // Every route takes the token when `server.api_token` is set; /healthz overrides this.
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Completes every operation's responses: a description for each (the status's reason where the
/// route gave none) and the 401 of every route behind the token.
struct Responses;

impl utoipa::Modify for Responses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::Content;
        use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if path != "/healthz" {
                    responses.entry("401".into()).or_insert_with(|| {
                        let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
                        let description = "Missing or wrong bearer token (only when `server.api_token` is set)";
                        RefOr::T(
                            ResponseBuilder::new().description(description).content("application/json", body).build(),
                        )
                    });
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        let reason = status.parse().ok().and_then(|s| StatusCode::from_u16(s).ok());
                        response.description = reason.and_then(|s| s.canonical_reason()).unwrap_or("Response").into();
                    }
                }
            }
        }
    }
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/jobs/{job_id}", get(jobs::get_job).delete(jobs::cancel_job))
        .route("/jobs/{job_id}/attempts", get(jobs::list_attempts))
        .route("/analytics", get(misc::analytics))
        .route("/metrics", get(misc::metrics))
        .route("/videos/{video_id}/transcript", get(videos::transcript))
        .route("/videos/{video_id}/summary", get(videos::summary))
        .route("/summarize-text", post(misc::summarize_text))
        .route("/console", get(misc::console_page))
        .route("/console/tree", get(misc::console_tree))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(misc::healthz))
        .merge(protected)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(middleware::from_fn(error::json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// When `server.api_token` is set, requires `Authorization: Bearer <token>` (the console page
/// itself is public HTML; its data calls carry the token).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(expected) = &state.api_token else {
        return Ok(next.run(request).await);
    };
    if request.uri().path() == "/console" {
        return Ok(next.run(request).await);
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.expose_secret().as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token".into())),
        None => Err(ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER  t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
