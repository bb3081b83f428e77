//! The order book: both sides as exact mantissas, updated in place, trimmed to the snapshot depth
//! after every update.
//!
//! Each side is a ladder stored worst level first and best level last. Binance's changes cluster
//! at the top of the book, so inserting or removing near the best price moves only the few
//! elements after it, and trimming the worst level is a pop from the front of a `VecDeque`.
//!
//! Why not a `BTreeMap` per side: `engine/benches/book_apply.rs` measures both. Applying updates alone
//! the map is faster (about 10 ns against 28 ns per level update, because a change deep in the
//! ladder moves up to half of it), but every applied message is published, which walks the whole
//! top 1000 of both sides; for that real per-message work (20 updates, trim, read both sides) the
//! ladder takes about 1.1 µs and the map about 16 µs. Since messages are published as their edits
//! (below), only whole publishes (snapshots, widened exponents) walk the side, which weakens that
//! argument; the ladder also gives each change its best-first index for free (its position), which
//! a map would have to count. Not re-measured yet.
//!
//! Each side also keeps a journal of its changes since the book was last published, as edits at
//! best-first indexes ([`LevelEdit`]): the publisher replays them into the shared-memory slot,
//! which costs O(levels changed) instead of a copy of the whole book (see `publish`). The journal
//! is dropped whenever it cannot say what changed (the book was cleared or its exponents
//! widened) or grew past [`MAX_JOURNAL`]; the next publish is then a whole one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;
use ubdcc_shm::{Decimal, LevelEdit, RawLevel, Side};

/// Edits a side's journal holds before it gives up and asks for a whole publish: by then a copy
/// of the side is as cheap (each edit writes at least one level, a whole side at most 1 000 for
/// Binance's deepest snapshot), and it bounds the journal at 12 KiB per side (24-byte edits) for
/// a book that is changed but not published for long (while it waits for sync).
pub(crate) const MAX_JOURNAL: usize = 512;

/// Identifies the state a book's journal starts from, unique in the process: a publisher that
/// holds the version a journal starts from can replay it; any other must publish the book whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BookVersion(u64);

impl BookVersion {
    fn fresh() -> Self {
        // Relaxed: only uniqueness matters; the number orders nothing.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The changes of a book since [`BookChanges::since`], per side in the order they happened, each
/// index counted best first in the side as the edits before it left it (the whole book, not only
/// what a segment holds).
#[derive(Debug, Clone, Copy)]
pub struct BookChanges<'a> {
    /// The version the edits apply to.
    pub since: BookVersion,
    /// Edits of the bids.
    pub bids: &'a [LevelEdit],
    /// Edits of the asks.
    pub asks: &'a [LevelEdit],
}

/// The book could not take a value without losing exactness.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BookError {
    /// A price or quantity does not fit the book's 64-bit mantissas at the book's precision.
    #[error("{what} {value} does not fit a 64-bit mantissa at exponent {exponent}")]
    Overflow {
        /// `price` or `quantity`.
        what: &'static str,
        /// The value, as the exchange sent it.
        value: String,
        /// The book's exponent for that column.
        exponent: i8,
    },
}

/// One side of the book, worst level first, with its journal.
#[derive(Debug, Clone)]
struct Ladder {
    side: Side,
    levels: VecDeque<RawLevel>,
    /// Changes since the last publish, best-first indexes; meaningful only while `journaling`.
    edits: Vec<LevelEdit>,
    /// `false` once the journal cannot say what changed (until the next publish).
    journaling: bool,
}

impl Ladder {
    fn new(side: Side) -> Self {
        Self {
            side,
            levels: VecDeque::new(),
            edits: Vec::new(),
            journaling: true,
        }
    }

    /// Appends an edit to the journal, or drops the journal when it is full.
    #[inline]
    fn record(&mut self, edit: LevelEdit) {
        if !self.journaling {
            return;
        }
        if self.edits.len() == MAX_JOURNAL {
            self.forget();
            return;
        }
        self.edits.push(edit);
    }

