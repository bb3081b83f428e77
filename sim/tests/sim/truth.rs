use hyper::StatusCode;
use serde_json::Value;

use crate::support::{ReferenceBook, SyncRules, TestSim, config, ids, mantissa, unwrap_envelope};

/// One family's market 0: its stream path, snapshot path, truth query and sync rules.
struct Case {
    family: &'static str,
    symbol: &'static str,
    stream: &'static str,
    snapshot: &'static str,
    rules: SyncRules,
}

const CASES: [Case; 4] = [
    Case {
        family: "spot",
        symbol: "SIM0USDT",
        stream: "/stream?streams=sim0usdt@depth",
        snapshot: "/api/v3/depth?symbol=SIM0USDT&limit=1000",
        rules: SyncRules::Spot,
    },
    Case {
        family: "futures",
        symbol: "SIM0USDT",
        stream: "/public/stream?streams=sim0usdt@depth@100ms",
        snapshot: "/fapi/v1/depth?symbol=SIM0USDT&limit=1000",
        rules: SyncRules::Futures,
    },
    Case {
        family: "options",
        symbol: "SIM0-260626-10000-C",
        stream: "/public/stream?streams=sim0-260626-10000-c@depth@500ms",
        snapshot: "/eapi/v1/depth?symbol=SIM0-260626-10000-C&limit=1000",
        rules: SyncRules::Futures,
    },
    Case {
        family: "coin_futures",
        symbol: "BTCUSD_PERP",
        stream: "/dstream/stream?streams=btcusd_perp@depth",
        snapshot: "/dstream/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000",
        rules: SyncRules::Futures,
    },
];

