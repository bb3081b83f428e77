//! Every endpoint of restapi, mgmt and the DCN with missing, empty, wrong-typed, huge and hostile
//! parameters and bodies: each answer is HTTP 200 with an ERROR envelope carrying the right id
//! (never a 500, never a bare `{"error":..}`), and the cluster keeps working afterwards.

use std::time::Duration;

use serde_json::Value;

use crate::support::http::{exchange, get_json, get_json_auth};
use crate::support::rig::ClusterRig;

/// One request and the error id it must produce.
struct Case {
    method: &'static str,
    target: String,
    body: Vec<u8>,
    error_id: &'static str,
    /// Extra header lines (the cluster secret for internal endpoints).
    headers: String,
}

fn get(target: impl Into<String>, error_id: &'static str) -> Case {
    Case {
        method: "GET",
        target: target.into(),
        body: Vec::new(),
        error_id,
        headers: String::new(),
    }
}

fn post(target: &str, body: impl Into<Vec<u8>>, error_id: &'static str) -> Case {
    Case {
        method: "POST",
        target: target.to_owned(),
        body: body.into(),
        error_id,
        headers: String::new(),
    }
}

/// An internal call: the cluster secret, and POST where the endpoint changes state.
fn internal(case: Case, secret: &str) -> Case {
    let path = case.target.split('?').next().unwrap_or_default();
    let method = match ubdcc_gateway::auth::internal_access(path) {
        Some(ubdcc_gateway::auth::Access::Post) => "POST",
        _ => case.method,
    };
    Case {
        method,
        headers: format!("X-Ubdcc-Cluster-Secret: {secret}\r\n"),
        ..case
    }
}

/// Cases every read endpoint (restapi and DCN) must refuse.
fn read_cases(path: &str) -> Vec<Case> {
    let huge = "A".repeat(20_000);
    let book = "exchange=binance.com&market=SIM0USDT";
    vec![
        get(path, "#1025"),
        get(format!("{path}?exchange=binance.com"), "#1025"),
        get(format!("{path}?exchange=&market="), "#1025"),
        get(format!("{path}?exchange=None&market=SIM0USDT"), "#1025"),
        get(format!("{path}?{book}&limit_count=abc"), "#1100"),
        get(format!("{path}?{book}&limit_count=2.5"), "#1100"),
        get(
            format!("{path}?{book}&limit_count=99999999999999999999999"),
            "#1100",
        ),
        get(format!("{path}?{book}&limit_count=-1"), "#1101"),
        get(format!("{path}?{book}&threshold_volume=abc"), "#1102"),
        get(format!("{path}?{book}&threshold_volume=nan"), "#1102"),
        get(format!("{path}?{book}&threshold_volume=inf"), "#1102"),
        get(format!("{path}?{book}&threshold_volume=1e999"), "#1102"),
        get(format!("{path}?{book}&max_age_ms=-5"), "#1100"),
        get(format!("{path}?{book}&max_age_ms=soon"), "#1100"),
        get(
            format!("{path}?exchange=binance.com&market={huge}"),
            "#7000",
        ),
        get(
            format!("{path}?exchange=binance.com&market=%00%27%22%3Cscript%3E"),
            "#7000",
        ),
        get(format!("{path}?exchange=binance.com&market=%zz"), "#7000"),
        get(
            format!("{path}?exchange=kraken.com&market=SIM0USDT"),
            "#7000",
        ),
    ]
}

