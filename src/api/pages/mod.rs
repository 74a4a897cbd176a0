//! The web console: pages served by tubesum itself, rendered on the server (maud), kept live by
//! one small script (`app.js`, `EventSource` on the API's event streams). Its assets are compiled
//! into the binary: no CDN, works offline.
//!
//! - `/ui`: submit a channel; the jobs, with live progress; search by job or channel.
//! - `/ui/jobs/{id}`: a job's videos (stage, attempts, errors), live; cancel, confirmed first.
//! - `/ui/videos/{id}`: the summary with key points linking to their moment, the transcript with
//!   clickable timestamps, downloads (Markdown, JSON, SRT, WebVTT).
//! - `/ui/subscriptions`: the watched channels with their last poll; watch one more, stop watching.
//! - `/ui/search`: every transcript and summary, hits linking to their moment.
//! - `/ui/ops`: nodes, stage pools, the actor tree aggregated by kind, live; `/ui/ops/jobs/{id}`
//!   drills into one job's VideoActors.
//! - `/ui/sign-in`: when `server.api_token` is set, the token is asked for once and kept as the
//!   session cookie ([`super::session`]); it never appears in a URL.
//!
//! Every form that changes something is a POST that must come from these pages (its `Origin`,
//! else its `Referer`, names this host), signed in or not: another site cannot submit or cancel
//! jobs through a visitor's browser.

mod jobs;
mod ops;
mod search;
mod subscriptions;
mod video;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::AppState;
use super::session;

/// The console's routes; the API's token middleware does not cover them (they have their own
/// gate, which sends a browser to the sign-in form instead of answering 401 JSON).
pub fn routes(state: AppState) -> Router<AppState> {
    let gated = Router::new()
        .route("/ui", get(jobs::jobs_page))
        .route("/ui/jobs", axum::routing::post(jobs::submit))
        .route("/ui/jobs/{job_id}", get(jobs::job_page))
        .route("/ui/jobs/{job_id}/cancel", axum::routing::post(jobs::cancel))
        .route("/ui/videos/{video_id}", get(video::video_page))
        .route("/ui/search", get(search::search_page))
        .route("/ui/subscriptions", get(subscriptions::subscriptions_page).post(subscriptions::create))
        .route("/ui/subscriptions/{subscription_id}/delete", axum::routing::post(subscriptions::delete))
        .route("/ui/ops", get(ops::ops_page))
        .route("/ui/ops/live", get(ops::ops_live))
        .route("/ui/ops/jobs/{job_id}", get(ops::job_actors_page))
        .route("/ui/ops/jobs/{job_id}/live", get(ops::job_actors_live))
        .route_layer(middleware::from_fn_with_state(state.clone(), gate));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/console", get(|| async { Redirect::permanent("/ui/ops") }))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", axum::routing::post(sign_out))
        .route("/ui/assets/{file}", get(asset))
        .merge(gated)
}

/// The pages' gate: forms must come from these pages; with `server.api_token` set, a session
/// (or a bearer token) is needed, and a browser without one is sent to the sign-in form.
async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && !session::same_origin(request.headers()) {
        let why = "This form must be sent from tubesum's own pages. Go back, reload the page and try again.";
        return message(StatusCode::FORBIDDEN, "Refused", why);
    }
    let Some(expected) = &state.api_token else {
        return next.run(request).await;
    };
    if matches!(super::credentials(expected, request.method(), request.headers()), Some(Ok(()))) {
        return next.run(request).await;
    }
    if changes {
        let why = "Your session has ended. Sign in again, then repeat what you did.";
        return message(StatusCode::UNAUTHORIZED, "Signed out", why);
    }
    let here = request.uri().path_and_query().map_or("/ui", |p| p.as_str());
    Redirect::to(&format!("/ui/sign-in?next={}", encode(here))).into_response()
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters and `/`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a sign-in may send the browser next: one of these pages, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/ui") && !next.contains("//") && !next.contains('\\') => next,
        _ => "/ui",
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

async fn sign_in_page(State(state): State<AppState>, Query(query): Query<SignInQuery>) -> Response {
    let next = safe_next(query.next.as_deref()).to_owned();
    if state.api_token.is_none() {
        let body = html! {
            h1 { "No sign-in needed" }
            p { "This server has no API token (" code { "server.api_token" } "): its pages are open." }
            p { a href=(next) { "Go on" } }
        };
        return page("Sign in", Nav::None, &state, body).into_response();
    }
    sign_in_form(&state, &next, None, StatusCode::OK)
}

