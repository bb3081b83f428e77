//! The plain structs the C ABI fills in. Their layout is mirrored in `include/ubdcc.h` and
//! checked by `tests/c_abi.rs`.

use std::ffi::{c_char, c_int};

use ubdcc_shm::{Band, Bbo, BookInfo, BookProof, BookStatus, DepthStats, FillPrice, MAX_NAME_LEN};

use crate::status::ubdcc_status_t;

/// One level: price and quantity as doubles, best first.
pub type ubdcc_level_t = ubdcc_shm::Level;

/// Book status codes in `ubdcc_book_info_t::status`.
pub const UBDCC_BOOK_STARTING: u8 = 1;
/// The book is synced; its levels are served.
pub const UBDCC_BOOK_SYNCED: u8 = 2;
/// The book is out of sync; `reason` says why.
pub const UBDCC_BOOK_OUT_OF_SYNC: u8 = 3;

/// `freshness` bit: `event_time_ms` is the REST snapshot's own time (no event applied since).
pub const UBDCC_FRESHNESS_SNAPSHOT_TIME: u16 = ubdcc_shm::Freshness::SNAPSHOT_TIME.bits();
/// `freshness` bit: no exchange time is known; `event_time_ms` is not an exchange time.
pub const UBDCC_FRESHNESS_NO_EXCHANGE_TIME: u16 = ubdcc_shm::Freshness::NO_EXCHANGE_TIME.bits();

/// A book's metadata, read in the same consistent section as its levels.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ubdcc_book_info_t {
    /// `UBDCC_BOOK_STARTING`, `UBDCC_BOOK_SYNCED` or `UBDCC_BOOK_OUT_OF_SYNC`.
    pub status: u8,
    /// Out-of-sync reason code (`UBDCC_REASON_*`), 0 otherwise.
    pub reason: u8,
    /// Padding; always 0.
    pub reserved: [u8; 2],
    /// Levels per side the book is complete to (the depth of the snapshot it was built from);
    /// 0 while unknown (starting). Reads deeper than this see a book that is not complete there.
    ///
    /// It sits in what were padding bytes, so the struct keeps its size and a program built
    /// against an older header still gets a struct of the size it allocated.
    pub depth: u32,
    /// Last update id applied.
    pub last_update_id: u64,
    /// Exchange event time of the last event, Unix ms.
    pub event_time_ms: u64,
    /// When the DCN received it, Unix ns.
    pub receive_time_ns: u64,
    /// When this version was published, Unix ns.
    pub publish_time_ns: u64,
    /// Bid levels held.
    pub bid_count: u32,
    /// Ask levels held.
    pub ask_count: u32,
    /// Resyncs since the book was added.
    pub resyncs: u32,
    /// Gaps detected since the book was added.
    pub gaps: u32,
    /// Publishes since the book was added.
    pub updates: u64,
    /// Slot generation.
    pub generation: u64,
    /// The change stamp of this version (pass it to `ubdcc_wait_for_update` as `last_seen`).
    /// Layout 3: this and the fields below are new at the end of the struct.
    pub changes: u64,
    /// Unix ms of the last audit that proved the book; 0 = never. This and the next four are
    /// filled by `ubdcc_book_info`; the level reads leave them 0 (they read the metadata that
    /// travels with the levels only).
    pub verified_at_ms: u64,
    /// Audits run since the book was added.
    pub audits: u32,
    /// Audits that found a mismatch.
    pub audit_mismatches: u32,
    /// Hash of the top levels (`ubdcc_shm::top_hash`) at `top_hash_update_id`.
    pub top_hash: u64,
    /// Update id `top_hash` was computed at; 0 = none yet.
    pub top_hash_update_id: u64,
    /// `UBDCC_FRESHNESS_*` bits: where `event_time_ms` comes from (0: the last event's time).
    pub freshness: u16,
    /// Padding; always 0.
    pub reserved2: [u8; 6],
}

