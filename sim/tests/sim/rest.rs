use hyper::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestSim, config, mantissa, top_level_keys};

fn levels(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .expect("levels")
        .iter()
        .map(|level| {
            (
                level[0].as_str().expect("price").to_owned(),
                level[1].as_str().expect("quantity").to_owned(),
            )
        })
        .collect()
}

fn assert_best_first(bids: &[(String, String)], asks: &[(String, String)]) {
    assert!(
        bids.windows(2)
            .all(|w| mantissa(&w[0].0) > mantissa(&w[1].0)),
        "bids descend"
    );
    assert!(
        asks.windows(2)
            .all(|w| mantissa(&w[0].0) < mantissa(&w[1].0)),
        "asks ascend"
    );
    assert!(
        mantissa(&bids[0].0) < mantissa(&asks[0].0),
        "book is not crossed"
    );
}

fn decimals(text: &str) -> usize {
    text.split_once('.')
        .map_or(0, |(_, fraction)| fraction.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_snapshots_have_the_spot_shape_and_fixed_decimals() {
    let sim = TestSim::start(config()).await;
    let response = sim.get("/api/v3/depth?symbol=SIM0USDT&limit=1000").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        top_level_keys(&response.body),
        ["lastUpdateId", "bids", "asks"]
    );
    let body = response.json();
    let (bids, asks) = (levels(&body["bids"]), levels(&body["asks"]));
    assert_eq!((bids.len(), asks.len()), (1000, 1000));
    assert_best_first(&bids, &asks);
    for (price, quantity) in bids.iter().chain(&asks) {
        assert_eq!(
            (decimals(price), decimals(quantity)),
            (8, 8),
            "{price} {quantity}"
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_and_options_snapshots_have_their_own_field_order() {
    let sim = TestSim::start(config()).await;
    let futures = sim.get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000").await;
    assert_eq!(futures.status, StatusCode::OK, "{}", futures.body);
    assert_eq!(
        top_level_keys(&futures.body),
        ["lastUpdateId", "E", "T", "bids", "asks"]
    );
    let body = futures.json();
    let (bids, asks) = (levels(&body["bids"]), levels(&body["asks"]));
    assert_best_first(&bids, &asks);
    assert_eq!((decimals(&bids[0].0), decimals(&bids[0].1)), (2, 3));

    let options = sim
        .get("/eapi/v1/depth?symbol=SIM0-260626-10000-C&limit=1000")
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    assert_eq!(
        top_level_keys(&options.body),
        ["bids", "asks", "T", "lastUpdateId"]
    );
    let body = options.json();
    assert_eq!(decimals(body["asks"][0][0].as_str().unwrap_or_default()), 3);
    assert_eq!(decimals(body["asks"][0][1].as_str().unwrap_or_default()), 4);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_differ_per_family() {
    let sim = TestSim::start(config()).await;
    let spot = sim.get("/api/v3/depth?symbol=SIM1USDT").await.json();
    assert_eq!(spot["bids"].as_array().map(Vec::len), Some(100));
    let futures = sim.get("/fapi/v1/depth?symbol=SIM1USDT").await.json();
    assert_eq!(futures["asks"].as_array().map(Vec::len), Some(500));
    let options = sim
        .get("/eapi/v1/depth?symbol=SIM1-260626-10500-C")
        .await
        .json();
    assert_eq!(options["asks"].as_array().map(Vec::len), Some(100));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_symbols_and_limits_get_binances_errors() {
    let sim = TestSim::start(config()).await;
    let cases = [
        ("/api/v3/depth?symbol=NOPE", -1121, "Invalid symbol."),
        ("/fapi/v1/depth?symbol=sim0usdt", -1121, "Invalid symbol."),
        (
            "/api/v3/depth",
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            "/fapi/v1/depth?symbol=SIM0USDT&limit=7",
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '5, 10, 20, 50, 100, 500, 1000'.",
        ),
        (
            "/eapi/v1/depth?symbol=SIM0-260626-10000-C&limit=5",
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '10, 20, 50, 100, 500, 1000'.",
        ),
        (
            "/api/v3/depth?symbol=SIM0USDT&limit=abc",
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
        ),
    ];
    for (path, code, msg) in cases {
        let response = sim.get(path).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            response.json(),
            json!({ "code": code, "msg": msg }),
            "{path}"
        );
        assert!(
            response.header_u64("x-mbx-used-weight-1m").is_some(),
            "{path}"
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_limits_above_5000_are_truncated_not_refused() {
    let sim = TestSim::start(config().book_depth(100)).await;
    let response = sim.get("/api/v3/depth?symbol=SIM0USDT&limit=9999").await;
    assert_eq!(response.status, StatusCode::OK);
    let bids = response.json()["bids"].as_array().map_or(0, Vec::len);
    assert!(bids >= 90, "the whole book, got {bids}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_exchange_info_answer_per_family() {
    let sim = TestSim::start(config()).await;
    for prefix in ["/api/v3", "/fapi/v1", "/eapi/v1"] {
        let ping = sim.get(&format!("{prefix}/ping")).await;
        assert_eq!((ping.status, ping.body.as_str()), (StatusCode::OK, "{}"));
    }
    let spot = sim.get("/api/v3/exchangeInfo").await.json();
    let symbol = &spot["symbols"][0];
    assert_eq!(symbol["symbol"], "SIM0USDT");
    let filters = symbol["filters"].as_array().expect("filters");
    let tick = filters
        .iter()
        .find(|f| f["filterType"] == "PRICE_FILTER")
        .expect("PRICE_FILTER");
    let lot = filters
        .iter()
        .find(|f| f["filterType"] == "LOT_SIZE")
        .expect("LOT_SIZE");
    assert_eq!(
        (&tick["tickSize"], &lot["stepSize"]),
        (&json!("0.01000000"), &json!("0.00100000"))
    );
    assert_eq!(spot["rateLimits"][0]["limit"], 6000);

    let futures = sim
        .get("/fapi/v1/exchangeInfo?symbol=SIM0USDT")
        .await
        .json();
    assert_eq!(futures["symbols"][0]["filters"][0]["tickSize"], "0.01");
    let options = sim.get("/eapi/v1/exchangeInfo").await.json();
    assert_eq!(options["optionSymbols"][1]["symbol"], "SIM1-260626-10500-C");
    let unknown = sim.get("/fapi/v1/exchangeInfo?symbol=XUSDT").await;
    assert_eq!(unknown.json()["code"], -1121);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snapshot_price_is_a_multiple_of_the_tick() {
    let sim = TestSim::start(config().markets(4)).await;
    for (prefix, family_key) in [
        ("/api/v3", "symbols"),
        ("/fapi/v1", "symbols"),
        ("/eapi/v1", "optionSymbols"),
    ] {
        let info = sim.get(&format!("{prefix}/exchangeInfo")).await.json();
        for symbol in info[family_key].as_array().expect("symbols") {
            let name = symbol["symbol"].as_str().expect("symbol");
            let tick = mantissa(symbol["filters"][0]["tickSize"].as_str().expect("tick"));
            let step = mantissa(symbol["filters"][1]["stepSize"].as_str().expect("step"));
            let depth = sim
                .get(&format!("{prefix}/depth?symbol={name}&limit=100"))
                .await
                .json();
            for level in depth["bids"]
                .as_array()
                .into_iter()
                .chain(depth["asks"].as_array())
                .flatten()
            {
                let price = mantissa(level[0].as_str().expect("price"));
                let quantity = mantissa(level[1].as_str().expect("quantity"));
                assert_eq!((price % tick, quantity % step), (0, 0), "{name}: {level}");
            }
        }
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_options_snapshot_lags_the_stream_when_configured() {
    // A lag longer than the simulator has existed: the cached snapshot is still the initial
    // book, whatever happened since, while futures snapshots are live.
    let lag = std::time::Duration::from_secs(3600);
    let sim = TestSim::start(config().options_snapshot_lag(lag)).await;
    let initial = sim.latest_update_id("options", "SIM0-260626-10000-C").await;
    sim.advance(20).await;
    let live = sim.latest_update_id("options", "SIM0-260626-10000-C").await;
    assert!(live > initial);
    let options = sim
        .get("/eapi/v1/depth?symbol=SIM0-260626-10000-C&limit=1000")
        .await
        .json();
    assert_eq!(
        options["lastUpdateId"], initial,
        "served from the lagging cache"
    );
    let futures_live = sim.latest_update_id("futures", "SIM0USDT").await;
    let futures = sim
        .get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000")
        .await
        .json();
    assert_eq!(futures["lastUpdateId"], futures_live, "only options lag");
    sim.stop().await;
}
