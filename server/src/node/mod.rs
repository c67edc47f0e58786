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

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raft_core::replica::{
    Outcome, Replica, ReplicaError, RequestError, RequestId, SnapshotJob, SnapshotPolicy,
};
use raft_core::wire::{FollowerStatus, PeerBatch, StatusResponse};
use raft_core::{
    Command, ConfChange, ConfChangeError, Config, Index, Membership, MessageBody, NodeId,
    NotAccepted, Payload, PersistedState, Ready, Role, Snapshot, SoftState, StepError, Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::snapshot_transfer::DecodedSnapshot;
use crate::storage::{Storage, StorageError};
use crate::transport::Transport;

/// A node with more committed entries than this not yet applied is not
/// ready (`/readyz`).
const READY_MAX_APPLY_LAG: u64 = 10_000;

/// Inputs drained per loop turn before the `Ready` is processed.
const MAX_DRAIN: usize = 4096;

/// What a client request can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// This node cannot serve it; `leader` is the one it knows of.
    #[error("not the leader")]
    NotLeader {
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is in progress.
    #[error("leadership transfer in progress")]
    Transferring,
    /// Another entry was committed where the write was proposed: the write
    /// was not applied and can be retried safely.
    #[error("leadership changed before the write committed")]
    LeadershipChanged,
    /// The outcome of the write cannot be known here (a snapshot replaced
    /// the log around it). Retry with the same client id and sequence.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(&'static str),
    /// The request is invalid for the node (e.g. an unknown transfer target).
    #[error("{0}")]
    Rejected(String),
    /// A membership change was refused.
    #[error("{0}")]
    ConfChange(ConfChangeError),
    /// The node is shutting down (or its storage failed).
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl From<NotAccepted> for NodeError {
    fn from(e: NotAccepted) -> Self {
        match e {
            NotAccepted::NotLeader { leader } => NodeError::NotLeader { leader },
            NotAccepted::Transferring => NodeError::Transferring,
            NotAccepted::ConfChange(e) => NodeError::ConfChange(e),
            other => NodeError::Rejected(other.to_string()),
        }
    }
}

pub use raft_core::replica::{Query, QueryResult, WriteOutcome};

impl From<RequestError> for NodeError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotLeader { leader } => NodeError::NotLeader { leader },
            RequestError::NotApplied => NodeError::LeadershipChanged,
            RequestError::Unknown(why) => NodeError::OutcomeUnknown(why),
            RequestError::Snapshot(why) => NodeError::Rejected(why),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A request to the Raft loop.
#[derive(Debug)]
pub enum Request {
    /// Propose a write; answered once applied.
    Propose {
        /// The command.
        command: Command,
        /// Where the outcome goes.
        reply: Reply<WriteOutcome>,
    },
    /// Read; linearizable (ReadIndex) or local.
    Read {
        /// What to read.
        query: Query,
        /// Linearizable (true) or stale (false).
        linearizable: bool,
        /// Where the answer goes.
        reply: Reply<QueryResult>,
    },
    /// Whether the node can serve linearizable requests now.
    Readiness {
        /// Where the answer goes: the reason when it cannot.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The node's status.
    Status {
        /// Where the answer goes.
        reply: oneshot::Sender<StatusResponse>,
    },
    /// Take a snapshot now; answers its index.
    Snapshot {
        /// Where the answer goes.
        reply: Reply<Index>,
    },
    /// Change the membership; answered once the change is committed and
    /// applied (for a change of voters: once the joint phase is over).
    ConfChange {
        /// The change.
        change: ConfChange,
        /// Skip the quorum-of-members-up check.
        force: bool,
        /// Where the configuration after the change goes.
        reply: Reply<(Membership, Index)>,
    },
    /// Hand leadership to another member.
    Transfer {
        /// The target.
        to: NodeId,
        /// Where the answer goes.
        reply: Reply<()>,
    },
}

/// The role, term and leader, as the Raft loop last published them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    /// This node's role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
}

/// A cheap, cloneable handle for talking to the Raft loop.
#[derive(Clone)]
pub struct NodeHandle {
    requests: mpsc::Sender<Request>,
    peers: mpsc::Sender<PeerBatch>,
    view: watch::Receiver<NodeView>,
}

impl NodeHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Proposes a write and waits until it is applied.
    pub async fn propose(&self, command: Command) -> Result<WriteOutcome, NodeError> {
        self.call(|reply| Request::Propose { command, reply }).await
    }

    /// Reads.
    pub async fn read(&self, query: Query, linearizable: bool) -> Result<QueryResult, NodeError> {
        self.call(|reply| Request::Read {
            query,
            linearizable,
            reply,
        })
        .await
    }

    /// Takes a snapshot.
    pub async fn snapshot(&self) -> Result<Index, NodeError> {
        self.call(|reply| Request::Snapshot { reply }).await
    }

    /// Proposes a membership change and waits until it is in force.
    pub async fn change_membership(
        &self,
        change: ConfChange,
        force: bool,
    ) -> Result<(Membership, Index), NodeError> {
        self.call(|reply| Request::ConfChange {
            change,
            force,
            reply,
        })
        .await
    }

    /// Starts a leadership transfer.
    pub async fn transfer(&self, to: NodeId) -> Result<(), NodeError> {
        self.call(|reply| Request::Transfer { to, reply }).await
    }

    /// The node's status.
    pub async fn readiness(&self) -> Result<Result<(), String>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Readiness { reply: tx })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<StatusResponse, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Status { reply: tx })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Delivers a batch of peer messages (waits when the loop is behind:
    /// back-pressure on the sending peer).
    pub async fn deliver(&self, batch: PeerBatch) -> Result<(), NodeError> {
        self.peers
            .send(batch)
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// The latest published view.
    pub fn view(&self) -> NodeView {
        *self.view.borrow()
    }

    /// A receiver of view changes.
    pub fn watch(&self) -> watch::Receiver<NodeView> {
        self.view.clone()
    }
}

/// What the Raft loop needs besides the protocol state.
pub struct NodeOptions {
    /// Tick length.
    pub tick: Duration,
    /// Automatic snapshot threshold (0: off).
    pub snapshot_every: u64,
    /// This node's base URL (for `/status`).
    pub url: String,
    /// Snapshots from the leader, decoded off the loop by their receiver.
    pub decoded: DecodedSnapshot,
    /// The member directory the loop keeps up to date.
    pub directory: Arc<Directory>,
}

/// A failure that stops the node: its durable state can no longer be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// The storage failed.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// A snapshot from the leader does not decode.
    #[error("{0}")]
    BadSnapshot(String),
    /// The leader sent entries that contradict this node's committed log.
    #[error("{0}")]
    Diverged(String),
}

