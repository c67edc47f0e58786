//! The peer stream's receiving side: one task per member reads the frames
//! of its stream ([`super::codec`]) and hands the batches to the Raft loop.
//! The HTTP handler that checks the handshake (`http::peer`) opens a stream
//! here with [`PeerStreams::open`].
//!
//! Rules of the receiving side, and what each protects:
//! - a frame longer than the peer body limit closes the stream before
//!   anything is read or allocated for it, and a frame's buffer grows only
//!   with the bytes that actually arrive: a length alone cannot make the
//!   node allocate;
//! - a frame that does not decode closes the stream: after a bad frame the
//!   framing itself can no longer be trusted;
//! - a batch whose `from` is not the sender named in the handshake closes
//!   the stream: one member cannot speak for another on a stream the token
//!   check admitted it to (the Raft loop further rejects any message whose
//!   own `from` differs from its batch's);
//! - at most one stream per sender: a newer one closes the older, so a
//!   half-open connection left by a restarted peer is not kept forever and a
//!   node holds at most one receiving task per member;
//! - every stream closes when the node stops, so a shutdown never waits on
//!   (or leaves behind) a stream;
//! - the test partition drops what a blocked peer sends, as on the sending
//!   side.
//!
//! Each closing for a violation is logged as a warning and counted in
//! `raft_peer_streams_rejected_total`; never a panic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use raft_core::NodeId;
use tokio::io::BufReader;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::codec::{read_frame, FrameError, READ_BUFFER};
use super::Partition;
use crate::metrics::Metrics;
use crate::node::NodeHandle;

/// The open receiving streams, one per sender, the node's stop signal, and
/// what the receiving tasks hand their batches to.
pub struct PeerStreams {
    stop: watch::Receiver<bool>,
    open: Mutex<BTreeMap<NodeId, (u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
    node: NodeHandle,
    metrics: Arc<Metrics>,
    partition: Arc<Partition>,
    frame_limit: usize,
}

impl PeerStreams {
    /// `stop` turns true when the node stops; every stream closes then.
    /// Batches go to `node`; a frame over `frame_limit` bytes (the peer body
    /// limit) closes its stream.
    pub fn new(
        stop: watch::Receiver<bool>,
        node: NodeHandle,
        metrics: Arc<Metrics>,
        partition: Arc<Partition>,
        frame_limit: usize,
    ) -> PeerStreams {
        PeerStreams {
            stop,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            node,
            metrics,
            partition,
            frame_limit,
        }
    }

    /// The node's stop signal (true once it stops), for other long-lived
    /// responses (`/events`) that must end with it.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Hands `from`'s upgraded connection (its handshake checked) to a
    /// receiving task, replacing the stream it had open; `false` once the
    /// node is stopping.
    pub fn open(self: &Arc<Self>, from: NodeId, on_upgrade: OnUpgrade) -> bool {
        let Some((id, replaced)) = self.register(from) else {
            return false;
        };
        Metrics::inc(&self.metrics.peer_streams_accepted);
        Metrics::inc(&self.metrics.peer_streams_open);
        let slot = Slot {
            streams: self.clone(),
            from,
            id,
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => receive(slot, TokioIo::new(io), replaced).await,
                Err(e) => debug!(peer = from, "stream upgrade failed: {e}"),
            }
        });
        true
    }

    /// Takes the slot of `from`'s stream, closing the stream that held it;
    /// `None` once the node is stopping.
    fn register(&self, from: NodeId) -> Option<(u64, oneshot::Receiver<()>)> {
        if *self.stop.borrow() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Dropping the older stream's sender closes that stream.
        if open.insert(from, (id, tx)).is_some() {
            debug!(peer = from, "a newer stream replaces the open one");
        }
        Some((id, rx))
    }

    fn unregister(&self, from: NodeId, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.get(&from).is_some_and(|(i, _)| *i == id) {
            open.remove(&from);
        }
    }
}

/// Gives a stream's slot back when its task ends, however it ends.
struct Slot {
    streams: Arc<PeerStreams>,
    from: NodeId,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.unregister(self.from, self.id);
        self.streams
            .metrics
            .peer_streams_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads `slot.from`'s frames until the peer goes away, breaks a rule, a
/// newer stream replaces this one, or the node stops.
async fn receive(slot: Slot, io: TokioIo<Upgraded>, replaced: oneshot::Receiver<()>) {
    let s = slot.streams.clone();
    let from = slot.from;
    let mut stop = s.stop.clone();
    debug!(peer = from, "peer stream open");
    tokio::select! {
        _ = stop.wait_for(|stopping| *stopping) => debug!(peer = from, "node stopping: stream closed"),
        _ = replaced => debug!(peer = from, "stream replaced by a newer one"),
        end = read_batches(&s, from, io) => match end {
            Ok(()) => debug!(peer = from, "peer closed its stream"),
            Err(Violation(why)) => {
                Metrics::inc(&s.metrics.peer_streams_rejected);
                warn!(peer = from, "closing the peer stream: {why}");
            }
        },
    }
    drop(slot);
}

/// A broken rule: the stream is closed.
struct Violation(String);

/// The read loop: `Ok` when the peer ends the stream (cleanly or not: a
/// connection lost is not the peer's fault), `Err` on a broken rule.
async fn read_batches(
    s: &PeerStreams,
    from: NodeId,
    io: TokioIo<Upgraded>,
) -> Result<(), Violation> {
    let limit = s.frame_limit;
    let mut r = BufReader::with_capacity(READ_BUFFER, io);
    let mut buf = Vec::new();
    loop {
        let batch = match read_frame(&mut r, limit, &mut buf).await {
            Ok(Some(b)) => {
                // The frame: its 4-byte length and the payload read into `buf`.
                Metrics::add(&s.metrics.peer_bytes_received, 4 + buf.len() as u64);
                b
            }
            Ok(None) => return Ok(()),
            // A connection lost, even inside a frame, is not a broken rule
            // (a sender killed mid-write): nothing came of it.
            Err(e @ (FrameError::Io(_) | FrameError::Truncated)) => {
                info!(peer = from, "peer stream lost: {e}");
                return Ok(());
            }
            Err(e @ FrameError::Undecodable(_)) => {
                Metrics::inc(&s.metrics.peer_batches_undecodable);
                return Err(Violation(e.to_string()));
            }
            Err(e) => return Err(Violation(e.to_string())),
        };
        if batch.from != from {
            Metrics::add(
                &s.metrics.peer_messages_rejected,
                batch.messages.len() as u64,
            );
            return Err(Violation(format!(
                "a batch from node {} on node {from}'s stream",
                batch.from
            )));
        }
        if s.partition.blocks(from) {
            Metrics::add(
                &s.metrics.peer_messages_dropped,
                batch.messages.len() as u64,
            );
            continue;
        }
        // Waits while the Raft loop is behind: TCP carries the back-pressure
        // to the sender.
        if s.node.deliver(batch).await.is_err() {
            return Ok(());
        }
    }
}
