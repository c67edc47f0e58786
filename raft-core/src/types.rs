//! The values Raft persists and replicates: log entries, the hard state,
//! snapshots and the cluster configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::Command;
use crate::quorum;

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
            Payload::Config(m) => {
                8 * m.ids().len() + m.addresses.values().map(|a| a.len() + 8).sum::<usize>()
            }
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

/// The cluster configuration: who votes, who only learns, and where each
/// member is reached. It is Raft state: carried by `Payload::Config` entries
/// (a node uses the newest one in its log, committed or not, thesis §4.1)
/// and by snapshots, so a restarted node never takes it from its flags.
///
/// A change of voters goes through a joint configuration (thesis §4.3):
/// while `outgoing` is not empty, every decision (election, commit, read,
/// CheckQuorum) needs a majority of `voters` *and* a majority of `outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voter ids (in a joint configuration: the voters being entered),
    /// sorted ascending and without duplicates.
    pub voters: Vec<NodeId>,
    /// In a joint configuration: the voters being left. Empty otherwise.
    pub outgoing: Vec<NodeId>,
    /// Non-voting members: they receive the log and snapshots, never vote,
    /// never count for commit and never campaign. Sorted, no duplicates,
    /// disjoint from `voters` and `outgoing`.
    pub learners: Vec<NodeId>,
    /// The learners the leader promotes to voters on its own once they have
    /// caught up (a subset of `learners`).
    pub auto_promote: Vec<NodeId>,
    /// Each member's address. Opaque to Raft: the server's base URL, the
    /// simulator's node name.
    pub addresses: BTreeMap<NodeId, String>,
}

impl Membership {
    /// A configuration of the given voters, without addresses (sorted and
    /// deduplicated here).
    pub fn new(voters: Vec<NodeId>) -> Self {
        Membership {
            voters: sorted(voters),
            ..Membership::default()
        }
    }

    /// A configuration of the given voters with their addresses.
    pub fn with_addresses(addresses: BTreeMap<NodeId, String>) -> Self {
        Membership {
            voters: addresses.keys().copied().collect(),
            addresses,
            ..Membership::default()
        }
    }

    /// Whether `id` votes: in `voters` or, while joint, in `outgoing`.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Whether a change of voters is in its joint phase.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Every member (voters of both halves and learners), ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every voter of either half, ascending.
    pub fn all_voters(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.voters.iter().chain(&self.outgoing).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The member's address, if one is known.
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.addresses.get(&id).map(String::as_str)
    }

