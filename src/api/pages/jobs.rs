//! The jobs page (submit a channel, the jobs with live progress, search) and a job's page (its
//! videos, live; cancel).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Nav, failure, page, short};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::jobs::existing_job;
use crate::app::ChannelError;
use crate::app::pipeline::CancelOutcome;
use crate::domain::{ChannelId, JobId, JobRecord, JobStatus, VideoStatus, workflow};

/// Jobs per page of the list.
const JOBS_PER_PAGE: u32 = 20;
/// Videos per page of a job.
pub const VIDEOS_PER_PAGE: u32 = 500;

#[derive(Deserialize, Default)]
pub struct JobsQuery {
    /// A job id, or a channel (id, URL or handle).
    q: Option<String>,
    offset: Option<u32>,
}

/// How far a job is: its final videos of all, and that as a whole percentage (a job that has
/// ended is at 100 %, whatever its videos).
fn done(status: JobStatus, counts: &[(VideoStatus, u64)]) -> (u64, u64, u64) {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let finished: u64 = counts.iter().filter(|(s, _)| workflow::is_final(*s)).map(|(_, n)| n).sum();
    let percent = if status.is_final() { 100 } else { (finished * 100).checked_div(total).unwrap_or(0) };
    (finished, total, percent)
}

pub(super) fn when(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) } }
}

pub(super) fn status_badge(status: &str) -> Markup {
    html! { span.badge data-status=(status) { (status.replace('_', " ")) } }
}

/// `GET /ui`.
pub async fn jobs_page(State(app): State<AppState>, Query(query): Query<JobsQuery>) -> Response {
    render_jobs(&app, query, None).await
}

async fn render_jobs(app: &AppState, query: JobsQuery, submit_error: Option<(&str, bool, String)>) -> Response {
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let mut channel: Option<ChannelId> = None;
    let mut search_error = None;
    if let Some(q) = q {
        if let Ok(job_id) = q.parse::<JobId>() {
            match app.pipeline.deps.store.get_job(job_id).await {
                Ok(Some(_)) => return Redirect::to(&format!("/ui/jobs/{job_id}")).into_response(),
                Ok(None) => search_error = Some(format!("No job has the id {job_id}.")),
                Err(e) => return failure(e.into()),
            }
        } else {
            match app.pipeline.resolve_channel(q).await {
                Ok(id) => channel = Some(id),
                Err(e) => search_error = Some(format!("Not a job id nor a channel: {e}")),
            }
        }
    }
    let offset = query.offset.unwrap_or(0).min(i32::MAX as u32);
    let store = &app.pipeline.deps.store;
    // Taken before the store is read: the live updates start from here, so nothing is missed.
    let after = app.pipeline.deps.feed.id(app.pipeline.deps.feed.latest());
    let listed = if search_error.is_some() {
        Ok((Vec::new(), 0))
    } else {
        store.list_jobs(channel.as_ref(), JOBS_PER_PAGE, offset).await
    };
    let (jobs, total) = match listed {
        Ok(listed) => listed,
        Err(e) => return failure(e.into()),
    };
    let mut rows = Vec::with_capacity(jobs.len());
    for job in jobs {
        let counts = match store.video_counts(job.job_id).await {
            Ok(counts) => counts.by_status,
            Err(e) => return failure(e.into()),
        };
        rows.push((job, counts));
    }
    let status = if submit_error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (channel_value, force, error) = submit_error.unwrap_or(("", false, String::new()));
    let q_value = q.unwrap_or("");
    let more = |to: u32| {
        let q = q.map(|q| format!("q={}&", super::encode(q))).unwrap_or_default();
        format!("/ui?{q}offset={to}")
    };
    let body = html! {
        h1 { "Jobs" }
        section.card aria-labelledby="submit-heading" {
            h2 #submit-heading { "Summarize a channel" }
            form #submit method="post" action="/ui/jobs" {
                @if !error.is_empty() { p.error #submit-error role="alert" { (error) } }
                label for="channel" { "Channel" }
                input #channel name="channel" required value=(channel_value) autocomplete="off" spellcheck="false"
                    placeholder="UC… id, channel URL, or @handle"
                    aria-describedby=[(!error.is_empty()).then_some("submit-error")];
                label.check { input #force type="checkbox" name="force" value="true" checked[force]; " Redo videos already summarized" }
                button type="submit" { "Summarize" }
            }
        }
        section aria-labelledby="jobs-heading" {
            h2 #jobs-heading { "Jobs" }
            form.search method="get" action="/ui" role="search" {
                label for="q" { "Find by job id or channel" }
                input #q type="search" name="q" value=(q_value) placeholder="job id, UC… id, URL or @handle";
                button type="submit" { "Find" }
                @if q.is_some() { a href="/ui" { "All jobs" } }
            }
            @if let Some(search_error) = &search_error { p.error role="alert" { (search_error) } }
            @if rows.is_empty() && search_error.is_none() {
                p { @if q.is_some() { "This channel has no jobs yet." } @else { "No jobs yet: submit a channel above." } }
            } @else if !rows.is_empty() {
                div.scroll {
                    table #jobs data-after=(after) {
                        thead { tr { th scope="col" { "Job" } th scope="col" { "Channel" } th scope="col" { "Status" }
                            th scope="col" { "Progress" } th scope="col" { "Submitted" } } }
                        tbody {
                            @for (job, counts) in &rows {
                                (job_row(job, counts))
                            }
                        }
                    }
                }
                nav.pager aria-label="Pages of jobs" {
                    @if offset > 0 { a href=(more(offset.saturating_sub(JOBS_PER_PAGE))) { "← Newer" } }
                    span { "Jobs " (offset + 1) "–" (u64::from(offset) + rows.len() as u64) " of " (total) }
                    @if u64::from(offset) + (rows.len() as u64) < total { a href=(more(offset + JOBS_PER_PAGE)) { "Older →" } }
                }
            }
        }
    };
    (status, page("Jobs", Nav::Jobs, app, body)).into_response()
}

