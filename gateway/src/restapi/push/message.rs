//! The messages push clients receive, serialised once per change and shared by every
//! subscriber (`{"stream":"<name>","data":{…}}`, prices and quantities as floats in their
//! shortest exact form, like the REST reads):
//!
//! - `@bbo`: `{"b":[p,q],"a":[p,q],"u":last_update_id,"E":event_time}`; an empty side is `null`.
//!   The first message from another replica than the one before (failover) carries
//!   `"replica_switched":true`: its `u` may be lower by the updates the new replica had not
//!   applied yet, and it is the book served now.
//! - `@bookN`: `{"snapshot":true,"bids":[[p,q],…],"asks":[…],"u":…,"E":…,"depth":D}`, then
//!   `{"snapshot":false,…}` with the levels of the top-N view that changed; quantity 0 removes a
//!   level from the view (it left the book or fell below the N-th). `depth` is how many levels
//!   per side the book is complete to: below N the view is partial (REST's `partial_depth`),
//!   and a change of it across N comes as a new snapshot.
//! - status: `{"status":"out_of_sync","reason":"<why>"}` when a book can no longer be served,
//!   `{"status":"synced"}` when it can again (full state follows at once).

use std::io::Write as _;

use ubdcc_shm::{Bbo, Level, Side};

use super::outbox::Payload;
use crate::book_answer::write_levels;

