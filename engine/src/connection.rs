//! One WebSocket connection carrying the diff streams of many books of one exchange.
//!
//! The connection subscribes its streams with `SUBSCRIBE` control messages, paced below the
//! exchange's messages-per-second limit, answers server pings, sends its own pings to keep the
//! connection open, and treats a connection that brings no data message for the silence timeout as
//! lost (whether the peer died or stopped delivering while still answering pings). A lost connection is reported (every book on it is out of sync until resynced) and
//! reopened with exponential backoff; its streams are subscribed again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use ubdcc_shm::OutOfSyncReason;

use crate::binance::wire::{DiffUpdate, StreamMessage};
use crate::exchange::Exchange;
use crate::snapshot::BookId;

/// Streams per `SUBSCRIBE` message. Binance takes more, but small batches keep each message
/// short and let the first books start syncing sooner.
const STREAMS_PER_SUBSCRIBE: usize = 100;

/// How long connecting (TCP, TLS and the WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection tells the node.
#[derive(Debug)]
pub enum StreamEvent {
    /// A diff event for a book.
    Diff {
        /// The book.
        book: BookId,
        /// The event, levels parsed.
        update: DiffUpdate,
        /// When it was received, Unix ns.
        received_ns: u64,
    },
    /// These books' streams are subscribed: their events are flowing, so a snapshot can be
    /// aligned with them.
    Subscribed {
        /// The books.
        books: Vec<BookId>,
    },
    /// These books' streams are interrupted (the connection was lost, went silent, or the server
    /// announced a shutdown); they are out of sync until resubscribed and resynced.
    Interrupted {
        /// The books.
        books: Vec<BookId>,
        /// Why.
        reason: OutOfSyncReason,
    },
    /// A message for a book could not be parsed; that book must resync.
    Malformed {
        /// The book.
        book: BookId,
    },
}

/// What the node asks of a connection.
#[derive(Debug, Clone)]
pub enum ConnectionCommand {
    /// Carry `stream` for `book`.
    Subscribe {
        /// The book.
        book: BookId,
        /// Its stream name (`btcusdt@depth@100ms`).
        stream: String,
    },
    /// Stop carrying `book`'s stream.
    Unsubscribe {
        /// The book.
        book: BookId,
    },
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The exchange (for its message limit).
    pub exchange: Exchange,
    /// The combined-stream URL (`wss://stream.binance.com:9443/stream`).
    pub url: String,
    /// Interval of our own pings.
    pub ping_interval: Duration,
    /// A connection that brings no data message for this long is lost (pings and pongs do not
    /// count: a stream can stay connected and still stop delivering).
    pub silence_timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
}

/// Why a session ended.
enum SessionEnd {
    /// The node dropped the command channel: stop for good.
    Shutdown,
    /// The connection is gone; reconnect.
    Lost(OutOfSyncReason, String),
}

/// A pending control message and the books it subscribes (for the `Subscribed` report).
struct Outgoing {
    id: u64,
    text: String,
    subscribes: Vec<BookId>,
}

/// The state that outlives single sessions: which streams to carry and the request ids.
pub struct StreamConnection {
    config: ConnectionConfig,
    streams: HashMap<String, BookId>,
    next_id: u64,
}

impl StreamConnection {
    /// A connection that is not open yet.
    pub fn new(config: ConnectionConfig) -> Self {
        Self {
            config,
            streams: HashMap::new(),
            next_id: 1,
        }
    }

