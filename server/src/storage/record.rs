//! WAL records: what one record says, and how it is framed on disk.
//!
//! Frame (WAL format 3): a 20-byte header, then the payload (postcard):
//!
//! ```text
//! len: u32 LE | payload crc32: u32 LE | number: u64 LE | header crc32: u32 LE | payload (len bytes)
//! ```
//!
//! `number` counts the records of a segment from 0 (the segment's opening
//! record). The header CRC is the CRC32 of the segment's salt (a random
//! `u64` from the segment header, see [`super::wal`]) followed by the first
//! 16 header bytes: a header proves its length and number on its own,
//! without the payload, and only headers written for this very segment
//! verify. A put value can hold any string, including one shaped like a
//! frame, but not a header that verifies under a salt it never sees.
//!
//! One `persist` call is one record, so a `Ready` is durable all or nothing:
//! recovery never sees its entries without its hard state, or the reverse.
//!
//! What recovery makes of a bad record (the torn-tail rule) is described in
//! [`super::wal`]; [`FrameReader`] does the checks it needs.

use std::fmt;

use serde::{Deserialize, Serialize};

use raft_core::{Entry, HardState, Index, Term};

use super::error::StorageError;

/// The size of a frame's header.
pub(crate) const FRAME_HEADER: usize = 20;
/// The header bytes the header CRC covers (after the salt).
const HEADER_BODY: usize = 16;
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

/// Appends `record`, framed, to `buf`. The frame's number and header CRC
/// stay zero until [`seal_frame`], once the segment it goes to is known.
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
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    *buf = out;
    Ok(())
}

/// Makes `frame` (which starts with a frame from [`encode_frame`]) record
/// `number` of the segment whose salt is `salt`: fills in the number and
/// the header CRC.
///
/// Panics if `frame` is shorter than a frame header.
pub(crate) fn seal_frame(frame: &mut [u8], salt: u64, number: u64) {
    frame[8..HEADER_BODY].copy_from_slice(&number.to_le_bytes());
    let crc = header_crc(salt, &frame[..HEADER_BODY]);
    frame[HEADER_BODY..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// The header CRC: CRC32 of the salt, then the header's first 16 bytes.
fn header_crc(salt: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Why no good record starts at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// The bytes end inside the header.
    ShortHeader,
    /// The header says length zero: never written (zeroed space after a
    /// crash looks like this).
    Empty,
    /// The header fails its CRC: damaged, half written, or not written for
    /// this segment.
    BadHeader,
    /// The header verifies but carries another record's number.
    WrongNumber {
        /// The number in the header.
        found: u64,
        /// The number expected here.
        expected: u64,
    },
    /// The header verifies; the bytes end inside the payload.
    ShortPayload,
    /// The header verifies; the payload fails its CRC.
    BadPayload {
        /// Where the record ends according to its (verified) header: where
        /// the next record starts, if there is one.
        end: usize,
    },
}

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadFrame::ShortHeader => write!(f, "record header is cut short by the end of the file"),
            BadFrame::Empty => write!(f, "record header has length zero"),
            BadFrame::BadHeader => write!(f, "record header fails its CRC32 check"),
            BadFrame::WrongNumber { found, expected } => write!(
                f,
                "record header carries number {found} where record {expected} belongs"
            ),
            BadFrame::ShortPayload => write!(f, "record is cut short by the end of the file"),
            BadFrame::BadPayload { .. } => write!(f, "record fails its CRC32 check"),
        }
    }
}

/// Checks the frames of one segment (whose salt it holds), and counts its
/// work.
#[derive(Debug)]
pub(crate) struct FrameReader {
    salt: u64,
    /// Bytes fed to CRC32 so far. Recovery's work is proportional to it (and
    /// to the segment's size): tests check that it stays linear.
    pub hashed: u64,
}

impl FrameReader {
    pub(crate) fn new(salt: u64) -> Self {
        FrameReader { salt, hashed: 0 }
    }

