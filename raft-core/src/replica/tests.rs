//! The request lifecycle on one replica fed hand-written messages.

use super::*;
use crate::kv::{Op, OpResult};
use crate::message::MessageBody;
use crate::types::{Entry, Membership, Role, RoleCause, Term};

fn replica(voters: Vec<NodeId>) -> Replica {
    Replica::new(
        Config::new(1),
        PersistedState::bootstrap(Membership::new(voters)),
        SnapshotPolicy {
            every: 0,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 0,
        },
    )
    .expect("valid configuration")
}

fn msg(from: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        from,
        to: 1,
        term,
        body,
    }
}

/// Carries out every `Ready` as if persisted and sent.
fn drain(r: &mut Replica) {
    while r.has_ready() {
        let ready = r.ready();
        r.advance(ready, None).expect("advance");
    }
}

fn put(seq: u64, key: &str) -> Command {
    Command {
        client_id: 0,
        seq,
        op: Op::Put {
            key: key.into(),
            value: "v".into(),
        },
    }
}

fn win(r: &mut Replica, term: Term, voters: &[NodeId]) {
    r.raw_mut().campaign();
    drain(r);
    for &v in voters {
        r.step(msg(v, term, MessageBody::PreVoteResponse { granted: true }))
            .unwrap();
    }
    drain(r);
    for &v in voters {
        r.step(msg(v, term, MessageBody::VoteResponse { granted: true }))
            .unwrap();
    }
    drain(r);
    assert!(r.raw().is_leader(), "node 1 leads term {term}");
    assert_eq!(r.raw().term(), term);
}

fn written(outcomes: &[(RequestId, Outcome)], id: RequestId) -> Option<&Outcome> {
    outcomes.iter().find(|(i, _)| *i == id).map(|(_, o)| o)
}

#[test]
fn a_write_whose_index_is_reused_is_settled_by_the_entry_finally_applied_there() {
    // Five members. Node 1 leads term 1 and appends writes a, b, c (3-5)
    // that only node 2 receives. Node 3 leads term 2 and cuts node 1's log
    // back to its own entry at 3. Node 1 leads term 3: its no-op lands at
    // 4 and a new write d at 5, where c was. Node 2, which still holds a,
    // b and c, leads term 4 and commits them. c was applied: its client
    // must hear so, not "retry" (a retry without a client id would apply
    // it twice); d was not.
    let mut r = replica(vec![1, 2, 3, 4, 5]);
    win(&mut r, 1, &[2, 3]);
    let a = r.propose(put(0, "a")).unwrap();
    let b = r.propose(put(0, "b")).unwrap();
    let c = r.propose(put(0, "c")).unwrap();
    drain(&mut r);
    assert_eq!(r.raw().status().last_index, 5);
    r.step(msg(
        3,
        2,
        MessageBody::Append {
            prev_index: 2,
            prev_term: 1,
            entries: vec![Entry {
                term: 2,
                index: 3,
                payload: Payload::Noop,
            }],
            commit: 2,
        },
    ))
    .unwrap();
    drain(&mut r);
    assert_eq!(r.raw().status().last_index, 3, "node 1's log cut back");
    assert!(r.take_outcomes().is_empty(), "nothing is decided yet");
    win(&mut r, 3, &[4, 5]);
    let d = r.propose(put(0, "d")).unwrap();
    drain(&mut r);
    assert!(
        r.take_outcomes().is_empty(),
        "d lands on c's index: nothing decided"
    );
    let old = |index, key: &str| Entry {
        term: 1,
        index,
        payload: Payload::Command(std::sync::Arc::new(put(0, key))),
    };
    r.step(msg(
        2,
        4,
        MessageBody::Append {
            prev_index: 2,
            prev_term: 1,
            entries: vec![
                old(3, "a"),
                old(4, "b"),
                old(5, "c"),
                Entry {
                    term: 4,
                    index: 6,
                    payload: Payload::Noop,
                },
            ],
            commit: 6,
        },
    ))
    .unwrap();
    drain(&mut r);
    let out = r.take_outcomes();
    for (id, index) in [(a, 3), (b, 4), (c, 5)] {
        assert_eq!(
            written(&out, id),
            Some(&Outcome::Write(Ok(WriteOutcome {
                index,
                result: OpResult::Put { prev: None },
                applied_at: index,
            }))),
            "{out:?}"
        );
    }
    assert_eq!(
        written(&out, d),
        Some(&Outcome::Write(Err(RequestError::NotApplied)))
    );
    assert_eq!(r.pending_requests(), 0);
}

