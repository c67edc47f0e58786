//! Narration: what changed between two moments of a cluster, in plain
//! language ("n3's election timer fired: it asks for votes in term 2";
//! "entry 5 committed: stored on 3 of 5 voters").
//!
//! Both views feed it consecutive [`ClusterView`]s (the Live view one per
//! poll, the Simulator one per frame) and show the lines newest first.
//! Pure functions over the shared view model, tested on the host.

use std::collections::VecDeque;

use crate::model::{ClusterView, NodeView, RoleView};

/// What a line is about (its `data-kind`, for colour and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Campaigns, votes, leaders, stepping down.
    Election,
    /// Entries committed.
    Commit,
    /// A member down or back.
    Fault,
    /// Snapshots taken or installed.
    Snapshot,
    /// The configuration changed.
    Config,
    /// Something the user did, and what came of it.
    Action,
}

impl LineKind {
    /// The stable name used in `data-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Election => "election",
            LineKind::Commit => "commit",
            LineKind::Fault => "fault",
            LineKind::Snapshot => "snapshot",
            LineKind::Config => "config",
            LineKind::Action => "action",
        }
    }
}

/// One narrated event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// What it is about.
    pub kind: LineKind,
    /// The sentence.
    pub text: String,
}

impl Line {
    fn new(kind: LineKind, text: String) -> Line {
        Line { kind, text }
    }
}

/// How the views name a member that is not running: the simulator crashes
/// nodes, the live view merely fails to reach them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The live cluster (down = did not answer).
    Live,
    /// The simulator (down = crashed).
    Sim,
}

/// The sentences for what changed from `prev` to `next`.
pub fn narrate(prev: &ClusterView, next: &ClusterView, source: Source) -> Vec<Line> {
    let mut lines = Vec::new();
    for n in &next.nodes {
        match prev.node(n.id) {
            Some(p) => node_changes(p, n, source, &mut lines),
            None => lines.push(Line::new(
                LineKind::Config,
                format!("n{} appears{}", n.id, member_suffix(n)),
            )),
        }
    }
    for p in &prev.nodes {
        if next.node(p.id).is_none() {
            lines.push(Line::new(
                LineKind::Config,
                format!("n{} is gone from the cluster", p.id),
            ));
        }
    }
    if let Some(line) = commit_line(prev, next) {
        lines.push(line);
    }
    if let (Some(a), Some(b)) = (&prev.config, &next.config) {
        if !a.same_members(b) {
            lines.push(Line::new(
                LineKind::Config,
                format!("the configuration is now {}", b.describe()),
            ));
        }
    }
    lines
}

fn member_suffix(n: &NodeView) -> String {
    let label = n.member.label();
    if label.is_empty() {
        String::new()
    } else {
        format!(" as a {label}")
    }
}

fn term_of(n: &NodeView) -> u64 {
    n.term.unwrap_or(0)
}

