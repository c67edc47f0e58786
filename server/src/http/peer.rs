//! The peer RPC's HTTP endpoints (token and sender checked on the headers,
//! before any body is read): `GET /raft/stream` (the message stream's
//! upgrade; the stream itself is [`crate::peer::receiver`]'s),
//! `POST /raft/snapshot` (one snapshot chunk) and `GET /raft/identity`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper::upgrade::OnUpgrade;
use raft_core::wire::{PeerBatch, SnapshotChunk};
use raft_core::NodeId;
use tracing::{debug, warn};

use super::error::{error, node_error};
use super::state::{AppState, Shared};
use crate::identity::{hex, IdentityResponse};
use crate::metrics::Metrics;
use crate::peer::credentials::HEADER_PEER_ID;
use crate::peer::handshake::{is_upgrade_to_protocol, PATH, PROTOCOL};
use crate::peer::{check_identity, ChunkError};

/// `GET /raft/stream`: checks the handshake, answers 101 and hands the
/// upgraded connection to a receiving task.
pub(super) async fn stream(State(s): State<Shared>, mut req: Request) -> Response {
    if let Err(r) = s.check_token(req.headers()) {
        Metrics::inc(&s.metrics.peer_unauthorized);
        let peer = req
            .headers()
            .get(HEADER_PEER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .unwrap_or(0);
        s.refusals.once(peer, "token", || {
            warn!(
                peer,
                "refused a peer stream with a missing or wrong cluster token"
            );
        });
        return r.into_response();
    }
    if !is_upgrade_to_protocol(req.headers()) {
        let mut resp = error(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "{PATH} is the peer message stream: send `connection: upgrade` and \
                 `upgrade: {PROTOCOL}`"
            ),
        );
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        return resp;
    }
    let from = match sender(&s, req.headers()) {
        Ok(from) => from,
        Err(resp) => return *resp,
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded (HTTP/1.1 is required)",
        );
    };
    if !s.peer_streams.open(from, on_upgrade) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    }
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(PROTOCOL)),
        ],
    )
        .into_response()
}

/// The sender a peer request's identity headers name, once checked
/// ([`check_identity`]); the JSON refusal otherwise.
fn sender(s: &AppState, headers: &HeaderMap) -> Result<NodeId, Box<Response>> {
    check_identity(s.id, &s.directory, &s.metrics, &s.refusals, headers)
        .map_err(|r| Box::new(error(r.status, r.message)))
}

/// `POST /raft/snapshot`: one chunk of an InstallSnapshot message. The
/// reassembled snapshot is stepped into Raft like any peer message.
pub(super) async fn snapshot(State(s): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    // The token and the sender's identity are checked on the headers,
    // before a byte of the body is read: an unauthenticated client cannot
    // make the node buffer a chunk.
    if let Err(r) = s.check_token(&headers) {
        Metrics::inc(&s.metrics.peer_unauthorized);
        let peer = headers
            .get(HEADER_PEER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .unwrap_or(0);
        s.refusals.once(peer, "snapshot token", || {
            tracing::warn!(
                peer,
                "refused a snapshot chunk with a missing or wrong cluster token"
            );
        });
        return r.into_response();
    }
    let sender = match sender(&s, &headers) {
        Ok(from) => from,
        Err(resp) => return *resp,
    };
    let body = match axum::body::to_bytes(body, s.settings.peer_body_limit()).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the snapshot chunk could not be read whole: {e}"),
            )
        }
    };
    let chunk = match SnapshotChunk::decode(&body) {
        Ok(c) => c,
        Err(e) => {
            Metrics::inc(&s.metrics.peer_batches_undecodable);
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a postcard-encoded SnapshotChunk: {e}"),
            );
        }
    };
    if chunk.to != s.id {
        Metrics::inc(&s.metrics.peer_messages_rejected);
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "snapshot chunk addressed to node {}, this is node {}",
                chunk.to, s.id
            ),
        );
    }
    // Only members may hold a partial snapshot here (checked with the
    // headers above): that bounds the memory the inbox can be made to keep.
    if chunk.from != sender {
        Metrics::inc(&s.metrics.peer_messages_rejected);
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "snapshot chunk from node {}, sent by node {sender}",
                chunk.from
            ),
        );
    }
    if s.partition.blocks(chunk.from) {
        Metrics::inc(&s.metrics.peer_messages_dropped);
        return StatusCode::NO_CONTENT.into_response();
    }
    Metrics::inc(&s.metrics.snapshot_chunks_received);
    let from = chunk.from;
    match s.snapshot_inbox.accept(chunk) {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(msg)) => {
            Metrics::inc(&s.metrics.snapshots_received);
            // Decoded here, on a blocking thread, not on the Raft loop.
            let decoded = s.decoded_snapshot.clone();
            let msg = match tokio::task::spawn_blocking(move || {
                let result = decoded.decode(&msg);
                (msg, result)
            })
            .await
            {
                Ok((msg, Ok(()))) => msg,
                Ok((_, Err(e))) => {
                    Metrics::inc(&s.metrics.peer_batches_undecodable);
                    warn!(from, "a snapshot from the leader does not decode: {e}");
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("the snapshot's state machine does not decode: {e}"),
                    );
                }
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("decoding the snapshot failed: {e}"),
                    )
                }
            };
            let batch = PeerBatch {
                from,
                messages: vec![msg],
            };
            match s.node.deliver(batch).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => node_error(&s, e),
            }
        }
        Err(e) => {
            Metrics::inc(&s.metrics.peer_messages_rejected);
            debug!(from, "snapshot chunk refused: {e}");
            let status = match e {
                ChunkError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ChunkError::UnexpectedOffset { .. } => StatusCode::CONFLICT,
                ChunkError::OutOfBounds { .. } | ChunkError::Checksum { .. } => {
                    StatusCode::BAD_REQUEST
                }
            };
            error(status, e.to_string())
        }
    }
}

/// `GET /raft/identity` (peer RPC): this node's cluster id, member id and
/// the peers' incarnations it knows, for a founder checking at start-up
/// that its empty data directory is not a wiped member's.
pub async fn identity(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return r.into_response();
    }
    Json(IdentityResponse {
        cluster_id: hex(s.directory.identity.cluster_id),
        node_id: s.id,
        incarnations: s
            .directory
            .incarnations
            .all()
            .into_iter()
            .map(|(id, inc)| (id, hex(inc)))
            .collect(),
    })
    .into_response()
}
