//! The C ABI as C programs see it: the header compiled with gcc against the static library,
//! struct layouts and the layout hash compared with Rust, the example and the torture reader run
//! against a real writer, and every error path called from Rust.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ubdcc_ffi::*;
use ubdcc_shm::{
    Audit, BookMeta, BookSides, BookStatus, FillAmount, Freshness, Level, OutOfSyncReason,
    RawLevel, SegmentConfig, Side, depth_stats, fill_price, test_pattern,
};

/// `target/<profile>`, the parent of the `deps/` holding this test.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// `libubdcc_ffi.a`, built once per test run. Cargo builds only the rlib for integration tests, so
/// ask it for the library's other crate types; the build lock is free while tests run.
fn static_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "ubdcc-ffi", "--lib"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building libubdcc_ffi.a failed");
        profile_dir().join("libubdcc_ffi.a")
    })
}

/// Compiles `source` (relative to the ffi crate) with gcc, warnings as errors, against the header
/// and the static library; returns the executable.
fn compile_c(source: &str, name: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let library = static_library();
    let status = Command::new("gcc")
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join(source))
        .arg(library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {source}");
    out
}

fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .expect("program runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn unique_cluster(tag: &str) -> String {
    format!("cabi{tag}{}", std::process::id())
}

/// A pattern writer on a thread of this process, publishing as fast as it can until dropped.
struct PatternWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl PatternWriter {
    /// `pause` between publishes; `None` publishes as fast as it can.
    fn start(cluster: &str, books: u32, levels: u32, pause: Option<Duration>) -> Self {
        let mut writer = SegmentConfig::new(cluster, "w")
            .books(books)
            .levels_per_side(levels)
            .create()
            .expect("create segment");
        let handles: Vec<_> = (0..books)
            .map(|i| {
                writer
                    .add_book("binance.com", &format!("PATTERN{i}"))
                    .expect("add")
            })
            .collect();
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for (i, handle) in handles.iter().enumerate() {
            test_pattern::fill(i as u64 + 1, levels, &mut bids, &mut asks);
            writer
                .publish(
                    *handle,
                    &test_pattern::meta(i as u64 + 1),
                    &test_pattern::sides(&bids, &asks),
                )
                .expect("publish");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut k = handles.len() as u64 + 1;
            // Most versions as edits (the DCN's publish path), one in 16 whole.
            let mut scratch = test_pattern::PatternScratch::default();
            while !flag.load(Ordering::Relaxed) {
                let handle = handles[(k % handles.len() as u64) as usize];
                test_pattern::publish(&mut writer, handle, k, &mut scratch).expect("publish");
                if k % 64 == 0 {
                    writer.heartbeat();
                }
                k += 1;
                if let Some(pause) = pause {
                    std::thread::sleep(pause);
                }
            }
            k
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("writer thread")
    }
}

impl Drop for PatternWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

#[test]
fn header_layout_and_hash_match_the_rust_library() {
    let program = compile_c("tests/c/layout_check.c", "layout_check");
    let (ok, stdout, stderr) = run(&program, &[]);
    assert!(ok, "layout_check failed: {stderr}");
    let c: HashMap<&str, u64> = stdout
        .lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name, value.parse().ok()?))
        })
        .collect();

    for (name, value) in ubdcc_shm::layout_table() {
        assert_eq!(
            c.get(name).copied(),
            Some(*value as u64),
            "shm layout entry {name}"
        );
    }
    // (name as layout_check.c prints it, value on the Rust side)
    macro_rules! size {
        ($ty:ident) => {
            (concat!("sizeof ", stringify!($ty)), size_of::<$ty>())
        };
    }
    macro_rules! field {
        ($ty:ident . $field:ident) => {
            (
                concat!(stringify!($ty), ".", stringify!($field)),
                std::mem::offset_of!($ty, $field),
            )
        };
    }
    let api: &[(&str, usize)] = &[
        size!(ubdcc_level_t),
        field!(ubdcc_level_t.quantity),
        size!(ubdcc_book_info_t),
        field!(ubdcc_book_info_t.reason),
        field!(ubdcc_book_info_t.depth),
        field!(ubdcc_book_info_t.last_update_id),
        field!(ubdcc_book_info_t.event_time_ms),
        field!(ubdcc_book_info_t.receive_time_ns),
        field!(ubdcc_book_info_t.publish_time_ns),
        field!(ubdcc_book_info_t.bid_count),
        field!(ubdcc_book_info_t.ask_count),
        field!(ubdcc_book_info_t.resyncs),
        field!(ubdcc_book_info_t.gaps),
        field!(ubdcc_book_info_t.updates),
        field!(ubdcc_book_info_t.generation),
        field!(ubdcc_book_info_t.changes),
        field!(ubdcc_book_info_t.verified_at_ms),
        field!(ubdcc_book_info_t.audits),
        field!(ubdcc_book_info_t.audit_mismatches),
        field!(ubdcc_book_info_t.top_hash),
        field!(ubdcc_book_info_t.top_hash_update_id),
        field!(ubdcc_book_info_t.freshness),
        size!(ubdcc_bbo_t),
        field!(ubdcc_bbo_t.ask),
        field!(ubdcc_bbo_t.has_bid),
        field!(ubdcc_bbo_t.has_ask),
        field!(ubdcc_bbo_t.depth),
        field!(ubdcc_bbo_t.last_update_id),
        field!(ubdcc_bbo_t.event_time_ms),
        field!(ubdcc_bbo_t.receive_time_ns),
        field!(ubdcc_bbo_t.publish_time_ns),
        field!(ubdcc_bbo_t.generation),
        field!(ubdcc_bbo_t.changes),
        field!(ubdcc_bbo_t.freshness),
        size!(ubdcc_book_entry_t),
        field!(ubdcc_book_entry_t.market),
        field!(ubdcc_book_entry_t.segment),
        field!(ubdcc_book_entry_t.status),
        field!(ubdcc_book_entry_t.reason),
        size!(ubdcc_status_t),
        size!(ubdcc_bbo_entry_t),
        field!(ubdcc_bbo_entry_t.market),
        field!(ubdcc_bbo_entry_t.book_status),
        field!(ubdcc_bbo_entry_t.reason),
        field!(ubdcc_bbo_entry_t.status),
        field!(ubdcc_bbo_entry_t.bbo),
        size!(ubdcc_fill_t),
        field!(ubdcc_fill_t.worst_price),
        field!(ubdcc_fill_t.filled_quantity),
        field!(ubdcc_fill_t.filled_quote),
        field!(ubdcc_fill_t.slippage_bps),
        field!(ubdcc_fill_t.levels_used),
        field!(ubdcc_fill_t.complete),
        size!(ubdcc_band_t),
        field!(ubdcc_band_t.bid_quantity),
        field!(ubdcc_band_t.ask_quantity),
        field!(ubdcc_band_t.complete),
        size!(ubdcc_depth_stats_t),
        field!(ubdcc_depth_stats_t.spread),
        field!(ubdcc_depth_stats_t.spread_bps),
        field!(ubdcc_depth_stats_t.microprice),
        field!(ubdcc_depth_stats_t.imbalance),
        field!(ubdcc_depth_stats_t.top_n),
        field!(ubdcc_depth_stats_t.valid),
        // Passed as `int` (`c_int` on the Rust side).
        ("sizeof ubdcc_fill_side_t", size_of::<std::ffi::c_int>()),
        ("sizeof ubdcc_amount_kind_t", size_of::<std::ffi::c_int>()),
        ("UBDCC_BUY", UBDCC_BUY as usize),
        ("UBDCC_SELL", UBDCC_SELL as usize),
        ("UBDCC_AMOUNT_BASE", UBDCC_AMOUNT_BASE as usize),
        ("UBDCC_AMOUNT_QUOTE", UBDCC_AMOUNT_QUOTE as usize),
    ];
    for (name, value) in api {
        assert_eq!(
            c.get(name).copied(),
            Some(*value as u64),
            "API struct entry {name}"
        );
    }
    assert_eq!(
        c["UBDCC_LAYOUT_HASH"],
        ubdcc_shm::LAYOUT_HASH,
        "UBDCC_LAYOUT_HASH in ubdcc.h is stale: set it to {:#018x}",
        ubdcc_shm::LAYOUT_HASH
    );
    assert_eq!(c["ubdcc_layout_hash()"], ubdcc_shm::LAYOUT_HASH);
    assert_eq!(c["UBDCC_LAYOUT_MAJOR"], u64::from(ubdcc_shm::LAYOUT_MAJOR));
    assert_eq!(c["UBDCC_LAYOUT_MINOR"], u64::from(ubdcc_shm::LAYOUT_MINOR));
    use ubdcc_status_t::*;
    let statuses = [
        ("UBDCC_OK", UBDCC_OK),
        ("UBDCC_ERR_NULL_ARGUMENT", UBDCC_ERR_NULL_ARGUMENT),
        ("UBDCC_ERR_INVALID_ARGUMENT", UBDCC_ERR_INVALID_ARGUMENT),
        ("UBDCC_ERR_NOT_FOUND", UBDCC_ERR_NOT_FOUND),
        ("UBDCC_ERR_OUT_OF_SYNC", UBDCC_ERR_OUT_OF_SYNC),
        ("UBDCC_ERR_WRITER_GONE", UBDCC_ERR_WRITER_GONE),
        ("UBDCC_ERR_WRITER_HUNG", UBDCC_ERR_WRITER_HUNG),
        ("UBDCC_ERR_CONTENDED", UBDCC_ERR_CONTENDED),
        ("UBDCC_ERR_BUFFER_TOO_SMALL", UBDCC_ERR_BUFFER_TOO_SMALL),
        ("UBDCC_ERR_IO", UBDCC_ERR_IO),
        ("UBDCC_ERR_INTERNAL", UBDCC_ERR_INTERNAL),
        ("UBDCC_ERR_TIMEOUT", UBDCC_ERR_TIMEOUT),
    ];
    for (name, status) in statuses {
        assert_eq!(c[name], status as u64, "{name}");
    }
    use ubdcc_shm::OutOfSyncReason::*;
    let reasons = [
        ("UBDCC_REASON_UNSPECIFIED", Unspecified),
        ("UBDCC_REASON_GAP", Gap),
        ("UBDCC_REASON_DISCONNECTED", Disconnected),
        ("UBDCC_REASON_STREAM_SILENT", StreamSilent),
        ("UBDCC_REASON_SERVER_SHUTDOWN", ServerShutdown),
        ("UBDCC_REASON_SNAPSHOT_FAILED", SnapshotFailed),
        ("UBDCC_REASON_REFRESH", Refresh),
        ("UBDCC_REASON_MALFORMED_MESSAGE", MalformedMessage),
        ("UBDCC_REASON_WRITER_FAULT", WriterFault),
        ("UBDCC_REASON_DELISTED", Delisted),
        ("UBDCC_REASON_SUBSCRIPTION_REFUSED", SubscriptionRefused),
        ("UBDCC_REASON_BUFFER_OVERFLOW", BufferOverflow),
    ];
    for (name, reason) in reasons {
        assert_eq!(c[name], reason as u64, "{name}");
    }
}

