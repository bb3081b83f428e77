//! Honest freshness (issue 16) against the simulator: an options snapshot, which lags the stream,
//! is not served until a live event confirms it, and `max_age_ms` refuses the books of a DCN
//! whose events arrive late however recently it received them — in every read, at the DCN and
//! at restapi, from shared memory and over HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use ubdcc_shm::{BookStatus, ClusterReader, Freshness};

use crate::support::http::{get_json, get_json_auth, post_json};
use crate::support::rig::{ClusterRig, DcnRig, start_dcn};
use crate::support::sim::{Market, inject, stats};
use crate::support::wait::{hold, wait_book, wait_until};
use crate::support::{Cleanup, Process};

const OPTION: &str = "SIM0-260626-10000-C";
const OPTIONS: &str = "binance.com-vanilla-options";

#[test]
fn an_options_snapshot_alone_is_not_served_until_the_stream_confirms_it() {
    let cluster = format!("e2etrustoptions{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    // Rate 0: no event comes until the test asks for one.
    let sim = Process::start(&["sim", "--port", "0", "--markets", "1", "--rate", "0"]);
    let markets: Vec<Market> = vec![(OPTIONS, "options", OPTION.into())];
    let _dcn = start_dcn(&cluster, &sim.address, &markets, &[]);
    let limit = Duration::from_secs(30);
    wait_until(limit, "the options snapshot served to the DCN", || {
        let served = stats(&sim.address)["rest"]["options"]["requests"]
            .as_u64()
            .unwrap_or(0);
        (served > 0)
            .then_some(())
            .ok_or(format!("{served} requests"))
    });
    let mut reader = wait_until(limit, "segment", || {
        ClusterReader::open(&cluster).map_err(|e| e.to_string())
    });
    // Not a wait for a state: two quiet seconds are the scenario, in which a snapshot-only
    // options book must stay unserved.
    hold(
        Duration::from_secs(2),
        "served on its snapshot alone",
        || match reader.info(OPTIONS, OPTION) {
            Ok(info) if info.status == BookStatus::Synced => Err(format!("{info:?}")),
            _ => Ok(()),
        },
    );
    let answer = post_json(&sim.address, "/sim/advance", &json!({"events": 1}));
    assert!(answer.is_object(), "{answer}");
    let info = wait_book(&mut reader, (OPTIONS, OPTION), limit, "confirmed", |info| {
        info.status == BookStatus::Synced
    });
    assert!(info.event_time_ms > 0, "the event's own time");
    assert_eq!(
        info.freshness,
        Freshness::empty(),
        "an event's time, not a snapshot's"
    );
}

#[test]
fn max_age_ms_refuses_the_books_of_a_dcn_whose_events_arrive_late() {
    let markets: Vec<Market> = vec![("binance.com", "spot", "SIM0USDT".into())];
    let rig = DcnRig::with("lag", "20", &markets, &["--audit-interval-secs", "0"]);
    let fresh = "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=5&max_age_ms=1500";
    let answer = get_json(&rig.dcn.address, fresh);
    assert_eq!(answer["result"], "OK", "fresh before the lag: {answer}");
    // Every event from now on reaches the DCN 3 s after the exchange made it.
    rig.inject(
        json!({"fault": "lag", "family": "spot", "symbol": "SIM0USDT",
                      "lag_ms": 3000, "duration_ms": 120_000}),
    );
    let limit = Duration::from_secs(20);
    let plain = "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=5";
    let lagging = wait_until(limit, "late events applied", || {
        let answer = get_json(&rig.dcn.address, plain);
        let age = answer["age_ms"].as_f64().unwrap_or(0.0);
        let received = answer["receive_age_ms"].as_f64().unwrap_or(f64::MAX);
        // Late events keep arriving (20 a second): received recently, yet old.
        (age >= 2500.0 && received < 1000.0)
            .then_some(answer.clone())
            .ok_or(format!("{answer}"))
    });
    assert_eq!(
        lagging["result"], "OK",
        "served without max_age_ms: {lagging}"
    );
    // Every read of the DCN (get_books is restapi's alone) refuses by the exchange's time.
    for read in &READS[..5] {
        let refused = get_json(&rig.dcn.address, &format!("{read}&max_age_ms=1500"));
        assert_eq!(refused["error_id"], "#1103", "{read}: {refused}");
        if let Err(error) = lag_of(&get_json(&rig.dcn.address, read)) {
            panic!("{read}: {error}");
        }
    }
    let bbo = "/get_bbo?exchange=binance.com&markets=SIM0USDT";
    if let Err(error) = lag_of(&get_json(&rig.dcn.address, bbo)) {
        panic!("{bbo}: {error}");
    }
    rig.alive();
}

/// Every read of SIM0USDT that takes `max_age_ms` (fill and statistics with what they need).
const READS: [&str; 6] = [
    "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=5",
    "/get_bids?exchange=binance.com&market=SIM0USDT&limit_count=5",
    "/get_book?exchange=binance.com&market=SIM0USDT&limit_count=5",
    "/get_fill_price?exchange=binance.com&market=SIM0USDT&side=buy&quantity=0.001",
    "/get_depth_stats?exchange=binance.com&market=SIM0USDT",
    "/get_books?exchange=binance.com&markets=SIM0USDT&limit_count=5",
];

/// The answer for SIM0USDT in `answer`: its `get_books` entry, its `get_bbo` entry, or itself.
fn entry(answer: &Value) -> &Value {
    if let Some(book) = answer["books"].get("SIM0USDT") {
        return book;
    }
    answer["bbo"].get("SIM0USDT").unwrap_or(answer)
}

/// The ages of a book the DCN applies ~3 s after the exchange made it: `age_ms` (from the
/// exchange's time) exceeds `receive_age_ms` (from the DCN's receipt) by that lag, whatever the
/// machine's load, since both count to the same moment.
fn lag_of(answer: &Value) -> Result<f64, String> {
    let book = entry(answer);
    match (book["age_ms"].as_f64(), book["receive_age_ms"].as_f64()) {
        (Some(age), Some(received)) if age - received >= 2500.0 => Ok(age - received),
        _ => Err(format!("not lagging: {answer}")),
    }
}

#[test]
fn every_read_refuses_a_lagging_dcns_book_from_shared_memory_and_over_http() {
    let mut rig = ClusterRig::start_with_sim("trustlag", 1, &["--rate", "20"], 0, &[]);
    // No audit: its snapshot would not lag, and this test is about the stream's lag alone.
    rig.add_dcn_with(&["--audit-interval-secs", "0"]);
    rig.wait_pods(3);
    let books: Vec<Market> = vec![("binance.com", "spot", "SIM0USDT".into())];
    rig.create(&books, 1);
    let limit = Duration::from_secs(60);
    rig.wait_running(&books, 1, None, limit);
    // `local` reads the DCN's segment, `remote` asks the DCN's endpoints of the same names.
    let restapis = [rig.local.address.clone(), rig.remote.address.clone()];
    for restapi in &restapis {
        rig.wait_served(restapi, READS[0], limit);
    }
    // Every event from now on reaches the DCN 3 s after the exchange made it, for longer than
    // the test runs.
    inject(
        &rig.sim.address,
        &json!({"fault": "lag", "family": "spot", "symbol": "SIM0USDT",
                "lag_ms": 3000, "duration_ms": 300_000}),
    );
    wait_until(limit, "late events applied", || {
        lag_of(&get_json_auth(&restapis[0], READS[0], rig.token()))
    });
    for restapi in &restapis {
        for read in READS {
            let refused = get_json_auth(restapi, &format!("{read}&max_age_ms=1500"), rig.token());
            assert_eq!(
                entry(&refused)["error_id"],
                "#1103",
                "{restapi}{read}: {refused}"
            );
            let served = get_json_auth(restapi, read, rig.token());
            assert_eq!(served["result"], "OK", "{restapi}{read}: {served}");
            if let Err(error) = lag_of(&served) {
                panic!("{restapi}{read}: {error}");
            }
        }
        // get_bbo takes no max_age_ms, but its ages say the same.
        let bbo = "/get_bbo?exchange=binance.com&markets=SIM0USDT";
        if let Err(error) = lag_of(&get_json_auth(restapi, bbo, rig.token())) {
            panic!("{restapi}{bbo}: {error}");
        }
    }
}
