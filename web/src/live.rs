//! The Live view: the real cluster through the REST API, polled from the
//! node that served the page, or, when that node stops answering, from
//! another member (the page knows every member's address from the last
//! `GET /cluster`; the members answer it with CORS headers). A member that
//! does not answer keeps its last-known values, greyed, with the reason in
//! words; the pills say "unknown" rather than repeat an old count when no
//! member answers; a narration feed tells what changed between polls.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gloo_net::http::Method;
use raft_core::wire::{ClusterResponse, KeyValue, ListResponse, PutRequest, WriteResponse};
use raft_core::NodeId;
use wasm_bindgen_futures::spawn_local;
use web_sys::Event;

use crate::api::{call, call_at, encode, set_base, Answer};
use crate::components::{FeedList, NodeCard, TimelineStrip};
use crate::dom::{
    append, by_id, input, input_value, now_ms, on, page_hidden, set_attr, set_hidden, set_text,
    window,
};
use crate::model::{config_banner, ClusterView, NodeView, RoleView, Timeline};
use crate::narrate::{human_error, narrate, Feed, Line, LineKind, Source};

/// How often the view polls `GET /cluster`.
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
}

/// Builds the Live view into the page's `#view-live` skeleton and starts
/// polling.
pub fn mount() {
    let strip = TimelineStrip::new("ms");
    append(&by_id("live-timeline"), &strip.root);
    let feed_list = FeedList::new();
    append(&by_id("live-feed"), &feed_list.root);
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
            if !page_hidden() {
                let candidates = live.borrow().candidates();
                let polled = poll(candidates).await;
                live.borrow_mut().show(polled);
            }
            gloo_timers::future::TimeoutFuture::new(POLL_MS).await;
        }
    });
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
        for m in &cluster.members {
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
                    "watching {} members through n{}; a poll every {:.1} s",
                    view.nodes.len(),
                    cluster.served_by,
                    f64::from(POLL_MS) / 1000.0
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
        let at = (now_ms() - self.opened_at).max(0.0) as u64;
        if self.timeline.observe_view(at, &view) {
            self.strip.update(&self.timeline);
        }
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
