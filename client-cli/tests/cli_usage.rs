//! Runs the built `raft-kv-client` for usage errors (exit 2) and for an
//! unreachable server (exit 3 with one line on stderr).

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raft-kv-client"))
        .args(args)
        .env_remove("RAFT_KV_SERVER")
        .env_remove("RAFT_KV_TOKEN")
        .output()
        .expect("run raft-kv-client")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port on which nothing listens: bind an ephemeral port, then free it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["get"],
        &["frobnicate"],
        &["put", "only-key"],
        &["--timeout", "soon", "status"],
        &["--server", "https://127.0.0.1:3001", "status"],
        &["get", "k", "--consistency", "eventual"],
        &["transfer-leader", "zero"],
        &["member", "frobnicate"],
        &["member", "add", "0", "http://x:1"],
        &["member", "add", "4", "ftp://x"],
        &["member", "add", "4", "http://x:1/path"],
        &["member", "add", "4"],
        &["member", "promote", "0"],
        &["member", "remove", "two"],
        &["bench", "--rate", "100", "--connections", "4"],
        &["bench", "--workload", "scan"],
    ] {
        let out = client(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn member_without_a_subcommand_shows_its_usage_and_exits_2() {
    let out = client(&["member"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("Usage: raft-kv-client member"), "{err}");
    for command in ["list", "add", "promote", "remove"] {
        assert!(err.contains(command), "{command} missing: {err}");
    }
}

#[test]
fn help_documents_exit_codes() {
    let out = client(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("3  cluster unavailable"), "{help}");
    for command in [
        "get", "put", "delete", "list", "status", "cluster", "member", "bench",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
    let out = client(&["member", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["list", "add", "promote", "remove"] {
        assert!(
            help.contains(command),
            "{command} missing from member --help"
        );
    }
}

#[test]
fn unreachable_server_exits_3_with_one_line() {
    let server = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["put", "k", "v"][..],
        &["get", "k"],
        &["get", "k", "--consistency", "stale"],
        &["delete", "k"],
        &["status"],
        &["cluster"],
        &["member", "list"],
        &["member", "add", "4", "http://127.0.0.1:3004"],
        &["member", "remove", "4"],
        &["bench", "--ops", "10"],
    ] {
        let mut full = vec!["--server", server.as_str(), "--timeout", "400ms"];
        full.extend_from_slice(args);
        let started = Instant::now();
        let out = client(&full);
        let took = started.elapsed();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(
            err.starts_with("error: cluster unavailable"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

#[test]
fn every_server_of_a_list_is_tried() {
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let list = format!("{a},{b}");
    let out = client(&["--server", &list, "--timeout", "300ms", "get", "k"]);
    assert_eq!(out.status.code(), Some(3));
    // The last error names one of the servers; both were attempted in turn.
    let err = stderr(&out);
    assert!(err.contains(&a) || err.contains(&b), "{err}");
}

/// When every server refuses the connection (nothing listens on any of
/// them), the CLI says so at once instead of retrying until `--timeout`:
/// the error names the refusal, not the deadline.
#[test]
fn every_server_refusing_fails_without_waiting_for_the_timeout() {
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let list = format!("{a},{b}");
    for args in [&["get", "k"][..], &["put", "k", "v"], &["status"]] {
        let mut full = vec!["--server", list.as_str(), "--timeout", "10m"];
        full.extend_from_slice(args);
        let out = client(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("every server refused the connection"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("within 10m"), "{args:?}: {err}");
    }
}

/// `completions SHELL` prints a script that knows the subcommands, without
/// contacting any server (none is listening here); an unknown shell is a
/// usage error.
#[test]
fn completions_are_generated_offline() {
    let port = free_port().to_string();
    let server = format!("http://127.0.0.1:{port}");
    for shell in ["bash", "zsh", "fish"] {
        let out = client(&["--server", &server, "completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("raft-kv-client") && script.contains("snapshot"),
            "{shell} script:\n{script}"
        );
    }
    assert_eq!(client(&["completions", "tcsh"]).status.code(), Some(2));
}
