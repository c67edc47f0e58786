//! Start-up: decides from the data directory (and only then from the
//! flags) which of three ways this node starts, and refuses the mistakes
//! that would lose acknowledged writes.
//!
//! - **Restart**: the directory has an `IDENTITY` and a log. The
//!   configuration is the one in the log; `--peers` and `--join` are
//!   ignored with a warning when they disagree with it. A directory of
//!   another node id is refused.
//! - **Found** a new cluster (empty directory, `--peers` or none): the
//!   founding configuration becomes the first log entry and the cluster id
//!   is derived from it. First the listed peers are asked whether they
//!   already know this node: one that does proves the directory was emptied
//!   under a member (a replaced disk), which must not rejoin as if nothing
//!   happened (it has forgotten its votes and log).
//! - **Join** a running cluster (empty directory, `--join URL`): the node
//!   must already be in the cluster's configuration (`member add`); it takes
//!   the cluster id from there, starts with an empty log and learns the
//!   rest from the leader.

use std::collections::BTreeMap;
use std::time::Duration;

use raft_core::quorum_loss::Standalone;
use raft_core::wire::{MembersResponse, HEADER_CLUSTER_TOKEN};
use raft_core::{Entry, Index, Membership, NodeId, Payload, PersistedState};
use tracing::{info, warn};

use crate::config::Settings;
use crate::error_chain::error_chain;
use crate::identity::{self, Identity, IdentityResponse, Origin, PeerIncarnations};
use crate::storage::Storage;

/// How long a starting node waits for each peer's answer.
const PEER_QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// What the node starts from.
pub struct Start {
    /// Who it is.
    pub identity: Identity,
    /// The peers' incarnations it knows.
    pub incarnations: PeerIncarnations,
    /// Its Raft state (just written, for a founder).
    pub persisted: PersistedState,
    /// A joiner's copy of the member list it joined through (its log names
    /// no members until the leader's first entries arrive).
    pub known_urls: BTreeMap<NodeId, String>,
}

/// Loads the data directory and prepares the node's start: restart, found
/// or join (see the module doc). `own_url` is what this node advertises.
pub async fn prepare(
    settings: &Settings,
    own_url: &str,
    storage: &mut dyn Storage,
    http: &reqwest::Client,
) -> Result<Start, String> {
    let dir = &settings.data_dir;
    let persisted = storage
        .load()
        .map_err(|e| format!("cannot load the node's data: {e}"))?;
    let incarnations = PeerIncarnations::load(Some(dir))?;
    let has_log = persisted.snapshot.is_some() || !persisted.entries.is_empty();
    let founding = founding_membership(settings, own_url);
    match Identity::load(dir)? {
        Some(identity)
            if settings.restore.is_some()
                && restored_cluster_id(settings, &founding)? != identity.cluster_id =>
        {
            Err(format!(
                "--restore founds a new cluster and needs an empty data directory; {} already \
                 holds a node of another cluster",
                dir.display()
            ))
        }
        Some(identity) => {
            if settings.restore.is_some() {
                warn!(
                    "--restore is ignored: this data directory was restored from that backup \
                     already; the node restarts from its own data"
                );
            }
            if identity.node_id != settings.id {
                return Err(format!(
                    "the data directory {} belongs to node {}, not node {} (--node-id)",
                    dir.display(),
                    identity.node_id,
                    settings.id
                ));
            }
            let persisted = if has_log && settings.force_new_cluster {
                force_new_cluster(settings, storage, persisted)?
            } else if has_log {
                warn_about_ignored_flags(settings, &persisted, &founding);
                persisted
            } else if settings.force_new_cluster {
                return Err(format!(
                    "--force-new-cluster needs the data directory of a surviving member, and {} holds no log",
                    dir.display()
                ));
            } else if identity.origin == Origin::Founder {
                // Stopped between writing the identity and the first entry.
                if identity::founding_cluster_id(&founding) != identity.cluster_id {
                    return Err(format!(
                        "the data directory {} was started as a founder of cluster {} with other \
                         --peers than now; give the same --peers or empty the directory",
                        dir.display(),
                        identity::hex(identity.cluster_id)
                    ));
                }
                write_founding_entry(storage, founding)?
            } else {
                info!(
                    "joined cluster {}; waiting for the leader to send the log",
                    identity::hex(identity.cluster_id)
                );
                persisted
            };
            info!(
                cluster_id = %identity::hex(identity.cluster_id),
                incarnation = %identity::hex(identity.incarnation),
                "restarting from the data directory"
            );
            let known_urls = if persisted_membership(&persisted).1.voters.is_empty() {
                // A joiner still waiting for its first entries: ask the
                // members it can reach where the others are.
                known_urls_of(settings, http).await
            } else {
                BTreeMap::new()
            };
            Ok(Start {
                identity,
                incarnations,
                persisted,
                known_urls,
            })
        }
        None if settings.force_new_cluster => Err(format!(
            "--force-new-cluster needs the data directory of a surviving member, and {} holds no raft-kv node",
            dir.display()
        )),
        None if has_log => Err(format!(
            "the data directory {} holds a Raft log but no IDENTITY file (written by an older \
             raft-kv?); move it away to start this node afresh",
            dir.display()
        )),
        None => match &settings.join {
            Some(join) => {
                let (identity, known_urls) = join_cluster(settings, own_url, join, http).await?;
                identity.save(dir)?;
                info!(
                    cluster_id = %identity::hex(identity.cluster_id),
                    via = %join,
                    "joining the cluster as a new member; the leader sends the configuration and the data"
                );
                Ok(Start {
                    identity,
                    incarnations,
                    persisted: PersistedState::default(),
                    known_urls,
                })
            }
            None if settings.restore.is_some() => {
                restore(settings, storage, founding, incarnations, http).await
            }
            None => {
                let cluster_id = identity::founding_cluster_id(&founding);
                let identity = new_founder(settings, cluster_id, http).await?;
                info!(
                    cluster_id = %identity::hex(cluster_id),
                    voters = ?founding.voters,
                    "founding a new cluster"
                );
                let persisted = write_founding_entry(storage, founding)?;
                Ok(Start {
                    identity,
                    incarnations,
                    persisted,
                    known_urls: BTreeMap::new(),
                })
            }
        },
    }
}

