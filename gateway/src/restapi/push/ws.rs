//! `GET /ws`: the WebSocket push endpoint. One task per client runs a small loop over three
//! events — a request from the client, messages ready in its outbox, the pod shutting down —
//! each handled by its own method. Requests are answered in order with the messages; a client
//! that sends too much, or cannot take what it is sent, is closed with code 1008 and the reason.
//! The server pings every [`PING_EVERY`]; a client heard from (any frame, a pong included) for
//! none of [`SILENT_CUT`] is closed, so a vanished peer does not hold its slot.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;

use super::AdmitError;
use super::limits::{
    MAX_CHUNK_BYTES, MAX_REQUEST_BYTES, MAX_REQUESTS_PER_SECOND, PING_EVERY, SEND_TIMEOUT,
    SILENT_CUT,
};
use super::outbox::{CutReason, Outgoing};
use super::protocol::{self, Method};
use super::session::Session;
use crate::envelope::{ApiError, ErrorId, json_response};
use crate::restapi::RestApi;

/// The event of `/ws`'s error envelopes.
const EVENT: &str = "WS";

/// Bytes read from a client at a time: requests are small, and tungstenite's default (128 KiB,
/// allocated per connection) was most of a client's memory (measured: 292 KiB per client).
const READ_BUFFER: usize = 8 * 1024;

/// Bytes of frames gathered before they are written to the socket (a batch is written at its
/// end anyway): tungstenite's default of 128 KiB per client is more than a batch needs.
const WRITE_BUFFER: usize = 32 * 1024;

/// The most a client's frames may hold unwritten (its socket full): the largest message (a
/// `@book1000` snapshot, ~60 KiB) fits with room; beyond it the client is not reading and is
/// cut ([`SEND_TIMEOUT`]) rather than buffered.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// A connection that holds no stream and sends no request for this long is closed: otherwise
/// idle connections (an upgraded connection has no HTTP idle timeout) could take every push
/// client slot. As the HTTP servers' idle timeout.
const IDLE_WITHOUT_STREAMS: Duration = Duration::from_secs(60);

/// How long a close frame may take to go out before the connection is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The route of `/ws`.
pub(crate) fn ws_route() -> MethodRouter<Arc<RestApi>> {
    get(ws)
}

/// Refuses what is not a WebSocket upgrade (426), web pages from elsewhere (403), clients
/// beyond the limits or where push is off (503), with an envelope saying why; upgrades the rest.
async fn ws(
    State(api): State<Arc<RestApi>>,
    request: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(push) = &api.push else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, super::NO_LOCAL_READS);
    };
    if let Err(error) = super::check_caller(&request.headers) {
        return refuse_admission(&error);
    }
    let Ok(upgrade) = upgrade else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "/ws is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)",
        );
    };
    let peer = peer_ip(&request);
    if let Err(error) = push.admit(peer) {
        return refuse_admission(&error);
    }
    let session = Session::new(Arc::clone(&api), peer);
    upgrade
        .max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| run(api, session, socket))
}

/// The peer's IP address (the unspecified address where the server gave none: tests that call
/// the router directly).
pub(super) fn peer_ip(request: &Parts) -> IpAddr {
    request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.ip()
        })
}

