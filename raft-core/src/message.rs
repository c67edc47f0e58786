//! The peer messages. One wire type per message; the server sends them in
//! batches with a compact binary serde encoding.

use serde::{Deserialize, Serialize};

use crate::types::{Entry, Index, NodeId, Snapshot, Term};

/// A message between two Raft nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The message kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Changes no state at the receiver
    /// (thesis §9.6).
    PreVote {
        /// Index of the candidate's last entry.
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
    },
    /// The answer to a pre-vote request.
    PreVoteResponse {
        /// Whether the receiver would grant its vote.
        granted: bool,
    },
    /// RequestVote (paper §5.2).
    Vote {
        /// Index of the candidate's last entry.
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
        /// Set when the campaign follows a leadership transfer, so that the
        /// voters' leader lease does not stop it (thesis §3.10).
        transfer: bool,
    },
    /// The answer to a vote request.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries (paper §5.3).
    Append {
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// The entries to append (maybe none).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to `Append` or `InstallSnapshot`.
    AppendResponse {
        /// Whether the entries were accepted.
        success: bool,
        /// On success: the last index now known to match the leader's log.
        /// On reject: the `prev_index` that did not match.
        index: Index,
        /// On reject: the follower's hint for the leader's next probe. The
        /// largest index `<= index` whose term is `<= hint_term` in the
        /// follower's log (or its last index when shorter), so the leader
        /// skips a term at a time.
        hint_index: Index,
        /// On reject: the term of the follower's entry at `hint_index`.
        hint_term: Term,
    },
    /// The leader's heartbeat. Carries the commit index (capped at what the
    /// follower is known to hold) and a read context for ReadIndex.
    Heartbeat {
        /// `min(leader commit, follower match)`.
        commit: Index,
        /// The newest pending ReadIndex context (0: none).
        read_ctx: u64,
        /// The leader's heartbeat round, echoed in the answer.
        seq: u64,
    },
    /// The answer to a heartbeat.
    HeartbeatResponse {
        /// Echo of the heartbeat's read context.
        read_ctx: u64,
        /// Echo of the heartbeat's round.
        seq: u64,
        /// The follower's last log index when it answered. Below what it
        /// acknowledged, in answer to a round sent after that
        /// acknowledgement, it proves the follower lost durable state.
        last_index: Index,
    },
    /// InstallSnapshot (paper §7).
    InstallSnapshot {
        /// The leader's snapshot.
        snapshot: Snapshot,
    },
    /// A follower asks the leader for a read index on behalf of a client
    /// (thesis §6.4).
    ReadIndex {
        /// The follower's context, echoed in the response.
        ctx: u64,
    },
    /// The leader's answer to `ReadIndex`.
    ReadIndexResponse {
        /// The follower's context.
        ctx: u64,
        /// The index the follower must apply before it serves the read;
        /// `None` when the leader refused (it is not, or no longer, leader).
        index: Option<Index>,
    },
    /// Tells the transfer target to start an election at once (thesis §3.10).
    TimeoutNow,
}

impl Message {
    /// The snapshot of an `InstallSnapshot` leaving the core, for the
    /// driver to fill in: the core keeps only snapshot metadata, so its
    /// message carries `data` empty, and the driver replaces the whole
    /// snapshot (metadata and image) with the newest one it persisted,
    /// whose index is at least the metadata's (see `send_snapshot` in
    /// `raft/replication.rs` for why a newer one is as good). `None` for
    /// other messages.
    pub fn snapshot_to_send(&mut self) -> Option<&mut crate::types::Snapshot> {
        match &mut self.body {
            MessageBody::InstallSnapshot { snapshot } => Some(snapshot),
            _ => None,
        }
    }
}

impl MessageBody {
    /// A short, stable name for logs, metrics and the dashboard.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "pre_vote",
            MessageBody::PreVoteResponse { .. } => "pre_vote_response",
            MessageBody::Vote { .. } => "vote",
            MessageBody::VoteResponse { .. } => "vote_response",
            MessageBody::Append { .. } => "append",
            MessageBody::AppendResponse { .. } => "append_response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
            MessageBody::InstallSnapshot { .. } => "install_snapshot",
            MessageBody::ReadIndex { .. } => "read_index",
            MessageBody::ReadIndexResponse { .. } => "read_index_response",
            MessageBody::TimeoutNow => "timeout_now",
        }
    }
}
