//! A book slot: one book's status, ids, timestamps, best bid and ask, change stamp, proof
//! metadata and both sides of levels as rings (see `ring`), guarded by one sequence word so a
//! reader always sees all of it from a single publish.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::ring::LevelCells;

/// Default capacity of each side, matching the depth of Binance's largest snapshot.
pub const DEFAULT_LEVELS_PER_SIDE: u32 = 1000;

/// Largest capacity of a side a segment may be created with.
pub const MAX_LEVELS_PER_SIDE: u32 = 5000;

/// The fixed part of a slot (192 bytes); the levels follow it.
///
/// Lines 0 and 1 hold everything a best bid/ask read needs (also the change stamp), line 2 what
/// only fuller reads and waiters need, so [`crate::ClusterReader::bbo`] still touches two lines.
#[repr(C, align(64))]
pub struct SlotHeader {
    // -- cache line 0 --
    /// The seqlock word: even when stable, odd while the writer publishes.
    pub(crate) seq: AtomicU64,
    /// The generation of the book in this slot (equals its directory entry's).
    pub(crate) generation: AtomicU64,
    /// Bits 0..8: [`crate::BookStatus`] code; bits 8..16: [`crate::OutOfSyncReason`] code;
    /// bits 16..32: [`crate::Freshness`] bits; bits 32..64: levels per side the book is complete
    /// to ([`crate::BookMeta::depth`], 0 while unknown). Layout major 3 (before: status and
    /// reason only, the depth in a word of its own).
    pub(crate) status: AtomicU64,
    /// The last Binance update id applied (`u` of the last event, or the snapshot's id).
    pub(crate) last_update_id: AtomicU64,
    /// The exchange's event time of the last event applied, Unix milliseconds.
    pub(crate) event_time_ms: AtomicU64,
    /// When the DCN received that event, Unix nanoseconds.
    pub(crate) receive_time_ns: AtomicU64,
    /// When this version was published into the slot, Unix nanoseconds.
    pub(crate) publish_time_ns: AtomicU64,
    /// Bits 0..32: the bid ring; bits 32..64: the ask ring. Each ring is its number of levels
    /// (bits 0..16) and the physical index of its best level (bits 16..32): best-first level `i`
    /// of a side is its level word `(head + i) % levels_per_side`. Layout major 2 (before: plain
    /// counts with the best level at index 0).
    pub(crate) rings: AtomicU64,
    // -- cache line 1 --
    /// Bits 0..8: price exponent (`i8`); bits 8..16: quantity exponent (`i8`).
    pub(crate) exponents: AtomicU64,
    /// Bits 0..32: resyncs since the book was added; bits 32..64: gaps detected.
    pub(crate) sync_counters: AtomicU64,
    /// Number of publishes since the book was added.
    pub(crate) updates: AtomicU64,
    /// The change stamp of the version in the slot: `CLOCK_MONOTONIC` nanoseconds of its
    /// publish, strictly increasing over the segment (see `wait`). Stored inside the section, so
    /// a read returns the stamp of the very version it read. Layout major 3.
    pub(crate) changes: AtomicU64,
    /// Price mantissa of the best bid (0 when the bid ring is empty). The best levels sit in the
    /// header, written in the same section as the rings, so a best bid/ask read touches the two
    /// header lines only, never a level line.
    pub(crate) best_bid_price: AtomicU64,
    /// Quantity mantissa of the best bid (0 when there is none).
    pub(crate) best_bid_quantity: AtomicU64,
    /// Price mantissa of the best ask (0 when the ask ring is empty).
    pub(crate) best_ask_price: AtomicU64,
    /// Quantity mantissa of the best ask (0 when there is none).
    pub(crate) best_ask_quantity: AtomicU64,
    // -- cache line 2 (layout major 3) --
    /// The futex word waiters sleep on: the writer adds 1 (wrapping) after every write section,
    /// then wakes every waiter (see `wait`). Written outside the section; never read as data.
    pub(crate) wake: AtomicU32,
    pub(crate) _pad: AtomicU32,
    /// Unix milliseconds of the last audit that proved the book (0: never).
    pub(crate) verified_at_ms: AtomicU64,
    /// Bits 0..32: audits run; bits 32..64: audits that found a mismatch.
    pub(crate) audit_counters: AtomicU64,
    /// [`crate::top_hash`] of the book's top levels at `top_hash_update_id`.
    pub(crate) top_hash: AtomicU64,
    /// The update id `top_hash` was computed at (0: none yet).
    pub(crate) top_hash_update_id: AtomicU64,
    pub(crate) _reserved: [AtomicU64; 3],
}

