//! Placing each DepthCache's replicas on DCNs.
//!
//! The original picked the DCN picked least recently (round-robin), added one replica per book per
//! 9 s revise and delayed the n-th replica by 300 s × n (`docs/upstream-api.md` §9.6). ubdcc:
//! - places every missing replica of every book in one pass;
//! - puts a replica on the DCN holding the fewest replicas (load), preferring a host that holds
//!   no replica of the same book yet, so one machine's failure takes at most one replica;
//! - keeps replicas of a book on distinct DCNs (the distribution is keyed by DCN uid);
//! - never places more replicas on a DCN than its segment holds (`MAX_BOOKS`, told at
//!   registration): beyond it the DCN could not publish the book, which would never sync;
//! - removes replicas beyond `DESIRED_QUANTITY` from the most loaded DCNs, those not yet running
//!   first, so a serving replica is the last to go;
//! - schedules every replica to start at once: the DCNs' snapshot schedulers already keep each
//!   API family's weight within budget, which is what the original's delay approximated.
//!
//! Existing replicas are never moved; a new DCN only receives missing replicas.

use std::collections::HashMap;

use super::state::{ClusterState, DistributionEntry, ReplicaStatus, Seconds};

/// What one placement pass changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementChange {
    /// A replica was placed on a DCN.
    Added {
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
        /// The DCN.
        pod_uid: String,
    },
    /// A replica was removed from a DCN.
    Removed {
        /// Exchange.
        exchange: String,
        /// Market.
        market: String,
        /// The DCN.
        pod_uid: String,
    },
}

/// A DCN that may hold replicas.
#[derive(Debug, Clone)]
struct Candidate {
    uid: String,
    /// The machine it runs on: replicas of one book prefer different machines.
    host: String,
    /// Replicas it holds, over all books.
    load: usize,
    /// Replicas its segment can hold.
    capacity: usize,
}

