//! A simulated node's disk: what survives a crash, and how the node's
//! durable writes fail. It follows the server's storage
//! (`server/src/storage`: `disk.rs`, `wal.rs`, `recovery.rs`) at the level
//! of what recovery can tell apart, so that a restarted simulated node is
//! handed exactly the states a restarted server can load.
//!
//! # The server's writes
//!
//! * A `Ready` that must persist is **one WAL record** (an optional
//!   snapshot mark, the entries, an optional hard state) written and
//!   fsynced once. A snapshot received from the leader has its **file**
//!   written first (temp file, fsync, rename, directory fsync), then the
//!   record referring to it (the mark).
//! * The node's **own snapshot** is a file written off the loop, recorded
//!   later by a record holding only its mark.
//! * Before a record the active segment may be rolled: the new segment is
//!   created under a temp name holding the current hard state, then renamed
//!   into place. After a record with a mark, compaction deletes covered
//!   segments and older snapshot files.
//!
//! # What a crash in the middle of a write leaves ([`WriteCut`])
//!
//! Recovery cuts a torn last record at the last whole record, ignores temp
//! files, reads the newest snapshot file, and marks a snapshot file newer
//! than the WAL's last mark (keeping the entries after it only if the log
//! holds the snapshot's `(index, term)`; the hard state is the last one
//! recorded). Hence, for one write:
//!
//! | server, crash or IO error...                        | recovery finds           | here                      |
//! |-----------------------------------------------------|--------------------------|---------------------------|
//! | in the snapshot file (before its rename)            | nothing new (temp file)  | [`WriteCut::Nothing`]     |
//! | while rolling to a new segment                      | the same state (the new segment holds the current hard state, or is a temp file) | [`WriteCut::Nothing`] |
//! | in the record (any prefix of it)                    | record cut off           | [`WriteCut::Nothing`]     |
//! | after the snapshot file, before or in the record    | file newer than the mark: repaired, old hard state | [`WriteCut::SnapshotFile`] |
//! | after the whole record, before the fsync returned   | the whole record         | [`WriteCut::Everything`]  |
//! | during compaction                                   | the whole record (compaction only drops what the mark covers) | [`WriteCut::Everything`] |
//!
//! A record is never half applied: it is whole (and verifies) or cut, so
//! entries without their hard state, or a hard state without its entries,
//! are not outcomes, and this model does not produce them. A write without
//! a snapshot file has two outcomes (nothing, everything), one with a file
//! three. An own snapshot's file is modelled as written right before its
//! mark (the simulator takes snapshots synchronously); a crash between
//! them leaves the file unmarked, which recovery marks. Since the log holds
//! every entry the snapshot covers, the repaired state is the one the mark
//! would have written; the fault still runs the repair path. The server's
//! other interleavings add no outcome: records written while the thread
//! writes the file are whole or cut as above, and a received snapshot that
//! overtakes it makes the own file older than the newest one (ignored, or
//! deleted by compaction).
//!
//! A power loss instead of a process crash loses what was written but not
//! yet fsynced: the record not yet synced is cut (`Nothing`), and since the
//! snapshot file is fsynced (directory included) before the record is
//! written, `SnapshotFile` stays possible. No new outcome either.
//!
//! # Disk errors ([`DiskErrorKind`])
//!
//! Any IO error in the WAL poisons the server's store, and the Raft loop
//! stops with a fatal error: the `Ready` is not advanced, its messages held
//! for after the write are not sent, and every waiting request is ended
//! through `Replica::stop` (writes: outcome unknown). What is on disk is a
//! prefix as above: `ENOSPC` fails a `write`, so the record is never whole
//! (nothing, or the snapshot file if it fit); `EIO` may come from the fsync
//! after the whole record reached the disk, so any of the three. An error
//! writing the node's own snapshot file does not poison anything (nothing
//! refers to the file yet): the replica is told the snapshot failed and the
//! node goes on; an error writing its mark halts the node. `ENOSPC` stays
//! until the node is restarted (the operator frees space), `EIO` is one
//! failed write.

use crate::rng::Rng;
use crate::types::{Entry, HardState, Index, Membership, Payload, PersistedState, Snapshot, Term};

