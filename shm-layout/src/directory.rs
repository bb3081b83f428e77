//! The directory: which book (exchange + market) lives in which slot, and in which generation.
//!
//! Entry `i` describes slot `i`. Each entry has its own sequence word, so a reader scanning the
//! directory never sees half of a name; the generation is bumped every time the slot is given to a
//! book, so a reader holding `(slot, generation)` notices when the book it looked up is gone.

use std::sync::atomic::{AtomicU64, Ordering};

/// Longest exchange or market name, in bytes, that fits an entry.
pub const MAX_NAME_LEN: usize = 48;

const NAME_WORDS: usize = MAX_NAME_LEN / 8;

/// One directory entry (128 bytes).
#[repr(C, align(64))]
pub struct DirectoryEntry {
    /// Sequence word for this entry: even when stable, odd while the writer changes it.
    pub(crate) seq: AtomicU64,
    /// Generation of the slot's current (or last) book; 0 until the slot is first used.
    pub(crate) generation: AtomicU64,
    /// 1 while a book lives in the slot, 0 when the slot is free.
    pub(crate) in_use: AtomicU64,
    /// The exchange string, UTF-8, NUL-padded, packed little-endian into words.
    pub(crate) exchange: [AtomicU64; NAME_WORDS],
    /// The market symbol, same encoding.
    pub(crate) market: [AtomicU64; NAME_WORDS],
    pub(crate) _reserved: AtomicU64,
}

const _: () = assert!(size_of::<DirectoryEntry>() == 128);

/// Packs `name` into NUL-padded little-endian words; `None` when it is empty, too long or holds a
/// NUL byte (which would end it early on the way back).
pub(crate) fn pack_name(name: &str) -> Option<[u64; NAME_WORDS]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || bytes.contains(&0) {
        return None;
    }
    let mut padded = [0u8; MAX_NAME_LEN];
    padded[..bytes.len()].copy_from_slice(bytes);
    let mut words = [0u64; NAME_WORDS];
    for (word, chunk) in words.iter_mut().zip(padded.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        *word = u64::from_le_bytes(le);
    }
    Some(words)
}

/// The inverse of [`pack_name`]; invalid UTF-8 (only possible in a torn or corrupt copy) is
/// replaced rather than trusted.
pub(crate) fn unpack_name(words: &[u64; NAME_WORDS]) -> String {
    let mut bytes = Vec::with_capacity(MAX_NAME_LEN);
    for word in words {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.truncate(len);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads packed name words (Relaxed; the caller validates the entry's sequence afterwards).
pub(crate) fn load_name(words: &[AtomicU64; NAME_WORDS]) -> [u64; NAME_WORDS] {
    std::array::from_fn(|i| words[i].load(Ordering::Relaxed))
}

/// Stores packed name words (Relaxed; the caller holds the entry's write section).
pub(crate) fn store_name(words: &[AtomicU64; NAME_WORDS], packed: &[u64; NAME_WORDS]) {
    for (word, value) in words.iter().zip(packed) {
        word.store(*value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_packing() {
        for name in [
            "binance.com",
            "binance.com-vanilla-options-testnet",
            "BTC-250328-100000-C",
        ] {
            assert_eq!(unpack_name(&pack_name(name).unwrap()), name);
        }
        let longest = "x".repeat(MAX_NAME_LEN);
        assert_eq!(unpack_name(&pack_name(&longest).unwrap()), longest);
    }

    #[test]
    fn empty_long_or_nul_names_are_refused() {
        assert!(pack_name("").is_none());
        assert!(pack_name(&"x".repeat(MAX_NAME_LEN + 1)).is_none());
        assert!(pack_name("BTC\0USDT").is_none());
    }
}
