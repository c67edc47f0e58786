//! The simulated cluster: nodes, network, clients and nemesis on one
//! virtual clock, advanced one event time per [`Cluster::step`].

use std::collections::BTreeMap;

use super::client::{Client, ClientView, Current, Phase, Session};
use super::config::SimConfig;
use super::disk::{ArmedFault, WriteCut};
use super::frontier::LinearizabilityFrontier;
use super::history::{ClientOp, History, OpOutput, Operation, Outcome};
use super::invariants::{Checker, Detected, Violation};
use super::linearizability::{check_linearizability, CheckStats, LinearizabilityError};
use super::nemesis::{ChurnView, FaultAction, Nemesis, NodeBrief};
use super::network::{DroppedMessage, InFlight, Network, NetworkStats};
use super::node::{Deferred, Env, Reply, SimNode, Stopped};
use super::{Time, TraceHash};
use crate::config::{ConfigError, NotAccepted};
use crate::kv::{Command, Op, OpResult};
use crate::message::MessageBody;
use crate::rng::Rng;
use crate::types::{ConfChange, Index, Membership, NodeId, Term};

/// Something that happened during the last step (recorded only when
/// [`Cluster::record_events`] is on).
#[derive(Clone, Debug, PartialEq)]
pub enum SimEvent {
    /// A message reached a running node.
    Delivered {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// `MessageBody::kind()`.
        kind: &'static str,
        /// The message's term.
        term: Term,
    },
    /// A fault was injected or repaired.
    Fault(FaultAction),
    /// A message died on the wire (lost, cut, its recipient down, or taken
    /// off by hand).
    Dropped(DroppedMessage),
    /// A client invoked the operation with this history id.
    Invoked(usize),
    /// The operation completed.
    Completed(usize),
    /// The operation was abandoned.
    Abandoned(usize),
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// The virtual time the step ran at.
    pub time: Time,
    /// Messages delivered.
    pub delivered: usize,
    /// Violations found by this step.
    pub new_violations: usize,
}

/// What became of a membership action ([`FaultAction::ConfChange`],
/// [`FaultAction::Rejoin`], [`FaultAction::Retire`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfOutcome {
    /// When it was tried.
    pub at: Time,
    /// The action.
    pub action: FaultAction,
    /// Accepted: the index of its configuration entry (`None` for a node
    /// stopped, which needs none). Refused: why (a `NotAccepted` from the
    /// core, or the simulator's own reason).
    pub result: Result<Option<Index>, String>,
}

/// The summary of a finished run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The run's seed.
    pub seed: u64,
    /// Virtual time at the end.
    pub end_time: Time,
    /// Steps taken.
    pub steps: u64,
    /// Whether every client finished its operations before `max_time`.
    pub finished: bool,
    /// Operations invoked.
    pub ops: usize,
    /// Operations answered (this and the counts below: over the history
    /// kept, the whole run's unless the workload has no end; the same for
    /// the fault counts and the fault log).
    pub ops_ok: usize,
    /// Writes invoked.
    pub writes: usize,
    /// Writes answered.
    pub writes_ok: usize,
    /// Writes abandoned (outcome unknown).
    pub writes_unknown: usize,
    /// Conditional writes ([`Op::PutIf`], [`Op::DeleteIf`]) answered:
    /// applied, and refused because their condition did not hold.
    pub conditional: (usize, usize),
    /// Prefix deletes answered.
    pub prefix_deletes: usize,
    /// Safety violations (invariants and linearizability).
    pub violations: Vec<Detected>,
    /// The linearizability checker's verdict.
    pub linearizability: Result<CheckStats, LinearizabilityError>,
    /// Whether all nodes ended with the same state machine.
    pub converged: bool,
    /// Faults injected (repairs not counted).
    pub faults: usize,
    /// Crashes among them.
    pub crashes: usize,
    /// Pauses among them ([`FaultAction::Pause`]).
    pub pauses: usize,
    /// Partitions and link cuts among them.
    pub partitions: usize,
    /// Network counters.
    pub network: NetworkStats,
    /// Distinct terms that had a leader.
    pub leaders: usize,
    /// Snapshots installed from a leader (InstallSnapshot).
    pub snapshots_installed: u64,
    /// InstallSnapshot messages held back until a snapshot reaching a
    /// checkpoint was written.
    pub snapshots_held: u64,
    /// Membership changes the leader accepted (its own automatic
    /// promotions and joint-phase exits not counted).
    pub conf_changes: usize,
    /// Membership actions refused.
    pub conf_refused: usize,
    /// Nodes added (joined as learners).
    pub nodes_added: usize,
    /// Removed nodes stopped for good.
    pub nodes_retired: usize,
    /// Followers a leader declared to have lost their log
    /// ([`super::node::NodeStats::lost_logs`]; false alarms here).
    pub lost_logs: u64,
    /// Crashes in the middle of a durable write
    /// ([`super::node::NodeStats::torn_writes`]).
    pub torn_writes: u64,
    /// Crashes or halts between a snapshot file (received or its own) and
    /// the record marking it.
    pub snapshot_file_crashes: u64,
    /// Nodes halted by a disk error.
    pub disk_halts: u64,
    /// The run's trace hash.
    pub trace_hash: u64,
}

/// How long (virtual time) a run that forgets keeps the operations its
/// linearizability check has read (the dashboard draws the last 6,000).
pub const HISTORY_KEPT_TIME: Time = 8_000;

/// How many of the newest faults a run that forgets keeps in its log.
pub const FAULTS_KEPT: usize = 512;

/// A whole simulated cluster.
pub struct Cluster {
    cfg: SimConfig,
    now: Time,
    steps: u64,
    /// The founding members.
    members: Membership,
    /// Every node ever created; id `i` is at index `i - 1` (ids are handed
    /// out in order and never reused).
    nodes: Vec<SimNode>,
    net: Network,
    net_rng: Rng,
    client_rng: Rng,
    nemesis_rng: Rng,
    nemesis: Nemesis,
    clients: Vec<Client>,
    /// The clients' sessions (a pipelining client's lanes share one).
    sessions: Vec<Session>,
    /// The index in `clients` of the hand client, once it exists.
    hand_client: Option<usize>,
    history: History,
    /// The history's linearizability, checked as it grows.
    lin: LinearizabilityFrontier,
    /// The hand client's latest operation once the history forgot it.
    hand_last: Option<Operation>,
    checker: Checker,
    replies: Vec<(NodeId, Reply)>,
    /// Attempt contexts of reads and writes: `ctx -> (client index, op id,
    /// node asked, its restarts then)`.
    attempts: BTreeMap<u64, (usize, usize, NodeId, u64)>,
    next_ctx: u64,
    issued: usize,
    calm: bool,
    trace: TraceHash,
    fault_log: Vec<(Time, FaultAction)>,
    conf_log: Vec<ConfOutcome>,
    record_events: bool,
    events: Vec<SimEvent>,
}

impl Cluster {
    /// A new cluster as `cfg` describes; nothing has happened yet.
    pub fn new(cfg: SimConfig) -> Result<Self, ConfigError> {
        if !(1..=64).contains(&cfg.nodes) {
            return Err(ConfigError("a cluster has 1 to 64 nodes".into()));
        }
        if cfg.tick_interval == 0 {
            return Err(ConfigError("tick_interval must be at least 1".into()));
        }
        let ids: Vec<NodeId> = (1..=cfg.nodes as u64).collect();
        let members = Membership::new(ids.clone());
        let mut net_rng = Rng::new(cfg.seed ^ 0x4E45_5457_4F52_4B00);
        let mut client_rng = Rng::new(cfg.seed ^ 0x434C_4945_4E54_5300);
        let mut nemesis_rng = Rng::new(cfg.seed ^ 0x4E45_4D45_5349_5300);
        let mut nodes = Vec::with_capacity(ids.len());
        for &id in &ids {
            let mut node =
                SimNode::new(id, cfg.node_config(id, 0), &members, cfg.snapshot_policy())
                    .map_err(ConfigError)?;
            node.next_tick = net_rng.range(1, cfg.tick_interval + 1);
            nodes.push(node);
        }
        let mut clients = Vec::new();
        let mut sessions = Vec::new();
        let c = &cfg.clients;
        for s in 0..c.count {
            sessions.push(Session::new(s + c.without_session < c.count));
            let lanes = if s < c.pipelined {
                c.pipeline_depth.max(1)
            } else {
                1
            };
            for _ in 0..lanes {
                let start = client_rng.range(0, 2 * cfg.tick_interval);
                clients.push(Client::new(clients.len() as u64 + 1, s, start));
            }
        }
        let nemesis = Nemesis::new(&cfg.nemesis, cfg.network.clone(), &mut nemesis_rng);
        let mut checker = Checker::new();
        checker.set_membership_rules(cfg.check_membership_rules);
        checker.set_direct_rules(cfg.check_direct_rules);
        checker.on_bootstrap(&members);
        Ok(Cluster {
            net: Network::new(cfg.network.clone()),
            cfg,
            now: 0,
            steps: 0,
            members,
            nodes,
            net_rng,
            client_rng,
            nemesis_rng,
            nemesis,
            clients,
            sessions,
            hand_client: None,
            history: History::new(),
            lin: LinearizabilityFrontier::new(),
            hand_last: None,
            checker,
            replies: Vec::new(),
            attempts: BTreeMap::new(),
            next_ctx: 1,
            issued: 0,
            calm: false,
            trace: TraceHash::default(),
            fault_log: Vec::new(),
            conf_log: Vec::new(),
            record_events: false,
            events: Vec::new(),
        })
    }

