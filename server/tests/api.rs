//! The REST API's contract against a real single-node server: every bad
//! input gets its 4xx and a JSON `{"error": ...}` body; the peer stream,
//! the snapshot chunks and the admin endpoints are guarded by the cluster
//! token; garbage peer input is refused and counted without harming the
//! node. Conditional writes (ETag, If-Match, If-None-Match), prefix deletes
//! and list paging, on one node and through a follower.

mod support;

use std::time::Duration;

use raft_core::wire::{
    DeletePrefixResponse, ErrorBody, KeyValue, ListResponse, PeerBatch, PreconditionFailed,
    SessionResponse, SnapshotChunk, SnapshotResponse, WriteResponse,
};
use raft_core::{Message, MessageBody, SnapshotMeta};
use support::{Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-token";

async fn node_with(extra: &[&str], token: Option<&str>, hooks: bool) -> Cluster {
    let mut c = Cluster::start_with(
        1,
        ClusterOptions {
            token: token.map(str::to_string),
            test_hooks: hooks,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..ClusterOptions::default()
        },
    )
    .await;
    c.wait_for_leader(Duration::from_secs(15)).await;
    c
}

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    error_contains: &'static str,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    error_contains: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        content_type: None,
        headers: Vec::new(),
        body: Vec::new(),
        status,
        error_contains,
    }
}

