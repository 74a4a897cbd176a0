//! NodeAgent: this node's one remotable actor. Every node runs one in the process group
//! [`GROUP`]; the others reach it through ractor_cluster with one call, [`NodeAgentMsg::Ask`],
//! whose request and reply are versioned JSON ([`AgentRequest`], [`AgentReply`]): ractor_cluster
//! drops a message it cannot decode without a word, so the payloads carry a schema version and
//! are decoded here, where a mismatch is answered with an error. Replies stay small (a snapshot
//! counts actors by kind and lists at most [`MAX_JOBS`] jobs), far under the 16 MiB frame limit.
//! JobActors and VideoActors stay local.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use super::root::RootMsg;
use super::{Deps, PoolStats, job_actor_name};
use crate::domain::{JobId, Stage};

/// The process group every node's agent joins.
pub const GROUP: &str = "tubesum.node_agents";
/// The version of the JSON payloads; a node answers only its own.
pub const SCHEMA: u32 = 1;
/// The most jobs a snapshot lists.
pub const MAX_JOBS: usize = 200;

#[derive(Debug, ractor_cluster::RactorClusterMessage)]
pub enum NodeAgentMsg {
    /// A JSON [`AgentRequest`], answered with a JSON [`AgentReply`].
    #[rpc]
    Ask(String, RpcReplyPort<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AgentOp {
    /// The node's facts and its part of the actor tree, summarised.
    Snapshot,
    /// Stop the job's actors and stage work here (its cancel is already recorded).
    CancelJob { job_id: JobId },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentRequest {
    pub v: u32,
    #[serde(flatten)]
    pub op: AgentOp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AgentAnswer {
    Snapshot(Box<NodeSnapshot>),
    /// Whether the job's actors ran here, and how many of its stage runs were stopped.
    Cancelled {
        running: bool,
        stopped: usize,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentReply {
    pub v: u32,
    #[serde(flatten)]
    pub answer: AgentAnswer,
}

/// One node's part of the cluster, as its agent reports it.
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
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl From<PoolStats> for NodePool {
    fn from(p: PoolStats) -> Self {
        NodePool { stage: p.stage, workers: p.workers, running: p.running, succeeded: p.succeeded, failed: p.failed }
    }
}

pub struct NodeAgent {
    pub deps: Deps,
}

pub struct NodeAgentArgs {
    pub node: String,
    pub stages: Vec<Stage>,
    pub root: ActorRef<RootMsg>,
}

pub struct NodeAgentState {
    args: NodeAgentArgs,
    started: Instant,
}

impl Actor for NodeAgent {
    type Msg = NodeAgentMsg;
    type State = NodeAgentState;
    type Arguments = NodeAgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeAgentMsg>,
        args: NodeAgentArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(GROUP.to_owned(), vec![myself.get_cell()]);
        Ok(NodeAgentState { args, started: Instant::now() })
    }

    async fn handle(
        &self,
        _myself: ActorRef<NodeAgentMsg>,
        msg: NodeAgentMsg,
        state: &mut NodeAgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeAgentMsg::Ask(request, reply) => {
                let answer = match serde_json::from_str::<AgentRequest>(&request) {
                    Ok(request) if request.v == SCHEMA => self.answer(state, request.op).await,
                    Ok(request) => AgentAnswer::Error {
                        message: format!("schema version {} asked, this node speaks {SCHEMA}", request.v),
                    },
                    Err(e) => AgentAnswer::Error { message: format!("undecodable request: {e}") },
                };
                let _ = reply.send(encode(&AgentReply { v: SCHEMA, answer }));
            }
        }
        Ok(())
    }
}

impl NodeAgent {
    async fn answer(&self, state: &NodeAgentState, op: AgentOp) -> AgentAnswer {
        let root = &state.args.root;
        match op {
            AgentOp::CancelJob { job_id } => {
                let running = ractor::call_t!(root, RootMsg::CancelJob, 5_000, job_id).unwrap_or(false);
                let stopped = self.deps.running.cancel(job_id);
                tracing::info!(%job_id, running, stopped, "job cancelled at another node's request");
                AgentAnswer::Cancelled { running, stopped }
            }
            AgentOp::Snapshot => {
                let pools = ractor::call_t!(root, RootMsg::PoolStats, 2_000).unwrap_or_default();
                let mut running = ractor::call_t!(root, RootMsg::RunningJobs, 2_000).unwrap_or_default();
                let jobs_total = running.len();
                running.sort();
                running.truncate(MAX_JOBS);
                let mut actors = Default::default();
                let mut tallies = HashMap::new();
                count(&root.get_cell(), &mut actors, &mut tallies);
                let jobs = running
                    .into_iter()
                    .map(|job_id| {
                        let cell = tallies.remove(&job_actor_name(job_id));
                        cell.map(|cell| self.tally(job_id, &cell)).unwrap_or(NodeJob { job_id, ..NodeJob::default() })
                    })
                    .collect();
                let top = root.get_cell();
                let mut supervision = vec![NodeActor::of(&top)];
                supervision.extend(top.get_children().iter().map(NodeActor::of));
                supervision[1..].sort_by(|a, b| a.name.cmp(&b.name));
                let restarts = self.deps.restarts.read().into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
                AgentAnswer::Snapshot(Box::new(NodeSnapshot {
                    node: state.args.node.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    stages: state.args.stages.clone(),
                    uptime_ms: state.started.elapsed().as_millis() as u64,
                    actors,
                    supervision,
                    restarts,
                    pools: pools.into_iter().map(NodePool::from).collect(),
                    load: load_average(),
                    cpus: std::thread::available_parallelism().map_or(1, usize::from),
                    jobs,
                    jobs_total,
                }))
            }
        }
    }
}

impl NodeAgent {
    /// A job's line: its actor's and its VideoActors' entries on the board.
    fn tally(&self, job_id: JobId, job: &ActorCell) -> NodeJob {
        let board = &self.deps.board;
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

/// JSON of a payload (serialising these types cannot fail).
pub fn encode<T: Serialize>(payload: &T) -> String {
    serde_json::to_string(payload).unwrap_or_else(|e| format!(r#"{{"v":{SCHEMA},"result":"error","message":"{e}"}}"#))
}
