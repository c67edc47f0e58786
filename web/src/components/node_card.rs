//! A node card: id, address, role, term, leader, indexes, the leader's view
//! of each follower, and the node's log strip.

use web_sys::Element;

use crate::components::LogStrip;
use crate::dom::{append, clear, el, el_class, el_text, set_attr, set_hidden, set_style, set_text};
use crate::model::{term_color, MemberKind, NodeView, RoleView};

/// One card.
pub struct NodeCard {
    /// The root element (`.node-card`).
    pub root: Element,
    role: Element,
    member: Element,
    serving: Element,
    term: Element,
    url: Element,
    error: Element,
    stats: Vec<Element>,
    sim_line: Element,
    followers: Element,
    follower_body: Element,
    follower_rows: Vec<Vec<Element>>,
    log: LogStrip,
}

const STATS: [&str; 7] = [
    "leader", "vote", "last", "commit", "applied", "snap", "keys",
];

/// What each stat means (its tooltip).
const STAT_TITLES: [&str; 7] = [
    "the leader this node follows in its current term",
    "whom this node voted for in its current term (votes are written to disk before they are sent)",
    "last: the index of the newest entry in this node's log (it may not be committed yet)",
    "commit: the highest index known to be stored on a majority of voters; committed entries are never lost",
    "applied: the highest index applied to this node's key-value state",
    "snap: entries up to this index are compacted into a snapshot (0: none)",
    "keys in this node's key-value state",
];

/// What each column of the leader's follower table means.
const FOLLOWER_COLUMNS: [(&str, &str); 6] = [
    ("follower", "a member the leader replicates to"),
    ("match", "match: the highest index the leader knows is stored on this follower"),
    ("next", "next: the index of the next entry the leader will send it"),
    ("lag", "entries the follower is behind the leader's last index"),
    ("state", "probe: finding where the logs agree; replicate: streaming entries; snapshot: sending a snapshot"),
    ("contact", "time since the follower last answered"),
];

impl NodeCard {
    /// A card for node `id`.
    pub fn new(id: u64) -> NodeCard {
        let root = el_class("div", "node-card");
        set_attr(&root, "data-node-id", &id.to_string());
        let head = el_class("div", "card-head");
        append(&head, &el_text("span", "node-id", &format!("n{id}")));
        let role = el_class("span", "role-badge");
        append(&head, &role);
        let member = el_class("span", "member-badge");
        append(&head, &member);
        let serving = el_text("span", "serving-tag", "this page");
        set_attr(&serving, "title", "the node this page was loaded from");
        append(&head, &serving);
        let term = el_class("span", "term-chip");
        set_attr(
            &term,
            "title",
            "term: Raft's logical clock; each election starts a new term, and at most one leader wins a term",
        );
        append(&head, &term);
        append(&root, &head);
        let url = el_class("div", "node-url");
        append(&root, &url);
        let error = el_class("div", "node-error");
        append(&root, &error);
        let dl = el_class("dl", "stats");
        let mut stats = Vec::new();
        for (name, title) in STATS.into_iter().zip(STAT_TITLES) {
            let cell = el_class("div", "stat");
            set_attr(&cell, "title", title);
            append(&cell, &el_text("dt", "", name));
            let dd = el("dd");
            set_attr(&dd, "data-stat", name);
            append(&cell, &dd);
            append(&dl, &cell);
            stats.push(dd);
        }
        append(&root, &dl);
        let sim_line = el_class("div", "sim-line");
        append(&root, &sim_line);
        let followers = el_class("table", "followers");
        let thead = el("thead");
        let tr = el("tr");
        for (h, title) in FOLLOWER_COLUMNS {
            let th = el_text("th", "", h);
            set_attr(&th, "title", title);
            append(&tr, &th);
        }
        append(&thead, &tr);
        append(&followers, &thead);
        let follower_body = el("tbody");
        append(&followers, &follower_body);
        append(&root, &followers);
        let log = LogStrip::new();
        append(&root, &log.root);
        NodeCard {
            root,
            role,
            member,
            serving,
            term,
            url,
            error,
            stats,
            sim_line,
            followers,
            follower_body,
            follower_rows: Vec::new(),
            log,
        }
    }

