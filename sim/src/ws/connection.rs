//! One stream connection: forwards the events of its streams, answers control messages, pings
//! and enforces the venue's limits (message rate, pong deadline, lifetime), and obeys fault
//! commands. Everything happens in one task, one input at a time, so the order of frames on the
//! wire is the order the inputs were handled in.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tracing::{Instrument as _, debug, info_span, warn};

use super::message_rate::MessageRate;
use super::request::{IdentifiedRequest, Request, RequestError, parse_request, result_reply};
use super::stream_name::{Resolved, StreamKey, resolve_stream_name};
use super::{ConnectionCommand, ConnectionPlan};
use crate::clock::now_ms;
use crate::config::VenueLimits;
use crate::family::Venue;
use crate::server::{SimState, Tick, lock};
use crate::stats::{CloseReason, VenueStats};
use crate::wire::{envelope, server_shutdown_event};

/// Close code for policy violations (message rate, pong timeout, too slow).
const POLICY_VIOLATION: u16 = 1008;

/// Close code for a server going away (shutdown, `serverShutdown`, lifetime).
const GOING_AWAY: u16 = 1001;

/// The stream name `serverShutdown` carries on combined connections (`docs/binance-protocol.md` §3.3).
const SERVER_SHUTDOWN_STREAM: &str = "!serverShutdown";

/// The channels a connection listens to, subscribed before its handshake completes.
#[derive(Debug)]
pub(crate) struct Receivers {
    ticks: broadcast::Receiver<Arc<Tick>>,
    commands: broadcast::Receiver<ConnectionCommand>,
    shutdown: watch::Receiver<bool>,
}

impl Receivers {
    /// Subscribes to the state's ticks, commands and shutdown flag.
    pub(crate) fn new(state: &SimState) -> Receivers {
        let shared = state.shared();
        Receivers {
            ticks: shared.ticks.subscribe(),
            commands: shared.commands.subscribe(),
            shutdown: shared.shutdown.subscribe(),
        }
    }
}

/// What the connection does after one input.
enum Next {
    /// Send these frames and carry on.
    Send(Vec<Message>),
    /// Send these frames, then the close frame if any (none: a silent cut), then end.
    Close {
        frames: Vec<Message>,
        close: Option<(u16, &'static str)>,
        reason: Option<CloseReason>,
    },
    /// The client is gone: end without sending.
    End,
}

/// A connection's own state.
struct Connection<'a> {
    state: &'a SimState,
    venue: Venue,
    limits: VenueLimits,
    stats: &'a VenueStats,
    /// Whether events go out in the combined envelope (`SET_PROPERTY combined`).
    combined: bool,
    /// Held streams, in subscription order (the order of LIST_SUBSCRIPTIONS and of events
    /// within one step).
    streams: Vec<StreamKey>,
    /// Held streams of symbols the exchange does not list, in subscription order: accepted as
    /// Binance accepts them, never carrying an event (listed after `streams`).
    unlisted: Vec<String>,
    /// After `serverShutdown`: when the connection closes.
    closing_at: Option<Instant>,
    rate: MessageRate,
    /// Unanswered pings: payload and send time, oldest first.
    pending_pings: VecDeque<(Bytes, Instant)>,
    pings_sent: u64,
}

/// Runs the connection until the client leaves, a limit or a fault ends it, or the server
/// shuts down.
pub(crate) async fn serve(
    socket: WebSocket,
    state: SimState,
    plan: ConnectionPlan,
    receivers: Receivers,
) {
    let stats = state.ws_stats(plan.venue);
    let open = stats.open();
    let span = info_span!("stream_connection", venue = %plan.venue, connection = open.number);
    run(socket, &state, plan, receivers, stats)
        .instrument(span)
        .await;
    drop(open);
}

