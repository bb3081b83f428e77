//! The layout hash: a fingerprint of every shared struct's size and field offsets.
//!
//! The hash is computed at compile time from `offset_of!` and the packing constants, so moving,
//! resizing or renaming a field, or changing how a word is packed or what a code means, changes it even when nobody remembered to bump [`crate::LAYOUT_MAJOR`]. Writers store it in the
//! header, readers compare it, and `ffi/include/ubdcc.h` carries it as `UBDCC_LAYOUT_HASH`, which a
//! test checks, so a C program built against a stale header is refused at open.

use std::mem::offset_of;

use crate::directory::DirectoryEntry;
use crate::header::{SegmentHeader, SegmentState};
use crate::proof::{Freshness, TOP_HASH_LEVELS};
use crate::ring::RING_HEAD_SHIFT;
use crate::slot::{
    DEPTH_SHIFT, FRESHNESS_SHIFT, LevelWords, PAIR_HIGH_SHIFT, QUANTITY_EXPONENT_SHIFT, SlotHeader,
};
use crate::status::{
    REASON_SHIFT, STATUS_EMPTY, STATUS_OUT_OF_SYNC, STATUS_STARTING, STATUS_SYNCED,
};

/// `(name, offset or size)` of everything a reader in another language relies on.
const LAYOUT: &[(&str, usize)] = &[
    ("SegmentHeader", size_of::<SegmentHeader>()),
    ("magic", offset_of!(SegmentHeader, magic)),
    ("layout_major", offset_of!(SegmentHeader, layout_major)),
    ("layout_minor", offset_of!(SegmentHeader, layout_minor)),
    ("layout_hash", offset_of!(SegmentHeader, layout_hash)),
    ("segment_size", offset_of!(SegmentHeader, segment_size)),
    ("writer_pid", offset_of!(SegmentHeader, writer_pid)),
    ("state", offset_of!(SegmentHeader, state)),
    (
        "writer_start_time",
        offset_of!(SegmentHeader, writer_start_time),
    ),
    ("writer_epoch", offset_of!(SegmentHeader, writer_epoch)),
    (
        "directory_offset",
        offset_of!(SegmentHeader, directory_offset),
    ),
    ("slot_offset", offset_of!(SegmentHeader, slot_offset)),
    ("slot_size", offset_of!(SegmentHeader, slot_size)),
    ("slot_count", offset_of!(SegmentHeader, slot_count)),
    (
        "levels_per_side",
        offset_of!(SegmentHeader, levels_per_side),
    ),
    ("heartbeat_ns", offset_of!(SegmentHeader, heartbeat_ns)),
    (
        "directory_version",
        offset_of!(SegmentHeader, directory_version),
    ),
    ("changes", offset_of!(SegmentHeader, changes)),
    ("wake", offset_of!(SegmentHeader, wake)),
    ("DirectoryEntry", size_of::<DirectoryEntry>()),
    ("entry.seq", offset_of!(DirectoryEntry, seq)),
    ("entry.generation", offset_of!(DirectoryEntry, generation)),
    ("entry.in_use", offset_of!(DirectoryEntry, in_use)),
    ("entry.exchange", offset_of!(DirectoryEntry, exchange)),
    ("entry.market", offset_of!(DirectoryEntry, market)),
    ("SlotHeader", size_of::<SlotHeader>()),
    ("slot.seq", offset_of!(SlotHeader, seq)),
    ("slot.generation", offset_of!(SlotHeader, generation)),
    ("slot.status", offset_of!(SlotHeader, status)),
    (
        "slot.last_update_id",
        offset_of!(SlotHeader, last_update_id),
    ),
    ("slot.event_time_ms", offset_of!(SlotHeader, event_time_ms)),
    (
        "slot.receive_time_ns",
        offset_of!(SlotHeader, receive_time_ns),
    ),
    (
        "slot.publish_time_ns",
        offset_of!(SlotHeader, publish_time_ns),
    ),
    ("slot.rings", offset_of!(SlotHeader, rings)),
    ("slot.exponents", offset_of!(SlotHeader, exponents)),
    ("slot.sync_counters", offset_of!(SlotHeader, sync_counters)),
    ("slot.updates", offset_of!(SlotHeader, updates)),
    ("slot.changes", offset_of!(SlotHeader, changes)),
    (
        "slot.best_bid_price",
        offset_of!(SlotHeader, best_bid_price),
    ),
    (
        "slot.best_bid_quantity",
        offset_of!(SlotHeader, best_bid_quantity),
    ),
    (
        "slot.best_ask_price",
        offset_of!(SlotHeader, best_ask_price),
    ),
    (
        "slot.best_ask_quantity",
        offset_of!(SlotHeader, best_ask_quantity),
    ),
    ("slot.wake", offset_of!(SlotHeader, wake)),
    (
        "slot.verified_at_ms",
        offset_of!(SlotHeader, verified_at_ms),
    ),
    (
        "slot.audit_counters",
        offset_of!(SlotHeader, audit_counters),
    ),
    ("slot.top_hash", offset_of!(SlotHeader, top_hash)),
    (
        "slot.top_hash_update_id",
        offset_of!(SlotHeader, top_hash_update_id),
    ),
    ("LevelWords", size_of::<LevelWords>()),
    ("level.price", offset_of!(LevelWords, price)),
    ("level.quantity", offset_of!(LevelWords, quantity)),
    // How words are packed and what their codes mean: part of the format as much as the offsets.
    ("pack.pair_high_shift", PAIR_HIGH_SHIFT as usize),
    (
        "pack.quantity_exponent_shift",
        QUANTITY_EXPONENT_SHIFT as usize,
    ),
    ("pack.reason_shift", REASON_SHIFT as usize),
    ("pack.freshness_shift", FRESHNESS_SHIFT as usize),
    ("pack.depth_shift", DEPTH_SHIFT as usize),
    (
        "freshness.snapshot_time",
        Freshness::SNAPSHOT_TIME.bits() as usize,
    ),
    (
        "freshness.no_exchange_time",
        Freshness::NO_EXCHANGE_TIME.bits() as usize,
    ),
    ("top_hash.levels", TOP_HASH_LEVELS),
    ("pack.ring_head_shift", RING_HEAD_SHIFT as usize),
    ("state.initializing", SegmentState::Initializing as usize),
    ("state.ready", SegmentState::Ready as usize),
    ("state.closed", SegmentState::Closed as usize),
    ("status.empty", STATUS_EMPTY as usize),
    ("status.starting", STATUS_STARTING as usize),
    ("status.synced", STATUS_SYNCED as usize),
    ("status.out_of_sync", STATUS_OUT_OF_SYNC as usize),
];

/// FNV-1a over every name byte and every offset's little-endian bytes.
const fn fingerprint(layout: &[(&str, usize)]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    let mut i = 0;
    while i < layout.len() {
        let name = layout[i].0.as_bytes();
        let mut j = 0;
        while j < name.len() {
            hash = (hash ^ name[j] as u64).wrapping_mul(PRIME);
            j += 1;
        }
        let value = (layout[i].1 as u64).to_le_bytes();
        let mut k = 0;
        while k < value.len() {
            hash = (hash ^ value[k] as u64).wrapping_mul(PRIME);
            k += 1;
        }
        i += 1;
    }
    hash
}

/// The fingerprint of this build's shared-memory layout.
pub const LAYOUT_HASH: u64 = fingerprint(LAYOUT);

/// The layout as `(name, offset or size)` pairs, for tests that compare it with the C header.
pub fn layout_table() -> &'static [(&'static str, usize)] {
    LAYOUT
}
