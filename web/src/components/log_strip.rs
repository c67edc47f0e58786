//! A node's log as a horizontal strip of cells, coloured by term, with the
//! snapshot boundary, commit and apply marks and the leader's match/next
//! for this node. Scrolls sideways; stays pinned to the tail unless the
//! user scrolled back.

use web_sys::Element;

use crate::dom::{
    append, el_class, el_text, set_attr, set_hidden, set_style, set_text, toggle_class,
};
use crate::model::{term_color, NodeView};

/// The strip.
pub struct LogStrip {
    /// The root element (`.log-strip`).
    pub root: Element,
    snap: Element,
    elided: Element,
    cells: Element,
    cell_els: Vec<(Element, Element, Element)>,
}

impl Default for LogStrip {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStrip {
    /// An empty strip.
    pub fn new() -> LogStrip {
        let root = el_class("div", "log-strip");
        let cells = el_class("div", "log-cells");
        let snap = el_text("span", "log-snap", "");
        let elided = el_text("span", "log-elided", "…");
        // The snapshot chip stays in view: it sits before the scrolling
        // cells, not among them.
        append(&root, &snap);
        append(&cells, &elided);
        append(&root, &cells);
        LogStrip {
            root,
            snap,
            elided,
            cells,
            cell_els: Vec::new(),
        }
    }

    /// Shows `node`'s log. `progress` is the leader's `(match, next)` for
    /// this node, when it has a leader that tracks it.
    pub fn update(&mut self, node: &NodeView, progress: Option<(u64, u64)>) {
        let at_end = {
            let c = &self.cells;
            c.scroll_left() + c.client_width() >= c.scroll_width() - 8
        };
        set_hidden(&self.snap, node.snapshot_index == 0);
        set_text(&self.snap, &format!("snap ≤{}", node.snapshot_index));
        set_attr(
            &self.snap,
            "title",
            &format!(
                "entries up to {} compacted into a snapshot",
                node.snapshot_index
            ),
        );
        set_hidden(&self.elided, !node.log.elided_before);
        let cells = &node.log.cells;
        while self.cell_els.len() < cells.len() {
            let cell = el_class("span", "log-cell");
            let ix = el_class("span", "ix");
            let tx = el_class("span", "tx");
            append(&cell, &ix);
            append(&cell, &tx);
            append(&self.cells, &cell);
            self.cell_els.push((cell, ix, tx));
        }
        while self.cell_els.len() > cells.len() {
            if let Some((cell, _, _)) = self.cell_els.pop() {
                cell.remove();
            }
        }
        for (c, (cell, ix, tx)) in cells.iter().zip(&self.cell_els) {
            set_attr(cell, "data-index", &c.index.to_string());
            set_text(ix, &c.index.to_string());
            match c.term {
                Some(t) => {
                    set_text(tx, &format!("t{t}"));
                    set_style(cell, "--term", term_color(t));
                }
                None => {
                    set_text(tx, "");
                    set_style(cell, "--term", "#e6e8ec");
                }
            }
            let committed = c.index <= node.commit_index;
            toggle_class(cell, "committed", committed);
            toggle_class(cell, "applied", c.index <= node.applied_index);
            toggle_class(cell, "uncommitted", !committed);
            toggle_class(cell, "commit-edge", c.index == node.commit_index);
            let (is_match, is_next) = match progress {
                Some((m, n)) => (c.index == m, c.index == n),
                None => (false, false),
            };
            toggle_class(cell, "match", is_match);
            toggle_class(cell, "next", is_next);
            let mut title = format!("index {}", c.index);
            if let Some(t) = c.term {
                title.push_str(&format!(" · term {t}"));
            }
            if !c.text.is_empty() {
                title.push_str(&format!(" · {}", c.text));
            }
            title.push_str(if c.index <= node.applied_index {
                " · applied"
            } else if committed {
                " · committed"
            } else {
                " · not committed"
            });
            if is_match {
                title.push_str(" · m: the leader's match index (known stored here)");
            }
            if is_next {
                title.push_str(" · n: the leader's next index (sent next)");
            }
            set_attr(cell, "title", &title);
        }
        if at_end {
            self.cells.set_scroll_left(self.cells.scroll_width());
        }
    }
}
