//! Push stream names: `<exchange>:<MARKET>@bbo`, `<exchange>:<MARKET>@book<N>` (N one of
//! [`BOOK_DEPTHS`]), each optionally followed by `@<interval>ms` ([`MIN_INTERVAL`] ≤ interval ≤
//! [`MAX_INTERVAL`]) for a conflated stream. A name is parsed once, at subscription, into a
//! [`StreamName`]; everything after that works on the parsed form and its canonical text.
//!
//! # Why only some depths and intervals
//! Every distinct stream is a topic the watcher keeps a view, diff buffers and a snapshot for
//! (~130 KiB for `@book1000`) and serves on every change of its book. Were every `N` and every
//! interval its own stream, a few clients could subscribe thousands of `@book1000@<n>ms`
//! variants of one book and hold gigabytes and the watcher's time. So `N` is one of
//! [`BOOK_DEPTHS`] (Binance's partial-depth levels and beyond), and an interval of
//! [`MIN_INTERVAL`] to [`MAX_INTERVAL`] is accepted and served at the nearest of [`INTERVALS`]:
//! a stream of a book has at most (1 + depths) × (1 + intervals) variants. The canonical name
//! (the one messages and `LIST_SUBSCRIPTIONS` carry) names the interval served.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The depths `@bookN` takes, shallowest first; the deepest is the REST API's default depth and
/// what a DCN keeps by default. See the module doc for why not every `N`.
pub(crate) const BOOK_DEPTHS: [u32; 7] = [5, 10, 20, 50, 100, 500, 1000];
/// `@bookN` streams of at least this depth are "deep": a client may hold only
/// [`super::limits::MAX_DEEP_STREAMS_PER_CLIENT`] of them.
pub(crate) const DEEP_BOOK: u32 = 500;
/// The conflation intervals served, shortest first; any accepted interval is served at the
/// nearest of them (see the module doc).
pub(crate) const INTERVALS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// The shortest conflation interval accepted (issue 15: "any interval ≥ 10 ms"); served at
/// [`INTERVALS`]`[0]`.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest conflation interval accepted: a minute; served at the longest of [`INTERVALS`]
/// (more often than asked, never staler).
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// The longest stream name accepted (exchange strings and market symbols are short).
const MAX_NAME_LEN: usize = 128;

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamKind {
    /// Best bid and ask, on every change of either.
    Bbo,
    /// The top `N` levels per side: a snapshot, then diffs of that view.
    Book(u32),
}

/// A parsed stream name. Its text (`Display`, [`StreamName::text`]) is its canonical form: the
/// name as the client sent it, except that an interval names the one served (`@137ms` is
/// `@100ms`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StreamName {
    exchange: Arc<str>,
    market: Arc<str>,
    kind: StreamKind,
    /// `Some` for a conflated stream.
    interval: Option<Duration>,
    text: Arc<str>,
}

/// Why a stream name was refused; the text goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamNameError {
    /// Not `<exchange>:<MARKET>@<kind>[@<interval>ms]`.
    #[error(
        "invalid stream name '{0}': expected <exchange>:<MARKET>@bbo or <exchange>:<MARKET>@book<N>, optionally followed by @<interval>ms"
    )]
    Form(String),
    /// `@bookN` with N not one of [`BOOK_DEPTHS`].
    #[error("invalid stream name '{0}': @bookN takes N = 5, 10, 20, 50, 100, 500 or 1000")]
    Depth(String),
    /// An interval out of range.
    #[error("invalid stream name '{name}': the interval must be {min}ms to {max}ms", min = MIN_INTERVAL.as_millis(), max = MAX_INTERVAL.as_millis())]
    Interval {
        /// The name as sent.
        name: String,
    },
}

