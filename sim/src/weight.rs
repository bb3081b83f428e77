//! Request-weight accounting of one family's REST host, as Binance does it per IP (reference
//! §5): fixed one-minute windows aligned to the clock, `X-MBX-USED-WEIGHT-1M`, 429 with
//! `Retry-After` when a request would exceed the limit, and a 418 ban for a client that keeps
//! requesting before that `Retry-After` has passed. Bans start at the configured length and double
//! for every further ban, up to 3 days.
//!
//! Choices where Binance is silent: a rejected request (429 or 418) adds no weight, so the used
//! weight never exceeds the limit; a request during a ban neither extends the ban nor adds weight;
//! every client of the simulator counts as the same IP.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

/// One minute, in milliseconds.
const WINDOW_MS: u64 = 60_000;

/// The longest ban Binance hands out.
const MAX_BAN: Duration = Duration::from_secs(3 * 24 * 3600);

/// Closed windows kept for `/sim/stats`.
const KEPT_WINDOWS: usize = 10;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectStatus {
    /// 429: the request would exceed the limit.
    TooManyRequests,
    /// 418: the host is banned for ignoring a 429.
    Banned,
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// 429 or 418.
    pub(crate) status: RejectStatus,
    /// Seconds until a request may succeed (`Retry-After`).
    pub(crate) retry_after_secs: u64,
    /// The used weight of the current window (`X-MBX-USED-WEIGHT-1M`).
    pub(crate) used_weight: u32,
    /// The per-minute limit.
    pub(crate) limit: u32,
    /// When the back-off or ban ends, in ms since the epoch.
    pub(crate) until_ms: u64,
}

/// A forced REST status (the `rest_status` fault).
#[derive(Debug, Clone, Copy)]
struct Forced {
    status: RejectStatus,
    until_ms: u64,
    /// A `Retry-After` to send instead of the true one (a misbehaving server).
    retry_after_secs: Option<u64>,
}

/// Weight used in one closed or current window.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct WindowStats {
    /// Window start, ms since the epoch.
    pub(crate) window_start_ms: u64,
    /// Weight of the admitted requests.
    pub(crate) used_weight: u32,
    /// Weight of every request, refused ones included.
    pub(crate) requested_weight: u32,
}

/// What `/sim/stats` shows of one family's REST host.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WeightStats {
    /// The per-minute limit.
    pub(crate) weight_limit_1m: u32,
    /// The current window.
    pub(crate) current: WindowStats,
    /// Up to the last 10 closed windows, oldest first.
    pub(crate) previous: Vec<WindowStats>,
    /// The highest used weight of any window so far (never above the limit).
    pub(crate) max_used_weight_1m: u32,
    /// The highest requested weight of any window so far (above the limit once a 429 was due).
    pub(crate) max_requested_weight_1m: u32,
    /// Weight-bearing requests received.
    pub(crate) requests: u64,
    /// 429 responses sent.
    pub(crate) responses_429: u64,
    /// 418 responses sent.
    pub(crate) responses_418: u64,
    /// Bans handed out.
    pub(crate) bans: u32,
    /// Depth requests per known symbol, whatever their outcome.
    pub(crate) snapshot_requests: BTreeMap<String, u64>,
    /// Depth requests per symbol answered with a snapshot.
    pub(crate) snapshots_served: BTreeMap<String, u64>,
}

/// The weight ledger of one family's REST host.
#[derive(Debug)]
pub(crate) struct WeightLedger {
    limit: u32,
    first_ban: Duration,
    current: WindowStats,
    previous: VecDeque<WindowStats>,
    max_used: u32,
    max_requested: u32,
    /// After a 429, requests before this instant (ms) earn a ban.
    backoff_until_ms: u64,
    banned_until_ms: u64,
    bans: u32,
    forced: Option<Forced>,
    requests: u64,
    responses_429: u64,
    responses_418: u64,
    snapshot_requests: BTreeMap<String, u64>,
    snapshots_served: BTreeMap<String, u64>,
}

