//! Who a node says it is to its peers ([`Credentials`], sent on every
//! stream handshake and snapshot chunk), and the receiving side's check of
//! what a peer says ([`check_identity`]).

use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode};
use raft_core::wire::{HEADER_CLUSTER_ID, HEADER_CLUSTER_TOKEN};
use raft_core::NodeId;
use tracing::warn;

use crate::directory::Directory;
use crate::metrics::Metrics;

/// Request header naming the sender's node id.
pub const HEADER_PEER_ID: &str = "x-raft-peer-id";

/// Who a node says it is to its peers, on every stream handshake and
/// snapshot chunk: its member id, its cluster, the incarnation of its data
/// directory, and the cluster token when there is one.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The sender's member id.
    pub me: NodeId,
    /// Its cluster id.
    pub cluster_id: u64,
    /// Its data directory's incarnation.
    pub incarnation: u64,
    /// The cluster token.
    pub token: Option<String>,
}

impl Credentials {
    /// The request headers that carry them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (HEADER_PEER_ID, self.me.to_string()),
            (HEADER_CLUSTER_ID, crate::identity::hex(self.cluster_id)),
            (HEADER_INCARNATION, crate::identity::hex(self.incarnation)),
        ];
        if let Some(t) = &self.token {
            h.push((HEADER_CLUSTER_TOKEN, t.clone()));
        }
        h
    }
}

/// Request header naming the sender's data-directory incarnation.
pub const HEADER_INCARNATION: &str = "x-raft-incarnation";

/// A refused peer request: the status and message of its JSON error.
#[derive(Debug)]
pub struct Refused {
    /// The status to answer.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

/// Checks a peer request's identity headers against the directory: its
/// member id must be a member's (not ours), its cluster ours, and its
/// incarnation the one seen before. Refusals are counted, and logged once
/// per peer and reason, not per request.
pub fn check_identity(
    me: NodeId,
    directory: &Directory,
    metrics: &Metrics,
    refusals: &RefusalLog,
    headers: &HeaderMap,
) -> Result<NodeId, Refused> {
    let parse = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(from) = parse(HEADER_PEER_ID).and_then(|v| v.trim().parse::<NodeId>().ok()) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            format!("header {HEADER_PEER_ID} must name the sender's node id"),
        ));
    };
    let (Some(cluster_id), Some(incarnation)) = (
        parse(HEADER_CLUSTER_ID).and_then(crate::identity::parse_hex),
        parse(HEADER_INCARNATION).and_then(crate::identity::parse_hex),
    ) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            format!(
                "headers {HEADER_CLUSTER_ID} and {HEADER_INCARNATION} must carry 16 hex digits"
            ),
        ));
    };
    let ours = crate::identity::hex(directory.identity.cluster_id);
    if from == me || !directory.admits_sender(from) {
        Metrics::inc(&metrics.peer_streams_rejected);
        refusals.once(from, "not a member", || {
            warn!(peer = from, "refused peer traffic from node {from}: not a member of this cluster's configuration");
        });
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!(
                "node {from} is not a member of cluster {ours} (this is node {})",
                me
            ),
        ));
    }
    match directory.check_peer(from, cluster_id, incarnation) {
        Ok(()) => Ok(from),
        Err(crate::identity::Refusal::OtherCluster { theirs }) => {
            Metrics::inc(&metrics.peer_other_cluster);
            let theirs = crate::identity::hex(theirs);
            refusals.once(from, "cluster", || {
                warn!(peer = from, "refused peer traffic from node {from}: it belongs to cluster {theirs}, this node to {ours}");
            });
            Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "this node belongs to cluster {ours}; node {from} presents cluster {theirs}"
                ),
            ))
        }
        Err(crate::identity::Refusal::Replaced { known, presented }) => {
            Metrics::inc(&metrics.peer_replaced);
            let (known, presented) = (crate::identity::hex(known), crate::identity::hex(presented));
            refusals.once(from, "incarnation", || {
                tracing::error!(peer = from, "refused node {from}: its data directory was replaced (incarnation {presented}, known {known}); it has forgotten its votes and log. Remove it and add it again: raft-kv-client member remove {from}; raft-kv-client member add {from} URL; then start it with an empty data directory and --join");
            });
            Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "node {from}'s data directory was replaced (incarnation {presented}; the cluster knows {known}): \
                     it has forgotten its votes and log and may not rejoin as the same member. \
                     Remove it (raft-kv-client member remove {from}), add it again (member add {from} URL), \
                     and start it with an empty data directory and --join"
                ),
            ))
        }
    }
}

fn refused(status: StatusCode, message: String) -> Refused {
    Refused { status, message }
}

/// Remembers which refusals were already logged, so a peer that retries
/// every few hundred milliseconds fills no log.
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<std::collections::BTreeSet<(NodeId, &'static str)>>,
}

impl RefusalLog {
    /// Runs `log` the first time `(peer, reason)` is refused.
    pub fn once(&self, peer: NodeId, reason: &'static str, log: impl FnOnce()) {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((peer, reason));
        if first {
            log();
        }
    }
}
