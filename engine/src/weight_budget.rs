//! The REST request-weight budget of one API endpoint (the scheduler keeps one per endpoint URL:
//! spot, futures and options are separate weight systems even behind one host), so snapshot
//! downloads never get this machine's IP rate-limited or banned (`docs/binance-protocol.md` §1.2
//! and §5).
//!
//! Three signals, the strictest wins:
//! - our own spending in the last minute (a sliding window), capped at a share of Binance's
//!   per-minute limit, so one DCN leaves room for the others on the same host;
//! - the server's `X-MBX-USED-WEIGHT-1M` header, which counts the whole IP (every DCN on this
//!   host and anything else that shares it): nothing is sent that would take the IP past
//!   [`IP_CEILING`] of the limit. (Comparing it with our own share instead would let all DCNs of
//!   a host together use only one share.) The server's figure cannot include our requests still
//!   in flight, so their weight is added to it: four snapshots sent at once after one reading
//!   must all fit under the ceiling, not each of them alone.
//! - `Retry-After` on 429 (rate limited) and 418 (banned): nothing is sent until it has passed.
//!   Another DCN's 429 / 418 on the same IP holds this budget back too
//!   ([`WeightBudget::hold_until`], fed by `crate::ban_board`).
//!
//! Requests that can wait (verifications of quiet books) spend only *spare* weight
//! ([`WeightBudget::try_spend_spare`]): they leave [`URGENT_RESERVE`] of the budget, and as much
//! below the IP's ceiling, untouched, so a book that loses sync finds weight at once however many
//! verifications are due. [`WeightBudget::forecast`] tells when queued requests will be granted.
//!
//! Time is passed in, never read, so every rule is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Share of the IP's limit the server's count may reach with our requests: the rest is headroom
/// for requests in flight and for other clients on the IP.
pub const IP_CEILING: f64 = 0.9;

/// Share of the budget only urgent requests (new and out-of-sync books) may use. Half: a
/// resync storm still has half the budget for itself from the first second, and verifications,
/// which can wait, still get half whenever nothing is urgent (spot at a 0.5 share: 30 of the 60
/// snapshots a minute).
pub const URGENT_RESERVE: f64 = 0.5;

/// Binance's weight window.
const WINDOW: Duration = Duration::from_secs(60);

/// When Binance says 429 or 418 without a `Retry-After`, wait this long; its bans start at two
/// minutes, and guessing short only escalates them.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(120);

/// The longest wait a `Retry-After` can impose: Binance's longest ban (three days). A larger
/// value is no answer Binance gives (a broken proxy, a hostile neighbour on the path, or
/// `u64::MAX`); believing it would stop every snapshot of the host for good, and adding it to an
/// [`Instant`] would overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// The answer to "may I send a request of this weight now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes; the weight is booked.
    Granted,
    /// Not before this instant.
    WaitUntil(Instant),
}

/// What the host said about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseWeight {
    /// The HTTP status.
    pub status: u16,
    /// `X-MBX-USED-WEIGHT-1M` (or the bare header), if present.
    pub used_weight: Option<u32>,
    /// `Retry-After`, in seconds, if present.
    pub retry_after_secs: Option<u64>,
}

/// The budget of one REST host.
#[derive(Debug, Clone)]
pub struct WeightBudget {
    /// The host's limit per minute.
    limit: u32,
    /// Weight this client may use per minute: a share of the host's limit.
    budget: u32,
    /// Weight the whole IP may reach, by the server's count ([`IP_CEILING`] of the limit).
    ceiling: u32,
    /// Our own spending: `(when, weight)`, oldest first, within the last window.
    spent: VecDeque<(Instant, u32)>,
    /// The last used-weight the server reported and when; it counts the whole IP.
    server: Option<(Instant, u32)>,
    /// No request before this (429 / 418).
    blocked_until: Option<Instant>,
    /// Weight of our requests sent and not answered yet: not in the server's figure.
    in_flight: u32,
    /// 429 and 418 responses seen.
    rejections: u32,
}

