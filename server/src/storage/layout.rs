//! Which files live in a data directory, how they are named, and making
//! changes to the directory itself durable.
//!
//! ```text
//! data-dir/
//!   LOCK                        held (flock) while a DiskStorage is open
//!   wal-0000000000000001.log    WAL segments, numbered 1, 2, 3, ... without gaps
//!   wal-0000000000000002.log
//!   snap-00000000000004d2.snap  snapshot covering the log up to index 0x4d2
//!   *.tmp                       half-written files; removed on open
//! ```

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use raft_core::Index;

use super::error::{io_err, StorageError};

/// The name of the lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The suffix of files that are still being written.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `wal-<seq as 16 hex digits>.log`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// `snap-<index as 16 hex digits>.snap`.
pub(crate) fn snapshot_name(index: Index) -> String {
    format!("snap-{index:016x}.snap")
}

/// The number in a name of the form `<prefix><16 hex digits><suffix>`.
fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What a data directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// WAL segments, ascending by sequence number.
    pub segments: Vec<(u64, PathBuf)>,
    /// Snapshot files, ascending by index.
    pub snapshots: Vec<(Index, PathBuf)>,
    /// Leftovers of interrupted writes.
    pub temps: Vec<PathBuf>,
}

/// Lists `dir`. Files that are not ours are ignored.
pub(crate) fn list(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for item in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let item = item.map_err(io_err(dir, "list"))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = item.path();
        if name.ends_with(TMP_SUFFIX) {
            listing.temps.push(path);
        } else if let Some(seq) = parse_numbered(name, "wal-", ".log") {
            listing.segments.push((seq, path));
        } else if let Some(index) = parse_numbered(name, "snap-", ".snap") {
            listing.snapshots.push((index, path));
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// Makes the creation, renaming or removal of entries in `dir` durable: a
/// file's own fsync does not cover the directory entry that names it.
pub(crate) fn sync_dir(dir: &Path, sync: bool) -> Result<(), StorageError> {
    if !sync {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Removes `path` and makes the removal durable before returning, so that
/// removals done in order also survive a crash in order.
pub(crate) fn remove_durably(dir: &Path, path: &Path, sync: bool) -> Result<(), StorageError> {
    fs::remove_file(path).map_err(io_err(path, "remove"))?;
    sync_dir(dir, sync)
}

/// `path` with [`TMP_SUFFIX`] appended.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(1), "wal-0000000000000001.log");
        assert_eq!(snapshot_name(0x4d2), "snap-00000000000004d2.snap");
        assert_eq!(parse_numbered(&segment_name(77), "wal-", ".log"), Some(77));
        assert_eq!(
            parse_numbered(&snapshot_name(u64::MAX), "snap-", ".snap"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn foreign_names_are_ignored() {
        for name in [
            "wal-1.log",
            "wal-000000000000000g.log",
            "snap-.snap",
            "x.log",
        ] {
            assert_eq!(parse_numbered(name, "wal-", ".log"), None, "{name}");
        }
    }
}