impl StreamName {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`StreamNameError`] saying what is wrong; never panics, whatever the text.
    pub(crate) fn parse(text: &str) -> Result<Self, StreamNameError> {
        let form = || StreamNameError::Form(clip(text));
        if text.len() > MAX_NAME_LEN {
            return Err(form());
        }
        let (exchange, rest) = text.split_once(':').ok_or_else(form)?;
        let mut parts = rest.split('@');
        let market = parts.next().ok_or_else(form)?;
        let kind = parts.next().ok_or_else(form)?;
        let interval = parts.next();
        if parts.next().is_some() || !is_exchange(exchange) || !is_market(market) {
            return Err(form());
        }
        let kind = parse_kind(kind)
            .ok_or_else(form)?
            .map_err(|()| StreamNameError::Depth(clip(text)))?;
        let interval = match interval {
            None => None,
            Some(interval) => Some(
                parse_interval(interval)
                    .ok_or_else(form)?
                    .map_err(|()| StreamNameError::Interval { name: clip(text) })?,
            ),
        };
        let text = match interval {
            Some(interval) => format!(
                "{exchange}:{market}@{}@{}ms",
                kind_text(kind),
                interval.as_millis()
            ),
            None => text.to_owned(),
        };
        Ok(Self {
            exchange: exchange.into(),
            market: market.into(),
            kind,
            interval,
            text: text.into(),
        })
    }

    /// The exchange string.
    pub(crate) fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The market symbol.
    pub(crate) fn market(&self) -> &str {
        &self.market
    }

    /// What the stream carries.
    pub(crate) fn kind(&self) -> StreamKind {
        self.kind
    }

    /// The conflation interval, `None` for a stream of every change.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// `true` for a `@bookN` stream with N ≥ [`DEEP_BOOK`].
    pub(crate) fn is_deep(&self) -> bool {
        matches!(self.kind, StreamKind::Book(depth) if depth >= DEEP_BOOK)
    }

    /// The name's canonical text, shared.
    pub(crate) fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The kind's part of a name (`bbo`, `book20`).
fn kind_text(kind: StreamKind) -> String {
    match kind {
        StreamKind::Bbo => "bbo".to_owned(),
        StreamKind::Book(depth) => format!("book{depth}"),
    }
}

/// `Some(Ok)` a kind, `Some(Err)` a `bookN` with N not served, `None` not a kind at all.
fn parse_kind(kind: &str) -> Option<Result<StreamKind, ()>> {
    if kind == "bbo" {
        return Some(Ok(StreamKind::Bbo));
    }
    let depth = kind.strip_prefix("book")?;
    let depth = parse_decimal(depth)?;
    Some(match u32::try_from(depth) {
        Ok(n) if BOOK_DEPTHS.contains(&n) => Ok(StreamKind::Book(n)),
        _ => Err(()),
    })
}

/// `Some(Ok)` the interval served (the nearest of [`INTERVALS`]), `Some(Err)` one out of range,
/// `None` not `<digits>ms`.
fn parse_interval(interval: &str) -> Option<Result<Duration, ()>> {
    let millis = parse_decimal(interval.strip_suffix("ms")?)?;
    let interval = Duration::from_millis(millis);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Some(Err(()));
    }
    let distance = |served: &Duration| served.abs_diff(interval);
    // `INTERVALS` is not empty; ties go to the shorter interval (fresher, never staler).
    Some(INTERVALS.iter().copied().min_by_key(distance).ok_or(()))
}

