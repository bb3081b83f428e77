//! `ubdcc_local`: the Python binding of ubdcc's shared-memory order books.
//!
//! A [`Reader`] wraps a [`ClusterReader`] and reads any book of a cluster on this host straight
//! from shared memory, returning the levels in the shape the original `unicorn-binance-local-depth-cache`
//! library returns them: `[[price, quantity], ...]`, best first, as Python floats.
//!
//! Beyond single sides: `get_book` (both sides from one consistent read), `bbo` and `bbo_all`
//! (the best bid and ask from slot headers), and `fill_price` / `depth_stats`, computed on one
//! consistent read by the same `ubdcc_shm` functions the REST API answers with.
//!
//! The hot path (`get_asks` / `get_bids`) holds the GIL for the whole call (a read is tens of
//! nanoseconds, releasing the GIL would cost more), reuses one level buffer per `Reader` and builds
//! the result lists directly. This crate has no `unsafe` of its own.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{IntoPyObject, intern};
use ubdcc_shm::{
    Bbo, BookInfo, BookStatus, ClusterReader, FillAmount, Freshness, Level, LevelQuery, ReadError,
    Side, Trust, WaitOutcome, depth_stats, fill_price,
};

create_exception!(
    ubdcc_local,
    UbdccError,
    PyException,
    "Base class of every error a ubdcc_local read raises."
);
create_exception!(
    ubdcc_local,
    DepthCacheNotFound,
    UbdccError,
    "No segment of the cluster on this host holds the book (or the cluster has no segment at all)."
);
create_exception!(
    ubdcc_local,
    DepthCacheOutOfSync,
    UbdccError,
    "The book exists but is not synced (starting, or out of sync and resyncing); its levels are not served."
);
create_exception!(
    ubdcc_local,
    WriterGone,
    UbdccError,
    "The DCN process writing the book's segment is gone (died or closed the segment)."
);
create_exception!(
    ubdcc_local,
    WriterHung,
    UbdccError,
    "The DCN process writing the book's segment is alive but its heartbeat stopped."
);
create_exception!(
    ubdcc_local,
    ReadContended,
    UbdccError,
    "The book changed during every one of the bounded read attempts; retrying usually succeeds."
);
create_exception!(
    ubdcc_local,
    InvalidQuery,
    UbdccError,
    "The read parameters are out of range: a negative limit_count or a NaN threshold_volume."
);

/// The Python exception for a failed read, carrying the Rust error's message.
fn read_error(error: ReadError) -> PyErr {
    let message = error.to_string();
    match error {
        ReadError::NotFound { .. } => DepthCacheNotFound::new_err(message),
        ReadError::NotSynced { .. } => DepthCacheOutOfSync::new_err(message),
        ReadError::WriterGone { .. } | ReadError::SegmentShrunk { .. } => {
            WriterGone::new_err(message)
        }
        ReadError::WriterHung { .. } => WriterHung::new_err(message),
        ReadError::Contended { .. } => ReadContended::new_err(message),
        ReadError::InvalidQuery(_) => InvalidQuery::new_err(message),
        ReadError::Io { .. } => UbdccError::new_err(message),
    }
}

/// Validates the REST-style read parameters.
#[inline]
fn level_query(limit_count: Option<i64>, threshold_volume: Option<f64>) -> PyResult<LevelQuery> {
    LevelQuery::new(limit_count, threshold_volume)
        .map_err(|error| InvalidQuery::new_err(error.to_string()))
}

/// One level as the Python list `[price, quantity]`.
struct PyLevel(Level);

impl<'py> IntoPyObject<'py> for PyLevel {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    #[inline]
    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, [self.0.price, self.0.quantity])
    }
}

/// `[[price, quantity], ...]` for `levels`, in order.
#[inline]
fn levels_to_list<'py>(py: Python<'py>, levels: &[Level]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, levels.iter().map(|&level| PyLevel(level)))
}

