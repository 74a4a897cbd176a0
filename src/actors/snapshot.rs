//! A node's own report: its facts and its part of the actor tree, summarised — actors counted by
//! kind, the supervisors, the stage pools, and one line per job whose actors run here (at most
//! [`MAX_JOBS`]), never one line per video. Its size is bounded whatever the jobs hold: it is
//! what the ops console receives every second and what a cluster node's agent answers.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use ractor::{ActorCell, ActorRef};
use serde::{Deserialize, Serialize};

use super::root::RootMsg;
use super::{Deps, PoolStats, job_actor_name};
use crate::domain::{JobId, Stage};

/// The most jobs a snapshot lists.
pub const MAX_JOBS: usize = 200;

/// One node's part of the cluster, as it reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeSnapshot {
    pub node: String,
    pub version: String,
    pub stages: Vec<Stage>,
    pub uptime_ms: u64,
    /// Live actors by kind (`job`, `video`, `pool`, …).
    pub actors: BTreeMap<String, usize>,
    /// The root supervisor and its children (job supervisor, stage pools, event router,
    /// consumers), each with its status and how many children it has.
    pub supervision: Vec<NodeActor>,
    /// Supervisor restarts since the node started, by what was restarted (`supervisors`: the
    /// root's children; `jobs`; `videos`).
    pub restarts: BTreeMap<String, u64>,
    pub pools: Vec<NodePool>,
    /// The host's load: 1-minute load average (None where the OS does not say) over its CPUs.
    pub load: Option<f64>,
    pub cpus: usize,
    /// The jobs whose actors run here (at most [`MAX_JOBS`]; `jobs_total` says how many).
    pub jobs: Vec<NodeJob>,
    pub jobs_total: usize,
}

/// One of the node's long-lived actors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeActor {
    /// Its name without the pipeline's prefix (`root-supervisor`, `pool:download`, …).
    pub name: String,
    /// ractor's status, lower case (`running`, `stopping`, …).
    pub status: String,
    pub children: usize,
}

impl NodeActor {
    fn of(cell: &ActorCell) -> NodeActor {
        let name = cell.get_name().unwrap_or_default();
        NodeActor {
            name: name.rsplit('/').next().unwrap_or(&name).to_owned(),
            status: format!("{:?}", cell.get_status()).to_lowercase(),
            children: cell.get_children().len(),
        }
    }
}

/// A job whose actors run on the node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeJob {
    #[schema(value_type = String)]
    pub job_id: JobId,
    /// Since its JobActor started here.
    pub uptime_ms: u64,
    /// Its live VideoActors (videos not yet final).
    pub videos: usize,
    /// Those VideoActors by the stage whose result each waits for (`none`: between stages).
    pub stages: BTreeMap<String, usize>,
    /// Events routed to the job's actors and not handled yet (their mailboxes, counted by tubesum).
    pub waiting: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodePool {
    pub stage: Stage,
    pub workers: usize,
    /// This pool's stage runs now.
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// The node's VideoActors waiting for this stage's result: their commands queued or running
    /// (with a broker, maybe at another node's pool).
    #[serde(default)]
    pub awaiting: u64,
}

impl From<PoolStats> for NodePool {
    fn from(p: PoolStats) -> Self {
        NodePool {
            stage: p.stage,
            workers: p.workers,
            running: p.running,
            succeeded: p.succeeded,
            failed: p.failed,
            awaiting: 0,
        }
    }
}

/// Who the node is, for its snapshot.
pub struct NodeFacts<'a> {
    pub node: &'a str,
    pub stages: &'a [Stage],
    pub started: Instant,
}

/// This node's snapshot, read off its live tree under `root`.
pub async fn take(deps: &Deps, root: &ActorRef<RootMsg>, facts: NodeFacts<'_>) -> NodeSnapshot {
    let pools = ractor::call_t!(root, RootMsg::PoolStats, 2_000).unwrap_or_default();
    let mut running = ractor::call_t!(root, RootMsg::RunningJobs, 2_000).unwrap_or_default();
    let jobs_total = running.len();
    running.sort();
    let mut actors = BTreeMap::new();
    let mut tallies = HashMap::new();
    count(&root.get_cell(), &mut actors, &mut tallies);
    let mut jobs: Vec<NodeJob> = running
        .into_iter()
        .map(|job_id| {
            let cell = tallies.remove(&job_actor_name(job_id));
            cell.map(|cell| tally(deps, job_id, &cell)).unwrap_or(NodeJob { job_id, ..NodeJob::default() })
        })
        .collect();
    let mut pools: Vec<NodePool> = pools.into_iter().map(NodePool::from).collect();
    for pool in &mut pools {
        pool.awaiting = jobs.iter().filter_map(|j| j.stages.get(pool.stage.as_str())).map(|n| *n as u64).sum();
    }
    jobs.truncate(MAX_JOBS);
    let top = root.get_cell();
    let mut supervision = vec![NodeActor::of(&top)];
    supervision.extend(top.get_children().iter().map(NodeActor::of));
    supervision[1..].sort_by(|a, b| a.name.cmp(&b.name));
    let restarts = deps.restarts.read().into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    NodeSnapshot {
        node: facts.node.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        stages: facts.stages.to_vec(),
        uptime_ms: facts.started.elapsed().as_millis() as u64,
        actors,
        supervision,
        restarts,
        pools,
        load: load_average(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        jobs,
        jobs_total,
    }
}

/// A job's line: its actor's and its VideoActors' entries on the board.
fn tally(deps: &Deps, job_id: JobId, job: &ActorCell) -> NodeJob {
    let board = &deps.board;
    let own = board.get(job.get_id());
    let mut line = NodeJob {
        job_id,
        uptime_ms: own.map_or(0, |e| e.since.elapsed().as_millis() as u64),
        waiting: own.map_or(0, |e| e.waiting),
        ..NodeJob::default()
    };
    for video in job.get_children() {
        let entry = board.get(video.get_id());
        line.videos += 1;
        line.waiting += entry.map_or(0, |e| e.waiting);
        let stage = entry.and_then(|e| e.stage).map_or("none", |stage| stage.as_str());
        *line.stages.entry(stage.to_owned()).or_default() += 1;
    }
    line
}

/// Counts the actors under `cell` by kind (their name after the last `/`, before any `:`), and
/// keeps each job actor's cell, by its name.
fn count(cell: &ActorCell, actors: &mut BTreeMap<String, usize>, jobs: &mut HashMap<String, ActorCell>) {
    let name = cell.get_name().unwrap_or_default();
    let kind = name.rsplit('/').next().unwrap_or(&name).split(':').next().unwrap_or_default();
    *actors.entry(if kind.is_empty() { "unnamed".to_owned() } else { kind.to_owned() }).or_default() += 1;
    if kind == "job" {
        jobs.insert(name.clone(), cell.clone());
    }
    for child in cell.get_children() {
        count(&child, actors, jobs);
    }
}

/// The 1-minute load average, where `/proc/loadavg` says it.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
