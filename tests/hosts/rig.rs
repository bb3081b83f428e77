//! The cluster over three hosts: the simulator on the LAN as the exchange, mgmt and restapi on
//! host 1, DCNs (and restapis) where a test wants them, and what the tests ask of them: books
//! created, replicas and their hosts, reads compared with the simulator's truth, the simulator's
//! per-IP figures, a DCN's metrics, and killing a whole host.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http;
use crate::net::{Host, Lan};

/// Heartbeat and eviction fast enough for a test, slow enough for a loaded 2-core machine.
const HEARTBEAT_MS: &str = "300";
const POD_TIMEOUT_MS: &str = "2000";

/// Markets per family the simulator lists.
const SIM_MARKETS: &str = "6";

/// How long pods, replicas and re-placements may take on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A `(exchange, family, market)` book of the simulator.
pub type Book = (&'static str, &'static str, String);

/// `count` books, alternating spot and futures (two REST hosts, so the weight goes further).
pub fn books(count: usize) -> Vec<Book> {
    (0..count)
        .map(|i| match i % 2 {
            0 => ("binance.com", "spot", format!("SIM{}USDT", i / 2)),
            _ => (
                "binance.com-futures",
                "futures",
                format!("SIM{}USDT", i / 2),
            ),
        })
        .collect()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// The address it printed in its readiness line.
    pub address: String,
}

impl Process {
    /// Kills it now (SIGKILL, like a crash) and waits.
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

/// A pod and the host it runs on.
pub struct Pod {
    /// 1, 2 or 3.
    pub host: usize,
    pub process: Process,
}

/// The cluster. Fields drop in order: processes first, then the network they ran in.
pub struct Rig {
    pub sim: Process,
    pub mgmt: Process,
    /// restapis; the first is on host 1.
    pub restapis: Vec<Pod>,
    pub dcns: Vec<Pod>,
    pub lan: Lan,
    cluster: String,
    /// The cluster secret every pod gets in its environment (roles beyond loopback need one).
    secret: String,
}

impl Rig {
    /// The LAN, the simulator, mgmt and a restapi on host 1, a restapi on each of
    /// `restapi_hosts` and a DCN on each of `dcn_hosts`, all registered; `None` when the suite
    /// is skipped on purpose (see [`crate::net::required`]).
    pub fn start(restapi_hosts: &[usize], dcn_hosts: &[usize]) -> Option<Self> {
        if !crate::net::required() {
            return None;
        }
        let lan = Lan::start();
        let sim = start_process(
            lan.exchange_command(binary()),
            &[
                "sim",
                "--host",
                &lan.exchange_ip,
                "--port",
                "0",
                "--markets",
                SIM_MARKETS,
                // The lagging options snapshots are the sync tests' business.
                "--options-snapshot-lag-ms",
                "0",
            ],
            &[],
            &lan.dir.join("sim.log"),
        );
        let secret = format!("{:032x}", crate::net::rand_u128());
        let endpoints = endpoints(&sim.address);
        let host1 = &lan.hosts[0];
        let mut args = vec![
            "mgmt",
            "--host",
            &host1.ip,
            "--port",
            "0",
            "--ephemeral",
            "--pod-timeout-ms",
            POD_TIMEOUT_MS,
            "--recovery-window-ms",
            "1500",
        ];
        for endpoint in &endpoints {
            args.extend(["--exchange-endpoint", endpoint]);
        }
        let env = [("UBDCC_CLUSTER_SECRET", secret.as_str())];
        let mgmt = start_process(
            host1.command(binary()),
            &args,
            &env,
            &lan.dir.join("h1-mgmt.log"),
        );
        let mut rig = Self {
            sim,
            mgmt,
            restapis: Vec::new(),
            dcns: Vec::new(),
            lan,
            cluster: format!("hosts{}", std::process::id()),
            secret,
        };
        for host in std::iter::once(1).chain(restapi_hosts.iter().copied()) {
            rig.add_restapi(host);
        }
        for &host in dcn_hosts {
            rig.add_dcn(host);
        }
        rig.wait_pods();
        Some(rig)
    }

    fn pod_env(&self) -> [(&str, &str); 1] {
        [("UBDCC_CLUSTER_SECRET", self.secret.as_str())]
    }

    fn mgmt_url(&self) -> String {
        format!("http://{}", self.mgmt.address)
    }

