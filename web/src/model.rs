//! The one view model both views render: a cluster of [`NodeView`]s.
//!
//! The Live view builds it from `GET /cluster`; the Simulator view builds it
//! from the in-browser simulated cluster. The components (node card, log
//! strip, timeline) only ever see these types. Everything here is plain data
//! and pure functions, tested on the host.

use raft_core::wire::{ClusterResponse, MemberStatus};
use raft_core::{Index, NodeId, Role, Term};

/// What a node is doing, as far as the dashboard knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleView {
    /// Follows a leader.
    Follower,
    /// Asks for pre-votes.
    PreCandidate,
    /// Campaigns.
    Candidate,
    /// Leads.
    Leader,
    /// Did not answer (live) or is crashed (simulator).
    Down,
}

impl RoleView {
    /// The stable name used in `data-role` and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleView::Follower => "follower",
            RoleView::PreCandidate => "pre-candidate",
            RoleView::Candidate => "candidate",
            RoleView::Leader => "leader",
            RoleView::Down => "down",
        }
    }

    /// A short human label.
    pub fn label(self) -> &'static str {
        match self {
            RoleView::Follower => "follower",
            RoleView::PreCandidate => "pre-candidate",
            RoleView::Candidate => "candidate",
            RoleView::Leader => "leader",
            RoleView::Down => "down",
        }
    }
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        match r {
            Role::Follower => RoleView::Follower,
            Role::PreCandidate => RoleView::PreCandidate,
            Role::Candidate => RoleView::Candidate,
            Role::Leader => RoleView::Leader,
        }
    }
}

/// A follower's replication progress, as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerView {
    /// The follower.
    pub id: NodeId,
    /// Highest index known replicated on it.
    pub match_index: Index,
    /// Next index the leader sends.
    pub next_index: Index,
    /// `probe`, `replicate` or `snapshot`.
    pub state: String,
    /// Entries behind the leader's last index.
    pub lag: u64,
    /// Time since last contact, already formatted (`120 ms`, `3 ticks`).
    pub since_contact: String,
}

/// One log cell of a [`LogView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCell {
    /// Its index.
    pub index: Index,
    /// Its term, when known (the live API does not report entry terms).
    pub term: Option<Term>,
    /// A short text: `put k`, `del k`, `noop`, `conf`.
    pub text: String,
}

/// The part of a node's log the dashboard shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogView {
    /// The cells, ascending and contiguous.
    pub cells: Vec<LogCell>,
    /// Whether older entries exist before the first cell that are not shown
    /// (live view: only a window of the tail).
    pub elided_before: bool,
}

/// One node, as both views show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its address (live) or a short description (simulator).
    pub url: String,
    /// Its role, or down.
    pub role: RoleView,
    /// Current term (`None` when unknown).
    pub term: Option<Term>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its vote in the current term.
    pub vote: Option<NodeId>,
    /// Last log index.
    pub last_index: Index,
    /// Commit index.
    pub commit_index: Index,
    /// Applied index.
    pub applied_index: Index,
    /// Snapshot index (0: none).
    pub snapshot_index: Index,
    /// Keys in its state machine, when known.
    pub keys: Option<u64>,
    /// On a leader: each follower's progress.
    pub followers: Vec<FollowerView>,
    /// Why it could not be reached.
    pub error: Option<String>,
    /// Whether this node gathered the data (live: the page's origin).
    pub serving: bool,
    /// Election timer: `(elapsed, timeout)` ticks (simulator only).
    pub election_timer: Option<(u64, u64)>,
    /// Votes: `(granted, needed)` while campaigning (simulator only).
    pub votes: Option<(usize, usize)>,
    /// The log, as far as known.
    pub log: LogView,
}

/// A whole cluster at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Every member, in id order.
    pub nodes: Vec<NodeView>,
    /// The leader the serving node knows of.
    pub leader: Option<NodeId>,
    /// The serving node (live view).
    pub served_by: Option<NodeId>,
}

/// How many more members may fail before writes stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultTolerance {
    /// Voting members.
    pub members: usize,
    /// Members answering now.
    pub up: usize,
    /// Votes a quorum needs.
    pub quorum: usize,
}

impl FaultTolerance {
    /// Members that may still fail with a quorum left (0 when none is left).
    pub fn can_lose(&self) -> usize {
        self.up.saturating_sub(self.quorum)
    }

    /// Whether a quorum is up.
    pub fn has_quorum(&self) -> bool {
        self.up >= self.quorum
    }

