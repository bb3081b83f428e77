//! ubdcc's shared-memory book segments: the `#[repr(C)]` format, its seqlock writer and the
//! lock-free readers that let any process on the host read an order book in nanoseconds.
//!
//! # Brief overview
//! - A DCN owns one segment, `/dev/shm/ubdcc.<cluster>.<dcn>`, through a [`SegmentWriter`]: it
//!   adds books ([`SegmentWriter::add_book`]), publishes every new version of a book in one seqlock
//!   section — whole ([`SegmentWriter::publish`]) or as the edits since the last version
//!   ([`SegmentWriter::publish_edits`], cost O(levels changed)) — and keeps a heartbeat.
//! - Readers open a [`SegmentReader`] per segment, or a [`ClusterReader`] that finds a book by
//!   exchange and market in any segment of a cluster. Readers map segments read-only and never
//!   write to them.
//! - Prices and quantities are exact decimals ([`Decimal`]); readers get `f64` [`Level`]s equal to
//!   parsing the exchange's decimal strings, selected by a [`LevelQuery`] with the REST API's
//!   `limit_count` / `threshold_volume` semantics.
//! - [`ClusterReader::bbo`] reads a book's best bid and ask from the slot header alone ([`Bbo`]).
//!   [`ClusterReader::bbo_all`] does it for every book of the cluster (or of one exchange).
//! - [`ClusterReader::get_book`] reads both sides as `f64` levels from one seqlock section, so
//!   bids and asks are one version of the book; [`fill_price`] and [`depth_stats`] compute the
//!   price of a fill and the shape of the top of the book from what it returns.
//! - [`ClusterReader::copy_book`] copies a whole synced book as exact mantissas ([`BookCopy`]),
//!   both sides from one seqlock section, so a DCN can start a replica from a peer's segment
//!   instead of a REST snapshot. [`BookInfo::depth`] says how many levels per side a book is
//!   complete to (a book may start from a shallow snapshot).
//! - Every write to a book gives it a new change stamp ([`BookInfo::changes`]);
//!   [`ClusterReader::wait_for_update`] sleeps on a futex in the segment until the book has a
//!   newer one, and [`ClusterReader::wait_for_any`] until any book of the cluster changed: no
//!   spinning, no missed wake-up ([`WaitOutcome`]).
//! - [`ClusterReader::proof`] adds to a book's info what issue 16's trust layer publishes: its
//!   audit results ([`Audit`], written with [`SegmentWriter::publish_audit`]) and a hash of its
//!   top levels at an update id ([`top_hash`], set by the engine with
//!   [`SegmentWriter::set_top_hash`]).
//! - A dead writer (its `flock` is free) or a hung one (heartbeat older than [`HUNG_AFTER`]) turns
//!   every read into an error, never into stale data.
//! - Segments are created `0600` ([`DEFAULT_SEGMENT_MODE`]; [`SegmentConfig::mode`] and
//!   [`SegmentConfig::group`] open them to a group), and readers believe only segments of owners
//!   they [`Trust`] that nobody else may write: anyone can create a file in `/dev/shm`.
//!
//! # Layout
//! `header` (segment identity, geometry, liveness), `directory` (book → slot), `slot` (one book),
//! `ring` (a side's levels as a ring whose both ends move),
//! `seqlock` (the read/write protocol), `wait` (change stamps and futex waits), `proof` (audit
//! results, freshness, the top hash), `mapping` (the only `unsafe`), `segment` (names, geometry),
//! `writer`, `reader`, `cluster`, `liveness`, `trust` (whose segments readers believe), `layout`
//! (the layout hash the C header mirrors).
//!
//! # Example
//! ```
//! use ubdcc_shm::{BookMeta, BookSides, BookStatus, ClusterReader, LevelQuery, RawLevel, SegmentConfig, Side};
//!
//! let cluster = format!("doc{}", std::process::id());
//! let mut writer = SegmentConfig::new(cluster.as_str(), "dcn-0").books(4).levels_per_side(10).create()?;
//! let book = writer.add_book("binance.com", "BTCUSDT")?;
//! let asks = [RawLevel { price: 9_999_000_000, quantity: 300_000_000 }, RawLevel { price: 10_000_000_000, quantity: 100_000_000 }];
//! let sides = BookSides { price_exponent: -8, quantity_exponent: -8, bids: &[], asks: &asks };
//! writer.publish(book, &BookMeta { status: BookStatus::Synced, last_update_id: 7, ..BookMeta::starting() }, &sides)?;
//!
//! let mut reader = ClusterReader::open(&cluster)?;
//! let mut levels = Vec::new();
//! let info = reader.read("binance.com", "BTCUSDT", Side::Asks, &LevelQuery::top(1), &mut levels)?;
//! assert_eq!(info.last_update_id, 7);
//! assert_eq!((levels[0].price, levels[0].quantity), (99.99, 3.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

// Readers issue 8-byte atomic loads on read-only mappings, which std allows only where such loads
// are register-sized (std::sync::atomic, "Atomic accesses to read-only memory").
#[cfg(not(target_pointer_width = "64"))]
compile_error!("ubdcc-shm needs a 64-bit target");

mod book;
mod book_math;
mod cluster;
mod decimal;
mod directory;
mod error;
mod header;
mod layout;
mod liveness;
mod mapping;
mod proof;
mod query;
mod reader;
mod ring;
mod segment;
mod seqlock;
mod slot;
mod status;
pub mod test_pattern;
mod trust;
mod wait;
mod writer;

pub use book::{
    Bbo, BookCopy, BookEdits, BookInfo, BookMeta, BookProof, BookSides, Level, LevelEdit, RawLevel,
};
pub use book_math::{Band, DepthStats, FillAmount, FillPrice, depth_stats, fill_price};
pub use cluster::{BookListing, ClusterReader};
pub use decimal::{Decimal, ParseDecimalError};
pub use directory::MAX_NAME_LEN;
pub use error::{
    CreateSegmentError, InvalidName, OpenClusterError, OpenSegmentError, ReadError,
    UntrustedSegment, WriteError,
};
pub use header::{LAYOUT_MAJOR, LAYOUT_MINOR, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC};
pub use layout::{LAYOUT_HASH, layout_table};
pub use liveness::{HEARTBEAT_INTERVAL, HUNG_AFTER};
pub use proof::{Audit, Freshness, TOP_HASH_LEVELS, TopHash, top_hash, top_hash_of};
pub use query::{InvalidQuery, LevelQuery, select_levels};
pub use reader::{DirectoryListing, SegmentReader, WriterInfo};
pub use segment::{MAX_BOOKS_PER_SEGMENT, SEGMENT_PREFIX, segment_name, segment_size};
pub use slot::{DEFAULT_LEVELS_PER_SIDE, MAX_LEVELS_PER_SIDE, slot_size};
pub use status::{BookStatus, OutOfSyncReason, Side};
pub use trust::{Distrust, InvalidTrust, TRUST_ENV, Trust};
pub use wait::WaitOutcome;
pub use writer::{BookHandle, DEFAULT_SEGMENT_MODE, Heartbeat, SegmentConfig, SegmentWriter};