    /// The payload of record `number`, whose frame starts at `at` in `buf`,
    /// and where the next frame starts.
    pub(crate) fn frame<'b>(
        &mut self,
        buf: &'b [u8],
        at: usize,
        number: u64,
    ) -> Result<(&'b [u8], usize), BadFrame> {
        let (len, crc) = self.header(buf, at, number)?;
        let start = at + FRAME_HEADER;
        let end = start.checked_add(len).ok_or(BadFrame::ShortPayload)?;
        let payload = buf.get(start..end).ok_or(BadFrame::ShortPayload)?;
        self.hashed += payload.len() as u64;
        if crc32fast::hash(payload) != crc {
            return Err(BadFrame::BadPayload { end });
        }
        Ok((payload, end))
    }

    /// Where record `number + 1` starts, if it follows the bad record
    /// `number` (at `at`, found bad for reason `bad`): what tells damage in
    /// the middle from a torn tail (the rule and why it is sound: see
    /// `super::wal`). Only headers are checked, never payloads.
    pub(crate) fn next_record(
        &mut self,
        buf: &[u8],
        at: usize,
        number: u64,
        bad: BadFrame,
    ) -> Option<usize> {
        let next = number.checked_add(1)?;
        match bad {
            // The header is intact, so the next record can only start where
            // this one ends: one probe, outside this record's bytes.
            BadFrame::BadPayload { end } => self.header(buf, end, next).is_ok().then_some(end),
            // This record runs past the end of the file: nothing follows.
            BadFrame::ShortPayload => None,
            // The length is unknown: probe every offset from here on. A
            // probe reads the 8-byte number and checksums only a header that
            // carries the number sought, so this is linear in the bytes left.
            BadFrame::ShortHeader
            | BadFrame::Empty
            | BadFrame::BadHeader
            | BadFrame::WrongNumber { .. } => (at..buf.len()).find(|&p| {
                let found = buf.get(p + 8..p + HEADER_BODY).map(|b| u64_at(b, 0));
                found == Some(next) && self.header(buf, p, next).is_ok()
            }),
        }
    }

    /// The payload length and payload CRC from record `number`'s header at
    /// `at`, if the header verifies and carries that number.
    fn header(&mut self, buf: &[u8], at: usize, number: u64) -> Result<(usize, u32), BadFrame> {
        let h = buf
            .get(at..)
            .and_then(|rest| rest.get(..FRAME_HEADER))
            .ok_or(BadFrame::ShortHeader)?;
        let len = u32_at(h, 0) as usize;
        if len == 0 {
            return Err(BadFrame::Empty);
        }
        self.hashed += (8 + HEADER_BODY) as u64;
        if header_crc(self.salt, &h[..HEADER_BODY]) != u32_at(h, HEADER_BODY) {
            return Err(BadFrame::BadHeader);
        }
        let found = u64_at(h, 8);
        if found != number {
            return Err(BadFrame::WrongNumber {
                found,
                expected: number,
            });
        }
        Ok((len, u32_at(h, 4)))
    }
}

/// Decodes a frame's payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, postcard::Error> {
    postcard::from_bytes(payload)
}

/// The `u32` at `at` in `b`. Panics if `b` is too short: callers read fixed
/// offsets of a slice whose length they checked.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut le = [0; 4];
    le.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(le)
}

