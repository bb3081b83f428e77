//! What a trading loop asks of a book beyond its levels, computed on one consistent read: the
//! price of a fill of a given size ([`fill_price`]) and the shape of the top of the book
//! ([`depth_stats`]). Pure functions over best-first [`Level`]s, so the REST API, the C ABI and
//! the Python binding answer with the same numbers (issue 14).
//!
//! Conventions: slippage is in basis points against the best price, positive when the fill is
//! worse than it (a buy above the best ask, a sell below the best bid); a fill that the levels
//! cannot complete says so (`complete: false`) instead of pretending.

use crate::Level;

/// How much to fill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillAmount {
    /// A quantity of the base asset (e.g. BTC of BTCUSDT).
    Base(f64),
    /// An amount of the quote asset to spend or receive (e.g. USDT of BTCUSDT).
    Quote(f64),
}

/// The price of a fill against one side of a book.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillPrice {
    /// Quote filled / base filled; `None` when nothing could be filled.
    pub average_price: Option<f64>,
    /// The price of the last (worst) level used.
    pub worst_price: Option<f64>,
    /// Base quantity filled.
    pub filled_quantity: f64,
    /// Quote amount filled.
    pub filled_quote: f64,
    /// `false` when the levels ran out before the amount was filled.
    pub complete: bool,
    /// Basis points the average is worse than the best price.
    pub slippage_bps: Option<f64>,
    /// Levels touched.
    pub levels_used: usize,
}

/// Fills `amount` against `levels` (best first: the asks for a buy, the bids for a sell).
/// Amounts that are not finite and positive fill nothing.
///
/// ```
/// use ubdcc_shm::{FillAmount, Level, fill_price};
/// let asks = [Level { price: 100.0, quantity: 1.0 }, Level { price: 101.0, quantity: 2.0 }];
/// let fill = fill_price(&asks, FillAmount::Base(2.0));
/// assert_eq!(fill.average_price, Some(100.5));
/// assert_eq!((fill.levels_used, fill.complete), (2, true));
/// ```
pub fn fill_price(levels: &[Level], amount: FillAmount) -> FillPrice {
    let (target, by_quote) = match amount {
        FillAmount::Base(quantity) => (quantity, false),
        FillAmount::Quote(quote) => (quote, true),
    };
    let mut fill = FillPrice {
        average_price: None,
        worst_price: None,
        filled_quantity: 0.0,
        filled_quote: 0.0,
        complete: false,
        slippage_bps: None,
        levels_used: 0,
    };
    if !(target.is_finite() && target > 0.0) {
        return fill;
    }
    for level in levels {
        let filled = if by_quote {
            fill.filled_quote
        } else {
            fill.filled_quantity
        };
        let left = target - filled;
        if left <= 0.0 {
            break;
        }
        let available = if by_quote {
            level.price * level.quantity
        } else {
            level.quantity
        };
        let take = available.min(left);
        let quantity = if by_quote { take / level.price } else { take };
        fill.filled_quantity += quantity;
        fill.filled_quote += quantity * level.price;
        fill.worst_price = Some(level.price);
        fill.levels_used += 1;
        if take >= left {
            fill.complete = true;
            break;
        }
    }
    if fill.filled_quantity > 0.0 {
        let average = fill.filled_quote / fill.filled_quantity;
        fill.average_price = Some(average);
        fill.slippage_bps = levels
            .first()
            .map(|best| (average - best.price).abs() / best.price * 1e4);
    }
    fill
}

/// Quantity on each side within a band around the mid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Half-width of the band, in basis points of the mid.
    pub bps: f64,
    /// Bid quantity priced at or above `mid × (1 − bps/10⁴)`.
    pub bid_quantity: f64,
    /// Ask quantity priced at or below `mid × (1 + bps/10⁴)`.
    pub ask_quantity: f64,
    /// `true` when both sides hold a level beyond the band, so the band lies wholly within the
    /// levels read; `false` when the levels end inside it and the quantities are lower bounds.
    pub complete: bool,
}

/// The shape of the top of a book.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthStats {
    /// (best bid + best ask) / 2.
    pub mid: f64,
    /// Best ask − best bid.
    pub spread: f64,
    /// Spread in basis points of the mid.
    pub spread_bps: f64,
    /// The size-weighted mid: (bid × ask quantity + ask × bid quantity) / (bid + ask quantity)
    /// of the best levels.
    pub microprice: f64,
    /// (bid − ask quantity) / (bid + ask quantity) over the top `top_n` levels of each side.
    pub imbalance: f64,
    /// Levels per side the imbalance was taken over.
    pub top_n: usize,
    /// Quantity within each band asked for.
    pub bands: Vec<Band>,
}

