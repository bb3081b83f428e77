//! Answering get_asks / get_bids from shared memory: the read with its errors, and the JSON body
//! written straight into one pre-sized buffer.
//!
//! Used by the DCN (its own segment) and by restapi's local fast path (every segment of the
//! cluster on its host), so both answer with exactly the same bytes.
//!
//! The body keeps the original's alphabetical key order:
//! `{"age_ms":..,"asks":[[p,q],..],"event":"GET_ASKS","event_time":..,"last_update_id":..,"receive_age_ms":..,"result":"OK"}`.
//!
//! Freshness (issue 16): `age_ms` counts from the exchange's time of the book (`event_time`, the
//! last event's `E` or the snapshot's own `T`/`E`), so a DCN that falls behind serves old events
//! and reads as old; `receive_age_ms` counts from when the DCN received it. A book with no
//! exchange time (`event_time` 0 and the slot's `NO_EXCHANGE_TIME` flag: a spot book served
//! from its snapshot alone, whose snapshot carries none) counts `age_ms` from its receive time.
//! `max_age_ms` judges `age_ms`. Every other read (`book_query`) uses the same helpers.
//! A book that started from a shallow snapshot (issue 12) covers fewer levels than the full
//! 1 000 until it is deepened: a read with `limit_count` beyond its depth is #1115, and any
//! other read of it carries `"partial_depth":N` (before `result`), so no answer is silently short.
//!
//! Floats use the shortest representation that parses back to the same double (ryu), which is
//! what Python's `repr` prints up to the exponent's spelling (`1e-05` vs `1e-5`).

use std::io::Write as _;

use serde_json::Value;
use ubdcc_shm::{
    Bbo, BookInfo, BookStatus, ClusterReader, Freshness, InvalidQuery, Level, ReadError, Side,
};

use crate::envelope::{ApiError, ErrorId, not_found_error, out_of_sync_error};
use crate::params::BookRequest;

/// The depth of a full snapshot: a book covering less is partial.
const FULL_DEPTH: u32 = ubdcc_engine::SNAPSHOT_LIMIT;

/// The levels per side `info`'s book covers, when fewer than a full book shows in its segment
/// of `capacity` levels per side (a shallow start not deepened yet); `None` for a full book.
pub(crate) fn partial_depth(info: &BookInfo, capacity: u32) -> Option<u32> {
    (info.depth > 0 && info.depth < capacity.min(FULL_DEPTH)).then_some(info.depth)
}

/// Levels per side the segment of DCN `dcn` holds (what a full book shows there); the full
/// depth when the segment is not open.
pub(crate) fn capacity_of(reader: &ClusterReader, dcn: &str) -> u32 {
    reader
        .segments()
        .iter()
        .zip(reader.dcns())
        .find(|(_, name)| *name == dcn)
        .map_or(FULL_DEPTH, |(segment, _)| segment.levels_per_side())
}

/// The depth to flag an answer to `request` with: the book's, when it is partial and the
/// request did not stay within it (no `limit_count`; one beyond it is refused by [`read`]).
pub fn partial_answer(info: &BookInfo, capacity: u32, request: &BookRequest) -> Option<u32> {
    partial_depth(info, capacity).filter(|_| request.levels.limit_count().is_none())
}

/// `GET_ASKS` / `GET_BIDS` and the levels' key.
pub fn event_and_key(side: Side) -> (&'static str, &'static str) {
    match side {
        Side::Asks => ("GET_ASKS", "asks"),
        Side::Bids => ("GET_BIDS", "bids"),
    }
}

