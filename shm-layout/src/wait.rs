//! Waiting for a change without spinning: every slot, and the segment as a whole, has a change
//! stamp and a futex word the writer bumps and wakes after each write section.
//!
//! # The change stamp
//! Each write section of a segment gets a stamp: the writer's `CLOCK_MONOTONIC_COARSE`
//! nanoseconds, made strictly increasing over the segment (`max(previous + 1, now)`). A slot
//! holds the stamp of its last section, the segment header the stamp of its last section of any
//! slot. Stamps of one segment are totally ordered; stamps of different segments share a clock
//! (the host's), so a stamp seen on one replica and compared with another's is right to within
//! a tick of the coarse clock.
//!
//! # The protocol
//! Writer, after a section (whose stamp it stored inside the section, or with Release for the
//! segment's): `wake += 1` (Release), then `FUTEX_WAKE` every waiter of `wake`.
//!
//! Waiter: `w = wake` (Relaxed, then an Acquire fence), then `stamp` (Relaxed). A stamp above
//! `last_seen` ends the wait; otherwise `FUTEX_WAIT(wake, w)`, which the kernel enters only while
//! `wake` still equals `w`, and the loop starts over. No wake-up is missed: a section that ends
//! before the waiter loads `wake` is visible in the stamp (the Acquire fence pairs with the
//! Release store of `wake`); one that ends after it changes `wake` before its `FUTEX_WAKE`, so
//! the kernel either refuses to sleep (the word differs) or has the waiter queued when the wake
//! comes (it checks the word and queues under the same futex bucket lock). `tests/wait_loom.rs`
//! model-checks this very file with loom.
//!
//! The futexes are shared (no `FUTEX_PRIVATE_FLAG`): waiters are other processes, which map the
//! segment read-only. The kernel keys a shared futex by the file and offset, so the writer's
//! read-write mapping and every reader's read-only one meet at the same futex; `FUTEX_WAIT` only
//! reads the word. Readers never write to the segment. A hostile process able to map a segment
//! can only `FUTEX_WAKE` its words, which wakes waiters early: they re-check their stamp and
//! sleep again, so that costs them a syscall, never a missed or invented change. The writer never
//! waits on anything in the segment.
//!
//! # Why the writer wakes unconditionally
//! Waking only when someone waits would need waiters to say so in a word the writer reads, and
//! readers may not write to a segment (and a neighbour able to write such a word could clear it
//! and starve every waiter). So every section ends with two `FUTEX_WAKE` calls (the slot's word
//! and the segment's), whether anyone waits or not. Measured on the shared 2-core machine (load
//! average 2-3) with one bench run on layout 2 and this build in turns: a one-level
//! `publish_edits` below the top went from 31-38 ns to 280-315 ns, so the two shared
//! `FUTEX_WAKE`s with no waiter cost about 125 ns each (`wait_wake/publish_meta` shows the same).
//! A DCN publishing 20 000 versions a second spends about 0.5% of a core on them, next to the
//! microseconds each message costs to parse and apply. A waiter runs 1.5-3 µs after the publish
//! while the machine is busy, 8-25 µs when it idles (its sleeping vCPU must be woken first)
//! (`wait_wake/publish_to_wake`), which is what readers feel.
//!
//! # Liveness while waiting
//! A wait sleeps in slices of at most [`WAIT_SLICE`] and checks its writer between them, so a
//! dead or hung writer ends a wait with its error within a slice of the moment a read would.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

/// The longest a waiter sleeps before it checks its writer's liveness again; equal to the lock
/// probe interval, so a wait notices a dead writer as soon as a read would.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(50);

/// What a wait for a change ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// A version newer than the one seen was published; its change stamp (greater than the
    /// `last_seen` the wait was given).
    Changed(u64),
    /// Nothing newer was published before the timeout.
    TimedOut,
}

/// The futex operations the protocol needs: std's `AtomicU32` and the futex syscalls in the
/// crate, loom's atomics with a condition variable standing in for the kernel in the model check.
pub(crate) trait FutexWord {
    /// Loads the word (Relaxed), then issues an Acquire fence.
    fn load_acquire(&self) -> u32;
    /// Stores the word (Release). Only the segment's single writer stores.
    fn store_release(&self, value: u32);
    /// Sleeps while the word equals `expected`, for at most `timeout`; may return early for any
    /// reason (a wake, a signal, another value), so callers re-check.
    fn sleep(&self, expected: u32, timeout: Duration);
    /// Wakes every waiter sleeping on the word.
    fn wake_all(&self);
}

/// The writer's side: after a section has stored its stamp, tells every waiter of `word`.
#[inline]
pub(crate) fn signal(word: &impl FutexWord) {
    // Relaxed inside `load_acquire` is enough: the single writer reads its own last store.
    let next = word.load_acquire().wrapping_add(1);
    // SYNC POINT (Release): orders the section's stamp before the new word. Pairs with the
    // Acquire fence in `FutexWord::load_acquire` on the waiter's side, in `wait_for_change`.
    word.store_release(next);
    word.wake_all();
}

