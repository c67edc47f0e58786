//! The HTTP client of the REST API: tries the servers in turn, follows the
//! leader's hint on 503 and connection errors, retries writes with the same
//! `(client_id, seq)` and keeps to one overall deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use raft_core::wire::{
    AddMemberRequest, ClusterResponse, DeletePrefixResponse, ErrorBody, KeyValue, ListResponse,
    MembersResponse, PreconditionFailed, PutRequest, SessionResponse, StatusResponse, TokenRequest,
    TokenResponse, WriteResponse, HEADER_CLIENT_ID, HEADER_CLIENT_SEQ, HEADER_CLUSTER_TOKEN,
    HEADER_LEADER,
};
pub use raft_core::wire::{SnapshotResponse, TransferLeaderRequest};
use raft_core::Condition;
use raft_core::NodeId;
use reqwest::{header::HeaderMap, Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::cli::{parse_server_url, Consistency};
use crate::error::{one_line, CliError};

/// The longest pause between two rounds of attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// The first pause between two rounds of attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The most keys `list` asks for in one page (the server's own cap is
/// larger): a long listing is several linearizable reads.
const LIST_PAGE: u64 = 1000;
/// How long a TCP connect may take before the next server is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The hint the server appends to a 412 of a membership change; the CLI
/// replaces it with its own flag.
const SERVER_FORCE_HINT: &str = " (add force=true to do it anyway)";

/// Which server a request should go to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The leader when known (writes, linearizable reads): avoids a forward.
    Leader,
    /// The first server that answers (status, stale reads, node-local admin).
    AnyNode,
}

/// What a request carries besides its path, query and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carries {
    /// Nothing more (reads, status).
    Nothing,
    /// The cluster token, when one is set (admin calls).
    Token,
    /// The client id and the next sequence number, the same on every retry,
    /// so the write is applied at most once (writes).
    WriteId,
}

/// One REST request, as [`ApiClient::send`] takes it.
struct Request<'a> {
    route: Route,
    method: Method,
    path: &'a [&'a str],
    query: &'a [(&'a str, &'a str)],
    body: Option<Vec<u8>>,
    carries: Carries,
    /// A conditional write's condition, sent as `If-Match` /
    /// `If-None-Match`.
    condition: Option<Condition>,
}

impl<'a> Request<'a> {
    /// A `GET` of `path`, first to `route`.
    fn read(route: Route, path: &'a [&'a str]) -> Self {
        Request {
            route,
            method: Method::GET,
            path,
            query: &[],
            body: None,
            carries: Carries::Nothing,
            condition: None,
        }
    }

    /// A write to the leader with the next `(client_id, seq)`.
    fn write(method: Method, path: &'a [&'a str], body: Option<Vec<u8>>) -> Self {
        Request {
            route: Route::Leader,
            method,
            path,
            query: &[],
            body,
            carries: Carries::WriteId,
            condition: None,
        }
    }

    /// An admin `POST` of `path` with the cluster token, first to `route`
    /// (another method with [`Request::method`]).
    fn admin(route: Route, path: &'a [&'a str], body: Option<Vec<u8>>) -> Self {
        Request {
            route,
            method: Method::POST,
            path,
            query: &[],
            body,
            carries: Carries::Token,
            condition: None,
        }
    }

    /// The same request with `query`.
    fn query(self, query: &'a [(&'a str, &'a str)]) -> Self {
        Request { query, ..self }
    }

    /// The same request with `method`.
    fn method(self, method: Method) -> Self {
        Request { method, ..self }
    }

    /// The same write, applied only if `condition` holds when it is.
    fn condition(self, condition: Option<Condition>) -> Self {
        Request { condition, ..self }
    }
}

/// An answer that is neither a success nor a retryable failure.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    server: Url,
    /// Whether an earlier attempt of the request may have reached a server
    /// (it got no answer, or an "unavailable" one) before this answer.
    retried: bool,
}

