//! etcd v3 through its gRPC API (the `etcd-client` crate): `KV.Put` and
//! `KV.Range`, the API etcd's own tools and clients use. Built only with the
//! `etcd-grpc` feature. Like the HTTP gateway target, any member serves any
//! request, so there is no leader discovery: a closed-loop worker talks to
//! one member over its own HTTP/2 connection, chosen round-robin; the open
//! loop shares one client over every member.

use std::error::Error as _;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use reqwest::Url;
use tonic::Code;

use super::stats::{ErrorKind, Outcome};
use super::workload::Op;
use crate::client::base;
use crate::error::CliError;

/// An etcd cluster reached through its members' client URLs.
#[derive(Clone, Debug)]
pub struct EtcdGrpc {
    endpoints: Vec<String>,
}

impl EtcdGrpc {
    /// The target for `endpoints` (at least one).
    pub fn new(endpoints: &[Url]) -> EtcdGrpc {
        EtcdGrpc {
            endpoints: endpoints.iter().map(base).collect(),
        }
    }

    /// One line saying where the load goes.
    pub fn describe(&self) -> String {
        format!("etcd members {} (gRPC)", self.endpoints.join(", "))
    }

    /// The number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// A client of member `member` (modulo the count), or of every member
    /// (requests balanced over them) when `None`. Connects lazily: the first
    /// request makes the connection, so an unreachable member shows up as
    /// failed requests, counted by kind like any other.
    pub async fn connect(
        &self,
        member: Option<usize>,
        timeout: Duration,
    ) -> Result<KvClient, CliError> {
        let endpoints = match member {
            Some(n) => vec![self.endpoints[n % self.endpoints.len()].clone()],
            None => self.endpoints.clone(),
        };
        let options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(1)));
        let client = Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| {
                CliError::Usage(format!(
                    "cannot set up the etcd gRPC client for {}: {e}",
                    endpoints.join(", ")
                ))
            })?;
        Ok(client.kv_client())
    }

    /// Sends `op` through `kv`. `value` is the raw value.
    pub async fn execute(kv: &mut KvClient, op: Op, key: &str, value: &[u8]) -> Outcome {
        let result = match op {
            Op::Put(_) => kv.put(key, value, None).await.map(|_| true),
            Op::Get(_) => kv.get(key, None).await.map(|r| !r.kvs().is_empty()),
            Op::GetStale(_) => kv
                .get(key, Some(GetOptions::new().with_serializable()))
                .await
                .map(|r| !r.kvs().is_empty()),
        };
        match result {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::NotFound,
            Err(etcd_client::Error::GRpcStatus(status)) => Outcome::Error(status_kind(
                status.code(),
                status.source().is_some(),
                refused(&status),
            )),
            Err(_) => Outcome::Error(ErrorKind::Transport),
        }
    }
}

/// The kind of a failed call's status. `local`: the client made the status
/// from a failure of its own (it carries the cause as its source) rather
/// than receiving it from etcd; `refused`: that cause is a refused
/// connection.
///
/// etcd's own statuses are counted as the HTTP gateway would count them (it
/// maps Unavailable to 503 and DeadlineExceeded to 504, both "unavailable";
/// Internal, Unknown, DataLoss and Unimplemented to a 5xx, "server error";
/// the rest to a 4xx, "rejected"), so the two etcd targets' error columns
/// compare.
pub fn status_kind(code: Code, local: bool, refused: bool) -> ErrorKind {
    if local {
        return match code {
            // tonic's own request timeout ends the call as Cancelled.
            Code::Cancelled | Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Unavailable if refused => ErrorKind::Connect,
            _ => ErrorKind::Transport,
        };
    }
    match code {
        Code::Unavailable | Code::DeadlineExceeded => ErrorKind::Unavailable,
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented => {
            ErrorKind::ServerError
        }
        _ => ErrorKind::Rejected,
    }
}

/// Whether a refused connection is among the causes of `err`.
fn refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = err.source();
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_statuses_count_as_the_gateway_counts_them() {
        for (code, kind) in [
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::DeadlineExceeded, ErrorKind::Unavailable),
            (Code::Internal, ErrorKind::ServerError),
            (Code::Unknown, ErrorKind::ServerError),
            (Code::InvalidArgument, ErrorKind::Rejected),
            (Code::ResourceExhausted, ErrorKind::Rejected),
            (Code::FailedPrecondition, ErrorKind::Rejected),
        ] {
            assert_eq!(status_kind(code, false, false), kind, "{code:?}");
        }
    }

    #[test]
    fn local_failures_are_transport_kinds() {
        assert_eq!(
            status_kind(Code::Cancelled, true, false),
            ErrorKind::Timeout
        );
        assert_eq!(
            status_kind(Code::Unavailable, true, true),
            ErrorKind::Connect
        );
        assert_eq!(
            status_kind(Code::Unavailable, true, false),
            ErrorKind::Transport
        );
        assert_eq!(
            status_kind(Code::Unknown, true, false),
            ErrorKind::Transport
        );
    }

    #[test]
    fn refused_connections_are_found_in_the_cause_chain() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        #[derive(Debug)]
        struct Outer(Wrapper);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("status")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(refused(&Outer(Wrapper(io(
            std::io::ErrorKind::ConnectionRefused
        )))));
        assert!(!refused(&Outer(Wrapper(io(
            std::io::ErrorKind::ConnectionReset
        )))));
    }

    #[test]
    fn endpoints_keep_their_order() {
        let t = EtcdGrpc::new(&[
            Url::parse("http://127.0.0.1:2379/").unwrap(),
            Url::parse("http://127.0.0.1:22379").unwrap(),
        ]);
        assert_eq!(
            t.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!(t.endpoints(), 2);
        assert_eq!(
            t.describe(),
            "etcd members http://127.0.0.1:2379, http://127.0.0.1:22379 (gRPC)"
        );
    }
}
