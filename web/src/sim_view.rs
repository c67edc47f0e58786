//! The Simulator view: a deterministic raft-core cluster running in the
//! page, drawn as a ring with animated messages, the shared node cards and
//! log strips, a time-travel scrubber, live safety checkers and the client
//! history with its linearizability verdict. By hand: force a node's
//! election timeout, issue a put or get through a chosen node, inspect a
//! message in flight and drop it; messages that die on the wire are marked
//! with a fading red cross where they died.
//!
//! Membership: add a node (a learner, optionally promoted once caught up),
//! promote a learner, remove a member, replace a voter by a learner, stop a
//! removed node for good (it leaves the ring). The ring and the cards show
//! each node's place in the configuration in force (learners dashed, a
//! joint phase's joining and leaving voters ringed green and red, removed
//! nodes faded), the ring's middle and a pill show the voter sets (both
//! while joint), and the fault tolerance uses both majorities while joint.
//! A control that cannot act now is disabled and says why; a change the
//! core refuses shows its reason.
//!
//! The animation runs on `requestAnimationFrame` only while the view is
//! shown, the run is playing and the tab is visible; otherwise nothing is
//! scheduled at all, so an idle or background tab costs no CPU.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use raft_core::sim::{
    DroppedMessage, InFlight, LinearizabilityError, OpOutput, Outcome, ViolationKind,
};
use raft_core::{MessageBody, NodeId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, Event, HtmlInputElement, HtmlSelectElement};

use crate::components::{FeedList, LogGrid, NodeCard, TimelineStrip};
use crate::dom::{
    append, by_id, clear, document, el_class, el_text, input, now_ms, on, page_hidden, set_attr,
    set_enabled, set_hidden, set_text, svg, toggle_class, window,
};
use crate::model::{id_set, term_color, ClusterView, ConfigView, MemberKind, RoleView};
use crate::narrate::{narrate, Feed, Line, LineKind, Source};
use crate::sim_model::{outcome_class, Action, HandOp, MemberControls, SimRun, SimSettings};
use web_sys::{KeyboardEvent, PointerEvent};

const CENTER: f64 = 260.0;
const RADIUS: f64 = 190.0;
const NODE_R: f64 = 34.0;
/// Virtual time units per second at 1×.
const UNITS_PER_SECOND_AT_1X: f64 = 100.0;
/// The slowest and the fastest speed, as multiples of 1×.
const SLOWEST: f64 = 0.01;
const FASTEST: f64 = 50.0;
/// The speed out of the box: slow enough to follow one message.
pub const DEFAULT_SPEED: f64 = 0.1;
/// The speed slider's positions (logarithmic between [`SLOWEST`] and
/// [`FASTEST`]).
const SLIDER_MAX: f64 = 1000.0;
/// Arrow keys scrub this many steps (with Shift, ten times as many).
const SCRUB_KEY_STEPS: u64 = 10;

/// The speed (× of real time) at a slider position.
pub fn speed_at(position: f64) -> f64 {
    let f = (position / SLIDER_MAX).clamp(0.0, 1.0);
    SLOWEST * (FASTEST / SLOWEST).powf(f)
}

/// The slider position of a speed.
pub fn position_of(speed: f64) -> f64 {
    let s = speed.clamp(SLOWEST, FASTEST);
    ((s / SLOWEST).ln() / (FASTEST / SLOWEST).ln() * SLIDER_MAX).round()
}

/// `0.1×`, `0.03×`, `2.5×`, `50×`.
pub fn speed_label(speed: f64) -> String {
    let text = if speed < 0.095 {
        format!("{speed:.2}")
    } else if speed < 9.95 {
        format!("{speed:.1}")
    } else {
        format!("{speed:.0}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}×")
}
/// At most this many simulation steps per animation frame.
const MAX_STEPS_PER_FRAME: u32 = 5000;
/// ... and for at most this long, so that at high speeds a run of costly
/// steps never keeps the page from answering clicks and keys.
const FRAME_BUDGET_MS: f64 = 12.0;
/// The history view shows this much virtual time.
const HISTORY_WINDOW: u64 = 6000;
/// A dropped message's cross fades out over this many milliseconds.
const DROP_MARK_MS: f64 = 1600.0;
/// At most this many crosses at once (the oldest go first).
const DROP_MARKS_MAX: usize = 40;

struct RingNode {
    group: Element,
    /// The dashed outer ring of a voter joining or leaving (joint phase).
    member_ring: Element,
    circle: Element,
    arc: Element,
    label: Element,
    term: Element,
    role: Element,
    votes: Element,
    /// The node's tooltip (an SVG `<title>`).
    tip: Element,
}

struct SimUi {
    run: SimRun,
    playing: bool,
    visible: bool,
    speed: f64,
    target: f64,
    last_ts: Option<f64>,
    selected: Option<NodeId>,
    last_hash: String,
    /// The nodes on the ring, in slot order (id order).
    ring_ids: Vec<NodeId>,
    ring_nodes: Vec<RingNode>,
    /// The configuration drawn in the ring's middle.
    ring_config: Element,
    links: BTreeMap<(NodeId, NodeId), Element>,
    msg_layer: Element,
    msgs: Vec<Element>,
    /// The message being inspected.
    picked_msg: Option<u64>,
    drop_layer: Element,
    /// Crosses where messages died, with the wall time they appeared.
    drop_marks: Vec<(Element, f64)>,
    /// Why the last hand-issued operation was refused, until the next one.
    op_refused: Option<String>,
    /// What became of the last membership action: `(accepted, text)`.
    conf_result: Option<(bool, String)>,
    /// The nodes dragged across so far (empty: no drag).
    grouping: Vec<NodeId>,
    /// When the last drag ended (its mouseup also fires a click).
    drag_ended_ms: f64,
    cards: Vec<NodeCard>,
    timeline: TimelineStrip,
    timeline_len: usize,
    bands_key: (usize, u64, usize),
    last_slow_render: f64,
    lin_checked_len: usize,
    lin_checked_step: u64,
    /// What happened, in words.
    feed: Feed,
    feed_list: FeedList,
    /// Every node's log tail, aligned by index, under the ring.
    log_grid: LogGrid,
    /// The view last narrated, and its step.
    narrated: Option<(u64, ClusterView)>,
    /// What the last button did, or why it did nothing.
    action_note: String,
}

/// The animation-frame callback, kept alive while the loop runs.
type FrameCallback = Closure<dyn FnMut(f64)>;

thread_local! {
    static UI: RefCell<Option<SimUi>> = const { RefCell::new(None) };
    static FRAME: RefCell<Option<FrameCallback>> = const { RefCell::new(None) };
    static LOOP_ON: Cell<bool> = const { Cell::new(false) };
}

fn with_ui<R>(f: impl FnOnce(&mut SimUi) -> R) -> Option<R> {
    UI.with(|u| u.borrow_mut().as_mut().map(f))
}

/// Shows or hides the view; `hash` carries the run's settings. A hash that
/// differs from the one the view last wrote starts the run it describes.
pub fn show(visible: bool, hash: &str) {
    let mounted = UI.with(|u| u.borrow().is_some());
    if !mounted {
        if !visible {
            return;
        }
        mount_controls();
        let ui = SimUi::new(hash);
        UI.with(|u| *u.borrow_mut() = Some(ui));
        on(&document(), "visibilitychange", |_| {
            if !page_hidden() {
                ensure_loop();
            }
        });
    } else if visible {
        with_ui(|ui| {
            // A bare `#sim` (the nav link) returns to the current run.
            if hash.trim_start_matches('#') == "sim" {
                ui.write_hash();
            } else if hash != ui.last_hash {
                ui.load(hash);
            }
        });
    }
    with_ui(|ui| {
        ui.visible = visible;
        if visible {
            ui.render(true);
        }
    });
    if visible {
        ensure_loop();
    }
}

fn ensure_loop() {
    if LOOP_ON.with(Cell::get) {
        return;
    }
    let wanted = with_ui(|ui| ui.should_run()).unwrap_or(false);
    if !wanted {
        return;
    }
    with_ui(|ui| ui.last_ts = None);
    LOOP_ON.with(|l| l.set(true));
    request_frame();
}

fn request_frame() {
    FRAME.with(|f| {
        if f.borrow().is_none() {
            *f.borrow_mut() = Some(Closure::new(|ts: f64| {
                let keep = with_ui(|ui| ui.frame(ts)).unwrap_or(false);
                if keep {
                    request_frame();
                } else {
                    LOOP_ON.with(|l| l.set(false));
                }
            }));
        }
        if let Some(c) = f.borrow().as_ref() {
            let _ = window().request_animation_frame(c.as_ref().unchecked_ref());
        }
    });
}

fn node_pos(i: usize, n: usize) -> (f64, f64) {
    let a = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::TAU / n as f64;
    (CENTER + RADIUS * a.cos(), CENTER + RADIUS * a.sin())
}

fn msg_color(kind: &str) -> &'static str {
    match kind.trim_end_matches("_response") {
        // 3.0:1 against the vote colour (and 9:1 against the white of a
        // response dot), so the two campaigns read apart.
        "pre_vote" => "#831843",
        "vote" => "#d97706",
        "append" => "#2563eb",
        "heartbeat" => "#16a34a",
        "install_snapshot" => "#7c3aed",
        "read_index" => "#0891b2",
        "timeout_now" => "#dc2626",
        _ => "#6b7280",
    }
}

