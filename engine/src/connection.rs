//! One WebSocket connection carrying the diff streams of many books of one exchange.
//!
//! The connection subscribes its streams with `SUBSCRIBE` control messages, paced below the
//! exchange's messages-per-second limit, answers server pings, sends its own pings to keep the
//! connection open, and treats a connection that brings no data message for the silence timeout as
//! lost (whether the peer died or stopped delivering while still answering pings).
//!
//! **Handover (make-before-break).** Binance cuts every connection after 24 hours and announces
//! other closes with `serverShutdown`, asking clients to reconnect at once. Both are handled the
//! same way: a successor connection is opened and subscribed; its events are held while the old
//! one keeps serving, and once it is fully subscribed (plus a short overlap) the old one is
//! dropped and the held events follow. Events the books already applied are ignored by the sync
//! rules, so no book leaves sync and no snapshot is spent. Should the old connection close before
//! the successor has confirmed every stream, the successor takes over anyway: only the books it
//! has not confirmed yet are interrupted (and resynced once it has).
//!
//! **Refused subscriptions.** A `SUBSCRIBE` the exchange refuses is asked for again in halves
//! until the refused streams are named alone; only their books go out of sync (reason
//! "subscription refused") and are asked for again after [`REFUSED_RETRY`]. The connection and
//! its other books carry on. (Binance itself accepts a stream of an unknown symbol and then sends
//! nothing; such a book never syncs, which the snapshot's answer explains.)
//!
//! A lost connection is reported (every book on it is out of sync until resynced) and reopened
//! with exponential backoff; its streams are subscribed again.
//!
//! **Bounded memory.** Events go to the node over a bounded channel: while it is full the
//! connection waits and reads nothing more from its socket, so a node that falls behind slows
//! the exchange's sends instead of growing memory (an exchange that gives up on a slow reader
//! closes the connection, and its books resync as disconnected). A successor holds at most
//! [`MAX_HELD_EVENTS`] before it takes over; beyond that it is given up and tried again.
//!
//! # Layout
//! [`StreamConnection`] holds what outlives a socket (the streams to carry, the request ids) and
//! reconnects. [`Session`] is one connected period: a primary [`Link`] and, during a handover, a
//! successor. [`Session::run`] is one `select!` whose every arm calls one method of `Session`.
//! [`read_text`] and [`handover_report`] are pure, and tested below.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
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

/// The same after a `serverShutdown`: the old connection is about to close, so waste no time,
/// but do not spin on a host that refuses connections outright.
const SHUTDOWN_RETRY: Duration = Duration::from_secs(1);

/// A stream the exchange refused is asked for again after this long. A refusal says the
/// exchange rejects the stream now (a limit, a market not yet listed); one message a minute is a
/// cheap way to notice when that changes.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Why a successor was given up at [`SUCCESSOR_DEADLINE`].
const NEVER_SUBSCRIBED: &str = "replacement connection never finished subscribing";

/// Events a successor may hold until it takes over. Subscribing 1 024 streams takes ~2 s at
/// spot's 5 messages a second, plus [`HANDOVER_OVERLAP`]: at 10 events/s per stream that is
/// ~40 000 events; beyond this bound the successor is given up (and tried again) rather than
/// let memory grow.
const MAX_HELD_EVENTS: usize = 65_536;

/// Why a successor was given up at [`MAX_HELD_EVENTS`].
const TOO_MUCH_HELD: &str = "replacement connection held too many events before taking over";

/// First wait before reconnecting; doubles up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

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
    /// These books' streams are interrupted (the connection was lost or went silent, or the
    /// exchange refused their subscription); they are out of sync until subscribed again
    /// (reported with [`StreamEvent::Subscribed`]) and resynced.
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

/// What a session does after one input: carry on, or end.
type Step = ControlFlow<SessionEnd>;

