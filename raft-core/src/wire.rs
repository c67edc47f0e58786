//! The wire types shared by the server, the CLI and the browser dashboard:
//! REST request and response bodies, the `/status` and `/cluster` shapes and
//! the peer RPC batch and snapshot chunk. Plain serde structs; JSON on the
//! REST API, postcard (compact binary) on the peer RPC.

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::types::{Index, NodeId, Role, SnapshotMeta, Term};

/// Response header naming the leader's id and base URL: `2 http://127.0.0.1:3002`.
pub const HEADER_LEADER: &str = "x-raft-leader";
/// Response header naming the node that served the request.
pub const HEADER_SERVED_BY: &str = "x-raft-served-by";
/// Response header set (`1`) when a follower forwarded the request to the leader.
pub const HEADER_FORWARDED: &str = "x-raft-forwarded";
/// Request header: the client's id for duplicate detection (non-zero u64).
pub const HEADER_CLIENT_ID: &str = "x-raft-client-id";
/// Request header: the client's sequence number of this write.
pub const HEADER_CLIENT_SEQ: &str = "x-raft-client-seq";
/// Request header carrying the cluster token on the peer RPC and admin endpoints.
pub const HEADER_CLUSTER_TOKEN: &str = "x-raft-cluster-token";
/// Peer RPC request header: the sender's cluster id (16 hex digits). A node
/// refuses peer traffic from another cluster.
pub const HEADER_CLUSTER_ID: &str = "x-raft-cluster-id";

/// `PUT /key/{key}` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The new value.
    pub value: String,
}

/// `GET /key/{key}` answer (also an item of [`ListResponse`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// `GET /key/{key}` only: the key's modification index, the log index
    /// of the write that last set it (also sent as `ETag: "<index>"`). A
    /// conditional write names it in `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_index: Option<Index>,
}

/// The answer to a committed write (`PUT` or `DELETE /key/{key}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// The key written.
    pub key: String,
    /// The log index at which the write was committed and applied.
    pub index: Index,
    /// The value before the write (`None`: the key was absent).
    pub prev: Option<String>,
    /// The node whose Raft log took the write (the leader).
    pub served_by: NodeId,
    /// A put only: the modification index it gave the key, the index of
    /// the entry that applied it (for a retry answered with its first
    /// result, that first entry's, not `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_index: Option<Index>,
}

/// The answer to `DELETE /keys?prefix=P`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePrefixResponse {
    /// How many keys the delete removed.
    pub deleted: u64,
    /// The log index at which it was applied.
    pub index: Index,
    /// The node whose Raft log took it (the leader).
    pub served_by: NodeId,
}

/// The 412 answer to a conditional write (`If-Match`, `If-None-Match`)
/// whose condition did not hold when it was applied. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreconditionFailed {
    /// A one-line human-readable message.
    pub error: String,
    /// The key's modification index when the write was applied (`null`:
    /// the key was absent).
    pub mod_index: Option<Index>,
}

/// The answer to `POST /sessions`: a new client session (thesis §6.3).
/// Send its `client_id` in the client-id header of every write, numbered
/// 1, 2, 3, ... in the sequence header; a retry with the same pair is
/// applied at most once. A write naming a forgotten session gets 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The new client id (the log index of the registration).
    pub client_id: u64,
    /// The node whose Raft log took the registration (the leader).
    pub served_by: NodeId,
}

/// `GET /keys?prefix=&limit=&continue=` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// Matching keys with their values, in key order.
    pub items: Vec<KeyValue>,
    /// Whether more keys match than `limit` allowed.
    pub truncated: bool,
    /// When truncated: the token to pass as `continue=` for the next page
    /// (opaque to clients). Each page is its own linearizable read.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// Every error answer: `{"error": "...", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A one-line human-readable message.
    pub error: String,
    /// The leader's id, when known and relevant (e.g. on 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// The leader's base URL, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

/// A follower's replication state, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerStatus {
    /// The follower's id.
    pub id: NodeId,
    /// The highest index known to be replicated on it.
    pub match_index: Index,
    /// The next index the leader will send it.
    pub next_index: Index,
    /// `probe`, `replicate` or `snapshot`.
    pub state: String,
    /// Entries behind the leader's last index.
    pub lag: u64,
    /// Ticks since the leader last heard from it.
    pub ticks_since_contact: u64,
    /// Milliseconds since the leader last heard from it (ticks × tick length).
    pub ms_since_contact: u64,
    /// The leader has not heard from it within an election timeout: down
    /// or cut off, whatever `state` still says (a leader keeps a silent
    /// follower in `replicate` until it answers a rejection).
    #[serde(default)]
    pub silent: bool,
}

/// `GET /version` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// The server's release (its crate version).
    pub version: String,
    /// The source commit it was built from ("unknown" outside a git
    /// checkout).
    pub commit: String,
}

