//! Which replica answers a read, in which order the others are tried, and how a failover is
//! reported (`docs/upstream-api.md` §6.3, §6.4).
//!
//! - Candidates are the replicas whose status is `running`, which in ubdcc means synced and
//!   serving (the original also routed to replicas that had merely been accepted).
//! - No candidate: #4000 when the DepthCache has no replica placed, #6000 when its replicas are
//!   all starting or out of sync, #7000 when it does not exist (`docs/upstream-api.md` §14).
//! - Round-robin: the replica picked longest ago goes first, ties in the order the replicas were
//!   placed; the rest keep that order as fallbacks.
//! - When an earlier candidate failed and a later one served, the answer carries #5001 with the
//!   original's text.

use std::collections::HashMap;

use crate::mgmt::state::{ClusterState, ReplicaStatus};

/// A replica a read can go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The DCN's uid.
    pub pod_uid: String,
    /// Its name, for messages.
    pub name: String,
    /// Its address.
    pub ip: String,
    /// Its HTTP port.
    pub port: u16,
    /// The machine it runs on.
    pub node: String,
}

/// Why a read has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReplica {
    /// #4000: the DepthCache exists, but no replica is placed.
    NonePlaced,
    /// #6000: replicas are placed, none is synced.
    NoneSynced,
    /// #7000: no such DepthCache.
    UnknownDepthCache,
}

/// The running replicas of a DepthCache in placement order.
///
/// # Errors
/// [`NoReplica::NonePlaced`], [`NoReplica::NoneSynced`] or [`NoReplica::UnknownDepthCache`].
pub fn candidates(
    state: &ClusterState,
    exchange: &str,
    market: &str,
) -> Result<Vec<Replica>, NoReplica> {
    let record = state
        .depthcaches
        .get(exchange)
        .and_then(|markets| markets.get(market))
        .ok_or(NoReplica::UnknownDepthCache)?;
    let replicas: Vec<Replica> = record
        .distribution
        .values()
        .filter(|entry| entry.status == ReplicaStatus::Running)
        .filter_map(|entry| state.pods.get(&entry.pod_uid))
        .map(|pod| Replica {
            pod_uid: pod.uid.clone(),
            name: pod.name.clone(),
            ip: pod.ip.clone(),
            port: pod.api_port_rest,
            node: pod.node.clone(),
        })
        .collect();
    if record.distribution.is_empty() {
        return Err(NoReplica::NonePlaced);
    }
    if replicas.is_empty() {
        return Err(NoReplica::NoneSynced);
    }
    Ok(replicas)
}

/// Spreads reads over replicas: remembers when each was last picked.
#[derive(Debug, Default)]
pub struct RoundRobin {
    last_pick: HashMap<String, u64>,
    picks: u64,
}

impl RoundRobin {
    /// Puts the replica picked longest ago (never picked counts as longest) first, ties in the
    /// given order, the rest after it in the given order; records the first as picked now.
    pub fn order(&mut self, mut replicas: Vec<Replica>) -> Vec<Replica> {
        let first = replicas
            .iter()
            .enumerate()
            .min_by_key(|(position, replica)| {
                (
                    self.last_pick.get(&replica.pod_uid).copied().unwrap_or(0),
                    *position,
                )
            })
            .map(|(position, _)| position);
        if let Some(position) = first {
            let chosen = replicas.remove(position);
            self.picks += 1;
            self.last_pick.insert(chosen.pod_uid.clone(), self.picks);
            replicas.insert(0, chosen);
        }
        replicas
    }
}

