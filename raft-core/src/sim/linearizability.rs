//! A linearizability checker for key-value histories: the Wing & Gong
//! search with Lowe's memoization, as Porcupine implements it.
//!
//! The history is split per key (P-compositionality: a history is
//! linearizable iff each key's sub-history is). For one key, the search
//! walks the invoke/return events in real-time order, tries to linearize a
//! pending call (apply it to the model state and check its output),
//! backtracks when it meets the return of an operation it has not placed,
//! and remembers every `(set of linearized operations, state)` it has seen
//! so that no configuration is explored twice.
//!
//! Operations whose outcome is unknown (abandoned writes) may take effect at
//! any point after their invocation, or never: their return is placed after
//! every other event and the search succeeds once every *known* operation
//! is placed. Abandoned reads are ignored.
//!
//! The model's state of a key is its value and its modification index (the
//! log index of the write that last set it). A write's index is known from
//! its answer ([`Operation::index`]); after a write whose outcome or index
//! is unknown, the index is "any", which every condition and every read
//! may match (the first answer that names it pins it down). That keeps the
//! check sound: it never rejects a history the store could produce, while a
//! conditional write that succeeds against an index the key no longer has,
//! or fails against the one it has, is caught. A prefix delete is checked
//! in the history of every key it covers, as a delete that happened within
//! its call (when answered) or may have (when not); the number it reports
//! is not checked (that would need the keys together).

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::history::{ClientOp, OpOutput, Operation, Outcome};
use crate::kv::{Condition, Op, OpResult};

/// The default bound on search steps per key.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

/// Why a history is not (shown to be) linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinearizabilityError {
    /// No order of the key's operations explains what they returned.
    NotLinearizable {
        /// The key.
        key: String,
        /// Ids of the key's operations that were checked.
        ops: Vec<usize>,
        /// The longest sequence of operations (ids) the search could
        /// linearize, in order.
        longest_prefix: Vec<usize>,
        /// The operation whose return the search could not get past at
        /// that point.
        stuck_at: Option<usize>,
    },
    /// The search gave up after its step budget.
    Inconclusive {
        /// The key.
        key: String,
        /// The number of the key's operations.
        ops: usize,
    },
}

impl std::fmt::Display for LinearizabilityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinearizabilityError::NotLinearizable {
                key,
                ops,
                longest_prefix,
                stuck_at,
            } => {
                write!(
                    f,
                    "history of key {key:?} is not linearizable ({} ops); the longest \
                     linearizable prefix has {} ops",
                    ops.len(),
                    longest_prefix.len()
                )?;
                if let Some(op) = stuck_at {
                    write!(f, "; no order explains op #{op}")?;
                }
                Ok(())
            }
            LinearizabilityError::Inconclusive { key, ops } => {
                write!(f, "linearizability of key {key:?} ({ops} ops) is undecided: search budget exhausted")
            }
        }
    }
}

/// What a successful check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (abandoned reads excluded).
    pub ops: usize,
    /// Abandoned writes (they may have happened or not).
    pub unknown: usize,
    /// Search steps over all keys.
    pub steps: u64,
}

/// Checks that the history is linearizable with respect to a map of
/// `String -> String` where each key starts absent.
pub fn check_linearizability(ops: &[Operation]) -> Result<CheckStats, LinearizabilityError> {
    check_with_budget(ops, DEFAULT_BUDGET)
}

