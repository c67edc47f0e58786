//! The Simulator view (built on raft-core's simulator once it lands).

use crate::dom::{by_id, set_text};

/// Shows or hides the simulator view; `hash` carries its settings.
pub fn show(visible: bool, _hash: &str) {
    if visible {
        set_text(&by_id("sim-status"), "The simulator is not built yet.");
    }
}
