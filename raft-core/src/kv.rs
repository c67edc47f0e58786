//! The key-value state machine that Raft replicates.
//!
//! Commands are applied in log order. A client that wants its writes
//! applied at most once first registers a session ([`Op::Register`]): the
//! registering entry's index is its client id. It then numbers its writes
//! 1, 2, 3, ... and retries a write with the same `(client_id, seq)`, so a
//! retried write is applied at most once and the retry gets the first result
//! back (thesis §6.3). A command naming a client id without a session (never
//! registered, or forgotten after [`KvStore::session_limit`] newer sessions)
//! is refused with [`OpResult::SessionExpired`] and never applied: a late
//! retry of a forgotten client cannot be told from a new write. Commands
//! with client id 0 have no session and are applied every time they are
//! committed (at least once when retried).

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use std::ops::Bound;
use std::sync::Arc;

use crate::auth::{AuthError, AuthOp, AuthState, Denied, Need, Principal};
use crate::keyspace::Keyspace;
use crate::types::{Entry, Index, Payload, Term};

/// A write a client asks the cluster to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client's session id, from a registration ([`Op::Register`]);
    /// 0 means "no session, no duplicate detection".
    pub client_id: u64,
    /// The client's sequence number for this write (1, 2, 3, ...).
    pub seq: u64,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// An estimate of the command's encoded size.
    pub fn approx_size(&self) -> usize {
        16 + self.op.approx_size()
    }
}

/// What a conditional write ([`Op::PutIf`], [`Op::DeleteIf`]) requires of
/// its key. It is part of the replicated command and is evaluated when the
/// entry is applied, against the state every member has at that point of
/// the log: never by the node that received the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// The key exists and was last written by the entry at this index
    /// (HTTP `If-Match: "<index>"`).
    ModIndex(Index),
    /// The key is absent: create only (HTTP `If-None-Match: *`).
    Absent,
    /// The key exists, whatever wrote it (HTTP `If-Match: *`).
    Exists,
}

impl Condition {
    /// Whether the condition holds for a key whose modification index is
    /// `current` (`None`: the key is absent).
    pub fn holds(self, current: Option<Index>) -> bool {
        match (self, current) {
            (Condition::ModIndex(want), Some(have)) => want == have,
            (Condition::ModIndex(_), None) => false,
            (Condition::Absent, current) => current.is_none(),
            (Condition::Exists, current) => current.is_some(),
        }
    }
}

/// A key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Compare-and-set: when the current value equals `expected` (`None`:
    /// the key is absent), set it to `value` (`None`: delete it).
    Cas {
        /// The key.
        key: String,
        /// The value the key must have now.
        expected: Option<String>,
        /// The value to set.
        value: Option<String>,
    },
    /// Open a client session (thesis §6.3): the result is
    /// [`OpResult::Registered`] with the new client id, the index of this
    /// entry (unique, increasing). The command's own `client_id` and `seq`
    /// are ignored and a registration is never deduplicated: a retried
    /// registration opens a second session, which simply ages out.
    Register,
    // New variants go at the end: a command is encoded with its variant's
    // position, and entries already in users' logs must decode unchanged.
    /// Set `key` to `value` if `condition` holds when the entry is applied;
    /// otherwise [`OpResult::ConditionFailed`] and nothing changes.
    PutIf {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// What the key must be like.
        condition: Condition,
    },
    /// Remove `key` if `condition` holds when the entry is applied;
    /// otherwise [`OpResult::ConditionFailed`] and nothing changes.
    DeleteIf {
        /// The key.
        key: String,
        /// What the key must be like.
        condition: Condition,
    },
    /// Remove every key starting with `prefix` (all keys for ""; the HTTP
    /// API refuses an empty prefix). The result is
    /// [`OpResult::DeletedPrefix`] with the number removed.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Change the users, roles or the auth switch ([`crate::auth`]); the
    /// result is [`OpResult::AuthChanged`] or [`OpResult::AuthRefused`].
    /// While auth is enabled it must come inside [`Op::AsUser`] from a user
    /// with the role `root`.
    Auth(AuthOp),
    /// `op` made on behalf of `user`, whose token names `generation`. The
    /// user's permission for `op` is checked against the auth state when
    /// the entry is applied, at that point of the log, so a member that has
    /// not yet heard of a revocation cannot let a revoked user write: a
    /// refusal is [`OpResult::PermissionDenied`] and nothing changes. While
    /// auth is disabled the wrapper is ignored and `op` applies as is.
    AsUser {
        /// The user's name.
        user: String,
        /// The user's token generation ([`crate::auth::User::generation`]).
        generation: u64,
        /// What the user asks for (never another `AsUser`).
        op: Box<Op>,
    },
}

impl Op {
    /// An estimate of the operation's encoded size.
    pub fn approx_size(&self) -> usize {
        match self {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
            Op::Cas {
                key,
                expected,
                value,
            } => {
                key.len()
                    + expected.as_ref().map_or(0, String::len)
                    + value.as_ref().map_or(0, String::len)
            }
            Op::Register => 0,
            Op::PutIf { key, value, .. } => 8 + key.len() + value.len(),
            Op::DeleteIf { key, .. } => 8 + key.len(),
            Op::DeletePrefix { prefix } => prefix.len(),
            Op::Auth(op) => op.approx_size(),
            Op::AsUser { user, op, .. } => 8 + user.len() + op.approx_size(),
        }
    }