    // ----- what the dashboard reads -----

    /// The configuration (as modified by the controls).
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Every node ever created, in id order (id `i` is at index `i - 1`):
    /// the founders `1..=cfg.nodes`, then the nodes added by membership
    /// changes. Removed nodes stay (running, crashed or
    /// [retired](SimNode::is_retired)).
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The id the next node added gets (ids are never reused).
    pub fn next_node_id(&self) -> NodeId {
        self.nodes.len() as NodeId + 1
    }

    /// The configuration in force as the cluster sees it: the leader's, or
    /// without one the newest among the running nodes, or the founders'.
    pub fn membership(&self) -> &Membership {
        if let Some(raw) = self.leader().and_then(|l| self.node(l)?.raw()) {
            return raw.membership();
        }
        self.nodes
            .iter()
            .filter_map(SimNode::raw)
            .max_by_key(|r| r.config_index())
            .map_or(&self.members, |r| r.membership())
    }

    /// Every membership action tried and what became of it.
    pub fn conf_log(&self) -> &[ConfOutcome] {
        &self.conf_log
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> Option<&SimNode> {
        self.nodes.get((id as usize).checked_sub(1)?)
    }

    /// The running leader with the highest term.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.is_leader())
            .max_by_key(|n| n.term())
            .map(SimNode::id)
    }

