//! The test-only hooks (`--enable-test-hooks`): `POST/GET /test/partition`,
//! the switch that cuts this node off from some peers ([`Partition`]).
//!
//! [`Partition`]: crate::peer::Partition

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::error::error;
use super::state::Shared;

/// `POST /test/partition` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionRequest {
    /// Peers whose traffic (both directions) this node drops; empty heals.
    pub drop_peers: Vec<NodeId>,
}

pub(super) async fn test_partition(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !s.settings.test_hooks {
        return error(
            StatusCode::FORBIDDEN,
            "test hooks are disabled (the node was not started with --enable-test-hooks)",
        );
    }
    if let Err(r) = s.check_token(&headers) {
        return r.into_response();
    }
    let req: PartitionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {e}; expected {{\"drop_peers\": [ids]}}"),
            )
        }
    };
    warn!(drop_peers = ?req.drop_peers, "TEST HOOK: partition set");
    s.partition.set(req.drop_peers);
    Json(PartitionRequest {
        drop_peers: s.partition.blocked(),
    })
    .into_response()
}

pub(super) async fn get_partition(State(s): State<Shared>) -> Response {
    if !s.settings.test_hooks {
        return error(
            StatusCode::FORBIDDEN,
            "test hooks are disabled (the node was not started with --enable-test-hooks)",
        );
    }
    Json(PartitionRequest {
        drop_peers: s.partition.blocked(),
    })
    .into_response()
}
