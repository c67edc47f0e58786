//! The nemesis: a random schedule of faults (crashes, partitions, lossy or
//! slow network, leadership transfers), each undone after a while, and,
//! when [`ChurnConfig::weight`] is set, membership churn: learners added
//! and promoted, members removed, replaced and re-added under new ids.

use super::disk::DiskErrorKind;
use super::network::NetworkConfig;
use super::Time;
use crate::rng::Rng;
use crate::types::{ConfChange, NodeId};

/// One fault (or its repair). The dashboard's buttons map onto these.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Crash a node: it loses everything it did not persist.
    Crash(NodeId),
    /// Crash a node in the middle of its next durable write (a SIGKILL
    /// during the fsync): the messages its `Ready` may send before the
    /// write (a leader's appends and heartbeats) leave, the write is lost.
    /// Nothing of it reaches the disk (its record is torn and cut off at
    /// recovery; a snapshot's file is not yet in place).
    CrashAtWrite(NodeId),
    /// Crash a node in the middle of its next durable write, leaving a
    /// prefix of it on disk drawn among the outcomes the server's recovery
    /// can produce for that write ([`super::disk::WriteCut`]): nothing,
    /// the snapshot file it starts with (if any) without the record, or the
    /// whole record, written but never acknowledged.
    TornWrite(NodeId),
    /// Crash a node right after the next snapshot file it writes (one
    /// received from the leader, or its own) is durable, before the WAL
    /// record that marks it: recovery marks the file, keeps the entries
    /// after it only if the log holds its `(index, term)`, and starts from
    /// the last hard state recorded. Armed until it strikes or the node
    /// restarts.
    CrashAfterSnapshotFile(NodeId),
    /// The node's next durable write fails with an IO error: like the
    /// server, the node halts (its storage is poisoned), answering its
    /// waiting requests with unknown outcomes, and stays down until
    /// restarted; what reached the disk before the error stays
    /// ([`super::disk`] says which prefixes each kind can leave). A failed
    /// write of its own snapshot's file only fails that snapshot. ENOSPC
    /// lasts until the restart (space freed), EIO is one failed write.
    DiskError {
        /// The node.
        node: NodeId,
        /// The error.
        kind: DiskErrorKind,
    },
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
    /// Propose this membership change through the current leader. For an
    /// `AddLearner`, whose id must be the next unused one
    /// ([`super::Cluster::next_node_id`]), a new empty node
    /// ([`super::SimNode`] joining the cluster) takes that slot once the
    /// leader accepted the change. Refusals are recorded
    /// ([`super::Cluster::conf_log`]), never a panic.
    ConfChange(ConfChange),
    /// Re-add a removed member as a new one: the old node is stopped for
    /// good (its data is gone) and an empty node with the new, never used
    /// id `new` is added as a learner. Refused while `old` is a member of
    /// the leader's configuration.
    Rejoin {
        /// The removed member.
        old: NodeId,
        /// Its new id.
        new: NodeId,
        /// Whether the leader promotes it on its own once caught up.
        promote: bool,
    },
    /// Stop a removed node for good. Refused while it is a member.
    Retire(NodeId),
    /// Freeze a running node for `time` (SIGSTOP, a long GC pause, a VM
    /// migration): it neither ticks nor reads what reaches it, which queues
    /// and is handled in arrival order when it wakes; then its overdue
    /// timer fires once, as the server's ticker (missed ticks delayed, not
    /// replayed) does. Nothing is lost, unlike a crash.
    Pause {
        /// The frozen node.
        node: NodeId,
        /// For how long.
        time: Time,
    },
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultAction::Crash(n) => write!(f, "crash {n}"),
            FaultAction::CrashAtWrite(n) => write!(f, "crash {n} at its next write"),
            FaultAction::TornWrite(n) => write!(f, "crash {n} in its next write (torn)"),
            FaultAction::CrashAfterSnapshotFile(n) => {
                write!(
                    f,
                    "crash {n} after its next snapshot file, before its record"
                )
            }
            FaultAction::DiskError { node, kind } => {
                write!(f, "disk error {kind} at {node}'s next write")
            }
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
            FaultAction::ConfChange(change) => match change {
                ConfChange::AddLearner {
                    id,
                    address,
                    promote,
                } => {
                    let auto = if *promote { ", auto-promoted" } else { "" };
                    write!(f, "add learner {id} at {address}{auto}")
                }
                ConfChange::Promote { id } => write!(f, "promote learner {id}"),
                ConfChange::Remove { id } => write!(f, "remove member {id}"),
                ConfChange::Replace { remove, promote } => {
                    write!(f, "replace voter {remove} by learner {promote}")
                }
                ConfChange::SetAddress { id, address } => {
                    write!(f, "move member {id} to {address}")
                }
            },
            FaultAction::Rejoin { old, new, promote } => {
                let auto = if *promote { ", auto-promoted" } else { "" };
                write!(f, "re-add removed node {old} as {new}{auto}")
            }
            FaultAction::Retire(n) => write!(f, "stop removed node {n} for good"),
            FaultAction::Pause { node, time } => write!(f, "pause {node} for {time}"),
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
    /// The share of single-node crashes that hit the node's next durable
    /// write instead ([`FaultAction::CrashAtWrite`] and the other disk
    /// faults, in the proportions of `disk_faults`); 0 draws nothing, so
    /// schedules are those of a nemesis without the fault.
    pub crash_at_write: f64,
    /// The share of single-node crashes that are pauses instead
    /// ([`FaultAction::Pause`], as long as a crash would be down); 0 draws
    /// nothing, so schedules are those of a nemesis without pauses.
    pub pause: f64,
    /// Relative weights, among the faults that hit a durable write, of:
    /// [`FaultAction::CrashAtWrite`], [`FaultAction::TornWrite`],
    /// [`FaultAction::CrashAfterSnapshotFile`], [`FaultAction::DiskError`]
    /// with EIO, and with ENOSPC. `[1, 0, 0, 0, 0]` draws nothing more, so
    /// schedules are those of a nemesis with only crashes at a write.
    pub disk_faults: [u32; 5],
    /// Membership churn (off by default).
    pub churn: ChurnConfig,
}

