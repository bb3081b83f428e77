//! Starts `ubdcc shm test-pattern` as a child process and waits for its `ready` line.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal};

/// A running pattern writer; killed when dropped.
pub struct PatternWriter {
    child: Child,
}

/// A cluster name unique to this test run and `tag`.
pub fn unique_cluster(tag: &str) -> String {
    format!("e2e{tag}{}", std::process::id())
}

/// Removes every segment of a cluster when dropped: a SIGKILLed writer cannot remove its own.
/// Declare it before the writers so it drops after them.
pub struct ClusterCleanup(String);

impl ClusterCleanup {
    pub fn new(cluster: &str) -> Self {
        Self(format!("ubdcc.{cluster}."))
    }
}

impl Drop for ClusterCleanup {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&self.0) {
                // Best effort: a leftover file only costs space in /dev/shm.
                std::fs::remove_file(entry.path()).ok();
            }
        }
    }
}

impl PatternWriter {
    /// Starts a writer for `books` pattern books of `levels` levels; `rate` 0 means full speed.
    /// Returns once the writer reported that every book is published.
    pub fn start(cluster: &str, dcn: &str, books: u32, levels: u32, rate: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
            .args(["shm", "test-pattern", "--cluster", cluster, "--dcn", dcn])
            .args([
                "--books",
                &books.to_string(),
                "--levels",
                &levels.to_string(),
                "--rate",
                &rate.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ubdcc starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(
            line.starts_with("ready "),
            "writer did not get ready: {line:?}"
        );
        Self { child }
    }

    /// Sends `signal` to the writer.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("child pid is positive");
        rustix::process::kill_process(pid, signal).expect("signal the writer");
    }

    /// Kills the writer with SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for PatternWriter {
    fn drop(&mut self) {
        // Already dead (killed by the test) is fine.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
