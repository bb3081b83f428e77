//! When the node audits its books (issue 16; what an audit does is `crate::audit`).
//!
//! Audits spend only spare weight: their snapshots wait in the scheduler's last queue
//! ([`SnapshotKind::Audit`]), behind every resync, new book, verification and deepening, and
//! take only the weight those leave. The node keeps at most [`AUDITS_IN_FLIGHT`] audits under way,
//! so the queue never fills with them: their pace is whatever spare weight allows, and adapts
//! to it by itself. Each book is audited at most every `NodeConfig::audit_interval` (30 s by
//! default); among the books due, the busiest since their last audit go first (most events:
//! most chances to have gone wrong), then the longest unaudited.
//!
//! How deep an audit looks adapts too ([`Node::audit_depth`]): a book whose last full-depth
//! (1 000-level) audit is older than [`DEEP_AUDIT_EVERY`] gets one (its first comes a staggered
//! part of that hour after it synced, [`first_deep_audit_after`], so books added together do not
//! all need one in the same cycle); otherwise the deepest
//! snapshot (1 000, 500 or 100 levels) whose cost lets every book of the exchange be audited
//! once per [`MIN_AUDIT_CYCLE`] (or per interval, if longer) from the spare weight; when even
//! 100 levels cannot, 1 000 (at scale depth is worth more than pace). On spot at a 50% share
//! (spare weight: half of 3 000 a minute), 50 books are audited 500 levels deep (weight 25), each
//! within a minute, and 1 000 books 1 000 levels deep (weight 50), 30 a minute, every book within
//! ~34 minutes. Options books are not audited: their snapshots lag the stream by up to ~30 s
//! (`docs/binance-protocol.md` §4.4), older than any audit's buffered events can bridge.

use std::time::Duration;

use tokio::time::Instant;

use super::{AuditState, Node};
use crate::depth_cache::AuditStep;
use crate::exchange::Exchange;
use crate::snapshot::{BookId, SHALLOW_LIMIT, SNAPSHOT_LIMIT, SnapshotOutcome};
use crate::weight_budget::URGENT_RESERVE;

/// The snapshot depths an audit may ask for, deepest first (spot weighs them 50, 25 and 5).
const AUDIT_DEPTHS: [u32; 3] = [SNAPSHOT_LIMIT, 500, SHALLOW_LIMIT];

/// Each book gets a full-depth audit at least this often (spare weight allowing): shallower
/// audits cannot see a level gone wrong deep in the book.
pub(super) const DEEP_AUDIT_EVERY: Duration = Duration::from_secs(3600);

/// The audit cycle the depth is chosen for when the interval is shorter: the issue's "50 books
/// on one DCN, each audited within a minute", 500 levels deep rather than 100 every 30 s.
const MIN_AUDIT_CYCLE: Duration = Duration::from_secs(60);

/// Audits under way at once per node: enough to keep spare weight busy while one snapshot is on
/// its way and another catches up with the live book, few enough that an audit never waits long
/// in the queue (its events are buffered meanwhile).
pub(super) const AUDITS_IN_FLIGHT: usize = 2;

/// How long after a book first synced its first full-depth audit is due: a fixed share of
/// [`DEEP_AUDIT_EVERY`] per book, spread evenly over it. Were every book's first audit its deep
/// one, books added together would all ask for 1 000 levels (weight 50 on spot) in the first
/// cycle, and at a 50% share only 30 of them fit in a minute (measured: 50 books each audited
/// every 1.7 min); staggered, the first cycle runs at the adaptive depth and the deep audits
/// trickle in over the hour, one book at a time. Waiting is safe: a book that just synced was
/// built from a fresh exchange snapshot of its full depth, which is what a deep audit would
/// compare it with. Two exceptions keep "every book deep-audited within the hour of syncing"
/// true: the wait counts from the book's *first* sync (a resync does not restart it, or a book
/// resyncing more often than its share would never be audited deep), and a book started from a
/// peer's copy, whose levels the exchange never confirmed to us, is audited deep first.
///
/// The share is the book id's Fibonacci hash (its product with 2^64 / φ, as a fraction of
/// 2^64): consecutive ids, which books added together get, land far apart and fill the hour
/// evenly whatever their number.
fn first_deep_audit_after(book: BookId) -> Duration {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let share = u64::from(book).wrapping_mul(GOLDEN) as f64 / 2f64.powi(64);
    DEEP_AUDIT_EVERY.mul_f64(share)
}