/// Unix time in nanoseconds (0 if the clock is before 1970).
fn unix_now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// `(exchange, market)` from one item of a batch: a 2-tuple or 2-list of `str`.
fn book_pair(book: &Bound<'_, PyAny>) -> PyResult<(PyBackedStr, PyBackedStr)> {
    let items = if let Ok(tuple) = book.cast::<PyTuple>() {
        (tuple.len() == 2).then(|| (tuple.get_item(0), tuple.get_item(1)))
    } else if let Ok(list) = book.cast::<PyList>() {
        (list.len() == 2).then(|| (list.get_item(0), list.get_item(1)))
    } else {
        None
    };
    if let Some((Ok(exchange), Ok(market))) = items
        && let (Ok(exchange), Ok(market)) = (exchange.extract(), market.extract())
    {
        return Ok((exchange, market));
    }
    Err(PyTypeError::new_err(format!(
        "each book must be an (exchange, market) tuple of two str, got {}",
        book.repr()?
    )))
}

/// Reads order books of a ubdcc cluster from shared memory on this host.
///
/// ``Reader(cluster="default")`` opens every segment of the cluster; a cluster with no segment yet
/// is not an error (reads raise ``DepthCacheNotFound`` until its DCNs appear). An invalid cluster
/// name (empty, longer than 64 characters, or characters other than ``A-Za-z0-9_-``) raises
/// ``ValueError``.
///
/// The reader follows books as DCNs add, remove and restart them. Give each thread its own
/// ``Reader``: calls hold the GIL, and on free-threaded Python concurrent calls on one ``Reader``
/// raise ``RuntimeError`` (already borrowed).
#[pyclass(module = "ubdcc_local")]
pub struct Reader {
    reader: ClusterReader,
    /// Reused by every read (the bids of a whole-book read) so reads do not allocate a Rust
    /// vector per call.
    levels: Vec<Level>,
    /// The asks of a whole-book read, reused likewise.
    asks: Vec<Level>,
}

impl Reader {
    /// Reads one side into the reusable buffer and converts it.
    #[inline]
    fn read_side<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        side: Side,
        query: &LevelQuery,
    ) -> PyResult<Bound<'py, PyList>> {
        match self
            .reader
            .read(exchange, market, side, query, &mut self.levels)
        {
            Ok(_) => levels_to_list(py, &self.levels),
            Err(error) => Err(read_error(error)),
        }
    }

    /// Reads one side of many books; failures become exception instances in the result.
    fn read_many<'py>(
        &mut self,
        py: Python<'py>,
        books: &Bound<'py, PyAny>,
        side: Side,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let query = level_query(limit_count, threshold_volume)?;
        let mut results: Vec<Bound<'py, PyAny>> = Vec::with_capacity(books.len().unwrap_or(0));
        for book in books.try_iter()? {
            let (exchange, market) = book_pair(&book?)?;
            let result = match self
                .reader
                .read(&exchange, &market, side, &query, &mut self.levels)
            {
                Ok(_) => levels_to_list(py, &self.levels)?.into_any(),
                // Only read errors become items; anything else (MemoryError) is raised.
                Err(error) => read_error(error).into_value(py).into_bound(py).into_any(),
            };
            results.push(result);
        }
        PyList::new(py, results)
    }
}

#[pymethods]
impl Reader {
    /// Opens the cluster ``cluster`` (default ``"default"``).
    ///
    /// Only segments of this user, or of owners named in ``UBDCC_SHM_TRUST`` or in ``trust``
    /// (both ``"uid:1000,gid:2000"``), that group and others may not write are read; ``ignored()``
    /// lists the others and why.
    ///
    /// Raises ``ValueError`` for an invalid cluster name or trust setting.
    #[new]
    #[pyo3(signature = (cluster = "default", trust = None))]
    fn new(cluster: &str, trust: Option<&str>) -> PyResult<Self> {
        let value_error = |error: &dyn std::error::Error| PyValueError::new_err(error.to_string());
        let trust = Trust::from_env()
            .and_then(|own| own.with_spec(trust.unwrap_or_default()))
            .map_err(|error| value_error(&error))?;
        let reader =
            ClusterReader::open_trusting(cluster, trust).map_err(|error| value_error(&error))?;
        Ok(Self {
            reader,
            levels: Vec::new(),
            asks: Vec::new(),
        })
    }

    /// The cluster name.
    #[getter]
    fn cluster(&self) -> &str {
        self.reader.cluster()
    }

    fn __repr__(&self) -> String {
        // Cluster names are `A-Za-z0-9_-` only, so no quoting is needed.
        format!("Reader(cluster='{}')", self.reader.cluster())
    }

