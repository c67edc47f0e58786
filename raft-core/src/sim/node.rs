//! One simulated server: a [`RawNode`], the [`KvStore`] it applies to, its
//! disk ([`super::disk`]), and the driver loop that carries out each
//! `Ready` in the documented order, as the server's Raft loop does.

use std::collections::BTreeMap;

use super::disk::{ArmedFault, Disk, DurableStore, Write, WriteCut, WriteResult};
use super::invariants::Checker;
use super::network::Network;
use super::{Time, TraceHash};
use crate::config::Config;
use crate::kv::{KvStore, OpResult};
use crate::raw_node::{RawNode, Status};
use crate::replica::{
    Outcome, Query, QueryResult, Replica, RequestError, RequestId, SnapshotPolicy,
};
use crate::rng::Rng;
use crate::types::{Entry, Index, Membership, NodeId, Payload, PersistedState, Role, Term};

/// An answer from a node to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The write the client knows by `ctx` was applied with this result,
    /// by the entry at `applied_at` (a put's modification index).
    Write {
        ctx: u64,
        result: OpResult,
        applied_at: Index,
    },
    /// The write `ctx` was not applied here (`not_applied`: provably never,
    /// so even a write without a session may be sent again), or its
    /// outcome is unknown: retry it with the same `(client_id, seq)`
    /// (applied at most once).
    WriteLost { ctx: u64, not_applied: bool },
    /// The read `ctx` returned `value`, last written by the entry at
    /// `mod_index` (`None` when absent).
    Read {
        ctx: u64,
        value: Option<String>,
        mod_index: Option<Index>,
    },
    /// The read `ctx` was refused (leadership lost): retry.
    ReadFailed { ctx: u64 },
}

/// Counters per node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Entries applied (re-applies after restarts included).
    pub applied: u64,
    /// Snapshots this node took.
    pub snapshots_taken: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
    /// InstallSnapshot messages held back until a snapshot reaching the
    /// core's log start (past a checkpoint) was written.
    pub snapshots_held: u64,
    /// Times it crashed.
    pub crashes: u64,
    /// Times it became leader.
    pub elected: u64,
    /// As leader, followers it found to have lost log entries they had
    /// acknowledged (`Ready::lost_logs`). In the simulator no node ever
    /// loses what it acknowledged, so each one is a false alarm.
    pub lost_logs: u64,
    /// Times it died in the middle of a durable write
    /// ([`super::FaultAction::CrashAtWrite`], [`super::FaultAction::TornWrite`],
    /// [`super::FaultAction::CrashAfterSnapshotFile`]), whatever reached the
    /// disk.
    pub torn_writes: u64,
    /// Of those, the ones after a whole record reached the disk
    /// ([`WriteCut::Everything`]): durable, but never acknowledged.
    pub torn_writes_whole: u64,
    /// Times it died (or halted on a disk error) after a snapshot received
    /// from the leader was durable as a file, before the record marking it.
    pub received_snapshot_file_crashes: u64,
    /// The same for its own snapshots (file durable, mark not written).
    pub own_snapshot_file_crashes: u64,
    /// Restarts whose recovery marked a snapshot file newer than the WAL's
    /// last mark.
    pub snapshot_marks_repaired: u64,
    /// Disk errors it met ([`super::FaultAction::DiskError`]): halts, and
    /// own snapshot files that could not be written.
    pub disk_errors: u64,
    /// Times it halted on a disk error.
    pub disk_halts: u64,
    /// Writes waiting on it when it halted, answered with an unknown
    /// outcome (`Replica::stop`): their clients retry with the same
    /// sequence number.
    pub writes_unknown_at_halt: u64,
}

/// Why a node's driver loop stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It died in the middle of a write: its clients hear nothing.
    Crashed,
    /// Its storage failed: it halted, answering its waiting clients.
    Halted,
}

/// The shared things a node's driver loop uses.
pub(crate) struct Env<'a> {
    pub now: Time,
    pub net: &'a mut Network,
    pub rng: &'a mut Rng,
    pub checker: &'a mut Checker,
    pub replies: &'a mut Vec<(NodeId, Reply)>,
    pub trace: &'a mut TraceHash,
}

