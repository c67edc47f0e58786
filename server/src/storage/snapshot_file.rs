//! Snapshot files: `snap-<index>.snap`.
//!
//! Layout: `magic "RAFTKVSN" | version: u32 LE | meta_len: u32 LE | meta
//! (postcard SnapshotMeta) | data_len: u64 LE | data | crc32 of everything
//! before it: u32 LE`. Written to a `.tmp` file, fsynced, renamed, and the
//! directory fsynced: a snapshot file that exists is whole unless the disk
//! damaged it, which the CRC detects.
//!
//! The file is written in bounded chunks: every [`SYNC_EVERY`] bytes the
//! snapshot thread fdatasyncs what it wrote, so the page cache never holds
//! more than one chunk of the snapshot and the final fsync has little left
//! to flush. A snapshot file of tens of megabytes
//! written in one go and flushed at the end queued the whole file ahead of
//! the WAL's fdatasync on the same disk (write stalls of tens of
//! milliseconds); bounded chunks keep each of the WAL's syncs behind at
//! most one chunk.

use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{Index, Snapshot, SnapshotMeta};

use super::error::{io_err, StorageError};
use super::layout::{snapshot_name, sync_dir, tmp_path};

/// Identifies a snapshot file.
pub(crate) const SNAP_MAGIC: [u8; 8] = *b"RAFTKVSN";
/// The snapshot format this build reads and writes.
/// 2: configurations carry learners, the joint phase and member addresses.
/// 3: the state-machine image starts with its own format byte and its
/// client table keeps each write's command digest.
pub(crate) const SNAP_VERSION: u32 = 3;

/// How many bytes of a snapshot file are written before they are pushed to
/// the disk (with `sync` on).
pub(crate) const SYNC_EVERY: u64 = 4 << 20;

/// Writes `snap` durably into `dir` and returns its path.
pub(crate) fn write(dir: &Path, snap: &Snapshot, sync: bool) -> Result<PathBuf, StorageError> {
    write_paced(dir, snap, sync, SYNC_EVERY)
}

/// [`write`], pushing every `sync_every` bytes to the disk (with `sync`).
fn write_paced(
    dir: &Path,
    snap: &Snapshot,
    sync: bool,
    sync_every: u64,
) -> Result<PathBuf, StorageError> {
    write_streamed_paced(dir, &snap.meta, sync, sync_every, |out| {
        out.write_all(&snap.data)
    })
    .map(|(path, _)| path)
}