    /// The key the operation touches (a registration touches none: "";
    /// a prefix delete: its prefix).
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::PutIf { key, .. }
            | Op::DeleteIf { key, .. } => key,
            Op::DeletePrefix { prefix } => prefix,
            Op::Register | Op::Auth(_) => "",
            Op::AsUser { op, .. } => op.key(),
        }
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A put was applied; `prev` is the value it replaced.
    Put {
        /// The previous value.
        prev: Option<String>,
    },
    /// A delete was applied; `prev` is the value it removed.
    Delete {
        /// The removed value.
        prev: Option<String>,
    },
    /// A compare-and-set was evaluated.
    Cas {
        /// Whether the value matched and was replaced.
        swapped: bool,
        /// The value before the command.
        prev: Option<String>,
    },
    /// The command's `seq` is older than the client's latest applied write:
    /// a late retry whose result is no longer kept. It was not applied again.
    Stale,
    /// The client's `seq` equals its latest applied write's, but the
    /// command differs: a client reused a sequence number. Not applied.
    SeqReused,
    /// The command names a client id that has no session: it was never
    /// registered, or it was forgotten (the session limit was reached and
    /// it was the least recently used). A retry cannot be told from a new
    /// write, so it is not applied; the client must register again and
    /// start over with the new id (thesis §6.3). Whether an earlier attempt
    /// of the same write was applied is unknown.
    SessionExpired,
    /// A registration was applied: the new session's client id.
    Registered {
        /// The new client id (the index of the registering entry).
        client_id: u64,
    },
    // New variants go at the end (session records in images hold results).
    /// A conditional write's condition did not hold: nothing changed.
    ConditionFailed {
        /// The key's modification index when the write was applied
        /// (`None`: the key was absent).
        mod_index: Option<Index>,
    },
    /// A prefix delete was applied.
    DeletedPrefix {
        /// How many keys it removed.
        deleted: u64,
    },
    /// Auth is enabled and the command's user may not do this (or names
    /// no user, or a revoked one): nothing changed.
    PermissionDenied(Denied),
    /// An [`Op::Auth`] change was applied: the new auth revision.
    AuthChanged {
        /// The auth state's revision after the change.
        revision: u64,
    },
    /// An [`Op::Auth`] change was refused: nothing changed.
    AuthRefused(AuthError),
}

/// The result of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry's index.
    pub index: Index,
    /// The entry's term.
    pub term: Term,
    /// For a command entry, its result (a duplicate gets the first result).
    pub result: Option<OpResult>,
    /// The index of the entry whose application gave `result`: this
    /// entry's, or for a retry answered with its first result, the entry
    /// that applied the write (so a put's is the modification index it gave
    /// the key, whichever attempt is answered).
    pub applied_at: Index,
}

/// One client's session: its newest write, kept to answer its retries
/// (right after registration: `seq` 0 and the registration's result).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ClientRecord {
    seq: u64,
    /// [`digest`] of the command's operation: a retry must be the same
    /// command, not another one under the same number.
    digest: u64,
    result: OpResult,
    /// The index of the entry that registered the session or applied its
    /// newest write: its age for eviction.
    index: Index,
}

/// A deterministic 64-bit digest of an operation (FNV-1a over its postcard
/// encoding): the same on every member and every platform.
fn digest(op: &Op) -> u64 {
    // Hashed as it is encoded: no buffer per applied command.
    struct Fnv1a(u64);
    impl std::io::Write for Fnv1a {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    postcard::to_io(op, &mut h).expect("hashing an Op cannot fail");
    h.0
}

/// The first byte of a state-machine image: its format. Format 2 added the
/// command digest to the client table; format 3 means sessions are opened by
/// registration only (a format-2 table holds sessions opened implicitly by a
/// first write, and is refused); format 4 keeps each key's modification
/// index; format 5 adds the users, roles and auth switch ([`AuthState`]).
/// Format-3 and format-4 images are still read: see [`KvStore::restore`].
const IMAGE_FORMAT: u8 = 5;

/// The image format before the auth state, still read (auth disabled).
const IMAGE_FORMAT_4: u8 = 4;

/// The image format before modification indexes, still read.
const IMAGE_FORMAT_3: u8 = 3;

/// A format-4 image's value type: a value and its modification index (the
/// index of the log entry that last wrote it).
#[derive(Clone, Debug, Deserialize)]
struct Slot {
    value: String,
    mod_index: Index,
}

/// How many client sessions are kept by default (the server's limit). When
/// a registration would exceed the limit, the session whose registration or
/// newest applied write is oldest in the log is forgotten (its later
/// commands get [`OpResult::SessionExpired`]).
pub const MAX_CLIENTS: usize = 100_000;

/// The replicated map plus the session table.
///
/// The session limit ([`KvStore::session_limit`]) is not part of the image:
/// it decides which sessions are evicted, so every member must apply with
/// the same one. The replica sets it from [`crate::Config::session_limit`]
/// (the server never changes the default, [`MAX_CLIENTS`]; the simulator
/// sets a small one for every node of a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    map: Keyspace,
    #[serde(deserialize_with = "ord_map::deserialize")]
    clients: OrdMap<u64, ClientRecord>,
    /// `index -> client_id` of each client record, to evict the oldest.
    #[serde(deserialize_with = "ord_map::deserialize")]
    client_age: OrdMap<Index, u64>,
    applied_index: Index,
    applied_term: Term,
    /// Users, roles and the auth switch; shared until changed, so a clone
    /// for a snapshot stays O(1).
    auth: Arc<AuthState>,
    #[serde(skip, default = "default_session_limit")]
    session_limit: usize,
}

fn default_session_limit() -> usize {
    MAX_CLIENTS
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            map: Keyspace::default(),
            clients: OrdMap::new(),
            client_age: OrdMap::new(),
            applied_index: 0,
            applied_term: 0,
            auth: Arc::default(),
            session_limit: MAX_CLIENTS,
        }
    }
}

/// An image of format 3 or 4: everything but the auth state, with the map's
/// values as `V` (format 4: [`Slot`], a value and its modification index;
/// format 3: the bare value).
#[derive(Deserialize)]
#[serde(bound(deserialize = "V: Deserialize<'de> + Clone"))]
struct ImageBeforeAuth<V: Clone> {
    #[serde(deserialize_with = "ord_map::deserialize")]
    map: OrdMap<String, V>,
    #[serde(deserialize_with = "ord_map::deserialize")]
    clients: OrdMap<u64, ClientRecord>,
    #[serde(deserialize_with = "ord_map::deserialize")]
    client_age: OrdMap<Index, u64>,
    applied_index: Index,
    applied_term: Term,
}

impl<V: Clone> ImageBeforeAuth<V> {
    /// The store it describes, its map turned into `map`, auth disabled.
    fn into_store(self, map: Keyspace) -> KvStore {
        KvStore {
            map,
            clients: self.clients,
            client_age: self.client_age,
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            auth: Arc::default(),
            session_limit: MAX_CLIENTS,
        }
    }
}