/// The statistics of a book (`bids` and `asks` best first, from one read); `None` when a side is
/// empty (no mid exists).
///
/// ```
/// use ubdcc_shm::{Level, depth_stats};
/// let bids = [Level { price: 99.0, quantity: 3.0 }];
/// let asks = [Level { price: 101.0, quantity: 1.0 }];
/// let stats = depth_stats(&bids, &asks, 10, &[100.0]).unwrap();
/// assert_eq!((stats.mid, stats.spread, stats.microprice), (100.0, 2.0, 100.5));
/// assert_eq!(stats.imbalance, 0.5);
/// ```
pub fn depth_stats(
    bids: &[Level],
    asks: &[Level],
    top_n: usize,
    bps: &[f64],
) -> Option<DepthStats> {
    let (bid, ask) = (bids.first()?, asks.first()?);
    let mid = (bid.price + ask.price) / 2.0;
    let spread = ask.price - bid.price;
    let top = |levels: &[Level]| -> f64 { levels.iter().take(top_n).map(|l| l.quantity).sum() };
    let (bid_top, ask_top) = (top(bids), top(asks));
    let imbalance = if bid_top + ask_top > 0.0 {
        (bid_top - ask_top) / (bid_top + ask_top)
    } else {
        0.0
    };
    let microprice =
        (bid.price * ask.quantity + ask.price * bid.quantity) / (bid.quantity + ask.quantity);
    let bands = bps
        .iter()
        .map(|&bps| {
            let (low, high) = (mid * (1.0 - bps / 1e4), mid * (1.0 + bps / 1e4));
            let within = |levels: &[Level], inside: &dyn Fn(f64) -> bool| -> (f64, bool) {
                let quantity = levels
                    .iter()
                    .take_while(|l| inside(l.price))
                    .map(|l| l.quantity)
                    .sum();
                (quantity, levels.iter().any(|l| !inside(l.price)))
            };
            let (bid_quantity, bids_beyond) = within(bids, &|price| price >= low);
            let (ask_quantity, asks_beyond) = within(asks, &|price| price <= high);
            Band {
                bps,
                bid_quantity,
                ask_quantity,
                complete: bids_beyond && asks_beyond,
            }
        })
        .collect();
    Some(DepthStats {
        mid,
        spread,
        spread_bps: spread / mid * 1e4,
        microprice,
        imbalance,
        top_n,
        bands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(pairs: &[(f64, f64)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|&(price, quantity)| Level { price, quantity })
            .collect()
    }

    #[test]
    fn a_buy_by_base_quantity_walks_the_asks_and_reports_its_slippage() {
        let asks = levels(&[(100.0, 1.0), (102.0, 1.0), (104.0, 5.0)]);
        let fill = fill_price(&asks, FillAmount::Base(2.5));
        assert_eq!(fill.filled_quantity, 2.5);
        assert_eq!(fill.filled_quote, 100.0 + 102.0 + 0.5 * 104.0);
        assert_eq!(fill.average_price, Some(254.0 / 2.5));
        assert_eq!(fill.worst_price, Some(104.0));
        assert_eq!((fill.levels_used, fill.complete), (3, true));
        let slippage = fill.slippage_bps.unwrap();
        assert!(
            (slippage - (101.6 - 100.0) / 100.0 * 1e4).abs() < 1e-9,
            "{slippage}"
        );
    }

    #[test]
    fn a_sell_by_quote_amount_stops_exactly_at_the_amount() {
        let bids = levels(&[(50.0, 2.0), (40.0, 10.0)]);
        let fill = fill_price(&bids, FillAmount::Quote(180.0));
        assert_eq!(fill.filled_quote, 180.0);
        assert_eq!(fill.filled_quantity, 2.0 + 80.0 / 40.0);
        assert_eq!((fill.levels_used, fill.complete), (2, true));
        assert_eq!(fill.worst_price, Some(40.0));
    }

    #[test]
    fn a_fill_the_book_cannot_complete_says_so() {
        let asks = levels(&[(10.0, 1.0)]);
        let fill = fill_price(&asks, FillAmount::Base(3.0));
        assert_eq!((fill.filled_quantity, fill.complete), (1.0, false));
        let empty = fill_price(&[], FillAmount::Base(1.0));
        assert_eq!(
            (empty.average_price, empty.complete, empty.levels_used),
            (None, false, 0)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                fill_price(&asks, FillAmount::Base(bad)).levels_used,
                0,
                "{bad}"
            );
        }
    }

    #[test]
    fn depth_stats_measure_the_top_and_the_bands_around_the_mid() {
        let bids = levels(&[(99.9, 1.0), (99.5, 2.0), (98.0, 4.0)]);
        let asks = levels(&[(100.1, 3.0), (100.4, 1.0), (103.0, 8.0)]);
        let stats = depth_stats(&bids, &asks, 2, &[50.0, 300.0]).unwrap();
        assert!((stats.mid - 100.0).abs() < 1e-12);
        assert!((stats.spread - 0.2).abs() < 1e-12);
        assert!((stats.microprice - (99.9 * 3.0 + 100.1 * 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(stats.imbalance, (3.0 - 4.0) / 7.0);
        // ±50 bps of 100: bids ≥ 99.5, asks ≤ 100.5.
        assert_eq!(
            (stats.bands[0].bid_quantity, stats.bands[0].ask_quantity),
            (3.0, 4.0)
        );
        // ±300 bps: bids ≥ 97, asks ≤ 103.
        assert_eq!(
            (stats.bands[1].bid_quantity, stats.bands[1].ask_quantity),
            (7.0, 12.0)
        );
        assert!(stats.bands[0].complete);
        assert!(!stats.bands[1].complete, "no level beyond ±300 bps is held");
        assert!(depth_stats(&bids, &[], 2, &[]).is_none());
    }
}
