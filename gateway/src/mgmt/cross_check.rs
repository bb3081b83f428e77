//! Replicas cross-check (issue 16): replicas of one DepthCache on different DCNs must hold the
//! same book at the same update id. Each DCN reports its last few `(update id, hash of its top
//! levels)` samples of every replica (`ubdcc_shm::top_hash`); mgmt compares the samples of a
//! market's replicas at equal ids.
//!
//! The ids are ones every replica hashes: the engine hashes its book as it stood at the end of
//! each exchange second (before the first event with a later `E`), at each snapshot it loads and
//! after an audit repaired it (`ubdcc_engine::DepthCache`). A hash so stays in shared memory for
//! about a second, the agent samples it (every 100 ms) into a history of the last 16, and each
//! report of a busy replica shares about 13 ids with its peer's last report (measured,
//! `benches/audit.rs` part 4: 20 books at 10 events/s, every report met its peer).
//!
//! A difference means one of them (or both) is wrong — a missed update, a change the exchange
//! never announced that only one replica's snapshot saw, a bug. It is recorded on the DepthCache
//! (`REPLICAS_DISAGREE` in `get_depthcache_info`) until the two agree at that id or a later one
//! (an audit repaired the wrong one, which samples the id again with its new hash); the
//! DCNs holding a disagreeing replica audit it at once (`crate::agent`).
//!
//! (Until this scheme the writer hashed every publish at its own id: a sample was whatever id the
//! book was at when sampled, so replicas met only where both agents happened to sample the same
//! version — in the simulator at 10 events/s still most reports, as the diff events come 100 ms
//! apart like the agents' samples — and never once one replica lagged the other by more than the
//! 16 samples span, ~1.6 s at 10 events/s.)

use super::state::{DepthCacheRecord, ReplicaDisagreement, Seconds};

/// Compares the replica of DCN `uid` with every other replica of `record` at the update ids
/// both sampled; records a disagreement (or clears one they have since agreed past). Returns
/// whether the record changed.
pub fn compare_replicas(record: &mut DepthCacheRecord, uid: &str, now: Seconds) -> bool {
    let Some(mine) = record
        .distribution
        .get(uid)
        .and_then(|entry| entry.trust.as_ref())
        .map(|trust| trust.top_hashes.clone())
    else {
        return false;
    };
    let mut verdict: Option<(u64, Option<String>)> = None;
    for (other_uid, other) in &record.distribution {
        if other_uid == uid {
            continue;
        }
        let Some(theirs) = other.trust.as_ref().map(|trust| &trust.top_hashes) else {
            continue;
        };
        // Samples are oldest first; a replica repaired by an audit samples its id again with
        // the corrected hash, so at an equal id the later sample of each side counts.
        for &(update_id, hash) in &mine {
            let Some(&(_, their_hash)) = theirs.iter().rev().find(|(id, _)| *id == update_id)
            else {
                continue;
            };
            // The newest comparison decides: a disagreement, or an agreement since one.
            if verdict.as_ref().is_none_or(|(id, _)| update_id >= *id) {
                let differs = (hash != their_hash).then(|| other_uid.clone());
                verdict = Some((update_id, differs));
            }
        }
    }
    let Some((update_id, differs)) = verdict else {
        return false;
    };
    match (differs, &record.replicas_disagree) {
        (Some(other), None) => {
            tracing::warn!(exchange = %record.exchange, market = %record.market, update_id, pods = ?[uid, other.as_str()], "replicas disagree on their top levels");
            record.replica_disagreements += 1;
            record.replicas_disagree = Some(ReplicaDisagreement {
                update_id,
                pods: [uid.to_owned(), other],
                since: now,
            });
            true
        }
        (None, Some(known)) if update_id >= known.update_id => {
            tracing::info!(exchange = %record.exchange, market = %record.market, update_id, "replicas agree again");
            record.replicas_disagree = None;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::state::{DistributionEntry, ReplicaStatus, ReplicaTrust};

    fn entry(uid: &str, top_hashes: &[(u64, u64)]) -> DistributionEntry {
        DistributionEntry {
            created_time: 0.0,
            last_restart_time: 0.0,
            pod_uid: uid.into(),
            restarts: 0,
            scheduled_start_time: 0.0,
            status: ReplicaStatus::Running,
            reason: None,
            snapshot_queue: None,
            depth: None,
            trust: Some(ReplicaTrust {
                top_hashes: top_hashes.to_vec(),
                ..ReplicaTrust::default()
            }),
        }
    }

    fn record(a: &[(u64, u64)], b: &[(u64, u64)]) -> DepthCacheRecord {
        let mut record = DepthCacheRecord::new("binance.com", "BTCUSDT", 2, 0.0);
        record.distribution.insert("a".into(), entry("a", a));
        record.distribution.insert("b".into(), entry("b", b));
        record
    }

    #[test]
    fn replicas_that_hash_differently_at_an_equal_id_are_flagged_until_they_agree_later() {
        let mut record = record(&[(10, 1), (12, 7)], &[(11, 5), (12, 8)]);
        assert!(compare_replicas(&mut record, "a", 1.0));
        let flagged = record.replicas_disagree.clone().expect("flagged");
        assert_eq!(flagged.update_id, 12);
        assert_eq!(flagged.pods, ["a".to_owned(), "b".to_owned()]);
        assert_eq!(record.replica_disagreements, 1);
        // Reported again without news: nothing changes.
        assert!(!compare_replicas(&mut record, "a", 2.0));
        // They agree at a later id (one was repaired): cleared.
        record.distribution["b"].trust.as_mut().unwrap().top_hashes = vec![(15, 3)];
        record.distribution["a"].trust.as_mut().unwrap().top_hashes = vec![(12, 7), (15, 3)];
        assert!(compare_replicas(&mut record, "a", 3.0));
        assert_eq!(record.replicas_disagree, None);
    }

    #[test]
    fn a_replica_repaired_at_the_same_id_clears_the_disagreement() {
        let mut record = record(&[(10, 1)], &[(10, 2)]);
        assert!(compare_replicas(&mut record, "a", 1.0));
        // b's audit replaced its book at id 10: it samples 10 again with a's hash.
        record.distribution["b"].trust.as_mut().unwrap().top_hashes = vec![(10, 2), (10, 1)];
        assert!(compare_replicas(&mut record, "b", 2.0));
        assert_eq!(record.replicas_disagree, None);
    }

    #[test]
    fn replicas_that_never_meet_at_an_id_prove_nothing() {
        let mut record = record(&[(10, 1)], &[(11, 2)]);
        assert!(!compare_replicas(&mut record, "a", 1.0));
        assert_eq!(record.replicas_disagree, None);
    }
}
