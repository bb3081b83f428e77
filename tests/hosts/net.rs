//! Three hosts on one LAN, made of Linux namespaces.
//!
//! ```text
//!   namespace ubdcc-lan-PID-N            namespaces ubdcc-hK-PID-N (K = 1, 2, 3)
//!   br0 10.77.0.254 (the exchange) ──veth── eth0 10.77.0.K
//! ```
//!
//! The bridge lives in a namespace of its own, so the test's addresses never meet the machine's
//! (nor another run's: every name carries the pid and a per-run number). Each host also gets a
//! mount namespace, held by a keeper process, with a fresh tmpfs on `/dev/shm` (real hosts share
//! no shared memory) and its own `/etc/machine-id` (what pods report as their machine). Processes
//! of a host are started inside both namespaces with `nsenter`, so a host's DCN and restapi share
//! its `/dev/shm` and nothing else.
//!
//! Everything is removed on drop, panics included; namespaces (and the processes in them) left
//! behind by a run that was killed outright are removed by the next run.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Hosts per LAN.
const HOSTS: usize = 3;

/// The first three octets of the LAN; host K is `.K`, the exchange `.254`.
const SUBNET: &str = "10.77.0";

/// Runs made by this test process so far (several tests run at once).
static RUNS: AtomicU32 = AtomicU32::new(0);

/// The tools the suite needs, and the Debian package of each.
const TOOLS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
];

/// Whether the suite can run here: `false` only when `UBDCC_SKIP_HOSTS=1` asks to skip it.
///
/// # Panics
/// When not root or a tool is missing, with what to do: a suite that skipped itself silently
/// would be a test that cannot fail.
pub fn required() -> bool {
    if std::env::var("UBDCC_SKIP_HOSTS").is_ok_and(|v| v == "1") {
        println!("UBDCC_SKIP_HOSTS=1: the three-host suite is skipped");
        return false;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the three-host suite makes network namespaces and needs root (CI runs it as root); \
         set UBDCC_SKIP_HOSTS=1 to skip it on purpose"
    );
    for (tool, package) in TOOLS {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "the three-host suite needs `{tool}` (Debian package {package}); \
             set UBDCC_SKIP_HOSTS=1 to skip it on purpose"
        );
    }
    true
}

