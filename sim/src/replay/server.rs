//! Serving a recording through Binance's protocol: the reader thread, the pacer that releases
//! records at the recorded pace × speed, REST depth at the update id the replay has reached,
//! and combined-stream WebSockets carrying the recorded frames unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::ReplayConfig;
use super::market::{DepthEvent, ReplayMarket, StartingBook};
use super::recording::{RecordKind, RecordedItem, Recording};
use crate::family::{Family, Venue};
use crate::server::lock;

/// Frames released together: one broadcast per batch keeps the per-frame cost low at 10×.
const BATCH: usize = 256;

/// Batches buffered per connection before it counts as too slow and is closed.
const BATCH_BUFFER: usize = 4096;

/// Records read ahead of the pacer (the reader thread blocks beyond this).
pub(super) const READ_AHEAD: usize = 16_384;

/// How long a snapshot request waits for the replay to know the market's book (after a
/// recorded gap it is unknown until the next recorded starting book).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// The largest WebSocket message (and frame) a client may send: requests are a few hundred
/// bytes; the default (64 MiB) would let one client make the replay hold that much.
pub const MAX_MESSAGE: usize = 64 << 10;

/// Streams one connection may subscribe (Binance's own limit).
pub const MAX_STREAMS: usize = 1024;

/// Depth requests that may wait for a book at a time (up to 30 s each); beyond, a
/// request that would wait is answered -1003 at once.
pub const MAX_DEPTH_WAITS: usize = 256;

/// A frame on its way to the connections subscribed to its stream.
#[derive(Debug)]
struct Outgoing {
    venue: Venue,
    stream: String,
    text: Arc<str>,
}

/// State shared by the pacer and the handlers.
#[derive(Debug)]
pub(super) struct Shared {
    markets: Mutex<HashMap<(Family, String), ReplayMarket>>,
    /// Bumped whenever a book changes; snapshot requests that wait watch it.
    changed: watch::Sender<u64>,
    /// `true` once the recording (or `--to`) is done.
    finished: watch::Sender<bool>,
    frames: broadcast::Sender<Arc<Vec<Outgoing>>>,
    /// `true` once a client subscribed a stream: the replay's clock starts then, so the first
    /// client meets the recording from its beginning (or `from`).
    subscribed: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    /// Permits of depth requests waiting for a book ([`MAX_DEPTH_WAITS`]).
    depth_waits: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            markets: Mutex::default(),
            changed: watch::channel(0).0,
            finished: watch::channel(false).0,
            frames: broadcast::channel(BATCH_BUFFER).0,
            subscribed: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            depth_waits: Arc::new(tokio::sync::Semaphore::new(MAX_DEPTH_WAITS)),
        })
    }

    pub(super) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

/// The family an exchange string's books belong to (the original's exchange strings).
fn family_of(exchange: &str) -> Family {
    if exchange.contains("coin_futures") {
        Family::CoinFutures
    } else if exchange.contains("options") {
        Family::Options
    } else if exchange.contains("futures") {
        Family::Futures
    } else {
        Family::Spot
    }
}

/// Two exchanges of one family in a recording: the replay serves each family's protocol once
/// (a client of binance.us asks the same paths as one of binance.com), so their books would
/// merge into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MixedExchanges {
    pub(super) family: Family,
    pub(super) first: String,
    pub(super) second: String,
}

/// The exchange each family's records came from so far, to refuse a second one.
#[derive(Debug, Default)]
pub(super) struct ExchangesSeen(HashMap<Family, String>);

impl ExchangesSeen {
    /// Notes `exchange` (empty for records of no exchange); the conflict if its family already
    /// came from another one.
    pub(super) fn check(&mut self, exchange: &str) -> Result<(), MixedExchanges> {
        if exchange.is_empty() {
            return Ok(());
        }
        let family = family_of(exchange);
        let first = self.0.entry(family).or_insert_with(|| exchange.to_owned());
        if first == exchange {
            return Ok(());
        }
        Err(MixedExchanges {
            family,
            first: first.clone(),
            second: exchange.to_owned(),
        })
    }
}

