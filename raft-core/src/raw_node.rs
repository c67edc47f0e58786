//! The driver-facing API: inputs in, [`Ready`] out (raft-rs's `RawNode`).
//!
//! ```
//! use raft_core::{Command, Config, Membership, Op, PersistedState, RawNode};
//!
//! // A single-node cluster elects itself and commits a put.
//! let founders = PersistedState::bootstrap(Membership::new(vec![1]));
//! let mut node = RawNode::new(Config::new(1), founders).unwrap();
//! let mut store = raft_core::KvStore::new();
//! node.campaign();
//! let mut index = None;
//! for _ in 0..10 {
//!     if node.is_leader() && index.is_none() {
//!         let op = Op::Put { key: "k".into(), value: "v".into() };
//!         index = Some(node.propose(Command { client_id: 0, seq: 0, op }).unwrap());
//!     }
//!     let ready = node.ready();
//!     // 1. send ready.messages (they may leave before the write)
//!     // 2. if ready.must_persist: persist ready.snapshot / ready.entries /
//!     //    ready.hard_state (one fsync)
//!     // 3. send ready.persisted_messages
//!     // 4. apply ready.committed_entries
//!     for entry in &ready.committed_entries {
//!         store.apply(entry);
//!     }
//!     node.advance(ready);
//! }
//! assert_eq!(store.get("k"), Some("v"));
//! ```

use crate::config::{Config, ConfigError, NotAccepted, StepError};
use crate::kv::Command;
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::ProgressState;
use crate::raft::{Raft, ReadState};
use crate::types::{
    Compacted, ConfChange, Entry, HardState, Index, Membership, NodeId, Payload, PersistedState,
    Role, RoleCause, Snapshot, SnapshotMeta, Term,
};

/// What the driver must do next, in this order:
///
/// 1. Send `messages` now: they promise nothing that is not durable yet.
/// 2. If `must_persist`: persist `snapshot` (and restore the state machine
///    from it), then `entries` (an entry at an index already stored
///    replaces it and all after it), then `hard_state`; make them durable
///    (one fsync). Otherwise the Ready writes nothing that must survive a
///    crash and the driver may skip the write.
/// 3. Only then send `persisted_messages`: a vote or an acknowledgement must
///    never leave before the state it promises is on disk.
/// 4. Apply `committed_entries` in order and answer waiting clients.
/// 5. Serve `read_states` once the applied index reaches their index; fail
///    the reads in `dropped_reads`.
/// 6. Hand the `Ready` back with [`RawNode::advance`].
#[derive(Debug, Default)]
#[must_use = "a Ready must be carried out and handed back with advance()"]
pub struct Ready {
    /// The hard state: when `must_persist`, the one to write (if it differs
    /// from the last one written); otherwise only the commit index moved,
    /// and writing it is optional.
    pub hard_state: Option<HardState>,
    /// Whether this Ready holds state that must be durable before
    /// `persisted_messages` leave: a snapshot, entries, or a new term or
    /// vote. A Ready that only moves the commit index needs no write: the
    /// commit index is volatile state (paper, figure 2) that a restarted
    /// node learns again from the leader, and no message depends on it
    /// being on disk.
    pub must_persist: bool,
    /// A snapshot received from the leader: persist it and restore the
    /// state machine from it before applying `committed_entries`.
    pub snapshot: Option<Snapshot>,
    /// Entries to append to the durable log.
    pub entries: Vec<Entry>,
    /// Messages that may leave before this Ready is persisted: a leader's
    /// appends and heartbeats while its term and vote are already durable.
    /// The leader writes its log in parallel with replicating it (thesis
    /// §10.2.1); its own copy counts toward commit only once `advance`
    /// reports it persisted.
    pub messages: Vec<Message>,
    /// Messages that must wait until this Ready is durable: votes, vote
    /// requests of a new term, a follower's acknowledgements, and anything
    /// sent by a node whose term or vote just changed.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in log order.
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads that may be served once applied up to their index.
    pub read_states: Vec<ReadState>,
    /// Contexts of reads that will not be answered (leadership lost).
    pub dropped_reads: Vec<u64>,
    /// The role and leader, when either changed.
    pub soft_state: Option<SoftState>,
    /// Leader: followers found since the last `Ready` to have lost log
    /// entries they had acknowledged. Nothing more is replicated to them;
    /// the driver should say so loudly (the operator removes and re-adds
    /// the member).
    pub lost_logs: Vec<LostLog>,
}

