//! WAL records: what one record says, and how it is framed on disk.
//!
//! Frame: `len: u32 LE | crc32 of payload: u32 LE | payload (postcard)`.
//!
//! One `persist` call is one record, so a `Ready` is durable all or nothing:
//! recovery never sees its entries without its hard state, or the reverse.

use serde::{Deserialize, Serialize};

use raft_core::{Entry, HardState, Index, Term};

use super::error::StorageError;

/// The size of a frame's `len` + `crc` header.
pub(crate) const FRAME_HEADER: usize = 8;
/// The largest payload the 32-bit length can describe.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Marks that a snapshot now covers the log up to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotMark {
    /// The snapshot's last index.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// Whether the entries after `index` stay: true when the log held
    /// `(index, term)` (so the entries after it extend the snapshot, Raft
    /// paper §7), false when the log is discarded and restarts at `index + 1`.
    pub keep_tail: bool,
}

/// A record as written: borrows the caller's entries (no copy).
#[derive(Debug, Serialize)]
pub(crate) enum RecordRef<'a> {
    /// One `persist` (or a segment's opening hard state, or a snapshot mark).
    Ready {
        /// Applied first.
        snapshot: Option<SnapshotMark>,
        /// Then these (consecutive; the first may rewrite stored entries).
        entries: &'a [Entry],
        /// Then this.
        hard_state: Option<HardState>,
    },
}

/// A record as read back. Variants must stay in the order of [`RecordRef`]'s:
/// postcard identifies a variant by its position.
#[derive(Debug, Deserialize)]
pub(crate) enum Record {
    /// See [`RecordRef::Ready`].
    Ready {
        /// See [`RecordRef::Ready`].
        snapshot: Option<SnapshotMark>,
        /// See [`RecordRef::Ready`].
        entries: Vec<Entry>,
        /// See [`RecordRef::Ready`].
        hard_state: Option<HardState>,
    },
}

/// Appends `record`, framed, to `buf`.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, record: &RecordRef<'_>) -> Result<(), StorageError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    let mut out = postcard::to_extend(record, std::mem::take(buf)).map_err(|source| {
        StorageError::Encode {
            what: "WAL record",
            source,
        }
    })?;
    let len = out.len() - start - FRAME_HEADER;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        *buf = out;
        return Err(StorageError::RecordTooLarge {
            len,
            max: MAX_PAYLOAD,
        });
    }
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    // `len <= MAX_PAYLOAD` was checked above, so the cast is lossless.
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    *buf = out;
    Ok(())
}

/// Why no valid frame starts at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// The bytes end before the frame does.
    Short,
    /// A zero length: never written (zeroed space after a crash looks like this).
    Empty,
    /// The payload fails its checksum.
    BadCrc,
}

impl BadFrame {
    /// A phrase for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            BadFrame::Short => "record is cut short by the end of the file",
            BadFrame::Empty => "record has length zero",
            BadFrame::BadCrc => "record fails its CRC32 check",
        }
    }
}

/// The payload of the frame at `at` in `buf`, and where the next frame starts.
pub(crate) fn parse_frame(buf: &[u8], at: usize) -> Result<(&[u8], usize), BadFrame> {
    let rest = buf.get(at..).unwrap_or_default();
    let (Some(len), Some(crc)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
        return Err(BadFrame::Short);
    };
    let len = len as usize;
    if len == 0 {
        return Err(BadFrame::Empty);
    }
    let payload = rest
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(BadFrame::Short)?;
    if crc32fast::hash(payload) != crc {
        return Err(BadFrame::BadCrc);
    }
    Ok((payload, at + FRAME_HEADER + len))
}

/// Whether any valid frame starts after `at`. Used to tell a torn tail (the
/// last write was interrupted: nothing valid follows) from damage in the
/// middle (valid records follow the bad one).
pub(crate) fn valid_frame_after(buf: &[u8], at: usize) -> bool {
    (at + 1..buf.len().saturating_sub(FRAME_HEADER)).any(|p| parse_frame(buf, p).is_ok())
}

/// Decodes a frame's payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, postcard::Error> {
    postcard::from_bytes(payload)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Payload;

    fn entry(index: Index) -> Entry {
        Entry {
            term: 2,
            index,
            payload: Payload::Noop,
        }
    }

    fn frame(entries: &[Entry]) -> Vec<u8> {
        let mut buf = Vec::new();
        let record = RecordRef::Ready {
            snapshot: Some(SnapshotMark {
                index: 3,
                term: 1,
                keep_tail: true,
            }),
            entries,
            hard_state: Some(HardState {
                term: 2,
                vote: 1,
                commit: 4,
            }),
        };
        encode_frame(&mut buf, &record).expect("encode");
        buf
    }

    #[test]
    fn frame_round_trip() {
        let entries = [entry(4), entry(5)];
        let buf = frame(&entries);
        let (payload, next) = parse_frame(&buf, 0).expect("valid frame");
        assert_eq!(next, buf.len());
        let Record::Ready {
            snapshot,
            entries: got,
            hard_state,
        } = decode(payload).expect("decode");
        assert_eq!(snapshot.map(|s| s.index), Some(3));
        assert_eq!(got, entries);
        assert_eq!(hard_state.map(|h| h.commit), Some(4));
    }

    #[test]
    fn every_prefix_is_short_and_every_bit_flip_is_detected() {
        let buf = frame(&[entry(4)]);
        for cut in 0..buf.len() {
            assert!(parse_frame(&buf[..cut], 0).is_err(), "prefix {cut}");
        }
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_frame(&bad, 0).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert_eq!(parse_frame(&[0; 32], 0), Err(BadFrame::Empty));
        assert!(!valid_frame_after(&[0; 64], 0));
    }

    #[test]
    fn finds_a_valid_frame_after_garbage() {
        let mut buf = vec![0xff; 5];
        buf.extend(frame(&[entry(9)]));
        assert!(valid_frame_after(&buf, 0));
        assert!(!valid_frame_after(&buf, 5));
    }
}
