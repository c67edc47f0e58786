//! The dashboard's simulator keeps bounded memory: a long run of the
//! default settings with the nemesis on keeps no more records at 300k
//! steps than a bound that does not depend on the number of steps, per
//! structure (the client history, the online linearizability check, the
//! invariant checker, the fault log, the timeline and the scrubber's
//! records).
//!
//! `cargo test --release -p web --test sim_memory -- --nocapture` prints
//! the counts (and the process's resident set, for a look at the bytes).

use raft_core::sim::Retained;
use web::sim_model::{SimRun, SimSettings, BANDS_KEPT, CONFIGS_KEPT, TERMS_KEPT};

/// The process's resident set, from /proc (0 where there is none); printed
/// only, never asserted.
fn rss() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Runs to `step`, printing and returning what the run keeps.
fn run_to(run: &mut SimRun, step: u64) -> Retained {
    while run.step_no() < step {
        run.step();
    }
    let r = run.cluster.retained();
    println!(
        "step {step}: rss {} B; {r:?}; timeline {} bands {} violation steps {} configs {}",
        rss(),
        run.timeline.events.len(),
        run.bands.len(),
        run.violation_steps.len(),
        run.configs.len(),
    );
    r
}

#[test]
fn a_long_run_with_faults_keeps_bounded_records() {
    let mut run = SimRun::new(SimSettings::default());
    run.cluster.set_nemesis(true);
    let at_100k = run_to(&mut run, 100_000);
    let at_300k = run_to(&mut run, 300_000);
    assert!(
        run.cluster.violations().is_empty(),
        "{:?}",
        run.cluster.violations()
    );
    assert!(run.cluster.linearizability().is_ok());
    // Without forgetting, 300k steps kept about 4,500 operations, 4,000
    // registry and committed entries, 3,000 sessions and votes and 5,600
    // faults; now each structure keeps what a few snapshots' worth of log,
    // the last terms and the last few thousand time units need.
    for r in [at_100k, at_300k] {
        assert!(r.history_ops <= 400, "{r:?}");
        assert!(
            r.registry <= 400 && r.committed <= 400 && r.applied <= 400,
            "{r:?}"
        );
        assert!(r.sessions <= 200 && r.not_applied <= 100, "{r:?}");
        assert!(r.votes <= 100 && r.acks <= 100, "{r:?}");
        assert!(r.quorum_commit <= 20 && r.leaders <= 20, "{r:?}");
        assert!(
            r.fault_log < 2 * raft_core::sim::cluster::FAULTS_KEPT,
            "{r:?}"
        );
        assert!(r.attempts <= 20, "{r:?}");
    }
    // Abandoned writes stay in the linearizability check until the run
    // ends (they may still take effect): a few per 100k steps here.
    assert!(at_300k.lin_pending <= 40, "{at_300k:?}");
    assert!(run.timeline.events.len() <= TERMS_KEPT);
    assert!(run.bands.len() <= BANDS_KEPT);
    assert!(run.configs.len() <= CONFIGS_KEPT);
    // The checker keeps at most 64 violations, so at most 64 marks.
    assert!(run.violation_steps.len() <= 64);
}
