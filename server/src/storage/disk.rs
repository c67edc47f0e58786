//! [`DiskStorage`]: the WAL and snapshot files of one data directory.
//!
//! Write path of `persist`: validate (nothing written if refused); write the
//! snapshot file if any; append the whole `Ready` as one WAL record and fsync
//! once; then, after a snapshot, compact. In memory it keeps only the log's
//! outline ([`LogShape`]) and per-segment metadata, never the entries.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use raft_core::{Entry, HardState, Index, PersistedState, Snapshot};

use super::error::{io_err, StorageError};
use super::layout::{self, remove_durably, sync_dir, LOCK_FILE};
use super::log_shape::LogShape;
use super::record::{encode_frame, RecordRef, SnapshotMark};
use super::recovery::{recover, Found, SegmentMeta};
use super::snapshot_file;
use super::wal::{self, SegmentWriter};
use super::{DiskOptions, SnapshotWriter, Storage};

/// A node's storage in a data directory.
pub struct DiskStorage {
    dir: PathBuf,
    opts: DiskOptions,
    /// Holds the directory's lock while open.
    _lock: File,
    active: SegmentWriter,
    /// Every segment, ascending; the last one is `active`.
    segments: VecDeque<SegmentMeta>,
    log: LogShape,
    has_snapshot: bool,
    hard_state: HardState,
    /// What `open` recovered, handed out by a `load` before any write.
    recovered: Option<PersistedState>,
    /// The first IO failure; once set, every call fails.
    poisoned: Option<String>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// Removes compacted files off the caller's thread, when set up
    /// ([`DiskStorage::remove_in_background`]).
    remover: Option<Remover>,
}

