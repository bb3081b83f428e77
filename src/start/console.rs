//! The interactive console of `ubdcc start`, with the original's commands, words and formats
//! (`docs/upstream-api.md` §10.3): case-insensitive, `/` aliases, `stop` / `quit` / `exit`,
//! EOF and Ctrl-C end it.

use std::io::{BufRead as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::{Cluster, lock};
use crate::status::status_table;

const HELP: &str = "
Available commands:
  status            Show cluster status
  add-dcn [count]   Spawn new DCN process(es)
  remove-dcn <count|name> Stop and remove DCN(s)
  restart <name>    Restart a specific pod
  stop              Shut down the cluster
  help              Show this help
";

/// Reads and runs commands until `stop` or EOF.
pub fn run(cluster: &Mutex<Cluster>) {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        print!("ubdcc> ");
        std::io::stdout().flush().ok();
        line.clear();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let Some(command) = words.next() else {
            continue;
        };
        let command = command.trim_start_matches('/').to_ascii_lowercase();
        let argument = words.next();
        let mut guard = lock(cluster);
        match command.as_str() {
            "status" => status(&guard),
            "add-dcn" => add_dcn(&mut guard, argument),
            "remove-dcn" => remove_dcn(&mut guard, argument),
            "restart" => restart(&mut guard, argument),
            "stop" | "quit" | "exit" => return,
            "help" | "?" => print!("{HELP}"),
            other => println!("Unknown command: {other}. Type 'help' for available commands."),
        }
    }
}

fn status(cluster: &Cluster) {
    match status_table(&cluster.client) {
        Ok(table) => println!("\n{table}\n"),
        Err(crate::status::StatusError::Unreachable) => println!("Cannot connect to mgmt."),
        Err(crate::status::StatusError::Refused(_)) => {}
    }
}

fn add_dcn(cluster: &mut Cluster, argument: Option<&str>) {
    let count = match argument.map(str::parse::<usize>) {
        None => 1,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            println!("Usage: add-dcn [count]");
            return;
        }
    };
    let before = cluster.pods().map_or(0, |pods| pods.len());
    for _ in 0..count {
        if let Err(error) = cluster.add_dcn() {
            println!("  Error: {error:#}");
            return;
        }
    }
    println!("Waiting for registration...");
    for _ in 0..50 {
        if cluster.pods().map_or(0, |pods| pods.len()) >= before + count {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("  Warning: not every new DCN registered within 10 s. Check the logs.");
}

/// The DCN pods in cluster-info order.
fn dcn_pods(cluster: &Cluster) -> Vec<Value> {
    cluster
        .pods()
        .unwrap_or_default()
        .into_iter()
        .filter(|pod| pod["ROLE"] == "ubdcc-dcn")
        .collect()
}

fn pod_field<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod[key].as_str().unwrap_or("?")
}

fn pod_port(pod: &Value) -> u16 {
    pod["API_PORT_REST"].as_u64().unwrap_or(0) as u16
}

/// Asks a DCN pod to shut down; its exit is expected (not restarted).
fn shut_down_dcn(cluster: &mut Cluster, pod: &Value) {
    let (name, port) = (pod_field(pod, "NAME"), pod_port(pod));
    cluster.supervisor.expect_exit(name);
    match cluster.client.shutdown(port) {
        Ok(_) => println!("  Removed: {name} (port {port})"),
        Err(_) => println!("  Warning: Could not reach {name} on port {port}"),
    }
}

fn remove_dcn(cluster: &mut Cluster, argument: Option<&str>) {
    let Some(argument) = argument else {
        println!("Usage: remove-dcn <count|pod-name>");
        return;
    };
    if let Ok(count) = argument.parse::<usize>() {
        let pods = dcn_pods(cluster);
        if count > pods.len() {
            println!("Only {} DCN(s) running, cannot remove {count}.", pods.len());
            return;
        }
        for pod in pods.iter().take(count) {
            shut_down_dcn(cluster, pod);
        }
        return;
    }
    match find_pod(cluster, argument) {
        Some(pod) if pod["ROLE"] == "ubdcc-dcn" => shut_down_dcn(cluster, &pod),
        Some(_) => println!("'{argument}' is not a DCN. Use 'remove-dcn' only for DCN pods."),
        None => println!("Pod '{argument}' not found. Use 'status' to see available pods."),
    }
}

/// A pod by name or uid.
fn find_pod(cluster: &Cluster, name_or_uid: &str) -> Option<Value> {
    cluster
        .pods()?
        .into_iter()
        .find(|pod| pod["NAME"] == name_or_uid || pod["UID"] == name_or_uid)
}

fn restart(cluster: &mut Cluster, argument: Option<&str>) {
    let Some(argument) = argument else {
        println!("Usage: restart <pod-name|mgmt|restapi>");
        return;
    };
    match argument {
        "mgmt" | "ubdcc-mgmt" => restart_mgmt(cluster),
        "restapi" | "ubdcc-restapi" => match cluster.supervisor.restart("restapi") {
            Ok(pid) => println!("  restapi restarted (PID {pid})"),
            Err(error) => println!("  Error: {error:#}"),
        },
        _ => restart_dcn(cluster, argument),
    }
}

fn restart_mgmt(cluster: &mut Cluster) {
    match cluster.supervisor.restart("mgmt") {
        Ok(pid) => println!("  mgmt restarted (PID {pid})"),
        Err(error) => {
            println!("  Error: {error:#}");
            return;
        }
    }
    println!("  Waiting for mgmt to come up...");
    for _ in 0..30 {
        if cluster.client.mgmt("/test").is_ok() {
            println!("  mgmt is ready!");
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("  Warning: mgmt did not come up within 30 s. Check the logs.");
}

fn restart_dcn(cluster: &mut Cluster, argument: &str) {
    let Some(pod) = find_pod(cluster, argument) else {
        println!("Pod '{argument}' not found. Use 'status' to see available pods.");
        return;
    };
    let name = pod_field(&pod, "NAME").to_owned();
    if pod["ROLE"] != "ubdcc-dcn" {
        println!("'{argument}' is not a DCN; use 'restart mgmt' or 'restart restapi'.");
        return;
    }
    println!(
        "Shutdown signal sent to '{name}' on port {}.",
        pod_port(&pod)
    );
    match cluster.supervisor.restart(&name) {
        Ok(pid) => println!("  {name} respawned (PID {pid})"),
        Err(error) => println!("  Error: {error:#}"),
    }
}
