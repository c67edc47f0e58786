//! The listener's side of a TLS handshake: the ClientHello decides whether
//! the connection is a member's (see the module doc of [`super`]).

use std::io;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::{Tls, PEER_ALPN};

/// What a connection was admitted as; a request extension on every request
/// it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// No TLS on this node: anyone reaching the port (the cluster token,
    /// if set, is the only check on the peer routes).
    Plain,
    /// TLS with the client certificate (and, with `--trusted-ca-file`, a
    /// verified client certificate): not a member, no peer routes.
    Client,
    /// TLS with a client certificate that chains to the peer CA: a member.
    Peer,
}

impl ConnectionKind {
    /// Whether the peer routes may be served on this connection.
    pub fn may_speak_raft(self) -> bool {
        matches!(self, ConnectionKind::Plain | ConnectionKind::Peer)
    }
}

/// Completes the handshake on `io` within `timeout`, with the peer
/// configuration when the client offers [`PEER_ALPN`] and the client one
/// otherwise. A member certificate that does not verify fails here.
pub async fn handshake<IO>(
    tls: &Tls,
    io: IO,
    timeout: Duration,
) -> io::Result<(TlsStream<IO>, ConnectionKind)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let run = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        let peer = start
            .client_hello()
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == PEER_ALPN));
        let kind = if peer {
            ConnectionKind::Peer
        } else {
            ConnectionKind::Client
        };
        let stream = start.into_stream(tls.server_config(kind)).await?;
        Ok((stream, kind))
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not done within {timeout:?}"),
        )
    })?
}