/// A pending control message.
struct Outgoing {
    id: u64,
    method: &'static str,
    /// The streams it names.
    params: Vec<String>,
    /// For `SUBSCRIBE`, the book of each stream in `params`, in the same order; empty for
    /// `UNSUBSCRIBE`.
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
        events: mpsc::Sender<StreamEvent>,
    ) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let (reason, detail) = match self.session(&mut commands, &events).await {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason, detail) => (reason, detail),
            };
            let books: Vec<BookId> = self.streams.values().copied().collect();
            tracing::warn!(
                url = %self.config.url,
                %detail,
                books = books.len(),
                "stream connection lost; reconnecting"
            );
            if !books.is_empty()
                && events
                    .send(StreamEvent::Interrupted { books, reason })
                    .await
                    .is_err()
            {
                return;
            }
            // A session that lasted a while resets the backoff; quick failures grow it.
            if started.elapsed() > self.config.max_backoff {
                backoff = FIRST_BACKOFF;
            }
            if !self.wait(backoff, &mut commands).await {
                return;
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// Connects and runs one session on the new socket.
    async fn session(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<ConnectionCommand>,
        events: &mpsc::Sender<StreamEvent>,
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
        let primary = self.link(socket);
        Session::new(self, primary, events).run(commands).await
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

    /// Whether `stream` is still carried for `book` (not unsubscribed or given to another book).
    fn carries(&self, stream: &str, book: BookId) -> bool {
        self.streams.get(stream) == Some(&book)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
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
        link.outbox.push_back(Outgoing {
            id: self.new_id(),
            method,
            params: vec![stream],
            subscribes: book.into_iter().collect(),
        });
    }

    /// Queues a `SUBSCRIBE` of `streams` as the next message `link` sends.
    fn enqueue_first(&mut self, link: &mut Link, streams: Vec<(String, BookId)>) {
        let (params, subscribes) = streams.into_iter().unzip();
        link.outbox.push_front(Outgoing {
            id: self.new_id(),
            method: "SUBSCRIBE",
            params,
            subscribes,
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
            refused: Vec::new(),
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
}

/// One connected period: a primary link, and during a handover a successor that takes over
/// before the primary closes (make-before-break).
struct Session<'a> {
    connection: &'a mut StreamConnection,
    events: &'a mpsc::Sender<StreamEvent>,
    primary: Link,
    /// A successor being connected.
    connecting: Option<Connecting>,
    /// A connected successor, subscribing.
    successor: Option<Link>,
    /// The successor's events, held until it takes over so they follow the primary's.
    held: Vec<StreamEvent>,
    /// When the fully subscribed successor takes over.
    handover_at: Option<Instant>,
    /// A successor not fully subscribed by then is given up (and tried again later).
    successor_deadline: Option<Instant>,
    /// When to open the next successor (the primary's end of life, or a retry).
    rotate_at: Instant,
    /// The server announced that it will close the primary (`serverShutdown`).
    shutdown_announced: bool,
    /// Books whose stream the exchange refused on the primary, with the stream: out of sync,
    /// asked for again at `refused_retry_at`.
    refused: HashMap<BookId, String>,
    refused_retry_at: Option<Instant>,
    /// The primary's last data message: its silence watchdog.
    last_data: Instant,
    /// The primary's last frame of any kind, pongs to our pings included: a connection that
    /// answers nothing is dead.
    last_heard: Instant,
}

impl<'a> Session<'a> {
    fn new(
        connection: &'a mut StreamConnection,
        primary: Link,
        events: &'a mpsc::Sender<StreamEvent>,
    ) -> Self {
        let now = Instant::now();
        Self {
            rotate_at: now + connection.config.max_lifetime,
            connection,
            events,
            primary,
            connecting: None,
            successor: None,
            held: Vec::new(),
            handover_at: None,
            successor_deadline: None,
            shutdown_announced: false,
            refused: HashMap::new(),
            refused_retry_at: None,
            last_data: now,
            last_heard: now,
        }
    }

    /// Runs until the primary is lost (with no successor to take over) or the node is gone.
    async fn run(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<ConnectionCommand>,
    ) -> SessionEnd {
        loop {
            let config = &self.connection.config;
            let (silence, deaf) = (config.silence_timeout, config.ping_interval * 3);
            let silence_deadline = self.last_data + silence;
            let deaf_deadline = self.last_heard + deaf;
            let primary_send = self.primary.send_due();
            let successor_send = self.successor.as_ref().and_then(Link::send_due);
            let retire_successor = self
                .successor_deadline
                .filter(|_| self.handover_at.is_none());
            let rotate = Some(self.rotate_at)
                .filter(|_| self.connecting.is_none() && self.successor.is_none());
            let step = tokio::select! {
                // The primary first: its events were sent before the successor's copies.
                biased;
                frame = self.primary.stream.next() => self.on_primary_frame(frame).await,
                frame = next_frame(&mut self.successor) => self.on_successor_frame(frame).await,
                () = sleep_at(self.handover_at) => self.hand_over().await,
                () = sleep_at(retire_successor) => self.abandon_successor(NEVER_SUBSCRIBED),
                () = sleep_at(rotate) => self.start_successor(),
                connected = connecting(&mut self.connecting) => self.on_successor_connected(connected),
                command = commands.recv() => self.on_command(command),
                () = sleep_at(primary_send) => self.send_primary().await,
                () = sleep_at(successor_send) => self.send_successor().await,
                () = sleep_at(self.refused_retry_at) => self.retry_refused(),
                () = sleep_until(self.primary.next_ping) => self.ping().await,
                () = sleep_until(deaf_deadline) => ControlFlow::Break(SessionEnd::Lost(
                    OutOfSyncReason::Disconnected,
                    format!("nothing heard for {deaf:?}, not even pongs"),
                )),
                () = sleep_until(silence_deadline) => ControlFlow::Break(SessionEnd::Lost(
                    OutOfSyncReason::StreamSilent,
                    format!("no data for {silence:?}"),
                )),
            };
            if let ControlFlow::Break(end) = step {
                return end;
            }
        }
    }

    async fn on_primary_frame(&mut self, frame: Option<Frame>) -> Step {
        let received = receive(&mut self.primary, frame, &self.connection.streams).await;
        let now = Instant::now();
        match received {
            Received::Text(Ok(inbound)) => {
                // Only data counts as life for the silence watchdog: a connection that still
                // answers pings but delivers nothing is exactly the silent stream to catch.
                (self.last_data, self.last_heard) = (now, now);
                self.on_primary_text(inbound).await
            }
            Received::Text(Err(detail)) => {
                ControlFlow::Break(SessionEnd::Lost(OutOfSyncReason::MalformedMessage, detail))
            }
            Received::Control => {
                self.last_heard = now;
                ControlFlow::Continue(())
            }
            Received::Closed(detail) => self.on_primary_closed(detail).await,
        }
    }

    async fn on_primary_text(&mut self, inbound: Inbound) -> Step {
        match inbound {
            Inbound::Event(event) => forward(self.events, event).await,
            Inbound::Reply(id) => match self.primary.awaiting.remove(&id) {
                Some(done) => {
                    forward(
                        self.events,
                        StreamEvent::Subscribed {
                            books: done.subscribes,
                        },
                    )
                    .await
                }
                None => ControlFlow::Continue(()),
            },
            Inbound::Refused { id, code, msg } => {
                self.on_refused(Role::Primary, id, code, &msg).await
            }
            Inbound::ServerShutdown => {
                self.on_server_shutdown();
                ControlFlow::Continue(())
            }
            Inbound::Ignored => ControlFlow::Continue(()),
        }
    }

    /// The server will close the primary: open the successor now instead of at its end of life.
    fn on_server_shutdown(&mut self) {
        tracing::info!(
            url = %self.connection.config.url,
            books = self.connection.streams.len(),
            "serverShutdown announced; handing over to a new connection"
        );
        self.shutdown_announced = true;
        if self.connecting.is_none() && self.successor.is_none() {
            self.rotate_at = Instant::now();
        }
    }

    /// The primary is gone. A successor, if connected, takes over at once (its unconfirmed
    /// books are interrupted); otherwise the session ends.
    async fn on_primary_closed(&mut self, detail: String) -> Step {
        let reason = if self.shutdown_announced {
            OutOfSyncReason::ServerShutdown
        } else {
            OutOfSyncReason::Disconnected
        };
        let Some(next) = self.successor.take() else {
            return ControlFlow::Break(SessionEnd::Lost(reason, detail));
        };
        if !next.is_subscribed() {
            tracing::warn!(
                url = %self.connection.config.url,
                %detail,
                pending = next.pending_books().len(),
                "connection closed before its successor confirmed every stream; those books resync"
            );
        }
        self.promote(next, reason).await
    }

    async fn on_successor_frame(&mut self, frame: Option<Frame>) -> Step {
        let Some(link) = self.successor.as_mut() else {
            return ControlFlow::Continue(());
        };
        let inbound = match receive(link, frame, &self.connection.streams).await {
            Received::Text(Ok(inbound)) => inbound,
            Received::Control => return ControlFlow::Continue(()),
            Received::Text(Err(detail)) | Received::Closed(detail) => {
                return self.abandon_successor(&detail);
            }
        };
        match inbound {
            Inbound::Event(event) => {
                if self.held.len() >= MAX_HELD_EVENTS {
                    return self.abandon_successor(TOO_MUCH_HELD);
                }
                self.held.push(event);
            }
            // A successor's books are synced already: nobody needs to hear of its replies.
            Inbound::Reply(id) => {
                link.awaiting.remove(&id);
            }
            Inbound::Refused { id, code, msg } => {
                if let ControlFlow::Break(end) =
                    self.on_refused(Role::Successor, id, code, &msg).await
                {
                    return ControlFlow::Break(end);
                }
            }
            Inbound::ServerShutdown => {
                return self
                    .abandon_successor("the replacement connection announced serverShutdown");
            }
            Inbound::Ignored => {}
        }
        self.arm_handover();
        ControlFlow::Continue(())
    }

    /// Once the successor has every subscription answered, it takes over after the overlap.
    fn arm_handover(&mut self) {
        if self.handover_at.is_none() && self.successor.as_ref().is_some_and(Link::is_subscribed) {
            self.handover_at = Some(Instant::now() + HANDOVER_OVERLAP);
        }
    }

    /// A `SUBSCRIBE` was refused. One naming several streams is asked for again in halves, so
    /// that in the end only the refused streams are refused; a refused single stream puts its
    /// book out of sync (on the primary now, on a successor when it takes over).
    async fn on_refused(&mut self, role: Role, id: Option<u64>, code: i64, msg: &str) -> Step {
        let link = match role {
            Role::Primary => &mut self.primary,
            Role::Successor => match self.successor.as_mut() {
                Some(link) => link,
                None => return ControlFlow::Continue(()),
            },
        };
        let Some(refused) = id.and_then(|id| link.awaiting.remove(&id)) else {
            tracing::warn!(?id, code, msg, "control request refused");
            return ControlFlow::Continue(());
        };
        let mut carried: Vec<(String, BookId)> = refused
            .params
            .into_iter()
            .zip(refused.subscribes)
            .filter(|(stream, book)| self.connection.carries(stream, *book))
            .collect();
        if carried.len() > 1 {
            tracing::debug!(
                streams = carried.len(),
                code,
                msg,
                "SUBSCRIBE refused; asking again in halves"
            );
            let second = carried.split_off(carried.len() / 2);
            self.connection.enqueue_first(link, second);
            self.connection.enqueue_first(link, carried);
            return ControlFlow::Continue(());
        }
        let Some((stream, book)) = carried.pop() else {
            return ControlFlow::Continue(());
        };
        tracing::warn!(
            stream,
            book,
            code,
            msg,
            "subscription refused; the book stays out of sync and is asked for again later"
        );
        match role {
            Role::Successor => {
                link.refused.push((book, stream));
                ControlFlow::Continue(())
            }
            Role::Primary => {
                self.refuse(vec![(book, stream)]);
                forward(
                    self.events,
                    StreamEvent::Interrupted {
                        books: vec![book],
                        reason: OutOfSyncReason::SubscriptionRefused,
                    },
                )
                .await
            }
        }
    }

    /// Remembers refused streams and when to ask for them again.
    fn refuse(&mut self, streams: Vec<(BookId, String)>) {
        if streams.is_empty() {
            return;
        }
        self.refused.extend(streams);
        self.refused_retry_at
            .get_or_insert_with(|| Instant::now() + REFUSED_RETRY);
    }

    /// Asks again for every refused stream still carried.
    fn retry_refused(&mut self) -> Step {
        self.refused_retry_at = None;
        for (book, stream) in std::mem::take(&mut self.refused) {
            if self.connection.carries(&stream, book) {
                self.connection
                    .enqueue(&mut self.primary, "SUBSCRIBE", stream, Some(book));
            }
        }
        ControlFlow::Continue(())
    }

    /// The fully subscribed successor's overlap has passed: it takes over.
    async fn hand_over(&mut self) -> Step {
        let Some(next) = self.successor.take() else {
            self.handover_at = None;
            return ControlFlow::Continue(());
        };
        tracing::info!(url = %self.connection.config.url, "connection replaced by its successor");
        // Every event the old primary delivered was read before this point; dropping it closes it.
        self.promote(next, OutOfSyncReason::Disconnected).await
    }

    /// Makes `next` the primary: forwards the events it held, then tells the node what changed
    /// for which books (see [`handover_report`]). `reason` is given to books the old primary
    /// carried that `next` has not confirmed yet.
    async fn promote(&mut self, mut next: Link, reason: OutOfSyncReason) -> Step {
        let refused_on_next: HashMap<BookId, String> = next.refused.drain(..).collect();
        let report = handover_report(
            &self.primary.pending_books(),
            &self.refused.keys().copied().collect(),
            &next.pending_books(),
            &refused_on_next.keys().copied().collect(),
        );
        self.primary = next;
        let now = Instant::now();
        (self.handover_at, self.successor_deadline) = (None, None);
        (self.last_data, self.last_heard) = (now, now);
        self.rotate_at = now + self.connection.config.max_lifetime;
        self.shutdown_announced = false;
        self.refused.clear();
        self.refused_retry_at = None;
        self.refuse(refused_on_next.into_iter().collect());
        for event in std::mem::take(&mut self.held) {
            forward(self.events, event).await?;
        }
        if !report.confirmed.is_empty() {
            forward(
                self.events,
                StreamEvent::Subscribed {
                    books: report.confirmed,
                },
            )
            .await?;
        }
        if !report.lost.is_empty() {
            forward(
                self.events,
                StreamEvent::Interrupted {
                    books: report.lost,
                    reason,
                },
            )
            .await?;
        }
        if !report.refused.is_empty() {
            forward(
                self.events,
                StreamEvent::Interrupted {
                    books: report.refused,
                    reason: OutOfSyncReason::SubscriptionRefused,
                },
            )
            .await?;
        }
        ControlFlow::Continue(())
    }

    /// Gives the successor up and plans the next attempt.
    fn abandon_successor(&mut self, detail: &str) -> Step {
        tracing::warn!(
            url = %self.connection.config.url,
            detail,
            "replacement connection failed; retrying later"
        );
        (self.successor, self.handover_at, self.successor_deadline) = (None, None, None);
        self.held.clear();
        self.rotate_at = Instant::now() + self.retry_delay();
        ControlFlow::Continue(())
    }

    fn retry_delay(&self) -> Duration {
        if self.shutdown_announced {
            SHUTDOWN_RETRY
        } else {
            ROTATION_RETRY
        }
    }

    fn start_successor(&mut self) -> Step {
        self.connecting = Some(Box::pin(self.connection.connect()));
        ControlFlow::Continue(())
    }

    fn on_successor_connected(&mut self, connected: Result<Socket, String>) -> Step {
        self.connecting = None;
        match connected {
            Ok(socket) => {
                self.successor = Some(self.connection.link(socket));
                self.successor_deadline = Some(Instant::now() + SUCCESSOR_DEADLINE);
                ControlFlow::Continue(())
            }
            Err(detail) => self.abandon_successor(&detail),
        }
    }

    fn on_command(&mut self, command: Option<ConnectionCommand>) -> Step {
        let Some(command) = command else {
            return ControlFlow::Break(SessionEnd::Shutdown);
        };
        let (method, book) = match &command {
            ConnectionCommand::Subscribe { book, .. } => ("SUBSCRIBE", Some(*book)),
            ConnectionCommand::Unsubscribe { book } => {
                self.refused.remove(book);
                ("UNSUBSCRIBE", None)
            }
        };
        let Some(stream) = self.connection.remember(&command) else {
            return ControlFlow::Continue(());
        };
        if let Some(link) = self.successor.as_mut() {
            self.connection.enqueue(link, method, stream.clone(), book);
        }
        self.connection
            .enqueue(&mut self.primary, method, stream, book);
        ControlFlow::Continue(())
    }

    async fn send_primary(&mut self) -> Step {
        match self.primary.send_next().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(detail) => {
                ControlFlow::Break(SessionEnd::Lost(OutOfSyncReason::Disconnected, detail))
            }
        }
    }

    async fn send_successor(&mut self) -> Step {
        let Some(link) = self.successor.as_mut() else {
            return ControlFlow::Continue(());
        };
        match link.send_next().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(detail) => self.abandon_successor(&detail),
        }
    }

    async fn ping(&mut self) -> Step {
        match self
            .primary
            .ping(self.connection.config.ping_interval)
            .await
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(detail) => {
                ControlFlow::Break(SessionEnd::Lost(OutOfSyncReason::Disconnected, detail))
            }
        }
    }
}

