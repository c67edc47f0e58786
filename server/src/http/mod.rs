//! The HTTP surface: the client REST API, the peer RPC, metrics, admin and
//! test hooks, and the dashboard's static files.
//!
//! Every error is JSON ([`ErrorBody`]): axum's own plain-text rejections
//! (bad path, bad query, body too large, unknown route, wrong method) are
//! rewritten by the [`common`] middleware, which also sets the
//! `x-raft-served-by` / `x-raft-leader` headers and records latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use hyper::upgrade::OnUpgrade;
use raft_core::wire::{
    ClusterResponse, ErrorBody, KeyValue, ListResponse, MemberStatus, PeerBatch, PutRequest,
    SnapshotChunk, SnapshotResponse, StatusResponse, TransferLeaderRequest, WriteResponse,
    HEADER_CLIENT_ID, HEADER_CLIENT_SEQ, HEADER_CLUSTER_TOKEN, HEADER_FORWARDED, HEADER_LEADER,
    HEADER_SERVED_BY,
};
use raft_core::{Command, NodeId, Op, OpResult};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tracing::{debug, warn};

pub mod cluster;
pub mod forward;

use crate::config::Settings;
use crate::directory::Directory;
use crate::error_chain::error_chain;
use crate::http::cluster as membership;
use crate::http::forward::{forward, ForwardError, ForwardRequest};
use crate::metrics::Metrics;
use crate::node::{
    DecodedSnapshot, NodeError, NodeHandle, Query as NodeQuery, QueryResult, WriteOutcome,
};
use crate::peer::credentials::HEADER_PEER_ID;
use crate::peer::handshake::{is_upgrade_to_protocol, PATH, PROTOCOL};
use crate::peer::{check_identity, ChunkError, Partition, PeerStreams, RefusalLog, SnapshotInbox};

/// Default and maximum `limit` of `GET /keys`.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 10_000;

/// What every handler shares.
pub struct AppState {
    /// This node's id.
    pub id: NodeId,
    /// The cluster's identity and the configuration in force (members and
    /// their URLs), as the Raft loop last published it.
    pub directory: Arc<Directory>,
    /// Peer refusals already logged.
    pub refusals: RefusalLog,
    /// The Raft loop.
    pub node: NodeHandle,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The test-only partition switch.
    pub partition: Arc<Partition>,
    /// Limits, timeouts, token.
    pub settings: Arc<Settings>,
    /// HTTP client for `/cluster` and the start-up checks.
    pub http: reqwest::Client,
    /// HTTP client relaying requests to the leader (targets byte for byte).
    pub forwarder: crate::http::forward::ForwardClient,
    /// Slots of the requests forwarded at once ([`crate::http::forward::MAX_FORWARDS_IN_FLIGHT`]).
    pub forward_slots: tokio::sync::Semaphore,
    /// Snapshots arriving in chunks.
    pub snapshot_inbox: SnapshotInbox,
    /// Where a received snapshot's decoded state waits for the Raft loop.
    pub decoded_snapshot: DecodedSnapshot,
    /// The open peer message streams.
    pub peer_streams: Arc<PeerStreams>,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn url_of(&self, id: NodeId) -> Option<String> {
        self.directory.url(id)
    }