/// Whether a book's next audit is full depth: a peer's copy no audit compared yet first; else
/// hourly, the first time `first_after` (its staggered share) after the book *first* synced.
/// Durations are how long ago the last deep audit ended and the book first synced (`None`:
/// never).
fn deep_audit_due(
    peer_copy_unaudited: bool,
    since_deep_audit: Option<Duration>,
    since_first_synced: Option<Duration>,
    first_after: Duration,
) -> bool {
    peer_copy_unaudited
        || match since_deep_audit {
            Some(since) => since >= DEEP_AUDIT_EVERY,
            None => since_first_synced.is_none_or(|since| since >= first_after),
        }
}

impl Node {
    /// The `limit` an audit of `book` asks for (see the module doc).
    pub(super) fn audit_depth(&self, book: BookId) -> u32 {
        let Some(entry) = self.books.get(&book) else {
            return SNAPSHOT_LIMIT;
        };
        let exchange = entry.spec.exchange;
        let spec = exchange.spec();
        let deepest = spec.snapshot_limit(SNAPSHOT_LIMIT);
        let deep_due = deep_audit_due(
            entry.peer_copy_unaudited,
            entry.deep_audited_at.map(|at| at.elapsed()),
            entry.first_synced_at.map(|at| at.elapsed()),
            first_deep_audit_after(book),
        );
        let Some(interval) = self.config.audit_interval.filter(|_| !deep_due) else {
            return deepest;
        };
        let cycle = interval.max(MIN_AUDIT_CYCLE);
        let books = self
            .books
            .values()
            .filter(|entry| {
                entry.spec.exchange == exchange && entry.cache.meta().status.is_synced()
            })
            .count()
            .max(1);
        let spare_per_minute =
            f64::from(spec.weight_per_minute) * self.weight_share.get() * (1.0 - URGENT_RESERVE);
        let audits_per_minute = books as f64 * 60.0 / cycle.as_secs_f64();
        AUDIT_DEPTHS
            .into_iter()
            .map(|wanted| spec.snapshot_limit(wanted))
            .find(|&limit| {
                f64::from(spec.snapshot_weight(limit)) * audits_per_minute <= spare_per_minute
            })
            .unwrap_or(deepest)
    }

    /// Marks a book's audit as wanted at once (its replicas disagree); it goes before every
    /// other due audit.
    pub(super) fn want_audit(&mut self, exchange: Exchange, symbol: &str) {
        let Some(book) = self.keys.get(&(exchange, symbol.to_owned())) else {
            return;
        };
        if let Some(entry) = self.books.get_mut(book) {
            tracing::info!(%exchange, symbol, "audit asked for");
            entry.audit_wanted = true;
        }
    }

    /// Starts the audits that are due, up to [`AUDITS_IN_FLIGHT`] under way: those asked for
    /// first, then (when audits are on) those whose interval has passed.
    pub(super) fn audit_due(&mut self) {
        let interval = self.config.audit_interval;
        let under_way = self
            .books
            .values()
            .filter(|entry| entry.audit != AuditState::Idle)
            .count();
        let room = AUDITS_IN_FLIGHT.saturating_sub(under_way);
        if room == 0 {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<(bool, u64, Instant, BookId)> = self
            .books
            .iter()
            .filter(|(_, entry)| {
                entry.audit == AuditState::Idle
                    && !entry.verifying
                    && !entry.deepening
                    && !entry.spec.exchange.is_options()
                    && entry.cache.meta().status.is_synced()
                    && (entry.audit_wanted
                        || interval.is_some_and(|interval| {
                            entry
                                .audited_at
                                .or(entry.synced_since)
                                .is_some_and(|at| now.duration_since(at) >= interval)
                        }))
            })
            .map(|(book, entry)| {
                let since = entry.audited_at.or(entry.synced_since).unwrap_or(now);
                (entry.audit_wanted, entry.events_since_audit, since, *book)
            })
            .collect();
        // Asked for first, then the busiest, then the longest unaudited.
        due.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        for (_, _, _, book) in due.into_iter().take(room) {
            self.begin_audit(book);
        }
    }

    fn begin_audit(&mut self, book: BookId) {
        let budget = self.audit_budget.clone();
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        if !entry.cache.begin_audit(budget) {
            // Not auditable now (shallow, or being deepened): its turn comes again later.
            entry.audited_at = Some(Instant::now());
            return;
        }
        entry.audit = AuditState::Requested;
        entry.audit_wanted = false;
        let limit = self.audit_depth(book);
        if let Some(entry) = self.books.get_mut(&book) {
            entry.audit_limit = limit;
        }
        self.request_snapshot(book);
    }

    /// The audit's snapshot arrived (or failed).
    pub(super) fn on_audit_snapshot(&mut self, outcome: SnapshotOutcome) {
        let book = outcome.book;
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        let step = match outcome.result {
            Ok(snapshot) => entry
                .cache
                .on_audit_snapshot(&snapshot, &mut self.publisher),
            Err(error) => {
                tracing::debug!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, %error, "audit snapshot failed");
                entry.cache.cancel_audit();
                Ok(AuditStep::Failed)
            }
        };
        match step {
            Ok(AuditStep::Pending) => entry.audit = AuditState::CatchingUp,
            Ok(step) => self.audit_ended(book, step),
            Err(error) => {
                tracing::error!(%error, book, "publishing failed");
                self.audit_ended(book, AuditStep::Failed);
            }
        }
    }

