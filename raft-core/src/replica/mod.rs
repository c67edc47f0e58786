//! One replica of the key-value store: a [`RawNode`], the [`KvStore`] it
//! applies to, and the life of every client request, with no IO.
//!
//! The server and the simulator both drive this same type (as quinn drives
//! quinn-proto's `Connection`): the driver moves bytes, keeps time and
//! touches disks; everything a request goes through is decided here, so the
//! simulator's thousands of seeds test the code that serves users.
//!
//! What it owns: request ids; write waiters, settled by the term of the
//! entry finally applied at their index, never by another proposal landing
//! there; read contexts unique across restarts; membership-change waiters
//! (through the joint phase); the snapshot policy and snapshot requests;
//! the rule that a lone voter campaigns at once.
//!
//! The loop a driver runs:
//!
//! ```
//! use raft_core::replica::{Query, Replica, SnapshotPolicy};
//! use raft_core::{Command, Config, Membership, Op, PersistedState};
//!
//! let persisted = PersistedState::bootstrap(Membership::new(vec![1]));
//! let mut r = Replica::new(Config::new(1), persisted, SnapshotPolicy::default()).unwrap();
//! // Client id 0: no session (a client wanting at-most-once writes
//! // proposes `Op::Register` first and numbers its writes under the id).
//! let put = Command { client_id: 0, seq: 0, op: Op::Put { key: "k".into(), value: "v".into() } };
//! let id = r.propose(put).unwrap();
//! while r.has_ready() {
//!     let mut ready = r.ready();
//!     let _early = std::mem::take(&mut ready.messages); // send now
//!     // if ready.must_persist: write ready.snapshot, ready.entries and
//!     // ready.hard_state, one fsync
//!     let _after = std::mem::take(&mut ready.persisted_messages); // send now
//!     r.advance(ready, None).unwrap();
//! }
//! let outcomes = r.take_outcomes();
//! assert_eq!(outcomes[0].0, id);
//! let raft_core::replica::QueryResult::Value(Some(got)) = r.query(&Query::Get("k".into())) else { panic!() };
//! assert_eq!(got.value, "v");
//! ```

mod requests;
mod snapshot_policy;

use crate::config::{Config, ConfigError, NotAccepted, StepError};
use crate::kv::{Command, KvStore, SnapshotDecodeError};
use crate::message::Message;
use crate::raw_node::{RawNode, Ready};
use crate::types::{
    Compacted, ConfChange, Index, NodeId, Payload, PersistedState, Snapshot, SnapshotMeta,
};

pub use requests::{Outcome, Query, QueryResult, RequestError, RequestId, Versioned, WriteOutcome};
pub use snapshot_policy::{SnapshotPolicy, DEFAULT_CATCHUP_ENTRIES};

use requests::Pending;
use snapshot_policy::SnapshotState;

/// Why a replica cannot start or go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// The Raft configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A snapshot (persisted, or received from the leader) does not decode.
    #[error("the snapshot at index {index} does not decode: {error}")]
    BadSnapshot {
        /// Its index.
        index: Index,
        /// Why.
        error: SnapshotDecodeError,
    },
}

/// Why a replica is not ready to serve ([`Replica::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// It is not in the cluster's configuration (removed, or joining).
    #[error("this node is not a member of the configuration")]
    NotMember,
    /// An election is under way.
    #[error("an election is under way")]
    Election,
    /// It knows no leader.
    #[error("no leader is known")]
    NoLeader,
    /// Its leader has not been heard from for an election timeout.
    #[error("the leader has not been heard from for {ticks} ticks")]
    LeaderSilent {
        /// Ticks since it last heard from the leader.
        ticks: u64,
    },
    /// It lags behind the committed log.
    #[error("{entries} committed entries are not applied yet")]
    Behind {
        /// Committed entries not applied.
        entries: u64,
    },
}

/// A snapshot the driver is asked to write: the state machine's image at
/// `meta.index`. `kv` is a clone that shares structure with the live store
/// (O(1)), so serializing it can happen off the driver's loop.
#[derive(Debug, Clone)]
pub struct SnapshotJob {
    /// The snapshot's metadata.
    pub meta: SnapshotMeta,
    /// The state machine at `meta.index`.
    pub kv: KvStore,
    /// The replica's applied-bytes mark at `meta.index` (hand it back).
    pub applied_bytes: u64,
}

