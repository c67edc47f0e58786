//! The log grid: every node's log tail aligned by index (rows = nodes,
//! columns = indexes), each cell coloured by its entry's term, striped
//! while not committed on that node, with the commit index marked and the
//! leader's match (m) and next (n) for each follower. Small enough to sit
//! under the ring, so messages and logs are on screen together.

use web_sys::Element;

use crate::dom::{append, clear, el_class, el_text, set_attr, set_style, set_text, toggle_class};
use crate::model::{term_color, ClusterView, RoleView};

/// Columns shown: the newest indexes.
pub const COLUMNS: u64 = 16;

/// The grid.
pub struct LogGrid {
    /// The root element (`.log-grid`).
    pub root: Element,
    header: Vec<Element>,
    rows: Vec<(Element, Vec<Element>)>,
    row_ids: Vec<u64>,
}

impl Default for LogGrid {
    fn default() -> Self {
        Self::new()
    }
}

impl LogGrid {
    /// An empty grid.
    pub fn new() -> LogGrid {
        let root = el_class("div", "log-grid");
        set_attr(&root, "role", "table");
        set_attr(
            &root,
            "aria-label",
            "each node's log by index: colour = the entry's term, striped = not committed on that node",
        );
        LogGrid {
            root,
            header: Vec::new(),
            rows: Vec::new(),
            row_ids: Vec::new(),
        }
    }

    fn build(&mut self, ids: &[u64]) {
        clear(&self.root);
        self.header.clear();
        self.rows.clear();
        let head = el_class("div", "lg-row lg-head");
        set_attr(&head, "role", "row");
        append(&head, &el_text("span", "lg-name", "index"));
        for _ in 0..COLUMNS {
            let c = el_class("span", "lg-ix");
            append(&head, &c);
            self.header.push(c);
        }
        append(&self.root, &head);
        for id in ids {
            let row = el_class("div", "lg-row");
            set_attr(&row, "role", "row");
            set_attr(&row, "data-node-id", &id.to_string());
            let name = el_text("span", "lg-name", &format!("n{id}"));
            append(&row, &name);
            let cells: Vec<Element> = (0..COLUMNS)
                .map(|_| {
                    let c = el_class("span", "lg-cell");
                    set_attr(&c, "role", "cell");
                    append(&row, &c);
                    c
                })
                .collect();
            append(&self.root, &row);
            self.rows.push((name, cells));
        }
        self.row_ids = ids.to_vec();
    }

    /// Shows `view`.
    pub fn update(&mut self, view: &ClusterView) {
        let ids: Vec<u64> = view.nodes.iter().map(|n| n.id).collect();
        if ids != self.row_ids {
            self.build(&ids);
        }
        let hi = view
            .nodes
            .iter()
            .map(|n| n.last_index)
            .max()
            .unwrap_or(0)
            .max(COLUMNS);
        let lo = hi + 1 - COLUMNS;
        for (k, h) in self.header.iter().enumerate() {
            let ix = lo + k as u64;
            // Every fourth index is labelled; each cell's tooltip has its own.
            set_text(
                h,
                &if ix.is_multiple_of(4) {
                    ix.to_string()
                } else {
                    String::new()
                },
            );
        }
        let leader = view.current_leader();
        for (n, (name, cells)) in view.nodes.iter().zip(&self.rows) {
            toggle_class(name, "leader", n.role == RoleView::Leader);
            toggle_class(name, "down", n.role == RoleView::Down);
            let progress = leader
                .filter(|l| l.id != n.id)
                .and_then(|l| l.followers.iter().find(|f| f.id == n.id))
                .map(|f| (f.match_index, f.next_index));
            for (k, cell) in cells.iter().enumerate() {
                let ix = lo + k as u64;
                let entry = n.log.cells.iter().find(|c| c.index == ix);
                let (state, title) = match entry {
                    Some(e) => {
                        let term = e.term.unwrap_or(0);
                        match e.term {
                            Some(t) => {
                                set_style(cell, "--term", term_color(t));
                                set_text(cell, &t.to_string());
                            }
                            // The live API does not report entry terms.
                            None => {
                                set_style(cell, "--term", "#e6e8ec");
                                set_text(cell, "");
                            }
                        }
                        let committed = ix <= n.commit_index;
                        (
                            if committed {
                                "committed"
                            } else {
                                "uncommitted"
                            },
                            format!(
                                "n{} entry {ix} · term {term}{}{}",
                                n.id,
                                if e.text.is_empty() {
                                    String::new()
                                } else {
                                    format!(" · {}", e.text)
                                },
                                if committed {
                                    " · committed"
                                } else {
                                    " · not committed yet"
                                }
                            ),
                        )
                    }
                    None if ix <= n.snapshot_index => {
                        set_text(cell, "");
                        ("snap", format!("n{} entry {ix} · in its snapshot", n.id))
                    }
                    None => {
                        set_text(cell, "");
                        ("empty", format!("n{} has no entry {ix}", n.id))
                    }
                };
                set_attr(cell, "data-state", state);
                toggle_class(cell, "commit-edge", ix == n.commit_index);
                let (m, nx) = progress.map_or((false, false), |(m, nx)| (ix == m, ix == nx));
                toggle_class(cell, "match", m);
                toggle_class(cell, "next", nx);
                set_attr(cell, "title", &title);
            }
        }
    }
}
