"""Whole-book reads of ubdcc_local.Reader (issue 14): get_book (both sides from one consistent read),
bbo_all, fill_price and depth_stats, checked against the pattern (pattern_support.py) and against
models of the fill and the statistics written out here in Python."""

from __future__ import annotations

import math
import signal
import time

import pytest

import ubdcc_local
from pattern_support import EXCHANGE, market, pattern_side, retrying, select, unique_cluster

LEVELS = 1000
BOOKS = 2
VERSION_KEYS = {"last_update_id", "event_time_ms", "receive_time_ns", "publish_time_ns", "age_ms", "depth",
                "changes"}


@pytest.fixture
def full_speed(start_writer):
    """A writer publishing as fast as it can, and a reader of its cluster."""
    writer = start_writer(books=BOOKS, levels=LEVELS)
    return writer, ubdcc_local.Reader(writer.cluster)


def version_of(book: dict) -> int:
    """``a`` of the pattern version the book's info names (``k % 1_000_000``)."""
    return book["last_update_id"] % 1_000_000


def test_get_book_sides_are_the_version_its_update_id_names(full_speed):
    writer, reader = full_speed
    versions = set()
    for round_ in range(600):
        limit = (None, 10, 700, 0)[round_ % 4]
        book = retrying(reader.get_book, EXCHANGE, market(round_ % BOOKS), limit_count=limit)
        assert set(book) == VERSION_KEYS | {"bids", "asks"}
        a = version_of(book)
        # Both sides, and the id, are one version: read separately at full writer speed they
        # would name different versions almost every time.
        for side in ("bids", "asks"):
            assert book[side] == select(pattern_side(a, side, LEVELS), limit, None), (side, limit, round_)
        assert book["event_time_ms"] == book["last_update_id"] and book["depth"] == 1000
        versions.add(book["last_update_id"])
    assert len(versions) > 10, "the book changed during the reads"


def test_get_book_applies_the_query_to_each_side(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=20)
    reader = ubdcc_local.Reader(writer.cluster)
    for threshold in (0.0, 2.5e7, 1e9, 5e10, math.inf):
        for limit in (None, 3):
            book = retrying(reader.get_book, EXCHANGE, market(0), limit_count=limit, threshold_volume=threshold)
            a = version_of(book)
            for side in ("bids", "asks"):
                assert book[side] == select(pattern_side(a, side, LEVELS), limit, threshold), (side, threshold)
    with pytest.raises(ubdcc_local.InvalidQuery):
        reader.get_book(EXCHANGE, market(0), limit_count=-1)
    with pytest.raises(ubdcc_local.InvalidQuery):
        reader.get_book(EXCHANGE, market(0), threshold_volume=math.nan)
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.get_book(EXCHANGE, "NOPE")
    with pytest.raises(TypeError):
        reader.get_book(EXCHANGE, market(0), limit_count="3")