impl SnapshotJob {
    /// The snapshot itself (serializes the state machine).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            meta: self.meta.clone(),
            data: self.kv.snapshot(),
        }
    }
}

/// A raw node, its state machine and the requests waiting on them.
pub struct Replica {
    raw: RawNode,
    kv: KvStore,
    pending: Pending,
    outcomes: Vec<(RequestId, Outcome)>,
    next_request: RequestId,
    next_ctx: u64,
    snapshots: SnapshotState,
    /// What the newest compaction removed, until the driver takes it.
    compacted: Option<Compacted>,
    /// Snapshots written and recorded by the driver, and checkpoints (see
    /// [`SnapshotPolicy`]), not yet handed to the core (within the catch-up
    /// margin of the applied index), in index order.
    uncompacted: Vec<SnapshotMeta>,
    /// An InstallSnapshot was held back because the core's log starts past
    /// the newest snapshot written: the next [`Replica::snapshot_job`]
    /// writes one now.
    image_wanted: bool,
    /// InstallSnapshot messages held back so far.
    snapshots_held: u64,
    /// `Faults::ignore_sessions`: the state machine applies retries again.
    #[cfg(feature = "faults")]
    ignore_sessions: bool,
    /// `Faults::ignore_conditions`: conditional writes apply unchecked.
    #[cfg(feature = "faults")]
    ignore_conditions: bool,
    /// `Faults::answer_replaced_writes`: a write whose index a new proposal
    /// takes is answered "not applied" at once.
    #[cfg(feature = "faults")]
    answer_replaced_writes: bool,
}

