//! What a simulated run looks like: cluster size, node configuration,
//! network, clients and faults.

use super::nemesis::{ChurnConfig, NemesisConfig};
use super::network::NetworkConfig;
use super::Time;
use crate::config::Config;
use crate::rng::Rng;

/// The clients' workload.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// Number of clients, each with its own session (a client has one
    /// operation at a time, a pipelining one `pipeline_depth`).
    pub count: usize,
    /// How many of them (the last ones) write without a session: client
    /// id 0, applied each time committed, never resent once possibly in
    /// the log (an unanswered write's outcome is unknown).
    pub without_session: usize,
    /// How many of them (the first ones) pipeline: `pipeline_depth` lanes
    /// share the session, each with one operation at a time, so several
    /// numbered writes of the session are outstanding at once.
    pub pipelined: usize,
    /// Operations a pipelining client has outstanding at once (at least 1).
    pub pipeline_depth: usize,
    /// Number of distinct keys (`k0`, `k1`, ...); few keys, many conflicts.
    pub keys: usize,
    /// Operations to issue in total (across all clients); `None`: forever.
    pub total_ops: Option<usize>,
    /// Pause between a client's operations, drawn from `lo..=hi`.
    pub think: (Time, Time),
    /// An attempt unanswered for this long is retried at another node.
    pub attempt_timeout: Time,
    /// An operation unanswered for this long is abandoned: a write's outcome
    /// is then unknown, a read is dropped.
    pub op_timeout: Time,
    /// Pause before retrying after a refusal (no leader known, node down).
    pub backoff: Time,
    /// Relative weights of get, put, delete and compare-and-set.
    pub mix: [u32; 4],
    /// Percent of the writes drawn as a conditional or prefix write
    /// instead: a put or delete conditional on the key's modification index
    /// (learned from an earlier answer, sometimes an older one), a
    /// create-only put, a put conditional on the key existing, or a prefix
    /// delete. 0 draws nothing more from the random stream, so runs without
    /// them are as before they existed.
    pub conditional: u32,
}

impl ClientConfig {
    /// The clients' lanes: one per client, `pipeline_depth` per pipelining
    /// client.
    pub fn lanes(&self) -> usize {
        let pipelined = self.pipelined.min(self.count);
        self.count - pipelined + pipelined * self.pipeline_depth.max(1)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            count: 4,
            without_session: 0,
            pipelined: 0,
            pipeline_depth: 3,
            keys: 3,
            total_ops: Some(200),
            think: (0, 20),
            attempt_timeout: 150,
            op_timeout: 800,
            backoff: 20,
            mix: [35, 45, 10, 10],
            conditional: 0,
        }
    }
}

/// A whole simulated run. The same value gives the same run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Number of founding members, ids `1..=nodes` (nodes added by
    /// membership changes get the next ids, never reused).
    pub nodes: usize,
    /// The template of every node's Raft configuration (`id` and `seed` are
    /// set per node). Changes take effect on nodes (re)started afterwards.
    pub raft: Config,
    /// Virtual time between two ticks of a node.
    pub tick_interval: Time,
    /// Each node's clock runs up to this many percent fast or slow (its
    /// ticks come every `tick_interval * (100 ± d) / 100`, `d` fixed per
    /// node and drawn from the seed); 0: every clock keeps time.
    pub clock_drift_percent: u64,
    /// Latency, loss and duplication.
    pub network: NetworkConfig,
    /// Each node snapshots and compacts its log every this many applied
    /// entries (0: never).
    pub snapshot_every: u64,
    /// Entries applied past a written snapshot before the log it covers is
    /// dropped (the catch-up margin, `SnapshotPolicy::catchup_entries`).
    pub snapshot_catchup_entries: u64,
    /// Each node checkpoints its log in memory this many applied entries
    /// after its newest checkpoint or snapshot (`SnapshotPolicy::
    /// checkpoint_every`; 0: never), so the core compacts past the newest
    /// snapshot on disk.
    pub checkpoint_every: u64,
    /// The size rule (`SnapshotPolicy::log_percent`): a snapshot waits
    /// for this many percent of the newest one's size in log (0: none).
    pub snapshot_log_percent: u64,
    /// The clients' workload.
    pub clients: ClientConfig,
    /// The random fault schedule.
    pub nemesis: NemesisConfig,
    /// [`super::Cluster::run_to_end`] stops here even if clients are not done.
    pub max_time: Time,
    /// Whether the checker enforces the membership rules
    /// ([`super::Violation::Membership`]); on by default.
    pub check_membership_rules: bool,
    /// Whether the checker enforces the direct rules: a write applied at
    /// most once, one vote per node and term, commits durable on a quorum,
    /// fresh read indices ([`super::Violation::AppliedTwice`],
    /// [`super::Violation::DoubleVote`],
    /// [`super::Violation::CommitNotDurable`],
    /// [`super::Violation::StaleRead`]); on by default.
    pub check_direct_rules: bool,
}

