//! Books started from a shallow snapshot (issue 12) against the simulator: served at once within
//! the depth they cover — a deeper read is refused with #1115 and a whole-side read says
//! `partial_depth` — and deepened to 1 000 levels without leaving sync, equal to the truth
//! before and after.

use std::time::Duration;

use ubdcc_shm::ClusterReader;

use crate::support::http::get_json;
use crate::support::rig::start_dcn;
use crate::support::truth::{assert_matches, levels, truth};
use crate::support::wait::wait_book;
use crate::support::{Cleanup, Process, markets, wait_synced};

/// Reads the top `limit` asks of `symbol` from the DCN and checks them against the truth.
fn assert_top_asks_equal_truth(dcn: &str, sim: &str, symbol: &str, limit: usize) {
    let answer = get_json(
        dcn,
        &format!("/get_asks?exchange=binance.com&market={symbol}&limit_count={limit}"),
    );
    assert_eq!(answer["result"], "OK", "{answer}");
    assert!(answer.get("partial_depth").is_none(), "{answer}");
    let held = levels(&answer, "asks");
    let update_id = answer["last_update_id"].as_u64().expect("id");
    let expected = truth(sim, "spot", symbol, update_id, ubdcc_shm::Side::Asks);
    assert_eq!(held.len(), limit.min(expected.len()), "{symbol}");
    assert_matches(
        &held,
        &expected[..held.len()],
        &format!("{symbol} top {limit}"),
    );
}

#[test]
fn a_shallow_book_is_served_within_its_depth_and_deepened_without_leaving_sync() {
    let cluster = format!("depth{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "3"]);
    let books = markets(3, 0, 0);
    let dcn = start_dcn(&cluster, &sim.address, &books, &["--initial-depth", "100"]);
    let mut reader = ClusterReader::open(&cluster).expect("segment");
    wait_synced(&mut reader, &books, Duration::from_secs(30));
    let symbol = &books[0].2;

    // Served at once within 100 levels, whatever the depth at this moment.
    assert_top_asks_equal_truth(&dcn.address, &sim.address, symbol, 50);
    // Deepened beside the live book: 1 000 levels, never out of sync on the way.
    for (_, _, symbol) in &books {
        let limit = Duration::from_secs(60);
        wait_book(
            &mut reader,
            ("binance.com", symbol),
            limit,
            "deepened",
            |info| info.depth == 1000,
        );
    }
    for (_, _, symbol) in &books {
        let info = reader.info("binance.com", symbol).expect("info");
        assert_eq!(info.resyncs, 0, "{symbol} left sync while deepening");
    }
    assert_top_asks_equal_truth(&dcn.address, &sim.address, symbol, 300);
}

#[test]
fn a_read_beyond_a_shallow_books_depth_is_refused_and_a_whole_side_is_flagged() {
    let cluster = format!("shallow{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    // No spare weight to deepen with: a share of 0.004 of 6 000 is 24 weight a minute, enough
    // for two shallow snapshots (5 each) but never for a full one (50) from the spare half.
    let sim = Process::start(&["sim", "--port", "0", "--markets", "2"]);
    let books = markets(2, 0, 0);
    let args = ["--initial-depth", "100", "--weight-share", "0.004"];
    let dcn = start_dcn(&cluster, &sim.address, &books, &args);
    let mut reader = ClusterReader::open(&cluster).expect("segment");
    wait_synced(&mut reader, &books, Duration::from_secs(30));
    let symbol = &books[0].2;
    // 100 levels from the snapshot; fewer once a level inside its prices vanished (the book is
    // exact only within them).
    let depth = reader.info("binance.com", symbol).expect("info").depth;
    assert!((1..=100).contains(&depth), "{depth}");

    let refused = get_json(
        &dcn.address,
        &format!("/get_asks?exchange=binance.com&market={symbol}&limit_count=101"),
    );
    assert_eq!(refused["error_id"], "#1115", "{refused}");
    assert!(
        refused["depth"].as_u64().is_some_and(|d| d <= 100),
        "{refused}"
    );
    let whole = get_json(
        &dcn.address,
        &format!("/get_bids?exchange=binance.com&market={symbol}"),
    );
    assert_eq!(whole["result"], "OK", "{whole}");
    assert!(
        whole["partial_depth"].as_u64().is_some_and(|d| d <= 100),
        "{whole}"
    );
    assert!(whole["bids"].as_array().expect("bids").len() <= 100);
}