    /// Runs until the command channel closes, reconnecting as needed.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<ConnectionCommand>,
        events: mpsc::UnboundedSender<StreamEvent>,
    ) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            match self.session(&mut commands, &events).await {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason, detail) => {
                    tracing::warn!(url = %self.config.url, %detail, "stream connection lost; reconnecting");
                    let books: Vec<BookId> = self.streams.values().copied().collect();
                    if !books.is_empty()
                        && events
                            .send(StreamEvent::Interrupted { books, reason })
                            .is_err()
                    {
                        return;
                    }
                }
            }
            // A session that lasted a while resets the backoff; quick failures grow it.
            if started.elapsed() > self.config.max_backoff {
                backoff = Duration::from_millis(250);
            }
            if !self.wait(backoff, &mut commands).await {
                return;
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// Sleeps `delay` while still taking commands; `false` when the node is gone.
    async fn wait(
        &mut self,
        delay: Duration,
        commands: &mut mpsc::UnboundedReceiver<ConnectionCommand>,
    ) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return true,
                command = commands.recv() => match command {
                    Some(command) => { self.remember(&command); }
                    None => return false,
                },
            }
        }
    }

    /// Records a command's effect on the stream set; returns the stream it concerns.
    fn remember(&mut self, command: &ConnectionCommand) -> Option<String> {
        match command {
            ConnectionCommand::Subscribe { book, stream } => {
                self.streams.insert(stream.clone(), *book);
                Some(stream.clone())
            }
            ConnectionCommand::Unsubscribe { book } => {
                let stream = self
                    .streams
                    .iter()
                    .find(|(_, b)| *b == book)
                    .map(|(s, _)| s.clone())?;
                self.streams.remove(&stream);
                Some(stream)
            }
        }
    }

    fn control(&mut self, method: &str, streams: &[String], subscribes: Vec<BookId>) -> Outgoing {
        let id = self.next_id;
        self.next_id += 1;
        let params = streams
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",");
        Outgoing {
            id,
            text: format!(r#"{{"method":"{method}","params":[{params}],"id":{id}}}"#),
            subscribes,
        }
    }

    async fn session(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<ConnectionCommand>,
        events: &mpsc::UnboundedSender<StreamEvent>,
    ) -> SessionEnd {
        let socket = match timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(self.config.url.as_str()),
        )
        .await
        {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(error)) => {
                return SessionEnd::Lost(
                    OutOfSyncReason::Disconnected,
                    format!("connect: {error}"),
                );
            }
            Err(_) => {
                return SessionEnd::Lost(OutOfSyncReason::Disconnected, "connect timed out".into());
            }
        };
        let (mut sink, mut stream) = socket.split();

        let mut outbox: VecDeque<Outgoing> = VecDeque::new();
        let all: Vec<(String, BookId)> =
            self.streams.iter().map(|(s, b)| (s.clone(), *b)).collect();
        for chunk in all.chunks(STREAMS_PER_SUBSCRIBE) {
            let names: Vec<String> = chunk.iter().map(|(s, _)| s.clone()).collect();
            outbox.push_back(self.control(
                "SUBSCRIBE",
                &names,
                chunk.iter().map(|(_, b)| *b).collect(),
            ));
        }
        let mut awaiting: HashMap<u64, Vec<BookId>> = HashMap::new();
        // Control messages (and our pings) share Binance's per-second limit; stay two below it.
        let pace = Duration::from_secs(1)
            / self
                .config
                .exchange
                .spec()
                .messages_per_second
                .saturating_sub(2)
                .max(1);
        let mut next_send = Instant::now();
        let mut next_ping = Instant::now() + self.config.ping_interval;
        let mut last_frame = Instant::now();

        loop {
            let silence_deadline = last_frame + self.config.silence_timeout;
            tokio::select! {
                frame = stream.next() => {
                    let message = match frame {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => return SessionEnd::Lost(OutOfSyncReason::Disconnected, error.to_string()),
                        None => return SessionEnd::Lost(OutOfSyncReason::Disconnected, "closed by the server".into()),
                    };
                    match message {
                        Message::Text(text) => {
                            // Only data counts as life: a connection that still answers pings but
                            // delivers nothing is exactly the silent stream to catch.
                            last_frame = Instant::now();
                            if let Some(end) = self.on_text(text.as_bytes().to_vec(), &mut awaiting, events) {
                                return end;
                            }
                        }
                        Message::Ping(payload) => {
                            // Binance disconnects a client that does not echo its ping in time.
                            if let Err(error) = sink.send(Message::Pong(payload)).await {
                                return SessionEnd::Lost(OutOfSyncReason::Disconnected, error.to_string());
                            }
                        }
                        Message::Close(_) => return SessionEnd::Lost(OutOfSyncReason::Disconnected, "close frame".into()),
                        Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => {}
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return SessionEnd::Shutdown };
                    let book = match &command { ConnectionCommand::Subscribe { book, .. } => Some(*book), ConnectionCommand::Unsubscribe { .. } => None };
                    if let Some(stream) = self.remember(&command) {
                        let method = if book.is_some() { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                        let outgoing = self.control(method, &[stream], book.into_iter().collect());
                        outbox.push_back(outgoing);
                    }
                }
                () = sleep_until(next_send), if !outbox.is_empty() => {
                    let Some(outgoing) = outbox.pop_front() else { continue };
                    if let Err(error) = sink.send(Message::text(outgoing.text)).await {
                        return SessionEnd::Lost(OutOfSyncReason::Disconnected, error.to_string());
                    }
                    if !outgoing.subscribes.is_empty() {
                        awaiting.insert(outgoing.id, outgoing.subscribes);
                    }
                    next_send = Instant::now() + pace;
                }
                () = sleep_until(next_ping) => {
                    if let Err(error) = sink.send(Message::Ping(Vec::new().into())).await {
                        return SessionEnd::Lost(OutOfSyncReason::Disconnected, error.to_string());
                    }
                    next_ping = Instant::now() + self.config.ping_interval;
                }
                () = sleep_until(silence_deadline) => {
                    return SessionEnd::Lost(OutOfSyncReason::StreamSilent, format!("no frame for {:?}", self.config.silence_timeout));
                }
            }
        }
    }

    /// Handles one text message; `Some` ends the session.
    fn on_text(
        &mut self,
        mut buffer: Vec<u8>,
        awaiting: &mut HashMap<u64, Vec<BookId>>,
        events: &mpsc::UnboundedSender<StreamEvent>,
    ) -> Option<SessionEnd> {
        let received_ns = crate::clock::unix_now_ns();
        let message = match StreamMessage::parse(&mut buffer) {
            Ok(message) => message,
            Err(error) => {
                // Unparseable as a whole: no book can be told apart, so none can be trusted.
                return Some(SessionEnd::Lost(
                    OutOfSyncReason::MalformedMessage,
                    error.to_string(),
                ));
            }
        };
        let sent = match message {
            StreamMessage::Depth { stream, update } => {
                // A stream we no longer carry (unsubscribed a moment ago): nothing to do.
                let &book = self.streams.get(stream)?;
                match DiffUpdate::try_from(&update) {
                    Ok(update) => events.send(StreamEvent::Diff {
                        book,
                        update,
                        received_ns,
                    }),
                    Err(error) => {
                        tracing::warn!(stream, %error, "malformed depth event");
                        events.send(StreamEvent::Malformed { book })
                    }
                }
            }
            StreamMessage::Reply { id, .. } => match awaiting.remove(&id) {
                Some(books) => events.send(StreamEvent::Subscribed { books }),
                None => Ok(()),
            },
            StreamMessage::Error { id, error } => {
                tracing::warn!(?id, code = error.code, msg = %error.msg, "control request refused");
                // The books of a refused SUBSCRIBE get no events: reconnecting retries them.
                if id.is_some_and(|id| awaiting.contains_key(&id)) {
                    return Some(SessionEnd::Lost(
                        OutOfSyncReason::Disconnected,
                        format!("SUBSCRIBE refused: {}", error.msg),
                    ));
                }
                Ok(())
            }
            StreamMessage::ServerShutdown { .. } => {
                return Some(SessionEnd::Lost(
                    OutOfSyncReason::ServerShutdown,
                    "serverShutdown".into(),
                ));
            }
            StreamMessage::Other => Ok(()),
        };
        if sent.is_err() {
            return Some(SessionEnd::Shutdown);
        }
        None
    }
}
