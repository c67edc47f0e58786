//! One Raft rule per test, checked on a single `RawNode` fed hand-written
//! messages. These pin down branches the simulator reaches too rarely to
//! notice a mistake (each was found by `cargo mutants` surviving the
//! simulator and the scenario scripts).

use raft_core::{
    Config, Membership, Message, MessageBody, NodeId, PersistedState, RawNode, ReadState, Role,
    Term,
};

fn node(id: NodeId) -> RawNode {
    RawNode::new(
        Config::new(id),
        PersistedState::bootstrap(Membership::new(vec![1, 2, 3])),
    )
    .expect("valid configuration")
}

fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// Carries out every `Ready` (as if persisted); returns the messages sent
/// and the reads released.
fn drain(n: &mut RawNode) -> (Vec<Message>, Vec<ReadState>) {
    let mut sent = Vec::new();
    let mut reads = Vec::new();
    while n.has_ready() {
        let ready = n.ready();
        sent.extend(ready.messages.iter().cloned());
        sent.extend(ready.persisted_messages.iter().cloned());
        reads.extend(ready.read_states.iter().copied());
        n.advance(ready);
    }
    (sent, reads)
}

/// Node 1 wins an election with node 2's votes and commits its no-op.
fn leader() -> RawNode {
    let mut n = node(1);
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MessageBody::PreVoteResponse { granted: true }))
        .unwrap();
    drain(&mut n);
    n.step(msg(2, 1, 1, MessageBody::VoteResponse { granted: true }))
        .unwrap();
    drain(&mut n);
    assert_eq!(n.role(), Role::Leader);
    n.step(msg(
        2,
        1,
        1,
        MessageBody::AppendResponse {
            success: true,
            index: 2,
            hint_index: 0,
            hint_term: 0,
        },
    ))
    .unwrap();
    drain(&mut n);
    // Index 1 is the bootstrap configuration; the no-op is at 2.
    assert_eq!(n.status().commit, 2, "the no-op commits");
    n
}

