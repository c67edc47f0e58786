//! Decoders of untrusted bytes never panic. Runs the fuzz targets' bodies
//! (`fuzz/src/lib.rs`) on stable Rust: every input kept in
//! `fuzz/regressions/<target>/` (crashes found by `cargo fuzz`, fixed, and
//! kept so they stay fixed), then a bounded, seeded mutation loop over valid
//! encodings of each format. `RAFT_FUZZ_ITERS=N` runs N mutations per target
//! instead of the default.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};

use raft_core::rng::Rng;
use raft_core::wire::{PeerBatch, SnapshotChunk};
use raft_core::{
    Command, Entry, HardState, KvStore, Membership, Message, MessageBody, Op, Payload, Snapshot,
    SnapshotMeta,
};
use raft_kv_server::storage::{decode, DiskOptions, DiskStorage, Storage};

const DEFAULT_ITERS: u64 = 3_000;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 4] = [
    ("wal_segment", fuzz_bodies::wal_segment),
    ("wal_record", fuzz_bodies::wal_record),
    ("snapshot_file", fuzz_bodies::snapshot_file),
    ("peer_rpc", fuzz_bodies::peer_rpc),
];

fn regressions_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target)
}

fn put(index: u64, key: &str, value: &str) -> Entry {
    Entry {
        term: 2,
        index,
        // No session: applied as written (a client id must be registered).
        payload: Payload::command(Command {
            client_id: 0,
            seq: 0,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
        }),
    }
}

/// A real WAL segment and a real snapshot file, written by `DiskStorage`.
fn disk_files() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = DiskStorage::open(
        dir.path(),
        DiskOptions {
            sync: false,
            segment_bytes: 1 << 20,
        },
    )
    .expect("open");
    let entries: Vec<Entry> = (1..=6).map(|i| put(i, &format!("k{i}"), "value")).collect();
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 4,
    };
    store
        .persist(None, &entries[..3], Some(hs))
        .expect("persist");
    store.persist(None, &entries[3..], None).expect("persist");
    let mut kv = KvStore::default();
    for e in &entries {
        kv.apply(e);
    }
    let segment = read_one(dir.path(), ".log");
    store
        .save_snapshot(&Snapshot {
            meta: SnapshotMeta {
                index: 6,
                term: 2,
                membership: Membership::new(vec![1, 2, 3]),
            },
            data: kv.snapshot(),
        })
        .expect("snapshot");
    (segment, read_one(dir.path(), ".snap"))
}

fn read_one(dir: &Path, suffix: &str) -> Vec<u8> {
    let path = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} file in {}", dir.display()));
    std::fs::read(path).expect("read")
}

/// Valid inputs of each target, the starting points of the mutations.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let (segment, snapshot) = disk_files();
    match target {
        "wal_segment" => vec![segment],
        "wal_record" => {
            // The first frame after the 32-byte segment header: a 20-byte
            // header (u32 length, u32 payload CRC32, u64 number, u32 header
            // CRC32), then the record body.
            let len = u32::from_le_bytes(segment[32..36].try_into().unwrap()) as usize;
            vec![segment[52..52 + len].to_vec()]
        }
        "snapshot_file" => {
            let data = decode::snapshot_file(&snapshot)
                .expect("valid snapshot")
                .data;
            vec![snapshot, data]
        }
        "peer_rpc" => {
            let append = Message {
                from: 2,
                to: 1,
                term: 3,
                body: MessageBody::Append {
                    prev_index: 0,
                    prev_term: 0,
                    entries: (1..=3).map(|i| put(i, "k", "v")).collect(),
                    commit: 2,
                },
            };
            let heartbeat = Message {
                from: 2,
                to: 1,
                term: 3,
                body: MessageBody::Heartbeat {
                    commit: 2,
                    read_ctx: 9,
                    seq: 1,
                },
            };
            let chunk = SnapshotChunk {
                from: 2,
                to: 1,
                term: 3,
                meta: SnapshotMeta::default(),
                total_len: 4,
                crc32: crc32fast::hash(&[1, 2, 3, 4]),
                offset: 0,
                data: vec![1, 2, 3, 4],
            };
            vec![
                PeerBatch {
                    from: 2,
                    messages: vec![append, heartbeat],
                }
                .encode(),
                chunk.encode(),
            ]
        }
        other => panic!("unknown target {other}"),
    }
}

/// One random edit: flip a bit, overwrite a byte with an interesting value,
/// cut the tail, insert bytes, or duplicate a slice.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let pick = |rng: &mut Rng, n: usize| rng.range(0, n.max(1) as u64) as usize;
    match rng.range(0, 5) {
        0 if !input.is_empty() => {
            let i = pick(rng, input.len());
            input[i] ^= 1 << rng.range(0, 8);
        }
        1 if !input.is_empty() => {
            let i = pick(rng, input.len());
            input[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][pick(rng, 5)];
        }
        2 => {
            let n = pick(rng, input.len() + 1);
            input.truncate(n);
        }
        3 => {
            let i = pick(rng, input.len() + 1);
            let n = 1 + pick(rng, 16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            input.splice(i..i, bytes);
        }
        _ if !input.is_empty() => {
            let a = pick(rng, input.len());
            let b = (a + 1 + pick(rng, 32)).min(input.len());
            let slice = input[a..b].to_vec();
            let at = pick(rng, input.len() + 1);
            input.splice(at..at, slice);
        }
        _ => input.push(rng.next_u64() as u8),
    }
}

#[test]
fn kept_fuzz_inputs_still_decode_without_panicking() {
    let mut replayed = 0;
    for (target, body) in TARGETS {
        let dir = regressions_dir(target);
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files {
            let path = file.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read a kept input");
            eprintln!("replaying {}", path.display());
            body(&bytes);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} kept inputs");
}

#[test]
fn valid_inputs_decode() {
    let (segment, snapshot) = disk_files();
    let s = decode::wal_segment(&segment, true).expect("valid segment");
    assert_eq!((s.records, s.entries), (3, 6), "{s:?}");
    assert_eq!(s.valid_len, segment.len() as u64);
    let snap = decode::snapshot_file(&snapshot).expect("valid snapshot");
    assert_eq!(snap.meta.index, 6);
    let kv = KvStore::restore(&snap.data).expect("state machine image");
    assert_eq!(kv.get("k6"), Some("value"));
    // A torn tail is cut off in the last segment and refused elsewhere.
    let torn = &segment[..segment.len() - 3];
    let s = decode::wal_segment(torn, true).expect("torn tail of the last segment");
    assert!(s.valid_len < torn.len() as u64 && s.records == 2, "{s:?}");
    assert!(decode::wal_segment(torn, false).is_err());
}

#[test]
fn mutated_inputs_never_panic() {
    let iters: u64 = std::env::var("RAFT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    for (n, (target, body)) in TARGETS.into_iter().enumerate() {
        let seeds = seeds(target);
        let mut rng = Rng::new(0x5eed_0000 + n as u64);
        for i in 0..iters {
            let mut input = seeds[i as usize % seeds.len()].clone();
            for _ in 0..rng.range(1, 5) {
                mutate(&mut rng, &mut input);
            }
            let outcome = std::panic::catch_unwind(|| body(&input));
            assert!(
                outcome.is_ok(),
                "target {target} panicked on mutation {i}; input (hex): {}",
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    }
}
