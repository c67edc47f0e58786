//! [`MemoryStorage`]: the storage rules on plain in-memory values. Tests use
//! it as a node's storage ("restart" = clone it and `load`) and as the model
//! the disk store must agree with, so it is written independently of the
//! disk store's code and as plainly as possible.

use raft_core::{Entry, HardState, Index, PersistedState, Snapshot, Term};

use super::{SnapshotWriter, Storage, StorageError};

/// Keeps the persisted state in memory. Cloning it is a crash-free "restart".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStorage {
    state: PersistedState,
}

impl MemoryStorage {
    /// An empty store (a fresh node).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `state`, as if a node had persisted it.
    pub fn from_state(state: PersistedState) -> Self {
        MemoryStorage { state }
    }

    /// What is stored.
    pub fn state(&self) -> &PersistedState {
        &self.state
    }

    fn snapshot_index(&self) -> Index {
        self.state.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn last_index(&self) -> Index {
        self.state
            .entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The term at `index`, if the snapshot (or, without one, the empty log's
    /// index 0) or an entry holds it.
    fn term_at(&self, index: Index) -> Option<Term> {
        match &self.state.snapshot {
            Some(s) if s.meta.index == index => return Some(s.meta.term),
            None if index == 0 => return Some(0),
            _ => {}
        }
        self.state
            .entries
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.term)
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<PersistedState, StorageError> {
        Ok(self.state.clone())
    }

    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), StorageError> {
        // Check everything first, so that a refused call changes nothing.
        let mut keep_tail = false;
        let (base, last) = match snapshot {
            Some(s) => {
                if self.state.snapshot.is_some() && s.meta.index < self.snapshot_index() {
                    return Err(StorageError::SnapshotOutOfDate {
                        index: s.meta.index,
                        current: self.snapshot_index(),
                    });
                }
                keep_tail = self.term_at(s.meta.index) == Some(s.meta.term);
                let last = if keep_tail {
                    self.last_index()
                } else {
                    s.meta.index
                };
                (s.meta.index, last)
            }
            None => (self.snapshot_index(), self.last_index()),
        };
        for pair in entries.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(StorageError::BatchNotContiguous {
                    prev: pair[0].index,
                    got: pair[1].index,
                });
            }
        }
        let new: Vec<&Entry> = entries.iter().filter(|e| e.index > base).collect();
        if let Some(first) = new.first() {
            if first.index > last.saturating_add(1) {
                return Err(StorageError::LogGap {
                    first: first.index,
                    last,
                });
            }
        }

        if let Some(s) = snapshot {
            if keep_tail {
                self.state.entries.retain(|e| e.index > s.meta.index);
            } else {
                self.state.entries.clear();
            }
            self.state.snapshot = Some(s.clone());
        }
        if let Some(first) = new.first() {
            self.state.entries.retain(|e| e.index < first.index);
            self.state.entries.extend(new.into_iter().cloned());
        }
        if let Some(hs) = hard_state {
            self.state.hard_state = hs;
        }
        Ok(())
    }

    fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            dir: None,
            sync: false,
        }
    }

    fn record_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.persist(Some(snapshot), &[], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::SnapshotMeta;

    use crate::storage::test_entries as ents;

    fn snap(index: Index, term: Term) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                ..SnapshotMeta::default()
            },
            data: vec![1, 2, 3],
        }
    }

    fn stored(entries: &[Entry]) -> Vec<(Index, Term)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn append_truncates_conflicts_and_keeps_the_hard_state() {
        let mut m = MemoryStorage::new();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 1,
        };
        m.persist(None, &ents(1, &[1, 1, 1]), Some(hs))
            .expect("append");
        m.persist(None, &ents(2, &[2]), None).expect("conflict");
        let state = m.clone().load().expect("load");
        assert_eq!(stored(&state.entries), [(1, 1), (2, 2)]);
        assert_eq!(state.hard_state, hs);
    }

    #[test]
    fn snapshots_keep_a_matching_tail_only() {
        let mut m = MemoryStorage::new();
        m.persist(None, &ents(1, &[1, 1, 2, 2]), None)
            .expect("append");
        m.save_snapshot(&snap(2, 1)).expect("own snapshot");
        assert_eq!(stored(&m.state().entries), [(3, 2), (4, 2)]);
        m.persist(Some(&snap(3, 9)), &ents(3, &[9, 9]), None)
            .expect("leader snapshot");
        assert_eq!(stored(&m.state().entries), [(4, 9)]);
        assert_eq!(m.state().snapshot, Some(snap(3, 9)));
    }

    #[test]
    fn refused_calls_change_nothing() {
        let mut m = MemoryStorage::new();
        m.persist(Some(&snap(5, 1)), &ents(6, &[1]), None)
            .expect("setup");
        let before = m.clone();
        assert!(matches!(
            m.save_snapshot(&snap(4, 1)),
            Err(StorageError::SnapshotOutOfDate {
                index: 4,
                current: 5
            })
        ));
        assert!(matches!(
            m.persist(None, &ents(8, &[1]), None),
            Err(StorageError::LogGap { first: 8, last: 6 })
        ));
        let mut broken = ents(7, &[1, 1]);
        broken[1].index = 9;
        assert!(matches!(
            m.persist(None, &broken, None),
            Err(StorageError::BatchNotContiguous { prev: 7, got: 9 })
        ));
        assert_eq!(m, before);
        m.persist(None, &ents(3, &[1, 1, 1, 1, 2]), None)
            .expect("covered entries are skipped");
        assert_eq!(stored(&m.state().entries), [(6, 1), (7, 2)]);
    }
}
