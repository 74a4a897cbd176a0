//! A video's page: its summary with key points linking to their moment, its transcript with
//! clickable timestamps, and downloads.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Nav, failure, page, short};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::app::export::timestamp;
use crate::domain::{JobId, VideoId, moment_url};

#[derive(Deserialize)]
pub struct VideoQuery {
    /// The job the video was reached from: its record gives the title, status and date.
    job: Option<String>,
}

/// `GET /ui/videos/{id}`.
pub async fn video_page(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<VideoQuery>,
) -> Response {
    let Ok(id) = VideoId::parse(&raw) else {
        return failure(ApiError::NotFound(format!("video {raw} not found")));
    };
    let job_id: Option<JobId> = query.job.as_deref().and_then(|j| j.parse().ok());
    let deps = &app.pipeline.deps;
    let read = async {
        let record = match job_id {
            Some(job_id) => deps.store.get_video(job_id, &id).await?,
            None => None,
        };
        let summary = deps.artifacts.get_summary(&id).await?;
        let transcript = deps.artifacts.get_transcript(&id).await?;
        Ok::<_, crate::ports::PortError>((record, summary, transcript))
    };
    let (record, summary, transcript) = match read.await {
        Ok(read) => read,
        Err(e) => return failure(e.into()),
    };
    let title = record.as_ref().map_or_else(|| format!("Video {id}"), |r| r.title.clone());
    let job_link = job_id.map(|j| j.to_string());
    let api = format!("/videos/{id}");
    let md_link = match &job_link {
        Some(job) => format!("{api}/summary?format=md&job_id={job}"),
        None => format!("{api}/summary?format=md"),
    };
    let body = html! {
        article #video data-video=(id) {
            @if let Some(job) = &job_link {
                p.crumbs { a href={"/ui/jobs/" (job)} { "← Job " code { (short(job)) } } }
            }
            h1 { (title) }
            p.facts {
                a href=(moment_url(&id, 0.0)) rel="noopener" { "Watch on YouTube" }
                @if let Some(record) = &record {
                    " · " span.badge data-status=(record.status) { (record.status.as_str().replace('_', " ")) }
                    @if let Some(at) = record.published_at { " · published " (at.format("%Y-%m-%d")) }
                    @if let Some(seconds) = record.duration_secs { " · " (crate::stages::settings::human_duration(f64::from(seconds))) }
                    @if let Some(error) = &record.error { " · " span.error { (error) } }
                }
            }
            section.card aria-labelledby="summary-heading" {
                h2 #summary-heading { "Summary" }
                @match &summary {
                    Some(summary) => {
                        @for paragraph in summary.summary.split("\n\n").filter(|p| !p.trim().is_empty()) {
                            p { (paragraph.trim()) }
                        }
                        @if !summary.key_points.is_empty() {
                            h3 { "Key points" }
                            ol #key-points {
                                @for point in &summary.key_points {
                                    li { a.moment href=(point.url) rel="noopener" { (timestamp(point.start)) } " " (point.text) }
                                }
                            }
                        }
                        p.small { "Summarized by " code { (summary.summarizer) } "." }
                    }
                    None => p { "Not summarized yet." }
                }
            }
            section aria-labelledby="downloads-heading" {
                h2 #downloads-heading { "Downloads" }
                ul.downloads {
                    @if summary.is_some() {
                        li { a href=(md_link) download { "Summary (Markdown)" } }
                        li { a href={(api) "/summary"} download={(id) ".summary.json"} { "Summary (JSON)" } }
                    }
                    @if transcript.is_some() {
                        li { a href={(api) "/transcript?format=srt"} download { "Transcript (SRT)" } }
                        li { a href={(api) "/transcript?format=vtt"} download { "Transcript (WebVTT)" } }
                        li { a href={(api) "/transcript"} download={(id) ".transcript.json"} { "Transcript (JSON)" } }
                    }
                    @if summary.is_none() && transcript.is_none() { li { "Nothing yet." } }
                }
            }
            section aria-labelledby="transcript-heading" {
                h2 #transcript-heading { "Transcript" }
                @match &transcript {
                    Some(transcript) => {
                        p.small { (transcript.segments.len()) " segments, from " (transcript.source.as_str()) "." }
                        ol #transcript.transcript {
                            @for segment in &transcript.segments {
                                li {
                                    a.moment href=(moment_url(&id, segment.start)) rel="noopener" { (timestamp(segment.start)) }
                                    " " span { (segment.text.trim()) }
                                }
                            }
                        }
                    }
                    None => p { "No transcript yet." }
                }
            }
        }
    };
    page(&title, Nav::Jobs, &app, body).into_response()
}
