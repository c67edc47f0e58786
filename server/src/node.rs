//! The Raft loop: one task owns the [`RawNode`], the [`KvStore`] and the
//! [`Storage`], and `select!`s over the tick timer, inbound peer batches and
//! client requests. Everyone else talks to it through a [`NodeHandle`]
//! (requests with oneshot replies) and watches its role and leader through a
//! [`NodeView`] watch channel.
//!
//! After each input the loop drains whatever else is already queued (so many
//! proposals share one `Ready`: one fsync, one network round), then carries
//! out every `Ready` in the order the core demands: persist, send, apply,
//! serve reads, advance.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raft_core::wire::{FollowerStatus, PeerBatch, StatusResponse};
use raft_core::{
    Command, ConfChange, ConfChangeError, Config, Index, KvStore, Membership, MessageBody, NodeId,
    NotAccepted, OpResult, Payload, PersistedState, RawNode, Ready, Role, Snapshot, SoftState,
    StepError, Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::snapshot_transfer::DecodedSnapshot;
use crate::storage::{Storage, StorageError};
use crate::transport::Transport;

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

/// A committed and applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Its log index.
    pub index: Index,
    /// What applying it did.
    pub result: OpResult,
}

/// A read of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// One key.
    Get(String),
    /// Keys with a prefix, up to a limit.
    List {
        /// The prefix.
        prefix: String,
        /// The most items to return.
        limit: usize,
    },
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// The key's value.
    Value(Option<String>),
    /// Matching items and whether more matched.
    List {
        /// Items in key order.
        items: Vec<(String, String)>,
        /// More keys matched than the limit.
        truncated: bool,
    },
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

struct WriteWaiter {
    term: Term,
    reply: Reply<WriteOutcome>,
}

struct ConfWaiter {
    term: Term,
    reply: Reply<(Membership, Index)>,
}

struct ReadWaiter {
    query: Query,
    reply: Reply<QueryResult>,
}

/// The Raft loop's state. Create with [`Node::new`], run with [`Node::run`].
pub struct Node {
    raw: RawNode,
    kv: KvStore,
    storage: Box<dyn Storage>,
    transport: Transport,
    metrics: Arc<Metrics>,
    opts: NodeOptions,
    view_tx: watch::Sender<NodeView>,
    /// Proposals by log index, with the term they were proposed in.
    writes: BTreeMap<Index, WriteWaiter>,
    /// Membership changes by the index of their configuration entry.
    conf_changes: BTreeMap<Index, ConfWaiter>,
    /// Changes whose joint configuration is applied, waiting for the
    /// configuration that ends the joint phase.
    conf_leaving: Vec<Reply<(Membership, Index)>>,
    /// The configuration the transport and the directory were last given
    /// (`None`: nothing yet).
    published_config: Option<(Index, Membership)>,
    /// A fault that stops the loop (a committed entry contradicted).
    halt: Option<FatalError>,
    /// Reads waiting for their read index, by context.
    reads_pending: HashMap<u64, ReadWaiter>,
    /// Reads waiting for the state machine to reach their index.
    reads_applying: BTreeMap<(Index, u64), ReadWaiter>,
    next_ctx: u64,
    snapshot_index: Index,
    /// The snapshot being written on its own thread, if any (one at a time).
    snapshot_running: Option<Index>,
    /// Admin requests waiting for a snapshot at or above an index.
    snapshot_waiters: Vec<(Index, Reply<Index>)>,
    /// No automatic snapshot before this applied index (moved on after a
    /// failed write, so a broken disk is not retried on every Ready).
    snapshot_not_before: Index,
    /// Size of the newest snapshot's data, in bytes.
    snapshot_bytes: u64,
    /// Approximate bytes of every entry applied since start.
    applied_bytes: u64,
    /// `applied_bytes` when the newest snapshot was taken: the log it did
    /// not cover starts there.
    snapshot_mark: u64,
    snapshot_done: mpsc::UnboundedSender<SnapshotWritten>,
    /// An InstallSnapshot was stepped since the last `Ready`.
    snapshot_stepped: bool,
    ticks: u64,
    leader: Option<NodeId>,
}

