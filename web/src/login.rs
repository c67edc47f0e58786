//! Logging in to a cluster with authentication enabled: the form shown
//! when the server answers 401, the token (`POST /auth/token`) kept in
//! sessionStorage for this tab, and sent by every request ([`token`]).
//! What the user may read is the server's decision: a key or prefix
//! outside the user's permissions is answered 403 and shown as such.

use gloo_net::http::Method;
use raft_core::wire::{TokenRequest, TokenResponse};
use wasm_bindgen_futures::spawn_local;
use web_sys::Event;

use crate::api::call;
use crate::dom::{by_id, input_value, on, set_hidden, set_text, window};

/// Where the token is kept (per tab, gone when the tab closes).
const TOKEN_KEY: &str = "raft-kv-token";

fn storage() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

/// The token to send as `Authorization: Bearer`, if logged in.
pub fn token() -> Option<String> {
    storage()?.get_item(TOKEN_KEY).ok().flatten()
}

fn keep(token: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match token {
            Some(t) => s.set_item(TOKEN_KEY, t),
            None => s.remove_item(TOKEN_KEY),
        };
    }
}

/// Shows the login form with `why` (the server's 401 message); a token
/// kept from before is dropped, since the server refused it.
pub fn ask(why: &str) {
    keep(None);
    set_text(&by_id("login-why"), why);
    set_hidden(&by_id("login-form"), false);
    set_hidden(&by_id("login-as"), true);
}

/// Wires the login form.
pub fn mount() {
    on(&by_id("login-form"), "submit", |e: Event| {
        e.prevent_default();
        let user = input_value("login-user");
        let password = input_value("login-password");
        spawn_local(async move {
            let body = serde_json::to_string(&TokenRequest {
                user: user.clone(),
                password,
            })
            .unwrap_or_default();
            match call(Method::POST, "/auth/token", Some(body)).await {
                Ok(a) if a.ok() => match a.json::<TokenResponse>() {
                    Ok(t) => {
                        keep(Some(&t.token));
                        crate::dom::input("login-password").set_value("");
                        set_hidden(&by_id("login-form"), true);
                        set_text(&by_id("login-as"), &format!("logged in as {user}"));
                        set_hidden(&by_id("login-as"), false);
                    }
                    Err(e) => set_text(&by_id("login-why"), &e),
                },
                Ok(a) => set_text(&by_id("login-why"), &a.error_message()),
                Err(e) => set_text(&by_id("login-why"), &e),
            }
        });
    });
}
