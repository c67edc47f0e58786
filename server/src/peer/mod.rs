//! The peer network: how one node's Raft messages reach another.
//!
//! - [`transport`]: the sending side, driven by the Raft loop through
//!   [`crate::node::Outbound`]: one queue and one stream per peer, batches,
//!   reconnects with backoff.
//! - [`handshake`]: the peer stream's upgrade handshake (`GET /raft/stream`).
//! - [`codec`]: the stream's frames (length + postcard `PeerBatch`).
//! - [`receiver`]: the receiving side: one task per member hands its frames
//!   to the Raft loop.
//! - [`credentials`]: who a node says it is to its peers, and the check of
//!   what a peer says.
//! - [`chunks`]: InstallSnapshot split into chunks and reassembled.
//! - [`snapshot_sender`]: the task per peer that sends them.
//! - [`Partition`]: the test-only switch that cuts peers off.
//!
//! The HTTP endpoints of the peer RPC (the stream's 101, the snapshot chunk
//! post) are in `http::peer`; this module knows nothing of the HTTP state.

pub mod chunks;
pub mod codec;
pub mod credentials;
pub mod handshake;
pub mod receiver;
pub mod snapshot_sender;
pub mod transport;

use std::collections::BTreeSet;
use std::sync::RwLock;

use raft_core::NodeId;

pub use chunks::{ChunkError, SnapshotInbox, DEFAULT_CHUNK_BYTES, MAX_SNAPSHOT_BYTES};
pub use credentials::{check_identity, Credentials, RefusalLog, Refused};
pub use receiver::PeerStreams;
pub use transport::{Transport, TransportOptions};

/// The test-only partition switch: peers whose traffic this node drops, in
/// both directions.
#[derive(Debug, Default)]
pub struct Partition {
    blocked: RwLock<BTreeSet<NodeId>>,
}

impl Partition {
    /// Replaces the set of blocked peers.
    pub fn set(&self, peers: impl IntoIterator<Item = NodeId>) {
        let mut b = self.blocked.write().unwrap_or_else(|e| e.into_inner());
        *b = peers.into_iter().collect();
    }

    /// Whether traffic to or from `peer` is dropped.
    pub fn blocks(&self, peer: NodeId) -> bool {
        let b = self.blocked.read().unwrap_or_else(|e| e.into_inner());
        !b.is_empty() && b.contains(&peer)
    }

    /// The blocked peers.
    pub fn blocked(&self) -> Vec<NodeId> {
        let b = self.blocked.read().unwrap_or_else(|e| e.into_inner());
        b.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_blocks_listed_peers() {
        let p = Partition::default();
        assert!(!p.blocks(2));
        p.set([2, 3]);
        assert!(p.blocks(2) && p.blocks(3) && !p.blocks(4));
        p.set([]);
        assert!(!p.blocks(2));
    }
}
