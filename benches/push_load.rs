//! Load tool for the push streams (issue 15): many WebSocket clients, each subscribed to the
//! `@bbo` streams of many books that change at a steady rate, against a real `ubdcc restapi`
//! process. It prints, for a phase with only healthy clients and a phase with one more client that
//! subscribes to everything and never reads:
//!
//! - latency publish → received (p50 / p99 / p99.9 / max): from the moment this tool published a
//!   version into shared memory to the moment a client task parsed its message. It includes the
//!   watcher's wake-up, the server's fan-out and write, the kernel, and the client side's own
//!   scheduling on the same cores;
//! - latency publish → sent as the server measures it (`ubdcc_push_publish_to_sent_seconds`,
//!   p50 and p99 as the bounds of the histogram buckets they fall in);
//! - messages received per second against the ideal (clients × streams × rate): below it,
//!   clients were given conflated state (latest `@bbo` wins) instead of every version;
//! - restapi's CPU (user + system, in cores) and its resident memory per connected client;
//! - whether the stalled client was cut.
//!
//! ```text
//! cargo bench --bench push_load -- [--clients 1000] [--streams 100] [--rate 10] [--seconds 10]
//!                                  [--threads 1]
//! ```
//!
//! The books are written by this tool through `ubdcc-shm` (a segment of its own, the way a DCN
//! writes): no simulator or DCN competes for the cores, only restapi and the clients. `--threads`
//! are the client side's tokio workers; restapi gets its default (one per core).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use ubdcc_shm::{BookMeta, BookSides, BookStatus, RawLevel, SegmentConfig};

/// Latency histogram buckets: 10 µs each, up to 2 s (beyond: the last bucket).
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 200_000;
/// Publish times kept per book, indexed by update id: far more than messages can lag.
const KEPT: usize = 1024;

struct Settings {
    clients: usize,
    streams: usize,
    rate: u32,
    seconds: u64,
    threads: usize,
}

