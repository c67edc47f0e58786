//! Command-line flags ([`Args`]) and the validated settings the node runs
//! with ([`Settings`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use raft_core::NodeId;

/// `raft-kv-server`: one node of a raft-kv cluster.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "raft-kv-server",
    version,
    about = "A raft-kv node: a Raft-replicated key-value store with a REST API",
    long_about = "A raft-kv node: a Raft-replicated key-value store.\n\n\
        One HTTP listener serves the client REST API (/key, /keys, /status, /cluster), \
        the peer RPC (/raft/stream, /raft/snapshot), /metrics and the dashboard: plain HTTP, \
        or with --cert-file and the --peer-* files TLS for clients and mutual TLS between \
        members (`raft-kv-server gen-certs DIR` makes a throwaway CA and certificates).\n\n\
        Example (the three members of a local cluster):\n  \
        raft-kv-server --node-id 1 --port 3001 --peers 2,3\n  \
        raft-kv-server --node-id 2 --port 3002 --peers 1,3\n  \
        raft-kv-server --node-id 3 --port 3003 --peers 1,2"
)]
pub struct Args {
    /// This node's id: a non-zero integer, unique in the cluster.
    #[arg(long, env = "RAFT_KV_NODE_ID")]
    pub node_id: NodeId,

    /// Address the HTTP listener binds to.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port of the HTTP listener (client API, peer RPC, metrics, dashboard).
    /// Default: 3000 + node id. 0 picks a free port.
    #[arg(long)]
    pub port: Option<u16>,

    /// The base URL peers and clients use to reach this node
    /// (default: http://HOST:PORT, https:// with the TLS flags). Sent to
    /// clients in leader hints.
    #[arg(long)]
    pub advertise_url: Option<String>,

    /// The founding members of a NEW cluster, comma-separated. `2,3` means
    /// peer N at http://127.0.0.1:300N (the seed's convention; https://
    /// with the TLS flags);
    /// `2=http://10.0.0.2:3002,3=...` names each peer's base URL. This
    /// node's own id may appear (it is skipped), so every founder can be
    /// given the same list. Empty: a single-node cluster. Used only when the
    /// data directory is empty: afterwards the configuration is the one in
    /// the node's log, changed only with the membership commands.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer, conflicts_with = "join")]
    pub peers: Vec<PeerArg>,

    /// Join a running cluster through any of its members (base URL), after
    /// `raft-kv-client member add ID URL` added this node. The node learns
    /// the configuration and the data from the leader. Used only when the
    /// data directory is empty.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,

    /// Recover from the loss of a quorum: restart this surviving member as
    /// the only voter of its cluster, keeping (and committing) every entry
    /// it holds. Then add members back with `raft-kv-client member add`.
    /// Only for a data directory that holds a log; use it on ONE survivor
    /// and remove the flag afterwards (a later start with it is refused
    /// once the configuration has changed).
    #[arg(long, conflicts_with = "join")]
    pub force_new_cluster: bool,

    /// Found a new cluster from a backup (`raft-kv-client snapshot save`):
    /// start every member of the new cluster with the same FILE and the
    /// same `--peers`, each on an empty data directory. The new cluster
    /// gets its own id; the backup's data is its starting state.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["join", "force_new_cluster"])]
    pub restore: Option<PathBuf>,

    /// Directory of the write-ahead log and snapshots (default: ./data/node-<id>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Do not fsync the log. For benchmarks only: a crash can lose acknowledged writes.
    #[arg(long)]
    pub no_fsync: bool,

    /// Size at which the write-ahead log starts a new segment file.
    #[arg(long, default_value_t = 64 << 20)]
    pub segment_bytes: u64,

    /// Length of one Raft tick in milliseconds (the protocol's clock).
    #[arg(long, default_value_t = 50)]
    pub tick_ms: u64,

    /// Election timeout in ticks: a follower that hears nothing from a
    /// leader for a random 1x-2x of this starts an election.
    #[arg(long, default_value_t = 10)]
    pub election_ticks: u64,

    /// Heartbeat interval in ticks (must be below --election-ticks).
    #[arg(long, default_value_t = 2)]
    pub heartbeat_ticks: u64,

