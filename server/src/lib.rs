//! raft-kv-server: a raft-kv node. It drives [`raft_core`]'s sans-IO Raft
//! node with real time (a tick timer), real disks ([`storage`]) and real
//! sockets (an axum HTTP listener for clients and peers).
//!
//! The modules, by audience; each imports only from those listed after it
//! (`app` from all of them):
//!
//! - [`app`]: wiring and ordered graceful shutdown (`run`).
//! - [`http`]: the one router table, and a file per audience: keys,
//!   cluster and members, admin, metrics, health, dashboard, test hooks,
//!   the peer RPC endpoints; follower → leader forwarding; JSON errors.
//! - [`bootstrap`]: start-up: found a cluster, restart, or join one.
//! - [`config`]: flags and their validation.
//! - [`credentials`]: password hashes and the tokens every member verifies.
//! - [`net`]: the accept loop, the bound on open connections with room kept
//!   for peers, the deadline of a request head.
//! - [`peer`]: the peer network: per-peer batching senders, the message
//!   stream's handshake, frames and receiving side, InstallSnapshot in
//!   chunks.
//! - [`node`]: the one task that owns the Raft node, the state machine and
//!   the storage (persist → send → apply for every `Ready`), and the
//!   [`node::NodeHandle`] everyone talks to it through.
//! - [`directory`]: the configuration in force, shared with the handlers.
//! - [`identity`]: the cluster id, member id and data-directory incarnation.
//! - [`metrics`]: the counters everyone bumps, rendered for Prometheus.
//! - [`storage`]: the WAL and snapshot files.
//! - [`tls`]: TLS on the listener and between members, certificate reloads.
//! - [`error_chain`]: an error and its causes on one line.
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod credentials;
pub mod directory;
pub mod error_chain;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod node;
pub mod peer;
pub mod storage;
pub mod tls;

pub use app::{run, run_with_storage, shutdown_signal, ServerError};
pub use config::{Args, LogFormat, Settings};
/// The snapshot chunk reassembly under its former path (the fuzz targets
/// use it).
pub use peer::chunks as snapshot_transfer;
