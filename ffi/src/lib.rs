//! The C ABI of ubdcc's shared-memory readers: read any order book of a cluster on this host
//! from C (or any language with a C FFI) in well under a microsecond.
//!
//! The header is `ffi/include/ubdcc.h`; `tests/c_abi.rs` compiles a C program against it with
//! gcc and checks every struct's layout and the layout hash against this crate, so the two cannot
//! drift. `ffi/examples/read_book.c` shows the whole API in use.
//!
//! Conventions: every exported symbol starts with `ubdcc_`, structs end in `_t`, fallible
//! functions return a `ubdcc_status_t` (0 is success) and leave a message for
//! `ubdcc_last_error_message`; a null or invalid argument is an error code, never a crash; a
//! Rust panic is caught at the boundary and returned as `UBDCC_ERR_INTERNAL`.
//!
//! Readers believe only segments of their own user, or of owners named in `UBDCC_SHM_TRUST`
//! (`uid:N,gid:N`) or passed to `ubdcc_reader_open_trusting`, that nobody else may write
//! (`ubdcc_shm::Trust` explains why).
//!
//! # Example
//! The whole of `ffi/examples/read_book.c`, which `tests/c_abi.rs` compiles against the header
//! and runs against a live segment, so this example cannot go stale:
//!
//! ```c
#![doc = include_str!("../examples/read_book.c")]
//! ```
#![allow(non_camel_case_types)]

mod book;
mod reader;
mod status;
mod types;
mod wait;

pub use book::{ubdcc_bbo_all, ubdcc_depth_stats, ubdcc_fill_price, ubdcc_get_book};
pub use reader::{
    ubdcc_bbo, ubdcc_book_info, ubdcc_get_asks, ubdcc_get_bids, ubdcc_layout_hash,
    ubdcc_list_books, ubdcc_reader_close, ubdcc_reader_open, ubdcc_reader_open_trusting,
    ubdcc_reader_t,
};
pub use status::{ubdcc_last_error_message, ubdcc_status_name, ubdcc_status_t};
pub use types::{
    UBDCC_AMOUNT_BASE, UBDCC_AMOUNT_QUOTE, UBDCC_BOOK_OUT_OF_SYNC, UBDCC_BOOK_STARTING,
    UBDCC_BOOK_SYNCED, UBDCC_BUY, UBDCC_FRESHNESS_NO_EXCHANGE_TIME, UBDCC_FRESHNESS_SNAPSHOT_TIME,
    UBDCC_SEGMENT_NAME_CAPACITY, UBDCC_SELL, ubdcc_band_t, ubdcc_bbo_entry_t, ubdcc_bbo_t,
    ubdcc_book_entry_t, ubdcc_book_info_t, ubdcc_depth_stats_t, ubdcc_fill_t, ubdcc_level_t,
};
pub use wait::{ubdcc_wait_for_any, ubdcc_wait_for_update};
