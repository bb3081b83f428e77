//! The reads beyond one side (issue 14): a whole book, the price of a fill, the shape of the top
//! and the best bid/ask — each computed on one consistent read of a synced replica, so asks and
//! bids (and everything derived from them) always come from one update id.
//!
//! Used by the DCN (its own segment) and by restapi's local path (every segment of the cluster on
//! its host), so both answer with the same bytes; restapi's remote path forwards the same
//! parameters ([`QueryKind::forwarded`]) to a DCN's endpoint of the same name.
//!
//! Bodies keep the envelope's alphabetical key order, like `book_answer`'s, and carry its two
//! ages (issue 16): `age_ms` from the exchange's time of the book, so a DCN that falls behind
//! reads as behind and `max_age_ms` refuses it (#1103), and `receive_age_ms` from when the DCN
//! received it. A book without an exchange time (a spot book on its snapshot alone) reads
//! `event_time` 0 and counts `age_ms` from its receive time, exactly as `get_asks` does.

use serde_json::{Map, Value, json};
use ubdcc_shm::{BookInfo, ClusterReader, FillAmount, Level, LevelQuery, depth_stats, fill_price};

use crate::book_answer::{self, age_ms, partial_answer, receive_age_ms, write_levels};
use crate::envelope::{ApiError, ErrorId};
use crate::params::{BookRequest, Params};

/// Levels per side `get_depth_stats` takes the imbalance over by default.
const DEFAULT_TOP_N: usize = 10;

/// Bands `get_depth_stats` reports by default, in basis points of the mid.
const DEFAULT_BPS: [f64; 3] = [10.0, 50.0, 100.0];

/// At most this many bands in one request.
const MAX_BANDS: usize = 32;

/// Which read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// `/get_book`: both sides.
    Book,
    /// `/get_fill_price`.
    FillPrice,
    /// `/get_depth_stats`.
    DepthStats,
}

impl QueryKind {
    /// The endpoint's path.
    pub const fn path(self) -> &'static str {
        match self {
            Self::Book => "/get_book",
            Self::FillPrice => "/get_fill_price",
            Self::DepthStats => "/get_depth_stats",
        }
    }

    /// The envelope's `event`.
    pub const fn event(self) -> &'static str {
        match self {
            Self::Book => "GET_BOOK",
            Self::FillPrice => "GET_FILL_PRICE",
            Self::DepthStats => "GET_DEPTH_STATS",
        }
    }

    /// The parameters a DCN needs to answer it (restapi's remote path forwards these only).
    pub const fn forwarded(self) -> &'static [&'static str] {
        match self {
            Self::Book => &[
                "exchange",
                "market",
                "limit_count",
                "threshold_volume",
                "max_age_ms",
            ],
            Self::FillPrice => &[
                "exchange",
                "market",
                "side",
                "quantity",
                "quote_quantity",
                "max_age_ms",
            ],
            Self::DepthStats => &["exchange", "market", "limit_count", "bps", "max_age_ms"],
        }
    }
}

/// What a fill consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillSide {
    /// Takes the asks.
    Buy,
    /// Takes the bids.
    Sell,
}

/// A validated request of one of the [`QueryKind`]s.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The book and the common parameters (`limit_count`, `threshold_volume`, `max_age_ms`).
    pub book: BookRequest,
    kind: QueryKind,
    fill: Option<(FillSide, FillAmount)>,
    bps: Vec<f64>,
}

impl QueryRequest {
    /// Validates a request of `kind`: the book's parameters as for `get_asks`, and #1116 for a
    /// fill without `side=buy|sell` or without exactly one positive `quantity` /
    /// `quote_quantity`, or `bps` that are not positive numbers.
    ///
    /// # Errors
    /// See above.
    pub fn parse(params: &Params, kind: QueryKind) -> Result<Self, ApiError> {
        let book = BookRequest::parse(params)?;
        let fill = match kind {
            QueryKind::FillPrice => Some(fill_of(params)?),
            _ => None,
        };
        let bps = match kind {
            QueryKind::DepthStats => bands_of(params)?,
            _ => Vec::new(),
        };
        Ok(Self {
            book,
            kind,
            fill,
            bps,
        })
    }
}