fn job_row(job: &JobRecord, counts: &[(VideoStatus, u64)]) -> Markup {
    let (finished, total, percent) = done(job.status, counts);
    let id = job.job_id.to_string();
    html! {
        tr #{"job-" (id)} data-job=(id) {
            td { a href={"/ui/jobs/" (id)} title=(id) { code { (short(&id)) } } }
            td { code { (job.channel_id) } }
            td.status { (status_badge(job.status.as_str())) }
            td.progress {
                progress max="100" value=(percent) aria-label={"Progress of job " (short(&id))} {}
                span.figures { span.percent { (percent) " %" } " · " span.done { (finished) } " of " span.total { (total) } }
            }
            td { (when(job.created_at)) }
        }
    }
}

#[derive(Deserialize)]
pub struct SubmitForm {
    channel: String,
    force: Option<String>,
}

/// `POST /ui/jobs`: to the new job's page, or the form again with what was wrong.
pub async fn submit(State(app): State<AppState>, axum::Form(form): axum::Form<SubmitForm>) -> Response {
    let force = form.force.is_some();
    let channel = match app.pipeline.resolve_channel(form.channel.trim()).await {
        Ok(channel) => channel,
        Err(e) => {
            let why = match e {
                ChannelError::Invalid(e) => format!("That is not a channel: {e}."),
                ChannelError::Handle(e) => format!("{e}."),
            };
            return render_jobs(&app, JobsQuery::default(), Some((&form.channel, force, why))).await;
        }
    };
    match app.pipeline.submit(&channel, force).await {
        Ok(job) => Redirect::to(&format!("/ui/jobs/{}", job.job_id)).into_response(),
        Err(e) => failure(e.into()),
    }
}

#[derive(Deserialize)]
pub struct JobQuery {
    status: Option<VideoStatus>,
    offset: Option<u32>,
}

