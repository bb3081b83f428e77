//! The DepthCache node's data plane: exact order books kept in sync with Binance by its official
//! rules, and published into shared memory.
//!
//! # What is public, and why
//! The `ubdcc` binary runs a DCN through [`Node`] and drives it with a [`NodeHandle`]; the
//! gateway's agent applies mgmt's state through that handle; tests and benches build books
//! directly. So the surface is:
//! - [`Node`], [`NodeConfig`], [`NodeHandle`], [`BookSpec`], [`BookReport`], [`NodeError`]: a DCN
//!   as a whole — books, stream connections, the snapshot scheduler and the segment, driven by
//!   one loop; [`SnapshotStats`] (with [`WaitingBook`] and [`SnapshotKind`]) and [`SeedStats`] are
//!   what it counts, [`PeerDirectory`] and [`SeedPlan`] where it finds peers to copy books from.
//! - [`Exchange`] (with its [`ExchangeSpec`] and [`EXCHANGES`]) and [`EndpointOverrides`]: the
//!   original's exchange strings with Binance's endpoints, limits and stream names, pointed at
//!   the simulator in tests; [`MarketDirectory`]: which markets an exchange lists.
//! - [`DepthCache`], [`OrderBook`], [`Publisher`], [`Snapshot`]: one book, exact and published,
//!   stepped by hand (tests and benches measure them without a network).
//! - [`binance::wire`]: Binance's depth messages, parsed with simd-json without copying.
//! - [`Recorder`] (with [`RecordConfig`], [`Record`], [`RecordKind`]): raw frames, starting books
//!   and sync markers appended to zstd files for `ubdcc replay` and `ubdcc export`
//!   (`docs/recording.md`).
//!
//! Everything else — the sync state machine, the scheduler and its weight budgets, the stream
//! connections, the ban board, peer copies and deepening — is how a node works, and stays inside.
//! The rules those parts implement are in `docs/binance-protocol.md`.
//!
//! Data flows one way: exchange → connection / scheduler → node → [`DepthCache`] → shared memory.
#![forbid(unsafe_code)]

mod audit;
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
mod record;
mod snapshot;
mod sync;
mod tls;
mod weight_budget;

pub use book::{BookError, OrderBook};
pub use buffer_budget::BufferBudget;
pub use clock::unix_now_ns;
pub use depth_cache::{
    AuditStep, BUFFER_BYTES_PER_BOOK, BUFFER_BYTES_PER_NODE, BufferLimits, DepthCache,
    DepthCacheError, NextStep,
};
pub use exchange::{
    EXCHANGES, EndpointOverrides, Endpoints, Exchange, ExchangeError, ExchangeSpec, is_valid_symbol,
};
pub use market_directory::{DirectoryError, Listing, MarketDirectory, MarketStatus};
pub use node::{BookReport, BookSpec, Node, NodeCommand, NodeConfig, NodeError, NodeHandle};
pub use peer_seed::{BOOK_COPY_PATH, DEPTH_HEADER, PeerDirectory, SeedPlan, SeedStats};
pub use publish::Publisher;
pub use record::{
    FLUSH_INTERVAL, Record, RecordConfig, RecordKind, RecordScope, Recorder, RecorderThread,
    starting_book,
};
pub use snapshot::{
    SHALLOW_LIMIT, SNAPSHOT_LIMIT, Snapshot, SnapshotError, SnapshotKind, SnapshotStats,
    WaitingBook,
};
pub use sync::{DiffEvent, SyncError, SyncFamily, UpdateIds};
