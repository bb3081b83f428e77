//! Push stream names: `<exchange>:<MARKET>@bbo` or `<exchange>:<MARKET>@book<N>`
//! (1 ≤ N ≤ [`MAX_BOOK_DEPTH`]), each optionally followed by `@<interval>ms` ([`MIN_INTERVAL`] ≤
//! interval ≤ [`MAX_INTERVAL`]) for a conflated stream. A name is parsed once, at subscription,
//! into a [`StreamName`]; everything after that works on the parsed form and its text, which is
//! the name exactly as the client sent it (messages and `LIST_SUBSCRIPTIONS` carry it).
//!
//! Numbers are plain decimal without leading zeros (`@book07` and `@bbo@0100ms` are refused), so
//! one stream (book, N, interval) has exactly one name: a client cannot multiply the streams
//! the server keeps by spelling one stream in many ways.
//!
//! # Why any N and any interval are safe
//! Every distinct name is a topic (`super::topic`) that keeps its own top-N view and serves it
//! on every change of its book (a conflated one at most once per interval). What a neighbour
//! could make the server hold and do with thousands of `@book1000@<n>ms` variants is bounded
//! by the view-level budget (`super::limits::MAX_VIEW_LEVELS`: Σ N over distinct names, so at
//! most ~1 000 `@book1000` topics in all, ~128 MiB), of which one peer address may hold a
//! quarter (`super::limits::MAX_VIEW_LEVELS_PER_IP`), by
//! [`MAX_DEEP_BOOK`]-deeper streams per client (`super::limits::MAX_DEEP_STREAMS_PER_CLIENT`)
//! and by the distinct-stream cap; the book is still read once per change for all its topics,
//! and a snapshot's body is serialised once per book and N in a pass. Measured at the budget's
//! most (release, 1 048 `@book1000@<n>ms` names of one busy book, all due): 9 ms per watcher
//! pass of diffs, 32 ms per pass of snapshots (`super::watcher` test
//! `worst_pass_under_the_view_level_budget`). Those names share one N and so one snapshot body;
//! names of distinct N or of distinct books share none, and the worst pass of snapshots under
//! the budget is then the unshared figure of the same measurement, ~248 ms. One peer address
//! alone can reach only a quarter of it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The deepest `@bookN`: the REST API's default depth and what a DCN keeps by default.
pub(crate) const MAX_BOOK_DEPTH: u32 = 1000;
/// `@bookN` streams deeper than this are "deep": a client may hold only
/// [`super::limits::MAX_DEEP_STREAMS_PER_CLIENT`] of them.
pub(crate) const MAX_DEEP_BOOK: u32 = 100;
/// The shortest conflation interval accepted (issue 15: "any interval ≥ 10 ms"); the watcher
/// looks at least this often while a conflated stream is subscribed.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest conflation interval accepted: a minute.
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

/// A parsed stream name. Its text (`Display`, [`StreamName::text`]) is the name as the client
/// sent it, which is also the only way to spell that stream (see the module doc).
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
        "invalid stream name '{0}': expected <exchange>:<MARKET>@bbo or <exchange>:<MARKET>@book<N>, optionally followed by @<interval>ms (numbers in decimal, without leading zeros)"
    )]
    Form(String),
    /// `@bookN` with N out of range.
    #[error("invalid stream name '{0}': @bookN takes 1 ≤ N ≤ {MAX_BOOK_DEPTH}")]
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

    /// `true` for a `@bookN` stream with N > [`MAX_DEEP_BOOK`].
    pub(crate) fn is_deep(&self) -> bool {
        matches!(self.kind, StreamKind::Book(depth) if depth > MAX_DEEP_BOOK)
    }

    /// The name's text (as the client sent it), shared.
    pub(crate) fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
        Ok(n) if (1..=MAX_BOOK_DEPTH).contains(&n) => Ok(StreamKind::Book(n)),
        _ => Err(()),
    })
}

/// `Some(Ok)` the interval, `Some(Err)` one out of range, `None` not `<digits>ms`.
fn parse_interval(interval: &str) -> Option<Result<Duration, ()>> {
    let millis = parse_decimal(interval.strip_suffix("ms")?)?;
    let interval = Duration::from_millis(millis);
    Some(if (MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        Ok(interval)
    } else {
        Err(())
    })
}

/// Plain decimal digits: no sign, no leading zero (but `0` itself, refused by range later),
/// at most 12 of them.
fn parse_decimal(digits: &str) -> Option<u64> {
    if digits.is_empty()
        || digits.len() > 12
        || (digits.len() > 1 && digits.starts_with('0'))
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
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
    fn any_interval_from_10ms_to_a_minute_is_served_as_asked_and_named_so() {
        for asked in [10, 137, 150, 999, 60000] {
            let text = format!("binance.com:BTCUSDT@book20@{asked}ms");
            let name = StreamName::parse(&text).unwrap();
            assert_eq!(name.interval(), Some(Duration::from_millis(asked)));
            assert_eq!(name.text().as_ref(), text);
        }
    }

    #[test]
    fn any_depth_from_1_to_1000_parses_and_only_those_beyond_100_are_deep() {
        for depth in [1, 5, 7, 20, 100, 101, 499, 500, 999, 1000] {
            let text = format!("binance.com:BTCUSDT@book{depth}");
            let name = StreamName::parse(&text).unwrap();
            assert_eq!(name.kind(), StreamKind::Book(depth));
            assert_eq!(name.is_deep(), depth > MAX_DEEP_BOOK, "{depth}");
            assert_eq!(name.text().as_ref(), text);
        }
        for depth in ["0", "1001", "5000", "999999999999"] {
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
    fn one_stream_has_one_spelling() {
        for aliased in [
            "binance.com:BTCUSDT@book020",
            "binance.com:BTCUSDT@book00",
            "binance.com:BTCUSDT@bbo@0100ms",
            "binance.com:BTCUSDT@book5@010ms",
        ] {
            let error = StreamName::parse(aliased).unwrap_err();
            assert!(
                matches!(&error, StreamNameError::Form(_)) && error.to_string().contains("leading"),
                "{aliased}: {error}"
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
