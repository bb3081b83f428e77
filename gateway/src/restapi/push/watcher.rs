//! The watcher: one thread that turns book changes into messages for every subscriber.
//!
//! Each pass it applies the registry's joins and leaves, looks at every subscribed book's
//! marker ([`BookSource::marker`]), reads the books that changed once — the top as deep as
//! their deepest `@bookN` topic, or the best bid/ask — and lets each topic of the book make its
//! message, serialised once and queued as a shared pointer in every subscriber's outbox. Then it
//! wakes the clients whose outbox was empty, and waits for the next change. It blocks (on the
//! source's wait) and reads shared memory, so it runs on a thread of its own, never in a task.
//!
//! A pass that panics (a bug) must not leave clients connected to streams nobody feeds: it is
//! caught, every stream says "out_of_sync: push watcher stopped" and starts over with full
//! state at the next pass. [`MAX_PANICS`] panics in a row stop the watcher for good: the
//! streams have said so, the registry refuses new subscriptions and queues nothing more.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ubdcc_shm::{Bbo, BookInfo, Level};

use super::limits::CUT_AFTER;
use super::outbox::TopicId;
use super::registry::{Change, Registry};
use super::source::{BookSource, Marker, Origin, Replica, unserved_reason};
use super::stream::MIN_INTERVAL;
use super::topic::{FanOut, Observation, Topic};

/// The longest sleep without a change: a new subscriber waits at most this long for its first
/// message, and a stopping restapi for its watcher.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// The reason streams give while the watcher is down.
pub(crate) const STOPPED: &str = "push watcher stopped";

/// Panicking passes in a row after which the watcher gives up: a bug that hits every pass
/// would otherwise spin a core and flood the log.
pub(crate) const MAX_PANICS: u32 = 3;

/// What the watcher shares with the handlers and `/metrics`.
#[derive(Default)]
pub(crate) struct WatcherShared {
    /// Set to end the thread.
    pub(crate) stop: AtomicBool,
    /// Set when the watcher stopped for good ([`MAX_PANICS`]).
    down: AtomicBool,
    /// Messages queued into outboxes.
    pub(crate) queued: AtomicU64,
    /// Clients cut for reading too slowly (counted by each client's task, once).
    pub(crate) cut: AtomicU64,
    /// Book reads made.
    pub(crate) reads: AtomicU64,
}

impl WatcherShared {
    /// `true` once the watcher stopped for good.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

/// A subscribed book: its topics and what the last look at it found.
struct Book {
    exchange: Arc<str>,
    market: Arc<str>,
    topics: Vec<TopicId>,
    /// The marker last seen, or the reason it could not be read.
    seen: Option<Result<Marker, &'static str>>,
    /// Counts changes of `seen`; a topic that processed this version is up to date.
    version: u64,
}

/// The watcher thread's state.
pub(crate) struct Watcher<S> {
    source: S,
    registry: Arc<Registry>,
    shared: Arc<WatcherShared>,
    topics: HashMap<TopicId, Topic>,
    books: HashMap<(Arc<str>, Arc<str>), Book>,
    changes: Vec<Change>,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

impl<S: BookSource> Watcher<S> {
    /// A watcher of `registry`'s subscriptions, reading `source`.
    pub(crate) fn new(source: S, registry: Arc<Registry>, shared: Arc<WatcherShared>) -> Self {
        Self {
            source,
            registry,
            shared,
            topics: HashMap::new(),
            books: HashMap::new(),
            changes: Vec::new(),
            bids: Vec::new(),
            asks: Vec::new(),
        }
    }

    /// Runs passes until [`WatcherShared::stop`] is set, or [`MAX_PANICS`] in a row panicked.
    pub(crate) fn run(mut self) {
        let mut panics = 0;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.supervised_pass(Instant::now()) {
                panics = 0;
            } else {
                panics += 1;
                if panics >= MAX_PANICS {
                    tracing::error!(panics, "push watcher stopped: its passes keep panicking");
                    // Release: pairs with the Acquire in `is_down`; the registry refuses too.
                    self.shared.down.store(true, Ordering::Release);
                    self.registry.close();
                    return;
                }
            }
            self.source.wait(self.longest_wait());
        }
    }

    /// One pass, with a panic caught; `false` when it panicked (the streams then start over).
    pub(crate) fn supervised_pass(&mut self, now: Instant) -> bool {
        // The state a panic may leave half-updated is each topic's view and the books' markers;
        // `restart` resets both, so nothing inconsistent is observed after this.
        if catch_unwind(AssertUnwindSafe(|| self.pass(now))).is_ok() {
            return true;
        }
        tracing::error!("push watcher pass panicked; its streams start over");
        let restarted = catch_unwind(AssertUnwindSafe(|| self.restart(now)));
        if restarted.is_err() {
            tracing::error!("push watcher restart panicked");
        }
        false
    }