const _: () = assert!(size_of::<SlotHeader>() == 192);
// The metadata readers poll stays on the first cache line; `exponents` starts the second.
const _: () = assert!(std::mem::offset_of!(SlotHeader, exponents) == 64);
const _: () = assert!(std::mem::offset_of!(SlotHeader, changes) == 88);
const _: () = assert!(std::mem::offset_of!(SlotHeader, best_ask_quantity) == 120);
const _: () = assert!(std::mem::offset_of!(SlotHeader, wake) == 128);
const _: () = assert!(std::mem::offset_of!(SlotHeader, top_hash_update_id) == 160);

/// One price level as stored: two mantissas, scaled by the slot's exponents.
#[repr(C)]
pub struct LevelWords {
    /// Price mantissa.
    pub(crate) price: AtomicU64,
    /// Quantity mantissa.
    pub(crate) quantity: AtomicU64,
}

const _: () = assert!(size_of::<LevelWords>() == 16);

/// A side's level words are the cells its ring lives in (Relaxed: the writer holds the slot's
/// write section; its own loads see its own stores).
impl LevelCells for [LevelWords] {
    #[inline]
    fn capacity(&self) -> u32 {
        self.len() as u32
    }

    #[inline]
    fn load(&self, index: usize) -> [u64; 2] {
        let word = &self[index];
        [
            word.price.load(Ordering::Relaxed),
            word.quantity.load(Ordering::Relaxed),
        ]
    }

    #[inline]
    fn store(&self, index: usize, [price, quantity]: [u64; 2]) {
        let word = &self[index];
        word.price.store(price, Ordering::Relaxed);
        word.quantity.store(quantity, Ordering::Relaxed);
    }
}

/// Bytes taken by one slot with `levels_per_side` levels on each side, rounded to a cache line so
/// every slot header starts on one.
pub const fn slot_size(levels_per_side: u32) -> u64 {
    let raw = size_of::<SlotHeader>() as u64
        + 2 * levels_per_side as u64 * size_of::<LevelWords>() as u64;
    raw.div_ceil(64) * 64
}

/// Bit position of the second half of a pair word (`rings`: asks; `sync_counters`: gaps).
pub(crate) const PAIR_HIGH_SHIFT: u32 = 32;

/// Bit position of the quantity exponent in `exponents` (the price exponent is the low byte).
pub(crate) const QUANTITY_EXPONENT_SHIFT: u32 = 8;

/// Bit position of the freshness bits in the status word (status and reason are bits 0..16).
pub(crate) const FRESHNESS_SHIFT: u32 = 16;

/// Bit position of the depth in the status word.
pub(crate) const DEPTH_SHIFT: u32 = 32;

/// Packs a status word (status and reason from [`crate::BookStatus`]'s word, freshness, depth).
pub(crate) const fn pack_status(status_word: u64, freshness: u16, depth: u32) -> u64 {
    (status_word & 0xffff) | (freshness as u64) << FRESHNESS_SHIFT | (depth as u64) << DEPTH_SHIFT
}

/// The freshness bits and the depth of a status word packed by [`pack_status`].
pub(crate) const fn unpack_status_extras(word: u64) -> (u16, u32) {
    (
        (word >> FRESHNESS_SHIFT) as u16,
        (word >> DEPTH_SHIFT) as u32,
    )
}

/// Packs two halves into one word (`rings`, `sync_counters`).
pub(crate) const fn pack_pair(low: u32, high: u32) -> u64 {
    low as u64 | (high as u64) << PAIR_HIGH_SHIFT
}

/// Splits a word packed by [`pack_pair`].
pub(crate) const fn unpack_pair(word: u64) -> (u32, u32) {
    (word as u32, (word >> PAIR_HIGH_SHIFT) as u32)
}

/// Packs the price and quantity exponents.
pub(crate) const fn pack_exponents(price: i8, quantity: i8) -> u64 {
    price as u8 as u64 | (quantity as u8 as u64) << QUANTITY_EXPONENT_SHIFT
}

/// Splits a word packed by [`pack_exponents`].
pub(crate) const fn unpack_exponents(word: u64) -> (i8, i8) {
    (
        word as u8 as i8,
        (word >> QUANTITY_EXPONENT_SHIFT) as u8 as i8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_words_round_trip() {
        assert_eq!(unpack_pair(pack_pair(7, u32::MAX)), (7, u32::MAX));
        assert_eq!(unpack_exponents(pack_exponents(-8, 3)), (-8, 3));
        assert_eq!(
            unpack_exponents(pack_exponents(i8::MIN, i8::MAX)),
            (i8::MIN, i8::MAX)
        );
        let word = pack_status(0xff07, 0xbeef, u32::MAX);
        assert_eq!(word & 0xffff, 0xff07);
        assert_eq!(unpack_status_extras(word), (0xbeef, u32::MAX));
    }

    #[test]
    fn slot_size_is_whole_cache_lines() {
        assert_eq!(slot_size(1000), 192 + 32_000);
        assert_eq!(slot_size(1) % 64, 0);
        assert_eq!(slot_size(3), 320);
        assert_eq!(slot_size(5), 384);
    }
}
