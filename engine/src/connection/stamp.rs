//! The receive time of a stream socket's bytes: a transport wrapper that notes when each read
//! from the kernel returned data, so an event's receive time is when its last byte reached the
//! DCN, not when the loop got round to decoding it.
//!
//! # Why at the read
//! tungstenite reads up to `READ_BUFFER_BYTES` at once and decodes frames from that buffer one
//! at a time; a burst of Binance's `@100ms` ticks puts dozens of events in one read. Stamping a
//! frame when it is decoded (as the engine did before) left out the time it waited in that
//! buffer behind the frames decoded and applied before it, so the published receive → visible
//! time looked shorter than what a reader lives with. tungstenite reads again only when its
//! buffer holds no whole frame, so every frame decoded after a read was completed by that read:
//! its last byte arrived then, and the stamp of the latest read is the frame's receive time.
//! One `clock_gettime` (vDSO, ~20 ns) per read, not per frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the wrapped socket last read data, Unix ns (0: never). Shared between the transport,
/// which stores it, and the link that stamps the frames decoded since.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadStamp(Arc<AtomicU64>);

impl ReadStamp {
    /// Unix ns of the latest read that returned data.
    pub(crate) fn last_read_ns(&self) -> u64 {
        // Relaxed: written and read by the same task (the link's socket is polled only by the
        // connection's task); the atomic only makes the stamp shareable between its two halves.
        self.0.load(Ordering::Relaxed)
    }
}

/// A socket whose reads are stamped.
#[derive(Debug)]
pub(crate) struct Stamped<S> {
    inner: S,
    stamp: ReadStamp,
}

impl<S> Stamped<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            stamp: ReadStamp::default(),
        }
    }

    /// The stamp its reads update.
    pub(crate) fn stamp(&self) -> ReadStamp {
        self.stamp.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.stamp
                .0
                .store(crate::clock::unix_now_ns(), Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_read_that_returns_data_stamps_it() {
        let (mut far, near) = tokio::io::duplex(64);
        let mut stamped = Stamped::new(near);
        let stamp = stamped.stamp();
        assert_eq!(stamp.last_read_ns(), 0, "nothing read yet");
        let before = crate::clock::unix_now_ns();
        far.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 8];
        let n = stamped.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"abc");
        let first = stamp.last_read_ns();
        assert!(first >= before, "stamped at the read, not before");
        // A write does not stamp; the end of the stream (a read of 0 bytes) does not either.
        stamped.write_all(b"x").await.unwrap();
        drop(far);
        assert_eq!(stamped.read(&mut buf).await.unwrap(), 0);
        assert_eq!(stamp.last_read_ns(), first);
    }
}
