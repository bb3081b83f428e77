//! `GET /ws`: the WebSocket push endpoint. One task per client runs a small loop over three
//! events — a request from the client, messages ready in its outbox, the pod shutting down —
//! each handled by its own method. Requests are answered in order with the messages; a client
//! that sends too much, or cannot take what it is sent, is closed with code 1008 and the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;

use super::limits::{MAX_CLIENTS, MAX_REQUEST_BYTES, MAX_REQUESTS_PER_SECOND, SEND_TIMEOUT};
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

/// Refuses what is not a WebSocket upgrade (426), and clients beyond the limits or where push
/// is off (503), with an envelope saying why; upgrades the rest.
async fn ws(
    State(api): State<Arc<RestApi>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(push) = &api.push else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, super::NO_LOCAL_READS);
    };
    let Ok(upgrade) = upgrade else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "/ws is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)",
        );
    };
    if !push.admit() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the push server has its most clients ({MAX_CLIENTS}); try later"),
        );
    }
    let session = Session::new(Arc::clone(&api));
    upgrade
        .max_message_size(MAX_REQUEST_BYTES)
        .max_frame_size(MAX_REQUEST_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| run(api, session, socket))
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
    };
    loop {
        let idle = connection.session.is_idle();
        let event = tokio::select! {
            () = shutdown.wait() => Event::Shutdown,
            () = outbox.ready() => Event::Ready,
            frame = stream.next() => Event::Request(frame),
            () = tokio::time::sleep(IDLE_WITHOUT_STREAMS), if idle => Event::Idle,
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
    /// Sends everything the outbox holds, as one write.
    async fn send_ready(&mut self) -> Step {
        self.batch.clear();
        if let Err(reason) = self.session.outbox().take(&mut self.batch) {
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
        if !self.within_rate() {
            return Step::Close(
                close_code::POLICY,
                format!("too many requests: at most {MAX_REQUESTS_PER_SECOND} a second"),
            );
        }
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

    /// Counts a request against the rate limit; `false` past it.
    fn within_rate(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.requests.0) >= Duration::from_secs(1) {
            self.requests = (now, 0);
        }
        self.requests.1 += 1;
        self.requests.1 <= MAX_REQUESTS_PER_SECOND
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
