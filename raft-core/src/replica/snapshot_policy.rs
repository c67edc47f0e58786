//! When a replica snapshots its state machine on its own.
//!
//! Two rules: at least `every` entries applied since the newest snapshot,
//! and entries adding up (by `Entry::approx_size`) to at least
//! `log_percent` of that snapshot's size. A snapshot rewrites the whole
//! state, so with a large state a fixed entry count alone would make every
//! put pay for a full rewrite many times over (a million keys rewritten
//! every few thousand puts); with the size rule a snapshot's cost stays
//! proportional to the log it compacts, and the log kept stays within
//! `log_percent` of the state's size or `every` entries, whichever is more.
//!
//! A third number, `catchup_entries`, is not about when to write but when
//! to compact: a snapshot that is written and durable is handed to the
//! Raft core (which drops the log it covers) only once that many entries
//! are applied past it, so the log in memory always keeps the newest
//! `catchup_entries` applied entries and a follower that is briefly behind
//! gets entries, not a whole snapshot (etcd keeps 5,000 the same way).
//!
//! The size rule lets the log since the newest snapshot grow to half the
//! state, and a log entry in memory costs about three times its bytes: a
//! member of a million keys held more log than state. So the log in memory
//! is compacted on its own, at a *checkpoint* every `checkpoint_every`
//! applied entries: a point the core drops its log to (after the catch-up
//! margin) with no image written there. The durable log on disk still reaches back to the
//! newest snapshot file, so a restart loses nothing; and a follower that
//! needs a snapshot past the newest file waits until a new one is written
//! ([`crate::Replica::ready`] holds its InstallSnapshot back and asks for
//! one), which only a follower more than the margin behind ever does.

use crate::types::Index;

/// The automatic snapshot rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Entries applied since the newest snapshot before the next (0: never
    /// automatically; requested snapshots still happen).
    pub every: u64,
    /// Bytes of log applied since the newest snapshot, in percent of its
    /// size, before the next (0: no size rule).
    pub log_percent: u64,
    /// Entries applied past a written snapshot before the log it covers is
    /// dropped (0: at once). A snapshot asked for with
    /// `Replica::request_snapshot` compacts at once whatever this says.
    pub catchup_entries: u64,
    /// Entries applied past the newest checkpoint or snapshot before the
    /// next checkpoint of the log in memory (0: none; the log is compacted
    /// at snapshots only).
    pub checkpoint_every: u64,
}

/// The catch-up margin by default: etcd's `SnapshotCatchUpEntries`.
pub const DEFAULT_CATCHUP_ENTRIES: u64 = 5_000;

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every: 10_000,
            log_percent: 50,
            catchup_entries: DEFAULT_CATCHUP_ENTRIES,
            checkpoint_every: 10_000,
        }
    }
}

impl SnapshotPolicy {
    /// Whether a snapshot is due `entries` and `log_bytes` after the newest
    /// one, of `snapshot_bytes`.
    pub fn due(&self, entries: u64, log_bytes: u64, snapshot_bytes: u64) -> bool {
        self.every != 0
            && entries >= self.every
            && log_bytes.saturating_mul(100) >= snapshot_bytes.saturating_mul(self.log_percent)
    }
}

/// The replica's snapshot bookkeeping.
#[derive(Debug)]
pub(super) struct SnapshotState {
    policy: SnapshotPolicy,
    /// The newest snapshot's index.
    pub index: Index,
    /// Its size in bytes.
    bytes: u64,
    /// Approximate bytes of every entry applied since start.
    applied_bytes: u64,
    /// `applied_bytes` at the newest snapshot: the log it did not cover
    /// starts there.
    mark: u64,
    /// The index of the snapshot being written, if any (one at a time).
    pub running: Option<Index>,
    /// The newest checkpoint: the next one is `checkpoint_every` entries
    /// after it or after the newest snapshot, whichever is newer.
    checkpoint: Index,
    /// No automatic snapshot before this applied index (moved on after a
    /// failure, so a broken disk is not retried on every entry).
    not_before: Index,
}

