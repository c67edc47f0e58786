//! The nemesis: a random schedule of faults (crashes, partitions, lossy or
//! slow network, leadership transfers), each undone after a while.

use super::network::NetworkConfig;
use super::Time;
use crate::rng::Rng;
use crate::types::NodeId;

/// One fault (or its repair). The dashboard's buttons map onto these.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Crash a node: it loses everything it did not persist.
    Crash(NodeId),
    /// Crash a node in the middle of its next durable write (a SIGKILL
    /// during the fsync): the messages its `Ready` may send before the
    /// write (a leader's appends and heartbeats) leave, the write is lost.
    CrashAtWrite(NodeId),
    /// Restart a crashed node from what it persisted.
    Restart(NodeId),
    /// Cut these directed links.
    Cut(Vec<(NodeId, NodeId)>),
    /// Cut every link between different groups.
    Partition(Vec<Vec<NodeId>>),
    /// Restore every link.
    Heal,
    /// Change loss and duplication.
    SetLoss {
        /// Probability of losing a message.
        drop_rate: f64,
        /// Probability of delivering it twice.
        duplicate_rate: f64,
    },
    /// Change the latency range.
    SetLatency(Time, Time),
    /// Ask the leader to hand leadership to this node.
    TransferLeader(NodeId),
    /// This node's election timer fires now: it campaigns (with PreVote,
    /// a pre-vote round first) exactly as if it had timed out. Voters under
    /// a leader lease (CheckQuorum) still ignore it.
    ElectionTimeout(NodeId),
    /// Take the message with this id off the wire.
    DropMessage(u64),
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultAction::Crash(n) => write!(f, "crash {n}"),
            FaultAction::CrashAtWrite(n) => write!(f, "crash {n} at its next write"),
            FaultAction::Restart(n) => write!(f, "restart {n}"),
            FaultAction::Cut(links) => {
                f.write_str("cut")?;
                for (a, b) in links {
                    write!(f, " {a}->{b}")?;
                }
                Ok(())
            }
            FaultAction::Partition(groups) => write!(f, "partition {groups:?}"),
            FaultAction::Heal => f.write_str("heal"),
            FaultAction::SetLoss {
                drop_rate,
                duplicate_rate,
            } => write!(f, "loss {drop_rate:.2} dup {duplicate_rate:.2}"),
            FaultAction::SetLatency(lo, hi) => write!(f, "latency {lo}..={hi}"),
            FaultAction::TransferLeader(n) => write!(f, "transfer leadership to {n}"),
            FaultAction::ElectionTimeout(n) => write!(f, "election timeout at {n}"),
            FaultAction::DropMessage(id) => write!(f, "drop message {id}"),
        }
    }
}

/// How often and which faults strike.
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisConfig {
    /// Whether faults are injected automatically.
    pub enabled: bool,
    /// Time between two faults, drawn from `lo..=hi`.
    pub interval: (Time, Time),
    /// How long a crashed node stays down.
    pub down_time: (Time, Time),
    /// How long a partition or a network degradation lasts.
    pub fault_time: (Time, Time),
    /// At most this many nodes down at once (`None`: a minority).
    pub max_down: Option<usize>,
    /// Relative weights of: crash, partition, asymmetric cuts, lossy
    /// network, slow network, leadership transfer, whole-cluster crash.
    pub weights: [u32; 7],
    /// Once this share of the clients' operations has been issued (and at
    /// least `min_faults` faults injected), stop injecting faults, repair
    /// everything and let the run finish (1.0 or more: never).
    pub calm_after: f64,
    /// Faults to inject before calming down.
    pub min_faults: usize,
    /// The share of single-node crashes that hit in the middle of the
    /// node's next durable write ([`FaultAction::CrashAtWrite`]); 0 draws
    /// nothing, so schedules are those of a nemesis without the fault.
    pub crash_at_write: f64,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        NemesisConfig {
            enabled: false,
            interval: (100, 400),
            down_time: (10, 300),
            fault_time: (30, 400),
            max_down: None,
            weights: [4, 3, 2, 1, 1, 1, 1],
            calm_after: 0.85,
            min_faults: 3,
            crash_at_write: 0.5,
        }
    }
}

impl NemesisConfig {
    /// The default schedule, switched on.
    pub fn active() -> Self {
        NemesisConfig {
            enabled: true,
            ..Self::default()
        }
    }
}

/// What the nemesis sees of the cluster.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeBrief {
    pub id: NodeId,
    pub up: bool,
    pub leader: bool,
}

/// The fault schedule's state.
#[derive(Clone, Debug)]
pub(crate) struct Nemesis {
    next_at: Time,
    /// Repairs due later, in time order of insertion.
    repairs: Vec<(Time, FaultAction)>,
    base_network: NetworkConfig,
    injected: usize,
}

impl Nemesis {
    pub fn new(cfg: &NemesisConfig, base_network: NetworkConfig, rng: &mut Rng) -> Self {
        Nemesis {
            next_at: rng.range(10, cfg.interval.0.max(10) + 1),
            repairs: Vec::new(),
            base_network,
            injected: 0,
        }
    }

    /// Faults injected so far (repairs not counted).
    pub fn injected(&self) -> usize {
        self.injected
    }

