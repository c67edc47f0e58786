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
//!
//! Four more rules are checked directly where they are kept, rather than
//! through the damage their breach does later (they can be switched off
//! with [`Checker::set_direct_rules`] to see what the properties above
//! catch alone):
//!
//! * **At-most-once application**: a client's write `(client_id, seq)`
//!   (client id not 0) changes the state machine once in the whole run. The
//!   same command may sit in several log entries (retries); only the first
//!   one applied may change the map, the others get its result from the
//!   session table. The session table records the index of the entry that
//!   changed the map for a `(client_id, seq)`: after each `Ready`'s entries
//!   are applied, every node's record for the clients it just applied must
//!   name the index first recorded for that `(client_id, seq)` anywhere.
//!   The record is seen once per `Ready` (per entry with `max_apply_bytes`
//!   1): a second application whose record a later write of the same
//!   client in the same `Ready` replaces on every node goes unseen here,
//!   though its effect on the history may not.
//! * **One vote per node and term**, across restarts: every vote a node
//!   sends (a granted `VoteResponse`, and its own vote as a candidate, seen
//!   in its `Vote` requests) is remembered by `(node, term)` for the whole
//!   run, so a node that votes for A, crashes, restarts and votes for B in
//!   the same term is caught at the second vote, before any second leader.
//! * **Commits are durable on a quorum**: when a commit index is reported
//!   for the first time, the entry there is in the durable store (the
//!   [`DurableStore`] each node's `Ready`s wrote, not its memory) of a
//!   quorum of the configuration it was committed under (both majorities
//!   while joint), checked right after the reporting node's `Ready`s are
//!   carried out. Normally the leader reports first, with the configuration
//!   it counted with; a follower reports first only when the leader died
//!   at the write of the `Ready` that committed it, and is then held to
//!   any configuration that leader may have counted with.
//! * **Read indices are fresh**: a linearizable read is served at a read
//!   index at least the highest commit index any node had reported when
//!   the read reached the node serving it.

use std::collections::BTreeMap;

