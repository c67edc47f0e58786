//! The simulator view's model: settings carried in the URL, the user's
//! actions recorded against step numbers, and a run that can seek to any
//! step by deterministic replay (time travel; acting in the past forks).
//!
//! Pure Rust over `raft_core::sim`, tested on the host.

use std::collections::BTreeMap;

use raft_core::sim::{
    ClientOp, Cluster, DroppedMessage, Operation, Outcome, SimConfig, SimEvent, SimNode,
};
use raft_core::{Entry, NodeId, Op, Payload, Role};

use crate::model::{ClusterView, FollowerView, LogCell, LogView, NodeView, RoleView, Timeline};

/// What the URL carries: `#sim?seed=7&nodes=5&prevote=1&cq=1&at=3000&acts=...`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSettings {
    /// The run's seed.
    pub seed: u64,
    /// Cluster size, 3 to 9.
    pub nodes: usize,
    /// PreVote at the start.
    pub pre_vote: bool,
    /// CheckQuorum at the start.
    pub check_quorum: bool,
    /// Run to this step at once, then pause.
    pub at: Option<u64>,
    /// The recorded actions.
    pub actions: Vec<Recorded>,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            seed: 1,
            nodes: 5,
            pre_vote: true,
            check_quorum: true,
            at: None,
            actions: Vec::new(),
        }
    }
}

impl SimSettings {
    /// Parses the hash (`#sim?...`); unknown or bad values keep defaults.
    pub fn parse(hash: &str) -> SimSettings {
        let mut s = SimSettings::default();
        let query = hash.split_once('?').map_or("", |(_, q)| q);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "seed" => s.seed = v.parse().unwrap_or(s.seed),
                "nodes" => s.nodes = v.parse::<usize>().unwrap_or(s.nodes).clamp(3, 9),
                "prevote" => s.pre_vote = v != "0",
                "cq" => s.check_quorum = v != "0",
                "at" => s.at = v.parse().ok(),
                "acts" => {
                    s.actions = v
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .filter_map(Recorded::decode)
                        .collect()
                }
                _ => {}
            }
        }
        s
    }

    /// The hash that reproduces this run (`at` is the step to show).
    pub fn to_hash(&self, at: Option<u64>) -> String {
        let mut h = format!(
            "#sim?seed={}&nodes={}&prevote={}&cq={}",
            self.seed, self.nodes, self.pre_vote as u8, self.check_quorum as u8
        );
        if let Some(at) = at {
            h.push_str(&format!("&at={at}"));
        }
        if !self.actions.is_empty() {
            let acts: Vec<String> = self.actions.iter().map(Recorded::encode).collect();
            h.push_str("&acts=");
            h.push_str(&acts.join(","));
        }
        h
    }

    /// The simulator configuration of this run.
    pub fn sim_config(&self) -> SimConfig {
        let mut cfg = SimConfig::new(self.seed, self.nodes);
        cfg.raft.pre_vote = self.pre_vote;
        cfg.raft.check_quorum = self.check_quorum;
        // Slow enough to watch: messages take 10-30 units, a tick is 10.
        cfg.network.latency = (10, 30);
        cfg.raft.election_tick = 15;
        cfg.raft.heartbeat_tick = 4;
        cfg.snapshot_every = 40;
        cfg.clients.count = 3;
        cfg.clients.keys = 3;
        cfg.clients.total_ops = None;
        cfg.clients.think = (60, 300);
        cfg.clients.attempt_timeout = 400;
        cfg.clients.op_timeout = 1500;
        cfg.clients.backoff = 60;
        cfg.max_time = u64::MAX;
        cfg
    }
}

