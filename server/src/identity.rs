//! Who this node is, durably: the cluster it belongs to, its member id and
//! the incarnation of its data directory; and the incarnations of the
//! peers it has heard from.
//!
//! ```text
//! data-dir/
//!   IDENTITY     raft-kv identity 1 / cluster-id / node-id / incarnation / origin
//!   PEERS        one "<id> <incarnation>" line per peer heard from
//! ```
//!
//! The cluster id is derived from the founding configuration (every founder
//! computes the same one from the same `--peers`), so founders agree on it
//! without talking. The incarnation is random, drawn when the data directory
//! is created: a member that comes back with an emptied directory has a new
//! one, and the peers that knew the old one refuse it — it has forgotten its
//! votes and its log, so it must be removed and added again.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use raft_core::{Membership, NodeId};
use serde::{Deserialize, Serialize};

const IDENTITY_FILE: &str = "IDENTITY";
const PEERS_FILE: &str = "PEERS";
const HEADER_LINE: &str = "raft-kv identity 1";

/// How this node's data directory came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A founding member: its log starts with the founding configuration.
    Founder,
    /// Added to a running cluster: it learns everything from the leader.
    Joiner,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Founder => "founder",
            Origin::Joiner => "joiner",
        }
    }
}

/// The contents of `IDENTITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster.
    pub cluster_id: u64,
    /// This member.
    pub node_id: NodeId,
    /// This data directory's incarnation.
    pub incarnation: u64,
    /// Founder or joiner.
    pub origin: Origin,
}

/// `GET /raft/identity`: what a node tells a starting peer about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityResponse {
    /// Its cluster id (16 hex digits).
    pub cluster_id: String,
    /// Its member id.
    pub node_id: NodeId,
    /// The data-directory incarnations it knows, by member id.
    pub incarnations: BTreeMap<NodeId, String>,
}

/// Formats a cluster id or incarnation for logs, headers and the API.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses [`hex`]'s output.
pub fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// The cluster id every founder derives from the founding configuration
/// (ids and URLs): FNV-1a over a canonical text of it. Founders given
/// different member lists get different ids and refuse each other.
pub fn founding_cluster_id(membership: &Membership) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for id in &membership.voters {
        feed(id.to_string().as_bytes());
        feed(b"=");
        feed(membership.address(*id).unwrap_or("").as_bytes());
        feed(b",");
    }
    // 0 means "no cluster" on the wire.
    h.max(1)
}

/// The id of a cluster restored from a backup: the founding
/// configuration's id mixed with the backup's checksum and index, so that
/// every member restored from the same file with the same `--peers` agrees
/// on it, and it differs from the cluster the backup came from (whose
/// members must not mistake the restored ones for their own).
pub fn restored_cluster_id(membership: &Membership, backup_crc: u32, index: u64) -> u64 {
    let mut h = founding_cluster_id(membership);
    for b in backup_crc
        .to_le_bytes()
        .into_iter()
        .chain(index.to_le_bytes())
        .chain(*b"restored")
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// A fresh random incarnation (std's hasher keys are drawn from the OS).
pub fn new_incarnation() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish().max(1)
}

impl Identity {
    /// Reads `IDENTITY` from `dir`; `None` when the file does not exist.
    pub fn load(dir: &Path) -> Result<Option<Identity>, String> {
        let path = dir.join(IDENTITY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let bad = |what: &str| format!("{} is damaged: {what}", path.display());
        let mut lines = text.lines();
        if lines.next() != Some(HEADER_LINE) {
            return Err(bad("unknown format"));
        }
        let mut fields = BTreeMap::new();
        for line in lines {
            if let Some((k, v)) = line.split_once(' ') {
                fields.insert(k, v);
            }
        }
        let field = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| bad(&format!("no {k}")))
        };
        let cluster_id = parse_hex(field("cluster-id")?).ok_or_else(|| bad("bad cluster-id"))?;
        let node_id = field("node-id")?.parse().map_err(|_| bad("bad node-id"))?;
        let incarnation = parse_hex(field("incarnation")?).ok_or_else(|| bad("bad incarnation"))?;
        let origin = match field("origin")? {
            "founder" => Origin::Founder,
            "joiner" => Origin::Joiner,
            _ => return Err(bad("bad origin")),
        };
        Ok(Some(Identity {
            cluster_id,
            node_id,
            incarnation,
            origin,
        }))
    }

    /// Writes `IDENTITY` durably (temp file, fsync, rename, directory fsync).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = format!(
            "{HEADER_LINE}\ncluster-id {}\nnode-id {}\nincarnation {}\norigin {}\n",
            hex(self.cluster_id),
            self.node_id,
            hex(self.incarnation),
            self.origin.as_str()
        );
        write_durably(&dir.join(IDENTITY_FILE), text.as_bytes())
    }
}

pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// Why a peer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It belongs to another cluster.
    OtherCluster {
        /// Its cluster id.
        theirs: u64,
    },
    /// Its data directory is not the one this node knew.
    Replaced {
        /// The incarnation this node knew.
        known: u64,
        /// The one it presents now.
        presented: u64,
    },
}

/// The peers' incarnations this node has seen, persisted in `PEERS`.
pub struct PeerIncarnations {
    path: Option<PathBuf>,
    known: Mutex<BTreeMap<NodeId, u64>>,
}

impl PeerIncarnations {
    /// Loads the table of `dir` (`None`: in memory only, for tests).
    pub fn load(dir: Option<&Path>) -> Result<PeerIncarnations, String> {
        let path = dir.map(|d| d.join(PEERS_FILE));
        let mut known = BTreeMap::new();
        if let Some(p) = &path {
            match fs::read_to_string(p) {
                Ok(text) => {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        let parsed = line.split_once(' ').and_then(|(id, inc)| {
                            Some((id.parse::<NodeId>().ok()?, parse_hex(inc)?))
                        });
                        let (id, inc) = parsed
                            .ok_or_else(|| format!("{} is damaged: {line:?}", p.display()))?;
                        known.insert(id, inc);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
            }
        }
        Ok(PeerIncarnations {
            path,
            known: Mutex::new(known),
        })
    }

    fn save(&self, known: &BTreeMap<NodeId, u64>) {
        let Some(path) = &self.path else {
            return;
        };
        let text: String = known
            .iter()
            .map(|(id, inc)| format!("{id} {}\n", hex(*inc)))
            .collect();
        if let Err(e) = write_durably(path, text.as_bytes()) {
            tracing::warn!("{e}");
        }
    }

    /// The incarnation known for `id`, if any.
    pub fn get(&self, id: NodeId) -> Option<u64> {
        self.lock().get(&id).copied()
    }

    /// Every incarnation known, by member.
    pub fn all(&self) -> BTreeMap<NodeId, u64> {
        self.lock().clone()
    }

    /// Admits peer `id` presenting `incarnation`: the first time it is
    /// recorded; afterwards it must be the same.
    pub fn admit(&self, id: NodeId, incarnation: u64) -> Result<(), Refusal> {
        let mut known = self.lock();
        match known.get(&id) {
            Some(&k) if k == incarnation => Ok(()),
            Some(&k) => Err(Refusal::Replaced {
                known: k,
                presented: incarnation,
            }),
            None => {
                known.insert(id, incarnation);
                self.save(&known);
                Ok(())
            }
        }
    }

    /// Forgets the members that left the configuration, so one re-added
    /// under the same id with a new data directory is admitted.
    pub fn retain_members(&self, membership: &Membership) {
        let mut known = self.lock();
        let before = known.len();
        known.retain(|id, _| membership.contains(*id));
        if known.len() != before {
            self.save(&known);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, u64>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        let id = Identity {
            cluster_id: 0xabc,
            node_id: 3,
            incarnation: 0x1234_5678_9abc_def0,
            origin: Origin::Joiner,
        };
        id.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        fs::write(
            dir.path().join(IDENTITY_FILE),
            "raft-kv identity 1\nnode-id x\n",
        )
        .unwrap();
        assert!(Identity::load(dir.path()).is_err());
    }

    #[test]
    fn founders_agree_on_the_cluster_id_and_other_lists_differ() {
        let urls = |port3: u16| {
            Membership::with_addresses(BTreeMap::from([
                (1, "http://127.0.0.1:3001".to_string()),
                (2, "http://127.0.0.1:3002".to_string()),
                (3, format!("http://127.0.0.1:{port3}")),
            ]))
        };
        assert_eq!(
            founding_cluster_id(&urls(3003)),
            founding_cluster_id(&urls(3003))
        );
        assert_ne!(
            founding_cluster_id(&urls(3003)),
            founding_cluster_id(&urls(3004))
        );
    }

    #[test]
    fn a_replaced_peer_is_refused_until_it_leaves_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let t = PeerIncarnations::load(Some(dir.path())).unwrap();
        t.admit(2, 7).unwrap();
        t.admit(2, 7).unwrap();
        assert_eq!(
            t.admit(2, 8),
            Err(Refusal::Replaced {
                known: 7,
                presented: 8
            })
        );
        // Persisted: a restart still knows it.
        let t = PeerIncarnations::load(Some(dir.path())).unwrap();
        assert_eq!(t.get(2), Some(7));
        t.retain_members(&Membership::new(vec![1, 3]));
        t.admit(2, 8).unwrap();
    }
}
