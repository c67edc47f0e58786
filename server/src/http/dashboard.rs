//! The dashboard's static files (`--web-dir`), served for every `GET` no
//! route matches, and a placeholder page when the dashboard was not built;
//! the CORS answers that let a dashboard served by one member keep
//! watching through another when its own node dies.
//!
//! Files: a `.gz` twin next to a file (`web/build.sh` writes one for the
//! wasm and the scripts) is served instead when the request accepts gzip
//! (`Content-Encoding: gzip`, `Vary: Accept-Encoding`). Everything has an
//! `ETag`; the bundle directory `pkg-<hash>/` is named by its content, so it
//! is cached for a year as immutable, and every other file (`index.html`,
//! which names the bundle) is revalidated on each load (`no-cache`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::error::error;
use super::state::Shared;

/// Unknown routes: the dashboard's files for GET/HEAD, else 404.
pub(super) async fn static_files(State(s): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let mut resp = ServeDir::new(&s.settings.web_dir)
            .precompressed_gzip()
            .oneshot(req)
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        if resp.status() != StatusCode::NOT_FOUND {
            let cache = if path.starts_with("/pkg-") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
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

/// The response headers a page may read across origins (the dashboard
/// reads who served, who leads, whether it was forwarded).
const EXPOSED: &str = "x-raft-served-by, x-raft-leader, x-raft-forwarded, x-raft-commit-index";

/// CORS for the dashboard: a request whose `Origin` is a member's address
/// (the page was served by that member) may read every answer, and its
/// preflights are answered here. Any other origin gets no CORS headers, so
/// the browser keeps other sites' pages out as before.
pub(super) async fn cors(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str().is_ok_and(|o| {
                s.directory
                    .urls()
                    .values()
                    .any(|url| url.trim_end_matches('/') == o)
            })
        })
        .cloned();
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, PUT, POST, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, accept, authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
