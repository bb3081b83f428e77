//! Status codes and the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use ubdcc_shm::ReadError;

/// The result of every fallible `ubdcc_` function.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ubdcc_status_t {
    /// Success.
    UBDCC_OK = 0,
    /// A required pointer argument was null.
    UBDCC_ERR_NULL_ARGUMENT = 1,
    /// An argument was invalid: not UTF-8, a bad cluster name, a negative limit, a NaN threshold.
    UBDCC_ERR_INVALID_ARGUMENT = 2,
    /// No segment of the cluster on this host holds the book.
    UBDCC_ERR_NOT_FOUND = 3,
    /// The book exists but is not synced (starting or out of sync); no levels were returned.
    UBDCC_ERR_OUT_OF_SYNC = 4,
    /// The writer (DCN) of the book's segment is gone.
    UBDCC_ERR_WRITER_GONE = 5,
    /// The writer's heartbeat stopped: it is hung or stopped.
    UBDCC_ERR_WRITER_HUNG = 6,
    /// The book changed during every bounded read attempt.
    UBDCC_ERR_CONTENDED = 7,
    /// The output array was too small; it holds the first `capacity` entries and the count
    /// output says how many there are.
    UBDCC_ERR_BUFFER_TOO_SMALL = 8,
    /// A system call failed.
    UBDCC_ERR_IO = 9,
    /// A bug inside the library (a Rust panic, caught at the boundary).
    UBDCC_ERR_INTERNAL = 10,
    /// A wait ended without a change: nothing newer than `last_seen` was published within the
    /// timeout (`ubdcc_wait_for_update`, `ubdcc_wait_for_any`).
    UBDCC_ERR_TIMEOUT = 11,
}

pub use ubdcc_status_t::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error and returns `status`.
pub(crate) fn fail(status: ubdcc_status_t, message: impl Into<String>) -> ubdcc_status_t {
    // Interior NULs cannot come from our messages, but must not truncate silently either.
    let message = message.into().replace('\0', " ");
    let message = CString::new(message).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
    status
}

/// Records a read error and maps it to its status.
pub(crate) fn fail_read(error: &ReadError) -> ubdcc_status_t {
    fail(status_of(error), error.to_string())
}

/// The status of a read error.
pub(crate) fn status_of(error: &ReadError) -> ubdcc_status_t {
    match error {
        ReadError::NotFound { .. } => UBDCC_ERR_NOT_FOUND,
        ReadError::NotSynced { .. } => UBDCC_ERR_OUT_OF_SYNC,
        // A shrunk segment is as unreadable as a dead writer's, and for good; the message says
        // which it is.
        ReadError::WriterGone { .. } | ReadError::SegmentShrunk { .. } => UBDCC_ERR_WRITER_GONE,
        ReadError::WriterHung { .. } => UBDCC_ERR_WRITER_HUNG,
        ReadError::Contended { .. } => UBDCC_ERR_CONTENDED,
        ReadError::InvalidQuery(_) => UBDCC_ERR_INVALID_ARGUMENT,
        ReadError::Io { .. } => UBDCC_ERR_IO,
    }
}

/// Records why a reader could not be opened: an invalid cluster name or trust setting.
pub(crate) fn fail_open(error: &impl std::error::Error) -> ubdcc_status_t {
    fail(UBDCC_ERR_INVALID_ARGUMENT, error.to_string())
}

/// The message of the last error on the calling thread ("" if none).
///
/// The pointer stays valid until the next `ubdcc_` call on the same thread; copy the text if you
/// need it longer. Never null.
#[unsafe(no_mangle)]
pub extern "C" fn ubdcc_last_error_message() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// A static, NUL-terminated name for a status code (`"UBDCC_ERR_NOT_FOUND"`); never null.
///
/// Takes a plain `int` so that any value a C caller passes is defined behaviour; values that are
/// not a status code give `"UBDCC_UNKNOWN_STATUS"`.
#[unsafe(no_mangle)]
pub extern "C" fn ubdcc_status_name(status: c_int) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"UBDCC_OK\0",
        1 => b"UBDCC_ERR_NULL_ARGUMENT\0",
        2 => b"UBDCC_ERR_INVALID_ARGUMENT\0",
        3 => b"UBDCC_ERR_NOT_FOUND\0",
        4 => b"UBDCC_ERR_OUT_OF_SYNC\0",
        5 => b"UBDCC_ERR_WRITER_GONE\0",
        6 => b"UBDCC_ERR_WRITER_HUNG\0",
        7 => b"UBDCC_ERR_CONTENDED\0",
        8 => b"UBDCC_ERR_BUFFER_TOO_SMALL\0",
        9 => b"UBDCC_ERR_IO\0",
        10 => b"UBDCC_ERR_INTERNAL\0",
        11 => b"UBDCC_ERR_TIMEOUT\0",
        _ => b"UBDCC_UNKNOWN_STATUS\0",
    };
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn name_of(status: c_int) -> String {
        // SAFETY: `ubdcc_status_name` returns a pointer to a static NUL-terminated string.
        unsafe { CStr::from_ptr(ubdcc_status_name(status)) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_status_has_its_own_name_and_unknown_values_are_safe() {
        assert_eq!(name_of(UBDCC_OK as c_int), "UBDCC_OK");
        assert_eq!(name_of(UBDCC_ERR_INTERNAL as c_int), "UBDCC_ERR_INTERNAL");
        assert_eq!(name_of(UBDCC_ERR_CONTENDED as c_int), "UBDCC_ERR_CONTENDED");
        assert_eq!(name_of(UBDCC_ERR_TIMEOUT as c_int), "UBDCC_ERR_TIMEOUT");
        assert_eq!(name_of(42), "UBDCC_UNKNOWN_STATUS");
        assert_eq!(name_of(-1), "UBDCC_UNKNOWN_STATUS");
    }
}
