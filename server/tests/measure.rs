//! Measurements, not tests: ignored by default. Run them with a release build:
//!
//! ```text
//! cargo test --release -p raft-kv-server --test measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `MEASURE_RUNS` (default 5) failover runs; `MEASURE_WRITERS` (default 32)
//! concurrent writers for `MEASURE_SECS` (default 5) seconds.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{http_client, Cluster};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure_failover_after_leader_sigkill() {
    let runs = env_or("MEASURE_RUNS", 5);
    let mut times = Vec::new();
    for run in 0..runs {
        let mut c = Cluster::start(3).await;
        let old = c.wait_for_leader(Duration::from_secs(15)).await;
        assert_eq!(c.put(old, "k", "v").await.status(), 200);
        let survivors: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();
        let client = http_client();
        c.kill(old);
        let started = Instant::now();
        // One client trying the survivors in turn, as a CLI would.
        'outer: loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no write in 20 s"
            );
            for &id in &survivors {
                let r = client
                    .put(format!("{}/key/k", c.url(id)))
                    .json(&serde_json::json!({"value": "after"}))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 200) {
                    break 'outer;
                }
            }
        }
        let took = started.elapsed();
        eprintln!("run {run}: first successful write {took:?} after SIGKILL of the leader");
        times.push(took);
    }
    times.sort();
    eprintln!(
        "failover over {runs} runs: median {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure_write_throughput() {
    let writers = env_or("MEASURE_WRITERS", 32);
    let secs = env_or("MEASURE_SECS", 5);
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(15)).await;
    for (label, target) in [("leader", leader), ("follower (forwarded)", leader % 3 + 1)] {
        let stop = Arc::new(AtomicBool::new(false));
        let value = "x".repeat(100);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let url = c.url(target);
            let stop = stop.clone();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                let client = http_client();
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client
                        .put(format!("{url}/key/w{w}-{}", i % 1000))
                        .json(&serde_json::json!({ "value": value }))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                (lat, errors)
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await.unwrap();
            all.extend(lat);
            errors += e;
        }
        all.sort();
        let n = all.len();
        eprintln!(
            "{label}: {writers} writers, {secs} s: {n} writes ({:.0}/s), {errors} errors, \
             latency p50 {:?} p99 {:?}",
            n as f64 / secs as f64,
            all.get(n / 2).copied().unwrap_or_default(),
            all.get(n * 99 / 100).copied().unwrap_or_default(),
        );
    }
    let metrics = c.metrics_text(leader).await.expect("leader metrics");
    for l in metrics.lines() {
        if l.starts_with("raft_persists_total") || l.starts_with("raft_proposals_total") {
            eprintln!("leader {l}");
        }
    }
}
