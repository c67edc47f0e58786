//! The dashboard's read-only live routes against a real node: `GET /events`
//! pushes the node's status as it changes (a put shows up without asking)
//! and never keeps the process from exiting; `GET /log` answers a bounded
//! window of the log with each entry's term and a summary without values.

mod support;

use std::time::{Duration, Instant};

use raft_core::wire::{ErrorBody, LogWindowResponse, NodeEvent, WriteResponse};
use support::Cluster;

/// Reads server-sent events from an open `/events` response.
struct EventReader {
    resp: reqwest::Response,
    buf: String,
}

impl EventReader {
    async fn open(c: &Cluster, id: u64) -> EventReader {
        let resp = c
            .http()
            .get(format!("{}/events", c.url(id)))
            .send()
            .await
            .expect("GET /events");
        assert!(resp.status().is_success(), "{}", resp.status());
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(ct, "text/event-stream");
        EventReader {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments and `retry:` lines skipped); `None` when
    /// the stream ended. Panics past `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<NodeEvent> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).expect("an event as JSON"));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event in time");
            // The end of the stream, or the connection closing under it.
            let Ok(Some(chunk)) = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("no event in time")
            else {
                return None;
            };
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_push_status_and_log_window_summarizes_entries() {
    let mut c = Cluster::start(1).await;
    c.wait_for_leader(Duration::from_secs(15)).await;
    let mut events = EventReader::open(&c, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = events.next(deadline).await.expect("an event");
    let NodeEvent::Status { status } = first else {
        panic!("the stream opens with the status, got {first:?}");
    };
    assert_eq!(status.id, 1);

    // A put is pushed: a status with its index committed arrives without
    // being asked for.
    let w: WriteResponse = c
        .put(1, "pushed-key", "secret-value")
        .await
        .json()
        .await
        .expect("write answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match events.next(deadline).await.expect("the stream stays open") {
            NodeEvent::Status { status } if status.commit_index >= w.index => break,
            _ => {}
        }
    }

    // The log window has the put with its term, and no value.
    let win: LogWindowResponse = c
        .get_json(1, &format!("/log?from={}&limit=1", w.index))
        .await;
    assert_eq!(win.entries.len(), 1, "{win:?}");
    let e = &win.entries[0];
    assert_eq!((e.index, e.kind.as_str()), (w.index, "command"));
    assert_eq!(e.summary, "put pushed-key");
    assert!(e.term >= 1);
    assert!(win.last_index >= w.index && win.commit_index >= w.index);
    let newest: LogWindowResponse = c.get_json(1, "/log?limit=256").await;
    assert_eq!(newest.entries.last().map(|e| e.index), Some(win.last_index));
    assert!(newest.entries.iter().all(|e| !e.summary.contains("secret")));
    for bad in ["/log?limit=0", "/log?limit=257", "/log?from=x"] {
        let r = c
            .http()
            .get(format!("{}{bad}", c.url(1)))
            .send()
            .await
            .expect("GET /log");
        assert_eq!(r.status(), 400, "{bad}");
        let body: ErrorBody = r.json().await.expect("a JSON error");
        assert!(!body.error.is_empty());
    }

    // SIGTERM with the stream still open: the stream ends and the process
    // exits promptly (the graceful shutdown does not wait for the reader).
    c.terminate(1);
    let status = c.wait_exit(1, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.next(deadline).await.is_some() {}
}

/// A follower that dies: within an election timeout or so the leader's
/// `/status` marks it silent (whatever its replication state still says)
/// and the leader's stream says so with `member_silent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_follower_is_reported_silent_by_the_leader() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await;
    let follower = c
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let mut events = EventReader::open(&c, leader).await;
    c.kill(follower);
    let deadline = Instant::now() + Duration::from_secs(15);
    let ms = loop {
        match events.next(deadline).await.expect("the stream stays open") {
            NodeEvent::MemberSilent {
                id,
                ms_since_contact,
            } if id == follower => break ms_since_contact,
            _ => {}
        }
    };
    assert!(ms > 0);
    let st = c.status(leader).await.expect("the leader's status");
    let f = st
        .followers
        .iter()
        .flatten()
        .find(|f| f.id == follower)
        .expect("the dead follower is still listed");
    assert!(f.silent, "{f:?}");
    let alive = st.followers.iter().flatten().find(|f| f.id != follower);
    assert!(alive.is_some_and(|f| !f.silent), "{alive:?}");
}
