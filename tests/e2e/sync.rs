//! Books kept by a DCN from the simulator equal the simulator's truth at the same update id, in
//! shared memory and over the DCN's HTTP endpoints, without overspending the REST weight.

use std::time::Duration;

use serde_json::Value;
use ubdcc_shm::{ClusterReader, LevelQuery, Side};

use crate::cluster::{Cleanup, Process, markets, start_dcn, wait_synced};
use crate::http::get_json;

/// Levels at the top of each side that must equal the truth exactly. Deeper down a kept book can
/// legitimately miss levels that were outside every snapshot and never changed (Binance's own
/// caveat), so there only "every level held is in the truth" is checked.
const EXACT_TOP: usize = 100;

/// The truth of one side at `update_id`, as `(price, quantity)` floats.
pub fn truth(sim: &str, family: &str, symbol: &str, update_id: u64, side: Side) -> Vec<(f64, f64)> {
    let body = get_json(
        sim,
        &format!("/sim/truth?family={family}&symbol={symbol}&update_id={update_id}"),
    );
    let key = match side {
        Side::Asks => "asks",
        Side::Bids => "bids",
    };
    let levels = body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in truth: {body}"));
    levels
        .iter()
        .map(|level| (parse(&level[0]), parse(&level[1])))
        .collect()
}

fn parse(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
}

/// Asserts `held` is what a correct book at that update id holds.
pub fn assert_matches(held: &[(f64, f64)], truth: &[(f64, f64)], what: &str) {
    let top = EXACT_TOP.min(truth.len());
    assert!(
        held.len() >= top,
        "{what}: {} levels held, truth has {}",
        held.len(),
        truth.len()
    );
    assert_eq!(
        &held[..top],
        &truth[..top],
        "{what}: top {top} levels differ"
    );
    let truth_of = |price: f64| truth.iter().find(|(p, _)| *p == price).map(|(_, q)| *q);
    for (price, quantity) in held {
        assert_eq!(
            truth_of(*price),
            Some(*quantity),
            "{what}: level {price} is not in the truth with quantity {quantity}"
        );
    }
}

/// Asserts that both sides of every one of `markets` in shared memory equal the simulator's truth
/// at the update id the book is at.
pub fn assert_shm_books_equal_truth(
    reader: &mut ClusterReader,
    sim: &str,
    markets: &[(&str, &str, String)],
) {
    let mut levels = Vec::new();
    for (exchange, family, symbol) in markets {
        for side in [Side::Asks, Side::Bids] {
            let info = reader
                .read(exchange, symbol, side, &LevelQuery::ALL, &mut levels)
                .unwrap_or_else(|e| panic!("{exchange} {symbol}: {e}"));
            let held: Vec<(f64, f64)> = levels.iter().map(|l| (l.price, l.quantity)).collect();
            let expected = truth(sim, family, symbol, info.last_update_id, side);
            assert_matches(
                &held,
                &expected,
                &format!(
                    "shm {exchange} {symbol} {side:?} at {}",
                    info.last_update_id
                ),
            );
        }
    }
}

/// Asserts that the DCN at `dcn` serves the asks of `symbol` over HTTP equal to the truth at the
/// update id it reports.
pub fn assert_http_asks_equal_truth(
    dcn: &str,
    sim: &str,
    (exchange, family, symbol): (&str, &str, &str),
) {
    let body = get_json(
        dcn,
        &format!("/get_asks?exchange={exchange}&market={symbol}"),
    );
    assert_eq!(body["result"], "OK", "{body}");
    let held: Vec<(f64, f64)> = body["asks"]
        .as_array()
        .expect("asks")
        .iter()
        .map(|l| (l[0].as_f64().expect("price"), l[1].as_f64().expect("qty")))
        .collect();
    let update_id = body["last_update_id"].as_u64().expect("last_update_id");
    assert_matches(
        &held,
        &truth(sim, family, symbol, update_id, Side::Asks),
        &format!("http {exchange} {symbol}"),
    );
}

/// Asserts that snapshots stayed within every host's weight budget: no 429, no 418, and never
/// more than the DCN's share (half) of the per-minute limit of any of `families`' hosts.
pub fn assert_within_weight_budget(sim: &str, families: &[&str]) {
    let stats = get_json(sim, "/sim/stats");
    for family in families {
        let rest = &stats["rest"][family];
        let (used, limit) = (
            rest["max_used_weight_1m"].as_u64().expect("counted"),
            rest["weight_limit_1m"].as_u64().expect("limit"),
        );
        println!(
            "{family}: max weight used per minute {used} of {limit}, {} snapshot requests",
            rest["requests"]
        );
        assert!(used <= limit / 2, "{family}: {used} of {limit}");
        assert_eq!(
            (
                rest["responses_429"].as_u64(),
                rest["responses_418"].as_u64()
            ),
            (Some(0), Some(0)),
            "{family}: {rest}"
        );
    }
}

#[test]
fn fifty_books_sync_and_equal_the_simulators_truth() {
    let cluster = format!("e2esync{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "20", "--rate", "10"]);
    let markets = markets(20, 20, 10);
    let dcn = start_dcn(&cluster, &sim.address, &markets, &[]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    let took = wait_synced(&mut reader, &markets, Duration::from_secs(120));
    println!("{} books synced after {took:?}", markets.len());
    assert_shm_books_equal_truth(&mut reader, &sim.address, &markets);

    // The DCN's HTTP endpoint serves the same books, with the update id they are at.
    for (exchange, family, symbol) in markets.iter().step_by(7) {
        assert_http_asks_equal_truth(&dcn.address, &sim.address, (exchange, family, symbol));
    }
    assert_within_weight_budget(&sim.address, &["spot", "futures", "options"]);
    dcn.terminate();
}
