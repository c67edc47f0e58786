//! Prometheus metrics, rendered in the text exposition format.
//!
//! Each counter is declared once, in the [`counters!`] table below: its
//! field, its exported name and its help text (which is also the field's
//! doc). Counters are atomics bumped by whoever observes the event; gauges
//! of the Raft state (term, role, indexes, follower lag) are read from the
//! node's status when `/metrics` is scraped, so the Raft loop pays nothing
//! for them; the process gauges are read from `/proc/self` at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_core::wire::StatusResponse;
use raft_core::Role;

/// Upper bounds (seconds) of the request latency histogram buckets.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the WAL write + fsync histogram: an fsync on
/// a local SSD takes tens to hundreds of microseconds.
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Upper bounds (seconds) of the peer round-trip histogram: loopback and a
/// LAN answer in well under a millisecond; a busy follower's loop or a WAN
/// link in tens of milliseconds.
const ROUND_TRIP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) of the snapshot duration histogram.
const SNAPSHOT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, secs: f64) {
        for (bound, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if secs <= *bound {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Writes the series of this histogram; `labels` is empty or a
    /// `k="v",...` list.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, c) in self.bounds.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// Declares the [`Metrics`] struct: every counter once (field, exported
/// name, help), then the fields that are not plain counters.
macro_rules! counters {
    (
        counters { $( $field:ident => $name:literal, $help:literal; )* }
        others { $( $(#[$odoc:meta])* $ovis:vis $ofield:ident: $oty:ty = $oinit:expr, )* }
    ) => {
        /// The node's counters, histograms and gauges it keeps itself.
        pub struct Metrics {
            $( #[doc = $help] pub $field: AtomicU64, )*
            $( $(#[$odoc])* $ovis $ofield: $oty, )*
        }

        impl Default for Metrics {
            fn default() -> Self {
                Metrics {
                    $( $field: AtomicU64::new(0), )*
                    $( $ofield: $oinit, )*
                }
            }
        }

        impl Metrics {
            /// Every counter: exported name, help, value.
            fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![ $( ($name, $help, self.$field.load(Ordering::Relaxed)), )* ]
            }
        }
    };
}

counters! {
    counters {
        proposals => "raft_proposals_total", "Proposals appended to the log by this node.";
        proposals_failed => "raft_proposals_failed_total", "Writes answered without success: not applied, outcome unknown, or refused.";
        read_index_failures => "raft_read_index_failures_total", "Linearizable reads that failed (leadership lost or changed, node stopping).";
        leader_changes => "raft_leader_changes_total", "Times the known leader changed.";
        peer_messages_rejected => "raft_peer_messages_rejected_total", "Peer messages rejected by the Raft core (misaddressed, unknown sender, malformed).";
        peer_batches_undecodable => "raft_peer_batches_undecodable_total", "Peer stream frames and snapshot chunks that did not decode.";
        peer_unauthorized => "raft_peer_unauthorized_total", "Peer stream handshakes and snapshot chunks refused for a missing or wrong cluster token.";
        peer_streams_accepted => "raft_peer_streams_accepted_total", "Peer message streams accepted.";
        peer_streams_rejected => "raft_peer_streams_rejected_total", "Peer stream handshakes refused (not a member) and streams closed for a broken rule (frame over the limit, undecodable, another sender).";
        peer_other_cluster => "raft_peer_other_cluster_total", "Peer requests refused: the sender belongs to another cluster.";
        peer_replaced => "raft_peer_replaced_total", "Peer requests refused: the sender's data directory was replaced since this node last heard from it.";
        followers_log_lost => "raft_followers_log_lost_total", "Followers found (as leader) to have lost log entries they had acknowledged.";
        peer_messages_received => "raft_peer_messages_received_total", "Peer messages received.";
        peer_messages_sent => "raft_peer_messages_sent_total", "Peer messages sent.";
        peer_bytes_sent => "raft_peer_bytes_sent_total", "Bytes of peer message frames written to the other members' streams (snapshot chunks not included).";
        peer_bytes_received => "raft_peer_bytes_received_total", "Bytes of peer message frames read from the other members' streams (snapshot chunks not included).";
        peer_messages_dropped => "raft_peer_messages_dropped_total", "Outgoing peer messages dropped (queue bound, send failure, test partition).";
        peer_send_errors => "raft_peer_send_errors_total", "Failed peer stream connects and writes (snapshot transfers count in raft_snapshot_transfers_failed_total).";
        snapshots => "raft_snapshots_total", "Snapshots taken by this node.";
        snapshot_bytes_written => "raft_snapshot_bytes_written_total", "Bytes of the snapshot files this node wrote (its own), for write amplification.";
        snapshot_chunks_sent => "raft_snapshot_chunks_sent_total", "Snapshot chunks sent to followers.";
        snapshots_sent => "raft_snapshots_sent_total", "Snapshots sent whole to followers.";
        snapshot_transfers_failed => "raft_snapshot_transfers_failed_total", "Snapshot transfers abandoned after a failed chunk (Raft resends).";
        snapshot_chunks_received => "raft_snapshot_chunks_received_total", "Snapshot chunks received from the leader.";
        snapshots_received => "raft_snapshots_received_total", "Snapshots reassembled from chunks and handed to Raft.";
        persists => "raft_persists_total", "Storage persist calls (one fsync each when fsync is on).";
        entries_applied => "raft_entries_applied_total", "Log entries applied to the state machine.";
        slow_applies => "raft_slow_applies_total", "Batches of committed entries (or a snapshot install) that took longer than 100 ms to apply.";
        forwarded => "raft_forwarded_requests_total", "Client writes forwarded to the leader.";
        slow_heads => "http_slow_heads_total", "Client connections closed because they showed no request head within --idle-timeout-ms.";
        tls_handshakes_failed => "tls_handshakes_failed_total", "TLS handshakes that failed: no or an untrusted client certificate, a timeout, not TLS.";
        tls_reloads => "tls_reloads_total", "Times the certificate files were read again and taken into use.";
        tls_reload_errors => "tls_reload_errors_total", "Times the certificate files changed but could not be used (the previous ones stay).";
        slow_bodies => "http_slow_bodies_total", "Requests answered 408 because the body did not arrive within --body-timeout-ms.";
        connections_refused => "http_connections_refused_total", "Client requests refused with 503 because the node was at --max-connections (the last slots are kept for peers).";
    }
    others {
        /// Peer streams open now (a gauge).
        pub peer_streams_open: AtomicU64 = AtomicU64::new(0),
        /// HTTP connections open now, clients and peers (a gauge).
        pub connections_open: Arc<AtomicU64> = Arc::new(AtomicU64::new(0)),
        /// Writes waiting for their outcome on this node (a gauge).
        proposals_pending: AtomicU64 = AtomicU64::new(0),
        /// Request latency by route, then (method, status class). Every
        /// label comes from a closed set: route templates, five methods and
        /// "other", five status classes.
        latency: Mutex<BTreeMap<String, ByMethodAndClass>> = Mutex::new(BTreeMap::new()),
        /// Duration of each storage persist (write + fsync).
        fsync: Mutex<Histogram> = Mutex::new(Histogram::new(FSYNC_BUCKETS)),
        /// Duration of each snapshot this node took (serialize + write + fsync).
        snapshot_duration: Mutex<Histogram> = Mutex::new(Histogram::new(SNAPSHOT_BUCKETS)),
        /// Heartbeat round trips by peer (see `node::round_trip`).
        peer_round_trip: Mutex<BTreeMap<u64, Histogram>> = Mutex::new(BTreeMap::new()),
    }
}

/// One route's latency histograms by (method, status class).
type ByMethodAndClass = BTreeMap<(&'static str, &'static str), Histogram>;

/// What the process looks like from `/proc/self` (Linux); `None` fields
/// elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current process's figures.
    pub fn read() -> Self {
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib * 1024);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        // Fields 14 and 15 of /proc/self/stat, after the parenthesised
        // command name, in clock ticks (USER_HZ, 100 on Linux).
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) as f64 / 100.0)
            });
        ProcessStats {
            resident_bytes,
            open_fds,
            cpu_seconds,
        }
    }
}

/// What `/metrics` reads at scrape time besides the counters.
#[derive(Debug, Default)]
pub struct Scrape<'a> {
    /// The node's status (`None`: the Raft loop did not answer).
    pub status: Option<&'a StatusResponse>,
    /// Bytes in the data directory.
    pub data_dir_bytes: Option<u64>,
    /// The process's figures.
    pub process: ProcessStats,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the number of writes waiting for their outcome.
    pub fn set_proposals_pending(&self, n: u64) {
        self.proposals_pending.store(n, Ordering::Relaxed);
    }

    /// Records one storage persist (write + fsync).
    pub fn observe_fsync(&self, elapsed: Duration) {
        lock(&self.fsync).observe(elapsed.as_secs_f64());
    }

    /// Records one snapshot this node took and the bytes it wrote.
    pub fn observe_snapshot(&self, elapsed: Duration, bytes: u64) {
        lock(&self.snapshot_duration).observe(elapsed.as_secs_f64());
        Self::add(&self.snapshot_bytes_written, bytes);
    }

    /// Records one heartbeat round trip to `peer`.
    pub fn observe_peer_round_trip(&self, peer: u64, elapsed: Duration) {
        lock(&self.peer_round_trip)
            .entry(peer)
            .or_insert_with(|| Histogram::new(ROUND_TRIP_BUCKETS))
            .observe(elapsed.as_secs_f64());
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
        let mut map = lock(&self.latency);
        let by_method = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.to_string()).or_default(),
        };
        by_method
            .entry((method, class))
            .or_insert_with(|| Histogram::new(REQUEST_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// Renders every metric.
    pub fn render(&self, scrape: &Scrape<'_>) -> String {
        let mut out = String::with_capacity(8192);
        let build = crate::http::health::version_info();
        family(
            &mut out,
            "raft_kv_build_info",
            "gauge",
            "The running build (always 1).",
        );
        let _ = writeln!(
            out,
            "raft_kv_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            escape(&build.version),
            escape(&build.commit)
        );
        if let Some(s) = scrape.status {
            self.render_status(&mut out, s);
        }
        gauge(
            &mut out,
            "raft_peer_streams_open",
            "Peer message streams open to this node.",
            self.peer_streams_open.load(Ordering::Relaxed),
        );
        gauge(&mut out, "http_connections_open", "HTTP connections open to this node (clients and peers; upgraded peer streams not included).", self.connections_open.load(Ordering::Relaxed));
        gauge(
            &mut out,
            "raft_proposals_pending",
            "Writes waiting on this node for their outcome.",
            self.proposals_pending.load(Ordering::Relaxed),
        );
        if let Some(bytes) = scrape.data_dir_bytes {
            gauge(
                &mut out,
                "raft_data_dir_bytes",
                "Bytes in the data directory (WAL segments and snapshots).",
                bytes,
            );
        }
        for (name, help, v) in self.counters() {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        let name = "raft_wal_fsync_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Duration of each storage persist: the WAL write and its fsync.",
        );
        lock(&self.fsync).render(&mut out, name, "");
        let name = "raft_snapshot_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Duration of each snapshot this node took: serialize, write and fsync.",
        );
        lock(&self.snapshot_duration).render(&mut out, name, "");
        let name = "raft_peer_round_trip_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Round trip of the leader's heartbeats to each follower: network, the follower's inbox and its loop.",
        );
        let round_trips = lock(&self.peer_round_trip).clone();
        for (peer, h) in &round_trips {
            h.render(&mut out, name, &format!("peer=\"{peer}\""));
        }
        let name = "http_request_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "HTTP request latency by route, method and status class.",
        );
        let map = lock(&self.latency).clone();
        for (route, by) in &map {
            for ((method, class), h) in by {
                let labels = format!(
                    "route=\"{}\",method=\"{method}\",status=\"{class}\"",
                    escape(route)
                );
                h.render(&mut out, name, &labels);
            }
        }
        let p = scrape.process;
        if let Some(v) = p.resident_bytes {
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                v,
            );
        }
        if let Some(v) = p.open_fds {
            gauge(
                &mut out,
                "process_open_fds",
                "Number of open file descriptors.",
                v,
            );
        }
        if let Some(v) = p.cpu_seconds {
            family(
                &mut out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
            );
            let _ = writeln!(out, "process_cpu_seconds_total {v}");
        }
        out
    }

    /// The gauges read from the node's status.
    fn render_status(&self, out: &mut String, s: &StatusResponse) {
        gauge(out, "raft_node_id", "This node's id.", s.id);
        gauge(out, "raft_term", "Current Raft term.", s.term);
        family(
            out,
            "raft_role",
            "gauge",
            "This node's role (1 for the current one).",
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
            out,
            "raft_is_leader",
            "1 when this node is the leader.",
            u64::from(s.role == Role::Leader),
        );
        gauge(
            out,
            "raft_has_leader",
            "1 when this node knows a leader.",
            u64::from(s.leader.is_some()),
        );
        gauge(
            out,
            "raft_leader_id",
            "The known leader (0: none).",
            s.leader.unwrap_or(0),
        );
        gauge(out, "raft_last_index", "Last log index.", s.last_index);
        gauge(out, "raft_commit_index", "Commit index.", s.commit_index);
        gauge(out, "raft_applied_index", "Applied index.", s.applied_index);
        gauge(
            out,
            "raft_snapshot_index",
            "Index of the newest snapshot.",
            s.snapshot_index,
        );
        gauge(
            out,
            "raft_members",
            "Voting members (while joint: of the configuration being entered).",
            s.members.len() as u64,
        );
        gauge(
            out,
            "raft_learners",
            "Non-voting members (learners).",
            s.learners.len() as u64,
        );
        gauge(
            out,
            "raft_config_joint",
            "1 while a membership change is in its joint phase.",
            u64::from(!s.outgoing.is_empty()),
        );
        gauge(out, "kv_keys", "Keys in the state machine.", s.keys);
        if let Some(followers) = &s.followers {
            // Labelled by member id: a closed set, the configuration's.
            family(
                out,
                "raft_follower_lag_entries",
                "gauge",
                "On the leader: entries each follower is behind the leader's last index.",
            );
            for f in followers {
                let _ = writeln!(
                    out,
                    "raft_follower_lag_entries{{follower=\"{}\"}} {}",
                    f.id, f.lag
                );
            }
            family(
                out,
                "raft_follower_last_contact_seconds",
                "gauge",
                "On the leader: time since each follower last answered.",
            );
            for f in followers {
                let secs = f.ms_since_contact as f64 / 1000.0;
                let _ = writeln!(
                    out,
                    "raft_follower_last_contact_seconds{{follower=\"{}\"}} {secs}",
                    f.id
                );
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
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
        m.observe_fsync(Duration::from_micros(200));
        m.observe_peer_round_trip(3, Duration::from_micros(700));
        let text = m.render(&Scrape::default());
        assert!(text.contains("raft_peer_round_trip_seconds_bucket{peer=\"3\",le=\"0.0005\"} 0"));
        assert!(text.contains("raft_peer_round_trip_seconds_bucket{peer=\"3\",le=\"0.001\"} 1"));
        assert!(text.contains("raft_peer_round_trip_seconds_count{peer=\"3\"} 1"));
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
        assert!(text.contains("raft_wal_fsync_duration_seconds_bucket{le=\"0.0001\"} 0"));
        assert!(text.contains("raft_wal_fsync_duration_seconds_bucket{le=\"0.00025\"} 1"));
        assert!(text.contains("raft_wal_fsync_duration_seconds_count 1"));
    }

    #[test]
    fn every_family_is_declared_once() {
        let m = Metrics::default();
        let text = m.render(&Scrape {
            process: ProcessStats::read(),
            data_dir_bytes: Some(1),
            status: None,
        });
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(seen.insert(name.to_string()), "{name} declared twice");
        }
        assert!(seen.contains("process_resident_memory_bytes"), "{text}");
    }
}
