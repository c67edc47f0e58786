//! Runs the built `raft-kv-client` against scripted fake nodes (plain HTTP
//! on loopback, no Raft): leader following, at-most-once retry headers,
//! output format and exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the fake node saw it.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake node does with a request.
enum Reply {
    /// Answer with this status, extra headers and JSON body.
    Json(u16, Vec<(&'static str, String)>, String),
    /// Close the connection without answering.
    Hang,
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct FakeNode {
    url: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl FakeNode {
    /// Starts a node; `handler` gets each request and how many came before.
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, handler) = (Arc::clone(&log), Arc::clone(&handler));
                thread::spawn(move || serve(stream, &log, &*handler));
            }
        });
        FakeNode { url, seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Request>>, handler: &Handler) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            target,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let count = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.len() - 1
        };
        match handler(&request, count) {
            Reply::Hang => return,
            Reply::Json(status, extra, body) => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (n, v) in extra {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).is_err()
                    || stream.write_all(body.as_bytes()).is_err()
                {
                    return;
                }
            }
        }
    }
}

fn client(servers: &[&str], args: &[&str]) -> Output {
    let list = servers.join(",");
    Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(["--server", &list, "--timeout", "5s"])
        .args(args)
        .env_remove("RAFT_KV_TOKEN")
        .output()
        .expect("run raft-kv-client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The answer to `POST /sessions`.
fn session(client_id: u64) -> Reply {
    Reply::Json(
        200,
        vec![],
        format!(r#"{{"client_id":{client_id},"served_by":2}}"#),
    )
}

fn is_register(r: &Request) -> bool {
    r.method == "POST" && r.target == "/sessions"
}

fn ok_write(key: &str) -> Reply {
    Reply::Json(
        200,
        vec![],
        format!(r#"{{"key":"{key}","index":7,"prev":null,"served_by":2}}"#),
    )
}

#[test]
fn put_follows_the_leader_hint_with_the_same_client_seq() {
    let leader = FakeNode::start(|r, _| {
        assert_eq!(r.method, "PUT");
        ok_write("k")
    });
    let leader_url = leader.url.clone();
    // The follower registers the session (as a real one forwards it), then
    // sends the write on to the leader.
    let follower = FakeNode::start(move |r, _| {
        if is_register(r) {
            return session(41);
        }
        Reply::Json(
            503,
            vec![],
            format!(r#"{{"error":"not the leader","leader":2,"leader_url":"{leader_url}"}}"#),
        )
    });
    let out = client(&[&follower.url], &["put", "k", "hello world"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK\n");
    assert!(out.stderr.is_empty());

    let register = &follower.requests()[0];
    assert!(is_register(register), "{register:?}");
    assert_eq!(register.header("x-raft-client-id"), None);
    assert_eq!(register.body, "");
    let first = &follower.requests()[1];
    let second = &leader.requests()[0];
    assert_eq!(second.target, "/key/k");
    assert_eq!(second.body, r#"{"value":"hello world"}"#);
    assert_eq!(first.header("x-raft-client-id"), Some("41"));
    assert_eq!(second.header("x-raft-client-id"), Some("41"));
    assert_eq!(first.header("x-raft-client-seq"), Some("1"));
    assert_eq!(second.header("x-raft-client-seq"), Some("1"));
}

#[test]
fn a_lost_answer_is_retried_with_the_same_client_seq() {
    let node = FakeNode::start(|r, n| match n {
        _ if is_register(r) => session(9),
        1 => Reply::Hang,
        _ => ok_write("k"),
    });
    let out = client(&[&node.url], &["put", "k", "v", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["index"], 7);
    let seen = node.requests();
    assert_eq!(seen.len(), 3, "one registration, two attempts: {seen:?}");
    for attempt in &seen[1..] {
        assert_eq!(attempt.header("x-raft-client-id"), Some("9"));
        assert_eq!(attempt.header("x-raft-client-seq"), Some("1"));
    }
}

/// A write the cluster refuses because it forgot the session: an error
/// and a non-zero exit, and no second attempt under a new session.
#[test]
fn a_forgotten_session_is_an_error_not_a_silent_retry() {
    let node = FakeNode::start(|r, _| {
        if is_register(r) {
            return session(5);
        }
        Reply::Json(
            409,
            vec![],
            r#"{"error":"client 5 has no session (never registered, or forgotten after newer sessions): nothing was applied. register again (POST /sessions)"}"#
                .into(),
        )
    });
    for args in [&["put", "k", "v"][..], &["delete", "k"][..]] {
        let out = client(&[&node.url], args);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: server answered 409: client 5 has no session"),
            "{err}"
        );
        assert!(err.contains("run the command again"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
    let seen = node.requests();
    let registrations = seen.iter().filter(|r| is_register(r)).count();
    assert_eq!((seen.len(), registrations), (4, 2), "{seen:?}");
}

#[test]
fn header_hint_and_server_list_are_followed() {
    let leader =
        FakeNode::start(|_, _| Reply::Json(200, vec![], r#"{"key":"k","value":"v1"}"#.into()));
    let hint = format!("2 {}", leader.url);
    let follower = FakeNode::start(move |_, _| {
        Reply::Json(
            503,
            vec![("x-raft-leader", hint.clone())],
            r#"{"error":"no leader yet"}"#.into(),
        )
    });
    let dead = format!("http://{}", {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let out = client(&[&dead, &follower.url], &["get", "k"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "v1\n");
    assert_eq!(leader.requests()[0].target, "/key/k");
}

#[test]
fn get_outputs_and_exit_codes() {
    let node = FakeNode::start(|r, _| match r.target.as_str() {
        "/key/present" => Reply::Json(200, vec![], r#"{"key":"present","value":"42"}"#.into()),
        "/key/stale?consistency=stale" => {
            Reply::Json(200, vec![], r#"{"key":"stale","value":"old"}"#.into())
        }
        "/key/bad%20key" => Reply::Json(400, vec![], r#"{"error":"bad\nkey"}"#.into()),
        _ => Reply::Json(404, vec![], r#"{"error":"not found"}"#.into()),
    });
    let out = client(&[&node.url], &["get", "present"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "42\n".into())
    );

    let out = client(&[&node.url], &["get", "stale", "--consistency", "stale"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "old\n".into())
    );

    let out = client(&[&node.url], &["get", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "error: key \"missing\" not found\n");

    let out = client(&[&node.url], &["get", "bad key"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stderr), "error: server answered 400: bad key\n");
}

#[test]
fn no_leader_until_the_deadline_exits_3() {
    let node = FakeNode::start(|_, _| Reply::Json(503, vec![], r#"{"error":"no leader"}"#.into()));
    let out = Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(["--server", &node.url, "--timeout", "600ms", "put", "k", "v"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no leader"), "{err}");
    // Retries back off instead of hammering the node.
    let n = node.requests().len();
    assert!((2..30).contains(&n), "{n} attempts");
}

#[test]
fn admin_commands_send_the_token() {
    let node = FakeNode::start(|r, _| match r.target.as_str() {
        "/admin/snapshot" => Reply::Json(200, vec![], r#"{"index":12}"#.into()),
        "/admin/transfer-leader" => Reply::Json(200, vec![], String::new()),
        _ => Reply::Json(404, vec![], "{}".into()),
    });
    let out = client(&[&node.url], &["--token", "s3cret", "snapshot"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "snapshot taken at index 12\n");
    let out = client(&[&node.url], &["transfer-leader", "3", "--token", "s3cret"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = node.requests();
    assert_eq!(seen[0].header("x-raft-cluster-token"), Some("s3cret"));
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].body, r#"{"to":3}"#);
    assert_eq!(seen[1].header("x-raft-cluster-token"), Some("s3cret"));
}

#[test]
fn bench_reports_json_against_a_fake_leader() {
    let node = FakeNode::start(|r, _| {
        let path = r.target.split('?').next().unwrap_or_default();
        match (r.method.as_str(), path) {
            ("GET", "/cluster") => Reply::Json(200, vec![], {
                let url = r.header("host").map(|h| format!("http://{h}")).unwrap();
                format!(
                    r#"{{"served_by":1,"leader":1,"members":[{{"id":1,"url":"{url}","error":"skip"}}]}}"#
                )
            }),
            ("POST", "/sessions") => session(u64::from(u8::MAX) + 1),
            ("PUT", _) => ok_write("x"),
            ("GET", _) => Reply::Json(200, vec![], r#"{"key":"x","value":"y"}"#.into()),
            _ => Reply::Json(404, vec![], "{}".into()),
        }
    });
    let out = client(
        &[&node.url],
        &[
            "bench",
            "--ops",
            "200",
            "--connections",
            "4",
            "--json",
            "--quiet",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ops"], 200);
    assert_eq!(report["ok"], 200);
    assert_eq!(report["errors"], 0);
    assert!(report["latency_us"]["p99"].as_u64().unwrap() > 0);
    let writes = node
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert!(writes > 0 && writes < 80, "{writes} writes of 200 at 10%");
    // Each closed-loop worker registered once, before its first write, and
    // its writes carry the session it was given.
    let seen = node.requests();
    let registrations = seen.iter().filter(|r| is_register(r)).count();
    assert!(
        (1..=4).contains(&registrations),
        "{registrations} registrations"
    );
    assert!(seen
        .iter()
        .filter(|r| r.method == "PUT")
        .all(|r| r.header("x-raft-client-id") == Some("256")));

    let out = client(
        &[&node.url],
        &[
            "bench",
            "--rate",
            "400",
            "--duration",
            "500ms",
            "--workload",
            "put",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["mode"], "open");
    let ops = report["ops"].as_u64().unwrap();
    assert!((150..=250).contains(&ops), "{ops} ops at 400/s for 0.5s");
}

/// A `MembersResponse` body: voters 1-3 (leader 2), `extra` appended.
fn members_body(extra: &str, joint: bool) -> String {
    format!(
        r#"{{"cluster_id":"00c0ffee00c0ffee","leader":2,"config_index":12,"joint":{joint},"members":[{{"id":1,"url":"http://127.0.0.1:3001","role":"voter"}},{{"id":2,"url":"http://127.0.0.1:3002","role":"voter"}},{{"id":3,"url":"http://127.0.0.1:3003","role":"voter"}}{extra}]}}"#
    )
}

#[test]
fn member_list_sends_the_token_and_prints_a_table_or_json() {
    let body = members_body(
        r#",{"id":4,"url":"http://127.0.0.1:3004","role":"learner","auto_promote":true}"#,
        false,
    );
    let answer = body.clone();
    let node = FakeNode::start(move |r, _| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/cluster/members") => Reply::Json(200, vec![], answer.clone()),
        _ => Reply::Json(404, vec![], r#"{"error":"no such route"}"#.into()),
    });
    let out = client(&[&node.url], &["--token", "s3cret", "member", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "cluster: 00c0ffee00c0ffee  leader: 2  config index: 12  joint phase: no\n\
         ID  URL                    ROLE                    LEADER\n\
         1   http://127.0.0.1:3001  voter\n\
         2   http://127.0.0.1:3002  voter                   *\n\
         3   http://127.0.0.1:3003  voter\n\
         4   http://127.0.0.1:3004  learner (auto-promote)\n"
    );
    assert!(out.stderr.is_empty());

    let out = client(&[&node.url], &["member", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut want: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The CLI prints every field, the defaulted ones too.
    for m in want["members"].as_array_mut().unwrap() {
        for flag in ["auto_promote", "leaving", "joining"] {
            if m.get(flag).is_none() {
                m[flag] = false.into();
            }
        }
    }
    assert_eq!(got, want);

    let seen = node.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-raft-cluster-token"), Some("s3cret"));
    assert_eq!(seen[1].header("x-raft-cluster-token"), None);
    assert!(seen.iter().all(|r| r.body.is_empty()));
}

#[test]
fn member_add_posts_the_request_to_the_leader_and_prints_the_new_configuration() {
    let leader = FakeNode::start(|r, _| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/cluster/members") => Reply::Json(
            200,
            vec![],
            members_body(
                r#",{"id":4,"url":"http://127.0.0.1:3004","role":"learner"}"#,
                false,
            ),
        ),
        _ => Reply::Json(404, vec![], r#"{"error":"no such route"}"#.into()),
    });
    let leader_url = leader.url.clone();
    let follower = FakeNode::start(move |_, _| {
        Reply::Json(
            503,
            vec![],
            format!(
                r#"{{"error":"cannot reach the leader","leader":2,"leader_url":"{leader_url}"}}"#
            ),
        )
    });
    let out = client(
        &[&follower.url],
        &[
            "member",
            "add",
            "4",
            "127.0.0.1:3004",
            "--learner",
            "--token",
            "s3cret",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("cluster: 00c0ffee00c0ffee  leader: 2  config index: 12"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("4   http://127.0.0.1:3004  learner\n"),
        "{stdout}"
    );

    let sent = &leader.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.target, "/cluster/members");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({"id": 4, "url": "http://127.0.0.1:3004", "learner": true, "force": false})
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("x-raft-cluster-token"), Some("s3cret"));
    assert_eq!(follower.requests()[0].body, sent.body);

    let out = client(
        &[&leader.url],
        &[
            "member",
            "add",
            "5",
            "http://10.0.0.5:3005/",
            "--force",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["members"][3]["role"], "learner");
    assert_eq!(got["cluster_id"], "00c0ffee00c0ffee");
    let sent = &leader.requests()[1];
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({"id": 5, "url": "http://10.0.0.5:3005", "learner": false, "force": true})
    );
}

#[test]
fn member_promote_and_remove_use_their_paths() {
    let node = FakeNode::start(|r, _| {
        match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/cluster/members/4/promote") => Reply::Json(
            200,
            vec![],
            members_body(
                r#",{"id":4,"url":"http://127.0.0.1:3004","role":"voter","joining":true}"#,
                true,
            ),
        ),
        ("DELETE", "/cluster/members/3" | "/cluster/members/3?force=true") => Reply::Json(
            200,
            vec![],
            r#"{"cluster_id":"00c0ffee00c0ffee","leader":1,"config_index":14,"joint":false,"members":[{"id":1,"url":"http://127.0.0.1:3001","role":"voter"},{"id":2,"url":"http://127.0.0.1:3002","role":"voter"}]}"#.into(),
        ),
        _ => Reply::Json(404, vec![], r#"{"error":"no such route"}"#.into()),
    }
    });
    let out = client(&[&node.url], &["--token", "t", "member", "promote", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "cluster: 00c0ffee00c0ffee  leader: 2  config index: 12  \
             joint phase: yes (old and new voters both decide)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("4   http://127.0.0.1:3004  voter (joining)\n"),
        "{stdout}"
    );

    let out = client(&[&node.url], &["--token", "t", "member", "remove", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "cluster: 00c0ffee00c0ffee  leader: 1  config index: 14  joint phase: no\n\
         ID  URL                    ROLE   LEADER\n\
         1   http://127.0.0.1:3001  voter  *\n\
         2   http://127.0.0.1:3002  voter\n"
    );

    let out = client(
        &[&node.url],
        &["member", "remove", "3", "--force", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["config_index"], 14);
    assert_eq!(got["members"].as_array().unwrap().len(), 2);

    let seen = node.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("POST", "/cluster/members/4/promote")
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].target.as_str()),
        ("DELETE", "/cluster/members/3")
    );
    assert_eq!(
        (seen[2].method.as_str(), seen[2].target.as_str()),
        ("DELETE", "/cluster/members/3?force=true")
    );
    assert_eq!(seen[0].header("x-raft-cluster-token"), Some("t"));
    assert_eq!(seen[1].header("x-raft-cluster-token"), Some("t"));
    assert!(seen.iter().all(|r| r.body.is_empty()));
}

#[test]
fn refused_member_changes_exit_4_with_the_servers_message() {
    let node = FakeNode::start(|r, _| {
        match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/cluster/members") => Reply::Json(
            409,
            vec![],
            r#"{"error":"node 3 is already a member","leader":2,"leader_url":"http://127.0.0.1:3002"}"#.into(),
        ),
        ("POST", "/cluster/members/4/promote") => Reply::Json(
            412,
            vec![],
            r#"{"error":"only 1 of 2 voters would be up (add force=true to do it anyway)"}"#.into(),
        ),
        ("DELETE", "/cluster/members/9") => {
            Reply::Json(404, vec![], r#"{"error":"node 9 is not a member"}"#.into())
        }
        ("GET", "/cluster/members") => {
            Reply::Json(401, vec![], r#"{"error":"missing or wrong cluster token"}"#.into())
        }
        _ => Reply::Json(400, vec![], "not json".into()),
    }
    });
    for (args, want) in [
        (
            &["member", "add", "3", "http://127.0.0.1:3003"][..],
            "error: server answered 409: node 3 is already a member\n",
        ),
        (
            &["member", "promote", "4"],
            "error: server answered 412: only 1 of 2 voters would be up \
             (rerun with --force to do it anyway)\n",
        ),
        (
            &["member", "remove", "9"],
            "error: server answered 404: node 9 is not a member\n",
        ),
        (
            &["member", "list"],
            "error: server answered 401: missing or wrong cluster token\n",
        ),
    ] {
        let out = client(&[&node.url], args);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(text(&out.stderr), want, "{args:?}");
    }
    // JSON output changes nothing on an error.
    let out = client(&[&node.url], &["--json", "member", "remove", "9"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_member_change_refused_after_a_lost_answer_says_it_may_have_taken_effect() {
    let node = FakeNode::start(|_, n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Json(
                409,
                vec![],
                r#"{"error":"node 4 is already a member"}"#.into(),
            )
        }
    });
    let out = client(
        &[&node.url],
        &["member", "add", "4", "http://127.0.0.1:3004"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "error: server answered 409: node 4 is already a member (the request was retried"
        ),
        "{err}"
    );
    assert!(err.contains("check `member list`"), "{err}");
    let seen = node.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body);
}

#[test]
fn status_shows_the_cluster_id_learners_and_outgoing_voters() {
    let node = FakeNode::start(|_, _| {
        Reply::Json(
            200,
            vec![],
            r#"{"id":1,"url":"http://127.0.0.1:3001","role":"leader","term":3,"leader":1,"vote":1,"last_index":9,"commit_index":9,"applied_index":9,"snapshot_index":0,"members":[1,2,4],"learners":[5],"outgoing":[1,2,3],"cluster_id":"00c0ffee00c0ffee","keys":2}"#.into(),
        )
    });
    let out = client(&[&node.url], &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "cluster id:     00c0ffee00c0ffee\n",
        "members:        1, 2, 4\noutgoing:       1, 2, 3 (joint phase)\nlearners:       5\n",
    ] {
        assert!(stdout.contains(line), "{line:?} missing: {stdout}");
    }

    // An older server sends none of the new fields.
    let old = FakeNode::start(|_, _| {
        Reply::Json(
            200,
            vec![],
            r#"{"id":1,"url":"http://127.0.0.1:3001","role":"follower","term":3,"leader":2,"vote":2,"last_index":9,"commit_index":9,"applied_index":9,"snapshot_index":0,"members":[1,2,3],"keys":2}"#.into(),
        )
    });
    let out = client(&[&old.url], &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("members:        1, 2, 3\nkeys:"),
        "{stdout}"
    );
    assert!(!stdout.contains("cluster id"), "{stdout}");
}

/// `put --if-index`/`--if-absent` and `delete --if-index` send their
/// condition; a 412 exits 5 with the key's index, and `get --json` shows it.
#[test]
fn conditional_writes_send_their_condition_and_a_412_exits_5() {
    let node = FakeNode::start(|r, _| {
        if is_register(r) {
            return session(3);
        }
        match (r.method.as_str(), r.target.as_str()) {
            ("GET", "/key/k") => Reply::Json(
                200,
                vec![("etag", "\"12\"".into())],
                r#"{"key":"k","value":"v","mod_index":12}"#.into(),
            ),
            ("PUT", "/key/k") if r.header("if-match") == Some("\"12\"") => Reply::Json(
                200,
                vec![],
                r#"{"key":"k","index":13,"prev":"v","served_by":1,"mod_index":13}"#.into(),
            ),
            ("PUT", "/key/k") | ("DELETE", "/key/k") => Reply::Json(
                412,
                vec![],
                r#"{"error":"precondition failed: key `k` has modification index 12","mod_index":12}"#
                    .into(),
            ),
            ("PUT", "/key/new") => Reply::Json(
                412,
                vec![],
                r#"{"error":"precondition failed: key `new` is absent","mod_index":null}"#.into(),
            ),
            _ => Reply::Json(404, vec![], r#"{"error":"not found"}"#.into()),
        }
    });
    // Plain get prints the bare value; --json adds the index.
    let out = client(&[&node.url], &["get", "k"]);
    assert_eq!(text(&out.stdout), "v\n");
    let out = client(&[&node.url], &["get", "k", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["mod_index"], 12);

    let out = client(
        &[&node.url],
        &["put", "k", "w", "--if-index", "12", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["mod_index"], 13);

    let out = client(&[&node.url], &["put", "k", "w", "--if-index", "11"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "error: precondition failed: key \"k\" has modification index 12; nothing was written\n"
    );
    let out = client(&[&node.url], &["put", "k", "w", "--if-absent"]);
    assert_eq!(out.status.code(), Some(5));
    let out = client(&[&node.url], &["delete", "k", "--if-index", "4"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("modification index 12"));
    let out = client(&[&node.url], &["put", "new", "x", "--if-index", "4"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("key \"new\" is absent"));

    let writes: Vec<Request> = node
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !is_register(r))
        .collect();
    let conditions: Vec<(Option<&str>, Option<&str>)> = writes
        .iter()
        .map(|r| (r.header("if-match"), r.header("if-none-match")))
        .collect();
    assert_eq!(
        conditions,
        [
            (Some("\"12\""), None),
            (Some("\"11\""), None),
            (None, Some("*")),
            (Some("\"4\""), None),
            (Some("\"4\""), None),
        ]
    );
}

/// `delete --prefix` prints the count; `list` follows continue tokens until
/// its limit.
#[test]
fn prefix_delete_prints_the_count_and_list_follows_continue_tokens() {
    let node = FakeNode::start(|r, _| {
        if is_register(r) {
            return session(3);
        }
        let item = |k: &str| format!(r#"{{"key":"{k}","value":"v"}}"#);
        match (r.method.as_str(), r.target.as_str()) {
            ("DELETE", "/keys?prefix=app%2F") => Reply::Json(
                200,
                vec![],
                r#"{"deleted":3,"index":9,"served_by":1}"#.into(),
            ),
            ("GET", "/keys?prefix=a&limit=5") => Reply::Json(
                200,
                vec![],
                format!(
                    r#"{{"items":[{},{}],"truncated":true,"continue":"t1"}}"#,
                    item("a1"),
                    item("a2")
                ),
            ),
            ("GET", "/keys?prefix=a&limit=3&continue=t1") => Reply::Json(
                200,
                vec![],
                format!(
                    r#"{{"items":[{},{}],"truncated":true,"continue":"t2"}}"#,
                    item("a3"),
                    item("a4")
                ),
            ),
            ("GET", "/keys?prefix=a&limit=1&continue=t2") => Reply::Json(
                200,
                vec![],
                format!(
                    r#"{{"items":[{}],"truncated":true,"continue":"t3"}}"#,
                    item("a5")
                ),
            ),
            _ => Reply::Json(400, vec![], r#"{"error":"unexpected request"}"#.into()),
        }
    });
    let out = client(&[&node.url], &["delete", "--prefix", "app/"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3\n");
    let deletes: Vec<Request> = node
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes[0].header("x-raft-client-id"), Some("3"));

    let out = client(&[&node.url], &["list", "--prefix", "a", "--limit", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a1\tv\na2\tv\na3\tv\na4\tv\na5\tv\n");
    assert!(text(&out.stderr).contains("more keys match"));
}
