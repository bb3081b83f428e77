//! The bytes a node's books may hold in their sync buffers, together.
//!
//! A book buffers its diff events while its snapshot is on the way. After a mass disconnect every
//! book of a DCN buffers at once, and under Binance's weight limits the last one waits minutes
//! for its snapshot: 1 000 busy books could hold gigabytes. Each book therefore keeps at most its
//! own byte window (the newest events; see [`crate::BookSync`]), and all books of a node share one
//! [`BufferBudget`]. A book that cannot get bytes from it drops its buffer and is published out of
//! sync with reason "buffer overflow" ([`ubdcc_shm::OutOfSyncReason::BufferOverflow`]): never a
//! silent drop.
//!
//! The budget is a few atomics behind an `Arc`, so every book holds a clone and the node (or a
//! bench) reads the figures without asking the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A byte budget shared by the sync buffers of one node's books; cloning shares it.
#[derive(Debug, Clone)]
pub struct BufferBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    overflows: AtomicU64,
    trimmed: AtomicU64,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                overflows: AtomicU64::new(0),
                trimmed: AtomicU64::new(0),
            }),
        }
    }

    /// A budget nothing exhausts (tests, and books built without a node).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Takes `bytes` if they fit; `false` (and nothing taken) if not.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        // Relaxed: the counter publishes no other memory; only its own value matters.
        let taken = self
            .inner
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|sum| *sum <= self.inner.limit)
            });
        match taken {
            Ok(before) => {
                self.inner.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back `bytes` taken earlier with [`BufferBudget::try_reserve`].
    pub fn release(&self, bytes: usize) {
        let before = self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "released more than was reserved");
    }

    /// Counts a book that lost its buffer to the budget.
    pub(crate) fn count_overflow(&self) {
        self.inner.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events a book dropped from the old end of its own window.
    pub(crate) fn count_trimmed(&self, events: u64) {
        self.inner.trimmed.fetch_add(events, Ordering::Relaxed);
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// How often a book dropped its buffer because the budget was spent.
    pub fn overflows(&self) -> u64 {
        self.inner.overflows.load(Ordering::Relaxed)
    }

    /// Events dropped from the old end of a book's own window (safe: a snapshot older than the
    /// window is answered "too old" and fetched again).
    pub fn trimmed(&self) -> u64 {
        self.inner.trimmed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_beyond_the_limit_takes_nothing() {
        let budget = BufferBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(41));
        assert_eq!(budget.used(), 60);
        assert!(budget.try_reserve(40));
        budget.release(100);
        assert_eq!((budget.used(), budget.peak()), (0, 100));
    }

    #[test]
    fn clones_share_one_budget() {
        let budget = BufferBudget::new(10);
        let other = budget.clone();
        assert!(other.try_reserve(10));
        assert!(!budget.try_reserve(1));
    }
}
