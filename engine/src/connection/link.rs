//! One WebSocket of a [`super::StreamConnection`]: the socket's two halves, the `SUBSCRIBE`
//! messages it still has to send (paced), the streams it carries and which of them the exchange
//! confirmed; and the reading of one text frame ([`read_text`], pure).

use super::*;

/// What one text message means, before any state is touched.
#[derive(Debug)]
pub(super) enum Inbound {
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

/// Reads one text message of a connection carrying `streams`, received at `received_ns` (Unix
/// ns of the socket read that completed it, see `stamp`).
///
/// # Errors
/// A message that does not parse as a whole: no book can be told apart, so none can be trusted.
pub(super) fn read_text(
    streams: &HashMap<String, BookId>,
    mut buffer: Vec<u8>,
    received_ns: u64,
) -> Result<Inbound, String> {
    let message = StreamMessage::parse(&mut buffer).map_err(|error| error.to_string())?;
    Ok(match message {
        StreamMessage::Depth { stream, update } => {
            // A stream we no longer carry (unsubscribed a moment ago): nothing to do.
            let Some(&book) = streams.get(stream) else {
                return Ok(Inbound::Ignored);
            };
            match DiffUpdate::try_from(update) {
                Ok(update) => Inbound::Event(StreamEvent::Diff {
                    book,
                    update,
                    received_ns,
                    replayed: false,
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
pub(super) enum Received {
    /// A text message, read (or not readable).
    Text(Result<Inbound, String>),
    /// A ping (answered), pong or other control frame.
    Control,
    /// The link is closed or failed.
    Closed(String),
}

/// Handles the transport side of one frame of `link`: answers pings, recognises the end, tees
/// text frames to the recorder (if any).
pub(super) async fn receive(
    link: &mut Link,
    frame: Option<Frame>,
    streams: &HashMap<String, BookId>,
    tee: Option<&crate::record::FrameTee>,
) -> Received {
    let message = match frame {
        Some(Ok(message)) => message,
        Some(Err(error)) => return Received::Closed(error.to_string()),
        None => return Received::Closed("closed by the server".into()),
    };
    match message {
        Message::Text(text) => {
            // Recording costs a reference to the received bytes and a non-blocking queue push.
            if let Some(tee) = tee {
                tee.frame(&text);
            }
            Received::Text(read_text(
                streams,
                text.as_bytes().to_vec(),
                link.received.last_read_ns(),
            ))
        }
        // Binance disconnects a client that does not echo its ping in time.
        Message::Ping(payload) => match link.sink.send(Message::Pong(payload)).await {
            Ok(()) => Received::Control,
            Err(error) => Received::Closed(error.to_string()),
        },
        Message::Close(_) => Received::Closed("close frame".into()),
        Message::Pong(_) | Message::Binary(_) | Message::Frame(_) => Received::Control,
    }
}

pub(super) type Socket = tokio_tungstenite::WebSocketStream<
    tokio_tungstenite::MaybeTlsStream<super::stamp::Stamped<tokio::net::TcpStream>>,
>;

pub(super) type Frame = Result<Message, tokio_tungstenite::tungstenite::Error>;

/// A replacement connection being opened in the background.
pub(super) type Connecting = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;

/// One open WebSocket of a connection, with its own paced queue of control messages.
pub(super) struct Link {
    pub(super) sink: SplitSink<Socket, Message>,
    pub(super) stream: SplitStream<Socket>,
    /// When `stream`'s socket last read data: the receive time of the frames decoded since.
    pub(super) received: super::stamp::ReadStamp,
    pub(super) outbox: VecDeque<Outgoing>,
    /// Sent `SUBSCRIBE`s awaiting their reply, by id.
    pub(super) awaiting: HashMap<u64, Outgoing>,
    /// Streams the exchange refused on this link while it was a successor, reported when it
    /// takes over.
    pub(super) refused: Vec<(BookId, String)>,
    pub(super) next_send: Instant,
    pub(super) next_ping: Instant,
    pub(super) pace: Duration,
}

impl Link {
    /// Books whose subscription is queued or sent but not confirmed yet.
    pub(super) fn pending_books(&self) -> HashSet<BookId> {
        self.awaiting
            .values()
            .chain(&self.outbox)
            .flat_map(|outgoing| &outgoing.subscribes)
            .copied()
            .collect()
    }

    /// Every subscription is answered.
    pub(super) fn is_subscribed(&self) -> bool {
        self.outbox.is_empty() && self.awaiting.is_empty()
    }

    /// When the next control message may go, if one is queued.
    pub(super) fn send_due(&self) -> Option<Instant> {
        (!self.outbox.is_empty()).then_some(self.next_send)
    }

    /// Sends the next control message and paces the one after it.
    pub(super) async fn send_next(&mut self) -> Result<(), String> {
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

    pub(super) async fn ping(&mut self, interval: Duration) -> Result<(), String> {
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
pub(super) async fn forward(events: &mpsc::Sender<StreamEvent>, event: StreamEvent) -> Step {
    match events.send(event).await {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(SessionEnd::Shutdown),
    }
}

pub(super) async fn sleep_at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next frame of an optional link (never, without one).
pub(super) async fn next_frame(link: &mut Option<Link>) -> Option<Frame> {
    match link.as_mut() {
        Some(link) => link.stream.next().await,
        None => std::future::pending().await,
    }
}

/// The outcome of an optional connect (never, without one).
pub(super) async fn connecting(connecting: &mut Option<Connecting>) -> Result<Socket, String> {
    match connecting.as_mut() {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}
