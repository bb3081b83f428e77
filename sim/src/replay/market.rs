//! One replayed market: the exchange's book as the recording knows it, kept with the simulator's
//! own [`Book`] from the recorded starting books and the diff events streamed since, so a REST
//! snapshot can be answered at the update id the replay has reached.
//!
//! The recording knows the book only from a starting book on: after a gap in the recorded
//! stream (an injected fault, a recorder that fell behind) it is unknown until the next recorded
//! starting book, and snapshot requests wait for that. Events met while the book is unknown are
//! kept (the newest [`PENDING_EVENTS`]) and applied after the next starting book by the same
//! rules, as a client does with its buffer: a recorder tees a frame when it arrives, before its
//! node has loaded the snapshot it asked for, so frames past a starting book's id can precede
//! it in the recording.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::book::{Book, Level, Side};
use crate::decimal::format_decimal;

/// Events kept per market while its book is unknown: 100 s at Binance's fastest 10 events/s.
const PENDING_EVENTS: usize = 1000;

/// A depth event's fields the replay needs (the frame itself is forwarded unchanged).
#[derive(Debug, Deserialize)]
pub(super) struct DepthEvent {
    /// The symbol.
    #[serde(rename = "s")]
    pub(super) symbol: String,
    /// `E`, ms.
    #[serde(rename = "E", default)]
    pub(super) event_time_ms: u64,
    #[serde(rename = "U")]
    first_update_id: u64,
    #[serde(rename = "u")]
    last_update_id: u64,
    /// Futures and options: the previous event's `u`.
    #[serde(rename = "pu", default)]
    previous_update_id: Option<u64>,
    #[serde(rename = "b")]
    bids: Vec<[String; 2]>,
    #[serde(rename = "a")]
    asks: Vec<[String; 2]>,
}

/// A recorded starting book.
#[derive(Debug, Deserialize)]
pub(super) struct StartingBook {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    bids: Vec<[String; 2]>,
    asks: Vec<[String; 2]>,
}

/// The book of one market as far as the recording knows it.
#[derive(Debug, Default)]
pub(super) struct ReplayMarket {
    book: Book,
    /// Decimals of prices and quantities (from the starting book's strings).
    decimals: (u32, u32),
    /// The update id the book is at; `None` while it is unknown.
    at: Option<u64>,
    /// `E` of the last applied event (futures snapshots carry it).
    event_time_ms: u64,
    /// Events met while the book is unknown, oldest first.
    pending: VecDeque<DepthEvent>,
}

impl ReplayMarket {
    /// The update id the book is at, if it is known.
    #[cfg(test)]
    pub(super) fn update_id(&self) -> Option<u64> {
        self.at
    }

    /// Resets the book to a recorded starting book.
    pub(super) fn load(&mut self, start: &StartingBook) {
        let decimals_of = |pick: fn(&[String; 2]) -> &str| {
            start
                .bids
                .iter()
                .chain(&start.asks)
                .map(|level| fraction_digits(pick(level)))
                .max()
                .unwrap_or(0)
        };
        self.decimals = (decimals_of(|l| &l[0]), decimals_of(|l| &l[1]));
        self.book = Book::default();
        self.at = None;
        let (Some(bids), Some(asks)) = (self.levels(&start.bids), self.levels(&start.asks)) else {
            tracing::warn!(
                "a recorded starting book does not parse; the market waits for the next"
            );
            return;
        };
        self.book.apply(&bids, &asks);
        self.at = Some(start.last_update_id);
        for event in std::mem::take(&mut self.pending) {
            self.apply(event);
        }
    }

    /// Applies `event` if it continues the book (Binance's rules, both families), marks the book
    /// unknown at a gap; an event the book already holds is ignored.
    pub(super) fn apply(&mut self, event: DepthEvent) {
        let Some(at) = self.at else {
            self.keep(event);
            return;
        };
        if event.last_update_id < at {
            return;
        }
        let continues = event.previous_update_id == Some(at) || event.first_update_id <= at + 1;
        let levels = (self.levels(&event.bids), self.levels(&event.asks));
        let (true, (Some(bids), Some(asks))) = (continues, levels) else {
            self.at = None;
            self.keep(event);
            return;
        };
        self.book.apply(&bids, &asks);
        self.at = Some(event.last_update_id);
        self.event_time_ms = event.event_time_ms;
    }

