//! Segments of other owners and segments shrunk under a reader (issue 10, item 4).
//!
//! A hostile local user can create `/dev/shm/ubdcc.<cluster>.aaa` with the public layout; it
//! sorts before every real DCN's segment. Here root makes such a segment (with a book the real
//! one also has, at another price), gives it to `nobody`, and the Rust reader, a C reader
//! process, `ubdcc shm list` and (when `.venv` has the binding) a Python reader process must all
//! ignore it and serve the real book. Then: another uid cannot shrink (or even read) a segment a
//! DCN creates, and a reader process whose segment its owner shrinks keeps running and reports
//! it instead of dying of `SIGBUS`. Changing owners needs root; the tests say so elsewhere.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ubdcc_shm::{
    BookMeta, BookSides, BookStatus, ClusterReader, Distrust, LevelQuery, RawLevel, SegmentConfig,
    SegmentWriter, Side,
};

use crate::cluster::{Cleanup, Process};

/// The uid and gid of `nobody`: the hostile neighbour.
const NOBODY: u32 = 65_534;

const EXCHANGE: &str = "binance.com";
const MARKET: &str = "BTCUSDT";
/// The real DCN's best ask, and the forged segment's.
const REAL_ASK: u64 = 100;
const FORGED_ASK: u64 = 666;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn unique_cluster(tag: &str) -> String {
    format!("shmtrust{tag}{}", std::process::id())
}

/// A segment written by this process, its heartbeat kept fresh by a thread until dropped.
struct LiveSegment {
    writer: Option<SegmentWriter>,
    stop: Arc<AtomicBool>,
    beater: Option<JoinHandle<()>>,
}

impl LiveSegment {
    /// Segment `dcn` of `cluster` holding [`MARKET`] with its best ask at `ask`. The book sits in
    /// the second slot, more than a page into the segment, so cutting the segment to one page
    /// takes the book's memory away.
    fn start(cluster: &str, dcn: &str, ask: u64) -> Self {
        let mut writer = SegmentConfig::new(cluster, dcn)
            .books(4)
            .levels_per_side(1000)
            .create()
            .expect("create segment");
        writer.add_book(EXCHANGE, "FILLER").expect("add");
        let book = writer.add_book(EXCHANGE, MARKET).expect("add");
        assert!(book.slot() >= 1);
        let asks = [RawLevel {
            price: ask,
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
            last_update_id: ask,
            ..BookMeta::starting()
        };
        writer.publish(book, &meta, &sides).expect("publish");
        let beat = writer.heartbeat_handle();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let beater = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                beat.beat();
                std::thread::sleep(ubdcc_shm::HEARTBEAT_INTERVAL);
            }
        });
        Self {
            writer: Some(writer),
            stop,
            beater: Some(beater),
        }
    }

    fn name(&self) -> &str {
        self.writer.as_ref().expect("live").name()
    }

    fn path(&self) -> String {
        format!("/dev/shm/{}", self.name())
    }
}

impl Drop for LiveSegment {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(beater) = self.beater.take() {
            beater.join().ok();
        }
        drop(self.writer.take());
    }
}