/// Which link of a session a message came from.
#[derive(Debug, Clone, Copy)]
enum Role {
    Primary,
    Successor,
}

/// What the node must be told when a successor takes over.
#[derive(Debug, Default, PartialEq, Eq)]
struct HandoverReport {
    /// Books the node is waiting to hear are subscribed, now confirmed by the successor.
    confirmed: Vec<BookId>,
    /// Books the node believes live that the successor has not confirmed yet (the old primary
    /// closed first): out of sync until the successor confirms them.
    lost: Vec<BookId>,
    /// Books the successor refused that were not refused already.
    refused: Vec<BookId>,
}

/// Compares the old primary with its successor. `old_pending` and `old_refused` are books the
/// node has not been told are live on the old primary (its subscription pending or refused);
/// `new_pending` and `new_refused` the successor's.
fn handover_report(
    old_pending: &HashSet<BookId>,
    old_refused: &HashSet<BookId>,
    new_pending: &HashSet<BookId>,
    new_refused: &HashSet<BookId>,
) -> HandoverReport {
    let unreported = |book: &BookId| old_pending.contains(book) || old_refused.contains(book);
    let mut report = HandoverReport {
        confirmed: old_pending
            .union(old_refused)
            .filter(|book| !new_pending.contains(book) && !new_refused.contains(book))
            .copied()
            .collect(),
        lost: new_pending
            .iter()
            .filter(|book| !unreported(book))
            .copied()
            .collect(),
        refused: new_refused.difference(old_refused).copied().collect(),
    };
    for books in [&mut report.confirmed, &mut report.lost, &mut report.refused] {
        books.sort_unstable();
    }
    report
}

