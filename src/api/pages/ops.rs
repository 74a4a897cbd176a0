//! The ops page: the nodes, this node's stage pools, its actor tree aggregated by kind, and the
//! jobs whose actors run here, refreshed every second while the page is open; and the drill-down
//! into one job's VideoActors.
//!
//! The live parts are rendered here, once, and streamed as HTML ([`ticking`]: `/ui/ops/live`,
//! `/ui/ops/jobs/{id}/live`: `event: fragment`, the section's new content) — the page's script
//! swaps them in. Each update is bounded whatever the jobs hold: counts per kind and one line per
//! job (at most `MAX_JOBS`), never one line per video. Nothing is collected while nobody watches.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{Nav, failure, page, short};
use crate::actors::job::JobActors;
use crate::api::AppState;
use crate::api::live::{OPS_EVERY, OpsView, ops_view, ticking};
use crate::domain::JobId;

/// How often the drill-down into one job's VideoActors is refreshed.
const ACTORS_EVERY: Duration = Duration::from_secs(2);

fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// `GET /ui/ops`.
pub async fn ops_page(State(app): State<AppState>) -> Response {
    let view = match ops_view(&app).await {
        Ok(view) => view,
        Err(e) => return failure(e),
    };
    let body = html! {
        h1 { "Operations" }
        p.small { "This node, its stage pools and actors, and the deployment's nodes. Updated every second while "
            "this page is open." }
        div #ops data-live-src="/ui/ops/live" aria-live="off" { (ops_sections(&view)) }
    };
    page("Operations", Nav::Ops, &app, body).into_response()
}

/// `GET /ui/ops/live`: the ops sections, rendered, every second.
pub async fn ops_live(State(app): State<AppState>) -> Response {
    ticking(app, OPS_EVERY, |app| async move {
        let html = match ops_view(&app).await {
            Ok(view) => ops_sections(&view),
            Err(e) => html! { p.error role="alert" { "Cannot read the deployment's state: " (e.to_string()) } },
        };
        ("fragment", html.into_string())
    })
}

/// The ops page's live sections.
pub fn ops_sections(view: &OpsView) -> Markup {
    let here = &view.here;
    let cluster = &view.cluster;
    let actors_total: usize = here.actors.values().sum();
    html! {
        section aria-labelledby="nodes-heading" {
            h2 #nodes-heading { "Nodes" }
            p.small { @if cluster.clustered { "Clustered: each live node's own report is included." }
                @else { "Not clustered: nodes as registered in the job store." } }
            div.scroll { table #nodes {
                thead { tr { th scope="col" { "Node" } th scope="col" { "Incarnation" } th scope="col" { "Heartbeat" }
                    th scope="col" { "Stages" } th scope="col" { "Jobs held" } th scope="col" { "Actors" }
                    th scope="col" { "Pools (running / workers)" } } }
                tbody {
                    @for node in &cluster.nodes {
                        tr {
                            td { (node.record.name) @if node.this_node { " " span.badge data-status="running" { "this node" } } }
                            td { code { (node.incarnation) } }
                            td { (age(node.heartbeat_age_ms)) " ago " @if !node.alive { span.badge data-status="failed" { "gone" } } }
                            td { (node.record.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                            td.num { (node.jobs.len()) }
                            @let snapshot = node.snapshot.as_ref().or(node.this_node.then_some(here));
                            td.num { (snapshot.map_or_else(|| "—".to_owned(), |s| s.actors.values().sum::<usize>().to_string())) }
                            td { @if let Some(s) = snapshot {
                                (s.pools.iter().map(|p| format!("{} {}/{}", p.stage, p.running, p.workers)).collect::<Vec<_>>().join(" · "))
                            } @else { "—" } }
                        }
                    }
                }
            } }
            @if !cluster.orphaned.is_empty() {
                h3 { "Jobs whose node is gone" }
                ul { @for job in &cluster.orphaned {
                    li { a href={"/ui/jobs/" (job.job_id)} { code { (short(&job.job_id.to_string())) } } " held by "
                        (job.owner) "; taken over in " (age(job.lease_left_ms)) }
                } }
            }
        }
        section aria-labelledby="pools-heading" {
            h2 #pools-heading { "Stage pools on " (here.node) }
            div.scroll { table #pools {
                thead { tr { th scope="col" { "Stage" } th scope="col" { "Workers" } th scope="col" { "Running" }
                    th scope="col" title="VideoActors here waiting for this stage: queued or running" { "Awaited" }
                    th scope="col" { "Succeeded" } th scope="col" { "Failed" } } }
                tbody { @for pool in &here.pools {
                    tr data-stage=(pool.stage) { td { (pool.stage) } td.num { (pool.workers) } td.num { (pool.running) }
                        td.num { (pool.awaiting) } td.num { (pool.succeeded) } td.num { (pool.failed) } }
                } }
            } }
        }
        section aria-labelledby="tree-heading" {
            h2 #tree-heading { "Actor tree" }
            p.small { (actors_total) " live actors, by kind. Up " (age(here.uptime_ms)) "; load "
                (here.load.map_or_else(|| "—".to_owned(), |l| format!("{l:.2}"))) " on " (here.cpus) " CPUs." }
            div.columns {
                table #actor-kinds {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Live" } } }
                    tbody { @for (kind, n) in &here.actors { tr data-kind=(kind) { td { (kind) } td.num { (n) } } } }
                }
                table #supervision {
                    thead { tr { th scope="col" { "Supervisor / child" } th scope="col" { "Status" } th scope="col" { "Children" } } }
                    tbody { @for actor in &here.supervision {
                        tr { td { code { (actor.name) } } td { span.badge data-status=(actor.status) { (actor.status) } } td.num { (actor.children) } }
                    } }
                }
                table #restarts {
                    thead { tr { th scope="col" { "Restarted" } th scope="col" { "Times" } } }
                    tbody {
                        @for (what, n) in &here.restarts { tr { td { (what) } td.num { (n) } } }
                        @if here.restarts.is_empty() { tr { td colspan="2" { "none" } } }
                    }
                }
            }
        }
        section aria-labelledby="running-heading" {
            h2 #running-heading { "Jobs running here" }
            @if here.jobs.is_empty() { p { "None." } } @else {
                div.scroll { table #node-jobs {
                    thead { tr { th scope="col" { "Job" } th scope="col" { "VideoActors" } th scope="col" { "Awaiting stage" }
                        th scope="col" { "Mailboxes" } th scope="col" { "Up" } } }
                    tbody { @for job in &here.jobs {
                        @let id = job.job_id.to_string();
                        tr #{"run-" (id)} {
                            td { a href={"/ui/ops/jobs/" (id)} title={"VideoActors of job " (id)} { code { (short(&id)) } } }
                            td.num { (job.videos) }
                            td { (job.stages.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(" · ")) }
                            td.num { (job.waiting) }
                            td { (age(job.uptime_ms)) }
                        }
                    } }
                } }
                @if here.jobs_total > here.jobs.len() { p.small { "and " (here.jobs_total - here.jobs.len()) " more" } }
            }
        }
    }
}