/// Decoding of the persistent maps that trusts no length prefix: a
/// snapshot comes from disk or from a peer, and a corrupt length must be an
/// error when the data runs out, not an allocation of that many entries up
/// front (which imbl's own decoder would make).
mod ord_map {
    use std::fmt;
    use std::marker::PhantomData;

    use imbl::OrdMap;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    pub(super) fn deserialize<'de, D, K, V>(d: D) -> Result<OrdMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord + Clone,
        V: Deserialize<'de> + Clone,
    {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord + Clone,
            V: Deserialize<'de> + Clone,
        {
            type Value = OrdMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = OrdMap::new();
                while let Some((k, v)) = access.next_entry()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A snapshot's bytes that do not decode.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("corrupt state-machine snapshot: {0}")]
pub struct SnapshotDecodeError(pub String);

impl KvStore {
    /// An empty store with the default session limit ([`MAX_CLIENTS`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many client sessions are kept before the least recently used
    /// one is forgotten.
    pub fn session_limit(&self) -> usize {
        self.session_limit
    }

    /// Sets the session limit (at least 1). Every member must use the same
    /// limit from the same point of the log, or their session tables, and
    /// so what they apply, differ: set it when the store is created or
    /// restored, never in the middle of a run. Sessions over a lowered limit
    /// are forgotten at the next registration.
    pub fn set_session_limit(&mut self, limit: usize) {
        self.session_limit = limit.max(1);
    }

    /// The number of open client sessions.
    pub fn sessions(&self) -> usize {
        self.clients.len()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|(value, _)| value)
    }

    /// The value of `key` and its modification index (the index of the
    /// entry that last wrote it).
    pub fn get_with_index(&self, key: &str) -> Option<(&str, Index)> {
        self.map.get(key)
    }

    /// Up to `limit` keys starting with `prefix`, in order, with their
    /// values; only keys after `after` when it is given (the next page of a
    /// listing that ended at `after`).
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<(String, String)> {
        let start = match after {
            // A page after a key below the prefix starts at the prefix.
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.map
            .range_from(start)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The users, roles and auth switch as of the applied index.
    pub fn auth(&self) -> &Arc<AuthState> {
        &self.auth
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }

    /// The term of the last applied entry.
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// Applies one committed entry. Entries must come in log order; an entry
    /// at or below the applied index is ignored (it is already reflected).
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        self.apply_with(entry, true, true)
    }

    /// [`KvStore::apply`] with deliberate bugs: the session table ignored
    /// (every command is applied as new, a retry a second time:
    /// `Faults::ignore_sessions`) and/or conditions ignored (a conditional
    /// write is applied whatever the key's state: `Faults::ignore_conditions`).
    #[cfg(feature = "faults")]
    pub(crate) fn apply_with_faults(
        &mut self,
        entry: &Entry,
        ignore_sessions: bool,
        ignore_conditions: bool,
    ) -> Applied {
        self.apply_with(entry, !ignore_sessions, !ignore_conditions)
    }

    /// The newest write of `client_id` its session remembers: its sequence
    /// number and the index of the entry that applied it (the one entry
    /// that changed the map for it; retries leave the record alone). Right
    /// after registration: `(0, the registration's index)`.
    pub(crate) fn session(&self, client_id: u64) -> Option<(u64, Index)> {
        self.clients.get(&client_id).map(|r| (r.seq, r.index))
    }

    /// `sessions`/`conditions` false: the fault-injection bugs above.
    fn apply_with(&mut self, entry: &Entry, sessions: bool, conditions: bool) -> Applied {
        let mut applied = Applied {
            index: entry.index,
            term: entry.term,
            result: None,
            applied_at: entry.index,
        };
        if entry.index <= self.applied_index {
            return applied;
        }
        self.applied_index = entry.index;
        self.applied_term = entry.term;
        if let Payload::Command(cmd) = &entry.payload {
            let (result, applied_at) = self.apply_command(cmd, entry.index, sessions, conditions);
            applied.result = Some(result);
            applied.applied_at = applied_at;
        }
        applied
    }

    fn apply_command(
        &mut self,
        cmd: &Command,
        index: Index,
        sessions: bool,
        conditions: bool,
    ) -> (OpResult, Index) {
        // A registration's own client id and number are ignored.
        let digest = if cmd.client_id != 0 && cmd.op != Op::Register {
            let digest = digest(&cmd.op);
            match self.clients.get(&cmd.client_id) {
                // Test-only fault: every command is new.
                _ if !sessions => digest,
                // No session: never registered, or forgotten. This may be
                // a late retry of a write already applied.
                None => return (OpResult::SessionExpired, index),
                // A retry: the first result, not a second application.
                Some(rec) if cmd.seq == rec.seq && rec.digest == digest => {
                    return (rec.result.clone(), rec.index);
                }
                Some(rec) if cmd.seq == rec.seq => return (OpResult::SeqReused, index),
                Some(rec) if cmd.seq < rec.seq => return (OpResult::Stale, index),
                _ => digest,
            }
        } else {
            0
        };
        // Who may do this is decided here, against the auth state at this
        // point of the log, the same on every member.
        let authorized = self.authorize(&cmd.op);
        let op = authorized.as_ref().map_or(&cmd.op, |(op, _)| *op);
        let mut result = match (op, &authorized) {
            (_, Err(denied)) => OpResult::PermissionDenied(denied.clone()),
            (Op::Put { key, value }, _) => OpResult::Put {
                prev: self.put(key, value, index),
            },
            (Op::Delete { key }, _) => OpResult::Delete {
                prev: self.map.remove(key),
            },
            (
                Op::Cas {
                    key,
                    expected,
                    value,
                },
                _,
            ) => {
                let prev = self.get(key).map(str::to_string);
                let swapped = prev == *expected;
                if swapped {
                    match value {
                        Some(v) => self.put(key, v, index),
                        None => self.map.remove(key),
                    };
                }
                OpResult::Cas { swapped, prev }
            }
            (
                Op::PutIf {
                    key,
                    value,
                    condition,
                },
                _,
            ) => match self.check(key, *condition, conditions) {
                Err(failed) => failed,
                Ok(()) => OpResult::Put {
                    prev: self.put(key, value, index),
                },
            },
            (Op::DeleteIf { key, condition }, _) => match self.check(key, *condition, conditions) {
                Err(failed) => failed,
                Ok(()) => OpResult::Delete {
                    prev: self.map.remove(key),
                },
            },
            (Op::DeletePrefix { prefix }, _) => OpResult::DeletedPrefix {
                deleted: self.delete_prefix(prefix),
            },
            (Op::Register, _) => return (self.register(index), index),
            (Op::Auth(change), _) => match Arc::make_mut(&mut self.auth).apply(change) {
                Ok(revision) => OpResult::AuthChanged { revision },
                Err(e) => OpResult::AuthRefused(e),
            },
            // `authorize` refuses a nested wrapper; never reached.
            (Op::AsUser { .. }, _) => OpResult::PermissionDenied(Denied::Anonymous),
        };
        // A user who may write a key but not read it does not learn the
        // value its write replaced.
        if let Ok((_, Some(u))) = authorized {
            if self.auth.check(Some(u), Need::Read(op.key())).is_err() {
                if let OpResult::Put { prev } | OpResult::Delete { prev } = &mut result {
                    *prev = None;
                }
            }
        }

        if cmd.client_id != 0 {
            let rec = ClientRecord {
                seq: cmd.seq,
                digest,
                result: result.clone(),
                index,
            };
            self.remember(cmd.client_id, rec);
        }
        (result, index)
    }

    /// The operation to apply (the one inside an [`Op::AsUser`]) and the
    /// user it is made for, or why the auth state refuses it. While auth is
    /// disabled everything is allowed; while enabled, every operation but a
    /// session registration needs a user with the permission (a member that
    /// has not applied the enabling entry yet may still propose anonymous
    /// writes: they are refused here).
    fn authorize<'a>(&self, op: &'a Op) -> Result<(&'a Op, Option<Principal<'a>>), Denied> {
        let (inner, user) = match op {
            Op::AsUser {
                user,
                generation,
                op,
            } => (&**op, Some((user.as_str(), *generation))),
            op => (op, None),
        };
        if !self.auth.enabled() {
            return Ok((inner, user));
        }
        let need = match inner {
            Op::Register if user.is_none() => return Ok((inner, None)),
            Op::Register => Need::User,
            Op::Auth(_) => Need::Admin,
            Op::AsUser { .. } => {
                return Err(Denied::Missing {
                    user: user.map_or(String::new(), |u| u.0.to_string()),
                    what: "act for another user".into(),
                })
            }
            // A compare-and-set reports the value it compared, a
            // conditional write the key's modification index: both read.
            Op::Cas { key, .. } | Op::PutIf { key, .. } | Op::DeleteIf { key, .. } => {
                self.auth.check(user, Need::Read(key))?;
                Need::Write(key)
            }
            other => Need::Write(other.key()),
        };
        self.auth.check(user, need)?;
        Ok((inner, user))
    }

    /// Sets `key` to `value`, written by the entry at `index`; the value it
    /// replaced.
    fn put(&mut self, key: &str, value: &str, index: Index) -> Option<String> {
        self.map.insert(key, value, index)
    }

    /// `Err` with the failure's result when `condition` does not hold for
    /// `key` now (`enforce` false: the `ignore_conditions` fault).
    fn check(&self, key: &str, condition: Condition, enforce: bool) -> Result<(), OpResult> {
        let mod_index = self.map.get(key).map(|(_, mod_index)| mod_index);
        if !enforce || condition.holds(mod_index) {
            Ok(())
        } else {
            Err(OpResult::ConditionFailed { mod_index })
        }
    }

    /// Removes every key starting with `prefix`; how many.
    fn delete_prefix(&mut self, prefix: &str) -> u64 {
        let doomed: Vec<String> = self
            .map
            .range_from(Bound::Included(prefix))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.to_string())
            .collect();
        for key in &doomed {
            self.map.remove(key);
        }
        doomed.len() as u64
    }

    /// Opens a session whose client id is `index`, the registering entry's.
    fn register(&mut self, index: Index) -> OpResult {
        let result = OpResult::Registered { client_id: index };
        let rec = ClientRecord {
            seq: 0,
            digest: 0,
            result: result.clone(),
            index,
        };
        self.remember(index, rec);
        result
    }

    /// Stores a session's record and forgets the least recently used
    /// sessions over the limit (by the index of their newest registration or
    /// applied write: the same order on every member).
    fn remember(&mut self, client_id: u64, rec: ClientRecord) {
        let index = rec.index;
        if let Some(old) = self.clients.insert(client_id, rec) {
            self.client_age.remove(&old.index);
        }
        self.client_age.insert(index, client_id);
        while self.clients.len() > self.session_limit {
            let Some(&(age, oldest)) = self.client_age.get_min() else {
                break;
            };
            self.client_age.remove(&age);
            self.clients.remove(&oldest);
        }
    }

    /// Serializes the whole state (map, client table, applied index/term).
    /// The encoding is deterministic: the same state gives the same bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![IMAGE_FORMAT];
        postcard::to_io(self, &mut out).expect("serializing a KvStore to memory cannot fail");
        out
    }

