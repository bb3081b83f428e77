//! Each fault the simulator can inject ends with the book out of sync (never served stale) and
//! then resynced and equal to the truth again — or, for what the rules tolerate (a duplicate
//! event), with the book never leaving sync and still equal to the truth.

use std::time::Duration;

use serde_json::{Value, json};
use ubdcc_shm::{BookInfo, BookStatus, ClusterReader, OutOfSyncReason, Side};

use crate::support::http::get_json;
use crate::support::rig::{DcnRig, start_dcn, untouched};
use crate::support::sim::{Market, inject, market_fault, stats};
use crate::support::truth::{assert_matches, assert_shm_side_equals_truth, read_shm_side, truth};
use crate::support::wait::{SHM_POLL, hold, wait_book, wait_until_every};
use crate::support::{Cleanup, Process, markets, wait_synced};

const SPOT: (&str, &str, &str) = ("binance.com", "spot", "SIM0USDT");
const FUTURES: (&str, &str, &str) = ("binance.com-futures", "futures", "SIM1USDT");

/// Two spot and two futures books, with a short connection watchdog so the silence fault is seen
/// within a test's patience.
fn rig(tag: &str) -> DcnRig {
    let markets: Vec<Market> = [("binance.com", "spot"), ("binance.com-futures", "futures")]
        .into_iter()
        .flat_map(|(exchange, family)| {
            (0..2).map(move |i| (exchange, family, format!("SIM{i}USDT")))
        })
        .collect();
    DcnRig::with(
        tag,
        "20",
        &markets,
        &["--silence-timeout-ms", "1000", "--ping-interval-ms", "300"],
    )
}

#[test]
fn dropped_events_are_a_gap_for_spot_and_futures() {
    let mut rig = rig("drop");
    for book in [SPOT, FUTURES] {
        let gaps = rig.info(book).expect("book").gaps;
        rig.fault_resyncs(book, market_fault("drop", book, json!({"count": 2})));
        assert!(
            rig.info(book).expect("book").gaps > gaps,
            "counted as a gap"
        );
    }
    rig.alive();
}

#[test]
fn reordered_events_are_a_gap() {
    let mut rig = rig("reorder");
    for book in [SPOT, FUTURES] {
        rig.fault_resyncs(book, market_fault("reorder", book, json!({"count": 1})));
    }
    rig.alive();
}

#[test]
fn duplicate_events_are_ignored_without_a_resync() {
    let mut rig = rig("duplicate");
    // A duplicate was applied already (spot: u < local; futures: u <= local), so the rules skip it
    // and the book stays right without a new snapshot.
    for book in [SPOT, FUTURES] {
        let before = rig.info(book).expect("book").resyncs;
        let reply = rig.inject(market_fault("duplicate", book, json!({"count": 3})));
        let after = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
        rig.assert_correct_after(book, after + 5);
        assert_eq!(
            rig.info(book).expect("book").resyncs,
            before,
            "no resync for duplicates"
        );
    }
    rig.alive();
}

#[test]
fn malformed_frames_resync_the_connection_and_never_kill_the_dcn() {
    let mut rig = rig("malformed");
    rig.fault_resyncs(SPOT, market_fault("malformed", SPOT, json!({"count": 2})));
    rig.alive();
}

#[test]
fn a_stale_snapshot_is_refused_and_fetched_again() {
    let mut rig = rig("stale");
    rig.inject(market_fault(
        "stale_snapshot",
        SPOT,
        json!({"count": 1, "behind_events": 200}),
    ));
    // A gap makes the book fetch a snapshot: the stale one cannot align, a fresh one does.
    rig.fault_resyncs(SPOT, market_fault("drop", SPOT, json!({"count": 1})));
    let stats = stats(&rig.sim.address);
    let requests = stats["rest"]["spot"]["snapshot_requests"]["SIM0USDT"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        requests >= 3,
        "first sync, the stale snapshot, then a fresh one: {requests}"
    );
    rig.alive();
}

#[test]
fn a_disconnect_resyncs_every_book_of_the_connection() {
    let mut rig = rig("disconnect");
    rig.fault_resyncs(SPOT, json!({"fault": "disconnect", "family": "spot"}));
    rig.alive();
}

