//! The DCN's side of the agent: applies the state's assignments to the engine (add the books
//! placed on this DCN, remove the ones no longer placed, set the assigned API keys) and reports
//! each replica's status as the DCN's own shared-memory segment shows it.
//!
//! Each book's peers — the other DCNs holding a replica, and whether one of them gets the book
//! first — come from the same state (`seed_plans`): a replica starts from a synced peer's copy
//! before it pays for a REST snapshot (issue 12).
//!
//! Statuses come from shared memory, not from the engine's internals: it is what readers see,
//! so `running` means exactly "a reader gets data". A waiting replica's place in the snapshot
//! queue comes from the engine's scheduler ([`SnapshotStats::waiting`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ubdcc_engine::{
    BookSpec, Exchange, NodeError, NodeHandle, SeedPlan, SnapshotStats, WaitingBook,
};
use ubdcc_shm::{BookProof, BookStatus, ClusterReader, ReadError};

use super::{ReplicaReport, ReplicaSource, StateCopy};
use crate::mgmt::state::{
    ClusterState, PodRecord, ReplicaStatus, ReplicaTrust, SnapshotWait, account_group,
};

/// A failed add or remove is tried again after this long, even if the state does not change.
const RETRY: Duration = Duration::from_secs(5);

/// Share of an IP's weight limits all DCNs of one host may use together (what `ubdcc start`
/// gives its DCNs; the rest is headroom for requests in flight and other clients on the IP).
const HOST_SHARE: f64 = 0.9;

/// Keeps the engine's books equal to this DCN's assignments, until `copy` is dropped.
pub async fn apply_assignments(uid: String, copy: Arc<StateCopy>, node: NodeHandle) {
    let mut changes = copy.subscribe();
    let mut local: HashMap<(Exchange, String), BookSpec> = HashMap::new();
    let mut keys: HashMap<Exchange, Option<String>> = HashMap::new();
    let mut disputes: HashSet<(String, String, u64)> = HashSet::new();
    // The share this DCN was started with is the most it takes, however few DCNs share its host.
    let started_share = node.weight_share();
    loop {
        let mut settled = true;
        if let Some(state) = copy.get() {
            // Plans first: a book added below asks its peers at once.
            node.peers().set_plans(seed_plans(&state, &uid));
            settled = apply_books(&node, &wanted_books(&state, &uid), &mut local).await;
            apply_keys(&node, &state, &uid, &local, &mut keys);
            apply_share(&node, &state, &uid, started_share);
            audit_disputed(&node, &state, &uid, &mut disputes);
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
            record: record.record,
        };
        wanted.insert((exchange, record.market.clone()), spec);
    }
    wanted
}

/// For each book placed on DCN `uid`: its peers (the other replicas' DCNs, synced ones first)
/// and whether to wait for one — a peer that is synced, or the replica that pays for the book
/// first ([`payer`]; the other replicas of a new book must not pay for a snapshot again).
fn seed_plans(state: &ClusterState, uid: &str) -> HashMap<(Exchange, String), SeedPlan> {
    let mut plans = HashMap::new();
    for record in state.depthcaches() {
        let Some(mine) = record.distribution.get_index_of(uid) else {
            continue;
        };
        let Ok(exchange) = record.exchange.parse::<Exchange>() else {
            continue;
        };
        let mut peers = Vec::new();
        let mut wait_for_peer = false;
        let mut peer_eta: Option<f64> = None;
        let payer = payer(&record.market, record.distribution.len());
        for (index, (peer, entry)) in record.distribution.iter().enumerate() {
            let Some(pod) = state.pods.get(peer).filter(|_| peer != uid) else {
                continue;
            };
            let synced = entry.status == ReplicaStatus::Running;
            wait_for_peer |= synced || index == payer;
            if index == payer && !synced {
                if let Some(wait) = &entry.snapshot_queue {
                    peer_eta = Some(peer_eta.map_or(wait.eta, |eta: f64| eta.max(wait.eta)));
                }
            }
            peers.push((!synced, crate::client::pod_url(&pod.ip, pod.api_port_rest)));
        }
        // Synced peers first (a stable sort keeps placement order among equals).
        peers.sort_by_key(|(not_synced, _)| *not_synced);
        let peers = peers.into_iter().map(|(_, url)| url).collect();
        plans.insert(
            (exchange, record.market.clone()),
            SeedPlan {
                peers,
                wait_for_peer,
                peer_eta: peer_eta.and_then(|eta| {
                    std::time::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(eta).ok()?)
                }),
                pays_first: mine == payer,
            },
        );
    }
    plans
}

