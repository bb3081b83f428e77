//! Record and replay (issue 17): a DCN records 50 books (45 spot, 5 futures) through injected
//! gaps (on two futures and three spot books) and a disconnect, and is killed with SIGKILL; the
//! recording, replayed through the simulator's protocol into a fresh DCN, gives that DCN the
//! recording's own book at every update id it reaches — in shared memory as it serves it, and in
//! its own recording of the replay, row for row.
//!
//! "The recording's own book" is what `ubdcc export` rebuilds from it (the engine's sync rules
//! and order book fed the recorded starting books and frames).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use ubdcc_shm::{BookStatus, ClusterReader, LevelQuery, Side};
use ubdcc_sim::replay::recording::{RecordKind, Recording};

use crate::support::http::{get_json, post_json};
use crate::support::rig::{ClusterRig, start_dcn};
use crate::support::sim::{Market, inject, market_fault};
use crate::support::wait::{SHM_POLL, wait_until, wait_until_every};
use crate::support::{Cleanup, Process, markets, wait_synced};

const BOOKS: usize = 50;
/// Levels per side compared (and shown by the DCNs' segments).
const TOP: usize = 20;
const TOP_ARG: &str = "20";
/// Both DCNs start books at 100 levels (a fifth of the weight), so the resyncs of all 50 books
/// fit one minute's weight and the recording is a stretch of market, not of waiting.
const DCN_ARGS: [&str; 4] = ["--levels", TOP_ARG, "--initial-depth", "100"];
/// Secrets the recording DCN holds; neither may reach the recording.
const CLUSTER_SECRET: &str = "recording-must-never-hold-this-secret";
const API_KEY: &str = "RecordingMustNeverHoldThisApiKey";

/// One side, best first, as the readers see it.
type Levels = Vec<(f64, f64)>;

/// An export: per market, per update id, both sides; and the newest receive time.
struct Export {
    rows: HashMap<String, BTreeMap<u64, (Levels, Levels)>>,
    first_received_ns: u64,
    last_received_ns: u64,
}

impl Export {
    fn len(&self) -> usize {
        self.rows.values().map(BTreeMap::len).sum()
    }
}

/// Runs `ubdcc export DIR --top TOP` and reads its CSV.
fn export(dir: &Path) -> Export {
    let out = dir.with_extension("csv");
    let status = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args(["export", &dir.to_string_lossy(), "--top", TOP_ARG, "--out"])
        .arg(&out)
        .status()
        .expect("ubdcc export runs");
    assert!(status.success(), "export of {} failed", dir.display());
    let text = std::fs::read_to_string(&out).expect("export written");
    let mut export = Export {
        rows: HashMap::new(),
        first_received_ns: u64::MAX,
        last_received_ns: 0,
    };
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(
            fields.len(),
            4 + 4 * TOP,
            "a row of {TOP} levels per side: {line}"
        );
        let update_id: u64 = fields[2].parse().expect("update id");
        let received_ns: u64 = fields[3].parse().expect("receive time");
        export.first_received_ns = export.first_received_ns.min(received_ns);
        export.last_received_ns = export.last_received_ns.max(received_ns);
        let side = |cells: &[&str]| -> Levels {
            cells
                .chunks(2)
                .take_while(|pair| !pair[0].is_empty())
                .map(|pair| {
                    (
                        pair[0].parse().expect("price"),
                        pair[1].parse().expect("qty"),
                    )
                })
                .collect()
        };
        let bids = side(&fields[4..4 + 2 * TOP]);
        let asks = side(&fields[4 + 2 * TOP..]);
        export
            .rows
            .entry(fields[1].to_owned())
            .or_default()
            .insert(update_id, (bids, asks));
    }
    export
}

fn unix_now_ns() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("after 1970").as_nanos() as u64
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ubdcc-rec-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// Compares every synced side of every book of `reader` with the recording's rows at the
/// update id it is at; returns how many sides were compared. A side at an update id the
/// recording never had a synced book at is a failure too.
fn compare_served(
    reader: &mut ClusterReader,
    recorded: &Export,
    books: &[(&str, &str, String)],
) -> Result<usize, String> {
    let mut compared = 0;
    let mut levels = Vec::new();
    for (exchange, _, symbol) in books {
        for side in [Side::Bids, Side::Asks] {
            let Ok(info) = reader.read(exchange, symbol, side, &LevelQuery::ALL, &mut levels)
            else {
                continue;
            };
            if info.status != BookStatus::Synced {
                continue;
            }
            let held: Levels = levels.iter().map(|l| (l.price, l.quantity)).collect();
            let row = recorded
                .rows
                .get(symbol.as_str())
                .and_then(|rows| rows.get(&info.last_update_id));
            let Some((bids, asks)) = row else {
                return Err(format!(
                    "{symbol} served at {} which the recording never had",
                    info.last_update_id
                ));
            };
            let expected = if side == Side::Bids { bids } else { asks };
            if &held != expected {
                return Err(format!(
                    "{symbol} {side:?} at {}: served {held:?}, recorded {expected:?}",
                    info.last_update_id
                ));
            }
            compared += 1;
        }
    }
    Ok(compared)
}