/// Brings every DepthCache to its `DESIRED_QUANTITY` of replicas on the DCN pods of `state`;
/// returns what changed. Deterministic: ties go to the smaller uid.
pub fn place(state: &mut ClusterState, now: Seconds) -> Vec<PlacementChange> {
    let mut candidates: Vec<Candidate> = state
        .dcns()
        .map(|pod| Candidate {
            uid: pod.uid.clone(),
            host: if pod.node.is_empty() {
                pod.ip.clone()
            } else {
                pod.node.clone()
            },
            load: 0,
            capacity: pod.max_books.map_or(usize::MAX, |books| books as usize),
        })
        .collect();
    candidates.sort_by(|a, b| a.uid.cmp(&b.uid));
    let index: HashMap<String, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.uid.clone(), i))
        .collect();
    for record in state.depthcaches() {
        for uid in record.distribution.keys() {
            if let Some(&i) = index.get(uid) {
                candidates[i].load += 1;
            }
        }
    }

    let mut changes = Vec::new();
    for record in state
        .depthcaches
        .values_mut()
        .flat_map(|markets| markets.values_mut())
    {
        let before = changes.len();
        let desired = record.desired_quantity as usize;
        // Too many (a lowered quantity or a restored backup): not running first, then the most
        // loaded DCN, then the larger uid.
        while record.distribution.len() > desired {
            let Some(victim) = record
                .distribution
                .values()
                .max_by(|a, b| {
                    let key = |entry: &DistributionEntry| {
                        let load = index
                            .get(&entry.pod_uid)
                            .map_or(usize::MAX, |&i| candidates[i].load);
                        (
                            entry.status != ReplicaStatus::Running,
                            load,
                            entry.pod_uid.clone(),
                        )
                    };
                    key(a).cmp(&key(b))
                })
                .map(|entry| entry.pod_uid.clone())
            else {
                break;
            };
            record.distribution.shift_remove(&victim);
            if let Some(&i) = index.get(&victim) {
                candidates[i].load -= 1;
            }
            changes.push(PlacementChange::Removed {
                exchange: record.exchange.clone(),
                market: record.market.clone(),
                pod_uid: victim,
            });
        }
        // Too few: a DCN without this book, on a machine without it if possible, least loaded.
        while record.distribution.len() < desired {
            let hosts_used: Vec<&str> = record
                .distribution
                .keys()
                .filter_map(|uid| index.get(uid))
                .map(|&i| candidates[i].host.as_str())
                .collect();
            let Some(chosen) = candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.load < c.capacity && !record.distribution.contains_key(&c.uid))
                .min_by_key(|(_, c)| (hosts_used.contains(&c.host.as_str()), c.load, c.uid.clone()))
                .map(|(i, _)| i)
            else {
                // Fewer DCNs with room than replicas wanted: the rest waits for more DCNs.
                break;
            };
            let uid = candidates[chosen].uid.clone();
            candidates[chosen].load += 1;
            record.distribution.insert(
                uid.clone(),
                DistributionEntry {
                    created_time: now,
                    last_restart_time: 0.0,
                    pod_uid: uid.clone(),
                    restarts: 0,
                    scheduled_start_time: now,
                    status: ReplicaStatus::Starting,
                    reason: None,
                    snapshot_queue: None,
                    depth: None,
                    trust: None,
                },
            );
            changes.push(PlacementChange::Added {
                exchange: record.exchange.clone(),
                market: record.market.clone(),
                pod_uid: uid,
            });
        }
        let changed = (changes.len() - before) as u64;
        if changed > 0 {
            record.distribution_changes += changed;
            record.last_distribution_change = now;
        }
    }
    // The state's timestamp is the caller's to move (`ClusterState::touch`), always forward.
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::state::{DCN_ROLE, DepthCacheRecord, PodRecord};

    fn pod(uid: &str, host: &str) -> PodRecord {
        PodRecord {
            name: uid.into(),
            uid: uid.into(),
            node: host.into(),
            role: DCN_ROLE.into(),
            ip: "127.0.0.1".into(),
            api_port_rest: 42082,
            last_seen: 0.0,
            status: "running".into(),
            ubldc_version: None,
            version: "0".into(),
            max_books: None,
            recording: None,
        }
    }

    fn state(pods: &[(&str, &str)], books: &[(&str, u32)]) -> ClusterState {
        let mut state = ClusterState::default();
        for (uid, host) in pods {
            state.pods.insert((*uid).into(), pod(uid, host));
        }
        for (market, quantity) in books {
            state
                .depthcaches
                .entry("binance.com".into())
                .or_default()
                .insert(
                    (*market).into(),
                    DepthCacheRecord::new("binance.com", market, *quantity, 0.0),
                );
        }
        state
    }

    fn holders(state: &ClusterState, market: &str) -> Vec<String> {
        state.depthcaches["binance.com"][market]
            .distribution
            .keys()
            .cloned()
            .collect()
    }

    fn loads(state: &ClusterState) -> Vec<usize> {
        let mut loads: Vec<usize> = state
            .dcns()
            .map(|pod| {
                state
                    .depthcaches()
                    .filter(|r| r.distribution.contains_key(&pod.uid))
                    .count()
            })
            .collect();
        loads.sort();
        loads
    }

    #[test]
    fn every_missing_replica_is_placed_at_once_on_distinct_dcns_evenly() {
        let mut state = state(
            &[("a", "h1"), ("b", "h2"), ("c", "h3")],
            &[("W", 2), ("X", 2), ("Y", 2), ("Z", 2)],
        );
        let changes = place(&mut state, 10.0);
        assert_eq!(changes.len(), 8);
        for market in ["W", "X", "Y", "Z"] {
            assert_eq!(holders(&state, market).len(), 2);
        }
        assert_eq!(loads(&state), [2, 3, 3]);
        let record = &state.depthcaches["binance.com"]["W"];
        assert_eq!(
            (record.distribution_changes, record.last_distribution_change),
            (2, 10.0)
        );
        assert!(
            record
                .distribution
                .values()
                .all(|e| e.status == ReplicaStatus::Starting && e.scheduled_start_time == 10.0)
        );
        assert!(
            place(&mut state, 11.0).is_empty(),
            "a second pass has nothing to do"
        );
    }

    #[test]
    fn replicas_of_one_book_prefer_different_machines() {
        // a and b share a machine: the second replica goes to c even though c is busier.
        let mut state = state(
            &[("a", "h1"), ("b", "h1"), ("c", "h2")],
            &[("BUSY", 1), ("X", 2)],
        );
        state.depthcaches["binance.com"]["BUSY"]
            .distribution
            .insert(
                "c".into(),
                DistributionEntry {
                    created_time: 0.0,
                    last_restart_time: 0.0,
                    pod_uid: "c".into(),
                    restarts: 0,
                    scheduled_start_time: 0.0,
                    status: ReplicaStatus::Running,
                    reason: None,
                    snapshot_queue: None,
                    depth: None,
                    trust: None,
                },
            );
        place(&mut state, 1.0);
        let x = holders(&state, "X");
        assert_eq!(x.len(), 2);
        assert!(x.contains(&"c".to_owned()), "{x:?}");
    }

    #[test]
    fn without_enough_dcns_the_rest_waits_and_a_new_dcn_gets_only_missing_replicas() {
        let mut state = state(&[("a", "h1")], &[("X", 2)]);
        place(&mut state, 1.0);
        assert_eq!(holders(&state, "X"), ["a"]);
        state.pods.insert("b".into(), pod("b", "h2"));
        let changes = place(&mut state, 2.0);
        assert_eq!(
            changes,
            [PlacementChange::Added {
                exchange: "binance.com".into(),
                market: "X".into(),
                pod_uid: "b".into()
            }]
        );
        assert_eq!(
            holders(&state, "X"),
            ["a", "b"],
            "the existing replica stays where it is"
        );
    }

    #[test]
    fn a_dead_dcns_replicas_are_replaced_in_the_same_pass() {
        let mut state = state(
            &[("a", "h1"), ("b", "h2"), ("c", "h3")],
            &[("X", 2), ("Y", 2)],
        );
        place(&mut state, 1.0);
        let victim = holders(&state, "X")[0].clone();
        state.pods.shift_remove(&victim);
        state.purge_departed();
        place(&mut state, 2.0);
        for market in ["X", "Y"] {
            let now = holders(&state, market);
            assert_eq!(now.len(), 2, "{market}: {now:?}");
            assert!(!now.contains(&victim));
        }
    }

    #[test]
    fn lowering_the_quantity_removes_replicas_not_yet_running_first() {
        let mut state = state(&[("a", "h1"), ("b", "h2"), ("c", "h3")], &[("X", 3)]);
        place(&mut state, 1.0);
        let record = state.depthcaches["binance.com"]
            .get_mut("X")
            .expect("placed");
        record.distribution["a"].status = ReplicaStatus::Running;
        record.distribution["c"].status = ReplicaStatus::Running;
        record.desired_quantity = 1;
        let changes = place(&mut state, 2.0);
        assert_eq!(changes.len(), 2);
        let kept = holders(&state, "X");
        assert_eq!(kept.len(), 1);
        assert!(
            kept[0] == "a" || kept[0] == "c",
            "a running replica is kept: {kept:?}"
        );
        let record = &state.depthcaches["binance.com"]["X"];
        assert_eq!(record.distribution_changes, 5, "3 added, 2 removed");
        state.depthcaches["binance.com"]
            .get_mut("X")
            .expect("book")
            .desired_quantity = 0;
        place(&mut state, 3.0);
        assert!(
            holders(&state, "X").is_empty(),
            "quantity 0 is an inactive book"
        );
    }
}
