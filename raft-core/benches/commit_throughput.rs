//! Entries committed per second through an in-memory 3-node cluster: no
//! disk, no sockets, only the protocol core. The leader takes `batch`
//! proposals per round; every `Ready` is carried out at once (persist is a
//! no-op, messages are handed straight to the recipient).
//!
//! `cargo bench -p raft-core --bench commit_throughput`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raft_core::{Command, Config, Membership, Message, Op, PersistedState, RawNode};

struct Cluster {
    nodes: Vec<RawNode>,
    inbox: Vec<Message>,
    applied: u64,
}

impl Cluster {
    fn new() -> Self {
        let members = Membership::new(vec![1, 2, 3]);
        let nodes = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(id);
                cfg.max_inflight = 1024;
                RawNode::new(cfg, PersistedState::bootstrap(members.clone())).unwrap()
            })
            .collect();
        let mut c = Cluster {
            nodes,
            inbox: Vec::new(),
            applied: 0,
        };
        c.nodes[0].campaign();
        c.settle();
        assert!(c.nodes[0].is_leader());
        c
    }

    /// Runs Readies and deliveries until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while node.has_ready() {
                    moved = true;
                    let mut ready = node.ready();
                    self.inbox.append(&mut ready.messages);
                    self.inbox.append(&mut ready.persisted_messages);
                    if i == 0 {
                        self.applied += ready.committed_entries.len() as u64;
                    }
                    node.advance(ready);
                }
            }
            for m in std::mem::take(&mut self.inbox) {
                moved = true;
                let to = (m.to - 1) as usize;
                let _ = self.nodes[to].step(m);
            }
            if !moved {
                return;
            }
        }
    }

    fn round(&mut self, batch: usize, seq: &mut u64) {
        for _ in 0..batch {
            *seq += 1;
            let op = Op::Put {
                key: format!("k{}", *seq % 1024),
                value: "0123456789abcdef".into(),
            };
            self.nodes[0]
                .propose(Command {
                    client_id: 0,
                    seq: 0,
                    op,
                })
                .unwrap();
        }
        self.settle();
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("3 nodes, {batch} proposals per Ready"), |b| {
            b.iter_custom(|rounds| {
                let mut cluster = Cluster::new();
                let mut seq = 0;
                let start = Instant::now();
                for _ in 0..rounds {
                    cluster.round(batch, &mut seq);
                }
                let took = start.elapsed();
                assert!(cluster.applied >= rounds * batch as u64);
                took
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
