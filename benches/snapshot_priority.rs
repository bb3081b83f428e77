//! Scale bench for snapshot priorities (issue 11): one busy book's gap while 1 000 quiet books
//! wait for verification. Prints the time from the gap to the busy book's resync, over several
//! rounds, and what the verification queue held meanwhile. No assertion on time: the figures go
//! to the README.
//!
//! Set-up, in one process: `ubdcc_sim` with 1 001 spot markets at rate 0 (no market moves unless
//! stepped) at Binance's spot limit (6 000 weight a minute), and a node keeping all of them at a
//! weight share of `SHARE` (default 1.0: 108 snapshots a minute under the IP ceiling, so the
//! first sync takes ~9 minutes). A book silence of 1 s then asks for 1 000 verifications at once,
//! far more than the budget serves (the contention of 1 000 quiet books with verifications every
//! 60 s). Each round drops one event of the busy book and steps it twice: a real gap.
//!
//! Run: `cargo bench --bench snapshot_priority` (`BOOKS=200 ROUNDS=3 SHARE=0.6` for a quicker
//! run).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::runtime::Runtime;
use ubdcc_engine::{BookSpec, EndpointOverrides, Exchange, Node, NodeConfig, SnapshotKind};
use ubdcc_shm::{BookStatus, ClusterReader};
use ubdcc_sim::SimConfig;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let quiet = env_or("BOOKS", 1000);
    let rounds = env_or("ROUNDS", 5);
    let markets = quiet + 1;

    let sim_rt = Runtime::new().expect("runtime");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let sim = listener.local_addr().expect("address").to_string();
    let config = SimConfig::builder()
        .markets(markets)
        .rate_hz(0)
        .build()
        .expect("sim config");
    sim_rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        ubdcc_sim::run(listener, config, std::future::pending())
            .await
            .ok();
    });

    let engine_rt = Runtime::new().expect("runtime");
    let cluster = format!("benchprio{}", std::process::id());
    let mut node_config = NodeConfig::new(cluster.as_str(), "dcn-bench");
    node_config.endpoints =
        EndpointOverrides::parse([format!("binance.com=http://{sim}").as_str()]).expect("url");
    node_config.max_books = u32::try_from(markets).expect("books") + 8;
    node_config.levels_per_side = 100;
    node_config.weight_share = std::env::var("SHARE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    node_config.book_silence = Duration::from_secs(1);
    // At rate 0 the one connection carries nothing for minutes; its watchdog (5 min) would
    // reconnect it and resync every book, which a real connection of 1 000 books never sees.
    node_config.silence_timeout = Duration::from_secs(7200);
    // No audits (issue 16, on by default): the bench counts snapshots by kind.
    node_config.audit_interval = None;
    let (node, handle, commands) = engine_rt
        .block_on(async { Node::start(node_config) })
        .expect("node");
    let stats = handle.snapshot_stats();
    engine_rt.spawn(async move { node.run(commands, std::future::pending()).await });

    let symbols: Vec<String> = (0..markets).map(|i| format!("SIM{i}USDT")).collect();
    let started = Instant::now();
    for symbol in &symbols {
        let spec = BookSpec {
            exchange: Exchange::BinanceCom,
            symbol: symbol.clone(),
            update_interval_ms: None,
            refresh_interval: None,
            record: false,
        };
        engine_rt.block_on(handle.add(spec)).expect("add");
    }
    let mut reader = ClusterReader::open(&cluster).expect("reader");
    let synced = |reader: &mut ClusterReader, symbol: &str| {
        reader
            .info("binance.com", symbol)
            .is_ok_and(|info| info.status == BookStatus::Synced)
    };
    while !symbols.iter().all(|s| synced(&mut reader, s)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{markets} books synced in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let verifications = || {
        stats
            .waiting
            .books()
            .iter()
            .filter(|b| b.kind == SnapshotKind::Verify)
            .count()
    };
    let queued = Instant::now();
    while verifications() < quiet * 9 / 10 {
        assert!(
            queued.elapsed() < Duration::from_secs(30),
            "no verifications queued"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let busy = &symbols[0];
    let mut times = Vec::new();
    for round in 1..=rounds {
        let waiting_before = verifications();
        let drop = post(
            &sim,
            "/sim/control",
            &json!({"fault": "drop", "family": "spot", "symbol": busy, "count": 1}),
        );
        let after = drop["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
        post(
            &sim,
            "/sim/advance",
            &json!({"events": 2, "family": "spot", "symbol": busy}),
        );
        let gap = Instant::now();
        loop {
            let info = reader.info("binance.com", busy).ok();
            if info.is_some_and(|i| i.status == BookStatus::Synced && i.last_update_id > after + 1)
            {
                break;
            }
            assert!(gap.elapsed() < Duration::from_secs(300), "never resynced");
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = gap.elapsed();
        times.push(took);
        println!(
            "round {round}: gap to resync {:.1} ms; verifications waiting before {waiting_before}, after {}",
            took.as_secs_f64() * 1e3,
            verifications()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "gap to resync over {rounds} rounds with {quiet} quiet books awaiting verification: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    let board = stats.waiting.books();
    if let Some(last) = board.iter().max_by_key(|b| b.place) {
        let eta = last
            .eta
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        println!(
            "last waiting verification: place {}, expected in {:.0} s",
            last.place,
            eta.as_secs_f64()
        );
    }
    drop(handle);
    engine_rt.shutdown_timeout(Duration::from_secs(1));
    sim_rt.shutdown_timeout(Duration::from_secs(1));
    for entry in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("ubdcc.{cluster}."))
        {
            std::fs::remove_file(entry.path()).ok();
        }
    }
}

/// POSTs `body` as JSON to the simulator and parses the answer.
fn post(address: &str, path: &str, body: &Value) -> Value {
    let body = body.to_string();
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
}
