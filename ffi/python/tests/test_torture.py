"""One million validated reads against a writer publishing at full speed: no torn read, ever.

Run with ``-s`` to see the counts and the read rate.
"""

from __future__ import annotations

import time

import ubdcc_local
from pattern_support import EXCHANGE, market

READS = 1_000_000
BOOKS = 4
LIMIT = 10
RANGE = range(LIMIT)


def test_torture_python_reader(start_writer):
    writer = start_writer(books=BOOKS, levels=1000)
    reader = ubdcc_local.Reader(writer.cluster)
    get_asks, get_bids = reader.get_asks, reader.get_bids
    names = [market(i) for i in range(BOOKS)]
    last_seen = [[-1, -1] for _ in range(BOOKS)]
    versions_seen = 0
    ok = torn = contended = 0
    torn_examples = []
    other_errors = []

    started = time.perf_counter()
    n = -1
    while ok + torn < READS:  # a million reads that returned levels, each validated
        n += 1
        book = (n >> 1) % BOOKS
        asks = not n & 1
        try:
            if asks:
                levels = get_asks(EXCHANGE, names[book], limit_count=LIMIT)
            else:
                levels = get_bids(EXCHANGE, names[book], limit_count=LIMIT)
        except ubdcc_local.ReadContended:
            contended += 1
            if contended > READS // 100:
                break  # already over the 1% bound
            continue
        except ubdcc_local.UbdccError as error:
            other_errors.append(repr(error))
            if len(other_errors) > 10:
                break
            continue
        # Validate: level 0's quantity names the version; every level must belong to it.
        a = int(levels[0][1])
        a1000 = a * 1000
        if asks:
            base = 100000 + a % 1000
            want = [[float(base + i), (a1000 + i) / 1000] for i in RANGE]
        else:
            base = 99000 - a % 1000
            want = [[float(base - i), (a1000 + i) / 1000] for i in RANGE]
        if levels != want:
            torn += 1
            if len(torn_examples) < 5:
                torn_examples.append((n, "asks" if asks else "bids", names[book], levels, want))
            continue
        ok += 1
        seen = last_seen[book]
        if seen[asks] != a:
            seen[asks] = a
            versions_seen += 1
    elapsed = time.perf_counter() - started

    attempted = n + 1
    print(f"\ntorture: {attempted} reads in {elapsed:.2f} s ({attempted / elapsed:,.0f} reads/s, "
          f"including validation): {ok} validated, {torn} torn, {contended} contended "
          f"({100 * contended / attempted:.4f}%), {versions_seen} version changes observed, "
          f"{len(other_errors)} other errors")
    assert writer.alive(), "the writer died during the torture"
    assert not other_errors, other_errors
    assert torn == 0, torn_examples
    assert ok == READS
    assert attempted == ok + contended
    assert contended < attempted / 100
    # The writer really moved under the reader (thousands of versions when the machine is idle).
    assert versions_seen > 100, versions_seen