/// Reads one side of a synced book that is fresh enough for the request; returns its info and
/// the capacity of the segment it came from (for [`partial_answer`]).
///
/// # Errors
/// #7000 not found, #6000 not synced (the reason in `reason`; a dead, hung or contended writer
/// counts as not synced), #1101 / #1102 for a query shm refuses, #1103 too old, #1115 deeper
/// than a shallow book covers.
pub fn read(
    reader: &mut ClusterReader,
    request: &BookRequest,
    side: Side,
    levels: &mut Vec<Level>,
) -> Result<(BookInfo, u32), ApiError> {
    let (event, _) = event_and_key(side);
    let info = reader
        .read(
            &request.exchange,
            &request.market,
            side,
            &request.levels,
            levels,
        )
        .map_err(|error| read_error(&error, request, event))?;
    let capacity = capacity_of(reader, reader.last_served_dcn().unwrap_or(""));
    if let Err(error) = check_fresh_and_deep(&info, capacity, request, event) {
        levels.clear();
        return Err(error);
    }
    Ok((info, capacity))
}

/// #1115 when `request` asks for more levels than a shallow book covers, #1103 when the book is
/// older than its `max_age_ms`.
///
/// # Errors
/// See above.
pub(crate) fn check_fresh_and_deep(
    info: &BookInfo,
    capacity: u32,
    request: &BookRequest,
    event: &str,
) -> Result<(), ApiError> {
    if let (Some(depth), Some(limit)) =
        (partial_depth(info, capacity), request.levels.limit_count())
        && limit > depth as usize
    {
        let message = format!(
            "DepthCache '{}' for '{}' covers the best {depth} levels per side so far (it is being deepened); ask for limit_count <= {depth}",
            request.market, request.exchange
        );
        return Err(ApiError::new(ErrorId::DEPTH_NOT_COVERED, event, message).with("depth", depth));
    }
    if let Some(max_age_ms) = request.max_age_ms {
        let age = age_ms(info);
        if age > max_age_ms as f64 {
            let message = format!(
                "DepthCache '{}' for '{}' is older than max_age_ms={max_age_ms}!",
                request.market, request.exchange
            );
            return Err(ApiError::new(ErrorId::TOO_OLD, event, message).with("age_ms", age));
        }
    }
    Ok(())
}

/// Milliseconds since the exchange's time of the book, microsecond resolution; from its receive
/// time when the exchange gave none (see the module doc). 0 when the exchange's clock is ahead.
pub fn age_ms(info: &BookInfo) -> f64 {
    exchange_age_ms(info.event_time_ms, info.receive_time_ns, info.freshness)
}

/// Milliseconds since the DCN received the book's last event (or its snapshot).
pub fn receive_age_ms(info: &BookInfo) -> f64 {
    age_ms_of(info.receive_time_ns)
}

/// [`age_ms`] of a best bid and ask read from the slot header (`get_bbo`).
pub fn bbo_age_ms(bbo: &Bbo) -> f64 {
    exchange_age_ms(bbo.event_time_ms, bbo.receive_time_ns, bbo.freshness)
}

/// The one age computation of every read: from the exchange's time `event_time_ms`, or from
/// `receive_time_ns` when the book has no exchange time (`event_time_ms` 0, or the slot says
/// [`Freshness::NO_EXCHANGE_TIME`], which the engine writes with `event_time_ms` 0): answers
/// then read `event_time` 0, so the stand-in is never passed off as the exchange's time.
fn exchange_age_ms(event_time_ms: u64, receive_time_ns: u64, freshness: Freshness) -> f64 {
    if event_time_ms == 0 || freshness.contains(Freshness::NO_EXCHANGE_TIME) {
        return age_ms_of(receive_time_ns);
    }
    age_ms_of(event_time_ms.saturating_mul(1_000_000))
}

/// Milliseconds since `time_ns` (Unix ns), microsecond resolution; 0 for a time ahead of ours.
pub(crate) fn age_ms_of(time_ns: u64) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (now.saturating_sub(u128::from(time_ns)) as f64 / 1e3).round() / 1e3
}