/// The levels of one side of a view that differ between `old` and `new` (both best first):
/// new or changed levels with their quantity, vanished ones with quantity 0, best first.
pub(crate) fn diff_side(side: Side, old: &[Level], new: &[Level], out: &mut Vec<Level>) {
    out.clear();
    let better = |a: f64, b: f64| match side {
        Side::Bids => a > b,
        Side::Asks => a < b,
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let removed = |level: &Level| Level {
            price: level.price,
            quantity: 0.0,
        };
        match (old.get(i), new.get(j)) {
            (Some(was), Some(is)) if was.price == is.price => {
                if was.quantity != is.quantity {
                    out.push(*is);
                }
                i += 1;
                j += 1;
            }
            (Some(was), Some(is)) if better(is.price, was.price) => {
                out.push(*is);
                j += 1;
            }
            (Some(was), _) => {
                out.push(removed(was));
                i += 1;
            }
            (None, Some(is)) => {
                out.push(*is);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// `{"stream":"<stream>","data":` — stream names are checked to hold no character JSON escapes.
fn open(stream: &str, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity + stream.len() + 24);
    out.extend_from_slice(b"{\"stream\":\"");
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out
}

fn close(mut out: Vec<u8>) -> Payload {
    out.push(b'}');
    // Built from ASCII and ryu's digits only.
    Payload::from(String::from_utf8(out).expect("push messages are ASCII"))
}

fn write_level(out: &mut Vec<u8>, level: Option<&Level>) {
    match level {
        Some(level) => {
            let mut floats = ryu::Buffer::new();
            out.push(b'[');
            out.extend_from_slice(floats.format(level.price).as_bytes());
            out.push(b',');
            out.extend_from_slice(floats.format(level.quantity).as_bytes());
            out.push(b']');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Whether a `@bbo` message is the first from another replica than the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BboSource {
    /// The same replica as the message before (or no message before).
    SameReplica,
    /// Another replica: the message carries `"replica_switched":true`.
    NewReplica,
}

/// A `@bbo` message.
pub(crate) fn bbo(stream: &str, bbo: &Bbo, source: BboSource) -> Payload {
    let mut out = open(stream, 96);
    out.extend_from_slice(b"{\"b\":");
    write_level(&mut out, bbo.bid.as_ref());
    out.extend_from_slice(b",\"a\":");
    write_level(&mut out, bbo.ask.as_ref());
    // Writing into a Vec cannot fail.
    write!(
        out,
        ",\"u\":{},\"E\":{}",
        bbo.last_update_id, bbo.event_time_ms
    )
    .ok();
    if source == BboSource::NewReplica {
        out.extend_from_slice(b",\"replica_switched\":true");
    }
    out.push(b'}');
    close(out)
}

/// What a `@bookN` message carries.
pub(crate) struct BookMessage<'a> {
    /// A snapshot of the view (`true`) or the changes since the last message (`false`).
    pub(crate) snapshot: bool,
    /// Bids, best first.
    pub(crate) bids: &'a [Level],
    /// Asks, best first.
    pub(crate) asks: &'a [Level],
    /// The book's last update id.
    pub(crate) last_update_id: u64,
    /// The exchange's event time of that update, ms.
    pub(crate) event_time_ms: u64,
    /// Levels per side the book is complete to ([`ubdcc_shm::BookInfo::depth`]).
    pub(crate) depth: u32,
}

/// A `@bookN` message.
pub(crate) fn book(stream: &str, message: &BookMessage<'_>) -> Payload {
    let levels = message.bids.len() + message.asks.len();
    let mut out = open(stream, 80 + levels * 40);
    write_book_data(&mut out, message);
    close(out)
}

/// The `data` object of a `@bookN` message, alone: the same for every name of one book and N
/// at one version, so it is serialised once and wrapped per name ([`wrap`]).
pub(crate) fn book_data(message: &BookMessage<'_>) -> Vec<u8> {
    let levels = message.bids.len() + message.asks.len();
    let mut out = Vec::with_capacity(80 + levels * 40);
    write_book_data(&mut out, message);
    out
}

/// `{"stream":"<stream>","data":<data>}`: a copy of `data`, not a new serialisation (a
/// `@book1000` snapshot is ~60 KiB; formatting its numbers costs ~40× copying it).
pub(crate) fn wrap(stream: &str, data: &[u8]) -> Payload {
    let mut out = open(stream, data.len());
    out.extend_from_slice(data);
    close(out)
}

fn write_book_data(out: &mut Vec<u8>, message: &BookMessage<'_>) {
    write!(out, "{{\"snapshot\":{},\"bids\":", message.snapshot).ok();
    write_levels(out, message.bids);
    out.extend_from_slice(b",\"asks\":");
    write_levels(out, message.asks);
    write!(
        out,
        ",\"u\":{},\"E\":{},\"depth\":{}}}",
        message.last_update_id, message.event_time_ms, message.depth
    )
    .ok();
}

/// A status message: `reason` `None` is "synced" again, `Some` is out of sync for that reason.
pub(crate) fn status(stream: &str, reason: Option<&str>) -> Payload {
    let mut out = open(stream, 64);
    match reason {
        Some(reason) => {
            write!(
                out,
                "{{\"status\":\"out_of_sync\",\"reason\":\"{reason}\"}}"
            )
            .ok();
        }
        None => out.extend_from_slice(b"{\"status\":\"synced\"}"),
    }
    close(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn level(price: f64, quantity: f64) -> Level {
        Level { price, quantity }
    }

    fn parsed(payload: &Payload) -> Value {
        serde_json::from_str(payload.as_str()).unwrap()
    }

    /// Applies `changes` to `view` the way a client does, keeping the best `n`.
    fn apply(side: Side, view: &mut Vec<Level>, changes: &[Level], n: usize) {
        for change in changes {
            view.retain(|l| l.price != change.price);
            if change.quantity != 0.0 {
                view.push(*change);
            }
        }
        view.sort_by(|a, b| match side {
            Side::Bids => b.price.total_cmp(&a.price),
            Side::Asks => a.price.total_cmp(&b.price),
        });
        view.truncate(n);
    }

    #[test]
    fn a_diff_applied_to_the_old_view_gives_the_new_one() {
        let old = vec![level(10.0, 1.0), level(9.0, 2.0), level(8.0, 3.0)];
        let new = vec![level(10.5, 1.0), level(10.0, 1.5), level(8.0, 3.0)];
        let mut changes = Vec::new();
        diff_side(Side::Bids, &old, &new, &mut changes);
        assert_eq!(
            changes,
            [level(10.5, 1.0), level(10.0, 1.5), level(9.0, 0.0)]
        );
        let mut view = old.clone();
        apply(Side::Bids, &mut view, &changes, 3);
        assert_eq!(view, new);

        let old = vec![level(1.0, 1.0), level(2.0, 1.0)];
        let new = vec![level(2.0, 1.0), level(3.0, 4.0)];
        diff_side(Side::Asks, &old, &new, &mut changes);
        let mut view = old.clone();
        apply(Side::Asks, &mut view, &changes, 2);
        assert_eq!(view, new);
        diff_side(Side::Asks, &new, &new, &mut changes);
        assert!(changes.is_empty());
    }

    #[test]
    fn messages_are_the_documented_json() {
        let stream = "binance.com:BTCUSDT@bbo";
        let top = Bbo {
            bid: Some(level(99.98, 0.5)),
            ask: None,
            last_update_id: 9,
            event_time_ms: 1_700_000_000_000,
            receive_time_ns: 0,
            publish_time_ns: 0,
            depth: 10,
            generation: 1,
            changes: 1,
            freshness: ubdcc_shm::Freshness::empty(),
        };
        assert_eq!(
            parsed(&bbo(stream, &top, BboSource::SameReplica)),
            json!({"stream": stream, "data": {"b": [99.98, 0.5], "a": null, "u": 9, "E": 1_700_000_000_000u64}})
        );
        assert_eq!(
            parsed(&bbo(stream, &top, BboSource::NewReplica)),
            json!({"stream": stream, "data": {"b": [99.98, 0.5], "a": null, "u": 9, "E": 1_700_000_000_000u64, "replica_switched": true}})
        );
        let message = BookMessage {
            snapshot: false,
            bids: &[level(0.1, 0.0)],
            asks: &[],
            last_update_id: 7,
            event_time_ms: 3,
            depth: 4,
        };
        assert_eq!(
            parsed(&book("x:Y@book5", &message)),
            json!({"stream": "x:Y@book5", "data": {"snapshot": false, "bids": [[0.1, 0.0]], "asks": [], "u": 7, "E": 3, "depth": 4}})
        );
        assert_eq!(
            parsed(&status("x:Y@bbo", Some("gap"))),
            json!({"stream": "x:Y@bbo", "data": {"status": "out_of_sync", "reason": "gap"}})
        );
        assert_eq!(
            parsed(&status("x:Y@bbo", None)),
            json!({"stream": "x:Y@bbo", "data": {"status": "synced"}})
        );
    }
}
