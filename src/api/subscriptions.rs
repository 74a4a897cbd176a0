//! `/subscriptions`: watch a channel for new uploads; and `/websub/{id}`, the callback a WebSub hub
//! verifies and notifies (outside the token: hubs cannot send it; notifications are signed).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiQuery, ErrorBody, body_rejection};
use crate::app::subscriptions::{SubscribeError, hub_signature_valid, subscribe, topic_names};
use crate::domain::subscriptions::Subscription;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// The channel: its id, its URL, or its handle (as for `POST /jobs`).
    #[schema(
        example = "UCabcdefghijklmnopqrstuv",
        pattern = r"^[ \t\r\n]*(UC[A-Za-z0-9_-]{22}|(https?://)?((www|m)\.)?youtube\.com/(channel/UC[A-Za-z0-9_-]{22}|@[A-Za-z0-9._-]{3,30})([/?#].*)?|@[A-Za-z0-9._-]{3,30})[ \t\r\n]*$"
    )]
    pub channel_id: String,
    /// Seconds between polls: at least `subscriptions.min_interval_secs` (the served document
    /// states this server's), at most a year; default `subscriptions.default_interval_secs`.
    #[schema(minimum = 1, maximum = 31536000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub interval_secs: Option<u64>,
    /// Whether the first poll summarizes the uploads already in the feed (default: it only notes
    /// them, and later polls submit what is new).
    #[serde(default)]
    pub backfill: bool,
}

/// A whole number, also when written with a fraction of zero (`60.0`: JSON Schema's integers
/// include it).
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => Ok(Some(n)),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!("expected a whole number of seconds, not {number}"))),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    /// Oldest first.
    pub subscriptions: Vec<Subscription>,
}

/// Puts this server's `subscriptions.min_interval_secs` in the document as `interval_secs`'s
/// minimum (what it refuses below).
pub fn state_min_interval(doc: &mut utoipa::openapi::OpenApi, min: u64) {
    use utoipa::Number;
    use utoipa::openapi::{RefOr, Schema};
    let schema = doc.components.as_mut().and_then(|c| c.schemas.get_mut("CreateSubscription"));
    let Some(RefOr::T(Schema::Object(object))) = schema else { return };
    if let Some(RefOr::T(Schema::Object(interval))) = object.properties.get_mut("interval_secs") {
        interval.minimum = Some(Number::UInt(min.max(1) as usize));
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("subscription {raw} not found")))
}

/// Watch a channel: a job for each batch of new uploads its feed shows.
#[utoipa::path(post, path = "/subscriptions", request_body = CreateSubscription, tag = "subscriptions",
    responses(
        (status = 201, description = "Subscribed; it is polled from now on", body = Subscription),
        (status = 400, description = "Invalid channel (`invalid_channel_id`) or interval (`interval_too_short`, `interval_too_long`)", body = ErrorBody),
        (status = 404, description = "No channel has this handle (`channel_not_found`)", body = ErrorBody),
        (status = 409, description = "The channel has a subscription already (`subscription_exists`; its id is in the message)", body = ErrorBody),
        (status = 502, description = "YouTube could not resolve the handle (`youtube_unavailable`)", body = ErrorBody),
    ))]
pub async fn create_subscription(
    State(app): State<AppState>,
    body: Result<Json<CreateSubscription>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(body) = body.map_err(body_rejection)?;
    let channel = app.pipeline.resolve_channel(&body.channel_id).await.map_err(super::jobs::channel_error)?;
    let pipeline = &app.pipeline;
    let settings = &pipeline.settings.subscriptions;
    let created = subscribe(pipeline.subscriptions.as_ref(), settings, &channel, body.interval_secs, body.backfill)
        .await
        .map_err(|e| match e {
            e @ SubscribeError::IntervalTooShort { .. } => {
                ApiError::with_code(StatusCode::BAD_REQUEST, "interval_too_short", e.to_string())
            }
            e @ SubscribeError::IntervalTooLong(_) => {
                ApiError::with_code(StatusCode::BAD_REQUEST, "interval_too_long", e.to_string())
            }
            e @ SubscribeError::Exists(_) => {
                ApiError::with_code(StatusCode::CONFLICT, "subscription_exists", e.to_string())
            }
            SubscribeError::Store(e) => ApiError::from(e).into_response(),
        })?;
    // Polled at once by this process (the first poll notes the feed), not at the next lease round.
    pipeline.check_leases();
    let location = format!("/subscriptions/{}", created.subscription_id);
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Every subscription, with its last poll.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", responses((status = 200, body = SubscriptionList)))]
pub async fn list_subscriptions(State(app): State<AppState>) -> Result<Json<SubscriptionList>, ApiError> {
    Ok(Json(SubscriptionList { subscriptions: app.pipeline.subscriptions.list_subscriptions().await? }))
}

/// One subscription: its last poll (outcome, error, job), its counts, and who polls it.
#[utoipa::path(get, path = "/subscriptions/{subscription_id}", tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription's id")),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)))]
pub async fn get_subscription(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let id = parse_id(&id)?;
    let found = app.pipeline.subscriptions.get_subscription(id).await?;
    found.map(Json).ok_or_else(|| ApiError::NotFound(format!("subscription {id} not found")))
}

/// Stop watching (jobs it submitted go on).
#[utoipa::path(delete, path = "/subscriptions/{subscription_id}", tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Deleted; its poller stops at its next poll or lease round"),
        (status = 404, body = ErrorBody)))]
