//! What every handler shares: the node's [`AppState`], and `Attempts`,
//! one request's deadline and its waits for a leader.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::wire::{ErrorBody, HEADER_CLUSTER_TOKEN};
use raft_core::NodeId;
use tokio::time::Instant;

use super::error::{reject, Rejection};
use super::forward::ForwardClient;
use crate::config::Settings;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::node::{DecodedSnapshot, NodeHandle};
use crate::peer::{Partition, PeerStreams, RefusalLog, SnapshotInbox};

/// What every handler shares.
pub struct AppState {
    /// This node's id.
    pub id: NodeId,
    /// The cluster's identity and the configuration in force (members and
    /// their URLs), as the Raft loop last published it.
    pub directory: Arc<Directory>,
    /// Peer refusals already logged.
    pub refusals: RefusalLog,
    /// The Raft loop.
    pub node: NodeHandle,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The test-only partition switch.
    pub partition: Arc<Partition>,
    /// Limits, timeouts, token.
    pub settings: Arc<Settings>,
    /// HTTP client for `/cluster` and the start-up checks.
    pub http: reqwest::Client,
    /// HTTP client relaying requests to the leader (targets byte for byte).
    pub forwarder: ForwardClient,
    /// Slots of the requests forwarded at once ([`crate::http::forward::MAX_FORWARDS_IN_FLIGHT`]).
    pub forward_slots: tokio::sync::Semaphore,
    /// Snapshots arriving in chunks.
    pub snapshot_inbox: SnapshotInbox,
    /// Where a received snapshot's decoded state waits for the Raft loop.
    pub decoded_snapshot: DecodedSnapshot,
    /// The open peer message streams.
    pub peer_streams: Arc<PeerStreams>,
    /// Failed logins per user name (`POST /auth/token`).
    pub login_throttle: super::login_throttle::LoginThrottle,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn url_of(&self, id: NodeId) -> Option<String> {
        self.directory.url(id)
    }

    /// The known leader and its URL.
    pub(crate) fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let leader = self.node.view().leader;
        (leader, leader.and_then(|l| self.url_of(l)))
    }

    pub(crate) fn check_token(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.settings.cluster_token else {
            return Ok(());
        };
        let given = headers
            .get(HEADER_CLUSTER_TOKEN)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(())
        } else {
            Err(reject(
                StatusCode::UNAUTHORIZED,
                format!("missing or wrong {HEADER_CLUSTER_TOKEN} header"),
            ))
        }
    }

    /// A 503 naming the leader, when one is known.
    pub(crate) fn unavailable(&self, msg: impl Into<String>) -> Response {
        let (leader, leader_url) = self.leader();
        let body = ErrorBody {
            error: msg.into(),
            leader,
            leader_url,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Tracks one request's deadlines and retry pace.
pub(crate) struct Attempts {
    pub(crate) deadline: Instant,
    election_wait: Duration,
    n: u32,
}

impl Attempts {
    pub(crate) fn new(s: &AppState) -> Self {
        Attempts {
            deadline: Instant::now() + s.settings.request_timeout,
            election_wait: s.settings.election_wait,
            n: 0,
        }
    }

    /// Paces retries: immediate at first, then up to 100 ms apart.
    pub(crate) async fn pause(&mut self) {
        self.n += 1;
        if self.n > 1 {
            let ms = (5u64 << (self.n - 2).min(5)).min(100);
            tokio::time::sleep_until(
                self.deadline
                    .min(Instant::now() + Duration::from_millis(ms)),
            )
            .await;
        }
    }

    /// Waits (bounded by the election wait) until a leader is known that is
    /// not `stale`. Returns whether one appeared.
    pub(crate) async fn wait_for_leader(&self, node: &NodeHandle, stale: Option<NodeId>) -> bool {
        let until = self.deadline.min(Instant::now() + self.election_wait);
        let mut rx = node.watch();
        let term = rx.borrow().term;
        let fut = rx.wait_for(|v| match (v.leader, stale) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(l), Some(old)) => l != old || v.term != term,
        });
        let got = matches!(tokio::time::timeout_at(until, fut).await, Ok(Ok(_)));
        got
    }

    /// Waits (bounded) for any change of role, term or leader.
    pub(crate) async fn wait_for_change(&self, node: &NodeHandle) -> bool {
        let until = self.deadline.min(Instant::now() + self.election_wait);
        let mut rx = node.watch();
        rx.mark_unchanged();
        matches!(
            tokio::time::timeout_at(until, rx.changed()).await,
            Ok(Ok(()))
        )
    }
}
