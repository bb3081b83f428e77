//! The cluster state mgmt keeps, with the original's records and key order
//! (`docs/upstream-api.md` §7), so backups and the public `db` views stay compatible.
//!
//! `depthcaches` keep insertion order (exchange, then market), because placement walks them in
//! that order, as the original's dicts did.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Unix time in seconds, as the original records it.
pub type Seconds = f64;

/// How far ahead of this machine's clock a state's timestamp may be (clocks of hosts disagree).
pub const MAX_CLOCK_SKEW: Seconds = 60.0;

/// `true` when `timestamp` lies further ahead of `now` than clocks can disagree, or is not a
/// number: a forged or corrupt state. Timestamps only move forward, so one such as 1e300 would
/// win every later comparison and freeze the cluster's state for good.
pub fn is_from_the_future(timestamp: Seconds, now: Seconds) -> bool {
    timestamp.is_nan() || timestamp > now + MAX_CLOCK_SKEW
}

/// Replica status, as ubdcc means it: `running` only while synced and serving (the original said
/// `running` as soon as a DCN accepted the book).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaStatus {
    /// Placed, not synced yet.
    Starting,
    /// Synced and serving.
    Running,
    /// Was synced, resyncing now (a value the original did not have).
    OutOfSync,
}

/// One replica of a DepthCache on one DCN (the original's DISTRIBUTION entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionEntry {
    /// When the entry was added.
    #[serde(rename = "CREATED_TIME")]
    pub created_time: Seconds,
    /// Last stream restart reported by the DCN (0 initially).
    #[serde(rename = "LAST_RESTART_TIME")]
    pub last_restart_time: Seconds,
    /// The DCN's uid (also the entry's key).
    #[serde(rename = "POD_UID")]
    pub pod_uid: String,
    /// Restarts reported.
    #[serde(rename = "RESTARTS")]
    pub restarts: u64,
    /// The DCN starts the replica only after this time.
    #[serde(rename = "SCHEDULED_START_TIME")]
    pub scheduled_start_time: Seconds,
    /// The replica's status.
    #[serde(rename = "STATUS")]
    pub status: ReplicaStatus,
    /// Why it is out of sync, as its DCN reports it (a key the original did not have; absent
    /// while synced).
    #[serde(rename = "REASON", default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its place in its DCN's snapshot queue while it waits for one (a key the original did not
    /// have; absent otherwise).
    #[serde(
        rename = "SNAPSHOT_QUEUE",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_queue: Option<SnapshotWait>,
    /// Levels per side the replica's book covers, as its DCN reports it (a key the original did
    /// not have; below 1 000 while a book that started shallow is deepened).
    #[serde(rename = "DEPTH", default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// What the replica's audits found (issue 16; keys the original did not have, absent until
    /// its DCN reports them).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<ReplicaTrust>,
}

/// What a replica's audits found, as its DCN reports them (issue 16), and the hashes of its top
/// levels it last reported, which mgmt compares between replicas (never sent on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTrust {
    /// When an audit last proved the replica's book against the exchange's (0: never).
    #[serde(rename = "VERIFIED_AT")]
    pub verified_at: Seconds,
    /// Audits run.
    #[serde(rename = "AUDITS")]
    pub audits: u32,
    /// Audits that found the book wrong (it was replaced by the exchange's, without a resync).
    #[serde(rename = "AUDIT_MISMATCHES")]
    pub audit_mismatches: u32,
    /// `(update id, hash of the top levels)` samples, newest last.
    #[serde(skip)]
    pub top_hashes: Vec<(u64, u64)>,
}

/// Two replicas of a DepthCache that hashed their top levels differently at the same update id:
/// one of them (or both) is wrong. Cleared when they agree again at a later id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaDisagreement {
    /// The update id both were at.
    #[serde(rename = "UPDATE_ID")]
    pub update_id: u64,
    /// The two replicas' DCN uids.
    #[serde(rename = "PODS")]
    pub pods: [String; 2],
    /// When mgmt noticed.
    #[serde(rename = "SINCE")]
    pub since: Seconds,
}

