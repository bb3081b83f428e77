//! The processes of a test: `ubdcc` roles started as children and killed when dropped, the
//! shared-memory segments of a cluster removed when its test ends, and what every role of a test
//! run shares on this machine (the ban board, the machine token).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// The ban board of this test run's DCNs: a ban provoked by a test (and kept for its
/// `Retry-After`, up to days) must not hold back later runs, nor the user's own DCNs.
pub fn test_ban_board() -> String {
    format!("/dev/shm/ubdcc-bans-test-{}", std::process::id())
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    /// The address it printed in its readiness line.
    pub address: String,
}

impl Process {
    /// Starts `ubdcc args…` and waits for the line starting with `listening on <address>`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_ban_board(args, &test_ban_board())
    }

    /// Like [`Process::start`], with the DCN's 429/418 ban board at `board`.
    pub fn start_with_ban_board(args: &[&str], board: &str) -> Self {
        Self::start_with_env(args, &[("UBDCC_BAN_BOARD", board)])
    }

    /// Like [`Process::start`], with `env` set (the test run's ban board unless `env` names
    /// another).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ubdcc"))
            .args(args)
            .env("UBDCC_BAN_BOARD", test_ban_board())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ubdcc starts");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let address = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no readiness line from {args:?}: {line:?}"))
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, address }
    }

    /// Its process id (to signal it, or read its memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it now (SIGKILL, like a crash) and waits.
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Sends SIGTERM and waits (the graceful path).
    pub fn terminate(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("positive pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).ok();
        self.child.wait().ok();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// This machine's token file, which roles started without `--cluster-secret` share (created by
/// the first of them).
pub fn machine_token() -> String {
    let path = std::env::var_os("UBDCC_TOKEN_FILE").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".ubdcc")
                .join("machine.token")
        },
        std::path::PathBuf::from,
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Removes every segment of a cluster when dropped (a killed process cannot).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = format!("ubdcc.{}.", self.0);
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(entry.path()).ok();
            }
        }
    }
}