    /// Tells every stream's subscribers it is out of sync ([`STOPPED`]) and forgets what every
    /// topic and book held, so the next pass reads and sends full state.
    fn restart(&mut self, now: Instant) {
        let mut fan = FanOut::default();
        for topic in self.topics.values_mut() {
            fan.next_book();
            topic.restart(STOPPED, now, CUT_AFTER, &mut fan);
        }
        for book in self.books.values_mut() {
            book.seen = None;
            book.version += 1;
        }
        for outbox in fan.wake.drain(..) {
            outbox.wake();
        }
        self.shared.queued.fetch_add(fan.queued, Ordering::Relaxed);
    }

    /// How long to sleep when no book changes: joins, leaves and stop wait this long at most,
    /// and a conflated stream whose book changed sends when its interval ends, so then no longer
    /// than the shortest interval.
    fn longest_wait(&self) -> Duration {
        if self.topics.values().any(|t| t.name().interval().is_some()) {
            MIN_INTERVAL
        } else {
            IDLE_WAIT
        }
    }

    /// One pass: joins and leaves, then every book.
    pub(crate) fn pass(&mut self, now: Instant) {
        let mut fan = FanOut::default();
        self.apply_changes(now, &mut fan);
        let keys: Vec<(Arc<str>, Arc<str>)> = self.books.keys().cloned().collect();
        for key in keys {
            self.look_at(&key, now, &mut fan);
        }
        for outbox in fan.wake.drain(..) {
            outbox.wake();
        }
        self.shared.queued.fetch_add(fan.queued, Ordering::Relaxed);
    }

    fn apply_changes(&mut self, now: Instant, fan: &mut FanOut) {
        self.registry.take_changes(&mut self.changes);
        for change in std::mem::take(&mut self.changes) {
            match change {
                Change::Join {
                    topic,
                    name,
                    outbox,
                } => {
                    let key = (Arc::from(name.exchange()), Arc::from(name.market()));
                    let entry = self.topics.entry(topic).or_insert_with(|| {
                        let book = self.books.entry(key.clone()).or_insert_with(|| Book {
                            exchange: key.0.clone(),
                            market: key.1.clone(),
                            topics: Vec::new(),
                            seen: None,
                            version: 1,
                        });
                        book.topics.push(topic);
                        Topic::new(topic, name)
                    });
                    entry.join(outbox, now, CUT_AFTER, fan);
                }
                Change::Leave { topic, outbox } => self.leave(topic, &outbox),
            }
        }
    }

    fn leave(&mut self, id: TopicId, outbox: &Arc<super::outbox::Outbox>) {
        let Some(topic) = self.topics.get_mut(&id) else {
            return;
        };
        topic.leave(outbox);
        if !topic.is_unused() {
            return;
        }
        let name = topic.name().clone();
        self.topics.remove(&id);
        let key = (Arc::from(name.exchange()), Arc::from(name.market()));
        if let Some(book) = self.books.get_mut(&key) {
            book.topics.retain(|t| *t != id);
            if book.topics.is_empty() {
                self.books.remove(&key);
            }
        }
    }