    /// Drops the journal: only a whole publish says what this side is now.
    fn forget(&mut self) {
        self.journaling = false;
        self.edits.clear();
    }

    /// Starts a new, empty journal.
    fn restart_journal(&mut self) {
        self.journaling = true;
        self.edits.clear();
    }

    /// Where `price` is (`Ok`) or would go (`Err`) in worst-to-best order.
    ///
    /// Gallops from the best end (the back) before it bisects: Binance's changes cluster at the
    /// top, so a change `k` levels from the best costs about `2 log2 k` probes instead of the ten
    /// of a bisection over 1 000 levels (`cargo bench -p ubdcc-engine --bench engine_message`:
    /// the two searches were 8 % of a 20-level message). Under `benches/dcn_load.py` (1 000
    /// books, each cold in the cache when its event comes) three quarters of this search is the
    /// first load, of the best level: a first guess interpolated on the tick grid, tried to save
    /// probes, changed nothing measurable there, so it was left out.
    #[inline]
    fn position(&self, price: u64) -> Result<usize, usize> {
        let side = self.side;
        // How `level` sorts against `price` in worst-to-best order.
        let order = |level: &RawLevel| match side {
            // Bids: worst is the lowest price, so ascending prices.
            Side::Bids => level.price.cmp(&price),
            // Asks: worst is the highest price, so descending prices.
            Side::Asks => price.cmp(&level.price),
        };
        let (mut low, mut high) = (0, self.levels.len());
        let mut step = 1;
        while step <= high {
            let probe = high - step;
            match order(&self.levels[probe]) {
                std::cmp::Ordering::Equal => return Ok(probe),
                std::cmp::Ordering::Less => {
                    low = probe + 1;
                    break;
                }
                std::cmp::Ordering::Greater => {
                    high = probe;
                    step *= 2;
                }
            }
        }
        // `price` sorts after every level below `low` and before every level from `high`.
        while low < high {
            let middle = low + (high - low) / 2;
            match order(&self.levels[middle]) {
                std::cmp::Ordering::Equal => return Ok(middle),
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
            }
        }
        Err(low)
    }

    /// Sets the absolute quantity at `price`; zero removes the level (also one that is unknown).
    /// Worst-first position `at` of `len` levels is best-first index `len - 1 - at`.
    #[inline]
    fn set(&mut self, price: u64, quantity: u64) {
        let len = self.levels.len() as u32;
        match (self.position(price), quantity) {
            (Ok(at), 0) => {
                self.levels.remove(at);
                self.record(LevelEdit::Remove {
                    at: len - 1 - at as u32,
                });
            }
            (Ok(at), _) => {
                self.levels[at].quantity = quantity;
                let level = self.levels[at];
                self.record(LevelEdit::Replace {
                    at: len - 1 - at as u32,
                    level,
                });
            }
            (Err(_), 0) => {}
            (Err(at), _) => {
                let level = RawLevel { price, quantity };
                self.levels.insert(at, level);
                // Inserted before worst-first `at`: best-first `len - at` of the `len + 1`.
                self.record(LevelEdit::Insert {
                    at: len - at as u32,
                    level,
                });
            }
        }
    }

    /// Keeps the best `depth` levels; each trimmed level is a removal at the worst end.
    #[inline]
    fn trim(&mut self, depth: usize) {
        let excess = self.levels.len().saturating_sub(depth);
        for _ in 0..excess {
            self.levels.pop_front();
            let at = self.levels.len() as u32;
            self.record(LevelEdit::Remove { at });
        }
    }

    /// Multiplies every mantissa of `column` by `factor`; `None` on overflow (then partly done:
    /// callers work on a copy).
    fn rescale(&mut self, column: Column, factor: u64) -> Option<()> {
        for level in &mut self.levels {
            let mantissa = column.of(level);
            *mantissa = mantissa.checked_mul(factor)?;
        }
        Some(())
    }
}

