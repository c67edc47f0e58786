//! The listener: the accept loop and what each connection is served with
//! (hyper-util's HTTP/1.1 + HTTP/2 builder with upgrades, one shared
//! router), the bound on open connections ([`connection_limit`]) and the
//! deadline of a request head ([`slow_clients`]).

pub mod connection_limit;
pub mod slow_clients;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::warn;

use crate::metrics::Metrics;
use connection_limit::{Admission, ConnectionLimit};
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
/// - `idle_timeout`: a connection that sends no request head for that long,
///   idle between keep-alive requests or slow to send a head, is closed, so
///   the memory held for client connections follows the clients that are
///   active. An upgraded peer stream has left hyper and is not affected.
/// - `limit`: at most so many connections are open; the last slots serve
///   only the peer routes (see [`connection_limit`]).
pub async fn serve_http(
    listener: TcpListener,
    apps: Apps,
    limit: ConnectionLimit,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

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
        let service = TowerToHyperService::new(app.clone());
        // The first bytes must come within the head timeout too (hyper's
        // timer only starts once the protocol is detected).
        let stream = HeadDeadline::new(stream, head_timeout, metrics.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A closed or timed-out connection is routine, not an error.
            let _ = connection.await;
            // The slot is free once the connection is (an upgraded peer
            // stream lives on outside it).
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
