//! The client requests a replica waits on, and how each is settled.
//!
//! A write is known by the log index it was proposed at *and* the term it
//! was proposed in. The entry finally applied at that index settles it: the
//! same term means it is this write (Log Matching: one entry per index and
//! term), another term means this write is not in the log and never will
//! be. A newer proposal landing on the same index settles nothing: the old
//! entry may still be committed by a leader that holds it.

use std::collections::BTreeMap;

use crate::auth::{Denied, Need, Principal};
use crate::kv::{KvStore, OpResult};
use crate::types::{Index, Membership, NodeId, Term};

/// A request's handle, unique within one replica's lifetime; the driver
/// routes the [`Outcome`] for it back to whoever asked.
pub type RequestId = u64;

/// A read of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// One key.
    Get(String),
    /// Keys with a prefix, in order, up to a limit.
    List {
        /// The prefix.
        prefix: String,
        /// Only keys after this one (the next page of a listing).
        after: Option<String>,
        /// The most items to return.
        limit: usize,
    },
    /// `query` made for `user`, whose token names `generation`: answered
    /// only if the auth state the read is served from lets the user read
    /// the key, or every key under the prefix; else
    /// [`QueryResult::PermissionDenied`]. While auth is enabled a query
    /// without this wrapper is refused.
    AsUser {
        /// The user's name.
        user: String,
        /// The user's token generation.
        generation: u64,
        /// The read.
        query: Box<Query>,
    },
}

/// A key's value and its modification index (the index of the log entry
/// that last wrote it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: String,
    /// The index of the entry that last wrote the key.
    pub mod_index: Index,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// The key's value and modification index (`None`: absent).
    Value(Option<Versioned>),
    /// Matching items and whether more matched.
    List {
        /// Items in key order.
        items: Vec<(String, String)>,
        /// More keys matched than the limit.
        truncated: bool,
    },
    /// The auth state refuses the read.
    PermissionDenied(Denied),
}

impl Query {
    /// Answers the query from `kv` as it is now, if its auth state allows.
    pub fn run(&self, kv: &KvStore) -> QueryResult {
        self.run_for(kv, None)
    }

    fn run_for(&self, kv: &KvStore, user: Option<Principal<'_>>) -> QueryResult {
        let allowed = |target: &str| kv.auth().check(user, Need::Read(target));
        match self {
            Query::AsUser {
                user: name,
                generation,
                query,
            } => match **query {
                // One level of wrapping only.
                Query::AsUser { .. } => QueryResult::PermissionDenied(Denied::Anonymous),
                _ => query.run_for(kv, Some((name, *generation))),
            },
            Query::Get(key) => match allowed(key) {
                Err(denied) => QueryResult::PermissionDenied(denied),
                Ok(()) => {
                    QueryResult::Value(kv.get_with_index(key).map(|(value, mod_index)| Versioned {
                        value: value.to_string(),
                        mod_index,
                    }))
                }
            },
            Query::List {
                prefix,
                after,
                limit,
            } => match allowed(prefix) {
                Err(denied) => QueryResult::PermissionDenied(denied),
                Ok(()) => {
                    let mut items = kv.list(prefix, after.as_deref(), limit.saturating_add(1));
                    let truncated = items.len() > *limit;
                    items.truncate(*limit);
                    QueryResult::List { items, truncated }
                }
            },
        }
    }
}

/// A committed and applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Its log index.
    pub index: Index,
    /// What applying it did.
    pub result: OpResult,
    /// The index of the entry that applied it: `index`, or for a retry
    /// answered with its first result, the earlier entry's (a put's is the
    /// modification index it gave the key).
    pub applied_at: Index,
}

