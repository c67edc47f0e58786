//! The key-value API: `GET/PUT/DELETE /key/{key}`, `GET/DELETE /keys` and
//! `POST /sessions` (a client session for at-most-once writes). A follower
//! forwards writes and registrations to the leader ([`super::forward`]);
//! reads are linearizable (ReadIndex) on any node, or `?consistency=stale`.
//!
//! Every key has a modification index, the log index of the write that
//! last set it: `GET /key/{key}` sends it as `ETag: "<index>"` and in the
//! JSON. A write with `If-Match: "<index>"` (or `*`: the key exists) or
//! `If-None-Match: *` (create only) carries its condition inside the
//! replicated command, which the state machine checks when it applies the
//! entry: never this handler, whose view may be stale. A failed condition
//! is 412 with the key's index then.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::types::Index;
use raft_core::wire::{
    DeletePrefixResponse, ErrorBody, KeyValue, ListResponse, PreconditionFailed, PutRequest,
    SessionResponse, WriteResponse, HEADER_CLIENT_ID, HEADER_CLIENT_SEQ, HEADER_FORWARDED,
};
use raft_core::{Command, Condition, Op, OpResult};
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::auth::{forbidden, Caller};
use super::error::{error, json_body, no_leader, node_error, reject, Rejection};
use super::forward::{forward, path_and_query, ForwardError, ForwardRequest};
use super::state::{AppState, Attempts, Shared};
use crate::metrics::Metrics;
use crate::node::{NodeError, Query as NodeQuery, QueryResult, WriteOutcome};

/// Default and maximum `limit` of `GET /keys`.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 10_000;

pub(super) async fn empty_key() -> Response {
    error(StatusCode::BAD_REQUEST, "the key must not be empty")
}

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
pub(super) struct ReadParams {
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

pub(super) async fn get_key(
    State(s): State<Shared>,
    caller: Caller,
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
    match read(&s, caller.query(NodeQuery::Get(key.clone())), lin).await {
        Ok(QueryResult::Value(Some(v))) => (
            [(header::ETAG, etag(v.mod_index))],
            Json(KeyValue {
                key,
                value: v.value,
                mod_index: Some(v.mod_index),
            }),
        )
            .into_response(),
        Ok(QueryResult::PermissionDenied(denied)) => forbidden(&denied),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("key `{key}` not found")),
        Err(r) => r,
    }
}

/// A modification index as an entity tag: `"<index>"`.
fn etag(mod_index: Index) -> String {
    format!("\"{mod_index}\"")
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    prefix: Option<String>,
    limit: Option<usize>,
    consistency: Option<String>,
    /// The token a truncated page answered with: list after it.
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// A listing's continue token: the last key returned, hex-encoded (so any
/// key fits a query string as it is). Opaque to clients.
fn continue_token(last_key: &str) -> String {
    last_key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The key a continue token names, or `None` when it is not one of ours.
fn key_after(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

pub(super) async fn list_keys(
    State(s): State<Shared>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Response {
    let lin = match linearizable(p.consistency.as_deref()) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    let limit = p.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
    let after =
        match p.continue_token.as_deref() {
            None | Some("") => None,
            Some(token) => match key_after(token) {
                Some(key) => Some(key),
                None => return error(
                    StatusCode::BAD_REQUEST,
                    "malformed continue token: pass the `continue` of the previous page as it came",
                ),
            },
        };
    let query = NodeQuery::List {
        prefix: p.prefix.unwrap_or_default(),
        after,
        limit,
    };
    match read(&s, caller.query(query), lin).await {
        Ok(QueryResult::PermissionDenied(denied)) => forbidden(&denied),
        Ok(QueryResult::List { items, truncated }) => {
            let continue_token = items
                .last()
                .filter(|_| truncated)
                .map(|(key, _)| continue_token(key));
            Json(ListResponse {
                items: items
                    .into_iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value,
                        mod_index: None,
                    })
                    .collect(),
                truncated,
                continue_token,
            })
            .into_response()
        }
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

/// One request header as text (`None`: absent).
fn header_text<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, Rejection> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|v| Some(v.trim())).map_err(|_| {
            reject(
                StatusCode::BAD_REQUEST,
                format!("header {name} must be ASCII text"),
            )
        }),
    }
}

/// The condition of a conditional write: `If-Match: "<index>"` (also
/// unquoted) the key's modification index is that, `If-Match: *` the key
/// exists, `If-None-Match: *` the key is absent (create only).
fn condition(headers: &HeaderMap) -> Result<Option<Condition>, Rejection> {
    let if_match = header_text(headers, &header::IF_MATCH)?;
    let if_none_match = header_text(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(reject(
            StatusCode::BAD_REQUEST,
            "send If-Match or If-None-Match, not both",
        )),
        (Some("*"), None) => Ok(Some(Condition::Exists)),
        (Some(tag), None) => {
            let digits = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag);
            digits
                .parse::<Index>()
                .map(|i| Some(Condition::ModIndex(i)))
                .map_err(|_| {
                    reject(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "If-Match must be a modification index (\"42\" or 42, as GET's \
                             ETag gives it) or *, not `{tag}`"
                        ),
                    )
                })
        }
        (None, Some("*")) => Ok(Some(Condition::Absent)),
        (None, Some(tag)) => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("If-None-Match supports only * (create only), not `{tag}`"),
        )),
    }
}

