//! The DCN's read endpoints against a real segment: the original's envelopes and ids, the
//! freshness extras, and hostile parameters answered with error envelopes, never HTTP 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use ubdcc_gateway::agent::PodBase;
use ubdcc_gateway::auth::Auth;
use ubdcc_gateway::dcn_api::{DcnApiState, router};
use ubdcc_gateway::identity::{PodIdentity, Role};
use ubdcc_gateway::lifecycle::ShutdownSignal;
use ubdcc_shm::{
    BookMeta, BookSides, BookStatus, ClusterReader, OutOfSyncReason, RawLevel, SegmentConfig,
    SegmentWriter,
};

fn cluster(tag: &str) -> String {
    format!("gw{tag}{}", std::process::id())
}

/// A segment with a synced `binance.com BTCUSDT` (asks 100.00 × 1, 100.50 × 2, 101.00 × 3) and a
/// starting `binance.com ETHUSDT`.
/// The exchange time of the test book: ages count from it (issue 16), so it is this process's
/// start, not a fixed date that `max_age_ms` would refuse.
static EVENT_TIME_MS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
});

fn segment(cluster: &str) -> SegmentWriter {
    let mut writer = SegmentConfig::new(cluster, "dcn")
        .books(4)
        .levels_per_side(10)
        .create()
        .unwrap();
    let book = writer.add_book("binance.com", "BTCUSDT").unwrap();
    let asks = [
        RawLevel {
            price: 10000,
            quantity: 1,
        },
        RawLevel {
            price: 10050,
            quantity: 2,
        },
        RawLevel {
            price: 10100,
            quantity: 3,
        },
    ];
    let bids = [RawLevel {
        price: 9999,
        quantity: 5,
    }];
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: 42,
        event_time_ms: *EVENT_TIME_MS,
        ..BookMeta::starting()
    };
    writer
        .publish(
            book,
            &meta,
            &BookSides {
                price_exponent: -2,
                quantity_exponent: 0,
                bids: &bids,
                asks: &asks,
            },
        )
        .unwrap();
    let eth = writer.add_book("binance.com", "ETHUSDT").unwrap();
    let out = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        ..BookMeta::starting()
    };
    writer.publish_meta(eth, &out).unwrap();
    writer
}

/// The DCN router over `cluster`'s segments, without secrets.
fn app(cluster: &str) -> axum::Router {
    let base = PodBase {
        identity: PodIdentity::new(Role::Dcn, Some("dcn-test"), None),
        copy: None,
        shutdown: ShutdownSignal::new(),
    };
    router(
        DcnApiState::new(ClusterReader::open(cluster).unwrap()),
        base,
        Auth::default(),
        ubdcc_gateway::dcn_api::metrics(ClusterReader::open(cluster).unwrap(), None, None),
    )
}