    /// Rebuilds a store from [`KvStore::snapshot`]'s bytes, with the
    /// default session limit (the caller sets its own after).
    ///
    /// A format-4 image (written before the auth state) restores with auth
    /// disabled and no users or roles, which is what it had.
    ///
    /// A format-3 image (written before keys had modification indexes)
    /// restores with every key's modification index set to the image's
    /// applied index. That is safe: the true index of each key is at or
    /// below it, so a condition naming the key's true (older) index fails
    /// rather than passing wrongly, and the client reads the key again to
    /// learn the index it now has.
    pub fn restore(data: &[u8]) -> Result<Self, SnapshotDecodeError> {
        let Some((&format, image)) = data.split_first() else {
            return Ok(Self::default());
        };
        let decode_error = |e: postcard::Error| SnapshotDecodeError(e.to_string());
        match format {
            IMAGE_FORMAT => postcard::from_bytes(image).map_err(decode_error),
            IMAGE_FORMAT_4 => {
                let mut old: ImageBeforeAuth<Slot> =
                    postcard::from_bytes(image).map_err(decode_error)?;
                let map = std::mem::take(&mut old.map)
                    .iter()
                    .map(|(key, slot)| (key.as_str(), slot.value.as_str(), slot.mod_index))
                    .collect();
                Ok(old.into_store(map))
            }
            IMAGE_FORMAT_3 => {
                let mut old: ImageBeforeAuth<String> =
                    postcard::from_bytes(image).map_err(decode_error)?;
                let mod_index = old.applied_index;
                let map = std::mem::take(&mut old.map)
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str(), mod_index))
                    .collect();
                Ok(old.into_store(map))
            }
            _ => Err(SnapshotDecodeError(format!(
                "state-machine image format {format} is not supported (this build reads \
                 formats {IMAGE_FORMAT_3} to {IMAGE_FORMAT}: format 2 held sessions opened \
                 without registration and is not converted)"
            ))),
        }
    }
}

