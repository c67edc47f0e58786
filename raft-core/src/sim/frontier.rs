//! The linearizability check run as the history grows, keeping per key
//! only what later operations can still need: the same model and the same
//! rules as [`super::linearizability`] (which checks a whole history at
//! once), so that a run that never ends (the dashboard's) is checked with
//! bounded memory.
//!
//! Per key, the check walks the history's invoke/return events in order
//! and keeps the *frontier*: every configuration the operations so far can
//! be in, each a model state with the set of pending operations already
//! linearized (Lowe's just-in-time linearization). An invoke adds the
//! operation to the key's pending set; a return keeps the configurations
//! that can linearize the returning operation by then (placing other
//! pending operations before it as needed) and drops it from the pending
//! set: an operation that returned is settled, its record forgotten.
//!
//! The check reads an event only once the outcome of every operation
//! invoked before it is known, so that any of them can be placed first:
//! events up to the invocation of the oldest operation still waiting for
//! its answer ([`LinearizabilityFrontier::advance`]). At the end of a run
//! the operations still waiting count as abandoned
//! ([`LinearizabilityFrontier::finish`]), as in the whole-history check.
//!
//! An operation whose outcome is unknown (abandoned, or answered `Stale`
//! and the like) may take effect at any point after its invocation, or
//! never: it stays pending for the rest of the run (a small record per
//! abandoned write, not per operation), placed in the configurations where
//! it took effect, until every configuration placed it. A configuration
//! that placed fewer of them is preferred to one that placed more in the
//! same state (it can still place them later), and placing one that changes
//! nothing is left for later: the two dominance rules that keep the
//! frontier small. Abandoned operations with the same effect are placed
//! oldest first. And an abandoned write of a session is settled once a
//! later write of the same session returns answered by the state machine:
//! from then on the store answers its sequence number `Stale` (the session
//! rule of `KvStore`, which the simulated clients rely on too), so it can
//! no longer take effect. Only abandoned writes without a session stay to
//! the end of the run.
//!
//! Values are named by a 64-bit hash of their text instead of an interning
//! table that would grow with every value written.

use std::collections::{BTreeMap, VecDeque};

use super::history::{ClientOp, History, Operation, Outcome};
use super::linearizability::{CheckStats, LinearizabilityError, ModelOp, PartOp, State};
use crate::kv::Op;

/// Search steps allowed per returning operation before the check gives up
/// on its key ([`LinearizabilityError::Inconclusive`]).
const STEPS_PER_RETURN: u64 = 2_000_000;

/// A pending operation's place in its key's pending set.
type Slot = u32;

/// One way the key's operations so far can be ordered: the model state
/// they leave and the pending operations already linearized (sorted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Config {
    state: State,
    placed: Vec<Slot>,
}

/// The check of one key.
#[derive(Debug, Default)]
struct KeyFrontier {
    /// Invoked operations not yet settled, by slot.
    pending: BTreeMap<Slot, PartOp>,
    next_slot: Slot,
    configs: Vec<Config>,
    /// Operations (known outcome) checked.
    ops: usize,
    /// Abandoned writes seen.
    unknown: usize,
}

impl KeyFrontier {
    fn new() -> Self {
        KeyFrontier {
            configs: vec![Config {
                state: State::ABSENT,
                placed: Vec::new(),
            }],
            ..Default::default()
        }
    }

    fn invoke(&mut self, op: PartOp) {
        if op.out.is_some() {
            self.ops += 1;
        } else {
            self.unknown += 1;
        }
        self.pending.insert(self.next_slot, op);
        self.next_slot += 1;
    }

    /// Operation `id` returned: keeps the configurations that linearize it
    /// by now. `Err` names the operation no order explains, or says the
    /// search ran out of steps.
    fn ret(&mut self, id: usize, steps: &mut u64) -> Result<(), Option<usize>> {
        let Some((&slot, _)) = self.pending.iter().find(|(_, o)| o.id == id) else {
            return Ok(());
        };
        let mut found = self.placing(slot, steps).ok_or(None)?;
        if found.is_empty() {
            return Err(Some(id));
        }
        self.pending.remove(&slot);
        for c in &mut found {
            c.placed.retain(|&p| p != slot);
        }
        self.configs = keep_best(found, &self.pending);
        self.settle_placed_everywhere();
        Ok(())
    }

