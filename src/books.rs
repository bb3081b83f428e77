//! `ubdcc books`: every DepthCache with its replicas, the status a reader gets, best bid and
//! ask, age, when an audit last proved it (and how many audits found it wrong, or that its
//! replicas disagree), and its place in its DCN's snapshot queue.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::cli::ClientArgs;
use crate::cluster_client::ClusterClient;
use crate::status::{records, replicas_with, text};

/// `ubdcc books`.
pub fn books(args: &ClientArgs) -> anyhow::Result<()> {
    let client = ClusterClient::new(args.port, &args.secrets)?;
    match books_table(&client) {
        Some(table) => println!("{table}"),
        None => {
            println!(
                "Cannot connect to mgmt on port {}. Is the cluster running?",
                client.port
            );
            std::process::exit(1);
        }
    }
    Ok(())
}

/// One row per DepthCache: replicas running / desired, the status a reader gets, best bid and
/// ask, the book's age (read through restapi), and where its first replica waiting for a
/// REST snapshot stands in its DCN's queue.
pub fn books_table(client: &ClusterClient) -> Option<String> {
    let info = client.mgmt("/get_cluster_info").ok()?;
    let db = info.get("db")?;
    let restapi = db["pods"]
        .as_object()?
        .values()
        .find(|pod| pod["ROLE"] == "ubdcc-restapi")
        .and_then(|pod| pod["API_PORT_REST"].as_u64())
        .map(|port| port as u16);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = format!(
        "{:<30} {:<22} {:>8}  {:<12} {:>14} {:>14} {:>9} {:>6}  {:<18} {}\n{}\n",
        "EXCHANGE",
        "MARKET",
        "REPLICAS",
        "STATUS",
        "BEST BID",
        "BEST ASK",
        "AGE",
        "DEPTH",
        "VERIFIED",
        "SNAPSHOT QUEUE",
        "-".repeat(166)
    );
    for record in records(db) {
        let exchange = record["EXCHANGE"].as_str().unwrap_or("");
        let market = record["MARKET"].as_str().unwrap_or("");
        let running = replicas_with(record, "running");
        let desired = record["DESIRED_QUANTITY"].as_u64().unwrap_or(0);
        let best = |side: &str| {
            let port = restapi?;
            let path = format!("/get_{side}?exchange={exchange}&market={market}&limit_count=1");
            client.pod(port, &path).ok()
        };
        let (bids, asks) = (best("bids"), best("asks"));
        let level = |answer: &Option<Map<String, Value>>, key: &str| {
            answer
                .as_ref()
                .and_then(|a| a.get(key)?.get(0)?.get(0)?.as_f64())
                .map_or_else(|| "-".to_owned(), |p| p.to_string())
        };
        let status = match &asks {
            Some(answer) if text(answer, "result") == "OK" => "synced".to_owned(),
            Some(answer) => match text(answer, "error_id") {
                "#6000" => "out of sync".to_owned(),
                "#4000" => "no replica".to_owned(),
                other => other.to_owned(),
            },
            None => "?".to_owned(),
        };
        let age = asks
            .as_ref()
            .and_then(|a| a.get("age_ms")?.as_f64())
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
        writeln!(
            out,
            "{exchange:<30} {market:<22} {:>8}  {status:<12} {:>14} {:>14} {age:>9} {:>6}  {:<18} {}",
            format!("{running}/{desired}"),
            level(&bids, "bids"),
            level(&asks, "asks"),
            depth(record),
            verified(record, now),
            snapshot_queue(record, now),
        )
        .ok();
    }
    Some(out.trim_end().to_owned())
}

/// The levels per side the deepest running replica covers (`-` while none reports one): a
/// book that started shallow shows e.g. `100` until it is deepened to `1000`.
fn depth(record: &Value) -> String {
    record["DISTRIBUTION"]
        .as_object()
        .into_iter()
        .flat_map(|entries| entries.values())
        .filter(|entry| entry["STATUS"] == "running")
        .filter_map(|entry| entry["DEPTH"].as_u64())
        .max()
        .map_or_else(|| "-".to_owned(), |depth| depth.to_string())
}

