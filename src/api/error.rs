//! API errors, mapped to HTTP once: `{"error": {"code", "message"}}`, internals never leaked.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A query string the route does not take.
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `invalid_channel_id`, `not_found`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A response with a more specific code than the status's default. A message longer than
    /// [`MAX_MESSAGE`] (it may echo what the client sent) is cut short.
    pub fn with_code(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: code.into(), message: truncate(message.into()) } };
        (status, Json(body)).into_response()
    }
}

/// The response to a JSON body the route cannot take: 413 when it is over the size cap, 415 when
/// it is not declared `application/json`, else 400 — always with the JSON error body.
pub fn body_rejection(rejection: axum::extract::rejection::JsonRejection) -> Response {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => {
            return ApiError::with_code(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("invalid request body: {}", rejection.body_text()),
            );
        }
    };
    ApiError::with_code(status, code, rejection.body_text())
}

/// Gives every error response the JSON error body: those made below the handlers (axum's 405, the
/// body limit's 413, …) come as plain text or empty. Headers such as `Allow` are kept. The web
/// console's error pages (HTML) stay as they are.
pub async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let kept = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || kept {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method (see Allow)"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body is larger than server.max_body_bytes"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
        _ => ("error", status.canonical_reason().unwrap_or("error")),
    };
    let (mut parts, _) = response.into_parts();
    let mut json = ApiError::with_code(status, code, message);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    json.headers_mut().extend(parts.headers);
    json
}

/// A model's (summarizer's, LLM's) failure: 503 when trying again may work, else 502, with `code`.
pub fn model_failed(code: &str, e: &crate::stages::StageError) -> Response {
    let status = if e.is_retryable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_GATEWAY };
    ApiError::with_code(status, code, e.to_string())
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        e.into_response()
    }
}

/// The longest error message sent, in characters: input echoed in a message is cut to fit.
pub const MAX_MESSAGE: usize = 300;

fn truncate(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `Query<T>` whose rejection is the JSON error body (`invalid_query`), not axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(query)) => Ok(ApiQuery(query)),
            Err(rejection) => Err(ApiError::InvalidQuery(rejection.body_text()).into_response()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        ApiError::with_code(status, code, self.to_string())
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            PortError::AlreadyExists(what) => ApiError::Conflict(format!("{what} already exists")),
            PortError::Stale(what) => ApiError::Conflict(what),
            PortError::OwnershipLost(what) => ApiError::Conflict(format!("ownership lost: {what}")),
            PortError::Unavailable(detail) => {
                tracing::error!(%detail, "backend unavailable");
                ApiError::Unavailable("a backend is unavailable; try again shortly".into())
            }
            PortError::Corrupt(detail) | PortError::Other(detail) => ApiError::Internal(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE + 50);
        let cut = truncate(long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE + 1);
        assert!(cut.ends_with('…'));
    }
}
