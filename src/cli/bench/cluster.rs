//! `tubesum bench cluster`: how soon a job is taken over after its node dies. N `tubesum serve`
//! processes (this binary, `--stages none`, each with its own data dir) share the configured
//! PostgreSQL; one holds a job; it is killed with SIGKILL and the time until another node holds
//! the job's lease is measured, then the killed node restarts under its name (a new incarnation)
//! and the next round kills the new owner. Both ways are run side by side in one go: as a
//! ractor_cluster cluster (a dropped session makes the others look at the lease the moment it
//! runs out) and as plain processes that only meet in the database (they look at their next
//! renewal tick, every third of a lease).
//!
//! Only the job store is shared (`ports.store = production`); queues, events and artifacts are
//! in-process, since no stage runs. Nodes start at random points of the renewal period, as nodes
//! started apart do. The bench leaves one cancelled job behind in the database.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use super::percentile;
use crate::app::settings::Backends;
use crate::app::{Settings, Wiring};
use crate::domain::{ChannelId, JobId};
use crate::ports::JobStore;

const CHANNEL: &str = "UCbenchclusterbenchclust";
/// How long a node may take to start, to take a job, or to see the others.
const PATIENCE: Duration = Duration::from_secs(60);

/// What `bench cluster` measures.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub nodes: usize,
    pub kills: usize,
    pub lease: Duration,
}

/// One round: the time from the kill to another node's claim, and how much of that the dead
/// node's lease still had to run (the database forbids a takeover before).
#[derive(Debug, Clone, Copy)]
pub struct Takeover {
    pub total: Duration,
    pub lease_left: Duration,
}

impl Takeover {
    /// What the nodes added after the lease ran out: the time to notice.
    pub fn after_lease(&self) -> Duration {
        self.total.saturating_sub(self.lease_left)
    }
}

#[derive(Debug)]
pub struct Report {
    pub plan: Plan,
    pub clustered: Vec<Takeover>,
    pub plain: Vec<Takeover>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Plan { nodes, kills, lease } = self.plan;
        writeln!(
            f,
            "takeover after kill -9 of the job's node: {nodes} nodes, job_lease_secs = {}, {kills} kills each",
            lease.as_secs()
        )?;
        writeln!(f, "  {:<26} {:>9} {:>9} {:>9}   after the lease ran out: p50 / p95", "", "p50", "p95", "max")?;
        for (name, rounds) in [("cluster (ractor_cluster)", &self.clustered), ("database only", &self.plain)] {
            let mut total: Vec<Duration> = rounds.iter().map(|r| r.total).collect();
            let mut after: Vec<Duration> = rounds.iter().map(Takeover::after_lease).collect();
            total.sort();
            after.sort();
            writeln!(
                f,
                "  {name:<26} {:>7.2} s {:>7.2} s {:>7.2} s   {:>6.2} s / {:.2} s",
                percentile(&total, 0.50).as_secs_f64(),
                percentile(&total, 0.95).as_secs_f64(),
                total.last().copied().unwrap_or_default().as_secs_f64(),
                percentile(&after, 0.50).as_secs_f64(),
                percentile(&after, 0.95).as_secs_f64(),
            )?;
        }
        Ok(())
    }
}

/// Runs both ways, clustered first. `config` is passed on to the nodes.
pub async fn cluster(settings: Settings, config: Option<&std::path::Path>, plan: Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.nodes >= 2, "a takeover needs at least two nodes");
    anyhow::ensure!(plan.kills >= 1, "at least one kill");
    anyhow::ensure!(
        settings.port_backends().store == Backends::Production,
        "bench cluster needs the shared job store: set backends = \"production\" (or ports.store) and database.url"
    );
    let data = tempfile::tempdir().context("creating a temporary data dir")?;
    let mut own = settings;
    own.data_dir = data.path().to_owned();
    own.ports.artifacts = Some(Backends::Embedded);
    own.ports.commands = Some(Backends::Embedded);
    own.ports.events = Some(Backends::Embedded);
    let store = Wiring::from_settings(own).await?.deps.store;
    let clustered = Bench::new(store.clone(), config, plan, true).run().await.context("clustered")?;
    let plain = Bench::new(store, config, plan, false).run().await.context("database only")?;
    Ok(Report { plan, clustered, plain })
}