fn fill_of(params: &Params) -> Result<(FillSide, FillAmount), ApiError> {
    let invalid = |message: &str| params.invalid(ErrorId::INVALID_FILL, message.to_owned());
    let side = match params.text("side")? {
        Some(side) if side.eq_ignore_ascii_case("buy") => FillSide::Buy,
        Some(side) if side.eq_ignore_ascii_case("sell") => FillSide::Sell,
        _ => return Err(invalid("side must be buy or sell")),
    };
    let amount = match (params.number("quantity")?, params.number("quote_quantity")?) {
        (Some(quantity), None) => FillAmount::Base(quantity),
        (None, Some(quote)) => FillAmount::Quote(quote),
        _ => return Err(invalid("give exactly one of quantity and quote_quantity")),
    };
    let (FillAmount::Base(value) | FillAmount::Quote(value)) = amount;
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(
            "quantity / quote_quantity must be a positive number",
        ));
    }
    Ok((side, amount))
}

fn bands_of(params: &Params) -> Result<Vec<f64>, ApiError> {
    let Some(list) = params.list("bps")? else {
        return Ok(DEFAULT_BPS.to_vec());
    };
    let invalid = |message: String| params.invalid(ErrorId::INVALID_FILL, message);
    if list.len() > MAX_BANDS {
        return Err(invalid(format!("at most {MAX_BANDS} bands in bps")));
    }
    list.iter()
        .map(|text| match text.trim().parse::<f64>() {
            Ok(bps) if bps.is_finite() && bps > 0.0 => Ok(bps),
            _ => Err(invalid(format!(
                "bps must be positive numbers, got {text:?}"
            ))),
        })
        .collect()
}

/// Answers `request` from `reader` (an OK body; `debug` is added by the caller).
///
/// # Errors
/// #7000 not found, #6000 not synced, #1103 too old, #1115 deeper than the book covers.
pub fn answer(reader: &mut ClusterReader, request: &QueryRequest) -> Result<Vec<u8>, ApiError> {
    let event = request.kind.event();
    let book = &request.book;
    Ok(match request.kind {
        QueryKind::Book => {
            let (info, capacity, bids, asks) = consistent_book(reader, book, &book.levels, event)?;
            let partial = partial_answer(&info, capacity, book);
            book_body(&info, &bids, &asks, partial)
        }
        QueryKind::FillPrice => {
            let (side, amount) = request
                .fill
                .unwrap_or((FillSide::Buy, FillAmount::Base(0.0)));
            let (info, capacity, bids, asks) = top_first(reader, book, event, 0, |bids, asks| {
                let levels = match side {
                    FillSide::Buy => asks,
                    FillSide::Sell => bids,
                };
                fill_price(levels, amount).complete
            })?;
            let partial = book_answer::partial_depth(&info, capacity);
            fill_body(&info, partial, side, amount, &bids, &asks)
        }
        QueryKind::DepthStats => {
            let top_n = book.levels.limit_count().unwrap_or(DEFAULT_TOP_N);
            let bps = &request.bps;
            let (info, capacity, bids, asks) =
                top_first(reader, book, event, top_n, |bids, asks| {
                    depth_stats(bids, asks, top_n, bps)
                        .is_none_or(|stats| stats.bands.iter().all(|band| band.complete))
                })?;
            let partial = book_answer::partial_depth(&info, capacity);
            stats_body(&info, partial, &bids, &asks, top_n, bps)
        }
    })
}

/// Levels read first for a fill or statistics: most fills and bands end within them, and a
/// read of the whole book converts up to 2 000 levels to floats (tens of microseconds).
const TOP_FIRST: usize = 64;

/// Reads the top [`TOP_FIRST`] (at least `at_least`) levels of each side, and the whole book
/// again only when `enough` says they were not and the book holds more.
fn top_first(
    reader: &mut ClusterReader,
    book: &BookRequest,
    event: &str,
    at_least: usize,
    enough: impl Fn(&[Level], &[Level]) -> bool,
) -> Result<(BookInfo, u32, Vec<Level>, Vec<Level>), ApiError> {
    let top = LevelQuery::top(TOP_FIRST.max(at_least));
    let read = consistent_book(reader, book, &top, event)?;
    let (info, _, bids, asks) = &read;
    let more = info.bid_count as usize > bids.len() || info.ask_count as usize > asks.len();
    if !more || enough(bids, asks) {
        return Ok(read);
    }
    consistent_book(reader, book, &LevelQuery::ALL, event)
}

