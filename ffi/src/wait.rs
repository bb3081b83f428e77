//! Waiting for a change: `ubdcc_wait_for_update` (one book) and `ubdcc_wait_for_any` (any book
//! of the cluster). The calling thread sleeps in the kernel (a futex on the segment, which the
//! writer wakes after every publish): no spinning, and no publish is missed.

use std::ffi::c_char;
use std::time::Duration;

use ubdcc_shm::WaitOutcome;

use crate::reader::{book_call, guarded, ubdcc_reader_t};
use crate::status::{
    UBDCC_ERR_NULL_ARGUMENT, UBDCC_ERR_TIMEOUT, UBDCC_OK, fail, fail_read, ubdcc_status_t,
};

/// Sleeps until the book is written after the change stamp `last_seen` (the `changes` of the
/// last `ubdcc_book_info_t` or `ubdcc_bbo_t` read, or 0), at most `timeout_ms` milliseconds.
/// Every write counts: a publish, a status change, the book's removal.
///
/// # Outcomes
/// `UBDCC_OK` with `*out_changes` the new stamp (greater than `last_seen`), at once when the book
/// already changed; `UBDCC_ERR_TIMEOUT` when nothing newer was published in time (`*out_changes`
/// untouched); the errors of `ubdcc_book_info` (`UBDCC_ERR_NOT_FOUND`, `UBDCC_ERR_WRITER_GONE`,
/// `UBDCC_ERR_WRITER_HUNG`, ... also when the writer dies during the wait), and
/// `UBDCC_ERR_NULL_ARGUMENT` / `UBDCC_ERR_INVALID_ARGUMENT` for bad arguments.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `exchange` and `market` are
/// valid C strings; `out_changes` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_wait_for_update(
    reader: *mut ubdcc_reader_t,
    exchange: *const c_char,
    market: *const c_char,
    last_seen: u64,
    timeout_ms: u64,
    out_changes: *mut u64,
) -> ubdcc_status_t {
    guarded(|| {
        if out_changes.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_changes is null");
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now; `exchange` and
        // `market` are null or valid C strings (contract).
        let (handle, exchange, market) = match unsafe { book_call(reader, exchange, market) } {
            Ok(args) => args,
            Err(status) => return status,
        };
        let timeout = Duration::from_millis(timeout_ms);
        match handle
            .reader
            .wait_for_update(exchange, market, last_seen, timeout)
        {
            // SAFETY: `out_changes` is non-null (checked) and valid for a write (contract).
            Ok(outcome) => unsafe { report(outcome, out_changes) },
            Err(error) => fail_read(&error),
        }
    })
}

/// Sleeps until any book of any segment of the reader's cluster changed since this reader's
/// previous `ubdcc_wait_for_any` (on the first call: since the segments were created), at most
/// `timeout_ms` milliseconds: a publish, a writer found dead or hung, a DCN's segment appearing
/// or going away. Then compare the `changes` of the books you follow with what you last read.
///
/// # Outcomes
/// `UBDCC_OK` with `*out_changes` the highest segment change stamp; `UBDCC_ERR_TIMEOUT` when
/// nothing changed in time; `UBDCC_ERR_NULL_ARGUMENT` for a null pointer.
///
/// # Safety
/// `reader` is a live handle used by no other thread during the call; `out_changes` is valid for
/// a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ubdcc_wait_for_any(
    reader: *mut ubdcc_reader_t,
    timeout_ms: u64,
    out_changes: *mut u64,
) -> ubdcc_status_t {
    guarded(|| {
        if out_changes.is_null() {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "out_changes is null");
        }
        // SAFETY: `reader` is null or a live handle used only by this thread now (contract).
        let Some(handle) = (unsafe { reader.as_mut() }) else {
            return fail(UBDCC_ERR_NULL_ARGUMENT, "reader is null");
        };
        let outcome = handle
            .reader
            .wait_for_any(Duration::from_millis(timeout_ms));
        // SAFETY: `out_changes` is non-null (checked) and valid for a write (contract).
        unsafe { report(outcome, out_changes) }
    })
}

/// The status of a wait's outcome, storing a new stamp.
///
/// # Safety
/// `out_changes` is valid for a write.
unsafe fn report(outcome: WaitOutcome, out_changes: *mut u64) -> ubdcc_status_t {
    match outcome {
        WaitOutcome::Changed(stamp) => {
            // SAFETY: valid for a write (this function's contract).
            unsafe { out_changes.write(stamp) };
            UBDCC_OK
        }
        WaitOutcome::TimedOut => fail(UBDCC_ERR_TIMEOUT, "nothing changed within the timeout"),
    }
}