    /// After a live event: an audit that was catching up and is no longer under way has ended
    /// (its verdict is in the book's audit record).
    pub(super) fn audit_caught_up(&mut self, book: BookId) {
        let Some(entry) = self.books.get(&book) else {
            return;
        };
        if entry.audit == AuditState::CatchingUp && !entry.cache.is_auditing() {
            self.audit_ended(book, AuditStep::Pending);
        }
    }

    /// Ends the book's audit; `step` is its verdict when known here (`Pending` when it ended
    /// with a live event: the book's audit record has it).
    fn audit_ended(&mut self, book: BookId, step: AuditStep) {
        let Some(entry) = self.books.get_mut(&book) else {
            return;
        };
        entry.audit = AuditState::Idle;
        entry.audited_at = Some(Instant::now());
        entry.events_since_audit = 0;
        if step != AuditStep::Failed && entry.audit_limit >= SNAPSHOT_LIMIT {
            entry.deep_audited_at = entry.audited_at;
            entry.peer_copy_unaudited = false;
        }
        let audits = entry.cache.audits();
        tracing::debug!(exchange = %entry.spec.exchange, symbol = %entry.spec.symbol, ?step, audits = audits.audits, mismatches = audits.audit_mismatches, "audit ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Books added together (consecutive ids) get their first deep audits spread over the hour:
    /// no minute holds more than about its even share, so they never crowd one audit cycle.
    #[test]
    fn first_deep_audits_of_books_added_together_spread_over_the_hour() {
        for books in [2u32, 50, 1000] {
            let mut per_minute = [0u32; 60];
            for book in 0..books {
                let after = first_deep_audit_after(book);
                assert!(after < DEEP_AUDIT_EVERY, "{after:?}");
                per_minute[(after.as_secs() / 60) as usize] += 1;
            }
            let even = books.div_ceil(60);
            let most = per_minute.iter().max().copied().unwrap_or(0);
            assert!(
                most <= 2 * even,
                "{books} books: {most} in one minute, even {even}"
            );
        }
        // Deterministic: a node restarted with the same books staggers them the same way.
        assert_eq!(first_deep_audit_after(7), first_deep_audit_after(7));
    }

    /// The rules behind "every book a full-depth audit at least hourly".
    #[test]
    fn when_an_audit_is_full_depth() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let share = minutes(30);
        // First synced 10 min ago, never audited deep: not yet (its share is 30 min)...
        assert!(!deep_audit_due(false, None, Some(minutes(10)), share));
        // ...and due once the share has passed since the *first* sync, however recently the
        // book resynced (a resync does not restart this clock).
        assert!(deep_audit_due(false, None, Some(minutes(31)), share));
        // Then hourly.
        assert!(!deep_audit_due(
            false,
            Some(minutes(59)),
            Some(minutes(90)),
            share
        ));
        assert!(deep_audit_due(
            false,
            Some(minutes(60)),
            Some(minutes(120)),
            share
        ));
        // A peer's copy is audited deep first, even right after a deep audit.
        assert!(deep_audit_due(
            true,
            Some(minutes(1)),
            Some(minutes(2)),
            share
        ));
        assert!(deep_audit_due(true, None, Some(Duration::ZERO), share));
    }
}
