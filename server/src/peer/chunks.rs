//! InstallSnapshot in chunks (paper §7: the leader sends the snapshot in
//! pieces, the follower reassembles it before it replaces its log): how a
//! snapshot message is split ([`split`]), and reassembled on the receiving
//! side. The sending task is [`super::snapshot_sender`].
//!
//! Receiving: [`SnapshotInbox`] keeps one partial snapshot per sender. A
//! chunk at offset 0 starts a transfer; any other chunk must continue the
//! current one exactly where it ended. When the last byte arrives and the
//! checksum matches, the receiving task decodes the state machine from it
//! off the Raft loop ([`DecodedSnapshot`](crate::node::DecodedSnapshot)) and the whole InstallSnapshot
//! message goes to Raft; a snapshot that does not decode is refused there,
//! and the leader sends it again later.

use std::collections::BTreeMap;
use std::sync::Mutex;

use raft_core::wire::SnapshotChunk;
use raft_core::{Message, MessageBody, NodeId, Snapshot, SnapshotMeta, Term};
use thiserror::Error;

/// Default chunk size.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// The largest snapshot a node accepts from a peer (the snapshot file
/// format's own limit).
pub const MAX_SNAPSHOT_BYTES: u64 = u32::MAX as u64;

/// Splits an InstallSnapshot message into chunks of at most `chunk_bytes`
/// (at least one chunk, even for empty data), made one at a time as they are
/// sent, so the snapshot is not copied whole first. `None` for other
/// messages.
pub fn split(
    msg: &Message,
    chunk_bytes: usize,
) -> Option<impl Iterator<Item = SnapshotChunk> + '_> {
    let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
        return None;
    };
    let data = &snapshot.data;
    let crc32 = crc32fast::hash(data);
    let total_len = data.len() as u64;
    let step = chunk_bytes.max(1);
    // Offsets of the chunks: 0 alone for empty data.
    let offsets = (0..data.len().max(1)).step_by(step);
    Some(offsets.map(move |at| {
        let piece = &data[at.min(data.len())..(at + step).min(data.len())];
        SnapshotChunk {
            from: msg.from,
            to: msg.to,
            term: msg.term,
            meta: snapshot.meta.clone(),
            total_len,
            crc32,
            offset: at as u64,
            data: piece.to_vec(),
        }
    }))
}

/// Why a chunk was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The snapshot is larger than this node accepts.
    #[error("snapshot of {total_len} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Declared snapshot length.
        total_len: u64,
        /// The limit.
        limit: u64,
    },
    /// The chunk reaches past the declared end of the snapshot.
    #[error(
        "chunk at offset {offset} with {len} bytes runs past the snapshot's {total_len} bytes"
    )]
    OutOfBounds {
        /// The chunk's offset.
        offset: u64,
        /// The chunk's length.
        len: u64,
        /// Declared snapshot length.
        total_len: u64,
    },
    /// The chunk does not continue the transfer in progress.
    #[error("chunk at offset {got} does not continue the transfer in progress (expected offset {expected}); restart from offset 0")]
    UnexpectedOffset {
        /// Where the transfer in progress ends (0 when there is none).
        expected: u64,
        /// The chunk's offset.
        got: u64,
    },
    /// The reassembled snapshot does not match its checksum.
    #[error(
        "reassembled snapshot fails its checksum (crc32 {actual:#010x}, expected {expected:#010x})"
    )]
    Checksum {
        /// The declared CRC32.
        expected: u32,
        /// The CRC32 of the bytes received.
        actual: u32,
    },
}

/// A transfer in progress.
struct Partial {
    term: Term,
    meta: SnapshotMeta,
    total_len: u64,
    crc32: u32,
    data: Vec<u8>,
}

impl Partial {
    fn continued_by(&self, c: &SnapshotChunk) -> bool {
        self.term == c.term
            && self.meta == c.meta
            && self.total_len == c.total_len
            && self.crc32 == c.crc32
    }
}

/// The receiving side: one partial snapshot per sending peer.
pub struct SnapshotInbox {
    limit: u64,
    partial: Mutex<BTreeMap<NodeId, Partial>>,
}

