//! Replicas cross-check against the simulator (issue 16): two replicas of one market that hold
//! different top levels at the same update id are flagged by mgmt, their DCNs audit them at
//! once, the wrong one is repaired, and they agree again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::get_json_auth;
use crate::support::rig::ClusterRig;
use crate::support::sim::{Market, inject, market_fault};
use crate::support::wait::wait_until;

const SPOT: (&str, &str, &str) = ("binance.com", "spot", "SIM0USDT");

/// DCNs that audit only when asked (so the cross-check, not the periodic audit, finds the wrong
/// replica) and never copy a book from a peer (so the second replica holds the exchange's book).
const DCN_ARGS: [&str; 3] = ["--audit-interval-secs", "0", "--no-peer-seeding"];

fn depthcache_info(rig: &ClusterRig) -> Value {
    let path = "/get_depthcache_info?exchange=binance.com&market=SIM0USDT";
    get_json_auth(&rig.mgmt.address, path, rig.token())["depthcache_info"].clone()
}

#[test]
fn replicas_that_disagree_are_flagged_audited_and_agree_again() {
    // Rate 0: the market never moves, so both replicas sit at the same update id.
    let mut rig = ClusterRig::start_with_sim("trustreplicas", 1, &["--rate", "0"], 0, &[]);
    rig.add_dcn_with(&DCN_ARGS);
    rig.wait_pods(3);
    let books: Vec<Market> = vec![("binance.com", "spot", "SIM0USDT".into())];
    // Two replicas wanted, one DCN so far: the first replica syncs alone.
    rig.create(&books, 2);
    let limit = Duration::from_secs(60);
    wait_until(limit, "the first replica running", || {
        let info = depthcache_info(&rig);
        let running = info["DISTRIBUTION"].as_object().map_or(0, |d| {
            d.values().filter(|e| e["STATUS"] == "running").count()
        });
        (running == 1).then_some(()).ok_or(info.to_string())
    });
    // The exchange changes a top level without an event: the first replica keeps the old one;
    // the second, synced from a snapshot after it, holds the new one.
    inject(
        &rig.sim.address,
        &market_fault("silent_change", SPOT, json!({"side": "bid", "level": 3})),
    );
    rig.add_dcn_with(&DCN_ARGS);
    rig.wait_pods(4);
    rig.wait_running(&books, 2, None, limit);

    let settled = wait_until(limit, "flagged, audited and agreeing again", || {
        let info = depthcache_info(&rig);
        let mismatches: u64 = info["DISTRIBUTION"].as_object().map_or(0, |d| {
            d.values()
                .filter_map(|e| e["AUDIT_MISMATCHES"].as_u64())
                .sum()
        });
        let seen = info["REPLICA_DISAGREEMENTS"].as_u64().unwrap_or(0);
        let audited = info["DISTRIBUTION"].as_object().map_or(0, |d| {
            d.values()
                .filter(|e| e["AUDITS"].as_u64() >= Some(1))
                .count()
        });
        let agreeing = info.get("REPLICAS_DISAGREE").is_none();
        (seen >= 1 && mismatches >= 1 && audited == 2 && agreeing)
            .then_some(info.clone())
            .ok_or(info.to_string())
    });
    // Both replicas were audited when they disagreed: the wrong one found wrong, the other right.
    let entries: Vec<&Value> = settled["DISTRIBUTION"]
        .as_object()
        .map(|d| d.values().collect())
        .unwrap_or_default();
    let audited = entries
        .iter()
        .filter(|e| e["AUDITS"].as_u64().unwrap_or(0) >= 1)
        .count();
    assert_eq!(audited, 2, "both replicas audited: {settled}");
    let wrong = entries
        .iter()
        .filter(|e| e["AUDIT_MISMATCHES"].as_u64().unwrap_or(0) >= 1)
        .count();
    assert_eq!(wrong, 1, "only the stale replica was wrong: {settled}");
}
