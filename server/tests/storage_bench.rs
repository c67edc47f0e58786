//! How many durable `persist` calls per second the disk store does (each is
//! one fdatasync), with 1 entry and with 64 entries of ~100 bytes per call.
//! Not a timed test: run it by hand, in release mode.
//!
//! ```text
//! cargo test --release -p raft-kv-server --test storage_bench -- --ignored --nocapture
//! ```
//!
//! `STORAGE_BENCH_DIR=/path` measures another file system than the temp dir's.

use std::time::{Duration, Instant};

use raft_core::{Command, Entry, Op, Payload};
use raft_kv_server::storage::{DiskOptions, DiskStorage, Storage};

/// An entry whose postcard encoding is about 100 bytes.
fn entry(index: u64) -> Entry {
    Entry {
        term: 1,
        index,
        payload: Payload::Command(Command {
            client_id: 1,
            seq: index,
            op: Op::Put {
                key: format!("key-{index:08}"),
                value: "v".repeat(78),
            },
        }),
    }
}

/// Persists `batch` entries per call until `budget` has passed; returns
/// (calls per second, entries per second).
fn measure(batch: u64, budget: Duration) -> (f64, f64) {
    let base = std::env::var_os("STORAGE_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let mut store = DiskStorage::open(dir.path(), DiskOptions::default()).expect("open");
    let mut next = 1;
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let entries: Vec<Entry> = (next..next + batch).map(entry).collect();
        store.persist(None, &entries, None).expect("persist");
        next += batch;
        calls += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    (calls as f64 / secs, (calls * batch) as f64 / secs)
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture"]
fn fsyncs_per_second() {
    let size = postcard::to_stdvec(&entry(1)).expect("encode").len();
    println!("entry size: {size} bytes (postcard)");
    for batch in [1, 64] {
        let (calls, entries) = measure(batch, Duration::from_secs(5));
        println!(
            "{batch:>3} entries/persist: {calls:>8.0} persist (fsync)/s, {entries:>9.0} entries/s"
        );
    }
}