/// The levels of both sides `query` selects, from one read of a synced replica, checked for
/// freshness and depth; with the capacity of the segment it came from.
fn consistent_book(
    reader: &mut ClusterReader,
    request: &BookRequest,
    query: &LevelQuery,
    event: &str,
) -> Result<(BookInfo, u32, Vec<Level>, Vec<Level>), ApiError> {
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    let info = reader
        .read_book(
            &request.exchange,
            &request.market,
            query,
            &mut bids,
            &mut asks,
        )
        .map_err(|error| book_answer::read_error(&error, request, event))?;
    let capacity = book_answer::capacity_of(reader, reader.last_served_dcn().unwrap_or(""));
    book_answer::check_fresh_and_deep(&info, capacity, request, event)?;
    Ok((info, capacity, bids, asks))
}

/// `{"age_ms":..,"asks":[..],"bids":[..],"event":"GET_BOOK","event_time":..,"last_update_id":..,
/// ["partial_depth":..,]"receive_age_ms":..,"result":"OK"}` (the ages as in `book_answer`).
pub fn book_body(info: &BookInfo, bids: &[Level], asks: &[Level], partial: Option<u32>) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(200 + (bids.len() + asks.len()) * 40);
    let mut floats = ryu::Buffer::new();
    out.extend_from_slice(b"{\"age_ms\":");
    out.extend_from_slice(floats.format(age_ms(info)).as_bytes());
    out.extend_from_slice(b",\"asks\":");
    write_levels(&mut out, asks);
    out.extend_from_slice(b",\"bids\":");
    write_levels(&mut out, bids);
    // Writing into a Vec cannot fail.
    write!(
        out,
        ",\"event\":\"GET_BOOK\",\"event_time\":{},\"last_update_id\":{}",
        info.event_time_ms, info.last_update_id
    )
    .ok();
    if let Some(depth) = partial {
        write!(out, ",\"partial_depth\":{depth}").ok();
    }
    out.extend_from_slice(b",\"receive_age_ms\":");
    out.extend_from_slice(floats.format(receive_age_ms(info)).as_bytes());
    out.extend_from_slice(b",\"result\":\"OK\"}");
    out
}

fn fill_body(
    info: &BookInfo,
    partial: Option<u32>,
    side: FillSide,
    amount: FillAmount,
    bids: &[Level],
    asks: &[Level],
) -> Vec<u8> {
    let levels = match side {
        FillSide::Buy => asks,
        FillSide::Sell => bids,
    };
    let fill = fill_price(levels, amount);
    let side = match side {
        FillSide::Buy => "buy",
        FillSide::Sell => "sell",
    };
    // Written straight into the buffer in key order, like the other reads: this answer sits in
    // trading loops, and a map of `Value`s cost ~10 µs more per request than `get_asks`.
    let mut out = JsonWriter::default();
    out.number("age_ms", Some(age_ms(info)));
    out.number("average_price", fill.average_price);
    out.raw("complete", if fill.complete { "true" } else { "false" });
    out.raw("event", "\"GET_FILL_PRICE\"");
    out.raw("event_time", &info.event_time_ms.to_string());
    out.number("filled_quantity", Some(fill.filled_quantity));
    out.number("filled_quote", Some(fill.filled_quote));
    out.raw("last_update_id", &info.last_update_id.to_string());
    out.raw("levels_used", &fill.levels_used.to_string());
    if let Some(depth) = partial {
        out.raw("partial_depth", &depth.to_string());
    }
    out.number("receive_age_ms", Some(receive_age_ms(info)));
    out.raw("result", "\"OK\"");
    out.raw("side", &format!("\"{side}\""));
    out.number("slippage_bps", fill.slippage_bps);
    out.number("worst_price", fill.worst_price);
    out.finish()
}

/// A JSON object written key by key (the caller keeps the keys in order).
#[derive(Default)]
struct JsonWriter {
    out: Vec<u8>,
    floats: ryu::Buffer,
}

