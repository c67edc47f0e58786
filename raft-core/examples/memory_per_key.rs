//! Where a member's memory goes (issue 15): resident memory added by a
//! state machine of N keys shaped like the benchmark's puts (a 25-byte key,
//! a 100-byte value), by a log of N/2 such entries, and by one snapshot
//! image of the state. Linux only (reads `/proc/self/status`).
//!
//! `cargo run --release -p raft-core --example memory_per_key [N]`

use raft_core::{Command, Entry, KvStore, Op, Payload};

/// This process's resident set, in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn put(i: u64, value: &str) -> Entry {
    Entry {
        term: 1,
        index: i + 1,
        payload: Payload::command(Command {
            client_id: 0,
            seq: 0,
            op: Op::Put {
                key: format!("bench-12345-{:02}-{i:010}", i % 2),
                value: value.to_string(),
            },
        }),
    }
}

fn main() {
    let n: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: memory_per_key [KEYS]: {e}");
            std::process::exit(2);
        }
    };
    let Some(start) = rss_kib() else {
        eprintln!("no /proc/self/status: Linux only");
        std::process::exit(1);
    };
    let value = "x".repeat(100);
    let mut kv = KvStore::new();
    let mut raw = 0u64;
    for i in 0..n {
        let entry = put(i, &value);
        if let Payload::Command(c) = &entry.payload {
            if let Op::Put { key, value } = &c.op {
                raw += (key.len() + value.len()) as u64;
            }
        }
        kv.apply(&entry);
    }
    let with_map = rss_kib().unwrap_or(start);
    let per = |kib: u64, count: u64| kib as f64 * 1024.0 / count.max(1) as f64;
    println!(
        "state machine: {n} keys, {raw} bytes of key+value, {} KiB resident, {:.0} B a key, {:.2}x",
        with_map - start,
        per(with_map - start, n),
        (with_map - start) as f64 * 1024.0 / raw.max(1) as f64
    );
    let log: Vec<Entry> = (0..n / 2).map(|i| put(i, &value)).collect();
    let with_log = rss_kib().unwrap_or(with_map);
    println!(
        "log: {} entries, {} KiB resident, {:.0} B an entry",
        log.len(),
        with_log - with_map,
        per(with_log - with_map, log.len() as u64)
    );
    let image = kv.snapshot();
    let with_image = rss_kib().unwrap_or(with_log);
    println!(
        "snapshot image: {} bytes, {} KiB resident",
        image.len(),
        with_image.saturating_sub(with_log)
    );
}
