//! An in-process cluster for scenario scripts: every message goes through a
//! queue the script controls, nodes persist exactly what their `Ready`s ask,
//! and a crash loses everything else. Members can be added (a joiner starts
//! from an empty disk), changed through the log, and a node's disk can be
//! wiped to model a lost data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use raft_core::{
    describe_entry, describe_membership, describe_message, Command, ConfChange, Config, Entry,
    HardState, KvStore, Membership, Message, NodeId, Op, PersistedState, ProgressState, RawNode,
    Ready, Snapshot,
};

/// What a node has on "disk".
#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    fn from_state(state: PersistedState) -> Self {
        Disk {
            hard_state: state.hard_state,
            snapshot: state.snapshot,
            entries: state.entries,
        }
    }

    fn persist(&mut self, ready: &Ready) {
        if let Some(s) = &ready.snapshot {
            self.entries.clear();
            self.snapshot = Some(s.clone());
        }
        if let Some(first) = ready.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hs) = ready.hard_state {
            self.hard_state = hs;
        }
    }

    /// A copy of `m`, with the image of this disk's snapshot in an
    /// InstallSnapshot (the core sends only the metadata; the driver
    /// supplies its newest snapshot).
    fn fill_snapshot(&self, m: &Message) -> Message {
        let mut m = m.clone();
        if let (Some(wanted), Some(newest)) = (m.snapshot_to_send(), &self.snapshot) {
            assert!(
                newest.meta.index >= wanted.meta.index,
                "the disk holds the snapshot"
            );
            *wanted = newest.clone();
        }
        m
    }

    fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        self.entries.retain(|e| e.index > index);
        self.snapshot = Some(snapshot);
    }

    fn state(&self) -> PersistedState {
        PersistedState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

struct Node {
    raw: Option<RawNode>,
    kv: KvStore,
    disk: Disk,
    config: Config,
}

/// The scripted cluster.
pub struct Harness {
    nodes: BTreeMap<NodeId, Node>,
    /// The configuration the cluster was founded with (the bootstrap entry).
    founders: Membership,
    /// The settings every node gets, its id aside.
    template: Config,
    queue: Vec<Message>,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Print every `Ready` in full (`Ready::describe`) instead of the
    /// one-line summaries (became, applied, read, ...).
    verbose_ready: bool,
}

impl Harness {
    pub fn new(n: u64, pre_vote: bool, check_quorum: bool, max_batch_bytes: usize) -> Self {
        let mut template = Config::new(1);
        template.pre_vote = pre_vote;
        template.check_quorum = check_quorum;
        template.election_tick = 10;
        template.heartbeat_tick = 1;
        template.max_batch_bytes = max_batch_bytes;
        // Auto-promoted learners: promoted after two caught-up ticks, so a
        // script shows it without pages of heartbeats.
        template.promote_after_ticks = 2;
        let mut h = Harness {
            nodes: BTreeMap::new(),
            founders: Membership::new((1..=n).collect()),
            template,
            queue: Vec::new(),
            cut: BTreeSet::new(),
            verbose_ready: false,
        };
        for id in 1..=n {
            let founders = PersistedState::bootstrap(h.founders.clone());
            h.start(id, founders).expect("valid config");
        }
        h
    }

    /// Starts node `id` from `state`, which is also what its disk holds.
    fn start(&mut self, id: NodeId, state: PersistedState) -> Result<(), String> {
        let mut config = self.template.clone();
        config.id = id;
        config.seed = id;
        let disk = Disk::from_state(state.clone());
        let raw = RawNode::new(config.clone(), state).map_err(|e| e.to_string())?;
        let node = Node {
            raw: Some(raw),
            kv: KvStore::new(),
            disk,
            config,
        };
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Starts a new node with an empty disk: it has no configuration, never
    /// campaigns, and learns everything from the leader once it is added.
    pub fn join(&mut self, id: NodeId) -> Result<(), String> {
        if id == 0 {
            return Err("node id 0 is reserved".into());
        }
        if self.nodes.contains_key(&id) {
            return Err(format!("node {id} already exists"));
        }
        self.start(id, PersistedState::default())
    }

    /// Crashes the node and empties its disk (a lost or replaced data
    /// directory). With `bootstrap`, the disk gets the founders' state
    /// again, as if the founding command ran on the empty directory.
    pub fn wipe(&mut self, id: NodeId, bootstrap: bool) -> Result<(), String> {
        self.crash(id)?;
        let state = if bootstrap {
            PersistedState::bootstrap(self.founders.clone())
        } else {
            PersistedState::default()
        };
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        node.disk = Disk::from_state(state);
        Ok(())
    }

    fn raw(&mut self, id: NodeId) -> Result<&mut RawNode, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))?
            .raw
            .as_mut()
            .ok_or_else(|| format!("node {id} is down"))
    }

    pub fn set_fault(&mut self, id: NodeId, fault: &str) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        match fault {
            "commit_previous_term" => node.config.faults.commit_previous_term = true,
            "forget_vote" => node.config.faults.forget_vote = true,
            "stale_reads" => node.config.faults.stale_reads = true,
            _ => return Err(format!("unknown fault {fault}")),
        }
        // The config is fixed at construction: restart the node with it.
        if node.raw.is_some() {
            self.crash(id)?;
            self.restart(id)?;
        }
        Ok(())
    }

    /// With `on`, each `Ready` is printed in full through
    /// `Ready::describe` (what is persisted, what leaves before and after
    /// the write, ...); otherwise as one-line summaries of what changed.
    pub fn set_verbose_ready(&mut self, on: bool) {
        self.verbose_ready = on;
    }

    /// Runs the `Ready` loop of every node (or of the nodes in `only`, when
    /// not empty) until it has nothing more; returns whether anything
    /// happened. Each `Ready` is carried out as its contract says: early
    /// messages queued, the write if `must_persist`, then the messages that
    /// waited for it, then apply.
    pub fn process_readies(&mut self, only: &[NodeId], out: &mut String) -> bool {
        let mut any = false;
        let verbose = self.verbose_ready;
        for (&id, node) in self.nodes.iter_mut() {
            if !only.is_empty() && !only.contains(&id) {
                continue;
            }
            let Some(raw) = node.raw.as_mut() else {
                continue;
            };
            while raw.has_ready() {
                any = true;
                let ready = raw.ready();
                if verbose {
                    let _ = writeln!(out, "{id}: Ready");
                    for line in ready.describe().lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                if let (Some(soft), false) = (ready.soft_state, verbose) {
                    let leader = if soft.leader == 0 {
                        "none".to_string()
                    } else {
                        soft.leader.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "{id}: became {} term={} leader={leader}",
                        soft.role,
                        raw.term()
                    );
                }
                self.queue
                    .extend(ready.messages.iter().map(|m| node.disk.fill_snapshot(m)));
                if ready.must_persist {
                    node.disk.persist(&ready);
                }
                if let Some(s) = &ready.snapshot {
                    node.kv = KvStore::restore(&s.data).expect("snapshot decodes");
                    if !verbose {
                        let _ = writeln!(out, "{id}: installed snapshot at {}", s.meta.index);
                    }
                }
                self.queue.extend(
                    ready
                        .persisted_messages
                        .iter()
                        .map(|m| node.disk.fill_snapshot(m)),
                );
                for e in &ready.committed_entries {
                    node.kv.apply(e);
                    if !verbose {
                        let _ = writeln!(out, "{id}: applied {}", describe_entry(e));
                    }
                }
                if verbose {
                    raw.advance(ready);
                    continue;
                }
                for rs in &ready.read_states {
                    let _ = writeln!(
                        out,
                        "{id}: read ctx={} index={} (applied {})",
                        rs.ctx,
                        rs.index,
                        node.kv.applied_index()
                    );
                }
                for ctx in &ready.dropped_reads {
                    let _ = writeln!(out, "{id}: read ctx={ctx} dropped");
                }
                for lost in &ready.lost_logs {
                    let _ = writeln!(
                        out,
                        "{id}: lost log: {} acknowledged {} but now reports {}",
                        lost.id, lost.acknowledged, lost.reported
                    );
                }
                raw.advance(ready);
            }
        }
        any
    }

    /// Delivers every queued message once (in send order); answers queue up.
    pub fn deliver(&mut self, out: &mut String) -> bool {
        let msgs = std::mem::take(&mut self.queue);
        let any = !msgs.is_empty();
        // Dropped messages are summarized at the end, repeats counted.
        let mut dropped: Vec<(String, usize)> = Vec::new();
        for m in msgs {
            let down = self.nodes.get(&m.to).is_none_or(|n| n.raw.is_none());
            if self.cut.contains(&(m.from, m.to)) || down {
                let line = describe_message(&m);
                match dropped.iter_mut().find(|(l, _)| *l == line) {
                    Some((_, n)) => *n += 1,
                    None => dropped.push((line, 1)),
                }
                continue;
            }
            let _ = writeln!(out, "{}", describe_message(&m));
            let to = m.to;
            if let Ok(raw) = self.raw(to) {
                if let Err(e) = raw.step(m) {
                    let _ = writeln!(out, "{to}: rejected: {e}");
                }
            }
        }
        for (line, n) in dropped {
            let times = if n > 1 {
                format!(" x{n}")
            } else {
                String::new()
            };
            let _ = writeln!(out, "{line} (dropped{times})");
        }
        any
    }

    /// Readies and deliveries until nothing moves.
    pub fn stabilize(&mut self, out: &mut String) {
        for _ in 0..1000 {
            let a = self.process_readies(&[], out);
            let b = self.deliver(out);
            if !a && !b {
                return;
            }
        }
        out.push_str("(did not stabilize)\n");
    }

    pub fn tick(&mut self, id: NodeId, times: u64) -> Result<(), String> {
        let raw = self.raw(id)?;
        for _ in 0..times {
            raw.tick();
        }
        Ok(())
    }

    pub fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        self.raw(id)?.campaign();
        Ok(())
    }

    pub fn propose(&mut self, id: NodeId, key: &str, value: &str) -> Result<String, String> {
        let op = Op::Put {
            key: key.into(),
            value: value.into(),
        };
        let cmd = Command {
            client_id: 0,
            seq: 0,
            op,
        };
        match self.raw(id)?.propose(cmd) {
            Ok(index) => Ok(format!("{id}: proposed at index {index}")),
            Err(e) => Ok(format!("{id}: refused: {e}")),
        }
    }

    pub fn read(&mut self, id: NodeId, ctx: u64) -> Result<String, String> {
        Ok(match self.raw(id)?.read_index(ctx) {
            Ok(()) => format!("{id}: read ctx={ctx} started"),
            Err(e) => format!("{id}: read refused: {e}"),
        })
    }

    pub fn transfer(&mut self, id: NodeId, to: NodeId) -> Result<String, String> {
        Ok(match self.raw(id)?.transfer_leader(to) {
            Ok(()) => format!("{id}: transferring to {to}"),
            Err(e) => format!("{id}: transfer refused: {e}"),
        })
    }

    pub fn compact(&mut self, id: NodeId) -> Result<String, String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let raw = node.raw.as_mut().ok_or("node is down")?;
        let index = node.kv.applied_index();
        let meta = raw.snapshot_meta(index).map_err(|e| e.to_string())?;
        let snapshot = Snapshot {
            meta,
            data: node.kv.snapshot(),
        };
        node.disk.compact(snapshot.clone());
        raw.compact(snapshot.meta).map_err(|e| e.to_string())?;
        Ok(format!("{id}: compacted through {index}"))
    }

    pub fn crash(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        node.raw = None;
        node.kv = KvStore::new();
        self.queue.retain(|m| m.to != id && m.from != id);
        Ok(())
    }

    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let persisted = node.disk.state();
        node.kv = match &persisted.snapshot {
            Some(s) => KvStore::restore(&s.data).map_err(|e| e.to_string())?,
            None => KvStore::new(),
        };
        let raw = RawNode::new(node.config.clone(), persisted).map_err(|e| e.to_string())?;
        node.raw = Some(raw);
        Ok(())
    }

    pub fn isolate(&mut self, id: NodeId) {
        for &other in self.nodes.keys() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Drops queued messages without delivering them.
    pub fn drop_queued(&mut self, out: &mut String) {
        for m in std::mem::take(&mut self.queue) {
            let _ = writeln!(out, "{} (dropped)", describe_message(&m));
        }
    }

    pub fn status(&self, out: &mut String) {
        for (id, node) in &self.nodes {
            let Some(raw) = &node.raw else {
                let _ = writeln!(out, "{id}: down");
                continue;
            };
            let s = raw.status();
            let last_term = raw.entry(s.last_index).map_or(0, |e| e.term);
            let _ = writeln!(
                out,
                "{id}: {} term={} leader={} last={}@{} commit={} applied={} snapshot={}",
                s.role,
                s.term,
                s.leader,
                s.last_index,
                last_term,
                s.commit,
                node.kv.applied_index(),
                s.snapshot_index
            );
        }
    }

    /// Proposes a membership change at `id` (without `force`, the leader
    /// refuses a change the members it heard from could not carry).
    pub fn conf_change(
        &mut self,
        id: NodeId,
        change: ConfChange,
        force: bool,
    ) -> Result<String, String> {
        let what = match &change {
            ConfChange::AddLearner { id, promote, .. } => {
                format!("add-learner {id}{}", if *promote { " auto" } else { "" })
            }
            ConfChange::Promote { id } => format!("promote {id}"),
            ConfChange::Remove { id } => format!("remove {id}"),
            ConfChange::Replace { remove, promote } => format!("replace {remove} with {promote}"),
            ConfChange::SetAddress { id, address } => format!("set-address {id} {address}"),
        };
        Ok(match self.raw(id)?.propose_conf_change(change, force) {
            Ok(index) => format!("{id}: proposed {what} at index {index}"),
            Err(e) => format!("{id}: refused: {e}"),
        })
    }

    /// Each node's configuration in force: the newest in its log, committed
    /// or not (thesis §4.1).
    pub fn config(&self, ids: &[NodeId], out: &mut String) {
        for (id, node) in &self.nodes {
            if !ids.is_empty() && !ids.contains(id) {
                continue;
            }
            let Some(raw) = &node.raw else {
                let _ = writeln!(out, "{id}: down");
                continue;
            };
            let s = raw.status();
            if s.membership.voters.is_empty() {
                let _ = writeln!(out, "{id}: no configuration");
                continue;
            }
            let state = if s.config_index <= s.commit {
                "committed"
            } else {
                "uncommitted"
            };
            let _ = writeln!(
                out,
                "{id}: {} (index {}, {state})",
                describe_membership(&s.membership),
                s.config_index
            );
        }
    }

    /// The leader's view of every other member's replication.
    pub fn progress(&self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.nodes.get(&id).ok_or("no such node")?;
        let raw = node.raw.as_ref().ok_or("node is down")?;
        if !raw.is_leader() {
            let _ = writeln!(out, "{id}: not the leader");
            return Ok(());
        }
        let s = raw.status();
        for f in &s.followers {
            let state = match f.state {
                ProgressState::Snapshot { index } => format!("snapshot at {index}"),
                ProgressState::LogLost {
                    acknowledged,
                    reported,
                } => format!("log_lost acknowledged={acknowledged} reported={reported}"),
                other => other.name().to_string(),
            };
            let role = if s.membership.is_voter(f.id) {
                "voter"
            } else {
                "learner"
            };
            let _ = writeln!(
                out,
                "{id}->{}: {role} match={} next={} {state}",
                f.id, f.match_index, f.next_index
            );
        }
        Ok(())
    }

    pub fn log(&self, id: NodeId, out: &mut String) -> Result<(), String> {
        let node = self.nodes.get(&id).ok_or("no such node")?;
        let raw = node.raw.as_ref().ok_or("node is down")?;
        let s = raw.status();
        let entries: Vec<String> = (s.first_index..=s.last_index)
            .filter_map(|i| raw.entry(i))
            .map(describe_entry)
            .collect();
        let _ = writeln!(out, "{id}: {}", entries.join(" "));
        Ok(())
    }

    pub fn get(&self, id: NodeId, key: &str, out: &mut String) -> Result<(), String> {
        let node = self.nodes.get(&id).ok_or("no such node")?;
        let _ = writeln!(out, "{id}: {key}={}", node.kv.get(key).unwrap_or("(none)"));
        Ok(())
    }
}
