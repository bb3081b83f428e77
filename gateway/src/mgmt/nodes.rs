//! The endpoints pods call on mgmt (`docs/upstream-api.md` §9.2), behind the cluster
//! secret when one is set.
//!
//! Differences from the original: a sync carries the pod's replica statuses (so `STATUS` means
//! synced, not accepted) and gets the state back when the pod's copy is older; the routing
//! lookup works; an invalid `last_restart_time` is #1105, not #1024.

use serde_json::{Map, Value};

use super::state::{DCN_ROLE, PodRecord, ReplicaStatus, ReplicaTrust};
use super::{BackupOffer, Caller, Gate, Mgmt, Route, now};
use crate::agent::ReplicaReport;
use crate::envelope::{ApiError, ErrorId, clip};
use crate::identity::Role;
use crate::params::Params;

/// The routes pods call: path, event, gate, logic. A sync is never gated: it is how pods offer
/// their state copies during recovery.
pub const ROUTES: &[Route] = &[
    (
        "/ubdcc_node_registration",
        "UBDCC_NODE_REGISTRATION",
        Gate::Gated,
        registration,
    ),
    ("/ubdcc_node_sync", "UBDCC_NODE_SYNC", Gate::Open, sync),
    (
        "/ubdcc_node_cancellation",
        "UBDCC_NODE_CANCELLATION",
        Gate::Gated,
        cancellation,
    ),
    (
        "/ubdcc_get_responsible_dcn_addresses",
        "UBDCC_GET_RESPONSIBLE_DCN_ADDRESSES",
        Gate::Gated,
        responsible_addresses,
    ),
    (
        "/ubdcc_update_depthcache_distribution",
        "UBDCC_UPDATE_DEPTHCACHE_DISTRIBUTION",
        Gate::Gated,
        update_distribution,
    ),
    (
        "/ubdcc_assign_credentials",
        "UBDCC_ASSIGN_CREDENTIALS",
        Gate::Gated,
        assign_credentials,
    ),
    (
        "/ubdcc_mgmt_backup",
        "UBDCC_MGMT_BACKUP",
        Gate::Open,
        backup,
    ),
];

/// The address other pods reach a pod at, and mgmt pushes its state (secrets included) to: the
/// TCP peer address the call came from. An advertised `ip` (a pod behind NAT, or the pod IP
/// Kubernetes' downward API gives) counts only when the call carried the cluster secret; an
/// unauthenticated caller cannot make mgmt send anything to a third address.
fn address(params: &Params, caller: Caller) -> Result<String, ApiError> {
    let advertised = params.text("ip")?;
    if let Some(ip) = advertised
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!(
                "Invalid parameter: ip must be an IP address, got {:?}",
                clip(ip)
            ),
        ));
    }
    if let Some(ip) = advertised
        && !caller.authenticated
    {
        tracing::debug!(peer = %caller.peer, advertised = %clip(ip), "ignored an advertised address of an unauthenticated pod");
    }
    Ok(advertised
        .filter(|_| caller.authenticated)
        .map_or_else(|| caller.peer.to_string(), str::to_owned))
}

/// What a registering DCN records (`all`, `chosen`; not set: nothing).
fn recording(params: &Params) -> Result<Option<String>, ApiError> {
    match params.text("recording")? {
        None => Ok(None),
        Some(scope @ ("all" | "chosen")) => Ok(Some(scope.to_owned())),
        Some(other) => Err(params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!("Invalid recording {:?}: all or chosen", clip(other)),
        )),
    }
}

