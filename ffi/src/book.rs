//! Whole-book reads and what is computed on them: both sides of a book from one consistent read
//! (`ubdcc_get_book`), the best bid and ask of every book (`ubdcc_bbo_all`), and the price of a
//! fill and the shape of the top of a book (`ubdcc_fill_price`, `ubdcc_depth_stats`), each on
//! one consistent read and computed by the same Rust functions the REST API answers with
//! (`ubdcc_shm::fill_price`, `ubdcc_shm::depth_stats`), so C, Python and HTTP agree.

use std::ffi::{c_char, c_int};

use ubdcc_shm::{FillAmount, Level, LevelQuery, ReadError, Side, depth_stats, fill_price};

use crate::reader::{book_call, guarded, query_arg, str_arg, ubdcc_reader_t, write_entries};
use crate::status::{
    UBDCC_ERR_BUFFER_TOO_SMALL, UBDCC_ERR_INVALID_ARGUMENT, UBDCC_ERR_NULL_ARGUMENT, UBDCC_OK,
    fail, fail_read, status_of, ubdcc_status_t,
};
use crate::types::{
    UBDCC_AMOUNT_BASE, UBDCC_AMOUNT_QUOTE, UBDCC_BUY, UBDCC_SELL, ubdcc_band_t, ubdcc_bbo_entry_t,
    ubdcc_bbo_t, ubdcc_book_info_t, ubdcc_depth_stats_t, ubdcc_fill_t, ubdcc_level_t,
};

/// Reads both sides of a synced book from **one** consistent read: the bids and asks are one
/// version of the book, the one `out_info->last_update_id` names.
///
/// `limit_count` and `threshold_volume` are as in `ubdcc_get_asks` (NULL: not set) and apply to
/// each side on its own.
///
/// # Arguments
/// - `bids`, `bid_capacity`, `asks`, `ask_capacity`: the output arrays. When the query selects
///   more levels of a side than its capacity, the first `capacity` are written and
///   `UBDCC_ERR_BUFFER_TOO_SMALL` is returned (the other side is still written whole when it fits).
/// - `out_bid_count`, `out_ask_count`: receive the number of levels selected per side (0 on any
///   error other than `UBDCC_ERR_BUFFER_TOO_SMALL`).
/// - `out_info`: NULL, or receives the metadata from the same read.
///
/// # Errors
/// As `ubdcc_get_asks`.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `limit_count` and `threshold_volume` are NULL or valid; `bids` points to
/// `bid_capacity` and `asks` to `ask_capacity` writable elements (each may be NULL when its
/// capacity is 0); `out_bid_count` and `out_ask_count` are valid; `out_info` is NULL or valid.
// The C signature needs every one of these: two arrays with capacities and counts, the query and
// the info, like `ubdcc_get_asks` twice.
#[allow(clippy::too_many_arguments)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_get_book(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    limit_count: *const i64,
    threshold_volume: *const f64,
    bids: *mut ubdcc_level_t,
    bid_capacity: usize,
    out_bid_count: *mut usize,
    asks: *mut ubdcc_level_t,
    ask_capacity: usize,
    out_ask_count: *mut usize,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_bid_count.is_null() || out_ask_count.is_null() {
            return fail(
                UBDCC_ERR_NULL_ARGUMENT,
                "out_bid_count or out_ask_count is null",
            );
        }
        // SAFETY: both are non-null (checked) and valid for writes (contract).
        unsafe {
            out_bid_count.write(0);
            out_ask_count.write(0);
        }
        if (bids.is_null() && bid_capacity > 0) || (asks.is_null() && ask_capacity > 0) {
            return fail(
                UBDCC_ERR_NULL_ARGUMENT,
                "bids or asks is null but its capacity is not 0",
            );
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        // SAFETY: each is null (not set) or points to a valid value (contract).
        let query = match unsafe { query_arg(limit_count, threshold_volume) } {
            Ok(query) => query,
            Err(status) => return status,
        };
        let info = match handle.reader.read_book(
            exchange,
            market,
            &query,
            &mut handle.levels,
            &mut handle.asks,
        ) {
            Ok(info) => info,
            Err(error) => return fail_read(&error),
        };
        // SAFETY: `bids` points to `bid_capacity` writable elements (contract).
        let bids_fit = unsafe { write_levels(&handle.levels, bids, bid_capacity) };
        // SAFETY: `asks` points to `ask_capacity` writable elements (contract).
        let asks_fit = unsafe { write_levels(&handle.asks, asks, ask_capacity) };
        // SAFETY: the counts are valid (checked, contract); `out_info` null or valid (contract).
        unsafe {
            out_bid_count.write(handle.levels.len());
            out_ask_count.write(handle.asks.len());
            if let Some(out_info) = out_info.as_mut() {
                *out_info = ubdcc_book_info_t::from(&info);
            }
        }
        if !(bids_fit && asks_fit) {
            return fail(
                UBDCC_ERR_BUFFER_TOO_SMALL,
                format!(
                    "{} bids and {} asks selected, the buffers hold {bid_capacity} and \
                     {ask_capacity}",
                    handle.levels.len(),
                    handle.asks.len()
                ),
            );
        }
        UBDCC_OK
    })
}