fn node_changes(p: &NodeView, n: &NodeView, source: Source, out: &mut Vec<Line>) {
    let id = n.id;
    let (was, is) = (p.role, n.role);
    if was != RoleView::Down && is == RoleView::Down {
        out.push(Line::new(
            LineKind::Fault,
            match source {
                Source::Sim => {
                    format!("n{id} crashed: it loses everything but its disk (term, vote and log)")
                }
                Source::Live => format!(
                    "n{id} unreachable ({})",
                    n.error
                        .as_deref()
                        .map_or("no answer".to_string(), human_error)
                ),
            },
        ));
        return;
    }
    if was == RoleView::Down && is != RoleView::Down {
        out.push(Line::new(
            LineKind::Fault,
            match source {
                Source::Sim => format!(
                    "n{id} restarted: it reloads term {}, its vote and its log from disk and starts as a {}",
                    term_of(n),
                    is.label()
                ),
                Source::Live => format!("n{id} answers again (a {}, term {})", is.label(), term_of(n)),
            },
        ));
        return;
    }
    if is == RoleView::Down {
        return;
    }
    let (t0, t1) = (term_of(p), term_of(n));
    if was != is {
        let text = match (was, is) {
            (_, RoleView::PreCandidate) => format!(
                "n{id}'s election timer fired: it asks for pre-votes for term {} (PreVote: its term stays {t1} unless a majority would vote for it)",
                t1 + 1
            ),
            (RoleView::PreCandidate, RoleView::Candidate) => format!(
                "n{id} won the pre-vote: it asks for votes in term {t1}"
            ),
            (_, RoleView::Candidate) => format!(
                "n{id}'s election timer fired: it asks for votes in term {t1}"
            ),
            (_, RoleView::Leader) => format!(
                "n{id} won the election: leader of term {t1}; it appends a no-op entry to commit"
            ),
            (RoleView::Leader, _) if t1 > t0 => format!(
                "n{id} steps down: it saw term {t1}, newer than its own {t0}"
            ),
            (RoleView::Leader, _) => format!(
                "n{id} steps down: it lost contact with a majority (CheckQuorum) or handed over"
            ),
            (RoleView::PreCandidate, _) if t1 == t0 => format!(
                "n{id} gave up its pre-vote: a majority still hears from a leader or has a newer log, so nobody's term changes"
            ),
            (RoleView::Candidate, _) if n.leader.is_some() => format!(
                "n{id} lost the election: n{} leads term {t1}",
                n.leader.unwrap_or(0)
            ),
            (_, _) => format!("n{id} is now a {} in term {t1}", is.label()),
        };
        out.push(Line::new(LineKind::Election, text));
    } else if is == RoleView::Candidate && t1 > t0 {
        out.push(Line::new(
            LineKind::Election,
            format!("n{id} got no majority in time: its timer fired again, it asks for votes in term {t1}"),
        ));
    }
    if n.snapshot_index > p.snapshot_index {
        let text = if n.snapshot_index > p.last_index && is != RoleView::Leader {
            format!(
                "n{id} installed a snapshot from the leader: entries up to {} in one piece (it was too far behind for the log)",
                n.snapshot_index
            )
        } else {
            format!(
                "n{id} compacted its log: entries up to {} now live in a snapshot",
                n.snapshot_index
            )
        };
        out.push(Line::new(LineKind::Snapshot, text));
    }
}

/// "entry 5 committed: stored on 3 of 5 voters", from the leader's view,
/// when the same leader's commit index moved on.
fn commit_line(prev: &ClusterView, next: &ClusterView) -> Option<Line> {
    let leader = next.current_leader()?;
    let before = prev.node(leader.id)?;
    if before.role != RoleView::Leader || before.term != leader.term {
        return None;
    }
    let (from, to) = (before.commit_index + 1, leader.commit_index);
    if to < from {
        return None;
    }
    let voters: Vec<u64> = match &next.config {
        Some(c) => {
            let mut v = c.voters.clone();
            v.extend(c.outgoing.iter().filter(|id| !c.voters.contains(id)));
            v
        }
        None => next.nodes.iter().map(|n| n.id).collect(),
    };
    let stored = voters
        .iter()
        .filter(|&&v| {
            v == leader.id
                || leader
                    .followers
                    .iter()
                    .any(|f| f.id == v && f.match_index >= to)
        })
        .count();
    let content = leader
        .log
        .cells
        .iter()
        .find(|c| c.index == to)
        .map(|c| c.text.as_str())
        .filter(|t| !t.is_empty())
        .map_or(String::new(), |t| format!(" ({t})"));
    let what = if from == to {
        format!("entry {to}{content} committed")
    } else {
        format!("entries {from}–{to} committed")
    };
    Some(Line::new(
        LineKind::Commit,
        format!(
            "{what}: stored on {stored} of {} voters, a majority",
            voters.len()
        ),
    ))
}

/// A transport error as a person reads it: `tcp connect error (os error
/// 111)` → `connection refused`.
pub fn human_error(raw: &str) -> String {
    let l = raw.to_lowercase();
    let known = [
        ("os error 111", "connection refused"),
        ("connection refused", "connection refused"),
        ("os error 113", "no route to host"),
        ("no route to host", "no route to host"),
        ("timed out", "no answer in time"),
        ("timeout", "no answer in time"),
        ("no answer within", "no answer in time"),
        ("connection reset", "connection reset"),
        ("failed to fetch", "the browser could not connect"),
        ("networkerror", "the browser could not connect"),
        ("dns", "name not found"),
        ("no address known", "no address known"),
    ];
    for (needle, said) in known {
        if l.contains(needle) {
            return said.to_string();
        }
    }
    let short: String = raw.chars().take(80).collect();
    short
}

