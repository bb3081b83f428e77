//! What the cluster-scale benches share: a cluster of real `ubdcc` processes (simulator, mgmt and
//! DCNs, no restapi) started from the binary cargo built for the bench, plain HTTP/1.1 calls to
//! them, the census of replicas as mgmt and shared memory show them, the DCNs' counters, and the
//! clean-up of everything a run leaves behind (shared-memory segments, the ban board, mgmt's
//! state file, the logs), also when the bench panics or fails.
//!
//! The processes get an explicit `--cluster-secret` rather than this machine's token file, so a
//! bench neither depends on nor creates `~/.ubdcc/machine.token`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use ubdcc_shm::{BookStatus, ClusterReader};

/// The exchange string of Binance spot, the family every book of these benches is on.
pub const SPOT: &str = "binance.com";

/// Levels a deepened book covers (the engine's full snapshot depth, the DCNs' `--levels`).
pub const FULL_DEPTH: u32 = ubdcc_engine::SNAPSHOT_LIMIT;

/// An HTTP answer that has not come in this time has failed (mgmt's list of 1 000 books with two
/// replicas each is ~1 MB; on a loaded 2-core machine it can take a while).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the cluster is built.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Markets per family the simulator lists (`SIM0USDT`…).
    pub markets: usize,
    /// Events per second per market.
    pub rate: u32,
    /// DCNs to start.
    pub dcns: usize,
    /// Levels of a book's first snapshot (`ubdcc dcn --initial-depth`).
    pub initial_depth: u32,
    /// Longest time between a DCN's heartbeats (`--heartbeat-ms`).
    pub heartbeat_ms: u64,
    /// mgmt evicts a DCN after this long without a heartbeat (`--pod-timeout-ms`).
    pub pod_timeout_ms: u64,
    /// Keep every process's log (stderr) after the run.
    pub keep_logs: bool,
}

/// A child process, killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// The address it printed in its readiness line.
    pub address: String,
}

impl Process {
    /// Starts `ubdcc args…` with `env`, its stderr into `log`, and waits for its readiness line
    /// (`listening on <address>`).
    fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> anyhow::Result<Self> {
        let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting ubdcc")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(address) = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
        else {
            child.kill().ok();
            child.wait().ok();
            bail!(
                "no readiness line from ubdcc {args:?}: {line:?} (see {})",
                log.display()
            );
        };
        let address = address.to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, address })
    }

    /// Kills it now (SIGKILL: no goodbye to mgmt, its segment left behind) and waits.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A DCN of the cluster.
pub struct Dcn {
    /// Its pod name, also the last part of its segment's name.
    pub name: String,
    /// Its uid in mgmt's state (the key of its replicas in a `DISTRIBUTION`).
    pub uid: String,
    /// The process.
    pub process: Process,
}

/// Removes what a run leaves behind when dropped: the cluster's segments (a killed DCN cannot),
/// the ban board, and the work directory (mgmt's state and the logs) unless the logs are kept.
struct Leftovers {
    cluster: String,
    ban_board: PathBuf,
    work_dir: PathBuf,
    keep_logs: bool,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let prefix = format!("ubdcc.{}.", self.cluster);
        let board = self.ban_board.file_name().map(|name| name.to_owned());
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // The ban board and any companion file it may have (a lock) share its name.
            let of_board = board
                .as_ref()
                .is_some_and(|board| name.starts_with(&*board.to_string_lossy()));
            if name.starts_with(&prefix) || of_board {
                std::fs::remove_file(entry.path()).ok();
            }
        }
        if self.keep_logs {
            eprintln!("logs kept in {}", self.work_dir.display());
        } else {
            std::fs::remove_dir_all(&self.work_dir).ok();
        }
    }
}

/// Replicas as mgmt's `get_depthcache_list` shows them.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Books with exactly the wanted replicas, all `running`, none on the excluded DCN.
    pub complete: usize,
    /// Replicas placed (on any DCN mgmt still lists).
    pub placed: usize,
    /// Replicas `running`.
    pub running: usize,
    /// Replicas still placed on the excluded DCN.
    pub on_excluded: usize,
    /// Running replicas whose book covers [`FULL_DEPTH`] levels.
    pub deep: usize,
    /// Books with at least one such replica.
    pub deep_books: usize,
    /// The depth of every running replica not at [`FULL_DEPTH`] (a book started shallow covers
    /// fewer levels as the price leaves the range its snapshot held), sorted.
    pub shallow_depths: Vec<u32>,
}

/// The DCNs' counters (`/metrics`), summed over the DCNs asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// REST snapshots started.
    pub downloads: f64,
    /// REST weight spent on them.
    pub weight: f64,
    /// Books started from a copy in this host's shared memory.
    pub seeds_shm: f64,
    /// Books started from a peer's copy over HTTP.
    pub seeds_http: f64,
    /// Copies that failed midway.
    pub seed_failures: f64,
    /// 429 and 418 answers.
    pub rejections: f64,
}

