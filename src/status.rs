//! `ubdcc status`: the running cluster's status table from another terminal, in the original's
//! format (`docs/upstream-api.md` §10); also the record helpers `books` shares.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::cli::ClientArgs;
use crate::cluster_client::ClusterClient;

/// `ubdcc status`.
pub fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let client = ClusterClient::new(args.port, &args.secrets)?;
    match status_table(&client) {
        Ok(table) => println!("{table}"),
        Err(StatusError::Unreachable) => {
            println!(
                "Cannot connect to mgmt on port {}. Is the cluster running?",
                client.port
            );
            std::process::exit(1);
        }
        Err(StatusError::Refused(message)) => {
            println!("Error: {message}");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// Why there is no table.
pub enum StatusError {
    /// mgmt does not answer.
    Unreachable,
    /// mgmt answered with an error.
    Refused(String),
}

/// The status table: mgmt, then restapis and DCNs by name; the DepthCache and redundancy
/// counts; restarts; where the REST API is.
pub fn status_table(client: &ClusterClient) -> Result<String, StatusError> {
    let info = client
        .mgmt("/get_cluster_info")
        .map_err(|_| StatusError::Unreachable)?;
    if info.get("result").and_then(Value::as_str) != Some("OK") {
        let message = text(&info, "message").to_owned();
        return Err(StatusError::Refused(message));
    }
    let db = info.get("db").cloned().unwrap_or_default();
    let mut out = String::new();
    writeln!(
        out,
        "{:<16} {:<20} {:<8} {:<10} VERSION",
        "ROLE", "NAME", "PORT", "STATUS"
    )
    .ok();
    writeln!(out, "{}", "-".repeat(70)).ok();
    let mgmt = client.mgmt("/test").ok();
    let app = mgmt.as_ref().and_then(|test| test.get("app"));
    writeln!(
        out,
        "{:<16} {:<20} {:<8} {:<10} {}",
        "ubdcc-mgmt",
        app.and_then(|a| a["name"].as_str()).unwrap_or("?"),
        client.port,
        "running",
        app.and_then(|a| a["version"].as_str()).unwrap_or("?"),
    )
    .ok();
    let mut pods: Vec<&Value> = db["pods"]
        .as_object()
        .map(|pods| pods.values().collect())
        .unwrap_or_default();
    pods.sort_by_key(|pod| {
        (
            pod["ROLE"].as_str() != Some("ubdcc-restapi"),
            pod["NAME"].as_str().unwrap_or("").to_owned(),
        )
    });
    for pod in &pods {
        let mut version = pod["VERSION"].as_str().unwrap_or("?").to_owned();
        if let Some(engine) = pod["UBLDC_VERSION"].as_str() {
            write!(version, " (ubldc {engine})").ok();
        }
        writeln!(
            out,
            "{:<16} {:<20} {:<8} {:<10} {version}",
            pod["ROLE"].as_str().unwrap_or("?"),
            pod["NAME"].as_str().unwrap_or("?"),
            pod["API_PORT_REST"].as_u64().unwrap_or(0),
            pod["STATUS"].as_str().unwrap_or("?"),
        )
        .ok();
    }
    out.push('\n');
    out.push_str(&depthcache_summary(&db));
    writeln!(out, "Version: {}", text(&info, "version")).ok();
    out.push_str(&restarts_table(&db));
    if let Some(restapi) = pods.iter().find(|p| p["ROLE"] == "ubdcc-restapi") {
        let port = restapi["API_PORT_REST"].as_u64().unwrap_or(0);
        writeln!(out, "\nREST API: http://127.0.0.1:{port}/").ok();
        write!(
            out,
            "Cluster info: http://127.0.0.1:{port}/get_cluster_info"
        )
        .ok();
    }
    Ok(out.trim_end().to_owned())
}

pub(crate) fn text<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Every DepthCache record of a `db`.
pub(crate) fn records(db: &Value) -> Vec<&Value> {
    db["depthcaches"]
        .as_object()
        .into_iter()
        .flat_map(|exchanges| exchanges.values())
        .filter_map(Value::as_object)
        .flat_map(|markets| markets.values())
        .collect()
}

pub(crate) fn replicas_with(record: &Value, status: &str) -> usize {
    record["DISTRIBUTION"]
        .as_object()
        .map_or(0, |d| d.values().filter(|e| e["STATUS"] == status).count())
}

/// `DepthCaches: …` and `Redundancy: …` (the original's categories, checked in its order).
fn depthcache_summary(db: &Value) -> String {
    let records = records(db);
    let (mut running, mut starting, mut out_of_sync) = (0, 0, 0);
    let [
        mut full,
        mut degraded,
        mut single,
        mut unavailable,
        mut inactive,
    ] = [0usize; 5];
    for record in &records {
        let up = replicas_with(record, "running");
        running += up;
        starting += replicas_with(record, "starting");
        out_of_sync += replicas_with(record, "out_of_sync");
        let desired = record["DESIRED_QUANTITY"].as_u64().unwrap_or(0) as usize;
        match () {
            () if desired == 0 => inactive += 1,
            () if up == 0 => unavailable += 1,
            () if desired == 1 => single += 1,
            () if up >= desired => full += 1,
            () => degraded += 1,
        }
    }
    let total = running + starting + out_of_sync;
    let mut out = format!(
        "DepthCaches: {} ({total} replicas: {running} running, {starting} starting, {out_of_sync} out of sync)\n",
        records.len()
    );
    write!(
        out,
        "Redundancy: {full} fully redundant, {degraded} degraded, {single} no redundancy, {unavailable} unavailable"
    )
    .ok();
    if inactive > 0 {
        write!(out, ", {inactive} inactive").ok();
    }
    out.push('\n');
    out
}

/// The restarts table, when some DepthCache restarted.
fn restarts_table(db: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut rows: Vec<(String, String, u64, f64)> = records(db)
        .iter()
        .map(|record| {
            let entries: Vec<&Value> = record["DISTRIBUTION"]
                .as_object()
                .map(|d| d.values().collect())
                .unwrap_or_default();
            let restarts = entries
                .iter()
                .map(|e| e["RESTARTS"].as_u64().unwrap_or(0))
                .sum();
            let last = entries
                .iter()
                .map(|e| e["LAST_RESTART_TIME"].as_f64().unwrap_or(0.0))
                .fold(0.0, f64::max);
            (
                record["EXCHANGE"].as_str().unwrap_or("").to_owned(),
                record["MARKET"].as_str().unwrap_or("").to_owned(),
                restarts,
                last,
            )
        })
        .filter(|row| row.2 > 0)
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.2));
    let mut out = format!(
        "\n{:<28} {:<16} {:>8}  LAST RESTART\n{}\n",
        "EXCHANGE",
        "MARKET",
        "RESTARTS",
        "-".repeat(70)
    );
    for (exchange, market, restarts, last) in rows {
        writeln!(
            out,
            "{exchange:<28} {market:<16} {restarts:>8}  {}",
            ago(now, last)
        )
        .ok();
    }
    out
}

/// `Ns ago`, `Nmin ago`, `Nh ago`, `Nd ago`, or `-`.
fn ago(now: f64, then: f64) -> String {
    if then <= 0.0 {
        return "-".into();
    }
    let seconds = (now - then).max(0.0) as u64;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}min ago", seconds / 60),
        3600..86_400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}
