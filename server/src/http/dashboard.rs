//! The dashboard's static files (`--web-dir`), served for every `GET` no
//! route matches, and a placeholder page when the dashboard was not built.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::error::error;
use super::state::Shared;

/// Unknown routes: the dashboard's files for GET/HEAD, else 404.
pub(super) async fn static_files(State(s): State<Shared>, req: Request) -> Response {
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

pub(super) async fn index(State(s): State<Shared>, req: Request) -> Response {
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