/// What a node persisted: all that survives a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableStore {
    /// The last hard state persisted.
    pub hard_state: HardState,
    /// The newest snapshot the WAL records (its mark).
    pub snapshot: Option<Snapshot>,
    /// The persisted entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// A snapshot file newer than the WAL's last mark: the node died (or
    /// halted) between writing the file and recording it. Recovery marks it
    /// ([`DurableStore::recover`]).
    pub unmarked_snapshot: Option<Snapshot>,
}

impl DurableStore {
    /// The snapshot's last index (0: none).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// The last persisted index.
    pub fn last_index(&self) -> Index {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The term at `index`, if persisted (the snapshot's own index included).
    pub fn term(&self, index: Index) -> Option<Term> {
        let snap = self.snapshot_index();
        if index == snap {
            return Some(self.snapshot.as_ref().map_or(0, |s| s.meta.term));
        }
        self.entry(index).map(|e| e.term)
    }

    /// The persisted entry at `index`.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.snapshot_index() + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// The configuration in force at `index` (the newest configuration
    /// entry at or below it, else the snapshot's), with the index and term
    /// of the entry (or snapshot) it comes from. `None` for a node that
    /// persisted no configuration yet (a joining node) or an index outside
    /// what it persisted.
    pub fn config_at(&self, index: Index) -> Option<(Index, Term, &Membership)> {
        let snap = self.snapshot_index();
        if index < snap || index > self.last_index() {
            return None;
        }
        for e in self.entries[..(index - snap) as usize].iter().rev() {
            if let Payload::Config(m) = &e.payload {
                return Some((e.index, e.term, m));
            }
        }
        self.snapshot
            .as_ref()
            .map(|s| (s.meta.index, s.meta.term, &s.meta.membership))
    }

    /// Checks, changing nothing, that a record with an optional snapshot
    /// mark and `entries` can be written: the server validates a `persist`
    /// before it writes anything (`LogShape::plan`), so a refused one
    /// leaves the disk as it was. Entries must be consecutive and attach
    /// after the snapshot, at most one past the last entry.
    pub fn check_record(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), String> {
        let (base, last) = match snapshot {
            Some(s) => {
                if s.meta.index < self.snapshot_index() {
                    return Err(format!(
                        "snapshot {} is older than the stored snapshot {}",
                        s.meta.index,
                        self.snapshot_index()
                    ));
                }
                let last = if self.term(s.meta.index) == Some(s.meta.term) {
                    self.last_index()
                } else {
                    s.meta.index
                };
                (s.meta.index, last)
            }
            None => (self.snapshot_index(), self.last_index()),
        };
        if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
            return Err("entries to persist are not contiguous".into());
        }
        match entries.first().map(|e| e.index) {
            Some(first) if first <= base || first > last + 1 => Err(format!(
                "entries from {first} do not attach to the durable log (snapshot {base}, last {last})"
            )),
            _ => Ok(()),
        }
    }

    /// Appends entries, replacing the stored ones from the first new index
    /// on. Fails (changing nothing) if they would leave a gap.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        self.check_record(None, entries)?;
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        self.entries
            .truncate((first - self.snapshot_index() - 1) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Records a snapshot mark (a snapshot received from the leader, the
    /// node's own, or one recovery repairs): the entries it covers go, the
    /// entries after it stay only if the log holds its `(index, term)`
    /// (Raft paper §7; the server's `LogShape::apply_snapshot`), otherwise
    /// the log restarts after it.
    pub fn mark_snapshot(&mut self, snapshot: Snapshot) {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if self.term(index) == Some(term) {
            let covered = index.saturating_sub(self.snapshot_index()) as usize;
            self.entries.drain(..covered.min(self.entries.len()));
        } else {
            self.entries.clear();
        }
        self.snapshot = Some(snapshot);
    }

    /// Start-up recovery (the server's `recovery::Replay::finish` and
    /// `DiskStorage::open`): a snapshot file newer than the WAL's last mark
    /// is marked now; the hard state stays the last one recorded. Returns
    /// whether a mark was repaired.
    pub fn recover(&mut self) -> bool {
        let Some(file) = self.unmarked_snapshot.take() else {
            return false;
        };
        if file.meta.index <= self.snapshot_index() {
            // Not newer than the recorded snapshot: a stale file, removed.
            return false;
        }
        self.mark_snapshot(file);
        true
    }

    /// What a restarting node is handed (after [`DurableStore::recover`]).
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// How much of a durable write reached the disk when a crash or an IO
/// error interrupted it (the module doc maps each onto the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteCut {
    /// Nothing: the record is torn and cut off by recovery, a snapshot
    /// file never renamed into place.
    Nothing,
    /// The snapshot file the write starts with, not the record referring
    /// to it. For a write without a snapshot file, the same as `Nothing`.
    SnapshotFile,
    /// The whole write; the node never learnt that it was durable.
    Everything,
}

/// An IO error a disk write can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiskErrorKind {
    /// `EIO`: one failed write (the data may or may not have reached the
    /// disk: the fsync may be what failed).
    Eio,
    /// `ENOSPC`: the disk is full until the node is restarted; a write that
    /// does not fit never completes.
    Enospc,
}

impl std::fmt::Display for DiskErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskErrorKind::Eio => "EIO",
            DiskErrorKind::Enospc => "ENOSPC",
        })
    }
}

