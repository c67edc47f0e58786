//! The decoders of everything a node reads back from its disk, over bytes
//! in memory: the entry points of the fuzz targets (`fuzz/` at the
//! repository root) and of their regression tests. Whatever the bytes, each
//! answers a value or an error naming the offset; none may panic or
//! allocate without bound.

use std::path::Path;

use raft_core::Snapshot;

use super::error::StorageError;
use super::record::{self, Record};
use super::{snapshot_file, wal};

/// What a WAL segment held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Records decoded.
    pub records: usize,
    /// Entries in them.
    pub entries: usize,
    /// Length of the valid part (shorter than the input when the tail was
    /// torn and would be truncated).
    pub valid_len: u64,
}

/// Scans `bytes` as a WAL segment file, as recovery does, taking the
/// sequence number from the header (so that fuzzing reaches past it) and
/// treating the segment as the last one when `is_last`.
pub fn wal_segment(bytes: &[u8], is_last: bool) -> Result<SegmentSummary, StorageError> {
    let seq = bytes
        .get(12..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let mut records = 0;
    let mut entries = 0;
    let end = wal::scan_bytes(
        Path::new("<fuzz input>"),
        bytes,
        seq,
        is_last,
        |_, Record::Ready { entries: e, .. }| {
            records += 1;
            entries += e.len();
            Ok(())
        },
    )?;
    Ok(SegmentSummary {
        records,
        entries,
        valid_len: end.valid_len,
    })
}

/// Decodes `payload` as the body of one WAL record (what a frame holds once
/// its length and CRC32 check out); answers its number of entries.
pub fn wal_record(payload: &[u8]) -> Result<usize, postcard::Error> {
    record::decode(payload).map(|Record::Ready { entries, .. }| entries.len())
}

/// Verifies and decodes `bytes` as a snapshot file.
pub fn snapshot_file(bytes: &[u8]) -> Result<Snapshot, StorageError> {
    snapshot_file::parse(Path::new("<fuzz input>"), bytes)
}