/// Plain decimal digits (no sign, no leading `+`), saturating beyond u64.
fn parse_decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Exchange strings are lower-case names with dots, dashes and underscores
/// (`binance.com-futures`); which ones exist is for the book lookup to say.
fn is_exchange(exchange: &str) -> bool {
    !exchange.is_empty()
        && exchange
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Market symbols: letters, digits, `-` and `_` (options symbols carry dashes).
fn is_market(market: &str) -> bool {
    !market.is_empty()
        && market
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

/// The start of a client's text, for an error message (a hostile name is not echoed whole).
fn clip(text: &str) -> String {
    crate::envelope::clip(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_names_parse() {
        let book = StreamName::parse("binance.com:BTCUSDT@book20").unwrap();
        assert_eq!((book.exchange(), book.market()), ("binance.com", "BTCUSDT"));
        assert_eq!((book.kind(), book.interval()), (StreamKind::Book(20), None));
        let bbo = StreamName::parse("binance.com-futures:ETHUSDT@bbo@100ms").unwrap();
        assert_eq!(bbo.kind(), StreamKind::Bbo);
        assert_eq!(bbo.interval(), Some(Duration::from_millis(100)));
        assert_eq!(bbo.to_string(), "binance.com-futures:ETHUSDT@bbo@100ms");
        let option =
            StreamName::parse("binance.com-vanilla-options:BTC-240628-70000-C@book1000@100ms");
        assert!(option.is_ok(), "{option:?}");
    }

    #[test]
    fn any_interval_from_10ms_is_served_at_the_nearest_supported_one() {
        for (asked, served) in [
            (10, 100),
            (137, 100),
            (150, 100),
            (151, 200),
            (250, 200),
            (350, 200),
            (351, 500),
            (999, 1000),
            (60000, 1000),
        ] {
            let name = StreamName::parse(&format!("binance.com:BTCUSDT@book20@{asked}ms")).unwrap();
            assert_eq!(
                name.interval(),
                Some(Duration::from_millis(served)),
                "{asked}"
            );
            assert_eq!(
                name.text().as_ref(),
                format!("binance.com:BTCUSDT@book20@{served}ms")
            );
        }
    }

    #[test]
    fn only_the_served_depths_parse_and_deep_ones_say_so() {
        for depth in BOOK_DEPTHS {
            let name = StreamName::parse(&format!("binance.com:BTCUSDT@book{depth}")).unwrap();
            assert_eq!(name.is_deep(), depth >= DEEP_BOOK, "{depth}");
        }
        for depth in [1, 7, 21, 999] {
            assert!(
                matches!(
                    StreamName::parse(&format!("binance.com:BTCUSDT@book{depth}")),
                    Err(StreamNameError::Depth(_))
                ),
                "{depth}"
            );
        }
    }

    #[test]
    fn bad_names_say_what_is_wrong_and_never_panic() {
        for bad in [
            "",
            ":",
            "@",
            "BTCUSDT@bbo",
            "binance.com:@bbo",
            "binance.com:BTCUSDT",
            "binance.com:BTCUSDT@",
            "binance.com:BTCUSDT@depth",
            "binance.com:BTCUSDT@book",
            "binance.com:BTCUSDT@book-1",
            "binance.com:BTCUSDT@book+5",
            "binance.com:BTC USDT@bbo",
            "Binance.com:BTCUSDT@bbo",
            "binance.com:BTCUSDT@bbo@100",
            "binance.com:BTCUSDT@bbo@ms",
            "binance.com:BTCUSDT@bbo@100ms@x",
            "binance.com:BTCUSDT@book99999999999999999999",
            "binance.com:BTCÜSDT@bbo",
        ] {
            assert!(
                matches!(StreamName::parse(bad), Err(StreamNameError::Form(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            StreamName::parse("binance.com:BTCUSDT@book0"),
            Err(StreamNameError::Depth(_))
        ));
        assert!(matches!(
            StreamName::parse("binance.com:BTCUSDT@book1001"),
            Err(StreamNameError::Depth(_))
        ));
        assert!(matches!(
            StreamName::parse("binance.com:BTCUSDT@bbo@9ms"),
            Err(StreamNameError::Interval { .. })
        ));
        assert!(matches!(
            StreamName::parse("binance.com:BTCUSDT@bbo@60001ms"),
            Err(StreamNameError::Interval { .. })
        ));
        let long = format!("binance.com:{}@bbo", "A".repeat(500));
        let error = StreamName::parse(&long).unwrap_err().to_string();
        assert!(error.len() < 400, "{error}");
    }
}
