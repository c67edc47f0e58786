//! `GET /metrics`: the node's counters ([`crate::metrics`]) and the Raft
//! gauges of its status, in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::state::Shared;

pub(super) async fn metrics(State(s): State<Shared>) -> Response {
    let status = s.node.status().await.ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(status.as_ref()),
    )
        .into_response()
}