#[test]
fn reads_are_served_once_applied_and_fail_when_the_replica_stops() {
    let mut r = replica(vec![1]);
    drain(&mut r);
    assert!(r.raw().is_leader(), "a lone voter leads at once");
    let w = r.propose(put(0, "k")).unwrap();
    // A read that starts before the write is acknowledged may see either
    // state; one that starts after must see the write.
    let early = r.read(Query::Get("k".into())).unwrap();
    drain(&mut r);
    let out = r.take_outcomes();
    assert!(matches!(written(&out, w), Some(Outcome::Write(Ok(_)))));
    assert!(matches!(written(&out, early), Some(Outcome::Read(Ok(_)))));
    let read = r.read(Query::Get("k".into())).unwrap();
    drain(&mut r);
    let out = r.take_outcomes();
    let Some(Outcome::Read(Ok(QueryResult::Value(Some(got))))) = written(&out, read) else {
        panic!("the read after the write found nothing: {out:?}")
    };
    assert_eq!(got.value, "v");
    // In flight when the node stops: the write's outcome is unknown.
    let w2 = r.propose(put(0, "k2")).unwrap();
    let out = r.stop("the node is shutting down");
    assert_eq!(
        written(&out, w2),
        Some(&Outcome::Write(Err(RequestError::Unknown(
            "the node is shutting down"
        ))))
    );
}

#[test]
fn request_ids_and_read_contexts_differ_between_runs() {
    let mut one = Config::new(1);
    one.seed = 1;
    let mut two = Config::new(1);
    two.seed = 2;
    let p = || PersistedState::bootstrap(Membership::new(vec![1]));
    let a = Replica::new(one, p(), SnapshotPolicy::default()).unwrap();
    let b = Replica::new(two, p(), SnapshotPolicy::default()).unwrap();
    assert_ne!(a.next_ctx, b.next_ctx);
    assert_ne!(a.next_request, b.next_request);
}

#[test]
fn a_requested_snapshot_is_answered_once_recorded_and_an_overtaken_one_dropped() {
    let mut r = replica(vec![1]);
    drain(&mut r);
    r.propose(put(0, "k")).unwrap();
    drain(&mut r);
    r.take_outcomes();
    let id = r.request_snapshot();
    let job = r.snapshot_job().expect("a job for the request");
    assert!(r.snapshot_job().is_none(), "one at a time");
    let stale = job.clone();
    let applied = job.meta.index;
    r.snapshot_recorded(job.meta.clone(), 0, job.applied_bytes)
        .unwrap();
    assert_eq!(
        r.take_outcomes(),
        vec![(id, Outcome::Snapshot(Ok(applied)))]
    );
    assert_eq!(r.snapshot_index(), applied);
    // Nothing new applied: answered at once.
    let again = r.request_snapshot();
    assert_eq!(
        r.take_outcomes(),
        vec![(again, Outcome::Snapshot(Ok(applied)))]
    );
    // The same job reported again, as when a newer snapshot overtook it:
    // dropped, not an error, nothing changes.
    assert_eq!(
        r.snapshot_recorded(stale.meta.clone(), 0, stale.applied_bytes),
        Ok(())
    );
    assert_eq!(r.snapshot_index(), applied);
}