    /// One line for the page.
    pub fn describe(&self) -> String {
        if !self.has_quorum() {
            return format!(
                "no quorum: {} of {} members up, {} needed — writes are blocked",
                self.up, self.members, self.quorum
            );
        }
        let n = self.can_lose();
        format!(
            "can lose {n} member{} ({} of {} up, quorum {})",
            if n == 1 { "" } else { "s" },
            self.up,
            self.members,
            self.quorum
        )
    }
}

/// How many cells of the tail the live view shows per node.
pub const LIVE_LOG_WINDOW: u64 = 24;

impl ClusterView {
    /// The view of a `GET /cluster` answer.
    pub fn from_wire(c: &ClusterResponse) -> ClusterView {
        let nodes = c
            .members
            .iter()
            .map(|m| member_view(m, c.served_by))
            .collect();
        ClusterView {
            nodes,
            leader: c.leader,
            served_by: Some(c.served_by),
        }
    }

    /// The node with `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The leader with the highest term among the nodes that answered (the
    /// one a client would reach), if any node claims to lead.
    pub fn current_leader(&self) -> Option<&NodeView> {
        self.nodes
            .iter()
            .filter(|n| n.role == RoleView::Leader)
            .max_by_key(|n| n.term)
    }

    /// The highest term any node reports.
    pub fn max_term(&self) -> Option<Term> {
        self.nodes.iter().filter_map(|n| n.term).max()
    }

    /// Fault tolerance right now.
    pub fn fault_tolerance(&self) -> FaultTolerance {
        let members = self.nodes.len();
        let up = self
            .nodes
            .iter()
            .filter(|n| n.role != RoleView::Down)
            .count();
        FaultTolerance {
            members,
            up,
            quorum: members / 2 + 1,
        }
    }
}

fn member_view(m: &MemberStatus, served_by: NodeId) -> NodeView {
    let mut v = NodeView {
        id: m.id,
        url: m.url.clone(),
        role: RoleView::Down,
        term: None,
        leader: None,
        vote: None,
        last_index: 0,
        commit_index: 0,
        applied_index: 0,
        snapshot_index: 0,
        keys: None,
        followers: Vec::new(),
        error: m.error.clone(),
        serving: m.id == served_by,
        election_timer: None,
        votes: None,
        log: LogView::default(),
    };
    let Some(s) = &m.status else {
        if v.error.is_none() {
            v.error = Some("no answer".into());
        }
        return v;
    };
    v.role = s.role.into();
    v.term = Some(s.term);
    v.leader = s.leader;
    v.vote = s.vote;
    v.last_index = s.last_index;
    v.commit_index = s.commit_index;
    v.applied_index = s.applied_index;
    v.snapshot_index = s.snapshot_index;
    v.keys = Some(s.keys);
    v.followers = s
        .followers
        .iter()
        .flatten()
        .map(|f| FollowerView {
            id: f.id,
            match_index: f.match_index,
            next_index: f.next_index,
            state: f.state.clone(),
            lag: f.lag,
            since_contact: format_ms(f.ms_since_contact),
        })
        .collect();
    let first = s
        .last_index
        .saturating_sub(LIVE_LOG_WINDOW - 1)
        .max(s.snapshot_index + 1)
        .max(1);
    v.log = LogView {
        cells: (first..=s.last_index)
            .map(|index| LogCell {
                index,
                term: None,
                text: String::new(),
            })
            .collect(),
        elided_before: first > s.snapshot_index + 1,
    };
    v
}

/// `950 ms`, `1.2 s`, `3 min`.
pub fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}

/// The colour of a term: a fixed palette, light enough for dark text.
pub fn term_color(term: Term) -> &'static str {
    const PALETTE: [&str; 10] = [
        "#9ecae1", "#fdd0a2", "#a1d99b", "#fcbba1", "#dadaeb", "#fdae6b", "#c7e9c0", "#fa9fb5",
        "#bcbddc", "#9edae5",
    ];
    PALETTE[(term % PALETTE.len() as u64) as usize]
}

/// One change seen on the timeline: a new term or a new leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEvent {
    /// When, in the view's own clock (ms since page open, or ticks).
    pub at: u64,
    /// The term.
    pub term: Term,
    /// The leader in that term, once known.
    pub leader: Option<NodeId>,
    /// A mark, e.g. `crash n2`, shown on the timeline.
    pub note: Option<String>,
}

/// Leader changes and terms seen so far, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The events.
    pub events: Vec<TimelineEvent>,
}

