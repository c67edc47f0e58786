//! `bench`: the load generator. Closed loop (`--connections N`: N workers,
//! each with its own keep-alive connection, one request at a time) or open
//! loop (`--rate R`: requests started on a fixed schedule, latency measured
//! from each request's intended start, so a slow server cannot hide its
//! stalls by slowing the load down).

mod etcd;
#[cfg(feature = "etcd-grpc")]
mod etcd_grpc;
mod http;
mod stats;
mod target;
mod workload;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::Url;
use tokio::sync::{oneshot, Semaphore};

use crate::cli::{parse_duration, parse_positive_duration, parse_server_url};
use crate::client::random_client_id;
use crate::error::CliError;
use crate::output::{note, print, print_json};
use stats::{LatencySummary, Outcome, Report, RunInfo, Sample};
use target::{Conn, ConnFor, Session, Target, TargetKind};
use workload::{random_value, Distribution, KeySampler, Op, Rng, Workload, WorkloadKind};

/// Options of `bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
Latency is measured per request; in open loop (--rate) from the moment the \
request should have been sent, so queueing behind a slow server counts. \
raft-kv: writes and linearizable reads go to the leader found at start; stale \
reads are spread over every member. etcd (--target etcd): every request goes \
through the HTTP/JSON gateway of one of --etcd-endpoints, one member per \
connection; --target etcd-grpc (a build with the etcd-grpc feature): the same \
through etcd's gRPC API, one HTTP/2 connection to one member per worker (in \
open loop one client balanced over the members). Progress goes to stderr every second, the \
report to stdout (one JSON object with --json). --timeout bounds leader \
discovery and each request.")]
pub struct BenchArgs {
    /// Closed loop: this many workers, each with its own keep-alive
    /// connection and one request in flight.
    #[arg(long, short = 'c', default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// Open loop: start this many operations per second, whatever the
    /// latency.
    #[arg(long, conflicts_with = "connections", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open loop: the most requests in flight at once; beyond it requests
    /// wait (and their wait counts as latency).
    #[arg(long, default_value_t = 4096, requires = "rate",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,

    /// The operation mix.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Mixed)]
    pub workload: WorkloadKind,

    /// Share of reads in the mixed workload (0 to 1).
    #[arg(long, default_value_t = 0.9, value_parser = parse_ratio)]
    pub read_ratio: f64,

    /// The number of distinct keys.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,

    /// How keys are picked.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,

    /// Skew of the zipfian distribution (theta > 0; higher is hotter).
    #[arg(long, default_value_t = 0.99, value_parser = parse_theta)]
    pub zipf_theta: f64,

    /// Size of written values in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=(16 << 20)))]
    pub value_size: u32,

    /// How long to measure (after the warmup), e.g. `10s`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration,
          conflicts_with = "ops")]
    pub duration: Duration,

    /// Measure this many operations instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: Option<u64>,

    /// Load sent before measuring, excluded from the results.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Key names are this prefix and the zero-padded key number.
    #[arg(long, default_value = "bench-")]
    pub key_prefix: String,

    /// Write every key once before the run (so reads find values).
    #[arg(long)]
    pub preload: bool,

    /// Seed of the key and operation choices (random by default).
    #[arg(long)]
    pub seed: Option<u64>,

    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// The store under test.
    #[arg(long, value_enum, default_value_t = TargetKind::RaftKv)]
    pub target: TargetKind,

    /// With `--target etcd` or `etcd-grpc`: the members' client URLs
    /// (comma-separated); requests are spread over them, one member per
    /// connection.
    #[arg(long, value_name = "URL", value_delimiter = ',',
          default_value = "http://127.0.0.1:2379", value_parser = parse_server_url)]
    pub etcd_endpoints: Vec<Url>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(r),
        _ => Err(format!("{text:?} is not a rate in operations per second")),
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a ratio between 0 and 1")),
    }
}