/// Reads the recording on a thread of its own (file reads and decompression block) into a
/// bounded channel. It reads ahead of the pacer ([`READ_AHEAD`] records, at once at start), so
/// a recording of two exchanges of one family is usually refused as soon as the replay starts;
/// the refusal is sent on the second channel and the items end.
pub(super) fn spawn_reader(
    recording: Recording,
) -> (
    mpsc::Receiver<RecordedItem>,
    tokio::sync::oneshot::Receiver<MixedExchanges>,
) {
    let (items, receiver) = mpsc::channel(READ_AHEAD);
    let (refuse, refused) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut seen = ExchangesSeen::default();
        for item in recording {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    tracing::error!(%error, "recording unreadable from here on; replay ends");
                    return;
                }
            };
            if let Err(mixed) = seen.check(&item.exchange) {
                // The receiver is gone only when the replay is already over.
                refuse.send(mixed).ok();
                return;
            }
            if items.blocking_send(item).is_err() {
                return;
            }
        }
    });
    (receiver, refused)
}

/// When a record `elapsed_ns` after the first is due, at `speed`, from `started`. Checked: a
/// speed outside the validated range or a recording spanning centuries gives "far away", not
/// an overflow panic.
fn due_at(started: Instant, elapsed_ns: u64, speed: f64) -> Instant {
    let far = || started + Duration::from_secs(100 * 365 * 86_400);
    Duration::try_from_secs_f64(elapsed_ns as f64 / 1e9 / speed)
        .ok()
        .and_then(|offset| started.checked_add(offset))
        .unwrap_or_else(far)
}

/// Releases the records at their recorded pace × speed, from the first client's subscription
/// on: records before `from` only build the books, records after `to` end the replay.
pub(super) async fn pace(
    shared: Arc<Shared>,
    config: ReplayConfig,
    mut items: mpsc::Receiver<RecordedItem>,
) {
    let mut pacer = Pacer {
        shared,
        batch: Vec::new(),
        frames: 0,
        unreadable: 0,
    };
    let mut origin: Option<(u64, Instant)> = None;
    let mut last = 0;
    while let Some(item) = items.recv().await {
        let time = item.received_ns;
        if config.from_ns.is_some_and(|from| time < from) {
            pacer.on_item(item, false);
            continue;
        }
        if config.to_ns.is_some_and(|to| time > to) {
            break;
        }
        if origin.is_none() {
            // Books before `from` are built; the clock waits for the first subscriber.
            pacer.shared.changed.send_modify(|version| *version += 1);
            let mut subscribed = pacer.shared.subscribed.subscribe();
            if subscribed.wait_for(|subscribed| *subscribed).await.is_err() {
                return;
            }
            tracing::info!("first subscription: replay clock started");
        }
        let (first, started) = *origin.get_or_insert((time, Instant::now()));
        last = time;
        let due = due_at(started, time.saturating_sub(first), config.speed);
        if due > Instant::now() + Duration::from_millis(1) {
            pacer.release();
            tokio::time::sleep_until(due).await;
        }
        pacer.on_item(item, true);
        if pacer.batch.len() >= BATCH {
            pacer.release();
        }
    }
    pacer.release();
    pacer.shared.finished.send_replace(true);
    let (recorded_secs, wall_secs) = origin.map_or((0.0, 0.0), |(first, started)| {
        let recorded = last.saturating_sub(first) as f64 / 1e9;
        (recorded, started.elapsed().as_secs_f64())
    });
    tracing::info!(
        frames = pacer.frames,
        unreadable = pacer.unreadable,
        recorded_secs,
        wall_secs,
        "replay finished"
    );
}

/// The pacer's working state.
struct Pacer {
    shared: Arc<Shared>,
    batch: Vec<Outgoing>,
    /// Frames released.
    frames: u64,
    /// Frames that name no depth stream (replies, malformed frames): not replayed.
    unreadable: u64,
}

impl Pacer {
    fn on_item(&mut self, item: RecordedItem, send: bool) {
        match item.kind {
            RecordKind::Frame => self.on_frame(&item, send),
            RecordKind::Snapshot => self.on_snapshot(&item),
            RecordKind::Marker => {}
            RecordKind::Behind => {
                tracing::warn!(payload = %String::from_utf8_lossy(&item.payload), "the recording fell behind here")
            }
        }
    }

