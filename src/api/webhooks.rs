//! `/webhooks`: register an endpoint for chosen events, list and remove them, follow their
//! deliveries. How a receiver checks a delivery's signature is in the OpenAPI description of
//! `POST /webhooks` and in the README.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody, body_rejection};
use super::jobs::{page_limit, page_offset};
use crate::adapters::webhooks::{MAX_URL_CHARS, UrlRefused};
use crate::app::webhooks::{NewWebhook, WebhookError};
use crate::domain::webhooks::{DeliveryStatus, EVENT_ALIASES, EVENT_NAMES, Webhook, WebhookDelivery};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: `http` or `https`, no fragment. Its host must resolve to public
    /// addresses only, unless `webhooks.allow_private_addresses` is set (checked now and at every
    /// delivery). Redirects are not followed.
    #[schema(
        example = "https://hooks.example.com/tubesum",
        max_length = 2048,
        pattern = r"^[hH][tT][tT][pP][sS]?://[^#]+$"
    )]
    pub url: String,
    /// The events to deliver (at least one): the domain events' kinds; `video_summarized` is
    /// another name for `summarization_completed`.
    #[schema(schema_with = event_names)]
    pub events: Vec<String>,
    /// Signs every delivery (HMAC-SHA256); 16 to 256 characters. Never shown again.
    #[schema(value_type = String, min_length = 16, max_length = 256, write_only, example = "whsec-3f9a1c7e5b2d4f60")]
    pub secret: SecretString,
}

/// The `events` schema: the names a webhook may ask for.
fn event_names() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let names = EVENT_NAMES.iter().copied().chain(EVENT_ALIASES.iter().map(|(alias, _)| *alias));
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)))
        .min_items(Some(1))
        .examples([serde_json::json!(["video_summarized", "job_finished"])])
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub webhooks: Vec<Webhook>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub deliveries: Vec<WebhookDelivery>,
    /// How many deliveries match `status` (all of the webhook's without it).
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only the deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// At most 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Where the page starts (0 by default).
    #[param(maximum = 2147483647)]
    pub offset: Option<u32>,
}

/// Register a webhook.
///
/// tubesum POSTs a JSON body to `url` for every event of the kinds in `events` that occurs from
/// now on: `{delivery_id, webhook_id, event, event_id, job_id, video_id, occurred_at, data}`, where
/// `data` holds the event's own fields. Headers: `Content-Type: application/json`,
/// `X-Tubesum-Event` (the event's kind), `X-Tubesum-Delivery` (the delivery's id, the same on every
/// attempt: deduplicate by it) and `X-Tubesum-Signature: t=<unix seconds>,v1=<hex>`, where the hex
/// is HMAC-SHA256 keyed with the secret over `<t>.<body>` (the body exactly as received). To
/// verify: recompute it, compare in constant time, and refuse a `t` more than a few minutes old.
///
/// A 2xx answer within `webhooks.timeout_secs` delivers it; anything else is retried with capped
/// exponential backoff, up to `webhooks.max_attempts` attempts (see `/webhooks/{webhook_id}/deliveries`).
#[utoipa::path(post, path = "/webhooks", request_body = CreateWebhook, tag = "webhooks",
    responses(
        (status = 201, description = "Registered (without its secret)", body = Webhook,
            headers(("Location" = String, description = "The webhook's URL"))),
        (status = 400, description = "Invalid input: `invalid_body`, `invalid_events`, `invalid_secret`, \
            `invalid_webhook_url`, `webhook_url_refused` (its host is or resolves to a non-public address and \
            `webhooks.allow_private_addresses` is off), `webhook_url_unresolvable`", body = ErrorBody),
    ))]
pub async fn create_webhook(
    State(app): State<AppState>,
    body: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(body) = body.map_err(body_rejection)?;
    let new = NewWebhook { url: body.url, events: body.events, secret: body.secret };
    let webhook = app.pipeline.webhooks.create(new).await.map_err(|e| refusal(&e))?;
    let location = format!("/webhooks/{}", webhook.webhook_id);
    let mut response = (StatusCode::CREATED, Json(webhook)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Why a webhook was not registered, as HTTP.
fn refusal(e: &WebhookError) -> Response {
    let bad = |code: &str| ApiError::with_code(StatusCode::BAD_REQUEST, code, e.to_string());
    match e {
        WebhookError::Events(_) => bad("invalid_events"),
        WebhookError::Secret(_) => bad("invalid_secret"),
        WebhookError::Url(UrlRefused::Invalid { .. }) => bad("invalid_webhook_url"),
        WebhookError::Url(UrlRefused::Private { .. }) => bad("webhook_url_refused"),
        WebhookError::Url(UrlRefused::Unresolvable { .. }) => bad("webhook_url_unresolvable"),
        WebhookError::Port(e) => ApiError::from(e.clone()).into_response(),
    }
}

/// The registered webhooks, oldest first (their secrets are never shown).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", responses((status = 200, body = WebhookList)))]
pub async fn list_webhooks(State(app): State<AppState>) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList { webhooks: app.pipeline.webhooks.list().await? }))
}

/// A webhook.
#[utoipa::path(get, path = "/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    responses((status = 200, body = Webhook), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(app): State<AppState>,
    Path(webhook_id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    let id = parse_webhook_id(&webhook_id)?;
    app.pipeline.webhooks.get(id).await?.map(Json).ok_or_else(|| not_found(&webhook_id))
}

/// Remove a webhook: nothing more is sent to it, including deliveries still pending, and its
/// deliveries are forgotten.
#[utoipa::path(delete, path = "/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(app): State<AppState>,
    Path(webhook_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_webhook_id(&webhook_id)?;
    match app.pipeline.webhooks.delete(id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(not_found(&webhook_id)),
    }
}

/// A page of a webhook's deliveries, newest first: each event sent to it, its status
/// (`pending`, `delivered`, `failed`), attempts so far, the last answer's HTTP status or the last
/// error, and when it is tried next.
#[utoipa::path(get, path = "/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id"), DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    Path(webhook_id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = page_limit(query.limit, 20, 100)?;
    let offset = page_offset(query.offset)?;
    let id = parse_webhook_id(&webhook_id)?;
    let (deliveries, total) = app
        .pipeline
        .webhooks
        .deliveries(id, query.status, limit, offset)
        .await?
        .ok_or_else(|| not_found(&webhook_id))?;
    Ok(Json(DeliveryPage { deliveries, total, limit, offset }))
}

fn parse_webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found(raw))
}

fn not_found(raw: &str) -> ApiError {
    ApiError::NotFound(format!("webhook {raw} not found"))
}

const _: () = assert!(MAX_URL_CHARS == 2048, "the schema's max_length");
