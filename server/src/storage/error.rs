//! The one error type of the storage layer. Every variant that concerns a
//! file names it (and, for damaged data, the byte offset) so that an operator
//! reading the start-up failure knows which file to look at.

use std::io;
use std::path::{Path, PathBuf};

use raft_core::Index;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused an operation (disk full, permissions,
    /// a failed fsync, ...).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done ("write", "fsync", "rename", ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file holds data that fails its checks (wrong magic, bad checksum,
    /// impossible content). Never repaired silently: the node refuses to start.
    #[error("{} is corrupt at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in the file the damage was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written in another version of its format (older, or newer
    /// or unknown). Refused before any of its content is read: never
    /// misread.
    #[error(
        "{} has format version {found}, but this build reads only version {supported} ({})",
        path.display(),
        version_hint(*found, *supported)
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A WAL segment the log needs is absent (a gap in the sequence, or a WAL
    /// that does not reach back to the snapshot).
    #[error("missing WAL segment {}: {reason}", path.display())]
    MissingSegment {
        /// The expected segment (or the first segment present after the gap).
        path: PathBuf,
        /// What the log needed.
        reason: String,
    },
    /// The WAL refers to a snapshot whose file is absent.
    #[error("missing snapshot file {}: {reason}", path.display())]
    MissingSnapshot {
        /// The expected snapshot file.
        path: PathBuf,
        /// Why it is needed.
        reason: String,
    },
    /// Another process (or another `DiskStorage` in this one) has the data
    /// directory open.
    #[error("{} is in use by another storage instance", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The caller asked to store a snapshot older than the stored one.
    #[error("snapshot at index {index} is older than the stored snapshot at index {current}")]
    SnapshotOutOfDate {
        /// The rejected snapshot's index.
        index: Index,
        /// The stored snapshot's index.
        current: Index,
    },
    /// The entries of one `persist` call are not consecutive.
    #[error("entries to persist are not consecutive: index {got} follows index {prev}")]
    BatchNotContiguous {
        /// The index before the break.
        prev: Index,
        /// The index after it.
        got: Index,
    },
    /// The new entries do not attach to the stored log.
    #[error(
        "log gap: the first new entry has index {first} but the stored log ends at index {last}"
    )]
    LogGap {
        /// The first new entry's index.
        first: Index,
        /// The last stored index (or the snapshot's index when the log is empty).
        last: Index,
    },
    /// A value could not be serialized.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: postcard::Error,
    },
    /// One `persist` produced a record too large for the WAL's 32-bit length.
    #[error("a WAL record of {len} bytes exceeds the {max}-byte limit")]
    RecordTooLarge {
        /// The record's size.
        len: usize,
        /// The largest size the format allows.
        max: usize,
    },
    /// An earlier write failed, so what is on disk is unknown; the store
    /// refuses every further call. Restart the node (recovery repairs a torn
    /// tail) after fixing the cause.
    #[error("storage is unusable after an earlier failure: {cause}")]
    Poisoned {
        /// The first failure.
        cause: String,
    },
}

impl StorageError {
    /// Whether this error (or the failure that poisoned the store) is a full
    /// disk, so that the driver can report it distinctly.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            StorageError::Poisoned { cause } => cause.contains("No space left on device"),
            _ => false,
        }
    }

    /// Whether the store must not be used any more after this error: an IO
    /// failure leaves the files in an unknown state. Validation errors
    /// (nothing was written) do not poison.
    pub(crate) fn poisons(&self) -> bool {
        matches!(self, StorageError::Io { .. } | StorageError::Corrupt { .. })
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Says which side of the version gap a file is on.
fn version_hint(found: u32, supported: u32) -> &'static str {
    if found < supported {
        "an older format: this build does not convert it"
    } else {
        "a newer or unknown format"
    }
}

/// Maps an `io::Error` of operation `op` on `path` into a [`StorageError`].
pub(crate) fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { path, op, source }
}
