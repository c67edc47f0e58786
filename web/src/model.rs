//! The one view model both views render: a cluster of [`NodeView`]s.
//!
//! The Live view builds it from `GET /cluster`; the Simulator view builds it
//! from the in-browser simulated cluster. The components (node card, log
//! strip, timeline) only ever see these types. Everything here is plain data
//! and pure functions, tested on the host.

use std::collections::BTreeMap;

use raft_core::wire::{ClusterResponse, MemberStatus, StatusResponse};
use raft_core::{Index, Membership, NodeId, Role, Term};

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

/// A node's place in the configuration in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// Votes (while joint: in both the old and the new voter sets).
    Voter,
    /// While joint: a voter of the new configuration only (being added).
    Joining,
    /// While joint: a voter of the old configuration only (being removed).
    Leaving,
    /// Receives the log and snapshots, never votes, never counts for a
    /// quorum. `promote`: the leader makes it a voter once it caught up.
    Learner {
        /// Promoted automatically once caught up.
        promote: bool,
    },
    /// Not in the configuration in force (removed; may still run).
    Removed,
    /// No configuration known.
    Unknown,
}

impl MemberKind {
    /// The stable name used in `data-member` and CSS.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Voter => "voter",
            MemberKind::Joining => "joining",
            MemberKind::Leaving => "leaving",
            MemberKind::Learner { .. } => "learner",
            MemberKind::Removed => "removed",
            MemberKind::Unknown => "unknown",
        }
    }

    /// A short human label.
    pub fn label(self) -> &'static str {
        match self {
            MemberKind::Voter => "voter",
            MemberKind::Joining => "voter (joining)",
            MemberKind::Leaving => "voter (leaving)",
            MemberKind::Learner { promote: false } => "learner",
            MemberKind::Learner { promote: true } => "learner · promoted when caught up",
            MemberKind::Removed => "removed",
            MemberKind::Unknown => "",
        }
    }

    /// Whether it votes in some majority of the configuration in force.
    pub fn votes(self) -> bool {
        matches!(
            self,
            MemberKind::Voter | MemberKind::Joining | MemberKind::Leaving
        )
    }
}

/// `{1,2,3}`.
pub fn id_set(ids: &[NodeId]) -> String {
    let ids: Vec<String> = ids.iter().map(NodeId::to_string).collect();
    format!("{{{}}}", ids.join(","))
}

/// The configuration in force, as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigView {
    /// The voters (while joint: of the configuration being entered).
    pub voters: Vec<NodeId>,
    /// While joint: the voters of the configuration being left; empty
    /// otherwise.
    pub outgoing: Vec<NodeId>,
    /// The learners.
    pub learners: Vec<NodeId>,
    /// The learners the leader promotes once they caught up.
    pub auto_promote: Vec<NodeId>,
    /// A change is under way: the configuration's entry is not committed
    /// yet (simulator), or not every member answering reports it (live).
    pub pending: bool,
}

impl ConfigView {
    /// The view of a configuration.
    pub fn from_membership(m: &Membership, pending: bool) -> ConfigView {
        ConfigView {
            voters: m.voters.clone(),
            outgoing: m.outgoing.clone(),
            learners: m.learners.clone(),
            auto_promote: m.auto_promote.clone(),
            pending,
        }
    }

    /// The configuration a member reports in its `/status`.
    pub fn from_status(s: &StatusResponse) -> ConfigView {
        ConfigView {
            voters: sorted(&s.members),
            outgoing: sorted(&s.outgoing),
            learners: sorted(&s.learners),
            auto_promote: Vec::new(),
            pending: false,
        }
    }

    /// Whether a change of voters is in its joint phase.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether the two describe the same members in the same roles.
    pub fn same_members(&self, other: &ConfigView) -> bool {
        self.voters == other.voters
            && self.outgoing == other.outgoing
            && self.learners == other.learners
    }

    /// `id`'s place in it.
    pub fn kind(&self, id: NodeId) -> MemberKind {
        let new = self.voters.contains(&id);
        let old = self.outgoing.contains(&id);
        match (new, old) {
            (true, true) => MemberKind::Voter,
            (true, false) if self.is_joint() => MemberKind::Joining,
            (true, false) => MemberKind::Voter,
            (false, true) => MemberKind::Leaving,
            (false, false) if self.learners.contains(&id) => MemberKind::Learner {
                promote: self.auto_promote.contains(&id),
            },
            (false, false) => MemberKind::Removed,
        }
    }