/// The refusal of a client that was not admitted: 403 for a page from elsewhere, 429 past a
/// rate, 503 when full.
pub(super) fn refuse_admission(error: &AdmitError) -> Response {
    let status = match error {
        AdmitError::Origin => StatusCode::FORBIDDEN,
        AdmitError::Peer(super::PeerError::Rate) => StatusCode::TOO_MANY_REQUESTS,
        AdmitError::Full | AdmitError::Peer(super::PeerError::Clients) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    refuse(status, &error.to_string())
}

/// An error envelope with `status`.
pub(super) fn refuse(status: StatusCode, message: &str) -> Response {
    let body = ApiError::new(ErrorId::PUSH_REFUSED, EVENT, message).into_body();
    json_response(status, &Value::Object(body))
}

/// What woke the client's loop.
enum Event {
    Request(Option<Result<Message, axum::Error>>),
    Ready,
    Shutdown,
    /// No stream held and no request for [`IDLE_WITHOUT_STREAMS`].
    Idle,
    /// Time to ping, or to close a client silent for [`SILENT_CUT`].
    Ping,
}

/// How the loop goes on.
enum Step {
    Continue,
    /// Close with this code and reason.
    Close(u16, String),
    /// The connection is gone.
    End,
}

/// One client's connection.
struct Connection {
    session: Session,
    sink: SplitSink<WebSocket, Message>,
    batch: Vec<Outgoing>,
    /// The current second's start and the requests in it.
    requests: (Instant, u32),
    /// When the client last sent a frame (any, a pong included).
    heard: Instant,
}

async fn run(api: Arc<RestApi>, session: Session, socket: WebSocket) {
    let (sink, mut stream): (_, SplitStream<WebSocket>) = socket.split();
    let outbox = Arc::clone(session.outbox());
    let shutdown = api
        .push
        .as_ref()
        .map(super::Push::shutdown)
        .unwrap_or_default();
    let mut connection = Connection {
        session,
        sink,
        batch: Vec::new(),
        requests: (Instant::now(), 0),
        heard: Instant::now(),
    };
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let idle = connection.session.is_idle();
        let event = tokio::select! {
            () = shutdown.wait() => Event::Shutdown,
            () = outbox.ready() => Event::Ready,
            frame = stream.next() => Event::Request(frame),
            () = tokio::time::sleep(IDLE_WITHOUT_STREAMS), if idle => Event::Idle,
            _ = pings.tick() => Event::Ping,
        };
        let step = match event {
            Event::Shutdown => {
                Step::Close(close_code::AWAY, CutReason::Shutdown.as_str().to_owned())
            }
            Event::Idle => Step::Close(
                close_code::POLICY,
                format!(
                    "idle: no stream subscribed for {} s",
                    IDLE_WITHOUT_STREAMS.as_secs()
                ),
            ),
            Event::Ready => connection.send_ready().await,
            Event::Ping => connection.ping().await,
            Event::Request(frame) => connection.on_frame(frame).await,
        };
        match step {
            Step::Continue => {}
            Step::Close(code, reason) => {
                connection.close(code, reason).await;
                break;
            }
            Step::End => break,
        }
    }
}

