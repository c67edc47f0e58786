//! Small helpers over web-sys for building and updating the DOM by hand.
//!
//! Every setter compares before it writes, so a view can be refreshed every
//! frame or every poll without touching unchanged nodes (no flicker, no
//! layout churn).

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, Event, EventTarget, HtmlElement, HtmlInputElement, Window};

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// The browser window.
pub fn window() -> Window {
    web_sys::window().expect("a browser window")
}

/// The page's document.
pub fn document() -> Document {
    window().document().expect("a document")
}

/// A new HTML element.
pub fn el(tag: &str) -> Element {
    document().create_element(tag).expect("create_element")
}

/// A new HTML element with a class list (space separated).
pub fn el_class(tag: &str, class: &str) -> Element {
    let e = el(tag);
    e.set_class_name(class);
    e
}

/// A new HTML element with a class list and a text.
pub fn el_text(tag: &str, class: &str, text: &str) -> Element {
    let e = el_class(tag, class);
    e.set_text_content(Some(text));
    e
}

/// A new SVG element.
pub fn svg(tag: &str) -> Element {
    document()
        .create_element_ns(Some(SVG_NS), tag)
        .expect("create_element_ns")
}

/// Appends `child` to `parent`.
pub fn append(parent: &Element, child: &Element) {
    parent.append_child(child).expect("append_child");
}

/// The element with `id`, which the page is known to contain.
pub fn by_id(id: &str) -> Element {
    document()
        .get_element_by_id(id)
        .unwrap_or_else(|| panic!("no element #{id}"))
}

/// The input element with `id`.
pub fn input(id: &str) -> HtmlInputElement {
    by_id(id).dyn_into().expect("an <input>")
}

/// Sets the text of `e` when it differs.
pub fn set_text(e: &Element, text: &str) {
    if e.text_content().as_deref() != Some(text) {
        e.set_text_content(Some(text));
    }
}

/// Sets an attribute when it differs.
pub fn set_attr(e: &Element, name: &str, value: &str) {
    if e.get_attribute(name).as_deref() != Some(value) {
        e.set_attribute(name, value).expect("set_attribute");
    }
}

/// Adds or removes a class.
pub fn toggle_class(e: &Element, class: &str, on: bool) {
    let list = e.class_list();
    if list.contains(class) != on {
        let _ = list.toggle_with_force(class, on);
    }
}

/// Shows or hides an element (the `hidden` attribute).
pub fn set_hidden(e: &Element, hidden: bool) {
    if e.has_attribute("hidden") != hidden {
        if hidden {
            e.set_attribute("hidden", "").expect("set_attribute");
        } else {
            e.remove_attribute("hidden").expect("remove_attribute");
        }
    }
}

/// Enables or disables a control: a disabled one (the `disabled`
/// attribute) can be neither pressed nor focused. `data-disabled` mirrors
/// it for styling and tests.
pub fn set_enabled(e: &Element, enabled: bool) {
    if e.has_attribute("disabled") == enabled {
        if enabled {
            e.remove_attribute("disabled").expect("remove_attribute");
        } else {
            e.set_attribute("disabled", "").expect("set_attribute");
        }
    }
    set_attr(e, "data-disabled", if enabled { "false" } else { "true" });
}

/// Sets one CSS property on an element when it differs.
pub fn set_style(e: &Element, name: &str, value: &str) {
    if let Some(h) = e.dyn_ref::<HtmlElement>() {
        let style = h.style();
        if style.get_property_value(name).ok().as_deref() != Some(value) {
            let _ = style.set_property(name, value);
        }
    } else {
        // SVG elements: go through the attribute.
        let current = e.get_attribute("style").unwrap_or_default();
        let mut parts: Vec<String> = current
            .split(';')
            .filter(|p| !p.trim().is_empty() && !p.trim_start().starts_with(&format!("{name}:")))
            .map(|p| p.trim().to_string())
            .collect();
        parts.push(format!("{name}:{value}"));
        set_attr(e, "style", &parts.join(";"));
    }
}

/// Removes every child of `e`.
pub fn clear(e: &Element) {
    while let Some(c) = e.first_child() {
        let _ = e.remove_child(&c);
    }
}

/// Listens to `event` on `target` for the page's lifetime.
pub fn on(target: &EventTarget, event: &str, f: impl FnMut(Event) + 'static) {
    let closure = Closure::<dyn FnMut(Event)>::new(f);
    target
        .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
        .expect("add_event_listener");
    closure.forget();
}

/// Milliseconds from a monotonic clock (`performance.now()`).
pub fn now_ms() -> f64 {
    window().performance().map(|p| p.now()).unwrap_or(0.0)
}

/// Whether the page is hidden (background tab, minimized window).
pub fn page_hidden() -> bool {
    document().hidden()
}

/// The `value` of the input with `id`.
pub fn input_value(id: &str) -> String {
    input(id).value()
}
