//! One side of a book in its slot, as a ring: best-first level `i` lives at physical position
//! `(head + i) % capacity`, so both ends of the side can move.
//!
//! Why a ring: every applied event is published, and Binance's changes cluster at the top of the
//! book. In a best-first array an insert or removal at best index `k` shifts every level below it
//! (up to the whole 1 000-level side); in this ring it moves `min(k, n - k)` levels — the top `k`
//! one step towards the best end (the head moves) or the rest one step towards the worst end,
//! whichever is fewer — and writes one. Trimming the worst end moves nothing. A change of a
//! quantity writes one level. The alternative, copying only the changed span of the best-first
//! array, was reasoned about rather than benchmarked: an insert or removal at best index `k`
//! shifts the `n - k` levels below it, so a diff that adds or drops one level near the top (most
//! Binance diffs do) costs nearly a whole side again. Whole-book publishing, the baseline, is
//! measured against this ring in README "Performance" (`engine_message`, `dcn_load.py`).
//!
//! Readers pay nothing for this: a top-N read is at most two contiguous runs of the side
//! ([`Ring::runs`]), and the head shares its word with the count they load anyway.
//!
//! The moves are plain Relaxed stores inside the slot's write section: a reader that overlaps
//! them sees a half-moved side, and its validation rejects the copy like any other torn read.
//! `tests/seqlock_loom.rs` includes this file and model-checks exactly that.

use std::ops::Range;

/// The cells one side's levels are stored in: the slot's level words in the crate, loom's atomics
/// in the model check. Stores and loads are Relaxed; the caller holds the write section.
pub(crate) trait LevelCells {
    /// Number of cells (the segment's levels per side, at least 1).
    fn capacity(&self) -> u32;
    /// The level at physical position `index`, as `[price, quantity]` mantissas.
    fn load(&self, index: usize) -> [u64; 2];
    /// Stores a level at physical position `index`.
    fn store(&self, index: usize, level: [u64; 2]);
}

/// Where a side's levels are: the physical position of its best level and how many it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ring {
    /// Physical position of the best level (`< capacity` when written by a writer).
    pub(crate) head: u32,
    /// Number of levels (`<= capacity` when written by a writer).
    pub(crate) len: u32,
}

/// Bit position of the head in a packed ring (the count is bits 0..16): capacities stay below
/// 2^16 ([`crate::MAX_LEVELS_PER_SIDE`] is 5000), so one side fits 32 bits and both sides one word.
pub(crate) const RING_HEAD_SHIFT: u32 = 16;

const RING_FIELD_MASK: u32 = (1 << RING_HEAD_SHIFT) - 1;

impl Ring {
    /// Packs the ring into 32 bits: count in bits 0..16, head in bits 16..32.
    #[inline]
    pub(crate) const fn pack(self) -> u32 {
        self.len | self.head << RING_HEAD_SHIFT
    }

    /// Splits 32 bits packed by [`Ring::pack`].
    #[inline]
    pub(crate) const fn unpack(word: u32) -> Self {
        Self {
            head: word >> RING_HEAD_SHIFT,
            len: word & RING_FIELD_MASK,
        }
    }

    /// The physical ranges holding best-first levels `0..min(count, len)`, in order: the second
    /// range continues where the first wraps. Safe on torn or hostile values (a reader validates
    /// afterwards): the head is reduced modulo `capacity` and the count capped at it, so both
    /// ranges stay inside `0..capacity`.
    #[inline]
    pub(crate) fn runs(self, count: usize, capacity: u32) -> (Range<usize>, Range<usize>) {
        let capacity = capacity.max(1) as usize;
        let mut head = self.head as usize;
        if head >= capacity {
            head %= capacity;
        }
        let len = (self.len as usize).min(capacity).min(count);
        let first = len.min(capacity - head);
        (head..head + first, 0..len - first)
    }

    /// Physical position of best-first index `index`.
    #[inline]
    fn position(self, index: u32, capacity: u32) -> usize {
        let at = self.head + index;
        (if at >= capacity { at - capacity } else { at }) as usize
    }

    /// The head one step towards the best end (wrapping).
    #[inline]
    fn before_head(self, capacity: u32) -> u32 {
        if self.head == 0 {
            capacity - 1
        } else {
            self.head - 1
        }
    }
}

/// Inserts `level` at best-first index `at` (`at <= ring.len`); when the side is full its worst
/// level falls off, and an `at` at or beyond the capacity changes nothing. Moves
/// `min(at, levels below)` levels; returns how many, for the publisher's cost accounting.
#[inline]
pub(crate) fn insert<C: LevelCells + ?Sized>(
    cells: &C,
    ring: &mut Ring,
    at: u32,
    level: [u64; 2],
) -> u32 {
    let capacity = cells.capacity();
    debug_assert!(at <= ring.len && ring.len <= capacity);
    if at >= capacity {
        return 0;
    }
    let full = ring.len == capacity;
    // Levels that move if the lower part moves; on a full side the worst falls off instead.
    let below = ring.len - at - u32::from(full);
    if at <= below {
        // The top `at` levels move one step towards the best end; on a full side the new head is
        // the worst level's cell, which the first move (or the insert) overwrites.
        let old = *ring;
        ring.head = old.before_head(capacity);
        for index in 0..at {
            cells.store(
                ring.position(index, capacity),
                cells.load(old.position(index, capacity)),
            );
        }
        if !full {
            ring.len += 1;
        }
        cells.store(ring.position(at, capacity), level);
        return at;
    }
    // The levels from `at` down move one step towards the worst end, the last one first.
    let new_len = ring.len + u32::from(!full);
    for index in (at + 1..new_len).rev() {
        cells.store(
            ring.position(index, capacity),
            cells.load(ring.position(index - 1, capacity)),
        );
    }
    ring.len = new_len;
    cells.store(ring.position(at, capacity), level);
    below
}