/// A user action on the simulated cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Crash a node.
    Crash(NodeId),
    /// Restart a node.
    Restart(NodeId),
    /// Ask the leader to hand over to a node.
    Transfer(NodeId),
    /// Cut the directed link `from -> to`.
    Cut(NodeId, NodeId),
    /// Restore the directed link `from -> to`.
    Uncut(NodeId, NodeId),
    /// Restore all links.
    Heal,
    /// Cut every link between these nodes and the rest, both ways (a
    /// partition drawn by dragging across the nodes).
    Split(Vec<NodeId>),
    /// Message loss, in percent.
    Drop(u32),
    /// Latency range.
    Latency(u64, u64),
    /// PreVote on/off (for nodes restarted afterwards).
    PreVote(bool),
    /// CheckQuorum on/off (for nodes restarted afterwards).
    CheckQuorum(bool),
    /// Fire a node's election timer now: it campaigns.
    Timeout(NodeId),
    /// Take the message with this id off the wire.
    DropMessage(u64),
    /// A client operation issued by hand through node `via`.
    Client {
        /// The node asked first.
        via: NodeId,
        /// What is asked.
        op: HandOp,
    },
}

/// A client operation typed into the simulator's form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandOp {
    /// Write `value` at `key`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read `key` (linearizable: ReadIndex at the node asked).
    Get {
        /// The key.
        key: String,
    },
}

impl HandOp {
    /// The simulator's client operation.
    pub fn client_op(&self) -> ClientOp {
        match self {
            HandOp::Put { key, value } => ClientOp::Write(Op::Put {
                key: key.clone(),
                value: value.clone(),
            }),
            HandOp::Get { key } => ClientOp::Get { key: key.clone() },
        }
    }
}

/// Escapes text for the URL's action list: ASCII letters, digits and
/// `-._` stay, every other byte becomes `%XX` (so `,`, `:`, `~`, `&` and
/// `#` never appear raw).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for a malformed escape or bytes that
/// are not UTF-8.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An action taken before step `step` ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// The number of steps taken when the action was applied.
    pub step: u64,
    /// The action.
    pub action: Action,
}

impl Recorded {
    /// `step:code`, e.g. `120:c3`, `400:x1-2`.
    pub fn encode(&self) -> String {
        let a = match &self.action {
            Action::Crash(n) => format!("c{n}"),
            Action::Restart(n) => format!("r{n}"),
            Action::Transfer(n) => format!("t{n}"),
            Action::Cut(a, b) => format!("x{a}-{b}"),
            Action::Uncut(a, b) => format!("u{a}-{b}"),
            Action::Heal => "h".into(),
            Action::Split(group) => {
                let ids: Vec<String> = group.iter().map(u64::to_string).collect();
                format!("s{}", ids.join("."))
            }
            Action::Drop(p) => format!("d{p}"),
            Action::Latency(lo, hi) => format!("l{lo}-{hi}"),
            Action::PreVote(on) => format!("p{}", *on as u8),
            Action::CheckQuorum(on) => format!("q{}", *on as u8),
            Action::Timeout(n) => format!("e{n}"),
            Action::DropMessage(id) => format!("m{id}"),
            Action::Client {
                via,
                op: HandOp::Put { key, value },
            } => format!("w{via}~{}~{}", escape(key), escape(value)),
            Action::Client {
                via,
                op: HandOp::Get { key },
            } => format!("g{via}~{}", escape(key)),
        };
        format!("{}:{a}", self.step)
    }

    /// The inverse of [`Recorded::encode`].
    pub fn decode(s: &str) -> Option<Recorded> {
        let (step, a) = s.split_once(':')?;
        let step = step.parse().ok()?;
        let (code, rest) = a.split_at(a.char_indices().nth(1).map_or(a.len(), |(i, _)| i));
        let pair = |r: &str| -> Option<(u64, u64)> {
            let (x, y) = r.split_once('-')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        };
        let action = match code {
            "c" => Action::Crash(rest.parse().ok()?),
            "r" => Action::Restart(rest.parse().ok()?),
            "t" => Action::Transfer(rest.parse().ok()?),
            "x" => pair(rest).map(|(a, b)| Action::Cut(a, b))?,
            "u" => pair(rest).map(|(a, b)| Action::Uncut(a, b))?,
            "h" => Action::Heal,
            "s" => Action::Split(
                rest.split('.')
                    .map(|n| n.parse().ok())
                    .collect::<Option<Vec<NodeId>>>()?,
            ),
            "d" => Action::Drop(rest.parse().ok()?),
            "l" => pair(rest).map(|(a, b)| Action::Latency(a, b))?,
            "p" => Action::PreVote(rest == "1"),
            "q" => Action::CheckQuorum(rest == "1"),
            "e" => Action::Timeout(rest.parse().ok()?),
            "m" => Action::DropMessage(rest.parse().ok()?),
            "w" => {
                let mut parts = rest.splitn(3, '~');
                let via = parts.next()?.parse().ok()?;
                let key = unescape(parts.next()?)?;
                let value = unescape(parts.next()?)?;
                Action::Client {
                    via,
                    op: HandOp::Put { key, value },
                }
            }
            "g" => {
                let (via, key) = rest.split_once('~')?;
                Action::Client {
                    via: via.parse().ok()?,
                    op: HandOp::Get {
                        key: unescape(key)?,
                    },
                }
            }
            _ => return None,
        };
        Some(Recorded { step, action })
    }

