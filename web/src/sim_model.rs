//! The simulator view's model: settings carried in the URL, the user's
//! actions recorded against step numbers, and a run that can seek to any
//! step by deterministic replay (time travel; acting in the past forks).
//!
//! Pure Rust over `raft_core::sim`, tested on the host.

use std::collections::BTreeMap;

use raft_core::sim::{
    ClientOp, Cluster, DroppedMessage, Operation, Outcome, SimConfig, SimEvent, SimNode,
};
use raft_core::{ConfChange, Entry, NodeId, Op, Payload, Role};

use crate::model::{
    id_set, ClusterView, ConfigView, FollowerView, LogCell, LogView, MemberKind, NodeView,
    RoleView, Timeline,
};

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
    /// Add node `id` (the next unused id) as a learner; with `promote`,
    /// the leader makes it a voter once it caught up.
    AddNode {
        /// The new node's id.
        id: NodeId,
        /// Promote it automatically once caught up.
        promote: bool,
    },
    /// Make learner `id` a voter (through a joint configuration).
    Promote(NodeId),
    /// Remove member `id` (a voter through a joint configuration).
    Remove(NodeId),
    /// Remove voter `remove` and promote learner `promote` in one change.
    Replace {
        /// The voter leaving.
        remove: NodeId,
        /// The learner taking its place.
        promote: NodeId,
    },
    /// Stop removed node `id` for good: it leaves the ring.
    Retire(NodeId),
}

impl Action {
    /// The membership change this action proposes, if it is one.
    pub fn conf_change(&self) -> Option<ConfChange> {
        Some(match *self {
            Action::AddNode { id, promote } => ConfChange::AddLearner {
                id,
                address: format!("n{id}"),
                promote,
            },
            Action::Promote(id) => ConfChange::Promote { id },
            Action::Remove(id) => ConfChange::Remove { id },
            Action::Replace { remove, promote } => ConfChange::Replace { remove, promote },
            _ => return None,
        })
    }

    /// A short label for the scrubber and the timeline.
    pub fn label(&self) -> String {
        match self {
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
            Action::AddNode { id, promote } => format!(
                "add n{id} as a learner{}",
                if *promote {
                    ", promoted when caught up"
                } else {
                    ""
                }
            ),
            Action::Promote(n) => format!("promote n{n} to voter"),
            Action::Remove(n) => format!("remove n{n}"),
            Action::Replace { remove, promote } => format!("replace n{remove} by n{promote}"),
            Action::Retire(n) => format!("stop n{n} for good"),
        }
    }

    /// Whether it changes or ends membership (what the cluster records in
    /// its membership log).
    pub fn is_membership(&self) -> bool {
        self.conf_change().is_some() || matches!(self, Action::Retire(_))
    }
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
    /// `step:code`, e.g. `120:c3`, `400:x1-2`. Membership: `a6` / `a6p`
    /// add node 6 (`p`: promoted when caught up), `v6` promote, `o3`
    /// remove, `y3-6` replace 3 by 6, `z3` stop 3 for good.
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
            Action::AddNode { id, promote } => format!("a{id}{}", if *promote { "p" } else { "" }),
            Action::Promote(n) => format!("v{n}"),
            Action::Remove(n) => format!("o{n}"),
            Action::Replace { remove, promote } => format!("y{remove}-{promote}"),
            Action::Retire(n) => format!("z{n}"),
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
            "a" => {
                let (id, promote) = match rest.strip_suffix('p') {
                    Some(id) => (id, true),
                    None => (rest, false),
                };
                Action::AddNode {
                    id: id.parse().ok()?,
                    promote,
                }
            }
            "v" => Action::Promote(rest.parse().ok()?),
            "o" => Action::Remove(rest.parse().ok()?),
            "y" => pair(rest).map(|(remove, promote)| Action::Replace { remove, promote })?,
            "z" => Action::Retire(rest.parse().ok()?),
            _ => return None,
        };
        Some(Recorded { step, action })
    }

    /// A short label for the scrubber and the timeline.
    pub fn label(&self) -> String {
        self.action.label()
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
        Action::AddNode { .. }
        | Action::Promote(_)
        | Action::Remove(_)
        | Action::Replace { .. }
        | Action::Retire(_) => {
            let tried = cluster.conf_log().len();
            match (action, action.conf_change()) {
                (Action::Retire(n), _) => cluster.retire(*n),
                (_, Some(change)) => cluster.change_membership(change),
                _ => {}
            }
            // The cluster records what became of it.
            return match cluster.conf_log().get(tried).map(|o| &o.result) {
                Some(Err(why)) => Err(why.clone()),
                _ => Ok(()),
            };
        }
    }
    Ok(())
}

