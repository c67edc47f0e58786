//! `GET /metrics`: the node's counters ([`crate::metrics`]) and the Raft
//! gauges of its status, in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::state::Shared;

pub(super) async fn metrics(State(s): State<Shared>) -> Response {
    let status = s.node.status().await.ok();
    // The directory walk and /proc reads touch the file system: off the
    // async workers.
    let dir = s.settings.data_dir.clone();
    let (data_dir_bytes, process) = tokio::task::spawn_blocking(move || {
        (dir_bytes(&dir), crate::metrics::ProcessStats::read())
    })
    .await
    .unwrap_or_default();
    let scrape = crate::metrics::Scrape {
        status: status.as_ref(),
        data_dir_bytes,
        process,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&scrape),
    )
        .into_response()
}

/// Bytes in the files directly in `dir` (a data directory holds no
/// subdirectories); `None` when it cannot be listed.
fn dir_bytes(dir: &std::path::Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum(),
    )
}
