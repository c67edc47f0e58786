//! Sending InstallSnapshot in chunks (paper §7: the leader sends the
//! snapshot in pieces, the follower reassembles it before it replaces its
//! log; the pieces are [`super::chunks`]).
//!
//! Sending: the transport hands every InstallSnapshot message to the peer's
//! [`SnapshotOutbox`] instead of its batch queue. One [`SnapshotSender`] task
//! per peer sends the newest one as [`SnapshotChunk`]s, in order, one chunk in
//! flight, on its own connection: heartbeats and appends keep flowing on the
//! batch connection meanwhile, so a large snapshot does not cost the
//! follower its leader. A chunk that fails abandons the transfer; the Raft
//! core sends the snapshot again when the follower does not answer.
//!
//! The core's InstallSnapshot carries only the snapshot's metadata (it
//! keeps no image in memory): the sender reads the newest snapshot file of
//! the data directory, at or after the index the core named, and sends
//! that, metadata and image. It may be newer than the core's (the catch-up
//! margin delays compaction, or a snapshot was recorded since): any
//! snapshot of this leader's applied state is a committed prefix of its
//! log, and the follower's acknowledgement of the newer index moves its
//! progress on (`raft/replication.rs`, `send_snapshot`). The file is
//! opened and checked (its CRC) first, then read one chunk at a time as
//! the chunks are posted: the image is never whole in memory. An open file
//! stays readable when compaction removes it meanwhile.

use std::sync::{Arc, Mutex};

use raft_core::wire::SnapshotChunk;
use raft_core::{Index, Message, MessageBody, NodeId, Term};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::credentials::Credentials;
use super::Partition;
use crate::error_chain::error_chain;
use crate::metrics::Metrics;
use crate::storage::SnapshotSource;

/// The sending side for one peer: the newest InstallSnapshot not yet sent.
#[derive(Default)]
pub struct SnapshotOutbox {
    pending: Mutex<Option<Message>>,
    notify: Notify,
}

impl SnapshotOutbox {
    /// Queues a snapshot message, replacing an older one not yet started.
    pub fn offer(&self, msg: Message) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        self.notify.notify_one();
    }

    async fn take(&self) -> Message {
        loop {
            if let Some(m) = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                return m;
            }
            self.notify.notified().await;
        }
    }

    /// Forgets a queued resend of the snapshot just delivered: Raft re-sends
    /// a snapshot when the follower has not answered for a while, which is
    /// normal while a large one is still on its way.
    fn forget_resend_of(&self, term: Term, index: Index) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = pending.as_ref() {
            if let MessageBody::InstallSnapshot { snapshot } = &m.body {
                if m.term == term && snapshot.meta.index == index {
                    *pending = None;
                }
            }
        }
    }
}

/// The task sending one peer's snapshots.
pub struct SnapshotSender {
    /// The peer.
    pub peer: NodeId,
    /// `{peer}/raft/snapshot`.
    pub url: String,
    /// Who this node says it is.
    pub creds: Credentials,
    /// Where the Raft loop leaves snapshot messages.
    pub outbox: Arc<SnapshotOutbox>,
    /// Test partition switch.
    pub partition: Arc<Partition>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Chunk size.
    pub chunk_bytes: usize,
    /// Where the snapshot files are.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// The HTTP client.
    pub client: reqwest::Client,
}

