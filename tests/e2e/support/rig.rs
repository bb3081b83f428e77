//! The rigs tests start from. [`ClusterRig`]: the simulator, mgmt, two restapis (one reading
//! shared memory, one only over HTTP) and DCNs placed by mgmt. [`DcnRig`]: the simulator and one
//! standalone DCN, for faults a test injects and watches in shared memory. [`start_dcn`]: a
//! standalone DCN for tests that need a shape of their own. [`untouched`]: whether books stayed
//! synced without a resync through what a test did to their neighbours or connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use ubdcc_shm::{BookInfo, BookProof, BookStatus, ClusterReader, Side};

use super::http::{get_json, get_json_auth, post_json};
use super::process::machine_token;
use super::sim::{Market, inject, stats};
use super::truth::assert_shm_side_equals_truth;
use super::wait::{SHM_POLL, wait_book, wait_until, wait_until_every};
use super::{Cleanup, Process, sim_endpoints, wait_synced};

/// Heartbeat and eviction fast enough for a test, slow enough for a loaded 2-core machine.
const HEARTBEAT_MS: &str = "300";
const POD_TIMEOUT_MS: &str = "2000";

/// The pods of a test cluster: mgmt, two restapis and DCNs against the simulator.
pub struct ClusterRig {
    pub sim: Process,
    pub mgmt: Process,
    pub mgmt_port: String,
    pub data_dir: PathBuf,
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

impl ClusterRig {
    /// A simulator with `sim_markets` markets per family, mgmt, two restapis and `dcns` DCNs.
    pub fn start(name: &str, sim_markets: usize, dcns: usize) -> Self {
        Self::start_with(name, sim_markets, dcns, &[])
    }

    /// Like [`ClusterRig::start`], with `pod_args` given to mgmt, both restapis and every DCN.
    pub fn start_with(name: &str, sim_markets: usize, dcns: usize, pod_args: &[&str]) -> Self {
        Self::start_with_sim(name, sim_markets, &[], dcns, pod_args)
    }

    /// Like [`ClusterRig::start_with`], with `sim_args` added to the simulator's (`--rate 0`).
    pub fn start_with_sim(
        name: &str,
        sim_markets: usize,
        sim_args: &[&str],
        dcns: usize,
        pod_args: &[&str],
    ) -> Self {
        let pod_args: Vec<String> = pod_args.iter().map(|a| (*a).to_owned()).collect();
        let cluster = format!("gw{name}{}", std::process::id());
        let cleanup = Cleanup(cluster.clone());
        let markets = sim_markets.to_string();
        let mut args = vec![
            "sim",
            "--port",
            "0",
            "--markets",
            &markets,
            // The lagging options snapshots of real Binance are covered by the sync tests; here
            // they would only add retries that eat the options weight the replacements need.
            "--options-snapshot-lag-ms",
            "0",
        ];
        args.extend(sim_args);
        let sim = Process::start(&args);
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
        self.add_dcn_with(&[]);
    }

    /// Starts one more DCN with `extra` arguments of its own.
    pub fn add_dcn_with(&mut self, extra: &[&str]) {
        let endpoints = sim_endpoints(&self.sim.address);
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
        args.extend(extra);
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
            None => machine_token(),
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

    /// Creates `books` with `desired_quantity` through the restapi reading shared memory, one
    /// create_depthcaches per exchange.
    pub fn create(&self, books: &[(&str, &str, String)], desired_quantity: u32) {
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
            let answer = post_json(&self.local.address, "/create_depthcaches", &body);
            assert_eq!(answer["result"], "OK", "{answer}");
        }
    }

