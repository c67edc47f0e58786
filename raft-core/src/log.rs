//! The in-memory Raft log: a snapshot followed by the uncompacted entries,
//! with the commit, apply and persistence cursors.
//!
//! The whole uncompacted suffix lives in memory; the replica keeps it
//! bounded by compacting it ([`crate::RawNode::compact`]) at the snapshots
//! the driver writes and at checkpoints in between. Of the snapshot only
//! its metadata is kept: its image is the driver's (a file), which the
//! driver supplies when it sends the snapshot to a lagging follower.

use crate::chunked_entries::ChunkedEntries;
use crate::types::{Compacted, Entry, Index, Membership, Payload, SnapshotMeta, Term};

/// The log and its cursors. Invariant:
/// `snapshot.index <= applied <= commit <= last_index()` and
/// `entries[i].index == snapshot.index + 1 + i`.
#[derive(Clone, Debug)]
pub struct RaftLog {
    /// Where the newest snapshot sits (its image is the driver's).
    pub snapshot: SnapshotMeta,
    entries: ChunkedEntries,
    /// The highest index known to be committed.
    pub commit: Index,
    /// The highest index handed to the driver to apply.
    pub applied: Index,
    /// The highest index the driver confirmed as durable.
    pub persisted: Index,
    /// The first index not yet handed to the driver for persistence.
    pub unstable_from: Index,
}

