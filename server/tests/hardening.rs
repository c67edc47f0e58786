//! Hostile and mistaken input, with real processes: keys act on exactly
//! the key named (through a follower too), a peer route reads no body
//! before the token, made-up methods add no metric series, readiness
//! follows the quorum, and a node will not advertise another member's port.

mod support;

use std::time::Duration;

use support::{Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends one HTTP/1.1 request exactly as written (no URL parsing, so no
/// dot-segment resolution) and returns the status and body.
async fn raw(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn value(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["value"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_acted_on_exactly_as_named_through_a_follower_and_the_leader() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    for via in [follower, leader] {
        let port = c.port(via);
        // A key "a" that a resolved path would name instead.
        let (st, _) = raw(port, "PUT", "/key/a", r#"{"value":"keep"}"#).await;
        assert_eq!(st, 200);
        let (st, _) = raw(
            port,
            "PUT",
            "/key/x/y/%2E%2E/%2E%2E/a",
            r#"{"value":"dots"}"#,
        )
        .await;
        assert_eq!(st, 200, "via node {via}");
        let (st, _) = raw(port, "DELETE", "/key/x/y/%2E%2E/%2E%2E/a", "").await;
        assert_eq!(st, 200, "via node {via}");
        let (st, body) = raw(port, "GET", "/key/a", "").await;
        assert_eq!(
            (st, value(&body).as_deref()),
            (200, Some("keep")),
            "deleting x/y/../../a through node {via} touched key a"
        );
        // `.` and `..` are keys like any other.
        for (target, v) in [
            ("/key/..", "up"),
            ("/key/.", "here"),
            ("/key/%2E%2E", "up2"),
        ] {
            let (st, body) = raw(port, "PUT", target, &format!(r#"{{"value":"{v}"}}"#)).await;
            assert_eq!(st, 200, "PUT {target} via node {via}: {body}");
            let (st, body) = raw(port, "GET", target, "").await;
            assert_eq!(
                (st, value(&body).as_deref()),
                (200, Some(v)),
                "GET {target} via node {via}"
            );
        }
        // Escaped slashes and percent signs round-trip.
        let (st, _) = raw(port, "PUT", "/key/100%25%2Fdone", r#"{"value":"pct"}"#).await;
        assert_eq!(st, 200);
        let (st, body) = raw(port, "GET", "/key/100%25/done", "").await;
        assert_eq!((st, value(&body).as_deref()), (200, Some("pct")));
    }
    // Every member holds "a" and the dotted keys as written (local reads,
    // sent raw: a URL parser would resolve the dots).
    let cref = &c;
    for id in c.ids() {
        cref.wait_until(LEADER_TIMEOUT, "replicated", || async move {
            let port = cref.port(id);
            let (_, dots) = raw(port, "GET", "/key/..?consistency=stale", "").await;
            let (_, a) = raw(port, "GET", "/key/a?consistency=stale", "").await;
            value(&dots).as_deref() == Some("up2") && value(&a).as_deref() == Some("keep")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_chunk_without_the_token_is_refused_before_its_body_is_read() {
    let c = Cluster::start_with(
        1,
        ClusterOptions {
            token: Some("s3cret".into()),
            ..ClusterOptions::default()
        },
    )
    .await;
    // Declare a 60 MB body and send none of it: the answer must come at
    // once, from the headers alone.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port(1)))
        .await
        .unwrap();
    s.write_all(
        b"POST /raft/snapshot HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 60000000\r\n\
          content-type: application/octet-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer without the body: the node waits to read it")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    // The same for the admin and membership routes: the token first.
    for target in ["/cluster/members", "/admin/transfer-leader"] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port(1)))
            .await
            .unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000000\r\n\
             content-type: application/json\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{target}: no answer before the body"))
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 401"), "{target}: {head}");
    }
    // The start-up line says the routes need the token; the refusal is logged.
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(10),
        "the refusal is logged",
        || async move {
            cref.log(1)
                .contains("refused a snapshot chunk with a missing or wrong cluster token")
        },
    )
    .await;
    assert!(c.log(1).contains("cluster token required"), "{}", c.log(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_add_no_metric_series() {
    let c = Cluster::start(1).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_count"))
            .count()
    };
    for i in 0..3 {
        raw(c.port(1), "GET", &format!("/key/warm{i}"), "").await;
    }
    let before = series(&c.metrics_text(1).await.unwrap());
    for i in 0..100 {
        raw(c.port(1), &format!("BREW{i}"), "/key/k", "").await;
        raw(c.port(1), &format!("X{i}"), "/status", "").await;
    }
    let text = c.metrics_text(1).await.unwrap();
    let after = series(&text);
    // At most one "other" series per route touched (and the metrics GET).
    assert!(after <= before + 3, "{before} -> {after} series:\n{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains("BREW"), "{text}");
    // Started without a token: the log says what is open.
    let log = c.log(1);
    assert!(
        log.contains("UNAUTHENTICATED (no --cluster-token")
            && log.contains("data API (/key, /keys, /sessions): UNAUTHENTICATED"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_quorum() {
    let mut c = Cluster::start(3).await;
    c.wait_for_leader(LEADER_TIMEOUT).await;
    let ready = |c: &Cluster, id: u64| {
        let url = format!("{}/readyz", c.url(id));
        let http = c.http().clone();
        async move {
            match http.get(url).send().await {
                Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
                Err(_) => None,
            }
        }
    };
    let cref = &c;
    for id in c.ids() {
        cref.wait_until(LEADER_TIMEOUT, "every member is ready", || async move {
            ready(cref, id).await.is_some_and(|(st, _)| st == 200)
        })
        .await;
    }
    // Lose two of three: the survivor is not ready, and says why.
    c.kill(1);
    c.kill(2);
    let cref = &c;
    cref.wait_until(LEADER_TIMEOUT, "node 3 reports not ready", || async move {
        ready(cref, 3)
            .await
            .is_some_and(|(st, body)| st == 503 && body.contains("not ready"))
    })
    .await;
    // /healthz only says the process is alive.
    let r = c
        .http()
        .get(format!("{}/healthz", c.url(3)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.restart(1).await;
    c.restart(2).await;
    let cref = &c;
    for id in c.ids() {
        cref.wait_until(LEADER_TIMEOUT, "ready again", || async move {
            ready(cref, id).await.is_some_and(|(st, _)| st == 200)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listed_at_another_port_refuses_to_start() {
    let mut c = Cluster::start(1).await;
    c.kill(1);
    let mut args = c.args(1);
    let wrong = c.port(1).wrapping_add(1);
    args.extend([
        "--peers".into(),
        format!("1=http://127.0.0.1:{wrong},2=http://127.0.0.1:9"),
    ]);
    c.spawn_with(1, args);
    let exit = c.wait_exit(1, Duration::from_secs(20)).await;
    assert!(!exit.success());
    let log = c.log(1);
    assert!(
        log.contains(&format!("listens on port {}", c.port(1))),
        "{log}"
    );
}

/// What happened to one slow connection.
#[derive(Debug, PartialEq)]
enum Fate {
    /// The node closed it without an answer.
    Closed,
    /// The node answered with this status.
    Answered(u16),
    /// Still open at the end.
    Open,
}

/// Opens a connection, sends `head`, then trickles `trickle` one byte every
/// 200 ms; reports how the node dealt with it within 30 s.
async fn slow_client(port: u16, head: &'static [u8], trickle: &'static [u8]) -> Fate {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Fate::Closed;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    if s.write_all(head).await.is_err() {
        return Fate::Closed;
    }
    let mut next = trickle.iter().cycle();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Fate::Open,
            read = s.read(&mut buf) => {
                return match read {
                    Ok(n) if n >= 12 => Fate::Answered(
                        String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
                    ),
                    _ => Fate::Closed,
                };
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(b) = next.next() {
                    if s.write_all(&[*b]).await.is_err() {
                        return Fate::Closed;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_counted_while_others_are_served() {
    let c = Cluster::start_with(
        1,
        ClusterOptions {
            extra_args: vec![
                "--idle-timeout-ms".into(),
                "1000".into(),
                "--body-timeout-ms".into(),
                "1000".into(),
                "--max-connections".into(),
                "64".into(),
            ],
            ..ClusterOptions::default()
        },
    )
    .await;
    let port = c.port(1);
    let mut attackers = Vec::new();
    for _ in 0..30 {
        // Connects and sends nothing.
        attackers.push(tokio::spawn(slow_client(port, b"", b"")));
        // A request head, one byte at a time.
        attackers.push(tokio::spawn(slow_client(
            port,
            b"GET /status HTTP/1.1\r\nx-slow: ",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        )));
        // A whole head, then the body one byte at a time.
        attackers.push(tokio::spawn(slow_client(
            port,
            b"PUT /key/slow HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              content-length: 200\r\n\r\n{\"value\":\"",
            b"b",
        )));
    }
    // 90 slow connections against 32 client slots: an ordinary client still
    // gets its answers within a few head timeouts.
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(30),
        "an ordinary write is answered",
        || async move {
            cref.http()
                .put(format!("{}/key/ordinary", cref.url(1)))
                .timeout(Duration::from_secs(3))
                .json(&serde_json::json!({"value": "v"}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let mut fates = Vec::new();
    for a in attackers {
        fates.push(a.await.unwrap());
    }
    assert!(
        !fates.contains(&Fate::Open),
        "slow connections still open after 30 s: {fates:?}"
    );
    assert!(fates.contains(&Fate::Answered(408)), "{fates:?}");
    assert_eq!(
        c.local_value(1, "slow").await,
        None,
        "a slow body was applied"
    );
    let heads = c.metric(1, "http_slow_heads_total").await.unwrap();
    let bodies = c.metric(1, "http_slow_bodies_total").await.unwrap();
    assert!(
        heads >= 1.0 && bodies >= 1.0,
        "heads {heads}, bodies {bodies}"
    );
}

/// `GET /version` names the build, and the metrics carry the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_the_build_in_the_api_and_the_metrics() {
    let c = Cluster::start(1).await;
    let v: raft_core::wire::VersionResponse = c.get_json(1, "/version").await;
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
    assert!(!v.commit.is_empty());
    let metrics = c.metrics_text(1).await.expect("metrics");
    let line = format!(
        "raft_kv_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        v.version, v.commit
    );
    assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
}

/// `/metrics` passes `promtool check metrics` (format and lint) on a leader
/// and a follower that served traffic. promtool comes from Debian's
/// prometheus package (`run_tests.sh` unpacks it and sets
/// `RAFT_KV_PROMTOOL`); without it the test is skipped unless
/// `RAFT_KV_REQUIRE_PROMTOOL=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let promtool = std::env::var("RAFT_KV_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let found = std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("RAFT_KV_REQUIRE_PROMTOOL").is_err(),
            "RAFT_KV_REQUIRE_PROMTOOL is set but {promtool} does not run"
        );
        eprintln!("skipped: no promtool (set RAFT_KV_PROMTOOL)");
        return;
    }
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await;
    for n in 0..10 {
        assert_eq!(c.put(leader, &format!("m{n}"), "v").await.status(), 200);
    }
    assert_eq!(c.get(leader, "m1", false).await.status(), 200);
    let follower = c.ids().into_iter().find(|&i| i != leader).unwrap();
    // Peer traffic is counted in bytes on both ends of the streams.
    let sent = c.metric(leader, "raft_peer_bytes_sent_total").await;
    assert!(sent.is_some_and(|b| b > 0.0), "leader sent {sent:?}");
    let got = c.metric(follower, "raft_peer_bytes_received_total").await;
    assert!(got.is_some_and(|b| b > 0.0), "follower received {got:?}");
    // The leader times its heartbeats' round trips to every follower.
    for id in c.ids().into_iter().filter(|&i| i != leader) {
        let series = format!("raft_peer_round_trip_seconds_count{{peer=\"{id}\"}}");
        c.wait_until(Duration::from_secs(10), &series, || async {
            c.metric(leader, &series).await.is_some_and(|n| n > 0.0)
        })
        .await;
    }
    for id in [leader, follower] {
        let text = c.metrics_text(id).await.expect("metrics");
        for name in [
            "raft_has_leader 1",
            "raft_wal_fsync_duration_seconds_count",
            "process_resident_memory_bytes",
            "raft_data_dir_bytes",
            "raft_slow_applies_total",
        ] {
            assert!(text.contains(name), "node {id} lacks {name}");
        }
        if id == leader {
            assert!(text.contains("raft_follower_lag_entries{follower="));
        }
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool on node {id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
