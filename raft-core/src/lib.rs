//! # raft-core
//!
//! The Raft consensus protocol and the replicated key-value state machine as
//! a pure, deterministic library: no IO, no clock, no threads, no global
//! randomness. Drivers (the tokio server, the browser simulator, the tests)
//! feed it ticks and messages and carry out what each [`Ready`] asks.
#![deny(missing_docs)]

pub mod kv;
pub mod message;
pub mod types;
pub mod wire;

pub use kv::{Applied, Command, KvStore, Op, OpResult};
pub use message::{Message, MessageBody};
pub use types::{
    Entry, HardState, Index, Membership, NodeId, Payload, PersistedState, Role, Snapshot,
    SnapshotMeta, Term,
};