impl KvStore {
    /// [`KvStore::snapshot`]'s bytes, written to `out` as they are
    /// serialized: a large state is never held as one buffer beside the
    /// live map (the server streams it into its snapshot file).
    pub fn write_snapshot<W: std::io::Write>(&self, mut out: W) -> std::io::Result<()> {
        out.write_all(&[IMAGE_FORMAT])?;
        postcard::to_io(self, out)
            .map(drop)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client_id: u64, seq: u64, k: &str, v: &str) -> Payload {
        Payload::command(Command {
            client_id,
            seq,
            op: Op::Put {
                key: k.into(),
                value: v.into(),
            },
        })
    }

    fn entry(index: Index, payload: Payload) -> Entry {
        Entry {
            term: 1,
            index,
            payload,
        }
    }

    fn register() -> Payload {
        Payload::command(Command {
            client_id: 0,
            seq: 0,
            op: Op::Register,
        })
    }

    /// Applies a registration at `index`; returns the new client id.
    fn registered(kv: &mut KvStore, index: Index) -> u64 {
        match kv.apply(&entry(index, register())).result {
            Some(OpResult::Registered { client_id }) => client_id,
            other => panic!("registration gave {other:?}"),
        }
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        // The map's length says 2^35 entries; the data has none.
        let bytes = [IMAGE_FORMAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(KvStore::restore(&bytes).is_err());
    }

    #[test]
    fn retried_write_applies_once_and_gets_first_result() {
        let mut kv = KvStore::new();
        let c7 = registered(&mut kv, 1);
        let c8 = registered(&mut kv, 2);
        assert_eq!((c7, c8), (1, 2), "a client id is its registration's index");
        let a = kv.apply(&entry(3, put(c7, 1, "k", "a")));
        assert_eq!(a.result, Some(OpResult::Put { prev: None }));
        kv.apply(&entry(4, put(c8, 1, "k", "b")));
        // Client 7 retries seq 1: it must not overwrite "b".
        let retry = kv.apply(&entry(5, put(c7, 1, "k", "a")));
        assert_eq!(retry.result, Some(OpResult::Put { prev: None }));
        assert_eq!(kv.get("k"), Some("b"));
        kv.apply(&entry(6, put(c7, 2, "k", "c")));
        let late = kv.apply(&entry(7, put(c7, 1, "k", "a")));
        assert_eq!(late.result, Some(OpResult::Stale));
        assert_eq!(kv.get("k"), Some("c"));
    }

    #[test]
    fn an_unregistered_client_id_is_refused_and_not_applied() {
        let mut kv = KvStore::new();
        for seq in [1, 2, 5] {
            let r = kv.apply(&entry(seq, put(42, seq, "k", "v")));
            assert_eq!(r.result, Some(OpResult::SessionExpired));
        }
        assert_eq!(kv.get("k"), None);
        assert_eq!(kv.sessions(), 0);
        assert_eq!(
            kv.applied_index(),
            5,
            "a refused command is still applied as an entry"
        );
    }

    #[test]
    fn commands_without_a_client_id_are_applied_every_time() {
        let mut kv = KvStore::new();
        let first = kv.apply(&entry(1, put(0, 0, "k", "a")));
        assert_eq!(first.result, Some(OpResult::Put { prev: None }));
        // The same command again (a retry of a write without id) applies again.
        let again = kv.apply(&entry(2, put(0, 0, "k", "a")));
        assert_eq!(
            again.result,
            Some(OpResult::Put {
                prev: Some("a".into())
            })
        );
        assert_eq!(kv.sessions(), 0, "no session is opened for client 0");
    }

    #[test]
    fn a_registration_ignores_its_own_ids_and_is_not_deduplicated() {
        let mut kv = KvStore::new();
        let named = Payload::command(Command {
            client_id: 99,
            seq: 3,
            op: Op::Register,
        });
        assert_eq!(
            kv.apply(&entry(1, named.clone())).result,
            Some(OpResult::Registered { client_id: 1 })
        );
        // A retried registration opens another session.
        assert_eq!(
            kv.apply(&entry(2, named)).result,
            Some(OpResult::Registered { client_id: 2 })
        );
        assert_eq!(kv.sessions(), 2);
        assert_eq!(kv.session(1), Some((0, 1)));
    }

    #[test]
    fn old_entries_are_ignored() {
        let mut kv = KvStore::new();
        kv.apply(&entry(1, put(0, 0, "k", "a")));
        kv.apply(&entry(1, put(0, 0, "k", "b")));
        assert_eq!(kv.get("k"), Some("a"));
    }

    #[test]
    fn cas_and_delete() {
        let mut kv = KvStore::new();
        let cas = |i, exp: Option<&str>, val: Option<&str>| {
            entry(
                i,
                Payload::command(Command {
                    client_id: 0,
                    seq: 0,
                    op: Op::Cas {
                        key: "k".into(),
                        expected: exp.map(Into::into),
                        value: val.map(Into::into),
                    },
                }),
            )
        };
        let r = kv.apply(&cas(1, Some("x"), Some("y"))).result;
        assert_eq!(
            r,
            Some(OpResult::Cas {
                swapped: false,
                prev: None
            })
        );
        let r = kv.apply(&cas(2, None, Some("y"))).result;
        assert_eq!(
            r,
            Some(OpResult::Cas {
                swapped: true,
                prev: None
            })
        );
        let r = kv.apply(&cas(3, Some("y"), None)).result;
        assert_eq!(
            r,
            Some(OpResult::Cas {
                swapped: true,
                prev: Some("y".into())
            })
        );
        assert_eq!(kv.get("k"), None);
    }

    #[test]
    fn snapshot_round_trip_is_exact_and_deterministic() {
        let mut kv = KvStore::new();
        kv.set_session_limit(3);
        for i in 1..=5 {
            registered(&mut kv, i);
        }
        for i in 6..=50 {
            kv.apply(&entry(
                i,
                put(i % 5 + 1, i / 5 + 1, &format!("key{i}"), "v"),
            ));
        }
        assert_eq!(kv.sessions(), 3);
        let bytes = kv.snapshot();
        assert_eq!(bytes[0], 5, "image format 5");
        let mut back = KvStore::restore(&bytes).unwrap();
        assert_eq!(
            back.session_limit(),
            MAX_CLIENTS,
            "the limit is not in the image"
        );
        back.set_session_limit(3);
        assert_eq!(back, kv);
        assert_eq!(back.snapshot(), bytes);
        // The restored sessions answer retries and refuse forgotten clients
        // exactly as the original does.
        for (client, seq) in [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10)] {
            let e = entry(51, put(client, seq, "key", "v"));
            assert_eq!(back.clone().apply(&e), kv.clone().apply(&e));
        }
        assert!(KvStore::restore(&[0xff, 0xff, 0xff]).is_err());
        let err = KvStore::restore(&[1, 0, 0, 0, 0]).unwrap_err();
        assert!(err.0.contains("format 1 is not supported"), "{err}");
    }