/// The `u64` at `at` in `b`; panics like [`u32_at`].
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut le = [0; 8];
    le.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(le)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Command, Op, Payload};

    const SALT: u64 = 0x5a17_5a17_5a17_5a17;

    fn entry(index: Index) -> Entry {
        Entry {
            term: 2,
            index,
            payload: Payload::Noop,
        }
    }

    fn put(index: Index, value: String) -> Entry {
        Entry {
            term: 2,
            index,
            payload: Payload::command(Command {
                client_id: 1,
                seq: index,
                op: Op::Put {
                    key: "k".into(),
                    value,
                },
            }),
        }
    }

    /// Record `number` of a segment salted with [`SALT`].
    fn frame_numbered(entries: &[Entry], number: u64) -> Vec<u8> {
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
        seal_frame(&mut buf, SALT, number);
        buf
    }

    fn frame(entries: &[Entry]) -> Vec<u8> {
        frame_numbered(entries, 0)
    }

    /// A valid record `number` that is also valid UTF-8, so that a put
    /// value can hold it verbatim (values are strings).
    fn utf8_frame(number: u64) -> String {
        (1..100_000)
            .find_map(|index| String::from_utf8(frame_numbered(&[entry(index)], number)).ok())
            .expect("some index gives a UTF-8 frame")
    }

    fn reader() -> FrameReader {
        FrameReader::new(SALT)
    }

    #[test]
    fn frame_round_trip() {
        let entries = [entry(4), entry(5)];
        let buf = frame(&entries);
        let (payload, next) = reader().frame(&buf, 0, 0).expect("valid frame");
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
            let bad = reader().frame(&buf[..cut], 0, 0).expect_err("prefix");
            let expected = if cut < FRAME_HEADER {
                BadFrame::ShortHeader
            } else {
                BadFrame::ShortPayload
            };
            assert_eq!(bad, expected, "prefix {cut}");
        }
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(reader().frame(&bad, 0, 0).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn a_header_verifies_only_for_its_segment_and_number() {
        let buf = frame_numbered(&[entry(4)], 7);
        assert!(reader().frame(&buf, 0, 7).is_ok());
        assert_eq!(
            reader().frame(&buf, 0, 8),
            Err(BadFrame::WrongNumber {
                found: 7,
                expected: 8
            })
        );
        assert_eq!(
            FrameReader::new(SALT ^ 1).frame(&buf, 0, 7),
            Err(BadFrame::BadHeader),
            "another segment's salt"
        );
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert_eq!(reader().frame(&[0; 32], 0, 1), Err(BadFrame::Empty));
        assert_eq!(reader().next_record(&[0; 64], 0, 1, BadFrame::Empty), None);
    }

    #[test]
    fn finds_the_next_record_after_a_damaged_header() {
        let mut buf = vec![0xff; 5];
        buf.extend(frame_numbered(&[entry(9)], 4));
        let mut r = reader();
        assert_eq!(r.next_record(&buf, 0, 3, BadFrame::BadHeader), Some(5));
        assert_eq!(
            r.next_record(&buf, 0, 4, BadFrame::BadHeader),
            None,
            "only the next number counts"
        );
        assert_eq!(r.next_record(&buf, 6, 3, BadFrame::BadHeader), None);
    }

    #[test]
    fn a_bad_payload_is_followed_only_by_a_record_where_it_ends() {
        // Record 3's value holds a perfect record 4 (right salt, right
        // number): it is never taken for the record after 3, because 3's
        // header says where 3 ends.
        let forged = utf8_frame(4).into_bytes();
        let value = String::from_utf8(forged.clone()).expect("UTF-8");
        let mut buf = frame_numbered(&[put(5, value)], 3);
        let whole = buf.len();
        let inner = buf
            .windows(forged.len())
            .position(|w| w == forged.as_slice())
            .expect("the value holds the frame verbatim");
        assert!(
            reader().frame(&buf, inner, 4).is_ok(),
            "a valid frame inside"
        );

        // Torn: cut inside record 3, after the embedded frame.
        let mut r = reader();
        let torn = &buf[..whole - 1];
        let bad = r.frame(torn, 0, 3).expect_err("cut short");
        assert_eq!(bad, BadFrame::ShortPayload);
        assert_eq!(r.next_record(torn, 0, 3, bad), None);

        // Damaged payload (a byte after the embedded frame): probe at the end.
        let flip = inner + forged.len();
        buf[flip] ^= 1;
        let bad = r.frame(&buf, 0, 3).expect_err("bad payload");
        assert_eq!(bad, BadFrame::BadPayload { end: whole });
        assert_eq!(r.next_record(&buf, 0, 3, bad), None);
        buf.extend(frame_numbered(&[entry(6)], 4));
        assert_eq!(r.next_record(&buf, 0, 3, bad), Some(whole));
    }

    #[test]
    fn probing_garbage_is_linear() {
        // Garbage in which every 16th offset reads as a 1 MiB record (the
        // old any-offset scan checksummed a megabyte at each) carrying the
        // number sought.
        let mut garbage = Vec::new();
        while garbage.len() < 1 << 20 {
            garbage.extend_from_slice(&(1u32 << 20).to_le_bytes());
            garbage.extend_from_slice(&[0xab; 4]);
            garbage.extend_from_slice(&5u64.to_le_bytes());
        }
        let mut r = reader();
        assert_eq!(r.next_record(&garbage, 0, 4, BadFrame::BadHeader), None);
        let budget = 2 * garbage.len() as u64;
        assert!(r.hashed <= budget, "{} > {budget}", r.hashed);
    }
}
