use hyper::StatusCode;
use serde_json::json;
use ubdcc_sim::Family;

use crate::support::{TestSim, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_used_weight_headers() {
    let sim = TestSim::start(config()).await;
    let ping = sim.get("/api/v3/ping").await;
    let after_ping = ping.header_u64("x-mbx-used-weight-1m").expect("1m header");
    assert_eq!(ping.header_u64("x-mbx-used-weight"), Some(after_ping));
    let depth = sim.get("/api/v3/depth?symbol=SIM0USDT&limit=1000").await;
    let after_depth = depth.header_u64("x-mbx-used-weight-1m").expect("1m header");
    // 50 more, unless a new minute began in between (then exactly 50).
    assert!(
        after_depth == after_ping + 50 || after_depth == 50,
        "{after_ping} → {after_depth}"
    );
    let futures = sim.get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000").await;
    assert!(
        futures
            .header_u64("x-mbx-used-weight-1m")
            .is_some_and(|w| w <= 21),
        "own budget"
    );
    let stats = sim.stats().await;
    assert_eq!(stats["rest"]["spot"]["snapshot_requests"]["SIM0USDT"], 1);
    assert_eq!(stats["rest"]["futures"]["snapshots_served"]["SIM0USDT"], 1);
    assert_eq!(stats["rest"]["spot"]["responses_429"], 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overspending_gets_429_and_continuing_gets_a_418_ban() {
    let sim = TestSim::start(config().weight_limit(Family::Spot, 100)).await;
    let path = "/api/v3/depth?symbol=SIM0USDT&limit=1000";
    // A minute boundary between requests resets the window, so spend until refused.
    let mut refused = None;
    for _ in 0..12 {
        let response = sim.get(path).await;
        if response.status != StatusCode::OK {
            refused = Some(response);
            break;
        }
        assert!(
            response
                .header_u64("x-mbx-used-weight-1m")
                .is_some_and(|w| w <= 100)
        );
    }
    let refused = refused.expect("a 429 within 12 requests of weight 50 against a limit of 100");
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.json()["code"], -1003);
    let retry_after = refused.header_u64("retry-after").expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The back-off lasts at least a second, so the next request lands inside it.
    let banned = sim.get(path).await;
    assert_eq!(banned.status, StatusCode::IM_A_TEAPOT, "{}", banned.body);
    assert_eq!(banned.header_u64("retry-after"), Some(120));
    assert!(
        banned.json()["msg"]
            .as_str()
            .is_some_and(|m| m.contains("banned until"))
    );
    let still_banned = sim.get("/api/v3/ping").await;
    assert_eq!(still_banned.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(
        sim.get("/fapi/v1/ping").await.status,
        StatusCode::OK,
        "other hosts are unaffected"
    );

    let stats = sim.stats().await;
    let spot = &stats["rest"]["spot"];
    assert_eq!(spot["responses_429"], 1);
    assert_eq!(spot["responses_418"], 2);
    assert_eq!(spot["bans"], 1);
    assert!(
        spot["max_used_weight_1m"]
            .as_u64()
            .is_some_and(|w| w <= 100)
    );
    assert!(
        spot["max_requested_weight_1m"]
            .as_u64()
            .is_some_and(|w| w > 100)
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_status_refuses_one_family_until_cleared() {
    let sim = TestSim::start(config()).await;
    sim.fault(
        json!({"fault": "rest_status", "family": "futures", "status": 418, "duration_ms": 600_000}),
    )
    .await;
    let refused = sim.get("/fapi/v1/depth?symbol=SIM0USDT").await;
    assert_eq!(refused.status, StatusCode::IM_A_TEAPOT);
    assert!(refused.header_u64("retry-after").is_some_and(|s| s > 500));
    assert_eq!(sim.get("/api/v3/ping").await.status, StatusCode::OK);
    sim.fault(json!({"fault": "rest_status", "status": 429, "duration_ms": 600_000}))
        .await;
    assert_eq!(
        sim.get("/api/v3/ping").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A forced 429 does not escalate: still 429, not 418.
    assert_eq!(
        sim.get("/api/v3/ping").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    sim.fault(json!({"fault": "clear"})).await;
    assert_eq!(sim.get("/fapi/v1/ping").await.status, StatusCode::OK);
    let bad = sim
        .post(
            "/sim/control",
            &json!({"fault": "rest_status", "status": 500, "duration_ms": 1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    sim.stop().await;
}