impl SimUi {
    fn new(hash: &str) -> SimUi {
        let settings = SimSettings::parse(hash);
        let mut ui = SimUi {
            run: SimRun::new(settings),
            playing: true,
            visible: true,
            speed: DEFAULT_SPEED * UNITS_PER_SECOND_AT_1X,
            target: 0.0,
            last_ts: None,
            selected: None,
            last_hash: String::new(),
            ring_ids: Vec::new(),
            ring_nodes: Vec::new(),
            ring_config: svg("g"),
            links: BTreeMap::new(),
            msg_layer: svg("g"),
            msgs: Vec::new(),
            picked_msg: None,
            drop_layer: svg("g"),
            drop_marks: Vec::new(),
            op_refused: None,
            conf_result: None,
            grouping: Vec::new(),
            drag_ended_ms: f64::NEG_INFINITY,
            cards: Vec::new(),
            timeline: TimelineStrip::new("step"),
            timeline_len: usize::MAX,
            bands_key: (usize::MAX, 0, 0),
            last_slow_render: 0.0,
            lin_checked_len: usize::MAX,
            lin_checked_step: u64::MAX,
            feed: Feed::default(),
            feed_list: FeedList::new(),
            log_grid: LogGrid::new(),
            narrated: None,
            action_note: String::new(),
        };
        append(&by_id("sim-timeline"), &ui.timeline.root);
        append(&by_id("sim-feed"), &ui.feed_list.root);
        append(&by_id("sim-log-grid"), &ui.log_grid.root);
        ui.load(hash);
        ui
    }

