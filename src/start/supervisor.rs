//! The children of `ubdcc start`: each role is this same binary with the role's subcommand, in
//! its own process group (Ctrl-C in the terminal reaches only the supervisor, which then stops
//! them in order), with stdout and stderr appended to `<logdir>/ubdcc-<name>.log`.
//!
//! A child that exits without being asked to is reported and started again, unless it keeps
//! crashing (more than [`MAX_RESTARTS`] in [`RESTART_WINDOW`]); a child that exits cleanly on its
//! own was stopped through its `/shutdown` and stays stopped.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Most restarts of one child within [`RESTART_WINDOW`] before it is left stopped.
const MAX_RESTARTS: usize = 5;
/// See [`MAX_RESTARTS`].
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// What a child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The exchange simulator (`--demo`).
    Sim,
    /// mgmt.
    Mgmt,
    /// restapi.
    Restapi,
    /// A DCN.
    Dcn,
}

/// One child process.
pub struct Supervised {
    /// `mgmt`, `restapi`, `sim`, `dcn-<k>`.
    pub name: String,
    /// Its role.
    pub role: Role,
    args: Vec<String>,
    process: Child,
    /// Asked to stop: its exit is not a crash.
    stopping: bool,
    /// Exited and not restarted.
    pub stopped: bool,
    restarts: Vec<Instant>,
}

/// What a look at the children found.
pub enum Event {
    /// A child crashed and was started again.
    Restarted {
        name: String,
        status: String,
        pid: u32,
    },
    /// A child crashed too often and stays stopped.
    GaveUp { name: String, log: PathBuf },
    /// A child exited cleanly on its own (its `/shutdown` was called).
    Stopped { name: String, role: Role },
}

/// The children; see the module doc.
pub struct Supervisor {
    exe: PathBuf,
    logdir: PathBuf,
    /// Arguments every child gets first (`--log-level`).
    common: Vec<String>,
    /// Environment every child gets (secrets: not visible in `ps` as arguments would be).
    env: Vec<(String, String)>,
    /// The children, in start order.
    pub children: Vec<Supervised>,
}