/// [`check_linearizability`] with a bound on search steps per key.
pub fn check_with_budget(
    ops: &[Operation],
    budget: u64,
) -> Result<CheckStats, LinearizabilityError> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    let mut prefix_deletes = Vec::new();
    for op in ops {
        if op.op.is_read() && !matches!(op.outcome, Outcome::Ok(_)) {
            continue; // an abandoned read returned nothing to explain
        }
        if op.op.is_register() {
            continue; // opens a session; touches no key
        }
        if let ClientOp::Write(Op::DeletePrefix { prefix }) = &op.op {
            prefix_deletes.push((prefix.as_str(), op));
            continue;
        }
        by_key.entry(op.op.key()).or_default().push(op);
    }
    // A prefix delete belongs to the history of every key it covers.
    for (key, key_ops) in by_key.iter_mut() {
        for (prefix, op) in &prefix_deletes {
            if key.starts_with(prefix) {
                key_ops.push(op);
            }
        }
    }
    let mut stats = CheckStats::default();
    for (key, key_ops) in by_key {
        let part = Partition::build(&key_ops);
        stats.keys += 1;
        stats.ops += key_ops.len();
        stats.unknown += part.ops.iter().filter(|o| o.out.is_none()).count();
        match part.search(budget) {
            Search::Linearizable { steps } => stats.steps += steps,
            Search::Violation {
                longest_prefix,
                stuck_at,
            } => {
                return Err(LinearizabilityError::NotLinearizable {
                    key: key.to_string(),
                    ops: key_ops.iter().map(|o| o.id).collect(),
                    longest_prefix: longest_prefix.iter().map(|&i| part.ops[i].id).collect(),
                    stuck_at: stuck_at.map(|i| part.ops[i].id),
                })
            }
            Search::OutOfBudget => {
                return Err(LinearizabilityError::Inconclusive {
                    key: key.to_string(),
                    ops: key_ops.len(),
                })
            }
        }
    }
    Ok(stats)
}

/// A value, interned (or, in the online check, hashed): `None` is "key
/// absent".
pub(crate) type Val = Option<u64>;

/// A modification index as the model knows it: 0 is "any" (written by a
/// write whose index is unknown; log indexes start at 1).
pub(crate) type Idx = u64;

/// The model's state of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct State {
    val: Val,
    /// Meaningless (0) while the key is absent.
    idx: Idx,
}

impl State {
    pub(crate) const ABSENT: State = State { val: None, idx: 0 };

    fn new(val: Val, idx: Idx) -> Self {
        State {
            val,
            idx: if val.is_some() { idx } else { 0 },
        }
    }

    /// Whether `condition` may hold for the key in this state.
    fn may_hold(self, condition: Condition) -> bool {
        match condition {
            Condition::ModIndex(n) => self.val.is_some() && (self.idx == 0 || self.idx == n),
            Condition::Absent => self.val.is_none(),
            Condition::Exists => self.val.is_some(),
        }
    }