async fn get_raw(cluster: &str, uri: &str) -> String {
    let app = app(cluster);
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

async fn get(cluster: &str, uri: &str) -> Value {
    let app = app(cluster);
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn test_endpoint_names_the_dcn() {
    let cluster = cluster("test");
    let body = get(&cluster, "/test").await;
    assert_eq!(
        (
            body["app"]["name"].as_str(),
            body["result"].as_str(),
            body["event"].as_str()
        ),
        (Some("ubdcc-dcn"), Some("OK"), Some("TEST"))
    );
}

#[tokio::test]
async fn reads_follow_the_original_envelope_with_freshness_extras() {
    let cluster = cluster("read");
    let _writer = segment(&cluster);
    let body = get(
        &cluster,
        "/get_asks?exchange=binance.com&market=BTCUSDT&limit_count=2",
    )
    .await;
    assert_eq!(body["result"], "OK");
    assert_eq!(body["event"], "GET_ASKS");
    assert_eq!(
        body["asks"],
        serde_json::json!([[100.0, 1.0], [100.5, 2.0]])
    );
    assert_eq!(body["last_update_id"], 42);
    assert_eq!(body["event_time"], *EVENT_TIME_MS);
    assert!(body["age_ms"].as_f64().unwrap() >= 0.0);
    // Keys come in alphabetical order, as the original writes them (checked on the raw bytes).
    let text = get_raw(
        &cluster,
        "/get_asks?exchange=binance.com&market=BTCUSDT&limit_count=1",
    )
    .await;
    let keys = [
        "\"age_ms\"",
        "\"asks\"",
        "\"event\"",
        "\"event_time\"",
        "\"last_update_id\"",
        "\"result\"",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| text.find(key).unwrap_or_else(|| panic!("{key} in {text}")))
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");

    let body = get(
        &cluster,
        "/get_bids?exchange=binance.com&market=BTCUSDT&limit_count=None&threshold_volume=None",
    )
    .await;
    assert_eq!(body["bids"], serde_json::json!([[99.99, 5.0]]));
    // threshold: first level always, then while the running notional fits (100 + 201 <= 350).
    let body = get(
        &cluster,
        "/get_asks?exchange=binance.com&market=BTCUSDT&threshold_volume=350",
    )
    .await;
    assert_eq!(body["asks"].as_array().unwrap().len(), 2);
    let body = get(
        &cluster,
        "/get_asks?exchange=binance.com&market=BTCUSDT&limit_count=0",
    )
    .await;
    assert_eq!(body["asks"], serde_json::json!([]));
}

#[tokio::test]
async fn missing_unknown_and_unsynced_books_have_the_original_ids() {
    let cluster = cluster("ids");
    let _writer = segment(&cluster);
    let body = get(&cluster, "/get_asks?exchange=binance.com").await;
    assert_eq!(
        (body["error_id"].as_str(), body["message"].as_str()),
        (
            Some("#1025"),
            Some("Missing required parameter: exchange, market")
        )
    );
    assert_eq!(
        get(&cluster, "/get_asks?exchange=binance.com&market=None").await["error_id"],
        "#1025"
    );
    assert_eq!(
        get(&cluster, "/get_asks?exchange=&market=BTCUSDT").await["error_id"],
        "#1025"
    );
    let body = get(&cluster, "/get_bids?exchange=binance.com&market=XRPUSDT").await;
    assert_eq!(
        (
            body["error_id"].as_str(),
            body["message"].as_str(),
            body["event"].as_str()
        ),
        (
            Some("#7000"),
            Some("DepthCache 'XRPUSDT' for 'binance.com' not found!"),
            Some("GET_BIDS")
        )
    );
    let body = get(&cluster, "/get_asks?exchange=binance.com&market=ETHUSDT").await;
    assert_eq!(
        (body["error_id"].as_str(), body["message"].as_str()),
        (
            Some("#6000"),
            Some("DepthCache 'ETHUSDT' for 'binance.com' is out of sync!")
        )
    );
    assert_eq!(body["reason"], "gap in update ids");
    assert_eq!(body["result"], "ERROR");
}

#[tokio::test]
async fn bad_numbers_are_error_envelopes_never_500() {
    let cluster = cluster("bad");
    let _writer = segment(&cluster);
    let base = "/get_asks?exchange=binance.com&market=BTCUSDT";
    for (query, id) in [
        ("&limit_count=abc", "#1100"),
        ("&limit_count=1.5", "#1100"),
        ("&limit_count=99999999999999999999999", "#1100"),
        ("&limit_count=-1", "#1101"),
        ("&threshold_volume=nan", "#1102"),
        ("&threshold_volume=inf", "#1102"),
        ("&threshold_volume=%F0%9F%92%A5", "#1102"),
        ("&max_age_ms=soon", "#1100"),
        ("&max_age_ms=0", "#1103"),
        ("&max_age_ms=-5", "#1100"),
    ] {
        let body = get(&cluster, &format!("{base}{query}")).await;
        assert_eq!(body["error_id"], id, "{query}: {body}");
        assert_eq!(body["result"], "ERROR");
    }
    // Python's int() and float() forms that the original accepted still work.
    assert_eq!(
        get(
            &cluster,
            &format!("{base}&limit_count=%202&threshold_volume=20000")
        )
        .await["result"],
        "OK"
    );
    assert_eq!(
        get(&cluster, &format!("{base}&max_age_ms=600000")).await["result"],
        "OK"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_like_the_original() {
    let cluster = cluster("404");
    let app = app(&cluster);
    let response = app
        .clone()
        .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"detail":"Not Found"}"#);
    let response = app
        .oneshot(Request::post("/get_asks").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"detail":"Method Not Allowed"}"#);
}
