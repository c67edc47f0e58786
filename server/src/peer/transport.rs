//! The peer transport's sending side: one task per peer writes that peer's
//! messages, in batches, to a persistent one-way stream
//! ([`super::handshake`]: `GET /raft/stream` upgraded to length-prefixed
//! postcard [`PeerBatch`] frames, [`super::codec`], on the peer's ordinary
//! listener).
//!
//! The Raft loop only ever pushes onto a per-peer queue (`send`, of
//! [`Outbound`], never blocks and never awaits). The message senders run on the loop's
//! own single-threaded runtime: a push wakes a task on the same thread, not
//! another thread, and the write happens when the loop next yields (it
//! yields between a leader's appends and its fsync, see `node/mod.rs`). Each
//! peer task takes everything queued (up to a byte bound) as one batch,
//! writes it as one frame, and at once takes the next: no answer per batch,
//! so whatever queued while a frame was being written travels together in
//! the next one, and TCP carries the order and the back-pressure. A lost
//! stream is reconnected with a backoff (20 ms doubling up to 1 s); what
//! was queued when a connect fails is dropped, and a queue over its bound
//! drops its oldest messages: Raft retransmits. InstallSnapshot messages go
//! their own way, in chunks, on a second connection per peer
//! ([`super::snapshot_sender`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_core::wire::PeerBatch;
use raft_core::{Message, MessageBody, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::codec::encode_frame;
use super::credentials::Credentials;
use super::handshake::{self, PeerAddr, PeerStream};
use super::snapshot_sender::{SnapshotOutbox, SnapshotSender};
use super::Partition;
use crate::metrics::Metrics;
use crate::node::Outbound;

/// Largest batch the sender assembles (one message may exceed it).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// A peer's queue drops its oldest messages beyond this many bytes...
const MAX_QUEUE_BYTES: usize = 64 << 20;
/// ... or this many messages.
const MAX_QUEUE_MESSAGES: usize = 16_384;
/// Time limit of one snapshot chunk post, and of writing one frame: a
/// stream that takes longer is taken for dead and reconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The first reconnect delay, doubled on each failure...
const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// ... up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An estimate of a message's encoded size, to bound queues and batches.
pub fn message_size(m: &Message) -> usize {
    32 + match &m.body {
        MessageBody::Append { entries, .. } => entries.iter().map(|e| e.approx_size()).sum(),
        MessageBody::InstallSnapshot { snapshot } => snapshot.data.len(),
        _ => 0,
    }
}

#[derive(Default)]
struct Queue {
    msgs: VecDeque<(Message, usize)>,
    bytes: usize,
}

#[derive(Default)]
struct PeerQueue {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl PeerQueue {
    /// Pushes a message; returns how many old ones were dropped to fit it.
    fn push(&self, msg: Message) -> u64 {
        let size = message_size(&msg);
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        while !q.msgs.is_empty()
            && (q.bytes + size > MAX_QUEUE_BYTES || q.msgs.len() >= MAX_QUEUE_MESSAGES)
        {
            if let Some((_, s)) = q.msgs.pop_front() {
                q.bytes -= s;
                dropped += 1;
            }
        }
        q.bytes += size;
        q.msgs.push_back((msg, size));
        drop(q);
        self.notify.notify_one();
        dropped
    }

    /// Drops everything queued; returns how many messages that was.
    fn clear(&self) -> u64 {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.msgs.len() as u64;
        q.msgs.clear();
        q.bytes = 0;
        n
    }

    /// Waits for at least one message and takes everything queued, up to
    /// [`MAX_BATCH_BYTES`].
    async fn take_batch(&self) -> Vec<Message> {
        loop {
            {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if !q.msgs.is_empty() {
                    let mut batch = Vec::new();
                    let mut bytes = 0;
                    while let Some((_, size)) = q.msgs.front() {
                        if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
                            break;
                        }
                        let (msg, size) = q.msgs.pop_front().expect("front exists");
                        bytes += size;
                        q.bytes -= size;
                        batch.push(msg);
                    }
                    return batch;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// One peer's senders.
struct PeerLink {
    url: String,
    queue: Option<Arc<PeerQueue>>,
    snapshots: Arc<SnapshotOutbox>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The sending side of the peer network, owned by the Raft loop. Its peers
/// follow the configuration: [`Transport::set_peers`] is called whenever
/// the configuration in the log changes.
pub struct Transport {
    links: BTreeMap<NodeId, PeerLink>,
    opts: TransportOptions,
    partition: Arc<Partition>,
    metrics: Arc<Metrics>,
    loop_runtime: tokio::runtime::Handle,
    io_runtime: tokio::runtime::Handle,
    /// Whether a message went onto a sender's queue since
    /// [`Transport::take_queued`].
    queued: std::cell::Cell<bool>,
}

/// What the senders of a [`Transport`] need to know.
pub struct TransportOptions {
    /// Who this node says it is on every handshake and chunk.
    pub credentials: Credentials,
    /// Size of one snapshot chunk post.
    pub snapshot_chunk_bytes: usize,
    /// How long the snapshot client keeps an idle connection.
    pub pool_idle: Duration,
    /// The node's certificates, when members speak TLS.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl Transport {
    /// A transport with no peers yet. Message senders will run on
    /// `loop_runtime` (the Raft loop's own, so queuing a message for one
    /// wakes no other thread); snapshot senders on the current runtime.
    pub fn new(
        opts: TransportOptions,
        partition: Arc<Partition>,
        metrics: Arc<Metrics>,
        loop_runtime: &tokio::runtime::Handle,
    ) -> Transport {
        Transport {
            links: BTreeMap::new(),
            opts,
            partition,
            metrics,
            loop_runtime: loop_runtime.clone(),
            io_runtime: tokio::runtime::Handle::current(),
            queued: std::cell::Cell::new(false),
        }
    }

    fn start_link(&self, id: NodeId, url: &str) -> PeerLink {
        let mut tasks = Vec::new();
        let connector = match self.opts.tls.as_ref().map(crate::tls::peer_client::config) {
            None => Ok(None),
            Some(Ok(config)) => Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(config)))),
            Some(Err(e)) => Err(e.to_string()),
        };
        let queue = match PeerAddr::from_url(url).and_then(|addr| Ok((addr, connector.clone()?))) {
            Ok((addr, tls)) => {
                let queue = Arc::new(PeerQueue::default());
                let sender = PeerSender {
                    peer: id,
                    addr,
                    tls,
                    creds: self.opts.credentials.clone(),
                    queue: queue.clone(),
                    partition: self.partition.clone(),
                    metrics: self.metrics.clone(),
                };
                tasks.push(self.loop_runtime.spawn(sender.run()));
                Some(queue)
            }
            Err(e) => {
                warn!(peer = id, "no stream to this peer: {e}");
                None
            }
        };
        let snapshots = Arc::new(SnapshotOutbox::default());
        match peer_http_client(self.opts.pool_idle, self.opts.tls.as_ref()) {
            Ok(client) => {
                let snapshot_sender = SnapshotSender {
                    peer: id,
                    url: format!("{url}/raft/snapshot"),
                    creds: self.opts.credentials.clone(),
                    outbox: snapshots.clone(),
                    partition: self.partition.clone(),
                    metrics: self.metrics.clone(),
                    chunk_bytes: self.opts.snapshot_chunk_bytes,
                    client,
                };
                tasks.push(self.io_runtime.spawn(snapshot_sender.run()));
            }
            Err(e) => warn!(peer = id, "cannot build an HTTP client: {e}"),
        }
        PeerLink {
            url: url.to_string(),
            queue,
            snapshots,
            tasks,
        }
    }
}

impl Outbound for Transport {
    /// Makes the senders match `peers` (id → base URL, this node excluded):
    /// starts two tasks for each new peer (message batches and snapshot
    /// chunks), stops those of peers that left, restarts those whose URL
    /// changed.
    fn set_peers(&mut self, peers: &BTreeMap<NodeId, String>) {
        self.links
            .retain(|id, link| peers.get(id).is_some_and(|u| *u == link.url));
        for (&id, url) in peers {
            if id == self.opts.credentials.me || self.links.contains_key(&id) {
                continue;
            }
            let link = self.start_link(id, url);
            self.links.insert(id, link);
        }
    }

    /// Whether messages were queued since the last call: the loop then
    /// yields, so that its thread's senders write them.
    fn take_queued(&self) -> bool {
        self.queued.replace(false)
    }

    /// Queues messages for sending; never blocks.
    fn send(&self, messages: Vec<Message>) {
        for msg in messages {
            if self.partition.blocks(msg.to) {
                Metrics::inc(&self.metrics.peer_messages_dropped);
                continue;
            }
            let Some(link) = self.links.get(&msg.to) else {
                debug!(
                    to = msg.to,
                    kind = msg.body.kind(),
                    "not a member with an address; message dropped"
                );
                Metrics::inc(&self.metrics.peer_messages_dropped);
                continue;
            };
            if matches!(msg.body, MessageBody::InstallSnapshot { .. }) {
                link.snapshots.offer(msg);
                continue;
            }
            match &link.queue {
                Some(q) => {
                    self.queued.set(true);
                    let dropped = q.push(msg);
                    Metrics::add(&self.metrics.peer_messages_dropped, dropped);
                }
                None => {
                    warn!(
                        to = msg.to,
                        kind = msg.body.kind(),
                        "no address for peer; message dropped"
                    );
                    Metrics::inc(&self.metrics.peer_messages_dropped);
                }
            }
        }
    }
}

struct PeerSender {
    peer: NodeId,
    addr: PeerAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    creds: Credentials,
    queue: Arc<PeerQueue>,
    partition: Arc<Partition>,
    metrics: Arc<Metrics>,
}

/// The HTTP client of the snapshot chunk posts: short connect timeout,
/// persistent connections, no Nagle delay. An idle connection is dropped
/// after `pool_idle`, which is shorter than the peers' idle timeout, so a
/// chunk never goes out on a connection the peer is closing. With TLS it
/// presents the peer certificate ([`crate::tls::peer_client`]).
fn peer_http_client(
    pool_idle: Duration,
    tls: Option<&Arc<crate::tls::Tls>>,
) -> Result<reqwest::Client, String> {
    crate::tls::peer_client::reqwest_builder(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(SEND_TIMEOUT)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(pool_idle)
        .build()
        .map_err(|e| e.to_string())
}

impl PeerSender {
    /// Connects, writes frames until the stream fails, reconnects; forever
    /// (the task is aborted when the [`Transport`] is dropped).
    async fn run(self) {
        let mut failures: u32 = 0;
        loop {
            let error = match handshake::connect(&self.addr, &self.creds, self.tls.as_ref()).await {
                Ok(mut stream) => {
                    if failures > 0 {
                        info!(peer = self.peer, "peer reachable again");
                    }
                    debug!(peer = self.peer, addr = %self.addr, "peer stream open");
                    let opened = Instant::now();
                    let why = self.pump(&mut stream).await;
                    // Only a stream that lasted ends the outage: one the peer
                    // closes at once (it refuses our frames, or another node
                    // claims our id) must not become a reconnect loop
                    // without backoff and a warning every time.
                    if opened.elapsed() >= BACKOFF_MAX {
                        failures = 0;
                    }
                    why
                }
                Err(e) => {
                    // Nothing queued now will be fresh once the peer is back
                    // (as a failed batch was dropped before): Raft resends.
                    Metrics::add(&self.metrics.peer_messages_dropped, self.queue.clear());
                    e
                }
            };
            Metrics::inc(&self.metrics.peer_send_errors);
            // One warning per outage; the retries only at debug level.
            if failures == 0 {
                warn!(peer = self.peer, addr = %self.addr, "cannot reach peer: {error}");
            } else {
                debug!(peer = self.peer, failures, "cannot reach peer: {error}");
            }
            let backoff = BACKOFF_MIN
                .saturating_mul(1 << failures.min(6))
                .min(BACKOFF_MAX);
            failures = failures.saturating_add(1);
            tokio::time::sleep(backoff).await;
        }
    }

    /// Writes batches to `stream` as they are queued until the stream fails;
    /// returns why.
    async fn pump(&self, stream: &mut PeerStream) -> String {
        // The receiver never writes: a read that completes means the stream
        // was closed (the peer restarted, replaced or refused it), found out
        // before a batch is lost to it.
        let mut probe = [0u8; 1];
        loop {
            let batch = tokio::select! {
                biased;
                r = stream.read(&mut probe) => {
                    return match r {
                        Ok(0) => "the peer closed the stream".into(),
                        Ok(_) => "the peer wrote on a one-way stream".into(),
                        Err(e) => format!("stream: {e}"),
                    };
                }
                batch = self.queue.take_batch() => batch,
            };
            let n = batch.len() as u64;
            if self.partition.blocks(self.peer) {
                Metrics::add(&self.metrics.peer_messages_dropped, n);
                continue;
            }
            let frame = match encode_frame(&PeerBatch {
                from: self.creds.me,
                messages: batch,
            }) {
                Ok(f) => f,
                Err(e) => {
                    warn!(peer = self.peer, "batch dropped: {e}");
                    Metrics::add(&self.metrics.peer_messages_dropped, n);
                    continue;
                }
            };
            match tokio::time::timeout(SEND_TIMEOUT, stream.write_all(&frame)).await {
                Ok(Ok(())) => {
                    Metrics::add(&self.metrics.peer_messages_sent, n);
                    Metrics::add(&self.metrics.peer_bytes_sent, frame.len() as u64);
                }
                Ok(Err(e)) => {
                    Metrics::add(&self.metrics.peer_messages_dropped, n);
                    return format!("write: {e}");
                }
                Err(_) => {
                    Metrics::add(&self.metrics.peer_messages_dropped, n);
                    return format!("a frame took over {SEND_TIMEOUT:?} to write");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(to: NodeId) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_ctx: 0,
                seq: 0,
            },
        }
    }

    #[tokio::test]
    async fn queue_batches_everything_and_drops_oldest_over_bound() {
        let q = PeerQueue::default();
        for _ in 0..(MAX_QUEUE_MESSAGES + 10) {
            q.push(hb(2));
        }
        let batch = q.take_batch().await;
        assert_eq!(batch.len(), MAX_QUEUE_MESSAGES);
        assert!(q.queue.lock().unwrap().msgs.is_empty());
    }
}