/// Records in the data directory the index of the configuration entry
/// `--force-new-cluster` wrote, so that a later start that still carries
/// the flag does not throw away the members added back since.
const FORCED_FILE: &str = "FORCED_NEW_CLUSTER";

/// `--force-new-cluster` on a directory with a log: rewrites the
/// configuration to this node alone ([`Standalone`]), durably, before the
/// node starts. A second start with the flag changes nothing while the
/// configuration is still the forced one, and is refused once it changed.
fn force_new_cluster(
    settings: &Settings,
    storage: &mut dyn Storage,
    persisted: PersistedState,
) -> Result<PersistedState, String> {
    let marker = settings.data_dir.join(FORCED_FILE);
    let (config_index, current) = persisted_membership(&persisted);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let forced: Index = text
                .trim()
                .parse()
                .map_err(|_| format!("{} is damaged ({text:?}); remove it", marker.display()))?;
            if forced == config_index {
                warn!(
                    forced_at = forced,
                    "--force-new-cluster was already applied (the configuration is still this node alone); nothing to do. Remove the flag."
                );
                return Ok(persisted);
            }
            return Err(format!(
                "--force-new-cluster was already applied at index {forced}, and the configuration changed since (now {} at index {config_index}); starting with the flag again would drop those members. Remove the flag.",
                describe(&current)
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", marker.display())),
    }
    let forced = Standalone::for_node(&persisted, settings.id)
        .map_err(|e| format!("--force-new-cluster: {e}"))?;
    storage
        .persist(
            None,
            std::slice::from_ref(&forced.entry),
            Some(forced.hard_state),
        )
        .map_err(|e| format!("--force-new-cluster: cannot write the new configuration: {e}"))?;
    identity::write_durably(&marker, format!("{}\n", forced.entry.index).as_bytes())?;
    warn!(
        previous = %describe(&current),
        index = forced.entry.index,
        term = forced.entry.term,
        "FORCED A NEW CLUSTER: this node is now the only voter; every entry it held is committed. The other members are no longer part of the cluster: add members back with `raft-kv-client member add`, each with an empty data directory, and remove --force-new-cluster from this node's command line"
    );
    Ok(forced.apply_to(&persisted))
}

/// The backup `--restore` names, verified, and the id of the cluster
/// restored from it with the founding configuration `founding`.
fn read_backup(
    file: &std::path::Path,
    founding: &Membership,
) -> Result<(raft_core::Snapshot, u64), String> {
    let bytes = std::fs::read(file)
        .map_err(|e| format!("--restore: cannot read {}: {e}", file.display()))?;
    let snapshot = crate::storage::decode::snapshot_file(&bytes)
        .map_err(|e| format!("--restore: {} is not a usable backup: {e}", file.display()))?;
    // The file's last four bytes are its CRC32 (checked just above).
    let crc = bytes
        .len()
        .checked_sub(4)
        .and_then(|at| bytes.get(at..))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0);
    let id = identity::restored_cluster_id(founding, crc, snapshot.meta.index);
    Ok((snapshot, id))
}

