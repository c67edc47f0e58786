//! Start-up recovery: rebuilds the persisted state from the newest snapshot
//! file and the WAL, and says what must be repaired (a torn tail to cut off,
//! a snapshot mark to write) without changing any file itself.
//!
//! Replay model. The WAL is a sequence of `Ready` records, each: an optional
//! snapshot mark, then entries, then an optional hard state. Replaying them in
//! order rebuilds the log exactly when the WAL starts at segment 1. After
//! compaction it starts later; then the segments before the newest snapshot
//! mark may miss entries that compaction dropped (all of them covered by that
//! mark), so before the last mark the replay only keeps what it saw, and the
//! state after the last mark — the one that counts — is exact. Compaction never
//! drops the segment holding the newest mark, so a WAL that does not start at
//! segment 1 and holds no mark has lost segments.

use std::path::{Path, PathBuf};

use raft_core::{Entry, HardState, Index, PersistedState, Snapshot, Term};

use super::error::StorageError;
use super::layout::{self, segment_name, snapshot_name};
use super::record::{Record, SnapshotMark};
use super::snapshot_file;
use super::wal;

/// What recovery learnt about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub seq: u64,
    pub path: PathBuf,
    /// The highest log index written in it (entries and snapshot marks): the
    /// segment is covered by any snapshot at or above this index.
    pub max_index: Index,
    /// Whether it holds a snapshot mark.
    pub has_mark: bool,
}

/// An existing data directory, recovered.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub state: PersistedState,
    /// All segments, ascending; never empty.
    pub segments: Vec<SegmentMeta>,
    /// How the last segment ends: its valid length (a torn tail when the
    /// file is longer), its salt and its number of records, to append after.
    pub last: wal::ScanEnd,
    /// A snapshot file newer than the WAL's last mark (a crash between saving
    /// the file and writing the mark): the mark to write.
    pub repair: Option<SnapshotMark>,
    /// Files to remove: leftovers of interrupted writes, older snapshots.
    pub stale: Vec<PathBuf>,
}

/// What a data directory holds.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing of ours (maybe leftovers of an interrupted first write).
    Fresh { stale: Vec<PathBuf> },
    /// A node's state.
    Existing(Box<Recovered>),
}

/// Reads the data directory `dir`.
pub(crate) fn recover(dir: &Path) -> Result<Found, StorageError> {
    let listing = layout::list(dir)?;
    let mut stale = listing.temps;
    let Some((&(first_seq, _), &(last_seq, _))) =
        listing.segments.first().zip(listing.segments.last())
    else {
        return match listing.snapshots.last() {
            None => Ok(Found::Fresh { stale }),
            Some((index, _)) => Err(StorageError::MissingSegment {
                path: dir.join(segment_name(1)),
                reason: format!("snapshot {index} exists but there is no WAL"),
            }),
        };
    };
    for pair in listing.segments.windows(2) {
        if pair[0].0.checked_add(1) != Some(pair[1].0) {
            return Err(StorageError::MissingSegment {
                path: dir.join(segment_name(pair[0].0.saturating_add(1))),
                reason: format!(
                    "the WAL jumps from segment {} to segment {}",
                    pair[0].0, pair[1].0
                ),
            });
        }
    }
    let snapshot = match listing.snapshots.split_last() {
        Some(((index, path), older)) => {
            let snap = snapshot_file::read(path, *index)?;
            stale.extend(older.iter().map(|(_, p)| p.clone()));
            Some(snap)
        }
        None => None,
    };

    let mut replay = Replay::new(first_seq == 1);
    let mut segments = Vec::with_capacity(listing.segments.len());
    let mut end = None;
    for (seq, path) in &listing.segments {
        let mut meta = SegmentMeta {
            seq: *seq,
            path: path.clone(),
            max_index: 0,
            has_mark: false,
        };
        let scanned = wal::scan(path, *seq, *seq == last_seq, |offset, record| {
            let (max, mark) = replay.apply(path, offset, record)?;
            meta.max_index = meta.max_index.max(max);
            meta.has_mark |= mark;
            Ok(())
        })?;
        segments.push(meta);
        end = Some(scanned);
    }
    let Some(last) = end else {
        return Err(StorageError::MissingSegment {
            path: dir.join(segment_name(first_seq)),
            reason: "no segment was read".into(),
        });
    };
    let (state, repair) = replay.finish(dir, first_seq, snapshot)?;
    Ok(Found::Existing(Box::new(Recovered {
        state,
        segments,
        last,
        repair,
        stale,
    })))
}

/// The log being rebuilt.
struct Replay {
    /// The WAL starts at segment 1, so the whole history is present and the
    /// log must start at index 1 or right after a snapshot mark.
    complete: bool,
    /// The snapshot base; unknown until the first mark when not `complete`.
    base: Option<(Index, Term)>,
    /// Consecutive entries after the base.
    entries: Vec<Entry>,
    hard_state: HardState,
    last_mark: Option<SnapshotMark>,
}

impl Replay {
    fn new(complete: bool) -> Self {
        Replay {
            complete,
            base: complete.then_some((0, 0)),
            entries: Vec::new(),
            hard_state: HardState::default(),
            last_mark: None,
        }
    }