    /// The voter sets every decision needs a majority of: the voters, or
    /// while joint the old voters and the new ones (in that order).
    pub fn majorities(&self) -> Vec<&[NodeId]> {
        if self.is_joint() {
            vec![&self.outgoing, &self.voters]
        } else {
            vec![&self.voters]
        }
    }

    /// The voter sets in one line: `voters {1,2,3}` or, while joint,
    /// `joint: {1,2,3} → {1,2,4}`.
    pub fn voters_line(&self) -> String {
        if self.is_joint() {
            format!(
                "joint: {} → {}",
                id_set(&self.outgoing),
                id_set(&self.voters)
            )
        } else {
            format!("voters {}", id_set(&self.voters))
        }
    }

    /// The whole configuration in one line: the voter sets, then the
    /// learners (`+` marks one promoted when caught up).
    pub fn describe(&self) -> String {
        let mut s = self.voters_line();
        if !self.learners.is_empty() {
            let l: Vec<String> = self
                .learners
                .iter()
                .map(|id| {
                    if self.auto_promote.contains(id) {
                        format!("{id}+")
                    } else {
                        id.to_string()
                    }
                })
                .collect();
            s.push_str(&format!(" · learners {{{}}}", l.join(",")));
        }
        s
    }
}

/// The banner for a change under way: `(kind, text)` with kind `joint`
/// (both voter sets decide) or `pending` (the newest configuration has not
/// reached every member yet); `None` when the configuration is settled.
pub fn config_banner(c: &ConfigView) -> Option<(&'static str, String)> {
    if c.is_joint() {
        Some((
            "joint",
            format!(
                "Membership change in progress — joint consensus: voters {} → {}. \
                 Elections and commits need a majority of both sets until the leader enters the new configuration.",
                id_set(&c.outgoing),
                id_set(&c.voters)
            ),
        ))
    } else if c.pending {
        Some((
            "pending",
            format!(
                "Membership change under way: not every member reports the newest configuration ({}) yet.",
                c.describe()
            ),
        ))
    } else {
        None
    }
}

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
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
    /// The leader has not heard from it within an election timeout: shown
    /// as unreachable, whatever `state` still says.
    pub silent: bool,
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
    /// Votes while campaigning (simulator only): `(granted, needed)` for
    /// each majority the election needs (while joint: the old voters',
    /// then the new voters'); empty otherwise.
    pub votes: Vec<(usize, usize)>,
    /// Its place in the configuration in force.
    pub member: MemberKind,
    /// The log, as far as known.
    pub log: LogView,
}

impl NodeView {
    /// The vote tally while campaigning: `2 votes, 3 needed`, or while
    /// joint `old: 2 votes, 2 needed · new: 1 vote, 2 needed`; empty
    /// otherwise. (Not `2/3`: that reads as "2 of 3 members".)
    pub fn votes_text(&self) -> String {
        let tally =
            |g: usize, q: usize| format!("{g} vote{}, {q} needed", if g == 1 { "" } else { "s" });
        match self.votes.as_slice() {
            [] => String::new(),
            [(g, q)] => tally(*g, *q),
            [(og, oq), (ng, nq)] => format!("old: {} · new: {}", tally(*og, *oq), tally(*ng, *nq)),
            more => more
                .iter()
                .map(|(g, q)| tally(*g, *q))
                .collect::<Vec<_>>()
                .join(" · "),
        }
    }
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
    /// The configuration in force, when known.
    pub config: Option<ConfigView>,
    /// Directed links cut by a partition (simulator only; empty live).
    pub cut: Vec<(NodeId, NodeId)>,
}

/// One voter set and how much of it is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Majority {
    /// Its voters.
    pub voters: Vec<NodeId>,
    /// Voters answering now.
    pub up: usize,
    /// Votes a majority of it needs.
    pub quorum: usize,
}

impl Majority {
    /// The set `voters`, of which those for which `is_up` holds are up.
    pub fn of(voters: &[NodeId], is_up: impl Fn(NodeId) -> bool) -> Majority {
        Majority {
            voters: voters.to_vec(),
            up: voters.iter().filter(|&&id| is_up(id)).count(),
            quorum: voters.len() / 2 + 1,
        }
    }

