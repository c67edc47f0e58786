//! Prometheus metrics, rendered by hand in the text exposition format.
//!
//! Counters are atomics bumped by whoever observes the event; gauges of the
//! Raft state (term, role, indexes) are read from the node's status when
//! `/metrics` is scraped, so the Raft loop pays nothing for them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_core::wire::StatusResponse;
use raft_core::Role;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (bound, c) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if secs <= *bound {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// The node's counters and histograms.
#[derive(Default)]
pub struct Metrics {
    /// Proposals accepted by this node's Raft log.
    pub proposals: AtomicU64,
    /// Times the known leader changed.
    pub leader_changes: AtomicU64,
    /// Peer messages the Raft core rejected (misaddressed, unknown sender, malformed).
    pub peer_messages_rejected: AtomicU64,
    /// Peer stream frames and snapshot chunks that did not decode.
    pub peer_batches_undecodable: AtomicU64,
    /// Peer RPC requests (stream handshakes, snapshot chunks) refused for a
    /// missing or wrong cluster token.
    pub peer_unauthorized: AtomicU64,
    /// Peer streams accepted (handshake answered 101).
    pub peer_streams_accepted: AtomicU64,
    /// Peer stream handshakes refused (not a member) and streams closed for
    /// a broken rule (frame over the limit, undecodable, another sender).
    pub peer_streams_rejected: AtomicU64,
    /// Peer requests refused because the sender belongs to another cluster.
    pub peer_other_cluster: AtomicU64,
    /// Peer requests refused because the sender's data directory was
    /// replaced (another incarnation than the one known).
    pub peer_replaced: AtomicU64,
    /// Followers the leader found to have lost acknowledged log entries.
    pub followers_log_lost: AtomicU64,
    /// Peer streams open now (a gauge).
    pub peer_streams_open: AtomicU64,
    /// Peer messages received.
    pub peer_messages_received: AtomicU64,
    /// Peer messages handed to the network.
    pub peer_messages_sent: AtomicU64,
    /// Outgoing peer messages dropped (queue over its bound, send failure, test partition).
    pub peer_messages_dropped: AtomicU64,
    /// Failed peer stream connects and writes.
    pub peer_send_errors: AtomicU64,
    /// Snapshots taken by this node.
    pub snapshots: AtomicU64,
    /// Snapshot chunks sent to followers.
    pub snapshot_chunks_sent: AtomicU64,
    /// Snapshots sent whole to followers (every chunk accepted).
    pub snapshots_sent: AtomicU64,
    /// Snapshot transfers abandoned after a failed chunk.
    pub snapshot_transfers_failed: AtomicU64,
    /// Snapshot chunks received from the leader.
    pub snapshot_chunks_received: AtomicU64,
    /// Snapshots reassembled from chunks and handed to Raft.
    pub snapshots_received: AtomicU64,
    /// `persist` calls (one fsync each when fsync is on).
    pub persists: AtomicU64,
    /// Entries applied to the state machine.
    pub entries_applied: AtomicU64,
    /// Writes forwarded to the leader.
    pub forwarded: AtomicU64,
    /// HTTP connections open now, clients and peers (a gauge).
    pub connections_open: Arc<AtomicU64>,
    /// Client requests refused because the node was at its connection
    /// limit (the slots left were kept for peers).
    pub connections_refused: AtomicU64,
    /// Connections closed because no request head arrived in time.
    pub slow_heads: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub slow_bodies: AtomicU64,
    /// Request latency by route, then (method, status class). Every label
    /// comes from a closed set: route templates, five methods and "other",
    /// five status classes.
    latency: Mutex<BTreeMap<String, ByMethodAndClass>>,
}

/// One route's latency histograms by (method, status class).
type ByMethodAndClass = BTreeMap<(&'static str, &'static str), Histogram>;

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one HTTP request's latency. `method` is one of a closed set
    /// (the caller maps anything else to "other"); `status` is reduced to
    /// its class.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let mut map = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let by_method = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.to_string()).or_default(),
        };
        by_method
            .entry((method, class))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Renders every metric; `status` is the node's current view.
    pub fn render(&self, status: Option<&StatusResponse>) -> String {
        let mut out = String::with_capacity(4096);
        let build = crate::http::health::version_info();
        let _ = writeln!(
            out,
            "# HELP raft_kv_build_info The running build (always 1).\n# TYPE raft_kv_build_info gauge\n\
             raft_kv_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            build.version, build.commit
        );
        if let Some(s) = status {
            gauge(&mut out, "raft_node_id", "This node's id.", s.id);
            gauge(&mut out, "raft_term", "Current Raft term.", s.term);
            let _ = writeln!(
                out,
                "# HELP raft_role This node's role (1 for the current one).\n# TYPE raft_role gauge"
            );
            for role in [
                Role::Follower,
                Role::PreCandidate,
                Role::Candidate,
                Role::Leader,
            ] {
                let v = u8::from(s.role == role);
                let _ = writeln!(out, "raft_role{{role=\"{role}\"}} {v}");
            }
            gauge(
                &mut out,
                "raft_is_leader",
                "1 when this node is the leader.",
                u64::from(s.role == Role::Leader),
            );
            gauge(
                &mut out,
                "raft_leader_id",
                "The known leader (0: none).",
                s.leader.unwrap_or(0),
            );
            gauge(&mut out, "raft_last_index", "Last log index.", s.last_index);
            gauge(
                &mut out,
                "raft_commit_index",
                "Commit index.",
                s.commit_index,
            );
            gauge(
                &mut out,
                "raft_applied_index",
                "Applied index.",
                s.applied_index,
            );
            gauge(
                &mut out,
                "raft_snapshot_index",
                "Index of the newest snapshot.",
                s.snapshot_index,
            );
            gauge(
                &mut out,
                "raft_members",
                "Voting members (while joint: of the configuration being entered).",
                s.members.len() as u64,
            );
            gauge(
                &mut out,
                "raft_learners",
                "Non-voting members (learners).",
                s.learners.len() as u64,
            );
            gauge(
                &mut out,
                "raft_config_joint",
                "1 while a membership change is in its joint phase.",
                u64::from(!s.outgoing.is_empty()),
            );
            gauge(&mut out, "kv_keys", "Keys in the state machine.", s.keys);
        }
        gauge(
            &mut out,
            "raft_peer_streams_open",
            "Peer message streams open to this node.",
            self.peer_streams_open.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "http_connections_open",
            "HTTP connections open to this node (clients and peers; upgraded peer streams not included).",
            self.connections_open.load(Ordering::Relaxed),
        );
        let counters: [(&str, &str, &AtomicU64); 26] = [
            ("raft_peer_other_cluster_total", "Peer requests refused: the sender belongs to another cluster.", &self.peer_other_cluster),
            ("raft_peer_replaced_total", "Peer requests refused: the sender's data directory was replaced since this node last heard from it.", &self.peer_replaced),
            ("raft_followers_log_lost_total", "Followers found (as leader) to have lost log entries they had acknowledged.", &self.followers_log_lost),
            ("raft_proposals_total", "Proposals appended to the log by this node.", &self.proposals),
            ("raft_leader_changes_total", "Times the known leader changed.", &self.leader_changes),
            ("raft_peer_messages_rejected_total", "Peer messages rejected by the Raft core (misaddressed, unknown sender, malformed).", &self.peer_messages_rejected),
            ("raft_peer_batches_undecodable_total", "Peer stream frames and snapshot chunks that did not decode.", &self.peer_batches_undecodable),
            ("raft_peer_unauthorized_total", "Peer stream handshakes and snapshot chunks refused for a missing or wrong cluster token.", &self.peer_unauthorized),
            ("raft_peer_streams_accepted_total", "Peer message streams accepted.", &self.peer_streams_accepted),
            ("raft_peer_streams_rejected_total", "Peer stream handshakes refused (not a member) and streams closed for a broken rule (frame over the limit, undecodable, another sender).", &self.peer_streams_rejected),
            ("raft_peer_messages_received_total", "Peer messages received.", &self.peer_messages_received),
            ("raft_peer_messages_sent_total", "Peer messages sent.", &self.peer_messages_sent),
            ("raft_peer_messages_dropped_total", "Outgoing peer messages dropped (queue bound, send failure, test partition).", &self.peer_messages_dropped),
            ("raft_peer_send_errors_total", "Failed peer stream connects and writes (snapshot transfers count in raft_snapshot_transfers_failed_total).", &self.peer_send_errors),
            ("raft_snapshots_total", "Snapshots taken by this node.", &self.snapshots),
            ("raft_snapshot_chunks_sent_total", "Snapshot chunks sent to followers.", &self.snapshot_chunks_sent),
            ("raft_snapshots_sent_total", "Snapshots sent whole to followers.", &self.snapshots_sent),
            ("raft_snapshot_transfers_failed_total", "Snapshot transfers abandoned after a failed chunk (Raft resends).", &self.snapshot_transfers_failed),
            ("raft_snapshot_chunks_received_total", "Snapshot chunks received from the leader.", &self.snapshot_chunks_received),
            ("raft_snapshots_received_total", "Snapshots reassembled from chunks and handed to Raft.", &self.snapshots_received),
            ("raft_persists_total", "Storage persist calls (one fsync each when fsync is on).", &self.persists),
            ("raft_entries_applied_total", "Log entries applied to the state machine.", &self.entries_applied),
            ("raft_forwarded_requests_total", "Client writes forwarded to the leader.", &self.forwarded),
            ("http_slow_heads_total", "Client connections closed because they showed no request head within --idle-timeout-ms.", &self.slow_heads),
            ("http_slow_bodies_total", "Requests answered 408 because the body did not arrive within --body-timeout-ms.", &self.slow_bodies),
            ("http_connections_refused_total", "Client requests refused with 503 because the node was at --max-connections (the last slots are kept for peers).", &self.connections_refused),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let map = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = "http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency by route, method and status class.\n# TYPE {name} histogram"
        );
        let series = map
            .iter()
            .flat_map(|(route, m)| m.iter().map(move |(key, h)| (route, key, h)));
        for (route, (method, class), h) in series {
            let labels = format!(
                "route=\"{}\",method=\"{method}\",status=\"{class}\"",
                escape(route)
            );
            for (bound, c) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        Metrics::inc(&m.proposals);
        m.observe_request("PUT", "/key/{*key}", 200, Duration::from_millis(3));
        let text = m.render(None);
        assert!(text.contains("raft_proposals_total 1"));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/key/{*key}\",method=\"PUT\",status=\"2xx\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/key/{*key}\",method=\"PUT\",status=\"2xx\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_count{route=\"/key/{*key}\",method=\"PUT\",status=\"2xx\"} 1"
        ));
    }
}
