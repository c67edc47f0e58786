//! The simulated network: every message in flight with its delivery time,
//! random latency (which also reorders), loss, duplication, and directed
//! link cuts for partitions (symmetric or not).

use std::collections::{BTreeMap, BTreeSet};

use super::Time;
use crate::message::Message;
use crate::rng::Rng;
use crate::types::{NodeId, Term};

/// Latency, loss and duplication of the network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Each message's latency is drawn from `lo..=hi` (at least 1).
    pub latency: (Time, Time),
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice (with its own latency).
    pub duplicate_rate: f64,
    /// Probability that a message in flight to a node that crashes is not
    /// lost but held by its sender's transport and delivered after the node
    /// restarts (a peer's outbound queue outlives the connection it was
    /// built for and resends on the next one): the new incarnation then
    /// receives messages its predecessor's state caused. 0 draws nothing.
    pub redeliver_after_restart: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency: (1, 10),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            redeliver_after_restart: 0.0,
        }
    }
}

/// A message on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Unique per run, in send order.
    pub id: u64,
    /// When it was sent.
    pub sent_at: Time,
    /// When it will arrive (unless a cut or a crash intervenes).
    pub deliver_at: Time,
    /// Whether this is the network's duplicate of another message.
    pub duplicate: bool,
    /// The message; `msg.body.kind()` names its type.
    pub msg: Message,
}

/// Why a message never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// Lost at random (the loss probability), when it was sent.
    Lost,
    /// Its link was cut: when it was sent, or (found at delivery) while it
    /// flew.
    Cut,
    /// Its recipient was down (crashed while it flew, or still down when it
    /// arrived).
    RecipientDown,
    /// Taken off the wire by hand ([`Network::remove`]).
    Removed,
}

/// A message that died on the wire, as [`Network::take_dropped`] reports
/// it (recorded only while [`Network::record_drops`] is on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedMessage {
    /// Its id when it had been scheduled (`None`: dropped as it was sent).
    pub id: Option<u64>,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// `MessageBody::kind()`.
    pub kind: &'static str,
    /// The message's term.
    pub term: Term,
    /// When it was sent.
    pub sent_at: Time,
    /// When it was due to arrive (`None`: dropped as it was sent).
    pub deliver_at: Option<Time>,
    /// When the network dropped it.
    pub dropped_at: Time,
    /// Why.
    pub cause: DropCause,
}

impl DroppedMessage {
    fn new(msg: &Message, sent_at: Time, now: Time, cause: DropCause) -> Self {
        DroppedMessage {
            id: None,
            from: msg.from,
            to: msg.to,
            kind: msg.body.kind(),
            term: msg.term,
            sent_at,
            deliver_at: None,
            dropped_at: now,
            cause,
        }
    }

    fn in_flight(m: &InFlight, now: Time, cause: DropCause) -> Self {
        DroppedMessage {
            id: Some(m.id),
            deliver_at: Some(m.deliver_at),
            ..DroppedMessage::new(&m.msg, m.sent_at, now, cause)
        }
    }

    /// How far along its link it got before it died, from 0 (at the
    /// sender) to 1 (at the recipient).
    pub fn progress(&self) -> f64 {
        match self.deliver_at {
            Some(at) if at > self.sent_at => {
                let gone = self.dropped_at.saturating_sub(self.sent_at) as f64;
                (gone / (at - self.sent_at) as f64).clamp(0.0, 1.0)
            }
            Some(_) => 1.0,
            None => 0.0,
        }
    }
}

/// Counters of what happened to messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered to a running node.
    pub delivered: u64,
    /// Lost at random.
    pub lost: u64,
    /// Dropped by a link cut (at send or at delivery).
    pub cut: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Dropped because the recipient was down.
    pub to_down_node: u64,
    /// InstallSnapshot messages delivered.
    pub snapshots_delivered: u64,
    /// Messages held when their recipient crashed and put back on the wire
    /// when it restarted ([`NetworkConfig::redeliver_after_restart`]).
    pub redelivered_after_restart: u64,
}

/// The network between the nodes.
#[derive(Clone, Debug)]
pub struct Network {
    /// Its current latency, loss and duplication.
    pub config: NetworkConfig,
    queue: BTreeMap<(Time, u64), InFlight>,
    cuts: BTreeSet<(NodeId, NodeId)>,
    next_id: u64,
    /// Messages to crashed nodes, held for their next incarnation.
    held: BTreeMap<NodeId, Vec<Message>>,
    /// What happened to messages so far.
    pub stats: NetworkStats,
    record_drops: bool,
    dropped: Vec<DroppedMessage>,
}

