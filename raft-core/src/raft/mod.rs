//! The Raft protocol state machine. Role transitions live here; elections,
//! replication and reads each have their own file.

mod election;
mod membership;
mod read_index;
mod replication;

use std::collections::BTreeMap;

use crate::config::{Config, NotAccepted, StepError};
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::types::{
    Entry, HardState, Index, Membership, NodeId, Payload, Role, RoleCause, Snapshot, Term,
};

pub use read_index::ReadState;
use read_index::Reads;

/// One Raft node's protocol state. Drivers use it through [`crate::RawNode`].
pub struct Raft {
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    /// Why it took its role (or follows `leader`).
    pub(crate) cause: RoleCause,
    pub(crate) log: RaftLog,
    pub(crate) membership: Membership,
    /// The log index of the entry `membership` comes from (the snapshot's
    /// index when it comes from the snapshot).
    pub(crate) config_index: Index,
    /// Leader only: every other member's replication progress (learners too).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate and pre-candidate only: the answers received.
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_timeout: u64,
    rng: Rng,
    pub(crate) msgs: Vec<Message>,
    pub(crate) reads: Reads,
    pub(crate) transferee: Option<NodeId>,
    /// A snapshot received from the leader, to be persisted and applied.
    pub(crate) received_snapshot: Option<Snapshot>,
    /// Leader only: new entries not yet offered to the followers.
    needs_broadcast: bool,
    /// Messages rejected as malformed or misaddressed.
    pub(crate) rejected: u64,
    /// Leader: followers found to have lost their log since the last
    /// `Ready`, as `(id, acknowledged, reported)`.
    pub(crate) lost_logs: Vec<(NodeId, Index, Index)>,
    /// Leader: the number of the last heartbeat round sent.
    pub(crate) heartbeat_seq: u64,
}

