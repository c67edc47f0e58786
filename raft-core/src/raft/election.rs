//! Leader election: pre-vote, vote, counting answers (paper §5.2, §5.4.1;
//! thesis §9.6).

use super::Raft;
use crate::message::MessageBody;
use crate::quorum;
use crate::types::{Index, NodeId, Role, RoleCause, Term};

impl Raft {
    /// Starts an election: with PreVote, first a pre-vote round that changes
    /// no state; after a leadership transfer, a real election at once.
    pub(super) fn hup(&mut self, transfer: bool, cause: RoleCause) {
        if self.role == Role::Leader || !self.is_voter() {
            return;
        }
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate(cause);
            self.request_votes(true, false);
        } else {
            self.become_candidate(cause);
            self.request_votes(false, transfer);
        }
    }

    fn request_votes(&mut self, pre: bool, transfer: bool) {
        let me = self.id();
        self.votes.insert(me, true);
        if self.tally_and_decide() {
            return;
        }
        let last_index = self.log.last_index();
        let last_term = self.log.last_term();
        let term = if pre { self.term + 1 } else { self.term };
        for id in self.voter_peers() {
            let body = if pre {
                MessageBody::PreVote {
                    last_index,
                    last_term,
                }
            } else {
                MessageBody::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            };
            self.send_at(id, term, body);
        }
    }

    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
        pre: bool,
    ) {
        // One vote per term (paper §5.2): repeat a vote already given, or
        // vote when we have not voted and follow no leader in this term. A
        // pre-vote for a later term promises nothing, so it is free.
        let can_vote =
            self.vote == from || (self.vote == 0 && self.leader == 0) || (pre && term > self.term);
        // Election restriction: only a candidate whose log is at least as
        // up-to-date as ours gets our vote (paper §5.4.1).
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        if pre {
            let answer_term = if granted { term } else { self.term };
            self.send_at(from, answer_term, MessageBody::PreVoteResponse { granted });
        } else {
            if granted {
                // The vote is in the hard state of this Ready, so the driver
                // persists it before this answer leaves (paper figure 2).
                self.vote = from;
                self.election_elapsed = 0;
            }
            self.send(from, MessageBody::VoteResponse { granted });
        }
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        self.tally_and_decide();
    }

    /// Counts the answers; wins, loses or keeps waiting. Returns whether the
    /// round is over.
    fn tally_and_decide(&mut self) -> bool {
        let result = self.membership.vote_result(&self.votes);
        if result == quorum::VoteResult::Won {
            match self.role {
                Role::PreCandidate => {
                    self.become_candidate(RoleCause::PreVoteWon);
                    self.request_votes(false, false);
                }
                Role::Candidate => self.become_leader(),
                _ => {}
            }
            true
        } else if result == quorum::VoteResult::Lost {
            let term = self.term;
            self.become_follower(term, 0, RoleCause::ElectionLost);
            true
        } else {
            false
        }
    }
}
