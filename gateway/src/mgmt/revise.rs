//! mgmt's background work.
//!
//! - **Recovery.** After a start, pods keep syncing; those holding a complete state copy (DCNs)
//!   offer its timestamp. When the recovery window ends, the newest of mgmt's own file and
//!   every offered copy wins (the original took whichever pod synced first). Pods of the
//!   recovered state get one pod timeout to prove they are alive.
//! - **Revise.** Every revise interval: evict pods silent for longer than the pod timeout, drop
//!   their replicas and credential assignments, place replacements (all in one
//!   [`Mgmt::mutate`]).
//! - **Push.** After every change, the state goes to every pod (DCNs with secrets, restapi
//!   without), and non-durable changes are written to the state file, coalesced.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::state::{ClusterState, DCN_ROLE, is_from_the_future};
use super::{Mgmt, now};

/// Changes closer together than this go out in one push.
const COALESCE: Duration = Duration::from_millis(50);

/// A pod that does not take a push within this time gets the state with its next sync instead.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs recovery, then revises every interval, until the task is dropped.
pub async fn run_revise(mgmt: Arc<Mgmt>) {
    let remaining = mgmt
        .config
        .recovery_window
        .saturating_sub(mgmt.started.elapsed());
    tokio::time::sleep(remaining).await;
    recover(&mgmt).await;
    let mut ticker = tokio::time::interval(mgmt.config.revise_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        revise(&mgmt);
    }
}

/// Evicts silent pods and re-places their replicas.
fn revise(mgmt: &Mgmt) {
    let deadline = now() - mgmt.config.pod_timeout.as_secs_f64();
    let silent = {
        let inner = mgmt.lock();
        inner
            .state
            .pods
            .values()
            .any(|pod| pod.last_seen < deadline)
    };
    if !silent {
        return;
    }
    let evicted = mgmt.mutate("REVISE", false, |state| {
        Ok(state.evict_silent_pods(deadline))
    });
    if let Ok(uids) = evicted {
        tracing::warn!(
            ?uids,
            "evicted pods that stopped syncing; their replicas are re-placed"
        );
    }
}

/// Picks the newest state among mgmt's own and the offered copies, then opens the gate.
async fn recover(mgmt: &Mgmt) {
    let (own, mut offers) = {
        let mut inner = mgmt.lock();
        (inner.state.timestamp, std::mem::take(&mut inner.offers))
    };
    // One offer per pod (its newest), newest first.
    offers.sort_by(|a, b| a.uid.cmp(&b.uid).then(b.timestamp.total_cmp(&a.timestamp)));
    offers.dedup_by(|later, first| later.uid == first.uid);
    offers.sort_by(|a, b| b.timestamp.total_cmp(&a.timestamp));
    let mut recovered: Option<(ClusterState, String)> = None;
    for offer in offers.iter().filter(|offer| offer.timestamp > own) {
        match fetch_backup(mgmt, &offer.url).await {
            Ok(state) if is_from_the_future(state.timestamp, now()) => {
                tracing::warn!(pod = %offer.uid, timestamp = state.timestamp, "refused a state copy from the future");
            }
            Ok(state) if state.timestamp > own => {
                recovered = Some((state, offer.uid.clone()));
                break;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(pod = %offer.uid, %error, "cannot fetch its state copy"),
        }
    }
    let mut inner = mgmt.lock();
    if let Some((mut state, uid)) = recovered {
        tracing::info!(pod = %uid, timestamp = state.timestamp, "recovered the newest state from a pod");
        let now = now();
        for pod in state.pods.values_mut() {
            pod.last_seen = now;
        }
        inner.state = state;
    } else {
        tracing::info!(
            timestamp = own,
            offers = offers.len(),
            "kept mgmt's own state (nothing newer offered)"
        );
        let now = now();
        for pod in inner.state.pods.values_mut() {
            pod.last_seen = now;
        }
    }
    inner.ready = true;
    drop(inner);
    // Persist and push what was recovered; placement catches up with the pods alive now.
    mgmt.mutate("RECOVERY", true, |_| Ok(())).ok();
}

async fn fetch_backup(mgmt: &Mgmt, url: &str) -> Result<ClusterState, String> {
    let url = format!("{url}/ubdcc_mgmt_backup");
    let fetch = mgmt.client.get_json(&url);
    let mut answer = tokio::time::timeout(PUSH_TIMEOUT, fetch)
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let db = answer.remove("db").ok_or("the answer has no db")?;
    serde_json::from_value(db).map_err(|e| e.to_string())
}

/// Sends the state to every pod after each change, and stores non-durable changes.
pub async fn run_pusher(mgmt: Arc<Mgmt>) {
    let mut changes = mgmt.changes.subscribe();
    while changes.changed().await.is_ok() {
        tokio::time::sleep(COALESCE).await;
        changes.mark_unchanged();
        let state = mgmt.state();
        if let Some(file) = &mgmt.config.state_file
            && let Err(error) = file.save(&state)
        {
            tracing::error!(%error, "storing the state failed");
        }
        push(&mgmt, &state).await;
    }
}

/// Sends `state` to every pod at once and waits for all of them (at most [`PUSH_TIMEOUT`]), so
/// there is never more than one push in flight per pod; changes meanwhile go out next round.
async fn push(mgmt: &Mgmt, state: &ClusterState) {
    let mut pushes = tokio::task::JoinSet::new();
    let full = Bytes::from(serde_json::to_vec(state).unwrap_or_default());
    let public = Bytes::from(serde_json::to_vec(&state.without_secrets()).unwrap_or_default());
    for pod in state.pods.values() {
        let body = if pod.role == DCN_ROLE {
            full.clone()
        } else {
            public.clone()
        };
        let url = format!(
            "{}/ubdcc_mgmt_backup",
            crate::client::pod_url(&pod.ip, pod.api_port_rest)
        );
        let client = mgmt.client.clone();
        pushes.spawn(async move {
            // A pod that misses a push gets the state with its next sync.
            match tokio::time::timeout(PUSH_TIMEOUT, client.post_json(&url, body)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "push failed"),
                Err(_) => tracing::debug!(%url, "push timed out"),
            }
        });
    }
    while pushes.join_next().await.is_some() {}
}