impl Counters {
    /// What was counted since `before`.
    pub fn since(self, before: Counters) -> Counters {
        self.combine(before, |now, then| now - then)
    }

    /// Both counts together.
    pub fn plus(self, other: Counters) -> Counters {
        self.combine(other, |a, b| a + b)
    }

    fn combine(self, other: Counters, op: impl Fn(f64, f64) -> f64) -> Counters {
        Counters {
            downloads: op(self.downloads, other.downloads),
            weight: op(self.weight, other.weight),
            seeds_shm: op(self.seeds_shm, other.seeds_shm),
            seeds_http: op(self.seeds_http, other.seeds_http),
            seed_failures: op(self.seed_failures, other.seed_failures),
            rejections: op(self.rejections, other.rejections),
        }
    }

    /// The downloads split by weight into `(shallow, deep)`: on spot a snapshot of up to 100
    /// levels weighs 5 (a book's start) and one of 1 000 weighs 50 (a deepening, or a quiet
    /// book's verification). The counters have no label for the kind, the weights tell it.
    pub fn by_depth(self) -> (f64, f64) {
        let deep = ((self.weight - 5.0 * self.downloads) / 45.0).max(0.0);
        (self.downloads - deep, deep)
    }
}

/// A cluster of real processes; dropping it kills them and removes what they left behind.
pub struct Cluster {
    /// The cluster name (segments are `ubdcc.<name>.<dcn>`).
    pub name: String,
    /// The simulator.
    pub sim: Process,
    /// mgmt.
    pub mgmt: Process,
    /// The DCNs, in the order they were started.
    pub dcns: Vec<Dcn>,
    secret: String,
    /// Declared last: dropped after every process is killed.
    leftovers: Leftovers,
}

impl Cluster {
    /// Starts the simulator, mgmt and `settings.dcns` DCNs; returns once mgmt lists every DCN.
    /// `tag` makes the cluster's name unique within the run.
    pub fn start(settings: &Settings, tag: &str) -> anyhow::Result<Self> {
        let name = format!("psb{tag}{}", std::process::id());
        let work_dir = std::env::temp_dir().join(format!("ubdcc-bench-{name}"));
        std::fs::remove_dir_all(&work_dir).ok();
        std::fs::create_dir_all(&work_dir)?;
        let leftovers = Leftovers {
            cluster: name.clone(),
            ban_board: PathBuf::from(format!("/dev/shm/ubdcc-bans-bench-{name}")),
            work_dir,
            keep_logs: settings.keep_logs,
        };
        // Unique per run: at least 16 characters, as every role requires.
        let secret = format!("bench-secret-{name}-{}", unix_nanos());
        let sim = start_sim(settings, &leftovers)?;
        let mgmt = start_mgmt(settings, &leftovers, &sim, &secret)?;
        let mut cluster = Self {
            name,
            sim,
            mgmt,
            dcns: Vec::new(),
            secret,
            leftovers,
        };
        for index in 0..settings.dcns {
            cluster.add_dcn(settings, index)?;
        }
        cluster.wait_dcns_registered(settings.dcns)?;
        for dcn in &mut cluster.dcns {
            let test = get_json(&dcn.process.address, "/test")?;
            dcn.uid = test["pod"]["uid"]
                .as_str()
                .context("a uid in the DCN's /test")?
                .to_owned();
        }
        Ok(cluster)
    }

    fn add_dcn(&mut self, settings: &Settings, index: usize) -> anyhow::Result<()> {
        let name = format!("bench-dcn-{index}");
        let mgmt = format!("http://{}", self.mgmt.address);
        let endpoint = format!("{SPOT}=http://{}", self.sim.address);
        let (heartbeat, depth, levels) = (
            settings.heartbeat_ms.to_string(),
            settings.initial_depth.to_string(),
            FULL_DEPTH.to_string(),
        );
        let args = [
            "dcn",
            "--cluster",
            &self.name,
            "--name",
            &name,
            "--port",
            "0",
            "--mgmt-url",
            &mgmt,
            "--heartbeat-ms",
            &heartbeat,
            "--exchange-endpoint",
            &endpoint,
            "--initial-depth",
            &depth,
            "--max-books",
            "1024",
            "--levels",
            &levels,
            "--cluster-secret",
            &self.secret,
            // No audits (on by default since issue 16): an audit downloads a 1 000-level
            // snapshot, which the bench's counters cannot tell from a deepening (both weigh 50),
            // and it would take the spare weight the deepening is measured on.
            "--audit-interval-secs",
            "0",
        ];
        let log = self.leftovers.work_dir.join(format!("{name}.log"));
        let board = self.leftovers.ban_board.to_string_lossy().into_owned();
        let process = Process::start(&args, &[("UBDCC_BAN_BOARD", &board)], &log)?;
        self.dcns.push(Dcn {
            name,
            uid: String::new(),
            process,
        });
        Ok(())
    }