/// Removes the level at best-first index `at` (`at < ring.len`). Moves `min(at, levels below)`
/// levels; returns how many.
#[inline]
pub(crate) fn remove<C: LevelCells + ?Sized>(cells: &C, ring: &mut Ring, at: u32) -> u32 {
    let capacity = cells.capacity();
    debug_assert!(at < ring.len && ring.len <= capacity);
    let below = ring.len - 1 - at;
    if at <= below {
        // The top `at` levels move one step towards the worst end, the lowest first; the head
        // follows them.
        for index in (0..at).rev() {
            cells.store(
                ring.position(index + 1, capacity),
                cells.load(ring.position(index, capacity)),
            );
        }
        ring.head = ring.position(1, capacity) as u32;
        ring.len -= 1;
        return at;
    }
    for index in at..ring.len - 1 {
        cells.store(
            ring.position(index, capacity),
            cells.load(ring.position(index + 1, capacity)),
        );
    }
    ring.len -= 1;
    below
}

/// Replaces the level at best-first index `at` (`at < ring.len`).
#[inline]
pub(crate) fn replace<C: LevelCells + ?Sized>(cells: &C, ring: Ring, at: u32, level: [u64; 2]) {
    debug_assert!(at < ring.len);
    cells.store(ring.position(at, cells.capacity()), level);
}

/// The best level, if the side has one.
#[inline]
pub(crate) fn best<C: LevelCells + ?Sized>(cells: &C, ring: Ring) -> Option<[u64; 2]> {
    (ring.len > 0).then(|| cells.load(ring.position(0, cells.capacity())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Cells(Vec<Cell<[u64; 2]>>);

    impl LevelCells for Cells {
        fn capacity(&self) -> u32 {
            self.0.len() as u32
        }
        fn load(&self, index: usize) -> [u64; 2] {
            self.0[index].get()
        }
        fn store(&self, index: usize, level: [u64; 2]) {
            self.0[index].set(level);
        }
    }

    fn read(cells: &Cells, ring: Ring) -> Vec<u64> {
        let (a, b) = ring.runs(usize::MAX, cells.capacity());
        a.chain(b).map(|i| cells.0[i].get()[0]).collect()
    }

    #[test]
    fn packing_round_trips() {
        let ring = Ring {
            head: 4999,
            len: 5000,
        };
        assert_eq!(Ring::unpack(ring.pack()), ring);
    }

    #[test]
    fn torn_rings_stay_inside_the_capacity() {
        let (a, b) = Ring {
            head: 70_000,
            len: 65_535,
        }
        .runs(usize::MAX, 10);
        assert!(a.end <= 10 && b.end <= 10 && a.len() + b.len() == 10);
    }

    proptest::proptest! {
        /// Every edit sequence leaves the ring equal to a `Vec` model, capped at the capacity,
        /// and moves no more than `min(at, below)` levels per edit.
        #[test]
        fn edits_match_a_vec_model(capacity in 1u32..12, ops in proptest::collection::vec((0u8..3, 0u32..16, 1u64..1000), 0..80)) {
            let cells = Cells((0..capacity).map(|_| Cell::new([0, 0])).collect());
            let mut ring = Ring::default();
            let mut model: Vec<u64> = Vec::new();
            for (kind, at, value) in ops {
                match kind {
                    0 => {
                        let at = at % (ring.len + 1);
                        let below = ring.len - at;
                        let moved = insert(&cells, &mut ring, at, [value, value]);
                        proptest::prop_assert!(moved <= at.min(below));
                        model.insert(at as usize, value);
                        model.truncate(capacity as usize);
                    }
                    1 if ring.len > 0 => {
                        let at = at % ring.len;
                        let moved = remove(&cells, &mut ring, at);
                        proptest::prop_assert!(moved <= at.min(ring.len - at));
                        model.remove(at as usize);
                    }
                    _ if ring.len > 0 => {
                        let at = at % ring.len;
                        replace(&cells, ring, at, [value, value]);
                        model[at as usize] = value;
                    }
                    _ => {}
                }
                proptest::prop_assert!(ring.head < capacity && ring.len <= capacity);
                proptest::prop_assert_eq!(read(&cells, ring), model.clone());
                proptest::prop_assert_eq!(best(&cells, ring).map(|l| l[0]), model.first().copied());
            }
        }
    }
}
