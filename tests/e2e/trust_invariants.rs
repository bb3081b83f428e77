//! The invariants of issue 16 against the simulator: a book the exchange crossed by removing
//! levels without an event is never served crossed (out of sync at once, resynced), and a
//! stream whose ids went backwards is a resync, not a book frozen on ignored events.

use std::time::Duration;

use serde_json::json;
use ubdcc_shm::{BookStatus, LevelQuery};

use crate::support::rig::DcnRig;
use crate::support::sim::{Market, market_fault};
use crate::support::truth::assert_shm_side_equals_truth;
use crate::support::wait::{SHM_POLL, wait_until_every};

const SPOT: (&str, &str, &str) = ("binance.com", "spot", "SIM0USDT");

#[test]
fn a_book_crossed_by_vanished_levels_is_never_served_and_resyncs() {
    let markets: Vec<Market> = vec![("binance.com", "spot", "SIM0USDT".into())];
    // No audits: the crossing itself must be caught, not the vanished levels before it.
    let mut rig = DcnRig::with("crossed", "20", &markets, &["--audit-interval-secs", "0"]);
    let before = rig.info(SPOT).expect("book");
    rig.inject(market_fault(
        "vanish_levels",
        SPOT,
        json!({"side": "ask", "count": 3}),
    ));
    // A reader polling both sides in one consistent read meanwhile: every book it is served is
    // uncrossed; the crossed one is refused with an error.
    let (mut served, mut refused) = (0u32, 0u32);
    let (exchange, _, symbol) = SPOT;
    wait_until_every(
        SHM_POLL / 4,
        Duration::from_secs(60),
        "resynced after the crossing",
        || {
            match rig.reader.get_book(exchange, symbol, &LevelQuery::ALL) {
                Ok((info, bids, asks)) => {
                    served += 1;
                    if let (Some(bid), Some(ask)) = (bids.first(), asks.first()) {
                        assert!(
                            bid.price < ask.price,
                            "served crossed at {}: bid {} ask {}",
                            info.last_update_id,
                            bid.price,
                            ask.price
                        );
                    }
                }
                Err(_) => refused += 1,
            }
            let info = rig.info(SPOT).expect("book");
            (info.resyncs > before.resyncs && info.status == BookStatus::Synced)
                .then_some(())
                .ok_or(format!("{info:?}"))
        },
    );
    let after = rig.info(SPOT).expect("book");
    assert_eq!(after.gaps, before.gaps, "a crossing is not a gap");
    assert!(served > 0, "the reader was served meanwhile");
    println!("served {served}, refused {refused}");
    for side in [ubdcc_shm::Side::Asks, ubdcc_shm::Side::Bids] {
        assert_shm_side_equals_truth(&mut rig.reader, &rig.sim.address, SPOT, side);
    }
    rig.alive();
}

#[test]
fn a_stream_whose_ids_went_backwards_resyncs_instead_of_freezing() {
    let markets: Vec<Market> = vec![("binance.com", "spot", "SIM0USDT".into())];
    // A silence check too long to be what resyncs the book: the first event after the reset is
    // older by id and newer by time than the book's last, ids going backwards at once. (At 20
    // events a second, the fallback, 1 000 ignored events in a row, would take 50 s.)
    let args = ["--audit-interval-secs", "0", "--book-silence-secs", "600"];
    let mut rig = DcnRig::with("backwards", "20", &markets, &args);
    let before = rig.info(SPOT).expect("book");
    let reply = rig.inject(market_fault("reset_ids", SPOT, json!({})));
    let reset = reply["markets"][0]["after_update_id"]
        .as_u64()
        .expect("after_update_id");
    wait_until_every(
        SHM_POLL,
        Duration::from_secs(30),
        "resynced onto the new ids",
        || {
            let info = rig.info(SPOT).expect("book");
            (info.resyncs > before.resyncs
                && info.status == BookStatus::Synced
                && info.last_update_id > reset
                && info.last_update_id < before.last_update_id)
                .then_some(())
                .ok_or(format!("{info:?}"))
        },
    );
    let after = rig.info(SPOT).expect("book");
    assert_eq!(after.gaps, before.gaps, "ids going backwards are not a gap");
    for side in [ubdcc_shm::Side::Asks, ubdcc_shm::Side::Bids] {
        assert_shm_side_equals_truth(&mut rig.reader, &rig.sim.address, SPOT, side);
    }
    rig.alive();
}
