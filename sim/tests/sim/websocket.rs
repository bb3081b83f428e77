use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};
use ubdcc_sim::{Venue, VenueLimits};

use crate::support::{Ending, TestSim, config, ids, top_level_keys, unwrap_envelope};

/// Limits loose enough that a test can send many control messages.
fn chatty(venue: Venue) -> VenueLimits {
    VenueLimits {
        max_messages_per_second: 1000,
        ..VenueLimits::binance(venue)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_spot_connections_get_bare_spot_events() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws/sim0usdt@depth").await;
    sim.advance(3).await;
    let mut previous_u = None;
    for _ in 0..3 {
        let text = ws.next_text().await;
        assert_eq!(
            top_level_keys(&text),
            ["e", "E", "s", "U", "u", "b", "a"],
            "{text}"
        );
        let event: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            (&event["e"], &event["s"]),
            (&json!("depthUpdate"), &json!("SIM0USDT"))
        );
        let (first, last) = ids(&event);
        assert!(first <= last);
        if let Some(previous) = previous_u {
            assert_eq!(first, previous + 1, "U = previous u + 1");
        }
        previous_u = Some(last);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_futures_connections_get_enveloped_events_with_t_and_pu() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim
        .ws("/public/stream?streams=sim0usdt@depth@500ms/sim1usdt@depth")
        .await;
    sim.advance(2).await;
    let frames = ws.next_jsons(4).await;
    let mut previous: Option<u64> = None;
    for (index, frame) in frames.iter().enumerate() {
        let (stream, data) = unwrap_envelope(frame);
        let expected = if index % 2 == 0 {
            "sim0usdt@depth@500ms"
        } else {
            "sim1usdt@depth"
        };
        assert_eq!(
            stream, expected,
            "events of one step follow subscription order"
        );
        let raw = serde_json::to_string(data).expect("JSON");
        let mut keys = top_level_keys(&raw);
        keys.sort();
        assert_eq!(keys, ["E", "T", "U", "a", "b", "e", "pu", "s", "u"]);
        if index % 2 == 0 {
            if let Some(previous) = previous {
                assert_eq!(data["pu"].as_u64(), Some(previous), "pu chains");
            }
            previous = Some(ids(data).1);
        }
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_frames_keep_the_field_order_on_the_wire() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim
        .ws("/public/stream?streams=sim0-260626-10000-c@depth@100ms")
        .await;
    sim.advance(1).await;
    let text = ws.next_text().await;
    assert_eq!(top_level_keys(&text), ["stream", "data"]);
    let data_start = text.find("\"data\":").expect("data") + "\"data\":".len();
    let data = &text[data_start..text.len() - 1];
    assert_eq!(
        top_level_keys(data),
        ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    );
    assert!(data.contains("\"s\":\"SIM0-260626-10000-C\""));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_family_accepts_only_its_stream_speeds() {
    let sim = TestSim::start(config()).await;
    for refused in [
        "/public/ws/sim0-260626-10000-c@depth",
        "/ws/sim0usdt@depth@500ms",
        "/ws/SIM0USDT@depth",
        "/stream?streams=sim0usdt@depth/sim7usdt@depth",
        "/public/ws/sim0usdt@depth@250ms",
    ] {
        let refusal = sim.ws_refused(refused).await;
        assert!(
            matches!(&refusal, Some((StatusCode::BAD_REQUEST, body)) if body.contains("Invalid stream name")),
            "{refused}: {refusal:?}"
        );
    }
    for accepted in [
        "/ws/sim0usdt@depth@100ms",
        "/public/ws/sim0usdt@depth",
        "/public/ws/sim1-260626-10500-c@depth@500ms",
    ] {
        assert_eq!(sim.ws_refused(accepted).await, None, "{accepted}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_unsubscribe_and_list_echo_their_ids() {
    let sim = TestSim::start(config().venue_limits(Venue::Spot, chatty(Venue::Spot))).await;
    let mut ws = sim.ws("/ws").await;
    let reply = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["sim0usdt@depth", "sim1usdt@depth@100ms"], "id": 1}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let list = ws
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": "abc"}))
        .await;
    assert_eq!(
        list,
        json!({"result": ["sim0usdt@depth", "sim1usdt@depth@100ms"], "id": "abc"})
    );
    let reply = ws
        .request(json!({"method": "UNSUBSCRIBE", "params": ["sim0usdt@depth"], "id": 3}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 3}));
    let list = ws
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": null}))
        .await;
    assert_eq!(
        list,
        json!({"result": ["sim1usdt@depth@100ms"], "id": null})
    );

    sim.advance(1).await;
    let event = ws.next_json().await;
    assert_eq!(event["s"], "SIM1USDT", "raw /ws gives bare events: {event}");

    let reply = ws
        .request(json!({"method": "SET_PROPERTY", "params": ["combined", true], "id": 5}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 5}));
    let property = ws
        .request(json!({"method": "GET_PROPERTY", "params": ["combined"], "id": 6}))
        .await;
    assert_eq!(property, json!({"result": true, "id": 6}));
    sim.advance(1).await;
    let frame = ws.next_json().await;
    assert_eq!(unwrap_envelope(&frame).0, "sim1usdt@depth@100ms");

    let stats = sim.stats().await;
    assert_eq!(stats["websocket"]["spot"]["control_messages"], 6);
    assert_eq!(stats["websocket"]["spot"]["connections_open"], 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_binances_error_replies() {
    let sim = TestSim::start(
        config()
            .venue_limits(Venue::Spot, chatty(Venue::Spot))
            .venue_limits(Venue::FStream, chatty(Venue::FStream)),
    )
    .await;
    let mut spot = sim.ws("/stream").await;
    let invalid_json = {
        spot.send_text("{\"method\":").await;
        spot.next_json().await
    };
    assert_eq!(invalid_json["error"]["code"], 3, "{invalid_json}");
    assert!(
        invalid_json["error"]["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid JSON: "))
    );

    let unknown = spot
        .request(json!({"method": "SUBSCRIBEX", "params": [], "id": 4}))
        .await;
    assert_eq!(unknown["error"]["code"], 2);
    assert_eq!(unknown["id"], 4);
    let msg = unknown["error"]["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Invalid request: unknown variant `SUBSCRIBEX`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"),
        "{msg}"
    );

    let invalid_stream = spot
        .request(
            json!({"method": "SUBSCRIBE", "params": ["sim0usdt@depth", "nope@trade"], "id": 7}),
        )
        .await;
    assert_eq!(
        invalid_stream,
        json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7})
    );
    let list = spot
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        .await;
    assert_eq!(
        list["result"],
        json!([]),
        "a refused request changes nothing"
    );

    let no_id = spot.request(json!({"method": "LIST_SUBSCRIPTIONS"})).await;
    assert_eq!(
        no_id["error"]["msg"],
        "Invalid request: request ID must be an unsigned integer"
    );
    let property = spot
        .request(json!({"method": "SET_PROPERTY", "params": ["combined", 1], "id": 9}))
        .await;
    assert_eq!(property["error"]["code"], 1);

    let mut fstream = sim.ws("/public/stream").await;
    let string_id = fstream
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": "a1"}))
        .await;
    assert_eq!(
        string_id["error"]["code"], 2,
        "futures ids must be unsigned integers"
    );
    let stats = sim.stats().await;
    assert_eq!(stats["websocket"]["spot"]["error_replies"], 5);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_message_rate_closes_the_connection() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/ws").await;
    // The server may close before the last frames are written; a failed send is expected then.
    for id in 0..8 {
        if !ws
            .try_send_json(&json!({"method": "LIST_SUBSCRIPTIONS", "id": id}))
            .await
        {
            break;
        }
    }
    // A close frame is the rule; a reset can overtake it when the client was still writing.
    if let Ending::Closed(frame) = ws.ending().await {
        let frame = frame.expect("a close frame with a code");
        assert_eq!(u16::from(frame.code), 1008);
        assert_eq!(frame.reason.as_str(), "Too many requests");
    }
    let stats = sim.stats().await;
    assert_eq!(stats["websocket"]["spot"]["closed_for_message_rate"], 1);
    assert!(stats["websocket"]["spot"]["max_messages_per_second"].as_u64() >= Some(6));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_refuses_extra_subscriptions() {
    let limits = VenueLimits {
        max_streams: 2,
        ..chatty(Venue::FStream)
    };
    let sim = TestSim::start(config().venue_limits(Venue::FStream, limits)).await;
    let refused = sim
        .ws_refused("/public/stream?streams=sim0usdt@depth/sim1usdt@depth/sim0usdt@depth@100ms")
        .await;
    assert!(
        matches!(refused, Some((StatusCode::BAD_REQUEST, _))),
        "{refused:?}"
    );

    let mut ws = sim.ws("/public/stream?streams=sim0usdt@depth").await;
    let ok = ws
        .request(
            json!({"method": "SUBSCRIBE", "params": ["sim1usdt@depth", "sim0usdt@depth"], "id": 1}),
        )
        .await;
    assert_eq!(
        ok,
        json!({"result": null, "id": 1}),
        "re-subscribing a held stream is free"
    );
    let over = ws
        .request(
            json!({"method": "SUBSCRIBE", "params": ["sim1-260626-10500-c@depth@500ms"], "id": 2}),
        )
        .await;
    assert_eq!(over["error"]["code"], 2, "{over}");
    assert!(
        over["error"]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("too many streams"))
    );
    let list = ws
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        .await;
    assert_eq!(list["result"], json!(["sim0usdt@depth", "sim1usdt@depth"]));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_paths_can_serve_futures() {
    let sim = TestSim::start(config().unrouted_venue(Venue::FStream)).await;
    let mut ws = sim.ws("/stream?streams=sim0usdt@depth@500ms").await;
    sim.advance(1).await;
    let frame = ws.next_json().await;
    assert!(
        unwrap_envelope(&frame).1.get("pu").is_some(),
        "futures shape: {frame}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_at_the_configured_rate_without_stepping() {
    let sim = TestSim::start(config().rate_hz(50)).await;
    let mut ws = sim.ws("/ws/sim1usdt@depth").await;
    let mut previous_u = None;
    for _ in 0..10 {
        let event = ws.next_json().await;
        let (first, last) = ids(&event);
        if let Some(previous) = previous_u {
            assert_eq!(first, previous + 1);
        }
        previous_u = Some(last);
    }
    let steps = sim.stats().await["steps"].as_u64().unwrap_or_default();
    assert!(steps >= 10, "{steps}");
    // Shutting down closes open stream connections with 1001.
    let ending = tokio::spawn(async move { ws.ending().await });
    sim.stop().await;
    let ending = tokio::time::timeout(Duration::from_secs(30), ending)
        .await
        .expect("connection ends with the server")
        .expect("reader task");
    assert!(
        matches!(&ending, Ending::Closed(Some(frame)) if u16::from(frame.code) == 1001),
        "{ending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_symbols_are_accepted_silently_as_binance_does() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/stream").await;
    let reply = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["nosuchusdt@depth", "sim0usdt@depth"], "id": 1}))
        .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let list = ws
        .request(json!({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        .await;
    assert_eq!(
        list["result"],
        json!(["sim0usdt@depth", "nosuchusdt@depth"])
    );
    sim.advance(2).await;
    for _ in 0..2 {
        let frame = ws.next_json().await;
        assert_eq!(
            unwrap_envelope(&frame).0,
            "sim0usdt@depth",
            "nothing on the unlisted stream"
        );
    }
    let gone = ws
        .request(json!({"method": "UNSUBSCRIBE", "params": ["nosuchusdt@depth"], "id": 3}))
        .await;
    assert_eq!(gone, json!({"result": null, "id": 3}));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_subscribe_refuses_whole_requests_naming_the_symbol_until_cleared() {
    let sim = TestSim::start(config()).await;
    let mut ws = sim.ws("/stream").await;
    sim.fault(json!({"fault": "refuse_subscribe", "symbol": "SIM1USDT"}))
        .await;
    let refused = ws
        .request(
            json!({"method": "SUBSCRIBE", "params": ["sim0usdt@depth", "sim1usdt@depth"], "id": 1}),
        )
        .await;
    assert_eq!(
        refused,
        json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 1})
    );
    let alone = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["sim0usdt@depth"], "id": 2}))
        .await;
    assert_eq!(alone, json!({"result": null, "id": 2}));

    sim.fault(json!({"fault": "refuse_subscribe"})).await;
    let unlisted = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["nosuchusdt@depth"], "id": 3}))
        .await;
    assert_eq!(unlisted["error"]["code"], 2, "{unlisted}");

    sim.fault(json!({"fault": "clear"})).await;
    let accepted = ws
        .request(json!({"method": "SUBSCRIBE", "params": ["sim1usdt@depth", "nosuchusdt@depth"], "id": 4}))
        .await;
    assert_eq!(accepted, json!({"result": null, "id": 4}));
    sim.stop().await;
}
