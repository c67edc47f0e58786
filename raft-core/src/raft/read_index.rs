//! ReadIndex: linearizable reads without writing to the log (thesis §6.4).
//!
//! 1. The leader must have committed an entry of its own term, so its commit
//!    index is at least that of any earlier leader; reads wait until then.
//! 2. It records the commit index as the read index.
//! 3. It confirms it is still leader: a heartbeat round numbered `round`,
//!    acknowledged by a majority. An acknowledgement of a later round
//!    confirms every earlier one too.
//! 4. The read may be served once the state machine has applied the read
//!    index. A follower asks the leader for steps 1-3 and does step 4 itself.

use std::collections::{BTreeMap, VecDeque};

use super::Raft;
use crate::config::NotAccepted;
use crate::message::MessageBody;
use crate::types::{Index, NodeId, Role};

/// A read the driver may serve once it has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The context the driver passed to `read_index`.
    pub ctx: u64,
    /// Apply up to here, then read.
    pub index: Index,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// Who asked: this node or a follower.
    from: NodeId,
    index: Index,
    round: u64,
}

/// Reads in progress on this node.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// The newest heartbeat round that confirms leadership for reads.
    pub round: u64,
    /// Leader: reads waiting for a quorum to confirm their round.
    confirming: VecDeque<PendingRead>,
    /// Leader: reads waiting for the first commit of this term.
    waiting_commit: Vec<(u64, NodeId)>,
    /// Reads this node may now serve.
    pub ready: Vec<ReadState>,
    /// Contexts of this node's reads that will never be answered.
    pub dropped: Vec<u64>,
    /// Contexts of followers' reads to refuse, as `(follower, ctx)`.
    refused: Vec<(NodeId, u64)>,
    /// Follower: the reads it asked a leader for, by context, with that
    /// leader. Only an answer from that leader to a context still asked
    /// for is taken: an answer meant for another read (an earlier run of
    /// this node, or a read already given up) would serve a read with an
    /// index older than a write acknowledged before it began.
    asked: BTreeMap<u64, NodeId>,
}

impl Reads {
    /// Follower: takes the leader's answer to the read `ctx`, if this node
    /// asked `from` for it and still waits; anything else is ignored.
    pub fn answered(&mut self, from: NodeId, ctx: u64, index: Option<Index>) {
        if self.asked.get(&ctx) != Some(&from) {
            return;
        }
        self.asked.remove(&ctx);
        match index {
            Some(index) => self.ready.push(ReadState { ctx, index }),
            None => self.dropped.push(ctx),
        }
    }

    /// Gives up the reads asked of a leader this node no longer follows:
    /// the answer may never come.
    pub fn forget_asked(&mut self) {
        let asked = std::mem::take(&mut self.asked);
        self.dropped.extend(asked.into_keys());
    }

    /// Gives up every read this node coordinates (it is no longer leader).
    pub fn abandon(&mut self, me: NodeId) {
        let all = self
            .confirming
            .drain(..)
            .map(|r| (r.ctx, r.from))
            .chain(self.waiting_commit.drain(..));
        for (ctx, from) in all {
            if from == me {
                self.dropped.push(ctx);
            } else {
                self.refused.push((from, ctx));
            }
        }
    }
}

impl Raft {
    /// Starts a linearizable read with the driver's context `ctx`.
    pub(crate) fn read_index(&mut self, ctx: u64) -> Result<(), NotAccepted> {
        match self.role {
            Role::Leader => {
                let me = self.id();
                self.leader_read(ctx, me);
                Ok(())
            }
            Role::Follower if self.leader != 0 => {
                let leader = self.leader;
                self.reads.asked.insert(ctx, leader);
                self.send(leader, MessageBody::ReadIndex { ctx });
                Ok(())
            }
            _ => Err(NotAccepted::NotLeader { leader: None }),
        }
    }

    pub(super) fn handle_remote_read(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader {
            self.leader_read(ctx, from);
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index: None });
        }
    }

    fn leader_read(&mut self, ctx: u64, from: NodeId) {
        #[cfg(feature = "faults")]
        if self.cfg.faults.stale_reads {
            let index = self.log.commit;
            self.answer_read(ctx, from, index);
            return;
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            self.reads.waiting_commit.push((ctx, from));
            return;
        }
        let index = self.log.commit;
        let me = self.id();
        if self.membership.has_quorum(|id| id == me) {
            self.answer_read(ctx, from, index);
            return;
        }
        self.reads.round += 1;
        let round = self.reads.round;
        self.reads.confirming.push_back(PendingRead {
            ctx,
            from,
            index,
            round,
        });
        self.broadcast_heartbeat();
    }

    fn answer_read(&mut self, ctx: u64, from: NodeId, index: Index) {
        if from == self.id() {
            self.reads.ready.push(ReadState { ctx, index });
        } else {
            self.send(
                from,
                MessageBody::ReadIndexResponse {
                    ctx,
                    index: Some(index),
                },
            );
        }
    }

    /// Called when the commit index moves: reads that waited for the first
    /// commit of this term can start now.
    pub(super) fn release_reads_waiting_for_commit(&mut self) {
        if self.reads.waiting_commit.is_empty() || self.log.term(self.log.commit) != Some(self.term)
        {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.reads.waiting_commit) {
            self.leader_read(ctx, from);
        }
    }

    /// Answers every read whose heartbeat round a majority acknowledged.
    pub(super) fn release_confirmed_reads(&mut self) {
        let me = self.id();
        while let Some(read) = self.reads.confirming.front().copied() {
            let confirmed = self.membership.has_quorum(|id| {
                id == me
                    || self
                        .progress
                        .get(&id)
                        .is_some_and(|p| p.read_acked >= read.round)
            });
            if !confirmed {
                break;
            }
            self.reads.confirming.pop_front();
            self.answer_read(read.ctx, read.from, read.index);
        }
    }

    /// Sends refusals for followers' reads given up on.
    pub(super) fn flush_abandoned_reads(&mut self) {
        for (to, ctx) in std::mem::take(&mut self.reads.refused) {
            self.send(to, MessageBody::ReadIndexResponse { ctx, index: None });
        }
    }
}
