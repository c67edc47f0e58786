//! Raft's safety properties (paper figure 3), checked as a run goes.
//!
//! The node driver reports what each `Ready` does (a node became leader,
//! entries persisted, commit index moved, entries applied, snapshot
//! installed) and the cluster calls [`Checker::after_step`] after every
//! step. Everything ever seen is kept, so the properties are checked
//! across all time, not only between the current states:
//!
//! Nothing assumes a fixed node set: nodes join under new ids and leave
//! while the run goes, and every property holds across all nodes ever
//! created.
//!
//! * **Election Safety**: at most one leader per term.
//! * **Log Matching**: entries with the same index and term carry the same
//!   command and follow the same term. By induction this is exactly "if two
//!   logs hold an entry with the same index and term, they are identical up
//!   to it"; a registry of every `(index, term)` ever persisted checks it
//!   for all pairs of nodes and all times. [`Checker::check_logs`] also
//!   compares the in-memory logs pairwise directly.
//! * **Leader Completeness**: every committed entry is in the log of every
//!   leader of a later term. "Committed" is what any node's commit index
//!   says, and also the checker's own judgement, independent of the
//!   protocol's bookkeeping: an entry of term `t` is committed once a quorum
//!   of the configuration in force at its index (the newest configuration
//!   entry at or below it, thesis §4.1; while joint, a majority of both
//!   halves, §4.3) durably held it while in term `t` (each such node took it
//!   from the one leader of `t`, and votes only for logs that have it).
//! * **State Machine Safety**: no two nodes apply different entries at the
//!   same index.
//! * **No committed entry lost or changed**: the committed prefix (by any
//!   node's commit index or by a quorum as above) never changes, and no
//!   node truncates its log below its own commit index.
//! * **Membership** (the joint rule, thesis §4.3; can be switched off with
//!   [`Checker::set_membership_rules`] to see what the other properties
//!   catch alone): in every log, a configuration that changes the voters is
//!   entered through a joint one (`C_old` → `C_old,new` → `C_new`, nothing
//!   else after a joint one); a leader's log never holds more than one
//!   configuration entry above the committed prefix (one change at a time);
//!   and only a voter of its configuration becomes leader.

use std::collections::BTreeMap;

use super::node::{DurableStore, SimNode};
use super::Time;
use crate::raw_node::RawNode;
use crate::types::{Entry, Index, Membership, NodeId, Payload, SnapshotMeta, Term};

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two leaders in one term.
    ElectionSafety {
        /// The term.
        term: Term,
        /// The leader seen first.
        first: NodeId,
        /// The second one.
        second: NodeId,
    },
    /// Two entries with the same index and term differ, or follow
    /// different terms.
    LogMatching {
        /// The index.
        index: Index,
        /// The term.
        term: Term,
        /// The node whose log disagrees.
        node: NodeId,
        /// A node that held the other version.
        other: NodeId,
        /// What differs.
        detail: String,
    },
    /// A leader lacks a committed entry.
    LeaderCompleteness {
        /// The leader.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// The committed index it lacks (or holds differently).
        index: Index,
    },
    /// Two nodes applied different entries at one index.
    StateMachineSafety {
        /// The index.
        index: Index,
        /// The node that applied the second version.
        node: NodeId,
        /// The node that applied the first one.
        other: NodeId,
        /// The term of the first version.
        first_term: Term,
        /// The term of the second one.
        second_term: Term,
    },
    /// An index that was committed now holds a different entry (in a
    /// node's committed prefix, applied log or snapshot).
    CommittedEntryChanged {
        /// The index.
        index: Index,
        /// The node.
        node: NodeId,
        /// The term of the entry committed first.
        committed_term: Term,
        /// The term found now.
        found_term: Term,
    },
    /// A node removed an entry at or below its own commit index.
    CommittedEntryLost {
        /// The node.
        node: NodeId,
        /// The index overwritten.
        index: Index,
        /// The node's commit index.
        commit: Index,
    },
    /// A membership change broke the joint rule: the voters changed
    /// without a joint configuration, a joint one was followed by anything
    /// but its new voters, two configuration entries were in flight in a
    /// leader's log, or a non-voter became leader.
    Membership {
        /// The node whose log or election shows it.
        node: NodeId,
        /// The log index of the configuration entry concerned (for a
        /// leader: its last index).
        index: Index,
        /// Its term.
        term: Term,
        /// What is wrong.
        detail: String,
    },
    /// The node asked its driver for something impossible (a gap in the
    /// entries to persist, a snapshot that does not decode...).
    DriverContract {
        /// The node.
        node: NodeId,
        /// What went wrong.
        detail: String,
    },
    /// The client history is not linearizable.
    Linearizability {
        /// The checker's explanation.
        detail: String,
    },
}

