//! COIN-M futures (`binance.com-coin_futures`) end to end against the simulator's `dapi` and
//! `dstream`: perpetual and quarterly books equal the truth, in shared memory and over HTTP, a gap
//! and a disconnect cost a resync and end correct, a `serverShutdown` is handed over without one,
//! and mgmt accepts COIN-M books only for contracts the exchange lists. The suites of the other
//! families run the same helpers (`support::rig`, `support::truth`).

use std::time::Duration;

use serde_json::json;
use ubdcc_shm::ClusterReader;

use crate::support::http::get_json;
use crate::support::rig::{ClusterRig, DcnRig, start_dcn};
use crate::support::sim::{Market, assert_within_weight_budget, market_fault};
use crate::support::truth::{
    assert_http_asks_equal_truth, assert_served_correctly, assert_shm_books_equal_truth,
};
use crate::support::{Cleanup, Process, wait_synced};

const EXCHANGE: &str = "binance.com-coin_futures";
const FAMILY: &str = "coin_futures";

/// The simulator's first `count` COIN-M contracts: a perpetual and a quarterly per coin.
fn contracts(count: usize) -> Vec<Market> {
    ["BTC", "ETH", "BNB"]
        .into_iter()
        .flat_map(|coin| [format!("{coin}USD_PERP"), format!("{coin}USD_260626")])
        .take(count)
        .map(|symbol| (EXCHANGE, FAMILY, symbol))
        .collect()
}

/// A simulator with two contracts (`BTCUSD_PERP`, `BTCUSD_260626`) and a DCN keeping both.
fn rig(tag: &str) -> DcnRig {
    DcnRig::with(&format!("coinm{tag}"), "20", &contracts(2), &[])
}

/// `market` as the borrowed triple the rig and the comparisons take.
fn book(market: &Market) -> (&str, &str, &str) {
    (market.0, market.1, &market.2)
}

#[test]
fn coin_m_books_sync_and_equal_the_simulators_truth() {
    let cluster = format!("e2ecoinm{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "6", "--rate", "10"]);
    let markets = contracts(6);
    let dcn = start_dcn(&cluster, &sim.address, &markets, &[]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    let took = wait_synced(&mut reader, &markets, Duration::from_secs(120));
    println!("{} COIN-M books synced after {took:?}", markets.len());
    assert_shm_books_equal_truth(&mut reader, &sim.address, &markets);
    for market in &markets {
        assert_http_asks_equal_truth(&dcn.address, &sim.address, book(market));
    }
    assert_within_weight_budget(&sim.address, &[FAMILY]);
    // Every COIN-M stream went to dstream, none to the spot or USD-M venues.
    let stats = get_json(&sim.address, "/sim/stats");
    assert_eq!(
        stats["websocket"]["dstream"]["connections_open"].as_u64(),
        Some(1),
        "{}",
        stats["websocket"]
    );
    for venue in ["spot", "fstream"] {
        assert_eq!(
            stats["websocket"][venue]["connections_opened"].as_u64(),
            Some(0),
            "{venue}: {}",
            stats["websocket"]
        );
    }
    dcn.terminate();
}

#[test]
fn a_coin_m_gap_breaks_the_pu_chain_and_resyncs() {
    let mut rig = rig("gap");
    for market in contracts(2) {
        let book = book(&market);
        let gaps = rig.info(book).expect("book").gaps;
        rig.fault_resyncs(book, market_fault("drop", book, json!({"count": 2})));
        assert!(
            rig.info(book).expect("book").gaps > gaps,
            "{book:?}: counted as a gap"
        );
    }
    rig.alive();
}

#[test]
fn a_coin_m_disconnect_resyncs_the_books_of_the_connection() {
    let mut rig = rig("disconnect");
    let markets = contracts(2);
    let (perpetual, quarterly) = (book(&markets[0]), book(&markets[1]));
    let before = rig.info(perpetual).expect("book").resyncs;
    rig.fault_resyncs(quarterly, json!({"fault": "disconnect", "family": FAMILY}));
    // Both contracts shared the one dstream connection.
    rig.assert_correct_after(perpetual, 0);
    assert!(rig.info(perpetual).expect("book").resyncs > before);
    rig.alive();
}

#[test]
fn a_coin_m_server_shutdown_is_handed_over_without_a_resync() {
    let mut rig = rig("shutdown");
    let markets = contracts(2);
    rig.assert_server_shutdown_handed_over(FAMILY, "dstream", &markets);
    for market in &markets {
        rig.assert_correct_after(book(market), 0);
    }
    rig.alive();
}

#[test]
fn mgmt_places_listed_coin_m_contracts_and_refuses_unlisted_ones() {
    let rig = ClusterRig::start("coinm", 2, 1);
    for (query, error_id) in [
        // Not in the simulator's `/dapi/v1/exchangeInfo`.
        ("market=ETHUSD_PERP", "#1114"),
        // COIN-M has no 1000 ms stream.
        ("market=BTCUSD_PERP&update_interval=1000", "#1107"),
    ] {
        let answer = get_json(
            &rig.local.address,
            &format!("/create_depthcache?exchange={EXCHANGE}&{query}"),
        );
        assert_eq!(answer["error_id"], error_id, "{query}: {answer}");
    }
    let books = contracts(2);
    rig.create(&books, 1);
    rig.wait_running(&books, 1, None, Duration::from_secs(60));
    for market in &books {
        let (exchange, _, symbol) = book(market);
        // The restapis learn that the replica runs from their next state push, a heartbeat
        // after mgmt does.
        let path = format!("/get_asks?exchange={exchange}&market={symbol}&limit_count=1");
        for restapi in [&rig.local.address, &rig.remote.address] {
            rig.wait_served(restapi, &path, Duration::from_secs(10));
        }
        for restapi in [&rig.local.address, &rig.remote.address] {
            assert_served_correctly(&rig.sim.address, restapi, book(market));
        }
    }
}
