//! Starting a book from a synced replica on another DCN instead of a REST snapshot (issue 12).
//!
//! A replica that is new, re-placed or resyncing needs a starting book at a known update id.
//! Binance's REST snapshot costs weight (50 for 1 000 spot levels); a synced replica of the
//! same market on another DCN holds the same book for free. Its book at update id `u` is the
//! exchange's book after event `u` — exactly what a snapshot with `lastUpdateId = u` is — so
//! it goes through the very same first-event rules ([`crate::DepthCache::on_starting_book`]):
//! a copy that does not fit the buffered stream is refused like a too-old snapshot.
//!
//! Where a copy comes from, cheapest first:
//! 1. **shared memory**: any other live segment of this cluster on this host that holds the
//!    book synced (one consistent read, exact mantissas: [`ClusterReader::copy_book`]);
//! 2. **HTTP**: the peers mgmt's state names ([`SeedPlan::peers`]), each DCN's
//!    `GET /ubdcc_book_copy` (authenticated with the cluster secret; Binance's snapshot format).
//!
//! The REST snapshot is the fallback when no peer holds the book synced, or a copy fails midway.
//! A replica whose plan says a peer is getting the book first ([`SeedPlan::wait_for_peer`]: the
//! replicas of a new book other than the one that pays, [`SeedPlan::pays_first`]) waits for that
//! peer instead of paying twice — until the peer's own snapshot is due, or 120 s when unknown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ubdcc_shm::{BookCopy, ClusterReader, Decimal, RawLevel, ReadError};

use crate::binance::wire::LevelUpdate;
use crate::exchange::Exchange;
use crate::snapshot::{SNAPSHOT_LIMIT, Snapshot, parse_snapshot};

/// The path a DCN serves copies of its synced books on.
pub const BOOK_COPY_PATH: &str = "/ubdcc_book_copy";

/// The answer header that carries the depth a copy is complete to.
pub const DEPTH_HEADER: &str = "x-ubdcc-depth";

/// A copy over HTTP that has not arrived in this time has failed (a 1 000-level book is ~60 KB).
const COPY_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest copy body taken: 1 000 levels a side of long decimals are under 100 KB; anything
/// bigger is not a copy of ours, and must not cost the node memory or time.
const MAX_COPY_BYTES: usize = 512 << 10;

/// How a book of this DCN may be seeded, as mgmt's state tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedPlan {
    /// Base URLs (`http://ip:port`) of the other DCNs holding a replica, synced ones first.
    pub peers: Vec<String>,
    /// A peer is getting the book before this replica (it is placed earlier and alive): wait
    /// for it rather than download a snapshot of our own.
    pub wait_for_peer: bool,
    /// When that peer expects its own snapshot (its place in its snapshot queue, as mgmt's state
    /// shows it): waiting is worth it until then, however long that is — 1 000 books at full
    /// depth take minutes of weight, and a replica that stopped waiting would pay twice.
    pub peer_eta: Option<std::time::SystemTime>,
    /// This replica is the one that downloads the exchange's snapshot first when none is synced
    /// (and deepens from the exchange first); the others wait for it. Spread over the replicas
    /// by market, so every DCN of a host pays for its share and spends its share of the weight.
    pub pays_first: bool,
}

/// Where seeds come from: the plans per book and the credentials for peers; shared between the
/// DCN's agent (which fills it from mgmt's state) and the node.
#[derive(Clone, Default)]
pub struct PeerDirectory(Arc<RwLock<Directory>>);

impl std::fmt::Debug for PeerDirectory {
    /// Never shows the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let directory = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("PeerDirectory")
            .field("plans", &directory.plans.len())
            .field("auth", &directory.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Default)]
struct Directory {
    plans: HashMap<(Exchange, String), SeedPlan>,
    /// Header name and value that authenticate this DCN to its peers.
    auth: Option<(String, String)>,
}

impl PeerDirectory {
    /// Replaces every book's plan.
    pub fn set_plans(&self, plans: HashMap<(Exchange, String), SeedPlan>) {
        self.write().plans = plans;
    }

    /// Sets the header that authenticates copies from peers (the cluster secret).
    pub fn set_auth(&self, header: &str, value: String) {
        self.write().auth = Some((header.to_owned(), value));
    }