/// The forged segment (`aaa`, sorting first, owned by nobody) beside the real one (`dcn-0`).
fn forged_beside_real(cluster: &str) -> (LiveSegment, LiveSegment) {
    let forged = LiveSegment::start(cluster, "aaa", FORGED_ASK);
    let real = LiveSegment::start(cluster, "dcn-0", REAL_ASK);
    std::os::unix::fs::chown(forged.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
    // Readable by all, like segments used to be; the owner alone makes it untrusted.
    std::fs::set_permissions(forged.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    (forged, real)
}

fn best_ask(reader: &mut ClusterReader) -> Result<f64, ubdcc_shm::ReadError> {
    let mut out = Vec::new();
    reader.read(EXCHANGE, MARKET, Side::Asks, &LevelQuery::top(1), &mut out)?;
    Ok(out[0].price)
}

#[test]
fn another_uids_forged_segment_is_ignored_by_the_rust_reader_and_shm_list() {
    if !is_root() {
        eprintln!("skipped: making a segment of another uid needs root");
        return;
    }
    let cluster = unique_cluster("rust");
    let _cleanup = Cleanup(cluster.clone());
    let (forged, _real) = forged_beside_real(&cluster);

    // As restapi, `ubdcc top` and the DCN open it: trust from the environment (unset here).
    let mut reader = ClusterReader::open(&cluster).expect("open");
    assert_eq!(best_ask(&mut reader).expect("read"), REAL_ASK as f64);
    let ignored: Vec<_> = reader.ignored().collect();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0].name, forged.name());
    assert!(matches!(
        ignored[0].reason,
        Distrust::Owner { uid: NOBODY, .. }
    ));

    let output = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args(["shm", "list", "--cluster", &cluster])
        .output()
        .expect("ubdcc shm list runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let forged_line = stdout
        .lines()
        .find(|line| line.contains(forged.name()))
        .unwrap_or_else(|| panic!("forged segment not mentioned:\n{stdout}"));
    assert!(
        forged_line.starts_with("ignored:") && forged_line.contains("owned by uid 65534"),
        "{forged_line}"
    );
    let book_lines: Vec<_> = stdout
        .lines()
        .filter(|line| line.starts_with(EXCHANGE))
        .collect();
    assert_eq!(book_lines.len(), 2, "{stdout}"); // FILLER and BTCUSDT of dcn-0 only
    assert!(
        book_lines.iter().all(|line| line.contains("dcn-0")),
        "{stdout}"
    );
    assert!(stdout.contains("1 segments ignored"), "{stdout}");
}

#[test]
fn another_uids_forged_segment_is_ignored_by_c_and_python_reader_processes() {
    if !is_root() {
        eprintln!("skipped: making a segment of another uid needs root");
        return;
    }
    let cluster = unique_cluster("ffi");
    let _cleanup = Cleanup(cluster.clone());
    let (_forged, _real) = forged_beside_real(&cluster);

    let mut c_reader = StdinReader::start(&cluster, None);
    assert_eq!(c_reader.read(), format!("ok {REAL_ASK}.0"));
    // Told to trust nobody's uid, the same reader believes the forged segment, which sorts first:
    // the refusal above is the trust check, nothing else.
    let mut trusting = StdinReader::start(&cluster, Some("uid:65534"));
    assert_eq!(trusting.read(), format!("ok {FORGED_ASK}.0"));
    let mut by_env = StdinReader::start_with_env(&cluster, "gid:65534");
    assert_eq!(by_env.read(), format!("ok {FORGED_ASK}.0"));
    assert!(c_reader.finish().success());

    let Some(python) = venv_python() else {
        eprintln!(
            "Python part skipped: no .venv/bin/python with ubdcc_local (scripts/test installs it \
             after cargo test; ffi/python/tests/test_trust.py covers it there)"
        );
        return;
    };
    let script = format!(
        "import ubdcc_local\n\
         r = ubdcc_local.Reader({cluster:?})\n\
         print(r.get_asks({EXCHANGE:?}, {MARKET:?}, 1)[0][0])\n\
         print(r.ignored()[0]['reason'])\n"
    );
    let output = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("{REAL_ASK}.0").as_str()));
    assert!(
        lines
            .next()
            .is_some_and(|reason| reason.contains("uid 65534")),
        "{stdout}"
    );
}

