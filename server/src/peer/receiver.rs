//! The peer message stream: the wire protocol that carries one node's Raft
//! messages to another, and its receiving side.
//!
//! A sender ([`crate::peer::transport`]) opens one TCP connection per peer to the
//! peer's ordinary HTTP listener (the one port per node serves clients and
//! peers alike) and asks to switch protocols:
//!
//! ```text
//! GET /raft/stream HTTP/1.1
//! host: <peer host:port>
//! connection: upgrade
//! upgrade: raft-kv-peer/1
//! x-raft-peer-id: <the sender's node id>
//! x-raft-cluster-token: <token>             (when the cluster has one)
//! ```
//!
//! The receiver checks the token (401), that this is an upgrade to this
//! protocol (426), that the sender is a member other than itself (400), and
//! answers `101 Switching Protocols`. Every refusal is JSON, as on every
//! other route. From then on the connection carries frames one way only,
//! sender → receiver, back to back with no answers:
//!
//! ```text
//! len: u32 little-endian | postcard PeerBatch (len bytes)
//! ```
//!
//! TCP gives the order and the back-pressure: the receiver reads a frame,
//! hands the batch to the Raft loop (waiting while the loop's inbox is
//! full), then reads the next. The receiver never writes after the 101; the
//! sender reads only to notice the stream was closed.
//!
//! Rules of the receiving side, and what each protects:
//! - a frame longer than the peer body limit closes the stream before
//!   anything is read or allocated for it, and a frame's buffer grows only
//!   with the bytes that actually arrive: a length alone cannot make the
//!   node allocate;
//! - a frame that does not decode closes the stream: after a bad frame the
//!   framing itself can no longer be trusted;
//! - a batch whose `from` is not the sender named in the handshake closes
//!   the stream: one member cannot speak for another on a stream the token
//!   check admitted it to (the Raft loop further rejects any message whose
//!   own `from` differs from its batch's);
//! - at most one stream per sender: a newer one closes the older, so a
//!   half-open connection left by a restarted peer is not kept forever and a
//!   node holds at most one receiving task per member;
//! - every stream closes when the node stops, so a shutdown never waits on
//!   (or leaves behind) a stream;
//! - the test partition drops what a blocked peer sends, as on the sending
//!   side.
//!
//! Each closing for a violation is logged as a warning and counted in
//! `raft_peer_streams_rejected_total`; never a panic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use raft_core::wire::{PeerBatch, HEADER_CLUSTER_ID, HEADER_CLUSTER_TOKEN};
use raft_core::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::api::{error, AppState};
use crate::metrics::Metrics;

/// The path a sender asks to upgrade.
pub const PATH: &str = "/raft/stream";
/// The protocol named in the `upgrade` header (the version changes with
/// the framing).
pub const PROTOCOL: &str = "raft-kv-peer/1";
/// Request header naming the sender's node id.
pub const HEADER_PEER_ID: &str = "x-raft-peer-id";

/// Time limit of the TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Time limit of the whole handshake (connect, request, the 101).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long data sent on a stream may stay unacknowledged by the peer's
/// host before the stream is taken for dead.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNACKED_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a refusal's body the sender reads, for its log line.
const MAX_REFUSAL_BYTES: usize = 4096;
/// The receiver's read buffer: many small frames per read call.
const READ_BUFFER: usize = 64 << 10;
/// A frame buffer grown beyond this by one large batch is released
/// afterwards instead of being kept for the small ones.
const KEEP_BUFFER: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("a frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The length the frame claims (or has, when encoding).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// The frame is not a postcard-encoded [`PeerBatch`].
    #[error("the frame is not a postcard-encoded PeerBatch: {0}")]
    Undecodable(postcard::Error),
    /// The batch could not be encoded (sending side).
    #[error("the batch cannot be encoded: {0}")]
    Encode(postcard::Error),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `batch` as one frame: its length (u32 LE), then the same bytes
/// as [`PeerBatch::encode`], written in place after the length.
pub fn encode_frame(batch: &PeerBatch) -> Result<Vec<u8>, FrameError> {
    let mut frame = postcard::to_extend(batch, vec![0u8; 4]).map_err(FrameError::Encode)?;
    let len = frame.len() - 4;
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len: len as u64,
        limit: u64::from(u32::MAX),
    })?;
    frame[..4].copy_from_slice(&len32.to_le_bytes());
    Ok(frame)
}