/// The lines shown, newest first, with the moment each happened.
#[derive(Clone, Debug, Default)]
pub struct Feed {
    /// `(when, line)`, newest first.
    pub lines: VecDeque<(String, Line)>,
    /// Bumped on every change, so a view redraws only when it moved.
    pub version: u64,
}

/// At most this many lines are kept.
pub const FEED_MAX: usize = 80;

impl Feed {
    /// Adds `lines`, all at `when`.
    pub fn push(&mut self, when: &str, lines: Vec<Line>) {
        if lines.is_empty() {
            return;
        }
        for l in lines {
            self.lines.push_front((when.to_string(), l));
        }
        self.lines.truncate(FEED_MAX);
        self.version += 1;
    }

    /// Adds `lines` like [`Feed::push`], but a commit line replaces a
    /// commit line at the top instead of piling up under it (the live view,
    /// where every poll under load commits something).
    pub fn push_folding_commits(&mut self, when: &str, lines: Vec<Line>) {
        let commits_only_new = lines.iter().all(|l| l.kind == LineKind::Commit);
        if commits_only_new
            && !lines.is_empty()
            && self
                .lines
                .front()
                .is_some_and(|(_, l)| l.kind == LineKind::Commit)
        {
            self.lines.pop_front();
        }
        self.push(when, lines);
    }

