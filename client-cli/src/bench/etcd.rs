//! etcd v3 through its HTTP/JSON gateway (the grpc-gateway on the client
//! port): `POST /v3/kv/put` and `POST /v3/kv/range`, keys and values in
//! base64. Any member serves any request (followers forward writes and
//! linearizable reads to the leader), so no leader discovery: requests are
//! spread over the endpoints given, one endpoint per worker.

use bytes::Bytes;
use hyper::Method;
use reqwest::Url;

use super::http::{Call, Endpoint, HttpClient};
use super::stats::Outcome;
use super::target::send;
use super::workload::Op;
use crate::client::base;

/// An etcd cluster reached through its members' client URLs.
#[derive(Clone, Debug)]
pub struct Etcd {
    members: Vec<Url>,
    endpoints: Vec<Endpoint>,
}

impl Etcd {
    /// The target for `endpoints` (at least one).
    pub fn new(endpoints: &[Url]) -> Etcd {
        Etcd {
            members: endpoints.to_vec(),
            endpoints: endpoints.iter().map(Endpoint::of).collect(),
        }
    }

    /// One line saying where the load goes.
    pub fn describe(&self) -> String {
        let members: Vec<String> = self.members.iter().map(base).collect();
        format!("etcd members {} (HTTP/JSON gateway)", members.join(", "))
    }

    /// The number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Sends `op` to endpoint `spread` (modulo the count). `value_b64` is the
    /// value, already base64-encoded.
    pub async fn execute(
        &self,
        http: &HttpClient,
        op: Op,
        key: &str,
        value_b64: &[u8],
        spread: usize,
    ) -> Outcome {
        let (path, body) = match op {
            Op::Put(_) => ("/v3/kv/put", put_body(key, value_b64)),
            Op::Get(_) => ("/v3/kv/range", range_body(key, false)),
            Op::GetStale(_) => ("/v3/kv/range", range_body(key, true)),
        };
        let call = Call {
            method: Method::POST,
            endpoint: &self.endpoints[spread % self.endpoints.len()],
            path: path.to_string(),
            headers: &[],
            json: Some(Bytes::from(body)),
        };
        let (outcome, body) = send(http, call, op.is_read()).await;
        if outcome == Outcome::Ok && op.is_read() && !range_found(&body) {
            return Outcome::NotFound;
        }
        outcome
    }
}

/// The body of `POST /v3/kv/put`.
pub fn put_body(key: &str, value_b64: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + key.len() * 2 + value_b64.len());
    body.extend_from_slice(b"{\"key\":\"");
    base64_into(key.as_bytes(), &mut body);
    body.extend_from_slice(b"\",\"value\":\"");
    body.extend_from_slice(value_b64);
    body.extend_from_slice(b"\"}");
    body
}

/// The body of `POST /v3/kv/range` for one key; `serializable` asks for a
/// local (stale) read.
pub fn range_body(key: &str, serializable: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(40 + key.len() * 2);
    body.extend_from_slice(b"{\"key\":\"");
    base64_into(key.as_bytes(), &mut body);
    body.extend_from_slice(b"\"");
    if serializable {
        body.extend_from_slice(b",\"serializable\":true");
    }
    body.extend_from_slice(b"}");
    body
}

/// Whether a range answer holds a key-value (an absent key's answer has no
/// `kvs` field).
pub fn range_found(answer: &[u8]) -> bool {
    answer.windows(5).any(|w| w == b"\"kvs\"")
}

/// `data` in standard base64 with padding (RFC 4648), as etcd's gateway
/// expects for `bytes` fields.
pub fn base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    base64_into(data, &mut out);
    out
}

fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend([18, 12, 6, 0].map(|s| ALPHABET[(n >> s & 63) as usize]));
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend([
                ALPHABET[(n >> 18) as usize],
                ALPHABET[(n >> 12 & 63) as usize],
            ]);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([18, 12, 6].map(|s| ALPHABET[(n >> s & 63) as usize]));
            out.push(b'=');
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(text(base64(plain.as_bytes())), encoded, "{plain:?}");
        }
        assert_eq!(text(base64(&[0xfb, 0xff, 0xfe])), "+//+");
    }

    #[test]
    fn put_body_is_the_gateway_json() {
        let body = put_body("bench-0001", &base64(b"hello"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key": "YmVuY2gtMDAwMQ==", "value": "aGVsbG8="})
        );
    }

    #[test]
    fn range_bodies_are_linearizable_or_serializable() {
        let v: serde_json::Value = serde_json::from_slice(&range_body("k", false)).unwrap();
        assert_eq!(v, serde_json::json!({"key": "aw=="}));
        let v: serde_json::Value = serde_json::from_slice(&range_body("k", true)).unwrap();
        assert_eq!(v, serde_json::json!({"key": "aw==", "serializable": true}));
    }

    #[tokio::test]
    async fn requests_go_to_the_gateway_of_the_chosen_member() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut seen = Vec::new();
            for answer in [&br#"{"header":{}}"#[..], br#"{"kvs":[]}"#] {
                let request = super::super::http::read_request(&mut s, &mut buf).await;
                seen.push(String::from_utf8_lossy(&request).to_string());
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    answer.len()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(answer).await.unwrap();
            }
            seen
        });
        // Member 1 (counting from 0) is the one listening.
        let etcd = Etcd::new(&[
            Url::parse("http://127.0.0.1:1").unwrap(),
            Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
        ]);
        assert_eq!(etcd.endpoints(), 2);
        let http = HttpClient::new(1, std::time::Duration::from_secs(5), None);
        let put = etcd.execute(&http, Op::Put(0), "k", b"dg==", 1).await;
        assert_eq!(put, Outcome::Ok);
        let get = etcd.execute(&http, Op::Get(0), "k", b"", 3).await;
        assert_eq!(get, Outcome::Ok);
        let seen = server.await.unwrap();
        assert!(
            seen[0].starts_with("POST /v3/kv/put HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with(r#"{"key":"aw==","value":"dg=="}"#),
            "{}",
            seen[0]
        );
        assert!(
            seen[1].starts_with("POST /v3/kv/range HTTP/1.1\r\n"),
            "{}",
            seen[1]
        );
        assert!(seen[1].ends_with(r#"{"key":"aw=="}"#), "{}", seen[1]);
    }

    #[test]
    fn absent_keys_are_not_found() {
        assert!(!range_found(br#"{"header":{"revision":"3"}}"#));
        assert!(range_found(
            br#"{"header":{},"kvs":[{"key":"aw==","value":"dg=="}],"count":"1"}"#
        ));
    }
}
