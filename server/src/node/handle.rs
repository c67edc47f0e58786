//! The requests side of the Raft loop: the [`NodeHandle`] everyone else
//! talks to it through (requests with oneshot replies, peer batches, the
//! [`NodeView`] watch channel), and how the loop answers a request once the
//! replica decides it.

use raft_core::replica::Outcome;
use raft_core::wire::{
    FollowerStatus, LogEntrySummary, LogWindowResponse, NodeEvent, PeerBatch, StatusResponse,
};
use raft_core::{Command, ConfChange, Index, Membership, NodeId, Role, Term};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error};

use super::{Node, NodeError, Query, QueryResult, WriteOutcome};

pub(super) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

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
    /// A window of the in-memory log (`GET /log`).
    LogWindow {
        /// The first index wanted (`None`: the newest `limit` entries).
        from: Option<Index>,
        /// At most this many entries ([`MAX_LOG_WINDOW`] at most).
        limit: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<LogWindowResponse>,
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

/// The most entries one [`Request::LogWindow`] answers: the loop copies
/// no more than this per request.
pub const MAX_LOG_WINDOW: u64 = 256;

/// Events the loop keeps for a slow `/events` reader before the oldest
/// are dropped (the reader then resends the status instead).
pub(super) const EVENTS_KEPT: usize = 64;

/// How far the log is, as the Raft loop last published it: a separate
/// watch from [`NodeView`], so that waiting for a leader does not wake on
/// every commit; only the `/events` readers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogProgress {
    /// Last log index.
    pub last_index: Index,
    /// Commit index.
    pub commit_index: Index,
    /// Snapshot index.
    pub snapshot_index: Index,
}

/// A cheap, cloneable handle for talking to the Raft loop.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) requests: mpsc::Sender<Request>,
    pub(super) peers: mpsc::Sender<PeerBatch>,
    pub(super) view: watch::Receiver<NodeView>,
    pub(super) progress: watch::Receiver<LogProgress>,
    pub(super) events: broadcast::Sender<NodeEvent>,
    /// The users, roles and auth switch as of the last applied entry.
    pub(super) auth: watch::Receiver<std::sync::Arc<raft_core::auth::AuthState>>,
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

    /// Up to `limit` (at most [`MAX_LOG_WINDOW`]) entries of the in-memory
    /// log from `from` on (`None`: the newest), summarized without values.
    pub async fn log_window(
        &self,
        from: Option<Index>,
        limit: u64,
    ) -> Result<LogWindowResponse, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::LogWindow {
                from,
                limit: limit.min(MAX_LOG_WINDOW),
                reply: tx,
            })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// A receiver of log progress (last, commit and snapshot index).
    pub fn watch_progress(&self) -> watch::Receiver<LogProgress> {
        self.progress.clone()
    }

    /// A receiver of what the node does from now on (role changes,
    /// snapshots); it misses what it does not read within [`EVENTS_KEPT`]
    /// events. Closed when the loop stops.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
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

    /// The users, roles and auth switch as the Raft loop last applied them
    /// (published after every apply that changed them, before the writes
    /// it applied are answered).
    pub fn auth_state(&self) -> std::sync::Arc<raft_core::auth::AuthState> {
        self.auth.borrow().clone()
    }

    /// A receiver of view changes.
    pub fn watch(&self) -> watch::Receiver<NodeView> {
        self.view.clone()
    }
}

impl Node {
    /// The answer to [`Request::Status`].
    pub(super) fn status(&self) -> StatusResponse {
        let s = self.replica.raw().status();
        let last = s.last_index;
        let election_ticks = self.replica.raw().election_tick();
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
                    silent: f.ticks_since_contact > election_ticks,
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
            // The newest durable snapshot; the core's log may still hold
            // entries before it (the catch-up margin).
            snapshot_index: self.replica.snapshot_index(),
            members: s.membership.voters.clone(),
            learners: s.membership.learners.clone(),
            outgoing: s.membership.outgoing.clone(),
            cluster_id: crate::identity::hex(self.opts.directory.identity.cluster_id),
            keys: kv.len() as u64,
            followers,
        }
    }

    /// The answer to [`Request::LogWindow`]: copies at most `limit`
    /// summaries (no values), so a request holds the loop for microseconds.
    pub(super) fn log_window(&self, from: Option<Index>, limit: u64) -> LogWindowResponse {
        let raw = self.replica.raw();
        let s = raw.status();
        let limit = limit.min(MAX_LOG_WINDOW);
        let first = s.snapshot_index + 1;
        let from = from.unwrap_or_else(|| (s.last_index + 1).saturating_sub(limit));
        let start = from.max(first);
        let end = start.saturating_add(limit).min(s.last_index + 1);
        LogWindowResponse {
            first_index: first,
            last_index: s.last_index,
            commit_index: s.commit,
            entries: (start..end)
                .filter_map(|i| raw.entry(i))
                .map(LogEntrySummary::from)
                .collect(),
        }
    }

    /// Tells the `/events` readers (none: nothing to do).
    pub(super) fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }
}

/// Who waits for a request the replica decides.
pub(super) enum Waiter {
    Write(Reply<WriteOutcome>),
    Read(Reply<QueryResult>),
    Conf(Reply<(Membership, Index)>),
    Snapshot(Reply<Index>),
}

impl Waiter {
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Waiter::Write(r) => r.is_closed(),
            Waiter::Read(r) => r.is_closed(),
            Waiter::Conf(r) => r.is_closed(),
            Waiter::Snapshot(r) => r.is_closed(),
        }
    }

    /// Sends the outcome the replica decided.
    pub(super) fn answer(self, outcome: Outcome) {
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

    pub(super) fn fail(self, err: NodeError) {
        let _ = match self {
            Waiter::Write(r) => r.send(Err(err)).is_ok(),
            Waiter::Read(r) => r.send(Err(err)).is_ok(),
            Waiter::Conf(r) => r.send(Err(err)).is_ok(),
            Waiter::Snapshot(r) => r.send(Err(err)).is_ok(),
        };
    }
}

pub(super) fn fail_request(req: Request, err: NodeError) {
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
        Request::Status { .. } | Request::Readiness { .. } | Request::LogWindow { .. } => {}
    }
}
