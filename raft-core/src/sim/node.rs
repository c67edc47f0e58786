//! One simulated server: a [`RawNode`], the [`KvStore`] it applies to, the
//! durable store its `Ready`s asked to persist, and the driver loop that
//! carries out each `Ready` in the documented order.

use std::collections::BTreeMap;

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
use crate::types::{
    Entry, HardState, Index, Membership, NodeId, Payload, PersistedState, Role, Snapshot, Term,
};

/// What a node persisted: all that survives a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableStore {
    /// The last hard state persisted.
    pub hard_state: HardState,
    /// The newest snapshot persisted.
    pub snapshot: Option<Snapshot>,
    /// The persisted entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

impl DurableStore {
    /// The snapshot's last index (0: none).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// The last persisted index.
    pub fn last_index(&self) -> Index {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The term at `index`, if persisted (the snapshot's own index included).
    pub fn term(&self, index: Index) -> Option<Term> {
        let snap = self.snapshot_index();
        if index == snap {
            return Some(self.snapshot.as_ref().map_or(0, |s| s.meta.term));
        }
        self.entry(index).map(|e| e.term)
    }

    /// The persisted entry at `index`.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.snapshot_index() + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// The configuration in force at `index` (the newest configuration
    /// entry at or below it, else the snapshot's), with the index and term
    /// of the entry (or snapshot) it comes from. `None` for a node that
    /// persisted no configuration yet (a joining node) or an index outside
    /// what it persisted.
    pub fn config_at(&self, index: Index) -> Option<(Index, Term, &Membership)> {
        let snap = self.snapshot_index();
        if index < snap || index > self.last_index() {
            return None;
        }
        for e in self.entries[..(index - snap) as usize].iter().rev() {
            if let Payload::Config(m) = &e.payload {
                return Some((e.index, e.term, m));
            }
        }
        self.snapshot
            .as_ref()
            .map(|s| (s.meta.index, s.meta.term, &s.meta.membership))
    }

    /// Appends entries, replacing the stored ones from the first new index
    /// on. Fails (changing nothing) if they would leave a gap.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let snap = self.snapshot_index();
        if first <= snap || first > self.last_index() + 1 {
            return Err(format!(
                "entries from {first} do not attach to the durable log (snapshot {snap}, last {})",
                self.last_index()
            ));
        }
        if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
            return Err("entries to persist are not contiguous".into());
        }
        self.entries.truncate((first - snap - 1) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Persists a snapshot received from the leader: it replaces the log.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    /// Persists a snapshot this node took and drops the entries it covers.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let drop = snapshot.meta.index.saturating_sub(self.snapshot_index()) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = Some(snapshot);
    }

    /// What a restarting node is handed.
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// An answer from a node to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The write the client knows by `ctx` was applied with this result.
    Write { ctx: u64, result: OpResult },
    /// The write `ctx` was not applied here (`not_applied`: provably never,
    /// so even a write without a session may be sent again), or its
    /// outcome is unknown: retry it with the same `(client_id, seq)`
    /// (applied at most once).
    WriteLost { ctx: u64, not_applied: bool },
    /// The read `ctx` returned `value`.
    Read { ctx: u64, value: Option<String> },
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
    /// Times it crashed.
    pub crashes: u64,
    /// Times it became leader.
    pub elected: u64,
    /// As leader, followers it found to have lost log entries they had
    /// acknowledged (`Ready::lost_logs`). In the simulator no node ever
    /// loses what it acknowledged, so each one is a false alarm.
    pub lost_logs: u64,
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
    durable: DurableStore,
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
    /// Dies in the middle of its next durable write (armed by
    /// [`super::FaultAction::CrashAtWrite`]).
    crash_at_write: bool,
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
            durable,
            next_tick: 0,
            restarts: 0,
            policy,
            requests: BTreeMap::new(),
            stats: NodeStats::default(),
            commit_seen: 0,
            crash_at_write: false,
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
        &self.durable
    }

    /// The log entries it holds in memory (after its snapshot), in order.
    pub fn log(&self) -> Vec<Entry> {
        let Some(raw) = self.raw() else {
            return Vec::new();
        };
        (self.durable.snapshot_index() + 1..)
            .map_while(|i| raw.entry(i).cloned())
            .collect()
    }

    /// The index of its newest snapshot (in memory and on disk alike).
    pub fn snapshot_index(&self) -> Index {
        self.durable.snapshot_index()
    }

    /// How many times it restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Its counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Makes it die in the middle of its next durable write: the messages
    /// allowed to leave before the write go, the write is lost. Returns
    /// false (and arms nothing) when it is down.
    pub(crate) fn arm_crash_at_write(&mut self) -> bool {
        self.crash_at_write = self.is_up();
        self.crash_at_write
    }

