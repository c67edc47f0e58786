//! The REST API as the dashboard calls it: one request, its answer, which
//! node served it, whether it was forwarded, how long it took.
//!
//! Requests go to the member the page currently watches through: the page's
//! own origin, or, once that node stopped answering, another member's
//! address (the members answer a page served by any of them with CORS
//! headers).

use std::cell::RefCell;

use gloo_net::http::{Method, RequestBuilder};
use raft_core::wire::{ErrorBody, HEADER_FORWARDED, HEADER_LEADER, HEADER_SERVED_BY};
use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use web_sys::AbortController;

use crate::dom::now_ms;
use crate::narrate::human_error;

thread_local! {
    static BASE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Sends later requests to `base` (`""`: the page's origin; else a
/// member's address, `http://host:port`).
pub fn set_base(base: &str) {
    BASE.with(|b| *b.borrow_mut() = base.trim_end_matches('/').to_string());
}

/// Where requests go now (`""`: the page's origin).
pub fn base() -> String {
    BASE.with(|b| b.borrow().clone())
}

/// How long the dashboard waits for any answer.
pub const TIMEOUT_MS: u32 = 5000;

/// One answered request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The raw body.
    pub body: String,
    /// `x-raft-served-by`.
    pub served_by: Option<String>,
    /// `x-raft-forwarded` was set.
    pub forwarded: bool,
    /// `x-raft-leader`.
    pub leader: Option<String>,
    /// `x-raft-commit-index`, when the server sends it.
    pub commit_index: Option<String>,
    /// Round trip in milliseconds.
    pub latency_ms: f64,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("unexpected answer ({e}): {}", self.body))
    }

    /// The API's error message (`{"error": ...}`), or the status and body.
    pub fn error_message(&self) -> String {
        match serde_json::from_str::<ErrorBody>(&self.body) {
            Ok(e) => {
                let mut s = e.error;
                if let Some(url) = e.leader_url {
                    s.push_str(&format!(" (leader: {url})"));
                } else if let Some(l) = e.leader {
                    s.push_str(&format!(" (leader: n{l})"));
                }
                s
            }
            Err(_) if self.body.trim().is_empty() => format!("HTTP {}", self.status),
            Err(_) if self.body.trim_start().starts_with('<') => format!("HTTP {}", self.status),
            Err(_) => {
                let body: String = self.body.trim().chars().take(200).collect();
                format!("HTTP {}: {body}", self.status)
            }
        }
    }
}

/// Sends one request to the member the page watches through (see
/// [`set_base`]). `Err` is a network failure (the node is down, or did not
/// answer in time), in words.
pub async fn call(method: Method, path: &str, json_body: Option<String>) -> Result<Answer, String> {
    call_at(&base(), method, path, json_body, TIMEOUT_MS).await
}

/// Sends one request to `base` (`""`: the page's origin), waiting at most
/// `timeout_ms`.
pub async fn call_at(
    base: &str,
    method: Method,
    path: &str,
    json_body: Option<String>,
    timeout_ms: u32,
) -> Result<Answer, String> {
    let url = format!("{base}{path}");
    let controller = AbortController::new().map_err(js_err)?;
    let signal = controller.signal();
    let timer = gloo_timers::callback::Timeout::new(timeout_ms, move || controller.abort());
    let start = now_ms();
    let mut builder = RequestBuilder::new(&url)
        .method(method)
        .abort_signal(Some(&signal));
    // Logged in (a cluster with authentication): every request carries it.
    if let Some(token) = crate::login::token() {
        builder = builder.header("authorization", &format!("Bearer {token}"));
    }
    let request = match json_body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(b)
            .map_err(|e| e.to_string())?,
        None => {
            builder = builder.header("accept", "application/json");
            builder.build().map_err(|e| e.to_string())?
        }
    };
    let response = request.send().await.map_err(|e| {
        if signal.aborted() {
            format!("no answer within {:.1} s", f64::from(timeout_ms) / 1000.0)
        } else {
            human_error(&e.to_string())
        }
    })?;
    let headers = response.headers();
    let status = response.status();
    let served_by = headers.get(HEADER_SERVED_BY);
    let forwarded = headers
        .get(HEADER_FORWARDED)
        .is_some_and(|v| v == "1" || v == "true");
    let leader = headers.get(HEADER_LEADER);
    let commit_index = headers.get("x-raft-commit-index");
    let body = response.text().await.map_err(|e| e.to_string())?;
    drop(timer);
    Ok(Answer {
        status,
        body,
        served_by,
        forwarded,
        leader,
        commit_index,
        latency_ms: now_ms() - start,
    })
}

fn js_err(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}
