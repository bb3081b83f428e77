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
//! [`read_text`] and [`handover_report`] are pure, and tested below. Files: this one (the
//! connection's lifetime, reconnects, the messages it exchanges with the node), `session`
//! (one connected period and its handover), `link` (one socket, its pending `SUBSCRIBE`s and the
//! reading of a frame).

mod link;
mod session;
mod stamp;

use link::*;
use session::*;
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
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
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

/// Bytes a stream socket reads at once. Every event of a read is stamped with that read's time
/// (`stamp`) and then waits for the events before it in the read, and for the reads of the
/// other connections the loop takes turns with: at 1 000 books a Binance `@100ms` tick puts
/// ~1 000 events in the sockets at once, and 16 KiB reads (~50 events) left the last of them
/// waiting ~5 ms (receive → publish p99 4.5–5.1 ms, `benches/dcn_load.py`); 4 KiB reads (~13
/// events) cut that to 1.5 ms for ~4 read syscalls where there was one (~1 µs each, a few per
/// tick per connection). Smaller still buys little: the loop's own queue holds 16 events. Also
/// why not tungstenite's default of 128 KiB: it zero-fills its read buffer up to this size
/// before every read, which was 2-3 % of a DCN's time at 1 000 books and swept a sixteenth of the
/// core's L2 cache, where the books are. A longer message still grows the buffer as it needs.
const READ_BUFFER_BYTES: usize = 4 * 1024;

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
        /// A successor connection held it and replays it after its predecessor's events (see
        /// the module doc): it may repeat an event the book applied already.
        replayed: bool,
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
        /// The book is recorded: its frames pass the tee of a node that records only some
        /// books (`crate::record::RecordScope::Chosen`).
        record: bool,
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
    /// Where received text frames are teed to, when the node records (`crate::record`).
    pub(crate) tee: Option<crate::record::FrameTee>,
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

/// Opens the stream endpoint's WebSocket over a TCP socket whose reads are stamped.
async fn open_socket(url: String) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::error::UrlError;
    let request = url.as_str().into_client_request()?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or(tokio_tungstenite::tungstenite::Error::Url(
            UrlError::NoHostName,
        ))?;
    // `[::1]` in a URL is `::1` to the resolver.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .or(match uri.scheme_str() {
            Some("wss") => Some(443),
            Some("ws") => Some(80),
            _ => None,
        })
        .ok_or(tokio_tungstenite::tungstenite::Error::Url(
            UrlError::UnsupportedUrlScheme,
        ))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (socket, _) = tokio_tungstenite::client_async_tls_with_config(
        request,
        stamp::Stamped::new(tcp),
        Some(config),
        None,
    )
    .await?;
    Ok(socket)
}

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
            ConnectionCommand::Subscribe {
                book,
                stream,
                record,
            } => {
                self.streams.insert(stream.clone(), *book);
                if let Some(tee) = &mut self.config.tee {
                    tee.subscribed(stream, *record);
                }
                Some(stream.clone())
            }
            ConnectionCommand::Unsubscribe { book } => {
                let stream = self
                    .streams
                    .iter()
                    .find(|(_, b)| *b == book)
                    .map(|(s, _)| s.clone())?;
                self.streams.remove(&stream);
                if let Some(tee) = &mut self.config.tee {
                    tee.unsubscribed(&stream);
                }
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

    /// Connects to the stream endpoint: TCP (its reads stamped, see `stamp`), TLS and the
    /// WebSocket handshake.
    fn connect(&self) -> impl Future<Output = Result<Socket, String>> + Send + 'static {
        let url = self.config.url.clone();
        async move {
            match timeout(CONNECT_TIMEOUT, open_socket(url)).await {
                Ok(Ok(socket)) => Ok(socket),
                Ok(Err(error)) => Err(format!("connect: {error}")),
                Err(_) => Err("connect timed out".into()),
            }
        }
    }

    /// A link over `socket` with every stream of the connection queued for `SUBSCRIBE`.
    fn link(&mut self, socket: Socket) -> Link {
        let received = socket.get_ref().get_ref().stamp();
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
            received,
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
        read_text(&streams(), text.as_bytes().to_vec(), 1).expect("parses")
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
        assert!(read_text(&streams(), b"{\"stream\":".to_vec(), 1).is_err());
    }
}