/// A replica waiting for a REST snapshot on its DCN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotWait {
    /// Its queue, most urgent first: `resync` (was synced), `new`, or `verify` (a quiet book's
    /// check, or a delisted market's recheck, from spare weight only).
    #[serde(rename = "KIND")]
    pub kind: String,
    /// 1 for the next snapshot its REST endpoint serves, 2 for the one after, and so on.
    #[serde(rename = "PLACE")]
    pub place: u32,
    /// When it has waited since.
    #[serde(rename = "SINCE")]
    pub since: Seconds,
    /// When its download is expected to start (if nothing more urgent arrives).
    #[serde(rename = "ETA")]
    pub eta: Seconds,
}

/// A DepthCache and its replicas (the original's DC record, keys in its served order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthCacheRecord {
    /// Creation time.
    #[serde(rename = "CREATED_TIME")]
    pub created_time: Seconds,
    /// Wanted replicas (0 = inactive).
    #[serde(rename = "DESIRED_QUANTITY")]
    pub desired_quantity: u32,
    /// Replicas by DCN uid.
    #[serde(rename = "DISTRIBUTION")]
    pub distribution: IndexMap<String, DistributionEntry>,
    /// Replicas added or removed by placement (purging departed DCNs does not count).
    #[serde(rename = "DISTRIBUTION_CHANGES")]
    pub distribution_changes: u64,
    /// Exchange string.
    #[serde(rename = "EXCHANGE")]
    pub exchange: String,
    /// When placement last changed the replicas (0 initially).
    #[serde(rename = "LAST_DISTRIBUTION_CHANGE")]
    pub last_distribution_change: Seconds,
    /// Resync a synced book after this many seconds.
    #[serde(rename = "REFRESH_INTERVAL")]
    pub refresh_interval: Option<u64>,
    /// Market.
    #[serde(rename = "MARKET")]
    pub market: String,
    /// Stream update interval in ms.
    #[serde(rename = "UPDATE_INTERVAL")]
    pub update_interval: Option<u32>,
    /// Replicas that disagree (issue 16; a key the original did not have, absent while they
    /// agree). Their DCNs audit them at once.
    #[serde(
        rename = "REPLICAS_DISAGREE",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub replicas_disagree: Option<ReplicaDisagreement>,
    /// Disagreements between its replicas mgmt has seen (issue 16; absent while none).
    #[serde(
        rename = "REPLICA_DISAGREEMENTS",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub replica_disagreements: u64,
    /// Recorded by the DCNs holding it that record chosen books (`record=true` at create,
    /// issue 17; a key the original did not have, absent while `false`).
    #[serde(rename = "RECORD", default, skip_serializing_if = "is_false")]
    pub record: bool,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

fn is_false(flag: &bool) -> bool {
    !flag
}

impl DepthCacheRecord {
    /// A new record without replicas.
    pub fn new(exchange: &str, market: &str, desired_quantity: u32, now: Seconds) -> Self {
        Self {
            created_time: now,
            desired_quantity,
            distribution: IndexMap::new(),
            distribution_changes: 0,
            exchange: exchange.to_owned(),
            last_distribution_change: 0.0,
            refresh_interval: None,
            market: market.to_owned(),
            update_interval: None,
            replicas_disagree: None,
            replica_disagreements: 0,
            record: false,
        }
    }
}

/// A pod (restapi or DCN) as mgmt knows it (the original's POD record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Name.
    #[serde(rename = "NAME")]
    pub name: String,
    /// Unique id.
    #[serde(rename = "UID")]
    pub uid: String,
    /// The machine it runs on (Kubernetes node uid, or the host's id).
    #[serde(rename = "NODE")]
    pub node: String,
    /// `ubdcc-restapi` or `ubdcc-dcn`.
    #[serde(rename = "ROLE")]
    pub role: String,
    /// Address as mgmt saw it.
    #[serde(rename = "IP")]
    pub ip: String,
    /// Port of its HTTP API.
    #[serde(rename = "API_PORT_REST")]
    pub api_port_rest: u16,
    /// Last heartbeat.
    #[serde(rename = "LAST_SEEN")]
    pub last_seen: Seconds,
    /// Always `running` in practice.
    #[serde(rename = "STATUS")]
    pub status: String,
    /// The engine's version (DCNs only; absent otherwise, as in the original).
    #[serde(
        rename = "UBLDC_VERSION",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub ubldc_version: Option<String>,
    /// The pod's version.
    #[serde(rename = "VERSION")]
    pub version: String,
    /// Books its shared-memory segment holds (DCNs; absent from older pods: unknown).
    #[serde(rename = "MAX_BOOKS", skip_serializing_if = "Option::is_none", default)]
    pub max_books: Option<u32>,
    /// What the DCN records (issue 17): `all` its books (`--record`), `chosen` ones
    /// (`--record-books`, the books created with `record=true`); absent: nothing.
    #[serde(rename = "RECORDING", skip_serializing_if = "Option::is_none", default)]
    pub recording: Option<String>,
}