    /// The asks of a synced book as ``[[price, quantity], ...]``, lowest price first.
    ///
    /// ``threshold_volume`` (float or int): levels are taken from the best one while the running
    /// total of ``price * quantity`` stays ``<= threshold_volume``; the first level is always
    /// taken. ``limit_count`` (int): at most that many levels; ``0`` gives ``[]``.
    ///
    /// Raises ``DepthCacheNotFound``, ``DepthCacheOutOfSync``, ``WriterGone``, ``WriterHung``,
    /// ``ReadContended``; ``InvalidQuery`` for a negative ``limit_count`` or a NaN
    /// ``threshold_volume``; ``TypeError`` for arguments of the wrong type.
    #[pyo3(signature = (exchange, market, limit_count = None, threshold_volume = None))]
    fn get_asks<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let query = level_query(limit_count, threshold_volume)?;
        self.read_side(py, exchange, market, Side::Asks, &query)
    }

    /// The bids of a synced book as ``[[price, quantity], ...]``, highest price first.
    ///
    /// Same parameters and exceptions as ``get_asks``.
    #[pyo3(signature = (exchange, market, limit_count = None, threshold_volume = None))]
    fn get_bids<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let query = level_query(limit_count, threshold_volume)?;
        self.read_side(py, exchange, market, Side::Bids, &query)
    }

    /// The asks of many books in one call. ``books`` is an iterable of ``(exchange, market)``
    /// tuples (2-lists are accepted too); the same ``limit_count`` / ``threshold_volume`` apply to
    /// every book.
    ///
    /// Returns a list aligned with ``books``: each item is the book's level list, or, for a book
    /// whose read failed, the exception *instance* (not raised), like
    /// ``asyncio.gather(..., return_exceptions=True)``. Check items with
    /// ``isinstance(item, ubdcc_local.UbdccError)``.
    ///
    /// Raises (for the whole call) ``InvalidQuery`` for invalid parameters and ``TypeError`` when
    /// an item of ``books`` is not a pair of ``str``.
    #[pyo3(signature = (books, limit_count = None, threshold_volume = None))]
    fn get_asks_many<'py>(
        &mut self,
        py: Python<'py>,
        books: &Bound<'py, PyAny>,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.read_many(py, books, Side::Asks, limit_count, threshold_volume)
    }

    /// The bids of many books in one call; see ``get_asks_many``.
    #[pyo3(signature = (books, limit_count = None, threshold_volume = None))]
    fn get_bids_many<'py>(
        &mut self,
        py: Python<'py>,
        books: &Bound<'py, PyAny>,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.read_many(py, books, Side::Bids, limit_count, threshold_volume)
    }

    /// The best bid and ask of a synced book, as a dict read from the book's slot header alone
    /// (no level is touched, the cheapest read there is):
    ///
    /// - ``bid``, ``ask``: ``[price, quantity]`` of the best bid (highest) and ask (lowest), or
    ///   ``None`` when that side is empty
    /// - ``last_update_id``, ``event_time_ms``, ``receive_time_ns``, ``publish_time_ns`` and
    ///   ``depth`` as in :meth:`info`, from the same consistent read
    ///
    /// Raises ``DepthCacheNotFound``, ``DepthCacheOutOfSync``, ``WriterGone``, ``WriterHung``,
    /// ``ReadContended``.
    fn bbo<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let bbo = self.reader.bbo(exchange, market).map_err(read_error)?;
        bbo_dict(py, &bbo)
    }

    /// Both sides of a synced book from **one** consistent read, as a dict: the bids and asks
    /// are one version of the book, the one ``last_update_id`` names.
    ///
    /// - ``bids``, ``asks``: ``[[price, quantity], ...]`` best first, each side selected by
    ///   ``limit_count`` / ``threshold_volume`` on its own (as ``get_bids`` / ``get_asks``)
    /// - ``last_update_id``, ``event_time_ms``, ``receive_time_ns``, ``publish_time_ns``,
    ///   ``age_ms`` and ``depth`` as in :meth:`info`, from the same read
    ///
    /// Raises as ``get_asks``.
    #[pyo3(signature = (exchange, market, limit_count = None, threshold_volume = None))]
    fn get_book<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        limit_count: Option<i64>,
        threshold_volume: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let query = level_query(limit_count, threshold_volume)?;
        let info = self
            .reader
            .read_book(exchange, market, &query, &mut self.levels, &mut self.asks)
            .map_err(read_error)?;
        let dict = version_dict(py, &info)?;
        dict.set_item(intern!(py, "bids"), levels_to_list(py, &self.levels)?)?;
        dict.set_item(intern!(py, "asks"), levels_to_list(py, &self.asks)?)?;
        Ok(dict)
    }

    /// The best bid and ask of every book of the cluster on this host, or of every book of
    /// ``exchange``, as ``{exchange: {market: bbo}}`` (each ``bbo`` the dict :meth:`bbo`
    /// returns). A book that is not served maps to the exception *instance* a ``bbo`` of it
    /// would raise (``DepthCacheOutOfSync`` names its status), never to a stale price. Each book
    /// is read on its own, from its slot header.
    #[pyo3(signature = (exchange = None))]
    fn bbo_all<'py>(
        &mut self,
        py: Python<'py>,
        exchange: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for (exchange, market, bbo) in self.reader.bbo_all(exchange) {
            let value = match bbo {
                Ok(bbo) => bbo_dict(py, &bbo)?.into_any(),
                Err(error) => read_error(error).into_value(py).into_bound(py).into_any(),
            };
            let markets = match all.get_item(&exchange)? {
                Some(markets) => markets.cast_into::<PyDict>()?,
                None => {
                    let markets = PyDict::new(py);
                    all.set_item(&exchange, &markets)?;
                    markets
                }
            };
            markets.set_item(market, value)?;
        }
        Ok(all)
    }

    /// The price of a fill against a synced book, computed on one consistent read of the side
    /// it walks (the asks for ``side="buy"``, the bids for ``"sell"``). Give exactly one of
    /// ``quantity`` (base asset) and ``quote_quantity`` (quote asset), positive. Returns a dict:
    ///
    /// - ``average_price``, ``worst_price``, ``slippage_bps`` (against the best price, positive
    ///   when worse): ``None`` when nothing could be filled
    /// - ``filled_quantity``, ``filled_quote``, ``levels_used``, ``side``
    /// - ``complete``: ``False`` when the book's levels ran out before the amount was filled
    /// - ``last_update_id``, ``event_time_ms``, ``receive_time_ns``, ``publish_time_ns``,
    ///   ``age_ms``, ``depth`` of the version it was computed on
    ///
    /// Raises ``InvalidQuery`` for a side other than buy/sell or a missing, doubled or
    /// non-positive amount; otherwise as ``get_asks``.
    #[pyo3(signature = (exchange, market, side, quantity = None, quote_quantity = None))]
    fn fill_price<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        side: &str,
        quantity: Option<f64>,
        quote_quantity: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (levels_side, side) = if side.eq_ignore_ascii_case("buy") {
            (Side::Asks, "buy")
        } else if side.eq_ignore_ascii_case("sell") {
            (Side::Bids, "sell")
        } else {
            return Err(InvalidQuery::new_err(format!(
                "side must be \"buy\" or \"sell\", got {side:?}"
            )));
        };
        let amount = match (quantity, quote_quantity) {
            (Some(quantity), None) => FillAmount::Base(quantity),
            (None, Some(quote)) => FillAmount::Quote(quote),
            _ => {
                return Err(InvalidQuery::new_err(
                    "give exactly one of quantity and quote_quantity",
                ));
            }
        };
        let (FillAmount::Base(value) | FillAmount::Quote(value)) = amount;
        if !(value.is_finite() && value > 0.0) {
            return Err(InvalidQuery::new_err(format!(
                "quantity / quote_quantity must be a positive number, got {value}"
            )));
        }
        let info = self
            .reader
            .read(
                exchange,
                market,
                levels_side,
                &LevelQuery::ALL,
                &mut self.levels,
            )
            .map_err(read_error)?;
        let fill = fill_price(&self.levels, amount);
        let dict = version_dict(py, &info)?;
        dict.set_item(intern!(py, "side"), side)?;
        dict.set_item(intern!(py, "average_price"), fill.average_price)?;
        dict.set_item(intern!(py, "worst_price"), fill.worst_price)?;
        dict.set_item(intern!(py, "filled_quantity"), fill.filled_quantity)?;
        dict.set_item(intern!(py, "filled_quote"), fill.filled_quote)?;
        dict.set_item(intern!(py, "complete"), fill.complete)?;
        dict.set_item(intern!(py, "slippage_bps"), fill.slippage_bps)?;
        dict.set_item(intern!(py, "levels_used"), fill.levels_used)?;
        Ok(dict)
    }

    /// The shape of the top of a synced book, computed on one consistent read of both sides.
    /// Returns a dict:
    ///
    /// - ``mid``, ``spread``, ``spread_bps``, ``microprice`` (size-weighted mid of the best
    ///   levels), ``imbalance`` (``(bid - ask) / (bid + ask)`` quantity over the top ``top_n``
    ///   levels of each side): ``None`` when a side is empty
    /// - ``bands``: one dict per ``bps`` given, ``{"bps", "bid_quantity", "ask_quantity",
    ///   "complete"}``: the quantity within ``±bps`` basis points of the mid (``complete`` is
    ///   ``False`` when the levels end inside the band: the quantities are lower bounds); empty
    ///   when a side is empty
    /// - ``top_n``, and ``last_update_id``, ``event_time_ms``, ``receive_time_ns``,
    ///   ``publish_time_ns``, ``age_ms``, ``depth`` of the version read
    ///
    /// Raises ``InvalidQuery`` for a negative ``top_n`` or a band that is not a positive number;
    /// otherwise as ``get_asks``.
    #[pyo3(signature = (exchange, market, top_n = 10, bps = vec![10.0, 50.0, 100.0]))]
    fn depth_stats<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
        top_n: i64,
        bps: Vec<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Ok(top_n) = usize::try_from(top_n) else {
            return Err(InvalidQuery::new_err(format!(
                "top_n must not be negative, got {top_n}"
            )));
        };
        if let Some(bad) = bps.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
            return Err(InvalidQuery::new_err(format!(
                "bps must be positive numbers, got {bad}"
            )));
        }
        let info = self
            .reader
            .read_book(
                exchange,
                market,
                &LevelQuery::ALL,
                &mut self.levels,
                &mut self.asks,
            )
            .map_err(read_error)?;
        let stats = depth_stats(&self.levels, &self.asks, top_n, &bps);
        let dict = version_dict(py, &info)?;
        let field = |value: fn(&ubdcc_shm::DepthStats) -> f64| stats.as_ref().map(value);
        dict.set_item(intern!(py, "mid"), field(|s| s.mid))?;
        dict.set_item(intern!(py, "spread"), field(|s| s.spread))?;
        dict.set_item(intern!(py, "spread_bps"), field(|s| s.spread_bps))?;
        dict.set_item(intern!(py, "microprice"), field(|s| s.microprice))?;
        dict.set_item(intern!(py, "imbalance"), field(|s| s.imbalance))?;
        dict.set_item(intern!(py, "top_n"), top_n)?;
        let bands = PyList::empty(py);
        for band in stats.iter().flat_map(|stats| &stats.bands) {
            let entry = PyDict::new(py);
            entry.set_item(intern!(py, "bps"), band.bps)?;
            entry.set_item(intern!(py, "bid_quantity"), band.bid_quantity)?;
            entry.set_item(intern!(py, "ask_quantity"), band.ask_quantity)?;
            entry.set_item(intern!(py, "complete"), band.complete)?;
            bands.append(entry)?;
        }
        dict.set_item(intern!(py, "bands"), bands)?;
        Ok(dict)
    }

    /// The metadata of a book, synced or not, as a dict:
    ///
    /// - ``status``: ``"starting"``, ``"synced"`` or ``"out_of_sync"``
    /// - ``reason``: why it is out of sync (e.g. ``"gap in update ids"``), else ``None``
    /// - ``last_update_id``, ``event_time_ms`` (exchange time, Unix ms), ``receive_time_ns`` and
    ///   ``publish_time_ns`` (Unix ns)
    /// - ``age_ms``: milliseconds since this version was published (float; ``None`` if the book
    ///   was never published)
    /// - ``bid_count``, ``ask_count``: levels held per side
    /// - ``resyncs``, ``gaps``, ``updates``: counters since the book was added
    /// - ``depth``: levels per side the book is complete to (the depth of the snapshot it was
    ///   built from); 0 while unknown (starting)
    /// - ``changes``: the change stamp of this version (``last_seen`` for :meth:`wait_for_update`)
    /// - ``freshness``: where ``event_time_ms`` comes from, a list of names: ``"snapshot_time"``
    ///   (the REST snapshot's own time, no event applied since), ``"no_exchange_time"`` (no
    ///   exchange time known); empty: the exchange's time of the last event applied
    /// - ``verified_at_ms`` (Unix ms of the last audit that proved the book, 0 = never),
    ///   ``audits``, ``audit_mismatches``: the DCN's audits of the book
    /// - ``top_hash``, ``top_hash_update_id``: the hash of the top 20 levels per side and the
    ///   update id it was computed at (replicas at equal ids have equal hashes)
    ///
    /// Raises ``DepthCacheNotFound``, ``WriterGone``, ``WriterHung``, ``ReadContended``.
    fn info<'py>(
        &mut self,
        py: Python<'py>,
        exchange: &str,
        market: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let proof = self.reader.proof(exchange, market).map_err(read_error)?;
        let dict = info_dict(py, &proof.info)?;
        dict.set_item(intern!(py, "verified_at_ms"), proof.audit.verified_at_ms)?;
        dict.set_item(intern!(py, "audits"), proof.audit.audits)?;
        dict.set_item(
            intern!(py, "audit_mismatches"),
            proof.audit.audit_mismatches,
        )?;
        dict.set_item(intern!(py, "top_hash"), proof.top_hash.hash)?;
        dict.set_item(intern!(py, "top_hash_update_id"), proof.top_hash.update_id)?;
        Ok(dict)
    }

    /// Every book of every segment of the cluster, one dict per replica, sorted:
    /// ``{"exchange": str, "market": str, "segment": str, "status": str, "error": str | None}``.
    /// ``status`` is ``"starting"``, ``"synced"`` or ``"out_of_sync"``; for a replica that cannot
    /// be read it is ``"writer_gone"``, ``"writer_hung"`` or ``"unreadable"`` and ``error`` says why.
    fn list<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let books = self.reader.list();
        let mut dicts = Vec::with_capacity(books.len());
        for book in books {
            let dict = PyDict::new(py);
            dict.set_item(intern!(py, "exchange"), &book.exchange)?;
            dict.set_item(intern!(py, "market"), &book.market)?;
            dict.set_item(intern!(py, "segment"), &book.segment)?;
            let (status, error) = match &book.status {
                Ok(status) => (status.as_str(), None),
                Err(ReadError::WriterGone { .. }) => ("writer_gone", Some(book.status_error())),
                Err(ReadError::WriterHung { .. }) => ("writer_hung", Some(book.status_error())),
                Err(_) => ("unreadable", Some(book.status_error())),
            };
            dict.set_item(intern!(py, "status"), status)?;
            dict.set_item(intern!(py, "error"), error)?;
            dicts.push(dict);
        }
        PyList::new(py, dicts)
    }

    /// Segments of the cluster this reader does not read because it does not trust them, one
    /// dict each: ``{"segment": str, "reason": str}`` (e.g. ``"owned by uid 65534 gid 65534,
    /// which this reader does not trust ..."``), as of the last refresh.
    fn ignored<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut dicts = Vec::new();
        for segment in self.reader.ignored() {
            let dict = PyDict::new(py);
            dict.set_item(intern!(py, "segment"), &segment.name)?;
            dict.set_item(intern!(py, "reason"), segment.reason.to_string())?;
            dicts.push(dict);
        }
        PyList::new(py, dicts)
    }

    /// Rescans the cluster's segments and rebuilds the book index. Reads do this by themselves
    /// when a book is missing or moved; call it to pick up new DCNs eagerly.
    fn refresh(&mut self) {
        self.reader.refresh();
    }

    /// Sleeps until the book is written after the change stamp ``last_seen`` (the ``changes``
    /// of your last read of it, from :meth:`info`, :meth:`bbo`, :meth:`get_book`..., or 0) and
    /// returns the new stamp (an ``int`` greater than ``last_seen``), at once when the book
    /// already changed; ``None`` when nothing newer was published within ``timeout_s`` seconds.
    /// Every write counts: a publish, a status change (out of sync and back), the book's
    /// removal.
    ///
    /// The thread sleeps in the kernel (a futex the DCN wakes after every publish) with the GIL
    /// released: no spinning, no publish missed, other Python threads run meanwhile. Ctrl-C
    /// interrupts it within 0.1 s.
    ///
    /// Raises ``DepthCacheNotFound``, ``WriterGone``, ``WriterHung`` (also when the writer dies
    /// or hangs during the wait), ``ReadContended``; ``ValueError`` for a negative or NaN
    /// timeout.
    fn wait_for_update(
        &mut self,
        py: Python<'_>,
        exchange: &str,
        market: &str,
        last_seen: u64,
        timeout_s: f64,
    ) -> PyResult<Option<u64>> {
        let reader = &mut self.reader;
        wait_in_slices(py, timeout_s, |slice| {
            reader
                .wait_for_update(exchange, market, last_seen, slice)
                .map_err(read_error)
        })
    }

    /// Sleeps until any book of any segment of the cluster changed since this reader's previous
    /// ``wait_for_any`` (the first call: since the segments were created) — a publish, a writer
    /// found dead or hung, a DCN's segment appearing or going away — and returns the highest
    /// segment change stamp; ``None`` when nothing changed within ``timeout_s`` seconds. Then
    /// compare the ``changes`` of the books you follow with your last reads of them.
    ///
    /// Sleeps in the kernel with the GIL released, like :meth:`wait_for_update`. Raises
    /// ``ValueError`` for a negative or NaN timeout.
    fn wait_for_any(&mut self, py: Python<'_>, timeout_s: f64) -> PyResult<Option<u64>> {
        let reader = &mut self.reader;
        wait_in_slices(py, timeout_s, |slice| Ok(reader.wait_for_any(slice)))
    }
}

