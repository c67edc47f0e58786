//! The peer stream's frames. Past the handshake ([`super::handshake`]) a
//! stream carries frames one way only, sender → receiver, back to back with
//! no answers:
//!
//! ```text
//! len: u32 little-endian | postcard PeerBatch (len bytes)
//! ```
//!
//! TCP gives the order and the back-pressure: the receiver reads a frame,
//! hands the batch to the Raft loop (waiting while the loop's inbox is
//! full), then reads the next. The receiver never writes after the 101; the
//! sender reads only to notice the stream was closed.

use raft_core::wire::PeerBatch;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The receiver's read buffer: many small frames per read call.
pub(super) const READ_BUFFER: usize = 64 << 10;
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

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Message, MessageBody, NodeId};

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
}
