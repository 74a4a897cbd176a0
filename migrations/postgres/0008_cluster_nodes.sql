-- Membership: each running process (node) registers here and beats every third of a job lease.
-- `name` is stable across restarts (cluster.node_name); `node` is this boot's id, `{name}#{incarnation}`,
-- the owner its job leases name. A restart replaces its row, so its old incarnation's leases can be
-- claimed at once.
CREATE TABLE cluster_nodes (
    name         TEXT PRIMARY KEY,
    node         TEXT NOT NULL UNIQUE,
    http_addr    TEXT,
    cluster_addr TEXT,
    version      TEXT NOT NULL,
    stages       TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