    /// Starts the run `hash` describes.
    fn load(&mut self, hash: &str) {
        let settings = SimSettings::parse(hash);
        let at = settings.at;
        // `speed=` (time units per second) or the default.
        self.speed = hash
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("speed="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(DEFAULT_SPEED * UNITS_PER_SECOND_AT_1X)
            .clamp(
                SLOWEST * UNITS_PER_SECOND_AT_1X,
                FASTEST * UNITS_PER_SECOND_AT_1X,
            );
        self.run = SimRun::new(settings);
        if let Some(at) = at {
            self.run.seek(at);
            self.playing = false;
        } else {
            self.playing = true;
        }
        self.target = self.run.cluster.now() as f64;
        self.selected = None;
        self.picked_msg = None;
        self.op_refused = None;
        self.conf_result = None;
        self.run.dropped.clear();
        self.ring_ids.clear();
        self.sync_layout();
        self.timeline_len = usize::MAX;
        self.bands_key = (usize::MAX, 0, 0);
        self.lin_checked_len = usize::MAX;
        self.feed.clear();
        self.narrated = None;
        self.action_note.clear();
        let cfg = self.run.cluster.config();
        let on = |b: bool| if b { "on" } else { "off" };
        self.feed.push(
            &self.when(),
            vec![Line {
                kind: LineKind::Action,
                text: format!(
                    "run of seed {}: {} nodes, PreVote {}, CheckQuorum {}; {} automatic clients keep putting and getting {} keys through random nodes",
                    self.run.settings.seed,
                    self.run.settings.nodes,
                    on(cfg.raft.pre_vote),
                    on(cfg.raft.check_quorum),
                    cfg.clients.count,
                    cfg.clients.keys
                ),
            }],
        );
        self.write_hash();
        self.sync_controls();
    }

    /// Keeps the URL in step with the run (without a hashchange event); a
    /// speed other than the default is in it too.
    fn write_hash(&mut self) {
        let h = self.run.settings.to_hash(self.run.settings.at);
        let keep_extra = (self.speed - DEFAULT_SPEED * UNITS_PER_SECOND_AT_1X).abs() > 1e-9;
        let h = if keep_extra {
            format!("{h}&speed={}", self.speed)
        } else {
            h
        };
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&h));
        }
        self.last_hash = h;
    }

    fn should_run(&self) -> bool {
        self.visible && self.playing && !page_hidden()
    }

    fn frame(&mut self, ts: f64) -> bool {
        if !self.should_run() {
            self.last_ts = None;
            return false;
        }
        let dt = self
            .last_ts
            .map_or(0.0, |last| (ts - last).clamp(0.0, 100.0));
        self.last_ts = Some(ts);
        let now = self.run.cluster.now() as f64;
        self.target = (self.target + dt * self.speed / 1000.0).max(now - 50.0);
        let deadline = now_ms() + FRAME_BUDGET_MS;
        let mut n = 0;
        let mut cut = false;
        while (self.run.cluster.now() as f64) < self.target {
            // The clock is read every 64 steps: a step costs microseconds.
            if n == MAX_STEPS_PER_FRAME || (n % 64 == 0 && n > 0 && now_ms() > deadline) {
                cut = true;
                break;
            }
            self.run.step();
            n += 1;
        }
        if cut {
            // Behind: run slower than asked rather than pile up a backlog.
            self.target = self.run.cluster.now() as f64;
        }
        self.render(false);
        true
    }

    /// Takes `action` (recorded in the URL). A hand-issued operation or a
    /// membership action can be refused; the form or the membership line
    /// shows why.
    fn act(&mut self, action: Action) {
        let note = self.explain(&action);
        let by_hand = matches!(action, Action::Client { .. });
        let membership = action.is_membership().then(|| action.label());
        let done = self.run.act(action);
        if by_hand {
            self.op_refused = done.clone().err();
        }
        if let Some(label) = membership {
            self.conf_result = Some(match done {
                Ok(()) => (
                    true,
                    match self.run.last_conf_outcome() {
                        Some(Ok(Some(index))) => {
                            format!("{label}: proposed as configuration entry {index}")
                        }
                        _ => format!("{label}: done"),
                    },
                ),
                Err(why) => (false, format!("{label}: refused — {why}")),
            });
        }
        self.run.settings.at = None;
        // Narrate what the user did before what follows from it.
        self.narrate_now();
        let when = self.when();
        self.feed.push(
            &when,
            vec![Line {
                kind: LineKind::Action,
                text: note.clone(),
            }],
        );
        self.action_note = note;
        self.write_hash();
        self.render(true);
    }

    /// What `action` is about to do, in words; for a forced timeout, why it
    /// may change nothing.
    fn explain(&self, action: &Action) -> String {
        let c = &self.run.cluster;
        let raft = &c.config().raft;
        let leader = c.leader();
        let term = |id: NodeId| c.node(id).and_then(|n| n.term()).unwrap_or(0);
        match *action {
            Action::Timeout(n) => match leader {
                Some(l) if l == n => format!(
                    "you fired leader n{n}'s election timer: a leader has no election timer to fire, so nothing changes"
                ),
                Some(l) if raft.pre_vote => format!(
                    "you fired n{n}'s election timer: with PreVote it first asks whether it could win, without raising its term. \
                     The other voters still hear from leader n{l}, so they refuse and nothing changes: that is PreVote protecting a healthy leader. \
                     Turn PreVote and CheckQuorum off (for nodes restarted afterwards) to see n{n} take over"
                ),
                Some(l) if raft.check_quorum => format!(
                    "you fired n{n}'s election timer: it asks for votes in term {}, but voters that heard from leader n{l} within an election timeout ignore it \
                     (CheckQuorum's leader lease), so nothing changes unless n{l} has lost touch with them",
                    term(n) + 1
                ),
                Some(l) => format!(
                    "you fired n{n}'s election timer: it asks for votes in term {}; without PreVote or CheckQuorum nothing protects leader n{l}, \
                     which steps down as soon as it sees the higher term",
                    term(n) + 1
                ),
                None => format!("you fired n{n}'s election timer: it campaigns now"),
            },
            Action::PreVote(_) | Action::CheckQuorum(_) => format!(
                "you set {}: running nodes keep the setting they started with; it applies to each node at its next restart",
                action.label()
            ),
            Action::Crash(n) => format!(
                "you crashed n{n}: its memory is gone; its disk (term, vote, log) stays for a restart"
            ),
            Action::Restart(n) => format!("you restarted n{n}"),
            _ => format!("you: {}", action.label()),
        }
    }

    /// The moment a feed line is stamped with.
    fn when(&self) -> String {
        format!("step {}", self.run.step_no())
    }

    /// Narrates what changed since the last narrated moment. A jump (a
    /// seek, or far too many steps in one frame) restarts the story.
    fn narrate_now(&mut self) {
        let step = self.run.step_no();
        let view = self.run.view();
        match &self.narrated {
            Some((at, _)) if *at == step => return,
            Some((at, prev)) if *at < step => {
                let lines = narrate(prev, &view, Source::Sim);
                let when = self.when();
                self.feed.push(&when, lines);
            }
            Some(_) => {
                self.feed.clear();
                let when = self.when();
                self.feed.push(
                    &when,
                    vec![Line {
                        kind: LineKind::Action,
                        text: format!(
                            "you went back in time to step {step}: the run replays from its seed"
                        ),
                    }],
                );
            }
            None => {}
        }
        self.narrated = Some((step, view));
    }

    /// Issues a client operation by hand through the form's node.
    fn hand_op(&mut self, op: HandOp) {
        let via = by_id("sim-op-node")
            .dyn_into::<HtmlSelectElement>()
            .ok()
            .and_then(|s| s.value().parse().ok())
            .unwrap_or(1);
        self.act(Action::Client { via, op });
    }

    /// Jumps to step `target` (time travel); marks of dropped messages
    /// belong to the moment they were drawn, so they go.
    fn seek(&mut self, target: u64) {
        self.run.seek(target);
        self.run.dropped.clear();
        for (mark, _) in self.drop_marks.drain(..) {
            mark.remove();
        }
        self.target = self.run.cluster.now() as f64;
    }

    // ----- building -----

    /// The place of node `id` on the ring, if it is drawn.
    fn pos_of(&self, id: NodeId) -> Option<(f64, f64)> {
        let slot = self.ring_ids.iter().position(|&x| x == id)?;
        Some(node_pos(slot, self.ring_ids.len()))
    }

    /// Rebuilds the ring, the cards and the node choices when the nodes
    /// shown changed (a node added, or one stopped for good; seeking back
    /// can do either).
    fn sync_layout(&mut self) {
        let ids = self.run.shown_ids();
        if ids == self.ring_ids {
            return;
        }
        self.ring_ids = ids;
        if self.selected.is_some_and(|s| !self.ring_ids.contains(&s)) {
            self.selected = None;
        }
        self.grouping.clear();
        self.build_ring();
        self.build_op_nodes();
        self.build_cards();
    }

    fn build_ring(&mut self) {
        let ring = by_id("sim-ring");
        clear(&ring);
        let ids = self.ring_ids.clone();
        let n = ids.len();
        self.links.clear();
        self.ring_nodes.clear();
        self.msgs.clear();
        let links = svg("g");
        for (i, &a) in ids.iter().enumerate() {
            for (j, &b) in ids.iter().enumerate() {
                if a == b {
                    continue;
                }
                let (x1, y1) = node_pos(i, n);
                let (x2, y2) = node_pos(j, n);
                let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
                // The half from `a` to the middle stands for the link a -> b.
                let line = svg("line");
                line.set_attribute("class", "link").ok();
                for (k, v) in [("x1", x1), ("y1", y1), ("x2", mx), ("y2", my)] {
                    set_attr(&line, k, &format!("{v:.1}"));
                }
                set_attr(&line, "data-from", &a.to_string());
                set_attr(&line, "data-to", &b.to_string());
                let title = svg("title");
                title.set_text_content(Some(&format!("link n{a} → n{b}: click to cut or restore")));
                append(&line, &title);
                on(&line, "click", move |_| {
                    with_ui(|ui| {
                        let cut = ui.run.cluster.network().is_cut(a, b);
                        ui.act(if cut {
                            Action::Uncut(a, b)
                        } else {
                            Action::Cut(a, b)
                        });
                    });
                });
                append(&links, &line);
                self.links.insert((a, b), line);
            }
        }
        append(&ring, &links);
        // The configuration, in the middle: over the links, under the
        // messages.
        self.ring_config = svg("g");
        set_attr(&self.ring_config, "class", "ring-config");
        append(&ring, &self.ring_config);
        self.msg_layer = svg("g");
        set_attr(&self.msg_layer, "class", "msgs");
        append(&ring, &self.msg_layer);
        self.drop_layer = svg("g");
        set_attr(&self.drop_layer, "class", "drops");
        append(&ring, &self.drop_layer);
        self.drop_marks.clear();
        for (i, &id) in ids.iter().enumerate() {
            let (x, y) = node_pos(i, n);
            let g = svg("g");
            set_attr(&g, "class", "sim-node");
            set_attr(&g, "data-node-id", &id.to_string());
            set_attr(&g, "transform", &format!("translate({x:.1},{y:.1})"));
            let member_ring = svg("circle");
            set_attr(&member_ring, "class", "member-ring");
            set_attr(&member_ring, "r", &format!("{}", NODE_R + 12.0));
            let arc = svg("circle");
            set_attr(&arc, "class", "timer-arc");
            set_attr(&arc, "r", &format!("{}", NODE_R + 6.0));
            let circle = svg("circle");
            set_attr(&circle, "class", "body");
            set_attr(&circle, "r", &NODE_R.to_string());
            let label = svg("text");
            set_attr(&label, "class", "label");
            set_attr(&label, "y", "-4");
            label.set_text_content(Some(&format!("n{id}")));
            let term = svg("text");
            set_attr(&term, "class", "term");
            set_attr(&term, "y", "13");
            let role = svg("text");
            set_attr(&role, "class", "role");
            let ry = if y > CENTER {
                NODE_R + 26.0
            } else {
                -NODE_R - 18.0
            };
            set_attr(&role, "y", &format!("{ry}"));
            let votes = svg("text");
            set_attr(&votes, "class", "votes");
            set_attr(
                &votes,
                "y",
                &format!("{}", ry + if y > CENTER { 14.0 } else { -14.0 }),
            );
            let tip = svg("title");
            for e in [
                &tip,
                &member_ring,
                &arc,
                &circle,
                &label,
                &term,
                &role,
                &votes,
            ] {
                append(&g, e);
            }
            // Reachable by keyboard: Tab to it, Enter or Space selects it.
            set_attr(&g, "tabindex", "0");
            set_attr(&g, "role", "button");
            on(&g, "keydown", move |e: Event| {
                let Some(k) = e.dyn_ref::<KeyboardEvent>() else {
                    return;
                };
                if k.key() == "Enter" || k.key() == " " {
                    e.prevent_default();
                    e.stop_propagation();
                    with_ui(|ui| {
                        ui.selected = if ui.selected == Some(id) {
                            None
                        } else {
                            Some(id)
                        };
                        ui.render(true);
                    });
                }
            });
            // Dragging from a node across others draws a group to split
            // off from the rest: pointer events, so a finger works as a
            // mouse does. A touch captures the pointer to the node it
            // started on, so the nodes crossed are found by position
            // (`pointermove` on the document), not by their own events.
            on(&g, "pointerdown", move |e: Event| {
                e.prevent_default();
                if let (Some(p), Some(t)) = (
                    e.dyn_ref::<PointerEvent>(),
                    e.current_target()
                        .and_then(|t| t.dyn_into::<Element>().ok()),
                ) {
                    let _ = t.release_pointer_capture(p.pointer_id());
                }
                with_ui(|ui| {
                    ui.grouping = vec![id];
                    ui.render_grouping();
                });
            });
            on(&g, "click", move |_| {
                with_ui(|ui| {
                    if now_ms() - ui.drag_ended_ms < 100.0 {
                        return;
                    }
                    ui.selected = if ui.selected == Some(id) {
                        None
                    } else {
                        Some(id)
                    };
                    ui.render(true);
                });
            });
            append(&ring, &g);
            self.ring_nodes.push(RingNode {
                group: g,
                member_ring,
                circle,
                arc,
                label,
                term,
                role,
                votes,
                tip,
            });
        }
    }

    /// The form's node choice: the nodes on the ring (keeps the choice
    /// when it is still there).
    fn build_op_nodes(&self) {
        let Ok(sel) = by_id("sim-op-node").dyn_into::<HtmlSelectElement>() else {
            return;
        };
        let was = sel.value();
        clear(&sel);
        for id in &self.ring_ids {
            let o = el_text("option", "", &format!("n{id}"));
            set_attr(&o, "value", &id.to_string());
            append(&sel, &o);
        }
        if was
            .parse::<NodeId>()
            .is_ok_and(|v| self.ring_ids.contains(&v))
        {
            sel.set_value(&was);
        }
    }

    /// Ends a drag: two or more nodes (not all) are split off from the rest.
    fn end_grouping(&mut self) {
        let mut group = std::mem::take(&mut self.grouping);
        if group.len() >= 2 {
            self.drag_ended_ms = now_ms();
            if group.len() < self.ring_ids.len() {
                group.sort_unstable();
                self.act(Action::Split(group));
            }
        }
        self.render_grouping();
    }

    fn render_grouping(&self) {
        for (id, rn) in self.ring_ids.iter().zip(&self.ring_nodes) {
            toggle_class(&rn.group, "grouping", self.grouping.contains(id));
        }
    }

    fn build_cards(&mut self) {
        let container = by_id("sim-cards");
        clear(&container);
        self.cards = self
            .ring_ids
            .iter()
            .map(|&id| {
                let c = NodeCard::new(id);
                append(&container, &c.root);
                c
            })
            .collect();
    }

    // ----- rendering -----

    fn render(&mut self, force: bool) {
        self.sync_layout();
        self.narrate_now();
        self.feed_list.update(&self.feed);
        set_text(&by_id("sim-action-note"), &self.action_note);
        let view = self.run.view();
        self.render_status(&view);
        self.render_membership(&view);
        self.render_ring(&view);
        self.log_grid.update(&view);
        self.render_cards(&view);
        // Only the terms seen up to the step shown: after scrubbing back,
        // the recorded future's terms stay hidden until reached again.
        let now = self.run.cluster.steps();
        let shown = self.run.timeline.until(now);
        if shown.events.len() != self.timeline_len || force {
            self.timeline_len = shown.events.len();
            self.timeline.update(&shown);
        }
        self.render_scrubber();
        self.render_msg_panel();
        self.render_op_result();
        let t = now_ms();
        if force || t - self.last_slow_render > 300.0 {
            self.last_slow_render = t;
            self.render_safety();
            self.render_configs();
            self.render_history();
            self.render_linearizability(force);
        }
    }

    fn render_status(&self, view: &ClusterView) {
        let c = &self.run.cluster;
        let leader = by_id("sim-leader");
        match view.current_leader() {
            Some(l) => {
                set_text(
                    &leader,
                    &format!("leader n{} · term {}", l.id, l.term.unwrap_or(0)),
                );
                set_attr(&leader, "data-leader", &l.id.to_string());
            }
            None => {
                set_text(&leader, "no leader");
                set_attr(&leader, "data-leader", "");
            }
        }
        set_text(&by_id("sim-step"), &c.steps().to_string());
        set_text(&by_id("sim-time"), &c.now().to_string());
        set_text(
            &by_id("sim-seed-shown"),
            &self.run.settings.seed.to_string(),
        );
        set_text(
            &by_id("sim-trace-hash"),
            &format!("{:016x}", c.trace_hash()),
        );
        let link = self.run.settings.to_hash(Some(c.steps()));
        set_attr(&by_id("sim-link"), "href", &link);
        let ft = view.fault_tolerance();
        let ft_el = by_id("sim-ft");
        set_text(&ft_el, &ft.describe());
        set_attr(
            &ft_el,
            "data-quorum",
            if ft.has_quorum() { "yes" } else { "no" },
        );
        set_attr(
            &ft_el,
            "data-joint",
            if ft.is_joint() { "true" } else { "false" },
        );
        let play = by_id("sim-play");
        set_text(&play, if self.playing { "Pause" } else { "Play" });
        set_attr(
            &play,
            "aria-pressed",
            if self.playing { "false" } else { "true" },
        );
        let sel = by_id("sim-selected");
        set_text(
            &sel,
            &self
                .selected
                .map_or("click a node on the ring (or press 1–9)".into(), |s| {
                    format!("n{s}")
                }),
        );
        let chosen = self.selected.and_then(|id| view.node(id));
        let up = chosen.is_some_and(|n| n.role != RoleView::Down);
        let voter_up = up && chosen.is_some_and(|n| n.member.votes());
        set_enabled(&by_id("sim-crash"), up);
        set_enabled(
            &by_id("sim-restart"),
            chosen.is_some_and(|n| n.role == RoleView::Down),
        );
        set_enabled(
            &by_id("sim-transfer"),
            voter_up && view.current_leader().is_some(),
        );
        set_enabled(&by_id("sim-isolate"), chosen.is_some());
        set_enabled(&by_id("sim-timeout"), voter_up);
        set_enabled(&by_id("sim-crash-leader"), view.current_leader().is_some());
        let down = view
            .nodes
            .iter()
            .filter(|n| n.role == RoleView::Down)
            .count();
        let restart_all = by_id("sim-restart-all");
        set_enabled(&restart_all, down > 0);
        set_text(
            &restart_all,
            &if down > 0 {
                format!("Restart crashed ({down})")
            } else {
                "Restart crashed".to_string()
            },
        );
        let s = c.network().stats;
        set_text(
            &by_id("sim-net"),
            &format!(
                "{} in flight · sent {} · delivered {} · lost {} · cut {} · duplicated {}",
                c.network().in_flight_count(),
                s.sent,
                s.delivered,
                s.lost,
                s.cut,
                s.duplicated
            ),
        );
    }

    /// The configuration pill, the membership buttons (each disabled with
    /// its reason when it cannot act) and what became of the last change.
    fn render_membership(&self, view: &ClusterView) {
        let config = view.config.clone().unwrap_or_default();
        let pill = by_id("sim-config");
        let mut text = config.describe();
        if config.pending && !config.is_joint() {
            text.push_str(" · change not committed yet");
        }
        set_text(&pill, &text);
        set_attr(
            &pill,
            "data-joint",
            if config.is_joint() { "true" } else { "false" },
        );
        set_attr(
            &pill,
            "data-pending",
            if config.pending { "true" } else { "false" },
        );
        set_attr(&pill, "data-voters", &id_list(&config.voters));
        set_attr(&pill, "data-outgoing", &id_list(&config.outgoing));
        set_attr(&pill, "data-learners", &id_list(&config.learners));

        let c: MemberControls = self.run.member_controls(self.selected);
        let button = |id: &str, r: Result<(), &String>, title: &str| {
            let b = by_id(id);
            set_enabled(&b, r.is_ok());
            set_attr(&b, "title", r.err().map_or(title, String::as_str));
        };
        button(
            "sim-add",
            c.add.as_ref().map(|_| ()),
            "a new node joins as a learner: it receives the log but does not vote",
        );
        set_text(
            &by_id("sim-add"),
            &match &c.add {
                Ok(id) => format!("Add n{id}"),
                Err(_) => "Add node".into(),
            },
        );
        button(
            "sim-promote",
            c.promote.as_ref().map(|_| ()),
            "make this learner a voter (joint consensus: both majorities decide until it completes)",
        );
        button(
            "sim-remove",
            c.remove.as_ref().map(|_| ()),
            "remove this member (a voter through joint consensus)",
        );
        button(
            "sim-replace",
            c.replace.as_ref().map(|_| ()),
            "remove this voter and promote the chosen learner in one change",
        );
        button(
            "sim-retire",
            c.retire.as_ref().map(|_| ()),
            "stop this removed node for good: it leaves the ring",
        );
        if let Ok(sel) = by_id("sim-replace-with").dyn_into::<HtmlSelectElement>() {
            let learners = c.replace.as_ref().ok().cloned().unwrap_or_default();
            let have: Vec<String> = (0..sel.length())
                .filter_map(|i| sel.item(i))
                .filter_map(|o| o.get_attribute("value"))
                .collect();
            let want: Vec<String> = learners.iter().map(u64::to_string).collect();
            if have != want {
                let was = sel.value();
                clear(&sel);
                for id in &learners {
                    let o = el_text("option", "", &format!("n{id}"));
                    set_attr(&o, "value", &id.to_string());
                    append(&sel, &o);
                }
                if want.contains(&was) {
                    sel.set_value(&was);
                }
            }
            set_enabled(&sel, !learners.is_empty());
        }
        let hint = match (&c.gate, self.selected) {
            (Err(why), _) => format!("Membership changes wait: {why}."),
            (Ok(()), None) => {
                "Add a node, or select one on the ring to promote, remove or replace it.".into()
            }
            (Ok(()), Some(id)) => {
                let k = view.node(id).map_or(MemberKind::Unknown, |n| n.member);
                match k {
                    MemberKind::Learner { .. } => {
                        format!("n{id} is a learner: promote it to a voter, or remove it.")
                    }
                    MemberKind::Removed => format!(
                        "n{id} is removed but still running: stop it for good to take it off the ring."
                    ),
                    _ => format!("n{id} is a voter: remove it, or replace it by a learner."),
                }
            }
        };
        let hint_el = by_id("sim-conf-hint");
        set_text(&hint_el, &hint);
        set_attr(
            &hint_el,
            "data-blocked",
            if c.gate.is_err() { "true" } else { "false" },
        );
        let out = by_id("sim-conf-result");
        match &self.conf_result {
            Some((ok, text)) => {
                set_attr(&out, "data-status", if *ok { "ok" } else { "refused" });
                set_text(&out, text);
            }
            None => {
                set_attr(&out, "data-status", "");
                set_text(&out, "");
            }
        }
    }

    /// The configurations the run went through, newest first.
    fn render_configs(&self) {
        let list = by_id("sim-configs");
        const SHOWN: usize = 8;
        let items: Vec<(u64, &ConfigView)> = self
            .run
            .configs
            .iter()
            .rev()
            .take(SHOWN)
            .map(|(step, c)| (*step, c))
            .collect();
        let key = items
            .iter()
            .map(|(s, c)| format!("{s}:{}", c.describe()))
            .collect::<Vec<_>>()
            .join("|");
        if list.get_attribute("data-key").as_deref() == Some(&key) {
            return;
        }
        set_attr(&list, "data-key", &key);
        clear(&list);
        for (step, c) in items {
            let li = el_text("li", "", &format!("step {step}: {}", c.describe()));
            set_attr(
                &li,
                "data-joint",
                if c.is_joint() { "true" } else { "false" },
            );
            append(&list, &li);
        }
    }

    /// The configuration in the ring's middle: the voters, or while joint
    /// the old and the new voter sets; the learners; a change under way.
    fn render_ring_config(&self, view: &ClusterView) {
        let Some(c) = &view.config else {
            clear(&self.ring_config);
            return;
        };
        let mut lines: Vec<(&str, String)> = Vec::new();
        if c.is_joint() {
            lines.push(("head", "joint consensus".into()));
            lines.push(("sets old", format!("old {}", id_set(&c.outgoing))));
            lines.push(("sets new", format!("→ new {}", id_set(&c.voters))));
            lines.push(("note", "both majorities decide".into()));
        } else {
            lines.push(("head", "voters".into()));
            lines.push(("sets", id_set(&c.voters)));
            if c.pending {
                lines.push(("note", "change not committed yet".into()));
            }
        }
        if !c.learners.is_empty() {
            lines.push(("learners", format!("learners {}", id_set(&c.learners))));
        }
        let key = lines
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("|");
        if self.ring_config.get_attribute("data-key").as_deref() == Some(&key) {
            return;
        }
        set_attr(&self.ring_config, "data-key", &key);
        set_attr(
            &self.ring_config,
            "data-joint",
            if c.is_joint() { "true" } else { "false" },
        );
        clear(&self.ring_config);
        let top = CENTER - (lines.len() as f64 - 1.0) * 9.0;
        for (i, (class, text)) in lines.iter().enumerate() {
            let t = svg("text");
            set_attr(&t, "class", class);
            set_attr(&t, "x", &CENTER.to_string());
            set_attr(&t, "y", &format!("{:.1}", top + i as f64 * 18.0 + 5.0));
            t.set_text_content(Some(text));
            append(&self.ring_config, &t);
        }
    }

    fn render_ring(&mut self, view: &ClusterView) {
        let c = &self.run.cluster;
        self.render_ring_config(view);
        for (rn, n) in self.ring_nodes.iter().zip(&view.nodes) {
            set_attr(&rn.group, "data-role", n.role.as_str());
            set_attr(&rn.group, "data-member", n.member.as_str());
            set_hidden(
                &rn.member_ring,
                !matches!(n.member, MemberKind::Joining | MemberKind::Leaving),
            );
            let mut title = format!("n{} · {}", n.id, n.role.label());
            if !n.member.label().is_empty() {
                title.push_str(&format!(" · {}", n.member.label()));
            }
            if let Some(t) = n.term {
                title.push_str(&format!(" · term {t}"));
            }
            set_attr(&rn.group, "aria-label", &title);
            set_text(
                &rn.tip,
                &format!(
                    "{title}. Fill: the term's colour; arc: its election timer. Click or press Enter to select; then c crashes or restarts it, t fires its timer"
                ),
            );
            set_attr(
                &rn.group,
                "aria-pressed",
                if self.selected == Some(n.id) {
                    "true"
                } else {
                    "false"
                },
            );
            toggle_class(&rn.group, "selected", self.selected == Some(n.id));
            let fill = match (n.role, n.term) {
                (RoleView::Down, _) => "#eceef1",
                (_, Some(t)) => term_color(t),
                _ => "#eceef1",
            };
            set_attr(&rn.circle, "fill", fill);
            set_text(&rn.term, &n.term.map_or(String::new(), |t| format!("t{t}")));
            set_text(&rn.role, &ring_role_text(n.role, n.member));
            set_text(&rn.votes, &n.votes_text());
            set_attr(&rn.label, "data-id", &n.id.to_string());
            // Election-timer arc: drawn when the core reports the timer.
            match n.election_timer {
                Some((elapsed, timeout)) if timeout > 0 => {
                    let len = std::f64::consts::TAU * (NODE_R + 6.0);
                    let frac = (elapsed as f64 / timeout as f64).clamp(0.0, 1.0);
                    set_attr(
                        &rn.arc,
                        "stroke-dasharray",
                        &format!("{:.1} {:.1}", len * frac, len),
                    );
                    // The last fifth before the timer fires is drawn hot.
                    toggle_class(&rn.arc, "due", frac >= 0.8);
                    set_hidden(&rn.arc, false);
                }
                _ => set_hidden(&rn.arc, true),
            }
        }
        for (&(a, b), line) in &self.links {
            let cut = c.network().is_cut(a, b);
            toggle_class(line, "cut", cut);
        }
        // Messages in flight, placed by their progress along the link.
        let t = self.target.max(c.now() as f64);
        let mut i = 0;
        for m in c.in_flight() {
            let (Some((x1, y1)), Some((x2, y2))) = (self.pos_of(m.msg.from), self.pos_of(m.msg.to))
            else {
                continue;
            };
            if i == self.msgs.len() {
                let dot = svg("circle");
                // A dot shows whichever message is drawn at its place this
                // frame; its `data-msg-id` says which. Clicked, or focused
                // with Tab and Enter pressed: its details.
                set_attr(&dot, "tabindex", "0");
                set_attr(&dot, "role", "button");
                on(&dot, "click", |e: Event| pick_message(&e));
                on(&dot, "keydown", |e: Event| {
                    if e.dyn_ref::<KeyboardEvent>()
                        .is_some_and(|k| k.key() == "Enter")
                    {
                        e.prevent_default();
                        e.stop_propagation();
                        pick_message(&e);
                    }
                });
                append(&self.msg_layer, &dot);
                self.msgs.push(dot);
            }
            let dot = &self.msgs[i];
            i += 1;
            let span = (m.deliver_at.saturating_sub(m.sent_at)).max(1) as f64;
            let f = ((t - m.sent_at as f64) / span).clamp(0.0, 1.0);
            let kind = m.msg.body.kind();
            let response = kind.ends_with("_response");
            set_attr(dot, "cx", &format!("{:.1}", x1 + (x2 - x1) * f));
            set_attr(dot, "cy", &format!("{:.1}", y1 + (y2 - y1) * f));
            set_attr(
                dot,
                "r",
                if kind == "heartbeat" || kind == "heartbeat_response" {
                    "4"
                } else {
                    "6"
                },
            );
            set_attr(dot, "data-msg-id", &m.id.to_string());
            set_attr(
                dot,
                "aria-label",
                &format!(
                    "message {kind} from n{} to n{}: Enter shows it",
                    m.msg.from, m.msg.to
                ),
            );
            set_attr(
                dot,
                "class",
                &format!(
                    "msg {kind}{}{}",
                    if m.duplicate { " dup" } else { "" },
                    if self.picked_msg == Some(m.id) {
                        " picked"
                    } else {
                        ""
                    }
                ),
            );
            let color = msg_color(kind);
            set_attr(dot, "fill", if response { "#ffffff" } else { color });
            set_attr(dot, "stroke", color);
            set_hidden(dot, false);
        }
        for dot in &self.msgs[i..] {
            set_hidden(dot, true);
        }
        self.render_drop_marks();
    }

    /// Adds a cross for each newly dropped message, fades the others and
    /// removes the faded.
    fn render_drop_marks(&mut self) {
        let t = now_ms();
        for d in std::mem::take(&mut self.run.dropped) {
            let (Some(from), Some(to)) = (self.pos_of(d.from), self.pos_of(d.to)) else {
                continue;
            };
            let mark = drop_mark(&d, from, to);
            append(&self.drop_layer, &mark);
            self.drop_marks.push((mark, t));
        }
        let excess = self.drop_marks.len().saturating_sub(DROP_MARKS_MAX);
        for (mark, _) in self.drop_marks.drain(..excess) {
            mark.remove();
        }
        self.drop_marks.retain(|(mark, born)| {
            let age = (t - born) / DROP_MARK_MS;
            if age >= 1.0 {
                mark.remove();
                return false;
            }
            set_attr(mark, "opacity", &format!("{:.2}", 1.0 - age));
            true
        });
    }

    fn render_msg_panel(&self) {
        let panel = by_id("sim-msg");
        let Some(id) = self.picked_msg else {
            set_hidden(&panel, true);
            return;
        };
        set_hidden(&panel, false);
        set_text(&by_id("sim-msg-title"), &format!("#{id}"));
        let fields = by_id("sim-msg-fields");
        let drop = by_id("sim-msg-drop");
        match self.run.cluster.network().get(id) {
            Some(m) => {
                set_attr(&panel, "data-state", "in-flight");
                set_enabled(&drop, true);
                set_text(&by_id("sim-msg-state"), "in flight");
                let rows = message_fields(m);
                if fields.child_element_count() as usize != 2 * rows.len()
                    || fields.get_attribute("data-msg-id").as_deref() != Some(&id.to_string())
                {
                    clear(&fields);
                    for (k, v) in rows {
                        append(&fields, &el_text("dt", "", k));
                        let dd = el_text("dd", "", &v);
                        set_attr(&dd, "data-field", k);
                        append(&fields, &dd);
                    }
                    set_attr(&fields, "data-msg-id", &id.to_string());
                }
            }
            None => {
                set_attr(&panel, "data-state", "gone");
                set_enabled(&drop, false);
                set_text(
                    &by_id("sim-msg-state"),
                    "no longer in flight (delivered or dropped)",
                );
            }
        }
    }

    fn render_op_result(&self) {
        let out = by_id("sim-op-result");
        if let Some(why) = &self.op_refused {
            set_attr(&out, "data-status", "refused");
            set_text(&out, why);
            return;
        }
        let Some(op) = self.run.hand_op() else {
            set_attr(&out, "data-status", "");
            set_text(&out, "");
            return;
        };
        set_attr(&out, "data-status", outcome_class(op));
        let value = match &op.outcome {
            Outcome::Ok(OpOutput::Value(v)) => v.clone(),
            _ => None,
        };
        set_attr(&out, "data-value", value.as_deref().unwrap_or(""));
        let text = match &op.outcome {
            Outcome::Pending => format!("#{} {} … waiting", op.id, op.op),
            Outcome::Ok(OpOutput::Value(Some(v))) => format!(
                "#{} {} → {v:?} (served by n{})",
                op.id,
                op.op,
                op.served_by.unwrap_or(0)
            ),
            Outcome::Ok(o) => format!(
                "#{} {} → {o} (served by n{})",
                op.id,
                op.op,
                op.served_by.unwrap_or(0)
            ),
            Outcome::Unknown => {
                format!("#{} {} → no answer in time (outcome unknown)", op.id, op.op)
            }
        };
        set_text(&out, &text);
    }

    fn render_cards(&mut self, view: &ClusterView) {
        let leader = view.current_leader();
        for (card, n) in self.cards.iter_mut().zip(&view.nodes) {
            let progress = leader
                .filter(|l| l.id != n.id)
                .and_then(|l| l.followers.iter().find(|f| f.id == n.id))
                .map(|f| (f.match_index, f.next_index));
            card.update(n, progress);
            toggle_class(&card.root, "selected", self.selected == Some(n.id));
        }
    }

    fn render_scrubber(&mut self) {
        let scrub: HtmlInputElement = input("sim-scrub");
        let horizon = self.run.horizon.max(1);
        let max = horizon.to_string();
        if scrub.max() != max {
            scrub.set_max(&max);
        }
        let v = self.run.step_no().to_string();
        if scrub.value() != v {
            scrub.set_value(&v);
        }
        let key = (
            self.run.bands.len() + self.run.settings.actions.len() * 1000,
            horizon,
            self.run.violation_steps.len(),
        );
        if key == self.bands_key {
            return;
        }
        // Redraw the bands at most when the horizon moved by 1% or the
        // marks changed.
        if key.0 == self.bands_key.0
            && key.2 == self.bands_key.2
            && horizon.saturating_sub(self.bands_key.1) * 100 < horizon
        {
            return;
        }
        self.bands_key = key;
        let bands = by_id("sim-bands");
        clear(&bands);
        let x = |step: u64| step as f64 / horizon as f64 * 1000.0;
        for (i, &(start, term, leader)) in self.run.bands.iter().enumerate() {
            let end = self.run.bands.get(i + 1).map_or(horizon, |b| b.0);
            let r = svg("rect");
            set_attr(&r, "x", &format!("{:.2}", x(start)));
            set_attr(&r, "width", &format!("{:.2}", (x(end) - x(start)).max(0.5)));
            set_attr(&r, "y", "0");
            set_attr(&r, "height", "14");
            set_attr(&r, "fill", term_color(term));
            let title = svg("title");
            title.set_text_content(Some(&format!(
                "term {term}, leader n{} from step {start}",
                leader.unwrap_or(0)
            )));
            append(&r, &title);
            append(&bands, &r);
        }
        for (step, label) in self.run.marks() {
            let l = svg("rect");
            set_attr(&l, "class", "fault-mark");
            set_attr(&l, "x", &format!("{:.2}", x(step) - 1.0));
            set_attr(&l, "width", "2");
            set_attr(&l, "y", "0");
            set_attr(&l, "height", "22");
            let title = svg("title");
            title.set_text_content(Some(&format!("step {step}: {label}")));
            append(&l, &title);
            append(&bands, &l);
        }
        for &step in &self.run.violation_steps {
            let l = svg("rect");
            set_attr(&l, "class", "violation-mark");
            set_attr(&l, "x", &format!("{:.2}", x(step) - 1.5));
            set_attr(&l, "width", "3");
            set_attr(&l, "y", "0");
            set_attr(&l, "height", "22");
            append(&bands, &l);
        }
    }

    fn render_safety(&self) {
        let list = by_id("sim-safety");
        let violations = self.run.cluster.violations();
        let checks = [
            (
                ViolationKind::ElectionSafety,
                "Election safety",
                "at most one leader per term",
            ),
            (
                ViolationKind::LogMatching,
                "Log matching",
                "same index and term ⇒ same prefix",
            ),
            (
                ViolationKind::LeaderCompleteness,
                "Leader completeness",
                "leaders hold every committed entry",
            ),
            (
                ViolationKind::StateMachineSafety,
                "State machine safety",
                "no two nodes apply different entries at one index",
            ),
            (
                ViolationKind::CommittedEntryLost,
                "Durability",
                "committed entries are never lost or changed",
            ),
            (
                ViolationKind::CommitNotDurable,
                "Commit on disk",
                "a committed entry is on a majority's disks",
            ),
            (
                ViolationKind::DoubleVote,
                "One vote per term",
                "no node votes twice in a term, across restarts",
            ),
            (
                ViolationKind::AppliedTwice,
                "At most once",
                "a client's write changes the state once",
            ),
            (
                ViolationKind::StaleRead,
                "Fresh reads",
                "a read is served at or after the commit index it started at",
            ),
        ];
        if list.child_element_count() as usize != checks.len() {
            clear(&list);
            for _ in checks {
                append(&list, &el_class("li", ""));
            }
        }
        let items = list.children();
        for (i, (kind, name, what)) in checks.iter().enumerate() {
            let Some(li) = items.item(i as u32) else {
                continue;
            };
            let found: Vec<_> = violations
                .iter()
                .filter(|v| {
                    let k = v.violation.kind();
                    k == *kind
                        || (*kind == ViolationKind::CommittedEntryLost
                            && k == ViolationKind::CommittedEntryChanged)
                })
                .collect();
            set_attr(
                &li,
                "data-ok",
                if found.is_empty() { "true" } else { "false" },
            );
            let text = match found.first() {
                None => format!("✓ {name} — {what}"),
                Some(v) => format!("✗ {name}: {} violation(s); first: {v}", found.len()),
            };
            set_text(&li, &text);
        }
        let driver = violations
            .iter()
            .filter(|v| v.violation.kind() == ViolationKind::DriverContract)
            .count();
        set_text(
            &by_id("sim-safety-note"),
            &if driver > 0 {
                format!("{driver} driver contract violation(s)")
            } else {
                String::new()
            },
        );
    }

    fn render_linearizability(&mut self, force: bool) {
        let kept = self.run.cluster.history().len();
        let step = self.run.step_no();
        if !force && kept == self.lin_checked_len && step == self.lin_checked_step {
            return;
        }
        self.lin_checked_len = kept;
        self.lin_checked_step = step;
        let verdict = by_id("sim-lin");
        // The simulator checks the history as it grows (up to the oldest
        // operation still waiting for its answer) and forgets what it settled.
        match self.run.cluster.linearizability() {
            Ok(stats) => {
                set_attr(&verdict, "data-verdict", "linearizable");
                set_text(
                    &verdict,
                    &format!(
                        "✓ linearizable — {} operations on {} keys checked so far ({} unanswered writes may or may not have happened)",
                        stats.ops, stats.keys, stats.unknown
                    ),
                );
            }
            Err(e @ LinearizabilityError::NotLinearizable { .. }) => {
                set_attr(&verdict, "data-verdict", "violation");
                set_text(&verdict, &format!("✗ {e}"));
            }
            Err(e) => {
                set_attr(&verdict, "data-verdict", "unknown");
                set_text(&verdict, &format!("? {e}"));
            }
        }
    }

    fn render_history(&self) {
        let hist = by_id("sim-history");
        clear(&hist);
        let lanes = self.run.lanes();
        let now = self.run.cluster.now();
        let start = now.saturating_sub(HISTORY_WINDOW);
        let width = 1000.0;
        let lane_h = 26.0;
        let left = 70.0;
        // Room under the lanes for the time axis.
        let axis_h = 30.0;
        let x = |t: u64| {
            left + (t.saturating_sub(start)) as f64 / HISTORY_WINDOW as f64 * (width - left - 10.0)
        };
        let lanes_h = lanes.len() as f64 * lane_h + 8.0;
        set_attr(
            &hist,
            "viewBox",
            &format!("0 0 {width} {}", lanes_h + axis_h),
        );
        set_attr(&hist, "height", &format!("{}", lanes_h + axis_h));
        self.render_history_axis(&hist, start, lanes_h, &x);
        for (lane, (client, ops)) in lanes.iter().enumerate() {
            let y = 4.0 + lane as f64 * lane_h;
            let name = svg("text");
            set_attr(&name, "x", "4");
            set_attr(&name, "y", &format!("{}", y + 16.0));
            set_attr(&name, "class", "lane-name");
            let by_hand = Some(*client) == self.run.cluster.hand_client_id();
            name.set_text_content(Some(&if by_hand {
                "by hand".to_string()
            } else {
                format!("client {client}")
            }));
            append(&hist, &name);
            for op in ops.iter().rev() {
                let end = op.completed_at.unwrap_or(now);
                if end < start {
                    break;
                }
                let x0 = x(op.invoked_at.max(start));
                let x1 = x(end).max(x0 + 3.0);
                let g = svg("g");
                set_attr(
                    &g,
                    "class",
                    &format!(
                        "op {}{}",
                        outcome_class(op),
                        if by_hand { " by-hand" } else { "" }
                    ),
                );
                let r = svg("rect");
                set_attr(&r, "x", &format!("{x0:.1}"));
                set_attr(&r, "y", &format!("{y:.1}"));
                set_attr(&r, "width", &format!("{:.1}", x1 - x0));
                set_attr(&r, "height", "20");
                set_attr(&r, "rx", "3");
                append(&g, &r);
                let out = match &op.outcome {
                    Outcome::Ok(o) => format!(" → {o}"),
                    Outcome::Pending => " …".into(),
                    Outcome::Unknown => " → ?".into(),
                };
                let label = format!("{}{out}", op.op);
                let title = svg("title");
                title.set_text_content(Some(&format!(
                    "#{} client {} {label}; invoked {} completed {} via n{}",
                    op.id,
                    op.client,
                    op.invoked_at,
                    op.completed_at.map_or("-".into(), |t| t.to_string()),
                    op.served_by.unwrap_or(0)
                )));
                append(&g, &title);
                // Every bar wide enough for a word is labelled: the whole
                // operation and its answer, or, on a narrow bar, its kind
                // (`put`, `get`); the tooltip has the rest.
                let room = x1 - x0 - 8.0;
                let kind = label.split_whitespace().next().unwrap_or("");
                let shown: Option<String> = if room >= 6.5 * label.chars().count() as f64 {
                    Some(label.clone())
                } else if room >= 6.5 * 8.0 {
                    Some(label.chars().take((room / 6.5) as usize).collect())
                } else if room >= 6.5 * kind.chars().count() as f64 && !kind.is_empty() {
                    Some(kind.to_string())
                } else {
                    None
                };
                if let Some(shown) = shown {
                    let t = svg("text");
                    set_attr(&t, "x", &format!("{:.1}", x0 + 4.0));
                    set_attr(&t, "y", &format!("{:.1}", y + 14.0));
                    t.set_text_content(Some(&shown));
                    append(&g, &t);
                }
                append(&hist, &g);
            }
        }
    }

    /// The history's time axis under the lanes: a line, a tick with its
    /// virtual time every sixth of the window, and what the axis measures.
    fn render_history_axis(&self, hist: &Element, start: u64, top: f64, x: &dyn Fn(u64) -> f64) {
        let axis = svg("g");
        set_attr(&axis, "class", "axis");
        let line = svg("line");
        set_attr(&line, "x1", &format!("{:.1}", x(start)));
        set_attr(&line, "x2", &format!("{:.1}", x(start + HISTORY_WINDOW)));
        set_attr(&line, "y1", &format!("{top:.1}"));
        set_attr(&line, "y2", &format!("{top:.1}"));
        append(&axis, &line);
        const TICKS: u64 = 6;
        for k in 0..=TICKS {
            let t = start + HISTORY_WINDOW * k / TICKS;
            let tick = svg("line");
            set_attr(&tick, "x1", &format!("{:.1}", x(t)));
            set_attr(&tick, "x2", &format!("{:.1}", x(t)));
            set_attr(&tick, "y1", &format!("{top:.1}"));
            set_attr(&tick, "y2", &format!("{:.1}", top + 5.0));
            append(&axis, &tick);
            let label = svg("text");
            set_attr(&label, "x", &format!("{:.1}", x(t)));
            set_attr(&label, "y", &format!("{:.1}", top + 17.0));
            set_attr(
                &label,
                "text-anchor",
                match k {
                    0 => "start",
                    TICKS => "end",
                    _ => "middle",
                },
            );
            label.set_text_content(Some(&t.to_string()));
            append(&axis, &label);
        }
        let unit = svg("text");
        set_attr(&unit, "x", "4");
        set_attr(&unit, "y", &format!("{:.1}", top + 17.0));
        unit.set_text_content(Some("time →"));
        append(&axis, &unit);
        append(hist, &axis);
    }

    /// The speed slider and its label.
    fn show_speed(&self) {
        let x = self.speed / UNITS_PER_SECOND_AT_1X;
        let slider = input("sim-speed");
        let pos = position_of(x).to_string();
        if slider.value() != pos {
            slider.set_value(&pos);
        }
        let label = speed_label(x);
        set_attr(&slider, "aria-valuetext", &label);
        let shown = by_id("sim-speed-val");
        set_text(&shown, &label);
        set_attr(&shown, "data-speed", &format!("{x:.4}"));
    }

    /// One keyboard shortcut; whether it was one.
    fn key(&mut self, key: &str, shift: bool) -> bool {
        match key {
            " " | "k" => {
                self.playing = !self.playing;
                self.last_ts = None;
                self.target = self.run.cluster.now() as f64;
            }
            "s" => {
                self.playing = false;
                self.run.step();
                self.target = self.run.cluster.now() as f64;
            }
            "c" => {
                let Some(id) = self.selected else {
                    self.action_note = "select a node first (click it, or press its number)".into();
                    self.render(true);
                    return true;
                };
                let up = self.run.cluster.node(id).is_some_and(|n| n.is_up());
                self.act(if up {
                    Action::Crash(id)
                } else {
                    Action::Restart(id)
                });
                return true;
            }
            "t" => {
                match self.selected {
                    Some(id) => self.act(Action::Timeout(id)),
                    None => {
                        self.action_note =
                            "select a node first (click it, or press its number)".into();
                        self.render(true);
                    }
                }
                return true;
            }
            "ArrowLeft" | "ArrowRight" => {
                let by = if shift {
                    SCRUB_KEY_STEPS * 10
                } else {
                    SCRUB_KEY_STEPS
                };
                let now = self.run.step_no();
                let to = if key == "ArrowLeft" {
                    now.saturating_sub(by)
                } else {
                    now + by
                };
                self.playing = false;
                self.seek(to);
            }
            "Escape" => {
                self.selected = None;
                self.picked_msg = None;
            }
            d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
                let slot = usize::from(d.as_bytes()[0] - b'0');
                match slot.checked_sub(1).and_then(|i| self.ring_ids.get(i)) {
                    Some(&id) => self.selected = Some(id),
                    None => return false,
                }
            }
            _ => return false,
        }
        self.render(true);
        true
    }

    fn sync_controls(&self) {
        let cfg = self.run.cluster.config();
        input("sim-prevote").set_checked(cfg.raft.pre_vote);
        input("sim-cq").set_checked(cfg.raft.check_quorum);
        input("sim-seed").set_value(&self.run.settings.seed.to_string());
        if let Ok(sel) = by_id("sim-nodes").dyn_into::<HtmlSelectElement>() {
            sel.set_value(&self.run.settings.nodes.to_string());
        }
        self.show_speed();
        let net = &self.run.cluster.network().config;
        input("sim-drop").set_value(&((net.drop_rate * 100.0).round() as u32).to_string());
        input("sim-latency").set_value(&net.latency.1.to_string());
        set_text(
            &by_id("sim-drop-val"),
            &format!("{:.0}%", net.drop_rate * 100.0),
        );
        set_text(
            &by_id("sim-latency-val"),
            &format!("{}–{}", net.latency.0, net.latency.1),
        );
    }
}