/// Why a request ended without its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node cannot serve it (it lost or never had leadership, or the
    /// leader it asked changed); `leader` is the one it knows of. A write
    /// failing this way was never proposed, a read may simply be retried.
    #[error("not the leader")]
    NotLeader {
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// Another entry was committed at the index the write was proposed at:
    /// the write is not in the log and never will be. Retrying is safe.
    #[error("another entry was committed where the write was proposed; it was not applied")]
    NotApplied,
    /// The write may or may not be applied: the node stopped, its storage
    /// failed, or a snapshot replaced the log around it. Retry with the
    /// same client id and sequence number, which applies it at most once.
    #[error("the outcome of the write is unknown: {0}")]
    Unknown(&'static str),
    /// A snapshot could not be taken.
    #[error("{0}")]
    Snapshot(String),
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write.
    Write(Result<WriteOutcome, RequestError>),
    /// A linearizable read.
    Read(Result<QueryResult, RequestError>),
    /// A membership change: the configuration once it is in force (for a
    /// change of voters, once the joint phase is over), and its index.
    Conf(Result<(Membership, Index), RequestError>),
    /// A snapshot asked for: the index of the newest snapshot.
    Snapshot(Result<Index, RequestError>),
}

/// Every request a replica waits on.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Writes by (index, term) proposed at.
    pub writes: BTreeMap<(Index, Term), RequestId>,
    /// Membership changes by (index, term) of their configuration entry.
    pub confs: BTreeMap<(Index, Term), RequestId>,
    /// Changes whose joint configuration is applied, waiting for the entry
    /// that ends the joint phase.
    pub leaving: Vec<RequestId>,
    /// Reads waiting for their read index, by context.
    pub reads_asked: BTreeMap<u64, (RequestId, Query)>,
    /// Reads waiting for the state machine to reach their read index.
    pub reads_applying: BTreeMap<(Index, u64), (RequestId, Query)>,
    /// Snapshots asked for, with the applied index each must cover.
    pub snapshots: Vec<(Index, RequestId)>,
}

/// Removes the requests proposed at or below `index` from `map`, in order
/// (nothing is allocated when there are none: the common case per entry).
fn take_through(
    map: &mut BTreeMap<(Index, Term), RequestId>,
    index: Index,
) -> Vec<((Index, Term), RequestId)> {
    let mut taken = Vec::new();
    while let Some(e) = map.first_entry() {
        if e.key().0 > index {
            break;
        }
        taken.push(e.remove_entry());
    }
    taken
}

impl Pending {
    /// Settles the writes proposed at `index` by the entry applied there.
    pub fn settle_writes(
        &mut self,
        index: Index,
        term: Term,
        result: Option<(&OpResult, Index)>,
        out: &mut Vec<(RequestId, Outcome)>,
    ) {
        // Writes proposed below this index whose entry was never applied
        // here lost their index to a snapshot or were settled already; any
        // still waiting at or below it are decided now.
        for ((i, t), id) in take_through(&mut self.writes, index) {
            let answer = match result {
                Some((r, applied_at)) if i == index && t == term => Ok(WriteOutcome {
                    index,
                    result: r.clone(),
                    applied_at,
                }),
                _ if i == index => Err(RequestError::NotApplied),
                // An index below the applied one that was skipped: only a
                // snapshot does that, and it says nothing about the term.
                _ => Err(RequestError::Unknown(
                    "a snapshot from the leader replaced the log around it",
                )),
            };
            out.push((id, Outcome::Write(answer)));
        }
    }

    /// A snapshot installed up to `index`: the writes and changes waiting
    /// at or below it cannot be told apart from the entries it replaced
    /// (it keeps no terms but its last), so their outcome is unknown.
    pub fn snapshot_installed(&mut self, index: Index, out: &mut Vec<(RequestId, Outcome)>) {
        for (_, id) in take_through(&mut self.writes, index) {
            out.push((
                id,
                Outcome::Write(Err(RequestError::Unknown(
                    "a snapshot from the leader replaced the log around it",
                ))),
            ));
        }
        for (_, id) in take_through(&mut self.confs, index) {
            out.push((
                id,
                Outcome::Conf(Err(RequestError::Unknown(
                    "a snapshot from the leader replaced the log around it",
                ))),
            ));
        }
    }

    /// A configuration entry was applied at `index` in `term`.
    pub fn settle_conf(
        &mut self,
        index: Index,
        term: Term,
        m: &Membership,
        out: &mut Vec<(RequestId, Outcome)>,
    ) {
        if !m.is_joint() {
            for id in self.leaving.drain(..) {
                out.push((id, Outcome::Conf(Ok((m.clone(), index)))));
            }
        }
        for ((i, t), id) in take_through(&mut self.confs, index) {
            if i == index && t == term {
                if m.is_joint() {
                    self.leaving.push(id);
                } else {
                    out.push((id, Outcome::Conf(Ok((m.clone(), index)))));
                }
            } else {
                out.push((id, Outcome::Conf(Err(RequestError::NotApplied))));
            }
        }
    }

