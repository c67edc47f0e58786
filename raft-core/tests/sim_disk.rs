//! The simulator's disk faults (`raft_core::sim::disk`): torn writes, a
//! crash between a snapshot file and the WAL record marking it, and disk
//! errors that halt a node as the server halts on a storage failure.
//!
//! * `randomized_runs_exercise_every_disk_fault`: over a few hundred
//!   randomized seeds (the `sim_seeds` configurations, whose nemesis draws
//!   these faults at modest rates) each fault strikes many times and no
//!   invariant breaks.
//! * One focused, deterministic test per fault shows what it leaves and
//!   how the node comes back.

use raft_core::kv::Op;
use raft_core::sim::{
    ClientOp, Cluster, DiskErrorKind, FaultAction, OpOutput, Outcome, SimConfig, SimNode,
};
use raft_core::NodeId;

/// Seeds of the randomized test, split over two tests run in parallel.
const SEEDS: u64 = 300;

fn randomized(seed: u64) -> SimConfig {
    if seed % 3 == 2 {
        SimConfig::randomized_churn(seed)
    } else {
        SimConfig::randomized(seed)
    }
}

/// What the disk faults did over some seeds.
#[derive(Debug, Default)]
struct Tally {
    torn_write_faults: u64,
    snapshot_file_faults: u64,
    disk_error_faults: u64,
    torn_writes: u64,
    torn_writes_whole: u64,
    received_snapshot_file_crashes: u64,
    own_snapshot_file_crashes: u64,
    snapshot_marks_repaired: u64,
    disk_errors: u64,
    disk_halts: u64,
    writes_unknown_at_halt: u64,
}

fn run_seeds(seeds: std::ops::Range<u64>) -> Tally {
    let mut t = Tally::default();
    for seed in seeds {
        let mut c = Cluster::new(randomized(seed)).expect("a randomized config is valid");
        let r = c.run_to_end();
        assert!(
            r.violations.is_empty(),
            "seed {seed}: {:?}\nreplay: RAFT_SIM_SEED={seed} cargo test -p raft-core --test \
             sim_seeds -- replay --nocapture",
            r.violations
        );
        assert!(r.finished && r.converged, "seed {seed}: {r:?}");
        assert_eq!(r.lost_logs, 0, "seed {seed}: a false LogLost");
        for (_, a) in c.fault_log() {
            match a {
                FaultAction::TornWrite(_) => t.torn_write_faults += 1,
                FaultAction::CrashAfterSnapshotFile(_) => t.snapshot_file_faults += 1,
                FaultAction::DiskError { .. } => t.disk_error_faults += 1,
                _ => {}
            }
        }
        for n in c.nodes() {
            let s = n.stats();
            t.torn_writes += s.torn_writes;
            t.torn_writes_whole += s.torn_writes_whole;
            t.received_snapshot_file_crashes += s.received_snapshot_file_crashes;
            t.own_snapshot_file_crashes += s.own_snapshot_file_crashes;
            t.snapshot_marks_repaired += s.snapshot_marks_repaired;
            t.disk_errors += s.disk_errors;
            t.disk_halts += s.disk_halts;
            t.writes_unknown_at_halt += s.writes_unknown_at_halt;
        }
    }
    t
}

fn check_tally(t: &Tally) {
    println!("{t:?}");
    assert!(
        t.torn_write_faults >= 50 && t.snapshot_file_faults >= 50 && t.disk_error_faults >= 50,
        "the nemesis draws the disk faults: {t:?}"
    );
    assert!(
        t.torn_writes >= 150,
        "crashes in the middle of a write: {t:?}"
    );
    assert!(
        t.torn_writes_whole >= 20,
        "whole records written, never acknowledged: {t:?}"
    );
    assert!(
        t.received_snapshot_file_crashes >= 5,
        "crashes between a received snapshot's file and its record: {t:?}"
    );
    assert!(
        t.own_snapshot_file_crashes >= 15,
        "crashes between an own snapshot's file and its mark: {t:?}"
    );
    assert!(
        t.snapshot_marks_repaired >= 20,
        "recovery marks snapshot files: {t:?}"
    );
    assert!(t.disk_halts >= 40, "disk errors halt nodes: {t:?}");
    assert!(
        t.writes_unknown_at_halt >= 30,
        "halted nodes answer their waiting writes: {t:?}"
    );
}

#[test]
fn randomized_runs_exercise_every_disk_fault_first_half() {
    check_tally(&run_seeds(0..SEEDS / 2));
}

