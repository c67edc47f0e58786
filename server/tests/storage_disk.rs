//! DiskStorage behaviour: round trips, conflict truncation, segment rolls,
//! torn tails, corruption, snapshots and compaction, and write failures.

use std::fs;
use std::path::{Path, PathBuf};

use raft_core::{
    Command, Entry, HardState, Index, Membership, Op, Payload, PersistedState, Snapshot,
    SnapshotMeta, Term,
};
use raft_kv_server::storage::{DiskOptions, DiskStorage, Storage, StorageError};

fn entry(index: Index, term: Term) -> Entry {
    Entry {
        term,
        index,
        payload: Payload::command(Command {
            client_id: 7,
            seq: index,
            op: Op::Put {
                key: format!("key-{index}"),
                value: "v".repeat(20),
            },
        }),
    }
}

/// Consecutive entries from `first`, one per term in `terms`.
fn ents(first: Index, terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first..)
        .map(|(&t, i)| entry(i, t))
        .collect()
}

fn snap(index: Index, term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::new(vec![1, 2, 3]),
        },
        data: format!("image at {index}").into_bytes(),
    }
}

fn hs(term: Term, vote: u64, commit: Index) -> HardState {
    HardState { term, vote, commit }
}

/// No fsync: these tests do not cut the power, and fsyncs would only slow
/// them down. `sync_on` tests keep the fsync paths exercised.
fn fast(segment_bytes: u64) -> DiskOptions {
    DiskOptions {
        sync: false,
        segment_bytes,
    }
}

fn sync_on(segment_bytes: u64) -> DiskOptions {
    DiskOptions {
        sync: true,
        segment_bytes,
    }
}

fn open(dir: &Path, opts: DiskOptions) -> DiskStorage {
    DiskStorage::open(dir, opts).expect("open")
}

fn reload(dir: &Path, opts: DiskOptions) -> PersistedState {
    open(dir, opts).load().expect("load")
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(prefix) && !name.ends_with(".tmp")
        })
        .collect();
    found.sort();
    found
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, "wal-")
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x10;
    fs::write(path, bytes).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    for item in fs::read_dir(from).expect("list") {
        let path = item.expect("entry").path();
        if let Some(name) = path.file_name().filter(|n| *n != "LOCK") {
            fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// A put of `value` at `index`.
fn put_entry(index: Index, value: String) -> Entry {
    Entry {
        term: 1,
        index,
        payload: Payload::command(Command {
            client_id: 9,
            seq: index,
            op: Op::Put {
                key: format!("key-{index}"),
                value,
            },
        }),
    }
}

/// The record `DiskStorage` would write in `dir` as the record after its
/// next one: a frame made by the real encoder, in the last segment's salt
/// and with the right number, so more than a client could ever forge. Made
/// in copies of `dir` (one filler record, then the record taken), retried
/// until it is valid UTF-8, so that a put value (a string) can hold it
/// verbatim.
fn forge_record_after_next(dir: &Path) -> String {
    for attempt in 0..100_000 {
        let scratch = tempfile::tempdir().expect("tempdir");
        copy_dir(dir, scratch.path());
        let mut s = open(scratch.path(), fast(1 << 20));
        let next = s
            .load()
            .expect("load")
            .entries
            .last()
            .map_or(1, |e| e.index + 1);
        s.persist(None, &[entry(next, 1)], None).expect("filler");
        let seg = segments(scratch.path()).pop().expect("a segment");
        let before = len(&seg) as usize;
        s.persist(
            None,
            &[put_entry(next + 1, format!("forged {attempt}"))],
            None,
        )
        .expect("the record taken");
        drop(s);
        let bytes = fs::read(&seg).expect("read");
        if let Ok(frame) = String::from_utf8(bytes[before..].to_vec()) {
            return frame;
        }
    }
    panic!("no UTF-8 frame");
}

fn truncate_to(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

#[test]
fn append_and_replay_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), sync_on(1 << 20));
    assert_eq!(s.load().expect("load"), PersistedState::default());
    s.persist(None, &ents(1, &[1, 1]), Some(hs(1, 2, 0)))
        .expect("persist");
    s.persist(None, &ents(3, &[1]), Some(hs(1, 2, 2)))
        .expect("persist");
    s.persist(None, &[], None)
        .expect("an empty Ready writes nothing");
    drop(s);
    let state = reload(dir.path(), sync_on(1 << 20));
    assert_eq!(state.entries, ents(1, &[1, 1, 1]));
    assert_eq!(state.hard_state, hs(1, 2, 2));
    assert_eq!(state.snapshot, None);
}

