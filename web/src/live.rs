//! The Live view: the real cluster through the REST API. One `GET
//! /cluster` (through the node that served the page, or, when that node
//! does not answer, another member) gives every member's address; then the
//! page subscribes to every member's push stream (`GET /events`, see
//! [`crate::push`]) and draws each change as it is pushed. Every member,
//! not only the serving one: each stream carries its own node's status, so
//! the page sees a follower's commit or snapshot jump without any member
//! gathering the others' statuses, and a dead member is noticed by its own
//! stream breaking. `GET /cluster` is asked again only when a stream breaks
//! (it says why: "connection refused") or a member's address is unknown;
//! when no stream is open (a node without `/events`, a proxy that buffers)
//! the page falls back to polling it every 0.7 s. The pill `#live-mode`
//! says which ("live: push" / "live: polling") and counts the polls.
//! The page's requests go through the serving node, or another member
//! once it is gone. A member that does not answer keeps its last-known
//! values, greyed, with the reason in words; the pills say "unknown"
//! rather than repeat an old count when no member answers; a narration
//! feed tells what changed. Each member's newest log entries (term and a
//! summary, `GET /log`) are read when its last index or term moves.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gloo_net::http::Method;
use raft_core::wire::{
    ClusterResponse, KeyValue, ListResponse, LogWindowResponse, MemberStatus, NodeEvent,
    PutRequest, StatusResponse, WriteResponse,
};
use raft_core::{Index, NodeId, Role, Term};
use wasm_bindgen_futures::spawn_local;
use web_sys::Event;

use crate::api::{call, call_at, encode, set_base, Answer};
use crate::components::{FeedList, LogGrid, NodeCard, TimelineStrip};
use crate::dom::{
    append, by_id, input, input_value, now_ms, on, page_hidden, set_attr, set_hidden, set_text,
    window,
};
use crate::model::{
    config_banner, format_ms, ClusterView, NodeView, RoleView, Timeline, LIVE_LOG_WINDOW,
};
use crate::narrate::{human_error, narrate, Feed, Line, LineKind, Source};
use crate::push::{MemberStream, OnPushed, Pushed};

/// How often the view looks whether it must ask `GET /cluster` (no stream
/// open: it polls at this pace).
const POLL_MS: u32 = 700;
/// How long one poll waits for a member before trying the next.
const POLL_TIMEOUT_MS: u32 = 2500;

/// One poll: which member answered (its base address, `""` for the page's
/// origin) and why the ones tried before it did not.
struct Polled {
    base: String,
    failed: Vec<(String, String)>,
    answer: Result<ClusterResponse, String>,
}

struct Live {
    cards: BTreeMap<NodeId, NodeCard>,
    timeline: Timeline,
    strip: TimelineStrip,
    opened_at: f64,
    last_ok: Option<f64>,
    /// The node that served the page, once known.
    origin_id: Option<NodeId>,
    /// Every member's address, from the last answer.
    members: BTreeMap<NodeId, String>,
    /// Where polls go first (`""`: the page's origin).
    base: String,
    /// Each member's values when it last answered.
    last_known: BTreeMap<NodeId, (NodeView, f64)>,
    /// The previous answer, for narration.
    prev: Option<ClusterView>,
    feed: Feed,
    feed_list: FeedList,
    /// Whether the last poll found no member at all.
    blind: bool,
    /// Each member's push stream, by id.
    streams: BTreeMap<NodeId, MemberStream>,
    /// Each member as last known: its status, or why it is down.
    known: BTreeMap<NodeId, Result<StatusResponse, String>>,
    /// Why the members tried before the one answering did not, at the
    /// last `GET /cluster`.
    failed: Vec<(String, String)>,
    /// A `GET /cluster` is wanted: a stream broke, or a member's address
    /// is unknown.
    explain: bool,
    /// `GET /cluster` requests since the page opened.
    polls: u32,
    /// Each member's newest log entries read through `GET /log`.
    logs: BTreeMap<NodeId, MemberLog>,
    log_grid: LogGrid,
}