    /// Whether the members for which `yes` holds make a majority: of
    /// `voters`, and while joint also of `outgoing`.
    pub fn has_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        let majority = |set: &[NodeId]| {
            set.is_empty()
                || quorum::has_majority(set.iter().filter(|&&id| yes(id)).count(), set.len())
        };
        !self.voters.is_empty() && majority(&self.voters) && majority(&self.outgoing)
    }

    /// The outcome of an election with these answers.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> quorum::VoteResult {
        let one = |set: &[NodeId]| {
            if set.is_empty() {
                return quorum::VoteResult::Won;
            }
            let yes = set.iter().filter(|id| votes.get(id) == Some(&true)).count();
            let no = set
                .iter()
                .filter(|id| votes.get(id) == Some(&false))
                .count();
            if quorum::has_majority(yes, set.len()) {
                quorum::VoteResult::Won
            } else if quorum::has_lost(no, set.len()) {
                quorum::VoteResult::Lost
            } else {
                quorum::VoteResult::Pending
            }
        };
        one(&self.voters).and(one(&self.outgoing))
    }

    /// The highest index a quorum has reached, `matched` giving each
    /// voter's index: while joint, the lower of the two halves' values.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> Index) -> Index {
        let one = |set: &[NodeId]| {
            let mut m: Vec<Index> = set.iter().map(|&id| matched(id)).collect();
            quorum::committed_index(&mut m)
        };
        if self.is_joint() {
            one(&self.voters).min(one(&self.outgoing))
        } else {
            one(&self.voters)
        }
    }

    /// Checks the invariants a configuration must hold (sorted sets, no
    /// member in two roles, at least one voter).
    pub fn validate(&self) -> Result<(), &'static str> {
        let is_sorted = |v: &[NodeId]| v.windows(2).all(|w| w[0] < w[1]);
        if self.voters.is_empty() {
            return Err("no voters");
        }
        if !is_sorted(&self.voters)
            || !is_sorted(&self.outgoing)
            || !is_sorted(&self.learners)
            || !is_sorted(&self.auto_promote)
        {
            return Err("member lists not sorted");
        }
        if self.ids().contains(&0) {
            return Err("member id 0");
        }
        if self.learners.iter().any(|&id| self.is_voter(id)) {
            return Err("a learner is also a voter");
        }
        if self.auto_promote.iter().any(|&id| !self.is_learner(id)) {
            return Err("an auto-promoted member is not a learner");
        }
        Ok(())
    }

    /// The configuration `change` leads to from this one (not joint): for a
    /// change of voters, the joint configuration that enters it.
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::InProgress);
        }
        let mut next = self.clone();
        let mut voters = self.voters.clone();
        match change {
            ConfChange::AddLearner {
                id,
                address,
                promote,
            } => {
                if *id == 0 {
                    return Err(ConfChangeError::Invalid("member id 0 is reserved".into()));
                }
                if self.contains(*id) {
                    return Err(ConfChangeError::AlreadyMember(*id));
                }
                next.learners = sorted(next.learners.iter().copied().chain([*id]).collect());
                if *promote {
                    next.auto_promote =
                        sorted(next.auto_promote.iter().copied().chain([*id]).collect());
                }
                next.addresses.insert(*id, address.clone());
                return Ok(next);
            }
            ConfChange::SetAddress { id, address } => {
                if !self.contains(*id) {
                    return Err(ConfChangeError::NotMember(*id));
                }
                next.addresses.insert(*id, address.clone());
                return Ok(next);
            }
            ConfChange::Promote { id } => {
                if !self.is_learner(*id) {
                    return Err(ConfChangeError::NotLearner(*id));
                }
                voters.push(*id);
            }
            ConfChange::Remove { id } => {
                if self.is_learner(*id) {
                    // Learners decide nothing: dropping one needs no joint phase.
                    next.learners.retain(|&l| l != *id);
                    next.auto_promote.retain(|&l| l != *id);
                    next.addresses.remove(id);
                    return Ok(next);
                }
                if !self.is_voter(*id) {
                    return Err(ConfChangeError::NotMember(*id));
                }
                voters.retain(|&v| v != *id);
            }
            ConfChange::Replace { remove, promote } => {
                if !self.is_voter(*remove) {
                    return Err(ConfChangeError::NotMember(*remove));
                }
                if !self.is_learner(*promote) {
                    return Err(ConfChangeError::NotLearner(*promote));
                }
                voters.retain(|&v| v != *remove);
                voters.push(*promote);
            }
        }
        let voters = sorted(voters);
        if voters.is_empty() {
            return Err(ConfChangeError::Invalid(
                "the last voter cannot be removed".into(),
            ));
        }
        next.learners.retain(|id| !voters.contains(id));
        next.auto_promote.retain(|id| !voters.contains(id));
        next.outgoing = self.voters.clone();
        next.voters = voters;
        Ok(next)
    }

    /// The configuration that ends a joint phase: the new voters alone,
    /// and the members that left forgotten.
    pub fn leave_joint(&self) -> Membership {
        let mut next = self.clone();
        next.outgoing.clear();
        let keep = next.ids();
        next.addresses.retain(|id, _| keep.contains(id));
        next
    }
}

fn sorted(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A membership change, proposed with [`crate::RawNode::propose_conf_change`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    /// Add a non-voting member at `address`. With `promote`, the leader
    /// makes it a voter once it has caught up.
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Where it is reached.
        address: String,
        /// Promote it automatically once caught up.
        promote: bool,
    },
    /// Make a learner a voter (through a joint configuration).
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a member: a learner at once, a voter through a joint
    /// configuration.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// Remove voter `remove` and promote learner `promote` in one joint
    /// change, so the number of voters never drops.
    Replace {
        /// The voter to remove.
        remove: NodeId,
        /// The learner to promote in its place.
        promote: NodeId,
    },
    /// Move a member to a new address.
    SetAddress {
        /// The member.
        id: NodeId,
        /// Its new address.
        address: String,
    },
}

