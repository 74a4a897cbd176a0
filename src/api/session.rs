//! Browser sessions: `POST /session {"token"}` checks the API token once and answers with a
//! session cookie (`HttpOnly; SameSite=Strict`), which then stands in for the bearer token, so a
//! page (and its `EventSource`, which cannot send headers) never handles the token again and it
//! never appears in a URL. `DELETE /session` ends it.
//!
//! The cookie holds a digest of the token, not the token: it is worth nothing beyond this server,
//! and changing `server.api_token` ends every session. A request that changes something (any
//! method but GET/HEAD/OPTIONS) with the cookie must come from this server's own pages: its
//! `Origin` (or, without one, its `Referer`) must name the host it was sent to, or it is refused
//! (403) — a cross-site form or script cannot use the cookie to submit or cancel jobs.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, body_rejection};

/// The session cookie's name.
pub const COOKIE: &str = "tubesum_session";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The API token (`server.api_token`).
    #[schema(min_length = 1)]
    pub token: String,
}

/// Signs a browser in: the token, checked once, becomes a session cookie.
#[utoipa::path(post, path = "/session", tag = "session", request_body = SignIn, security(()),
    responses(
        (status = 204, description = "Signed in: `Set-Cookie` carries the session (none when the server has no token)",
            headers(("Set-Cookie" = String, description = "`tubesum_session=…; Path=/; HttpOnly; SameSite=Strict`"))),
        (status = 400, description = "No token given", body = ErrorBody),
        (status = 401, description = "Not the API token", body = ErrorBody)))]
pub async fn sign_in(
    State(app): State<AppState>,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, Response> {
    let Json(body) = body.map_err(body_rejection)?;
    if body.token.is_empty() {
        return Err(ApiError::with_code(StatusCode::BAD_REQUEST, "invalid_body", "`token` must not be empty"));
    }
    let Some(expected) = &app.api_token else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if !constant_time_eq(body.token.as_bytes(), expected.expose_secret().as_bytes()) {
        return Err(ApiError::Unauthorized("that is not the API token".into()).into_response());
    }
    Ok(set_cookie(&cookie(expected)))
}

/// Signs the browser out: the session cookie is cleared.
#[utoipa::path(delete, path = "/session", tag = "session", security(()),
    responses((status = 204, description = "Signed out: `Set-Cookie` clears the session")))]
pub async fn sign_out() -> Response {
    set_cookie(CLEARED)
}

/// The `Set-Cookie` of a session for `token`.
pub fn cookie(token: &SecretString) -> String {
    format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", session_value(token))
}

/// The `Set-Cookie` that ends a session.
pub const CLEARED: &str = "tubesum_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";

fn set_cookie(cookie: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// What a session cookie for `token` holds.
fn session_value(token: &SecretString) -> String {
    let digest = Sha256::new().chain_update(b"tubesum session v1\0").chain_update(token.expose_secret()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a request without a bearer token fares with its session cookie: `None` when it has none.
pub fn check_cookie(token: &SecretString, method: &Method, headers: &HeaderMap) -> Option<Result<(), Response>> {
    let given = cookie_value(headers, COOKIE)?;
    if !constant_time_eq(given.as_bytes(), session_value(token).as_bytes()) {
        let ended = ApiError::Unauthorized("the session has ended (the API token changed): sign in again".into());
        return Some(Err(ended.into_response()));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(headers) {
        return Some(Err(ApiError::with_code(
            StatusCode::FORBIDDEN,
            "cross_site",
            "refused: a request that changes something with the session cookie must come from this server's pages \
             (its Origin must be this host); scripts and tools use `Authorization: Bearer <token>`",
        )));
    }
    Some(Ok(()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Whether the request's `Origin` (else `Referer`) names the host it was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let from = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    from.and_then(|url| url.split_once("://")).is_some_and(|(_, rest)| rest.split('/').next() == Some(host))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_checked() {
        let token = SecretString::from("s3cret");
        let good = format!("a=1; {COOKIE}={}; b=2", session_value(&token));
        let read = headers(&[("cookie", &good), ("host", "127.0.0.1:8080")]);
        assert!(matches!(check_cookie(&token, &Method::GET, &read), Some(Ok(()))));
        assert!(matches!(check_cookie(&token, &Method::POST, &read), Some(Err(_))), "no Origin");
        let other = SecretString::from("another");
        assert!(matches!(check_cookie(&other, &Method::GET, &read), Some(Err(_))), "the token changed");
        assert!(check_cookie(&token, &Method::GET, &headers(&[("cookie", "a=1")])).is_none());
        assert_ne!(session_value(&token), "s3cret", "the cookie is not the token");
    }

    #[test]
    fn only_this_hosts_pages_may_change_things_with_the_cookie() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[host, ("referer", "https://127.0.0.1:8080/console?x=1")])));
        assert!(!same_origin(&headers(&[host, ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8080.evil.example")])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[host])));
    }
}
