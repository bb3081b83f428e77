//! Downloading REST depth snapshots within each API endpoint's weight budget.
//!
//! [`SnapshotScheduler`] owns a FIFO of requests (at most one per book) and a [`WeightBudget`]
//! per REST API endpoint (e.g. `https://api.binance.com/api/v3/depth`: Binance counts weight per
//! IP and API family). A request goes out as soon as its endpoint's budget grants its weight; downloads
//! run concurrently, so one slow book never holds up the others, and each response's
//! used-weight header and any 429/418 `Retry-After` feed back into the budget.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;

use crate::binance::wire::{ApiError, DepthSnapshot, LevelUpdate, WireError, parse_levels};
use crate::exchange::{EndpointOverrides, Exchange};
use crate::weight_budget::{Permit, ResponseWeight, WeightBudget};

/// Levels asked for per snapshot: Binance's 1000, the depth the original kept.
pub const SNAPSHOT_LIMIT: u32 = 1000;

/// A REST request that has not answered in this time has failed (the original's timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Downloads in flight per endpoint at most: enough to hide latency, few enough that a burst of
/// resyncs cannot flood it before its used-weight headers come back.
const IN_FLIGHT_PER_HOST: usize = 4;

/// Identifies a book to the scheduler and back.
pub type BookId = u32;

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
}

/// A downloaded snapshot with its levels parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// Bids.
    pub bids: Vec<LevelUpdate>,
    /// Asks.
    pub asks: Vec<LevelUpdate>,
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
    /// Share of each host's per-minute weight limit this process may use.
    pub weight_share: f64,
    /// API keys by exchange, for hosts that need one (TR) and for keyed weight limits.
    pub api_keys: ApiKeys,
}

/// What the scheduler did, for metrics: counters only ever grow.
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
    endpoint: String,
    weight: Option<ResponseWeight>,
}

/// Downloads snapshots for the node; see the module doc.
pub struct SnapshotScheduler {
    config: SnapshotConfig,
    client: reqwest::Client,
    queue: VecDeque<SnapshotRequest>,
    queued: HashSet<BookId>,
    budgets: HashMap<String, WeightBudget>,
    in_flight: HashMap<String, usize>,
    stats: Arc<SnapshotStats>,
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
            config,
            client,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            budgets: HashMap::new(),
            in_flight: HashMap::new(),
            stats: Arc::default(),
        })
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
            let wake = self.dispatch(Instant::now(), &outcomes, &finished_tx);
            let sleep = tokio::time::sleep_until(wake.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => self.enqueue(request),
                    None => return,
                },
                Some(finished) = finished_rx.recv() => self.finish(finished, Instant::now()),
                () = sleep => {}
            }
        }
    }

    fn enqueue(&mut self, request: SnapshotRequest) {
        // One pending snapshot per book: a second request while one is queued only brings the
        // queued one up to the book's current episode.
        if self.queued.insert(request.book) {
            self.queue.push_back(request);
            return;
        }
        if let Some(queued) = self
            .queue
            .iter_mut()
            .find(|queued| queued.book == request.book)
        {
            queued.epoch = request.epoch;
        }
    }

    fn finish(&mut self, finished: Finished, now: Instant) {
        if let Some(count) = self.in_flight.get_mut(&finished.endpoint) {
            *count = count.saturating_sub(1);
        }
        match finished.weight.map(|w| w.status) {
            Some(429) => self.stats.responses_429.fetch_add(1, Ordering::Relaxed),
            Some(418) => self.stats.responses_418.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if let (Some(weight), Some(budget)) =
            (finished.weight, self.budgets.get_mut(&finished.endpoint))
        {
            budget.on_response(weight, now);
        }
    }

    /// Starts every queued download its endpoint allows at `now`, oldest first; returns when to
    /// look again for the ones still waiting.
    fn dispatch(
        &mut self,
        now: Instant,
        outcomes: &mpsc::UnboundedSender<SnapshotOutcome>,
        finished: &mpsc::UnboundedSender<Finished>,
    ) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut index = 0;
        while index < self.queue.len() {
            let exchange = self.queue[index].exchange;
            // Binance's limits are per API family (spot `/api`, futures `/fapi`, options `/eapi`
            // are separate systems), even when one URL serves several, as the simulator does.
            let endpoint = format!(
                "{}{}",
                self.config.endpoints.endpoints(exchange).rest_base,
                exchange.spec().snapshot_path
            );
            if self.in_flight.get(&endpoint).copied().unwrap_or(0) >= IN_FLIGHT_PER_HOST {
                index += 1;
                continue;
            }
            let spec = exchange.spec();
            let budget = self.budgets.entry(endpoint.clone()).or_insert_with(|| {
                WeightBudget::new(spec.weight_per_minute, self.config.weight_share)
            });
            match budget.try_spend(spec.snapshot_weight(SNAPSHOT_LIMIT), now) {
                Permit::WaitUntil(until) => {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                    index += 1;
                }
                Permit::Granted => {
                    let Some(request) = self.queue.remove(index) else {
                        break;
                    };
                    self.queued.remove(&request.book);
                    *self.in_flight.entry(endpoint.clone()).or_default() += 1;
                    self.stats.downloads.fetch_add(1, Ordering::Relaxed);
                    let weight = u64::from(spec.snapshot_weight(SNAPSHOT_LIMIT));
                    self.stats.weight.fetch_add(weight, Ordering::Relaxed);
                    self.spawn_download(request, endpoint, outcomes.clone(), finished.clone());
                }
            }
        }
        wake
    }

    fn spawn_download(
        &self,
        request: SnapshotRequest,
        endpoint: String,
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
                let url = endpoint.clone();
                (Err(SnapshotError::Transport { url, message }), None)
            });
            if result.is_err() {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            // Either receiver gone means the node is shutting down; nothing is left to tell.
            finished.send(Finished { endpoint, weight }).ok();
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
        "{endpoint}?symbol={}&limit={SNAPSHOT_LIMIT}",
        request.symbol.to_ascii_uppercase()
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
        parse_snapshot(&mut body).map_err(|source| SnapshotError::Body { url, source }),
        Some(weight),
    )
}