/// One of the two mantissa columns of a level, each with its own exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Price,
    Quantity,
}

impl Column {
    fn of(self, level: &mut RawLevel) -> &mut u64 {
        match self {
            Self::Price => &mut level.price,
            Self::Quantity => &mut level.quantity,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Price => "price",
            Self::Quantity => "quantity",
        }
    }
}

/// An exact order book kept to the best `depth` levels per side.
///
/// Prices share one exponent and quantities another, the most negative any value has needed, so
/// every level is an exact integer mantissa and comparisons are integer comparisons.
///
/// ```
/// use ubdcc_engine::OrderBook;
/// use ubdcc_shm::{Decimal, Side};
///
/// let d = |s: &str| Decimal::parse(s).unwrap();
/// let mut book = OrderBook::new(2);
/// book.apply(Side::Asks, d("100.00"), d("1.5"))?;
/// book.apply(Side::Asks, d("99.99"), d("2"))?;
/// book.apply(Side::Asks, d("100.01"), d("3"))?;
/// book.trim();
/// let best: Vec<_> = book.best_first(Side::Asks).map(|l| l.price).collect();
/// assert_eq!(best, [9999, 10000]); // 99.99 and 100.00 at exponent -2; 100.01 trimmed
/// # Ok::<(), ubdcc_engine::BookError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OrderBook {
    depth: usize,
    price_exponent: i8,
    quantity_exponent: i8,
    bids: Ladder,
    asks: Ladder,
    /// The version both sides' journals start from.
    since: BookVersion,
}