    /// A learner added without `learner: true` is promoted to voter once its
    /// log is within this many entries of the leader's ...
    #[arg(long, default_value_t = 1_000)]
    pub promote_lag: u64,

    /// ... for this long without a break (milliseconds, rounded up to ticks).
    #[arg(long, default_value_t = 1_000)]
    pub promote_after_ms: u64,

    /// Take a snapshot (and compact the log) every N applied entries, once the
    /// log since the last snapshot is also at least half that snapshot's size
    /// (nodes 2 and 3 wait a third and two thirds more, by id modulo 3, so the
    /// members do not snapshot at once). In between, the log in memory is
    /// compacted every N entries all the same (a checkpoint: no file is
    /// written, the log on disk still reaches back to the last snapshot).
    /// 0: never automatically.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,

    /// Keep this many applied entries in the log after a snapshot (the log
    /// before a snapshot is dropped only once this many more are applied;
    /// `POST /admin/snapshot` compacts at once), so that a follower briefly
    /// behind gets entries instead of a whole snapshot.
    #[arg(long, default_value_t = raft_core::replica::DEFAULT_CATCHUP_ENTRIES)]
    pub snapshot_catchup_entries: u64,

    /// Size of the chunks a snapshot is sent to a lagging follower in (bytes,
    /// 1 KiB to 64 MiB).
    #[arg(long, default_value_t = crate::peer::DEFAULT_CHUNK_BYTES)]
    pub snapshot_chunk_bytes: usize,

    /// Shared secret of the cluster. When set, the peer RPC and the admin
    /// endpoints refuse requests without header `x-raft-cluster-token: <token>` (401).
    #[arg(long, env = "RAFT_KV_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,

    /// Read the cluster token from this file (surrounding whitespace is ignored).
    #[arg(long, conflicts_with = "cluster_token")]
    pub cluster_token_file: Option<PathBuf>,

    /// Largest key accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 1024)]
    pub max_key_bytes: usize,

    /// Largest value accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_value_bytes: usize,

    /// How long a client request may wait for commit (or a read for its
    /// read index) before it is answered 504, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout_ms: u64,

    /// How long a request waits for a leader to be elected before it is
    /// answered 503, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub election_wait_ms: u64,

    /// How long a client connection may stay open without sending a whole
    /// request head (idle keep-alive, a new connection that sends nothing,
    /// or a head still arriving) before the node closes it, in
    /// milliseconds. Each open connection holds about 25 KB of buffers;
    /// peer streams are not affected.
    #[arg(long, default_value_t = 10_000)]
    pub idle_timeout_ms: u64,

    /// How long a request body may take to arrive after its head, in
    /// milliseconds (longer: 408).
    #[arg(long, default_value_t = 10_000)]
    pub body_timeout_ms: u64,

    /// Connections (clients and peers) the node keeps open at once. The last
    /// 32 are kept for peers: a client connection that would take one is
    /// answered 503. With all taken, new connections wait in the listen
    /// backlog. At least 64. The node raises its open-file limit to fit, up
    /// to the hard limit.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,

    /// Directory of the dashboard's static files, served at `/`.
    #[arg(long, default_value = "web/dist")]
    pub web_dir: PathBuf,

    /// Log filter (e.g. `info`, `debug`, `raft_kv_server=debug`). Default: $RUST_LOG, else `info`.
    #[arg(long)]
    pub log_level: Option<String>,

    /// Log line format: `text` for people, `json` (one object per line:
    /// timestamp, level, target, message and fields) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TLS: the certificate chain (PEM) the listener shows clients. With
    /// TLS every member URL is https:// and the peer flags are required
    /// too (the one listener serves members as well).
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// TLS: the private key (PEM) of --cert-file.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// TLS: clients must present a certificate chaining to one of these
    /// CAs (PEM bundle). Without it any client may connect over TLS.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Mutual TLS between members: the certificate chain (PEM) this node
    /// shows other members, as server and as client. It must be valid for
    /// TLS server and client authentication and name this node's host.
    #[arg(long, value_name = "FILE", requires_all = ["peer_key_file", "peer_trusted_ca_file", "cert_file"])]
    pub peer_cert_file: Option<PathBuf>,