pub(super) async fn put_key(
    State(s): State<Shared>,
    caller: Caller,
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
    let op = match condition(&headers) {
        Ok(None) => Op::Put {
            key: key.clone(),
            value: put.value,
        },
        Ok(Some(condition)) => Op::PutIf {
            key: key.clone(),
            value: put.value,
            condition,
        },
        Err(r) => return r.into_response(),
    };
    let command = Command {
        client_id,
        seq,
        op: caller.op(op),
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    // Built only if this node has to forward the write.
    let fwd =
        move || ForwardRequest::new(Method::PUT, path_and_query(&uri), &headers, body.clone());
    write(&s, key, command, fwd, forwarded_in).await
}

/// `POST /sessions`: registers a client session through the log; the
/// answer's `client_id` is the registration's index. Like any write it is
/// forwarded to the leader. A registration is not deduplicated: a retried
/// one opens another session, which simply ages out.
pub(super) async fn register_session(
    State(s): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let command = Command {
        client_id: 0,
        seq: 0,
        op: Op::Register,
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    let fwd =
        move || ForwardRequest::new(Method::POST, path_and_query(&uri), &headers, Bytes::new());
    match commit(&s, &command, fwd, forwarded_in).await {
        Ok(WriteOutcome {
            result: OpResult::Registered { client_id },
            ..
        }) => Json(SessionResponse {
            client_id,
            served_by: s.id,
        })
        .into_response(),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result of a registration: {:?}", other.result),
        ),
        Err(r) => r,
    }
}

pub(super) async fn delete_key(
    State(s): State<Shared>,
    caller: Caller,
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
    let op = match condition(&headers) {
        Ok(None) => Op::Delete { key: key.clone() },
        Ok(Some(condition)) => Op::DeleteIf {
            key: key.clone(),
            condition,
        },
        Err(r) => return r.into_response(),
    };
    let command = Command {
        client_id,
        seq,
        op: caller.op(op),
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    let fwd =
        move || ForwardRequest::new(Method::DELETE, path_and_query(&uri), &headers, Bytes::new());
    write(&s, key, command, fwd, forwarded_in).await
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

#[derive(Deserialize)]
pub(super) struct PrefixParams {
    prefix: Option<String>,
}

/// `DELETE /keys?prefix=P`: removes every key starting with `P` in one
/// replicated command (a non-empty prefix: deleting every key at once is
/// refused). Client ids work as for any write.
pub(super) async fn delete_prefix(
    State(s): State<Shared>,
    caller: Caller,
    Query(p): Query<PrefixParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let prefix = p.prefix.unwrap_or_default();
    if prefix.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "DELETE /keys needs a non-empty ?prefix= (deleting every key at once is refused)",
        );
    }
    if let Err(r) = check_key(&s, &prefix) {
        return r.into_response();
    }
    let (client_id, seq) = match client_ids(&headers) {
        Ok(ids) => ids,
        Err(r) => return r.into_response(),
    };
    let command = Command {
        client_id,
        seq,
        op: caller.op(Op::DeletePrefix { prefix }),
    };
    let forwarded_in = headers.contains_key(HEADER_FORWARDED);
    let fwd =
        move || ForwardRequest::new(Method::DELETE, path_and_query(&uri), &headers, Bytes::new());
    let applied = match commit(&s, &command, fwd, forwarded_in).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some(r) = refused(&command, &applied.result) {
        return r;
    }
    match applied.result {
        OpResult::DeletedPrefix { deleted } => Json(DeletePrefixResponse {
            deleted,
            index: applied.applied_at,
            served_by: s.id,
        })
        .into_response(),
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected result of a prefix delete: {other:?}"),
        ),
    }
}

/// The 409 answer to a write the session table refused (nothing applied).
fn refused(command: &Command, result: &OpResult) -> Option<Response> {
    let message = match result {
        OpResult::Stale => format!(
            "stale retry: a newer write of client {} was already applied",
            command.client_id
        ),
        OpResult::SeqReused => format!(
            "client {} already used sequence number {} for another write; \
             nothing was applied (number each write anew)",
            command.client_id, command.seq
        ),
        OpResult::SessionExpired => format!(
            "client {} has no session (never registered, or forgotten \
             after newer sessions): nothing was applied. If an earlier \
             attempt of this write got no answer it may have been \
             applied: check, then register again (POST /sessions) and \
             write under the new client id",
            command.client_id
        ),
        // The caller's roles do not allow it (checked when the entry was
        // applied, against the users and roles at that point of the log).
        OpResult::PermissionDenied(denied) => return Some(forbidden(denied)),
        _ => return None,
    };
    Some(error(StatusCode::CONFLICT, message))
}