impl OrderBook {
    /// An empty book that keeps the best `depth` levels per side (the snapshot depth).
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            price_exponent: 0,
            quantity_exponent: 0,
            bids: Ladder::new(Side::Bids),
            asks: Ladder::new(Side::Asks),
            since: BookVersion::fresh(),
        }
    }

    /// Levels kept per side.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Keeps the best `depth` levels per side from the next [`OrderBook::trim`] on: a book
    /// rebuilt from a snapshot of another depth (a shallow start, a deeper copy) follows it.
    pub fn set_depth(&mut self, depth: usize) {
        self.depth = depth;
    }

    /// Exponent of every price mantissa.
    pub fn price_exponent(&self) -> i8 {
        self.price_exponent
    }

    /// Exponent of every quantity mantissa.
    pub fn quantity_exponent(&self) -> i8 {
        self.quantity_exponent
    }

    /// Number of levels on `side`.
    pub fn len(&self, side: Side) -> usize {
        self.ladder(side).levels.len()
    }

    /// `true` when both sides are empty.
    pub fn is_empty(&self) -> bool {
        self.bids.levels.is_empty() && self.asks.levels.is_empty()
    }

    /// Removes every level (a new snapshot must never inherit old levels). The journal is
    /// dropped: a whole publish is cheaper than thousands of removals.
    pub fn clear(&mut self) {
        self.bids.levels.clear();
        self.asks.levels.clear();
        self.bids.forget();
        self.asks.forget();
    }

    /// What changed since the book was last marked published ([`OrderBook::mark_published`]);
    /// `None` when the journal cannot say (the book was cleared, its exponents widened, or more
    /// than `MAX_JOURNAL` edits of a side piled up), and only a whole publish will do.
    pub fn changes(&self) -> Option<BookChanges<'_>> {
        (self.bids.journaling && self.asks.journaling).then(|| BookChanges {
            since: self.since,
            bids: &self.bids.edits,
            asks: &self.asks.edits,
        })
    }

    /// Marks the book's current state as published: the journal starts again, empty, from a new
    /// version, which is returned (the publisher keeps it to know what the slot holds).
    pub fn mark_published(&mut self) -> BookVersion {
        self.bids.restart_journal();
        self.asks.restart_journal();
        self.since = BookVersion::fresh();
        self.since
    }

    /// The level at best-first index `index` of `side`, if the side has that many.
    #[inline]
    pub fn level(&self, side: Side, index: usize) -> Option<RawLevel> {
        let levels = &self.ladder(side).levels;
        let at = levels.len().checked_sub(index + 1)?;
        levels.get(at).copied()
    }

    /// Sets the absolute quantity of the level at `price` on `side`; a zero quantity removes it,
    /// and removing a level the book does not hold is a no-op (normal on Binance).
    ///
    /// Does not trim; call [`OrderBook::trim`] once the whole event is applied.
    ///
    /// # Errors
    /// [`BookError::Overflow`] when the value cannot be held exactly; the book is unchanged.
    #[inline]
    pub fn apply(
        &mut self,
        side: Side,
        price: Decimal,
        quantity: Decimal,
    ) -> Result<(), BookError> {
        self.widen_exponents(price, quantity)?;
        let price_mantissa = price
            .rescale(self.price_exponent)
            .ok_or_else(|| overflow("price", price, self.price_exponent))?;
        let quantity_mantissa = if quantity.is_zero() {
            0
        } else {
            quantity
                .rescale(self.quantity_exponent)
                .ok_or_else(|| overflow("quantity", quantity, self.quantity_exponent))?
                .mantissa()
        };
        match side {
            Side::Bids => self.bids.set(price_mantissa.mantissa(), quantity_mantissa),
            Side::Asks => self.asks.set(price_mantissa.mantissa(), quantity_mantissa),
        }
        Ok(())
    }

    /// Keeps only the best [`OrderBook::depth`] levels of each side, by exact numeric price: the
    /// orphan rule (levels beyond the snapshot window are never corrected by Binance, so they must
    /// not be kept).
    #[inline]
    pub fn trim(&mut self) {
        self.bids.trim(self.depth);
        self.asks.trim(self.depth);
    }

    /// The levels of `side` worst first, as the two contiguous runs they are stored in: the
    /// cheapest way to copy a whole side (reverse the copy for best first).
    pub fn worst_first_runs(&self, side: Side) -> (&[RawLevel], &[RawLevel]) {
        self.ladder(side).levels.as_slices()
    }

    /// The levels of `side`, best first, as mantissas at [`OrderBook::price_exponent`] and
    /// [`OrderBook::quantity_exponent`].
    pub fn best_first(&self, side: Side) -> impl ExactSizeIterator<Item = RawLevel> + '_ {
        self.ladder(side).levels.iter().rev().copied()
    }

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Bids => &self.bids,
            Side::Asks => &self.asks,
        }
    }

    /// Lowers the book's exponents when a value has more fraction digits than any before, so the
    /// new value fits exactly. Binance formats each symbol with fixed decimals, so this happens at
    /// most once or twice per book.
    fn widen_exponents(&mut self, price: Decimal, quantity: Decimal) -> Result<(), BookError> {
        self.widen(Column::Price, price)?;
        if !quantity.is_zero() {
            self.widen(Column::Quantity, quantity)?;
        }
        Ok(())
    }

    /// Lowers `column`'s exponent to `value`'s if it has more fraction digits; on overflow the
    /// book is left as it was.
    fn widen(&mut self, column: Column, value: Decimal) -> Result<(), BookError> {
        let current = match column {
            Column::Price => self.price_exponent,
            Column::Quantity => self.quantity_exponent,
        };
        if value.exponent() >= current {
            return Ok(());
        }
        let too_big = || overflow(column.name(), value, value.exponent());
        let factor = pow10(current, value.exponent()).ok_or_else(too_big)?;
        let (mut bids, mut asks) = (self.bids.clone(), self.asks.clone());
        bids.rescale(column, factor)
            .and_then(|()| asks.rescale(column, factor))
            .ok_or_else(too_big)?;
        // Every mantissa changed: only a whole publish says so.
        bids.forget();
        asks.forget();
        (self.bids, self.asks) = (bids, asks);
        match column {
            Column::Price => self.price_exponent = value.exponent(),
            Column::Quantity => self.quantity_exponent = value.exponent(),
        }
        Ok(())
    }
}

