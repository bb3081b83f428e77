//! `ubdcc start`: a whole cluster on this machine, supervised, with the original's console.
//!
//! - [`settings`]: flags, variables, TOML file, defaults.
//! - [`supervisor`]: the child processes, their logs, restarts after crashes.
//! - [`console`]: the interactive commands.
//!
//! Start order: (simulator,) mgmt, restapi, the DCNs; then the wait for every pod to register,
//! the status table, (the demo books,) and the console — or, without a terminal, nothing until
//! SIGTERM. Ctrl-C, SIGTERM, `stop`, EOF and a `ubdcc stop` from elsewhere all end in the same
//! orderly shutdown.

pub mod console;
pub mod settings;
pub mod supervisor;

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use ubdcc_gateway::identity::VERSION;

use crate::books::books_table;
use crate::cli::StartArgs;
use crate::cluster_client::{ClusterClient, remember_port};
use crate::status::status_table;
use crate::stop::shutdown_all;
use settings::Settings;
use supervisor::{Event, Role, Supervisor};

/// How long `start` waits for every pod to register.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The books `--demo` creates: spot and futures markets of the simulator.
const DEMO_BOOKS: [(&str, &str); 8] = [
    ("binance.com", "SIM0USDT"),
    ("binance.com", "SIM1USDT"),
    ("binance.com", "SIM2USDT"),
    ("binance.com", "SIM3USDT"),
    ("binance.com", "SIM4USDT"),
    ("binance.com-futures", "SIM0USDT"),
    ("binance.com-futures", "SIM1USDT"),
    ("binance.com-futures", "SIM2USDT"),
];

/// The running cluster: its settings, its children and a client of its mgmt.
pub struct Cluster {
    settings: Settings,
    supervisor: Supervisor,
    client: ClusterClient,
    /// Exchange endpoint overrides for the DCNs (with the simulator's in demo mode).
    endpoints: Vec<String>,
    /// The number of the next DCN (`dcn-<k>`).
    next_dcn: usize,
}

/// Runs `ubdcc start`.
pub fn run(args: &StartArgs, log_level: &str) -> anyhow::Result<()> {
    let settings = Settings::resolve(args, log_level)?;
    refuse_second_start(&settings)?;
    println!("UBDCC Cluster Manager v{VERSION}");
    println!(
        "Starting cluster with mgmt port {}, {} DCN(s)...",
        settings.mgmt_port, settings.dcn
    );
    println!("Log directory: {}", settings.logdir.display());
    let cluster = Arc::new(Mutex::new(Cluster::start(settings)?));
    watch_signals(&cluster)?;
    {
        let guard = lock(&cluster);
        guard.wait_registered();
        match status_table(&guard.client) {
            Ok(table) => println!("\n{table}\n"),
            Err(_) => println!("\nCannot connect to mgmt.\n"),
        }
        guard.create_books();
    }
    watch_children(&cluster);
    if std::io::stdin().is_terminal() {
        println!("Type 'help' for available commands, Ctrl+C or 'stop' to shut down.\n");
        console::run(&cluster);
        shutdown(&cluster, true);
    }
    println!("Running without a terminal; SIGTERM or `ubdcc stop` shuts the cluster down.");
    loop {
        std::thread::park();
    }
}

/// A second `ubdcc start` while a cluster runs says so at once, before it starts anything: the
/// remembered mgmt still answers, or DCNs of the same cluster name are alive on this machine
/// (their segments would clash).
fn refuse_second_start(settings: &Settings) -> anyhow::Result<()> {
    if let Some(port) = crate::cluster_client::remembered_port() {
        let client = ClusterClient::new(Some(port), &settings.secrets)?;
        let answer = client.mgmt("/test");
        let is_mgmt = answer.as_ref().is_ok_and(|test| {
            test.get("app").and_then(|app| app.get("name")) == Some(&json!("ubdcc-mgmt"))
        });
        if is_mgmt {
            anyhow::bail!(
                "a cluster is already running on this machine (mgmt on port {port}): see it with \
                 `ubdcc status`, stop it with `ubdcc stop`"
            );
        }
    }
    let alive = ubdcc_shm::ClusterReader::open(&settings.cluster)
        .map(|reader| {
            reader
                .segments()
                .iter()
                .filter(|segment| segment.check_writer_now().is_ok())
                .count()
        })
        .unwrap_or(0);
    if alive > 0 {
        anyhow::bail!(
            "cluster '{}' already runs on this machine ({alive} live DCN segment(s) in /dev/shm): \
             stop it with `ubdcc stop`, or start another one with --cluster NAME",
            settings.cluster
        );
    }
    Ok(())
}

fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    cluster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cluster {
    /// Starts (the simulator,) mgmt, restapi and the DCNs; if one fails, stops those started.
    fn start(settings: Settings) -> anyhow::Result<Self> {
        let mut cluster = Self::new(settings)?;
        if let Err(error) = cluster.start_children() {
            let name = cluster.settings.cluster.clone();
            cluster.supervisor.stop_all(&name);
            crate::cluster_client::forget_port();
            return Err(error);
        }
        Ok(cluster)
    }

    fn new(mut settings: Settings) -> anyhow::Result<Self> {
        // A cluster secret always (the given one or a new random one), handed to the children
        // in their environment (not argv) and kept 0600 for `ubdcc stop` / `credentials` from
        // other terminals.
        let secret = crate::secrets::for_start(settings.secrets.cluster_secret.as_deref())?;
        settings.secrets.cluster_secret = Some(secret);
        let mut env = Vec::new();
        if let Some(secret) = &settings.secrets.cluster_secret {
            env.push(("UBDCC_CLUSTER_SECRET".to_owned(), secret.clone()));
        }
        if let Some(token) = &settings.secrets.api_token {
            env.push(("UBDCC_API_TOKEN".to_owned(), token.clone()));
        }
        let supervisor = Supervisor::new(&settings.logdir, &settings.log_level, env)?;
        let client = ClusterClient::new(Some(settings.mgmt_port), &settings.secrets)?;
        Ok(Self {
            endpoints: settings.endpoints.clone(),
            settings,
            supervisor,
            client,
            next_dcn: 1,
        })
    }

    fn start_children(&mut self) -> anyhow::Result<()> {
        if self.settings.demo {
            self.start_simulator()?;
        }
        let port = self.settings.mgmt_port.to_string();
        let mut args = vec!["mgmt".into(), "--port".into(), port];
        if self.settings.demo {
            // The demo keeps no state on disk: the user's cluster state (~/.ubdcc/mgmt-<port>)
            // is never read or written by it.
            args.push("--ephemeral".into());
        }
        // mgmt checks creates against the exchanges the DCNs use.
        for endpoint in &self.endpoints {
            args.extend(["--exchange-endpoint".into(), endpoint.clone()]);
        }
        self.start_child("mgmt", Role::Mgmt, args)?;
        remember_port(self.settings.mgmt_port);
        let args = vec![
            "restapi".into(),
            "--cluster".into(),
            self.settings.cluster.clone(),
            "--port".into(),
            self.settings.restapi_port.to_string(),
            "--mgmt-url".into(),
            self.mgmt_url(),
        ];
        self.start_child("restapi", Role::Restapi, args)?;
        for _ in 0..self.settings.dcn {
            self.add_dcn()?;
        }
        Ok(())
    }

    fn mgmt_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.settings.mgmt_port)
    }

    fn start_child(&mut self, name: &str, role: Role, args: Vec<String>) -> anyhow::Result<u32> {
        let (pid, address) = self
            .supervisor
            .start(name, role, args, Duration::from_secs(15))?;
        if address.is_none() {
            let log = self.supervisor.log_of(name);
            anyhow::bail!("{name} did not start; see {}", log.display());
        }
        println!("  {name} started (PID {pid})");
        Ok(pid)
    }

    /// The simulator, with the exchanges pointed at it.
    fn start_simulator(&mut self) -> anyhow::Result<()> {
        let args = vec![
            "sim".into(),
            "--port".into(),
            "0".into(),
            "--markets".into(),
            "10".into(),
        ];
        let (pid, address) =
            self.supervisor
                .start("sim", Role::Sim, args, Duration::from_secs(15))?;
        let address = address.context("the simulator did not start")?;
        println!("  sim started (PID {pid}) at http://{address} — no internet needed");
        // COIN-M lives under `/dstream` on the simulator: its stream paths are spot's.
        for (exchange, host) in [
            ("binance.com", ""),
            ("binance.com-futures", ""),
            ("binance.com-vanilla-options", ""),
            ("binance.com-coin_futures", "/dstream"),
        ] {
            self.endpoints
                .push(format!("{exchange}=http://{address}{host}"));
        }
        Ok(())
    }

    /// Starts DCN `dcn-<k>`, pinned to core k-1 when pinning; returns its name and pid.
    pub fn add_dcn(&mut self) -> anyhow::Result<(String, u32)> {
        let k = self.next_dcn;
        self.next_dcn += 1;
        let name = format!("dcn-{k}");
        // DCNs of one machine share its IP's weight limits.
        let share = (0.9 / self.settings.dcn.max(1) as f64).min(0.5);
        let mut args = vec![
            "dcn".into(),
            "--cluster".into(),
            self.settings.cluster.clone(),
            "--name".into(),
            name.clone(),
            "--port".into(),
            "0".into(),
            "--mgmt-url".into(),
            self.mgmt_url(),
            "--weight-share".into(),
            format!("{share:.3}"),
        ];
        if self.settings.pin {
            let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
            args.extend(["--cpu".into(), ((k - 1) % cores).to_string()]);
        }
        for endpoint in &self.endpoints {
            args.extend(["--exchange-endpoint".into(), endpoint.clone()]);
        }
        if let Some(record) = &self.settings.record {
            let dir = record.join(&name);
            args.extend(["--record".into(), dir.to_string_lossy().into_owned()]);
        } else if let Some(record) = &self.settings.record_books {
            let dir = record.join(&name);
            args.extend(["--record-books".into(), dir.to_string_lossy().into_owned()]);
        }
        let pid = self.start_child(&name, Role::Dcn, args)?;
        Ok((name, pid))
    }

    /// Pods registered with mgmt (`None` when mgmt does not answer).
    pub fn pods(&self) -> Option<Vec<Value>> {
        let info = self.client.mgmt("/get_cluster_info").ok()?;
        let pods = info.get("db")?.get("pods")?.as_object()?;
        Some(pods.values().cloned().collect())
    }

    /// Waits until restapi and every DCN are registered, showing progress.
    fn wait_registered(&self) {
        let wanted = 1 + self.supervisor.dcns().count();
        println!("\nWaiting for {wanted} pods to register with mgmt...");
        let started = Instant::now();
        let mut shown = usize::MAX;
        while started.elapsed() < REGISTRATION_TIMEOUT {
            let registered = self.pods().map_or(0, |pods| pods.len());
            if registered != shown {
                print!("\r  {registered}/{wanted} registered");
                std::io::stdout().flush().ok();
                shown = registered;
            }
            if registered >= wanted {
                println!("\nCluster is ready!");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("\nWarning: Timeout waiting for all pods to register. Check the logs.");
    }

    /// Creates the demo books and `--markets`, then shows them syncing.
    fn create_books(&self) {
        let mut books: Vec<(String, String)> = Vec::new();
        if self.settings.demo {
            books.extend(
                DEMO_BOOKS
                    .iter()
                    .map(|(e, m)| ((*e).to_owned(), (*m).to_owned())),
            );
        }
        for item in self
            .settings
            .markets
            .iter()
            .flat_map(|list| list.split(','))
        {
            match item.trim().rsplit_once(':') {
                Some((exchange, market)) => books.push((exchange.to_owned(), market.to_owned())),
                None if item.trim().is_empty() => {}
                None => println!("  Warning: '{item}' is not EXCHANGE:MARKET; skipped"),
            }
        }
        if books.is_empty() {
            return;
        }
        println!("Creating {} DepthCache(s)...", books.len());
        for (exchange, market) in &books {
            let body = json!({"exchange": exchange, "market": market, "desired_quantity": self.settings.desired_quantity});
            match self.client.mgmt_post("/create_depthcache", &body) {
                Ok(answer) if answer.get("result") == Some(&json!("OK")) => {}
                Ok(answer) if answer.get("error_id") == Some(&json!("#1024")) => {}
                Ok(answer) => println!(
                    "  {exchange} {market}: {}",
                    answer
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("refused")
                ),
                Err(error) => println!("  {exchange} {market}: {error}"),
            }
        }
        self.wait_synced(books.len());
    }

    /// Shows how many books are served until all are (or 60 s passed), then the books table.
    fn wait_synced(&self, count: usize) {
        let started = Instant::now();
        let mut shown = usize::MAX;
        while started.elapsed() < Duration::from_secs(60) {
            let synced = self.synced_books();
            if synced != shown {
                print!("\r  {synced}/{count} synced");
                std::io::stdout().flush().ok();
                shown = synced;
            }
            if synced >= count {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(" after {:.1} s\n", started.elapsed().as_secs_f64());
        if let Some(table) = books_table(&self.client) {
            println!("{table}\n");
        }
        let restapi = self.settings.restapi_port;
        println!(
            "Read one: curl 'http://127.0.0.1:{restapi}/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=5'"
        );
        println!(
            "Watch one live: ubdcc top binance.com SIM0USDT --cluster {}\n",
            self.settings.cluster
        );
    }

    /// Books with at least one running replica.
    fn synced_books(&self) -> usize {
        let Ok(list) = self.client.mgmt("/get_depthcache_list") else {
            return 0;
        };
        list.get("depthcache_list")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|exchanges| exchanges.values())
            .filter_map(Value::as_object)
            .flat_map(|markets| markets.values())
            .filter(|record| {
                record["DISTRIBUTION"]
                    .as_object()
                    .is_some_and(|d| d.values().any(|e| e["STATUS"] == "running"))
            })
            .count()
    }
}

/// Ctrl-C and SIGTERM: the orderly shutdown, from a thread of their own.
fn watch_signals(cluster: &Arc<Mutex<Cluster>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    let cluster = Arc::clone(cluster);
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            shutdown(&cluster, true);
        }
    });
    Ok(())
}