async fn run(
    mut socket: WebSocket,
    state: &SimState,
    plan: ConnectionPlan,
    mut receivers: Receivers,
    stats: &VenueStats,
) {
    let limits = state.config().venue_limits(plan.venue).clone();
    let opened = Instant::now();
    let lifetime_end = sleep_until(opened + limits.max_lifetime);
    tokio::pin!(lifetime_end);
    let mut ping_timer = interval_at(opened + limits.ping_interval, limits.ping_interval);
    ping_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut connection = Connection {
        state,
        venue: plan.venue,
        limits,
        stats,
        combined: plan.combined,
        streams: plan.streams,
        unlisted: Vec::new(),
        closing_at: None,
        rate: MessageRate::default(),
        pending_pings: VecDeque::new(),
        pings_sent: 0,
    };
    debug!(
        streams = connection.streams.len(),
        combined = connection.combined,
        "stream connection opened"
    );
    loop {
        let pong_deadline = connection.pong_deadline();
        let closing_at = connection.closing_at;
        let next = tokio::select! {
            _ = receivers.shutdown.wait_for(|stopping| *stopping) => Next::Close {
                frames: Vec::new(),
                close: Some((GOING_AWAY, "server shutting down")),
                reason: None,
            },
            command = receivers.commands.recv() => connection.on_command(command),
            message = socket.recv() => connection.on_client_frame(message),
            tick = receivers.ticks.recv() => connection.on_tick(tick),
            _ = ping_timer.tick() => connection.ping(),
            () = sleep_until(pong_deadline.unwrap_or(opened)), if pong_deadline.is_some() => {
                Next::Close {
                    frames: Vec::new(),
                    close: Some((POLICY_VIOLATION, "Pong timeout")),
                    reason: Some(CloseReason::PongTimeout),
                }
            }
            () = sleep_until(closing_at.unwrap_or(opened)), if closing_at.is_some() => Next::Close {
                frames: Vec::new(),
                close: Some((GOING_AWAY, "Server shutdown")),
                reason: Some(CloseReason::ServerShutdown),
            },
            () = &mut lifetime_end => Next::Close {
                frames: Vec::new(),
                close: Some((GOING_AWAY, "Connection lifetime reached")),
                reason: Some(CloseReason::Lifetime),
            },
        };
        match next {
            Next::Send(frames) => {
                if send_all(&mut socket, frames).await.is_err() {
                    debug!("client gone while sending");
                    return;
                }
            }
            Next::Close {
                frames,
                close,
                reason,
            } => {
                if let Some(reason) = reason {
                    stats.closed(reason);
                }
                debug!(?reason, "closing stream connection");
                if send_all(&mut socket, frames).await.is_err() {
                    return;
                }
                if let Some((code, text)) = close {
                    let frame = CloseFrame {
                        code,
                        reason: text.into(),
                    };
                    if let Err(error) = socket.send(Message::Close(Some(frame))).await {
                        debug!(%error, "client gone before the close frame");
                    }
                }
                return;
            }
            Next::End => {
                debug!("client closed the connection");
                return;
            }
        }
    }
}

async fn send_all(socket: &mut WebSocket, frames: Vec<Message>) -> Result<(), axum::Error> {
    for frame in frames {
        socket.send(frame).await?;
    }
    Ok(())
}