/// Copies up to `capacity` of `levels` to `out`; `true` when all of them fit.
///
/// # Safety
/// `out` points to `capacity` writable elements (it may be null when `capacity` is 0).
unsafe fn write_levels(levels: &[Level], out: *mut ubdcc_level_t, capacity: usize) -> bool {
    let written = levels.len().min(capacity);
    if written > 0 {
        // SAFETY:
        // - `out` points to `capacity >= written` writable elements (contract; non-null because
        //   `capacity > 0`).
        // - The source is the handle's own Vec, which cannot overlap caller memory.
        unsafe { std::ptr::copy_nonoverlapping(levels.as_ptr(), out, written) };
    }
    written == levels.len()
}

/// Reads the best bid and ask of every book of the cluster on this host, or of every book of
/// one exchange, one entry per book (not per replica), sorted by exchange and market.
///
/// Each book is read on its own from its slot header (as `ubdcc_bbo`); an entry whose book is
/// not served carries the status `ubdcc_bbo` would have returned for it, its book status, and a
/// zero `bbo`, never a stale price. Per-entry messages are not kept; call `ubdcc_bbo` on that
/// book for one.
///
/// # Arguments
/// - `exchange`: NULL for every exchange, or the exchange whose books to read.
/// - `entries`, `capacity`: the output array; with more books than `capacity`, the first
///   `capacity` are written and `UBDCC_ERR_BUFFER_TOO_SMALL` is returned.
/// - `out_count`: receives the number of books.
///
/// # Errors
/// `UBDCC_ERR_NULL_ARGUMENT`, `UBDCC_ERR_INVALID_ARGUMENT` (`exchange` not UTF-8),
/// `UBDCC_ERR_BUFFER_TOO_SMALL`. A book that cannot be read is not an error of the call.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` is NULL or a
/// valid C string; `entries` points to `capacity` writable elements (may be NULL when `capacity`
/// is 0); `out_count` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_bbo_all(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    entries: *mut ubdcc_bbo_entry_t,
    capacity: usize,
    out_count: *mut usize,
) -> ubdcc_status_t {
    guarded(|| {
        if out_count.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_count is null");
        }
        // SAFETY: `out_count` is non-null (checked) and valid for writes (contract).
        unsafe { out_count.write(0) };
        if entries.is_null() && capacity > 0 {
            return fail(
                UBDCC_ERR_NULL_ARGUMENT,
                "entries is null but capacity is not 0",
            );
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now (contract).
        let Some(handle) = (unsafe { reader.as_mut() }) else {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "reader is null");
        };
        let exchange = if exchange.is_null() {
            None
        } else {
            // SAFETY: `exchange` is a valid C string (contract; non-null here).
            match unsafe { str_arg(exchange, "exchange") } {
                Ok(exchange) => Some(exchange),
                Err(status) => return status,
            }
        };
        let books = handle.reader.bbo_all(exchange);
        let listed = books.iter().map(|(exchange, market, bbo)| match bbo {
            Ok(bbo) => ubdcc_bbo_entry_t::new(
                exchange,
                market,
                Some(ubdcc_shm::BookStatus::Synced),
                UBDCC_OK,
                ubdcc_bbo_t::from(bbo),
            ),
            Err(error) => {
                let book_status = match error {
                    ReadError::NotSynced { status, .. } => Some(*status),
                    _ => None,
                };
                let status = status_of(error);
                ubdcc_bbo_entry_t::new(
                    exchange,
                    market,
                    book_status,
                    status,
                    ubdcc_bbo_t::default(),
                )
            }
        });
        // SAFETY: `entries` points to `capacity` writable elements (contract; non-null unless
        // `capacity` is 0, checked), `out_count` is non-null (checked) and valid (contract).
        unsafe { write_entries(listed, entries, capacity, out_count) }
    })
}