#[test]
fn load_twice_gives_the_same_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 2]), Some(hs(2, 0, 1)))
        .expect("persist");
    let first = s.load().expect("load");
    assert_eq!(s.load().expect("second load reads the files"), first);
}

#[test]
fn conflict_truncation_survives_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1, 1, 1, 1]), None)
        .expect("persist");
    s.persist(None, &ents(3, &[2, 2]), None)
        .expect("conflicting entries replace 3.. and drop 5");
    drop(s);
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.entries, ents(1, &[1, 1, 2, 2]));

    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(5, &[3]), None).expect("append after");
    drop(s);
    assert_eq!(
        reload(dir.path(), fast(1 << 20)).entries,
        ents(1, &[1, 1, 2, 2, 3])
    );
}

#[test]
fn segments_roll_and_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(300));
    for i in 1..=40 {
        s.persist(None, &[entry(i, 1)], Some(hs(1, 1, i - 1)))
            .expect("persist");
    }
    // A conflict that reaches back into an earlier segment.
    s.persist(None, &ents(10, &[2, 2]), Some(hs(2, 0, 9)))
        .expect("truncate");
    drop(s);
    let segs = segments(dir.path());
    assert!(segs.len() > 5, "expected several segments, got {segs:?}");
    for (n, path) in segs.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(name, format!("wal-{:016x}.log", n + 1));
    }
    let state = reload(dir.path(), fast(300));
    let mut expected: Vec<Entry> = (1..10).map(|i| entry(i, 1)).collect();
    expected.extend(ents(10, &[2, 2]));
    assert_eq!(state.entries, expected);
    assert_eq!(state.hard_state, hs(2, 0, 9));
}

#[test]
fn torn_tail_at_every_byte_offset_is_cut_off() {
    let template = tempfile::tempdir().expect("tempdir");
    let mut s = open(template.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), Some(hs(1, 1, 0)))
        .expect("persist");
    s.persist(None, &ents(3, &[1]), Some(hs(1, 1, 2)))
        .expect("persist");
    let seg = segments(template.path()).remove(0);
    let before_last = len(&seg);
    s.persist(None, &ents(4, &[2, 2]), Some(hs(2, 0, 3)))
        .expect("persist");
    drop(s);
    let full = len(&seg);

    for cut in before_last..full {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), dir.path());
        let seg = segments(dir.path()).remove(0);
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .and_then(|f| f.set_len(cut))
            .expect("truncate");

        let mut s = open(dir.path(), fast(1 << 20));
        let state = s.load().expect("a torn tail is not an error");
        assert_eq!(state.entries, ents(1, &[1, 1, 1]), "cut at {cut}");
        assert_eq!(state.hard_state, hs(1, 1, 2), "cut at {cut}");
        assert_eq!(len(&seg), before_last, "tail cut off at {cut}");

        s.persist(None, &ents(4, &[3]), Some(hs(3, 0, 3)))
            .expect("append after repair");
        drop(s);
        let state = reload(dir.path(), fast(1 << 20));
        assert_eq!(state.entries, ents(1, &[1, 1, 1, 3]), "cut at {cut}");
        assert_eq!(state.hard_state, hs(3, 0, 3));
    }
}