    fn wait_dcns_registered(&self, dcns: usize) -> anyhow::Result<()> {
        wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
            let info = get_json(&self.mgmt.address, "/get_cluster_info")?;
            let pods = info["db"]["pods"].as_object().map_or(0, |pods| pods.len());
            Ok((pods == dcns).then_some(()))
        })
        .context("mgmt lists every DCN")
    }

    /// Creates spot books `SIM0USDT`… `SIM<books-1>USDT` with `desired_quantity` replicas, in
    /// one `create_depthcaches` call to mgmt's public API.
    pub fn create(&self, books: usize, desired_quantity: u32) -> anyhow::Result<()> {
        let markets: Vec<String> = (0..books).map(market).collect();
        let body = json!({"exchange": SPOT, "markets": markets, "desired_quantity": desired_quantity,
                          "update_interval": null, "refresh_interval": null});
        let answer = post_json(&self.mgmt.address, "/create_depthcaches", &body)?;
        if answer["result"] != "OK" {
            bail!("create_depthcaches: {answer}");
        }
        Ok(())
    }

    /// The replicas of the first `books` books as mgmt shows them; `excluded`: a DCN that no
    /// replica should be on (a killed one).
    pub fn census(
        &self,
        books: usize,
        desired: usize,
        excluded: Option<&str>,
    ) -> anyhow::Result<Census> {
        let list = get_json(&self.mgmt.address, "/get_depthcache_list")?;
        let markets = &list["depthcache_list"][SPOT];
        let mut census = Census::default();
        for index in 0..books {
            let distribution = markets[market(index)]["DISTRIBUTION"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let (mut running, mut deep) = (0, 0);
            for replica in distribution.values() {
                if replica["STATUS"] != "running" {
                    continue;
                }
                let depth = replica["DEPTH"].as_u64().unwrap_or(0);
                running += 1;
                match u32::try_from(depth).unwrap_or(u32::MAX) {
                    FULL_DEPTH.. => deep += 1,
                    shallow => census.shallow_depths.push(shallow),
                }
            }
            census.deep += deep;
            census.deep_books += usize::from(deep > 0);
            let on_excluded = excluded.is_some_and(|uid| distribution.contains_key(uid));
            census.placed += distribution.len();
            census.running += running;
            census.on_excluded += usize::from(on_excluded);
            census.complete +=
                usize::from(running == desired && distribution.len() == desired && !on_excluded);
        }
        census.shallow_depths.sort_unstable();
        Ok(census)
    }

    /// The counters of `dcns`, summed.
    pub fn counters<'a>(
        &self,
        dcns: impl IntoIterator<Item = &'a Dcn>,
    ) -> anyhow::Result<Counters> {
        let mut sum = Counters::default();
        for dcn in dcns {
            sum = sum.plus(self.counters_of(dcn)?);
        }
        Ok(sum)
    }

    /// The counters of one DCN.
    pub fn counters_of(&self, dcn: &Dcn) -> anyhow::Result<Counters> {
        let text = self.metrics(dcn)?;
        let read = |series: &str| metric(&text, series).unwrap_or(0.0);
        Ok(Counters {
            downloads: read("ubdcc_snapshot_downloads_total"),
            weight: read("ubdcc_snapshot_weight_total"),
            seeds_shm: read("ubdcc_book_seeds_total{source=\"shm\"}"),
            seeds_http: read("ubdcc_book_seeds_total{source=\"http\"}"),
            seed_failures: read("ubdcc_book_seed_failures_total"),
            rejections: read("ubdcc_snapshot_rejections_total{code=\"429\"}")
                + read("ubdcc_snapshot_rejections_total{code=\"418\"}"),
        })
    }

    /// A DCN's `/metrics` (an internal endpoint: it needs the cluster secret).
    fn metrics(&self, dcn: &Dcn) -> anyhow::Result<String> {
        let header = [("x-ubdcc-cluster-secret", self.secret.as_str())];
        let (status, body) = request(&dcn.process.address, "GET", "/metrics", &header, None)?;
        if status != 200 {
            bail!("/metrics of {}: HTTP {status}: {body}", dcn.name);
        }
        Ok(body)
    }

    /// The simulator's `/sim/stats` of spot's REST host.
    pub fn spot_rest_stats(&self) -> anyhow::Result<Value> {
        Ok(get_json(&self.sim.address, "/sim/stats")?["rest"]["spot"].take())
    }

    /// Replicas mgmt has placed on each DCN, in the order of [`Cluster::dcns`].
    pub fn holdings(&self) -> anyhow::Result<Vec<usize>> {
        let list = get_json(&self.mgmt.address, "/get_depthcache_list")?;
        let mut held = vec![0; self.dcns.len()];
        let records = list["depthcache_list"][SPOT].as_object().cloned();
        for record in records.unwrap_or_default().values() {
            for (index, dcn) in self.dcns.iter().enumerate() {
                held[index] += usize::from(record["DISTRIBUTION"].get(&dcn.uid).is_some());
            }
        }
        Ok(held)
    }
}

