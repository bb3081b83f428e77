//! Binance's depth messages as they arrive (`docs/binance-protocol.md` §3), deserialized
//! with simd-json without copying strings, and turned into domain values once, here at the edge.
//!
//! A diff's levels become exact decimals while the message is deserialized ([`DiffLevels`]): one
//! pass and one allocation per side instead of a vector of strings and then a vector of levels,
//! and simd-json's working buffers are reused from message to message (`PARSE_BUFFERS`). Both
//! came out of the profile of one message (`cargo bench -p ubdcc-engine --bench engine_message`):
//! of 2.58 µs for a 20-level diff, about a quarter was allocation and the second pass.
//!
//! One-letter field names keep their meaning under readable names (`U` is
//! `first_update_id`, `pu` is `previous_last_update_id`).

use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use thiserror::Error;
use ubdcc_shm::{Decimal, ParseDecimalError};

use crate::sync::{DiffEvent, UpdateIds};

/// A message could not be understood.
#[derive(Debug, Error)]
pub enum WireError {
    /// Not valid JSON, or not the shape Binance documents.
    #[error("malformed {what}: {source}")]
    Json {
        /// What was being parsed.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: simd_json::Error,
    },
    /// A field the message type requires is missing.
    #[error("{what} without {field}")]
    MissingField {
        /// What was being parsed.
        what: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A price or quantity is not a plain decimal.
    #[error("invalid {field} {value:?}: {source}")]
    Decimal {
        /// `price` or `quantity`.
        field: &'static str,
        /// The text received.
        value: String,
        /// Why it is not a decimal.
        #[source]
        source: ParseDecimalError,
    },
}

/// A level as sent: `[price, quantity]` decimal strings.
type WireLevel<'a> = [&'a str; 2];

/// The payload of a combined-stream message, or a raw event: every field any message we handle
/// can carry, so one pass decides what the message is.
#[derive(Debug, Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "e", borrow)]
    event_type: Option<&'a str>,
    #[serde(rename = "E")]
    event_time_ms: Option<u64>,
    #[serde(rename = "T")]
    transaction_time_ms: Option<u64>,
    #[serde(rename = "s", borrow)]
    symbol: Option<&'a str>,
    #[serde(rename = "U")]
    first_update_id: Option<u64>,
    #[serde(rename = "u")]
    last_update_id: Option<u64>,
    #[serde(rename = "pu")]
    previous_last_update_id: Option<u64>,
    #[serde(rename = "b", default)]
    bids: DiffLevels,
    #[serde(rename = "a", default)]
    asks: DiffLevels,
}

/// A WebSocket text message: a combined-stream envelope, a control reply, an error reply, or a
/// raw event (the raw `serverShutdown`).
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    stream: Option<&'a str>,
    #[serde(borrow)]
    data: Option<RawEvent<'a>>,
    id: Option<u64>,
    #[serde(borrow, default)]
    result: Option<Vec<&'a str>>,
    error: Option<ApiError>,
    #[serde(rename = "e", borrow)]
    event_type: Option<&'a str>,
    #[serde(rename = "E")]
    event_time_ms: Option<u64>,
}

/// Binance's error object (`{"code":-1121,"msg":"Invalid symbol."}`), in REST bodies and
/// WebSocket error replies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// Binance's error code.
    pub code: i64,
    /// Binance's message.
    pub msg: String,
}

/// A depth diff event, borrowed from the message buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthUpdate<'a> {
    /// `E`: when the exchange sent it, Unix ms.
    pub event_time_ms: u64,
    /// `T`: the transaction time (futures and options).
    pub transaction_time_ms: Option<u64>,
    /// `s`: the symbol.
    pub symbol: &'a str,
    /// `U`, `u` and `pu`.
    pub ids: UpdateIds,
    /// `b`: bid levels, absolute quantities, zero removes.
    pub bids: DiffLevels,
    /// `a`: ask levels.
    pub asks: DiffLevels,
}