#[test]
fn a_value_holding_a_record_does_not_turn_a_torn_tail_into_corruption() {
    // A client can put any string, including the bytes of a whole, valid
    // WAL record. Record 2 holds (in its value) exactly the record that
    // would follow it; the last write, record 3, holds the one that would
    // follow it, and is torn at every offset. Recovery cuts only the torn
    // write and keeps every complete record, the one holding a record too.
    let template = tempfile::tempdir().expect("tempdir");
    let mut s = open(template.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), Some(hs(1, 1, 0)))
        .expect("persist");
    drop(s);
    let kept = put_entry(3, forge_record_after_next(template.path()));
    let mut s = open(template.path(), fast(1 << 20));
    s.persist(None, std::slice::from_ref(&kept), Some(hs(1, 1, 2)))
        .expect("persist");
    drop(s);
    let seg = segments(template.path()).remove(0);
    let before_last = len(&seg);
    let torn = put_entry(4, forge_record_after_next(template.path()));
    let mut s = open(template.path(), fast(1 << 20));
    s.persist(None, &[torn], Some(hs(1, 1, 3)))
        .expect("persist");
    drop(s);
    let full = len(&seg);
    let mut expected = ents(1, &[1, 1]);
    expected.push(kept);

    for cut in before_last..full {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), dir.path());
        let seg = segments(dir.path()).remove(0);
        truncate_to(&seg, cut);
        let mut s = DiskStorage::open(dir.path(), fast(1 << 20))
            .unwrap_or_else(|e| panic!("cut at {cut}: a torn tail is not corruption: {e}"));
        let state = s.load().expect("load");
        assert_eq!(state.entries, expected, "cut at {cut}");
        assert_eq!(state.hard_state, hs(1, 1, 2), "cut at {cut}");
        assert_eq!(
            len(&seg),
            before_last,
            "only the torn write is cut, at {cut}"
        );
        s.persist(None, &ents(4, &[2]), Some(hs(2, 0, 3)))
            .expect("append after repair");
        drop(s);
        let state = reload(dir.path(), fast(1 << 20));
        assert_eq!(state.entries.len(), 4, "cut at {cut}");
        assert_eq!(state.entries[3], entry(4, 2), "cut at {cut}");
    }
}

#[test]
fn any_flipped_byte_of_a_record_followed_by_records_is_refused_with_file_and_offset() {
    // Records 1 and 2 of the last segment, every byte of them (header or
    // payload), record 2 holding in its value the record that follows it.
    let template = tempfile::tempdir().expect("tempdir");
    let mut s = open(template.path(), fast(1 << 20));
    let seg = segments(template.path()).remove(0);
    let start1 = len(&seg);
    s.persist(None, &ents(1, &[1]), Some(hs(1, 1, 0)))
        .expect("persist");
    drop(s);
    let start2 = len(&seg);
    let holder = put_entry(2, forge_record_after_next(template.path()));
    let mut s = open(template.path(), fast(1 << 20));
    s.persist(None, &[holder], None).expect("persist");
    let start3 = len(&seg);
    s.persist(None, &ents(3, &[1]), None).expect("persist");
    drop(s);

    for (start, end) in [(start1, start2), (start2, start3)] {
        for at in start..end {
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(template.path(), dir.path());
            let seg = segments(dir.path()).remove(0);
            flip_bit(&seg, at);
            let err =
                DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("damage in the middle");
            match &err {
                StorageError::Corrupt { path, offset, .. } => {
                    assert_eq!(path, &seg, "byte {at}");
                    assert_eq!(*offset, start, "byte {at}");
                }
                other => panic!("byte {at}: expected Corrupt, got {other:?}"),
            }
            let message = err.to_string();
            assert!(message.contains("wal-0000000000000001.log"), "{message}");
            assert!(message.contains(&format!("offset {start}")), "{message}");
            assert!(message.contains("valid records follow"), "{message}");
        }
    }
}

#[test]
fn megabytes_of_garbage_after_the_last_record_are_a_torn_tail() {
    // Garbage in which every 16th offset reads, in the record header
    // layout, as a 1 MiB record carrying the number of the record after the
    // next one (records 0, 1 and 2 are written: the one sought is 4). A scan
    // that checksums a candidate's payload at every offset would do ~256 GB
    // of work here; recovery reads headers only and returns.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), Some(hs(1, 1, 0)))
        .expect("persist");
    s.persist(None, &ents(3, &[1]), Some(hs(1, 1, 2)))
        .expect("persist");
    drop(s);
    let seg = segments(dir.path()).remove(0);
    let good = len(&seg);
    let mut bytes = fs::read(&seg).expect("read");
    while bytes.len() < 4 << 20 {
        bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
        bytes.extend_from_slice(&[0xab; 4]);
        bytes.extend_from_slice(&4u64.to_le_bytes());
    }
    fs::write(&seg, bytes).expect("write");
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.entries, ents(1, &[1, 1, 1]));
    assert_eq!(state.hard_state, hs(1, 1, 2));
    assert_eq!(len(&seg), good);
}

