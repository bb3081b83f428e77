//! What a slot says about how far its book is proven and how fresh its time is: the results of
//! the DCN's audits, a hash of the top levels replicas compare, and freshness bits that say where
//! the event time came from (issue 16's trust layer writes them; every reader gets them).

use std::ops::BitOr;

use crate::book::RawLevel;

/// Levels per side [`top_hash`] covers: the depth of Binance's smallest partial-book stream, deep
/// enough that a missed update near the top shows, shallow enough to hash in ~150 ns.
pub const TOP_HASH_LEVELS: usize = 20;

/// Where a book's event time comes from, as bits (stored in bits 16..32 of the slot's status
/// word). Empty: the time is the exchange's event time of the last event applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Freshness(u16);

impl Freshness {
    /// `event_time_ms` is the REST snapshot's own time (`T`/`E`): no event was applied since.
    pub const SNAPSHOT_TIME: Self = Self(1);
    /// No exchange time is known for this version: `event_time_ms` is not an exchange time (the
    /// snapshot carried none and no event was applied yet).
    pub const NO_EXCHANGE_TIME: Self = Self(1 << 1);

    /// No bit set: the event time is the exchange's time of the last event applied.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits (`UBDCC_FRESHNESS_*` in C).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Freshness from raw bits; bits this build does not name (a newer writer's) are kept.
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// `true` when every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `true` when no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Freshness {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// The results of a book's audits (a REST snapshot compared with the live book at the same
/// update id), as the engine counts them; written with [`crate::SegmentWriter::publish_audit`].
/// `Default` is "never audited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Audit {
    /// Unix milliseconds of the last audit that proved the book; 0 = never.
    pub verified_at_ms: u64,
    /// Audits run since the book was added.
    pub audits: u32,
    /// Audits that found the live book different from the exchange's.
    pub audit_mismatches: u32,
}

/// A hash of a book's top levels and the update id it describes (see [`top_hash`]). The engine
/// computes it at points every replica of a market passes — the book as it stood at the end of
/// each exchange second — and hands it to the writer ([`crate::SegmentWriter::set_top_hash`]),
/// so the hash a slot holds is usually of an id a little older than its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopHash {
    /// [`top_hash`] of the book at `update_id`.
    pub hash: u64,
    /// The update id the hash was computed at; 0 = none yet.
    pub update_id: u64,
}

/// FNV-1a's 64-bit offset basis and prime.
const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Decimal places of the fixed-point form every value is hashed in: Binance's finest.
const FIXED_PLACES: i32 = 8;

/// Marks a value hashed in its fallback form (see [`canonical`]).
const FALLBACK_TAG: u64 = 0x80 << 56;

