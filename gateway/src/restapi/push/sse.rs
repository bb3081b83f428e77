//! `GET /sse?streams=a,b`: the same streams and messages as `/ws`, as Server-Sent Events. Each
//! message is one event whose data is the JSON `/ws` sends (`data: {"stream":…,"data":…}`); the
//! streams are fixed for the connection. Bad or refused streams get an error envelope (#1117)
//! before any event; a client that falls behind gets a last `event: cut` with the reason when
//! it reads again, and the stream ends.
//!
//! # A client that reads slowly
//! The body sends the shared message buffers as they are (no copy per client), at most
//! [`MAX_CHUNK_BYTES`] of them taken from the outbox at a time, so the rest stays where
//! conflation and the cut apply. The HTTP server polls the body only while the socket takes
//! data, so a timer inside the body would never fire for a client that stopped reading: a
//! watchdog task per client owns the session instead, and once the body has not been polled
//! for [`CUT_AFTER`] after handing out a chunk it cuts the client, unsubscribes its streams and
//! gives its slot back; what the server still buffers for the socket goes with the HTTP write
//! timeout. With nothing to send, a comment goes out every [`PING_EVERY`], so a vanished peer
//! is noticed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::limits::{CUT_AFTER, MAX_CHUNK_BYTES, MAX_STREAMS_PER_CLIENT, PING_EVERY};
use super::outbox::{CutReason, Outbox, Outgoing};
use super::session::Session;
use super::ws::{peer_ip, refuse, refuse_admission};
use crate::lifecycle::ShutdownSignal;
use crate::restapi::RestApi;

/// What opens an event's data.
const DATA: Bytes = Bytes::from_static(b"data: ");
/// What ends an event.
const END: Bytes = Bytes::from_static(b"\n\n");
/// A comment, which clients ignore: it keeps the connection checked while nothing changes.
const PING: Bytes = Bytes::from_static(b": ping\n\n");

/// The route of `/sse`.
pub(crate) fn sse_route() -> MethodRouter<Arc<RestApi>> {
    get(sse)
}

async fn sse(State(api): State<Arc<RestApi>>, request: Parts) -> Response {
    let Some(push) = &api.push else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, super::NO_LOCAL_READS);
    };
    if let Err(error) = super::check_caller(&request.headers) {
        return refuse_admission(&error);
    }
    let peer = peer_ip(&request);
    if let Err(error) = push.count_sse_request(peer) {
        return refuse_admission(&error);
    }
    let names = match streams_param(request.uri.query()) {
        Ok(names) => names,
        Err(TooManyNames) => {
            return refuse(
                StatusCode::OK,
                &format!("too many streams: a connection holds at most {MAX_STREAMS_PER_CLIENT}"),
            );
        }
    };
    if names.is_empty() {
        return refuse(
            StatusCode::OK,
            "`streams` is missing: /sse?streams=<exchange>:<MARKET>@bbo,…",
        );
    }
    if let Err(error) = push.admit(peer) {
        return refuse_admission(&error);
    }
    let mut session = Session::new(Arc::clone(&api), peer);
    if let Err(error) = session.subscribe(&names) {
        return refuse(StatusCode::OK, &error.msg);
    }
    let events = Events::start(Arc::clone(&api), session, push.shutdown());
    let body = futures_util::stream::unfold(Some(events), next_chunk);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The query named more than [`MAX_STREAMS_PER_CLIENT`] streams.
#[derive(Debug, PartialEq, Eq)]
struct TooManyNames;