/// The text under a node on the ring: its role, and its place in the
/// configuration when it is not a plain voter.
fn ring_role_text(role: RoleView, member: MemberKind) -> String {
    match member {
        MemberKind::Voter | MemberKind::Unknown => role.label().to_string(),
        MemberKind::Learner { promote } if role != RoleView::Down => {
            if promote { "learner ↑" } else { "learner" }.to_string()
        }
        MemberKind::Removed if role != RoleView::Down => "removed".to_string(),
        MemberKind::Joining => format!("{} · joining", role.label()),
        MemberKind::Leaving => format!("{} · leaving", role.label()),
        m => format!("{} · {}", role.label(), m.as_str()),
    }
}

/// `1 2 3` (for `data-*` attributes the tests read).
fn id_list(ids: &[NodeId]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// A red cross where `d` died: as far along its link as it got, kept clear
/// of the node circles at both ends.
fn drop_mark(d: &DroppedMessage, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> Element {
    let len = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt().max(1.0);
    let margin = ((NODE_R + 10.0) / len).min(0.45);
    let f = d.progress().clamp(margin, 1.0 - margin);
    let (x, y) = (x1 + (x2 - x1) * f, y1 + (y2 - y1) * f);
    let g = svg("g");
    set_attr(&g, "class", "drop-mark");
    set_attr(&g, "data-cause", &format!("{:?}", d.cause).to_lowercase());
    set_attr(&g, "transform", &format!("translate({x:.1},{y:.1})"));
    for (a, b, c, e) in [(-6, -6, 6, 6), (-6, 6, 6, -6)] {
        let l = svg("line");
        for (k, v) in [("x1", a), ("y1", b), ("x2", c), ("y2", e)] {
            set_attr(&l, k, &v.to_string());
        }
        append(&g, &l);
    }
    let title = svg("title");
    title.set_text_content(Some(&format!(
        "{} n{} → n{} (term {}) dropped: {:?}",
        d.kind, d.from, d.to, d.term, d.cause
    )));
    append(&g, &title);
    g
}

/// What the inspector shows of a message in flight.
fn message_fields(m: &InFlight) -> Vec<(&'static str, String)> {
    let msg = &m.msg;
    let mut rows = vec![
        ("type", msg.body.kind().to_string()),
        ("from → to", format!("n{} → n{}", msg.from, msg.to)),
        ("term", msg.term.to_string()),
        ("sent", format!("t={}", m.sent_at)),
        ("arrives", format!("t={}", m.deliver_at)),
    ];
    if m.duplicate {
        rows.push(("copy", "the network's duplicate".into()));
    }
    let flag = |b: bool| if b { "yes" } else { "no" }.to_string();
    match &msg.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        } => {
            rows.push(("last index", last_index.to_string()));
            rows.push(("last term", last_term.to_string()));
        }
        MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            rows.push(("last index", last_index.to_string()));
            rows.push(("last term", last_term.to_string()));
            rows.push(("transfer", flag(*transfer)));
        }
        MessageBody::PreVoteResponse { granted } | MessageBody::VoteResponse { granted } => {
            rows.push(("granted", flag(*granted)));
        }
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            rows.push(("prev index", prev_index.to_string()));
            rows.push(("prev term", prev_term.to_string()));
            rows.push(("entries", entries.len().to_string()));
            if let (Some(a), Some(b)) = (entries.first(), entries.last()) {
                let span = if a.index == b.index {
                    a.index.to_string()
                } else {
                    format!("{} to {}", a.index, b.index)
                };
                rows.push(("indexes", span));
            }
            rows.push(("commit", commit.to_string()));
        }
        MessageBody::AppendResponse {
            success,
            index,
            hint_index,
            hint_term,
        } => {
            rows.push(("success", flag(*success)));
            rows.push(("index", index.to_string()));
            if !success {
                rows.push(("hint", format!("index {hint_index}, term {hint_term}")));
            }
        }
        MessageBody::Heartbeat {
            commit, read_ctx, ..
        } => {
            rows.push(("commit", commit.to_string()));
            rows.push(("read ctx", read_ctx.to_string()));
        }
        MessageBody::HeartbeatResponse { read_ctx, .. } => {
            rows.push(("read ctx", read_ctx.to_string()));
        }
        MessageBody::InstallSnapshot { snapshot } => {
            rows.push(("snapshot index", snapshot.meta.index.to_string()));
            rows.push(("snapshot term", snapshot.meta.term.to_string()));
        }
        MessageBody::ReadIndex { ctx } => rows.push(("ctx", ctx.to_string())),
        MessageBody::ReadIndexResponse { ctx, index } => {
            rows.push(("ctx", ctx.to_string()));
            rows.push((
                "read index",
                index.map_or("refused".into(), |i| i.to_string()),
            ));
        }
        MessageBody::TimeoutNow => rows.push(("asks", "campaign at once".into())),
    }
    rows
}

