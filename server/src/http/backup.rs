//! `GET /admin/backup`: a consistent snapshot of the whole state machine,
//! streamed as a snapshot file (`raft-kv-client snapshot save FILE`; restore
//! with `raft-kv-server --restore FILE`). Token-protected like every admin
//! route.
//!
//! Consistency: a linearizable read first (ReadIndex, through the leader
//! when this node follows) makes this node's state machine hold every
//! write acknowledged before the request; then a snapshot covering what is
//! applied is asked for, and the newest snapshot file at or after it is
//! streamed. The file is opened before the first byte is sent, so a
//! compaction that removes it meanwhile does not cut the stream (an open
//! file outlives its name). The file carries its own CRC32.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use raft_core::replica::Query;
use tokio_util::io::ReaderStream;

use super::error::{node_error, reject};
use super::state::Shared;
use crate::storage;

/// Names the index of the snapshot a backup holds.
pub const HEADER_SNAPSHOT_INDEX: &str = "x-raft-kv-snapshot-index";

pub(super) async fn backup(State(s): State<Shared>) -> Response {
    // Everything acknowledged before this request is applied here after a
    // linearizable read.
    if let Err(e) = s.node.read(Query::Get(String::new()), true).await {
        return node_error(&s, e);
    }
    let index = match s.node.snapshot().await {
        Ok(index) => index,
        Err(e) => return node_error(&s, e),
    };
    let dir = s.settings.data_dir.clone();
    let found = tokio::task::spawn_blocking(move || {
        let (at, path) = storage::newest_snapshot_file(&dir, index)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no snapshot file at or after index {index} in {}",
                    dir.display()
                )
            })?;
        let file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        Ok::<_, String>((at, file, len))
    })
    .await;
    let (at, file, len) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(why)) => {
            return reject(StatusCode::INTERNAL_SERVER_ERROR, format!("backup: {why}"))
                .into_response()
        }
        Err(e) => {
            return reject(StatusCode::INTERNAL_SERVER_ERROR, format!("backup: {e}"))
                .into_response()
        }
    };
    let stream = ReaderStream::new(tokio::fs::File::from_std(file));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::HeaderName::from_static(HEADER_SNAPSHOT_INDEX),
                at.to_string(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