impl Raft {
    pub(crate) fn new(cfg: Config, hard_state: HardState, log: RaftLog) -> Self {
        let (config_index, membership) = log.config_at(log.last_index());
        let (config_index, membership) = (config_index, membership.clone());
        let rng = Rng::new(cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9));
        let mut raft = Raft {
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: 0,
            cause: RoleCause::Start,
            log,
            membership,
            config_index,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            rng,
            msgs: Vec::new(),
            reads: Reads::default(),
            transferee: None,
            received_snapshot: None,
            needs_broadcast: false,
            rejected: 0,
            lost_logs: Vec::new(),
            heartbeat_seq: 0,
            cfg,
        };
        raft.reset_election_timer();
        raft
    }

    pub(crate) fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn is_voter(&self) -> bool {
        self.membership.is_voter(self.id())
    }

    /// Every other member, learners included, in id order (deterministic
    /// output): who the leader replicates to.
    fn peers(&self) -> Vec<NodeId> {
        let me = self.id();
        let mut ids = self.membership.ids();
        ids.retain(|&id| id != me);
        ids
    }

    /// The other voters of either half of the configuration: who a
    /// candidate asks for votes.
    fn voter_peers(&self) -> Vec<NodeId> {
        let me = self.id();
        let mut ids = self.membership.all_voters();
        ids.retain(|&id| id != me);
        ids
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_at(to, self.term, body);
    }

    fn send_at(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id(),
            to,
            term,
            body,
        });
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        // Randomized timeouts make split votes rare (paper §5.2).
        self.randomized_timeout = self
            .rng
            .range(self.cfg.election_tick, 2 * self.cfg.election_tick);
    }

    // ----- role transitions: every one of them is here -----

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId, cause: RoleCause) {
        self.cause = cause;
        if term > self.term {
            self.term = term;
            self.vote = 0;
        }
        let leader_changed = leader != self.leader;
        if self.role == Role::Leader || leader_changed {
            self.reads.abandon(self.cfg.id);
            self.flush_abandoned_reads();
        }
        if leader_changed {
            // Reads asked of the old leader may never be answered.
            self.reads.forget_asked();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.transferee = None;
        self.needs_broadcast = false;
        self.reset_election_timer();
    }

    fn become_pre_candidate(&mut self, cause: RoleCause) {
        self.cause = cause;
        // A pre-candidate changes neither its term nor its vote (thesis §9.6).
        self.reads.forget_asked();
        self.role = Role::PreCandidate;
        self.leader = 0;
        self.votes.clear();
        self.reset_election_timer();
    }

    fn become_candidate(&mut self, cause: RoleCause) {
        self.cause = cause;
        self.reads.forget_asked();
        self.term += 1;
        self.vote = self.id();
        self.role = Role::Candidate;
        self.leader = 0;
        self.votes.clear();
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        self.cause = RoleCause::ElectionWon;
        self.role = Role::Leader;
        self.leader = self.id();
        self.votes.clear();
        self.transferee = None;
        self.reset_election_timer();
        let next = self.log.last_index() + 1;
        self.progress = self
            .peers()
            .into_iter()
            .map(|id| (id, Progress::new(next)))
            .collect();
        // A new leader commits entries of earlier terms only by committing
        // one of its own (paper §5.4.2): append a no-op at once.
        self.append_entry(Payload::Noop);
    }

    // ----- inputs -----

    pub(crate) fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed >= self.randomized_timeout {
                self.election_elapsed = 0;
                let ticks = self.randomized_timeout;
                self.hup(false, RoleCause::ElectionTimeout { ticks });
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        for pr in self.progress.values_mut() {
            pr.ticks_since_contact += 1;
            pr.ticks_in_snapshot += 1;
        }
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            // CheckQuorum: a leader that has not heard from a majority for a
            // whole election timeout steps down (thesis §6.2).
            if self.cfg.check_quorum && !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, 0, RoleCause::QuorumLost);
                return;
            }
            for pr in self.progress.values_mut() {
                pr.recent_active = false;
            }
            // A transfer that did not finish within an election timeout is
            // abandoned so the leader serves proposals again (thesis §3.10).
            self.transferee = None;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.maybe_auto_promote();
    }

    fn quorum_active(&self) -> bool {
        let me = self.id();
        self.membership
            .has_quorum(|id| id == me || self.progress.get(&id).is_some_and(|p| p.recent_active))
    }

    pub(crate) fn step(&mut self, m: Message) -> Result<(), StepError> {
        if let Err(e) = self.validate(&m) {
            self.rejected += 1;
            return Err(e);
        }
        if m.term > self.term {
            let vote_request = match &m.body {
                MessageBody::Vote { transfer, .. } => !transfer,
                MessageBody::PreVote { .. } => true,
                _ => false,
            };
            // Leader lease: while a voter hears from a leader it ignores vote
            // requests, so a partitioned or removed node cannot depose a
            // healthy leader (thesis §4.2.3). A transfer overrides it.
            if vote_request
                && self.cfg.check_quorum
                && self.leader != 0
                && self.election_elapsed < self.cfg.election_tick
            {
                return Ok(());
            }
            // A node outside our configuration (removed, or not yet known
            // to us) cannot disrupt a leader we follow.
            if vote_request && self.leader != 0 && !self.membership.is_voter(m.from) {
                return Ok(());
            }
            match &m.body {
                // A pre-vote request carries the term the sender *would*
                // use; a granted pre-vote answer echoes it. Neither changes
                // the receiver's term.
                MessageBody::PreVote { .. } | MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    let cause = RoleCause::HigherTerm {
                        from: m.from,
                        term: m.term,
                    };
                    self.become_follower(m.term, m.from, cause)
                }
                _ => {
                    let cause = RoleCause::HigherTerm {
                        from: m.from,
                        term: m.term,
                    };
                    self.become_follower(m.term, 0, cause)
                }
            }
        } else if m.term < self.term {
            match &m.body {
                // A stale leader (or one cut off while we moved on) learns
                // the newer term from our answer and steps down.
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => self.send(
                    m.from,
                    MessageBody::AppendResponse {
                        success: false,
                        index: 0,
                        hint_index: 0,
                        hint_term: 0,
                    },
                ),
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { granted: false })
                }
                _ => {}
            }
            return Ok(());
        }

        match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => self.handle_vote_request(m.from, m.term, last_index, last_term, true),
            MessageBody::Vote {
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(m.from, m.term, last_index, last_term, false),
            MessageBody::PreVoteResponse { granted } => {
                // A grant echoes the term we would campaign at; a refusal
                // comes at the voter's own term, which may be ours: it
                // counts too, so a lost pre-vote ends now, not a timeout
                // later.
                let for_this_round = m.term == self.term + 1 || (!granted && m.term == self.term);
                if self.role == Role::PreCandidate && for_this_round {
                    self.handle_vote_response(m.from, granted);
                }
            }
            MessageBody::VoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.handle_vote_response(m.from, granted);
                }
            }
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.hear_from_leader(m.from);
                self.handle_append(m.from, prev_index, prev_term, &entries, commit)?;
            }
            MessageBody::Heartbeat {
                commit,
                read_ctx,
                seq,
            } => {
                self.hear_from_leader(m.from);
                self.log.commit_to(commit);
                let last_index = self.log.last_index();
                self.send(
                    m.from,
                    MessageBody::HeartbeatResponse {
                        read_ctx,
                        seq,
                        last_index,
                    },
                );
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.hear_from_leader(m.from);
                self.handle_snapshot(m.from, snapshot);
            }
            MessageBody::AppendResponse {
                success,
                index,
                hint_index,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(m.from, success, index, hint_index, hint_term);
                }
            }
            MessageBody::HeartbeatResponse {
                read_ctx,
                seq,
                last_index,
            } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(m.from, read_ctx, seq, last_index);
                }
            }
            MessageBody::ReadIndex { ctx } => self.handle_remote_read(m.from, ctx),
            MessageBody::ReadIndexResponse { ctx, index } => {
                self.reads.answered(m.from, ctx, index);
            }
            MessageBody::TimeoutNow => {
                // The leader picked us to take over: campaign at once, without
                // a pre-vote and past the voters' lease (thesis §3.10).
                if self.role != Role::Leader && self.is_voter() {
                    self.hup(true, RoleCause::TransferRequested { from: m.from });
                }
            }
        }
        Ok(())
    }

    /// Any append, heartbeat or snapshot at our term comes from the one
    /// leader of that term (Election Safety).
    fn hear_from_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != from {
            let term = self.term;
            self.become_follower(term, from, RoleCause::LeaderHeard { from });
        }
        self.election_elapsed = 0;
    }

    fn validate(&self, m: &Message) -> Result<(), StepError> {
        let me = self.id();
        if m.to != me {
            return Err(StepError::WrongRecipient { to: m.to, me });
        }
        if m.from == me || m.from == 0 {
            return Err(StepError::UnknownSender(m.from));
        }
        // A sender missing from our configuration may still be legitimate:
        // a leader (its term proves it) or a candidate of a configuration
        // this node has not received yet. Anything else from it is refused.
        let from_outsider_allowed = matches!(
            m.body,
            MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::PreVote { .. }
                | MessageBody::Vote { .. }
        ) || (m.from == self.leader);
        if !self.membership.contains(m.from) && !from_outsider_allowed {
            return Err(StepError::UnknownSender(m.from));
        }
        let malformed = |reason| {
            Err(StepError::Malformed {
                kind: m.body.kind(),
                reason,
            })
        };
        match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                ..
            } => {
                if *prev_term > m.term {
                    return malformed("prev_term above the message term");
                }
                let mut expected_term = *prev_term;
                for (i, e) in entries.iter().enumerate() {
                    if prev_index.checked_add(i as u64 + 1) != Some(e.index) {
                        return malformed("entries are not contiguous after prev_index");
                    }
                    if e.term < expected_term || e.term > m.term {
                        return malformed("entry terms out of order");
                    }
                    if let Payload::Config(c) = &e.payload {
                        if c.validate().is_err() {
                            return malformed("invalid configuration entry");
                        }
                    }
                    expected_term = e.term;
                }
            }
            MessageBody::InstallSnapshot { snapshot } => {
                if snapshot.meta.index == 0 || snapshot.meta.term > m.term {
                    return malformed("snapshot index or term out of range");
                }
                if snapshot.meta.membership.validate().is_err() {
                    return malformed("snapshot with an invalid configuration");
                }
            }
            MessageBody::AppendResponse { success, index, .. }
                if self.role == Role::Leader && *success && *index > self.log.last_index() =>
            {
                return malformed("acknowledges entries the leader never sent");
            }
            _ => {}
        }
        Ok(())
    }

    // ----- client requests -----

    pub(crate) fn append_entry(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index() + 1;
        self.log.push(Entry {
            term: self.term,
            index,
            payload,
        });
        self.needs_broadcast = true;
        index
    }

    pub(crate) fn check_can_propose(&self) -> Result<(), NotAccepted> {
        if self.role != Role::Leader {
            return Err(NotAccepted::NotLeader {
                leader: (self.leader != 0).then_some(self.leader),
            });
        }
        // No new proposals while handing leadership over (thesis §3.10).
        if self.transferee.is_some() {
            return Err(NotAccepted::Transferring);
        }
        Ok(())
    }

    pub(crate) fn transfer_leader(&mut self, to: NodeId) -> Result<(), NotAccepted> {
        if self.role != Role::Leader {
            return Err(NotAccepted::NotLeader {
                leader: (self.leader != 0).then_some(self.leader),
            });
        }
        if !self.membership.voters.contains(&to) {
            return Err(NotAccepted::UnknownNode(to));
        }
        if to == self.id() {
            return Ok(());
        }
        self.transferee = Some(to);
        self.election_elapsed = 0;
        self.maybe_send_timeout_now(to);
        Ok(())
    }

    /// Sends TimeoutNow once the transferee holds the whole log, so that it
    /// is sure to win the election it starts.
    fn maybe_send_timeout_now(&mut self, to: NodeId) {
        if self.transferee != Some(to) {
            return;
        }
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.replicate_to(to, true);
        }
    }

    /// The driver persisted entries; the leader counts its own copy now.
    pub(crate) fn on_persisted(&mut self) {
        if self.role == Role::Leader && self.maybe_commit() {
            self.broadcast_commit();
        }
    }

    /// Sends what proposals appended since the last `Ready`.
    pub(crate) fn flush(&mut self) {
        if self.needs_broadcast {
            self.needs_broadcast = false;
            if self.role == Role::Leader {
                for id in self.peers() {
                    self.replicate_to(id, false);
                }
                // A single-node cluster commits as soon as its log is durable.
                if self.maybe_commit() {
                    self.broadcast_commit();
                }
            }
        }
    }

    /// `(elapsed, fires at)` of the election timer, in ticks. A leader's
    /// timer paces its CheckQuorum rounds at `election_tick`; everyone
    /// else's fires at the randomized timeout.
    pub(crate) fn election_timer(&self) -> (u64, u64) {
        let timeout = if self.role == Role::Leader {
            self.cfg.election_tick
        } else {
            self.randomized_timeout
        };
        (self.election_elapsed, timeout)
    }

    pub(crate) fn has_pending_broadcast(&self) -> bool {
        self.needs_broadcast
    }

    pub(crate) fn campaign(&mut self) {
        if self.role != Role::Leader {
            self.hup(false, RoleCause::Campaign);
        }
    }
}
