//! How a market's book evolves: a deterministic random process that writes [`Update`]s.
//!
//! Every event applies one to six operations and then keeps each side near the configured depth:
//! - *trade-through* (15%): the best ask (or bid) is consumed and its price becomes the new best
//!   bid (or ask), so the price moves; the direction is pulled back towards the market's anchor,
//!   which keeps market 0 crossing 99.99 ↔ 100.00;
//! - *modify* (55%) and *delete* (12%) a level, and *insert* (12%) a level into a gap or inside
//!   the spread, at an index drawn mostly near the top (a random power-of-two bound up to 1024,
//!   then uniform below it);
//! - *deep change* (6%): modify or delete a level beyond two thirds of the depth, i.e. outside a
//!   1000-level snapshot of a 1500-level book, which is what leaves orphans in a client's book;
//! - *rebalance*: a side that fell more than 16 levels below the depth gets levels appended past
//!   its worst price, a side more than 16 above loses its worst levels.
//!
//! The update-id span of an event is the number of distinct levels it sets.

use std::collections::BTreeMap;

use crate::book::{Book, Side};
use crate::market::MarketSpec;
use crate::rng::SplitMix64;
use crate::update::Update;

/// How far a side may stray from the configured depth before [`Generator`] rebalances it.
const DEPTH_SLACK: usize = 16;

/// The largest lot count of a generated quantity (quantities are `step × 1..=MAX_LOTS`).
const MAX_LOTS: u64 = 5000;

/// The evolving part of a market: its random stream and its last update id.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    /// Tick size (price mantissa).
    tick: u64,
    /// Step size (quantity mantissa).
    step: u64,
    /// Price the mid is pulled towards, in ticks.
    anchor_ticks: u64,
    /// Distance from the anchor, in ticks, at which the pull is strongest.
    wander_ticks: u64,
    /// Levels per side to keep.
    depth: usize,
    /// The market's random stream; every draw is part of the deterministic sequence.
    rng: SplitMix64,
    /// `u` of the last update (the initial book's id before the first one).
    last_update_id: u64,
}

/// The levels an event sets so far; a level set twice keeps its last quantity.
#[derive(Default)]
struct Changes {
    bids: BTreeMap<u64, u64>,
    asks: BTreeMap<u64, u64>,
}

impl Changes {
    /// Sets a level in the book and records it for the event.
    fn set(&mut self, book: &mut Book, side: Side, price: u64, quantity: u64) {
        book.set(side, price, quantity);
        match side {
            Side::Bid => self.bids.insert(price, quantity),
            Side::Ask => self.asks.insert(price, quantity),
        };
    }

    fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }
}

impl Generator {
    /// The generator of market `spec` and its initial book of `depth` levels per side (fewer
    /// only if prices would reach zero). Depends only on `seed`, the spec and `depth`.
    pub(crate) fn new(spec: &MarketSpec, depth: usize, seed: u64) -> (Generator, Book) {
        let rng = SplitMix64::derive(
            seed,
            &[0xB00C, spec.family.index() as u64, spec.index as u64],
        );
        let mut generator = Generator {
            tick: spec.tick,
            step: spec.step,
            anchor_ticks: spec.anchor_ticks,
            wander_ticks: spec.wander_ticks.max(1),
            depth,
            rng,
            last_update_id: 0,
        };
        generator.last_update_id = generator.rng.between(1_000_000, 9_999_999);
        let mut book = Book::default();
        let best_bid = generator.anchor_ticks - generator.rng.between(1, 2);
        let best_ask = generator.anchor_ticks + generator.rng.between(1, 2);
        for (side, best) in [(Side::Bid, best_bid), (Side::Ask, best_ask)] {
            let mut price = best * generator.tick;
            for _ in 0..depth {
                let quantity = generator.quantity();
                book.set(side, price, quantity);
                match generator.price_beyond(side, price) {
                    Some(next) => price = next,
                    None => break,
                }
            }
        }
        (generator, book)
    }

    /// `u` of the last update, or the initial book's id before the first update.
    pub(crate) fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    /// Makes the next update start at `last_update_id + 1`: an exchange-side reset of the ids
    /// (`crate::glitch`). The random stream is untouched.
    pub(crate) fn reset_last_update_id(&mut self, last_update_id: u64) {
        self.last_update_id = last_update_id;
    }