impl DiskStorage {
    /// Opens (or creates) the data directory `dir`: locks it, recovers its
    /// state (cutting off a torn WAL tail, refusing corruption) and finishes
    /// any compaction a crash interrupted.
    pub fn open(dir: &Path, opts: DiskOptions) -> Result<DiskStorage, StorageError> {
        create_dir(dir, opts.sync)?;
        let lock = lock(dir)?;
        match recover(dir)? {
            Found::Fresh { stale } => {
                for path in &stale {
                    remove_durably(dir, path, opts.sync)?;
                }
                let hard_state = HardState::default();
                let active =
                    SegmentWriter::create(dir, 1, &mut opening_record(hard_state)?, opts.sync)?;
                Ok(DiskStorage {
                    dir: dir.to_path_buf(),
                    opts,
                    _lock: lock,
                    segments: VecDeque::from([meta_of(&active)]),
                    active,
                    log: LogShape::default(),
                    has_snapshot: false,
                    hard_state,
                    recovered: Some(PersistedState::default()),
                    poisoned: None,
                    buf: Vec::new(),
                    remover: None,
                })
            }
            Found::Existing(r) => {
                let mut segments = VecDeque::from(r.segments);
                let last = segments
                    .back()
                    .ok_or_else(|| StorageError::MissingSegment {
                        path: dir.to_path_buf(),
                        reason: "recovery returned no segment".into(),
                    })?;
                if r.last.file_len > r.last.valid_len {
                    wal::truncate(&last.path, r.last.valid_len, opts.sync)?;
                }
                let active = SegmentWriter::open(&last.path, last.seq, &r.last, opts.sync)?;
                let snap_base = r
                    .state
                    .snapshot
                    .as_ref()
                    .map(|s| (s.meta.index, s.meta.term));
                let mut store = DiskStorage {
                    dir: dir.to_path_buf(),
                    opts,
                    _lock: lock,
                    active,
                    segments: std::mem::take(&mut segments),
                    log: LogShape::new(snap_base.unwrap_or((0, 0)), &r.state.entries),
                    has_snapshot: snap_base.is_some(),
                    hard_state: r.state.hard_state,
                    recovered: Some(r.state),
                    poisoned: None,
                    buf: Vec::new(),
                    remover: None,
                };
                if let Some(mark) = r.repair {
                    // The snapshot file is newer than the WAL: record it, so
                    // that entries appended from now on attach to it.
                    store.append_record(Some(mark), &[], None)?;
                }
                for path in &r.stale {
                    remove_durably(dir, path, opts.sync)?;
                }
                if let Some((index, _)) = snap_base {
                    store.compact(index)?;
                }
                Ok(store)
            }
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `op` unless the store is poisoned, and poisons it if `op` fails
    /// on IO: after a failed write the files are in an unknown state, so no
    /// later call may report success.
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Some(cause) = &self.poisoned {
            return Err(StorageError::Poisoned {
                cause: cause.clone(),
            });
        }
        let result = op(self);
        if let Err(e) = &result {
            if e.poisons() {
                tracing::error!(dir = %self.dir.display(), error = %e, "storage write failed; refusing further writes");
                self.poisoned = Some(e.to_string());
            }
        }
        result
    }

    fn persist_inner(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        if let Some(s) = snapshot {
            self.check_not_older(s)?;
        }
        let plan = self
            .log
            .plan(snapshot.map(|s| (s.meta.index, s.meta.term)), entries)?;
        let entries = &entries[plan.skip..];
        let mark = snapshot.map(|s| SnapshotMark {
            index: s.meta.index,
            term: s.meta.term,
            keep_tail: plan.keep_tail,
        });
        if mark.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        // What `open` recovered is out of date from now on.
        self.recovered = None;
        if let Some(s) = snapshot {
            // The file must be durable before the WAL refers to it.
            snapshot_file::write(&self.dir, s, self.opts.sync)?;
        }
        self.append_record(mark, entries, hard_state)?;
        if let Some(mark) = mark {
            self.compact(mark.index)?;
        }
        Ok(())
    }

    /// Refuses a snapshot older than the one stored.
    fn check_not_older(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let current = self.log.base().0;
        if self.has_snapshot && snapshot.meta.index < current {
            return Err(StorageError::SnapshotOutOfDate {
                index: snapshot.meta.index,
                current,
            });
        }
        Ok(())
    }

    /// Refers the WAL to a snapshot file already written durably (by a
    /// [`SnapshotWriter`]) and compacts.
    fn record_inner(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.check_not_older(snapshot)?;
        let plan = self
            .log
            .plan(Some((snapshot.meta.index, snapshot.meta.term)), &[])?;
        let mark = SnapshotMark {
            index: snapshot.meta.index,
            term: snapshot.meta.term,
            keep_tail: plan.keep_tail,
        };
        self.recovered = None;
        self.append_record(Some(mark), &[], None)?;
        self.compact(mark.index)
    }

    /// Appends one `Ready` record (validated by the caller) durably and
    /// updates the in-memory outline.
    fn append_record(
        &mut self,
        mark: Option<SnapshotMark>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        self.buf.clear();
        let record = RecordRef::Ready {
            snapshot: mark,
            entries,
            hard_state,
        };
        encode_frame(&mut self.buf, &record)?;
        if self.must_roll(mark.map(|m| m.index)) {
            self.roll()?;
        }
        self.active.append(&mut self.buf)?;

        if let Some(m) = mark {
            self.log.apply_snapshot(m.index, m.term);
            self.has_snapshot = true;
        }
        self.log.append(entries);
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        if let Some(meta) = self.segments.back_mut() {
            let top = entries.last().map(|e| e.index).into_iter();
            meta.max_index = top
                .chain(mark.map(|m| m.index))
                .fold(meta.max_index, Index::max);
            meta.has_mark |= mark.is_some();
        }
        Ok(())
    }

    /// Whether to start a new segment before appending: the active one is
    /// full, or a snapshot at `covers` will cover all of its log records (so
    /// that compaction can delete it once it is no longer active).
    fn must_roll(&self, covers: Option<Index>) -> bool {
        if self.active.len() >= self.opts.segment_bytes {
            return true;
        }
        match (covers, self.segments.back()) {
            (Some(index), Some(meta)) => {
                let has_log_records = meta.max_index > 0 || meta.has_mark;
                has_log_records && meta.max_index <= index
            }
            _ => false,
        }
    }

    /// Starts the next segment. Its first record is the current hard state,
    /// so that deleting older segments never loses the hard state.
    fn roll(&mut self) -> Result<(), StorageError> {
        let mut first = opening_record(self.hard_state)?;
        let next = self.active.seq().checked_add(1).ok_or_else(|| {
            StorageError::corrupt(self.active.path(), 0, "no segment number follows this one")
        })?;
        self.active = SegmentWriter::create(&self.dir, next, &mut first, self.opts.sync)?;
        self.segments.push_back(meta_of(&self.active));
        Ok(())
    }

    /// Deletes, oldest first, the segments a snapshot at `index` covers, and
    /// older snapshot files. Stops at the segment holding the newest
    /// snapshot mark: recovery needs that mark, and the segments after it.
    fn compact(&mut self, index: Index) -> Result<(), StorageError> {
        let newest_mark = self.segments.iter().rposition(|s| s.has_mark).unwrap_or(0);
        let deletable = self
            .segments
            .iter()
            .take(newest_mark)
            .take_while(|s| s.max_index <= index)
            .count();
        for _ in 0..deletable {
            if let Some(seg) = self.segments.front() {
                self.remove(&seg.path)?;
                tracing::debug!(segment = %seg.path.display(), snapshot = index, "compacted WAL segment");
            }
            self.segments.pop_front();
        }
        for (older, path) in layout::list(&self.dir)?.snapshots {
            if older < index {
                self.remove(&path)?;
            }
        }
        Ok(())
    }

    /// Removes a file compaction no longer needs, durably, here or on the
    /// remover's thread (in the same order: segments oldest first).
    fn remove(&self, path: &Path) -> Result<(), StorageError> {
        match &self.remover {
            Some(r) if r.tx.send(path.to_path_buf()).is_ok() => Ok(()),
            _ => remove_durably(&self.dir, path, self.opts.sync),
        }
    }

    /// From now on compaction's file removals (each an unlink and a
    /// directory fsync; tens of milliseconds for a few large segments)
    /// happen on a thread of their own, in the same order, instead of
    /// holding up the caller (the Raft loop). Safe because a removal is
    /// only housekeeping: a file compaction dropped is never read again,
    /// recovery already finishes a compaction a crash interrupted (segments
    /// and snapshot files covered by the newest snapshot are removed at
    /// `open`), and the removals stay in order, oldest segment first, each
    /// durable before the next, so a crash leaves the segments contiguous.
    /// Dropping the store waits for the removals queued.
    pub fn remove_in_background(&mut self) -> std::io::Result<()> {
        if self.remover.is_none() {
            self.remover = Some(Remover::start(self.dir.clone(), self.opts.sync)?);
        }
        Ok(())
    }

    /// Stops removing in the background: waits for the removals queued;
    /// later ones happen on the caller's thread again.
    pub fn stop_background_removal(&mut self) {
        if let Some(r) = self.remover.take() {
            r.finish();
        }
    }
}

/// The thread that removes compacted files for a [`DiskStorage`].
struct Remover {
    tx: std::sync::mpsc::Sender<PathBuf>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Remover {
    fn start(dir: PathBuf, sync: bool) -> std::io::Result<Remover> {
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let thread = std::thread::Builder::new()
            .name("wal-remover".into())
            .spawn(move || {
                for path in rx {
                    // Queued twice (listed again by a later compaction
                    // before its turn came): gone already.
                    if !path.exists() {
                        continue;
                    }
                    if let Err(e) = remove_durably(&dir, &path, sync) {
                        // Left behind: the next start removes it.
                        tracing::warn!("cannot remove the compacted file {}: {e}", path.display());
                    }
                }
            })?;
        Ok(Remover {
            tx,
            thread: Some(thread),
        })
    }

    /// Closes the queue and waits for the removals in it.
    fn finish(mut self) {
        self.join();
    }

    fn join(&mut self) {
        let (tx, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        self.join();
    }
}

impl Storage for DiskStorage {
    fn load(&mut self) -> Result<PersistedState, StorageError> {
        self.guarded(|s| match s.recovered.take() {
            Some(state) => Ok(state),
            // A second call: read everything again (nothing to repair now).
            None => match recover(&s.dir)? {
                Found::Existing(r) => Ok(r.state),
                Found::Fresh { .. } => Ok(PersistedState::default()),
            },
        })
    }

    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        self.guarded(|s| s.persist_inner(snapshot, entries, hard_state))
    }

    fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            dir: Some(self.dir.clone()),
            sync: self.opts.sync,
        }
    }

