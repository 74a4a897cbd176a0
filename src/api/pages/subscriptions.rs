//! The subscriptions page: the watched channels with their last poll, a form to watch one more,
//! and a button to stop watching each.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::jobs::{status_badge, when};
use super::{Nav, failure, page, short};
use crate::api::AppState;
use crate::app::ChannelError;
use crate::app::subscriptions::{SubscribeError, subscribe};

/// `GET /ui/subscriptions`.
pub async fn subscriptions_page(State(app): State<AppState>) -> Response {
    render(&app, None).await
}

async fn render(app: &AppState, error: Option<(&SubscribeForm, String)>) -> Response {
    let subscriptions = match app.pipeline.subscriptions.list_subscriptions().await {
        Ok(list) => list,
        Err(e) => return failure(e.into()),
    };
    let settings = &app.pipeline.settings.subscriptions;
    let (channel, interval, backfill) = match &error {
        Some((form, _)) => (form.channel.as_str(), form.interval_secs.clone(), form.backfill.is_some()),
        None => ("", settings.default_interval_secs.to_string(), false),
    };
    let body = html! {
        h1 { "Subscriptions" }
        p { "Watched channels are polled for new uploads (their feed, asked conditionally); each batch of "
            "uploads not seen before becomes a job. The first poll only notes what is there, unless "
            "backfill is asked." }
        section.card aria-labelledby="watch-heading" {
            h2 #watch-heading { "Watch a channel" }
            form #watch method="post" action="/ui/subscriptions" {
                @if let Some((_, why)) = &error { p.error #watch-error role="alert" { (why) } }
                label for="watch-channel" { "Channel" }
                input #watch-channel name="channel" required value=(channel) autocomplete="off" spellcheck="false"
                    placeholder="UC… id, channel URL, or @handle" aria-describedby=[error.as_ref().map(|_| "watch-error")];
                label for="watch-interval" { "Every (seconds, at least " (settings.min_interval_secs) ")" }
                input #watch-interval name="interval_secs" type="number" inputmode="numeric"
                    min=(settings.min_interval_secs) required value=(interval);
                label.check { input #watch-backfill type="checkbox" name="backfill" value="true" checked[backfill]; " Summarize the uploads already there too" }
                button type="submit" { "Watch" }
            }
        }
        section aria-labelledby="watched-heading" {
            h2 #watched-heading { "Watched" }
            @if subscriptions.is_empty() {
                p { "No channel is watched yet." }
            } @else {
                div.scroll {
                    table #subscriptions {
                        thead { tr { th scope="col" { "Channel" } th scope="col" { "Every" } th scope="col" { "Last poll" }
                            th scope="col" { "Jobs" } th scope="col" { "Polled by" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for s in &subscriptions {
                                @let id = s.subscription_id.to_string();
                                tr #{"subscription-" (id)} {
                                    td { code { (s.channel_id) } }
                                    td { (s.interval_secs) " s" }
                                    td {
                                        @match (s.last_polled_at, s.last_outcome) {
                                            (Some(at), Some(outcome)) => { (status_badge(outcome.as_str())) " " (when(at)) }
                                            _ => { "not yet" }
                                        }
                                        @if let Some(error) = &s.last_error { p.error { (error) } }
                                    }
                                    td {
                                        (s.jobs)
                                        @if let Some(job) = s.last_job_id {
                                            " · " a href={"/ui/jobs/" (job)} { "latest " code { (short(&job.to_string())) } }
                                        }
                                    }
                                    td { @if let Some(owner) = &s.owner { code { (owner) } } @else { "—" } }
                                    td {
                                        form method="post" action={"/ui/subscriptions/" (id) "/delete"} {
                                            button.danger type="submit" aria-label={"Stop watching " (s.channel_id)} { "Stop watching" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    (status, page("Subscriptions", Nav::Subscriptions, app, body)).into_response()
}

#[derive(Deserialize)]
pub struct SubscribeForm {
    channel: String,
    interval_secs: String,
    backfill: Option<String>,
}

/// `POST /ui/subscriptions`: back to the list, or the form again with what was wrong.
pub async fn create(State(app): State<AppState>, axum::Form(form): axum::Form<SubscribeForm>) -> Response {
    let channel = match app.pipeline.resolve_channel(form.channel.trim()).await {
        Ok(channel) => channel,
        Err(ChannelError::Invalid(e)) => {
            return render(&app, Some((&form, format!("That is not a channel: {e}.")))).await;
        }
        Err(ChannelError::Handle(e)) => return render(&app, Some((&form, format!("{e}.")))).await,
    };
    let Ok(interval) = form.interval_secs.trim().parse::<u64>() else {
        return render(&app, Some((&form, "The interval is a whole number of seconds.".into()))).await;
    };
    let (store, settings) = (app.pipeline.subscriptions.as_ref(), &app.pipeline.settings.subscriptions);
    match subscribe(store, settings, &channel, Some(interval), form.backfill.is_some()).await {
        Ok(_) => {
            app.pipeline.check_leases();
            Redirect::to("/ui/subscriptions").into_response()
        }
        Err(SubscribeError::Store(e)) => failure(e.into()),
        Err(e) => render(&app, Some((&form, format!("{e}.")))).await,
    }
}

/// `POST /ui/subscriptions/{id}/delete`.
pub async fn delete(State(app): State<AppState>, Path(raw): Path<String>) -> Response {
    let Ok(id) = raw.parse::<uuid::Uuid>() else {
        return failure(crate::api::error::ApiError::NotFound(format!("subscription {raw}")));
    };
    match app.pipeline.subscriptions.delete_subscription(id).await {
        Ok(_) => Redirect::to("/ui/subscriptions").into_response(),
        Err(e) => failure(e.into()),
    }
}
