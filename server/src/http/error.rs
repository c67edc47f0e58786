//! Every error is JSON ([`ErrorBody`]): the helpers the handlers answer
//! with, and the decoding of JSON request bodies.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::wire::ErrorBody;

use super::state::AppState;
use crate::node::NodeError;

/// A JSON error answer.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    reject(status, msg).into_response()
}

/// A JSON error answer as a value (small enough for `Result`s).
pub struct Rejection(StatusCode, ErrorBody);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub(crate) fn reject(status: StatusCode, msg: impl Into<String>) -> Rejection {
    Rejection(
        status,
        ErrorBody {
            error: msg.into(),
            leader: None,
            leader_url: None,
        },
    )
}

/// Decodes a JSON request body of the given `shape` (for the error
/// message): 415 without a JSON content type, 400 when it does not decode.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    shape: &str,
) -> Result<T, Rejection> {
    if !is_json_content_type(headers) {
        return Err(reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be JSON `{shape}` with content-type application/json"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("invalid body: {e}; expected {shape}"),
        )
    })
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

pub(crate) fn node_error(s: &AppState, e: NodeError) -> Response {
    match e {
        NodeError::Rejected(m) => error(StatusCode::BAD_REQUEST, m),
        NodeError::ConfChange(e) => error(StatusCode::CONFLICT, e.to_string()),
        NodeError::ShuttingDown => {
            s.unavailable("the node is shutting down; retry on another node")
        }
        NodeError::OutcomeUnknown(m) => s.unavailable(m),
        NodeError::NotLeader { .. } => s.unavailable("no leader is available; retry shortly"),
        NodeError::Transferring => {
            s.unavailable("a leadership transfer is in progress; retry shortly")
        }
        NodeError::LeadershipChanged => {
            s.unavailable("leadership changed before the write committed; retry")
        }
    }
}

pub(crate) fn no_leader(s: &AppState) -> Response {
    s.unavailable(format!(
        "no leader elected within {} ms; retry shortly",
        s.settings.election_wait.as_millis()
    ))
}
