//! Bounds on slow clients, so a client that trickles its request costs a
//! connection slot for a bounded time, is dropped and is counted.
//!
//! - [`HeadDeadline`]: a connection must show what protocol it speaks
//!   (a byte that is not the HTTP/2 preface, or the whole preface) within
//!   the head timeout. hyper's own header-read timer only starts once
//!   hyper-util's protocol detection is done, so without this a client
//!   that connects and sends nothing (or `P`) holds its slot forever.
//!   After that, hyper's `header_read_timeout` bounds the rest of the head.
//!
//! A request body's deadline (`--body-timeout-ms`, 408) is an HTTP layer:
//! `http::middleware::body_deadline`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// The first bytes of an HTTP/2 connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream whose first bytes must arrive before a deadline (see the
/// module doc); afterwards a plain pass-through.
pub struct HeadDeadline<S> {
    inner: S,
    /// Running until the protocol is known.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes seen so far that match the HTTP/2 preface.
    matched: usize,
    timed_out: Arc<Metrics>,
}

impl<S> HeadDeadline<S> {
    /// Wraps `inner`; the protocol must be known within `timeout`.
    pub fn new(inner: S, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        HeadDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
            timed_out: metrics,
        }
    }

    /// Looks at newly read bytes: is the protocol known now?
    fn saw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if H2_PREFACE.get(self.matched) != Some(&b) {
                // Not HTTP/2: HTTP/1, whose head hyper times itself.
                self.deadline = None;
                return;
            }
            self.matched += 1;
            if self.matched == H2_PREFACE.len() {
                self.deadline = None;
                return;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                this.deadline = None;
                Metrics::inc(&this.timed_out.slow_heads);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request head within the head timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() {
            if let Poll::Ready(Ok(())) = &r {
                let new = buf.filled()[before..].to_vec();
                if new.is_empty() {
                    this.deadline = None; // EOF
                } else {
                    this.saw(&new);
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_silent_connection_times_out_and_an_http1_one_passes() {
        let metrics = Arc::new(Metrics::default());
        let (client, server) = tokio::io::duplex(64);
        let mut silent = HeadDeadline::new(server, Duration::from_millis(50), metrics.clone());
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(metrics.slow_heads.load(Ordering::Relaxed), 1);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut h1 = HeadDeadline::new(server, Duration::from_millis(50), metrics.clone());
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET")
            .await
            .unwrap();
        assert_eq!(h1.read(&mut buf).await.unwrap(), 3);
        // The protocol is known: no deadline any more.
        tokio::time::sleep(Duration::from_millis(80)).await;
        tokio::io::AsyncWriteExt::write_all(&mut client, b" /")
            .await
            .unwrap();
        assert_eq!(h1.read(&mut buf).await.unwrap(), 2);
        assert_eq!(metrics.slow_heads.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn part_of_the_http2_preface_does_not_hold_the_connection() {
        let metrics = Arc::new(Metrics::default());
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = HeadDeadline::new(server, Duration::from_millis(50), metrics.clone());
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PRI")
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 3);
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
