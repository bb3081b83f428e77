//! A self-checking book pattern for torture tests and benchmarks of the seqlock.
//!
//! Version `k` of a pattern book has `500 + k % 500` levels per side (when the segment holds that
//! many). With `a = k % 1_000_000`:
//!
//! | level `i` | price                      | quantity            |
//! |-----------|----------------------------|---------------------|
//! | ask       | `100000 + a % 1000 + i`    | `a + i / 1000`      |
//! | bid       | `99000 - a % 1000 - i`     | `a + i / 1000`      |
//!
//! Prices have exponent −2 and quantities −3, so every value is an exact decimal and every level
//! of one version is tied to its neighbours: a read that mixes two versions (a torn read) breaks
//! the relation somewhere, and [`validate`] reports it. Readers in other languages implement the
//! same check from this table (see `ffi/examples/torture_reader.c` and the Python tests).
//!
//! [`publish`] writes most versions as edits ([`crate::SegmentWriter::publish_edits`]) that move
//! the rings' heads in both directions, shift levels both ways and wrap around the ring, so the
//! torture tests exercise every write pattern a DCN uses, with a whole publish every
//! [`WHOLE_EVERY`] versions.

use crate::book::{BookEdits, BookMeta, BookSides, Level, LevelEdit, RawLevel};
use crate::error::WriteError;
use crate::proof::{TopHash, top_hash};
use crate::status::{BookStatus, Side};
use crate::writer::{BookHandle, SegmentWriter};

/// Price exponent of pattern books.
pub const PRICE_EXPONENT: i8 = -2;
/// Quantity exponent of pattern books.
pub const QUANTITY_EXPONENT: i8 = -3;

/// The depth every version is published with ([`crate::BookMeta::depth`]): a pattern book's market
/// never has more than 999 levels a side, so each version is complete to 1000 levels; a segment
/// with fewer levels per side shows the best of them, as a DCN's segment would.
pub const DEPTH: u32 = 1000;

/// Levels per side of version `k`, capped at the segment's capacity.
pub fn level_count(k: u64, levels_per_side: u32) -> usize {
    (500 + (k % 500) as usize).min(levels_per_side as usize)
}

/// Fills `asks` and `bids` with version `k` of the pattern.
pub fn fill(k: u64, levels_per_side: u32, bids: &mut Vec<RawLevel>, asks: &mut Vec<RawLevel>) {
    let a = k % 1_000_000;
    let count = level_count(k, levels_per_side) as u64;
    bids.clear();
    asks.clear();
    for i in 0..count {
        let quantity = a * 1000 + i;
        asks.push(RawLevel {
            price: (100_000 + a % 1000 + i) * 100,
            quantity,
        });
        bids.push(RawLevel {
            price: (99_000 - a % 1000 - i) * 100,
            quantity,
        });
    }
}

/// The meta published with version `k`: synced, `last_update_id = k`, depth [`DEPTH`].
pub fn meta(k: u64) -> BookMeta {
    BookMeta {
        status: BookStatus::Synced,
        last_update_id: k,
        event_time_ms: k,
        depth: DEPTH,
        ..BookMeta::starting()
    }
}

/// The sides of a filled version.
pub fn sides<'a>(bids: &'a [RawLevel], asks: &'a [RawLevel]) -> BookSides<'a> {
    BookSides {
        price_exponent: PRICE_EXPONENT,
        quantity_exponent: QUANTITY_EXPONENT,
        bids,
        asks,
    }
}

/// One version in [`WHOLE_EVERY`] is published whole, the others as edits.
pub const WHOLE_EVERY: u64 = 16;

/// Reusable buffers for [`publish`].
#[derive(Debug, Default)]
pub struct PatternScratch {
    bids: Vec<RawLevel>,
    asks: Vec<RawLevel>,
    bid_edits: Vec<LevelEdit>,
    ask_edits: Vec<LevelEdit>,
}

