//! Test helper: a cluster of real `raft-kv-server` processes on loopback.
//!
//! Crate-independent on purpose: other crates' tests include it with
//! `#[path = "../../server/tests/support/mod.rs"] mod support;` and need only
//! `raft-core`, `reqwest` (json), `rustls` (ring), `serde_json`, `tempfile`
//! and `tokio` (dev-dependencies). rustls because the server builds reqwest
//! with rustls and no crypto provider of its own (its TLS uses ring): in a
//! build where features unify (`cargo test --workspace`), every reqwest
//! client then needs a process-wide provider, which [`http_client`]
//! installs. The binary is found through `RAFT_KV_SERVER_BIN`, then
//! Cargo's `CARGO_BIN_EXE_raft-kv-server` (set for the server's own tests),
//! then next to the test executable (`target/<profile>/raft-kv-server`),
//! building it with `cargo build -p raft-kv-server` when it is missing.
//!
//! ```ignore
//! let mut c = Cluster::start(3).await;
//! let leader = c.wait_for_leader(Duration::from_secs(10)).await;
//! assert_eq!(c.put(leader, "k", "v").await.status(), 200);
//! c.kill(leader);
//! let new = c.wait_for_leader(Duration::from_secs(10)).await;
//! c.restart(leader).await;
//! ```
//!
//! Every node gets a free port (bound on 127.0.0.1:0, then released; a start
//! that loses the race retries with new ports), its own data directory in a
//! temporary directory, `--enable-test-hooks`, and its stdout/stderr in
//! `<tmp>/node-<id>.log` (the tail of every log is printed when a test
//! panics). Dropping the cluster kills every process (SIGKILL).
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use raft_core::wire::StatusResponse;
use raft_core::Role;

/// How the cluster's nodes are started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `--cluster-token`, when set.
    pub token: Option<String>,
    /// Pass `--enable-test-hooks` (default: yes).
    pub test_hooks: bool,
    /// More flags for every node.
    pub extra_args: Vec<String>,
    /// How long `start` waits for every node to answer `/healthz`.
    pub start_timeout: Duration,
    /// TLS on every node (https URLs, mutual TLS between members).
    pub tls: Option<ClusterTls>,
}

/// TLS for every node of a cluster: the certificates in `dir`, laid out as
/// `raft-kv-server gen-certs` writes them (`ca.pem` is both CAs, member
/// `id` shows `node-<id>.pem` with `node-<id>-key.pem` to clients and
/// members alike, and clients must present a certificate from `ca.pem`),
/// and the client the helper speaks to the nodes with (built by the test,
/// so that this file needs no TLS API: it must trust `ca.pem` and present
/// `client.pem`).
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// The certificate directory.
    pub dir: PathBuf,
    /// The helper's HTTP client.
    pub client: reqwest::Client,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            token: None,
            test_hooks: true,
            extra_args: Vec::new(),
            start_timeout: Duration::from_secs(20),
            tls: None,
        }
    }
}

struct NodeProc {
    id: u64,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster of `raft-kv-server` processes.
pub struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    opts: ClusterOptions,
    bin: PathBuf,
    http: reqwest::Client,
}

/// The `raft-kv-server` binary under test.
pub fn server_binary() -> PathBuf {
    workspace_binary(
        "raft-kv-server",
        "RAFT_KV_SERVER_BIN",
        option_env!("CARGO_BIN_EXE_raft-kv-server"),
    )
}

/// The `raft-kv-client` binary, found like [`server_binary`].
pub fn client_binary() -> PathBuf {
    workspace_binary(
        "raft-kv-client",
        "RAFT_KV_CLIENT_BIN",
        option_env!("CARGO_BIN_EXE_raft-kv-client"),
    )
}

/// The binary `name` of package `name`: from the environment variable
/// `var`, else Cargo's variable for the package's own tests (`cargo_var`),
/// else next to the test executable, built there when missing.
fn workspace_binary(name: &str, var: &str, cargo_var: Option<&str>) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    if let Some(p) = cargo_var {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", name, "--bin", name]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("run cargo build -p {name}: {e}"));
        assert!(status.success(), "cargo build -p {name} failed");
    }
    assert!(
        bin.exists(),
        "no {name} binary at {}; set {var}",
        bin.display()
    );
    bin
}

