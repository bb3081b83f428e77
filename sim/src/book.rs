//! The simulator's order book: the exchange-side truth for one market, every level of both sides,
//! keyed by price mantissa (exact; never floats).

use std::collections::BTreeMap;

/// A side of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Buy orders; best is the highest price.
    Bid,
    /// Sell orders; best is the lowest price.
    Ask,
}

impl Side {
    /// Both sides.
    pub(crate) const BOTH: [Side; 2] = [Side::Bid, Side::Ask];
}

/// One price level: price and quantity mantissas.
pub(crate) type Level = (u64, u64);

/// Both sides of a book. An empty level never exists: a zero quantity removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Book {
    /// Bids by price.
    bids: BTreeMap<u64, u64>,
    /// Asks by price.
    asks: BTreeMap<u64, u64>,
}

impl Book {
    /// Sets a level's absolute quantity; zero removes it (removing a missing level is a no-op,
    /// as on Binance).
    pub(crate) fn set(&mut self, side: Side, price: u64, quantity: u64) {
        let levels = self.side_mut(side);
        if quantity == 0 {
            levels.remove(&price);
        } else {
            levels.insert(price, quantity);
        }
    }

    /// Applies every level of a diff: bids, then asks.
    pub(crate) fn apply(&mut self, bids: &[Level], asks: &[Level]) {
        for &(price, quantity) in bids {
            self.set(Side::Bid, price, quantity);
        }
        for &(price, quantity) in asks {
            self.set(Side::Ask, price, quantity);
        }
    }

    /// Number of levels on a side.
    pub(crate) fn len(&self, side: Side) -> usize {
        self.side_ref(side).len()
    }

    /// A side's levels, best first.
    pub(crate) fn best_first(&self, side: Side) -> Box<dyn Iterator<Item = Level> + '_> {
        let levels = self.side_ref(side).iter().map(|(&p, &q)| (p, q));
        match side {
            Side::Bid => Box::new(levels.rev()),
            Side::Ask => Box::new(levels),
        }
    }

    /// A side's levels, worst first.
    pub(crate) fn worst_first(&self, side: Side) -> Box<dyn Iterator<Item = Level> + '_> {
        let levels = self.side_ref(side).iter().map(|(&p, &q)| (p, q));
        match side {
            Side::Bid => Box::new(levels),
            Side::Ask => Box::new(levels.rev()),
        }
    }

    /// The best level of a side, `None` when the side is empty.
    pub(crate) fn best(&self, side: Side) -> Option<Level> {
        self.best_first(side).next()
    }

    /// The level `index` places from the best (0 is the best), `None` past the end.
    pub(crate) fn nth_best(&self, side: Side, index: usize) -> Option<Level> {
        self.best_first(side).nth(index)
    }

    /// The best `limit` levels of a side.
    pub(crate) fn top(&self, side: Side, limit: usize) -> Vec<Level> {
        self.best_first(side).take(limit).collect()
    }

    fn side_ref(&self, side: Side) -> &BTreeMap<u64, u64> {
        match side {
            Side::Bid => &self.bids,
            Side::Ask => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<u64, u64> {
        match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_quantity_removes_a_level_and_missing_levels_are_ignored() {
        let mut book = Book::default();
        book.apply(&[(100, 5), (99, 1)], &[(101, 2)]);
        book.apply(&[(100, 0), (50, 0)], &[]);
        assert_eq!(book.top(Side::Bid, 10), vec![(99, 1)]);
        assert_eq!(book.best(Side::Ask), Some((101, 2)));
    }

    #[test]
    fn sides_are_ordered_best_first() {
        let mut book = Book::default();
        book.apply(&[(1, 1), (3, 1), (2, 1)], &[(6, 1), (4, 1), (5, 1)]);
        assert_eq!(book.top(Side::Bid, 3), vec![(3, 1), (2, 1), (1, 1)]);
        assert_eq!(book.top(Side::Ask, 2), vec![(4, 1), (5, 1)]);
        assert_eq!(book.nth_best(Side::Ask, 2), Some((6, 1)));
        assert_eq!(book.worst_first(Side::Bid).next(), Some((1, 1)));
    }
}