impl JsonWriter {
    /// `"key":value` with `value` already JSON.
    fn raw(&mut self, key: &str, value: &str) {
        self.out.push(if self.out.is_empty() { b'{' } else { b',' });
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out.extend_from_slice(value.as_bytes());
    }

    /// `"key":number`, `null` for none or a value JSON cannot hold (NaN, infinite).
    fn number(&mut self, key: &str, value: Option<f64>) {
        match value.filter(|v| v.is_finite()) {
            Some(value) => {
                let text = self.floats.format(value).to_owned();
                self.raw(key, &text);
            }
            None => self.raw(key, "null"),
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.out.is_empty() {
            self.out.push(b'{');
        }
        self.out.push(b'}');
        self.out
    }
}

fn stats_body(
    info: &BookInfo,
    partial: Option<u32>,
    bids: &[Level],
    asks: &[Level],
    top_n: usize,
    bps: &[f64],
) -> Vec<u8> {
    let mut body = envelope("GET_DEPTH_STATS", info, partial);
    let stats = depth_stats(bids, asks, top_n, bps);
    let field = |value: Option<f64>| json!(value);
    let bands: Vec<Value> = stats.as_ref().map_or_else(Vec::new, |stats| {
        stats
            .bands
            .iter()
            .map(|band| {
                json!({"ask_quantity": band.ask_quantity, "bid_quantity": band.bid_quantity,
                       "bps": band.bps, "complete": band.complete})
            })
            .collect()
    });
    body.insert("bands".into(), Value::Array(bands));
    body.insert(
        "imbalance".into(),
        field(stats.as_ref().map(|s| s.imbalance)),
    );
    body.insert(
        "microprice".into(),
        field(stats.as_ref().map(|s| s.microprice)),
    );
    body.insert("mid".into(), field(stats.as_ref().map(|s| s.mid)));
    body.insert("spread".into(), field(stats.as_ref().map(|s| s.spread)));
    body.insert(
        "spread_bps".into(),
        field(stats.as_ref().map(|s| s.spread_bps)),
    );
    body.insert("top_n".into(), json!(top_n));
    to_bytes(body)
}

/// The `GET_BBO` event.
pub const BBO_EVENT: &str = "GET_BBO";

/// The best bid and ask of each of `markets` of `exchange` (every book of that exchange in
/// `reader` when `None`): `{"bid":[p,q],"ask":[p,q],"last_update_id":..,"event_time":..,
/// "age_ms":..,"receive_age_ms":..}` from one read per market (the ages as in `book_answer`:
/// a DCN that falls behind reads as behind), or the market's error (`error_id`, `message`, and
/// `reason` when out of sync) — never a stale price.
pub fn bbo_entries(
    reader: &mut ClusterReader,
    exchange: &str,
    markets: Option<&[String]>,
) -> Map<String, Value> {
    let listed: Vec<String>;
    let markets = match markets {
        Some(markets) => markets,
        None => {
            listed = reader
                .list()
                .into_iter()
                .filter(|listing| listing.exchange == exchange)
                .map(|listing| listing.market)
                .collect();
            &listed
        }
    };
    markets
        .iter()
        .map(|market| (market.clone(), bbo_entry(reader, exchange, market)))
        .collect()
}

fn bbo_entry(reader: &mut ClusterReader, exchange: &str, market: &str) -> Value {
    // The slot header's best bid and ask: one read of two cache lines, no level touched.
    match reader.bbo(exchange, market) {
        Ok(bbo) => {
            let best = |level: Option<Level>| level.map(|l| json!([l.price, l.quantity]));
            json!({"age_ms": book_answer::bbo_age_ms(&bbo), "ask": best(bbo.ask),
                   "bid": best(bbo.bid), "event_time": bbo.event_time_ms,
                   "last_update_id": bbo.last_update_id,
                   "receive_age_ms": book_answer::age_ms_of(bbo.receive_time_ns)})
        }
        Err(error) => {
            let request = BookRequest {
                exchange: exchange.to_owned(),
                market: market.to_owned(),
                levels: ubdcc_shm::LevelQuery::ALL,
                max_age_ms: None,
            };
            let mut body = book_answer::read_error(&error, &request, BBO_EVENT).into_body();
            body.remove("event");
            body.remove("result");
            Value::Object(body)
        }
    }
}

/// `{"bbo":{..},"event":"GET_BBO","result":"OK"}`.
pub fn bbo_body(entries: Map<String, Value>) -> Vec<u8> {
    let mut body = Map::new();
    let sorted: std::collections::BTreeMap<String, Value> = entries.into_iter().collect();
    body.insert("bbo".into(), json!(sorted));
    body.insert("event".into(), json!(BBO_EVENT));
    body.insert("result".into(), json!("OK"));
    to_bytes(body)
}

/// The keys every derived answer carries (`partial_depth`: the book covers only that many
/// levels yet, so a fill or a band computed on it may be short).
fn envelope(event: &str, info: &BookInfo, partial: Option<u32>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("age_ms".into(), json!(age_ms(info)));
    body.insert("event".into(), json!(event));
    body.insert("event_time".into(), json!(info.event_time_ms));
    body.insert("last_update_id".into(), json!(info.last_update_id));
    if let Some(depth) = partial {
        body.insert("partial_depth".into(), json!(depth));
    }
    body.insert("receive_age_ms".into(), json!(receive_age_ms(info)));
    body.insert("result".into(), json!("OK"));
    body
}

fn to_bytes(body: Map<String, Value>) -> Vec<u8> {
    // Keys sorted like every other answer (`Map` keeps insertion order only with a feature).
    let sorted: std::collections::BTreeMap<String, Value> = body.into_iter().collect();
    serde_json::to_vec(&sorted).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::from_parts("T", Some(query), b"").unwrap()
    }

