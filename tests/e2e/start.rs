//! `ubdcc start` driven in a pseudo-terminal like a user would: every console command and its
//! output, `status` / `credentials` / `books` from another process, a killed DCN restarted by the
//! supervisor, and clean shutdowns (stop, Ctrl-C, EOF, SIGTERM without a terminal, `ubdcc stop`)
//! that leave no process behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rexpect::session::{PtySession, spawn_command};

use crate::support::test_ban_board;
use crate::support::wait::wait_until;

/// A private home (state file, logs) and ports for one `ubdcc start`.
struct Home {
    dir: PathBuf,
    cluster: String,
    mgmt_port: u16,
    restapi_port: u16,
}

impl Home {
    fn new(tag: &str) -> Self {
        let cluster = format!("st{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ubdcc-home-{cluster}"));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let mgmt_port = free_port();
        let mut restapi_port = free_port();
        while restapi_port == mgmt_port {
            restapi_port = free_port();
        }
        Self {
            dir,
            cluster,
            mgmt_port,
            restapi_port,
        }
    }

    /// `ubdcc <args>` with this home.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ubdcc"));
        command
            .args(args)
            .env("HOME", &self.dir)
            .env("UBDCC_BAN_BOARD", test_ban_board())
            .env_remove("UBDCC_CONFIG");
        command
    }

    /// `ubdcc start --demo` with this home's ports and cluster.
    fn start_command(&self, dcns: &str) -> Command {
        let (mgmt, restapi) = (self.mgmt_port.to_string(), self.restapi_port.to_string());
        self.command(&[
            "start",
            "--demo",
            "--dcn",
            dcns,
            "--port",
            &mgmt,
            "--restapi-port",
            &restapi,
            "--cluster",
            &self.cluster,
        ])
    }

    /// Runs `ubdcc <args>` to the end; its stdout and stderr.
    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("ubdcc runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Waits until no process of this cluster runs any more; panics with the survivors.
    fn assert_nothing_left(&self) {
        let mgmt = format!("--port\0{}\0", self.mgmt_port);
        wait_until(Duration::from_secs(15), "every process gone", || {
            let left: Vec<String> = processes()
                .into_iter()
                .filter(|(_, cmdline)| cmdline.contains(&self.cluster) || cmdline.contains(&mgmt))
                .map(|(pid, cmdline)| format!("{pid}: {}", cmdline.replace('\0', " ")))
                .collect();
            left.is_empty()
                .then_some(())
                .ok_or(format!("left behind: {left:?}"))
        });
        assert!(
            !self
                .dir
                .join(".unicorn-binance-suite/config/ubdcc.state")
                .exists(),
            "the remembered port is forgotten"
        );
        assert!(
            !Path::new("/dev/shm")
                .read_dir()
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains(&self.cluster)),
            "no segment left in /dev/shm"
        );
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `(pid, command line)` of every process.
fn processes() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).into_owned()))
        })
        .collect()
}

/// Starts `ubdcc start --demo` in a pseudo-terminal and waits for the prompt.
fn start_console(home: &Home, dcns: &str) -> PtySession {
    let mut session =
        spawn_command(home.start_command(dcns), Some(90_000)).expect("spawns in a pty");
    session.exp_string("Cluster is ready!").unwrap();
    session.exp_string("8/8 synced").unwrap();
    session
        .exp_string("Type 'help' for available commands, Ctrl+C or 'stop' to shut down.")
        .unwrap();
    session.exp_string("ubdcc> ").unwrap();
    session
}

/// Sends `line` and waits for each of `expected` in order, then for the next prompt.
fn command(session: &mut PtySession, line: &str, expected: &[&str]) {
    session.send_line(line).unwrap();
    for text in expected {
        session
            .exp_string(text)
            .unwrap_or_else(|e| panic!("{line}: no {text:?}: {e}"));
    }
    session.exp_string("ubdcc> ").unwrap();
}