/// `10^(from - to)` for `from > to`.
fn pow10(from: i8, to: i8) -> Option<u64> {
    10u64.checked_pow(u32::from(from.abs_diff(to)))
}

fn overflow(what: &'static str, value: Decimal, exponent: i8) -> BookError {
    BookError::Overflow {
        what,
        value: value.to_string(),
        exponent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    /// Levels best first as exact decimal strings.
    fn strings(book: &OrderBook, side: Side) -> Vec<(String, String)> {
        book.best_first(side)
            .map(|l| {
                (
                    Decimal::new(l.price, book.price_exponent()).to_string(),
                    Decimal::new(l.quantity, book.quantity_exponent()).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn zero_removes_and_unknown_removals_are_harmless() {
        let mut book = OrderBook::new(10);
        book.apply(Side::Bids, d("10.00"), d("1")).unwrap();
        book.apply(Side::Bids, d("9.00"), d("0.00000000")).unwrap();
        book.apply(Side::Bids, d("10.00"), d("0")).unwrap();
        assert!(book.is_empty());
    }

    #[test]
    fn trimming_is_numeric_across_digit_boundaries() {
        // The original sorted price strings and kept 100.00, 100.01, 100.02 here, deleting the
        // two best asks.
        let mut asks = OrderBook::new(3);
        for price in ["99.98", "99.99", "100.00", "100.01", "100.02"] {
            asks.apply(Side::Asks, d(price), d("1")).unwrap();
        }
        asks.trim();
        let kept: Vec<_> = strings(&asks, Side::Asks)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(kept, ["99.98", "99.99", "100.00"]);

        let mut bids = OrderBook::new(3);
        for price in ["100.50", "99.97", "99.96", "99.95", "9.00"] {
            bids.apply(Side::Bids, d(price), d("1")).unwrap();
        }
        bids.trim();
        let kept: Vec<_> = strings(&bids, Side::Bids)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(kept, ["100.50", "99.97", "99.96"]);
    }

    #[test]
    fn more_fraction_digits_widen_the_book_exactly() {
        let mut book = OrderBook::new(10);
        book.apply(Side::Asks, d("1.5"), d("2")).unwrap();
        book.apply(Side::Asks, d("1.25"), d("0.001")).unwrap();
        assert_eq!((book.price_exponent(), book.quantity_exponent()), (-2, -3));
        assert_eq!(
            strings(&book, Side::Asks),
            [
                ("1.25".into(), "0.001".into()),
                ("1.50".into(), "2.000".into())
            ]
        );
    }

    #[test]
    fn values_that_cannot_be_exact_are_errors_and_leave_the_book_unchanged() {
        let mut book = OrderBook::new(10);
        book.apply(Side::Bids, d("18446744073709551615"), d("1"))
            .unwrap();
        let error = book.apply(Side::Bids, d("0.1"), d("1")).unwrap_err();
        assert!(
            matches!(error, BookError::Overflow { what: "price", .. }),
            "{error}"
        );
        assert_eq!(book.len(Side::Bids), 1);
        assert_eq!(book.price_exponent(), 0);
    }

    /// The naive model: a BTreeMap per side keyed by exact value, trimmed by sorting.
    #[derive(Default)]
    struct Model {
        bids: BTreeMap<Decimal, Decimal>,
        asks: BTreeMap<Decimal, Decimal>,
    }

    impl Model {
        fn apply(&mut self, side: Side, price: Decimal, quantity: Decimal) {
            let map = match side {
                Side::Bids => &mut self.bids,
                Side::Asks => &mut self.asks,
            };
            // Keys by value: drop any representation of the same price first.
            map.retain(|p, _| p.to_f64() != price.to_f64());
            if !quantity.is_zero() {
                map.insert(price, quantity);
            }
        }

        fn trim(&mut self, depth: usize) {
            while self.bids.len() > depth {
                let worst = *self.bids.keys().next().unwrap();
                self.bids.remove(&worst);
            }
            while self.asks.len() > depth {
                let worst = *self.asks.keys().next_back().unwrap();
                self.asks.remove(&worst);
            }
        }

        fn values(&self, side: Side) -> Vec<(f64, f64)> {
            let pairs = |(p, q): (&Decimal, &Decimal)| (p.to_f64(), q.to_f64());
            match side {
                Side::Bids => self.bids.iter().rev().map(pairs).collect(),
                Side::Asks => self.asks.iter().map(pairs).collect(),
            }
        }
    }

    fn values(book: &OrderBook, side: Side) -> Vec<(f64, f64)> {
        book.best_first(side)
            .map(|l| {
                (
                    Decimal::new(l.price, book.price_exponent()).to_f64(),
                    Decimal::new(l.quantity, book.quantity_exponent()).to_f64(),
                )
            })
            .collect()
    }

    fn update() -> impl Strategy<Value = (bool, u64, u8, u64, u8)> {
        // Prices around 100 with 2 or 3 decimals (digit boundary crossings), quantities with
        // 0..=4 decimals, a fifth of them zero (deletions).
        (any::<bool>(), 9_900u64..10_100, 2u8..=3, 0u64..50, 0u8..=4)
            .prop_map(|(bid, p, pd, q, qd)| (bid, p, pd, if q % 5 == 0 { 0 } else { q }, qd))
    }

    proptest! {
        #[test]
        fn search_agrees_with_a_bisection_on_any_spacing(
            gaps in proptest::collection::vec(1u64..1_000, 0..300),
            skew in 0u32..4,
            asks in any::<bool>(),
            probes in proptest::collection::vec(0u64..400_000, 1..64),
        ) {
            // Levels on an uneven grid, searched for prices on and off it: the gallop from the
            // best end must give the plain bisection's answer.
            let side = if asks { Side::Asks } else { Side::Bids };
            let mut ladder = Ladder::new(side);
            let mut price = 1_000u64;
            let mut prices = Vec::new();
            for gap in gaps {
                price += gap.pow(1 + skew % 2) / (1 + u64::from(skew));
                prices.push(price);
                price += 1;
            }
            // Worst first: ascending for bids, descending for asks.
            if asks {
                prices.reverse();
            }
            for &price in &prices {
                ladder.levels.push_back(RawLevel { price, quantity: 1 });
            }
            for probe in probes.into_iter().chain(prices.iter().copied()) {
                let expected = match side {
                    Side::Bids => ladder.levels.binary_search_by(|l| l.price.cmp(&probe)),
                    Side::Asks => ladder.levels.binary_search_by(|l| probe.cmp(&l.price)),
                };
                prop_assert_eq!(ladder.position(probe), expected, "probe {}", probe);
            }
        }

        #[test]
        fn random_updates_match_the_naive_model(updates in proptest::collection::vec(update(), 1..400), depth in 1usize..40) {
            let mut book = OrderBook::new(depth);
            let mut model = Model::default();
            for (i, (bid, p, pd, q, qd)) in updates.into_iter().enumerate() {
                let side = if bid { Side::Bids } else { Side::Asks };
                let price = Decimal::new(if pd == 3 { p * 10 } else { p }, -(pd as i8));
                let quantity = Decimal::new(q, -(qd as i8));
                book.apply(side, price, quantity).unwrap();
                model.apply(side, price, quantity);
                // Trim after every "event" of a few updates.
                if i % 3 == 0 {
                    book.trim();
                    model.trim(depth);
                }
            }
            book.trim();
            model.trim(depth);
            prop_assert_eq!(values(&book, Side::Bids), model.values(Side::Bids));
            prop_assert_eq!(values(&book, Side::Asks), model.values(Side::Asks));
        }
    }
}
