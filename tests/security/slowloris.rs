//! Slowloris against restapi and a DCN (issue 10, item 5): 2 000 connections that each send part
//! of a request head and stall, while a normal client reads. Every read must be answered, a DCN's
//! books must stay synced, and the server must close the half-open connections once their head
//! timeout has passed (shortened to a few seconds here with `UBDCC_HTTP_HEADER_TIMEOUT_MS`, so the
//! test is quick). The normal reads' latencies are printed for the record, never asserted:
//! `benches/slowloris_wrk.sh` measures them.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ubdcc_shm::{BookStatus, ClusterReader};

use crate::cluster::{Cleanup, Process, markets, wait_synced};

/// Half-open connections per attack: twice the usual 1 024 descriptors of a process.
const HALF_OPEN: usize = 2_000;

/// The servers' head timeout in this test (the default is 10 s): a quick test, and half-open
/// connections closed and replaced while the normal client reads.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The servers' write timeout in this test (a client that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Every half-open connection must be closed by the server this long after it was opened. A
/// correctness bound (the timeout plus a wide margin for a loaded machine), not a measurement.
const CLOSE_BOUND: Duration = Duration::from_secs(25);

/// Normal reads during the attack, each on a new connection (the worst case: it must be
/// accepted behind the attackers).
const READS: usize = 200;

/// What the attacked spot markets are called.
const PATH: &str = "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10";

/// A `ubdcc` process with the short head and write timeouts (killed when dropped).
struct Pod;

impl Pod {
    /// Starts `ubdcc args…` and waits for its readiness line.
    fn start(args: &[&str]) -> Process {
        let header = HEADER_TIMEOUT.as_millis().to_string();
        let write = WRITE_TIMEOUT.as_millis().to_string();
        Process::start_with_env(
            args,
            &[
                ("UBDCC_HTTP_HEADER_TIMEOUT_MS", header.as_str()),
                ("UBDCC_HTTP_WRITE_TIMEOUT_MS", write.as_str()),
            ],
        )
    }
}

/// A simulator and a standalone DCN of `cluster` keeping two of its spot markets, synced.
struct Rig {
    // Field order is drop order: the DCN before the simulator, the segments last.
    dcn: Process,
    _sim: Process,
    cluster: String,
    markets: Vec<(&'static str, &'static str, String)>,
    _cleanup: Cleanup,
}

impl Rig {
    fn start(name: &str) -> Self {
        raise_descriptor_limit();
        let cluster = format!("slow{name}{}", std::process::id());
        let cleanup = Cleanup(cluster.clone());
        let sim = Pod::start(&["sim", "--port", "0", "--markets", "2"]);
        let markets = markets(2, 0, 0);
        let list: Vec<String> = markets
            .iter()
            .map(|(exchange, _, symbol)| format!("{exchange}:{symbol}"))
            .collect();
        let endpoint = format!("binance.com=http://{}", sim.address);
        let dcn = Pod::start(&[
            "dcn",
            "--standalone",
            "--cluster",
            &cluster,
            "--port",
            "0",
            "--markets",
            &list.join(","),
            "--exchange-endpoint",
            &endpoint,
        ]);
        let mut reader = ClusterReader::open(&cluster).expect("reader");
        wait_synced(&mut reader, &markets, Duration::from_secs(30));
        Self {
            dcn,
            _sim: sim,
            cluster,
            markets,
            _cleanup: cleanup,
        }
    }

    /// The markets not synced right now.
    fn unsynced(&self) -> Vec<String> {
        let mut reader = ClusterReader::open(&self.cluster).expect("reader");
        self.markets
            .iter()
            .filter(|(exchange, _, symbol)| {
                !reader
                    .info(exchange, symbol)
                    .is_ok_and(|info| info.status == BookStatus::Synced)
            })
            .map(|(_, _, symbol)| symbol.clone())
            .collect()
    }
}

/// 2 000 half-open connections (and twice that many descriptors for the test and the server on
/// one machine) need more than the usual soft limit of 1 024.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .ok();
}

/// A connection that sent part of a request head and stalls.
struct HalfOpen {
    stream: TcpStream,
    opened: Instant,
}

/// Opens `count` connections to `address`, each with an unfinished head.
fn open_half_open(address: &str, count: usize) -> Vec<HalfOpen> {
    let partial = format!("GET {PATH} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: slow");
    (0..count)
        .map(|i| {
            let mut stream = TcpStream::connect(address)
                .unwrap_or_else(|e| panic!("half-open connection {i}: {e}"));
            stream.write_all(partial.as_bytes()).expect("partial head");
            HalfOpen {
                stream,
                opened: Instant::now(),
            }
        })
        .collect()
}