impl WeightBudget {
    /// A budget of `share` (0.0..=1.0) of `limit_per_minute`.
    pub fn new(limit_per_minute: u32, share: f64) -> Self {
        let budget = (f64::from(limit_per_minute) * share.clamp(0.0, 1.0)).floor() as u32;
        let ceiling = (f64::from(limit_per_minute) * IP_CEILING).floor() as u32;
        Self {
            limit: limit_per_minute,
            budget: budget.max(1),
            ceiling: ceiling.max(budget.max(1)),
            spent: VecDeque::new(),
            server: None,
            blocked_until: None,
            in_flight: 0,
            rejections: 0,
        }
    }

    /// Changes this client's share of the limit (mgmt sets it from the number of DCNs on the
    /// host); what was spent stays spent.
    pub fn set_share(&mut self, share: f64) {
        let fresh = Self::new(self.limit, share);
        (self.budget, self.ceiling) = (fresh.budget, fresh.ceiling);
    }

    /// Weight per minute this client may use (the tests' view).
    #[cfg(test)]
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// 429 and 418 responses seen so far (the tests' view).
    #[cfg(test)]
    pub fn rejections(&self) -> u32 {
        self.rejections
    }

    /// Weight of requests granted and not yet answered ([`WeightBudget::answered`]; the
    /// tests' view).
    #[cfg(test)]
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// No request before this (a 429 / 418, ours or another DCN's), if still ahead.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.blocked_until
    }

    /// Holds every request back until `until`: a block another DCN on this IP met. It extends,
    /// never shortens, the current block, and counts as no rejection of ours.
    pub fn hold_until(&mut self, until: Instant) {
        self.blocked_until = Some(
            self.blocked_until
                .map_or(until, |current| current.max(until)),
        );
    }

    /// Our own weight spent in the minute before `now`.
    pub fn spent(&self, now: Instant) -> u32 {
        self.spent
            .iter()
            .filter(|(at, _)| now.duration_since(*at) < WINDOW)
            .map(|(_, weight)| weight)
            .sum()
    }

    /// Books `weight` if it fits every limit at `now`, else says when to ask again.
    ///
    /// A request heavier than the whole budget is let through alone, once nothing else was
    /// spent in the window, rather than never.
    /// A granted request is in flight until [`WeightBudget::answered`] is called for it.
    pub fn try_spend(&mut self, weight: u32, now: Instant) -> Permit {
        self.try_spend_leaving(0, weight, now)
    }

    /// Like [`WeightBudget::try_spend`], for a request that can wait: it is granted only while
    /// `URGENT_RESERVE` of the budget (and as much below the IP's ceiling) stays free.
    pub fn try_spend_spare(&mut self, weight: u32, now: Instant) -> Permit {
        self.try_spend_leaving(self.reserve(), weight, now)
    }

    /// When each of `urgent` requests of `weight`, then each of `spare` ones, would be granted,
    /// one after another from `now`, if nothing else were spent meanwhile (the first `urgent`
    /// instants forecast [`WeightBudget::try_spend`], the rest
    /// [`WeightBudget::try_spend_spare`]). The budget itself is not touched.
    pub fn forecast(&self, urgent: usize, spare: usize, weight: u32, now: Instant) -> Vec<Instant> {
        let mut budget = self.clone();
        let mut at = now;
        let mut grants = Vec::with_capacity(urgent + spare);
        while grants.len() < urgent + spare {
            let reserve = if grants.len() < urgent {
                0
            } else {
                self.reserve()
            };
            match budget.try_spend_leaving(reserve, weight, at) {
                Permit::Granted => grants.push(at),
                // Every wait ends later (a booking leaving the window, a ban or the server's
                // window ending), so the loop always moves on.
                Permit::WaitUntil(until) => at = until.max(at + Duration::from_millis(1)),
            }
        }
        grants
    }

    /// Weight kept free for urgent requests.
    fn reserve(&self) -> u32 {
        (f64::from(self.budget) * URGENT_RESERVE).floor() as u32
    }

    /// Books `weight` if it fits every limit less `reserve` at `now`.
    fn try_spend_leaving(&mut self, reserve: u32, weight: u32, now: Instant) -> Permit {
        let limit = self.budget.saturating_sub(reserve).max(1);
        let sent = weight;
        let weight = weight.min(limit);
        self.forget_before(now);
        if let Some(until) = self.blocked_until.filter(|until| *until > now) {
            return Permit::WaitUntil(until);
        }
        let own = self.spent(now);
        if own + weight > limit {
            // The oldest booking leaves the window first; as many as needed must leave.
            return Permit::WaitUntil(self.when_own_fits(limit, weight, now));
        }
        if let Some((at, used)) = self.server
            && now.duration_since(at) < WINDOW
            && used + self.in_flight + weight > self.ceiling.saturating_sub(reserve)
        {
            // The server's count resets with its window, at most a minute after it was read.
            return Permit::WaitUntil(at + WINDOW);
        }
        self.spent.push_back((now, weight));
        self.in_flight = self.in_flight.saturating_add(sent);
        Permit::Granted
    }

    /// A granted request of `weight` came back: with what the host said, or with nothing (a
    /// transport failure, which may or may not have reached the host).
    pub fn answered(&mut self, weight: u32, response: Option<ResponseWeight>, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(weight);
        if let Some(response) = response {
            self.on_response(response, now);
        }
    }

    /// Learns from a response: the server's count, and 429 / 418 with `Retry-After`.
    pub fn on_response(&mut self, response: ResponseWeight, now: Instant) {
        if let Some(used) = response.used_weight {
            self.server = Some((now, used));
        }
        if matches!(response.status, 429 | 418) {
            self.rejections += 1;
            let wait = response
                .retry_after_secs
                .map_or(DEFAULT_BACKOFF, retry_after);
            // `MAX_RETRY_AFTER` fits any clock this runs on; `now` only on a clock at its end.
            let until = now.checked_add(wait).unwrap_or(now);
            self.blocked_until = Some(
                self.blocked_until
                    .map_or(until, |current| current.max(until)),
            );
        }
    }

    /// When our own spending will leave room for `weight` within `limit`.
    fn when_own_fits(&self, limit: u32, weight: u32, now: Instant) -> Instant {
        let mut own = self.spent(now);
        for (at, spent) in &self.spent {
            own -= spent;
            if own + weight <= limit {
                return *at + WINDOW;
            }
        }
        now + WINDOW
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .spent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW)
        {
            self.spent.pop_front();
        }
    }
}