/// A fault waiting for a node's next durable write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArmedFault {
    /// The process dies in the middle of the next write, leaving `cut`
    /// (`None`: drawn among the outcomes that write can have).
    Crash(Option<WriteCut>),
    /// The process dies after the next snapshot file it writes (received
    /// or its own) is durable, before the record referring to it. Writes
    /// without a snapshot file go through meanwhile.
    CrashAfterSnapshotFile,
    /// The next write fails with this error.
    Error(DiskErrorKind),
}

/// One durable write a node's driver asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Write<'a> {
    /// A `Ready`: the received snapshot's file if any, then one record.
    Ready {
        snapshot: Option<&'a Snapshot>,
        entries: &'a [Entry],
        hard_state: Option<HardState>,
    },
    /// The node's own snapshot: its file, then a record with its mark.
    OwnSnapshot(&'a Snapshot),
}

impl Write<'_> {
    fn snapshot_file(&self) -> Option<&Snapshot> {
        match *self {
            Write::Ready { snapshot, .. } => snapshot,
            Write::OwnSnapshot(s) => Some(s),
        }
    }
}

/// What became of a durable write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteResult {
    /// Durable; the node goes on.
    Done,
    /// The process died during it, leaving `cut` on disk.
    Crashed(WriteCut),
    /// It failed on IO after `cut` reached the disk: the storage is
    /// poisoned and the node halts.
    Failed { kind: DiskErrorKind, cut: WriteCut },
    /// The own snapshot's file could not be written: nothing durable
    /// changed and the node goes on without that snapshot.
    SnapshotFileFailed(DiskErrorKind),
}

impl WriteResult {
    /// What reached the disk.
    pub fn cut(self) -> WriteCut {
        match self {
            WriteResult::Done => WriteCut::Everything,
            WriteResult::Crashed(cut) | WriteResult::Failed { cut, .. } => cut,
            WriteResult::SnapshotFileFailed(_) => WriteCut::Nothing,
        }
    }
}

/// A node's disk: the durable store and the fault armed on it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    pub store: DurableStore,
    pub armed: Option<ArmedFault>,
}

impl Disk {
    pub fn new(store: DurableStore) -> Self {
        Disk { store, armed: None }
    }

    /// Carries out `write`, or the armed fault it meets ([`Disk::decide`],
    /// then [`Disk::apply`]).
    #[cfg(test)]
    pub fn write(&mut self, write: Write, rng: &mut Rng) -> Result<WriteResult, String> {
        let result = self.decide(write, rng)?;
        self.apply(write, result.cut());
        Ok(result)
    }