#[test]
fn another_uid_can_neither_shrink_nor_read_a_dcn_segment() {
    if !is_root() {
        eprintln!("skipped: acting as another uid needs root");
        return;
    }
    let cluster = unique_cluster("perm");
    let _cleanup = Cleanup(cluster.clone());
    // A real DCN with the default mode, and one whose segment a group may read.
    let private = Process::start(&dcn_args(&cluster, "dcn-0", &[]));
    let shared = Process::start(&dcn_args(
        &cluster,
        "dcn-1",
        &["--shm-mode", "0640", "--shm-group", "65534"],
    ));
    let private_path = format!("/dev/shm/ubdcc.{cluster}.dcn-0");
    let shared_path = format!("/dev/shm/ubdcc.{cluster}.dcn-1");
    let private_meta = std::fs::metadata(&private_path).expect("segment exists");
    assert_eq!(private_meta.permissions().mode() & 0o7777, 0o600);
    let shared_meta = std::fs::metadata(&shared_path).expect("segment exists");
    assert_eq!(shared_meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(shared_meta.gid(), NOBODY);

    for path in [&private_path, &shared_path] {
        let truncate = as_nobody("truncate", &["-s", "0", path]);
        assert!(!truncate.status.success(), "nobody shrank {path}");
        assert!(
            String::from_utf8_lossy(&truncate.stderr).contains("Permission denied"),
            "{truncate:?}"
        );
        let size = std::fs::metadata(path).expect("still there").len();
        assert!(size > 4096, "{path} is {size} bytes");
    }
    let read_private = as_nobody("head", &["-c", "8", &private_path]);
    assert!(!read_private.status.success(), "nobody read {private_path}");
    // The group may read the shared one (the uid nobody is in the group nobody here).
    let read_shared = as_nobody("head", &["-c", "8", &shared_path]);
    assert!(read_shared.status.success(), "{read_shared:?}");
    drop((private, shared));
}

#[test]
fn a_reader_process_survives_its_owner_shrinking_the_segment() {
    let cluster = unique_cluster("shrink");
    let _cleanup = Cleanup(cluster.clone());
    let real = LiveSegment::start(&cluster, "dcn-0", REAL_ASK);
    let mut c_reader = StdinReader::start(&cluster, None);
    assert_eq!(c_reader.read(), format!("ok {REAL_ASK}.0"));

    // The owner (this process) cuts the segment to one page: the book's slot is gone.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(real.path())
        .expect("owner opens its segment");
    file.set_len(4096).expect("truncate");
    // Readers compare the size with their mapping at every lock probe, at most every 50 ms
    // apart while reading. A read inside that window would still touch the lost pages (see
    // shm-layout/src/trust.rs for why that window is left open), so let one probe interval
    // pass, as any reader that is not reading at the very moment of the shrink does.
    std::thread::sleep(Duration::from_millis(200));
    let after = c_reader.read();
    assert!(after.starts_with("err "), "{after}");
    assert_eq!(c_reader.read(), after, "stays refused");
    let status = c_reader.finish();
    assert!(
        status.success(),
        "C reader died: {status:?} (signal {:?})",
        status.signal()
    );

    let listed = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
        .args(["shm", "list", "--cluster", &cluster])
        .output()
        .expect("ubdcc shm list runs");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{stdout}");
    assert!(stdout.contains("is truncated"), "{stdout}");
    drop(real);
}

/// `ubdcc dcn --standalone` args of a DCN without books.
fn dcn_args<'a>(cluster: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "dcn",
        "--standalone",
        "--cluster",
        cluster,
        "--name",
        name,
        "--port",
        "0",
        "--max-books",
        "4",
        "--levels",
        "1000",
    ];
    args.extend(extra);
    args
}

/// Runs `program args` as uid and gid nobody. It keeps this process's supplementary groups
/// (setting them is unstable in std), which grant nothing here: no segment gives its group
/// write access, and the one the group may read belongs to the group nobody.
fn as_nobody(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// `ffi/tests/c/stdin_reader.c` running: one best-ask read per `read()`.
struct StdinReader {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl StdinReader {
    fn start(cluster: &str, trust: Option<&str>) -> Self {
        let mut command = Command::new(stdin_reader());
        command.args([cluster, EXCHANGE, MARKET]).args(trust);
        command.env_remove(ubdcc_shm::TRUST_ENV);
        Self::spawn(command)
    }

    fn start_with_env(cluster: &str, trust: &str) -> Self {
        let mut command = Command::new(stdin_reader());
        command
            .args([cluster, EXCHANGE, MARKET])
            .env(ubdcc_shm::TRUST_ENV, trust);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("C reader starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// One read's answer line ("" if the process died).
    fn read(&mut self) -> String {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "read").ok();
        stdin.flush().ok();
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok();
        line.trim_end().to_owned()
    }

    /// Closes its input and waits for it to exit.
    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait")
    }
}

impl Drop for StdinReader {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `.venv/bin/python` of the repository, if it can import `ubdcc_local`.
fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let imports = Command::new(&python)
        .args(["-c", "import ubdcc_local"])
        .output()
        .is_ok_and(|output| output.status.success());
    imports.then_some(python)
}

/// `target/<profile>`, the parent of the `deps/` holding this test.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// `ffi/tests/c/stdin_reader.c` compiled with gcc against the header and `libubdcc_ffi.a`, once
/// per test run (as `ffi/tests/c_abi.rs` does).
fn stdin_reader() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "ubdcc-ffi", "--lib"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(build.status().expect("cargo runs").success());
        let ffi = Path::new(env!("CARGO_MANIFEST_DIR")).join("ffi");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stdin_reader");
        let status = Command::new("gcc")
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(ffi.join("include"))
            .arg(ffi.join("tests/c/stdin_reader.c"))
            .arg(profile_dir().join("libubdcc_ffi.a"))
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out)
            .status()
            .expect("gcc runs");
        assert!(status.success(), "gcc failed on stdin_reader.c");
        out
    })
}