/// A member's log entries as read through `GET /log`.
#[derive(Default)]
struct MemberLog {
    /// `index → (term, summary)`, the newest [`LIVE_LOG_WINDOW`] at most.
    entries: BTreeMap<Index, (Term, String)>,
    /// A read is under way.
    reading: bool,
    /// The member's term when last read (a new term may overwrite the
    /// tail: read the whole window again).
    term: Term,
}

/// Builds the Live view into the page's `#view-live` skeleton and starts
/// following the cluster (one `GET /cluster`, then the members' streams).
pub fn mount() {
    let strip = TimelineStrip::new("ms");
    append(&by_id("live-timeline"), &strip.root);
    let feed_list = FeedList::new();
    append(&by_id("live-feed"), &feed_list.root);
    let log_grid = LogGrid::new();
    append(&by_id("live-log-grid"), &log_grid.root);
    let live = Rc::new(RefCell::new(Live {
        cards: BTreeMap::new(),
        timeline: Timeline::default(),
        strip,
        opened_at: now_ms(),
        last_ok: None,
        origin_id: None,
        members: BTreeMap::new(),
        base: String::new(),
        last_known: BTreeMap::new(),
        prev: None,
        feed: Feed::default(),
        feed_list,
        blind: false,
        streams: BTreeMap::new(),
        known: BTreeMap::new(),
        failed: Vec::new(),
        explain: true,
        polls: 0,
        logs: BTreeMap::new(),
        log_grid,
    }));
    {
        let mut l = live.borrow_mut();
        let Live {
            feed, feed_list, ..
        } = &mut *l;
        feed_list.update(feed);
    }
    mount_forms();
    crate::login::mount();
    spawn_local(async move {
        loop {
            let (pushing, explain) = {
                let l = live.borrow();
                (l.pushing(), l.explain)
            };
            if explain || (!pushing && !page_hidden()) {
                let candidates = live.borrow().candidates();
                let polled = poll(candidates).await;
                {
                    let mut l = live.borrow_mut();
                    l.polls += 1;
                    l.explain = false;
                }
                take_polled(&live, polled);
            }
            gloo_timers::future::TimeoutFuture::new(POLL_MS).await;
        }
    });
}

/// A `GET /cluster` answer: what it says of each member is taken for every
/// member whose stream is not open (an open stream is fresher), then the
/// view is drawn and the streams of newly known members opened.
fn take_polled(live: &Rc<RefCell<Live>>, polled: Polled) {
    {
        let mut l = live.borrow_mut();
        match &polled.answer {
            Ok(c) => {
                if polled.base.is_empty() && l.origin_id.is_none() {
                    l.origin_id = Some(c.served_by);
                }
                for m in &c.members {
                    if !m.url.is_empty() {
                        l.members.insert(m.id, m.url.clone());
                    }
                    if l.streams.get(&m.id).is_some_and(MemberStream::is_open) {
                        continue;
                    }
                    let state = match (&m.status, &m.error) {
                        (Some(st), _) => Ok(st.clone()),
                        (None, e) => Err(e.clone().unwrap_or_else(|| "no answer".into())),
                    };
                    l.known.insert(m.id, state);
                }
                l.failed = polled.failed.clone();
            }
            Err(_) if l.pushing() => {
                // The open streams still tell the truth about their members.
            }
            Err(_) => {
                l.show(polled);
                return;
            }
        }
    }
    open_streams(live);
    redraw(live);
}

/// Opens a stream to every member with a known address that has none.
fn open_streams(live: &Rc<RefCell<Live>>) {
    let weak = Rc::downgrade(live);
    let on: OnPushed = Rc::new(move |id, pushed| {
        if let Some(live) = weak.upgrade() {
            on_pushed(&live, id, pushed);
        }
    });
    let mut l = live.borrow_mut();
    let origin = window().location().origin().unwrap_or_default();
    let wanted: Vec<(NodeId, String)> = l
        .members
        .iter()
        .filter(|(id, _)| !l.streams.contains_key(id))
        .map(|(id, url)| {
            let u = url.trim_end_matches('/');
            (
                *id,
                if u == origin {
                    String::new()
                } else {
                    u.to_string()
                },
            )
        })
        .collect();
    for (id, base) in wanted {
        if let Ok(s) = MemberStream::open(id, &base, on.clone()) {
            l.streams.insert(id, s);
        }
    }
}