    /// A short label for the scrubber and the timeline.
    pub fn label(&self) -> String {
        match &self.action {
            Action::Crash(n) => format!("crash n{n}"),
            Action::Restart(n) => format!("restart n{n}"),
            Action::Transfer(n) => format!("transfer → n{n}"),
            Action::Cut(a, b) => format!("cut n{a}→n{b}"),
            Action::Uncut(a, b) => format!("restore n{a}→n{b}"),
            Action::Heal => "heal".into(),
            Action::Split(group) => {
                let ids: Vec<String> = group.iter().map(|n| format!("n{n}")).collect();
                format!("split {} from the rest", ids.join(","))
            }
            Action::Drop(p) => format!("loss {p}%"),
            Action::Latency(lo, hi) => format!("latency {lo}-{hi}"),
            Action::PreVote(on) => format!("PreVote {}", if *on { "on" } else { "off" }),
            Action::CheckQuorum(on) => format!("CheckQuorum {}", if *on { "on" } else { "off" }),
            Action::Timeout(n) => format!("timeout n{n}"),
            Action::DropMessage(id) => format!("drop message #{id}"),
            Action::Client {
                via,
                op: HandOp::Put { key, value },
            } => format!("put {key}={value} via n{via}"),
            Action::Client {
                via,
                op: HandOp::Get { key },
            } => format!("get {key} via n{via}"),
        }
    }
}

/// Carries out `action`; a hand-issued operation the cluster refuses
/// (the previous one still pending) returns why.
fn apply(cluster: &mut Cluster, action: &Action) -> Result<(), String> {
    match *action {
        Action::Crash(n) => cluster.crash(n),
        Action::Restart(n) => cluster.restart(n),
        Action::Transfer(n) => cluster.transfer_leader(n),
        Action::Cut(a, b) => cluster.cut(a, b),
        Action::Uncut(a, b) => {
            // The cluster only heals everything; restore the other cuts.
            let others: Vec<(NodeId, NodeId)> =
                cluster.network().cuts().filter(|&c| c != (a, b)).collect();
            cluster.heal();
            for (x, y) in others {
                cluster.cut(x, y);
            }
        }
        Action::Heal => cluster.heal(),
        Action::Split(ref group) => {
            let n = cluster.nodes().len() as NodeId;
            let rest = (1..=n).filter(|id| !group.contains(id)).collect();
            cluster.partition(vec![group.clone(), rest]);
        }
        Action::Drop(p) => cluster.set_drop_rate(f64::from(p.min(100)) / 100.0),
        Action::Latency(lo, hi) => cluster.set_latency(lo, hi),
        Action::PreVote(on) => cluster.set_pre_vote(on),
        Action::CheckQuorum(on) => cluster.set_check_quorum(on),
        Action::Timeout(n) => cluster.election_timeout(n),
        Action::DropMessage(id) => cluster.drop_message(id),
        Action::Client { via, ref op } => return cluster.submit(via, op.client_op()).map(|_| ()),
    }
    Ok(())
}

/// At most this many dropped messages wait to be drawn.
const DROPS_KEPT: usize = 64;