    fn record_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let result = self.guarded(|s| s.record_inner(snapshot));
        if let Err(StorageError::SnapshotOutOfDate { .. }) = &result {
            // Written while a newer snapshot from the leader was stored:
            // never referenced by the WAL, so just a stray file.
            let path = self.dir.join(layout::snapshot_name(snapshot.meta.index));
            if let Err(e) = remove_durably(&self.dir, &path, self.opts.sync) {
                tracing::warn!(file = %path.display(), "cannot remove an out-of-date snapshot: {e}");
            }
        }
        result
    }
}

impl fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStorage")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("segments", &self.segments.len())
            .field("active", &self.active.path())
            .field("log", &self.log)
            .field("hard_state", &self.hard_state)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The record a new segment starts with (its frame, sealed by the segment).
fn opening_record(hard_state: HardState) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    let record = RecordRef::Ready {
        snapshot: None,
        entries: &[],
        hard_state: Some(hard_state),
    };
    encode_frame(&mut buf, &record)?;
    Ok(buf)
}

fn meta_of(segment: &SegmentWriter) -> SegmentMeta {
    SegmentMeta {
        seq: segment.seq(),
        path: segment.path().to_path_buf(),
        max_index: 0,
        has_mark: false,
    }
}

/// Creates `dir` if needed, durably (its parent's entry is fsynced).
fn create_dir(dir: &Path, sync: bool) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent, sync)
}

/// Takes the directory's lock, so that two stores never write one WAL.
fn lock(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(io_err(&path, "lock")(e)),
    }
}