/// Who waits for a request at a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Write {
        ctx: u64,
        /// The entry `(index, term)` it was proposed as.
        at: (Index, Term),
    },
    Read {
        ctx: u64,
        /// The highest commit index any node had reported when the read
        /// arrived ([`Checker::known_commit`]).
        known_commit: Index,
        /// Its read index, once known.
        read_index: Option<Index>,
    },
}

/// One simulated server.
pub struct SimNode {
    id: NodeId,
    /// The replica, while running: the same type the server drives.
    replica: Option<Replica>,
    /// What a down node shows as its state machine.
    empty: KvStore,
    /// What it persisted, and the disk fault armed on it.
    disk: Disk,
    /// When it ticks next.
    pub(crate) next_tick: Time,
    restarts: u64,
    policy: SnapshotPolicy,
    /// The clients waiting on its requests.
    requests: BTreeMap<RequestId, Tag>,
    stats: NodeStats,
    /// The highest commit index its Readies reported since it (re)started
    /// (the durable one may lag: commit-only changes are not written).
    commit_seen: Index,
    /// Stopped for good after its removal from the cluster; never restarts.
    retired: bool,
    /// Frozen until then (a stop-the-world pause: SIGSTOP, a long GC, a
    /// VM migration): it neither ticks nor reads its sockets.
    paused_until: Option<Time>,
    /// What reached it while paused, in arrival order: its sockets' and
    /// listen queue's contents, handled when it resumes.
    inbox: Vec<Deferred>,
}

/// A message or request that reached a paused node.
#[derive(Clone, Debug)]
pub(crate) enum Deferred {
    /// A message from a peer.
    Message(crate::message::Message),
    /// A client's write, which the client knows by `ctx`.
    Write { ctx: u64, cmd: crate::kv::Command },
    /// A client's linearizable read (see [`SimNode::read`]).
    Read {
        ctx: u64,
        key: String,
        known_commit: Index,
    },
}

impl SimNode {
    /// A founding member: it starts from the bootstrap state (the
    /// configuration as the first, committed entry), as the server writes it
    /// before it starts a new cluster's node.
    pub(crate) fn new(
        id: NodeId,
        config: Config,
        members: &Membership,
        policy: SnapshotPolicy,
    ) -> Result<Self, String> {
        let PersistedState {
            hard_state,
            snapshot,
            entries,
        } = PersistedState::bootstrap(members.clone());
        let durable = DurableStore {
            hard_state,
            snapshot,
            entries,
            unmarked_snapshot: None,
        };
        Self::start(id, config, durable, policy)
    }

    /// A member joining an existing cluster: nothing persisted, no
    /// configuration; it learns everything from the leader.
    pub(crate) fn joining(
        id: NodeId,
        config: Config,
        policy: SnapshotPolicy,
    ) -> Result<Self, String> {
        Self::start(id, config, DurableStore::default(), policy)
    }

    fn start(
        id: NodeId,
        config: Config,
        durable: DurableStore,
        policy: SnapshotPolicy,
    ) -> Result<Self, String> {
        let replica =
            Replica::new(config, durable.persisted(), policy).map_err(|e| e.to_string())?;
        Ok(SimNode {
            id,
            replica: Some(replica),
            empty: KvStore::new(),
            disk: Disk::new(durable),
            next_tick: 0,
            restarts: 0,
            policy,
            requests: BTreeMap::new(),
            stats: NodeStats::default(),
            commit_seen: 0,
            retired: false,
            paused_until: None,
            inbox: Vec::new(),
        })
    }

    /// Its id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// Whether it was stopped for good after its removal (its slot stays,
    /// its id is never reused).
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// The Raft node, when running.
    pub fn raw(&self) -> Option<&RawNode> {
        self.replica.as_ref().map(Replica::raw)
    }

    pub(crate) fn replica_mut(&mut self) -> Option<&mut Replica> {
        self.replica.as_mut()
    }

    /// Its full Raft status, when running.
    pub fn status(&self) -> Option<Status> {
        self.raw().map(RawNode::status)
    }

    /// Its role (`None` when down).
    pub fn role(&self) -> Option<Role> {
        self.raw().map(RawNode::role)
    }

    /// Its current term (`None` when down).
    pub fn term(&self) -> Option<Term> {
        self.raw().map(RawNode::term)
    }

    /// Whether it runs and is leader.
    pub fn is_leader(&self) -> bool {
        self.raw().is_some_and(RawNode::is_leader)
    }

