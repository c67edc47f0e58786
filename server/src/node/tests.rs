//! The Raft loop on one node with in-memory storage.

use super::*;
use crate::storage::MemoryStorage;
use raft_core::{Command, Op, OpResult, Role};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// A single node has no peers: nothing to send.
struct NoPeers;

impl Outbound for NoPeers {
    fn set_peers(&mut self, _peers: &BTreeMap<NodeId, String>) {}

    fn send(&self, _messages: Vec<Message>) {}

    fn take_queued(&self) -> bool {
        false
    }
}

fn single_node(snapshot_every: u64) -> (Node, NodeHandle, NodeInbox) {
    let metrics = Arc::new(Metrics::default());
    let identity = crate::identity::Identity {
        cluster_id: 1,
        node_id: 1,
        incarnation: 1,
        origin: crate::identity::Origin::Founder,
    };
    let directory = Arc::new(Directory::new(
        identity,
        "http://test".into(),
        crate::identity::PeerIncarnations::load(None).unwrap(),
        BTreeMap::new(),
    ));
    let mut storage = MemoryStorage::new();
    let founders = PersistedState::bootstrap(Membership::new(vec![1]));
    storage
        .persist(None, &founders.entries, Some(founders.hard_state))
        .unwrap();
    create(
        Config::new(1),
        founders,
        Box::new(storage),
        Box::new(NoPeers),
        metrics,
        NodeOptions {
            tick: Duration::from_millis(10),
            snapshot_every,
            url: "http://test".into(),
            decoded: DecodedSnapshot::default(),
            directory,
        },
    )
    .unwrap()
}

fn put(k: &str, v: &str) -> Command {
    Command {
        client_id: 0,
        seq: 0,
        op: Op::Put {
            key: k.into(),
            value: v.into(),
        },
    }
}

#[tokio::test]
async fn single_node_commits_reads_and_snapshots() {
    let (node, handle, inbox) = single_node(5);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node.run(inbox, async {
        let _ = stop_rx.await;
    }));
    for i in 0..12 {
        let out = handle.propose(put(&format!("k{i}"), "v")).await.unwrap();
        assert_eq!(out.result, OpResult::Put { prev: None });
    }
    let r = handle.read(Query::Get("k3".into()), true).await.unwrap();
    let QueryResult::Value(Some(got)) = r else {
        panic!("k3 not found: {r:?}")
    };
    assert_eq!(got.value, "v");
    let r = handle
        .read(
            Query::List {
                prefix: "k1".into(),
                after: None,
                limit: 2,
            },
            false,
        )
        .await
        .unwrap();
    let QueryResult::List { items, truncated } = r else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert!(truncated);
    // Automatic snapshots are written off the loop: wait for one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = handle.status().await.unwrap();
        if status.snapshot_index >= 5 || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status.role, Role::Leader);
    assert!(status.snapshot_index >= 5, "{status:?}");
    // An admin snapshot answers once its snapshot is recorded.
    let idx = handle.snapshot().await.unwrap();
    assert_eq!(idx, status.applied_index);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        handle.propose(put("x", "y")).await,
        Err(NodeError::ShuttingDown)
    );
}

#[tokio::test]
async fn a_write_costs_one_persist_and_moving_the_commit_index_none() {
    let (node, handle, inbox) = single_node(0);
    let metrics = node.metrics.clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(node.run(inbox, async {
        let _ = stop_rx.await;
    }));
    handle.propose(put("warm", "up")).await.unwrap();
    let before = metrics.persists.load(Ordering::Relaxed);
    for i in 0..10 {
        handle.propose(put(&format!("k{i}"), "v")).await.unwrap();
    }
    // One persist per entry; the Ready that commits it (a new commit
    // index in the hard state) is not written on its own.
    assert_eq!(metrics.persists.load(Ordering::Relaxed) - before, 10);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn members_snapshot_at_staggered_points() {
    let p: Vec<_> = (1..=4).map(|id| staggered_policy(id, 600)).collect();
    assert_eq!(
        (p[0].every, p[0].log_percent),
        (600, 50),
        "node 1: the flag as given"
    );
    assert_eq!((p[1].every, p[1].log_percent), (800, 66));
    assert_eq!((p[2].every, p[2].log_percent), (1000, 83));
    assert_eq!(p[3], p[0], "node 4 as node 1");
    assert_eq!(staggered_policy(2, 0).every, 0, "0 stays off");
}