/// The role string of a DCN pod.
pub const DCN_ROLE: &str = "ubdcc-dcn";

/// API credentials (the original's CRED record; the secret never leaves mgmt in public views).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// uuid4.
    #[serde(rename = "ID")]
    pub id: String,
    /// Account group (`binance.com`, `binance.tr`, ...).
    #[serde(rename = "ACCOUNT_GROUP")]
    pub account_group: String,
    /// API key.
    #[serde(rename = "API_KEY")]
    pub api_key: String,
    /// API secret, cleartext (internal form only).
    #[serde(rename = "API_SECRET")]
    pub api_secret: String,
    /// When it was added.
    #[serde(rename = "ADDED_TIMESTAMP")]
    pub added_timestamp: Seconds,
    /// DCN uids it is assigned to.
    #[serde(rename = "ASSIGNED_DCNS")]
    pub assigned_dcns: Vec<String>,
}

/// The public, masked view of a credential: no secret, the key shown as a preview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskedCredential {
    /// uuid4.
    pub id: String,
    /// Account group.
    pub account_group: String,
    /// When it was added.
    pub added_timestamp: Seconds,
    /// DCN uids it is assigned to.
    pub assigned_dcns: Vec<String>,
    /// The key, masked by the original's rule ([`mask_api_key`]).
    pub api_key_preview: String,
}

impl CredentialRecord {
    /// The public view.
    pub fn masked(&self) -> MaskedCredential {
        MaskedCredential {
            id: self.id.clone(),
            account_group: self.account_group.clone(),
            added_timestamp: self.added_timestamp,
            assigned_dcns: self.assigned_dcns.clone(),
            api_key_preview: mask_api_key(&self.api_key),
        }
    }
}

/// The original's masking rule: empty stays empty, up to 6 characters become all `*`, longer
/// keys show their first 4 and last 2 characters.
pub fn mask_api_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

/// The account group whose credentials serve an exchange (`docs/upstream-api.md` §8). COIN-M
/// is ours, not the original's: its keys are binance.com's, and its testnet is the futures
/// testnet (`testnet.binancefuture.com` serves USD-M and COIN-M with one set of keys).
pub fn account_group(exchange: &str) -> Option<&'static str> {
    Some(match exchange {
        "binance.com"
        | "binance.com-futures"
        | "binance.com-coin_futures"
        | "binance.com-margin"
        | "binance.com-isolated_margin"
        | "binance.com-vanilla-options" => "binance.com",
        "binance.com-testnet"
        | "binance.com-margin-testnet"
        | "binance.com-isolated_margin-testnet" => "binance.com-testnet",
        "binance.com-futures-testnet"
        | "binance.com-coin_futures-testnet"
        | "binance.com-vanilla-options-testnet" => "binance.com-futures-testnet",
        "binance.us" => "binance.us",
        "trbinance.com" => "binance.tr",
        _ => return None,
    })
}

/// mgmt's whole state, in the original's backup form (top-level keys sorted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Credentials by id.
    pub credentials: IndexMap<String, CredentialRecord>,
    /// DepthCaches by exchange, then market, in insertion order.
    pub depthcaches: IndexMap<String, IndexMap<String, DepthCacheRecord>>,
    /// Kubernetes nodes (empty outside Kubernetes).
    pub nodes: IndexMap<String, serde_json::Value>,
    /// Pods by uid.
    pub pods: IndexMap<String, PodRecord>,
    /// Time of the last change; a recovering mgmt takes the newest copy any node holds.
    pub timestamp: Seconds,
}