fn registration(
    mgmt: &Mgmt,
    params: &Params,
    caller: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let missing = || {
        params.invalid(
            ErrorId::REGISTRATION_MISSING,
            "Missing required parameter: name, uid, node, role, api_port_rest, status",
        )
    };
    let (Some(name), Some(uid), Some(node), Some(role), Some(status)) = (
        params.text("name")?,
        params.text("uid")?,
        params.text("node")?,
        params.text("role")?,
        params.text("status")?,
    ) else {
        return Err(missing());
    };
    let port = params
        .unsigned::<u16>("api_port_rest")?
        .ok_or_else(missing)?;
    if role != Role::Dcn.as_str() && role != Role::Restapi.as_str() {
        return Err(params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!("Invalid role {:?}: ubdcc-dcn or ubdcc-restapi", clip(role)),
        ));
    }
    let pod = PodRecord {
        name: name.to_owned(),
        uid: uid.to_owned(),
        node: node.to_owned(),
        role: role.to_owned(),
        ip: address(params, caller)?,
        api_port_rest: port,
        last_seen: now(),
        status: status.to_owned(),
        ubldc_version: params.text("ubldc_version")?.map(str::to_owned),
        version: params.text("version")?.unwrap_or("").to_owned(),
        max_books: params.unsigned::<u32>("max_books")?,
        recording: recording(params)?,
    };
    mgmt.mutate(params.event(), false, |state| {
        if state.pods.contains_key(uid) {
            return Err(params.invalid(
                ErrorId::REGISTRATION_EXISTS,
                format!("A pod with the uid '{}' already exists!", clip(uid)),
            ));
        }
        tracing::info!(%name, %uid, %role, ip = %pod.ip, port, "pod registered");
        state.pods.insert(uid.to_owned(), pod);
        Ok(Map::new())
    })
}

fn sync(mgmt: &Mgmt, params: &Params, caller: Caller) -> Result<Map<String, Value>, ApiError> {
    let missing = || {
        params.invalid(
            ErrorId::SYNC_MISSING,
            "Missing required parameter: uid, api_port_rest",
        )
    };
    let uid = params.text("uid")?.ok_or_else(missing)?;
    let port = params
        .unsigned::<u16>("api_port_rest")?
        .ok_or_else(missing)?;
    let backup_timestamp = params.number("backup_timestamp")?;
    let ip = address(params, caller)?;
    if !mgmt.is_ready() {
        // Recovering: remember what this pod could give back; it re-registers later if the
        // recovered state does not know it.
        let offered = backup_timestamp.filter(|_| params.flag("offers_backup"));
        if let Some(timestamp) = offered.filter(|&t| !super::state::is_from_the_future(t, now())) {
            mgmt.lock().offers.push(BackupOffer {
                uid: uid.to_owned(),
                url: crate::client::pod_url(&ip, port),
                timestamp,
            });
        }
        return Ok(Map::new());
    }
    let reports = replica_reports(params)?;
    let unknown = || {
        params.invalid(
            ErrorId::SYNC_UNKNOWN_POD,
            format!("Registration for pod '{}' not found!", clip(uid)),
        )
    };
    let mut inner = mgmt.lock();
    let pod = inner.state.pods.get_mut(uid).ok_or_else(unknown)?;
    pod.last_seen = now();
    pod.ip = ip;
    if let Some(node) = params.text("node")? {
        node.clone_into(&mut pod.node);
    }
    let is_dcn = pod.role == DCN_ROLE;
    let statuses_changed = is_dcn && apply_reports(&mut inner.state, uid, &reports);
    let stale_copy = backup_timestamp != Some(inner.state.timestamp);
    let db = stale_copy.then(|| {
        let state = if is_dcn {
            serde_json::to_value(&inner.state)
        } else {
            serde_json::to_value(inner.state.without_secrets())
        };
        state.unwrap_or_default()
    });
    // A DCN reports the DCNs of its machine whose segments' writers are gone (dead processes);
    // the report rides on every heartbeat until their segments are swept, so only a pod still
    // listed is worth a change.
    let dead = params.list("dead_dcns")?.unwrap_or_default();
    let node = inner.state.pods.get(uid).map(|pod| pod.node.clone());
    let dead_listed = is_dcn
        && node.as_ref().is_some_and(|node| {
            inner
                .state
                .dcns()
                .any(|pod| pod.uid != uid && pod.node == *node && dead.contains(&pod.name))
        });
    drop(inner);
    if let (Some(node), true) = (node, dead_listed) {
        let evicted = mgmt.mutate(params.event(), false, |state| {
            Ok(state.evict_dead_dcns(&node, &dead, uid))
        })?;
        tracing::warn!(
            ?evicted,
            reporter = uid,
            "evicted DCNs whose segments' writers are gone; their replicas are re-placed"
        );
    } else if statuses_changed {
        // Statuses decide routing: every pod hears of them at once.
        mgmt.mutate(params.event(), false, |_| Ok(()))?;
    }
    let mut payload = Map::new();
    if let Some(db) = db {
        payload.insert("db".into(), db);
    }
    Ok(payload)
}