#[test]
fn randomized_runs_exercise_every_disk_fault_second_half() {
    check_tally(&run_seeds(SEEDS / 2..SEEDS));
}

/// A 3-node cluster without nemesis, whose nodes snapshot every 5 applied
/// entries and compact at once (no catch-up margin, so a follower that was
/// down gets a snapshot); its clients keep writing.
fn cluster(seed: u64) -> Cluster {
    let mut cfg = SimConfig::new(seed, 3);
    cfg.snapshot_every = 5;
    cfg.snapshot_catchup_entries = 0;
    cfg.clients.total_ops = Some(400);
    Cluster::new(cfg).unwrap()
}

fn node(c: &Cluster, id: NodeId) -> &SimNode {
    c.node(id).unwrap()
}

/// Steps until `done` holds (at most `limit` time units).
fn run_until(c: &mut Cluster, limit: u64, done: impl Fn(&Cluster) -> bool) {
    let deadline = c.now() + limit;
    while !done(c) {
        assert!(c.now() < deadline, "not reached by {deadline}");
        c.step();
    }
}

fn finish(c: &mut Cluster) {
    let r = c.run_to_end();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.finished && r.converged, "{r:?}");
    assert!(r.linearizability.is_ok(), "{:?}", r.linearizability);
}

/// A follower that was down while the leader compacted past its log gets
/// an InstallSnapshot when it comes back; it dies once the snapshot's file
/// is durable, before the record. It restarts with that snapshot (recovery
/// marks the file), the hard state it had, and converges.
#[test]
fn a_crash_after_a_received_snapshot_file_restarts_from_the_file_and_the_old_hard_state() {
    let mut c = cluster(11);
    run_until(&mut c, 5_000, |c| c.leader().is_some());
    let leader = c.leader().unwrap();
    let f = (1..=3).find(|&id| id != leader).unwrap();
    c.crash(f);
    let before = node(&c, f).durable().clone();
    run_until(&mut c, 20_000, |c| {
        c.node(leader).unwrap().snapshot_index() > before.last_index() + 5
    });
    c.restart(f);
    c.apply_fault(FaultAction::CrashAfterSnapshotFile(f));
    run_until(&mut c, 5_000, |c| !c.node(f).unwrap().is_up());
    let n = node(&c, f);
    assert_eq!(n.stats().received_snapshot_file_crashes, 1);
    assert_eq!(n.stats().own_snapshot_file_crashes, 0);
    let disk = n.durable();
    let file = disk.unmarked_snapshot.clone().expect("the file is durable");
    assert!(file.meta.index > before.last_index());
    // The WAL is as it was: no mark, no entries, no hard state of that Ready.
    assert_eq!(disk.snapshot, before.snapshot);
    assert_eq!(disk.entries, before.entries);
    assert_eq!(disk.hard_state, before.hard_state);

    c.restart(f);
    let n = node(&c, f);
    assert_eq!(n.stats().snapshot_marks_repaired, 1);
    let disk = n.durable();
    assert_eq!(
        disk.snapshot.as_ref(),
        Some(&file),
        "recovery marked the file"
    );
    assert!(disk.unmarked_snapshot.is_none());
    assert!(
        disk.entries.is_empty(),
        "its log did not hold the snapshot's entry"
    );
    assert_eq!(disk.hard_state, before.hard_state, "the old hard state");
    assert!(
        disk.hard_state.commit < file.meta.index,
        "the durable commit lies below the snapshot"
    );
    // It starts at the snapshot: never applies below it.
    let status = n.status().unwrap();
    assert_eq!(n.kv().applied_index(), file.meta.index);
    assert!(status.commit >= file.meta.index);
    finish(&mut c);
    assert_eq!(node(&c, f).kv(), node(&c, leader).kv());
}

/// A node dies between its own snapshot's file and the mark recording it:
/// recovery marks the file, and since its log holds the snapshot's entry
/// the entries after it stay.
#[test]
fn a_crash_after_an_own_snapshot_file_keeps_the_log_after_it() {
    let mut c = cluster(12);
    run_until(&mut c, 5_000, |c| c.leader().is_some());
    let leader = c.leader().unwrap();
    let f = (1..=3).find(|&id| id != leader).unwrap();
    c.apply_fault(FaultAction::CrashAfterSnapshotFile(f));
    run_until(&mut c, 20_000, |c| !c.node(f).unwrap().is_up());
    let n = node(&c, f);
    assert_eq!(n.stats().own_snapshot_file_crashes, 1);
    let before = n.durable().clone();
    let file = before
        .unmarked_snapshot
        .clone()
        .expect("the file is durable");
    assert!(file.meta.index > before.snapshot_index());
    assert!(file.meta.index <= before.last_index());
    assert_eq!(before.term(file.meta.index), Some(file.meta.term));

    c.restart(f);
    let n = node(&c, f);
    assert_eq!(n.stats().snapshot_marks_repaired, 1);
    let disk = n.durable();
    assert_eq!(disk.snapshot.as_ref(), Some(&file));
    assert_eq!(
        disk.last_index(),
        before.last_index(),
        "the log after it stays"
    );
    assert_eq!(disk.hard_state, before.hard_state);
    assert_eq!(n.kv().applied_index(), file.meta.index);
    finish(&mut c);
}