/// What one text message means, before any state is touched.
#[derive(Debug)]
enum Inbound {
    /// An event for the node (a diff, or a book's malformed diff).
    Event(StreamEvent),
    /// The reply to request `id`.
    Reply(u64),
    /// A request was refused.
    Refused {
        id: Option<u64>,
        code: i64,
        msg: String,
    },
    /// The server will close this connection.
    ServerShutdown,
    /// Nothing for us (a stream no longer carried, a message kind we do not use).
    Ignored,
}

/// Reads one text message of a connection carrying `streams`.
///
/// # Errors
/// A message that does not parse as a whole: no book can be told apart, so none can be trusted.
fn read_text(streams: &HashMap<String, BookId>, mut buffer: Vec<u8>) -> Result<Inbound, String> {
    let received_ns = crate::clock::unix_now_ns();
    let message = StreamMessage::parse(&mut buffer).map_err(|error| error.to_string())?;
    Ok(match message {
        StreamMessage::Depth { stream, update } => {
            // A stream we no longer carry (unsubscribed a moment ago): nothing to do.
            let Some(&book) = streams.get(stream) else {
                return Ok(Inbound::Ignored);
            };
            match DiffUpdate::try_from(&update) {
                Ok(update) => Inbound::Event(StreamEvent::Diff {
                    book,
                    update,
                    received_ns,
                }),
                Err(error) => {
                    tracing::warn!(stream, %error, "malformed depth event");
                    Inbound::Event(StreamEvent::Malformed { book })
                }
            }
        }
        StreamMessage::Reply { id, .. } => Inbound::Reply(id),
        StreamMessage::Error { id, error } => Inbound::Refused {
            id,
            code: error.code,
            msg: error.msg,
        },
        StreamMessage::ServerShutdown { .. } => Inbound::ServerShutdown,
        StreamMessage::Other => Inbound::Ignored,
    })
}

