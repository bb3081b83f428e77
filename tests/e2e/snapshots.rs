//! Snapshot scheduling (issue 11): a busy book that loses sync goes before quiet books that
//! wait for verification, and a market the exchange stops listing (-1121) gets its own reason
//! and is not retried like a failed snapshot, while the other books carry on.

use std::time::Duration;

use serde_json::json;
use ubdcc_shm::{BookStatus, ClusterReader, OutOfSyncReason};

use crate::support::http::post_json;
use crate::support::metrics::{metric, metrics};
use crate::support::rig::start_dcn;
use crate::support::sim::{inject, stats};
use crate::support::wait::{wait_book, wait_until};
use crate::support::{Cleanup, Process, markets, wait_synced};

/// Quiet spot books beside the busy one. Their first snapshots (50 weight each) must fit the
/// DCN's first minute: at a 0.9 share of the simulator's 6 000 that is 108 snapshots, so the
/// verifications that follow (spare weight only) wait for the minute to roll over.
const QUIET_BOOKS: usize = 100;

/// Verifications the DCN at `dcn` has queued, waiting for spare weight.
fn waiting_verifications(dcn: &str) -> f64 {
    metric(&metrics(dcn), "ubdcc_snapshot_waiting{kind=\"verify\"}").unwrap_or(0.0)
}

#[test]
fn a_busy_books_gap_resyncs_ahead_of_quiet_books_awaiting_verification() {
    let cluster = format!("e2esnapprio{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let count = (QUIET_BOOKS + 1).to_string();
    // Rate 0: no market moves unless advanced, so every book is quiet but the one we step.
    let sim = Process::start(&["sim", "--port", "0", "--markets", &count, "--rate", "0"]);
    let books = markets(QUIET_BOOKS + 1, 0, 0);
    let dcn = start_dcn(
        &cluster,
        &sim.address,
        &books,
        &["--weight-share", "0.9", "--book-silence-secs", "1"],
    );
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    wait_synced(&mut reader, &books, Duration::from_secs(90));
    wait_until(Duration::from_secs(30), "quiet books queued", || {
        let waiting = waiting_verifications(&dcn.address);
        (waiting >= 50.0)
            .then_some(())
            .ok_or(format!("{waiting} verifications waiting"))
    });

    let (busy_exchange, _, busy) = &books[0];
    let before = reader.info(busy_exchange, busy).expect("busy book");
    let drop = inject(
        &sim.address,
        &json!({"fault": "drop", "family": "spot", "symbol": busy, "count": 1}),
    );
    let after_update_id = drop["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
    let advanced = post_json(
        &sim.address,
        "/sim/advance",
        &json!({"events": 2, "family": "spot", "symbol": busy}),
    );
    assert_eq!(advanced["advanced"], 2, "{advanced}");

    // Back in sync past the gap, while the verifications queued before it still wait: it went
    // ahead of them (one FIFO made it wait for the minute to roll over, behind all of them).
    let limit = Duration::from_secs(60);
    wait_book(
        &mut reader,
        (busy_exchange, busy),
        limit,
        "resynced",
        |info| info.status == BookStatus::Synced && info.last_update_id > after_update_id + 1,
    );
    let still_waiting = waiting_verifications(&dcn.address);
    let after = reader.info(busy_exchange, busy).expect("busy book");
    assert_eq!(after.resyncs, before.resyncs + 1, "{after:?}");
    assert!(
        still_waiting >= 40.0,
        "resynced only after the verifications queued before its gap ({still_waiting} still wait)"
    );
}

#[test]
fn a_delisted_market_gets_its_own_reason_is_retried_rarely_and_harms_no_other_book() {
    let cluster = format!("e2edelisted{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "3", "--rate", "20"]);
    let books = markets(3, 0, 0);
    let _dcn = start_dcn(
        &cluster,
        &sim.address,
        &books,
        &["--book-silence-secs", "1"],
    );
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    wait_synced(&mut reader, &books, Duration::from_secs(60));

    // Delisted: its stream goes quiet, the verification that follows is answered -1121.
    let (exchange, _, delisted) = &books[1];
    inject(
        &sim.address,
        &json!({"fault": "delist", "family": "spot", "symbol": delisted}),
    );
    let limit = Duration::from_secs(30);
    wait_book(
        &mut reader,
        (exchange, delisted),
        limit,
        "marked delisted",
        |info| info.status == BookStatus::OutOfSync(OutOfSyncReason::Delisted),
    );

    // Not retried like a failed snapshot (1 s, 2 s, 4 s …): no new request within 4 s.
    let requests = || {
        stats(&sim.address)["rest"]["spot"]["snapshot_requests"][delisted.as_str()]
            .as_u64()
            .unwrap_or(0)
    };
    let asked = requests();
    let others: Vec<u64> = [0, 2]
        .map(|i| {
            reader
                .info(books[i].0, &books[i].2)
                .expect("book")
                .last_update_id
        })
        .to_vec();
    // Not a wait for a state: the 4 s are the scenario, long enough for a failed snapshot's
    // retries (1 s, 2 s) to have come.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        requests(),
        asked,
        "a delisted market was asked again within seconds"
    );
    let info = reader.info(exchange, delisted).expect("delisted book");
    assert_eq!(
        info.status,
        BookStatus::OutOfSync(OutOfSyncReason::Delisted)
    );

    // The other books on the same connection and endpoint carried on, synced and moving.
    for (i, before) in [0, 2].into_iter().zip(others) {
        let (exchange, _, symbol) = &books[i];
        let info = reader.info(exchange, symbol).expect("book");
        assert_eq!(info.status, BookStatus::Synced, "{symbol}: {info:?}");
        assert_eq!(info.resyncs, 0, "{symbol}: {info:?}");
        assert!(info.last_update_id > before, "{symbol} stopped moving");
    }
}