/// Reads the next frame into `buf` and decodes it. `Ok(None)`: the stream
/// ended cleanly between two frames (the sender went away).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<PeerBatch>, FrameError> {
    let mut len = [0u8; 4];
    if r.read(&mut len[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..]).await.map_err(truncated)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge {
            len: len as u64,
            limit: limit as u64,
        });
    }
    buf.clear();
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
    buf.reserve(len.min(READ_BUFFER));
    // `take` + `read_to_end`: the buffer grows with what arrives, not with
    // what the length claims.
    let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    PeerBatch::decode(buf)
        .map(Some)
        .map_err(FrameError::Undecodable)
}

fn truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

// ----- sending side: the handshake -----

/// An open stream to a peer, past the handshake.
pub type PeerStream = TokioIo<Upgraded>;

/// Where a peer's stream goes: `host:port` from its base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    authority: String,
}

impl PeerAddr {
    /// The address of the peer whose base URL is `url` (`http://host:port`;
    /// the stream is plain TCP, so `https` is refused).
    pub fn from_url(url: &str) -> Result<PeerAddr, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
        if u.scheme() != "http" {
            return Err(format!(
                "`{url}`: the peer stream is plain TCP; use an http:// URL"
            ));
        }
        let host = u.host_str().ok_or_else(|| format!("`{url}` has no host"))?;
        let port = u.port_or_known_default().unwrap_or(80);
        Ok(PeerAddr {
            authority: format!("{host}:{port}"),
        })
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority)
    }
}

/// Connects to `addr` as node `me` and performs the upgrade handshake;
/// the error says what failed (with the peer's JSON message on a refusal).
pub async fn connect(addr: &PeerAddr, creds: &Credentials) -> Result<PeerStream, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(addr, creds)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer to the stream handshake within {HANDSHAKE_TIMEOUT:?}"
        )),
    }
}

async fn handshake(addr: &PeerAddr, creds: &Credentials) -> Result<PeerStream, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr.authority))
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect: {e}"))?;
    // Frames are written whole: Nagle would only hold back the tail of one.
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    // A write only fails on its own once the socket buffer is full, and
    // retransmissions to a vanished peer back off for minutes: have the
    // kernel drop the connection once sent data stays unacknowledged this
    // long, so the sender reconnects (as a timed-out request used to).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(&tcp)
        .set_tcp_user_timeout(Some(UNACKED_TIMEOUT))
        .map_err(|e| format!("tcp user timeout: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut req = axum::http::Request::get(PATH)
        .header(header::HOST, &addr.authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PROTOCOL);
    for (name, value) in creds.headers() {
        req = req.header(name, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    // The connection future must run while the request is answered; it
    // ends once it has handed the upgraded IO over (or on a refusal, once
    // `sender` is dropped).
    let exchange = async move {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return hyper::upgrade::on(resp)
                .await
                .map(TokioIo::new)
                .map_err(|e| format!("upgrade: {e}"));
        }
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REFUSAL_BYTES)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        Err(format!("peer answered {status}: {body}"))
    };
    let (stream, _) = tokio::join!(exchange, conn.with_upgrades());
    stream
}

/// Who a node says it is to its peers, on every stream handshake and
/// snapshot chunk: its member id, its cluster, the incarnation of its data
/// directory, and the cluster token when there is one.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The sender's member id.
    pub me: NodeId,
    /// Its cluster id.
    pub cluster_id: u64,
    /// Its data directory's incarnation.
    pub incarnation: u64,
    /// The cluster token.
    pub token: Option<String>,
}

impl Credentials {
    /// The request headers that carry them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (HEADER_PEER_ID, self.me.to_string()),
            (HEADER_CLUSTER_ID, crate::identity::hex(self.cluster_id)),
            (HEADER_INCARNATION, crate::identity::hex(self.incarnation)),
        ];
        if let Some(t) = &self.token {
            h.push((HEADER_CLUSTER_TOKEN, t.clone()));
        }
        h
    }
}