/// 45 spot books and 5 futures books (`pu`-chained), symbols distinct across both (the
/// comparisons key rows by symbol); the futures books come first, so the gaps hit them and the
/// first spot books.
fn books() -> Vec<Market> {
    let futures =
        (BOOKS - 5..BOOKS).map(|i| ("binance.com-futures", "futures", format!("SIM{i}USDT")));
    futures.chain(markets(BOOKS - 5, 0, 0)).collect()
}

/// Runs `ubdcc export DIR --format parquet` and counts its rows.
fn parquet_rows(dir: &Path) -> i64 {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    let out = dir.with_extension("parquet");
    let status = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args([
            "export",
            &dir.to_string_lossy(),
            "--top",
            TOP_ARG,
            "--format",
            "parquet",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("ubdcc export runs");
    assert!(
        status.success(),
        "parquet export of {} failed",
        dir.display()
    );
    let file = std::fs::File::open(&out).expect("written");
    let reader = SerializedFileReader::new(file).expect("a parquet file");
    reader.metadata().file_metadata().num_rows()
}

/// Appends the first bytes of a frame (the file's first) to the newest file.
fn tear_last_frame(dir: &Path) {
    use std::io::Write as _;
    let newest = Recording::open(dir)
        .expect("a recording")
        .files()
        .last()
        .expect("a file")
        .to_owned();
    let bytes = std::fs::read(&newest).expect("readable");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("writable");
    file.write_all(&bytes[..bytes.len().min(64)])
        .expect("appended");
}

/// The recording's directory and files are the owner's alone, and no record holds a secret of
/// the DCN that wrote it.
fn assert_private_and_secret_free(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let recording = Recording::open(dir).expect("a recording");
    for file in recording.files() {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let mut records = 0;
    for item in recording {
        let item = item.expect("readable");
        let text = String::from_utf8_lossy(&item.payload);
        for secret in [CLUSTER_SECRET, API_KEY] {
            assert!(
                !text.contains(secret) && !item.market.contains(secret),
                "a record holds a secret"
            );
        }
        records += 1;
    }
    assert!(records > 0);
}

#[test]
fn a_recording_cut_by_kill_9_replays_into_a_fresh_dcn_equal_to_its_own_books_at_every_update_id() {
    let recording = temp_dir("a");
    let replayed = temp_dir("b");
    let books = books();

    // Record 50 books through gaps on five of them and a disconnect of all of them.
    let recorded_cluster = format!("recorded{}", std::process::id());
    let _recorded_cleanup = Cleanup(recorded_cluster.clone());
    let sim = Process::start(&["sim", "--port", "0", "--markets", "50"]);
    let record_arg = recording.to_string_lossy().into_owned();
    let mut recorder = start_dcn(
        &recorded_cluster,
        &sim.address,
        &books,
        &[
            &["--record", record_arg.as_str()][..],
            &DCN_ARGS,
            &["--cluster-secret", CLUSTER_SECRET],
            &["--api-key", &format!("binance.com={API_KEY}")],
        ]
        .concat(),
    );
    let mut reader = ClusterReader::open(&recorded_cluster).expect("cluster");
    wait_synced(&mut reader, &books, Duration::from_secs(120));
    for (exchange, family, symbol) in &books[3..8] {
        inject(
            &sim.address,
            &market_fault("drop", (exchange, family, symbol), json!({"count": 2})),
        );
    }
    wait_until(Duration::from_secs(60), "the five gaps resynced", || {
        let resynced = books[3..8].iter().all(|(exchange, _, symbol)| {
            reader
                .info(exchange, symbol)
                .is_ok_and(|i| i.resyncs > 0 && i.status == BookStatus::Synced)
        });
        resynced.then_some(()).ok_or_else(|| "not yet".to_owned())
    });
    inject(&sim.address, &json!({"fault": "disconnect"}));
    wait_until(
        Duration::from_secs(90),
        "every book resynced after the disconnect",
        || {
            let resynced = books.iter().all(|(exchange, _, symbol)| {
                reader
                    .info(exchange, symbol)
                    .is_ok_and(|i| i.resyncs > 0 && i.status == BookStatus::Synced)
            });
            resynced.then_some(()).ok_or_else(|| "not yet".to_owned())
        },
    );
    // Part of the scenario: a calm stretch after the resyncs, then a crash.
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = unix_now_ns();
    recorder.kill();

    // Whether or not the kill tore the last frame, make sure one is torn: the start of a frame
    // with the rest missing, as a kill in the middle of a write leaves it.
    tear_last_frame(&recording);

    // The recording's own books; the kill cost at most its last second (the slack is for a
    // loaded machine's scheduling of the writer thread, not for lost data).
    let recorded = export(&recording);
    assert_eq!(
        recorded.rows.len(),
        BOOKS,
        "every book was rebuilt from the recording"
    );
    let lost = Duration::from_nanos(killed_at.saturating_sub(recorded.last_received_ns));
    println!(
        "recorded {} rows; the kill -9 cost the last {lost:?}",
        recorded.len()
    );
    assert!(
        lost < Duration::from_secs(3),
        "the kill lost {lost:?} of recording"
    );

    assert_private_and_secret_free(&recording);
    assert_eq!(
        parquet_rows(&recording),
        recorded.len() as i64,
        "parquet holds the CSV's rows"
    );

    // Replay at twice the pace into a fresh DCN that records what it meets.
    let replay = Process::start(&["replay", &record_arg, "--port", "0", "--speed", "2"]);
    let replay_cluster = format!("replayed{}", std::process::id());
    let _replay_cleanup = Cleanup(replay_cluster.clone());
    let replayed_arg = replayed.to_string_lossy().into_owned();
    let fresh = start_dcn(
        &replay_cluster,
        &replay.address,
        &books,
        &[&["--record", replayed_arg.as_str()][..], &DCN_ARGS].concat(),
    );
    let mut fresh_reader = ClusterReader::open(&replay_cluster).expect("cluster");
    // Every synced side the fresh DCN serves, as often as shared memory is looked at, until the
    // replay is over (the recording's span at 2x, and a margin for the last events).
    let span = Duration::from_nanos(recorded.last_received_ns - recorded.first_received_ns);
    let until = Instant::now() + span / 2 + Duration::from_secs(5);
    let mut compared = 0;
    wait_until_every(
        SHM_POLL,
        span + Duration::from_secs(60),
        "the replay is over",
        || {
            compared += compare_served(&mut fresh_reader, &recorded, &books)
                .unwrap_or_else(|e| panic!("{e}"));
            (Instant::now() > until)
                .then_some(())
                .ok_or_else(|| format!("{compared} sides compared"))
        },
    );
    assert!(
        compared >= 10 * BOOKS,
        "only {compared} served sides compared"
    );
    fresh.terminate();
    println!("{compared} served sides equal to the recording");

    // Row for row: every update id the fresh DCN was synced at, the recording had the same book.
    let met = export(&replayed);
    assert_eq!(met.rows.len(), BOOKS, "every book synced from the replay");
    let mut covered = 0;
    for (market, rows) in &met.rows {
        let own = &recorded.rows[market];
        for (update_id, row) in rows {
            assert_eq!(own.get(update_id), Some(row), "{market} at {update_id}");
        }
        let (first, last) = (
            rows.keys().next().expect("a row"),
            rows.keys().last().expect("a row"),
        );
        covered += own.range(first..=last).count();
    }
    println!(
        "the fresh DCN met {} of the recording's {covered} rows in its span",
        met.len()
    );
    assert!(
        met.len() * 2 >= covered,
        "the fresh DCN was synced for most of the replay"
    );
}

/// `record` values mgmt refuses (#1108), each with nothing created.
fn assert_bad_record_values_refused(rig: &ClusterRig) {
    for bad in [json!("yes"), json!(1), json!([true]), json!({"on": true})] {
        let body = json!({"exchange": "binance.com", "market": "SIM0USDT", "record": bad});
        let answer = post_json(&rig.local.address, "/create_depthcache", &body);
        assert_eq!(answer["error_id"], "#1108", "{bad}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("record must be true or false"), "{answer}");
    }
    let path = "/create_depthcaches?exchange=binance.com&markets=SIM0USDT,SIM1USDT&record=1";
    let answer = get_json(&rig.local.address, path);
    assert_eq!(answer["error_id"], "#1108", "{answer}");
    let list = get_json(&rig.mgmt.address, "/get_depthcache_list");
    assert_eq!(
        list["depthcache_list"],
        json!({}),
        "nothing created: {list}"
    );
}

/// Every record of the recording in `dir` belongs to `market` (its stream, `stream`); returns
/// how many frames and starting books it holds.
fn assert_only(dir: &Path, market: &str, stream: &str) -> (usize, usize) {
    let (mut frames, mut snapshots) = (0, 0);
    for item in Recording::open(dir).expect("a recording") {
        let item = item.expect("readable");
        match item.kind {
            RecordKind::Frame => {
                let frame: serde_json::Value =
                    serde_json::from_slice(&item.payload).expect("a JSON frame");
                assert_eq!(
                    frame["stream"], stream,
                    "a frame of another stream: {frame}"
                );
                frames += 1;
            }
            RecordKind::Snapshot | RecordKind::Marker => {
                assert_eq!(item.market, market, "a record of another book");
                snapshots += usize::from(item.kind == RecordKind::Snapshot);
            }
            RecordKind::Behind => {}
        }
    }
    (frames, snapshots)
}

/// The per-book switch (issue 17): of two books created through the API on two DCNs, only the
/// one created with `record=true` is recorded by the DCN started with `--record-books`, and
/// only it is exported; the other DCN has no recording directory, keeps the book all the same,
/// and the book's info names it. Bad values of `record` are refused.
#[test]
fn only_books_created_with_record_true_are_recorded_by_a_record_books_dcn() {
    let dir = temp_dir("books");
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut rig = ClusterRig::start("recbooks", 2, 0);
    rig.add_dcn_with(&["--record-books", &dir_arg]);
    rig.add_dcn();
    rig.wait_pods(4);
    assert_bad_record_values_refused(&rig);

    let body = json!({"exchange": "binance.com", "market": "SIM0USDT", "desired_quantity": 2,
                      "record": true});
    let answer = post_json(&rig.local.address, "/create_depthcache", &body);
    assert_eq!(answer["result"], "OK", "{answer}");
    // `record` as query text, in any case.
    let path =
        "/create_depthcaches?exchange=binance.com&markets=SIM1USDT&desired_quantity=2&record=FALSE";
    let answer = get_json(&rig.local.address, path);
    assert_eq!(answer["result"], "OK", "{answer}");
    let books = [
        ("binance.com", "spot", "SIM0USDT".to_owned()),
        ("binance.com", "spot", "SIM1USDT".to_owned()),
    ];
    rig.wait_running(&books, 2, None, Duration::from_secs(120));

    let name = |dcn: &Process| {
        let test = get_json(&dcn.address, "/test");
        test["pod"]["name"].as_str().expect("a name").to_owned()
    };
    let (recording_dcn, plain_dcn) = (name(&rig.dcns[0]), name(&rig.dcns[1]));
    let info = |market: &str| {
        let path = format!("/get_depthcache_info?exchange=binance.com&market={market}");
        get_json(&rig.local.address, &path)["depthcache_info"].clone()
    };
    let recorded = info("SIM0USDT");
    assert_eq!(recorded["RECORD"], true, "{recorded}");
    let warning = recorded["RECORD_WARNING"].as_str().unwrap_or_default();
    assert!(
        warning.contains(&plain_dcn) && !warning.contains(&recording_dcn),
        "the warning names the DCN without a recording directory only: {recorded}"
    );
    let plain = info("SIM1USDT");
    assert!(
        plain.get("RECORD").is_none() && plain.get("RECORD_WARNING").is_none(),
        "{plain}"
    );

    // Both books run on the recording DCN; its recording holds the chosen one's frames.
    wait_until(Duration::from_secs(30), "frames recorded", || {
        if let Err(error) = Recording::open(&dir) {
            // No file yet: the first is written with the first second's records.
            return Err(error.to_string());
        }
        let (frames, snapshots) = assert_only(&dir, "SIM0USDT", "sim0usdt@depth");
        (frames >= 20 && snapshots >= 1)
            .then_some(())
            .ok_or_else(|| format!("{frames} frames, {snapshots} starting books"))
    });
    // A graceful stop writes what the recorder holds.
    rig.dcns.remove(0).terminate();
    let (frames, _) = assert_only(&dir, "SIM0USDT", "sim0usdt@depth");
    let exported = export(&dir);
    assert_eq!(
        exported.rows.keys().collect::<Vec<_>>(),
        ["SIM0USDT"],
        "only the recorded book is exported"
    );
    assert!(exported.len() > 1, "{} rows", exported.len());
    println!(
        "{frames} frames and {} rows of SIM0USDT only",
        exported.len()
    );
}
