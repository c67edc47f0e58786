//! The client history: every operation with when it was invoked, when (and
//! with what) it completed, or that its outcome is unknown.
//!
//! Besides virtual time, each invoke and completion gets an `order`: its
//! position in the run's total order of client events. The linearizability
//! checker uses `order`, so "A completed before B was invoked" is exact
//! even when both happened in the same time unit.

use super::Time;
use crate::kv::{Condition, Op, OpResult};
use crate::types::{Index, NodeId};

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// A linearizable read of `key`.
    Get {
        /// The key.
        key: String,
    },
    /// A write (put, delete, compare-and-set, conditional put or delete,
    /// prefix delete), or a client's session registration
    /// ([`Op::Register`]), carried as a command.
    Write(Op),
}

impl ClientOp {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            ClientOp::Get { key } => key,
            ClientOp::Write(op) => op.key(),
        }
    }

    /// Whether it is a read.
    pub fn is_read(&self) -> bool {
        matches!(self, ClientOp::Get { .. })
    }

    /// Whether it is a session registration (no key; not checked for
    /// linearizability).
    pub fn is_register(&self) -> bool {
        matches!(self, ClientOp::Write(Op::Register))
    }

    /// Whether it changes keys (every write but a registration).
    pub fn is_write(&self) -> bool {
        matches!(self, ClientOp::Write(op) if *op != Op::Register)
    }
}

impl std::fmt::Display for ClientOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientOp::Get { key } => write!(f, "get({key})"),
            ClientOp::Write(Op::Put { key, value }) => write!(f, "put({key}, {value})"),
            ClientOp::Write(Op::Delete { key }) => write!(f, "delete({key})"),
            ClientOp::Write(Op::Cas {
                key,
                expected,
                value,
            }) => write!(f, "cas({key}, {expected:?} -> {value:?})"),
            ClientOp::Write(Op::Register) => f.write_str("register"),
            ClientOp::Write(Op::PutIf {
                key,
                value,
                condition,
            }) => write!(f, "put({key}, {value}) if {}", ShowCondition(*condition)),
            ClientOp::Write(Op::DeleteIf { key, condition }) => {
                write!(f, "delete({key}) if {}", ShowCondition(*condition))
            }
            ClientOp::Write(Op::DeletePrefix { prefix }) => write!(f, "delete-prefix({prefix})"),
            ClientOp::Write(Op::Auth(change)) => write!(f, "auth({change:?})"),
            ClientOp::Write(Op::AsUser { user, op, .. }) => {
                write!(f, "as {user}: {}", ClientOp::Write((**op).clone()))
            }
        }
    }
}

struct ShowCondition(Condition);

impl std::fmt::Display for ShowCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Condition::ModIndex(i) => write!(f, "index {i}"),
            Condition::Absent => f.write_str("absent"),
            Condition::Exists => f.write_str("exists"),
        }
    }
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutput {
    /// A read's value.
    Value(Option<String>),
    /// A write's result from the state machine.
    Write(OpResult),
}

impl std::fmt::Display for OpOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpOutput::Value(v) => write!(f, "{v:?}"),
            OpOutput::Write(OpResult::Put { prev } | OpResult::Delete { prev }) => {
                write!(f, "ok (prev {prev:?})")
            }
            OpOutput::Write(OpResult::Cas { swapped, prev }) => {
                write!(f, "swapped={swapped} (prev {prev:?})")
            }
            OpOutput::Write(OpResult::Stale) => f.write_str("stale"),
            OpOutput::Write(OpResult::SeqReused) => f.write_str("sequence number reused"),
            OpOutput::Write(OpResult::SessionExpired) => f.write_str("session expired"),
            OpOutput::Write(OpResult::Registered { client_id }) => {
                write!(f, "registered as client {client_id}")
            }
            OpOutput::Write(OpResult::ConditionFailed { mod_index }) => {
                write!(f, "condition failed (index {mod_index:?})")
            }
            OpOutput::Write(OpResult::DeletedPrefix { deleted }) => {
                write!(f, "deleted {deleted}")
            }
            OpOutput::Write(OpResult::PermissionDenied(denied)) => write!(f, "denied: {denied}"),
            OpOutput::Write(OpResult::AuthChanged { revision }) => {
                write!(f, "auth revision {revision}")
            }
            OpOutput::Write(OpResult::AuthRefused(e)) => write!(f, "auth refused: {e}"),
        }
    }
}

