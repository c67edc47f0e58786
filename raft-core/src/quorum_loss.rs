//! Recovery from the loss of a quorum: a surviving member's persisted state
//! rewritten into a cluster of which it is the only voter
//! (`raft-kv-server --force-new-cluster`, as etcd's flag of that name).
//!
//! This breaks Raft's rules on purpose, once, by an operator's decision:
//! the members that are gone can no longer vote, so nothing can be
//! committed the normal way. The rewrite appends one configuration entry
//! naming this node alone and commits everything up to it by fiat.
//!
//! What it keeps. Every entry the survivor holds is kept and committed,
//! including those it never learnt were committed. An entry acknowledged
//! to a client was on a majority; if the survivor holds it, it survives
//! here, whereas dropping the uncommitted tail (as etcd does) could lose a
//! write the client was told succeeded. Entries that were never committed
//! are applied too: their clients were never told anything (their outcome
//! was unknown), so applying them breaks no promise.
//!
//! Why a new term. The entry is written at a term above every term the
//! survivor has seen, so no other log can hold a different entry of that
//! term: should an old member ever come back, Log Matching still holds
//! between the two logs (it is refused anyway: it is no longer a member).

use crate::types::{Entry, HardState, Index, Membership, NodeId, Payload, PersistedState, Term};

/// What forcing a single-voter cluster writes to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standalone {
    /// The configuration entry naming this node alone, after the last one.
    pub entry: Entry,
    /// The new hard state: the entry's term, a vote for itself (so it can
    /// never vote for another node in that term), and the entry committed.
    pub hard_state: HardState,
}

impl Standalone {
    /// The rewrite for node `id` of `state`. Refused for a node that holds
    /// no configuration (it never joined: there is nothing to recover) or
    /// that is not a member of its latest configuration.
    pub fn for_node(state: &PersistedState, id: NodeId) -> Result<Standalone, String> {
        let (last_index, last_term) = last_entry(state);
        let Some(current) = latest_membership(state) else {
            return Err(
                "this node holds no configuration: it never joined a cluster, \
                 so there is nothing to recover"
                    .into(),
            );
        };
        if !current.contains(id) {
            return Err(format!(
                "node {id} is not a member of its latest configuration ({:?}): it was \
                 removed, and its data may be behind the cluster's",
                current.ids()
            ));
        }
        let mut alone = Membership::new(vec![id]);
        if let Some(url) = current.address(id) {
            alone.addresses.insert(id, url.to_string());
        }
        let term: Term = state.hard_state.term.max(last_term) + 1;
        let index: Index = last_index + 1;
        Ok(Standalone {
            entry: Entry {
                term,
                index,
                payload: Payload::Config(alone),
            },
            hard_state: HardState {
                term,
                vote: id,
                commit: index,
            },
        })
    }

    /// `state` with the rewrite applied (what a restart then loads).
    pub fn apply_to(&self, state: &PersistedState) -> PersistedState {
        let mut out = state.clone();
        out.entries.push(self.entry.clone());
        out.hard_state = self.hard_state;
        out
    }
}

/// The index and term of the last entry (or of the snapshot, if the log
/// after it is empty).
fn last_entry(state: &PersistedState) -> (Index, Term) {
    match state.entries.last() {
        Some(e) => (e.index, e.term),
        None => state
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.index, s.meta.term)),
    }
}

/// The newest configuration in the log, else the snapshot's.
fn latest_membership(state: &PersistedState) -> Option<&Membership> {
    let from_log = state.entries.iter().rev().find_map(|e| match &e.payload {
        Payload::Config(m) => Some(m),
        _ => None,
    });
    from_log
        .or_else(|| state.snapshot.as_ref().map(|s| &s.meta.membership))
        .filter(|m| !m.ids().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::kv::{Command, Op};
    use crate::replica::{Replica, SnapshotPolicy};

    fn put(index: Index, term: Term, key: &str) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Command(std::sync::Arc::new(Command {
                client_id: 0,
                seq: 0,
                op: Op::Put {
                    key: key.into(),
                    value: "v".into(),
                },
            })),
        }
    }

    /// A follower of a three-node cluster whose commit index lags: it holds
    /// entries 2-4 but learnt only that 2 was committed.
    fn survivor() -> PersistedState {
        let mut state = PersistedState::bootstrap(Membership::new(vec![1, 2, 3]));
        state
            .entries
            .extend([put(2, 1, "a"), put(3, 1, "b"), put(4, 2, "c")]);
        state.hard_state = HardState {
            term: 3,
            vote: 2,
            commit: 2,
        };
        state
    }

    #[test]
    fn the_survivor_keeps_every_entry_and_leads_alone() {
        let state = survivor();
        let forced = Standalone::for_node(&state, 3).unwrap();
        assert_eq!(forced.entry.index, 5);
        assert_eq!(forced.entry.term, 4, "above every term it has seen");
        assert_eq!(
            forced.hard_state,
            HardState {
                term: 4,
                vote: 3,
                commit: 5
            }
        );
        let restarted = forced.apply_to(&state);
        let mut config = Config::new(3);
        config.seed = 7;
        let mut replica = Replica::new(config, restarted, SnapshotPolicy::default()).unwrap();
        // A lone voter campaigns at once and wins by its own vote.
        while replica.has_ready() {
            let rd = replica.ready();
            replica.advance(rd, None).unwrap();
        }
        assert!(replica.raw().is_leader());
        assert_eq!(replica.raw().membership().voters, vec![3]);
        for key in ["a", "b", "c"] {
            assert_eq!(replica.kv().get(key), Some("v"), "{key}");
        }
    }

    #[test]
    fn a_node_outside_its_configuration_or_without_one_is_refused() {
        let state = survivor();
        let err = Standalone::for_node(&state, 4).unwrap_err();
        assert!(err.contains("not a member"), "{err}");
        let err = Standalone::for_node(&PersistedState::default(), 1).unwrap_err();
        assert!(err.contains("never joined"), "{err}");
    }

    #[test]
    fn the_address_is_kept() {
        let mut state = survivor();
        let urls = [(1, "http://a"), (2, "http://b"), (3, "http://c")]
            .map(|(id, u)| (id, u.to_string()))
            .into_iter()
            .collect();
        state.entries[0].payload = Payload::Config(Membership::with_addresses(urls));
        let forced = Standalone::for_node(&state, 2).unwrap();
        let Payload::Config(m) = &forced.entry.payload else {
            panic!("a configuration entry");
        };
        assert_eq!(m.voters, vec![2]);
        assert_eq!(m.address(2), Some("http://b"));
        assert_eq!(m.address(1), None);
    }
}
