//! NodeAgent: this node's one remotable actor. Every node runs one in the process group
//! [`GROUP`]; the others reach it through ractor_cluster with one call, [`NodeAgentMsg::Ask`],
//! whose request and reply are versioned JSON ([`AgentRequest`], [`AgentReply`]): ractor_cluster
//! drops a message it cannot decode without a word, so the payloads carry a schema version and
//! are decoded here, where a mismatch is answered with an error. Replies stay small (a snapshot
//! counts actors by kind and lists at most [`MAX_JOBS`] jobs), far under the 16 MiB frame limit.
//! JobActors and VideoActors stay local.

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use super::Deps;
use super::root::RootMsg;
use super::snapshot::{self, NodeFacts};
pub use super::snapshot::{MAX_JOBS, NodeActor, NodeJob, NodePool, NodeSnapshot};
use crate::domain::{JobId, Stage};

/// The process group every node's agent joins.
pub const GROUP: &str = "tubesum.node_agents";
/// The version of the JSON payloads; a node answers only its own.
pub const SCHEMA: u32 = 1;

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
                let facts = NodeFacts { node: &state.args.node, stages: &state.args.stages, started: state.started };
                AgentAnswer::Snapshot(Box::new(snapshot::take(&self.deps, root, facts).await))
            }
        }
    }
}

/// JSON of a payload (serialising these types cannot fail).
pub fn encode<T: Serialize>(payload: &T) -> String {
    serde_json::to_string(payload).unwrap_or_else(|e| format!(r#"{{"v":{SCHEMA},"result":"error","message":"{e}"}}"#))
}