impl WeightLedger {
    /// A ledger with a per-minute `limit` whose first ban lasts `first_ban`.
    pub(crate) fn new(limit: u32, first_ban: Duration) -> WeightLedger {
        WeightLedger {
            limit,
            first_ban,
            current: WindowStats {
                window_start_ms: 0,
                used_weight: 0,
                requested_weight: 0,
            },
            previous: VecDeque::new(),
            max_used: 0,
            max_requested: 0,
            backoff_until_ms: 0,
            banned_until_ms: 0,
            bans: 0,
            forced: None,
            requests: 0,
            responses_429: 0,
            responses_418: 0,
            snapshot_requests: BTreeMap::new(),
            snapshots_served: BTreeMap::new(),
        }
    }

    /// Charges a request of `weight` at `now_ms` (ms since the epoch).
    ///
    /// # Errors
    /// A [`Rejection`] (429 or 418) when the request must be refused; it then adds no weight.
    pub(crate) fn admit(&mut self, weight: u32, now_ms: u64) -> Result<u32, Rejection> {
        self.roll(now_ms);
        self.requests += 1;
        self.current.requested_weight = self.current.requested_weight.saturating_add(weight);
        self.max_requested = self.max_requested.max(self.current.requested_weight);
        if let Some(forced) = self.forced.filter(|f| now_ms < f.until_ms) {
            let mut rejection = self.reject(forced.status, forced.until_ms, now_ms);
            if let Some(secs) = forced.retry_after_secs {
                rejection.retry_after_secs = secs;
            }
            return Err(rejection);
        }
        if now_ms < self.banned_until_ms {
            return Err(self.reject(RejectStatus::Banned, self.banned_until_ms, now_ms));
        }
        if now_ms < self.backoff_until_ms {
            self.bans += 1;
            let doublings = (self.bans - 1).min(20);
            let ban = self.first_ban.saturating_mul(1 << doublings).min(MAX_BAN);
            self.banned_until_ms = now_ms.saturating_add(ban.as_millis() as u64);
            self.backoff_until_ms = 0;
            return Err(self.reject(RejectStatus::Banned, self.banned_until_ms, now_ms));
        }
        if self.current.used_weight.saturating_add(weight) > self.limit {
            let window_end = self.current.window_start_ms + WINDOW_MS;
            // Retry-After is whole seconds, rounded up; the back-off lasts exactly that long,
            // so a client that honours it never earns a ban.
            let retry_after_secs = (window_end - now_ms).div_ceil(1000).max(1);
            self.backoff_until_ms = now_ms + retry_after_secs * 1000;
            return Err(self.reject(RejectStatus::TooManyRequests, self.backoff_until_ms, now_ms));
        }
        self.current.used_weight += weight;
        self.max_used = self.max_used.max(self.current.used_weight);
        Ok(self.current.used_weight)
    }

    /// Refuses every request with `status` until `until_ms`.
    pub(crate) fn force(
        &mut self,
        status: RejectStatus,
        until_ms: u64,
        retry_after_secs: Option<u64>,
    ) {
        self.forced = Some(Forced {
            status,
            until_ms,
            retry_after_secs,
        });
    }

    /// Lifts a forced status, a pending back-off and a ban.
    pub(crate) fn clear(&mut self) {
        self.forced = None;
        self.backoff_until_ms = 0;
        self.banned_until_ms = 0;
    }

    /// Counts a depth request for `symbol`, and whether it was answered with a snapshot.
    pub(crate) fn count_snapshot(&mut self, symbol: &str, served: bool) {
        *self.snapshot_requests.entry(symbol.to_owned()).or_default() += 1;
        if served {
            *self.snapshots_served.entry(symbol.to_owned()).or_default() += 1;
        }
    }

