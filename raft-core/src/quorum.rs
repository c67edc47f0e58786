//! Majority arithmetic, kept apart from everything else (etcd's `quorum`).

/// The largest index that a majority of `matched` (one value per voter)
/// has reached: sort descending and take the `quorum`-th value.
pub fn committed_index(matched: &mut [u64]) -> u64 {
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[matched.len() / 2]
}

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the round cannot be won.
    Lost,
    /// Neither yet.
    Pending,
}

impl VoteResult {
    /// Both halves of a joint configuration: won only if both are won,
    /// lost if either is lost.
    pub fn and(self, other: VoteResult) -> VoteResult {
        use VoteResult::*;
        match (self, other) {
            (Lost, _) | (_, Lost) => Lost,
            (Won, Won) => Won,
            _ => Pending,
        }
    }
}

/// Whether `yes` votes out of `voters` make a majority.
pub fn has_majority(yes: usize, voters: usize) -> bool {
    yes > voters / 2
}

/// Whether `no` votes out of `voters` make a majority impossible.
pub fn has_lost(no: usize, voters: usize) -> bool {
    voters - no < voters / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_index() {
        assert_eq!(committed_index(&mut [5, 3, 4]), 4);
        assert_eq!(committed_index(&mut [5, 3, 4, 1]), 3);
        assert_eq!(committed_index(&mut [7]), 7);
        assert_eq!(committed_index(&mut [1, 9, 9, 2, 2]), 2);
    }

    #[test]
    fn votes() {
        assert!(has_majority(2, 3));
        assert!(!has_majority(2, 4));
        assert!(has_lost(2, 3));
        assert!(!has_lost(1, 3));
        assert!(has_lost(2, 4));
    }
}
