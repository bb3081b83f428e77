//! Audits (issue 16): proving a synced book against the exchange, level by level.
//!
//! Binance's update ids prove only that no event was lost on the wire. A change the exchange
//! never announced, a bug of ours, or a level that rotted beyond the snapshot window passes
//! every id check. An audit finds them: a REST snapshot, taken while the book is synced, is
//! brought to the live book's update id with copies of the live events — exactly how
//! `crate::deepening` builds its deeper shadow, whose [`Shadow`] it reuses — and the two books,
//! at the same update id, must then agree on every level both cover.
//!
//! What both cover, per side, is a range of prices ([`Coverage`]): a book loaded from a snapshot
//! knows every level down to the snapshot's worst price (the whole side when the snapshot had
//! fewer levels than it asked for), and keeps knowing them as events arrive, until a trim cuts
//! levels off its end: from then on it knows only down to its worst kept level. (Counting levels
//! instead would be wrong: after levels near the top vanish, a book holds fewer than its depth and
//! the exchange's next levels below it were never seen; a deep event may even add a level below
//! that hole.) Beyond the tighter of the two ranges a difference proves nothing.
//!
//! On a mismatch the audited book replaces the live one at the same update id, between two
//! events (make-before-break, as a deepening does): readers never see the book leave sync.

use std::cmp::Ordering;
use std::fmt;

use ubdcc_shm::{Decimal, RawLevel, Side};

use crate::binance::wire::LevelUpdate;
use crate::book::OrderBook;
use crate::snapshot::Snapshot;

/// Differing levels an audit logs at most (the count is always complete).
pub(crate) const LOGGED_DIFFERENCES: usize = 8;

/// Levels at the end of an audit snapshot's range left out of the comparison: while the audit
/// catches up with the live book its copy may trim a few levels off its end (a handful of events
/// in the time a snapshot takes), and the copy does not say where. 32 is many events' worth.
pub(crate) const CATCH_UP_MARGIN: usize = 32;

/// The prices a book is known to hold every level of, per side: down to `bid_floor` and up to
/// `ask_ceiling` (`None`: the whole side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Coverage {
    bid_floor: Option<Decimal>,
    ask_ceiling: Option<Decimal>,
}

impl Coverage {
    /// The coverage of `book`, just loaded from a snapshot and trimmed to its depth.
    pub(crate) fn of_loaded(book: &OrderBook) -> Self {
        let edge = |side: Side| -> Option<Decimal> {
            let len = book.len(side);
            if len < book.depth() {
                return None;
            }
            let level = book.level(side, len - 1)?;
            Some(Decimal::new(level.price, book.price_exponent()))
        };
        Self {
            bid_floor: edge(Side::Bids),
            ask_ceiling: edge(Side::Asks),
        }
    }

    /// The coverage of a book built from `snapshot` kept to `depth` levels, leaving out the last
    /// `margin` levels of a full side (see [`CATCH_UP_MARGIN`]; at most a tenth of the depth).
    pub(crate) fn of_snapshot(snapshot: &Snapshot, depth: usize, margin: usize) -> Self {
        let depth = depth.min(snapshot.depth as usize);
        let edge = |levels: &[LevelUpdate]| -> Option<Decimal> {
            if levels.len() < depth {
                return None;
            }
            // A tenth of the depth at most, so a shallow audit still compares most of its window.
            let index = depth.saturating_sub(1 + margin.min(depth / 10));
            levels.get(index).map(|level| level.price)
        };
        Self {
            bid_floor: edge(&snapshot.bids),
            ask_ceiling: edge(&snapshot.asks),
        }
    }

    /// After a trim cut levels off the end of `side` of `book`: it is known only down to its
    /// worst kept level from now on.
    pub(crate) fn trimmed(&mut self, book: &OrderBook, side: Side) {
        let Some(worst) = book
            .len(side)
            .checked_sub(1)
            .and_then(|i| book.level(side, i))
        else {
            return;
        };
        let worst = Decimal::new(worst.price, book.price_exponent());
        let edge = match side {
            Side::Bids => &mut self.bid_floor,
            Side::Asks => &mut self.ask_ceiling,
        };
        *edge = tighter(side, *edge, Some(worst));
    }

