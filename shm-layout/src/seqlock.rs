//! The sequence-lock protocol that lets one writer update a book while readers in other processes
//! copy it without locks.
//!
//! The sequence word is even while the data is stable and odd while the writer is inside a write
//! section. A reader loads the word (Relaxed, then an Acquire fence: only Relaxed loads are allowed
//! on the read-only mappings readers use), copies the payload with Relaxed atomic loads, issues
//! an Acquire fence and loads the word again: equal and even means the copy is consistent.
//!
//! Every payload word is an atomic, so a reader racing with the writer never performs a data race
//! in the sense of Rust's memory model; it may only observe a mix of old and new values, which the
//! re-check rejects. This is the fence-based formulation from Boehm, "Can seqlocks get along with
//! programming language memory models?" (2012), the same one crossbeam's `SeqLock` uses.
//!
//! The protocol is generic over [`SeqAtomic`] so that `tests/seqlock_loom.rs` can model-check this
//! very file with loom's atomics; in the crate it is only ever instantiated with `AtomicU64`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The atomic operations the protocol needs: std's `AtomicU64` in the crate, loom's in the model
/// check.
pub(crate) trait SeqAtomic {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, value: u64, order: Ordering);
    /// A memory fence of the same family as these atomics.
    fn fence(order: Ordering);
}

impl SeqAtomic for AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order);
    }

    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order);
    }
}

/// An open write section; dropping it makes the sequence even again and so publishes the writes.
///
/// Only the single writer of a segment creates these (`SegmentWriter` takes `&mut self`), so no two
/// sections on one word ever overlap.
pub(crate) struct WriteSection<'a, A: SeqAtomic = AtomicU64> {
    seq: &'a A,
    start: u64,
}

impl<'a, A: SeqAtomic> WriteSection<'a, A> {
    /// Opens a write section on `seq`: readers that start now will retry until it is dropped.
    pub(crate) fn begin(seq: &'a A) -> Self {
        // Relaxed: only this writer ever stores to `seq`, so it reads its own last store.
        let start = seq.load(Ordering::Relaxed);
        debug_assert!(start % 2 == 0, "nested write section");
        seq.store(start.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT (Release fence): orders the odd store above before every payload store of
        // this section. Pairs with the Acquire fence in `ReadSection::validate`: a reader that saw
        // any of our payload stores must then see the odd (or a later) sequence and retry.
        A::fence(Ordering::Release);
        Self { seq, start }
    }
}

impl<A: SeqAtomic> Drop for WriteSection<'_, A> {
    fn drop(&mut self) {
        // SYNC POINT (Release store): publishes every payload store of this section. Pairs with
        // the Acquire load in `ReadSection::begin`.
        self.seq
            .store(self.start.wrapping_add(2), Ordering::Release);
    }
}

/// An optimistic read: begin, copy with Relaxed loads, then `validate`.
pub(crate) struct ReadSection {
    start: u64,
}

impl ReadSection {
    /// Starts a read; `None` means the writer is inside a write section right now (retry).
    #[inline]
    pub(crate) fn begin<A: SeqAtomic>(seq: &A) -> Option<Self> {
        // Relaxed, then an Acquire fence: readers map segments read-only, and only Relaxed loads
        // are allowed on read-only memory (std::sync::atomic, "Atomic accesses to read-only
        // memory"). The pair orders like an Acquire load.
        let start = seq.load(Ordering::Relaxed);
        if start % 2 == 1 {
            return None;
        }
        // SYNC POINT (Acquire fence): pairs with the Release store that closed the last write
        // section, so every payload store of that section is visible to the copy that follows.
        A::fence(Ordering::Acquire);
        Some(Self { start })
    }

    /// `true` when no write section started since `begin`, so everything copied in between is
    /// one consistent version.
    #[inline]
    pub(crate) fn validate<A: SeqAtomic>(&self, seq: &A) -> bool {
        // SYNC POINT (Acquire fence): pairs with the Release fence in `WriteSection::begin`. If any
        // Relaxed payload load above read a value from a newer section, this fence makes that
        // section's odd sequence store visible to the load below, and the comparison fails.
        A::fence(Ordering::Acquire);
        seq.load(Ordering::Relaxed) == self.start
    }
}

/// How long a reader keeps retrying a slot that is being written before giving up. A write section
/// lasts about a microsecond, so this is only reached when the writer stopped or died inside a
/// section (the caller then checks the writer and reports that) or when the reader's or writer's
/// thread is descheduled for the whole time; it keeps a read from stalling its caller either way.
pub(crate) const MAX_READ_TIME: Duration = Duration::from_millis(2);

/// Spins this many attempts before the clock is consulted: the common collision with a live writer
/// ends within them, and the fast path never reads the clock.
const SPIN_ATTEMPTS: u32 = 64;

/// The retry policy of one read: spin briefly (the section is about to end), then yield so a
/// writer sharing our core can finish, for at most [`MAX_READ_TIME`].
pub(crate) struct RetryBudget {
    attempts: u32,
    deadline: Option<Instant>,
}

impl RetryBudget {
    /// A fresh budget for one read.
    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            attempts: 0,
            deadline: None,
        }
    }

    /// Backs off before the next attempt; `false` once the budget is spent.
    #[inline]
    pub(crate) fn retry(&mut self) -> bool {
        self.attempts += 1;
        if self.attempts < SPIN_ATTEMPTS {
            std::hint::spin_loop();
            return true;
        }
        // Past the spin phase every attempt yields, and under load one yield can give the core
        // away for a whole time slice, so the clock (a vDSO call, far cheaper than the yield) is
        // read on every attempt to keep the bound.
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + MAX_READ_TIME);
        if now >= deadline {
            return false;
        }
        std::thread::yield_now();
        true
    }

    /// Attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_overlapping_a_write_section_fails_validation() {
        let seq = AtomicU64::new(0);
        let read = ReadSection::begin(&seq).expect("sequence starts even");
        let write = WriteSection::begin(&seq);
        assert!(
            ReadSection::begin(&seq).is_none(),
            "odd sequence must refuse new reads"
        );
        drop(write);
        assert!(!read.validate(&seq));
        let again = ReadSection::begin(&seq).expect("even after the section ends");
        assert!(again.validate(&seq));
        assert_eq!(seq.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_retry_budget_runs_out_after_the_read_time() {
        let started = Instant::now();
        let mut budget = RetryBudget::new();
        while budget.retry() {}
        assert!(started.elapsed() >= MAX_READ_TIME);
        assert!(budget.attempts() > SPIN_ATTEMPTS);
    }
}
