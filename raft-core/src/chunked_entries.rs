//! The log's entries in fixed-size chunks.
//!
//! A log that is not compacted for a long time (snapshots off, or a
//! snapshot the size rule keeps waiting for) reaches millions of entries.
//! In one vector, every doubling copies all of them on the Raft loop
//! (hundreds of MB at 2M entries) and then touches as many fresh pages. In
//! chunks of [`CHUNK`] entries, an append never moves more than one chunk,
//! and dropping a compacted prefix frees whole chunks.
//!
//! Every chunk but the first and the last holds exactly [`CHUNK`] entries:
//! a new chunk is started only when the last one is full, truncation works
//! from the back, and compaction from the front. So entry `i` is found by
//! arithmetic, without a search.

use std::collections::VecDeque;

use crate::types::Entry;

/// Entries per chunk.
const CHUNK: usize = 4096;

/// A sequence of entries stored in chunks of [`CHUNK`].
#[derive(Clone, Debug, Default)]
pub(crate) struct ChunkedEntries {
    chunks: VecDeque<Vec<Entry>>,
    len: usize,
}

impl ChunkedEntries {
    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<&Entry> {
        self.chunks.back().and_then(|c| c.last())
    }

    /// Entry `i` (0-based).
    pub(crate) fn get(&self, i: usize) -> Option<&Entry> {
        if i >= self.len {
            return None;
        }
        let first = self.chunks.front()?;
        if i < first.len() {
            return first.get(i);
        }
        let rest = i - first.len();
        self.chunks.get(1 + rest / CHUNK)?.get(rest % CHUNK)
    }

    /// Appends one entry.
    pub(crate) fn push(&mut self, entry: Entry) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    /// The entries from `i` (0-based) on, in order.
    pub(crate) fn iter_from(&self, i: usize) -> impl Iterator<Item = &Entry> {
        // Skip whole chunks, then entries within the first one kept.
        let mut skip = i.min(self.len);
        let mut chunks = self.chunks.iter();
        let mut current: &[Entry] = &[];
        for chunk in chunks.by_ref() {
            if skip < chunk.len() {
                current = &chunk[skip..];
                break;
            }
            skip -= chunk.len();
        }
        current.iter().chain(chunks.flatten())
    }

    /// Keeps the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) {
        while self.len > len {
            let Some(last) = self.chunks.back_mut() else {
                break;
            };
            let drop = (self.len - len).min(last.len());
            last.truncate(last.len() - drop);
            self.len -= drop;
            if last.is_empty() {
                self.chunks.pop_back();
            }
        }
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Removes the first `n` entries and returns them, in order.
    pub(crate) fn take_front(&mut self, n: usize) -> Vec<Entry> {
        let n = n.min(self.len);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(first) = self.chunks.front_mut() else {
                break;
            };
            let want = n - out.len();
            if want >= first.len() {
                out.append(first);
                self.chunks.pop_front();
            } else {
                out.extend(first.drain(..want));
            }
        }
        self.len -= out.len();
        out
    }
}

impl FromIterator<Entry> for ChunkedEntries {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let mut entries = ChunkedEntries::default();
        for e in iter {
            entries.push(e);
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Payload;

    fn entry(index: u64) -> Entry {
        Entry {
            term: 1,
            index,
            payload: Payload::Noop,
        }
    }

    fn indexes<'a>(it: impl Iterator<Item = &'a Entry>) -> Vec<u64> {
        it.map(|e| e.index).collect()
    }

    /// A vector and the chunks, given the same pushes, truncations and
    /// front removals across chunk boundaries, hold the same entries.
    #[test]
    fn behaves_as_one_vector_across_chunk_boundaries() {
        let mut model: Vec<u64> = Vec::new();
        let mut chunks = ChunkedEntries::default();
        let mut next = 1;
        let check = |model: &Vec<u64>, chunks: &ChunkedEntries| {
            assert_eq!(chunks.len(), model.len());
            assert_eq!(chunks.last().map(|e| e.index), model.last().copied());
            for i in [
                0,
                1,
                CHUNK - 1,
                CHUNK,
                CHUNK + 1,
                model.len().saturating_sub(1),
            ] {
                assert_eq!(chunks.get(i).map(|e| e.index), model.get(i).copied(), "{i}");
            }
            assert_eq!(chunks.get(model.len()), None);
            for from in [0, 3, CHUNK, model.len() / 2, model.len()] {
                let want: Vec<u64> = model.iter().skip(from).copied().collect();
                assert_eq!(indexes(chunks.iter_from(from)), want, "from {from}");
            }
        };
        // Steps: push n, truncate to n, take n from the front.
        let steps: [(&str, usize); 9] = [
            ("push", 3 * CHUNK + 5),
            ("front", 7),
            ("push", CHUNK),
            ("truncate", 2 * CHUNK + 1),
            ("front", CHUNK + 3),
            ("push", 2 * CHUNK - 2),
            ("front", CHUNK - 4),
            ("truncate", 0),
            ("push", 10),
        ];
        for (op, n) in steps {
            match op {
                "push" => {
                    for _ in 0..n {
                        chunks.push(entry(next));
                        model.push(next);
                        next += 1;
                    }
                }
                "truncate" => {
                    chunks.truncate(n);
                    model.truncate(n);
                }
                _ => {
                    let taken = chunks.take_front(n);
                    let want: Vec<u64> = model.drain(..n).collect();
                    assert_eq!(indexes(taken.iter()), want);
                }
            }
            check(&model, &chunks);
        }
        chunks.clear();
        assert_eq!(chunks.len(), 0);
        assert!(chunks.get(0).is_none());
    }

    #[test]
    fn no_chunk_grows_past_its_size() {
        let chunks: ChunkedEntries = (1..=(2 * CHUNK as u64 + 1)).map(entry).collect();
        assert_eq!(chunks.chunks.len(), 3);
        assert!(chunks.chunks.iter().all(|c| c.capacity() == CHUNK));
    }
}
