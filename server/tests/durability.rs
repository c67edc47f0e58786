//! Durability across crashes (real processes, SIGKILL): no acknowledged
//! write is ever lost — not when single nodes are killed while clients
//! write, not when the whole cluster is killed at once, not across
//! snapshots and log compaction, and not when a follower's disk is wiped
//! and it is caught up again through InstallSnapshot.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Cluster, ClusterOptions};

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// What the test knows about one key: the last value whose write was
/// acknowledged, and the values attempted after it whose outcome is unknown
/// (a failed request may still have been committed).
#[derive(Default)]
struct KeyHistory {
    acked: Option<String>,
    unknown_after_ack: Vec<String>,
}

impl KeyHistory {
    fn allows(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => {
                self.acked.as_deref() == Some(v) || self.unknown_after_ack.iter().any(|u| u == v)
            }
            None => self.acked.is_none(),
        }
    }
}

fn options(snapshot_every: u64) -> ClusterOptions {
    ClusterOptions {
        extra_args: vec![
            "--snapshot-every".into(),
            snapshot_every.to_string(),
            "--request-timeout-ms".into(),
            "3000".into(),
            "--election-wait-ms".into(),
            "3000".into(),
        ],
        ..ClusterOptions::default()
    }
}

async fn write(c: &mut Cluster, keys: &mut BTreeMap<String, KeyHistory>, key: &str, value: &str) {
    let ok = c.put_anywhere(key, value).await;
    let h = keys.entry(key.to_string()).or_default();
    if ok {
        h.acked = Some(value.to_string());
        h.unknown_after_ack.clear();
    } else {
        h.unknown_after_ack.push(value.to_string());
    }
}