#[test]
fn every_console_command_works_and_stop_leaves_nothing_behind() {
    let home = Home::new("c");
    let mut session = start_console(&home, "1");

    command(
        &mut session,
        "help",
        &[
            "Available commands:",
            "remove-dcn <count|name> Stop and remove DCN(s)",
            "help              Show this help",
        ],
    );
    command(
        &mut session,
        "/STATUS",
        &[
            "ubdcc-mgmt",
            "dcn-1",
            "DepthCaches: 8 (8 replicas: 8 running, 0 starting, 0 out of sync)",
        ],
    );
    command(
        &mut session,
        "add-dcn",
        &["dcn-2 started (PID", "Waiting for registration..."],
    );
    command(
        &mut session,
        "remove-dcn",
        &["Usage: remove-dcn <count|pod-name>"],
    );
    command(
        &mut session,
        "remove-dcn 5",
        &["Only 2 DCN(s) running, cannot remove 5."],
    );
    command(
        &mut session,
        "remove-dcn nosuch",
        &["Pod 'nosuch' not found. Use 'status' to see available pods."],
    );
    command(
        &mut session,
        "restart",
        &["Usage: restart <pod-name|mgmt|restapi>"],
    );
    command(
        &mut session,
        "bogus",
        &["Unknown command: bogus. Type 'help' for available commands."],
    );

    // From another terminal.
    let port = home.mgmt_port.to_string();
    let status = home.run(&["status"]);
    assert!(
        status.contains("dcn-2") && status.contains("REST API: http://127.0.0.1:"),
        "{status}"
    );
    let added = home.run(&[
        "credentials",
        "add",
        "--account-group",
        "binance.com",
        "--api-key",
        "KEY0123456789",
        "--api-secret",
        "hidden",
    ]);
    assert!(added.starts_with("Added. id="), "{added}");
    let listed = home.run(&["credentials", "list", "--port", &port]);
    assert!(
        listed.contains("KEY0*******89") && !listed.contains("hidden"),
        "{listed}"
    );
    let books = home.run(&["books"]);
    assert!(
        books.contains("SIM0USDT") && books.contains("synced"),
        "{books}"
    );
    let top = home.run(&[
        "top",
        "binance.com",
        "SIM0USDT",
        "--cluster",
        &home.cluster,
        "--once",
    ]);
    assert!(
        top.contains("synced  update") && top.contains("bid"),
        "{top}"
    );

    command(&mut session, "remove-dcn dcn-2", &["Removed: dcn-2 (port"]);
    command(
        &mut session,
        "restart dcn-1",
        &["Shutdown signal sent to 'dcn-1'", "dcn-1 respawned (PID"],
    );
    command(
        &mut session,
        "restart mgmt",
        &[
            "mgmt restarted (PID",
            "Waiting for mgmt to come up...",
            "mgmt is ready!",
        ],
    );
    command(&mut session, "restart restapi", &["restapi restarted (PID"]);

    // A crashed DCN is restarted by the supervisor.
    let dcn = processes()
        .into_iter()
        .find(|(_, cmdline)| cmdline.contains(&home.cluster) && cmdline.contains("dcn-1"))
        .expect("dcn-1 runs")
        .0;
    Command::new("kill")
        .args(["-9", &dcn.to_string()])
        .status()
        .unwrap();
    session
        .exp_string("dcn-1 exited (signal 9); restarted (PID")
        .unwrap();

    session.send_line("stop").unwrap();
    session.exp_string("Shutting down cluster...").unwrap();
    session.exp_string("Cluster shutdown complete.").unwrap();
    session.exp_eof().unwrap();
    home.assert_nothing_left();
}

#[test]
fn ctrl_c_and_eof_shut_the_cluster_down_cleanly() {
    for key in ['c', 'd'] {
        let home = Home::new(&format!("k{key}"));
        let mut session = start_console(&home, "1");
        session.send_control(key).unwrap();
        session.exp_string("Cluster shutdown complete.").unwrap();
        session.exp_eof().unwrap();
        home.assert_nothing_left();
    }
}

