//! Downloading REST depth snapshots within each API endpoint's weight budget, most urgent first.
//!
//! [`SnapshotScheduler`] keeps at most one request per book and a [`WeightBudget`] per REST API
//! endpoint (e.g. `https://api.binance.com/api/v3/depth`: Binance counts weight per IP and API
//! family). Downloads run concurrently, so one slow book never holds up the others, and each
//! response's used-weight header and any 429/418 `Retry-After` feed back into the budget.
//! A download's weight counts as in flight until it answers (the server's figure cannot hold
//! it yet). A 429/418 is posted on this host's ban board (`crate::ban_board`), read before every
//! dispatch, so the other DCNs of the IP hold back instead of meeting the ban themselves. The
//! share of each host's limit ([`WeightShare`]) can change while the scheduler runs.
//!
//! # Priorities (issue 11)
//! Requests wait in three queues, served in this order ([`SnapshotKind`]):
//! 1. **resync**: a book that was synced and lost sync; its readers get errors until it is back;
//! 2. **new**: a book that has not synced yet;
//! 3. **verify**: a check of a quiet synced book (or a recheck of a delisted market). It can
//!    wait, so it spends only *spare* weight ([`WeightBudget::try_spend_spare`]): half the
//!    budget stays reserved for the first two queues, and one download slot per endpoint too;
//! 4. **deepen** and 5. **audit** (issue 16): spare weight too, after the verifications.
//!
//! Within a queue books are served first come, first served, one request per book (asking again
//! keeps the book's place; a verification whose book loses sync moves to the resync queue), so
//! no book is served twice while another waits. A request held back by its endpoint's budget
//! holds back every later request of that endpoint, whatever its queue.
//!
//! With one FIFO for all (before issue 11), 1 000 quiet spot books at a 0.5 weight share asked for
//! ~1 000 verifications a minute against ~60 snapshots of capacity, and a busy book that hit a
//! real gap waited behind them for about 17 minutes. Now it goes out at once: measured with
//! `benches/snapshot_priority.rs` (1 001 spot books on one node against the simulator at
//! Binance's 6 000 weight a minute, 940–960 verifications waiting), the time from the busy book's
//! gap to its resync is 2.2 ms (median and max of 5 rounds), while the last waiting verification
//! is expected 17 minutes out. Halving the budget for verifications is the price: they drain at
//! 30 (0.5 share) to 54 (1.0) snapshots a minute instead of 60 to 108 while nothing is urgent.
//!
//! Each waiting book's kind, place (among the books waiting for the same endpoint) and
//! estimated time of its download ([`WeightBudget::forecast`]; it assumes nothing more urgent
//! arrives) are published on [`SnapshotStats::waiting`] at most every [`BOARD_INTERVAL`], for
//! the cluster's views and `/metrics`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tokio::sync::mpsc;

use crate::ban_board::BanBoard;
use crate::binance::wire::{ApiError, DepthSnapshot, LevelUpdate, WireError, parse_levels};
use crate::exchange::{EndpointOverrides, Exchange};
use crate::weight_budget::{Permit, ResponseWeight, WeightBudget};

/// Levels asked for per snapshot at full depth: Binance's 1000, the depth the original kept.
pub const SNAPSHOT_LIMIT: u32 = 1000;

/// Levels a book may start from when the node starts books shallow (`NodeConfig::initial_depth`):
/// 100 is the deepest `limit` at the lowest weight of every family (spot 5 instead of 50).
pub const SHALLOW_LIMIT: u32 = 100;

/// A REST request that has not answered in this time has failed (the original's timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Downloads in flight per endpoint at most: enough to hide latency, few enough that a burst of
/// resyncs cannot flood it before its used-weight headers come back. Verifications may fill all
/// but one, so an urgent request never waits for a slow verification to finish.
const IN_FLIGHT_PER_HOST: usize = 4;

/// How often at most the waiting books' places and ETAs are worked out anew: a forecast walks
/// the whole queue, and a burst of 1 000 requests must not pay for 1 000 of them.
pub const BOARD_INTERVAL: Duration = Duration::from_millis(250);

/// Binance's answer code for a symbol it does not list (`-1121 Invalid symbol.`).
const INVALID_SYMBOL: i64 = -1121;

/// Identifies a book to the scheduler and back.
pub type BookId = u32;

/// Why a book needs a snapshot; the scheduler serves them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SnapshotKind {
    /// The book was synced and lost sync: its readers get errors until it is back.
    Resync,
    /// The book has not synced yet.
    New,
    /// A check of a synced book whose stream has been quiet, or of a market the exchange no
    /// longer listed: only from spare weight.
    Verify,
    /// A synced book that started from a shallow snapshot, to be brought to full depth: only
    /// from spare weight, after the verifications (a silent stream is worse than a shallow book,
    /// whose readers are served within the depth it has meanwhile).
    Deepen,
    /// An audit of a synced book (issue 16, `crate::audit`): only from spare weight, after
    /// everything else (it proves a book already served as right).
    Audit,
}

impl SnapshotKind {
    /// Every kind, most urgent first.
    pub const ALL: [Self; 5] = [
        Self::Resync,
        Self::New,
        Self::Verify,
        Self::Deepen,
        Self::Audit,
    ];