/// What arrived on a stream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage<'a> {
    /// A depth diff on `stream` (e.g. `btcusdt@depth@100ms`).
    Depth {
        /// The stream name, which identifies the market.
        stream: &'a str,
        /// The event.
        update: DepthUpdate<'a>,
    },
    /// The server announced it is shutting down: reconnect.
    ServerShutdown {
        /// When, Unix ms (0 if absent).
        event_time_ms: u64,
    },
    /// The reply to a SUBSCRIBE / UNSUBSCRIBE (`result` null) or LIST_SUBSCRIPTIONS (the list).
    Reply {
        /// The request id.
        id: u64,
        /// The listed subscriptions, for LIST_SUBSCRIPTIONS.
        subscriptions: Option<Vec<&'a str>>,
    },
    /// An error reply to a request.
    Error {
        /// The request id, when the server could tell.
        id: Option<u64>,
        /// The error.
        error: ApiError,
    },
    /// A well-formed message of a kind the depth engine does not use.
    Other,
}

impl<'a> StreamMessage<'a> {
    /// Parses one WebSocket text message in place (simd-json rewrites the buffer).
    ///
    /// # Errors
    /// [`WireError::Json`] for malformed JSON, [`WireError::MissingField`] for a depth event
    /// without its ids.
    pub fn parse(buffer: &'a mut [u8]) -> Result<Self, WireError> {
        let envelope: Envelope<'a> = with_parse_buffers(buffer.len(), |buffers| {
            simd_json::serde::from_slice_with_buffers(buffer, buffers)
        })
        .map_err(|source| WireError::Json {
            what: "stream message",
            source,
        })?;
        if let Some(error) = envelope.error {
            return Ok(Self::Error {
                id: envelope.id,
                error,
            });
        }
        if let Some(id) = envelope.id {
            return Ok(Self::Reply {
                id,
                subscriptions: envelope.result,
            });
        }
        if envelope.event_type == Some("serverShutdown") {
            return Ok(Self::ServerShutdown {
                event_time_ms: envelope.event_time_ms.unwrap_or(0),
            });
        }
        let (Some(stream), Some(data)) = (envelope.stream, envelope.data) else {
            return Ok(Self::Other);
        };
        match data.event_type {
            Some("depthUpdate") => Ok(Self::Depth {
                stream,
                update: DepthUpdate::from_raw(data)?,
            }),
            Some("serverShutdown") => Ok(Self::ServerShutdown {
                event_time_ms: data.event_time_ms.unwrap_or(0),
            }),
            _ => Ok(Self::Other),
        }
    }
}

impl<'a> DepthUpdate<'a> {
    fn from_raw(raw: RawEvent<'a>) -> Result<Self, WireError> {
        let missing = |field| WireError::MissingField {
            what: "depthUpdate",
            field,
        };
        Ok(Self {
            event_time_ms: raw.event_time_ms.ok_or_else(|| missing("E"))?,
            transaction_time_ms: raw.transaction_time_ms,
            symbol: raw.symbol.ok_or_else(|| missing("s"))?,
            ids: UpdateIds {
                first: raw.first_update_id.ok_or_else(|| missing("U"))?,
                last: raw.last_update_id.ok_or_else(|| missing("u"))?,
                previous_last: raw.previous_last_update_id,
            },
            bids: raw.bids,
            asks: raw.asks,
        })
    }
}

/// A REST depth snapshot, borrowed from the response body.
#[derive(Debug, Deserialize)]
pub struct DepthSnapshot<'a> {
    /// `lastUpdateId`; a snapshot without it cannot be aligned (older options pages show `u`).
    #[serde(rename = "lastUpdateId")]
    pub last_update_id: Option<u64>,
    /// `E` (futures): message output time, Unix ms.
    #[serde(rename = "E")]
    pub event_time_ms: Option<u64>,
    /// `T` (futures, options): transaction time, Unix ms.
    #[serde(rename = "T")]
    pub transaction_time_ms: Option<u64>,
    /// Bids, best first.
    #[serde(borrow, default)]
    pub bids: Vec<WireLevel<'a>>,
    /// Asks, best first.
    #[serde(borrow, default)]
    pub asks: Vec<WireLevel<'a>>,
}

impl<'a> DepthSnapshot<'a> {
    /// Parses a snapshot body in place.
    ///
    /// # Errors
    /// [`WireError::Json`] for a malformed body, [`WireError::MissingField`] when it has no
    /// `lastUpdateId`.
    pub fn parse(body: &'a mut [u8]) -> Result<(u64, Self), WireError> {
        let snapshot: Self =
            simd_json::serde::from_slice(body).map_err(|source| WireError::Json {
                what: "depth snapshot",
                source,
            })?;
        let id = snapshot.last_update_id.ok_or(WireError::MissingField {
            what: "depth snapshot",
            field: "lastUpdateId",
        })?;
        Ok((id, snapshot))
    }
}

