//! The real `raft-kv-client` binary against a real 3-node cluster (started
//! by the shared helper in server/tests/support): the seed's commands, the
//! other commands, JSON output, exit codes, and following the leader when
//! the first server in the list is down.

#[path = "../../server/tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::Cluster;

fn client(servers: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(["--server", servers, "--timeout", "10s"])
        .args(args)
        .output()
        .expect("run raft-kv-client")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_a_real_cluster() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await;
    let follower = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let f_url = c.url(follower);

    // The seed's commands, through a follower.
    let put = client(&f_url, &["put", "mykey", "myvalue"]);
    ok(&put);
    assert_eq!(stdout(&put), "OK");
    for id in c.ids() {
        let get = client(&c.url(id), &["get", "mykey"]);
        ok(&get);
        assert_eq!(stdout(&get), "myvalue", "get through node {id}");
    }
    let status = client(&f_url, &["--json", "status"]);
    ok(&status);
    let s: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status JSON");
    assert_eq!(s["id"], follower);
    assert_eq!(s["leader"], leader);

    // Not found is exit 1; delete; list by prefix.
    let missing = client(&f_url, &["get", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    ok(&client(&f_url, &["put", "user/1", "ann"]));
    ok(&client(&f_url, &["put", "user/2", "bob"]));
    let list = client(&f_url, &["--json", "list", "--prefix", "user/"]);
    ok(&list);
    let l: serde_json::Value = serde_json::from_str(&stdout(&list)).expect("list JSON");
    let keys: Vec<&str> = l["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["user/1", "user/2"]);
    ok(&client(&f_url, &["delete", "user/1"]));
    assert_eq!(client(&f_url, &["get", "user/1"]).status.code(), Some(1));

    // Keys are taken as written: `.`, `..`, a dotted path and escapes
    // round-trip through a follower and the leader, each its own key.
    ok(&client(&f_url, &["put", "a", "plain"]));
    for (key, value) in [
        ("..", "up"),
        (".", "here"),
        ("x/y/../../a", "dots"),
        ("100%/done", "pct"),
    ] {
        ok(&client(&f_url, &["put", key, value]));
        for via in [&f_url, &c.url(leader)] {
            let get = client(via, &["get", key]);
            ok(&get);
            assert_eq!(stdout(&get), value, "get {key:?} through {via}");
        }
    }
    ok(&client(&f_url, &["delete", "x/y/../../a"]));
    let get = client(&c.url(leader), &["get", "a"]);
    ok(&get);
    assert_eq!(stdout(&get), "plain", "deleting x/y/../../a touched key a");

    // The cluster table names every member and the leader.
    let table = client(&f_url, &["cluster"]);
    ok(&table);
    let text = stdout(&table);
    assert!(text.contains(&format!("leader: {leader}")), "{text}");
    assert_eq!(text.matches("http://127.0.0.1:").count(), 3, "{text}");

    // With the leader killed and listed first, the client moves on to the
    // others and the write lands once a new leader is elected.
    let l_url = c.url(leader);
    c.kill(leader);
    let others: Vec<String> = c
        .ids()
        .into_iter()
        .filter(|&i| i != leader)
        .map(|i| c.url(i))
        .collect();
    let list = format!("{l_url},{}", others.join(","));
    let put = client(&list, &["put", "after", "failover"]);
    ok(&put);
    let get = client(&others[0], &["get", "after"]);
    ok(&get);
    assert_eq!(stdout(&get), "failover");

    // With every server down the client gives up with exit 3.
    for id in c.ids() {
        c.kill(id);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(["--server", &list, "--timeout", "1s", "get", "mykey"])
        .output()
        .expect("run raft-kv-client");
    assert_eq!(out.status.code(), Some(3));
}

/// A short smoke run of the load generator against a real cluster, so the
/// bench keeps working (benchmarks themselves never run in the tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_run() {
    let mut c = Cluster::start(3).await;
    c.wait_for_leader(Duration::from_secs(20)).await;
    let servers: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(["--server", &servers.join(","), "bench", "--json", "--quiet"])
        .args([
            "--workload",
            "mixed",
            "--read-ratio",
            "0.5",
            "--connections",
            "4",
        ])
        // A count, not a duration: a slow machine makes the run longer,
        // never empty.
        .args(["--ops", "200", "--warmup", "200ms", "--keys", "50"])
        .output()
        .expect("run raft-kv-client bench");
    ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("bench JSON");
    assert_eq!(report["ops"], 200, "{report}");
    assert!(report["ok"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["write_latency_us"].is_object(), "{report}");
}

/// Backup and restore: `snapshot save` writes a verified backup through a
/// follower; a new three-member cluster restored from it (`--restore`) holds
/// every key under a new cluster id; a damaged backup is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster() {
    let token = "backup-test-token";
    let opts = support::ClusterOptions {
        token: Some(token.into()),
        ..support::ClusterOptions::default()
    };
    let mut old = Cluster::start_with(3, opts).await;
    let leader = old.wait_for_leader(Duration::from_secs(20)).await;
    let follower = old.ids().into_iter().find(|&i| i != leader).unwrap();
    let url = old.url(follower);
    for n in 0..40 {
        ok(&client(
            &url,
            &["put", &format!("b{n:02}"), &format!("v{n}")],
        ));
    }
    let file = old.dir().join("backup.snap");
    let file_arg = file.to_str().unwrap();
    let refused = client(&url, &["snapshot", "save", file_arg]);
    assert_ne!(
        refused.status.code(),
        Some(0),
        "admin: refused without the token"
    );
    assert!(!file.exists());
    let saved = client(
        &url,
        &["--token", token, "--json", "snapshot", "save", file_arg],
    );
    ok(&saved);
    let s: serde_json::Value = serde_json::from_str(&stdout(&saved)).expect("JSON");
    assert!(s["index"].as_u64().unwrap() >= 41, "{s}");
    let old_id = old.status(leader).await.unwrap().cluster_id;

    let opts = support::ClusterOptions {
        extra_args: vec!["--restore".into(), file_arg.into()],
        ..support::ClusterOptions::default()
    };
    let mut new = Cluster::start_with(3, opts).await;
    let leader = new.wait_for_leader(Duration::from_secs(20)).await;
    let status = new.status(leader).await.unwrap();
    assert_ne!(status.cluster_id, old_id, "a restored cluster is a new one");
    assert_eq!(status.members, vec![1, 2, 3]);
    for id in new.ids() {
        for n in [0, 17, 39] {
            let got = client(&new.url(id), &["get", &format!("b{n:02}")]);
            ok(&got);
            assert_eq!(stdout(&got), format!("v{n}"), "node {id}");
        }
    }
    ok(&client(&new.url(leader), &["put", "after", "restore"]));
    // Restarted with the same flags, a restored member keeps its data.
    new.restart(1).await;
    new.wait_for_leader(Duration::from_secs(20)).await;
    let got = client(&new.url(1), &["get", "after"]);
    ok(&got);
    assert_eq!(stdout(&got), "restore");

    // A damaged backup: refused before anything is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = old.dir().join("damaged.snap");
    std::fs::write(&damaged, bytes).unwrap();
    new.add_node(9);
    // Node 9's flags name the good backup (every node's do); point it at
    // the damaged one instead.
    let mut args = new.args(9);
    let at = args.iter().position(|a| a == "--restore").unwrap();
    args[at + 1] = damaged.to_str().unwrap().to_string();
    new.spawn_with(9, args);
    let exit = new.wait_exit(9, Duration::from_secs(20)).await;
    assert!(!exit.success());
    assert!(
        new.log(9).contains("not a usable backup"),
        "{}",
        new.log_tail(9, 5)
    );
}

/// Script habits: `version` names both sides; `cluster` exits 3 when a
/// member does not answer (after printing what it has); with `--json`, an
/// error is a JSON object on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_cluster_exit_code_and_json_errors() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(Duration::from_secs(20)).await;
    let url = c.url(leader);
    let v = client(&url, &["version"]);
    ok(&v);
    let text = stdout(&v);
    assert!(
        text.contains(&format!("client {}", env!("CARGO_PKG_VERSION"))) && text.contains("server "),
        "{text}"
    );
    ok(&client(&url, &["cluster"]));
    let down = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.kill(down);
    let cluster = client(&url, &["cluster"]);
    assert_eq!(cluster.status.code(), Some(3), "{}", stdout(&cluster));
    assert!(
        String::from_utf8_lossy(&cluster.stderr).contains("did not answer"),
        "{}",
        String::from_utf8_lossy(&cluster.stderr)
    );
    let missing = client(&url, &["--json", "get", "no-such-key"]);
    assert_eq!(missing.status.code(), Some(1));
    let err: serde_json::Value =
        serde_json::from_slice(&missing.stderr).expect("a JSON error on stderr");
    assert_eq!(err["exit_code"], 1);
    assert!(
        err["error"].as_str().unwrap().contains("no-such-key"),
        "{err}"
    );
}

/// Values from stdin (`put k -`) and from a file (`--file`), read back
/// byte for byte with `get --raw`; a value that is not UTF-8 is refused
/// before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_stdin_and_files_and_raw_reads() {
    use std::io::Write as _;
    let mut c = Cluster::start(1).await;
    c.wait_for_leader(Duration::from_secs(20)).await;
    let url = c.url(1);
    let text = "line one\nline two\n";
    let mut put = Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args([
            "--server",
            &url,
            "--timeout",
            "10s",
            "put",
            "from-stdin",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run raft-kv-client");
    put.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    ok(&put.wait_with_output().unwrap());
    let raw = client(&url, &["get", "--raw", "from-stdin"]);
    ok(&raw);
    assert_eq!(raw.stdout, text.as_bytes());

    let file = c.dir().join("value.txt");
    std::fs::write(&file, "from a file").unwrap();
    ok(&client(
        &url,
        &["put", "from-file", "--file", file.to_str().unwrap()],
    ));
    let raw = client(&url, &["get", "--raw", "from-file"]);
    assert_eq!(raw.stdout, b"from a file");

    let binary = c.dir().join("binary.bin");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let refused = client(&url, &["put", "bin", "--file", binary.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not UTF-8"));
    assert_eq!(client(&url, &["get", "bin"]).status.code(), Some(1));
}
