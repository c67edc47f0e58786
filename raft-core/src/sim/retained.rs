//! How many records the simulator keeps, per structure: what a long run
//! (the dashboard's, which never ends) must keep bounded.

/// Record counts of one [`super::Cluster`] at a moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Client operations kept in the [`super::History`].
    pub history_ops: usize,
    /// Operations the online linearizability check keeps pending
    /// (answered ones waiting for their turn, abandoned writes).
    pub lin_pending: usize,
    /// Checker records: `(index, term)`s persisted (Log Matching).
    pub registry: usize,
    /// Checker records: configurations seen.
    pub configs: usize,
    /// Checker records: per term, the nodes' acknowledged log ends.
    pub acks: usize,
    /// Checker records: per term, the index a quorum acknowledged.
    pub quorum_commit: usize,
    /// Checker records: the committed prefix.
    pub committed: usize,
    /// Checker records: what was applied per index.
    pub applied: usize,
    /// Checker records: writes answered "not applied".
    pub not_applied: usize,
    /// Checker records: `(client_id, seq)` first application indexes.
    pub sessions: usize,
    /// Checker records: `(voter, term)` votes.
    pub votes: usize,
    /// Checker records: one leader per term.
    pub leaders: usize,
    /// Faults and actions in the fault log.
    pub fault_log: usize,
    /// Membership change outcomes.
    pub conf_log: usize,
    /// Client attempts waiting for a reply.
    pub attempts: usize,
}

impl Retained {
    /// All the invariant checker's records together.
    pub fn checker(&self) -> usize {
        self.registry
            + self.configs
            + self.acks
            + self.quorum_commit
            + self.committed
            + self.applied
            + self.not_applied
            + self.sessions
            + self.votes
            + self.leaders
    }
}