    /// Forgets every line (a new run, or a jump in time).
    pub fn clear(&mut self) {
        if !self.lines.is_empty() {
            self.lines.clear();
            self.version += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConfigView, FollowerView, LogView, MemberKind};

    fn node(id: u64, role: RoleView, term: u64, commit: u64) -> NodeView {
        NodeView {
            id,
            url: String::new(),
            role,
            term: Some(term),
            leader: None,
            vote: None,
            last_index: commit,
            commit_index: commit,
            applied_index: commit,
            snapshot_index: 0,
            keys: None,
            followers: Vec::new(),
            error: None,
            serving: false,
            election_timer: None,
            votes: Vec::new(),
            member: MemberKind::Voter,
            log: LogView::default(),
        }
    }

    fn cluster(nodes: Vec<NodeView>) -> ClusterView {
        let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        ClusterView {
            leader: nodes
                .iter()
                .find(|n| n.role == RoleView::Leader)
                .map(|n| n.id),
            nodes,
            served_by: None,
            cut: Vec::new(),
            config: Some(ConfigView {
                voters: ids,
                ..ConfigView::default()
            }),
        }
    }

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn an_election_is_told_step_by_step() {
        let calm = cluster(vec![
            node(1, RoleView::Follower, 1, 0),
            node(2, RoleView::Follower, 1, 0),
            node(3, RoleView::Follower, 1, 0),
        ]);
        let mut asking = calm.clone();
        asking.nodes[2] = node(3, RoleView::Candidate, 2, 0);
        let lines = narrate(&calm, &asking, Source::Sim);
        assert_eq!(
            texts(&lines),
            vec!["n3's election timer fired: it asks for votes in term 2"]
        );
        assert_eq!(lines[0].kind, LineKind::Election);
        let mut won = asking.clone();
        won.nodes[2] = node(3, RoleView::Leader, 2, 0);
        won.leader = Some(3);
        assert!(narrate(&asking, &won, Source::Sim)[0]
            .text
            .starts_with("n3 won the election: leader of term 2"));
        let mut pre = calm.clone();
        pre.nodes[0] = node(1, RoleView::PreCandidate, 1, 0);
        assert!(narrate(&calm, &pre, Source::Sim)[0]
            .text
            .contains("pre-votes for term 2"));
        // A pre-vote that fails leaves the term alone and says why.
        assert!(narrate(&pre, &calm, Source::Sim)[0]
            .text
            .contains("gave up its pre-vote"));
    }

    #[test]
    fn a_follower_whose_snapshot_index_jumps_installed_a_snapshot() {
        let before = cluster(vec![
            node(1, RoleView::Leader, 2, 40),
            node(2, RoleView::Follower, 2, 5),
        ]);
        let mut after = before.clone();
        after.nodes[1].snapshot_index = 40;
        after.nodes[1].last_index = 40;
        let lines = narrate(&before, &after, Source::Live);
        let line = lines
            .iter()
            .find(|l| l.kind == LineKind::Snapshot)
            .expect("a snapshot line");
        assert!(
            line.text
                .starts_with("n2 installed a snapshot from the leader: entries up to 40"),
            "{}",
            line.text
        );
    }

    #[test]
    fn commits_count_the_voters_holding_the_entry() {
        let follower = |id, m| FollowerView {
            id,
            match_index: m,
            next_index: m + 1,
            state: "replicate".into(),
            lag: 0,
            since_contact: String::new(),
            silent: false,
        };
        let mut before = cluster(vec![
            node(1, RoleView::Leader, 2, 4),
            node(2, RoleView::Follower, 2, 4),
            node(3, RoleView::Follower, 2, 4),
            node(4, RoleView::Follower, 2, 4),
            node(5, RoleView::Down, 2, 4),
        ]);
        before.nodes[0].followers = vec![follower(2, 4), follower(3, 4), follower(4, 4)];
        let mut after = before.clone();
        after.nodes[0].commit_index = 5;
        after.nodes[0].followers = vec![follower(2, 5), follower(3, 5), follower(4, 4)];
        let lines = narrate(&before, &after, Source::Sim);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].kind, LineKind::Commit);
        assert!(
            lines[0]
                .text
                .starts_with("entry 5 committed: stored on 3 of 5 voters"),
            "{}",
            lines[0].text
        );
        after.nodes[0].commit_index = 9;
        assert!(narrate(&before, &after, Source::Sim)[0]
            .text
            .starts_with("entries 5–9 committed"));
    }

    #[test]
    fn faults_read_like_people_talk() {
        let up = cluster(vec![
            node(1, RoleView::Leader, 3, 7),
            node(2, RoleView::Follower, 3, 7),
        ]);
        let mut down = up.clone();
        down.nodes[1].role = RoleView::Down;
        down.nodes[1].error =
            Some("error sending request: tcp connect error (os error 111)".into());
        assert_eq!(
            texts(&narrate(&up, &down, Source::Live)),
            vec!["n2 unreachable (connection refused)"]
        );
        assert!(narrate(&up, &down, Source::Sim)[0]
            .text
            .starts_with("n2 crashed"));
        assert!(narrate(&down, &up, Source::Live)[0]
            .text
            .starts_with("n2 answers again"));
        assert_eq!(
            human_error("TypeError: Failed to fetch"),
            "the browser could not connect"
        );
        assert_eq!(human_error("operation timed out"), "no answer in time");
    }

    #[test]
    fn the_feed_keeps_the_newest() {
        let mut f = Feed::default();
        for i in 0..(FEED_MAX + 5) {
            f.push(
                &i.to_string(),
                vec![Line::new(LineKind::Commit, format!("line {i}"))],
            );
        }
        assert_eq!(f.lines.len(), FEED_MAX);
        assert_eq!(f.lines[0].1.text, format!("line {}", FEED_MAX + 4));
        f.push("x", Vec::new());
        assert_eq!(f.version as usize, FEED_MAX + 5);
        // Live: commits fold into the newest commit line.
        let mut f = Feed::default();
        let commit = |t: &str| vec![Line::new(LineKind::Commit, t.into())];
        f.push_folding_commits("1", commit("entry 5 committed"));
        f.push_folding_commits("2", commit("entries 6–9 committed"));
        assert_eq!(f.lines.len(), 1);
        assert_eq!(f.lines[0].1.text, "entries 6–9 committed");
        f.push(
            "3",
            vec![Line::new(LineKind::Fault, "n2 unreachable".into())],
        );
        f.push_folding_commits("4", commit("entry 10 committed"));
        assert_eq!(f.lines.len(), 3);
    }
}
