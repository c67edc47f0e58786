//! What the disk store remembers about its log without keeping the entries:
//! where it starts (the snapshot base), where it ends, and the term of every
//! index as runs of equal terms. That is enough to validate an append and to
//! decide whether a snapshot keeps the entries after it, in memory bounded by
//! the number of term changes rather than the number of entries.

use raft_core::{Entry, Index, Term};

use super::error::StorageError;

/// The stored log's outline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogShape {
    /// The snapshot base `(index, term)`; `(0, 0)` before any snapshot.
    base: (Index, Term),
    /// The last stored index (`base.0` when no entry follows the base).
    last: Index,
    /// `(first index, term)` of each run of equal terms in `base.0+1..=last`,
    /// ascending.
    runs: Vec<(Index, Term)>,
}

/// What one `persist` will do, decided before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendPlan {
    /// For a snapshot: whether the entries after it stay.
    pub keep_tail: bool,
    /// How many leading entries the snapshot base already covers (skipped).
    pub skip: usize,
}

impl LogShape {
    /// The shape of a log that starts after `base` and holds `entries`
    /// (consecutive, starting at `base.0 + 1`).
    pub(crate) fn new(base: (Index, Term), entries: &[Entry]) -> Self {
        let mut shape = LogShape {
            base,
            last: base.0,
            runs: Vec::new(),
        };
        shape.append(entries);
        shape
    }

    pub(crate) fn base(&self) -> (Index, Term) {
        self.base
    }

    #[cfg(test)]
    pub(crate) fn last(&self) -> Index {
        self.last
    }

    /// The term of the entry at `index`, if the log (or its base) holds it.
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        if index < self.base.0 || index > self.last {
            return None;
        }
        let run = self.runs.partition_point(|&(first, _)| first <= index);
        run.checked_sub(1).map(|r| self.runs[r].1)
    }

    /// Validates one `persist` (a snapshot `(index, term)`, then `entries`)
    /// without changing anything, so that a rejected call writes nothing.
    pub(crate) fn plan(
        &self,
        snapshot: Option<(Index, Term)>,
        entries: &[Entry],
    ) -> Result<AppendPlan, StorageError> {
        let mut after = self.clone();
        let keep_tail = match snapshot {
            Some((index, term)) => after.apply_snapshot(index, term),
            None => false,
        };
        let skip = after.check_append(entries)?;
        Ok(AppendPlan { keep_tail, skip })
    }

    /// Checks that `entries` are consecutive and attach to the log once the
    /// ones the base covers are skipped; returns how many to skip.
    fn check_append(&self, entries: &[Entry]) -> Result<usize, StorageError> {
        for pair in entries.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(StorageError::BatchNotContiguous {
                    prev: pair[0].index,
                    got: pair[1].index,
                });
            }
        }
        let skip = entries.partition_point(|e| e.index <= self.base.0);
        match entries.get(skip) {
            Some(first) if first.index > self.last.saturating_add(1) => Err(StorageError::LogGap {
                first: first.index,
                last: self.last,
            }),
            _ => Ok(skip),
        }
    }

    /// Applies a snapshot at `(index, term)`: entries up to `index` go; the
    /// entries after it stay only if the log holds `(index, term)` (Raft paper
    /// §7), otherwise the log restarts at `index + 1`. Returns whether they
    /// stay.
    pub(crate) fn apply_snapshot(&mut self, index: Index, term: Term) -> bool {
        let keep = self.term_at(index) == Some(term);
        if keep {
            // Drop every run that starts at or before `index + 1`, then restart
            // the run that holds `index + 1` (if any) exactly there.
            let next = index.saturating_add(1);
            let next_term = self.term_at(next).filter(|_| next > index);
            let first_after = self.runs.partition_point(|&(first, _)| first <= next);
            self.runs.drain(..first_after);
            if let Some(t) = next_term {
                self.runs.insert(0, (next, t));
            }
        } else {
            self.runs.clear();
            self.last = index;
        }
        self.base = (index, term);
        keep
    }

    /// Appends validated entries (all after the base), replacing any stored
    /// entry at or after the first one's index (conflict truncation).
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let runs_before = self.runs.partition_point(|&(start, _)| start < first.index);
        self.runs.truncate(runs_before);
        for e in entries {
            if self.runs.last().map(|&(_, term)| term) != Some(e.term) {
                self.runs.push((e.index, e.term));
            }
        }
        self.last = entries.last().map_or(self.last, |e| e.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::storage::test_entries as ents;

    #[test]
    fn terms_and_conflict_truncation() {
        let mut s = LogShape::new((0, 0), &ents(1, &[1, 1, 2, 2, 3]));
        assert_eq!(s.term_at(0), Some(0));
        assert_eq!(s.term_at(2), Some(1));
        assert_eq!(s.term_at(4), Some(2));
        assert_eq!(s.term_at(5), Some(3));
        assert_eq!(s.term_at(6), None);
        s.append(&ents(4, &[4]));
        assert_eq!(
            (s.last(), s.term_at(3), s.term_at(4), s.term_at(5)),
            (4, Some(2), Some(4), None)
        );
        assert_eq!(s, LogShape::new((0, 0), &ents(1, &[1, 1, 2, 4])));
    }

    #[test]
    fn snapshot_keeps_a_matching_tail_and_drops_a_conflicting_one() {
        let log = LogShape::new((0, 0), &ents(1, &[1, 1, 2, 2, 3]));
        let mut keep = log.clone();
        assert!(keep.apply_snapshot(3, 2));
        assert_eq!(keep, LogShape::new((3, 2), &ents(4, &[2, 3])));
        let mut drop = log.clone();
        assert!(!drop.apply_snapshot(3, 5));
        assert_eq!(drop, LogShape::new((3, 5), &[]));
        let mut beyond = log.clone();
        assert!(!beyond.apply_snapshot(9, 3));
        assert_eq!(beyond, LogShape::new((9, 3), &[]));
        let mut at_end = log;
        assert!(at_end.apply_snapshot(5, 3));
        assert_eq!(at_end, LogShape::new((5, 3), &[]));
    }

    #[test]
    fn plan_validates_without_changing_anything() {
        let log = LogShape::new((10, 2), &ents(11, &[2, 2]));
        assert_eq!(
            log.plan(None, &ents(13, &[3])).ok().map(|p| p.skip),
            Some(0)
        );
        assert_eq!(
            log.plan(None, &ents(9, &[2, 2, 2])).ok().map(|p| p.skip),
            Some(2)
        );
        assert!(matches!(
            log.plan(None, &ents(14, &[3])),
            Err(StorageError::LogGap {
                first: 14,
                last: 12
            })
        ));
        let mut broken = ents(13, &[3, 3]);
        broken[1].index = 15;
        assert!(matches!(
            log.plan(None, &broken),
            Err(StorageError::BatchNotContiguous { .. })
        ));
        // After a snapshot beyond the log, the next entry is the snapshot's + 1.
        assert!(log.plan(Some((20, 4)), &ents(21, &[4])).is_ok());
        assert!(
            log.plan(Some((20, 4)), &ents(13, &[4])).is_ok(),
            "covered entries are skipped"
        );
        assert_eq!(log, LogShape::new((10, 2), &ents(11, &[2, 2])));
    }
}