#[test]
fn c_torture_reader_sees_no_torn_reads() {
    let cluster = unique_cluster("torture");
    let program = compile_c("examples/torture_reader.c", "torture_reader");
    let writer = PatternWriter::start(&cluster, 4, 1000, None);
    let reads = if cfg!(debug_assertions) {
        "1000000"
    } else {
        "3000000"
    };
    let (ok, stdout, stderr) = run(&program, &[&cluster, "4", reads, "1000"]);
    let versions = writer.stop();
    println!(
        "C torture: {} ({versions} versions published meanwhile)",
        stdout.trim()
    );
    assert!(ok, "torture reader failed: {stdout} {stderr}");
    assert!(
        stdout.contains(&format!("reads={reads} torn=0")),
        "{stdout}"
    );
}

#[test]
fn c_example_prints_the_top_of_a_book() {
    let cluster = unique_cluster("example");
    let program = compile_c("examples/read_book.c", "read_book");
    let writer = PatternWriter::start(&cluster, 1, 20, Some(Duration::from_micros(100)));
    let (ok, stdout, stderr) = run(&program, &[&cluster, "binance.com", "PATTERN0", "3"]);
    writer.stop();
    assert!(ok, "read_book failed: {stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("ask"))
            .count(),
        3,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("bid"))
            .count(),
        3,
        "{stdout}"
    );

    // The whole-book calls: one version of both sides, a fill, the stats, every book's top.
    assert!(stdout.contains("bids=3 asks=3"), "{stdout}");
    let fill = stdout
        .lines()
        .find(|l| l.starts_with("fill buy 1: average"))
        .unwrap_or_else(|| panic!("no fill line: {stdout}"));
    // Level 0 of a pattern version holds `a >= 1` of the base asset: a buy of 1 fills there.
    assert!(fill.contains("levels 1 complete 1"), "{fill}");
    assert!(stdout.contains("\nstats mid "), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("band +-")).count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("top binance.com PATTERN0 bid "), "{stdout}");
    // The writer publishes every 100 µs, so the example's wait for a newer version is woken.
    assert!(stdout.contains("\nchanged: stamp "), "{stdout}");

    let (ok, _, stderr) = run(&program, &[&cluster, "binance.com", "NOPE", "3"]);
    assert!(!ok);
    assert!(stderr.contains("UBDCC_ERR_NOT_FOUND"), "{stderr}");
}

