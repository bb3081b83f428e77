//! The plain structs the C ABI fills in. Their layout is mirrored in `include/ubdcc.h` and
//! checked by `tests/c_abi.rs`.

use std::ffi::c_char;

use ubdcc_shm::{Bbo, BookInfo, BookStatus, MAX_NAME_LEN};

/// One level: price and quantity as doubles, best first.
pub type ubdcc_level_t = ubdcc_shm::Level;

/// Book status codes in `ubdcc_book_info_t::status`.
pub const UBDCC_BOOK_STARTING: u8 = 1;
/// The book is synced; its levels are served.
pub const UBDCC_BOOK_SYNCED: u8 = 2;
/// The book is out of sync; `reason` says why.
pub const UBDCC_BOOK_OUT_OF_SYNC: u8 = 3;

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

/// Copies `text` into `field`, truncated to leave room for the NUL.
fn copy_c_string(field: &mut [c_char], text: &str) {
    let room = field.len().saturating_sub(1);
    for (dst, src) in field.iter_mut().zip(text.as_bytes().iter().take(room)) {
        *dst = *src as c_char;
    }
}
