//! Scale bench of issue 12 (peer-seeded replicas, progressive depth), with real processes: the
//! simulator (`ubdcc sim`, Binance's 6 000 spot weight a minute per IP, all of it one IP here),
//! mgmt and four DCNs (`--initial-depth 100`) on this host. It prints a table of:
//!
//! 1. **cold start**: 1 000 spot books × 2 replicas created in one `create_depthcaches` call —
//!    time until every replica is `running`, REST snapshots per book (target ≤ 1.05), seeds by
//!    source, weight; then, for `--deepen-secs`, how fast the books are deepened to 1 000 levels;
//! 2. **kill -9** of the DCN holding the most replicas (~500) — time until mgmt has re-placed
//!    them and all are running again (target ≤ 2 s), with mgmt's eviction part of it, and the
//!    snapshots the survivors spent meanwhile (target 0);
//! 3. **1 000 books from cold on one IP** (one replica each, a fresh cluster and simulator) —
//!    time until all are synced at 100 levels (target ≤ 60 s), weight spent;
//! 4. with `--full-depth` only: scenario 1 with `--initial-depth 1000` (the "before": 9 to 19
//!    minutes by the weight arithmetic, which the bench prints otherwise).
//!
//! ```text
//! cargo bench --bench peer_seeding -- [--books 1000] [--dcns 4] [--rate 5] [--deepen-secs 120]
//!                                     [--pod-timeout-ms 1000] [--heartbeat-ms 250]
//!                                     [--scenarios 1,2,3] [--full-depth] [--keep-logs]
//! ```
//!
//! Times are wall clock from the create call (or the kill) on a machine that also runs every
//! process of the cluster; mgmt is polled every 100–250 ms (plus the poll itself: its list of
//! 1 000 books with their replicas is large), so each figure is late by up to one poll. "Synced in shm" is when this host's shared memory shows the replicas synced; `running`
//! is when mgmt's `get_depthcache_list` shows it, one DCN heartbeat later. The DCNs' counters
//! have no label for why a snapshot was taken; on spot a 100-level snapshot weighs 5 (a book's
//! start) and a 1 000-level one 50 (a deepening), so the weights split them. The DCNs run with
//! `--audit-interval-secs 0` (`support/cluster.rs`): an audit's snapshot weighs 50 too and would
//! be counted as a deepening.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ubdcc_shm::ClusterReader;

use cluster::{Census, Cluster, Counters, FULL_DEPTH, Settings, shm_synced};

/// Binance's spot weight limit per minute and IP, which the simulator enforces.
const SPOT_LIMIT_PER_MINUTE: f64 = 6000.0;

/// Share of an IP's limit the DCNs of one host use together (the agent's `HOST_SHARE`).
const HOST_SHARE: f64 = 0.9;

/// Share of a DCN's budget that deepenings (spare weight) leave to new and resyncing books (the
/// engine's `URGENT_RESERVE`).
const URGENT_RESERVE: f64 = 0.5;

/// Spot snapshot weights: up to 100 levels, and 1 000 levels.
const SHALLOW_WEIGHT: f64 = 5.0;
const DEEP_WEIGHT: f64 = 50.0;

/// How long a cold start may take before the bench gives up (a 1 000-level start is 9 to 19
/// minutes by the weight arithmetic).
const COLD_START_LIMIT: Duration = Duration::from_secs(1800);

/// The `--initial-depth` of the shallow runs: the deepest spot snapshot that weighs 5.
const SHALLOW_DEPTH: u32 = ubdcc_engine::SHALLOW_LIMIT;

/// How long the re-placement after a kill may take before the bench gives up.
const REPLACE_LIMIT: Duration = Duration::from_secs(120);