/// The `index`-th market of the simulator's spot family.
pub fn market(index: usize) -> String {
    format!("SIM{index}USDT")
}

/// Synced replicas in this host's shared memory: over all of the cluster's segments but the
/// one of DCN `excluded` (a killed DCN's segment stays behind); and books with at least one.
pub fn shm_synced(reader: &mut ClusterReader, excluded: Option<&str>) -> (usize, usize) {
    let skipped = excluded.map(|dcn| format!(".{dcn}"));
    let mut replicas = 0;
    let mut books = std::collections::HashSet::new();
    for listing in reader.list() {
        let on_excluded = skipped
            .as_ref()
            .is_some_and(|suffix| listing.segment.ends_with(suffix.as_str()));
        if on_excluded || !matches!(listing.status, Ok(BookStatus::Synced)) {
            continue;
        }
        replicas += 1;
        books.insert(listing.market);
    }
    (replicas, books.len())
}

/// Progress on stderr, one line rewritten in place, at most once a second (a captured log
/// stays readable).
#[derive(Default)]
pub struct Progress(Option<Instant>);

impl Progress {
    /// Shows `line` unless the last one was shown less than a second ago.
    pub fn show(&mut self, line: std::fmt::Arguments<'_>) {
        if self
            .0
            .is_some_and(|shown| shown.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.0 = Some(Instant::now());
        eprint!("\r{line} ");
    }
}

/// Calls `check` every `poll` until it gives a value; an error after `limit`, or at once when
/// `check` fails.
pub fn wait_for<T>(
    limit: Duration,
    poll: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("not within {limit:?}");
        }
        std::thread::sleep(poll);
    }
}

/// The simulator: `markets` per family at `rate`, the options snapshot lag off (options are not
/// used here; a lag would only make the simulator keep more history).
fn start_sim(settings: &Settings, leftovers: &Leftovers) -> anyhow::Result<Process> {
    let (markets, rate) = (settings.markets.to_string(), settings.rate.to_string());
    let args = [
        "sim",
        "--port",
        "0",
        "--markets",
        &markets,
        "--rate",
        &rate,
        "--options-snapshot-lag-ms",
        "0",
    ];
    Process::start(&args, &[], &leftovers.work_dir.join("sim.log"))
}

/// mgmt with its state file in the work directory, checking creates against the simulator's
/// listing, evicting a silent DCN after `pod_timeout_ms`.
fn start_mgmt(
    settings: &Settings,
    leftovers: &Leftovers,
    sim: &Process,
    secret: &str,
) -> anyhow::Result<Process> {
    let data_dir = leftovers.work_dir.join("mgmt");
    let data_dir = data_dir.to_str().context("a UTF-8 temp dir")?;
    let timeout = settings.pod_timeout_ms.to_string();
    let endpoint = format!("{SPOT}=http://{}", sim.address);
    let args = [
        "mgmt",
        "--port",
        "0",
        "--data-dir",
        data_dir,
        "--pod-timeout-ms",
        &timeout,
        // A fresh cluster has no pods whose copies are worth waiting for.
        "--recovery-window-ms",
        "500",
        "--exchange-endpoint",
        &endpoint,
        "--cluster-secret",
        secret,
    ];
    Process::start(&args, &[], &leftovers.work_dir.join("mgmt.log"))
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// The value of the metric line starting with `series` (name and labels), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// GETs `path` and parses the body as JSON.
pub fn get_json(address: &str, path: &str) -> anyhow::Result<Value> {
    let (_, body) = request(address, "GET", path, &[], None)?;
    serde_json::from_str(&body).with_context(|| format!("GET {path}: {body:.200}"))
}

/// POSTs `body` as JSON to `path` and parses the answer as JSON.
pub fn post_json(address: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let (_, answer) = request(address, "POST", path, &[], Some(&body.to_string()))?;
    serde_json::from_str(&answer).with_context(|| format!("POST {path}: {answer:.200}"))
}

/// One HTTP/1.1 request on a connection of its own; the status and the (de-chunked) body.
fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("{method} {path} at {address}"))?;
    let text = String::from_utf8(response).context("a UTF-8 answer")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("an HTTP answer from {address}: {text:.200}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("a status line: {head:.200}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || size > rest.len() {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