    /// `resync`, `new`, `verify`, `deepen` or `audit` (metrics labels, the cluster's views).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Resync => "resync",
            Self::New => "new",
            Self::Deepen => "deepen",
            Self::Verify => "verify",
            Self::Audit => "audit",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Resync => 0,
            Self::New => 1,
            Self::Verify => 2,
            Self::Deepen => 3,
            Self::Audit => 4,
        }
    }

    const fn is_urgent(self) -> bool {
        match self {
            Self::Resync | Self::New => true,
            Self::Deepen | Self::Verify | Self::Audit => false,
        }
    }
}

/// A book that needs a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The book.
    pub book: BookId,
    /// The book's sync episode when it asked; an answer for an older episode is stale.
    pub epoch: u64,
    /// Its exchange.
    pub exchange: Exchange,
    /// Its symbol (upper-case, as REST wants it).
    pub symbol: String,
    /// Why it asks, which decides its queue.
    pub kind: SnapshotKind,
    /// Levels per side to ask for (Binance's `limit`, which decides the weight).
    pub limit: u32,
}

/// A downloaded snapshot with its levels parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// Levels per side it is complete to: the `limit` asked for (a side with fewer levels is
    /// the whole side).
    pub depth: u32,
    /// Bids.
    pub bids: Vec<LevelUpdate>,
    /// Asks.
    pub asks: Vec<LevelUpdate>,
    /// The exchange's time of the book it shows, Unix ms: the snapshot's `T` (the last
    /// transaction in it) or else its `E`; a peer's copy carries its book's event time. `None`
    /// when the exchange gives none (spot snapshots carry no time).
    pub exchange_time_ms: Option<u64>,
}

/// A snapshot download failed; the book stays out of sync and is requested again.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The host answered with an error status.
    #[error("{url} answered HTTP {status}{}", api.as_ref().map(|e| format!(": {} ({})", e.msg, e.code)).unwrap_or_default())]
    Status {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Binance's error body, if any.
        api: Option<ApiError>,
    },
    /// The request did not complete (connection refused, timeout, TLS).
    #[error("{url}: {message}")]
    Transport {
        /// The request URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The body is not a usable snapshot.
    #[error("{url}: {source}")]
    Body {
        /// The request URL.
        url: String,
        /// Why.
        #[source]
        source: WireError,
    },
    /// The exchange needs an API key for snapshots (TR) and none is configured.
    #[error("{exchange} needs an API key for depth snapshots; add credentials for it")]
    ApiKeyRequired {
        /// The exchange.
        exchange: Exchange,
    },
}

impl SnapshotError {
    /// `true` when the exchange answered that it does not list the symbol (-1121): the market
    /// was delisted (or never existed), which no quick retry will change.
    pub fn is_unknown_symbol(&self) -> bool {
        matches!(self, Self::Status { api: Some(api), .. } if api.code == INVALID_SYMBOL)
    }
}

/// What the scheduler reports to the node.
#[derive(Debug)]
pub struct SnapshotOutcome {
    /// The book the snapshot was for.
    pub book: BookId,
    /// The episode it was asked for (see [`SnapshotRequest::epoch`]).
    pub epoch: u64,
    /// The snapshot, or why there is none.
    pub result: Result<Snapshot, SnapshotError>,
}

/// Settings of a [`SnapshotScheduler`].
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Where each exchange's REST host is.
    pub endpoints: EndpointOverrides,
    /// Share of each host's per-minute weight limit this process may use (changed while it
    /// runs when mgmt counts the DCNs of this host anew).
    pub weight_share: WeightShare,
    /// API keys by exchange, for hosts that need one (TR) and for keyed weight limits.
    pub api_keys: ApiKeys,
}

/// What the scheduler did (counters that only ever grow) and who waits now, for metrics and
/// the cluster's views.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// Snapshot downloads started.
    pub downloads: AtomicU64,
    /// Downloads that brought no usable snapshot.
    pub failures: AtomicU64,
    /// Request weight spent (by Binance's table).
    pub weight: AtomicU64,
    /// 429 answers (rate limited).
    pub responses_429: AtomicU64,
    /// 418 answers (IP banned).
    pub responses_418: AtomicU64,
    /// The books waiting for a snapshot, as last published.
    pub waiting: WaitingBoard,
}

/// A book waiting for its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingBook {
    /// Its exchange.
    pub exchange: Exchange,
    /// Its symbol.
    pub symbol: String,
    /// Its queue.
    pub kind: SnapshotKind,
    /// 1 for the next book its REST endpoint serves, 2 for the one after, and so on.
    pub place: u32,
    /// When it has waited since.
    pub since: SystemTime,
    /// When its download is expected to start, if nothing more urgent arrives.
    pub eta: SystemTime,
}

/// The books waiting for a snapshot, most urgent first, replaced as a whole by the scheduler.
#[derive(Debug, Default)]
pub struct WaitingBoard(RwLock<Vec<WaitingBook>>);

