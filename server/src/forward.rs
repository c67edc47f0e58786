//! Follower → leader forwarding of client writes (and admin requests) over
//! HTTP. The forwarded request carries `x-raft-forwarded: 1`, so the
//! receiver never forwards it again; the answer is relayed to the client
//! as it came, with `x-raft-forwarded: 1` added.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use raft_core::wire::{
    HEADER_CLIENT_ID, HEADER_CLIENT_SEQ, HEADER_CLUSTER_TOKEN, HEADER_FORWARDED,
};
use tokio::time::Instant;

use crate::transport::error_chain;

/// A client request to relay to the leader.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// Its method.
    pub method: Method,
    /// Its path and query string.
    pub path_and_query: String,
    /// The headers worth relaying (content type, client id/seq, token).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl ForwardRequest {
    /// Captures what to relay of a request.
    pub fn new(method: Method, path_and_query: String, headers: &HeaderMap, body: Bytes) -> Self {
        let mut relay = HeaderMap::new();
        for name in [
            header::CONTENT_TYPE,
            HeaderName::from_static(HEADER_CLIENT_ID),
            HeaderName::from_static(HEADER_CLIENT_SEQ),
            HeaderName::from_static(HEADER_CLUSTER_TOKEN),
        ] {
            if let Some(v) = headers.get(&name) {
                relay.insert(name, v.clone());
            }
        }
        relay.insert(
            HeaderName::from_static(HEADER_FORWARDED),
            HeaderValue::from_static("1"),
        );
        ForwardRequest {
            method,
            path_and_query,
            headers: relay,
            body,
        }
    }
}

/// Why forwarding failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// The request never reached the leader (connection refused, ...):
    /// safe to retry elsewhere.
    NotSent(String),
    /// The request may have reached the leader; its outcome is unknown.
    Unknown(String),
}

/// Sends `req` to the node at `base_url` and relays its answer.
pub async fn forward(
    client: &reqwest::Client,
    base_url: &str,
    req: &ForwardRequest,
    deadline: Instant,
) -> Result<Response, ForwardError> {
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let url = format!("{base_url}{}", req.path_and_query);
    let result = client
        .request(req.method.clone(), &url)
        .headers(req.headers.clone())
        .body(req.body.clone())
        .timeout(remaining)
        .send()
        .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(ForwardError::NotSent(error_chain(&e))),
        Err(e) => return Err(ForwardError::Unknown(error_chain(&e))),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ForwardError::Unknown(error_chain(&e)))?;
    let mut out = Response::builder().status(status);
    if let Some(ct) = content_type {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    out.header(HEADER_FORWARDED, "1")
        .body(Body::from(body))
        .map_err(|e| ForwardError::Unknown(e.to_string()))
}