/// Writes the snapshot at `meta` durably into `dir`, its image produced by
/// `image` straight into the file (a state serialized as it is written is
/// never whole in memory); returns the path and the image's length. The
/// file is the one [`write`] makes of the same bytes.
pub(crate) fn write_streamed(
    dir: &Path,
    meta: &SnapshotMeta,
    sync: bool,
    image: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(PathBuf, u64), StorageError> {
    write_streamed_paced(dir, meta, sync, SYNC_EVERY, image)
}

fn write_streamed_paced(
    dir: &Path,
    meta: &SnapshotMeta,
    sync: bool,
    sync_every: u64,
    image: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(PathBuf, u64), StorageError> {
    let path = dir.join(snapshot_name(meta.index));
    let tmp = tmp_path(&path);
    let meta_bytes = postcard::to_stdvec(meta).map_err(|source| StorageError::Encode {
        what: "snapshot metadata",
        source,
    })?;
    let meta_len = u32::try_from(meta_bytes.len()).map_err(|_| StorageError::RecordTooLarge {
        len: meta_bytes.len(),
        max: u32::MAX as usize,
    })?;
    let file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
    let paced = Paced::new(file, if sync { sync_every } else { 0 });
    let mut head = Vec::with_capacity(16 + meta_bytes.len());
    head.extend_from_slice(&SNAP_MAGIC);
    head.extend_from_slice(&SNAP_VERSION.to_le_bytes());
    head.extend_from_slice(&meta_len.to_le_bytes());
    head.extend_from_slice(&meta_bytes);
    let mut out = BufWriter::with_capacity(BUF_BYTES, paced);
    // The image's length precedes it but is known only once it is written:
    // a placeholder now, the length written over it after.
    out.write_all(&head)
        .and_then(|()| out.write_all(&[0; 8]))
        .map_err(io_err(&tmp, "write"))?;
    let mut data = CrcWriter {
        inner: out,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    image(&mut data).map_err(io_err(&tmp, "write"))?;
    let CrcWriter {
        inner: mut out,
        crc: data_crc,
        len: data_len,
    } = data;
    out.flush().map_err(io_err(&tmp, "write"))?;
    let mut file = out
        .into_inner()
        .map_err(|e| io_err(&tmp, "write")(e.into_error()))?
        .file;
    // The checksum covers everything before it, in file order: the head,
    // the length, then the image (whose CRC was taken as it went by).
    let len_bytes = data_len.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&len_bytes);
    crc.combine(&data_crc);
    let crc = crc.finalize();
    file.seek(SeekFrom::Start(head.len() as u64))
        .and_then(|_| file.write_all(&len_bytes))
        .and_then(|()| file.seek(SeekFrom::End(0)))
        .and_then(|_| file.write_all(&crc.to_le_bytes()))
        .map_err(io_err(&tmp, "write"))?;
    if sync {
        file.sync_all().map_err(io_err(&tmp, "fsync"))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place"))?;
    sync_dir(dir, sync)?;
    Ok((path, data_len))
}

/// Reads and verifies the snapshot file `path`, which by its name holds the
/// snapshot at `index`.
pub(crate) fn read(path: &Path, index: Index) -> Result<Snapshot, StorageError> {
    let bytes = fs::read(path).map_err(io_err(path, "read"))?;
    let snapshot = parse(path, &bytes)?;
    if snapshot.meta.index != index {
        return Err(StorageError::corrupt(
            path,
            0,
            format!(
                "holds the snapshot at index {} but is named for index {index}",
                snapshot.meta.index
            ),
        ));
    }
    Ok(snapshot)
}

/// Verifies and decodes the bytes of a snapshot file; `path` names it in
/// errors.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let mut r = Reader { path, bytes, at: 0 };
    if r.take(8, "magic bytes")? != SNAP_MAGIC {
        return Err(StorageError::corrupt(
            path,
            0,
            "not a raft-kv snapshot (wrong magic bytes)",
        ));
    }
    let version = r.u32("format version")?;
    if version != SNAP_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SNAP_VERSION,
        });
    }
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| r.short("checksum"))?;
    let stored_crc = Reader {
        path,
        bytes,
        at: body_len,
    }
    .u32("checksum")?;
    if crc32fast::hash(&bytes[..body_len]) != stored_crc {
        return Err(StorageError::corrupt(
            path,
            body_len as u64,
            "snapshot fails its CRC32 check",
        ));
    }
    // The checksum holds, so what follows only fails on a format bug.
    let meta_len = r.u32("metadata length")? as usize;
    let meta_at = r.at as u64;
    let meta: SnapshotMeta = postcard::from_bytes(r.take(meta_len, "metadata")?)
        .map_err(|e| StorageError::corrupt(path, meta_at, format!("bad metadata: {e}")))?;
    let data_len = r.u64("data length")?;
    let data_len = usize::try_from(data_len).map_err(|_| r.short("data"))?;
    let data = r.take(data_len, "data")?.to_vec();
    if r.at != body_len {
        return Err(StorageError::corrupt(
            path,
            r.at as u64,
            "unexpected bytes after the data",
        ));
    }
    Ok(Snapshot { meta, data })
}

/// An open snapshot file whose image is read in pieces (what a leader
/// streams to a lagging follower), so the image is never whole in memory.
/// Opening checks the whole file's CRC, and computes the image's own CRC
/// (which the follower checks the reassembled image against).
pub struct SnapshotSource {
    path: PathBuf,
    file: File,
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    data_at: u64,
    /// The image's length.
    pub data_len: u64,
    /// The CRC32 of the image alone.
    pub data_crc: u32,
}