/// Request header naming the sender's data-directory incarnation.
pub const HEADER_INCARNATION: &str = "x-raft-incarnation";

/// Checks a peer request's identity headers against the directory: its
/// member id must be a member's (not ours), its cluster ours, and its
/// incarnation the one seen before. Refusals are counted, and logged once
/// per peer and reason, not per request.
pub fn check_identity(s: &AppState, headers: &HeaderMap) -> Result<NodeId, Box<Response>> {
    let parse = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(from) = parse(HEADER_PEER_ID).and_then(|v| v.trim().parse::<NodeId>().ok()) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("header {HEADER_PEER_ID} must name the sender's node id"),
        )));
    };
    let (Some(cluster_id), Some(incarnation)) = (
        parse(HEADER_CLUSTER_ID).and_then(crate::identity::parse_hex),
        parse(HEADER_INCARNATION).and_then(crate::identity::parse_hex),
    ) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "headers {HEADER_CLUSTER_ID} and {HEADER_INCARNATION} must carry 16 hex digits"
            ),
        )));
    };
    let ours = crate::identity::hex(s.directory.identity.cluster_id);
    if from == s.id || !s.directory.admits_sender(from) {
        Metrics::inc(&s.metrics.peer_streams_rejected);
        s.refusals.once(from, "not a member", || {
            warn!(peer = from, "refused peer traffic from node {from}: not a member of this cluster's configuration");
        });
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            format!(
                "node {from} is not a member of cluster {ours} (this is node {})",
                s.id
            ),
        )));
    }
    match s.directory.check_peer(from, cluster_id, incarnation) {
        Ok(()) => Ok(from),
        Err(crate::identity::Refusal::OtherCluster { theirs }) => {
            Metrics::inc(&s.metrics.peer_other_cluster);
            let theirs = crate::identity::hex(theirs);
            s.refusals.once(from, "cluster", || {
                warn!(peer = from, "refused peer traffic from node {from}: it belongs to cluster {theirs}, this node to {ours}");
            });
            Err(Box::new(error(
                StatusCode::CONFLICT,
                format!(
                    "this node belongs to cluster {ours}; node {from} presents cluster {theirs}"
                ),
            )))
        }
        Err(crate::identity::Refusal::Replaced { known, presented }) => {
            Metrics::inc(&s.metrics.peer_replaced);
            let (known, presented) = (crate::identity::hex(known), crate::identity::hex(presented));
            s.refusals.once(from, "incarnation", || {
                tracing::error!(peer = from, "refused node {from}: its data directory was replaced (incarnation {presented}, known {known}); it has forgotten its votes and log. Remove it and add it again: raft-kv-client member remove {from}; raft-kv-client member add {from} URL; then start it with an empty data directory and --join");
            });
            Err(Box::new(error(
                StatusCode::CONFLICT,
                format!(
                    "node {from}'s data directory was replaced (incarnation {presented}; the cluster knows {known}): \
                     it has forgotten its votes and log and may not rejoin as the same member. \
                     Remove it (raft-kv-client member remove {from}), add it again (member add {from} URL), \
                     and start it with an empty data directory and --join"
                ),
            )))
        }
    }
}

/// Remembers which refusals were already logged, so a peer that retries
/// every few hundred milliseconds fills no log.
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<std::collections::BTreeSet<(NodeId, &'static str)>>,
}

impl RefusalLog {
    /// Runs `log` the first time `(peer, reason)` is refused.
    pub fn once(&self, peer: NodeId, reason: &'static str, log: impl FnOnce()) {
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((peer, reason));
        if first {
            log();
        }
    }
}

// ----- receiving side -----

