//! The values that cross the shared-memory boundary: what a writer publishes and what a reader
//! gets back.

use crate::proof::{Audit, Freshness, TopHash};
use crate::status::BookStatus;

/// One level as the writer hands it over: exact mantissas, scaled by [`BookSides`]'s exponents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RawLevel {
    /// Price mantissa.
    pub price: u64,
    /// Quantity mantissa.
    pub quantity: u64,
}

/// Both sides of a book, best first, as exact decimals sharing one exponent per column.
#[derive(Debug, Clone, Copy)]
pub struct BookSides<'a> {
    /// Base-10 exponent of every price mantissa.
    pub price_exponent: i8,
    /// Base-10 exponent of every quantity mantissa.
    pub quantity_exponent: i8,
    /// Bids, highest price first.
    pub bids: &'a [RawLevel],
    /// Asks, lowest price first.
    pub asks: &'a [RawLevel],
}

/// One change to one side of a published book, at a best-first index of the side as the segment
/// holds it (what [`crate::SegmentWriter::publish_edits`] applies in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelEdit {
    /// Inserts `level` at best-first index `at` (at most the number of levels held); the levels
    /// from `at` on move one down, and on a full side the worst falls off. An `at` at or beyond
    /// the segment's levels per side changes nothing.
    Insert {
        /// Best-first index the new level takes.
        at: u32,
        /// The level.
        level: RawLevel,
    },
    /// Removes the level at best-first index `at` (less than the number of levels held).
    Remove {
        /// Best-first index of the level.
        at: u32,
    },
    /// Replaces the level at best-first index `at` (less than the number of levels held), e.g.
    /// a new quantity at the same price.
    Replace {
        /// Best-first index of the level.
        at: u32,
        /// The new level.
        level: RawLevel,
    },
}

/// The edits that turn both sides of a published book into its next version, in order per side.
/// Exponents stay as last published: a change of exponent needs a whole publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct BookEdits<'a> {
    /// Edits of the bids (best = highest price = index 0).
    pub bids: &'a [LevelEdit],
    /// Edits of the asks (best = lowest price = index 0).
    pub asks: &'a [LevelEdit],
}

/// Everything about a book except its levels, as the writer publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookMeta {
    /// Sync status; only [`BookStatus::Synced`] books are served to readers.
    pub status: BookStatus,
    /// The last update id applied.
    pub last_update_id: u64,
    /// Exchange event time of the last event applied, Unix milliseconds.
    pub event_time_ms: u64,
    /// When the DCN received the last event applied, Unix nanoseconds.
    pub receive_time_ns: u64,
    /// Resyncs since the book was added.
    pub resyncs: u32,
    /// Gaps detected since the book was added.
    pub gaps: u32,
    /// Levels per side the book is complete to (the depth of the snapshot it was built from,
    /// trimmed to it after every event); 0 while unknown (starting).
    pub depth: u32,
    /// Where `event_time_ms` comes from (empty: the exchange's time of the last event applied).
    pub freshness: Freshness,
}

impl BookMeta {
    /// Meta for a book that was just added: starting, no ids, no counters, depth unknown (0).
    pub const fn starting() -> Self {
        Self {
            status: BookStatus::Starting,
            last_update_id: 0,
            event_time_ms: 0,
            receive_time_ns: 0,
            resyncs: 0,
            gaps: 0,
            depth: 0,
            freshness: Freshness::empty(),
        }
    }
}

/// One level as readers get it: `f64`s equal to parsing the exchange's decimal strings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Level {
    /// Price.
    pub price: f64,
    /// Quantity.
    pub quantity: f64,
}