fn text_levels(levels: &Value) -> Vec<(String, String)> {
    levels
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap_or_default().to_owned(),
                l[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_stream_events_to_a_snapshot_reproduces_the_truth() {
    let sim = TestSim::start(config()).await;
    for case in &CASES {
        let mut ws = sim.ws(case.stream).await;
        // Buffer a few events, take the snapshot, then let the book move on.
        sim.advance(5).await;
        let snapshot = sim.get(case.snapshot).await.json();
        sim.advance(150).await;
        let events: Vec<Value> = ws
            .next_jsons(155)
            .await
            .iter()
            .map(|frame| unwrap_envelope(frame).1.clone())
            .collect();
        let mut book = ReferenceBook::from_snapshot(&snapshot);
        // The snapshot's worst prices bound what a client can know: beyond them, levels that
        // never change are never learned (`docs/binance-protocol.md` §4.1 step 7).
        let bid_boundary = book.bids.keys().next().copied().expect("bids");
        let ask_boundary = book.asks.keys().next_back().copied().expect("asks");
        book.sync_and_apply(&events, case.rules);
        let last_u = ids(events.last().expect("events")).1;
        assert_eq!(book.last_update_id, last_u);

        let truth_response = sim
            .get(&format!(
                "/sim/truth?family={}&symbol={}&update_id={last_u}",
                case.family, case.symbol
            ))
            .await;
        assert_eq!(
            truth_response.status,
            StatusCode::OK,
            "{}",
            truth_response.body
        );
        let truth = truth_response.json();
        assert_eq!(truth["update_id"], last_u);
        let within = |levels: &Value, bids: bool, boundary: u128| -> Vec<(String, String)> {
            let mut levels: Vec<_> = text_levels(levels)
                .into_iter()
                .filter(|(p, _)| {
                    if bids {
                        mantissa(p) >= boundary
                    } else {
                        mantissa(p) <= boundary
                    }
                })
                .collect();
            levels.sort_by_key(|(p, _)| mantissa(p));
            levels
        };
        assert_eq!(
            book.side_within(true, bid_boundary),
            within(&truth["bids"], true, bid_boundary),
            "{} bids",
            case.family
        );
        assert_eq!(
            book.side_within(false, ask_boundary),
            within(&truth["asks"], false, ask_boundary),
            "{} asks",
            case.family
        );
        // The truth holds levels beyond a 1000-level window: orphan pruning is exercised.
        assert!(truth["bids"].as_array().map_or(0, Vec::len) > 1000);
        assert!(truth["asks"].as_array().map_or(0, Vec::len) > 1000);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_the_top_of_the_truth_at_its_last_update_id() {
    let sim = TestSim::start(config()).await;
    sim.advance(20).await;
    for case in &CASES {
        let snapshot = sim.get(case.snapshot).await.json();
        let id = snapshot["lastUpdateId"].as_u64().expect("lastUpdateId");
        let truth = sim
            .get(&format!(
                "/sim/truth?family={}&symbol={}&update_id={id}",
                case.family, case.symbol
            ))
            .await
            .json();
        assert_eq!(
            text_levels(&snapshot["bids"]),
            text_levels(&truth["bids"])[..1000].to_vec()
        );
        assert_eq!(
            text_levels(&snapshot["asks"]),
            text_levels(&truth["asks"])[..1000].to_vec()
        );
        let latest = sim
            .get(&format!(
                "/sim/truth/latest?family={}&symbol={}",
                case.family, case.symbol
            ))
            .await
            .json();
        assert_eq!(
            latest, truth,
            "{}: nothing moved since the snapshot",
            case.family
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truth_refuses_old_future_and_mid_event_ids() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws/sim1usdt@depth").await;
    sim.advance(30).await;
    let events = ws.next_jsons(30).await;
    let latest = sim.latest_update_id("spot", "SIM1USDT").await;
    let base = "/sim/truth?family=spot&symbol=SIM1USDT&update_id=";
    let future = sim.get(&format!("{base}{}", latest + 1)).await;
    assert_eq!(future.status, StatusCode::NOT_FOUND);
    assert!(
        future.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("in the future")),
        "{}",
        future.body
    );
    let old = sim.get(&format!("{base}1")).await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
    assert!(
        old.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("too old")),
        "{}",
        old.body
    );
    let spanning = events.iter().map(ids).find(|(first, last)| last > first);
    let (first, _) = spanning.expect("some event spans several ids");
    let inside = sim.get(&format!("{base}{first}")).await;
    assert_eq!(inside.status, StatusCode::NOT_FOUND);
    assert!(
        inside.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("inside the event")),
        "{}",
        inside.body
    );
    let unknown = sim.get("/sim/truth/latest?family=spot&symbol=NOPE").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_family = sim
        .get("/sim/truth/latest?family=margin&symbol=SIM0USDT")
        .await;
    assert_eq!(bad_family.status, StatusCode::BAD_REQUEST);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_zero_crosses_the_hundred_digit_boundary_on_both_sides() {
    let sim = TestSim::start(config()).await;
    for case in &CASES {
        let hundred = mantissa(&format!(
            "100.{}",
            "0".repeat(match case.family {
                "spot" => 8,
                "futures" | "coin_futures" => 2,
                _ => 3,
            })
        ));
        let mut bid_sides_mixed = false;
        let mut ask_sides_mixed = false;
        let (mut bid_above, mut bid_below, mut ask_above, mut ask_below) =
            (false, false, false, false);
        for _ in 0..40 {
            sim.advance(50).await;
            let truth = sim
                .get(&format!(
                    "/sim/truth/latest?family={}&symbol={}",
                    case.family, case.symbol
                ))
                .await
                .json();
            let bids: Vec<u128> = text_levels(&truth["bids"])
                .iter()
                .map(|(p, _)| mantissa(p))
                .collect();
            let asks: Vec<u128> = text_levels(&truth["asks"])
                .iter()
                .map(|(p, _)| mantissa(p))
                .collect();
            // Both digit counts on one side: the lexicographic-prune trap of `docs/binance-protocol.md` §7.
            bid_sides_mixed |=
                bids.iter().any(|&p| p >= hundred) && bids.iter().any(|&p| p < hundred);
            ask_sides_mixed |=
                asks.iter().any(|&p| p >= hundred) && asks.iter().any(|&p| p < hundred);
            bid_above |= bids[0] >= hundred;
            bid_below |= bids[0] < hundred;
            ask_above |= asks[0] >= hundred;
            ask_below |= asks[0] < hundred;
        }
        assert!(
            bid_sides_mixed && ask_sides_mixed,
            "{}: both sides straddle 100",
            case.family
        );
        assert!(
            bid_above && bid_below && ask_above && ask_below,
            "{}: best prices cross 100 both ways",
            case.family
        );
    }
    sim.stop().await;
}