/// A synced book's best bid and ask, from the slot header alone (`ubdcc_bbo`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ubdcc_bbo_t {
    /// The best (highest) bid; all zero when `has_bid` is 0.
    pub bid: ubdcc_level_t,
    /// The best (lowest) ask; all zero when `has_ask` is 0.
    pub ask: ubdcc_level_t,
    /// 1 when the bid side has a level, else 0.
    pub has_bid: u8,
    /// 1 when the ask side has a level, else 0.
    pub has_ask: u8,
    /// Padding; always 0.
    pub reserved: [u8; 2],
    /// Levels per side the book is complete to; 0 while unknown.
    pub depth: u32,
    /// Last update id applied.
    pub last_update_id: u64,
    /// Exchange event time of the last event, Unix ms.
    pub event_time_ms: u64,
    /// When the DCN received it, Unix ns.
    pub receive_time_ns: u64,
    /// When this version was published, Unix ns.
    pub publish_time_ns: u64,
    /// Slot generation.
    pub generation: u64,
    /// The change stamp of this version (layout 3; new at the end of the struct).
    pub changes: u64,
    /// `UBDCC_FRESHNESS_*` bits.
    pub freshness: u16,
    /// Padding; always 0.
    pub reserved2: [u8; 6],
}

impl From<&Bbo> for ubdcc_bbo_t {
    fn from(bbo: &Bbo) -> Self {
        Self {
            bid: bbo.bid.unwrap_or_default(),
            ask: bbo.ask.unwrap_or_default(),
            has_bid: u8::from(bbo.bid.is_some()),
            has_ask: u8::from(bbo.ask.is_some()),
            reserved: [0; 2],
            depth: bbo.depth,
            last_update_id: bbo.last_update_id,
            event_time_ms: bbo.event_time_ms,
            receive_time_ns: bbo.receive_time_ns,
            publish_time_ns: bbo.publish_time_ns,
            generation: bbo.generation,
            changes: bbo.changes,
            freshness: bbo.freshness.bits(),
            reserved2: [0; 6],
        }
    }
}

impl From<&BookInfo> for ubdcc_book_info_t {
    fn from(info: &BookInfo) -> Self {
        Self {
            status: info.status.code(),
            reason: info.status.reason_code(),
            reserved: [0; 2],
            depth: info.depth,
            last_update_id: info.last_update_id,
            event_time_ms: info.event_time_ms,
            receive_time_ns: info.receive_time_ns,
            publish_time_ns: info.publish_time_ns,
            bid_count: info.bid_count,
            ask_count: info.ask_count,
            resyncs: info.resyncs,
            gaps: info.gaps,
            updates: info.updates,
            generation: info.generation,
            changes: info.changes,
            verified_at_ms: 0,
            audits: 0,
            audit_mismatches: 0,
            top_hash: 0,
            top_hash_update_id: 0,
            freshness: info.freshness.bits(),
            reserved2: [0; 6],
        }
    }
}

impl From<&BookProof> for ubdcc_book_info_t {
    fn from(proof: &BookProof) -> Self {
        Self {
            verified_at_ms: proof.audit.verified_at_ms,
            audits: proof.audit.audits,
            audit_mismatches: proof.audit.audit_mismatches,
            top_hash: proof.top_hash.hash,
            top_hash_update_id: proof.top_hash.update_id,
            ..Self::from(&proof.info)
        }
    }
}

/// Capacity of the segment-name field of [`ubdcc_book_entry_t`] (with the NUL).
pub const UBDCC_SEGMENT_NAME_CAPACITY: usize = 144;

/// One replica of one book, as `ubdcc_list_books` reports it. Strings are NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ubdcc_book_entry_t {
    /// Exchange string.
    pub exchange: [c_char; MAX_NAME_LEN + 1],
    /// Market symbol.
    pub market: [c_char; MAX_NAME_LEN + 1],
    /// Segment (DCN) holding this replica.
    pub segment: [c_char; UBDCC_SEGMENT_NAME_CAPACITY],
    /// Book status code, or 0 when the replica could not be read (dead or hung writer).
    pub status: u8,
    /// Out-of-sync reason code.
    pub reason: u8,
}

