//! The admin routes: `POST /admin/snapshot` and `POST /admin/transfer-leader`
//! (forwarded to the leader by a follower). The token is checked by the
//! router's `require_token` layer, before the body is read.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::wire::{SnapshotResponse, TransferLeaderRequest, HEADER_FORWARDED};

use super::error::{json_body, no_leader, node_error};
use super::forward::{forward, path_and_query, ForwardError, ForwardRequest};
use super::state::{Attempts, Shared};
use crate::node::NodeError;

pub(super) async fn admin_snapshot(State(s): State<Shared>) -> Response {
    match s.node.snapshot().await {
        Ok(index) => {
            tracing::info!(index, "admin: snapshot requested");
            Json(SnapshotResponse { index }).into_response()
        }
        Err(e) => node_error(&s, e),
    }
}

pub(super) async fn admin_transfer(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: TransferLeaderRequest = match json_body(&headers, &body, "{\"to\": <node id>}") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let mut at = Attempts::new(&s);
    loop {
        at.pause().await;
        match s.node.transfer(req.to).await {
            Ok(()) => {
                tracing::info!(to = req.to, "admin: leadership transfer requested");
                return Json(serde_json::json!({"ok": true})).into_response();
            }
            Err(NodeError::NotLeader {
                leader: Some(leader),
            }) if leader != s.id && !headers.contains_key(HEADER_FORWARDED) => {
                let Some(url) = s.url_of(leader) else {
                    return s.unavailable(format!("the leader {leader} has no known address"));
                };
                let fwd = ForwardRequest::new(Method::POST, path_and_query(&uri), &headers, body);
                return match forward(&s.forwarder, &s.forward_slots, &url, &fwd, at.deadline).await
                {
                    Ok(resp) => resp,
                    Err(ForwardError::NotSent(e) | ForwardError::Unknown(e)) => {
                        s.unavailable(format!("cannot reach the leader (node {leader}): {e}"))
                    }
                };
            }
            Err(NodeError::NotLeader { leader: None }) => {
                if !at.wait_for_leader(&s.node, None).await {
                    return no_leader(&s);
                }
            }
            Err(e) => return node_error(&s, e),
        }
    }
}