    /// Its size.
    pub fn members(&self) -> usize {
        self.voters.len()
    }

    /// Voters that may still fail with a majority of it left.
    pub fn can_lose(&self) -> usize {
        self.up.saturating_sub(self.quorum)
    }

    /// Whether a majority of it is up.
    pub fn has_quorum(&self) -> bool {
        self.up >= self.quorum
    }
}

/// How many more members may fail before writes stop. Only voters count:
/// learners neither vote nor count for commit. While a change of voters is
/// joint, every decision needs both majorities, so the readout is the
/// weaker of the two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultTolerance {
    /// The voter sets every decision needs a majority of: one, or while
    /// joint the old voters' and then the new voters'.
    pub majorities: Vec<Majority>,
    /// Learners in the configuration (not counted).
    pub learners: usize,
}

impl FaultTolerance {
    /// Whether two majorities are needed (a joint phase).
    pub fn is_joint(&self) -> bool {
        self.majorities.len() > 1
    }

    /// Members that may still fail with every needed majority left (0 when
    /// none is left). A failure of a voter in both sets costs both.
    pub fn can_lose(&self) -> usize {
        self.majorities
            .iter()
            .map(Majority::can_lose)
            .min()
            .unwrap_or(0)
    }

    /// Whether every needed majority is up.
    pub fn has_quorum(&self) -> bool {
        !self.majorities.is_empty() && self.majorities.iter().all(Majority::has_quorum)
    }

    /// One line for the page.
    pub fn describe(&self) -> String {
        let learners = match self.learners {
            0 => String::new(),
            1 => " · 1 learner, not counted".into(),
            n => format!(" · {n} learners, not counted"),
        };
        let joint = self.is_joint();
        let half = |i: usize, m: &Majority| {
            if joint {
                format!(
                    "{} {}: {} of {} up, quorum {}",
                    if i == 0 { "old" } else { "new" },
                    id_set(&m.voters),
                    m.up,
                    m.members(),
                    m.quorum
                )
            } else {
                format!("{} of {} voters up, quorum {}", m.up, m.members(), m.quorum)
            }
        };
        if let Some((i, m)) = self
            .majorities
            .iter()
            .enumerate()
            .find(|(_, m)| !m.has_quorum())
        {
            let what = if joint {
                format!(
                    "{} voters {}",
                    if i == 0 { "old" } else { "new" },
                    id_set(&m.voters)
                )
            } else {
                "voters".into()
            };
            return format!(
                "no quorum: {} of {} {what} up, {} needed — writes are blocked{learners}",
                m.up,
                m.members(),
                m.quorum
            );
        }
        if self.majorities.is_empty() {
            return format!("no voters known{learners}");
        }
        let n = self.can_lose();
        let halves: Vec<String> = self
            .majorities
            .iter()
            .enumerate()
            .map(|(i, m)| half(i, m))
            .collect();
        format!(
            "can lose {n} member{} ({}{}){learners}",
            if n == 1 { "" } else { "s" },
            if joint {
                "joint, both majorities: "
            } else {
                ""
            },
            halves.join("; ")
        )
    }
}

/// How many cells of the tail the live view shows per node.
pub const LIVE_LOG_WINDOW: u64 = 24;

impl ClusterView {
    /// The view of a `GET /cluster` answer.
    pub fn from_wire(c: &ClusterResponse) -> ClusterView {
        let mut nodes: Vec<NodeView> = c
            .members
            .iter()
            .map(|m| member_view(m, c.served_by))
            .collect();
        let config = wire_config(c);
        if let Some(cfg) = &config {
            for n in &mut nodes {
                n.member = cfg.kind(n.id);
            }
        }
        ClusterView {
            nodes,
            leader: c.leader,
            served_by: Some(c.served_by),
            config,
            cut: Vec::new(),
        }
    }