    #[test]
    fn a_format_2_image_is_refused_with_its_version() {
        let mut kv = KvStore::new();
        let c = registered(&mut kv, 1);
        kv.apply(&entry(2, put(c, 1, "k", "v")));
        let mut old = kv.snapshot();
        old[0] = 2;
        let err = KvStore::restore(&old).unwrap_err();
        assert!(err.0.contains("format 2 is not supported"), "{err}");
        assert!(err.0.contains("reads formats 3 to 5"), "{err}");
    }

    #[test]
    fn list_by_prefix() {
        let mut kv = KvStore::new();
        for (i, k) in ["a1", "a2", "b1", "a3"].iter().enumerate() {
            kv.apply(&entry(i as u64 + 1, put(0, 0, k, "v")));
        }
        let keys = |after, limit| -> Vec<String> {
            kv.list("a", after, limit)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(None, 2), ["a1", "a2"]);
        assert_eq!(keys(Some("a2"), 2), ["a3"], "the page after a2");
        assert_eq!(keys(Some("a3"), 2), Vec::<String>::new());
        assert_eq!(keys(Some("0"), 1), ["a1"], "a token below the prefix");
        assert_eq!(keys(Some("a"), 1), ["a1"]);
        assert_eq!(kv.list("", None, 10).len(), 4);
    }

    #[test]
    fn a_reused_sequence_number_with_another_command_is_refused() {
        let mut kv = KvStore::new();
        let c = registered(&mut kv, 1);
        kv.apply(&entry(2, put(c, 1, "k", "a")));
        // Same client, same number, another key: not a retry.
        let other = kv.apply(&entry(3, put(c, 1, "x", "b")));
        assert_eq!(other.result, Some(OpResult::SeqReused));
        assert_eq!(kv.get("x"), None);
        // The real retry still gets its first result.
        let retry = kv.apply(&entry(4, put(c, 1, "k", "a")));
        assert_eq!(retry.result, Some(OpResult::Put { prev: None }));
    }

    #[test]
    fn a_forgotten_client_is_refused_not_applied_again() {
        let mut kv = KvStore::new();
        let c = registered(&mut kv, 1);
        kv.apply(&entry(2, put(c, 1, "k", "first")));
        kv.apply(&entry(3, put(c, 2, "k", "second")));
        // MAX_CLIENTS other clients register: client 1 is forgotten.
        for i in 0..MAX_CLIENTS as u64 {
            registered(&mut kv, 4 + i);
        }
        assert_eq!(kv.sessions(), MAX_CLIENTS);
        assert!(kv.session(c).is_none());
        let other = 4;
        kv.apply(&entry(10 + MAX_CLIENTS as u64, put(other, 1, "k", "third")));
        // A late retry of its second write must not bring "second" back.
        let late = kv.apply(&entry(11 + MAX_CLIENTS as u64, put(c, 2, "k", "second")));
        assert_eq!(late.result, Some(OpResult::SessionExpired));
        assert_eq!(kv.get("k"), Some("third"));
    }

    /// The scenario main's implicit sessions got wrong, in its own terms
    /// (no registration): a client's first write is applied, its session
    /// is forgotten after `MAX_CLIENTS` other clients, and a late retry of
    /// that first write (seq 1) looked like a new client and was applied a
    /// second time, overwriting a newer value. Now no command opens a
    /// session, and the retry is refused.
    #[test]
    fn a_late_retry_of_seq_1_after_eviction_is_not_applied_again() {
        let mut kv = KvStore::new();
        kv.apply(&entry(1, put(1, 1, "k", "first")));
        for c in 0..MAX_CLIENTS as u64 {
            kv.apply(&entry(2 + c, put(1_000 + c, 1, "other", "v")));
        }
        kv.apply(&entry(2 + MAX_CLIENTS as u64, put(0, 0, "k", "newer")));
        let late = kv.apply(&entry(3 + MAX_CLIENTS as u64, put(1, 1, "k", "first")));
        assert_ne!(
            late.result,
            Some(OpResult::Put {
                prev: Some("newer".into())
            })
        );
        assert_eq!(
            kv.get("k"),
            Some("newer"),
            "the late retry was applied again"
        );
    }