    /// Looks at one book: reads it when it changed (or a topic still waits for its first
    /// message or its interval), and hands the read to each topic that is due.
    fn look_at(&mut self, key: &(Arc<str>, Arc<str>), now: Instant, fan: &mut FanOut) {
        let Some(book) = self.books.get_mut(key) else {
            return;
        };
        let seen = match self.source.marker(&book.exchange, &book.market) {
            Ok(marker) => Ok(marker),
            Err(error) => match unserved_reason(&error) {
                Some(reason) => Err(reason),
                // Contended: the writer is busy with this very book; look again next pass.
                None => return,
            },
        };
        if book.seen.as_ref() != Some(&seen) {
            book.seen = Some(seen);
            book.version += 1;
        }
        let version = book.version;
        let due: Vec<TopicId> = book
            .topics
            .iter()
            .copied()
            .filter(|id| {
                self.topics
                    .get(id)
                    .is_some_and(|t| t.seen_version != version && (seen.is_err() || t.is_due(now)))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let (exchange, market) = (Arc::clone(&book.exchange), Arc::clone(&book.market));
        let read = self.read(&exchange, &market, &due, seen.err());
        let Some(read) = read else {
            return;
        };
        fan.next_book();
        for id in due {
            let Some(topic) = self.topics.get_mut(&id) else {
                continue;
            };
            let observation = match (&read, topic.depth()) {
                (Read::Unserved(reason), _) => Observation::Unserved(reason),
                (
                    Read::Top {
                        book: Err(reason), ..
                    },
                    Some(_),
                )
                | (
                    Read::Top {
                        bbo: Err(reason), ..
                    },
                    None,
                ) => Observation::Unserved(reason),
                (
                    Read::Top {
                        book: Ok((info, origin)),
                        ..
                    },
                    Some(_),
                ) => Observation::Book {
                    info,
                    origin,
                    bids: &self.bids,
                    asks: &self.asks,
                },
                (
                    Read::Top {
                        bbo: Ok((bbo, replica)),
                        ..
                    },
                    None,
                ) => Observation::Bbo { bbo, replica },
            };
            topic.observe(&observation, now, CUT_AFTER, fan);
            topic.seen_version = version;
        }
    }

    /// Reads what the `due` topics of a book need; `None` when a read was contended.
    fn read(
        &mut self,
        exchange: &str,
        market: &str,
        due: &[TopicId],
        unserved: Option<&'static str>,
    ) -> Option<Read> {
        if let Some(reason) = unserved {
            return Some(Read::Unserved(reason));
        }
        let depth = due
            .iter()
            .filter_map(|id| self.topics.get(id)?.depth())
            .max();
        let wants_bbo = due
            .iter()
            .any(|id| self.topics.get(id).is_some_and(|t| t.depth().is_none()));
        let book = match depth {
            Some(depth) => {
                self.shared.reads.fetch_add(1, Ordering::Relaxed);
                match self
                    .source
                    .read_top(exchange, market, depth, &mut self.bids, &mut self.asks)
                {
                    Ok(read) => Ok(read),
                    Err(error) => Err(unserved_reason(&error)?),
                }
            }
            None => Err("not read"),
        };
        let bbo = if wants_bbo {
            self.shared.reads.fetch_add(1, Ordering::Relaxed);
            match self.source.read_bbo(exchange, market) {
                Ok(bbo) => Ok(bbo),
                Err(error) => Err(unserved_reason(&error)?),
            }
        } else {
            Err("not read")
        };
        Some(Read::Top { book, bbo })
    }
}

/// One read of a book for its due topics.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per book read, on the stack; boxing would allocate per read"
)]
enum Read {
    /// The book cannot be served.
    Unserved(&'static str),
    /// What was read: the top for `@bookN` topics, the best bid/ask for `@bbo` ones (each an
    /// error reason when not needed or not servable).
    Top {
        book: Result<(BookInfo, Origin), &'static str>,
        bbo: Result<(Bbo, Replica), &'static str>,
    },
}

#[cfg(test)]
mod tests {
    use ubdcc_shm::ReadError;

    use super::*;
    use crate::restapi::push::outbox::Outbox;
    use crate::restapi::push::stream::StreamName;

    /// A source whose book is never on this host, and whose marker look panics `panics` times.
    struct Panicky {
        panics: u32,
    }

    impl BookSource for Panicky {
        fn marker(&mut self, exchange: &str, market: &str) -> Result<Marker, ReadError> {
            if self.panics > 0 {
                self.panics -= 1;
                panic!("a bug in the watcher (test)");
            }
            Err(ReadError::NotFound {
                cluster: "test".into(),
                exchange: exchange.into(),
                market: market.into(),
            })
        }

        fn read_top(
            &mut self,
            _: &str,
            _: &str,
            _: u32,
            _: &mut Vec<Level>,
            _: &mut Vec<Level>,
        ) -> Result<(BookInfo, Origin), ReadError> {
            unreachable!("the book is never found")
        }

        fn read_bbo(&mut self, _: &str, _: &str) -> Result<(Bbo, Replica), ReadError> {
            unreachable!("the book is never found")
        }

        fn wait(&mut self, _: Duration) {}
    }

    fn subscribed(panics: u32) -> (Watcher<Panicky>, Arc<Registry>, Arc<Outbox>) {
        let registry = Arc::new(Registry::default());
        let outbox = Arc::new(Outbox::default());
        let name = StreamName::parse("binance.com:BTCUSDT@bbo").unwrap();
        registry.subscribe(&outbox, &[name]).unwrap();
        let shared = Arc::new(WatcherShared::default());
        let watcher = Watcher::new(Panicky { panics }, Arc::clone(&registry), shared);
        (watcher, registry, outbox)
    }

    fn messages(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        outbox.take(&mut out, usize::MAX, Instant::now()).unwrap();
        out.iter().map(|m| m.payload.as_str().to_owned()).collect()
    }