    /// Fills in the terms and summaries of node `id`'s log cells from the
    /// entries read through `GET /log` (`index → (term, summary)`); cells
    /// whose entry was not read keep no term.
    pub fn apply_log(&mut self, id: NodeId, entries: &BTreeMap<Index, (Term, String)>) {
        let Some(n) = self.nodes.iter_mut().find(|n| n.id == id) else {
            return;
        };
        for c in &mut n.log.cells {
            if let Some((term, text)) = entries.get(&c.index) {
                c.term = Some(*term);
                c.text = text.clone();
            }
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

    /// The running nodes a majority can be made of: with links cut, the
    /// group of running nodes that can all talk to each other (both ways)
    /// and holds the most voters (the leader's group on a tie). A voter cut
    /// off from it cannot help commit, however healthy it is.
    fn reachable(&self) -> Vec<NodeId> {
        let running: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.role != RoleView::Down)
            .map(|n| n.id)
            .collect();
        if self.cut.is_empty() {
            return running;
        }
        let linked =
            |a: NodeId, b: NodeId| !self.cut.contains(&(a, b)) && !self.cut.contains(&(b, a));
        let voter = |id: NodeId| self.config.as_ref().is_none_or(|c| c.voters.contains(&id));
        let mut groups: Vec<Vec<NodeId>> = Vec::new();
        let mut seen: Vec<NodeId> = Vec::new();
        for &start in &running {
            if seen.contains(&start) {
                continue;
            }
            let mut group = vec![start];
            let mut i = 0;
            while i < group.len() {
                let at = group[i];
                for &other in &running {
                    if !group.contains(&other) && linked(at, other) {
                        group.push(other);
                    }
                }
                i += 1;
            }
            seen.extend(&group);
            groups.push(group);
        }
        let score = |g: &Vec<NodeId>| {
            let voters = g.iter().filter(|&&id| voter(id)).count();
            (voters, self.leader.is_some_and(|l| g.contains(&l)))
        };
        groups.into_iter().max_by_key(score).unwrap_or_default()
    }

    /// Fault tolerance right now, by the configuration in force (every
    /// node a voter when none is known). A voter counts as up when it runs
    /// and is in the group a majority can be made of ([`Self::reachable`]).
    pub fn fault_tolerance(&self) -> FaultTolerance {
        let reachable = self.reachable();
        let is_up = |id: NodeId| reachable.contains(&id);
        match &self.config {
            Some(c) => FaultTolerance {
                majorities: c
                    .majorities()
                    .into_iter()
                    .map(|set| Majority::of(set, is_up))
                    .collect(),
                learners: c.learners.len(),
            },
            None => {
                let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
                FaultTolerance {
                    majorities: vec![Majority::of(&ids, is_up)],
                    learners: 0,
                }
            }
        }
    }
}

/// The configuration in force as `GET /cluster` tells it: the one the
/// leader reports (the newest: a change starts there), else the serving
/// node's, else any member's. It is `pending` while a member of it that
/// answered reports another (the change has not reached every member yet).
fn wire_config(c: &ClusterResponse) -> Option<ConfigView> {
    let answered = || c.members.iter().filter_map(|m| m.status.as_ref());
    let source = answered()
        .filter(|s| s.role == Role::Leader)
        .max_by_key(|s| s.term)
        .or_else(|| answered().find(|s| s.id == c.served_by))
        .or_else(|| answered().next())?;
    let mut config = ConfigView::from_status(source);
    config.pending = answered().any(|s| {
        config.kind(s.id) != MemberKind::Removed
            && !ConfigView::from_status(s).same_members(&config)
    });
    Some(config)
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
        votes: Vec::new(),
        member: MemberKind::Unknown,
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
            silent: f.silent,
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

    /// The events up to time `at`: what the timeline may show at `at` (a
    /// run scrubbed back keeps its recorded future, which must not show).
    pub fn until(&self, at: u64) -> Timeline {
        Timeline {
            events: self.events.iter().filter(|e| e.at <= at).cloned().collect(),
        }
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
                    silent: false,
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
        let m = &ft.majorities[0];
        assert_eq!((m.members(), m.up, m.quorum, ft.can_lose()), (3, 2, 2, 0));
        assert!(!ft.is_joint());
        assert!(
            ft.describe().starts_with("can lose 0 members"),
            "{}",
            ft.describe()
        );
        let five = FaultTolerance {
            majorities: vec![Majority::of(&[1, 2, 3, 4, 5], |_| true)],
            learners: 0,
        };
        assert_eq!(five.can_lose(), 2);
        let lost = FaultTolerance {
            majorities: vec![Majority::of(&[1, 2, 3], |id| id == 1)],
            learners: 0,
        };
        assert!(lost.describe().starts_with("no quorum"));
    }

    /// With every node running but the links between {1} and {2, 3} cut,
    /// only the larger side can form a majority: 2 of 3 count, although
    /// nobody is down.
    #[test]
    fn a_partition_counts_only_the_side_a_majority_can_form_on() {
        let mut c = cluster();
        c.members[2].status = Some(status(3, Role::Follower, 3, 40));
        c.members[2].error = None;
        let mut v = ClusterView::from_wire(&c);
        assert_eq!(v.fault_tolerance().can_lose(), 1, "all three up and linked");
        v.cut = vec![(1, 2), (2, 1), (1, 3), (3, 1)];
        let ft = v.fault_tolerance();
        assert_eq!(ft.majorities[0].up, 2, "{}", ft.describe());
        assert_eq!(ft.can_lose(), 0, "{}", ft.describe());
        // A cut between two followers leaves all three together: each
        // still talks both ways with leader 1.
        v.cut = vec![(2, 3)];
        assert_eq!(v.fault_tolerance().majorities[0].up, 3);
        // Cut off both ways from everyone, 3 is out of the count.
        v.cut = vec![(3, 1), (2, 3)];
        assert_eq!(v.fault_tolerance().majorities[0].up, 2);
    }

    #[test]
    fn vote_tallies_name_what_is_needed() {
        let mut n = ClusterView::from_wire(&cluster()).nodes[0].clone();
        n.votes = vec![(5, 3)];
        assert_eq!(n.votes_text(), "5 votes, 3 needed");
        n.votes = vec![(1, 2), (2, 2)];
        assert_eq!(
            n.votes_text(),
            "old: 1 vote, 2 needed · new: 2 votes, 2 needed"
        );
    }

    /// A 3-voter cluster with learner 4 (which answers) and voter 3 down.
    fn with_learner() -> ClusterResponse {
        let mut c = cluster();
        for m in &mut c.members {
            if let Some(s) = &mut m.status {
                s.learners = vec![4];
            }
        }
        let mut s4 = status(4, Role::Follower, 3, 40);
        s4.learners = vec![4];
        c.members.push(MemberStatus {
            id: 4,
            url: "http://127.0.0.1:3004".into(),
            status: Some(s4),
            error: None,
        });
        c
    }

    #[test]
    fn learners_are_shown_and_not_counted() {
        let v = ClusterView::from_wire(&with_learner());
        let c = v.config.as_ref().expect("a configuration");
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3], vec![4])
        );
        assert!(!c.is_joint() && !c.pending);
        assert_eq!(v.node(1).unwrap().member, MemberKind::Voter);
        assert_eq!(
            v.node(4).unwrap().member,
            MemberKind::Learner { promote: false }
        );
        assert!(!v.node(4).unwrap().member.votes());
        // 4 nodes answer but only voters count: 2 of 3 up, quorum 2.
        let ft = v.fault_tolerance();
        assert_eq!(ft.majorities.len(), 1);
        let m = &ft.majorities[0];
        assert_eq!((m.members(), m.up, m.quorum), (3, 2, 2));
        assert_eq!(ft.can_lose(), 0);
        assert_eq!(
            ft.describe(),
            "can lose 0 members (2 of 3 voters up, quorum 2) · 1 learner, not counted"
        );
        assert_eq!(c.describe(), "voters {1,2,3} · learners {4}");
        assert_eq!(config_banner(c), None);
    }

    #[test]
    fn joint_phase_needs_both_majorities() {
        // Replacing 3 by 4: the leader is in C_{1,2,3},{1,2,4}; 3 is down.
        let mut c = with_learner();
        for m in &mut c.members {
            if let Some(s) = &mut m.status {
                s.members = vec![1, 2, 4];
                s.outgoing = vec![1, 2, 3];
                s.learners = vec![];
            }
        }
        let v = ClusterView::from_wire(&c);
        let cfg = v.config.as_ref().unwrap();
        assert!(cfg.is_joint());
        assert_eq!(cfg.voters_line(), "joint: {1,2,3} → {1,2,4}");
        assert_eq!(v.node(1).unwrap().member, MemberKind::Voter);
        assert_eq!(v.node(3).unwrap().member, MemberKind::Leaving);
        assert_eq!(v.node(4).unwrap().member, MemberKind::Joining);
        let ft = v.fault_tolerance();
        assert!(ft.is_joint());
        // Old {1,2,3}: 2 up (3 is down), new {1,2,4}: 3 up; the old set
        // decides: no failure tolerated.
        assert_eq!(
            ft.majorities
                .iter()
                .map(|m| (m.up, m.quorum))
                .collect::<Vec<_>>(),
            vec![(2, 2), (3, 2)]
        );
        assert_eq!(ft.can_lose(), 0);
        assert!(ft.has_quorum());
        assert_eq!(
            ft.describe(),
            "can lose 0 members (joint, both majorities: old {1,2,3}: 2 of 3 up, quorum 2; \
             new {1,2,4}: 3 of 3 up, quorum 2)"
        );
        let (kind, text) = config_banner(cfg).expect("a banner");
        assert_eq!(kind, "joint");
        assert!(text.contains("{1,2,3} → {1,2,4}"), "{text}");
        // With 2 down as well the old voters lose their majority.
        c.members[1].status = None;
        let ft = ClusterView::from_wire(&c).fault_tolerance();
        assert!(!ft.has_quorum());
        assert!(
            ft.describe()
                .starts_with("no quorum: 1 of 3 old voters {1,2,3} up, 2 needed"),
            "{}",
            ft.describe()
        );
    }

    #[test]
    fn a_change_not_everywhere_yet_is_pending() {
        // The leader already added learner 4; follower 2 has not heard yet.
        let mut c = with_learner();
        c.members[1].status.as_mut().unwrap().learners = vec![];
        let v = ClusterView::from_wire(&c);
        let cfg = v.config.as_ref().unwrap();
        assert_eq!(cfg.learners, vec![4], "the leader's configuration");
        assert!(cfg.pending);
        assert_eq!(config_banner(cfg).map(|b| b.0), Some("pending"));
        // A removed member that still answers with its old view does not
        // make the configuration pending.
        let mut c = cluster();
        for m in &mut c.members {
            if let Some(s) = &mut m.status {
                s.members = vec![1, 2];
            }
        }
        c.members[2].status = Some(status(3, Role::Follower, 3, 40));
        let v = ClusterView::from_wire(&c);
        assert_eq!(v.node(3).unwrap().member, MemberKind::Removed);
        assert!(!v.config.as_ref().unwrap().pending);
        assert_eq!(v.fault_tolerance().majorities[0].members(), 2);
    }

    #[test]
    fn without_a_leader_the_serving_node_tells_the_configuration() {
        let mut c = cluster();
        c.members[0].status = None;
        c.members[1].status.as_mut().unwrap().learners = vec![5];
        let v = ClusterView::from_wire(&c);
        assert_eq!(v.config.as_ref().unwrap().learners, vec![5]);
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
    fn a_timeline_scrubbed_back_shows_no_future_term() {
        let mut t = Timeline::default();
        t.observe(10, 1, Some(1));
        t.observe(50, 2, Some(2));
        t.observe(90, 3, Some(3));
        let terms = |t: &Timeline| t.events.iter().map(|e| e.term).collect::<Vec<_>>();
        assert_eq!(terms(&t.until(60)), vec![1, 2]);
        assert_eq!(terms(&t.until(9)), Vec::<Term>::new());
        assert_eq!(terms(&t.until(90)), vec![1, 2, 3]);
    }

    #[test]
    fn live_log_cells_take_the_terms_read_through_the_log_route() {
        let mut c = cluster();
        c.members[0].status = Some(status(1, Role::Leader, 2, 5));
        let mut v = ClusterView::from_wire(&c);
        let entries = BTreeMap::from([(4, (2, "put k".to_string())), (5, (2, "noop".into()))]);
        v.apply_log(1, &entries);
        let cells = &v.node(1).unwrap().log.cells;
        let cell = |i: Index| cells.iter().find(|c| c.index == i).unwrap();
        assert_eq!((cell(4).term, cell(4).text.as_str()), (Some(2), "put k"));
        assert_eq!(cell(3).term, None, "an entry not read keeps no term");
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
