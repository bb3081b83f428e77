//! Reading books from shared memory: the operations a trading loop calls.
//!
//! - `shm_read/top10`, `shm_read/top1000`: one side of an unchanged 1000-level book.
//! - `shm_read/top10_threshold`: a `threshold_volume` walk that stops after a few levels.
//! - `shm_read/info`: metadata only.
//! - `shm_read/bbo`: best bid and ask from the slot header alone (two cache lines).
//! - `shm_read/missing_book`: a book that does not exist (each miss rescans the segments).
//! - `shm_read/stat_segment`: one `fstat` of the segment, the price a size re-check before every
//!   read would add (readers re-check at their lock probe instead).
//! - `shm_read/top10_after_remote_write`: a writer pinned to the other core republishes the book
//!   on request, and only the read right after each publish is timed (`Instant` overhead, about
//!   20 ns, included).
//! - `ffi_read/top10`: the same read through the C ABI (`ubdcc_get_asks`).

use std::ffi::CString;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ubdcc_shm::{
    BookHandle, ClusterReader, LevelQuery, SegmentConfig, SegmentWriter, Side, test_pattern,
};

const LEVELS: u32 = 1000;

fn cluster(tag: &str) -> String {
    format!("bench{tag}{}", std::process::id())
}

/// A segment with one full pattern book (version 999: 999 levels per side).
fn one_book(cluster: &str) -> (SegmentWriter, BookHandle) {
    let mut writer = SegmentConfig::new(cluster, "dcn")
        .books(4)
        .levels_per_side(LEVELS)
        .create()
        .expect("create");
    let book = writer.add_book("binance.com", "BTCUSDT").expect("add");
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    test_pattern::fill(999, LEVELS, &mut bids, &mut asks);
    writer
        .publish(
            book,
            &test_pattern::meta(999),
            &test_pattern::sides(&bids, &asks),
        )
        .expect("publish");
    (writer, book)
}

fn pin_to_cpu(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // Best effort: on a one-core machine the remote-write bench simply shares the core.
    rustix::thread::sched_setaffinity(None, &set).ok();
}