    fn edge(&self, side: Side) -> Option<Decimal> {
        match side {
            Side::Bids => self.bid_floor,
            Side::Asks => self.ask_ceiling,
        }
    }
}

/// One level on which the live book and the exchange's disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LevelDifference {
    /// The side.
    pub(crate) side: Side,
    /// The price.
    pub(crate) price: Decimal,
    /// The live book's quantity there (`None`: it has no level there).
    pub(crate) live: Option<Decimal>,
    /// The exchange's quantity there (`None`: it has no level there).
    pub(crate) exchange: Option<Decimal>,
}

impl fmt::Display for LevelDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::Bids => "bid",
            Side::Asks => "ask",
        };
        let quantity = |q: Option<Decimal>| q.map_or_else(|| "none".to_owned(), |q| q.to_string());
        write!(
            f,
            "{side} {}: live {}, exchange {}",
            self.price,
            quantity(self.live),
            quantity(self.exchange)
        )
    }
}

/// The levels `live` and `audited` disagree on within the prices both cover; empty when they
/// agree.
pub(crate) fn differences(
    (live, live_coverage): (&OrderBook, Coverage),
    (audited, audited_coverage): (&OrderBook, Coverage),
) -> Vec<LevelDifference> {
    let mut found = Vec::new();
    for side in [Side::Bids, Side::Asks] {
        let bound = tighter(side, live_coverage.edge(side), audited_coverage.edge(side));
        let (live_side, audited_side) = (column(live, side), column(audited, side));
        compare(side, &live_side, &audited_side, bound, &mut found);
    }
    found
}

/// One side of a book as exact decimals, best first.
fn column(book: &OrderBook, side: Side) -> Vec<(Decimal, Decimal)> {
    let (price_exponent, quantity_exponent) = (book.price_exponent(), book.quantity_exponent());
    let decimal = |level: RawLevel| {
        (
            Decimal::new(level.price, price_exponent),
            Decimal::new(level.quantity, quantity_exponent),
        )
    };
    book.best_first(side).map(decimal).collect()
}

/// Numeric order, whatever the exponents (`Decimal`'s own order breaks ties by exponent).
fn value_cmp(a: Decimal, b: Decimal) -> Ordering {
    let exponent = a.exponent().min(b.exponent());
    let widen = |d: Decimal| {
        u128::from(d.mantissa()) * 10u128.pow(u32::from(d.exponent().abs_diff(exponent)))
    };
    widen(a).cmp(&widen(b))
}

/// `a` before `b` on `side`, best first.
fn better(side: Side, a: Decimal, b: Decimal) -> Ordering {
    match side {
        Side::Bids => value_cmp(b, a),
        Side::Asks => value_cmp(a, b),
    }
}

/// The edge nearer the top of the two (both sides are known only down to it).
fn tighter(side: Side, a: Option<Decimal>, b: Option<Decimal>) -> Option<Decimal> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if better(side, a, b).is_le() { a } else { b }),
        (edge, None) | (None, edge) => edge,
    }
}