    /// The known leader and its URL.
    pub(crate) fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let leader = self.node.view().leader;
        (leader, leader.and_then(|l| self.url_of(l)))
    }

    pub(crate) fn check_token(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.settings.cluster_token else {
            return Ok(());
        };
        let given = headers
            .get(HEADER_CLUSTER_TOKEN)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(())
        } else {
            Err(reject(
                StatusCode::UNAUTHORIZED,
                format!("missing or wrong {HEADER_CLUSTER_TOKEN} header"),
            ))
        }
    }

    /// A 503 naming the leader, when one is known.
    pub(crate) fn unavailable(&self, msg: impl Into<String>) -> Response {
        let (leader, leader_url) = self.leader();
        let body = ErrorBody {
            error: msg.into(),
            leader,
            leader_url,
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let client_limit = state.settings.client_body_limit();
    let peer_limit = state.settings.peer_body_limit();
    let client = Router::new()
        .route("/key/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/key", any(empty_key))
        .route("/key/", any(empty_key))
        .route("/keys", get(list_keys))
        .route("/status", get(status))
        .route("/cluster", get(cluster))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/snapshot", post(admin_snapshot))
        .route("/admin/transfer-leader", post(admin_transfer))
        .route(
            "/cluster/members",
            get(membership::list).post(membership::add),
        )
        .route(
            "/cluster/members/{id}",
            axum::routing::delete(membership::remove),
        )
        .route("/cluster/members/{id}/promote", post(membership::promote))
        .route("/test/partition", post(test_partition).get(get_partition))
        .route("/", get(index))
        .layer(middleware::from_fn_with_state(client_limit, limit_body))
        .layer(DefaultBodyLimit::max(client_limit));
    let peer = Router::new()
        .route(PATH, get(peer_stream))
        .route("/raft/snapshot", post(peer_snapshot))
        .route("/raft/identity", get(membership::identity))
        .layer(middleware::from_fn_with_state(peer_limit, limit_body))
        .layer(DefaultBodyLimit::max(peer_limit));
    client
        .merge(peer)
        .fallback(static_files)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::slow_clients::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), common))
        .with_state(state)
}

/// `app` for a connection accepted into the slots kept for peers (see
/// [`crate::connection_limit`]): the peer routes are served, any other
/// request is answered 503 and its connection closed.
pub fn peers_only(app: Router, state: Shared) -> Router {
    app.layer(middleware::from_fn_with_state(state, refuse_clients))
}

async fn refuse_clients(State(s): State<Shared>, req: Request, next: Next) -> Response {
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
async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
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
async fn common(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
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

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn empty_key() -> Response {
    error(StatusCode::BAD_REQUEST, "the key must not be empty")
}

/// Unknown routes: the dashboard's files for GET/HEAD, else 404.
async fn static_files(State(s): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let resp = ServeDir::new(&s.settings.web_dir)
            .oneshot(req)
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        if resp.status() != StatusCode::NOT_FOUND {
            return resp;
        }
    }
    error(StatusCode::NOT_FOUND, format!("no route for {path}"))
}

async fn index(State(s): State<Shared>, req: Request) -> Response {
    if s.settings.web_dir.join("index.html").is_file() {
        return static_files(State(s), req).await;
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>raft-kv node {id}</title></head>\
         <body><h1>raft-kv node {id}</h1><p>The dashboard was not built: no <code>index.html</code> \
         in <code>{dir}</code> (see <code>--web-dir</code>).</p><p>The API works: \
         <a href=\"/status\">/status</a>, <a href=\"/cluster\">/cluster</a>, \
         <a href=\"/metrics\">/metrics</a>.</p></body></html>",
        id = s.id,
        dir = html_escape(&s.settings.web_dir.display().to_string()),
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ----- keys -----

fn check_key(s: &AppState, key: &str) -> Result<(), Rejection> {
    if key.is_empty() {
        return Err(reject(StatusCode::BAD_REQUEST, "the key must not be empty"));
    }
    if key.len() > s.settings.max_key_bytes {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the key is {} bytes; the limit is {}",
                key.len(),
                s.settings.max_key_bytes
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ReadParams {
    consistency: Option<String>,
}

fn linearizable(consistency: Option<&str>) -> Result<bool, Rejection> {
    match consistency {
        None | Some("linearizable") | Some("") => Ok(true),
        Some("stale") => Ok(false),
        Some(other) => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("unknown consistency `{other}`: use `linearizable` or `stale`"),
        )),
    }
}

async fn get_key(
    State(s): State<Shared>,
    Path(key): Path<String>,
    Query(p): Query<ReadParams>,
) -> Response {
    if let Err(r) = check_key(&s, &key) {
        return r.into_response();
    }
    let lin = match linearizable(p.consistency.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match read(&s, NodeQuery::Get(key.clone()), lin).await {
        Ok(QueryResult::Value(Some(value))) => Json(KeyValue { key, value }).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("key `{key}` not found")),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ListParams {
    prefix: Option<String>,
    limit: Option<usize>,
    consistency: Option<String>,
}

async fn list_keys(State(s): State<Shared>, Query(p): Query<ListParams>) -> Response {
    let lin = match linearizable(p.consistency.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let limit = p.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
    let query = NodeQuery::List {
        prefix: p.prefix.unwrap_or_default(),
        limit,
    };
    match read(&s, query, lin).await {
        Ok(QueryResult::List { items, truncated }) => Json(ListResponse {
            items: items
                .into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect(),
            truncated,
        })
        .into_response(),
        Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected read result"),
        Err(r) => r,
    }
}

/// Parses the optional `(client_id, seq)` headers.
fn client_ids(headers: &HeaderMap) -> Result<(u64, u64), Rejection> {
    let parse = |name: &str| -> Result<Option<u64>, Rejection> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    reject(
                        StatusCode::BAD_REQUEST,
                        format!("header {name} must be an unsigned integer"),
                    )
                }),
        }
    };
    match (parse(HEADER_CLIENT_ID)?, parse(HEADER_CLIENT_SEQ)?) {
        (None, None) => Ok((0, 0)),
        (Some(0), _) => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("header {HEADER_CLIENT_ID} must be non-zero"),
        )),
        (Some(id), Some(seq)) => Ok((id, seq)),
        _ => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("headers {HEADER_CLIENT_ID} and {HEADER_CLIENT_SEQ} go together"),
        )),
    }
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