    /// Every configuration the frontier reaches by placing pending
    /// operations up to and including `slot` (`None`: out of steps).
    fn placing(&self, slot: Slot, steps: &mut u64) -> Option<Vec<Config>> {
        let mut found: Vec<Config> = Vec::new();
        let mut seen: BTreeMap<State, Vec<Vec<Slot>>> = BTreeMap::new();
        let mut budget = STEPS_PER_RETURN;
        // Breadth first over the pending operations placed before it, so
        // that a configuration with fewer operations placed is met before
        // those it dominates.
        let mut queue: VecDeque<Config> = self.configs.clone().into();
        while let Some(c) = queue.pop_front() {
            if c.placed.contains(&slot) {
                found.push(c);
                continue;
            }
            if dominated(&seen, &c, &self.pending) {
                continue;
            }
            seen.entry(c.state).or_default().push(c.placed.clone());
            for (&s, op) in &self.pending {
                if c.placed.contains(&s) {
                    continue;
                }
                // Abandoned operations with the same effect (two deletes,
                // two puts of one value) are interchangeable once both are
                // invoked: the oldest unplaced one goes first, so the
                // frontier does not hold every subset of them.
                if op.out.is_none()
                    && self.pending.range(..s).any(|(t, o)| {
                        o.out.is_none() && !c.placed.contains(t) && same_effect(o, op)
                    })
                {
                    continue;
                }
                budget = budget.checked_sub(1)?;
                *steps += 1;
                let Some(next) = op.apply(c.state) else {
                    continue;
                };
                // An abandoned operation that changes nothing here can as
                // well be placed later.
                if op.out.is_none() && next == c.state {
                    continue;
                }
                let mut placed = c.placed.clone();
                let at = placed.partition_point(|&p| p < s);
                placed.insert(at, s);
                queue.push_back(Config {
                    state: next,
                    placed,
                });
            }
        }
        Some(found)
    }

    /// Session `client_id` had a write after `seq` applied: its abandoned
    /// writes numbered below that one can no longer take effect later (the
    /// state machine answers an older sequence number `Stale`), so each is
    /// settled: it took effect by now, or never. A configuration that has
    /// not placed it keeps both possibilities (placed now, or never).
    fn settle_session(&mut self, client_id: u64, seq: u64, steps: &mut u64) -> Result<(), ()> {
        let done: Vec<Slot> = self
            .pending
            .iter()
            .filter(|(_, o)| o.out.is_none() && o.client_id == client_id && o.seq < seq)
            .map(|(&s, _)| s)
            .collect();
        for s in done {
            // Placed by now: after any of the pending operations, as a
            // return would place it; or never: the configurations as they
            // are.
            let placed = self.placing(s, steps).ok_or(())?;
            let mut configs = std::mem::take(&mut self.configs);
            configs.extend(placed);
            self.pending.remove(&s);
            for c in &mut configs {
                c.placed.retain(|&p| p != s);
            }
            self.configs = keep_best(configs, &self.pending);
        }
        Ok(())
    }

    /// An abandoned operation every configuration has placed is done with.
    fn settle_placed_everywhere(&mut self) {
        let done: Vec<Slot> = self
            .pending
            .keys()
            .copied()
            .filter(|s| self.configs.iter().all(|c| c.placed.contains(s)))
            .collect();
        for s in done {
            self.pending.remove(&s);
            for c in &mut self.configs {
                c.placed.retain(|&p| p != s);
            }
        }
        self.configs.sort();
        self.configs.dedup();
    }
}

/// Whether `c` is no better than a configuration already explored: the
/// same state, the same answered operations placed, and no more abandoned
/// ones (those can still be placed later).
fn dominated(
    seen: &BTreeMap<State, Vec<Vec<Slot>>>,
    c: &Config,
    pending: &BTreeMap<Slot, PartOp>,
) -> bool {
    let known = |p: &&Slot| pending.get(p).is_some_and(|o| o.out.is_some());
    let Some(same_state) = seen.get(&c.state) else {
        return false;
    };
    let c_known = c.placed.iter().filter(known).count();
    same_state.iter().any(|placed| {
        placed.iter().all(|p| c.placed.binary_search(p).is_ok())
            && placed.iter().filter(known).count() == c_known
    })
}

/// The configurations no other one dominates, in order.
fn keep_best(mut configs: Vec<Config>, pending: &BTreeMap<Slot, PartOp>) -> Vec<Config> {
    configs.sort_by_key(|c| c.placed.len());
    configs.dedup();
    let mut seen: BTreeMap<State, Vec<Vec<Slot>>> = BTreeMap::new();
    let mut best: Vec<Config> = Vec::new();
    for c in configs {
        if !dominated(&seen, &c, pending) {
            seen.entry(c.state).or_default().push(c.placed.clone());
            best.push(c);
        }
    }
    best.sort();
    best
}

/// Whether two abandoned operations change every state alike.
fn same_effect(a: &PartOp, b: &PartOp) -> bool {
    let norm = |op: ModelOp| match op {
        ModelOp::DeletePrefix => ModelOp::Delete,
        other => other,
    };
    norm(a.op) == norm(b.op)
}