/// The price of filling `amount` against a synced book: a buy walks the asks, a sell the bids,
/// read whole in one consistent read and computed by `ubdcc_shm::fill_price`. A fill the book's
/// levels cannot complete has `complete` 0 (compare `out_info->depth`, the levels per side the
/// book is complete to).
///
/// # Arguments
/// - `side`: `UBDCC_BUY` or `UBDCC_SELL` (an `int`, so any value a caller passes is defined;
///   others are `UBDCC_ERR_INVALID_ARGUMENT`).
/// - `amount_kind`: `UBDCC_AMOUNT_BASE` (a base quantity) or `UBDCC_AMOUNT_QUOTE` (an amount of
///   the quote asset).
/// - `amount`: finite and positive.
/// - `out_fill`: receives the result.
/// - `out_info`: NULL, or receives the metadata of the version the fill was computed on.
///
/// # Errors
/// `UBDCC_ERR_INVALID_ARGUMENT` for a bad side, kind or amount; otherwise as `ubdcc_get_asks`.
/// `out_fill` and `out_info` are left untouched on error.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `out_fill` is valid for a write; `out_info` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_fill_price(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    side: c_int,
    amount_kind: c_int,
    amount: f64,
    out_fill: *mut ubdcc_fill_t,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_fill.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_fill is null");
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        // A buy takes the asks, a sell the bids.
        let side = match side {
            UBDCC_BUY => Side::Asks,
            UBDCC_SELL => Side::Bids,
            other => {
                return fail(
                    UBDCC_ERR_INVALID_ARGUMENT,
                    format!("side must be UBDCC_BUY or UBDCC_SELL, got {other}"),
                );
            }
        };
        let amount = match amount_kind {
            UBDCC_AMOUNT_BASE => FillAmount::Base(amount),
            UBDCC_AMOUNT_QUOTE => FillAmount::Quote(amount),
            other => {
                return fail(
                    UBDCC_ERR_INVALID_ARGUMENT,
                    format!(
                        "amount_kind must be UBDCC_AMOUNT_BASE or UBDCC_AMOUNT_QUOTE, got {other}"
                    ),
                );
            }
        };
        let (FillAmount::Base(value) | FillAmount::Quote(value)) = amount;
        if !(value.is_finite() && value > 0.0) {
            return fail(
                UBDCC_ERR_INVALID_ARGUMENT,
                format!("amount must be a positive number, got {value}"),
            );
        }
        // One side, whole: one read section, as `ubdcc_get_asks` with no limit.
        let info =
            match handle
                .reader
                .read(exchange, market, side, &LevelQuery::ALL, &mut handle.levels)
            {
                Ok(info) => info,
                Err(error) => return fail_read(&error),
            };
        let fill = fill_price(&handle.levels, amount);
        // SAFETY: `out_fill` is non-null (checked) and valid (contract); `out_info` null or valid.
        unsafe {
            out_fill.write(ubdcc_fill_t::from(&fill));
            if let Some(out_info) = out_info.as_mut() {
                *out_info = ubdcc_book_info_t::from(&info);
            }
        }
        UBDCC_OK
    })
}