use super::disk::DurableStore;
use super::node::SimNode;
use super::Time;
use crate::kv::KvStore;
use crate::message::{Message, MessageBody};
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
    /// A client's write changed the state machine twice: a node's session
    /// table records `(client, seq)` as applied at another index than the
    /// one first recorded.
    AppliedTwice {
        /// The node whose state machine shows it.
        node: NodeId,
        /// The client id.
        client: u64,
        /// The write's sequence number.
        seq: u64,
        /// The index it was first recorded as applied at.
        first: Index,
        /// The index recorded now.
        again: Index,
    },
    /// A node voted for two candidates in one term.
    DoubleVote {
        /// The voter.
        node: NodeId,
        /// The term.
        term: Term,
        /// The candidate it voted for first.
        first: NodeId,
        /// The other one.
        second: NodeId,
    },
    /// A node reported an entry committed that a quorum of the
    /// configuration it was committed under did not hold durably.
    CommitNotDurable {
        /// The node that reported it first.
        node: NodeId,
        /// Whether that node is the leader that committed it.
        leader: bool,
        /// Its new commit index.
        index: Index,
        /// The term of the entry there.
        term: Term,
        /// The voters whose durable store held it.
        holders: Vec<NodeId>,
        /// The configuration counted with (for a follower's report, the
        /// one in force at the entry).
        membership: Membership,
    },
    /// A write was answered "not applied" (safe to retry as a new write),
    /// yet the entry it was proposed as was applied.
    NotAppliedButApplied {
        /// The node that answered.
        node: NodeId,
        /// The index the write was proposed at.
        index: Index,
        /// The term it was proposed in.
        term: Term,
    },
    /// A read was served at a read index below a commit index known before
    /// it reached the node serving it.
    StaleRead {
        /// The node that served it.
        node: NodeId,
        /// The read index it was served at.
        read_index: Index,
        /// The highest commit index any node had reported when it arrived.
        known_commit: Index,
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
    /// [`Violation::AppliedTwice`].
    AppliedTwice,
    /// [`Violation::DoubleVote`].
    DoubleVote,
    /// [`Violation::CommitNotDurable`].
    CommitNotDurable,
    /// [`Violation::StaleRead`].
    StaleRead,
    /// [`Violation::NotAppliedButApplied`].
    NotAppliedButApplied,
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
            Violation::AppliedTwice { .. } => ViolationKind::AppliedTwice,
            Violation::DoubleVote { .. } => ViolationKind::DoubleVote,
            Violation::CommitNotDurable { .. } => ViolationKind::CommitNotDurable,
            Violation::StaleRead { .. } => ViolationKind::StaleRead,
            Violation::NotAppliedButApplied { .. } => ViolationKind::NotAppliedButApplied,
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
            Violation::AppliedTwice {
                node,
                client,
                seq,
                first,
                again,
            } => write!(
                f,
                "applied twice: client {client}'s write {seq}, applied at index {first}, is \
                 recorded by node {node} as applied again at index {again}"
            ),
            Violation::DoubleVote {
                node,
                term,
                first,
                second,
            } => write!(
                f,
                "double vote: node {node} voted for {first} and for {second} in term {term}"
            ),
            Violation::CommitNotDurable {
                node,
                leader,
                index,
                term,
                holders,
                membership,
            } => write!(
                f,
                "commit not durable: {} {node} reported entry {index} of term {term} \
                 committed, but only {holders:?} of voters {:?} (outgoing {:?}) hold it on disk",
                if *leader { "leader" } else { "follower" },
                membership.voters,
                membership.outgoing
            ),
            Violation::NotAppliedButApplied { node, index, term } => write!(
                f,
                "false \"not applied\": node {node} told a client its write at index {index} of \
                 term {term} was not applied, but that entry was applied"
            ),
            Violation::StaleRead {
                node,
                read_index,
                known_commit,
            } => write!(
                f,
                "stale read: node {node} served a read at read index {read_index}, but index \
                 {known_commit} was known committed when the read reached it"
            ),
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

/// A commit index reported for the first time, to check against the
/// durable stores.
#[derive(Debug)]
struct CommitClaim {
    node: NodeId,
    leader: bool,
    index: Index,
    term: Term,
    /// The configurations a quorum of which may have committed it: the
    /// leader's own; for a follower, every one the committing leader may
    /// have counted with. The first is reported.
    memberships: Vec<Membership>,
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
    /// Whether the direct rules (applied twice, double votes, durable
    /// commits, stale read indices) are checked.
    direct_rules: bool,
    /// Entries `(index, term)` whose writes were answered "not applied",
    /// with the node that said so.
    not_applied: BTreeMap<(Index, Term), NodeId>,
    /// Per `(client_id, seq)`: the index a session table first recorded it
    /// applied at, and the node seen with it.
    sessions: BTreeMap<(u64, u64), (Index, NodeId)>,
    /// Every vote sent: `(voter, term) -> candidate`.
    votes: BTreeMap<(NodeId, Term), NodeId>,
    /// The highest commit index any node reported.
    known_commit: Index,
    /// Leaders' new commit indices not yet checked against the disks.
    commit_claims: Vec<CommitClaim>,
    /// The highest commit index found durable on a quorum.
    durable_commit: Index,
    /// Records below this index are forgotten: every node (running or
    /// down) holds a snapshot at or above it, in memory and on disk, so
    /// no node persists, commits or applies an entry below it again.
    index_floor: Index,
    /// Records of terms below this one are forgotten: every node's durable
    /// term is at least this, so none votes, leads or acknowledges in an
    /// older term again.
    term_floor: Term,
    /// Leaders seen in the terms forgotten.
    leaders_forgotten: usize,
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
            direct_rules: true,
            not_applied: BTreeMap::new(),
            sessions: BTreeMap::new(),
            votes: BTreeMap::new(),
            known_commit: 0,
            commit_claims: Vec::new(),
            durable_commit: 0,
            index_floor: 0,
            term_floor: 0,
            leaders_forgotten: 0,
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

    /// Checks the direct rules ([`Violation::AppliedTwice`],
    /// [`Violation::DoubleVote`], [`Violation::CommitNotDurable`],
    /// [`Violation::StaleRead`]) or not (on by default). Off, a test can
    /// show what the other properties catch of the same bug.
    pub fn set_direct_rules(&mut self, on: bool) {
        self.direct_rules = on;
    }

    /// The highest commit index any node reported so far.
    pub fn known_commit(&self) -> Index {
        self.known_commit
    }

    /// The violations found so far (at most 64 are kept).
    pub fn violations(&self) -> &[Detected] {
        &self.violations
    }

    /// Every `(term, leader)` seen in the terms a node may still be in
    /// (older ones are forgotten, see [`Checker::leaders_seen`]).
    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// How many terms had a leader, over the whole run.
    pub fn leaders_seen(&self) -> usize {
        self.leaders_forgotten + self.leaders.len()
    }

    /// Forgets what no future check can need, so that a run that never
    /// ends (the dashboard's) keeps bounded memory:
    /// * below the lowest snapshot index of every node, in memory and on
    ///   disk (a node restarts from its disk's): the `(index, term)`
    ///   registry, the committed prefix, what was applied and the writes
    ///   answered "not applied" (a node only persists, commits or applies
    ///   entries above its snapshot, and a joining node gets them from a
    ///   member);
    /// * per client, the sessions' first application indexes below that,
    ///   except the newest (its retries may still sit in a log above);
    /// * below the lowest durable term of every node: votes, leaders and
    ///   acknowledgements (a node votes, leads and acknowledges only in its
    ///   current term, which never goes below its durable one).
    ///
    /// The floors only rise: nodes created later take their log and
    /// snapshot from the members.
    pub fn forget_settled(&mut self, nodes: &[SimNode]) {
        let live = || nodes.iter().filter(|n| !n.is_retired());
        let index_floor = live()
            .map(|n| {
                let disk = n.durable().snapshot_index();
                if n.is_up() {
                    disk.min(n.snapshot_index())
                } else {
                    disk
                }
            })
            .min()
            .unwrap_or(0);
        let term_floor = live()
            .map(|n| n.durable().hard_state.term)
            .min()
            .unwrap_or(0);
        if index_floor > self.index_floor {
            self.index_floor = index_floor;
            self.registry = self.registry.split_off(&(index_floor, 0));
            // The newest committed entry stays: it is the committed index.
            let keep_from = index_floor.min(self.committed_index());
            self.committed = self.committed.split_off(&keep_from);
            self.applied = self.applied.split_off(&index_floor);
            self.not_applied = self.not_applied.split_off(&(index_floor, 0));
            let mut newest_below: BTreeMap<u64, u64> = BTreeMap::new();
            for (&(client, seq), &(index, _)) in &self.sessions {
                if index < index_floor {
                    newest_below.insert(client, seq);
                }
            }
            self.sessions.retain(|&(client, seq), &mut (index, _)| {
                index >= index_floor || newest_below.get(&client) == Some(&seq)
            });
        }
        if term_floor > self.term_floor {
            self.term_floor = term_floor;
            let kept = self.leaders.split_off(&term_floor);
            self.leaders_forgotten += self.leaders.len();
            self.leaders = kept;
            self.acks = self.acks.split_off(&term_floor);
            self.quorum_commit = self.quorum_commit.split_off(&term_floor);
            self.votes.retain(|&(_, term), _| term >= term_floor);
        }
    }

    /// The highest index known committed.
    pub fn committed_index(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// Fills in the checker's record counts.
    pub(crate) fn count_retained(&self, r: &mut super::Retained) {
        r.registry = self.registry.len();
        r.configs = self.configs.len();
        r.acks = self.acks.values().map(BTreeMap::len).sum();
        r.quorum_commit = self.quorum_commit.len();
        r.committed = self.committed.len();
        r.applied = self.applied.len();
        r.not_applied = self.not_applied.len();
        r.sessions = self.sessions.len();
        r.votes = self.votes.len();
        r.leaders = self.leaders.len();
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
        // On every founder's disk before anything runs.
        self.durable_commit = 1;
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
        self.known_commit = self.known_commit.max(new);
        if self.direct_rules && new > self.durable_commit {
            if let Some(e) = raw.entry(new) {
                let memberships = if raw.is_leader() {
                    vec![raw.membership().clone()]
                } else {
                    self.commit_configs(new, e.term, raw.membership())
                };
                self.commit_claims.push(CommitClaim {
                    node,
                    leader: raw.is_leader(),
                    index: new,
                    term: e.term,
                    memberships,
                });
            }
        }
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
    /// `node` answered the write it proposed as entry `(index, term)` "not
    /// applied": that entry must never be applied, now or later.
    pub(crate) fn on_not_applied(&mut self, node: NodeId, index: Index, term: Term) {
        if !self.direct_rules {
            return;
        }
        if self
            .applied
            .get(&index)
            .is_some_and(|(e, _)| e.term == term)
        {
            self.report(Violation::NotAppliedButApplied { node, index, term });
        }
        self.not_applied.insert((index, term), node);
    }

    pub(crate) fn on_apply(&mut self, node: NodeId, e: &Entry) {
        if let Some(&told) = self.not_applied.get(&(e.index, e.term)) {
            self.report(Violation::NotAppliedButApplied {
                node: told,
                index: e.index,
                term: e.term,
            });
        }
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

    /// `node` sends `messages`: remembers the votes among them (a granted
    /// `VoteResponse` is a vote for its recipient, a `Vote` request the
    /// candidate's vote for itself) and reports a second candidate voted
    /// for in a term.
    pub(crate) fn on_sent(&mut self, node: NodeId, messages: &[Message]) {
        if !self.direct_rules {
            return;
        }
        for m in messages.iter().filter(|m| m.from == node) {
            let candidate = match m.body {
                MessageBody::Vote { .. } => node,
                MessageBody::VoteResponse { granted: true } => m.to,
                _ => continue,
            };
            match self.votes.get(&(node, m.term)) {
                Some(&first) if first != candidate => self.report(Violation::DoubleVote {
                    node,
                    term: m.term,
                    first,
                    second: candidate,
                }),
                Some(_) => {}
                None => {
                    self.votes.insert((node, m.term), candidate);
                }
            }
        }
    }

    /// `node` applied entries with commands of `clients`; `kv` is its state
    /// machine now. Each such client's session record names the write it
    /// applied last and the index of the entry that applied it: for one
    /// `(client_id, seq)` that index must never change, on any node.
    pub(crate) fn on_sessions(&mut self, node: NodeId, kv: &KvStore, clients: &[u64]) {
        if !self.direct_rules {
            return;
        }
        for &client in clients {
            let Some((seq, index)) = kv.session(client) else {
                continue;
            };
            match self.sessions.get(&(client, seq)) {
                Some(&(first, _)) if first != index => {
                    self.report(Violation::AppliedTwice {
                        node,
                        client,
                        seq,
                        first,
                        again: index,
                    });
                }
                Some(_) => {}
                None => {
                    self.sessions.insert((client, seq), (index, node));
                }
            }
        }
    }

    /// `node` serves a read at `read_index`; `known_commit` was
    /// [`Checker::known_commit`] when the read reached it.
    pub(crate) fn on_read_served(&mut self, node: NodeId, known_commit: Index, read_index: Index) {
        if self.direct_rules && read_index < known_commit {
            self.report(Violation::StaleRead {
                node,
                read_index,
                known_commit,
            });
        }
    }

    /// The configurations a leader may have counted with when it committed
    /// entry `(index, term)`, for a follower (whose configuration is `own`)
    /// that reports it committed first (the leader died at the write of the
    /// `Ready` that committed it, after its appends carried the news). A
    /// leader counts with the newest configuration in its log, which may be
    /// above the entry and not on this follower yet: the one in force at
    /// the entry, every one seen on any node above it in a term not before
    /// the entry's, and the follower's own.
    fn commit_configs(&self, index: Index, term: Term, own: &Membership) -> Vec<Membership> {
        let at = self
            .registry
            .get(&(index, term))
            .and_then(|r| r.config)
            .and_then(|k| self.configs.get(&k));
        let above = self
            .configs
            .range((index + 1, 0)..)
            .filter(|((_, t), _)| *t >= term)
            .map(|(_, m)| m);
        let mut all: Vec<Membership> = Vec::new();
        for m in at.into_iter().chain(above).chain([own]) {
            if !all.contains(m) {
                all.push(m.clone());
            }
        }
        all
    }

    /// Checks the commit indices reported for the first time since the
    /// last call against what the nodes hold on disk: the entry at a
    /// leader's new commit index is durable on a quorum of the
    /// configuration it counted with (by Log Matching, so is every entry
    /// before it); at a follower's, on a quorum of one of the
    /// configurations its leader may have counted with. An entry under a
    /// node's durable snapshot counts as held.
    pub(crate) fn check_commit_claims(&mut self, nodes: &[SimNode]) {
        if self.commit_claims.is_empty() {
            return;
        }
        let durable = |id: NodeId| {
            let i = (id as usize).checked_sub(1)?;
            nodes
                .get(i)
                .filter(|n| n.id() == id)
                .or_else(|| nodes.iter().find(|n| n.id() == id))
                .map(SimNode::durable)
        };
        for claim in std::mem::take(&mut self.commit_claims) {
            if claim.index <= self.durable_commit {
                continue;
            }
            let holds = |id: NodeId| {
                durable(id).is_some_and(|d| {
                    d.snapshot_index() > claim.index || d.term(claim.index) == Some(claim.term)
                })
            };
            if claim.memberships.iter().any(|m| m.has_quorum(holds)) {
                self.durable_commit = claim.index;
                continue;
            }
            let Some(m) = claim.memberships.first() else {
                continue;
            };
            let mut holders: Vec<NodeId> = m
                .voters
                .iter()
                .chain(&m.outgoing)
                .copied()
                .filter(|&id| holds(id))
                .collect();
            holders.sort_unstable();
            holders.dedup();
            let membership = m.clone();
            self.report(Violation::CommitNotDurable {
                node: claim.node,
                leader: claim.leader,
                index: claim.index,
                term: claim.term,
                holders,
                membership,
            });
        }
    }

    /// The checks that look at several nodes at once; run after every step.
    pub fn after_step(&mut self, nodes: &[SimNode]) {
        self.check_commit_claims(nodes);
        // Leader Completeness: a new leader holds every entry committed in
        // an earlier term.
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
                .find(|(&i, c)| c.term < term && n.held_entry(i) != Some(&c.entry))
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
            let (Some(_), Some(term)) = (n.raw(), n.term()) else {
                continue;
            };
            let missing = commits.iter().find(|&&(index, t)| {
                term > t
                    && index > n.snapshot_index()
                    && n.held_entry(index) != self.committed.get(&index).map(|c| &c.entry)
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

    fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
        Message {
            from,
            to,
            term,
            body,
        }
    }

    /// Votes are remembered by node and term for the whole run, whatever
    /// happened to the node in between; pre-votes are not votes.
    #[test]
    fn one_vote_per_node_and_term() {
        let mut c = Checker::new();
        let grant = MessageBody::VoteResponse { granted: true };
        let vote = MessageBody::Vote {
            last_index: 1,
            last_term: 0,
            transfer: false,
        };
        let pre = MessageBody::PreVoteResponse { granted: true };
        // Node 1 votes for 2 in term 3, twice (a duplicated request), and
        // would vote for 3 in a pre-vote: fine.
        c.on_sent(1, &[msg(1, 2, 3, grant.clone())]);
        c.on_sent(1, &[msg(1, 2, 3, grant.clone()), msg(1, 3, 3, pre)]);
        c.on_sent(
            1,
            &[msg(1, 3, 3, MessageBody::VoteResponse { granted: false })],
        );
        assert!(c.violations().is_empty());
        // ... then, say after a restart that forgot it, for 3.
        c.on_sent(1, &[msg(1, 3, 3, grant.clone())]);
        // Node 2 campaigns in term 4 (its own vote), then grants node 3.
        c.on_sent(2, &[msg(2, 1, 4, vote.clone()), msg(2, 3, 4, vote)]);
        c.on_sent(2, &[msg(2, 3, 4, grant)]);
        let found: Vec<_> = c.violations().iter().map(|d| &d.violation).collect();
        assert_eq!(
            found,
            [
                &Violation::DoubleVote {
                    node: 1,
                    term: 3,
                    first: 2,
                    second: 3
                },
                &Violation::DoubleVote {
                    node: 2,
                    term: 4,
                    first: 2,
                    second: 3
                },
            ]
        );
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
