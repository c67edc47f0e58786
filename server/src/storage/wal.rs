//! WAL segment files: the header, appending records, and reading them back.
//!
//! A segment is `header | frame | frame | ...` (frames: see [`super::record`]).
//! Header: `magic "RAFTKVWL" | version: u32 LE | seq: u64 LE | crc32 of the
//! previous 20 bytes: u32 LE`. A new segment is written to a `.tmp` file with
//! its header and first record, fsynced and renamed, so a segment that exists
//! always has a whole header.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{io_err, StorageError};
use super::layout::{segment_name, sync_dir, tmp_path};
use super::record::{decode, parse_frame, valid_frame_after, Record};

/// Identifies a WAL segment.
pub(crate) const WAL_MAGIC: [u8; 8] = *b"RAFTKVWL";
/// The segment format this build reads and writes.
/// 2: configurations carry learners, the joint phase and member addresses.
pub(crate) const WAL_VERSION: u32 = 2;
/// The header's size.
pub(crate) const HEADER_LEN: usize = 24;

fn encode_header(seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(&WAL_MAGIC);
    h[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header of segment `seq` read from `path`.
fn check_header(path: &Path, bytes: &[u8], seq: u64) -> Result<(), StorageError> {
    let corrupt = |reason: &str| StorageError::corrupt(path, 0, reason);
    let h = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt("file is shorter than the segment header"))?;
    if h[..8] != WAL_MAGIC {
        return Err(corrupt("not a raft-kv WAL segment (wrong magic bytes)"));
    }
    // `h` is exactly HEADER_LEN bytes, so these fixed indexes are in bounds.
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let version = u32_at(8);
    if version != WAL_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: WAL_VERSION,
        });
    }
    if crc32fast::hash(&h[..20]) != u32_at(20) {
        return Err(corrupt("segment header fails its CRC32 check"));
    }
    let found = u64::from(u32_at(12)) | (u64::from(u32_at(16)) << 32);
    if found != seq {
        return Err(corrupt(&format!(
            "header says segment {found} but the file name says {seq}"
        )));
    }
    Ok(())
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    file: File,
    path: PathBuf,
    seq: u64,
    len: u64,
    sync: bool,
}

impl SegmentWriter {
    /// Creates segment `seq` in `dir` holding the header and `first` (whole
    /// frames), durably: tmp file, fsync, rename, directory fsync.
    pub(crate) fn create(
        dir: &Path,
        seq: u64,
        first: &[u8],
        sync: bool,
    ) -> Result<Self, StorageError> {
        let path = dir.join(segment_name(seq));
        let tmp = tmp_path(&path);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + first.len());
        bytes.extend_from_slice(&encode_header(seq));
        bytes.extend_from_slice(first);
        file.write_all(&bytes).map_err(io_err(&tmp, "write"))?;
        if sync {
            file.sync_all().map_err(io_err(&tmp, "fsync"))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
        sync_dir(dir, sync)?;
        Ok(SegmentWriter {
            file,
            path,
            seq,
            len: bytes.len() as u64,
            sync,
        })
    }

    /// Opens an existing segment, `len` bytes long and already verified, for
    /// appending.
    pub(crate) fn open(path: &Path, seq: u64, len: u64, sync: bool) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path, "open for append"))?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            seq,
            len,
            sync,
        })
    }

    /// Appends whole frames and, when sync is on, fsyncs them: the one fsync
    /// of a `persist`.
    pub(crate) fn append(&mut self, frames: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(frames)
            .map_err(io_err(&self.path, "write"))?;
        self.len += frames.len() as u64;
        if self.sync {
            self.file.sync_data().map_err(io_err(&self.path, "fsync"))?;
        }
        Ok(())
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// The length of the valid part (header and whole, valid records).
    pub valid_len: u64,
    /// The file's length; larger than `valid_len` when the tail is torn.
    pub file_len: u64,
}

/// Reads segment `seq` at `path` and hands each record, with its offset, to
/// `on_record`, in order.
///
/// Rule: a bad frame (cut short, zero length or failing its CRC) is a torn
/// tail — the interrupted last write — only in the last segment and only if
/// no valid frame follows it; the scan then stops there and reports the valid
/// length. Anywhere else it is corruption, reported with the file and offset.
pub(crate) fn scan(
    path: &Path,
    seq: u64,
    is_last: bool,
    on_record: impl FnMut(u64, Record) -> Result<(), StorageError>,
) -> Result<ScanEnd, StorageError> {
    let bytes = fs::read(path).map_err(io_err(path, "read"))?;
    scan_bytes(path, &bytes, seq, is_last, on_record)
}

/// [`scan`] over a segment's bytes already in memory; `path` names it in
/// errors.
pub(crate) fn scan_bytes(
    path: &Path,
    bytes: &[u8],
    seq: u64,
    is_last: bool,
    mut on_record: impl FnMut(u64, Record) -> Result<(), StorageError>,
) -> Result<ScanEnd, StorageError> {
    check_header(path, bytes, seq)?;
    let file_len = bytes.len() as u64;
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match parse_frame(bytes, at) {
            Ok((payload, next)) => {
                let record = decode(payload).map_err(|e| {
                    StorageError::corrupt(
                        path,
                        at as u64,
                        format!("record passes its CRC32 check but cannot be decoded: {e}"),
                    )
                })?;
                on_record(at as u64, record)?;
                at = next;
            }
            Err(bad) if is_last && !valid_frame_after(bytes, at) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = bytes.len() - at,
                    "torn WAL tail ({}): truncating the interrupted last write",
                    bad.describe()
                );
                return Ok(ScanEnd {
                    valid_len: at as u64,
                    file_len,
                });
            }
            Err(bad) => {
                let after = if is_last {
                    "valid records follow it"
                } else {
                    "it is not in the last segment"
                };
                return Err(StorageError::corrupt(
                    path,
                    at as u64,
                    format!(
                        "{}, and {after}, so this is not a torn tail",
                        bad.describe()
                    ),
                ));
            }
        }
    }
    Ok(ScanEnd {
        valid_len: file_len,
        file_len,
    })
}

/// Cuts a torn tail off the last segment, durably.
pub(crate) fn truncate(path: &Path, len: u64, sync: bool) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for truncation"))?;
    file.set_len(len).map_err(io_err(path, "truncate"))?;
    if sync {
        file.sync_all().map_err(io_err(path, "fsync"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let p = Path::new("wal-x.log");
        let h = encode_header(7);
        check_header(p, &h, 7).expect("valid header");
        assert!(matches!(
            check_header(p, &h, 8),
            Err(StorageError::Corrupt { offset: 0, .. })
        ));
        let mut v1 = h;
        v1[8] = 1;
        assert!(matches!(
            check_header(p, &v1, 7),
            Err(StorageError::UnsupportedVersion { found: 1, .. })
        ));
        let mut magic = h;
        magic[0] = b'X';
        let err = check_header(p, &magic, 7).expect_err("wrong magic");
        assert!(err.to_string().contains("wrong magic"), "{err}");
        assert!(check_header(p, &h[..10], 7).is_err());
    }
}