/// Why a membership change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// Another change is not committed yet, or a joint phase is not over.
    #[error("another membership change is in progress")]
    InProgress,
    /// The leader has not yet committed an entry of its own term; until it
    /// has, an uncommitted change of an earlier leader may still be in its
    /// log (the single-server change bug, Ongaro 2015).
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The id is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// The id is not a member.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// The id is not a learner.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// The members heard from recently could not make a quorum of the new
    /// configuration (or of the joint one).
    #[error("the change would leave no quorum among the members up ({up:?})")]
    NoQuorum {
        /// The members the leader heard from recently, itself included.
        up: Vec<NodeId>,
    },
    /// The change itself is not valid.
    #[error("{0}")]
    Invalid(String),
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
///
/// The core keeps no image: its log holds the newest snapshot's metadata
/// only. A leader's `InstallSnapshot` leaves the core with `data` empty
/// ([`crate::Message::snapshot_to_send`]); the driver puts its newest
/// persisted snapshot there (as etcd-raft's leader asks its `Storage`).
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

impl PersistedState {
    /// The state every founding member of a new cluster starts from: the
    /// configuration as the first log entry, at term 0, already committed.
    /// All founders write the same entry, so it is committed by
    /// construction; from then on the configuration is Raft state and a
    /// restarted node takes it from its log, never from its flags.
    pub fn bootstrap(membership: Membership) -> Self {
        PersistedState {
            hard_state: HardState {
                term: 0,
                vote: 0,
                commit: 1,
            },
            snapshot: None,
            entries: vec![Entry {
                term: 0,
                index: 1,
                payload: Payload::Config(membership),
            }],
        }
    }
}

/// Why a node took its current role (or follows its current leader): what
/// operators read in the log beside each leader change and step-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleCause {
    /// It (re)started.
    Start,
    /// Its election timer fired: no leader heard for this many ticks.
    ElectionTimeout {
        /// The randomized timeout that ran out, in ticks.
        ticks: u64,
    },
    /// The leader asked it to take over (TimeoutNow, a leadership transfer).
    TransferRequested {
        /// The leader that asked.
        from: NodeId,
    },
    /// Its driver made it campaign (a lone voter at start, an operator).
    Campaign,
    /// A majority granted its pre-vote; the real election follows.
    PreVoteWon,
    /// A majority voted for it.
    ElectionWon,
    /// A majority refused its (pre-)vote.
    ElectionLost,
    /// A message of a higher term arrived.
    HigherTerm {
        /// Its sender.
        from: NodeId,
        /// Its term.
        term: Term,
    },
    /// The leader of its term was heard from.
    LeaderHeard {
        /// That leader.
        from: NodeId,
    },
    /// As leader, it did not hear from a majority for an election timeout
    /// (CheckQuorum).
    QuorumLost,
    /// The configuration no longer has it as a voter.
    NoLongerVoter,
}

impl std::fmt::Display for RoleCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleCause::Start => f.write_str("started"),
            RoleCause::ElectionTimeout { ticks } => {
                write!(f, "election timeout: no leader heard for {ticks} ticks")
            }
            RoleCause::TransferRequested { from } => {
                write!(f, "leader {from} handed leadership over (TimeoutNow)")
            }
            RoleCause::Campaign => f.write_str("asked to campaign"),
            RoleCause::PreVoteWon => f.write_str("a majority granted the pre-vote"),
            RoleCause::ElectionWon => f.write_str("a majority voted for it"),
            RoleCause::ElectionLost => f.write_str("a majority refused its vote request"),
            RoleCause::HigherTerm { from, term } => {
                write!(f, "node {from} sent a message of higher term {term}")
            }
            RoleCause::LeaderHeard { from } => write!(f, "heard from leader {from}"),
            RoleCause::QuorumLost => f.write_str(
                "check quorum: no word from a majority of the voters for an election timeout",
            ),
            RoleCause::NoLongerVoter => {
                f.write_str("the configuration no longer has it as a voter")
            }
        }
    }
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

/// What a compaction removed from the in-memory log: the entries the new
/// snapshot covers and the metadata of the snapshot it replaced. A driver drops it where
/// freeing it costs its loop nothing (a million entries take tens of
/// milliseconds to free).
#[derive(Debug, Default)]
pub struct Compacted {
    /// The entries dropped from the log, ascending.
    pub entries: Vec<Entry>,
    /// The snapshot replaced (its image is the driver's).
    pub snapshot: SnapshotMeta,
}