/// How long a wait sleeps without the GIL before it checks for Python signals (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// Runs `wait` without the GIL in slices of at most [`SIGNAL_SLICE`] until it reports a change
/// (its stamp) or `timeout_s` seconds pass (`None`), checking Python's signals between slices.
fn wait_in_slices(
    py: Python<'_>,
    timeout_s: f64,
    mut wait: impl FnMut(Duration) -> PyResult<WaitOutcome> + Send,
) -> PyResult<Option<u64>> {
    let timeout = Duration::try_from_secs_f64(timeout_s).map_err(|_| {
        PyValueError::new_err(format!(
            "timeout_s must be a finite number of seconds >= 0, not {timeout_s}"
        ))
    })?;
    // `None`: a timeout beyond what `Instant` holds waits for good.
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let remaining = deadline.map_or(SIGNAL_SLICE, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        let slice = remaining.min(SIGNAL_SLICE);
        if let WaitOutcome::Changed(stamp) = py.detach(|| wait(slice))? {
            return Ok(Some(stamp));
        }
        py.check_signals()?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
    }
}

/// The dict `Reader.bbo` returns.
fn bbo_dict<'py>(py: Python<'py>, bbo: &Bbo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let pair = |level: Option<Level>| level.map(|l| [l.price, l.quantity]);
    dict.set_item(intern!(py, "bid"), pair(bbo.bid))?;
    dict.set_item(intern!(py, "ask"), pair(bbo.ask))?;
    dict.set_item(intern!(py, "last_update_id"), bbo.last_update_id)?;
    dict.set_item(intern!(py, "event_time_ms"), bbo.event_time_ms)?;
    dict.set_item(intern!(py, "receive_time_ns"), bbo.receive_time_ns)?;
    dict.set_item(intern!(py, "publish_time_ns"), bbo.publish_time_ns)?;
    dict.set_item(intern!(py, "depth"), bbo.depth)?;
    dict.set_item(intern!(py, "changes"), bbo.changes)?;
    dict.set_item(intern!(py, "freshness"), freshness_names(bbo.freshness))?;
    Ok(dict)
}

