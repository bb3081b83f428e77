//! One subscribed stream name on the watcher's side: its subscribers' outboxes, what was sent
//! last (the top-N view, the best bid/ask, or a status), and the rules that turn a new read of
//! the book into messages: a snapshot first and after any jump (another replica, a resync, a
//! gap), diffs of the view in between, a status when the book cannot be served and when it can
//! again, and at most one data message per interval for a conflated stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ubdcc_shm::{Bbo, BookInfo, Level, Side};

use super::message::{self, BookMessage, diff_side};
use super::outbox::{Entry, Outbox, Outgoing, Payload, Pushed, TopicId};
use super::source::Origin;
use super::stream::{StreamKind, StreamName};

/// What a book read gave, for every topic of that book.
pub(crate) enum Observation<'a> {
    /// The top of a synced book, deep enough for every `@bookN` topic of it.
    Book {
        info: &'a BookInfo,
        origin: &'a Origin,
        bids: &'a [Level],
        asks: &'a [Level],
    },
    /// The best bid and ask of a synced book.
    Bbo(&'a Bbo),
    /// The book cannot be served, for this reason.
    Unserved(&'static str),
}

/// What a topic sent last.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    /// Nothing yet.
    Nothing,
    /// A status saying the book cannot be served, for this reason.
    Unserved(&'static str),
    /// Data: the book's state as the subscribers hold it now.
    Data,
}

/// Where fan-out leaves its side effects: outboxes to wake once the pass is done, and how many
/// messages were queued.
#[derive(Default)]
pub(crate) struct FanOut {
    /// Outboxes that went from empty to not empty.
    pub(crate) wake: Vec<Arc<Outbox>>,
    /// Messages queued.
    pub(crate) queued: u64,
}

/// One stream as the watcher serves it.
pub(crate) struct Topic {
    id: TopicId,
    name: StreamName,
    subscribers: Vec<Arc<Outbox>>,
    sent: Sent,
    /// The book version (the watcher's count of marker changes) last turned into messages.
    pub(crate) seen_version: u64,
    /// A conflated stream sends no data message before this.
    next_due: Option<Instant>,
    view: View,
}

/// The state subscribers hold: the top-N view and its origin, or the best bid/ask.
#[derive(Default)]
struct View {
    origin: Option<Origin>,
    bids: Vec<Level>,
    asks: Vec<Level>,
    last_update_id: u64,
    event_time_ms: u64,
    /// When the DCN published the version held (Unix ns).
    published_ns: u64,
    /// The best bid and ask last sent (`@bbo`).
    top: Option<(Option<Level>, Option<Level>)>,
    /// The last `@bbo` message, or the snapshot of the current view once made.
    state: Option<Payload>,
    /// Diff buffers, kept to avoid allocating per message.
    bid_changes: Vec<Level>,
    ask_changes: Vec<Level>,
}

impl Topic {
    /// A topic nobody has been sent anything on.
    pub(crate) fn new(id: TopicId, name: StreamName) -> Self {
        Self {
            id,
            name,
            subscribers: Vec::new(),
            sent: Sent::Nothing,
            seen_version: 0,
            next_due: None,
            view: View::default(),
        }
    }

    /// The stream name.
    pub(crate) fn name(&self) -> &StreamName {
        &self.name
    }

    /// The `N` of `@bookN`, `None` for `@bbo`.
    pub(crate) fn depth(&self) -> Option<u32> {
        match self.name.kind() {
            StreamKind::Book(depth) => Some(depth),
            StreamKind::Bbo => None,
        }
    }

    /// `true` when nobody is subscribed any more.
    pub(crate) fn is_unused(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// `true` when a data message may go out now (a conflated stream sends one per interval).
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.next_due.is_none_or(|due| now >= due)
    }

    /// Adds a subscriber and queues the state the others hold, so it continues with them.
    pub(crate) fn join(
        &mut self,
        outbox: Arc<Outbox>,
        now: Instant,
        cut_after: Duration,
        fan: &mut FanOut,
    ) {
        let current = match &self.sent {
            Sent::Nothing => None,
            Sent::Unserved(reason) => Some((Entry::Status, status(&self.name, Some(reason)))),
            Sent::Data => Some((
                Entry::State,
                Outgoing {
                    payload: self.view.state(&self.name),
                    published_ns: self.view.published_ns,
                },
            )),
        };
        if let Some((entry, message)) = current {
            let mut snapshot = || message.payload.clone();
            queue_one(
                &outbox,
                self.id,
                entry,
                &message,
                &mut snapshot,
                now,
                cut_after,
                fan,
            );
        }
        self.subscribers.push(outbox);
    }

    /// Removes a subscriber.
    pub(crate) fn leave(&mut self, outbox: &Arc<Outbox>) {
        self.subscribers.retain(|o| !Arc::ptr_eq(o, outbox));
        outbox.forget(self.id);
    }

    /// Turns a new read of the book into messages for every subscriber.
    pub(crate) fn observe(
        &mut self,
        observation: &Observation<'_>,
        now: Instant,
        cut_after: Duration,
        fan: &mut FanOut,
    ) {
        let mut out: Vec<(Entry, Outgoing)> = Vec::new();
        match observation {
            Observation::Unserved(reason) => {
                if self.sent != Sent::Unserved(reason) {
                    out.push((Entry::Status, status(&self.name, Some(reason))));
                    self.sent = Sent::Unserved(reason);
                    self.view = View::default();
                }
            }
            Observation::Book { .. } | Observation::Bbo(_) => {
                if !self.is_due(now) {
                    return;
                }
                if matches!(self.sent, Sent::Unserved(_)) {
                    out.push((Entry::Status, status(&self.name, None)));
                }
                let data = match (observation, self.name.kind()) {
                    (
                        Observation::Book {
                            info,
                            origin,
                            bids,
                            asks,
                        },
                        StreamKind::Book(depth),
                    ) => {
                        let depth = depth as usize;
                        let (bids, asks) = (
                            &bids[..bids.len().min(depth)],
                            &asks[..asks.len().min(depth)],
                        );
                        self.view.book(
                            &self.name,
                            info,
                            origin,
                            bids,
                            asks,
                            self.sent == Sent::Data,
                        )
                    }
                    (Observation::Bbo(bbo), StreamKind::Bbo) => self.view.bbo(&self.name, bbo),
                    _ => None,
                };
                self.sent = Sent::Data;
                if let Some((entry, payload)) = data {
                    let published_ns = self.view.published_ns;
                    out.push((
                        entry,
                        Outgoing {
                            payload,
                            published_ns,
                        },
                    ));
                    if let Some(interval) = self.name.interval() {
                        self.next_due = Some(now + interval);
                    }
                }
            }
        }
        for (entry, message) in out {
            self.publish(entry, &message, now, cut_after, fan);
        }
    }

    fn publish(
        &mut self,
        entry: Entry,
        message: &Outgoing,
        now: Instant,
        cut_after: Duration,
        fan: &mut FanOut,
    ) {
        let (id, name, view) = (self.id, &self.name, &mut self.view);
        let mut snapshot = || view.state(name);
        self.subscribers.retain(|outbox| {
            queue_one(
                outbox,
                id,
                entry,
                message,
                &mut snapshot,
                now,
                cut_after,
                fan,
            )
        });
    }
}

/// A status message of `name` (it carries no version).
fn status(name: &StreamName, reason: Option<&str>) -> Outgoing {
    Outgoing {
        payload: message::status(name.text(), reason),
        published_ns: 0,
    }
}

/// Queues one message for one subscriber; `false` when the subscriber is cut (and dropped).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per caller; a struct would only rename them"
)]
fn queue_one(
    outbox: &Arc<Outbox>,
    topic: TopicId,
    entry: Entry,
    message: &Outgoing,
    snapshot: &mut dyn FnMut() -> Payload,
    now: Instant,
    cut_after: Duration,
    fan: &mut FanOut,
) -> bool {
    match outbox.push(topic, entry, message, snapshot, now, cut_after) {
        Pushed::First => {
            fan.queued += 1;
            fan.wake.push(Arc::clone(outbox));
            true
        }
        Pushed::More => {
            fan.queued += 1;
            true
        }
        // Its task sees the cut when woken, says why to the client and counts it.
        Pushed::Cut => {
            outbox.wake();
            false
        }
    }
}