async fn put_key(
    State(s): State<Shared>,
    Path(key): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_key(&s, &key) {
        return r.into_response();
    }
    let put: PutRequest = match json_body(&headers, &body, "{\"value\": \"...\"}") {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if put.value.len() > s.settings.max_value_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is {} bytes; the limit is {}",
                put.value.len(),
                s.settings.max_value_bytes
            ),
        );
    }
    let (client_id, seq) = match client_ids(&headers) {
        Ok(ids) => ids,
        Err(r) => return r.into_response(),
    };
    let command = Command {
        client_id,
        seq,
        op: Op::Put {
            key: key.clone(),
            value: put.value,
        },
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    // Built only if this node has to forward the write.
    let fwd =
        move || ForwardRequest::new(Method::PUT, path_and_query(&uri), &headers, body.clone());
    write(&s, key, command, fwd, forwarded_in).await
}

async fn delete_key(
    State(s): State<Shared>,
    Path(key): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_key(&s, &key) {
        return r.into_response();
    }
    let (client_id, seq) = match client_ids(&headers) {
        Ok(ids) => ids,
        Err(r) => return r.into_response(),
    };
    let command = Command {
        client_id,
        seq,
        op: Op::Delete { key: key.clone() },
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    let fwd =
        move || ForwardRequest::new(Method::DELETE, path_and_query(&uri), &headers, Bytes::new());
    write(&s, key, command, fwd, forwarded_in).await
}

pub(crate) fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

// ----- waiting for a leader, writes and reads -----

/// Tracks one request's deadlines and retry pace.
pub(crate) struct Attempts {
    pub(crate) deadline: Instant,
    election_wait: Duration,
    n: u32,
}

impl Attempts {
    pub(crate) fn new(s: &AppState) -> Self {
        Attempts {
            deadline: Instant::now() + s.settings.request_timeout,
            election_wait: s.settings.election_wait,
            n: 0,
        }
    }

    /// Paces retries: immediate at first, then up to 100 ms apart.
    pub(crate) async fn pause(&mut self) {
        self.n += 1;
        if self.n > 1 {
            let ms = (5u64 << (self.n - 2).min(5)).min(100);
            tokio::time::sleep_until(
                self.deadline
                    .min(Instant::now() + Duration::from_millis(ms)),
            )
            .await;
        }
    }

    /// Waits (bounded by the election wait) until a leader is known that is
    /// not `stale`. Returns whether one appeared.
    pub(crate) async fn wait_for_leader(&self, node: &NodeHandle, stale: Option<NodeId>) -> bool {
        let until = self.deadline.min(Instant::now() + self.election_wait);
        let mut rx = node.watch();
        let term = rx.borrow().term;
        let fut = rx.wait_for(|v| match (v.leader, stale) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(l), Some(old)) => l != old || v.term != term,
        });
        let got = matches!(tokio::time::timeout_at(until, fut).await, Ok(Ok(_)));
        got
    }

    /// Waits (bounded) for any change of role, term or leader.
    async fn wait_for_change(&self, node: &NodeHandle) -> bool {
        let until = self.deadline.min(Instant::now() + self.election_wait);
        let mut rx = node.watch();
        rx.mark_unchanged();
        matches!(
            tokio::time::timeout_at(until, rx.changed()).await,
            Ok(Ok(()))
        )
    }
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

