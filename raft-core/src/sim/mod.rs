//! A deterministic simulator of a whole raft-kv cluster, and the checkers
//! that judge its runs.
//!
//! Everything runs on virtual time ([`Time`], abstract units; a node ticks
//! every [`SimConfig::tick_interval`] units) and draws randomness from
//! seeded [`crate::rng::Rng`]s only, so the same [`SimConfig`] gives the same
//! run, natively and in wasm32. There is no IO, no clock and no thread.
//!
//! * [`network`]: in-flight messages with latency, loss, duplication,
//!   reordering and directed link cuts.
//! * [`node`]: one simulated server: a [`crate::RawNode`], its
//!   [`crate::KvStore`] and its disk.
//! * [`disk`]: the disk model: the durable store the `Ready`s persisted,
//!   what a crash in the middle of a write leaves of it (the outcomes the
//!   server's recovery can produce), disk errors, and recovery.
//! * [`client`]: clients issuing gets, puts, deletes and compare-and-sets
//!   through any node, with retries and timeouts.
//! * [`history`]: the invoke/complete record of every client operation.
//! * [`nemesis`]: the random fault schedule (crashes, torn writes, disk
//!   errors, partitions, loss...)
//!   and membership churn (learners added with new ids and promoted,
//!   members removed, replaced, re-added under new ids and stopped).
//! * [`cluster`]: puts them together; [`Cluster::step`] advances to the next
//!   event. Besides the faults, a driver can fire a node's election timer
//!   ([`Cluster::election_timeout`]), take one message off the wire
//!   ([`Cluster::drop_message`]) and issue client operations by hand
//!   ([`Cluster::submit`]); all are deterministic inputs like the rest.
//! * [`invariants`]: Raft's safety properties, checked as the run goes.
//! * [`linearizability`]: a Wing & Gong / Lowe search over the history.
//!
//! ```
//! use raft_core::sim::{Cluster, SimConfig};
//!
//! let mut cluster = Cluster::new(SimConfig::new(7, 3)).unwrap();
//! cluster.crash(2);
//! for _ in 0..2_000 {
//!     cluster.step();
//! }
//! cluster.restart(2);
//! let report = cluster.run_to_end();
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert!(report.ops_ok > 0);
//! ```

pub mod client;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod frontier;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod nemesis;
pub mod network;
pub mod node;
pub mod retained;

pub use client::ClientView;
pub use cluster::{Cluster, ConfOutcome, RunReport, SimEvent, StepReport};
pub use config::{ClientConfig, SimConfig};
pub use disk::{DiskErrorKind, DurableStore, WriteCut};
pub use frontier::LinearizabilityFrontier;
pub use history::{ClientOp, History, OpOutput, Operation, Outcome};
pub use invariants::{Detected, Violation, ViolationKind};
pub use linearizability::{check_linearizability, LinearizabilityError};
pub use nemesis::{ChurnConfig, FaultAction, NemesisConfig};
pub use network::{DropCause, DroppedMessage, InFlight, Network, NetworkConfig, NetworkStats};
pub use node::{NodeStats, SimNode};
pub use retained::Retained;

/// Virtual time, in abstract units (a node ticks every
/// [`SimConfig::tick_interval`] units).
pub type Time = u64;

/// A 64-bit running hash of everything that happens in a run, to prove two
/// runs identical without storing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(pub u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    /// Mixes one value into the hash.
    pub fn mix(&mut self, v: u64) {
        let mut z = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 = z ^ (z >> 32);
    }

    /// Mixes a string into the hash.
    pub fn mix_str(&mut self, s: &str) {
        for chunk in s.as_bytes().chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(b));
        }
        self.mix(s.len() as u64);
    }
}
