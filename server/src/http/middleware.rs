//! The layers around every route: latency and identity headers, JSON for
//! every error (`common`), body limits, the body deadline, and the
//! peers-only admission.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use raft_core::wire::{ErrorBody, HEADER_LEADER, HEADER_SERVED_BY};
use tokio::time::Sleep;

use super::error::error;
use super::state::Shared;
use crate::metrics::Metrics;

pub(super) async fn refuse_clients(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/raft/") {
        return next.run(req).await;
    }
    Metrics::inc(&s.metrics.connections_refused);
    let mut resp = s.unavailable(format!(
        "the node has {} connections open, its limit; retry shortly",
        s.settings.max_connections
    ));
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
    resp
}

/// Refuses a body whose declared length is over the limit before reading it
/// (a body without a length is cut off at the limit by `DefaultBodyLimit`).
pub(super) async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body of {len} bytes is over the {limit}-byte limit"),
            );
        }
    }
    next.run(req).await
}

/// Latency, identity headers, and JSON for every error.
pub(super) async fn common(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    // For the access log (at debug, target `raft_kv_server::access`): the
    // path only, never the query (it may carry a prefix or a key).
    let path = tracing::enabled!(target: "raft_kv_server::access", tracing::Level::DEBUG)
        .then(|| req.uri().path().to_string());
    let mut resp = next.run(req).await;
    if let Some(path) = path {
        tracing::debug!(
            target: "raft_kv_server::access",
            method = %method,
            path,
            status = resp.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        resp = jsonify(resp).await;
    }
    let headers = resp.headers_mut();
    headers.insert(HEADER_SERVED_BY, HeaderValue::from(s.id));
    if let Some(v) = s
        .node
        .view()
        .leader
        .and_then(|l| s.directory.leader_header(l))
    {
        headers.insert(HEADER_LEADER, v);
    }
    let route = match &route {
        Some(m) => m.as_str(),
        None if resp.status() == StatusCode::NOT_FOUND => "unmatched",
        None => "static",
    };
    // Labels come from closed sets only: a made-up method must not add a
    // series (routes are templates or "unmatched"/"static").
    let method = match method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    s.metrics
        .observe_request(method, route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Rewrites a plain-text error (an axum rejection) as an [`ErrorBody`].
async fn jsonify(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    // axum answers 422 for a JSON body of the wrong shape; all bad input is 400 here.
    if parts.status == StatusCode::UNPROCESSABLE_ENTITY {
        parts.status = StatusCode::BAD_REQUEST;
    }
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&ErrorBody {
        error: msg,
        leader: None,
        leader_url: None,
    })
    .unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    fired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "request body timeout",
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the body must arrive within `--body-timeout-ms`; a request
/// whose body did not is answered 408 and counted.
pub async fn body_deadline(State(s): State<Shared>, req: Request, next: Next) -> Response {
    // A request without a body (most reads) has nothing to wait for: no
    // timer, no wrapper on the hot path.
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let timeout = s.settings.body_timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        fired: fired.clone(),
    });
    let resp = next.run(Request::from_parts(parts, body)).await;
    if fired.load(Ordering::Relaxed) {
        Metrics::inc(&s.metrics.slow_bodies);
        return error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        );
    }
    resp
}

/// Route layer on the admin and membership routes: the cluster token is
/// checked on the headers before the handler runs, so no body is read for
/// a request without it.
pub async fn require_token(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if let Err(r) = s.check_token(req.headers()) {
        return r.into_response();
    }
    next.run(req).await
}