impl Timeline {
    /// Records the cluster's `(term, leader)` at time `at`; returns whether
    /// it added an event. A leader found later in an already-seen term fills
    /// that term's event in.
    pub fn observe(&mut self, at: u64, term: Term, leader: Option<NodeId>) -> bool {
        if let Some(last) = self.events.last_mut() {
            if term < last.term
                || (term == last.term && (leader.is_none() || leader == last.leader))
            {
                return false;
            }
            if term == last.term && last.leader.is_none() {
                last.leader = leader;
                return true;
            }
        }
        self.events.push(TimelineEvent {
            at,
            term,
            leader,
            note: None,
        });
        true
    }

    /// Records the cluster state from a view: the leader (with its term)
    /// when there is one, else the highest term seen with no leader.
    pub fn observe_view(&mut self, at: u64, v: &ClusterView) -> bool {
        match v.current_leader() {
            Some(l) => self.observe(at, l.term.unwrap_or(0), Some(l.id)),
            None => match v.max_term() {
                Some(t) => self.observe(at, t, None),
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::wire::{FollowerStatus, StatusResponse};

    fn status(id: NodeId, role: Role, term: Term, last: Index) -> StatusResponse {
        StatusResponse {
            id,
            url: format!("http://127.0.0.1:300{id}"),
            role,
            term,
            leader: Some(1),
            vote: Some(1),
            last_index: last,
            commit_index: last,
            applied_index: last,
            snapshot_index: 0,
            members: vec![1, 2, 3],
            learners: vec![],
            outgoing: vec![],
            cluster_id: "00000000000000ab".into(),
            keys: 0,
            followers: (role == Role::Leader).then(|| {
                vec![FollowerStatus {
                    id: 2,
                    match_index: last,
                    next_index: last + 1,
                    state: "replicate".into(),
                    lag: 0,
                    ticks_since_contact: 1,
                    ms_since_contact: 1500,
                }]
            }),
        }
    }

    fn cluster() -> ClusterResponse {
        ClusterResponse {
            served_by: 2,
            leader: Some(1),
            members: vec![
                MemberStatus {
                    id: 1,
                    url: "http://127.0.0.1:3001".into(),
                    status: Some(status(1, Role::Leader, 3, 40)),
                    error: None,
                },
                MemberStatus {
                    id: 2,
                    url: "http://127.0.0.1:3002".into(),
                    status: Some(status(2, Role::Follower, 3, 40)),
                    error: None,
                },
                MemberStatus {
                    id: 3,
                    url: "http://127.0.0.1:3003".into(),
                    status: None,
                    error: Some("connection refused".into()),
                },
            ],
        }
    }

    #[test]
    fn wire_to_view() {
        let v = ClusterView::from_wire(&cluster());
        assert_eq!(v.nodes.len(), 3);
        assert_eq!(v.current_leader().map(|n| n.id), Some(1));
        assert!(v.node(2).unwrap().serving);
        let down = v.node(3).unwrap();
        assert_eq!(down.role, RoleView::Down);
        assert_eq!(down.error.as_deref(), Some("connection refused"));
        let leader = v.node(1).unwrap();
        assert_eq!(leader.followers[0].since_contact, "1.5 s");
        assert_eq!(leader.log.cells.len() as u64, LIVE_LOG_WINDOW);
        assert_eq!(leader.log.cells.last().unwrap().index, 40);
        assert!(leader.log.elided_before);
    }

    #[test]
    fn fault_tolerance() {
        let v = ClusterView::from_wire(&cluster());
        let ft = v.fault_tolerance();
        assert_eq!((ft.members, ft.up, ft.quorum, ft.can_lose()), (3, 2, 2, 0));
        assert!(ft.describe().starts_with("can lose 0 members"));
        let five = FaultTolerance {
            members: 5,
            up: 5,
            quorum: 3,
        };
        assert_eq!(five.can_lose(), 2);
        let lost = FaultTolerance {
            members: 3,
            up: 1,
            quorum: 2,
        };
        assert!(lost.describe().starts_with("no quorum"));
    }

    #[test]
    fn timeline_records_changes_only() {
        let mut t = Timeline::default();
        assert!(t.observe(0, 1, None));
        assert!(t.observe(5, 1, Some(2)));
        assert!(!t.observe(6, 1, Some(2)));
        assert!(!t.observe(7, 0, Some(1)));
        assert!(t.observe(9, 2, Some(3)));
        assert_eq!(t.events.len(), 2);
        assert_eq!(t.events[0].leader, Some(2));
        assert_eq!(t.events[1].term, 2);
    }

    #[test]
    fn tiny_logs_have_no_elision() {
        let mut c = cluster();
        c.members[0].status = Some(status(1, Role::Leader, 1, 3));
        let v = ClusterView::from_wire(&c);
        let cells = &v.node(1).unwrap().log.cells;
        assert_eq!(
            cells.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(!v.node(1).unwrap().log.elided_before);
    }
}