    /// Keeps an event met while the book is unknown, dropping the oldest beyond the bound.
    fn keep(&mut self, event: DepthEvent) {
        if self.pending.len() == PENDING_EVENTS {
            self.pending.pop_front();
        }
        self.pending.push_back(event);
    }

    /// The REST depth answer: the best `limit` levels per side, in the family's shape (spot's
    /// `lastUpdateId, bids, asks`; the derivatives' add `E` and `T`).
    pub(super) fn depth_json(&self, limit: usize, derivatives: bool) -> Option<String> {
        let at = self.at?;
        let side = |side: Side| -> Vec<[String; 2]> {
            self.book
                .best_first(side)
                .take(limit)
                .map(|(price, quantity)| {
                    [
                        format_decimal(price, self.decimals.0),
                        format_decimal(quantity, self.decimals.1),
                    ]
                })
                .collect()
        };
        let mut answer = serde_json::json!({
            "lastUpdateId": at,
            "bids": side(Side::Bid),
            "asks": side(Side::Ask),
        });
        if derivatives {
            answer["E"] = self.event_time_ms.into();
            answer["T"] = self.event_time_ms.into();
        }
        Some(answer.to_string())
    }

    fn levels(&self, levels: &[[String; 2]]) -> Option<Vec<Level>> {
        levels
            .iter()
            .map(|[price, quantity]| {
                Some((
                    mantissa(price, self.decimals.0)?,
                    mantissa(quantity, self.decimals.1)?,
                ))
            })
            .collect()
    }
}

/// Digits after the point of a decimal string.
fn fraction_digits(text: &str) -> u32 {
    text.split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as u32)
}

/// The mantissa of `text` at `decimals` fraction digits; `None` when it has more significant
/// digits than that, or is not a plain decimal.
fn mantissa(text: &str, decimals: u32) -> Option<u64> {
    let (int, fraction) = text.split_once('.').unwrap_or((text, ""));
    let significant = fraction.trim_end_matches('0');
    if significant.len() > decimals as usize {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(10u64.checked_pow(decimals)?)?;
    let mut scale = 10u64.pow(decimals);
    for digit in fraction.bytes().take(decimals as usize) {
        scale /= 10;
        let digit = u64::from(digit.checked_sub(b'0').filter(|d| *d <= 9)?);
        value = value.checked_add(digit * scale)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(p: &str, q: &str) -> [String; 2] {
        [p.into(), q.into()]
    }

    fn event(first: u64, last: u64, bids: Vec<[String; 2]>) -> DepthEvent {
        DepthEvent {
            symbol: "X".into(),
            event_time_ms: 1,
            first_update_id: first,
            last_update_id: last,
            previous_update_id: None,
            bids,
            asks: vec![],
        }
    }

    #[test]
    fn mantissas_are_exact_at_the_market_decimals() {
        assert_eq!(mantissa("100.01000000", 8), Some(10_001_000_000));
        assert_eq!(mantissa("0.5", 2), Some(50));
        assert_eq!(mantissa("0.005", 2), None);
        assert_eq!(mantissa("1x", 2), None);
    }

    #[test]
    fn the_book_follows_events_and_is_unknown_after_a_gap() {
        let mut market = ReplayMarket::default();
        market.load(&StartingBook {
            last_update_id: 10,
            bids: vec![level("99.00", "1.0")],
            asks: vec![level("101.00", "2.0")],
        });
        market.apply(event(5, 9, vec![level("99.00", "0.0")]));
        assert_eq!(market.update_id(), Some(10), "an old event is ignored");
        market.apply(event(11, 12, vec![level("98.50", "3.0")]));
        let depth = market.depth_json(10, false).expect("known");
        assert!(depth.contains(r#""lastUpdateId":12"#), "{depth}");
        assert!(
            depth.contains(r#"["99.00","1.0"],["98.50","3.0"]"#),
            "{depth}"
        );
        market.apply(event(14, 15, vec![]));
        assert_eq!(market.update_id(), None, "a gap makes the book unknown");
        assert!(market.depth_json(10, false).is_none());
    }

    #[test]
    fn events_met_before_a_starting_book_are_applied_after_it() {
        let mut market = ReplayMarket::default();
        market.apply(event(9, 10, vec![level("97.00", "1.0")]));
        market.apply(event(11, 12, vec![level("96.00", "1.0")]));
        market.load(&StartingBook {
            last_update_id: 10,
            bids: vec![level("97.00", "1.0")],
            asks: vec![],
        });
        assert_eq!(market.update_id(), Some(12));
    }
}