/// What a frame of a link amounted to.
enum Received {
    /// A text message, read (or not readable).
    Text(Result<Inbound, String>),
    /// A ping (answered), pong or other control frame.
    Control,
    /// The link is closed or failed.
    Closed(String),
}

/// Handles the transport side of one frame of `link`: answers pings, recognises the end.
async fn receive(
    link: &mut Link,
    frame: Option<Frame>,
    streams: &HashMap<String, BookId>,
) -> Received {
    let message = match frame {
        Some(Ok(message)) => message,
        Some(Err(error)) => return Received::Closed(error.to_string()),
        None => return Received::Closed("closed by the server".into()),
    };
    match message {
        Message::Text(text) => Received::Text(read_text(streams, text.as_bytes().to_vec())),
        // Binance disconnects a client that does not echo its ping in time.
        Message::Ping(payload) => match link.sink.send(Message::Pong(payload)).await {
            Ok(()) => Received::Control,
            Err(error) => Received::Closed(error.to_string()),
        },
        Message::Close(_) => Received::Closed("close frame".into()),
        Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => Received::Control,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

type Frame = Result<Message, tokio_tungstenite::tungstenite::Error>;

/// A replacement connection being opened in the background.
type Connecting = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;

/// One open WebSocket of a connection, with its own paced queue of control messages.
struct Link {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    outbox: VecDeque<Outgoing>,
    /// Sent `SUBSCRIBE`s awaiting their reply, by id.
    awaiting: HashMap<u64, Outgoing>,
    /// Streams the exchange refused on this link while it was a successor, reported when it
    /// takes over.
    refused: Vec<(BookId, String)>,
    next_send: Instant,
    next_ping: Instant,
    pace: Duration,
}

impl Link {
    /// Books whose subscription is queued or sent but not confirmed yet.
    fn pending_books(&self) -> HashSet<BookId> {
        self.awaiting
            .values()
            .chain(&self.outbox)
            .flat_map(|outgoing| &outgoing.subscribes)
            .copied()
            .collect()
    }

    /// Every subscription is answered.
    fn is_subscribed(&self) -> bool {
        self.outbox.is_empty() && self.awaiting.is_empty()
    }

    /// When the next control message may go, if one is queued.
    fn send_due(&self) -> Option<Instant> {
        (!self.outbox.is_empty()).then_some(self.next_send)
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
            self.awaiting.insert(outgoing.id, outgoing);
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

/// Sleeps until `deadline`; never, without one.
/// Sends `event` to the node, waiting while the node's channel is full (the socket is not read
/// meanwhile: back-pressure, see `STREAM_EVENTS_IN_FLIGHT` in the node); ends the session when
/// the node is gone. A free function, so the wait borrows only the sender, not the session.
async fn forward(events: &mpsc::Sender<StreamEvent>, event: StreamEvent) -> Step {
    match events.send(event).await {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(SessionEnd::Shutdown),
    }
}

async fn sleep_at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next frame of an optional link (never, without one).
async fn next_frame(link: &mut Option<Link>) -> Option<Frame> {
    match link.as_mut() {
        Some(link) => link.stream.next().await,
        None => std::future::pending().await,
    }
}

/// The outcome of an optional connect (never, without one).
async fn connecting(connecting: &mut Option<Connecting>) -> Result<Socket, String> {
    match connecting.as_mut() {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(books: &[BookId]) -> HashSet<BookId> {
        books.iter().copied().collect()
    }

    #[test]
    fn a_complete_handover_reports_only_what_the_node_still_waits_for() {
        // Book 1 was still subscribing on the old primary; the successor confirmed it.
        let report = handover_report(&set(&[1]), &set(&[]), &set(&[]), &set(&[]));
        assert_eq!(
            report,
            HandoverReport {
                confirmed: vec![1],
                ..HandoverReport::default()
            }
        );
    }

    #[test]
    fn books_the_successor_has_not_confirmed_when_the_primary_closes_are_lost() {
        // 1 and 2 were live; the successor confirmed 1 only. 3 was pending on both: still
        // pending, so nothing to say yet.
        let report = handover_report(&set(&[3]), &set(&[]), &set(&[2, 3]), &set(&[]));
        assert_eq!(report.lost, vec![2]);
        assert!(report.confirmed.is_empty());
    }

    #[test]
    fn refusals_are_reported_once_and_a_refused_book_the_successor_accepts_is_confirmed() {
        // 4 was refused on the old primary and accepted by the successor; 5 was live and is
        // refused by the successor; 6 was refused on both and is already out of sync.
        let report = handover_report(&set(&[]), &set(&[4, 6]), &set(&[]), &set(&[5, 6]));
        assert_eq!(report.confirmed, vec![4]);
        assert_eq!(report.refused, vec![5]);
        assert!(report.lost.is_empty());
    }

    fn streams() -> HashMap<String, BookId> {
        HashMap::from([("btcusdt@depth".to_owned(), 7)])
    }

    fn read(text: &str) -> Inbound {
        read_text(&streams(), text.as_bytes().to_vec()).expect("parses")
    }

    #[test]
    fn replies_refusals_and_shutdowns_are_told_apart() {
        assert!(matches!(
            read(r#"{"result":null,"id":3}"#),
            Inbound::Reply(3)
        ));
        assert!(matches!(
            read(r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":4}"#),
            Inbound::Refused {
                id: Some(4),
                code: 2,
                ..
            }
        ));
        assert!(matches!(
            read(r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":5}}"#),
            Inbound::ServerShutdown
        ));
        assert!(matches!(
            read(r#"{"e":"serverShutdown","E":5}"#),
            Inbound::ServerShutdown
        ));
    }

    #[test]
    fn events_of_streams_no_longer_carried_are_ignored() {
        let event = r#"{"stream":"ethusdt@depth","data":{"e":"depthUpdate","E":1,"s":"ETHUSDT","U":1,"u":2,"b":[],"a":[]}}"#;
        assert!(matches!(read(event), Inbound::Ignored));
        let carried = event
            .replace("ethusdt", "btcusdt")
            .replace("ETHUSDT", "BTCUSDT");
        assert!(matches!(
            read(&carried),
            Inbound::Event(StreamEvent::Diff { book: 7, .. })
        ));
    }

    #[test]
    fn an_unparseable_message_is_an_error() {
        assert!(read_text(&streams(), b"{\"stream\":".to_vec()).is_err());
    }
}