    fn on_frame(&mut self, item: &RecordedItem, send: bool) {
        #[derive(Deserialize)]
        struct Combined {
            stream: String,
            data: Value,
        }
        let Ok(combined) = serde_json::from_slice::<Combined>(&item.payload) else {
            self.unreadable += 1;
            return;
        };
        let Ok(event) = serde_json::from_value::<DepthEvent>(combined.data) else {
            self.unreadable += 1;
            return;
        };
        let family = family_of(&item.exchange);
        let key = (family, event.symbol.clone());
        lock(&self.shared.markets)
            .entry(key)
            .or_default()
            .apply(event);
        if !send {
            return;
        }
        let Ok(text) = std::str::from_utf8(&item.payload) else {
            return;
        };
        self.frames += 1;
        self.batch.push(Outgoing {
            venue: family.venue(),
            stream: combined.stream,
            text: Arc::from(text),
        });
    }

    fn on_snapshot(&mut self, item: &RecordedItem) {
        let Ok(start) = serde_json::from_slice::<StartingBook>(&item.payload) else {
            tracing::warn!(market = %item.market, "a recorded starting book does not parse");
            return;
        };
        let key = (family_of(&item.exchange), item.market.clone());
        lock(&self.shared.markets)
            .entry(key)
            .or_default()
            .load(&start);
        self.shared.changed.send_modify(|version| *version += 1);
    }

    /// Sends the gathered frames to the connections.
    fn release(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.batch));
        // An error only means no connection is open.
        self.shared.frames.send(batch).ok();
        self.shared.changed.send_modify(|version| *version += 1);
    }
}

/// The replay's routes: per family `<prefix>/depth`, per venue `<prefix>/stream`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for family in Family::ALL {
        let hosts = [Some(""), family.host_prefix()];
        for host in hosts.into_iter().flatten() {
            let path = format!("{host}{}/depth", family.rest_prefix());
            router = router.route(
                &path,
                get(move |state: State<Arc<Shared>>, query: Query<DepthQuery>| {
                    depth(state, query, family)
                }),
            );
        }
    }
    for venue in Venue::ALL {
        router = router.route(
            &format!("{}/stream", venue.path_prefix()),
            get(
                move |state: State<Arc<Shared>>,
                      upgrade: WebSocketUpgrade,
                      query: Query<StreamsQuery>| async move {
                    let streams = query.0.streams.unwrap_or_default();
                    if streams.split('/').filter(|s| !s.is_empty()).count() > MAX_STREAMS {
                        return error(StatusCode::BAD_REQUEST, -1102, "Too many streams.");
                    }
                    upgrade
                        .max_message_size(MAX_MESSAGE)
                        .max_frame_size(MAX_MESSAGE)
                        .on_upgrade(move |socket| serve_stream(state.0, socket, venue, streams))
                },
            ),
        );
    }
    router.with_state(shared)
}

/// `?symbol=&limit=`.
#[derive(Debug, Deserialize)]
struct DepthQuery {
    symbol: Option<String>,
    limit: Option<usize>,
}

/// `?streams=a/b`.
#[derive(Debug, Deserialize)]
struct StreamsQuery {
    streams: Option<String>,
}

/// Binance's error answer.
fn error(status: StatusCode, code: i64, msg: &str) -> Response {
    let body = serde_json::json!({"code": code, "msg": msg}).to_string();
    with_weight((status, body).into_response())
}

/// Every answer of these paths carries the used-weight headers clients read; the replay charges
/// nothing.
fn with_weight(mut response: Response) -> Response {
    for name in ["x-mbx-used-weight-1m", "x-mbx-used-weight"] {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), HeaderValue::from_static("0"));
    }
    response
}