#[test]
fn book_info_carries_the_covered_depth() {
    let cluster = unique_cluster("depth");
    let mut writer = SegmentConfig::new(cluster.as_str(), "w")
        .books(1)
        .levels_per_side(4)
        .create()
        .expect("create segment");
    let book = writer.add_book("binance.com", "DEPTH").expect("add");
    let asks = [RawLevel {
        price: 101,
        quantity: 1,
    }];
    let sides = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: 9,
        depth: 100,
        ..BookMeta::starting()
    };
    writer.publish(book, &meta, &sides).expect("publish");
    let reader = open(&cluster);
    let (exchange, market) = (
        CString::new("binance.com").unwrap(),
        CString::new("DEPTH").unwrap(),
    );
    // Non-zero everywhere, so a field the library forgets to write shows.
    let mut info = ubdcc_book_info_t {
        depth: u32::MAX,
        reserved: [0xaa; 2],
        ..ubdcc_book_info_t::default()
    };
    // SAFETY: live reader, valid C strings, `info` valid for a write.
    let status = unsafe { ubdcc_book_info(reader, exchange.as_ptr(), market.as_ptr(), &mut info) };
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    assert_eq!(
        (info.depth, info.reserved, info.last_update_id, info.status),
        (100, [0; 2], 9, UBDCC_BOOK_SYNCED)
    );

    let mut levels = [ubdcc_level_t::default(); 4];
    let (mut count, mut with_levels) = (0, ubdcc_book_info_t::default());
    // SAFETY: live reader, valid C strings, buffers of the lengths given, `with_levels` writable.
    let status = unsafe {
        ubdcc_get_asks(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            levels.as_mut_ptr(),
            levels.len(),
            &mut count,
            &mut with_levels,
        )
    };
    assert_eq!(
        (status, count),
        (ubdcc_status_t::UBDCC_OK, 1),
        "{}",
        last_error()
    );
    assert_eq!(with_levels.depth, 100);
    // SAFETY: handle from `open`, closed once.
    unsafe { ubdcc_reader_close(reader) };
}