/// Runs `command`, panicking with its output if it fails.
fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ip ARGS…`.
fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// One host: its network namespace and the keeper of its mount namespace.
pub struct Host {
    /// 1, 2 or 3.
    pub number: usize,
    /// Its network namespace.
    pub netns: String,
    /// Its IP on the LAN.
    pub ip: String,
    /// Holds the mount namespace (own `/dev/shm`, own machine id); `None` once the host died.
    keeper: Option<Child>,
    keeper_pid: u32,
}

impl Host {
    /// A command running `program` on this host (its network and mount namespaces).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.keeper_pid))
            .args(["--mount", "--net", "--"])
            .arg(program);
        command
    }

    /// Kills the keeper (SIGKILL); with the host's processes gone too, its `/dev/shm` is gone.
    fn kill_keeper(&mut self) {
        if let Some(mut keeper) = self.keeper.take() {
            keeper.kill().ok();
            keeper.wait().ok();
        }
    }
}

/// Three hosts and the exchange's namespace on one bridge.
pub struct Lan {
    /// The namespace holding the bridge, where the exchange (the simulator) runs.
    pub netns: String,
    /// The exchange's IP.
    pub exchange_ip: String,
    /// Hosts 1, 2 and 3 (index 0, 1, 2).
    pub hosts: Vec<Host>,
    /// The LAN namespace, for test threads that join it.
    lan_fd: File,
    /// Host namespaces, for test threads that join one.
    host_fds: Vec<File>,
    /// Logs and machine ids; kept when a test failed.
    pub dir: PathBuf,
}

impl Lan {
    /// Builds the LAN and its three hosts.
    pub fn start() -> Self {
        sweep_stale();
        let run = format!(
            "{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("ubdcc-hosts-{run}"));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("the run's folder");
        let netns = format!("ubdcc-lan-{run}");
        // From here on, a panic drops `lan`, which removes whatever exists so far.
        let mut lan = Self {
            lan_fd: add_netns(&netns),
            netns,
            exchange_ip: format!("{SUBNET}.254"),
            hosts: Vec::new(),
            host_fds: Vec::new(),
            dir,
        };
        let n = lan.netns.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&["-n", n, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/24", lan.exchange_ip),
            "dev",
            "br0",
        ]);
        ip(&["-n", n, "link", "set", "br0", "up"]);
        for number in 1..=HOSTS {
            lan.add_host(number, &run);
        }
        lan
    }

    fn add_host(&mut self, number: usize, run: &str) {
        let netns = format!("ubdcc-h{number}-{run}");
        self.host_fds.push(add_netns(&netns));
        let host_ip = format!("{SUBNET}.{number}");
        let port = format!("h{number}");
        let lan = self.netns.as_str();
        ip(&[
            "-n", lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        ip(&["-n", lan, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let machine_id = self.dir.join(format!("h{number}.machine-id"));
        std::fs::write(&machine_id, format!("{:032x}\n", rand_u128())).expect("machine id");
        let (keeper, keeper_pid) = start_keeper(&netns, &machine_id);
        self.hosts.push(Host {
            number,
            netns,
            ip: host_ip,
            keeper: Some(keeper),
            keeper_pid,
        });
    }

    /// A command running `program` in the exchange's namespace.
    pub fn exchange_command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// Runs `work` on a thread inside the LAN namespace (everything is reachable from there).
    pub fn on_lan<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        within(&self.lan_fd, work)
    }

    /// Host `number` dies: its keeper is killed (the caller kills its other processes first)
    /// and its port on the bridge goes down, so its IP answers nothing at all, as a dead machine
    /// does — no refused connections, only silence until the callers' timeouts.
    pub fn kill_host(&mut self, number: usize) {
        self.hosts[number - 1].kill_keeper();
        ip(&[
            "-n",
            &self.netns,
            "link",
            "set",
            &format!("h{number}"),
            "down",
        ]);
    }

    /// A handle on host `number`'s network namespace, for a thread of the test to join it.
    pub fn host_namespace(&self, number: usize) -> File {
        self.host_fds[number - 1]
            .try_clone()
            .expect("duplicating a namespace handle")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.kill_keeper();
            delete_netns(&host.netns);
        }
        delete_netns(&self.netns);
        if std::thread::panicking() {
            eprintln!("logs of the failed run kept in {}", self.dir.display());
        } else {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

/// Moves the calling thread into the network namespace `netns` (only this thread: sockets it
/// opens from then on live there).
///
/// # Panics
/// If `setns` fails.
pub fn enter(netns: &File) {
    move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))
        .expect("joining a network namespace (setns)");
}

/// Runs `work` on a new thread inside `netns` and returns its result (or re-raises its panic).
fn within<T: Send>(netns: &File, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            enter(netns);
            work()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `ip netns add NAME`; returns a handle on it.
fn add_netns(name: &str) -> File {
    ip(&["netns", "add", name]);
    File::open(format!("/run/netns/{name}")).expect("the new namespace's handle")
}

/// `ip netns delete NAME`, ignoring failure (cleanup must go on).
fn delete_netns(name: &str) {
    Command::new("ip")
        .args(["netns", "delete", name])
        .stderr(Stdio::null())
        .status()
        .ok();
}

/// Starts the process holding a host's mount namespace: private propagation, a fresh tmpfs on
/// `/dev/shm`, `machine_id` over `/etc/machine-id`; returns once they are in place.
fn start_keeper(netns: &str, machine_id: &Path) -> (Child, u32) {
    let script = "mount -t tmpfs -o mode=1777,size=512m ubdcc-shm /dev/shm \
                  && mount --bind \"$1\" /etc/machine-id && echo ready && exec sleep infinity";
    let mut keeper = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(["unshare", "--mount", "--propagation", "private"])
        .args(["sh", "-c", script, "keeper"])
        .arg(machine_id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting a host's keeper");
    let stdout = keeper.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok();
    if line.trim() != "ready" {
        keeper.kill().ok();
        keeper.wait().ok();
        panic!("the keeper of {netns} did not set up its mounts: {line:?}");
    }
    // `ip netns exec`, `unshare` and `sh` each exec the next, so the child is the keeper itself.
    let pid = keeper.id();
    (keeper, pid)
}

/// Removes namespaces (with their processes) and folders of earlier runs whose test process no
/// longer exists (killed outright, so its drops never ran).
fn sweep_stale() {
    sweep_stale_folders();
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = stale_pid(name) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_everything_in(name);
            delete_netns(name);
        }
    }
}

/// Removes the folders of earlier runs whose test process no longer exists.
fn sweep_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix("ubdcc-hosts-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            std::fs::remove_dir_all(entry.path()).ok();
        }
    }
}

/// SIGKILLs every process in the network namespace `name` (pods and keepers orphaned by a
/// test process that was killed outright).
fn kill_everything_in(name: &str) {
    let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        let pid = pid.parse().ok().and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).ok();
        }
    }
}

/// The pid in a namespace name of this suite (`ubdcc-lan-PID-N`, `ubdcc-hK-PID-N`).
fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ubdcc-")?;
    let (kind, rest) = rest.split_once('-')?;
    let is_host = kind
        .strip_prefix('h')
        .is_some_and(|k| k.parse::<u8>().is_ok());
    if kind == "lan" || is_host {
        return rest.split('-').next()?.parse().ok();
    }
    None
}

/// A random number, for machine ids and secrets.
pub fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .expect("getrandom");
    }
    u128::from_le_bytes(bytes)
}

/// Starts `command` (stdout piped, stderr to `log`) and waits for its `listening on ADDRESS`
/// line; returns the child and the address.
pub fn start_listening(mut command: Command, log: &Path) -> (Child, String) {
    let stderr = File::create(log).expect("a log file");
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    let Some(address) = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
    else {
        child.kill().ok();
        child.wait().ok();
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("no readiness line from {command:?}: {line:?}\n{log}");
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

#[cfg(test)]
mod tests {
    use super::stale_pid;

    #[test]
    fn only_this_suites_namespaces_count_as_stale_candidates() {
        assert_eq!(stale_pid("ubdcc-lan-1234-0"), Some(1234));
        assert_eq!(stale_pid("ubdcc-h2-99-3"), Some(99));
        assert_eq!(stale_pid("ubdcc-probe"), None);
        assert_eq!(stale_pid("other-h1-12-0"), None);
        assert_eq!(stale_pid("ubdcc-hx-12-0"), None);
    }
}