    /// Its state machine (empty while down).
    pub fn kv(&self) -> &KvStore {
        self.replica.as_ref().map_or(&self.empty, Replica::kv)
    }

    /// What it persisted.
    pub fn durable(&self) -> &DurableStore {
        &self.disk.store
    }

    /// The log entries it holds in memory (after its snapshot), in order.
    pub fn log(&self) -> Vec<Entry> {
        let Some(raw) = self.raw() else {
            return Vec::new();
        };
        (self.log_start()..)
            .map_while(|i| raw.entry(i).cloned())
            .collect()
    }

    /// The first index of its log in memory: past its newest snapshot, or
    /// past a checkpoint the core compacted to since.
    fn log_start(&self) -> Index {
        let core = self.raw().map_or(0, RawNode::snapshot_index);
        self.disk.store.snapshot_index().max(core) + 1
    }

    /// Entry `index` as the node holds it: in its log in memory, or, below
    /// a checkpoint the core compacted to, in its durable log.
    pub fn held_entry(&self, index: Index) -> Option<&Entry> {
        if index < self.log_start() {
            self.disk.store.entry(index)
        } else {
            self.raw()?.entry(index)
        }
    }

    /// The index of its newest snapshot on disk (the core's log may start
    /// past it, at a checkpoint: see [`SimNode::held_entry`]).
    pub fn snapshot_index(&self) -> Index {
        self.disk.store.snapshot_index()
    }

    /// How many times it restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Its counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Arms a disk fault for its next durable write(s) (see
    /// [`ArmedFault`]), replacing any armed one. Returns false (and arms
    /// nothing) when it is down.
    pub(crate) fn arm(&mut self, fault: ArmedFault) -> bool {
        if self.is_up() {
            self.disk.armed = Some(fault);
        }
        self.is_up()
    }

    /// Whether a disk fault waits for its next durable write
    /// ([`super::FaultAction::CrashAtWrite`] and the other disk faults, not
    /// yet struck or called off).
    pub fn disk_fault_armed(&self) -> bool {
        self.disk.armed.is_some()
    }

    /// Calls off a disk fault that has not struck; returns whether one was
    /// armed.
    pub(crate) fn disarm(&mut self) -> bool {
        self.disk.armed.take().is_some()
    }

    /// Freezes it until `until` (no effect when it is down).
    pub(crate) fn pause(&mut self, until: Time) {
        if self.is_up() {
            let until = self.paused_until.map_or(until, |t| t.max(until));
            self.paused_until = Some(until);
        }
    }

    /// Until when it is frozen, if it is.
    pub fn paused_until(&self) -> Option<Time> {
        self.paused_until
    }

    /// Queues a message that reached it while paused.
    pub(crate) fn defer(&mut self, d: Deferred) {
        self.inbox.push(d);
    }

    /// Wakes it up: returns what queued while it was frozen, oldest first.
    pub(crate) fn resume(&mut self) -> Vec<Deferred> {
        self.paused_until = None;
        std::mem::take(&mut self.inbox)
    }

    /// Loses everything not persisted.
    pub(crate) fn crash(&mut self) {
        self.stop();
        self.stats.crashes += 1;
    }

    /// Stops it for good (it was removed from the cluster).
    pub(crate) fn retire(&mut self) {
        self.stop();
        self.retired = true;
    }

    fn stop(&mut self) {
        // A restarted process starts on a disk with room (the operator
        // freed space) and no fault pending.
        self.disk.armed = None;
        // A frozen process that is killed never wakes up: what queued for it
        // dies with its sockets.
        self.paused_until = None;
        self.inbox.clear();
        // The process is gone: nobody hears from it again (its clients time
        // out, as a server's clients would).
        self.replica = None;
        self.requests.clear();
    }

    /// Starts again from the durable store.
    pub(crate) fn restart(&mut self, config: Config) -> Result<(), String> {
        if self.retired {
            return Err("a retired node does not restart".into());
        }
        self.restarts += 1;
        if self.disk.store.recover() {
            self.stats.snapshot_marks_repaired += 1;
        }
        let replica = Replica::new(config, self.disk.store.persisted(), self.policy)
            .map_err(|e| e.to_string())?;
        // Not the durable commit: that one may lie below the snapshot (a
        // snapshot file marked by recovery), and the node starts at least
        // at its snapshot.
        self.commit_seen = replica.raw().status().commit;
        self.replica = Some(replica);
        Ok(())
    }

