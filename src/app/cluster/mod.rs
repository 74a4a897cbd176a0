//! This node in a ractor_cluster cluster (`cluster.listen` set): a `NodeServer`, connections to
//! the live peers the job store lists (ractor_cluster keeps no membership and never reconnects by
//! itself, so this does, with backoff), and the node's [`NodeAgent`]. PostgreSQL stays the only
//! authority on who owns a job; a peer's session dropping is only a trigger to look at the leases
//! now, and again when that peer's leases run out, instead of at the next renewal tick.

pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::settings::ClusterSettings;
use crate::actors::Deps;
use crate::actors::node_agent::{
    AgentAnswer, AgentOp, AgentReply, AgentRequest, GROUP, NodeAgent, NodeAgentArgs, NodeAgentMsg, SCHEMA, encode,
};
use crate::actors::root::RootMsg;
use crate::domain::NodeRecord;

/// The longest wait between two tries to reach a peer.
const MAX_RECONNECT: Duration = Duration::from_secs(30);

/// This node's membership of the cluster; stopped when dropped.
pub struct Cluster {
    node: String,
    server: ActorRef<NodeServerMessage>,
    agent: ActorRef<NodeAgentMsg>,
    _manager: AbortOnDropHandle<()>,
}

/// The address the other nodes dial: `cluster.advertise`, else `cluster.listen` (with this host's
/// name when it listens on every interface). None when clustering is off.
pub fn advertised(settings: &ClusterSettings) -> anyhow::Result<Option<String>> {
    if settings.listen.is_empty() {
        return Ok(None);
    }
    let listen: SocketAddr =
        settings.listen.parse().with_context(|| format!("cluster.listen {:?} is not an address", settings.listen))?;
    if !settings.advertise.is_empty() {
        return Ok(Some(settings.advertise.clone()));
    }
    if listen.ip().is_unspecified() {
        return Ok(Some(format!("{}:{}", super::hostname(), listen.port())));
    }
    Ok(Some(listen.to_string()))
}

enum Event {
    Ready(String),
    Gone { peer: Option<String>, addr: String, authenticated: bool },
}

struct Events {
    tx: mpsc::UnboundedSender<Event>,
    /// The sessions that authenticated (a cookie mismatch ends one before).
    authenticated: std::sync::Mutex<std::collections::HashSet<ractor::ActorId>>,
}

/// The peer's node id from its ractor_cluster name (`{node}@{host}`).
fn peer(ses: &NodeServerSessionInformation) -> Option<String> {
    let name = &ses.peer_name.as_ref()?.name;
    Some(name.rsplit_once('@').map_or(name.as_str(), |(node, _)| node).to_owned())
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.authenticated.lock().unwrap_or_else(|e| e.into_inner()).insert(ses.actor.get_id());
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(peer) = peer(&ses) {
            let _ = self.tx.send(Event::Ready(peer));
        }
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let authenticated = self.authenticated.lock().unwrap_or_else(|e| e.into_inner()).remove(&ses.actor.get_id());
        let _ = self.tx.send(Event::Gone { peer: peer(&ses), addr: ses.peer_addr.clone(), authenticated });
    }
}

impl Cluster {
    /// Joins the cluster when `cluster.listen` is set: listens, starts this node's agent, and
    /// keeps connections to the live peers the store lists.
    pub async fn start(
        settings: &ClusterSettings,
        record: &NodeRecord,
        deps: &Deps,
        root: ActorRef<RootMsg>,
    ) -> anyhow::Result<Option<Cluster>> {
        if settings.listen.is_empty() {
            return Ok(None);
        }
        let listen: SocketAddr = settings.listen.parse().context("cluster.listen")?;
        let cookie = settings.cookie.expose_secret().to_owned();
        let host = record.cluster_addr.clone().unwrap_or_default();
        let tls = tls::Tls::from_settings(settings)?;
        let incoming = tls.as_ref().map(|tls| IncomingEncryptionMode::Tls(tls.acceptor.clone()));
        let server = NodeServer::new(
            listen.port(),
            cookie,
            record.node.clone(),
            host,
            incoming,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| anyhow::anyhow!("starting the cluster node server: {e}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "tubesum".into(),
            subscription: Box::new(Events { tx, authenticated: Default::default() }),
        })?;
        let agent = NodeAgent { deps: deps.clone() };
        let args = NodeAgentArgs { node: record.node.clone(), stages: record.stages.clone(), root: root.clone() };
        let (agent, _) =
            Actor::spawn(None, agent, args).await.map_err(|e| anyhow::anyhow!("starting the node agent: {e}"))?;
        tracing::info!(listen = %listen, node = %record.node, tls = tls.is_some(), "cluster node listening");
        let manager = Manager {
            server: server.clone(),
            deps: deps.clone(),
            root,
            node: record.node.clone(),
            tls,
            tries: HashMap::new(),
        };
        let manager = AbortOnDropHandle::new(tokio::spawn(manager.run(events)));
        Ok(Some(Cluster { node: record.node.clone(), server, agent, _manager: manager }))
    }

