//! `ubdcc stop`: the original's orderly shutdown of the running cluster from another terminal.

use serde_json::Value;

use crate::cli::ClientArgs;
use crate::cluster_client::{ClusterClient, forget_port};

/// `ubdcc stop`.
pub fn stop(args: &ClientArgs) -> anyhow::Result<()> {
    let client = ClusterClient::new(args.port, &args.secrets)?;
    shutdown_all(&client);
    Ok(())
}

/// The original's shutdown: `/shutdown` on every pod, then on mgmt.
pub fn shutdown_all(client: &ClusterClient) {
    let pods: Vec<Value> = client
        .mgmt("/get_cluster_info")
        .ok()
        .and_then(|info| info.get("db")?.get("pods")?.as_object().cloned())
        .map(|pods| pods.into_iter().map(|(_, pod)| pod).collect())
        .unwrap_or_default();
    for pod in pods {
        let name = pod["NAME"].as_str().unwrap_or("?");
        let role = pod["ROLE"].as_str().unwrap_or("?");
        let port = pod["API_PORT_REST"].as_u64().unwrap_or(0) as u16;
        match client.shutdown(port) {
            Ok(_) => println!("  Shutdown: {name} ({role}) on port {port}"),
            Err(_) => println!("  Warning: Could not reach {name} on port {port}"),
        }
    }
    match client.shutdown(client.port) {
        Ok(_) => println!("  Shutdown: mgmt on port {}", client.port),
        Err(_) => println!("  Warning: Could not reach mgmt on port {}", client.port),
    }
    forget_port();
    println!("Cluster shutdown complete.");
}