impl SnapshotState {
    /// The catch-up margin.
    pub fn catchup_entries(&self) -> u64 {
        self.policy.catchup_entries
    }

    pub fn new(policy: SnapshotPolicy, index: Index, bytes: u64) -> Self {
        SnapshotState {
            policy,
            index,
            bytes,
            applied_bytes: 0,
            mark: 0,
            running: None,
            checkpoint: index,
            not_before: 0,
        }
    }

    /// Whether the log in memory is due a checkpoint at `applied`.
    pub fn checkpoint_due(&self, applied: Index) -> bool {
        let every = self.policy.checkpoint_every;
        every != 0 && applied >= self.checkpoint.max(self.index).saturating_add(every)
    }

    /// A checkpoint was made at `index`.
    pub fn checkpointed(&mut self, index: Index) {
        self.checkpoint = self.checkpoint.max(index);
    }

    pub fn applied(&mut self, bytes: u64) {
        self.applied_bytes += bytes;
    }

    pub fn applied_bytes(&self) -> u64 {
        self.applied_bytes
    }

    /// Whether to start a snapshot at `applied` (`asked`: someone requested
    /// one).
    pub fn due(&self, applied: Index, asked: bool) -> bool {
        if self.running.is_some() || applied <= self.index {
            return false;
        }
        asked
            || (applied >= self.not_before
                && self.policy.due(
                    applied - self.index,
                    self.applied_bytes - self.mark,
                    self.bytes,
                ))
    }

    pub fn started(&mut self, index: Index) {
        self.running = Some(index);
    }

    pub fn finished(&mut self) {
        self.running = None;
    }

    pub fn failed(&mut self, index: Index) {
        self.running = None;
        self.not_before = index.saturating_add(self.policy.every.max(1));
    }

    /// A snapshot this node took is in force.
    pub fn taken(&mut self, index: Index, bytes: u64, applied_bytes: u64) {
        self.index = index;
        self.bytes = bytes;
        self.mark = applied_bytes;
    }

    /// A snapshot from the leader replaced the state machine.
    pub fn installed(&mut self, index: Index, bytes: u64) {
        if index > self.index {
            self.index = index;
            self.bytes = bytes;
            self.mark = self.applied_bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_waits_for_entries_and_for_half_its_size_in_log() {
        let p = SnapshotPolicy {
            every: 100,
            log_percent: 50,
            catchup_entries: 0,
            checkpoint_every: 0,
        };
        assert!(!p.due(99, 1 << 30, 0), "too few entries");
        assert!(p.due(100, 0, 0), "first snapshot: entries alone");
        assert!(!p.due(100, 499, 1000), "log under half the snapshot");
        assert!(p.due(100, 500, 1000));
        assert!(!SnapshotPolicy { every: 0, ..p }.due(1 << 40, 1 << 40, 0));
        assert!(SnapshotPolicy {
            every: 1,
            log_percent: 0,
            catchup_entries: 0,
            checkpoint_every: 0,
        }
        .due(1, 0, 1 << 40));
    }

    #[test]
    fn one_snapshot_at_a_time_and_a_failure_waits_another_every() {
        let mut s = SnapshotState::new(
            SnapshotPolicy {
                every: 10,
                log_percent: 0,
                catchup_entries: 0,
                checkpoint_every: 0,
            },
            0,
            0,
        );
        assert!(s.due(10, false));
        s.started(10);
        assert!(!s.due(20, true), "one at a time");
        s.failed(10);
        assert!(!s.due(19, false));
        assert!(s.due(19, true), "a request does not wait");
        assert!(s.due(20, false));
        s.started(20);
        s.finished();
        s.taken(20, 100, 0);
        assert!(!s.due(20, true), "nothing new to cover");
    }
}
