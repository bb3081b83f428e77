//! The DepthCache node's data plane: exact order books kept in sync with Binance by its official
//! rules, and published into shared memory.
//!
//! # Brief overview
//! - [`OrderBook`]: both sides as exact mantissas, updated in place and trimmed to the snapshot
//!   depth after every event (the numeric orphan rule).
//! - [`BookSync`]: Binance's sync rules per [`SyncFamily`] as a pure state machine, stepped with
//!   events and snapshots, answering what to do with each.
//! - [`Exchange`]: the original's exchange strings with Binance's endpoints, limits and stream
//!   names ([`ExchangeSpec`]), and [`EndpointOverrides`] that point one at the simulator.
//! - [`MarketDirectory`]: which markets an exchange lists ([`Listing`], from `exchangeInfo`,
//!   cached), so mgmt refuses a create of a market that does not exist.
//! - [`binance::wire`]: Binance's depth messages, parsed with simd-json without copying.
//! - [`DepthCache`]: one book, its [`BookSync`] and its shared-memory slot, published through a
//!   [`Publisher`] after every applied event; what it buffers is bounded per book and per node
//!   ([`BufferLimits`], [`BufferBudget`]).
//! - [`WeightBudget`] and [`SnapshotScheduler`]: REST snapshots within each host's weight budget,
//!   honouring the used-weight headers and 429/418 `Retry-After`, out-of-sync and new books
//!   before verifications ([`SnapshotKind`]).
//! - [`StreamConnection`]: one WebSocket multiplexing many books' diff streams, with paced
//!   `SUBSCRIBE`, pings, a silence watchdog and reconnect with backoff.
//! - [`PeerDirectory`] and [`SeedPlan`]: a book starts from a synced replica's copy (this
//!   host's shared memory, or a peer DCN over HTTP at [`BOOK_COPY_PATH`]) before it pays for a
//!   REST snapshot; a book started shallow is deepened beside itself without leaving sync.
//! - [`Node`]: the DCN's data plane: books, connections and the scheduler driven by one loop that
//!   also keeps the segment's heartbeat; controlled through a [`NodeHandle`].
//!
//! Data flows one way: exchange → connection / scheduler → node → [`DepthCache`] → shared memory.
#![forbid(unsafe_code)]

mod ban_board;
pub mod binance;
mod book;
mod buffer_budget;
mod clock;
mod connection;
mod deepening;
mod depth_cache;
mod exchange;
mod market_directory;
mod node;
mod peer_seed;
mod publish;
mod snapshot;
mod sync;
mod tls;
mod weight_budget;

pub use book::{BookError, OrderBook};
pub use buffer_budget::BufferBudget;
pub use clock::unix_now_ns;
pub use connection::{ConnectionCommand, ConnectionConfig, StreamConnection, StreamEvent};
pub use depth_cache::{
    BUFFER_BYTES_PER_BOOK, BUFFER_BYTES_PER_NODE, BUFFER_CAPACITY, BufferLimits, DepthCache,
    DepthCacheError, NextStep,
};
pub use exchange::{
    EXCHANGES, EndpointOverrides, Endpoints, Exchange, ExchangeError, ExchangeSpec, is_valid_symbol,
};
pub use market_directory::{DirectoryError, Listing, MarketDirectory, MarketStatus};
pub use node::{BookReport, BookSpec, Node, NodeCommand, NodeConfig, NodeError, NodeHandle};
pub use peer_seed::{BOOK_COPY_PATH, DEPTH_HEADER, PeerDirectory, SeedPlan, SeedSource, SeedStats};
pub use publish::Publisher;
pub use snapshot::{
    ApiKeys, BookId, SHALLOW_LIMIT, SNAPSHOT_LIMIT, Snapshot, SnapshotConfig, SnapshotError,
    SnapshotKind, SnapshotOutcome, SnapshotRequest, SnapshotScheduler, SnapshotStats, WaitingBoard,
    WaitingBook, WeightShare,
};
pub use sync::{
    BookSync, DiffEvent, EventStep, GapRule, SnapshotStep, SyncError, SyncFamily, SyncState,
    UpdateIds,
};
pub use weight_budget::{Permit, ResponseWeight, WeightBudget};