    /// Asks node `node`'s agent (this node's own, when it is this node); None when it is not
    /// reachable within `timeout`.
    pub async fn ask(&self, node: &str, op: AgentOp, timeout: Duration) -> Option<AgentAnswer> {
        let agent = self.agent_of(node).await?;
        let request = encode(&AgentRequest { v: SCHEMA, op });
        let cell = agent.get_cell();
        let reply = match ractor::rpc::call(&cell, |reply| NodeAgentMsg::Ask(request, reply), Some(timeout)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply,
            _ => return None,
        };
        match serde_json::from_str::<AgentReply>(&reply) {
            Ok(reply) if reply.v == SCHEMA => Some(reply.answer),
            Ok(reply) => Some(AgentAnswer::Error { message: format!("node {node} answered in schema {}", reply.v) }),
            Err(e) => Some(AgentAnswer::Error { message: format!("node {node} answered undecodably: {e}") }),
        }
    }

    async fn agent_of(&self, node: &str) -> Option<ActorRef<NodeAgentMsg>> {
        if node == self.node {
            return Some(self.agent.clone());
        }
        let sessions = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2_000).ok()?;
        let node_id = sessions.iter().find(|(_, ses)| peer(ses).as_deref() == Some(node)).map(|(id, _)| *id)?;
        // A remote actor's id names the session it came through (the first session's id is 0,
        // like a local actor's node: only remote ids compare).
        ractor::pg::get_members(&GROUP.to_owned())
            .into_iter()
            .find(|cell| !cell.get_id().is_local() && cell.get_id().node() == node_id)
            .map(ActorRef::from)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent.stop(None);
        self.server.stop(None);
    }
}

/// Keeps this node connected to the live peers, and turns a lost peer into an early look at the
/// leases.
struct Manager {
    server: ActorRef<NodeServerMessage>,
    deps: Deps,
    root: ActorRef<RootMsg>,
    node: String,
    tls: Option<tls::Tls>,
    /// Per peer: failed tries in a row and when the next may start.
    tries: HashMap<String, (u32, Instant)>,
}

impl Manager {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        let lease = self.deps.settings.job_lease();
        let mut every = tokio::time::interval((lease / 6).clamp(Duration::from_millis(200), Duration::from_secs(5)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.connect_peers().await,
                Some(event) = events.recv() => self.on_event(event).await,
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready(peer) => {
                tracing::info!(%peer, "cluster peer connected");
                self.tries.remove(&peer);
            }
            Event::Gone { peer: Some(peer), addr, authenticated: true } => {
                tracing::warn!(%peer, %addr, "cluster peer disconnected; looking at its jobs' leases now");
                let _ = self.root.cast(RootMsg::CheckLeases);
                self.check_when_leases_end(&peer).await;
            }
            Event::Gone { addr, .. } => {
                tracing::warn!(%addr, "cluster connection refused or lost before it was authenticated (a wrong cluster.cookie?)");
            }
        }
    }

    /// Looks at the leases again right after the lost peer's last lease runs out.
    async fn check_when_leases_end(&self, peer: &str) {
        let Ok(leases) = self.deps.store.job_leases(None).await else { return };
        let last = leases.iter().filter(|l| l.owner.as_deref() == Some(peer)).filter_map(|l| l.left).max();
        if let Some(left) = last {
            self.root.send_after(left + Duration::from_millis(100), || RootMsg::CheckLeases);
        }
    }

    /// Dials every live peer the store lists that this node has no session with, each after its
    /// backoff.
    async fn connect_peers(&mut self) {
        let Ok((nodes, now)) = self.deps.store.list_nodes().await else { return };
        let alive = chrono::Duration::from_std(self.deps.settings.job_lease()).unwrap_or(chrono::Duration::MAX);
        let sessions = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2_000).unwrap_or_default();
        let connected: Vec<String> = sessions.values().filter_map(peer).collect();
        for node in nodes {
            let Some(addr) = node.cluster_addr.as_deref() else { continue };
            let live = now.signed_duration_since(node.heartbeat_at) <= alive;
            if node.node == self.node || !live || connected.contains(&node.node) {
                continue;
            }
            let (failures, next) = self.tries.get(&node.node).copied().unwrap_or((0, Instant::now()));
            if Instant::now() < next {
                continue;
            }
            // The node whose id sorts first dials; the other waits to be dialled (no crossed sessions).
            if self.node > node.node && failures == 0 {
                self.tries.insert(node.node.clone(), (1, Instant::now() + Duration::from_secs(2)));
                continue;
            }
            match self.dial(addr).await {
                Ok(()) => tracing::debug!(peer = %node.node, %addr, "dialled cluster peer"),
                Err(e) => {
                    tracing::warn!(peer = %node.node, %addr, error = %format!("{e:#}"), "could not reach cluster peer")
                }
            }
            let backoff = Duration::from_millis(500 * 2u64.pow(failures.min(6))).min(MAX_RECONNECT);
            self.tries.insert(node.node.clone(), (failures + 1, Instant::now() + backoff));
        }
    }

    /// Opens a session to `addr`, over TLS when the cluster port speaks it.
    async fn dial(&self, addr: &str) -> anyhow::Result<()> {
        match &self.tls {
            None => ractor_cluster::client_connect(&self.server, addr).await?,
            Some(tls) => {
                let name = tls::server_name(addr)?;
                ractor_cluster::client_connect_enc(&self.server, addr, tls.connector.clone(), name).await?
            }
        }
        Ok(())
    }
}