#[test]
fn zeroed_tail_is_a_torn_tail() {
    // Some file systems leave zeroes where an interrupted append was going.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1]), None).expect("persist");
    drop(s);
    let seg = segments(dir.path()).remove(0);
    let good = len(&seg);
    let mut bytes = fs::read(&seg).expect("read");
    bytes.extend([0; 100]);
    fs::write(&seg, bytes).expect("write");
    assert_eq!(reload(dir.path(), fast(1 << 20)).entries, ents(1, &[1]));
    assert_eq!(len(&seg), good);
}

#[test]
fn flipped_bit_in_a_middle_record_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1]), None).expect("persist");
    let seg = segments(dir.path()).remove(0);
    let middle = len(&seg);
    s.persist(None, &ents(2, &[1]), None).expect("persist");
    s.persist(None, &ents(3, &[1]), None).expect("persist");
    drop(s);
    flip_bit(&seg, middle + 20);

    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("corruption");
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, middle);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("wal-0000000000000001.log"), "{message}");
    assert!(message.contains(&format!("offset {middle}")), "{message}");
    assert!(message.contains("valid records follow"), "{message}");
}

#[test]
fn flipped_bit_in_a_length_field_is_not_mistaken_for_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1]), None).expect("persist");
    let seg = segments(dir.path()).remove(0);
    let middle = len(&seg);
    s.persist(None, &ents(2, &[1]), None).expect("persist");
    s.persist(None, &ents(3, &[1]), None).expect("persist");
    drop(s);
    // The high byte of the length: the record now claims to run past the end.
    let mut bytes = fs::read(&seg).expect("read");
    bytes[middle as usize + 3] ^= 0x01;
    fs::write(&seg, bytes).expect("write");
    assert!(matches!(
        DiskStorage::open(dir.path(), fast(1 << 20)),
        Err(StorageError::Corrupt { offset, .. }) if offset == middle
    ));
}

#[test]
fn bad_tail_of_a_non_last_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(200));
    for i in 1..=20 {
        s.persist(None, &[entry(i, 1)], None).expect("persist");
    }
    drop(s);
    let first = segments(dir.path()).remove(0);
    let cut = len(&first) - 3;
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(cut))
        .expect("truncate");
    let err = DiskStorage::open(dir.path(), fast(200)).expect_err("corruption");
    assert!(
        matches!(&err, StorageError::Corrupt { path, .. } if path == &first),
        "{err}"
    );
    assert!(err.to_string().contains("not in the last segment"), "{err}");
}

#[test]
fn wrong_magic_or_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1]), None).expect("persist");
    drop(s);
    let seg = segments(dir.path()).remove(0);
    let good = fs::read(&seg).expect("read");

    let mut bytes = good.clone();
    bytes[8] = 9; // version 9
    fs::write(&seg, &bytes).expect("write");
    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("version");
    assert!(
        matches!(
            err,
            StorageError::UnsupportedVersion {
                found: 9,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );

    let mut bytes = good;
    bytes[..8].copy_from_slice(b"NOTAWAL!");
    fs::write(&seg, &bytes).expect("write");
    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("magic");
    assert!(
        matches!(&err, StorageError::Corrupt { offset: 0, path, .. } if path == &seg),
        "{err}"
    );
}

/// A segment written by the previous format (version 2: `len | crc32 |
/// payload` frames, no salt), as that build wrote it: one put, with its
/// hard state.
const V2_SEGMENT: &str = "524146544b56574c0200000001000000000000006aa7879a070000001bb8d02500\
     00000100000011000000baf26642000001010101070100016b017601010101";

#[test]
fn a_directory_of_the_previous_format_is_refused_naming_the_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = dir.path().join("wal-0000000000000001.log");
    let bytes: Vec<u8> = (0..V2_SEGMENT.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&V2_SEGMENT[i..i + 2], 16).expect("hex"))
        .collect();
    fs::write(&seg, &bytes).expect("write");
    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("old format");
    assert!(
        matches!(
            &err,
            StorageError::UnsupportedVersion {
                found: 2,
                supported: 3,
                path,
            } if path == &seg
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("wal-0000000000000001.log"), "{message}");
    assert!(message.contains("format version 2"), "{message}");
    assert!(message.contains("older format"), "{message}");
    assert_eq!(fs::read(&seg).expect("read"), bytes, "left untouched");
}

