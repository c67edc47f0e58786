//! DiskStorage against MemoryStorage as the model: random histories of
//! appends (with conflict truncation), hard states, snapshots (the node's own
//! and the leader's), refused calls, reopens and torn last writes must leave
//! both with the same persisted state.

use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;
use raft_core::{
    Command, Entry, HardState, Index, Membership, Op as KvOp, Payload, PersistedState, Snapshot,
    SnapshotMeta, Term,
};
use raft_kv_server::storage::{DiskOptions, DiskStorage, MemoryStorage, Storage, StorageError};

/// One step of a history. Numbers are relative to the model's current log,
/// so that most steps are valid and some are refused on purpose.
#[derive(Debug, Clone)]
enum Step {
    /// Entries starting `back` before the end of the log (0: plain append;
    /// more: conflict truncation, or entries the snapshot already covers).
    Append {
        back: u8,
        len: u8,
        term: Term,
        value_len: u8,
        hard_state: Option<HardState>,
    },
    /// Entries that leave a gap: refused by both.
    Gap,
    HardState(HardState),
    /// The node's own snapshot `back` entries before the end of the log.
    SaveSnapshot {
        back: u8,
    },
    /// A snapshot from the leader `ahead` entries after the current base,
    /// with the log's own term (`matching`) or `term`, plus following entries.
    Install {
        ahead: u8,
        matching: bool,
        term: Term,
        len: u8,
    },
    /// A snapshot older than the stored one: refused by both.
    StaleSnapshot,
    Reopen,
    /// Crash in the middle of the last write: cut it at `cut` (mod its size).
    TearLastWrite {
        cut: u16,
    },
}

fn hard_state() -> impl Strategy<Value = HardState> {
    (0..5u64, 0..4u64, 0..30u64).prop_map(|(term, vote, commit)| HardState { term, vote, commit })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..4u8, 0..5u8, 1..4u64, 0..40u8, proptest::option::of(hard_state())).prop_map(
            |(back, len, term, value_len, hard_state)| Step::Append { back, len, term, value_len, hard_state }
        ),
        1 => Just(Step::Gap),
        2 => hard_state().prop_map(Step::HardState),
        2 => (0..6u8).prop_map(|back| Step::SaveSnapshot { back }),
        2 => (0..8u8, any::<bool>(), 1..5u64, 0..3u8)
            .prop_map(|(ahead, matching, term, len)| Step::Install { ahead, matching, term, len }),
        1 => Just(Step::StaleSnapshot),
        2 => Just(Step::Reopen),
        2 => any::<u16>().prop_map(|cut| Step::TearLastWrite { cut }),
    ]
}

fn entry(index: Index, term: Term, value_len: u8) -> Entry {
    Entry {
        term,
        index,
        payload: Payload::command(Command {
            client_id: 1,
            seq: index,
            op: KvOp::Put {
                key: format!("k{index}"),
                value: "x".repeat(usize::from(value_len)),
            },
        }),
    }
}

fn snapshot(index: Index, term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::new(vec![1, 2, 3]),
        },
        data: format!("state at {index}/{term}").into_bytes(),
    }
}

/// A write that a crash could tear: the bytes `start..end` of `path`, and
/// the model's state before it.
struct LastWrite {
    path: PathBuf,
    start: u64,
    end: u64,
    model_before: MemoryStorage,
}

