//! Delivery faults pending on one market, and how they turn a generated event into the frames
//! the market's subscribers receive. Faults never touch the book: a dropped event is still part
//! of the truth, so a client sees a gap, exactly as when Binance loses a message.
//!
//! For one event the faults apply in this order: drop, silence, lag, malformed, reorder,
//! duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `refuse_subscribe` fault: which `SUBSCRIBE` requests are refused (whole, with Binance's
/// `Invalid request: invalid stream`) instead of accepted. Binance accepts a stream of a symbol
/// it does not list and sends nothing on it; this brings back the other behaviour a server might
/// have, so a client's handling of a refusal can be tested.
#[derive(Debug, Default)]
pub(crate) struct SubscribeRefusals {
    /// Refuse streams of symbols the exchange does not list.
    unlisted: bool,
    /// Refuse streams of these symbols (lowercase, as stream names spell them), listed or not.
    symbols: Vec<String>,
}

impl SubscribeRefusals {
    /// Refuse streams of `symbol` (any case), or with `None` of every unlisted symbol.
    pub(crate) fn refuse(&mut self, symbol: Option<&str>) {
        match symbol {
            Some(symbol) => self.symbols.push(symbol.to_ascii_lowercase()),
            None => self.unlisted = true,
        }
    }

    /// Whether a stream of `symbol` (lowercase) is refused; `listed` says whether the exchange
    /// lists it.
    pub(crate) fn refuses(&self, symbol: &str, listed: bool) -> bool {
        (self.unlisted && !listed) || self.symbols.iter().any(|refused| refused == symbol)
    }
}

/// Faults armed on one market. Counters count events from the next one generated.
#[derive(Debug, Default)]
pub(crate) struct MarketFaults {
    /// Events still to drop.
    drop: u32,
    /// Events still to deliver twice.
    duplicate: u32,
    /// Pairs of events still to swap.
    reorder: u32,
    /// The first event of a swapped pair, delivered right after the next event.
    held: Option<Arc<str>>,
    /// Malformed frames to send before the next delivered event.
    malformed: u32,
    /// Deliver nothing until then.
    silent_until: Option<Instant>,
    /// Events generated until then reach subscribers `lag` late (a slow path between the
    /// exchange and the client: every event arrives, in order, with its own old `E`).
    lag_until: Option<Instant>,
    /// How late lagged events arrive.
    lag: Duration,
    /// Lagged events not yet due: when each is due, and its frame.
    delayed: VecDeque<(Instant, Arc<str>)>,
    /// Snapshots still to serve stale.
    stale_snapshots: u32,
    /// How many updates behind a stale snapshot is.
    stale_behind: usize,
    /// The market is delisted: depth answers -1121 and its stream carries nothing.
    delisted: bool,
}

impl MarketFaults {
    /// Drop the next `count` events.
    pub(crate) fn drop_next(&mut self, count: u32) {
        self.drop = self.drop.saturating_add(count);
    }

    /// Deliver each of the next `count` events twice in a row.
    pub(crate) fn duplicate_next(&mut self, count: u32) {
        self.duplicate = self.duplicate.saturating_add(count);
    }

    /// Swap the next `pairs` pairs of events (event k+1 is delivered before event k).
    pub(crate) fn reorder_next(&mut self, pairs: u32) {
        self.reorder = self.reorder.saturating_add(pairs);
    }

    /// Send `count` malformed frames before the next delivered event.
    pub(crate) fn malformed_next(&mut self, count: u32) {
        self.malformed = self.malformed.saturating_add(count);
    }

    /// Deliver nothing until `until`; the events in between are lost.
    pub(crate) fn silence_until(&mut self, until: Instant) {
        self.silent_until = Some(
            self.silent_until
                .map_or(until, |current| current.max(until)),
        );
    }

    /// Delivers the events generated during the next `duration` each `lag` late, in order.
    pub(crate) fn lag_for(&mut self, lag: Duration, until: Instant) {
        self.lag = lag;
        self.lag_until = Some(until);
    }

