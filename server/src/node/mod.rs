//! The Raft loop: one task owns the [`Replica`] (raft-core's `RawNode`, the
//! key-value state machine and every request's lifecycle, the same type the
//! simulator drives) and the [`Storage`], and `select!`s over the tick timer,
//! inbound peer batches and client requests. It only does IO: persisting,
//! sending, the snapshot thread, and routing each request's outcome back. Everyone else talks to it through a [`NodeHandle`]
//! (requests with oneshot replies) and watches its role and leader through a
//! [`NodeView`] watch channel.
//!
//! After each input the loop drains whatever else is already queued (so many
//! proposals share one `Ready`: one fsync, one network round), then carries
//! out every `Ready` in the order the core demands: persist, send, apply,
//! serve reads, advance.
//!
//! - `handle`: [`NodeHandle`], the [`Request`]s it sends, and how the loop
//!   answers them.
//! - `snapshot`: the snapshot thread, and [`DecodedSnapshot`] (a leader's
//!   snapshot decoded off the loop).
//! - `error`: [`NodeError`], [`FatalError`], [`StartError`].
//!
//! The loop sends through an [`Outbound`] (the peer transport implements
//! it), so this module knows nothing of how messages travel.

mod error;
mod handle;
mod round_trip;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raft_core::replica::{Outcome, Replica, ReplicaError, RequestId, SnapshotPolicy};
use raft_core::wire::{NodeEvent, PeerBatch};
use raft_core::{
    Config, Index, Membership, Message, MessageBody, NodeId, Payload, PersistedState, Ready,
    SoftState, StepError,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::storage::Storage;

pub use error::{FatalError, NodeError, StartError};
use handle::{fail_request, Waiter};
pub use handle::{LogProgress, NodeHandle, NodeView, Request, MAX_LOG_WINDOW};
pub use snapshot::DecodedSnapshot;

/// Tests of the node and of the peer side that carries snapshots share one
/// InstallSnapshot message: `len` bytes of state at index 40, term 2.
#[cfg(test)]
pub(crate) fn test_snapshot_msg(len: usize) -> raft_core::Message {
    raft_core::Message {
        from: 1,
        to: 2,
        term: 3,
        body: raft_core::MessageBody::InstallSnapshot {
            snapshot: raft_core::Snapshot {
                meta: raft_core::SnapshotMeta {
                    index: 40,
                    term: 2,
                    membership: Default::default(),
                },
                data: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
            },
        },
    }
}
use snapshot::SnapshotWritten;

/// A node with more committed entries than this not yet applied is not
/// ready (`/readyz`).
const READY_MAX_APPLY_LAG: u64 = 10_000;
/// An apply (the committed entries of one Ready, or a snapshot install)
/// longer than this is counted and logged as slow.
const SLOW_APPLY: Duration = Duration::from_millis(100);

/// Inputs drained per loop turn before the `Ready` is processed.
const MAX_DRAIN: usize = 4096;

pub use raft_core::replica::{Query, QueryResult, WriteOutcome};

/// What the Raft loop needs besides the protocol state.
pub struct NodeOptions {
    /// Tick length.
    pub tick: Duration,
    /// Automatic snapshot threshold (0: off).
    pub snapshot_every: u64,
    /// Applied entries kept in the log after a snapshot (catch-up margin).
    pub snapshot_catchup_entries: u64,
    /// This node's base URL (for `/status`).
    pub url: String,
    /// Snapshots from the leader, decoded off the loop by their receiver.
    pub decoded: DecodedSnapshot,
    /// The member directory the loop keeps up to date.
    pub directory: Arc<Directory>,
}

/// Where the Raft loop's outgoing messages go: the peer transport
/// (`peer::Transport`). Its peers follow the configuration in the log.
pub trait Outbound: Send {
    /// Makes the senders match `peers` (id → base URL, this node excluded).
    fn set_peers(&mut self, peers: &BTreeMap<NodeId, String>);

    /// Queues messages for sending; never blocks.
    fn send(&self, messages: Vec<Message>);

    /// Whether messages were queued since the last call: the loop then
    /// yields, so that the senders on its thread write them.
    fn take_queued(&self) -> bool;
}

/// The Raft loop's state. Create with [`create`], run with [`Node::run`].
pub struct Node {
    /// The replica: Raft, the state machine and every request's lifecycle.
    replica: Replica,
    storage: Box<dyn Storage>,
    transport: Box<dyn Outbound>,
    metrics: Arc<Metrics>,
    opts: NodeOptions,
    view_tx: watch::Sender<NodeView>,
    /// What the node does, and how far its log is, for the `/events`
    /// readers.
    events: broadcast::Sender<NodeEvent>,
    progress_tx: watch::Sender<LogProgress>,
    /// Where the auth state is published for the HTTP layer.
    auth_tx: watch::Sender<Arc<raft_core::auth::AuthState>>,
    /// Whom to answer when the replica decides a request.
    waiting: HashMap<RequestId, Waiter>,
    /// The configuration the transport and the directory were last given
    /// (`None`: nothing yet).
    published_config: Option<(Index, Membership)>,
    /// A fault that stops the loop (a committed entry contradicted).
    halt: Option<FatalError>,
    snapshot_done: mpsc::UnboundedSender<SnapshotWritten>,
    /// An InstallSnapshot was stepped since the last `Ready`.
    snapshot_stepped: bool,
    ticks: u64,
    leader: Option<NodeId>,
    /// Heartbeat rounds in flight, for the peer round-trip histogram.
    heartbeats: round_trip::HeartbeatClock,
}

/// The snapshot rule of node `id`: every `snapshot_every` entries once the
/// log is half the newest snapshot's size, both thresholds raised by a
/// third for node 2 and two thirds for node 3 (and so on, by `id` modulo 3),
/// so that the members of a cluster, which apply the same entries, do not
/// all write their snapshots at the same moment and take the machine's
/// disk and cores from the quorum at once.
/// The catch-up margin is the same on every member, and so is the
/// checkpoint interval of the log in memory: every `snapshot_every` entries,
/// whatever the size rule waits for (see [`SnapshotPolicy`]).
pub(crate) fn staggered_policy(
    id: NodeId,
    snapshot_every: u64,
    catchup_entries: u64,
) -> SnapshotPolicy {
    let sixths = 6 + 2 * ((id.max(1) - 1) % 3);
    SnapshotPolicy {
        every: snapshot_every.saturating_mul(sixths) / 6,
        log_percent: 50 * sixths / 6,
        catchup_entries,
        checkpoint_every: snapshot_every,
    }
}

/// Builds the Raft loop from what the node persisted.
pub fn create(
    config: Config,
    persisted: PersistedState,
    storage: Box<dyn Storage>,
    transport: Box<dyn Outbound>,
    metrics: Arc<Metrics>,
    opts: NodeOptions,
) -> Result<(Node, NodeHandle, NodeInbox), StartError> {
    // Recovery time is reported in the log (snapshot load + WAL replay +
    // state-machine restore); entries after the snapshot are re-applied as
    // the first Readies hand them out.
    let started = std::time::Instant::now();
    let term = persisted.hard_state.term;
    let commit = persisted.hard_state.commit;
    let entries = persisted.entries.len();
    let policy = staggered_policy(
        config.id,
        opts.snapshot_every,
        opts.snapshot_catchup_entries,
    );
    let replica = Replica::new(config, persisted, policy).map_err(|e| StartError(e.to_string()))?;
    info!(
        term,
        commit,
        snapshot_index = replica.snapshot_index(),
        entries,
        keys = replica.kv().len(),
        took_ms = started.elapsed().as_millis() as u64,
        "loaded persisted state"
    );
    let raw = replica.raw();
    let view = NodeView {
        role: raw.role(),
        term: raw.term(),
        leader: raw.leader(),
    };
    let (view_tx, view_rx) = watch::channel(view);
    let (auth_tx, auth_rx) = watch::channel(replica.kv().auth().clone());
    let (req_tx, req_rx) = mpsc::channel(8192);
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(handle::EVENTS_KEPT);
    let (progress_tx, progress_rx) = watch::channel(LogProgress::default());
    let node = Node {
        leader: raw.leader(),
        replica,
        storage,
        transport,
        metrics,
        opts,
        view_tx,
        events: events.clone(),
        progress_tx,
        auth_tx,
        waiting: HashMap::new(),
        published_config: None,
        halt: None,
        snapshot_done: snapshot_tx,
        snapshot_stepped: false,
        ticks: 0,
        heartbeats: round_trip::HeartbeatClock::default(),
    };
    let handle = NodeHandle {
        requests: req_tx,
        peers: peer_tx,
        view: view_rx,
        progress: progress_rx,
        events,
        auth: auth_rx,
    };
    Ok((
        node,
        handle,
        NodeInbox {
            requests: req_rx,
            peers: peer_rx,
            snapshots: snapshot_rx,
        },
    ))
}

/// The receiving ends of the node's input channels.
pub struct NodeInbox {
    requests: mpsc::Receiver<Request>,
    peers: mpsc::Receiver<PeerBatch>,
    snapshots: mpsc::UnboundedReceiver<SnapshotWritten>,
}

impl Node {
    /// Runs the loop until `shutdown` resolves or the storage fails.
    pub async fn run(
        mut self,
        inbox: NodeInbox,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), FatalError> {
        let NodeInbox {
            mut requests,
            mut peers,
            mut snapshots,
        } = inbox;
        let mut ticker = tokio::time::interval(self.opts.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        // Once shutdown is asked for, a leader first hands leadership over
        // and serves until the successor took it or this deadline passes.
        let mut handoff: Option<tokio::time::Instant> = None;
        // Publish the initial state (a single node may already lead).
        let mut result = self.process_ready().await;
        while result.is_ok() {
            tokio::select! {
                _ = &mut shutdown, if handoff.is_none() => {
                    match self.start_handoff() {
                        Some(deadline) => handoff = Some(deadline),
                        None => break,
                    }
                }
                _ = tokio::time::sleep_until(handoff.unwrap_or_else(tokio::time::Instant::now)),
                    if handoff.is_some() => {
                    warn!("the leadership handoff did not finish in time; stopping anyway");
                    break;
                }
                _ = ticker.tick() => self.on_tick(),
                Some(batch) = peers.recv() => self.on_peer_batch(batch),
                Some(req) = requests.recv() => self.on_request(req),
                Some(written) = snapshots.recv() => {
                    if let Err(e) = self.on_snapshot_written(written) {
                        result = Err(e);
                        break;
                    }
                }
            }
            for _ in 0..MAX_DRAIN {
                let mut more = false;
                if let Ok(batch) = peers.try_recv() {
                    self.on_peer_batch(batch);
                    more = true;
                }
                if let Ok(req) = requests.try_recv() {
                    self.on_request(req);
                    more = true;
                }
                if !more {
                    break;
                }
            }
            result = self.process_ready().await;
            if let Some(fatal) = self.halt.take() {
                result = Err(fatal);
                break;
            }
            if std::mem::take(&mut self.snapshot_stepped) {
                // Installed by now, or refused: either way not needed.
                self.opts.decoded.clear();
            }
            if handoff.is_some() && !self.replica.raw().is_leader() {
                info!(
                    leader = ?self.replica.raw().leader(),
                    "leadership handed over; stopping"
                );
                break;
            }
        }
        // A snapshot still being written finishes and is recorded, so the
        // next start has less log to replay.
        if self.replica.snapshot_running() && result.is_ok() {
            if let Some(written) = snapshots.recv().await {
                result = self.on_snapshot_written(written);
            }
        }
        if let Err(e) = &result {
            error!("stopping the node: {e}");
        }
        // Writes in flight may still be committed by the others: their
        // clients hear "outcome unknown", not "retry elsewhere".
        let why = if result.is_ok() {
            "the node is shutting down"
        } else {
            "the node stopped on a storage failure"
        };
        for (id, outcome) in self.replica.stop(why) {
            if let Some(w) = self.waiting.remove(&id) {
                w.answer(outcome);
            }
        }
        for (_, w) in self.waiting.drain() {
            w.fail(NodeError::ShuttingDown);
        }
        requests.close();
        while let Ok(req) = requests.try_recv() {
            fail_request(req, NodeError::ShuttingDown);
        }
        info!("raft loop stopped");
        result
    }

    /// On shutdown: a leader with a caught-up voter to hand over to asks
    /// it to take leadership now (TimeoutNow), so the cluster does not wait
    /// an election timeout for a new leader; returns the deadline to give
    /// up by (two election timeouts). `None`: nothing to hand over, stop now.
    fn start_handoff(&mut self) -> Option<tokio::time::Instant> {
        let to = self.replica.successor()?;
        match self.replica.transfer_leader(to) {
            Ok(()) => {
                info!(
                    to,
                    "shutdown requested: handing leadership to node {to} first"
                );
                let election = self.opts.tick * self.replica.raw().election_tick() as u32;
                Some(tokio::time::Instant::now() + 2 * election)
            }
            Err(e) => {
                warn!(
                    to,
                    "shutdown requested: cannot hand leadership over ({e}); stopping"
                );
                None
            }
        }
    }

    fn on_tick(&mut self) {
        self.replica.tick();
        self.ticks += 1;
        // Forget the requests whose clients gave up (their handler timed out).
        if self.ticks.is_multiple_of(20) {
            self.waiting.retain(|_, w| !w.is_closed());
            let waiting = &self.waiting;
            self.replica.forget(|id| !waiting.contains_key(&id));
        }
    }

    fn on_peer_batch(&mut self, batch: PeerBatch) {
        Metrics::add(
            &self.metrics.peer_messages_received,
            batch.messages.len() as u64,
        );
        let now = std::time::Instant::now();
        for msg in batch.messages {
            if let Some((peer, elapsed)) = self.heartbeats.on_receive(&msg, now) {
                self.metrics.observe_peer_round_trip(peer, elapsed);
            }
            if matches!(msg.body, MessageBody::InstallSnapshot { .. }) {
                self.snapshot_stepped = true;
            }
            if msg.from != batch.from {
                Metrics::inc(&self.metrics.peer_messages_rejected);
                debug!(
                    batch_from = batch.from,
                    msg_from = msg.from,
                    "message sender differs from batch sender"
                );
                continue;
            }
            match self.replica.step(msg) {
                Ok(()) => {}
                Err(e @ StepError::CommittedConflict { .. }) => {
                    // Never acknowledge past a conflict with our committed
                    // log: safety is already broken, stop (etcd panics).
                    Metrics::inc(&self.metrics.peer_messages_rejected);
                    self.halt.get_or_insert(FatalError::Diverged(e.to_string()));
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.peer_messages_rejected);
                    debug!("rejected peer message: {e}");
                }
            }
        }
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Propose { command, reply } => match self.replica.propose(command) {
                Ok(id) => {
                    Metrics::inc(&self.metrics.proposals);
                    self.waiting.insert(id, Waiter::Write(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Request::Read {
                query,
                linearizable,
                reply,
            } => {
                if !linearizable {
                    let _ = reply.send(Ok(self.replica.query(&query)));
                    return;
                }
                match self.replica.read(query) {
                    Ok(id) => {
                        self.waiting.insert(id, Waiter::Read(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::LogWindow { from, limit, reply } => {
                let _ = reply.send(self.log_window(from, limit));
            }
            Request::Readiness { reply } => {
                let r = self.replica.readiness(READY_MAX_APPLY_LAG);
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Request::Snapshot { reply } => {
                let id = self.replica.request_snapshot();
                self.waiting.insert(id, Waiter::Snapshot(reply));
                self.maybe_snapshot();
                self.route_outcomes();
            }
            Request::ConfChange {
                change,
                force,
                reply,
            } => {
                info!(?change, force, "membership change requested");
                match self.replica.change_membership(change, force) {
                    Ok(id) => {
                        self.waiting.insert(id, Waiter::Conf(reply));
                    }
                    Err(e) => {
                        info!("membership change refused: {e}");
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::Transfer { to, reply } => {
                let _ = reply.send(self.replica.transfer_leader(to).map_err(NodeError::from));
            }
        }
    }

    /// Carries out every `Ready` the node has.
    async fn process_ready(&mut self) -> Result<(), FatalError> {
        while self.replica.has_ready() {
            let mut ready = self.replica.ready();
            if let Some(soft) = ready.soft_state {
                self.on_soft_state(soft);
            }
            // 1. What may leave before the fsync (a leader's appends and
            // heartbeats; the core decides, see `Ready::messages`). The
            // peer senders run on this loop's thread: give them their turn
            // now, so these frames are on the wire while the fsync below
            // blocks the thread.
            self.heartbeats
                .on_send(&ready.messages, std::time::Instant::now());
            self.transport.send(std::mem::take(&mut ready.messages));
            if ready.must_persist && self.transport.take_queued() {
                tokio::task::yield_now().await;
            }
            self.handle_ready(ready)?;
            self.maybe_snapshot();
        }
        self.publish_config();
        self.publish_view();
        // What this turn queued (a follower's acknowledgements, written
        // after its fsync) leaves before the loop takes its next input: a
        // busy inbox would otherwise keep the senders waiting for a turn.
        if self.transport.take_queued() {
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Carries out a `Ready` whose early messages are sent.
    fn handle_ready(&mut self, mut ready: Ready) -> Result<(), FatalError> {
        // 2. Persist (one fsync) what the Ready must make durable. A Ready
        // that only moves the commit index writes nothing; the newest
        // commit rides along with the next write.
        if ready.must_persist {
            // The fsync blocks this thread: the loop has one of its own
            // (see `app::spawn_raft_loop`).
            let started = std::time::Instant::now();
            self.storage
                .persist(ready.snapshot.as_ref(), &ready.entries, ready.hard_state)?;
            self.metrics.observe_fsync(started.elapsed());
            Metrics::inc(&self.metrics.persists);
        }
        // A snapshot from the leader: its state machine was decoded off the
        // loop by the receiver, when it could be.
        let decoded = ready
            .snapshot
            .as_ref()
            .and_then(|s| self.opts.decoded.take(&s.meta));
        if let Some(s) = &ready.snapshot {
            info!(
                index = s.meta.index,
                term = s.meta.term,
                decoded_on_loop = decoded.is_none(),
                "installing snapshot from the leader"
            );
            self.emit(NodeEvent::SnapshotInstalled {
                index: s.meta.index,
                term: s.meta.term,
            });
        }
        // 3. What depends on the write: votes, acknowledgements.
        self.transport
            .send(std::mem::take(&mut ready.persisted_messages));
        // 4. Apply, settle requests, serve reads: the replica's part.
        Metrics::add(
            &self.metrics.entries_applied,
            ready.committed_entries.len() as u64,
        );
        for entry in &ready.committed_entries {
            if let Payload::Config(m) = &entry.payload {
                self.log_config_applied(entry.index, m);
            }
        }
        for lost in ready.lost_logs.drain(..) {
            Metrics::inc(&self.metrics.followers_log_lost);
            error!(
                follower = lost.id,
                acknowledged = lost.acknowledged,
                reported = lost.reported,
                "node {} lost log entries it had acknowledged (its log now ends at or \
                 diverges before {}, it had {}): its data directory was emptied or replaced. \
                 Nothing more is replicated to it. Remove it and add it again: \
                 raft-kv-client member remove {}; member add {} URL; start it with an empty \
                 data directory and --join",
                lost.id,
                lost.reported,
                lost.acknowledged,
                lost.id,
                lost.id
            );
        }
        let applying = ready.committed_entries.len();
        let first = ready.committed_entries.first().map(|e| e.index);
        let installing = ready.snapshot.is_some();
        let started = std::time::Instant::now();
        self.replica.advance(ready, decoded).map_err(|e| match e {
            ReplicaError::BadSnapshot { .. } => FatalError::BadSnapshot(e.to_string()),
            ReplicaError::Config(_) => FatalError::BadSnapshot(e.to_string()),
        })?;
        // The loop answers nothing while it applies: a long apply is a
        // stall every client and follower sees (etcd counts them too).
        let took = started.elapsed();
        if took > SLOW_APPLY {
            Metrics::inc(&self.metrics.slow_applies);
            warn!(
                entries = applying,
                first_index = first,
                snapshot = installing,
                took_ms = took.as_millis() as u64,
                "applying took longer than {} ms",
                SLOW_APPLY.as_millis()
            );
        }
        // The applied entries may have reached the catch-up margin past a
        // written snapshot, which compacted the log.
        snapshot::free_off_loop(self.replica.take_compacted());
        self.publish_auth();
        self.route_outcomes();
        Ok(())
    }

    /// Publishes the auth state when an apply (or a snapshot) changed it:
    /// before the writes are answered, so a client told its user was
    /// deleted finds the deletion in force on this member.
    fn publish_auth(&mut self) {
        let now = self.replica.kv().auth();
        self.auth_tx.send_if_modified(|published| {
            let changed = !Arc::ptr_eq(published, now);
            if changed {
                *published = now.clone();
            }
            changed
        });
    }

    /// Answers whoever waits for the requests the replica decided.
    fn route_outcomes(&mut self) {
        for (id, outcome) in self.replica.take_outcomes() {
            match &outcome {
                Outcome::Write(Err(_)) => Metrics::inc(&self.metrics.proposals_failed),
                Outcome::Read(Err(_)) => Metrics::inc(&self.metrics.read_index_failures),
                _ => {}
            }
            if let Some(w) = self.waiting.remove(&id) {
                w.answer(outcome);
            }
        }
        // The replica keeps the count: no walk over the waiters per Ready.
        self.metrics
            .set_proposals_pending(self.replica.pending_writes() as u64);
    }

    /// A configuration entry was applied.
    fn log_config_applied(&self, index: Index, m: &Membership) {
        info!(
            index,
            voters = ?m.voters,
            outgoing = ?m.outgoing,
            learners = ?m.learners,
            "configuration committed"
        );
        if !m.is_joint() && !m.contains(self.replica.raw().id()) && !m.voters.is_empty() {
            warn!(
                "this node was removed from the cluster's configuration; it serves no \
                 more requests for the cluster and can be stopped"
            );
        }
    }

    /// Hands a configuration newer than the last one published (it takes
    /// effect once in the log, committed or not) to the transport and the
    /// member directory.
    fn publish_config(&mut self) {
        let raw = self.replica.raw();
        let status_index = raw.config_index();
        let m = raw.membership();
        if self
            .published_config
            .as_ref()
            .is_some_and(|(i, p)| *i == status_index && p == m)
        {
            return;
        }
        let m = m.clone();
        let me = raw.id();
        let directory = &self.opts.directory;
        directory.update(&m, status_index);
        let peers: BTreeMap<NodeId, String> = directory
            .urls()
            .into_iter()
            .filter(|(id, _)| *id != me)
            .collect();
        self.heartbeats.retain(|id| peers.contains_key(&id));
        self.transport.set_peers(&peers);
        debug!(index = status_index, voters = ?m.voters, outgoing = ?m.outgoing, learners = ?m.learners, "configuration in force");
        self.published_config = Some((status_index, m));
    }

    fn on_soft_state(&mut self, soft: SoftState) {
        let leader = (soft.leader != 0).then_some(soft.leader);
        let term = self.replica.raw().term();
        self.emit(NodeEvent::RoleChanged {
            term,
            role: soft.role,
            leader,
            cause: soft.cause.to_string(),
        });
        if leader != self.leader {
            Metrics::inc(&self.metrics.leader_changes);
            info!(term, role = %soft.role, leader = ?leader, cause = %soft.cause, "leader changed");
            self.leader = leader;
        } else {
            info!(term, role = %soft.role, cause = %soft.cause, "role changed");
        }
    }

    fn publish_view(&mut self) {
        let raw = self.replica.raw();
        let view = NodeView {
            role: raw.role(),
            term: raw.term(),
            leader: raw.leader(),
        };
        self.view_tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
        let progress = LogProgress {
            last_index: raw.last_index(),
            commit_index: raw.commit(),
            snapshot_index: self.replica.snapshot_index(),
        };
        self.progress_tx.send_if_modified(|p| {
            let changed = *p != progress;
            *p = progress;
            changed
        });
    }
}

#[cfg(test)]
mod tests;