/// What member `id`'s stream delivered.
fn on_pushed(live: &Rc<RefCell<Live>>, id: NodeId, pushed: Pushed) {
    let event = match pushed {
        Pushed::Broken => {
            // Ask `/cluster` why (and through whom to watch now), once per
            // break of a member thought up; its values stay until then.
            let mut l = live.borrow_mut();
            if !matches!(l.known.get(&id), Some(Err(_))) {
                l.explain = true;
            }
            // A stream the browser closed for good (the member answered
            // something else than an event stream: it has no `/events`)
            // stays closed; while no stream is open the page polls.
            return;
        }
        Pushed::Event(e) => *e,
    };
    let line = {
        let mut l = live.borrow_mut();
        match event {
            NodeEvent::Status { status } => {
                // A member this page has no address for: ask `/cluster`.
                let unknown = status
                    .members
                    .iter()
                    .chain(&status.learners)
                    .chain(&status.outgoing)
                    .any(|m| !l.members.contains_key(m));
                if unknown {
                    l.explain = true;
                }
                l.known.insert(id, Ok(status));
                None
            }
            // Why an election started or was won, which the statuses do
            // not say; a node settling as follower is told by the
            // narration of the statuses already.
            NodeEvent::RoleChanged {
                term,
                role,
                leader: _,
                cause,
            } if role != Role::Follower => Some(Line {
                kind: LineKind::Election,
                text: format!("n{id} became {role} in term {term}: {cause}"),
            }),
            NodeEvent::RoleChanged { .. } => None,
            NodeEvent::MemberSilent {
                id: f,
                ms_since_contact,
            } => Some(Line {
                kind: LineKind::Fault,
                text: format!(
                    "leader n{id} has not heard from n{f} for {} (over an election timeout): unreachable",
                    format_ms(ms_since_contact)
                ),
            }),
            NodeEvent::MemberHeard { id: f } => Some(Line {
                kind: LineKind::Action,
                text: format!("leader n{id} hears from n{f} again"),
            }),
            // The status that follows shows the snapshot index jump, and
            // the narration says it in words.
            NodeEvent::SnapshotTaken { .. } | NodeEvent::SnapshotInstalled { .. } => None,
        }
    };
    if let Some(line) = line {
        let mut l = live.borrow_mut();
        let Live {
            feed, feed_list, ..
        } = &mut *l;
        feed.push(&clock(), vec![line]);
        feed_list.update(feed);
    }
    redraw(live);
}

/// Draws what is known, through the page's own node when its stream or its
/// last answer is up, else through another member; then reads the log
/// entries that members gained.
fn redraw(live: &Rc<RefCell<Live>>) {
    let reads = {
        let mut l = live.borrow_mut();
        let Some(polled) = l.assemble() else {
            return;
        };
        l.show(polled);
        l.log_reads()
    };
    for (id, base, from, limit) in reads {
        let live = live.clone();
        spawn_local(async move {
            let path = format!("/log?from={from}&limit={limit}");
            let answer = call_at(&base, Method::GET, &path, None, POLL_TIMEOUT_MS)
                .await
                .ok()
                .filter(Answer::ok)
                .and_then(|a| a.json::<LogWindowResponse>().ok());
            {
                let mut l = live.borrow_mut();
                let log = l.logs.entry(id).or_default();
                log.reading = false;
                let Some(w) = answer else { return };
                for e in w.entries {
                    log.entries.insert(e.index, (e.term, e.summary));
                }
                // Entries past the member's last index were truncated away.
                log.entries.retain(|&i, _| i <= w.last_index);
                while log.entries.len() as u64 > LIVE_LOG_WINDOW {
                    log.entries.pop_first();
                }
            }
            redraw(&live);
        });
    }
}