#[test]
fn gap_in_segment_sequence_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(200));
    for i in 1..=20 {
        s.persist(None, &[entry(i, 1)], None).expect("persist");
    }
    drop(s);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1]).expect("remove");
    let err = DiskStorage::open(dir.path(), fast(200)).expect_err("gap");
    assert!(
        matches!(&err, StorageError::MissingSegment { path, .. } if path == &segs[1]),
        "{err}"
    );
}

#[test]
fn missing_first_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(200));
    for i in 1..=20 {
        s.persist(None, &[entry(i, 1)], None).expect("persist");
    }
    drop(s);
    fs::remove_file(&segments(dir.path())[0]).expect("remove");
    let err = DiskStorage::open(dir.path(), fast(200)).expect_err("missing");
    assert!(matches!(err, StorageError::MissingSegment { .. }), "{err}");
}

#[test]
fn missing_or_empty_directory_is_a_fresh_node() {
    let root = tempfile::tempdir().expect("tempdir");
    let missing = root.path().join("a/b/node-1");
    assert_eq!(reload(&missing, fast(1 << 20)), PersistedState::default());
    assert!(missing.is_dir());

    let empty = root.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    fs::write(empty.join("README"), "not ours").expect("foreign file");
    fs::write(empty.join("wal-0000000000000001.log.tmp"), "half").expect("tmp");
    assert_eq!(reload(&empty, fast(1 << 20)), PersistedState::default());
    assert!(
        empty.join("README").exists(),
        "foreign files are left alone"
    );
    assert!(!empty.join("wal-0000000000000001.log.tmp").exists());
}

#[test]
fn hard_state_survives_and_the_last_one_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &[], Some(hs(1, 3, 0))).expect("vote");
    s.persist(None, &[], Some(hs(2, 0, 0))).expect("new term");
    drop(s);
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.hard_state, hs(2, 0, 0));
    assert!(state.entries.is_empty());
}

#[test]
fn a_snapshot_written_off_the_loop_counts_once_recorded() {
    // The node writes its own snapshot's file on another thread while the
    // WAL goes on; the file is referenced only by `record_snapshot`.
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = sync_on(1 << 20);
    let mut s = open(dir.path(), opts);
    s.persist(None, &ents(1, &[1; 20]), Some(hs(1, 1, 20)))
        .expect("persist");
    let writer = s.snapshot_writer();
    let written = std::thread::spawn(move || writer.write(&snap(10, 1)));
    s.persist(None, &ents(21, &[1; 5]), None)
        .expect("persist meanwhile");
    written.join().expect("writer thread").expect("written");
    s.record_snapshot(&snap(10, 1)).expect("recorded");
    drop(s);
    let state = reload(dir.path(), opts);
    assert_eq!(state.snapshot, Some(snap(10, 1)));
    assert_eq!(state.entries, ents(11, &[1; 15]));

    // Overtaken: a newer snapshot from the leader was stored while ours was
    // being written. Ours is refused and its file removed.
    let mut s = open(dir.path(), opts);
    let writer = s.snapshot_writer();
    writer.write(&snap(15, 1)).expect("written");
    s.persist(Some(&snap(30, 2)), &[], Some(hs(2, 0, 30)))
        .expect("leader snapshot");
    assert!(matches!(
        s.record_snapshot(&snap(15, 1)),
        Err(StorageError::SnapshotOutOfDate {
            index: 15,
            current: 30
        })
    ));
    assert_eq!(
        files(dir.path(), "snap-"),
        [dir.path().join("snap-000000000000001e.snap")]
    );
    drop(s);
    assert_eq!(reload(dir.path(), opts).snapshot, Some(snap(30, 2)));
}

