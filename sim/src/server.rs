//! The simulator as a service: its shared state, the ticker that steps every market, the router
//! that serves REST, WebSocket and `/sim/...` on one port, and `run`.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info};

use crate::clock::now_ms;
use crate::config::SimConfig;
use crate::family::{Family, Venue};
use crate::faults::SubscribeRefusals;
use crate::markets::Exchange;
use crate::stats::VenueStats;
use crate::weight::WeightLedger;
use crate::ws::ConnectionCommand;
use crate::{control, rest, sim_api, ws};

/// Ticks buffered per connection before it counts as too slow and is closed: about 7 minutes
/// at 10 Hz, and more than a maximal `POST /sim/advance` burst.
const TICK_BUFFER: usize = 4096;

/// Connection commands buffered per connection (they are rare).
const COMMAND_BUFFER: usize = 64;

/// Everything one step of the exchange produced: for each family, for each market (by index),
/// the frames (raw event JSON after faults) its subscribers receive.
#[derive(Debug)]
pub(crate) struct Tick {
    frames: [Vec<Vec<Arc<str>>>; Family::COUNT],
}

impl Tick {
    /// The frames of one market in this step (none if it is unknown).
    pub(crate) fn frames(&self, family: Family, market: usize) -> &[Arc<str>] {
        self.frames[family.index()]
            .get(market)
            .map_or(&[], Vec::as_slice)
    }
}

/// The shared state behind every handler and connection.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings.
    pub(crate) config: SimConfig,
    /// Every market.
    pub(crate) exchange: Exchange,
    /// Per family (by [`Family::index`]): REST weight accounting.
    ledgers: [Mutex<WeightLedger>; Family::COUNT],
    /// Every step's frames, to every connection.
    pub(crate) ticks: broadcast::Sender<Arc<Tick>>,
    /// Fault commands to connections.
    pub(crate) commands: broadcast::Sender<ConnectionCommand>,
    /// Per venue (by [`Venue::index`]): WebSocket counters.
    ws_stats: [VenueStats; Venue::COUNT],
    /// `true` once the server is shutting down; connections and the ticker watch it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Serialises steps, so that every market's events reach connections in id order.
    step_lock: Mutex<()>,
    /// Steps taken so far.
    steps: AtomicU64,
    /// Faults injected so far.
    pub(crate) faults_injected: AtomicU64,
    /// Which `SUBSCRIBE` requests are refused (the `refuse_subscribe` fault).
    pub(crate) refusals: Mutex<SubscribeRefusals>,
}

/// A handle on the simulator's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct SimState {
    shared: Arc<Shared>,
}

impl SimState {
    /// Builds every market at its initial book. No event is generated until [`run`] starts the
    /// ticker or `POST /sim/advance` steps the markets.
    pub fn new(config: SimConfig) -> SimState {
        let exchange = Exchange::new(&config, now_ms());
        let ledgers = Family::ALL.map(|family| {
            Mutex::new(WeightLedger::new(
                config.weight_limit(family),
                config.ban_duration(),
            ))
        });
        let (ticks, _) = broadcast::channel(TICK_BUFFER);
        let (commands, _) = broadcast::channel(COMMAND_BUFFER);
        let (shutdown, _) = watch::channel(false);
        SimState {
            shared: Arc::new(Shared {
                config,
                exchange,
                ledgers,
                ticks,
                commands,
                ws_stats: Venue::ALL.map(|_| VenueStats::default()),
                shutdown,
                step_lock: Mutex::new(()),
                steps: AtomicU64::new(0),
                faults_injected: AtomicU64::new(0),
                refusals: Mutex::new(SubscribeRefusals::default()),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Advances every market by one event and sends the frames to the connections.
    pub fn step(&self) {
        let _serialised = lock(&self.shared.step_lock);
        let frames = self.shared.exchange.step(now_ms(), Instant::now());
        self.shared.steps.fetch_add(1, Ordering::Relaxed);
        // An error only means that no connection is open: the step has nobody to reach.
        self.shared.ticks.send(Arc::new(Tick { frames })).ok();
    }

    /// Advances only the market of `family` at `index` (see [`SimState::step`]); the step count
    /// is not changed, as it counts steps of the whole exchange.
    pub(crate) fn step_market(&self, family: Family, index: usize) {
        let _serialised = lock(&self.shared.step_lock);
        let frames = self
            .shared
            .exchange
            .step_one(family, index, now_ms(), Instant::now());
        self.shared.ticks.send(Arc::new(Tick { frames })).ok();
    }

    /// Tells the ticker and every connection to stop (connections close with 1001).
    pub fn shut_down(&self) {
        self.shared.shutdown.send_replace(true);
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The weight ledger of a family's REST host.
    pub(crate) fn ledger(&self, family: Family) -> MutexGuard<'_, WeightLedger> {
        lock(&self.shared.ledgers[family.index()])
    }

    /// The WebSocket counters of a venue.
    pub(crate) fn ws_stats(&self, venue: Venue) -> &VenueStats {
        &self.shared.ws_stats[venue.index()]
    }

    /// Steps taken so far.
    pub(crate) fn steps(&self) -> u64 {
        self.shared.steps.load(Ordering::Relaxed)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (counters and plain
/// values), so a poisoned lock is used as is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The simulator's routes: Binance's REST paths per family, the stream endpoints per venue, and
/// `/sim/...` for stats, truth, stepping and faults.
pub fn router(state: SimState) -> Router {
    Router::new()
        .merge(rest::routes())
        .merge(ws::routes(state.config().unrouted_venue()))
        .merge(sim_api::routes())
        .merge(control::routes())
        .with_state(state)
}

/// Serves the simulator on `listener` until `shutdown` completes: steps the markets at the
/// configured rate (none at rate 0), then closes every stream connection and returns once the
/// HTTP connections are done.
///
/// # Errors
/// The listener's I/O error, if serving fails.
pub async fn run(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let state = SimState::new(config);
    if state.config().rate_hz() > 0 {
        tokio::spawn(run_ticker(state.clone()));
    }
    info!(
        address = %listener.local_addr()?,
        markets = state.config().markets(),
        rate_hz = state.config().rate_hz(),
        seed = state.config().seed(),
        "simulator serving"
    );
    // The peer address tells the weight ledger which IP a REST request is charged to.
    let app = router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let stopping = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.shut_down();
        })
        .await?;
    state.shut_down();
    info!("simulator stopped");
    Ok(())
}

/// Steps every market at the configured rate until shutdown. A late tick is not made up for
/// (the rate is a ceiling, not a catch-up target), so a stalled machine sees fewer events, never
/// a burst.
async fn run_ticker(state: SimState) {
    let period = Duration::from_secs_f64(1.0 / f64::from(state.config().rate_hz()));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shared().shutdown.subscribe();
    loop {
        tokio::select! {
            _ = interval.tick() => state.step(),
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
    }
    debug!(steps = state.steps(), "ticker stopped");
}
