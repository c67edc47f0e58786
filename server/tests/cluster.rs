//! Multi-process tests: real `raft-kv-server` processes on loopback, killed,
//! restarted and partitioned. Every wait is a condition with a deadline.

mod support;

use std::time::{Duration, Instant};

use raft_core::wire::{
    ErrorBody, KeyValue, ListResponse, LogWindowResponse, SessionResponse, WriteResponse,
};
use raft_core::Role;
use support::{free_ports, http_client, server_binary, wait_until, Cluster, ClusterOptions};

const ELECTION: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_serves_reads_writes_and_lists() {
    let mut c = Cluster::start(1).await;
    assert_eq!(c.wait_for_leader(ELECTION).await, 1);
    let r = c.put(1, "a/1", "one").await;
    assert_eq!(r.status(), 200);
    let w: WriteResponse = r.json().await.unwrap();
    assert_eq!((w.key.as_str(), w.prev, w.served_by), ("a/1", None, 1));
    let r = c.put(1, "a/1", "uno").await;
    let w2: WriteResponse = r.json().await.unwrap();
    assert_eq!(w2.prev.as_deref(), Some("one"));
    assert!(w2.index > w.index);
    c.put(1, "a/2", "two").await;
    c.put(1, "b", "three").await;

    let r = c.get(1, "a/1", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-raft-served-by"], "1");
    assert!(r.headers()["x-raft-leader"]
        .to_str()
        .unwrap()
        .starts_with("1 http://127.0.0.1:"));
    let kv: KeyValue = r.json().await.unwrap();
    assert_eq!(kv.value, "uno");
    assert_eq!(c.get(1, "missing", false).await.status(), 404);

    let list: ListResponse = c.get_json(1, "/keys?prefix=a/&limit=1").await;
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].key, "a/1");
    assert!(list.truncated);

    let r = c
        .http()
        .delete(format!("{}/key/b", c.url(1)))
        .send()
        .await
        .unwrap();
    let w: WriteResponse = r.json().await.unwrap();
    assert_eq!(w.prev.as_deref(), Some("three"));
    assert_eq!(c.get(1, "b", false).await.status(), 404);

    let st = c.status(1).await.unwrap();
    assert_eq!(
        (st.role, st.members.clone(), st.keys),
        (Role::Leader, vec![1], 2)
    );
    let metrics = c.metrics_text(1).await.expect("node 1 metrics");
    for name in [
        "raft_term ",
        "raft_role{role=\"leader\"} 1",
        "raft_commit_index ",
        "raft_applied_index ",
        "raft_proposals_total ",
        "raft_leader_changes_total ",
        "raft_peer_messages_rejected_total ",
        "http_request_duration_seconds_bucket{route=\"/key/{*key}\",method=\"PUT\",status=\"2xx\"",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_on_a_follower_is_forwarded_and_every_node_reads_it() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(ELECTION).await;
    let follower = c.ids().into_iter().find(|&i| i != leader).unwrap();
    let r = c.put(follower, "greeting", "hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-raft-forwarded"], "1");
    assert_eq!(
        r.headers()["x-raft-served-by"],
        follower.to_string().as_str()
    );
    let w: WriteResponse = r.json().await.unwrap();
    assert_eq!(w.served_by, leader);
    // Linearizable reads on every node see the write at once.
    for id in c.ids() {
        let r = c.get(id, "greeting", false).await;
        assert_eq!(r.status(), 200, "node {id}");
        let kv: KeyValue = r.json().await.unwrap();
        assert_eq!(kv.value, "hello", "node {id}");
    }
    // Stale reads catch up.
    for id in c.ids() {
        c.wait_until(
            Duration::from_secs(5),
            "stale reads see the write",
            || async { c.local_value(id, "greeting").await.as_deref() == Some("hello") },
        )
        .await;
    }
    // The cluster view gathers every member.
    let cluster: serde_json::Value = c.get_json(follower, "/cluster").await;
    let members = cluster["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m["status"]["term"].is_u64()),
        "{cluster}"
    );
    assert_eq!(cluster["leader"], leader);
    // A session registered through a follower is forwarded to the leader
    // and its writes are accepted anywhere.
    let r = c
        .http()
        .post(format!("{}/sessions", c.url(follower)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-raft-forwarded"], "1");
    let session: SessionResponse = r.json().await.unwrap();
    assert_eq!(session.served_by, leader);
    let r = c
        .http()
        .put(format!("{}/key/greeting", c.url(follower)))
        .header("x-raft-client-id", session.client_id.to_string())
        .header("x-raft-client-seq", "1")
        .json(&serde_json::json!({ "value": "again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Writes `key=value` through any surviving node until one succeeds; returns
/// how long it took.
async fn write_until_ok(c: &Cluster, nodes: &[u64], key: &str, value: &str) -> Duration {
    let started = Instant::now();
    let client = http_client();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        for &id in nodes {
            let r = client
                .put(format!("{}/key/{key}", c.url(id)))
                .json(&serde_json::json!({ "value": value }))
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => return started.elapsed(),
                Ok(r) => {
                    last = format!(
                        "node {id}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )
                }
                Err(e) => last = format!("node {id}: {e}"),
            }
        }
    }
    panic!("no write succeeded within 20 s; last: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut c = Cluster::start(3).await;
    let old = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(old, "k", "before").await.status(), 200);
    let survivors: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();

    c.kill(old);
    let took = write_until_ok(&c, &survivors, "k", "after").await;
    eprintln!("failover: first successful write {took:?} after SIGKILL of leader {old}");
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    let new = c.wait_for_leader(ELECTION).await;
    assert_ne!(new, old);

    c.restart(old).await;
    c.wait_until(
        Duration::from_secs(10),
        "the old leader applies the new write",
        || async { c.local_value(old, "k").await.as_deref() == Some("after") },
    )
    .await;
    let st = c.status(old).await.unwrap();
    assert_eq!(st.role, Role::Follower);
    assert_eq!(st.leader, Some(new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_cannot_commit_and_the_partition_heals() {
    let mut c = Cluster::start(3).await;
    let old = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(old, "k", "v1").await.status(), 200);
    c.isolate(old).await;
    let majority: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();

    // The isolated leader cannot commit: the write is answered 503/504, never 200.
    let r = c.put(old, "k", "lost").await;
    let status = r.status().as_u16();
    let body: ErrorBody = r.json().await.unwrap();
    assert!(
        matches!(status, 503 | 504),
        "isolated write answered {status}: {body:?}"
    );
    assert!(!body.error.is_empty());

    // The majority elects a leader and commits.
    write_until_ok(&c, &majority, "k", "v2").await;
    assert_eq!(c.local_value(old, "k").await.as_deref(), Some("v1"));

    c.heal().await;
    c.wait_until(
        Duration::from_secs(10),
        "the old leader catches up",
        || async { c.local_value(old, "k").await.as_deref() == Some("v2") },
    )
    .await;
    let leader = c.wait_for_leader(ELECTION).await;
    for id in c.ids() {
        let kv: KeyValue = c.get(id, "k", false).await.json().await.unwrap();
        assert_eq!(kv.value, "v2", "node {id} (leader {leader})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_waiting_requests_and_exits_zero() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(leader, "durable", "yes").await.status(), 200);
    // Without its followers the leader cannot commit: this write waits.
    for id in c.ids().into_iter().filter(|&i| i != leader) {
        c.kill(id);
    }
    let url = format!("{}/key/pending", c.url(leader));
    let pending = tokio::spawn(async move {
        let started = Instant::now();
        let r = http_client()
            .put(url)
            .json(&serde_json::json!({"value": "x"}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.text().await.unwrap(),
            started.elapsed(),
        )
    });
    // Wait until the write is in flight (proposed) before signalling.
    c.wait_until(Duration::from_secs(5), "the write is proposed", || async {
        c.metric(leader, "raft_proposals_total")
            .await
            .is_some_and(|n| n > 1.0)
    })
    .await;
    c.terminate(leader);
    let exit = c.wait_exit(leader, Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit}");
    let (status, body, took) = pending.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    assert!(
        took < Duration::from_secs(4),
        "the waiting write took {took:?}"
    );

    // The data survives a restart.
    c.restart(leader).await;
    for id in c.ids().into_iter().filter(|&i| i != leader) {
        c.restart(id).await;
    }
    c.wait_for_leader(ELECTION).await;
    let kv: KeyValue = c.get(leader, "durable", false).await.json().await.unwrap();
    assert_eq!(kv.value, "yes");
}

/// Open peer streams do not hold a stopping node up: with every member
/// streaming to every other, SIGTERM on the leader ends it well inside the
/// HTTP drain timeout (10 s), and the others keep serving. Before it stops,
/// the leader hands leadership to a caught-up follower (TimeoutNow): the
/// successor leads the very next term, with no election timeout waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_open_peer_streams_exits_promptly() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(leader, "k", "v").await.status(), 200);
    let term = c.status(leader).await.expect("leader status").term;
    for id in c.ids() {
        c.wait_until(
            Duration::from_secs(10),
            "every node has a stream from each of the others",
            || async { c.metric(id, "raft_peer_streams_open").await == Some(2.0) },
        )
        .await;
    }
    let started = Instant::now();
    c.terminate(leader);
    let exit = c.wait_exit(leader, Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert!(exit.success(), "exit status {exit}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    let new = c.wait_for_leader(ELECTION).await;
    assert_ne!(new, leader);
    let log = c.log(leader);
    assert!(
        log.contains("handing leadership to node") && log.contains("leadership handed over"),
        "{}",
        c.log_tail(leader, 10)
    );
    assert_eq!(
        c.status(new).await.expect("new leader status").term,
        term + 1
    );
    // The successor's log says why it campaigned.
    let why = format!("leader {leader} handed leadership over (TimeoutNow)");
    assert!(c.log(new).contains(&why), "{}", c.log_tail(new, 10));
    assert_eq!(c.put(new, "k", "w").await.status(), 200);
}

/// The seed README's commands, verbatim (data under the working directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_readme_commands_work_verbatim() {
    let busy: Vec<u16> = (3001..=3003)
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    if !busy.is_empty() {
        eprintln!("SKIPPED seed_readme_commands_work_verbatim: ports {busy:?} are in use here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = server_binary();
    let commands = [
        "--node-id 1 --port 3001 --peers 2,3",
        "--node-id 2 --port 3002 --peers 1,3",
        "--node-id 3 --port 3003 --peers 1,2",
    ];
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut procs = Kill(Vec::new());
    for (i, args) in commands.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("node{}.log", i + 1))).unwrap();
        procs.0.push(
            std::process::Command::new(&bin)
                .args(args.split(' '))
                .current_dir(dir.path())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let http = http_client();
    wait_until(ELECTION, "the seed cluster accepts a write", || async {
        http.put("http://127.0.0.1:3001/key/mykey")
            .header("content-type", "application/json")
            .body(r#"{"value":"myvalue"}"#)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for port in 3001..=3003 {
        let kv: KeyValue = http
            .get(format!("http://127.0.0.1:{port}/key/mykey"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(kv.value, "myvalue");
        let st: serde_json::Value = http
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(st["leader"].is_u64(), "{st}");
    }
    // Data went to ./data/node-<id> under the working directory.
    for id in 1..=3 {
        assert!(dir.path().join(format!("data/node-{id}")).is_dir());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_given_by_the_helper_are_distinct() {
    let p = free_ports(5);
    let mut q = p.clone();
    q.sort_unstable();
    q.dedup();
    assert_eq!(p.len(), q.len());
    let _ = ClusterOptions::default();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot_and_a_full_restart_keeps_everything() {
    // No catch-up margin: the leader drops its log at each snapshot.
    let mut c = snapshotting_cluster(40, 0).await;
    let leader = c.wait_for_leader(ELECTION).await;
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.kill(lagging);
    for i in 0..150 {
        let r = c
            .put(leader, &format!("key{i:03}"), &format!("value{i}"))
            .await;
        assert_eq!(r.status(), 200, "write {i}");
    }
    // The leader compacts past the lagging follower's log (which ends at
    // 2). Snapshots are taken off the loop, at points staggered by node id
    // (every 40 to about 66 entries here), so wait for one.
    let cref = &c;
    cref.wait_until(ELECTION, "the leader compacted past entry 40", || async {
        cref.status(leader)
            .await
            .is_some_and(|st| st.snapshot_index >= 40)
    })
    .await;

    // The restarted follower's log ends before the leader's first index:
    // only an InstallSnapshot can bring it up to date.
    c.restart(lagging).await;
    c.wait_until(
        Duration::from_secs(15),
        "the lagging follower catches up",
        || async { c.local_value(lagging, "key149").await.as_deref() == Some("value149") },
    )
    .await;
    let st = c.status(lagging).await.unwrap();
    assert!(st.snapshot_index > 0, "caught up by snapshot: {st:?}");
    assert_eq!(st.keys, 150);

    // SIGKILL everyone, start everyone: snapshot + WAL replay restore all.
    for id in c.ids() {
        c.kill(id);
    }
    for id in c.ids() {
        c.restart(id).await;
    }
    c.wait_for_leader(ELECTION).await;
    for id in c.ids() {
        let list: ListResponse = c.get_json(id, "/keys?prefix=key").await;
        assert_eq!(list.items.len(), 150, "node {id}");
        assert_eq!(list.items[7].value, "value7");
    }
}

/// The catch-up margin: a follower stopped while the leader takes a
/// snapshot, and a few hundred entries behind when it comes back, is sent
/// the entries it misses, not a snapshot, because the leader keeps
/// `--snapshot-catchup-entries` applied entries in its log after a
/// snapshot (with 0, the test above, the same follower needs one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_briefly_behind_a_leader_snapshot_gets_entries_not_a_snapshot() {
    let mut c = snapshotting_cluster(100, 400).await;
    let leader = c.wait_for_leader(ELECTION).await;
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    put_range(&c, leader, 0..300).await;
    let cref = &c;
    cref.wait_until(ELECTION, "the follower applied every write", || async {
        cref.local_value(lagging, "key0299").await.as_deref() == Some("value299")
    })
    .await;
    let stopped_at = c.status(lagging).await.expect("status").last_index;
    c.kill(lagging);
    put_range(&c, leader, 300..600).await;
    // The leader snapshots past the stopped follower's log (every 100 to
    // about 166 entries here, off the loop: wait for it).
    let cref = &c;
    cref.wait_until(
        ELECTION,
        "the leader snapshots past the follower",
        || async {
            cref.status(leader)
                .await
                .is_some_and(|st| st.snapshot_index > stopped_at)
        },
    )
    .await;
    c.restart(lagging).await;
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(15),
        "the stopped follower catches up",
        || async { cref.local_value(lagging, "key0599").await.as_deref() == Some("value599") },
    )
    .await;
    for id in c.ids() {
        let sent = c.metric(id, "raft_snapshots_sent_total").await;
        assert_eq!(sent, Some(0.0), "node {id} sent no snapshot");
    }
    let received = c.metric(lagging, "raft_snapshots_received_total").await;
    assert_eq!(received, Some(0.0), "the follower got entries");
    assert!(
        !c.log(lagging)
            .contains("installing snapshot from the leader"),
        "no snapshot installed"
    );
}

/// A follower too far behind for the catch-up margin is sent a snapshot: the
/// newest snapshot file of the leader, which is newer than the one its Raft
/// core compacted to (that one is at least the margin behind the applied
/// index), and its acknowledgement of the newer index moves it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_is_sent_the_newest_snapshot_file_not_the_cores_older_one() {
    let mut c = snapshotting_cluster(100, 300).await;
    let leader = c.wait_for_leader(ELECTION).await;
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.kill(lagging);
    put_range(&c, leader, 0..700).await;
    let applied = c.status(leader).await.expect("status").applied_index;
    // The core's snapshot is at most `applied - 300`; the newest file is
    // more recent (node 1 to 3 snapshot every 100 to about 166 entries).
    let cref = &c;
    cref.wait_until(
        ELECTION,
        "the leader's newest snapshot is recent",
        || async {
            cref.status(leader)
                .await
                .is_some_and(|st| st.snapshot_index > applied - 300)
        },
    )
    .await;
    c.restart(lagging).await;
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(15),
        "the lagging follower catches up",
        || async { cref.local_value(lagging, "key0699").await.as_deref() == Some("value699") },
    )
    .await;
    let installed = installed_snapshots(&c, lagging);
    assert!(
        installed.iter().any(|&i| i > applied - 300),
        "installed {installed:?}, the core's snapshot is at most {}",
        applied - 300
    );
}

/// Between snapshots, which the size rule spaces out as the state grows,
/// checkpoints compact the log in memory every `--snapshot-every` entries
/// with no file written: the leader's log in memory starts past its newest
/// snapshot file. A follower down meanwhile still catches up: the leader
/// cannot send a file that old, so it writes a new snapshot first and sends
/// that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_compact_the_log_in_memory_past_the_newest_snapshot_file() {
    let mut c = snapshotting_cluster(100, 50).await;
    let leader = c.wait_for_leader(ELECTION).await;
    let lagging = c.ids().into_iter().find(|&i| i != leader).unwrap();
    c.kill(lagging);
    // A few large values first, then small puts: after the first snapshot
    // (at 100 entries, with the large values) the size rule waits for a
    // log of half its size, more than the small puts ever add up to.
    let large = "x".repeat(20_000);
    for i in 0..12 {
        let r = c.put(leader, &format!("large{i}"), &large).await;
        assert_eq!(r.status(), 200, "large write {i}");
    }
    put_range(&c, leader, 0..1500).await;
    let cref = &c;
    cref.wait_until(
        ELECTION,
        "the leader's log in memory starts past its newest snapshot",
        || async {
            let (Some(st), window) = (
                cref.status(leader).await,
                cref.get_json::<LogWindowResponse>(leader, "/log?limit=1")
                    .await,
            ) else {
                return false;
            };
            // At most a checkpoint interval and the margin stay in memory.
            window.first_index > st.snapshot_index + 1
                && window.last_index - window.first_index < 100 + 50 + 100
        },
    )
    .await;
    let core_start = c
        .get_json::<LogWindowResponse>(leader, "/log?limit=1")
        .await
        .first_index;
    c.restart(lagging).await;
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(20),
        "the lagging follower catches up",
        || async { cref.local_value(lagging, "key1499").await.as_deref() == Some("value1499") },
    )
    .await;
    let installed = installed_snapshots(&c, lagging);
    assert!(
        installed.iter().any(|&i| i + 1 >= core_start),
        "installed {installed:?}; the leader's log in memory started at {core_start}"
    );
}

/// Three nodes that snapshot every `every` entries and keep a catch-up
/// margin of `margin` entries.
async fn snapshotting_cluster(every: u64, margin: u64) -> Cluster {
    Cluster::start_with(
        3,
        ClusterOptions {
            extra_args: vec![
                "--snapshot-every".into(),
                every.to_string(),
                "--snapshot-catchup-entries".into(),
                margin.to_string(),
            ],
            ..ClusterOptions::default()
        },
    )
    .await
}

/// The indexes of the snapshots node `id` installed from a leader, from its
/// log.
fn installed_snapshots(c: &Cluster, id: u64) -> Vec<u64> {
    c.log(id)
        .lines()
        .filter(|l| l.contains("installing snapshot from the leader"))
        .filter_map(|l| {
            let at = l.find("index=")? + "index=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Writes `key{i:04}` = `value{i}` for each `i` of `range` through `leader`.
async fn put_range(c: &Cluster, leader: u64, range: std::ops::Range<u32>) {
    for i in range {
        let r = c
            .put(leader, &format!("key{i:04}"), &format!("value{i}"))
            .await;
        assert_eq!(r.status(), 200, "write {i}");
    }
}

/// Sends `GET /healthz` on `stream` and reads one whole answer.
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> String {
    request_on(stream, "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await
}

/// Sends one raw HTTP/1.1 request on `stream` and returns the whole answer
/// (head and body).
async fn request_on(stream: &mut tokio::net::TcpStream, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send a request");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    // The head, then content-length bytes of body.
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().expect("a content-length"));
            if answer.len() >= end + 4 + len {
                return String::from_utf8_lossy(&answer).to_string();
            }
        }
        let n = stream.read(&mut chunk).await.expect("read an answer");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_and_peer_streams_stay() {
    use tokio::io::AsyncReadExt;
    const IDLE: Duration = Duration::from_secs(2);
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            extra_args: vec!["--idle-timeout-ms".into(), IDLE.as_millis().to_string()],
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(leader, "before", "1").await.status(), 200);
    let mut streams_before = Vec::new();
    for id in c.ids() {
        let n = c.metric(id, "raft_peer_streams_accepted_total").await;
        streams_before.push(n.expect("metrics answer"));
    }

    let addr = ("127.0.0.1", c.port(leader));
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(healthz_on(&mut idle).await.starts_with("HTTP/1.1 200"));
    let opened = Instant::now();
    // One connection keeps sending requests well inside the timeout: it
    // stays open across more than one timeout's length.
    while opened.elapsed() < IDLE + IDLE / 2 {
        assert!(healthz_on(&mut busy).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(IDLE / 8).await;
    }
    // The other sent nothing more: the node has closed it (EOF), or closes
    // it within the deadline.
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut rest))
        .await
        .expect("the idle connection was not closed within 20 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "got {read:?} on an idle connection"
    );

    // The peer streams, upgraded out of the HTTP server, were not cut: no
    // member accepted a new one, and the cluster still commits.
    for (i, id) in c.ids().into_iter().enumerate() {
        let n = c.metric(id, "raft_peer_streams_accepted_total").await;
        assert_eq!(
            n,
            Some(streams_before[i]),
            "node {id} accepted a new peer stream"
        );
    }
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    assert_eq!(c.put(follower, "after", "2").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_connection_limit_a_node_refuses_clients_and_still_admits_peers() {
    use tokio::io::AsyncReadExt;
    const MAX: usize = 64;
    let mut c = Cluster::start_with(
        3,
        ClusterOptions {
            extra_args: vec!["--max-connections".into(), MAX.to_string()],
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(leader, "before", "1").await.status(), 200);
    let streams = c
        .metric(leader, "raft_peer_streams_accepted_total")
        .await
        .expect("metrics answer");
    let addr = ("127.0.0.1", c.port(leader));

    // Open client connections, each kept open after one request, until the
    // leader refuses one: it must happen before the limit, since the last
    // 32 slots are kept for peers.
    let mut held = Vec::new();
    let refused = loop {
        assert!(
            held.len() < MAX,
            "{} connections and none refused",
            held.len()
        );
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = healthz_on(&mut conn).await;
        if answer.starts_with("HTTP/1.1 200") {
            held.push(conn);
            continue;
        }
        break (conn, answer);
    };
    let (mut refused_conn, answer) = refused;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error\""), "a JSON error: {answer}");
    assert!(
        held.len() <= MAX - 32,
        "{} client connections served",
        held.len()
    );
    // The refused connection is closed by the node.
    let mut rest = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), refused_conn.read(&mut rest))
        .await
        .expect("the refused connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");

    // A restarted follower opens a new peer stream to the leader: it is
    // admitted into the reserve, and replication reaches the follower.
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    c.kill(follower);
    c.restart(follower).await;
    let put = "PUT /key/during HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
               content-length: 13\r\n\r\n{\"value\":\"2\"}";
    let answer = request_on(&mut held[0], put).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let index = json_body(&answer)["index"].as_u64().expect("an index");
    // The leader learns that the follower has the write only from the
    // follower's own stream. Asked on a connection the leader holds open,
    // since a new one would be refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = request_on(
            &mut held[1],
            "GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        )
        .await;
        let status = json_body(&status);
        let matched = status["followers"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["id"].as_u64() == Some(follower)))
            .and_then(|f| f["match_index"].as_u64());
        if matched >= Some(index) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never heard from the restarted follower: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Clients are served again once connections close.
    drop(held);
    c.wait_until(
        Duration::from_secs(15),
        "a new client connection is served",
        || async {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            healthz_on(&mut conn).await.starts_with("HTTP/1.1 200")
        },
    )
    .await;
    let now = c.metric(leader, "raft_peer_streams_accepted_total").await;
    assert!(now > Some(streams), "no new peer stream: {now:?}");
    let refusals = c.metric(leader, "http_connections_refused_total").await;
    assert!(refusals >= Some(1.0), "{refusals:?}");
}

/// The JSON body of a raw HTTP answer.
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
}

/// `--log-format json`: every line the node writes is one JSON object with
/// a level, and the start-up line carries its fields at the top level. The
/// access log (debug, target `raft_kv_server::access`) names each request's
/// method, path and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let opts = ClusterOptions {
        // The helper runs nodes at `info,raft_kv_server=debug`, which
        // includes the access log.
        extra_args: vec!["--log-format".into(), "json".into()],
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start_with(1, opts).await;
    c.wait_for_leader(ELECTION).await;
    assert_eq!(c.put(1, "logged", "v").await.status(), 200);
    let log = c.log(1);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");
    let started = lines
        .iter()
        .find(|l| l["message"] == "raft-kv node started")
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    assert!(started["startup_ms"].is_u64(), "{started}");
    assert!(
        lines.iter().any(|l| l["target"] == "raft_kv_server::access"
            && l["method"] == "PUT"
            && l["path"] == "/key/logged"
            && l["status"] == 200),
        "no access line for the put in:\n{log}"
    );
}
