//! One deterministic text form for a [`Ready`] and what it carries, in the
//! spirit of etcd-raft's `DescribeReady` / `DescribeMessage`: the scenario
//! scripts print through it, and a driver may log with it.
//!
//! A `Ready` reads in the order the driver carries it out:
//!
//! ```text
//! soft state: role=leader leader=1
//! hard state: term=2 vote=1 commit=3
//! must persist: yes
//! entries: 4/2:put k=v
//! send now:
//!   1->2 t2 Append prev=3@2 commit=3 [4/2:put k=v]
//!   1->3 t2 Append prev=3@2 commit=3 [4/2:put k=v]
//! committed: 3/2:noop
//! ```
//!
//! Lines for empty parts are left out (`must persist` is always there).
//! Messages keep the order the core emitted them in: it visits peers in id
//! order and holds no hash maps, so the text is the same on every run.

use std::fmt::Write;

use crate::kv::Op;
use crate::message::{Message, MessageBody};
use crate::raw_node::Ready;
use crate::types::{Entry, Membership, NodeId, Payload};

impl Ready {
    /// This Ready as text: see [`describe_ready`].
    pub fn describe(&self) -> String {
        describe_ready(self)
    }
}

/// A `Ready` as lines in the order the driver carries it out: the soft
/// state change, the hard state, whether it must be persisted, the
/// snapshot and the entries to persist, the messages that may leave now,
/// those that wait for the write (each message on its own line, indented
/// two spaces), the committed entries, read states, dropped reads and lost
/// logs. Parts with nothing in them are left out, except `must persist`.
/// Every line ends with a newline.
pub fn describe_ready(ready: &Ready) -> String {
    let mut out = String::new();
    if let Some(soft) = ready.soft_state {
        let _ = writeln!(
            out,
            "soft state: role={} leader={}",
            soft.role,
            describe_node(soft.leader)
        );
    }
    if let Some(hs) = ready.hard_state {
        let _ = writeln!(
            out,
            "hard state: term={} vote={} commit={}",
            hs.term,
            describe_node(hs.vote),
            hs.commit
        );
    }
    let _ = writeln!(
        out,
        "must persist: {}",
        if ready.must_persist { "yes" } else { "no" }
    );
    if let Some(s) = &ready.snapshot {
        let _ = writeln!(
            out,
            "snapshot: index={} term={} config={}",
            s.meta.index,
            s.meta.term,
            describe_membership(&s.meta.membership)
        );
    }
    if !ready.entries.is_empty() {
        let _ = writeln!(out, "entries: {}", describe_entries(&ready.entries));
    }
    for (title, msgs) in [
        ("send now", &ready.messages),
        ("send after persist", &ready.persisted_messages),
    ] {
        if msgs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for m in msgs {
            let _ = writeln!(out, "  {}", describe_message(m));
        }
    }
    if !ready.committed_entries.is_empty() {
        let _ = writeln!(
            out,
            "committed: {}",
            describe_entries(&ready.committed_entries)
        );
    }
    if !ready.read_states.is_empty() {
        let reads: Vec<String> = ready
            .read_states
            .iter()
            .map(|rs| format!("ctx={} index={}", rs.ctx, rs.index))
            .collect();
        let _ = writeln!(out, "read states: {}", reads.join(", "));
    }
    if !ready.dropped_reads.is_empty() {
        let ctxs: Vec<String> = ready
            .dropped_reads
            .iter()
            .map(|ctx| format!("ctx={ctx}"))
            .collect();
        let _ = writeln!(out, "dropped reads: {}", ctxs.join(", "));
    }
    for lost in &ready.lost_logs {
        let _ = writeln!(
            out,
            "lost log: {} acknowledged={} reported={}",
            lost.id, lost.acknowledged, lost.reported
        );
    }
    out
}