#[test]
fn bbo_reads_the_best_levels_and_reports_what_is_missing() {
    let cluster = unique_cluster("bbo");
    let mut writer = SegmentConfig::new(cluster.as_str(), "w")
        .books(2)
        .levels_per_side(4)
        .create()
        .expect("create segment");
    let book = writer.add_book("binance.com", "BBO").expect("add");
    writer.add_book("binance.com", "STARTING").expect("add");
    let bids = [
        RawLevel {
            price: 9_950,
            quantity: 3,
        },
        RawLevel {
            price: 9_940,
            quantity: 1,
        },
    ];
    let sides = BookSides {
        price_exponent: -2,
        quantity_exponent: 0,
        bids: &bids,
        asks: &[],
    };
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: 12,
        depth: 20,
        ..BookMeta::starting()
    };
    writer.publish(book, &meta, &sides).expect("publish");
    let reader = open(&cluster);
    let exchange = CString::new("binance.com").unwrap();
    let bbo_of = |market: &str| {
        let market = CString::new(market).unwrap();
        // Non-zero everywhere, so a field the library forgets to write shows.
        let mut bbo = ubdcc_bbo_t {
            has_ask: 7,
            reserved: [0xaa; 2],
            ..ubdcc_bbo_t::default()
        };
        // SAFETY: live reader, valid C strings, `bbo` valid for a write.
        let status = unsafe { ubdcc_bbo(reader, exchange.as_ptr(), market.as_ptr(), &mut bbo) };
        (status, bbo)
    };
    let (status, bbo) = bbo_of("BBO");
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    assert_eq!(
        (bbo.bid.price, bbo.bid.quantity, bbo.has_bid, bbo.has_ask),
        (99.5, 3.0, 1, 0)
    );
    assert_eq!(
        (bbo.last_update_id, bbo.depth, bbo.reserved, bbo.ask.price),
        (12, 20, [0; 2], 0.0)
    );
    assert_eq!(bbo_of("STARTING").0, ubdcc_status_t::UBDCC_ERR_OUT_OF_SYNC);
    assert_eq!(bbo_of("NOPE").0, ubdcc_status_t::UBDCC_ERR_NOT_FOUND);
    // SAFETY: live reader, valid C strings; a null output is an error code, not a crash.
    let status = unsafe {
        ubdcc_bbo(
            reader,
            exchange.as_ptr(),
            exchange.as_ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
    // SAFETY: handle from `open`, closed once.
    unsafe { ubdcc_reader_close(reader) };
}

fn last_error() -> String {
    // SAFETY: `ubdcc_last_error_message` never returns null and the text lives until our next call.
    unsafe { CStr::from_ptr(ubdcc_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn open(cluster: &str) -> *mut ubdcc_reader_t {
    let name = CString::new(cluster).unwrap();
    let mut reader = std::ptr::null_mut();
    // SAFETY: valid C string and out pointer.
    let status = unsafe { ubdcc_reader_open(name.as_ptr(), &mut reader) };
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    reader
}

fn get_asks(
    reader: *mut ubdcc_reader_t,
    market: &str,
    limit: Option<i64>,
    threshold: Option<f64>,
    buffer: &mut [ubdcc_level_t],
) -> (ubdcc_status_t, usize) {
    let exchange = CString::new("binance.com").unwrap();
    let market = CString::new(market).unwrap();
    let limit_ptr = limit.as_ref().map_or(std::ptr::null(), |l| l as *const i64);
    let threshold_ptr = threshold
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const f64);
    let mut count = usize::MAX;
    // SAFETY: every pointer is valid for the call; the buffer has `buffer.len()` elements.
    let status = unsafe {
        ubdcc_get_asks(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            limit_ptr,
            threshold_ptr,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut count,
            std::ptr::null_mut(),
        )
    };
    (status, count)
}

#[test]
fn bad_arguments_are_error_codes_with_messages() {
    let cluster = unique_cluster("errors");
    let writer = PatternWriter::start(&cluster, 1, 600, Some(Duration::from_micros(100)));
    let reader = open(&cluster);
    let mut buffer = [ubdcc_level_t::default(); 20];

    assert_eq!(
        get_asks(reader, "PATTERN0", Some(10), None, &mut buffer),
        (ubdcc_status_t::UBDCC_OK, 10)
    );
    assert_eq!(
        get_asks(reader, "PATTERN0", Some(0), None, &mut buffer),
        (ubdcc_status_t::UBDCC_OK, 0)
    );
    // A threshold below the first level's notional still returns the first level.
    assert_eq!(
        get_asks(reader, "PATTERN0", None, Some(0.0), &mut buffer),
        (ubdcc_status_t::UBDCC_OK, 1)
    );

    assert_eq!(
        get_asks(reader, "PATTERN0", Some(-1), None, &mut buffer).0,
        ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("limit_count"), "{}", last_error());
    assert_eq!(
        get_asks(reader, "PATTERN0", None, Some(f64::NAN), &mut buffer).0,
        ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        get_asks(reader, "MISSING", Some(1), None, &mut buffer).0,
        ubdcc_status_t::UBDCC_ERR_NOT_FOUND
    );
    assert!(last_error().contains("MISSING"), "{}", last_error());

    let (status, count) = get_asks(reader, "PATTERN0", None, None, &mut buffer);
    assert_eq!(status, ubdcc_status_t::UBDCC_ERR_BUFFER_TOO_SMALL);
    assert!(
        count >= 500,
        "count reports every selected level, got {count}"
    );

    // SAFETY: null handles and pointers are exactly what is being tested; nothing is dereferenced.
    unsafe {
        let mut count = 0;
        let name = CString::new("x").unwrap();
        let status = ubdcc_get_asks(
            std::ptr::null_mut(),
            name.as_ptr(),
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut count,
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        let status = ubdcc_get_asks(
            reader,
            std::ptr::null(),
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut count,
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        let mut out = std::ptr::null_mut();
        let bad = CString::new("no.dots").unwrap();
        assert_eq!(
            ubdcc_reader_open(bad.as_ptr(), &mut out),
            ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            ubdcc_reader_open(std::ptr::null(), &mut out),
            ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT
        );
        let invalid_utf8 = [0xffu8, 0xfe, 0];
        let status = ubdcc_get_asks(
            reader,
            invalid_utf8.as_ptr().cast(),
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut count,
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT);
        ubdcc_reader_close(std::ptr::null_mut());
    }

    let mut entries = vec![
        ubdcc_book_entry_t {
            exchange: [0; 49],
            market: [0; 49],
            segment: [0; 144],
            status: 0,
            reason: 0
        };
        4
    ];
    let mut count = 0;
    // SAFETY: live reader, buffer of `entries.len()` elements.
    let status =
        unsafe { ubdcc_list_books(reader, entries.as_mut_ptr(), entries.len(), &mut count) };
    assert_eq!((status, count), (ubdcc_status_t::UBDCC_OK, 1));
    // SAFETY: the field is NUL-terminated by construction.
    let market = unsafe { CStr::from_ptr(entries[0].market.as_ptr()) };
    assert_eq!(market.to_str().unwrap(), "PATTERN0");
    assert_eq!(entries[0].status, UBDCC_BOOK_SYNCED);

    writer.stop();
    // The writer dropped its segment (clean shutdown): the book is gone, not served stale.
    let (status, _) = get_asks(reader, "PATTERN0", Some(1), None, &mut buffer);
    assert!(
        matches!(
            status,
            ubdcc_status_t::UBDCC_ERR_WRITER_GONE | ubdcc_status_t::UBDCC_ERR_NOT_FOUND
        ),
        "{status:?}: {}",
        last_error()
    );
    // SAFETY: handle from `open`, closed once.
    unsafe { ubdcc_reader_close(reader) };
}

/// `ubdcc_get_book` of `market` of binance.com into the two arrays; `(status, bids, asks, info)`.
fn get_book(
    reader: *mut ubdcc_reader_t,
    market: &str,
    limit: Option<i64>,
    bids: &mut [ubdcc_level_t],
    asks: &mut [ubdcc_level_t],
) -> (ubdcc_status_t, usize, usize, ubdcc_book_info_t) {
    let exchange = CString::new("binance.com").unwrap();
    let market = CString::new(market).unwrap();
    let limit_ptr = limit.as_ref().map_or(std::ptr::null(), |l| l as *const i64);
    let (mut bid_count, mut ask_count) = (usize::MAX, usize::MAX);
    let mut info = ubdcc_book_info_t::default();
    // SAFETY: every pointer is valid for the call; each array has the length passed with it.
    let status = unsafe {
        ubdcc_get_book(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            limit_ptr,
            std::ptr::null(),
            bids.as_mut_ptr(),
            bids.len(),
            &mut bid_count,
            asks.as_mut_ptr(),
            asks.len(),
            &mut ask_count,
            &mut info,
        )
    };
    (status, bid_count, ask_count, info)
}

#[test]
fn get_book_fills_both_arrays_from_one_version_while_the_writer_publishes() {
    let cluster = unique_cluster("getbook");
    const LEVELS: u32 = 1000;
    let writer = PatternWriter::start(&cluster, 1, LEVELS, None);
    let reader = open(&cluster);
    let (mut bids, mut asks) = (
        vec![ubdcc_level_t::default(); LEVELS as usize],
        vec![ubdcc_level_t::default(); LEVELS as usize],
    );
    let (mut served, mut versions) = (0, std::collections::BTreeSet::new());
    for round in 0..3_000 {
        let limit = [None, Some(10), Some(700)][round % 3];
        let (status, bid_count, ask_count, info) =
            get_book(reader, "PATTERN0", limit, &mut bids, &mut asks);
        if status == ubdcc_status_t::UBDCC_ERR_CONTENDED {
            continue; // the writer was preempted inside a publish (a loaded machine)
        }
        assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
        let k = info.last_update_id;
        let limit = limit.map(|l| l as usize);
        test_pattern::validate(k, Side::Bids, &bids[..bid_count], limit, LEVELS).unwrap();
        test_pattern::validate(k, Side::Asks, &asks[..ask_count], limit, LEVELS).unwrap();
        assert_eq!(
            (info.bid_count as usize, info.ask_count as usize),
            (
                test_pattern::level_count(k, LEVELS),
                test_pattern::level_count(k, LEVELS)
            )
        );
        served += 1;
        versions.insert(k);
    }
    assert!(served > 1_500, "{served} of 3000 reads served");
    assert!(versions.len() > 10, "the book changed during the reads");

    // A bid array too small: truncated, counts say how many; the asks are still whole.
    let mut few = [ubdcc_level_t::default(); 5];
    let (status, bid_count, ask_count, info) = loop {
        let result = get_book(reader, "PATTERN0", None, &mut few, &mut asks);
        if result.0 != ubdcc_status_t::UBDCC_ERR_CONTENDED {
            break result;
        }
    };
    assert_eq!(status, ubdcc_status_t::UBDCC_ERR_BUFFER_TOO_SMALL);
    assert_eq!(
        bid_count,
        test_pattern::level_count(info.last_update_id, LEVELS)
    );
    test_pattern::validate(info.last_update_id, Side::Bids, &few, Some(5), LEVELS).unwrap();
    test_pattern::validate(
        info.last_update_id,
        Side::Asks,
        &asks[..ask_count],
        None,
        LEVELS,
    )
    .unwrap();

    let (status, bid_count, ask_count, _) = get_book(reader, "NOPE", Some(1), &mut bids, &mut asks);
    assert_eq!(
        (status, bid_count, ask_count),
        (ubdcc_status_t::UBDCC_ERR_NOT_FOUND, 0, 0)
    );
    let (status, ..) = get_book(reader, "PATTERN0", Some(-1), &mut bids, &mut asks);
    assert_eq!(status, ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT);
    // SAFETY: null pointers are what is tested; a null array with capacity is refused unread.
    unsafe {
        let name = CString::new("PATTERN0").unwrap();
        let mut count = 0;
        let status = ubdcc_get_book(
            reader,
            name.as_ptr(),
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            4,
            &mut count,
            std::ptr::null_mut(),
            0,
            &mut count,
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        let status = ubdcc_get_book(
            reader,
            name.as_ptr(),
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut count,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        ubdcc_reader_close(reader);
    }
    writer.stop();
}

fn c_str(field: &[std::ffi::c_char]) -> String {
    // SAFETY: the library NUL-terminates every name field it writes.
    unsafe { CStr::from_ptr(field.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn bbo_all(
    reader: *mut ubdcc_reader_t,
    exchange: Option<&str>,
    capacity: usize,
) -> (ubdcc_status_t, usize, Vec<ubdcc_bbo_entry_t>) {
    let exchange = exchange.map(|e| CString::new(e).unwrap());
    // Garbage everywhere, so a field the library forgets to write shows.
    let garbage = ubdcc_bbo_entry_t {
        exchange: [0x41; 49],
        market: [0x41; 49],
        book_status: 0xee,
        reason: 0xee,
        status: ubdcc_status_t::UBDCC_ERR_INTERNAL,
        bbo: ubdcc_bbo_t {
            has_bid: 9,
            last_update_id: u64::MAX,
            ..ubdcc_bbo_t::default()
        },
    };
    let mut entries = vec![garbage; capacity];
    let mut count = usize::MAX;
    // SAFETY: live reader, NULL or a valid C string, an array of `capacity` elements.
    let status = unsafe {
        ubdcc_bbo_all(
            reader,
            exchange.as_ref().map_or(std::ptr::null(), |e| e.as_ptr()),
            entries.as_mut_ptr(),
            capacity,
            &mut count,
        )
    };
    (status, count, entries)
}

#[test]
fn bbo_all_lists_every_book_with_its_status_and_never_a_stale_price() {
    let cluster = unique_cluster("bboall");
    let mut writer = SegmentConfig::new(cluster.as_str(), "w")
        .books(4)
        .levels_per_side(4)
        .create()
        .expect("create segment");
    let level = |price, quantity| RawLevel { price, quantity };
    for (exchange, market, id) in [("binance.com", "BBB", 5), ("binance.com-futures", "AAA", 6)] {
        let book = writer.add_book(exchange, market).expect("add");
        let (bids, asks) = ([level(99, 2)], [level(101, 3)]);
        let sides = BookSides {
            price_exponent: 0,
            quantity_exponent: 0,
            bids: &bids,
            asks: &asks,
        };
        let meta = BookMeta {
            status: BookStatus::Synced,
            last_update_id: id,
            ..BookMeta::starting()
        };
        writer.publish(book, &meta, &sides).expect("publish");
    }
    let gap = writer.add_book("binance.com", "AAA").expect("add");
    let meta = BookMeta {
        status: BookStatus::OutOfSync(OutOfSyncReason::Gap),
        ..BookMeta::starting()
    };
    let empty = BookSides {
        price_exponent: 0,
        quantity_exponent: 0,
        bids: &[],
        asks: &[],
    };
    writer.publish(gap, &meta, &empty).expect("publish");
    let reader = open(&cluster);

    let (status, count, entries) = bbo_all(reader, None, 8);
    assert_eq!(
        (status, count),
        (ubdcc_status_t::UBDCC_OK, 3),
        "{}",
        last_error()
    );
    let names: Vec<(String, String)> = entries[..3]
        .iter()
        .map(|e| (c_str(&e.exchange), c_str(&e.market)))
        .collect();
    let expected = [
        ("binance.com", "AAA"),
        ("binance.com", "BBB"),
        ("binance.com-futures", "AAA"),
    ];
    assert_eq!(
        names,
        expected.map(|(e, m)| (e.to_owned(), m.to_owned())).to_vec()
    );
    let out_of_sync = &entries[0];
    assert_eq!(out_of_sync.status, ubdcc_status_t::UBDCC_ERR_OUT_OF_SYNC);
    assert_eq!(
        (out_of_sync.book_status, out_of_sync.reason),
        (UBDCC_BOOK_OUT_OF_SYNC, OutOfSyncReason::Gap as u8)
    );
    assert_eq!(
        (out_of_sync.bbo.has_bid, out_of_sync.bbo.last_update_id),
        (0, 0),
        "no price for a book that is not served"
    );
    let synced = &entries[1];
    assert_eq!(
        (synced.status, synced.book_status, synced.reason),
        (ubdcc_status_t::UBDCC_OK, UBDCC_BOOK_SYNCED, 0)
    );
    assert_eq!(
        (
            synced.bbo.bid.price,
            synced.bbo.ask.quantity,
            synced.bbo.has_bid
        ),
        (99.0, 3.0, 1)
    );
    assert_eq!(synced.bbo.last_update_id, 5);
    assert_eq!(entries[2].bbo.last_update_id, 6);

    let (status, count, entries) = bbo_all(reader, Some("binance.com-futures"), 8);
    assert_eq!((status, count), (ubdcc_status_t::UBDCC_OK, 1));
    assert_eq!(c_str(&entries[0].market), "AAA");
    let (status, count, _) = bbo_all(reader, Some("kraken"), 0);
    assert_eq!((status, count), (ubdcc_status_t::UBDCC_OK, 0));
    // Too small: the first entries, and how many there are.
    let (status, count, entries) = bbo_all(reader, None, 2);
    assert_eq!(
        (status, count),
        (ubdcc_status_t::UBDCC_ERR_BUFFER_TOO_SMALL, 3)
    );
    assert_eq!(c_str(&entries[1].market), "BBB");
    // SAFETY: a null array with a capacity and a null count are refused without being written.
    unsafe {
        let mut count = 0;
        let status = ubdcc_bbo_all(
            reader,
            std::ptr::null(),
            std::ptr::null_mut(),
            3,
            &mut count,
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        let status = ubdcc_bbo_all(
            reader,
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        ubdcc_reader_close(reader);
    }
}

fn fill(
    reader: *mut ubdcc_reader_t,
    market: &str,
    side: std::ffi::c_int,
    kind: std::ffi::c_int,
    amount: f64,
) -> (ubdcc_status_t, ubdcc_fill_t, ubdcc_book_info_t) {
    let exchange = CString::new("binance.com").unwrap();
    let market = CString::new(market).unwrap();
    let mut out = ubdcc_fill_t {
        reserved: [0xaa; 3],
        ..ubdcc_fill_t::default()
    };
    let mut info = ubdcc_book_info_t::default();
    // SAFETY: live reader, valid C strings, outputs valid for writes.
    let status = unsafe {
        ubdcc_fill_price(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            side,
            kind,
            amount,
            &mut out,
            &mut info,
        )
    };
    (status, out, info)
}

fn stats(
    reader: *mut ubdcc_reader_t,
    market: &str,
    top_n: usize,
    bps: &[f64],
) -> (ubdcc_status_t, ubdcc_depth_stats_t, Vec<ubdcc_band_t>) {
    let exchange = CString::new("binance.com").unwrap();
    let market = CString::new(market).unwrap();
    let mut out = ubdcc_depth_stats_t {
        reserved: [0xaa; 7],
        ..ubdcc_depth_stats_t::default()
    };
    let mut bands = vec![
        ubdcc_band_t {
            bps: -1.0,
            reserved: [0xaa; 7],
            ..ubdcc_band_t::default()
        };
        bps.len()
    ];
    // SAFETY: live reader, valid C strings, `bps` and `bands` of `bps.len()` elements.
    let status = unsafe {
        ubdcc_depth_stats(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            top_n,
            bps.as_ptr(),
            bps.len(),
            bands.as_mut_ptr(),
            &mut out,
            std::ptr::null_mut(),
        )
    };
    (status, out, bands)
}

#[test]
fn fill_price_and_depth_stats_equal_the_rust_functions_on_the_book() {
    let cluster = unique_cluster("math");
    let mut writer = SegmentConfig::new(cluster.as_str(), "w")
        .books(2)
        .levels_per_side(8)
        .create()
        .expect("create segment");
    // Bids 99.9 × 1, 99.5 × 2, 98.0 × 4; asks 100.1 × 3, 100.4 × 1, 103.0 × 8.
    let level = |price, quantity| RawLevel { price, quantity };
    let bids = [level(999, 10), level(995, 20), level(980, 40)];
    let asks = [level(1001, 30), level(1004, 10), level(1030, 80)];
    let sides = BookSides {
        price_exponent: -1,
        quantity_exponent: -1,
        bids: &bids,
        asks: &asks,
    };
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: 42,
        depth: 8,
        ..BookMeta::starting()
    };
    let book = writer.add_book("binance.com", "MATH").expect("add");
    writer.publish(book, &meta, &sides).expect("publish");
    let one_sided = writer.add_book("binance.com", "ONESIDED").expect("add");
    let only_bids = BookSides { asks: &[], ..sides };
    writer
        .publish(one_sided, &meta, &only_bids)
        .expect("publish");
    let floats = |raw: &[RawLevel]| -> Vec<Level> {
        raw.iter()
            .map(|l| Level {
                price: l.price as f64 / 10.0,
                quantity: l.quantity as f64 / 10.0,
            })
            .collect()
    };
    let (bid_levels, ask_levels) = (floats(&bids), floats(&asks));
    let reader = open(&cluster);

    for (side, kind, amount) in [
        (UBDCC_BUY, UBDCC_AMOUNT_BASE, 3.5),
        (UBDCC_SELL, UBDCC_AMOUNT_QUOTE, 250.0),
        (UBDCC_BUY, UBDCC_AMOUNT_BASE, 100.0),
    ] {
        let (status, out, info) = fill(reader, "MATH", side, kind, amount);
        assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
        let levels = if side == UBDCC_BUY {
            &ask_levels
        } else {
            &bid_levels
        };
        let amount = if kind == UBDCC_AMOUNT_BASE {
            FillAmount::Base(amount)
        } else {
            FillAmount::Quote(amount)
        };
        let want = fill_price(levels, amount);
        assert_eq!(Some(out.average_price), want.average_price);
        assert_eq!(Some(out.worst_price), want.worst_price);
        assert_eq!(Some(out.slippage_bps), want.slippage_bps);
        assert_eq!(
            (
                out.filled_quantity,
                out.filled_quote,
                out.levels_used as usize
            ),
            (want.filled_quantity, want.filled_quote, want.levels_used)
        );
        assert_eq!((out.complete == 1, out.reserved), (want.complete, [0; 3]));
        assert_eq!((info.last_update_id, info.depth), (42, 8));
    }
    // A buy of 3.5: 3 at 100.1 and 0.5 at 100.4; more than the side holds is incomplete.
    assert_eq!(
        fill(reader, "MATH", UBDCC_BUY, UBDCC_AMOUNT_BASE, 3.5)
            .1
            .levels_used,
        2
    );
    assert_eq!(
        fill(reader, "MATH", UBDCC_BUY, UBDCC_AMOUNT_BASE, 100.0)
            .1
            .complete,
        0
    );
    // Nothing to fill against: NaN prices, not zeros that look like prices.
    let (status, empty, _) = fill(reader, "ONESIDED", UBDCC_BUY, UBDCC_AMOUNT_BASE, 1.0);
    assert_eq!(status, ubdcc_status_t::UBDCC_OK);
    assert!(empty.average_price.is_nan() && empty.worst_price.is_nan());
    assert_eq!((empty.levels_used, empty.complete), (0, 0));
    for (side, kind, amount) in [
        (2, UBDCC_AMOUNT_BASE, 1.0),
        (-1, UBDCC_AMOUNT_BASE, 1.0),
        (UBDCC_BUY, 5, 1.0),
        (UBDCC_BUY, UBDCC_AMOUNT_BASE, 0.0),
        (UBDCC_SELL, UBDCC_AMOUNT_QUOTE, -3.0),
        (UBDCC_SELL, UBDCC_AMOUNT_QUOTE, f64::NAN),
        (UBDCC_SELL, UBDCC_AMOUNT_BASE, f64::INFINITY),
    ] {
        let (status, ..) = fill(reader, "MATH", side, kind, amount);
        assert_eq!(
            status,
            ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT,
            "{side} {kind} {amount}"
        );
    }
    assert_eq!(
        fill(reader, "NOPE", UBDCC_BUY, UBDCC_AMOUNT_BASE, 1.0).0,
        ubdcc_status_t::UBDCC_ERR_NOT_FOUND
    );

    let bps = [50.0, 300.0];
    let (status, out, bands) = stats(reader, "MATH", 2, &bps);
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    let want = depth_stats(&bid_levels, &ask_levels, 2, &bps).unwrap();
    assert_eq!(
        (
            out.mid,
            out.spread,
            out.spread_bps,
            out.microprice,
            out.imbalance
        ),
        (
            want.mid,
            want.spread,
            want.spread_bps,
            want.microprice,
            want.imbalance
        )
    );
    assert_eq!((out.top_n, out.valid, out.reserved), (2, 1, [0; 7]));
    for (got, want) in bands.iter().zip(&want.bands) {
        assert_eq!(
            (
                got.bps,
                got.bid_quantity,
                got.ask_quantity,
                got.complete == 1
            ),
            (
                want.bps,
                want.bid_quantity,
                want.ask_quantity,
                want.complete
            )
        );
        assert_eq!(got.reserved, [0; 7]);
    }
    // ±50 bps of 100: 3 bid and 4 ask; ±300 bps reaches beyond the levels held: a lower bound.
    assert_eq!((bands[0].bid_quantity, bands[0].ask_quantity), (3.0, 4.0));
    assert_eq!(bands[1].complete, 0);

    let (status, out, bands) = stats(reader, "ONESIDED", 10, &[10.0]);
    assert_eq!(status, ubdcc_status_t::UBDCC_OK);
    assert_eq!(out.valid, 0);
    assert!(out.mid.is_nan() && out.microprice.is_nan());
    assert_eq!(
        (bands[0].bps, bands[0].bid_quantity, bands[0].complete),
        (10.0, 0.0, 0)
    );
    // No bands at all is fine.
    assert_eq!(stats(reader, "MATH", 10, &[]).0, ubdcc_status_t::UBDCC_OK);
    for bad in [0.0, -10.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            stats(reader, "MATH", 10, &[10.0, bad]).0,
            ubdcc_status_t::UBDCC_ERR_INVALID_ARGUMENT,
            "{bad}"
        );
    }
    assert_eq!(
        stats(reader, "NOPE", 10, &[10.0]).0,
        ubdcc_status_t::UBDCC_ERR_NOT_FOUND
    );
    // SAFETY: null outputs are refused without being written.
    unsafe {
        let name = CString::new("MATH").unwrap();
        let status = ubdcc_depth_stats(
            reader,
            name.as_ptr(),
            name.as_ptr(),
            10,
            std::ptr::null(),
            2,
            std::ptr::null_mut(),
            &mut ubdcc_depth_stats_t::default(),
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        let status = ubdcc_fill_price(
            reader,
            name.as_ptr(),
            name.as_ptr(),
            UBDCC_BUY,
            UBDCC_AMOUNT_BASE,
            1.0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(status, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
        ubdcc_reader_close(reader);
    }
}

#[test]
fn waits_and_the_trust_metadata_reach_c() {
    let cluster = unique_cluster("wait");
    let mut writer = SegmentConfig::new(cluster.as_str(), "w")
        .books(1)
        .levels_per_side(4)
        .create()
        .expect("create segment");
    let book = writer.add_book("binance.com", "WAIT").expect("add");
    let asks = [RawLevel {
        price: 101,
        quantity: 1,
    }];
    let sides = BookSides {
        price_exponent: -1,
        quantity_exponent: 0,
        bids: &[],
        asks: &asks,
    };
    let meta = BookMeta {
        status: BookStatus::Synced,
        last_update_id: 9,
        freshness: Freshness::SNAPSHOT_TIME | Freshness::NO_EXCHANGE_TIME,
        ..BookMeta::starting()
    };
    // The engine hashes its book and hands the hash over; the publish carries it.
    let top = ubdcc_shm::TopHash {
        hash: ubdcc_shm::top_hash(-1, 0, &[], &asks),
        update_id: 9,
    };
    writer.set_top_hash(book, top).expect("top hash");
    writer.publish(book, &meta, &sides).expect("publish");
    let audit = Audit {
        verified_at_ms: 1_700_000_000_123,
        audits: 4,
        audit_mismatches: 1,
    };
    writer.publish_audit(book, &audit).expect("audit");
    writer.heartbeat();
    let reader = open(&cluster);
    let (exchange, market) = (
        CString::new("binance.com").unwrap(),
        CString::new("WAIT").unwrap(),
    );
    let mut info = ubdcc_book_info_t::default();
    // SAFETY: live reader, valid C strings, `info` valid for a write.
    let status = unsafe { ubdcc_book_info(reader, exchange.as_ptr(), market.as_ptr(), &mut info) };
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    assert!(info.changes > 0);
    assert_eq!(
        (info.verified_at_ms, info.audits, info.audit_mismatches),
        (1_700_000_000_123, 4, 1)
    );
    assert_eq!(
        info.freshness,
        UBDCC_FRESHNESS_SNAPSHOT_TIME | UBDCC_FRESHNESS_NO_EXCHANGE_TIME
    );
    assert_eq!(
        (info.top_hash, info.top_hash_update_id),
        (ubdcc_shm::top_hash(-1, 0, &[], &asks), 9)
    );

    // Nothing newer: a timeout, and the output is left alone.
    let mut changes = 7;
    // SAFETY: live reader, valid C strings, `changes` valid for a write.
    let status = unsafe {
        ubdcc_wait_for_update(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            info.changes,
            10,
            &mut changes,
        )
    };
    assert_eq!((status, changes), (ubdcc_status_t::UBDCC_ERR_TIMEOUT, 7));

    // A publish from another thread wakes the wait with the newer stamp.
    let publisher = std::thread::spawn(move || {
        writer.publish_meta(book, &meta).expect("publish");
        writer
    });
    // SAFETY: as above.
    let status = unsafe {
        ubdcc_wait_for_update(
            reader,
            exchange.as_ptr(),
            market.as_ptr(),
            info.changes,
            10_000,
            &mut changes,
        )
    };
    assert_eq!(status, ubdcc_status_t::UBDCC_OK, "{}", last_error());
    assert!(changes > info.changes);
    let writer = publisher.join().expect("publisher");

    // The first wait for any book reports what was published; the next has nothing new.
    let mut any = 0;
    // SAFETY: live reader, `any` valid for a write.
    let status = unsafe { ubdcc_wait_for_any(reader, 10_000, &mut any) };
    assert_eq!((status, any), (ubdcc_status_t::UBDCC_OK, changes));
    // SAFETY: as above.
    let status = unsafe { ubdcc_wait_for_any(reader, 10, &mut any) };
    assert_eq!(status, ubdcc_status_t::UBDCC_ERR_TIMEOUT);

    // Bad arguments are error codes.
    let nowhere = CString::new("NOPE").unwrap();
    // SAFETY: live reader, valid C strings; null outputs are the point.
    let (missing, null_out, null_reader) = unsafe {
        (
            ubdcc_wait_for_update(reader, exchange.as_ptr(), nowhere.as_ptr(), 0, 10, &mut any),
            ubdcc_wait_for_update(
                reader,
                exchange.as_ptr(),
                market.as_ptr(),
                0,
                10,
                std::ptr::null_mut(),
            ),
            ubdcc_wait_for_any(std::ptr::null_mut(), 10, &mut any),
        )
    };
    assert_eq!(missing, ubdcc_status_t::UBDCC_ERR_NOT_FOUND);
    assert_eq!(null_out, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
    assert_eq!(null_reader, ubdcc_status_t::UBDCC_ERR_NULL_ARGUMENT);
    drop(writer);
    // SAFETY: handle from `open`, closed once.
    unsafe { ubdcc_reader_close(reader) };
}
