//! `GET /events`: this node's push stream for the dashboard, as
//! server-sent events. Each event's name is the [`NodeEvent`] kind and its
//! data the event as JSON:
//!
//! - `status`: this node's `/status`, first at once, then whenever its role,
//!   term, leader or log (last, commit, snapshot index) changes — coalesced
//!   to at most one every [`STATUS_MIN_GAP`] — and every [`STATUS_REFRESH`]
//!   when it differs (a leader's follower contact ages advance on their own);
//! - `role_changed`, `snapshot_taken`, `snapshot_installed`: what the Raft
//!   loop did, as it did it;
//! - `member_silent` / `member_heard`: on the leader, a follower crossing
//!   the election timeout without contact, either way.
//!
//! A comment line every [`KEEP_ALIVE`] keeps proxies from closing a quiet
//! stream. Each connection holds at most [`FRAMES_QUEUED`] frames: a reader
//! that falls behind holds up its own feed (statuses coalesce meanwhile,
//! missed loop events turn into a fresh status), never the Raft loop. The
//! stream ends when the client goes, and when the node stops, so an open
//! dashboard never keeps the process from exiting.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use raft_core::wire::{NodeEvent, StatusResponse};
use raft_core::NodeId;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::state::Shared;

/// The least time between two `status` events.
pub const STATUS_MIN_GAP: Duration = Duration::from_millis(100);
/// A status is looked at again this often even when nothing announced a
/// change (and sent if it differs).
pub const STATUS_REFRESH: Duration = Duration::from_secs(1);
/// A comment line this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Frames waiting for one slow reader at most.
pub const FRAMES_QUEUED: usize = 16;
/// How long the browser waits before reconnecting a broken stream.
const RETRY_MS: u64 = 1000;

pub(super) async fn events(State(s): State<Shared>) -> Response {
    let (tx, rx) = mpsc::channel(FRAMES_QUEUED);
    tokio::spawn(feed(s, tx));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::new(EventBody { rx }),
    )
        .into_response()
}

/// The response body: the frames the feed task queues, until it stops.
struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE frame for `event`.
fn frame(event: &NodeEvent) -> Bytes {
    let name = match event {
        NodeEvent::Status { .. } => "status",
        NodeEvent::RoleChanged { .. } => "role_changed",
        NodeEvent::SnapshotTaken { .. } => "snapshot_taken",
        NodeEvent::SnapshotInstalled { .. } => "snapshot_installed",
        NodeEvent::MemberSilent { .. } => "member_silent",
        NodeEvent::MemberHeard { .. } => "member_heard",
    };
    // JSON has no raw newline, so the data is one `data:` line.
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The followers a leader's status reports silent.
fn silent(st: &StatusResponse) -> BTreeSet<NodeId> {
    st.followers
        .iter()
        .flatten()
        .filter(|f| f.silent)
        .map(|f| f.id)
        .collect()
}

/// Resolves once the node stops (or its stop signal is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Feeds one connection until its reader goes or the node stops.
async fn feed(s: Shared, tx: mpsc::Sender<Bytes>) {
    let mut view = s.node.watch();
    let mut progress = s.node.watch_progress();
    let mut loop_events = s.node.events();
    let mut stop = s.peer_streams.stop_signal();
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if tx
        .send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
        .await
        .is_err()
    {
        return;
    }
    let mut last: Option<StatusResponse> = None;
    // A status is due (something changed), and when it may go.
    let mut due = true;
    let mut next_at = Instant::now();
    loop {
        let out = tokio::select! {
            _ = stopping(&mut stop) => return,
            // The reader went away: nothing will take the frames.
            _ = tx.closed() => return,
            changed = view.changed() => match changed {
                Ok(()) => { due = true; None }
                Err(_) => return,
            },
            changed = progress.changed() => match changed {
                Ok(()) => { due = true; None }
                Err(_) => return,
            },
            _ = refresh.tick() => { due = true; None }
            _ = keep_alive.tick() => Some(vec![Bytes::from_static(b": keep-alive\n\n")]),
            ev = loop_events.recv() => match ev {
                Ok(e) => Some(vec![frame(&e)]),
                // Events were dropped for this slow reader: the status it
                // gets next says where the node is now.
                Err(RecvError::Lagged(_)) => { due = true; None }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(next_at), if due => {
                due = false;
                next_at = Instant::now() + STATUS_MIN_GAP;
                let Ok(st) = s.node.status().await else { return };
                if last.as_ref() == Some(&st) {
                    None
                } else {
                    let mut frames = Vec::new();
                    let was = last.as_ref().map(silent).unwrap_or_default();
                    let now = silent(&st);
                    for f in st.followers.iter().flatten() {
                        if now.contains(&f.id) && !was.contains(&f.id) {
                            frames.push(frame(&NodeEvent::MemberSilent {
                                id: f.id,
                                ms_since_contact: f.ms_since_contact,
                            }));
                        } else if was.contains(&f.id) && !now.contains(&f.id) {
                            frames.push(frame(&NodeEvent::MemberHeard { id: f.id }));
                        }
                    }
                    frames.push(frame(&NodeEvent::Status { status: st.clone() }));
                    last = Some(st);
                    Some(frames)
                }
            }
        };
        for f in out.into_iter().flatten() {
            // Waits while the reader's queue is full: back-pressure on this
            // connection only.
            tokio::select! {
                sent = tx.send(f) => if sent.is_err() { return },
                _ = stopping(&mut stop) => return,
            }
        }
    }
}