/// The HTTP client under [`ApiClient`]: hyper's, which sends a request
/// target exactly as built. A URL parser would drop a `.` or `..` path
/// segment, and `.` and `..` are keys like any other.
type Http = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The REST client used by the commands.
pub struct ApiClient {
    http: Http,
    servers: Vec<Url>,
    deadline: Instant,
    timeout: Duration,
    token: Option<String>,
    /// The session the cluster gave this process at its first write that
    /// needs one (`POST /sessions`); `None` before.
    client_id: Option<u64>,
    next_seq: u64,
    leader: Option<Url>,
    /// The user's token (`--user`), sent on every request once obtained.
    bearer: Option<String>,
}

impl ApiClient {
    /// A client for `servers` whose requests must all finish within
    /// `timeout` from now; https:// servers need `tls` (`--cacert`).
    pub fn new(
        servers: Vec<Url>,
        timeout: Duration,
        token: Option<String>,
        tls: crate::tls::Tls,
    ) -> Result<Self, CliError> {
        if servers.is_empty() {
            return Err(CliError::Usage("no server given".into()));
        }
        if let (None, Some(https)) = (&tls, servers.iter().find(|u| u.scheme() == "https")) {
            return Err(crate::tls::needs_cacert(https));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout.min(CONNECT_TIMEOUT)));
        connector.enforce_http(false);
        // Without --cacert no certificate is trusted: an https leader hint
        // then fails to connect and names the reason.
        let config = match tls {
            Some(config) => config,
            None => crate::tls::TlsArgs::default().trust_nothing()?,
        };
        let connector = HttpsConnector::from((connector, config));
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(ApiClient {
            http,
            servers,
            deadline: Instant::now() + timeout,
            timeout,
            token,
            client_id: None,
            next_seq: 1,
            leader: None,
            bearer: None,
        })
    }

    /// Gets a token for `user` (`POST /auth/token`) from the first server
    /// that answers; every later request of this process carries it.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), CliError> {
        let body = serde_json::to_vec(&TokenRequest {
            user: user.to_string(),
            password: password.to_string(),
        })
        .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))?;
        let request = Request {
            route: Route::AnyNode,
            method: Method::POST,
            path: &["auth", "token"],
            query: &[],
            body: Some(body),
            carries: Carries::Nothing,
            condition: None,
        };
        let answer = self.send(request).await?;
        let token: TokenResponse = decode(answer)?;
        self.bearer = Some(token.token);
        Ok(())
    }

    /// One `/auth` request (`path` below `/auth`) to the leader with the
    /// cluster token, decoded from JSON.
    pub async fn auth_request<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<T, CliError> {
        let answer = self
            .send(
                Request::admin(Route::Leader, path, body)
                    .method(method)
                    .query(query),
            )
            .await?;
        decode(answer)
    }

    /// `GET /key/{key}`: `None` when the key is absent.
    pub async fn get(
        &mut self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, CliError> {
        let (route, query) = match consistency {
            Consistency::Linearizable => (Route::Leader, None),
            Consistency::Stale => (Route::AnyNode, Some(("consistency", "stale"))),
        };
        let answer = self
            .send(Request::read(route, &["key", key]).query(query.as_slice()))
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(answer).map(Some)
    }

    /// Registers this process's session (`POST /sessions`) unless it has
    /// one: its writes then carry `(client_id, 1, 2, ...)`. A registration
    /// retried after no answer may open a second session; it only ages out.
    pub async fn ensure_session(&mut self) -> Result<u64, CliError> {
        if let Some(id) = self.client_id {
            return Ok(id);
        }
        let request = Request::write(Method::POST, &["sessions"], None);
        let answer = self
            .send(Request {
                carries: Carries::Nothing,
                ..request
            })
            .await?;
        let session: SessionResponse = decode(answer)?;
        if session.client_id == 0 {
            return Err(CliError::BadResponse {
                server: "the cluster".into(),
                message: "the registration answered client id 0".into(),
            });
        }
        self.client_id = Some(session.client_id);
        self.next_seq = 1;
        Ok(session.client_id)
    }

    /// `PUT /key/{key}`, retried with one `(client_id, seq)`; with a
    /// condition, applied only if it holds (else
    /// [`CliError::PreconditionFailed`]).
    pub async fn put(
        &mut self,
        key: &str,
        value: &str,
        condition: Option<Condition>,
    ) -> Result<WriteResponse, CliError> {
        self.ensure_session().await?;
        let body = serde_json::to_vec(&PutRequest {
            value: value.to_string(),
        })
        .map_err(|e| CliError::Usage(format!("cannot encode the value: {e}")))?;
        let answer = self
            .send(Request::write(Method::PUT, &["key", key], Some(body)).condition(condition))
            .await?;
        decode_write(key, answer)
    }

    /// `DELETE /key/{key}`, retried with one `(client_id, seq)`; with a
    /// condition, applied only if it holds.
    pub async fn delete(
        &mut self,
        key: &str,
        condition: Option<Condition>,
    ) -> Result<WriteResponse, CliError> {
        self.ensure_session().await?;
        let answer = self
            .send(Request::write(Method::DELETE, &["key", key], None).condition(condition))
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(CliError::NotFound(key.to_string()));
        }
        decode_write(key, answer)
    }

    /// `DELETE /keys?prefix=P`, retried with one `(client_id, seq)`.
    pub async fn delete_prefix(&mut self, prefix: &str) -> Result<DeletePrefixResponse, CliError> {
        self.ensure_session().await?;
        let query = [("prefix", prefix)];
        let answer = self
            .send(Request::write(Method::DELETE, &["keys"], None).query(&query))
            .await?;
        decode(answer).map_err(explain_write_error)
    }

    /// `GET /keys?prefix=&limit=`, page after page (each page its own
    /// linearizable read, the next one asked with the `continue` token of
    /// the last) until `limit` keys or the end of the matching keys.
    pub async fn list(&mut self, prefix: &str, limit: u64) -> Result<ListResponse, CliError> {
        let mut list = ListResponse {
            items: Vec::new(),
            truncated: false,
            continue_token: None,
        };
        loop {
            let wanted = limit.saturating_sub(list.items.len() as u64);
            let page_limit = wanted.min(LIST_PAGE).to_string();
            let mut query = vec![("prefix", prefix), ("limit", page_limit.as_str())];
            if let Some(token) = list.continue_token.as_deref() {
                query.push(("continue", token));
            }
            let answer = self
                .send(Request::read(Route::Leader, &["keys"]).query(&query))
                .await?;
            let server = base(&answer.server);
            let page: ListResponse = decode(answer)?;
            list.items.extend(page.items);
            list.truncated = page.truncated;
            list.continue_token = page.continue_token;
            if list.items.len() as u64 > limit {
                return Err(CliError::BadResponse {
                    server,
                    message: format!("more keys than the limit {limit} asked for"),
                });
            }
            // Done at the limit, at the end of the keys, or when the server
            // gave no token to go on with (a server from before paging).
            if list.items.len() as u64 == limit || !list.truncated || list.continue_token.is_none()
            {
                return Ok(list);
            }
        }
    }

    /// `GET /status` of the first server that answers.
    pub async fn status(&mut self) -> Result<StatusResponse, CliError> {
        let answer = self
            .send(Request::read(Route::AnyNode, &["status"]))
            .await?;
        decode(answer)
    }

    /// `GET /version` of the first server that answers.
    pub async fn version(&mut self) -> Result<raft_core::wire::VersionResponse, CliError> {
        let answer = self
            .send(Request::read(Route::AnyNode, &["version"]))
            .await?;
        decode(answer)
    }

    /// `GET /cluster` from the first server that answers.
    pub async fn cluster(&mut self) -> Result<ClusterResponse, CliError> {
        let answer = self
            .send(Request::read(Route::AnyNode, &["cluster"]))
            .await?;
        decode(answer)
    }

    /// `POST /admin/snapshot` on the first server that answers.
    pub async fn snapshot(&mut self) -> Result<SnapshotResponse, CliError> {
        let answer = self
            .send(Request::admin(Route::AnyNode, &["admin", "snapshot"], None))
            .await?;
        decode(answer)
    }

    /// `GET /admin/backup` from the first server that answers: the bytes
    /// of a snapshot file holding every write acknowledged before the call.
    pub async fn backup(&mut self) -> Result<Vec<u8>, CliError> {
        let answer = self
            .send(Request::admin(Route::AnyNode, &["admin", "backup"], None).method(Method::GET))
            .await?;
        Ok(check_status(answer)?.body)
    }

    /// `POST /admin/transfer-leader` to the leader. Returns the server's
    /// answer body as JSON (`null` when it sent none).
    pub async fn transfer_leader(&mut self, to: NodeId) -> Result<serde_json::Value, CliError> {
        let body = serde_json::to_vec(&TransferLeaderRequest { to })
            .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))?;
        let answer = self
            .send(Request::admin(
                Route::Leader,
                &["admin", "transfer-leader"],
                Some(body),
            ))
            .await?;
        let answer = check_status(answer)?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null))
    }

    /// `GET /cluster/members`: the configuration as the first server that
    /// answers sees it.
    pub async fn members(&mut self) -> Result<MembersResponse, CliError> {
        let answer = self
            .send(Request::admin(Route::AnyNode, &["cluster", "members"], None).method(Method::GET))
            .await?;
        decode(answer)
    }

    /// `POST /cluster/members` to the leader: add a member (a learner
    /// first). Returns the configuration once the change is committed.
    pub async fn add_member(
        &mut self,
        request: &AddMemberRequest,
    ) -> Result<MembersResponse, CliError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| CliError::Usage(format!("cannot encode the request: {e}")))?;
        let answer = self
            .send(Request::admin(
                Route::Leader,
                &["cluster", "members"],
                Some(body),
            ))
            .await?;
        decode_change(answer)
    }

    /// `POST /cluster/members/{id}/promote` to the leader.
    pub async fn promote_member(
        &mut self,
        id: NodeId,
        force: bool,
    ) -> Result<MembersResponse, CliError> {
        let id = id.to_string();
        let answer = self
            .send(
                Request::admin(Route::Leader, &["cluster", "members", &id, "promote"], None)
                    .query(force_query(force)),
            )
            .await?;
        decode_change(answer)
    }

    /// `DELETE /cluster/members/{id}` to the leader.
    pub async fn remove_member(
        &mut self,
        id: NodeId,
        force: bool,
    ) -> Result<MembersResponse, CliError> {
        let id = id.to_string();
        let answer = self
            .send(
                Request::admin(Route::Leader, &["cluster", "members", &id], None)
                    .method(Method::DELETE)
                    .query(force_query(force)),
            )
            .await?;
        decode_change(answer)
    }

    /// Sends a request and retries it until an answer that is not
    /// "unavailable" (502/503/504) and did not fail in transport; gives up
    /// with [`CliError::Unavailable`] at the deadline. Every attempt carries
    /// the same headers: a write keeps its `(client_id, seq)` across retries.
    async fn send(&mut self, request: Request<'_>) -> Result<Answer, CliError> {
        let Request {
            route,
            method,
            path,
            query,
            body,
            carries,
            condition,
        } = request;
        let mut headers = self.headers(carries)?;
        match condition {
            None => {}
            Some(Condition::ModIndex(index)) => {
                let tag = format!("\"{index}\"");
                headers.insert(
                    reqwest::header::IF_MATCH,
                    tag.parse()
                        .map_err(|_| CliError::Usage("cannot build the If-Match header".into()))?,
                );
            }
            Some(Condition::Exists) => {
                headers.insert(
                    reqwest::header::IF_MATCH,
                    "*".parse().expect("a valid header"),
                );
            }
            Some(Condition::Absent) => {
                headers.insert(
                    reqwest::header::IF_NONE_MATCH,
                    "*".parse().expect("a valid header"),
                );
            }
        }
        let mut plan = Plan::new(self.servers.clone());
        if route == Route::Leader {
            if let Some(leader) = &self.leader {
                plan.hint(leader.clone());
            }
        }
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::from("no attempt made");
        let mut retried = false;
        // Servers that refused the connection since the last answer: when
        // every configured one has, nothing listens anywhere and waiting
        // out the deadline would only delay the same error (etcdctl fails
        // the same way).
        let mut refused: Vec<Url> = Vec::new();
        loop {
            let Some(remaining) = self.remaining() else {
                return Err(self.gave_up(&last_error));
            };
            let (server, fresh_round) = plan.next();
            if fresh_round {
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if self.remaining().is_none() {
                    return Err(self.gave_up(&last_error));
                }
            }
            let uri = format!("{}{}", base(&server), target(path, query));
            let mut builder = hyper::Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(
                    reqwest::header::USER_AGENT,
                    concat!("raft-kv-client/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(h) = builder.headers_mut() {
                h.extend(headers.clone());
            }
            if body.is_some() {
                builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            let request = builder
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| CliError::Usage(format!("cannot build the request: {e}")))?;
            let wait = self.remaining().unwrap_or(remaining);
            let exchange = async {
                let response = self.http.request(request).await.map_err(|e| {
                    let connect = e.is_connect();
                    (describe(&e, connect), connect, is_refused(&e))
                })?;
                let status = response.status();
                let hint = leader_hint(response.headers());
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| (describe(&e, false), false, false))?
                    .to_bytes();
                Ok::<_, (String, bool, bool)>((status, hint, body.to_vec()))
            };
            let (status, header_hint, body) = match tokio::time::timeout(wait, exchange).await {
                Ok(Ok(answer)) => answer,
                Ok(Err((detail, connect, was_refused))) => {
                    last_error = format!("{}: {detail}", base(&server));
                    retried |= !connect;
                    if route == Route::Leader && self.leader.as_ref() == Some(&server) {
                        self.leader = None;
                    }
                    if was_refused && !refused.contains(&server) {
                        refused.push(server);
                        if self.servers.iter().all(|s| refused.contains(s)) {
                            return Err(CliError::Unavailable(format!(
                                "every server refused the connection (last error: {last_error})"
                            )));
                        }
                    } else if !was_refused {
                        refused.clear();
                    }
                    continue;
                }
                Err(_) => {
                    last_error = format!("{}: timed out", base(&server));
                    retried = true;
                    refused.clear();
                    if route == Route::Leader && self.leader.as_ref() == Some(&server) {
                        self.leader = None;
                    }
                    continue;
                }
            };
            refused.clear();
            if is_unavailable(status) {
                retried = true;
                let error_body = serde_json::from_slice::<ErrorBody>(&body).ok();
                let body_hint = error_body
                    .as_ref()
                    .and_then(|b| b.leader_url.as_deref())
                    .and_then(|u| parse_server_url(u).ok());
                let message = error_body
                    .map(|b| one_line(&b.error))
                    .unwrap_or_else(|| status_text(status, &body));
                last_error = format!("{}: {message}", base(&server));
                if let Some(hint) = body_hint.or(header_hint) {
                    if hint != server {
                        plan.hint(hint);
                    }
                }
                continue;
            }
            if status.is_success() && route == Route::Leader {
                self.leader = header_hint.or(Some(server.clone()));
            }
            return Ok(Answer {
                status,
                body,
                server,
                retried,
            });
        }
    }

    /// The headers every attempt of one request carries.
    fn headers(&mut self, carries: Carries) -> Result<HeaderMap, CliError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| CliError::BadResponse {
                    server: "POST /auth/token".into(),
                    message: "the token has characters not allowed in a header".into(),
                })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        match carries {
            Carries::Nothing => {}
            Carries::Token => {
                if let Some(token) = &self.token {
                    let value = token.parse().map_err(|_| {
                        CliError::Usage(
                            "the token contains characters not allowed in a header".into(),
                        )
                    })?;
                    headers.insert(HEADER_CLUSTER_TOKEN, value);
                }
            }
            Carries::WriteId => {
                let Some(client_id) = self.client_id else {
                    return Err(CliError::Usage(
                        "a write needs a session: register first".into(),
                    ));
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                headers.insert(HEADER_CLIENT_ID, client_id.into());
                headers.insert(HEADER_CLIENT_SEQ, seq.into());
            }
        }
        Ok(headers)
    }

    fn remaining(&self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn gave_up(&self, last_error: &str) -> CliError {
        CliError::Unavailable(format!(
            "no server could serve the request within {} (last error: {last_error})",
            format_duration(self.timeout)
        ))
    }
}

