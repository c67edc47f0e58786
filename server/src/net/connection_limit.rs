//! How many connections a node keeps open at once, and the room it keeps
//! for its peers.
//!
//! Clients and peers share one port, and a peer only says who it is in its
//! first request (`GET /raft/stream`, `POST /raft/snapshot`), so a limit
//! applied when a connection is accepted cannot tell them apart. The limit
//! therefore has two levels:
//!
//! - below `max - reserve` open connections, a new connection is served as
//!   usual;
//! - in the last `reserve` slots it is served for the peer routes only:
//!   any other request is answered 503 (JSON, `retry-after`,
//!   `connection: close`) and the connection closed, so a crowd of clients
//!   cannot keep a restarted follower from reconnecting to its leader;
//! - with all `max` taken, the node stops accepting until one closes (the
//!   kernel's backlog holds the newcomers meanwhile), so the memory and file
//!   descriptors held for connections stay bounded.
//!
//! An upgraded peer stream leaves the HTTP server and gives its slot back;
//! there is at most one per member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots kept for peers: a stream and a snapshot transfer each, for
/// clusters far larger than any that would share one leader.
pub const PEER_RESERVE: usize = 32;

/// The smallest `--max-connections`: the peers' reserve plus as many for
/// clients.
pub const MIN_CONNECTIONS: usize = 2 * PEER_RESERVE;

/// The node's connection slots.
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
    open: Arc<AtomicU64>,
}

/// What an accepted connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Everything.
    Full,
    /// Peer requests only: the node is at its client limit.
    PeersOnly,
}

/// One connection's slot: given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicU64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionLimit {
    /// `max` connections open at once (at least [`MIN_CONNECTIONS`]); `open`
    /// is the gauge of those open now.
    pub fn new(max: usize, open: Arc<AtomicU64>) -> Self {
        let max = max.max(MIN_CONNECTIONS);
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max)),
            max,
            open,
        }
    }

    /// Waits for a free slot, taken before a connection is accepted so
    /// that with none free the node does not accept at all.
    pub async fn acquire(&self) -> Slot {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            open: self.open.clone(),
        }
    }

    /// What a connection accepted now (its slot counted) may do. Asked once
    /// the connection is there, not when its slot was taken: the wait for
    /// it can be long, and others may have closed meanwhile.
    pub fn admission(&self) -> Admission {
        if self.open.load(Ordering::Relaxed) as usize > self.max - PEER_RESERVE {
            Admission::PeersOnly
        } else {
            Admission::Full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_slots_are_for_peers_and_then_accepting_waits() {
        let open = Arc::new(AtomicU64::new(0));
        let limit = ConnectionLimit::new(MIN_CONNECTIONS, open.clone());
        let mut slots = Vec::new();
        for _ in 0..MIN_CONNECTIONS - PEER_RESERVE {
            slots.push(limit.acquire().await);
            assert_eq!(limit.admission(), Admission::Full);
        }
        for _ in 0..PEER_RESERVE {
            slots.push(limit.acquire().await);
            assert_eq!(limit.admission(), Admission::PeersOnly);
        }
        // A slot taken at the limit, whose connection arrives after others
        // closed, is served in full.
        slots.pop();
        let late = limit.acquire().await;
        assert_eq!(limit.admission(), Admission::PeersOnly);
        slots.truncate(10);
        assert_eq!(limit.admission(), Admission::Full);
        drop(late);
        for _ in 10..MIN_CONNECTIONS {
            slots.push(limit.acquire().await);
        }
        assert_eq!(open.load(Ordering::Relaxed), MIN_CONNECTIONS as u64);
        // Full: the next one waits until a slot is given back.
        let mut next = Box::pin(limit.acquire());
        tokio::select! {
            biased;
            _ = &mut next => panic!("a slot was given with all of them taken"),
            _ = std::future::ready(()) => {}
        }
        slots.truncate(MIN_CONNECTIONS - PEER_RESERVE - 1);
        assert_eq!(
            open.load(Ordering::Relaxed),
            (MIN_CONNECTIONS - PEER_RESERVE - 1) as u64
        );
        // One below the client limit again: served in full.
        let _slot = next.await;
        assert_eq!(limit.admission(), Admission::Full);
    }

    #[test]
    fn a_limit_below_the_minimum_is_raised_to_it() {
        let limit = ConnectionLimit::new(1, Arc::new(AtomicU64::new(0)));
        assert_eq!(limit.max, MIN_CONNECTIONS);
    }
}