impl SnapshotInbox {
    /// An inbox accepting snapshots up to `limit` bytes.
    pub fn new(limit: u64) -> Self {
        SnapshotInbox {
            limit,
            partial: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes one chunk; answers the whole InstallSnapshot message when this
    /// chunk completes it. The caller has checked that `chunk.from` is a
    /// member, so at most one partial snapshot per member is ever held.
    pub fn accept(&self, chunk: SnapshotChunk) -> Result<Option<Message>, ChunkError> {
        let len = chunk.data.len() as u64;
        if chunk.total_len > self.limit {
            return Err(ChunkError::TooLarge {
                total_len: chunk.total_len,
                limit: self.limit,
            });
        }
        if chunk
            .offset
            .checked_add(len)
            .is_none_or(|end| end > chunk.total_len)
        {
            return Err(ChunkError::OutOfBounds {
                offset: chunk.offset,
                len,
                total_len: chunk.total_len,
            });
        }
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        if chunk.offset == 0 {
            // A new transfer replaces whatever was in progress from this peer:
            // the leader abandoned it (or a newer leader sends a newer one).
            partial.insert(
                chunk.from,
                Partial {
                    term: chunk.term,
                    meta: chunk.meta.clone(),
                    total_len: chunk.total_len,
                    crc32: chunk.crc32,
                    // Grows as chunks arrive; a declared length is not trusted
                    // with an allocation up front.
                    data: Vec::new(),
                },
            );
        }
        let Some(p) = partial.get_mut(&chunk.from) else {
            return Err(ChunkError::UnexpectedOffset {
                expected: 0,
                got: chunk.offset,
            });
        };
        if !p.continued_by(&chunk) {
            return Err(ChunkError::UnexpectedOffset {
                expected: 0,
                got: chunk.offset,
            });
        }
        if p.data.len() as u64 != chunk.offset {
            return Err(ChunkError::UnexpectedOffset {
                expected: p.data.len() as u64,
                got: chunk.offset,
            });
        }
        p.data.extend_from_slice(&chunk.data);
        if (p.data.len() as u64) < p.total_len {
            return Ok(None);
        }
        let done = partial
            .remove(&chunk.from)
            .expect("the partial snapshot was just extended");
        let actual = crc32fast::hash(&done.data);
        if actual != done.crc32 {
            return Err(ChunkError::Checksum {
                expected: done.crc32,
                actual,
            });
        }
        Ok(Some(Message {
            from: chunk.from,
            to: chunk.to,
            term: done.term,
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: done.meta,
                    data: done.data,
                },
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_snapshot_msg as snapshot_msg;

    fn reassemble(inbox: &SnapshotInbox, chunks: Vec<SnapshotChunk>) -> Option<Message> {
        let mut out = None;
        for c in chunks {
            assert!(out.is_none(), "completed before the last chunk");
            out = inbox.accept(c).expect("chunk accepted");
        }
        out
    }

    #[test]
    fn split_and_reassemble_round_trip() {
        for (len, chunk) in [(0, 4), (1, 4), (4, 4), (10, 4), (10_000, 999)] {
            let msg = snapshot_msg(len);
            let chunks = split(&msg, chunk).unwrap().collect::<Vec<_>>();
            assert_eq!(chunks.len(), len.div_ceil(chunk).max(1));
            assert!(chunks.iter().all(|c| c.data.len() <= chunk));
            let inbox = SnapshotInbox::new(MAX_SNAPSHOT_BYTES);
            assert_eq!(reassemble(&inbox, chunks), Some(msg));
        }
    }

    #[test]
    fn other_messages_are_not_split() {
        let hb = Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_ctx: 0,
                seq: 0,
            },
        };
        assert!(split(&hb, 10).is_none());
    }

    #[test]
    fn gap_or_repeat_is_refused_and_a_restart_recovers() {
        let msg = snapshot_msg(100);
        let chunks = split(&msg, 30).unwrap().collect::<Vec<_>>();
        let inbox = SnapshotInbox::new(MAX_SNAPSHOT_BYTES);
        assert_eq!(inbox.accept(chunks[0].clone()), Ok(None));
        // A lost chunk: the next one does not continue the transfer.
        assert_eq!(
            inbox.accept(chunks[2].clone()),
            Err(ChunkError::UnexpectedOffset {
                expected: 30,
                got: 60
            })
        );
        // A repeated chunk is refused the same way.
        assert_eq!(inbox.accept(chunks[1].clone()), Ok(None));
        assert!(inbox.accept(chunks[1].clone()).is_err());
        // The sender starts over; the half-received copy is discarded.
        assert_eq!(reassemble(&inbox, chunks), Some(msg));
    }

    #[test]
    fn chunk_of_another_snapshot_does_not_continue_a_transfer() {
        let inbox = SnapshotInbox::new(MAX_SNAPSHOT_BYTES);
        let a = split(&snapshot_msg(100), 50).unwrap().collect::<Vec<_>>();
        let mut b = split(&snapshot_msg(100), 50).unwrap().collect::<Vec<_>>();
        b[1].meta.index = 41;
        assert_eq!(inbox.accept(a[0].clone()), Ok(None));
        assert!(matches!(
            inbox.accept(b[1].clone()),
            Err(ChunkError::UnexpectedOffset { expected: 0, .. })
        ));
        // Without any transfer in progress a middle chunk is refused too.
        let fresh = SnapshotInbox::new(MAX_SNAPSHOT_BYTES);
        assert!(fresh.accept(a[1].clone()).is_err());
    }

    #[test]
    fn corrupt_bounds_limit_and_checksum_are_refused() {
        let inbox = SnapshotInbox::new(1000);
        let mut big = split(&snapshot_msg(10), 10).unwrap().next().unwrap();
        big.total_len = 1001;
        assert!(matches!(
            inbox.accept(big),
            Err(ChunkError::TooLarge { .. })
        ));
        let mut past = split(&snapshot_msg(10), 10).unwrap().next().unwrap();
        past.offset = u64::MAX - 2;
        assert!(matches!(
            inbox.accept(past),
            Err(ChunkError::OutOfBounds { .. })
        ));
        let mut flipped = split(&snapshot_msg(10), 4).unwrap().collect::<Vec<_>>();
        flipped[1].data[0] ^= 1;
        assert!(inbox.accept(flipped[0].clone()).unwrap().is_none());
        assert!(inbox.accept(flipped[1].clone()).unwrap().is_none());
        assert!(matches!(
            inbox.accept(flipped[2].clone()),
            Err(ChunkError::Checksum { .. })
        ));
    }
}