/// Restarts crashed children and reports it; a mgmt stopped from outside (`ubdcc stop`) ends
/// the cluster.
fn watch_children(cluster: &Arc<Mutex<Cluster>>) {
    let cluster = Arc::clone(cluster);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let events = lock(&cluster).supervisor.check();
            for event in events {
                match event {
                    Event::Restarted { name, status, pid } => {
                        println!("\n  {name} exited ({status}); restarted (PID {pid})");
                    }
                    Event::GaveUp { name, log } => {
                        println!(
                            "\n  {name} keeps crashing; left stopped (see {})",
                            log.display()
                        );
                    }
                    Event::Stopped {
                        name,
                        role: Role::Mgmt,
                    } => {
                        println!("\n  {name} was shut down from outside");
                        shutdown(&cluster, false);
                    }
                    Event::Stopped { name, .. } => println!("\n  {name} stopped"),
                }
            }
        }
    });
}

/// The orderly shutdown (`/shutdown` to every pod, then mgmt, unless `ubdcc stop` did that
/// already; then stop what is left), then exit.
pub fn shutdown(cluster: &Mutex<Cluster>, ask_pods: bool) -> ! {
    let mut guard = lock(cluster);
    println!("\nShutting down cluster...");
    let names: Vec<String> = guard
        .supervisor
        .children
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for name in &names {
        guard.supervisor.expect_exit(name);
    }
    if ask_pods {
        shutdown_all(&guard.client);
    } else {
        crate::cluster_client::forget_port();
    }
    let cluster_name = guard.settings.cluster.clone();
    guard.supervisor.stop_all(&cluster_name);
    std::io::stdout().flush().ok();
    std::process::exit(0);
}
