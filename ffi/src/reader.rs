//! The reader functions: open a cluster, read a side, read info, read the best bid and ask, list
//! books, close. Whole-book reads and what is computed on them are in `book.rs`.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ubdcc_shm::{ClusterReader, Level, LevelQuery, ReadError, Side, Trust};

use crate::status::{
    UBDCC_ERR_BUFFER_TOO_SMALL, UBDCC_ERR_INTERNAL, UBDCC_ERR_INVALID_ARGUMENT,
    UBDCC_ERR_NULL_ARGUMENT, UBDCC_OK, fail, fail_open, fail_read, ubdcc_status_t,
};
use crate::types::{ubdcc_bbo_t, ubdcc_book_entry_t, ubdcc_book_info_t, ubdcc_level_t};

/// An open cluster reader. Opaque to C; one handle must not be used by two threads at once
/// (open one per thread: they are cheap and share nothing).
pub struct ubdcc_reader_t {
    pub(crate) reader: ClusterReader,
    /// Reused for every read (the bids of a whole-book read), so a read allocates nothing once
    /// warm.
    pub(crate) levels: Vec<Level>,
    /// The asks of a whole-book read, reused likewise.
    pub(crate) asks: Vec<Level>,
}

/// Runs `body`, turning a panic into `UBDCC_ERR_INTERNAL`: unwinding must never cross into C.
pub(crate) fn guarded(body: impl FnOnce() -> ubdcc_status_t) -> ubdcc_status_t {
    catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|_| fail(UBDCC_ERR_INTERNAL, "internal error (panic) in ubdcc"))
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn str_arg<'a>(
    text: *const c_char,
    what: &str,
) -> Result<&'a str, ubdcc_status_t> {
    if text.is_null() {
        return Err(fail(UBDCC_ERR_NULL_ARGUMENT, format!("{what} is null")));
    }
    // SAFETY:
    // - `text` is non-null (checked above) and NUL-terminated and live for the call (caller's
    //   contract, stated in every public function's `# Safety`).
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str()
        .map_err(|_| fail(UBDCC_ERR_INVALID_ARGUMENT, format!("{what} is not UTF-8")))
}

/// Borrows the arguments every call about one book takes: the reader handle, then the exchange
/// and market, checked in that order so that the status and the message always describe the same
/// (first) bad argument.
///
/// # Safety
/// `reader` is null or a live handle no other thread uses during the call; each string pointer
/// is null or points to a NUL-terminated string valid during the call.
pub(crate) unsafe fn book_call<'a>(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
) -> Result<(&'a mut ubdcc_reader_t, &'a str, &'a str), ubdcc_status_t> {
    // SAFETY: passed on from this function's contract.
    let Some(handle) = (unsafe { reader.as_mut() }) else {
        return Err(fail(UBDCC_ERR_NULL_ARGUMENT, "reader is null"));
    };
    // SAFETY: passed on from this function's contract.
    let exchange = unsafe { str_arg(exchange, "exchange") }?;
    // SAFETY: passed on from this function's contract.
    let market = unsafe { str_arg(market, "market") }?;
    Ok((handle, exchange, market))
}

/// The `limit_count` / `threshold_volume` of a read (each null when not set) as a query;
/// `UBDCC_ERR_INVALID_ARGUMENT` (with the reason) for a negative limit or a NaN threshold.
///
/// # Safety
/// Each pointer is null or points to a valid value.
pub(crate) unsafe fn query_arg(
    limit_count: *const i64,
    threshold_volume: *const f64,
) -> Result<LevelQuery, ubdcc_status_t> {
    // SAFETY: passed on from this function's contract.
    let (limit, threshold) = unsafe {
        (
            limit_count.as_ref().copied(),
            threshold_volume.as_ref().copied(),
        )
    };
    LevelQuery::new(limit, threshold).map_err(|error| fail_read(&ReadError::InvalidQuery(error)))
}

