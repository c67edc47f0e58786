//! `GET /healthz` and `GET /readyz`, for orchestrators and load balancers,
//! and `GET /version`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::state::Shared;

/// `GET /healthz`: the process is alive and its Raft loop answers.
pub(super) async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: this node can serve linearizable requests now (a member
/// with a leader heard from within an election timeout, not far behind the
/// committed log); 503 with the reason otherwise.
pub(super) async fn readyz(State(s): State<Shared>) -> Response {
    match s.node.readiness().await {
        Ok(Ok(())) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(why)) => s.unavailable(format!("not ready: {why}")),
        Err(_) => s.unavailable("not ready: the node is shutting down"),
    }
}

/// The server's release and source commit.
pub(crate) fn version_info() -> raft_core::wire::VersionResponse {
    raft_core::wire::VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit: env!("RAFT_KV_COMMIT").to_string(),
    }
}

/// `GET /version`: which build answers.
pub(super) async fn version() -> Response {
    Json(version_info()).into_response()
}
