//! The one wall clock of the engine (timestamps published with books are Unix time).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in nanoseconds (0 if the clock is before 1970).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}