impl ClusterState {
    /// `true` when there is nothing to lose: no pod and no DepthCache (the original's trigger
    /// for recovering from a node's backup).
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.depthcaches.values().all(IndexMap::is_empty)
    }

    /// Every DepthCache, in placement order.
    pub fn depthcaches(&self) -> impl Iterator<Item = &DepthCacheRecord> {
        self.depthcaches.values().flat_map(IndexMap::values)
    }

    /// The DCN pods.
    pub fn dcns(&self) -> impl Iterator<Item = &PodRecord> {
        self.pods.values().filter(|pod| pod.role == DCN_ROLE)
    }

    /// Replicas the DCNs can still take, when every DCN told its capacity (`None`: no DCN yet,
    /// or one of unknown capacity — books then wait for room as before).
    pub fn free_slots(&self) -> Option<u64> {
        let mut free = 0u64;
        let mut any = false;
        for pod in self.dcns() {
            let capacity = u64::from(pod.max_books?);
            let held = self
                .depthcaches()
                .filter(|record| record.distribution.contains_key(&pod.uid))
                .count() as u64;
            free += capacity.saturating_sub(held);
            any = true;
        }
        any.then_some(free)
    }

    /// Removes pods not seen since `deadline`; returns their uids (the original evicts after 60 s,
    /// ubdcc after a few missed heartbeats).
    pub fn evict_silent_pods(&mut self, deadline: Seconds) -> Vec<String> {
        let gone: Vec<String> = self
            .pods
            .values()
            .filter(|pod| pod.last_seen < deadline)
            .map(|pod| pod.uid.clone())
            .collect();
        for uid in &gone {
            self.pods.shift_remove(uid);
        }
        gone
    }

    /// Removes the DCNs named `names` on machine `node` other than `reporter`: a DCN of that
    /// machine saw their segments' writers gone (the lock a writer holds is freed the moment its
    /// process dies), which is proof of death faster than any heartbeat timeout. Returns their
    /// uids.
    pub fn evict_dead_dcns(&mut self, node: &str, names: &[String], reporter: &str) -> Vec<String> {
        let dead: Vec<String> = self
            .dcns()
            .filter(|pod| pod.uid != reporter && pod.node == node && names.contains(&pod.name))
            .map(|pod| pod.uid.clone())
            .collect();
        for uid in &dead {
            self.pods.shift_remove(uid);
        }
        dead
    }

    /// Drops replicas and credential assignments of pods that are no longer known (not counted
    /// as distribution changes, as in the original).
    pub fn purge_departed(&mut self) {
        let pods = &self.pods;
        for record in self.depthcaches.values_mut().flat_map(IndexMap::values_mut) {
            record.distribution.retain(|uid, _| pods.contains_key(uid));
        }
        for credential in self.credentials.values_mut() {
            credential
                .assigned_dcns
                .retain(|uid| pods.contains_key(uid));
        }
    }
}

impl ClusterState {
    /// Marks a change: the timestamp moves to `now`, and always forward, so the newest copy of
    /// the state is recognisable by its timestamp alone.
    pub fn touch(&mut self, now: Seconds) {
        self.timestamp = now.max(self.timestamp + 1e-6);
    }

    /// A DepthCache.
    pub fn depthcache(&self, exchange: &str, market: &str) -> Option<&DepthCacheRecord> {
        self.depthcaches.get(exchange)?.get(market)
    }

    /// Removes a DepthCache (and its exchange when no DepthCache is left); `false` if unknown.
    pub fn remove_depthcache(&mut self, exchange: &str, market: &str) -> bool {
        let Some(markets) = self.depthcaches.get_mut(exchange) else {
            return false;
        };
        let removed = markets.shift_remove(market).is_some();
        if markets.is_empty() {
            self.depthcaches.shift_remove(exchange);
        }
        removed
    }

    /// A DepthCache's `get_depthcache_info` view: its record and, when it was created with
    /// `record=true` but a DCN holding it records no chosen book (no `--record-books` or
    /// `--record` directory), a `RECORD_WARNING` naming those DCNs. The book runs all the same.
    pub fn depthcache_info(&self, record: &DepthCacheRecord) -> serde_json::Value {
        let mut info = serde_json::to_value(record).unwrap_or_default();
        let unrecorded: Vec<&str> = record
            .distribution
            .keys()
            .filter_map(|uid| self.pods.get(uid))
            .filter(|pod| record.record && pod.recording.is_none())
            .map(|pod| pod.name.as_str())
            .collect();
        if let (false, Some(fields)) = (unrecorded.is_empty(), info.as_object_mut()) {
            let warning = format!(
                "record=true, but not recorded on DCN(s) {}: started without a recording \
                 directory (--record-books DIR)",
                unrecorded.join(", ")
            );
            fields.insert("RECORD_WARNING".into(), warning.into());
        }
        info
    }

