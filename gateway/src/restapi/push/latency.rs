//! How long messages take from the DCN's publish to the client's socket: a Prometheus histogram,
//! `ubdcc_push_publish_to_sent_seconds`, filled by the client tasks once per batch they wrote.
//!
//! "Publish" is the time the DCN stamped on the version (the slot's publish time, Unix ns);
//! "sent" is when the batch holding the message was flushed to the kernel (`/ws`) or handed to
//! the HTTP connection (`/sse`). Status messages carry no version and are not counted.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Upper bounds of the buckets, in seconds: 100 µs to 5 s in 1-2-5 steps (the watcher runs a
/// pass at most every 1 ms; a loaded machine adds tens of ms).
const BOUNDS: [f64; 15] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// The histogram, shared by every client task.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Per bucket (the last one is +Inf), not cumulative.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    /// Records the messages published at `published_ns` (Unix ns; 0: not a version) that were
    /// just sent: one pass over the batch, then one atomic add per bucket used.
    pub(crate) fn record(&self, published_ns: impl Iterator<Item = u64>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let mut counts = [0u64; BOUNDS.len() + 1];
        let mut sum = 0u64;
        for published in published_ns.filter(|ns| *ns != 0) {
            let ns = now.saturating_sub(published);
            sum += ns;
            let seconds = ns as f64 / 1e9;
            let bucket = BOUNDS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(BOUNDS.len());
            counts[bucket] += 1;
        }
        for (shared, count) in self.counts.iter().zip(counts) {
            if count > 0 {
                shared.fetch_add(count, Ordering::Relaxed);
            }
        }
        self.sum_ns.fetch_add(sum, Ordering::Relaxed);
    }

    /// The histogram in Prometheus' text format.
    pub(crate) fn write(&self, out: &mut String) {
        let name = "ubdcc_push_publish_to_sent_seconds";
        // Writing into a String cannot fail.
        writeln!(out, "# HELP {name} From the DCN's publish of a version to its message leaving for a push client.").ok();
        writeln!(out, "# TYPE {name} histogram").ok();
        let mut cumulative = 0;
        for (bound, count) in BOUNDS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}").ok();
        }
        cumulative += self.counts[BOUNDS.len()].load(Ordering::Relaxed);
        writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}").ok();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}").ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_land_in_their_buckets_and_the_text_is_cumulative() {
        let latency = Latency::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // ~0 (first bucket, or the next on a slow machine), ~3 s, and a status (not counted).
        latency.record([now, now - 3_000_000_000, 0].into_iter());
        let mut text = String::new();
        latency.write(&mut text);
        assert!(
            text.contains("ubdcc_push_publish_to_sent_seconds_bucket{le=\"2\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ubdcc_push_publish_to_sent_seconds_bucket{le=\"5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ubdcc_push_publish_to_sent_seconds_count 2\n"),
            "{text}"
        );
    }
}