pub async fn delete_subscription(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    match app.pipeline.subscriptions.delete_subscription(id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound(format!("subscription {id} not found"))),
    }
}

/// A WebSub hub's verification of intent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HubVerification {
    /// `subscribe` or `unsubscribe`.
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode")]
    pub mode: String,
    /// The feed's URL (it must name the subscription's channel: `…?channel_id=UC…`).
    #[serde(rename = "hub.topic")]
    #[param(rename = "hub.topic")]
    pub topic: String,
    /// Echoed back when the intent is confirmed.
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge")]
    pub challenge: String,
    #[serde(rename = "hub.lease_seconds")]
    #[param(rename = "hub.lease_seconds")]
    pub lease_seconds: Option<u64>,
}

/// WebSub verification: confirms (echoes `hub.challenge`) a subscribe for a subscription that exists
/// and whose channel the topic names, and an unsubscribe for one that does not.
#[utoipa::path(get, path = "/websub/{subscription_id}", tag = "subscriptions", security(()),
    params(("subscription_id" = String, Path, description = "The subscription's id"), HubVerification),
    responses((status = 200, description = "Confirmed: the challenge", body = String, content_type = "text/plain"),
        (status = 404, description = "Not confirmed", body = ErrorBody)))]
pub async fn websub_verify(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(hub): ApiQuery<HubVerification>,
) -> Result<Response, ApiError> {
    let found = match id.parse::<Uuid>() {
        Ok(id) => app.pipeline.subscriptions.get_subscription(id).await?,
        Err(_) => None,
    };
    let wanted = found.as_ref().is_some_and(|s| topic_names(&hub.topic, &s.channel_id));
    let confirmed = match hub.mode.as_str() {
        "subscribe" => wanted,
        "unsubscribe" => !wanted,
        _ => false,
    };
    if !confirmed {
        return Err(ApiError::NotFound(format!("no subscription {id} wants hub.mode={} for this topic", hub.mode)));
    }
    tracing::info!(subscription = %id, mode = %hub.mode, lease_seconds = ?hub.lease_seconds, "websub intent confirmed");
    Ok(([(header::CONTENT_TYPE, "text/plain")], hub.challenge).into_response())
}

/// A WebSub notification (the channel's feed changed): with a valid `X-Hub-Signature` (the HMAC of
/// the body under `subscriptions.websub_secret`), the subscription is polled at once. As WebSub
/// asks, the answer is 2xx whether or not the signature holds; an unsigned or wrongly signed
/// notification is ignored (and logged).
#[utoipa::path(post, path = "/websub/{subscription_id}", tag = "subscriptions", security(()),
    params(("subscription_id" = String, Path, description = "The subscription's id"),
        ("X-Hub-Signature" = Option<String>, Header, description = "`sha1=<hex HMAC of the body>` (or `sha256=`)")),
    request_body(content = Option<String>, content_type = "application/atom+xml"),
    responses((status = 202, description = "Received"), (status = 404, body = ErrorBody)))]
pub async fn websub_notify(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let secret = &app.pipeline.settings.subscriptions.websub_secret;
    let signature = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    if !hub_signature_valid(secret, &body, signature) {
        tracing::warn!(subscription = %id, "websub notification without a valid X-Hub-Signature; ignored");
        return Ok(StatusCode::ACCEPTED);
    }
    match app.pipeline.subscriptions.request_poll(id).await? {
        true => Ok(StatusCode::ACCEPTED),
        false => Err(ApiError::NotFound(format!("subscription {id} not found"))),
    }
}
