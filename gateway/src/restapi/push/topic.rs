//! One subscribed stream name on the watcher's side: its subscribers' outboxes, what was sent
//! last (the top-N view, the best bid/ask, or a status), and the rules that turn a new read of
//! the book into messages: a snapshot first and after any jump (another replica, a resync, a
//! gap), diffs of the view in between, a status when the book cannot be served and when it can
//! again, and at most one data message per interval for a conflated stream.
//!
//! A topic is one distinct name, exactly as subscribed (`@book7`, `@book20@150ms`): its
//! messages carry that name and are serialised once for all its subscribers.
//!
//! # The top-N cut
//! The watcher reads a book once per change, as deep as its deepest due topic; each `@bookN`
//! topic takes the first N levels of that read and diffs them against the N levels its
//! subscribers hold (one merge of two sorted runs, O(N)). A level that enters the top N comes
//! with its quantity, one pushed below the N-th comes with quantity 0, so a client that keeps
//! the best N of what it applied holds exactly the top N.
//!
//! # Conflation at the interval asked
//! A conflated topic sends no data message before `interval` has passed since its last one; the
//! watcher then reads the book again for it (it looks at least every
//! [`super::stream::MIN_INTERVAL`] while a conflated stream is subscribed), and the topic diffs
//! the current top N against what its subscribers hold: latest state wins, and the diff is never
//! larger than the view (nothing is accumulated between messages). A jump (resync, gap,
//! failover) in between gives a snapshot, as on a plain stream.
//!
//! A book may be shallower than a `@bookN` view (progressive depth: it is complete to
//! [`BookInfo::depth`] levels only, which REST reports as `partial_depth`). Every `@bookN`
//! message carries the book's `depth`, and the view starts over with a snapshot whenever
//! `min(depth, N)` changes, so a deepening book never shows as ordinary changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ubdcc_shm::{Bbo, BookInfo, Level, Side};

use super::message::{self, BboSource, BookMessage, diff_side};
use super::outbox::{Entry, Outbox, Outgoing, Payload, Pushed, TopicId};
use super::source::{Origin, Replica};
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
    /// The best bid and ask of a synced book, and the replica they came from.
    Bbo { bbo: &'a Bbo, replica: &'a Replica },
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
/// messages were queued; and the snapshot bodies made from the book looked at now, shared
/// between its names. One `FanOut` lives for one pass; [`FanOut::next_book`] forgets the bodies
/// before each book.
#[derive(Default)]
pub(crate) struct FanOut {
    /// Outboxes that went from empty to not empty.
    pub(crate) wake: Vec<Arc<Outbox>>,
    /// Messages queued.
    pub(crate) queued: u64,
    /// Snapshot `data` bodies of the book looked at now.
    bodies: SnapshotBodies,
}

impl FanOut {
    /// Forgets the snapshot bodies of the book looked at before (keeping their map's room): the
    /// next topics served hold another read, of another book.
    pub(crate) fn next_book(&mut self) {
        self.bodies.0.clear();
    }
}

/// The snapshot `data` bodies made from one read of one book, per N. A pass reads each book
/// once, and every `@bookN` topic of that book that sends a snapshot in the pass holds the
/// first N levels of that read, so their snapshots differ only in the name: the body is
/// serialised once per N and copied behind each name ([`message::wrap`]). Names of distinct N
/// share nothing. Measured (release, one busy book, 1 048 `@book1000@<n>ms` names, the
/// view-level budget's most): a pass where every name sends a snapshot took 248 ms serialising
/// each, 32 ms sharing the body (a pass of diffs: 9 ms;
/// `watcher::tests::worst_pass_under_the_view_level_budget`). Names of distinct books or
/// distinct N share nothing, so the worst pass under the budget (2²⁰ levels, e.g. spread over
/// many busy books) serialises every snapshot: about the unshared 248 ms.
#[derive(Default)]
struct SnapshotBodies(HashMap<u32, Arc<[u8]>>);

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

/// A read of a book's top for one `@bookN` view.
struct Top<'a> {
    info: &'a BookInfo,
    origin: &'a Origin,
    bids: &'a [Level],
    asks: &'a [Level],
    /// `min(book depth, N)`: how deep the view is complete.
    served: u32,
}