    /// Produces the next update, applying it to `book` (which must be the book this generator
    /// produced so far).
    pub(crate) fn next_update(&mut self, book: &mut Book, event_time_ms: u64) -> Update {
        let mut changes = Changes::default();
        let operations = self.rng.between(1, 6);
        for _ in 0..operations {
            match self.rng.below(100) {
                0..15 => self.trade_through(book, &mut changes),
                15..70 => self.modify_near_top(book, &mut changes),
                70..82 => self.delete_near_top(book, &mut changes),
                82..94 => self.insert_near_top(book, &mut changes),
                _ => self.change_deep(book, &mut changes),
            }
        }
        for side in Side::BOTH {
            self.rebalance(book, &mut changes, side);
        }
        if changes.len() == 0 {
            self.modify_at(book, &mut changes, Side::Bid, 0);
        }
        let transaction_lag = self.rng.between(0, 3);
        let span = changes.len().max(1) as u64;
        let update = Update {
            first_update_id: self.last_update_id + 1,
            last_update_id: self.last_update_id + span,
            previous_update_id: self.last_update_id,
            event_time_ms,
            transaction_time_ms: event_time_ms.saturating_sub(transaction_lag),
            bids: changes.bids.into_iter().rev().collect(),
            asks: changes.asks.into_iter().collect(),
        };
        self.last_update_id = update.last_update_id;
        update
    }

    /// Moves the price one level: the best level of one side is consumed and its price joins
    /// the other side. Up-moves get likelier the further the mid sits below the anchor.
    fn trade_through(&mut self, book: &mut Book, changes: &mut Changes) {
        let (Some((bid, _)), Some((ask, _))) = (book.best(Side::Bid), book.best(Side::Ask)) else {
            return;
        };
        if book.len(Side::Bid) < 2 || book.len(Side::Ask) < 2 {
            return;
        }
        // Twice the mid and twice the anchor, in ticks, so a half-tick mid stays exact.
        let deviation = ((bid + ask) / self.tick) as i64 - 2 * self.anchor_ticks as i64;
        let span = 2 * self.wander_ticks as i64;
        let up_per_mille = 500 - 400 * deviation.clamp(-span, span) / span;
        let quantity = self.quantity();
        if self.rng.chance(up_per_mille as u64) {
            changes.set(book, Side::Ask, ask, 0);
            changes.set(book, Side::Bid, ask, quantity);
        } else {
            changes.set(book, Side::Bid, bid, 0);
            changes.set(book, Side::Ask, bid, quantity);
        }
    }

    fn modify_near_top(&mut self, book: &mut Book, changes: &mut Changes) {
        let side = self.side();
        let index = self.near_top_index(book.len(side));
        self.modify_at(book, changes, side, index);
    }

    fn modify_at(&mut self, book: &mut Book, changes: &mut Changes, side: Side, index: usize) {
        let quantity = self.quantity();
        if let Some((price, _)) = book.nth_best(side, index) {
            changes.set(book, side, price, quantity);
        }
    }

    fn delete_near_top(&mut self, book: &mut Book, changes: &mut Changes) {
        let side = self.side();
        let index = self.near_top_index(book.len(side));
        // Never empty a side: the trade-through and the spread logic need both bests.
        if book.len(side) <= 2 {
            return;
        }
        if let Some((price, _)) = book.nth_best(side, index) {
            changes.set(book, side, price, 0);
        }
    }

    /// Adds a level strictly between level `index - 1` and level `index`, or inside the spread
    /// for index 0; where there is no free tick it modifies level `index` instead.
    fn insert_near_top(&mut self, book: &mut Book, changes: &mut Changes) {
        let side = self.side();
        let index = self.near_top_index(book.len(side));
        let bounds = if index == 0 {
            let opposite = match side {
                Side::Bid => Side::Ask,
                Side::Ask => Side::Bid,
            };
            book.best(opposite).zip(book.best(side))
        } else {
            book.nth_best(side, index - 1)
                .zip(book.nth_best(side, index))
        };
        let Some(((outer, _), (inner, _))) = bounds else {
            return;
        };
        let gap_ticks = outer.abs_diff(inner) / self.tick;
        if gap_ticks < 2 {
            self.modify_at(book, changes, side, index);
            return;
        }
        let offset = self.rng.between(1, gap_ticks - 1) * self.tick;
        // `inner` is the level being beaten (index 0: our best) or the worse neighbour; the new
        // price lies between it and `outer`.
        let price = if outer > inner {
            inner + offset
        } else {
            inner - offset
        };
        let quantity = self.quantity();
        changes.set(book, side, price, quantity);
    }

    fn change_deep(&mut self, book: &mut Book, changes: &mut Changes) {
        let side = self.side();
        let len = book.len(side);
        let deep_from = self.depth * 2 / 3;
        if len <= deep_from + 1 {
            let index = self.rng.below(len as u64) as usize;
            self.modify_at(book, changes, side, index);
            return;
        }
        let index = self.rng.between(deep_from as u64, len as u64 - 1) as usize;
        if self.rng.chance(500) {
            if let Some((price, _)) = book.nth_best(side, index) {
                changes.set(book, side, price, 0);
            }
        } else {
            self.modify_at(book, changes, side, index);
        }
    }

    fn rebalance(&mut self, book: &mut Book, changes: &mut Changes, side: Side) {
        while book.len(side) + DEPTH_SLACK < self.depth {
            let Some((worst, _)) = book.worst_first(side).next() else {
                return;
            };
            let Some(price) = self.price_beyond(side, worst) else {
                return;
            };
            let quantity = self.quantity();
            changes.set(book, side, price, quantity);
        }
        while book.len(side) > self.depth + DEPTH_SLACK {
            let Some((worst, _)) = book.worst_first(side).next() else {
                return;
            };
            changes.set(book, side, worst, 0);
        }
    }

