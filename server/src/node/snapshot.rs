//! Snapshots on the Raft loop: the `snapshot` thread that writes the
//! node's own snapshots while the loop keeps serving, and
//! [`DecodedSnapshot`], the state machine of a leader's snapshot decoded
//! off the loop for it to install.

use std::sync::{Arc, Mutex};

use raft_core::replica::SnapshotJob;
use raft_core::{
    kv::SnapshotDecodeError, Index, KvStore, Message, MessageBody, Snapshot, SnapshotMeta, Term,
};
use tracing::{error, info, warn};

use super::{FatalError, Node};
use crate::metrics::Metrics;
use crate::storage::StorageError;

/// A snapshot whose file the snapshot thread finished writing.
pub(super) struct SnapshotWritten {
    /// What the storage records: the metadata (and for an in-memory store
    /// the image; a file's image is not read back).
    snapshot: Snapshot,
    /// The image's length.
    bytes: u64,
    result: Result<(), StorageError>,
    started: std::time::Instant,
    /// The replica's applied-bytes mark at the snapshot's index.
    applied_bytes: u64,
}

impl Node {
    /// Starts the snapshot the replica asks for (by its policy or a
    /// request), if any: the state machine was cloned in O(1) (persistent
    /// maps), and is serialized and written on a thread of its own, so the
    /// Raft loop keeps serving; [`Node::on_snapshot_written`] records it.
    pub(super) fn maybe_snapshot(&mut self) {
        let Some(job) = self.replica.snapshot_job() else {
            return;
        };
        let index = job.meta.index;
        if let Err(e) = self.start_snapshot(job) {
            warn!(index, "cannot start the snapshot thread: {e}");
            self.replica
                .snapshot_failed(index, format!("the snapshot thread could not start: {e}"));
            self.route_outcomes();
        }
    }

    fn start_snapshot(&mut self, job: SnapshotJob) -> std::io::Result<()> {
        let writer = self.storage.snapshot_writer();
        let done = self.snapshot_done.clone();
        let started = std::time::Instant::now();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                lower_priority();
                // Serialized straight into the file: the image is never
                // whole in memory beside the live map.
                let (snapshot, bytes, result) = match writer.write_state(&job.meta, &job.kv) {
                    Ok((snapshot, bytes)) => (snapshot, bytes, Ok(())),
                    Err(e) => {
                        let snapshot = Snapshot {
                            meta: job.meta.clone(),
                            data: Vec::new(),
                        };
                        (snapshot, 0, Err(e))
                    }
                };
                let _ = done.send(SnapshotWritten {
                    snapshot,
                    bytes,
                    result,
                    started,
                    applied_bytes: job.applied_bytes,
                });
            })
            .map(|_| ())
    }

    /// Records a snapshot written by the snapshot thread (the WAL's mark,
    /// then the replica compacts its log) and answers the requests it
    /// satisfies.
    pub(super) fn on_snapshot_written(
        &mut self,
        written: SnapshotWritten,
    ) -> Result<(), FatalError> {
        let SnapshotWritten {
            snapshot,
            result,
            started,
            applied_bytes,
            bytes,
        } = written;
        let index = snapshot.meta.index;
        match result {
            // The file is not referenced by the log yet: a failed write
            // leaves the node as it was.
            Err(e) => {
                error!(index, "writing the snapshot failed: {e}");
                self.replica
                    .snapshot_failed(index, format!("snapshot failed: {e}"));
            }
            Ok(()) => match self.storage.record_snapshot(&snapshot) {
                Ok(()) => match self.replica.snapshot_recorded(
                    snapshot.meta.clone(),
                    bytes,
                    applied_bytes,
                ) {
                    Ok(()) => {
                        // The image is in the file now; the core keeps the
                        // metadata, and a lagging follower is sent the file.
                        free_image_off_loop(snapshot);
                        free_off_loop(self.replica.take_compacted());
                        Metrics::inc(&self.metrics.snapshots);
                        self.metrics.observe_snapshot(started.elapsed(), bytes);
                        info!(
                            index,
                            bytes,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "snapshot taken"
                        );
                        self.emit(raft_core::wire::NodeEvent::SnapshotTaken { index, bytes });
                    }
                    Err(e) => warn!(index, "snapshot not installed in the log: {e}"),
                },
                Err(StorageError::SnapshotOutOfDate { current, .. }) => {
                    // A newer snapshot from the leader arrived meanwhile;
                    // the replica drops this one (it is not newer).
                    warn!(index, current, "snapshot overtaken by a newer one; dropped");
                    let _ =
                        self.replica
                            .snapshot_recorded(snapshot.meta.clone(), bytes, applied_bytes);
                    free_image_off_loop(snapshot);
                }
                Err(e) => return Err(e.into()),
            },
        }
        self.route_outcomes();
        // Requests not covered yet get the next one.
        self.maybe_snapshot();
        Ok(())
    }
}