pub(crate) fn read_error(error: &ReadError, request: &BookRequest, event: &str) -> ApiError {
    let (exchange, market) = (&request.exchange, &request.market);
    match error {
        ReadError::NotFound { .. } => not_found_error(event, exchange, market),
        ReadError::NotSynced { status, .. } => {
            out_of_sync_error(event, exchange, market).with("reason", status_reason(status))
        }
        ReadError::WriterGone { .. }
        | ReadError::SegmentShrunk { .. }
        | ReadError::WriterHung { .. }
        | ReadError::Contended { .. }
        | ReadError::Io { .. } => {
            out_of_sync_error(event, exchange, market).with("reason", error.to_string())
        }
        ReadError::InvalidQuery(invalid) => {
            let id = match invalid {
                InvalidQuery::NegativeLimit(_) => ErrorId::NEGATIVE_LIMIT,
                InvalidQuery::NanThreshold => ErrorId::INVALID_NUMBER,
            };
            ApiError::new(id, event, invalid.to_string())
        }
    }
}

fn status_reason(status: &BookStatus) -> String {
    match status {
        BookStatus::OutOfSync(reason) => reason.as_str().to_owned(),
        other => other.as_str().to_owned(),
    }
}

/// The OK body of a read; `debug`, when given, is sorted into its place, and `partial_depth`
/// (see [`partial_answer`]) says the levels cover only the book's best N.
pub fn body(
    side: Side,
    info: &BookInfo,
    levels: &[Level],
    debug: Option<&Value>,
    partial_depth: Option<u32>,
) -> Vec<u8> {
    let (event, key) = event_and_key(side);
    // ~40 bytes per level covers prices and quantities with 8 decimals.
    let mut out = Vec::with_capacity(160 + levels.len() * 40);
    let mut floats = ryu::Buffer::new();
    out.extend_from_slice(b"{\"age_ms\":");
    out.extend_from_slice(floats.format(age_ms(info)).as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    write_levels(&mut out, levels);
    if let Some(debug) = debug {
        out.extend_from_slice(b",\"debug\":");
        // Writing into a Vec cannot fail.
        serde_json::to_writer(&mut out, debug).ok();
    }
    // `write!` into a Vec cannot fail either.
    write!(
        out,
        ",\"event\":\"{event}\",\"event_time\":{},\"last_update_id\":{}",
        info.event_time_ms, info.last_update_id
    )
    .ok();
    if let Some(depth) = partial_depth {
        write!(out, ",\"partial_depth\":{depth}").ok();
    }
    out.extend_from_slice(b",\"receive_age_ms\":");
    out.extend_from_slice(floats.format(receive_age_ms(info)).as_bytes());
    out.extend_from_slice(b",\"result\":\"OK\"}");
    out
}

/// `[[price,quantity],…]`, floats in their shortest form that parses back exactly.
pub(crate) fn write_levels(out: &mut Vec<u8>, levels: &[Level]) {
    let mut floats = ryu::Buffer::new();
    out.push(b'[');
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        out.extend_from_slice(floats.format(level.price).as_bytes());
        out.push(b',');
        out.extend_from_slice(floats.format(level.quantity).as_bytes());
        out.push(b']');
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BookInfo {
        BookInfo {
            status: BookStatus::Synced,
            last_update_id: 42,
            event_time_ms: 1_700_000_000_123,
            receive_time_ns: 0,
            publish_time_ns: 0,
            bid_count: 2,
            ask_count: 2,
            resyncs: 0,
            gaps: 0,
            depth: 1000,
            updates: 1,
            generation: 1,
            changes: 0,
            freshness: ubdcc_shm::Freshness::empty(),
        }
    }

    #[test]
    fn age_counts_from_the_exchanges_time_and_receive_age_from_the_dcns() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // Received a moment ago, but the exchange's time is a minute back: a lagging DCN.
        let lagging = BookInfo {
            event_time_ms: now_ms - 60_000,
            receive_time_ns: now_ms * 1_000_000,
            ..info()
        };
        assert!(age_ms(&lagging) >= 60_000.0, "{}", age_ms(&lagging));
        assert!(receive_age_ms(&lagging) < 60_000.0);
        // No exchange time: the receive time stands in.
        let snapshot_only = BookInfo {
            event_time_ms: 0,
            ..lagging
        };
        assert!(age_ms(&snapshot_only) < 60_000.0);
        // An exchange clock ahead of ours is not a negative age.
        let ahead = BookInfo {
            event_time_ms: now_ms + 60_000,
            ..info()
        };
        assert_eq!(age_ms(&ahead), 0.0);
    }

    #[test]
    fn a_book_flagged_without_exchange_time_counts_from_its_receive_time() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // Whatever `event_time_ms` holds, the flag says it is no exchange time: an hour-old value
        // must not make a book received a moment ago read as an hour old, nor the reverse.
        let flagged = BookInfo {
            event_time_ms: now_ms - 3_600_000,
            receive_time_ns: now_ms * 1_000_000,
            freshness: Freshness::SNAPSHOT_TIME | Freshness::NO_EXCHANGE_TIME,
            ..info()
        };
        assert!(age_ms(&flagged) < 60_000.0, "{}", age_ms(&flagged));
        // The snapshot's own exchange time (SNAPSHOT_TIME alone) is an exchange time.
        let snapshot_time = BookInfo {
            freshness: Freshness::SNAPSHOT_TIME,
            ..flagged
        };
        assert!(age_ms(&snapshot_time) >= 3_600_000.0);
    }

    #[test]
    fn the_best_bid_and_ask_age_the_same_way_as_the_book() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        // Published and received just now, made by the exchange a minute ago.
        let bbo = Bbo {
            bid: None,
            ask: None,
            last_update_id: 1,
            event_time_ms: now_ms - 60_000,
            receive_time_ns: now_ms * 1_000_000,
            publish_time_ns: now_ms * 1_000_000,
            depth: 1000,
            generation: 1,
            changes: 0,
            freshness: Freshness::empty(),
        };
        assert!(bbo_age_ms(&bbo) >= 60_000.0, "{}", bbo_age_ms(&bbo));
        let without = Bbo {
            freshness: Freshness::NO_EXCHANGE_TIME,
            ..bbo
        };
        assert!(bbo_age_ms(&without) < 60_000.0);
    }

    #[test]
    fn the_body_is_valid_json_with_the_original_keys_and_exact_floats() {
        let levels = [
            Level {
                price: 40000.21,
                quantity: 0.22170584,
            },
            Level {
                price: 100.0,
                quantity: 1e-5,
            },
        ];
        let debug = serde_json::json!({"cluster_execution_time": 0.5});
        for debug in [None, Some(&debug)] {
            // The debug variant also carries a partial depth: both keys sorted into place.
            let partial = debug.map(|_| 100);
            let text = body(Side::Asks, &info(), &levels, debug, partial);
            let value: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(value["asks"][0][0].as_f64(), Some(40000.21));
            assert_eq!(value["asks"][0][1].as_f64(), Some(0.22170584));
            assert_eq!(value["asks"][1][1].as_f64(), Some(1e-5));
            assert_eq!(value["event"], "GET_ASKS");
            assert_eq!(value["result"], "OK");
            assert_eq!(value["last_update_id"], 42);
            assert_eq!(value["event_time"], 1_700_000_000_123u64);
            assert!(value["age_ms"].as_f64().unwrap() > 0.0);
            assert!(value["receive_age_ms"].as_f64().is_some());
            assert_eq!(value.get("debug").is_some(), debug.is_some());
            assert_eq!(value["partial_depth"].as_u64(), partial.map(u64::from));
            // Keys already in sorted order: re-serializing the parsed map gives the same order.
            let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
            let text = String::from_utf8(text.clone()).unwrap();
            let positions: Vec<usize> = keys
                .iter()
                .map(|key| text.find(&format!("\"{key}\":")).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        }
        let empty = body(Side::Bids, &info(), &[], None, None);
        let value: Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(value["bids"], serde_json::json!([]));
    }
}