/// A follower whose log went backwards below what it had acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostLog {
    /// The follower.
    pub id: NodeId,
    /// The index it had acknowledged as durable.
    pub acknowledged: Index,
    /// Where its log now ends (or stops matching the leader's).
    pub reported: Index,
}

/// Volatile state worth reporting when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader it knows (0: none).
    pub leader: NodeId,
    /// Why it took that role or follows that leader.
    pub cause: RoleCause,
}

impl SoftState {
    /// What a change is reported for: the role and the leader (a new
    /// cause alone is no change).
    fn key(&self) -> (Role, NodeId) {
        (self.role, self.leader)
    }
}

/// A follower's replication state as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower.
    pub id: NodeId,
    /// Highest index known replicated on it.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// Replication mode.
    pub state: ProgressState,
    /// Ticks since it last answered.
    pub ticks_since_contact: u64,
}

/// A snapshot of a node's state for `/status`, metrics and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Vote in the current term (0: none).
    pub vote: NodeId,
    /// Known leader (0: none).
    pub leader: NodeId,
    /// First index held in memory.
    pub first_index: Index,
    /// Last log index.
    pub last_index: Index,
    /// Commit index.
    pub commit: Index,
    /// Highest index handed out to apply.
    pub applied: Index,
    /// Highest index known durable.
    pub persisted: Index,
    /// Index of the newest snapshot.
    pub snapshot_index: Index,
    /// The configuration in force (the newest in the log).
    pub membership: Membership,
    /// The log index of that configuration's entry.
    pub config_index: Index,
    /// Leader only: each follower's progress, in id order.
    pub followers: Vec<FollowerProgress>,
    /// The target of a leadership transfer in progress.
    pub transferee: Option<NodeId>,
    /// Messages rejected as malformed or misaddressed so far.
    pub rejected_messages: u64,
    /// Ticks since the election timer was last reset.
    pub election_elapsed: u64,
    /// The tick count at which the timer fires: a follower's or
    /// candidate's randomized election timeout; a leader's CheckQuorum
    /// interval (`election_tick`), after which it counts who answered.
    pub election_timeout: u64,
}

/// A Raft node driven from outside: the only way in and out of the protocol.
pub struct RawNode {
    raft: Raft,
    /// The hard state last reported in a Ready.
    prev_hard_state: HardState,
    /// The hard state last handed out to be made durable (its commit index
    /// may lag: commit-only changes need no write).
    durable_hard_state: HardState,
    prev_soft_state: SoftState,
}

impl RawNode {
    /// Creates a node from what it persisted. The configuration is the
    /// newest one in the log (or the snapshot's): a founding member of a new
    /// cluster starts from [`PersistedState::bootstrap`]; a member joining an
    /// existing cluster starts from `PersistedState::default()`, with no
    /// configuration, never campaigns, and learns it from the leader.
    pub fn new(config: Config, persisted: PersistedState) -> Result<Self, ConfigError> {
        config.validate()?;
        let PersistedState {
            hard_state,
            snapshot,
            entries,
        } = persisted;
        let log = RaftLog::restore(
            snapshot.map(|s| s.meta).unwrap_or_default(),
            entries,
            hard_state.commit,
        );
        let raft = Raft::new(config, hard_state, log);
        let prev_hard_state = raft.hard_state();
        let prev_soft_state = SoftState {
            role: raft.role,
            leader: raft.leader,
            cause: raft.cause,
        };
        Ok(RawNode {
            raft,
            prev_hard_state,
            durable_hard_state: prev_hard_state,
            prev_soft_state,
        })
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Delivers a message from a peer. Malformed or misaddressed messages
    /// are rejected (and counted) without changing anything.
    pub fn step(&mut self, msg: Message) -> Result<(), StepError> {
        self.raft.step(msg)
    }

    /// Proposes a command; returns the index it will have if committed.
    /// The outcome arrives in `committed_entries`: the entry at that index
    /// with this node's current term is the command (another term there
    /// means it was lost and may be retried with the same `(client_id, seq)`).
    pub fn propose(&mut self, command: Command) -> Result<Index, NotAccepted> {
        self.raft.check_can_propose()?;
        Ok(self.raft.append_entry(Payload::command(command)))
    }

    /// Starts a linearizable read; its answer comes as a [`ReadState`] or a
    /// dropped context in a later `Ready`.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), NotAccepted> {
        self.raft.read_index(ctx)
    }