/// Whether an automatic snapshot is due, `entries` and `log_bytes` after
/// the newest one (of `snapshot_bytes`).
///
/// Two rules: at least `every` entries (0: never), and at least half the
/// newest snapshot's size in log bytes. The second keeps the cost of a
/// snapshot proportional to the writes it compacts: a store of a million
/// keys is not rewritten in full every few thousand puts, while the log
/// kept in memory and on disk stays within half the state's size (or
/// `every` entries, whichever is more).
fn snapshot_due(every: u64, entries: u64, log_bytes: u64, snapshot_bytes: u64) -> bool {
    every != 0 && entries >= every && log_bytes.saturating_mul(2) >= snapshot_bytes
}

/// A snapshot whose file the snapshot thread finished writing.
struct SnapshotWritten {
    snapshot: Snapshot,
    result: Result<(), StorageError>,
    started: std::time::Instant,
    /// The node's `applied_bytes` when it was taken.
    applied_bytes: u64,
}

/// Builds the Raft node from what `storage` holds (`persisted`, loaded
/// from it) and returns it with the handle clients use.
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
    let kv = match &persisted.snapshot {
        Some(s) => KvStore::restore(&s.data).map_err(|e| StartError(e.to_string()))?,
        None => KvStore::new(),
    };
    let snapshot_index = persisted.snapshot.as_ref().map_or(0, |s| s.meta.index);
    let snapshot_bytes = persisted
        .snapshot
        .as_ref()
        .map_or(0, |s| s.data.len() as u64);
    info!(
        term = persisted.hard_state.term,
        commit = persisted.hard_state.commit,
        snapshot_index,
        entries = persisted.entries.len(),
        keys = kv.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "loaded persisted state"
    );
    let mut raw = RawNode::new(config, persisted).map_err(|e| StartError(e.to_string()))?;
    if raw.membership().voters == [raw.id()] && !raw.membership().is_joint() {
        // Nobody to wait for: become leader at once.
        raw.campaign();
    }
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
        raw,
        kv,
        storage,
        transport,
        metrics,
        opts,
        view_tx,
        writes: BTreeMap::new(),
        conf_changes: BTreeMap::new(),
        conf_leaving: Vec::new(),
        published_config: None,
        halt: None,
        reads_pending: HashMap::new(),
        reads_applying: BTreeMap::new(),
        next_ctx: 1,
        snapshot_index,
        snapshot_running: None,
        snapshot_waiters: Vec::new(),
        snapshot_not_before: 0,
        snapshot_bytes,
        applied_bytes: 0,
        snapshot_mark: 0,
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

/// The node could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        StartError(format!("cannot load the node's data: {e}"))
    }
}

