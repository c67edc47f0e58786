//! The system under test: raft-kv through its REST API, or etcd through its
//! HTTP/JSON gateway (see [`super::etcd`]) or, with the `etcd-grpc` feature,
//! its gRPC API (see `super::etcd_grpc`).

use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use raft_core::wire::{PutRequest, SessionResponse, HEADER_CLIENT_ID, HEADER_CLIENT_SEQ};
use raft_core::{NodeId, Role};
use reqwest::{StatusCode, Url};

use super::etcd::{self, Etcd};
#[cfg(feature = "etcd-grpc")]
use super::etcd_grpc::EtcdGrpc;
use super::http::{key_path, Call, Endpoint, HttpClient};
use super::stats::{ErrorKind, Outcome};
use super::workload::Op;
use crate::cli::parse_server_url;
use crate::client::{base, is_unavailable, ApiClient};
use crate::error::CliError;

/// Which store to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// A raft-kv cluster through its REST API.
    RaftKv,
    /// An etcd v3 cluster through its HTTP/JSON gateway
    /// (`--etcd-endpoints`).
    Etcd,
    /// An etcd v3 cluster through its gRPC API (`--etcd-endpoints`); needs a
    /// build with the `etcd-grpc` feature.
    EtcdGrpc,
}

impl TargetKind {
    /// Whether the target is reached through `--etcd-endpoints`.
    pub fn is_etcd(self) -> bool {
        matches!(self, TargetKind::Etcd | TargetKind::EtcdGrpc)
    }
}

/// A client session for duplicate detection: registered with the cluster
/// (`POST /sessions`) before its first write, whose writes then carry
/// `(id, seq)` with `seq` counting up; a session has at most one write in
/// flight. A write refused because the cluster forgot the session (409)
/// counts as rejected, and the next write registers a new one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Session {
    /// The client id the cluster gave it (0: not registered yet).
    pub id: u64,
    /// The last sequence number used.
    pub seq: u64,
}

impl Session {
    /// A session not registered yet.
    pub fn unregistered() -> Session {
        Session::default()
    }
}

/// The store being loaded, with the addresses found at start.
#[derive(Clone, Debug)]
pub enum Target {
    /// A raft-kv cluster.
    RaftKv(RaftKv),
    /// An etcd cluster through its HTTP/JSON gateway.
    Etcd(Etcd),
    /// An etcd cluster through its gRPC API.
    #[cfg(feature = "etcd-grpc")]
    EtcdGrpc(EtcdGrpc),
}

/// How a worker's requests reach the target: the bench's HTTP client
/// (raft-kv and the etcd gateway) or an etcd gRPC client.
#[derive(Clone)]
pub enum Conn {
    /// An HTTP client with its own keep-alive connections.
    Http(HttpClient),
    /// An etcd KV client over its own HTTP/2 channel (boxed: it is a few
    /// hundred bytes, an HTTP client one pointer).
    #[cfg(feature = "etcd-grpc")]
    Grpc(Box<etcd_client::KvClient>),
}

/// Which connection a worker gets.
#[derive(Clone, Copy, Debug)]
// The worker's number only picks an etcd member for gRPC.
#[cfg_attr(not(feature = "etcd-grpc"), allow(dead_code))]
pub enum ConnFor {
    /// Closed-loop worker number `n`: one connection (to one member of
    /// etcd, round-robin).
    Worker(usize),
    /// The open loop's shared client: up to this many connections at once
    /// (HTTP; gRPC multiplexes one connection per member).
    Shared(usize),
}

impl Target {
    /// Finds the cluster's leader and members through `servers`.
    pub async fn discover(
        kind: TargetKind,
        servers: Vec<Url>,
        timeout: Duration,
        tls: crate::tls::Tls,
    ) -> Result<Target, CliError> {
        match kind {
            TargetKind::RaftKv => RaftKv::discover(servers, timeout, tls)
                .await
                .map(Target::RaftKv),
            TargetKind::Etcd | TargetKind::EtcdGrpc if servers.is_empty() => Err(CliError::Usage(
                "an etcd target needs --etcd-endpoints".to_string(),
            )),
            TargetKind::Etcd => Ok(Target::Etcd(Etcd::new(&servers))),
            #[cfg(feature = "etcd-grpc")]
            TargetKind::EtcdGrpc => Ok(Target::EtcdGrpc(EtcdGrpc::new(&servers))),
            #[cfg(not(feature = "etcd-grpc"))]
            TargetKind::EtcdGrpc => Err(CliError::Usage(
                "--target etcd-grpc needs a raft-kv-client built with the etcd-grpc feature \
                 (cargo build --release -p raft-kv-client --features etcd-grpc; needs protoc)"
                    .to_string(),
            )),
        }
    }

