//! One WebSocket connection carrying the diff streams of many books of one exchange.
//!
//! The connection subscribes its streams with `SUBSCRIBE` control messages, paced below the
//! exchange's messages-per-second limit, answers server pings, sends its own pings to keep the
//! connection open, and treats a connection that brings no data message for the silence timeout as
//! lost (whether the peer died or stopped delivering while still answering pings).
//!
//! Binance cuts every connection after 24 hours. Before that, a replacement connection is opened
//! and subscribed; its events are held while the old one keeps serving, and once it is fully
//! subscribed (plus a short overlap) the old one is dropped and the held events follow. Events the
//! books already applied are ignored by the sync rules, so no book leaves sync (make-before-break). A lost connection is reported (every book on it is out of sync until resynced) and
//! reopened with exponential backoff; its streams are subscribed again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
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

/// How long a replacement connection runs beside the old one after all its subscriptions are
/// confirmed: long enough that everything the old one still had in flight has also reached the
/// new one, so the switch loses no event.
const HANDOVER_OVERLAP: Duration = Duration::from_secs(2);

/// A replacement connection that has not confirmed every subscription in this time is given up.
const SUCCESSOR_DEADLINE: Duration = Duration::from_secs(60);

/// Wait before trying again when a replacement connection could not be opened.
const ROTATION_RETRY: Duration = Duration::from_secs(30);

/// Binance cuts every connection after 24 hours; replace ours well before.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(23 * 3600 + 30 * 60);

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
    /// Replace the connection after this long, opening the new one before closing the old one.
    pub max_lifetime: Duration,
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
    method: &'static str,
    params: Vec<String>,
    subscribes: Vec<BookId>,
}

impl Outgoing {
    /// The message as sent: serde_json escapes whatever the stream names contain.
    fn text(&self) -> String {
        serde_json::json!({"method": self.method, "params": self.params, "id": self.id}).to_string()
    }
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
        crate::tls::install_crypto_provider();
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

    /// Queues `method` for `stream` on `link`, merged into the last queued message of the same
    /// method while it has room, so adding many books at once costs few messages (Binance counts
    /// every control message against the per-second limit).
    fn enqueue(
        &mut self,
        link: &mut Link,
        method: &'static str,
        stream: String,
        book: Option<BookId>,
    ) {
        if let Some(last) = link.outbox.back_mut()
            && last.method == method
            && last.params.len() < STREAMS_PER_SUBSCRIBE
        {
            last.params.push(stream);
            last.subscribes.extend(book);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        link.outbox.push_back(Outgoing {
            id,
            method,
            params: vec![stream],
            subscribes: book.into_iter().collect(),
        });
    }

    /// Connects to the stream endpoint: TCP, TLS and the WebSocket handshake.
    fn connect(&self) -> impl Future<Output = Result<Socket, String>> + Send + 'static {
        let url = self.config.url.clone();
        async move {
            match timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await
            {
                Ok(Ok((socket, _))) => Ok(socket),
                Ok(Err(error)) => Err(format!("connect: {error}")),
                Err(_) => Err("connect timed out".into()),
            }
        }
    }

    /// A link over `socket` with every stream of the connection queued for `SUBSCRIBE`.
    fn link(&mut self, socket: Socket) -> Link {
        let (sink, stream) = socket.split();
        // Control messages (and our pings) share Binance's per-second limit; stay two below it.
        let pace = Duration::from_secs(1)
            / self
                .config
                .exchange
                .spec()
                .messages_per_second
                .saturating_sub(2)
                .max(1);
        let now = Instant::now();
        let mut link = Link {
            sink,
            stream,
            outbox: VecDeque::new(),
            awaiting: HashMap::new(),
            next_send: now,
            next_ping: now + self.config.ping_interval,
            pace,
        };
        let all: Vec<(String, BookId)> =
            self.streams.iter().map(|(s, b)| (s.clone(), *b)).collect();
        for (stream, book) in all {
            self.enqueue(&mut link, "SUBSCRIBE", stream, Some(book));
        }
        link
    }