/// Names a value by a hash of its text (FNV-1a, 64 bits).
fn value_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A returning operation and the keys whose histories it is in.
#[derive(Debug)]
struct Return {
    id: usize,
    /// For a write answered by the state machine: its session and
    /// sequence number (`(0, 0)`: none).
    applied: (u64, u64),
    /// `None`: a prefix delete, in every key it covers.
    key: Option<String>,
}

/// The online linearizability check of a growing [`History`].
#[derive(Debug, Default)]
pub struct LinearizabilityFrontier {
    keys: BTreeMap<String, KeyFrontier>,
    /// Operations read so far: every id below this.
    read_to: usize,
    /// Returns still to walk, by their place in the event order.
    returns: BTreeMap<u64, Return>,
    /// Prefix deletes that may still take effect: `(prefix, operation)`,
    /// added to the history of each key created while they are open.
    open_prefix_deletes: Vec<(String, PartOp)>,
    steps: u64,
    verdict: Option<LinearizabilityError>,
}

impl LinearizabilityFrontier {
    /// A check that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The verdict on the events read so far.
    pub fn verdict(&self) -> Result<CheckStats, LinearizabilityError> {
        match &self.verdict {
            Some(e) => Err(e.clone()),
            None => Ok(CheckStats {
                keys: self.keys.len(),
                ops: self.keys.values().map(|k| k.ops + k.unknown).sum(),
                unknown: self.keys.values().map(|k| k.unknown).sum(),
                steps: self.steps,
            }),
        }
    }

    /// Every history id below this one is read: the history may forget
    /// those operations.
    pub fn read_to(&self) -> usize {
        self.read_to
    }

    /// Operations kept: pending on some key (abandoned writes included).
    pub fn pending(&self) -> usize {
        self.keys.values().map(|k| k.pending.len()).sum::<usize>() + self.open_prefix_deletes.len()
    }

    /// Reads the history's events up to the invocation of its oldest
    /// operation still waiting for an answer.
    pub fn advance(&mut self, history: &History) {
        self.read(history, false);
    }

    /// Reads every remaining event, the operations still waiting counted
    /// as abandoned, and returns the verdict on the whole run.
    pub fn finish(&mut self, history: &History) -> Result<CheckStats, LinearizabilityError> {
        self.read(history, true);
        self.verdict()
    }

    fn read(&mut self, history: &History, last: bool) {
        if self.verdict.is_some() {
            return;
        }
        // The new operations the check may read: all invoked before the
        // oldest one still waiting (all of them at the end).
        let mut upto = self.read_to.max(history.first_id());
        let mut limit = u64::MAX;
        for op in history.ops_from(upto) {
            if op.outcome == Outcome::Pending && !last {
                limit = op.invoke_order;
                break;
            }
            upto = op.id + 1;
        }
        let new_ops: Vec<&Operation> = history
            .ops_from(self.read_to)
            .take_while(|o| o.id < upto)
            .collect();
        self.read_to = self.read_to.max(upto);
        let mut calls = new_ops.into_iter().peekable();
        loop {
            let next_call = calls.peek().map(|o| o.invoke_order);
            let next_ret = self.returns.keys().next().copied().filter(|&r| r < limit);
            match (next_call, next_ret) {
                (Some(c), r) if r.is_none_or(|r| c < r) => {
                    let op = calls.next().expect("peeked");
                    self.call(op);
                }
                (_, Some(r)) => {
                    let ret = self.returns.remove(&r).expect("a key of the map");
                    if let Err(e) = self.ret(ret) {
                        self.verdict = Some(e);
                        return;
                    }
                }
                (None, None) => return,
                (Some(_), None) => unreachable!("the first arm takes a call when no return is due"),
            }
        }
    }

    fn call(&mut self, o: &Operation) {
        if o.op.is_read() && !matches!(o.outcome, Outcome::Ok(_)) {
            return; // an abandoned read returned nothing to explain
        }
        let Some(op) = PartOp::of(o, &mut value_hash) else {
            return; // a registration: no key
        };
        if let Some(ret) = op.ret {
            let key = match &o.op {
                ClientOp::Write(Op::DeletePrefix { .. }) => None,
                other => Some(other.key().to_string()),
            };
            let applied = if o.op.is_write() && o.client_id != 0 {
                (o.client_id, o.seq)
            } else {
                (0, 0)
            };
            self.returns.insert(
                ret,
                Return {
                    id: o.id,
                    applied,
                    key,
                },
            );
        }
        if let ClientOp::Write(Op::DeletePrefix { prefix }) = &o.op {
            for (_, k) in self
                .keys
                .iter_mut()
                .filter(|(k, _)| k.starts_with(prefix.as_str()))
            {
                k.invoke(op.clone());
            }
            self.open_prefix_deletes.push((prefix.clone(), op));
            return;
        }
        let key = o.op.key();
        if !self.keys.contains_key(key) {
            let mut k = KeyFrontier::new();
            for (prefix, d) in &self.open_prefix_deletes {
                if key.starts_with(prefix.as_str()) {
                    k.invoke(d.clone());
                }
            }
            self.keys.insert(key.to_string(), k);
        }
        if let Some(k) = self.keys.get_mut(key) {
            k.invoke(op);
        }
    }