    /// The state once an answer showed the key's index is `idx` (`None`:
    /// absent), or `None` when the state contradicts it.
    fn pinned(self, idx: Option<Idx>) -> Option<State> {
        match idx {
            None => self.val.is_none().then_some(self),
            Some(i) if self.val.is_some() && (self.idx == 0 || self.idx == i) => {
                Some(State::new(self.val, i))
            }
            Some(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModelOp {
    Get,
    Put(Val),
    Delete,
    Cas {
        expected: Val,
        value: Val,
    },
    PutIf(Val, Condition),
    DeleteIf(Condition),
    /// A prefix delete that covers the key.
    DeletePrefix,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelOut {
    /// A read's value and the index it reported (0: none).
    Get(Val, Idx),
    Prev(Val),
    Cas {
        swapped: bool,
        prev: Val,
    },
    /// A conditional write refused, with the key's index then.
    Failed(Option<Idx>),
    /// A prefix delete answered.
    Done,
}

#[derive(Clone, Debug)]
pub(crate) struct PartOp {
    /// History id.
    pub(crate) id: usize,
    pub(crate) op: ModelOp,
    /// `None`: outcome unknown.
    pub(crate) out: Option<ModelOut>,
    /// For an answered write, the index of the entry that applied it (0:
    /// not reported).
    pub(crate) index: Idx,
    pub(crate) call: u64,
    pub(crate) ret: Option<u64>,
    /// The session the write was sent with (0: none) and its number.
    pub(crate) client_id: u64,
    pub(crate) seq: u64,
}

impl PartOp {
    /// The model's transition: the new state, or `None` when the output
    /// contradicts the state (or does not fit the operation at all).
    pub(crate) fn apply(&self, s: State) -> Option<State> {
        // The state a write that set `v` leaves (an unknown outcome: any index).
        let set = |v: Val| State::new(v, if self.out.is_some() { self.index } else { 0 });
        match (self.op, self.out) {
            (ModelOp::Get, Some(ModelOut::Get(v, i))) => {
                if s.val != v {
                    return None;
                }
                if v.is_some() && i != 0 {
                    return s.pinned(Some(i));
                }
                Some(s)
            }
            (ModelOp::Get, None) => Some(s),
            (ModelOp::Put(v), Some(ModelOut::Prev(p))) => (s.val == p).then(|| set(v)),
            (ModelOp::Put(v), None) => Some(set(v)),
            (ModelOp::Delete, Some(ModelOut::Prev(p))) => (s.val == p).then_some(State::ABSENT),
            (ModelOp::Delete, None) => Some(State::ABSENT),
            (ModelOp::Cas { expected, value }, Some(ModelOut::Cas { swapped, prev })) => {
                let ok = prev == s.val && swapped == (s.val == expected);
                ok.then(|| if swapped { set(value) } else { s })
            }
            (ModelOp::Cas { expected, value }, None) => {
                Some(if s.val == expected { set(value) } else { s })
            }
            (ModelOp::PutIf(v, c), Some(ModelOut::Prev(p))) => {
                (s.val == p && s.may_hold(c)).then(|| set(v))
            }
            (ModelOp::DeleteIf(c), Some(ModelOut::Prev(p))) => {
                (s.val == p && s.may_hold(c)).then_some(State::ABSENT)
            }
            (ModelOp::PutIf(_, c) | ModelOp::DeleteIf(c), Some(ModelOut::Failed(current))) => {
                // The reported index must be the key's, and fail the condition.
                (!c.holds(current)).then_some(())?;
                s.pinned(current)
            }
            // Unknown: applied when it can hold (never applied is the
            // operation left unplaced).
            (ModelOp::PutIf(v, c), None) => Some(if s.may_hold(c) { set(v) } else { s }),
            (ModelOp::DeleteIf(c), None) => Some(if s.may_hold(c) { State::ABSENT } else { s }),
            (ModelOp::DeletePrefix, Some(ModelOut::Done) | None) => Some(State::ABSENT),
            // An answer of another kind than the operation: nothing explains it.
            _ => None,
        }
    }
}

impl PartOp {
    /// The model's view of history operation `o` (`None`: not a key
    /// operation); `vals` names each value.
    pub(crate) fn of(o: &Operation, vals: &mut dyn FnMut(&str) -> u64) -> Option<PartOp> {
        fn val(vals: &mut dyn FnMut(&str) -> u64, v: &Option<String>) -> Val {
            v.as_ref().map(|s| vals(s))
        }
        let op = match &o.op {
            ClientOp::Get { .. } => ModelOp::Get,
            ClientOp::Write(Op::Put { value, .. }) => ModelOp::Put(Some(vals(value))),
            ClientOp::Write(Op::Delete { .. }) => ModelOp::Delete,
            ClientOp::Write(Op::Cas {
                expected, value, ..
            }) => ModelOp::Cas {
                expected: val(vals, expected),
                value: val(vals, value),
            },
            ClientOp::Write(Op::PutIf {
                value, condition, ..
            }) => ModelOp::PutIf(Some(vals(value)), *condition),
            ClientOp::Write(Op::DeleteIf { condition, .. }) => ModelOp::DeleteIf(*condition),
            ClientOp::Write(Op::DeletePrefix { .. }) => ModelOp::DeletePrefix,
            // Not key operations (the simulator generates none of the
            // auth ones).
            ClientOp::Write(Op::Register | Op::Auth(_) | Op::AsUser { .. }) => return None,
        };
        let index = o.index.unwrap_or(0);
        let out = match &o.outcome {
            Outcome::Ok(OpOutput::Value(v)) => Some(ModelOut::Get(val(vals, v), index)),
            Outcome::Ok(OpOutput::Write(OpResult::Put { prev } | OpResult::Delete { prev })) => {
                Some(ModelOut::Prev(val(vals, prev)))
            }
            Outcome::Ok(OpOutput::Write(OpResult::Cas { swapped, prev })) => Some(ModelOut::Cas {
                swapped: *swapped,
                prev: val(vals, prev),
            }),
            Outcome::Ok(OpOutput::Write(OpResult::ConditionFailed { mod_index })) => {
                Some(ModelOut::Failed(*mod_index))
            }
            Outcome::Ok(OpOutput::Write(OpResult::DeletedPrefix { .. })) => Some(ModelOut::Done),
            // A stale answer or no answer: the write may or may not
            // have taken effect (a refused retry's first attempt may
            // have been applied before its session was forgotten).
            Outcome::Ok(OpOutput::Write(
                OpResult::Stale
                | OpResult::SeqReused
                | OpResult::SessionExpired
                | OpResult::Registered { .. }
                | OpResult::PermissionDenied(_)
                | OpResult::AuthChanged { .. }
                | OpResult::AuthRefused(_),
            ))
            | Outcome::Pending
            | Outcome::Unknown => None,
        };
        Some(PartOp {
            id: o.id,
            op,
            out,
            index,
            call: o.invoke_order,
            client_id: o.client_id,
            seq: o.seq,
            ret: if out.is_some() {
                o.complete_order
            } else {
                None
            },
        })
    }
}

struct Partition {
    ops: Vec<PartOp>,
    /// For each abandoned put: the operations that observe its value (an
    /// output showing it, or a compare-and-set expecting it).
    observers: Vec<Vec<usize>>,
}

enum Search {
    Linearizable {
        steps: u64,
    },
    Violation {
        longest_prefix: Vec<usize>,
        stuck_at: Option<usize>,
    },
    OutOfBudget,
}

#[derive(Default)]
struct Interner(BTreeMap<String, u64>);

impl Interner {
    fn id(&mut self, s: &str) -> u64 {
        let next = self.0.len() as u64;
        *self.0.entry(s.to_string()).or_insert(next)
    }
}

impl Partition {
    fn build(ops: &[&Operation]) -> Self {
        let mut vals = Interner::default();
        let mut part = Vec::with_capacity(ops.len());
        for o in ops {
            part.extend(PartOp::of(o, &mut |v| vals.id(v)));
        }
        let observers = observers(&part);
        Partition {
            ops: part,
            observers,
        }
    }

    /// Whether linearizing abandoned operation `i` (taking the state from
    /// `state` to `next`) at this point can help at all. Two dominance rules
    /// keep the search from trying every subset of abandoned writes:
    /// * a no-op (`next == state`) can always be placed later instead;
    /// * a put whose value every observer has already been placed can only
    ///   be overwritten unseen, so leaving it out reaches the same states
    ///   (a conditional put that applies is such a put).
    fn worth_placing(&self, i: usize, state: State, next: State, linearized: &[u64]) -> bool {
        if self.ops[i].out.is_some() {
            return true;
        }
        if next == state {
            return false;
        }
        match self.ops[i].op {
            // A conditional put that applies is a put of its value.
            ModelOp::Put(_) | ModelOp::PutIf(..) => {
                self.observers[i].iter().any(|&j| !bit(linearized, j))
            }
            _ => true,
        }
    }

    fn search(&self, budget: u64) -> Search {
        let ops = &self.ops;
        let mut list = EventList::new(ops);
        let words = ops.len().div_ceil(64).max(1);
        let mut linearized = vec![0u64; words];
        let mut seen: HashSet<(Vec<u64>, State), BuildHasherDefault<Fx>> = HashSet::default();
        // (event, state before it) for every call linearized so far.
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut state = State::ABSENT;
        let mut remaining = ops.iter().filter(|o| o.out.is_some()).count();
        let mut longest: Vec<usize> = Vec::new();
        let mut stuck_at = None;
        let mut entry = list.first();
        let mut steps = 0u64;
        while remaining > 0 {
            steps += 1;
            if steps > budget {
                return Search::OutOfBudget;
            }
            let is_call = entry != NIL && list.ev[entry].call;
            if is_call {
                let i = list.ev[entry].op;
                let next = ops[i]
                    .apply(state)
                    .filter(|&next| self.worth_placing(i, state, next, &linearized));
                if let Some(next) = next {
                    set_bit(&mut linearized, i, true);
                    if seen.insert((linearized.clone(), next)) {
                        stack.push((entry, state));
                        state = next;
                        list.lift(entry);
                        if ops[i].out.is_some() {
                            remaining -= 1;
                        }
                        if stack.len() > longest.len() {
                            longest = stack.iter().map(|&(e, _)| list.ev[e].op).collect();
                            stuck_at = None;
                        }
                        entry = list.first();
                        continue;
                    }
                    set_bit(&mut linearized, i, false);
                }
                entry = list.ev[entry].next;
            } else {
                // The return of an operation not yet linearized: this
                // branch is dead, undo the latest choice.
                if entry != NIL && stack.len() == longest.len() && stuck_at.is_none() {
                    stuck_at = Some(list.ev[entry].op);
                }
                let Some((top, prev_state)) = stack.pop() else {
                    return Search::Violation {
                        longest_prefix: longest,
                        stuck_at,
                    };
                };
                let i = list.ev[top].op;
                state = prev_state;
                set_bit(&mut linearized, i, false);
                list.unlift(top);
                if ops[i].out.is_some() {
                    remaining += 1;
                }
                entry = list.ev[top].next;
            }
        }
        Search::Linearizable { steps }
    }
}

/// For each abandoned put (or conditional put), the operations that
/// observe its value, or that the key being there at all may explain:
/// a conditional write that needs the key to exist (an index or `Exists`)
/// and did not fail, and one refused while the key existed (neither says
/// anything of the value). An abandoned conditional put counts only when
/// its own value is observed: otherwise it is pruned itself and needs
/// nothing; an abandoned conditional delete always counts.
fn observers(ops: &[PartOp]) -> Vec<Vec<usize>> {
    let mut by_value: BTreeMap<Val, Vec<usize>> = BTreeMap::new();
    for (j, o) in ops.iter().enumerate() {
        if let Some(ModelOut::Get(v, _) | ModelOut::Prev(v) | ModelOut::Cas { prev: v, .. }) = o.out
        {
            by_value.entry(v).or_default().push(j);
        }
        if let ModelOp::Cas { expected, .. } = o.op {
            by_value.entry(expected).or_default().push(j);
        }
    }
    let mut of_presence = Vec::new();
    for (j, o) in ops.iter().enumerate() {
        let needs_presence = match (o.op, o.out) {
            (_, Some(ModelOut::Failed(found))) => found.is_some(),
            (ModelOp::PutIf(v, c), None) => {
                c != Condition::Absent && by_value.get(&v).is_some_and(|seen| !seen.is_empty())
            }
            (ModelOp::PutIf(_, c) | ModelOp::DeleteIf(c), _) => c != Condition::Absent,
            _ => false,
        };
        if needs_presence {
            of_presence.push(j);
        }
    }
    ops.iter()
        .map(|o| match (o.out, o.op) {
            (None, ModelOp::Put(v) | ModelOp::PutIf(v, _)) => {
                let mut seen_by = by_value.get(&v).cloned().unwrap_or_default();
                seen_by.extend(&of_presence);
                seen_by
            }
            _ => Vec::new(),
        })
        .collect()
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

struct Event {
    op: usize,
    call: bool,
    /// For a call: its return event.
    matching: usize,
    prev: usize,
    next: usize,
}

/// The invoke/return events in real-time order as a doubly linked list,
/// from which linearized operations are lifted and put back (dancing links).
struct EventList {
    ev: Vec<Event>,
}

impl EventList {
    fn new(ops: &[PartOp]) -> Self {
        // (time, is_return, op): abandoned operations return "at infinity".
        let mut order: Vec<(u64, usize, bool)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            order.push((o.call, i, false));
            order.push((o.ret.unwrap_or(u64::MAX), i, true));
        }
        order.sort_unstable_by_key(|&(t, i, ret)| (t, ret, i));
        let mut ev = Vec::with_capacity(order.len() + 1);
        ev.push(Event {
            op: NIL,
            call: false,
            matching: NIL,
            prev: NIL,
            next: NIL,
        });
        let mut ret_pos = vec![NIL; ops.len()];
        for (pos, &(_, i, ret)) in order.iter().enumerate() {
            let idx = pos + 1;
            if ret {
                ret_pos[i] = idx;
            }
            ev.push(Event {
                op: i,
                call: !ret,
                matching: NIL,
                prev: idx - 1,
                next: if pos + 1 < order.len() { idx + 1 } else { NIL },
            });
        }
        ev[HEAD].next = if order.is_empty() { NIL } else { 1 };
        for e in ev.iter_mut().skip(1) {
            if e.call {
                e.matching = ret_pos[e.op];
            }
        }
        EventList { ev }
    }

    fn first(&self) -> usize {
        self.ev[HEAD].next
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.ev[e].prev, self.ev[e].next);
        self.ev[p].next = n;
        if n != NIL {
            self.ev[n].prev = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.ev[e].prev, self.ev[e].next);
        self.ev[p].next = e;
        if n != NIL {
            self.ev[n].prev = e;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        let ret = self.ev[call].matching;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Puts back the latest lifted call and its return.
    fn unlift(&mut self, call: usize) {
        let ret = self.ev[call].matching;
        self.relink(ret);
        self.relink(call);
    }
}

/// A small, fast, deterministic hasher for the memo table (FxHash).
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::frontier::frontier_verdict;
    use crate::sim::history::History;

    /// The whole-history check's verdict, after checking that the online
    /// check ([`crate::sim::LinearizabilityFrontier`]) reaches the same.
    fn check_both(h: &History) -> Result<CheckStats, LinearizabilityError> {
        let whole = check_linearizability(h.ops());
        let online = frontier_verdict(h);
        assert_eq!(
            whole.is_ok(),
            online.is_ok(),
            "whole {whole:?} vs online {online:?}"
        );
        whole
    }

    fn put(k: &str, v: &str) -> ClientOp {
        ClientOp::Write(Op::Put {
            key: k.into(),
            value: v.into(),
        })
    }

    fn get(k: &str) -> ClientOp {
        ClientOp::Get { key: k.into() }
    }

    fn prev(p: Option<&str>) -> OpOutput {
        OpOutput::Write(OpResult::Put {
            prev: p.map(Into::into),
        })
    }

    fn value(v: Option<&str>) -> OpOutput {
        OpOutput::Value(v.map(Into::into))
    }

    #[test]
    fn sequential_and_concurrent_history_is_linearizable() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.complete(a, prev(None), None, 1);
        // b and c overlap: c may read either the old or the new value.
        let b = h.invoke(1, put("x", "2"), 2, 2);
        let c = h.invoke(2, get("x"), 0, 3);
        h.complete(c, value(Some("2")), None, 4);
        h.complete(b, prev(Some("1")), None, 5);
        let d = h.invoke(2, get("x"), 0, 6);
        h.complete(d, value(Some("2")), None, 7);
        let stats = check_both(&h).unwrap();
        assert_eq!(stats.ops, 4);
    }

    #[test]
    fn stale_read_is_caught() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.complete(a, prev(None), None, 1);
        let b = h.invoke(1, put("x", "2"), 2, 2);
        h.complete(b, prev(Some("1")), None, 3);
        // Invoked after the second put completed, yet returns the first value.
        let c = h.invoke(2, get("x"), 0, 4);
        h.complete(c, value(Some("1")), None, 5);
        let err = check_both(&h).unwrap_err();
        match err {
            LinearizabilityError::NotLinearizable {
                key,
                stuck_at,
                longest_prefix,
                ..
            } => {
                assert_eq!(key, "x");
                assert_eq!(longest_prefix, vec![a, b]);
                assert_eq!(stuck_at, Some(c));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_write_may_explain_a_read() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.give_up(a, 10); // timed out: maybe applied, maybe not
        let b = h.invoke(2, get("x"), 0, 20);
        h.complete(b, value(Some("1")), None, 21);
        let c = h.invoke(2, get("x"), 0, 22);
        h.complete(c, value(Some("1")), None, 23);
        check_both(&h).unwrap();
    }

    #[test]
    fn unknown_write_may_never_happen_but_not_unhappen() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.give_up(a, 10);
        let b = h.invoke(2, get("x"), 0, 20);
        h.complete(b, value(None), None, 21);
        check_both(&h).unwrap();
        // Seen, then gone without any delete: impossible.
        let c = h.invoke(2, get("x"), 0, 22);
        h.complete(c, value(Some("1")), None, 23);
        let d = h.invoke(2, get("x"), 0, 24);
        h.complete(d, value(None), None, 25);
        assert!(check_both(&h).is_err());
    }

    #[test]
    fn a_read_cannot_see_a_write_invoked_after_it_returned() {
        let mut h = History::new();
        let r = h.invoke(2, get("x"), 0, 0);
        h.complete(r, value(Some("1")), None, 1);
        let w = h.invoke(1, put("x", "1"), 1, 2);
        h.complete(w, prev(None), None, 3);
        assert!(check_both(&h).is_err());
    }

    #[test]
    fn cas_and_delete_results_are_checked() {
        let cas = |e: Option<&str>, v: Option<&str>| {
            ClientOp::Write(Op::Cas {
                key: "x".into(),
                expected: e.map(Into::into),
                value: v.map(Into::into),
            })
        };
        let cas_out = |swapped, p: Option<&str>| {
            OpOutput::Write(OpResult::Cas {
                swapped,
                prev: p.map(Into::into),
            })
        };
        let mut h = History::new();
        let a = h.invoke(1, cas(None, Some("a")), 1, 0);
        h.complete(a, cas_out(true, None), None, 1);
        let b = h.invoke(1, cas(None, Some("b")), 2, 2);
        h.complete(b, cas_out(false, Some("a")), None, 3);
        let c = h.invoke(1, ClientOp::Write(Op::Delete { key: "x".into() }), 3, 4);
        h.complete(
            c,
            OpOutput::Write(OpResult::Delete {
                prev: Some("a".into()),
            }),
            None,
            5,
        );
        check_both(&h).unwrap();
        // A second cas that claims to have swapped from absent after the
        // first one succeeded, with no delete in between, is impossible.
        let mut h2 = History::new();
        let a = h2.invoke(1, cas(None, Some("a")), 1, 0);
        h2.complete(a, cas_out(true, None), None, 1);
        let b = h2.invoke(2, cas(None, Some("b")), 1, 2);
        h2.complete(b, cas_out(true, None), None, 3);
        assert!(check_both(&h2).is_err());
    }

    #[test]
    fn keys_are_independent() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.complete(a, prev(None), None, 1);
        let b = h.invoke(2, get("y"), 0, 2);
        h.complete(b, value(None), None, 3);
        let stats = check_both(&h).unwrap();
        assert_eq!(stats.keys, 2);
    }

    /// Many concurrent clients on one key with a few abandoned writes: the
    /// memoized search stays fast.
    #[test]
    fn large_concurrent_history_is_fast() {
        let mut rng = crate::rng::Rng::new(42);
        let mut h = History::new();
        let mut state: Option<String> = None;
        let clients = 8u64;
        let mut pending: Vec<Option<(usize, bool)>> = vec![None; clients as usize];
        let mut t = 0;
        let mut n = 0;
        // Operations take effect at their completion (a valid linearization
        // point); outputs are computed from the true sequential state.
        while n < 2_000 {
            t += 1;
            let c = rng.range(0, clients) as usize;
            match pending[c] {
                None => {
                    let write = rng.chance(0.5);
                    let op = if write {
                        put("x", &format!("v{n}"))
                    } else {
                        get("x")
                    };
                    pending[c] = Some((h.invoke(c as u64, op, n as u64, t), write));
                    n += 1;
                }
                Some((id, write)) => {
                    let abandon = write && rng.chance(0.02);
                    if abandon {
                        // Abandoned: it took effect half of the time.
                        if rng.chance(0.5) {
                            if let ClientOp::Write(Op::Put { value, .. }) = &h.ops()[id].op {
                                state = Some(value.clone());
                            }
                        }
                        h.give_up(id, t);
                    } else if write {
                        let ClientOp::Write(Op::Put { value, .. }) = h.ops()[id].op.clone() else {
                            unreachable!()
                        };
                        let p = state.replace(value);
                        h.complete(id, OpOutput::Write(OpResult::Put { prev: p }), None, t);
                    } else {
                        h.complete(id, OpOutput::Value(state.clone()), None, t);
                    }
                    pending[c] = None;
                }
            }
        }
        let stats = check_both(&h).unwrap();
        assert!(stats.ops >= 1_990);
        assert!(stats.steps < 1_000_000, "{stats:?}");
    }

    fn put_if(k: &str, v: &str, condition: Condition) -> ClientOp {
        ClientOp::Write(Op::PutIf {
            key: k.into(),
            value: v.into(),
            condition,
        })
    }

    fn failed(mod_index: Option<u64>) -> OpOutput {
        OpOutput::Write(OpResult::ConditionFailed { mod_index })
    }

    #[test]
    fn conditional_writes_are_checked_against_the_mod_index() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.complete_with_index(a, prev(None), Some(5), None, 1);
        // A stale index fails, naming the current one; the current succeeds.
        let b = h.invoke(1, put_if("x", "2", Condition::ModIndex(3)), 2, 2);
        h.complete_with_index(b, failed(Some(5)), Some(6), None, 3);
        let c = h.invoke(1, put_if("x", "2", Condition::ModIndex(5)), 3, 4);
        h.complete_with_index(c, prev(Some("1")), Some(7), None, 5);
        let d = h.invoke(2, get("x"), 0, 6);
        h.complete_with_index(d, value(Some("2")), Some(7), None, 7);
        check_both(&h).unwrap();
        // Succeeding with the index the key had before c: impossible.
        let mut bad = h.clone();
        let e = bad.invoke(1, put_if("x", "3", Condition::ModIndex(5)), 4, 8);
        bad.complete_with_index(e, prev(Some("2")), Some(9), None, 9);
        assert!(check_both(&bad).is_err());
        // A create-only put succeeding on an existing key: impossible.
        let mut bad = h.clone();
        let e = bad.invoke(1, put_if("x", "3", Condition::Absent), 4, 8);
        bad.complete_with_index(e, prev(Some("2")), Some(9), None, 9);
        assert!(check_both(&bad).is_err());
        // A read reporting another index than the write's: impossible.
        let mut bad = h;
        let e = bad.invoke(2, get("x"), 0, 8);
        bad.complete_with_index(e, value(Some("2")), Some(6), None, 9);
        assert!(check_both(&bad).is_err());
    }

    #[test]
    fn after_a_write_of_unknown_outcome_any_index_is_accepted_until_one_is_seen() {
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 1, 0);
        h.give_up(a, 1);
        let b = h.invoke(2, put_if("x", "2", Condition::ModIndex(40)), 1, 2);
        h.complete_with_index(b, failed(Some(12)), Some(13), None, 3);
        check_both(&h).unwrap();
        // Once 12 is seen, the key's index is 12 until it is written.
        let c = h.invoke(2, put_if("x", "2", Condition::ModIndex(11)), 2, 4);
        h.complete_with_index(c, prev(Some("1")), Some(14), None, 5);
        assert!(check_both(&h).is_err());
    }

    #[test]
    fn a_prefix_delete_empties_every_key_it_covers() {
        let mut h = History::new();
        let a = h.invoke(1, put("k1", "1"), 1, 0);
        h.complete_with_index(a, prev(None), Some(1), None, 1);
        let b = h.invoke(1, put("k2", "2"), 2, 2);
        h.complete_with_index(b, prev(None), Some(2), None, 3);
        let del = ClientOp::Write(Op::DeletePrefix { prefix: "k".into() });
        let c = h.invoke(1, del, 3, 4);
        let done = OpOutput::Write(OpResult::DeletedPrefix { deleted: 2 });
        h.complete_with_index(c, done, Some(3), None, 5);
        let d = h.invoke(2, get("k1"), 0, 6);
        h.complete(d, value(None), None, 7);
        check_both(&h).unwrap();
        let e = h.invoke(2, get("k2"), 0, 8);
        h.complete_with_index(e, value(Some("2")), Some(2), None, 9);
        assert!(check_both(&h).is_err());
    }

    /// A put whose value nobody saw may still be what a conditional write
    /// found there: it must be tried, not pruned.
    #[test]
    fn an_unseen_unknown_put_can_explain_a_put_if_exists() {
        let mut h = History::new();
        let a = h.invoke(1, get("x"), 0, 0);
        h.complete(a, value(None), None, 1);
        let b = h.invoke(1, put("x", "1"), 1, 2);
        h.give_up(b, 3);
        let c = h.invoke(2, put_if("x", "2", Condition::Exists), 1, 4);
        h.give_up(c, 5);
        let d = h.invoke(2, get("x"), 0, 6);
        h.complete_with_index(d, value(Some("2")), Some(9), None, 7);
        check_both(&h).unwrap();
    }
}