impl WaitingBoard {
    /// Every waiting book, in the order they are served (per endpoint).
    pub fn books(&self) -> Vec<WaitingBook> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, books: Vec<WaitingBook>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = books;
    }
}

/// A DCN's share (0.0..=1.0) of each REST host's weight limit, shared between the node's owner
/// (the cluster agent sets it from the number of DCNs on the host) and the scheduler, which
/// applies a change before its next dispatch.
#[derive(Debug, Clone)]
pub struct WeightShare(Arc<AtomicU64>);

impl WeightShare {
    /// A share of `share`, clamped to 0.0..=1.0.
    pub fn new(share: f64) -> Self {
        Self(Arc::new(AtomicU64::new(share.clamp(0.0, 1.0).to_bits())))
    }

    /// The current share.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Sets the share (clamped to 0.0..=1.0; not a number is ignored).
    pub fn set(&self, share: f64) {
        if share.is_nan() {
            return;
        }
        self.0
            .store(share.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
}

/// API keys by exchange, shared between the node's owner (the cluster agent changes them while
/// the node runs) and the scheduler, which reads the current key for every download.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Arc<RwLock<HashMap<Exchange, String>>>);

impl ApiKeys {
    /// Keys from a map.
    pub fn new(keys: HashMap<Exchange, String>) -> Self {
        Self(Arc::new(RwLock::new(keys)))
    }

    /// The key for `exchange`, if any.
    pub fn get(&self, exchange: Exchange) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&exchange)
            .cloned()
    }

    /// Sets (or with `None` clears) the key for `exchange`; the next download uses it.
    pub fn set(&self, exchange: Exchange, key: Option<String>) {
        let mut keys = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match key {
            Some(key) => keys.insert(exchange, key),
            None => keys.remove(&exchange),
        };
    }
}

/// A finished download, reported back to the scheduler for its budget.
struct Finished {
    endpoint: Arc<str>,
    /// The weight it was granted (in flight until now).
    sent: u32,
    weight: Option<ResponseWeight>,
}

/// A request in its queue.
#[derive(Debug)]
struct Queued {
    request: SnapshotRequest,
    /// Its REST endpoint (the budget's key), worked out once.
    endpoint: Arc<str>,
    /// When the book started waiting.
    since: Instant,
}

/// A request whose budget was granted: to be downloaded now.
#[derive(Debug)]
struct Granted {
    request: SnapshotRequest,
    endpoint: Arc<str>,
    /// Its weight, booked in the endpoint's budget.
    weight: u32,
}

/// Downloads snapshots for the node; see the module doc.
pub struct SnapshotScheduler {
    config: SnapshotConfig,
    client: reqwest::Client,
    /// One queue per [`SnapshotKind`], by [`SnapshotKind::index`].
    queues: [VecDeque<Queued>; SnapshotKind::ALL.len()],
    /// The queue each waiting book is in.
    queued: HashMap<BookId, SnapshotKind>,
    budgets: HashMap<Arc<str>, WeightBudget>,
    in_flight: HashMap<Arc<str>, usize>,
    /// Where 429 / 418 blocks are shared with the other DCNs of this host, if anywhere.
    bans: Option<BanBoard>,
    /// The share the budgets were last given.
    share: f64,
    stats: Arc<SnapshotStats>,
    /// The waiting books changed since [`SnapshotStats::waiting`] was last published.
    board_stale: bool,
    /// Not before this is the board published again.
    board_next: Instant,
}

impl SnapshotScheduler {
    /// Its counters (shared; they keep counting while it runs).
    pub fn stats(&self) -> Arc<SnapshotStats> {
        Arc::clone(&self.stats)
    }

