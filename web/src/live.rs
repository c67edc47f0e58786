//! The Live view: the real cluster through the REST API of the node that
//! served the page.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gloo_net::http::Method;
use raft_core::wire::{ClusterResponse, KeyValue, ListResponse, PutRequest, WriteResponse};
use raft_core::NodeId;
use wasm_bindgen_futures::spawn_local;
use web_sys::Event;

use crate::api::{call, encode, Answer};
use crate::components::{NodeCard, TimelineStrip};
use crate::dom::{
    append, by_id, input, input_value, now_ms, on, page_hidden, set_attr, set_hidden, set_text,
};
use crate::model::{config_banner, ClusterView, RoleView, Timeline};

/// How often the view polls `GET /cluster`.
const POLL_MS: u32 = 1000;

struct Live {
    cards: BTreeMap<NodeId, NodeCard>,
    timeline: Timeline,
    strip: TimelineStrip,
    opened_at: f64,
    last_ok: Option<f64>,
}

/// Builds the Live view into the page's `#view-live` skeleton and starts
/// polling.
pub fn mount() {
    let strip = TimelineStrip::new("ms");
    append(&by_id("live-timeline"), &strip.root);
    let live = Rc::new(RefCell::new(Live {
        cards: BTreeMap::new(),
        timeline: Timeline::default(),
        strip,
        opened_at: now_ms(),
        last_ok: None,
    }));
    mount_forms();
    spawn_local(async move {
        loop {
            if !page_hidden() {
                let answer = call(Method::GET, "/cluster", None).await;
                live.borrow_mut().show(answer);
            }
            gloo_timers::future::TimeoutFuture::new(POLL_MS).await;
        }
    });
}

impl Live {
    fn show(&mut self, answer: Result<Answer, String>) {
        let banner = by_id("live-banner");
        let cluster = answer.and_then(|a| {
            if a.ok() {
                a.json::<ClusterResponse>()
            } else {
                Err(format!("it answered /cluster with {}", a.error_message()))
            }
        });
        let view = match cluster {
            Ok(c) => ClusterView::from_wire(&c),
            Err(e) => {
                let since = self
                    .last_ok
                    .map(|t| format!(" Last good answer {:.0} s ago.", (now_ms() - t) / 1000.0))
                    .unwrap_or_default();
                set_text(
                    &banner,
                    &format!("Serving node down: {e}.{since} Open the dashboard from another member to keep watching."),
                );
                set_attr(&banner, "data-kind", "down");
                set_hidden(&banner, false);
                for card in self.cards.values() {
                    set_attr(&card.root, "data-stale", "true");
                }
                set_text(&by_id("live-updated"), "not updating");
                return;
            }
        };
        self.last_ok = Some(now_ms());
        let leader = view.current_leader().map(|n| (n.id, n.term.unwrap_or(0)));
        match leader {
            None => {
                set_text(
                    &banner,
                    "No leader: an election is under way, or too few members are up to elect one. Writes and linearizable reads wait.",
                );
                set_attr(&banner, "data-kind", "no-leader");
                set_hidden(&banner, false);
            }
            Some(_) => set_hidden(&banner, true),
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
        set_text(
            &by_id("live-updated"),
            &format!("served by n{}", view.served_by.unwrap_or(0)),
        );
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
            set_attr(&card.root, "data-stale", "false");
            let progress = leader
                .filter(|l| l.id != n.id && n.role != RoleView::Down)
                .and_then(|l| l.followers.iter().find(|f| f.id == n.id))
                .map(|f| (f.match_index, f.next_index));
            card.update(n, progress);
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
