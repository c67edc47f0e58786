//! Client authentication and the `/auth` routes.
//!
//! While the replicated auth state ([`raft_core::auth`]) is disabled,
//! nothing changes for clients; the `/auth` management routes need the
//! cluster token (when one is configured). Once enabled:
//!
//! - data routes (`/key/*`, `/keys`, `/sessions`) need a valid token
//!   (`Authorization: Bearer`): 401 without or with a bad one. The
//!   request's write or read is made *for the token's user*
//!   ([`Caller::op`], [`Caller::query`]) and the permission is checked by
//!   the state machine, when the write is applied or the read served: 403
//!   when it is missing, nothing changed;
//! - admin and membership routes need a user with the role `root` (the
//!   cluster token alone no longer opens them), except `GET
//!   /cluster/members`, which a joining member reads with the cluster token;
//! - the `/auth` management routes need the role `root`;
//! - `POST /auth/token` (password → token) and `GET /auth/status` stay
//!   open, like `/healthz`, `/readyz`, `/metrics`, `/version`, `/status` and
//!   `/cluster`.
//!
//! A request is authenticated on the node that receives it, against the
//! auth state that node has applied; a follower forwards a write with its
//! `Authorization` header and the leader authenticates it again. Neither is
//! what decides: the state machine checks the permission at the write's
//! place in the log.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::auth::{valid_name, AuthError, AuthOp, AuthState, Denied, Permission};
use raft_core::replica::Query as NodeQuery;
use raft_core::wire::{
    AuthChanged, AuthStatus, NewRole, NewUser, PasswordChange, RoleInfo, TokenRequest,
    TokenResponse, UserInfo, HEADER_FORWARDED,
};
use raft_core::{Command, Op, OpResult};
use serde::Deserialize;

use super::error::{error, json_body};
use super::forward::{path_and_query, ForwardRequest};
use super::keys::commit;
use super::state::Shared;
use crate::credentials::{self, BadToken};

/// The longest password accepted (PBKDF2 hashes any length; this bounds
/// the work an anonymous `POST /auth/token` can ask for).
const MAX_PASSWORD_BYTES: usize = 1024;

/// Whom a request is made for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Caller {
    /// No user: auth was disabled when the request was authenticated.
    #[default]
    Anonymous,
    /// A user whose token was valid.
    User {
        /// The user's name.
        name: String,
        /// The generation its token names.
        generation: u64,
    },
}

impl Caller {
    /// `op`, made for this caller (wrapped in [`Op::AsUser`] for a user).
    pub fn op(&self, op: Op) -> Op {
        match self {
            Caller::Anonymous => op,
            Caller::User { name, generation } => Op::AsUser {
                user: name.clone(),
                generation: *generation,
                op: Box::new(op),
            },
        }
    }

    /// `query`, made for this caller.
    pub fn query(&self, query: NodeQuery) -> NodeQuery {
        match self {
            Caller::Anonymous => query,
            Caller::User { name, generation } => NodeQuery::AsUser {
                user: name.clone(),
                generation: *generation,
                query: Box::new(query),
            },
        }
    }
}

/// Handlers take the [`Caller`] the auth layers put in the request
/// (anonymous when no layer did: the state machine then refuses whatever
/// needs a user).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

