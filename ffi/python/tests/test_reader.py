"""Functional tests of ubdcc_local.Reader against a pattern writer."""

from __future__ import annotations

import math
import signal
import time

import pytest

import ubdcc_local
from pattern_support import EXCHANGE, expected, market, pattern_side, retrying, retrying_many, unique_cluster

LEVELS = 1000
BOOKS = 4
SIDES = ("asks", "bids")
THRESHOLDS = [0, 0.0, 1.0, -5.0, 2.5e7, 1e9, 3e9, 1e10, 5e10, 1e12, 10**9, 10**13, math.inf]


def read(reader: ubdcc_local.Reader, side: str, name: str, **query):
    get = reader.get_asks if side == "asks" else reader.get_bids
    return retrying(get, EXCHANGE, name, **query)


@pytest.fixture
def full_speed(start_writer):
    """A writer publishing as fast as it can, and a reader of its cluster."""
    writer = start_writer(books=BOOKS, levels=LEVELS)
    return writer, ubdcc_local.Reader(writer.cluster)


def test_module_surface():
    for name in ("DepthCacheNotFound", "DepthCacheOutOfSync", "WriterGone", "WriterHung", "ReadContended",
                 "InvalidQuery"):
        exception = getattr(ubdcc_local, name)
        assert issubclass(exception, ubdcc_local.UbdccError), name
        assert exception.__module__ == "ubdcc_local"
    assert issubclass(ubdcc_local.UbdccError, Exception)
    assert isinstance(ubdcc_local.__version__, str)
    assert ubdcc_local.__doc__ and "Reader" in ubdcc_local.__doc__
    for method in ("get_asks", "get_bids", "get_asks_many", "get_bids_many", "bbo", "info", "list", "refresh"):
        assert getattr(ubdcc_local.Reader, method).__doc__, method


@pytest.mark.parametrize("side", SIDES)
def test_unlimited_and_limited_reads_are_the_pattern(full_speed, side):
    writer, reader = full_speed
    for round_ in range(30):
        for i in range(BOOKS):
            for limit in (None, 1, 10, 499, 500, 999, 1000, 5000, 10**12):
                levels = read(reader, side, market(i), limit_count=limit)
                assert levels == expected(levels, side, limit, None, LEVELS), (side, i, limit, round_)
    full = read(reader, side, market(0))
    assert 500 <= len(full) <= LEVELS
    assert all(type(level) is list and len(level) == 2 for level in full)
    assert all(type(value) is float for level in full for value in level)
    prices = [price for price, _ in full]
    assert prices == sorted(prices, reverse=(side == "bids")), "best first"


@pytest.mark.parametrize("side", SIDES)
def test_threshold_volume_reads_follow_the_running_total_rule(full_speed, side):
    writer, reader = full_speed
    lengths = set()
    for round_ in range(10):
        for i in range(BOOKS):
            for threshold in THRESHOLDS:
                for limit in (None, 3, 100):
                    levels = read(reader, side, market(i), limit_count=limit, threshold_volume=threshold)
                    assert levels == expected(levels, side, limit, threshold, LEVELS), (side, threshold, limit)
                    lengths.add(len(levels))
    # The thresholds cut the side at many different places, not only at 1 or "everything".
    assert len(lengths) > 5, lengths


def test_threshold_examples_by_hand(start_writer):
    """The rule on one known version, without the reference implementation."""
    writer = start_writer(books=1, levels=LEVELS, rate=20)
    reader = ubdcc_local.Reader(writer.cluster)

    def asks(**query):
        return retrying(reader.get_asks, EXCHANGE, market(0), **query)

    for attempt in range(50):  # until no publish lands between the reads of one attempt
        top = asks(limit_count=2)
        a = int(top[0][1])
        first = top[0][0] * top[0][1]
        second = top[1][0] * top[1][1]
        results = {
            "half of the first": asks(threshold_volume=first / 2),
            "zero": asks(threshold_volume=0),
            "first + second": asks(threshold_volume=first + second),
            "first + half of second": asks(threshold_volume=first + second / 2),
        }
        if any(int(levels[0][1]) != a for levels in results.values()) or int(asks(limit_count=1)[0][1]) != a:
            continue
        assert first > 0
        # The first level is always taken, even when it alone exceeds the threshold.
        assert len(results["half of the first"]) == 1
        assert len(results["zero"]) == 1
        # A level is taken while the running total stays <= threshold_volume.
        assert results["first + second"] == pattern_side(a, "asks", LEVELS)[:2]
        assert len(results["first + half of second"]) == 1
        return
    pytest.fail("the book changed during every attempt")


@pytest.mark.parametrize("side", SIDES)
def test_limit_count_zero_is_empty(full_speed, side):
    writer, reader = full_speed
    assert read(reader, side, market(0), limit_count=0) == []
    assert read(reader, side, market(0), limit_count=0, threshold_volume=1e12) == []