    /// A connection for `who`; every request has `timeout`.
    pub async fn connect(&self, who: ConnFor, timeout: Duration) -> Result<Conn, CliError> {
        #[cfg(feature = "etcd-grpc")]
        if let Target::EtcdGrpc(t) = self {
            let member = match who {
                ConnFor::Worker(n) => Some(n),
                ConnFor::Shared(_) => None,
            };
            return t
                .connect(member, timeout)
                .await
                .map(|kv| Conn::Grpc(Box::new(kv)));
        }
        let idle = match who {
            ConnFor::Worker(_) => 1,
            ConnFor::Shared(n) => n,
        };
        let tls = match self {
            Target::RaftKv(t) => t.tls.clone(),
            _ => None,
        };
        Ok(Conn::Http(HttpClient::new(idle, timeout, tls)))
    }

    /// The name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::RaftKv(_) => "raft-kv",
            Target::Etcd(_) => "etcd",
            #[cfg(feature = "etcd-grpc")]
            Target::EtcdGrpc(_) => "etcd-grpc",
        }
    }

    /// One line saying where the load goes.
    pub fn describe(&self) -> String {
        match self {
            Target::RaftKv(t) => {
                let members: Vec<String> = t.members.iter().map(base).collect();
                format!(
                    "leader {} at {}; members {}",
                    t.leader_id,
                    base(&t.leader),
                    members.join(", ")
                )
            }
            Target::Etcd(t) => t.describe(),
            #[cfg(feature = "etcd-grpc")]
            Target::EtcdGrpc(t) => t.describe(),
        }
    }

    /// How many distinct endpoints stale reads are spread over.
    pub fn read_endpoints(&self) -> usize {
        match self {
            Target::RaftKv(t) => t.members.len(),
            Target::Etcd(t) => t.endpoints(),
            #[cfg(feature = "etcd-grpc")]
            Target::EtcdGrpc(t) => t.endpoints(),
        }
    }

    /// Sends `op` through `conn` (made by [`Target::connect`]). `spread`
    /// picks the member for stale reads (HTTP); `body` is the encoded write
    /// body.
    pub async fn execute(
        &self,
        conn: &mut Conn,
        op: Op,
        key: &str,
        body: &Bytes,
        spread: usize,
        session: &mut Session,
    ) -> Outcome {
        match (self, conn) {
            (Target::RaftKv(t), Conn::Http(http)) => {
                t.execute(http, op, key, body, spread, session).await
            }
            (Target::Etcd(t), Conn::Http(http)) => t.execute(http, op, key, body, spread).await,
            #[cfg(feature = "etcd-grpc")]
            (Target::EtcdGrpc(_), Conn::Grpc(kv)) => EtcdGrpc::execute(kv, op, key, body).await,
            // A connection made for another target: never, as `run` makes
            // them all with `connect`.
            #[cfg(feature = "etcd-grpc")]
            _ => Outcome::Error(ErrorKind::Transport),
        }
    }

    /// The write body for `value`.
    pub fn encode_value(&self, value: &str) -> Vec<u8> {
        match self {
            Target::RaftKv(_) => serde_json::to_vec(&PutRequest {
                value: value.to_string(),
            })
            .unwrap_or_default(),
            // The put body is built per key; the value is encoded once.
            Target::Etcd(_) => etcd::base64(value.as_bytes()),
            #[cfg(feature = "etcd-grpc")]
            Target::EtcdGrpc(_) => value.as_bytes().to_vec(),
        }
    }
}

/// A raft-kv cluster: writes and linearizable reads go to the leader found at
/// start (no forward), stale reads are spread over the members that were
/// reachable at start.
#[derive(Clone, Debug)]
pub struct RaftKv {
    leader_id: NodeId,
    leader: Url,
    members: Vec<Url>,
    leader_endpoint: Endpoint,
    member_endpoints: Vec<Endpoint>,
    /// For https members (`--cacert`).
    tls: crate::tls::Tls,
}

