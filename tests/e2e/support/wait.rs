//! Every wait of the e2e suite: poll a check until it holds or a deadline passes, then panic with
//! what was awaited and the check's last answer, so a failure says how far things got.
//!
//! No test sleeps in a loop of its own. A fixed sleep left in a test is part of its scenario (a
//! silence that must last), never a wait for a state.

use std::time::{Duration, Instant};

use ubdcc_shm::{BookInfo, BookStatus, ClusterReader};

/// Between two looks at shared memory: a read costs nothing, and a fault test wants to see a
/// short state (a book out of sync for a moment) while it lasts.
pub const SHM_POLL: Duration = Duration::from_millis(20);

/// Between two questions over HTTP (or scans of `/proc`): each costs a process a request, and
/// the 2-core machines running the suite are busy enough.
pub const HTTP_POLL: Duration = Duration::from_millis(100);

/// Asks `check` every `every` until it is `Ok`; panics with its last error after `limit`.
pub fn wait_until_every<T>(
    every: Duration,
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(error) if started.elapsed() > limit => {
                panic!("{what}: not within {limit:?}: {error}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`wait_until_every`] at the HTTP pace: the wait for anything asked of a process.
pub fn wait_until<T>(limit: Duration, what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    wait_until_every(HTTP_POLL, limit, what, check)
}

/// Asks `check` every [`SHM_POLL`] for `during`; panics at its first error. A condition that
/// must stay true (books synced through a connection's replacement), not one awaited.
pub fn hold(during: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    while started.elapsed() < during {
        if let Err(error) = check() {
            panic!("{what}: broken after {:?}: {error}", started.elapsed());
        }
        std::thread::sleep(SHM_POLL);
    }
}

/// Waits until `done` holds for the info of `symbol` of `exchange` in shared memory; returns
/// that info, or panics with the last one seen after `limit`.
pub fn wait_book(
    reader: &mut ClusterReader,
    (exchange, symbol): (&str, &str),
    limit: Duration,
    what: &str,
    done: impl Fn(&BookInfo) -> bool,
) -> BookInfo {
    let what = format!("{exchange} {symbol} {what}");
    wait_until_every(SHM_POLL, limit, &what, || {
        let info = reader.info(exchange, symbol);
        match info {
            Ok(info) if done(&info) => Ok(info),
            other => Err(format!("still {other:?}")),
        }
    })
}

/// Waits until every one of `markets` is synced in shared memory; returns how long that took,
/// or panics with the laggards after `limit`.
pub fn wait_synced(
    reader: &mut ClusterReader,
    markets: &[(&str, &str, String)],
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    wait_until(limit, "synced", || {
        let pending = unsynced(reader, markets);
        pending
            .is_empty()
            .then_some(())
            .ok_or(format!("{pending:?}"))
    });
    started.elapsed()
}

/// `exchange:symbol` of each of `markets` not synced in shared memory.
fn unsynced(reader: &mut ClusterReader, markets: &[(&str, &str, String)]) -> Vec<String> {
    markets
        .iter()
        .filter(|(exchange, _, symbol)| {
            !reader
                .info(exchange, symbol)
                .is_ok_and(|info| info.status == BookStatus::Synced)
        })
        .map(|(exchange, _, symbol)| format!("{exchange}:{symbol}"))
        .collect()
}