/// `GET <prefix>/depth`: the book at the update id the replay has reached; while the recording
/// does not know it yet (before its first starting book, after a gap), waits up to
/// [`SNAPSHOT_WAIT`] for it.
async fn depth(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<DepthQuery>,
    family: Family,
) -> Response {
    let Some(symbol) = query.symbol else {
        return error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        );
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 5000);
    let derivatives = family != Family::Spot;
    let key = (family, symbol);
    let mut changed = shared.changed.subscribe();
    let mut finished = shared.finished.subscribe();
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    // Taken when the request first has to wait; held until it is answered.
    let mut _waiting = None;
    loop {
        let answer = lock(&shared.markets)
            .get(&key)
            .and_then(|market| market.depth_json(limit, derivatives));
        if let Some(body) = answer {
            let response = (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            );
            return with_weight(response.into_response());
        }
        if *finished.borrow_and_update() {
            return error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol.");
        }
        if _waiting.is_none() {
            let Ok(permit) = Arc::clone(&shared.depth_waits).try_acquire_owned() else {
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    -1003,
                    "Too many requests waiting for a book; try again later.",
                );
            };
            _waiting = Some(permit);
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = finished.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.");
            }
        }
    }
}

/// One combined-stream connection: `SUBSCRIBE`, `UNSUBSCRIBE` and `LIST_SUBSCRIPTIONS`, and
/// the recorded frames of its subscribed streams, unchanged.
async fn serve_stream(shared: Arc<Shared>, mut socket: WebSocket, venue: Venue, streams: String) {
    let mut subscribed: HashSet<String> = streams
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut frames = shared.frames.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if !subscribed.is_empty() && !*shared.subscribed.borrow() {
            shared.subscribed.send_replace(true);
        }
        tokio::select! {
            message = socket.recv() => {
                let Some(Ok(message)) = message else { return };
                let Message::Text(text) = message else {
                    // Pings are answered by axum; closes end the loop at the next recv.
                    continue;
                };
                let reply = answer_request(&mut subscribed, text.as_str());
                if socket.send(Message::text(reply)).await.is_err() {
                    return;
                }
            }
            batch = frames.recv() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        tracing::warn!("replay connection too slow; closed");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                for frame in batch.iter().filter(|f| f.venue == venue && subscribed.contains(&f.stream)) {
                    if socket.send(Message::text(frame.text.as_ref())).await.is_err() {
                        return;
                    }
                }
            }
            // The guard `wait_for` returns is not `Send`: dropped inside the block.
            _ = async { shutdown.wait_for(|stopping| *stopping).await.is_ok() } => return,
        }
    }
}