/// How the bench is set up.
struct Options {
    books: usize,
    dcns: usize,
    rate: u32,
    deepen_secs: u64,
    pod_timeout_ms: u64,
    heartbeat_ms: u64,
    scenarios: Vec<u8>,
    full_depth: bool,
    keep_logs: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            books: 1000,
            dcns: 4,
            rate: 5,
            deepen_secs: 120,
            pod_timeout_ms: 1000,
            heartbeat_ms: 250,
            scenarios: vec![1, 2, 3],
            full_depth: false,
            keep_logs: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().context("a value after each option");
            match arg.as_str() {
                "--books" => options.books = value()?.parse()?,
                "--dcns" => options.dcns = value()?.parse()?,
                "--rate" => options.rate = value()?.parse()?,
                "--deepen-secs" => options.deepen_secs = value()?.parse()?,
                "--pod-timeout-ms" => options.pod_timeout_ms = value()?.parse()?,
                "--heartbeat-ms" => options.heartbeat_ms = value()?.parse()?,
                "--scenarios" => {
                    let list = value()?;
                    let parsed: Result<Vec<u8>, _> = list.split(',').map(str::parse).collect();
                    options.scenarios = parsed.context("--scenarios 1,2,3")?;
                }
                "--full-depth" => options.full_depth = true,
                "--keep-logs" => options.keep_logs = true,
                // `cargo bench` passes `--bench`.
                _ => {}
            }
        }
        if options.dcns < 3 {
            bail!("--dcns 3 or more: a killed DCN's replicas need a survivor without one");
        }
        Ok(options)
    }

    fn settings(&self, initial_depth: u32) -> Settings {
        Settings {
            markets: self.books,
            rate: self.rate,
            dcns: self.dcns,
            initial_depth,
            heartbeat_ms: self.heartbeat_ms,
            pod_timeout_ms: self.pod_timeout_ms,
            keep_logs: self.keep_logs,
        }
    }

    fn runs(&self, scenario: u8) -> bool {
        self.scenarios.contains(&scenario)
    }
}

/// One line of the table.
struct Row {
    what: String,
    figure: String,
    target: &'static str,
}

