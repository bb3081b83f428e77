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
use ubdcc_shm::{BookMeta, BookSides, BookStatus, RawLevel, SegmentConfig, test_pattern};

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
        size!(ubdcc_book_entry_t),
        field!(ubdcc_book_entry_t.market),
        field!(ubdcc_book_entry_t.segment),
        field!(ubdcc_book_entry_t.status),
        field!(ubdcc_book_entry_t.reason),
        size!(ubdcc_status_t),
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
