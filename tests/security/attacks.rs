//! Forged internal calls, DNS rebinding, file modes, argv, bodies and timestamps (issue 10)
//! against a cluster started the way a user starts one: `ubdcc start --dcn 1 --markets …`
//! against the simulator, no secret given, in a private HOME. Every attack is refused, nothing leaks (every answer, log
//! and command line is searched for the cluster secret and a user's API secret), and the
//! cluster still serves.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Process;
use crate::http::exchange;

/// The API secret a user adds; it must never appear in an answer, a log or argv.
const API_SECRET: &str = "APISECRET-never-leaves-mgmt-0123456789";

/// A `ubdcc start --demo` cluster in a private HOME, stopped when dropped.
struct StartedCluster {
    /// The exchange (dropped after the cluster).
    _sim: Process,
    home: PathBuf,
    cluster: String,
    child: Child,
    mgmt: String,
    restapi: String,
    dcn: String,
    /// Every answer the test received, searched for secrets at the end.
    answers: String,
}

impl StartedCluster {
    fn start() -> Self {
        let cluster = format!("sec{}", std::process::id());
        let home = std::env::temp_dir().join(format!("ubdcc-home-{cluster}"));
        std::fs::remove_dir_all(&home).ok();
        std::fs::create_dir_all(&home).unwrap();
        let (mgmt_port, restapi_port) = (free_port(), free_port());
        let sim = Process::start(&["sim", "--port", "0", "--markets", "2"]);
        let endpoint = format!("binance.com=http://{}", sim.address);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
            .args(["start", "--dcn", "1", "--cluster", &cluster])
            .args([
                "--exchange-endpoint",
                &endpoint,
                "--markets",
                "binance.com:SIM0USDT",
            ])
            .args(["--port", &mgmt_port.to_string()])
            .args(["--restapi-port", &restapi_port.to_string()])
            .env("HOME", &home)
            .env("UBDCC_BAN_BOARD", crate::cluster::test_ban_board())
            .env_remove("UBDCC_CLUSTER_SECRET")
            .env_remove("UBDCC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ubdcc start runs");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut output = String::new();
        loop {
            let line = lines.next().and_then(Result::ok);
            let line = line.unwrap_or_else(|| panic!("ubdcc start ended early: {output}"));
            output.push_str(&line);
            output.push('\n');
            if line.contains("Running without a terminal") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let mgmt = format!("127.0.0.1:{mgmt_port}");
        let info = crate::http::get_json(&mgmt, "/get_cluster_info");
        let dcn = info["db"]["pods"]
            .as_object()
            .and_then(|pods| pods.values().find(|pod| pod["ROLE"] == "ubdcc-dcn"))
            .map(|pod| format!("127.0.0.1:{}", pod["API_PORT_REST"]))
            .unwrap_or_else(|| panic!("no DCN in {info}"));
        Self {
            _sim: sim,
            home,
            cluster,
            child,
            mgmt,
            restapi: format!("127.0.0.1:{restapi_port}"),
            dcn,
            answers: String::new(),
        }
    }

    fn run_dir(&self) -> PathBuf {
        self.home.join(".unicorn-binance-suite").join("config")
    }

    /// The secret `ubdcc start` made.
    fn secret(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("ubdcc.secret"))
            .expect("ubdcc start keeps its secret")
            .trim()
            .to_owned()
    }