fn replica_reports(params: &Params) -> Result<Vec<ReplicaReport>, ApiError> {
    let Some(value) = params.body().and_then(|body| body.get("replicas")) else {
        return Ok(Vec::new());
    };
    if value.is_null() {
        return Ok(Vec::new());
    }
    serde_json::from_value(value.clone()).map_err(|error| {
        params.invalid(
            ErrorId::INVALID_PARAMETER,
            format!("Invalid parameter: replicas: {error}"),
        )
    })
}

/// Sets the statuses of `uid`'s replicas from its report (a replica it does not report is
/// `starting`: placed, not started yet); returns whether any status changed.
fn apply_reports(
    state: &mut super::state::ClusterState,
    uid: &str,
    reports: &[ReplicaReport],
) -> bool {
    let mut changed = false;
    for record in state.depthcaches.values_mut().flat_map(|m| m.values_mut()) {
        let Some(entry) = record.distribution.get_mut(uid) else {
            continue;
        };
        let report = reports
            .iter()
            .find(|r| r.exchange == record.exchange && r.market == record.market);
        let status = report.map_or(ReplicaStatus::Starting, |r| r.status);
        if entry.status != status {
            entry.status = status;
            changed = true;
        }
        if let Some(report) = report {
            entry.restarts = report.restarts;
            entry.last_restart_time = report.last_restart_time;
            entry.reason.clone_from(&report.reason);
            entry.snapshot_queue.clone_from(&report.snapshot_queue);
            entry.depth = report.depth;
            entry.trust = report.trust.clone().map(|trust| ReplicaTrust {
                top_hashes: report.top_hashes.clone(),
                ..trust
            });
            changed |= super::cross_check::compare_replicas(record, uid, now());
        } else {
            (entry.reason, entry.snapshot_queue, entry.depth) = (None, None, None);
        }
    }
    changed
}

fn cancellation(mgmt: &Mgmt, params: &Params, _: Caller) -> Result<Map<String, Value>, ApiError> {
    let [uid] = params.required(ErrorId::CANCELLATION_MISSING, ["uid"])?;
    mgmt.mutate(params.event(), false, |state| {
        let Some(pod) = state.pods.shift_remove(uid) else {
            return Err(params.invalid(
                ErrorId::CANCELLATION_UNKNOWN,
                format!("A pod with the uid '{}' does not exist!", clip(uid)),
            ));
        };
        tracing::info!(name = %pod.name, %uid, "pod left");
        Ok(Map::new())
    })
}

fn responsible_addresses(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [exchange, market] = params.required(ErrorId::ADDRESSES_MISSING, ["exchange", "market"])?;
    let state = mgmt.state();
    let addresses: Vec<Value> = crate::restapi::routing::candidates(&state, exchange, market)
        .unwrap_or_default()
        .into_iter()
        .map(|replica| {
            Value::from(vec![
                replica.ip.into(),
                replica.port.into(),
                Value::from(replica.pod_uid),
            ])
        })
        .collect();
    if addresses.is_empty() {
        return Err(params.invalid(
            ErrorId::NO_ADDRESSES,
            format!(
                "No addresses of responsible DCN for '{}' from '{}' found!",
                clip(market),
                clip(exchange)
            ),
        ));
    }
    let mut payload = Map::new();
    payload.insert("addresses".into(), addresses.into());
    Ok(payload)
}

