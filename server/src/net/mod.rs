//! The listener: the accept loop and what each connection is served with
//! (hyper-util's HTTP/1.1 + HTTP/2 builder with upgrades, one shared
//! router, TLS when the node has certificates), the bound on open
//! connections ([`connection_limit`]) and the deadline of a request head
//! ([`slow_clients`]).

pub mod connection_limit;
pub mod slow_clients;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::tls::{ConnectionKind, Tls};
use connection_limit::{Admission, ConnectionLimit, Slot};
use slow_clients::HeadDeadline;

/// The router a connection is served with, by its [`Admission`].
pub struct Apps {
    /// Every route.
    pub full: axum::Router,
    /// The peer routes only (`http::peers_only`).
    pub peers_only: axum::Router,
}

/// How long a connection admitted for peers only may take to send its
/// request head: a peer sends its handshake at once, and a client that
/// took the slot is not left holding it.
const PEERS_ONLY_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `apps` on `listener` until `stop` completes, then stops accepting
/// and lets every connection finish its request in flight (the caller
/// bounds that wait). Like `axum::serve` (HTTP/1.1 and HTTP/2, upgrades for
/// the peer stream), plus:
/// - `tls`: every connection is TLS, and its [`ConnectionKind`] (a
///   member's or not) is a request extension; without it every request
///   carries [`ConnectionKind::Plain`]. The handshake is done on the
///   connection's own task, bounded like a request head.
/// - `idle_timeout`: a connection that sends no request head for that long,
///   idle between keep-alive requests or slow to send a head, is closed, so
///   the memory held for client connections follows the clients that are
///   active. An upgraded peer stream has left hyper and is not affected.
/// - `limit`: at most so many connections are open; the last slots serve
///   only the peer routes (see [`connection_limit`]).
pub async fn serve_http(
    listener: TcpListener,
    apps: Apps,
    tls: Option<Arc<Tls>>,
    limit: ConnectionLimit,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let builder = |head_timeout| {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout);
        b
    };
    let full = builder(idle_timeout);
    let peers_only = builder(idle_timeout.min(PEERS_ONLY_HEAD_TIMEOUT));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        // A free slot first: with none, connections wait in the backlog.
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = limit.acquire() => slot,
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: the
                    // connections that are open go on; try again shortly.
                    warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A router clone shares its routes (one `Arc`).
        let (builder, app, head_timeout) = match limit.admission() {
            Admission::Full => (&full, &apps.full, idle_timeout),
            Admission::PeersOnly => (
                &peers_only,
                &apps.peers_only,
                idle_timeout.min(PEERS_ONLY_HEAD_TIMEOUT),
            ),
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            head_timeout,
            metrics: metrics.clone(),
            watcher: graceful.watcher(),
            slot,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream, ConnectionKind::Plain));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    match crate::tls::accept::handshake(&tls, stream, head_timeout).await {
                        Ok((stream, kind)) => connection.serve(stream, kind).await,
                        Err(e) => {
                            // An untrusted or missing client certificate, a
                            // timeout, or not TLS at all: nothing was read.
                            Metrics::inc(&connection.metrics.tls_handshakes_failed);
                            debug!("TLS handshake failed: {e}");
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What one accepted connection is served with.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    head_timeout: Duration,
    metrics: Arc<Metrics>,
    watcher: Watcher,
    /// Given back when the connection ends (an upgraded peer stream lives
    /// on outside it).
    slot: Slot,
}

impl Connection {
    async fn serve<S>(self, stream: S, kind: ConnectionKind)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Every request says what its connection was admitted as (the peer
        // routes answer only members).
        let app = self
            .app
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(kind);
                req
            });
        let service = TowerToHyperService::new(app);
        // The first bytes must come within the head timeout too (hyper's
        // timer only starts once the protocol is detected).
        let stream = HeadDeadline::new(stream, self.head_timeout, self.metrics);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        // A closed or timed-out connection is routine, not an error.
        let _ = self.watcher.watch(connection).await;
        drop(self.slot);
    }
}