def test_bbo_all_maps_every_book_to_its_top_or_its_error(start_writer):
    writer = start_writer(books=3, levels=100, rate=50)
    other = start_writer(cluster=writer.cluster, dcn="second", books=1, levels=100, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    for _ in range(100):
        everything = reader.bbo_all()
        if not any(isinstance(v, ubdcc_local.ReadContended) for v in everything[EXCHANGE].values()):
            break
    # One entry per book: PATTERN0 has a replica on both DCNs.
    assert list(everything) == [EXCHANGE]
    assert sorted(everything[EXCHANGE]) == [market(i) for i in range(3)]
    for name, bbo in everything[EXCHANGE].items():
        assert set(bbo) == {"bid", "ask", "last_update_id", "event_time_ms", "receive_time_ns", "publish_time_ns",
                            "depth", "changes", "freshness"}, name
        a = version_of(bbo)
        assert bbo["ask"] == pattern_side(a, "asks", 100)[0] and bbo["bid"] == pattern_side(a, "bids", 100)[0]
    assert reader.bbo_all(EXCHANGE).keys() == everything.keys()
    assert reader.bbo_all("binance.com-futures") == {}
    assert ubdcc_local.Reader(unique_cluster()).bbo_all() == {}
    # A book whose only DCN died is an exception instance, never its last price; a book with a
    # live replica elsewhere is still served. (A death may take the lock-probe interval, 50 ms,
    # to be noticed.)
    writer.send(signal.SIGKILL)  # leaves its segment behind
    writer.proc.wait()
    deadline = time.monotonic() + 1.5
    while True:
        books = reader.bbo_all()[EXCHANGE]
        dead = [books[market(i)] for i in (1, 2)]
        if all(isinstance(v, ubdcc_local.WriterGone) for v in dead) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    assert all(isinstance(v, ubdcc_local.WriterGone) and writer.segment in str(v) for v in dead), dead
    assert isinstance(books[market(0)], dict), books[market(0)]
    other.close()
    # The dead DCN's segment still lists PATTERN0: with its live replica gone, an error too.
    left = reader.bbo_all()[EXCHANGE]
    assert list(left) == [market(i) for i in range(3)]
    assert all(isinstance(v, ubdcc_local.WriterGone) for v in left.values()), left
    with pytest.raises(TypeError):
        reader.bbo_all(5)


def model_fill(levels: list[list[float]], quantity: float | None, quote: float | None) -> dict:
    """The fill, written out: walk the levels best first until the amount is reached."""
    target, by_quote = (quote, True) if quote is not None else (quantity, False)
    filled_quantity = filled_quote = 0.0
    used, worst, complete = 0, None, False
    for price, qty in levels:
        left = target - (filled_quote if by_quote else filled_quantity)
        if left <= 0:
            break
        available = price * qty if by_quote else qty
        take = min(available, left)
        q = take / price if by_quote else take
        filled_quantity += q
        filled_quote += q * price
        worst, used = price, used + 1
        if take >= left:
            complete = True
            break
    average = filled_quote / filled_quantity if filled_quantity > 0 else None
    slippage = abs(average - levels[0][0]) / levels[0][0] * 1e4 if average is not None else None
    return {"average_price": average, "worst_price": worst, "filled_quantity": filled_quantity,
            "filled_quote": filled_quote, "complete": complete, "slippage_bps": slippage, "levels_used": used}


def test_fill_price_is_the_walk_of_one_version(full_speed):
    writer, reader = full_speed
    cases = [("buy", 1.0, None), ("sell", 2.5, None), ("BUY", None, 5e6), ("sell", None, 3e8),
             ("buy", 1e12, None)]
    for round_ in range(200):
        side, quantity, quote = cases[round_ % len(cases)]
        fill = retrying(reader.fill_price, EXCHANGE, market(round_ % BOOKS), side, quantity=quantity,
                        quote_quantity=quote)
        assert set(fill) == VERSION_KEYS | {"side", "average_price", "worst_price", "filled_quantity", "filled_quote",
                                            "complete", "slippage_bps", "levels_used"}
        assert fill["side"] == side.lower()
        walked = "asks" if side.lower() == "buy" else "bids"
        want = model_fill(pattern_side(version_of(fill), walked, LEVELS), quantity, quote)
        for key, value in want.items():
            assert fill[key] == pytest.approx(value, rel=1e-12), (key, side, quantity, quote)
        assert type(fill["levels_used"]) is int and type(fill["complete"]) is bool
    # A buy of more than the whole book: every level used, incomplete.
    huge = retrying(reader.fill_price, EXCHANGE, market(0), "buy", quantity=1e12)
    assert huge["complete"] is False and huge["levels_used"] >= 500


def test_fill_price_rejects_bad_sides_and_amounts(full_speed):
    writer, reader = full_speed
    bad = [dict(side="hold", quantity=1.0), dict(side="buy"), dict(side="buy", quantity=1.0, quote_quantity=1.0),
           dict(side="sell", quantity=0.0), dict(side="sell", quantity=-1.0), dict(side="buy", quote_quantity=math.nan),
           dict(side="buy", quantity=math.inf)]
    for kwargs in bad:
        with pytest.raises(ubdcc_local.InvalidQuery):
            reader.fill_price(EXCHANGE, market(0), **kwargs)
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.fill_price(EXCHANGE, "NOPE", "buy", quantity=1.0)
    with pytest.raises(TypeError):
        reader.fill_price(EXCHANGE, market(0), "buy", quantity="1")


def model_stats(bids, asks, top_n, bps):
    """The statistics, written out."""
    (bid, bid_qty), (ask, ask_qty) = bids[0], asks[0]
    mid = (bid + ask) / 2
    bid_top = sum(q for _, q in bids[:top_n])
    ask_top = sum(q for _, q in asks[:top_n])
    bands = []
    for width in bps:
        low, high = mid * (1 - width / 1e4), mid * (1 + width / 1e4)
        bands.append({"bps": float(width),
                      "bid_quantity": sum(q for p, q in bids if p >= low),
                      "ask_quantity": sum(q for p, q in asks if p <= high),
                      "complete": any(p < low for p, _ in bids) and any(p > high for p, _ in asks)})
    return {"mid": mid, "spread": ask - bid, "spread_bps": (ask - bid) / mid * 1e4,
            "microprice": (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty),
            "imbalance": (bid_top - ask_top) / (bid_top + ask_top), "bands": bands}


def test_depth_stats_are_those_of_one_version(full_speed):
    writer, reader = full_speed
    # The pattern's mid is near 99 500 with a spread of ~1 000: bands of 60..200 bps reach into
    # both sides, 1000 bps beyond the levels held.
    for round_, (top_n, bps) in enumerate([(10, (60, 100, 200)), (1, (1000,)), (500, ()), (10, [75.5])] * 30):
        stats = retrying(reader.depth_stats, EXCHANGE, market(round_ % BOOKS), top_n=top_n, bps=bps)
        assert set(stats) == VERSION_KEYS | {"mid", "spread", "spread_bps", "microprice", "imbalance", "top_n", "bands"}
        a = version_of(stats)
        want = model_stats(pattern_side(a, "bids", LEVELS), pattern_side(a, "asks", LEVELS), top_n, bps)
        assert stats["top_n"] == top_n
        for key in ("mid", "spread", "spread_bps", "microprice", "imbalance"):
            assert stats[key] == pytest.approx(want[key], rel=1e-12), key
        assert len(stats["bands"]) == len(bps)
        for got, band in zip(stats["bands"], want["bands"]):
            assert got["complete"] == band["complete"] and got["bps"] == band["bps"]
            assert got["bid_quantity"] == pytest.approx(band["bid_quantity"], rel=1e-12)
            assert got["ask_quantity"] == pytest.approx(band["ask_quantity"], rel=1e-12)
    bands = retrying(reader.depth_stats, EXCHANGE, market(0))["bands"]
    assert [band["bps"] for band in bands] == [10.0, 50.0, 100.0], "default bands"
    assert any(band["bid_quantity"] > 0 for band in retrying(reader.depth_stats, EXCHANGE, market(0),
                                                              bps=(200,))["bands"])
    for bad in (dict(top_n=-1), dict(bps=(0,)), dict(bps=(10, -5)), dict(bps=(math.nan,))):
        with pytest.raises(ubdcc_local.InvalidQuery):
            reader.depth_stats(EXCHANGE, market(0), **bad)
    with pytest.raises(TypeError):
        reader.depth_stats(EXCHANGE, market(0), bps="10")
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.depth_stats(EXCHANGE, "NOPE")


def test_new_methods_are_documented():
    for method in ("get_book", "bbo_all", "fill_price", "depth_stats"):
        assert getattr(ubdcc_local.Reader, method).__doc__, method