impl SnapshotSource {
    /// Opens and verifies the snapshot file `path`, named for `index`.
    pub(crate) fn open(path: &Path, index: Index) -> Result<Self, StorageError> {
        let mut file = File::open(path).map_err(io_err(path, "open"))?;
        let file_len = file.metadata().map_err(io_err(path, "stat"))?.len();
        let mut fixed = [0u8; 16];
        read_at(&mut file, path, 0, &mut fixed)?;
        let meta_len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as u64;
        // The head is small: read it whole and let `parse`'s checks speak
        // for it (magic, version, metadata), with an empty image in place.
        let head_len = 16 + meta_len + 8;
        if head_len + 4 > file_len {
            return Err(StorageError::corrupt(path, 0, "file ends before its data"));
        }
        let mut head = vec![0u8; head_len as usize];
        read_at(&mut file, path, 0, &mut head)?;
        let data_len = u64::from_le_bytes(head[head.len() - 8..].try_into().unwrap_or([0; 8]));
        if head_len
            .checked_add(data_len)
            .and_then(|n| n.checked_add(4))
            != Some(file_len)
        {
            return Err(StorageError::corrupt(
                path,
                head_len - 8,
                "the data length does not match the file's",
            ));
        }
        let mut empty = head.clone();
        let at = empty.len() - 8;
        empty[at..].copy_from_slice(&0u64.to_le_bytes());
        let crc = crc32fast::hash(&empty).to_le_bytes();
        empty.extend_from_slice(&crc);
        let meta = parse(path, &empty)?.meta;
        if meta.index != index {
            return Err(StorageError::corrupt(
                path,
                0,
                format!(
                    "holds the snapshot at index {} but is named for index {index}",
                    meta.index
                ),
            ));
        }
        let mut file_crc = crc32fast::Hasher::new();
        file_crc.update(&head);
        let mut data_crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; BUF_BYTES];
        let mut at = head_len;
        while at < head_len + data_len {
            let n = (head_len + data_len - at).min(buf.len() as u64) as usize;
            read_at(&mut file, path, at, &mut buf[..n])?;
            file_crc.update(&buf[..n]);
            data_crc.update(&buf[..n]);
            at += n as u64;
        }
        let mut stored = [0u8; 4];
        read_at(&mut file, path, at, &mut stored)?;
        if file_crc.finalize() != u32::from_le_bytes(stored) {
            return Err(StorageError::corrupt(
                path,
                at,
                "snapshot fails its CRC32 check",
            ));
        }
        Ok(SnapshotSource {
            path: path.to_path_buf(),
            file,
            meta,
            data_at: head_len,
            data_len,
            data_crc: data_crc.finalize(),
        })
    }

    /// `len` bytes of the image from `offset` (fewer at its end).
    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let len = (self.data_len.saturating_sub(offset)).min(len as u64) as usize;
        let mut buf = vec![0u8; len];
        read_at(&mut self.file, &self.path, self.data_at + offset, &mut buf)?;
        Ok(buf)
    }
}

fn read_at(file: &mut File, path: &Path, at: u64, buf: &mut [u8]) -> Result<(), StorageError> {
    use std::io::Read;
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.read_exact(buf))
        .map_err(io_err(path, "read"))
}

/// The buffer in front of [`Paced`]: writes reach the file in pieces of
/// this size.
const BUF_BYTES: usize = 256 << 10;

/// A file written front to back whose written bytes are made durable
/// every `every` bytes (0: never; the caller fsyncs at the end as always).
/// Pacing changes when bytes reach the disk, never which bytes: the file
/// is the same as one written in one go.
struct Paced {
    file: File,
    /// Bytes written so far.
    written: u64,
    /// Bytes already synced.
    synced: u64,
    every: u64,
}