    /// An entry that is not a configuration was applied at `index`: a
    /// membership change proposed there (in any term) did not happen.
    pub fn settle_confs_at(&mut self, index: Index, out: &mut Vec<(RequestId, Outcome)>) {
        for (_, id) in take_through(&mut self.confs, index) {
            out.push((id, Outcome::Conf(Err(RequestError::NotApplied))));
        }
    }

    /// Moves reads whose read index is known to the apply queue.
    pub fn read_index_known(&mut self, ctx: u64, index: Index) {
        if let Some(r) = self.reads_asked.remove(&ctx) {
            self.reads_applying.insert((index, ctx), r);
        }
    }

    /// Fails a read whose read index will never come.
    pub fn read_dropped(
        &mut self,
        ctx: u64,
        leader: Option<NodeId>,
        out: &mut Vec<(RequestId, Outcome)>,
    ) {
        if let Some((id, _)) = self.reads_asked.remove(&ctx) {
            out.push((id, Outcome::Read(Err(RequestError::NotLeader { leader }))));
        }
    }

    /// Serves the reads whose read index is applied.
    pub fn serve_reads(&mut self, kv: &KvStore, out: &mut Vec<(RequestId, Outcome)>) {
        let applied = kv.applied_index();
        while let Some(e) = self.reads_applying.first_entry() {
            if e.key().0 > applied {
                break;
            }
            let (id, query) = e.remove();
            out.push((id, Outcome::Read(Ok(query.run(kv)))));
        }
    }

    /// Ends every request: the node stops. Writes and membership changes
    /// end with an unknown outcome (they may still commit), reads and
    /// snapshots fail.
    pub fn stop(&mut self, why: &'static str, out: &mut Vec<(RequestId, Outcome)>) {
        for (_, id) in std::mem::take(&mut self.writes) {
            out.push((id, Outcome::Write(Err(RequestError::Unknown(why)))));
        }
        let confs = std::mem::take(&mut self.confs).into_values();
        for id in confs.chain(self.leaving.drain(..)) {
            out.push((id, Outcome::Conf(Err(RequestError::Unknown(why)))));
        }
        let reads = std::mem::take(&mut self.reads_asked).into_values();
        for (id, _) in reads.chain(std::mem::take(&mut self.reads_applying).into_values()) {
            out.push((
                id,
                Outcome::Read(Err(RequestError::NotLeader { leader: None })),
            ));
        }
        for (_, id) in self.snapshots.drain(..) {
            out.push((
                id,
                Outcome::Snapshot(Err(RequestError::Snapshot(why.to_string()))),
            ));
        }
    }