/// A torn write leaves one of the outcomes recovery can produce: nothing
/// of the record, or all of it. Across seeds both happen, and a whole
/// record the node never acknowledged is in its log after the restart.
#[test]
fn a_torn_write_leaves_nothing_or_the_whole_record() {
    let (mut whole, mut nothing) = (0, 0);
    for seed in 0..12 {
        let mut c = cluster(100 + seed);
        run_until(&mut c, 5_000, |c| c.leader().is_some());
        let leader = c.leader().unwrap();
        c.apply_fault(FaultAction::TornWrite(leader));
        let before = node(&c, leader).durable().clone();
        // Until it crashes, it writes nothing else (the fault is armed on
        // its very next write).
        run_until(&mut c, 5_000, |c| !c.node(leader).unwrap().is_up());
        let n = node(&c, leader);
        assert_eq!(n.stats().torn_writes, 1, "seed {seed}");
        let after = n.durable();
        if after == &before {
            nothing += 1;
        } else {
            assert_eq!(n.stats().torn_writes_whole, 1, "seed {seed}");
            assert!(
                after.last_index() > before.last_index() || after.hard_state != before.hard_state,
                "seed {seed}"
            );
            whole += 1;
        }
        c.restart(leader);
        finish(&mut c);
    }
    assert!(whole > 0 && nothing > 0, "whole {whole}, nothing {nothing}");
}

/// The leader's next write fails (disk full): it halts, its waiting client
/// hears "outcome unknown" at once and retries with the same sequence
/// number elsewhere; the write is applied exactly once. Restarted (space
/// freed), the node catches up.
#[test]
fn a_disk_error_halts_the_node_and_its_writes_are_retried_and_applied_once() {
    for (seed, kind) in [(21, DiskErrorKind::Enospc), (22, DiskErrorKind::Eio)] {
        let mut cfg = SimConfig::new(seed, 3);
        cfg.clients.count = 0;
        let mut c = Cluster::new(cfg).unwrap();
        run_until(&mut c, 5_000, |c| c.leader().is_some());
        let leader = c.leader().unwrap();
        c.apply_fault(FaultAction::DiskError { node: leader, kind });
        let before = node(&c, leader).durable().clone();
        let put = ClientOp::Write(Op::Put {
            key: "k".into(),
            value: "v".into(),
        });
        let op = c.submit(leader, put).unwrap();
        let n = node(&c, leader);
        assert!(!n.is_up(), "halted at the write of the put");
        assert_eq!(n.stats().disk_halts, 1);
        assert_eq!(n.stats().crashes, 0);
        assert_eq!(n.stats().writes_unknown_at_halt, 1, "the put heard back");
        if kind == DiskErrorKind::Enospc {
            // A record that does not fit is never whole: cut at recovery.
            assert_eq!(n.durable(), &before);
        }
        // The client heard "outcome unknown" and retries at once (a client
        // of a crashed node only gives up on it after a back-off).
        let hand = |c: &Cluster| c.clients().into_iter().find(|v| v.by_hand).unwrap();
        assert_eq!(hand(&c).attempts, 1);
        c.run_until(c.now() + 2);
        assert_eq!(hand(&c).attempts, 2, "retried at once");
        run_until(&mut c, 10_000, |c| {
            matches!(c.history().ops()[op].outcome, Outcome::Ok(_))
        });
        assert!(matches!(
            c.history().ops()[op].outcome,
            Outcome::Ok(OpOutput::Write(_))
        ));
        c.restart(leader);
        let r = c.run_to_end();
        assert!(r.violations.is_empty(), "{kind}: {:?}", r.violations);
        assert!(r.converged, "{kind}");
        // Applied at most once: the checker's direct rule (a write's
        // session record names one entry on every node) found nothing.
        for n in c.nodes() {
            assert_eq!(n.kv().get("k"), Some("v"), "{kind}: node {}", n.id());
        }
    }
}