/// A simulated run with its recorded actions.
pub struct SimRun {
    /// Seed, size and the actions taken.
    pub settings: SimSettings,
    /// The cluster at the current step.
    pub cluster: Cluster,
    /// The furthest step reached (the scrubber's end).
    pub horizon: u64,
    /// Leaders and terms seen, by step.
    pub timeline: Timeline,
    /// `(step, term, leader)` whenever the leader changed, for term bands.
    pub bands: Vec<(u64, u64, Option<NodeId>)>,
    /// Steps at which a checker found a violation.
    pub violation_steps: Vec<u64>,
    /// Messages dropped since the view last took them (the newest
    /// [`DROPS_KEPT`]), to mark where they died.
    pub dropped: Vec<DroppedMessage>,
    /// The step up to which `timeline`, `bands` and `violation_steps` are
    /// recorded (they survive seeking back; a fork truncates them).
    recorded_to: u64,
}

impl SimRun {
    /// A fresh run of `settings` at step 0 (actions recorded at step 0 are
    /// applied).
    pub fn new(settings: SimSettings) -> SimRun {
        let mut cluster =
            Cluster::new(settings.sim_config()).expect("3 to 9 nodes is a valid cluster");
        cluster.record_events(true);
        let mut run = SimRun {
            settings,
            cluster,
            horizon: 0,
            timeline: Timeline::default(),
            bands: Vec::new(),
            violation_steps: Vec::new(),
            dropped: Vec::new(),
            recorded_to: 0,
        };
        run.apply_due();
        run
    }

    /// The current step.
    pub fn step_no(&self) -> u64 {
        self.cluster.steps()
    }

    fn apply_due(&mut self) {
        let now = self.cluster.steps();
        let due: Vec<Action> = self
            .settings
            .actions
            .iter()
            .filter(|r| r.step == now)
            .map(|r| r.action.clone())
            .collect();
        for a in &due {
            // A recorded action was accepted when it was taken, and the
            // replay is the same run, so it is accepted again.
            let _ = apply(&mut self.cluster, a);
            self.note_drops();
        }
    }

    /// Keeps the messages the last step or action dropped.
    fn note_drops(&mut self) {
        let events = self.cluster.last_events();
        self.dropped.extend(events.iter().filter_map(|e| match e {
            SimEvent::Dropped(d) => Some(d.clone()),
            _ => None,
        }));
        let excess = self.dropped.len().saturating_sub(DROPS_KEPT);
        self.dropped.drain(..excess);
    }

    /// Advances one step (and applies recorded actions due after it).
    pub fn step(&mut self) {
        let report = self.cluster.step();
        self.note_drops();
        let s = self.cluster.steps();
        self.horizon = self.horizon.max(s);
        if s > self.recorded_to {
            self.recorded_to = s;
            if report.new_violations > 0 {
                self.violation_steps.push(s);
            }
            self.observe();
        }
        self.apply_due();
    }

    fn observe(&mut self) {
        let s = self.cluster.steps();
        if let Some(l) = self.cluster.leader() {
            let term = self.cluster.node(l).and_then(SimNode::term).unwrap_or(0);
            if self.timeline.observe(s, term, Some(l)) {
                self.bands.push((s, term, Some(l)));
            }
        }
    }

    /// Moves to step `target`: forward by stepping, backward by replaying
    /// from the seed. The recorded future stays (the horizon is kept) until
    /// an action forks it.
    pub fn seek(&mut self, target: u64) {
        if target < self.cluster.steps() {
            let mut fresh = SimRun::new(self.settings.clone());
            fresh.horizon = self.horizon;
            fresh.recorded_to = self.recorded_to;
            fresh.timeline = std::mem::take(&mut self.timeline);
            fresh.bands = std::mem::take(&mut self.bands);
            fresh.violation_steps = std::mem::take(&mut self.violation_steps);
            *self = fresh;
        }
        while self.cluster.steps() < target {
            self.step();
        }
    }