impl View {
    /// The message a new read of the top gives: a snapshot when the subscribers hold nothing
    /// continuous with it, else the diff (`None` when the view did not change).
    fn book(
        &mut self,
        name: &StreamName,
        info: &BookInfo,
        origin: &Origin,
        bids: &[Level],
        asks: &[Level],
        holding: bool,
    ) -> Option<(Entry, Payload)> {
        let continued = holding
            && self
                .origin
                .as_ref()
                .is_some_and(|held| held.is_continued_by(origin))
            && info.last_update_id >= self.last_update_id;
        self.origin = Some(origin.clone());
        self.last_update_id = info.last_update_id;
        self.event_time_ms = info.event_time_ms;
        self.published_ns = info.publish_time_ns;
        if !continued {
            self.bids.clear();
            self.bids.extend_from_slice(bids);
            self.asks.clear();
            self.asks.extend_from_slice(asks);
            self.state = None;
            return Some((Entry::State, self.state(name)));
        }
        diff_side(Side::Bids, &self.bids, bids, &mut self.bid_changes);
        diff_side(Side::Asks, &self.asks, asks, &mut self.ask_changes);
        if self.bid_changes.is_empty() && self.ask_changes.is_empty() {
            return None;
        }
        self.bids.clear();
        self.bids.extend_from_slice(bids);
        self.asks.clear();
        self.asks.extend_from_slice(asks);
        self.state = None;
        let diff = BookMessage {
            snapshot: false,
            bids: &self.bid_changes,
            asks: &self.ask_changes,
            last_update_id: self.last_update_id,
            event_time_ms: self.event_time_ms,
        };
        Some((Entry::Diff, message::book(name.text(), &diff)))
    }

    /// The `@bbo` message of a new read, `None` when the best bid and ask did not change.
    fn bbo(&mut self, name: &StreamName, bbo: &Bbo) -> Option<(Entry, Payload)> {
        let top = (bbo.bid, bbo.ask);
        if self.top == Some(top) {
            return None;
        }
        self.top = Some(top);
        self.published_ns = bbo.publish_time_ns;
        let payload = message::bbo(name.text(), bbo);
        self.state = Some(payload.clone());
        Some((Entry::State, payload))
    }

    /// The whole state subscribers hold: the last `@bbo` message, or a snapshot of the view
    /// (made once per version, shared by every subscriber that needs it).
    fn state(&mut self, name: &StreamName) -> Payload {
        if let Some(state) = &self.state {
            return state.clone();
        }
        let snapshot = BookMessage {
            snapshot: true,
            bids: &self.bids,
            asks: &self.asks,
            last_update_id: self.last_update_id,
            event_time_ms: self.event_time_ms,
        };
        let payload = message::book(name.text(), &snapshot);
        self.state = Some(payload.clone());
        payload
    }
}