/// Cases restapi's and mgmt's public endpoints must refuse.
fn public_cases() -> Vec<Case> {
    let huge_market = format!(
        r#"{{"exchange":"binance.com","market":"{}"}}"#,
        "A".repeat(100_000)
    );
    let too_big = vec![b' '; 17 << 20];
    vec![
        get("/create_depthcache", "#1016"),
        get("/create_depthcache?exchange=binance.com", "#1016"),
        get(
            "/create_depthcache?exchange=binance.com&market=None",
            "#1016",
        ),
        get(
            "/create_depthcache?exchange=binance.foo&market=BTCUSDT",
            "#1104",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTC%20USDT",
            "#1107",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSDT&update_interval=7",
            "#1107",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSDT&desired_quantity=two",
            "#1100",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSDT&desired_quantity=-1",
            "#1100",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSDT&desired_quantity=100000",
            "#1100",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSDT&refresh_interval=1.5",
            "#1100",
        ),
        // Well-formed, but the exchange (the simulator) does not list it: a typo is refused at
        // once, not kept as a book that never syncs.
        get(
            "/create_depthcache?exchange=binance.com&market=BTCUSTD",
            "#1114",
        ),
        get(
            "/create_depthcaches?exchange=binance.com&markets=SIM0USDT,BTCUSTD,ETHUSTD",
            "#1114",
        ),
        get(
            "/create_depthcache?exchange=binance.com&market=SIM0USDT&refresh_interval=5",
            "#1113",
        ),
        post("/create_depthcache", "{", "#1106"),
        post("/create_depthcache", "[1,2]", "#1106"),
        post("/create_depthcache", "\"text\"", "#1106"),
        post(
            "/create_depthcache",
            r#"{"exchange":5,"market":"BTCUSDT"}"#,
            "#1108",
        ),
        post(
            "/create_depthcache",
            r#"{"exchange":"binance.com","market":["BTCUSDT"]}"#,
            "#1108",
        ),
        post(
            "/create_depthcache",
            r#"{"exchange":"binance.com","market":"BTCUSDT","desired_quantity":1.5}"#,
            "#1100",
        ),
        post(
            "/create_depthcache",
            r#"{"exchange":"binance.com","market":"BTCUSDT","desired_quantity":"x"}"#,
            "#1100",
        ),
        post("/create_depthcache", huge_market, "#1107"),
        post("/create_depthcache", too_big, "#1106"),
        get("/create_depthcaches?exchange=binance.com", "#1016"),
        get(
            "/create_depthcaches?exchange=binance.com&markets=,,",
            "#1016",
        ),
        get(
            "/create_depthcaches?exchange=binance.com&markets=OK1,BAD%20ONE",
            "#1107",
        ),
        post(
            "/create_depthcaches",
            r#"{"exchange":"binance.com","markets":[1,2]}"#,
            "#1108",
        ),
        post(
            "/create_depthcaches",
            r#"{"exchange":"binance.com","markets":{}}"#,
            "#1108",
        ),
        post(
            "/create_depthcaches",
            r#"{"exchange":"nope","markets":["A"]}"#,
            "#1104",
        ),
        get("/get_depthcache_info", "#1006"),
        get("/get_depthcache_info?market=SIM0USDT", "#1006"),
        get(
            "/get_depthcache_info?exchange=binance.com&market=NOPE",
            "#7000",
        ),
        get("/stop_depthcache", "#1019"),
        get("/stop_depthcache?exchange=None&market=SIM0USDT", "#1019"),
        get("/stop_depthcache?exchange=binance.com&market=NOPE", "#7000"),
        get("/add_credentials", "#1030"),
        get(
            "/add_credentials?account_group=binance.com&api_key=k",
            "#1030",
        ),
        get(
            "/add_credentials?account_group=foo&api_key=k&api_secret=s",
            "#1031",
        ),
        post("/add_credentials", "{\"account_group\":", "#1106"),
        post(
            "/add_credentials",
            r#"{"account_group":"binance.com","api_key":1,"api_secret":"s"}"#,
            "#1108",
        ),
        get("/remove_credentials", "#1033"),
        post("/remove_credentials", r#"{"id":null}"#, "#1033"),
        get("/remove_credentials?id=not-a-credential", "#1034"),
    ]
}

/// Cases mgmt's internal endpoints must refuse (sent with the cluster secret).
fn internal_cases(secret: &str) -> Vec<Case> {
    let cases = vec![
        get("/ubdcc_node_registration", "#1002"),
        get(
            "/ubdcc_node_registration?name=n&uid=u&node=x&role=ubdcc-dcn&status=running",
            "#1002",
        ),
        get(
            "/ubdcc_node_registration?name=n&uid=u&node=x&role=ubdcc-dcn&status=running&api_port_rest=99999",
            "#1100",
        ),
        get(
            "/ubdcc_node_registration?name=n&uid=u&node=x&role=root&status=running&api_port_rest=1",
            "#1108",
        ),
        get("/ubdcc_node_sync", "#1000"),
        get("/ubdcc_node_sync?uid=nobody&api_port_rest=1", "#1001"),
        post(
            "/ubdcc_node_sync",
            r#"{"uid":"nobody","api_port_rest":1,"replicas":"all"}"#,
            "#1108",
        ),
        get("/ubdcc_node_cancellation", "#1004"),
        get("/ubdcc_node_cancellation?uid=nobody", "#1005"),
        get("/ubdcc_get_responsible_dcn_addresses", "#1012"),
        get(
            "/ubdcc_get_responsible_dcn_addresses?exchange=binance.com&market=NOPE",
            "#1013",
        ),
        get("/ubdcc_update_depthcache_distribution", "#1015"),
        get(
            "/ubdcc_update_depthcache_distribution?exchange=e&market=m&pod_uid=p",
            "#1022",
        ),
        get(
            "/ubdcc_update_depthcache_distribution?exchange=e&market=m&pod_uid=p&status=running",
            "#1023",
        ),
        get(
            "/ubdcc_update_depthcache_distribution?exchange=e&market=m&pod_uid=p&last_restart_time=yesterday",
            "#1105",
        ),
        get(
            "/ubdcc_update_depthcache_distribution?exchange=e&market=m&pod_uid=p&status=great",
            "#1110",
        ),
        get("/ubdcc_assign_credentials", "#1035"),
        get("/ubdcc_assign_credentials?uid=u&account_group=foo", "#1036"),
    ];
    cases
        .into_iter()
        .map(|case| internal(case, secret))
        .collect()
}

/// Sends `case` to `address`; asserts HTTP 200, JSON content and the ERROR envelope with the id.
fn check(address: &str, case: &Case) {
    let mut raw = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\n{}Connection: close\r\n",
        case.method, case.target, case.headers
    )
    .into_bytes();
    if case.method == "POST" {
        raw.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                case.body.len()
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&case.body);
    let (status, head, body) = exchange(address, &raw);
    let what = format!(
        "{} {address}{}",
        case.method,
        &case.target[..case.target.len().min(120)]
    );
    assert_eq!(status, 200, "{what}: {head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{what}: {head}"
    );
    let answer: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(answer["result"], "ERROR", "{what}: {answer}");
    assert_eq!(answer["error_id"], case.error_id, "{what}: {answer}");
    assert!(
        answer["event"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && m.len() < 2000),
        "{what}: {answer}"
    );
}

