//! The per-connection client-message limit: frames received within the last second, counted
//! over a sliding window (Binance documents "messages per second" without saying how it
//! counts; a sliding window is the stricter reading).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Arrival times of the client frames of the last second.
#[derive(Debug, Default)]
pub(crate) struct MessageRate {
    arrivals: VecDeque<Instant>,
}

impl MessageRate {
    /// Records a frame arriving at `now`; returns how many arrived within the last second,
    /// this one included.
    pub(crate) fn record(&mut self, now: Instant) -> usize {
        while let Some(&oldest) = self.arrivals.front() {
            if now.duration_since(oldest) < Duration::from_secs(1) {
                break;
            }
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        self.arrivals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_last_second() {
        let mut rate = MessageRate::default();
        let start = Instant::now();
        assert_eq!(rate.record(start), 1);
        assert_eq!(rate.record(start + Duration::from_millis(500)), 2);
        assert_eq!(rate.record(start + Duration::from_millis(999)), 3);
        assert_eq!(rate.record(start + Duration::from_millis(1500)), 2);
    }
}