    /// Mutual TLS between members: the private key (PEM) of --peer-cert-file.
    #[arg(long, value_name = "FILE", requires = "peer_cert_file")]
    pub peer_key_file: Option<PathBuf>,

    /// Mutual TLS between members: the CAs (PEM bundle) a member's
    /// certificate must chain to. A connection offering the peer protocol
    /// without such a certificate fails its handshake: none of its
    /// requests is read. The files are read again when they change or on
    /// SIGHUP (new connections use them, open ones go on).
    #[arg(long, value_name = "FILE", requires = "peer_cert_file")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Host names (besides loopback names, IP addresses and the members'
    /// advertised hosts) that requests may name in their `Host` header,
    /// comma-separated. Any other name is refused (403): a guard against
    /// DNS rebinding, where a web page reaches this port under the
    /// attacker's own name.
    #[arg(long, value_delimiter = ',')]
    pub host_whitelist: Vec<String>,

    /// TEST ONLY: enables `POST /test/partition`, which makes this node drop
    /// peer traffic. Never use in production.
    #[arg(long)]
    pub enable_test_hooks: bool,
}

/// One `--peers` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's id.
    pub id: NodeId,
    /// Its base URL (no trailing slash).
    pub url: String,
}

fn seed_url(id: NodeId, scheme: &str) -> Result<String, String> {
    let port = 3000u64
        .checked_add(id)
        .filter(|p| *p <= u64::from(u16::MAX))
        .ok_or_else(|| format!("peer {id} has no default port (3000+id > 65535); use {id}=URL"))?;
    Ok(format!("{scheme}://127.0.0.1:{port}"))
}

/// One `--peers` item as given: `N` or `N=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerArg {
    id: NodeId,
    url: Option<String>,
}

impl PeerArg {
    /// The peer's id and URL; `N` alone is `SCHEME://127.0.0.1:300N`
    /// (https when the node speaks TLS).
    fn resolve(self, scheme: &str) -> Result<PeerSpec, String> {
        let url = match self.url {
            None => seed_url(self.id, scheme)?,
            Some(u) => u,
        };
        Ok(PeerSpec { id: self.id, url })
    }
}

/// Parses `N` or `N=http(s)://host:port`.
pub fn parse_peer(s: &str) -> Result<PeerArg, String> {
    let s = s.trim();
    let (id, url) = match s.split_once('=') {
        Some((id, url)) => (id.trim(), Some(url.trim())),
        None => (s, None),
    };
    let id: NodeId = id
        .parse()
        .map_err(|_| format!("`{s}`: a peer is `ID` or `ID=URL` with a numeric id"))?;
    if id == 0 {
        return Err("node id 0 is reserved".into());
    }
    let url = url.map(normalize_url).transpose()?;
    Ok(PeerArg { id, url })
}

/// The port of a normalized `http(s)://host:port` URL (80 or 443 when it
/// names none).
fn url_port(url: &str) -> u16 {
    let default = if url.starts_with("https://") { 443 } else { 80 };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        // An IPv6 literal without a port ends with `]`.
        Some((_, port)) if !port.ends_with(']') => port.parse().unwrap_or(0),
        _ => default,
    }
}