/// The wait a `Retry-After` of `secs` imposes, at most [`MAX_RETRY_AFTER`].
fn retry_after(secs: u64) -> Duration {
    let wait = Duration::from_secs(secs);
    if wait > MAX_RETRY_AFTER {
        tracing::warn!(
            retry_after_secs = secs,
            clamped_to_secs = MAX_RETRY_AFTER.as_secs(),
            "Retry-After longer than any Binance ban; waiting the longest ban instead"
        );
        return MAX_RETRY_AFTER;
    }
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(used: u32) -> ResponseWeight {
        ResponseWeight {
            status: 200,
            used_weight: Some(used),
            retry_after_secs: None,
        }
    }

    #[test]
    fn own_spending_is_capped_per_sliding_minute() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.05); // 300 per minute
        for i in 0..6 {
            assert_eq!(
                budget.try_spend(50, start + Duration::from_secs(i)),
                Permit::Granted
            );
        }
        // The seventh snapshot must wait until the first booking (at `start`) leaves the window.
        assert_eq!(
            budget.try_spend(50, start + Duration::from_secs(10)),
            Permit::WaitUntil(start + WINDOW)
        );
        assert_eq!(budget.try_spend(50, start + WINDOW), Permit::Granted);
        assert_eq!(budget.spent(start + WINDOW), 300);
    }

    #[test]
    fn the_servers_count_of_the_whole_ip_is_respected() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(2400, 0.5); // 1200 of our own, the IP up to 2160
        // Other DCNs on the IP used more than our share: our own share is still ours.
        budget.on_response(ok(1190), start);
        assert_eq!(
            budget.try_spend(20, start + Duration::from_secs(1)),
            Permit::Granted
        );
        // The IP near its ceiling: wait for the server's window to pass.
        budget.on_response(ok(2150), start);
        assert_eq!(
            budget.try_spend(20, start + Duration::from_secs(1)),
            Permit::WaitUntil(start + WINDOW)
        );
        // A fresher, lower count (a new server window) lets it through.
        budget.on_response(ok(40), start + Duration::from_secs(2));
        assert_eq!(
            budget.try_spend(20, start + Duration::from_secs(3)),
            Permit::Granted
        );
    }

    #[test]
    fn retry_after_on_429_and_418_blocks_every_request_until_it_passes() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5);
        budget.on_response(
            ResponseWeight {
                status: 429,
                used_weight: Some(6100),
                retry_after_secs: Some(30),
            },
            start,
        );
        let until = start + Duration::from_secs(30);
        assert_eq!(
            budget.try_spend(1, start + Duration::from_secs(29)),
            Permit::WaitUntil(until)
        );
        // A ban extends, never shortens, the block.
        budget.on_response(
            ResponseWeight {
                status: 418,
                used_weight: None,
                retry_after_secs: Some(120),
            },
            start + Duration::from_secs(1),
        );
        assert_eq!(
            budget.try_spend(1, start + Duration::from_secs(31)),
            Permit::WaitUntil(start + Duration::from_secs(121))
        );
        assert_eq!(budget.rejections(), 2);
        assert_eq!(
            budget.try_spend(1, start + Duration::from_secs(121)),
            Permit::Granted
        );
    }

    #[test]
    fn a_rejection_without_retry_after_backs_off_conservatively() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5);
        budget.on_response(
            ResponseWeight {
                status: 429,
                used_weight: None,
                retry_after_secs: None,
            },
            start,
        );
        assert_eq!(
            budget.try_spend(1, start),
            Permit::WaitUntil(start + DEFAULT_BACKOFF)
        );
    }

    #[test]
    fn an_absurd_retry_after_is_clamped_to_the_longest_ban_and_never_panics() {
        // Issue 10: `Retry-After: 18446744073709551615` overflowed `Instant + Duration`.
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5);
        for status in [429, 418] {
            budget.on_response(
                ResponseWeight {
                    status,
                    used_weight: None,
                    retry_after_secs: Some(u64::MAX),
                },
                start,
            );
        }
        let until = start + MAX_RETRY_AFTER;
        assert_eq!(
            budget.try_spend(1, start + Duration::from_secs(3600)),
            Permit::WaitUntil(until)
        );
        // Not frozen for good: the host is asked again once the longest ban is over.
        assert_eq!(budget.try_spend(1, until), Permit::Granted);
    }

    #[test]
    fn a_request_heavier_than_the_budget_goes_alone_once_the_window_is_clear() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(100, 0.1); // 10
        assert_eq!(budget.try_spend(50, start), Permit::Granted);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            budget.try_spend(50, later),
            Permit::WaitUntil(start + WINDOW)
        );
        assert_eq!(budget.try_spend(50, start + WINDOW), Permit::Granted);
    }

    #[test]
    fn spare_spending_leaves_the_urgent_reserve_free() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.05); // 300 a minute, 150 of them spare
        for i in 0..3 {
            assert_eq!(
                budget.try_spend_spare(50, start + Duration::from_secs(i)),
                Permit::Granted
            );
        }
        let later = start + Duration::from_secs(5);
        assert_eq!(
            budget.try_spend_spare(50, later),
            Permit::WaitUntil(start + WINDOW),
            "the fourth verification would eat into the reserve"
        );
        for _ in 0..3 {
            assert_eq!(budget.try_spend(50, later), Permit::Granted, "urgent");
        }
        assert_eq!(budget.spent(later), 300);
    }

    #[test]
    fn spare_spending_keeps_the_reserve_below_the_ips_ceiling_too() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5); // 3000 (1500 spare), the IP up to 5400
        budget.on_response(ok(3900), start);
        let soon = start + Duration::from_secs(1);
        assert_eq!(
            budget.try_spend_spare(50, soon),
            Permit::WaitUntil(start + WINDOW)
        );
        assert_eq!(budget.try_spend(50, soon), Permit::Granted);
    }

    #[test]
    fn requests_in_flight_count_on_top_of_the_servers_figure() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5); // 3000 of our own, the IP up to 5400
        budget.on_response(ok(5320), start);
        // 5320 + 50 fits; a second 50 would too by the server's figure alone, but the first is
        // still on its way and not in that figure.
        assert_eq!(budget.try_spend(50, start), Permit::Granted);
        assert_eq!(budget.in_flight(), 50);
        assert_eq!(
            budget.try_spend(50, start),
            Permit::WaitUntil(start + WINDOW)
        );
        // Answered without a fresh figure (a transport failure): no longer in flight.
        budget.answered(50, None, start);
        assert_eq!(budget.in_flight(), 0);
        assert_eq!(budget.try_spend(50, start), Permit::Granted);
        // Answered with a fresh figure, which now includes it.
        budget.answered(50, Some(ok(5350)), start);
        assert_eq!(budget.in_flight(), 0);
        assert_eq!(budget.try_spend(50, start), Permit::Granted);
    }

    #[test]
    fn a_new_share_changes_the_budget_and_keeps_what_was_spent() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5);
        assert_eq!(budget.try_spend(1000, start), Permit::Granted);
        budget.set_share(0.225); // four DCNs on the host
        assert_eq!(budget.budget(), 1350);
        assert_eq!(budget.try_spend(300, start), Permit::Granted);
        assert_eq!(
            budget.try_spend(100, start),
            Permit::WaitUntil(start + WINDOW)
        );
    }

    #[test]
    fn another_dcns_block_holds_this_budget_back_without_counting_as_ours() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.5);
        let until = start + Duration::from_secs(20);
        budget.hold_until(until);
        budget.hold_until(start + Duration::from_secs(5));
        assert_eq!(budget.try_spend(1, start), Permit::WaitUntil(until));
        assert_eq!(budget.rejections(), 0);
        assert_eq!(budget.try_spend(1, until), Permit::Granted);
    }

    #[test]
    fn a_forecast_follows_the_window_and_leaves_the_budget_untouched() {
        let start = Instant::now();
        let mut budget = WeightBudget::new(6000, 0.05); // 300: six snapshots a minute
        assert_eq!(budget.try_spend(50, start), Permit::Granted);
        let now = start + Duration::from_secs(10);
        let urgent = budget.forecast(7, 0, 50, now);
        assert_eq!(urgent[..5], [now; 5]);
        assert_eq!(urgent[5], start + WINDOW, "after the first booking leaves");
        assert_eq!(urgent[6], now + WINDOW);
        let spare = budget.forecast(0, 3, 50, now);
        assert_eq!(spare, [now, now, start + WINDOW]);
        // Verifications queue behind urgent requests: one urgent takes the spare room's place.
        let both = budget.forecast(2, 1, 50, now);
        assert_eq!(both, [now, now, start + WINDOW]);
        assert_eq!(budget.spent(now), 50, "untouched");
    }
}
