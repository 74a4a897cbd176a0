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
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A response with a more specific code than the status's default.
    pub fn with_code(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } };
        (status, Json(body)).into_response()
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
            PortError::Unavailable(detail) => {
                tracing::error!(%detail, "backend unavailable");
                ApiError::Unavailable("a backend is unavailable; try again shortly".into())
            }
            PortError::Corrupt(detail) | PortError::Other(detail) => ApiError::Internal(detail),
        }
    }
}