fn write_timeout(s: &AppState) -> Response {
    let (leader, leader_url) = s.leader();
    let body = ErrorBody {
        error: format!(
            "timed out after {} ms waiting for the write to commit; it may still be applied: \
             retry with the same {HEADER_CLIENT_ID}/{HEADER_CLIENT_SEQ} to apply it at most once",
            s.settings.request_timeout.as_millis()
        ),
        leader,
        leader_url,
    };
    (StatusCode::GATEWAY_TIMEOUT, Json(body)).into_response()
}

async fn write(
    s: &AppState,
    key: String,
    command: Command,
    fwd: impl Fn() -> ForwardRequest,
    forwarded_in: bool,
) -> Response {
    let mut at = Attempts::new(s);
    loop {
        at.pause().await;
        let outcome = tokio::time::timeout_at(at.deadline, s.node.propose(command.clone())).await;
        let err = match outcome {
            Err(_) => return write_timeout(s),
            Ok(Ok(WriteOutcome { index, result })) => {
                let prev = match result {
                    OpResult::Put { prev } | OpResult::Delete { prev } => prev,
                    OpResult::Cas { prev, .. } => prev,
                    OpResult::Stale => {
                        return error(
                            StatusCode::CONFLICT,
                            format!(
                                "stale retry: a newer write of client {} was already applied",
                                command.client_id
                            ),
                        )
                    }
                    OpResult::SeqReused => {
                        return error(
                            StatusCode::CONFLICT,
                            format!(
                                "client {} already used sequence number {} for another write; \
                                 nothing was applied (number each write anew)",
                                command.client_id, command.seq
                            ),
                        )
                    }
                    OpResult::SessionExpired => {
                        return error(
                            StatusCode::CONFLICT,
                            format!(
                                "client {} is not known to the cluster (its session was \
                                 forgotten, or its writes did not start at sequence 1); \
                                 nothing was applied: it may have been applied before, so \
                                 check, then write again under a new client id",
                                command.client_id
                            ),
                        )
                    }
                };
                return Json(WriteResponse {
                    key,
                    index,
                    prev,
                    served_by: s.id,
                })
                .into_response();
            }
            Ok(Err(e)) => e,
        };
        match err {
            NodeError::NotLeader {
                leader: Some(leader),
            } if leader != s.id => {
                if forwarded_in {
                    // Never forward twice: tell the forwarding node who leads.
                    return s.unavailable(format!("not the leader; node {leader} is"));
                }
                let Some(url) = s.url_of(leader) else {
                    return s.unavailable(format!("the leader {leader} has no known address"));
                };
                Metrics::inc(&s.metrics.forwarded);
                match forward(&s.forwarder, &s.forward_slots, &url, &fwd(), at.deadline).await {
                    Ok(resp) if resp.status() != StatusCode::SERVICE_UNAVAILABLE => return resp,
                    Ok(resp) => {
                        debug!(leader, "leader answered 503; waiting for a new leader");
                        if !at.wait_for_leader(&s.node, Some(leader)).await {
                            return resp;
                        }
                    }
                    Err(ForwardError::NotSent(e)) => {
                        debug!(leader, "cannot reach the leader: {e}");
                        if !at.wait_for_leader(&s.node, Some(leader)).await {
                            return s.unavailable(format!(
                                "cannot reach the leader (node {leader} at {url}): {e}"
                            ));
                        }
                    }
                    Err(ForwardError::Unknown(e)) => {
                        warn!(leader, "forwarding failed mid-request: {e}");
                        return s.unavailable(format!(
                            "forwarding to the leader (node {leader}) failed: {e}; the write may \
                             have been applied: retry with the same {HEADER_CLIENT_ID}/{HEADER_CLIENT_SEQ}"
                        ));
                    }
                }
            }
            NodeError::NotLeader { .. } => {
                if !at.wait_for_leader(&s.node, None).await {
                    return no_leader(s);
                }
            }
            NodeError::Transferring => {
                if !at.wait_for_change(&s.node).await {
                    return node_error(s, NodeError::Transferring);
                }
            }
            // Another entry took the write's place: it was not applied.
            NodeError::LeadershipChanged => {}
            e => return node_error(s, e),
        }
        if Instant::now() >= at.deadline {
            return write_timeout(s);
        }
    }
}