/// Reads every key linearizably from the leader and checks it against what
/// was acknowledged.
async fn check_all(c: &mut Cluster, keys: &BTreeMap<String, KeyHistory>) {
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let mut acked = 0;
    for (key, h) in keys {
        let r = c.get(leader, key, false).await;
        let status = r.status();
        let value = if status == 200 {
            let v: serde_json::Value = r.json().await.expect("json");
            Some(v["value"].as_str().expect("value").to_string())
        } else {
            assert_eq!(status, 404, "GET {key}");
            None
        };
        assert!(
            h.allows(value.as_deref()),
            "key {key}: read {value:?}, but the last acknowledged value is {:?} (unknown later attempts: {:?})",
            h.acked,
            h.unknown_after_ack
        );
        acked += h.acked.is_some() as usize;
    }
    assert!(
        acked * 10 >= keys.len() * 8,
        "too few writes were acknowledged: {acked}/{}",
        keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kills_snapshots_and_a_whole_cluster_crash() {
    let mut c = Cluster::start_with(3, options(40)).await;
    c.wait_for_leader(LEADER_TIMEOUT).await;
    let mut keys = BTreeMap::new();
    // A fixed kill schedule: (after write n, kill node), restarted 15 writes later.
    let schedule = [(30u64, 1u64), (75, 2), (120, 3), (165, 0)];
    let mut down: Option<(u64, u64)> = None;
    for n in 0..220u64 {
        let key = format!("key-{}", n % 60);
        write(&mut c, &mut keys, &key, &format!("value-{n}")).await;
        if let Some(&(_, victim)) = schedule.iter().find(|(at, _)| *at == n) {
            // Victim 0 means "the current leader".
            let victim = if victim == 0 {
                c.wait_for_leader(LEADER_TIMEOUT).await
            } else {
                victim
            };
            c.kill(victim);
            down = Some((victim, n + 15));
        }
        if let Some((victim, back_at)) = down {
            if n == back_at {
                c.restart(victim).await;
                down = None;
            }
        }
        if n == 100 {
            // An explicit snapshot in the middle, on top of the automatic ones.
            let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
            let r = c
                .http()
                .post(format!("{}/admin/snapshot", c.url(leader)))
                .send()
                .await
                .expect("snapshot request");
            assert_eq!(r.status(), 200, "POST /admin/snapshot");
        }
    }
    if let Some((victim, _)) = down {
        c.restart(victim).await;
    }
    check_all(&mut c, &keys).await;

    // Every node dies at once (power loss), then the cluster comes back.
    for id in c.ids() {
        c.kill(id);
    }
    for id in c.ids() {
        c.restart(id).await;
    }
    check_all(&mut c, &keys).await;
    for id in c.ids() {
        let s = c.status(id).await.expect("status");
        assert!(s.snapshot_index > 0, "node {id} never took a snapshot");
    }
}

/// A follower whose data directory was emptied (a replaced disk) must not
/// rejoin as the same member: it forgot its votes and its log. Started
/// again with its old flags it is refused; removed and added back, it joins
/// as a new member and is caught up by InstallSnapshot in chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_is_refused_then_re_added_and_caught_up_by_install_snapshot() {
    let mut opts = options(20);
    // Small chunks, so that the snapshot has to travel in several; no
    // catch-up margin, so that the leader's log no longer starts at 1.
    opts.extra_args.extend([
        "--snapshot-chunk-bytes".into(),
        "1024".into(),
        "--snapshot-catchup-entries".into(),
        "0".into(),
    ]);
    let mut c = Cluster::start_with(3, opts).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let mut keys = BTreeMap::new();
    for n in 0..80u64 {
        write(&mut c, &mut keys, &format!("k{n}"), &format!("v{n:0>100}")).await;
    }
    let follower = c
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    c.kill(follower);
    std::fs::remove_dir_all(c.data_dir(follower)).expect("wipe the follower's data");
    // More writes while it is gone, so the leader compacts past everything
    // the follower could ask for.
    for n in 80..120u64 {
        write(&mut c, &mut keys, &format!("k{n}"), &format!("v{n:0>100}")).await;
    }
    let leader_status = c.status(leader).await.expect("leader status");
    assert!(leader_status.snapshot_index > 0, "leader never compacted");
    // Its old flags found a cluster only on an empty directory; the peers
    // know this member's old data directory, so it refuses to start.
    let args = c.args(follower);
    c.spawn_with(follower, args);
    let exit = c.wait_exit(follower, Duration::from_secs(20)).await;
    assert!(!exit.success(), "a wiped member started: {exit:?}");
    let log = c.log(follower);
    assert!(
        log.contains("is already a member") && log.contains("member remove"),
        "{log}"
    );
    // The operator's way back: remove it, add it again, start it with --join.
    let members = format!("{}/cluster/members", c.url(leader));
    let r = c
        .http()
        .delete(format!("{members}/{follower}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = c
        .http()
        .post(&members)
        .json(&serde_json::json!({"id": follower, "url": c.url(follower)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    std::fs::remove_dir_all(c.data_dir(follower)).expect("clear the refused start's files");
    let args = c.join_args(follower, leader);
    c.spawn_with(follower, args);
    c.wait_healthy(follower, Duration::from_secs(20))
        .await
        .expect("the re-added member starts");
    let want = keys["k119"].acked.clone();
    let f = follower;
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(20),
        "the wiped follower catches up",
        || {
            let want = want.clone();
            async move { cref.local_value(f, "k119").await == want }
        },
    )
    .await;
    let s = c.status(follower).await.expect("follower status");
    assert!(
        s.snapshot_index > 0,
        "the follower was caught up without a snapshot: {s:?}"
    );
    // It came in chunks, and was reassembled whole at least once.
    let chunks = c
        .metric(follower, "raft_snapshot_chunks_received_total")
        .await
        .expect("follower metrics");
    let whole = c
        .metric(follower, "raft_snapshots_received_total")
        .await
        .expect("follower metrics");
    assert!(
        whole >= 1.0 && chunks > whole,
        "{chunks} chunks for {whole} snapshots"
    );
    // Every key is on the follower itself (stale local reads).
    for (key, h) in &keys {
        if let Some(v) = &h.acked {
            assert_eq!(
                c.local_value(follower, key).await.as_ref(),
                Some(v),
                "key {key}"
            );
        }
    }
}