impl ApiError {
    /// Parses an error body (`{"code":..,"msg":..}`), if it is one.
    pub fn parse(body: &mut [u8]) -> Option<Self> {
        simd_json::serde::from_slice(body).ok()
    }
}

/// A price level as exact decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelUpdate {
    /// Price.
    pub price: Decimal,
    /// Absolute quantity; zero removes the level.
    pub quantity: Decimal,
}

/// A diff event with its levels parsed, owned so it can wait in the sync buffer while the
/// message buffer is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffUpdate {
    /// `E`, Unix ms.
    pub event_time_ms: u64,
    /// `U`, `u`, `pu`.
    pub ids: UpdateIds,
    /// Bid changes.
    pub bids: Vec<LevelUpdate>,
    /// Ask changes.
    pub asks: Vec<LevelUpdate>,
}

impl DiffEvent for DiffUpdate {
    fn update_ids(&self) -> UpdateIds {
        self.ids
    }

    fn buffered_bytes(&self) -> usize {
        let levels = self.bids.capacity() + self.asks.capacity();
        std::mem::size_of::<Self>() + levels * std::mem::size_of::<LevelUpdate>()
    }
}

/// Parses wire levels into exact decimals.
///
/// # Errors
/// [`WireError::Decimal`] for the first value that is not a plain decimal.
pub fn parse_levels(levels: &[WireLevel<'_>]) -> Result<Vec<LevelUpdate>, WireError> {
    levels
        .iter()
        .map(|[price, quantity]| {
            Ok(LevelUpdate {
                price: decimal("price", price)?,
                quantity: decimal("quantity", quantity)?,
            })
        })
        .collect()
}

fn decimal(field: &'static str, value: &str) -> Result<Decimal, WireError> {
    Decimal::parse(value).map_err(|source| WireError::Decimal {
        field,
        value: value.to_owned(),
        source,
    })
}

impl TryFrom<DepthUpdate<'_>> for DiffUpdate {
    type Error = WireError;

    /// Takes the event's levels as they were parsed.
    ///
    /// # Errors
    /// [`WireError::Decimal`] when a level of either side was not a plain decimal.
    fn try_from(update: DepthUpdate<'_>) -> Result<Self, WireError> {
        Ok(Self {
            event_time_ms: update.event_time_ms,
            ids: update.ids,
            bids: update.bids.into_levels()?,
            asks: update.asks.into_levels()?,
        })
    }
}

/// Most levels one side of a diff is given room for before its first level is read: Binance
/// sends at most 1 000 per side; simd-json's hint is the element count of the array, so a hostile
/// message can only claim what it carries, but the cap keeps one claim from reserving megabytes.
const MAX_RESERVED_LEVELS: usize = 1024;

/// One side of a diff event, its levels already exact decimals: deserialized in the same pass as
/// the message, straight from the borrowed strings. A value that is not a plain decimal does not
/// fail the message (that would take down every book on the connection): the side keeps the
/// first such value, and turning the event into a [`DiffUpdate`] reports it, so only its book
/// resyncs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffLevels {
    levels: Vec<LevelUpdate>,
    invalid: Option<InvalidDecimal>,
}

/// The first value of a side that was not a plain decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvalidDecimal {
    field: &'static str,
    value: String,
    source: ParseDecimalError,
}

impl DiffLevels {
    /// The levels in the order sent.
    ///
    /// # Errors
    /// [`WireError::Decimal`] for the first value that was not a plain decimal.
    pub fn into_levels(self) -> Result<Vec<LevelUpdate>, WireError> {
        match self.invalid {
            None => Ok(self.levels),
            Some(InvalidDecimal {
                field,
                value,
                source,
            }) => Err(WireError::Decimal {
                field,
                value,
                source,
            }),
        }
    }

