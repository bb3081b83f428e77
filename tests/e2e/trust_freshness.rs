//! Honest freshness (issue 16) against the simulator: an options snapshot, which lags the stream,
//! is not served until a live event confirms it, and `max_age_ms` refuses the books of a DCN
//! whose events arrive late however recently it received them.

use std::time::Duration;

use serde_json::json;
use ubdcc_shm::{BookStatus, ClusterReader, Freshness};

use crate::support::http::{get_json, post_json};
use crate::support::rig::{DcnRig, start_dcn};
use crate::support::sim::{Market, stats};
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
                      "lag_ms": 3000, "duration_ms": 30000}),
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
    let refused = get_json(&rig.dcn.address, fresh);
    assert_eq!(refused["error_id"], "#1103", "{refused}");
    rig.alive();
}
