//! The Live view's push side: one `EventSource` per member on its
//! `GET /events` (server-sent events, one [`NodeEvent`] per event). The
//! browser reconnects a broken stream by itself (the server asks for a
//! retry after 1 s); every break is reported, so the view can find out why
//! the member went quiet.

use std::rc::Rc;

use raft_core::wire::NodeEvent;
use raft_core::NodeId;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};

/// The event names the server sends (one per [`NodeEvent`] kind).
const EVENT_NAMES: [&str; 6] = [
    "status",
    "role_changed",
    "snapshot_taken",
    "snapshot_installed",
    "member_silent",
    "member_heard",
];

/// What a member's stream delivered.
pub enum Pushed {
    /// An event.
    Event(Box<NodeEvent>),
    /// The stream broke (the browser retries it).
    Broken,
}

/// What the view does with what a stream delivers.
pub type OnPushed = Rc<dyn Fn(NodeId, Pushed)>;

/// One member's open stream.
pub struct MemberStream {
    /// The address it reads (`""`: the page's origin).
    pub base: String,
    source: EventSource,
    _on_event: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl MemberStream {
    /// Opens `base`'s stream; what it delivers goes to `on` as member `id`'s.
    pub fn open(id: NodeId, base: &str, on: OnPushed) -> Result<MemberStream, String> {
        // With authentication on, the token rides in the URL: EventSource
        // cannot set an Authorization header (the server takes `?token=`
        // on its feeds only).
        let url = match crate::login::token() {
            Some(t) => format!(
                "{base}/events?token={}",
                String::from(js_sys::encode_uri_component(&t))
            ),
            None => format!("{base}/events"),
        };
        let source =
            EventSource::new(&url).map_err(|e| format!("cannot open the push stream: {e:?}"))?;
        let on_event = {
            let on = on.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
                let Some(data) = m.data().as_string() else {
                    return;
                };
                // An event this page does not know is skipped, not fatal.
                if let Ok(e) = serde_json::from_str::<NodeEvent>(&data) {
                    on(id, Pushed::Event(Box::new(e)));
                }
            })
        };
        for name in EVENT_NAMES {
            source
                .add_event_listener_with_callback(name, on_event.as_ref().unchecked_ref())
                .map_err(|e| format!("cannot listen to the push stream: {e:?}"))?;
        }
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| on(id, Pushed::Broken));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(MemberStream {
            base: base.to_string(),
            source,
            _on_event: on_event,
            _on_error: on_error,
        })
    }

    /// Whether the stream is connected now.
    pub fn is_open(&self) -> bool {
        self.source.ready_state() == EventSource::OPEN
    }
}

impl Drop for MemberStream {
    fn drop(&mut self) {
        self.source.close();
    }
}