    /// One connected period: a primary link, and near its end of life a successor that takes
    /// over before Binance cuts the primary (make-before-break).
    async fn session(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<ConnectionCommand>,
        events: &mpsc::UnboundedSender<StreamEvent>,
    ) -> SessionEnd {
        let socket = match self.connect().await {
            Ok(socket) => socket,
            Err(detail) => return SessionEnd::Lost(OutOfSyncReason::Disconnected, detail),
        };
        // Books added while connecting join the first subscriptions instead of trickling in one
        // control message each.
        while let Ok(command) = commands.try_recv() {
            self.remember(&command);
        }
        let mut primary = self.link(socket);
        let mut rotate_at = Instant::now() + self.config.max_lifetime;
        let mut connecting: Option<Connecting> = None;
        let mut successor: Option<Link> = None;
        // The successor's events, held until it takes over so they follow the primary's.
        let mut held: Vec<StreamEvent> = Vec::new();
        let mut handover_at: Option<Instant> = None;
        // A successor that is not fully subscribed by then is given up (and tried again later).
        let mut successor_deadline: Option<Instant> = None;
        let mut last_data = Instant::now();
        // Any frame at all, pongs to our pings included: a connection that answers nothing is dead.
        let mut last_heard = Instant::now();
        let far = || Instant::now() + Duration::from_secs(86_400);

        loop {
            let silence_deadline = last_data + self.config.silence_timeout;
            let deaf_deadline = last_heard + self.config.ping_interval * 3;
            let successor_send = successor
                .as_ref()
                .filter(|link| !link.outbox.is_empty())
                .map(|link| link.next_send);
            tokio::select! {
                // The primary first: its events were sent before the successor's copies.
                biased;
                frame = primary.stream.next() => match self.on_frame(frame, &mut primary, Route::Forward, events).await {
                    FrameOutcome::Data => (last_data, last_heard) = (Instant::now(), Instant::now()),
                    FrameOutcome::Control => last_heard = Instant::now(),
                    FrameOutcome::End(end) => {
                        // A successor that is ready takes over at once; otherwise the session ends.
                        let Some(next) = successor.take().filter(Link::is_subscribed) else { return end };
                        if !promote(&mut primary, next, &mut held, events) {
                            return SessionEnd::Shutdown;
                        }
                        (handover_at, successor_deadline) = (None, None);
                        (rotate_at, last_heard) = (Instant::now() + self.config.max_lifetime, Instant::now());
                    }
                },
                frame = next_frame(&mut successor) => {
                    let Some(link) = successor.as_mut() else { continue };
                    match self.on_frame(frame, link, Route::Hold(&mut held), events).await {
                        FrameOutcome::End(SessionEnd::Shutdown) => return SessionEnd::Shutdown,
                        FrameOutcome::End(SessionEnd::Lost(_, detail)) => {
                            tracing::warn!(url = %self.config.url, %detail, "replacement connection failed; retrying later");
                            (successor, handover_at, successor_deadline) = (None, None, None);
                            rotate_at = Instant::now() + ROTATION_RETRY;
                            held.clear();
                        }
                        FrameOutcome::Data | FrameOutcome::Control => {
                            if handover_at.is_none() && link.is_subscribed() {
                                handover_at = Some(Instant::now() + HANDOVER_OVERLAP);
                            }
                        }
                    }
                }
                () = sleep_until(handover_at.unwrap_or_else(far)), if handover_at.is_some() => {
                    let Some(next) = successor.take() else { continue };
                    tracing::info!(url = %self.config.url, "connection replaced before its lifetime ends");
                    // The old primary's events were all read before this point; dropping it closes it.
                    if !promote(&mut primary, next, &mut held, events) {
                        return SessionEnd::Shutdown;
                    }
                    (handover_at, successor_deadline) = (None, None);
                    (rotate_at, last_heard) = (Instant::now() + self.config.max_lifetime, Instant::now());
                }
                () = sleep_until(successor_deadline.unwrap_or_else(far)), if successor_deadline.is_some() && handover_at.is_none() => {
                    tracing::warn!(url = %self.config.url, "replacement connection never finished subscribing; retrying later");
                    (successor, successor_deadline) = (None, None);
                    rotate_at = Instant::now() + ROTATION_RETRY;
                    held.clear();
                }
                () = sleep_until(rotate_at), if connecting.is_none() && successor.is_none() => {
                    connecting = Some(Box::pin(self.connect()));
                }
                connected = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                    connecting = None;
                    match connected {
                        Ok(socket) => {
                            successor = Some(self.link(socket));
                            successor_deadline = Some(Instant::now() + SUCCESSOR_DEADLINE);
                        }
                        Err(detail) => {
                            tracing::warn!(url = %self.config.url, %detail, "replacement connection failed; retrying later");
                            rotate_at = Instant::now() + ROTATION_RETRY;
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return SessionEnd::Shutdown };
                    let book = match &command { ConnectionCommand::Subscribe { book, .. } => Some(*book), ConnectionCommand::Unsubscribe { .. } => None };
                    if let Some(stream) = self.remember(&command) {
                        let method = if book.is_some() { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                        if let Some(link) = successor.as_mut() {
                            self.enqueue(link, method, stream.clone(), book);
                        }
                        self.enqueue(&mut primary, method, stream, book);
                    }
                }
                () = sleep_until(primary.next_send), if !primary.outbox.is_empty() => {
                    if let Err(detail) = primary.send_next().await {
                        return SessionEnd::Lost(OutOfSyncReason::Disconnected, detail);
                    }
                }
                () = sleep_until(successor_send.unwrap_or_else(far)), if successor_send.is_some() => {
                    if let Some(link) = successor.as_mut()
                        && let Err(detail) = link.send_next().await
                    {
                        tracing::warn!(url = %self.config.url, %detail, "replacement connection failed; retrying later");
                        (successor, handover_at, successor_deadline) = (None, None, None);
                        rotate_at = Instant::now() + ROTATION_RETRY;
                        held.clear();
                    }
                }
                () = sleep_until(primary.next_ping) => {
                    if let Err(detail) = primary.ping(self.config.ping_interval).await {
                        return SessionEnd::Lost(OutOfSyncReason::Disconnected, detail);
                    }
                }
                () = sleep_until(deaf_deadline) => {
                    return SessionEnd::Lost(OutOfSyncReason::Disconnected, format!("nothing heard for {:?}, not even pongs", self.config.ping_interval * 3));
                }
                () = sleep_until(silence_deadline) => {
                    return SessionEnd::Lost(OutOfSyncReason::StreamSilent, format!("no data for {:?}", self.config.silence_timeout));
                }
            }
        }
    }

    /// Handles one frame of `link`.
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        link: &mut Link,
        route: Route<'_>,
        events: &mpsc::UnboundedSender<StreamEvent>,
    ) -> FrameOutcome {
        let message = match frame {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                return FrameOutcome::End(SessionEnd::Lost(
                    OutOfSyncReason::Disconnected,
                    error.to_string(),
                ));
            }
            None => {
                return FrameOutcome::End(SessionEnd::Lost(
                    OutOfSyncReason::Disconnected,
                    "closed by the server".into(),
                ));
            }
        };
        match message {
            Message::Text(text) => {
                match self.on_text(text.as_bytes().to_vec(), &mut link.awaiting, route, events) {
                    Some(end) => FrameOutcome::End(end),
                    // Only data counts as life: a connection that still answers pings but delivers
                    // nothing is exactly the silent stream to catch.
                    None => FrameOutcome::Data,
                }
            }
            Message::Ping(payload) => {
                // Binance disconnects a client that does not echo its ping in time.
                match link.sink.send(Message::Pong(payload)).await {
                    Ok(()) => FrameOutcome::Control,
                    Err(error) => FrameOutcome::End(SessionEnd::Lost(
                        OutOfSyncReason::Disconnected,
                        error.to_string(),
                    )),
                }
            }
            Message::Close(_) => FrameOutcome::End(SessionEnd::Lost(
                OutOfSyncReason::Disconnected,
                "close frame".into(),
            )),
            Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => FrameOutcome::Control,
        }
    }

    /// Handles one text message; `Some` ends the link.
    fn on_text(
        &mut self,
        mut buffer: Vec<u8>,
        awaiting: &mut HashMap<u64, Vec<BookId>>,
        mut route: Route<'_>,
        events: &mpsc::UnboundedSender<StreamEvent>,
    ) -> Option<SessionEnd> {
        let received_ns = crate::clock::unix_now_ns();
        let message = match StreamMessage::parse(&mut buffer) {
            Ok(message) => message,
            // Unparseable as a whole: no book can be told apart, so none can be trusted.
            Err(error) => {
                return Some(SessionEnd::Lost(
                    OutOfSyncReason::MalformedMessage,
                    error.to_string(),
                ));
            }
        };
        let event = match message {
            StreamMessage::Depth { stream, update } => {
                // A stream we no longer carry (unsubscribed a moment ago): nothing to do.
                let &book = self.streams.get(stream)?;
                match DiffUpdate::try_from(&update) {
                    Ok(update) => StreamEvent::Diff {
                        book,
                        update,
                        received_ns,
                    },
                    Err(error) => {
                        tracing::warn!(stream, %error, "malformed depth event");
                        StreamEvent::Malformed { book }
                    }
                }
            }
            StreamMessage::Reply { id, .. } => {
                let books = awaiting.remove(&id)?;
                // A successor's books are synced already; only a new session's need snapshots.
                let Route::Forward = route else { return None };
                StreamEvent::Subscribed { books }
            }
            StreamMessage::Error { id, error } => {
                tracing::warn!(?id, code = error.code, msg = %error.msg, "control request refused");
                // The books of a refused SUBSCRIBE get no events: reconnecting retries them.
                if id.is_some_and(|id| awaiting.contains_key(&id)) {
                    return Some(SessionEnd::Lost(
                        OutOfSyncReason::Disconnected,
                        format!("SUBSCRIBE refused: {}", error.msg),
                    ));
                }
                return None;
            }
            StreamMessage::ServerShutdown { .. } => {
                return Some(SessionEnd::Lost(
                    OutOfSyncReason::ServerShutdown,
                    "serverShutdown".into(),
                ));
            }
            StreamMessage::Other => return None,
        };
        match &mut route {
            Route::Hold(held) => held.push(event),
            Route::Forward => {
                if events.send(event).is_err() {
                    return Some(SessionEnd::Shutdown);
                }
            }
        }
        None
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A replacement connection being opened in the background.
type Connecting = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;

/// One open WebSocket of a connection, with its own paced queue of control messages.
struct Link {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    outbox: VecDeque<Outgoing>,
    awaiting: HashMap<u64, Vec<BookId>>,
    next_send: Instant,
    next_ping: Instant,
    pace: Duration,
}

impl Link {
    /// Books whose subscription is queued or sent but not confirmed yet.
    fn pending_books(&self) -> HashSet<BookId> {
        self.awaiting
            .values()
            .flatten()
            .chain(self.outbox.iter().flat_map(|o| &o.subscribes))
            .copied()
            .collect()
    }

    /// Every stream is subscribed and confirmed.
    fn is_subscribed(&self) -> bool {
        self.outbox.is_empty() && self.awaiting.is_empty()
    }

    /// Sends the next control message and paces the one after it.
    async fn send_next(&mut self) -> Result<(), String> {
        let Some(outgoing) = self.outbox.pop_front() else {
            return Ok(());
        };
        self.sink
            .send(Message::text(outgoing.text()))
            .await
            .map_err(|e| e.to_string())?;
        if !outgoing.subscribes.is_empty() {
            self.awaiting.insert(outgoing.id, outgoing.subscribes);
        }
        self.next_send = Instant::now() + self.pace;
        Ok(())
    }

    async fn ping(&mut self, interval: Duration) -> Result<(), String> {
        self.sink
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| e.to_string())?;
        self.next_ping = Instant::now() + interval;
        Ok(())
    }
}