/// `streams=a,b` (repeated `streams` keys add up), refused past [`MAX_STREAMS_PER_CLIENT`]
/// names before any is parsed (duplicates count: a client has no reason to send them).
fn streams_param(query: Option<&str>) -> Result<Vec<String>, TooManyNames> {
    let mut names = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key != "streams" {
            continue;
        }
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if names.len() == MAX_STREAMS_PER_CLIENT {
                return Err(TooManyNames);
            }
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// An SSE client's body between chunks. Dropping it (the connection ended) ends the watchdog,
/// which drops the session.
struct Events {
    api: Arc<RestApi>,
    outbox: Arc<Outbox>,
    shutdown: ShutdownSignal,
    batch: Vec<Outgoing>,
    /// Chunks of taken messages not yet handed to the server.
    chunks: VecDeque<Bytes>,
    /// Shared with the watchdog: see [`Handed`].
    handed: Arc<Handed>,
    /// Dropped with the body, which tells the watchdog.
    _alive: oneshot::Sender<()>,
}

/// When the body last handed the server a chunk it has not yet asked past: milliseconds since
/// `base`, plus one (0: it is waiting for data, or was asked for the next chunk).
struct Handed {
    base: Instant,
    at: AtomicU64,
}

impl Handed {
    fn mark(&self, now: Instant) {
        let millis = now.saturating_duration_since(self.base).as_millis();
        // Relaxed: a plain timestamp; the watchdog only compares it with the clock.
        self.at.store(
            u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Relaxed,
        );
    }

    fn clear(&self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// How long until a stall would pass [`CUT_AFTER`]; `None` while nothing waits.
    fn stall_left(&self, now: Instant) -> Option<Duration> {
        let at = self.at.load(Ordering::Relaxed).checked_sub(1)?;
        let deadline = self.base + Duration::from_millis(at) + CUT_AFTER;
        Some(deadline.saturating_duration_since(now))
    }
}

impl Events {
    /// The body's state, and its watchdog (which takes the session).
    fn start(api: Arc<RestApi>, session: Session, shutdown: ShutdownSignal) -> Self {
        let outbox = Arc::clone(session.outbox());
        let handed = Arc::new(Handed {
            base: Instant::now(),
            at: AtomicU64::new(0),
        });
        let (alive, gone) = oneshot::channel();
        tokio::spawn(watchdog(session, Arc::clone(&handed), gone));
        Self {
            api,
            outbox,
            shutdown,
            batch: Vec::new(),
            chunks: VecDeque::new(),
            handed,
            _alive: alive,
        }
    }

    /// Takes what is pending into chunks; `Err` once the client is cut.
    fn take(&mut self) -> Result<(), CutReason> {
        self.batch.clear();
        self.outbox
            .take(&mut self.batch, MAX_CHUNK_BYTES, Instant::now())?;
        for message in &self.batch {
            self.chunks.push_back(DATA);
            self.chunks.push_back(Bytes::from(message.payload.clone()));
            self.chunks.push_back(END);
        }
        if let Some(push) = &self.api.push {
            push.latency
                .record(self.batch.iter().map(|m| m.published_ns));
        }
        Ok(())
    }
}

/// Cuts the client once the body has not been asked for its next chunk for [`CUT_AFTER`];
/// ends with the body. Holds the session, so the client's streams and slot go with it.
async fn watchdog(session: Session, handed: Arc<Handed>, mut gone: oneshot::Receiver<()>) {
    loop {
        let wait = match handed.stall_left(Instant::now()) {
            Some(left) if left.is_zero() => {
                tracing::debug!("sse client cut: it took nothing for {CUT_AFTER:?}");
                session.outbox().cut(CutReason::TooSlow);
                break;
            }
            Some(left) => left,
            None => CUT_AFTER,
        };
        tokio::select! {
            _ = &mut gone => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    if session.outbox().cut_reason() == Some(CutReason::TooSlow) {
        session.count_cut();
    }
}

/// The next chunk of the body: a piece of a taken message, a ping, or the last event; `None`
/// ends the stream.
async fn next_chunk(events: Option<Events>) -> Option<(Result<Bytes, Infallible>, Option<Events>)> {
    let mut events = events?;
    // The server asks for the next chunk: it took the last one.
    events.handed.clear();
    loop {
        if let Some(reason) = events.outbox.cut_reason() {
            return Some((Ok(last_event(&reason)), None));
        }
        if let Some(chunk) = events.chunks.pop_front() {
            events.handed.mark(Instant::now());
            return Some((Ok(chunk), Some(events)));
        }
        let outbox = Arc::clone(&events.outbox);
        tokio::select! {
            () = events.shutdown.wait() => return Some((Ok(last_event(&CutReason::Shutdown)), None)),
            () = outbox.ready() => {}
            () = tokio::time::sleep(PING_EVERY) => events.chunks.push_back(PING),
        }
        if let Err(reason) = events.take() {
            return Some((Ok(last_event(&reason)), None));
        }
    }
}

/// `event: cut` with the reason, the stream's last event.
fn last_event(reason: &CutReason) -> Bytes {
    Bytes::from(format!(
        "event: cut\ndata: {{\"status\":\"cut\",\"reason\":\"{}\"}}\n\n",
        reason.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_naming_more_streams_than_a_client_may_hold_is_refused_before_parsing() {
        let at_limit: Vec<String> = (0..MAX_STREAMS_PER_CLIENT)
            .map(|i| format!("x:M{i}@bbo"))
            .collect();
        let query = format!("streams={}", at_limit.join(","));
        assert_eq!(
            streams_param(Some(&query)).map(|n| n.len()),
            Ok(MAX_STREAMS_PER_CLIENT)
        );
        let over = format!("{query},x:LAST@bbo");
        assert_eq!(streams_param(Some(&over)), Err(TooManyNames));
        let split = format!("{query}&streams=x:LAST@bbo");
        assert_eq!(streams_param(Some(&split)), Err(TooManyNames));
    }

    #[test]
    fn a_chunk_not_asked_past_for_the_cut_time_is_a_stall() {
        let handed = Handed {
            base: Instant::now(),
            at: AtomicU64::new(0),
        };
        let now = handed.base + Duration::from_secs(10);
        assert_eq!(handed.stall_left(now), None, "nothing handed out");
        handed.mark(now);
        assert_eq!(handed.stall_left(now), Some(CUT_AFTER));
        assert_eq!(handed.stall_left(now + CUT_AFTER), Some(Duration::ZERO));
        handed.clear();
        assert_eq!(handed.stall_left(now + CUT_AFTER), None);
    }
}