    /// Starts a write here; the client knows it by `ctx` and hears back
    /// through a [`Reply`].
    pub(crate) fn propose(
        &mut self,
        ctx: u64,
        cmd: crate::kv::Command,
    ) -> Result<(), crate::config::NotAccepted> {
        if self.is_up() && self.paused_until.is_some() {
            // Accepted by the kernel, not yet read by the frozen process.
            self.inbox.push(Deferred::Write { ctx, cmd });
            return Ok(());
        }
        let replica = self
            .replica
            .as_mut()
            .ok_or(crate::config::NotAccepted::NotLeader { leader: None })?;
        let id = replica.propose(cmd)?;
        // The proposal is the last entry now, in the current term.
        let raw = replica.raw();
        let tag = Tag::Write {
            ctx,
            at: (raw.status().last_index, raw.term()),
        };
        self.requests.insert(id, tag);
        Ok(())
    }

    /// Starts a linearizable read of `key`; the client knows it by `ctx`.
    /// `known_commit` is the highest commit index any node reported so far:
    /// the read index must not be lower.
    pub(crate) fn read(
        &mut self,
        ctx: u64,
        key: &str,
        known_commit: Index,
    ) -> Result<(), crate::config::NotAccepted> {
        if self.is_up() && self.paused_until.is_some() {
            self.inbox.push(Deferred::Read {
                ctx,
                key: key.to_string(),
                known_commit,
            });
            return Ok(());
        }
        let replica = self
            .replica
            .as_mut()
            .ok_or(crate::config::NotAccepted::NotLeader { leader: None })?;
        let id = replica.read(Query::Get(key.to_string()))?;
        let tag = Tag::Read {
            ctx,
            known_commit,
            read_index: None,
        };
        self.requests.insert(id, tag);
        Ok(())
    }

    /// Carries out every `Ready` the node has: send what may leave early,
    /// persist, send the rest, hand it back to the replica (apply, read).
    /// Returns why it stopped when a disk fault struck (armed with
    /// [`SimNode::arm`]).
    pub(crate) fn drive(&mut self, env: &mut Env) -> Option<Stopped> {
        loop {
            let replica = self.replica.as_mut()?;
            if !replica.has_ready() {
                return None;
            }
            let held = replica.snapshots_held();
            let mut rd = replica.ready();
            self.stats.snapshots_held += replica.snapshots_held() - held;
            if let Some(soft) = rd.soft_state {
                if soft.role == Role::Leader {
                    self.stats.elected += 1;
                    let raw = replica.raw();
                    env.checker.on_leader(self.id, raw.term(), raw.membership());
                }
            }
            self.stats.lost_logs += rd.lost_logs.len() as u64;
            // 1. What may leave before the write (a leader's appends and
            // heartbeats).
            fill_snapshots(self.id, &self.disk, env, &mut rd.messages);
            env.checker.on_sent(self.id, &rd.messages);
            send(env, std::mem::take(&mut rd.messages));
            // 2. Persist: the received snapshot's file, then one record
            // with its mark, the entries and the hard state (only what must
            // be durable: a Ready that only moves the commit writes
            // nothing).
            if rd.must_persist {
                let write = Write::Ready {
                    snapshot: rd.snapshot.as_ref(),
                    entries: &rd.entries,
                    hard_state: rd.hard_state,
                };
                let result = match self.disk.decide(write, env.rng) {
                    Ok(result) => {
                        let cut = result.cut();
                        if let Some(snap) =
                            rd.snapshot.as_ref().filter(|_| cut != WriteCut::Nothing)
                        {
                            env.checker.on_snapshot(self.id, &snap.meta);
                        }
                        let (id, commit_seen) = (self.id, self.commit_seen);
                        let checker = &mut *env.checker;
                        self.disk.apply_observed(write, cut, |store| {
                            // Checked against the commit known before this
                            // Ready: entries it commits are the ones being
                            // written now.
                            checker.on_entries(id, store, commit_seen, &rd.entries);
                        });
                        if cut == WriteCut::Everything {
                            // What is durable now counts toward the
                            // checker's own judgement of what a quorum
                            // holds.
                            env.checker.on_durable(self.id, &self.disk.store);
                        }
                        result
                    }
                    Err(e) => {
                        // Refused before anything is written, as the
                        // server's storage refuses a `persist` that does
                        // not attach: a driver bug, reported.
                        env.checker.driver(self.id, e);
                        WriteResult::Done
                    }
                };
                if result != WriteResult::Done {
                    let file = rd.snapshot.is_some() && result.cut() == WriteCut::SnapshotFile;
                    self.stats.received_snapshot_file_crashes += u64::from(file);
                    return Some(self.strike(env, result));
                }
                if rd.snapshot.is_some() {
                    self.stats.snapshots_installed += 1;
                }
            } else if rd.snapshot.is_some() || !rd.entries.is_empty() {
                env.checker.driver(
                    self.id,
                    "a Ready with a snapshot or entries must persist".into(),
                );
            }
            if let Some(hs) = rd.hard_state {
                if hs.commit > self.commit_seen {
                    let snap = self.disk.store.snapshot_index();
                    env.checker.on_commit(
                        self.id,
                        replica.raw(),
                        snap,
                        self.commit_seen,
                        hs.commit,
                    );
                    self.commit_seen = hs.commit;
                }
            }
            // 3. What depends on the write: votes, acknowledgements.
            fill_snapshots(self.id, &self.disk, env, &mut rd.persisted_messages);
            env.checker.on_sent(self.id, &rd.persisted_messages);
            send(env, std::mem::take(&mut rd.persisted_messages));
            // 4. Apply, settle, read: the replica's part.
            let mut clients = Vec::new();
            for e in &rd.committed_entries {
                env.checker.on_apply(self.id, e);
                env.trace.mix(e.index ^ (e.term << 32));
                self.stats.applied += 1;
                if let Payload::Command(cmd) = &e.payload {
                    if cmd.client_id != 0 && !clients.contains(&cmd.client_id) {
                        clients.push(cmd.client_id);
                    }
                }
            }
            // The read index each read will be served at.
            for rs in &rd.read_states {
                let tag = replica
                    .read_request(rs.ctx)
                    .and_then(|id| self.requests.get_mut(&id));
                if let Some(Tag::Read { read_index, .. }) = tag {
                    *read_index = Some(rs.index);
                }
            }
            if let Err(e) = replica.advance(rd, None) {
                env.checker.driver(self.id, e.to_string());
            }
            env.checker.on_sessions(self.id, replica.kv(), &clients);
            let outcomes = replica.take_outcomes();
            self.route(env, outcomes);
            if let Some(stopped) = self.maybe_compact(env) {
                return Some(stopped);
            }
        }
    }

