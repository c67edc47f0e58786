//! The guided tour: a few short cards shown the first time the dashboard
//! opens, dismissable at any step, remembered in `localStorage` so it does
//! not come back; the header's "Tour" button shows it again.
//!
//! The card is not modal: it sits in a corner and the page stays usable
//! under it; Escape closes it.

use std::cell::Cell;

use wasm_bindgen::JsCast;

use crate::dom::{by_id, on, set_attr, set_enabled, set_hidden, set_text, window};

/// The `localStorage` key that remembers the tour was seen.
pub const SEEN_KEY: &str = "raft-kv.tour-seen";

/// The cards: a title and a text each.
pub const STEPS: [(&str, &str); 5] = [
    (
        "Two views of one Raft",
        "Live cluster shows the real raft-kv nodes that serve this page. Simulator runs a cluster of the same Raft code inside your browser, deterministically from a seed, so you can break it at will and replay it.",
    ),
    (
        "Slow enough to follow",
        "The simulator starts at 0.1× real time: each dot on the ring is one message, coloured by kind (see the legend under the ring). Drag the speed slider from 0.01× up to 50×; space pauses, s steps one event.",
    ),
    (
        "Automatic clients",
        "Three simulated clients keep writing and reading a few keys, so new log entries keep being committed. Their operations are the bars under Client history, and the whole history is checked for linearizability.",
    ),
    (
        "Break it",
        "Select a node (click it, Tab to it, or press its number), then c crashes or restarts it and t fires its election timer. ← and → scrub through time. The feed beside the ring says what happens and why, in plain words.",
    ),
    (
        "Every label explains itself",
        "Hover (or focus) a label for its meaning; the glossary at the top of the page explains term, commit, match/next, last/snap, PreVote, CheckQuorum, ReadIndex and the trace hash.",
    ),
];

thread_local! {
    static STEP: Cell<usize> = const { Cell::new(0) };
}

fn seen() -> bool {
    window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(SEEN_KEY).ok().flatten())
        .is_some()
}

fn remember() {
    if let Some(s) = window().local_storage().ok().flatten() {
        let _ = s.set_item(SEEN_KEY, "1");
    }
}

fn show_step(i: usize) {
    STEP.with(|s| s.set(i));
    let (title, text) = STEPS[i];
    set_text(&by_id("tour-title"), title);
    set_text(&by_id("tour-text"), text);
    set_text(
        &by_id("tour-count"),
        &format!("{} of {}", i + 1, STEPS.len()),
    );
    set_attr(&by_id("tour"), "data-step", &i.to_string());
    set_enabled(&by_id("tour-back"), i > 0);
    set_text(
        &by_id("tour-next"),
        if i + 1 == STEPS.len() { "Done" } else { "Next" },
    );
    set_hidden(&by_id("tour"), false);
}

fn close() {
    remember();
    set_hidden(&by_id("tour"), true);
}

/// Wires the tour's buttons and shows it if it was never seen here.
pub fn mount() {
    on(&by_id("tour-next"), "click", |_| {
        let i = STEP.with(Cell::get);
        if i + 1 < STEPS.len() {
            show_step(i + 1);
        } else {
            close();
        }
    });
    on(&by_id("tour-back"), "click", |_| {
        let i = STEP.with(Cell::get);
        show_step(i.saturating_sub(1));
    });
    on(&by_id("tour-skip"), "click", |_| close());
    on(&by_id("tour-open"), "click", |_| show_step(0));
    on(&crate::dom::document(), "keydown", |e| {
        let escape = e
            .dyn_ref::<web_sys::KeyboardEvent>()
            .is_some_and(|k| k.key() == "Escape");
        if escape && !by_id("tour").has_attribute("hidden") {
            close();
        }
    });
    if !seen() {
        show_step(0);
    }
}