impl Case {
    fn json(mut self, body: &[u8]) -> Self {
        self.content_type = Some("application/json");
        self.body = body.to_vec();
        self
    }
    fn content_type(mut self, ct: &'static str) -> Self {
        self.content_type = Some(ct);
        self
    }
    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_json_error() {
    let c = node_with(
        &["--max-key-bytes", "16", "--max-value-bytes", "64"],
        None,
        false,
    )
    .await;
    let long_key = "k".repeat(17);
    let long_value = format!(r#"{{"value":"{}"}}"#, "v".repeat(65));
    let cases = vec![
        case("malformed JSON", "PUT", "/key/a", 400, "invalid body").json(b"{\"value\":"),
        case(
            "missing value",
            "PUT",
            "/key/a",
            400,
            "missing field `value`",
        )
        .json(b"{\"val\":\"x\"}"),
        case(
            "value of the wrong type",
            "PUT",
            "/key/a",
            400,
            "expected a string",
        )
        .json(b"{\"value\":5}"),
        case("non-UTF-8 value", "PUT", "/key/a", 400, "invalid").json(b"{\"value\":\"\xff\xfe\"}"),
        case("no content type", "PUT", "/key/a", 415, "application/json")
            .body(b"{\"value\":\"x\"}"),
        case(
            "form content type",
            "PUT",
            "/key/a",
            415,
            "application/json",
        )
        .content_type("application/x-www-form-urlencoded")
        .body(b"value=x"),
        case(
            "text content type",
            "PUT",
            "/key/a",
            415,
            "application/json",
        )
        .content_type("text/plain")
        .body(b"{\"value\":\"x\"}"),
        case("empty key (PUT)", "PUT", "/key/", 400, "empty").json(b"{\"value\":\"x\"}"),
        case("empty key (GET)", "GET", "/key/", 400, "empty"),
        case("empty key (no slash)", "GET", "/key", 400, "empty"),
        case("empty key (DELETE)", "DELETE", "/key/", 400, "empty"),
        case(
            "oversized key (PUT)",
            "PUT",
            &format!("/key/{long_key}"),
            413,
            "limit is 16",
        )
        .json(b"{\"value\":\"x\"}"),
        case(
            "oversized key (GET)",
            "GET",
            &format!("/key/{long_key}"),
            413,
            "limit is 16",
        ),
        case("oversized value", "PUT", "/key/a", 413, "limit is 64").json(long_value.as_bytes()),
        case("body over the limit", "PUT", "/key/a", 413, "limit")
            .json(format!(r#"{{"value":"{}"}}"#, "v".repeat(10_000)).as_bytes()),
        case("non-UTF-8 key", "GET", "/key/%FF%FE", 400, "UTF-8"),
        case("unknown route", "GET", "/nope", 404, "no route"),
        case(
            "unknown route (POST)",
            "POST",
            "/nope/deeper",
            404,
            "no route",
        ),
        case("wrong method", "POST", "/key/a", 405, "not allowed"),
        case(
            "wrong method on status",
            "DELETE",
            "/status",
            405,
            "not allowed",
        ),
        case("bad limit", "GET", "/keys?limit=many", 400, "limit"),
        case(
            "bad consistency",
            "GET",
            "/key/a?consistency=eventual",
            400,
            "consistency",
        ),
        case("client id without seq", "PUT", "/key/a", 400, "go together")
            .json(b"{\"value\":\"x\"}")
            .header("x-raft-client-id", "7"),
        case("zero client id", "PUT", "/key/a", 400, "non-zero")
            .json(b"{\"value\":\"x\"}")
            .header("x-raft-client-id", "0")
            .header("x-raft-client-seq", "1"),
        case(
            "non-numeric client seq",
            "DELETE",
            "/key/a",
            400,
            "unsigned integer",
        )
        .header("x-raft-client-id", "7")
        .header("x-raft-client-seq", "first"),
        case(
            "test hooks disabled",
            "POST",
            "/test/partition",
            403,
            "--enable-test-hooks",
        )
        .json(b"{\"drop_peers\":[2]}"),
        case(
            "transfer without a body",
            "POST",
            "/admin/transfer-leader",
            415,
            "application/json",
        ),
        case(
            "transfer to a stranger",
            "POST",
            "/admin/transfer-leader",
            400,
            "not a member",
        )
        .json(b"{\"to\":9}"),
    ];
    let mut failures = Vec::new();
    for case in cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut req = c
            .http()
            .request(method, format!("{}{}", c.url(1), case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &case.headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let ok = status == case.status
            && ct.starts_with("application/json")
            && body
                .as_ref()
                .is_some_and(|b| b.error.contains(case.error_contains));
        if !ok {
            failures.push(format!(
                "{}: {} {} -> {status} ({ct}) {text}; expected {} with error containing {:?}",
                case.what, case.method, case.path, case.status, case.error_contains
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The node is fine after all that.
    assert_eq!(c.put(1, "a", "ok").await.status(), 200);
}

/// A body larger than the limit sent without a length (chunked) is cut off
/// at the limit, and a declared length over the limit is refused before
/// the body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_without_buffering() {
    let c = node_with(&["--max-value-bytes", "64"], None, false).await;
    // Declared length far over the limit, no body sent at all: the answer
    // comes back without the server waiting for the body.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port(1)))
        .await
        .unwrap();
    s.write_all(
        b"PUT /key/a HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 1000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/json"), "{head}");

    // Chunked, no length: cut off once past the limit.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port(1)))
        .await
        .unwrap();
    s.write_all(
        b"PUT /key/a HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b'x'; 8192];
    for _ in 0..4 {
        let _ = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("application/json"), "{head}");
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .to_lowercase()
        .replace("http/1.1", "HTTP/1.1")
}

async fn metric(c: &Cluster, name: &str) -> u64 {
    c.metric(1, name)
        .await
        .unwrap_or_else(|| panic!("no metric {name}")) as u64
}

/// A peer stream handshake, written by hand: the answer's status, its body
/// (empty after a 101) and the connection.
async fn stream_handshake(
    port: u16,
    headers: &[(&str, &str)],
) -> (u16, String, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = String::from("GET /raft/stream HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte: nothing past the head may be consumed here.
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout_at(deadline, s.read(&mut b))
            .await
            .expect("no handshake answer within 5 s")
            .unwrap();
        assert_eq!(n, 1, "connection closed in the answer's head: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    if status != 101 {
        assert!(head.contains("content-type: application/json"), "{head}");
    }
    (status, String::from_utf8_lossy(&body).into_owned(), s)
}

const UPGRADE: [(&str, &str); 2] = [("connection", "upgrade"), ("upgrade", "raft-kv-peer/1")];

/// Opens a stream to node 1 as member `from` (with its identity), with
/// `token` when given.
async fn open_stream(c: &Cluster, from: u64, token: Option<&str>) -> tokio::net::TcpStream {
    let identity = c.peer_headers(from);
    let mut headers = UPGRADE.to_vec();
    headers.extend(identity.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(t) = token {
        headers.push(("x-raft-cluster-token", t));
    }
    let (status, body, s) = stream_handshake(c.port(1), &headers).await;
    assert_eq!(status, 101, "{body}");
    s
}

/// One frame: the length (u32 LE), then the bytes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Waits until the node closes `s` (a read ends with EOF or an error).
async fn assert_closed(s: &mut tokio::net::TcpStream, what: &str) {
    let mut b = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: the node wrote {n} bytes on a one-way stream"),
        Err(_) => panic!("{what}: the stream is still open after 5 s"),
    }
}

fn heartbeat(from: u64, to: u64, term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::Heartbeat {
            commit: 0,
            read_ctx: 0,
            seq: 0,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_stream_and_admin_need_the_cluster_token() {
    let c = node_with(&[], Some(TOKEN), true).await;
    let port = c.port(1);
    // Without the token (or with a wrong one): 401, whatever else is right.
    for token in [None, Some("wrong")] {
        let mut headers = UPGRADE.to_vec();
        headers.push(("x-raft-peer-id", "2"));
        if let Some(t) = token {
            headers.push(("x-raft-cluster-token", t));
        }
        let (status, body, _) = stream_handshake(port, &headers).await;
        assert_eq!(status, 401, "{body}");
        let e: ErrorBody = serde_json::from_str(&body).unwrap();
        assert!(e.error.contains("x-raft-cluster-token"), "{e:?}");
    }
    assert_eq!(metric(&c, "raft_peer_unauthorized_total").await, 2);

    // With the token: not an upgrade, no sender, no cluster identity, a
    // sender of another cluster, a sender that is not a member (this is a
    // single-node cluster) are all refused.
    let token = ("x-raft-cluster-token", TOKEN);
    let ours = c.peer_headers(1);
    let cluster_id = ours[1].1.clone();
    let mut with_token = UPGRADE.to_vec();
    with_token.push(token);
    let with_sender = |id: &'static str| {
        let mut h = with_token.clone();
        h.extend([
            ("x-raft-peer-id", id),
            ("x-raft-cluster-id", cluster_id.as_str()),
            ("x-raft-incarnation", "00000000000000aa"),
        ]);
        h
    };
    let mut anonymous = with_token.clone();
    anonymous.push(("x-raft-peer-id", "2"));
    for (what, headers, want, says) in [
        ("a plain GET", vec![token], 426, "upgrade"),
        ("no sender", with_token.clone(), 400, "x-raft-peer-id"),
        ("no cluster id", anonymous, 400, "x-raft-cluster-id"),
        ("a stranger", with_sender("2"), 403, "not a member"),
        ("itself", with_sender("1"), 403, "not a member"),
    ] {
        let (status, body, _) = stream_handshake(port, &headers).await;
        assert_eq!(status, want, "{what}: {body}");
        let e: ErrorBody = serde_json::from_str(&body).unwrap();
        assert!(e.error.contains(says), "{what}: {e:?}");
    }
    assert_eq!(metric(&c, "raft_peer_streams_rejected_total").await, 2);
    assert_eq!(metric(&c, "raft_peer_streams_accepted_total").await, 0);

    // Admin endpoints too.
    let snap = format!("{}/admin/snapshot", c.url(1));
    assert_eq!(c.http().post(&snap).send().await.unwrap().status(), 401);
    let part = format!("{}/test/partition", c.url(1));
    let r = c
        .http()
        .post(&part)
        .json(&serde_json::json!({"drop_peers": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(c.put(1, "x", "1").await.status(), 200);
    let r = c
        .http()
        .post(&snap)
        .header("x-raft-cluster-token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: SnapshotResponse = r.json().await.unwrap();
    assert!(s.index >= 2, "{s:?}");
    assert_eq!(c.status(1).await.unwrap().snapshot_index, s.index);
}

/// Garbage on the peer stream closes it and is counted; misaddressed and
/// forged messages are rejected; garbage snapshot chunks are refused; the
/// node carries on. The test speaks as node 3, which is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_peer_input_is_refused_and_counted() {
    let mut c = Cluster::start(3).await;
    c.kill(3);
    c.wait_for_leader(Duration::from_secs(15)).await;
    let counter = |name: &'static str| {
        let c = &c;
        async move { metric(c, name).await }
    };
    let rejected_messages = counter("raft_peer_messages_rejected_total").await;

    // Well-framed batches from node 3 with a misaddressed message and a
    // message claiming another sender: the core rejects both, the stream
    // stays open.
    let mut s = open_stream(&c, 3, None).await;
    let batch = PeerBatch {
        from: 3,
        messages: vec![heartbeat(3, 7, 0), heartbeat(2, 1, 0)],
    };
    s.write_all(&frame(&batch.encode())).await.unwrap();
    c.wait_until(
        Duration::from_secs(5),
        "both messages are rejected",
        || async { counter("raft_peer_messages_rejected_total").await >= rejected_messages + 2 },
    )
    .await;
    assert_eq!(counter("raft_peer_streams_rejected_total").await, 0);

    // Then a frame that is not a PeerBatch: the stream is closed.
    s.write_all(&frame(b"garbage")).await.unwrap();
    assert_closed(&mut s, "an undecodable frame").await;
    assert_eq!(counter("raft_peer_batches_undecodable_total").await, 1);
    assert_eq!(counter("raft_peer_streams_rejected_total").await, 1);

    // A length over the limit: closed on the length alone.
    let mut s = open_stream(&c, 3, None).await;
    s.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    assert_closed(&mut s, "a frame over the limit").await;
    assert_eq!(counter("raft_peer_streams_rejected_total").await, 2);

    // A batch from node 2 on node 3's stream: closed, its messages rejected.
    let before = counter("raft_peer_messages_rejected_total").await;
    let mut s = open_stream(&c, 3, None).await;
    let forged = PeerBatch {
        from: 2,
        messages: vec![heartbeat(2, 1, 1000)],
    };
    s.write_all(&frame(&forged.encode())).await.unwrap();
    assert_closed(&mut s, "a forged sender").await;
    assert_eq!(counter("raft_peer_streams_rejected_total").await, 3);
    assert!(counter("raft_peer_messages_rejected_total").await > before);
    assert!(c.status(1).await.unwrap().term < 1000);

    // The snapshot chunk endpoint: garbage, a chunk for another node and a
    // chunk from a non-member are all refused with a JSON error.
    let url = format!("{}/raft/snapshot", c.url(1));
    let chunk = |from, to| {
        SnapshotChunk {
            from,
            to,
            term: 1,
            meta: SnapshotMeta::default(),
            total_len: 3,
            crc32: 0,
            offset: 0,
            data: vec![1, 2],
        }
        .encode()
    };
    let as_node_3 = c.peer_headers(3);
    let post = |body: Vec<u8>| {
        let mut req = c.http().post(&url).body(body);
        for (k, v) in &as_node_3 {
            req = req.header(*k, v);
        }
        req
    };
    // Without the identity headers, refused before the body is read.
    let r = c.http().post(&url).body(chunk(3, 1)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: ErrorBody = r.json().await.unwrap();
    assert!(e.error.contains("x-raft-peer-id"), "{e:?}");
    for (body, says) in [
        (b"garbage".to_vec(), "SnapshotChunk"),
        (chunk(3, 7), "addressed to node 7"),
        (chunk(9, 1), "sent by node 3"),
    ] {
        let r = post(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{says}");
        let e: ErrorBody = r.json().await.unwrap();
        assert!(e.error.contains(says), "{e:?}");
    }
    assert_eq!(counter("raft_snapshot_chunks_received_total").await, 0);
    assert_eq!(counter("raft_peer_batches_undecodable_total").await, 2);

    // A whole snapshot from a member, checksum right, whose state machine
    // does not decode: refused by the receiver before it reaches the Raft
    // loop (which would have to stop the node on it).
    let data = vec![0xff; 64];
    let bad_state = SnapshotChunk {
        from: 3,
        to: 1,
        term: 1,
        meta: SnapshotMeta::default(),
        total_len: data.len() as u64,
        crc32: crc32fast::hash(&data),
        offset: 0,
        data,
    };
    let r = post(bad_state.encode()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: ErrorBody = r.json().await.unwrap();
    assert!(e.error.contains("does not decode"), "{e:?}");
    assert_eq!(counter("raft_peer_batches_undecodable_total").await, 3);

    // The node is fine: healthy, and the real peer's stream still carries
    // the replication a write needs.
    let r = c
        .http()
        .get(format!("{}/healthz", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert_eq!(c.put(1, "still", "works").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_writes_apply_once() {
    let c = node_with(&[], None, false).await;
    let register = || async {
        let r = c
            .http()
            .post(format!("{}/sessions", c.url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<SessionResponse>().await.unwrap()
    };
    let session = register().await;
    assert_eq!(session.served_by, 1);
    let other = register().await;
    assert!(other.client_id > session.client_id, "ids increase");
    let id = session.client_id.to_string();
    let put = |seq: &'static str, value: &'static str| {
        c.http()
            .put(format!("{}/key/counter", c.url(1)))
            .header("x-raft-client-id", id.clone())
            .header("x-raft-client-seq", seq)
            .json(&serde_json::json!({ "value": value }))
            .send()
    };
    let first: WriteResponse = put("1", "a").await.unwrap().json().await.unwrap();
    // A retry of seq 1 gets the first result and changes nothing.
    let retry: WriteResponse = put("1", "a").await.unwrap().json().await.unwrap();
    assert_eq!(retry.prev, first.prev);
    // The same number with another command is no retry: refused, not applied.
    let reused = put("1", "b").await.unwrap();
    assert_eq!(reused.status(), 409);
    let body: ErrorBody = reused.json().await.unwrap();
    assert!(body.error.contains("sequence number 1"), "{}", body.error);
    assert_eq!(c.local_value(1, "counter").await.as_deref(), Some("a"));
    let second: WriteResponse = put("2", "c").await.unwrap().json().await.unwrap();
    assert_eq!(second.prev.as_deref(), Some("a"));
    // A late retry of seq 1 is refused as stale.
    let r = put("1", "a").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(c.local_value(1, "counter").await.as_deref(), Some("c"));
    // A client id without a session (never registered, or forgotten)
    // cannot be told from a late retry of a forgotten session: refused, its
    // first write included, with JSON saying to register again.
    for seq in ["1", "5"] {
        let r = c
            .http()
            .put(format!("{}/key/counter", c.url(1)))
            .header("x-raft-client-id", "987654321")
            .header("x-raft-client-seq", seq)
            .json(&serde_json::json!({ "value": "z" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let body: ErrorBody = r.json().await.unwrap();
        assert!(body.error.contains("no session"), "{}", body.error);
        assert!(body.error.contains("register again"), "{}", body.error);
    }
    assert_eq!(c.local_value(1, "counter").await.as_deref(), Some("c"));
    // Writes without ids are applied each time (at least once).
    for _ in 0..2 {
        assert_eq!(c.put(1, "counter", "plain").await.status(), 200);
    }
    assert_eq!(c.local_value(1, "counter").await.as_deref(), Some("plain"));
    // A registration takes no body and no ids; other methods are refused.
    let r = c
        .http()
        .get(format!("{}/sessions", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<ErrorBody>().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_placeholder_and_static_files() {
    let c = node_with(&[], None, false).await;
    let r = c.http().get(c.url(1)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("dashboard was not built"));
    // With a web dir, its files are served.
    let web_tmp = tempfile::tempdir().unwrap();
    let web = web_tmp.path().join("dist");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::write(web.join("index.html"), "<html>dash</html>").unwrap();
    std::fs::write(web.join("pkg/app.js"), "console.log(1)").unwrap();
    drop(c);
    let web_arg = web.display().to_string();
    let c = node_with(&["--web-dir", &web_arg], None, false).await;
    let r = c.http().get(c.url(1)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "<html>dash</html>");
    let r = c
        .http()
        .get(format!("{}/pkg/app.js", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "console.log(1)");
    let r = c
        .http()
        .get(format!("{}/pkg/missing.js", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<ErrorBody>().await.is_ok());
}

/// The dashboard's bundle: a `.gz` twin is served to a client accepting
/// gzip (and the plain file to one that does not), the content-named
/// `pkg-<hash>/` is immutable, `index.html` is revalidated; a page served
/// by a member gets CORS answers, any other origin none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_gzip_cache_headers_and_cors() {
    let web_tmp = tempfile::tempdir().unwrap();
    let web = web_tmp.path().join("dist");
    std::fs::create_dir_all(web.join("pkg-0123abcd")).unwrap();
    std::fs::write(web.join("index.html"), "<html>dash</html>").unwrap();
    std::fs::write(web.join("pkg-0123abcd/app.wasm"), "plain wasm bytes").unwrap();
    std::fs::write(web.join("pkg-0123abcd/app.wasm.gz"), "gzipped bytes").unwrap();
    let web_arg = web.display().to_string();
    let c = node_with(&["--web-dir", &web_arg], None, false).await;
    let wasm = format!("{}/pkg-0123abcd/app.wasm", c.url(1));
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let r = c
        .http()
        .get(&wasm)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        header(&r, "cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert!(header(&r, "etag").is_some());
    assert_eq!(r.text().await.unwrap(), "gzipped bytes");
    let r = c.http().get(&wasm).send().await.unwrap();
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), "plain wasm bytes");
    let r = c.http().get(c.url(1)).send().await.unwrap();
    assert_eq!(header(&r, "cache-control").as_deref(), Some("no-cache"));

    // CORS: the member's own address as the page's origin.
    let member = c.url(1);
    let r = c
        .http()
        .get(format!("{member}/cluster"))
        .header("origin", &member)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(member.as_str())
    );
    assert!(header(&r, "access-control-expose-headers")
        .unwrap_or_default()
        .contains("x-raft-served-by"));
    let r = c
        .http()
        .request(reqwest::Method::OPTIONS, format!("{member}/key/x"))
        .header("origin", &member)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(header(&r, "access-control-allow-methods")
        .unwrap_or_default()
        .contains("PUT"));
    let r = c
        .http()
        .get(format!("{member}/cluster"))
        .header("origin", "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

/// `PUT /key/{key}` with one extra header (a condition), on node `id`.
async fn put_if(
    c: &Cluster,
    id: u64,
    key: &str,
    value: &str,
    header: (&str, &str),
) -> reqwest::Response {
    c.http()
        .put(format!("{}/key/{key}", c.url(id)))
        .header(header.0, header.1)
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .unwrap()
}

/// `DELETE /key/{key}` with one extra header, on node `id`.
async fn delete_if(c: &Cluster, id: u64, key: &str, header: (&str, &str)) -> reqwest::Response {
    c.http()
        .delete(format!("{}/key/{key}", c.url(id)))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
}

/// A 412's body, checked to name `mod_index` (`null` when absent).
async fn precondition_failed(r: reqwest::Response) -> Option<u64> {
    assert_eq!(r.status(), 412);
    let raw: serde_json::Value = r.json().await.unwrap();
    assert!(raw.get("mod_index").is_some(), "no mod_index in {raw}");
    let body: PreconditionFailed = serde_json::from_value(raw).unwrap();
    assert!(body.error.contains("precondition failed"), "{}", body.error);
    body.mod_index
}

async fn written(r: reqwest::Response) -> WriteResponse {
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_follow_the_modification_index() {
    let c = node_with(&[], None, false).await;
    let first = written(c.put(1, "k", "a").await).await;
    let i1 = first.mod_index.expect("a put reports its mod index");
    assert_eq!(i1, first.index);
    // GET gives the index as an ETag and in the JSON, stale reads too.
    for stale in [false, true] {
        let r = c.get(1, "k", stale).await;
        assert_eq!(r.headers()["etag"], format!("\"{i1}\"").as_str());
        let kv: KeyValue = r.json().await.unwrap();
        assert_eq!((kv.value.as_str(), kv.mod_index), ("a", Some(i1)));
    }
    // A stale index: 412 with the current one, nothing written.
    let r = put_if(&c, 1, "k", "b", ("if-match", "\"999\"")).await;
    assert_eq!(r.headers()["etag"], format!("\"{i1}\"").as_str());
    assert_eq!(precondition_failed(r).await, Some(i1));
    assert_eq!(c.local_value(1, "k").await.as_deref(), Some("a"));
    // The current index, quoted or not, succeeds and moves it.
    let tag = format!("\"{i1}\"");
    let second = written(put_if(&c, 1, "k", "b", ("if-match", &tag)).await).await;
    assert_eq!(second.prev.as_deref(), Some("a"));
    let i2 = second.mod_index.unwrap();
    assert!(i2 > i1);
    let r = put_if(&c, 1, "k", "c", ("if-match", &i1.to_string())).await;
    assert_eq!(precondition_failed(r).await, Some(i2));
    // If-Match: * needs the key to exist; If-None-Match: * needs it absent.
    let third = written(put_if(&c, 1, "k", "c", ("if-match", "*")).await).await;
    let i3 = third.mod_index.unwrap();
    let r = put_if(&c, 1, "k", "d", ("if-none-match", "*")).await;
    assert_eq!(precondition_failed(r).await, Some(i3));
    let created = written(put_if(&c, 1, "new", "x", ("if-none-match", "*")).await).await;
    assert_eq!(created.prev, None);
    let r = put_if(&c, 1, "new", "y", ("if-none-match", "*")).await;
    assert_eq!(precondition_failed(r).await, created.mod_index);
    let r = put_if(&c, 1, "absent", "y", ("if-match", "*")).await;
    assert_eq!(precondition_failed(r).await, None);
    let r = put_if(&c, 1, "absent", "y", ("if-match", "1")).await;
    assert_eq!(precondition_failed(r).await, None);
    // Conditional deletes.
    let r = delete_if(&c, 1, "k", ("if-match", &i2.to_string())).await;
    assert_eq!(precondition_failed(r).await, Some(i3));
    let gone = written(delete_if(&c, 1, "k", ("if-match", &format!("\"{i3}\""))).await).await;
    assert_eq!((gone.prev.as_deref(), gone.mod_index), (Some("c"), None));
    assert_eq!(c.get(1, "k", false).await.status(), 404);
    // Malformed conditions: 400 with a JSON error, nothing written.
    for (what, headers) in [
        ("not a number", vec![("if-match", "\"abc\"")]),
        ("negative", vec![("if-match", "-3")]),
        ("an etag list", vec![("if-match", "\"1\", \"2\"")]),
        (
            "if-none-match other than *",
            vec![("if-none-match", "\"3\"")],
        ),
        ("both", vec![("if-match", "*"), ("if-none-match", "*")]),
    ] {
        let mut req = c
            .http()
            .put(format!("{}/key/bad", c.url(1)))
            .json(&serde_json::json!({ "value": "v" }));
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body: ErrorBody = r.json().await.unwrap();
        assert!(body.error.contains("If-"), "{what}: {}", body.error);
    }
    assert_eq!(c.get(1, "bad", false).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_delete_and_list_paging() {
    let c = node_with(&[], None, false).await;
    for i in 0..25 {
        assert_eq!(c.put(1, &format!("p/{i:02}"), "v").await.status(), 200);
    }
    for key in ["p", "q/1", "o"] {
        assert_eq!(c.put(1, key, "v").await.status(), 200);
    }
    // Three pages of 10, 10 and 5, each naming where the next starts.
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/keys?prefix=p/&limit=10".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&continue={t}"));
        }
        let page: ListResponse = c.get_json(1, &path).await;
        pages += 1;
        assert_eq!(page.truncated, page.continue_token.is_some());
        keys.extend(page.items.into_iter().map(|kv| kv.key));
        token = page.continue_token;
        if token.is_none() {
            break;
        }
        assert!(pages < 5, "paging does not end");
    }
    let want: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    assert_eq!((pages, keys), (3, want));
    let r = c
        .http()
        .get(format!("{}/keys?prefix=p/&continue=zz", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .json::<ErrorBody>()
        .await
        .unwrap()
        .error
        .contains("continue"));
    // A prefix delete removes exactly the keys under it, in one write.
    let r = c
        .http()
        .delete(format!("{}/keys?prefix=p/", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deleted: DeletePrefixResponse = r.json().await.unwrap();
    assert_eq!(deleted.deleted, 25);
    let rest: ListResponse = c.get_json(1, "/keys").await;
    let rest: Vec<_> = rest.items.into_iter().map(|kv| kv.key).collect();
    assert_eq!(rest, ["o", "p", "q/1"]);
    // Deleting every key at once is refused.
    for path in ["/keys", "/keys?prefix="] {
        let r = c
            .http()
            .delete(format!("{}{path}", c.url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: ErrorBody = r.json().await.unwrap();
        assert!(body.error.contains("prefix"), "{}", body.error);
    }
}

/// A follower forwards a conditional write with its condition: the leader
/// refuses a stale index and applies the current one, through node 2 or 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_and_prefix_deletes_through_a_follower() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(15)).await;
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    let first = written(c.put(leader, "k", "a").await).await;
    let i1 = first.mod_index.unwrap();
    let second = written(c.put(leader, "k", "b").await).await;
    let i2 = second.mod_index.unwrap();
    let r = put_if(&c, follower, "k", "c", ("if-match", &i1.to_string())).await;
    assert_eq!(r.headers()["x-raft-forwarded"], "1");
    assert_eq!(precondition_failed(r).await, Some(i2));
    let r = put_if(&c, follower, "k", "c", ("if-none-match", "*")).await;
    assert_eq!(precondition_failed(r).await, Some(i2));
    let r = put_if(&c, follower, "k", "c", ("if-match", &format!("\"{i2}\""))).await;
    assert_eq!(r.headers()["x-raft-forwarded"], "1");
    let third = written(r).await;
    assert_eq!(third.prev.as_deref(), Some("b"));
    let r = delete_if(&c, follower, "k", ("if-match", &i2.to_string())).await;
    assert_eq!(precondition_failed(r).await, third.mod_index);
    assert_eq!(c.local_value(leader, "k").await.as_deref(), Some("c"));
    let r = c
        .http()
        .delete(format!("{}/keys?prefix=k", c.url(follower)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-raft-forwarded"], "1");
    assert_eq!(r.json::<DeletePrefixResponse>().await.unwrap().deleted, 1);
    assert_eq!(c.get(follower, "k", false).await.status(), 404);
}
