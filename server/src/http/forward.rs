//! Follower → leader forwarding of client writes (and admin requests) over
//! HTTP. The forwarded request carries `x-raft-forwarded: 1`, so the
//! receiver never forwards it again; the answer is relayed to the client
//! as it came, with `x-raft-forwarded: 1` added.
//!
//! The request target is relayed byte for byte: it goes out through hyper's
//! client with an `http::Uri`, which keeps the path as it is. A URL parser
//! (reqwest's) would resolve `..` and `%2E%2E` segments, so a follower would
//! have the leader act on another key than the one the client named.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use raft_core::wire::{
    HEADER_CLIENT_ID, HEADER_CLIENT_SEQ, HEADER_CLUSTER_TOKEN, HEADER_FORWARDED,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error_chain::error_chain;

/// The most requests a node forwards to the leader at once; more wait for
/// a slot (until their deadline). Each one in flight holds an HTTP/1.1
/// connection to the leader, so this bounds the connections (and their
/// buffers) an overloaded follower opens, whatever its clients do.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 256;

/// The HTTP client that relays requests to the leader.
pub type ForwardClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A [`ForwardClient`] keeping idle connections to the leader for `idle`.
/// With TLS it reaches the leader as a member (`tls::peer_client`), so a
/// forwarded write needs no client certificate of the leader's client CA.
pub fn forward_client(
    idle: Duration,
    tls: Option<&std::sync::Arc<crate::tls::Tls>>,
) -> Result<ForwardClient, crate::tls::TlsError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let config = crate::tls::peer_client::config_or_plain(tls)?;
    connector.enforce_http(false);
    // Built from its parts: the builder would replace the peer ALPN
    // protocol with `http/1.1`. HTTP/1.1 is what it speaks either way.
    let connector = HttpsConnector::from((connector, config));
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .build(connector))
}

/// A client request to relay to the leader.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// Its method.
    pub method: Method,
    /// Its path and query string.
    pub path_and_query: String,
    /// The headers worth relaying (content type, conditions, client
    /// id/seq, cluster token, the user's token).
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
            // A conditional write's condition: the leader turns it into
            // the command, so it must arrive there.
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static(HEADER_CLIENT_ID),
            HeaderName::from_static(HEADER_CLIENT_SEQ),
            HeaderName::from_static(HEADER_CLUSTER_TOKEN),
            // The user's token: the leader authenticates the request again.
            header::AUTHORIZATION,
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

/// Sends `req` to the node at `base_url` and relays its answer, once one
/// of `slots` (sized [`MAX_FORWARDS_IN_FLIGHT`]) is free.
pub async fn forward(
    client: &ForwardClient,
    slots: &Semaphore,
    base_url: &str,
    req: &ForwardRequest,
    deadline: Instant,
) -> Result<Response, ForwardError> {
    let _slot = match tokio::time::timeout_at(deadline, slots.acquire()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            return Err(ForwardError::NotSent(format!(
                "{MAX_FORWARDS_IN_FLIGHT} forwarded requests already in flight"
            )))
        }
    };
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    // The original target, unchanged: no URL parsing, no normalization.
    let uri: Uri = format!("{base_url}{}", req.path_and_query)
        .parse()
        .map_err(|e| ForwardError::NotSent(format!("bad leader address {base_url}: {e}")))?;
    let mut request = axum::http::Request::builder()
        .method(req.method.clone())
        .uri(uri);
    if let Some(h) = request.headers_mut() {
        h.extend(req.headers.clone());
    }
    let request = request
        .body(Full::new(req.body.clone()))
        .map_err(|e| ForwardError::NotSent(e.to_string()))?;
    let exchange = async {
        let resp = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                ForwardError::NotSent(error_chain(&e))
            } else {
                ForwardError::Unknown(error_chain(&e))
            }
        })?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ForwardError::Unknown(error_chain(&e)))?
            .to_bytes();
        Ok::<_, ForwardError>((status, content_type, body))
    };
    let (status, content_type, body) = match tokio::time::timeout(remaining, exchange).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ForwardError::Unknown(format!(
                "no answer from the leader within {} ms",
                remaining.as_millis()
            )))
        }
    };
    let mut out = Response::builder().status(status);
    if let Some(ct) = content_type {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    out.header(HEADER_FORWARDED, "1")
        .body(Body::from(body))
        .map_err(|e| ForwardError::Unknown(e.to_string()))
}

/// The request target (path and query) as the client sent it.
pub(crate) fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn with_every_slot_taken_a_request_is_not_sent() {
        let client = forward_client(Duration::from_secs(1), None).unwrap();
        let slots = Semaphore::new(0);
        let req = ForwardRequest::new(
            Method::PUT,
            "/key/k".into(),
            &HeaderMap::new(),
            Bytes::from_static(b"v"),
        );
        let deadline = Instant::now() + Duration::from_millis(20);
        // Nothing listens there: had it been sent, it would fail otherwise.
        let err = forward(&client, &slots, "http://127.0.0.1:9", &req, deadline)
            .await
            .expect_err("no free slot");
        match err {
            ForwardError::NotSent(msg) => assert!(msg.contains("in flight"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
