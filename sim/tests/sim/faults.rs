use hyper::StatusCode;
use serde_json::{Value, json};

use crate::support::{Ending, TestSim, config, ids, unwrap_envelope};

/// The `after_update_id` of a market fault's reply.
fn after(reply: &Value) -> u64 {
    reply["markets"][0]["after_update_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no after_update_id: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_loses_exactly_the_next_events() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws/sim1usdt@depth").await;
    let reply = sim
        .fault(json!({"fault": "drop", "family": "spot", "symbol": "SIM1USDT", "count": 2}))
        .await;
    let after = after(&reply);
    sim.advance(4).await;
    let received = ws.next_jsons(2).await;
    let (first, _) = ids(&received[0]);
    // The two dropped events spanned at least one id each.
    assert!(first >= after + 3, "U {first} after {after}");
    assert_eq!(ids(&received[1]).0, ids(&received[0]).1 + 1);
    // The truth still has the dropped events: the book right after the first one exists.
    let truth = sim
        .get(&format!(
            "/sim/truth?family=spot&symbol=SIM1USDT&update_id={}",
            first - 1
        ))
        .await;
    assert_eq!(truth.status, StatusCode::OK, "{}", truth.body);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sends_an_event_twice_in_a_row() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/public/ws/sim1usdt@depth").await;
    let reply = sim
        .fault(json!({"fault": "duplicate", "family": "futures", "symbol": "SIM1USDT"}))
        .await;
    sim.advance(2).await;
    let received = ws.next_jsons(3).await;
    assert_eq!(received[0], received[1]);
    assert_eq!(ids(&received[0]).0, after(&reply) + 1);
    assert_eq!(received[2]["pu"].as_u64(), Some(ids(&received[0]).1));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_swaps_the_next_pair() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws/sim0usdt@depth").await;
    let reply = sim
        .fault(json!({"fault": "reorder", "family": "spot", "symbol": "SIM0USDT"}))
        .await;
    sim.advance(3).await;
    let received = ws.next_jsons(3).await;
    let [second, first, third] = [&received[0], &received[1], &received[2]];
    assert_eq!(ids(first).0, after(&reply) + 1);
    assert_eq!(ids(second).0, ids(first).1 + 1, "event k+1 arrives first");
    assert_eq!(ids(third).0, ids(second).1 + 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_precede_an_intact_event() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/stream?streams=sim0usdt@depth").await;
    let reply = sim
        .fault(json!({"fault": "malformed", "family": "spot", "symbol": "SIM0USDT", "count": 2}))
        .await;
    sim.advance(1).await;
    for _ in 0..2 {
        let text = ws.next_text().await;
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert!(
            text.starts_with("{\"stream\":\"sim0usdt@depth\",\"data\":{"),
            "{text}"
        );
    }
    let frame = ws.next_json().await;
    assert_eq!(ids(unwrap_envelope(&frame).1).0, after(&reply) + 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_loses_events_but_keeps_the_connection() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim
        .ws("/stream?streams=sim0usdt@depth/sim1usdt@depth")
        .await;
    let reply = sim
        .fault(json!({"fault": "silence", "family": "spot", "symbol": "SIM1USDT", "duration_ms": 600_000}))
        .await;
    let silenced_after = after(&reply);
    sim.advance(3).await;
    // SIM0 is not silenced; its three events arrive and nothing of SIM1 comes between them.
    for frame in ws.next_jsons(3).await {
        assert_eq!(unwrap_envelope(&frame).0, "sim0usdt@depth");
    }
    sim.fault(json!({"fault": "clear"})).await;
    sim.advance(1).await;
    let frames = ws.next_jsons(2).await;
    let (stream, data) = unwrap_envelope(&frames[1]);
    assert_eq!(stream, "sim1usdt@depth");
    assert!(
        ids(data).0 > silenced_after + 3,
        "the silenced events are lost"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cuts_only_the_connections_carrying_the_symbol() {
    let sim = TestSim::start(config()).await;
    let mut carrying = sim.ws("/ws/sim1usdt@depth").await;
    let mut other = sim.ws("/ws/sim0usdt@depth").await;
    let mut futures = sim.ws("/public/ws/sim1usdt@depth").await;
    sim.fault(json!({"fault": "disconnect", "family": "spot", "symbol": "SIM1USDT"}))
        .await;
    assert!(
        matches!(carrying.ending().await, Ending::Cut),
        "cut without a close frame"
    );
    sim.advance(1).await;
    assert_eq!(other.next_json().await["s"], "SIM0USDT");
    assert_eq!(
        futures.next_json().await["s"],
        "SIM1USDT",
        "futures SIM1USDT is another market"
    );

    sim.fault(json!({"fault": "disconnect"})).await;
    assert!(matches!(other.ending().await, Ending::Cut));
    assert!(matches!(futures.ending().await, Ending::Cut));
    let stats = sim.stats().await;
    assert_eq!(stats["websocket"]["spot"]["disconnected_by_fault"], 2);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_announces_itself_then_closes() {
    let sim = TestSim::start(config()).await;
    let mut combined = sim.ws("/stream?streams=sim0usdt@depth").await;
    let mut raw = sim.ws("/ws/sim1usdt@depth").await;
    let mut futures = sim.ws("/public/ws/sim1usdt@depth").await;
    sim.fault(json!({"fault": "server_shutdown", "family": "spot", "close_after_ms": 0}))
        .await;

    let frame = combined.next_json().await;
    let (stream, data) = unwrap_envelope(&frame);
    assert_eq!(stream, "!serverShutdown");
    assert_eq!(data["e"], "serverShutdown");
    assert!(data["E"].as_u64().is_some());
    assert!(
        matches!(combined.ending().await, Ending::Closed(Some(f)) if u16::from(f.code) == 1001)
    );

    let event = raw.next_json().await;
    assert_eq!(
        event["e"], "serverShutdown",
        "raw connections get the bare event"
    );
    assert!(matches!(raw.ending().await, Ending::Closed(_)));

    sim.advance(1).await;
    assert_eq!(
        futures.next_json().await["e"],
        "depthUpdate",
        "other venues are untouched"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_server_shutdown_a_connection_keeps_serving_until_it_closes() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/stream?streams=sim0usdt@depth").await;
    sim.fault(json!({"fault": "server_shutdown", "family": "spot", "close_after_ms": 500}))
        .await;
    let frame = ws.next_json().await;
    assert_eq!(unwrap_envelope(&frame).0, "!serverShutdown");
    sim.advance(1).await;
    let event = ws.next_json().await;
    assert_eq!(
        unwrap_envelope(&event).1["e"],
        "depthUpdate",
        "still serving: {event}"
    );
    assert!(matches!(ws.ending().await, Ending::Closed(Some(f)) if u16::from(f.code) == 1001));
    let stats = sim.stats().await;
    assert_eq!(
        stats["websocket"]["spot"]["server_shutdowns_sent"], 1,
        "{stats}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_snapshots_are_exact_past_books_then_fresh_again() {
    let sim = TestSim::start(config()).await;
    sim.advance(60).await;
    let latest = sim.latest_update_id("futures", "SIM0USDT").await;
    sim.fault(json!({"fault": "stale_snapshot", "family": "futures", "symbol": "SIM0USDT", "behind_events": 10}))
        .await;
    let stale = sim
        .get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000")
        .await
        .json();
    let stale_id = stale["lastUpdateId"].as_u64().expect("lastUpdateId");
    assert!(stale_id < latest, "{stale_id} < {latest}");
    let truth = sim
        .get(&format!(
            "/sim/truth?family=futures&symbol=SIM0USDT&update_id={stale_id}"
        ))
        .await
        .json();
    let top = |side: &Value| side.as_array().map(|levels| levels[..1000].to_vec());
    assert_eq!(top(&truth["bids"]), stale["bids"].as_array().cloned());
    assert_eq!(top(&truth["asks"]), stale["asks"].as_array().cloned());
    let fresh = sim
        .get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000")
        .await
        .json();
    assert_eq!(fresh["lastUpdateId"], latest);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_faults_are_refused_with_a_reason() {
    let sim = TestSim::start(config()).await;
    let cases = [
        (
            json!({"fault": "drop", "family": "spot", "symbol": "NOPE"}),
            StatusCode::NOT_FOUND,
        ),
        (json!({"fault": "explode"}), StatusCode::BAD_REQUEST),
        (
            json!({"fault": "drop", "family": "spot", "symbol": "SIM0USDT", "typo": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fault": "silence", "symbol": "NOPE", "duration_ms": 1}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (fault, status) in cases {
        let response = sim.post("/sim/control", &fault).await;
        assert_eq!(response.status, status, "{fault}: {}", response.body);
        assert!(
            response.json()["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_change_alters_the_truth_and_snapshots_but_sends_nothing() {
    let sim = TestSim::start(config()).await;
    sim.advance(5).await;
    let mut ws = sim.ws("/ws/sim1usdt@depth").await;
    let before = sim
        .get("/api/v3/depth?symbol=SIM1USDT&limit=1000")
        .await
        .json();
    let reply = sim
        .fault(json!({"fault": "silent_change", "family": "spot", "symbol": "SIM1USDT", "side": "bid", "level": 2}))
        .await;
    let id = after(&reply);
    assert_eq!(before["lastUpdateId"].as_u64(), Some(id), "no id moved");
    let after_glitch = sim
        .get("/api/v3/depth?symbol=SIM1USDT&limit=1000")
        .await
        .json();
    assert_eq!(after_glitch["lastUpdateId"].as_u64(), Some(id));
    assert_eq!(before["asks"], after_glitch["asks"]);
    let bids = |v: &Value| v["bids"].as_array().cloned().unwrap_or_default();
    let (old, new) = (bids(&before), bids(&after_glitch));
    let differing: Vec<usize> = (0..old.len()).filter(|&i| old[i] != new[i]).collect();
    assert_eq!(differing, [2], "exactly the level asked for changed");
    assert_eq!(old[2][0], new[2][0], "same price");
    let truth = sim
        .get(&format!(
            "/sim/truth?family=spot&symbol=SIM1USDT&update_id={id}"
        ))
        .await
        .json();
    assert_eq!(
        truth["bids"][2], new[2],
        "the truth follows the glitched book"
    );
    // The next event continues the ids; nothing was sent for the glitch itself.
    sim.advance(1).await;
    let event = ws.next_json().await;
    assert_eq!(ids(&event).0, id + 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_levels_leave_the_snapshot_and_the_stream_says_nothing() {
    let sim = TestSim::start(config()).await;
    let before = sim
        .get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000")
        .await
        .json();
    let reply = sim
        .fault(json!({"fault": "vanish_levels", "family": "futures", "symbol": "SIM0USDT", "count": 2}))
        .await;
    let after_glitch = sim
        .get("/fapi/v1/depth?symbol=SIM0USDT&limit=1000")
        .await
        .json();
    assert_eq!(after_glitch["lastUpdateId"].as_u64(), Some(after(&reply)));
    assert_eq!(after_glitch["asks"][0], before["asks"][2]);
    assert_eq!(after_glitch["bids"], before["bids"]);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_ids_continue_lower_and_the_truth_restarts_there() {
    let sim = TestSim::start(config()).await;
    sim.advance(3).await;
    let mut ws = sim.ws("/public/ws/sim1usdt@depth").await;
    let latest = sim.latest_update_id("futures", "SIM1USDT").await;
    let reply = sim
        .fault(json!({"fault": "reset_ids", "family": "futures", "symbol": "SIM1USDT", "behind": 5000}))
        .await;
    let reset = after(&reply);
    assert_eq!(reset, latest - 5000);
    sim.advance(2).await;
    let events = ws.next_jsons(2).await;
    assert_eq!(ids(&events[0]).0, reset + 1);
    assert_eq!(events[0]["pu"].as_u64(), Some(reset));
    assert_eq!(events[1]["pu"].as_u64(), Some(ids(&events[0]).1));
    let truth = sim
        .get(&format!(
            "/sim/truth?family=futures&symbol=SIM1USDT&update_id={}",
            ids(&events[1]).1
        ))
        .await;
    assert_eq!(truth.status, StatusCode::OK, "{}", truth.body);
    let refused = sim
        .post(
            "/sim/control",
            &json!({"fault": "reset_ids", "family": "futures", "symbol": "SIM1USDT", "behind": u64::MAX}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagged_events_come_later_in_order_with_their_own_event_time() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws/sim1usdt@depth").await;
    let reply = sim
        .fault(json!({"fault": "lag", "family": "spot", "symbol": "SIM1USDT", "lag_ms": 200, "duration_ms": 60000}))
        .await;
    let after = after(&reply);
    sim.advance(1).await;
    // Not a wait for a state: the lag is the scenario. Lagged events go out at the market's
    // next steps once due.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    sim.advance(1).await;
    let first = ws.next_json().await;
    assert_eq!(ids(&first).0, after + 1, "the first event, late");
    let generated = first["E"].as_u64().expect("E");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        now_ms >= generated + 200,
        "E is the generation time, not the delivery time"
    );
    sim.stop().await;
}