/// Who waits for a request the replica decides.
enum Waiter {
    Write(Reply<WriteOutcome>),
    Read(Reply<QueryResult>),
    Conf(Reply<(Membership, Index)>),
    Snapshot(Reply<Index>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Write(r) => r.is_closed(),
            Waiter::Read(r) => r.is_closed(),
            Waiter::Conf(r) => r.is_closed(),
            Waiter::Snapshot(r) => r.is_closed(),
        }
    }

    /// Sends the outcome the replica decided.
    fn answer(self, outcome: Outcome) {
        let sent = match (self, outcome) {
            (Waiter::Write(r), Outcome::Write(o)) => r.send(o.map_err(NodeError::from)).is_ok(),
            (Waiter::Read(r), Outcome::Read(o)) => r.send(o.map_err(NodeError::from)).is_ok(),
            (Waiter::Conf(r), Outcome::Conf(o)) => r.send(o.map_err(NodeError::from)).is_ok(),
            (Waiter::Snapshot(r), Outcome::Snapshot(o)) => {
                r.send(o.map_err(NodeError::from)).is_ok()
            }
            (w, o) => {
                error!(?o, "an outcome of another kind than its request");
                w.fail(NodeError::Rejected(
                    "internal error: mismatched outcome".into(),
                ));
                true
            }
        };
        if !sent {
            debug!("a client gave up before its request was decided");
        }
    }

    fn fail(self, err: NodeError) {
        let _ = match self {
            Waiter::Write(r) => r.send(Err(err)).is_ok(),
            Waiter::Read(r) => r.send(Err(err)).is_ok(),
            Waiter::Conf(r) => r.send(Err(err)).is_ok(),
            Waiter::Snapshot(r) => r.send(Err(err)).is_ok(),
        };
    }
}

