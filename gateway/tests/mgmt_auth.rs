//! mgmt's router with the cluster secret on (issue 10): internal calls need the secret, a
//! `Host` of this cluster and POST where they change state; an advertised pod address counts
//! only with the secret; a DCN never gets more books than its segment holds; the seeds'
//! credential paths answer like the original's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use ubdcc_gateway::auth::Auth;
use ubdcc_gateway::client::{CLUSTER_SECRET_HEADER, InternalClient};
use ubdcc_gateway::identity::{PodIdentity, Role};
use ubdcc_gateway::lifecycle::ShutdownSignal;
use ubdcc_gateway::mgmt::{Mgmt, MgmtConfig, revise};

const SECRET: &str = "a-cluster-secret-for-tests";

/// The peer every request comes from.
const PEER: &str = "192.0.2.7:50000";

/// mgmt, ready (its recovery window over), behind `auth`.
async fn mgmt(auth: Auth) -> (Arc<Mgmt>, Router) {
    let config = MgmtConfig {
        recovery_window: Duration::ZERO,
        ..MgmtConfig::default()
    };
    let client = InternalClient::new(Some(SECRET), None, Duration::from_secs(1));
    let mgmt = Mgmt::new(
        config,
        PodIdentity::new(Role::Mgmt, None, None),
        Default::default(),
        client,
    );
    tokio::spawn(revise::run_revise(Arc::clone(&mgmt)));
    while !mgmt.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let router = mgmt.router(auth, ShutdownSignal::new());
    (mgmt, router)
}