impl ubdcc_book_entry_t {
    pub(crate) fn new(
        exchange: &str,
        market: &str,
        segment: &str,
        status: Option<BookStatus>,
    ) -> Self {
        let mut entry = Self {
            exchange: [0; MAX_NAME_LEN + 1],
            market: [0; MAX_NAME_LEN + 1],
            segment: [0; UBDCC_SEGMENT_NAME_CAPACITY],
            status: status.map_or(0, BookStatus::code),
            reason: status.map_or(0, BookStatus::reason_code),
        };
        copy_c_string(&mut entry.exchange, exchange);
        copy_c_string(&mut entry.market, market);
        copy_c_string(&mut entry.segment, segment);
        entry
    }
}

/// One book of the cluster as `ubdcc_bbo_all` reports it: its names, and its best bid and ask
/// or why it is not served. Strings are NUL-terminated copies (names are at most
/// `UBDCC_MAX_NAME_LEN` bytes, so they always fit), so an entry stays valid on its own.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ubdcc_bbo_entry_t {
    /// Exchange string.
    pub exchange: [c_char; MAX_NAME_LEN + 1],
    /// Market symbol.
    pub market: [c_char; MAX_NAME_LEN + 1],
    /// The book's status code (`UBDCC_BOOK_*`) when it was read or is not synced; 0 when no
    /// replica could be read at all (dead or hung writer, contended, gone).
    pub book_status: u8,
    /// Out-of-sync reason code (`UBDCC_REASON_*`) when `book_status` is out of sync, else 0.
    pub reason: u8,
    /// `UBDCC_OK` when `bbo` holds the book's best bid and ask; otherwise the error a
    /// `ubdcc_bbo` of this book would have returned (`UBDCC_ERR_OUT_OF_SYNC`, ...), and `bbo`
    /// is all zero: never a stale price.
    pub status: ubdcc_status_t,
    /// The best bid and ask, valid when `status` is `UBDCC_OK`.
    pub bbo: ubdcc_bbo_t,
}

impl ubdcc_bbo_entry_t {
    pub(crate) fn new(
        exchange: &str,
        market: &str,
        book_status: Option<BookStatus>,
        status: ubdcc_status_t,
        bbo: ubdcc_bbo_t,
    ) -> Self {
        let mut entry = Self {
            exchange: [0; MAX_NAME_LEN + 1],
            market: [0; MAX_NAME_LEN + 1],
            book_status: book_status.map_or(0, BookStatus::code),
            reason: book_status.map_or(0, BookStatus::reason_code),
            status,
            bbo,
        };
        copy_c_string(&mut entry.exchange, exchange);
        copy_c_string(&mut entry.market, market);
        entry
    }
}

/// `ubdcc_fill_price`'s `side`: a buy walks the asks.
pub const UBDCC_BUY: c_int = 0;
/// `ubdcc_fill_price`'s `side`: a sell walks the bids.
pub const UBDCC_SELL: c_int = 1;
/// `ubdcc_fill_price`'s `amount_kind`: the amount is a base-asset quantity (BTC of BTCUSDT).
pub const UBDCC_AMOUNT_BASE: c_int = 0;
/// `ubdcc_fill_price`'s `amount_kind`: the amount is in the quote asset (USDT of BTCUSDT).
pub const UBDCC_AMOUNT_QUOTE: c_int = 1;

/// The price of a fill (`ubdcc_fill_price`); see `ubdcc_shm::FillPrice`. Prices that do not
/// exist because nothing could be filled (an empty side) are NaN.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ubdcc_fill_t {
    /// Quote filled / base filled; NaN when nothing was filled.
    pub average_price: f64,
    /// Price of the last (worst) level used; NaN when nothing was filled.
    pub worst_price: f64,
    /// Base quantity filled.
    pub filled_quantity: f64,
    /// Quote amount filled.
    pub filled_quote: f64,
    /// Basis points the average is worse than the best price; NaN when nothing was filled.
    pub slippage_bps: f64,
    /// Levels touched.
    pub levels_used: u32,
    /// 1 when the whole amount was filled, 0 when the side ran out of levels first.
    pub complete: u8,
    /// Padding; always 0.
    pub reserved: [u8; 3],
}

