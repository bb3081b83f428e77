//! The simulated exchange's markets: every market of every family, each with its book, its
//! generator, its history and its armed faults behind one lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::book::{Book, Level, Side};
use crate::config::SimConfig;
use crate::error::SimRequestError;
use crate::error::TruthError;
use crate::family::Family;
use crate::faults::MarketFaults;
use crate::generator::Generator;
use crate::glitch::{Glitch, GlitchEffect};
use crate::history::{History, PastBook};
use crate::market::MarketSpec;
use crate::wire::render_event;

/// What a snapshot request gets: the top of a book at one update id.
#[derive(Debug)]
pub(crate) struct SnapshotView {
    /// `lastUpdateId`.
    pub(crate) last_update_id: u64,
    /// `T` of the last update in the book.
    pub(crate) transaction_time_ms: u64,
    /// Best bids, best first.
    pub(crate) bids: Vec<Level>,
    /// Best asks, best first.
    pub(crate) asks: Vec<Level>,
}

/// The mutable part of a market, guarded by [`Market::state`].
#[derive(Debug)]
struct MarketState {
    generator: Generator,
    /// The live book, after the newest update.
    book: Book,
    history: History,
    faults: MarketFaults,
    /// `T` of the newest update.
    transaction_time_ms: u64,
}

/// One market.
#[derive(Debug)]
pub(crate) struct Market {
    /// The static description.
    pub(crate) spec: MarketSpec,
    /// Book, generator, history and faults; held only for short, non-async sections.
    state: Mutex<MarketState>,
}