    /// A disk fault struck the write in progress (what reached the disk is
    /// on it already): the process dies, or halts as the server's Raft loop
    /// does on a storage failure — the write is not reported done, nothing
    /// held for after it is sent, and every waiting request is ended by
    /// `Replica::stop` (writes: outcome unknown, so the client retries with
    /// the same sequence number).
    fn strike(&mut self, env: &mut Env, result: WriteResult) -> Stopped {
        match result {
            WriteResult::Failed { kind, .. } => {
                env.trace.mix_str(&format!("disk error {kind}"));
                self.stats.disk_errors += 1;
                self.stats.disk_halts += 1;
                if let Some(replica) = self.replica.as_mut() {
                    let outcomes = replica.stop("the node stopped on a storage failure");
                    let writes = outcomes
                        .iter()
                        .filter(|(_, o)| matches!(o, Outcome::Write(Err(RequestError::Unknown(_)))))
                        .count();
                    self.stats.writes_unknown_at_halt += writes as u64;
                    self.route(env, outcomes);
                }
                self.stop();
                Stopped::Halted
            }
            _ => {
                // Killed during the write: the early messages are on the
                // wire, the rest of the Ready dies with the process.
                env.trace.mix_str("crash at write");
                self.stats.torn_writes += 1;
                self.stats.torn_writes_whole += u64::from(result.cut() == WriteCut::Everything);
                self.crash();
                Stopped::Crashed
            }
        }
    }