/// The kind of a [`Violation`], for matching in tests and for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// [`Violation::ElectionSafety`].
    ElectionSafety,
    /// [`Violation::LogMatching`].
    LogMatching,
    /// [`Violation::LeaderCompleteness`].
    LeaderCompleteness,
    /// [`Violation::StateMachineSafety`].
    StateMachineSafety,
    /// [`Violation::CommittedEntryChanged`].
    CommittedEntryChanged,
    /// [`Violation::CommittedEntryLost`].
    CommittedEntryLost,
    /// [`Violation::Membership`].
    Membership,
    /// [`Violation::DriverContract`].
    DriverContract,
    /// [`Violation::Linearizability`].
    Linearizability,
}

impl Violation {
    /// Its kind.
    pub fn kind(&self) -> ViolationKind {
        match self {
            Violation::ElectionSafety { .. } => ViolationKind::ElectionSafety,
            Violation::LogMatching { .. } => ViolationKind::LogMatching,
            Violation::LeaderCompleteness { .. } => ViolationKind::LeaderCompleteness,
            Violation::StateMachineSafety { .. } => ViolationKind::StateMachineSafety,
            Violation::CommittedEntryChanged { .. } => ViolationKind::CommittedEntryChanged,
            Violation::CommittedEntryLost { .. } => ViolationKind::CommittedEntryLost,
            Violation::Membership { .. } => ViolationKind::Membership,
            Violation::DriverContract { .. } => ViolationKind::DriverContract,
            Violation::Linearizability { .. } => ViolationKind::Linearizability,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::ElectionSafety {
                term,
                first,
                second,
            } => write!(
                f,
                "election safety: nodes {first} and {second} were both leader in term {term}"
            ),
            Violation::LogMatching {
                index,
                term,
                node,
                other,
                detail,
            } => write!(
                f,
                "log matching: entry {index} of term {term} on node {node} differs from node \
                 {other}'s: {detail}"
            ),
            Violation::LeaderCompleteness {
                leader,
                term,
                index,
            } => write!(
                f,
                "leader completeness: leader {leader} of term {term} lacks committed entry {index}"
            ),
            Violation::StateMachineSafety {
                index,
                node,
                other,
                first_term,
                second_term,
            } => write!(
                f,
                "state machine safety: node {node} applied entry {index} of term {second_term}, \
                 node {other} applied a different one (term {first_term})"
            ),
            Violation::CommittedEntryChanged {
                index,
                node,
                committed_term,
                found_term,
            } => write!(
                f,
                "committed entry changed: index {index} was committed with term \
                 {committed_term}, node {node} has term {found_term} there"
            ),
            Violation::CommittedEntryLost {
                node,
                index,
                commit,
            } => write!(
                f,
                "committed entry lost: node {node} overwrote entry {index} at or below its \
                 commit index {commit}"
            ),
            Violation::Membership {
                node,
                index,
                term,
                detail,
            } => write!(
                f,
                "membership: node {node}, entry {index} of term {term}: {detail}"
            ),
            Violation::DriverContract { node, detail } => {
                write!(f, "node {node} broke the driver contract: {detail}")
            }
            Violation::Linearizability { detail } => write!(f, "linearizability: {detail}"),
        }
    }
}