impl Connection {
    /// Pings the client, or closes it when it has been silent for [`SILENT_CUT`].
    async fn ping(&mut self) -> Step {
        if is_silent(self.heard, Instant::now()) {
            return Step::Close(
                close_code::POLICY,
                format!(
                    "silent: nothing received for {} s (not even a pong)",
                    SILENT_CUT.as_secs()
                ),
            );
        }
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            self.sink.send(Message::Ping(Default::default())),
        )
        .await;
        self.after_send(sent).unwrap_or(Step::Continue)
    }

    /// Sends what the outbox holds, up to [`MAX_CHUNK_BYTES`], as one write (the outbox wakes
    /// the loop again for the rest).
    async fn send_ready(&mut self) -> Step {
        self.batch.clear();
        if let Err(reason) =
            self.session
                .outbox()
                .take(&mut self.batch, MAX_CHUNK_BYTES, Instant::now())
        {
            self.session.count_cut();
            return Step::Close(close_code::POLICY, reason.as_str().to_owned());
        }
        let messages = std::mem::take(&mut self.batch);
        for message in &messages {
            let text = Message::Text(message.payload.clone());
            let fed = tokio::time::timeout(SEND_TIMEOUT, self.sink.feed(text)).await;
            if let Some(step) = self.after_send(fed) {
                return step;
            }
        }
        let flushed = tokio::time::timeout(SEND_TIMEOUT, self.sink.flush()).await;
        let step = self.after_send(flushed);
        if step.is_none() {
            self.session.sent(&messages);
        }
        self.batch = messages;
        step.unwrap_or(Step::Continue)
    }

    /// `None` when a send went out; else how the loop ends.
    fn after_send(
        &self,
        sent: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>,
    ) -> Option<Step> {
        match sent {
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some(Step::End),
            Err(_) => {
                self.session.count_cut();
                tracing::debug!("push client cut: it read nothing for {SEND_TIMEOUT:?}");
                Some(Step::Close(
                    close_code::POLICY,
                    CutReason::TooSlow.as_str().to_owned(),
                ))
            }
        }
    }

    /// Handles one frame from the client.
    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Step {
        self.heard = Instant::now();
        let is_request = matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_))));
        if is_request && !self.within_rate() {
            return Step::Close(
                close_code::POLICY,
                format!("too many requests: at most {MAX_REQUESTS_PER_SECOND} a second"),
            );
        }
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                let error = protocol::RequestError {
                    code: 3,
                    msg: "Invalid JSON: requests are text frames".to_owned(),
                };
                return self
                    .answer(protocol::error_reply(&Value::Null, &error))
                    .await;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Step::Continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Step::End,
        };
        let (id, method) = protocol::parse(text.as_str());
        let answer = match method {
            Ok(Method::Subscribe(names)) => match self.session.subscribe(&names) {
                Ok(()) => protocol::reply(&id, Value::Null),
                Err(error) => protocol::error_reply(&id, &error),
            },
            Ok(Method::Unsubscribe(names)) => {
                self.session.unsubscribe(&names);
                protocol::reply(&id, Value::Null)
            }
            Ok(Method::ListSubscriptions) => protocol::reply(&id, self.session.list().into()),
            Err(error) => protocol::error_reply(&id, &error),
        };
        self.answer(answer).await
    }

    /// Counts a request (a text or binary frame) against the rate limit; `false` past it.
    fn within_rate(&mut self) -> bool {
        within_rate(&mut self.requests, Instant::now())
    }

    async fn answer(&mut self, answer: String) -> Step {
        let sent =
            tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Text(answer.into()))).await;
        self.after_send(sent).unwrap_or(Step::Continue)
    }

    /// Sends a close frame with `reason`, for at most [`CLOSE_TIMEOUT`].
    async fn close(&mut self, code: u16, reason: String) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let closing = self.sink.send(Message::Close(Some(frame)));
        // The client may be the reason (it reads nothing): the close is best effort.
        tokio::time::timeout(CLOSE_TIMEOUT, closing).await.ok();
    }
}

/// Counts a request made at `now` in `window` (the current second's start and its requests);
/// `false` past [`MAX_REQUESTS_PER_SECOND`].
fn within_rate(window: &mut (Instant, u32), now: Instant) -> bool {
    if now.saturating_duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    window.1 += 1;
    window.1 <= MAX_REQUESTS_PER_SECOND
}

/// `true` when a client last heard from at `heard` has been silent for [`SILENT_CUT`] at `now`.
fn is_silent(heard: Instant, now: Instant) -> bool {
    now.saturating_duration_since(heard) >= SILENT_CUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_rate_are_refused_until_the_next_second() {
        let start = Instant::now();
        let mut window = (start, 0);
        for _ in 0..MAX_REQUESTS_PER_SECOND {
            assert!(within_rate(&mut window, start));
        }
        assert!(!within_rate(&mut window, start));
        assert!(within_rate(&mut window, start + Duration::from_secs(1)));
    }

    #[test]
    fn a_client_is_silent_after_three_unanswered_pings() {
        let heard = Instant::now();
        assert!(!is_silent(heard, heard + PING_EVERY * 2));
        assert!(is_silent(heard, heard + PING_EVERY * 3));
        assert_eq!(PING_EVERY * 3, SILENT_CUT);
    }
}