/// The table, printed as it grows (a later failure keeps what was measured).
#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn heading(&mut self, heading: String) {
        println!("\n{heading}");
        self.0.push(Row {
            what: heading,
            figure: String::new(),
            target: "",
        });
    }

    fn row(&mut self, what: &str, figure: String, target: &'static str) {
        let mark = if target.is_empty() {
            String::new()
        } else {
            format!("   (target {target})")
        };
        println!("  {what:<58} {figure}{mark}");
        self.0.push(Row {
            what: what.to_owned(),
            figure,
            target,
        });
    }

    /// The whole table again, as Markdown for the README.
    fn print_markdown(&self) {
        println!("\n| measurement | figure | target |\n|---|---|---|");
        for row in &self.0 {
            if row.figure.is_empty() {
                println!("| **{}** | | |", row.what);
            } else {
                println!("| {} | {} | {} |", row.what, row.figure, row.target);
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let mut table = Table::default();
    println!(
        "peer_seeding: {} spot books, {} DCNs on one host (one IP), {} events/s per market, \
         heartbeat {} ms, pod timeout {} ms; load average before: {}",
        options.books,
        options.dcns,
        options.rate,
        options.heartbeat_ms,
        options.pod_timeout_ms,
        load_average()
    );
    let mut payers = None;
    if options.runs(1) || options.runs(2) {
        let cluster = Cluster::start(&options.settings(SHALLOW_DEPTH), "cold")?;
        payers = Some(cold_start(&options, &cluster, &mut table, SHALLOW_DEPTH)?);
        if options.runs(2) {
            kill_busiest_dcn(&options, cluster, &mut table)?;
        }
    }
    if options.runs(3) {
        let cluster = Cluster::start(&options.settings(SHALLOW_DEPTH), "oneip")?;
        one_ip(&options, &cluster, &mut table)?;
    }
    if options.full_depth || options.runs(4) {
        let cluster = Cluster::start(&options.settings(FULL_DEPTH), "deep")?;
        cold_start(&options, &cluster, &mut table, FULL_DEPTH)?;
    } else {
        full_depth_arithmetic(&options, &mut table, payers);
    }
    println!("\nload average after: {}", load_average());
    table.print_markdown();
    Ok(())
}

/// When each milestone of a cold start was first seen, since the create call, and what the
/// DCNs had counted [`EARLY`] into it.
#[derive(Default)]
struct Milestones {
    /// Every book has a synced replica in shared memory.
    first_replicas: Option<Duration>,
    /// Every replica is synced in shared memory.
    all_synced: Option<Duration>,
    /// mgmt shows every replica `running`.
    all_running: Option<Duration>,
    /// The counters [`EARLY`] after the create (none when all ran sooner).
    early: Option<Counters>,
}

/// Scenario 1 (and 4): `books` × 2 replicas from cold, then the deepening; returns how many
/// DCNs paid for first snapshots (the others only seeded).
fn cold_start(
    options: &Options,
    cluster: &Cluster,
    table: &mut Table,
    initial_depth: u32,
) -> anyhow::Result<usize> {
    let books = options.books;
    let created = Instant::now();
    cluster.create(books, 2)?;
    let (seen, census) = watch_cold_start(cluster, books, created)?;
    let each: Vec<Counters> = (cluster.dcns.iter())
        .map(|dcn| cluster.counters_of(dcn))
        .collect::<anyhow::Result<_>>()?;
    let counters = each.iter().fold(Counters::default(), |sum, c| sum.plus(*c));
    let sim = cluster.spot_rest_stats()?;

    table.heading(format!(
        "1. cold start: {books} spot books × 2 replicas on {} DCNs, --initial-depth {initial_depth}",
        options.dcns
    ));
    let secs =
        |at: Option<Duration>| at.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    table.row(
        "every book has one synced replica (shm)",
        secs(seen.first_replicas),
        "",
    );
    table.row("every replica synced (shm)", secs(seen.all_synced), "");
    table.row("every replica running (mgmt)", secs(seen.all_running), "");
    // Starting at full depth, every download is a start; else the 100-level ones are.
    let starts = |counters: &Counters| {
        if initial_depth < FULL_DEPTH {
            counters.by_depth().0
        } else {
            counters.downloads
        }
    };
    cold_start_costs(table, books, starts(&counters), counters, &sim);
    let by_dcn: Vec<String> = each.iter().map(|c| format!("{:.0}", starts(c))).collect();
    table.row(
        "snapshots to start books, by DCN (who paid; the rest seeded)",
        by_dcn.join(" / "),
        "",
    );
    early_deepening(table, seen.early.unwrap_or(counters), initial_depth);
    if initial_depth < FULL_DEPTH {
        deepening(options, cluster, table, census, created)?;
    }
    Ok(each.iter().filter(|c| starts(c) > 0.0).count())
}

/// Polls shared memory and mgmt until every replica of the `books` books runs; the milestones
/// and the last census.
fn watch_cold_start(
    cluster: &Cluster,
    books: usize,
    created: Instant,
) -> anyhow::Result<(Milestones, Census)> {
    let replicas = 2 * books;
    let mut reader = ClusterReader::open(&cluster.name)?;
    let (mut seen, mut progress) = (Milestones::default(), cluster::Progress::default());
    let census = cluster::wait_for(COLD_START_LIMIT, Duration::from_millis(250), || {
        let (synced, books_synced) = shm_synced(&mut reader, None);
        let census = cluster.census(books, 2, None)?;
        let at = created.elapsed();
        sample_early(cluster, at, &mut seen.early)?;
        if books_synced == books {
            seen.first_replicas.get_or_insert(at);
        }
        if synced == replicas {
            seen.all_synced.get_or_insert(at);
        }
        progress.show(format_args!(
            "{:5.1} s: {books_synced}/{books} books, {synced}/{replicas} replicas synced in \
             shm, {}/{replicas} running in mgmt",
            at.as_secs_f64(),
            census.running
        ));
        Ok((census.complete == books).then_some(census))
    })
    .context("every replica running")?;
    seen.all_running = Some(created.elapsed());
    eprintln!();
    Ok((seen, census))
}

/// How long into a cold start the counters are sampled once, to see what the deepening took
/// while books still waited for their first snapshot.
const EARLY: Duration = Duration::from_secs(10);

/// Samples the DCNs' counters once, when `at` first reaches [`EARLY`].
fn sample_early(
    cluster: &Cluster,
    at: Duration,
    early: &mut Option<Counters>,
) -> anyhow::Result<()> {
    if early.is_none() && at >= EARLY {
        *early = Some(cluster.counters(&cluster.dcns)?);
    }
    Ok(())
}

/// The deepening snapshots taken in the first [`EARLY`] (or until all ran, if sooner): weight
/// the books still waiting for their first snapshot did not get in that minute.
fn early_deepening(table: &mut Table, early: Counters, initial_depth: u32) {
    if initial_depth >= FULL_DEPTH {
        return;
    }
    let (_, deep) = early.by_depth();
    table.row(
        "deepening snapshots in the first 10 s (their weight)",
        format!("{deep:.0} ({:.0})", deep * DEEP_WEIGHT),
        "",
    );
}

/// The snapshots, seeds and weight of a cold start, once every replica is running; `starts`
/// of the downloads were books' first snapshots.
fn cold_start_costs(
    table: &mut Table,
    books: usize,
    starts: f64,
    counters: Counters,
    sim: &serde_json::Value,
) {
    let deep = counters.downloads - starts;
    table.row(
        "REST snapshots to start the books, per book",
        format!(
            "{:.3} ({starts:.0} for {books} books)",
            starts / books as f64
        ),
        "≤ 1.05",
    );
    table.row(
        "deepening snapshots already taken by then (1 000 levels)",
        format!("{deep:.0}"),
        "",
    );
    table.row(
        "replicas seeded from a peer: shm / http (failed copies)",
        format!(
            "{:.0} / {:.0} ({:.0})",
            counters.seeds_shm, counters.seeds_http, counters.seed_failures
        ),
        "",
    );
    table.row(
        "REST weight spent (DCNs' count) / 429+418",
        format!("{:.0} / {:.0}", counters.weight, counters.rejections),
        "",
    );
    table.row(
        "simulator: most weight of the IP in one minute (limit)",
        format!("{} ({})", sim["max_used_weight_1m"], sim["weight_limit_1m"]),
        "",
    );
}

/// Watches the books being deepened to 1 000 levels for `--deepen-secs` after every replica
/// runs; reports the pace and, if not all got there, what the rest takes by the weight
/// arithmetic.
fn deepening(
    options: &Options,
    cluster: &Cluster,
    table: &mut Table,
    at_running: Census,
    created: Instant,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let census = watch_deepening(options, cluster, created)?;
    let watched = started.elapsed();
    let (_, deep_downloads) = cluster.counters(&cluster.dcns)?.by_depth();
    let replicas = 2 * options.books;
    shallow_depths(table, "when all ran", &at_running);
    shallow_depths(table, "after watching", &census);
    table.row(
        "replicas at 1 000 levels when all ran / after watching",
        format!(
            "{} / {} of {replicas} ({:.0} s later)",
            at_running.deep,
            census.deep,
            watched.as_secs_f64()
        ),
        "",
    );
    table.row(
        "books with a replica at 1 000 levels / deepening snapshots",
        format!("{} / {deep_downloads:.0}", census.deep_books),
        "",
    );
    if census.deep == replicas {
        table.row(
            "every replica deepened to 1 000 levels, since the create",
            format!("{:.1} s", created.elapsed().as_secs_f64()),
            "",
        );
        return Ok(());
    }
    let per_minute = (census.deep - at_running.deep) as f64 / watched.as_secs_f64() * 60.0;
    table.row(
        "deepening pace while watched",
        format!("{per_minute:.0} replicas a minute"),
        "",
    );
    // One deep snapshot per book that has none yet, from spare weight only: the scheduler keeps
    // half of each DCN's budget for new and resyncing books.
    let spare = SPOT_LIMIT_PER_MINUTE * HOST_SHARE * (1.0 - URGENT_RESERVE);
    let left = (options.books - census.deep_books) as f64 * DEEP_WEIGHT;
    table.row(
        "the rest by weight arithmetic: 50 a book at the spare budget",
        format!(
            "{left:.0} weight at {spare:.0} a minute: ~{:.1} min more",
            left / spare
        ),
        "",
    );
    Ok(())
}

/// Polls mgmt every 2 s until every replica is deepened or `--deepen-secs` have passed; the
/// last census.
fn watch_deepening(
    options: &Options,
    cluster: &Cluster,
    created: Instant,
) -> anyhow::Result<Census> {
    let (books, replicas) = (options.books, 2 * options.books);
    let started = Instant::now();
    let limit = Duration::from_secs(options.deepen_secs);
    let mut progress = cluster::Progress::default();
    loop {
        let census = cluster.census(books, 2, None)?;
        progress.show(format_args!(
            "{:5.1} s: {}/{replicas} replicas, {}/{books} books at {FULL_DEPTH} levels",
            created.elapsed().as_secs_f64(),
            census.deep,
            census.deep_books
        ));
        if census.deep == replicas || started.elapsed() >= limit {
            eprintln!();
            return Ok(census);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A read many clients make (`limit_count=20`, as the end-to-end tests read): a replica that
/// covers fewer levels refuses it.
const TOP_READ: u32 = 20;

/// The depths the replicas not yet deepened cover: books start at 100 levels and cover fewer as
/// prices move out of the range their snapshot held, until they are deepened.
fn shallow_depths(table: &mut Table, when: &str, census: &Census) {
    let depths = &census.shallow_depths;
    let (Some(least), Some(median)) = (depths.first(), depths.get(depths.len() / 2)) else {
        return;
    };
    let short = depths.iter().filter(|depth| **depth < TOP_READ).count();
    table.row(
        &format!("levels covered by shallow replicas {when}: least / median"),
        format!(
            "{least} / {median} ({short} of {} below {TOP_READ})",
            depths.len()
        ),
        "",
    );
}

/// When each milestone after the kill was first seen, since the kill.
#[derive(Default)]
struct Recovery {
    /// mgmt evicted the DCN and placed every replica it held elsewhere.
    replaced: Option<Duration>,
    /// Every replica on the survivors is synced in shared memory.
    synced: Option<Duration>,
    /// mgmt shows every replica `running`, none on the killed DCN.
    running: Option<Duration>,
}

/// Scenario 2: kill -9 of the DCN holding the most replicas.
fn kill_busiest_dcn(
    options: &Options,
    mut cluster: Cluster,
    table: &mut Table,
) -> anyhow::Result<()> {
    let holdings = cluster.holdings()?;
    let (victim, held) = (holdings.iter().copied().enumerate())
        .max_by_key(|(_, held)| *held)
        .context("a DCN")?;
    let (name, uid) = (
        cluster.dcns[victim].name.clone(),
        cluster.dcns[victim].uid.clone(),
    );
    let survivors = |cluster: &Cluster| {
        let dcns = cluster.dcns.iter().filter(|dcn| dcn.uid != uid);
        cluster.counters(dcns)
    };
    let before = survivors(&cluster)?;
    let killed = Instant::now();
    cluster.dcns[victim].process.kill();
    // To line the timeline up with the processes' logs (UTC timestamps).
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    eprintln!("killed {name} at unix {:.3} s", unix.as_secs_f64());
    let seen = watch_recovery(&cluster, options.books, (&name, &uid), killed)?;
    let spent = survivors(&cluster)?.since(before);
    report_recovery(table, options, held, &seen, spent);
    Ok(())
}

/// Polls mgmt and shared memory until every replica of the killed DCN `(name, uid)` is
/// re-placed and running, printing a line whenever something moved (where the time goes).
fn watch_recovery(
    cluster: &Cluster,
    books: usize,
    (name, uid): (&str, &str),
    killed: Instant,
) -> anyhow::Result<Recovery> {
    let replicas = 2 * books;
    let mut reader = ClusterReader::open(&cluster.name)?;
    let (mut seen, mut last) = (Recovery::default(), None);
    cluster::wait_for(REPLACE_LIMIT, Duration::from_millis(100), || {
        let census = cluster.census(books, 2, Some(uid))?;
        let (synced, _) = shm_synced(&mut reader, Some(name));
        let at = killed.elapsed();
        if census.on_excluded == 0 && census.placed == replicas {
            seen.replaced.get_or_insert(at);
        }
        if synced == replicas {
            seen.synced.get_or_insert(at);
        }
        let now = (census.on_excluded, synced, census.running);
        if last != Some(now) {
            last = Some(now);
            eprintln!(
                "{:6.2} s: {} books still on the killed DCN, {synced}/{replicas} synced in shm, \
                 {}/{replicas} running in mgmt",
                at.as_secs_f64(),
                census.on_excluded,
                census.running
            );
        }
        Ok((census.complete == books).then_some(()))
    })
    .context("every replica re-placed and running")?;
    seen.running = Some(killed.elapsed());
    Ok(seen)
}

/// The rows of scenario 2; `spent`: the survivors' counters over the recovery.
fn report_recovery(
    table: &mut Table,
    options: &Options,
    held: usize,
    seen: &Recovery,
    spent: Counters,
) {
    let (shallow, deep) = spent.by_depth();
    table.heading(format!(
        "2. kill -9 of the DCN holding the most replicas (pod timeout {} ms, heartbeat {} ms)",
        options.pod_timeout_ms, options.heartbeat_ms
    ));
    let secs =
        |at: Option<Duration>| at.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    table.row("replicas the killed DCN held", format!("{held}"), "~500");
    table.row(
        "mgmt evicted it and re-placed them (eviction)",
        secs(seen.replaced),
        "",
    );
    table.row("every replica synced again (shm)", secs(seen.synced), "");
    table.row(
        "every replica re-placed and running (mgmt)",
        secs(seen.running),
        "≤ 2 s",
    );
    table.row(
        "snapshots the survivors spent for the replicas (weight 5)",
        format!("{shallow:.0}"),
        "0",
    );
    table.row(
        "deepening snapshots meanwhile (weight 50, spare weight)",
        format!("{deep:.0}"),
        "",
    );
    table.row(
        "replicas seeded: shm / http (failed copies)",
        format!(
            "{:.0} / {:.0} ({:.0})",
            spent.seeds_shm, spent.seeds_http, spent.seed_failures
        ),
        "",
    );
}

/// Scenario 3: `books` books with one replica each, from cold, on a fresh simulator.
fn one_ip(options: &Options, cluster: &Cluster, table: &mut Table) -> anyhow::Result<()> {
    let books = options.books;
    let mut reader = ClusterReader::open(&cluster.name)?;
    let created = Instant::now();
    cluster.create(books, 1)?;
    let (mut synced_at, mut progress) = (None, cluster::Progress::default());
    let mut early = None;
    cluster::wait_for(COLD_START_LIMIT, Duration::from_millis(250), || {
        let (synced, _) = shm_synced(&mut reader, None);
        let census = cluster.census(books, 1, None)?;
        let at = created.elapsed();
        sample_early(cluster, at, &mut early)?;
        if synced == books {
            synced_at.get_or_insert(at);
        }
        progress.show(format_args!(
            "{:5.1} s: {synced}/{books} synced in shm, {}/{books} running in mgmt",
            at.as_secs_f64(),
            census.running
        ));
        Ok((census.complete == books).then_some(()))
    })
    .context("every book running")?;
    let running_at = created.elapsed();
    eprintln!();
    let counters = cluster.counters(&cluster.dcns)?;
    let sim = cluster.spot_rest_stats()?;
    let budget = SPOT_LIMIT_PER_MINUTE * HOST_SHARE;

    table.heading(format!(
        "3. {books} spot books from cold on one IP, 1 replica, 100 levels, {} DCNs",
        options.dcns
    ));
    let secs = |at: Duration| format!("{:.1} s", at.as_secs_f64());
    table.row(
        "every book synced (shm)",
        synced_at.map_or("-".to_owned(), secs),
        "≤ 60 s",
    );
    table.row("every book running (mgmt)", secs(running_at), "");
    table.row(
        "REST snapshots / weight spent / 429+418",
        format!(
            "{:.0} / {:.0} / {:.0}",
            counters.downloads, counters.weight, counters.rejections
        ),
        "",
    );
    table.row(
        "of the snapshots: to start books / deepenings",
        format!(
            "{:.0} / {:.0}",
            counters.by_depth().0,
            counters.by_depth().1
        ),
        "",
    );
    early_deepening(table, early.unwrap_or(counters), SHALLOW_DEPTH);
    table.row(
        "weight arithmetic: books × 5 against the host's budget",
        format!(
            "{:.0} of {budget:.0} a minute",
            books as f64 * SHALLOW_WEIGHT
        ),
        "",
    );
    table.row(
        "simulator: most weight of the IP in one minute (limit)",
        format!("{} ({})", sim["max_used_weight_1m"], sim["weight_limit_1m"]),
        "",
    );
    Ok(())
}

/// What scenario 1 would take with `--initial-depth 1000`, from the weight arithmetic: every
/// book's first replica pays 50 (the second is seeded either way), against the host's budget —
/// or against the part of it that the DCNs holding first replicas have, `payers` of them as
/// scenario 1 measured (each DCN of the host gets an equal share of it).
fn full_depth_arithmetic(options: &Options, table: &mut Table, payers: Option<usize>) {
    let budget = SPOT_LIMIT_PER_MINUTE * HOST_SHARE;
    let weight = options.books as f64 * DEEP_WEIGHT;
    table.heading(
        "4. cold start with --initial-depth 1000 (not run; --full-depth runs it)".to_owned(),
    );
    table.row(
        "weight of the first replicas / the host's budget a minute",
        format!("{weight:.0} / {budget:.0}"),
        "",
    );
    table.row(
        "every replica running, at the host's whole budget",
        format!("~{:.1} min", weight / budget),
        "",
    );
    let Some(payers) = payers.filter(|payers| *payers > 0) else {
        return;
    };
    let paying = budget * payers as f64 / options.dcns as f64;
    table.row(
        "the same with first replicas on the DCNs that paid in 1.",
        format!(
            "~{:.1} min ({payers} of {} DCNs' shares)",
            weight / paying,
            options.dcns
        ),
        "",
    );
}

/// The 1-, 5- and 15-minute load averages (the machine is shared: read the figures with them).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