/// A violation and when it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    /// Virtual time of the step that found it.
    pub at: Time,
    /// What is wrong.
    pub violation: Violation,
}

impl std::fmt::Display for Detected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t={}: {}", self.at, self.violation)
    }
}

/// The most violations kept (the first ones matter; the rest follow).
const MAX_KEPT: usize = 64;

/// An `(index, term)` seen persisted somewhere.
#[derive(Debug)]
struct Registered {
    /// The term of the entry before it.
    prev_term: Term,
    payload: Payload,
    /// The first node seen with it.
    node: NodeId,
    /// Where the configuration in force at it comes from: the
    /// `(index, term)` of its configuration entry or snapshot (a key of
    /// [`Checker::configs`]); `None` when unknown.
    config: Option<(Index, Term)>,
}

/// A committed entry and the term it was known committed in (an upper
/// bound: leaders of later terms must hold it).
#[derive(Debug)]
struct Committed {
    entry: Entry,
    term: Term,
}

/// The invariant checker's memory of the whole run.
#[derive(Debug)]
pub struct Checker {
    now: Time,
    /// Every term's leader.
    leaders: BTreeMap<Term, NodeId>,
    /// Every `(index, term)` ever persisted.
    registry: BTreeMap<(Index, Term), Registered>,
    /// Every configuration seen, by the `(index, term)` of its entry or of
    /// the snapshot that carried it.
    configs: BTreeMap<(Index, Term), Membership>,
    /// Per term `t`: how far each node durably held the log of `t`'s leader
    /// while in term `t` (its durable last entry of term `t`).
    acks: BTreeMap<Term, BTreeMap<NodeId, Index>>,
    /// Per term: the highest index a quorum acknowledged in it.
    quorum_commit: BTreeMap<Term, Index>,
    /// The committed prefix, as first recorded.
    committed: BTreeMap<Index, Committed>,
    /// What was applied at each index, and by whom first.
    applied: BTreeMap<Index, (Entry, NodeId)>,
    /// Leaders elected since the last step.
    new_leaders: Vec<(NodeId, Term)>,
    /// Indices newly recorded as committed, with the term they were known
    /// committed in.
    new_commits: Vec<(Index, Term)>,
    /// Whether the membership rules are checked.
    membership_rules: bool,
    violations: Vec<Detected>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            now: 0,
            leaders: BTreeMap::new(),
            registry: BTreeMap::new(),
            configs: BTreeMap::new(),
            acks: BTreeMap::new(),
            quorum_commit: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            new_leaders: Vec::new(),
            new_commits: Vec::new(),
            membership_rules: true,
            violations: Vec::new(),
        }
    }
}