/// Issue 11: `serverShutdown` is handed over make-before-break, like the 24 h rotation.
#[test]
fn a_server_shutdown_hands_over_without_losing_sync_or_spending_a_snapshot() {
    let mut rig = rig("shutdown");
    let markets = markets(2, 2, 0);
    rig.assert_server_shutdown_handed_over("futures", "fstream", &markets);
    for book in [("binance.com-futures", "futures", "SIM0USDT"), FUTURES] {
        rig.assert_correct_after(book, 0);
    }
    rig.alive();
}

/// A DCN keeping `good` markets and one `odd` spot market beside them: once the good ones are
/// synced, they stay synced for a few seconds without a resync, on the spot connection opened
/// first (none reopened). Returns the simulator's stats then.
fn odd_market_among_good_ones(
    tag: &str,
    fault: Option<Value>,
    odd: &str,
    odd_state: impl Fn(&BookInfo) -> bool,
) -> Value {
    let cluster = format!("e2efault{tag}{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", "20"]);
    if let Some(fault) = fault {
        inject(&sim.address, &fault);
    }
    let good: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let mut all = good.clone();
    all.push(("binance.com", "spot", odd.into()));
    let dcn = start_dcn(&cluster, &sim.address, &all, &[]);
    let mut reader = ClusterReader::open(&cluster).expect("cluster");
    wait_synced(&mut reader, &good, Duration::from_secs(60));
    let limit = Duration::from_secs(60);
    wait_book(
        &mut reader,
        ("binance.com", odd),
        limit,
        "as expected",
        odd_state,
    );
    hold(Duration::from_secs(3), &format!("harmed by {odd}"), || {
        untouched(&mut reader, &good)
    });
    let stats = stats(&sim.address);
    assert_eq!(
        stats["websocket"]["spot"]["connections_opened"].as_u64(),
        Some(1),
        "the spot connection was dropped: {}",
        stats["websocket"]["spot"]
    );
    assert_eq!(get_json(&dcn.address, "/test")["result"], "OK");
    stats
}

/// Issue 11: a refused `SUBSCRIBE` takes out the books it names, not the connection.
#[test]
fn a_refused_subscription_among_good_ones_puts_only_its_book_out_of_sync() {
    let stats = odd_market_among_good_ones(
        "refused",
        Some(json!({"fault": "refuse_subscribe", "symbol": "SIM1USDT"})),
        "SIM1USDT",
        |info| info.status == BookStatus::OutOfSync(OutOfSyncReason::SubscriptionRefused),
    );
    // A SUBSCRIBE naming SIM1USDT beside SIM0USDT is refused whole; the DCN asked again in
    // halves, so SIM0USDT's half was accepted and only SIM1USDT's refused.
    let refused = stats["websocket"]["spot"]["error_replies"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused >= 1, "{}", stats["websocket"]["spot"]);
}

/// Issue 11: Binance accepts a stream of a symbol it does not list and sends nothing; that book
/// never syncs, and no other book notices.
#[test]
fn an_unlisted_market_is_accepted_silently_and_harms_no_other_book() {
    let stats = odd_market_among_good_ones("unlisted", None, "NOSUCHUSDT", |info| {
        info.status != BookStatus::Synced
    });
    assert_eq!(
        stats["websocket"]["spot"]["error_replies"].as_u64(),
        Some(0),
        "{}",
        stats["websocket"]["spot"]
    );
}

#[test]
fn a_silent_stream_is_noticed_and_resynced() {
    let mut rig = rig("silence");
    // The whole spot stream goes quiet while its connection stays open.
    rig.fault_resyncs(
        SPOT,
        json!({"fault": "silence", "family": "spot", "duration_ms": 2500}),
    );
    rig.alive();
}

/// Forces `status` on a family's REST endpoint, then makes `book` need a snapshot (a gap) and
/// waits until it is synced again; returns the simulator's REST stats of that family.
fn resync_through_forced_status(tag: &str, book: (&str, &str, &str), status: u16) -> Value {
    let mut rig = rig(tag);
    let family = book.1;
    rig.inject(
        json!({"fault": "rest_status", "family": family, "status": status, "duration_ms": 2000}),
    );
    rig.fault_resyncs(book, market_fault("drop", book, json!({"count": 1})));
    rig.alive();
    stats(&rig.sim.address)["rest"][family].clone()
}

#[test]
fn a_forced_429_is_honoured_and_no_ban_follows() {
    // The first try gets 429 + Retry-After and nothing more is sent until it has passed, so the
    // simulator never escalates to a 418 ban.
    let rest = resync_through_forced_status("429", SPOT, 429);
    assert_eq!(rest["responses_418"].as_u64(), Some(0), "{rest}");
    assert!(rest["responses_429"].as_u64().unwrap_or(0) >= 1, "{rest}");
}