/// The names of the freshness bits set: ``"snapshot_time"``, ``"no_exchange_time"``.
fn freshness_names(freshness: Freshness) -> Vec<&'static str> {
    [
        (Freshness::SNAPSHOT_TIME, "snapshot_time"),
        (Freshness::NO_EXCHANGE_TIME, "no_exchange_time"),
    ]
    .into_iter()
    .filter(|&(bit, _)| freshness.contains(bit))
    .map(|(_, name)| name)
    .collect()
}

/// The keys every answer computed on one version carries: which version it is and how old.
fn version_dict<'py>(py: Python<'py>, info: &BookInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "last_update_id"), info.last_update_id)?;
    dict.set_item(intern!(py, "event_time_ms"), info.event_time_ms)?;
    dict.set_item(intern!(py, "receive_time_ns"), info.receive_time_ns)?;
    dict.set_item(intern!(py, "publish_time_ns"), info.publish_time_ns)?;
    dict.set_item(intern!(py, "age_ms"), age_ms(info))?;
    dict.set_item(intern!(py, "depth"), info.depth)?;
    dict.set_item(intern!(py, "changes"), info.changes)?;
    Ok(dict)
}

/// Milliseconds since `info`'s version was published; `None` if it never was.
fn age_ms(info: &BookInfo) -> Option<f64> {
    (info.publish_time_ns != 0).then(|| {
        let age_ns = unix_now_ns() as f64 - info.publish_time_ns as f64;
        age_ns / 1e6
    })
}