fn vote(granted_to: &[Message]) -> Vec<(NodeId, bool)> {
    granted_to
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::VoteResponse { granted } | MessageBody::PreVoteResponse { granted } => {
                Some((m.to, granted))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_leader_asked_to_campaign_stays_leader() {
    let mut n = leader();
    let term = n.term();
    n.campaign();
    drain(&mut n);
    assert_eq!((n.role(), n.term()), (Role::Leader, term));
}

#[test]
fn one_vote_per_term() {
    // Paper §5.2: a node grants at most one vote in a term.
    let mut n = node(1);
    let request = |from| {
        msg(
            from,
            1,
            5,
            MessageBody::Vote {
                last_index: 1,
                last_term: 0,
                transfer: false,
            },
        )
    };
    n.step(request(2)).unwrap();
    assert_eq!(vote(&drain(&mut n).0), [(2, true)]);
    n.step(request(3)).unwrap();
    assert_eq!(vote(&drain(&mut n).0), [(3, false)]);
    // Repeating the vote already given is fine (the answer may have been lost).
    n.step(request(2)).unwrap();
    assert_eq!(vote(&drain(&mut n).0), [(2, true)]);
}

#[test]
fn no_pre_vote_for_the_term_of_a_known_leader() {
    // A pre-vote is free only for a *later* term; in the term whose leader
    // this node follows, a pre-candidate gets nothing (thesis §9.6).
    let mut n = node(1);
    n.step(msg(
        2,
        1,
        5,
        MessageBody::Heartbeat {
            commit: 0,
            read_ctx: 0,
            seq: 1,
        },
    ))
    .unwrap();
    drain(&mut n);
    n.step(msg(
        3,
        1,
        5,
        MessageBody::PreVote {
            last_index: 0,
            last_term: 0,
        },
    ))
    .unwrap();
    assert_eq!(vote(&drain(&mut n).0), [(3, false)]);
}

#[test]
fn a_follower_without_a_leader_refuses_a_read() {
    let mut n = node(1);
    assert!(n.read_index(1).is_err());
    assert!(drain(&mut n).0.is_empty(), "nothing sent to node 0");
}

#[test]
fn a_read_waits_for_a_majority_to_confirm_leadership() {
    // Thesis §6.4: the leader answers a read only after a heartbeat round
    // started after the read is acknowledged by a majority.
    let mut n = leader();
    n.read_index(7).unwrap();
    let (sent, reads) = drain(&mut n);
    assert!(reads.is_empty(), "released before any follower answered");
    let round = sent
        .iter()
        .find_map(|m| match m.body {
            MessageBody::Heartbeat { read_ctx, .. } if m.to == 2 => Some(read_ctx),
            _ => None,
        })
        .expect("a heartbeat to node 2");
    // An answer to an older round confirms nothing.
    n.step(msg(
        3,
        1,
        1,
        MessageBody::HeartbeatResponse {
            read_ctx: round - 1,
            seq: 0,
            last_index: 2,
        },
    ))
    .unwrap();
    assert!(drain(&mut n).1.is_empty(), "released by a stale round");
    n.step(msg(
        2,
        1,
        1,
        MessageBody::HeartbeatResponse {
            read_ctx: round,
            seq: 0,
            last_index: 2,
        },
    ))
    .unwrap();
    assert_eq!(drain(&mut n).1, [ReadState { ctx: 7, index: 2 }]);
}

#[test]
fn a_deposed_leader_refuses_the_reads_followers_asked_for() {
    let mut n = leader();
    n.step(msg(2, 1, 1, MessageBody::ReadIndex { ctx: 9 }))
        .unwrap();
    drain(&mut n);
    // A newer leader appears: the pending read is answered "no index", so
    // the follower retries instead of waiting for its timeout.
    n.step(msg(
        3,
        1,
        4,
        MessageBody::Heartbeat {
            commit: 0,
            read_ctx: 0,
            seq: 1,
        },
    ))
    .unwrap();
    let (sent, _) = drain(&mut n);
    assert!(
        sent.iter().any(|m| m.to == 2
            && matches!(
                m.body,
                MessageBody::ReadIndexResponse {
                    ctx: 9,
                    index: None
                }
            )),
        "{sent:?}"
    );
}

fn kinds(messages: &[Message]) -> Vec<(&'static str, NodeId)> {
    messages.iter().map(|m| (m.body.kind(), m.to)).collect()
}

/// Follower `from` acknowledges the leader's log up to `index`.
fn ack(n: &mut RawNode, from: NodeId, index: u64) {
    let term = n.term();
    let body = MessageBody::AppendResponse {
        success: true,
        index,
        hint_index: 0,
        hint_term: 0,
    };
    n.step(msg(from, 1, term, body)).unwrap();
}

fn put(key: &str) -> raft_core::Command {
    raft_core::Command {
        client_id: 7,
        seq: 1,
        op: raft_core::Op::Put {
            key: key.into(),
            value: "v".into(),
        },
    }
}

#[test]
fn a_leader_replicates_before_its_own_write_is_durable() {
    // Thesis §10.2.1: the leader may write its log in parallel with
    // sending it; its own copy counts only once persisted.
    let mut n = leader();
    let index = n.propose(put("k")).unwrap();
    let ready = n.ready();
    assert!(ready.must_persist);
    assert_eq!(ready.entries.len(), 1);
    // (Node 3 never answered: it is still probed, one append at a time.)
    assert_eq!(
        kinds(&ready.messages),
        [("append", 2)],
        "the append may leave before the fsync"
    );
    assert!(ready.persisted_messages.is_empty());
    // The follower acknowledges before the leader's write finished: one
    // durable copy of three is no majority until the leader's own counts.
    ack(&mut n, 2, index);
    assert_eq!(n.status().commit, index - 1, "not committed before advance");
    n.advance(ready);
    drain(&mut n);
    assert_eq!(
        n.status().commit,
        index,
        "committed once its copy is durable"
    );
}

#[test]
fn a_follower_acknowledges_only_after_its_write() {
    // An acknowledgement promises the entries are durable (paper §5.3).
    let mut n = node(2);
    let entry = raft_core::Entry {
        term: 1,
        index: 2,
        payload: raft_core::Payload::Noop,
    };
    n.step(msg(
        1,
        2,
        1,
        MessageBody::Append {
            prev_index: 1,
            prev_term: 0,
            entries: vec![entry],
            commit: 0,
        },
    ))
    .unwrap();
    let ready = n.ready();
    assert!(ready.must_persist);
    assert!(ready.messages.is_empty());
    assert_eq!(kinds(&ready.persisted_messages), [("append_response", 1)]);
    n.advance(ready);
}

#[test]
fn a_candidate_asks_for_votes_only_after_its_vote_is_durable() {
    // The term and the vote for itself must survive a crash before any
    // vote request leaves, or it could vote twice in the term.
    let mut cfg = Config::new(1);
    cfg.pre_vote = false;
    let mut n = RawNode::new(
        cfg,
        PersistedState::bootstrap(Membership::new(vec![1, 2, 3])),
    )
    .expect("valid configuration");
    n.campaign();
    let ready = n.ready();
    assert!(ready.must_persist);
    assert_eq!(ready.hard_state.map(|h| (h.term, h.vote)), Some((1, 1)));
    assert!(ready.messages.is_empty());
    assert_eq!(kinds(&ready.persisted_messages), [("vote", 2), ("vote", 3)]);
    n.advance(ready);
}

#[test]
fn moving_only_the_commit_index_needs_no_write() {
    // The commit index is volatile state (paper, figure 2).
    let mut n = leader();
    let index = n.propose(put("k")).unwrap();
    drain(&mut n);
    ack(&mut n, 2, index);
    let ready = n.ready();
    assert_eq!(ready.hard_state.map(|h| h.commit), Some(index));
    assert!(!ready.must_persist, "a commit-only Ready writes nothing");
    assert_eq!(ready.committed_entries.len(), 1);
    n.advance(ready);
    // The next write carries the newest commit along.
    n.propose(put("k2")).unwrap();
    let ready = n.ready();
    assert!(ready.must_persist);
    assert_eq!(ready.hard_state.map(|h| h.commit), Some(index));
    n.advance(ready);
}

/// Node 1 follows leader 2 in term 5.
fn follower_of_2() -> RawNode {
    let mut n = node(1);
    n.step(msg(
        2,
        1,
        5,
        MessageBody::Heartbeat {
            commit: 1,
            read_ctx: 0,
            seq: 1,
        },
    ))
    .unwrap();
    drain(&mut n);
    n
}

#[test]
fn a_follower_takes_only_the_answer_to_a_read_it_asked_for() {
    // A read index answer for a context this node never asked about (one
    // meant for an earlier run of the node, which numbered its reads from
    // the same start) must not serve a new read: its index may predate a
    // write acknowledged before the new read began.
    let mut n = follower_of_2();
    let answer = |ctx, index| {
        msg(
            2,
            1,
            5,
            MessageBody::ReadIndexResponse {
                ctx,
                index: Some(index),
            },
        )
    };
    n.step(answer(1, 3)).unwrap();
    assert!(drain(&mut n).1.is_empty(), "served a read nobody asked for");
    n.read_index(1).unwrap();
    let (sent, _) = drain(&mut n);
    assert_eq!(kinds(&sent), [("read_index", 2)]);
    // The answer from another node is not the leader's.
    n.step(msg(
        3,
        1,
        5,
        MessageBody::ReadIndexResponse {
            ctx: 1,
            index: Some(2),
        },
    ))
    .unwrap();
    assert!(drain(&mut n).1.is_empty(), "took node 3's answer");
    n.step(answer(1, 7)).unwrap();
    assert_eq!(drain(&mut n).1, [ReadState { ctx: 1, index: 7 }]);
    // Once answered, a duplicate is ignored.
    n.step(answer(1, 3)).unwrap();
    assert!(
        drain(&mut n).1.is_empty(),
        "a duplicate answer served twice"
    );
}

#[test]
fn reads_asked_of_a_leader_fail_when_the_leader_changes() {
    let mut n = follower_of_2();
    n.read_index(4).unwrap();
    drain(&mut n);
    n.step(msg(
        3,
        1,
        6,
        MessageBody::Heartbeat {
            commit: 1,
            read_ctx: 0,
            seq: 1,
        },
    ))
    .unwrap();
    let mut dropped = Vec::new();
    while n.has_ready() {
        let rd = n.ready();
        dropped.extend(rd.dropped_reads.iter().copied());
        n.advance(rd);
    }
    assert_eq!(dropped, [4]);
    // The old leader's late answer serves nothing.
    n.step(msg(
        2,
        1,
        6,
        MessageBody::ReadIndexResponse {
            ctx: 4,
            index: Some(1),
        },
    ))
    .unwrap();
    assert!(drain(&mut n).1.is_empty());
}

#[test]
fn a_pre_vote_refused_at_the_candidates_own_term_ends_the_round() {
    // Voters that refuse a pre-vote answer at their own term, which is the
    // pre-candidate's term when both are current: two such refusals out of
    // three voters lose the round at once (thesis §9.6).
    let mut n = node(1);
    n.campaign();
    drain(&mut n);
    assert_eq!(n.role(), Role::PreCandidate);
    let term = n.term();
    n.step(msg(
        2,
        1,
        term,
        MessageBody::PreVoteResponse { granted: false },
    ))
    .unwrap();
    n.step(msg(
        3,
        1,
        term,
        MessageBody::PreVoteResponse { granted: false },
    ))
    .unwrap();
    drain(&mut n);
    assert_eq!((n.role(), n.term()), (Role::Follower, term));
}