impl Market {
    fn new(spec: MarketSpec, config: &SimConfig, now_ms: u64) -> Market {
        let (generator, book) = Generator::new(&spec, config.book_depth(), config.seed());
        let history = History::new(
            &book,
            generator.last_update_id(),
            now_ms,
            config.retained_updates(),
        );
        Market {
            spec,
            state: Mutex::new(MarketState {
                generator,
                book,
                history,
                faults: MarketFaults::default(),
                transaction_time_ms: now_ms,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MarketState> {
        // A panic while holding the lock can only come from a bug in this crate; the state is
        // still a consistent book (every mutation is a single map insert or remove), so keep
        // serving rather than poisoning every later request.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Generates the next update, records it, and returns the frames (raw event JSON, after
    /// faults) that carry it to subscribers.
    pub(crate) fn step(&self, now_ms: u64, now: Instant) -> Vec<Arc<str>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let update = Arc::new(state.generator.next_update(&mut state.book, now_ms));
        state.transaction_time_ms = update.transaction_time_ms;
        let data: Arc<str> = Arc::from(render_event(&self.spec, &update));
        state.history.push(update, &state.book, now);
        state.faults.deliver(data, now)
    }

    /// The best `limit` levels per side as a snapshot request sees them: live, or stale when a
    /// stale-snapshot fault is armed, or `lag` old for options (the server-side cache of
    /// `docs/binance-protocol.md` §4.4).
    pub(crate) fn snapshot(&self, limit: usize, lag: Duration, now: Instant) -> SnapshotView {
        let mut state = self.lock();
        let past = if let Some(behind) = state.faults.take_stale_snapshot() {
            Some(state.history.book_behind(behind))
        } else if self.spec.family == Family::Options && !lag.is_zero() {
            Some(match now.checked_sub(lag) {
                Some(instant) => state.history.book_as_of(instant),
                None => state.history.book_behind(usize::MAX),
            })
        } else {
            None
        };
        let (book, last_update_id, transaction_time_ms) = match &past {
            Some(past) => (&past.book, past.update_id, past.transaction_time_ms),
            None => (
                &state.book,
                state.generator.last_update_id(),
                state.transaction_time_ms,
            ),
        };
        SnapshotView {
            last_update_id,
            transaction_time_ms,
            bids: book.top(Side::Bid, limit),
            asks: book.top(Side::Ask, limit),
        }
    }

    /// The whole book right after `update_id`.
    ///
    /// # Errors
    /// See [`History::book_at`].
    pub(crate) fn truth_at(&self, update_id: u64) -> Result<PastBook, TruthError> {
        self.lock().history.book_at(update_id)
    }

    /// The whole live book.
    pub(crate) fn truth_latest(&self) -> PastBook {
        let state = self.lock();
        PastBook {
            update_id: state.generator.last_update_id(),
            transaction_time_ms: state.transaction_time_ms,
            book: state.book.clone(),
        }
    }

    /// Applies an exchange-side glitch (see `crate::glitch`) and records it in the truth; returns
    /// what changed and the update id the next event follows.
    ///
    /// # Errors
    /// See [`Glitch::apply`].
    pub(crate) fn glitch(&self, glitch: Glitch) -> Result<(GlitchEffect, u64), SimRequestError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let effect = glitch.apply(&mut state.book, &mut state.generator, self.spec.step)?;
        let (id, time) = (state.generator.last_update_id(), state.transaction_time_ms);
        match effect {
            GlitchEffect::Levels(_) => state.history.rewrite_newest(&state.book, time),
            GlitchEffect::Ids(_) => state.history.restart(&state.book, id, time),
        }
        Ok((effect, id))
    }

    /// Whether a `delist` fault is armed on the market.
    pub(crate) fn is_delisted(&self) -> bool {
        self.lock().faults.is_delisted()
    }

    /// Runs `arm` on the market's faults and returns its result with the newest update id at
    /// that moment: the armed faults apply to events with `U` greater than it.
    pub(crate) fn arm<R>(&self, arm: impl FnOnce(&mut MarketFaults) -> R) -> (R, u64) {
        let mut state = self.lock();
        let result = arm(&mut state.faults);
        (result, state.generator.last_update_id())
    }
}

/// The markets of one family, with symbol look-ups.
#[derive(Debug)]
struct FamilyMarkets {
    markets: Vec<Market>,
    by_symbol: HashMap<String, usize>,
    by_stream_symbol: HashMap<String, usize>,
}

/// Every market of every family.
#[derive(Debug)]
pub(crate) struct Exchange {
    families: [FamilyMarkets; Family::COUNT],
}

impl Exchange {
    /// Builds `config.markets()` markets per family; their books are at their initial update id.
    pub(crate) fn new(config: &SimConfig, now_ms: u64) -> Exchange {
        let families = Family::ALL.map(|family| {
            let markets: Vec<Market> = (0..config.markets())
                .map(|index| {
                    Market::new(
                        MarketSpec::new(family, index, config.seed()),
                        config,
                        now_ms,
                    )
                })
                .collect();
            let by_symbol = markets
                .iter()
                .map(|m| (m.spec.symbol.clone(), m.spec.index))
                .collect();
            let by_stream_symbol = markets
                .iter()
                .map(|m| (m.spec.stream_symbol.clone(), m.spec.index))
                .collect();
            FamilyMarkets {
                markets,
                by_symbol,
                by_stream_symbol,
            }
        });
        Exchange { families }
    }

    /// The markets of a family, by index.
    pub(crate) fn markets(&self, family: Family) -> &[Market] {
        &self.families[family.index()].markets
    }

    /// The market with REST symbol `symbol` (uppercase, exact).
    pub(crate) fn find(&self, family: Family, symbol: &str) -> Option<&Market> {
        let markets = &self.families[family.index()];
        markets
            .by_symbol
            .get(symbol)
            .and_then(|&index| markets.markets.get(index))
    }

    /// The index of the market with stream symbol `stream_symbol` (lowercase, exact).
    pub(crate) fn find_stream_symbol(&self, family: Family, stream_symbol: &str) -> Option<usize> {
        self.families[family.index()]
            .by_stream_symbol
            .get(stream_symbol)
            .copied()
    }

    /// Advances every market by one update; returns each market's frames, per family.
    pub(crate) fn step(&self, now_ms: u64, now: Instant) -> [Vec<Vec<Arc<str>>>; Family::COUNT] {
        Family::ALL.map(|family| {
            self.markets(family)
                .iter()
                .map(|market| market.step(now_ms, now))
                .collect()
        })
    }

    /// Steps only the market of `family` at `index`: its frames, and none for every other.
    pub(crate) fn step_one(
        &self,
        family: Family,
        index: usize,
        now_ms: u64,
        now: Instant,
    ) -> [Vec<Vec<Arc<str>>>; Family::COUNT] {
        Family::ALL.map(|each| {
            self.markets(each)
                .iter()
                .enumerate()
                .map(|(i, market)| {
                    if each == family && i == index {
                        market.step(now_ms, now)
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        })
    }

    /// The index of the market with REST symbol `symbol` in its family.
    pub(crate) fn index_of(&self, family: Family, symbol: &str) -> Option<usize> {
        self.families[family.index()].by_symbol.get(symbol).copied()
    }
}
