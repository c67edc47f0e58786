//! raft-kv-server: a raft-kv node. It drives [`raft_core`]'s sans-IO Raft
//! node with real time (a tick timer), real disks ([`storage`]) and real
//! sockets (an axum HTTP listener for clients and peers).
//!
//! - [`node`]: the one task that owns the Raft node, the state machine and
//!   the storage (persist → send → apply for every `Ready`).
//! - [`transport`]: per-peer batching senders.
//! - [`peer_stream`]: the peer message stream's handshake, framing and
//!   receiving side.
//! - [`snapshot_transfer`]: InstallSnapshot sent and reassembled in chunks.
//! - [`api`]: the REST API, peer RPC, metrics, admin and static files.
//! - [`forward`]: follower → leader forwarding of writes.
//! - [`connection_limit`]: the bound on open connections, with room kept
//!   for peers.
//! - [`bootstrap`]: start-up: found a cluster, restart, or join one.
//! - [`identity`]: the cluster id, member id and data-directory incarnation.
//! - [`directory`]: the configuration in force, shared with the handlers.
//! - [`membership`]: `/cluster/members` and the membership changes.
//! - [`slow_clients`]: deadlines for a request's head and body.
//! - [`server`]: wiring and graceful shutdown.
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod directory;
pub mod error_chain;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peer;
pub mod storage;

pub use app::{run, run_with_storage, shutdown_signal, ServerError};
pub use config::{Args, Settings};
/// The snapshot chunk reassembly under its former path (the fuzz targets
/// use it).
pub use peer::chunks as snapshot_transfer;