/// Opens a reader for every book of `cluster` on this host.
///
/// Only segments owned by this process's effective uid, or by owners named in the environment
/// variable `UBDCC_SHM_TRUST` (`uid:N,gid:N`), that group and others may not write, are read;
/// `ubdcc_reader_open_trusting` adds owners. A cluster without segments yet is not an error:
/// reads return `UBDCC_ERR_NOT_FOUND` until its DCNs publish books.
///
/// # Arguments
/// - `cluster`: cluster name (`"default"`), NUL-terminated UTF-8.
/// - `out_reader`: receives the new handle; release it with `ubdcc_reader_close`.
///
/// # Errors
/// `UBDCC_ERR_INVALID_ARGUMENT` for a bad cluster name or `UBDCC_SHM_TRUST` setting,
/// `UBDCC_ERR_NULL_ARGUMENT`.
///
/// # Safety
/// `cluster` is a valid NUL-terminated string; `out_reader` is a valid pointer to writable storage
/// for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_reader_open(
    cluster: *const c_char,
    out_reader: *mut *mut ubdcc_reader_t,
) -> ubdcc_status_t {
    // SAFETY: the same contract as this function's; a null `trust` adds no owner.
    unsafe { ubdcc_reader_open_trusting(cluster, std::ptr::null(), out_reader) }
}

/// Like `ubdcc_reader_open`, but also trusts the owners in `trust`.
///
/// # Arguments
/// - `cluster`: cluster name, NUL-terminated UTF-8.
/// - `trust`: NULL, or owners to trust besides this user and `UBDCC_SHM_TRUST`, in the same
///   form: `"uid:1000,gid:2000"`.
/// - `out_reader`: receives the new handle; release it with `ubdcc_reader_close`.
///
/// # Errors
/// As `ubdcc_reader_open`, and `UBDCC_ERR_INVALID_ARGUMENT` for a bad `trust`.
///
/// # Safety
/// `cluster` is a valid NUL-terminated string; `trust` is NULL or a valid NUL-terminated string;
/// `out_reader` is a valid pointer to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_reader_open_trusting(
    cluster: *const c_char,
    trust: *const c_char,
    out_reader: *mut *mut ubdcc_reader_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_reader.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_reader is null");
        }
        // SAFETY: `cluster` is null or a valid C string (this function's contract).
        let cluster = match unsafe { str_arg(cluster, "cluster") } {
            Ok(cluster) => cluster,
            Err(status) => return status,
        };
        let extra = if trust.is_null() {
            ""
        } else {
            // SAFETY: `trust` is a valid C string (this function's contract; non-null here).
            match unsafe { str_arg(trust, "trust") } {
                Ok(extra) => extra,
                Err(status) => return status,
            }
        };
        let trust = match Trust::from_env().and_then(|trust| trust.with_spec(extra)) {
            Ok(trust) => trust,
            Err(error) => return fail_open(&error),
        };
        let reader = match ClusterReader::open_trusting(cluster, trust) {
            Ok(reader) => reader,
            Err(error) => return fail_open(&error),
        };
        let handle = Box::into_raw(Box::new(ubdcc_reader_t {
            reader,
            levels: Vec::with_capacity(64),
            asks: Vec::with_capacity(64),
        }));
        // SAFETY: `out_reader` is non-null (checked) and valid for a write (caller's contract).
        unsafe { out_reader.write(handle) };
        UBDCC_OK
    })
}

/// Closes a reader. Null is ignored.
///
/// # Safety
/// `reader` is null or a handle from `ubdcc_reader_open` not closed before; it must not be used
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_reader_close(reader: *mut ubdcc_reader_t) {
    if reader.is_null() {
        return;
    }
    // SAFETY: `reader` came from `Box::into_raw` in `ubdcc_reader_open` and is closed only once
    // (caller's contract), so we own it again here.
    drop(unsafe { Box::from_raw(reader) });
}