fn sign_in_form(state: &AppState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        h1 { "Sign in" }
        p { "This tubesum asks for its API token (" code { "server.api_token" } "). It is checked once and kept "
            "as a session cookie that scripts on the page cannot read; it never appears in an address." }
        form.card method="post" action="/ui/sign-in" {
            @if let Some(error) = error { p.error role="alert" id="sign-in-error" { (error) } }
            input type="hidden" name="next" value=(next);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus
                aria-describedby=[error.map(|_| "sign-in-error")];
            button type="submit" { "Sign in" }
        }
    };
    (status, page("Sign in", Nav::None, state, body)).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap, form: axum::Form<SignInForm>) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    if !session::same_origin(&headers) {
        let why = "This form must be sent from tubesum's own pages. Go back, reload the page and try again.";
        return message(StatusCode::FORBIDDEN, "Refused", why);
    }
    let Some(expected) = &state.api_token else {
        return Redirect::to(&next).into_response();
    };
    if !session::constant_time_eq(form.token.as_bytes(), expected.expose_secret().as_bytes()) {
        return sign_in_form(&state, &next, Some("That is not this server's API token."), StatusCode::UNAUTHORIZED);
    }
    with_cookie(Redirect::to(&next).into_response(), &session::cookie(expected))
}

async fn sign_out(headers: HeaderMap) -> Response {
    if !session::same_origin(&headers) {
        return message(StatusCode::FORBIDDEN, "Refused", "Sign out from tubesum's own pages.");
    }
    with_cookie(Redirect::to("/ui/sign-in").into_response(), session::CLEARED)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The compiled-in assets.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (include_str!("app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_str!("app.css"), "text/css; charset=utf-8"),
        _ => return message(StatusCode::NOT_FOUND, "Not found", "No such file."),
    };
    // Versioned by the release: a new tubesum brings new assets under the same name.
    let tag = concat!("\"", env!("CARGO_PKG_VERSION"), "\"");
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache"), (header::ETAG, tag)], body)
        .into_response()
}

/// Which part of the console a page belongs to (the navigation marks it).
#[derive(Clone, Copy, PartialEq)]
enum Nav {
    Jobs,
    Subscriptions,
    Search,
    Ops,
    None,
}

/// A page's `head`: its title, the stylesheet, and (where the page is live) the script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · tubesum" }
            link rel="stylesheet" href="/ui/assets/app.css";
            @if script { script src="/ui/assets/app.js" defer {} }
        }
    }
}

/// A whole page: head, navigation, the page's content in `main`.
fn page(title: &str, nav: Nav, state: &AppState, content: Markup) -> Markup {
    let current = |n: Nav| (nav == n).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Console" {
                        a.brand href="/ui" { "tubesum" }
                        a href="/ui" aria-current=[current(Nav::Jobs)] { "Jobs" }
                        a href="/ui/subscriptions" aria-current=[current(Nav::Subscriptions)] { "Subscriptions" }
                        a href="/ui/search" aria-current=[current(Nav::Search)] { "Search" }
                        a href="/ui/ops" aria-current=[current(Nav::Ops)] { "Ops" }
                    }
                    @if state.api_token.is_some() && nav != Nav::None {
                        form method="post" action="/ui/sign-out" { button.link type="submit" { "Sign out" } }
                    }
                }
                main #main { (content) }
            }
        }
    }
}

/// A page that only says something (errors, refusals).
fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { main #main { h1 { (title) } p { (text) } p { a href="/ui" { "Back to the jobs" } } } }
        }
    };
    (status, body).into_response()
}

/// A page for an error the API would answer as JSON.
fn failure(error: super::error::ApiError) -> Response {
    let response = error.into_response();
    let status = response.status();
    let text = match status {
        StatusCode::NOT_FOUND => "There is nothing here: the address may be mistyped, or what it named is gone.",
        StatusCode::SERVICE_UNAVAILABLE => "A backend is unavailable just now; try again shortly.",
        _ => "Something went wrong on the server; it is in the server's log.",
    };
    message(status, status.canonical_reason().unwrap_or("Error"), text)
}

/// A short form of an id, for people (the whole one is in the page's links and titles): its
/// last 8 characters (job ids are UUIDv7, whose first ones are the time they were made).
fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_sends_the_browser_to_these_pages() {
        assert_eq!(safe_next(Some("/ui/jobs/x?offset=500")), "/ui/jobs/x?offset=500");
        for evil in ["https://evil.example/ui", "//evil.example/ui", "/ui//evil.example", "/\\evil", "/api"] {
            assert_eq!(safe_next(Some(evil)), "/ui", "{evil}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn the_next_page_survives_the_query_string() {
        assert_eq!(encode("/ui/jobs/a?status=failed&offset=5"), "/ui/jobs/a%3Fstatus%3Dfailed%26offset%3D5");
    }
}