    /// What `/sim/stats` shows.
    pub(crate) fn stats(&mut self, now_ms: u64) -> WeightStats {
        self.roll(now_ms);
        WeightStats {
            weight_limit_1m: self.limit,
            current: self.current,
            previous: self.previous.iter().copied().collect(),
            max_used_weight_1m: self.max_used,
            max_requested_weight_1m: self.max_requested,
            requests: self.requests,
            responses_429: self.responses_429,
            responses_418: self.responses_418,
            bans: self.bans,
            snapshot_requests: self.snapshot_requests.clone(),
            snapshots_served: self.snapshots_served.clone(),
        }
    }

    fn reject(&mut self, status: RejectStatus, until_ms: u64, now_ms: u64) -> Rejection {
        match status {
            RejectStatus::TooManyRequests => self.responses_429 += 1,
            RejectStatus::Banned => self.responses_418 += 1,
        }
        Rejection {
            status,
            retry_after_secs: until_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
            used_weight: self.current.used_weight,
            limit: self.limit,
            until_ms,
        }
    }

    /// Starts a new window when `now_ms` is past the current one.
    fn roll(&mut self, now_ms: u64) {
        let window_start_ms = now_ms - now_ms % WINDOW_MS;
        if window_start_ms <= self.current.window_start_ms {
            return;
        }
        if self.current.requested_weight > 0 {
            if self.previous.len() == KEPT_WINDOWS {
                self.previous.pop_front();
            }
            self.previous.push_back(self.current);
        }
        self.current = WindowStats {
            window_start_ms,
            used_weight: 0,
            requested_weight: 0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_020_000; // 40 s into a minute

    #[test]
    fn weight_adds_up_within_a_window_and_resets_in_the_next() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert_eq!(ledger.admit(50, T0), Ok(50));
        assert_eq!(ledger.admit(50, T0 + 1), Ok(100));
        assert_eq!(ledger.admit(20, T0 + 20_000), Ok(20));
    }

    #[test]
    fn overspending_gets_429_until_the_window_ends() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert_eq!(ledger.admit(100, T0), Ok(100));
        let rejection = ledger.admit(1, T0 + 500);
        assert!(matches!(
            rejection,
            Err(Rejection {
                status: RejectStatus::TooManyRequests,
                retry_after_secs: 20,
                used_weight: 100,
                ..
            })
        ));
    }

    #[test]
    fn requesting_during_the_back_off_earns_a_ban_that_doubles() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        assert!(ledger.admit(10, T0).is_ok());
        assert!(ledger.admit(10, T0 + 1).is_err());
        let ban = ledger.admit(1, T0 + 2);
        assert!(matches!(
            ban,
            Err(Rejection {
                status: RejectStatus::Banned,
                retry_after_secs: 120,
                ..
            })
        ));
        let after_ban = T0 + 2 + 120_000;
        assert!(ledger.admit(10, after_ban).is_ok());
        assert!(ledger.admit(10, after_ban + 1).is_err());
        let second = ledger.admit(1, after_ban + 2);
        assert!(matches!(
            second,
            Err(Rejection {
                retry_after_secs: 240,
                ..
            })
        ));
        assert_eq!(ledger.stats(after_ban + 3).responses_418, 2);
    }

    #[test]
    fn a_client_that_honours_retry_after_is_never_banned() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        assert!(ledger.admit(10, T0).is_ok());
        let Err(rejection) = ledger.admit(1, T0) else {
            panic!("over the limit");
        };
        assert_eq!(
            ledger.admit(1, T0 + rejection.retry_after_secs * 1000),
            Ok(1)
        );
    }

    #[test]
    fn a_forced_status_refuses_until_it_expires() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        ledger.force(RejectStatus::Banned, T0 + 5000, None);
        assert!(matches!(
            ledger.admit(1, T0),
            Err(Rejection {
                status: RejectStatus::Banned,
                retry_after_secs: 5,
                ..
            })
        ));
        assert_eq!(ledger.admit(1, T0 + 5000), Ok(1));
    }
}
