//! Membership changes through the log (thesis §4): learners, joint
//! consensus for every change of voters, one change at a time, automatic
//! promotion of caught-up learners, and a removed leader stepping down.
//!
//! Rules enforced here:
//! - A configuration takes effect as soon as it is in a node's log, committed
//!   or not (§4.1); a truncated configuration entry reverts it.
//! - A change of voters first enters the joint configuration `C_old,new`,
//!   where every decision needs both majorities; once that entry commits the
//!   leader appends `C_new` on its own (§4.3).
//! - At most one change is in flight: no new change while a configuration
//!   entry is uncommitted or a joint phase is not over.
//! - A new leader proposes no change before an entry of its own term is
//!   committed: an earlier leader's uncommitted change could otherwise
//!   combine with the new one into two disjoint majorities (the
//!   single-server change bug, Ongaro 2015).
//! - A leader that is not a voter of the committed configuration steps down.

use super::Raft;
use crate::config::NotAccepted;
use crate::message::MessageBody;
use crate::progress::{Progress, ProgressState};
use crate::types::{
    ConfChange, ConfChangeError, Index, Membership, NodeId, Payload, Role, RoleCause,
};

impl Raft {
    /// Proposes `change`; returns the index of its configuration entry.
    /// Without `force`, refuses a change after which the members heard from
    /// recently could not make a quorum.
    pub(crate) fn propose_conf_change(
        &mut self,
        change: &ConfChange,
        force: bool,
    ) -> Result<Index, NotAccepted> {
        self.check_can_propose()?;
        #[cfg(feature = "faults")]
        let unsafe_change = self.cfg.faults.unsafe_conf_change;
        #[cfg(not(feature = "faults"))]
        let unsafe_change = false;
        if !unsafe_change {
            if self.log.term(self.log.commit) != Some(self.term) {
                return Err(ConfChangeError::LeaderNotReady.into());
            }
            if self.config_index > self.log.commit || self.membership.is_joint() {
                return Err(ConfChangeError::InProgress.into());
            }
        }
        let base = if unsafe_change {
            self.membership.leave_joint()
        } else {
            self.membership.clone()
        };
        let mut next = base.apply(change)?;
        if unsafe_change {
            // The broken rule under test: voters change in one step.
            next = next.leave_joint();
        }
        if !force {
            let up = self.members_up();
            let reachable = |m: &Membership| m.has_quorum(|id| up.contains(&id));
            if !reachable(&next) || (next.is_joint() && !reachable(&next.leave_joint())) {
                return Err(ConfChangeError::NoQuorum { up }.into());
            }
        }
        Ok(self.append_config(next))
    }

    /// This node and every member it heard from within an election timeout
    /// (leader only). A member that lost its log answers, but can
    /// acknowledge nothing: it is not up.
    fn members_up(&self) -> Vec<NodeId> {
        let recent = self.cfg.election_tick;
        let mut up: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| {
                p.ticks_since_contact <= recent
                    && p.match_index > 0
                    && !matches!(p.state, ProgressState::LogLost { .. })
            })
            .map(|(&id, _)| id)
            .collect();
        up.push(self.id());
        up.sort_unstable();
        up
    }

    fn append_config(&mut self, next: Membership) -> Index {
        let index = self.append_entry(Payload::Config(next.clone()));
        self.set_membership(index, next);
        index
    }

    /// The log changed below or at the configuration in force, or new
    /// entries may carry one: take the newest configuration in the log.
    pub(super) fn reload_membership(&mut self) {
        let (index, m) = self.log.config_at(self.log.last_index());
        if index != self.config_index || *m != self.membership {
            let m = m.clone();
            self.set_membership(index, m);
        }
    }

    pub(super) fn set_membership(&mut self, index: Index, next: Membership) {
        self.config_index = index;
        self.membership = next;
        let me = self.id();
        match self.role {
            Role::Leader => {
                // Replicate to every member, learners included; forget
                // progress of those that left.
                let next_index = self.log.last_index() + 1;
                let members = self.membership.ids();
                self.progress.retain(|id, _| members.contains(id));
                for id in members.into_iter().filter(|&id| id != me) {
                    self.progress
                        .entry(id)
                        .or_insert_with(|| Progress::new(next_index));
                }
                if self
                    .transferee
                    .is_some_and(|t| !self.membership.is_voter(t))
                {
                    self.transferee = None;
                }
            }
            Role::Candidate | Role::PreCandidate if !self.membership.is_voter(me) => {
                let term = self.term;
                self.become_follower(term, 0, RoleCause::NoLongerVoter);
            }
            _ => {}
        }
    }

    /// The leader's commit index moved: finish a joint phase, or step down
    /// when the committed configuration no longer has this node as a voter.
    pub(super) fn on_commit_advanced(&mut self) {
        if self.role != Role::Leader || self.config_index > self.log.commit {
            return;
        }
        if self.membership.is_joint() {
            // C_old,new is committed: C_new can be entered (thesis §4.3).
            let next = self.membership.leave_joint();
            self.append_config(next);
        } else if !self.membership.is_voter(self.id()) {
            // A leader outside the committed configuration steps down
            // (thesis §4.2.2), handing over to the most caught-up voter so
            // the cluster does not wait for an election timeout.
            let last = self.log.last_index();
            let heir = self
                .progress
                .iter()
                .filter(|(&id, p)| self.membership.is_voter(id) && p.match_index == last)
                .map(|(&id, _)| id)
                .next();
            if let Some(heir) = heir {
                self.send(heir, MessageBody::TimeoutNow);
            }
            let term = self.term;
            self.become_follower(term, 0, RoleCause::NoLongerVoter);
        }
    }

    /// Leader, every tick: promotes an auto-promoted learner that has stayed
    /// within `promote_lag` entries of the log for `promote_after_ticks`.
    pub(super) fn maybe_auto_promote(&mut self) {
        if self.membership.auto_promote.is_empty() {
            return;
        }
        let last = self.log.last_index();
        let (lag, after) = (self.cfg.promote_lag, self.cfg.promote_after_ticks);
        let mut ready = None;
        for id in self.membership.auto_promote.clone() {
            let Some(pr) = self.progress.get_mut(&id) else {
                continue;
            };
            let caught_up = matches!(pr.state, ProgressState::Replicate)
                && pr.match_index + lag >= last
                && pr.ticks_since_contact <= 1 + self.cfg.heartbeat_tick;
            pr.caught_up_ticks = if caught_up { pr.caught_up_ticks + 1 } else { 0 };
            if pr.caught_up_ticks >= after && ready.is_none() {
                ready = Some(id);
            }
        }
        if let Some(id) = ready {
            // Refused while another change is in flight or before the
            // term's first commit: tried again on a later tick.
            let _ = self.propose_conf_change(&ConfChange::Promote { id }, false);
        }
    }
}
