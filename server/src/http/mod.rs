//! The HTTP surface, by audience: one [`router`] table, one file per
//! audience.
//!
//! - [`keys`]: the key-value API (reads, writes, forwarding of writes).
//! - [`auth`]: tokens, who a request is made for, the `/auth` routes.
//! - [`cluster`]: `/status`, `/cluster`, `/cluster/members` and the
//!   membership changes.
//! - [`admin`]: snapshot and leadership transfer.
//! - [`events`]: `/events`, the node's push stream (server-sent events).
//! - [`log`]: `/log`, a window of the in-memory log (no values).
//! - [`metrics`]: the `/metrics` handler.
//! - [`health`]: the `/healthz` and `/readyz` probes.
//! - [`dashboard`]: the dashboard's static files and its CORS answers.
//! - [`test_hooks`]: the test-only partition switch.
//! - [`peer`]: the peer RPC's endpoints (`/raft/*`).
//! - [`forward`]: follower → leader forwarding.
//! - [`guard`]: the DNS-rebinding guard and the peer routes' member check.
//! - [`state`]: what every handler shares; [`error`](mod@error): the JSON errors;
//!   [`middleware`]: the layers around every route.
//!
//! Every error is JSON ([`ErrorBody`]): axum's own plain-text rejections
//! (bad path, bad query, body too large, unknown route, wrong method) are
//! rewritten by the `middleware::common` layer, which also sets the
//! `x-raft-served-by` / `x-raft-leader` headers and records latency.
//!
//! [`ErrorBody`]: raft_core::wire::ErrorBody

pub mod admin;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod forward;
pub mod guard;
pub mod health;
pub mod keys;
pub mod log;
pub mod login_throttle;
pub mod metrics;
pub mod middleware;
pub mod peer;
pub mod state;
pub mod test_hooks;

use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;

use crate::peer::handshake::PATH;
pub use error::{error, Rejection};
pub use state::AppState;
pub(crate) use state::Shared;
pub use test_hooks::PartitionRequest;

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let client_limit = state.settings.client_body_limit();
    let peer_limit = state.settings.peer_body_limit();
    // While auth is enabled: a valid token, and the request is made for
    // its user (the state machine checks the permission).
    let data = Router::new()
        .route(
            "/key/{*key}",
            get(keys::get_key)
                .put(keys::put_key)
                .delete(keys::delete_key),
        )
        .route("/key", any(keys::empty_key))
        .route("/key/", any(keys::empty_key))
        .route("/keys", get(keys::list_keys).delete(keys::delete_prefix))
        .route("/sessions", post(keys::register_session))
        .route_layer(from_fn_with_state(state.clone(), auth::require_user));
    // Users and roles: the cluster token until auth is enabled, then root.
    let auth_admin = Router::new()
        .route("/auth/users", get(auth::list_users).post(auth::add_user))
        .route(
            "/auth/users/{name}",
            axum::routing::delete(auth::delete_user),
        )
        .route(
            "/auth/users/{name}/password",
            axum::routing::put(auth::set_password),
        )
        .route(
            "/auth/users/{name}/roles/{role}",
            axum::routing::put(auth::grant_role).delete(auth::revoke_role),
        )
        .route("/auth/roles", get(auth::list_roles).post(auth::add_role))
        .route(
            "/auth/roles/{name}",
            axum::routing::delete(auth::delete_role),
        )
        .route(
            "/auth/roles/{name}/permissions",
            post(auth::grant_permission).delete(auth::revoke_permission),
        )
        .route("/auth/enable", post(auth::enable))
        .route("/auth/disable", post(auth::disable))
        .route_layer(from_fn_with_state(state.clone(), auth::require_manager));
    // The dashboard's feeds: a valid token while auth is enabled, also
    // as `?token=` (EventSource cannot set headers).
    let feeds = Router::new()
        .route("/events", get(events::events))
        .route("/log", get(log::log_window))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_user_for_feed,
        ));
    let client = Router::new()
        .merge(data)
        .merge(auth_admin)
        .merge(feeds)
        .route("/auth/token", post(auth::token))
        .route("/auth/status", get(auth::status))
        .route("/status", get(cluster::status))
        .route("/cluster", get(cluster::cluster))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/version", get(health::version))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/test/partition",
            post(test_hooks::test_partition).get(test_hooks::get_partition),
        )
        .route("/", get(dashboard::index))
        .layer(from_fn_with_state(client_limit, middleware::limit_body))
        .layer(DefaultBodyLimit::max(client_limit));
    // Token-protected: checked on the headers before any handler (and so
    // before any body) runs.
    let admin = Router::new()
        .route("/admin/snapshot", post(admin::admin_snapshot))
        .route("/admin/backup", get(backup::backup))
        .route("/admin/transfer-leader", post(admin::admin_transfer))
        .route("/cluster/members", get(cluster::list).post(cluster::add))
        .route(
            "/cluster/members/{id}",
            axum::routing::delete(cluster::remove),
        )
        .route("/cluster/members/{id}/promote", post(cluster::promote))
        // Once auth is enabled, also a user with the role root.
        .route_layer(from_fn_with_state(state.clone(), auth::require_root))
        .route_layer(from_fn_with_state(state.clone(), middleware::require_token))
        .layer(from_fn_with_state(client_limit, middleware::limit_body))
        .layer(DefaultBodyLimit::max(client_limit));
    let peer = Router::new()
        .route(PATH, get(peer::stream))
        .route("/raft/snapshot", post(peer::snapshot))
        .route("/raft/identity", get(peer::identity))
        .route_layer(axum::middleware::from_fn(guard::member_connection))
        .layer(from_fn_with_state(peer_limit, middleware::limit_body))
        .layer(DefaultBodyLimit::max(peer_limit));
    client
        .merge(admin)
        .merge(peer)
        .fallback(dashboard::static_files)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), middleware::body_deadline))
        .layer(from_fn_with_state(state.clone(), middleware::common))
        .layer(from_fn_with_state(state.clone(), dashboard::cors))
        .layer(from_fn_with_state(state.clone(), guard::known_host))
        .with_state(state)
}

/// `app` for a connection accepted into the slots kept for peers (see
/// `net::connection_limit`): the peer routes are served, any other
/// request is answered 503 and its connection closed.
pub fn peers_only(app: Router, state: Shared) -> Router {
    app.layer(from_fn_with_state(state, middleware::refuse_clients))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