/// The waiter's side: returns once `stamp()` exceeds `last_seen` (at once if it already does),
/// or [`WaitOutcome::TimedOut`] when `timeout` passes first. `check` runs before the words are
/// first loaded and after each sleep (at least every [`WAIT_SLICE`]); its error ends the wait.
pub(crate) fn wait_for_change<E>(
    word: &impl FutexWord,
    stamp: impl Fn() -> u64,
    last_seen: u64,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), E>,
) -> Result<WaitOutcome, E> {
    // `None`: a timeout beyond what `Instant` can represent waits for good.
    let deadline = Instant::now().checked_add(timeout);
    loop {
        // Before touching the words: a segment whose writer is gone, or that shrank, is not
        // read again.
        check()?;
        // The word before the stamp: a section that ends after this load changes the word, so
        // the sleep below returns at once instead of missing it.
        let expected = word.load_acquire();
        let seen = stamp();
        if seen > last_seen {
            return Ok(WaitOutcome::Changed(seen));
        }
        let remaining = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => WAIT_SLICE,
        };
        if remaining.is_zero() {
            return Ok(WaitOutcome::TimedOut);
        }
        word.sleep(expected, remaining.min(WAIT_SLICE));
    }
}

impl FutexWord for AtomicU32 {
    #[inline]
    fn load_acquire(&self) -> u32 {
        // Relaxed + fence: only Relaxed loads are allowed on a read-only mapping.
        let value = self.load(Ordering::Relaxed);
        // SYNC POINT (Acquire fence): pairs with the Release store in `signal`.
        fence(Ordering::Acquire);
        value
    }

    #[inline]
    fn store_release(&self, value: u32) {
        self.store(value, Ordering::Release);
    }

    fn sleep(&self, expected: u32, timeout: Duration) {
        use rustix::io::Errno;
        use rustix::thread::futex;
        let timeout = to_timespec(timeout);
        // Shared, not private: the waker is another process (see the module doc).
        match futex::wait(self, futex::Flags::empty(), expected, Some(&timeout)) {
            // Woken, the word already moved on, timed out, or a signal: the caller re-checks.
            Ok(()) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => {}
            // Nothing else is expected of a mapped word; sleeping out the slice keeps a
            // persistent failure from becoming a spin.
            Err(_) => std::thread::sleep(timeout_duration(&timeout)),
        }
    }

    #[inline]
    fn wake_all(&self) {
        // FUTEX_WAKE on a mapped word cannot fail, and a waiter would find the change at its
        // next slice anyway, so there is nothing to do with an error.
        rustix::thread::futex::wake(self, rustix::thread::futex::Flags::empty(), i32::MAX as u32)
            .ok();
    }
}

/// Waits until one of `words` differs from its `expected` value (in the same order), a wake
/// comes, or `timeout` passes: one `futex_waitv` over all of them (Linux 5.16 and later; at
/// most 128 words, the rest are not waited on). Where `futex_waitv` is missing, sleeps a
/// millisecond instead (the caller's loop then polls).
pub(crate) fn sleep_any(words: &[(&AtomicU32, u32)], timeout: Duration) {
    use rustix::io::Errno;
    use rustix::thread::futex;
    const MAX_WAITERS: usize = 128;
    let waiters: Vec<futex::Wait> = words
        .iter()
        .take(MAX_WAITERS)
        .map(|&(word, expected)| {
            let mut wait = futex::Wait::new();
            wait.val = u64::from(expected);
            // The kernel only reads the word; the pointer is never written through.
            wait.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            // Shared, not private: the waker is another process.
            wait.flags = futex::WaitFlags::SIZE_U32;
            wait
        })
        .collect();
    if waiters.is_empty() {
        std::thread::sleep(timeout);
        return;
    }
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let deadline = add_timespec(now, timeout);
    match futex::waitv(
        &waiters,
        futex::WaitvFlags::empty(),
        Some(&deadline),
        rustix::time::ClockId::Monotonic,
    ) {
        Ok(_) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => {}
        Err(_) => std::thread::sleep(timeout.min(Duration::from_millis(1))),
    }
}

fn to_timespec(duration: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

fn timeout_duration(timespec: &rustix::time::Timespec) -> Duration {
    let secs = u64::try_from(timespec.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(timespec.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

fn add_timespec(base: rustix::time::Timespec, duration: Duration) -> rustix::time::Timespec {
    const NANOS_PER_SEC: i64 = 1_000_000_000;
    let step = to_timespec(duration);
    let mut nanos = base.tv_nsec + step.tv_nsec;
    let mut secs = base.tv_sec.saturating_add(step.tv_sec);
    if nanos >= NANOS_PER_SEC {
        nanos -= NANOS_PER_SEC;
        secs = secs.saturating_add(1);
    }
    rustix::time::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    }
}
