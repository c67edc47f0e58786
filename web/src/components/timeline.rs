//! The term/leader timeline: one chip per term (or leader change), coloured
//! by term, oldest first.

use web_sys::Element;

use crate::dom::{append, el_class, set_attr, set_style, set_text};
use crate::model::{term_color, Timeline};

/// How many of the newest events the strip shows.
const SHOWN: usize = 60;

/// The strip.
pub struct TimelineStrip {
    /// The root element (`.timeline`).
    pub root: Element,
    chips: Vec<Element>,
    unit: &'static str,
}

impl TimelineStrip {
    /// An empty timeline; `unit` formats the time (`ms` or `tick`).
    pub fn new(unit: &'static str) -> TimelineStrip {
        TimelineStrip {
            root: el_class("div", "timeline"),
            chips: Vec::new(),
            unit,
        }
    }

    /// Shows `t`.
    pub fn update(&mut self, t: &Timeline) {
        let start = t.events.len().saturating_sub(SHOWN);
        let events = &t.events[start..];
        while self.chips.len() < events.len() {
            let chip = el_class("span", "tl-event");
            append(&self.root, &chip);
            self.chips.push(chip);
        }
        while self.chips.len() > events.len() {
            if let Some(c) = self.chips.pop() {
                c.remove();
            }
        }
        for (e, chip) in events.iter().zip(&self.chips) {
            let leader = e
                .leader
                .map_or("no leader".to_string(), |l| format!("n{l}"));
            let when = if self.unit == "ms" {
                format!("{:.1} s", e.at as f64 / 1000.0)
            } else {
                format!("tick {}", e.at)
            };
            let mut text = format!("term {} · {leader}", e.term);
            if let Some(n) = &e.note {
                text.push_str(&format!(" · {n}"));
            }
            set_text(chip, &text);
            set_style(chip, "background", term_color(e.term));
            set_attr(chip, "title", &format!("at {when}"));
            set_attr(chip, "data-term", &e.term.to_string());
            set_attr(
                chip,
                "data-leader",
                &e.leader.map_or(String::new(), |l| l.to_string()),
            );
        }
        self.root.set_scroll_left(self.root.scroll_width());
    }
}