    /// A scheduler with `config`.
    ///
    /// # Errors
    /// [`SnapshotError::Transport`] when the HTTP client cannot be built (TLS setup).
    pub fn new(config: SnapshotConfig) -> Result<Self, SnapshotError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SnapshotError::Transport {
                url: String::new(),
                message: format!("building the HTTP client: {e}"),
            })?;
        Ok(Self {
            share: config.weight_share.get(),
            config,
            client,
            queues: Default::default(),
            queued: HashMap::new(),
            budgets: HashMap::new(),
            in_flight: HashMap::new(),
            bans: Some(BanBoard::for_this_user()),
            stats: Arc::default(),
            board_stale: false,
            board_next: Instant::now(),
        })
    }

    /// Shares 429 / 418 blocks through `board` instead of this user's board on this host
    /// (`None`: with nobody).
    #[cfg(test)]
    pub(crate) fn with_ban_board(mut self, board: Option<BanBoard>) -> Self {
        self.bans = board;
        self
    }

    /// Runs until `requests` closes: queues requests, sends them out as budgets allow, and
    /// reports each outcome on `outcomes`.
    pub async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<SnapshotRequest>,
        outcomes: mpsc::UnboundedSender<SnapshotOutcome>,
    ) {
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
        loop {
            let now = Instant::now();
            let mut wake = self.dispatch(now, &outcomes, &finished_tx);
            if self.board_stale {
                if now >= self.board_next {
                    self.publish_board(now);
                } else {
                    wake = Some(wake.map_or(self.board_next, |w| w.min(self.board_next)));
                }
            }
            let sleep = tokio::time::sleep_until(wake.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => {
                        self.enqueue(request, now);
                        // A burst (a connection's 1 000 books) is queued as one, then
                        // dispatched once.
                        while let Ok(request) = requests.try_recv() {
                            self.enqueue(request, now);
                        }
                    }
                    None => return,
                },
                Some(finished) = finished_rx.recv() => self.finish(finished, Instant::now()),
                () = sleep => {}
            }
        }
    }

    fn enqueue(&mut self, request: SnapshotRequest, now: Instant) {
        self.board_stale = true;
        let Some(&kind) = self.queued.get(&request.book) else {
            let endpoint = self.endpoint(request.exchange);
            self.queued.insert(request.book, request.kind);
            self.queues[request.kind.index()].push_back(Queued {
                request,
                endpoint,
                since: now,
            });
            return;
        };
        // One pending snapshot per book: a second request brings the queued one up to the
        // book's current episode, and into a more urgent queue if it now belongs there.
        let queue = &mut self.queues[kind.index()];
        let Some(index) = queue.iter().position(|q| q.request.book == request.book) else {
            return;
        };
        if request.kind >= kind {
            // Merged: the one download must be deep enough for both (a deepening merged into
            // a shallow start must not come back shallow).
            let queued = &mut queue[index].request;
            queued.epoch = request.epoch;
            queued.limit = queued.limit.max(request.limit);
            return;
        }
        let Some(mut queued) = queue.remove(index) else {
            return;
        };
        queued.request = request;
        self.queued.insert(queued.request.book, queued.request.kind);
        self.queues[queued.request.kind.index()].push_back(queued);
    }

    /// The budget key of `exchange`'s snapshots: Binance's limits are per API family (spot
    /// `/api`, futures `/fapi`, options `/eapi` are separate systems), even when one URL serves
    /// several, as the simulator does.
    fn endpoint(&mut self, exchange: Exchange) -> Arc<str> {
        let spec = exchange.spec();
        let url = format!(
            "{}{}",
            self.config.endpoints.endpoints(exchange).rest_base,
            spec.snapshot_path
        );
        // The budget's key is shared by every book queued for it: one string per endpoint.
        if let Some(key) = self.budgets.keys().find(|key| ***key == *url) {
            return Arc::clone(key);
        }
        let key: Arc<str> = url.into();
        let budget = WeightBudget::new(spec.weight_per_minute, self.share);
        self.budgets.insert(Arc::clone(&key), budget);
        key
    }

    fn finish(&mut self, finished: Finished, now: Instant) {
        self.board_stale = true;
        if let Some(count) = self.in_flight.get_mut(&finished.endpoint) {
            *count = count.saturating_sub(1);
        }
        match finished.weight.map(|w| w.status) {
            Some(429) => self.stats.responses_429.fetch_add(1, Ordering::Relaxed),
            Some(418) => self.stats.responses_418.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let Some(budget) = self.budgets.get_mut(&finished.endpoint) else {
            return;
        };
        budget.answered(finished.sent, finished.weight, now);
        if !matches!(finished.weight.map(|w| w.status), Some(429 | 418)) {
            return;
        }
        // The IP is blocked for every DCN of this host, not only for us.
        if let (Some(until), Some(board)) = (budget.blocked_until(), self.bans.as_mut()) {
            let ahead = until.saturating_duration_since(now);
            let wall = wall_clock_at(now);
            board.post(&finished.endpoint, wall.checked_add(ahead).unwrap_or(wall));
        }
    }

    /// Gives every budget the current share, if it changed.
    fn apply_share(&mut self) {
        let share = self.config.weight_share.get();
        if share.to_bits() == self.share.to_bits() {
            return;
        }
        tracing::info!(from = self.share, to = share, "weight share changed");
        self.share = share;
        for budget in self.budgets.values_mut() {
            budget.set_share(share);
        }
    }

    /// Holds back every endpoint another DCN of this host posted a block for. Read before
    /// each dispatch with books waiting, so no request goes out into a block already known.
    fn learn_bans(&mut self, now: Instant) {
        let Some(board) = self.bans.as_mut() else {
            return;
        };
        if self.queued.is_empty() {
            return;
        }
        let wall = wall_clock_at(now);
        for (endpoint, until) in board.read(wall) {
            let Some(budget) = self.budgets.get_mut(endpoint.as_str()) else {
                continue;
            };
            // The board counts in milliseconds, and two clocks are read to compare it: a
            // block ending within one is over (else the loop would wake for it again and again).
            let ahead = until.duration_since(wall).unwrap_or_default();
            if ahead > Duration::from_millis(1) {
                budget.hold_until(now.checked_add(ahead).unwrap_or(now));
            }
        }
    }

    /// Starts every download its endpoint allows at `now`; returns when to look again for the
    /// ones still waiting.
    fn dispatch(
        &mut self,
        now: Instant,
        outcomes: &mpsc::UnboundedSender<SnapshotOutcome>,
        finished: &mpsc::UnboundedSender<Finished>,
    ) -> Option<Instant> {
        self.apply_share();
        self.learn_bans(now);
        let (granted, wake) = self.take_due(now);
        for granted in granted {
            self.spawn_download(granted, outcomes.clone(), finished.clone());
        }
        wake
    }

    /// Takes the requests whose budget is granted at `now`, most urgent first, and books them;
    /// returns them with when to look again for the ones still waiting.
    fn take_due(&mut self, now: Instant) -> (Vec<Granted>, Option<Instant>) {
        let mut granted = Vec::new();
        let mut wake: Option<Instant> = None;
        // Endpoints where a request waits: nothing later in any queue may go before it.
        let mut held: HashSet<Arc<str>> = HashSet::new();
        for kind in SnapshotKind::ALL {
            let slots = if kind.is_urgent() {
                IN_FLIGHT_PER_HOST
            } else {
                IN_FLIGHT_PER_HOST - 1
            };
            let mut index = 0;
            while index < self.queues[kind.index()].len() {
                let queued = &self.queues[kind.index()][index];
                if held.contains(&queued.endpoint) {
                    index += 1;
                    continue;
                }
                let endpoint = Arc::clone(&queued.endpoint);
                let exchange = queued.request.exchange;
                if self.in_flight.get(&endpoint).copied().unwrap_or(0) >= slots {
                    // A finished download wakes the loop; no timer needed.
                    held.insert(endpoint);
                    index += 1;
                    continue;
                }
                let spec = exchange.spec();
                let weight = spec.snapshot_weight(queued.request.limit);
                let share = self.share;
                let budget = self
                    .budgets
                    .entry(Arc::clone(&endpoint))
                    .or_insert_with(|| WeightBudget::new(spec.weight_per_minute, share));
                let permit = if kind.is_urgent() {
                    budget.try_spend(weight, now)
                } else {
                    budget.try_spend_spare(weight, now)
                };
                if let Permit::WaitUntil(until) = permit {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    held.insert(endpoint);
                    index += 1;
                    continue;
                }
                let Some(Queued { request, .. }) = self.queues[kind.index()].remove(index) else {
                    break;
                };
                self.queued.remove(&request.book);
                *self.in_flight.entry(Arc::clone(&endpoint)).or_default() += 1;
                self.stats.downloads.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .weight
                    .fetch_add(u64::from(weight), Ordering::Relaxed);
                self.board_stale = true;
                granted.push(Granted {
                    request,
                    endpoint,
                    weight,
                });
            }
        }
        (granted, wake)
    }

    /// Works out every waiting book's place and ETA and publishes them.
    fn publish_board(&mut self, now: Instant) {
        self.board_stale = false;
        self.board_next = now + BOARD_INTERVAL;
        let board = self.board(now);
        self.stats.waiting.set(board);
    }

    /// Every waiting book with its place and ETA, most urgent first.
    fn board(&self, now: Instant) -> Vec<WaitingBook> {
        let wall = SystemTime::now();
        let at = |instant: Instant| {
            let ahead = instant.saturating_duration_since(now);
            wall.checked_add(ahead).unwrap_or(wall)
        };
        let ago = |instant: Instant| {
            let behind = now.saturating_duration_since(instant);
            wall.checked_sub(behind).unwrap_or(wall)
        };
        // Per endpoint, the waiting books in the order they are served.
        let mut lines: HashMap<&Arc<str>, Vec<&Queued>> = HashMap::new();
        for queued in self.queues.iter().flatten() {
            lines.entry(&queued.endpoint).or_default().push(queued);
        }
        let mut board = Vec::with_capacity(self.queued.len());
        for (endpoint, line) in lines {
            let Some(first) = line.first() else {
                continue;
            };
            let spec = first.request.exchange.spec();
            // The forecast assumes one weight per endpoint: the first book's.
            let weight = spec.snapshot_weight(first.request.limit);
            let urgent = line.iter().filter(|q| q.request.kind.is_urgent()).count();
            let fresh;
            let budget = match self.budgets.get(endpoint) {
                Some(budget) => budget,
                None => {
                    fresh = WeightBudget::new(spec.weight_per_minute, self.share);
                    &fresh
                }
            };
            let etas = budget.forecast(urgent, line.len() - urgent, weight, now);
            for (place, (queued, eta)) in line.iter().zip(etas).enumerate() {
                board.push(WaitingBook {
                    exchange: queued.request.exchange,
                    symbol: queued.request.symbol.clone(),
                    kind: queued.request.kind,
                    place: u32::try_from(place + 1).unwrap_or(u32::MAX),
                    since: ago(queued.since),
                    eta: at(eta),
                });
            }
        }
        board
    }

    fn spawn_download(
        &self,
        Granted {
            request,
            endpoint,
            weight: sent,
        }: Granted,
        outcomes: mpsc::UnboundedSender<SnapshotOutcome>,
        finished: mpsc::UnboundedSender<Finished>,
    ) {
        let client = self.client.clone();
        let api_key = self.config.api_keys.get(request.exchange);
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            // The download runs in a task of its own: should it panic, the endpoint's slot is
            // still given back and the book still hears of it (and retries), instead of both
            // waiting for an answer that never comes.
            let downloading = {
                let (endpoint, request) = (endpoint.clone(), request.clone());
                tokio::spawn(async move {
                    download(&client, &endpoint, &request, api_key.as_deref()).await
                })
            };
            let (result, weight) = downloading.await.unwrap_or_else(|error| {
                let message = format!("the download task failed: {error}");
                let url = endpoint.to_string();
                (Err(SnapshotError::Transport { url, message }), None)
            });
            if result.is_err() {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            // Either receiver gone means the node is shutting down; nothing is left to tell.
            finished
                .send(Finished {
                    endpoint,
                    sent,
                    weight,
                })
                .ok();
            outcomes
                .send(SnapshotOutcome {
                    book: request.book,
                    epoch: request.epoch,
                    result,
                })
                .ok();
        });
    }
}

