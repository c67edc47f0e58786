//! Membership and identity with real processes: the configuration lives in
//! the log, so an operator's slip on restart cannot run another quorum, and
//! members are added, promoted, removed and replaced without losing an
//! acknowledged write.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use raft_core::wire::{MemberRole, MembersResponse};
use raft_core::Role;
use support::{Cluster, ClusterOptions};

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

fn options() -> ClusterOptions {
    ClusterOptions {
        extra_args: vec![
            "--request-timeout-ms".into(),
            "3000".into(),
            "--election-wait-ms".into(),
            "3000".into(),
        ],
        ..ClusterOptions::default()
    }
}

/// Writes `key` through the running nodes until one acknowledges it (a
/// failed attempt may still commit, so every attempt writes the same value).
async fn put_acked(c: &mut Cluster, key: &str, value: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !c.put_anywhere(key, value).await {
        assert!(
            std::time::Instant::now() < deadline,
            "no node acknowledged {key}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `prefix000`.. for `range` through the running nodes (each
/// acknowledged, [`put_acked`]) and records them in `acked`.
async fn put_range(
    c: &mut Cluster,
    prefix: &str,
    range: std::ops::Range<u32>,
    acked: &mut BTreeMap<String, String>,
) {
    for n in range {
        let (k, v) = (format!("{prefix}{n:03}"), format!("v{n}"));
        put_acked(c, &k, &v).await;
        acked.insert(k, v);
    }
}

/// `POST /cluster/members` through `via` for node `id` (already given a
/// slot with [`Cluster::add_node`]), then starts it with `--join`.
async fn add_and_join(c: &mut Cluster, id: u64, via: u64) -> MembersResponse {
    let r = c
        .http()
        .post(format!("{}/cluster/members", c.url(via)))
        .json(&serde_json::json!({"id": id, "url": c.url(id)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let m: MembersResponse = r.json().await.unwrap();
    let args = c.join_args(id, via);
    c.spawn_with(id, args);
    c.wait_healthy(id, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("node {id} starts: {e}"));
    m
}

/// Waits until node `id` holds every key of `acked` with its value, on its
/// own disk (local reads).
async fn wait_holds(c: &Cluster, id: u64, acked: &BTreeMap<String, String>) {
    for (k, v) in acked {
        c.wait_until(
            LEADER_TIMEOUT,
            &format!("node {id} holds {k}"),
            || async move { c.local_value(id, k).await.as_ref() == Some(v) },
        )
        .await;
    }
}

/// `GET /cluster/members` on node `id`.
async fn members(c: &Cluster, id: u64) -> Option<MembersResponse> {
    let r = c
        .http()
        .get(format!("{}/cluster/members", c.url(id)))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

fn roles(m: &MembersResponse) -> Vec<(u64, MemberRole)> {
    m.members.iter().map(|x| (x.id, x.role)).collect()
}

/// The operator's slip from the issue: a follower restarted without
/// `--peers`. Its configuration comes from its log, so it stays a follower
/// of the three-member cluster instead of electing itself alone; the
/// writes acknowledged meanwhile are on every member afterwards, and the
/// restart with the right flags changes nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_without_peers_keeps_the_configuration_in_its_log() {
    let mut c = Cluster::start_with(3, options()).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    for n in 0..5 {
        put_acked(&mut c, &format!("before{n}"), "v").await;
    }
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    c.kill(follower);
    let mut args = c.args(follower);
    let i = args.iter().position(|a| a == "--peers").unwrap();
    args.drain(i..i + 2);
    c.spawn_with(follower, args);
    c.wait_healthy(follower, Duration::from_secs(20))
        .await
        .expect("the follower restarts without --peers");
    for n in 1..=5 {
        put_acked(&mut c, &format!("real{n}"), &format!("r{n}")).await;
    }
    // It follows the cluster's leader, and knows all three voters.
    let f = follower;
    let cref = &c;
    cref.wait_until(LEADER_TIMEOUT, "the follower holds real5", || async move {
        cref.local_value(f, "real5").await.as_deref() == Some("r5")
    })
    .await;
    let s = c.status(follower).await.expect("status");
    assert_eq!(s.role, Role::Follower, "{s:?}");
    assert_eq!(s.members, vec![1, 2, 3], "{s:?}");
    assert!(
        c.log(follower)
            .contains("no --peers given: using the configuration in the log"),
        "{}",
        c.log_tail(follower, 20)
    );
    // Restart it again, with the right flags: nothing to win, nothing lost.
    c.restart(follower).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    for id in c.ids() {
        for n in 1..=5 {
            let key = format!("real{n}");
            let want = format!("r{n}");
            let cref = &c;
            cref.wait_until(LEADER_TIMEOUT, &format!("node {id} holds {key}"), || {
                let (key, want) = (key.clone(), want.clone());
                async move { cref.local_value(id, &key).await == Some(want) }
            })
            .await;
        }
    }
    let ls = c.status(leader).await.expect("leader status");
    for id in c.ids() {
        let s = c.status(id).await.expect("status");
        assert!(s.commit_index <= ls.commit_index, "{s:?} vs leader {ls:?}");
    }
}

/// The other slip: a member restarted with `--peers` naming another
/// cluster's members keeps the configuration in its log and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_peers_on_restart_are_warned_about_and_ignored() {
    let mut c = Cluster::start_with(3, options()).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    put_acked(&mut c, "k", "v").await;
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    c.kill(follower);
    let mut args = c.args(follower);
    let i = args.iter().position(|a| a == "--peers").unwrap();
    // Only one other member: as a flag this would be a two-member cluster.
    args[i + 1] = format!("{leader}={}", c.url(leader));
    c.spawn_with(follower, args);
    c.wait_healthy(follower, Duration::from_secs(20))
        .await
        .expect("restarts");
    let log = c.log(follower);
    assert!(
        log.contains("differs from the configuration in this node's log"),
        "{}",
        c.log_tail(follower, 20)
    );
    let f = follower;
    let cref = &c;
    cref.wait_until(
        LEADER_TIMEOUT,
        "the follower reports all three voters",
        || async move {
            cref.status(f)
                .await
                .is_some_and(|s| s.members == vec![1, 2, 3] && s.leader.is_some())
        },
    )
    .await;
}

/// The end-to-end story: grow to four members, promote the new one
/// automatically, lose and remove node 1, lose another voter, and keep
/// writing; the new member holds every acknowledged key, and the removed
/// member, restarted, cannot disturb the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_promote_remove_and_keep_every_acknowledged_write() {
    let mut c = Cluster::start_with(3, options()).await;
    let mut acked = BTreeMap::new();
    put_range(&mut c, "a", 0..50, &mut acked).await;
    // Add node 4 (the add-then-start order of the README) and start it with --join.
    c.add_node(4);
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let via = c
        .ids()
        .into_iter()
        .find(|&id| id != leader && id <= 3)
        .unwrap();
    let m = add_and_join(&mut c, 4, via).await;
    assert!(
        roles(&m).contains(&(4, MemberRole::Learner)),
        "node 4 joins as a learner: {m:?}"
    );
    // Writes go on while it catches up; then it is promoted on its own.
    put_range(&mut c, "a", 50..80, &mut acked).await;
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(30),
        "node 4 is promoted to voter",
        || async move {
            members(cref, 1).await.is_some_and(|m| {
                !m.joint
                    && roles(&m)
                        == vec![
                            (1, MemberRole::Voter),
                            (2, MemberRole::Voter),
                            (3, MemberRole::Voter),
                            (4, MemberRole::Voter),
                        ]
            })
        },
    )
    .await;
    // Node 4 persisted the configuration it learned: its status shows it.
    let s4 = c.status(4).await.expect("node 4 status");
    assert_eq!(s4.members, vec![1, 2, 3, 4], "{s4:?}");
    assert_eq!(s4.cluster_id, c.status(1).await.unwrap().cluster_id);

    // Lose node 1 for good, then remove it (three of four are up: a quorum
    // of both the old and the new configuration).
    c.kill(1);
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let r = c
        .http()
        .delete(format!("{}/cluster/members/1", c.url(leader)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let m: MembersResponse = r.json().await.unwrap();
    assert_eq!(
        roles(&m),
        vec![
            (2, MemberRole::Voter),
            (3, MemberRole::Voter),
            (4, MemberRole::Voter)
        ],
        "{m:?}"
    );
    // Lose another voter (not node 4): two of three still make a quorum.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let victim = if leader == 4 { 2 } else { leader };
    c.kill(victim);
    put_range(&mut c, "a", 80..110, &mut acked).await;
    // Node 4 holds every acknowledged key, on its own disk (local reads).
    wait_holds(&c, 4, &acked).await;
    // The removed member comes back with its old flags. It may still believe
    // it is a voter, but the members refuse its stream and ignore its
    // campaigns: the leader and its term stay.
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let before = c.status(leader).await.expect("leader status");
    let refused_before = c
        .metric(leader, "raft_peer_streams_rejected_total")
        .await
        .unwrap_or(0.0);
    let log_len = c.log(1).len();
    let args = c.args(1);
    c.spawn_with(1, args);
    c.wait_healthy(1, Duration::from_secs(20))
        .await
        .expect("node 1 restarts");
    // Wait until it has campaigned (its log says when its role changes) and
    // the leader has refused its stream, then look at the leader.
    let cref = &c;
    cref.wait_until(
        Duration::from_secs(30),
        "the removed node campaigns and the leader refuses its stream",
        || async move {
            let campaigned = cref.log(1)[log_len..]
                .lines()
                .any(|l| l.contains("role changed") && l.contains("role=pre_candidate"));
            let refused = cref
                .metric(leader, "raft_peer_streams_rejected_total")
                .await
                .unwrap_or(0.0);
            campaigned && refused > refused_before
        },
    )
    .await;
    let after = c.status(leader).await.expect("leader status");
    assert_eq!(after.role, Role::Leader, "{after:?}");
    assert_eq!(after.term, before.term, "the removed node changed the term");
    // And writes still go through.
    put_acked(&mut c, "after-removed-node-returned", "yes").await;
}

/// Quorum loss: two of three members are lost for good. The survivor,
/// restarted with `--force-new-cluster`, leads alone with every key it
/// held; a new member is added back and gets them all; starting the
/// survivor with the flag again, once the configuration changed, is
/// refused instead of dropping the member added back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_forced_into_a_new_cluster_keeps_every_key() {
    let mut c = Cluster::start_with(3, options()).await;
    let mut acked = BTreeMap::new();
    put_range(&mut c, "q", 0..30, &mut acked).await;
    let leader = c.wait_for_leader(LEADER_TIMEOUT).await;
    let survivor = c.ids().into_iter().find(|&id| id != leader).unwrap();
    // The survivor has every acknowledged key before the others are lost
    // (an entry acknowledged was on a majority, not necessarily on it).
    wait_holds(&c, survivor, &acked).await;
    for id in c.ids() {
        c.kill(id);
    }
    let mut args = c.args(survivor);
    args.push("--force-new-cluster".into());
    c.spawn_with(survivor, args.clone());
    c.wait_healthy(survivor, Duration::from_secs(20))
        .await
        .expect("the survivor starts alone");
    assert!(
        c.log(survivor).contains("FORCED A NEW CLUSTER"),
        "the rewrite is logged loudly:\n{}",
        c.log_tail(survivor, 20)
    );
    let cref = &c;
    cref.wait_until(LEADER_TIMEOUT, "the survivor leads alone", || async move {
        cref.status(survivor)
            .await
            .is_some_and(|s| s.role == Role::Leader && s.members == vec![survivor])
    })
    .await;
    for (k, v) in &acked {
        let r = c.get(survivor, k, false).await;
        assert_eq!(r.status(), 200, "linearizable read of {k}");
        assert!(r.text().await.unwrap().contains(v.as_str()), "{k}");
    }
    assert_eq!(c.put(survivor, "after", "alone").await.status(), 200);
    acked.insert("after".into(), "alone".into());

    // A new member is added back and receives everything.
    c.add_node(4);
    add_and_join(&mut c, 4, survivor).await;
    wait_holds(&c, 4, &acked).await;

    // The flag left on the survivor's command line: refused, not applied.
    c.kill(survivor);
    c.spawn_with(survivor, args);
    let status = c.wait_exit(survivor, Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = c.log(survivor);
    assert!(
        log.contains("already applied") && log.contains("Remove the flag"),
        "{}",
        c.log_tail(survivor, 10)
    );
    // Without it, the survivor starts with the configuration it had: node
    // 4 is still its member.
    let plain = c.args(survivor);
    c.spawn_with(survivor, plain);
    c.wait_healthy(survivor, Duration::from_secs(20))
        .await
        .expect("the survivor restarts without the flag");
    let s = c.status(survivor).await.expect("status");
    assert!(s.members.contains(&4) || s.learners.contains(&4), "{s:?}");
}