/// The order in which servers are tried: leader hints first, then the
/// configured servers round-robin. A "round" ends when every configured
/// server has been tried since the last pause.
struct Plan {
    servers: Vec<Url>,
    next: usize,
    tried_in_round: usize,
    hints: Vec<Url>,
    hints_in_round: usize,
    started: bool,
}

impl Plan {
    fn new(servers: Vec<Url>) -> Self {
        Plan {
            servers,
            next: 0,
            tried_in_round: 0,
            hints: Vec::new(),
            hints_in_round: 0,
            started: false,
        }
    }

    /// Try `url` next (a leader hint).
    fn hint(&mut self, url: Url) {
        self.hints.push(url);
    }

    /// The next server, and whether a pause should come before it.
    fn next(&mut self) -> (Url, bool) {
        let first = !self.started;
        self.started = true;
        // Follow a bounded number of hints per round, so two nodes naming
        // each other cannot make the client spin without pausing.
        if let Some(hint) = self.hints.pop() {
            self.hints.clear();
            if self.hints_in_round <= self.servers.len() {
                self.hints_in_round += 1;
                return (hint, false);
            }
        }
        let mut pause = false;
        if self.tried_in_round >= self.servers.len() {
            self.tried_in_round = 0;
            self.hints_in_round = 0;
            pause = !first;
        }
        let url = self.servers[self.next % self.servers.len()].clone();
        self.next += 1;
        self.tried_in_round += 1;
        (url, pause)
    }
}