    #[test]
    fn a_fill_request_needs_a_side_and_exactly_one_positive_amount() {
        let ok = QueryRequest::parse(
            &params("exchange=binance.com&market=X&side=SELL&quote_quantity=50"),
            QueryKind::FillPrice,
        )
        .unwrap();
        assert_eq!(ok.fill, Some((FillSide::Sell, FillAmount::Quote(50.0))));
        for query in [
            "exchange=binance.com&market=X&quantity=1",
            "exchange=binance.com&market=X&side=hold&quantity=1",
            "exchange=binance.com&market=X&side=buy",
            "exchange=binance.com&market=X&side=buy&quantity=1&quote_quantity=1",
            "exchange=binance.com&market=X&side=buy&quantity=-1",
            "exchange=binance.com&market=X&side=buy&quantity=0",
        ] {
            let error = QueryRequest::parse(&params(query), QueryKind::FillPrice).unwrap_err();
            assert_eq!(error.id(), ErrorId::INVALID_FILL, "{query}");
        }
    }

    #[test]
    fn bands_default_and_must_be_positive_numbers() {
        let default = QueryRequest::parse(
            &params("exchange=binance.com&market=X"),
            QueryKind::DepthStats,
        )
        .unwrap();
        assert_eq!(default.bps, DEFAULT_BPS.to_vec());
        let given = QueryRequest::parse(
            &params("exchange=binance.com&market=X&bps=5,25"),
            QueryKind::DepthStats,
        )
        .unwrap();
        assert_eq!(given.bps, vec![5.0, 25.0]);
        for bad in ["bps=0", "bps=x", "bps=-3", "bps=NaN"] {
            let query = format!("exchange=binance.com&market=X&{bad}");
            let error = QueryRequest::parse(&params(&query), QueryKind::DepthStats).unwrap_err();
            assert_eq!(error.id(), ErrorId::INVALID_FILL, "{bad}");
        }
    }