    /// Decides what becomes of `write`: done, or struck by the armed fault
    /// (which is spent, unless the disk stays full). A write the store
    /// refuses (entries that do not attach) is an error, before any fault
    /// is considered. `rng` draws the cut of a fault that leaves it open.
    /// Changes nothing on disk: the caller applies the result's cut.
    pub fn decide(&mut self, write: Write, rng: &mut Rng) -> Result<WriteResult, String> {
        match write {
            Write::Ready {
                snapshot, entries, ..
            } => self.store.check_record(snapshot, entries)?,
            Write::OwnSnapshot(s) => self.store.check_record(Some(s), &[])?,
        }
        let has_file = write.snapshot_file().is_some();
        let result = match self.armed {
            None => WriteResult::Done,
            Some(ArmedFault::CrashAfterSnapshotFile) if !has_file => WriteResult::Done,
            Some(ArmedFault::CrashAfterSnapshotFile) => {
                WriteResult::Crashed(WriteCut::SnapshotFile)
            }
            Some(ArmedFault::Crash(Some(cut))) => WriteResult::Crashed(cut),
            Some(ArmedFault::Crash(None)) => {
                let cuts: &[WriteCut] = if has_file {
                    &[
                        WriteCut::Nothing,
                        WriteCut::SnapshotFile,
                        WriteCut::Everything,
                    ]
                } else {
                    &[WriteCut::Nothing, WriteCut::Everything]
                };
                WriteResult::Crashed(cuts[rng.range(0, cuts.len() as u64) as usize])
            }
            Some(ArmedFault::Error(kind)) => {
                let whole_possible = kind == DiskErrorKind::Eio;
                let mut cuts = vec![WriteCut::Nothing];
                if has_file {
                    cuts.push(WriteCut::SnapshotFile);
                }
                if whole_possible {
                    cuts.push(WriteCut::Everything);
                }
                let cut = cuts[rng.range(0, cuts.len() as u64) as usize];
                if matches!(write, Write::OwnSnapshot(_)) && cut == WriteCut::Nothing {
                    // The file failed: the server's snapshot thread reports
                    // it, nothing is poisoned.
                    WriteResult::SnapshotFileFailed(kind)
                } else {
                    WriteResult::Failed { kind, cut }
                }
            }
        };
        if result != WriteResult::Done {
            // A full disk stays full; every other fault strikes once.
            if self.armed != Some(ArmedFault::Error(DiskErrorKind::Enospc)) {
                self.armed = None;
            }
        }
        Ok(result)
    }

    /// Puts what `cut` leaves of `write` on disk (validated by
    /// [`Disk::decide`]).
    pub fn apply(&mut self, write: Write, cut: WriteCut) {
        self.apply_observed(write, cut, |_| {});
    }