/// The bytes of a path segment or query part sent as they are: letters,
/// digits and `-._~`. Everything else (`/`, `%`, `?`, `#`, space, non-ASCII)
/// is percent-encoded, so a key is one segment the server decodes back.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The request target: each path segment percent-encoded, then the query.
/// Dot segments are kept as they are (no URL normalization).
pub fn target(path: &[&str], query: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        out.extend(utf8_percent_encode(segment, UNRESERVED));
    }
    if out.is_empty() {
        out.push('/');
    }
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.extend(utf8_percent_encode(k, UNRESERVED));
        out.push('=');
        out.extend(utf8_percent_encode(v, UNRESERVED));
    }
    out
}

/// The server's base URL without the trailing slash, for messages.
pub fn base(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// Whether the status means "try again, perhaps elsewhere".
pub fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Parses the `x-raft-leader: "<id> <url>"` header.
pub fn leader_hint(headers: &HeaderMap) -> Option<Url> {
    let value = headers.get(HEADER_LEADER)?.to_str().ok()?;
    parse_leader_header(value).map(|(_, url)| url)
}

/// Parses `"<id> <url>"` into the id and the URL.
pub fn parse_leader_header(value: &str) -> Option<(NodeId, Url)> {
    let (id, url) = value.trim().split_once(' ')?;
    let id: NodeId = id.parse().ok().filter(|&id| id != 0)?;
    Some((id, parse_server_url(url).ok()?))
}

/// Whether a transport error is a refused TCP connection: no process
/// listens on the port (a member that is down, not one that is slow).
pub fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// One line describing a transport error, from its innermost cause.
pub fn describe(err: &(dyn std::error::Error + 'static), connect: bool) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let detail = one_line(&cause.to_string());
    if connect {
        format!("cannot connect: {detail}")
    } else {
        format!("request failed: {detail}")
    }
}

/// Formats a duration the way `--timeout` takes it.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// A random non-zero client id, different in every process.
pub fn random_client_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

fn status_text(status: StatusCode, body: &[u8]) -> String {
    let text = one_line(&String::from_utf8_lossy(body));
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

/// Turns a non-success answer into an error.
fn check_status(answer: Answer) -> Result<Answer, CliError> {
    if answer.status.is_success() {
        return Ok(answer);
    }
    let message = match serde_json::from_slice::<ErrorBody>(&answer.body) {
        Ok(body) => one_line(&body.error),
        Err(_) => status_text(answer.status, &answer.body),
    };
    Err(CliError::Server {
        status: answer.status.as_u16(),
        message,
    })
}

/// Decodes a success answer's JSON body.
fn decode<T: DeserializeOwned>(answer: Answer) -> Result<T, CliError> {
    let answer = check_status(answer)?;
    serde_json::from_slice(&answer.body).map_err(|e| CliError::BadResponse {
        server: base(&answer.server),
        message: one_line(&e.to_string()),
    })
}

/// Decodes the answer to a key write: a 412 is the condition that did not
/// hold, with the key's index then.
fn decode_write(key: &str, answer: Answer) -> Result<WriteResponse, CliError> {
    if answer.status == StatusCode::PRECONDITION_FAILED {
        let failed: PreconditionFailed =
            serde_json::from_slice(&answer.body).map_err(|e| CliError::BadResponse {
                server: base(&answer.server),
                message: one_line(&format!("a 412 without its body: {e}")),
            })?;
        return Err(CliError::PreconditionFailed {
            key: key.to_string(),
            mod_index: failed.mod_index,
        });
    }
    decode(answer).map_err(explain_write_error)
}

/// A write refused because the cluster has no session for this process
/// (409): never resent under a new session, since an unanswered earlier
/// attempt may have been applied; the user is told what to do.
fn explain_write_error(err: CliError) -> CliError {
    match err {
        CliError::Server {
            status: 409,
            message,
        } if message.contains("no session") => CliError::Server {
            status: 409,
            message: format!(
                "{message} [the cluster forgot this run's session; the write was not applied \
                 by this request and is not resent: check the key, then run the command again \
                 (a new run registers a new session)]"
            ),
        },
        other => other,
    }
}

/// `?force=true` when `force`, else no query.
fn force_query(force: bool) -> &'static [(&'static str, &'static str)] {
    if force {
        &[("force", "true")]
    } else {
        &[]
    }
}

/// Decodes the answer to a membership change, with the CLI's hints on its
/// refusals.
fn decode_change(answer: Answer) -> Result<MembersResponse, CliError> {
    let retried = answer.retried;
    decode(answer).map_err(|e| explain_change_error(e, retried))
}

/// A refused membership change's message, with what to do about it: the
/// quorum check is skipped with `--force`; a conflict (or an unknown
/// member) after a retry may be the first attempt having taken effect.
fn explain_change_error(err: CliError, retried: bool) -> CliError {
    match err {
        CliError::Server {
            status: 412,
            message,
        } => CliError::Server {
            status: 412,
            message: format!(
                "{} (rerun with --force to do it anyway)",
                message.trim_end_matches(SERVER_FORCE_HINT)
            ),
        },
        CliError::Server { status, message } if retried && matches!(status, 404 | 409) => {
            CliError::Server {
                status,
                message: format!(
                    "{message} (the request was retried and an earlier attempt may have \
                     taken effect: check `member list`)"
                ),
            }
        }
        err => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        parse_server_url(s).unwrap()
    }

    #[test]
    fn targets_escape_keys_and_keep_dots() {
        assert_eq!(target(&["key", "a/b c"], &[]), "/key/a%2Fb%20c");
        assert_eq!(
            target(&["key", "k"], &[("consistency", "stale")]),
            "/key/k?consistency=stale"
        );
        assert_eq!(
            target(&["keys"], &[("prefix", "a&b"), ("limit", "5")]),
            "/keys?prefix=a%26b&limit=5"
        );
        // `.` and `..` stay single segments (a URL parser would drop them).
        assert_eq!(target(&["key", ".."], &[]), "/key/..");
        assert_eq!(target(&["key", "100%"], &[]), "/key/100%25");
        assert_eq!(target(&["key", "é"], &[]), "/key/%C3%A9");
    }

    #[test]
    fn leader_header() {
        let (id, u) = parse_leader_header("2 http://127.0.0.1:3002").unwrap();
        assert_eq!(id, 2);
        assert_eq!(u, url("http://127.0.0.1:3002"));
        assert!(parse_leader_header("0 http://x:1").is_none());
        assert!(parse_leader_header("2").is_none());
        assert!(parse_leader_header("two http://x:1").is_none());
    }

    #[test]
    fn plan_goes_round_robin_and_pauses_between_rounds() {
        let mut plan = Plan::new(vec![url("a:1"), url("b:2")]);
        assert_eq!(plan.next(), (url("a:1"), false));
        assert_eq!(plan.next(), (url("b:2"), false));
        assert_eq!(plan.next(), (url("a:1"), true));
        assert_eq!(plan.next(), (url("b:2"), false));
    }

    #[test]
    fn plan_follows_hints_first_but_not_forever() {
        let mut plan = Plan::new(vec![url("a:1"), url("b:2")]);
        assert_eq!(plan.next().0, url("a:1"));
        plan.hint(url("c:3"));
        assert_eq!(plan.next(), (url("c:3"), false));
        // A ping-pong of hints is cut after a few follows per round.
        let mut hinted = 0;
        for _ in 0..10 {
            plan.hint(url("c:3"));
            if plan.next().0 == url("c:3") {
                hinted += 1;
            }
        }
        assert!(hinted < 10);
    }

    #[test]
    fn unavailable_statuses() {
        assert!(is_unavailable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_unavailable(StatusCode::BAD_GATEWAY));
        assert!(!is_unavailable(StatusCode::NOT_FOUND));
        assert!(!is_unavailable(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn client_ids_are_random_and_non_zero() {
        let a = random_client_id();
        let b = random_client_id();
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn error_answers_become_one_line_errors() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: br#"{"error":"key too\nlong"}"#.to_vec(),
            server: url("a:1"),
            retried: false,
        };
        let err = check_status(answer).unwrap_err();
        assert_eq!(err.to_string(), "server answered 400: key too long");
        assert_eq!(err.exit_code(), 4);
    }

    #[test]
    fn refused_membership_changes_say_what_to_do() {
        let answer = |status: u16, body: &str, retried| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
            server: url("a:1"),
            retried,
        };
        let err = decode_change(answer(
            412,
            r#"{"error":"only 1 of 3 voters up (add force=true to do it anyway)"}"#,
            false,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "server answered 412: only 1 of 3 voters up (rerun with --force to do it anyway)"
        );
        assert_eq!(err.exit_code(), 4);
        let conflict = r#"{"error":"node 4 is already a member"}"#;
        let err = decode_change(answer(409, conflict, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server answered 409: node 4 is already a member"
        );
        let err = decode_change(answer(409, conflict, true)).unwrap_err();
        assert!(err.to_string().contains("may have taken effect"), "{err}");
        let err = decode_change(answer(400, r#"{"error":"bad url"}"#, true)).unwrap_err();
        assert_eq!(err.to_string(), "server answered 400: bad url");
    }

    #[test]
    fn writes_carry_a_new_sequence_number_and_admin_calls_the_token() {
        let mut client = ApiClient::new(
            vec![url("a:1")],
            Duration::from_secs(1),
            Some("secret".into()),
            None,
        )
        .unwrap();
        // No write before the session is registered.
        assert!(client.headers(Carries::WriteId).is_err());
        client.client_id = Some(17);
        let id = "17";
        for seq in ["1", "2"] {
            let h = client.headers(Carries::WriteId).unwrap();
            assert_eq!(h[HEADER_CLIENT_ID], id);
            assert_eq!(h[HEADER_CLIENT_SEQ], seq);
            assert!(h.get(HEADER_CLUSTER_TOKEN).is_none());
        }
        let h = client.headers(Carries::Token).unwrap();
        assert_eq!(h[HEADER_CLUSTER_TOKEN], "secret");
        assert!(h.get(HEADER_CLIENT_SEQ).is_none());
        assert!(client.headers(Carries::Nothing).unwrap().is_empty());
        // Neither a read nor an admin call uses up a sequence number.
        assert_eq!(
            client.headers(Carries::WriteId).unwrap()[HEADER_CLIENT_SEQ],
            "3"
        );
    }

    #[test]
    fn durations_print_like_the_flag() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
    }
}