struct Bench<'a> {
    store: std::sync::Arc<dyn JobStore>,
    config: Option<&'a std::path::Path>,
    plan: Plan,
    clustered: bool,
    tag: String,
    nodes: Vec<Node>,
}

/// One `tubesum serve` child: its name, data dir and, while it runs, its process and URL.
struct Node {
    name: String,
    data: tempfile::TempDir,
    cluster_port: u16,
    running: Option<(tokio::process::Child, String)>,
}

impl<'a> Bench<'a> {
    fn new(
        store: std::sync::Arc<dyn JobStore>,
        config: Option<&'a std::path::Path>,
        plan: Plan,
        clustered: bool,
    ) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Bench { store, config, plan, clustered, tag, nodes: Vec::new() }
    }

    async fn run(mut self) -> anyhow::Result<Vec<Takeover>> {
        for i in 0..self.plan.nodes {
            let node = Node {
                name: format!("bench-{}-{i}", self.tag),
                data: tempfile::tempdir()?,
                cluster_port: free_port()?,
                running: None,
            };
            self.nodes.push(node);
            self.start(i).await?;
        }
        let result = self.rounds().await;
        for node in &mut self.nodes {
            if let Some((mut child, _)) = node.running.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        // Killed nodes leave their rows: only this run's are removed.
        let prefix = format!("bench-{}-", self.tag);
        if let Ok((rows, _)) = self.store.list_nodes().await {
            for row in rows.iter().filter(|row| row.name.starts_with(&prefix)) {
                let _ = self.store.forget_nodes(Some(&row.node), Duration::ZERO).await;
            }
        }
        result
    }

    async fn rounds(&mut self) -> anyhow::Result<Vec<Takeover>> {
        for i in 0..self.nodes.len() {
            self.wait_until_seen(i).await?;
        }
        let job = self.store.create_job(JobId::new(), &ChannelId::parse(CHANNEL)?, true, None).await?.job_id;
        let mut owner = self.owner_other_than(job, None).await?;
        let mut rounds = Vec::new();
        for round in 1..=self.plan.kills {
            let (index, held_as) = owner;
            let lease_left = self.lease(job).await?.1.unwrap_or_default();
            let (mut child, _) = self.nodes[index].running.take().expect("the owner runs");
            let killed = Instant::now();
            child.start_kill().context("killing the job's node")?;
            owner = self.owner_other_than(job, Some(&held_as)).await?;
            let total = killed.elapsed();
            let _ = child.wait().await;
            tracing::info!(round, ?total, ?lease_left, clustered = self.clustered, "taken over");
            rounds.push(Takeover { total, lease_left });
            self.start(index).await?;
            self.wait_until_seen(index).await?;
        }
        // The job ends here, so that no node started later picks it up.
        self.store.set_job_status(job, crate::domain::JobStatus::Cancelled, Some("bench cluster ended")).await?;
        Ok(rounds)
    }

    /// The job's lease: its owner and the time it still runs.
    async fn lease(&self, job: JobId) -> anyhow::Result<(Option<String>, Option<Duration>)> {
        let lease = self.store.job_leases(Some(job)).await?.into_iter().next();
        Ok(lease.map(|l| (l.owner, l.left)).unwrap_or_default())
    }

    /// Polls (every 10 ms) until a node other than `not` holds the job; its index and node id.
    async fn owner_other_than(&self, job: JobId, not: Option<&str>) -> anyhow::Result<(usize, String)> {
        let until = Instant::now() + PATIENCE + self.plan.lease;
        loop {
            if let (Some(owner), _) = self.lease(job).await?
                && Some(owner.as_str()) != not
            {
                let name = owner.split('#').next().unwrap_or_default();
                let index = self.nodes.iter().position(|n| n.name == name).context("a node outside the bench")?;
                return Ok((index, owner));
            }
            anyhow::ensure!(Instant::now() < until, "no node took the job within {PATIENCE:?} after its lease");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts node `i` and waits until it listens. Each start waits a random part of a renewal
    /// period first: nodes started together would renew and look for claimable jobs in step,
    /// each at the very moment another's lease ends, which real nodes are not.
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let period = self.plan.lease / 3;
        tokio::time::sleep(period.mul_f64(rand::random::<f64>())).await;
        let node = &self.nodes[i];
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut command = tokio::process::Command::new(exe);
        if let Some(config) = self.config {
            command.arg("--config").arg(config);
        }
        let cookie = format!("bench-{}", self.tag);
        let listen = if self.clustered { format!("127.0.0.1:{}", node.cluster_port) } else { String::new() };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--stages", "none"])
            .env("TUBESUM_DATA_DIR", node.data.path())
            .env("TUBESUM_CLUSTER__NODE_NAME", &node.name)
            .env("TUBESUM_CLUSTER__LISTEN", listen)
            .env("TUBESUM_CLUSTER__ADVERTISE", "")
            .env("TUBESUM_CLUSTER__COOKIE", cookie)
            .env("TUBESUM_STAGES__JOB_LEASE_SECS", self.plan.lease.as_secs().to_string())
            .env("TUBESUM_PORTS__STORE", "production")
            .env("TUBESUM_PORTS__ARTIFACTS", "embedded")
            .env("TUBESUM_PORTS__COMMANDS", "embedded")
            .env("TUBESUM_PORTS__EVENTS", "embedded")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting tubesum serve")?;
        let url = listening(&mut child).await.with_context(|| format!("node {}", node.name))?;
        self.nodes[i].running = Some((child, url));
        Ok(())
    }

    /// Waits until every running node lists node `i`'s current incarnation (reachable through the
    /// cluster, when clustered) and no earlier one.
    async fn wait_until_seen(&self, i: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let name = &self.nodes[i].name;
        let (_, url) = self.nodes[i].running.as_ref().expect("started");
        let until = Instant::now() + PATIENCE;
        let own: serde_json::Value = client.get(format!("{url}/cluster")).send().await?.json().await?;
        let mine = own["nodes"].as_array().and_then(|nodes| nodes.iter().find(|n| n["name"] == name.as_str()));
        let incarnation = mine.and_then(|n| n["node"].as_str()).context("a node missing from its own view")?.to_owned();
        for (_, other) in self.nodes.iter().filter_map(|n| n.running.as_ref()) {
            loop {
                let view: serde_json::Value = client.get(format!("{other}/cluster")).send().await?.json().await?;
                let rows = view["nodes"].as_array().cloned().unwrap_or_default();
                let seen = rows.iter().filter(|n| n["name"] == name.as_str()).collect::<Vec<_>>();
                let ready = seen.len() == 1
                    && seen[0]["node"] == incarnation.as_str()
                    && (!self.clustered || rows.iter().all(|n| n["reachable"] == true));
                if ready {
                    break;
                }
                anyhow::ensure!(Instant::now() < until, "{other} does not see {incarnation} within {PATIENCE:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// Reads the child's stderr until it says where it listens; then drains it in the background.
async fn listening(child: &mut tokio::process::Child) -> anyhow::Result<String> {
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr piped")?).lines();
    let url = tokio::time::timeout(PATIENCE, async {
        let mut said = Vec::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return Ok(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
            said.push(line);
        }
        anyhow::bail!("it exited before listening:\n{}", said.join("\n"))
    })
    .await
    .context("it did not listen in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
