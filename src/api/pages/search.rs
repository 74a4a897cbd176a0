//! The search page: every transcript and summary, hits linking to their moment.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{PreEscaped, html};
use serde::Deserialize;

use super::{Nav, failure, page};
use crate::api::AppState;
use crate::app::export::timestamp;

#[derive(Deserialize, Default)]
pub struct SearchForm {
    q: Option<String>,
    channel: Option<String>,
}

/// `GET /ui/search`.
pub async fn search_page(State(app): State<AppState>, Query(form): Query<SearchForm>) -> Response {
    let q = form.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let channel_text = form.channel.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let mut error = None;
    let channel = match channel_text {
        Some(raw) => match app.pipeline.resolve_channel(raw).await {
            Ok(id) => Some(id),
            Err(e) => {
                error = Some(format!("Not a channel: {e}"));
                None
            }
        },
        None => None,
    };
    let hits = match (q, &error) {
        (Some(q), None) => match crate::app::search::search(app.pipeline.deps.store.as_ref(), q, channel, 50).await {
            Ok(hits) => Some(hits),
            Err(e) => return failure(e.into()),
        },
        _ => None,
    };
    let body = html! {
        h1 { "Search" }
        form.search method="get" action="/ui/search" role="search" {
            label for="search-q" { "Words, \"a phrase\", -excluded" }
            input #search-q type="search" name="q" value=(q.unwrap_or("")) required;
            label for="search-channel" { "Channel (optional)" }
            input #search-channel type="search" name="channel" value=(channel_text.unwrap_or("")) placeholder="UC… id, URL or @handle";
            button type="submit" { "Search" }
        }
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        @if let Some(hits) = &hits {
            p.small #search-count { (hits.len()) " passages" @if hits.len() == 50 { " (the best 50)" } }
            ol #hits.hits {
                @for hit in hits {
                    li {
                        a.moment href=(hit.url) rel="noopener" { (timestamp(hit.start)) }
                        " " a href={"/ui/videos/" (hit.video_id)} { (hit.title) }
                        " " span.badge data-status=(hit.kind) { (hit.kind) }
                        p.snippet { (PreEscaped(&hit.snippet_html)) }
                    }
                }
            }
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, page("Search", Nav::Search, &app, body)).into_response()
}