    /// Proposes a membership change (leader only); returns the index of its
    /// configuration entry. One change at a time, and none before this
    /// leader committed an entry of its term; a change of voters passes
    /// through a joint configuration that the leader leaves on its own once
    /// committed. Without `force`, a change after which the members heard
    /// from within an election timeout could not make a quorum is refused.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        force: bool,
    ) -> Result<Index, NotAccepted> {
        self.raft.propose_conf_change(&change, force)
    }

    /// Asks the leader to hand leadership to `to` (thesis §3.10).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), NotAccepted> {
        self.raft.transfer_leader(to)
    }

    /// Starts an election now (as if the election timer fired).
    pub fn campaign(&mut self) {
        self.raft.campaign();
    }

    /// The metadata a snapshot at `index` must carry. `index` must be
    /// applied and newer than the current snapshot.
    pub fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta, NotAccepted> {
        let log = &self.raft.log;
        if index > log.applied {
            return Err(NotAccepted::BadSnapshot {
                index,
                reason: "not applied yet",
            });
        }
        if index <= log.snapshot.index {
            return Err(NotAccepted::BadSnapshot {
                index,
                reason: "not newer than the current snapshot",
            });
        }
        let term = log.term(index).ok_or(NotAccepted::BadSnapshot {
            index,
            reason: "not in the log",
        })?;
        // The configuration in force at `index`, not a newer one appended
        // since: a snapshot must not carry a configuration its log lacks.
        Ok(SnapshotMeta {
            index,
            term,
            membership: log.config_at(index).1.clone(),
        })
    }

    /// Installs a snapshot the driver took (and already persisted; the core
    /// keeps its metadata only) and drops the log entries it covers. Lagging
    /// followers are sent a snapshot at least this new, whose image the
    /// driver supplies.
    pub fn compact(&mut self, snapshot: SnapshotMeta) -> Result<(), NotAccepted> {
        self.compact_returning(snapshot).map(drop)
    }

    /// [`RawNode::compact`], handing back what it removed (the entries and
    /// the old snapshot) for the driver to free off its loop.
    pub fn compact_returning(&mut self, snapshot: SnapshotMeta) -> Result<Compacted, NotAccepted> {
        let meta = self.snapshot_meta(snapshot.index)?;
        if meta != snapshot {
            return Err(NotAccepted::BadSnapshot {
                index: meta.index,
                reason: "metadata does not match the log",
            });
        }
        Ok(self.raft.log.compact(snapshot))
    }

    /// Whether [`RawNode::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        !r.msgs.is_empty()
            || r.has_pending_broadcast()
            || r.log.unstable_from <= r.log.last_index()
            || r.received_snapshot.is_some()
            || r.log.has_committed()
            || !r.reads.ready.is_empty()
            || !r.reads.dropped.is_empty()
            || !r.lost_logs.is_empty()
            || self.reported_hard_state() != self.prev_hard_state
            || self.soft_state().key() != self.prev_soft_state.key()
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.raft.role,
            leader: self.raft.leader,
            cause: self.raft.cause,
        }
    }

    fn reported_hard_state(&self) -> HardState {
        #[allow(unused_mut)]
        let mut hs = self.raft.hard_state();
        #[cfg(feature = "faults")]
        if self.raft.cfg.faults.forget_vote {
            hs.vote = self.prev_hard_state.vote;
        }
        hs
    }

    /// Collects what the driver must persist, send and apply.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush();
        let hs = self.reported_hard_state();
        let soft = self.soft_state();
        let snapshot = self.raft.received_snapshot.take();
        let entries = self.raft.log.take_unstable();
        let committed_entries = if snapshot.is_some() {
            Vec::new()
        } else {
            let max = self.raft.cfg.max_apply_bytes;
            self.raft.log.take_committed(max)
        };
        let durable = self.durable_hard_state;
        let term_or_vote_changed = (hs.term, hs.vote) != (durable.term, durable.vote);
        let must_persist = snapshot.is_some() || !entries.is_empty() || term_or_vote_changed;
        let hard_state = if must_persist {
            (hs != durable).then_some(hs)
        } else {
            (hs != self.prev_hard_state).then_some(hs)
        };
        // A leader whose term and vote are on disk may replicate before its
        // own write is durable; it won that term with a durable vote, and
        // its appends promise nothing about its own disk. Everything else
        // waits for the write.
        let early = self.raft.role == Role::Leader && !term_or_vote_changed;
        #[cfg(feature = "faults")]
        let early_acks = self.raft.cfg.faults.early_acks;
        #[cfg(not(feature = "faults"))]
        let early_acks = false;
        let (messages, persisted_messages) = std::mem::take(&mut self.raft.msgs)
            .into_iter()
            .partition(|m| match m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => early,
                MessageBody::AppendResponse { .. } => early_acks,
                _ => false,
            });
        Ready {
            hard_state,
            must_persist,
            snapshot,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            read_states: std::mem::take(&mut self.raft.reads.ready),
            dropped_reads: std::mem::take(&mut self.raft.reads.dropped),
            soft_state: (soft.key() != self.prev_soft_state.key()).then_some(soft),
            lost_logs: std::mem::take(&mut self.raft.lost_logs)
                .into_iter()
                .map(|(id, acknowledged, reported)| LostLog {
                    id,
                    acknowledged,
                    reported,
                })
                .collect(),
        }
    }

    /// Tells the node the driver carried out `ready`.
    pub fn advance(&mut self, ready: Ready) {
        if let Some(hs) = ready.hard_state {
            self.prev_hard_state = hs;
            if ready.must_persist {
                self.durable_hard_state = hs;
            }
        }
        if let Some(soft) = ready.soft_state {
            self.prev_soft_state = soft;
        }
        if let Some(last) = ready.entries.last() {
            self.raft.log.persisted_to(last.index, last.term);
            self.raft.on_persisted();
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    /// The configured election timeout, in ticks (the randomized one a
    /// follower waits is between this and twice this).
    pub fn election_tick(&self) -> u64 {
        self.raft.cfg.election_tick
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// Whether it is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.role == Role::Leader
    }

    /// Its current term.
    pub fn term(&self) -> Term {
        self.raft.term
    }

    /// The leader it knows of.
    pub fn leader(&self) -> Option<NodeId> {
        (self.raft.leader != 0).then_some(self.raft.leader)
    }

    /// The voting members.
    pub fn membership(&self) -> &Membership {
        &self.raft.membership
    }

    /// The log index of the configuration in force (0 or the snapshot's
    /// index when it comes from the snapshot).
    pub fn config_index(&self) -> Index {
        self.raft.config_index
    }

    /// The index of its last log entry.
    pub fn last_index(&self) -> Index {
        self.raft.log.last_index()
    }

    /// Its commit index.
    pub fn commit(&self) -> Index {
        self.raft.log.commit
    }

    /// The log entry at `index`, if held in memory.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.raft.log.entry(index)
    }

    /// The index of the snapshot its log starts after.
    pub fn snapshot_index(&self) -> Index {
        self.raft.log.snapshot.index
    }

    /// The metadata of the snapshot its log starts after.
    pub fn snapshot_meta_in_force(&self) -> SnapshotMeta {
        self.raft.log.snapshot.clone()
    }

    /// Its full status.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id(),
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: r.leader,
            first_index: r.log.first_index(),
            last_index: r.log.last_index(),
            commit: r.log.commit,
            applied: r.log.applied,
            persisted: r.log.persisted,
            snapshot_index: r.log.snapshot.index,
            membership: r.membership.clone(),
            config_index: r.config_index,
            followers: r
                .progress
                .iter()
                .map(|(&id, p)| FollowerProgress {
                    id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    state: p.state,
                    ticks_since_contact: p.ticks_since_contact,
                })
                .collect(),
            transferee: r.transferee,
            rejected_messages: r.rejected,
            election_elapsed: r.election_timer().0,
            election_timeout: r.election_timer().1,
        }
    }
}