/// `GET /ui/ops/jobs/{id}`: one job's VideoActors.
pub async fn job_actors_page(State(app): State<AppState>, Path(raw): Path<String>) -> Response {
    let job_id = match crate::api::jobs::parse_job_id(&raw) {
        Ok(job_id) => job_id,
        Err(e) => return failure(e),
    };
    if let Err(e) = crate::api::jobs::existing_job(&app, job_id).await {
        return failure(e);
    }
    let id = job_id.to_string();
    let body = html! {
        p.crumbs { a href="/ui/ops" { "← Operations" } " · " a href={"/ui/jobs/" (id)} { "Job page" } }
        h1 { "VideoActors of job " code title=(id) { (short(&id)) } }
        div #actors data-live-src={"/ui/ops/jobs/" (id) "/live"} aria-live="off" { (actors_section(&app, job_id).await) }
    };
    page(&format!("Actors of {}", short(&id)), Nav::Ops, &app, body).into_response()
}

/// `GET /ui/ops/jobs/{id}/live`.
pub async fn job_actors_live(State(app): State<AppState>, Path(raw): Path<String>) -> Response {
    let job_id = match crate::api::jobs::parse_job_id(&raw) {
        Ok(job_id) => job_id,
        Err(e) => return failure(e),
    };
    ticking(app, ACTORS_EVERY, move |app| async move { ("fragment", actors_section(&app, job_id).await.into_string()) })
}

async fn actors_section(app: &AppState, job_id: JobId) -> Markup {
    let Some(JobActors { actors, restarting }) = app.pipeline.job_actors(job_id).await else {
        return html! { p { "Its actors do not run on this node: it has ended, or another node holds it "
        "(" a href="/ui/ops" { "see the nodes" } ")." } };
    };
    html! {
        p.small { (actors.len()) " live VideoActors; " (restarting) " waiting out a backoff before a restart." }
        div.scroll { table #video-actors {
            thead { tr { th scope="col" { "Video" } th scope="col" { "Status" } th scope="col" { "Awaiting stage" }
                th scope="col" { "Restarts" } th scope="col" { "Up" } th scope="col" { "Mailbox" } } }
            tbody { @for actor in &actors {
                tr { td { a href={"/ui/videos/" (actor.video_id) "?job=" (job_id)} { code { (actor.video_id) } } }
                    td { span.badge data-status=(actor.status) { (actor.status) } }
                    td { (actor.stage.map_or("—", |s| s.as_str())) }
                    td.num { (actor.restarts) } td { (age(actor.uptime_ms)) } td.num { (actor.mailbox) } }
            } }
        } }
    }
}