/// A founder's identity in cluster `cluster_id`, saved once the listed
/// peers confirmed they do not know this node already (see
/// [`check_not_known_to_peers`]).
async fn new_founder(
    settings: &Settings,
    cluster_id: u64,
    http: &reqwest::Client,
) -> Result<Identity, String> {
    check_not_known_to_peers(settings, cluster_id, http).await?;
    let identity = Identity {
        cluster_id,
        node_id: settings.id,
        incarnation: identity::new_incarnation(),
        origin: Origin::Founder,
    };
    identity.save(&settings.data_dir)?;
    Ok(identity)
}

/// The cluster id `--restore` gives with these flags.
fn restored_cluster_id(settings: &Settings, founding: &Membership) -> Result<u64, String> {
    let file = settings.restore.as_ref().ok_or("no --restore")?;
    read_backup(file, founding).map(|(_, id)| id)
}

/// `--restore FILE` on an empty data directory: founds a new cluster whose
/// starting state is the backup's. The backup becomes the node's snapshot,
/// with the founding configuration in place of the one it was taken under;
/// the log starts after it. Every founder restoring the same file with the
/// same `--peers` writes the same snapshot, so they agree from the start.
async fn restore(
    settings: &Settings,
    storage: &mut dyn Storage,
    founding: Membership,
    incarnations: PeerIncarnations,
    http: &reqwest::Client,
) -> Result<Start, String> {
    let file = settings
        .restore
        .as_ref()
        .ok_or("restore without --restore")?;
    let (mut snapshot, cluster_id) = read_backup(file, &founding)?;
    raft_core::KvStore::restore(&snapshot.data).map_err(|e| {
        format!(
            "--restore: {} holds no valid state machine: {e}",
            file.display()
        )
    })?;
    let identity = new_founder(settings, cluster_id, http).await?;
    snapshot.meta.membership = founding.clone();
    let hard_state = raft_core::HardState {
        term: snapshot.meta.term,
        vote: 0,
        commit: snapshot.meta.index,
    };
    storage
        .persist(Some(&snapshot), &[], Some(hard_state))
        .map_err(|e| format!("--restore: cannot write the restored state: {e}"))?;
    info!(
        cluster_id = %identity::hex(cluster_id),
        voters = ?founding.voters,
        backup = %file.display(),
        index = snapshot.meta.index,
        "founding a new cluster from a backup"
    );
    Ok(Start {
        identity,
        incarnations,
        persisted: PersistedState {
            hard_state,
            snapshot: Some(snapshot),
            entries: Vec::new(),
        },
        known_urls: BTreeMap::new(),
    })
}

/// The founding configuration the flags describe: `--peers` and this node.
fn founding_membership(settings: &Settings, own_url: &str) -> Membership {
    let mut urls = settings.peers.clone();
    urls.insert(settings.id, own_url.to_string());
    Membership::with_addresses(urls)
}

fn write_founding_entry(
    storage: &mut dyn Storage,
    founding: Membership,
) -> Result<PersistedState, String> {
    let state = PersistedState::bootstrap(founding);
    storage
        .persist(None, &state.entries, Some(state.hard_state))
        .map_err(|e| format!("cannot write the founding configuration: {e}"))?;
    Ok(state)
}

/// The configuration in a persisted log: the newest `Config` entry, else
/// the snapshot's.
fn persisted_membership(p: &PersistedState) -> (Index, Membership) {
    let from_log = p
        .entries
        .iter()
        .rev()
        .find_map(|e: &Entry| match &e.payload {
            Payload::Config(m) => Some((e.index, m.clone())),
            _ => None,
        });
    from_log.unwrap_or_else(|| {
        p.snapshot
            .as_ref()
            .map(|s| (s.meta.index, s.meta.membership.clone()))
            .unwrap_or_default()
    })
}