    /// The network: in-flight messages, cuts, settings, counters.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The messages in flight, by delivery time.
    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.net.in_flight()
    }

    /// How many records the run keeps, per structure.
    pub fn retained(&self) -> super::Retained {
        let mut r = super::Retained {
            history_ops: self.history.ops().len(),
            lin_pending: self.lin.pending(),
            fault_log: self.fault_log.len(),
            conf_log: self.conf_log.len(),
            attempts: self.attempts.len(),
            ..Default::default()
        };
        self.checker.count_retained(&mut r);
        r
    }

    /// The linearizability verdict on the history read so far (up to the
    /// oldest operation still waiting for its answer).
    pub fn linearizability(&self) -> Result<CheckStats, LinearizabilityError> {
        self.explained(self.lin.verdict())
    }

    /// A violation the online check found, explained by the whole-history
    /// search (its longest linearizable prefix and every operation of the
    /// key) when the history still holds every operation.
    fn explained(
        &self,
        verdict: Result<CheckStats, LinearizabilityError>,
    ) -> Result<CheckStats, LinearizabilityError> {
        match verdict {
            Err(LinearizabilityError::NotLinearizable { .. }) if self.history.first_id() == 0 => {
                match check_linearizability(self.history.ops()) {
                    Err(e @ LinearizabilityError::NotLinearizable { .. }) => Err(e),
                    _ => verdict,
                }
            }
            other => other,
        }
    }

    /// Whether the run forgets what its checkers have settled: a workload
    /// without end (the dashboard's) must, a finite one keeps its whole
    /// history and fault log for the report and the tests.
    fn forgets_settled(&self) -> bool {
        self.cfg.clients.total_ops.is_none()
    }

    /// The hand client's latest operation ([`Cluster::submit`]), kept even
    /// once the history forgot it.
    pub fn hand_op(&self) -> Option<&Operation> {
        let hand = self.hand_client_id()?;
        let kept = self.history.ops().iter().rev().find(|o| o.client == hand);
        kept.or(self.hand_last.as_ref())
    }

    /// The client history so far (the recent part only in a run that
    /// forgets, see [`History::forget_before`]).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The clients' current state.
    pub fn clients(&self) -> Vec<ClientView> {
        self.clients.iter().map(Client::view).collect()
    }

    /// The hand client's id (the `client` of its operations in the
    /// history), once [`Cluster::submit`] was first called.
    pub fn hand_client_id(&self) -> Option<u64> {
        self.hand_client.map(|ci| self.clients[ci].id)
    }

    /// Every violation found so far.
    pub fn violations(&self) -> &[Detected] {
        self.checker.violations()
    }

    /// Every term's leader seen so far.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        self.checker.leaders()
    }

    /// Every fault injected or repaired, with its time.
    pub fn fault_log(&self) -> &[(Time, FaultAction)] {
        &self.fault_log
    }

    /// The hash of everything that happened so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.0
    }

    /// Records a [`SimEvent`] list for each step (off by default).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
        self.events.clear();
        self.net.record_drops(on);
    }

    /// What the last step did, when recording.
    pub fn last_events(&self) -> &[SimEvent] {
        &self.events
    }

    // ----- controls -----

    /// Crashes node `id`: it loses its RawNode, its state machine and the
    /// messages in flight to it; its durable store survives.
    pub fn crash(&mut self, id: NodeId) {
        self.apply_fault(FaultAction::Crash(id));
    }

    /// Restarts node `id` from its durable store.
    pub fn restart(&mut self, id: NodeId) {
        self.apply_fault(FaultAction::Restart(id));
    }

    /// Cuts the directed link `from -> to`.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.apply_fault(FaultAction::Cut(vec![(from, to)]));
    }

    /// Cuts every link between the groups.
    pub fn partition(&mut self, groups: Vec<Vec<NodeId>>) {
        self.apply_fault(FaultAction::Partition(groups));
    }

    /// Cuts node `id` off from all others, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        let rest = (1..=self.nodes.len() as u64).filter(|&x| x != id).collect();
        self.partition(vec![vec![id], rest]);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.apply_fault(FaultAction::Heal);
    }

    /// Sets the message loss probability.
    pub fn set_drop_rate(&mut self, p: f64) {
        let duplicate_rate = self.net.config.duplicate_rate;
        self.apply_fault(FaultAction::SetLoss {
            drop_rate: p,
            duplicate_rate,
        });
    }

    /// Sets the message duplication probability.
    pub fn set_duplicate_rate(&mut self, p: f64) {
        let drop_rate = self.net.config.drop_rate;
        self.apply_fault(FaultAction::SetLoss {
            drop_rate,
            duplicate_rate: p,
        });
    }

    /// Sets the latency range.
    pub fn set_latency(&mut self, lo: Time, hi: Time) {
        self.apply_fault(FaultAction::SetLatency(lo, hi));
    }

    /// Asks the current leader to hand over to `to`.
    pub fn transfer_leader(&mut self, to: NodeId) {
        self.apply_fault(FaultAction::TransferLeader(to));
    }

    /// Fires node `id`'s election timer now (it campaigns).
    pub fn election_timeout(&mut self, id: NodeId) {
        self.apply_fault(FaultAction::ElectionTimeout(id));
    }

    /// Takes the message with this id off the wire.
    pub fn drop_message(&mut self, id: u64) {
        self.apply_fault(FaultAction::DropMessage(id));
    }

    /// Proposes a membership change through the leader (an `AddLearner`
    /// must use [`Cluster::next_node_id`]); see [`Cluster::conf_log`] for
    /// the outcome.
    pub fn change_membership(&mut self, change: ConfChange) {
        self.apply_fault(FaultAction::ConfChange(change));
    }

    /// Stops removed node `id` for good.
    pub fn retire(&mut self, id: NodeId) {
        self.apply_fault(FaultAction::Retire(id));
    }

    /// Issues a client operation by hand through node `via`. The hand
    /// client (its own number, after the simulated clients'; it registers
    /// its session before its first write) carries it out like any client: it asks `via` first, follows "not the leader,
    /// try N" redirects, retries elsewhere after silence and abandons it
    /// after the operation timeout. The operation is in the history, and so
    /// checked for linearizability, like every other. Returns its history
    /// id; refused while the hand client's previous operation is pending,
    /// or for a node that does not exist.
    pub fn submit(&mut self, via: NodeId, op: ClientOp) -> Result<usize, String> {
        if self.index(via).is_none() {
            return Err(format!("there is no node {via}"));
        }
        let ci = match self.hand_client {
            Some(ci) => ci,
            None => {
                self.sessions.push(Session::new(true));
                let session = self.sessions.len() - 1;
                self.clients
                    .push(Client::by_hand(self.clients.len() as u64 + 1, session));
                self.clients.len() - 1
            }
        };
        self.hand_client = Some(ci);
        if let Some(cur) = &self.clients[ci].current {
            return Err(format!("operation #{} is still pending", cur.op_id));
        }
        // A write needs the session: the registration goes first, the
        // operation waits for it (invoked now, so its interval covers it).
        let session = self.clients[ci].session;
        let register = op.is_write() && self.sessions[session].needs_registration();
        let register_id = register.then(|| {
            let id = self.clients[ci].id;
            self.history
                .invoke(id, ClientOp::Write(Op::Register), 0, self.now)
        });
        let client = &mut self.clients[ci];
        let op_id = self.history.invoke(client.id, op.clone(), 0, self.now);
        self.trace
            .mix(op_id as u64 ^ (client.id << 32) ^ (via << 56));
        self.trace.mix_str(&op.to_string());
        if self.record_events {
            self.events.extend(register_id.map(SimEvent::Invoked));
            self.events.push(SimEvent::Invoked(op_id));
        }
        client.leader_hint = None;
        let deadline = self.now + self.cfg.clients.op_timeout;
        match register_id {
            Some(register_id) => {
                self.sessions[session].registering = true;
                client.queued = Some((op_id, op, via, deadline));
                client.current = Some(Current::new(
                    register_id,
                    ClientOp::Write(Op::Register),
                    0,
                    0,
                    deadline,
                ));
            }
            None => {
                let (client_id, seq) = if op.is_write() {
                    self.sessions[session].take_seq()
                } else {
                    (0, 0)
                };
                self.history.set_session(op_id, client_id, seq);
                client.current = Some(Current::new(op_id, op, client_id, seq, deadline));
            }
        }
        self.attempt(ci, Some(via));
        self.dispatch_replies();
        self.collect_drops();
        Ok(op_id)
    }

    /// Turns PreVote on or off for nodes (re)started from now on.
    pub fn set_pre_vote(&mut self, on: bool) {
        self.cfg.raft.pre_vote = on;
    }

    /// Turns CheckQuorum on or off for nodes (re)started from now on.
    pub fn set_check_quorum(&mut self, on: bool) {
        self.cfg.raft.check_quorum = on;
    }

    /// Turns the automatic fault schedule on or off.
    pub fn set_nemesis(&mut self, on: bool) {
        self.cfg.nemesis.enabled = on;
        if !on {
            self.nemesis.clear();
        }
    }

    /// Carries out one fault or repair.
    pub fn apply_fault(&mut self, action: FaultAction) {
        self.trace.mix_str(&action.to_string());
        if self.record_events {
            self.events.push(SimEvent::Fault(action.clone()));
        }
        self.fault_log.push((self.now, action.clone()));
        match action {
            FaultAction::Crash(id) => self.do_crash(id),
            FaultAction::CrashAtWrite(id) => {
                self.arm(id, ArmedFault::Crash(Some(WriteCut::Nothing)));
            }
            FaultAction::TornWrite(id) => self.arm(id, ArmedFault::Crash(None)),
            FaultAction::CrashAfterSnapshotFile(id) => {
                self.arm(id, ArmedFault::CrashAfterSnapshotFile);
            }
            FaultAction::DiskError { node, kind } => self.arm(node, ArmedFault::Error(kind)),
            FaultAction::Restart(id) => self.do_restart(id),
            FaultAction::Cut(links) => {
                for (a, b) in links {
                    self.net.cut(a, b);
                }
            }
            FaultAction::Partition(groups) => self.net.partition(&groups),
            FaultAction::Heal => self.net.heal(),
            FaultAction::SetLoss {
                drop_rate,
                duplicate_rate,
            } => {
                self.net.config.drop_rate = drop_rate.clamp(0.0, 1.0);
                self.net.config.duplicate_rate = duplicate_rate.clamp(0.0, 1.0);
            }
            FaultAction::SetLatency(lo, hi) => self.net.config.latency = (lo.max(1), hi.max(lo)),
            FaultAction::TransferLeader(to) => {
                // A frozen leader cannot act on the request.
                let awake = |l: &NodeId| self.nodes[*l as usize - 1].paused_until().is_none();
                if let Some(l) = self.leader().filter(awake) {
                    let i = l as usize - 1;
                    if let Some(r) = self.nodes[i].replica_mut() {
                        let _ = r.transfer_leader(to);
                    }
                    self.drive(i);
                }
            }
            FaultAction::ElectionTimeout(id) => {
                let awake = |i: &usize| self.nodes[*i].paused_until().is_none();
                if let Some(i) = self.index(id).filter(awake) {
                    if let Some(r) = self.nodes[i].replica_mut() {
                        r.raw_mut().campaign();
                        self.drive(i);
                    }
                }
            }
            FaultAction::DropMessage(id) => {
                let _ = self.net.remove(id, self.now);
            }
            FaultAction::ConfChange(ref change) => {
                let result = self.propose_conf_change(change.clone());
                self.record_conf(action, result);
            }
            FaultAction::Rejoin { old, new, promote } => {
                let result = self.rejoin(old, new, promote);
                self.record_conf(action, result);
            }
            FaultAction::Retire(id) => {
                let result = self.do_retire(id);
                self.record_conf(action, result);
            }
            FaultAction::Pause { node, time } => {
                if let Some(i) = self.index(node) {
                    self.nodes[i].pause(self.now + time.max(1));
                }
            }
        }
        self.dispatch_replies();
        self.collect_drops();
    }

    /// Arms a disk fault on node `id`'s next durable write (nothing if it
    /// is down).
    fn arm(&mut self, id: NodeId, fault: ArmedFault) {
        if let Some(i) = self.index(id) {
            self.nodes[i].arm(fault);
        }
    }

    fn record_conf(&mut self, action: FaultAction, result: Result<Option<Index>, String>) {
        match &result {
            Ok(index) => self.trace.mix(index.unwrap_or(0)),
            Err(why) => self.trace.mix_str(why),
        }
        self.conf_log.push(ConfOutcome {
            at: self.now,
            action,
            result,
        });
    }

    /// Proposes `change` at the leader (never forced: the core refuses a
    /// change that the members up could not make a quorum of). An accepted
    /// `AddLearner` gets its node: a new slot with no state, which learns
    /// everything from the leader.
    fn propose_conf_change(&mut self, change: ConfChange) -> Result<Option<Index>, String> {
        let new_id = match &change {
            ConfChange::AddLearner { id, .. } => {
                if *id != self.next_node_id() {
                    return Err(format!(
                        "a new node takes the next id, {}, not {id}",
                        self.next_node_id()
                    ));
                }
                Some(*id)
            }
            _ => None,
        };
        let l = self.leader().ok_or("no leader")?;
        let i = l as usize - 1;
        if self.nodes[i].paused_until().is_some() {
            return Err(format!("the leader, {l}, is paused"));
        }
        let replica = self.nodes[i].replica_mut().ok_or("no leader")?;
        // Through the replica, as the server's membership routes do; the
        // change's entry is the last one appended.
        replica
            .change_membership(change, false)
            .map_err(|e| e.to_string())?;
        let index = replica.raw().status().last_index;
        if let Some(id) = new_id {
            self.add_node(id)?;
        }
        self.drive(i);
        Ok(Some(index))
    }

    /// A new node slot `id` that joins with nothing persisted.
    fn add_node(&mut self, id: NodeId) -> Result<(), String> {
        debug_assert_eq!(id, self.next_node_id());
        let mut node =
            SimNode::joining(id, self.cfg.node_config(id, 0), self.cfg.snapshot_policy())?;
        node.next_tick = self.now + self.net_rng.range(1, self.cfg.tick_interval + 1);
        self.nodes.push(node);
        Ok(())
    }

    /// Re-adds removed node `old` as the new node `new`: its data is gone,
    /// it comes back empty under a never used id.
    fn rejoin(&mut self, old: NodeId, new: NodeId, promote: bool) -> Result<Option<Index>, String> {
        let i = self
            .index(old)
            .ok_or_else(|| format!("there is no node {old}"))?;
        if self.membership().contains(old) {
            return Err(format!("node {old} is still a member"));
        }
        let add = ConfChange::AddLearner {
            id: new,
            address: format!("n{new}"),
            promote,
        };
        let index = self.propose_conf_change(add)?;
        if !self.nodes[i].is_retired() {
            self.nodes[i].retire();
            self.after_crash(old);
        }
        Ok(index)
    }

    /// Stops removed node `id` for good.
    fn do_retire(&mut self, id: NodeId) -> Result<Option<Index>, String> {
        let i = self
            .index(id)
            .ok_or_else(|| format!("there is no node {id}"))?;
        if self.membership().contains(id) {
            return Err(format!("node {id} is still a member"));
        }
        if self.nodes[i].is_retired() {
            return Err(format!("node {id} is already stopped for good"));
        }
        self.nodes[i].retire();
        self.after_crash(id);
        Ok(None)
    }

    /// What the nemesis sees of the nodes not retired.
    fn briefs(&self) -> Vec<NodeBrief> {
        let m = self.membership();
        self.nodes
            .iter()
            .filter(|n| !n.is_retired())
            .map(|n| NodeBrief {
                id: n.id(),
                // A paused node counts as down: it cannot take part.
                up: n.is_up() && n.paused_until().is_none(),
                leader: n.is_leader(),
                voter: m.is_voter(n.id()),
            })
            .collect()
    }

    /// What the nemesis needs to plan a membership change: the leader's
    /// configuration and its learners' progress.
    fn churn_view(&self) -> Option<ChurnView> {
        /// A learner this close to the leader's last index is caught up.
        const CAUGHT_UP: Index = 8;
        let st = self.node(self.leader()?)?.status()?;
        let m = &st.membership;
        let caught_up = m
            .learners
            .iter()
            .copied()
            .filter(|&id| {
                st.followers
                    .iter()
                    .any(|f| f.id == id && f.match_index + CAUGHT_UP >= st.last_index)
            })
            .collect();
        let settled = !m.is_joint() && st.config_index <= st.commit;
        let removed = if settled {
            self.nodes
                .iter()
                .filter(|n| !n.is_retired() && !m.contains(n.id()))
                .map(SimNode::id)
                .collect()
        } else {
            Vec::new()
        };
        Some(ChurnView {
            voters: m.voters.clone(),
            learners: m.learners.clone(),
            auto_promote: m.auto_promote.len(),
            caught_up,
            removed,
            next_id: self.next_node_id(),
        })
    }

    /// Moves the network's dropped messages into the step's events.
    fn collect_drops(&mut self) {
        if self.record_events {
            let dropped = self.net.take_dropped();
            self.events
                .extend(dropped.into_iter().map(SimEvent::Dropped));
        }
    }

    fn do_crash(&mut self, id: NodeId) {
        let Some(i) = self.index(id) else { return };
        if !self.nodes[i].is_up() {
            return;
        }
        self.nodes[i].crash();
        self.after_crash(id);
    }

    /// What a crash does around the node: messages to it die, clients'
    /// connections to it break.
    fn after_crash(&mut self, id: NodeId) {
        self.net.drop_to(id, self.now, &mut self.net_rng);
        if self.index(id).is_some_and(|i| self.nodes[i].is_retired()) {
            self.net.forget_held(id);
        }
        // The clients' connections to it break.
        let backoff = self.cfg.clients.backoff;
        for c in &mut self.clients {
            if matches!(c.phase, Phase::Sent { node, .. } if node == id) {
                c.phase = Phase::Retry(self.now + backoff, None);
                c.leader_hint = None;
            }
        }
    }

    fn do_restart(&mut self, id: NodeId) {
        let Some(i) = self.index(id) else { return };
        if self.nodes[i].is_retired() {
            return;
        }
        if self.nodes[i].is_up() {
            // A disk fault at its next write that never came: called off.
            self.nodes[i].disarm();
            return;
        }
        let config = self.cfg.node_config(id, self.nodes[i].restarts() + 1);
        if let Err(e) = self.nodes[i].restart(config) {
            self.checker.driver(id, format!("restart failed: {e}"));
            return;
        }
        self.nodes[i].next_tick = self.now + self.net_rng.range(1, self.cfg.tick_interval + 1);
        self.drive(i);
        // What its peers' transports held for it arrives on the new
        // connections: messages meant for its previous incarnation.
        self.net.release_held(id, self.now, &mut self.net_rng);
    }

    /// Virtual time between two ticks of node `id`: the configured
    /// interval, off by up to [`SimConfig::clock_drift_percent`] either
    /// way, fixed per node (its clock runs fast or slow for the whole run).
    fn tick_period(&self, id: NodeId) -> Time {
        let base = self.cfg.tick_interval;
        let drift = self.cfg.clock_drift_percent.min(90);
        if drift == 0 {
            return base;
        }
        // A hash of (seed, id), not a draw: schedules without drift stay
        // those of a run without this knob.
        let mut h = Rng::new(self.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let percent = 100 - drift + h.range(0, 2 * drift + 1);
        (base * percent / 100).max(1)
    }

    /// Wakes node `i` from a pause: its overdue timer fires once, then it
    /// reads what queued for it, in arrival order.
    fn resume(&mut self, i: usize) {
        let backlog = self.nodes[i].resume();
        let id = self.nodes[i].id();
        if let Some(r) = self.nodes[i].replica_mut() {
            r.tick();
        }
        self.nodes[i].next_tick = self.now + self.tick_period(id);
        self.drive(i);
        for d in backlog {
            match d {
                Deferred::Message(msg) => {
                    if let Some(r) = self.nodes[i].replica_mut() {
                        self.net.stats.delivered += 1;
                        self.trace.mix(msg.from ^ (msg.to << 8) ^ (msg.term << 16));
                        let _ = r.step(msg);
                    }
                }
                Deferred::Write { ctx, cmd } => {
                    // Refused by the woken node: never in its log.
                    if self.nodes[i].propose(ctx, cmd).is_err() {
                        let lost = Reply::WriteLost {
                            ctx,
                            not_applied: true,
                        };
                        self.replies.push((id, lost));
                    }
                }
                Deferred::Read {
                    ctx,
                    key,
                    known_commit,
                } => {
                    if self.nodes[i].read(ctx, &key, known_commit).is_err() {
                        self.replies.push((id, Reply::ReadFailed { ctx }));
                    }
                }
            }
            self.drive(i);
            self.dispatch_replies();
        }
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        let i = (id as usize).checked_sub(1)?;
        (i < self.nodes.len()).then_some(i)
    }

    // ----- running -----

    fn next_event_time(&self) -> Option<Time> {
        let ticks = self
            .nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.paused_until().unwrap_or(n.next_tick));
        let clients = self.clients.iter().filter_map(Client::wake_at);
        ticks
            .chain(clients)
            .chain(self.net.next_delivery())
            .chain(self.nemesis.next_at(&self.cfg.nemesis))
            .min()
    }

    /// Advances to the next event time and handles everything due then:
    /// faults, ticks, message deliveries, client actions. Invariants are
    /// checked at the end of the step.
    pub fn step(&mut self) -> StepReport {
        self.events.clear();
        let next = self
            .next_event_time()
            .unwrap_or(self.now + self.cfg.tick_interval);
        self.now = next.max(self.now);
        let now = self.now;
        self.steps += 1;
        self.checker.set_now(now);
        let before = self.checker.violations().len();

        // Faults.
        if self
            .nemesis
            .next_at(&self.cfg.nemesis)
            .is_some_and(|t| t <= now)
        {
            let briefs = self.briefs();
            let churn = if self.cfg.nemesis.churn.weight > 0 {
                self.churn_view()
            } else {
                None
            };
            let actions = self.nemesis.due(
                &self.cfg.nemesis,
                now,
                &briefs,
                churn.as_ref(),
                &mut self.nemesis_rng,
            );
            for a in actions {
                self.apply_fault(a);
            }
        }
        self.maybe_calm();

        // Paused nodes whose pause is over.
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused_until().is_some_and(|t| t <= now) {
                self.resume(i);
            }
        }

        // Ticks.
        for i in 0..self.nodes.len() {
            if self.nodes[i].next_tick > now || self.nodes[i].paused_until().is_some() {
                continue;
            }
            let Some(r) = self.nodes[i].replica_mut() else {
                continue;
            };
            r.tick();
            let period = self.tick_period(self.nodes[i].id());
            self.nodes[i].next_tick += period;
            self.drive(i);
        }
        self.dispatch_replies();

        // Deliveries.
        let mut delivered = 0;
        while let Some(m) = self.net.pop_due(now) {
            delivered += 1;
            self.deliver(m);
            self.dispatch_replies();
        }

        // Clients.
        for ci in 0..self.clients.len() {
            if self.clients[ci].wake_at().is_some_and(|t| t <= now) {
                self.client_wake(ci);
                self.dispatch_replies();
            }
        }

        self.collect_drops();
        self.checker.after_step(&self.nodes);
        if self.steps.is_multiple_of(32) {
            self.checker.check_logs(&self.nodes);
            self.checker.forget_settled(&self.nodes);
            self.check_history();
        }
        StepReport {
            time: now,
            delivered,
            new_violations: self.checker.violations().len() - before,
        }
    }

    /// Steps until virtual time reaches `t` (or passes it).
    pub fn run_until(&mut self, t: Time) {
        while self.now < t {
            self.step();
        }
    }

    /// Whether every client has finished its operations.
    pub fn clients_done(&self) -> bool {
        self.clients.iter().all(|c| c.phase == Phase::Done)
    }

    /// Runs until the clients are done (or `max_time`, or a violation),
    /// repairs every fault, lets the cluster settle, checks the logs and
    /// the history's linearizability, and reports.
    pub fn run_to_end(&mut self) -> RunReport {
        while !self.clients_done()
            && self.now < self.cfg.max_time
            && self.checker.violations().is_empty()
        {
            self.step();
        }
        let finished = self.clients_done();
        if self.checker.violations().is_empty() {
            // Repair everything and give the cluster time to bring every
            // node up to date (a lost snapshot is only resent after a while).
            self.repair_all();
            let election = self.cfg.raft.election_tick * self.cfg.tick_interval;
            let settle = self.now + 40 * election;
            let min = self.now + 3 * election;
            while self.checker.violations().is_empty()
                && self.now < settle
                && (self.now < min || !self.caught_up())
            {
                self.step();
            }
        }
        self.checker.check_logs(&self.nodes);
        let already = self.lin.verdict().is_err();
        let linearizability = self.lin.finish(&self.history);
        let linearizability = self.explained(linearizability);
        if let (false, Err(e @ LinearizabilityError::NotLinearizable { .. })) =
            (already, &linearizability)
        {
            self.checker.report(Violation::Linearizability {
                detail: e.to_string(),
            });
        }
        self.report(finished, linearizability)
    }

    /// Checks the new part of the history for linearizability and, in a
    /// run that forgets, drops what the check has read, but for the
    /// operations of the last [`HISTORY_KEPT_TIME`] (the dashboard draws
    /// them), and the fault log but for its newest [`FAULTS_KEPT`].
    fn check_history(&mut self) {
        let before = self.lin.verdict().is_ok();
        self.lin.advance(&self.history);
        if before {
            if let Err(e @ LinearizabilityError::NotLinearizable { .. }) = self.linearizability() {
                self.checker.report(Violation::Linearizability {
                    detail: e.to_string(),
                });
            }
        }
        // An attempt sent to a process that has died since (stopped, or
        // restarted as a new one) gets no answer: its request died with it.
        // (Checked between steps, when no answer of its is still queued.)
        let nodes = &self.nodes;
        self.attempts.retain(|_, &mut (_, _, node, restarts)| {
            let i = node as usize - 1;
            nodes
                .get(i)
                .is_some_and(|n| n.is_up() && n.restarts() == restarts)
        });
        if !self.forgets_settled() {
            return;
        }
        let recent = self.now.saturating_sub(HISTORY_KEPT_TIME);
        let keep_from = self
            .history
            .ops()
            .iter()
            .find(|o| o.id >= self.lin.read_to() || o.completed_at.is_none_or(|t| t >= recent))
            .map_or(self.lin.read_to(), |o| o.id);
        let hand = self.hand_client_id();
        if let Some(op) = self
            .history
            .ops()
            .iter()
            .rev()
            .find(|o| Some(o.client) == hand && o.id < keep_from)
        {
            // Its answer stays on the dashboard until the next one.
            if self
                .history
                .ops_from(op.id + 1)
                .all(|o| Some(o.client) != hand)
            {
                self.hand_last = Some(op.clone());
            }
        }
        self.history.forget_before(keep_from);
        if self.fault_log.len() >= 2 * FAULTS_KEPT {
            let n = self.fault_log.len() - FAULTS_KEPT;
            self.fault_log.drain(..n);
        }
    }

    /// Whether the action undoes a fault (rather than injecting one).
    fn is_repair(&self, a: &FaultAction) -> bool {
        let base = &self.cfg.network;
        match a {
            FaultAction::Restart(_) | FaultAction::Heal => true,
            FaultAction::SetLoss {
                drop_rate,
                duplicate_rate,
            } => *drop_rate <= base.drop_rate && *duplicate_rate <= base.duplicate_rate,
            FaultAction::SetLatency(lo, hi) => (*lo, *hi) == base.latency,
            _ => false,
        }
    }

    /// The nodes of the configuration in force (voters and learners) that
    /// have a slot and were not stopped for good.
    fn member_nodes(&self) -> Vec<&SimNode> {
        let m = self.membership();
        self.nodes
            .iter()
            .filter(|n| !n.is_retired() && m.contains(n.id()))
            .collect()
    }

    /// Whether every member runs and has applied as far as the others.
    fn caught_up(&self) -> bool {
        let applied = |n: &SimNode| n.is_up().then(|| n.kv().applied_index());
        let members = self.member_nodes();
        let first = members.first().and_then(|n| applied(n));
        first.is_some() && members.iter().all(|n| applied(n) == first)
    }

    fn report(
        &self,
        finished: bool,
        linearizability: Result<CheckStats, LinearizabilityError>,
    ) -> RunReport {
        let ops = self.history.ops();
        let is_write = |o: &&super::history::Operation| o.op.is_write();
        let ok = |o: &&super::history::Operation| matches!(o.outcome, Outcome::Ok(_));
        let members = self.member_nodes();
        let kv0 = members.first().map(|n| n.kv());
        let converged = members.iter().all(|n| Some(n.kv()) == kv0);
        let conf = |ok: bool| self.conf_log.iter().filter(move |c| c.result.is_ok() == ok);
        let faults = self
            .fault_log
            .iter()
            .filter(|(_, a)| !self.is_repair(a))
            .count();
        RunReport {
            seed: self.cfg.seed,
            end_time: self.now,
            steps: self.steps,
            finished,
            ops: self.history.len(),
            ops_ok: ops.iter().filter(ok).count(),
            writes: ops.iter().filter(is_write).count(),
            writes_ok: ops.iter().filter(is_write).filter(ok).count(),
            writes_unknown: ops
                .iter()
                .filter(is_write)
                .filter(|o| o.outcome == Outcome::Unknown)
                .count(),
            conditional: {
                let answered = |refused: bool| {
                    ops.iter()
                        .filter(|o| {
                            matches!(
                                o.op,
                                ClientOp::Write(Op::PutIf { .. } | Op::DeleteIf { .. })
                            )
                        })
                        .filter(|o| match &o.outcome {
                            Outcome::Ok(OpOutput::Write(OpResult::ConditionFailed { .. })) => {
                                refused
                            }
                            Outcome::Ok(OpOutput::Write(
                                OpResult::Put { .. } | OpResult::Delete { .. },
                            )) => !refused,
                            _ => false,
                        })
                        .count()
                };
                (answered(false), answered(true))
            },
            prefix_deletes: ops
                .iter()
                .filter(|o| {
                    matches!(
                        o.outcome,
                        Outcome::Ok(OpOutput::Write(OpResult::DeletedPrefix { .. }))
                    )
                })
                .count(),
            violations: self.checker.violations().to_vec(),
            linearizability,
            converged,
            faults,
            crashes: self
                .fault_log
                .iter()
                .filter(|(_, a)| matches!(a, FaultAction::Crash(_)))
                .count(),
            pauses: self
                .fault_log
                .iter()
                .filter(|(_, a)| matches!(a, FaultAction::Pause { .. }))
                .count(),
            partitions: self
                .fault_log
                .iter()
                .filter(|(_, a)| matches!(a, FaultAction::Cut(_) | FaultAction::Partition(_)))
                .count(),
            network: self.net.stats,
            leaders: self.checker.leaders_seen(),
            snapshots_installed: self
                .nodes
                .iter()
                .map(|n| n.stats().snapshots_installed)
                .sum(),
            snapshots_held: self.nodes.iter().map(|n| n.stats().snapshots_held).sum(),
            conf_changes: conf(true)
                .filter(|c| {
                    matches!(
                        c.action,
                        FaultAction::ConfChange(_) | FaultAction::Rejoin { .. }
                    )
                })
                .count(),
            conf_refused: conf(false).count(),
            nodes_added: self.nodes.len() - self.cfg.nodes,
            nodes_retired: self.nodes.iter().filter(|n| n.is_retired()).count(),
            lost_logs: self.nodes.iter().map(|n| n.stats().lost_logs).sum(),
            torn_writes: self.nodes.iter().map(|n| n.stats().torn_writes).sum(),
            snapshot_file_crashes: self
                .nodes
                .iter()
                .map(|n| {
                    let s = n.stats();
                    s.received_snapshot_file_crashes + s.own_snapshot_file_crashes
                })
                .sum(),
            disk_halts: self.nodes.iter().map(|n| n.stats().disk_halts).sum(),
            trace_hash: self.trace.0,
        }
    }

    /// Once most operations are issued, stop the nemesis and repair
    /// everything so the run can finish.
    fn maybe_calm(&mut self) {
        let Some(total) = self.cfg.clients.total_ops else {
            return;
        };
        if self.calm
            || !self.cfg.nemesis.enabled
            || (self.issued as f64) < total as f64 * self.cfg.nemesis.calm_after
            || self.nemesis.injected() < self.cfg.nemesis.min_faults
        {
            return;
        }
        self.calm = true;
        self.repair_all();
    }

    /// Stops the nemesis, heals the network, restores its settings,
    /// restarts every crashed node and calls off every crash at a next
    /// write that has not struck yet (its scheduled repair is forgotten
    /// with the nemesis's others, so nothing else would).
    pub fn repair_all(&mut self) {
        self.cfg.nemesis.enabled = false;
        self.nemesis.clear();
        if self.net.cuts().next().is_some() {
            self.heal();
        }
        let base = self.cfg.network.clone();
        if self.net.config != base {
            self.apply_fault(FaultAction::SetLoss {
                drop_rate: base.drop_rate,
                duplicate_rate: base.duplicate_rate,
            });
            self.apply_fault(FaultAction::SetLatency(base.latency.0, base.latency.1));
        }
        for id in 1..=self.nodes.len() as u64 {
            let n = &self.nodes[id as usize - 1];
            // A restart of a running node disarms its disk fault.
            if (!n.is_up() && !n.is_retired()) || n.disk_fault_armed() {
                self.restart(id);
            }
        }
    }

    fn deliver(&mut self, m: InFlight) {
        let Some(i) = self.index(m.msg.to) else {
            return;
        };
        if !self.nodes[i].is_up() {
            self.net.lost_at_down_node(&m, self.now);
            return;
        }
        if self.nodes[i].paused_until().is_some() {
            self.nodes[i].defer(Deferred::Message(m.msg));
            return;
        }
        let msg = m.msg;
        let Some(replica) = self.nodes[i].replica_mut() else {
            return;
        };
        self.net.stats.delivered += 1;
        let kind = msg.body.kind();
        if matches!(msg.body, MessageBody::InstallSnapshot { .. }) {
            self.net.stats.snapshots_delivered += 1;
        }
        self.trace.mix(self.now);
        self.trace.mix(msg.from ^ (msg.to << 8) ^ (msg.term << 16));
        self.trace.mix_str(kind);
        if self.record_events {
            self.events.push(SimEvent::Delivered {
                from: msg.from,
                to: msg.to,
                kind,
                term: msg.term,
            });
        }
        // A rejected message changes nothing; the node counts it.
        let _ = replica.step(msg);
        self.drive(i);
    }

    fn drive(&mut self, i: usize) {
        let mut env = Env {
            now: self.now,
            net: &mut self.net,
            rng: &mut self.net_rng,
            checker: &mut self.checker,
            replies: &mut self.replies,
            trace: &mut self.trace,
        };
        let stopped = self.nodes[i].drive(&mut env);
        // A commit index reported for the first time, against the disks
        // as they are now.
        self.checker.check_commit_claims(&self.nodes);
        if let Some(stopped) = stopped {
            if stopped == Stopped::Halted {
                // A halted node answered its waiting clients first (they
                // retry at once, with the same sequence numbers).
                self.dispatch_replies();
            }
            let id = self.nodes[i].id();
            self.after_crash(id);
        }
    }

    // ----- clients -----

    fn client_wake(&mut self, ci: usize) {
        match self.clients[ci].phase.clone() {
            Phase::Idle(_) => self.start_op(ci),
            Phase::Sent { .. } => {
                // Silence: try another node.
                self.clients[ci].leader_hint = None;
                self.attempt(ci, None);
            }
            Phase::Retry(_, node) => self.attempt(ci, node),
            Phase::Done => {}
        }
    }

    fn start_op(&mut self, ci: usize) {
        if self
            .cfg
            .clients
            .total_ops
            .is_some_and(|total| self.issued >= total)
        {
            self.clients[ci].phase = Phase::Done;
            return;
        }
        let s = self.clients[ci].session;
        let session = &mut self.sessions[s];
        let (op, client_id, seq) = if session.needs_registration() {
            if session.registering {
                // Another lane registers the session: wait for it.
                let backoff = self.cfg.clients.backoff;
                self.clients[ci].phase = Phase::Idle(self.now + backoff);
                return;
            }
            // Registration first; it is not one of the run's operations.
            session.registering = true;
            (ClientOp::Write(Op::Register), 0, 0)
        } else {
            self.issued += 1;
            let op = self.clients[ci].next_op(&self.cfg.clients, &mut self.client_rng);
            let (client_id, seq) = if op.is_read() {
                (0, 0)
            } else {
                self.sessions[s].take_seq()
            };
            (op, client_id, seq)
        };
        let client = &mut self.clients[ci];
        let op_id = self
            .history
            .invoke_in_session(client.id, op.clone(), client_id, seq, self.now);
        self.trace.mix(op_id as u64 ^ (client.id << 32));
        self.trace.mix_str(&op.to_string());
        if self.record_events {
            self.events.push(SimEvent::Invoked(op_id));
        }
        client.current = Some(Current::new(
            op_id,
            op,
            client_id,
            seq,
            self.now + self.cfg.clients.op_timeout,
        ));
        self.attempt(ci, None);
    }

    fn attempt(&mut self, ci: usize, node: Option<NodeId>) {
        let now = self.now;
        let backoff = self.cfg.clients.backoff;
        let Some(cur) = self.clients[ci].current.clone() else {
            self.clients[ci].rest(now);
            return;
        };
        if now >= cur.deadline {
            self.abandon(ci);
            return;
        }
        // A write without a session that may be in the log is not sent
        // again: a second copy would be applied a second time.
        if cur.maybe_in_log && cur.client_id == 0 && cur.op.is_write() {
            self.abandon(ci);
            return;
        }
        // Only to nodes that exist and were not stopped for good (a removed
        // node still running answers "not the leader").
        let live = |t: NodeId| self.index(t).is_some_and(|i| !self.nodes[i].is_retired());
        let target = match node.or(self.clients[ci].leader_hint).filter(|&t| live(t)) {
            Some(t) => t,
            None => {
                let ids: Vec<NodeId> = (1..=self.nodes.len() as NodeId)
                    .filter(|&t| live(t))
                    .collect();
                let at = self.client_rng.range(0, ids.len() as u64) as usize;
                ids.get(at).copied().unwrap_or(1)
            }
        };
        if let Some(c) = self.clients[ci].current.as_mut() {
            c.attempts += 1;
        }
        let i = target as usize - 1;
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let result = match &cur.op {
            ClientOp::Write(op) => self.nodes[i].propose(
                ctx,
                Command {
                    client_id: cur.client_id,
                    seq: cur.seq,
                    op: op.clone(),
                },
            ),
            ClientOp::Get { key } => {
                let known_commit = self.checker.known_commit();
                self.nodes[i].read(ctx, key, known_commit)
            }
        };
        if result.is_ok() {
            let restarts = self.nodes[i].restarts();
            self.attempts.insert(ctx, (ci, cur.op_id, target, restarts));
        }
        let up = self.nodes[i].is_up();
        let client = &mut self.clients[ci];
        match result {
            Ok(()) => {
                if let Some(c) = client.current.as_mut() {
                    c.maybe_in_log = !c.op.is_read();
                }
                client.phase = Phase::Sent {
                    node: target,
                    ctx,
                    timeout: now + self.cfg.clients.attempt_timeout,
                };
                self.drive(i);
            }
            // "Not the leader; try N": follow the redirect at once.
            Err(NotAccepted::NotLeader { leader: Some(l) }) if up && l != target => {
                client.leader_hint = Some(l);
                client.phase = Phase::Retry(now + 1, Some(l));
            }
            Err(_) => {
                client.leader_hint = None;
                client.phase = Phase::Retry(now + backoff, None);
            }
        }
    }

    fn abandon(&mut self, ci: usize) {
        let think = self.think_of(ci);
        let client = &mut self.clients[ci];
        if let Some(cur) = client.current.take() {
            if cur.op.is_register() {
                self.sessions[client.session].registering = false;
            }
            self.history.give_up(cur.op_id, self.now);
            self.trace.mix(cur.op_id as u64 ^ 0xAB);
            if self.record_events {
                self.events.push(SimEvent::Abandoned(cur.op_id));
            }
        }
        client.leader_hint = None;
        client.rest(self.now + think);
        self.start_queued(ci);
    }

    /// The pause before client `ci`'s next operation (the hand client has
    /// none: it draws nothing).
    fn think_of(&mut self, ci: usize) -> Time {
        if self.clients[ci].by_hand {
            0
        } else {
            self.think()
        }
    }

    fn think(&mut self) -> Time {
        let (lo, hi) = self.cfg.clients.think;
        self.client_rng.range(lo, hi.max(lo) + 1)
    }

    /// Client `ci`'s operation answered by `node`; `index` is the log index
    /// the answer told ([`super::Operation::index`]).
    fn finish(&mut self, ci: usize, output: OpOutput, index: Option<Index>, node: NodeId) {
        let think = self.think_of(ci);
        let client = &mut self.clients[ci];
        let Some(cur) = client.current.take() else {
            return;
        };
        let seen = match (&cur.op, &output) {
            (ClientOp::Get { .. }, OpOutput::Value(v)) => Some(v.clone()),
            (ClientOp::Write(Op::Put { value, .. }), _) => Some(Some(value.clone())),
            (ClientOp::Write(Op::Delete { .. }), _) => Some(None),
            (ClientOp::Write(Op::Cas { value, .. }), OpOutput::Write(r)) => match r {
                OpResult::Cas { swapped: true, .. } => Some(value.clone()),
                OpResult::Cas { prev, .. } => Some(prev.clone()),
                _ => None,
            },
            (ClientOp::Write(Op::PutIf { value, .. }), OpOutput::Write(OpResult::Put { .. })) => {
                Some(Some(value.clone()))
            }
            (ClientOp::Write(Op::DeleteIf { .. }), OpOutput::Write(OpResult::Delete { .. })) => {
                Some(None)
            }
            _ => None,
        };
        if let Some(v) = seen {
            client.saw(cur.op.key(), v);
        }
        // The key's modification index, for later conditional writes.
        let mod_index = match (&cur.op, &output) {
            (ClientOp::Get { .. }, OpOutput::Value(Some(_))) => index,
            (
                ClientOp::Write(Op::Put { .. } | Op::PutIf { .. }),
                OpOutput::Write(OpResult::Put { .. }),
            ) => index,
            (
                ClientOp::Write(Op::Cas { value: Some(_), .. }),
                OpOutput::Write(OpResult::Cas { swapped: true, .. }),
            ) => index,
            (_, OpOutput::Write(OpResult::ConditionFailed { mod_index })) => *mod_index,
            _ => None,
        };
        if let Some(i) = mod_index {
            client.saw_index(cur.op.key(), i);
        }
        let session = &mut self.sessions[client.session];
        match &output {
            OpOutput::Write(OpResult::Registered { client_id }) => session.registered(*client_id),
            OpOutput::Write(OpResult::SessionExpired) => session.expired(cur.client_id),
            _ if cur.op.is_register() => session.registering = false,
            _ => {}
        }
        self.trace.mix(cur.op_id as u64 ^ (node << 40));
        self.trace.mix_str(&output.to_string());
        self.history
            .complete_with_index(cur.op_id, output, index, Some(node), self.now);
        if self.record_events {
            self.events.push(SimEvent::Completed(cur.op_id));
        }
        client.leader_hint = Some(node);
        client.rest(self.now + think);
        self.start_queued(ci);
    }

    /// The hand client's operation that waited for its registration: sent
    /// once the session has an id, abandoned if the registration failed.
    fn start_queued(&mut self, ci: usize) {
        let Some((op_id, op, via, deadline)) = self.clients[ci].queued.take() else {
            return;
        };
        let session = &mut self.sessions[self.clients[ci].session];
        if session.needs_registration() {
            self.history.give_up(op_id, self.now);
            self.trace.mix(op_id as u64 ^ 0xAB);
            if self.record_events {
                self.events.push(SimEvent::Abandoned(op_id));
            }
            return;
        }
        let (client_id, seq) = session.take_seq();
        self.history.set_session(op_id, client_id, seq);
        let client = &mut self.clients[ci];
        client.current = Some(Current::new(op_id, op, client_id, seq, deadline));
        self.attempt(ci, Some(via));
    }

    fn dispatch_replies(&mut self) {
        while !self.replies.is_empty() {
            for (node, reply) in std::mem::take(&mut self.replies) {
                self.on_reply(node, reply);
            }
        }
    }

    fn on_reply(&mut self, node: NodeId, reply: Reply) {
        match reply {
            Reply::Write {
                ctx,
                result,
                applied_at,
            } => {
                let Some((ci, op_id, ..)) = self.attempts.remove(&ctx) else {
                    return;
                };
                let current = self.clients[ci].current.as_ref();
                if current.is_some_and(|cur| cur.op_id == op_id) {
                    self.finish(ci, OpOutput::Write(result), Some(applied_at), node);
                }
            }
            Reply::WriteLost { ctx, not_applied } => {
                let Some((ci, op_id, ..)) = self.attempts.remove(&ctx) else {
                    return;
                };
                let c = &mut self.clients[ci];
                let Some(cur) = c.current.as_mut().filter(|cur| cur.op_id == op_id) else {
                    return;
                };
                if matches!(c.phase, Phase::Sent { ctx: x, .. } if x == ctx) {
                    // Proved unapplied: even without a session it may go again.
                    if not_applied {
                        cur.maybe_in_log = false;
                    }
                    c.leader_hint = None;
                    c.phase = Phase::Retry(self.now + 1, None);
                }
            }
            Reply::Read {
                ctx,
                value,
                mod_index,
            } => {
                let Some((ci, op_id, ..)) = self.attempts.remove(&ctx) else {
                    return;
                };
                let current = self.clients[ci].current.as_ref();
                if current.is_some_and(|cur| cur.op_id == op_id) {
                    self.finish(ci, OpOutput::Value(value), mod_index, node);
                }
            }
            Reply::ReadFailed { ctx } => {
                let Some((ci, ..)) = self.attempts.remove(&ctx) else {
                    return;
                };
                let c = &mut self.clients[ci];
                if matches!(c.phase, Phase::Sent { ctx: x, .. } if x == ctx) {
                    c.leader_hint = None;
                    c.phase = Phase::Retry(self.now + 1, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::network::DropCause;
    use crate::types::Role;

    /// A quiet 5-node cluster (no simulated clients) with a leader.
    /// `guarded`: PreVote and CheckQuorum on.
    fn quiet(seed: u64, guarded: bool) -> Cluster {
        let mut cfg = SimConfig::new(seed, 5);
        cfg.raft.pre_vote = guarded;
        cfg.raft.check_quorum = guarded;
        cfg.clients.count = 0;
        let mut c = Cluster::new(cfg).unwrap();
        c.run_until(3_000);
        assert!(c.leader().is_some(), "a leader by time 3000");
        c
    }

    fn a_follower(c: &Cluster) -> NodeId {
        let leader = c.leader().unwrap();
        c.nodes()
            .iter()
            .map(SimNode::id)
            .find(|&id| id != leader)
            .unwrap()
    }

    /// Without PreVote and CheckQuorum nothing shields a healthy leader: the
    /// forced candidate's higher term deposes it, and with an up-to-date
    /// log (no client writes here) the candidate wins.
    #[test]
    fn forced_election_timeout_makes_that_follower_leader() {
        for seed in [1, 2, 3] {
            let mut c = quiet(seed, false);
            let old_term = c.node(c.leader().unwrap()).unwrap().term().unwrap();
            let f = a_follower(&c);
            c.election_timeout(f);
            c.run_until(c.now() + 1_000);
            assert_eq!(c.leader(), Some(f), "seed {seed}");
            assert!(c.node(f).unwrap().term().unwrap() > old_term);
            assert!(c.violations().is_empty(), "{:?}", c.violations());
            assert!(c
                .fault_log()
                .iter()
                .any(|(_, a)| *a == FaultAction::ElectionTimeout(f)));
        }
    }

    /// With PreVote and CheckQuorum the voters still hear from the leader,
    /// so they ignore the pre-vote (leader lease) and nothing changes.
    #[test]
    fn forced_election_timeout_is_ignored_under_the_leader_lease() {
        let mut c = quiet(4, true);
        let leader = c.leader().unwrap();
        let term = c.node(leader).unwrap().term().unwrap();
        c.election_timeout(a_follower(&c));
        c.run_until(c.now() + 1_000);
        assert_eq!(c.leader(), Some(leader));
        assert_eq!(c.node(leader).unwrap().term(), Some(term));
    }

    #[test]
    fn status_reports_the_election_timer() {
        let c = quiet(5, true);
        let f = c.node(a_follower(&c)).unwrap().status().unwrap();
        let election_tick = c.config().raft.election_tick;
        assert!((election_tick..2 * election_tick).contains(&f.election_timeout));
        assert!(f.election_elapsed < f.election_timeout);
        let l = c.node(c.leader().unwrap()).unwrap().status().unwrap();
        assert_eq!(l.election_timeout, election_tick);
    }

    fn run_until_answered(c: &mut Cluster, op_id: usize) -> OpOutput {
        let deadline = c.now() + 2_000;
        while c.now() < deadline {
            if let Outcome::Ok(out) = &c.history().ops()[op_id].outcome {
                return out.clone();
            }
            c.step();
        }
        panic!(
            "operation {op_id} not answered: {:?}",
            c.history().ops()[op_id]
        );
    }

    #[test]
    fn hand_put_through_a_follower_is_applied_and_in_the_history() {
        // The simulated clients keep writing meanwhile.
        let mut c = Cluster::new(SimConfig::new(6, 3)).unwrap();
        c.run_until(3_000);
        let leader = c.leader().unwrap();
        let f = a_follower(&c);
        let put = ClientOp::Write(Op::Put {
            key: "hand".into(),
            value: "made".into(),
        });
        let id = c.submit(f, put.clone()).unwrap();
        assert!(c.submit(f, put).is_err(), "one hand operation at a time");
        let out = run_until_answered(&mut c, id);
        assert_eq!(out, OpOutput::Write(OpResult::Put { prev: None }));
        let op = &c.history().ops()[id];
        assert_eq!(Some(op.client), c.hand_client_id());
        assert_eq!(op.served_by, Some(leader), "the follower redirected it");
        c.run_until(c.now() + 500);
        for n in c.nodes() {
            assert_eq!(n.kv().get("hand"), Some("made"), "node {}", n.id());
        }

        // A read through a follower (ReadIndex) sees it.
        let get = ClientOp::Get { key: "hand".into() };
        let id = c.submit(f, get).unwrap();
        let out = run_until_answered(&mut c, id);
        assert_eq!(out, OpOutput::Value(Some("made".into())));
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        check_linearizability(c.history().ops()).unwrap();
        assert!(c.submit(9, ClientOp::Get { key: "x".into() }).is_err());
    }

    /// A leader frozen for longer than an election timeout wakes up in a
    /// cluster with a newer leader: what queued for it while it slept (its
    /// peers' messages and a client's write) is handled in arrival order,
    /// it steps down, and the write is answered once, by the new leader.
    #[test]
    fn a_paused_leader_wakes_to_a_newer_term() {
        let mut c = Cluster::new(SimConfig::new(11, 3)).unwrap();
        c.run_until(3_000);
        let old = c.leader().unwrap();
        let term = c.node(old).unwrap().term().unwrap();
        c.apply_fault(FaultAction::Pause {
            node: old,
            time: 2_000,
        });
        assert_eq!(c.node(old).unwrap().paused_until(), Some(c.now() + 2_000));
        let put = ClientOp::Write(Op::Put {
            key: "frozen".into(),
            value: "v".into(),
        });
        let id = c.submit(old, put).unwrap();
        c.run_until(c.now() + 1_500);
        let new = c.leader().unwrap();
        assert_ne!(new, old, "the others elected a leader while it slept");
        assert!(c.node(new).unwrap().term().unwrap() > term);
        assert_eq!(
            c.node(old).unwrap().role(),
            Some(Role::Leader),
            "still frozen in its old role"
        );
        let out = run_until_answered(&mut c, id);
        assert_eq!(out, OpOutput::Write(OpResult::Put { prev: None }));
        c.run_until(c.now() + 1_500);
        let woken = c.node(old).unwrap();
        assert_eq!(woken.paused_until(), None);
        assert_eq!(woken.role(), Some(Role::Follower));
        assert_eq!(woken.term(), c.node(new).unwrap().term());
        assert_eq!(woken.kv().get("frozen"), Some("v"));
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        check_linearizability(c.history().ops()).unwrap();
    }

    /// Drifting clocks tick at their own fixed rates, within the bound; no
    /// drift keeps every node on the configured interval.
    #[test]
    fn clocks_drift_within_their_bound() {
        let mut cfg = SimConfig::new(12, 5);
        let c = Cluster::new(cfg.clone()).unwrap();
        assert!((1..=5).all(|id| c.tick_period(id) == cfg.tick_interval));
        cfg.tick_interval = 100;
        cfg.clock_drift_percent = 30;
        let c = Cluster::new(cfg).unwrap();
        let periods: Vec<Time> = (1..=5).map(|id| c.tick_period(id)).collect();
        assert!(
            periods.iter().all(|p| (70..=130).contains(p)),
            "{periods:?}"
        );
        assert!(periods.windows(2).any(|w| w[0] != w[1]), "{periods:?}");
        assert_eq!(periods[0], c.tick_period(1), "fixed per node");
    }

    /// Randomized runs draw the time faults (pauses, drifting clocks) and
    /// deliver old messages to restarted nodes, and stay clean.
    #[test]
    fn randomized_runs_pause_drift_and_redeliver() {
        let (mut pauses, mut redelivered, mut drifting) = (0, 0, 0);
        for seed in 0..120 {
            let cfg = SimConfig::randomized(seed);
            drifting += usize::from(cfg.clock_drift_percent > 0);
            let report = Cluster::new(cfg).unwrap().run_to_end();
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {}",
                report.violations[0]
            );
            pauses += report.pauses;
            redelivered += report.network.redelivered_after_restart;
        }
        assert!(pauses >= 20, "{pauses} pauses");
        assert!(redelivered >= 20, "{redelivered} messages redelivered");
        assert!(drifting >= 40, "{drifting} runs with drifting clocks");
    }

    #[test]
    fn dropped_messages_are_reported_with_their_cause() {
        let mut c = quiet(7, true);
        c.record_events(true);
        let f = a_follower(&c);
        c.isolate(f);
        let mut causes = Vec::new();
        for _ in 0..200 {
            c.step();
            for e in c.last_events() {
                if let SimEvent::Dropped(d) = e {
                    assert!(d.from == f || d.to == f);
                    causes.push(d.cause);
                }
            }
        }
        assert!(causes.contains(&DropCause::Cut));
        c.heal();
        // Taken off by hand: gone, and reported where it was.
        let m = c
            .run_until_in_flight()
            .expect("a message in flight in a healthy cluster");
        c.drop_message(m);
        assert!(c.network().get(m).is_none());
        assert!(c.last_events().iter().any(|e| matches!(
            e,
            SimEvent::Dropped(d) if d.id == Some(m) && d.cause == DropCause::Removed
        )));
    }

    #[test]
    fn hand_actions_replay_identically() {
        let run = || {
            let mut c = Cluster::new(SimConfig::new(8, 5)).unwrap();
            c.run_until(2_000);
            c.election_timeout(2);
            c.run_until(2_500);
            let m = c.run_until_in_flight().unwrap();
            c.drop_message(m);
            let put = ClientOp::Write(Op::Put {
                key: "k0".into(),
                value: "by hand".into(),
            });
            c.submit(3, put).unwrap();
            c.run_until(5_000);
            assert!(c.violations().is_empty(), "{:?}", c.violations());
            c.trace_hash()
        };
        assert_eq!(run(), run());
    }

    /// A learner joins as a new, empty node, is promoted through a joint
    /// configuration, the leader removes itself and steps down, and the
    /// removed node is stopped for good; refusals are recorded.
    #[test]
    fn membership_changes_through_the_leader() {
        let mut c = quiet(9, true);
        let last_ok = |c: &Cluster| c.conf_log().last().unwrap().result.is_ok();
        let new = c.next_node_id();
        assert_eq!(new, 6);
        // A new node takes the next id, no other.
        c.change_membership(ConfChange::AddLearner {
            id: new + 1,
            address: "n7".into(),
            promote: false,
        });
        assert!(!last_ok(&c));
        assert_eq!(c.nodes().len(), 5);
        c.change_membership(ConfChange::AddLearner {
            id: new,
            address: format!("n{new}"),
            promote: false,
        });
        assert!(last_ok(&c), "{:?}", c.conf_log());
        assert_eq!(c.nodes().len(), 6);
        c.run_until(c.now() + 2_000);
        assert!(c.membership().is_learner(new));
        let leader_last = |c: &Cluster| c.node(c.leader().unwrap()).unwrap().status().unwrap();
        let joined = c.node(new).unwrap().status().unwrap();
        assert_eq!(joined.last_index, leader_last(&c).last_index, "caught up");

        c.change_membership(ConfChange::Promote { id: new });
        assert!(last_ok(&c));
        c.run_until(c.now() + 2_000);
        assert!(c.membership().voters.contains(&new));
        assert!(!c.membership().is_joint(), "the joint phase is over");

        // The leader removes itself: it steps down once C_new commits.
        let old = c.leader().unwrap();
        c.change_membership(ConfChange::Remove { id: old });
        assert!(last_ok(&c));
        c.run_until(c.now() + 3_000);
        let leader = c.leader().unwrap();
        assert_ne!(leader, old);
        assert!(!c.membership().contains(old));
        assert!(c.node(old).unwrap().is_up(), "a removed node keeps running");

        // A member cannot be stopped for good; a removed node can.
        c.retire(leader);
        assert!(!last_ok(&c));
        c.retire(old);
        assert!(last_ok(&c));
        assert!(c.node(old).unwrap().is_retired());
        c.restart(old);
        assert!(!c.node(old).unwrap().is_up(), "a retired node stays down");
        c.run_until(c.now() + 1_000);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert!(c
            .fault_log()
            .iter()
            .any(|(_, a)| *a == FaultAction::Retire(old)));
    }

    /// With the nemesis churning the membership, every node ever created
    /// is reached only through existing slots and the run is clean.
    #[test]
    fn churn_runs_clean_and_replays() {
        let run = |seed| {
            let mut c = Cluster::new(SimConfig::randomized_churn(seed)).unwrap();
            let r = c.run_to_end();
            assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
            assert!(r.finished && r.converged, "seed {seed}");
            (r.trace_hash, r.conf_changes, r.nodes_added)
        };
        let mut changed = 0;
        for seed in 0..4 {
            let a = run(seed);
            assert_eq!(a, run(seed), "seed {seed} replays identically");
            changed += a.1;
        }
        assert!(changed > 0);
    }

    /// A disk fault at a node's next write that has not struck when
    /// everything is repaired is called off: the node neither stays armed
    /// nor dies (or halts) at its first write after the repair.
    #[test]
    fn repair_all_disarms_the_disk_faults() {
        let faults: [fn(NodeId) -> FaultAction; 4] = [
            FaultAction::CrashAtWrite,
            FaultAction::TornWrite,
            FaultAction::CrashAfterSnapshotFile,
            |node| FaultAction::DiskError {
                node,
                kind: crate::sim::DiskErrorKind::Enospc,
            },
        ];
        for fault in faults {
            let mut c = quiet(10, true);
            let f = a_follower(&c);
            let fault = fault(f);
            // A quiet follower writes nothing (heartbeats only move the
            // commit index), so the fault stays pending.
            c.apply_fault(fault.clone());
            c.run_until(c.now() + 200);
            assert!(c.node(f).unwrap().is_up(), "{fault}");
            assert!(c.node(f).unwrap().disk_fault_armed(), "{fault}");
            c.repair_all();
            assert!(
                c.nodes().iter().all(|n| !n.disk_fault_armed()),
                "{fault}: a node is still armed after repair_all"
            );
            assert_eq!(
                c.fault_log().last(),
                Some(&(c.now(), FaultAction::Restart(f)))
            );
            // Its next write (a client's put) goes through.
            let put = ClientOp::Write(Op::Put {
                key: "after".into(),
                value: "repair".into(),
            });
            let id = c.submit(f, put).unwrap();
            run_until_answered(&mut c, id);
            c.run_until(c.now() + 500);
            let n = c.node(f).unwrap();
            assert!(n.is_up(), "{fault}: it died at its next write");
            assert_eq!((n.stats().crashes, n.stats().disk_halts), (0, 0));
            assert_eq!(n.kv().get("after"), Some("repair"));
            assert!(c.violations().is_empty(), "{:?}", c.violations());
        }
    }

    impl Cluster {
        /// Steps until a message is in flight; its id.
        fn run_until_in_flight(&mut self) -> Option<u64> {
            for _ in 0..1_000 {
                if let Some(m) = self.in_flight().next() {
                    return Some(m.id);
                }
                self.step();
            }
            None
        }
    }
}