impl RaftLog {
    /// A log restored from persisted state: everything given is durable.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, commit: Index) -> Self {
        let first = snapshot.index + 1;
        // Keep only a contiguous run starting right after the snapshot.
        let entries: ChunkedEntries = entries
            .into_iter()
            .skip_while(|e| e.index < first)
            .enumerate()
            .take_while(|(i, e)| e.index == first + *i as u64)
            .map(|(_, e)| e)
            .collect();
        let last = snapshot.index + entries.len() as u64;
        let snap_index = snapshot.index;
        RaftLog {
            snapshot,
            entries,
            commit: commit.clamp(snap_index, last),
            applied: snap_index,
            persisted: last,
            unstable_from: last + 1,
        }
    }

    /// The index just after the snapshot.
    pub fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    /// The last index (the snapshot's when the log is empty).
    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term of the entry at `index`; `None` when compacted or beyond the end.
    pub fn term(&self, index: Index) -> Option<Term> {
        let snap = &self.snapshot;
        if index == snap.index {
            return Some(snap.term);
        }
        if index < snap.index {
            return None;
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.first_index();
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// Whether the entry at `index` has `term` (log matching check).
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate's log (`last_term`, `last_index`) is at least as
    /// up-to-date as this one (paper §5.4.1).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Entries from `from` on, bounded to `max_bytes` (at least one entry).
    pub fn slice(&self, from: Index, max_bytes: usize) -> Vec<Entry> {
        let first = self.first_index();
        if from < first || from > self.last_index() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut size = 0;
        for e in self.entries.iter_from((from - first) as usize) {
            size += e.approx_size();
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Appends a leader's own new entry.
    /// The configuration in force at `index`: the newest `Config` entry at
    /// or below it, else the snapshot's. Returns it with the index it came
    /// from. Scans back from `index`; configuration entries are rare and the
    /// scan runs only when the log's configuration may have changed.
    pub fn config_at(&self, index: Index) -> (Index, &Membership) {
        let first = self.first_index();
        let mut i = index.min(self.last_index());
        while i >= first {
            if let Some(Entry {
                payload: Payload::Config(m),
                ..
            }) = self.entry(i)
            {
                return (i, m);
            }
            i -= 1;
        }
        (self.snapshot.index, &self.snapshot.membership)
    }

    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Appends entries received from the leader after `prev_index` (which is
    /// known to match). An existing entry that conflicts (same index,
    /// different term) is deleted with all that follow it (paper figure 2,
    /// AppendEntries rule 3); entries already present are not touched, so a
    /// delayed, shorter append never truncates newer matching entries.
    /// Returns the last index the leader's message vouches for.
    pub fn append_from_leader(&mut self, prev_index: Index, entries: &[Entry]) -> Index {
        let last_new = prev_index + entries.len() as u64;
        for (i, e) in entries.iter().enumerate() {
            let index = prev_index + 1 + i as u64;
            if index < self.first_index() {
                continue; // covered by our snapshot, therefore committed and matching
            }
            match self.term(index) {
                Some(t) if t == e.term => continue,
                // A committed entry never conflicts in a correct cluster; the
                // simulator's checkers catch it if a fault makes one.
                Some(_) => self.truncate_from(index),
                None => {}
            }
            for e in &entries[i..] {
                self.entries.push(e.clone());
            }
            break;
        }
        last_new
    }

    fn truncate_from(&mut self, index: Index) {
        let keep = (index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted = self.persisted.min(index - 1);
    }

    /// Raises the commit index (it never goes down).
    pub fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
            true
        } else {
            false
        }
    }

    /// The follower's hint on a rejected append (etcd's `findConflictByTerm`):
    /// the largest index `<= index` whose term is `<= term`, with its term.
    pub fn conflict_hint(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t > term => i -= 1,
                Some(t) => return (i, t),
                None => return (self.snapshot.index, self.snapshot.term),
            }
        }
    }

    /// Entries the driver must persist now; marks them as handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.unstable_from.max(self.first_index());
        let out = self.slice(from, usize::MAX);
        self.unstable_from = self.last_index() + 1;
        out
    }

    /// Committed entries that are durable here and not yet applied; marks
    /// them as handed out for applying.
    pub fn take_committed(&mut self, max_bytes: usize) -> Vec<Entry> {
        let hi = self.commit.min(self.persisted);
        if hi <= self.applied {
            return Vec::new();
        }
        let mut out = self.slice(self.applied + 1, max_bytes);
        out.retain(|e| e.index <= hi);
        if let Some(last) = out.last() {
            self.applied = last.index;
        }
        out
    }

    /// Whether there are committed, durable entries not yet applied.
    pub fn has_committed(&self) -> bool {
        self.commit.min(self.persisted) > self.applied
    }

    /// The driver persisted entries up to `index` with `term`.
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        // A later truncation may have replaced the entry; only a match counts.
        if self.matches(index, term) && index < self.unstable_from {
            self.persisted = self.persisted.max(index);
        }
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub fn restore_snapshot(&mut self, snapshot: SnapshotMeta) {
        let index = snapshot.index;
        self.entries.clear();
        self.snapshot = snapshot;
        self.commit = index;
        self.applied = index;
        self.persisted = index;
        self.unstable_from = index + 1;
    }

    /// Drops entries up to `meta.index`, covered by a snapshot the driver
    /// took, and returns them (nothing is freed here).
    pub fn compact(&mut self, meta: SnapshotMeta) -> Compacted {
        let drop = (meta.index - self.snapshot.index) as usize;
        Compacted {
            entries: self.entries.take_front(drop),
            snapshot: std::mem::replace(&mut self.snapshot, meta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Noop,
        }
    }

    fn log(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| e(i as u64 + 1, t))
            .collect();
        RaftLog::restore(SnapshotMeta::default(), entries, 0)
    }

    #[test]
    fn conflicting_suffix_is_replaced_matching_is_kept() {
        let mut l = log(&[1, 1, 2, 2]);
        // A delayed shorter append does not truncate.
        assert_eq!(l.append_from_leader(1, &[e(2, 1)]), 2);
        assert_eq!(l.last_index(), 4);
        // A conflicting entry at 3 drops 3 and 4.
        l.append_from_leader(2, &[e(3, 3)]);
        assert_eq!(l.last_index(), 3);
        assert_eq!(l.term(3), Some(3));
        assert_eq!(l.persisted, 2);
        assert_eq!(l.unstable_from, 3);
    }

    #[test]
    fn hint_skips_a_term_at_a_time() {
        let l = log(&[1, 1, 4, 4, 4, 4]);
        // The leader asked about index 6 with term 5: everything of term 4
        // is skipped in one step.
        assert_eq!(l.conflict_hint(6, 3), (2, 1));
        assert_eq!(l.conflict_hint(9, 4), (6, 4));
    }

    #[test]
    fn committed_entries_wait_for_persistence() {
        let mut l = log(&[1, 1]);
        l.append_from_leader(2, &[e(3, 1)]);
        l.commit_to(3);
        assert_eq!(l.take_committed(usize::MAX).len(), 2);
        assert!(!l.has_committed());
        let unstable = l.take_unstable();
        assert_eq!(unstable.len(), 1);
        l.persisted_to(3, 1);
        assert_eq!(l.take_committed(usize::MAX)[0].index, 3);
    }

    #[test]
    fn compaction_keeps_terms_answerable() {
        let mut l = log(&[1, 2, 3]);
        let gone = l.compact(SnapshotMeta {
            index: 2,
            term: 2,
            membership: Default::default(),
        });
        assert_eq!(
            gone.entries,
            vec![e(1, 1), e(2, 2)],
            "handed back, not freed"
        );
        assert_eq!(gone.snapshot, SnapshotMeta::default());
        assert_eq!(l.first_index(), 3);
        assert_eq!(l.term(2), Some(2));
        assert_eq!(l.term(1), None);
        assert_eq!(l.slice(1, usize::MAX).len(), 0);
        assert_eq!(l.slice(3, usize::MAX).len(), 1);
    }
}
