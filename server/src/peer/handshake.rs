//! The peer stream's handshake, on the sending side, and the check of its
//! upgrade headers on the receiving side.
//!
//! A sender ([`super::transport`]) opens one TCP connection per peer to the
//! peer's ordinary HTTP listener (the one port per node serves clients and
//! peers alike) — with TLS, a mutual TLS session offering the peer ALPN
//! protocol (`crate::tls`), so the receiver has checked the sender's
//! certificate before it reads the request — and asks to switch protocols:
//!
//! ```text
//! GET /raft/stream HTTP/1.1
//! host: <peer host:port>
//! connection: upgrade
//! upgrade: raft-kv-peer/1
//! x-raft-peer-id: <the sender's node id>
//! x-raft-cluster-token: <token>             (when the cluster has one)
//! ```
//!
//! The receiver checks the token (401), that this is an upgrade to this
//! protocol (426), that the sender is a member other than itself (400), and
//! answers `101 Switching Protocols`. Every refusal is JSON, as on every
//! other route. From then on the connection carries frames one way only,
//! sender → receiver, back to back with no answers ([`super::codec`]).

use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::credentials::Credentials;

/// The path a sender asks to upgrade.
pub const PATH: &str = "/raft/stream";
/// The protocol named in the `upgrade` header (the version changes with
/// the framing).
pub const PROTOCOL: &str = "raft-kv-peer/1";

/// Time limit of the TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time limit of the whole handshake (connect, request, the 101).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long data sent on a stream may stay unacknowledged by the peer's
/// host before the stream is taken for dead.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNACKED_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a refusal's body the sender reads, for its log line.
const MAX_REFUSAL_BYTES: usize = 4096;

/// An open stream to a peer, past the handshake.
pub type PeerStream = TokioIo<Upgraded>;

/// Where a peer's stream goes: `host:port` from its base URL, and the name
/// its certificate must carry when the URL is https.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    authority: String,
    tls_name: Option<ServerName<'static>>,
}

impl PeerAddr {
    /// The address of the peer whose base URL is `url` (`http://host:port`
    /// or `https://host:port`).
    pub fn from_url(url: &str) -> Result<PeerAddr, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        let host = u.host_str().ok_or_else(|| format!("`{url}` has no host"))?;
        let tls_name = match u.scheme() {
            "http" => None,
            "https" => {
                // The URL keeps an IPv6 literal in brackets; a name does not.
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                Some(ServerName::try_from(bare.to_string()).map_err(|e| format!("`{url}`: {e}"))?)
            }
            other => return Err(format!("`{url}`: scheme {other} is not http or https")),
        };
        let port = u.port_or_known_default().unwrap_or(80);
        Ok(PeerAddr {
            authority: format!("{host}:{port}"),
            tls_name,
        })
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority)
    }
}

/// Connects to `addr` as node `me` and performs the upgrade handshake
/// (over TLS with `tls` when the address is https); the error says what
/// failed (with the peer's JSON message on a refusal).
pub async fn connect(
    addr: &PeerAddr,
    creds: &Credentials,
    tls: Option<&TlsConnector>,
) -> Result<PeerStream, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(addr, creds, tls)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer to the stream handshake within {HANDSHAKE_TIMEOUT:?}"
        )),
    }
}

async fn handshake(
    addr: &PeerAddr,
    creds: &Credentials,
    tls: Option<&TlsConnector>,
) -> Result<PeerStream, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr.authority))
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    // Frames are written whole: Nagle would only hold back the tail of one.
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    // A write only fails on its own once the socket buffer is full, and
    // retransmissions to a vanished peer back off for minutes: have the
    // kernel drop the connection once sent data stays unacknowledged this
    // long, so the sender reconnects (as a timed-out request used to).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(&tcp)
        .set_tcp_user_timeout(Some(UNACKED_TIMEOUT))
        .map_err(|e| format!("tcp user timeout: {e}"))?;
    match (&addr.tls_name, tls) {
        (None, _) => upgrade(addr, creds, tcp).await,
        (Some(name), Some(tls)) => {
            let stream = tls
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            upgrade(addr, creds, stream).await
        }
        (Some(_), None) => Err(format!(
            "{addr} is an https address, but this node has no TLS certificates"
        )),
    }
}

/// The HTTP/1.1 upgrade on an open connection.
async fn upgrade<IO>(addr: &PeerAddr, creds: &Credentials, io: IO) -> Result<PeerStream, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut req = axum::http::Request::get(PATH)
        .header(header::HOST, &addr.authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PROTOCOL);
    for (name, value) in creds.headers() {
        req = req.header(name, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    // The connection future must run while the request is answered; it
    // ends once it has handed the upgraded IO over (or on a refusal, once
    // `sender` is dropped).
    let exchange = async move {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return hyper::upgrade::on(resp)
                .await
                .map(TokioIo::new)
                .map_err(|e| format!("upgrade: {e}"));
        }
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REFUSAL_BYTES)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        Err(format!("peer answered {status}: {body}"))
    };
    let (stream, _) = tokio::join!(exchange, conn.with_upgrades());
    stream
}

/// Whether a request asks to upgrade to [`PROTOCOL`].
pub fn is_upgrade_to_protocol(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, PROTOCOL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn peer_addresses_come_from_http_urls() {
        let a = PeerAddr::from_url("http://127.0.0.1:3002").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:3002");
        let a = PeerAddr::from_url("http://[::1]:4000").unwrap();
        assert_eq!(a.to_string(), "[::1]:4000");
        let a = PeerAddr::from_url("http://node-2").unwrap();
        assert_eq!(a.to_string(), "node-2:80");
        let a = PeerAddr::from_url("https://node-2:3002").unwrap();
        assert_eq!(a.to_string(), "node-2:3002");
        assert!(a.tls_name.is_some());
        let a = PeerAddr::from_url("https://[::1]:3002").unwrap();
        assert_eq!(a.to_string(), "[::1]:3002");
        assert!(PeerAddr::from_url("ftp://node-2:3002").is_err());
        assert!(PeerAddr::from_url("not a url").is_err());
    }

    #[test]
    fn the_upgrade_headers_are_checked_as_token_lists() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_to_protocol(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade_to_protocol(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        assert!(is_upgrade_to_protocol(&h));
    }
}