/// `GET /status` answer: one node's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This node's id.
    pub id: NodeId,
    /// This node's base URL.
    pub url: String,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of (`None`: none known).
    pub leader: Option<NodeId>,
    /// Who it voted for in `term`.
    pub vote: Option<NodeId>,
    /// Last log index.
    pub last_index: Index,
    /// Commit index.
    pub commit_index: Index,
    /// Applied index.
    pub applied_index: Index,
    /// Index of the newest snapshot (0: none).
    pub snapshot_index: Index,
    /// Voting members (while a change is in its joint phase: the voters
    /// of the configuration being entered).
    pub members: Vec<NodeId>,
    /// Non-voting members (learners).
    #[serde(default)]
    pub learners: Vec<NodeId>,
    /// While a membership change is in its joint phase: the voters of the
    /// configuration being left (empty otherwise).
    #[serde(default)]
    pub outgoing: Vec<NodeId>,
    /// The cluster this node belongs to (16 hex digits; empty: a node still
    /// waiting to join).
    #[serde(default)]
    pub cluster_id: String,
    /// Number of keys in the state machine.
    pub keys: u64,
    /// On the leader: each follower's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followers: Option<Vec<FollowerStatus>>,
}

/// One member as seen through `GET /cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member's id.
    pub id: NodeId,
    /// The member's base URL.
    pub url: String,
    /// Its `/status`, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusResponse>,
    /// Why it could not be reached, when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /cluster` answer, gathered by the serving node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResponse {
    /// The node that gathered the answer.
    pub served_by: NodeId,
    /// The leader, as most recently known by the serving node.
    pub leader: Option<NodeId>,
    /// Every member, in id order.
    pub members: Vec<MemberStatus>,
}

/// One frame of the peer message stream (`GET /raft/stream`, upgraded):
/// postcard-encoded, after the frame's `u32` little-endian length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBatch {
    /// The sending node.
    pub from: NodeId,
    /// Messages in send order.
    pub messages: Vec<Message>,
}

impl PeerBatch {
    /// Encodes the batch for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serializing to memory cannot fail")
    }

    /// Decodes a batch received from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// One piece of an InstallSnapshot message (`POST /raft/snapshot`).
///
/// The server does not send a snapshot as one message in a [`PeerBatch`]: it
/// splits [`crate::MessageBody::InstallSnapshot`] into chunks sent in order
/// on their own connection, so a large snapshot neither needs one giant
/// request nor holds up the heartbeats and appends queued behind it. The
/// receiver reassembles the chunks and steps the whole message into Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The sending node (the leader).
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// The leader's term when it sent the snapshot.
    pub term: Term,
    /// Where the snapshot sits in the log.
    pub meta: SnapshotMeta,
    /// Length of the whole snapshot data.
    pub total_len: u64,
    /// CRC32 of the whole snapshot data, checked once it is reassembled.
    pub crc32: u32,
    /// Where `data` starts in the whole snapshot data.
    pub offset: u64,
    /// This chunk's bytes.
    pub data: Vec<u8>,
}

impl SnapshotChunk {
    /// Encodes the chunk for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serializing to memory cannot fail")
    }

    /// Decodes a chunk received from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// A member's place in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Votes and counts for commit.
    Voter,
    /// Receives the log, never votes, never counts for commit.
    Learner,
}

/// One member of the configuration (`GET /cluster/members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's id.
    pub id: NodeId,
    /// Its base URL, as stored in the replicated configuration.
    pub url: String,
    /// Voter or learner. While a change is in its joint phase, a member
    /// that votes in either the old or the new configuration is a voter.
    pub role: MemberRole,
    /// Learner only: the leader promotes it to voter once it has caught up.
    #[serde(default)]
    pub auto_promote: bool,
    /// Joint phase only: it votes in the configuration being left but not in
    /// the one being entered (it is being removed).
    #[serde(default)]
    pub leaving: bool,
    /// Joint phase only: it votes in the configuration being entered but
    /// not in the one being left (it is being added).
    #[serde(default)]
    pub joining: bool,
}

/// `GET /cluster/members` answer, and the answer to every membership change
/// (the configuration once the change is committed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// The cluster id (16 hex digits).
    pub cluster_id: String,
    /// The leader the serving node knows of.
    pub leader: Option<NodeId>,
    /// The log index of the configuration shown (0: the bootstrap one
    /// from a snapshot).
    pub config_index: Index,
    /// Whether a change is in its joint phase (old and new voters both decide).
    pub joint: bool,
    /// Every member, in id order.
    pub members: Vec<MemberInfo>,
}

/// `POST /cluster/members` body: add a member, first as a learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMemberRequest {
    /// The new member's id (not in use).
    pub id: NodeId,
    /// Its base URL, e.g. `http://10.0.0.4:3004`.
    pub url: String,
    /// Keep it a learner (no automatic promotion once caught up).
    #[serde(default)]
    pub learner: bool,
    /// Skip the check that the members currently up can still reach quorum.
    #[serde(default)]
    pub force: bool,
}

/// `POST /admin/snapshot` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResponse {
    /// The applied index the snapshot covers.
    pub index: Index,
}

/// `POST /admin/transfer-leader` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeaderRequest {
    /// The member that should become leader.
    pub to: NodeId,
}