#[test]
fn without_a_terminal_it_runs_until_ubdcc_stop_or_sigterm() {
    for stop_from_outside in [true, false] {
        let home = Home::new(if stop_from_outside { "ns" } else { "nt" });
        let mut child = start_detached(&home);
        if stop_from_outside {
            let stopped = home.run(&["stop"]);
            assert!(stopped.contains("Cluster shutdown complete."), "{stopped}");
        } else {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        home.assert_nothing_left();
    }
}

#[test]
fn a_role_that_cannot_start_is_reported_and_nothing_is_left_running() {
    let home = Home::new("f");
    // restapi's port is taken.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", home.restapi_port)).unwrap();
    let output = home
        .start_command("1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("restapi did not start; see "), "{text}");
    home.assert_nothing_left();
}

/// Starts `ubdcc start --demo` without a terminal and waits for its books; returns the child.
fn start_detached(home: &Home) -> std::process::Child {
    start_detached_with(home, "1", &[])
}

/// Like [`start_detached`], with `dcns` DCNs and `extra` arguments.
fn start_detached_with(home: &Home, dcns: &str, extra: &[&str]) -> std::process::Child {
    let mut child = home
        .start_command(dcns)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut output = String::new();
    loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(read > 0, "ended early: {output}");
        output.push_str(&line);
        if line.contains("Running without a terminal") {
            break;
        }
    }
    assert!(output.contains("8/8 synced"), "{output}");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

#[test]
fn the_demo_never_touches_the_users_cluster_state_and_a_second_start_says_one_runs() {
    let home = Home::new("dm");
    // The user's own cluster state, with a book the simulator does not have.
    let data = home
        .dir
        .join(".ubdcc")
        .join(format!("mgmt-{}", home.mgmt_port));
    std::fs::create_dir_all(&data).unwrap();
    let record = serde_json::json!({"CREATED_TIME": 1.0, "DESIRED_QUANTITY": 1, "DISTRIBUTION": {},
        "DISTRIBUTION_CHANGES": 0, "EXCHANGE": "binance.com", "LAST_DISTRIBUTION_CHANGE": 1.0,
        "REFRESH_INTERVAL": null, "MARKET": "USERSBOOK", "UPDATE_INTERVAL": null});
    let state = serde_json::json!({"credentials": {}, "nodes": {}, "pods": {}, "timestamp": 1.0,
        "depthcaches": {"binance.com": {"USERSBOOK": record}}});
    std::fs::write(data.join("state.json"), state.to_string()).unwrap();
    let before = std::fs::read(data.join("state.json")).unwrap();

    let mut child = start_detached(&home);
    let books = home.run(&["books"]);
    assert!(!books.contains("USERSBOOK"), "{books}");
    // A second start in the same home says so at once and starts nothing.
    let second = home
        .start_command("1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&second.stdout).into_owned()
        + &String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{text}");
    assert!(text.contains("already running"), "{text}");
    assert!(text.contains("ubdcc stop"), "{text}");
    assert!(!text.contains("started (PID"), "{text}");

    let stopped = home.run(&["stop"]);
    assert!(stopped.contains("Cluster shutdown complete."), "{stopped}");
    child.wait().unwrap();
    home.assert_nothing_left();
    assert_eq!(
        std::fs::read(data.join("state.json")).unwrap(),
        before,
        "the user's state is untouched"
    );
}

#[test]
fn record_books_gives_each_dcn_a_directory_of_its_own_and_mgmt_knows_what_each_records() {
    let home = Home::new("rb");
    let dir = home.dir.join("recordings");
    let mut child = start_detached_with(&home, "2", &["--record-books", &dir.to_string_lossy()]);
    let address = format!("127.0.0.1:{}", home.mgmt_port);
    let info = crate::support::http::get_json(&address, "/get_cluster_info");
    let pods = info["db"]["pods"].as_object().expect("pods");
    let recordings: Vec<&serde_json::Value> = pods
        .values()
        .filter(|pod| pod["ROLE"] == "ubdcc-dcn")
        .map(|pod| &pod["RECORDING"])
        .collect();
    assert_eq!(recordings, ["chosen", "chosen"], "{info}");
    for dcn in ["dcn-1", "dcn-2"] {
        assert!(dir.join(dcn).is_dir(), "{}", dir.join(dcn).display());
    }
    let stopped = home.run(&["stop"]);
    assert!(stopped.contains("Cluster shutdown complete."), "{stopped}");
    assert!(child.wait().unwrap().success());
    home.assert_nothing_left();
}