/// One snapshot request to `endpoint` (base URL and depth path); returns the parsed snapshot and
/// what the endpoint said about its weight.
async fn download(
    client: &reqwest::Client,
    endpoint: &str,
    request: &SnapshotRequest,
    api_key: Option<&str>,
) -> (Result<Snapshot, SnapshotError>, Option<ResponseWeight>) {
    let spec = request.exchange.spec();
    let url = format!(
        "{endpoint}?symbol={}&limit={}",
        request.symbol.to_ascii_uppercase(),
        request.limit
    );
    if spec.requires_api_key && api_key.is_none() {
        return (
            Err(SnapshotError::ApiKeyRequired {
                exchange: request.exchange,
            }),
            None,
        );
    }
    let mut call = client.get(&url);
    if let Some(key) = api_key {
        call = call.header("X-MBX-APIKEY", key);
    }
    let response = match call.send().await {
        Ok(response) => response,
        Err(error) => {
            return (
                Err(SnapshotError::Transport {
                    url,
                    message: error.to_string(),
                }),
                None,
            );
        }
    };
    let weight = response_weight(&response);
    let status = response.status().as_u16();
    let mut body = match response.bytes().await {
        Ok(bytes) => bytes.to_vec(),
        Err(error) => {
            return (
                Err(SnapshotError::Transport {
                    url,
                    message: error.to_string(),
                }),
                Some(weight),
            );
        }
    };
    if status != 200 {
        return (
            Err(SnapshotError::Status {
                url,
                status,
                api: ApiError::parse(&mut body),
            }),
            Some(weight),
        );
    }
    (
        parse_snapshot(&mut body, request.limit)
            .map_err(|source| SnapshotError::Body { url, source }),
        Some(weight),
    )
}