/// Frees what a compaction removed (up to a million entries and the old
/// snapshot's image: tens of milliseconds of `free`) on a thread of its
/// own, not on the Raft loop.
pub(super) fn free_off_loop(compacted: Option<raft_core::Compacted>) {
    let Some(compacted) = compacted else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("snapshot-free".into())
        .spawn(move || {
            lower_priority();
            drop(compacted);
        });
    // No thread: the closure, and what it holds, is freed here after all.
    if let Err(e) = spawned {
        warn!("cannot start a thread to free the compacted log: {e}");
    }
}

/// Frees a written snapshot's image (tens of megabytes) on a thread of its
/// own, as [`free_off_loop`] does the compacted log.
fn free_image_off_loop(snapshot: Snapshot) {
    let spawned = std::thread::Builder::new()
        .name("snapshot-free".into())
        .spawn(move || drop(snapshot));
    if let Err(e) = spawned {
        warn!("cannot start a thread to free a snapshot image: {e}");
    }
}

/// Makes the calling thread (the snapshot thread) the last to get a CPU:
/// nice 19, so that serializing tens of megabytes never takes a core from
/// the Raft loop or the HTTP workers while they have work. On Linux the
/// nice value of a thread id is the thread's own. Best effort: a failure
/// only costs the priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        warn!("cannot lower the snapshot thread's priority: {e}");
    }
}

/// The state machine of the newest snapshot received from the leader,
/// decoded by the task that received it, for the Raft loop to install
/// without decoding it on its own thread (half a second for a million
/// keys, during which it would serve nothing). The loop takes it only when
/// the snapshot it installs is the same one (index and term); otherwise it
/// decodes as before. It holds at most one state, cleared by the loop once
/// the message that carried it has been stepped.
#[derive(Clone, Default)]
pub struct DecodedSnapshot {
    slot: Arc<Mutex<Option<(Index, Term, KvStore)>>>,
}

impl DecodedSnapshot {
    /// Decodes the state machine of an InstallSnapshot message (a blocking
    /// call: run it off the async workers) and keeps it for the loop.
    pub fn decode(&self, msg: &Message) -> Result<(), SnapshotDecodeError> {
        let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
            return Ok(());
        };
        let kv = KvStore::restore(&snapshot.data)?;
        *self.lock() = Some((snapshot.meta.index, snapshot.meta.term, kv));
        Ok(())
    }

    /// The decoded state of the snapshot at `meta`, if it is the one kept.
    pub fn take(&self, meta: &SnapshotMeta) -> Option<KvStore> {
        let mut slot = self.lock();
        match slot.take() {
            Some((index, term, kv)) if index == meta.index && term == meta.term => Some(kv),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Drops what is kept (the snapshot was installed, or refused by Raft).
    pub fn clear(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Index, Term, KvStore)>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_snapshot_msg as snapshot_msg;

    #[test]
    fn a_decoded_snapshot_is_kept_for_the_same_snapshot_only() {
        let mut kv = KvStore::new();
        kv.apply(&raft_core::Entry {
            term: 2,
            index: 40,
            payload: raft_core::Payload::command(raft_core::Command {
                client_id: 0,
                seq: 0,
                op: raft_core::Op::Put {
                    key: "k".into(),
                    value: "v".into(),
                },
            }),
        });
        let mut msg = snapshot_msg(0);
        let MessageBody::InstallSnapshot { snapshot } = &mut msg.body else {
            unreachable!()
        };
        snapshot.data = kv.snapshot();
        let meta = snapshot.meta.clone();
        let decoded = DecodedSnapshot::default();
        decoded.decode(&msg).unwrap();
        // Another snapshot (other term) does not take it...
        let other = SnapshotMeta {
            term: 3,
            ..meta.clone()
        };
        assert!(decoded.take(&other).is_none());
        // ...the same one does, once.
        assert_eq!(decoded.take(&meta), Some(kv));
        assert!(decoded.take(&meta).is_none());
        // Cleared: gone.
        decoded.decode(&msg).unwrap();
        decoded.clear();
        assert!(decoded.take(&meta).is_none());
        // Data that does not decode is an error and keeps nothing.
        let MessageBody::InstallSnapshot { snapshot } = &mut msg.body else {
            unreachable!()
        };
        snapshot.data = vec![0xff; 16];
        assert!(decoded.decode(&msg).is_err());
        assert!(decoded.take(&meta).is_none());
    }
}
