//! The HTTP API (axum): `router(state)` builds every route; one file per resource; errors are
//! mapped to HTTP once, in [`error`].

pub mod error;
pub mod jobs;
pub mod live;
pub mod misc;
pub mod pages;
pub mod search;
pub mod server;
pub mod session;
pub mod subscriptions;
pub mod videos;
pub mod webhooks;

pub use server::Application;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    /// For `/channels/{id}/ask`: the LLM that writes answers (none: the passages are the answer).
    pub asker: Option<crate::app::ask::Asker>,
    /// `/summarize-text` requests that may run at once; the others get 429.
    pub summarize_slots: Arc<tokio::sync::Semaphore>,
    /// The longest text `/summarize-text` takes (it bounds the LLM calls one request makes).
    pub summarize_max_chars: usize,
    pub api_token: Option<SecretString>,
    /// Job pages as last rendered (`GET /jobs/{id}`).
    pub pages: Arc<jobs::Pages>,
    /// How often an idle event stream sends a keep-alive comment.
    pub events_keep_alive: std::time::Duration,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tubesum", description = "Turns a YouTube channel into per-video transcripts and summaries."),
    paths(
        jobs::create_job, jobs::get_job, jobs::list_jobs, jobs::cancel_job, jobs::list_attempts,
        live::events, live::job_events, live::all_progress, live::ops_events, jobs::job_actors, session::sign_in, session::sign_out,
        videos::transcript, videos::summary, search::search, search::ask, search::digest,
        subscriptions::create_subscription, subscriptions::list_subscriptions, subscriptions::get_subscription,
        subscriptions::delete_subscription, subscriptions::websub_verify, subscriptions::websub_notify,
        misc::healthz, misc::summarize_text, misc::console_tree, misc::cluster, misc::analytics, misc::metrics,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook, webhooks::delete_webhook,
        webhooks::list_deliveries,
    ),
    components(schemas(
        videos::SummaryFormat, videos::TranscriptFormat, search::SearchResults, search::Question, crate::app::ask::Answer, crate::app::ask::Citation,
        crate::app::digest::Digest, crate::app::digest::Topic, crate::app::digest::Moment,
        crate::domain::search::SearchHit, crate::domain::search::PassageKind,
        live::JobProgress, live::OpsView, crate::actors::snapshot::NodeSnapshot, crate::actors::snapshot::NodeActor,
        crate::actors::snapshot::NodeJob, crate::actors::snapshot::NodePool, crate::domain::Stage, session::SignIn, jobs::JobActorsView, crate::actors::job::VideoActorLine, jobs::CreateJob, jobs::JobCreated, jobs::JobView, jobs::VideoView, jobs::JobList, jobs::JobSummaryView,
        misc::SummarizeText, misc::TextSummary, misc::Health, misc::ConsoleTree, misc::PoolView,
        jobs::AttemptPage, crate::domain::AttemptRecord, crate::observability::AnalyticsReport,
        error::ErrorBody, error::ErrorDetail, crate::app::pipeline::ClusterView, crate::app::pipeline::ClusterNode,
        crate::app::pipeline::OrphanedJob, crate::domain::NodeRecord,
        subscriptions::CreateSubscription, subscriptions::SubscriptionList,
        crate::domain::subscriptions::Subscription, crate::domain::subscriptions::PollOutcome,
        webhooks::CreateWebhook, webhooks::WebhookList, webhooks::DeliveryPage, crate::domain::webhooks::Webhook,
        crate::domain::webhooks::WebhookDelivery, crate::domain::webhooks::DeliveryStatus,
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
/// route gave none), the 401 of every route behind the token, the 400 of every route that takes a
/// query string, the 400/413/415 of every route that takes a body (all with the JSON error body),
/// and links from a created job to the routes that take its id (so clients and schema-driven
/// tools can follow them).
struct Responses;

/// The routes the token does not guard.
const OPEN: &[&str] = &["/healthz", "/session", "/websub/{subscription_id}"];

impl utoipa::Modify for Responses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::Content;
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            RefOr::T(ResponseBuilder::new().description(description).content("application/json", body).build())
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let takes_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
                let takes_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                if !OPEN.contains(&path.as_str()) {
                    let description = "Missing or wrong bearer token (only when `server.api_token` is set)";
                    responses.entry("401".into()).or_insert_with(|| error(description));
                }
                if takes_query {
                    let description = "A query parameter out of its bounds, or one the route does not take";
                    responses.entry("400".into()).or_insert_with(|| error(description));
                }
                if takes_body {
                    responses.entry("400".into()).or_insert_with(|| error("The body is not valid for this route"));
                    let too_large = "The body is over `server.max_body_bytes` (`body_too_large`)";
                    responses.entry("413".into()).or_insert_with(|| error(too_large));
                    let media_type = "The body is not sent as `application/json` (`unsupported_media_type`)";
                    responses.entry("415".into()).or_insert_with(|| error(media_type));
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
        link_created(openapi);
    }
}

/// `POST /jobs`'s 202 links to the routes that take the new job's id; `POST /webhooks`'s 201 to
/// those that take the new webhook's.
fn link_created(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    // (the creating route, its status, the id in its body, [(link, operation that takes the id)])
    type Created = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);
    let resources: [Created; 2] = [
        (
            "/jobs",
            "202",
            "job_id",
            &[("GetJob", "get_job"), ("ListAttempts", "list_attempts"), ("CancelJob", "cancel_job")],
        ),
        (
            "/webhooks",
            "201",
            "webhook_id",
            &[
                ("GetWebhook", "get_webhook"),
                ("ListDeliveries", "list_deliveries"),
                ("DeleteWebhook", "delete_webhook"),
            ],
        ),
    ];
    for (path, status, id, links) in resources {
        let created = openapi
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
            .and_then(|post| post.responses.responses.get_mut(status));
        if let Some(RefOr::T(created)) = created {
            for (name, operation) in links {
                let value = format!("$response.body#/{id}");
                let link = LinkBuilder::new().operation_id(*operation).parameter(id, value).build();
                created.links.insert((*name).into(), RefOr::T(link));
            }
        }
    }
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/jobs/{job_id}", get(jobs::get_job).delete(jobs::cancel_job))
        .route("/jobs/{job_id}/attempts", get(jobs::list_attempts))
        .route("/jobs/{job_id}/events", get(live::job_events))
        .route("/jobs/{job_id}/actors", get(jobs::job_actors))
        .route("/events", get(live::events))
        .route("/progress", get(live::all_progress))
        .route("/ops/events", get(live::ops_events))
        .route("/analytics", get(misc::analytics))
        .route("/metrics", get(misc::metrics))
        .route("/videos/{video_id}/transcript", get(videos::transcript))
        .route("/videos/{video_id}/summary", get(videos::summary))
        .route("/summarize-text", post(misc::summarize_text))
        .route("/search", get(search::search))
        .route("/channels/{channel_id}/ask", post(search::ask))
        .route("/channels/{channel_id}/digest", get(search::digest))
        .route("/subscriptions", post(subscriptions::create_subscription).get(subscriptions::list_subscriptions))
        .route(
            "/subscriptions/{subscription_id}",
            get(subscriptions::get_subscription).delete(subscriptions::delete_subscription),
        )
        .route("/console/tree", get(misc::console_tree))
        .route("/cluster", get(misc::cluster))
        .route("/webhooks", post(webhooks::create_webhook).get(webhooks::list_webhooks))
        .route("/webhooks/{webhook_id}", get(webhooks::get_webhook).delete(webhooks::delete_webhook))
        .route("/webhooks/{webhook_id}/deliveries", get(webhooks::list_deliveries))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(misc::healthz))
        .route("/session", post(session::sign_in).delete(session::sign_out))
        .route("/websub/{subscription_id}", get(subscriptions::websub_verify).post(subscriptions::websub_notify))
        .merge(protected)
        .merge(pages::routes(state.clone()))
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(middleware::from_fn(error::json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document of this server: without `server.api_token`, nothing asks for a token, so
/// the document declares no security requirement and no 401.
async fn openapi(State(state): State<AppState>) -> axum::Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    subscriptions::state_min_interval(&mut doc, state.pipeline.settings.subscriptions.min_interval_secs);
    if state.api_token.is_none() {
        doc.security = None;
        if let Some(components) = doc.components.as_mut() {
            components.security_schemes.clear();
        }
        for item in doc.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                operation.security = None;
                operation.responses.responses.remove("401");
            }
        }
    }
    axum::Json(doc)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// When `server.api_token` is set, requires `Authorization: Bearer <token>`, or a browser
/// session's cookie ([`session`]). The console's pages have their own gate ([`pages`]).
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.api_token else {
        return next.run(request).await;
    };
    match credentials(expected, request.method(), request.headers()) {
        Some(Ok(())) => next.run(request).await,
        Some(Err(refused)) => refused,
        None => {
            let missing = "missing `Authorization: Bearer <token>` header (or a session: POST /session)";
            ApiError::Unauthorized(missing.into()).into_response()
        }
    }
}

/// How a request's credentials fare against the API token: its bearer token, else its session
/// cookie ([`session::check_cookie`]); `None` when it has neither, `Some(Err(refusal))` when they
/// do not let it in.
pub(crate) fn credentials(
    expected: &SecretString,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<(), Response>> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match given {
        Some(token) if session::constant_time_eq(token.as_bytes(), expected.expose_secret().as_bytes()) => Some(Ok(())),
        Some(_) => Some(Err(ApiError::Unauthorized("invalid bearer token".into()).into_response())),
        None => session::check_cookie(expected, method, headers),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
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
