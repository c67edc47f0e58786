//! Simulated clients. Each has one operation at a time: it sends it to the
//! node it believes leads (or a random one), follows "not the leader, try
//! N" redirects, retries a write with the same `(client_id, seq)` after a
//! refusal, a lost proposal or a silent node, and abandons the operation
//! after [`super::ClientConfig::op_timeout`] (a write's outcome is then
//! unknown).
//!
//! Sessions (thesis §6.3): a client's writes go through a [`Session`]. A
//! session with ids registers first ([`crate::kv::Op::Register`], through
//! the replica like any write; the answer is its client id), numbers its
//! writes 1, 2, 3, ..., and registers again when a write comes back
//! `SessionExpired` (the state machine forgot it). A pipelining client is
//! several clients (lanes) sharing one session: they have several writes
//! outstanding with increasing numbers, so a late retry of an older number
//! meets a newer one already applied (`Stale`, never applied twice). A
//! session without ids sends client id 0: its writes are applied each time
//! they are committed, so such a client sends a write again only while no
//! node has accepted it, or after a node proved it was not applied; once
//! it may be in the log and no answer comes, its outcome is unknown.
//!
//! The hand client ([`super::Cluster::submit`]) behaves the same way but
//! draws no operations of its own: it carries out the ones given to it, one
//! at a time, and is otherwise done. It registers its session before its
//! first write (the write waits, already invoked in the history).

use std::collections::BTreeMap;

use super::config::ClientConfig;
use super::history::ClientOp;
use super::Time;
use crate::kv::{Condition, Op};
use crate::rng::Rng;
use crate::types::{Index, NodeId};

/// The operation a client is working on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Current {
    pub op_id: usize,
    pub op: ClientOp,
    /// The session id its attempts carry (0: none).
    pub client_id: u64,
    pub seq: u64,
    pub deadline: Time,
    pub attempts: u32,
    /// A node accepted an attempt and has not proved it unapplied: the
    /// write may be in the log (what forbids resending a write without a
    /// session).
    pub maybe_in_log: bool,
}

impl Current {
    /// An operation about to make its first attempt.
    pub fn new(op_id: usize, op: ClientOp, client_id: u64, seq: u64, deadline: Time) -> Self {
        Current {
            op_id,
            op,
            client_id,
            seq,
            deadline,
            attempts: 0,
            maybe_in_log: false,
        }
    }
}

/// The session the writes of one client (all lanes of a pipelining client)
/// go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// Whether its writes carry a client id at all.
    pub with_ids: bool,
    /// The client id from its newest registration; `None` before the first
    /// and after the state machine forgot it.
    pub client_id: Option<u64>,
    /// One of its lanes is registering.
    pub registering: bool,
    next_seq: u64,
}

impl Session {
    pub fn new(with_ids: bool) -> Self {
        Session {
            with_ids,
            client_id: None,
            registering: false,
            next_seq: 1,
        }
    }

    /// Whether a write must wait for a registration.
    pub fn needs_registration(&self) -> bool {
        self.with_ids && self.client_id.is_none()
    }

    /// A registration answered: the new id, numbers from 1 again.
    pub fn registered(&mut self, client_id: u64) {
        self.client_id = Some(client_id);
        self.registering = false;
        self.next_seq = 1;
    }

    /// A write sent with `client_id` came back `SessionExpired`: the
    /// session registers again (unless a lane already did).
    pub fn expired(&mut self, client_id: u64) {
        if self.client_id == Some(client_id) {
            self.client_id = None;
        }
    }

    /// The `(client_id, seq)` of its next write (`(0, 0)` without ids).
    pub fn take_seq(&mut self) -> (u64, u64) {
        match self.client_id {
            Some(id) if self.with_ids => {
                let seq = self.next_seq;
                self.next_seq += 1;
                (id, seq)
            }
            _ => (0, 0),
        }
    }
}

/// Where a client stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Starts its next operation at the given time.
    Idle(Time),
    /// Sent to `node`; retries elsewhere at `timeout`.
    Sent {
        node: NodeId,
        ctx: u64,
        timeout: Time,
    },
    /// Sends again at the given time, to `node` if given.
    Retry(Time, Option<NodeId>),
    /// Has nothing more to do.
    Done,
}

/// One client.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    /// Its number in the run (the `client` of its history operations).
    pub id: u64,
    /// The index of its session in the cluster's sessions.
    pub session: usize,
    /// Numbers its written values (`c<id>.<n>`), unique in the run.
    next_value: u64,
    pub leader_hint: Option<NodeId>,
    pub current: Option<Current>,
    pub phase: Phase,
    /// The last value it saw per key, to write meaningful compare-and-sets.
    seen: BTreeMap<String, Option<String>>,
    /// The last two modification indexes it learned per key (newest
    /// first), to write conditional writes that mostly name the current
    /// index and sometimes a stale one.
    seen_index: BTreeMap<String, (Index, Index)>,
    /// The hand client: operations come from [`super::Cluster::submit`].
    pub by_hand: bool,
    /// The hand client's write that waits for its registration: history
    /// id, operation, the node to ask first, deadline.
    pub queued: Option<(usize, ClientOp, NodeId, Time)>,
}