    /// The public form (`get_cluster_info.db`, `/test`): credentials as the masked list.
    pub fn public_view(&self) -> serde_json::Value {
        let credentials: Vec<MaskedCredential> = self
            .credentials
            .values()
            .map(CredentialRecord::masked)
            .collect();
        serde_json::json!({
            "credentials": credentials,
            "depthcaches": self.depthcaches,
            "nodes": self.nodes,
            "pods": self.pods,
            "timestamp": self.timestamp,
        })
    }

    /// A copy without API secrets (for pods that route but never download: restapi).
    pub fn without_secrets(&self) -> Self {
        let mut copy = self.clone();
        for credential in copy.credentials.values_mut() {
            credential.api_secret.clear();
        }
        copy
    }
}

impl ReplicaStatus {
    /// Parses the wire form (`starting`, `running`, `out_of_sync`).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "starting" => Self::Starting,
            "running" => Self::Running,
            "out_of_sync" => Self::OutOfSync,
            _ => return None,
        })
    }
}

impl ClusterState {
    /// Spreads each account group's credentials over every DCN: the DCN uids, sorted, are dealt
    /// round-robin over the group's keys in the order they were added (`docs/upstream-api.md`
    /// §8), so the REST weight of keyed requests is shared between keys. Returns `true` when an
    /// assignment changed. A group without keys leaves its DCNs on public limits.
    pub fn rebalance_credentials(&mut self) -> bool {
        let mut dcns: Vec<String> = self.dcns().map(|pod| pod.uid.clone()).collect();
        dcns.sort();
        let mut groups: IndexMap<String, Vec<String>> = IndexMap::new();
        for credential in self.credentials.values() {
            groups
                .entry(credential.account_group.clone())
                .or_default()
                .push(credential.id.clone());
        }
        let mut changed = false;
        for ids in groups.values() {
            for (position, id) in ids.iter().enumerate() {
                let assigned: Vec<String> = dcns
                    .iter()
                    .skip(position)
                    .step_by(ids.len())
                    .cloned()
                    .collect();
                if let Some(credential) = self.credentials.get_mut(id)
                    && credential.assigned_dcns != assigned
                {
                    credential.assigned_dcns = assigned;
                    changed = true;
                }
            }
        }
        changed
    }