/// The shape of the top of a synced book: mid, spread, microprice, the imbalance of the top
/// `top_n` levels of each side, and the quantity within each of `band_count` bands of ±`bps[i]`
/// basis points around the mid; both sides read whole in one consistent read and computed by
/// `ubdcc_shm::depth_stats`.
///
/// # Arguments
/// - `top_n`: levels per side the imbalance is taken over.
/// - `bps`, `band_count`: the bands' half-widths, each finite and positive (`bps` may be NULL
///   when `band_count` is 0).
/// - `out_bands`: receives `band_count` results, in the order of `bps`.
/// - `out_stats`: receives the statistics; `valid` is 0 when a side is empty (no mid exists).
/// - `out_info`: NULL, or receives the metadata of the version they were computed on.
///
/// # Errors
/// `UBDCC_ERR_INVALID_ARGUMENT` for a band that is not a positive number; otherwise as
/// `ubdcc_get_asks`. The outputs are left untouched on error.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `bps` points to `band_count` readable doubles and `out_bands` to
/// `band_count` writable elements (either may be NULL when `band_count` is 0); `out_stats` is
/// valid for a write; `out_info` is NULL or valid.
#[allow(clippy::too_many_arguments)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_depth_stats(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    top_n: usize,
    bps: *const f64,
    band_count: usize,
    out_bands: *mut ubdcc_band_t,
    out_stats: *mut ubdcc_depth_stats_t,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_stats.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_stats is null");
        }
        if band_count > 0 && (bps.is_null() || out_bands.is_null()) {
            return fail(
                UBDCC_ERR_NULL_ARGUMENT,
                "bps or out_bands is null but band_count is not 0",
            );
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        let bands: &[f64] = if band_count == 0 {
            &[]
        } else {
            // SAFETY:
            // - `bps` is non-null (checked) and points to `band_count` readable, initialised
            //   doubles that stay valid and unwritten during the call (contract).
            // - `band_count` doubles of a caller's array cannot exceed `isize::MAX` bytes.
            unsafe { std::slice::from_raw_parts(bps, band_count) }
        };
        if let Some(bad) = bands.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
            return fail(
                UBDCC_ERR_INVALID_ARGUMENT,
                format!("bps must be positive numbers, got {bad}"),
            );
        }
        let info = match handle.reader.read_book(
            exchange,
            market,
            &LevelQuery::ALL,
            &mut handle.levels,
            &mut handle.asks,
        ) {
            Ok(info) => info,
            Err(error) => return fail_read(&error),
        };
        let stats = depth_stats(&handle.levels, &handle.asks, top_n, bands);
        for (i, &width) in bands.iter().enumerate() {
            let band = stats.as_ref().map_or(
                ubdcc_band_t {
                    bps: width,
                    ..ubdcc_band_t::default()
                },
                |stats| ubdcc_band_t::from(&stats.bands[i]),
            );
            // SAFETY: `i < band_count` and `out_bands` points to `band_count` writable elements
            // (contract; non-null because `band_count > 0`).
            unsafe { out_bands.add(i).write(band) };
        }
        let top_n = u64::try_from(top_n).unwrap_or(u64::MAX);
        // SAFETY: `out_stats` is non-null (checked) and valid (contract); `out_info` null or valid.
        unsafe {
            out_stats.write(ubdcc_depth_stats_t::new(stats.as_ref(), top_n));
            if let Some(out_info) = out_info.as_mut() {
                *out_info = ubdcc_book_info_t::from(&info);
            }
        }
        UBDCC_OK
    })
}
