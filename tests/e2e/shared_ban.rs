//! Two DCNs on one IP meeting a forced 418 (issue 11, build item 6): the first DCN that meets
//! the ban posts it on the host's ban board, and the second holds back instead of walking into
//! the ban with a request of its own (which would extend a real one); both resync once it is
//! over.

use std::time::{Duration, Instant};

use serde_json::json;
use ubdcc_shm::{BookStatus, ClusterReader};

use crate::support::rig::start_dcn;
use crate::support::sim::{inject, stats};
use crate::support::wait::{wait_book, wait_until};
use crate::support::{Cleanup, Process, wait_synced};

/// How long the simulator answers 418 (its `Retry-After` is what is left of it): long enough
/// that the second DCN's resync falls inside it, short enough for a test.
const BAN_MS: u64 = 5000;

/// 418 answers the simulator gave to spot REST requests.
fn spot_418s(sim: &str) -> u64 {
    stats(sim)["rest"]["spot"]["responses_418"]
        .as_u64()
        .unwrap_or(0)
}

/// Drops an event of `symbol`'s stream (a gap: its DCN needs a snapshot); returns the update
/// id the book must get past.
fn gap(sim: &str, symbol: &str) -> u64 {
    let reply = inject(
        sim,
        &json!({"fault": "drop", "family": "spot", "symbol": symbol, "count": 1}),
    );
    reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0)
}

/// How long each step may take.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn two_dcns_on_one_ip_meet_a_forced_418_once_and_both_resync_after_it() {
    let cluster = format!("e2eban{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", "20"]);
    let first_book = vec![("binance.com", "spot", "SIM0USDT".to_owned())];
    let second_book = vec![("binance.com", "spot", "SIM1USDT".to_owned())];
    let _first = start_dcn(&cluster, &sim.address, &first_book, &["--name", "dcn-a"]);
    let _second = start_dcn(&cluster, &sim.address, &second_book, &["--name", "dcn-b"]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    let both: Vec<_> = first_book.iter().chain(&second_book).cloned().collect();
    wait_synced(&mut reader, &both, Duration::from_secs(60));
    assert_eq!(spot_418s(&sim.address), 0);

    inject(
        &sim.address,
        &json!({"fault": "rest_status", "family": "spot", "status": 418, "duration_ms": BAN_MS}),
    );
    let banned_at = Instant::now();
    // The first DCN loses sync and meets the ban.
    let first_past = gap(&sim.address, "SIM0USDT");
    wait_until(PATIENCE, "the first DCN met the ban", || {
        let met = spot_418s(&sim.address);
        (met >= 1).then_some(()).ok_or(format!("{met} 418s"))
    });
    // Then the second loses sync while the ban lasts.
    let resyncs = reader
        .info("binance.com", "SIM1USDT")
        .expect("book")
        .resyncs;
    let second_past = gap(&sim.address, "SIM1USDT");
    let second = ("binance.com", "SIM1USDT");
    wait_book(&mut reader, second, PATIENCE, "lost sync", |info| {
        info.resyncs > resyncs
    });
    assert!(
        banned_at.elapsed() < Duration::from_millis(BAN_MS - 1000),
        "the second gap came too late to test anything ({:?})",
        banned_at.elapsed()
    );

    // Both resync after the ban, past their gaps.
    for (symbol, past) in [("SIM0USDT", first_past), ("SIM1USDT", second_past)] {
        let book = ("binance.com", symbol);
        wait_book(
            &mut reader,
            book,
            PATIENCE,
            "resynced after the ban",
            |info| info.status == BookStatus::Synced && info.last_update_id > past,
        );
    }
    assert!(
        banned_at.elapsed() >= Duration::from_millis(BAN_MS - 1000),
        "resynced during the ban?"
    );
    let rest = stats(&sim.address)["rest"]["spot"].clone();
    assert_eq!(
        rest["responses_418"].as_u64(),
        Some(1),
        "only the first DCN may meet the ban: {rest}"
    );
}