def test_invalid_queries_raise_invalid_query(full_speed):
    writer, reader = full_speed
    for get in (reader.get_asks, reader.get_bids):
        with pytest.raises(ubdcc_local.InvalidQuery, match="limit_count"):
            get(EXCHANGE, market(0), limit_count=-1)
        with pytest.raises(ubdcc_local.InvalidQuery, match="limit_count"):
            get(EXCHANGE, market(0), limit_count=-(2**62))
        with pytest.raises(ubdcc_local.InvalidQuery, match="NaN"):
            get(EXCHANGE, market(0), threshold_volume=math.nan)
        # The query is checked before the book is looked up.
        with pytest.raises(ubdcc_local.InvalidQuery):
            get(EXCHANGE, "NO_SUCH_BOOK", limit_count=-3)
    for get_many in (reader.get_asks_many, reader.get_bids_many):
        with pytest.raises(ubdcc_local.InvalidQuery):
            get_many([(EXCHANGE, market(0))], limit_count=-1)
        with pytest.raises(ubdcc_local.InvalidQuery):
            get_many([(EXCHANGE, market(0))], threshold_volume=float("nan"))
    with pytest.raises(ubdcc_local.UbdccError):
        reader.get_asks(EXCHANGE, market(0), limit_count=-1)


def test_wrong_argument_types_raise_type_error(full_speed):
    writer, reader = full_speed
    bad_calls = [
        lambda: reader.get_asks(EXCHANGE, market(0), limit_count="10"),
        lambda: reader.get_asks(EXCHANGE, market(0), limit_count=1.5),
        lambda: reader.get_bids(EXCHANGE, market(0), limit_count=[1]),
        lambda: reader.get_asks(EXCHANGE, market(0), threshold_volume="100"),
        lambda: reader.get_bids(EXCHANGE, market(0), threshold_volume=object()),
        lambda: reader.get_asks(None, market(0)),
        lambda: reader.get_asks(EXCHANGE, 42),
        lambda: reader.get_bids(EXCHANGE.encode(), market(0)),
        lambda: reader.get_asks(EXCHANGE),
        lambda: reader.get_asks(EXCHANGE, market(0), limit=10),
        lambda: reader.info(EXCHANGE, None),
        lambda: reader.get_asks_many(None),
        lambda: reader.get_asks_many([EXCHANGE]),
        lambda: reader.get_asks_many([(EXCHANGE,)]),
        lambda: reader.get_asks_many([(EXCHANGE, market(0), "extra")]),
        lambda: reader.get_bids_many([(EXCHANGE, 0)]),
        lambda: ubdcc_local.Reader(5),
    ]
    for n, call in enumerate(bad_calls):
        with pytest.raises(TypeError):
            call()
            pytest.fail(f"bad call #{n} did not raise")
    # int and float are both fine for threshold_volume; bool is an int.
    assert len(retrying(reader.get_asks, EXCHANGE, market(0), threshold_volume=10**15)) >= 500
    assert len(retrying(reader.get_asks, EXCHANGE, market(0), limit_count=True)) == 1


def test_unknown_book_and_unknown_cluster_are_not_found(full_speed):
    writer, reader = full_speed
    for call in (lambda: reader.get_asks(EXCHANGE, "NO_SUCH_BOOK"),
                 lambda: reader.get_bids("binance.com-futures", market(0)),
                 lambda: reader.info(EXCHANGE, "NO_SUCH_BOOK")):
        with pytest.raises(ubdcc_local.DepthCacheNotFound, match="NO_SUCH_BOOK|binance.com-futures"):
            call()
    empty = ubdcc_local.Reader(unique_cluster())
    with pytest.raises(ubdcc_local.DepthCacheNotFound, match=empty.cluster):
        empty.get_asks(EXCHANGE, market(0))
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        empty.info(EXCHANGE, market(0))
    assert empty.list() == []
    empty.refresh()
    # The same reader finds a cluster's books once its DCN appears.
    assert len(retrying(reader.get_asks, EXCHANGE, market(0), limit_count=5)) == 5


def test_invalid_cluster_name_is_value_error():
    for name in ("", "a.b", "x" * 65, "no space", "slash/", "ü"):
        with pytest.raises(ValueError, match="cluster"):
            ubdcc_local.Reader(name)
    reader = ubdcc_local.Reader()
    assert reader.cluster == "default"
    assert repr(ubdcc_local.Reader("x-y_Z9")) == "Reader(cluster='x-y_Z9')"