impl Paced {
    fn new(file: File, every: u64) -> Self {
        Paced {
            file,
            written: 0,
            synced: 0,
            every,
        }
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.every != 0 && self.written - self.synced >= self.every {
            self.file.sync_data()?;
            self.synced = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Feeds everything written through a CRC32.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    /// Bytes written through it.
    len: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bounds-checked little-endian reads that name the file and offset.
struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn short(&self, what: &str) -> StorageError {
        StorageError::corrupt(
            self.path,
            self.at as u64,
            format!("file ends before its {what}"),
        )
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StorageError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.short(what))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.short(what))?;
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self, what: &str) -> Result<u32, StorageError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, StorageError> {
        let lo = u64::from(self.u32(what)?);
        let hi = u64::from(self.u32(what)?);
        Ok(lo | (hi << 32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Membership;

    fn snap(index: Index) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index,
                term: 3,
                membership: Membership::new(vec![1, 2, 3]),
            },
            data: b"state machine image".to_vec(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = snap(42);
        let path = write(dir.path(), &s, true).expect("write");
        assert_eq!(path, dir.path().join("snap-000000000000002a.snap"));
        assert_eq!(read(&path, 42).expect("read"), s);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn every_bit_flip_and_every_truncation_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &snap(7), false).expect("write");
        let good = fs::read(&path).expect("read");
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            fs::write(&path, &bad).expect("write");
            assert!(read(&path, 7).is_err(), "bit {bit} undetected");
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).expect("write");
            assert!(read(&path, 7).is_err(), "cut at {cut} undetected");
        }
    }

    #[test]
    fn a_paced_write_gives_the_same_file_as_one_in_a_single_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = snap(9);
        // Several buffers' worth, not a multiple of any chunk size.
        s.data = (0..(3 * BUF_BYTES + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let whole = fs::read(write_paced(dir.path(), &s, false, 0).expect("write")).expect("read");
        for every in [1, 4096, 100_000, BUF_BYTES as u64, 1 << 30] {
            let path = write_paced(dir.path(), &s, true, every).expect("paced write");
            assert_eq!(
                fs::read(&path).expect("read"),
                whole,
                "pushed every {every}"
            );
            assert_eq!(read(&path, 9).expect("read"), s);
        }
    }

    /// A state serialized straight into the file (its length and checksum
    /// known only at the end) makes the very file of the same image
    /// written from memory.
    #[test]
    fn a_streamed_image_makes_the_same_file() {
        let mut kv = raft_core::KvStore::new();
        for i in 0..2_000u64 {
            kv.apply(&raft_core::Entry {
                term: 3,
                index: i + 1,
                payload: raft_core::Payload::command(raft_core::Command {
                    client_id: 0,
                    seq: 0,
                    op: raft_core::Op::Put {
                        key: format!("key{i}"),
                        value: "v".repeat(100),
                    },
                }),
            });
        }
        let s = Snapshot {
            meta: snap(2_000).meta,
            data: kv.snapshot(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = fs::read(write(dir.path(), &s, false).expect("write")).expect("read");
        for every in [0, 4096] {
            let (path, len) = write_streamed_paced(dir.path(), &s.meta, every != 0, every, |out| {
                kv.write_snapshot(out)
            })
            .expect("streamed write");
            assert_eq!(len, s.data.len() as u64);
            assert_eq!(
                fs::read(&path).expect("read"),
                whole,
                "pushed every {every}"
            );
            assert_eq!(read(&path, 2_000).expect("read"), s);
        }
    }

    /// A file opened for sending: its image read back in pieces is the
    /// image, with the image's own CRC; a damaged file does not open.
    #[test]
    fn a_source_reads_the_image_in_pieces_and_refuses_a_damaged_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Snapshot {
            meta: snap(12).meta,
            data: (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        };
        let path = write(dir.path(), &s, false).expect("write");
        let mut source = SnapshotSource::open(&path, 12).expect("open");
        assert_eq!(source.meta, s.meta);
        assert_eq!(source.data_len, s.data.len() as u64);
        assert_eq!(source.data_crc, crc32fast::hash(&s.data));
        let mut image = Vec::new();
        while (image.len() as u64) < source.data_len {
            image.extend(source.read(image.len() as u64, 7_000).expect("read"));
        }
        assert_eq!(image, s.data);
        assert!(source
            .read(source.data_len, 10)
            .expect("past the end")
            .is_empty());
        assert!(
            SnapshotSource::open(&path, 13).is_err(),
            "named for another index"
        );
        let mut bytes = fs::read(&path).expect("read");
        bytes[30_000] ^= 1;
        fs::write(&path, &bytes).expect("write");
        assert!(SnapshotSource::open(&path, 12).is_err(), "a flipped bit");
        bytes.truncate(100);
        fs::write(&path, &bytes).expect("write");
        assert!(SnapshotSource::open(&path, 12).is_err(), "cut short");
        let empty = Snapshot {
            meta: snap(14).meta,
            data: Vec::new(),
        };
        let path = write(dir.path(), &empty, false).expect("write");
        let mut source = SnapshotSource::open(&path, 14).expect("open");
        assert_eq!(source.data_len, 0);
        assert!(source.read(0, 10).expect("read").is_empty());
    }

    #[test]
    fn name_must_match_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &snap(7), false).expect("write");
        let err = read(&path, 8).expect_err("wrong index");
        assert!(err.to_string().contains("named for index 8"), "{err}");
    }
}
