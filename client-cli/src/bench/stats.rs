//! Latency histograms, error counts and the final report.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency tracked exactly (longer ones count as this).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection could not be made.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// The connection broke or the answer could not be read.
    Transport,
    /// 502/503/504: no leader or the node cannot serve now.
    Unavailable,
    /// Another 4xx: the server refused the request.
    Rejected,
    /// Another 5xx (or an unexpected status).
    ServerError,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::Unavailable,
        ErrorKind::Rejected,
        ErrorKind::ServerError,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::ServerError => "server_error",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// How one operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok,
    /// A read of a key that does not exist (a success for the benchmark).
    NotFound,
    /// A failure.
    Error(ErrorKind),
}

/// Results of a set of operations: latency of successful reads and writes,
/// and failures by kind.
#[derive(Clone, Debug)]
pub struct Sample {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    not_found: u64,
    errors: [u64; ErrorKind::ALL.len()],
}

impl Default for Sample {
    fn default() -> Self {
        Sample::new()
    }
}

impl Sample {
    /// An empty sample.
    pub fn new() -> Sample {
        Sample {
            reads: new_histogram(),
            writes: new_histogram(),
            not_found: 0,
            errors: [0; ErrorKind::ALL.len()],
        }
    }

    /// Records one operation.
    pub fn record(&mut self, is_read: bool, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Error(kind) => self.errors[kind.slot()] += 1,
            Outcome::Ok | Outcome::NotFound => {
                if outcome == Outcome::NotFound {
                    self.not_found += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                let histogram = if is_read {
                    &mut self.reads
                } else {
                    &mut self.writes
                };
                histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
            }
        }
    }

    /// Adds `other` into this sample.
    pub fn merge(&mut self, other: &Sample) {
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.reads.add(&other.reads);
        let _ = self.writes.add(&other.writes);
        self.not_found += other.not_found;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
    }

    /// Empties the sample.
    pub fn reset(&mut self) {
        self.reads.reset();
        self.writes.reset();
        self.not_found = 0;
        self.errors = [0; ErrorKind::ALL.len()];
    }

    /// Successful operations (not-found reads included).
    pub fn succeeded(&self) -> u64 {
        self.reads.len() + self.writes.len()
    }

    /// Failed operations.
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Latency of every successful operation.
    pub fn all_latencies(&self) -> Histogram<u64> {
        let mut all = self.reads.clone();
        let _ = all.add(&self.writes);
        all
    }

    /// Failures by kind, only the kinds that occurred.
    pub fn errors_by_kind(&self) -> BTreeMap<&'static str, u64> {
        ErrorKind::ALL
            .iter()
            .filter(|k| self.errors[k.slot()] > 0)
            .map(|k| (k.name(), self.errors[k.slot()]))
            .collect()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// The percentiles of a latency histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Operations measured.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl LatencySummary {
    /// Summarizes `h` (microsecond values).
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// `p50 1.20ms  p90 ...  max ...` for people.
    pub fn text(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            micros(self.p50),
            micros(self.p90),
            micros(self.p99),
            micros(self.p999),
            micros(self.max)
        )
    }
}

/// A latency in microseconds, as `850us`, `1.23ms` or `2.50s`.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// The end-of-run report (`--json` prints it as one object).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The system under test (`raft-kv`).
    pub target: String,
    /// `closed` or `open` loop.
    pub mode: &'static str,
    /// Closed loop: concurrent connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Open loop: target operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The operation mix.
    pub workload: &'static str,
    /// Share of reads in the `mixed` workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_ratio: Option<f64>,
    /// Key space size.
    pub keys: u64,
    /// Key distribution.
    pub distribution: &'static str,
    /// Value size in bytes.
    pub value_size: usize,
    /// Warmup excluded from the results, seconds.
    pub warmup_secs: f64,
    /// Measured time, seconds.
    pub elapsed_secs: f64,
    /// Measured operations, successful or not.
    pub ops: u64,
    /// Successful operations (not-found reads included).
    pub ok: u64,
    /// Reads of absent keys.
    pub not_found: u64,
    /// Failed operations.
    pub errors: u64,
    /// Failed operations by kind.
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of every successful operation, microseconds.
    pub latency_us: LatencySummary,
    /// Latency of reads, microseconds (when there were reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_latency_us: Option<LatencySummary>,
    /// Latency of writes, microseconds (when there were writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_latency_us: Option<LatencySummary>,
}

/// What the report needs besides the measurements.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// See [`Report::target`].
    pub target: String,
    /// See [`Report::connections`].
    pub connections: Option<u32>,
    /// See [`Report::rate`].
    pub rate: Option<f64>,
    /// See [`Report::workload`].
    pub workload: &'static str,
    /// See [`Report::read_ratio`].
    pub read_ratio: Option<f64>,
    /// See [`Report::keys`].
    pub keys: u64,
    /// See [`Report::distribution`].
    pub distribution: &'static str,
    /// See [`Report::value_size`].
    pub value_size: usize,
    /// See [`Report::warmup_secs`].
    pub warmup: Duration,
}