    #[test]
    fn a_panicking_pass_tells_the_streams_and_the_next_pass_serves_again() {
        let (mut watcher, _registry, outbox) = subscribed(1);
        assert!(!watcher.supervised_pass(Instant::now()));
        let got = messages(&outbox);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains(STOPPED), "{got:?}");
        assert!(watcher.supervised_pass(Instant::now()));
        let got = messages(&outbox);
        assert!(
            got.len() == 1 && got[0].contains("not on this host"),
            "{got:?}"
        );
    }

    #[test]
    fn a_watcher_that_keeps_panicking_stops_and_refuses_new_subscriptions() {
        let (watcher, registry, outbox) = subscribed(u32::MAX);
        let shared = Arc::clone(&watcher.shared);
        watcher.run();
        assert!(shared.is_down());
        assert!(messages(&outbox).iter().any(|m| m.contains(STOPPED)));
        let name = StreamName::parse("binance.com:ETHUSDT@bbo").unwrap();
        assert!(registry.subscribe(&outbox, &[name]).is_err());
    }

    /// A book that changes at every marker look: 1 000 levels per side, one level's quantity
    /// different at each version (the busiest a book can be, seen from the watcher).
    struct Busy {
        version: u64,
    }

    impl BookSource for Busy {
        fn marker(&mut self, _: &str, _: &str) -> Result<Marker, ReadError> {
            self.version += 1;
            Ok(Marker::synced_after(self.version))
        }

        fn read_top(
            &mut self,
            _: &str,
            _: &str,
            depth: u32,
            bids: &mut Vec<Level>,
            asks: &mut Vec<Level>,
        ) -> Result<(BookInfo, Origin), ReadError> {
            let changed = (self.version % u64::from(depth)) as u32;
            let level = |i: u32, price: f64| Level {
                price,
                quantity: if i == changed {
                    self.version as f64
                } else {
                    1.0
                },
            };
            bids.clear();
            asks.clear();
            bids.extend((0..depth).map(|i| level(i, 10_000.0 - f64::from(i))));
            asks.extend((0..depth).map(|i| level(i, 10_001.0 + f64::from(i))));
            let info = BookInfo {
                status: ubdcc_shm::BookStatus::Synced,
                last_update_id: self.version,
                event_time_ms: 1,
                receive_time_ns: 0,
                publish_time_ns: 0,
                bid_count: depth,
                ask_count: depth,
                resyncs: 0,
                gaps: 0,
                depth,
                updates: self.version,
                generation: 1,
                changes: self.version,
                freshness: ubdcc_shm::Freshness::empty(),
            };
            let origin = Origin {
                dcn: "dcn-1".into(),
                generation: 1,
                resyncs: 0,
                gaps: 0,
                updates: self.version,
            };
            Ok((info, origin))
        }

        fn read_bbo(&mut self, _: &str, _: &str) -> Result<(Bbo, Replica), ReadError> {
            unreachable!("no @bbo topic")
        }

        fn wait(&mut self, _: Duration) {}
    }

    /// The watcher's worst case under the view-level budget: one busy book, as many
    /// `@book1000@<n>ms` names as the budget admits (1 048, each a topic of its own), every one
    /// due at every pass. Prints the time of a pass; run with
    /// `cargo test --release -p ubdcc-gateway --lib worst_pass -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, meaningful in release only"]
    fn worst_pass_under_the_view_level_budget() {
        use crate::restapi::push::limits::MAX_VIEW_LEVELS;
        let registry = Arc::new(Registry::default());
        let outbox = Arc::new(Outbox::default());
        let topics = MAX_VIEW_LEVELS / 1000;
        let names: Vec<StreamName> = (0..topics)
            .map(|i| StreamName::parse(&format!("binance.com:BTCUSDT@book1000@{}ms", 10 + i)))
            .collect::<Result<_, _>>()
            .unwrap();
        registry.subscribe(&outbox, &names).unwrap();
        let one_more = StreamName::parse("binance.com:BTCUSDT@book1000@9999ms").unwrap();
        assert!(registry.subscribe(&outbox, &[one_more]).is_err());
        let shared = Arc::new(WatcherShared::default());
        let mut watcher = Watcher::new(Busy { version: 0 }, Arc::clone(&registry), shared);
        let start = Instant::now();
        let mut out = Vec::new();
        let mut times = Vec::new();
        for pass in 0..21u32 {
            // A minute later each time: every conflated topic is due.
            let now = start + Duration::from_secs(61) * pass;
            let took = Instant::now();
            watcher.pass(now);
            times.push(took.elapsed());
            out.clear();
            outbox.take(&mut out, usize::MAX, now).unwrap();
            assert_eq!(out.len() as u64, topics, "pass {pass}");
        }
        let first = times.remove(0);
        times.sort();
        eprintln!(
            "{topics} @book1000 topics of one book, all due: first pass (snapshots) {first:?}; \
             diff passes median {:?}, max {:?}",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
}
