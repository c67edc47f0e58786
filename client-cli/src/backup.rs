//! `snapshot save FILE`: a backup of the whole state, checked and written
//! durably.
//!
//! The server streams one of its snapshot files (`GET /admin/backup`):
//! `magic "RAFTKVSN" | version: u32 LE | meta_len: u32 LE | meta (postcard
//! SnapshotMeta) | data_len: u64 LE | data | crc32 of everything before it:
//! u32 LE`. The CLI checks the magic bytes and the CRC32 before the file
//! takes FILE's place (a temporary file, fsynced, renamed), so a transfer
//! cut short or damaged never replaces a good backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use raft_core::{Index, SnapshotMeta};
use serde::Serialize;

use crate::client::ApiClient;
use crate::error::CliError;

/// The magic bytes a snapshot file starts with.
const MAGIC: &[u8; 8] = b"RAFTKVSN";

/// What `snapshot save` wrote.
#[derive(Debug, Serialize)]
pub struct Saved {
    /// The log index the backup holds the state at.
    pub index: Index,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Fetches a backup and writes it to `file`.
pub async fn save(client: &mut ApiClient, file: &Path) -> Result<Saved, CliError> {
    let bytes = client.backup().await?;
    let meta = verify(&bytes).map_err(|why| CliError::BadResponse {
        server: "the backup".into(),
        message: why,
    })?;
    write_durably(file, &bytes)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", file.display())))?;
    Ok(Saved {
        index: meta.index,
        bytes: bytes.len() as u64,
    })
}

/// Checks a backup's framing and CRC32; returns its metadata.
fn verify(bytes: &[u8]) -> Result<SnapshotMeta, String> {
    if bytes.len() < 8 + 4 + 4 + 8 + 4 || &bytes[..8] != MAGIC {
        return Err("not a raft-kv snapshot file".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| "short checksum")?);
    if crc32fast::hash(body) != stored {
        return Err("the backup fails its CRC32 check (damaged or cut short)".into());
    }
    let meta_len = u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| "short header")?);
    let meta_end = 16usize
        .checked_add(meta_len as usize)
        .filter(|&end| end <= body.len())
        .ok_or("the metadata runs past the end")?;
    postcard::from_bytes(&bytes[16..meta_end]).map_err(|e| format!("bad metadata: {e}"))
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it
/// into place and fsyncs the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = PathBuf::from(path);
    let name = path
        .file_name()
        .map(|n| format!(".{}.tmp", n.to_string_lossy()))
        .unwrap_or_else(|| ".backup.tmp".into());
    tmp.set_file_name(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
        let meta = postcard::to_stdvec(meta).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((meta.len() as u32).to_le_bytes());
        out.extend(&meta);
        out.extend((data.len() as u64).to_le_bytes());
        out.extend(data);
        let crc = crc32fast::hash(&out);
        out.extend(crc.to_le_bytes());
        out
    }

    #[test]
    fn a_whole_backup_verifies_and_a_damaged_one_does_not() {
        let meta = SnapshotMeta {
            index: 42,
            term: 3,
            ..SnapshotMeta::default()
        };
        let good = file(&meta, b"state");
        assert_eq!(verify(&good).unwrap().index, 42);
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert!(verify(&flipped).unwrap_err().contains("CRC32"));
        assert!(verify(&good[..good.len() - 1]).is_err(), "cut short");
        assert!(verify(b"not a snapshot at all, nope").is_err());
    }

    #[test]
    fn writing_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.snap");
        write_durably(&path, b"old").unwrap();
        write_durably(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}
