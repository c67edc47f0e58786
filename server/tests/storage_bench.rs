//! How many durable `persist` calls per second the disk store does (each is
//! one fdatasync), with 1 entry and with 64 entries of ~100 bytes per call;
//! and how long a node holding 1,000,000 keys takes to load its snapshot,
//! replay its WAL and rebuild its state machine, and how large the snapshot
//! is per key. Not timed tests: run them by hand, in release mode.
//!
//! ```text
//! cargo test --release -p raft-kv-server --test storage_bench -- --ignored --nocapture
//! ```
//!
//! `STORAGE_BENCH_DIR=/path` measures another file system than the temp dir's.

use std::time::{Duration, Instant};

use raft_core::{Command, Entry, KvStore, Membership, Op, Payload, Snapshot, SnapshotMeta};
use raft_kv_server::storage::{DiskOptions, DiskStorage, Storage};

/// An entry whose postcard encoding is about 100 bytes.
fn entry(index: u64) -> Entry {
    Entry {
        term: 1,
        index,
        payload: Payload::command(Command {
            client_id: 1,
            seq: index,
            op: Op::Put {
                key: format!("key-{index:08}"),
                value: "v".repeat(78),
            },
        }),
    }
}

/// What one run measured.
struct Run {
    calls_per_sec: f64,
    entries_per_sec: f64,
    median: Duration,
    p99: Duration,
}

/// Persists `batch` entries per call until `budget` has passed.
fn measure(batch: u64, budget: Duration) -> Run {
    let base = std::env::var_os("STORAGE_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let mut store = DiskStorage::open(dir.path(), DiskOptions::default()).expect("open");
    let mut next = 1;
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let entries: Vec<Entry> = (next..next + batch).map(entry).collect();
        let call = Instant::now();
        store.persist(None, &entries, None).expect("persist");
        latencies.push(call.elapsed());
        next += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    let calls = latencies.len();
    latencies.sort_unstable();
    Run {
        calls_per_sec: calls as f64 / secs,
        entries_per_sec: calls as f64 * batch as f64 / secs,
        median: latencies[calls / 2],
        p99: latencies[(calls * 99 / 100).min(calls - 1)],
    }
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn fsyncs_per_second() {
    let size = postcard::to_stdvec(&entry(1)).expect("encode").len();
    println!("entry size: {size} bytes (postcard)");
    // Alternating rounds, so that disk contention from other processes hits
    // both batch sizes alike.
    for round in 1..=3 {
        for batch in [1, 64] {
            let r = measure(batch, Duration::from_secs(3));
            println!(
                "round {round}: {batch:>2} entries/persist: {:>6.0} persist (fsync)/s, \
                 {:>8.0} entries/s, latency median {:>7.2?} p99 {:>7.2?}",
                r.calls_per_sec, r.entries_per_sec, r.median, r.p99
            );
        }
    }
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn restart_with_a_million_keys() {
    let keys: u64 = std::env::var("STORAGE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tail = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    // The state a node has after `keys` puts of ~100-byte values: a snapshot
    // at `keys`, then `tail` more entries in the WAL.
    let mut kv = KvStore::new();
    for i in 1..=keys {
        kv.apply(&entry(i));
    }
    let data = kv.snapshot();
    println!(
        "snapshot: {} bytes for {keys} keys = {:.1} bytes/key (key ~12 B, value 78 B)",
        data.len(),
        data.len() as f64 / keys as f64
    );
    {
        let mut store = DiskStorage::open(dir.path(), DiskOptions::default()).expect("open");
        store
            .persist(
                None,
                &(1..=keys.min(1000)).map(entry).collect::<Vec<_>>(),
                None,
            )
            .expect("persist");
        store
            .save_snapshot(&Snapshot {
                meta: SnapshotMeta {
                    index: keys,
                    term: 1,
                    membership: Membership::new(vec![1, 2, 3]),
                },
                data,
            })
            .expect("snapshot");
        for chunk in (keys + 1..=keys + tail).collect::<Vec<_>>().chunks(100) {
            let entries: Vec<Entry> = chunk.iter().map(|&i| entry(i)).collect();
            store.persist(None, &entries, None).expect("persist");
        }
    }
    drop(kv);
    for round in 1..=3 {
        let started = Instant::now();
        let mut store = DiskStorage::open(dir.path(), DiskOptions::default()).expect("open");
        let state = store.load().expect("load");
        let loaded = started.elapsed();
        let snapshot = state.snapshot.expect("a snapshot");
        let mut kv = KvStore::restore(&snapshot.data).expect("restore");
        let restored = started.elapsed();
        for e in &state.entries {
            kv.apply(e);
        }
        let total = started.elapsed();
        assert_eq!(kv.len() as u64, keys + tail);
        println!(
            "round {round}: open+load {loaded:.2?}, +restore state machine {restored:.2?}, \
             +replay {} entries {total:.2?}",
            state.entries.len()
        );
    }
}