    /// Sends a raw request; returns status and body, and keeps the answer for the leak check.
    fn send(
        &mut self,
        address: &str,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, Value) {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, head, text) = exchange(address, raw.as_bytes());
        self.answers.push_str(&head);
        self.answers.push_str(&text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The pids of this cluster's processes (`start` and its children).
    fn pids(&self) -> Vec<u32> {
        let home = format!("HOME={}", self.home.display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|var| var == home.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for StartedCluster {
    fn drop(&mut self) {
        Command::new(env!("CARGO_BIN_EXE_ubdcc"))
            .arg("stop")
            .env("HOME", &self.home)
            .output()
            .ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        drop(crate::cluster::Cleanup(self.cluster.clone()));
        std::fs::remove_dir_all(&self.home).ok();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A listener standing in for the attacker's server; counts the connections it gets.
fn attacker() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, hits)
}

#[test]
fn a_default_cluster_refuses_forged_internal_calls_and_leaks_no_secret() {
    let mut cluster = StartedCluster::start();
    let secret = cluster.secret();
    assert!(secret.len() >= 32, "a random secret per cluster");

    // The user adds a key the safe way: the secret on stdin, not in argv.
    let mut add = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args([
            "credentials",
            "add",
            "--account-group",
            "binance.com",
            "--api-key",
            "KEY-e2e",
        ])
        .env("HOME", &cluster.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = add.id();
    // While it waits for stdin, its command line holds no secret.
    std::thread::sleep(Duration::from_millis(200));
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&argv).contains(API_SECRET));
    writeln!(add.stdin.take().unwrap(), "{API_SECRET}").unwrap();
    let added = add.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(
        added.status.success() && text.contains("Added. id="),
        "{text}"
    );

    let (attacker_port, hits) = attacker();
    let registration = json!({"name": "evil", "uid": "evil-uid", "node": "x", "role": "ubdcc-dcn",
        "status": "running", "api_port_rest": attacker_port, "ip": "127.0.0.1"})
    .to_string();
    let query = format!(
        "/ubdcc_node_registration?name=evil&uid=evil-uid&node=x&role=ubdcc-dcn&status=running&api_port_rest={attacker_port}&ip=127.0.0.1"
    );
    let mgmt = cluster.mgmt.clone();
    // The original's one-GET registration (an <img> tag could send it), and a POST without or
    // with a wrong secret.
    for (method, path, headers, body) in [
        ("GET", query.as_str(), "", ""),
        (
            "POST",
            "/ubdcc_node_registration",
            "",
            registration.as_str(),
        ),
        (
            "POST",
            "/ubdcc_node_registration",
            "X-Ubdcc-Cluster-Secret: guess\r\n",
            registration.as_str(),
        ),
    ] {
        let (status, answer) = cluster.send(&mgmt, method, path, headers, body);
        assert_eq!(
            (status, answer["error_id"].as_str()),
            (401, Some("#1109")),
            "{method} {path}: {answer}"
        );
    }
    // A forged sync pointing the pod's address elsewhere, forged backups and shutdowns.
    let sync =
        json!({"uid": "evil-uid", "api_port_rest": attacker_port, "ip": "127.0.0.1"}).to_string();
    let (status, _) = cluster.send(&mgmt, "POST", "/ubdcc_node_sync", "", &sync);
    assert_eq!(status, 401);
    for address in [
        cluster.mgmt.clone(),
        cluster.dcn.clone(),
        cluster.restapi.clone(),
    ] {
        let (status, answer) = cluster.send(&address, "GET", "/ubdcc_mgmt_backup", "", "");
        assert_eq!(status, 401, "backup on {address}: {answer}");
        for method in ["GET", "POST"] {
            let (status, answer) = cluster.send(&address, method, "/shutdown", "", "");
            assert_eq!(status, 401, "{method} /shutdown on {address}: {answer}");
        }
        // Even with the secret, a state-changing call is POST only (no link or tag reaches it).
        let with_secret = format!("X-Ubdcc-Cluster-Secret: {secret}\r\n");
        let (status, _) = cluster.send(&address, "GET", "/shutdown", &with_secret, "");
        assert_eq!(status, 405, "GET /shutdown with the secret on {address}");
        // DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends its own name.
        let rebound = format!("{with_secret}X-Forwarded-Host: evil.example\r\n");
        let raw = format!(
            "GET /ubdcc_mgmt_backup HTTP/1.1\r\nHost: evil.example:{}\r\n{rebound}Connection: close\r\n\r\n",
            address.rsplit(':').next().unwrap()
        );
        let (status, head, body) = exchange(&address, raw.as_bytes());
        cluster.answers.push_str(&head);
        cluster.answers.push_str(&body);
        assert_eq!(status, 403, "rebound Host on {address}: {body}");
    }
    // The original had mgmt push its state, secrets included, to the forged pod within 3 s.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "mgmt called the attacker's address"
    );
    let info = crate::http::get_json(&cluster.mgmt, "/get_cluster_info");
    assert!(!info.to_string().contains("evil"), "{info}");

    // Every public answer, once more, for the leak check.
    for address in [
        cluster.mgmt.clone(),
        cluster.restapi.clone(),
        cluster.dcn.clone(),
    ] {
        for path in [
            "/test",
            "/get_cluster_info",
            "/get_depthcache_list",
            "/get_credentials_list",
            "/ubdcc_get_credentials_list",
            "/metrics",
            "/openapi.json",
        ] {
            cluster.send(&address, "GET", path, "", "");
        }
    }
    // Still serving.
    let (_, asks) = cluster.send(
        &cluster.restapi.clone(),
        "GET",
        "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=1",
        "",
        "",
    );
    assert_eq!(asks["result"], "OK", "{asks}");

    // Nothing leaked: answers, logs, command lines.
    for needle in [secret.as_str(), API_SECRET] {
        assert!(
            !cluster.answers.contains(needle),
            "an answer holds a secret"
        );
    }
    let logs = cluster.home.join(".unicorn-binance-suite").join("logs");
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for needle in [secret.as_str(), API_SECRET] {
            assert!(
                !text.contains(needle),
                "{} holds a secret",
                entry.path().display()
            );
        }
    }
    let pids = cluster.pids();
    assert!(pids.len() >= 4, "start, sim, mgmt, restapi, DCN: {pids:?}");
    for pid in pids {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&argv);
        for needle in [secret.as_str(), API_SECRET] {
            assert!(
                !argv.contains(needle),
                "pid {pid}'s argv holds a secret: {argv}"
            );
        }
    }