/// Spreads a seed over 64 bits (splitmix64's finalizer): request ids and
/// read contexts start at a value drawn from the node's seed, which the
/// driver makes differ on every start, so no answer meant for a read of an
/// earlier run can match a read of this one.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Replica {
    /// Starts from what the node persisted: the state machine comes from
    /// its snapshot (entries after it are applied again as they are handed
    /// out). A founder alone in its configuration becomes leader at once.
    pub fn new(
        config: Config,
        persisted: PersistedState,
        policy: SnapshotPolicy,
    ) -> Result<Self, ReplicaError> {
        let kv = match &persisted.snapshot {
            Some(s) => KvStore::restore(&s.data).map_err(|error| ReplicaError::BadSnapshot {
                index: s.meta.index,
                error,
            })?,
            None => KvStore::new(),
        };
        Self::with_state(config, persisted, kv, policy)
    }

    /// As [`Replica::new`], with the snapshot's state machine already
    /// decoded by the driver (e.g. off its loop).
    pub fn with_state(
        config: Config,
        persisted: PersistedState,
        mut kv: KvStore,
        policy: SnapshotPolicy,
    ) -> Result<Self, ReplicaError> {
        let seed = config.seed;
        kv.set_session_limit(config.session_limit);
        #[cfg(feature = "faults")]
        let ignore_sessions = config.faults.ignore_sessions;
        #[cfg(feature = "faults")]
        let ignore_conditions = config.faults.ignore_conditions;
        #[cfg(feature = "faults")]
        let reuse_read_contexts = config.faults.reuse_read_contexts;
        #[cfg(feature = "faults")]
        let answer_replaced_writes = config.faults.answer_replaced_writes;
        #[cfg(not(feature = "faults"))]
        let reuse_read_contexts = false;
        let snapshot = persisted
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.index, s.data.len() as u64));
        let mut raw = RawNode::new(config, persisted)?;
        let m = raw.membership();
        if m.voters == [raw.id()] && !m.is_joint() {
            // Nobody to wait for: a lone voter leads at once.
            raw.campaign();
        }
        Ok(Replica {
            raw,
            kv,
            pending: Pending::default(),
            outcomes: Vec::new(),
            next_request: mix(seed),
            // Unique across restarts: an answer to an earlier incarnation's
            // read must not match a read of this one.
            next_ctx: if reuse_read_contexts {
                1
            } else {
                mix(seed ^ 0x5EED_C0DE)
            },
            snapshots: SnapshotState::new(policy, snapshot.0, snapshot.1),
            compacted: None,
            uncompacted: Vec::new(),
            image_wanted: false,
            snapshots_held: 0,
            #[cfg(feature = "faults")]
            ignore_sessions,
            #[cfg(feature = "faults")]
            ignore_conditions,
            #[cfg(feature = "faults")]
            answer_replaced_writes,
        })
    }

    fn request_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        id
    }

    /// The raw node (status, role, term, configuration).
    pub fn raw(&self) -> &RawNode {
        &self.raw
    }

    /// The raw node, for what needs no request lifecycle (campaign, tick).
    pub fn raw_mut(&mut self) -> &mut RawNode {
        &mut self.raw
    }

    /// The state machine.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Advances the logical clock one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        self.raw.step(m)
    }

    /// Proposes a write; its [`Outcome::Write`] comes once the entry at its
    /// index is applied (or the replica stops).
    pub fn propose(&mut self, command: Command) -> Result<RequestId, NotAccepted> {
        let index = self.raw.propose(command)?;
        let id = self.request_id();
        #[cfg(feature = "faults")]
        if self.answer_replaced_writes {
            let replaced: Vec<_> = self
                .pending
                .writes
                .keys()
                .filter(|(i, _)| *i == index)
                .copied()
                .collect();
            for key in replaced {
                if let Some(old) = self.pending.writes.remove(&key) {
                    self.outcomes
                        .push((old, Outcome::Write(Err(RequestError::NotApplied))));
                }
            }
        }
        self.pending.writes.insert((index, self.raw.term()), id);
        Ok(id)
    }

    /// Starts a linearizable read (ReadIndex, thesis §6.4); its
    /// [`Outcome::Read`] comes once the state machine reached the read index.
    pub fn read(&mut self, query: Query) -> Result<RequestId, NotAccepted> {
        let ctx = self.next_ctx;
        self.next_ctx = self.next_ctx.wrapping_add(1);
        self.raw.read_index(ctx)?;
        let id = self.request_id();
        self.pending.reads_asked.insert(ctx, (id, query));
        Ok(id)
    }

    /// The read waiting for its read index under context `ctx` (the
    /// `ReadState::ctx` of a `Ready`), so the simulator can tell which
    /// request a read index serves.
    pub(crate) fn read_request(&self, ctx: u64) -> Option<RequestId> {
        self.pending.reads_asked.get(&ctx).map(|(id, _)| *id)
    }

    /// Answers a query from the local state machine (a stale read).
    pub fn query(&self, query: &Query) -> QueryResult {
        query.run(&self.kv)
    }

    /// Proposes a membership change; its [`Outcome::Conf`] comes once the
    /// configuration it leads to is applied.
    pub fn change_membership(
        &mut self,
        change: ConfChange,
        force: bool,
    ) -> Result<RequestId, NotAccepted> {
        let index = self.raw.propose_conf_change(change, force)?;
        let id = self.request_id();
        self.pending.confs.insert((index, self.raw.term()), id);
        Ok(id)
    }

    /// Hands leadership to `to` (asking the leader for itself succeeds at once).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), NotAccepted> {
        if to == self.raw.id() && self.raw.is_leader() {
            return Ok(());
        }
        self.raw.transfer_leader(to)
    }

    /// The member to hand leadership to before this leader stops (a
    /// graceful shutdown, so that a rolling restart has no election gap):
    /// the voter of the configuration in force, other than this node,
    /// with the most of the log, among those heard from within an election
    /// timeout (one that went quiet may be down; a transfer to it would
    /// only stall writes until it times out). `None` when this node is not
    /// the leader or no voter qualifies.
    pub fn successor(&self) -> Option<NodeId> {
        if !self.raw.is_leader() {
            return None;
        }
        let status = self.raw.status();
        let membership = self.raw.membership();
        let quiet_after = self.raw.election_tick();
        status
            .followers
            .iter()
            .filter(|f| membership.is_voter(f.id) && f.id != self.raw.id())
            .filter(|f| f.ticks_since_contact < quiet_after)
            // The highest match; among equals the lowest id, so the choice
            // is deterministic.
            .max_by_key(|f| (f.match_index, std::cmp::Reverse(f.id)))
            .map(|f| f.id)
    }

    /// Asks for a snapshot covering everything applied now; its
    /// [`Outcome::Snapshot`] names the index of the snapshot that does.
    /// Pick the job up with [`Replica::snapshot_job`].
    pub fn request_snapshot(&mut self) -> RequestId {
        let id = self.request_id();
        let applied = self.kv.applied_index();
        if applied <= self.snapshots.index {
            let index = self.snapshots.index;
            self.outcomes.push((id, Outcome::Snapshot(Ok(index))));
        } else {
            self.pending.snapshots.push((applied, id));
        }
        id
    }

    /// Whether [`Replica::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// What to send, persist and apply now. Carry it out as
    /// [`Ready`] documents (send `messages`; persist if `must_persist`; send
    /// `persisted_messages`), then hand it back with [`Replica::advance`].
    ///
    /// An InstallSnapshot goes out only when a snapshot at or past the
    /// core's snapshot index is written (the driver sends its newest file):
    /// after a checkpoint the core's log may start past it. Such a message
    /// is held back and a snapshot is written now; the core sends it again
    /// when its wait for the follower times out.
    pub fn ready(&mut self) -> Ready {
        let mut ready = self.raw.ready();
        let written = self.snapshots.index;
        let mut held = 0;
        for messages in [&mut ready.messages, &mut ready.persisted_messages] {
            messages.retain_mut(|m| match m.snapshot_to_send() {
                Some(s) if s.meta.index > written => {
                    held += 1;
                    false
                }
                _ => true,
            });
        }
        self.image_wanted |= held > 0;
        self.snapshots_held += held;
        ready
    }

    /// How many InstallSnapshot messages [`Replica::ready`] held back
    /// because no snapshot written reached the core's log start.
    pub fn snapshots_held(&self) -> u64 {
        self.snapshots_held
    }

    /// Takes back a `Ready` whose messages are sent and whose state is
    /// persisted: installs its snapshot in the state machine (`decoded`: the
    /// snapshot's state machine if the driver decoded it already), applies
    /// its committed entries, settles the requests they decide and serves
    /// the reads they make possible.
    pub fn advance(
        &mut self,
        mut ready: Ready,
        decoded: Option<KvStore>,
    ) -> Result<(), ReplicaError> {
        if let Some(snapshot) = &ready.snapshot {
            let meta = &snapshot.meta;
            // The session limit is the replica's, not the image's.
            let session_limit = self.kv.session_limit();
            self.kv = match decoded {
                Some(kv) if kv.applied_index() == meta.index => kv,
                _ => {
                    KvStore::restore(&snapshot.data).map_err(|error| ReplicaError::BadSnapshot {
                        index: meta.index,
                        error,
                    })?
                }
            };
            self.kv.set_session_limit(session_limit);
            self.pending
                .snapshot_installed(meta.index, &mut self.outcomes);
            self.snapshots
                .installed(meta.index, snapshot.data.len() as u64);
        }
        for entry in &ready.committed_entries {
            self.snapshots.applied(entry.approx_size() as u64);
            #[cfg(feature = "faults")]
            let applied =
                self.kv
                    .apply_with_faults(entry, self.ignore_sessions, self.ignore_conditions);
            #[cfg(not(feature = "faults"))]
            let applied = self.kv.apply(entry);
            match &entry.payload {
                Payload::Config(m) => {
                    self.pending
                        .settle_conf(entry.index, entry.term, m, &mut self.outcomes);
                }
                _ => self
                    .pending
                    .settle_confs_at(entry.index, &mut self.outcomes),
            }
            self.pending.settle_writes(
                entry.index,
                entry.term,
                applied.result.as_ref().map(|r| (r, applied.applied_at)),
                &mut self.outcomes,
            );
        }
        let leader = self.raw.leader();
        for rs in ready.read_states.drain(..) {
            self.pending.read_index_known(rs.ctx, rs.index);
        }
        for ctx in ready.dropped_reads.drain(..) {
            self.pending.read_dropped(ctx, leader, &mut self.outcomes);
        }
        self.pending.serve_reads(&self.kv, &mut self.outcomes);
        self.raw.advance(ready);
        self.checkpoint();
        if !self.uncompacted.is_empty() {
            self.compact_due(false);
        }
        Ok(())
    }

    /// The outcomes of requests decided since the last call, to route to
    /// whoever asked.
    pub fn take_outcomes(&mut self) -> Vec<(RequestId, Outcome)> {
        std::mem::take(&mut self.outcomes)
    }

    /// A snapshot to write now, if one is due (by the [`SnapshotPolicy`] or
    /// a [`Replica::request_snapshot`]) and none is being written. Report
    /// back with [`Replica::snapshot_recorded`] or
    /// [`Replica::snapshot_failed`].
    pub fn snapshot_job(&mut self) -> Option<SnapshotJob> {
        let applied = self.kv.applied_index();
        let asked = !self.pending.snapshots.is_empty() || self.image_wanted;
        if !self.snapshots.due(applied, asked) {
            return None;
        }
        match self.meta_at(applied) {
            Ok(meta) => {
                self.image_wanted = false;
                self.snapshots.started(applied);
                Some(SnapshotJob {
                    meta,
                    kv: self.kv.clone(),
                    applied_bytes: self.snapshots.applied_bytes(),
                })
            }
            Err(e) => {
                self.snapshot_failed(applied, e.to_string());
                None
            }
        }
    }

    /// The snapshot of a job is durable (`bytes`: the size of its image): it
    /// is the newest snapshot, and the
    /// log it covers is dropped once `catchup_entries` more entries are
    /// applied (at once when a [`Replica::request_snapshot`] waits for it),
    /// so a follower less than that behind still gets entries. A snapshot
    /// overtaken by a newer one (installed from the leader meanwhile) is
    /// ignored.
    pub fn snapshot_recorded(
        &mut self,
        snapshot: SnapshotMeta,
        bytes: u64,
        applied_bytes: u64,
    ) -> Result<(), NotAccepted> {
        let index = snapshot.index;
        self.snapshots.finished();
        let r = if index > self.snapshots.index && index <= self.raw.snapshot_index() {
            // The core compacted to a checkpoint past it while it was being
            // written: its metadata came from the log when the job started,
            // and it is the newest file to send; nothing is left to compact.
            self.snapshots.taken(index, bytes, applied_bytes);
            Ok(())
        } else if index > self.snapshots.index {
            self.check_meta(&snapshot).map(|()| {
                self.snapshots.taken(index, bytes, applied_bytes);
                let asked = !self.pending.snapshots.is_empty();
                self.keep_for_compaction(snapshot);
                self.compact_due(asked);
            })
        } else {
            Ok(())
        };
        self.answer_snapshot_requests(r.as_ref().err().map(|e| e.to_string()));
        r
    }

    /// A checkpoint of the log in memory when one is due: the applied index
    /// becomes a point the core compacts to (after the catch-up margin)
    /// with no image written there.
    fn checkpoint(&mut self) {
        let applied = self.kv.applied_index();
        if !self.snapshots.checkpoint_due(applied) {
            return;
        }
        // Applied entries never change, and a checkpoint is newer than the
        // core's snapshot: only a leader's snapshot installed past the
        // applied index (nothing to checkpoint then) refuses.
        if let Ok(meta) = self.raw.snapshot_meta(applied) {
            self.snapshots.checkpointed(applied);
            self.keep_for_compaction(meta);
        }
    }

    /// Keeps `meta` until it is handed to the core, in index order.
    fn keep_for_compaction(&mut self, meta: SnapshotMeta) {
        let at = self.uncompacted.partition_point(|s| s.index < meta.index);
        if self
            .uncompacted
            .get(at)
            .is_some_and(|s| s.index == meta.index)
        {
            return;
        }
        self.uncompacted.insert(at, meta);
    }

    /// The metadata of a snapshot at `index`, the applied index: the
    /// core's own when a checkpoint compacted its log right there.
    fn meta_at(&self, index: Index) -> Result<SnapshotMeta, NotAccepted> {
        if index == self.raw.snapshot_index() {
            return Ok(self.raw.snapshot_meta_in_force());
        }
        self.raw.snapshot_meta(index)
    }

    /// Whether `meta` is what a snapshot at its index must carry (the core
    /// checks again when it compacts; this reports a wrong one at once).
    fn check_meta(&self, meta: &SnapshotMeta) -> Result<(), NotAccepted> {
        let expected = self.raw.snapshot_meta(meta.index)?;
        if &expected != meta {
            return Err(NotAccepted::BadSnapshot {
                index: meta.index,
                reason: "metadata does not match the log",
            });
        }
        Ok(())
    }

    /// Hands the core the newest written snapshot or checkpoint that is at
    /// least `catchup_entries` behind the applied index (any newest one when
    /// `now`), which drops the log it covers; older ones are forgotten, and
    /// so are those a leader's snapshot overtook. The log
    /// before a snapshot cannot be kept once the core holds it, so this
    /// delay is what keeps the margin (etcd compacts at
    /// `snapshot index - SnapshotCatchUpEntries` for the same reason).
    fn compact_due(&mut self, now: bool) {
        let in_core = self.raw.snapshot_index();
        self.uncompacted.retain(|s| s.index > in_core);
        let applied = self.kv.applied_index();
        let margin = if now {
            0
        } else {
            self.snapshots.catchup_entries()
        };
        let Some(due) = self
            .uncompacted
            .iter()
            .rposition(|s| s.index.saturating_add(margin) <= applied)
        else {
            return;
        };
        let mut older = self.uncompacted.drain(..=due);
        let Some(snapshot) = older.next_back() else {
            return;
        };
        drop(older);
        match self.raw.compact_returning(snapshot) {
            // Not taken by the driver, the previous one is freed here.
            Ok(gone) => self.compacted = Some(gone),
            // Checked when recorded, and the log below the applied index
            // never changes but by a leader's snapshot (dropped above).
            Err(_) => debug_assert!(false, "a recorded snapshot no longer matches the log"),
        }
    }

    /// What the newest compaction (in [`Replica::snapshot_recorded`] or,
    /// once the catch-up margin is applied, [`Replica::advance`]) removed from the log
    /// (the entries its snapshot covers and the snapshot it replaced), for
    /// the driver to free where that costs its loop nothing. Not taken, it
    /// is freed at the next compaction.
    pub fn take_compacted(&mut self) -> Option<Compacted> {
        self.compacted.take()
    }

    /// Writing a job's snapshot failed (or it was overtaken and dropped, with
    /// `why` saying so); nothing changes, and the next automatic attempt
    /// waits for another `every` entries.
    pub fn snapshot_failed(&mut self, index: Index, why: String) {
        self.snapshots.failed(index);
        self.answer_snapshot_requests(Some(why));
    }

    fn answer_snapshot_requests(&mut self, error: Option<String>) {
        let current = self.snapshots.index;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending.snapshots)
            .into_iter()
            .partition(|(wanted, _)| error.is_some() || *wanted <= current);
        for (_, id) in done {
            let answer = match &error {
                Some(e) => Err(RequestError::Snapshot(e.clone())),
                None => Ok(current),
            };
            self.outcomes.push((id, Outcome::Snapshot(answer)));
        }
        self.pending.snapshots = waiting;
    }

    /// The newest snapshot's index.
    pub fn snapshot_index(&self) -> Index {
        self.snapshots.index
    }

    /// Whether a snapshot job is out (between [`Replica::snapshot_job`] and
    /// its report).
    pub fn snapshot_running(&self) -> bool {
        self.snapshots.running.is_some()
    }

    /// Ends every waiting request: the node stops (shutdown, storage
    /// failure). Writes and membership changes get an unknown outcome, since
    /// they may still be committed by the others.
    pub fn stop(&mut self, why: &'static str) -> Vec<(RequestId, Outcome)> {
        self.pending.stop(why, &mut self.outcomes);
        self.take_outcomes()
    }

    /// Forgets the requests `gone` picks (their clients gave up); no
    /// outcome will come for them.
    pub fn forget(&mut self, gone: impl Fn(RequestId) -> bool) {
        self.pending.forget(gone);
    }

    /// Whether this replica can serve linearizable requests now (a
    /// readiness probe, as etcd's `/health`): it is a member, knows a leader
    /// it heard from within an election timeout (a leader: CheckQuorum keeps
    /// it honest), and has applied all but `max_apply_lag` committed entries.
    pub fn readiness(&self, max_apply_lag: u64) -> Result<(), NotReady> {
        let s = self.raw.status();
        if !s.membership.contains(s.id) {
            return Err(NotReady::NotMember);
        }
        match s.role {
            crate::types::Role::Leader => {}
            crate::types::Role::PreCandidate | crate::types::Role::Candidate => {
                return Err(NotReady::Election);
            }
            crate::types::Role::Follower if s.leader == 0 => return Err(NotReady::NoLeader),
            crate::types::Role::Follower => {
                if s.election_elapsed >= self.raw.election_tick() {
                    return Err(NotReady::LeaderSilent {
                        ticks: s.election_elapsed,
                    });
                }
            }
        }
        let behind = s.commit.saturating_sub(self.kv.applied_index());
        if behind > max_apply_lag {
            return Err(NotReady::Behind { entries: behind });
        }
        Ok(())
    }

    /// How many requests wait.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// How many writes wait for the entry they were proposed as to be
    /// settled.
    pub fn pending_writes(&self) -> usize {
        self.pending.writes.len()
    }
}

#[cfg(test)]
mod tests;