/// `10^i` for every `i` whose power fits in 64 bits: a table, because computing the power per
/// value made the hash cost more than the publish it rides on.
const POWERS_OF_TEN: [u64; 20] = {
    let mut powers = [1u64; 20];
    let mut i = 1;
    while i < powers.len() {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// A hash of the best [`TOP_HASH_LEVELS`] levels of each side (fewer when a side has fewer),
/// which replicas of a market compare at equal update ids: the same book gives the same hash in
/// every process, whatever exponents each replica's book widened to.
///
/// Pass the sides best first; levels beyond [`TOP_HASH_LEVELS`] are ignored.
///
/// # Definition
/// Each price and quantity `m × 10^e` is taken as one 64-bit word: the exact integer
/// `m × 10^(e + 8)`, the value in units of 10⁻⁸ (Binance's finest), whatever exponent it was
/// written with. A value that has no such form (finer than 10⁻⁸, or 1.8·10¹¹ and beyond) is taken
/// as its mantissa with trailing zeros removed, XOR `(0x80 | exponent as u8) << 56`. Starting from
/// FNV-1a's 64-bit offset basis, each word `w` mixes in as `h = (h ^ w) * FNV_PRIME` (FNV-1a over
/// 64-bit words, wrapping): for the bids, each level's price word then quantity word, then the
/// number of levels taken; then the same for the asks.
///
/// ```
/// use ubdcc_shm::{RawLevel, top_hash};
/// let bids = [RawLevel { price: 150, quantity: 2 }];
/// // 1.50 × 2 written with other exponents is the same book.
/// let same = [RawLevel { price: 15_000, quantity: 20 }];
/// assert_eq!(top_hash(-2, 0, &bids, &[]), top_hash(-4, -1, &same, &[]));
/// assert_ne!(top_hash(-2, 0, &bids, &[]), top_hash(-2, 0, &[], &bids));
/// ```
pub fn top_hash(
    price_exponent: i8,
    quantity_exponent: i8,
    bids: &[RawLevel],
    asks: &[RawLevel],
) -> u64 {
    top_hash_of(
        price_exponent,
        quantity_exponent,
        bids.iter().copied(),
        asks.iter().copied(),
    )
}

/// [`top_hash`] of sides given as iterators, best first (a book hashes its own levels without
/// copying them out); only the first [`TOP_HASH_LEVELS`] of each are taken.
#[inline]
pub fn top_hash_of(
    price_exponent: i8,
    quantity_exponent: i8,
    bids: impl Iterator<Item = RawLevel>,
    asks: impl Iterator<Item = RawLevel>,
) -> u64 {
    let pair = |level: RawLevel| [level.price, level.quantity];
    let hash = mix_side(
        OFFSET_BASIS,
        price_exponent,
        quantity_exponent,
        bids.map(pair),
    );
    mix_side(hash, price_exponent, quantity_exponent, asks.map(pair))
}

/// Mixes one side's top levels, then their number, into `hash`.
#[inline]
fn mix_side(
    mut hash: u64,
    price_exponent: i8,
    quantity_exponent: i8,
    levels: impl Iterator<Item = [u64; 2]>,
) -> u64 {
    let mut mix = |word: u64| hash = (hash ^ word).wrapping_mul(PRIME);
    let mut count = 0u64;
    for [price, quantity] in levels.take(TOP_HASH_LEVELS) {
        mix(canonical(price, price_exponent));
        mix(canonical(quantity, quantity_exponent));
        count += 1;
    }
    mix(count);
    hash
}

/// `m × 10^e` as the integer count of 10⁻⁸ units, or, when that does not exist in 64 bits, its
/// mantissa without trailing zeros marked with its exponent.
#[inline]
fn canonical(mantissa: u64, exponent: i8) -> u64 {
    if mantissa == 0 {
        return 0;
    }
    let (mut mantissa, mut exponent) = (mantissa, i32::from(exponent));
    // Finer than 10⁻⁸ only in form (1000 × 10⁻¹⁰): bring it up while exact.
    while exponent < -FIXED_PLACES && mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    if let Some(&scale) = usize::try_from(exponent + FIXED_PLACES)
        .ok()
        .and_then(|places| POWERS_OF_TEN.get(places))
        && let Some(fixed) = mantissa.checked_mul(scale)
    {
        return fixed;
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    mantissa ^ (FALLBACK_TAG | u64::from(exponent as i8 as u8) << 56)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(pairs: &[(u64, u64)]) -> Vec<RawLevel> {
        pairs
            .iter()
            .map(|&(price, quantity)| RawLevel { price, quantity })
            .collect()
    }

    #[test]
    fn the_hash_ignores_the_exponents_a_book_was_written_with() {
        let narrow = levels(&[(10_001, 5), (10_000, 1)]);
        let wide = levels(&[(100_010_000, 50_000), (100_000_000, 10_000)]);
        assert_eq!(
            top_hash(-2, 0, &narrow, &narrow),
            top_hash(-6, -4, &wide, &wide)
        );
    }

    #[test]
    fn any_change_in_the_top_changes_the_hash() {
        let book = levels(&[(10_001, 5), (10_000, 1)]);
        let base = top_hash(-2, 0, &book, &[]);
        assert_ne!(
            base,
            top_hash(-2, 0, &levels(&[(10_001, 6), (10_000, 1)]), &[])
        );
        assert_ne!(base, top_hash(-2, 0, &levels(&[(10_001, 5)]), &[]));
        assert_ne!(
            base,
            top_hash(-2, 0, &[], &book),
            "sides are not interchangeable"
        );
        assert_ne!(base, top_hash(-3, 0, &book, &[]));
    }

    #[test]
    fn levels_beyond_the_top_do_not_count() {
        let deep: Vec<RawLevel> = (0..30)
            .map(|i| RawLevel {
                price: 1000 - i,
                quantity: 1,
            })
            .collect();
        let mut deeper = deep.clone();
        deeper[TOP_HASH_LEVELS].quantity = 7;
        assert_eq!(top_hash(0, 0, &deep, &[]), top_hash(0, 0, &deeper, &[]));
        deeper[TOP_HASH_LEVELS - 1].quantity = 7;
        assert_ne!(top_hash(0, 0, &deep, &[]), top_hash(0, 0, &deeper, &[]));
    }

    #[test]
    fn values_outside_the_fixed_point_hash_by_their_canonical_form() {
        assert_eq!(canonical(1000, -11), canonical(1, -8));
        assert_eq!(canonical(1000, -11), 1);
        assert_eq!(canonical(5, -10), canonical(50, -11));
        assert_ne!(canonical(5, -10), canonical(5, -9));
        assert_eq!(canonical(u64::MAX, 0), canonical(u64::MAX, 0));
        assert_ne!(canonical(u64::MAX / 10, 1), canonical(u64::MAX / 10, 2));
        assert_eq!(canonical(0, -8), canonical(0, 3));
        assert_eq!(canonical(150, -2), 150_000_000);
    }

    #[test]
    fn freshness_bits_combine_and_keep_unknown_bits() {
        let both = Freshness::SNAPSHOT_TIME | Freshness::NO_EXCHANGE_TIME;
        assert!(
            both.contains(Freshness::SNAPSHOT_TIME) && both.contains(Freshness::NO_EXCHANGE_TIME)
        );
        assert!(!Freshness::SNAPSHOT_TIME.contains(both));
        assert_eq!(Freshness::from_bits(0x8001).bits(), 0x8001);
        assert!(Freshness::empty().is_empty() && Freshness::default().is_empty());
    }
}