fn update_distribution(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [exchange, market, pod_uid] = params.required(
        ErrorId::DISTRIBUTION_MISSING,
        ["exchange", "market", "pod_uid"],
    )?;
    let restart_time = params.number("last_restart_time").map_err(|e| {
        params.invalid(
            ErrorId::INVALID_RESTART_TIME,
            format!("Invalid last_restart_time value: {}", e.message()),
        )
    })?;
    let status = params
        .text("status")?
        .map(|text| {
            ReplicaStatus::parse(text).ok_or_else(|| {
                params.invalid(
                    ErrorId::INVALID_STATUS,
                    format!(
                        "Invalid status {:?}: starting, running or out_of_sync",
                        clip(text)
                    ),
                )
            })
        })
        .transpose()?;
    if restart_time.is_none() && status.is_none() {
        return Err(params.invalid(
            ErrorId::DISTRIBUTION_NOTHING,
            "Nothing to update! Missing parameter: last_restart_time, status",
        ));
    }
    mgmt.mutate(params.event(), false, |state| {
        let entry = state
            .depthcaches
            .get_mut(exchange)
            .and_then(|markets| markets.get_mut(market))
            .and_then(|record| record.distribution.get_mut(pod_uid))
            .ok_or_else(|| {
                params.invalid(
                    ErrorId::DISTRIBUTION_UNKNOWN,
                    format!(
                        "DepthCache '{} {} {}' not found!",
                        clip(exchange),
                        clip(market),
                        clip(pod_uid)
                    ),
                )
            })?;
        if let Some(time) = restart_time
            && time != entry.last_restart_time
        {
            entry.last_restart_time = time;
            entry.restarts += 1;
        }
        if let Some(status) = status {
            entry.status = status;
        }
        Ok(Map::new())
    })
}

fn assign_credentials(
    mgmt: &Mgmt,
    params: &Params,
    _: Caller,
) -> Result<Map<String, Value>, ApiError> {
    let [uid, group] = params.required(ErrorId::ASSIGN_MISSING, ["uid", "account_group"])?;
    if !super::public::ACCOUNT_GROUPS.contains(&group) {
        return Err(params.invalid(
            ErrorId::ASSIGN_INVALID_GROUP,
            format!("Invalid account_group '{}'", clip(group)),
        ));
    }
    let state = mgmt.state();
    let credential = state.credential_for(uid, group).map(|c| {
        serde_json::json!({"id": c.id, "account_group": c.account_group, "api_key": c.api_key, "api_secret": c.api_secret})
    });
    let mut payload = Map::new();
    payload.insert("credential".into(), credential.unwrap_or(Value::Null));
    Ok(payload)
}

/// mgmt's own `/ubdcc_mgmt_backup`: GET returns its state (internal: secrets included, behind the
/// cluster secret); a pushed body is acknowledged and ignored, as in the original.
fn backup(mgmt: &Mgmt, params: &Params, _: Caller) -> Result<Map<String, Value>, ApiError> {
    let mut payload = Map::new();
    if params.body().is_some() {
        payload.insert("message".into(), "The backup has been saved!".into());
        return Ok(payload);
    }
    let state = mgmt.state();
    payload.insert(
        "db".into(),
        serde_json::to_value(&state).unwrap_or_default(),
    );
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dcn_registers_recording_all_chosen_or_nothing_and_nothing_else() {
        let read = |query: &str| recording(&Params::from_parts("E", Some(query), b"").unwrap());
        assert_eq!(read("recording=all").unwrap().as_deref(), Some("all"));
        assert_eq!(read("recording=chosen").unwrap().as_deref(), Some("chosen"));
        assert_eq!(read("").unwrap(), None);
        let error = read("recording=everything").unwrap_err();
        assert_eq!(error.id(), ErrorId::INVALID_PARAMETER);
    }
}
