//! Wiring: opens the storage, starts the Raft loop (on a thread of its
//! own), the transport and the HTTP listener ([`crate::net`]), and shuts
//! them down in order (mini-redis style `run(listener, shutdown)`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft_core::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::bootstrap;
use crate::config::Settings;
use crate::directory::Directory;
use crate::http::forward::MAX_FORWARDS_IN_FLIGHT;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::net::connection_limit::ConnectionLimit;
use crate::net::{serve_http, Apps};
use crate::node::{self, DecodedSnapshot, NodeOptions};
use crate::peer::{
    Credentials, Partition, PeerStreams, RefusalLog, SnapshotInbox, Transport, TransportOptions,
    MAX_SNAPSHOT_BYTES,
};
use crate::storage::{DiskOptions, DiskStorage, Storage};

/// How long the HTTP server may take to finish in-flight requests after
/// the shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// It could not start.
    #[error("{0}")]
    Start(String),
    /// The Raft loop failed (storage).
    #[error("{0}")]
    Fatal(#[from] node::FatalError),
}

/// The base URL others reach this node at.
fn own_url(settings: &Settings, local: SocketAddr) -> String {
    if let Some(u) = &settings.advertise_url {
        return u.clone();
    }
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ip = local.ip();
    if ip.is_unspecified() {
        warn!("listening on {ip}: advertising 127.0.0.1; set --advertise-url for other hosts");
        return format!("{scheme}://127.0.0.1:{}", local.port());
    }
    match ip {
        std::net::IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", local.port()),
        std::net::IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", local.port()),
    }
}

/// What the start-up line says about who may do what: each item names a
/// surface and how it is protected, or that it is not.
/// `auth_enabled`: the users-and-roles switch as of the state this node
/// loaded (it is replicated, so it may change while the node runs).
fn security_summary(settings: &Settings, auth_enabled: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if auth_enabled {
        lines.push(
            "data API (/key, /keys, /sessions): user tokens and role permissions (auth enabled)"
                .to_string(),
        );
    }
    match &settings.tls {
        None => {
            lines.push("transport: plain HTTP, nothing is encrypted".to_string());
            if !auth_enabled {
                lines.push(
                    "data API (/key, /keys, /sessions): UNAUTHENTICATED, anyone who reaches the \
                     port (no TLS client certificates, auth not enabled)"
                        .to_string(),
                );
            }
        }
        Some(files) => {
            lines.push("transport: TLS on every connection".to_string());
            match &files.client_ca {
                Some(ca) => lines.push(format!(
                    "connections: clients must present a certificate from {}",
                    ca.display()
                )),
                None if !auth_enabled => lines.push(
                    "data API: UNAUTHENTICATED, any TLS client (no --trusted-ca-file, auth not \
                     enabled)"
                        .into(),
                ),
                None => {}
            }
            lines.push(format!(
                "peer RPC: mutual TLS, members' certificates from {}",
                files.peer_ca.display()
            ));
        }
    }
    let admin = match (
        &settings.cluster_token,
        settings.tls.as_ref().and_then(|t| t.client_ca.as_ref()),
    ) {
        (Some(_), _) => "admin and membership routes: cluster token required".to_string(),
        (None, Some(_)) => {
            "admin and membership routes: any client with a certificate (no --cluster-token)"
                .to_string()
        }
        (None, None) => {
            "admin and membership routes: UNAUTHENTICATED (no --cluster-token)".to_string()
        }
    };
    lines.push(admin);
    if settings.tls.is_none() {
        lines.push(match settings.cluster_token {
            Some(_) => "peer RPC: cluster token required (sent in clear text)".to_string(),
            None => "peer RPC: UNAUTHENTICATED (no --cluster-token, no peer TLS)".to_string(),
        });
    }
    lines
}

/// Whether `local` can be reached from other hosts.
fn reachable_from_elsewhere(local: SocketAddr) -> bool {
    !local.ip().is_loopback()
}

