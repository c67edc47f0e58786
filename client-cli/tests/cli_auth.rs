//! The real `raft-kv-client` binary's `user`, `role` and `auth` commands and
//! `--user` against a real cluster (the shared helper in
//! server/tests/support): create root and a read-only user, enable auth,
//! and see the refusals exit 4 with the server's message.

#[path = "../../server/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Cluster, ClusterOptions};

const CLUSTER_TOKEN: &str = "cli-cluster-token";

/// Runs the client against `server` with `env` set and `stdin` written to
/// its standard input.
fn client(server: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raft-kv-client"));
    cmd.args(["--server", server, "--timeout", "10s"])
        .args(args)
        .env_remove("RAFT_KV_PASSWORD")
        .env_remove("RAFT_KV_NEW_PASSWORD")
        .env_remove("RAFT_KV_USER")
        .env_remove("RAFT_KV_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run raft-kv-client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("client output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        stderr(o)
    );
}

fn refused(o: &Output, status: &str) {
    assert_eq!(o.status.code(), Some(4), "stderr: {}", stderr(o));
    assert!(
        stderr(o).contains(&format!("server answered {status}")),
        "{}",
        stderr(o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_and_auth_from_the_command_line() {
    let mut c = Cluster::start_with(
        1,
        ClusterOptions {
            token: Some(CLUSTER_TOKEN.into()),
            ..ClusterOptions::default()
        },
    )
    .await;
    c.wait_for_leader(Duration::from_secs(20)).await;
    let url = c.url(1);
    let admin = |args: &[&str], env: &[(&str, &str)], stdin: &str| {
        let mut all = vec!["--token", CLUSTER_TOKEN];
        all.extend_from_slice(args);
        client(&url, &all, env, stdin)
    };

    // Before auth: the cluster token manages users and roles.
    ok(&client(&url, &["put", "app/x", "orig"], &[], ""));
    ok(&admin(
        &["user", "add", "root"],
        &[("RAFT_KV_NEW_PASSWORD", "rootpw")],
        "",
    ));
    ok(&admin(&["user", "grant-role", "root", "root"], &[], ""));
    ok(&admin(
        &["user", "add", "alice", "--password-stdin"],
        &[],
        "alicepw\n",
    ));
    // No password anywhere: a usage error, nothing sent.
    let no_password = admin(&["user", "add", "bob"], &[], "");
    assert_eq!(
        no_password.status.code(),
        Some(2),
        "{}",
        stderr(&no_password)
    );
    ok(&admin(&["role", "add", "reader"], &[], ""));
    ok(&admin(
        &["role", "grant", "reader", "--prefix", "app/", "--read"],
        &[],
        "",
    ));
    ok(&admin(&["user", "grant-role", "alice", "reader"], &[], ""));
    // Without the cluster token: 401, exit 4.
    refused(&client(&url, &["user", "list"], &[], ""), "401");
    let status = admin(&["auth", "status"], &[], "");
    ok(&status);
    assert!(stdout(&status).contains("disabled"), "{}", stdout(&status));

    ok(&admin(&["auth", "enable"], &[], ""));
    let status = admin(&["--json", "auth", "status"], &[], "");
    ok(&status);
    let s: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status JSON");
    assert_eq!(s["enabled"], true);

    let alice = [("RAFT_KV_PASSWORD", "alicepw")];
    let root = [("RAFT_KV_PASSWORD", "rootpw")];
    // Anonymous: 401. Alice reads app/ but may not write it: 403, and the
    // key is unchanged.
    refused(&client(&url, &["put", "app/x", "anon"], &[], ""), "401");
    refused(
        &client(
            &url,
            &["--user", "alice", "put", "app/x", "new"],
            &alice,
            "",
        ),
        "403",
    );
    let get = client(&url, &["--user", "alice", "get", "app/x"], &alice, "");
    ok(&get);
    assert_eq!(stdout(&get), "orig");
    // The password from stdin when RAFT_KV_PASSWORD is not set.
    let get = client(&url, &["--user", "alice", "get", "app/x"], &[], "alicepw\n");
    ok(&get);
    assert_eq!(stdout(&get), "orig");
    refused(
        &client(&url, &["--user", "alice", "get", "app/x"], &[], "wrong\n"),
        "401",
    );
    // Management needs root now; alice gets 403.
    refused(
        &client(&url, &["--user", "alice", "user", "list"], &alice, ""),
        "403",
    );
    let users = client(
        &url,
        &["--user", "root", "--json", "user", "list"],
        &root,
        "",
    );
    ok(&users);
    let u: serde_json::Value = serde_json::from_str(&stdout(&users)).expect("users JSON");
    assert_eq!(u[0]["name"], "alice");
    assert_eq!(u[0]["roles"], serde_json::json!(["reader"]));
    let roles = client(&url, &["--user", "root", "role", "list"], &root, "");
    ok(&roles);
    assert!(
        stdout(&roles).contains("\"app/\"=read"),
        "{}",
        stdout(&roles)
    );
    // Revoking the permission stops alice's reads.
    ok(&client(
        &url,
        &[
            "--user", "root", "role", "revoke", "reader", "--prefix", "app/",
        ],
        &root,
        "",
    ));
    refused(
        &client(&url, &["--user", "alice", "get", "app/x"], &alice, ""),
        "403",
    );
    // A password change: the new one works, the old one does not.
    ok(&client(
        &url,
        &["--user", "root", "user", "passwd", "alice"],
        &[
            ("RAFT_KV_PASSWORD", "rootpw"),
            ("RAFT_KV_NEW_PASSWORD", "alice2"),
        ],
        "",
    ));
    refused(
        &client(&url, &["--user", "alice", "list"], &alice, ""),
        "401",
    );
    refused(
        &client(
            &url,
            &["--user", "alice", "list", "--prefix", "app/"],
            &[("RAFT_KV_PASSWORD", "alice2")],
            "",
        ),
        "403",
    );
    ok(&client(
        &url,
        &["--user", "root", "put", "app/x", "root"],
        &root,
        "",
    ));
    ok(&client(
        &url,
        &["--user", "root", "auth", "disable"],
        &root,
        "",
    ));
    ok(&client(&url, &["put", "app/x", "open"], &[], ""));
}