    /// Refreshes the card. `progress` is the leader's `(match, next)` for
    /// this node, when known.
    pub fn update(&mut self, n: &NodeView, progress: Option<(u64, u64)>) {
        set_attr(&self.root, "data-role", n.role.as_str());
        set_attr(&self.role, "data-role", n.role.as_str());
        set_text(&self.role, n.role.label());
        set_attr(&self.root, "data-member", n.member.as_str());
        set_attr(&self.member, "data-member", n.member.as_str());
        set_text(&self.member, n.member.label());
        set_attr(&self.member, "title", member_title(n.member));
        set_hidden(&self.member, n.member == MemberKind::Unknown);
        set_hidden(&self.serving, !n.serving);
        match n.term {
            Some(t) => {
                set_text(&self.term, &format!("term {t}"));
                set_style(&self.term, "background", term_color(t));
                set_hidden(&self.term, false);
            }
            None => set_hidden(&self.term, true),
        }
        set_text(&self.url, &n.url);
        set_hidden(&self.error, n.error.is_none());
        set_text(&self.error, n.error.as_deref().unwrap_or(""));
        let down = n.role == RoleView::Down && n.term.is_none();
        let opt = |v: Option<u64>| v.map_or("—".to_string(), |v| format!("n{v}"));
        let values = [
            opt(n.leader),
            opt(n.vote),
            n.last_index.to_string(),
            n.commit_index.to_string(),
            n.applied_index.to_string(),
            n.snapshot_index.to_string(),
            n.keys.map_or("—".into(), |k| k.to_string()),
        ];
        for (dd, v) in self.stats.iter().zip(values) {
            set_text(dd, if down { "—" } else { &v });
        }
        let mut sim = Vec::new();
        if let Some((e, t)) = n.election_timer {
            sim.push(format!("election timer {e}/{t}"));
        }
        if !n.votes.is_empty() {
            sim.push(n.votes_text());
        }
        set_hidden(&self.sim_line, sim.is_empty());
        set_text(&self.sim_line, &sim.join(" · "));
        self.update_followers(n);
        set_hidden(
            &self.log.root,
            down || n.log.cells.is_empty() && n.snapshot_index == 0,
        );
        self.log.update(n, progress);
    }

    fn update_followers(&mut self, n: &NodeView) {
        let show = n.role == RoleView::Leader && !n.followers.is_empty();
        set_hidden(&self.followers, !show);
        if !show {
            return;
        }
        if self.follower_rows.len() != n.followers.len() {
            clear(&self.follower_body);
            self.follower_rows.clear();
            for _ in &n.followers {
                let tr = el("tr");
                let cells: Vec<Element> = (0..6).map(|_| el("td")).collect();
                for c in &cells {
                    append(&tr, c);
                }
                append(&self.follower_body, &tr);
                self.follower_rows.push(cells);
            }
        }
        for (f, row) in n.followers.iter().zip(&self.follower_rows) {
            // A follower silent for an election timeout is shown as such:
            // the leader's state for it ("replicate") only changes once it
            // answers again.
            let (state, contact) = if f.silent {
                (
                    "unreachable".to_string(),
                    format!("last heard {} ago", f.since_contact),
                )
            } else {
                (f.state.clone(), f.since_contact.clone())
            };
            if let Some(tr) = row.first().and_then(|td| td.parent_element()) {
                set_attr(&tr, "data-follower", &f.id.to_string());
                set_attr(&tr, "data-silent", if f.silent { "true" } else { "false" });
            }
            let values = [
                format!("n{}", f.id),
                f.match_index.to_string(),
                f.next_index.to_string(),
                f.lag.to_string(),
                state,
                contact,
            ];
            for (td, v) in row.iter().zip(values) {
                set_text(td, &v);
            }
        }
    }
}

/// What a member badge means, for its tooltip.
fn member_title(k: MemberKind) -> &'static str {
    match k {
        MemberKind::Voter => "votes in elections and counts for commit",
        MemberKind::Joining => {
            "joint phase: a voter of the new configuration only; both majorities decide until the change completes"
        }
        MemberKind::Leaving => {
            "joint phase: a voter of the old configuration only; it leaves when the change completes"
        }
        MemberKind::Learner { promote: false } => {
            "receives the log but never votes and never counts for a quorum"
        }
        MemberKind::Learner { promote: true } => {
            "receives the log but never votes; the leader makes it a voter once it has caught up"
        }
        MemberKind::Removed => "not in the configuration in force",
        MemberKind::Unknown => "",
    }
}