/// The #5001 text of an answer served after `failures` (`(replica, detail)`) — the original's
/// `Data served after N DCN failure(s): pod=NAME (uid=UID) — detail; ...`.
pub fn failover_warning(failures: &[(Replica, String)]) -> String {
    let described: Vec<String> = failures
        .iter()
        .map(|(replica, detail)| {
            format!("pod={} (uid={}) — {detail}", replica.name, replica.pod_uid)
        })
        .collect();
    format!(
        "Data served after {} DCN failure(s): {}",
        failures.len(),
        described.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::state::{DCN_ROLE, DepthCacheRecord, DistributionEntry, PodRecord};

    fn state(replicas: &[(&str, ReplicaStatus)]) -> ClusterState {
        let mut state = ClusterState::default();
        let mut record =
            DepthCacheRecord::new("binance.com", "BTCUSDT", replicas.len() as u32, 0.0);
        for (i, (uid, status)) in replicas.iter().enumerate() {
            state.pods.insert(
                (*uid).into(),
                PodRecord {
                    name: format!("name-{uid}"),
                    uid: (*uid).into(),
                    node: "n".into(),
                    role: DCN_ROLE.into(),
                    ip: "127.0.0.1".into(),
                    api_port_rest: 42082 + i as u16,
                    last_seen: 0.0,
                    status: "running".into(),
                    ubldc_version: None,
                    version: "0".into(),
                    max_books: None,
                    recording: None,
                },
            );
            record.distribution.insert(
                (*uid).into(),
                DistributionEntry {
                    created_time: 0.0,
                    last_restart_time: 0.0,
                    pod_uid: (*uid).into(),
                    restarts: 0,
                    scheduled_start_time: 0.0,
                    status: *status,
                    reason: None,
                    snapshot_queue: None,
                    depth: None,
                    trust: None,
                },
            );
        }
        state
            .depthcaches
            .entry("binance.com".into())
            .or_default()
            .insert("BTCUSDT".into(), record);
        state
    }

    fn uids(replicas: &[Replica]) -> Vec<&str> {
        replicas.iter().map(|r| r.pod_uid.as_str()).collect()
    }

    #[test]
    fn only_synced_replicas_are_candidates() {
        let state = state(&[
            ("a", ReplicaStatus::Starting),
            ("b", ReplicaStatus::Running),
            ("c", ReplicaStatus::OutOfSync),
        ]);
        let replicas = candidates(&state, "binance.com", "BTCUSDT").unwrap();
        assert_eq!(uids(&replicas), ["b"]);
        assert_eq!(replicas[0].port, 42083);
    }

    #[test]
    fn no_candidate_is_4000_unplaced_6000_unsynced_and_7000_unknown() {
        let state = state(&[("a", ReplicaStatus::Starting)]);
        assert_eq!(
            candidates(&state, "binance.com", "BTCUSDT"),
            Err(NoReplica::NoneSynced)
        );
        assert_eq!(
            candidates(&super::tests::state(&[]), "binance.com", "BTCUSDT"),
            Err(NoReplica::NonePlaced)
        );
        assert_eq!(
            candidates(&state, "binance.com", "ETHUSDT"),
            Err(NoReplica::UnknownDepthCache)
        );
        assert_eq!(
            candidates(&state, "binance.us", "BTCUSDT"),
            Err(NoReplica::UnknownDepthCache)
        );
    }

    #[test]
    fn reads_rotate_over_the_replicas_and_the_rest_stay_as_fallbacks() {
        let state = state(&[
            ("a", ReplicaStatus::Running),
            ("b", ReplicaStatus::Running),
            ("c", ReplicaStatus::Running),
        ]);
        let mut round_robin = RoundRobin::default();
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let ordered = round_robin.order(candidates(&state, "binance.com", "BTCUSDT").unwrap());
            assert_eq!(
                ordered.len(),
                3,
                "every replica stays available for failover"
            );
            firsts.push(ordered[0].pod_uid.clone());
        }
        assert_eq!(firsts, ["a", "b", "c", "a", "b", "c"]);
        let ordered = round_robin.order(candidates(&state, "binance.com", "BTCUSDT").unwrap());
        assert_eq!(uids(&ordered), ["a", "b", "c"]);
    }

    #[test]
    fn the_failover_warning_reads_like_the_original() {
        let replica = Replica {
            pod_uid: "UID".into(),
            name: "NAME".into(),
            ip: "10.0.0.1".into(),
            port: 42082,
            node: "n".into(),
        };
        let text = failover_warning(&[(
            replica,
            "DepthCache 'BTCUSDT' for 'binance.com' is out of sync!".into(),
        )]);
        assert_eq!(
            text,
            "Data served after 1 DCN failure(s): pod=NAME (uid=UID) — DepthCache 'BTCUSDT' for 'binance.com' is out of sync!"
        );
    }
}