/// When an audit last proved any replica (`12s ago`, `-` when none was audited), with the
/// audits that found a replica wrong (`, 2 wrong`) and `, replicas disagree` when mgmt found two
/// replicas with different top levels at the same update id.
fn verified(record: &Value, now: f64) -> String {
    let entries: Vec<&Value> = record["DISTRIBUTION"]
        .as_object()
        .into_iter()
        .flat_map(|entries| entries.values())
        .collect();
    let last = entries
        .iter()
        .filter_map(|entry| entry["VERIFIED_AT"].as_f64())
        .filter(|at| *at > 0.0)
        .fold(None, |newest: Option<f64>, at| {
            Some(newest.map_or(at, |n| n.max(at)))
        });
    let mut cell = last.map_or_else(
        || "-".to_owned(),
        |at| format!("{}s ago", (now - at).max(0.0).round()),
    );
    let wrong: u64 = entries
        .iter()
        .filter_map(|entry| entry["AUDIT_MISMATCHES"].as_u64())
        .sum();
    if wrong > 0 {
        write!(cell, ", {wrong} wrong").ok();
    }
    if record["REPLICAS_DISAGREE"].is_object() {
        cell.push_str(", replicas disagree");
    }
    cell
}

/// The replica nearest the front of its DCN's snapshot queue, as `<kind> #<place>, <eta>` (e.g.
/// `verify #12, in 3min`), with why it is out of sync if it is; `-` when none waits.
fn snapshot_queue(record: &Value, now: f64) -> String {
    let waiting = record["DISTRIBUTION"]
        .as_object()
        .into_iter()
        .flat_map(|d| d.values())
        .filter(|entry| entry["SNAPSHOT_QUEUE"].is_object())
        .min_by_key(|entry| {
            entry["SNAPSHOT_QUEUE"]["PLACE"]
                .as_u64()
                .unwrap_or(u64::MAX)
        });
    let Some(entry) = waiting else {
        return "-".into();
    };
    let queue = &entry["SNAPSHOT_QUEUE"];
    let eta = queue["ETA"].as_f64().unwrap_or(now);
    let mut cell = format!(
        "{} #{}, {}",
        queue["KIND"].as_str().unwrap_or("?"),
        queue["PLACE"].as_u64().unwrap_or(0),
        within(eta - now)
    );
    if let Some(reason) = entry["REASON"].as_str() {
        write!(cell, " ({reason})").ok();
    }
    cell
}

/// `now`, `in Ns`, `in Nmin`, `in Nh`.
fn within(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0 => "now".into(),
        1..60 => format!("in {seconds}s"),
        60..3600 => format!("in {}min", seconds.div_ceil(60)),
        _ => format!("in {}h", seconds.div_ceil(3600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_cell_shows_the_deepest_running_replica() {
        let record = serde_json::json!({"DISTRIBUTION": {
            "a": {"STATUS": "running", "DEPTH": 100},
            "b": {"STATUS": "running", "DEPTH": 1000},
            "c": {"STATUS": "out_of_sync", "DEPTH": 5000}}});
        assert_eq!(depth(&record), "1000");
        assert_eq!(depth(&serde_json::json!({"DISTRIBUTION": {}})), "-");
    }

    #[test]
    fn the_verified_cell_shows_the_newest_audit_what_audits_found_and_disagreements() {
        let record = serde_json::json!({"DISTRIBUTION": {
            "a": {"STATUS": "running", "VERIFIED_AT": 88.0, "AUDITS": 3, "AUDIT_MISMATCHES": 1},
            "b": {"STATUS": "running", "VERIFIED_AT": 95.0, "AUDITS": 2, "AUDIT_MISMATCHES": 1}},
            "REPLICAS_DISAGREE": {"UPDATE_ID": 7, "PODS": ["a", "b"], "SINCE": 90.0}});
        assert_eq!(
            verified(&record, 100.0),
            "5s ago, 2 wrong, replicas disagree"
        );
        let never = serde_json::json!({"DISTRIBUTION": {"a": {"STATUS": "running"}}});
        assert_eq!(verified(&never, 100.0), "-");
    }

    #[test]
    fn the_snapshot_queue_cell_names_the_front_replica_its_eta_and_reason() {
        let record = serde_json::json!({"DISTRIBUTION": {
            "a": {"STATUS": "out_of_sync", "REASON": "gap in update ids",
                  "SNAPSHOT_QUEUE": {"KIND": "resync", "PLACE": 2, "SINCE": 90.0, "ETA": 130.0}},
            "b": {"STATUS": "running"},
            "c": {"STATUS": "running",
                  "SNAPSHOT_QUEUE": {"KIND": "verify", "PLACE": 40, "SINCE": 90.0, "ETA": 400.0}},
        }});
        assert_eq!(
            snapshot_queue(&record, 100.0),
            "resync #2, in 30s (gap in update ids)"
        );
        let synced = serde_json::json!({"DISTRIBUTION": {"b": {"STATUS": "running"}}});
        assert_eq!(snapshot_queue(&synced, 100.0), "-");
    }
}
