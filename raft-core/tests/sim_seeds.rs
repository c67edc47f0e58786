//! Randomized deterministic simulation: thousands of seeds, each a cluster
//! of 3 to 9 nodes with its own timing, batching, PreVote/CheckQuorum,
//! network quality and snapshot frequency, at least 200 client operations,
//! and a nemesis crashing nodes (also in the middle of a write, between a
//! snapshot file and its record, or halting them with a disk error),
//! cutting links and degrading the network.
//! One seed in [`CHURN_EVERY`] also churns the membership among 3 to 7
//! voters ([`SimConfig::randomized_churn`]): learners joining under new ids,
//! promotions, removals, replacements, removed members re-added under new
//! ids and stopped. Raft's invariants are checked after every step, the
//! history's linearizability at the end.
//!
//! * `cargo test -p raft-core --test sim_seeds` runs seeds `0..2000`, split
//!   over several tests that run in parallel.
//! * `RAFT_SIM_SEEDS=<count> [RAFT_SIM_START=<first>]` runs that many seeds
//!   instead (soak mode), split the same way.
//! * `RAFT_SIM_SEED=<seed> cargo test -p raft-core --test sim_seeds --
//!   replay --nocapture` replays one seed and prints what happened.

use std::ops::Range;

use raft_core::sim::{Cluster, LinearizabilityError, Outcome, RunReport, SimConfig};

/// Seeds per `cargo test` run.
const DEFAULT_SEEDS: u64 = 2_000;
/// The seed range is split over this many tests.
const CHUNKS: u64 = 8;
/// Every this many seeds, one churns the membership.
const CHURN_EVERY: u64 = 3;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a number, got {v:?}"),
    }
}