/// A 401 with `WWW-Authenticate: Bearer`.
fn unauthorized(msg: impl Into<String>) -> Response {
    let mut resp = error(StatusCode::UNAUTHORIZED, msg);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A 403 for a refusal of the auth state.
pub(crate) fn forbidden(denied: &Denied) -> Response {
    match denied {
        // The token was valid where it was checked, not where the request
        // was decided (a revocation or enabling not yet seen there).
        Denied::Anonymous | Denied::Revoked(_) => unauthorized(denied.to_string()),
        Denied::Missing { .. } => error(StatusCode::FORBIDDEN, denied.to_string()),
    }
}

/// The bearer token of a request (`Authorization: Bearer <token>`), if any.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Why a request is not let through: the status (401 or 403) and the
/// message; [`Refusal::response`] answers it.
struct Refusal(StatusCode, String);

impl Refusal {
    fn response(self) -> Response {
        if self.0 == StatusCode::UNAUTHORIZED {
            unauthorized(self.1)
        } else {
            error(self.0, self.1)
        }
    }
}

/// The caller a request authenticates as against `auth` (which must be
/// enabled), or why it does not.
fn authenticate(auth: &AuthState, token: Option<String>) -> Result<Caller, Refusal> {
    let Some(token) = token else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <token>` \
             (get a token with POST /auth/token)"
                .into(),
        ));
    };
    match credentials::verify_token(auth, &token, credentials::unix_now()) {
        Ok((name, generation)) => Ok(Caller::User { name, generation }),
        Err(e @ (BadToken::Invalid | BadToken::Expired | BadToken::Revoked)) => {
            Err(Refusal(StatusCode::UNAUTHORIZED, e.to_string()))
        }
    }
}

/// Route layer on the data routes: while auth is enabled, a valid token;
/// the request is then made for its user.
pub async fn require_user(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let auth = s.node.auth_state();
    if !auth.enabled() {
        return next.run(req).await;
    }
    let token = presented_token(req.headers());
    match authenticate(&auth, token) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(r) => r.response(),
    }
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The `?token=` of a URI (percent-decoded), if any.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    Query::<TokenParam>::try_from_uri(uri).ok()?.0.token
}

/// Route layer for the dashboard's event feeds (`/events`, `/log`): like
/// [`require_user`], but the token may also come as `?token=`, since a
/// browser's EventSource cannot set headers. Only these feeds take it
/// there: a token in a URL ends up in logs and histories.
pub async fn require_user_for_feed(
    State(s): State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = s.node.auth_state();
    if !auth.enabled() {
        return next.run(req).await;
    }
    let token = presented_token(req.headers()).or_else(|| query_token(req.uri()));
    match authenticate(&auth, token) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(r) => r.response(),
    }
}

/// The caller if it holds the role `root`, else the 401/403 to answer.
fn root_caller(auth: &AuthState, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let caller = authenticate(auth, presented_token(headers))?;
    match &caller {
        Caller::User { name, .. } if auth.is_root(name) => Ok(caller),
        Caller::User { name, .. } => Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("user `{name}` may not administer the cluster (the role `root` is needed)"),
        )),
        Caller::Anonymous => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "authentication required".into(),
        )),
    }
}

/// Route layer on the admin and membership routes (inside the cluster
/// token's layer): while auth is enabled, a user with the role `root`.
/// A joining member's `GET /cluster/members` (the member list, also in the
/// open `/cluster`) needs only the cluster token.
pub async fn require_root(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let auth = s.node.auth_state();
    if !auth.enabled() {
        return next.run(req).await;
    }
    let member_list = req.method() == Method::GET && req.uri().path() == "/cluster/members";
    if member_list && !req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    match root_caller(&auth, req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(r) => r.response(),
    }
}

/// Route layer on the user and role management routes: the cluster token
/// while auth is disabled (bootstrapping: creating `root` and enabling),
/// a user with the role `root` once enabled.
pub async fn require_manager(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let auth = s.node.auth_state();
    if !auth.enabled() {
        if let Err(r) = s.check_token(req.headers()) {
            return r.into_response();
        }
        return next.run(req).await;
    }
    match root_caller(&auth, req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(r) => r.response(),
    }
}

/// `POST /auth/token`: a token for a user's name and password, verified
/// against this node's applied auth state off the async threads.
pub(super) async fn token(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: TokenRequest =
        match json_body(&headers, &body, r#"{"user": "...", "password": "..."}"#) {
            Ok(r) => r,
            Err(r) => return r.into_response(),
        };
    if req.password.len() > MAX_PASSWORD_BYTES {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the password is over {MAX_PASSWORD_BYTES} bytes"),
        );
    }
    let auth = s.node.auth_state();
    if !auth.enabled() {
        return error(
            StatusCode::CONFLICT,
            "auth is not enabled: requests need no token",
        );
    }
    // Guessing is slowed per name (see `login_throttle`): a locked name
    // is refused before its password costs a hash.
    if let Some(wait) = s
        .login_throttle
        .locked(&req.user, std::time::Instant::now())
    {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords for `{}`: try again in {secs} s",
                req.user
            ),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let user = auth.user(&req.user);
    let stored = user.map_or_else(
        || credentials::decoy_hash().to_string(),
        |u| u.password.clone(),
    );
    let password = req.password;
    let matches =
        tokio::task::spawn_blocking(move || credentials::verify_password(&password, &stored))
            .await
            .unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        s.login_throttle
            .failed(&req.user, std::time::Instant::now());
        return unauthorized("wrong user name or password");
    };
    s.login_throttle.succeeded(&req.user);
    let expires_at = credentials::unix_now() + credentials::TOKEN_TTL.as_secs();
    Json(TokenResponse {
        token: credentials::issue_token(auth.secret(), &req.user, user.generation, expires_at),
        expires_at,
    })
    .into_response()
}

/// `GET /auth/status`: whether auth is enabled, and the revision.
pub(super) async fn status(State(s): State<Shared>) -> Json<AuthStatus> {
    let auth = s.node.auth_state();
    Json(AuthStatus {
        enabled: auth.enabled(),
        revision: auth.revision(),
    })
}

/// `GET /auth/users`: every user and its roles, as this node applied them.
pub(super) async fn list_users(State(s): State<Shared>) -> Json<Vec<UserInfo>> {
    let auth = s.node.auth_state();
    Json(
        auth.users()
            .map(|(name, u)| UserInfo {
                name: name.clone(),
                roles: u.roles.iter().cloned().collect(),
            })
            .collect(),
    )
}

/// `GET /auth/roles`: every role (but the built-in `root`) and its
/// permissions, as this node applied them.
pub(super) async fn list_roles(State(s): State<Shared>) -> Json<Vec<RoleInfo>> {
    let auth = s.node.auth_state();
    Json(
        auth.roles()
            .map(|(name, perms)| RoleInfo {
                name: name.clone(),
                permissions: perms.clone(),
            })
            .collect(),
    )
}

/// One management request: its caller, and what to relay if a follower
/// forwards it.
pub(super) struct Change {
    caller: Caller,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> FromRequestParts<S> for Change {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, s).await?;
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |u| u.0.clone());
        Ok(Change {
            caller,
            uri,
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            body: Bytes::new(),
        })
    }
}

impl Change {
    fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    /// Proposes `op` for the caller and answers with its outcome.
    async fn propose(self, s: &Shared, op: AuthOp) -> Response {
        let command = Command {
            client_id: 0,
            seq: 0,
            op: self.caller.op(Op::Auth(op)),
        };
        let forwarded_in = self.headers.contains_key(HEADER_FORWARDED);
        let Change {
            uri,
            method,
            headers,
            body,
            ..
        } = self;
        let fwd = move || {
            ForwardRequest::new(method.clone(), path_and_query(&uri), &headers, body.clone())
        };
        match commit(s, &command, fwd, forwarded_in).await {
            Ok(w) => match w.result {
                OpResult::AuthChanged { revision } => Json(AuthChanged {
                    revision,
                    index: w.index,
                })
                .into_response(),
                OpResult::AuthRefused(e) => refused(&e),
                OpResult::PermissionDenied(d) => forbidden(&d),
                other => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected result of an auth change: {other:?}"),
                ),
            },
            Err(r) => r,
        }
    }
}

fn refused(e: &AuthError) -> Response {
    let status = match e {
        AuthError::NoSuchUser(_)
        | AuthError::NoSuchRole(_)
        | AuthError::NoSuchPermission { .. } => StatusCode::NOT_FOUND,
        AuthError::BadName(_) | AuthError::ShortSecret => StatusCode::BAD_REQUEST,
        AuthError::UserExists(_)
        | AuthError::RoleExists(_)
        | AuthError::NoRootUser
        | AuthError::RootLocked
        | AuthError::RootRoleBuiltIn => StatusCode::CONFLICT,
    };
    error(status, e.to_string())
}

/// Hashes a new password off the async threads.
async fn hashed(password: String) -> Result<String, Response> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("the password must have 1 to {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    match tokio::task::spawn_blocking(move || credentials::hash_password(&password)).await {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// The 400 for a name no user or role can have, checked before hashing.
fn bad_name(name: &str) -> Option<Response> {
    (!valid_name(name)).then(|| refused(&AuthError::BadName(name.to_string())))
}

/// `POST /auth/users` `{"name", "password"}`.
pub(super) async fn add_user(
    State(s): State<Shared>,
    change: Change,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: NewUser = match json_body(&headers, &body, r#"{"name": "...", "password": "..."}"#) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Some(r) = bad_name(&req.name) {
        return r;
    }
    let password = match hashed(req.password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let op = AuthOp::AddUser {
        name: req.name,
        password,
    };
    change.with_body(body).propose(&s, op).await
}

/// `DELETE /auth/users/{name}`.
pub(super) async fn delete_user(
    State(s): State<Shared>,
    Path(name): Path<String>,
    change: Change,
) -> Response {
    change.propose(&s, AuthOp::DeleteUser { name }).await
}

/// `PUT /auth/users/{name}/password` `{"password"}`.
pub(super) async fn set_password(
    State(s): State<Shared>,
    Path(name): Path<String>,
    change: Change,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: PasswordChange = match json_body(&headers, &body, r#"{"password": "..."}"#) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let password = match hashed(req.password).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let op = AuthOp::SetPassword { name, password };
    change.with_body(body).propose(&s, op).await
}

/// `PUT /auth/users/{name}/roles/{role}`.
pub(super) async fn grant_role(
    State(s): State<Shared>,
    Path((user, role)): Path<(String, String)>,
    change: Change,
) -> Response {
    change.propose(&s, AuthOp::GrantRole { user, role }).await
}

/// `DELETE /auth/users/{name}/roles/{role}`.
pub(super) async fn revoke_role(
    State(s): State<Shared>,
    Path((user, role)): Path<(String, String)>,
    change: Change,
) -> Response {
    change.propose(&s, AuthOp::RevokeRole { user, role }).await
}

/// `POST /auth/roles` `{"name"}`.
pub(super) async fn add_role(
    State(s): State<Shared>,
    change: Change,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: NewRole = match json_body(&headers, &body, r#"{"name": "..."}"#) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if let Some(r) = bad_name(&req.name) {
        return r;
    }
    let op = AuthOp::AddRole { name: req.name };
    change.with_body(body).propose(&s, op).await
}

/// `DELETE /auth/roles/{name}`.
pub(super) async fn delete_role(
    State(s): State<Shared>,
    Path(name): Path<String>,
    change: Change,
) -> Response {
    change.propose(&s, AuthOp::DeleteRole { name }).await
}

/// `POST /auth/roles/{name}/permissions` `{"prefix", "access"}` (access:
/// `read`, `write` or `readwrite`); replaces the role's permission on the
/// same prefix.
pub(super) async fn grant_permission(
    State(s): State<Shared>,
    Path(role): Path<String>,
    change: Change,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let permission: Permission = match json_body(
        &headers,
        &body,
        r#"{"prefix": "...", "access": "read|write|readwrite"}"#,
    ) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    if permission.prefix.len() > s.settings.max_key_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the prefix is over the key limit",
        );
    }
    let op = AuthOp::GrantPermission { role, permission };
    change.with_body(body).propose(&s, op).await
}

#[derive(Deserialize)]
pub(super) struct PrefixParam {
    prefix: Option<String>,
}

/// `DELETE /auth/roles/{name}/permissions?prefix=P`.
pub(super) async fn revoke_permission(
    State(s): State<Shared>,
    Path(role): Path<String>,
    Query(p): Query<PrefixParam>,
    change: Change,
) -> Response {
    let Some(prefix) = p.prefix else {
        return error(
            StatusCode::BAD_REQUEST,
            "name the permission's prefix: ?prefix=P (`?prefix=` for every key)",
        );
    };
    change
        .propose(&s, AuthOp::RevokePermission { role, prefix })
        .await
}

/// `POST /auth/enable`: draws a fresh token-signing secret and proposes
/// turning enforcement on (refused unless user `root` has role `root`).
pub(super) async fn enable(State(s): State<Shared>, change: Change) -> Response {
    let secret = match credentials::new_secret() {
        Ok(secret) => secret,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    change.propose(&s, AuthOp::Enable { secret }).await
}

/// `POST /auth/disable`.
pub(super) async fn disable(State(s): State<Shared>, change: Change) -> Response {
    change.propose(&s, AuthOp::Disable).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_from_the_bearer_header_or_a_feed_query() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a.1.2.xyz"),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("a.1.2.xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_token(&h), None);
        let uri: axum::http::Uri = "/events?from=3&token=a%40b.1.2.x-y_".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("a@b.1.2.x-y_"));
        let uri: axum::http::Uri = "/events?from=3".parse().unwrap();
        assert_eq!(query_token(&uri), None);
    }

    #[test]
    fn a_user_caller_wraps_writes_and_reads_and_an_anonymous_one_does_not() {
        let put = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        assert_eq!(Caller::Anonymous.op(put.clone()), put);
        let alice = Caller::User {
            name: "alice".into(),
            generation: 4,
        };
        assert_eq!(
            alice.op(put.clone()),
            Op::AsUser {
                user: "alice".into(),
                generation: 4,
                op: Box::new(put)
            }
        );
        let get = NodeQuery::Get("k".into());
        assert!(matches!(
            alice.query(get),
            NodeQuery::AsUser { generation: 4, .. }
        ));
    }
}