    /// Delist the market until the faults are cleared: its depth snapshots answer -1121
    /// (`Invalid symbol.`), as Binance's do for a symbol it no longer lists, and its events
    /// reach no subscriber (the subscription stays, as Binance's does).
    pub(crate) fn delist(&mut self) {
        self.delisted = true;
    }

    /// Whether the market is delisted (see [`MarketFaults::delist`]).
    pub(crate) fn is_delisted(&self) -> bool {
        self.delisted
    }

    /// Serve the next `count` snapshots `behind` updates old.
    pub(crate) fn stale_snapshots(&mut self, count: u32, behind: usize) {
        self.stale_snapshots = self.stale_snapshots.saturating_add(count);
        self.stale_behind = behind;
    }

    /// Disarms every fault. An event held for a swap is still delivered after the next event,
    /// and lagged events at their due time, so that clearing does not itself lose an event.
    pub(crate) fn clear(&mut self) {
        let held = self.held.take();
        let delayed = std::mem::take(&mut self.delayed);
        *self = MarketFaults {
            held,
            delayed,
            ..MarketFaults::default()
        };
    }

    /// If a stale snapshot is armed, consumes it and returns how many updates behind to serve.
    pub(crate) fn take_stale_snapshot(&mut self) -> Option<usize> {
        if self.stale_snapshots == 0 {
            return None;
        }
        self.stale_snapshots -= 1;
        Some(self.stale_behind)
    }

    /// The frames that carry the event `data` (its raw JSON) to subscribers.
    pub(crate) fn deliver(&mut self, data: Arc<str>, now: Instant) -> Vec<Arc<str>> {
        if self.drop > 0 {
            self.drop -= 1;
            return Vec::new();
        }
        if self.delisted || self.silent_until.is_some_and(|until| now < until) {
            return Vec::new();
        }
        self.silent_until = None;
        let mut frames = Vec::new();
        if self.lag_until.is_some_and(|until| now < until) {
            self.delayed.push_back((now + self.lag, data));
            self.release_delayed(now, &mut frames);
            return frames;
        }
        self.lag_until = None;
        // Lag over: what is still delayed goes first, in order, then this event.
        self.release_delayed(now + self.lag, &mut frames);
        for _ in 0..std::mem::take(&mut self.malformed) {
            frames.push(malformed(&data));
        }
        if let Some(held) = self.held.take() {
            frames.extend(self.copies(&data));
            frames.push(held);
        } else if self.reorder > 0 {
            self.reorder -= 1;
            self.held = Some(data);
        } else {
            frames.extend(self.copies(&data));
        }
        frames
    }

    /// Moves the lagged events due by `now` into `frames`, oldest first.
    fn release_delayed(&mut self, now: Instant, frames: &mut Vec<Arc<str>>) {
        while self.delayed.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, frame)) = self.delayed.pop_front() {
                frames.push(frame);
            }
        }
    }

    /// The event once, or twice if a duplicate is armed.
    fn copies(&mut self, data: &Arc<str>) -> Vec<Arc<str>> {
        if self.duplicate > 0 {
            self.duplicate -= 1;
            vec![Arc::clone(data), Arc::clone(data)]
        } else {
            vec![Arc::clone(data)]
        }
    }
}