#[test]
fn a_membership_change_is_answered_once_its_configuration_is_applied() {
    let mut r = replica(vec![1]);
    drain(&mut r);
    r.take_outcomes();
    let id = r
        .change_membership(
            crate::types::ConfChange::AddLearner {
                id: 2,
                address: "http://n2".into(),
                promote: false,
            },
            false,
        )
        .unwrap();
    assert!(
        r.take_outcomes().is_empty(),
        "answered before it is applied"
    );
    drain(&mut r);
    let out = r.take_outcomes();
    match written(&out, id) {
        Some(Outcome::Conf(Ok((m, index)))) => {
            assert_eq!(m.learners, vec![2]);
            assert_eq!(*index, r.raw().config_index());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_a_lone_voter_campaigns_at_start() {
    let r = replica(vec![1, 2, 3]);
    assert_eq!(r.raw().role(), crate::types::Role::Follower);
    let mut r = replica(vec![1]);
    drain(&mut r);
    assert!(r.raw().is_leader());
}

#[test]
fn transfer_to_itself_on_a_leader_is_done_and_to_a_stranger_is_refused() {
    let mut r = replica(vec![1, 2, 3]);
    win(&mut r, 1, &[2]);
    assert_eq!(r.transfer_leader(1), Ok(()));
    assert!(r.raw().is_leader());
    assert!(r.transfer_leader(9).is_err(), "node 9 is no member");
    let mut f = replica(vec![1, 2, 3]);
    assert!(f.transfer_leader(1).is_err(), "a follower cannot hand over");
}

#[test]
fn a_decoded_snapshot_is_used_only_when_it_is_the_one_installed() {
    use crate::types::{Snapshot, SnapshotMeta};
    let state_at_5 = |key: &str| {
        let mut kv = KvStore::new();
        kv.apply(&Entry {
            term: 1,
            index: 5,
            payload: Payload::Command(std::sync::Arc::new(put(0, key))),
        });
        kv
    };
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            index: 5,
            term: 1,
            membership: Membership::new(vec![1, 2, 3]),
        },
        data: state_at_5("from-data").snapshot(),
    };
    for (decoded, want) in [
        // Decoded by the driver for this index: used as it is.
        (state_at_5("decoded"), "decoded"),
        // Decoded for another index: ignored, the data is decoded instead.
        (KvStore::new(), "from-data"),
    ] {
        let mut r = replica(vec![1, 2, 3]);
        r.step(msg(
            2,
            1,
            MessageBody::InstallSnapshot {
                snapshot: snapshot.clone(),
            },
        ))
        .unwrap();
        let ready = r.ready();
        assert!(ready.snapshot.is_some());
        r.advance(ready, Some(decoded)).unwrap();
        assert_eq!(r.kv().get(want), Some("v"), "want {want}");
        assert_eq!(r.kv().applied_index(), 5);
    }
}

#[test]
fn readiness_needs_membership_a_recent_leader_and_little_lag() {
    // A lone voter leads: ready.
    let mut r = replica(vec![1]);
    drain(&mut r);
    assert_eq!(r.readiness(0), Ok(()));
    // A follower that never heard of a leader.
    let f = replica(vec![1, 2, 3]);
    assert_eq!(f.readiness(0), Err(NotReady::NoLeader));
    // A follower of leader 2 is ready until the leader goes silent for an
    // election timeout.
    let mut f = replica(vec![1, 2, 3]);
    f.step(msg(
        2,
        1,
        MessageBody::Heartbeat {
            commit: 1,
            read_ctx: 0,
            seq: 1,
        },
    ))
    .unwrap();
    drain(&mut f);
    assert_eq!(f.readiness(0), Ok(()));
    for _ in 0..f.raw().election_tick() {
        f.tick();
    }
    drain(&mut f);
    assert!(f.readiness(0).is_err(), "{:?}", f.readiness(0));
    // A node outside the configuration (a joiner before it learns it).
    let joiner = Replica::new(
        Config::new(4),
        PersistedState::default(),
        SnapshotPolicy::default(),
    )
    .unwrap();
    assert_eq!(joiner.readiness(0), Err(NotReady::NotMember));
}

#[test]
fn readiness_counts_committed_entries_not_yet_applied() {
    let mut f = replica(vec![1, 2, 3]);
    let entry = |index| Entry {
        term: 1,
        index,
        payload: Payload::Command(std::sync::Arc::new(put(0, "k"))),
    };
    f.step(msg(
        2,
        1,
        MessageBody::Append {
            prev_index: 1,
            prev_term: 0,
            entries: vec![entry(2), entry(3), entry(4)],
            commit: 4,
        },
    ))
    .unwrap();
    // Committed up to 4, nothing applied yet (the bootstrap entry 1
    // neither): four behind.
    let ready = f.ready();
    assert_eq!(f.readiness(4), Ok(()));
    assert_eq!(f.readiness(3), Err(NotReady::Behind { entries: 4 }));
    f.advance(ready, None).unwrap();
    drain(&mut f);
    assert_eq!(f.readiness(0), Ok(()));
}

#[test]
fn a_failed_snapshot_answers_its_request_and_waits_before_the_next() {
    let mut r = Replica::new(
        Config::new(1),
        PersistedState::bootstrap(Membership::new(vec![1])),
        SnapshotPolicy {
            every: 2,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 0,
        },
    )
    .unwrap();
    drain(&mut r);
    r.propose(put(0, "a")).unwrap();
    drain(&mut r);
    r.take_outcomes();
    let id = r.request_snapshot();
    let job = r.snapshot_job().expect("a job");
    assert!(r.snapshot_running());
    r.snapshot_failed(job.meta.index, "disk full".into());
    assert!(!r.snapshot_running());
    assert_eq!(
        r.take_outcomes(),
        vec![(
            id,
            Outcome::Snapshot(Err(RequestError::Snapshot("disk full".into())))
        )]
    );
    // The next automatic attempt waits for `every` more entries.
    assert!(
        r.snapshot_job().is_none(),
        "retried at once after a failure"
    );
    r.propose(put(0, "b")).unwrap();
    r.propose(put(0, "c")).unwrap();
    drain(&mut r);
    assert!(r.snapshot_job().is_some());
}

#[test]
fn forgotten_requests_get_no_outcome() {
    let mut r = replica(vec![1]);
    drain(&mut r);
    r.take_outcomes();
    let kept = r.propose(put(0, "kept")).unwrap();
    let gone = r.propose(put(0, "gone")).unwrap();
    assert_eq!(r.pending_requests(), 2);
    assert_eq!(r.pending_writes(), 2);
    r.forget(|id| id == gone);
    assert_eq!(r.pending_requests(), 1);
    assert_eq!(r.pending_writes(), 1);
    drain(&mut r);
    let out = r.take_outcomes();
    assert!(written(&out, kept).is_some());
    assert!(written(&out, gone).is_none(), "{out:?}");
}

/// Sessions through the replica, as the server and the simulator use them:
/// a registration's outcome is the new client id; the session limit comes
/// from the replica's configuration (and survives a snapshot install).
#[test]
fn sessions_are_registered_through_the_log_and_limited_by_the_config() {
    let mut config = Config::new(1);
    config.session_limit = 1;
    let mut r = Replica::new(
        config,
        PersistedState::bootstrap(Membership::new(vec![1])),
        SnapshotPolicy {
            every: 0,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 0,
        },
    )
    .unwrap();
    drain(&mut r);
    assert!(r.raw().is_leader());
    let run = |r: &mut Replica, cmd: Command| -> OpResult {
        let id = r.propose(cmd).unwrap();
        drain(r);
        match written(&r.take_outcomes(), id) {
            Some(Outcome::Write(Ok(w))) => w.result.clone(),
            other => panic!("write {id}: {other:?}"),
        }
    };
    let register = Command {
        client_id: 0,
        seq: 0,
        op: Op::Register,
    };
    let OpResult::Registered { client_id: a } = run(&mut r, register.clone()) else {
        panic!("not registered");
    };
    let with_id = |client_id, seq| Command {
        client_id,
        ..put(seq, "k")
    };
    assert_eq!(run(&mut r, with_id(a, 1)), OpResult::Put { prev: None });
    // A second session over the limit of 1 forgets the first.
    let OpResult::Registered { client_id: b } = run(&mut r, register) else {
        panic!("not registered");
    };
    assert!(b > a);
    assert_eq!(r.kv().sessions(), 1);
    assert_eq!(run(&mut r, with_id(a, 1)), OpResult::SessionExpired);
    assert_eq!(
        run(&mut r, with_id(b, 1)),
        OpResult::Put {
            prev: Some("v".into())
        }
    );
    assert_eq!(run(&mut r, with_id(12_345, 1)), OpResult::SessionExpired);
    assert_eq!(r.kv().session_limit(), 1);
}

#[test]
fn the_successor_is_the_most_caught_up_voter_heard_from_recently() {
    // Voters 1-4 and learner 5, which never takes over.
    let mut members = Membership::new(vec![1, 2, 3, 4]);
    members.learners = vec![5];
    let mut r = Replica::new(
        Config::new(1),
        PersistedState::bootstrap(members),
        SnapshotPolicy {
            every: 0,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 0,
        },
    )
    .unwrap();
    assert_eq!(r.successor(), None, "a follower hands nothing over");
    win(&mut r, 1, &[2, 3]);
    r.propose(put(0, "a")).unwrap();
    drain(&mut r);
    let last = r.raw().status().last_index;
    let ack = |from: NodeId, index: Index| {
        msg(
            from,
            1,
            MessageBody::AppendResponse {
                success: true,
                index,
                hint_index: 0,
                hint_term: 0,
            },
        )
    };
    r.step(ack(2, last - 1)).unwrap();
    r.step(ack(3, last)).unwrap();
    r.step(ack(4, last)).unwrap();
    r.step(ack(5, last)).unwrap();
    drain(&mut r);
    assert_eq!(
        r.successor(),
        Some(3),
        "3 and 4 hold everything: the lower id"
    );
    // 3 and 4 go quiet for an election timeout; 2 (and learner 5) keep
    // answering.
    for _ in 0..r.raw().election_tick() {
        r.tick();
        r.step(ack(2, last - 1)).unwrap();
        r.step(ack(5, last)).unwrap();
        drain(&mut r);
    }
    assert_eq!(r.successor(), Some(2), "the quiet ones may be down");
}

/// What the server's recovery hands a node that died after a received
/// snapshot's file was durable but before the record (mark, entries, hard
/// state): the snapshot, no entries, and the hard state from before, whose
/// commit (and even term) lie below the snapshot's. The replica starts at
/// the snapshot — commit and applied there, the state machine the
/// snapshot's, nothing applied twice or below it — and takes the leader's
/// next entries after it.
#[test]
fn a_restart_from_a_snapshot_above_the_durable_commit_and_term_starts_at_the_snapshot() {
    let mut image = crate::kv::KvStore::new();
    image.apply(&Entry {
        term: 5,
        index: 10,
        payload: Payload::command(put(1, "k")),
    });
    let snapshot = crate::types::Snapshot {
        meta: crate::types::SnapshotMeta {
            index: 10,
            term: 5,
            membership: Membership::new(vec![1, 2, 3]),
        },
        data: image.snapshot(),
    };
    let persisted = PersistedState {
        hard_state: crate::types::HardState {
            term: 3,
            vote: 2,
            commit: 2,
        },
        snapshot: Some(snapshot),
        entries: Vec::new(),
    };
    let policy = SnapshotPolicy {
        every: 0,
        log_percent: 0,
        catchup_entries: 0,
        checkpoint_every: 0,
    };
    let mut r = Replica::new(Config::new(1), persisted, policy).expect("restarts");
    let s = r.raw().status();
    assert_eq!((s.snapshot_index, s.commit, s.applied), (10, 10, 10));
    assert_eq!((s.term, s.vote), (3, 2), "the old hard state");
    assert_eq!(r.kv().applied_index(), 10);
    assert_eq!(r.kv().get("k"), Some("v"));
    // Nothing to apply: the snapshot is the state.
    assert_eq!(applied_indices(&mut r), Vec::<u64>::new());
    // The leader of term 6 goes on after the snapshot.
    r.step(msg(
        2,
        6,
        MessageBody::Append {
            prev_index: 10,
            prev_term: 5,
            entries: vec![Entry {
                term: 6,
                index: 11,
                payload: Payload::Noop,
            }],
            commit: 11,
        },
    ))
    .unwrap();
    assert_eq!(
        applied_indices(&mut r),
        vec![11],
        "applied once, above the snapshot"
    );
    let s = r.raw().status();
    assert_eq!((s.term, s.commit, s.applied), (6, 11, 11));
}

/// Carries out every `Ready` as [`drain`] does; the indices applied.
fn applied_indices(r: &mut Replica) -> Vec<crate::types::Index> {
    let mut applied = Vec::new();
    while r.has_ready() {
        let ready = r.ready();
        applied.extend(ready.committed_entries.iter().map(|e| e.index));
        r.advance(ready, None).expect("advance");
    }
    applied
}

/// Every role change carries its cause, for the operator's log.
#[test]
fn role_changes_say_why() {
    let mut r = replica(vec![1, 2, 3]);
    let mut causes = Vec::new();
    let collect = |r: &mut Replica, causes: &mut Vec<(Role, RoleCause)>| {
        while r.has_ready() {
            let rd = r.ready();
            if let Some(s) = rd.soft_state {
                causes.push((s.role, s.cause));
            }
            r.advance(rd, None).unwrap();
        }
    };
    // The election timer runs out: a pre-vote round, then the election.
    for _ in 0..2 * r.raw().election_tick() {
        r.tick();
        collect(&mut r, &mut causes);
    }
    assert!(
        matches!(causes.first(), Some((Role::PreCandidate, RoleCause::ElectionTimeout { ticks })) if *ticks >= r.raw().election_tick()),
        "{causes:?}"
    );
    let term = r.raw().term() + 1;
    r.step(msg(2, term, MessageBody::PreVoteResponse { granted: true }))
        .unwrap();
    collect(&mut r, &mut causes);
    r.step(msg(2, term, MessageBody::VoteResponse { granted: true }))
        .unwrap();
    collect(&mut r, &mut causes);
    assert_eq!(
        &causes[1..],
        &[
            (Role::Candidate, RoleCause::PreVoteWon),
            (Role::Leader, RoleCause::ElectionWon),
        ]
    );
    // A message of a higher term deposes it.
    r.step(msg(
        3,
        term + 1,
        MessageBody::VoteResponse { granted: false },
    ))
    .unwrap();
    collect(&mut r, &mut causes);
    assert_eq!(
        causes.last(),
        Some(&(
            Role::Follower,
            RoleCause::HigherTerm {
                from: 3,
                term: term + 1
            }
        ))
    );
}

#[test]
fn a_compaction_hands_back_what_it_removed_once() {
    let mut r = replica(vec![1]);
    drain(&mut r);
    r.propose(put(0, "k")).unwrap();
    drain(&mut r);
    r.take_outcomes();
    assert!(r.take_compacted().is_none(), "nothing compacted yet");
    r.request_snapshot();
    let job = r.snapshot_job().expect("a job for the request");
    let stale = job.clone();
    let applied = job.meta.index;
    r.snapshot_recorded(job.meta.clone(), 0, job.applied_bytes)
        .unwrap();
    let gone = r.take_compacted().expect("the compaction's leftovers");
    let indices: Vec<_> = gone.entries.iter().map(|e| e.index).collect();
    assert_eq!(
        indices,
        (1..=applied).collect::<Vec<_>>(),
        "every covered entry"
    );
    assert_eq!(gone.snapshot.index, 0, "the snapshot it replaced");
    assert!(r.take_compacted().is_none(), "handed out once");
    // An overtaken job compacts nothing.
    r.snapshot_recorded(stale.meta.clone(), 0, stale.applied_bytes)
        .unwrap();
    assert!(r.take_compacted().is_none());
}

/// The catch-up margin: a written snapshot is handed to the core (which
/// drops the log it covers) only once `catchup_entries` more entries are
/// applied, so the log always holds at least that many entries before the
/// applied index and a follower less far behind is sent entries; a
/// requested snapshot compacts at once.
#[test]
fn a_snapshot_compacts_the_log_only_once_the_catchup_margin_is_applied() {
    let mut r = Replica::new(
        Config::new(1),
        PersistedState::bootstrap(Membership::new(vec![1])),
        SnapshotPolicy {
            every: 10,
            log_percent: 0,
            catchup_entries: 5,
            checkpoint_every: 0,
        },
    )
    .unwrap();
    drain(&mut r);
    let write = |r: &mut Replica, n: usize| {
        for i in 0..n {
            r.propose(put(i as u64, "k")).unwrap();
        }
        drain(r);
    };
    write(&mut r, 10);
    let job = r.snapshot_job().expect("10 entries applied");
    let s = job.meta.index;
    r.snapshot_recorded(job.meta.clone(), 0, job.applied_bytes)
        .unwrap();
    assert_eq!(
        r.snapshot_index(),
        s,
        "the newest snapshot is the written one"
    );
    assert_eq!(r.raw().snapshot_index(), 0, "the log is kept: margin");
    assert!(r.take_compacted().is_none());
    write(&mut r, 4);
    assert_eq!(r.raw().snapshot_index(), 0, "4 entries past it: kept");
    write(&mut r, 1);
    let applied = r.kv().applied_index();
    assert_eq!(applied, s + 5);
    assert_eq!(r.raw().snapshot_index(), s, "5 entries past it: compacted");
    let gone = r.take_compacted().expect("what the compaction removed");
    assert_eq!(gone.entries.len() as u64, s);
    // What a follower 5 entries behind needs is still there.
    assert!(r.raw().entry(applied - 4).is_some());
    assert!(
        r.raw().entry(s).is_none(),
        "the log starts after the snapshot"
    );

    // Another automatic snapshot within the margin, then an operator's
    // request: the requested one compacts at once (it is asked for to cut
    // the log now), the automatic one in between is simply overtaken.
    write(&mut r, 10);
    let job = r.snapshot_job().expect("due");
    r.snapshot_recorded(job.meta.clone(), 0, job.applied_bytes)
        .unwrap();
    assert_eq!(r.raw().snapshot_index(), s);
    write(&mut r, 2);
    let id = r.request_snapshot();
    let job = r.snapshot_job().expect("asked");
    let asked = job.meta.index;
    r.snapshot_recorded(job.meta.clone(), 0, job.applied_bytes)
        .unwrap();
    assert_eq!(r.raw().snapshot_index(), asked);
    assert_eq!(
        r.take_outcomes().last(),
        Some(&(id, Outcome::Snapshot(Ok(asked))))
    );
}

/// Carries out every `Ready` as if persisted and sent; the messages sent.
fn drain_sent(r: &mut Replica) -> Vec<Message> {
    let mut sent = Vec::new();
    while r.has_ready() {
        let mut ready = r.ready();
        sent.append(&mut ready.messages);
        sent.append(&mut ready.persisted_messages);
        r.advance(ready, None).expect("advance");
    }
    sent
}

/// A checkpoint compacts the log in memory with no snapshot written there
/// (the size rule may wait long for one). A follower that then needs a
/// snapshot gets none older than the core's log start: its InstallSnapshot
/// is held back, a snapshot is due at once, and the core's retry goes out
/// once that snapshot is written.
#[test]
fn a_checkpoint_compacts_the_log_and_a_snapshot_is_written_before_one_is_sent() {
    let mut r = Replica::new(
        Config::new(1),
        PersistedState::bootstrap(Membership::new(vec![1, 2, 3])),
        SnapshotPolicy {
            every: 1000,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 5,
        },
    )
    .unwrap();
    win(&mut r, 1, &[2, 3]);
    let to_3 = |sent: &[Message]| -> Vec<MessageBody> {
        sent.iter()
            .filter(|m| m.to == 3)
            .map(|m| m.body.clone())
            .collect()
    };
    // Node 2 acknowledges everything; node 3 answers nothing.
    for i in 0..6 {
        r.propose(put(i, "k")).unwrap();
        drain(&mut r);
        let last = r.raw().status().last_index;
        let ack = MessageBody::AppendResponse {
            success: true,
            index: last,
            hint_index: 0,
            hint_term: 0,
        };
        r.step(msg(2, 1, ack)).unwrap();
        drain(&mut r);
    }
    let applied = r.kv().applied_index();
    let checkpoint = r.raw().snapshot_index();
    assert!(
        checkpoint >= 5,
        "the log in memory is compacted: {checkpoint}"
    );
    assert_eq!(r.snapshot_index(), 0, "no snapshot was written");
    assert!(r.snapshot_job().is_none(), "none is due by the policy");

    // Node 3 answers a heartbeat: the leader would go on from the entries
    // it last sent there, which the core dropped.
    let heartbeat = MessageBody::HeartbeatResponse {
        read_ctx: 0,
        seq: 0,
        last_index: 0,
    };
    r.step(msg(3, 1, heartbeat.clone())).unwrap();
    let sent = drain_sent(&mut r);
    assert!(
        !to_3(&sent)
            .iter()
            .any(|b| matches!(b, MessageBody::InstallSnapshot { .. })),
        "no snapshot on disk reaches the core's log start: nothing to send"
    );
    let job = r.snapshot_job().expect("a snapshot is written at once");
    assert_eq!(job.meta.index, applied);
    assert!(job.meta.index >= checkpoint);
    r.snapshot_recorded(job.meta.clone(), 10, job.applied_bytes)
        .unwrap();
    assert_eq!(r.snapshot_index(), applied);

    // The core tries again after its wait; now the snapshot goes out.
    let mut snapshot_sent = None;
    for _ in 0..4 * r.raw().election_tick() {
        r.tick();
        r.step(msg(3, 1, heartbeat.clone())).unwrap();
        for b in to_3(&drain_sent(&mut r)) {
            if let MessageBody::InstallSnapshot { snapshot } = b {
                snapshot_sent = Some(snapshot.meta.index);
            }
        }
        if snapshot_sent.is_some() {
            break;
        }
    }
    assert_eq!(
        snapshot_sent,
        Some(applied),
        "the written snapshot (the core compacted to it: no margin)"
    );
}