/// The next frame of an optional link (never, without one).
async fn next_frame(
    link: &mut Option<Link>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match link.as_mut() {
        Some(link) => link.stream.next().await,
        None => std::future::pending().await,
    }
}

/// Makes `next` the primary link: forwards the events it held, then reports as subscribed the
/// books the old primary was still subscribing and `next` has confirmed (their confirmations came
/// while `next` was held, so nobody was told). `false` when the node is gone.
fn promote(
    primary: &mut Link,
    next: Link,
    held: &mut Vec<StreamEvent>,
    events: &mpsc::UnboundedSender<StreamEvent>,
) -> bool {
    let still_pending = next.pending_books();
    let confirmed: Vec<BookId> = primary
        .pending_books()
        .into_iter()
        .filter(|book| !still_pending.contains(book))
        .collect();
    *primary = next;
    if !forward(held, events) {
        return false;
    }
    confirmed.is_empty()
        || events
            .send(StreamEvent::Subscribed { books: confirmed })
            .is_ok()
}

/// Sends held events to the node in order; `false` when the node is gone.
fn forward(held: &mut Vec<StreamEvent>, events: &mpsc::UnboundedSender<StreamEvent>) -> bool {
    held.drain(..).all(|event| events.send(event).is_ok())
}

/// Where a link's events go.
enum Route<'a> {
    /// Straight to the node.
    Forward,
    /// Held until the link takes over (a successor during a handover).
    Hold(&'a mut Vec<StreamEvent>),
}

/// What a frame meant.
enum FrameOutcome {
    /// A data message.
    Data,
    /// A ping, pong or other control frame.
    Control,
    /// The link ended.
    End(SessionEnd),
}