    /// Forgets the requests whose clients gave up.
    pub fn forget(&mut self, gone: impl Fn(RequestId) -> bool) {
        self.writes.retain(|_, w| !gone(*w));
        self.confs.retain(|_, w| !gone(*w));
        self.leaving.retain(|w| !gone(*w));
        self.reads_asked.retain(|_, (w, _)| !gone(*w));
        self.reads_applying.retain(|_, (w, _)| !gone(*w));
        self.snapshots.retain(|(_, w)| !gone(*w));
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.writes.len()
            + self.confs.len()
            + self.leaving.len()
            + self.reads_asked.len()
            + self.reads_applying.len()
            + self.snapshots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_result() -> OpResult {
        OpResult::Put { prev: None }
    }

    #[test]
    fn a_write_is_settled_by_the_term_of_the_entry_applied_at_its_index() {
        let mut p = Pending::default();
        // Proposed at 5 in term 1; a later leader's proposal also lands at 5
        // (term 3). Neither replaces the other.
        p.writes.insert((5, 1), 10);
        p.writes.insert((5, 3), 11);
        p.writes.insert((6, 3), 12);
        let mut out = Vec::new();
        p.settle_writes(5, 1, Some((&put_result(), 5)), &mut out);
        assert_eq!(
            out,
            vec![
                (
                    10,
                    Outcome::Write(Ok(WriteOutcome {
                        index: 5,
                        result: put_result(),
                        applied_at: 5,
                    }))
                ),
                (11, Outcome::Write(Err(RequestError::NotApplied))),
            ]
        );
        assert_eq!(p.writes.len(), 1, "the write at 6 still waits");
    }

    #[test]
    fn stopping_leaves_writes_unknown_not_retryable() {
        let mut p = Pending::default();
        p.writes.insert((5, 1), 1);
        p.reads_asked.insert(9, (2, Query::Get("k".into())));
        let mut out = Vec::new();
        p.stop("the node is shutting down", &mut out);
        assert_eq!(
            out[0],
            (
                1,
                Outcome::Write(Err(RequestError::Unknown("the node is shutting down")))
            )
        );
        assert!(matches!(out[1].1, Outcome::Read(Err(_))));
        assert_eq!(p.len(), 0);
    }

    fn conf(voters: Vec<u64>, outgoing: Vec<u64>) -> Membership {
        let mut m = Membership::new(voters);
        m.outgoing = outgoing;
        m
    }

    #[test]
    fn a_change_of_voters_is_answered_when_its_joint_phase_ends() {
        let mut p = Pending::default();
        p.confs.insert((7, 2), 1);
        p.confs.insert((7, 1), 2);
        let mut out = Vec::new();
        // The joint entry of term 2 is applied at 7: request 1 waits for
        // the end of the joint phase, request 2 (term 1) lost its index.
        let joint = conf(vec![1, 2, 4], vec![1, 2, 3]);
        p.settle_conf(7, 2, &joint, &mut out);
        assert_eq!(out, vec![(2, Outcome::Conf(Err(RequestError::NotApplied)))]);
        assert_eq!(p.leaving, vec![1]);
        out.clear();
        let done = conf(vec![1, 2, 4], vec![]);
        p.settle_conf(8, 2, &done, &mut out);
        assert_eq!(out, vec![(1, Outcome::Conf(Ok((done, 8))))]);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_change_whose_index_gets_another_entry_did_not_happen() {
        let mut p = Pending::default();
        p.confs.insert((5, 1), 1);
        p.confs.insert((6, 1), 2);
        let mut out = Vec::new();
        p.settle_confs_at(4, &mut out);
        assert!(out.is_empty(), "nothing at or below 4 waits");
        p.settle_confs_at(5, &mut out);
        assert_eq!(out, vec![(1, Outcome::Conf(Err(RequestError::NotApplied)))]);
        assert_eq!(p.confs.len(), 1, "the change at 6 still waits");
    }

    #[test]
    fn a_snapshot_over_a_write_leaves_its_outcome_unknown() {
        let mut p = Pending::default();
        p.writes.insert((5, 1), 1);
        p.writes.insert((9, 1), 2);
        p.confs.insert((5, 1), 3);
        p.confs.insert((9, 1), 4);
        let mut out = Vec::new();
        p.snapshot_installed(5, &mut out);
        let why = "a snapshot from the leader replaced the log around it";
        assert_eq!(
            out,
            vec![
                (1, Outcome::Write(Err(RequestError::Unknown(why)))),
                (3, Outcome::Conf(Err(RequestError::Unknown(why)))),
            ]
        );
        assert_eq!(
            (p.writes.len(), p.confs.len()),
            (1, 1),
            "past 5 still waits"
        );
    }

    #[test]
    fn a_list_query_says_whether_it_was_cut() {
        let mut kv = KvStore::new();
        for (i, k) in ["a1", "a2", "a3"].iter().enumerate() {
            kv.apply(&crate::types::Entry {
                term: 1,
                index: i as u64 + 1,
                payload: crate::types::Payload::command(crate::kv::Command {
                    client_id: 0,
                    seq: 0,
                    op: crate::kv::Op::Put {
                        key: (*k).into(),
                        value: "v".into(),
                    },
                }),
            });
        }
        let list = |limit| {
            Query::List {
                prefix: "a".into(),
                after: None,
                limit,
            }
            .run(&kv)
        };
        let QueryResult::List { items, truncated } = list(2) else {
            panic!()
        };
        assert_eq!((items.len(), truncated), (2, true));
        let QueryResult::List { items, truncated } = list(3) else {
            panic!()
        };
        assert_eq!((items.len(), truncated), (3, false));
    }

    #[test]
    fn forget_drops_only_the_requests_picked() {
        let mut p = Pending::default();
        p.writes.insert((1, 1), 1);
        p.confs.insert((2, 1), 2);
        p.leaving.push(3);
        p.reads_asked.insert(9, (4, Query::Get("k".into())));
        p.reads_applying.insert((3, 8), (5, Query::Get("k".into())));
        p.snapshots.push((3, 6));
        assert_eq!(p.len(), 6);
        p.forget(|id| id % 2 == 0);
        assert_eq!(p.len(), 3);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.leaving, vec![3]);
        assert!(p.reads_asked.is_empty());
        assert_eq!(p.reads_applying.len(), 1);
        assert!(p.snapshots.is_empty());
    }
}