/// A message on one line: `from->to t<term> <Kind> <fields>`, e.g.
/// `1->2 t2 Append prev=3@1 commit=3 [4/2:put k=v]` (a log position is
/// `index@term` and an entry `index/term:payload`).
pub fn describe_message(m: &Message) -> String {
    let body = match &m.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        } => format!("PreVote last={last_index}@{last_term}"),
        MessageBody::PreVoteResponse { granted } => {
            format!("PreVoteResponse {}", grant(*granted))
        }
        MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        } => format!(
            "Vote last={last_index}@{last_term}{}",
            if *transfer { " transfer" } else { "" }
        ),
        MessageBody::VoteResponse { granted } => format!("VoteResponse {}", grant(*granted)),
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => format!(
            "Append prev={prev_index}@{prev_term} commit={commit} [{}]",
            describe_entries(entries)
        ),
        MessageBody::AppendResponse {
            success,
            index,
            hint_index,
            hint_term,
        } => {
            if *success {
                format!("AppendResponse ok index={index}")
            } else {
                format!("AppendResponse reject index={index} hint={hint_index}@{hint_term}")
            }
        }
        MessageBody::Heartbeat {
            commit, read_ctx, ..
        } => format!("Heartbeat commit={commit} read_ctx={read_ctx}"),
        MessageBody::HeartbeatResponse { read_ctx, .. } => {
            format!("HeartbeatResponse read_ctx={read_ctx}")
        }
        MessageBody::InstallSnapshot { snapshot } => format!(
            "InstallSnapshot index={}@{}",
            snapshot.meta.index, snapshot.meta.term
        ),
        MessageBody::ReadIndex { ctx } => format!("ReadIndex ctx={ctx}"),
        MessageBody::ReadIndexResponse { ctx, index } => match index {
            Some(i) => format!("ReadIndexResponse ctx={ctx} index={i}"),
            None => format!("ReadIndexResponse ctx={ctx} refused"),
        },
        MessageBody::TimeoutNow => "TimeoutNow".to_string(),
    };
    format!("{}->{} t{} {body}", m.from, m.to, m.term)
}

/// An entry as `index/term:payload`: `noop`, `put k=v`, `del k`, `cas k`,
/// `put-if k=v`, `del-if k`, `del-prefix p`, `auth` (a change of the users
/// and roles), `as <user>: <key>` or `config <membership>`.
pub fn describe_entry(e: &Entry) -> String {
    let what = match &e.payload {
        Payload::Noop => "noop".to_string(),
        Payload::Command(c) => match &c.op {
            Op::Put { key, value } => format!("put {key}={value}"),
            Op::Delete { key } => format!("del {key}"),
            Op::Cas { key, .. } => format!("cas {key}"),
            Op::Register => "register".to_string(),
            Op::PutIf { key, value, .. } => format!("put-if {key}={value}"),
            Op::DeleteIf { key, .. } => format!("del-if {key}"),
            Op::DeletePrefix { prefix } => format!("del-prefix {prefix}"),
            Op::Auth(_) => "auth".to_string(),
            Op::AsUser { user, op, .. } => format!("as {user}: {}", op.key()),
        },
        Payload::Config(m) => format!("config {}", describe_membership(m)),
    };
    format!("{}/{}:{what}", e.index, e.term)
}

/// A configuration: `[1, 2, 3]`, with the learners and the learners to
/// promote if any; a joint configuration shows the voters being left and
/// the voters being entered: `joint [1, 2, 3]->[1, 2, 4]`. Ids are in
/// ascending order (the configuration keeps them sorted); addresses are
/// left out.
pub fn describe_membership(m: &Membership) -> String {
    let mut s = if m.is_joint() {
        format!("joint {:?}->{:?}", m.outgoing, m.voters)
    } else {
        format!("{:?}", m.voters)
    };
    if !m.learners.is_empty() {
        let _ = write!(s, " learners={:?}", m.learners);
    }
    if !m.auto_promote.is_empty() {
        let _ = write!(s, " auto-promote={:?}", m.auto_promote);
    }
    s
}