fn unchanged_book(c: &mut Criterion) {
    let cluster = cluster("read");
    let (writer, _book) = one_book(&cluster);
    // Keep the heartbeat fresh for the whole run: criterion's runs outlast the hung threshold.
    let beat = writer.heartbeat_handle();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let beater = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            beat.beat();
            std::thread::sleep(ubdcc_shm::HEARTBEAT_INTERVAL);
        }
    });
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let mut out = Vec::with_capacity(LEVELS as usize);
    let top10 = LevelQuery::top(10);
    let threshold = LevelQuery::new(None, Some(500_000.0)).expect("valid");
    let mut group = c.benchmark_group("shm_read");
    group.bench_function("top10", |b| {
        b.iter(|| {
            reader
                .read(
                    black_box("binance.com"),
                    black_box("BTCUSDT"),
                    Side::Asks,
                    black_box(&top10),
                    &mut out,
                )
                .expect("read")
        })
    });
    group.bench_function("top1000", |b| {
        b.iter(|| {
            reader
                .read(
                    black_box("binance.com"),
                    black_box("BTCUSDT"),
                    Side::Asks,
                    black_box(&LevelQuery::ALL),
                    &mut out,
                )
                .expect("read")
        })
    });
    group.bench_function("top10_threshold", |b| {
        b.iter(|| {
            reader
                .read(
                    black_box("binance.com"),
                    black_box("BTCUSDT"),
                    Side::Bids,
                    black_box(&threshold),
                    &mut out,
                )
                .expect("read")
        })
    });
    group.bench_function("info", |b| {
        b.iter(|| {
            reader
                .info(black_box("binance.com"), black_box("BTCUSDT"))
                .expect("info")
        })
    });
    group.bench_function("bbo", |b| {
        b.iter(|| {
            reader
                .bbo(black_box("binance.com"), black_box("BTCUSDT"))
                .expect("bbo")
        })
    });
    // A miss rescans the cluster's segments (a new book may have appeared): the error path's cost.
    group.bench_function("missing_book", |b| {
        b.iter(|| {
            reader
                .read(
                    black_box("binance.com"),
                    black_box("NOSUCH"),
                    Side::Asks,
                    &top10,
                    &mut out,
                )
                .expect_err("missing")
        })
    });
    // What re-checking the segment's size before every read would add (one `fstat`): readers do
    // it only at their lock probe, at most every 50 ms (shm-layout/src/trust.rs says why).
    let segment = std::fs::File::open(format!("/dev/shm/{}", writer.name())).expect("segment");
    group.bench_function("stat_segment", |b| {
        b.iter(|| {
            rustix::fs::fstat(black_box(&segment))
                .expect("fstat")
                .st_size
        })
    });
    group.finish();

    let exchange = CString::new("binance.com").expect("no NUL");
    let market = CString::new("BTCUSDT").expect("no NUL");
    let name = CString::new(cluster.as_str()).expect("no NUL");
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid C string and out pointer.
    unsafe { ubdcc_ffi::ubdcc_reader_open(name.as_ptr(), &mut handle) };
    let mut levels = [ubdcc_ffi::ubdcc_level_t::default(); 10];
    let limit = 10i64;
    let mut count = 0usize;
    c.bench_function("ffi_read/top10", |b| {
        b.iter(|| {
            // SAFETY: live handle, valid strings, a 10-element buffer and valid out pointers.
            unsafe {
                ubdcc_ffi::ubdcc_get_asks(
                    handle,
                    exchange.as_ptr(),
                    market.as_ptr(),
                    &limit,
                    std::ptr::null(),
                    levels.as_mut_ptr(),
                    10,
                    &mut count,
                    std::ptr::null_mut(),
                )
            }
        })
    });
    // SAFETY: the handle from `ubdcc_reader_open`, closed once.
    unsafe { ubdcc_ffi::ubdcc_reader_close(handle) };
    stop.store(true, Ordering::Relaxed);
    beater.join().expect("heartbeat thread");
    drop(writer);
}

fn after_remote_write(c: &mut Criterion) {
    let cluster = cluster("remote");
    let (mut writer, book) = one_book(&cluster);
    // Handshake: the reader bumps `requested`; the writer (pinned to the other core) publishes a
    // new version and stores the same number in `published`. Only the read after that is timed,
    // so every timed read finds the slot's lines last written by the other core.
    let requested = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (want, done, flag) = (
        Arc::clone(&requested),
        Arc::clone(&published),
        Arc::clone(&stop),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let publisher = std::thread::spawn(move || {
        pin_to_cpu(1 % cores);
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let mut served = 0;
        while !flag.load(Ordering::Relaxed) {
            let request = want.load(Ordering::Acquire);
            if request == served {
                writer.heartbeat();
                std::hint::spin_loop();
                continue;
            }
            // 20 levels per side: the size of a typical diff-driven republish of the top.
            test_pattern::fill(1000 + request, 20, &mut bids, &mut asks);
            writer
                .publish(
                    book,
                    &test_pattern::meta(1000 + request),
                    &test_pattern::sides(&bids, &asks),
                )
                .expect("publish");
            served = request;
            done.store(request, Ordering::Release);
        }
    });
    pin_to_cpu(0);
    let mut reader = ClusterReader::open(&cluster).expect("open");
    let mut out = Vec::with_capacity(16);
    let top10 = LevelQuery::top(10);
    let mut next = 0u64;
    c.bench_function("shm_read/top10_after_remote_write", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                next += 1;
                requested.store(next, Ordering::Release);
                while published.load(Ordering::Acquire) != next {
                    std::hint::spin_loop();
                }
                let started = Instant::now();
                reader
                    .read(
                        black_box("binance.com"),
                        black_box("BTCUSDT"),
                        Side::Asks,
                        black_box(&top10),
                        &mut out,
                    )
                    .expect("read");
                total += started.elapsed();
            }
            total
        })
    });
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
}

criterion_group!(benches, unchanged_book, after_remote_write);
criterion_main!(benches);
