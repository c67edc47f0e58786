//! What the Raft loop's requests and the loop itself can fail with.

use raft_core::replica::RequestError;
use raft_core::{ConfChangeError, NodeId, NotAccepted};

use crate::storage::StorageError;

/// What a client request can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node cannot serve it; `leader` is the one it knows of.
    #[error("not the leader")]
    NotLeader {
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is in progress.
    #[error("leadership transfer in progress")]
    Transferring,
    /// Another entry was committed where the write was proposed: the write
    /// was not applied and can be retried safely.
    #[error("leadership changed before the write committed")]
    LeadershipChanged,
    /// The outcome of the write cannot be known here (a snapshot replaced
    /// the log around it). Retry with the same client id and sequence.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(&'static str),
    /// The request is invalid for the node (e.g. an unknown transfer target).
    #[error("{0}")]
    Rejected(String),
    /// A membership change was refused.
    #[error("{0}")]
    ConfChange(ConfChangeError),
    /// The node is shutting down (or its storage failed).
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl From<NotAccepted> for NodeError {
    fn from(e: NotAccepted) -> Self {
        match e {
            NotAccepted::NotLeader { leader } => NodeError::NotLeader { leader },
            NotAccepted::Transferring => NodeError::Transferring,
            NotAccepted::ConfChange(e) => NodeError::ConfChange(e),
            other => NodeError::Rejected(other.to_string()),
        }
    }
}

impl From<RequestError> for NodeError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotLeader { leader } => NodeError::NotLeader { leader },
            RequestError::NotApplied => NodeError::LeadershipChanged,
            RequestError::Unknown(why) => NodeError::OutcomeUnknown(why),
            RequestError::Snapshot(why) => NodeError::Rejected(why),
        }
    }
}

/// A failure that stops the node: its durable state can no longer be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// The storage failed.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// A snapshot from the leader does not decode.
    #[error("{0}")]
    BadSnapshot(String),
    /// The leader sent entries that contradict this node's committed log.
    #[error("{0}")]
    Diverged(String),
}

/// The node could not be built from its persisted state.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        StartError(e.to_string())
    }
}
