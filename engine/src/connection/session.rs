//! One connected period of a [`super::StreamConnection`]: a primary [`Link`] and, during a
//! handover, a successor. [`Session::run`] is one `select!` whose every arm calls one method.

use super::*;

/// One connected period: a primary link, and during a handover a successor that takes over
/// before the primary closes (make-before-break).
pub(super) struct Session<'a> {
    pub(super) connection: &'a mut StreamConnection,
    pub(super) events: &'a mpsc::Sender<StreamEvent>,
    pub(super) primary: Link,
    /// A successor being connected.
    pub(super) connecting: Option<Connecting>,
    /// A connected successor, subscribing.
    pub(super) successor: Option<Link>,
    /// The successor's events, held until it takes over so they follow the primary's.
    pub(super) held: Vec<StreamEvent>,
    /// When the fully subscribed successor takes over.
    pub(super) handover_at: Option<Instant>,
    /// A successor not fully subscribed by then is given up (and tried again later).
    pub(super) successor_deadline: Option<Instant>,
    /// When to open the next successor (the primary's end of life, or a retry).
    pub(super) rotate_at: Instant,
    /// The server announced that it will close the primary (`serverShutdown`).
    pub(super) shutdown_announced: bool,
    /// Books whose stream the exchange refused on the primary, with the stream: out of sync,
    /// asked for again at `refused_retry_at`.
    pub(super) refused: HashMap<BookId, String>,
    pub(super) refused_retry_at: Option<Instant>,
    /// The primary's last data message: its silence watchdog.
    pub(super) last_data: Instant,
    /// The primary's last frame of any kind, pongs to our pings included: a connection that
    /// answers nothing is dead.
    pub(super) last_heard: Instant,
}

impl<'a> Session<'a> {
    pub(super) fn new(
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
    pub(super) async fn run(
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

    pub(super) async fn on_primary_frame(&mut self, frame: Option<Frame>) -> Step {
        let received = receive(
            &mut self.primary,
            frame,
            &self.connection.streams,
            self.connection.config.tee.as_ref(),
        )
        .await;
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

    pub(super) async fn on_primary_text(&mut self, inbound: Inbound) -> Step {
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
    pub(super) fn on_server_shutdown(&mut self) {
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
    pub(super) async fn on_primary_closed(&mut self, detail: String) -> Step {
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

    pub(super) async fn on_successor_frame(&mut self, frame: Option<Frame>) -> Step {
        let Some(link) = self.successor.as_mut() else {
            return ControlFlow::Continue(());
        };
        let inbound = match receive(
            link,
            frame,
            &self.connection.streams,
            self.connection.config.tee.as_ref(),
        )
        .await
        {
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
    pub(super) fn arm_handover(&mut self) {
        if self.handover_at.is_none() && self.successor.as_ref().is_some_and(Link::is_subscribed) {
            self.handover_at = Some(Instant::now() + HANDOVER_OVERLAP);
        }
    }

    /// A `SUBSCRIBE` was refused. One naming several streams is asked for again in halves, so
    /// that in the end only the refused streams are refused; a refused single stream puts its
    /// book out of sync (on the primary now, on a successor when it takes over).
    pub(super) async fn on_refused(
        &mut self,
        role: Role,
        id: Option<u64>,
        code: i64,
        msg: &str,
    ) -> Step {
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
    pub(super) fn refuse(&mut self, streams: Vec<(BookId, String)>) {
        if streams.is_empty() {
            return;
        }
        self.refused.extend(streams);
        self.refused_retry_at
            .get_or_insert_with(|| Instant::now() + REFUSED_RETRY);
    }

    /// Asks again for every refused stream still carried.
    pub(super) fn retry_refused(&mut self) -> Step {
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
    pub(super) async fn hand_over(&mut self) -> Step {
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
    pub(super) async fn promote(&mut self, mut next: Link, reason: OutOfSyncReason) -> Step {
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
        for mut event in std::mem::take(&mut self.held) {
            if let StreamEvent::Diff { replayed, .. } = &mut event {
                *replayed = true;
            }
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
    pub(super) fn abandon_successor(&mut self, detail: &str) -> Step {
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

    pub(super) fn retry_delay(&self) -> Duration {
        if self.shutdown_announced {
            SHUTDOWN_RETRY
        } else {
            ROTATION_RETRY
        }
    }

    pub(super) fn start_successor(&mut self) -> Step {
        self.connecting = Some(Box::pin(self.connection.connect()));
        ControlFlow::Continue(())
    }

    pub(super) fn on_successor_connected(&mut self, connected: Result<Socket, String>) -> Step {
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

    pub(super) fn on_command(&mut self, command: Option<ConnectionCommand>) -> Step {
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

    pub(super) async fn send_primary(&mut self) -> Step {
        match self.primary.send_next().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(detail) => {
                ControlFlow::Break(SessionEnd::Lost(OutOfSyncReason::Disconnected, detail))
            }
        }
    }

    pub(super) async fn send_successor(&mut self) -> Step {
        let Some(link) = self.successor.as_mut() else {
            return ControlFlow::Continue(());
        };
        match link.send_next().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(detail) => self.abandon_successor(&detail),
        }
    }

    pub(super) async fn ping(&mut self) -> Step {
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
pub(super) enum Role {
    Primary,
    Successor,
}

/// What the node must be told when a successor takes over.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct HandoverReport {
    /// Books the node is waiting to hear are subscribed, now confirmed by the successor.
    pub(super) confirmed: Vec<BookId>,
    /// Books the node believes live that the successor has not confirmed yet (the old primary
    /// closed first): out of sync until the successor confirms them.
    pub(super) lost: Vec<BookId>,
    /// Books the successor refused that were not refused already.
    pub(super) refused: Vec<BookId>,
}

/// Compares the old primary with its successor. `old_pending` and `old_refused` are books the
/// node has not been told are live on the old primary (its subscription pending or refused);
/// `new_pending` and `new_refused` the successor's.
pub(super) fn handover_report(
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