fn parse_theta(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 10.0 => Ok(t),
        _ => Err(format!("{text:?} is not a zipfian theta (0 < theta <= 10)")),
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(
    args: BenchArgs,
    servers: Vec<Url>,
    timeout: Duration,
    json: bool,
    tls: crate::tls::Tls,
) -> Result<(), CliError> {
    let servers = if args.target.is_etcd() {
        args.etcd_endpoints.clone()
    } else {
        servers
    };
    let target = Target::discover(args.target, servers, timeout, tls).await?;
    if !args.quiet {
        note(&format!("bench: {}", target.describe()));
    }
    let seed = args.seed.unwrap_or_else(random_client_id);
    let sampler = KeySampler::new(args.distribution, args.keys, args.zipf_theta);
    let workload = Workload::new(
        args.workload,
        args.read_ratio,
        sampler,
        args.key_prefix.clone(),
    );
    let value = random_value(&mut Rng::new(seed), args.value_size as usize);
    let body = target.encode_value(&value);

    let target = Arc::new(target);
    let workload = Arc::new(workload);
    let body = bytes::Bytes::from(body);
    if args.preload {
        preload(&target, &workload, &body, &args, timeout).await?;
    }

    let start = Instant::now();
    let measure_start = start + args.warmup;
    let shared = Arc::new(Shared {
        target,
        workload,
        body,
        shards: (0..SHARDS)
            .map(|_| Mutex::new(Recorder::default()))
            .collect(),
        start,
        measure_start,
        end: args.ops.is_none().then(|| measure_start + args.duration),
        ops: args.ops,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        last_done_ns: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        open_loop: args.rate.is_some(),
    });

    let ctrl_c = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let (stop_progress, stopped) = oneshot::channel();
    let progress = tokio::spawn(progress(Arc::clone(&shared), stopped, args.quiet));

    let elapsed = match args.rate {
        Some(rate) => open_loop(&shared, rate, args.max_in_flight, timeout, seed).await?,
        None => closed_loop(&shared, args.connections, timeout, seed).await?,
    };
    ctrl_c.abort();
    let _ = stop_progress.send(());
    let sample = progress
        .await
        .map_err(|e| CliError::Usage(format!("progress reporter failed: {e}")))?;

    let info = RunInfo {
        target: shared.target.name().to_string(),
        connections: args.rate.is_none().then_some(args.connections),
        rate: args.rate,
        workload: args.workload.name(),
        read_ratio: (args.workload == WorkloadKind::Mixed).then_some(args.read_ratio),
        keys: args.keys,
        distribution: args.distribution.name(),
        value_size: args.value_size as usize,
        warmup: args.warmup,
    };
    let report = Report::new(info, &sample, elapsed);
    if json {
        print_json(&report)?;
    } else {
        print(&report.text())?;
    }
    if report.ok == 0 && report.errors > 0 {
        return Err(CliError::Unavailable(format!(
            "all {} operations failed",
            report.errors
        )));
    }
    Ok(())
}

/// Recorders are sharded so that workers rarely wait for each other.
const SHARDS: usize = 16;

/// What a shard collected since the progress reporter last drained it.
#[derive(Default)]
struct Recorder {
    warmup: Sample,
    measured: Sample,
}

/// State shared by the workers, the scheduler and the progress reporter.
struct Shared {
    target: Arc<Target>,
    workload: Arc<Workload>,
    body: bytes::Bytes,
    shards: Vec<Mutex<Recorder>>,
    start: Instant,
    measure_start: Instant,
    /// The end of the measurement (`None` with `--ops`).
    end: Option<Instant>,
    ops: Option<u64>,
    /// Measured operations started so far.
    issued: AtomicU64,
    /// Set on Ctrl-C.
    stop: AtomicBool,
    /// When the latest measured operation finished, in ns after `start`.
    last_done_ns: AtomicU64,
    /// Open-loop requests in flight.
    in_flight: AtomicU64,
    open_loop: bool,
}

impl Shared {
    /// Whether an operation may start at `at`, and if so whether it is
    /// measured (`false`: warmup).
    fn admit(&self, at: Instant) -> Option<bool> {
        if self.stop.load(Ordering::Relaxed) || self.end.is_some_and(|end| at >= end) {
            return None;
        }
        let measured = at >= self.measure_start;
        if measured {
            if let Some(limit) = self.ops {
                if self.issued.fetch_add(1, Ordering::Relaxed) >= limit {
                    return None;
                }
            }
        }
        Some(measured)
    }

    /// Sends one operation.
    async fn execute(
        &self,
        conn: &mut Conn,
        op: Op,
        spread: usize,
        session: &mut Session,
    ) -> Outcome {
        let key = self.workload.key_name(op.key());
        self.target
            .execute(conn, op, &key, &self.body, spread, session)
            .await
    }

    fn record(&self, shard: usize, measured: bool, op: Op, outcome: Outcome, latency: Duration) {
        let done = Instant::now();
        {
            let mut recorder = match self.shards[shard % SHARDS].lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let sample = if measured {
                &mut recorder.measured
            } else {
                &mut recorder.warmup
            };
            sample.record(op.is_read(), outcome, latency);
        }
        if measured {
            let ns = u64::try_from(done.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
            self.last_done_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// A fresh duplicate-detection session (registered at its first write).
    fn new_session(&self) -> Session {
        Session::unregistered()
    }

    /// Time from the start of measurement to the last measured completion.
    fn measured_elapsed(&self) -> Duration {
        let last = self.start + Duration::from_nanos(self.last_done_ns.load(Ordering::Relaxed));
        last.saturating_duration_since(self.measure_start)
    }
}

/// N workers, one request in flight each. Returns the measured time.
async fn closed_loop(
    shared: &Arc<Shared>,
    connections: u32,
    timeout: Duration,
    seed: u64,
) -> Result<Duration, CliError> {
    let mut workers = Vec::with_capacity(connections as usize);
    for index in 0..connections as usize {
        let mut conn = shared
            .target
            .connect(ConnFor::Worker(index), timeout)
            .await?;
        let shared = Arc::clone(shared);
        let mut rng = Rng::new(seed.wrapping_add(index as u64 + 1));
        workers.push(tokio::spawn(async move {
            let mut session = shared.new_session();
            loop {
                let started = Instant::now();
                let Some(measured) = shared.admit(started) else {
                    break;
                };
                let op = shared.workload.next_op(&mut rng);
                let outcome = shared.execute(&mut conn, op, index, &mut session).await;
                shared.record(index, measured, op, outcome, started.elapsed());
            }
        }));
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| CliError::Usage(format!("bench worker failed: {e}")))?;
    }
    Ok(shared.measured_elapsed())
}

/// Starts operations at `rate` per second on a fixed schedule. Returns the
/// measured time (the span of intended start times).
async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: u32,
    timeout: Duration,
    seed: u64,
) -> Result<Duration, CliError> {
    let conn = shared
        .target
        .connect(ConnFor::Shared(max_in_flight as usize), timeout)
        .await?;
    let slots = Arc::new(Semaphore::new(max_in_flight as usize));
    let sessions: Arc<Mutex<Vec<Session>>> = Arc::default();
    let spread = shared.target.read_endpoints().max(1);
    let mut rng = Rng::new(seed);
    let mut sent: u64 = 0;
    let mut measured_ops: u64 = 0;
    loop {
        let intended = shared.start + Duration::from_secs_f64(sent as f64 / rate);
        let Some(measured) = shared.admit(intended) else {
            break;
        };
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let op = shared.workload.next_op(&mut rng);
        let shared_op = Arc::clone(shared);
        let mut conn = conn.clone();
        let sessions = Arc::clone(&sessions);
        let index = sent as usize;
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut session = match op {
                Op::Put(_) => take_session(&sessions).unwrap_or_else(|| shared_op.new_session()),
                _ => Session::unregistered(),
            };
            let outcome = shared_op
                .execute(&mut conn, op, index % spread, &mut session)
                .await;
            shared_op.record(index, measured, op, outcome, intended.elapsed());
            if let Op::Put(_) = op {
                give_session(&sessions, session);
            }
            shared_op.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
        sent += 1;
        measured_ops += u64::from(measured);
    }
    // Wait for every request in flight.
    let _ = slots.acquire_many(max_in_flight).await;
    let first = shared.measure_start.saturating_duration_since(shared.start);
    let window = Duration::from_secs_f64(sent as f64 / rate).saturating_sub(first);
    Ok(if measured_ops == 0 {
        Duration::ZERO
    } else {
        window
    })
}

fn take_session(sessions: &Mutex<Vec<Session>>) -> Option<Session> {
    sessions.lock().ok()?.pop()
}

fn give_session(sessions: &Mutex<Vec<Session>>, session: Session) {
    if let Ok(mut pool) = sessions.lock() {
        pool.push(session);
    }
}

/// Every second: drains the shards, prints a progress line, and keeps the
/// measured results. Returns them when told to stop.
async fn progress(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>, quiet: bool) -> Sample {
    let mut total = Sample::new();
    let mut interval = Sample::new();
    let mut ticks = tokio::time::interval_at(
        (shared.start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut last_tick = shared.start;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                drain(&shared, &mut total, &mut interval);
                let now = Instant::now();
                if !quiet {
                    note(&progress_line(&shared, &interval, last_tick, now));
                }
                last_tick = now;
                interval.reset();
            }
            _ = &mut stop => {
                drain(&shared, &mut total, &mut interval);
                return total;
            }
        }
    }
}

fn drain(shared: &Shared, total: &mut Sample, interval: &mut Sample) {
    for shard in &shared.shards {
        let mut recorder = match shard.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        interval.merge(&recorder.warmup);
        interval.merge(&recorder.measured);
        total.merge(&recorder.measured);
        recorder.warmup.reset();
        recorder.measured.reset();
    }
}

/// One progress line about the interval from `from` to `now`.
fn progress_line(shared: &Shared, interval: &Sample, from: Instant, now: Instant) -> String {
    let phase = if from < shared.measure_start {
        "warmup"
    } else {
        "run"
    };
    let ops = interval.succeeded() + interval.failed();
    let rate = ops as f64 / (now - from).as_secs_f64().max(1e-3);
    let latency = LatencySummary::of(&interval.all_latencies());
    let mut line = format!(
        "[{:>5.0}s] {phase:<6} {rate:>9.0} ops/s  p50 {}  p99 {}  errors {}",
        now.duration_since(shared.start).as_secs_f64(),
        stats::micros(latency.p50),
        stats::micros(latency.p99),
        interval.failed(),
    );
    if shared.open_loop {
        line.push_str(&format!(
            "  in flight {}",
            shared.in_flight.load(Ordering::Relaxed)
        ));
    }
    line
}

/// Writes every key once, `--connections` at a time.
async fn preload(
    target: &Arc<Target>,
    workload: &Arc<Workload>,
    body: &bytes::Bytes,
    args: &BenchArgs,
    timeout: Duration,
) -> Result<(), CliError> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers = if args.rate.is_some() {
        64
    } else {
        args.connections
    };
    let mut tasks = Vec::new();
    for index in 0..workers as usize {
        let mut conn = target.connect(ConnFor::Worker(index), timeout).await?;
        let (target, workload, body) = (Arc::clone(target), Arc::clone(workload), body.clone());
        let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
        let mut session = Session::unregistered();
        tasks.push(tokio::spawn(async move {
            loop {
                let key = next.fetch_add(1, Ordering::Relaxed);
                if key >= workload.key_count() {
                    break;
                }
                let name = workload.key_name(key);
                let outcome = target
                    .execute(&mut conn, Op::Put(key), &name, &body, index, &mut session)
                    .await;
                if outcome != Outcome::Ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| CliError::Usage(format!("preload worker failed: {e}")))?;
    }
    let keys = workload.key_count();
    let failed = failed.load(Ordering::Relaxed);
    if !args.quiet {
        note(&format!(
            "bench: preloaded {} keys in {:.2}s ({failed} failed)",
            keys - failed,
            started.elapsed().as_secs_f64()
        ));
    }
    if failed == keys {
        return Err(CliError::Unavailable(format!(
            "preload failed: none of the {keys} writes succeeded"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn bench_flags_parse() {
        let cli = crate::cli::Cli::try_parse_from([
            "raft-kv-client",
            "bench",
            "--rate",
            "500",
            "--workload",
            "get-stale",
            "--distribution",
            "zipfian",
            "--ops",
            "1000",
            "--warmup",
            "2s",
            "--json",
        ])
        .unwrap();
        let crate::cli::Command::Bench(args) = cli.command else {
            panic!("not bench");
        };
        assert_eq!(args.rate, Some(500.0));
        assert_eq!(args.workload, WorkloadKind::GetStale);
        assert_eq!(args.ops, Some(1000));
        assert_eq!(args.warmup, Duration::from_secs(2));
        assert!(cli.json);
    }

    #[test]
    fn etcd_target_flags_parse() {
        let cli = crate::cli::Cli::try_parse_from([
            "raft-kv-client",
            "bench",
            "--target",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379,http://127.0.0.1:22379",
        ])
        .unwrap();
        let crate::cli::Command::Bench(args) = cli.command else {
            panic!("not bench");
        };
        assert_eq!(args.target, TargetKind::Etcd);
        let got: Vec<&str> = args.etcd_endpoints.iter().map(Url::as_str).collect();
        assert_eq!(got, ["http://127.0.0.1:2379/", "http://127.0.0.1:22379/"]);
    }

    #[test]
    fn etcd_grpc_target_parses_with_or_without_the_feature() {
        let cli =
            crate::cli::Cli::try_parse_from(["raft-kv-client", "bench", "--target", "etcd-grpc"])
                .unwrap();
        let crate::cli::Command::Bench(args) = cli.command else {
            panic!("not bench");
        };
        assert_eq!(args.target, TargetKind::EtcdGrpc);
        assert!(args.target.is_etcd());
        assert!(!TargetKind::RaftKv.is_etcd());
    }

    #[cfg(not(feature = "etcd-grpc"))]
    #[tokio::test]
    async fn etcd_grpc_without_the_feature_says_how_to_build_it() {
        let endpoints = vec![Url::parse("http://127.0.0.1:2379").unwrap()];
        let err = Target::discover(
            TargetKind::EtcdGrpc,
            endpoints,
            Duration::from_secs(1),
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(&err, CliError::Usage(m) if m.contains("--features etcd-grpc")));
    }

    #[cfg(feature = "etcd-grpc")]
    #[tokio::test]
    async fn etcd_grpc_connections_are_made_lazily() {
        // Nothing listens on port 1: the client is still made, and the
        // request fails as a refused connection, counted by kind.
        let endpoints = vec![Url::parse("http://127.0.0.1:1").unwrap()];
        let target = Target::discover(
            TargetKind::EtcdGrpc,
            endpoints,
            Duration::from_secs(1),
            None,
        )
        .await
        .unwrap();
        assert_eq!(target.name(), "etcd-grpc");
        let mut conn = target
            .connect(ConnFor::Worker(0), Duration::from_secs(1))
            .await
            .unwrap();
        let outcome = target
            .execute(
                &mut conn,
                Op::Put(0),
                "k",
                &bytes::Bytes::from_static(b"v"),
                0,
                &mut Session::unregistered(),
            )
            .await;
        assert_eq!(outcome, Outcome::Error(stats::ErrorKind::Connect));
    }

    #[test]
    fn conflicting_bench_flags_are_usage_errors() {
        for args in [
            &[
                "raft-kv-client",
                "bench",
                "--rate",
                "10",
                "--connections",
                "4",
            ][..],
            &["raft-kv-client", "bench", "--ops", "10", "--duration", "1s"],
            &["raft-kv-client", "bench", "--rate", "0"],
            &["raft-kv-client", "bench", "--read-ratio", "1.5"],
            &["raft-kv-client", "bench", "--zipf-theta", "0"],
            &["raft-kv-client", "bench", "--keys", "0"],
            &["raft-kv-client", "bench", "--max-in-flight", "10"],
        ] {
            assert!(crate::cli::Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