fn info_dict<'py>(py: Python<'py>, info: &BookInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let reason = match info.status {
        BookStatus::OutOfSync(reason) => Some(reason.as_str()),
        BookStatus::Starting | BookStatus::Synced => None,
    };
    dict.set_item(intern!(py, "status"), info.status.as_str())?;
    dict.set_item(intern!(py, "reason"), reason)?;
    dict.set_item(intern!(py, "last_update_id"), info.last_update_id)?;
    dict.set_item(intern!(py, "event_time_ms"), info.event_time_ms)?;
    dict.set_item(intern!(py, "receive_time_ns"), info.receive_time_ns)?;
    dict.set_item(intern!(py, "publish_time_ns"), info.publish_time_ns)?;
    dict.set_item(intern!(py, "age_ms"), age_ms(info))?;
    dict.set_item(intern!(py, "bid_count"), info.bid_count)?;
    dict.set_item(intern!(py, "ask_count"), info.ask_count)?;
    dict.set_item(intern!(py, "resyncs"), info.resyncs)?;
    dict.set_item(intern!(py, "gaps"), info.gaps)?;
    dict.set_item(intern!(py, "updates"), info.updates)?;
    dict.set_item(intern!(py, "depth"), info.depth)?;
    dict.set_item(intern!(py, "changes"), info.changes)?;
    dict.set_item(intern!(py, "freshness"), freshness_names(info.freshness))?;
    Ok(dict)
}