/// Reads the asks (lowest price first) of a synced book.
///
/// `limit_count` and `threshold_volume` have the REST API's semantics: pass NULL for "not set";
/// the first level is always included by a threshold; a limit of 0 gives 0 levels; a negative
/// limit or a NaN threshold is `UBDCC_ERR_INVALID_ARGUMENT`.
///
/// # Arguments
/// - `levels`, `capacity`: the output array. If the query selects more than `capacity` levels,
///   the first `capacity` are written and `UBDCC_ERR_BUFFER_TOO_SMALL` is returned.
/// - `out_count`: receives the number of levels the query selects (0 on any error other than
///   `UBDCC_ERR_BUFFER_TOO_SMALL`).
/// - `out_info`: may be NULL; otherwise receives the book's metadata from the same consistent
///   read as the levels (use its `last_update_id` to tie the levels to an update).
///
/// # Errors
/// `UBDCC_ERR_NOT_FOUND`, `UBDCC_ERR_OUT_OF_SYNC`, `UBDCC_ERR_WRITER_GONE`,
/// `UBDCC_ERR_WRITER_HUNG`, `UBDCC_ERR_CONTENDED`, `UBDCC_ERR_INVALID_ARGUMENT`,
/// `UBDCC_ERR_NULL_ARGUMENT`; `*out_count` is 0 then. `ubdcc_last_error_message` says more.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `limit_count` and `threshold_volume` are NULL or valid; `levels` points to
/// `capacity` writable elements (may be NULL when `capacity` is 0); `out_count` is valid;
/// `out_info` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_get_asks(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    limit_count: *const i64,
    threshold_volume: *const f64,
    levels: *mut ubdcc_level_t,
    capacity: usize,
    out_count: *mut usize,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    // SAFETY: the same contract as this function's, passed on unchanged.
    unsafe {
        get_side(
            Side::Asks,
            reader,
            exchange,
            market,
            limit_count,
            threshold_volume,
            levels,
            capacity,
            out_count,
            out_info,
        )
    }
}

/// Reads the bids (highest price first) of a synced book; see `ubdcc_get_asks`.
///
/// # Safety
/// As `ubdcc_get_asks`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_get_bids(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    limit_count: *const i64,
    threshold_volume: *const f64,
    levels: *mut ubdcc_level_t,
    capacity: usize,
    out_count: *mut usize,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    // SAFETY: the same contract as this function's, passed on unchanged.
    unsafe {
        get_side(
            Side::Bids,
            reader,
            exchange,
            market,
            limit_count,
            threshold_volume,
            levels,
            capacity,
            out_count,
            out_info,
        )
    }
}

/// The shared body of `ubdcc_get_asks` and `ubdcc_get_bids`.
///
/// # Safety
/// As `ubdcc_get_asks`.
#[allow(clippy::too_many_arguments)]
unsafe fn get_side(
    side: Side,
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    limit_count: *const i64,
    threshold_volume: *const f64,
    levels: *mut ubdcc_level_t,
    capacity: usize,
    out_count: *mut usize,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_count.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_count is null");
        }
        // SAFETY: `out_count` is non-null and valid for writes (contract).
        unsafe { out_count.write(0) };
        if levels.is_null() && capacity > 0 {
            return fail(
                UBDCC_ERR_NULL_ARGUMENT,
                "levels is null but capacity is not 0",
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
        let info = match handle
            .reader
            .read(exchange, market, side, &query, &mut handle.levels)
        {
            Ok(info) => info,
            Err(error) => return fail_read(&error),
        };
        let selected = handle.levels.len();
        let written = selected.min(capacity);
        if written > 0 {
            // SAFETY:
            // - `levels` points to `capacity >= written` writable elements (contract; non-null
            //   because `capacity > 0`).
            // - The source is our own Vec, which cannot overlap caller memory.
            unsafe { std::ptr::copy_nonoverlapping(handle.levels.as_ptr(), levels, written) };
        }
        // SAFETY: `out_count` valid (contract); `out_info` null or valid (contract).
        unsafe {
            out_count.write(selected);
            if let Some(out_info) = out_info.as_mut() {
                *out_info = ubdcc_book_info_t::from(&info);
            }
        }
        if written < selected {
            return fail(
                UBDCC_ERR_BUFFER_TOO_SMALL,
                format!("{selected} levels selected, the buffer holds {capacity}"),
            );
        }
        UBDCC_OK
    })
}