    /// Starts a restapi on `host` (reading its host's shared memory first).
    pub fn add_restapi(&mut self, host: usize) {
        let on = &self.lan.hosts[host - 1];
        let mgmt = self.mgmt_url();
        let args = [
            "restapi",
            "--cluster",
            &self.cluster,
            "--host",
            &on.ip,
            "--port",
            "0",
            "--mgmt-url",
            &mgmt,
            "--heartbeat-ms",
            HEARTBEAT_MS,
        ];
        let log = self.log(on, "restapi");
        let process = start_process(on.command(binary()), &args, &self.pod_env(), &log);
        self.restapis.push(Pod { host, process });
    }

    /// Starts a DCN on `host`.
    pub fn add_dcn(&mut self, host: usize) {
        let on = &self.lan.hosts[host - 1];
        let mgmt = self.mgmt_url();
        let endpoints = endpoints(&self.sim.address);
        let mut args = vec![
            "dcn",
            "--cluster",
            &self.cluster,
            "--host",
            &on.ip,
            "--port",
            "0",
            "--mgmt-url",
            &mgmt,
            "--heartbeat-ms",
            HEARTBEAT_MS,
            "--max-books",
            "64",
            "--levels",
            "200",
        ];
        for endpoint in &endpoints {
            args.extend(["--exchange-endpoint", endpoint.as_str()]);
        }
        let log = self.log(on, "dcn");
        let process = start_process(on.command(binary()), &args, &self.pod_env(), &log);
        self.dcns.push(Pod { host, process });
    }

    /// A fresh log file for a `role` on `host`.
    fn log(&self, host: &Host, role: &str) -> std::path::PathBuf {
        let count = self.restapis.len() + self.dcns.len();
        self.lan
            .dir
            .join(format!("h{}-{role}-{count}.log", host.number))
    }

    /// The restapi on host 1.
    pub fn restapi(&self) -> &str {
        &self.restapis[0].process.address
    }

    /// Waits until mgmt knows every pod started.
    pub fn wait_pods(&self) {
        let count = self.restapis.len() + self.dcns.len();
        wait_until(PATIENCE, "pods registered", || {
            let pods = self.pods();
            (pods.len() == count)
                .then_some(())
                .ok_or(format!("{} of {count}: {pods:?}", pods.len()))
        });
    }

    /// `(uid, IP, NODE, ROLE)` of every pod mgmt knows.
    pub fn pods(&self) -> Vec<(String, String, String, String)> {
        let info = self.get(&self.mgmt.address, "/get_cluster_info");
        let pods = info["db"]["pods"].as_object().cloned().unwrap_or_default();
        pods.into_iter()
            .map(|(uid, pod)| {
                let text = |key: &str| pod[key].as_str().unwrap_or_default().to_owned();
                (uid, text("IP"), text("NODE"), text("ROLE"))
            })
            .collect()
    }

    /// The host number of an IP of the LAN.
    pub fn host_of_ip(&self, ip: &str) -> Option<usize> {
        self.lan.hosts.iter().find(|h| h.ip == ip).map(|h| h.number)
    }

    /// GETs `path` from `address` (any host's or the exchange's) and parses the JSON.
    pub fn get(&self, address: &str, path: &str) -> Value {
        self.lan.on_lan(|| http::get_json(address, path))
    }

    /// GETs `path` from `address` as text (a DCN's `/metrics`).
    pub fn get_text(&self, address: &str, path: &str) -> String {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        let (status, head, body) = self.lan.on_lan(|| http::exchange(address, raw.as_bytes()));
        assert_eq!(status, 200, "{path}: {head}\n{body}");
        body
    }

    /// Creates `books` with `desired_quantity` through restapi on host 1.
    pub fn create(&self, books: &[Book], desired_quantity: u32) {
        let restapi = self.restapi();
        for (exchange, _, market) in books {
            let body = json!({"exchange": exchange, "market": market,
                              "desired_quantity": desired_quantity,
                              "update_interval": null, "refresh_interval": null});
            let answer = self
                .lan
                .on_lan(|| http::post_json(restapi, "/create_depthcache", &body));
            assert_eq!(answer["result"], "OK", "{exchange} {market}: {answer}");
        }
    }

