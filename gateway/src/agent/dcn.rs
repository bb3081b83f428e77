//! The DCN's side of the agent: applies the state's assignments to the engine (add the books
//! placed on this DCN, remove the ones no longer placed, set the assigned API keys) and reports
//! each replica's status as the DCN's own shared-memory segment shows it.
//!
//! Statuses come from shared memory, not from the engine's internals: it is what readers see,
//! so `running` means exactly "a reader gets data". A waiting replica's place in the snapshot
//! queue comes from the engine's scheduler ([`SnapshotStats::waiting`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ubdcc_engine::{BookSpec, Exchange, NodeError, NodeHandle, SnapshotStats, WaitingBook};
use ubdcc_shm::{BookStatus, ClusterReader};

use super::{ReplicaReport, ReplicaSource, StateCopy};
use crate::mgmt::state::{ClusterState, ReplicaStatus, SnapshotWait, account_group};

/// A failed add or remove is tried again after this long, even if the state does not change.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps the engine's books equal to this DCN's assignments, until `copy` is dropped.
pub async fn apply_assignments(uid: String, copy: Arc<StateCopy>, node: NodeHandle) {
    let mut changes = copy.subscribe();
    let mut local: HashMap<(Exchange, String), BookSpec> = HashMap::new();
    let mut keys: HashMap<Exchange, Option<String>> = HashMap::new();
    loop {
        let mut settled = true;
        if let Some(state) = copy.get() {
            settled = apply_books(&node, &wanted_books(&state, &uid), &mut local).await;
            apply_keys(&node, &state, &uid, &local, &mut keys);
        }
        let retry = async {
            if settled {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(RETRY).await;
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = retry => {}
        }
    }
}

/// The books placed on DCN `uid`.
fn wanted_books(state: &ClusterState, uid: &str) -> HashMap<(Exchange, String), BookSpec> {
    let mut wanted = HashMap::new();
    for record in state.depthcaches() {
        if !record.distribution.contains_key(uid) {
            continue;
        }
        let Ok(exchange) = record.exchange.parse::<Exchange>() else {
            tracing::error!(exchange = %record.exchange, "placed on this DCN, but not an exchange it knows");
            continue;
        };
        let spec = BookSpec {
            exchange,
            symbol: record.market.clone(),
            update_interval_ms: record.update_interval,
            refresh_interval: record.refresh_interval.map(Duration::from_secs),
        };
        wanted.insert((exchange, record.market.clone()), spec);
    }
    wanted
}

/// Adds and removes books until the engine holds `wanted`; returns `false` when something
/// failed (it is tried again later).
async fn apply_books(
    node: &NodeHandle,
    wanted: &HashMap<(Exchange, String), BookSpec>,
    local: &mut HashMap<(Exchange, String), BookSpec>,
) -> bool {
    let mut settled = true;
    let gone: Vec<(Exchange, String)> = local
        .iter()
        // A changed spec (stop + create with other intervals) is a remove and an add.
        .filter(|(key, spec)| wanted.get(*key) != Some(*spec))
        .map(|(key, _)| key.clone())
        .collect();
    for (exchange, market) in gone {
        match node.remove(exchange, &market).await {
            Ok(()) | Err(NodeError::NotFound { .. }) => {
                tracing::info!(%exchange, %market, "DepthCache stopped");
                local.remove(&(exchange, market));
            }
            // Kept in `local`, so the next pass removes it again.
            Err(error) => {
                tracing::warn!(%exchange, %market, %error, "stopping the DepthCache failed");
                settled = false;
            }
        }
    }
    for (key, spec) in wanted {
        if local.contains_key(key) {
            continue;
        }
        match node.add(spec.clone()).await {
            Ok(()) => {
                tracing::info!(exchange = %key.0, market = %key.1, "DepthCache started");
                local.insert(key.clone(), spec.clone());
            }
            // The replica stays `starting` meanwhile, which readers and mgmt see.
            Err(error) => {
                tracing::error!(exchange = %key.0, market = %key.1, %error, "cannot start the DepthCache");
                settled = false;
            }
        }
    }
    settled
}

/// Gives each exchange in use the API key mgmt assigned this DCN for its account group.
fn apply_keys(
    node: &NodeHandle,
    state: &ClusterState,
    uid: &str,
    local: &HashMap<(Exchange, String), BookSpec>,
    applied: &mut HashMap<Exchange, Option<String>>,
) {
    let exchanges: HashSet<Exchange> = local.keys().map(|(exchange, _)| *exchange).collect();
    for exchange in exchanges {
        let key = account_group(exchange.as_str())
            .and_then(|group| state.credential_for(uid, group))
            .map(|credential| credential.api_key.clone());
        if applied.get(&exchange) == Some(&key) {
            continue;
        }
        tracing::info!(%exchange, keyed = key.is_some(), "API key for snapshots changed");
        node.set_api_key(exchange, key.clone());
        applied.insert(exchange, key);
    }
}

/// A DCN's replica statuses, read from its own segment.
pub struct ShmReplicaSource {
    reader: Mutex<ClusterReader>,
    /// Per book: resyncs seen and when the count last went up.
    restarts: Mutex<HashMap<(String, String), (u64, f64)>>,
    /// The engine's snapshot scheduler, for the places of waiting books.
    snapshots: Option<Arc<SnapshotStats>>,
}

impl ShmReplicaSource {
    /// Reads the segment of DCN `dcn` in `cluster`.
    pub fn new(reader: ClusterReader) -> Self {
        Self {
            reader: Mutex::new(reader),
            restarts: Mutex::new(HashMap::new()),
            snapshots: None,
        }
    }

    /// Also reports each waiting book's place in `snapshots`' queue.
    #[must_use]
    pub fn with_snapshots(mut self, snapshots: Arc<SnapshotStats>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// The waiting books by exchange and market.
    fn waiting(&self) -> HashMap<(String, String), SnapshotWait> {
        let Some(snapshots) = &self.snapshots else {
            return HashMap::new();
        };
        snapshots
            .waiting
            .books()
            .into_iter()
            .map(|book| {
                let key = (book.exchange.as_str().to_owned(), book.symbol.clone());
                (key, snapshot_wait(&book))
            })
            .collect()
    }
}

/// A waiting book as the cluster's views show it.
fn snapshot_wait(book: &WaitingBook) -> SnapshotWait {
    let unix = |at: SystemTime| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    };
    SnapshotWait {
        kind: book.kind.as_str().to_owned(),
        place: book.place,
        since: unix(book.since),
        eta: unix(book.eta),
    }
}

impl ReplicaSource for ShmReplicaSource {
    fn replicas(&self) -> Vec<ReplicaReport> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut restarts = self
            .restarts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = crate::mgmt::now();
        let mut waiting = self.waiting();
        let listings = reader.list();
        restarts.retain(|(exchange, market), _| {
            listings
                .iter()
                .any(|l| l.exchange == *exchange && l.market == *market)
        });
        let mut reports = Vec::with_capacity(listings.len());
        for listing in listings {
            let (status, reason) = match &listing.status {
                Ok(BookStatus::Synced) => (ReplicaStatus::Running, None),
                Ok(BookStatus::Starting) => (ReplicaStatus::Starting, None),
                Ok(BookStatus::OutOfSync(reason)) => {
                    (ReplicaStatus::OutOfSync, Some(reason.as_str().to_owned()))
                }
                Err(error) => (ReplicaStatus::OutOfSync, Some(error.to_string())),
            };
            let resyncs = reader
                .info(&listing.exchange, &listing.market)
                .map_or(0, |info| u64::from(info.resyncs));
            let key = (listing.exchange.clone(), listing.market.clone());
            let snapshot_queue = waiting.remove(&key);
            let seen = restarts.entry(key).or_insert((resyncs, 0.0));
            if resyncs > seen.0 {
                *seen = (resyncs, now);
            }
            reports.push(ReplicaReport {
                exchange: listing.exchange,
                market: listing.market,
                status,
                restarts: seen.0,
                last_restart_time: seen.1,
                reason,
                snapshot_queue,
            });
        }
        reports
    }
}