/// Entries separated by spaces.
fn describe_entries(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(describe_entry)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A node id, `none` for 0.
fn describe_node(id: NodeId) -> String {
    if id == 0 {
        "none".to_string()
    } else {
        id.to_string()
    }
}

fn grant(g: bool) -> &'static str {
    if g {
        "granted"
    } else {
        "rejected"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Command;
    use crate::raw_node::{LostLog, SoftState};
    use crate::types::{HardState, Role, Snapshot, SnapshotMeta};
    use crate::ReadState;

    fn put(index: u64, term: u64, key: &str, value: &str) -> Entry {
        Entry {
            index,
            term,
            payload: Payload::command(Command {
                client_id: 0,
                seq: 0,
                op: Op::Put {
                    key: key.into(),
                    value: value.into(),
                },
            }),
        }
    }

    #[test]
    fn a_full_ready_reads_in_the_order_it_is_carried_out() {
        let append = |to| Message {
            from: 1,
            to,
            term: 2,
            body: MessageBody::Append {
                prev_index: 3,
                prev_term: 1,
                entries: vec![put(4, 2, "k", "v")],
                commit: 3,
            },
        };
        let ready = Ready {
            hard_state: Some(HardState {
                term: 2,
                vote: 1,
                commit: 3,
            }),
            must_persist: true,
            snapshot: Some(Snapshot {
                meta: SnapshotMeta {
                    index: 3,
                    term: 1,
                    membership: Membership::new(vec![3, 1, 2]),
                },
                data: vec![0; 5],
            }),
            entries: vec![put(4, 2, "k", "v")],
            messages: vec![append(2), append(3)],
            persisted_messages: vec![Message {
                from: 1,
                to: 3,
                term: 2,
                body: MessageBody::VoteResponse { granted: false },
            }],
            committed_entries: vec![Entry {
                index: 3,
                term: 1,
                payload: Payload::Noop,
            }],
            read_states: vec![ReadState { ctx: 7, index: 3 }],
            dropped_reads: vec![8, 9],
            soft_state: Some(SoftState {
                role: Role::Leader,
                leader: 1,
                cause: crate::types::RoleCause::ElectionWon,
            }),
            lost_logs: vec![LostLog {
                id: 3,
                acknowledged: 4,
                reported: 2,
            }],
        };
        assert_eq!(
            ready.describe(),
            "soft state: role=leader leader=1\n\
             hard state: term=2 vote=1 commit=3\n\
             must persist: yes\n\
             snapshot: index=3 term=1 config=[1, 2, 3]\n\
             entries: 4/2:put k=v\n\
             send now:\n  \
               1->2 t2 Append prev=3@1 commit=3 [4/2:put k=v]\n  \
               1->3 t2 Append prev=3@1 commit=3 [4/2:put k=v]\n\
             send after persist:\n  \
               1->3 t2 VoteResponse rejected\n\
             committed: 3/1:noop\n\
             read states: ctx=7 index=3\n\
             dropped reads: ctx=8, ctx=9\n\
             lost log: 3 acknowledged=4 reported=2\n"
        );
    }

    #[test]
    fn an_empty_ready_still_says_whether_to_persist() {
        assert_eq!(Ready::default().describe(), "must persist: no\n");
    }

    #[test]
    fn a_joint_configuration_shows_both_sides_and_learners() {
        let mut m = Membership::new(vec![1, 2, 4]);
        m.outgoing = vec![1, 2, 3];
        m.learners = vec![5];
        m.auto_promote = vec![5];
        let e = Entry {
            index: 9,
            term: 3,
            payload: Payload::Config(m),
        };
        assert_eq!(
            describe_entry(&e),
            "9/3:config joint [1, 2, 3]->[1, 2, 4] learners=[5] auto-promote=[5]"
        );
    }
}