impl Connection<'_> {
    fn on_client_frame(&mut self, message: Option<Result<Message, axum::Error>>) -> Next {
        let Some(Ok(message)) = message else {
            return Next::End;
        };
        if let Message::Close(_) = message {
            return Next::End;
        }
        let in_last_second = self.rate.record(Instant::now());
        self.stats.client_message(in_last_second);
        if in_last_second > self.limits.max_messages_per_second as usize {
            warn!(
                in_last_second,
                limit = self.limits.max_messages_per_second,
                "client exceeded the message rate; disconnecting"
            );
            return Next::Close {
                frames: Vec::new(),
                close: Some((POLICY_VIOLATION, "Too many requests")),
                reason: Some(CloseReason::MessageRate),
            };
        }
        match message {
            Message::Text(text) => self.on_text(text.as_str()),
            Message::Pong(payload) => {
                self.on_pong(&payload);
                Next::Send(Vec::new())
            }
            // tungstenite answers pings itself; binary frames mean nothing here.
            Message::Ping(_) | Message::Binary(_) | Message::Close(_) => Next::Send(Vec::new()),
        }
    }

    fn on_text(&mut self, text: &str) -> Next {
        self.stats.control_message();
        let reply = match parse_request(text, self.venue) {
            Ok(IdentifiedRequest { request, id }) => self.handle(request, &id),
            Err(error) => Err(error),
        };
        let reply = reply.unwrap_or_else(|error| {
            self.stats.error_reply();
            debug!(code = error.code, msg = %error.msg, "control message refused");
            error.to_reply()
        });
        Next::Send(vec![Message::Text(reply.into())])
    }

    fn handle(&mut self, request: Request, id: &Value) -> Result<String, RequestError> {
        let result = match request {
            Request::Subscribe(names) => {
                self.subscribe(&names, id)?;
                Value::Null
            }
            Request::Unsubscribe(names) => {
                let gone = self.resolve(&names, id)?;
                let is_gone = |name: &str| gone.iter().any(|stream| stream.name() == name);
                self.streams.retain(|held| !is_gone(&held.name));
                self.unlisted.retain(|held| !is_gone(held));
                Value::Null
            }
            Request::ListSubscriptions => Value::Array(
                self.streams
                    .iter()
                    .map(|stream| &stream.name)
                    .chain(&self.unlisted)
                    .map(|name| Value::String(name.clone()))
                    .collect(),
            ),
            Request::SetCombined(combined) => {
                self.combined = combined;
                Value::Null
            }
            Request::GetCombined => Value::Bool(self.combined),
        };
        Ok(result_reply(&result, id))
    }

    /// Adds the streams, all or none: an invalid name, a stream the `refuse_subscribe` fault
    /// names, or exceeding the venue's stream cap refuses the whole request. Streams of unlisted
    /// symbols are accepted and never carry an event, as on Binance.
    fn subscribe(&mut self, names: &[String], id: &Value) -> Result<(), RequestError> {
        let resolved = self.resolve(names, id)?;
        let refused = {
            let refusals = lock(&self.state.shared().refusals);
            resolved.iter().any(|stream| {
                refusals.refuses(stream.symbol(), matches!(stream, Resolved::Listed(_)))
            })
        };
        if refused {
            return Err(RequestError::invalid("invalid stream", id));
        }
        let mut added: Vec<StreamKey> = Vec::new();
        let mut added_unlisted: Vec<String> = Vec::new();
        for stream in resolved {
            match stream {
                Resolved::Listed(key) => {
                    let known = |held: &StreamKey| held.name == key.name;
                    if !self.streams.iter().any(known) && !added.iter().any(known) {
                        added.push(key);
                    }
                }
                Resolved::Unlisted(name) => {
                    if !self.unlisted.contains(&name) && !added_unlisted.contains(&name) {
                        added_unlisted.push(name);
                    }
                }
            }
        }
        let held = self.streams.len() + self.unlisted.len();
        if held + added.len() + added_unlisted.len() > self.limits.max_streams {
            return Err(RequestError::invalid(
                &format!(
                    "too many streams: at most {} per connection",
                    self.limits.max_streams
                ),
                id,
            ));
        }
        self.streams.extend(added);
        self.unlisted.extend(added_unlisted);
        Ok(())
    }

    fn resolve(&self, names: &[String], id: &Value) -> Result<Vec<Resolved>, RequestError> {
        names
            .iter()
            .map(|name| {
                resolve_stream_name(&self.state.shared().exchange, self.venue, name)
                    .ok_or_else(|| RequestError::invalid("invalid stream", id))
            })
            .collect()
    }

    fn on_tick(&mut self, tick: Result<Arc<Tick>, RecvError>) -> Next {
        let tick = match tick {
            Ok(tick) => tick,
            Err(RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "connection fell behind the event stream; disconnecting"
                );
                return Next::Close {
                    frames: Vec::new(),
                    close: Some((POLICY_VIOLATION, "Connection too slow")),
                    reason: Some(CloseReason::Slowness),
                };
            }
            Err(RecvError::Closed) => return Next::End,
        };
        let mut frames = Vec::new();
        for stream in &self.streams {
            for data in tick.frames(stream.family, stream.market) {
                let text = if self.combined {
                    envelope(&stream.name, data)
                } else {
                    data.to_string()
                };
                frames.push(Message::Text(text.into()));
            }
        }
        Next::Send(frames)
    }

    fn on_command(&mut self, command: Result<ConnectionCommand, RecvError>) -> Next {
        match command {
            Ok(ConnectionCommand::Disconnect(filter))
                if filter.matches(self.venue, &self.streams) =>
            {
                Next::Close {
                    frames: Vec::new(),
                    close: None,
                    reason: Some(CloseReason::Fault),
                }
            }
            Ok(ConnectionCommand::ServerShutdown(filter, close_after))
                if self.closing_at.is_none() && filter.matches(self.venue, &self.streams) =>
            {
                self.announce_shutdown(close_after)
            }
            Ok(ConnectionCommand::Disconnect(_) | ConnectionCommand::ServerShutdown(..)) => {
                Next::Send(Vec::new())
            }
            // Commands are rare; one lost to a lagging receiver is logged, not fatal.
            Err(RecvError::Lagged(missed)) => {
                warn!(missed, "connection missed fault commands");
                Next::Send(Vec::new())
            }
            Err(RecvError::Closed) => Next::End,
        }
    }

    /// Sends `serverShutdown`; the connection keeps serving for `close_after`, then closes.
    fn announce_shutdown(&mut self, close_after: Duration) -> Next {
        let event = server_shutdown_event(now_ms());
        let text = if self.combined {
            envelope(SERVER_SHUTDOWN_STREAM, &event)
        } else {
            event
        };
        let frames = vec![Message::Text(text.into())];
        if close_after.is_zero() {
            return Next::Close {
                frames,
                close: Some((GOING_AWAY, "Server shutdown")),
                reason: Some(CloseReason::ServerShutdown),
            };
        }
        debug!(?close_after, "serverShutdown sent; closing later");
        self.closing_at = Some(Instant::now() + close_after);
        Next::Send(frames)
    }

    /// Sends a ping whose payload is unique on this connection.
    fn ping(&mut self) -> Next {
        self.pings_sent += 1;
        let payload = Bytes::from(format!("{}-{}", now_ms(), self.pings_sent));
        self.pending_pings
            .push_back((payload.clone(), Instant::now()));
        self.stats.ping_sent();
        Next::Send(vec![Message::Ping(payload)])
    }

    /// A pong answers the ping with the same payload and every older one; other pongs
    /// (unsolicited, or with a wrong payload) are allowed but answer nothing.
    fn on_pong(&mut self, payload: &[u8]) {
        if let Some(position) = self
            .pending_pings
            .iter()
            .position(|(sent, _)| sent.as_ref() == payload)
        {
            self.pending_pings.drain(..=position);
            self.stats.pong_matched();
        }
    }

    fn pong_deadline(&self) -> Option<Instant> {
        self.pending_pings
            .front()
            .map(|(_, sent_at)| *sent_at + self.limits.pong_timeout)
    }
}