/// Membership churn: how often and within which bounds the nemesis changes
/// the configuration through the leader.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnConfig {
    /// Relative weight of a membership change against the faults'
    /// [`NemesisConfig::weights`]; 0 (the default) draws nothing, so
    /// schedules are those of a nemesis without churn.
    pub weight: u32,
    /// The voter count is kept within `lo..=hi`: no removal at `lo`, no
    /// promotion at `hi` (counting learners due for automatic promotion).
    pub voters: (usize, usize),
    /// At most this many learners at once.
    pub max_learners: usize,
    /// The share of new learners the leader promotes on its own once
    /// caught up.
    pub auto_promote: f64,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            weight: 0,
            voters: (3, 7),
            max_learners: 2,
            auto_promote: 0.5,
        }
    }
}

impl ChurnConfig {
    /// Churn among 3 to 7 voters, about a third of the nemesis's actions
    /// next to the default fault weights.
    pub fn active() -> Self {
        ChurnConfig {
            weight: 6,
            ..Self::default()
        }
    }
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
            pause: 0.0,
            disk_faults: [4, 2, 2, 1, 1],
            churn: ChurnConfig::default(),
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
    /// A voter of the configuration in force (at most a minority of the
    /// voters is crashed at once).
    pub voter: bool,
}

/// What the nemesis sees of the leader's configuration, for churn.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChurnView {
    /// The voters (while joint: the incoming ones).
    pub voters: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// How many learners the leader will promote on its own.
    pub auto_promote: usize,
    /// Learners whose log is within a few entries of the leader's.
    pub caught_up: Vec<NodeId>,
    /// Nodes not retired that the configuration no longer has. Only filled
    /// in when the configuration is committed and not joint, so that a
    /// removal cannot be undone after the node is stopped for good.
    pub removed: Vec<NodeId>,
    /// The id a new node gets.
    pub next_id: NodeId,
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
        churn: Option<&ChurnView>,
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
            let planned = self.plan(cfg, now, nodes, churn, rng);
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
        churn: Option<&ChurnView>,
        rng: &mut Rng,
    ) -> Vec<FaultAction> {
        let n = nodes.len();
        let ids: Vec<NodeId> = nodes.iter().map(|b| b.id).collect();
        let up: Vec<NodeId> = nodes.iter().filter(|b| b.up).map(|b| b.id).collect();
        let leader = nodes.iter().find(|b| b.leader).map(|b| b.id);
        // Crashes are bounded by the voters down: learners and removed
        // nodes decide nothing. Without churn every node is a voter.
        let voters = nodes.iter().filter(|b| b.voter).count();
        let voters_down = nodes.iter().filter(|b| b.voter && !b.up).count();
        let max_down = cfg.max_down.unwrap_or(voters.saturating_sub(1) / 2);
        let pick = |rng: &mut Rng, from: &[NodeId]| from[rng.range(0, from.len() as u64) as usize];
        let faults: u32 = cfg.weights.iter().sum();
        let total = faults + cfg.churn.weight;
        let mut roll = rng.range(0, total.max(1) as u64) as u32;
        if cfg.churn.weight > 0 && roll >= faults {
            return match churn {
                Some(view) => plan_churn(&cfg.churn, view, rng),
                None => Vec::new(),
            };
        }
        let mut kind = 0;
        while kind < cfg.weights.len() - 1 && roll >= cfg.weights[kind] {
            roll -= cfg.weights[kind];
            kind += 1;
        }
        match kind {
            0 => {
                if up.is_empty() || voters_down >= max_down.max(1) {
                    return Vec::new();
                }
                // Leaders are the most interesting victims.
                let victim = match leader {
                    Some(l) if rng.chance(0.5) => l,
                    _ => pick(rng, &up),
                };
                if cfg.pause > 0.0 && rng.chance(cfg.pause) {
                    let time = rng.range(cfg.down_time.0, cfg.down_time.1 + 1).max(1);
                    return vec![FaultAction::Pause { node: victim, time }];
                }
                self.later(now, cfg.down_time, rng, FaultAction::Restart(victim));
                // Half the crashes hit in the middle of a write, after the
                // messages that may leave before it.
                if cfg.crash_at_write > 0.0 && rng.chance(cfg.crash_at_write) {
                    let fault = disk_fault(&cfg.disk_faults, victim, rng);
                    if fault == FaultAction::CrashAfterSnapshotFile(victim) && rng.chance(0.5) {
                        // Half of these wait for the node to come back from
                        // a plain crash: a node that was down while the
                        // leader compacted is sent a snapshot, so its next
                        // snapshot file is more often a received one than
                        // its own.
                        // Restarted and disarmed (or restarted again if
                        // it struck) a down time after it comes back.
                        if let Some(&(at, _)) = self.repairs.last() {
                            self.repairs.push((at, fault));
                            self.later(at, cfg.down_time, rng, FaultAction::Restart(victim));
                        }
                        return vec![FaultAction::Crash(victim)];
                    }
                    vec![fault]
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

/// One of the faults that hit `victim`'s next durable write, drawn by
/// `weights` ([`NemesisConfig::disk_faults`]). Draws nothing when only
/// the first has weight, so that such schedules stay as they were.
fn disk_fault(weights: &[u32; 5], victim: NodeId, rng: &mut Rng) -> FaultAction {
    let total: u32 = weights.iter().sum();
    if total == weights[0] {
        return FaultAction::CrashAtWrite(victim);
    }
    let mut roll = rng.range(0, u64::from(total)) as u32;
    let mut kind = 0;
    while kind < weights.len() - 1 && roll >= weights[kind] {
        roll -= weights[kind];
        kind += 1;
    }
    match kind {
        0 => FaultAction::CrashAtWrite(victim),
        1 => FaultAction::TornWrite(victim),
        2 => FaultAction::CrashAfterSnapshotFile(victim),
        3 => FaultAction::DiskError {
            node: victim,
            kind: DiskErrorKind::Eio,
        },
        _ => FaultAction::DiskError {
            node: victim,
            kind: DiskErrorKind::Enospc,
        },
    }
}

/// One membership change drawn among those that make sense for the
/// leader's configuration `view`, within the voter bounds. The core may
/// still refuse it (a change in flight, no quorum up...): that is recorded.
fn plan_churn(cfg: &ChurnConfig, view: &ChurnView, rng: &mut Rng) -> Vec<FaultAction> {
    let pick = |rng: &mut Rng, from: &[NodeId]| from[rng.range(0, from.len() as u64) as usize];
    let (min, max) = cfg.voters;
    let voters = view.voters.len();
    // Voters to be: learners the leader promotes on its own count already.
    let room = voters + view.auto_promote < max;
    let learner_room = view.learners.len() < cfg.max_learners;
    // (weight, allowed) per kind, in the order matched below.
    let kinds = [
        (3, learner_room),                             // add a learner
        (2, room && !view.learners.is_empty()),        // promote one
        (2, voters > min),                             // remove a voter
        (1, !view.learners.is_empty()),                // remove a learner
        (2, !view.caught_up.is_empty()),               // replace a voter
        (2, learner_room && !view.removed.is_empty()), // re-add a removed node
        (2, !view.removed.is_empty()),                 // stop a removed node
    ];
    let total: u64 = kinds.iter().filter(|k| k.1).map(|k| k.0).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut roll = rng.range(0, total);
    let mut kind = 0;
    for (i, &(w, allowed)) in kinds.iter().enumerate() {
        if !allowed {
            continue;
        }
        if roll < w {
            kind = i;
            break;
        }
        roll -= w;
    }
    let promote = |rng: &mut Rng| room && rng.chance(cfg.auto_promote);
    let action = match kind {
        0 => {
            let id = view.next_id;
            FaultAction::ConfChange(ConfChange::AddLearner {
                id,
                address: format!("n{id}"),
                promote: promote(rng),
            })
        }
        1 => FaultAction::ConfChange(ConfChange::Promote {
            id: pick(rng, &view.learners),
        }),
        // The leader itself is a candidate: a removed leader steps down.
        2 => FaultAction::ConfChange(ConfChange::Remove {
            id: pick(rng, &view.voters),
        }),
        3 => FaultAction::ConfChange(ConfChange::Remove {
            id: pick(rng, &view.learners),
        }),
        4 => FaultAction::ConfChange(ConfChange::Replace {
            remove: pick(rng, &view.voters),
            promote: pick(rng, &view.caught_up),
        }),
        5 => FaultAction::Rejoin {
            old: pick(rng, &view.removed),
            new: view.next_id,
            promote: promote(rng),
        },
        _ => FaultAction::Retire(pick(rng, &view.removed)),
    };
    vec![action]
}
