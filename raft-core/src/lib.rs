//! # raft-core
//!
//! The Raft consensus protocol and the replicated key-value state machine as
//! a pure, deterministic library: no IO, no clock, no threads, no global
//! randomness. Drivers (the tokio server, the browser simulator, the tests)
//! feed it ticks and messages through [`RawNode`] and carry out what each
//! [`Ready`] asks: persist, then send, then apply.
//!
//! Layers, from pure arithmetic upward: [`quorum`] → [`progress`] →
//! `log` → `raft` → [`raw_node`].
#![deny(missing_docs)]

pub mod auth;
mod chunked_entries;
pub mod config;
pub mod describe;
mod keyspace;
pub mod kv;
mod log;
pub mod message;
pub mod progress;
pub mod quorum;
pub mod quorum_loss;
mod raft;
pub mod raw_node;
pub mod replica;
pub mod rng;
pub mod sim;
pub mod types;
pub mod wire;

#[cfg(feature = "faults")]
pub use config::Faults;
pub use config::{Config, ConfigError, NotAccepted, StepError};
pub use describe::{describe_entry, describe_membership, describe_message, describe_ready};
pub use kv::{Applied, Command, Condition, KvStore, Op, OpResult};
pub use message::{Message, MessageBody};
pub use progress::ProgressState;
pub use raft::ReadState;
pub use raw_node::{FollowerProgress, LostLog, RawNode, Ready, SoftState, Status};
pub use types::{
    Compacted, ConfChange, ConfChangeError, Entry, HardState, Index, Membership, NodeId, Payload,
    PersistedState, Role, RoleCause, Snapshot, SnapshotMeta, Term,
};