    /// The credential a DCN should use for `account_group`, if the group has keys.
    pub fn credential_for(&self, dcn: &str, account_group: &str) -> Option<&CredentialRecord> {
        self.credentials.values().find(|c| {
            c.account_group == account_group && c.assigned_dcns.iter().any(|uid| uid == dcn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_masked_like_the_original() {
        assert_eq!(mask_api_key(""), "");
        assert_eq!(mask_api_key("abc"), "***");
        assert_eq!(mask_api_key("abcdef"), "******");
        assert_eq!(mask_api_key("abcdefg"), "abcd*fg");
        assert_eq!(mask_api_key("0123456789ABCDEF"), "0123**********EF");
    }

    #[test]
    fn every_exchange_string_has_its_account_group() {
        assert_eq!(
            account_group("binance.com-vanilla-options"),
            Some("binance.com")
        );
        assert_eq!(
            account_group("binance.com-isolated_margin-testnet"),
            Some("binance.com-testnet")
        );
        assert_eq!(
            account_group("binance.com-vanilla-options-testnet"),
            Some("binance.com-futures-testnet")
        );
        assert_eq!(
            account_group("binance.com-coin_futures"),
            Some("binance.com")
        );
        assert_eq!(
            account_group("binance.com-coin_futures-testnet"),
            Some("binance.com-futures-testnet")
        );
        assert_eq!(account_group("trbinance.com"), Some("binance.tr"));
        assert_eq!(account_group("kraken.com"), None);
        for exchange in ubdcc_engine::EXCHANGES {
            let group = account_group(exchange.as_str());
            assert!(
                group.is_some_and(|group| crate::mgmt::public::ACCOUNT_GROUPS.contains(&group)),
                "{exchange}: {group:?}"
            );
        }
    }

    #[test]
    fn records_serialize_with_the_original_keys_in_the_original_order() {
        let mut record = DepthCacheRecord::new("binance.com", "BTCUSDT", 1, 1795237811.5);
        record.distribution.insert(
            "UID_A".into(),
            DistributionEntry {
                created_time: 1.0,
                last_restart_time: 0.0,
                pod_uid: "UID_A".into(),
                restarts: 0,
                scheduled_start_time: 1.0,
                status: ReplicaStatus::Running,
                reason: None,
                snapshot_queue: None,
                depth: None,
                trust: None,
            },
        );
        let text = serde_json::to_string(&record).unwrap();
        let keys = [
            "CREATED_TIME",
            "DESIRED_QUANTITY",
            "DISTRIBUTION",
            "DISTRIBUTION_CHANGES",
            "EXCHANGE",
            "LAST_DISTRIBUTION_CHANGE",
            "REFRESH_INTERVAL",
            "MARKET",
            "UPDATE_INTERVAL",
        ];
        let positions: Vec<usize> = keys
            .iter()
            .map(|key| {
                text.find(&format!("\"{key}\""))
                    .unwrap_or_else(|| panic!("{key}: {text}"))
            })
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert!(text.contains(r#""STATUS":"running""#), "{text}");
        assert!(text.contains(r#""REFRESH_INTERVAL":null"#), "{text}");
        // And back.
        assert_eq!(
            serde_json::from_str::<DepthCacheRecord>(&text).unwrap(),
            record
        );
    }

    #[test]
    fn the_public_credential_view_never_holds_the_secret() {
        let credential = CredentialRecord {
            id: "id".into(),
            account_group: "binance.com".into(),
            api_key: "KEY0123456789".into(),
            api_secret: "TOPSECRET".into(),
            added_timestamp: 1.0,
            assigned_dcns: vec!["dcn".into()],
        };
        let text = serde_json::to_string(&credential.masked()).unwrap();
        assert!(
            !text.contains("TOPSECRET") && !text.contains("KEY0123456789"),
            "{text}"
        );
        assert!(
            text.contains(r#""api_key_preview":"KEY0*******89""#),
            "{text}"
        );
    }

    #[test]
    fn dcns_seen_dead_on_the_reporters_machine_are_evicted_and_no_other() {
        let mut state = ClusterState::default();
        for (uid, name, node) in [
            ("a", "dcn-1", "n"),
            ("b", "dcn-2", "n"),
            ("c", "dcn-2", "m"),
        ] {
            let pod = PodRecord {
                name: name.into(),
                uid: uid.into(),
                node: node.into(),
                role: DCN_ROLE.into(),
                ip: "127.0.0.1".into(),
                api_port_rest: 1,
                last_seen: 100.0,
                status: "running".into(),
                ubldc_version: None,
                version: "0".into(),
                max_books: None,
                recording: None,
            };
            state.pods.insert(uid.into(), pod);
        }
        let dead = ["dcn-2".to_owned(), "dcn-1".to_owned()];
        // dcn-2 on machine n only (c is another machine's dcn-2), never the reporter itself.
        assert_eq!(state.evict_dead_dcns("n", &dead, "a"), ["b"]);
        assert_eq!(state.pods.keys().collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn silent_pods_are_evicted_and_their_replicas_purged() {
        let mut state = ClusterState::default();
        for (uid, seen) in [("a", 100.0), ("b", 10.0)] {
            state.pods.insert(
                uid.into(),
                PodRecord {
                    name: uid.into(),
                    uid: uid.into(),
                    node: "n".into(),
                    role: DCN_ROLE.into(),
                    ip: "127.0.0.1".into(),
                    api_port_rest: 1,
                    last_seen: seen,
                    status: "running".into(),
                    ubldc_version: None,
                    version: "0".into(),
                    max_books: None,
                    recording: None,
                },
            );
        }
        let mut record = DepthCacheRecord::new("binance.com", "X", 2, 0.0);
        for uid in ["a", "b"] {
            record.distribution.insert(
                uid.into(),
                DistributionEntry {
                    created_time: 0.0,
                    last_restart_time: 0.0,
                    pod_uid: uid.into(),
                    restarts: 0,
                    scheduled_start_time: 0.0,
                    status: ReplicaStatus::Running,
                    reason: None,
                    snapshot_queue: None,
                    depth: None,
                    trust: None,
                },
            );
        }
        state
            .depthcaches
            .entry("binance.com".into())
            .or_default()
            .insert("X".into(), record);
        assert_eq!(state.evict_silent_pods(50.0), ["b"]);
        state.purge_departed();
        let record = &state.depthcaches["binance.com"]["X"];
        assert_eq!(record.distribution.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            record.distribution_changes, 0,
            "purging is not a distribution change"
        );
    }

    fn credential(id: &str, group: &str) -> CredentialRecord {
        CredentialRecord {
            id: id.into(),
            account_group: group.into(),
            api_key: format!("key-{id}"),
            api_secret: "s".into(),
            added_timestamp: 0.0,
            assigned_dcns: vec![],
        }
    }

    fn dcn(uid: &str) -> PodRecord {
        PodRecord {
            name: uid.into(),
            uid: uid.into(),
            node: "n".into(),
            role: DCN_ROLE.into(),
            ip: "127.0.0.1".into(),
            api_port_rest: 1,
            last_seen: 0.0,
            status: "running".into(),
            ubldc_version: None,
            version: "0".into(),
            max_books: None,
            recording: None,
        }
    }

    #[test]
    fn credentials_are_dealt_round_robin_over_sorted_dcns_per_group() {
        let mut state = ClusterState::default();
        for uid in ["d3", "d1", "d2"] {
            state.pods.insert(uid.into(), dcn(uid));
        }
        for (id, group) in [
            ("k1", "binance.com"),
            ("k2", "binance.com"),
            ("tr", "binance.tr"),
        ] {
            state.credentials.insert(id.into(), credential(id, group));
        }
        assert!(state.rebalance_credentials());
        assert_eq!(state.credentials["k1"].assigned_dcns, ["d1", "d3"]);
        assert_eq!(state.credentials["k2"].assigned_dcns, ["d2"]);
        assert_eq!(
            state.credentials["tr"].assigned_dcns,
            ["d1", "d2", "d3"],
            "one key serves every DCN"
        );
        assert!(!state.rebalance_credentials(), "nothing changes twice");
        assert_eq!(
            state
                .credential_for("d2", "binance.com")
                .map(|c| c.id.as_str()),
            Some("k2")
        );
        assert!(
            state.credential_for("d2", "binance.us").is_none(),
            "no key: public limits"
        );
        // A DCN leaves: its share moves.
        state.pods.shift_remove("d1");
        state.purge_departed();
        assert!(state.rebalance_credentials());
        assert_eq!(state.credentials["k1"].assigned_dcns, ["d2"]);
        assert_eq!(state.credentials["k2"].assigned_dcns, ["d3"]);
    }

    #[test]
    fn a_recorded_books_info_names_the_dcns_holding_it_that_record_nothing() {
        let mut state = ClusterState::default();
        for (uid, recording) in [("a", Some("chosen")), ("b", None), ("c", Some("all"))] {
            let mut pod = dcn(uid);
            pod.name = format!("dcn-{uid}");
            pod.recording = recording.map(str::to_owned);
            state.pods.insert(uid.into(), pod);
        }
        let mut record = DepthCacheRecord::new("binance.com", "X", 3, 0.0);
        for uid in ["a", "b", "c"] {
            let mut entry = state_entry(uid);
            entry.status = ReplicaStatus::Running;
            record.distribution.insert(uid.into(), entry);
        }
        let info = state.depthcache_info(&record);
        assert!(info.get("RECORD").is_none(), "absent while false: {info}");
        assert!(info.get("RECORD_WARNING").is_none(), "{info}");
        record.record = true;
        let info = state.depthcache_info(&record);
        assert_eq!(info["RECORD"], true);
        let warning = info["RECORD_WARNING"].as_str().expect("a warning");
        assert!(warning.contains("dcn-b"), "{warning}");
        assert!(
            !warning.contains("dcn-a") && !warning.contains("dcn-c"),
            "{warning}"
        );
        // Kept through the state's own form.
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<DepthCacheRecord>(&text).unwrap(),
            record
        );
    }

    fn state_entry(uid: &str) -> DistributionEntry {
        DistributionEntry {
            created_time: 0.0,
            last_restart_time: 0.0,
            pod_uid: uid.into(),
            restarts: 0,
            scheduled_start_time: 0.0,
            status: ReplicaStatus::Starting,
            reason: None,
            snapshot_queue: None,
            depth: None,
            trust: None,
        }
    }
}