    /// As [`Disk::apply`], calling `before_entries` with the store as it is
    /// right before a record's entries are appended (after its snapshot
    /// mark), for the checker to judge them against what they attach to.
    pub fn apply_observed(
        &mut self,
        write: Write,
        cut: WriteCut,
        before_entries: impl FnOnce(&DurableStore),
    ) {
        match cut {
            WriteCut::Nothing => {}
            WriteCut::SnapshotFile => {
                if let Some(s) = write.snapshot_file() {
                    self.store.unmarked_snapshot = Some(s.clone());
                }
            }
            WriteCut::Everything => match write {
                Write::Ready {
                    snapshot,
                    entries,
                    hard_state,
                } => {
                    if let Some(s) = snapshot {
                        self.store.mark_snapshot(s.clone());
                    }
                    if let Some(first) = entries.first().map(|e| e.index) {
                        before_entries(&self.store);
                        let keep = first - self.store.snapshot_index() - 1;
                        self.store.entries.truncate(keep as usize);
                        self.store.entries.extend_from_slice(entries);
                    }
                    if let Some(hs) = hard_state {
                        self.store.hard_state = hs;
                    }
                }
                Write::OwnSnapshot(s) => self.store.mark_snapshot(s.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SnapshotMeta;

    fn ents(first: Index, terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .zip(first..)
            .map(|(&term, index)| Entry {
                term,
                index,
                payload: Payload::Noop,
            })
            .collect()
    }

    fn snap(index: Index, term: Term) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership: Membership::default(),
            },
            data: vec![index as u8],
        }
    }

    fn store(terms: &[Term], hs_term: Term, commit: Index) -> DurableStore {
        DurableStore {
            hard_state: HardState {
                term: hs_term,
                vote: 0,
                commit,
            },
            entries: ents(1, terms),
            ..DurableStore::default()
        }
    }

    #[test]
    fn a_mark_keeps_the_tail_only_when_the_log_holds_the_snapshot() {
        let mut keep = store(&[1, 1, 2, 2], 2, 2);
        keep.mark_snapshot(snap(2, 1));
        assert_eq!(keep.entries, ents(3, &[2, 2]));
        let mut drop = store(&[1, 1, 2, 2], 2, 2);
        drop.mark_snapshot(snap(3, 3));
        assert!(drop.entries.is_empty());
        assert_eq!(drop.last_index(), 3);
    }

    #[test]
    fn a_refused_write_changes_nothing_and_spends_no_fault() {
        let mut disk = Disk::new(store(&[1, 1], 1, 1));
        disk.armed = Some(ArmedFault::Crash(Some(WriteCut::Nothing)));
        let gap = ents(5, &[1]);
        let w = Write::Ready {
            snapshot: None,
            entries: &gap,
            hard_state: None,
        };
        assert!(disk.write(w, &mut Rng::new(1)).is_err());
        assert_eq!(disk.store, store(&[1, 1], 1, 1));
        assert!(disk.armed.is_some());
    }

    #[test]
    fn a_crash_after_a_received_snapshot_file_is_repaired_with_the_old_hard_state() {
        let before = store(&[1, 1, 2], 2, 2);
        let mut disk = Disk::new(before.clone());
        disk.armed = Some(ArmedFault::CrashAfterSnapshotFile);
        // A write without a snapshot file goes through.
        let more = ents(4, &[2]);
        let w = Write::Ready {
            snapshot: None,
            entries: &more,
            hard_state: None,
        };
        assert_eq!(disk.write(w, &mut Rng::new(1)), Ok(WriteResult::Done));
        let s = snap(10, 3);
        let hs = HardState {
            term: 4,
            vote: 0,
            commit: 10,
        };
        let w = Write::Ready {
            snapshot: Some(&s),
            entries: &[],
            hard_state: Some(hs),
        };
        assert_eq!(
            disk.write(w, &mut Rng::new(1)),
            Ok(WriteResult::Crashed(WriteCut::SnapshotFile))
        );
        // The WAL is as it was; the file waits for recovery.
        assert_eq!(disk.store.snapshot, None);
        assert!(disk.store.recover());
        assert_eq!(disk.store.snapshot, Some(s));
        assert!(
            disk.store.entries.is_empty(),
            "the log does not hold (10, 3)"
        );
        assert_eq!(disk.store.hard_state, before.hard_state);
        assert!(!disk.store.recover(), "repaired once");
    }

    #[test]
    fn a_full_disk_never_completes_a_record_and_stays_full() {
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let mut disk = Disk::new(store(&[1], 1, 1));
            disk.armed = Some(ArmedFault::Error(DiskErrorKind::Enospc));
            let more = ents(2, &[1]);
            let w = Write::Ready {
                snapshot: None,
                entries: &more,
                hard_state: None,
            };
            assert_eq!(
                disk.write(w, &mut rng),
                Ok(WriteResult::Failed {
                    kind: DiskErrorKind::Enospc,
                    cut: WriteCut::Nothing
                })
            );
            assert_eq!(disk.store, store(&[1], 1, 1));
            assert!(disk.armed.is_some());
        }
    }

    #[test]
    fn eio_can_leave_any_prefix_of_a_snapshot_write() {
        let mut rng = Rng::new(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut disk = Disk::new(store(&[1, 1], 1, 2));
            disk.armed = Some(ArmedFault::Error(DiskErrorKind::Eio));
            let s = snap(2, 1);
            match disk.write(Write::OwnSnapshot(&s), &mut rng) {
                Ok(WriteResult::Failed { cut, .. }) => {
                    seen.insert(format!("{cut:?}"));
                }
                Ok(WriteResult::SnapshotFileFailed(_)) => {
                    assert_eq!(disk.store, store(&[1, 1], 1, 2));
                    seen.insert("file failed".to_string());
                }
                other => panic!("{other:?}"),
            }
            assert!(disk.armed.is_none(), "EIO strikes once");
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