impl Supervisor {
    /// A supervisor starting this binary, logging to `logdir`.
    ///
    /// # Errors
    /// When the binary's path is unknown or the log directory cannot be created.
    pub fn new(logdir: &Path, log_level: &str, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logdir)
            .with_context(|| format!("creating the log directory {}", logdir.display()))?;
        Ok(Self {
            exe: std::env::current_exe().context("finding the ubdcc binary")?,
            logdir: logdir.to_owned(),
            common: vec!["--log-level".into(), log_level.into()],
            env,
            children: Vec::new(),
        })
    }

    /// The log file of child `name`.
    pub fn log_of(&self, name: &str) -> PathBuf {
        self.logdir.join(format!("ubdcc-{name}.log"))
    }

    /// Starts child `name` with `args`; waits up to `ready_within` for its `listening on ADDR`
    /// line and returns the address (`None` if it did not come).
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn start(
        &mut self,
        name: &str,
        role: Role,
        args: Vec<String>,
        ready_within: Duration,
    ) -> anyhow::Result<(u32, Option<String>)> {
        let (process, offset) = self.spawn(name, &args)?;
        let pid = process.id();
        self.children.push(Supervised {
            name: name.to_owned(),
            role,
            args,
            process,
            stopping: false,
            stopped: false,
            restarts: Vec::new(),
        });
        let address = self.wait_listening(name, offset, ready_within);
        Ok((pid, address))
    }

    /// `true` while the newest child called `name` runs.
    fn is_running(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .rev()
            .find(|c| c.name == name)
            .is_some_and(|c| matches!(c.process.try_wait(), Ok(None)))
    }

    fn spawn(&self, name: &str, args: &[String]) -> anyhow::Result<(Child, u64)> {
        let path = self.log_of(name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let offset = log.metadata().map_or(0, |m| m.len());
        let process = Command::new(&self.exe)
            .args(&self.common)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C in the terminal is the supervisor's to handle.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok((process, offset))
    }

    /// Waits for `listening on ADDR` in the log written after `offset`; gives up when the child
    /// exits first.
    fn wait_listening(&mut self, name: &str, offset: u64, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let path = self.log_of(name);
        while Instant::now() < deadline {
            if let Some(address) = listening_line(&path, offset) {
                return Some(address);
            }
            if !self.is_running(name) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The child called `name`.
    pub fn child(&mut self, name: &str) -> Option<&mut Supervised> {
        self.children
            .iter_mut()
            .find(|c| c.name == name && !c.stopped)
    }

    /// The running DCNs, in start order.
    pub fn dcns(&self) -> impl Iterator<Item = &Supervised> {
        self.children
            .iter()
            .filter(|c| c.role == Role::Dcn && !c.stopped)
    }

    /// Marks `name` as stopping (its exit is expected); call before asking it to stop.
    pub fn expect_exit(&mut self, name: &str) {
        if let Some(child) = self.child(name) {
            child.stopping = true;
        }
    }

    /// Stops `name`: SIGTERM, then SIGKILL after 5 s; it is not restarted.
    pub fn stop(&mut self, name: &str) {
        if let Some(child) = self.child(name) {
            child.stopping = true;
            terminate(&mut child.process);
            child.stopped = true;
        }
    }

    /// Stops child `name` (if running) and starts it again with the same arguments; returns
    /// the new pid once it listens.
    ///
    /// # Errors
    /// When there is no such child or the process cannot be started.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<u32> {
        self.stop(name);
        let position = self
            .children
            .iter()
            .rposition(|c| c.name == name)
            .with_context(|| format!("no child {name}"))?;
        let old = self.children.remove(position);
        let (pid, _) = self.start(name, old.role, old.args, Duration::from_secs(10))?;
        Ok(pid)
    }

    /// Looks at every child: crashed ones are started again.
    pub fn check(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for index in 0..self.children.len() {
            let child = &mut self.children[index];
            if child.stopped {
                continue;
            }
            let Ok(Some(status)) = child.process.try_wait() else {
                continue;
            };
            if child.stopping || status.success() {
                child.stopped = true;
                if !child.stopping {
                    events.push(Event::Stopped {
                        name: child.name.clone(),
                        role: child.role,
                    });
                }
                continue;
            }
            let now = Instant::now();
            child
                .restarts
                .retain(|at| now.duration_since(*at) < RESTART_WINDOW);
            if child.restarts.len() >= MAX_RESTARTS {
                child.stopped = true;
                let name = child.name.clone();
                let log = self.log_of(&name);
                events.push(Event::GaveUp { name, log });
                continue;
            }
            let name = child.name.clone();
            let args = child.args.clone();
            match self.spawn(&name, &args) {
                Ok((process, _)) => {
                    let child = &mut self.children[index];
                    child.process = process;
                    child.restarts.push(now);
                    events.push(Event::Restarted {
                        name,
                        status: describe(status),
                        pid: child.process.id(),
                    });
                }
                Err(error) => {
                    self.children[index].stopped = true;
                    tracing::error!(%error, %name, "cannot restart");
                }
            }
        }
        events
    }

    /// Stops every child still running: DCNs and restapi first, then mgmt, then the simulator;
    /// then removes segments of `cluster` that DCNs killed along the way left behind.
    pub fn stop_all(&mut self, cluster: &str) {
        for role in [Role::Dcn, Role::Restapi, Role::Mgmt, Role::Sim] {
            for child in self.children.iter_mut().filter(|c| c.role == role) {
                child.stopping = true;
                if let Ok(None) = child.process.try_wait() {
                    send(&child.process, rustix::process::Signal::TERM);
                }
            }
            for child in self.children.iter_mut().filter(|c| c.role == role) {
                wait_or_kill(&mut child.process, Duration::from_secs(5));
                child.stopped = true;
            }
        }
        if let Ok(mut reader) = ubdcc_shm::ClusterReader::open(cluster) {
            reader.remove_dead_segments();
        }
    }
}

fn send(process: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(process.id() as i32) {
        rustix::process::kill_process(pid, signal).ok();
    }
}

fn terminate(process: &mut Child) {
    if let Ok(None) = process.try_wait() {
        send(process, rustix::process::Signal::TERM);
    }
    wait_or_kill(process, Duration::from_secs(5));
}

fn wait_or_kill(process: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    process.kill().ok();
    process.wait().ok();
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The address of the first `listening on ADDR` line after `offset` in `path`.
fn listening_line(path: &Path, offset: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}