/// The reply to one client request (Binance's shapes and error codes).
fn answer_request(subscribed: &mut HashSet<String>, text: &str) -> String {
    let Ok(request) = serde_json::from_str::<Value>(text) else {
        return serde_json::json!({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}, "id": null}).to_string();
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params: Vec<String> = request
        .get("params")
        .and_then(Value::as_array)
        .map(|params| {
            params
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let result = match request.get("method").and_then(Value::as_str) {
        Some("SUBSCRIBE") => {
            let new = params.iter().filter(|s| !subscribed.contains(*s)).count();
            if subscribed.len() + new > MAX_STREAMS {
                return serde_json::json!({"error": {"code": 2, "msg": format!("Invalid request: at most {MAX_STREAMS} streams per connection")}, "id": id}).to_string();
            }
            subscribed.extend(params);
            Value::Null
        }
        Some("UNSUBSCRIBE") => {
            for stream in &params {
                subscribed.remove(stream);
            }
            Value::Null
        }
        Some("LIST_SUBSCRIPTIONS") => subscribed.iter().cloned().collect::<Vec<_>>().into(),
        _ => return serde_json::json!({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": id}).to_string(),
    };
    serde_json::json!({"result": result, "id": id}).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn frame(second: u64, first_id: u64) -> RecordedItem {
        let event = serde_json::json!({"stream": "sim0usdt@depth", "data": {
            "e": "depthUpdate", "E": second * 1000, "s": "SIM0USDT",
            "U": first_id, "u": first_id, "b": [["1.00", "1.0"]], "a": []}});
        RecordedItem {
            kind: RecordKind::Frame,
            received_ns: second * 1_000_000_000,
            exchange: "binance.com".into(),
            market: String::new(),
            payload: event.to_string().into_bytes(),
        }
    }

    #[test]
    fn exchanges_of_different_families_mix_two_of_one_family_do_not() {
        let mut seen = ExchangesSeen::default();
        for exchange in ["binance.com", "", "binance.com-futures", "binance.com"] {
            assert_eq!(seen.check(exchange), Ok(()), "{exchange}");
        }
        for other in ["binance.us", "trbinance.com", "binance.com-margin"] {
            let mixed = seen.check(other).expect_err("a second spot exchange");
            assert_eq!(mixed.family, Family::Spot);
            assert_eq!(mixed.first, "binance.com");
        }
        let mixed = seen
            .check("binance.com-futures-testnet")
            .expect_err("a second futures exchange");
        assert_eq!(mixed.family, Family::Futures);
    }

    #[test]
    fn a_due_time_never_overflows() {
        let now = Instant::now();
        assert_eq!(
            due_at(now, 2_000_000_000, 2.0),
            now + Duration::from_secs(1)
        );
        // A speed no validation let through, a recording of centuries: far away, no panic.
        assert!(due_at(now, u64::MAX, 1e-300) > now + Duration::from_secs(86_400));
        assert!(due_at(now, u64::MAX, 0.01) > now + Duration::from_secs(86_400));
    }

    #[test]
    fn a_connection_subscribes_at_most_the_stream_limit() {
        let mut subscribed = HashSet::new();
        let streams: Vec<String> = (0..MAX_STREAMS).map(|n| format!("s{n}@depth")).collect();
        let request = serde_json::json!({"method": "SUBSCRIBE", "params": streams, "id": 1});
        let reply = answer_request(&mut subscribed, &request.to_string());
        assert!(reply.contains(r#""result":null"#), "{reply}");
        // Subscribing one already held is no new stream.
        let again = serde_json::json!({"method": "SUBSCRIBE", "params": ["s0@depth"], "id": 2});
        let reply = answer_request(&mut subscribed, &again.to_string());
        assert!(reply.contains(r#""result":null"#), "{reply}");
        let more = serde_json::json!({"method": "SUBSCRIBE", "params": ["x@depth"], "id": 3});
        let reply = answer_request(&mut subscribed, &more.to_string());
        assert!(reply.contains("at most"), "{reply}");
        assert_eq!(subscribed.len(), MAX_STREAMS);
    }

    #[tokio::test]
    async fn depth_requests_beyond_the_waiting_limit_are_answered_at_once() {
        let shared = Shared::new();
        // Every waiting place is taken.
        let _held = Arc::clone(&shared.depth_waits)
            .acquire_many_owned(MAX_DEPTH_WAITS as u32)
            .await
            .expect("permits");
        let query = DepthQuery {
            symbol: Some("SIM0USDT".into()),
            limit: None,
        };
        let response = depth(State(shared), Query(query), Family::Spot).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn only_records_between_from_and_to_are_sent_and_earlier_ones_build_the_book() {
        let shared = Shared::new();
        let mut frames = shared.frames.subscribe();
        shared.subscribed.send_replace(true);
        let (items, receiver) = mpsc::channel(16);
        let start = RecordedItem {
            kind: RecordKind::Snapshot,
            received_ns: 0,
            exchange: "binance.com".into(),
            market: "SIM0USDT".into(),
            payload: br#"{"lastUpdateId":10,"depth":100,"bids":[["1.00","2.0"]],"asks":[]}"#
                .to_vec(),
        };
        for item in [
            start,
            frame(1, 11),
            frame(2, 12),
            frame(3, 13),
            frame(4, 14),
        ] {
            items.send(item).await.expect("queued");
        }
        drop(items);
        let config = ReplayConfig {
            dir: PathBuf::new(),
            speed: 1000.0,
            from_ns: Some(2_000_000_000),
            to_ns: Some(3_000_000_000),
        };
        pace(shared.clone(), config, receiver).await;
        let mut sent = Vec::new();
        while let Ok(batch) = frames.try_recv() {
            sent.extend(batch.iter().map(|frame| frame.text.to_string()));
        }
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].contains(r#""U":12"#) && sent[1].contains(r#""U":13"#));
        let book = lock(&shared.markets)
            .get(&(Family::Spot, "SIM0USDT".to_owned()))
            .and_then(|market| market.depth_json(5, false))
            .expect("known");
        assert!(book.contains(r#""lastUpdateId":13"#), "{book}");
    }
}
