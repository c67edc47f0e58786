//! The simulator view's model: settings carried in the URL, the user's
//! actions recorded against step numbers, and a run that can seek to any
//! step by deterministic replay (time travel; acting in the past forks).
//!
//! Pure Rust over `raft_core::sim`, tested on the host.

use std::collections::BTreeMap;

use raft_core::sim::{Cluster, Operation, Outcome, SimConfig, SimNode};
use raft_core::{Entry, NodeId, Payload};

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
    /// Message loss, in percent.
    Drop(u32),
    /// Latency range.
    Latency(u64, u64),
    /// PreVote on/off (for nodes restarted afterwards).
    PreVote(bool),
    /// CheckQuorum on/off (for nodes restarted afterwards).
    CheckQuorum(bool),
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
            Action::Drop(p) => format!("d{p}"),
            Action::Latency(lo, hi) => format!("l{lo}-{hi}"),
            Action::PreVote(on) => format!("p{}", *on as u8),
            Action::CheckQuorum(on) => format!("q{}", *on as u8),
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
            "d" => Action::Drop(rest.parse().ok()?),
            "l" => pair(rest).map(|(a, b)| Action::Latency(a, b))?,
            "p" => Action::PreVote(rest == "1"),
            "q" => Action::CheckQuorum(rest == "1"),
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
            Action::Drop(p) => format!("loss {p}%"),
            Action::Latency(lo, hi) => format!("latency {lo}-{hi}"),
            Action::PreVote(on) => format!("PreVote {}", if *on { "on" } else { "off" }),
            Action::CheckQuorum(on) => format!("CheckQuorum {}", if *on { "on" } else { "off" }),
        }
    }
}

fn apply(cluster: &mut Cluster, action: &Action) {
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
        Action::Drop(p) => cluster.set_drop_rate(f64::from(p.min(100)) / 100.0),
        Action::Latency(lo, hi) => cluster.set_latency(lo, hi),
        Action::PreVote(on) => cluster.set_pre_vote(on),
        Action::CheckQuorum(on) => cluster.set_check_quorum(on),
    }
}

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
    /// The step up to which `timeline`, `bands` and `violation_steps` are
    /// recorded (they survive seeking back; a fork truncates them).
    recorded_to: u64,
}

impl SimRun {
    /// A fresh run of `settings` at step 0 (actions recorded at step 0 are
    /// applied).
    pub fn new(settings: SimSettings) -> SimRun {
        let cluster = Cluster::new(settings.sim_config()).expect("3 to 9 nodes is a valid cluster");
        let mut run = SimRun {
            settings,
            cluster,
            horizon: 0,
            timeline: Timeline::default(),
            bands: Vec::new(),
            violation_steps: Vec::new(),
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
            apply(&mut self.cluster, a);
        }
    }

    /// Advances one step (and applies recorded actions due after it).
    pub fn step(&mut self) {
        let report = self.cluster.step();
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
    /// the future is forked: later actions are forgotten.
    pub fn act(&mut self, action: Action) {
        let now = self.cluster.steps();
        self.settings.actions.retain(|r| r.step <= now);
        self.horizon = now;
        self.recorded_to = now;
        self.timeline.events.retain(|e| e.at <= now);
        self.bands.retain(|b| b.0 <= now);
        self.violation_steps.retain(|&v| v <= now);
        apply(&mut self.cluster, &action);
        self.settings.actions.push(Recorded { step: now, action });
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
        election_timer: None,
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
        let back = SimSettings::parse(&s.to_hash(Some(99)));
        assert_eq!(back, s);
        assert_eq!(SimSettings::parse("#sim?nodes=40").nodes, 9);
    }

    #[test]
    fn replay_is_identical_and_seek_back_matches() {
        let settings = SimSettings::parse("#sim?seed=5&nodes=5");
        let mut a = SimRun::new(settings.clone());
        a.seek(400);
        a.act(Action::Crash(a.cluster.leader().unwrap_or(1)));
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
    fn acting_in_the_past_forks() {
        let mut a = SimRun::new(SimSettings::default());
        a.seek(300);
        a.act(Action::Crash(1));
        a.seek(600);
        a.seek(100);
        a.act(Action::Heal);
        assert_eq!(a.settings.actions.len(), 1);
        assert_eq!(a.horizon, 100);
    }
}