fn parse_snapshot(body: &mut [u8]) -> Result<Snapshot, WireError> {
    let (last_update_id, snapshot) = DepthSnapshot::parse(body)?;
    Ok(Snapshot {
        last_update_id,
        bids: parse_levels(&snapshot.bids)?,
        asks: parse_levels(&snapshot.asks)?,
    })
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

    fn request(book: BookId) -> SnapshotRequest {
        SnapshotRequest {
            book,
            epoch: 0,
            exchange: Exchange::BinanceCom,
            symbol: "BTCUSDT".to_owned(),
        }
    }

    #[tokio::test]
    async fn an_absurd_retry_after_neither_panics_nor_freezes_the_scheduler() {
        // Issue 10: a 418 with `Retry-After: u64::MAX` panicked the scheduler's task, after
        // which no book of the DCN ever resynced.
        let endpoints = EndpointOverrides::parse(["binance.com=http://127.0.0.1:9"]).unwrap();
        let mut scheduler = SnapshotScheduler::new(SnapshotConfig {
            endpoints,
            weight_share: 0.5,
            api_keys: ApiKeys::default(),
        })
        .unwrap();
        // Receivers kept, so the (failing) downloads report into the void quietly.
        let (outcomes, _outcomes) = mpsc::unbounded_channel();
        let (finished, _finished) = mpsc::unbounded_channel();
        let now = Instant::now();

        scheduler.enqueue(request(1));
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
                weight: Some(banned),
            },
            now,
        );
        assert_eq!(scheduler.stats.responses_418.load(Ordering::Relaxed), 1);

        scheduler.enqueue(request(2));
        let wake = scheduler
            .dispatch(now, &outcomes, &finished)
            .expect("the banned host is not asked");
        assert_eq!(wake, now + MAX_RETRY_AFTER);
        assert_eq!(scheduler.dispatch(wake, &outcomes, &finished), None);
        assert!(scheduler.queue.is_empty(), "sent once the ban is over");
    }
}