def test_batch_reads_are_aligned_with_exception_instances(full_speed):
    writer, reader = full_speed
    books = [(EXCHANGE, market(0)), (EXCHANGE, "NO_SUCH_BOOK"), [EXCHANGE, market(1)], (EXCHANGE, market(3))]
    for side, get_many in (("asks", reader.get_asks_many), ("bids", reader.get_bids_many)):
        for query in ({}, {"limit_count": 10}, {"threshold_volume": 5e9}, {"limit_count": 0}):
            results = retrying_many(get_many, books, **query)
            assert isinstance(results, list) and len(results) == len(books)
            missing = results[1]
            assert isinstance(missing, ubdcc_local.DepthCacheNotFound), missing
            assert "NO_SUCH_BOOK" in str(missing)
            for item in (results[0], results[2], results[3]):
                assert isinstance(item, list)
                limit, threshold = query.get("limit_count"), query.get("threshold_volume")
                assert item == expected(item, side, limit, threshold, LEVELS), (side, query)
        # An empty batch gives an empty list; any iterable of pairs works, a generator too.
        assert get_many([]) == []
        generated = get_many(((EXCHANGE, market(i)) for i in range(BOOKS)), limit_count=2)
        assert len(generated) == BOOKS
        assert all(isinstance(levels, ubdcc_local.ReadContended) or len(levels) == 2 for levels in generated)


def test_info_contents(start_writer):
    writer = start_writer(books=BOOKS, levels=LEVELS, rate=200)
    reader = ubdcc_local.Reader(writer.cluster)
    keys = {"status", "reason", "last_update_id", "event_time_ms", "receive_time_ns", "publish_time_ns", "age_ms",
            "bid_count", "ask_count", "resyncs", "gaps", "updates", "depth", "changes", "freshness",
            "verified_at_ms", "audits", "audit_mismatches", "top_hash", "top_hash_update_id"}
    for i in range(BOOKS):
        info = retrying(reader.info, EXCHANGE, market(i))
        assert set(info) == keys
        assert info["status"] == "synced" and info["reason"] is None
        k = info["last_update_id"]
        assert k >= 1 and k % BOOKS == i, (i, k)  # the writer publishes version k to book k % books
        assert info["event_time_ms"] == k  # the pattern publishes event_time_ms = k
        assert info["receive_time_ns"] == 0
        assert info["bid_count"] == info["ask_count"] == min(500 + k % 500, LEVELS)
        assert info["resyncs"] == 0 and info["gaps"] == 0
        assert info["depth"] == 1000  # test_pattern::DEPTH
        assert info["updates"] >= 1
        assert info["publish_time_ns"] > 1_600_000_000 * 10**9
        assert isinstance(info["age_ms"], float) and -1000.0 < info["age_ms"] < 60_000.0
        for key in keys - {"status", "reason", "age_ms", "freshness"}:
            assert type(info[key]) is int, key


def test_bbo_is_the_top_of_one_version(full_speed):
    writer, reader = full_speed
    for round_ in range(2000):
        i = round_ % BOOKS
        try:
            bbo = reader.bbo(EXCHANGE, market(i))
        except ubdcc_local.ReadContended:
            continue
        assert set(bbo) == {"bid", "ask", "last_update_id", "event_time_ms", "receive_time_ns", "publish_time_ns", "depth",
                            "changes", "freshness"}
        k = bbo["last_update_id"]
        a = k % 1_000_000
        # Level 0 of pattern version k (shm-layout/src/test_pattern.rs), read at full writer speed.
        assert bbo["ask"] == [float(100_000 + a % 1000), (a * 1000) / 1000.0], (i, k)
        assert bbo["bid"] == [float(99_000 - a % 1000), (a * 1000) / 1000.0], (i, k)
        assert bbo["event_time_ms"] == k and bbo["depth"] == 1000
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.bbo(EXCHANGE, "NOPE")


def test_list_contents(start_writer):
    writer = start_writer(books=BOOKS, levels=100, rate=100)
    reader = ubdcc_local.Reader(writer.cluster)
    books = reader.list()
    assert books == [{"exchange": EXCHANGE, "market": market(i), "segment": writer.segment, "status": "synced",
                      "error": None}
                     for i in range(BOOKS)]
    # A second DCN of the same cluster: its books appear next to the first one's.
    other = start_writer(cluster=writer.cluster, dcn="second", books=2, levels=100, rate=100)
    books = reader.list()
    assert len(books) == BOOKS + 2
    assert [(b["market"], b["segment"]) for b in books if b["segment"] == other.segment] == [
        (market(0), other.segment), (market(1), other.segment)]
    assert all(b["status"] == "synced" for b in books)
    # A dead writer's replicas are listed with the error instead of a status.
    writer.close()  # killed, segment removed
    other.send(signal.SIGKILL)  # leaves its segment behind
    other.proc.wait()
    # (Within the lock-probe interval, 50 ms, a death may not be noticed yet.)
    deadline = time.monotonic() + 1.5
    while True:
        books = reader.list()
        assert books and all(b["segment"] == other.segment for b in books)
        if all(b["status"] != "synced" for b in books) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    assert all(b["status"] == "writer_gone" and other.segment in b["error"] for b in books), books


def test_refresh_picks_up_a_new_dcn(start_writer):
    cluster = unique_cluster()
    reader = ubdcc_local.Reader(cluster)
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.get_bids(EXCHANGE, market(0))
    start_writer(cluster=cluster, books=1, levels=50, rate=100)
    reader.refresh()
    bids = retrying(reader.get_bids, EXCHANGE, market(0))
    assert bids == expected(bids, "bids", None, None, 50)