/// Reads a book's metadata (status, ids, times, counts, covered depth, change stamp, freshness,
/// audit results, top hash), synced or not.
///
/// # Errors
/// `UBDCC_ERR_NOT_FOUND`, `UBDCC_ERR_WRITER_GONE`, `UBDCC_ERR_WRITER_HUNG`,
/// `UBDCC_ERR_CONTENDED`, `UBDCC_ERR_NULL_ARGUMENT`, `UBDCC_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `out_info` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_book_info(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    out_info: *mut ubdcc_book_info_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_info.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_info is null");
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        match handle.reader.proof(exchange, market) {
            Ok(proof) => {
                // SAFETY: `out_info` is non-null (checked) and valid for a write (contract).
                unsafe { out_info.write(ubdcc_book_info_t::from(&proof)) };
                UBDCC_OK
            }
            Err(error) => fail_read(&error),
        }
    })
}

/// Reads the best bid and ask of a synced book from its slot header alone (two cache lines, no
/// level), with its update id and times from the same consistent read.
///
/// # Errors
/// `UBDCC_ERR_NOT_FOUND`, `UBDCC_ERR_OUT_OF_SYNC`, `UBDCC_ERR_WRITER_GONE`,
/// `UBDCC_ERR_WRITER_HUNG`, `UBDCC_ERR_CONTENDED`, `UBDCC_ERR_NULL_ARGUMENT`,
/// `UBDCC_ERR_INVALID_ARGUMENT`; `out_bbo` is left untouched then.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `out_bbo` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_bbo(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    out_bbo: *mut ubdcc_bbo_t,
) -> ubdcc_status_t {
    guarded(|| {
        if out_bbo.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_bbo is null");
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        match handle.reader.bbo(exchange, market) {
            Ok(bbo) => {
                // SAFETY: `out_bbo` is non-null (checked) and valid for a write (contract).
                unsafe { out_bbo.write(ubdcc_bbo_t::from(&bbo)) };
                UBDCC_OK
            }
            Err(error) => fail_read(&error),
        }
    })
}

/// Lists every replica of every book of the cluster on this host, sorted by exchange, market and
/// segment.
///
/// # Arguments
/// - `entries`, `capacity`: the output array; with more replicas than `capacity`, the first
///   `capacity` are written and `UBDCC_ERR_BUFFER_TOO_SMALL` is returned.
/// - `out_count`: receives the number of replicas.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `entries` points to
/// `capacity` writable elements (may be NULL when `capacity` is 0); `out_count` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_list_books(
    reader: *mut ubdcc_reader_t,
    entries: *mut ubdcc_book_entry_t,
    capacity: usize,
    out_count: *mut usize,
) -> ubdcc_status_t {
    guarded(|| {
        if out_count.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_count is null");
        }
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
        let books = handle.reader.list();
        let listed = books.iter().map(|book| {
            ubdcc_book_entry_t::new(
                &book.exchange,
                &book.market,
                &book.segment,
                book.status.as_ref().ok().copied(),
            )
        });
        // SAFETY: `entries` points to `capacity` writable elements (contract; non-null unless
        // `capacity` is 0, checked), `out_count` is non-null (checked) and valid (contract).
        unsafe { write_entries(listed, entries, capacity, out_count) }
    })
}

/// Writes `items` into the caller's `entries` (the first `capacity` of them) and how many there
/// are into `out_count`; `UBDCC_ERR_BUFFER_TOO_SMALL` when they did not all fit (the caller
/// learns how many to make room for).
///
/// # Safety
/// `entries` points to `capacity` writable elements; `out_count` is valid for a write.
pub(crate) unsafe fn write_entries<T>(
    items: impl ExactSizeIterator<Item = T>,
    entries: *mut T,
    capacity: usize,
    out_count: *mut usize,
) -> ubdcc_status_t {
    let total = items.len();
    for (i, item) in items.take(capacity).enumerate() {
        // SAFETY: `i < capacity` and `entries` points to `capacity` writable elements (contract).
        unsafe { entries.add(i).write(item) };
    }
    // SAFETY: `out_count` is valid for a write (contract).
    unsafe { out_count.write(total) };
    if total > capacity {
        return fail(
            UBDCC_ERR_BUFFER_TOO_SMALL,
            format!("{total} books, the buffer holds {capacity}"),
        );
    }
    UBDCC_OK
}

/// The layout hash of the shared-memory format this library reads; equals `UBDCC_LAYOUT_HASH`
/// of the header it was built with.
#[unsafe(no_mangle)]
pub extern "C" fn ubdcc_layout_hash() -> u64 {
    ubdcc_shm::LAYOUT_HASH
}