/// The Raft loop's state. Create with [`create`], run with [`Node::run`].
pub struct Node {
    /// The replica: Raft, the state machine and every request's lifecycle.
    replica: Replica,
    storage: Box<dyn Storage>,
    transport: Transport,
    metrics: Arc<Metrics>,
    opts: NodeOptions,
    view_tx: watch::Sender<NodeView>,
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
}

/// A snapshot whose file the snapshot thread finished writing.
struct SnapshotWritten {
    snapshot: Snapshot,
    result: Result<(), StorageError>,
    started: std::time::Instant,
    /// The replica's applied-bytes mark at the snapshot's index.
    applied_bytes: u64,
}

/// Builds the Raft loop from what the node persisted.
pub fn create(
    config: Config,
    persisted: PersistedState,
    storage: Box<dyn Storage>,
    transport: Transport,
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
    let policy = SnapshotPolicy {
        every: opts.snapshot_every,
        log_percent: 50,
    };
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
    let (req_tx, req_rx) = mpsc::channel(8192);
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    let (snapshot_tx, snapshot_rx) = mpsc::unbounded_channel();
    let node = Node {
        leader: raw.leader(),
        replica,
        storage,
        transport,
        metrics,
        opts,
        view_tx,
        waiting: HashMap::new(),
        published_config: None,
        halt: None,
        snapshot_done: snapshot_tx,
        snapshot_stepped: false,
        ticks: 0,
    };
    let handle = NodeHandle {
        requests: req_tx,
        peers: peer_tx,
        view: view_rx,
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

/// The node could not be built from its persisted state.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        StartError(e.to_string())
    }
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
        // Publish the initial state (a single node may already lead).
        let mut result = self.process_ready().await;
        while result.is_ok() {
            tokio::select! {
                _ = &mut shutdown => break,
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
        for msg in batch.messages {
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
            // (see `server::spawn_raft_loop`).
            self.storage
                .persist(ready.snapshot.as_ref(), &ready.entries, ready.hard_state)?;
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
        self.replica.advance(ready, decoded).map_err(|e| match e {
            ReplicaError::BadSnapshot { .. } => FatalError::BadSnapshot(e.to_string()),
            ReplicaError::Config(_) => FatalError::BadSnapshot(e.to_string()),
        })?;
        self.route_outcomes();
        Ok(())
    }

    /// Answers whoever waits for the requests the replica decided.
    fn route_outcomes(&mut self) {
        for (id, outcome) in self.replica.take_outcomes() {
            if let Some(w) = self.waiting.remove(&id) {
                w.answer(outcome);
            }
        }
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
        let peers = directory
            .urls()
            .into_iter()
            .filter(|(id, _)| *id != me)
            .collect();
        self.transport.set_peers(&peers);
        debug!(index = status_index, voters = ?m.voters, outgoing = ?m.outgoing, learners = ?m.learners, "configuration in force");
        self.published_config = Some((status_index, m));
    }

    fn on_soft_state(&mut self, soft: SoftState) {
        let leader = (soft.leader != 0).then_some(soft.leader);
        if leader != self.leader {
            Metrics::inc(&self.metrics.leader_changes);
            info!(term = self.replica.raw().term(), role = %soft.role, leader = ?leader, "leader changed");
            self.leader = leader;
        } else {
            debug!(role = %soft.role, "role changed");
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
    }

    /// Starts the snapshot the replica asks for (by its policy or a
    /// request), if any: the state machine was cloned in O(1) (persistent
    /// maps), and is serialized and written on a thread of its own, so the
    /// Raft loop keeps serving; [`Node::on_snapshot_written`] records it.
    fn maybe_snapshot(&mut self) {
        let Some(job) = self.replica.snapshot_job() else {
            return;
        };
        let index = job.meta.index;
        if let Err(e) = self.start_snapshot(job) {
            warn!(index, "cannot start the snapshot thread: {e}");
            self.replica
                .snapshot_failed(index, format!("the snapshot thread could not start: {e}"));
            self.route_outcomes();
        }
    }

    fn start_snapshot(&mut self, job: SnapshotJob) -> std::io::Result<()> {
        let writer = self.storage.snapshot_writer();
        let done = self.snapshot_done.clone();
        let started = std::time::Instant::now();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let snapshot = job.snapshot();
                let result = writer.write(&snapshot);
                let _ = done.send(SnapshotWritten {
                    snapshot,
                    result,
                    started,
                    applied_bytes: job.applied_bytes,
                });
            })
            .map(|_| ())
    }

    /// Records a snapshot written by the snapshot thread (the WAL's mark,
    /// then the replica compacts its log) and answers the requests it
    /// satisfies.
    fn on_snapshot_written(&mut self, written: SnapshotWritten) -> Result<(), FatalError> {
        let SnapshotWritten {
            snapshot,
            result,
            started,
            applied_bytes,
        } = written;
        let index = snapshot.meta.index;
        let bytes = snapshot.data.len();
        match result {
            // The file is not referenced by the log yet: a failed write
            // leaves the node as it was.
            Err(e) => {
                error!(index, "writing the snapshot failed: {e}");
                self.replica
                    .snapshot_failed(index, format!("snapshot failed: {e}"));
            }
            Ok(()) => match self.storage.record_snapshot(&snapshot) {
                Ok(()) => match self.replica.snapshot_recorded(snapshot, applied_bytes) {
                    Ok(()) => {
                        Metrics::inc(&self.metrics.snapshots);
                        info!(
                            index,
                            bytes,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "snapshot taken"
                        );
                    }
                    Err(e) => warn!(index, "snapshot not installed in the log: {e}"),
                },
                Err(StorageError::SnapshotOutOfDate { current, .. }) => {
                    // A newer snapshot from the leader arrived meanwhile;
                    // the replica drops this one (it is not newer).
                    warn!(index, current, "snapshot overtaken by a newer one; dropped");
                    let _ = self.replica.snapshot_recorded(snapshot, applied_bytes);
                }
                Err(e) => return Err(e.into()),
            },
        }
        self.route_outcomes();
        // Requests not covered yet get the next one.
        self.maybe_snapshot();
        Ok(())
    }

    fn status(&self) -> StatusResponse {
        let s = self.replica.raw().status();
        let last = s.last_index;
        let followers = (s.role == Role::Leader).then(|| {
            let tick_ms = self.opts.tick.as_millis() as u64;
            s.followers
                .iter()
                .filter(|f| f.id != s.id)
                .map(|f| FollowerStatus {
                    id: f.id,
                    match_index: f.match_index,
                    next_index: f.next_index,
                    state: f.state.name().to_string(),
                    lag: last.saturating_sub(f.match_index),
                    ticks_since_contact: f.ticks_since_contact,
                    ms_since_contact: f.ticks_since_contact.saturating_mul(tick_ms),
                })
                .collect()
        });
        let kv = self.replica.kv();
        StatusResponse {
            id: s.id,
            url: self.opts.url.clone(),
            role: s.role,
            term: s.term,
            leader: (s.leader != 0).then_some(s.leader),
            vote: (s.vote != 0).then_some(s.vote),
            last_index: s.last_index,
            commit_index: s.commit,
            applied_index: kv.applied_index(),
            snapshot_index: s.snapshot_index,
            members: s.membership.voters.clone(),
            learners: s.membership.learners.clone(),
            outgoing: s.membership.outgoing.clone(),
            cluster_id: crate::identity::hex(self.opts.directory.identity.cluster_id),
            keys: kv.len() as u64,
            followers,
        }
    }
}

fn fail_request(req: Request, err: NodeError) {
    match req {
        Request::Propose { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Read { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Snapshot { reply } => {
            let _ = reply.send(Err(err));
        }
        Request::Transfer { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::ConfChange { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Status { .. } | Request::Readiness { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::transport::Partition;
    use raft_core::{Op, OpResult};
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    fn single_node(snapshot_every: u64) -> (Node, NodeHandle, NodeInbox) {
        let metrics = Arc::new(Metrics::default());
        let credentials = crate::peer_stream::Credentials {
            me: 1,
            cluster_id: 1,
            incarnation: 1,
            token: None,
        };
        let transport = Transport::new(
            crate::transport::TransportOptions {
                credentials,
                snapshot_chunk_bytes: crate::snapshot_transfer::DEFAULT_CHUNK_BYTES,
                pool_idle: Duration::from_secs(30),
            },
            Arc::new(Partition::default()),
            metrics.clone(),
            &tokio::runtime::Handle::current(),
        );
        let identity = crate::identity::Identity {
            cluster_id: 1,
            node_id: 1,
            incarnation: 1,
            origin: crate::identity::Origin::Founder,
        };
        let directory = Arc::new(Directory::new(
            identity,
            "http://test".into(),
            crate::identity::PeerIncarnations::load(None).unwrap(),
            BTreeMap::new(),
        ));
        let mut storage = MemoryStorage::new();
        let founders = PersistedState::bootstrap(Membership::new(vec![1]));
        storage
            .persist(None, &founders.entries, Some(founders.hard_state))
            .unwrap();
        create(
            Config::new(1),
            founders,
            Box::new(storage),
            transport,
            metrics,
            NodeOptions {
                tick: Duration::from_millis(10),
                snapshot_every,
                url: "http://test".into(),
                decoded: DecodedSnapshot::default(),
                directory,
            },
        )
        .unwrap()
    }

    fn put(k: &str, v: &str) -> Command {
        Command {
            client_id: 0,
            seq: 0,
            op: Op::Put {
                key: k.into(),
                value: v.into(),
            },
        }
    }

    #[tokio::test]
    async fn single_node_commits_reads_and_snapshots() {
        let (node, handle, inbox) = single_node(5);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(node.run(inbox, async {
            let _ = stop_rx.await;
        }));
        for i in 0..12 {
            let out = handle.propose(put(&format!("k{i}"), "v")).await.unwrap();
            assert_eq!(out.result, OpResult::Put { prev: None });
        }
        let r = handle.read(Query::Get("k3".into()), true).await.unwrap();
        assert_eq!(r, QueryResult::Value(Some("v".into())));
        let r = handle
            .read(
                Query::List {
                    prefix: "k1".into(),
                    limit: 2,
                },
                false,
            )
            .await
            .unwrap();
        let QueryResult::List { items, truncated } = r else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert!(truncated);
        // Automatic snapshots are written off the loop: wait for one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = handle.status().await.unwrap();
            if status.snapshot_index >= 5 || tokio::time::Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(status.role, Role::Leader);
        assert!(status.snapshot_index >= 5, "{status:?}");
        // An admin snapshot answers once its snapshot is recorded.
        let idx = handle.snapshot().await.unwrap();
        assert_eq!(idx, status.applied_index);
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(
            handle.propose(put("x", "y")).await,
            Err(NodeError::ShuttingDown)
        );
    }

    #[tokio::test]
    async fn a_write_costs_one_persist_and_moving_the_commit_index_none() {
        let (node, handle, inbox) = single_node(0);
        let metrics = node.metrics.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(node.run(inbox, async {
            let _ = stop_rx.await;
        }));
        handle.propose(put("warm", "up")).await.unwrap();
        let before = metrics.persists.load(Ordering::Relaxed);
        for i in 0..10 {
            handle.propose(put(&format!("k{i}"), "v")).await.unwrap();
        }
        // One persist per entry; the Ready that commits it (a new commit
        // index in the hard state) is not written on its own.
        assert_eq!(metrics.persists.load(Ordering::Relaxed) - before, 10);
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