impl From<&FillPrice> for ubdcc_fill_t {
    fn from(fill: &FillPrice) -> Self {
        Self {
            average_price: fill.average_price.unwrap_or(f64::NAN),
            worst_price: fill.worst_price.unwrap_or(f64::NAN),
            filled_quantity: fill.filled_quantity,
            filled_quote: fill.filled_quote,
            slippage_bps: fill.slippage_bps.unwrap_or(f64::NAN),
            // A side holds at most `ubdcc_shm::MAX_LEVELS_PER_SIDE` (65 535) levels.
            levels_used: u32::try_from(fill.levels_used).unwrap_or(u32::MAX),
            complete: u8::from(fill.complete),
            reserved: [0; 3],
        }
    }
}

/// Quantity within one band around the mid (`ubdcc_depth_stats`); see `ubdcc_shm::Band`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ubdcc_band_t {
    /// Half-width of the band in basis points of the mid, as asked for.
    pub bps: f64,
    /// Bid quantity priced at or above `mid * (1 - bps / 1e4)`.
    pub bid_quantity: f64,
    /// Ask quantity priced at or below `mid * (1 + bps / 1e4)`.
    pub ask_quantity: f64,
    /// 1 when both sides hold a level beyond the band (the quantities are exact), 0 when the
    /// levels end inside it (they are lower bounds).
    pub complete: u8,
    /// Padding; always 0.
    pub reserved: [u8; 7],
}

impl From<&Band> for ubdcc_band_t {
    fn from(band: &Band) -> Self {
        Self {
            bps: band.bps,
            bid_quantity: band.bid_quantity,
            ask_quantity: band.ask_quantity,
            complete: u8::from(band.complete),
            reserved: [0; 7],
        }
    }
}

/// The shape of the top of a book (`ubdcc_depth_stats`); see `ubdcc_shm::DepthStats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ubdcc_depth_stats_t {
    /// (best bid + best ask) / 2.
    pub mid: f64,
    /// Best ask - best bid.
    pub spread: f64,
    /// Spread in basis points of the mid.
    pub spread_bps: f64,
    /// Size-weighted mid of the best levels.
    pub microprice: f64,
    /// (bid - ask quantity) / (bid + ask quantity) over the top `top_n` levels of each side.
    pub imbalance: f64,
    /// Levels per side the imbalance was taken over, as asked for.
    pub top_n: u64,
    /// 1 when both sides have a level; 0 when a side is empty: no mid exists, every double
    /// above is NaN and the bands are zero but for their `bps`.
    pub valid: u8,
    /// Padding; always 0.
    pub reserved: [u8; 7],
}

impl ubdcc_depth_stats_t {
    /// The stats of `stats` (`None`: a side was empty) over `top_n` levels.
    pub(crate) fn new(stats: Option<&DepthStats>, top_n: u64) -> Self {
        let Some(stats) = stats else {
            return Self {
                mid: f64::NAN,
                spread: f64::NAN,
                spread_bps: f64::NAN,
                microprice: f64::NAN,
                imbalance: f64::NAN,
                top_n,
                valid: 0,
                reserved: [0; 7],
            };
        };
        Self {
            mid: stats.mid,
            spread: stats.spread,
            spread_bps: stats.spread_bps,
            microprice: stats.microprice,
            imbalance: stats.imbalance,
            top_n,
            valid: 1,
            reserved: [0; 7],
        }
    }
}

/// Copies `text` into `field`, truncated to leave room for the NUL.
fn copy_c_string(field: &mut [c_char], text: &str) {
    let room = field.len().saturating_sub(1);
    for (dst, src) in field.iter_mut().zip(text.as_bytes().iter().take(room)) {
        *dst = *src as c_char;
    }
}