fn describe(m: &Membership) -> String {
    m.ids()
        .iter()
        .map(|id| format!("{id}={}", m.address(*id).unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(",")
}

fn warn_about_ignored_flags(settings: &Settings, p: &PersistedState, founding: &Membership) {
    let (index, persisted) = persisted_membership(p);
    if settings.join.is_some() {
        warn!("--join is ignored: this node already has data (its configuration is the one in its log)");
    }
    let same = persisted.voters == founding.voters
        && persisted.learners.is_empty()
        && persisted
            .voters
            .iter()
            .all(|id| *id == settings.id || persisted.address(*id) == founding.address(*id));
    if settings.peers_given && !same {
        warn!(
            config_index = index,
            "--peers ({}) differs from the configuration in this node's log ({}); keeping the \
             log's. --peers only founds a new cluster; change members with `raft-kv-client member`",
            describe(founding),
            describe(&persisted)
        );
    } else if !settings.peers_given && persisted.all_voters().len() > 1 {
        info!(
            "no --peers given: using the configuration in the log ({})",
            describe(&persisted)
        );
    }
}

fn with_token(req: reqwest::RequestBuilder, settings: &Settings) -> reqwest::RequestBuilder {
    match &settings.cluster_token {
        Some(t) => req.header(HEADER_CLUSTER_TOKEN, t),
        None => req,
    }
}

/// A founder with an empty directory asks the peers it lists what they
/// know. A peer that knows this node's incarnation proves the directory
/// was emptied under a member; a peer of another cluster proves the lists
/// disagree. Peers that do not answer (not started yet) prove nothing.
async fn check_not_known_to_peers(
    settings: &Settings,
    cluster_id: u64,
    http: &reqwest::Client,
) -> Result<(), String> {
    for (&peer, url) in &settings.peers {
        let req = with_token(http.get(format!("{url}/raft/identity")), settings)
            .timeout(PEER_QUERY_TIMEOUT);
        let Ok(resp) = req.send().await else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(answer) = resp.json::<IdentityResponse>().await else {
            continue;
        };
        let theirs = identity::parse_hex(&answer.cluster_id).unwrap_or(0);
        if theirs != cluster_id {
            return Err(format!(
                "peer {peer} at {url} belongs to cluster {}, but the founding members given here \
                 (--peers and this node's URL) make cluster {}: every founder needs the same \
                 member list. To add this node to the running cluster instead, use \
                 `raft-kv-client member add {} URL` and start it with --join {url}",
                answer.cluster_id,
                identity::hex(cluster_id),
                settings.id
            ));
        }
        if let Some(known) = answer.incarnations.get(&settings.id) {
            return Err(format!(
                "node {id} is already a member of cluster {cid}: peer {peer} at {url} knows its \
                 data directory (incarnation {known}), but {dir} is empty. A member that lost its \
                 data has forgotten its votes and log and must not rejoin as if nothing happened. \
                 Remove it and add it back: `raft-kv-client member remove {id}`, \
                 `raft-kv-client member add {id} URL`, then start it with --join {url}",
                id = settings.id,
                cid = identity::hex(cluster_id),
                dir = settings.data_dir.display(),
            ));
        }
    }
    Ok(())
}

/// Takes the cluster id from a member of the cluster to join, after
/// checking that this node was added there under its URL.
async fn join_cluster(
    settings: &Settings,
    own_url: &str,
    join: &str,
    http: &reqwest::Client,
) -> Result<(Identity, BTreeMap<NodeId, String>), String> {
    let members = fetch_members(settings, join, http).await?;
    let cluster_id = identity::parse_hex(&members.cluster_id)
        .ok_or_else(|| format!("--join {join}: the member has no cluster id yet"))?;
    let Some(me) = members.members.iter().find(|m| m.id == settings.id) else {
        return Err(format!(
            "node {id} is not a member of cluster {cid}: add it first with \
             `raft-kv-client --server {join} member add {id} {own_url}`, then start it again",
            id = settings.id,
            cid = members.cluster_id
        ));
    };
    if me.url != own_url {
        return Err(format!(
            "cluster {} lists node {} at {}, but this node advertises {own_url}: start it with \
             that address (--host/--port/--advertise-url), or change the member's address",
            members.cluster_id, settings.id, me.url
        ));
    }
    let identity = Identity {
        cluster_id,
        node_id: settings.id,
        incarnation: identity::new_incarnation(),
        origin: Origin::Joiner,
    };
    let urls = members
        .members
        .iter()
        .map(|m| (m.id, m.url.clone()))
        .collect();
    Ok((identity, urls))
}

/// A restarted joiner that has not received its first entries yet: the
/// member list from `--join`, if given, else from nowhere (the leader's
/// messages still arrive; its answers wait until the log names the leader).
async fn known_urls_of(settings: &Settings, http: &reqwest::Client) -> BTreeMap<NodeId, String> {
    let Some(join) = &settings.join else {
        warn!(
            "this joiner has no configuration yet; give --join again so it can answer the leader"
        );
        return BTreeMap::new();
    };
    match fetch_members(settings, join, http).await {
        Ok(m) => m.members.iter().map(|m| (m.id, m.url.clone())).collect(),
        Err(e) => {
            warn!("{e}");
            BTreeMap::new()
        }
    }
}

async fn fetch_members(
    settings: &Settings,
    join: &str,
    http: &reqwest::Client,
) -> Result<MembersResponse, String> {
    let req = with_token(http.get(format!("{join}/cluster/members")), settings)
        .timeout(Duration::from_secs(5));
    let resp = req
        .send()
        .await
        .map_err(|e| format!("--join {join}: cannot reach it: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("--join {join}: answered {status}: {}", text.trim()));
    }
    resp.json()
        .await
        .map_err(|e| format!("--join {join}: not a raft-kv member list: {e}"))
}