impl SnapshotSender {
    /// Sends snapshots until the task is aborted.
    pub async fn run(self) {
        loop {
            let asked = self.outbox.take().await;
            let MessageBody::InstallSnapshot { snapshot } = &asked.body else {
                continue;
            };
            let asked_index = snapshot.meta.index;
            let Some(source) = self.open_newest(asked_index).await else {
                continue;
            };
            let index = source.meta.index;
            let count = source
                .data_len
                .div_ceil(self.chunk_bytes.max(1) as u64)
                .max(1);
            match self.send_all(&asked, source).await {
                Ok(()) => {
                    Metrics::inc(&self.metrics.snapshots_sent);
                    info!(
                        peer = self.peer,
                        index,
                        asked = asked_index,
                        chunks = count,
                        "snapshot sent to the peer"
                    );
                    self.outbox.forget_resend_of(asked.term, asked_index);
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.snapshot_transfers_failed);
                    warn!(
                        peer = self.peer,
                        index, "snapshot transfer abandoned (Raft will resend): {e}"
                    );
                }
            }
        }
    }

    /// The newest snapshot file at or after `index`, opened and verified
    /// off the async workers; `None` (logged) when there is none or it
    /// cannot be read: Raft asks again.
    async fn open_newest(&self, index: Index) -> Option<SnapshotSource> {
        let Some(dir) = self.snapshot_dir.clone() else {
            warn!(
                peer = self.peer,
                index, "no data directory to send a snapshot from"
            );
            return None;
        };
        let opened =
            tokio::task::spawn_blocking(move || crate::storage::open_newest_snapshot(&dir, index))
                .await;
        match opened {
            Ok(Ok(Some(source))) => Some(source),
            Ok(Ok(None)) => {
                warn!(
                    peer = self.peer,
                    index, "no snapshot file at or after the index to send"
                );
                None
            }
            Ok(Err(e)) => {
                warn!(
                    peer = self.peer,
                    index, "cannot read the snapshot to send: {e}"
                );
                None
            }
            Err(e) => {
                warn!(peer = self.peer, index, "the snapshot read failed: {e}");
                None
            }
        }
    }

    /// Sends `source`'s image in chunks, each read from the file (off the
    /// async workers) just before it is posted: one chunk in memory at a
    /// time. `asked` gives the sender, recipient and term.
    async fn send_all(&self, asked: &Message, mut source: SnapshotSource) -> Result<(), String> {
        let step = self.chunk_bytes.max(1);
        let total_len = source.data_len;
        let mut offset = 0u64;
        loop {
            if self.partition.blocks(self.peer) {
                return Err("the peer is cut off by the test partition".into());
            }
            let (back, piece) = tokio::task::spawn_blocking(move || {
                let piece = source.read(offset, step);
                (source, piece)
            })
            .await
            .map_err(|e| format!("reading the chunk at offset {offset}: {e}"))?;
            source = back;
            let data = piece.map_err(|e| format!("chunk at offset {offset}: {e}"))?;
            let len = data.len() as u64;
            let chunk = SnapshotChunk {
                from: asked.from,
                to: asked.to,
                term: asked.term,
                meta: source.meta.clone(),
                total_len,
                crc32: source.data_crc,
                offset,
                data,
            };
            post_peer(&self.client, &self.url, &self.creds, chunk.encode())
                .await
                .map_err(|e| format!("chunk at offset {offset}: {e}"))?;
            Metrics::inc(&self.metrics.snapshot_chunks_sent);
            debug!(peer = self.peer, offset, "snapshot chunk sent");
            offset += len;
            // One chunk (empty) for an empty image; else until the end.
            if offset >= total_len {
                return Ok(());
            }
        }
    }
}

/// Posts one peer RPC body (postcard) to `url`; any answer but 2xx is an
/// error, described with the peer's JSON message when it sent one.
pub async fn post_peer(
    client: &reqwest::Client,
    url: &str,
    creds: &Credentials,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    for (name, value) in creds.headers() {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            Err(format!("peer answered {status}: {}", text.trim()))
        }
        Err(e) => Err(error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_snapshot_msg as snapshot_msg;

    #[tokio::test]
    async fn outbox_keeps_the_newest_and_forgets_a_resend_of_a_delivered_one() {
        let outbox = SnapshotOutbox::default();
        let mut older = snapshot_msg(5);
        older.term = 2;
        outbox.offer(older);
        outbox.offer(snapshot_msg(5));
        assert_eq!(outbox.take().await.term, 3);
        outbox.offer(snapshot_msg(5));
        outbox.forget_resend_of(3, 40);
        assert!(outbox.pending.lock().unwrap().is_none());
        outbox.offer(snapshot_msg(5));
        outbox.forget_resend_of(3, 41);
        assert!(outbox.pending.lock().unwrap().is_some());
    }
}
