//! The cluster end to end: mgmt, two restapis (one reading shared memory, one only over HTTP)
//! and three DCNs against the simulator. 100 books with two replicas each are served equal to
//! the truth, survive a DCN killed under continuous reads and two mgmt restarts, and a stopped
//! book disappears everywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ubdcc_shm::{ClusterReader, ReadError, Side};

use crate::cluster::{Cleanup, Process, markets};
use crate::http::{get_json, get_json_auth, post_json};
use crate::sync::{assert_matches, truth};

/// Heartbeat and eviction fast enough for a test, slow enough for a loaded 2-core machine.
const HEARTBEAT_MS: &str = "300";
const POD_TIMEOUT_MS: &str = "2000";

/// The pods of a test cluster.
pub struct Rig {
    pub sim: Process,
    pub mgmt: Process,
    pub mgmt_port: String,
    pub data_dir: std::path::PathBuf,
    /// Reads from shared memory first.
    pub local: Process,
    /// Reads over HTTP only.
    pub remote: Process,
    pub dcns: Vec<Process>,
    pub cluster: String,
    /// Arguments every pod gets (secrets).
    pub pod_args: Vec<String>,
    _cleanup: Cleanup,
}

impl Rig {
    /// A simulator with `sim_markets` markets per family, mgmt, two restapis and `dcns` DCNs.
    pub fn start(name: &str, sim_markets: usize, dcns: usize) -> Self {
        Self::start_with(name, sim_markets, dcns, &[])
    }

    /// Like [`Rig::start`], with `pod_args` given to mgmt, both restapis and every DCN.
    pub fn start_with(name: &str, sim_markets: usize, dcns: usize, pod_args: &[&str]) -> Self {
        let pod_args: Vec<String> = pod_args.iter().map(|a| (*a).to_owned()).collect();
        let cluster = format!("gw{name}{}", std::process::id());
        let cleanup = Cleanup(cluster.clone());
        let markets = sim_markets.to_string();
        let sim = Process::start(&[
            "sim",
            "--port",
            "0",
            "--markets",
            &markets,
            // The lagging options snapshots of real Binance are covered by the sync tests; here
            // they would only add retries that eat the options weight the replacements need.
            "--options-snapshot-lag-ms",
            "0",
        ]);
        let data_dir = std::env::temp_dir().join(format!("ubdcc-{cluster}"));
        std::fs::remove_dir_all(&data_dir).ok();
        let mgmt = start_mgmt("0", &data_dir, &sim.address, &pod_args);
        let mgmt_port = mgmt.address.rsplit(':').next().unwrap().to_owned();
        let mut rig = Self {
            local: start_restapi(&cluster, &mgmt.address, false, &pod_args),
            remote: start_restapi(&cluster, &mgmt.address, true, &pod_args),
            sim,
            mgmt,
            mgmt_port,
            data_dir,
            dcns: Vec::new(),
            cluster,
            pod_args,
            _cleanup: cleanup,
        };
        for _ in 0..dcns {
            rig.add_dcn();
        }
        rig.wait_pods(2 + dcns);
        rig
    }

    /// Starts one more DCN.
    pub fn add_dcn(&mut self) {
        let endpoints = crate::cluster::sim_endpoints(&self.sim.address);
        let mgmt = format!("http://{}", self.mgmt.address);
        let mut args = vec![
            "dcn",
            "--cluster",
            &self.cluster,
            "--port",
            "0",
            "--mgmt-url",
            &mgmt,
            "--heartbeat-ms",
            HEARTBEAT_MS,
            // Three DCNs share the simulator's per-IP weight limits, as on one host.
            "--weight-share",
            "0.33",
            "--max-books",
            "256",
            "--levels",
            "200",
        ];
        for endpoint in &endpoints {
            args.extend(["--exchange-endpoint", endpoint.as_str()]);
        }
        args.extend(self.pod_args.iter().map(String::as_str));
        self.dcns.push(Process::start(&args));
    }

    /// Waits until mgmt knows `count` pods.
    pub fn wait_pods(&self, count: usize) {
        wait_until(Duration::from_secs(30), "pods registered", || {
            let info = get_json_auth(&self.mgmt.address, "/get_cluster_info", self.token());
            let pods = info["db"]["pods"].as_object().map_or(0, |pods| pods.len());
            (pods == count)
                .then_some(())
                .ok_or(format!("{pods} of {count}: {info}"))
        });
    }

    /// The cluster secret the pods use: the one they were given, else this machine's token.
    pub fn cluster_secret(&self) -> String {
        match self.pod_args.iter().position(|a| a == "--cluster-secret") {
            Some(at) => self.pod_args[at + 1].clone(),
            None => crate::cluster::machine_token(),
        }
    }

    /// The public API's token, if the pods were given one.
    pub fn token(&self) -> Option<&str> {
        let at = self.pod_args.iter().position(|a| a == "--api-token")?;
        self.pod_args.get(at + 1).map(String::as_str)
    }

    /// The uid of a DCN.
    pub fn uid(&self, dcn: &Process) -> String {
        get_json(&dcn.address, "/test")["pod"]["uid"]
            .as_str()
            .expect("uid")
            .to_owned()
    }