/// The seeds test `chunk` runs.
fn chunk_range(chunk: u64) -> Range<u64> {
    let count = env_u64("RAFT_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let start = env_u64("RAFT_SIM_START").unwrap_or(0);
    let per = count.div_ceil(CHUNKS);
    let lo = start + (chunk * per).min(count);
    let hi = start + ((chunk + 1) * per).min(count);
    lo..hi
}

/// Whether seed `seed` churns the membership.
fn churns(seed: u64) -> bool {
    seed % CHURN_EVERY == CHURN_EVERY - 1
}

fn config(seed: u64) -> SimConfig {
    if churns(seed) {
        SimConfig::randomized_churn(seed)
    } else {
        SimConfig::randomized(seed)
    }
}

fn run_seed(seed: u64) -> RunReport {
    Cluster::new(config(seed))
        .expect("a randomized config is valid")
        .run_to_end()
}

fn replay_hint(seed: u64) -> String {
    format!(
        "replay: RAFT_SIM_SEED={seed} cargo test -p raft-core --test sim_seeds -- replay --nocapture"
    )
}

/// Why a seed failed, if it did.
fn failure(r: &RunReport) -> Option<String> {
    if let Some(v) = r.violations.first() {
        return Some(format!("{} violation(s), first: {v}", r.violations.len()));
    }
    if let Err(e @ LinearizabilityError::Inconclusive { .. }) = &r.linearizability {
        return Some(e.to_string());
    }
    if r.ops < 200 {
        return Some(format!("only {} client operations", r.ops));
    }
    None
}

/// Runs a chunk of seeds; fails at the first bad seed with its replay
/// command, then checks that the chunk as a whole made progress.
fn run_chunk(chunk: u64) {
    let seeds = chunk_range(chunk);
    let n = seeds.end - seeds.start;
    if n == 0 {
        return;
    }
    let (mut productive, mut converged, mut finished) = (0u64, 0u64, 0u64);
    let (mut crashes, mut partitions, mut snapshots, mut ops) = (0usize, 0usize, 0u64, 0usize);
    let mut held = 0u64;
    let mut few_faults = 0u64;
    let (mut churn_seeds, mut changes, mut added, mut retired) = (0u64, 0usize, 0usize, 0usize);
    let (mut torn, mut snapshot_files, mut halts) = (0u64, 0u64, 0u64);
    let (mut cond_applied, mut cond_refused, mut prefix_deletes) = (0usize, 0usize, 0usize);
    for seed in seeds.clone() {
        let r = run_seed(seed);
        if let Some(why) = failure(&r) {
            panic!("seed {seed} failed: {why}\n{}", replay_hint(seed));
        }
        // No simulated node ever loses its durable state: any LogLost is a
        // false alarm that would stop replication to a healthy follower.
        assert_eq!(
            r.lost_logs,
            0,
            "seed {seed}: a healthy follower was declared LogLost\n{}",
            replay_hint(seed)
        );
        productive += u64::from(r.writes_ok * 2 >= r.writes);
        converged += u64::from(r.converged);
        finished += u64::from(r.finished);
        few_faults += u64::from(r.faults < 3);
        crashes += r.crashes;
        partitions += r.partitions;
        snapshots += r.snapshots_installed;
        held += r.snapshots_held;
        ops += r.ops_ok;
        torn += r.torn_writes;
        snapshot_files += r.snapshot_file_crashes;
        halts += r.disk_halts;
        cond_applied += r.conditional.0;
        cond_refused += r.conditional.1;
        prefix_deletes += r.prefix_deletes;
        if churns(seed) {
            churn_seeds += 1;
            changes += r.conf_changes;
            added += r.nodes_added;
            retired += r.nodes_retired;
        }
    }
    let summary = format!(
        "seeds {seeds:?}: {productive} committed at least half of their writes, {converged} \
         converged, {finished} finished, {few_faults} had fewer than 3 faults; {ops} ops \
         answered, {crashes} crashes, {partitions} partitions, {snapshots} snapshots installed, {held} held back past a checkpoint; \
         {torn} crashes in the middle of a write, {snapshot_files} crashes between a snapshot file and its record, \
         {halts} disk-error halts; {churn_seeds} churned the membership: {changes} changes accepted, {added} nodes added, \
         {retired} removed nodes stopped; conditional writes: {cond_applied} applied, \
         {cond_refused} refused, {prefix_deletes} prefix deletes"
    );
    println!("{summary}");
    // A simulator where nothing happens must not pass.
    assert!(productive * 100 >= n * 95, "too little progress: {summary}");
    assert!(
        converged * 100 >= n * 98,
        "nodes did not converge: {summary}"
    );
    assert!(
        finished * 100 >= n * 99,
        "clients did not finish: {summary}"
    );
    assert!(few_faults * 100 <= n, "too few faults: {summary}");
    assert!(
        crashes as u64 >= 3 * n && partitions as u64 >= 2 * n,
        "{summary}"
    );
    assert!(
        snapshots >= n,
        "InstallSnapshot is not exercised: {summary}"
    );
    // Checkpoints compact past the newest snapshot, and a follower then
    // waits for a new one (the runs with the long catch-up margin).
    if n >= 100 {
        assert!(held * 20 >= n, "checkpoints are not exercised: {summary}");
    }
    // The disk faults strike (averages: too few seeds prove nothing).
    if n >= 100 {
        assert!(
            torn >= n && snapshot_files * 25 >= n && halts * 5 >= n,
            "too few disk faults: {summary}"
        );
    }
    // Conditional writes are exercised both ways, and prefix deletes.
    if n >= 100 {
        assert!(
            cond_applied as u64 >= n && cond_refused as u64 >= n && prefix_deletes as u64 >= n / 4,
            "too few conditional writes: {summary}"
        );
    }
    // Membership churn must really happen where it is on.
    let churn = churn_seeds as usize;
    assert!(
        changes >= 2 * churn && added >= churn && (churn < 10 || retired > 0),
        "too little membership churn: {summary}"
    );
}

#[test]
fn seeds_0() {
    run_chunk(0);
}

#[test]
fn seeds_1() {
    run_chunk(1);
}

#[test]
fn seeds_2() {
    run_chunk(2);
}

#[test]
fn seeds_3() {
    run_chunk(3);
}

#[test]
fn seeds_4() {
    run_chunk(4);
}

#[test]
fn seeds_5() {
    run_chunk(5);
}

#[test]
fn seeds_6() {
    run_chunk(6);
}

#[test]
fn seeds_7() {
    run_chunk(7);
}

/// The same seed gives the same run, step for step; another seed does not.
#[test]
fn same_seed_same_run() {
    // 2 and 1_000_001 churn the membership.
    for seed in [2, 3, 1_000_001, 1_000_003] {
        let a = run_seed(seed);
        let b = run_seed(seed);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(
            (a.steps, a.end_time, a.ops_ok),
            (b.steps, b.end_time, b.ops_ok)
        );
    }
    assert_ne!(run_seed(3).trace_hash, run_seed(4).trace_hash);
}

/// Replays `RAFT_SIM_SEED` and prints the run: configuration, faults,
/// violations and, for a linearizability failure, the key's history.
#[test]
fn replay() {
    let Some(seed) = env_u64("RAFT_SIM_SEED") else {
        return;
    };
    let cfg = config(seed);
    println!("seed {seed}: {cfg:#?}");
    let mut cluster = Cluster::new(cfg).unwrap();
    let r = cluster.run_to_end();
    for (t, f) in cluster.fault_log() {
        println!("t={t:>6} fault: {f}");
    }
    for c in cluster.conf_log() {
        println!("t={:>6} membership: {} -> {:?}", c.at, c.action, c.result);
    }
    println!("configuration at the end: {:?}", cluster.membership());
    println!("leaders by term: {:?}", cluster.leaders());
    for n in cluster.nodes() {
        let retired = if n.is_retired() {
            " (stopped for good)"
        } else {
            ""
        };
        println!("node {}{retired}: {:?}", n.id(), n.status());
    }
    let failing_key = match &r.linearizability {
        Err(LinearizabilityError::NotLinearizable { key, .. }) => Some(key.clone()),
        _ => None,
    };
    for op in cluster.history().ops() {
        if failing_key.as_deref().is_some_and(|k| k != op.op.key()) {
            continue;
        }
        let outcome = match &op.outcome {
            Outcome::Ok(out) => out.to_string(),
            other => format!("{other:?}"),
        };
        println!(
            "op #{:<4} client {} [{:>6} .. {:>6}] {} -> {} (node {:?})",
            op.id,
            op.client,
            op.invoked_at,
            op.completed_at.map_or("-".into(), |t| t.to_string()),
            op.op,
            outcome,
            op.served_by
        );
    }
    println!(
        "end t={} steps={} ops={} ok={} writes={} ok={} unknown={} converged={} \
         linearizability={:?}",
        r.end_time,
        r.steps,
        r.ops,
        r.ops_ok,
        r.writes,
        r.writes_ok,
        r.writes_unknown,
        r.converged,
        r.linearizability
    );
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    assert!(failure(&r).is_none(), "seed {seed} failed");
}