    /// Applies one record; returns the highest index it mentions and whether
    /// it holds a snapshot mark.
    fn apply(
        &mut self,
        path: &Path,
        offset: u64,
        record: Record,
    ) -> Result<(Index, bool), StorageError> {
        let corrupt = |reason: String| StorageError::corrupt(path, offset, reason);
        let Record::Ready {
            snapshot,
            entries,
            hard_state,
        } = record;
        let mut max = 0;
        if let Some(mark) = snapshot {
            if let Some(prev) = self.last_mark.filter(|p| p.index > mark.index) {
                return Err(corrupt(format!(
                    "snapshot mark at index {} follows a mark at index {}",
                    mark.index, prev.index
                )));
            }
            if mark.keep_tail {
                let covered = self.entries.partition_point(|e| e.index <= mark.index);
                self.entries.drain(..covered);
            } else {
                self.entries.clear();
            }
            self.base = Some((mark.index, mark.term));
            self.last_mark = Some(mark);
            max = mark.index;
        }
        if let Some(last) = entries.last() {
            max = max.max(last.index);
        }
        self.append(entries).map_err(corrupt)?;
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        Ok((max, snapshot.is_some()))
    }

    fn append(&mut self, mut batch: Vec<Entry>) -> Result<(), String> {
        for pair in batch.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(format!(
                    "entries are not consecutive: index {} follows index {}",
                    pair[1].index, pair[0].index
                ));
            }
        }
        if let Some((base, _)) = self.base {
            let covered = batch.partition_point(|e| e.index <= base);
            batch.drain(..covered);
        }
        let Some(first) = batch.first().map(|e| e.index) else {
            return Ok(());
        };
        let last = self
            .entries
            .last()
            .map(|e| e.index)
            .or(self.base.filter(|_| self.complete).map(|b| b.0));
        if let Some(last) = last.filter(|&l| first > l.saturating_add(1)) {
            return Err(format!("log gap: entry {first} follows entry {last}"));
        }
        match self.entries.first().map(|e| e.index) {
            Some(start) if first >= start => {
                // `first - start <= len` by the gap check above.
                self.entries.truncate((first - start) as usize);
                self.entries.extend(batch);
            }
            _ => self.entries = batch,
        }
        Ok(())
    }

    fn term_at(&self, index: Index) -> Option<Term> {
        if let Some((_, term)) = self.base.filter(|b| b.0 == index) {
            return Some(term);
        }
        let start = self.entries.first()?.index;
        let at = usize::try_from(index.checked_sub(start)?).ok()?;
        self.entries.get(at).map(|e| e.term)
    }

    /// Checks the replayed log against the snapshot file and returns the
    /// state plus the snapshot mark to write if the file is newer than the
    /// WAL's last mark.
    fn finish(
        mut self,
        dir: &Path,
        first_seq: u64,
        snapshot: Option<Snapshot>,
    ) -> Result<(PersistedState, Option<SnapshotMark>), StorageError> {
        let before_first = || dir.join(segment_name(first_seq.saturating_sub(1)));
        let Some(base) = self.base else {
            return Err(StorageError::MissingSegment {
                path: before_first(),
                reason: format!(
                    "the WAL starts at segment {first_seq} and holds no snapshot mark, so the \
                     segments before it are still needed"
                ),
            });
        };
        if let Some(first) = self
            .entries
            .first()
            .filter(|e| e.index != base.0.saturating_add(1))
        {
            return Err(StorageError::MissingSegment {
                path: before_first(),
                reason: format!(
                    "the log after the snapshot at index {} resumes only at index {}",
                    base.0, first.index
                ),
            });
        }
        let mut repair = None;
        match (&snapshot, self.last_mark) {
            (None, None) => {}
            (None, Some(mark)) => {
                return Err(StorageError::MissingSnapshot {
                    path: dir.join(snapshot_name(mark.index)),
                    reason: format!("the WAL records a snapshot at index {}", mark.index),
                })
            }
            (Some(snap), _) => {
                let (index, term) = (snap.meta.index, snap.meta.term);
                let path = || dir.join(snapshot_name(index));
                if base.0 > index {
                    return Err(StorageError::MissingSnapshot {
                        path: dir.join(snapshot_name(base.0)),
                        reason: format!(
                            "the WAL records a snapshot at index {} but the newest snapshot \
                             file is at index {index}",
                            base.0
                        ),
                    });
                } else if base.0 == index && base.1 != term {
                    return Err(StorageError::corrupt(
                        &path(),
                        0,
                        format!(
                            "the snapshot at index {index} has term {term} but the WAL records term {}",
                            base.1
                        ),
                    ));
                } else if base.0 < index {
                    let keep_tail = self.term_at(index) == Some(term);
                    let covered = self.entries.partition_point(|e| e.index <= index);
                    if keep_tail {
                        self.entries.drain(..covered);
                    } else {
                        self.entries.clear();
                    }
                    repair = Some(SnapshotMark {
                        index,
                        term,
                        keep_tail,
                    });
                }
            }
        }
        Ok((
            PersistedState {
                hard_state: self.hard_state,
                snapshot,
                entries: self.entries,
            },
            repair,
        ))
    }
}
