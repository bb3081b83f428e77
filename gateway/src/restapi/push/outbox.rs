//! A push client's outbox: what the watcher has published for the client and its writer has not
//! sent yet, bounded whatever the client's pace.
//!
//! Each subscription holds a short FIFO of shared, already serialised messages ([`Payload`]s).
//! A client that keeps up sees every message. One that falls behind gets conflated state:
//! - a new `@bbo` message replaces an unsent one (latest state wins);
//! - a `@bookN` diff that would queue behind an unsent data message replaces it with a snapshot
//!   of the current view (one the watcher serialised once for every such client), because diffs
//!   cannot be dropped but a snapshot supersedes all of them;
//! - status messages queue; since every status is followed by full state (a snapshot, or a
//!   whole `@bbo`), a FIFO longer than [`MAX_PENDING_PER_STREAM`] drops its oldest entries up to
//!   a status, and what remains is still a consistent sequence.
//!
//! So a client's memory is at most its subscriptions × [`MAX_PENDING_PER_STREAM`] pointers to
//! messages shared with every other subscriber. A client whose oldest unsent message waited
//! longer than [`super::limits::CUT_AFTER`] is cut with a reason ([`CutReason`]). Its task
//! takes at most [`super::limits::MAX_CHUNK_BYTES`] at a time ([`Outbox::take`]): the rest
//! stays here, where it is still conflated and the cut still applies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// One serialised message (`{"stream":…,"data":…}`), shared by every subscriber it goes to.
pub(crate) type Payload = Utf8Bytes;

/// A message on its way to one client: the shared payload and when the DCN published the
/// version it carries (Unix ns; 0 for a status message), for the publish → sent histogram.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The serialised message.
    pub(crate) payload: Payload,
    /// The version's publish time, Unix ns; 0 when the message carries no version.
    pub(crate) published_ns: u64,
}

/// A subscription's identity inside the push server: one per distinct stream name subscribed
/// by anyone, never reused.
pub(crate) type TopicId = u64;

/// Entries a subscription may hold unsent; see the module doc for why four suffice.
pub(crate) const MAX_PENDING_PER_STREAM: usize = 4;

/// What kind of message is queued, for the conflation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Whole state (a `@bbo` message or a `@bookN` snapshot): replaces unsent data.
    State,
    /// A `@bookN` diff: cannot replace anything, is replaced by a snapshot when behind.
    Diff,
    /// A status message: never replaced.
    Status,
}

/// Why a client was cut off; sent as the close frame's reason (WebSocket) or a last event (SSE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CutReason {
    /// It read nothing for too long.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
}

impl CutReason {
    /// The text a client sees.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::TooSlow => "too slow: messages waited longer than the server keeps them",
            Self::Shutdown => "server shutting down",
        }
    }
}

/// A client's outbox, shared between the watcher (which pushes) and the client's task (which
/// takes and sends).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the client's task: something to send, or the client was cut.
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<TopicId, VecDeque<(Entry, Outgoing)>>,
    /// Topics with something pending, in the order they became so.
    order: VecDeque<TopicId>,
    /// Since when the oldest unsent message has waited.
    waiting_since: Option<Instant>,
    cut: Option<CutReason>,
}