    /// Reads one `[price, quantity]` pair; after the first invalid value the rest are skipped.
    fn push(&mut self, [price, quantity]: WireLevel<'_>) {
        if self.invalid.is_some() {
            return;
        }
        let parsed = Decimal::parse(price)
            .map_err(|source| ("price", price, source))
            .and_then(|price| {
                Decimal::parse(quantity)
                    .map(|quantity| LevelUpdate { price, quantity })
                    .map_err(|source| ("quantity", quantity, source))
            });
        match parsed {
            Ok(level) => self.levels.push(level),
            Err((field, value, source)) => {
                self.invalid = Some(InvalidDecimal {
                    field,
                    value: value.to_owned(),
                    source,
                });
            }
        }
    }
}

impl<'de> Deserialize<'de> for DiffLevels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(DiffLevelsVisitor)
    }
}

struct DiffLevelsVisitor;

impl<'de> Visitor<'de> for DiffLevelsVisitor {
    type Value = DiffLevels;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of [price, quantity] string pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DiffLevels, A::Error> {
        let room = seq.size_hint().unwrap_or(0).min(MAX_RESERVED_LEVELS);
        let mut side = DiffLevels {
            levels: Vec::with_capacity(room),
            invalid: None,
        };
        while let Some(level) = seq.next_element::<WireLevel<'de>>()? {
            side.push(level);
        }
        Ok(side)
    }
}

thread_local! {
    /// simd-json's working buffers (string buffer, structural indexes, aligned input copy, stage 2
    /// stack), kept between messages instead of four allocations each. Thread-local because every
    /// connection of a DCN parses on its one thread; a message longer than
    /// [`KEPT_BUFFER_BYTES`] gets buffers of its own, so one huge message does not stay resident.
    static PARSE_BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::new(KEPT_BUFFER_BYTES));
}

/// Longest message the reused buffers are sized for (a 20-level diff is about 600 bytes, Binance's
/// 1 000-level snapshot about 40 KB).
const KEPT_BUFFER_BYTES: usize = 16 * 1024;

