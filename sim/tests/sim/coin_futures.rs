//! COIN-M futures: `/dapi/v1` REST with its own shapes and weight host, `dstream` streams under
//! `/dstream` (beside the REST paths, so one base URL reaches both), and the faults of the
//! other families reaching COIN-M connections only.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::support::{Ending, TestSim, config, ids, top_level_keys, unwrap_envelope};

/// The number of digits after the point (0 for whole contracts).
fn decimals(text: &str) -> usize {
    text.split_once('.')
        .map_or(0, |(_, fraction)| fraction.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coin_m_snapshots_have_their_shape_at_the_root_and_under_dstream() {
    let sim = TestSim::start(config()).await;
    let mut used = Vec::new();
    for path in [
        "/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000",
        "/dstream/dapi/v1/depth?symbol=BTCUSD_260626&limit=1000",
    ] {
        let response = sim.get(path).await;
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
        assert_eq!(
            top_level_keys(&response.body),
            ["lastUpdateId", "symbol", "pair", "E", "T", "bids", "asks"],
            "{path}"
        );
        let body = response.json();
        assert_eq!(body["pair"], "BTCUSD", "{path}");
        let best_bid = &body["bids"][0];
        let (price, quantity) = (
            best_bid[0].as_str().unwrap_or_default(),
            best_bid[1].as_str().unwrap_or_default(),
        );
        assert_eq!(decimals(quantity), 0, "whole contracts: {quantity}");
        assert!(decimals(price) >= 1, "{price}");
        assert_eq!(body["asks"].as_array().map(Vec::len), Some(1000));
        used.push(response.header_u64("x-mbx-used-weight-1m"));
    }
    // Both paths are one host with one budget: 20 per 1000-level snapshot.
    assert_eq!(used, [Some(20), Some(40)]);
    let stats = sim.stats().await;
    assert_eq!(stats["rest"]["coin_futures"]["weight_limit_1m"], 2400);
    assert_eq!(
        stats["rest"]["futures"]["snapshot_requests"],
        json!({}),
        "USD-M's host is another: {stats}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coin_m_limits_and_listing_follow_the_dapi_pages() {
    let sim = TestSim::start(config()).await;
    // Two markets per family: BTC's perpetual and quarterly, no ETH.
    let unlisted = sim.get("/dapi/v1/depth?symbol=ETHUSD_PERP").await;
    assert_eq!(unlisted.json()["code"], -1121, "{}", unlisted.body);
    let default = sim.get("/dapi/v1/depth?symbol=BTCUSD_PERP").await.json();
    assert_eq!(default["bids"].as_array().map(Vec::len), Some(500));
    let refused = sim
        .get("/dapi/v1/depth?symbol=BTCUSD_PERP&limit=5000")
        .await
        .json();
    assert_eq!(
        refused,
        json!({"code": -1100, "msg": "Illegal characters found in parameter 'limit'; legal range is '5, 10, 20, 50, 100, 500, 1000'."})
    );

    let info = sim.get("/dstream/dapi/v1/exchangeInfo").await.json();
    assert_eq!(info["rateLimits"][0]["limit"], 2400);
    let symbols = info["symbols"].as_array().cloned().unwrap_or_default();
    let contracts: Vec<(&str, &str, &str)> = symbols
        .iter()
        .map(|s| {
            (
                s["symbol"].as_str().unwrap_or_default(),
                s["contractType"].as_str().unwrap_or_default(),
                s["contractStatus"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        contracts,
        [
            ("BTCUSD_PERP", "PERPETUAL", "TRADING"),
            ("BTCUSD_260626", "CURRENT_QUARTER", "TRADING")
        ]
    );
    let perpetual = &symbols[0];
    assert_eq!(
        (
            &perpetual["pair"],
            &perpetual["marginAsset"],
            &perpetual["quoteAsset"]
        ),
        (&json!("BTCUSD"), &json!("BTC"), &json!("USD"))
    );
    assert_eq!(perpetual.get("status"), None, "COIN-M says contractStatus");
    let one = sim
        .get("/dapi/v1/exchangeInfo?symbol=BTCUSD_260626")
        .await
        .json();
    assert_eq!(one["symbols"][0]["deliveryDate"], 1_782_460_800_000_u64);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dstream_connections_carry_coin_m_events_with_the_pair() {
    let sim = TestSim::start(config()).await;
    let mut combined = sim
        .ws("/dstream/stream?streams=btcusd_perp@depth/btcusd_260626@depth@100ms")
        .await;
    let mut raw = sim.ws("/dstream/ws/btcusd_perp@depth@500ms").await;
    sim.advance(2).await;
    let mut previous: Option<u64> = None;
    for (index, frame) in combined.next_jsons(4).await.iter().enumerate() {
        let (stream, data) = unwrap_envelope(frame);
        let (expected_stream, expected_symbol) = if index % 2 == 0 {
            ("btcusd_perp@depth", "BTCUSD_PERP")
        } else {
            ("btcusd_260626@depth@100ms", "BTCUSD_260626")
        };
        assert_eq!(
            (stream, &data["s"], &data["ps"]),
            (expected_stream, &json!(expected_symbol), &json!("BTCUSD"))
        );
        if index % 2 == 0 {
            if let Some(previous) = previous {
                assert_eq!(data["pu"].as_u64(), Some(previous), "pu chains");
            }
            previous = Some(ids(data).1);
        }
    }
    let text = raw.next_text().await;
    assert_eq!(
        top_level_keys(&text),
        ["e", "E", "T", "s", "ps", "U", "u", "pu", "b", "a"],
        "{text}"
    );

    // COIN-M streams are not spot's nor USD-M's; dstream has no options-style speed gaps.
    for refused in [
        "/stream?streams=btcusd_perp@depth",
        "/public/stream?streams=btcusd_perp@depth",
        "/dstream/stream?streams=sim0usdt@depth",
        "/dstream/stream?streams=btcusd_perp@depth@250ms",
    ] {
        let refusal = sim.ws_refused(refused).await;
        assert!(
            matches!(&refusal, Some((StatusCode::BAD_REQUEST, body)) if body.contains("Invalid stream name")),
            "{refused}: {refusal:?}"
        );
    }
    // Its requests take unsigned integer ids, as fstream's do.
    let mut ws = sim.ws("/dstream/ws").await;
    let reply = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["btcusd_perp@depth"], "id": "a1"}))
        .await;
    assert_eq!(reply["error"]["code"], 2, "{reply}");
    let reply = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["btcusd_perp@depth"], "id": 1}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let stats = sim.stats().await;
    assert_eq!(
        stats["websocket"]["dstream"]["connections_open"], 3,
        "{stats}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coin_m_drop_breaks_the_pu_chain() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/dstream/ws/btcusd_260626@depth").await;
    let reply = sim
        .fault(json!({"fault": "drop", "family": "coin_futures", "symbol": "BTCUSD_260626", "count": 1}))
        .await;
    assert_eq!(reply["markets"][0]["family"], "coin_futures", "{reply}");
    let after = reply["markets"][0]["after_update_id"]
        .as_u64()
        .unwrap_or_default();
    sim.advance(2).await;
    let event = ws.next_json().await;
    assert!(
        event["pu"].as_u64() > Some(after),
        "the dropped event's u is missing from the chain: {event}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_faults_of_coin_m_reach_dstream_only() {
    let sim = TestSim::start(config()).await;
    let mut coin_m = sim.ws("/dstream/stream?streams=btcusd_perp@depth").await;
    let mut usd_m = sim.ws("/public/ws/sim0usdt@depth").await;
    sim.fault(json!({"fault": "server_shutdown", "family": "coin_futures", "close_after_ms": 0}))
        .await;
    let frame = coin_m.next_json().await;
    assert_eq!(unwrap_envelope(&frame).1["e"], "serverShutdown");
    assert!(matches!(coin_m.ending().await, Ending::Closed(_)));

    let mut coin_m = sim.ws("/dstream/ws/btcusd_perp@depth").await;
    sim.fault(json!({"fault": "disconnect", "family": "coin_futures"}))
        .await;
    assert!(matches!(coin_m.ending().await, Ending::Cut));
    sim.advance(1).await;
    assert_eq!(
        usd_m.next_json().await["e"],
        "depthUpdate",
        "USD-M is untouched"
    );
    let stats = sim.stats().await;
    let dstream = &stats["websocket"]["dstream"];
    assert_eq!(
        (
            &dstream["server_shutdowns_sent"],
            &dstream["disconnected_by_fault"]
        ),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    assert_eq!(stats["websocket"]["fstream"]["disconnected_by_fault"], 0);
    sim.stop().await;
}

/// As on Binance, a `SUBSCRIBE` naming an unlisted COIN-M contract is accepted and stays silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_coin_m_stream_is_accepted_and_silent() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/dstream/stream").await;
    let reply = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["xrpusd_perp@depth", "btcusd_perp@depth"], "id": 5}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 5}));
    sim.advance(1).await;
    let frame: Value = ws.next_json().await;
    assert_eq!(unwrap_envelope(&frame).0, "btcusd_perp@depth");
    sim.stop().await;
}