/// Which of a book's `replicas` (by place in its distribution) pays for the exchange's snapshot
/// when none is synced. Spread by market (FNV-1a of its name), not always the first placed:
/// placement puts the first replicas of consecutive books on the same DCNs, and one payer per
/// book on those would use half a host's weight while the other half waits idle (measured:
/// 1 000 books × 2 replicas on 4 DCNs, all first snapshots on 2 DCNs, 124 s instead of ~66 s).
fn payer(market: &str, replicas: usize) -> usize {
    let hash = market
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    usize::try_from(hash % replicas.max(1) as u64).unwrap_or(0)
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

/// Gives this DCN its part of its host's weight: the DCNs mgmt's state lists on one host (its
/// `node`: the Kubernetes node or machine id; the IP where none was told) split [`HOST_SHARE`],
/// each taking at most `started`. Derived here from the state mgmt pushes rather than sent as
/// a field of its own: the state already says everything the share depends on.
fn apply_share(node: &NodeHandle, state: &ClusterState, uid: &str, started: f64) {
    let Some(share) = host_share(state, uid, started) else {
        return;
    };
    if (node.weight_share() - share).abs() < 1e-9 {
        return;
    }
    tracing::info!(share, "weight share set from the DCNs on this host");
    node.set_weight_share(share);
}

/// The share of DCN `uid` (see [`apply_share`]); `None` while the state does not list it.
fn host_share(state: &ClusterState, uid: &str, started: f64) -> Option<f64> {
    let host = |pod: &PodRecord| {
        if pod.node.is_empty() {
            pod.ip.clone()
        } else {
            pod.node.clone()
        }
    };
    let own = host(state.dcns().find(|pod| pod.uid == uid)?);
    let on_host = state.dcns().filter(|pod| host(pod) == own).count().max(1);
    Some(started.min(HOST_SHARE / on_host as f64))
}

/// Asks the node to audit at once each of this DCN's replicas mgmt found disagreeing with
/// another replica (issue 16, `crate::mgmt::cross_check`), once per disagreement.
fn audit_disputed(
    node: &NodeHandle,
    state: &ClusterState,
    uid: &str,
    asked: &mut HashSet<(String, String, u64)>,
) {
    let disputed: HashSet<(String, String, u64)> = state
        .depthcaches()
        .filter_map(|record| {
            let dispute = record.replicas_disagree.as_ref()?;
            dispute.pods.iter().any(|pod| pod == uid).then(|| {
                (
                    record.exchange.clone(),
                    record.market.clone(),
                    dispute.update_id,
                )
            })
        })
        .collect();
    for key in &disputed {
        if asked.contains(key) {
            continue;
        }
        if let Ok(exchange) = key.0.parse::<Exchange>() {
            node.audit_now(exchange, &key.1);
        }
    }
    *asked = disputed;
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
    /// Per book: its latest `(update id, top hash)` samples, newest last (issue 16).
    hashes: Mutex<TopHashSamples>,
    /// The engine's snapshot scheduler, for the places of waiting books.
    snapshots: Option<Arc<SnapshotStats>>,
    /// Every segment of the cluster on this machine, to notice a DCN that died.
    peers: Option<Mutex<ClusterReader>>,
}

impl ShmReplicaSource {
    /// Reads the segment of DCN `dcn` in `cluster`.
    pub fn new(reader: ClusterReader) -> Self {
        Self {
            reader: Mutex::new(reader),
            restarts: Mutex::new(HashMap::new()),
            hashes: Mutex::new(HashMap::new()),
            snapshots: None,
            peers: None,
        }
    }

    /// Also watches `peers` (the cluster's segments on this machine) for DCNs that died: a
    /// writer's lock is freed the moment its process dies, so mgmt can re-place their replicas
    /// without waiting for the pod timeout.
    #[must_use]
    pub fn with_peers(mut self, peers: ClusterReader) -> Self {
        self.peers = Some(Mutex::new(peers));
        self
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
    fn dead_dcns(&self) -> Vec<String> {
        let Some(peers) = &self.peers else {
            return Vec::new();
        };
        let mut peers = peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // New segments (DCNs that started) are picked up; a segment swept away since drops out.
        peers.refresh();
        peers
            .segments()
            .iter()
            .zip(peers.dcns())
            .filter(|(segment, _)| {
                matches!(
                    segment.check_writer_now(),
                    Err(ReadError::WriterGone { .. })
                )
            })
            .map(|(_, dcn)| dcn.to_owned())
            .collect()
    }

    fn replicas(&self) -> Vec<ReplicaReport> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut restarts = self
            .restarts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hashes = self
            .hashes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = crate::mgmt::now();
        let mut waiting = self.waiting();
        let listings = reader.list();
        let listed = |(exchange, market): &(String, String)| {
            listings
                .iter()
                .any(|l| l.exchange == *exchange && l.market == *market)
        };
        restarts.retain(|key, _| listed(key));
        hashes.retain(|key, _| listed(key));
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
            let proof = reader.proof(&listing.exchange, &listing.market).ok();
            let info = proof.map(|proof| proof.info);
            let resyncs = info.map_or(0, |info| u64::from(info.resyncs));
            let depth = info.map(|info| info.depth).filter(|depth| *depth > 0);
            let key = (listing.exchange.clone(), listing.market.clone());
            let snapshot_queue = waiting.remove(&key);
            let top_hashes = proof
                .filter(|proof| proof.info.status.is_synced())
                .map(|proof| sample_top_hash(hashes.entry(key.clone()).or_default(), &proof))
                .unwrap_or_default();
            let trust = proof.map(|proof| ReplicaTrust {
                verified_at: proof.audit.verified_at_ms as f64 / 1e3,
                audits: proof.audit.audits,
                audit_mismatches: proof.audit.audit_mismatches,
                top_hashes: Vec::new(),
            });
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
                depth,
                trust,
                top_hashes,
            });
        }
        reports
    }
}