impl Checker {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the membership rules ([`Violation::Membership`]) or not (on
    /// by default). Off, a test can show which of the other properties a
    /// broken membership change violates.
    pub fn set_membership_rules(&mut self, on: bool) {
        self.membership_rules = on;
    }

    /// The violations found so far (at most 64 are kept).
    pub fn violations(&self) -> &[Detected] {
        &self.violations
    }

    /// Every `(term, leader)` seen.
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// The highest index known committed.
    pub fn committed_index(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    pub(crate) fn set_now(&mut self, now: Time) {
        self.now = now;
    }

    pub(crate) fn report(&mut self, violation: Violation) {
        if self.violations.len() < MAX_KEPT {
            self.violations.push(Detected {
                at: self.now,
                violation,
            });
        }
    }

    pub(crate) fn driver(&mut self, node: NodeId, detail: String) {
        self.report(Violation::DriverContract { node, detail });
    }

    /// The founders' first entry: the configuration, at term 0, committed
    /// by construction (`PersistedState::bootstrap`).
    pub(crate) fn on_bootstrap(&mut self, founders: &Membership) {
        let entry = Entry {
            term: 0,
            index: 1,
            payload: Payload::Config(founders.clone()),
        };
        self.configs.insert((1, 0), founders.clone());
        self.registry.insert(
            (1, 0),
            Registered {
                prev_term: 0,
                payload: entry.payload.clone(),
                node: 0,
                config: Some((1, 0)),
            },
        );
        self.committed.insert(1, Committed { entry, term: 0 });
    }

    /// `node` became leader of `term`, with `membership` in force.
    pub(crate) fn on_leader(&mut self, node: NodeId, term: Term, membership: &Membership) {
        // Election Safety, across every node ever created (ids are never
        // reused).
        match self.leaders.get(&term) {
            Some(&first) if first != node => self.report(Violation::ElectionSafety {
                term,
                first,
                second: node,
            }),
            Some(_) => {}
            None => {
                self.leaders.insert(term, node);
            }
        }
        // Only a voter campaigns (thesis §4.2.2: learners and removed
        // members never become leader).
        if self.membership_rules && !membership.is_voter(node) {
            self.report(Violation::Membership {
                node,
                index: 0,
                term,
                detail: format!("became leader without being a voter of {membership:?}"),
            });
        }
        self.new_leaders.push((node, term));
    }

    /// `node`, which knows the log up to `commit` is committed, is about to
    /// persist `entries` on top of `durable`.
    pub(crate) fn on_entries(
        &mut self,
        node: NodeId,
        durable: &DurableStore,
        commit: Index,
        entries: &[Entry],
    ) {
        let Some(first) = entries.first() else {
            return;
        };
        // A node never overwrites what it knows to be committed.
        for e in entries {
            if e.index > commit {
                break;
            }
            if let Some(old) = durable.entry(e.index) {
                if old.term != e.term || old.payload != e.payload {
                    self.report(Violation::CommittedEntryLost {
                        node,
                        index: e.index,
                        commit,
                    });
                    break;
                }
            }
        }
        let prev_index = first.index - 1;
        let mut prev_term = durable.term(prev_index).unwrap_or(0);
        // The configuration in force before the first entry: the one the
        // registry knows for the entry before it, else the node's own.
        let mut config = match self.registry.get(&(prev_index, prev_term)) {
            Some(r) => r.config,
            None => durable.config_at(prev_index).map(|(i, t, m)| {
                self.configs.entry((i, t)).or_insert_with(|| m.clone());
                (i, t)
            }),
        };
        for e in entries {
            config = self.register(node, e, prev_term, config);
            prev_term = e.term;
        }
    }

    /// Records `e` (preceded by an entry of `prev_term`, under the
    /// configuration `config`); returns the configuration in force at `e`.
    fn register(
        &mut self,
        node: NodeId,
        e: &Entry,
        prev_term: Term,
        config: Option<(Index, Term)>,
    ) -> Option<(Index, Term)> {
        match self.registry.get(&(e.index, e.term)) {
            None => {
                let mut in_force = config;
                if let Payload::Config(next) = &e.payload {
                    if self.membership_rules {
                        let prev = config.and_then(|k| self.configs.get(&k));
                        if let Some(detail) = prev.and_then(|prev| joint_rule(prev, next)) {
                            self.report(Violation::Membership {
                                node,
                                index: e.index,
                                term: e.term,
                                detail,
                            });
                        }
                    }
                    // A configuration is in force from its own entry on
                    // (thesis §4.1).
                    self.configs.insert((e.index, e.term), next.clone());
                    in_force = Some((e.index, e.term));
                }
                self.registry.insert(
                    (e.index, e.term),
                    Registered {
                        prev_term,
                        payload: e.payload.clone(),
                        node,
                        config: in_force,
                    },
                );
                in_force
            }
            Some(r) => {
                let detail = if r.payload != e.payload {
                    Some(format!("payload {:?} vs {:?}", e.payload, r.payload))
                } else if r.prev_term != prev_term {
                    Some(format!("preceded by term {prev_term} vs {}", r.prev_term))
                } else {
                    None
                };
                let in_force = r.config.or(config);
                if let Some(detail) = detail {
                    let other = r.node;
                    self.report(Violation::LogMatching {
                        index: e.index,
                        term: e.term,
                        node,
                        other,
                        detail,
                    });
                }
                in_force
            }
        }
    }

    /// `node` persisted a Ready: `durable` is what it holds now. If its
    /// durable log ends with an entry of its durable term `t`, it holds the
    /// log of `t`'s leader up to there, acknowledged in `t`: count it toward
    /// a quorum of the configuration in force at each index.
    pub(crate) fn on_durable(&mut self, node: NodeId, durable: &DurableStore) {
        let term = durable.hard_state.term;
        let last = durable.last_index();
        if last == 0 || durable.term(last) != Some(term) {
            return;
        }
        let acks = self.acks.entry(term).or_default();
        if acks.get(&node).is_some_and(|&a| a >= last) {
            return;
        }
        acks.insert(node, last);
        let done = self.quorum_commit.get(&term).copied().unwrap_or(0);
        // Only indices up to `last` can have gained a quorum; try the
        // highest first.
        let mut candidates: Vec<Index> = acks
            .values()
            .map(|&a| a.min(last))
            .filter(|&a| a > done)
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.dedup();
        let committed = candidates.into_iter().find(|&k| {
            let config = self
                .registry
                .get(&(k, term))
                .and_then(|r| r.config)
                .and_then(|c| self.configs.get(&c));
            // Both majorities while joint (`has_quorum`).
            config.is_some_and(|m| m.has_quorum(|id| acks.get(&id).is_some_and(|&a| a >= k)))
        });
        if let Some(k) = committed {
            self.quorum_commit.insert(term, k);
            self.commit_prefix(node, k, term);
        }
    }

    /// Records entry `(index, term)` and the log before it as committed in
    /// `term`, back to what is already known committed.
    fn commit_prefix(&mut self, node: NodeId, index: Index, term: Term) {
        let mut key = (index, term);
        while key.0 > 0 {
            let Some(r) = self.registry.get(&key) else {
                return;
            };
            let prev = (key.0 - 1, r.prev_term);
            match self.committed.get(&key.0) {
                Some(c) if c.entry.term == key.1 && c.entry.payload == r.payload => return,
                Some(c) => {
                    let committed_term = c.entry.term;
                    self.report(Violation::CommittedEntryChanged {
                        index: key.0,
                        node,
                        committed_term,
                        found_term: key.1,
                    });
                    return;
                }
                None => {
                    let entry = Entry {
                        term: key.1,
                        index: key.0,
                        payload: r.payload.clone(),
                    };
                    self.committed.insert(key.0, Committed { entry, term });
                    self.new_commits.push((key.0, term));
                }
            }
            key = prev;
        }
    }

    /// `node` (running `raw`, snapshot at `snap_index`) moved its commit
    /// index from `old` to `new`: its log up to `new` is committed.
    pub(crate) fn on_commit(
        &mut self,
        node: NodeId,
        raw: &RawNode,
        snap_index: Index,
        old: Index,
        new: Index,
    ) {
        for index in (old + 1).max(snap_index + 1)..=new {
            let Some(e) = raw.entry(index) else {
                continue;
            };
            match self.committed.get_mut(&index) {
                Some(c) => {
                    if c.entry.term != e.term || c.entry.payload != e.payload {
                        let committed_term = c.entry.term;
                        self.report(Violation::CommittedEntryChanged {
                            index,
                            node,
                            committed_term,
                            found_term: e.term,
                        });
                    } else if raw.term() < c.term {
                        // Known committed earlier than recorded.
                        c.term = raw.term();
                        self.new_commits.push((index, raw.term()));
                    }
                }
                None => {
                    let entry = e.clone();
                    self.committed.insert(
                        index,
                        Committed {
                            entry,
                            term: raw.term(),
                        },
                    );
                    self.new_commits.push((index, raw.term()));
                }
            }
        }
    }

    /// `node` installs a snapshot from the leader.
    pub(crate) fn on_snapshot(&mut self, node: NodeId, meta: &SnapshotMeta) {
        self.configs
            .entry((meta.index, meta.term))
            .or_insert_with(|| meta.membership.clone());
        if let Some(c) = self.committed.get(&meta.index) {
            if c.entry.term != meta.term {
                let committed_term = c.entry.term;
                self.report(Violation::CommittedEntryChanged {
                    index: meta.index,
                    node,
                    committed_term,
                    found_term: meta.term,
                });
            }
        }
    }

    /// `node` applies `e`.
    pub(crate) fn on_apply(&mut self, node: NodeId, e: &Entry) {
        match self.applied.get(&e.index) {
            Some((first, other)) => {
                if first.term != e.term || first.payload != e.payload {
                    let (other, first_term) = (*other, first.term);
                    self.report(Violation::StateMachineSafety {
                        index: e.index,
                        node,
                        other,
                        first_term,
                        second_term: e.term,
                    });
                }
            }
            None => {
                self.applied.insert(e.index, (e.clone(), node));
            }
        }
        if let Some(Committed { entry: c, .. }) = self.committed.get(&e.index) {
            if c.term != e.term || c.payload != e.payload {
                let committed_term = c.term;
                self.report(Violation::CommittedEntryChanged {
                    index: e.index,
                    node,
                    committed_term,
                    found_term: e.term,
                });
            }
        }
    }

    /// The checks that look at several nodes at once; run after every step.
    pub fn after_step(&mut self, nodes: &[SimNode]) {
        // Leader Completeness: a new leader holds every entry committed in
        // an earlier term.
        for (id, term) in std::mem::take(&mut self.new_leaders) {
            let Some(n) = nodes.iter().find(|n| n.id() == id) else {
                continue;
            };
            let Some(raw) = n.raw().filter(|_| n.term() == Some(term)) else {
                continue;
            };
            let from = n.snapshot_index() + 1;
            let missing = self
                .committed
                .range(from..)
                .find(|(&i, c)| c.term < term && raw.entry(i) != Some(&c.entry))
                .map(|(&i, _)| i);
            if let Some(index) = missing {
                self.report(Violation::LeaderCompleteness {
                    leader: id,
                    term,
                    index,
                });
            }
        }
        // One change at a time: a leader's log holds at most one
        // configuration entry above the committed prefix (thesis §4.1; the
        // entry that leaves a joint configuration is appended only once the
        // joint one is committed).
        if self.membership_rules {
            let committed = self.committed_index();
            for n in nodes.iter().filter(|n| n.is_leader()) {
                let Some(raw) = n.raw() else { continue };
                let from = committed.max(n.snapshot_index()) + 1;
                let configs: Vec<&Entry> = (from..)
                    .map_while(|i| raw.entry(i))
                    .filter(|e| matches!(e.payload, Payload::Config(_)))
                    .collect();
                if let [_, second, ..] = configs[..] {
                    let (index, term) = (second.index, second.term);
                    let detail = format!(
                        "a leader's log holds {} configuration entries above the \
                         committed index {committed}",
                        configs.len()
                    );
                    self.report(Violation::Membership {
                        node: n.id(),
                        index,
                        term,
                        detail,
                    });
                }
            }
        }
        // Newly committed entries are in every leader of a later term.
        let commits = std::mem::take(&mut self.new_commits);
        if commits.is_empty() {
            return;
        }
        for n in nodes.iter().filter(|n| n.is_leader()) {
            let (Some(raw), Some(term)) = (n.raw(), n.term()) else {
                continue;
            };
            let missing = commits.iter().find(|&&(index, t)| {
                term > t
                    && index > n.snapshot_index()
                    && raw.entry(index) != self.committed.get(&index).map(|c| &c.entry)
            });
            if let Some(&(index, _)) = missing {
                self.report(Violation::LeaderCompleteness {
                    leader: n.id(),
                    term,
                    index,
                });
            }
        }
    }

    /// Compares the in-memory logs of every pair of running nodes: where
    /// two hold an entry with the same index and term, all entries before
    /// it that both hold are identical.
    pub fn check_logs(&mut self, nodes: &[SimNode]) {
        let logs: Vec<(NodeId, Vec<Entry>)> = nodes
            .iter()
            .filter(|n| n.is_up())
            .map(|n| (n.id(), n.log()))
            .collect();
        for (i, (a, la)) in logs.iter().enumerate() {
            for (b, lb) in logs.iter().skip(i + 1) {
                if let Some(index) = log_mismatch(la, lb) {
                    let term = la.iter().find(|e| e.index == index).map_or(0, |e| e.term);
                    self.report(Violation::LogMatching {
                        index,
                        term,
                        node: *b,
                        other: *a,
                        detail: "in-memory logs disagree before a common entry".into(),
                    });
                }
            }
        }
    }
}

/// The first index where two logs disagree although a later common index
/// has the same term in both.
fn log_mismatch(a: &[Entry], b: &[Entry]) -> Option<Index> {
    let (Some(fa), Some(fb)) = (a.first(), b.first()) else {
        return None;
    };
    let lo = fa.index.max(fb.index);
    let hi = a.last()?.index.min(b.last()?.index);
    if lo > hi {
        return None;
    }
    let at = |l: &'_ [Entry], i: Index| -> usize { (i - l[0].index) as usize };
    // The highest common index with equal terms.
    let top = (lo..=hi)
        .rev()
        .find(|&i| a[at(a, i)].term == b[at(b, i)].term)?;
    (lo..=top).find(|&i| a[at(a, i)] != b[at(b, i)])
}

/// Why `next` may not directly follow `prev` in a log under the joint rule
/// (thesis §4.3), if it may not: a change of voters goes `C_old` →
/// `C_old,new` (every decision needs both majorities) → `C_new`; learners
/// and addresses change without a joint phase.
fn joint_rule(prev: &Membership, next: &Membership) -> Option<String> {
    if prev.is_joint() {
        // Only C_new may follow C_old,new.
        (next.is_joint() || next.voters != prev.voters).then(|| {
            format!(
                "the joint configuration {:?} -> {:?} is followed by {:?} (outgoing {:?}), \
                 not by its new voters alone",
                prev.outgoing, prev.voters, next.voters, next.outgoing
            )
        })
    } else if next.is_joint() {
        (next.outgoing != prev.voters).then(|| {
            format!(
                "a joint configuration leaves voters {:?}, but the voters were {:?}",
                next.outgoing, prev.voters
            )
        })
    } else {
        (next.voters != prev.voters).then(|| {
            format!(
                "the voters changed from {:?} to {:?} without a joint configuration",
                prev.voters, next.voters
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joint(voters: Vec<NodeId>, outgoing: Vec<NodeId>) -> Membership {
        Membership {
            outgoing,
            ..Membership::new(voters)
        }
    }

    #[test]
    fn the_joint_rule() {
        let old = Membership::new(vec![1, 2, 3]);
        let entering = joint(vec![1, 2, 4], vec![1, 2, 3]);
        let new = Membership::new(vec![1, 2, 4]);
        let mut learner = old.clone();
        learner.learners = vec![4];
        assert_eq!(
            joint_rule(&old, &learner),
            None,
            "learners need no joint phase"
        );
        assert_eq!(joint_rule(&old, &entering), None);
        assert_eq!(joint_rule(&entering, &new), None);
        assert!(
            joint_rule(&old, &new).is_some(),
            "voters changed in one step"
        );
        assert!(
            joint_rule(&entering, &old).is_some(),
            "only C_new follows C_old,new"
        );
        let other = joint(vec![1, 2, 5], vec![1, 2, 4]);
        assert!(joint_rule(&entering, &other).is_some());
        assert!(
            joint_rule(&new, &entering).is_some(),
            "must leave the voters in force"
        );
    }
}