fn click(id: &str, f: impl Fn(&mut SimUi) + 'static) {
    on(&by_id(id), "click", move |e: Event| {
        e.prevent_default();
        with_ui(|ui| f(ui));
        ensure_loop();
    });
}

fn new_run(seed: u64, nodes: usize, ui: &mut SimUi) {
    let s = SimSettings {
        seed,
        nodes,
        pre_vote: input("sim-prevote").checked(),
        check_quorum: input("sim-cq").checked(),
        ..SimSettings::default()
    };
    let hash = s.to_hash(None);
    ui.load(&hash);
    ui.playing = true;
    ui.render(true);
}

fn mount_controls() {
    let speed = by_id("sim-speed");
    set_attr(&speed, "max", &SLIDER_MAX.to_string());
    let nodes = by_id("sim-nodes");
    for n in 3..=9 {
        let o = el_text("option", "", &n.to_string());
        set_attr(&o, "value", &n.to_string());
        append(&nodes, &o);
    }
    click("sim-play", |ui| {
        ui.playing = !ui.playing;
        ui.last_ts = None;
        ui.target = ui.run.cluster.now() as f64;
        ui.render(true);
    });
    click("sim-step-btn", |ui| {
        ui.playing = false;
        ui.run.step();
        ui.target = ui.run.cluster.now() as f64;
        ui.render(true);
    });
    on(&speed, "input", |_| {
        if let Ok(pos) = input("sim-speed").value().parse::<f64>() {
            with_ui(|ui| {
                ui.speed = speed_at(pos) * UNITS_PER_SECOND_AT_1X;
                ui.show_speed();
                ui.write_hash();
            });
        }
    });
    on(&document(), "keydown", |e: Event| {
        let Some(k) = e.dyn_ref::<KeyboardEvent>() else {
            return;
        };
        if k.ctrl_key() || k.meta_key() || k.alt_key() {
            return;
        }
        // Typing in a field, or a control's own keys, win.
        let target = e.target().and_then(|t| t.dyn_into::<Element>().ok());
        let tag = target
            .as_ref()
            .map(|t| t.tag_name().to_lowercase())
            .unwrap_or_default();
        let key = k.key();
        let own_keys = match tag.as_str() {
            "textarea" | "select" => true,
            "input" => {
                let kind = target
                    .as_ref()
                    .and_then(|t| t.get_attribute("type"))
                    .unwrap_or_default();
                kind != "checkbox" || key == " "
            }
            "button" | "a" => key == " " || key == "Enter",
            _ => false,
        };
        if own_keys {
            return;
        }
        let handled = with_ui(|ui| ui.visible && ui.key(&key, k.shift_key())).unwrap_or(false);
        if handled {
            e.prevent_default();
            ensure_loop();
        }
    });
    click("sim-new", |ui| {
        let seed = input("sim-seed").value().trim().parse().unwrap_or(1);
        let nodes = by_id("sim-nodes")
            .dyn_into::<HtmlSelectElement>()
            .ok()
            .and_then(|s| s.value().parse().ok())
            .unwrap_or(5);
        new_run(seed, nodes, ui);
    });
    click("sim-random", |ui| {
        let seed = (js_sys::Math::random() * 1_000_000.0) as u64 + 1;
        let nodes = ui.run.settings.nodes;
        new_run(seed, nodes, ui);
    });
    click("sim-crash", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Crash(id));
        }
    });
    click("sim-restart", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Restart(id));
        }
    });
    click("sim-transfer", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Transfer(id));
        }
    });
    click("sim-isolate", |ui| {
        if let Some(id) = ui.selected {
            let others: Vec<NodeId> = ui.ring_ids.iter().copied().filter(|&o| o != id).collect();
            for other in others {
                ui.act(Action::Cut(id, other));
                ui.act(Action::Cut(other, id));
            }
        }
    });
    on(&document(), "pointermove", |e: Event| {
        let Some(p) = e.dyn_ref::<PointerEvent>() else {
            return;
        };
        let over = document()
            .element_from_point(p.client_x() as f32, p.client_y() as f32)
            .and_then(|el| el.closest(".sim-node").ok().flatten())
            .and_then(|g| g.get_attribute("data-node-id"))
            .and_then(|v| v.parse::<NodeId>().ok());
        if let Some(id) = over {
            with_ui(|ui| {
                if !ui.grouping.is_empty() && !ui.grouping.contains(&id) {
                    ui.grouping.push(id);
                    ui.render_grouping();
                }
            });
        }
    });
    for end in ["pointerup", "pointercancel"] {
        on(&document(), end, |_| {
            with_ui(|ui| {
                if !ui.grouping.is_empty() {
                    ui.end_grouping();
                }
            });
            ensure_loop();
        });
    }
    click("sim-timeout", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Timeout(id));
        }
    });
    on(&by_id("sim-op-form"), "submit", |e: Event| {
        e.prevent_default();
        let key = input("sim-op-key").value();
        let value = input("sim-op-value").value();
        with_ui(|ui| ui.hand_op(HandOp::Put { key, value }));
        ensure_loop();
    });
    click("sim-get", |ui| {
        let key = input("sim-op-key").value();
        ui.hand_op(HandOp::Get { key });
    });
    click("sim-msg-drop", |ui| {
        if let Some(id) = ui.picked_msg {
            if ui.run.cluster.network().get(id).is_some() {
                ui.act(Action::DropMessage(id));
            }
        }
    });
    click("sim-msg-close", |ui| {
        ui.picked_msg = None;
        ui.render(true);
    });
    click("sim-crash-leader", |ui| {
        if let Some(l) = ui.run.cluster.leader() {
            ui.act(Action::Crash(l));
        }
    });
    click("sim-restart-all", |ui| {
        let down: Vec<NodeId> = ui
            .run
            .cluster
            .nodes()
            .iter()
            .filter(|n| !n.is_up())
            .map(|n| n.id())
            .collect();
        for id in down {
            ui.act(Action::Restart(id));
        }
    });
    click("sim-heal", |ui| ui.act(Action::Heal));
    click("sim-add", |ui| {
        let promote = input("sim-add-promote").checked();
        let id = ui.run.cluster.next_node_id();
        ui.act(Action::AddNode { id, promote });
    });
    click("sim-promote", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Promote(id));
        }
    });
    click("sim-remove", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Remove(id));
        }
    });
    click("sim-replace", |ui| {
        let with = by_id("sim-replace-with")
            .dyn_into::<HtmlSelectElement>()
            .ok()
            .and_then(|s| s.value().parse::<NodeId>().ok());
        if let (Some(remove), Some(promote)) = (ui.selected, with) {
            ui.act(Action::Replace { remove, promote });
        }
    });
    click("sim-retire", |ui| {
        if let Some(id) = ui.selected {
            ui.act(Action::Retire(id));
        }
    });
    on(&by_id("sim-drop"), "change", |_| {
        let p = input("sim-drop").value().parse().unwrap_or(0);
        with_ui(|ui| {
            ui.act(Action::Drop(p));
            ui.sync_controls();
        });
    });
    on(&by_id("sim-latency"), "change", |_| {
        let hi: u64 = input("sim-latency").value().parse().unwrap_or(30);
        with_ui(|ui| {
            ui.act(Action::Latency((hi / 3).max(1), hi.max(1)));
            ui.sync_controls();
        });
    });
    on(&by_id("sim-prevote"), "change", |_| {
        let on = input("sim-prevote").checked();
        with_ui(|ui| ui.act(Action::PreVote(on)));
    });
    on(&by_id("sim-cq"), "change", |_| {
        let on = input("sim-cq").checked();
        with_ui(|ui| ui.act(Action::CheckQuorum(on)));
    });
    on(&by_id("sim-scrub"), "input", |_| {
        let v: u64 = input("sim-scrub").value().parse().unwrap_or(0);
        with_ui(|ui| {
            ui.playing = false;
            ui.seek(v);
            ui.render(true);
        });
    });
}