    fn ret(&mut self, ret: Return) -> Result<(), LinearizabilityError> {
        if ret.key.is_none() {
            // A prefix delete that returned no longer joins keys created
            // later (they start absent after it).
            self.open_prefix_deletes.retain(|(_, d)| d.id != ret.id);
        }
        let steps = &mut self.steps;
        for (key, k) in self.keys.iter_mut() {
            if ret.key.as_ref().is_some_and(|only| only != key) {
                continue;
            }
            let pending_ids: Vec<usize> = k.pending.values().map(|o| o.id).collect();
            match k.ret(ret.id, steps) {
                Ok(()) => {}
                Err(stuck_at) if stuck_at.is_some() => {
                    return Err(LinearizabilityError::NotLinearizable {
                        key: key.clone(),
                        ops: pending_ids,
                        longest_prefix: Vec::new(),
                        stuck_at,
                    })
                }
                Err(_) => {
                    return Err(LinearizabilityError::Inconclusive {
                        key: key.clone(),
                        ops: pending_ids.len(),
                    })
                }
            }
        }
        let (client_id, seq) = ret.applied;
        if client_id != 0 {
            for (key, k) in self.keys.iter_mut() {
                k.settle_session(client_id, seq, steps).map_err(|()| {
                    LinearizabilityError::Inconclusive {
                        key: key.clone(),
                        ops: k.pending.len(),
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// The online check's verdict on a whole history (for tests).
#[cfg(test)]
pub(crate) fn frontier_verdict(history: &History) -> Result<CheckStats, LinearizabilityError> {
    let mut f = LinearizabilityFrontier::new();
    f.finish(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::linearizability::check_linearizability;

    use crate::kv::{Op, OpResult};
    use crate::sim::history::{ClientOp, OpOutput};

    fn put(k: &str, v: &str) -> ClientOp {
        ClientOp::Write(Op::Put {
            key: k.into(),
            value: v.into(),
        })
    }

    /// An abandoned write of a session stays pending until a later write
    /// of the session is answered; after that it can no longer take
    /// effect, so a value it wrote that shows up later is a violation.
    #[test]
    fn a_later_answered_write_of_the_session_settles_an_abandoned_one() {
        let mut h = History::new();
        let a = h.invoke_in_session(1, put("x", "1"), 7, 1, 0);
        h.give_up(a, 1);
        let mut f = LinearizabilityFrontier::new();
        f.advance(&h);
        assert_eq!(f.pending(), 1, "may still take effect");
        let b = h.invoke_in_session(1, put("y", "2"), 7, 2, 2);
        let answer = OpOutput::Write(OpResult::Put { prev: None });
        h.complete(b, answer, None, 3);
        f.advance(&h);
        assert_eq!(f.pending(), 0, "settled by the later write");
        // Absent after the second write, it cannot appear later (the
        // store answers it `Stale` now).
        let get = |h: &mut History, seen: Option<&str>, at| {
            let r = h.invoke(2, ClientOp::Get { key: "x".into() }, 0, at);
            h.complete(r, OpOutput::Value(seen.map(Into::into)), None, at + 1);
        };
        get(&mut h, None, 4);
        f.advance(&h);
        assert!(f.verdict().is_ok());
        get(&mut h, Some("1"), 6);
        f.advance(&h);
        assert!(f.verdict().is_err());
        // Without a session it may still take effect.
        let mut h = History::new();
        let a = h.invoke(1, put("x", "1"), 0, 0);
        h.give_up(a, 1);
        let b = h.invoke(1, put("y", "2"), 0, 2);
        h.complete(b, OpOutput::Write(OpResult::Put { prev: None }), None, 3);
        get(&mut h, None, 4);
        get(&mut h, Some("1"), 6);
        assert!(frontier_verdict(&h).is_ok());
    }

    /// The whole-history check's unit histories get the same verdicts.
    #[test]
    fn agrees_with_the_whole_history_check_on_random_runs() {
        for seed in 0..40 {
            let mut cfg = crate::sim::SimConfig::randomized(seed);
            cfg.clients.total_ops = Some(60);
            let mut c = crate::sim::Cluster::new(cfg).unwrap();
            let _ = c.run_to_end();
            let whole = check_linearizability(c.history().ops()).is_ok();
            let online = frontier_verdict(c.history()).is_ok();
            assert_eq!(whole, online, "seed {seed}");
        }
    }
}