    /// Hands each decided request's outcome to the client waiting for it.
    fn route(&mut self, env: &mut Env, outcomes: Vec<(RequestId, Outcome)>) {
        for (id, outcome) in outcomes {
            let Some(tag) = self.requests.remove(&id) else {
                continue;
            };
            let reply = match (tag, outcome) {
                (Tag::Write { ctx, .. }, Outcome::Write(Ok(w))) => Reply::Write {
                    ctx,
                    result: w.result,
                    applied_at: w.applied_at,
                },
                (
                    Tag::Write {
                        ctx,
                        at: (index, term),
                    },
                    Outcome::Write(Err(RequestError::NotApplied)),
                ) => {
                    env.checker.on_not_applied(self.id, index, term);
                    Reply::WriteLost {
                        ctx,
                        not_applied: true,
                    }
                }
                (Tag::Write { ctx, .. }, outcome) => Reply::WriteLost {
                    ctx,
                    not_applied: matches!(
                        outcome,
                        Outcome::Write(Err(RequestError::NotLeader { .. }))
                    ),
                },
                (
                    Tag::Read {
                        ctx,
                        known_commit,
                        read_index,
                    },
                    Outcome::Read(Ok(QueryResult::Value(value))),
                ) => {
                    match read_index {
                        Some(index) => env.checker.on_read_served(self.id, known_commit, index),
                        None => env
                            .checker
                            .driver(self.id, format!("read {ctx} served without a read index")),
                    }
                    Reply::Read {
                        ctx,
                        mod_index: value.as_ref().map(|v| v.mod_index),
                        value: value.map(|v| v.value),
                    }
                }
                (Tag::Read { ctx, .. }, _) => Reply::ReadFailed { ctx },
            };
            env.replies.push((self.id, reply));
        }
    }

    /// Takes the snapshot the replica asks for, if any: its file, then its
    /// mark, then the replica compacts. A disk fault may strike there.
    fn maybe_compact(&mut self, env: &mut Env) -> Option<Stopped> {
        let replica = self.replica.as_mut()?;
        let job = replica.snapshot_job()?;
        let snapshot = job.snapshot();
        let write = Write::OwnSnapshot(&snapshot);
        let result = match self.disk.decide(write, env.rng) {
            Ok(result) => result,
            Err(e) => {
                env.checker.driver(self.id, e);
                replica.snapshot_failed(snapshot.meta.index, "refused by the disk".into());
                let outcomes = replica.take_outcomes();
                self.route(env, outcomes);
                return None;
            }
        };
        self.disk.apply(write, result.cut());
        match result {
            WriteResult::Done => {
                let bytes = snapshot.data.len() as u64;
                if let Err(e) = replica.snapshot_recorded(snapshot.meta, bytes, job.applied_bytes) {
                    env.checker.driver(self.id, e.to_string());
                }
                self.stats.snapshots_taken += 1;
                None
            }
            WriteResult::SnapshotFileFailed(kind) => {
                // Nothing refers to the file: the node goes on without
                // this snapshot, as the server's snapshot thread reports.
                self.stats.disk_errors += 1;
                let why = format!("writing the snapshot file failed: {kind}");
                replica.snapshot_failed(snapshot.meta.index, why);
                let outcomes = replica.take_outcomes();
                self.route(env, outcomes);
                None
            }
            _ => {
                let file = result.cut() == WriteCut::SnapshotFile;
                self.stats.own_snapshot_file_crashes += u64::from(file);
                Some(self.strike(env, result))
            }
        }
    }
}

/// Puts the image into each InstallSnapshot leaving the core (which
/// keeps only the metadata): the newest snapshot on this node's disk,
/// as the server streams its newest snapshot file. It may be newer than
/// the one the core named (the catch-up margin delays compaction);
/// older would be a driver bug, reported.
fn fill_snapshots(
    id: NodeId,
    disk: &Disk,
    env: &mut Env,
    messages: &mut [crate::message::Message],
) {
    for m in messages.iter_mut() {
        let Some(wanted) = m.snapshot_to_send() else {
            continue;
        };
        match &disk.store.snapshot {
            Some(newest) if newest.meta.index >= wanted.meta.index => {
                *wanted = newest.clone();
            }
            other => env.checker.driver(
                id,
                format!(
                    "the core asks to send the snapshot at {} but the disk's newest is at {:?}",
                    wanted.meta.index,
                    other.as_ref().map(|s| s.meta.index)
                ),
            ),
        }
    }
}

/// Puts messages on the simulated wire.
fn send(env: &mut Env, messages: Vec<crate::message::Message>) {
    for m in messages {
        env.trace.mix(m.from ^ (m.to << 8) ^ (m.term << 16));
        env.net.send(m, env.now, env.rng);
    }
}