/// What the dashboard sees of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// Its number in the run (not a session id).
    pub id: u64,
    /// The history id and text of the operation in progress.
    pub current: Option<(usize, String)>,
    /// The node it waits on, if any.
    pub waiting_on: Option<NodeId>,
    /// The leader it believes in.
    pub leader_hint: Option<NodeId>,
    /// Attempts made for the current operation.
    pub attempts: u32,
    /// Whether this is the hand client (its operations are given to it).
    pub by_hand: bool,
}

impl Client {
    pub fn new(id: u64, session: usize, start: Time) -> Self {
        Client {
            id,
            session,
            next_value: 1,
            leader_hint: None,
            current: None,
            phase: Phase::Idle(start),
            seen: BTreeMap::new(),
            seen_index: BTreeMap::new(),
            by_hand: false,
            queued: None,
        }
    }

    /// The hand client: idle (done) until it is given an operation.
    pub fn by_hand(id: u64, session: usize) -> Self {
        Client {
            phase: Phase::Done,
            by_hand: true,
            ..Client::new(id, session, 0)
        }
    }

    /// Where it goes once an operation ends: its next operation after
    /// `think`, or, for the hand client, nothing until it is given one.
    pub fn rest(&mut self, next_at: Time) {
        self.phase = if self.by_hand {
            Phase::Done
        } else {
            Phase::Idle(next_at)
        };
    }

    /// When it wants to act next.
    pub fn wake_at(&self) -> Option<Time> {
        match self.phase {
            Phase::Idle(t) | Phase::Retry(t, _) => Some(t),
            Phase::Sent { timeout, .. } => Some(timeout),
            Phase::Done => None,
        }
    }

    pub fn view(&self) -> ClientView {
        ClientView {
            id: self.id,
            current: self.current.as_ref().map(|c| (c.op_id, c.op.to_string())),
            waiting_on: match self.phase {
                Phase::Sent { node, .. } => Some(node),
                _ => None,
            },
            leader_hint: self.leader_hint,
            attempts: self.current.as_ref().map_or(0, |c| c.attempts),
            by_hand: self.by_hand,
        }
    }

    /// Draws its next operation.
    pub fn next_op(&mut self, cfg: &ClientConfig, rng: &mut Rng) -> ClientOp {
        let key = format!("k{}", rng.range(0, cfg.keys.max(1) as u64));
        let total: u32 = cfg.mix.iter().sum();
        let mut roll = rng.range(0, total.max(1) as u64) as u32;
        let mut kind = 0;
        while kind < 3 && roll >= cfg.mix[kind] {
            roll -= cfg.mix[kind];
            kind += 1;
        }
        if kind == 0 {
            return ClientOp::Get { key };
        }
        let value = format!("c{}.{}", self.id, self.next_value);
        self.next_value += 1;
        if cfg.conditional > 0 && rng.range(0, 100) < u64::from(cfg.conditional) {
            return ClientOp::Write(self.conditional_op(key, value, rng));
        }
        let op = match kind {
            1 => Op::Put { key, value },
            2 => Op::Delete { key },
            _ => {
                let expected = if rng.chance(0.7) {
                    self.seen.get(&key).cloned().flatten()
                } else {
                    None
                };
                let value = (!rng.chance(0.1)).then_some(value);
                Op::Cas {
                    key,
                    expected,
                    value,
                }
            }
        };
        ClientOp::Write(op)
    }

    /// A conditional put or delete, a create-only put, a put on an
    /// existing key, or a prefix delete (of the key's own prefix, which
    /// takes `k1` and `k10`..., or now and then of every key).
    fn conditional_op(&mut self, key: String, value: String, rng: &mut Rng) -> Op {
        let index = match self.seen_index.get(&key) {
            // Mostly the newest index it learned, sometimes the one before.
            Some(&(newest, older)) => {
                if rng.chance(0.8) {
                    newest
                } else {
                    older
                }
            }
            None => rng.range(1, 50),
        };
        match rng.range(0, 10) {
            0..=3 => Op::PutIf {
                key,
                value,
                condition: Condition::ModIndex(index),
            },
            4 | 5 => Op::PutIf {
                key,
                value,
                condition: Condition::Absent,
            },
            6 => Op::PutIf {
                key,
                value,
                condition: Condition::Exists,
            },
            7 | 8 => Op::DeleteIf {
                key,
                condition: Condition::ModIndex(index),
            },
            _ => Op::DeletePrefix {
                prefix: if rng.chance(0.8) { key } else { "k".into() },
            },
        }
    }

    /// Remembers what it learned about a key's value.
    pub fn saw(&mut self, key: &str, value: Option<String>) {
        self.seen.insert(key.to_string(), value);
    }

    /// Remembers a modification index it learned for a key.
    pub fn saw_index(&mut self, key: &str, index: Index) {
        let slot = self
            .seen_index
            .entry(key.to_string())
            .or_insert((index, index));
        if slot.0 != index {
            *slot = (index, slot.0);
        }
    }
}
