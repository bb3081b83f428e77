//! Request-weight accounting of one family's REST host, as Binance does it per IP (reference
//! §5): fixed one-minute windows aligned to the clock, `X-MBX-USED-WEIGHT-1M`, 429 with
//! `Retry-After` when a request would exceed the limit, and a 418 ban for a client that keeps
//! requesting before that `Retry-After` has passed. Bans start at the configured length and double
//! for every further ban, up to 3 days.
//!
//! Every client IP has its own window, back-off and ban, as on Binance: DCNs on different hosts
//! each spend their own IP's limit, and one host's ban does not hold back another. On loopback
//! every client is 127.0.0.1, so there they all share one budget, as processes of one host do.
//!
//! Choices where Binance is silent: a rejected request (429 or 418) adds no weight, so an IP's
//! used weight never exceeds the limit; a request during a ban neither extends the ban nor adds
//! weight; a forced status (the `rest_status` fault) refuses every IP. An IP's state is kept for
//! the simulator's life (its clients are a test's few hosts, not the internet).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use serde::Serialize;

/// One minute, in milliseconds.
const WINDOW_MS: u64 = 60_000;

/// The longest ban Binance hands out.
const MAX_BAN: Duration = Duration::from_secs(3 * 24 * 3600);

/// Closed windows kept for `/sim/stats`.
const KEPT_WINDOWS: usize = 10;

/// The IP a request came from, which its weight is charged to: the TCP peer, as Binance sees
/// it (an IPv4 client of a dual-stack listener counts as its IPv4 address).
///
/// A router served without peer addresses (driven in-process, without a socket) has only
/// clients of this host, so they count as 127.0.0.1, as they would over loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| {
                info.0.ip().to_canonical()
            });
        Ok(ClientIp(ip))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectStatus {
    /// 429: the request would exceed the limit.
    TooManyRequests,
    /// 418: the IP is banned for ignoring a 429.
    Banned,
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// 429 or 418.
    pub(crate) status: RejectStatus,
    /// Seconds until a request may succeed (`Retry-After`).
    pub(crate) retry_after_secs: u64,
    /// The used weight of the client's current window (`X-MBX-USED-WEIGHT-1M`).
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

impl WindowStats {
    fn empty(window_start_ms: u64) -> WindowStats {
        WindowStats {
            window_start_ms,
            used_weight: 0,
            requested_weight: 0,
        }
    }
}

/// Requests and their outcomes, of one IP or of all.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RequestCounts {
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

impl RequestCounts {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: &RequestCounts) {
        self.requests += other.requests;
        self.responses_429 += other.responses_429;
        self.responses_418 += other.responses_418;
        self.bans += other.bans;
        for (mine, theirs) in [
            (&mut self.snapshot_requests, &other.snapshot_requests),
            (&mut self.snapshots_served, &other.snapshots_served),
        ] {
            for (symbol, count) in theirs {
                *mine.entry(symbol.clone()).or_default() += count;
            }
        }
    }
}

/// What `/sim/stats` shows of one IP at one family's REST host.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientStats {
    /// The IP's current window.
    pub(crate) current: WindowStats,
    /// The highest used weight of any of its windows (never above the limit).
    pub(crate) max_used_weight_1m: u32,
    /// The highest requested weight of any of its windows.
    pub(crate) max_requested_weight_1m: u32,
    /// When its ban ends, ms since the epoch (0: never banned).
    pub(crate) banned_until_ms: u64,
    /// Its requests and their outcomes.
    #[serde(flatten)]
    pub(crate) counts: RequestCounts,
}

/// What `/sim/stats` shows of one family's REST host: the sums over every IP, the highest
/// window of any one IP (the limit is per IP), and each IP on its own.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WeightStats {
    /// The per-minute limit of each IP.
    pub(crate) weight_limit_1m: u32,
    /// The current window, summed over every IP.
    pub(crate) current: WindowStats,
    /// Up to the last 10 closed windows, oldest first, summed over every IP.
    pub(crate) previous: Vec<WindowStats>,
    /// The highest used weight of any one IP's window so far (never above the limit).
    pub(crate) max_used_weight_1m: u32,
    /// The highest requested weight of any one IP's window so far (above the limit once a 429
    /// was due).
    pub(crate) max_requested_weight_1m: u32,
    /// Requests and their outcomes, summed over every IP.
    #[serde(flatten)]
    pub(crate) counts: RequestCounts,
    /// Each client IP on its own.
    pub(crate) by_ip: BTreeMap<IpAddr, ClientStats>,
}