/// Publishes version `k` of the pattern into `book`: whole when the book has no published
/// version yet or `k` is a multiple of [`WHOLE_EVERY`], else as edits to whatever version the
/// slot holds.
///
/// # Errors
/// As [`SegmentWriter::publish`] and [`SegmentWriter::publish_edits`].
pub fn publish(
    writer: &mut SegmentWriter,
    book: BookHandle,
    k: u64,
    scratch: &mut PatternScratch,
) -> Result<(), WriteError> {
    let capacity = writer.levels_per_side();
    fill(k, capacity, &mut scratch.bids, &mut scratch.asks);
    // The engine hands the writer a hash of its top at ids every replica passes
    // (`SegmentWriter::set_top_hash`); the pattern hashes every version, so a reader's test can
    // recompute what it finds from `k` alone.
    let hash = top_hash(
        PRICE_EXPONENT,
        QUANTITY_EXPONENT,
        &scratch.bids,
        &scratch.asks,
    );
    writer.set_top_hash(book, TopHash { hash, update_id: k })?;
    let held = (
        writer.published_levels(book, Side::Bids),
        writer.published_levels(book, Side::Asks),
    );
    let (Some(bids_held), Some(asks_held)) = held else {
        return writer.publish(book, &meta(k), &sides(&scratch.bids, &scratch.asks));
    };
    if k % WHOLE_EVERY == 0 {
        return writer.publish(book, &meta(k), &sides(&scratch.bids, &scratch.asks));
    }
    edits_to(
        k,
        bids_held,
        capacity,
        &scratch.bids,
        &mut scratch.bid_edits,
    );
    edits_to(
        k,
        asks_held,
        capacity,
        &scratch.asks,
        &mut scratch.ask_edits,
    );
    let edits = BookEdits {
        bids: &scratch.bid_edits,
        asks: &scratch.ask_edits,
    };
    writer.publish_edits(book, &meta(k), &edits)
}

/// Edits that turn a side of `len` levels (any content) into `target`: first moves that shift the
/// head and levels both ways (a removal at the top, an insert a third down, a removal two thirds
/// down, on even versions an insert at the top: the head drifts one cell every other version),
/// then the length fixed at the worst end, then every level replaced.
fn edits_to(k: u64, mut len: u32, capacity: u32, target: &[RawLevel], out: &mut Vec<LevelEdit>) {
    let placeholder = RawLevel {
        price: u64::MAX,
        quantity: k,
    };
    out.clear();
    let insert = |out: &mut Vec<LevelEdit>, len: &mut u32, at: u32, level: RawLevel| {
        out.push(LevelEdit::Insert { at, level });
        *len = (*len + 1).min(capacity);
    };
    if len > 0 {
        out.push(LevelEdit::Remove { at: 0 });
        len -= 1;
    }
    if len > 2 {
        let at = len / 3;
        insert(out, &mut len, at, placeholder);
        out.push(LevelEdit::Remove { at: 2 * len / 3 });
        len -= 1;
    }
    if k % 2 == 0 {
        insert(out, &mut len, 0, placeholder);
    }
    let target_len = target.len() as u32;
    while len > target_len {
        out.push(LevelEdit::Remove { at: len - 1 });
        len -= 1;
    }
    while len < target_len {
        let at = len;
        insert(out, &mut len, at, target[at as usize]);
    }
    out.extend(
        target
            .iter()
            .enumerate()
            .map(|(at, &level)| LevelEdit::Replace {
                at: at as u32,
                level,
            }),
    );
}

/// Checks that `levels` (a best-first prefix of one side) are exactly version `k`'s, and that an
/// unlimited read returned the whole side.
///
/// # Errors
/// A description of the first level that does not belong to version `k`.
pub fn validate(
    k: u64,
    side: Side,
    levels: &[Level],
    limit: Option<usize>,
    levels_per_side: u32,
) -> Result<(), String> {
    let a = k % 1_000_000;
    let count = level_count(k, levels_per_side);
    let expected_len = limit.map_or(count, |limit| limit.min(count));
    if levels.len() != expected_len {
        return Err(format!(
            "version {k}: {} levels, expected {expected_len}",
            levels.len()
        ));
    }
    for (i, level) in levels.iter().enumerate() {
        let i = i as u64;
        let price = match side {
            Side::Asks => 100_000 + a % 1000 + i,
            Side::Bids => 99_000 - a % 1000 - i,
        };
        let quantity = crate::Decimal::new(a * 1000 + i, QUANTITY_EXPONENT).to_f64();
        if level.price != price as f64 || level.quantity != quantity {
            return Err(format!(
                "version {k} level {i}: got {level:?}, expected price {price} quantity {quantity}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::mantissa_to_f64;

    fn to_levels(raw: &[RawLevel]) -> Vec<Level> {
        raw.iter()
            .map(|l| Level {
                price: mantissa_to_f64(l.price, PRICE_EXPONENT),
                quantity: mantissa_to_f64(l.quantity, QUANTITY_EXPONENT),
            })
            .collect()
    }

    #[test]
    fn a_filled_version_validates_and_a_mixed_one_does_not() {
        let (mut bids, mut asks, mut bids2, mut asks2) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        fill(41, 1000, &mut bids, &mut asks);
        fill(42, 1000, &mut bids2, &mut asks2);
        assert_eq!(
            validate(41, Side::Asks, &to_levels(&asks), None, 1000),
            Ok(())
        );
        assert_eq!(
            validate(41, Side::Bids, &to_levels(&bids[..10]), Some(10), 1000),
            Ok(())
        );
        let mut torn = to_levels(&asks2[..10]);
        torn[5] = to_levels(&asks)[5];
        assert!(validate(42, Side::Asks, &torn, Some(10), 1000).is_err());
    }
}
