//! Simulated clients. Each has one operation at a time: it sends it to the
//! node it believes leads (or a random one), follows "not the leader, try
//! N" redirects, retries a write with the same `(client_id, seq)` after a
//! refusal, a lost proposal or a silent node, and abandons the operation
//! after [`super::ClientConfig::op_timeout`] (a write's outcome is then
//! unknown).
//!
//! The hand client ([`super::Cluster::submit`]) behaves the same way but
//! draws no operations of its own: it carries out the ones given to it, one
//! at a time, and is otherwise done.

use std::collections::BTreeMap;

use super::config::ClientConfig;
use super::history::ClientOp;
use super::Time;
use crate::kv::Op;
use crate::rng::Rng;
use crate::types::NodeId;

/// The ids of one client's successive sessions differ by this much
/// ([`Client::new_session`]); the first is its slot + 1.
pub(crate) const SESSION_STRIDE: u64 = 1 << 32;

/// The slot (index among the clients) of client id `id`.
pub(crate) fn slot(id: u64) -> usize {
    (id % SESSION_STRIDE) as usize - 1
}

/// The operation a client is working on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Current {
    pub op_id: usize,
    pub op: ClientOp,
    pub seq: u64,
    pub deadline: Time,
    pub attempts: u32,
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
    pub id: u64,
    next_seq: u64,
    pub leader_hint: Option<NodeId>,
    pub current: Option<Current>,
    pub phase: Phase,
    /// The last value it saw per key, to write meaningful compare-and-sets.
    seen: BTreeMap<String, Option<String>>,
    /// The hand client: operations come from [`super::Cluster::submit`].
    pub by_hand: bool,
}

/// What the dashboard sees of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// Its id (the `client_id` of its writes).
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
    pub fn new(id: u64, start: Time) -> Self {
        Client {
            id,
            next_seq: 1,
            leader_hint: None,
            current: None,
            phase: Phase::Idle(start),
            seen: BTreeMap::new(),
            by_hand: false,
        }
    }

    /// The hand client: idle (done) until it is given an operation.
    pub fn by_hand(id: u64) -> Self {
        Client {
            phase: Phase::Done,
            by_hand: true,
            ..Client::new(id, 0)
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

    /// Starts a new session under a new id in the same slot: the state
    /// machine forgot its session or never opened it (its first write was
    /// abandoned and never applied), so it refuses every later write
    /// (`SessionExpired`); a client then starts over with a new id (thesis
    /// §6.3).
    pub fn new_session(&mut self) {
        self.id += SESSION_STRIDE;
        self.next_seq = 1;
    }

    /// The sequence number of its next write.
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
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

    /// Draws its next operation; returns it with its write sequence number.
    pub fn next_op(&mut self, cfg: &ClientConfig, rng: &mut Rng) -> (ClientOp, u64) {
        let key = format!("k{}", rng.range(0, cfg.keys.max(1) as u64));
        let total: u32 = cfg.mix.iter().sum();
        let mut roll = rng.range(0, total.max(1) as u64) as u32;
        let mut kind = 0;
        while kind < 3 && roll >= cfg.mix[kind] {
            roll -= cfg.mix[kind];
            kind += 1;
        }
        if kind == 0 {
            return (ClientOp::Get { key }, 0);
        }
        let seq = self.take_seq();
        let value = format!("c{}.{}", self.id, seq);
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
        (ClientOp::Write(op), seq)
    }

    /// Remembers what it learned about a key's value.
    pub fn saw(&mut self, key: &str, value: Option<String>) {
        self.seen.insert(key.to_string(), value);
    }
}