    /// Waits until every book has `replicas` running replicas, none on `excluded`.
    pub fn wait_running(
        &self,
        books: &[(&str, &str, String)],
        replicas: usize,
        excluded: Option<&str>,
        limit: Duration,
    ) {
        wait_until(limit, "replicas running", || {
            let list = get_json(&self.mgmt.address, "/get_depthcache_list");
            let pending = not_running(&list, books, replicas, excluded);
            if pending.is_empty() {
                return Ok(());
            }
            let progress = format!(
                "{} pending, e.g. {:?}",
                pending.len(),
                &pending[..pending.len().min(5)]
            );
            if std::env::var_os("UBDCC_E2E_VERBOSE").is_some() {
                println!("{progress}");
            }
            Err(progress)
        });
    }

    /// Waits until `restapi` (with the rig's token) answers `path` with `"result": "OK"`: a
    /// restapi learns that a replica runs from its next state push, a heartbeat after mgmt.
    pub fn wait_served(&self, restapi: &str, path: &str, limit: Duration) {
        wait_until(limit, &format!("{path} served by {restapi}"), || {
            let answer = get_json_auth(restapi, path, self.token());
            (answer["result"] == "OK")
                .then_some(())
                .ok_or(answer.to_string())
        });
    }
}

/// `exchange:market running/placed` of each of `books` in mgmt's depthcache `list` that has not
/// exactly `replicas` replicas, all running, none on `excluded`.
fn not_running(
    list: &Value,
    books: &[(&str, &str, String)],
    replicas: usize,
    excluded: Option<&str>,
) -> Vec<String> {
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
    pending
}

/// mgmt, checking creates against the simulator's listings.
fn start_mgmt(port: &str, data_dir: &Path, sim: &str, pod_args: &[String]) -> Process {
    let endpoints = sim_endpoints(sim);
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

/// A restapi of `cluster`; `remote_only` keeps it from reading shared memory.
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

/// Starts a standalone DCN of `cluster` keeping `markets` from the simulator at `sim`.
pub fn start_dcn(
    cluster: &str,
    sim: &str,
    markets: &[(&str, &str, String)],
    extra: &[&str],
) -> Process {
    let list: Vec<String> = markets
        .iter()
        .map(|(exchange, _, symbol)| format!("{exchange}:{symbol}"))
        .collect();
    let list = list.join(",");
    let endpoints = sim_endpoints(sim);
    let mut args = vec![
        "dcn",
        "--standalone",
        "--cluster",
        cluster,
        "--port",
        "0",
        "--markets",
        &list,
    ];
    for endpoint in &endpoints {
        args.extend(["--exchange-endpoint", endpoint]);
    }
    args.extend(extra);
    Process::start(&args)
}

/// A simulator and one standalone DCN keeping books from it, read in shared memory.
pub struct DcnRig {
    pub sim: Process,
    pub dcn: Process,
    pub reader: ClusterReader,
    _cleanup: Cleanup,
}

impl DcnRig {
    /// A simulator at `rate` events/s and a DCN keeping `markets` with `dcn_args`, all synced.
    pub fn with(tag: &str, rate: &str, markets: &[Market], dcn_args: &[&str]) -> Self {
        let cluster = format!("e2efault{tag}{}", std::process::id());
        let cleanup = Cleanup(cluster.clone());
        let sim = Process::start(&["sim", "--port", "0", "--markets", "2", "--rate", rate]);
        let dcn = start_dcn(&cluster, &sim.address, markets, dcn_args);
        let mut reader = ClusterReader::open(&cluster).expect("cluster");
        wait_synced(&mut reader, markets, Duration::from_secs(60));
        Self {
            sim,
            dcn,
            reader,
            _cleanup: cleanup,
        }
    }

    /// Injects `fault` into the simulator; returns its reply.
    pub fn inject(&self, fault: Value) -> Value {
        inject(&self.sim.address, &fault)
    }

    /// The book's info in shared memory, if it is there.
    pub fn info(&mut self, (exchange, _, symbol): (&str, &str, &str)) -> Option<BookInfo> {
        self.reader.info(exchange, symbol).ok()
    }

    /// The book's info with its audit results and top hash in shared memory, if it is there.
    pub fn proof(&mut self, (exchange, _, symbol): (&str, &str, &str)) -> Option<BookProof> {
        self.reader.proof(exchange, symbol).ok()
    }

    /// Waits until `done` holds for the book's info; panics with the last info after 30 s.
    fn wait(&mut self, book: (&str, &str, &str), what: &str, done: impl Fn(&BookInfo) -> bool) {
        let (exchange, _, symbol) = book;
        let limit = Duration::from_secs(30);
        wait_book(&mut self.reader, (exchange, symbol), limit, what, done);
    }

    /// The book is synced past `update_id` and both sides equal the truth at their update ids.
    pub fn assert_correct_after(&mut self, book: (&str, &str, &str), update_id: u64) {
        self.wait(book, "resynced past the fault", |info| {
            info.status == BookStatus::Synced && info.last_update_id > update_id
        });
        for side in [Side::Asks, Side::Bids] {
            assert_shm_side_equals_truth(&mut self.reader, &self.sim.address, book, side);
        }
    }

    /// Injects a market fault on `book` and checks it costs a resync and ends correct.
    pub fn fault_resyncs(&mut self, book: (&str, &str, &str), fault: Value) {
        let before = self.info(book).expect("book").resyncs;
        let reply = self.inject(fault);
        let after_update_id = reply["markets"][0]["after_update_id"].as_u64().unwrap_or(0);
        self.wait(book, "lost sync", |info| info.resyncs > before);
        self.assert_correct_after(book, after_update_id);
    }

    /// The DCN still answers.
    pub fn alive(&self) {
        assert_eq!(
            get_json(&self.dcn.address, "/test")["result"],
            "OK",
            "the DCN must survive every fault"
        );
    }

    /// Announces `serverShutdown` on `family`'s connections (its `venue` in the simulator's
    /// stats) and checks the handover: a new connection opens and the old one closes while every
    /// one of `markets` stays synced, and no family spends a snapshot on it.
    pub fn assert_server_shutdown_handed_over(
        &mut self,
        family: &str,
        venue: &str,
        markets: &[Market],
    ) {
        let before = stats(&self.sim.address);
        let connections = |stats: &Value, key: &str| stats["websocket"][venue][key].as_u64();
        // The default: the simulator keeps serving the old connection for a while after the
        // announcement, as Binance does.
        self.inject(json!({"fault": "server_shutdown", "family": family}));

        // Done when a new connection was opened and the old one is closed (by the DCN, at the end
        // of the handover, or by the simulator, whichever is first); every book stays synced
        // throughout, so it is looked at as often as shared memory.
        let limit = Duration::from_secs(30);
        wait_until_every(SHM_POLL, limit, "serverShutdown handed over", || {
            untouched(&mut self.reader, markets)
                .unwrap_or_else(|e| panic!("left sync during the serverShutdown handover: {e}"));
            let now = stats(&self.sim.address);
            let replaced = connections(&now, "connections_opened")
                > connections(&before, "connections_opened")
                && connections(&now, "connections_open")
                    == connections(&before, "connections_open");
            replaced
                .then_some(())
                .ok_or(format!("no handover: {}", now["websocket"][venue]))
        });
        let after = stats(&self.sim.address);
        let families = after["rest"].as_object().cloned().unwrap_or_default();
        for (family, rest) in families {
            assert_eq!(
                rest["requests"], before["rest"][&family]["requests"],
                "{family}: a snapshot was spent on the serverShutdown"
            );
        }
    }
}

/// `Ok` if every one of `markets` in shared memory is synced and was never resynced, else which
/// one was harmed and how.
pub fn untouched(reader: &mut ClusterReader, markets: &[Market]) -> Result<(), String> {
    for (exchange, _, symbol) in markets {
        let info = reader.info(exchange, symbol).expect("book");
        if (info.status, info.resyncs) != (BookStatus::Synced, 0) {
            return Err(format!("{exchange} {symbol}: {info:?}"));
        }
    }
    Ok(())
}