impl RaftKv {
    async fn discover(
        servers: Vec<Url>,
        timeout: Duration,
        tls: crate::tls::Tls,
    ) -> Result<RaftKv, CliError> {
        let mut client = ApiClient::new(servers.clone(), timeout, None, tls.clone())?;
        let started = std::time::Instant::now();
        loop {
            if let Some(mut found) = Self::try_discover(&mut client, &servers).await? {
                found.tls = tls;
                return Ok(found);
            }
            if started.elapsed() + Duration::from_millis(200) >= timeout {
                return Err(CliError::Unavailable(format!(
                    "no leader found within {}",
                    crate::client::format_duration(timeout)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One look at `/cluster` (or `/status` when the server has no
    /// `/cluster`): the leader and members when a leader is known.
    async fn try_discover(
        client: &mut ApiClient,
        servers: &[Url],
    ) -> Result<Option<RaftKv>, CliError> {
        match client.cluster().await {
            Ok(cluster) => {
                // Stale reads go to the members that answered the leader.
                let members: Vec<Url> = cluster
                    .members
                    .iter()
                    .filter(|m| m.status.is_some())
                    .filter_map(|m| parse_server_url(&m.url).ok())
                    .collect();
                let leader = cluster.leader.and_then(|id| {
                    let m = cluster.members.iter().find(|m| m.id == id)?;
                    Some((id, parse_server_url(&m.url).ok()?))
                });
                Ok(leader.map(|(leader_id, leader)| {
                    let members = if members.is_empty() {
                        vec![leader.clone()]
                    } else {
                        members
                    };
                    RaftKv::new(leader_id, leader, members)
                }))
            }
            Err(CliError::Server { status: 404, .. }) => {
                let status = client.status().await?;
                if status.role != Role::Leader {
                    return Ok(None);
                }
                Ok(Some(RaftKv::new(
                    status.id,
                    parse_server_url(&status.url).map_err(CliError::Usage)?,
                    servers.to_vec(),
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn new(leader_id: NodeId, leader: Url, members: Vec<Url>) -> RaftKv {
        RaftKv {
            leader_id,
            leader_endpoint: Endpoint::of(&leader),
            member_endpoints: members.iter().map(Endpoint::of).collect(),
            leader,
            members,
            tls: None,
        }
    }

    async fn execute(
        &self,
        http: &HttpClient,
        op: Op,
        key: &str,
        body: &Bytes,
        spread: usize,
        session: &mut Session,
    ) -> Outcome {
        let ids;
        let call = match op {
            Op::Get(_) => Call {
                method: Method::GET,
                endpoint: &self.leader_endpoint,
                path: key_path(key, ""),
                headers: &[],
                json: None,
            },
            Op::GetStale(_) => Call {
                method: Method::GET,
                endpoint: &self.member_endpoints[spread % self.member_endpoints.len()],
                path: key_path(key, "?consistency=stale"),
                headers: &[],
                json: None,
            },
            Op::Put(_) => {
                if session.id == 0 {
                    match self.register(http).await {
                        Ok(id) => *session = Session { id, seq: 0 },
                        Err(outcome) => return outcome,
                    }
                }
                session.seq += 1;
                ids = [
                    (
                        HeaderName::from_static(HEADER_CLIENT_ID),
                        HeaderValue::from(session.id),
                    ),
                    (
                        HeaderName::from_static(HEADER_CLIENT_SEQ),
                        HeaderValue::from(session.seq),
                    ),
                ];
                Call {
                    method: Method::PUT,
                    endpoint: &self.leader_endpoint,
                    path: key_path(key, ""),
                    headers: &ids,
                    json: Some(body.clone()),
                }
            }
        };
        let outcome = send(http, call, op.is_read()).await.0;
        if op.is_read() {
            return outcome;
        }
        if outcome == Outcome::Error(ErrorKind::Rejected) {
            // Most likely 409: the session was forgotten. Never resent:
            // the next write registers anew.
            *session = Session::unregistered();
        }
        outcome
    }

    /// Registers a session at the leader; its client id, or the outcome
    /// to record for the write that needed it.
    async fn register(&self, http: &HttpClient) -> Result<u64, Outcome> {
        let call = Call {
            method: Method::POST,
            endpoint: &self.leader_endpoint,
            path: "/sessions".to_string(),
            headers: &[],
            json: None,
        };
        match send(http, call, false).await {
            (Outcome::Ok, body) => serde_json::from_slice::<SessionResponse>(&body)
                .map(|s| s.client_id)
                .map_err(|_| Outcome::Error(ErrorKind::ServerError)),
            (outcome, _) => Err(outcome),
        }
    }
}

/// Sends `call` and reads the whole answer (so that the connection can be
/// reused): the outcome by status, and the answer's body (empty after a
/// transport failure).
pub async fn send(http: &HttpClient, call: Call<'_>, is_read: bool) -> (Outcome, Bytes) {
    match http.send(call).await {
        Ok((status, body)) => (classify(status, is_read), body),
        Err(kind) => (Outcome::Error(kind), Bytes::new()),
    }
}

/// The outcome of an answer with `status`.
fn classify(status: StatusCode, is_read: bool) -> Outcome {
    if status.is_success() {
        Outcome::Ok
    } else if status == StatusCode::NOT_FOUND && is_read {
        Outcome::NotFound
    } else if is_unavailable(status) {
        Outcome::Error(ErrorKind::Unavailable)
    } else if status.is_client_error() {
        Outcome::Error(ErrorKind::Rejected)
    } else {
        Outcome::Error(ErrorKind::ServerError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(classify(StatusCode::OK, false), Outcome::Ok);
        assert_eq!(classify(StatusCode::NOT_FOUND, true), Outcome::NotFound);
        assert_eq!(
            classify(StatusCode::NOT_FOUND, false),
            Outcome::Error(ErrorKind::Rejected)
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, true),
            Outcome::Error(ErrorKind::Unavailable)
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, false),
            Outcome::Error(ErrorKind::ServerError)
        );
    }
}