/// One-minute windows of weight: the current one, the last closed ones and the highest.
#[derive(Debug)]
struct Windows {
    current: WindowStats,
    previous: VecDeque<WindowStats>,
    max_used: u32,
    max_requested: u32,
}

impl Windows {
    fn new() -> Windows {
        Windows {
            current: WindowStats::empty(0),
            previous: VecDeque::new(),
            max_used: 0,
            max_requested: 0,
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
        self.current = WindowStats::empty(window_start_ms);
    }

    /// Counts `weight` as requested, admitted or not.
    fn request(&mut self, weight: u32) {
        self.current.requested_weight = self.current.requested_weight.saturating_add(weight);
        self.max_requested = self.max_requested.max(self.current.requested_weight);
    }

    /// Counts `weight` as used (admitted).
    fn spend(&mut self, weight: u32) {
        self.current.used_weight = self.current.used_weight.saturating_add(weight);
        self.max_used = self.max_used.max(self.current.used_weight);
    }
}

/// The window, back-off and ban of one client IP.
#[derive(Debug)]
struct ClientLedger {
    windows: Windows,
    /// After a 429, requests before this instant (ms) earn a ban.
    backoff_until_ms: u64,
    banned_until_ms: u64,
    counts: RequestCounts,
}

impl ClientLedger {
    fn new() -> ClientLedger {
        ClientLedger {
            windows: Windows::new(),
            backoff_until_ms: 0,
            banned_until_ms: 0,
            counts: RequestCounts::default(),
        }
    }

    /// Counts a refusal of `status` lasting until `until_ms` and describes it.
    fn reject(
        &mut self,
        limit: u32,
        status: RejectStatus,
        until_ms: u64,
        now_ms: u64,
    ) -> Rejection {
        match status {
            RejectStatus::TooManyRequests => self.counts.responses_429 += 1,
            RejectStatus::Banned => self.counts.responses_418 += 1,
        }
        Rejection {
            status,
            retry_after_secs: until_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
            used_weight: self.windows.current.used_weight,
            limit,
            until_ms,
        }
    }

    /// Counts a depth request for `symbol`, and whether it was answered with a snapshot.
    fn count_snapshot(&mut self, symbol: &str, served: bool) {
        *self
            .counts
            .snapshot_requests
            .entry(symbol.to_owned())
            .or_default() += 1;
        if served {
            *self
                .counts
                .snapshots_served
                .entry(symbol.to_owned())
                .or_default() += 1;
        }
    }

    fn stats(&self) -> ClientStats {
        ClientStats {
            current: self.windows.current,
            max_used_weight_1m: self.windows.max_used,
            max_requested_weight_1m: self.windows.max_requested,
            banned_until_ms: self.banned_until_ms,
            counts: self.counts.clone(),
        }
    }
}

/// The weight ledger of one family's REST host: one [`ClientLedger`] per client IP, plus the
/// host's totals.
#[derive(Debug)]
pub(crate) struct WeightLedger {
    limit: u32,
    first_ban: Duration,
    forced: Option<Forced>,
    /// Every IP's weight together, for the totals of `/sim/stats`.
    totals: Windows,
    clients: BTreeMap<IpAddr, ClientLedger>,
}

impl WeightLedger {
    /// A ledger with a per-minute `limit` per IP whose first ban lasts `first_ban`.
    pub(crate) fn new(limit: u32, first_ban: Duration) -> WeightLedger {
        WeightLedger {
            limit,
            first_ban,
            forced: None,
            totals: Windows::new(),
            clients: BTreeMap::new(),
        }
    }

