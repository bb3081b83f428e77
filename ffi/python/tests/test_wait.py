"""Waiting for changes with ubdcc_local.Reader (issue 15): wait_for_update / wait_for_any return
a newer change stamp or None on timeout, release the GIL while they sleep, and the metadata the
trust layer (issue 16) publishes (change stamp, freshness, audits, top hash) reaches Python."""

from __future__ import annotations

import math
import threading

import pytest
import ubdcc_local

from pattern_support import EXCHANGE, market

LEVELS = 100
PATIENCE_S = 10.0  # far beyond any gap between publishes of a running writer
NEVER = 2**64 - 1  # a stamp no publish reaches: the wait can only time out


def test_each_wait_returns_a_newer_stamp_and_the_read_after_it_is_at_least_that_version(start_writer):
    writer = start_writer(books=2, levels=LEVELS)
    reader = ubdcc_local.Reader(writer.cluster)
    seen = reader.info(EXCHANGE, market(0))["changes"]
    for _ in range(300):
        stamp = reader.wait_for_update(EXCHANGE, market(0), seen, PATIENCE_S)
        assert stamp is not None, "a full-speed writer published nothing within the patience"
        assert stamp > seen
        info = reader.info(EXCHANGE, market(0))
        assert info["changes"] >= stamp
        seen = info["changes"]


def test_a_wait_for_a_version_already_published_returns_at_once(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=2)
    reader = ubdcc_local.Reader(writer.cluster)
    current = reader.info(EXCHANGE, market(0))["changes"]
    assert current > 0
    stamp = reader.wait_for_update(EXCHANGE, market(0), 0, 0.0)
    assert stamp is not None and stamp >= current


def test_a_wait_with_nothing_newer_times_out_with_none(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    assert reader.wait_for_update(EXCHANGE, market(0), NEVER, 0.05) is None


def test_bad_timeouts_and_missing_books_raise(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            reader.wait_for_update(EXCHANGE, market(0), 0, bad)
        with pytest.raises(ValueError):
            reader.wait_for_any(bad)
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.wait_for_update(EXCHANGE, "NOSUCHBOOK", 0, 0.01)


def test_a_waiting_thread_releases_the_gil(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    counted = 0
    waiting = threading.Event()
    done = threading.Event()

    def count() -> None:
        nonlocal counted
        waiting.wait()
        while not done.is_set():
            counted += 1

    counter = threading.Thread(target=count)
    counter.start()
    waiting.set()
    before = counted
    # Half a second asleep in Rust: a held GIL would freeze the counting thread meanwhile.
    assert reader.wait_for_update(EXCHANGE, market(0), NEVER, 0.5) is None
    during = counted - before
    done.set()
    counter.join()
    assert during > 1000, f"the counting thread advanced only {during} times during the wait"


def test_wait_for_any_wakes_for_any_book_and_then_only_for_news(start_writer):
    writer = start_writer(books=3, levels=LEVELS)
    reader = ubdcc_local.Reader(writer.cluster)
    first = reader.wait_for_any(PATIENCE_S)
    assert first is not None and first > 0, "the first call reports what was published so far"
    last = first
    for _ in range(100):
        stamp = reader.wait_for_any(PATIENCE_S)
        assert stamp is not None and stamp > last
        last = stamp


def test_wait_for_any_times_out_once_a_stopped_writer_was_reported(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    assert reader.wait_for_any(PATIENCE_S) is not None
    writer.close()
    # The writer's death (and its segment going away) is news once; then nothing changes.
    assert reader.wait_for_any(PATIENCE_S) is not None
    assert reader.wait_for_any(0.2) is None


def fnv_top_hash(a: int) -> int:
    """shm-layout's top_hash of pattern version a (shm-layout/src/proof.rs), in Python: FNV-1a
    over 64-bit words, each value as its integer count of 1e-8 units."""
    mask = 2**64 - 1
    h = 0xCBF29CE484222325
    prime = 0x100000001B3

    def mix(word: int) -> None:
        nonlocal h
        h = ((h ^ word) * prime) & mask

    base = a % 1000
    for side in ("bids", "asks"):
        taken = min(20, min(500 + a % 500, LEVELS))
        for i in range(taken):
            price = (99000 - base - i) if side == "bids" else (100000 + base + i)
            mix(price * 10**8)  # a whole number of price units
            mix((a * 1000 + i) * 10**5)  # quantity (a*1000+i)/1000
        mix(taken)
    return h


def test_info_carries_the_change_stamp_freshness_audits_and_the_top_hash(start_writer):
    writer = start_writer(books=1, levels=LEVELS, rate=50)
    reader = ubdcc_local.Reader(writer.cluster)
    info = reader.info(EXCHANGE, market(0))
    assert info["changes"] > 0
    assert info["freshness"] == []
    assert (info["verified_at_ms"], info["audits"], info["audit_mismatches"]) == (0, 0, 0)
    # The writer hashes the top of every version it publishes, at that version's id; the hash
    # is the same computed here from the pattern's definition.
    assert info["top_hash_update_id"] == info["last_update_id"]
    assert info["top_hash"] == fnv_top_hash(info["last_update_id"] % 1_000_000)
    bbo = reader.bbo(EXCHANGE, market(0))
    assert bbo["changes"] >= info["changes"] and bbo["freshness"] == []