    /// Whether it is set to die in the middle of its next durable write
    /// ([`super::FaultAction::CrashAtWrite`] not yet fired or called off).
    pub fn crash_at_write_armed(&self) -> bool {
        self.crash_at_write
    }

    /// Disarms a pending [`SimNode::arm_crash_at_write`]; returns whether
    /// one was pending.
    pub(crate) fn disarm_crash_at_write(&mut self) -> bool {
        std::mem::take(&mut self.crash_at_write)
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
        self.crash_at_write = false;
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
        let replica = Replica::new(config, self.durable.persisted(), self.policy)
            .map_err(|e| e.to_string())?;
        self.commit_seen = self.durable.hard_state.commit;
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
        let tag = Tag::Write { ctx };
        let id = replica.propose(cmd)?;
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
    /// Returns true when the node died in the middle of a write
    /// ([`SimNode::arm_crash_at_write`]).
    pub(crate) fn drive(&mut self, env: &mut Env) -> bool {
        loop {
            let Some(replica) = self.replica.as_mut() else {
                return false;
            };
            if !replica.has_ready() {
                return false;
            }
            let mut rd = replica.ready();
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
            env.checker.on_sent(self.id, &rd.messages);
            send(env, std::mem::take(&mut rd.messages));
            if rd.must_persist && self.crash_at_write {
                // Killed during the fsync: nothing of this Ready is durable,
                // but its early messages are on the wire.
                env.trace.mix_str("crash at write");
                self.crash();
                return true;
            }
            // 2. Persist: snapshot, entries, hard state (only what must be
            // durable: a Ready that only moves the commit writes nothing).
            if rd.must_persist {
                if let Some(snap) = &rd.snapshot {
                    env.checker.on_snapshot(self.id, &snap.meta);
                    self.durable.install_snapshot(snap.clone());
                    self.stats.snapshots_installed += 1;
                }
                if !rd.entries.is_empty() {
                    // Checked against the commit known before this Ready:
                    // entries it commits are the ones being written now.
                    env.checker
                        .on_entries(self.id, &self.durable, self.commit_seen, &rd.entries);
                    if let Err(e) = self.durable.append(&rd.entries) {
                        env.checker.driver(self.id, e);
                    }
                }
                if let Some(hs) = rd.hard_state {
                    self.durable.hard_state = hs;
                }
                // What is durable now counts toward the checker's own
                // judgement of what a quorum holds.
                env.checker.on_durable(self.id, &self.durable);
            } else if rd.snapshot.is_some() || !rd.entries.is_empty() {
                env.checker.driver(
                    self.id,
                    "a Ready with a snapshot or entries must persist".into(),
                );
            }
            if let Some(hs) = rd.hard_state {
                if hs.commit > self.commit_seen {
                    let snap = self.durable.snapshot_index();
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
            self.route_outcomes(env);
            self.maybe_compact(env);
        }
    }

    /// Hands each decided request's outcome to the client waiting for it.
    fn route_outcomes(&mut self, env: &mut Env) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        for (id, outcome) in replica.take_outcomes() {
            let Some(tag) = self.requests.remove(&id) else {
                continue;
            };
            let reply = match (tag, outcome) {
                (Tag::Write { ctx }, Outcome::Write(Ok(w))) => Reply::Write {
                    ctx,
                    result: w.result,
                },
                (Tag::Write { ctx }, outcome) => Reply::WriteLost {
                    ctx,
                    not_applied: matches!(
                        outcome,
                        Outcome::Write(Err(
                            RequestError::NotApplied | RequestError::NotLeader { .. }
                        ))
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
                    Reply::Read { ctx, value }
                }
                (Tag::Read { ctx, .. }, _) => Reply::ReadFailed { ctx },
            };
            env.replies.push((self.id, reply));
        }
    }

    fn maybe_compact(&mut self, env: &mut Env) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let Some(job) = replica.snapshot_job() else {
            return;
        };
        let snapshot = job.snapshot();
        self.durable.compact(snapshot.clone());
        if let Err(e) = replica.snapshot_recorded(snapshot, job.applied_bytes) {
            env.checker.driver(self.id, e.to_string());
        }
        self.stats.snapshots_taken += 1;
    }
}

/// Puts messages on the simulated wire.
fn send(env: &mut Env, messages: Vec<crate::message::Message>) {
    for m in messages {
        env.trace.mix(m.from ^ (m.to << 8) ^ (m.term << 16));
        env.net.send(m, env.now, env.rng);
    }
}
