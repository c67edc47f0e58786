//! Peer round-trip times, measured on Raft's own heartbeats: a leader's
//! heartbeat carries a round number (`seq`) that the follower echoes in its
//! answer, so the time from handing round `seq` to the transport to
//! stepping its answer is one round trip through the network, the
//! follower's inbox and its loop — what a client write waits for at each
//! replication step. No probe traffic is added.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use raft_core::{Message, MessageBody, NodeId};

/// Rounds remembered per peer: a follower that stops answering must not
/// grow the table; older rounds are forgotten first.
const ROUNDS_KEPT: usize = 64;

/// The heartbeat rounds sent to each peer and not yet answered.
#[derive(Debug, Default)]
pub struct HeartbeatClock {
    sent: BTreeMap<NodeId, VecDeque<(u64, Instant)>>,
}

impl HeartbeatClock {
    /// Notes the heartbeats among `messages`, sent at `now`.
    pub fn on_send(&mut self, messages: &[Message], now: Instant) {
        for m in messages {
            if let MessageBody::Heartbeat { seq, .. } = m.body {
                let rounds = self.sent.entry(m.to).or_default();
                if rounds.len() == ROUNDS_KEPT {
                    rounds.pop_front();
                }
                rounds.push_back((seq, now));
            }
        }
    }

    /// The round trip a heartbeat answer closes, if it answers a round
    /// noted by [`HeartbeatClock::on_send`]. Rounds older than the answered
    /// one are dropped: their answers were lost or will come late, and a
    /// late answer would report the wait for a newer round's turn, not the
    /// network.
    pub fn on_receive(&mut self, message: &Message, now: Instant) -> Option<(NodeId, Duration)> {
        let MessageBody::HeartbeatResponse { seq, .. } = message.body else {
            return None;
        };
        let rounds = self.sent.get_mut(&message.from)?;
        while let Some(&(sent_seq, at)) = rounds.front() {
            if sent_seq > seq {
                return None;
            }
            rounds.pop_front();
            if sent_seq == seq {
                return Some((message.from, now.saturating_duration_since(at)));
            }
        }
        None
    }

    /// Forgets the rounds of peers no longer in the configuration.
    pub fn retain(&mut self, peers: impl Fn(NodeId) -> bool) {
        self.sent.retain(|id, _| peers(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(to: NodeId, seq: u64) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_ctx: 0,
                seq,
            },
        }
    }

    fn answer(from: NodeId, seq: u64) -> Message {
        Message {
            from,
            to: 1,
            term: 1,
            body: MessageBody::HeartbeatResponse {
                read_ctx: 0,
                seq,
                last_index: 0,
            },
        }
    }

    #[test]
    fn an_answer_closes_its_own_round_per_peer() {
        let t0 = Instant::now();
        let mut clock = HeartbeatClock::default();
        clock.on_send(&[heartbeat(2, 7), heartbeat(3, 7)], t0);
        clock.on_send(&[heartbeat(2, 8)], t0 + Duration::from_millis(50));
        let at = t0 + Duration::from_millis(80);
        // Peer 2 answers round 8: round 7's answer is taken as lost.
        assert_eq!(
            clock.on_receive(&answer(2, 8), at),
            Some((2, Duration::from_millis(30)))
        );
        assert_eq!(clock.on_receive(&answer(2, 7), at), None);
        assert_eq!(
            clock.on_receive(&answer(3, 7), at),
            Some((3, Duration::from_millis(80)))
        );
        // An answer to a round never noted, or a second answer, is ignored.
        assert_eq!(clock.on_receive(&answer(3, 7), at), None);
        assert_eq!(clock.on_receive(&answer(4, 1), at), None);
    }

    #[test]
    fn a_silent_peer_keeps_a_bounded_number_of_rounds() {
        let t0 = Instant::now();
        let mut clock = HeartbeatClock::default();
        for seq in 0..1000 {
            clock.on_send(&[heartbeat(2, seq)], t0);
        }
        assert_eq!(clock.sent[&2].len(), ROUNDS_KEPT);
        assert_eq!(clock.on_receive(&answer(2, 0), t0), None);
        assert!(clock.on_receive(&answer(2, 999), t0).is_some());
        clock.retain(|id| id != 2);
        assert!(clock.sent.is_empty());
    }
}