#[test]
fn save_snapshot_compacts_segments_and_older_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = sync_on(300);
    let mut s = open(dir.path(), opts);
    s.persist(None, &[], Some(hs(1, 2, 0))).expect("vote");
    for i in 1..=40 {
        s.persist(None, &[entry(i, 1)], None).expect("persist");
    }
    let before = segments(dir.path());
    s.save_snapshot(&snap(30, 1)).expect("snapshot");
    let after = segments(dir.path());
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(files(dir.path(), "snap-").len(), 1);

    s.save_snapshot(&snap(35, 1)).expect("second snapshot");
    assert_eq!(
        files(dir.path(), "snap-"),
        [dir.path().join("snap-0000000000000023.snap")],
        "only the newest snapshot is kept"
    );
    s.persist(None, &[entry(41, 2)], None).expect("append");
    drop(s);

    let state = reload(dir.path(), opts);
    assert_eq!(state.snapshot, Some(snap(35, 1)));
    let mut expected: Vec<Entry> = (36..=40).map(|i| entry(i, 1)).collect();
    expected.push(entry(41, 2));
    assert_eq!(state.entries, expected);
    assert_eq!(
        state.hard_state,
        hs(1, 2, 0),
        "the hard state outlives the segment it was first written to"
    );
}

#[test]
fn compaction_removing_in_the_background_leaves_the_same_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = sync_on(300);
    let mut s = DiskStorage::open(dir.path(), opts).expect("open");
    s.remove_in_background().expect("remover thread");
    s.persist(None, &[], Some(hs(1, 2, 0))).expect("vote");
    for i in 1..=40 {
        s.persist(None, &[entry(i, 1)], None).expect("persist");
    }
    let before = segments(dir.path());
    // Two snapshots in a row: the second compaction lists the first's old
    // snapshot file again while its removal may still be queued.
    s.save_snapshot(&snap(30, 1)).expect("snapshot");
    s.save_snapshot(&snap(35, 1)).expect("second snapshot");
    s.stop_background_removal();
    let after = segments(dir.path());
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(
        files(dir.path(), "snap-"),
        [dir.path().join("snap-0000000000000023.snap")],
        "only the newest snapshot is kept"
    );
    // Removing inline again from here on.
    s.persist(None, &[entry(41, 2)], None).expect("append");
    s.save_snapshot(&snap(41, 2)).expect("third snapshot");
    assert_eq!(
        files(dir.path(), "snap-"),
        [dir.path().join("snap-0000000000000029.snap")]
    );
    drop(s);
    let state = reload(dir.path(), opts);
    assert_eq!(state.snapshot, Some(snap(41, 2)));
    assert!(state.entries.is_empty());
}