/// Opens the node's durable storage.
pub fn open_storage(settings: &Settings) -> Result<Box<dyn Storage>, ServerError> {
    let opts = DiskOptions {
        sync: settings.sync,
        segment_bytes: settings.segment_bytes,
    };
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        ServerError::Start(format!(
            "cannot create the data directory {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    let started = std::time::Instant::now();
    let mut storage = DiskStorage::open(&settings.data_dir, opts).map_err(|e| {
        ServerError::Start(format!(
            "cannot open the data directory {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    info!(
        data_dir = %settings.data_dir.display(),
        took_ms = started.elapsed().as_millis() as u64,
        "storage opened (snapshot and log recovered)"
    );
    // Compaction's unlinks and directory fsyncs off the Raft loop.
    if let Err(e) = storage.remove_in_background() {
        warn!("compacted files are removed on the Raft loop: no thread for it: {e}");
    }
    Ok(Box::new(storage))
}

/// Runs a node on `listener` with `storage` until `shutdown` completes (or
/// the Raft loop fails). On shutdown: stop accepting connections, answer
/// every waiting request 503, let in-flight requests finish, stop the Raft
/// loop (every persisted `Ready` is already durable) and return.
pub async fn run_with_storage(
    settings: Settings,
    listener: TcpListener,
    storage: Box<dyn Storage>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::Start(format!("listener has no address: {e}")))?;
    let url = own_url(&settings, local);
    let tls = match &settings.tls {
        Some(files) => Some(
            crate::tls::Tls::load(files.clone())
                .map_err(|e| ServerError::Start(format!("TLS: {e}")))?,
        ),
        None => None,
    };
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::default());
    let partition = Arc::new(Partition::default());
    if settings.test_hooks {
        warn!("TEST HOOKS ENABLED (--enable-test-hooks): POST /test/partition can cut this node off; never use in production");
    }
    // Speaks to members (a joiner's requests, the founders' identity
    // checks): with TLS, as a member.
    let http = crate::tls::peer_client::reqwest_builder(tls.as_ref())
        .map_err(|e| ServerError::Start(format!("TLS: {e}")))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(MAX_FORWARDS_IN_FLIGHT)
        // Below the members' idle timeout: a forward never goes out on a
        // connection the leader is closing.
        .pool_idle_timeout(settings.idle_timeout / 2)
        .build()
        .map_err(|e| ServerError::Start(format!("cannot build an HTTP client: {e}")))?;
    let mut storage = storage;
    let start = bootstrap::prepare(&settings, &url, storage.as_mut(), &http)
        .await
        .map_err(ServerError::Start)?;
    let identity = start.identity;
    let directory = Arc::new(Directory::new(
        identity,
        url.clone(),
        start.incarnations,
        start.known_urls,
    ));
    let loop_runtime = raft_loop_runtime()?;
    let transport = Transport::new(
        TransportOptions {
            credentials: Credentials {
                me: settings.id,
                cluster_id: identity.cluster_id,
                incarnation: identity.incarnation,
                token: settings.cluster_token.clone(),
            },
            snapshot_chunk_bytes: settings.snapshot_chunk_bytes,
            snapshot_dir: Some(settings.data_dir.clone()),
            pool_idle: settings.idle_timeout / 2,
            tls: tls.clone(),
        },
        partition.clone(),
        metrics.clone(),
        loop_runtime.handle(),
    );
    let mut config = Config::new(settings.id);
    config.election_tick = settings.election_ticks;
    config.heartbeat_tick = settings.heartbeat_ticks;
    config.promote_lag = settings.promote_lag;
    config.promote_after_ticks = settings.promote_after_ticks;
    // Election jitter must differ between restarts and nodes.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    config.seed = settings.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos;
    let decoded = DecodedSnapshot::default();
    let (node, handle, inbox) = node::create(
        config,
        start.persisted,
        storage,
        Box::new(transport),
        metrics.clone(),
        NodeOptions {
            tick: settings.tick,
            snapshot_every: settings.snapshot_every,
            snapshot_catchup_entries: settings.snapshot_catchup_entries,
            url: url.clone(),
            decoded: decoded.clone(),
            directory: directory.clone(),
        },
    )
    .map_err(|e| ServerError::Start(e.to_string()))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut node_task = spawn_raft_loop(loop_runtime, node, inbox, stopped(stop_rx.clone()))?;

    // Upgraded peer streams outlive their HTTP connection, so the graceful
    // shutdown below does not wait for them: they close on the same stop
    // signal instead.
    let peer_streams = Arc::new(PeerStreams::new(
        stop_rx.clone(),
        handle.clone(),
        metrics.clone(),
        partition.clone(),
        settings.peer_body_limit(),
    ));
    let state = Arc::new(AppState {
        id: settings.id,
        directory,
        refusals: RefusalLog::default(),
        node: handle,
        metrics,
        partition,
        settings: settings.clone(),
        http,
        forwarder: crate::http::forward::forward_client(settings.idle_timeout / 2, tls.as_ref())
            .map_err(|e| ServerError::Start(format!("TLS: {e}")))?,
        forward_slots: tokio::sync::Semaphore::new(MAX_FORWARDS_IN_FLIGHT),
        login_throttle: Default::default(),
        snapshot_inbox: SnapshotInbox::new(MAX_SNAPSHOT_BYTES),
        decoded_snapshot: decoded,
        peer_streams,
    });
    let app = http::router(state.clone());
    let server = serve_http(
        listener,
        Apps {
            peers_only: http::peers_only(app.clone(), state.clone()),
            full: app,
        },
        tls.clone(),
        ConnectionLimit::new(
            settings.max_connections,
            state.metrics.connections_open.clone(),
        ),
        settings.idle_timeout,
        state.metrics.clone(),
        stopped(stop_rx.clone()),
    );
    let mut server_task = tokio::spawn(server);
    if let Some(tls) = &tls {
        tokio::spawn(crate::tls::reload::watch(
            tls.clone(),
            state.metrics.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    let members = state
        .directory
        .urls()
        .iter()
        .map(|(id, url)| format!("{id}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    let security = security_summary(&settings, state.node.auth_state().enabled());
    info!(
        id = settings.id,
        %url,
        listen = %local,
        cluster_id = %crate::identity::hex(identity.cluster_id),
        members = %members,
        data_dir = %settings.data_dir.display(),
        fsync = settings.sync,
        security = %security.join("; "),
        startup_ms = started.elapsed().as_millis() as u64,
        "raft-kv node started"
    );
    for line in security.iter().filter(|l| l.contains("UNAUTHENTICATED")) {
        warn!("{line}");
    }
    if reachable_from_elsewhere(local) && settings.tls.is_none() && settings.cluster_token.is_none()
    {
        warn!(
            "!!! {local} is reachable from other hosts with NO TLS and NO --cluster-token: anyone \
             on the network can read and write every key, send Raft messages, change the \
             membership and take backups. Give the TLS flags (--cert-file, --key-file, \
             --trusted-ca-file, --peer-*) and a --cluster-token, or bind to 127.0.0.1 !!!"
        );
    } else if settings.cluster_token.is_none() && settings.tls.is_none() {
        warn!(
            "no --cluster-token: any client that reaches {local} can send Raft messages, \
             change the membership and call the admin routes; set a token (or keep the port \
             on a trusted network)"
        );
    }

    tokio::pin!(shutdown);
    let node_result = tokio::select! {
        _ = &mut shutdown => {
            info!("shutdown requested: refusing new connections, failing waiting requests");
            let _ = stop_tx.send(true);
            (&mut node_task).await
        }
        r = &mut node_task => {
            let _ = stop_tx.send(true);
            r
        }
        r = &mut server_task => {
            let _ = stop_tx.send(true);
            if let Err(e) = r {
                error!("HTTP server failed: {e}");
            }
            (&mut node_task).await
        }
    };
    if !server_task.is_finished() {
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut server_task).await {
            Ok(_) => {}
            Err(_) => {
                warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing them");
                server_task.abort();
            }
        }
    }
    match node_result {
        Ok(Ok(())) => {
            info!("stopped cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(ServerError::Fatal(e)),
        Err(_) => Err(ServerError::Start("the raft loop panicked".into())),
    }
}

/// The runtime of the Raft loop's thread: single-threaded, with its own IO
/// driver and timers. The peer senders run on it too (see
/// [`crate::peer::transport`]), so handing them a message wakes no other thread.
fn raft_loop_runtime() -> Result<LoopRuntime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| LoopRuntime(Some(rt)))
        .map_err(|e| ServerError::Start(format!("cannot build the raft loop's runtime: {e}")))
}

/// The Raft loop's runtime until its thread takes it. Dropped unused (the
/// node failed to start), it shuts down without blocking: a runtime may not
/// be dropped the ordinary way inside another one.
struct LoopRuntime(Option<tokio::runtime::Runtime>);

impl LoopRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("taken only by spawn_raft_loop")
            .handle()
    }
}

impl Drop for LoopRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs the Raft loop on a thread of its own, on `runtime` (see
/// [`raft_loop_runtime`]). Its fsync then blocks only that thread: the HTTP
/// workers keep their cores, and no worker has to be handed off around each
/// write (as `block_in_place` does on a shared runtime). The returned
/// receiver yields the loop's result, or an error if the loop panicked.
fn spawn_raft_loop(
    mut runtime: LoopRuntime,
    node: node::Node,
    inbox: node::NodeInbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<Result<(), node::FatalError>>, ServerError> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raft-loop".into())
        .spawn(move || {
            // Taken out of its guard here, so it is dropped on this thread,
            // outside any runtime, when the loop returns. (A thread that
            // cannot start drops the guard instead.)
            let runtime = runtime.0.take().expect("a runtime not yet taken");
            let result = runtime.block_on(node.run(inbox, shutdown));
            let _ = done_tx.send(result);
        })
        .map_err(|e| ServerError::Start(format!("cannot start the raft loop's thread: {e}")))?;
    Ok(done_rx)
}

/// [`run_with_storage`] with the disk storage in `settings.data_dir`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let storage = open_storage(&settings)?;
    run_with_storage(settings, listener, storage, shutdown).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received"),
        _ = term => info!("SIGTERM received"),
    }
}