/// One message of the push stream `GET /events` (server-sent events: the
/// SSE event name is the `kind`, its data this value as JSON). The stream
/// opens with this node's status, sends it again on every change (at most
/// every 100 ms) and at least every second (contact ages advance), and
/// interleaves what the node did as it happens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeEvent {
    /// The node's `/status`.
    Status {
        /// Its status now.
        status: StatusResponse,
    },
    /// The node's role or leader changed.
    RoleChanged {
        /// Its term now.
        term: Term,
        /// Its role now.
        role: Role,
        /// The leader it knows of now.
        leader: Option<NodeId>,
        /// Why, in words (`election timeout: no leader heard for 12 ticks`).
        cause: String,
    },
    /// The node wrote a snapshot of its own state machine.
    SnapshotTaken {
        /// The last index it covers.
        index: Index,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The node installed a snapshot sent by the leader (its log jumped).
    SnapshotInstalled {
        /// The last index it covers.
        index: Index,
        /// The term of that entry.
        term: Term,
    },
    /// On the leader: a follower it has not heard from within an election
    /// timeout (down, or cut off).
    MemberSilent {
        /// The follower.
        id: NodeId,
        /// Milliseconds since the leader last heard from it.
        ms_since_contact: u64,
    },
    /// On the leader: a follower it hears from again.
    MemberHeard {
        /// The follower.
        id: NodeId,
    },
}

/// One entry of `GET /log` (no values: only what the entry is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntrySummary {
    /// Its index.
    pub index: Index,
    /// The term of the leader that created it.
    pub term: Term,
    /// `noop`, `command` or `config`.
    pub kind: String,
    /// A short description without values: `put k`, `del k`, `cas k`,
    /// `put-if k`, `del-if k`, `del-prefix p`, `session`, `auth`, a user's
    /// op as `alice: put k`, `noop`, `config`.
    pub summary: String,
}

impl From<&crate::types::Entry> for LogEntrySummary {
    fn from(e: &crate::types::Entry) -> Self {
        use crate::types::Payload;
        let (kind, summary) = match &e.payload {
            Payload::Noop => ("noop", "noop".to_string()),
            Payload::Config(_) => ("config", "config".to_string()),
            Payload::Command(c) => ("command", op_summary(&c.op)),
        };
        LogEntrySummary {
            index: e.index,
            term: e.term,
            kind: kind.to_string(),
            summary,
        }
    }
}

/// What an operation is, without its values (a user's op: `user: ` and
/// the op; a change of the access rules: `auth`, naming nobody).
fn op_summary(op: &crate::kv::Op) -> String {
    use crate::kv::Op;
    match op {
        Op::Put { key, .. } => format!("put {key}"),
        Op::Delete { key } => format!("del {key}"),
        Op::Cas { key, .. } => format!("cas {key}"),
        Op::Register => "session".to_string(),
        Op::PutIf { key, .. } => format!("put-if {key}"),
        Op::DeleteIf { key, .. } => format!("del-if {key}"),
        Op::DeletePrefix { prefix } => format!("del-prefix {prefix}"),
        Op::Auth(_) => "auth".to_string(),
        Op::AsUser { user, op, .. } => format!("{user}: {}", op_summary(op)),
    }
}

/// `GET /log?from=&limit=` answer: a window of the node's in-memory log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWindowResponse {
    /// The oldest index still held in memory (older ones are in the
    /// snapshot).
    pub first_index: Index,
    /// The node's last index.
    pub last_index: Index,
    /// Its commit index.
    pub commit_index: Index,
    /// The entries from `max(from, first_index)`, at most `limit`, in
    /// index order.
    pub entries: Vec<LogEntrySummary>,
}

/// `POST /auth/token` body: a user's name and password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The user's name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// `POST /auth/token` answer: a token for the `Authorization: Bearer`
/// request header (or `?token=` on the dashboard's event feeds), valid
/// on every member until `expires_at` (Unix seconds), a password change or
/// the user's deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub token: String,
    /// When it stops working, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// `POST /auth/users` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// The user's name.
    pub name: String,
    /// The password (hashed by the server before anything is logged).
    pub password: String,
}

/// `PUT /auth/users/{name}/password` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChange {
    /// The new password.
    pub password: String,
}

/// `POST /auth/roles` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRole {
    /// The role's name.
    pub name: String,
}

/// One user in `GET /auth/users` (never its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// Its roles, in order.
    pub roles: Vec<String>,
}

/// One role in `GET /auth/roles`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The name.
    pub name: String,
    /// Its permissions, by prefix (`POST /auth/roles/{name}/permissions`
    /// takes one of these).
    pub permissions: Vec<crate::auth::Permission>,
}

/// `GET /auth/status` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStatus {
    /// Whether requests need a token.
    pub enabled: bool,
    /// The auth state's revision (bumped by every change).
    pub revision: u64,
}

/// The answer to a change of the users, roles or switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthChanged {
    /// The auth state's revision after the change.
    pub revision: u64,
    /// The log index of the change.
    pub index: Index,
}