#[test]
fn a_store_dropped_with_removals_queued_finishes_them_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = sync_on(300);
    let mut s = DiskStorage::open(dir.path(), opts).expect("open");
    s.remove_in_background().expect("remover thread");
    for i in 1..=40 {
        s.persist(None, &[entry(i, 1)], Some(hs(1, 1, i)))
            .expect("persist");
    }
    s.save_snapshot(&snap(30, 1)).expect("snapshot");
    drop(s);
    let state = reload(dir.path(), opts);
    assert_eq!(state.snapshot, Some(snap(30, 1)));
    assert_eq!(
        state.entries,
        (31..=40).map(|i| entry(i, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn snapshot_covering_the_whole_log_leaves_one_small_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(300));
    for i in 1..=40 {
        s.persist(None, &[entry(i, 1)], Some(hs(1, 1, i)))
            .expect("persist");
    }
    s.save_snapshot(&snap(40, 1)).expect("snapshot");
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(len(&segs[0]) < 100);
    drop(s);
    let state = reload(dir.path(), fast(300));
    assert_eq!(state.snapshot, Some(snap(40, 1)));
    assert!(state.entries.is_empty());
    assert_eq!(state.hard_state, hs(1, 1, 40));
}

#[test]
fn the_segment_with_the_newest_snapshot_mark_is_never_compacted() {
    // The snapshot mark's segment fills with hard-state-only writes and rolls
    // before any later entry lands in it: its highest index is the snapshot's,
    // yet recovery needs its mark, so compaction on reopen must keep it.
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = fast(200);
    let mut s = open(dir.path(), opts);
    s.persist(None, &ents(1, &[1, 1, 1]), None)
        .expect("persist");
    s.save_snapshot(&snap(3, 1)).expect("snapshot");
    let marked = segments(dir.path());
    for term in 2..40 {
        s.persist(None, &[], Some(hs(term, 0, 3)))
            .expect("hard state");
    }
    assert!(segments(dir.path()).len() > marked.len(), "rolled");
    drop(s);
    for _ in 0..2 {
        let state = reload(dir.path(), opts);
        assert_eq!(state.snapshot, Some(snap(3, 1)));
        assert!(state.entries.is_empty());
        assert_eq!(state.hard_state, hs(39, 0, 3));
    }
}

#[test]
fn leader_snapshot_replaces_a_conflicting_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1, 1]), None)
        .expect("persist");
    s.persist(
        Some(&snap(50, 4)),
        &ents(49, &[4, 4, 4, 4]),
        Some(hs(4, 0, 50)),
    )
    .expect("install");
    drop(s);
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.snapshot, Some(snap(50, 4)));
    assert_eq!(state.entries, ents(51, &[4, 4]), "covered entries skipped");
    assert_eq!(state.hard_state, hs(4, 0, 50));
}

#[test]
fn leader_snapshot_keeps_a_matching_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1, 2, 2]), None)
        .expect("persist");
    s.persist(Some(&snap(3, 2)), &[], None).expect("install");
    drop(s);
    assert_eq!(reload(dir.path(), fast(1 << 20)).entries, ents(4, &[2]));
}

#[test]
fn crash_between_snapshot_file_and_wal_mark_is_repaired() {
    // Node A has entries 1..=10 of term 1. A snapshot file made elsewhere is
    // copied into A's directory as if A had crashed right after writing it and
    // before recording it in the WAL. Whether the snapshot matches A's log,
    // conflicts with it or lies beyond it, A must load it with the right tail
    // and keep appending after it across restarts.
    let cases: [(Index, Term, Vec<Entry>); 3] = [
        (8, 1, ents(9, &[1, 1])), // matches entry 8: the tail stays
        (8, 5, vec![]),           // conflicts with entry 8: the log goes
        (12, 5, vec![]),          // beyond the log: the log goes
    ];
    for (index, term, tail) in cases {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        open(a.path(), fast(1 << 20))
            .persist(None, &ents(1, &[1; 10]), None)
            .expect("persist");
        open(b.path(), fast(1 << 20))
            .save_snapshot(&snap(index, term))
            .expect("snapshot");
        let name = format!("snap-{index:016x}.snap");
        fs::copy(b.path().join(&name), a.path().join(&name)).expect("copy");

        let mut s = open(a.path(), fast(1 << 20));
        let state = s.load().expect("load");
        assert_eq!(state.snapshot, Some(snap(index, term)));
        assert_eq!(state.entries, tail, "snapshot ({index}, {term})");
        let next = index + tail.len() as Index + 1;
        s.persist(None, &[entry(next, 6)], None).expect("append");
        drop(s);
        let mut expected = tail;
        expected.push(entry(next, 6));
        for _ in 0..2 {
            let state = reload(a.path(), fast(1 << 20));
            assert_eq!(state.entries, expected, "snapshot ({index}, {term})");
        }
    }
}

#[test]
fn flipped_bit_in_the_snapshot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), None).expect("persist");
    s.save_snapshot(&snap(2, 1)).expect("snapshot");
    drop(s);
    let file = dir.path().join("snap-0000000000000002.snap");
    flip_bit(&file, len(&file) / 2);
    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("corrupt");
    assert!(
        matches!(&err, StorageError::Corrupt { path, .. } if path == &file),
        "{err}"
    );
    assert!(
        err.to_string().contains("snap-0000000000000002.snap"),
        "{err}"
    );
}

