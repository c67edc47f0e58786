//! The fuzz targets' bodies: each feeds arbitrary bytes to one decoder of
//! untrusted input and must return without panicking, whatever the bytes.
//! `server/tests/decoders.rs` includes this file to replay every input kept
//! in `fuzz/regressions/<target>/` and to run a bounded mutation loop on
//! stable Rust, so the same bodies run in CI.

use raft_core::wire::{PeerBatch, SnapshotChunk};
use raft_core::{Config, KvStore, Membership, PersistedState, RawNode};
use raft_kv_server::snapshot_transfer::SnapshotInbox;
use raft_kv_server::storage::decode;

/// A WAL segment file, read as the last segment and as an earlier one.
pub fn wal_segment(data: &[u8]) {
    for is_last in [true, false] {
        if let Ok(s) = decode::wal_segment(data, is_last) {
            assert!(s.valid_len <= data.len() as u64);
        }
    }
}

/// The body of one WAL record (past its length and CRC32).
pub fn wal_record(data: &[u8]) {
    let _ = decode::wal_record(data);
}

/// A snapshot file, and the state machine image inside it.
pub fn snapshot_file(data: &[u8]) {
    if let Ok(s) = decode::snapshot_file(data) {
        let _ = KvStore::restore(&s.data);
    }
    let _ = KvStore::restore(data);
}

/// A peer RPC body: a message batch, stepped into a follower of a 3-node
/// cluster (whatever the terms, indexes and senders say), or a snapshot chunk.
pub fn peer_rpc(data: &[u8]) {
    if let Ok(batch) = PeerBatch::decode(data) {
        let mut node = RawNode::new(
            Config::new(1),
            PersistedState::bootstrap(Membership::new(vec![1, 2, 3])),
        )
        .expect("a valid configuration");
        for msg in batch.messages {
            let _ = node.step(msg);
            if node.has_ready() {
                let ready = node.ready();
                node.advance(ready);
            }
        }
    }
    if let Ok(chunk) = SnapshotChunk::decode(data) {
        let _ = SnapshotInbox::new(1 << 20).accept(chunk);
    }
}