    /// Charges a request of `weight` from `client` at `now_ms` (ms since the epoch) to that
    /// IP's window; returns the IP's used weight.
    ///
    /// # Errors
    /// A [`Rejection`] (429 or 418) when the request must be refused; it then adds no weight.
    pub(crate) fn admit(
        &mut self,
        client: IpAddr,
        weight: u32,
        now_ms: u64,
    ) -> Result<u32, Rejection> {
        self.totals.roll(now_ms);
        self.totals.request(weight);
        let (limit, first_ban, forced) = (self.limit, self.first_ban, self.forced);
        let ledger = self.clients.entry(client).or_insert_with(ClientLedger::new);
        ledger.windows.roll(now_ms);
        ledger.counts.requests += 1;
        ledger.windows.request(weight);
        if let Some(forced) = forced.filter(|f| now_ms < f.until_ms) {
            let mut rejection = ledger.reject(limit, forced.status, forced.until_ms, now_ms);
            if let Some(secs) = forced.retry_after_secs {
                rejection.retry_after_secs = secs;
            }
            return Err(rejection);
        }
        if now_ms < ledger.banned_until_ms {
            let until_ms = ledger.banned_until_ms;
            return Err(ledger.reject(limit, RejectStatus::Banned, until_ms, now_ms));
        }
        if now_ms < ledger.backoff_until_ms {
            ledger.counts.bans += 1;
            let doublings = (ledger.counts.bans - 1).min(20);
            let ban = first_ban.saturating_mul(1 << doublings).min(MAX_BAN);
            ledger.banned_until_ms = now_ms.saturating_add(ban.as_millis() as u64);
            ledger.backoff_until_ms = 0;
            let until_ms = ledger.banned_until_ms;
            return Err(ledger.reject(limit, RejectStatus::Banned, until_ms, now_ms));
        }
        if ledger.windows.current.used_weight.saturating_add(weight) > limit {
            let window_end = ledger.windows.current.window_start_ms + WINDOW_MS;
            // Retry-After is whole seconds, rounded up; the back-off lasts exactly that long,
            // so a client that honours it never earns a ban.
            let retry_after_secs = (window_end - now_ms).div_ceil(1000).max(1);
            ledger.backoff_until_ms = now_ms + retry_after_secs * 1000;
            let until_ms = ledger.backoff_until_ms;
            return Err(ledger.reject(limit, RejectStatus::TooManyRequests, until_ms, now_ms));
        }
        ledger.windows.spend(weight);
        self.totals.spend(weight);
        Ok(ledger.windows.current.used_weight)
    }

    /// Refuses every request of every IP with `status` until `until_ms`.
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

    /// Lifts a forced status, and every IP's pending back-off and ban.
    pub(crate) fn clear(&mut self) {
        self.forced = None;
        for ledger in self.clients.values_mut() {
            ledger.backoff_until_ms = 0;
            ledger.banned_until_ms = 0;
        }
    }

    /// Counts a depth request from `client` for `symbol`, and whether it was answered with a
    /// snapshot.
    pub(crate) fn count_snapshot(&mut self, client: IpAddr, symbol: &str, served: bool) {
        let ledger = self.clients.entry(client).or_insert_with(ClientLedger::new);
        ledger.count_snapshot(symbol, served);
    }

    /// What `/sim/stats` shows.
    pub(crate) fn stats(&mut self, now_ms: u64) -> WeightStats {
        self.roll(now_ms);
        let mut counts = RequestCounts::default();
        for ledger in self.clients.values() {
            counts.add(&ledger.counts);
        }
        let max_of = |field: fn(&Windows) -> u32| {
            self.clients
                .values()
                .map(|ledger| field(&ledger.windows))
                .max()
                .unwrap_or(0)
        };
        WeightStats {
            weight_limit_1m: self.limit,
            current: self.totals.current,
            previous: self.totals.previous.iter().copied().collect(),
            max_used_weight_1m: max_of(|windows| windows.max_used),
            max_requested_weight_1m: max_of(|windows| windows.max_requested),
            counts,
            by_ip: self
                .clients
                .iter()
                .map(|(ip, ledger)| (*ip, ledger.stats()))
                .collect(),
        }
    }