impl SimConfig {
    /// A calm default run of `nodes` nodes: no automatic faults, a
    /// reliable network with latency of 1 to 10 units.
    pub fn new(seed: u64, nodes: usize) -> Self {
        let mut raft = Config::new(1);
        raft.heartbeat_tick = 2;
        SimConfig {
            seed,
            nodes,
            raft,
            tick_interval: 10,
            clock_drift_percent: 0,
            network: NetworkConfig::default(),
            snapshot_every: 20,
            snapshot_catchup_entries: 10,
            checkpoint_every: 0,
            snapshot_log_percent: 0,
            clients: ClientConfig::default(),
            nemesis: NemesisConfig::default(),
            max_time: 400_000,
            check_membership_rules: true,
            check_direct_rules: true,
        }
    }

    /// A run whose every knob is drawn from `seed`: cluster size, timing,
    /// batching, PreVote/CheckQuorum, network quality, snapshot frequency,
    /// workload, and an active nemesis.
    pub fn randomized(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_C0F1_6000_0000);
        let nodes = match rng.range(0, 100) {
            0..=44 => 3,
            45..=49 => 4,
            50..=84 => 5,
            85..=96 => 7,
            _ => 9,
        };
        let mut cfg = SimConfig::new(seed, nodes);
        cfg.raft.heartbeat_tick = rng.range(1, 4);
        cfg.raft.pre_vote = rng.chance(0.8);
        cfg.raft.check_quorum = rng.chance(0.8);
        cfg.raft.max_inflight = [1, 4, 64][rng.range(0, 3) as usize];
        cfg.raft.max_batch_bytes = [1, 200, 1 << 20][rng.range(0, 3) as usize];
        cfg.raft.max_apply_bytes = [1, 1 << 20][rng.range(0, 2) as usize];
        let lo = rng.range(1, 4);
        cfg.network.latency = (lo, lo + rng.range(2, 30));
        cfg.network.drop_rate = [0.0, 0.01, 0.05][rng.range(0, 3) as usize];
        cfg.network.duplicate_rate = [0.0, 0.01, 0.05][rng.range(0, 3) as usize];
        cfg.snapshot_every = rng.range(4, 40);
        cfg.clients.count = rng.range(3, 7) as usize;
        cfg.clients.keys = rng.range(2, 6) as usize;
        cfg.clients.total_ops = Some(rng.range(200, 260) as usize);
        cfg.clients.think = (0, rng.range(5, 40));
        cfg.nemesis = NemesisConfig::active();
        cfg.nemesis.interval = (rng.range(40, 120), rng.range(150, 350));
        // Drawn last, so that every knob above is drawn as before they
        // existed.
        cfg.clock_drift_percent = [0, 10, 30][rng.range(0, 3) as usize];
        cfg.nemesis.pause = [0.0, 0.2][rng.range(0, 2) as usize];
        cfg.network.redeliver_after_restart = [0.0, 0.5][rng.range(0, 2) as usize];
        // Sessions, drawn after those for the same reason: some clients
        // without ids, some pipelining, and in some runs a session table
        // smaller than the clients, so sessions are forgotten, writes
        // refused and clients registered again.
        cfg.clients.without_session = rng.range(0, 2) as usize;
        cfg.clients.pipelined = rng.range(0, 3) as usize;
        cfg.clients.pipeline_depth = rng.range(2, 5) as usize;
        // Each lane issues about as many operations as a client, so
        // pipelining adds load without shortening the run (and its faults).
        // The keys grow with the lanes too, so each key sees about as many
        // operations, as concurrent, as without pipelining (the
        // linearizability search is exponential in a key's concurrency).
        let lanes = cfg.clients.lanes();
        if let Some(total) = cfg.clients.total_ops.as_mut() {
            *total = *total * lanes / cfg.clients.count;
        }
        cfg.clients.keys = cfg.clients.keys * lanes / cfg.clients.count;
        // One session short: each registration forgets the least recently
        // used, whose next write is refused and who registers again, and
        // so on around the clients (a smaller table refuses most writes,
        // and their unknown outcomes swamp the linearizability search).
        if rng.chance(0.3) {
            cfg.raft.session_limit = cfg.clients.count.saturating_sub(1).max(1);
        }
        // Writes whose outcome stays unknown (without ids, or refused as
        // their session expired) are spread over more keys, for the same
        // reason.
        cfg.clients.keys += cfg.clients.without_session;
        if cfg.raft.session_limit < cfg.clients.count {
            cfg.clients.keys += 2;
        }
        // Conditional and prefix writes in two runs of three, drawn last;
        // not with a session table smaller than the clients, whose refused
        // writes (unknown outcomes, each of which may or may not have made
        // the key exist for a condition) swamp the linearizability search.
        cfg.clients.conditional = [0, 10, 20][rng.range(0, 3) as usize];
        if cfg.raft.session_limit < cfg.clients.count {
            cfg.clients.conditional = 0;
        }
        // The catch-up margin, drawn last for the same reason: in half the
        // runs none (every snapshot compacts at once, so lagging followers
        // get snapshots often and the received-snapshot paths are
        // exercised), else half a snapshot interval or two (a log that
        // always holds entries older than the newest snapshot).
        cfg.snapshot_catchup_entries =
            [0, 0, cfg.snapshot_every / 2, cfg.snapshot_every * 2][rng.range(0, 4) as usize];
        // In the runs with the long margin, the server's rule (no draw of
        // its own, so every other run is drawn as before): snapshots wait
        // for a log several times their size, and checkpoints compact the
        // log in memory in between, so the core's log starts past the
        // newest snapshot on disk and a follower that needs a snapshot
        // waits for a new one.
        if cfg.snapshot_catchup_entries > cfg.snapshot_every {
            cfg.checkpoint_every = (cfg.snapshot_every / 3).max(1);
            cfg.snapshot_log_percent = 1000;
        }
        cfg
    }

    /// [`SimConfig::randomized`] with membership churn among 3 to 7 voters
    /// ([`ChurnConfig::active`]): a cluster drawn with more founders starts
    /// with 7. Everything else is drawn exactly as for `randomized`.
    pub fn randomized_churn(seed: u64) -> Self {
        let mut cfg = Self::randomized(seed);
        cfg.nodes = cfg.nodes.min(7);
        cfg.nemesis.churn = ChurnConfig::active();
        cfg
    }

    /// The nodes' snapshot rule: every `snapshot_every` applied entries and
    /// `snapshot_log_percent`, checkpoints every `checkpoint_every`.
    pub fn snapshot_policy(&self) -> crate::replica::SnapshotPolicy {
        crate::replica::SnapshotPolicy {
            every: self.snapshot_every,
            log_percent: self.snapshot_log_percent,
            catchup_entries: self.snapshot_catchup_entries,
            checkpoint_every: self.checkpoint_every,
        }
    }

    /// The Raft configuration of node `id` after `restarts` restarts.
    pub fn node_config(&self, id: u64, restarts: u64) -> Config {
        let mut c = self.raft.clone();
        c.id = id;
        c.seed = self
            .seed
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .wrapping_add(id.wrapping_mul(0x9E37_79B9))
            .wrapping_add(restarts.wrapping_mul(0x1000_0001));
        c
    }
}