impl Settings {
    fn from_args() -> anyhow::Result<Self> {
        let mut settings = Self {
            clients: 1000,
            streams: 100,
            rate: 10,
            seconds: 10,
            threads: 1,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || {
                args.get(i + 1)
                    .with_context(|| format!("{} needs a value", args[i]))
            };
            match args[i].as_str() {
                "--clients" => settings.clients = value()?.parse()?,
                "--streams" => settings.streams = value()?.parse()?,
                "--rate" => settings.rate = value()?.parse()?,
                "--seconds" => settings.seconds = value()?.parse()?,
                "--threads" => settings.threads = value()?.parse()?,
                // `cargo bench` passes `--bench`; other flags are not ours either.
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        if settings.clients == 0 || settings.streams == 0 || settings.rate == 0 {
            bail!("--clients, --streams and --rate must be positive");
        }
        Ok(settings)
    }
}

/// What the clients record, shared by all of them.
struct Record {
    started: Instant,
    /// Publish time (ns since `started`) of each book's update id, modulo [`KEPT`].
    published: Vec<Vec<AtomicU64>>,
    histogram: Vec<AtomicU64>,
    received: AtomicU64,
}

impl Record {
    fn new(books: usize) -> Self {
        Self {
            started: Instant::now(),
            published: (0..books)
                .map(|_| (0..KEPT).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// A message of `book` at update id `u` arrived now.
    fn arrived(&self, book: usize, u: u64) {
        let published = self.published[book][u as usize % KEPT].load(Ordering::Relaxed);
        let latency_us = self.now_ns().saturating_sub(published) / 1000;
        let bucket = ((latency_us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.histogram[bucket].fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes and clears the histogram: (count, p50, p99, p99.9, max) in ms.
    fn take(&self) -> (u64, f64, f64, f64, f64) {
        let counts: Vec<u64> = self
            .histogram
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| {
            let wanted = (q * total as f64).ceil() as u64;
            let mut seen = 0;
            for (bucket, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= wanted.max(1) {
                    return (bucket as u64 * BUCKET_US) as f64 / 1000.0;
                }
            }
            0.0
        };
        let max = counts.iter().rposition(|c| *c > 0).unwrap_or(0) as u64 * BUCKET_US;
        (total, at(0.5), at(0.99), at(0.999), max as f64 / 1000.0)
    }
}

/// Publishes every book at `rate` per second until `stop`, recording publish times.
fn publish(
    cluster: &str,
    books: usize,
    rate: u32,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut writer = SegmentConfig::new(cluster, "dcn-0")
        .books(books as u32)
        .levels_per_side(10)
        .create()?;
    let handles = (0..books)
        .map(|i| writer.add_book("binance.com", &format!("BENCH{i}USDT")))
        .collect::<Result<Vec<_>, _>>()?;
    // Books change one after the other, evenly over each 1/rate second, as markets do (all at
    // once would let the server batch a whole tick into one write per client).
    let thread = std::thread::spawn(move || {
        let step = Duration::from_secs(1) / rate / books as u32;
        let mut next = Instant::now();
        let mut last_beat = Instant::now();
        for u in 1u64.. {
            for (i, handle) in handles.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if last_beat.elapsed() >= ubdcc_shm::HEARTBEAT_INTERVAL {
                    writer.heartbeat();
                    last_beat = Instant::now();
                }
                // The best bid moves every version, so every publish changes the top.
                let bids = [RawLevel {
                    price: 1_000_000 + u % 100,
                    quantity: 5,
                }];
                let asks = [RawLevel {
                    price: 2_000_000 - u % 100,
                    quantity: 7,
                }];
                let sides = BookSides {
                    price_exponent: -2,
                    quantity_exponent: 0,
                    bids: &bids,
                    asks: &asks,
                };
                let meta = BookMeta {
                    status: BookStatus::Synced,
                    last_update_id: u,
                    depth: 10,
                    ..BookMeta::starting()
                };
                record.published[i][u as usize % KEPT].store(record.now_ns(), Ordering::Relaxed);
                writer.publish(*handle, &meta, &sides).expect("publish");
                next += step;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }
    });
    Ok(thread)
}

/// `ubdcc restapi` for `cluster` on a free port (no mgmt: push needs none); its address.
fn start_restapi(cluster: &str, secret: &str) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args([
            "restapi",
            "--cluster",
            cluster,
            "--port",
            "0",
            "--mgmt-url",
            "http://127.0.0.1:9",
            "--log-level",
            "error",
        ])
        // The secret goes through the environment, never argv (`ps` shows argv to everyone).
        .env("UBDCC_CLUSTER_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ubdcc restapi")?;
    let stdout = child.stdout.take().context("restapi stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().context("restapi ended")??;
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.to_owned();
        }
    };
    Ok((child, address))
}

/// restapi's CPU time so far (user + system, seconds) and resident memory (bytes).
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    (ticks / 100.0, rss_kb * 1024)
}

/// The SUBSCRIBE request for every book's `@bbo`.
fn subscribe_all(streams: usize) -> String {
    let names: Vec<String> = (0..streams)
        .map(|i| format!("binance.com:BENCH{i}USDT@bbo"))
        .collect();
    serde_json::json!({"method": "SUBSCRIBE", "params": names, "id": 1}).to_string()
}

/// `(book, u)` of a `@bbo` message, found without a full JSON parse (the client side shares
/// the cores with the server).
fn book_and_u(text: &str) -> Option<(usize, u64)> {
    let book = text.split_once("BENCH")?.1;
    let book: usize = book[..book.find('U')?].parse().ok()?;
    let u = text.split_once("\"u\":")?.1;
    let u: u64 = u[..u.find(',')?].parse().ok()?;
    Some((book, u))
}

/// One healthy client: subscribes and records every message until `stop`.
async fn client(
    address: String,
    request: String,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws")).await?;
    socket.send(Message::text(request)).await?;
    while !stop.load(Ordering::Relaxed) {
        let Ok(next) = tokio::time::timeout(Duration::from_millis(500), socket.next()).await else {
            continue;
        };
        let Some(message) = next else {
            bail!("the server closed a healthy client")
        };
        if let Message::Text(text) = message? {
            if let Some((book, u)) = book_and_u(&text) {
                record.arrived(book, u);
            }
        }
    }
    Ok(())
}

/// A client with a 4 KiB receive buffer that subscribes to everything and never reads again;
/// once `release`d it reads again and returns whether the server had closed it.
async fn stalled_client(
    address: String,
    request: String,
    release: Arc<tokio::sync::Notify>,
) -> anyhow::Result<bool> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(address.parse()?).await?;
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("ws://{address}/ws"), stream).await?;
    socket.send(Message::text(request)).await?;
    release.notified().await;
    // Reading again: the buffered messages, then the end if the server cut it.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    Ok(drained.is_ok())
}

/// restapi's `/metrics` text (empty when it cannot be read).
async fn metrics_text(address: &str, secret: &str) -> String {
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nx-ubdcc-cluster-secret: {secret}\r\nConnection: close\r\n\r\n"
    );
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return String::new();
    };
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut body = String::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_string(&mut body).await.is_err()
    {
        return String::new();
    }
    body
}

/// `ubdcc_push_clients_cut_total` from restapi's `/metrics`.
async fn cut_count(address: &str, secret: &str) -> f64 {
    metrics_text(address, secret)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix("ubdcc_push_clients_cut_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

/// The server's own publish → sent histogram: `(upper bound in s, cumulative count)` per bucket.
async fn sent_histogram(address: &str, secret: &str) -> Vec<(f64, f64)> {
    metrics_text(address, secret)
        .await
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("ubdcc_push_publish_to_sent_seconds_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bounds (ms) holding p50 and p99 of what was counted between `before` and `after`.
fn sent_quantiles(before: &[(f64, f64)], after: &[(f64, f64)]) -> (f64, f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(before.iter().map(|b| b.1).chain(std::iter::repeat(0.0)))
        .map(|(&(bound, count), was)| (bound, count - was))
        .collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    let at = |q: f64| {
        delta
            .iter()
            .find(|(_, count)| *count >= q * total)
            .map_or(f64::NAN, |(bound, _)| bound * 1000.0)
    };
    (total, at(0.5), at(0.99))
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_args()?;
    let cluster = format!("pushload{}", std::process::id());
    let secret: String = format!(
        "bench-secret-{:032x}",
        std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15
    );
    let record = Arc::new(Record::new(settings.streams));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = publish(
        &cluster,
        settings.streams,
        settings.rate,
        Arc::clone(&record),
        Arc::clone(&stop_publishing),
    )?;
    let (mut restapi, address) = start_restapi(&cluster, &secret)?;
    let pid = restapi.id();
    let result = run(&settings, &address, &secret, pid, &record);
    stop_publishing.store(true, Ordering::Relaxed);
    restapi.kill().ok();
    restapi.wait().ok();
    publisher.join().ok();
    result
}

fn run(
    settings: &Settings,
    address: &str,
    secret: &str,
    pid: u32,
    record: &Arc<Record>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        std::thread::sleep(Duration::from_millis(500));
        let (_, rss_idle) = usage(pid);
        let request = subscribe_all(settings.streams);
        let stop = Arc::new(AtomicBool::new(false));
        let connecting = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..settings.clients {
            clients.push(tokio::spawn(client(address.to_owned(), request.clone(), Arc::clone(record), Arc::clone(&stop))));
            // Connect in a steady stream, not a burst the accept backlog must absorb.
            tokio::task::yield_now().await;
        }
        let warmup = Duration::from_secs(3);
        tokio::time::sleep(warmup).await;
        println!(
            "push_load: {} clients x {} @bbo streams at {}/s ({} messages/s ideal), {} client threads; connected and warmed up in {:.1} s",
            settings.clients,
            settings.streams,
            settings.rate,
            settings.clients * settings.streams * settings.rate as usize,
            settings.threads,
            connecting.elapsed().as_secs_f64()
        );
        let window = Duration::from_secs(settings.seconds);
        let mut rows = HashMap::new();
        for phase in ["healthy clients", "plus one stalled client"] {
            let release = Arc::new(tokio::sync::Notify::new());
            let stalled = (phase != "healthy clients").then(|| {
                tokio::spawn(stalled_client(
                    address.to_owned(),
                    request.clone(),
                    Arc::clone(&release),
                ))
            });
            record.take();
            record.received.store(0, Ordering::Relaxed);
            let sent_before = sent_histogram(address, secret).await;
            let (cpu_before, _) = usage(pid);
            let started = Instant::now();
            tokio::time::sleep(window).await;
            let elapsed = started.elapsed().as_secs_f64();
            let (cpu_after, rss) = usage(pid);
            let (count, p50, p99, p999, max) = record.take();
            let (sent, sent_p50, sent_p99) =
                sent_quantiles(&sent_before, &sent_histogram(address, secret).await);
            let received = record.received.load(Ordering::Relaxed) as f64 / elapsed;
            let ideal = (settings.clients * settings.streams * settings.rate as usize) as f64;
            println!(
                "{phase:>24}: {count} messages, {received:.0}/s ({:.0}% of ideal); publish->received ms p50 {p50:.2} p99 {p99:.2} p99.9 {p999:.2} max {max:.2}; restapi CPU {:.2} cores, RSS {:.1} MiB ({:.1} KiB per client)",
                100.0 * received / ideal,
                (cpu_after - cpu_before) / elapsed,
                rss as f64 / 1048576.0,
                rss.saturating_sub(rss_idle) as f64 / 1024.0 / settings.clients as f64,
            );
            println!(
                "{:>24}: server side, {sent:.0} messages: publish->sent p50 <= {sent_p50} ms, p99 <= {sent_p99} ms (histogram bucket bounds)",
                ""
            );
            if let Some(stalled) = stalled {
                // Its socket buffers (the kernel's, both ends) fill first; then it is cut
                // CUT_AFTER (5 s) later.
                let mut cut = cut_count(address, secret).await;
                while cut < 1.0 && started.elapsed() < Duration::from_secs(120) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    cut = cut_count(address, secret).await;
                }
                release.notify_one();
                println!(
                    "{:>24}: cut {:.1} s after it subscribed (ubdcc_push_clients_cut_total {cut}); its connection closed when it read again: {}",
                    "stalled client",
                    started.elapsed().as_secs_f64(),
                    stalled.await?.unwrap_or(false)
                );
            }
            rows.insert(phase, p99);
        }
        stop.store(true, Ordering::Relaxed);
        let mut failed = 0;
        for client in clients {
            if !matches!(client.await, Ok(Ok(()))) {
                failed += 1;
            }
        }
        println!("healthy clients that failed or were cut: {failed}");
        anyhow::Ok(())
    })
}