/// Where an operation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still waiting for an answer.
    Pending,
    /// Answered.
    Ok(OpOutput),
    /// Abandoned without an answer: a write may or may not have taken
    /// effect; a read is simply ignored.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Its position in [`History::ops`].
    pub id: usize,
    /// The simulated client that issued it (its number in the run, not a
    /// session id).
    pub client: u64,
    /// What was asked.
    pub op: ClientOp,
    /// The write's `(client_id, seq)` sequence number (0 for reads,
    /// registrations and writes without a session).
    pub seq: u64,
    /// The session id the write was sent with (0: none; always 0 for reads
    /// and registrations).
    pub client_id: u64,
    /// When it was invoked.
    pub invoked_at: Time,
    /// Its place in the order of client events.
    pub invoke_order: u64,
    /// When it completed or was abandoned.
    pub completed_at: Option<Time>,
    /// Its place in the order of client events.
    pub complete_order: Option<u64>,
    /// The node that answered.
    pub served_by: Option<NodeId>,
    /// What the answer told of a log index: for a write, the entry that
    /// applied it (a put's modification index of its key); for a read of a
    /// present key, the key's modification index. `None`: not reported.
    pub index: Option<Index>,
    /// What came back.
    pub outcome: Outcome,
}

/// The client operations of a run, in invocation order: all of them, or,
/// once [`History::forget_before`] was called, the newer ones (ids stay
/// those of the whole run).
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Operation>,
    /// The id of `ops[0]`: how many older operations were forgotten.
    first_id: usize,
    order: u64,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `client` invoked `op` at `now`; returns the operation's id.
    pub fn invoke(&mut self, client: u64, op: ClientOp, seq: u64, now: Time) -> usize {
        self.invoke_in_session(client, op, 0, seq, now)
    }

    /// [`History::invoke`] for a write sent with session `client_id`.
    pub fn invoke_in_session(
        &mut self,
        client: u64,
        op: ClientOp,
        client_id: u64,
        seq: u64,
        now: Time,
    ) -> usize {
        let id = self.first_id + self.ops.len();
        self.order += 1;
        self.ops.push(Operation {
            id,
            client,
            op,
            seq,
            client_id,
            invoked_at: now,
            invoke_order: self.order,
            completed_at: None,
            complete_order: None,
            served_by: None,
            index: None,
            outcome: Outcome::Pending,
        });
        id
    }

    /// Sets the session a write invoked before its session was known
    /// (the hand client's first write) is sent with.
    pub(crate) fn set_session(&mut self, id: usize, client_id: u64, seq: u64) {
        if let Some(op) = self.get_mut(id) {
            op.client_id = client_id;
            op.seq = seq;
        }
    }

    /// Records that operation `id` returned `output` (from `node`) at `now`.
    /// An operation that already finished is left alone.
    pub fn complete(&mut self, id: usize, output: OpOutput, node: Option<NodeId>, now: Time) {
        self.finish(id, Outcome::Ok(output), node, now);
    }

    /// [`History::complete`] with the log index the answer told
    /// ([`Operation::index`]).
    pub fn complete_with_index(
        &mut self,
        id: usize,
        output: OpOutput,
        index: Option<Index>,
        node: Option<NodeId>,
        now: Time,
    ) {
        if let Some(op) = self.get_mut(id).filter(|o| o.outcome == Outcome::Pending) {
            op.index = index;
        }
        self.finish(id, Outcome::Ok(output), node, now);
    }

    /// Records that operation `id` was abandoned at `now`.
    pub fn give_up(&mut self, id: usize, now: Time) {
        self.finish(id, Outcome::Unknown, None, now);
    }

    fn finish(&mut self, id: usize, outcome: Outcome, node: Option<NodeId>, now: Time) {
        self.order += 1;
        let order = self.order;
        if let Some(op) = self.get_mut(id) {
            if op.outcome == Outcome::Pending {
                op.outcome = outcome;
                op.served_by = node;
                op.completed_at = Some(now);
                op.complete_order = Some(order);
            }
        }
    }

    fn get_mut(&mut self, id: usize) -> Option<&mut Operation> {
        let i = id.checked_sub(self.first_id)?;
        self.ops.get_mut(i)
    }

    /// The operations kept, by id: all of them unless some were forgotten
    /// ([`History::first_id`] is the first one's id).
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// Operation `id`, unless it was forgotten.
    pub fn get(&self, id: usize) -> Option<&Operation> {
        self.ops.get(id.checked_sub(self.first_id)?)
    }

    /// The operations kept from id `id` on.
    pub fn ops_from(&self, id: usize) -> impl Iterator<Item = &Operation> {
        self.ops.iter().skip(id.saturating_sub(self.first_id))
    }

    /// The id of the oldest operation kept.
    pub fn first_id(&self) -> usize {
        self.first_id
    }

    /// Forgets the operations with ids below `id` (the checkers have read
    /// them); later ids are unchanged.
    pub fn forget_before(&mut self, id: usize) {
        let n = id.saturating_sub(self.first_id).min(self.ops.len());
        self.ops.drain(..n);
        self.first_id += n;
    }

    /// The number of operations invoked in the run.
    pub fn len(&self) -> usize {
        self.first_id + self.ops.len()
    }

    /// Whether no operation was invoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