impl Report {
    /// The report of `sample`, measured over `elapsed`.
    pub fn new(info: RunInfo, sample: &Sample, elapsed: Duration) -> Report {
        let ok = sample.succeeded();
        let errors = sample.failed();
        let secs = elapsed.as_secs_f64();
        let part = |h: &Histogram<u64>| (!h.is_empty()).then(|| LatencySummary::of(h));
        Report {
            target: info.target,
            mode: if info.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            connections: info.connections,
            rate: info.rate,
            workload: info.workload,
            read_ratio: info.read_ratio,
            keys: info.keys,
            distribution: info.distribution,
            value_size: info.value_size,
            warmup_secs: info.warmup.as_secs_f64(),
            elapsed_secs: secs,
            ops: ok + errors,
            ok,
            not_found: sample.not_found,
            errors,
            errors_by_kind: sample.errors_by_kind(),
            throughput: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            latency_us: LatencySummary::of(&sample.all_latencies()),
            read_latency_us: part(&sample.reads),
            write_latency_us: part(&sample.writes),
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mix = match self.read_ratio {
            Some(r) => format!("{} ({:.0}% reads)", self.workload, r * 100.0),
            None => self.workload.to_string(),
        };
        let load = match (self.rate, self.connections) {
            (Some(rate), _) => format!("open loop at {rate} ops/s"),
            (None, Some(c)) => format!("closed loop, {c} connections"),
            (None, None) => "closed loop".to_string(),
        };
        out.push_str(&format!(
            "{}: {mix}, {} keys {}, {}-byte values, {load}\n",
            self.target, self.keys, self.distribution, self.value_size
        ));
        out.push_str(&format!(
            "measured   {:.2}s (after {:.2}s warmup)\n",
            self.elapsed_secs, self.warmup_secs
        ));
        out.push_str(&format!(
            "ops        {} ok ({} not found), {} errors\n",
            self.ok, self.not_found, self.errors
        ));
        out.push_str(&format!("throughput {:.1} ops/s\n", self.throughput));
        out.push_str(&format!("latency    {}\n", self.latency_us.text()));
        if self.read_latency_us.is_some() && self.write_latency_us.is_some() {
            if let Some(r) = &self.read_latency_us {
                out.push_str(&format!("  reads    {}\n", r.text()));
            }
            if let Some(w) = &self.write_latency_us {
                out.push_str(&format!("  writes   {}\n", w.text()));
            }
        }
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.push_str(&format!("errors     {}\n", kinds.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            target: "raft-kv".into(),
            connections: Some(4),
            rate: None,
            workload: "mixed",
            read_ratio: Some(0.9),
            keys: 100,
            distribution: "uniform",
            value_size: 10,
            warmup: Duration::ZERO,
        }
    }

    #[test]
    fn summary_percentiles() {
        let mut s = Sample::new();
        for us in 1..=1000u64 {
            s.record(true, Outcome::Ok, Duration::from_micros(us));
        }
        let summary = LatencySummary::of(&s.all_latencies());
        assert_eq!(summary.count, 1000);
        assert!((499..=501).contains(&summary.p50), "{summary:?}");
        assert!((899..=901).contains(&summary.p90), "{summary:?}");
        assert!((989..=991).contains(&summary.p99), "{summary:?}");
        assert!((998..=1000).contains(&summary.p999), "{summary:?}");
        assert!((999..=1001).contains(&summary.max), "{summary:?}");
        assert!((summary.mean - 500.5).abs() < 1.0);
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn report_counts_errors_by_kind_and_excludes_them_from_latency() {
        let mut a = Sample::new();
        a.record(true, Outcome::Ok, Duration::from_millis(1));
        a.record(true, Outcome::NotFound, Duration::from_millis(2));
        a.record(false, Outcome::Ok, Duration::from_millis(10));
        a.record(
            false,
            Outcome::Error(ErrorKind::Timeout),
            Duration::from_secs(5),
        );
        let mut b = Sample::new();
        b.record(
            false,
            Outcome::Error(ErrorKind::Unavailable),
            Duration::ZERO,
        );
        b.record(
            false,
            Outcome::Error(ErrorKind::Unavailable),
            Duration::ZERO,
        );
        a.merge(&b);
        let r = Report::new(info(), &a, Duration::from_secs(2));
        assert_eq!((r.ops, r.ok, r.not_found, r.errors), (6, 3, 1, 3));
        assert_eq!(r.errors_by_kind.get("timeout"), Some(&1));
        assert_eq!(r.errors_by_kind.get("unavailable"), Some(&2));
        assert_eq!(r.errors_by_kind.len(), 2);
        assert!((r.throughput - 1.5).abs() < 1e-9);
        assert!(r.latency_us.max < 11_000);
        assert_eq!(r.read_latency_us.as_ref().map(|l| l.count), Some(2));
        assert_eq!(r.write_latency_us.as_ref().map(|l| l.count), Some(1));
        let text = r.text();
        assert!(
            text.contains("errors     timeout 1, unavailable 2"),
            "{text}"
        );
        assert!(text.contains("  writes   p50 10.0"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "closed");
        assert_eq!(json["latency_us"]["count"], 3);
        assert!(json.get("rate").is_none());
        b.reset();
        assert_eq!(b.failed(), 0);
    }

    #[test]
    fn latencies_print_in_fitting_units() {
        assert_eq!(micros(850), "850us");
        assert_eq!(micros(1_234), "1.23ms");
        assert_eq!(micros(2_500_000), "2.50s");
    }
}