/// Parses a snapshot body in Binance's format (also what a peer DCN answers a copy with),
/// complete to `depth` levels per side.
pub(crate) fn parse_snapshot(body: &mut [u8], depth: u32) -> Result<Snapshot, WireError> {
    let (last_update_id, snapshot) = DepthSnapshot::parse(body)?;
    Ok(Snapshot {
        last_update_id,
        depth,
        bids: parse_levels(&snapshot.bids)?,
        asks: parse_levels(&snapshot.asks)?,
        exchange_time_ms: snapshot.transaction_time_ms.or(snapshot.event_time_ms),
    })
}

/// The wall-clock time at `now` (the board is shared between processes, whose [`Instant`]s
/// are not comparable; `now` is the current instant but in tests).
fn wall_clock_at(now: Instant) -> SystemTime {
    let wall = SystemTime::now();
    let ahead = now.saturating_duration_since(Instant::now());
    wall.checked_add(ahead).unwrap_or(wall)
}

/// The used-weight and `Retry-After` headers of a response.
fn response_weight(response: &reqwest::Response) -> ResponseWeight {
    let headers = response.headers();
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    let used_weight = number("x-mbx-used-weight-1m")
        .or_else(|| number("x-mbx-used-weight"))
        .and_then(|used| u32::try_from(used).ok());
    ResponseWeight {
        status: response.status().as_u16(),
        used_weight,
        retry_after_secs: number("retry-after"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weight_budget::MAX_RETRY_AFTER;

    /// Spot at a 0.5 share: 3 000 weight, 60 snapshots a minute, 30 of them spare.
    fn scheduler() -> SnapshotScheduler {
        let endpoints = EndpointOverrides::parse(["binance.com=http://127.0.0.1:9"]).unwrap();
        SnapshotScheduler::new(SnapshotConfig {
            endpoints,
            weight_share: WeightShare::new(0.5),
            api_keys: ApiKeys::default(),
        })
        .unwrap()
        // The user's board is shared with real DCNs: tests keep their bans to themselves.
        .with_ban_board(None)
    }

    fn request(book: BookId, kind: SnapshotKind) -> SnapshotRequest {
        SnapshotRequest {
            book,
            epoch: 0,
            exchange: Exchange::BinanceCom,
            symbol: format!("SIM{book}USDT"),
            kind,
            limit: SNAPSHOT_LIMIT,
        }
    }

    /// Takes what is due at `now`, gives every download slot back at once (as if each answered
    /// at once, without a used-weight header), and returns the books in the order they went.
    fn serve(scheduler: &mut SnapshotScheduler, now: Instant) -> (Vec<BookId>, Option<Instant>) {
        let mut books = Vec::new();
        loop {
            let (granted, wake) = scheduler.take_due(now);
            if granted.is_empty() {
                return (books, wake);
            }
            for Granted {
                request,
                endpoint,
                weight,
            } in granted
            {
                books.push(request.book);
                scheduler.finish(
                    Finished {
                        endpoint,
                        sent: weight,
                        weight: None,
                    },
                    now,
                );
            }
        }
    }

    #[test]
    fn out_of_sync_and_new_books_go_before_verifications_queued_earlier() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..10 {
            scheduler.enqueue(request(book, SnapshotKind::Verify), now);
        }
        scheduler.enqueue(request(100, SnapshotKind::New), now);
        scheduler.enqueue(request(200, SnapshotKind::Resync), now);
        let (granted, _) = scheduler.take_due(now);
        let order: Vec<BookId> = granted.iter().map(|g| g.request.book).collect();
        // Four slots: both urgent ones, then verifications in the slots but one they may use.
        assert_eq!(order, [200, 100, 0]);
    }

    #[test]
    fn verifications_spend_only_spare_weight_and_a_later_gap_still_finds_some() {
        // Issue 11: 1 000 quiet books' verifications used to take every snapshot of the minute,
        // and a book that lost sync waited behind them for about 17 minutes.
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..1000 {
            scheduler.enqueue(request(book, SnapshotKind::Verify), now);
        }
        let (verified, wake) = serve(&mut scheduler, now);
        assert_eq!(verified.len(), 30, "half of the minute's 60 snapshots");
        assert_eq!(
            verified,
            (0..30).collect::<Vec<_>>(),
            "first come, first served"
        );
        assert_eq!(wake, Some(now + Duration::from_secs(60)));

        let gap = now + Duration::from_secs(1);
        scheduler.enqueue(request(5000, SnapshotKind::Resync), gap);
        let (resynced, _) = serve(&mut scheduler, gap);
        assert_eq!(resynced, [5000], "at once, not behind 970 verifications");
    }

    #[test]
    fn a_resync_storm_may_use_the_whole_budget() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..100 {
            scheduler.enqueue(request(book, SnapshotKind::Resync), now);
        }
        let (resynced, wake) = serve(&mut scheduler, now);
        assert_eq!(resynced.len(), 60);
        assert_eq!(wake, Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn resyncs_go_before_new_books_and_each_queue_is_first_come_first_served() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for (book, kind) in [
            (1, SnapshotKind::New),
            (2, SnapshotKind::Resync),
            (3, SnapshotKind::New),
            (4, SnapshotKind::Resync),
        ] {
            scheduler.enqueue(request(book, kind), now);
        }
        // Asking again keeps a book's place: it is neither served twice nor moved back.
        scheduler.enqueue(request(2, SnapshotKind::Resync), now);
        let (order, _) = serve(&mut scheduler, now);
        assert_eq!(order, [2, 4, 1, 3]);
    }

    #[test]
    fn a_waiting_verification_whose_book_loses_sync_moves_to_the_resync_queue() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..5 {
            scheduler.enqueue(request(book, SnapshotKind::Verify), now);
        }
        scheduler.enqueue(request(9, SnapshotKind::New), now);
        let lost = SnapshotRequest {
            epoch: 7,
            ..request(3, SnapshotKind::Resync)
        };
        scheduler.enqueue(lost, now);
        assert_eq!(scheduler.queued.len(), 6, "still one request per book");
        let (granted, _) = scheduler.take_due(now);
        assert_eq!(granted[0].request.book, 3);
        assert_eq!(
            granted[0].request.epoch, 7,
            "for the book's current episode"
        );
        assert_eq!(granted[1].request.book, 9);
        // A verification asked while the book waits for its resync does not demote it.
        scheduler.enqueue(request(4, SnapshotKind::Verify), now);
        scheduler.enqueue(request(4, SnapshotKind::Resync), now);
        scheduler.enqueue(request(4, SnapshotKind::Verify), now);
        assert_eq!(scheduler.queued.get(&4), Some(&SnapshotKind::Resync));
    }

    #[test]
    fn a_verification_never_takes_the_last_download_slot() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..10 {
            scheduler.enqueue(request(book, SnapshotKind::Verify), now);
        }
        let (granted, _) = scheduler.take_due(now);
        assert_eq!(granted.len(), IN_FLIGHT_PER_HOST - 1);
        scheduler.enqueue(request(50, SnapshotKind::Resync), now);
        let (granted, _) = scheduler.take_due(now);
        let order: Vec<BookId> = granted.iter().map(|g| g.request.book).collect();
        assert_eq!(
            order,
            [50],
            "the slot kept free, while three verifications download"
        );
    }

    #[test]
    fn the_board_shows_each_waiting_books_place_and_eta() {
        let mut scheduler = scheduler();
        let now = Instant::now();
        for book in 0..40 {
            scheduler.enqueue(request(book, SnapshotKind::Verify), now);
        }
        let (verified, _) = serve(&mut scheduler, now);
        assert_eq!(verified.len(), 30);
        scheduler.enqueue(request(77, SnapshotKind::Resync), now);
        let board = scheduler.board(now);
        assert_eq!(board.len(), 11);
        let (first, second, last) = (&board[0], &board[1], &board[10]);
        assert_eq!(
            (first.symbol.as_str(), first.kind, first.place),
            ("SIM77USDT", SnapshotKind::Resync, 1)
        );
        assert_eq!(
            (second.symbol.as_str(), second.kind, second.place),
            ("SIM30USDT", SnapshotKind::Verify, 2)
        );
        assert_eq!(last.place, 11);
        // The resync fits now; the verifications only once the minute's first bookings leave.
        let wait = |book: &WaitingBook| {
            book.eta
                .duration_since(SystemTime::now())
                .unwrap_or_default()
        };
        assert!(wait(first) < Duration::from_secs(1), "{first:?}");
        assert!(wait(second) > Duration::from_secs(55), "{second:?}");
    }

    #[tokio::test]
    async fn an_absurd_retry_after_neither_panics_nor_freezes_the_scheduler() {
        // Issue 10: a 418 with `Retry-After: u64::MAX` panicked the scheduler's task, after
        // which no book of the DCN ever resynced.
        let mut scheduler = scheduler();
        // Receivers kept, so the (failing) downloads report into the void quietly.
        let (outcomes, _outcomes) = mpsc::unbounded_channel();
        let (finished, _finished) = mpsc::unbounded_channel();
        let now = Instant::now();

        scheduler.enqueue(request(1, SnapshotKind::New), now);
        assert_eq!(scheduler.dispatch(now, &outcomes, &finished), None);
        let endpoint = scheduler.budgets.keys().next().unwrap().clone();
        let banned = ResponseWeight {
            status: 418,
            used_weight: None,
            retry_after_secs: Some(u64::MAX),
        };
        scheduler.finish(
            Finished {
                endpoint,
                sent: 0,
                weight: Some(banned),
            },
            now,
        );
        assert_eq!(scheduler.stats.responses_418.load(Ordering::Relaxed), 1);

        scheduler.enqueue(request(2, SnapshotKind::New), now);
        let wake = scheduler
            .dispatch(now, &outcomes, &finished)
            .expect("the banned host is not asked");
        assert_eq!(wake, now + MAX_RETRY_AFTER);
        assert_eq!(scheduler.dispatch(wake, &outcomes, &finished), None);
        assert!(scheduler.queued.is_empty(), "sent once the ban is over");
    }

    #[tokio::test]
    async fn a_418_one_scheduler_meets_holds_back_another_on_the_same_board() {
        let path = std::env::temp_dir().join(format!("ubdcc-bans-sched-{}", std::process::id()));
        std::fs::remove_file(&path).ok();
        let mut first = scheduler().with_ban_board(Some(BanBoard::at(&path)));
        let mut second = scheduler().with_ban_board(Some(BanBoard::at(&path)));
        let (outcomes, _outcomes) = mpsc::unbounded_channel();
        let (finished, _finished) = mpsc::unbounded_channel();
        let now = Instant::now();

        first.enqueue(request(1, SnapshotKind::New), now);
        assert_eq!(first.dispatch(now, &outcomes, &finished), None);
        let endpoint = first.budgets.keys().next().unwrap().clone();
        let banned = ResponseWeight {
            status: 418,
            used_weight: None,
            retry_after_secs: Some(30),
        };
        first.finish(
            Finished {
                endpoint,
                sent: 50,
                weight: Some(banned),
            },
            now,
        );

        second.enqueue(request(2, SnapshotKind::New), now);
        let wake = second
            .dispatch(now, &outcomes, &finished)
            .expect("the other DCN's ban holds this one back");
        let held = wake.duration_since(now);
        // Held for the ban's 30 s, less the time a loaded machine took since the ban was posted
        // (wall-clock milliseconds on the board): far from zero, never beyond the ban.
        assert!(
            held > Duration::from_secs(20) && held <= Duration::from_secs(30),
            "{held:?}"
        );
        assert_eq!(second.stats.downloads.load(Ordering::Relaxed), 0);
        assert_eq!(second.stats.responses_418.load(Ordering::Relaxed), 0);
        // The board counts in wall-clock milliseconds and each side converts its `Instant`s
        // with a clock read of its own: a loaded machine can put them a few ms apart, so the
        // ban is over a moment after `wake` (a hold for those few ms would be right too).
        let over = wake + Duration::from_millis(100);
        assert!(
            second.dispatch(over, &outcomes, &finished).is_none(),
            "sent once the ban is over"
        );
        assert_eq!(second.stats.downloads.load(Ordering::Relaxed), 1);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn minus_1121_is_told_apart_from_other_failures() {
        let status = |code| SnapshotError::Status {
            url: String::new(),
            status: 400,
            api: Some(ApiError {
                code,
                msg: "Invalid symbol.".to_owned(),
            }),
        };
        assert!(status(-1121).is_unknown_symbol());
        assert!(!status(-1100).is_unknown_symbol());
        let transport = SnapshotError::Transport {
            url: String::new(),
            message: "refused".to_owned(),
        };
        assert!(!transport.is_unknown_symbol());
    }
}
