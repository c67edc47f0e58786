use raft_core::sim::{Cluster, SimConfig};
use raft_core::Faults;

#[test]
fn dbg() {
    let seed = 58;
    let mut cfg = SimConfig::randomized(seed);
    cfg.raft.faults = Faults::default();
    cfg.nemesis.weights = [8, 0, 0, 0, 0, 0, 0];
    cfg.nemesis.crash_at_write = 0.0;
    cfg.nemesis.pause = 0.0;
    cfg.nemesis.down_time = (1, 40);
    cfg.network.redeliver_after_restart = 1.0;
    cfg.network.latency = (5, 40);
    cfg.clients.mix = [80, 20, 0, 0];
    cfg.check_direct_rules = true;
    let mut c = Cluster::new(cfg).unwrap();
    let r = c.run_to_end();
    println!("{:?}", r.violations.first().map(|v| v.to_string()));
    for o in c.history().ops() {
        let k = o.op.key();
        if k == "k4" || k == "k" || (k.len() <= 2 && "k4".starts_with(k)) {
            println!(
                "#{} c{} {} cid={} seq={} [{}..{:?}] {:?} idx={:?} by {:?}",
                o.id,
                o.client,
                o.op,
                o.client_id,
                o.seq,
                o.invoke_order,
                o.complete_order,
                o.outcome,
                o.index,
                o.served_by
            );
        }
    }
}