    /// When it acts next.
    pub fn next_at(&self, cfg: &NemesisConfig) -> Option<Time> {
        let repair = self.repairs.iter().map(|r| r.0).min();
        let fault = cfg.enabled.then_some(self.next_at);
        match (repair, fault) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The actions due at `now`.
    pub fn due(
        &mut self,
        cfg: &NemesisConfig,
        now: Time,
        nodes: &[NodeBrief],
        rng: &mut Rng,
    ) -> Vec<FaultAction> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.repairs.len() {
            if self.repairs[i].0 <= now {
                out.push(self.repairs.remove(i).1);
            } else {
                i += 1;
            }
        }
        if cfg.enabled && self.next_at <= now {
            self.next_at = now + rng.range(cfg.interval.0, cfg.interval.1 + 1).max(1);
            let planned = self.plan(cfg, now, nodes, rng);
            self.injected += usize::from(!planned.is_empty());
            out.extend(planned);
        }
        out
    }

    /// Forgets pending repairs (the cluster repairs everything itself).
    pub fn clear(&mut self) {
        self.repairs.clear();
    }

    fn later(&mut self, now: Time, span: (Time, Time), rng: &mut Rng, action: FaultAction) {
        let at = now + rng.range(span.0, span.1 + 1).max(1);
        self.repairs.push((at, action));
    }

    fn plan(
        &mut self,
        cfg: &NemesisConfig,
        now: Time,
        nodes: &[NodeBrief],
        rng: &mut Rng,
    ) -> Vec<FaultAction> {
        let n = nodes.len();
        let ids: Vec<NodeId> = nodes.iter().map(|b| b.id).collect();
        let up: Vec<NodeId> = nodes.iter().filter(|b| b.up).map(|b| b.id).collect();
        let leader = nodes.iter().find(|b| b.leader).map(|b| b.id);
        let max_down = cfg.max_down.unwrap_or((n - 1) / 2);
        let pick = |rng: &mut Rng, from: &[NodeId]| from[rng.range(0, from.len() as u64) as usize];
        let total: u32 = cfg.weights.iter().sum();
        let mut roll = rng.range(0, total.max(1) as u64) as u32;
        let mut kind = 0;
        while kind < cfg.weights.len() - 1 && roll >= cfg.weights[kind] {
            roll -= cfg.weights[kind];
            kind += 1;
        }
        match kind {
            0 => {
                if up.is_empty() || n - up.len() >= max_down.max(1) {
                    return Vec::new();
                }
                // Leaders are the most interesting victims.
                let victim = match leader {
                    Some(l) if rng.chance(0.5) => l,
                    _ => pick(rng, &up),
                };
                self.later(now, cfg.down_time, rng, FaultAction::Restart(victim));
                // Half the crashes hit in the middle of a write, after the
                // messages that may leave before it.
                if cfg.crash_at_write > 0.0 && rng.chance(cfg.crash_at_write) {
                    vec![FaultAction::CrashAtWrite(victim)]
                } else {
                    vec![FaultAction::Crash(victim)]
                }
            }
            1 => {
                // Split in two; the leader, when isolated, is in the minority.
                let mut shuffled = ids.clone();
                for i in (1..shuffled.len()).rev() {
                    let j = rng.range(0, i as u64 + 1) as usize;
                    shuffled.swap(i, j);
                }
                if let (Some(l), true) = (leader, rng.chance(0.5)) {
                    let pos = shuffled.iter().position(|&x| x == l).unwrap_or(0);
                    shuffled.swap(0, pos);
                }
                let cut = rng.range(1, n as u64) as usize;
                let (a, b) = shuffled.split_at(cut);
                self.later(now, cfg.fault_time, rng, FaultAction::Heal);
                vec![FaultAction::Partition(vec![a.to_vec(), b.to_vec()])]
            }
            2 => {
                let mut links = Vec::new();
                for &a in &ids {
                    for &b in &ids {
                        if a != b && rng.chance(0.3) {
                            links.push((a, b));
                        }
                    }
                }
                self.later(now, cfg.fault_time, rng, FaultAction::Heal);
                vec![FaultAction::Cut(links)]
            }
            3 => {
                let drop_rate = [0.05, 0.2, 0.4][rng.range(0, 3) as usize];
                let duplicate_rate = [0.0, 0.1, 0.3][rng.range(0, 3) as usize];
                let base = &self.base_network;
                let repair = FaultAction::SetLoss {
                    drop_rate: base.drop_rate,
                    duplicate_rate: base.duplicate_rate,
                };
                self.later(now, cfg.fault_time, rng, repair);
                vec![FaultAction::SetLoss {
                    drop_rate,
                    duplicate_rate,
                }]
            }
            4 => {
                let (lo, hi) = self.base_network.latency;
                let repair = FaultAction::SetLatency(lo, hi);
                self.later(now, cfg.fault_time, rng, repair);
                vec![FaultAction::SetLatency(lo, hi + rng.range(20, 150))]
            }
            5 => vec![FaultAction::TransferLeader(pick(rng, &ids))],
            _ => {
                // Everyone goes down; each comes back on its own time.
                let mut out = Vec::new();
                for &id in &up {
                    self.later(now, (10, 200), rng, FaultAction::Restart(id));
                    out.push(FaultAction::Crash(id));
                }
                out
            }
        }
    }
}