/// Read ubdcc's shared-memory order books from Python.
///
/// ``Reader(cluster)`` reads any book of a ubdcc cluster that a DCN on this host publishes to
/// shared memory, in well under a microsecond, without any network round trip::
///
///     import ubdcc_local
///     reader = ubdcc_local.Reader("default")
///     asks = reader.get_asks("binance.com", "BTCUSDT", limit_count=10)   # [[price, qty], ...]
///     book = reader.get_book("binance.com", "BTCUSDT", limit_count=10)   # both sides, one version
///     fill = reader.fill_price("binance.com", "BTCUSDT", "buy", quantity=2.5)
///
/// Levels come back as ``[[price, quantity], ...]`` best first, like the original
/// ``unicorn-binance-local-depth-cache`` library. Errors are exceptions derived from
/// ``UbdccError``: ``DepthCacheNotFound``, ``DepthCacheOutOfSync``, ``WriterGone``,
/// ``WriterHung``, ``ReadContended`` and ``InvalidQuery``. A dead or hung writer always gives an
/// error, never stale data.
#[pymodule]
fn ubdcc_local(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Reader>()?;
    m.add("UbdccError", py.get_type::<UbdccError>())?;
    m.add("DepthCacheNotFound", py.get_type::<DepthCacheNotFound>())?;
    m.add("DepthCacheOutOfSync", py.get_type::<DepthCacheOutOfSync>())?;
    m.add("WriterGone", py.get_type::<WriterGone>())?;
    m.add("WriterHung", py.get_type::<WriterHung>())?;
    m.add("ReadContended", py.get_type::<ReadContended>())?;
    m.add("InvalidQuery", py.get_type::<InvalidQuery>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Explicit, so `from ubdcc_local import *` (and maturin's package wrapper) export `__version__`.
    m.add(
        "__all__",
        [
            "Reader",
            "UbdccError",
            "DepthCacheNotFound",
            "DepthCacheOutOfSync",
            "WriterGone",
            "WriterHung",
            "ReadContended",
            "InvalidQuery",
            "__version__",
        ],
    )?;
    Ok(())
}