async fn read(s: &AppState, query: NodeQuery, linearizable: bool) -> Result<QueryResult, Response> {
    let mut at = Attempts::new(s);
    loop {
        at.pause().await;
        let outcome =
            tokio::time::timeout_at(at.deadline, s.node.read(query.clone(), linearizable)).await;
        match outcome {
            Err(_) => {
                let (leader, leader_url) = s.leader();
                let body = ErrorBody {
                    error: format!(
                        "timed out after {} ms waiting for the leader to confirm the read \
                         (no quorum reachable?); retry, or read with ?consistency=stale",
                        s.settings.request_timeout.as_millis()
                    ),
                    leader,
                    leader_url,
                };
                return Err((StatusCode::GATEWAY_TIMEOUT, Json(body)).into_response());
            }
            Ok(Ok(r)) => return Ok(r),
            // The leader changed under the read: retry with the new one.
            Ok(Err(NodeError::NotLeader { leader: Some(_) })) => {}
            Ok(Err(NodeError::NotLeader { leader: None })) => {
                if !at.wait_for_leader(&s.node, None).await {
                    return Err(no_leader(s));
                }
            }
            Ok(Err(e)) => return Err(node_error(s, e)),
        }
    }
}

// ----- status, cluster, health, metrics -----

async fn status(State(s): State<Shared>) -> Response {
    match s.node.status().await {
        Ok(st) => Json(st).into_response(),
        Err(e) => node_error(&s, e),
    }
}