    /// A price one to three ticks worse than `price`, `None` if a bid would reach zero.
    fn price_beyond(&mut self, side: Side, price: u64) -> Option<u64> {
        let gap = self.rng.between(1, 3) * self.tick;
        match side {
            Side::Bid => price.checked_sub(gap).filter(|&p| p > 0),
            Side::Ask => Some(price + gap),
        }
    }

    fn side(&mut self) -> Side {
        if self.rng.chance(500) {
            Side::Bid
        } else {
            Side::Ask
        }
    }

    /// An index from the best, mostly near the top but reaching 1023.
    fn near_top_index(&mut self, len: usize) -> usize {
        let bound = 1u64 << self.rng.below(11);
        (self.rng.below(bound) as usize).min(len.saturating_sub(1))
    }

    fn quantity(&mut self) -> u64 {
        self.step * self.rng.between(1, MAX_LOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::Family;

    fn market(family: Family, index: usize, seed: u64) -> (MarketSpec, Generator, Book) {
        let spec = MarketSpec::new(family, index, seed);
        let (generator, book) = Generator::new(&spec, 1500, seed);
        (spec, generator, book)
    }

    #[test]
    fn the_same_seed_gives_the_same_updates() {
        let (_, mut a, mut book_a) = market(Family::Futures, 2, 11);
        let (_, mut b, mut book_b) = market(Family::Futures, 2, 11);
        assert_eq!(book_a, book_b);
        for _ in 0..500 {
            assert_eq!(a.next_update(&mut book_a, 5), b.next_update(&mut book_b, 5));
        }
        assert_eq!(book_a, book_b);
    }

    #[test]
    fn different_seeds_give_different_books() {
        let (_, _, a) = market(Family::Spot, 1, 1);
        let (_, _, b) = market(Family::Spot, 1, 2);
        assert_ne!(a, b);
    }

    #[test]
    fn update_ids_chain_and_the_book_never_crosses() {
        let (_, mut generator, mut book) = market(Family::Spot, 0, 3);
        let mut last = generator.last_update_id();
        for _ in 0..3000 {
            let update = generator.next_update(&mut book, 0);
            assert_eq!(update.first_update_id, last + 1);
            assert_eq!(update.previous_update_id, last);
            assert!(update.last_update_id >= update.first_update_id);
            last = update.last_update_id;
            let bid = book.best(Side::Bid).map(|l| l.0);
            let ask = book.best(Side::Ask).map(|l| l.0);
            assert!(bid < ask, "crossed book: bid {bid:?} ask {ask:?}");
        }
    }

    #[test]
    fn applying_the_updates_to_the_initial_book_reproduces_the_book() {
        let (spec, mut generator, mut book) = market(Family::Options, 1, 5);
        let mut replica = book.clone();
        for _ in 0..1000 {
            let update = generator.next_update(&mut book, 0);
            replica.apply(&update.bids, &update.asks);
        }
        assert_eq!(replica, book, "{}", spec.symbol);
    }

    #[test]
    fn sides_stay_near_the_configured_depth() {
        let (_, mut generator, mut book) = market(Family::Futures, 1, 8);
        for _ in 0..3000 {
            generator.next_update(&mut book, 0);
            for side in Side::BOTH {
                assert!(book.len(side).abs_diff(1500) <= DEPTH_SLACK + 12);
            }
        }
    }

    #[test]
    fn market_zero_best_prices_cross_the_digit_boundary_both_ways() {
        for family in Family::ALL {
            let (spec, mut generator, mut book) = market(family, 0, 1);
            let hundred = 10_000 * spec.tick;
            let (mut bid_above, mut bid_below, mut ask_above, mut ask_below) =
                (false, false, false, false);
            for _ in 0..3000 {
                generator.next_update(&mut book, 0);
                let bid = book.best(Side::Bid).map_or(0, |l| l.0);
                let ask = book.best(Side::Ask).map_or(0, |l| l.0);
                bid_above |= bid >= hundred;
                bid_below |= bid < hundred;
                ask_above |= ask >= hundred;
                ask_below |= ask < hundred;
            }
            assert!(bid_above && bid_below && ask_above && ask_below, "{family}");
        }
    }

    #[test]
    fn deep_levels_change_beyond_a_1000_level_window() {
        let (_, mut generator, mut book) = market(Family::Spot, 1, 4);
        let mut deep_changes = 0;
        for _ in 0..500 {
            let before = book.clone();
            let update = generator.next_update(&mut book, 0);
            let thousandth = before.nth_best(Side::Ask, 999).map_or(u64::MAX, |l| l.0);
            deep_changes += update.asks.iter().filter(|l| l.0 > thousandth).count();
        }
        assert!(deep_changes > 10, "only {deep_changes} deep ask changes");
    }
}