    /// Takes `action` now. When now is in the past of the recorded run,
    /// the future is forked: later actions are forgotten. A hand-issued
    /// operation while the previous one is pending is refused (nothing is
    /// recorded or forked) with the reason.
    pub fn act(&mut self, action: Action) -> Result<(), String> {
        if let (Action::Client { .. }, Some(op)) = (&action, self.hand_op()) {
            if op.outcome == Outcome::Pending {
                return Err(format!("wait: {} is still pending", op.op));
            }
        }
        let now = self.cluster.steps();
        self.settings.actions.retain(|r| r.step <= now);
        self.horizon = now;
        self.recorded_to = now;
        self.timeline.events.retain(|e| e.at <= now);
        self.bands.retain(|b| b.0 <= now);
        self.violation_steps.retain(|&v| v <= now);
        let applied = apply(&mut self.cluster, &action);
        self.note_drops();
        if applied.is_ok() {
            self.settings.actions.push(Recorded { step: now, action });
        }
        applied
    }

    /// The hand client's latest operation.
    pub fn hand_op(&self) -> Option<&Operation> {
        let hand = self.cluster.hand_client_id()?;
        let ops = self.cluster.history().ops();
        ops.iter().rev().find(|o| o.client == hand)
    }

    /// The cluster as the shared view model.
    pub fn view(&self) -> ClusterView {
        let leader = self.cluster.leader();
        let mut nodes: Vec<NodeView> = self.cluster.nodes().iter().map(node_view).collect();
        // Vote tally of each candidate: the running nodes whose persisted
        // vote in the candidate's term names it (responses may still be
        // on the wire).
        let quorum = nodes.len() / 2 + 1;
        let votes: Vec<Option<(usize, usize)>> = nodes
            .iter()
            .map(|c| {
                (c.role == RoleView::Candidate).then(|| {
                    let granted = nodes
                        .iter()
                        .filter(|v| {
                            v.role != RoleView::Down && v.term == c.term && v.vote == Some(c.id)
                        })
                        .count();
                    (granted, quorum)
                })
            })
            .collect();
        for (n, v) in nodes.iter_mut().zip(votes) {
            n.votes = v;
        }
        ClusterView {
            nodes,
            leader,
            served_by: None,
        }
    }

    /// The recorded actions with their labels (fault marks on the scrubber).
    pub fn marks(&self) -> Vec<(u64, String)> {
        self.settings
            .actions
            .iter()
            .map(|r| (r.step, r.label()))
            .collect()
    }

    /// The history's operations grouped by client.
    pub fn lanes(&self) -> BTreeMap<u64, Vec<&Operation>> {
        let mut lanes: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
        for op in self.cluster.history().ops() {
            lanes.entry(op.client).or_default().push(op);
        }
        lanes
    }
}

/// A short text for a log entry.
pub fn entry_text(e: &Entry) -> String {
    match &e.payload {
        Payload::Noop => "noop".into(),
        Payload::Config(m) => format!("config {:?}", m.voters),
        Payload::Command(c) => match &c.op {
            raft_core::Op::Put { key, value } => format!("put {key}={value}"),
            raft_core::Op::Delete { key } => format!("delete {key}"),
            raft_core::Op::Cas { key, .. } => format!("cas {key}"),
        },
    }
}

fn cells(entries: &[Entry]) -> Vec<LogCell> {
    entries
        .iter()
        .map(|e| LogCell {
            index: e.index,
            term: Some(e.term),
            text: entry_text(e),
        })
        .collect()
}

