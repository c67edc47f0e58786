//! `GET /log?from=&limit=`: a window of this node's in-memory log, each
//! entry's index, term, kind and a short summary without values (`put k`),
//! answered by the Raft loop from memory (at most
//! [`MAX_LOG_WINDOW`] entries copied per request).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::Index;
use serde::Deserialize;

use super::error::{error, node_error};
use super::state::Shared;
use crate::node::MAX_LOG_WINDOW;

/// Entries answered when the request names no `limit`.
const DEFAULT_LIMIT: u64 = 64;

/// The query of `GET /log`.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// The first index wanted (absent: the newest `limit` entries).
    from: Option<Index>,
    /// How many entries, 1 to [`MAX_LOG_WINDOW`].
    limit: Option<u64>,
}

pub(super) async fn log_window(State(s): State<Shared>, Query(q): Query<LogQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LOG_WINDOW {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LOG_WINDOW}, got {limit}"),
        );
    }
    match s.node.log_window(q.from, limit).await {
        Ok(w) => Json(w).into_response(),
        Err(e) => node_error(&s, e),
    }
}
