//! Who may ask, decided before any handler runs:
//!
//! - [`known_host`]: the DNS-rebinding guard (as etcd's host whitelist). A
//!   web page can make a browser send requests to this port under a name
//!   the page's own site controls; such a request carries that name in
//!   `Host` (and in `Origin`). Only loopback names, IP addresses, the
//!   members' advertised hosts and `--host-whitelist` are answered; any
//!   other name gets 403.
//! - [`member_connection`]: the peer routes answer only on a member's
//!   connection (with TLS: mutual TLS with a certificate from the peer CA).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::error;
use super::state::Shared;
use crate::tls::ConnectionKind;

/// The host of an authority (`host`, `host:port`, `[v6]:port`), without
/// the port and brackets, lower-cased.
fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => match authority.rsplit_once(':') {
            // More than one colon: a bare IPv6 address, no port.
            Some((h, _)) if !h.contains(':') => h,
            _ => authority,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of a URL (`scheme://authority/...`), if it has one.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    (!authority.is_empty()).then(|| host_of(authority))
}

/// Whether this node answers requests naming `host`.
fn is_known(s: &Shared, host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok()
        || s.settings.host_whitelist.iter().any(|h| h == host)
        || s.directory
            .urls()
            .values()
            .any(|u| url_host(u).as_deref() == Some(host))
}

/// The DNS-rebinding guard (see the module doc).
pub(super) async fn known_host(State(s): State<Shared>, req: Request, next: Next) -> Response {
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the `:authority`.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of)
        .or_else(|| req.uri().authority().map(|a| host_of(a.as_str())));
    if let Some(host) = host {
        if !is_known(&s, &host) {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "this node does not answer to the name `{host}` (Host header): add it to \
                     --host-whitelist if it is really this node's"
                ),
            );
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let known = origin
            .to_str()
            .ok()
            .and_then(url_host)
            .is_some_and(|h| is_known(&s, &h));
        if !known {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from pages at {} are not answered: not one of this node's names \
                     (see --host-whitelist)",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            );
        }
    }
    next.run(req).await
}

/// The peer routes on a member's connection only (see the module doc).
pub(super) async fn member_connection(req: Request, next: Next) -> Response {
    // Requests built in-process carry no kind: there is no connection.
    let kind = req
        .extensions()
        .get::<ConnectionKind>()
        .copied()
        .unwrap_or(ConnectionKind::Plain);
    if !kind.may_speak_raft() {
        return error(
            StatusCode::FORBIDDEN,
            "the peer routes answer only members: connect with the peer certificate \
             (mutual TLS with the peer CA, ALPN raft-kv-peer/1)",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_authorities_and_urls() {
        assert_eq!(host_of("Example.COM:3001"), "example.com");
        assert_eq!(host_of("[::1]:3001"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("node-2"), "node-2");
        assert_eq!(url_host("https://a.b:1/x").as_deref(), Some("a.b"));
        assert_eq!(url_host("http://[fe80::1]:80").as_deref(), Some("fe80::1"));
        assert_eq!(url_host("null"), None);
    }
}