struct Harness {
    dir: tempfile::TempDir,
    opts: DiskOptions,
    disk: Option<DiskStorage>,
    model: MemoryStorage,
    last_write: Option<LastWrite>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = DiskOptions {
            sync: false,
            segment_bytes: 400,
        };
        let disk = Some(DiskStorage::open(dir.path(), opts).expect("open"));
        Harness {
            dir,
            opts,
            disk,
            model: MemoryStorage::new(),
            last_write: None,
        }
    }

    fn base(&self) -> Index {
        self.model
            .state()
            .snapshot
            .as_ref()
            .map_or(0, |s| s.meta.index)
    }

    fn last(&self) -> Index {
        self.model
            .state()
            .entries
            .last()
            .map_or(self.base(), |e| e.index)
    }

    fn term_at(&self, index: Index) -> Option<Term> {
        let state = self.model.state();
        match &state.snapshot {
            Some(s) if s.meta.index == index => Some(s.meta.term),
            None if index == 0 => Some(0),
            _ => state
                .entries
                .iter()
                .find(|e| e.index == index)
                .map(|e| e.term),
        }
    }

    fn newest_segment(&self) -> (PathBuf, u64) {
        let mut segs: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segs.sort();
        let path = segs.pop().expect("a segment");
        let len = fs::metadata(&path).expect("metadata").len();
        (path, len)
    }

    /// Runs one call on both stores; they must agree on success or refusal.
    fn both(
        &mut self,
        call: impl Fn(&mut dyn Storage) -> Result<(), StorageError>,
        tearable: bool,
    ) -> Result<(), TestCaseError> {
        let before = self.newest_segment();
        let model_before = self.model.clone();
        let want = call(&mut self.model);
        let disk = self.disk.as_mut().expect("open");
        let got = call(disk);
        match (&want, &got) {
            (Ok(()), Ok(())) => {}
            (Err(w), Err(g)) => prop_assert_eq!(kind(w), kind(g), "model {} / disk {}", w, g),
            _ => prop_assert!(false, "model {:?} but disk {:?}", want, got),
        }
        let after = self.newest_segment();
        self.last_write = (tearable && want.is_ok() && after.0 == before.0 && after.1 > before.1)
            .then_some(LastWrite {
                path: after.0,
                start: before.1,
                end: after.1,
                model_before,
            });
        Ok(())
    }

    fn reopen_and_compare(&mut self) -> Result<(), TestCaseError> {
        self.disk = None;
        let mut disk = DiskStorage::open(self.dir.path(), self.opts)
            .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        let got = disk
            .load()
            .map_err(|e| TestCaseError::fail(format!("load: {e}")))?;
        let want: &PersistedState = self.model.state();
        prop_assert_eq!(&got, want);
        self.disk = Some(disk);
        self.last_write = None;
        Ok(())
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let (base, last) = (self.base(), self.last());
        match *step {
            Step::Append {
                back,
                len,
                term,
                value_len,
                hard_state,
            } => {
                let first = (last + 1).saturating_sub(u64::from(back)).max(1);
                let entries: Vec<Entry> = (first..first + u64::from(len))
                    .map(|i| entry(i, term, value_len))
                    .collect();
                self.both(|s| s.persist(None, &entries, hard_state), true)
            }
            Step::Gap => {
                let entries = [entry(last + 2, 1, 0)];
                self.both(|s| s.persist(None, &entries, None), true)
            }
            Step::HardState(hs) => self.both(|s| s.persist(None, &[], Some(hs)), true),
            Step::SaveSnapshot { back } => {
                let index = last.saturating_sub(u64::from(back)).max(base);
                let term = self.term_at(index).unwrap_or(1);
                let snap = snapshot(index, term);
                self.both(|s| s.save_snapshot(&snap), false)
            }
            Step::Install {
                ahead,
                matching,
                term,
                len,
            } => {
                let index = base + u64::from(ahead);
                let term = match self.term_at(index) {
                    Some(t) if matching => t,
                    _ => term,
                };
                let snap = snapshot(index, term);
                let entries: Vec<Entry> = (index + 1..=index + u64::from(len))
                    .map(|i| entry(i, term, 3))
                    .collect();
                let hs = HardState {
                    term,
                    vote: 0,
                    commit: index,
                };
                self.both(|s| s.persist(Some(&snap), &entries, Some(hs)), false)
            }
            Step::StaleSnapshot => match base.checked_sub(1) {
                Some(older) if self.model.state().snapshot.is_some() => {
                    let snap = snapshot(older, 1);
                    self.both(|s| s.save_snapshot(&snap), false)
                }
                _ => Ok(()),
            },
            Step::Reopen => self.reopen_and_compare(),
            Step::TearLastWrite { cut } => {
                let Some(w) = self.last_write.take() else {
                    return Ok(());
                };
                self.disk = None;
                let at = w.start + u64::from(cut) % (w.end - w.start);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&w.path)
                    .and_then(|f| f.set_len(at))
                    .map_err(|e| TestCaseError::fail(format!("truncate: {e}")))?;
                self.model = w.model_before;
                self.reopen_and_compare()
            }
        }
    }
}

/// The variant of an error, to compare refusals across the two stores.
fn kind(e: &StorageError) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn check(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    for step in steps {
        h.run(step)?;
    }
    h.reopen_and_compare()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn disk_storage_matches_the_memory_model(steps in proptest::collection::vec(step(), 1..60)) {
        check(&steps)?;
    }
}

#[test]
fn a_long_history_with_many_compactions() {
    // Deterministic companion of the property: thousands of steps through many
    // segments, snapshots and reopens.
    let mut h = Harness::new();
    for i in 0..3000u64 {
        let step = match i % 50 {
            49 => Step::Reopen,
            17 => Step::SaveSnapshot {
                back: (i % 5) as u8,
            },
            33 => Step::Append {
                back: 2,
                len: 3,
                term: 1 + i / 100,
                value_len: 9,
                hard_state: None,
            },
            41 => Step::TearLastWrite { cut: i as u16 },
            _ => Step::Append {
                back: 0,
                len: 1 + (i % 3) as u8,
                term: 1 + i / 100,
                value_len: (i % 30) as u8,
                hard_state: Some(HardState {
                    term: 1 + i / 100,
                    vote: 1,
                    commit: i / 2,
                }),
            },
        };
        if let Err(e) = h.run(&step) {
            panic!("step {i} ({step:?}): {e}");
        }
    }
    h.reopen_and_compare().expect("final state");
    let segments = fs::read_dir(h.dir.path()).expect("list").count();
    assert!(
        segments < 20,
        "compaction keeps the directory small: {segments} files"
    );
}
