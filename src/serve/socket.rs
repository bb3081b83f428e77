//! A served connection's TCP stream with its deadlines: a request head must be complete
//! within the head timeout once it has begun, and a response write that makes no progress for
//! the write timeout (a client that does not read: "slow read") ends the connection — either
//! would otherwise hold one of the server's connection slots for ever.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// What the service tells a connection's [`Socket`] about the requests on it. Both sides run on
/// the connection's one task, in turn, so `Relaxed` suffices: the atomics are only there to be
/// shareable.
#[derive(Debug, Default)]
pub(super) struct Requests {
    /// Request heads read so far.
    heads: AtomicU64,
    /// Responses handed to hyper so far.
    answers: AtomicU64,
    /// The connection was upgraded (WebSocket): no HTTP requests any more, no head timeout.
    upgraded: AtomicBool,
}

impl Requests {
    pub(super) fn head_done(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn answered(&self, upgraded: bool) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if upgraded {
            self.upgraded.store(true, Ordering::Relaxed);
        }
    }

    /// No request is being answered: bytes that arrive now begin the next head.
    fn is_between_requests(&self) -> bool {
        self.heads.load(Ordering::Relaxed) == self.answers.load(Ordering::Relaxed)
    }
}

/// A connection's TCP stream with its deadlines, and the connection's slot (held as long as
/// the socket, through an upgrade too).
pub(super) struct Socket {
    stream: TcpStream,
    pub(super) requests: Arc<Requests>,
    header_timeout: Duration,
    write_timeout: Duration,
    /// The head being read must be complete by then; armed with the count of heads read at the
    /// time, so a head completed since shows it was met.
    deadline: Option<(u64, Pin<Box<Sleep>>)>,
    /// A write that found the socket full must progress by then; disarmed by any progress.
    write_stall: Option<Pin<Box<Sleep>>>,
    _slot: OwnedSemaphorePermit,
}

impl Socket {
    /// A socket just accepted: its first head is due within `header_timeout` from now; a write
    /// may wait for the client to read for `write_timeout` at most.
    pub(super) fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        header_timeout: Duration,
        write_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            requests: Arc::default(),
            header_timeout,
            write_timeout,
            deadline: Some((0, Box::pin(tokio::time::sleep(header_timeout)))),
            write_stall: None,
            _slot: slot,
        }
    }

    /// Passes on a write's outcome; a write that cannot progress for the write timeout is an
    /// error (the connection closes, its slot frees).
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.write_stall = None;
            return outcome;
        }
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            )));
        }
        Poll::Pending
    }

    /// Disarms a deadline that was met; arms one when bytes of a new head arrived.
    fn update_deadline(&mut self, got_bytes: bool) {
        if self.requests.upgraded.load(Ordering::Relaxed) {
            self.deadline = None;
            return;
        }
        let heads = self.requests.heads.load(Ordering::Relaxed);
        if self
            .deadline
            .as_ref()
            .is_some_and(|(armed_at, _)| *armed_at != heads)
        {
            self.deadline = None;
        }
        if got_bytes && self.deadline.is_none() && self.requests.is_between_requests() {
            let sleep = Box::pin(tokio::time::sleep(self.header_timeout));
            self.deadline = Some((heads, sleep));
        }
    }

    /// Whether the head deadline has passed (registering for a wake-up when it has not).
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.update_deadline(buf.filled().len() > before);
        if read.is_pending() && this.deadline_passed(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete in time",
            )));
        }
        read
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch_write(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch_write(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch_write(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