/// Reads [`PATH`] [`READS`] times, each on a new connection; asserts every answer is an `OK`
/// envelope; returns the latencies.
fn normal_reads(address: &str) -> Vec<Duration> {
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    (0..READS)
        .map(|i| {
            let started = Instant::now();
            let mut stream =
                TcpStream::connect(address).unwrap_or_else(|e| panic!("read {i}: connect: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            stream.write_all(request.as_bytes()).expect("request");
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .unwrap_or_else(|e| panic!("read {i}: {e}"));
            let elapsed = started.elapsed();
            assert!(
                response.starts_with("HTTP/1.1 200") && response.contains(r#""result":"OK""#),
                "read {i}: {response}"
            );
            elapsed
        })
        .collect()
}

/// Whether the server closed `connection` (EOF or reset), without waiting.
fn is_closed(connection: &HalfOpen) -> bool {
    connection
        .stream
        .set_nonblocking(true)
        .expect("nonblocking");
    let mut byte = [0u8; 1];
    let open = matches!(
        connection.stream.peek(&mut byte),
        Err(error) if error.kind() == ErrorKind::WouldBlock
    );
    connection.stream.set_nonblocking(false).expect("blocking");
    !open
}

/// Asserts the server closed `connection` within [`CLOSE_BOUND`] of its opening, seen now.
fn assert_closed_in_time(connection: &HalfOpen) {
    let open_for = connection.opened.elapsed();
    assert!(
        open_for <= CLOSE_BOUND,
        "a half-open connection was closed only after {open_for:?}"
    );
}

/// Waits until the server has closed every connection of `half_open` (EOF or reset), each
/// within [`CLOSE_BOUND`] of its opening; returns the longest any of them stayed open.
fn assert_closed_by_server(half_open: Vec<HalfOpen>) -> Duration {
    let mut longest = Duration::ZERO;
    for (i, mut connection) in half_open.into_iter().enumerate() {
        let left = CLOSE_BOUND.saturating_sub(connection.opened.elapsed());
        connection
            .stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut sink = Vec::new();
        match connection.stream.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
            Err(error) => panic!(
                "half-open connection {i} not closed by the server within {CLOSE_BOUND:?}: {error}"
            ),
        }
        assert_closed_in_time(&connection);
        longest = longest.max(connection.opened.elapsed());
    }
    longest
}

/// The attack on `address` while a normal client reads it: [`HALF_OPEN`] half-open connections
/// all the time (each one the server closes is replaced, as a real slowloris does), so the reads
/// meet the attack however long they take. `check` runs once the reads are done, still under
/// attack. Then the server must close every half-open connection within [`CLOSE_BOUND`].
fn attack(target: &str, address: &str, check: impl FnOnce()) {
    let started = Instant::now();
    let mut half_open = open_half_open(address, HALF_OPEN);
    let opening = started.elapsed();
    let reads = {
        let address = address.to_owned();
        std::thread::spawn(move || normal_reads(&address))
    };
    let mut replaced = 0;
    while !reads.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        for connection in &mut half_open {
            if is_closed(connection) {
                assert_closed_in_time(connection);
                *connection = open_half_open(address, 1).remove(0);
                replaced += 1;
            }
        }
    }
    let mut latencies = reads.join().expect("every read answered");
    let reading = started.elapsed() - opening;
    check();
    let longest = assert_closed_by_server(half_open);
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "slowloris on {target}: {HALF_OPEN} half-open opened in {opening:?}; {READS} reads in \
         {:?} (p50 {:?}, p99 {:?}, max {:?}); meanwhile the server closed {replaced} half-open \
         ones; with a head timeout of {HEADER_TIMEOUT:?}, none stayed open longer than {longest:?}",
        reading,
        percentile(50),
        percentile(99),
        latencies[latencies.len() - 1],
    );
}

#[test]
fn restapi_serves_every_read_under_slowloris_and_closes_the_half_open_connections() {
    let rig = Rig::start("api");
    // No mgmt: restapi answers from the DCN's segment on this host; its agent's registration
    // attempts go nowhere (a port where nothing listens).
    let restapi = Pod::start(&[
        "restapi",
        "--cluster",
        &rig.cluster,
        "--port",
        "0",
        "--mgmt-url",
        "http://127.0.0.1:9",
    ]);
    attack("restapi", &restapi.address, || {});
    // Still serving after the attack.
    assert_eq!(normal_reads(&restapi.address).len(), READS);
}

#[test]
fn a_dcn_serves_every_read_and_keeps_its_books_synced_under_slowloris() {
    let rig = Rig::start("dcn");
    attack("a DCN", &rig.dcn.address, || {
        let unsynced = rig.unsynced();
        assert!(
            unsynced.is_empty(),
            "out of sync under attack: {unsynced:?}"
        );
    });
    let unsynced = rig.unsynced();
    assert!(
        unsynced.is_empty(),
        "out of sync after the attack: {unsynced:?}"
    );
    assert_eq!(normal_reads(&rig.dcn.address).len(), READS);
}

#[test]
fn a_client_that_stops_reading_loses_its_connection() {
    // "Slow read": ask for far more than the socket buffers hold (2 000 pipelined requests for
    // the 50 KB OpenAPI document, ~100 MB), then read nothing. Without a write timeout the
    // connection (and its slot) would stay open for ever.
    let cluster = format!("slowread{}", std::process::id());
    let restapi = Pod::start(&[
        "restapi",
        "--cluster",
        &cluster,
        "--port",
        "0",
        "--mgmt-url",
        "http://127.0.0.1:9",
    ]);
    let mut stream = TcpStream::connect(&restapi.address).unwrap();
    let request = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n",
        restapi.address
    );
    let requests = request.repeat(2_000);
    stream.write_all(requests.as_bytes()).unwrap();
    // Long past the write timeout (a correctness bound, not a measurement).
    std::thread::sleep(WRITE_TIMEOUT * 4);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut received = 0usize;
    let mut buffer = vec![0u8; 1 << 16];
    let ended = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => received += n,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    let document = crate::http::get_json(&restapi.address, "/openapi.json").to_string();
    println!(
        "slow reader: {} MB of ~{} MB received before the server closed",
        received >> 20,
        (document.len() * 2_000) >> 20
    );
    ended.expect("the server closed the connection of the client that stopped reading");
    assert!(received < document.len() * 2_000, "every response was sent");
    // The server still serves others.
    assert!(document.contains("openapi"));
}