async fn cluster(State(s): State<Shared>) -> Response {
    let local = match s.node.status().await {
        Ok(st) => st,
        Err(e) => return node_error(&s, e),
    };
    let urls = s.directory.urls();
    let mut ids: Vec<NodeId> = local
        .members
        .iter()
        .chain(&local.learners)
        .chain(&local.outgoing)
        .chain(urls.keys())
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tasks = tokio::task::JoinSet::new();
    for &id in &ids {
        if id == s.id {
            continue;
        }
        let Some(url) = urls.get(&id).cloned() else {
            continue;
        };
        let http = s.http.clone();
        tasks.spawn(async move {
            let r = async {
                let resp = http
                    .get(format!("{url}/status"))
                    .timeout(Duration::from_millis(1000))
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("answered {}", resp.status()));
                }
                resp.json::<StatusResponse>()
                    .await
                    .map_err(|e| error_chain(&e))
            }
            .await;
            (id, r)
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(Ok((id, r))) = tasks.join_next().await {
        answers.insert(id, r);
    }
    let leader = local.leader;
    let members = ids
        .into_iter()
        .map(|id| {
            let url = urls.get(&id).cloned().unwrap_or_default();
            if id == s.id {
                return MemberStatus {
                    id,
                    url,
                    status: Some(local.clone()),
                    error: None,
                };
            }
            match answers.remove(&id) {
                Some(Ok(st)) => MemberStatus {
                    id,
                    url,
                    status: Some(st),
                    error: None,
                },
                Some(Err(e)) => MemberStatus {
                    id,
                    url,
                    status: None,
                    error: Some(e),
                },
                None => MemberStatus {
                    id,
                    url,
                    status: None,
                    error: Some("no address known".into()),
                },
            }
        })
        .collect();
    Json(ClusterResponse {
        served_by: s.id,
        leader,
        members,
    })
    .into_response()
}

/// `GET /healthz`: the process is alive and its Raft loop answers.
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: this node can serve linearizable requests now (a member
/// with a leader heard from within an election timeout, not far behind the
/// committed log); 503 with the reason otherwise.
async fn readyz(State(s): State<Shared>) -> Response {
    match s.node.readiness().await {
        Ok(Ok(())) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(why)) => s.unavailable(format!("not ready: {why}")),
        Err(_) => s.unavailable("not ready: the node is shutting down"),
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
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

// ----- admin -----

async fn admin_snapshot(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return r.into_response();
    }
    match s.node.snapshot().await {
        Ok(index) => Json(SnapshotResponse { index }).into_response(),
        Err(e) => node_error(&s, e),
    }
}

async fn admin_transfer(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return r.into_response();
    }
    let req: TransferLeaderRequest = match json_body(&headers, &body, "{\"to\": <node id>}") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let mut at = Attempts::new(&s);
    loop {
        at.pause().await;
        match s.node.transfer(req.to).await {
            Ok(()) => return Json(serde_json::json!({"ok": true})).into_response(),
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

// ----- test hooks -----

/// `POST /test/partition` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionRequest {
    /// Peers whose traffic (both directions) this node drops; empty heals.
    pub drop_peers: Vec<NodeId>,
}

async fn test_partition(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !s.settings.test_hooks {
        return error(
            StatusCode::FORBIDDEN,
            "test hooks are disabled (the node was not started with --enable-test-hooks)",
        );
    }
    if let Err(r) = s.check_token(&headers) {
        return r.into_response();
    }
    let req: PartitionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {e}; expected {{\"drop_peers\": [ids]}}"),
            )
        }
    };
    warn!(drop_peers = ?req.drop_peers, "TEST HOOK: partition set");
    s.partition.set(req.drop_peers);
    Json(PartitionRequest {
        drop_peers: s.partition.blocked(),
    })
    .into_response()
}

async fn get_partition(State(s): State<Shared>) -> Response {
    if !s.settings.test_hooks {
        return error(
            StatusCode::FORBIDDEN,
            "test hooks are disabled (the node was not started with --enable-test-hooks)",
        );
    }
    Json(PartitionRequest {
        drop_peers: s.partition.blocked(),
    })
    .into_response()
}

// ----- peer RPC -----

/// `GET /raft/stream`: checks the handshake, answers 101 and hands the
/// upgraded connection to a receiving task.
async fn peer_stream(State(s): State<Shared>, mut req: Request) -> Response {
    if let Err(r) = s.check_token(req.headers()) {
        Metrics::inc(&s.metrics.peer_unauthorized);
        let peer = req
            .headers()
            .get(HEADER_PEER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .unwrap_or(0);
        s.refusals.once(peer, "token", || {
            warn!(
                peer,
                "refused a peer stream with a missing or wrong cluster token"
            );
        });
        return r.into_response();
    }
    if !is_upgrade_to_protocol(req.headers()) {
        let mut resp = error(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "{PATH} is the peer message stream: send `connection: upgrade` and \
                 `upgrade: {PROTOCOL}`"
            ),
        );
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        return resp;
    }
    let from = match peer_sender(&s, req.headers()) {
        Ok(from) => from,
        Err(resp) => return *resp,
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded (HTTP/1.1 is required)",
        );
    };
    if !s.peer_streams.open(from, on_upgrade) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    }
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(PROTOCOL)),
        ],
    )
        .into_response()
}