/// Pauses on the message the dot behind `e` shows, and opens its details.
fn pick_message(e: &Event) {
    let id = e
        .current_target()
        .and_then(|t| t.dyn_into::<Element>().ok())
        .and_then(|d| d.get_attribute("data-msg-id"))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(id) = id {
        with_ui(|ui| {
            // Pause, so the message stays to be looked at.
            ui.playing = false;
            ui.picked_msg = Some(id);
            ui.target = ui.run.cluster.now() as f64;
            ui.render(true);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WCAG contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let lum = |h: &str| {
            let ch = |i: usize| {
                let c = f64::from(u8::from_str_radix(&h[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.04045 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * ch(1) + 0.7152 * ch(3) + 0.0722 * ch(5)
        };
        let (x, y) = (lum(a), lum(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn pre_vote_and_vote_messages_read_apart_and_every_message_shows_on_white() {
        let apart = contrast(msg_color("pre_vote"), msg_color("vote"));
        assert!(apart >= 3.0, "pre-vote vs vote {apart:.2}:1");
        for kind in [
            "pre_vote",
            "vote",
            "append",
            "heartbeat",
            "install_snapshot",
            "read_index",
            "timeout_now",
            "other",
        ] {
            // A response is a white dot ringed in its colour.
            let on_white = contrast(msg_color(kind), "#ffffff");
            assert!(on_white >= 3.0, "{kind} on white {on_white:.2}:1");
        }
    }

    #[test]
    fn the_speed_slider_spans_a_hundredth_to_fifty() {
        assert!((speed_at(0.0) - SLOWEST).abs() < 1e-12);
        assert!((speed_at(SLIDER_MAX) - FASTEST).abs() < 1e-9);
        let default = position_of(DEFAULT_SPEED);
        assert!((speed_at(default) - DEFAULT_SPEED).abs() < 0.002);
        assert_eq!(speed_label(speed_at(default)), "0.1×");
        assert_eq!(speed_label(0.01), "0.01×");
        assert_eq!(speed_label(2.5), "2.5×");
        assert_eq!(speed_label(50.0), "50×");
        assert_eq!(speed_label(1.0), "1×");
    }
}