#[test]
fn every_endpoint_answers_bad_input_with_an_error_envelope_and_keeps_working() {
    let rig = ClusterRig::start("bad", 2, 1);
    let dcn = rig.dcns[0].address.clone();
    let mut checked = 0;
    for restapi in [&rig.local.address, &rig.remote.address] {
        for case in read_cases("/get_asks")
            .iter()
            .chain(&read_cases("/get_bids"))
            .chain(&public_cases())
        {
            check(restapi, case);
            checked += 1;
        }
    }
    for case in public_cases()
        .iter()
        .chain(&internal_cases(&rig.cluster_secret()))
    {
        check(&rig.mgmt.address, case);
        checked += 1;
    }
    for case in read_cases("/get_asks")
        .iter()
        .chain(&read_cases("/get_bids"))
    {
        check(&dcn, case);
        checked += 1;
    }
    println!("{checked} bad requests answered with the right error envelope");

    // Nothing was created, nothing broke: a real create still works and the book is served.
    let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
    assert_eq!(list["depthcache_list"], serde_json::json!({}), "{list}");
    let created = get_json(
        &rig.local.address,
        "/create_depthcache?exchange=binance.com&market=SIM0USDT",
    );
    assert_eq!(created["result"], "OK", "{created}");
    let path = "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=1";
    rig.wait_served(&rig.remote.address, path, Duration::from_secs(30));
}

#[test]
fn with_secrets_set_outsiders_are_refused_and_the_cluster_still_works() {
    let rig = ClusterRig::start_with(
        "sec",
        2,
        1,
        &[
            "--api-token",
            "pub-token",
            "--cluster-secret",
            "pod-secret-0123456789",
        ],
    );
    let token = Some("pub-token");
    let send = |address: &str, path: &str, headers: &str| {
        let raw =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n");
        let (status, _, body) = exchange(address, raw.as_bytes());
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or_default(),
        )
    };
    // Public endpoints need the token; /test stays open for probes and the original's client.
    for address in [&rig.local.address, &rig.mgmt.address] {
        let (status, body) = send(address, "/get_depthcache_list", "");
        assert_eq!(
            (status, body["error_id"].as_str()),
            (401, Some("#1109")),
            "{body}"
        );
        let (status, _) = send(
            address,
            "/get_depthcache_list",
            "Authorization: Bearer wrong\r\n",
        );
        assert_eq!(status, 401);
        let (status, body) = send(address, "/test", "");
        assert_eq!(
            (status, body["result"].as_str()),
            (200, Some("OK")),
            "{body}"
        );
    }
    // Internal endpoints need the cluster secret, whatever the token.
    let (status, body) = send(
        &rig.mgmt.address,
        "/ubdcc_mgmt_backup",
        "Authorization: Bearer pub-token\r\n",
    );
    assert_eq!(
        (status, body["error_id"].as_str()),
        (401, Some("#1109")),
        "{body}"
    );
    let (status, _) = send(
        &rig.dcns[0].address,
        "/ubdcc_mgmt_backup",
        "X-Ubdcc-Cluster-Secret: wrong\r\n",
    );
    assert_eq!(status, 401);
    // With the token, everything works: restapi's own calls to mgmt and the DCN carry it.
    let created = get_json_auth(
        &rig.local.address,
        "/create_depthcache?exchange=binance.com&market=SIM1USDT",
        token,
    );
    assert_eq!(created["result"], "OK", "{created}");
    // `wait_served` reads with the rig's token, `pub-token`.
    let path = "/get_asks?exchange=binance.com&market=SIM1USDT&limit_count=1";
    rig.wait_served(&rig.remote.address, path, Duration::from_secs(30));
}