/// The state subscribers hold: the top-N view and its origin, or the best bid/ask.
#[derive(Default)]
struct View {
    origin: Option<Origin>,
    /// The book's depth (levels it is complete to) as last sent.
    book_depth: u32,
    /// `min(book_depth, N)` of the view held.
    served: u32,
    bids: Vec<Level>,
    asks: Vec<Level>,
    last_update_id: u64,
    event_time_ms: u64,
    /// When the DCN published the version held (Unix ns).
    published_ns: u64,
    /// The best bid and ask last sent (`@bbo`).
    top: Option<(Option<Level>, Option<Level>)>,
    /// The replica the last `@bbo` message came from.
    replica: Option<Replica>,
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
                    payload: self.view.state(&self.name, None),
                    published_ns: self.view.published_ns,
                },
            )),
        };
        if let Some((entry, message)) = current {
            let mut snapshot = || message.payload.clone();
            let FanOut { wake, queued, .. } = fan;
            queue_one(
                &outbox,
                self.id,
                entry,
                &message,
                &mut snapshot,
                now,
                cut_after,
                (wake, queued),
            );
        }
        self.subscribers.push(outbox);
    }

    /// Starts over after the watcher failed mid-pass: tells every subscriber the stream is out
    /// of sync for `reason`, and forgets what was sent, so the next read sends full state.
    pub(crate) fn restart(
        &mut self,
        reason: &'static str,
        now: Instant,
        cut_after: Duration,
        fan: &mut FanOut,
    ) {
        self.view = View::default();
        self.next_due = None;
        self.seen_version = 0;
        if self.sent != Sent::Unserved(reason) {
            self.sent = Sent::Unserved(reason);
            let message = status(&self.name, Some(reason));
            self.publish(Entry::Status, &message, now, cut_after, fan);
        }
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
            Observation::Book { .. } | Observation::Bbo { .. } => {
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
                        let levels = depth as usize;
                        let (bids, asks) = (
                            &bids[..bids.len().min(levels)],
                            &asks[..asks.len().min(levels)],
                        );
                        let read = Top {
                            info,
                            origin,
                            bids,
                            asks,
                            served: info.depth.min(depth),
                        };
                        let holding = self.sent == Sent::Data;
                        self.view.book(&self.name, &read, holding, &mut fan.bodies)
                    }
                    (Observation::Bbo { bbo, replica }, StreamKind::Bbo) => {
                        self.view.bbo(&self.name, bbo, replica)
                    }
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
        let FanOut {
            wake,
            queued,
            bodies,
        } = fan;
        let mut snapshot = || view.state(name, Some(&mut *bodies));
        self.subscribers.retain(|outbox| {
            queue_one(
                outbox,
                id,
                entry,
                message,
                &mut snapshot,
                now,
                cut_after,
                (&mut *wake, &mut *queued),
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
    (wake, queued): (&mut Vec<Arc<Outbox>>, &mut u64),
) -> bool {
    match outbox.push(topic, entry, message, snapshot, now, cut_after) {
        Pushed::First => {
            *queued += 1;
            wake.push(Arc::clone(outbox));
            true
        }
        Pushed::More => {
            *queued += 1;
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
    /// A view that deepened or got shallower (`served` changed) starts over too: its new
    /// levels are not changes of the market.
    fn book(
        &mut self,
        name: &StreamName,
        read: &Top<'_>,
        holding: bool,
        bodies: &mut SnapshotBodies,
    ) -> Option<(Entry, Payload)> {
        let Top {
            info,
            origin,
            bids,
            asks,
            served,
        } = *read;
        let continued = holding
            && self
                .origin
                .as_ref()
                .is_some_and(|held| held.is_continued_by(origin))
            && info.last_update_id >= self.last_update_id
            && self.served == served;
        self.origin = Some(origin.clone());
        self.served = served;
        self.book_depth = info.depth;
        self.last_update_id = info.last_update_id;
        self.event_time_ms = info.event_time_ms;
        self.published_ns = info.publish_time_ns;
        if !continued {
            self.bids.clear();
            self.bids.extend_from_slice(bids);
            self.asks.clear();
            self.asks.extend_from_slice(asks);
            self.state = None;
            return Some((Entry::State, self.state(name, Some(bodies))));
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
            depth: self.book_depth,
        };
        Some((Entry::Diff, message::book(name.text(), &diff)))
    }

    /// The `@bbo` message of a new read, `None` when the best bid and ask did not change. The
    /// first message from another replica than the last one says so (its `u` may be lower);
    /// a new subscriber's copy of it does not (it has no earlier `u`).
    fn bbo(&mut self, name: &StreamName, bbo: &Bbo, replica: &Replica) -> Option<(Entry, Payload)> {
        let top = (bbo.bid, bbo.ask);
        if self.top == Some(top) {
            return None;
        }
        self.top = Some(top);
        self.published_ns = bbo.publish_time_ns;
        let switched = self.replica.as_ref().is_some_and(|held| held != replica);
        self.replica = Some(replica.clone());
        let state = message::bbo(name.text(), bbo, BboSource::SameReplica);
        self.state = Some(state.clone());
        if !switched {
            return Some((Entry::State, state));
        }
        Some((
            Entry::State,
            message::bbo(name.text(), bbo, BboSource::NewReplica),
        ))
    }

    /// The whole state subscribers hold: the last `@bbo` message, or a snapshot of the view
    /// (made once per version, shared by every subscriber that needs it). With `bodies`, the
    /// view holds this pass's read of its book, the one `bodies` were made from, and the
    /// snapshot's body is shared with the other names of that book and N ([`SnapshotBodies`]).
    fn state(&mut self, name: &StreamName, bodies: Option<&mut SnapshotBodies>) -> Payload {
        if let Some(state) = &self.state {
            return state.clone();
        }
        let snapshot = BookMessage {
            snapshot: true,
            bids: &self.bids,
            asks: &self.asks,
            last_update_id: self.last_update_id,
            event_time_ms: self.event_time_ms,
            depth: self.book_depth,
        };
        let payload = match (bodies, name.kind()) {
            (Some(bodies), StreamKind::Book(depth)) => {
                let body = bodies
                    .0
                    .entry(depth)
                    .or_insert_with(|| message::book_data(&snapshot).into());
                message::wrap(name.text(), body)
            }
            _ => message::book(name.text(), &snapshot),
        };
        self.state = Some(payload.clone());
        payload
    }
}

#[cfg(test)]
mod tests {
    use ubdcc_shm::{BookStatus, Freshness};

    use super::*;

    fn info(update: u64, depth: u32) -> BookInfo {
        BookInfo {
            status: BookStatus::Synced,
            last_update_id: update,
            event_time_ms: 1,
            receive_time_ns: 0,
            publish_time_ns: 0,
            bid_count: 0,
            ask_count: 0,
            resyncs: 0,
            gaps: 0,
            depth,
            updates: update,
            generation: 1,
            changes: update,
            freshness: Freshness::empty(),
        }
    }

    fn origin(updates: u64) -> Origin {
        Origin {
            dcn: "dcn-1".into(),
            generation: 1,
            resyncs: 0,
            gaps: 0,
            updates,
        }
    }

    /// Bids 10 000, 9 999, … of `count` levels.
    fn bids(count: u32) -> Vec<Level> {
        (0..count)
            .map(|i| Level {
                price: 10_000.0 - f64::from(i),
                quantity: 1.0,
            })
            .collect()
    }

    /// Observes a book of `depth` (holding `depth` bids) at `update`; the message it gave.
    /// Lets `topic` observe `observation` (a conflation interval long past); the messages its
    /// subscriber's `outbox` then holds, concatenated.
    fn delivered(topic: &mut Topic, outbox: &Arc<Outbox>, observation: &Observation) -> String {
        let mut fan = FanOut::default();
        topic.observe(
            observation,
            Instant::now(),
            Duration::from_secs(3600),
            &mut fan,
        );
        let mut out = Vec::new();
        outbox.take(&mut out, usize::MAX, Instant::now()).unwrap();
        out.iter().map(|m| m.payload.as_str().to_owned()).collect()
    }

    fn observe(topic: &mut Topic, outbox: &Arc<Outbox>, update: u64, depth: u32) -> String {
        let (info, origin, bids) = (info(update, depth), origin(update), bids(depth));
        let observation = Observation::Book {
            info: &info,
            origin: &origin,
            bids: &bids,
            asks: &[],
        };
        delivered(topic, outbox, &observation)
    }

    fn subscribed(name: &str) -> (Topic, Arc<Outbox>) {
        let mut topic = Topic::new(1, StreamName::parse(name).unwrap());
        let outbox = Arc::new(Outbox::default());
        let mut fan = FanOut::default();
        topic.join(
            Arc::clone(&outbox),
            Instant::now(),
            Duration::from_secs(3600),
            &mut fan,
        );
        (topic, outbox)
    }

    #[test]
    fn a_book_shallower_than_the_view_says_so_and_deepening_starts_a_new_snapshot() {
        let (mut topic, outbox) = subscribed("binance.com:BTCUSDT@book20");
        let first = observe(&mut topic, &outbox, 1, 5);
        assert!(first.contains(r#""snapshot":true"#), "{first}");
        assert!(first.contains(r#""depth":5"#), "{first}");
        // Deeper levels appearing are not market changes: a new snapshot, not a diff.
        let deeper = observe(&mut topic, &outbox, 2, 10);
        assert!(deeper.contains(r#""snapshot":true"#), "{deeper}");
        assert!(deeper.contains(r#""depth":10"#), "{deeper}");
        let full = observe(&mut topic, &outbox, 3, 20);
        assert!(full.contains(r#""snapshot":true"#), "{full}");
        // Beyond the view's N the view is complete either way: no new snapshot, and with the
        // top 20 unchanged, no message at all.
        let deeper_still = observe(&mut topic, &outbox, 4, 1000);
        assert_eq!(deeper_still, "", "{deeper_still}");
    }

    #[test]
    fn a_restart_tells_subscribers_and_the_next_read_sends_full_state() {
        let (mut topic, outbox) = subscribed("binance.com:BTCUSDT@book5");
        observe(&mut topic, &outbox, 1, 5);
        let mut fan = FanOut::default();
        topic.restart(
            "push watcher stopped",
            Instant::now(),
            Duration::from_secs(3600),
            &mut fan,
        );
        let mut out = Vec::new();
        outbox.take(&mut out, usize::MAX, Instant::now()).unwrap();
        assert_eq!(out.len(), 1);
        assert!(
            out[0].payload.contains("push watcher stopped"),
            "{:?}",
            out[0]
        );
        let again = observe(&mut topic, &outbox, 2, 5);
        assert!(again.contains(r#""status":"synced""#), "{again}");
        assert!(again.contains(r#""snapshot":true"#), "{again}");
    }

    fn bbo_read(update: u64, bid: f64) -> Bbo {
        Bbo {
            bid: Some(Level {
                price: bid,
                quantity: 1.0,
            }),
            ask: None,
            last_update_id: update,
            event_time_ms: 1,
            receive_time_ns: 0,
            publish_time_ns: 0,
            depth: 1000,
            generation: 1,
            changes: update,
            freshness: Freshness::empty(),
        }
    }

    /// Observes a `@bbo` read from `dcn`; the messages it gave.
    fn observe_bbo(topic: &mut Topic, outbox: &Arc<Outbox>, bbo: &Bbo, dcn: &str) -> String {
        let replica = Replica {
            dcn: dcn.into(),
            generation: bbo.generation,
        };
        let observation = Observation::Bbo {
            bbo,
            replica: &replica,
        };
        delivered(topic, outbox, &observation)
    }

    #[test]
    fn a_bbo_from_another_replica_says_so_as_its_update_id_may_go_back() {
        let (mut topic, outbox) = subscribed("binance.com:BTCUSDT@bbo");
        let first = observe_bbo(&mut topic, &outbox, &bbo_read(100, 1.0), "dcn-1");
        assert!(!first.contains("replica_switched"), "{first}");
        let same = observe_bbo(&mut topic, &outbox, &bbo_read(101, 2.0), "dcn-1");
        assert!(!same.contains("replica_switched"), "{same}");
        let switched = observe_bbo(&mut topic, &outbox, &bbo_read(99, 3.0), "dcn-2");
        assert!(
            switched.contains(r#""replica_switched":true"#),
            "{switched}"
        );
        // A subscriber joining now gets the state without the flag: it has no earlier `u`.
        let joiner = Arc::new(Outbox::default());
        let mut fan = FanOut::default();
        topic.join(
            Arc::clone(&joiner),
            Instant::now(),
            Duration::from_secs(3600),
            &mut fan,
        );
        let mut out = Vec::new();
        joiner.take(&mut out, usize::MAX, Instant::now()).unwrap();
        assert!(
            out.len() == 1 && !out[0].payload.contains("replica_switched"),
            "{out:?}"
        );
    }

    /// Bids `prices` (best first), each of quantity `quantity`.
    fn bid_levels(prices: &[f64], quantity: f64) -> Vec<Level> {
        prices
            .iter()
            .map(|&price| Level { price, quantity })
            .collect()
    }

    /// Observes a 1000-deep book at `update` holding `bids` at `now`; the messages it gave.
    fn observe_at(
        topic: &mut Topic,
        outbox: &Arc<Outbox>,
        update: u64,
        bids: &[Level],
        now: Instant,
    ) -> Vec<serde_json::Value> {
        let (info, origin) = (info(update, 1000), origin(update));
        let observation = Observation::Book {
            info: &info,
            origin: &origin,
            bids,
            asks: &[],
        };
        let mut fan = FanOut::default();
        topic.observe(&observation, now, Duration::from_secs(3600), &mut fan);
        let mut out = Vec::new();
        outbox.take(&mut out, usize::MAX, now).unwrap();
        out.iter()
            .map(|m| serde_json::from_str(m.payload.as_str()).unwrap())
            .collect()
    }

    /// Applies a `@bookN` message's bids to `view` as a client does, keeping the best `n`.
    fn apply_bids(view: &mut Vec<(f64, f64)>, data: &serde_json::Value, n: usize) {
        if data["snapshot"] == true {
            view.clear();
        }
        for change in data["bids"].as_array().unwrap() {
            let (price, quantity) = (change[0].as_f64().unwrap(), change[1].as_f64().unwrap());
            view.retain(|(p, _)| *p != price);
            if quantity != 0.0 {
                view.push((price, quantity));
            }
        }
        view.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert!(view.len() <= n, "more than {n} levels: {view:?}");
    }

    fn pairs(levels: &[Level]) -> Vec<(f64, f64)> {
        levels.iter().map(|l| (l.price, l.quantity)).collect()
    }

    #[test]
    fn the_top_n_cut_sends_levels_entering_and_leaving_the_top_n() {
        let name = "binance.com:BTCUSDT@book7";
        let (mut topic, outbox) = subscribed(name);
        let start = Instant::now();
        let mut view = Vec::new();
        // A read as deep as another topic's (20 levels): only the first 7 are this view.
        let first = bid_levels(
            &(0..20).map(|i| 100.0 - f64::from(i)).collect::<Vec<_>>(),
            1.0,
        );
        let got = observe_at(&mut topic, &outbox, 1, &first, start);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["stream"], name);
        assert_eq!(got[0]["data"]["bids"].as_array().unwrap().len(), 7);
        apply_bids(&mut view, &got[0]["data"], 7);
        assert_eq!(view, pairs(&first[..7]));

        // Two better bids enter: 94 and 95 leave the top 7 (quantity 0), 101 and 100.5 enter.
        let mut second = bid_levels(&[101.0, 100.5], 2.0);
        second.extend_from_slice(&first);
        let got = observe_at(&mut topic, &outbox, 2, &second, start);
        let data = &got[0]["data"];
        assert_eq!(data["snapshot"], false);
        assert_eq!(
            data["bids"],
            serde_json::json!([[101.0, 2.0], [100.5, 2.0], [95.0, 0.0], [94.0, 0.0]])
        );
        apply_bids(&mut view, data, 7);
        assert_eq!(view, pairs(&second[..7]));

        // The best two go, a level below the cut changes: 95 and 94 come back, nothing else.
        let mut third = first.clone();
        third[10].quantity = 5.0;
        let got = observe_at(&mut topic, &outbox, 3, &third, start);
        let data = &got[0]["data"];
        assert_eq!(
            data["bids"],
            serde_json::json!([[101.0, 0.0], [100.5, 0.0], [95.0, 1.0], [94.0, 1.0]])
        );
        apply_bids(&mut view, data, 7);
        assert_eq!(view, pairs(&third[..7]));

        // A change below the top 7 only: no message at all.
        let mut fourth = third.clone();
        fourth[15].quantity = 9.0;
        assert!(observe_at(&mut topic, &outbox, 4, &fourth, start).is_empty());
    }

    #[test]
    fn a_conflated_stream_sends_the_latest_state_once_per_its_own_interval_under_its_name() {
        let name = "binance.com:BTCUSDT@book7@150ms";
        let (mut topic, outbox) = subscribed(name);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut view = Vec::new();
        let prices = |shift: f64| {
            bid_levels(
                &(0..20)
                    .map(|i| 100.0 + shift - f64::from(i))
                    .collect::<Vec<_>>(),
                1.0,
            )
        };
        let got = observe_at(&mut topic, &outbox, 1, &prices(0.0), at(0));
        assert_eq!(got.len(), 1);
        apply_bids(&mut view, &got[0]["data"], 7);
        // Changes within the interval send nothing …
        for (update, ms) in [(2, 10), (3, 60), (4, 149)] {
            let got = observe_at(&mut topic, &outbox, update, &prices(update as f64), at(ms));
            assert!(got.is_empty(), "{update} at {ms} ms: {got:?}");
        }
        // … and once it has passed, one diff to the latest state, named as subscribed.
        let latest = prices(4.5);
        let got = observe_at(&mut topic, &outbox, 5, &latest, at(150));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["stream"], name);
        assert_eq!(got[0]["data"]["snapshot"], false);
        assert_eq!(got[0]["data"]["u"], 5);
        apply_bids(&mut view, &got[0]["data"], 7);
        assert_eq!(view, pairs(&latest[..7]));
        // The next interval counts from that message, not from the first.
        assert!(observe_at(&mut topic, &outbox, 6, &prices(6.0), at(299)).is_empty());
        let got = observe_at(&mut topic, &outbox, 7, &prices(7.0), at(300));
        assert_eq!(got.len(), 1);
        apply_bids(&mut view, &got[0]["data"], 7);
        assert_eq!(view, pairs(&prices(7.0)[..7]));
    }

    #[test]
    fn topics_of_one_book_keep_their_names_and_intervals_apart() {
        let (mut fast, fast_box) = subscribed("binance.com:BTCUSDT@book7@150ms");
        let (mut slow, slow_box) = subscribed("binance.com:BTCUSDT@book7@151ms");
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let book = bid_levels(&[3.0, 2.0, 1.0], 1.0);
        for (topic, outbox) in [(&mut fast, &fast_box), (&mut slow, &slow_box)] {
            observe_at(topic, outbox, 1, &book, at(0));
        }
        let later = bid_levels(&[3.0, 2.0], 1.0);
        let got = observe_at(&mut fast, &fast_box, 2, &later, at(150));
        assert_eq!(got[0]["stream"], "binance.com:BTCUSDT@book7@150ms");
        assert!(observe_at(&mut slow, &slow_box, 2, &later, at(150)).is_empty());
        let got = observe_at(&mut slow, &slow_box, 2, &later, at(151));
        assert_eq!(got[0]["stream"], "binance.com:BTCUSDT@book7@151ms");
    }

    #[test]
    fn names_of_one_book_and_n_share_a_pass_s_snapshot_body_behind_their_own_names() {
        let (mut fast, fast_box) = subscribed("binance.com:BTCUSDT@book7@150ms");
        let (mut plain, plain_box) = subscribed("binance.com:BTCUSDT@book7");
        let (info, origin) = (info(1, 1000), origin(1));
        let book = bid_levels(&[3.0, 2.0, 1.0], 1.0);
        let observation = Observation::Book {
            info: &info,
            origin: &origin,
            bids: &book,
            asks: &[],
        };
        let mut fan = FanOut::default();
        let now = Instant::now();
        let cut_after = Duration::from_secs(3600);
        fast.observe(&observation, now, cut_after, &mut fan);
        plain.observe(&observation, now, cut_after, &mut fan);
        assert_eq!(fan.bodies.0.len(), 1, "one body for both names");
        let taken = |outbox: &Arc<Outbox>| {
            let mut out = Vec::new();
            outbox.take(&mut out, usize::MAX, now).unwrap();
            let message: serde_json::Value = serde_json::from_str(out[0].payload.as_str()).unwrap();
            message
        };
        let (a, b) = (taken(&fast_box), taken(&plain_box));
        assert_eq!(a["stream"], "binance.com:BTCUSDT@book7@150ms");
        assert_eq!(b["stream"], "binance.com:BTCUSDT@book7");
        assert_eq!(a["data"], b["data"]);
        assert_eq!(a["data"]["snapshot"], true);
        // The next book's names of the same N get their own body.
        fan.next_book();
        assert!(fan.bodies.0.is_empty());
        let (mut other, other_box) = subscribed("binance.com:ETHUSDT@book7");
        let other_book = bid_levels(&[9.0], 1.0);
        let observation = Observation::Book {
            info: &info,
            origin: &origin,
            bids: &other_book,
            asks: &[],
        };
        other.observe(&observation, now, cut_after, &mut fan);
        let c = taken(&other_box);
        assert_eq!(c["stream"], "binance.com:ETHUSDT@book7");
        assert_ne!(c["data"], a["data"]);
        assert_eq!(c["data"]["bids"].as_array().map(Vec::len), Some(1));
    }
}