/// Checks and normalizes a base URL (`http(s)://host:port`, no trailing
/// slash).
pub fn normalize_url(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty()) {
        return Err(format!(
            "`{u}`: a member URL looks like http://host:port or https://host:port"
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// Checks that `url` uses the scheme the node speaks: the one listener is
/// either TLS or not, so a member URL of the other scheme could not reach it.
pub fn check_scheme(what: &str, url: &str, tls: bool) -> Result<(), ConfigError> {
    match (tls, url.starts_with("https://")) {
        (true, false) => Err(ConfigError(format!(
            "{what} {url}: with --cert-file the members speak TLS; use https://"
        ))),
        (false, true) => Err(ConfigError(format!(
            "{what} {url}: an https:// member URL needs the TLS flags (--cert-file, \
             --key-file and the --peer-* files)"
        ))),
        _ => Ok(()),
    }
}

/// Invalid flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration a node runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's id.
    pub id: NodeId,
    /// Address to bind.
    pub host: String,
    /// Port to bind (0: any).
    pub port: u16,
    /// This node's base URL as given by `--advertise-url`, if any.
    pub advertise_url: Option<String>,
    /// The other founding members and their base URLs (`--peers`).
    pub peers: BTreeMap<NodeId, String>,
    /// Whether `--peers` was given at all.
    pub peers_given: bool,
    /// `--join`: a member of the cluster to join.
    pub join: Option<String>,
    /// `--force-new-cluster`: restart as the only voter.
    pub force_new_cluster: bool,
    /// `--restore`: the backup a new cluster starts from.
    pub restore: Option<PathBuf>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// fsync the log.
    pub sync: bool,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// Tick length.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: u64,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u64,
    /// Automatic promotion: the most entries a caught-up learner may lag.
    pub promote_lag: u64,
    /// Automatic promotion: ticks a learner must stay caught up.
    pub promote_after_ticks: u64,
    /// Automatic snapshot threshold in applied entries (0: off).
    pub snapshot_every: u64,
    /// Applied entries kept in the log after a snapshot (catch-up margin).
    pub snapshot_catchup_entries: u64,
    /// Size of the chunks a snapshot travels in.
    pub snapshot_chunk_bytes: usize,
    /// The cluster token, if any.
    pub cluster_token: Option<String>,
    /// Key size limit.
    pub max_key_bytes: usize,
    /// Value size limit.
    pub max_value_bytes: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Bound on waiting for an election.
    pub election_wait: Duration,
    /// How long an idle client connection stays open.
    pub idle_timeout: Duration,
    /// How long a request body may take.
    pub body_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Dashboard directory.
    pub web_dir: PathBuf,
    /// Test hooks on.
    pub test_hooks: bool,
    /// The certificate files, when the node speaks TLS.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `--host-whitelist`: extra names a request's `Host` may carry.
    pub host_whitelist: Vec<String>,
}

impl Settings {
    /// The most a client request body may hold: a JSON-encoded value can be
    /// up to twice as long as the value itself (escapes), plus framing.
    pub fn client_body_limit(&self) -> usize {
        self.max_value_bytes.saturating_mul(2).saturating_add(4096)
    }

    /// The most a peer RPC body may hold: a message batch (a few MiB, or
    /// one append carrying one of the largest values) or a snapshot chunk.
    pub fn peer_body_limit(&self) -> usize {
        let largest_append = self
            .max_value_bytes
            .saturating_add(self.max_key_bytes)
            .saturating_mul(2)
            .saturating_add(2 << 20);
        (64 << 20)
            .max(largest_append)
            .max(self.snapshot_chunk_bytes.saturating_add(64 << 10))
    }

    /// Every member's id, this node included, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.peers.keys().copied().collect();
        ids.push(self.id);
        ids.sort_unstable();
        ids
    }
}

impl Args {
    /// Validates the flags.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError("--node-id must be a non-zero integer".into()));
        }
        let port = match self.port {
            Some(p) => p,
            None => u16::try_from(3000 + self.node_id).map_err(|_| {
                ConfigError(format!(
                    "--port is required: the default 3000+{} is not a port",
                    self.node_id
                ))
            })?,
        };
        let tls = match (
            self.cert_file,
            self.key_file,
            self.peer_cert_file,
            self.peer_key_file,
            self.peer_trusted_ca_file,
        ) {
            (None, None, None, None, None) => None,
            (Some(cert), Some(key), Some(peer_cert), Some(peer_key), Some(peer_ca)) => {
                Some(crate::tls::TlsFiles {
                    cert,
                    key,
                    client_ca: self.trusted_ca_file,
                    peer_cert,
                    peer_key,
                    peer_ca,
                })
            }
            _ => {
                return Err(ConfigError(
                    "TLS needs --cert-file and --key-file, and (the listener serves members \
                     too) --peer-cert-file, --peer-key-file and --peer-trusted-ca-file"
                        .into(),
                ))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut peers = BTreeMap::new();
        let peers_given = !self.peers.is_empty();
        let join = self
            .join
            .map(|u| normalize_url(&u))
            .transpose()
            .map_err(|e| ConfigError(format!("--join: {e}")))?;
        let mut advertise_url = self
            .advertise_url
            .map(|u| normalize_url(&u))
            .transpose()
            .map_err(ConfigError)?;
        if let Some(u) = &join {
            check_scheme("--join", u, tls.is_some())?;
        }
        if let Some(u) = &advertise_url {
            check_scheme("--advertise-url", u, tls.is_some())?;
        }
        for p in self.peers {
            let p = p.resolve(scheme).map_err(ConfigError)?;
            check_scheme("--peers", &p.url, tls.is_some())?;
            if p.id == self.node_id {
                // The same list on every member: our own entry names our URL.
                // It must be where this node listens (or what it advertises):
                // otherwise the others would send our traffic to another
                // member's port.
                match &advertise_url {
                    Some(adv) if *adv != p.url => {
                        return Err(ConfigError(format!(
                            "--peers names this node ({}) at {}, but --advertise-url is {adv}",
                            p.id, p.url
                        )));
                    }
                    Some(_) => {}
                    None => {
                        // Port 0 binds any port: nothing to compare yet.
                        if port != 0 && url_port(&p.url) != port {
                            return Err(ConfigError(format!(
                                "--peers names this node ({}) at {}, but it listens on port \
                                 {port}; fix the list or give --advertise-url",
                                p.id, p.url
                            )));
                        }
                        advertise_url = Some(p.url);
                    }
                }
                continue;
            }
            if let Some(old) = peers.insert(p.id, p.url.clone()) {
                if old != p.url {
                    return Err(ConfigError(format!(
                        "--peers names node {} twice ({old} and {})",
                        p.id, p.url
                    )));
                }
            }
        }
        if self.tick_ms == 0 {
            return Err(ConfigError("--tick-ms must be at least 1".into()));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError(
                "need 1 <= --heartbeat-ticks < --election-ticks".into(),
            ));
        }
        if !(1 << 10..=64 << 20).contains(&self.snapshot_chunk_bytes) {
            return Err(ConfigError(
                "--snapshot-chunk-bytes must be between 1024 and 67108864".into(),
            ));
        }
        if self.idle_timeout_ms < 100 {
            return Err(ConfigError("--idle-timeout-ms must be at least 100".into()));
        }
        if self.max_connections < crate::net::connection_limit::MIN_CONNECTIONS {
            return Err(ConfigError(format!(
                "--max-connections must be at least {} ({} are kept for peers)",
                crate::net::connection_limit::MIN_CONNECTIONS,
                crate::net::connection_limit::PEER_RESERVE
            )));
        }
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 {
            return Err(ConfigError(
                "--max-key-bytes and --max-value-bytes must be positive".into(),
            ));
        }
        let cluster_token = match (self.cluster_token, self.cluster_token_file) {
            (Some(t), _) => Some(t),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).map_err(|e| {
                ConfigError(format!(
                    "cannot read --cluster-token-file {}: {e}",
                    path.display()
                ))
            })?),
            (None, None) => None,
        };
        let cluster_token = match cluster_token.map(|t| t.trim().to_string()) {
            Some(t) if t.is_empty() => {
                return Err(ConfigError("the cluster token must not be empty".into()))
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ConfigError(
                    "the cluster token must be printable ASCII without spaces".into(),
                ))
            }
            t => t,
        };
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("./data/node-{}", self.node_id)));
        Ok(Settings {
            id: self.node_id,
            host: self.host,
            port,
            advertise_url,
            peers,
            peers_given,
            join,
            force_new_cluster: self.force_new_cluster,
            restore: self.restore,
            data_dir,
            sync: !self.no_fsync,
            segment_bytes: self.segment_bytes.max(4096),
            tick: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            promote_lag: self.promote_lag,
            promote_after_ticks: self.promote_after_ms.div_ceil(self.tick_ms).max(1),
            snapshot_every: self.snapshot_every,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            cluster_token,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            election_wait: Duration::from_millis(self.election_wait_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            max_connections: self.max_connections,
            web_dir: self.web_dir,
            test_hooks: self.enable_test_hooks,
            tls,
            host_whitelist: self
                .host_whitelist
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["raft-kv-server"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .into_settings()
            .map_err(|e| e.0)
    }

    #[test]
    fn seed_style_peers() {
        let s = args(&["--node-id", "1", "--port", "3001", "--peers", "2,3"]).unwrap();
        assert_eq!(s.port, 3001);
        assert_eq!(s.peers[&2], "http://127.0.0.1:3002");
        assert_eq!(s.peers[&3], "http://127.0.0.1:3003");
        assert_eq!(s.members(), [1, 2, 3]);
        assert_eq!(s.data_dir, PathBuf::from("./data/node-1"));
        assert!(s.sync);
    }

    #[test]
    fn url_peers_and_own_entry() {
        let s = args(&[
            "--node-id",
            "2",
            "--port",
            "4000",
            "--peers",
            "1=http://10.0.0.1:4000/,2=http://10.0.0.2:4000,3=http://h:1",
        ])
        .unwrap();
        assert_eq!(s.port, 4000);
        assert_eq!(s.peers.len(), 2);
        assert_eq!(s.peers[&1], "http://10.0.0.1:4000");
        assert_eq!(s.advertise_url.as_deref(), Some("http://10.0.0.2:4000"));
    }

    #[test]
    fn tls_flags_make_seed_peers_https() {
        let tls = [
            "--cert-file",
            "c",
            "--key-file",
            "k",
            "--peer-cert-file",
            "pc",
            "--peer-key-file",
            "pk",
            "--peer-trusted-ca-file",
            "ca",
        ];
        let mut a = vec!["--node-id", "1", "--port", "3001", "--peers", "2,3"];
        a.extend_from_slice(&tls);
        let s = args(&a).unwrap();
        assert_eq!(s.peers[&2], "https://127.0.0.1:3002");
        assert!(s.tls.is_some());
        let mut a = vec!["--node-id", "1", "--peers", "2=http://a:1"];
        a.extend_from_slice(&tls);
        assert!(args(&a).unwrap_err().contains("use https://"));
        let mut a = vec!["--node-id", "1", "--join", "https://a:1/"];
        a.extend_from_slice(&tls);
        assert_eq!(args(&a).unwrap().join.as_deref(), Some("https://a:1"));
    }

    #[test]
    fn no_peers_is_single_node() {
        let s = args(&["--node-id", "7"]).unwrap();
        assert!(s.peers.is_empty());
        assert_eq!(s.members(), [7]);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(args(&["--node-id", "0"]).is_err());
        assert!(args(&["--node-id", "1", "--peers", "x"]).is_err());
        assert!(args(&["--node-id", "1", "--peers", "2=ftp://a"]).is_err());
        // https needs the TLS flags; with them, http is refused.
        assert!(args(&["--node-id", "1", "--peers", "2=https://a:1"]).is_err());
        assert!(args(&["--node-id", "1", "--cert-file", "c"]).is_err());
        assert!(args(&["--node-id", "1", "--cert-file", "c", "--key-file", "k"]).is_err());
        assert!(args(&["--node-id", "1", "--peers", "0"]).is_err());
        assert!(args(&["--node-id", "1", "--idle-timeout-ms", "10"]).is_err());
        assert!(args(&["--node-id", "1", "--heartbeat-ticks", "10"]).is_err());
        // Our own entry in --peers must be where we listen.
        let e = args(&[
            "--node-id",
            "3",
            "--port",
            "3003",
            "--peers",
            "1=http://127.0.0.1:3001,3=http://127.0.0.1:3002",
        ])
        .unwrap_err();
        assert!(e.contains("listens on port 3003"), "{e}");
        let ok = args(&[
            "--node-id",
            "3",
            "--port",
            "3003",
            "--peers",
            "1=http://127.0.0.1:3001,3=http://127.0.0.1:3003",
        ])
        .unwrap();
        assert_eq!(ok.advertise_url.as_deref(), Some("http://127.0.0.1:3003"));
        let e = args(&[
            "--node-id",
            "3",
            "--advertise-url",
            "http://10.0.0.3:80",
            "--peers",
            "3=http://10.0.0.3:3003",
        ])
        .unwrap_err();
        assert!(e.contains("--advertise-url is"), "{e}");
        assert!(args(&["--node-id", "1", "--cluster-token", " "]).is_err());
        assert!(args(&["--node-id", "1", "--peers", "2=http://a:1,2=http://b:1"]).is_err());
    }
}