    /// Starts a new window, for the totals and every IP, when `now_ms` is past the current one.
    fn roll(&mut self, now_ms: u64) {
        self.totals.roll(now_ms);
        for ledger in self.clients.values_mut() {
            ledger.windows.roll(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_020_000; // 40 s into a minute

    /// Two client IPs, as two hosts.
    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn weight_adds_up_within_a_window_and_resets_in_the_next() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert_eq!(ledger.admit(A, 50, T0), Ok(50));
        assert_eq!(ledger.admit(A, 50, T0 + 1), Ok(100));
        assert_eq!(ledger.admit(A, 20, T0 + 20_000), Ok(20));
    }

    #[test]
    fn overspending_gets_429_until_the_window_ends() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert_eq!(ledger.admit(A, 100, T0), Ok(100));
        let rejection = ledger.admit(A, 1, T0 + 500);
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
        assert!(ledger.admit(A, 10, T0).is_ok());
        assert!(ledger.admit(A, 10, T0 + 1).is_err());
        let ban = ledger.admit(A, 1, T0 + 2);
        assert!(matches!(
            ban,
            Err(Rejection {
                status: RejectStatus::Banned,
                retry_after_secs: 120,
                ..
            })
        ));
        let after_ban = T0 + 2 + 120_000;
        assert!(ledger.admit(A, 10, after_ban).is_ok());
        assert!(ledger.admit(A, 10, after_ban + 1).is_err());
        let second = ledger.admit(A, 1, after_ban + 2);
        assert!(matches!(
            second,
            Err(Rejection {
                retry_after_secs: 240,
                ..
            })
        ));
        assert_eq!(ledger.stats(after_ban + 3).counts.responses_418, 2);
    }

    #[test]
    fn a_client_that_honours_retry_after_is_never_banned() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        assert!(ledger.admit(A, 10, T0).is_ok());
        let Err(rejection) = ledger.admit(A, 1, T0) else {
            panic!("over the limit");
        };
        assert_eq!(
            ledger.admit(A, 1, T0 + rejection.retry_after_secs * 1000),
            Ok(1)
        );
    }

    #[test]
    fn a_forced_status_refuses_until_it_expires() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        ledger.force(RejectStatus::Banned, T0 + 5000, None);
        assert!(matches!(
            ledger.admit(A, 1, T0),
            Err(Rejection {
                status: RejectStatus::Banned,
                retry_after_secs: 5,
                ..
            })
        ));
        assert_eq!(ledger.admit(A, 1, T0 + 5000), Ok(1));
    }

