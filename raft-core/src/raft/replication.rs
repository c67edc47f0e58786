//! Log replication: the leader's side (appends, heartbeats, snapshots,
//! commit) and the follower's side (log matching, conflict truncation).

use super::Raft;
use crate::config::StepError;
use crate::message::MessageBody;
use crate::progress::ProgressState;
use crate::types::{Entry, Index, NodeId, Payload, Role, Snapshot, Term};

impl Raft {
    // ----- leader -----

    /// Sends `to` as many appends as its window allows. With `force`, sends
    /// one (possibly empty) append even when there is nothing new, to carry
    /// the commit index or to probe.
    pub(super) fn replicate_to(&mut self, to: NodeId, force: bool) {
        let mut sent_any = false;
        loop {
            let Some(pr) = self.progress.get(&to) else {
                return;
            };
            if pr.is_paused(self.cfg.max_inflight) {
                return;
            }
            let next = pr.next_index;
            if next > self.log.last_index() && (sent_any || !force) {
                return;
            }
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                // The follower needs entries we compacted away (paper §7).
                self.send_snapshot(to);
                return;
            };
            let entries = self.log.slice(next, self.cfg.max_batch_bytes);
            let last = entries.last().map_or(prev_index, |e| e.index);
            let empty = entries.is_empty();
            if let Some(pr) = self.progress.get_mut(&to) {
                if !(empty && pr.state == ProgressState::Replicate) {
                    pr.sent(last);
                }
            }
            let commit = self.log.commit;
            self.send(
                to,
                MessageBody::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                },
            );
            sent_any = true;
            if empty {
                return;
            }
        }
    }

    /// Sends the snapshot's metadata with no image: the driver fills in its
    /// newest persisted snapshot, which may be newer than this one (the
    /// catch-up margin keeps the core's behind the driver's newest). That is
    /// safe: a snapshot covers only applied, hence committed, entries, and
    /// a follower may install any committed prefix of the leader's log
    /// (paper §7). The follower then acknowledges the newer index, which
    /// is at least the one `become_snapshot` waits for, so its progress
    /// moves on to replicate from there.
    fn send_snapshot(&mut self, to: NodeId) {
        let snapshot = Snapshot {
            meta: self.log.snapshot.clone(),
            data: Vec::new(),
        };
        let index = snapshot.meta.index;
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        self.send(to, MessageBody::InstallSnapshot { snapshot });
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let read_ctx = self.reads.round;
        self.heartbeat_seq += 1;
        let seq = self.heartbeat_seq;
        for id in self.peers() {
            let Some(pr) = self.progress.get(&id) else {
                continue;
            };
            // Only what the follower is known to hold may be marked
            // committed on it: its log may still diverge after `match`. A
            // follower that lost its log holds nothing known.
            let commit = match pr.state {
                ProgressState::LogLost { .. } => 0,
                _ => self.log.commit.min(pr.match_index),
            };
            self.send(
                id,
                MessageBody::Heartbeat {
                    commit,
                    read_ctx,
                    seq,
                },
            );
        }
    }

    /// After the commit index moved, lets every follower know.
    pub(super) fn broadcast_commit(&mut self) {
        for id in self.peers() {
            self.replicate_to(id, true);
        }
    }

    /// Commits the highest index replicated on a majority, but only if that
    /// entry is from the current term (paper §5.4.2, figure 8): entries of
    /// earlier terms are committed indirectly, by the Log Matching Property.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let me = self.id();
        // Learners are not counted; while joint, both majorities must hold
        // the entry (thesis §4.3). A follower that lost its log no longer
        // holds what it acknowledged: its old acknowledgement counts for
        // nothing.
        let index = self.membership.committed_index(|id| {
            if id == me {
                self.log.persisted
            } else {
                self.progress.get(&id).map_or(0, |p| match p.state {
                    ProgressState::LogLost { .. } => 0,
                    _ => p.match_index,
                })
            }
        });
        if index <= self.log.commit {
            return false;
        }
        let current_term = self.log.term(index) == Some(self.term);
        #[cfg(feature = "faults")]
        let current_term = current_term || self.cfg.faults.commit_previous_term;
        if !current_term {
            return false;
        }
        self.log.commit_to(index);
        self.release_reads_waiting_for_commit();
        self.on_commit_advanced();
        true
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) {
        let max_inflight = self.cfg.max_inflight;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.ticks_since_contact = 0;
        if success {
            let was_paused = pr.is_paused(max_inflight);
            if pr.maybe_update(index) {
                pr.match_seq = self.heartbeat_seq;
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot { index: s } if pr.match_index >= s => {
                        pr.become_replicate()
                    }
                    _ => {}
                }
                if self.maybe_commit() {
                    self.broadcast_commit();
                }
                self.replicate_to(from, false);
                self.maybe_send_timeout_now(from);
            } else if was_paused {
                self.replicate_to(from, false);
            }
            return;
        }
        // A rejection. Ignore answers to appends we already moved past.
        let stale = match pr.state {
            ProgressState::Replicate => index <= pr.match_index,
            ProgressState::Probe => index + 1 != pr.next_index,
            ProgressState::Snapshot { .. } | ProgressState::LogLost { .. } => true,
        };
        if stale || index == 0 {
            return;
        }
        if pr.state == ProgressState::Probe && index == pr.match_index {
            // The probe at the follower's own match point failed. Either the
            // answer is an old one overtaken by its acknowledgement, or the
            // follower lost what it acknowledged; probing lower would never
            // end in the second case. Wait for the next heartbeat round:
            // its answer tells which (see `handle_heartbeat_response`).
            return;
        }
        // Fast back-off: jump to the last index where our log can agree
        // with the follower's hint, skipping a whole term per round trip.
        let snap_index = self.log.snapshot.index;
        let probe = if hint_index < snap_index {
            hint_index
        } else {
            self.log.conflict_hint(hint_index, hint_term).0
        };
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.become_probe((probe + 1).min(index));
        self.replicate_to(from, true);
    }

    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_ctx: u64,
        seq: u64,
        last_index: Index,
    ) {
        let snapshot_retry = 2 * self.cfg.election_tick;
        let max_inflight = self.cfg.max_inflight;
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        // In this term the follower acknowledged `match` durably, and no
        // leader can shorten its log below it without a newer term (which
        // would have reached us first). An answer to a round sent after that
        // acknowledgement with a shorter log proves the follower lost its
        // durable state (an emptied or replaced data directory): stop
        // replicating to it instead of probing forever.
        if seq > pr.match_seq
            && last_index < pr.match_index
            && !matches!(pr.state, ProgressState::LogLost { .. })
        {
            pr.state = ProgressState::LogLost {
                acknowledged: pr.match_index,
                reported: last_index,
            };
            self.lost_logs.push((from, pr.match_index, last_index));
        }
        pr.recent_active = true;
        pr.ticks_since_contact = 0;
        pr.read_acked = pr.read_acked.max(read_ctx);
        match pr.state {
            ProgressState::Probe => pr.probe_sent = false,
            // A full window whose appends were lost would stall replication
            // for good: nothing more is sent, so the follower never rejects
            // a gap. Free the oldest slot (etcd's `FreeFirstOne`) so the next
            // append goes out and a follower that misses entries rejects it.
            ProgressState::Replicate if pr.is_paused(max_inflight) => {
                pr.inflight.pop_front();
            }
            // The snapshot (or its answer) may have been lost: try again.
            ProgressState::Snapshot { .. } if pr.ticks_in_snapshot >= snapshot_retry => {
                let next = pr.match_index + 1;
                pr.become_probe(next);
            }
            _ => {}
        }
        if pr.match_index < last {
            // Forced: an append lost in replicate state is only noticed when
            // the follower rejects the next one, so send one even if there
            // is nothing new to send.
            self.replicate_to(from, true);
        }
        self.release_confirmed_reads();
    }

    // ----- follower -----

    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
        commit: Index,
    ) -> Result<(), StepError> {
        if prev_index < self.log.commit {
            // Everything up to our commit index must already match the
            // leader (Leader Completeness). An entry that contradicts one we
            // committed means safety is already broken: refuse, never
            // acknowledge past it.
            for e in entries.iter().take_while(|e| e.index <= self.log.commit) {
                if let Some(ours) = self.log.term(e.index) {
                    if ours != e.term {
                        return Err(StepError::CommittedConflict {
                            leader: from,
                            index: e.index,
                            ours,
                            theirs: e.term,
                        });
                    }
                }
            }
            let index = self.log.commit;
            self.send(from, ack(index));
            return Ok(());
        }
        if self.log.matches(prev_index, prev_term) {
            let config_index = self.config_index;
            let last_new = self.log.append_from_leader(prev_index, entries);
            // A configuration takes effect once in the log; a truncated one
            // stops being in force (thesis §4.1).
            let truncated_config = self.log.config_at(config_index).0 != config_index
                || self.log.last_index() < config_index;
            if truncated_config
                || entries
                    .iter()
                    .any(|e| matches!(e.payload, Payload::Config(_)))
            {
                self.reload_membership();
            }
            // Only what this message proved to match may be committed here.
            self.log.commit_to(commit.min(last_new));
            self.send(from, ack(last_new));
        } else {
            let (hint_index, hint_term) = self.log.conflict_hint(prev_index, prev_term);
            self.send(
                from,
                MessageBody::AppendResponse {
                    success: false,
                    index: prev_index,
                    hint_index,
                    hint_term,
                },
            );
        }
        Ok(())
    }

    pub(super) fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        if meta.index <= self.log.commit {
            let index = self.log.commit;
            self.send(from, ack(index));
            return;
        }
        if self.log.matches(meta.index, meta.term) {
            // We already hold the snapshot's last entry, so our log matches
            // up to there: just learn that it is committed.
            let index = meta.index;
            self.log.commit_to(index);
            self.send(from, ack(index));
            return;
        }
        let index = meta.index;
        let membership = meta.membership.clone();
        self.log.restore_snapshot(snapshot.meta.clone());
        self.set_membership(index, membership);
        self.received_snapshot = Some(snapshot);
        debug_assert_eq!(self.role, Role::Follower);
        self.send(from, ack(index));
    }
}

fn ack(index: Index) -> MessageBody {
    MessageBody::AppendResponse {
        success: true,
        index,
        hint_index: 0,
        hint_term: 0,
    }
}