#[test]
fn a_forced_418_ban_is_honoured_for_its_whole_retry_after() {
    // One request met the ban; the next waited for Retry-After instead of hammering the host.
    let rest = resync_through_forced_status("418", FUTURES, 418);
    assert_eq!(rest["responses_418"].as_u64(), Some(1), "{rest}");
}

#[test]
fn connections_are_replaced_before_their_lifetime_ends_without_losing_sync() {
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let args = ["--connection-lifetime-secs", "2"];
    let mut rig = DcnRig::with("rotate", "20", &markets, &args);
    let before = stats(&rig.sim.address);

    // Several replacements: each connection lives 2 s plus a 2 s overlap.
    hold(
        Duration::from_secs(12),
        "left sync during a replacement",
        || untouched(&mut rig.reader, &markets),
    );
    let after = stats(&rig.sim.address);
    for venue in ["spot", "fstream"] {
        let opened = |stats: &Value| {
            stats["websocket"][venue]["connections_opened"]
                .as_u64()
                .unwrap_or(0)
        };
        assert!(
            opened(&after) >= opened(&before) + 2,
            "{venue}: connections were not replaced: {}",
            after["websocket"][venue]
        );
    }
    // No book needed a new snapshot for it.
    assert_eq!(
        after["rest"]["spot"]["requests"],
        before["rest"]["spot"]["requests"]
    );
    assert_eq!(
        after["rest"]["futures"]["requests"],
        before["rest"]["futures"]["requests"]
    );
    for (exchange, family, symbol) in &markets {
        let book = (*exchange, *family, symbol.as_str());
        assert_shm_side_equals_truth(&mut rig.reader, &rig.sim.address, book, Side::Asks);
    }
}

#[test]
fn one_silent_market_among_busy_ones_is_verified_and_resynced() {
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com", "spot", "SIM1USDT".into()),
    ];
    let args = ["--book-silence-secs", "1"];
    let mut rig = DcnRig::with("booksilence", "20", &markets, &args);

    // SIM0USDT's events stop; SIM1USDT keeps the shared connection busy, so only a per-book check
    // can notice.
    let reply = rig.inject(
        json!({"fault": "silence", "family": "spot", "symbol": "SIM0USDT", "duration_ms": 3000}),
    );
    let after = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
    let silent = ("binance.com", "SIM0USDT");
    let limit = Duration::from_secs(20);
    wait_book(&mut rig.reader, silent, limit, "verified", |info| {
        info.resyncs > 0
    });
    assert_eq!(
        rig.reader
            .info("binance.com", "SIM1USDT")
            .expect("book")
            .resyncs,
        0,
        "the busy neighbour is untouched"
    );
    // After the silence the book is exact again.
    let limit = Duration::from_secs(30);
    let (update_id, held) =
        wait_until_every(SHM_POLL, limit, "back in sync", || {
            match read_shm_side(&mut rig.reader, silent, Side::Asks) {
                Ok((update_id, held)) if update_id > after + 20 => Ok((update_id, held)),
                Ok((update_id, _)) => Err(format!("at {update_id}, not past {}", after + 20)),
                Err(error) => Err(error.to_string()),
            }
        });
    let expected = truth(&rig.sim.address, "spot", "SIM0USDT", update_id, Side::Asks);
    assert_matches(&held, &expected, "SIM0USDT after the silence");
}

#[test]
fn quiet_markets_stay_synced_and_are_verified_less_and_less() {
    // Rate 0: the simulator's books never change, like markets nobody trades.
    let markets: Vec<Market> = vec![
        ("binance.com", "spot", "SIM0USDT".into()),
        ("binance.com-futures", "futures", "SIM0USDT".into()),
    ];
    let args = ["--book-silence-secs", "1"];
    let mut rig = DcnRig::with("quiet", "0", &markets, &args);
    // Not a wait for a state: 8 quiet seconds are the scenario, long enough for the silence
    // thresholds of 1, 2 and 4 s to come and go.
    std::thread::sleep(Duration::from_secs(8));
    untouched(&mut rig.reader, &markets).unwrap_or_else(|e| panic!("{e}"));
    // Thresholds 1, 2, 4 s: at most a handful of verifications in 8 s, not one per second.
    let requests = stats(&rig.sim.address)["rest"]["spot"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (2..=5).contains(&requests),
        "{requests} spot snapshot requests"
    );
}