    #[test]
    fn each_ip_spends_its_own_limit() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert_eq!(ledger.admit(A, 100, T0), Ok(100));
        assert!(ledger.admit(A, 1, T0 + 1).is_err(), "A is at its limit");
        assert_eq!(ledger.admit(B, 60, T0 + 2), Ok(60), "B has its own window");
        assert_eq!(ledger.admit(B, 40, T0 + 3), Ok(100));
        assert!(ledger.admit(B, 1, T0 + 4).is_err(), "B is at its limit");
    }

    #[test]
    fn a_ban_holds_back_only_the_ip_that_earned_it() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        assert!(ledger.admit(A, 10, T0).is_ok());
        assert!(ledger.admit(A, 10, T0 + 1).is_err());
        assert!(matches!(
            ledger.admit(A, 1, T0 + 2),
            Err(Rejection {
                status: RejectStatus::Banned,
                ..
            })
        ));
        assert_eq!(ledger.admit(B, 10, T0 + 3), Ok(10));
        let stats = ledger.stats(T0 + 4);
        assert_eq!(stats.by_ip[&A].counts.bans, 1);
        assert_eq!(stats.by_ip[&A].banned_until_ms, T0 + 2 + 120_000);
        assert_eq!(stats.by_ip[&B].counts.bans, 0);
        assert_eq!(stats.by_ip[&B].banned_until_ms, 0);
        ledger.clear();
        // In the next minute, well inside the 120 s ban had it not been lifted.
        assert_eq!(
            ledger.admit(A, 1, T0 + 20_000),
            Ok(1),
            "clear lifts every ban"
        );
    }

    #[test]
    fn a_forced_status_refuses_every_ip() {
        let mut ledger = WeightLedger::new(10, Duration::from_secs(120));
        ledger.force(RejectStatus::TooManyRequests, T0 + 1000, Some(7));
        for client in [A, B] {
            assert!(matches!(
                ledger.admit(client, 1, T0),
                Err(Rejection {
                    status: RejectStatus::TooManyRequests,
                    retry_after_secs: 7,
                    ..
                })
            ));
        }
    }

    #[test]
    fn stats_show_each_ip_and_the_sums() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert!(ledger.admit(A, 50, T0).is_ok());
        ledger.count_snapshot(A, "SIM0USDT", true);
        assert!(ledger.admit(B, 30, T0 + 1).is_ok());
        ledger.count_snapshot(B, "SIM0USDT", true);
        assert!(ledger.admit(B, 30, T0 + 2).is_ok());
        ledger.count_snapshot(B, "SIM1USDT", true);
        assert!(ledger.admit(B, 50, T0 + 3).is_err());
        ledger.count_snapshot(B, "SIM1USDT", false);

        let stats = ledger.stats(T0 + 4);
        assert_eq!(stats.current.used_weight, 110, "used weight of both IPs");
        assert_eq!(stats.current.requested_weight, 160);
        assert_eq!(stats.max_used_weight_1m, 60, "the highest of one IP");
        assert_eq!(stats.max_requested_weight_1m, 110);
        assert_eq!(stats.counts.requests, 4);
        assert_eq!(stats.counts.responses_429, 1);
        assert_eq!(stats.counts.snapshot_requests["SIM0USDT"], 2);
        assert_eq!(stats.counts.snapshot_requests["SIM1USDT"], 2);
        assert_eq!(stats.counts.snapshots_served["SIM1USDT"], 1);
        let (a, b) = (&stats.by_ip[&A], &stats.by_ip[&B]);
        assert_eq!((a.current.used_weight, b.current.used_weight), (50, 60));
        assert_eq!(a.counts.snapshots_served.get("SIM1USDT"), None);
        assert_eq!(b.counts.snapshots_served["SIM0USDT"], 1);
        assert_eq!(b.counts.snapshot_requests["SIM1USDT"], 2);
        assert_eq!(b.counts.responses_429, 1);

        // A new minute: every IP's current window starts empty, the sums move to `previous`.
        let next = ledger.stats(T0 + WINDOW_MS);
        assert_eq!(next.by_ip[&A].current.used_weight, 0);
        assert_eq!(next.current.used_weight, 0);
        assert_eq!(next.previous.last().map(|w| w.used_weight), Some(110));
    }

    #[test]
    fn stats_keep_the_existing_fields_at_the_top_level() {
        let mut ledger = WeightLedger::new(100, Duration::from_secs(120));
        assert!(ledger.admit(A, 5, T0).is_ok());
        let json = serde_json::to_value(ledger.stats(T0 + 1)).expect("serializes");
        for key in [
            "weight_limit_1m",
            "current",
            "previous",
            "max_used_weight_1m",
            "max_requested_weight_1m",
            "requests",
            "responses_429",
            "responses_418",
            "bans",
            "snapshot_requests",
            "snapshots_served",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["by_ip"]["10.0.0.1"]["current"]["used_weight"], 5);
        assert_eq!(json["by_ip"]["10.0.0.1"]["requests"], 1);
    }

    async fn client_ip_of(peer: Option<&str>) -> IpAddr {
        let mut request = axum::http::Request::new(());
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().expect("a socket address");
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let (mut parts, ()) = request.into_parts();
        let Ok(ClientIp(ip)) = ClientIp::from_request_parts(&mut parts, &()).await;
        ip
    }

    #[tokio::test]
    async fn a_request_is_charged_to_its_tcp_peers_ip() {
        assert_eq!(client_ip_of(Some("10.0.0.2:41000")).await, B);
        assert_eq!(
            client_ip_of(Some("[::ffff:10.0.0.1]:41000")).await,
            A,
            "an IPv4 client of a dual-stack listener"
        );
        assert_eq!(
            client_ip_of(None).await,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "served without peer addresses"
        );
    }
}