impl Network {
    /// An empty network.
    pub fn new(config: NetworkConfig) -> Self {
        Network {
            config,
            queue: BTreeMap::new(),
            cuts: BTreeSet::new(),
            next_id: 0,
            held: BTreeMap::new(),
            stats: NetworkStats::default(),
            record_drops: false,
            dropped: Vec::new(),
        }
    }

    /// Records every dropped message for [`Network::take_dropped`] (off by
    /// default: the counters in [`Network::stats`] are always kept).
    pub fn record_drops(&mut self, on: bool) {
        self.record_drops = on;
        self.dropped.clear();
    }

    /// The messages dropped since the last call, in the order they died.
    pub fn take_dropped(&mut self) -> Vec<DroppedMessage> {
        std::mem::take(&mut self.dropped)
    }

    fn note_drop(&mut self, drop: impl FnOnce() -> DroppedMessage) {
        if self.record_drops {
            self.dropped.push(drop());
        }
    }

    /// Puts a message on the wire at `now`: it is lost, cut, or scheduled
    /// (maybe twice) after a random latency.
    pub fn send(&mut self, msg: Message, now: Time, rng: &mut Rng) {
        self.stats.sent += 1;
        if self.is_cut(msg.from, msg.to) {
            self.stats.cut += 1;
            self.note_drop(|| DroppedMessage::new(&msg, now, now, DropCause::Cut));
            return;
        }
        if rng.chance(self.config.drop_rate) {
            self.stats.lost += 1;
            self.note_drop(|| DroppedMessage::new(&msg, now, now, DropCause::Lost));
            return;
        }
        let copy = rng.chance(self.config.duplicate_rate).then(|| msg.clone());
        self.enqueue(msg, now, rng, false);
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            self.enqueue(copy, now, rng, true);
        }
    }

    fn enqueue(&mut self, msg: Message, now: Time, rng: &mut Rng, duplicate: bool) {
        let (lo, hi) = self.config.latency;
        let lo = lo.max(1);
        let latency = rng.range(lo, hi.max(lo) + 1);
        let id = self.next_id;
        self.next_id += 1;
        let deliver_at = now + latency;
        self.queue.insert(
            (deliver_at, id),
            InFlight {
                id,
                sent_at: now,
                deliver_at,
                duplicate,
                msg,
            },
        );
    }

    /// When the next message arrives.
    pub fn next_delivery(&self) -> Option<Time> {
        self.queue.keys().next().map(|&(t, _)| t)
    }

    /// Takes the next message due at or before `now`. A message whose link
    /// was cut while it flew is dropped (and counted) instead.
    pub fn pop_due(&mut self, now: Time) -> Option<InFlight> {
        loop {
            let (&key, _) = self.queue.iter().next()?;
            if key.0 > now {
                return None;
            }
            let m = self.queue.remove(&key)?;
            if self.is_cut(m.msg.from, m.msg.to) {
                self.stats.cut += 1;
                self.note_drop(|| DroppedMessage::in_flight(&m, now, DropCause::Cut));
                continue;
            }
            return Some(m);
        }
    }

    /// The messages in flight, by delivery time.
    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.queue.values()
    }

    /// The number of messages in flight.
    pub fn in_flight_count(&self) -> usize {
        self.queue.len()
    }

    /// Drops every message in flight to `node` (it crashed at `now`), but
    /// holds each with probability [`NetworkConfig::redeliver_after_restart`]
    /// for [`Network::release_held`].
    pub fn drop_to(&mut self, node: NodeId, now: Time, rng: &mut Rng) {
        let p = self.config.redeliver_after_restart;
        let mut dying = Vec::new();
        self.queue.retain(|_, m| {
            let keep = m.msg.to != node;
            if !keep {
                dying.push(m.clone());
            }
            keep
        });
        for m in dying {
            if p > 0.0 && rng.chance(p) {
                self.held.entry(node).or_default().push(m.msg);
            } else {
                self.stats.to_down_node += 1;
                self.note_drop(|| DroppedMessage::in_flight(&m, now, DropCause::RecipientDown));
            }
        }
    }

    /// Puts the messages held for `node` back on the wire (it restarted at
    /// `now`), each with a new latency, in the order they were sent. The
    /// network's current cuts and loss apply to them as to any message.
    pub fn release_held(&mut self, node: NodeId, now: Time, rng: &mut Rng) {
        for msg in self.held.remove(&node).unwrap_or_default() {
            self.stats.redelivered_after_restart += 1;
            self.send(msg, now, rng);
        }
    }

    /// Forgets the messages held for `node` (it was stopped for good).
    pub fn forget_held(&mut self, node: NodeId) {
        self.held.remove(&node);
    }

    /// Notes that `m` reached a node that is down (the cluster found it
    /// so at delivery).
    pub fn lost_at_down_node(&mut self, m: &InFlight, now: Time) {
        self.stats.to_down_node += 1;
        self.note_drop(|| DroppedMessage::in_flight(m, now, DropCause::RecipientDown));
    }

    /// Takes the message with this id off the wire at `now` (counted as
    /// lost); returns it, or `None` when it is no longer in flight.
    pub fn remove(&mut self, id: u64, now: Time) -> Option<InFlight> {
        let key = self
            .queue
            .iter()
            .find(|(_, m)| m.id == id)
            .map(|(&k, _)| k)?;
        let m = self.queue.remove(&key)?;
        self.stats.lost += 1;
        self.note_drop(|| DroppedMessage::in_flight(&m, now, DropCause::Removed));
        Some(m)
    }

    /// The message in flight with this id.
    pub fn get(&self, id: u64) -> Option<&InFlight> {
        self.queue.values().find(|m| m.id == id)
    }

    /// Whether messages from `from` to `to` are cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        !self.cuts.is_empty() && self.cuts.contains(&(from, to))
    }

    /// Cuts the directed link `from -> to`.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.cuts.insert((from, to));
        }
    }

    /// Restores the directed link `from -> to`.
    pub fn uncut(&mut self, from: NodeId, to: NodeId) {
        self.cuts.remove(&(from, to));
    }

    /// The directed links currently cut, in order.
    pub fn cuts(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.cuts.iter().copied()
    }

    /// Cuts every link between different groups, both ways. Nodes in no
    /// group keep their links.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        self.cut(x, y);
                        self.cut(y, x);
                    }
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cuts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageBody;

    fn msg(from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: MessageBody::TimeoutNow,
        }
    }

    #[test]
    fn cuts_are_directed_and_apply_in_flight() {
        let mut net = Network::new(NetworkConfig::default());
        let mut rng = Rng::new(1);
        net.send(msg(1, 2), 0, &mut rng);
        net.send(msg(2, 1), 0, &mut rng);
        net.cut(1, 2);
        let delivered: Vec<_> = std::iter::from_fn(|| net.pop_due(100)).collect();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].msg.from, 2);
        assert_eq!(net.stats.cut, 1);
        net.send(msg(1, 2), 0, &mut rng);
        assert_eq!(net.in_flight_count(), 0);
        net.heal();
        net.send(msg(1, 2), 0, &mut rng);
        assert_eq!(net.in_flight_count(), 1);
    }

    #[test]
    fn drops_are_recorded_with_cause_and_progress() {
        let mut net = Network::new(NetworkConfig {
            latency: (10, 10),
            drop_rate: 1.0,
            duplicate_rate: 0.0,
            redeliver_after_restart: 0.0,
        });
        let mut rng = Rng::new(5);
        net.send(msg(1, 2), 0, &mut rng);
        assert!(net.take_dropped().is_empty(), "recorded only when asked");
        net.record_drops(true);
        net.send(msg(1, 2), 0, &mut rng);
        net.config.drop_rate = 0.0;
        net.send(msg(1, 3), 0, &mut rng);
        net.send(msg(2, 3), 0, &mut rng);
        net.drop_to(3, 5, &mut rng);
        let dropped = net.take_dropped();
        let causes: Vec<_> = dropped.iter().map(|d| d.cause).collect();
        assert_eq!(
            causes,
            [
                DropCause::Lost,
                DropCause::RecipientDown,
                DropCause::RecipientDown
            ]
        );
        assert_eq!(dropped[0].progress(), 0.0, "lost as it was sent");
        assert_eq!(
            dropped[1].progress(),
            0.5,
            "halfway when its recipient crashed"
        );
        assert_eq!((net.stats.lost, net.stats.to_down_node), (2, 2));
        assert!(net.take_dropped().is_empty());
    }

    #[test]
    fn latency_reorders_and_duplicates_copy() {
        let mut net = Network::new(NetworkConfig {
            latency: (1, 50),
            drop_rate: 0.0,
            duplicate_rate: 1.0,
            redeliver_after_restart: 0.0,
        });
        let mut rng = Rng::new(3);
        for _ in 0..10 {
            net.send(msg(1, 2), 0, &mut rng);
        }
        assert_eq!(net.in_flight_count(), 20);
        let ids: Vec<u64> = std::iter::from_fn(|| net.pop_due(1000))
            .map(|m| m.id)
            .collect();
        assert_eq!(ids.len(), 20);
        assert!(ids.windows(2).any(|w| w[0] > w[1]), "jitter reorders");
    }
}
