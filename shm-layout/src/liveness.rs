//! How readers tell a live writer from a dead or hung one.
//!
//! - Dead: the writer holds an exclusive `flock` on its segment for its whole life; the kernel
//!   drops it when the process dies, however it dies. A reader probes it with a non-blocking shared
//!   lock (released at once), so a dead writer is seen at the next probe.
//! - Hung: the writer stores a `CLOCK_MONOTONIC_COARSE` timestamp every [`HEARTBEAT_INTERVAL`];
//!   readers compare it on every read with the same clock (one vDSO call, no syscall). A heartbeat
//!   older than [`HUNG_AFTER`] means the writer is stopped or stuck.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::fs::FlockOperation;
use rustix::time::ClockId;

/// How often a writer should call `SegmentWriter::heartbeat`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// A heartbeat older than this marks the writer as hung. The last beat is at most this old when a
/// writer stops, so a stop is reported within this time (under one second, with eight missed beats
/// of margin for a busy machine).
pub const HUNG_AFTER: Duration = Duration::from_millis(800);

/// How often a reader probes the writer's lock while the heartbeat looks fine. A probe is two
/// syscalls, so it is rate-limited rather than done on every read; a crashed writer is still seen
/// within this time.
pub(crate) const LOCK_PROBE_INTERVAL_NS: u64 = 50_000_000;

/// Nanoseconds of `CLOCK_MONOTONIC_COARSE`: the same clock in every process on the host, and cheap
/// enough (a few ns through the vDSO) to read on every book read.
#[inline]
pub(crate) fn monotonic_coarse_ns() -> u64 {
    timespec_ns(rustix::time::clock_gettime(ClockId::MonotonicCoarse))
}

/// Unix time in nanoseconds.
#[inline]
pub(crate) fn unix_now_ns() -> u64 {
    timespec_ns(rustix::time::clock_gettime(ClockId::Realtime))
}

fn timespec_ns(ts: rustix::time::Timespec) -> u64 {
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Takes the writer's exclusive lock without waiting; `Ok(false)` when another process holds a
/// lock on the file.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// `true` when nobody holds an exclusive lock on the file, i.e. its writer is gone.
///
/// The probe's shared lock is released at once, so a new writer reclaiming the segment is not
/// held off by readers for longer than one syscall.
pub(crate) fn is_writer_lock_free(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            rustix::fs::flock(fd, FlockOperation::Unlock)?;
            Ok(true)
        }
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22); 0 when it
/// cannot be read (it is a pid-reuse guard for tools, not something liveness depends on).
pub(crate) fn own_start_time() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')'
    // are space-separated, starting with field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_known() {
        assert!(own_start_time() > 0);
    }

    #[test]
    fn coarse_clock_moves_forward() {
        let a = monotonic_coarse_ns();
        std::thread::sleep(Duration::from_millis(20));
        assert!(monotonic_coarse_ns() > a);
    }
}