/// `n` ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Makes ring the process's default rustls provider (once; later calls
/// change nothing).
#[allow(deprecated)] // rustls's nudge towards aws-lc-rs, which needs cmake
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client with short timeouts, for tests.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// Polls `f` (about every 25 ms) until it returns true; panics naming
/// `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with default options.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, ClusterOptions::default()).await
    }

    /// Starts `n` nodes (ids 1..=n).
    pub async fn start_with(n: usize, opts: ClusterOptions) -> Cluster {
        let bin = server_binary();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("raft-kv-cluster-")
                .tempdir()
                .expect("temp dir");
            let ports = free_ports(n);
            let nodes = (1..=n as u64)
                .zip(ports)
                .map(|(id, port)| NodeProc {
                    id,
                    port,
                    data_dir: dir.path().join(format!("node-{id}")),
                    log: dir.path().join(format!("node-{id}.log")),
                    child: None,
                })
                .collect();
            let mut c = Cluster {
                dir,
                nodes,
                opts: opts.clone(),
                bin: bin.clone(),
                http: match &opts.tls {
                    Some(tls) => tls.client.clone(),
                    None => http_client(),
                },
            };
            for id in c.ids() {
                c.spawn(id);
            }
            match c.wait_healthy_all(opts.start_timeout).await {
                Ok(()) => return c,
                Err(e) => last_err = e,
            }
        }
        panic!("cluster did not start: {last_err}");
    }

    /// Gives the cluster a slot for a new member `id` (a free port, a data
    /// directory, a log file) without starting it: add it with the
    /// membership API, then start it with [`Cluster::join_args`] and
    /// [`Cluster::spawn_with`]. Every node's [`Cluster::args`] lists it from
    /// now on (a running member's `--peers` only matters on an empty
    /// directory).
    pub fn add_node(&mut self, id: u64) {
        assert!(
            self.nodes.iter().all(|n| n.id != id),
            "node {id} already exists"
        );
        let port = free_ports(1)[0];
        self.nodes.push(NodeProc {
            id,
            port,
            data_dir: self.dir.path().join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
            child: None,
        });
        self.nodes.sort_by_key(|n| n.id);
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: u64) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The node's base URL (https with [`ClusterOptions::tls`]).
    pub fn url(&self, id: u64) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.node(id).port)
    }

    fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The node's port.
    pub fn port(&self, id: u64) -> u16 {
        self.node(id).port
    }

    /// The node's data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).data_dir.clone()
    }

    /// The flags that start node `id` as a new member joining through
    /// `via` (after `member add`): [`Cluster::args`] with `--join` instead
    /// of `--peers`.
    pub fn join_args(&self, id: u64, via: u64) -> Vec<String> {
        let mut args = self.args(id);
        if let Some(i) = args.iter().position(|a| a == "--peers") {
            args.drain(i..i + 2);
        }
        args.extend(["--join".to_string(), self.url(via)]);
        args
    }

    /// The peer identity headers node `id` sends (`x-raft-peer-id`,
    /// `x-raft-cluster-id`, `x-raft-incarnation`), read from its data
    /// directory's IDENTITY file: a test speaking as that member.
    pub fn peer_headers(&self, id: u64) -> Vec<(&'static str, String)> {
        let path = self.data_dir(id).join("IDENTITY");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("{} has no {k}", path.display()))
        };
        vec![
            ("x-raft-peer-id", id.to_string()),
            ("x-raft-cluster-id", field("cluster-id ")),
            ("x-raft-incarnation", field("incarnation ")),
        ]
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The flags node `id` is started with.
    pub fn args(&self, id: u64) -> Vec<String> {
        let me = self.node(id);
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| format!("{}={}://127.0.0.1:{}", n.id, self.scheme(), n.port))
            .collect();
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            me.port.to_string(),
            "--data-dir".into(),
            me.data_dir.display().to_string(),
            "--log-level".into(),
            "info,raft_kv_server=debug".into(),
        ];
        if !peers.is_empty() {
            args.push("--peers".into());
            args.push(peers.join(","));
        }
        if self.opts.test_hooks {
            args.push("--enable-test-hooks".into());
        }
        if let Some(t) = &self.opts.token {
            args.push("--cluster-token".into());
            args.push(t.clone());
        }
        if let Some(tls) = &self.opts.tls {
            let file = |name: String| tls.dir.join(name).display().to_string();
            for (flag, name) in [
                ("--cert-file", format!("node-{id}.pem")),
                ("--key-file", format!("node-{id}-key.pem")),
                ("--trusted-ca-file", "ca.pem".to_string()),
                ("--peer-cert-file", format!("node-{id}.pem")),
                ("--peer-key-file", format!("node-{id}-key.pem")),
                ("--peer-trusted-ca-file", "ca.pem".to_string()),
            ] {
                args.push(flag.into());
                args.push(file(name));
            }
        }
        args.extend(self.opts.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self, id: u64) {
        let args = self.args(id);
        self.spawn_with(id, args);
    }

    /// Starts node `id` with `args` instead of [`Cluster::args`] (e.g. the
    /// `--join` form) and returns at once: wait with
    /// [`Cluster::wait_healthy`] or [`Cluster::wait_exit`].
    pub fn spawn_with(&mut self, id: u64, args: Vec<String>) {
        let cwd = self.dir.path().to_path_buf();
        let bin = self.bin.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open node log");
        let child = Command::new(bin)
            .args(&args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn raft-kv-server");
        node.child = Some(child);
    }

    async fn wait_healthy_all(&mut self, timeout: Duration) -> Result<(), String> {
        for id in self.ids() {
            self.wait_healthy(id, timeout).await?;
        }
        Ok(())
    }

    /// Waits until node `id` answers `/healthz`.
    pub async fn wait_healthy(&mut self, id: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/healthz", self.url(id));
        loop {
            if let Some(child) = self.node_mut(id).child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.node_mut(id).child = None;
                    return Err(format!(
                        "node {id} exited with {status} while starting:\n{}",
                        self.log_tail(id, 20)
                    ));
                }
            }
            let ok = self
                .http
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("node {id} not healthy after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether node `id`'s process is running.
    pub fn is_running(&mut self, id: u64) -> bool {
        let node = self.node_mut(id);
        match node.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Node `id`'s process id.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.node_mut(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to node `id` (it keeps running until it exits; see
    /// [`Cluster::wait_exit`]).
    pub fn terminate(&mut self, id: u64) {
        let pid = self.pid(id).expect("node is running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for node `id`'s process to exit; returns its status.
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.node_mut(id);
            let child = node.child.as_mut().expect("node was started");
            if let Some(status) = child.try_wait().expect("try_wait") {
                node.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts node `id` again (same port, same data) and waits until it is healthy.
    pub async fn restart(&mut self, id: u64) {
        self.kill(id);
        self.spawn(id);
        let timeout = self.opts.start_timeout;
        if let Err(e) = self.wait_healthy(id, timeout).await {
            panic!("node {id} did not restart: {e}");
        }
    }

    /// Node `id`'s successful answer to `GET path`, if it gives one.
    async fn get_ok(&self, id: u64, path: &str) -> Option<reqwest::Response> {
        let r = self
            .http
            .get(format!("{}{path}", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(r)
    }

    /// Node `id`'s answer to `GET path`, decoded from JSON; panics (naming
    /// the path) when the request fails or the body does not decode.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, id: u64, path: &str) -> T {
        let url = format!("{}{path}", self.url(id));
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: body does not decode: {e}"))
    }

    /// Node `id`'s `/status`, if it answers.
    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        self.get_ok(id, "/status").await?.json().await.ok()
    }

    /// Node `id`'s `/metrics` text, if it answers.
    pub async fn metrics_text(&self, id: u64) -> Option<String> {
        self.get_ok(id, "/metrics").await?.text().await.ok()
    }

    /// The value of node `id`'s unlabelled metric `name`, if it answers.
    pub async fn metric(&self, id: u64, name: &str) -> Option<f64> {
        let text = self.metrics_text(id).await?;
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// The leader, if every running node that answers agrees on one leader
    /// in one term and that leader says it leads.
    pub async fn leader(&mut self) -> Option<u64> {
        let mut seen = None;
        for id in self.ids() {
            if !self.is_running(id) {
                continue;
            }
            let s = self.status(id).await?;
            let view = (s.leader?, s.term);
            match seen {
                None => seen = Some(view),
                Some(v) if v == view => {}
                Some(_) => return None,
            }
        }
        let (leader, term) = seen?;
        let s = self.status(leader).await?;
        (s.role == Role::Leader && s.term == term).then_some(leader)
    }

    /// Waits until the running nodes agree on a leader; returns it.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed on within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `f` until it returns true (see [`wait_until`]).
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, f: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait_until(timeout, what, f).await
    }

    /// `PUT /key/{key}` on node `id`.
    pub async fn put(&self, id: u64, key: &str, value: &str) -> reqwest::Response {
        self.http
            .put(format!("{}/key/{key}", self.url(id)))
            .json(&serde_json::json!({ "value": value }))
            .send()
            .await
            .expect("PUT request")
    }

    /// Tries `PUT /key/{key}` on each running node in turn (the leader
    /// first, when known); returns whether one was acknowledged. A failed
    /// attempt may still commit: retry with the same value.
    pub async fn put_anywhere(&mut self, key: &str, value: &str) -> bool {
        let mut order: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect();
        if let Some(l) = self.leader().await {
            order.retain(|&id| id != l);
            order.insert(0, l);
        }
        for id in order {
            let r = self
                .http
                .put(format!("{}/key/{key}", self.url(id)))
                .json(&serde_json::json!({ "value": value }))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 200) {
                return true;
            }
        }
        false
    }

    /// `GET /key/{key}` on node `id` (linearizable, or local when `stale`).
    pub async fn get(&self, id: u64, key: &str, stale: bool) -> reqwest::Response {
        let q = if stale { "?consistency=stale" } else { "" };
        self.http
            .get(format!("{}/key/{key}{q}", self.url(id)))
            .send()
            .await
            .expect("GET request")
    }

    /// The value node `id` holds for `key` locally (stale read), if any.
    pub async fn local_value(&self, id: u64, key: &str) -> Option<String> {
        let r = self
            .http
            .get(format!("{}/key/{key}?consistency=stale", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        let v: serde_json::Value = r.json().await.ok()?;
        v["value"].as_str().map(str::to_string)
    }

    /// Makes node `id` drop all peer traffic to and from `peers` (test hook).
    pub async fn partition(&self, id: u64, peers: &[u64]) {
        let mut req = self
            .http
            .post(format!("{}/test/partition", self.url(id)))
            .json(&serde_json::json!({ "drop_peers": peers }));
        if let Some(t) = &self.opts.token {
            req = req.header("x-raft-cluster-token", t);
        }
        let r = req.send().await.expect("partition request");
        assert!(
            r.status().is_success(),
            "partition on node {id}: {}",
            r.status()
        );
    }

    /// Cuts node `id` off from every other node (both sides drop).
    pub async fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.partition(id, &others).await;
        for o in others {
            self.partition(o, &[id]).await;
        }
    }

    /// Removes every partition on the running nodes.
    pub async fn heal(&mut self) {
        for id in self.ids() {
            if self.is_running(id) {
                self.partition(id, &[]).await;
            }
        }
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let Ok(f) = std::fs::File::open(&self.node(id).log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Node `id`'s whole log.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
        if std::thread::panicking() {
            for id in self.ids() {
                eprintln!(
                    "----- node {id} log (tail) -----\n{}",
                    self.log_tail(id, 60)
                );
            }
        }
    }
}