/// Per book (exchange, market): its `(update id, top hash)` samples, newest last.
type TopHashSamples = HashMap<(String, String), Vec<(u64, u64)>>;

/// `(update id, top hash)` samples a replica keeps for mgmt's comparison: enough to span several
/// reports, so that two replicas sampled at different moments still meet at equal ids.
const TOP_HASH_SAMPLES: usize = 16;

/// Adds the book's current top hash to its samples (unless it is the last one again) and returns
/// them, newest last.
fn sample_top_hash(samples: &mut Vec<(u64, u64)>, proof: &BookProof) -> Vec<(u64, u64)> {
    let sample = (proof.top_hash.update_id, proof.top_hash.hash);
    if sample.0 > 0 && samples.last() != Some(&sample) {
        if samples.len() == TOP_HASH_SAMPLES {
            samples.remove(0);
        }
        samples.push(sample);
    }
    samples.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::state::DCN_ROLE;

    fn dcn(uid: &str, node: &str, ip: &str) -> PodRecord {
        PodRecord {
            name: uid.into(),
            uid: uid.into(),
            node: node.into(),
            role: DCN_ROLE.into(),
            ip: ip.into(),
            api_port_rest: 1,
            last_seen: 0.0,
            status: "running".into(),
            ubldc_version: None,
            version: "0".into(),
            max_books: None,
            recording: None,
        }
    }

    #[test]
    fn dcns_of_one_host_split_its_share_and_none_takes_more_than_it_started_with() {
        let mut state = ClusterState::default();
        for (uid, node, ip) in [
            ("a", "host-1", "10.0.0.1"),
            ("b", "host-1", "10.0.0.1"),
            ("c", "host-1", "10.0.0.1"),
            ("d", "host-2", "10.0.0.2"),
            ("e", "", "10.0.0.3"),
            ("f", "", "10.0.0.3"),
        ] {
            state.pods.insert(uid.into(), dcn(uid, node, ip));
        }
        assert_eq!(host_share(&state, "a", 0.5), Some(0.3));
        assert_eq!(
            host_share(&state, "d", 0.5),
            Some(0.5),
            "alone: its own cap"
        );
        assert_eq!(host_share(&state, "d", 1.0), Some(HOST_SHARE));
        assert_eq!(host_share(&state, "e", 0.5), Some(0.45), "no node: by IP");
        assert_eq!(
            host_share(&state, "a", 0.1),
            Some(0.1),
            "never above the start"
        );
        assert_eq!(host_share(&state, "z", 0.5), None, "not listed yet");
    }

    #[test]
    fn replicas_wait_for_the_one_that_pays_and_a_resyncing_one_asks_synced_peers_first() {
        use crate::mgmt::state::{DepthCacheRecord, DistributionEntry, SnapshotWait};
        let uids = ["a", "b", "c"];
        let mut state = ClusterState::default();
        for (uid, ip) in uids.iter().zip(["10.0.0.1", "10.0.0.2", "fd00::3"]) {
            state.pods.insert((*uid).into(), dcn(uid, "", ip));
        }
        let entry = |uid: &str, status, eta: Option<f64>| DistributionEntry {
            created_time: 0.0,
            last_restart_time: 0.0,
            pod_uid: uid.into(),
            restarts: 0,
            scheduled_start_time: 0.0,
            status,
            reason: None,
            snapshot_queue: eta.map(|eta| SnapshotWait {
                kind: "new".into(),
                place: 1,
                since: 0.0,
                eta,
            }),
            depth: None,
            trust: None,
        };
        let payer_index = payer("BTCUSDT", uids.len());
        let (paying, others) = (
            uids[payer_index],
            [uids[(payer_index + 1) % 3], uids[(payer_index + 2) % 3]],
        );
        let place = |state: &mut ClusterState, running: Option<&str>| {
            let mut record = DepthCacheRecord::new("binance.com", "BTCUSDT", 3, 0.0);
            for uid in uids {
                let (status, eta) = match (uid == paying, Some(uid) == running) {
                    (_, true) => (ReplicaStatus::Running, None),
                    (true, false) => (ReplicaStatus::Starting, Some(500.0)),
                    (false, false) => (ReplicaStatus::Starting, None),
                };
                record
                    .distribution
                    .insert(uid.into(), entry(uid, status, eta));
            }
            let markets = state.depthcaches.entry("binance.com".into()).or_default();
            markets.insert("BTCUSDT".into(), record);
        };
        let key = (Exchange::BinanceCom, "BTCUSDT".to_owned());
        place(&mut state, None);
        // A new book: the others wait for the payer until its snapshot is due.
        let waiting = seed_plans(&state, others[0]).remove(&key).expect("placed");
        assert!(waiting.wait_for_peer && !waiting.pays_first);
        assert_eq!(
            waiting.peer_eta,
            std::time::UNIX_EPOCH.checked_add(Duration::from_secs(500))
        );
        let paying_plan = seed_plans(&state, paying).remove(&key).expect("placed");
        assert!(paying_plan.pays_first && !paying_plan.wait_for_peer);
        // Resyncing while another replica is synced: that one first, in brackets for IPv6.
        place(&mut state, Some("c"));
        let asking = if paying == "c" { others[0] } else { paying };
        let plan = seed_plans(&state, asking).remove(&key).expect("placed");
        assert!(plan.wait_for_peer);
        assert_eq!(plan.peers[0], "http://[fd00::3]:1");
        assert!(
            !seed_plans(&state, "z").contains_key(&key),
            "not placed on z"
        );
    }

    #[test]
    fn payers_spread_over_the_replicas() {
        let mut counts = [0; 2];
        for market in 0..1000 {
            counts[payer(&format!("SIM{market}USDT"), 2)] += 1;
        }
        assert!(
            counts.iter().all(|count| (400..=600).contains(count)),
            "{counts:?}"
        );
        assert_eq!(payer("X", 0), 0);
    }
}