    /// The same with registration and a small session limit: eviction
    /// follows the order of the newest registration or applied write, and
    /// every retry of a forgotten client, seq 1 included, is refused.
    #[test]
    fn eviction_forgets_the_least_recently_used_session_and_refuses_its_retries() {
        let mut kv = KvStore::new();
        kv.set_session_limit(3);
        let a = registered(&mut kv, 1);
        let b = registered(&mut kv, 2);
        let c = registered(&mut kv, 3);
        kv.apply(&entry(4, put(a, 1, "k", "a1")));
        // b is now the least recently used: d's registration forgets it.
        let d = registered(&mut kv, 5);
        assert_eq!(kv.sessions(), 3);
        assert!(kv.session(b).is_none());
        for id in [a, c, d] {
            assert!(kv.session(id).is_some(), "session {id} kept");
        }
        // c is next: e's registration forgets it.
        let e = registered(&mut kv, 6);
        assert!(kv.session(c).is_none());
        kv.apply(&entry(7, put(e, 1, "k", "e1")));
        // A's write is evicted with a after two more registrations.
        registered(&mut kv, 8);
        registered(&mut kv, 9);
        assert!(kv.session(a).is_none());
        let retry = kv.apply(&entry(10, put(a, 1, "k", "a1")));
        assert_eq!(retry.result, Some(OpResult::SessionExpired));
        assert_eq!(kv.get("k"), Some("e1"));
        for (i, id) in [b, c].into_iter().enumerate() {
            let r = kv.apply(&entry(11 + i as u64, put(id, 1, "x", "v"))).result;
            assert_eq!(r, Some(OpResult::SessionExpired));
        }
        assert_eq!(kv.get("x"), None);
    }

    /// Pipelined writes of one client: a newer number applied first makes
    /// a late older one stale, never applied.
    #[test]
    fn an_older_number_after_a_newer_one_is_stale() {
        let mut kv = KvStore::new();
        let c = registered(&mut kv, 1);
        kv.apply(&entry(2, put(c, 1, "k", "1")));
        kv.apply(&entry(3, put(c, 3, "k", "3")));
        let late = kv.apply(&entry(4, put(c, 2, "k", "2")));
        assert_eq!(late.result, Some(OpResult::Stale));
        assert_eq!(kv.get("k"), Some("3"));
    }

    #[test]
    fn the_command_digest_is_fnv1a_of_the_encoding() {
        let op = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let bytes = postcard::to_stdvec(&op).unwrap();
        let want = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        assert_eq!(digest(&op), want);
    }

    fn cmd(client_id: u64, seq: u64, op: Op) -> Payload {
        Payload::command(Command { client_id, seq, op })
    }

    fn put_if(k: &str, v: &str, condition: Condition) -> Op {
        Op::PutIf {
            key: k.into(),
            value: v.into(),
            condition,
        }
    }

    /// `Command`s as the code before conditional writes encoded them (one
    /// per operation then known), as they sit in users' logs: they must
    /// decode to the same commands.
    #[test]
    fn commands_written_before_conditional_writes_still_decode() {
        let cases: [(&[u8], Command); 4] = [
            (
                &[7, 3, 0, 1, 107, 1, 118],
                Command {
                    client_id: 7,
                    seq: 3,
                    op: Op::Put {
                        key: "k".into(),
                        value: "v".into(),
                    },
                },
            ),
            (
                &[7, 4, 1, 1, 107],
                Command {
                    client_id: 7,
                    seq: 4,
                    op: Op::Delete { key: "k".into() },
                },
            ),
            (
                &[0, 0, 2, 1, 107, 1, 1, 97, 0],
                Command {
                    client_id: 0,
                    seq: 0,
                    op: Op::Cas {
                        key: "k".into(),
                        expected: Some("a".into()),
                        value: None,
                    },
                },
            ),
            (
                &[0, 0, 3],
                Command {
                    client_id: 0,
                    seq: 0,
                    op: Op::Register,
                },
            ),
        ];
        for (bytes, want) in cases {
            let got: Command = postcard::from_bytes(bytes).unwrap();
            assert_eq!(got, want);
            assert_eq!(postcard::to_stdvec(&want).unwrap(), bytes, "same encoding");
        }
    }

    /// A format-3 image written by the code before modification indexes:
    /// registration at 1, client 1 put a=1 at 2, b=2 at 3 (no session), a
    /// delete of an absent key at 4; applied index 4, term 2.
    const FORMAT_3_IMAGE: [u8; 30] = [
        3, 2, 1, 97, 1, 49, 1, 98, 1, 50, 1, 1, 1, 163, 136, 236, 134, 151, 186, 194, 203, 98, 0,
        0, 2, 1, 2, 1, 4, 2,
    ];

    #[test]
    fn a_format_3_image_restores_with_every_mod_index_at_its_applied_index() {
        let mut kv = KvStore::restore(&FORMAT_3_IMAGE).unwrap();
        assert_eq!((kv.applied_index(), kv.applied_term()), (4, 2));
        assert_eq!(kv.get_with_index("a"), Some(("1", 4)));
        assert_eq!(kv.get_with_index("b"), Some(("2", 4)));
        assert_eq!(kv.len(), 2);
        // The session came through: a retry of client 1's write gets its
        // first result, and a condition naming a's true index (2) fails.
        let retry = cmd(
            1,
            1,
            Op::Put {
                key: "a".into(),
                value: "1".into(),
            },
        );
        assert_eq!(
            kv.apply(&entry(5, retry)).result,
            Some(OpResult::Put { prev: None })
        );
        let r = kv.apply(&entry(
            6,
            cmd(0, 0, put_if("a", "x", Condition::ModIndex(2))),
        ));
        assert_eq!(
            r.result,
            Some(OpResult::ConditionFailed { mod_index: Some(4) })
        );
        let r = kv.apply(&entry(
            7,
            cmd(0, 0, put_if("a", "x", Condition::ModIndex(4))),
        ));
        assert_eq!(
            r.result,
            Some(OpResult::Put {
                prev: Some("1".into())
            })
        );
        // Written back as format 5, and read back the same.
        let image = kv.snapshot();
        assert_eq!(image[0], 5);
        assert_eq!(KvStore::restore(&image).unwrap(), kv);
    }