/// Sends a request; status and JSON answer.
async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:42080");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let mut request = request.body(body).unwrap();
    let peer: SocketAddr = PEER.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn registration(uid: &str, ip: &str, max_books: Option<u32>) -> Value {
    json!({"name": uid, "uid": uid, "node": "n1", "role": "ubdcc-dcn", "status": "running",
           "api_port_rest": 42082, "ip": ip, "max_books": max_books})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_need_the_secret_a_cluster_host_and_post() {
    let (mgmt, router) = mgmt(Auth::new(Some(SECRET), None)).await;
    let secret = [(CLUSTER_SECRET_HEADER, SECRET)];
    let body = Some(registration("u1", "198.51.100.1", None));
    let (status, answer) = call(
        &router,
        "POST",
        "/ubdcc_node_registration",
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["error_id"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("#1109"))
    );
    let wrong = [(CLUSTER_SECRET_HEADER, "a-cluster-secret-for-tests!")];
    let (status, _) = call(
        &router,
        "POST",
        "/ubdcc_node_registration",
        &wrong,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &router,
        "GET",
        "/ubdcc_node_registration?uid=u1",
        &secret,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // DNS rebinding: the right secret, but addressed to another name.
    let mut request = Request::builder()
        .method("POST")
        .uri("/ubdcc_node_registration")
        .header("host", "evil.example:42080")
        .header(CLUSTER_SECRET_HEADER, SECRET)
        .body(Body::from(body.clone().unwrap().to_string()))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A page may POST text/plain without a preflight: refused even with the secret.
    let plain = [
        (CLUSTER_SECRET_HEADER, SECRET),
        ("content-type", "text/plain"),
    ];
    let (status, _) = call(
        &router,
        "POST",
        "/ubdcc_node_registration",
        &plain,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(mgmt.state().pods.is_empty());
    // An advertised address must be an IP address (it becomes a URL mgmt calls).
    let odd = Some(registration("u1", "evil.example/x?", None));
    let (_, answer) = call(&router, "POST", "/ubdcc_node_registration", &secret, odd).await;
    assert_eq!(answer["error_id"], "#1108", "{answer}");
    // With the secret, the advertised address counts (a pod IP from the downward API).
    let (status, answer) = call(&router, "POST", "/ubdcc_node_registration", &secret, body).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (StatusCode::OK, Some("OK")),
        "{answer}"
    );
    assert_eq!(mgmt.state().pods["u1"].ip, "198.51.100.1");
    // Public endpoints need nothing (no bearer token configured), the seeds' aliases included.
    for path in ["/get_credentials_list", "/ubdcc_get_credentials_list"] {
        let (status, answer) = call(&router, "GET", path, &[], None).await;
        assert_eq!(
            (status, answer["event"].as_str()),
            (StatusCode::OK, Some("GET_CREDENTIALS_LIST")),
            "{answer}"
        );
    }
    let (_, added) = call(
        &router,
        "POST",
        "/ubdcc_add_credentials",
        &[],
        Some(json!({"account_group": "binance.com", "api_key": "k", "api_secret": "s"})),
    )
    .await;
    assert_eq!(added["result"], "OK", "{added}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_secret_an_advertised_address_is_ignored() {
    // `--insecure`: no secret configured, so nothing is authenticated.
    let (mgmt, router) = mgmt(Auth::new(None, None)).await;
    let body = Some(registration("u1", "198.51.100.1", None));
    let (_, answer) = call(&router, "POST", "/ubdcc_node_registration", &[], body).await;
    assert_eq!(answer["result"], "OK", "{answer}");
    assert_eq!(
        mgmt.state().pods["u1"].ip,
        "192.0.2.7",
        "the TCP peer, not the advertised address"
    );
    let sync = json!({"uid": "u1", "api_port_rest": 42082, "ip": "198.51.100.2"});
    let (_, answer) = call(&router, "POST", "/ubdcc_node_sync", &[], Some(sync)).await;
    assert_eq!(answer["result"], "OK", "{answer}");
    assert_eq!(mgmt.state().pods["u1"].ip, "192.0.2.7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dcn_gets_more_books_than_its_segment_holds() {
    let (mgmt, router) = mgmt(Auth::new(Some(SECRET), None)).await;
    let secret = [(CLUSTER_SECRET_HEADER, SECRET)];
    for uid in ["d1", "d2"] {
        let (_, answer) = call(
            &router,
            "POST",
            "/ubdcc_node_registration",
            &secret,
            Some(registration(uid, "127.0.0.1", Some(2))),
        )
        .await;
        assert_eq!(answer["result"], "OK", "{answer}");
    }
    let create = |markets: &[&str]| json!({"exchange": "binance.com", "markets": markets, "desired_quantity": 2});
    let (_, answer) = call(
        &router,
        "POST",
        "/create_depthcaches",
        &[],
        Some(create(&["A", "B"])),
    )
    .await;
    assert_eq!(answer["result"], "OK", "{answer}");
    // Both DCNs hold two books: a third is refused, nothing of the request is kept.
    let (_, answer) = call(
        &router,
        "POST",
        "/create_depthcaches",
        &[],
        Some(create(&["C", "D"])),
    )
    .await;
    assert_eq!(answer["error_id"], "#1112", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Cluster full"),
        "{answer}"
    );
    let (_, answer) = call(
        &router,
        "GET",
        "/create_depthcache?exchange=binance.com&market=C",
        &[],
        None,
    )
    .await;
    assert_eq!(answer["error_id"], "#1112", "{answer}");
    assert_eq!(mgmt.state().depthcaches().count(), 2);
    for record in mgmt.state().depthcaches() {
        assert_eq!(record.distribution.len(), 2);
    }
    // A third DCN brings room.
    let (_, answer) = call(
        &router,
        "POST",
        "/ubdcc_node_registration",
        &secret,
        Some(registration("d3", "127.0.0.1", Some(2))),
    )
    .await;
    assert_eq!(answer["result"], "OK", "{answer}");
    let (_, answer) = call(
        &router,
        "GET",
        "/create_depthcache?exchange=binance.com&market=C",
        &[],
        None,
    )
    .await;
    assert_eq!(answer["result"], "OK", "{answer}");
    // A refresh every few seconds would burn the weight every book needs.
    let (_, answer) = call(
        &router,
        "GET",
        "/create_depthcache?exchange=binance.com&market=E&refresh_interval=5",
        &[],
        None,
    )
    .await;
    assert_eq!(answer["error_id"], "#1113", "{answer}");
}