/// Asks each candidate for `/cluster` in turn until one answers.
async fn poll(candidates: Vec<(String, String)>) -> Polled {
    let mut failed = Vec::new();
    for (base, name) in candidates {
        let answer = call_at(&base, Method::GET, "/cluster", None, POLL_TIMEOUT_MS)
            .await
            .and_then(|a| {
                if a.ok() {
                    a.json::<ClusterResponse>()
                } else {
                    Err(a.error_message())
                }
            });
        match answer {
            Ok(c) => {
                return Polled {
                    base,
                    failed,
                    answer: Ok(c),
                }
            }
            Err(e) => failed.push((name, e)),
        }
    }
    let why = failed
        .iter()
        .map(|(n, e)| format!("{n} unreachable ({e})"))
        .collect::<Vec<_>>()
        .join("; ");
    Polled {
        base: String::new(),
        failed,
        answer: Err(why),
    }
}

/// `HH:MM:SS` of the wall clock, for the feed.
fn clock() -> String {
    let d = js_sys::Date::new_0();
    format!(
        "{:02}:{:02}:{:02}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

impl Live {
    /// Whether any push stream is open (then the page does not poll).
    fn pushing(&self) -> bool {
        self.streams.values().any(MemberStream::is_open)
    }

    /// The cluster as the streams (and the last `/cluster` answer for the
    /// members without an open stream) tell it, shaped as one `/cluster`
    /// answer through the member the page watches through.
    fn assemble(&self) -> Option<Polled> {
        let up = |id: &NodeId| matches!(self.known.get(id), Some(Ok(_)));
        let via = self
            .origin_id
            .filter(up)
            .or_else(|| self.known.keys().copied().find(up))?;
        let Some(Ok(via_status)) = self.known.get(&via) else {
            return None;
        };
        let origin = window().location().origin().unwrap_or_default();
        let base = if Some(via) == self.origin_id {
            String::new()
        } else {
            let u = self.members.get(&via)?.trim_end_matches('/');
            if u == origin {
                String::new()
            } else {
                u.to_string()
            }
        };
        let members = self
            .known
            .iter()
            .map(|(id, k)| MemberStatus {
                id: *id,
                url: self.members.get(id).cloned().unwrap_or_default(),
                status: k.as_ref().ok().cloned(),
                error: k.as_ref().err().cloned(),
            })
            .collect();
        Some(Polled {
            base,
            failed: self.failed.clone(),
            answer: Ok(ClusterResponse {
                served_by: via,
                leader: via_status.leader,
                members,
            }),
        })
    }

    /// The `GET /log` reads due: `(member, base, from, limit)` for each
    /// member up whose last index passed what was read, or whose term moved.
    fn log_reads(&mut self) -> Vec<(NodeId, String, Index, u64)> {
        let origin = window().location().origin().unwrap_or_default();
        let mut out = Vec::new();
        for (id, k) in &self.known {
            let Ok(st) = k else { continue };
            let Some(url) = self.members.get(id) else {
                continue;
            };
            let u = url.trim_end_matches('/');
            let base = if u == origin {
                String::new()
            } else {
                u.to_string()
            };
            let log = self.logs.entry(*id).or_default();
            if log.reading || st.last_index == 0 {
                continue;
            }
            let window_from = st
                .last_index
                .saturating_sub(LIVE_LOG_WINDOW - 1)
                .max(st.snapshot_index + 1);
            let newest = log.entries.keys().next_back().copied().unwrap_or(0);
            let from = if st.term != log.term {
                window_from
            } else if newest < st.last_index {
                (newest + 1).max(window_from)
            } else {
                continue;
            };
            log.reading = true;
            log.term = st.term;
            out.push((*id, base, from, st.last_index + 1 - from));
        }
        out
    }

    /// Where to ask, in order: the member answering last time, the page's
    /// origin, then every other member (`(base, name)`).
    fn candidates(&self) -> Vec<(String, String)> {
        let origin = window().location().origin().unwrap_or_default();
        let name_of = |base: &str| -> String {
            if base.is_empty() {
                return match self.origin_id {
                    Some(id) => format!("n{id} (this page's node)"),
                    None => "this page's node".into(),
                };
            }
            self.members
                .iter()
                .find(|(_, u)| u.trim_end_matches('/') == base)
                .map_or(base.to_string(), |(id, _)| format!("n{id}"))
        };
        let mut bases = vec![self.base.clone(), String::new()];
        for url in self.members.values() {
            let u = url.trim_end_matches('/');
            bases.push(if u == origin {
                String::new()
            } else {
                u.to_string()
            });
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for b in bases {
            if !out.iter().any(|(x, _)| *x == b) {
                let name = name_of(&b);
                out.push((b, name));
            }
        }
        out
    }

    fn show(&mut self, polled: Polled) {
        let banner = by_id("live-banner");
        let cluster = match polled.answer {
            Ok(c) => c,
            Err(e) => {
                let since = self
                    .last_ok
                    .map(|t| format!(" Last good answer {:.0} s ago.", (now_ms() - t) / 1000.0))
                    .unwrap_or_default();
                set_text(
                    &banner,
                    &format!("No member answers: {e}.{since} The values below are the last known."),
                );
                set_attr(&banner, "data-kind", "down");
                set_hidden(&banner, false);
                for card in self.cards.values() {
                    set_attr(&card.root, "data-stale", "true");
                }
                // Say what is known: nothing current.
                let leader = by_id("live-leader");
                set_text(&leader, "leader unknown (no member answers)");
                set_attr(&leader, "data-leader", "");
                let ft = by_id("live-ft");
                set_text(&ft, "fault tolerance unknown");
                set_attr(&ft, "data-quorum", "unknown");
                set_text(&by_id("live-updated"), "not updating");
                if !self.blind {
                    self.blind = true;
                    self.feed.push(
                        &clock(),
                        vec![Line {
                            kind: LineKind::Fault,
                            text: format!("no member answers: {e}"),
                        }],
                    );
                    self.feed_list.update(&self.feed);
                }
                return;
            }
        };
        self.blind = false;
        let mut view = ClusterView::from_wire(&cluster);
        for (id, log) in &self.logs {
            view.apply_log(*id, &log.entries);
        }
        for m in cluster.members.iter().filter(|m| !m.url.is_empty()) {
            self.members.insert(m.id, m.url.clone());
        }
        if polled.base.is_empty() && self.origin_id.is_none() {
            self.origin_id = Some(cluster.served_by);
        }
        // "this page" marks the node the page was loaded from, not the
        // member answering now.
        for n in &mut view.nodes {
            n.serving = Some(n.id) == self.origin_id;
        }
        let switched = polled.base != self.base;
        self.base = polled.base.clone();
        set_base(&self.base);
        self.last_ok = Some(now_ms());

        let mut lines = match &self.prev {
            Some(prev) => narrate(prev, &view, Source::Live),
            None => vec![Line {
                kind: LineKind::Action,
                text: format!(
                    "watching {} members through n{}; each member pushes its changes as they happen",
                    view.nodes.len(),
                    cluster.served_by,
                ),
            }],
        };
        // The page's own node is not answering: say so, and through whom
        // the page keeps watching.
        let failover = if self.base.is_empty() {
            None
        } else {
            let origin = self
                .origin_id
                .map_or("this page's node".to_string(), |id| format!("n{id}"));
            let why = self
                .origin_id
                .and_then(|id| view.node(id))
                .and_then(|n| n.error.as_deref())
                .map(human_error)
                .or_else(|| polled.failed.first().map(|(_, e)| e.clone()))
                .unwrap_or_else(|| "no answer".into());
            Some(format!(
                "{origin}, which served this page, is unreachable ({why}); watching through n{}.",
                cluster.served_by
            ))
        };
        if switched {
            if let Some(f) = &failover {
                lines.push(Line {
                    kind: LineKind::Action,
                    text: f.clone(),
                });
            } else if self.prev.is_some() {
                lines.push(Line {
                    kind: LineKind::Action,
                    text: format!("watching through n{} again", cluster.served_by),
                });
            }
        }
        self.feed.push_folding_commits(&clock(), lines);
        self.feed_list.update(&self.feed);
        self.prev = Some(view.clone());

        let leader = view.current_leader().map(|n| (n.id, n.term.unwrap_or(0)));
        match (&failover, leader) {
            (Some(text), _) => {
                set_text(&banner, text);
                set_attr(&banner, "data-kind", "failover");
                set_hidden(&banner, false);
            }
            (None, None) => {
                set_text(
                    &banner,
                    "No leader: an election is under way, or too few members are up to elect one. Writes and linearizable reads wait.",
                );
                set_attr(&banner, "data-kind", "no-leader");
                set_hidden(&banner, false);
            }
            (None, Some(_)) => set_hidden(&banner, true),
        }
        let summary_leader = by_id("live-leader");
        match leader {
            Some((id, term)) => {
                set_text(&summary_leader, &format!("leader n{id} · term {term}"));
                set_attr(&summary_leader, "data-leader", &id.to_string());
            }
            None => {
                set_text(&summary_leader, "no leader");
                set_attr(&summary_leader, "data-leader", "");
            }
        }
        self.show_config(&view);
        set_text(&by_id("live-ft"), &view.fault_tolerance().describe());
        set_attr(
            &by_id("live-ft"),
            "data-quorum",
            if view.fault_tolerance().has_quorum() {
                "yes"
            } else {
                "no"
            },
        );
        let via = by_id("live-updated");
        set_text(
            &via,
            &if self.base.is_empty() {
                format!("served by n{}", cluster.served_by)
            } else {
                format!("via n{} (failover)", cluster.served_by)
            },
        );
        set_attr(&via, "data-via", &cluster.served_by.to_string());
        self.update_cards(&view);
        self.log_grid.update(&view);
        self.show_mode();
        let at = (now_ms() - self.opened_at).max(0.0) as u64;
        if self.timeline.observe_view(at, &view) {
            self.strip.update(&self.timeline);
        }
    }
    /// The `#live-mode` pill: push or polling, and the polls so far.
    fn show_mode(&self) {
        let pill = by_id("live-mode");
        let pushing = self.pushing();
        set_text(
            &pill,
            &if pushing {
                let open = self.streams.values().filter(|s| s.is_open()).count();
                format!(
                    "live: push ({open} stream{})",
                    if open == 1 { "" } else { "s" }
                )
            } else {
                "live: polling every 0.7 s (no push stream open)".to_string()
            },
        );
        set_attr(&pill, "data-mode", if pushing { "push" } else { "poll" });
        set_attr(&pill, "data-polls", &self.polls.to_string());
    }

    /// The configuration pill, and a banner while a change is under way
    /// (joint: both voter sets; otherwise not every member reports it yet).
    fn show_config(&self, view: &ClusterView) {
        let pill = by_id("live-config");
        let banner = by_id("live-member-banner");
        let Some(c) = &view.config else {
            set_text(&pill, "configuration unknown");
            set_hidden(&banner, true);
            return;
        };
        set_text(&pill, &c.describe());
        set_attr(
            &pill,
            "data-joint",
            if c.is_joint() { "true" } else { "false" },
        );
        set_attr(
            &pill,
            "data-pending",
            if c.pending { "true" } else { "false" },
        );
        match config_banner(c) {
            Some((kind, text)) => {
                set_attr(&banner, "data-kind", kind);
                set_text(&banner, &text);
                set_hidden(&banner, false);
            }
            None => set_hidden(&banner, true),
        }
    }

    fn update_cards(&mut self, view: &ClusterView) {
        let container = by_id("live-members");
        self.cards.retain(|id, card| {
            let keep = view.node(*id).is_some();
            if !keep {
                card.root.remove();
            }
            keep
        });
        let leader = view.current_leader();
        for n in &view.nodes {
            let card = self.cards.entry(n.id).or_insert_with(|| {
                let c = NodeCard::new(n.id);
                append(&container, &c.root);
                c
            });
            let progress = leader
                .filter(|l| l.id != n.id && n.role != RoleView::Down)
                .and_then(|l| l.followers.iter().find(|f| f.id == n.id))
                .map(|f| (f.match_index, f.next_index));
            if n.role == RoleView::Down {
                // Keep what it said last, greyed, with the reason in words.
                let why = n.error.as_deref().map_or("no answer".into(), human_error);
                let shown = match self.last_known.get(&n.id) {
                    Some((known, at)) => {
                        let mut v = known.clone();
                        v.role = RoleView::Down;
                        v.followers.clear();
                        v.serving = n.serving;
                        v.member = n.member;
                        v.error = Some(format!(
                            "unreachable ({why}) · last seen {:.0} s ago, values as then",
                            (now_ms() - at) / 1000.0
                        ));
                        v
                    }
                    None => {
                        let mut v = n.clone();
                        v.error = Some(format!("unreachable ({why})"));
                        v
                    }
                };
                set_attr(&card.root, "data-stale", "true");
                card.update(&shown, None);
            } else {
                self.last_known.insert(n.id, (n.clone(), now_ms()));
                set_attr(&card.root, "data-stale", "false");
                card.update(n, progress);
            }
        }
    }
}

/// What the result panel shows.
struct Shown {
    op: String,
    ok: bool,
    text: String,
    value: Option<String>,
    answer: Option<Answer>,
    index: Option<u64>,
}

fn show_result(s: Shown) {
    let result = by_id("result");
    set_attr(&result, "data-status", if s.ok { "ok" } else { "error" });
    set_text(&by_id("result-op"), &s.op);
    set_text(
        &by_id("result-status"),
        &match &s.answer {
            Some(a) => format!("HTTP {}", a.status),
            None => "no answer".into(),
        },
    );
    set_text(&by_id("result-body"), &s.text);
    let value = by_id("result-value");
    set_hidden(&value, s.value.is_none());
    set_text(&value, s.value.as_deref().unwrap_or(""));
    let a = s.answer.as_ref();
    set_text(
        &by_id("result-served-by"),
        &a.and_then(|a| a.served_by.clone()).map_or("—".into(), |s| {
            format!("n{}", s.split_whitespace().next().unwrap_or(&s))
        }),
    );
    set_text(
        &by_id("result-forwarded"),
        a.map_or("—", |a| {
            if a.forwarded {
                "yes (follower → leader)"
            } else {
                "no"
            }
        }),
    );
    set_text(
        &by_id("result-latency"),
        &a.map_or("—".into(), |a| format!("{:.1} ms", a.latency_ms)),
    );
    let index = s
        .index
        .map(|i| i.to_string())
        .or_else(|| a.and_then(|a| a.commit_index.clone()));
    set_text(&by_id("result-index"), index.as_deref().unwrap_or("—"));
}

fn pending(op: &str) {
    let result = by_id("result");
    set_attr(&result, "data-status", "pending");
    set_text(&by_id("result-op"), op);
    set_text(&by_id("result-status"), "waiting…");
}

fn fail(op: String, e: String, answer: Option<Answer>) {
    if answer.as_ref().is_some_and(|a| a.status == 401) {
        crate::login::ask(&e);
    }
    show_result(Shown {
        op,
        ok: false,
        text: e,
        value: None,
        answer,
        index: None,
    });
}

fn on_submit(form: &str, f: impl Fn() + 'static) {
    on(&by_id(form), "submit", move |e: Event| {
        e.prevent_default();
        f();
    });
}

fn mount_forms() {
    on_submit("put-form", || {
        let key = input_value("put-key");
        let value = input_value("put-value");
        let op = format!("PUT {key}");
        if key.is_empty() {
            return fail(op, "enter a key".into(), None);
        }
        pending(&op);
        spawn_local(async move {
            let body = serde_json::to_string(&PutRequest {
                value: value.clone(),
            })
            .unwrap_or_default();
            let path = format!("/key/{}", encode(&key));
            write_answer(op, call(Method::PUT, &path, Some(body)).await, Some(value));
        });
    });
    on_submit("del-form", || {
        let key = input_value("del-key");
        let op = format!("DELETE {key}");
        if key.is_empty() {
            return fail(op, "enter a key".into(), None);
        }
        pending(&op);
        spawn_local(async move {
            let path = format!("/key/{}", encode(&key));
            write_answer(op, call(Method::DELETE, &path, None).await, None);
        });
    });
    on_submit("get-form", || {
        let key = input_value("get-key");
        let stale = input("get-stale").checked();
        let op = format!("GET {key}{}", if stale { " (stale)" } else { "" });
        if key.is_empty() {
            return fail(op, "enter a key".into(), None);
        }
        pending(&op);
        spawn_local(async move {
            let mut path = format!("/key/{}", encode(&key));
            if stale {
                path.push_str("?consistency=stale");
            }
            match call(Method::GET, &path, None).await {
                Err(e) => fail(op, e, None),
                Ok(a) if !a.ok() => fail(op, a.error_message(), Some(a)),
                Ok(a) => match a.json::<KeyValue>() {
                    Ok(kv) => show_result(Shown {
                        op,
                        ok: true,
                        text: format!("{} = {}", kv.key, kv.value),
                        value: Some(kv.value),
                        answer: Some(a),
                        index: None,
                    }),
                    Err(e) => fail(op, e, Some(a)),
                },
            }
        });
    });
    on_submit("list-form", || {
        let prefix = input_value("list-prefix");
        let limit = input_value("list-limit");
        let op = format!("LIST {prefix}*");
        pending(&op);
        spawn_local(async move {
            let mut path = format!("/keys?prefix={}", encode(&prefix));
            if !limit.trim().is_empty() {
                path.push_str(&format!("&limit={}", encode(limit.trim())));
            }
            match call(Method::GET, &path, None).await {
                Err(e) => fail(op, e, None),
                Ok(a) if !a.ok() => fail(op, a.error_message(), Some(a)),
                Ok(a) => match a.json::<ListResponse>() {
                    Ok(list) => {
                        let mut text: String = list
                            .items
                            .iter()
                            .map(|kv| format!("{} = {}\n", kv.key, kv.value))
                            .collect();
                        if list.items.is_empty() {
                            text.push_str("(no keys)\n");
                        }
                        if list.truncated {
                            text.push_str("… more keys match (raise the limit)\n");
                        }
                        show_result(Shown {
                            op: format!("{op} → {} key(s)", list.items.len()),
                            ok: true,
                            text,
                            value: None,
                            answer: Some(a),
                            index: None,
                        })
                    }
                    Err(e) => fail(op, e, Some(a)),
                },
            }
        });
    });
}

fn write_answer(op: String, answer: Result<Answer, String>, value: Option<String>) {
    match answer {
        Err(e) => fail(op, e, None),
        Ok(a) if !a.ok() => fail(op, a.error_message(), Some(a)),
        Ok(a) => match a.json::<WriteResponse>() {
            Ok(w) => {
                let prev = w
                    .prev
                    .as_deref()
                    .map_or("absent".to_string(), |p| format!("\"{p}\""));
                let text = match &value {
                    Some(v) => format!(
                        "{} = {v}  (was {prev}), committed at index {}",
                        w.key, w.index
                    ),
                    None => format!(
                        "{} deleted (was {prev}), committed at index {}",
                        w.key, w.index
                    ),
                };
                show_result(Shown {
                    op,
                    ok: true,
                    text,
                    value,
                    answer: Some(a),
                    index: Some(w.index),
                })
            }
            Err(e) => fail(op, e, Some(a)),
        },
    }
}