    /// `(pod uid, STATUS)` of a book's replicas, from `get_depthcache_info` on host 1's restapi.
    pub fn distribution(&self, exchange: &str, market: &str) -> Vec<(String, String)> {
        let info = self.get(
            self.restapi(),
            &format!("/get_depthcache_info?exchange={exchange}&market={market}"),
        );
        let entries = info["depthcache_info"]["DISTRIBUTION"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        entries
            .into_iter()
            .map(|(uid, entry)| (uid, entry["STATUS"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// The hosts a book's running replicas are on (one entry per replica, in uid order).
    pub fn replica_hosts(&self, exchange: &str, market: &str) -> Vec<usize> {
        let pods = self.pods();
        self.distribution(exchange, market)
            .into_iter()
            .filter(|(_, status)| status == "running")
            .filter_map(|(uid, _)| {
                let (_, ip, _, _) = pods.iter().find(|(u, ..)| *u == uid)?;
                self.host_of_ip(ip)
            })
            .collect()
    }

    /// Waits until every book has exactly `replicas` replicas, all running and all on
    /// `allowed` hosts.
    pub fn wait_running(&self, books: &[Book], replicas: usize, allowed: &[usize]) {
        let allowed: BTreeSet<usize> = allowed.iter().copied().collect();
        wait_until(PATIENCE, "replicas running", || {
            let mut pending = Vec::new();
            for (exchange, _, market) in books {
                let entries = self.distribution(exchange, market).len();
                let hosts = self.replica_hosts(exchange, market);
                let placed_well = hosts.iter().all(|h| allowed.contains(h));
                if entries != replicas || hosts.len() != replicas || !placed_well {
                    pending.push(format!(
                        "{exchange}:{market} {entries} placed, on {hosts:?}"
                    ));
                }
            }
            pending
                .is_empty()
                .then_some(())
                .ok_or(format!("{pending:?}"))
        });
    }

    /// Reads both sides of a book (top 20) through `restapi` and checks them against the
    /// simulator's truth at the update id served.
    pub fn assert_served_correctly(&self, restapi: &str, book: &Book) {
        let (exchange, family, market) = book;
        for side in ["asks", "bids"] {
            let answer = self.get(
                restapi,
                &format!("/get_{side}?exchange={exchange}&market={market}&limit_count=20"),
            );
            assert_eq!(answer["result"], "OK", "{exchange} {market}: {answer}");
            let update_id = answer["last_update_id"].as_u64().expect("last_update_id");
            let held = levels(&answer[side], Value::as_f64);
            let truth = self.get(
                &self.sim.address,
                &format!("/sim/truth?family={family}&symbol={market}&update_id={update_id}"),
            );
            let parse = |v: &Value| v.as_str().and_then(|t| t.parse().ok());
            let expected = levels(&truth[side], parse);
            let top = 20.min(expected.len());
            assert_eq!(
                held,
                expected[..top],
                "{restapi} {exchange} {market} {side} at {update_id}"
            );
        }
    }

    /// The simulator's REST figures of `family` (`/sim/stats` → `rest.<family>`).
    pub fn sim_rest_stats(&self, family: &str) -> Value {
        self.get(&self.sim.address, "/sim/stats")["rest"][family].clone()
    }

    /// Depth requests for `symbol` the simulator counted from host `host`'s IP.
    pub fn snapshot_requests_from(&self, host: usize, family: &str, symbol: &str) -> u64 {
        let ip = &self.lan.hosts[host - 1].ip;
        self.sim_rest_stats(family)["by_ip"][ip]["snapshot_requests"][symbol]
            .as_u64()
            .unwrap_or(0)
    }

    /// Kills every process of host `host` (SIGKILL), its namespace keeper included, and
    /// unplugs it: the machine is gone, with its shared memory and its IP.
    pub fn kill_host(&mut self, host: usize) {
        for pod in self.dcns.iter_mut().chain(self.restapis.iter_mut()) {
            if pod.host == host {
                pod.process.kill();
            }
        }
        self.lan.kill_host(host);
    }
}

/// The `ubdcc` binary under test.
fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ubdcc"))
}

/// `EXCHANGE=URL` for every family the simulator at `sim` serves.
fn endpoints(sim: &str) -> Vec<String> {
    [
        "binance.com",
        "binance.com-futures",
        "binance.com-vanilla-options",
    ]
    .iter()
    .map(|exchange| format!("{exchange}=http://{sim}"))
    .collect()
}

/// Starts `command` with `args` and `env` and waits for its readiness line.
fn start_process(
    mut command: std::process::Command,
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> Process {
    command.args(args).envs(env.iter().copied());
    let (child, address) = crate::net::start_listening(command, log);
    Process { child, address }
}

/// `[[price, quantity], …]` as float pairs.
fn levels(side: &Value, number: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    side.as_array()
        .unwrap_or_else(|| panic!("not a list of levels: {side}"))
        .iter()
        .map(|level| {
            let value = |i: usize| number(&level[i]).unwrap_or_else(|| panic!("level {level}"));
            (value(0), value(1))
        })
        .collect()
}

/// Polls `check` every 100 ms until it is `Ok`; panics with its last error after `limit`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(error) if started.elapsed() > limit => {
                panic!("{what}: not within {limit:?}: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