/// One simulated node as the shared view model.
pub fn node_view(n: &SimNode) -> NodeView {
    let Some(s) = n.status() else {
        // Crashed: show what survives on its disk.
        let d = n.durable();
        return NodeView {
            id: n.id(),
            url: format!("crashed · restarted {}×", n.restarts()),
            role: RoleView::Down,
            term: Some(d.hard_state.term),
            leader: None,
            vote: (d.hard_state.vote != 0).then_some(d.hard_state.vote),
            last_index: d.last_index(),
            commit_index: d.hard_state.commit,
            applied_index: 0,
            snapshot_index: d.snapshot_index(),
            keys: None,
            followers: Vec::new(),
            error: Some("crashed: only its disk survives".into()),
            serving: false,
            election_timer: None,
            votes: None,
            log: LogView {
                cells: cells(&d.entries),
                elided_before: false,
            },
        };
    };
    NodeView {
        id: n.id(),
        url: format!("simulated node · restarted {}×", n.restarts()),
        role: s.role.into(),
        term: Some(s.term),
        leader: (s.leader != 0).then_some(s.leader),
        vote: (s.vote != 0).then_some(s.vote),
        last_index: s.last_index,
        commit_index: s.commit,
        applied_index: s.applied,
        snapshot_index: s.snapshot_index,
        keys: Some(n.kv().len() as u64),
        followers: s
            .followers
            .iter()
            .filter(|f| f.id != n.id())
            .map(|f| FollowerView {
                id: f.id,
                match_index: f.match_index,
                next_index: f.next_index,
                state: format!("{:?}", f.state).to_lowercase(),
                lag: s.last_index.saturating_sub(f.match_index),
                since_contact: format!("{} ticks", f.ticks_since_contact),
            })
            .collect(),
        error: None,
        serving: false,
        // The leader's timer only paces CheckQuorum; the arc shows when a
        // follower or candidate will campaign.
        election_timer: (s.role != Role::Leader)
            .then_some((s.election_elapsed, s.election_timeout)),
        votes: None,
        log: LogView {
            cells: cells(&n.log()),
            elided_before: false,
        },
    }
}

