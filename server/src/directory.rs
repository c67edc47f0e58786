//! The member directory: the cluster's identity and the configuration in
//! force as the Raft loop last published it (who the members are, their
//! URLs), shared with the HTTP handlers, the peer receivers and the
//! forwarding code. The Raft log is the source of truth; this is a cached
//! copy, refreshed by the loop whenever the configuration changes.

use std::collections::BTreeMap;
use std::sync::RwLock;

use axum::http::HeaderValue;
use raft_core::{Index, Membership, NodeId};

use crate::identity::{Identity, PeerIncarnations, Refusal};

struct Current {
    membership: Membership,
    config_index: Index,
    /// The `x-raft-leader` value (`"<id> <url>"`) of every member, built
    /// when the configuration changes rather than for every response.
    leader_headers: BTreeMap<NodeId, HeaderValue>,
}

/// What the node knows about its cluster's members.
pub struct Directory {
    /// This node's identity.
    pub identity: Identity,
    /// This node's own base URL (what it advertises).
    pub own_url: String,
    /// Peers' data-directory incarnations.
    pub incarnations: PeerIncarnations,
    /// URLs learned outside the log: a joining node's copy of the member
    /// list it joined through, used until its log names the members.
    known_urls: BTreeMap<NodeId, String>,
    current: RwLock<Current>,
}

impl Directory {
    /// A directory starting from `membership` (at log index `config_index`).
    pub fn new(
        identity: Identity,
        own_url: String,
        incarnations: PeerIncarnations,
        known_urls: BTreeMap<NodeId, String>,
    ) -> Directory {
        let d = Directory {
            identity,
            own_url,
            incarnations,
            known_urls,
            current: RwLock::new(Current {
                membership: Membership::default(),
                config_index: 0,
                leader_headers: BTreeMap::new(),
            }),
        };
        d.update(&Membership::default(), 0);
        d
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs a new configuration; returns whether it differed.
    pub fn update(&self, membership: &Membership, config_index: Index) -> bool {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.membership == *membership && cur.config_index == config_index {
            return false;
        }
        let mut headers = BTreeMap::new();
        for id in membership.ids() {
            if let Some(url) = url_in(membership, id, self) {
                if let Ok(v) = HeaderValue::from_str(&format!("{id} {url}")) {
                    headers.insert(id, v);
                }
            }
        }
        cur.membership = membership.clone();
        cur.config_index = config_index;
        cur.leader_headers = headers;
        drop(cur);
        self.incarnations.retain_members(membership);
        true
    }

    /// The configuration in force and its log index.
    pub fn membership(&self) -> (Membership, Index) {
        let cur = self.read();
        (cur.membership.clone(), cur.config_index)
    }

    /// Member `id`'s base URL.
    pub fn url(&self, id: NodeId) -> Option<String> {
        url_in(&self.read().membership, id, self)
    }

    /// Every member's base URL, this node's included, by id. A joining
    /// node without a configuration yet uses the member list it joined
    /// through, so it can answer the leader.
    pub fn urls(&self) -> BTreeMap<NodeId, String> {
        let cur = self.read();
        if cur.membership.voters.is_empty() {
            return self.known_urls.clone();
        }
        cur.membership
            .ids()
            .into_iter()
            .filter_map(|id| url_in(&cur.membership, id, self).map(|u| (id, u)))
            .collect()
    }

    /// The `x-raft-leader` header value naming member `id`.
    pub fn leader_header(&self, id: NodeId) -> Option<HeaderValue> {
        self.read().leader_headers.get(&id).cloned()
    }

    /// Whether `id` is a member (any role). A node still waiting to join
    /// (no configuration yet) accepts any sender of its cluster: the leader
    /// that will teach it the configuration.
    pub fn admits_sender(&self, id: NodeId) -> bool {
        let cur = self.read();
        cur.membership.voters.is_empty() || cur.membership.contains(id)
    }

    /// Checks a peer's cluster id and incarnation (from its handshake).
    pub fn check_peer(
        &self,
        from: NodeId,
        cluster_id: u64,
        incarnation: u64,
    ) -> Result<(), Refusal> {
        if cluster_id != self.identity.cluster_id {
            return Err(Refusal::OtherCluster { theirs: cluster_id });
        }
        self.incarnations.admit(from, incarnation)
    }
}

fn url_in(m: &Membership, id: NodeId, d: &Directory) -> Option<String> {
    match m.address(id) {
        Some(a) => Some(a.to_string()),
        None if id == d.identity.node_id => Some(d.own_url.clone()),
        None if m.voters.is_empty() => d.known_urls.get(&id).cloned(),
        None => None,
    }
}
