//! The simulated clients stress client sessions (thesis §6.3) in the
//! randomized runs: registration, sessions forgotten when the table is
//! smaller than the clients (writes refused with `SessionExpired`, then a
//! new registration), clients writing without ids, and pipelining clients
//! with several numbered writes outstanding. This test checks that all of
//! it really happens in a few hundred seeds, and that those runs are clean
//! (the `AppliedTwice` rule and linearizability included).

use raft_core::sim::{ClientOp, Cluster, OpOutput, Outcome, SimConfig};
use raft_core::OpResult;

const SEEDS: u64 = 240;

#[derive(Debug, Default)]
struct Seen {
    registered: usize,
    runs_with_small_tables: usize,
    expired: usize,
    registered_again: usize,
    idless_writes: usize,
    idless_unknown: usize,
    overlapping_session_writes: usize,
    stale: usize,
}

#[test]
fn sessions_are_forgotten_renewed_pipelined_and_skipped_in_the_randomized_runs() {
    let mut seen = Seen::default();
    for seed in 0..SEEDS {
        let cfg = SimConfig::randomized(seed);
        let with_ids = cfg
            .clients
            .count
            .saturating_sub(cfg.clients.without_session);
        if cfg.raft.session_limit < cfg.clients.count {
            seen.runs_with_small_tables += 1;
        }
        let mut cluster = Cluster::new(cfg).unwrap();
        let report = cluster.run_to_end();
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {}",
            report.violations[0]
        );
        let ops = cluster.history().ops();
        let ok = |o: &raft_core::sim::Operation, want: fn(&OpResult) -> bool| matches!(&o.outcome, Outcome::Ok(OpOutput::Write(r)) if want(r));
        let registered = ops
            .iter()
            .filter(|o| ok(o, |r| matches!(r, OpResult::Registered { .. })))
            .count();
        seen.registered += registered;
        seen.registered_again += registered.saturating_sub(with_ids);
        seen.expired += ops
            .iter()
            .filter(|o| ok(o, |r| *r == OpResult::SessionExpired))
            .count();
        seen.stale += ops
            .iter()
            .filter(|o| ok(o, |r| *r == OpResult::Stale))
            .count();
        let idless: Vec<_> = ops
            .iter()
            .filter(|o| o.op.is_write() && o.client_id == 0)
            .collect();
        seen.idless_writes += idless.len();
        seen.idless_unknown += idless
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .count();
        // Two writes of one session outstanding at once.
        let writes: Vec<_> = ops
            .iter()
            .filter(|o| o.op.is_write() && o.client_id != 0)
            .collect();
        for (i, a) in writes.iter().enumerate() {
            seen.overlapping_session_writes += writes[i + 1..]
                .iter()
                .filter(|b| {
                    b.client_id == a.client_id
                        && b.seq != a.seq
                        && a.complete_order.is_none_or(|end| b.invoke_order < end)
                })
                .count();
        }
        assert!(
            ops.iter()
                .all(|o| !matches!(o.op, ClientOp::Write(_)) || o.seq == 0 || o.client_id != 0),
            "seed {seed}: a numbered write without a session id"
        );
    }
    println!("{SEEDS} seeds: {seen:?}");
    assert!(seen.runs_with_small_tables > 10, "{seen:?}");
    assert!(seen.expired > 0, "no session was ever forgotten: {seen:?}");
    assert!(
        seen.registered_again > 0,
        "no client registered again: {seen:?}"
    );
    assert!(seen.idless_writes > 100, "{seen:?}");
    assert!(
        seen.idless_unknown > 0,
        "no write without id was left unknown: {seen:?}"
    );
    assert!(
        seen.overlapping_session_writes > 100,
        "no pipelining: {seen:?}"
    );
    assert!(seen.stale > 0, "no late retry of an older number: {seen:?}");
}
