//! Durable storage of a node's Raft state: the hard state, the log and
//! snapshots.
//!
//! [`Storage`] is what the driver calls; [`DiskStorage`] is the real
//! implementation (a segmented write-ahead log plus snapshot files; the file
//! formats are described in `wal`, `record` and `snapshot_file`, the rule
//! that tells a torn WAL tail from damage in `wal`, the other start-up rules
//! in `recovery`), [`MemoryStorage`] the in-memory one for tests and the
//! reference model the disk store is tested against.
//!
//! Semantics shared by both (the disk store's tests check it against the
//! memory store):
//! - A snapshot at `(index, term)` — received from the leader or made by the
//!   node — replaces the log up to `index`. The entries after it stay only if
//!   the log holds an entry `(index, term)` (Raft paper §7); otherwise the
//!   whole log goes and restarts at `index + 1`. A snapshot older than the
//!   stored one is refused ([`StorageError::SnapshotOutOfDate`]).
//! - New entries must be consecutive; those the snapshot already covers are
//!   skipped; the first one may rewrite stored entries (conflict truncation:
//!   it replaces the entry at its index and drops every later one) but must
//!   not leave a gap ([`StorageError::LogGap`]).
//! - A call that is refused changes nothing. A call that fails on IO poisons
//!   the disk store: every later call fails with [`StorageError::Poisoned`].

use raft_core::{Entry, HardState, PersistedState, Snapshot};

pub mod decode;
mod disk;
mod error;
mod layout;
mod log_shape;
mod memory;
mod record;
mod recovery;
mod snapshot_file;
mod wal;

pub use disk::DiskStorage;
pub use error::StorageError;
pub use memory::MemoryStorage;
pub use snapshot_file::SnapshotSource;

/// Where a node keeps its Raft state. One `persist` = one fsync (group commit).
pub trait Storage: Send + 'static {
    /// Everything persisted so far (called once at start-up): the newest valid snapshot, the hard state and the log entries after the snapshot (contiguous, ascending).
    fn load(&mut self) -> Result<PersistedState, StorageError>;
    /// Durably records one Raft `Ready`: first a snapshot received from the leader (it replaces every log entry up to and including its index; entries after it that do not match are dropped too — simplest: drop the whole log and start it after the snapshot), then `entries` (an entry whose index is already stored replaces that entry and every later one: conflict truncation), then the hard state. Returns only after the data is durable (one fsync of the WAL for the batch, when sync is enabled).
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError>;
    /// Durably stores a snapshot the node made itself (state machine image at an applied index) and compacts: drops WAL segments wholly covered by it and older snapshot files. The same as [`SnapshotWriter::write`] followed by [`Storage::record_snapshot`].
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.snapshot_writer().write(snapshot)?;
        self.record_snapshot(snapshot)
    }
    /// What writes a snapshot's file durably, away from the Raft loop (on another thread, while `persist` goes on). The file counts only once [`Storage::record_snapshot`] recorded it.
    fn snapshot_writer(&self) -> SnapshotWriter;
    /// Records a snapshot whose file a [`SnapshotWriter`] wrote, and compacts as [`Storage::save_snapshot`] does. A snapshot older than the one already stored is refused with [`StorageError::SnapshotOutOfDate`] (its file is removed). A directory store reads only `snapshot.meta` (the image is in the file, as [`SnapshotWriter::write_state`] leaves it); the in-memory store keeps `snapshot.data`.
    fn record_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
}

/// Writes snapshot files durably (temp file, fsync, rename, directory
/// fsync) without touching the log: safe to run on another thread.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    /// The data directory (`None`: an in-memory store, nothing to write).
    pub(crate) dir: Option<std::path::PathBuf>,
    pub(crate) sync: bool,
}

impl SnapshotWriter {
    /// Writes the snapshot of `kv` at `meta` durably, the image serialized
    /// straight into the file (never whole in memory); returns what
    /// [`Storage::record_snapshot`] takes and the image's length. With a
    /// directory that is the metadata alone (`data` empty: the image is in
    /// the file, and recording reads only the metadata); an in-memory
    /// store keeps the image, so it is serialized into `data`.
    pub fn write_state(
        &self,
        meta: &raft_core::SnapshotMeta,
        kv: &raft_core::KvStore,
    ) -> Result<(Snapshot, u64), StorageError> {
        match &self.dir {
            Some(dir) => {
                let (_, len) = snapshot_file::write_streamed(dir, meta, self.sync, |out| {
                    kv.write_snapshot(out)
                })?;
                let snapshot = Snapshot {
                    meta: meta.clone(),
                    data: Vec::new(),
                };
                Ok((snapshot, len))
            }
            None => {
                let data = kv.snapshot();
                let len = data.len() as u64;
                Ok((
                    Snapshot {
                        meta: meta.clone(),
                        data,
                    },
                    len,
                ))
            }
        }
    }

    /// Writes `snapshot`'s file; returns once it is durable.
    pub fn write(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        match &self.dir {
            Some(dir) => snapshot_file::write(dir, snapshot, self.sync).map(drop),
            None => Ok(()),
        }
    }
}

/// The newest snapshot file in the data directory `dir` at `index` or
/// later, if any: what a backup streams. Its contents are whole (written
/// to a temporary file and renamed) and self-checking (see
/// `snapshot_file`).
pub fn newest_snapshot_file(
    dir: &std::path::Path,
    index: raft_core::Index,
) -> Result<Option<(raft_core::Index, std::path::PathBuf)>, StorageError> {
    let listing = layout::list(dir)?;
    Ok(listing
        .snapshots
        .into_iter()
        .rev()
        .find(|(i, _)| *i >= index))
}

/// How a [`DiskStorage`] writes.
/// The newest snapshot file in `dir` at or after `index`, opened and
/// verified for its image to be read in pieces: what a leader streams to a
/// lagging follower (the Raft core keeps no image). A file removed between
/// the listing and the opening (a newer snapshot was recorded meanwhile,
/// and compaction removes the older files; an open file stays readable) is
/// looked for again; `None` when there is no such file.
pub fn open_newest_snapshot(
    dir: &std::path::Path,
    index: raft_core::Index,
) -> Result<Option<SnapshotSource>, StorageError> {
    loop {
        let Some((at, path)) = newest_snapshot_file(dir, index)? else {
            return Ok(None);
        };
        match SnapshotSource::open(&path, at) {
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other.map(Some),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    /// fsync files and the directory so that a returned call survives a
    /// crash. Off only for benchmarks and tests: without it a power loss can
    /// lose acknowledged writes.
    pub sync: bool,
    /// Start a new WAL segment once the current one reaches this size, so
    /// that compaction can delete old log data a whole file at a time.
    pub segment_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            sync: true,
            segment_bytes: 64 << 20,
        }
    }
}

/// No-op entries with the given terms, numbered from `first` (unit tests).
#[cfg(test)]
pub(crate) fn test_entries(first: raft_core::Index, terms: &[raft_core::Term]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first..)
        .map(|(&term, index)| Entry {
            term,
            index,
            payload: raft_core::Payload::Noop,
        })
        .collect()
}