impl Node {
    /// Runs the loop until `shutdown` completes or storage fails; then fails
    /// every waiting request with [`NodeError::ShuttingDown`]. Its writes
    /// (fsync) block the thread it runs on, so it gets a thread of its own.
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
        if self.snapshot_running.is_some() && result.is_ok() {
            if let Some(written) = snapshots.recv().await {
                result = self.on_snapshot_written(written);
            }
        }
        if let Err(e) = &result {
            error!("stopping the node: {e}");
        }
        self.fail_all(NodeError::ShuttingDown);
        requests.close();
        while let Ok(req) = requests.try_recv() {
            fail_request(req, NodeError::ShuttingDown);
        }
        info!("raft loop stopped");
        result
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        // Drop the waiters whose clients gave up (their handler timed out).
        if self.ticks.is_multiple_of(20) {
            self.writes.retain(|_, w| !w.reply.is_closed());
            self.reads_pending.retain(|_, r| !r.reply.is_closed());
            self.reads_applying.retain(|_, r| !r.reply.is_closed());
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
            match self.raw.step(msg) {
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
            Request::Propose { command, reply } => match self.raw.propose(command) {
                Ok(index) => {
                    Metrics::inc(&self.metrics.proposals);
                    let waiter = WriteWaiter {
                        term: self.raw.term(),
                        reply,
                    };
                    // An older proposal at this index was overwritten by ours.
                    if let Some(old) = self.writes.insert(index, waiter) {
                        let _ = old.reply.send(Err(NodeError::LeadershipChanged));
                    }
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
                    let _ = reply.send(Ok(self.query(&query)));
                    return;
                }
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                match self.raw.read_index(ctx) {
                    Ok(()) => {
                        self.reads_pending.insert(ctx, ReadWaiter { query, reply });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Snapshot { reply } => {
                let index = self.kv.applied_index();
                if index <= self.snapshot_index {
                    let _ = reply.send(Ok(self.snapshot_index));
                    return;
                }
                self.snapshot_waiters.push((index, reply));
                self.snapshot_for_waiters();
            }
            Request::ConfChange {
                change,
                force,
                reply,
            } => {
                info!(?change, force, "membership change requested");
                match self.raw.propose_conf_change(change, force) {
                    Ok(index) => {
                        let waiter = ConfWaiter {
                            term: self.raw.term(),
                            reply,
                        };
                        self.conf_changes.insert(index, waiter);
                    }
                    Err(e) => {
                        info!("membership change refused: {e}");
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Request::Transfer { to, reply } => {
                let r = if to == self.raw.id() && self.raw.is_leader() {
                    Ok(())
                } else {
                    self.raw.transfer_leader(to).map_err(NodeError::from)
                };
                let _ = reply.send(r);
            }
        }
    }

    fn query(&self, q: &Query) -> QueryResult {
        match q {
            Query::Get(key) => QueryResult::Value(self.kv.get(key).map(str::to_string)),
            Query::List { prefix, limit } => {
                let mut items = self.kv.list(prefix, limit.saturating_add(1));
                let truncated = items.len() > *limit;
                items.truncate(*limit);
                QueryResult::List { items, truncated }
            }
        }
    }

    /// Carries out every `Ready` the node has.
    async fn process_ready(&mut self) -> Result<(), FatalError> {
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
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
        if let Some(snapshot) = &ready.snapshot {
            self.restore(snapshot)?;
        }
        // 3. What depends on the write: votes, acknowledgements.
        self.transport
            .send(std::mem::take(&mut ready.persisted_messages));
        // 4. Apply and answer writers.
        Metrics::add(
            &self.metrics.entries_applied,
            ready.committed_entries.len() as u64,
        );
        for entry in &ready.committed_entries {
            self.applied_bytes += entry.approx_size() as u64;
            if let Payload::Config(m) = &entry.payload {
                self.on_config_applied(entry.index, entry.term, m);
            }
            let applied = self.kv.apply(entry);
            let Some(w) = self.writes.remove(&entry.index) else {
                continue;
            };
            let answer = if w.term == entry.term {
                match applied.result {
                    Some(result) => Ok(WriteOutcome {
                        index: entry.index,
                        result,
                    }),
                    None => Err(NodeError::LeadershipChanged),
                }
            } else {
                Err(NodeError::LeadershipChanged)
            };
            let _ = w.reply.send(answer);
        }
        // Anything proposed below the applied index is settled by now; an
        // older waiter left behind lost its entry.
        let applied = self.kv.applied_index();
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let _ = entry.remove().reply.send(Err(NodeError::LeadershipChanged));
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
        // 5. Reads.
        for rs in ready.read_states.drain(..) {
            if let Some(r) = self.reads_pending.remove(&rs.ctx) {
                self.reads_applying.insert((rs.index, rs.ctx), r);
            }
        }
        for ctx in ready.dropped_reads.drain(..) {
            if let Some(r) = self.reads_pending.remove(&ctx) {
                let _ = r.reply.send(Err(NodeError::NotLeader {
                    leader: self.raw.leader(),
                }));
            }
        }
        self.serve_reads();
        // 6. Hand back.
        self.raw.advance(ready);
        Ok(())
    }

    /// A configuration entry was applied: answer the change that proposed
    /// it (or, for a joint one, wait for the end of the joint phase).
    fn on_config_applied(&mut self, index: Index, term: Term, m: &Membership) {
        info!(
            index,
            voters = ?m.voters,
            outgoing = ?m.outgoing,
            learners = ?m.learners,
            "configuration committed"
        );
        if !m.is_joint() {
            for reply in self.conf_leaving.drain(..) {
                let _ = reply.send(Ok((m.clone(), index)));
            }
            if !m.contains(self.raw.id()) && !m.voters.is_empty() {
                warn!(
                    "this node was removed from the cluster's configuration; it serves no \
                     more requests for the cluster and can be stopped"
                );
            }
        }
        // Anything older than this entry was overwritten by another leader.
        while let Some(e) = self.conf_changes.first_entry() {
            if *e.key() >= index {
                break;
            }
            let _ = e.remove().reply.send(Err(NodeError::LeadershipChanged));
        }
        if let Some(w) = self.conf_changes.remove(&index) {
            if w.term != term {
                let _ = w.reply.send(Err(NodeError::LeadershipChanged));
            } else if m.is_joint() {
                self.conf_leaving.push(w.reply);
            } else {
                let _ = w.reply.send(Ok((m.clone(), index)));
            }
        }
    }

    /// Hands a configuration newer than the last one published (it takes
    /// effect once in the log, committed or not) to the transport and the
    /// member directory.
    fn publish_config(&mut self) {
        let status_index = self.raw.config_index();
        let m = self.raw.membership();
        if self
            .published_config
            .as_ref()
            .is_some_and(|(i, p)| *i == status_index && p == m)
        {
            return;
        }
        let m = m.clone();
        let directory = &self.opts.directory;
        directory.update(&m, status_index);
        let me = self.raw.id();
        let peers = directory
            .urls()
            .into_iter()
            .filter(|(id, _)| *id != me)
            .collect();
        self.transport.set_peers(&peers);
        debug!(index = status_index, voters = ?m.voters, outgoing = ?m.outgoing, learners = ?m.learners, "configuration in force");
        self.published_config = Some((status_index, m));
    }

    fn serve_reads(&mut self) {
        let applied = self.kv.applied_index();
        while let Some(entry) = self.reads_applying.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let r = entry.remove();
            let _ = r.reply.send(Ok(self.query(&r.query)));
        }
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), FatalError> {
        let decoded = self.opts.decoded.take(&snapshot.meta);
        let decoded_on_loop = decoded.is_none();
        self.kv = match decoded {
            Some(kv) => kv,
            None => KvStore::restore(&snapshot.data).map_err(|e| {
                FatalError::BadSnapshot(format!(
                    "the snapshot at index {} from the leader does not decode: {e}",
                    snapshot.meta.index
                ))
            })?,
        };
        self.snapshot_index = snapshot.meta.index;
        self.snapshot_bytes = snapshot.data.len() as u64;
        self.snapshot_mark = self.applied_bytes;
        info!(
            index = snapshot.meta.index,
            term = snapshot.meta.term,
            decoded_on_loop,
            "installed snapshot from the leader"
        );
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > snapshot.meta.index {
                break;
            }
            let _ = entry.remove().reply.send(Err(NodeError::OutcomeUnknown(
                "a snapshot from the new leader replaced the log; retry with the same client id and sequence",
            )));
        }
        Ok(())
    }

    fn on_soft_state(&mut self, soft: SoftState) {
        let leader = (soft.leader != 0).then_some(soft.leader);
        if leader != self.leader {
            Metrics::inc(&self.metrics.leader_changes);
            info!(term = self.raw.term(), role = %soft.role, leader = ?leader, "leader changed");
            self.leader = leader;
            // Reads forwarded to the old leader will never be answered.
            for (_, r) in self.reads_pending.drain() {
                let _ = r.reply.send(Err(NodeError::NotLeader { leader }));
            }
        } else {
            debug!(role = %soft.role, "role changed");
        }
    }

    fn publish_view(&mut self) {
        let view = NodeView {
            role: self.raw.role(),
            term: self.raw.term(),
            leader: self.raw.leader(),
        };
        self.view_tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    fn maybe_snapshot(&mut self) {
        let every = self.opts.snapshot_every;
        let applied = self.kv.applied_index();
        if !snapshot_due(
            every,
            applied.saturating_sub(self.snapshot_index),
            self.applied_bytes - self.snapshot_mark,
            self.snapshot_bytes,
        ) || applied < self.snapshot_not_before
        {
            return;
        }
        if let Err(e) = self.start_snapshot() {
            warn!("automatic snapshot skipped: {e}");
            self.snapshot_not_before = applied.saturating_add(every);
        }
    }

    /// Starts a snapshot for the admin requests waiting; fails them all if
    /// it cannot start.
    fn snapshot_for_waiters(&mut self) {
        if let Err(e) = self.start_snapshot() {
            for (_, reply) in self.snapshot_waiters.drain(..) {
                let _ = reply.send(Err(NodeError::Rejected(e.to_string())));
            }
        }
    }

    /// Starts a snapshot of the state machine at the applied index, unless
    /// one is being written. The state machine is cloned in O(1) (persistent
    /// maps), then serialized and written on a thread of its own, so the
    /// Raft loop keeps serving; [`Node::on_snapshot_written`] records it and
    /// compacts the log.
    fn start_snapshot(&mut self) -> Result<(), NotAccepted> {
        if self.snapshot_running.is_some() {
            return Ok(());
        }
        let index = self.kv.applied_index();
        let meta = self.raw.snapshot_meta(index)?;
        let kv = self.kv.clone();
        let writer = self.storage.snapshot_writer();
        let done = self.snapshot_done.clone();
        let started = std::time::Instant::now();
        let applied_bytes = self.applied_bytes;
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let snapshot = Snapshot {
                    meta,
                    data: kv.snapshot(),
                };
                let result = writer.write(&snapshot);
                let _ = done.send(SnapshotWritten {
                    snapshot,
                    result,
                    started,
                    applied_bytes,
                });
            });
        if let Err(e) = spawned {
            warn!("cannot start the snapshot thread: {e}");
            return Err(NotAccepted::BadSnapshot {
                index,
                reason: "the snapshot thread could not start",
            });
        }
        self.snapshot_running = Some(index);
        Ok(())
    }

    /// Records a snapshot written by the snapshot thread, compacts the log
    /// and answers the admin requests it satisfies.
    fn on_snapshot_written(&mut self, written: SnapshotWritten) -> Result<(), FatalError> {
        self.snapshot_running = None;
        let SnapshotWritten {
            snapshot,
            result,
            started,
            applied_bytes,
        } = written;
        let index = snapshot.meta.index;
        let outcome = match result {
            // The file is not referenced by the log yet: a failed write
            // leaves the node as it was.
            Err(e) => {
                error!(index, "writing the snapshot failed: {e}");
                self.snapshot_not_before = self
                    .kv
                    .applied_index()
                    .saturating_add(self.opts.snapshot_every);
                Err(NodeError::Rejected(format!("snapshot failed: {e}")))
            }
            Ok(()) => {
                match self.storage.record_snapshot(&snapshot) {
                    Ok(()) => self.compact(snapshot, started, applied_bytes),
                    Err(StorageError::SnapshotOutOfDate { current, .. }) => {
                        // A newer snapshot from the leader arrived meanwhile.
                        warn!(index, current, "snapshot overtaken by a newer one; dropped");
                        Ok(self.snapshot_index)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // Answer whom this snapshot satisfies; start another for the rest.
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshot_waiters)
            .into_iter()
            .partition(|(wanted, _)| outcome.is_err() || *wanted <= self.snapshot_index);
        for (_, reply) in done {
            let _ = reply.send(outcome.clone().map(|_| self.snapshot_index));
        }
        self.snapshot_waiters = waiting;
        if !self.snapshot_waiters.is_empty() {
            self.snapshot_for_waiters();
        }
        Ok(())
    }

    /// Hands a recorded snapshot to the core, which drops the log it covers
    /// and keeps it for followers that need InstallSnapshot.
    fn compact(
        &mut self,
        snapshot: Snapshot,
        started: std::time::Instant,
        applied_bytes: u64,
    ) -> Result<Index, NodeError> {
        let index = snapshot.meta.index;
        let bytes = snapshot.data.len();
        if let Err(e) = self.raw.compact(snapshot) {
            warn!(index, "snapshot not installed in the log: {e}");
            return Err(NodeError::Rejected(e.to_string()));
        }
        if index > self.snapshot_index {
            self.snapshot_index = index;
            self.snapshot_bytes = bytes as u64;
            self.snapshot_mark = applied_bytes;
        }
        Metrics::inc(&self.metrics.snapshots);
        info!(
            index,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(index)
    }

    fn status(&self) -> StatusResponse {
        let s = self.raw.status();
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
        StatusResponse {
            id: s.id,
            url: self.opts.url.clone(),
            role: s.role,
            term: s.term,
            leader: (s.leader != 0).then_some(s.leader),
            vote: (s.vote != 0).then_some(s.vote),
            last_index: s.last_index,
            commit_index: s.commit,
            applied_index: self.kv.applied_index(),
            snapshot_index: s.snapshot_index,
            members: s.membership.voters.clone(),
            learners: s.membership.learners.clone(),
            outgoing: s.membership.outgoing.clone(),
            cluster_id: crate::identity::hex(self.opts.directory.identity.cluster_id),
            keys: self.kv.len() as u64,
            followers,
        }
    }

    fn fail_all(&mut self, err: NodeError) {
        for (_, w) in std::mem::take(&mut self.writes) {
            let _ = w.reply.send(Err(err.clone()));
        }
        for (_, w) in std::mem::take(&mut self.conf_changes) {
            let _ = w.reply.send(Err(err.clone()));
        }
        for reply in self.conf_leaving.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, r) in self.reads_pending.drain() {
            let _ = r.reply.send(Err(err.clone()));
        }
        for (_, r) in std::mem::take(&mut self.reads_applying) {
            let _ = r.reply.send(Err(err.clone()));
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
        Request::Status { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::transport::Partition;
    use raft_core::Op;
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

    #[test]
    fn a_snapshot_waits_for_entries_and_for_half_its_size_in_log() {
        // Off.
        assert!(!snapshot_due(0, 1_000_000, 1 << 30, 0));
        // The first snapshot (nothing to compare with): entries alone.
        assert!(!snapshot_due(100, 99, 1 << 20, 0));
        assert!(snapshot_due(100, 100, 0, 0));
        // A 100 MB state is not rewritten after 100 small entries...
        assert!(!snapshot_due(100, 100, 13_000, 100 << 20));
        // ...but once the log holds half of it.
        assert!(!snapshot_due(100, 400_000, (50 << 20) - 1, 100 << 20));
        assert!(snapshot_due(100, 400_000, 50 << 20, 100 << 20));
        // Large entries: the count rule still applies.
        assert!(!snapshot_due(100, 10, 1 << 30, 1 << 20));
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