/// Commits a key write and answers with its result.
async fn write(
    s: &AppState,
    key: String,
    command: Command,
    fwd: impl Fn() -> ForwardRequest,
    forwarded_in: bool,
) -> Response {
    let WriteOutcome {
        index,
        result,
        applied_at,
    } = match commit(s, &command, fwd, forwarded_in).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some(r) = refused(&command, &result) {
        return r;
    }
    let (prev, mod_index) = match result {
        OpResult::Put { prev } => (prev, Some(applied_at)),
        OpResult::Delete { prev } => (prev, None),
        OpResult::Cas { prev, .. } => (prev, None),
        OpResult::ConditionFailed { mod_index } => {
            let error = match mod_index {
                Some(i) => format!(
                    "precondition failed: key `{key}` has modification index {i}; nothing \
                     was written"
                ),
                None => format!("precondition failed: key `{key}` is absent; nothing was written"),
            };
            let body = Json(PreconditionFailed { error, mod_index });
            return match mod_index {
                Some(i) => (
                    StatusCode::PRECONDITION_FAILED,
                    [(header::ETAG, etag(i))],
                    body,
                )
                    .into_response(),
                None => (StatusCode::PRECONDITION_FAILED, body).into_response(),
            };
        }
        other => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unexpected result of a key write: {other:?}"),
            )
        }
    };
    Json(WriteResponse {
        key,
        index,
        prev,
        served_by: s.id,
        mod_index,
    })
    .into_response()
}

/// Proposes `command` until it is applied (here, or at the leader a
/// follower forwards to: then the leader's answer is the `Err` response),
/// the deadline passes or the outcome cannot be known.
pub(super) async fn commit(
    s: &AppState,
    command: &Command,
    fwd: impl Fn() -> ForwardRequest,
    forwarded_in: bool,
) -> Result<WriteOutcome, Response> {
    let mut at = Attempts::new(s);
    loop {
        at.pause().await;
        let outcome = tokio::time::timeout_at(at.deadline, s.node.propose(command.clone())).await;
        let err = match outcome {
            Err(_) => return Err(write_timeout(s)),
            Ok(Ok(w)) => return Ok(w),
            Ok(Err(e)) => e,
        };
        match err {
            NodeError::NotLeader {
                leader: Some(leader),
            } if leader != s.id => {
                if forwarded_in {
                    // Never forward twice: tell the forwarding node who leads.
                    return Err(s.unavailable(format!("not the leader; node {leader} is")));
                }
                let Some(url) = s.url_of(leader) else {
                    return Err(s.unavailable(format!("the leader {leader} has no known address")));
                };
                Metrics::inc(&s.metrics.forwarded);
                match forward(&s.forwarder, &s.forward_slots, &url, &fwd(), at.deadline).await {
                    Ok(resp) if resp.status() != StatusCode::SERVICE_UNAVAILABLE => {
                        return Err(resp)
                    }
                    Ok(resp) => {
                        debug!(leader, "leader answered 503; waiting for a new leader");
                        if !at.wait_for_leader(&s.node, Some(leader)).await {
                            return Err(resp);
                        }
                    }
                    Err(ForwardError::NotSent(e)) => {
                        debug!(leader, "cannot reach the leader: {e}");
                        if !at.wait_for_leader(&s.node, Some(leader)).await {
                            return Err(s.unavailable(format!(
                                "cannot reach the leader (node {leader} at {url}): {e}"
                            )));
                        }
                    }
                    Err(ForwardError::Unknown(e)) => {
                        warn!(leader, "forwarding failed mid-request: {e}");
                        return Err(s.unavailable(format!(
                            "forwarding to the leader (node {leader}) failed: {e}; the write may \
                             have been applied: retry with the same {HEADER_CLIENT_ID}/{HEADER_CLIENT_SEQ}"
                        )));
                    }
                }
            }
            NodeError::NotLeader { .. } => {
                if !at.wait_for_leader(&s.node, None).await {
                    return Err(no_leader(s));
                }
            }
            NodeError::Transferring => {
                if !at.wait_for_change(&s.node).await {
                    return Err(node_error(s, NodeError::Transferring));
                }
            }
            // Another entry took the write's place: it was not applied.
            NodeError::LeadershipChanged => {}
            e => return Err(node_error(s, e)),
        }
        if Instant::now() >= at.deadline {
            return Err(write_timeout(s));
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
