//! The leader's view of one follower's log (etcd's `tracker.Progress`).
//!
//! * `Probe`: the leader does not know where the follower's log diverges; it
//!   sends one append at a time and waits for the answer (or a heartbeat
//!   response) before sending the next.
//! * `Replicate`: the follower is known to match up to `match_index`; the
//!   leader streams appends optimistically, at most `max_inflight` unanswered.
//! * `Snapshot`: the follower needs entries the leader has compacted away; an
//!   InstallSnapshot is on its way and nothing else is sent until it lands.
//! * `LogLost`: the follower answered a heartbeat sent after its last
//!   acknowledgement with a log shorter than that acknowledgement, so it
//!   lost durable state (an emptied or swapped
//!   data directory). Nothing but heartbeats that commit nothing goes to it
//!   any more: neither the probe ping-pong a lower `next` would never end,
//!   nor a commit index it could apply to entries that are not the leader's.
//!   Its old acknowledgement counts neither toward commit nor as a member
//!   up when a membership change is checked. The operator removes and
//!   re-adds it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::types::Index;

/// How the leader is replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressState {
    /// One message at a time until the match point is found.
    Probe,
    /// Pipelined appends.
    Replicate,
    /// Waiting for an InstallSnapshot at the given index to be acknowledged.
    Snapshot {
        /// The snapshot's last index.
        index: Index,
    },
    /// The follower's log went backwards below what it acknowledged.
    LogLost {
        /// The index it once acknowledged.
        acknowledged: Index,
        /// Where it now says its log ends (or stops matching).
        reported: Index,
    },
}

impl ProgressState {
    /// A short name for status output.
    pub fn name(&self) -> &'static str {
        match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot { .. } => "snapshot",
            ProgressState::LogLost { .. } => "log_lost",
        }
    }
}

/// Replication progress of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to be replicated on the follower.
    pub match_index: Index,
    /// The next index to send.
    pub next_index: Index,
    /// The replication mode.
    pub state: ProgressState,
    /// In probe state: an append is outstanding, wait for its answer.
    pub probe_sent: bool,
    /// In replicate state: the last index of each unanswered append, oldest first.
    pub inflight: VecDeque<Index>,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Ticks since the follower last answered anything.
    pub ticks_since_contact: u64,
    /// Ticks spent in the snapshot state (to resend a lost snapshot).
    pub ticks_in_snapshot: u64,
    /// The newest ReadIndex round the follower acknowledged.
    pub read_acked: u64,
    /// Auto-promoted learner: consecutive ticks it has been caught up.
    pub caught_up_ticks: u64,
    /// The leader's heartbeat round when `match_index` last moved: only an
    /// answer to a later round can prove the follower lost entries.
    pub match_seq: u64,
}

impl Progress {
    /// A follower the leader knows nothing about yet.
    pub fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            ticks_since_contact: 0,
            ticks_in_snapshot: 0,
            read_acked: 0,
            caught_up_ticks: 0,
            match_seq: 0,
        }
    }

    /// Whether the leader must hold further appends back.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot { .. } | ProgressState::LogLost { .. } => true,
        }
    }

    /// Records that the follower holds the leader's log up to `index`.
    /// Returns whether the match point moved.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        moved
    }

    /// Records an append sent with entries up to `last`.
    pub fn sent(&mut self, last: Index) {
        match self.state {
            ProgressState::Replicate => {
                self.next_index = last + 1;
                self.inflight.push_back(last);
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } | ProgressState::LogLost { .. } => {}
        }
    }

    /// Switches to probing from `match_index + 1` (or the given hint).
    pub fn become_probe(&mut self, next_index: Index) {
        self.state = ProgressState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Switches to pipelined replication.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Switches to waiting for a snapshot at `index`.
    pub fn become_snapshot(&mut self, index: Index) {
        self.state = ProgressState::Snapshot { index };
        self.probe_sent = false;
        self.inflight.clear();
        self.ticks_in_snapshot = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_pauses_and_frees() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.sent(3);
        p.sent(6);
        assert!(p.is_paused(2));
        assert_eq!(p.next_index, 7);
        assert!(p.maybe_update(3));
        assert!(!p.is_paused(2));
        assert_eq!(p.inflight.len(), 1);
        assert!(!p.maybe_update(2), "a stale ack does not move match");
        assert_eq!(p.match_index, 3);
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut p = Progress::new(5);
        assert!(!p.is_paused(8));
        p.sent(7);
        assert!(p.is_paused(8));
        assert_eq!(
            p.next_index, 5,
            "probe does not advance next optimistically"
        );
        p.maybe_update(4);
        assert!(!p.is_paused(8));
        assert_eq!(p.next_index, 5);
    }
}