fn compare(
    side: Side,
    live: &[(Decimal, Decimal)],
    audited: &[(Decimal, Decimal)],
    bound: Option<Decimal>,
    found: &mut Vec<LevelDifference>,
) {
    let within = |price: Decimal| bound.is_none_or(|edge| better(side, price, edge).is_le());
    let mut live_levels = live.iter().copied().take_while(|l| within(l.0)).peekable();
    let mut audited_levels = audited
        .iter()
        .copied()
        .take_while(|l| within(l.0))
        .peekable();
    loop {
        let difference = match (live_levels.peek().copied(), audited_levels.peek().copied()) {
            (None, None) => return,
            (Some((price, quantity)), None) => {
                live_levels.next();
                Some((price, Some(quantity), None))
            }
            (None, Some((price, quantity))) => {
                audited_levels.next();
                Some((price, None, Some(quantity)))
            }
            (Some(l), Some(a)) => match better(side, l.0, a.0) {
                Ordering::Less => {
                    live_levels.next();
                    Some((l.0, Some(l.1), None))
                }
                Ordering::Greater => {
                    audited_levels.next();
                    Some((a.0, None, Some(a.1)))
                }
                Ordering::Equal => {
                    live_levels.next();
                    audited_levels.next();
                    (value_cmp(l.1, a.1) != Ordering::Equal).then_some((l.0, Some(l.1), Some(a.1)))
                }
            },
        };
        if let Some((price, live, exchange)) = difference {
            found.push(LevelDifference {
                side,
                price,
                live,
                exchange,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(depth: usize, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> OrderBook {
        let mut book = OrderBook::new(depth);
        for (side, levels) in [(Side::Bids, bids), (Side::Asks, asks)] {
            for (price, quantity) in levels {
                book.apply(side, price.parse().unwrap(), quantity.parse().unwrap())
                    .unwrap();
            }
        }
        book.trim();
        book
    }

    fn loaded(book: &OrderBook) -> (&OrderBook, Coverage) {
        (book, Coverage::of_loaded(book))
    }

    fn set(book: &mut OrderBook, price: &str, quantity: &str) {
        book.apply(
            Side::Bids,
            price.parse().unwrap(),
            quantity.parse().unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn equal_books_agree_whatever_their_exponents() {
        let live = book(3, &[("9.5", "1"), ("9.4", "2")], &[("10", "1")]);
        let audited = book(3, &[("9.50", "1.000"), ("9.40", "2")], &[("10.0", "1")]);
        assert_eq!(differences(loaded(&live), loaded(&audited)), []);
    }

    #[test]
    fn a_changed_a_missing_and_a_ghost_level_are_each_found() {
        let live = book(
            5,
            &[("9.5", "1"), ("9.4", "2"), ("9.3", "1")],
            &[("10", "1"), ("11", "1")],
        );
        let audited = book(
            5,
            &[("9.5", "1"), ("9.4", "3"), ("9.2", "1")],
            &[("10", "1"), ("10.5", "1"), ("11", "1")],
        );
        let found: Vec<String> = differences(loaded(&live), loaded(&audited))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "bid 9.4: live 2, exchange 3",
                "bid 9.3: live 1, exchange none",
                "bid 9.2: live none, exchange 1",
                "ask 10.5: live none, exchange 1",
            ]
        );
    }

    #[test]
    fn levels_beyond_what_either_book_covers_prove_nothing() {
        // The live snapshot reached 8; the audit's reached 7.
        let live = book(2, &[("9", "1"), ("8", "1")], &[]);
        let audited = book(3, &[("9", "1"), ("8", "1"), ("7", "1")], &[]);
        assert_eq!(differences(loaded(&live), loaded(&audited)), []);
        // A snapshot that had fewer levels than it asked for is the whole side.
        let whole = book(5, &[("9", "1")], &[]);
        assert_eq!(differences(loaded(&live), loaded(&whole)).len(), 1);
    }

    #[test]
    fn a_book_that_lost_its_top_levels_is_not_blamed_for_the_levels_below_it() {
        // Loaded 3 deep (down to 7), then 9 vanished by an event: it holds 2 levels, and the
        // exchange's next level below 7 (6) was never seen. Then a deep event added 4.
        let mut live = book(3, &[("9", "1"), ("8", "1"), ("7", "1")], &[]);
        let coverage = Coverage::of_loaded(&live);
        set(&mut live, "9", "0");
        set(&mut live, "4", "1");
        live.trim();
        let audited = book(3, &[("8", "1"), ("7", "1"), ("6", "1")], &[]);
        assert_eq!(differences((&live, coverage), loaded(&audited)), []);
    }

    #[test]
    fn a_trim_narrows_what_a_book_covers() {
        let mut live = book(2, &[("9", "1"), ("8", "1")], &[]);
        let mut coverage = Coverage::of_loaded(&live);
        // A new best bid pushes 8 out: below 9 nothing is known any more.
        set(&mut live, "10", "1");
        live.trim();
        coverage.trimmed(&live, Side::Bids);
        let audited = book(3, &[("10", "1"), ("9", "1"), ("8.5", "1")], &[]);
        assert_eq!(differences((&live, coverage), loaded(&audited)), []);
    }
}