    /// The plan of one book (empty when mgmt's state names no peer).
    pub fn plan(&self, exchange: Exchange, symbol: &str) -> SeedPlan {
        let directory = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        directory
            .plans
            .get(&(exchange, symbol.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn auth(&self) -> Option<(String, String)> {
        let directory = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        directory.auth.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What seeding did (counters that only grow), for metrics and the benches.
#[derive(Debug, Default)]
pub struct SeedStats {
    /// Books started from a copy in this host's shared memory.
    pub shm: AtomicU64,
    /// Books started from a peer's copy over HTTP.
    pub http: AtomicU64,
    /// Copies that failed midway (peer gone, broken answer), after which the next source or
    /// the exchange was used.
    pub failures: AtomicU64,
}

impl SeedStats {
    /// Counts a book started from `source`.
    pub(crate) fn seeded(&self, source: SeedSource) {
        let counter = match source {
            SeedSource::Shm => &self.shm,
            SeedSource::Http => &self.http,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where a copy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedSource {
    /// Another DCN's segment on this host.
    Shm,
    /// A peer DCN over HTTP.
    Http,
}

/// Why no copy came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeedError {
    /// No peer holds the book (or none deep enough).
    NoPeer,
    /// A peer answered that it does not hold the book synced (yet): not synced, or not added
    /// yet (its agent may apply the placement a moment later). Worth waiting for when the plan
    /// says a peer gets the book first.
    NotReady,
}

/// Fetches copies for the node's books (cheap to clone: one per seeding task).
#[derive(Clone)]
pub(crate) struct Seeder {
    client: reqwest::Client,
    directory: PeerDirectory,
    /// This host's segments of the cluster, opened once and refreshed as DCNs come and go.
    local: Arc<Mutex<Option<ClusterReader>>>,
    cluster: String,
    /// This DCN: its own segment is never a peer.
    dcn: String,
    stats: Arc<SeedStats>,
}

impl Seeder {
    /// A seeder for DCN `dcn` of `cluster`.
    pub(crate) fn new(cluster: &str, dcn: &str, directory: PeerDirectory) -> Self {
        crate::tls::install_crypto_provider();
        // The cluster secret goes to peers only: never through an environment proxy, never
        // after a redirect to wherever an answer points.
        let client = reqwest::Client::builder()
            .timeout(COPY_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            directory,
            local: Arc::default(),
            cluster: cluster.to_owned(),
            dcn: dcn.to_owned(),
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub(crate) fn stats(&self) -> Arc<SeedStats> {
        Arc::clone(&self.stats)
    }

    /// The plan mgmt's state gives the book.
    pub(crate) fn plan(&self, exchange: Exchange, symbol: &str) -> SeedPlan {
        self.directory.plan(exchange, symbol)
    }

    /// A synced copy of the book deeper than `min_depth` levels, from this host's shared memory
    /// or else from the plan's peers.
    pub(crate) async fn fetch(
        &self,
        exchange: Exchange,
        symbol: &str,
        min_depth: u32,
    ) -> Result<(Snapshot, SeedSource), SeedError> {
        // In line: a copy takes microseconds (opening the segments once, milliseconds), and a
        // blocking task per book would start hundreds of threads when 1 000 books subscribe.
        let local = self.copy_from_shm(exchange, symbol, min_depth);
        let mut outcome = match local {
            Ok(snapshot) => return Ok((snapshot, SeedSource::Shm)),
            Err(error) => error,
        };
        for peer in self.plan(exchange, symbol).peers {
            match self
                .copy_from_peer(&peer, exchange, symbol, min_depth)
                .await
            {
                Ok(snapshot) => return Ok((snapshot, SeedSource::Http)),
                Err(SeedError::NotReady) => outcome = SeedError::NotReady,
                Err(SeedError::NoPeer) => {}
            }
        }
        Err(outcome)
    }

    fn copy_from_shm(
        &self,
        exchange: Exchange,
        symbol: &str,
        min_depth: u32,
    ) -> Result<Snapshot, SeedError> {
        let mut local = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if local.is_none() {
            *local = ClusterReader::open(&self.cluster).ok();
        }
        let reader = local.as_mut().ok_or(SeedError::NoPeer)?;
        match reader.copy_book(exchange.as_str(), symbol, Some(&self.dcn)) {
            Ok(copy) if copy.info.depth > min_depth => Ok(snapshot_of(&copy)),
            Ok(_) | Err(ReadError::NotFound { .. }) => Err(SeedError::NoPeer),
            Err(ReadError::NotSynced { .. }) => Err(SeedError::NotReady),
            Err(error) => {
                tracing::debug!(%error, %exchange, symbol, "no copy from shared memory");
                Err(SeedError::NoPeer)
            }
        }
    }

    async fn copy_from_peer(
        &self,
        peer: &str,
        exchange: Exchange,
        symbol: &str,
        min_depth: u32,
    ) -> Result<Snapshot, SeedError> {
        // Exchange names and symbols need no escaping (`is_valid_symbol`: `A-Z a-z 0-9 - _`).
        let url = format!("{peer}{BOOK_COPY_PATH}?exchange={exchange}&market={symbol}");
        let mut call = self.client.get(&url);
        if let Some((header, value)) = self.directory.auth() {
            call = call.header(header, value);
        }
        let failed = |message: String| {
            tracing::info!(peer, %exchange, symbol, message, "copy from a peer failed");
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            SeedError::NoPeer
        };
        let response = call.send().await.map_err(|e| failed(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            // Not synced (409) or not added yet (404): see `SeedError::NotReady`.
            404 | 409 => return Err(SeedError::NotReady),
            status => return Err(failed(format!("HTTP {status}"))),
        }
        let depth = response
            .headers()
            .get(DEPTH_HEADER)
            .and_then(|value| value.to_str().ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        if depth <= min_depth {
            return Err(SeedError::NoPeer);
        }
        if depth > SNAPSHOT_LIMIT {
            return Err(failed(format!("a depth of {depth} levels")));
        }
        let mut body = bounded_body(response)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let snapshot = parse_snapshot(&mut body, depth).map_err(|e| failed(e.to_string()))?;
        let most = snapshot.bids.len().max(snapshot.asks.len());
        if most > depth as usize {
            return Err(failed(format!("{most} levels for a depth of {depth}")));
        }
        Ok(snapshot)
    }
}

/// The body of `response`, refused beyond [`MAX_COPY_BYTES`] as it arrives.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_COPY_BYTES {
            return Err(format!("an answer beyond {MAX_COPY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A shared-memory copy as a snapshot at its last update id.
fn snapshot_of(copy: &BookCopy) -> Snapshot {
    // Only what the book covers (see `gateway/src/book_copy.rs`).
    let depth = copy.info.depth as usize;
    let levels = |raw: &[RawLevel]| -> Vec<LevelUpdate> {
        raw.iter()
            .take(depth)
            .map(|level| LevelUpdate {
                price: Decimal::new(level.price, copy.price_exponent),
                quantity: Decimal::new(level.quantity, copy.quantity_exponent),
            })
            .collect()
    };
    Snapshot {
        last_update_id: copy.info.last_update_id,
        depth: copy.info.depth,
        bids: levels(&copy.bids),
        asks: levels(&copy.asks),
        exchange_time_ms: (copy.info.event_time_ms > 0).then_some(copy.info.event_time_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_book_without_a_plan_has_no_peers_and_waits_for_none() {
        let directory = PeerDirectory::default();
        assert_eq!(
            directory.plan(Exchange::BinanceCom, "BTCUSDT"),
            SeedPlan::default()
        );
        let plan = SeedPlan {
            peers: vec!["http://10.0.0.2:42081".into()],
            wait_for_peer: true,
            peer_eta: None,
            pays_first: false,
        };
        let plans = HashMap::from([((Exchange::BinanceCom, "BTCUSDT".to_owned()), plan.clone())]);
        directory.set_plans(plans);
        assert_eq!(directory.plan(Exchange::BinanceCom, "BTCUSDT"), plan);
        assert_eq!(
            directory.plan(Exchange::BinanceCom, "ETHUSDT"),
            SeedPlan::default()
        );
    }

    #[test]
    fn a_shared_memory_copy_keeps_its_exact_mantissas_and_id() {
        let copy = BookCopy {
            info: ubdcc_shm::BookInfo {
                last_update_id: 77,
                depth: 100,
                ..test_info()
            },
            price_exponent: -2,
            quantity_exponent: -3,
            bids: vec![RawLevel {
                price: 10_050,
                quantity: 1_500,
            }],
            asks: vec![],
            dcn: "dcn-a".into(),
        };
        let snapshot = snapshot_of(&copy);
        assert_eq!((snapshot.last_update_id, snapshot.depth), (77, 100));
        assert_eq!(snapshot.bids[0].price, Decimal::new(10_050, -2));
        assert_eq!(snapshot.bids[0].quantity, Decimal::new(1_500, -3));
    }

    fn test_info() -> ubdcc_shm::BookInfo {
        ubdcc_shm::BookInfo {
            status: ubdcc_shm::BookStatus::Synced,
            last_update_id: 0,
            event_time_ms: 0,
            receive_time_ns: 0,
            publish_time_ns: 0,
            bid_count: 0,
            ask_count: 0,
            resyncs: 0,
            gaps: 0,
            updates: 0,
            generation: 0,
            depth: 0,
            changes: 0,
            freshness: ubdcc_shm::Freshness::empty(),
        }
    }
}
