//! Node configuration and the crate's error types.

use crate::types::{ConfChangeError, NodeId};

/// How a node behaves. Timeouts are counted in ticks of the driver's clock.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Base election timeout in ticks; each wait is drawn from
    /// `election_tick..2*election_tick` (paper §5.2).
    pub election_tick: u64,
    /// Heartbeat interval in ticks; must be below `election_tick`.
    pub heartbeat_tick: u64,
    /// Ask for pre-votes before raising the term (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a majority for an election timeout
    /// steps down, and voters ignore vote requests while they hear from a
    /// leader (thesis §6.2, §4.2.3).
    pub check_quorum: bool,
    /// Unanswered appends allowed per follower in replicate state.
    pub max_inflight: usize,
    /// Upper bound on the entry bytes in one append message.
    pub max_batch_bytes: usize,
    /// Upper bound on the entry bytes handed out to apply in one `Ready`.
    pub max_apply_bytes: usize,
    /// Seed of the node's PRNG (election jitter).
    pub seed: u64,
    /// An auto-promoted learner counts as caught up while its match index
    /// is at most this many entries behind the leader's last index.
    pub promote_lag: u64,
    /// Ticks a learner must stay caught up before the leader promotes it.
    pub promote_after_ticks: u64,
    /// How many client sessions the state machine keeps before it forgets
    /// the least recently used ([`crate::kv::KvStore::set_session_limit`]).
    /// It decides what is applied, so every member must have the same:
    /// the server keeps the default ([`crate::kv::MAX_CLIENTS`]); the
    /// simulator sets one for all the nodes of a run.
    pub session_limit: usize,
    /// Test-only protocol faults.
    #[cfg(feature = "faults")]
    pub faults: Faults,
}

impl Config {
    /// Defaults: election 10 ticks, heartbeat 1 tick, PreVote and
    /// CheckQuorum on, 256 in flight, 1 MiB batches.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            pre_vote: true,
            check_quorum: true,
            max_inflight: 256,
            max_batch_bytes: 1 << 20,
            max_apply_bytes: 4 << 20,
            seed: id,
            promote_lag: 64,
            promote_after_ticks: 20,
            session_limit: crate::kv::MAX_CLIENTS,
            #[cfg(feature = "faults")]
            faults: Faults::default(),
        }
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError("node id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError("heartbeat_tick must be at least 1".into()));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError(
                "election_tick must be greater than heartbeat_tick".into(),
            ));
        }
        if self.promote_after_ticks == 0 {
            return Err(ConfigError("promote_after_ticks must be at least 1".into()));
        }
        if self.max_inflight == 0 {
            return Err(ConfigError("max_inflight must be at least 1".into()));
        }
        if self.session_limit == 0 {
            return Err(ConfigError("session_limit must be at least 1".into()));
        }
        Ok(())
    }
}

/// Deliberate protocol bugs, to prove the simulator's checkers find them.
/// Only compiled with the `faults` feature, which no product build enables.
#[cfg(feature = "faults")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Commit by counting replicas of entries from earlier terms (the
    /// figure 8 bug, paper §5.4.2).
    pub commit_previous_term: bool,
    /// Report the vote as unchanged in the hard state, so it is never
    /// persisted and a restarted node can vote twice in one term.
    pub forget_vote: bool,
    /// Answer read requests at the local commit index without confirming
    /// leadership with a quorum (no ReadIndex round).
    pub stale_reads: bool,
    /// Let a follower's append acknowledgements leave before its write is
    /// durable (in `Ready::messages`), so a crash during the write loses
    /// entries the leader already counted toward commit.
    pub early_acks: bool,
    /// Change voters in one step, without a joint configuration, and accept
    /// a new change before the previous one committed: two changes in
    /// flight can make two disjoint majorities.
    pub unsafe_conf_change: bool,
    /// Let the state machine ignore its session table: every command is
    /// applied as new, so a retried write (the same client id and sequence
    /// number in a later log entry) changes the map a second time.
    pub ignore_sessions: bool,
    /// Let the state machine ignore the condition of a conditional write
    /// (`Op::PutIf`, `Op::DeleteIf`): it is applied whatever the key's
    /// modification index, so a write based on a stale read overwrites a
    /// newer value.
    pub ignore_conditions: bool,
    /// Number read contexts from 1 on every boot instead of from the
    /// boot's seed: an answer to the previous incarnation's read `n`,
    /// delivered after a restart, then serves the new read `n` with a read
    /// index from before the restart.
    pub reuse_read_contexts: bool,
    /// Answer a waiting write "not applied" as soon as a new proposal lands
    /// on its index (the old driver's waiter table, keyed by index alone),
    /// although the entry it was proposed as may still be committed by
    /// another leader that holds it.
    pub answer_replaced_writes: bool,
}

/// An invalid [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft config: {0}")]
pub struct ConfigError(pub String);

/// Why a proposal, a read or a transfer was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAccepted {
    /// This node is not the leader; `leader` is the one it knows (if any).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is in progress; retry shortly.
    #[error("leadership transfer in progress")]
    Transferring,
    /// The request names a node that is not a member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    ConfChange(#[from] ConfChangeError),
    /// The snapshot index is not usable (not applied yet, or not newer).
    #[error("cannot snapshot at index {index}: {reason}")]
    BadSnapshot {
        /// The requested index.
        index: u64,
        /// Why.
        reason: &'static str,
    },
}

/// Why a message from the network was rejected. Rejected messages change
/// nothing; the node counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to node {me}")]
    WrongRecipient {
        /// The addressee.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The sender is not a member (or is this node).
    #[error("message from unknown node {0}")]
    UnknownSender(NodeId),
    /// The leader sent entries that contradict entries this node already
    /// committed. Raft's safety is broken (two leaders' logs diverged below
    /// the commit index, e.g. a member restarted with another data
    /// directory); the node must stop rather than acknowledge (etcd panics).
    #[error(
        "entry {index} from leader {leader} has term {theirs}, but this node committed term {ours} there: \
         the logs diverged below the commit index; stopping"
    )]
    CommittedConflict {
        /// The leader that sent it.
        leader: NodeId,
        /// The conflicting index.
        index: u64,
        /// The term of our committed entry there.
        ours: u64,
        /// The term in the leader's entry.
        theirs: u64,
    },
    /// The message's fields contradict each other.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// The message kind.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}