/// The open receiving streams, one per sender, and the node's stop signal.
pub struct PeerStreams {
    stop: watch::Receiver<bool>,
    open: Mutex<BTreeMap<NodeId, (u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
}

impl PeerStreams {
    /// `stop` turns true when the node stops; every stream closes then.
    pub fn new(stop: watch::Receiver<bool>) -> PeerStreams {
        PeerStreams {
            stop,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Takes the slot of `from`'s stream, closing the stream that held it;
    /// `None` once the node is stopping.
    fn register(&self, from: NodeId) -> Option<(u64, oneshot::Receiver<()>)> {
        if *self.stop.borrow() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Dropping the older stream's sender closes that stream.
        if open.insert(from, (id, tx)).is_some() {
            debug!(peer = from, "a newer stream replaces the open one");
        }
        Some((id, rx))
    }

    fn unregister(&self, from: NodeId, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.get(&from).is_some_and(|(i, _)| *i == id) {
            open.remove(&from);
        }
    }
}

/// Gives a stream's slot back when its task ends, however it ends.
struct Slot {
    state: Arc<AppState>,
    from: NodeId,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.peer_streams.unregister(self.from, self.id);
        self.state
            .metrics
            .peer_streams_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /raft/stream`: checks the handshake, answers 101 and hands the
/// upgraded connection to a receiving task.
pub async fn accept(State(s): State<Arc<AppState>>, mut req: Request) -> Response {
    if let Err(r) = s.check_token(req.headers()) {
        Metrics::inc(&s.metrics.peer_unauthorized);
        let peer = req
            .headers()
            .get(HEADER_PEER_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok())
            .unwrap_or(0);
        s.refusals.once(peer, "token", || {
            warn!(
                peer,
                "refused a peer stream with a missing or wrong cluster token"
            );
        });
        return r.into_response();
    }
    if !is_upgrade_to_protocol(req.headers()) {
        let mut resp = error(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "{PATH} is the peer message stream: send `connection: upgrade` and \
                 `upgrade: {PROTOCOL}`"
            ),
        );
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        return resp;
    }
    let from = match check_identity(&s, req.headers()) {
        Ok(from) => from,
        Err(resp) => return *resp,
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded (HTTP/1.1 is required)",
        );
    };
    let Some((id, replaced)) = s.peer_streams.register(from) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
    };
    Metrics::inc(&s.metrics.peer_streams_accepted);
    Metrics::inc(&s.metrics.peer_streams_open);
    let slot = Slot {
        state: s.clone(),
        from,
        id,
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => receive(slot, TokioIo::new(io), replaced).await,
            Err(e) => debug!(peer = from, "stream upgrade failed: {e}"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(PROTOCOL)),
        ],
    )
        .into_response()
}

fn is_upgrade_to_protocol(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, PROTOCOL)
}

/// Reads `slot.from`'s frames until the peer goes away, breaks a rule, a
/// newer stream replaces this one, or the node stops.
async fn receive(slot: Slot, io: TokioIo<Upgraded>, replaced: oneshot::Receiver<()>) {
    let s = slot.state.clone();
    let from = slot.from;
    let mut stop = s.peer_streams.stop.clone();
    debug!(peer = from, "peer stream open");
    tokio::select! {
        _ = stop.wait_for(|stopping| *stopping) => debug!(peer = from, "node stopping: stream closed"),
        _ = replaced => debug!(peer = from, "stream replaced by a newer one"),
        end = read_batches(&s, from, io) => match end {
            Ok(()) => debug!(peer = from, "peer closed its stream"),
            Err(Violation(why)) => {
                Metrics::inc(&s.metrics.peer_streams_rejected);
                warn!(peer = from, "closing the peer stream: {why}");
            }
        },
    }
    drop(slot);
}

/// A broken rule: the stream is closed.
struct Violation(String);

/// The read loop: `Ok` when the peer ends the stream (cleanly or not: a
/// connection lost is not the peer's fault), `Err` on a broken rule.
async fn read_batches(s: &AppState, from: NodeId, io: TokioIo<Upgraded>) -> Result<(), Violation> {
    let limit = s.settings.peer_body_limit();
    let mut r = BufReader::with_capacity(READ_BUFFER, io);
    let mut buf = Vec::new();
    loop {
        let batch = match read_frame(&mut r, limit, &mut buf).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            // A connection lost, even inside a frame, is not a broken rule
            // (a sender killed mid-write): nothing came of it.
            Err(e @ (FrameError::Io(_) | FrameError::Truncated)) => {
                info!(peer = from, "peer stream lost: {e}");
                return Ok(());
            }
            Err(e @ FrameError::Undecodable(_)) => {
                Metrics::inc(&s.metrics.peer_batches_undecodable);
                return Err(Violation(e.to_string()));
            }
            Err(e) => return Err(Violation(e.to_string())),
        };
        if batch.from != from {
            Metrics::add(
                &s.metrics.peer_messages_rejected,
                batch.messages.len() as u64,
            );
            return Err(Violation(format!(
                "a batch from node {} on node {from}'s stream",
                batch.from
            )));
        }
        if s.partition.blocks(from) {
            Metrics::add(
                &s.metrics.peer_messages_dropped,
                batch.messages.len() as u64,
            );
            continue;
        }
        // Waits while the Raft loop is behind: TCP carries the back-pressure
        // to the sender.
        if s.node.deliver(batch).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Message, MessageBody};

    fn batch(from: NodeId, n: usize) -> PeerBatch {
        PeerBatch {
            from,
            messages: (0..n)
                .map(|i| Message {
                    from,
                    to: 1,
                    term: i as u64,
                    body: MessageBody::Heartbeat {
                        commit: 0,
                        read_ctx: 0,
                        seq: 0,
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn a_frame_is_the_length_then_the_batch_encoding() {
        let b = batch(2, 3);
        let frame = encode_frame(&b).unwrap();
        let body = b.encode();
        assert_eq!(frame[..4], (body.len() as u32).to_le_bytes());
        assert_eq!(frame[4..], body[..]);
    }

    #[tokio::test]
    async fn frames_read_back_in_order_then_a_clean_end() {
        let mut bytes = Vec::new();
        for n in [1, 0, 5] {
            bytes.extend(encode_frame(&batch(2, n)).unwrap());
        }
        let mut r = &bytes[..];
        let mut buf = Vec::new();
        for n in [1, 0, 5] {
            let got = read_frame(&mut r, 1 << 20, &mut buf).await.unwrap();
            assert_eq!(got, Some(batch(2, n)));
        }
        assert!(read_frame(&mut r, 1 << 20, &mut buf)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        let good = encode_frame(&batch(2, 2)).unwrap();
        let mut buf = Vec::new();
        // Over the limit: refused on the length alone.
        let huge = u32::MAX.to_le_bytes();
        let e = read_frame(&mut &huge[..], 1 << 20, &mut buf).await;
        assert!(matches!(e, Err(FrameError::TooLarge { .. })), "{e:?}");
        assert!(buf.capacity() < 1 << 20);
        let small_limit = good.len() - 5;
        let e = read_frame(&mut &good[..], small_limit, &mut buf).await;
        assert!(matches!(e, Err(FrameError::TooLarge { .. })), "{e:?}");
        // Cut inside the length or inside the body.
        for cut in [2, good.len() - 1] {
            let e = read_frame(&mut &good[..cut], 1 << 20, &mut buf).await;
            assert!(matches!(e, Err(FrameError::Truncated)), "cut {cut}: {e:?}");
        }
        // A length that holds garbage.
        let mut garbage = 7u32.to_le_bytes().to_vec();
        garbage.extend([0xff; 7]);
        let e = read_frame(&mut &garbage[..], 1 << 20, &mut buf).await;
        assert!(matches!(e, Err(FrameError::Undecodable(_))), "{e:?}");
        // An empty frame is not a batch either.
        let e = read_frame(&mut &[0u8; 4][..], 1 << 20, &mut buf).await;
        assert!(matches!(e, Err(FrameError::Undecodable(_))), "{e:?}");
    }

    #[test]
    fn peer_addresses_come_from_http_urls() {
        let a = PeerAddr::from_url("http://127.0.0.1:3002").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:3002");
        let a = PeerAddr::from_url("http://[::1]:4000").unwrap();
        assert_eq!(a.to_string(), "[::1]:4000");
        let a = PeerAddr::from_url("http://node-2").unwrap();
        assert_eq!(a.to_string(), "node-2:80");
        assert!(PeerAddr::from_url("https://node-2:3002").is_err());
        assert!(PeerAddr::from_url("not a url").is_err());
    }

    #[test]
    fn the_upgrade_headers_are_checked_as_token_lists() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_to_protocol(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade_to_protocol(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        assert!(is_upgrade_to_protocol(&h));
    }
}