/// What a push did, for the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; the outbox was empty before, so its task needs a wake-up.
    First,
    /// Queued behind other messages (its task is already due to wake).
    More,
    /// The client is cut (now or before): nothing was queued.
    Cut,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves consistent data (each push is one step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `payload` of `kind` for `topic` by the conflation rules; `snapshot` gives the
    /// topic's current snapshot when a diff must be replaced by one. A client whose oldest unsent
    /// message is older than `cut_after` is cut instead.
    pub(crate) fn push(
        &self,
        topic: TopicId,
        entry: Entry,
        message: &Outgoing,
        snapshot: &mut dyn FnMut() -> Payload,
        now: Instant,
        cut_after: std::time::Duration,
    ) -> Pushed {
        let mut state = self.lock();
        if state.cut.is_some() {
            return Pushed::Cut;
        }
        if state
            .waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) > cut_after)
        {
            state.cut = Some(CutReason::TooSlow);
            state.pending.clear();
            state.order.clear();
            return Pushed::Cut;
        }
        let was_empty = state.order.is_empty();
        let queue = state.pending.entry(topic).or_default();
        let newly_pending = queue.is_empty();
        conflate(queue, entry, message, snapshot);
        if newly_pending {
            state.order.push_back(topic);
        }
        if was_empty {
            state.waiting_since = Some(now);
            Pushed::First
        } else {
            Pushed::More
        }
    }

    /// Wakes the client's task.
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Waits until there may be something to send (or the client was cut).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes what is pending into `out` (in order per stream, streams in the order they became
    /// pending), whole messages until they hold `max_bytes` (at least one message). What is left
    /// stays queued, counts as waiting since `now` (the client took something), and wakes the
    /// task again. `Err` with the reason once the client is cut.
    pub(crate) fn take(
        &self,
        out: &mut Vec<Outgoing>,
        max_bytes: usize,
        now: Instant,
    ) -> Result<(), CutReason> {
        let mut state = self.lock();
        if let Some(reason) = &state.cut {
            return Err(reason.clone());
        }
        let State { pending, order, .. } = &mut *state;
        let mut bytes = 0;
        while let Some(&topic) = order.front() {
            if bytes >= max_bytes {
                break;
            }
            if let Some(queue) = pending.get_mut(&topic) {
                while bytes < max_bytes
                    && let Some((_, message)) = queue.pop_front()
                {
                    bytes += message.payload.len();
                    out.push(message);
                }
                if !queue.is_empty() {
                    break;
                }
            }
            order.pop_front();
        }
        pending.retain(|_, queue| queue.capacity() <= 2 * MAX_PENDING_PER_STREAM);
        let more = !state.order.is_empty();
        state.waiting_since = more.then_some(now);
        drop(state);
        if more {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Cuts the client for `reason` (its task ends when it next takes), drops what is pending
    /// and wakes the task.
    pub(crate) fn cut(&self, reason: CutReason) {
        let mut state = self.lock();
        state.cut.get_or_insert(reason);
        state.pending.clear();
        state.order.clear();
        drop(state);
        self.ready.notify_one();
    }

    /// Drops what is pending for `topic` (the client unsubscribed).
    pub(crate) fn forget(&self, topic: TopicId) {
        let mut state = self.lock();
        state.pending.remove(&topic);
        state.order.retain(|t| *t != topic);
        if state.order.is_empty() {
            state.waiting_since = None;
        }
    }

    /// Why the client was cut, `None` while it is not.
    pub(crate) fn cut_reason(&self) -> Option<CutReason> {
        self.lock().cut.clone()
    }

    /// `true` once the client is cut.
    #[cfg(test)]
    pub(crate) fn is_cut(&self) -> bool {
        self.lock().cut.is_some()
    }
}

/// Queues one message into a subscription's FIFO by the module doc's rules.
fn conflate(
    queue: &mut VecDeque<(Entry, Outgoing)>,
    entry: Entry,
    message: &Outgoing,
    snapshot: &mut dyn FnMut() -> Payload,
) {
    let behind_data = queue
        .back()
        .is_some_and(|(last, _)| matches!(last, Entry::State | Entry::Diff));
    match entry {
        Entry::State if behind_data => {
            queue.pop_back();
            queue.push_back((Entry::State, message.clone()));
        }
        Entry::Diff if behind_data => {
            // The snapshot is of the view this very diff leads to: the same version.
            queue.pop_back();
            let payload = snapshot();
            let published_ns = message.published_ns;
            queue.push_back((
                Entry::State,
                Outgoing {
                    payload,
                    published_ns,
                },
            ));
        }
        Entry::State | Entry::Diff | Entry::Status => queue.push_back((entry, message.clone())),
    }
    // Data entries never sit next to each other, so past the bound there is a later status to
    // start from.
    while queue.len() > MAX_PENDING_PER_STREAM {
        queue.pop_front();
        while queue
            .front()
            .is_some_and(|(first, _)| *first != Entry::Status)
        {
            queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn text(s: &str) -> Payload {
        Payload::from(s)
    }

    fn message(s: &str) -> Outgoing {
        Outgoing {
            payload: text(s),
            published_ns: 0,
        }
    }

    fn push(outbox: &Outbox, topic: TopicId, entry: Entry, s: &str) -> Pushed {
        outbox.push(
            topic,
            entry,
            &message(s),
            &mut || text("snap"),
            Instant::now(),
            LONG,
        )
    }

    fn taken(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        outbox.take(&mut out, usize::MAX, Instant::now()).unwrap();
        out.iter().map(|m| m.payload.as_str().to_owned()).collect()
    }

    #[test]
    fn a_client_that_keeps_up_gets_every_message_in_order() {
        let outbox = Outbox::default();
        assert_eq!(push(&outbox, 1, Entry::State, "s1"), Pushed::First);
        assert_eq!(taken(&outbox), ["s1"]);
        assert_eq!(push(&outbox, 1, Entry::Diff, "d1"), Pushed::First);
        assert_eq!(push(&outbox, 2, Entry::State, "b1"), Pushed::More);
        assert_eq!(taken(&outbox), ["d1", "b1"]);
    }

    #[test]
    fn a_behind_client_gets_the_latest_bbo_and_a_snapshot_instead_of_diffs() {
        let outbox = Outbox::default();
        for bbo in ["b1", "b2", "b3"] {
            push(&outbox, 1, Entry::State, bbo);
        }
        push(&outbox, 2, Entry::Diff, "d1");
        push(&outbox, 2, Entry::Diff, "d2");
        push(&outbox, 2, Entry::Diff, "d3");
        assert_eq!(taken(&outbox), ["b3", "snap"]);
    }

    #[test]
    fn statuses_are_kept_and_the_queue_stays_bounded_and_consistent() {
        let outbox = Outbox::default();
        for _ in 0..100 {
            push(&outbox, 1, Entry::Diff, "d");
            push(&outbox, 1, Entry::Status, "out");
            push(&outbox, 1, Entry::Status, "in");
            push(&outbox, 1, Entry::State, "snap2");
        }
        let got = taken(&outbox);
        assert!(got.len() <= MAX_PENDING_PER_STREAM, "{got:?}");
        assert!(
            got[0] == "out" || got[0] == "in",
            "starts at a status: {got:?}"
        );
        assert_eq!(got.last().map(String::as_str), Some("snap2"));
    }

    #[test]
    fn a_client_that_reads_nothing_is_cut_and_holds_nothing() {
        let outbox = Outbox::default();
        let start = Instant::now();
        let cut_after = Duration::from_secs(5);
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(
            outbox.push(
                1,
                Entry::State,
                &message("a"),
                &mut || text("s"),
                at(0),
                cut_after
            ),
            Pushed::First
        );
        assert_eq!(
            outbox.push(
                1,
                Entry::State,
                &message("b"),
                &mut || text("s"),
                at(5),
                cut_after
            ),
            Pushed::More
        );
        assert_eq!(
            outbox.push(
                1,
                Entry::State,
                &message("c"),
                &mut || text("s"),
                at(6),
                cut_after
            ),
            Pushed::Cut
        );
        assert!(outbox.is_cut());
        let mut out = Vec::new();
        assert_eq!(
            outbox.take(&mut out, usize::MAX, at(6)),
            Err(CutReason::TooSlow)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_take_stops_at_the_byte_budget_and_leaves_the_rest_conflating() {
        let outbox = Outbox::default();
        let big = "x".repeat(100);
        for topic in 1..=3 {
            push(&outbox, topic, Entry::State, &big);
        }
        let mut out = Vec::new();
        let start = Instant::now();
        outbox.take(&mut out, 150, start).unwrap();
        assert_eq!(out.len(), 2, "whole messages until the budget is reached");
        // The rest is still in the outbox, so a newer state of it replaces it there.
        push(&outbox, 3, Entry::State, "newer");
        assert_eq!(taken(&outbox), ["newer"]);
    }

    #[test]
    fn a_client_that_took_part_of_a_backlog_is_not_cut_for_its_age() {
        let outbox = Outbox::default();
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let cut_after = Duration::from_secs(5);
        for topic in 1..=2 {
            outbox.push(
                topic,
                Entry::State,
                &message("m"),
                &mut || text("s"),
                at(0),
                cut_after,
            );
        }
        let mut out = Vec::new();
        outbox.take(&mut out, 1, at(4)).unwrap();
        let pushed = outbox.push(
            1,
            Entry::State,
            &message("n"),
            &mut || text("s"),
            at(8),
            cut_after,
        );
        assert_eq!(
            pushed,
            Pushed::More,
            "waiting since the take at 4 s, not 0 s"
        );
    }

    #[test]
    fn a_cut_drops_what_is_pending_and_ends_the_next_take() {
        let outbox = Outbox::default();
        push(&outbox, 1, Entry::State, "a");
        outbox.cut(CutReason::TooSlow);
        let mut out = Vec::new();
        assert_eq!(
            outbox.take(&mut out, usize::MAX, Instant::now()),
            Err(CutReason::TooSlow)
        );
        assert!(out.is_empty());
        assert_eq!(push(&outbox, 1, Entry::State, "b"), Pushed::Cut);
    }

    #[test]
    fn forgetting_a_topic_drops_its_messages() {
        let outbox = Outbox::default();
        push(&outbox, 1, Entry::State, "a");
        push(&outbox, 2, Entry::State, "b");
        outbox.forget(1);
        assert_eq!(taken(&outbox), ["b"]);
    }
}