/// Runs `parse` with the thread's reused simd-json buffers (fresh ones for a long message or a
/// re-entrant call).
fn with_parse_buffers<T>(len: usize, parse: impl FnOnce(&mut simd_json::Buffers) -> T) -> T {
    if len > KEPT_BUFFER_BYTES {
        return parse(&mut simd_json::Buffers::new(len));
    }
    PARSE_BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => parse(&mut buffers),
        Err(_) => parse(&mut simd_json::Buffers::new(len)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StreamMessage<'static> {
        let buffer = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        StreamMessage::parse(buffer).unwrap()
    }

    #[test]
    fn spot_diff_events_parse_with_their_ids_and_levels() {
        let message = parse(
            r#"{"stream":"bnbbtc@depth","data":{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}"#,
        );
        let StreamMessage::Depth { stream, update } = message else {
            panic!("{message:?}")
        };
        assert_eq!(stream, "bnbbtc@depth");
        assert_eq!(
            update.ids,
            UpdateIds {
                first: 157,
                last: 160,
                previous_last: None
            }
        );
        assert_eq!(update.transaction_time_ms, None);
        let level = |price: &str, quantity: &str| LevelUpdate {
            price: Decimal::parse(price).unwrap(),
            quantity: Decimal::parse(quantity).unwrap(),
        };
        let diff = DiffUpdate::try_from(update).unwrap();
        assert_eq!(
            (diff.bids, diff.asks),
            (vec![level("0.0024", "10")], vec![level("0.0026", "100")])
        );
    }

    #[test]
    fn futures_and_options_events_carry_pu_and_t() {
        let message = parse(
            r#"{"stream":"btc-251123-126000-c@depth@500ms","data":{"e":"depthUpdate","E":1762866729459,"T":1762866729358,"s":"BTC-251123-126000-C","U":465,"u":465,"pu":464,"b":[["1100.000","0.6000"]],"a":[["1300.000","0.6000"]]}}"#,
        );
        let StreamMessage::Depth { update, .. } = message else {
            panic!("{message:?}")
        };
        assert_eq!(update.ids.previous_last, Some(464));
        assert_eq!(update.transaction_time_ms, Some(1762866729358));
        let diff = DiffUpdate::try_from(update).unwrap();
        assert_eq!(diff.bids[0].price, Decimal::new(1_100_000, -3));
    }

    #[test]
    fn coin_m_events_and_snapshots_parse_with_their_pair_fields() {
        // COIN-M adds `ps` (the pair) to events and `symbol` and `pair` to snapshots; neither is
        // needed, and neither may get in the way.
        let message = parse(
            r#"{"stream":"btcusd_251226@depth","data":{"e":"depthUpdate","E":1591270260907,"T":1591270260891,"s":"BTCUSD_251226","ps":"BTCUSD","U":17285681,"u":17285702,"pu":17285675,"b":[["9517.6","10"]],"a":[["9518.5","45"]]}}"#,
        );
        let StreamMessage::Depth { stream, update } = message else {
            panic!("{message:?}")
        };
        assert_eq!(
            (stream, update.symbol, update.ids.previous_last),
            ("btcusd_251226@depth", "BTCUSD_251226", Some(17285675))
        );
        let mut snapshot = br#"{"lastUpdateId":16769853,"symbol":"BTCUSD_PERP","pair":"BTCUSD","E":1591250106370,"T":1591250106368,"bids":[["9638.0","431"]],"asks":[["9638.2","12"]]}"#.to_vec();
        let (id, snapshot) = DepthSnapshot::parse(&mut snapshot).unwrap();
        assert_eq!((id, snapshot.bids.len()), (16769853, 1));
    }

    #[test]
    fn control_replies_errors_and_shutdowns_are_recognised() {
        assert_eq!(
            parse(r#"{"result":null,"id":7}"#),
            StreamMessage::Reply {
                id: 7,
                subscriptions: None
            }
        );
        assert_eq!(
            parse(r#"{"result":["btcusdt@depth"],"id":3}"#),
            StreamMessage::Reply {
                id: 3,
                subscriptions: Some(vec!["btcusdt@depth"])
            }
        );
        let error = parse(r#"{"error":{"code":2,"msg":"Invalid request"},"id":4}"#);
        assert_eq!(
            error,
            StreamMessage::Error {
                id: Some(4),
                error: ApiError {
                    code: 2,
                    msg: "Invalid request".into()
                }
            }
        );
        assert_eq!(
            parse(r#"{"e":"serverShutdown","E":1700000000000}"#),
            StreamMessage::ServerShutdown {
                event_time_ms: 1700000000000
            }
        );
        assert_eq!(
            parse(r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":5}}"#),
            StreamMessage::ServerShutdown { event_time_ms: 5 }
        );
        assert_eq!(
            parse(r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":5}}"#),
            StreamMessage::Other
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for text in [
            r#"{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"X","u":2}}"#,
            "{",
            "",
            "[1,2",
            r#"{"stream":"x","data":{"e":"depthUpdate","E":"no"}}"#,
            "\u{0}\u{1}",
        ] {
            let mut buffer = text.as_bytes().to_vec();
            assert!(StreamMessage::parse(&mut buffer).is_err(), "{text:?}");
        }
        // A bad value fails its event (its book resyncs), not the message: the rest of the side
        // is still read as JSON.
        let mut bad_level = br#"{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1.0","-5"],["2.0","1"]],"a":[]}}"#.to_vec();
        let StreamMessage::Depth { update, .. } = StreamMessage::parse(&mut bad_level).unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            DiffUpdate::try_from(update),
            Err(WireError::Decimal {
                field: "quantity",
                ..
            })
        ));
    }

    #[test]
    fn snapshots_need_a_last_update_id() {
        let mut spot = br#"{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}"#.to_vec();
        let (id, snapshot) = DepthSnapshot::parse(&mut spot).unwrap();
        assert_eq!(
            (id, snapshot.bids.len(), snapshot.asks.len()),
            (1027024, 1, 1)
        );
        let mut options = br#"{"bids":[["1000.000","0.1000"]],"asks":[["1900.000","0.1000"]],"T":1762780909676,"lastUpdateId":361}"#.to_vec();
        assert_eq!(DepthSnapshot::parse(&mut options).unwrap().0, 361);
        let mut old_options = br#"{"bids":[],"asks":[],"u":37461}"#.to_vec();
        assert!(matches!(
            DepthSnapshot::parse(&mut old_options),
            Err(WireError::MissingField {
                field: "lastUpdateId",
                ..
            })
        ));
        let mut error = br#"{"code":-1121,"msg":"Invalid symbol."}"#.to_vec();
        assert_eq!(
            ApiError::parse(&mut error),
            Some(ApiError {
                code: -1121,
                msg: "Invalid symbol.".into()
            })
        );
    }
}
