//! etcd v3 through its HTTP/JSON gateway (the grpc-gateway on the client
//! port): `POST /v3/kv/put` and `POST /v3/kv/range`, keys and values in
//! base64. Any member serves any request (followers forward writes and
//! linearizable reads to the leader), so no leader discovery: requests are
//! spread over the endpoints given, one endpoint per worker.

use reqwest::Url;

use super::stats::Outcome;
use super::target::send;
use super::workload::Op;
use crate::client::base;

/// An etcd cluster reached through its members' client URLs.
#[derive(Clone, Debug)]
pub struct Etcd {
    put_urls: Vec<Url>,
    range_urls: Vec<Url>,
}

impl Etcd {
    /// The target for `endpoints` (at least one).
    pub fn new(endpoints: &[Url]) -> Etcd {
        let join = |u: &Url, path: &str| {
            let mut url = u.clone();
            url.set_path(path);
            url.set_query(None);
            url
        };
        Etcd {
            put_urls: endpoints.iter().map(|u| join(u, "/v3/kv/put")).collect(),
            range_urls: endpoints.iter().map(|u| join(u, "/v3/kv/range")).collect(),
        }
    }

    /// One line saying where the load goes.
    pub fn describe(&self) -> String {
        let members: Vec<String> = self
            .put_urls
            .iter()
            .map(|u| {
                let mut u = u.clone();
                u.set_path("");
                base(&u)
            })
            .collect();
        format!("etcd members {} (HTTP/JSON gateway)", members.join(", "))
    }

    /// The number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.put_urls.len()
    }

    /// Sends `op` to endpoint `spread` (modulo the count). `value_b64` is the
    /// value, already base64-encoded.
    pub async fn execute(
        &self,
        http: &reqwest::Client,
        op: Op,
        key: &str,
        value_b64: &[u8],
        spread: usize,
    ) -> Outcome {
        let n = spread % self.put_urls.len();
        let (url, body) = match op {
            Op::Put(_) => (&self.put_urls[n], put_body(key, value_b64)),
            Op::Get(_) => (&self.range_urls[n], range_body(key, false)),
            Op::GetStale(_) => (&self.range_urls[n], range_body(key, true)),
        };
        let request = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let (outcome, body) = send(request, op.is_read()).await;
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

    #[test]
    fn urls_point_at_the_gateway() {
        let etcd = Etcd::new(&[
            Url::parse("http://127.0.0.1:2379").unwrap(),
            Url::parse("http://127.0.0.1:22379/").unwrap(),
        ]);
        assert_eq!(
            etcd.put_urls[1].as_str(),
            "http://127.0.0.1:22379/v3/kv/put"
        );
        assert_eq!(
            etcd.range_urls[0].as_str(),
            "http://127.0.0.1:2379/v3/kv/range"
        );
        assert_eq!(etcd.endpoints(), 2);
    }

    #[test]
    fn absent_keys_are_not_found() {
        assert!(!range_found(br#"{"header":{"revision":"3"}}"#));
        assert!(range_found(
            br#"{"header":{},"kvs":[{"key":"aw==","value":"dg=="}],"count":"1"}"#
        ));
    }
}