    /// Kills mgmt (SIGKILL, as a crash) and starts it again on the same port, with its state
    /// file (`keep_file`) or with none, so only the pods' copies can bring the state back.
    pub fn restart_mgmt(&mut self, keep_file: bool) {
        let port = self.mgmt_port.clone();
        self.mgmt.kill();
        if !keep_file {
            std::fs::remove_dir_all(&self.data_dir).ok();
        }
        self.mgmt = start_mgmt(&port, &self.data_dir, &self.sim.address, &self.pod_args);
    }
}

/// mgmt, checking creates against the simulator's listings.
fn start_mgmt(port: &str, data_dir: &std::path::Path, sim: &str, pod_args: &[String]) -> Process {
    let endpoints = crate::cluster::sim_endpoints(sim);
    let mut args = vec![
        "mgmt",
        "--port",
        port,
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--pod-timeout-ms",
        POD_TIMEOUT_MS,
        "--recovery-window-ms",
        "1500",
    ];
    for endpoint in &endpoints {
        args.extend(["--exchange-endpoint", endpoint.as_str()]);
    }
    args.extend(pod_args.iter().map(String::as_str));
    Process::start(&args)
}

fn start_restapi(cluster: &str, mgmt: &str, remote_only: bool, pod_args: &[String]) -> Process {
    let mgmt = format!("http://{mgmt}");
    let mut args = vec![
        "restapi",
        "--cluster",
        cluster,
        "--port",
        "0",
        "--mgmt-url",
        &mgmt,
        "--heartbeat-ms",
        HEARTBEAT_MS,
    ];
    if remote_only {
        args.push("--no-local-reads");
    }
    args.extend(pod_args.iter().map(String::as_str));
    Process::start(&args)
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

/// `(exchange, family, market)` of the 100 books, spread over the three API families so that
/// the first syncs and the replacements after a kill fit one minute of each family's weight.
fn hundred_books() -> Vec<(&'static str, &'static str, String)> {
    markets(34, 33, 33)
}

/// Creates `books` with `desired_quantity` through restapi, one create_depthcaches per exchange.
pub(crate) fn create(restapi: &str, books: &[(&str, &str, String)], desired_quantity: u32) {
    let mut exchanges: Vec<&str> = books.iter().map(|(exchange, _, _)| *exchange).collect();
    exchanges.dedup();
    for exchange in exchanges {
        let markets: Vec<&str> = books
            .iter()
            .filter(|(e, _, _)| *e == exchange)
            .map(|(_, _, market)| market.as_str())
            .collect();
        let body = json!({"exchange": exchange, "markets": markets, "desired_quantity": desired_quantity,
                          "update_interval": null, "refresh_interval": null});
        let answer = post_json(restapi, "/create_depthcaches", &body);
        assert_eq!(answer["result"], "OK", "{answer}");
    }
}

/// Waits until every book has `replicas` running replicas, none on `excluded`; returns the list.
pub(crate) fn wait_running(
    rig: &Rig,
    books: &[(&str, &str, String)],
    replicas: usize,
    excluded: Option<&str>,
    limit: Duration,
) {
    wait_until(limit, "replicas running", || {
        let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
        let mut pending = Vec::new();
        for (exchange, _, market) in books {
            let distribution = &list["depthcache_list"][exchange][market]["DISTRIBUTION"];
            let entries = distribution.as_object().cloned().unwrap_or_default();
            let running = entries
                .values()
                .filter(|e| e["STATUS"] == "running")
                .count();
            let on_excluded = excluded.is_some_and(|uid| entries.contains_key(uid));
            if running != replicas || entries.len() != replicas || on_excluded {
                pending.push(format!("{exchange}:{market} {running}/{}", entries.len()));
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            if std::env::var_os("UBDCC_E2E_VERBOSE").is_some() {
                println!(
                    "{} pending, e.g. {:?}",
                    pending.len(),
                    &pending[..pending.len().min(5)]
                );
            }
            Err(format!(
                "{} pending, e.g. {:?}",
                pending.len(),
                &pending[..pending.len().min(5)]
            ))
        }
    });
}

/// The levels of an OK get_asks / get_bids answer.
fn levels(answer: &Value, key: &str) -> Vec<(f64, f64)> {
    answer[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {answer}"))
        .iter()
        .map(|level| (level[0].as_f64().unwrap(), level[1].as_f64().unwrap()))
        .collect()
}

/// Reads a book through `restapi` and checks it against the truth at its update id.
pub(crate) fn assert_served_correctly(
    rig: &Rig,
    restapi: &str,
    exchange: &str,
    family: &str,
    market: &str,
) {
    for (path, key, side) in [
        ("get_asks", "asks", Side::Asks),
        ("get_bids", "bids", Side::Bids),
    ] {
        let answer = get_json(
            restapi,
            &format!("/{path}?exchange={exchange}&market={market}&limit_count=20"),
        );
        assert_eq!(answer["result"], "OK", "{exchange} {market}: {answer}");
        let update_id = answer["last_update_id"].as_u64().expect("last_update_id");
        let expected = truth(&rig.sim.address, family, market, update_id, side);
        let held = levels(&answer, key);
        assert_eq!(held.len(), 20.min(expected.len()), "{exchange} {market}");
        assert_matches(
            &held,
            &expected[..held.len()],
            &format!("{restapi} {exchange} {market} {path}"),
        );
    }
}

#[test]
fn a_hundred_books_with_two_replicas_survive_a_dcn_kill_and_mgmt_restarts() {
    let mut rig = Rig::start("h", 34, 3);
    let started = Instant::now();
    let books = hundred_books();
    create(&rig.local.address, &books, 2);
    let key = post_json(
        &rig.local.address,
        "/add_credentials",
        &json!({"account_group": "binance.com", "api_key": "e2eKEY0123456789", "api_secret": "e2eSECRET"}),
    );
    assert_eq!(key["result"], "OK", "{key}");
    wait_running(&rig, &books, 2, None, Duration::from_secs(150));
    println!("200 replicas running after {:?}", started.elapsed());

    // Every book served by both restapis and equal to the truth.
    for (exchange, family, market) in &books {
        assert_served_correctly(&rig, &rig.local.address, exchange, family, market);
        assert_served_correctly(&rig, &rig.remote.address, exchange, family, market);
    }

    // Continuous reads through both restapis while one DCN dies.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = [rig.local.address.clone(), rig.remote.address.clone()]
        .into_iter()
        .map(|restapi| {
            let (stop, failures, reads, books) =
                (stop.clone(), failures.clone(), reads.clone(), books.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (exchange, _, market) = &books[i % books.len()];
                    i += 1;
                    let answer = get_json(
                        &restapi,
                        &format!("/get_asks?exchange={exchange}&market={market}&limit_count=5"),
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    let served = answer["result"] == "OK"
                        && answer["asks"].as_array().is_some_and(|a| a.len() == 5);
                    if !served {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{restapi} {exchange} {market}: {answer}"));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let victim = rig.dcns.remove(1);
    let victim_uid = rig.uid(&victim);
    drop(victim); // SIGKILL
    let killed = Instant::now();
    wait_running(&rig, &books, 2, Some(&victim_uid), Duration::from_secs(150));
    println!(
        "replicas of the killed DCN replaced and running after {:?}",
        killed.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} reads failed, e.g. {:?}",
        failures.len(),
        reads.load(Ordering::Relaxed),
        &failures[..failures.len().min(3)]
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the readers kept reading"
    );

    // mgmt crashes and comes back: first from its own file, then with nothing but the pods' copies.
    for keep_file in [true, false] {
        let restarted = Instant::now();
        rig.restart_mgmt(keep_file);
        wait_until(Duration::from_secs(30), "mgmt recovered", || {
            let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
            let count: usize = list["depthcache_list"].as_object().map_or(0, |e| {
                e.values()
                    .map(|m| m.as_object().map_or(0, |m| m.len()))
                    .sum()
            });
            (count == books.len()).then_some(()).ok_or(format!(
                "{count} books: {}",
                list.to_string().chars().take(200).collect::<String>()
            ))
        });
        let credentials = get_json(&rig.mgmt.address, "/get_credentials_list");
        assert_eq!(
            credentials["credentials"].as_array().map(Vec::len),
            Some(1),
            "keep_file={keep_file}: {credentials}"
        );
        assert!(!credentials.to_string().contains("e2eSECRET"));
        wait_running(&rig, &books, 2, Some(&victim_uid), Duration::from_secs(60));
        println!(
            "mgmt restarted (state file kept: {keep_file}), state back after {:?}",
            restarted.elapsed()
        );
    }
    assert_served_correctly(&rig, &rig.remote.address, "binance.com", "spot", "SIM0USDT");

    // A stopped book is gone from every DCN and from shared memory.
    let stop = get_json(
        &rig.local.address,
        "/stop_depthcache?exchange=binance.com&market=SIM0USDT",
    );
    assert_eq!(stop["result"], "OK", "{stop}");
    let mut reader = ClusterReader::open(&rig.cluster).unwrap();
    wait_until(Duration::from_secs(30), "book gone", || {
        let in_shm = !matches!(
            reader.info("binance.com", "SIM0USDT"),
            Err(ReadError::NotFound { .. })
        );
        let on_dcns: Vec<String> = rig
            .dcns
            .iter()
            .map(|dcn| {
                get_json(
                    &dcn.address,
                    "/get_asks?exchange=binance.com&market=SIM0USDT",
                )["error_id"]
                    .to_string()
            })
            .filter(|id| id != "\"#7000\"")
            .collect();
        (!in_shm && on_dcns.is_empty())
            .then_some(())
            .ok_or(format!("in shm: {in_shm}, DCNs: {on_dcns:?}"))
    });
    for restapi in [&rig.local.address, &rig.remote.address] {
        let answer = get_json(restapi, "/get_asks?exchange=binance.com&market=SIM0USDT");
        assert_eq!(answer["error_id"], "#7000", "{answer}");
    }
}
