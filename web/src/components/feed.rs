//! The narration feed: plain-language lines, newest first, each with the
//! moment it happened (a step in the simulator, a clock time live).

use web_sys::Element;

use crate::dom::{append, clear, el_class, el_text, set_attr};
use crate::narrate::Feed;

/// The list.
pub struct FeedList {
    /// The root element (`ol.feed`).
    pub root: Element,
    shown_version: Option<u64>,
}

impl FeedList {
    /// An empty list that announces new lines politely to screen readers.
    pub fn new() -> FeedList {
        let root = el_class("ol", "feed");
        set_attr(&root, "aria-live", "polite");
        set_attr(&root, "aria-relevant", "additions");
        FeedList {
            root,
            shown_version: None,
        }
    }

    /// Shows `feed` when it changed since the last call.
    pub fn update(&mut self, feed: &Feed) {
        if self.shown_version == Some(feed.version) {
            return;
        }
        self.shown_version = Some(feed.version);
        clear(&self.root);
        if feed.lines.is_empty() {
            append(
                &self.root,
                &el_text("li", "feed-empty", "Nothing has happened yet."),
            );
            return;
        }
        for (when, line) in &feed.lines {
            let li = el_class("li", "feed-line");
            set_attr(&li, "data-kind", line.kind.as_str());
            append(&li, &el_text("span", "feed-when", when));
            append(&li, &el_text("span", "feed-text", &line.text));
            append(&self.root, &li);
        }
    }
}

impl Default for FeedList {
    fn default() -> Self {
        Self::new()
    }
}