/// The first half of the event's JSON: invalid JSON that still looks like the start of an event,
/// as a truncated message would.
fn malformed(data: &str) -> Arc<str> {
    let mut cut = data.len() / 2;
    while !data.is_char_boundary(cut) {
        cut -= 1;
    }
    Arc::from(&data[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Arc<str> {
        Arc::from(format!("{{\"u\":{n}}}"))
    }

    fn run(faults: &mut MarketFaults, events: std::ops::Range<u32>) -> Vec<String> {
        let now = Instant::now();
        events
            .flat_map(|n| faults.deliver(event(n), now))
            .map(|frame| frame.to_string())
            .collect()
    }

    #[test]
    fn dropping_skips_exactly_the_next_events() {
        let mut faults = MarketFaults::default();
        faults.drop_next(2);
        assert_eq!(run(&mut faults, 0..4), [r#"{"u":2}"#, r#"{"u":3}"#]);
    }

    #[test]
    fn reordering_swaps_a_pair() {
        let mut faults = MarketFaults::default();
        faults.reorder_next(1);
        assert_eq!(
            run(&mut faults, 0..3),
            [r#"{"u":1}"#, r#"{"u":0}"#, r#"{"u":2}"#]
        );
    }

    #[test]
    fn duplicating_repeats_each_event_in_place() {
        let mut faults = MarketFaults::default();
        faults.duplicate_next(1);
        assert_eq!(
            run(&mut faults, 0..2),
            [r#"{"u":0}"#, r#"{"u":0}"#, r#"{"u":1}"#]
        );
    }

    #[test]
    fn malformed_frames_precede_the_next_event_and_do_not_parse() {
        let mut faults = MarketFaults::default();
        faults.malformed_next(1);
        let frames = run(&mut faults, 0..1);
        assert_eq!(frames.len(), 2);
        assert!(serde_json::from_str::<serde_json::Value>(&frames[0]).is_err());
        assert_eq!(frames[1], r#"{"u":0}"#);
    }

    #[test]
    fn silence_loses_events_until_it_ends() {
        let mut faults = MarketFaults::default();
        let now = Instant::now();
        faults.silence_until(now + std::time::Duration::from_secs(60));
        assert!(faults.deliver(event(0), now).is_empty());
        let later = now + std::time::Duration::from_secs(61);
        assert_eq!(faults.deliver(event(1), later).len(), 1);
    }

    #[test]
    fn lagged_events_arrive_late_in_order_and_none_is_lost() {
        let mut faults = MarketFaults::default();
        let start = Instant::now();
        let ms = Duration::from_millis;
        faults.lag_for(ms(300), start + ms(500));
        let mut received = Vec::new();
        for step in 0..10u32 {
            let now = start + ms(100) * step;
            received.extend(
                faults
                    .deliver(event(step), now)
                    .iter()
                    .map(|f| f.to_string()),
            );
            if step == 3 {
                assert_eq!(
                    received,
                    [r#"{"u":0}"#],
                    "event 0, 300 ms late, and no other"
                );
            }
        }
        let expected: Vec<String> = (0..10).map(|n| format!("{{\"u\":{n}}}")).collect();
        assert_eq!(received, expected);
    }

    #[test]
    fn clearing_still_delivers_a_held_event() {
        let mut faults = MarketFaults::default();
        faults.reorder_next(5);
        assert!(run(&mut faults, 0..1).is_empty());
        faults.clear();
        assert_eq!(
            run(&mut faults, 1..3),
            [r#"{"u":1}"#, r#"{"u":0}"#, r#"{"u":2}"#]
        );
    }

    #[test]
    fn refusals_name_symbols_or_every_unlisted_one() {
        let mut refusals = SubscribeRefusals::default();
        assert!(
            !refusals.refuses("nosuchusdt", false),
            "accepted by default, as Binance does"
        );
        refusals.refuse(Some("SIM1USDT"));
        assert!(refusals.refuses("sim1usdt", true));
        assert!(!refusals.refuses("sim0usdt", true));
        assert!(!refusals.refuses("nosuchusdt", false));
        refusals.refuse(None);
        assert!(refusals.refuses("nosuchusdt", false));
        assert!(!refusals.refuses("sim0usdt", true));
    }

    #[test]
    fn stale_snapshots_are_consumed_one_by_one() {
        let mut faults = MarketFaults::default();
        faults.stale_snapshots(2, 7);
        assert_eq!(faults.take_stale_snapshot(), Some(7));
        assert_eq!(faults.take_stale_snapshot(), Some(7));
        assert_eq!(faults.take_stale_snapshot(), None);
    }
}
