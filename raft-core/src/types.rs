//! The values Raft persists and replicates: log entries, the hard state,
//! snapshots and the cluster configuration.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::Command;

/// A member of the cluster. `0` is never a valid id; it means "none".
pub type NodeId = u64;
/// A Raft term. Terms only grow.
pub type Term = u64;
/// A position in the replicated log. The first entry has index 1.
pub type Index = u64;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// The empty entry a new leader appends so that it can commit entries of
    /// earlier terms by committing one of its own (paper §5.4.2, §8).
    Noop,
    /// A key-value command from a client. Shared, so that handing the entry
    /// to followers, the log store and the state machine copies no strings.
    Command(Arc<Command>),
    /// A new cluster configuration. Takes effect when appended (thesis §4.1).
    Config(Membership),
}

impl Payload {
    /// A command payload.
    pub fn command(command: Command) -> Self {
        Payload::Command(Arc::new(command))
    }
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// What the entry carries.
    pub payload: Payload,
}

impl Entry {
    /// An estimate of the entry's size on the wire, used to bound batches.
    pub fn approx_size(&self) -> usize {
        24 + match &self.payload {
            Payload::Noop => 0,
            Payload::Command(c) => c.approx_size(),
            Payload::Config(m) => 8 * m.voters.len(),
        }
    }
}

/// The state a node must persist before it answers or sends anything that
/// depends on it (paper figure 2, "Persistent state on all servers"). The
/// commit index is persisted too so that a restarted node can apply without
/// waiting for the leader; it is never required for safety.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Who this node voted for in `term` (0: nobody).
    pub vote: NodeId,
    /// The highest index known to be committed.
    pub commit: Index,
}

/// The voting members of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voter ids, sorted ascending and without duplicates.
    pub voters: Vec<NodeId>,
}

impl Membership {
    /// A membership of the given ids (sorted and deduplicated here).
    pub fn new(mut voters: Vec<NodeId>) -> Self {
        voters.sort_unstable();
        voters.dedup();
        Membership { voters }
    }

    /// Whether `id` votes in this configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// The number of votes that make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// Describes the log prefix a snapshot replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last index covered by the snapshot.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`.
    pub membership: Membership,
}

/// A state-machine image at `meta.index`. `data` is opaque to Raft; for this
/// project it is [`crate::kv::KvStore::snapshot`]'s output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where the snapshot sits in the log.
    pub meta: SnapshotMeta,
    /// The serialized state machine.
    pub data: Vec<u8>,
}

/// Everything a node persisted, handed back to [`crate::RawNode::restart`]
/// after a crash or a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistedState {
    /// The last persisted hard state.
    pub hard_state: HardState,
    /// The newest persisted snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The persisted log entries after the snapshot, contiguous and ascending.
    pub entries: Vec<Entry>,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes before starting a real election (thesis §9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates the log.
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}