/// The best bid and ask of a synced book with its ids and times, from one seqlock section that
/// touches only the slot's two header cache lines ([`crate::ClusterReader::bbo`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbo {
    /// The best (highest) bid; `None` when the bid side is empty.
    pub bid: Option<Level>,
    /// The best (lowest) ask; `None` when the ask side is empty.
    pub ask: Option<Level>,
    /// The last update id applied.
    pub last_update_id: u64,
    /// Exchange event time of the last event applied, Unix milliseconds.
    pub event_time_ms: u64,
    /// When the DCN received that event, Unix nanoseconds.
    pub receive_time_ns: u64,
    /// When this version was published, Unix nanoseconds.
    pub publish_time_ns: u64,
    /// Levels per side the book is complete to (see [`BookInfo::depth`]).
    pub depth: u32,
    /// The slot generation this book lives in.
    pub generation: u64,
    /// The change stamp of this version (see [`BookInfo::changes`]).
    pub changes: u64,
    /// Where `event_time_ms` comes from.
    pub freshness: Freshness,
}

/// A consistent snapshot of a book's metadata, read in the same seqlock section as its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookInfo {
    /// Sync status.
    pub status: BookStatus,
    /// The last update id applied.
    pub last_update_id: u64,
    /// Exchange event time of the last event applied, Unix milliseconds.
    pub event_time_ms: u64,
    /// When the DCN received that event, Unix nanoseconds.
    pub receive_time_ns: u64,
    /// When this version was published, Unix nanoseconds.
    pub publish_time_ns: u64,
    /// Number of bid levels held.
    pub bid_count: u32,
    /// Number of ask levels held.
    pub ask_count: u32,
    /// Resyncs since the book was added.
    pub resyncs: u32,
    /// Gaps detected since the book was added.
    pub gaps: u32,
    /// Levels per side the book is complete to (the depth of the snapshot it was built from,
    /// trimmed to it after every event); 0 while unknown (starting). A side may hold fewer
    /// levels than this when the market has fewer; it never holds a partial view beyond it.
    pub depth: u32,
    /// Publishes since the book was added.
    pub updates: u64,
    /// The slot generation this book lives in.
    pub generation: u64,
    /// The change stamp of this version: strictly increasing with every write to the book, the
    /// value [`crate::ClusterReader::wait_for_update`] compares `last_seen` with (pass this one to
    /// wait for the version after the one read).
    pub changes: u64,
    /// Where `event_time_ms` comes from (empty: the exchange's time of the last event applied).
    pub freshness: Freshness,
}

/// A book's metadata with how far it is proven: its audit results and the hash of its top
/// levels, all from one seqlock section ([`crate::ClusterReader::proof`]).
///
/// Kept out of [`BookInfo`], which every read returns: carrying these 32 bytes through every
/// read made `ClusterReader::info` about 20% slower (an A/B of the same bench on both builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookProof {
    /// The book's metadata.
    pub info: BookInfo,
    /// The book's audit results (never audited: all zero).
    pub audit: Audit,
    /// The hash of the book's top levels and the update id it was computed at.
    pub top_hash: TopHash,
}

/// A proof reads as the info it extends (`proof.status`, `proof.last_update_id`), so code that
/// read a [`BookInfo`] reads a [`BookProof`] unchanged.
impl std::ops::Deref for BookProof {
    type Target = BookInfo;

    fn deref(&self) -> &BookInfo {
        &self.info
    }
}

/// Both sides of one synced book from a single seqlock section, as exact mantissas.
///
/// What [`crate::ClusterReader::copy_book`] returns: a DCN starts a replica from it instead of
/// from a REST snapshot, at `info.last_update_id`, with `info.depth` as the depth it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct BookCopy {
    /// The book's metadata from the same section as its levels (`bid_count` and `ask_count`
    /// equal the sides' lengths).
    pub info: BookInfo,
    /// Base-10 exponent of every price mantissa.
    pub price_exponent: i8,
    /// Base-10 exponent of every quantity mantissa.
    pub quantity_exponent: i8,
    /// Bids, best (highest price) first.
    pub bids: Vec<RawLevel>,
    /// Asks, best (lowest price) first.
    pub asks: Vec<RawLevel>,
    /// The DCN whose segment it came from.
    pub dcn: String,
}