    #[test]
    fn a_fill_body_is_json_in_key_order_with_nulls_for_nothing_filled() {
        let info = test_info();
        let asks = [
            Level {
                price: 100.0,
                quantity: 1.0,
            },
            Level {
                price: 102.0,
                quantity: 1.0,
            },
        ];
        let body = fill_body(
            &info,
            Some(2),
            FillSide::Buy,
            FillAmount::Base(1.5),
            &[],
            &asks,
        );
        let text = String::from_utf8(body).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let average = value["average_price"].as_f64().unwrap();
        assert!((average - 151.0 / 1.5).abs() < 1e-9, "{average}");
        assert_eq!(
            (value["complete"].as_bool(), value["levels_used"].as_u64()),
            (Some(true), Some(2))
        );
        assert_eq!(
            (value["side"].as_str(), value["partial_depth"].as_u64()),
            (Some("buy"), Some(2))
        );
        let sorted: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut expected = sorted.clone();
        expected.sort();
        assert_eq!(sorted, expected, "{text}");
        let keys: Vec<usize> = sorted
            .iter()
            .map(|key| text.find(&format!("\"{key}\":")).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        // Selling into no bids fills nothing: prices are null, not NaN.
        let empty = fill_body(
            &info,
            None,
            FillSide::Sell,
            FillAmount::Base(1.0),
            &[],
            &asks,
        );
        let value: Value = serde_json::from_slice(&empty).unwrap();
        assert!(value["average_price"].is_null() && value["worst_price"].is_null());
        assert_eq!(value["complete"], false);
    }

    fn test_info() -> BookInfo {
        BookInfo {
            status: ubdcc_shm::BookStatus::Synced,
            last_update_id: 7,
            event_time_ms: 1,
            receive_time_ns: 0,
            publish_time_ns: 0,
            bid_count: 1,
            ask_count: 1,
            resyncs: 0,
            gaps: 0,
            updates: 1,
            generation: 1,
            depth: 100,
            changes: 0,
            freshness: ubdcc_shm::Freshness::empty(),
        }
    }

    /// A book whose exchange time is a minute back though the DCN received it just now: what a
    /// lagging DCN serves.
    fn lagging_info() -> BookInfo {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        BookInfo {
            event_time_ms: now_ms - 60_000,
            receive_time_ns: now_ms * 1_000_000,
            publish_time_ns: now_ms * 1_000_000,
            ..test_info()
        }
    }

    /// `age_ms` from the exchange's time and `receive_age_ms` from the DCN's, in `body`.
    fn assert_lagging_ages(body: &[u8]) {
        let value: Value = serde_json::from_slice(body).unwrap();
        let age = value["age_ms"].as_f64().unwrap();
        let received = value["receive_age_ms"].as_f64().unwrap();
        assert!(age >= 60_000.0 && received < 60_000.0, "{value}");
    }

    #[test]
    fn every_body_ages_from_the_exchanges_time_and_says_when_it_was_received() {
        let info = lagging_info();
        let level = [Level {
            price: 100.0,
            quantity: 1.0,
        }];
        assert_lagging_ages(&book_body(&info, &level, &level, None));
        let fill = fill_body(
            &info,
            None,
            FillSide::Buy,
            FillAmount::Base(1.0),
            &level,
            &level,
        );
        assert_lagging_ages(&fill);
        assert_lagging_ages(&stats_body(&info, None, &level, &level, 10, &DEFAULT_BPS));
    }

    #[test]
    fn max_age_ms_refuses_by_the_exchanges_time_not_the_receive_time() {
        let request = |max_age_ms| BookRequest {
            exchange: "binance.com".into(),
            market: "X".into(),
            levels: LevelQuery::ALL,
            max_age_ms: Some(max_age_ms),
        };
        let lagging = lagging_info();
        let refused =
            book_answer::check_fresh_and_deep(&lagging, 1000, &request(30_000), "GET_BOOK")
                .unwrap_err();
        assert_eq!(refused.id(), ErrorId::TOO_OLD);
        assert!(
            book_answer::check_fresh_and_deep(&lagging, 1000, &request(120_000), "GET_BOOK")
                .is_ok()
        );
    }

    #[test]
    fn a_book_body_has_both_sides_in_key_order() {
        let info = test_info();
        let bids = [Level {
            price: 99.5,
            quantity: 1.0,
        }];
        let asks = [Level {
            price: 100.5,
            quantity: 2.0,
        }];
        let body = book_body(&info, &bids, &asks, Some(100));
        let text = String::from_utf8(body).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["asks"], json!([[100.5, 2.0]]));
        assert_eq!(value["bids"], json!([[99.5, 1.0]]));
        assert_eq!(value["partial_depth"], 100);
        let keys: Vec<usize> = [
            "age_ms",
            "asks",
            "bids",
            "event",
            "last_update_id",
            "partial_depth",
            "receive_age_ms",
            "result",
        ]
        .iter()
        .map(|key| text.find(&format!("\"{key}\":")).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