/// `GET /ui/jobs/{id}`.
pub async fn job_page(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return Redirect::to(&format!("/ui/jobs/{raw}")).into_response();
    };
    let job = match crate::api::jobs::parse_job_id(&raw) {
        Ok(job_id) => existing_job(&app, job_id).await,
        Err(e) => Err(e),
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => return failure(e),
    };
    let store = &app.pipeline.deps.store;
    let offset = query.offset.unwrap_or(0).min(i32::MAX as u32);
    // Taken before the store is read: the live updates start from here, so nothing is missed.
    let after = app.pipeline.deps.feed.id(app.pipeline.deps.feed.latest());
    let read = async {
        let counts = store.video_counts(job.job_id).await?;
        let videos = store.videos_page(job.job_id, query.status, VIDEOS_PER_PAGE, offset).await?;
        Ok::<_, crate::ports::PortError>((counts, videos))
    };
    let (counts, videos) = match read.await {
        Ok(read) => read,
        Err(e) => return failure(ApiError::from(e)),
    };
    let counts = counts.by_status;
    let (finished, total, percent) = done(job.status, &counts);
    let id = job.job_id.to_string();
    let matching = query.status.map_or(total, |s| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n));
    let count_of = |s: VideoStatus| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
    let filter = |to: u32| {
        let status = query.status.map(|s| format!("status={s}&")).unwrap_or_default();
        format!("/ui/jobs/{id}?{status}offset={to}")
    };
    let live = !job.status.is_final();
    // New videos are added as they are discovered only where the list shows their place.
    let appends = query.status.is_none() && u64::from(offset) + (videos.len() as u64) >= total;
    let body = html! {
        div #job data-job=(id) data-after=(after) data-live=(live) data-appends=(appends) data-offset=(offset) data-page-size=(VIDEOS_PER_PAGE)
            data-shown=(videos.len()) data-max-attempts=(app.pipeline.deps.settings.max_attempts) {
            h1 { "Job " code title=(id) { (short(&id)) } }
            dl.facts {
                dt { "Channel" } dd { a href={"https://www.youtube.com/channel/" (job.channel_id)} { code { (job.channel_id) } } }
                dt { "Status" } dd #job-status.status { (status_badge(job.status.as_str())) }
                dt { "Submitted" } dd { (when(job.created_at)) }
                @if job.force { dt { "Force" } dd { "redoes videos already summarized" } }
                dt { "Error" } dd #job-error { (job.error.as_deref().unwrap_or("—")) }
            }
            section.card aria-labelledby="progress-heading" {
                h2 #progress-heading { "Progress" }
                div.bar {
                    progress #job-progress max="100" value=(percent) aria-labelledby="progress-heading" {}
                    span #job-percent.percent aria-live="polite" { (percent) " %" }
                }
                p.figures { span #job-done.done { (finished) } " of " span #job-total.total { (total) } " videos done" }
                ul.counts {
                    @for status in VideoStatus::ALL {
                        li { (status_badge(status.as_str())) " " span.n id={"count-" (status)} { (count_of(*status)) } }
                    }
                }
                @if live {
                    button #cancel-open.danger type="button" command="show-modal" commandfor="cancel-dialog" { "Cancel job…" }
                    dialog #cancel-dialog aria-labelledby="cancel-heading" {
                        h2 #cancel-heading { "Cancel this job?" }
                        p { "Videos not yet summarized stop where they are, and the job ends as cancelled. "
                            "Summaries already written stay." }
                        div.actions {
                            form method="dialog" { button #cancel-keep type="submit" autofocus { "Keep it running" } }
                            form method="post" action={"/ui/jobs/" (id) "/cancel"} {
                                button #cancel-confirm.danger type="submit" { "Cancel the job" }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="videos-heading" {
                h2 #videos-heading { "Videos" }
                form.search method="get" action={"/ui/jobs/" (id)} {
                    label for="status" { "Show" }
                    select #status name="status" {
                        option value="" selected[query.status.is_none()] { "every video" }
                        @for status in VideoStatus::ALL {
                            option value=(status) selected[query.status == Some(*status)] { (status.as_str().replace('_', " ")) }
                        }
                    }
                    button type="submit" { "Show" }
                }
                div.scroll {
                    table #videos {
                        thead { tr { th scope="col" { "Video" } th scope="col" { "Stage" } th scope="col" { "Attempts" }
                            th scope="col" { "Error" } } }
                        tbody {
                            @for video in &videos {
                                tr #{"v-" (video.video_id)} {
                                    td { a href={"/ui/videos/" (video.video_id) "?job=" (id)} { (video.title) } }
                                    td.status { (status_badge(video.status.as_str())) }
                                    td.attempts { (video.attempts) }
                                    td.error { (video.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                @if videos.is_empty() { p #no-videos { @if live { "No videos yet: discovery is listing the channel." } @else { "No videos." } } }
                nav.pager aria-label="Pages of videos" {
                    @if offset > 0 { a href=(filter(offset.saturating_sub(VIDEOS_PER_PAGE))) { "← Previous" } }
                    span #videos-range hidden[videos.is_empty()] {
                        "Videos " (offset + 1) "–" span #range-to { (u64::from(offset) + videos.len() as u64) }
                        " of " span #range-of data-filtered=(query.status.is_some()) { (matching) }
                    }
                    @if u64::from(offset) + (videos.len() as u64) < matching { a href=(filter(offset + VIDEOS_PER_PAGE)) { "Next →" } }
                }
            }
        }
    };
    page(&format!("Job {}", short(&id)), Nav::Jobs, &app, body).into_response()
}

/// `POST /ui/jobs/{id}/cancel`: back to the job's page, which shows it ending.
pub async fn cancel(State(app): State<AppState>, Path(raw): Path<String>) -> Response {
    let job_id = match crate::api::jobs::parse_job_id(&raw) {
        Ok(job_id) => job_id,
        Err(e) => return failure(e),
    };
    match app.pipeline.cancel(job_id).await {
        Ok(CancelOutcome::Cancelling | CancelOutcome::AlreadyFinished(_)) => {
            Redirect::to(&format!("/ui/jobs/{job_id}")).into_response()
        }
        Ok(CancelOutcome::NotFound) => failure(ApiError::NotFound(format!("job {job_id} not found"))),
        Err(e) => failure(e.into()),
    }
}
