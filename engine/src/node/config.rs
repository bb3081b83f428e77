//! What a node is told: its settings ([`NodeConfig`]) and the books it keeps ([`BookSpec`]).

use std::collections::HashMap;
use std::time::Duration;

use ubdcc_shm::DEFAULT_SEGMENT_MODE;

use crate::depth_cache::{BUFFER_BYTES_PER_BOOK, BUFFER_BYTES_PER_NODE};
use crate::exchange::{EndpointOverrides, Exchange};
use crate::peer_seed::PeerDirectory;
use crate::snapshot::SNAPSHOT_LIMIT;

/// How often at most a book is audited by default: the floor (50 books on one DCN each
/// audited within a minute); with many books spare weight sets the pace, not this.
pub const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Cluster name (for the segment name).
    pub cluster: String,
    /// This DCN's name (for the segment name).
    pub dcn: String,
    /// Books the segment can hold.
    pub max_books: u32,
    /// Levels per side in the segment.
    pub levels_per_side: u32,
    /// Permission bits of the segment (default `0o600`: only this user reads it).
    pub segment_mode: u32,
    /// Group to give the segment to, so that with mode `0o640` its members can read it.
    pub segment_group: Option<u32>,
    /// Endpoint overrides (the simulator).
    pub endpoints: EndpointOverrides,
    /// Share of each REST host's weight limit this node may use.
    pub weight_share: f64,
    /// API keys per exchange (TR needs one for snapshots).
    pub api_keys: HashMap<Exchange, String>,
    /// Interval of the connections' own pings.
    pub ping_interval: Duration,
    /// A connection without any data message for this long is reconnected.
    pub silence_timeout: Duration,
    /// Longest reconnect backoff.
    pub max_backoff: Duration,
    /// Replace each stream connection (make-before-break) after this long; Binance cuts at 24 h.
    pub max_connection_lifetime: Duration,
    /// A synced book whose stream brings nothing for this long is verified with a snapshot.
    pub book_silence: Duration,
    /// Bytes of events one book may buffer while it waits for a snapshot (the newest are kept).
    pub buffer_bytes_per_book: usize,
    /// Bytes of events all books of the node may buffer together; a book that finds none left
    /// drops its buffer, out of sync with reason "event buffer overflow".
    pub buffer_bytes_per_node: usize,
    /// Levels a book's first snapshot (and a resync's) asks for. Below [`SNAPSHOT_LIMIT`] a
    /// book starts shallow — cheaper in weight, served at once within that depth — and is
    /// deepened to [`SNAPSHOT_LIMIT`] later from spare weight or a peer.
    pub initial_depth: u32,
    /// Start books from synced replicas on other DCNs (this host's shared memory, then the
    /// peers of [`NodeConfig::peers`]) before paying for a REST snapshot.
    pub peer_seeding: bool,
    /// The peers of each book and the credentials for them, kept current by the DCN's agent.
    pub peers: PeerDirectory,
    /// Audit each synced book against a REST snapshot at most this often, from spare weight only
    /// (issue 16; `None`: never). A book's first audit comes one interval after it synced.
    pub audit_interval: Option<Duration>,
    /// Record raw frames, starting books and sync markers (`ubdcc dcn --record DIR`).
    pub record: Option<crate::record::Recorder>,
    /// Which books [`NodeConfig::record`] records: all (`--record`), or only those whose
    /// [`BookSpec::record`] is set (`--record-books`, the API's `record=true`).
    pub record_scope: crate::record::RecordScope,
}

impl NodeConfig {
    /// Defaults for `cluster` / `dcn`: 1024 books of 1000 levels in an owner-only segment, half
    /// of each host's weight, pings every 10 s, a book verified after 60 s of silence, a
    /// connection replaced after 5 minutes without any data.
    pub fn new(cluster: impl Into<String>, dcn: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            dcn: dcn.into(),
            max_books: 1024,
            levels_per_side: 1000,
            segment_mode: DEFAULT_SEGMENT_MODE,
            segment_group: None,
            endpoints: EndpointOverrides::default(),
            weight_share: 0.5,
            api_keys: HashMap::new(),
            ping_interval: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(300),
            max_backoff: Duration::from_secs(30),
            max_connection_lifetime: crate::connection::DEFAULT_MAX_LIFETIME,
            book_silence: Duration::from_secs(60),
            buffer_bytes_per_book: BUFFER_BYTES_PER_BOOK,
            buffer_bytes_per_node: BUFFER_BYTES_PER_NODE,
            initial_depth: SNAPSHOT_LIMIT,
            peer_seeding: true,
            peers: PeerDirectory::default(),
            audit_interval: Some(DEFAULT_AUDIT_INTERVAL),
            record: None,
            record_scope: crate::record::RecordScope::All,
        }
    }
}

/// A book to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSpec {
    /// The exchange.
    pub exchange: Exchange,
    /// The market symbol, as the exchange spells it (`BTCUSDT`).
    pub symbol: String,
    /// The stream's update interval in ms (`None`: the original's default).
    pub update_interval_ms: Option<u32>,
    /// Resync a synced book after this long (`None`: never).
    pub refresh_interval: Option<Duration>,
    /// Record this book (the API's `record=true`): what a node whose
    /// [`NodeConfig::record_scope`] is [`crate::record::RecordScope::Chosen`] records.
    pub record: bool,
}