#[test]
fn missing_snapshot_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), None).expect("persist");
    s.save_snapshot(&snap(2, 1)).expect("snapshot");
    drop(s);
    fs::remove_file(dir.path().join("snap-0000000000000002.snap")).expect("remove");
    let err = DiskStorage::open(dir.path(), fast(1 << 20)).expect_err("missing");
    assert!(matches!(err, StorageError::MissingSnapshot { .. }), "{err}");
}

#[test]
fn refused_calls_write_nothing_and_do_not_poison() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), None).expect("persist");
    s.save_snapshot(&snap(2, 1)).expect("snapshot");
    assert!(matches!(
        s.persist(None, &ents(5, &[1]), Some(hs(9, 9, 9))),
        Err(StorageError::LogGap { first: 5, last: 2 })
    ));
    assert!(matches!(
        s.save_snapshot(&snap(1, 1)),
        Err(StorageError::SnapshotOutOfDate {
            index: 1,
            current: 2
        })
    ));
    s.persist(None, &ents(3, &[1]), None).expect("still usable");
    drop(s);
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.entries, ents(3, &[1]));
    assert_eq!(state.hard_state, HardState::default());
}

#[test]
fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path(), fast(1 << 20));
    assert!(matches!(
        DiskStorage::open(dir.path(), fast(1 << 20)),
        Err(StorageError::Locked { .. })
    ));
    drop(first);
    open(dir.path(), fast(1 << 20));
}

// Disk full. A real ENOSPC without root-only tricks (a tiny tmpfs needs
// mount; RLIMIT_FSIZE is process-wide and would hit the other tests; a
// read-only directory does not stop root): the store writes every new file
// through a `.tmp` name, so a symlink from that name to /dev/full makes the
// kernel answer ENOSPC to exactly that write. Appends to an already-open
// segment cannot be redirected this way; they share the poisoning code
// (`DiskStorage::guarded`) with the paths tested here.

fn dev_full() -> Option<&'static Path> {
    let path = Path::new("/dev/full");
    path.exists().then_some(path)
}

#[test]
fn disk_full_while_rolling_a_segment_poisons_the_store() {
    let Some(full) = dev_full() else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = fast(100);
    let mut s = open(dir.path(), opts);
    s.persist(None, &ents(1, &[1, 1, 1]), Some(hs(1, 1, 0)))
        .expect("fills the first segment past 100 bytes");
    std::os::unix::fs::symlink(full, dir.path().join("wal-0000000000000002.log.tmp"))
        .expect("symlink");

    let err = s
        .persist(None, &ents(4, &[1]), None)
        .expect_err("the roll must fail");
    assert!(err.is_disk_full(), "{err}");
    let again = s
        .persist(None, &[], Some(hs(2, 0, 0)))
        .expect_err("poisoned");
    assert!(matches!(again, StorageError::Poisoned { .. }), "{again}");
    assert!(again.is_disk_full(), "{again}");
    assert!(matches!(s.load(), Err(StorageError::Poisoned { .. })));
    drop(s);

    // A restart removes the leftover (the link, not /dev/full) and goes on.
    let mut s = open(dir.path(), opts);
    assert_eq!(s.load().expect("load").entries, ents(1, &[1, 1, 1]));
    s.persist(None, &ents(4, &[1]), None).expect("works again");
    assert!(full.exists());
}

#[test]
fn disk_full_while_writing_its_own_snapshot_leaves_the_log_usable() {
    // The node's own snapshot file is written before anything refers to
    // it: a failure changes nothing durable, so the WAL goes on.
    let Some(full) = dev_full() else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), fast(1 << 20));
    s.persist(None, &ents(1, &[1, 1]), None).expect("persist");
    std::os::unix::fs::symlink(full, dir.path().join("snap-0000000000000002.snap.tmp"))
        .expect("symlink");
    let err = s.save_snapshot(&snap(2, 1)).expect_err("disk full");
    assert!(err.is_disk_full(), "{err}");
    s.persist(None, &ents(3, &[1]), None)
        .expect("the log is still writable");
    drop(s);
    let state = reload(dir.path(), fast(1 << 20));
    assert_eq!(state.snapshot, None);
    assert_eq!(state.entries, ents(1, &[1, 1, 1]));
}