    #[test]
    fn every_write_sets_the_mod_index_to_its_entry() {
        let mut kv = KvStore::new();
        kv.apply(&entry(1, put(0, 0, "k", "a")));
        assert_eq!(kv.get_with_index("k"), Some(("a", 1)));
        kv.apply(&entry(2, put(0, 0, "x", "b")));
        assert_eq!(kv.get_with_index("k"), Some(("a", 1)), "another key");
        let cas = Op::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            value: Some("c".into()),
        };
        kv.apply(&entry(3, cmd(0, 0, cas)));
        assert_eq!(kv.get_with_index("k"), Some(("c", 3)));
        kv.apply(&entry(4, cmd(0, 0, put_if("k", "d", Condition::Exists))));
        assert_eq!(kv.get_with_index("k"), Some(("d", 4)));
        kv.apply(&entry(5, cmd(0, 0, Op::Delete { key: "k".into() })));
        assert_eq!(kv.get_with_index("k"), None);
    }

    #[test]
    fn conditional_puts_and_deletes_apply_only_when_the_condition_holds() {
        let mut kv = KvStore::new();
        let failed = |mod_index| Some(OpResult::ConditionFailed { mod_index });
        // Create only: the first succeeds, the second fails with the index.
        let r = kv.apply(&entry(1, cmd(0, 0, put_if("k", "a", Condition::Absent))));
        assert_eq!(r.result, Some(OpResult::Put { prev: None }));
        let r = kv.apply(&entry(2, cmd(0, 0, put_if("k", "b", Condition::Absent))));
        assert_eq!(r.result, failed(Some(1)));
        // A stale index fails, the current one succeeds.
        let r = kv.apply(&entry(
            3,
            cmd(0, 0, put_if("k", "c", Condition::ModIndex(7))),
        ));
        assert_eq!(r.result, failed(Some(1)));
        let r = kv.apply(&entry(
            4,
            cmd(0, 0, put_if("k", "c", Condition::ModIndex(1))),
        ));
        assert_eq!(
            r.result,
            Some(OpResult::Put {
                prev: Some("a".into())
            })
        );
        assert_eq!(kv.get_with_index("k"), Some(("c", 4)));
        let del_if = |condition| {
            cmd(
                0,
                0,
                Op::DeleteIf {
                    key: "k".into(),
                    condition,
                },
            )
        };
        let r = kv.apply(&entry(5, del_if(Condition::ModIndex(1))));
        assert_eq!(r.result, failed(Some(4)));
        assert_eq!(kv.get("k"), Some("c"), "a failed delete changes nothing");
        let r = kv.apply(&entry(6, del_if(Condition::ModIndex(4))));
        assert_eq!(
            r.result,
            Some(OpResult::Delete {
                prev: Some("c".into())
            })
        );
        // Absent now: an index or `Exists` fails with no index.
        assert_eq!(
            kv.apply(&entry(7, del_if(Condition::Exists))).result,
            failed(None)
        );
        let r = kv.apply(&entry(
            8,
            cmd(0, 0, put_if("k", "d", Condition::ModIndex(4))),
        ));
        assert_eq!(r.result, failed(None));
        assert_eq!(kv.get("k"), None);
        assert_eq!(kv.applied_index(), 8);
    }

    #[test]
    fn a_retried_conditional_write_gets_its_first_result_not_a_failure() {
        let mut kv = KvStore::new();
        let c = registered(&mut kv, 1);
        let create = cmd(c, 1, put_if("k", "a", Condition::Absent));
        let first = kv.apply(&entry(2, create.clone())).result;
        assert_eq!(first, Some(OpResult::Put { prev: None }));
        // The retry would fail its condition if applied again; it is not,
        // and it names the entry that applied the write.
        let retry = kv.apply(&entry(3, create));
        assert_eq!((retry.result, retry.applied_at), (first, 2));
        assert_eq!(kv.get_with_index("k"), Some(("a", 2)));
        // A failed condition is a result like any other: its retry gets it.
        let late = cmd(c, 2, put_if("k", "b", Condition::Absent));
        let failed = kv.apply(&entry(4, late.clone())).result;
        assert_eq!(
            failed,
            Some(OpResult::ConditionFailed { mod_index: Some(2) })
        );
        kv.apply(&entry(5, cmd(0, 0, Op::Delete { key: "k".into() })));
        assert_eq!(kv.apply(&entry(6, late)).result, failed);
        assert_eq!(kv.get("k"), None, "the retry did not create the key");
        // The same number with another command is refused, prefix deletes too.
        let other = cmd(c, 2, Op::DeletePrefix { prefix: "k".into() });
        assert_eq!(kv.apply(&entry(7, other)).result, Some(OpResult::SeqReused));
        let stale = cmd(c, 1, Op::DeletePrefix { prefix: "k".into() });
        assert_eq!(kv.apply(&entry(8, stale)).result, Some(OpResult::Stale));
        let expired = cmd(99, 1, put_if("n", "v", Condition::Absent));
        assert_eq!(
            kv.apply(&entry(9, expired)).result,
            Some(OpResult::SessionExpired)
        );
        assert_eq!(kv.get("n"), None);
    }

    #[test]
    fn a_prefix_delete_removes_exactly_the_keys_with_the_prefix() {
        let mut kv = KvStore::new();
        for (i, k) in ["a", "app/1", "app/2", "app/3", "apq", "b"]
            .iter()
            .enumerate()
        {
            kv.apply(&entry(i as u64 + 1, put(0, 0, k, "v")));
        }
        let c = registered(&mut kv, 7);
        let del = cmd(
            c,
            1,
            Op::DeletePrefix {
                prefix: "app/".into(),
            },
        );
        let r = kv.apply(&entry(8, del.clone())).result;
        assert_eq!(r, Some(OpResult::DeletedPrefix { deleted: 3 }));
        let keys: Vec<_> = kv.list("", None, 10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "apq", "b"]);
        // Its retry gets the first count, after a new app/ key is written.
        kv.apply(&entry(9, put(0, 0, "app/4", "v")));
        assert_eq!(kv.apply(&entry(10, del)).result, r);
        assert_eq!(kv.get("app/4"), Some("v"));
        let none = cmd(
            0,
            0,
            Op::DeletePrefix {
                prefix: "zz".into(),
            },
        );
        assert_eq!(
            kv.apply(&entry(11, none)).result,
            Some(OpResult::DeletedPrefix { deleted: 0 })
        );
    }

    #[test]
    fn mod_indexes_survive_a_snapshot() {
        let mut kv = KvStore::new();
        kv.apply(&entry(1, put(0, 0, "a", "1")));
        kv.apply(&entry(2, put(0, 0, "b", "2")));
        kv.apply(&entry(3, put(0, 0, "a", "3")));
        let back = KvStore::restore(&kv.snapshot()).unwrap();
        assert_eq!(back.get_with_index("a"), Some(("3", 3)));
        assert_eq!(back.get_with_index("b"), Some(("2", 2)));
    }
}