    // Files that hold secrets: 0600 in 0700 folders.
    let run_dir = cluster.run_dir();
    assert_eq!(mode(&run_dir), 0o700);
    assert_eq!(mode(&run_dir.join("ubdcc.secret")), 0o600);
    let mgmt_port = cluster.mgmt.rsplit(':').next().unwrap().to_owned();
    let data = cluster
        .home
        .join(".ubdcc")
        .join(format!("mgmt-{mgmt_port}"));
    let state = data.join("state.json");
    assert!(
        std::fs::read_to_string(&state)
            .unwrap()
            .contains(API_SECRET),
        "mgmt stores the key"
    );
    assert_eq!((mode(&data), mode(&state)), (0o700, 0o600));
}

/// A standalone mgmt, ready at once, with its state in a fresh folder (returned for cleanup).
fn start_mgmt(tag: &str, extra: &[&str]) -> (Process, PathBuf) {
    let data = std::env::temp_dir().join(format!("ubdcc-sec-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&data).ok();
    let mut args = vec!["mgmt", "--port", "0", "--recovery-window-ms", "0"];
    args.extend(["--data-dir", data.to_str().expect("utf-8 path")]);
    args.extend(extra);
    (Process::start(&args), data)
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// Sends `body` as a POST to `path` on a connection of its own; returns the answer's error id.
fn post_raw(address: &str, path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (and close) before the whole of an oversized body is sent.
    stream.write_all(body).ok();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok();
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("no envelope: {}", &text[..text.len().min(200)]))
}

#[test]
fn huge_and_deep_bodies_keep_memory_bounded() {
    let (mgmt, data) = start_mgmt("bodies", &[]);
    let pid = mgmt.pid();
    let before = peak_rss(pid);
    // 1 MiB of `0,` parses into ~32 MiB of JSON values; 16 of them at once were 0.5 GB.
    let mut wide = b"{\"exchange\":\"binance.com\",\"markets\":[".to_vec();
    while wide.len() < (1 << 20) - 16 {
        wide.extend_from_slice(b"0,");
    }
    wide.extend_from_slice(b"0]}");
    let deep = format!(
        "{{\"markets\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let huge = vec![b' '; 16 << 20];
    std::thread::scope(|scope| {
        for round in 0..16 {
            let (address, wide, deep, huge) = (&mgmt.address, &wide, &deep, &huge);
            scope.spawn(move || {
                let id = post_raw(address, "/create_depthcaches", wide);
                assert_eq!(id, "#1108", "wide body, round {round}");
                let id = post_raw(address, "/create_depthcaches", deep.as_bytes());
                assert_eq!(id, "#1106", "deep body, round {round}");
                if round % 4 == 0 {
                    let id = post_raw(address, "/create_depthcaches", huge);
                    assert_eq!(id, "#1106", "16 MiB body, round {round}");
                }
            });
        }
    });
    let after = peak_rss(pid);
    println!(
        "mgmt peak RSS: {} MiB before, {} MiB after 16 wide, 16 deep and 4 oversized bodies at once",
        before >> 20,
        after >> 20
    );
    // The body budget allows 128 MiB of parsed values at once; the rest is the process itself.
    assert!(after < 320 << 20, "peak RSS {} MiB", after >> 20);
    let created = crate::http::get_json(
        &mgmt.address,
        "/create_depthcache?exchange=binance.com&market=BTCUSDT",
    );
    assert_eq!(created["result"], "OK", "{created}");
    drop(mgmt);
    std::fs::remove_dir_all(&data).ok();
}

/// An HTTP server answering every request with `body` (a fake pod's state copy).
fn serve_forever(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The request head (mgmt's fetch is a GET without a body).
            let mut head = std::io::BufReader::new(&stream);
            let mut line = String::new();
            while head.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).ok();
        }
    });
    port
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn timestamps_from_the_far_future_never_freeze_the_state() {
    const SECRET: &str = "future-test-secret-0123456789";
    let with_secret = format!("X-Ubdcc-Cluster-Secret: {SECRET}\r\n");
    let data = std::env::temp_dir().join(format!("ubdcc-sec-future-{}", std::process::id()));
    std::fs::remove_dir_all(&data).ok();
    std::fs::create_dir_all(&data).unwrap();
    // A stored state that claims the year 1e292.
    let stored =
        json!({"depthcaches": {}, "pods": {}, "credentials": {}, "nodes": {}, "timestamp": 1e300});
    std::fs::write(data.join("state.json"), stored.to_string()).unwrap();
    // A pod that offers a copy from the future, and serves one.
    let forged = json!({"result": "OK", "event": "UBDCC_MGMT_BACKUP", "db": {"depthcaches": {}, "pods": {}, "credentials": {}, "nodes": {}, "timestamp": 1e300}});
    let pod_port = serve_forever(forged.to_string());
    let mgmt = Process::start(&[
        "mgmt",
        "--port",
        "0",
        "--recovery-window-ms",
        "1500",
        "--data-dir",
        data.to_str().unwrap(),
        "--cluster-secret",
        SECRET,
    ]);
    let post = |path: &str, body: &Value| {
        let raw = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{with_secret}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{raw}",
            mgmt.address,
            raw.len()
        );
        let (_, _, answer) = exchange(&mgmt.address, head.as_bytes());
        serde_json::from_str::<Value>(&answer).unwrap()
    };
    // Offers during recovery: 1e300 itself, and a plausible time whose copy then says 1e300.
    for (uid, offered) in [("far", 1e300), ("near", now() + 5.0)] {
        let answer = post(
            "/ubdcc_node_sync",
            &json!({"uid": uid, "api_port_rest": pod_port, "backup_timestamp": offered, "offers_backup": true}),
        );
        assert_eq!(answer["result"], "OK", "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let answer = crate::http::get_json(
            &mgmt.address,
            "/create_depthcache?exchange=binance.com&market=BTCUSDT",
        );
        if answer["result"] == "OK" || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(created["result"], "OK", "{created}");
    let raw = format!(
        "GET /ubdcc_mgmt_backup HTTP/1.1\r\nHost: {}\r\n{with_secret}Connection: close\r\n\r\n",
        mgmt.address
    );
    let (_, _, backup) = exchange(&mgmt.address, raw.as_bytes());
    let backup: Value = serde_json::from_str(&backup).unwrap();
    let timestamp = backup["db"]["timestamp"].as_f64().unwrap();
    assert!(timestamp < now() + 60.0, "state timestamp {timestamp}");
    assert!(
        backup["db"]["depthcaches"]["binance.com"]["BTCUSDT"].is_object(),
        "{backup}"
    );
    // Changes still move the state forward.
    let stopped = crate::http::get_json(
        &mgmt.address,
        "/stop_depthcache?exchange=binance.com&market=BTCUSDT",
    );
    assert_eq!(stopped["result"], "OK", "{stopped}");
    drop(mgmt);
    std::fs::remove_dir_all(&data).ok();
}

/// Waits until `done` holds for the book, or panics after 30 s with what it saw.
fn wait_book(
    reader: &mut ubdcc_shm::ClusterReader,
    (exchange, market): (&str, &str),
    what: &str,
    done: impl Fn(&ubdcc_shm::BookInfo) -> bool,
) -> ubdcc_shm::BookInfo {
    let started = Instant::now();
    loop {
        let info = reader.info(exchange, market);
        if let Ok(info) = &info
            && done(info)
        {
            return *info;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{exchange} {market} never {what}: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_absurd_retry_after_holds_back_only_its_api_and_the_dcn_lives_on() {
    let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", "20"]);
    let cluster = format!("secra{}", std::process::id());
    let _cleanup = crate::cluster::Cleanup(cluster.clone());
    let books = crate::cluster::markets(1, 1, 0);
    // A board of its own: the (clamped) 3-day ban it provokes must not hold back another test
    // whose simulator gets the same port.
    let board = format!("{}-absurd", crate::cluster::test_ban_board());
    let markets = "binance.com:SIM0USDT,binance.com-futures:SIM0USDT";
    let mut args = vec!["dcn", "--standalone", "--cluster", &cluster, "--port", "0"];
    args.extend(["--markets", markets]);
    let endpoints = crate::cluster::sim_endpoints(&sim.address);
    for endpoint in &endpoints {
        args.extend(["--exchange-endpoint", endpoint.as_str()]);
    }
    let dcn = Process::start_with_ban_board(&args, &board);
    let mut reader = ubdcc_shm::ClusterReader::open(&cluster).unwrap();
    crate::cluster::wait_synced(&mut reader, &books, Duration::from_secs(30));
    let control = |fault: Value| {
        let reply = crate::http::post_json(&sim.address, "/sim/control", &fault);
        assert!(reply.get("fault").is_some(), "fault refused: {reply}");
    };
    // Spot's REST answers 418 with a Retry-After of u64::MAX seconds (it panicked the scheduler,
    // after which no book of the DCN ever resynced), and the spot book loses sync.
    control(
        json!({"fault": "rest_status", "family": "spot", "status": 418, "duration_ms": 2000,
                   "retry_after_secs": u64::MAX}),
    );
    let spot = ("binance.com", "SIM0USDT");
    let before = reader.info(spot.0, spot.1).unwrap().resyncs;
    control(json!({"fault": "drop", "family": "spot", "symbol": "SIM0USDT", "count": 1}));
    wait_book(&mut reader, spot, "lost sync", |info| info.resyncs > before);
    let banned = || {
        crate::http::get_json(&sim.address, "/sim/stats")["rest"]["spot"]["responses_418"]
            .as_u64()
            .unwrap_or(0)
    };
    let started = Instant::now();
    while banned() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the DCN never met the ban"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The futures API has a budget of its own: a gap there still resyncs, so the scheduler lives.
    let futures = ("binance.com-futures", "SIM0USDT");
    let before = reader.info(futures.0, futures.1).unwrap().resyncs;
    control(json!({"fault": "drop", "family": "futures", "symbol": "SIM0USDT", "count": 1}));
    wait_book(&mut reader, futures, "resynced", |info| {
        info.resyncs > before && info.status == ubdcc_shm::BookStatus::Synced
    });
    // The spot book waits out the (clamped) ban out of sync, saying so; nothing retried into it.
    let info = reader.info(spot.0, spot.1).unwrap();
    assert_ne!(info.status, ubdcc_shm::BookStatus::Synced, "{info:?}");
    assert_eq!(
        banned(),
        1,
        "the DCN honoured the ban instead of hammering the host"
    );
    assert_eq!(crate::http::get_json(&dcn.address, "/test")["result"], "OK");
    std::fs::remove_file(&board).ok();
}

#[test]
fn stalled_uploads_hold_no_memory_budget_and_never_delay_a_heartbeat() {
    const SECRET: &str = "stalled-upload-secret-0123456789";
    let (mgmt, data) = start_mgmt("stall", &["--cluster-secret", SECRET]);
    // Sixteen uploads that announce 1 MiB and send nothing: an announced length used to reserve
    // its whole share of the body budget (four such filled it) for as long as the body deadline.
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut stream = TcpStream::connect(&mgmt.address).unwrap();
            let head = format!(
                "POST /create_depthcaches HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{{",
                mgmt.address
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A heartbeat-sized pod call and an outside caller's small body are answered at once; the
    // read timeout (8 s) is below the body deadline (10 s) that would free a held budget.
    let sync = json!({"uid": "nobody", "api_port_rest": 1}).to_string();
    let send = |headers: &str, path: &str, body: &str| {
        let mut stream = TcpStream::connect(&mgmt.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            mgmt.address,
            body.len()
        );
        stream.write_all(raw.as_bytes()).unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("{path}: no answer while uploads stall: {e}"));
        answer
    };
    let answer = send(
        &format!("X-Ubdcc-Cluster-Secret: {SECRET}\r\n"),
        "/ubdcc_node_sync",
        &sync,
    );
    assert!(answer.contains("#1001"), "{answer}");
    let create = json!({"exchange": "binance.com", "markets": ["BTCUSDT"]}).to_string();
    let answer = send("", "/create_depthcaches", &create);
    assert!(answer.contains("\"result\":\"OK\""), "{answer}");
    drop(stalled);
    drop(mgmt);
    std::fs::remove_dir_all(&data).ok();
}