/// A one-line verdict over the operations.
pub fn outcome_class(op: &Operation) -> &'static str {
    match op.outcome {
        Outcome::Pending => "pending",
        Outcome::Ok(_) => "ok",
        Outcome::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip() {
        let mut s = SimSettings::parse("#sim?seed=42&nodes=7&prevote=0&cq=1&at=99");
        assert_eq!(
            (s.seed, s.nodes, s.pre_vote, s.check_quorum, s.at),
            (42, 7, false, true, Some(99))
        );
        s.actions = vec![
            Recorded {
                step: 3,
                action: Action::Crash(2),
            },
            Recorded {
                step: 9,
                action: Action::Cut(1, 3),
            },
            Recorded {
                step: 9,
                action: Action::Latency(5, 40),
            },
            Recorded {
                step: 12,
                action: Action::PreVote(false),
            },
        ];
        s.actions.extend([
            Recorded {
                step: 20,
                action: Action::Timeout(3),
            },
            Recorded {
                step: 20,
                action: Action::Split(vec![2, 5]),
            },
            Recorded {
                step: 21,
                action: Action::DropMessage(812),
            },
            Recorded {
                step: 22,
                action: Action::Client {
                    via: 2,
                    op: HandOp::Put {
                        key: "a,b:c~d".into(),
                        value: "x & y = 100% #ünï".into(),
                    },
                },
            },
            Recorded {
                step: 23,
                action: Action::Client {
                    via: 4,
                    op: HandOp::Get { key: "".into() },
                },
            },
        ]);
        let hash = s.to_hash(Some(99));
        // Separators stay unambiguous: only the two actions' own `~`s.
        let acts = hash.split_once("&acts=").unwrap().1;
        assert!(!acts.contains([' ', '#', '&', '='].as_slice()), "{acts}");
        assert_eq!(acts.matches('~').count(), 3, "{acts}");
        let back = SimSettings::parse(&hash);
        assert_eq!(back, s);
        assert_eq!(unescape("%zz"), None);
        assert_eq!(SimSettings::parse("#sim?nodes=40").nodes, 9);
    }

    #[test]
    fn replay_is_identical_and_seek_back_matches() {
        let settings = SimSettings::parse("#sim?seed=5&nodes=5");
        let mut a = SimRun::new(settings.clone());
        a.seek(400);
        a.act(Action::Crash(a.cluster.leader().unwrap_or(1)))
            .unwrap();
        a.seek(1500);
        let hash = a.cluster.trace_hash();
        let mut b = SimRun::new(a.settings.clone());
        b.seek(1500);
        assert_eq!(b.cluster.trace_hash(), hash);
        // Back in time and forward again: the same run.
        a.seek(200);
        assert_eq!(a.horizon, 1500);
        a.seek(1500);
        assert_eq!(a.cluster.trace_hash(), hash);
        assert!(a.cluster.violations().is_empty());
        assert!(a.cluster.leader().is_some());
        assert!(!a.timeline.events.is_empty());
    }

    #[test]
    fn hand_put_then_get_through_followers_replays() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=4&nodes=3"));
        a.seek(300);
        let leader = a.cluster.leader().expect("a leader");
        let follower = (1..=3).find(|&n| n != leader).unwrap();
        let put = HandOp::Put {
            key: "color".into(),
            value: "teal".into(),
        };
        a.act(Action::Client {
            via: follower,
            op: put.clone(),
        })
        .unwrap();
        let refused = a.act(Action::Client {
            via: follower,
            op: put,
        });
        assert!(refused.is_err(), "one hand operation at a time");
        while a.hand_op().is_some_and(|o| o.outcome == Outcome::Pending) {
            a.step();
        }
        let get = HandOp::Get {
            key: "color".into(),
        };
        a.act(Action::Client {
            via: follower,
            op: get,
        })
        .unwrap();
        while a.hand_op().is_some_and(|o| o.outcome == Outcome::Pending) {
            a.step();
        }
        let shown = a.hand_op().map(|o| o.outcome.clone());
        assert_eq!(
            shown,
            Some(Outcome::Ok(raft_core::sim::OpOutput::Value(Some(
                "teal".into()
            ))))
        );
        assert_eq!(a.settings.actions.len(), 2);
        let step = a.step_no();
        let mut b = SimRun::new(SimSettings::parse(&a.settings.to_hash(None)));
        b.seek(step);
        assert_eq!(b.cluster.trace_hash(), a.cluster.trace_hash());
    }

    #[test]
    fn timeout_and_dropped_messages_are_recorded() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=2&nodes=3&prevote=0&cq=0"));
        a.seek(300);
        let leader = a.cluster.leader().expect("a leader");
        let follower = (1..=3).find(|&n| n != leader).unwrap();
        a.act(Action::Timeout(follower)).unwrap();
        let id = a
            .cluster
            .in_flight()
            .next()
            .map(|m| m.id)
            .expect("votes in flight");
        a.dropped.clear();
        a.act(Action::DropMessage(id)).unwrap();
        assert_eq!(a.dropped.len(), 1, "{:?}", a.dropped);
        assert_eq!(a.dropped[0].id, Some(id));
        a.act(Action::Cut(leader, follower)).unwrap();
        a.seek(a.step_no() + 200);
        assert!(a.dropped.len() <= DROPS_KEPT);
        assert_eq!(a.settings.actions.len(), 3);
    }

    /// The browser test's scene: this run, paused at step 1500, a forced
    /// timeout on the first follower (PreVote and CheckQuorum off, so no
    /// lease protects the leader) elects that follower.
    #[test]
    fn forced_timeout_on_a_follower_elects_it() {
        let mut a = SimRun::new(SimSettings::parse(
            "#sim?seed=3&nodes=5&prevote=0&cq=0&at=1500",
        ));
        a.seek(1500);
        let leader = a.cluster.leader().expect("a leader");
        let follower = (1..=5).find(|&n| n != leader).unwrap();
        a.act(Action::Timeout(follower)).unwrap();
        a.seek(a.step_no() + 400);
        assert_eq!(a.cluster.leader(), Some(follower));
        assert!(a.cluster.violations().is_empty());
    }

    #[test]
    fn split_cuts_the_group_off_from_the_rest() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=9&nodes=5"));
        a.seek(100);
        a.act(Action::Split(vec![1, 2])).unwrap();
        let net = a.cluster.network();
        assert!(net.is_cut(1, 3) && net.is_cut(3, 1) && net.is_cut(2, 5));
        assert!(!net.is_cut(1, 2) && !net.is_cut(3, 4));
        assert_eq!(net.cuts().count(), 12);
    }

    #[test]
    fn acting_in_the_past_forks() {
        let mut a = SimRun::new(SimSettings::default());
        a.seek(300);
        a.act(Action::Crash(1)).unwrap();
        a.seek(600);
        a.seek(100);
        a.act(Action::Heal).unwrap();
        assert_eq!(a.settings.actions.len(), 1);
        assert_eq!(a.horizon, 100);
    }
}