/// At most this many dropped messages wait to be drawn.
const DROPS_KEPT: usize = 64;

/// The terms timeline keeps the newest this many terms: scrubbed back
/// before them, it starts at the oldest kept.
pub const TERMS_KEPT: usize = 512;

/// The scrubber's term strip keeps at most this many bands (about one per
/// pixel of its 1,000 units): past it, every other band is merged into
/// the one before it.
pub const BANDS_KEPT: usize = 1024;

/// The newest configurations kept (the view lists the last 8).
pub const CONFIGS_KEPT: usize = 64;

/// At most this many nodes on the ring (founders, added nodes and removed
/// nodes not yet stopped for good).
pub const MAX_SHOWN: usize = 12;

/// What the membership controls can do now: for each, what it would act on,
/// or why it cannot act (the button is disabled and says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberControls {
    /// Add a node: the id it gets.
    pub add: Result<NodeId, String>,
    /// Promote the selected learner.
    pub promote: Result<NodeId, String>,
    /// Remove the selected member.
    pub remove: Result<NodeId, String>,
    /// Replace the selected voter by one of these learners.
    pub replace: Result<Vec<NodeId>, String>,
    /// Stop the selected removed node for good.
    pub retire: Result<NodeId, String>,
    /// Why no change can be proposed now (no leader, a change in
    /// progress, the leader's first commit of its term still to come).
    pub gate: Result<(), String>,
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
    /// Messages dropped since the view last took them (the newest
    /// [`DROPS_KEPT`]), to mark where they died.
    pub dropped: Vec<DroppedMessage>,
    /// `(step, configuration)` whenever the members or their roles
    /// changed, oldest first (from step 0).
    pub configs: Vec<(u64, ConfigView)>,
    /// The step up to which `timeline`, `bands`, `violation_steps` and
    /// `configs` are recorded (they survive seeking back; a fork truncates
    /// them).
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
            configs: Vec::new(),
            recorded_to: 0,
        };
        run.configs.push((0, run.config_view()));
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
        // A change takes effect at the leader when proposed: noted at the
        // step it was taken, as when it was first taken.
        if !due.is_empty() && now >= self.recorded_to {
            self.observe_config();
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
                // A run that never ends keeps bounded records: the terms
                // timeline its newest terms, the scrubber's strip one band
                // per pixel or so (every other older band merged into the
                // one before it).
                let excess = self.timeline.events.len().saturating_sub(TERMS_KEPT);
                self.timeline.events.drain(..excess);
                if self.bands.len() > BANDS_KEPT {
                    let last = self.bands.len() - 1;
                    let mut i = 0;
                    self.bands.retain(|_| {
                        i += 1;
                        (i - 1) % 2 == 0 || i - 1 == last
                    });
                }
            }
        }
        self.observe_config();
    }

    /// Notes the configuration in force when its members changed (the
    /// newest [`CONFIGS_KEPT`]).
    fn observe_config(&mut self) {
        let c = self.config_view();
        if !self.configs.last().is_some_and(|(_, l)| l.same_members(&c)) {
            self.configs.push((self.cluster.steps(), c));
            let excess = self.configs.len().saturating_sub(CONFIGS_KEPT);
            self.configs.drain(..excess);
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
            fresh.configs = std::mem::take(&mut self.configs);
            *self = fresh;
        }
        while self.cluster.steps() < target {
            self.step();
        }
    }

    /// Takes `action` now. When now is in the past of the recorded run,
    /// the future is forked: later actions are forgotten. A hand-issued
    /// operation while the previous one is pending is refused (nothing is
    /// recorded or forked) with the reason, and so is a membership action
    /// [`SimRun::member_controls`] rules out (no leader, a change in
    /// progress, not a learner, ...). A membership change the core itself
    /// refuses returns its reason but stays recorded: the cluster saw it,
    /// and a replay must see it too.
    pub fn act(&mut self, action: Action) -> Result<(), String> {
        if let (Action::Client { .. }, Some(op)) = (&action, self.hand_op()) {
            if op.outcome == Outcome::Pending {
                return Err(format!("wait: {} is still pending", op.op));
            }
        }
        if action.is_membership() {
            self.check_membership(&action)?;
        }
        let now = self.cluster.steps();
        self.settings.actions.retain(|r| r.step <= now);
        self.horizon = now;
        self.recorded_to = now;
        self.timeline.events.retain(|e| e.at <= now);
        self.bands.retain(|b| b.0 <= now);
        self.violation_steps.retain(|&v| v <= now);
        self.configs.retain(|c| c.0 <= now);
        let applied = apply(&mut self.cluster, &action);
        self.note_drops();
        if applied.is_ok() || action.is_membership() {
            self.settings.actions.push(Recorded { step: now, action });
        }
        // A change takes effect at the leader when proposed.
        self.observe_config();
        applied
    }

    /// Whether the membership controls allow `action` now.
    fn check_membership(&self, action: &Action) -> Result<(), String> {
        let selected = match *action {
            Action::Promote(n) | Action::Remove(n) | Action::Retire(n) => Some(n),
            Action::Replace { remove, .. } => Some(remove),
            _ => None,
        };
        let c = self.member_controls(selected);
        match *action {
            Action::AddNode { id, .. } => match c.add {
                Ok(next) if next == id => Ok(()),
                Ok(next) => Err(format!("a new node takes the next id, {next}, not {id}")),
                Err(e) => Err(e),
            },
            Action::Promote(_) => c.promote.map(|_| ()),
            Action::Remove(_) => c.remove.map(|_| ()),
            Action::Replace { promote, .. } => match c.replace {
                Ok(l) if l.contains(&promote) => Ok(()),
                Ok(_) => Err(format!("n{promote} is not a learner")),
                Err(e) => Err(e),
            },
            Action::Retire(_) => c.retire.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The ids of the nodes on the ring: every node not stopped for good
    /// (removed nodes still running stay, shown as removed), in id order.
    pub fn shown_ids(&self) -> Vec<NodeId> {
        self.cluster
            .nodes()
            .iter()
            .filter(|n| !n.is_retired())
            .map(SimNode::id)
            .collect()
    }

    /// The configuration in force (the leader's; without one, the newest
    /// among the running nodes), and whether its entry is still
    /// uncommitted there.
    pub fn config_view(&self) -> ConfigView {
        let source = match self.cluster.leader() {
            Some(l) => self.cluster.node(l).and_then(SimNode::raw),
            None => self
                .cluster
                .nodes()
                .iter()
                .filter_map(SimNode::raw)
                .max_by_key(|r| r.config_index()),
        };
        let pending = source.is_some_and(|r| r.config_index() > r.status().commit);
        ConfigView::from_membership(self.cluster.membership(), pending)
    }

    /// Why no membership change can be proposed now, if so: the core's
    /// rules, checked from outside (no leader; the leader has not committed
    /// an entry of its term; another change not committed or a joint phase
    /// not over).
    pub fn change_gate(&self) -> Result<(), String> {
        let leader = self
            .cluster
            .leader()
            .ok_or("no leader: a change goes through the leader; wait for an election")?;
        let node = self.cluster.node(leader).ok_or("no leader")?;
        let raw = node.raw().ok_or("no leader")?;
        let st = raw.status();
        let commit_term = raw
            .entry(st.commit)
            .map(|e| e.term)
            .or_else(|| node.durable().term(st.commit));
        if commit_term != Some(st.term) {
            return Err(format!(
                "leader n{leader} has not committed an entry of its term {} yet",
                st.term
            ));
        }
        if st.membership.is_joint() {
            return Err(format!(
                "a change is in progress: joint {} → {} until the leader enters the new configuration",
                id_set(&st.membership.outgoing),
                id_set(&st.membership.voters)
            ));
        }
        if st.config_index > st.commit {
            return Err(format!(
                "a change is in progress: its configuration entry {} is not committed yet",
                st.config_index
            ));
        }
        Ok(())
    }

    /// What each membership control can do with node `selected` selected.
    pub fn member_controls(&self, selected: Option<NodeId>) -> MemberControls {
        let gate = self.change_gate();
        let config = self.config_view();
        let shown = self.shown_ids();
        let m = self.cluster.membership();
        // The core's own check of the change against the configuration.
        let valid = |change: ConfChange| -> Result<(), String> {
            gate.clone()?;
            m.apply(&change).map(|_| ()).map_err(|e| e.to_string())
        };
        let kind = selected.map(|id| (id, config.kind(id)));
        let add = if shown.len() >= MAX_SHOWN {
            Err(format!(
                "the ring holds {MAX_SHOWN} nodes: stop a removed node for good first"
            ))
        } else {
            let id = self.cluster.next_node_id();
            valid(ConfChange::AddLearner {
                id,
                address: format!("n{id}"),
                promote: false,
            })
            .map(|()| id)
        };
        let promote = match kind {
            None => Err("select a learner on the ring".to_string()),
            Some((id, MemberKind::Learner { .. })) => {
                valid(ConfChange::Promote { id }).map(|()| id)
            }
            Some((id, k)) => Err(format!("n{id} is {}, not a learner", article(k))),
        };
        let remove = match kind {
            None => Err("select a member on the ring".to_string()),
            Some((id, MemberKind::Removed | MemberKind::Unknown)) => {
                Err(format!("n{id} is not a member"))
            }
            Some((id, _)) => valid(ConfChange::Remove { id }).map(|()| id),
        };
        let replace = match kind {
            None => Err("select a voter on the ring".to_string()),
            Some((id, k)) if !k.votes() => Err(format!("n{id} is {}, not a voter", article(k))),
            Some((id, _)) if config.learners.is_empty() => Err(format!(
                "no learner to take n{id}'s place: add a node first"
            )),
            Some((id, _)) => valid(ConfChange::Replace {
                remove: id,
                promote: config.learners[0],
            })
            .map(|()| config.learners.clone()),
        };
        let retire = match kind {
            None => Err("select a removed node on the ring".to_string()),
            Some((id, MemberKind::Removed)) => Ok(id),
            Some((id, k)) => Err(format!(
                "n{id} is {}: remove it from the configuration first",
                article(k)
            )),
        };
        MemberControls {
            add,
            promote,
            remove,
            replace,
            retire,
            gate,
        }
    }

    /// What became of the last membership action: `Ok(Some(index))` for a
    /// change accepted at that log index.
    pub fn last_conf_outcome(&self) -> Option<&Result<Option<raft_core::Index>, String>> {
        self.cluster.conf_log().last().map(|o| &o.result)
    }

    /// The hand client's latest operation.
    pub fn hand_op(&self) -> Option<&Operation> {
        self.cluster.hand_op()
    }

    /// The cluster as the shared view model: the nodes on the ring, each
    /// with its place in the configuration in force.
    pub fn view(&self) -> ClusterView {
        let leader = self.cluster.leader();
        let config = self.config_view();
        let mut nodes: Vec<NodeView> = self
            .cluster
            .nodes()
            .iter()
            .filter(|n| !n.is_retired())
            .map(node_view)
            .collect();
        for n in &mut nodes {
            n.member = config.kind(n.id);
        }
        // Vote tally of each candidate, per majority the election needs:
        // the running voters whose persisted vote in the candidate's term
        // names it (responses may still be on the wire).
        let votes: Vec<Vec<(usize, usize)>> = nodes
            .iter()
            .map(|c| {
                if c.role != RoleView::Candidate {
                    return Vec::new();
                }
                config
                    .majorities()
                    .into_iter()
                    .map(|set| {
                        let granted = nodes
                            .iter()
                            .filter(|v| {
                                set.contains(&v.id)
                                    && v.role != RoleView::Down
                                    && v.term == c.term
                                    && v.vote == Some(c.id)
                            })
                            .count();
                        (granted, set.len() / 2 + 1)
                    })
                    .collect()
            })
            .collect();
        for (n, v) in nodes.iter_mut().zip(votes) {
            n.votes = v;
        }
        ClusterView {
            nodes,
            leader,
            served_by: None,
            config: Some(config),
            cut: self.cluster.network().cuts().collect(),
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

/// `a voter`, `a learner`, `removed`, ... (for "n3 is ...").
fn article(k: MemberKind) -> &'static str {
    match k {
        MemberKind::Voter => "a voter",
        MemberKind::Joining => "a joining voter",
        MemberKind::Leaving => "a leaving voter",
        MemberKind::Learner { .. } => "a learner",
        MemberKind::Removed => "removed",
        MemberKind::Unknown => "not known",
    }
}

/// A short text for a log entry.
pub fn entry_text(e: &Entry) -> String {
    match &e.payload {
        Payload::Noop => "noop".into(),
        Payload::Config(m) => format!(
            "config {}",
            ConfigView::from_membership(m, false).describe()
        ),
        Payload::Command(c) => match &c.op {
            raft_core::Op::Put { key, value } => format!("put {key}={value}"),
            raft_core::Op::Delete { key } => format!("delete {key}"),
            raft_core::Op::Cas { key, .. } => format!("cas {key}"),
            raft_core::Op::Register => "register".into(),
            raft_core::Op::PutIf { key, value, .. } => format!("put-if {key}={value}"),
            raft_core::Op::DeleteIf { key, .. } => format!("delete-if {key}"),
            raft_core::Op::DeletePrefix { prefix } => format!("delete-prefix {prefix}"),
            raft_core::Op::Auth(_) => "auth".into(),
            raft_core::Op::AsUser { user, op, .. } => format!("as {user}: {}", op.key()),
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
            votes: Vec::new(),
            member: MemberKind::Unknown,
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
                silent: n
                    .raw()
                    .is_some_and(|r| f.ticks_since_contact > r.election_tick()),
            })
            .collect(),
        error: None,
        serving: false,
        // The leader's timer only paces CheckQuorum; the arc shows when a
        // follower or candidate will campaign. A node that is no voter in
        // its own configuration (a learner, a joining node) never does.
        election_timer: (s.role != Role::Leader && s.membership.is_voter(n.id()))
            .then_some((s.election_elapsed, s.election_timeout)),
        votes: Vec::new(),
        member: MemberKind::Unknown,
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

    /// Steps until `done` holds, at most `max` steps; whether it held.
    fn run_until(a: &mut SimRun, max: u64, done: impl Fn(&SimRun) -> bool) -> bool {
        for _ in 0..max {
            if done(a) {
                return true;
            }
            a.step();
        }
        done(a)
    }

    fn settled(a: &SimRun) -> bool {
        a.change_gate().is_ok()
    }

    fn kind(a: &SimRun, id: NodeId) -> MemberKind {
        a.view().node(id).map_or(MemberKind::Unknown, |n| n.member)
    }

    #[test]
    fn membership_actions_round_trip_in_the_url() {
        let mut s = SimSettings::parse("#sim?seed=1&nodes=3");
        s.actions = [
            Action::AddNode {
                id: 4,
                promote: true,
            },
            Action::AddNode {
                id: 5,
                promote: false,
            },
            Action::Promote(5),
            Action::Remove(2),
            Action::Replace {
                remove: 1,
                promote: 4,
            },
            Action::Retire(2),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, action)| Recorded {
            step: 10 * i as u64,
            action,
        })
        .collect();
        let hash = s.to_hash(None);
        assert!(
            hash.ends_with("acts=0:a4p,10:a5,20:v5,30:o2,40:y1-4,50:z2"),
            "{hash}"
        );
        assert_eq!(SimSettings::parse(&hash), s);
        assert_eq!(s.actions[4].label(), "replace n1 by n4");
    }

    /// Add a learner, promote it (joint, then the new configuration), remove
    /// the leader (it steps down, a new one is elected), stop it for good:
    /// the ring and the configuration follow, nothing unsafe happens, and
    /// the URL replays the same run.
    #[test]
    fn add_promote_remove_and_retire() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=4&nodes=3"));
        assert!(
            run_until(&mut a, 3000, settled),
            "a leader ready for changes"
        );
        assert_eq!(a.member_controls(None).add, Ok(4));
        a.act(Action::AddNode {
            id: 4,
            promote: false,
        })
        .unwrap();
        assert_eq!(a.shown_ids(), vec![1, 2, 3, 4]);
        assert_eq!(kind(&a, 4), MemberKind::Learner { promote: false });
        let c = a.config_view();
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3], vec![4])
        );
        assert!(c.pending, "the learner's entry is not committed yet");
        // One change at a time: refused before the cluster sees it, with why.
        let why = a.member_controls(None).add.unwrap_err();
        assert!(why.contains("in progress"), "{why}");
        let refused = a.act(Action::AddNode {
            id: 5,
            promote: false,
        });
        assert_eq!(refused, Err(why));
        assert_eq!(
            a.settings.actions.len(),
            1,
            "a refused action is not recorded"
        );
        // Learners never count.
        let ft = a.view().fault_tolerance();
        assert_eq!((ft.majorities[0].members(), ft.learners), (3, 1));

        assert!(run_until(&mut a, 3000, settled));
        assert_eq!(a.member_controls(Some(4)).promote, Ok(4));
        let not_learner = a.member_controls(Some(1)).promote.unwrap_err();
        assert_eq!(not_learner, "n1 is a voter, not a learner");
        a.act(Action::Promote(4)).unwrap();
        let c = a.config_view();
        assert!(c.is_joint());
        assert_eq!(
            (c.outgoing.clone(), c.voters.clone()),
            (vec![1, 2, 3], vec![1, 2, 3, 4])
        );
        assert_eq!(kind(&a, 4), MemberKind::Joining);
        let ft = a.view().fault_tolerance();
        assert!(ft.is_joint());
        assert!(ft.describe().contains("old {1,2,3}"), "{}", ft.describe());
        assert!(run_until(&mut a, 3000, settled));
        let c = a.config_view();
        assert!(!c.is_joint() && c.learners.is_empty());
        assert_eq!(c.voters, vec![1, 2, 3, 4]);
        assert_eq!(kind(&a, 4), MemberKind::Voter);
        assert!(
            a.configs.iter().any(|(_, c)| c.is_joint()),
            "the joint phase is in the history: {:?}",
            a.configs
        );

        let old = a.cluster.leader().unwrap();
        a.act(Action::Remove(old)).unwrap();
        assert_eq!(kind(&a, old), MemberKind::Leaving);
        assert!(run_until(&mut a, 5000, |a| settled(a)
            && a.cluster.leader().is_some_and(|l| l != old)));
        assert_eq!(kind(&a, old), MemberKind::Removed);
        assert_eq!(a.config_view().voters.len(), 3);
        assert!(
            a.shown_ids().contains(&old),
            "removed, still running, still shown"
        );
        assert_eq!(a.member_controls(Some(old)).retire, Ok(old));
        assert!(a.member_controls(Some(4)).retire.is_err());
        a.act(Action::Retire(old)).unwrap();
        assert!(!a.shown_ids().contains(&old));
        assert!(a.view().node(old).is_none());
        a.seek(a.step_no() + 500);
        assert!(
            a.cluster.violations().is_empty(),
            "{:?}",
            a.cluster.violations()
        );

        let step = a.step_no();
        let mut b = SimRun::new(SimSettings::parse(&a.settings.to_hash(None)));
        b.seek(step);
        assert_eq!(b.cluster.trace_hash(), a.cluster.trace_hash());
        assert_eq!(b.shown_ids(), a.shown_ids());
        // Back before the node was added: it is gone from the ring again.
        let added_at = a.settings.actions[0].step;
        a.seek(added_at - 1);
        assert_eq!(a.shown_ids(), vec![1, 2, 3]);
    }

    #[test]
    fn an_auto_promoted_learner_becomes_a_voter() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=6&nodes=3"));
        assert!(run_until(&mut a, 3000, settled));
        a.act(Action::AddNode {
            id: 4,
            promote: true,
        })
        .unwrap();
        assert_eq!(kind(&a, 4), MemberKind::Learner { promote: true });
        assert_eq!(a.config_view().describe(), "voters {1,2,3} · learners {4+}");
        assert!(run_until(&mut a, 8000, |a| kind(a, 4) == MemberKind::Voter
            && settled(a)));
        assert_eq!(a.config_view().voters, vec![1, 2, 3, 4]);
        assert!(a.configs.iter().any(|(_, c)| c.is_joint()));
        assert!(a.cluster.violations().is_empty());
    }

    #[test]
    fn replace_a_voter_by_a_learner() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=8&nodes=3"));
        assert!(run_until(&mut a, 3000, settled));
        let leader = a.cluster.leader().unwrap();
        let follower = (1..=3).find(|&n| n != leader).unwrap();
        let none = a.member_controls(Some(follower)).replace.unwrap_err();
        assert!(none.contains("add a node first"), "{none}");
        a.act(Action::AddNode {
            id: 4,
            promote: false,
        })
        .unwrap();
        assert!(run_until(&mut a, 3000, settled));
        assert_eq!(a.member_controls(Some(follower)).replace, Ok(vec![4]));
        a.act(Action::Replace {
            remove: follower,
            promote: 4,
        })
        .unwrap();
        let c = a.config_view();
        assert!(c.is_joint());
        assert_eq!(kind(&a, follower), MemberKind::Leaving);
        assert_eq!(kind(&a, 4), MemberKind::Joining);
        assert!(run_until(&mut a, 3000, settled));
        let c = a.config_view();
        assert_eq!(c.voters.len(), 3);
        assert!(c.voters.contains(&4) && !c.voters.contains(&follower));
        assert_eq!(kind(&a, follower), MemberKind::Removed);
        assert!(a.cluster.violations().is_empty());
    }

    /// With two of five voters down, removing a third one that is up would
    /// leave no quorum among the members up: the core refuses, the reason is
    /// returned, and the attempt stays recorded so the replay matches.
    #[test]
    fn a_change_the_core_refuses_says_why_and_replays() {
        let mut a = SimRun::new(SimSettings::parse("#sim?seed=2&nodes=5"));
        assert!(run_until(&mut a, 3000, settled));
        let leader = a.cluster.leader().unwrap();
        let others: Vec<NodeId> = (1..=5).filter(|&n| n != leader).collect();
        a.act(Action::Crash(others[0])).unwrap();
        a.act(Action::Crash(others[1])).unwrap();
        a.seek(a.step_no() + 400);
        assert_eq!(a.cluster.leader(), Some(leader));
        assert!(a.member_controls(Some(others[2])).remove.is_ok());
        let why = a.act(Action::Remove(others[2])).unwrap_err();
        assert!(why.contains("no quorum"), "{why}");
        assert!(!a.config_view().pending, "nothing changed");
        assert_eq!(a.settings.actions.len(), 3, "recorded: the cluster saw it");
        a.seek(a.step_no() + 100);
        let mut b = SimRun::new(SimSettings::parse(&a.settings.to_hash(None)));
        b.seek(a.step_no());
        assert_eq!(b.cluster.trace_hash(), a.cluster.trace_hash());
    }

    #[test]
    fn without_a_leader_changes_wait() {
        let a = SimRun::new(SimSettings::parse("#sim?seed=3&nodes=3"));
        let c = a.member_controls(None);
        assert!(c.gate.as_ref().unwrap_err().starts_with("no leader"));
        assert_eq!(c.add, Err(c.gate.clone().unwrap_err()));
        assert_eq!(c.promote, Err("select a learner on the ring".into()));
    }
}
