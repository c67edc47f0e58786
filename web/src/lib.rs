//! The raft-kv dashboard, compiled to wasm32 and served by every node.
//!
//! Two views share one view model ([`model::ClusterView`]) and one set of
//! components ([`components`]): the *Live* view follows the real cluster
//! through the REST API and each member's push stream, the *Simulator* view runs a deterministic cluster
//! of raft-core nodes inside the page.
//!
//! The hash selects the view: `#live` (default) or
//! `#sim?seed=..&nodes=..`.

pub mod api;
pub mod components;
pub mod dom;
pub mod live;
pub mod login;
pub mod model;
pub mod narrate;
pub mod push;
pub mod sim_model;
pub mod sim_view;
pub mod tour;

use wasm_bindgen::prelude::*;

use crate::dom::{by_id, on, set_attr, set_hidden, window};

/// Which view the hash selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `#live`, or no hash.
    Live,
    /// `#sim...`.
    Sim,
}

impl Route {
    /// Parses `location.hash`.
    pub fn parse(hash: &str) -> Route {
        let h = hash.trim_start_matches('#');
        if h == "sim" || h.starts_with("sim?") || h.starts_with("sim/") {
            Route::Sim
        } else {
            Route::Live
        }
    }
}

fn route() {
    let hash = window().location().hash().unwrap_or_default();
    let r = Route::parse(&hash);
    set_hidden(&by_id("view-live"), r != Route::Live);
    set_hidden(&by_id("view-sim"), r != Route::Sim);
    set_attr(
        &by_id("nav-live"),
        "aria-current",
        if r == Route::Live { "page" } else { "false" },
    );
    set_attr(
        &by_id("nav-sim"),
        "aria-current",
        if r == Route::Sim { "page" } else { "false" },
    );
    sim_view::show(r == Route::Sim, &hash);
}

/// Entry point: mounts the views and routes by hash.
#[wasm_bindgen(start)]
pub fn start() {
    live::mount();
    tour::mount();
    route();
    on(&window(), "hashchange", |_| route());
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn routes() {
        assert_eq!(Route::parse(""), Route::Live);
        assert_eq!(Route::parse("#live"), Route::Live);
        assert_eq!(Route::parse("#sim"), Route::Sim);
        assert_eq!(Route::parse("#sim?seed=4&nodes=5"), Route::Sim);
        assert_eq!(Route::parse("#simulator-x"), Route::Live);
    }
}
