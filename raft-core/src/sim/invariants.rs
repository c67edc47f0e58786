//! Raft's safety properties (paper figure 3), checked as a run goes.
//!
//! The node driver reports what each `Ready` does (a node became leader,
//! entries persisted, commit index moved, entries applied, snapshot
//! installed) and the cluster calls [`Checker::after_step`] after every
//! step. Everything ever seen is kept, so the properties are checked
//! across all time, not only between the current states:
//!
//! * **Election Safety**: at most one leader per term.
//! * **Log Matching**: entries with the same index and term carry the same
//!   command and follow the same term. By induction this is exactly "if two
//!   logs hold an entry with the same index and term, they are identical up
//!   to it"; a registry of every `(index, term)` ever persisted checks it
//!   for all pairs of nodes and all times. [`Checker::check_logs`] also
//!   compares the in-memory logs pairwise directly.
//! * **Leader Completeness**: every committed entry is in the log of every
//!   leader of a later term.
//! * **State Machine Safety**: no two nodes apply different entries at the
//!   same index.
//! * **No committed entry lost or changed**: the committed prefix (by any
//!   node's commit index) never changes, and no node truncates its log
//!   below its own commit index.

use std::collections::BTreeMap;

use super::node::{DurableStore, SimNode};
use super::Time;
use crate::raw_node::RawNode;
use crate::types::{Entry, Index, NodeId, Payload, SnapshotMeta, Term};

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

/// The invariant checker's memory of the whole run.
#[derive(Debug, Default)]
pub struct Checker {
    now: Time,
    /// Every term's leader.
    leaders: BTreeMap<Term, NodeId>,
    /// Every `(index, term)` ever persisted: the term before it, the
    /// payload, and the first node seen with it.
    registry: BTreeMap<(Index, Term), (Term, Payload, NodeId)>,
    /// The committed prefix, as first recorded.
    committed: BTreeMap<Index, Entry>,
    /// What was applied at each index, and by whom first.
    applied: BTreeMap<Index, (Entry, NodeId)>,
    /// Leaders elected since the last step.
    new_leaders: Vec<(NodeId, Term)>,
    /// Indices newly recorded as committed, with the recorder's term.
    new_commits: Vec<(Index, Term)>,
    violations: Vec<Detected>,
}

impl Checker {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
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

    /// `node` became leader of `term`.
    pub(crate) fn on_leader(&mut self, node: NodeId, term: Term) {
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
        let mut prev_term = durable.term(first.index - 1).unwrap_or(0);
        for e in entries {
            self.register(node, e, prev_term);
            prev_term = e.term;
        }
    }

    fn register(&mut self, node: NodeId, e: &Entry, prev_term: Term) {
        match self.registry.get(&(e.index, e.term)) {
            None => {
                self.registry
                    .insert((e.index, e.term), (prev_term, e.payload.clone(), node));
            }
            Some((p, payload, other)) => {
                let detail = if *payload != e.payload {
                    Some(format!("payload {:?} vs {:?}", e.payload, payload))
                } else if *p != prev_term {
                    Some(format!("preceded by term {prev_term} vs {p}"))
                } else {
                    None
                };
                if let Some(detail) = detail {
                    let other = *other;
                    self.report(Violation::LogMatching {
                        index: e.index,
                        term: e.term,
                        node,
                        other,
                        detail,
                    });
                }
            }
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
            match self.committed.get(&index) {
                Some(c) => {
                    if c.term != e.term || c.payload != e.payload {
                        let committed_term = c.term;
                        self.report(Violation::CommittedEntryChanged {
                            index,
                            node,
                            committed_term,
                            found_term: e.term,
                        });
                    }
                }
                None => {
                    self.committed.insert(index, e.clone());
                    self.new_commits.push((index, raw.term()));
                }
            }
        }
    }

    /// `node` installs a snapshot from the leader.
    pub(crate) fn on_snapshot(&mut self, node: NodeId, meta: &SnapshotMeta) {
        if let Some(c) = self.committed.get(&meta.index) {
            if c.term != meta.term {
                let committed_term = c.term;
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
        if let Some(c) = self.committed.get(&e.index) {
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
        // A new leader holds every entry committed so far.
        for (id, term) in std::mem::take(&mut self.new_leaders) {
            let Some(n) = nodes.iter().find(|n| n.id() == id) else {
                continue;
            };
            if n.raw().is_none() || n.term() != Some(term) {
                continue;
            }
            let from = n.snapshot_index() + 1;
            let missing = self
                .committed
                .range(from..)
                .find(|(&i, c)| n.raw().and_then(|r| r.entry(i)) != Some(*c))
                .map(|(&i, _)| i);
            if let Some(index) = missing {
                self.report(Violation::LeaderCompleteness {
                    leader: id,
                    term,
                    index,
                });
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
                    && raw.entry(index) != self.committed.get(&index)
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