/// The sender a peer request's identity headers name, once checked
/// ([`check_identity`]); the JSON refusal otherwise.
fn peer_sender(s: &AppState, headers: &HeaderMap) -> Result<NodeId, Box<Response>> {
    check_identity(s.id, &s.directory, &s.metrics, &s.refusals, headers)
        .map_err(|r| Box::new(error(r.status, r.message)))
}

/// `POST /raft/snapshot`: one chunk of an InstallSnapshot message. The
/// reassembled snapshot is stepped into Raft like any peer message.
async fn peer_snapshot(State(s): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    // The token and the sender's identity are checked on the headers,
    // before a byte of the body is read: an unauthenticated client cannot
    // make the node buffer a chunk.
    if let Err(r) = s.check_token(&headers) {
        Metrics::inc(&s.metrics.peer_unauthorized);
        let peer = headers
            .get(HEADER_PEER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .unwrap_or(0);
        s.refusals.once(peer, "snapshot token", || {
            tracing::warn!(
                peer,
                "refused a snapshot chunk with a missing or wrong cluster token"
            );
        });
        return r.into_response();
    }
    let sender = match peer_sender(&s, &headers) {
        Ok(from) => from,
        Err(resp) => return *resp,
    };
    let body = match axum::body::to_bytes(body, s.settings.peer_body_limit()).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the snapshot chunk could not be read whole: {e}"),
            )
        }
    };
    let chunk = match SnapshotChunk::decode(&body) {
        Ok(c) => c,
        Err(e) => {
            Metrics::inc(&s.metrics.peer_batches_undecodable);
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a postcard-encoded SnapshotChunk: {e}"),
            );
        }
    };
    if chunk.to != s.id {
        Metrics::inc(&s.metrics.peer_messages_rejected);
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "snapshot chunk addressed to node {}, this is node {}",
                chunk.to, s.id
            ),
        );
    }
    // Only members may hold a partial snapshot here (checked with the
    // headers above): that bounds the memory the inbox can be made to keep.
    if chunk.from != sender {
        Metrics::inc(&s.metrics.peer_messages_rejected);
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "snapshot chunk from node {}, sent by node {sender}",
                chunk.from
            ),
        );
    }
    if s.partition.blocks(chunk.from) {
        Metrics::inc(&s.metrics.peer_messages_dropped);
        return StatusCode::NO_CONTENT.into_response();
    }
    Metrics::inc(&s.metrics.snapshot_chunks_received);
    let from = chunk.from;
    match s.snapshot_inbox.accept(chunk) {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(msg)) => {
            Metrics::inc(&s.metrics.snapshots_received);
            // Decoded here, on a blocking thread, not on the Raft loop.
            let decoded = s.decoded_snapshot.clone();
            let msg = match tokio::task::spawn_blocking(move || {
                let result = decoded.decode(&msg);
                (msg, result)
            })
            .await
            {
                Ok((msg, Ok(()))) => msg,
                Ok((_, Err(e))) => {
                    Metrics::inc(&s.metrics.peer_batches_undecodable);
                    warn!(from, "a snapshot from the leader does not decode: {e}");
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("the snapshot's state machine does not decode: {e}"),
                    );
                }
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("decoding the snapshot failed: {e}"),
                    )
                }
            };
            let batch = PeerBatch {
                from,
                messages: vec![msg],
            };
            match s.node.deliver(batch).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => node_error(&s, e),
            }
        }
        Err(e) => {
            Metrics::inc(&s.metrics.peer_messages_rejected);
            debug!(from, "snapshot chunk refused: {e}");
            let status = match e {
                ChunkError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ChunkError::UnexpectedOffset { .. } => StatusCode::CONFLICT,
                ChunkError::OutOfBounds { .. } | ChunkError::Checksum { .. } => {
                    StatusCode::BAD_REQUEST
                }
            };
            error(status, e.to_string())
        }
    }
}
