#!/usr/bin/env python3
"""Per-call latency of ubdcc_local reads against a running pattern writer.

Starts ``ubdcc shm test-pattern`` (binary from ``$UBDCC_BIN``, default ``<repo>/target/debug/ubdcc``)
with ``--rate 1000`` so the books change rarely, then times batches of calls with
``time.perf_counter_ns`` and prints the median and p99 of the per-call time over the batches.

    .venv/bin/pip install ./ffi/python        # release build
    .venv/bin/python ffi/python/bench_read.py
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ubdcc_local

REPO = Path(__file__).resolve().parents[2]
EXCHANGE = "binance.com"


def start_writer(binary: str, cluster: str, books: int, levels: int, rate: int) -> tuple[subprocess.Popen, str]:
    """Starts the pattern writer and waits for its ``ready <segment>`` line."""
    cmd = [binary, "shm", "test-pattern", "--cluster", cluster, "--dcn", "bench",
           "--books", str(books), "--levels", str(levels), "--rate", str(rate)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # blocks until the writer says something or exits
        if line.startswith("ready "):
            return proc, line.split()[1]
    proc.wait()
    raise RuntimeError(f"pattern writer exited with {proc.returncode} before it was ready: {cmd}")


def stop_writer(proc: subprocess.Popen, segment: str) -> None:
    """Kills the writer and removes the segment it leaves behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        os.unlink(f"/dev/shm/{segment}")
    except FileNotFoundError:
        pass


def measure(call, calls_per_batch: int, batches: int) -> tuple[float, float]:
    """(median, p99) of the per-call time in ns, over ``batches`` batches of ``calls_per_batch``."""
    loop = range(calls_per_batch)
    for _ in loop:  # warm-up
        call()
    per_call = []
    clock = time.perf_counter_ns
    for _ in range(batches):
        start = clock()
        for _ in loop:
            call()
        per_call.append((clock() - start) / calls_per_batch)
    per_call.sort()
    p99 = per_call[min(len(per_call) - 1, int(round(0.99 * (len(per_call) - 1))))]
    return statistics.median(per_call), p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("UBDCC_BIN", str(REPO / "target/debug/ubdcc")))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1000, help="calls per batch (small reads)")
    args = parser.parse_args()

    books = 10
    cluster = f"bench{os.getpid()}"
    proc, segment = start_writer(args.bin, cluster, books=books, levels=1000, rate=1000)
    try:
        reader = ubdcc_local.Reader(cluster)
        names = [(EXCHANGE, f"PATTERN{i}") for i in range(books)]
        get_asks, info, get_asks_many = reader.get_asks, reader.info, reader.get_asks_many
        # Version k of a pattern book has 500 + k % 500 levels, so a top-1000 read gets 500..999.
        sizes = [len(get_asks(EXCHANGE, f"PATTERN{i % books}", limit_count=1000)) for i in range(200)]
        mean_size = sum(sizes) / len(sizes)
        cases = [
            ("loop + no-op method (baseline)", lambda: reader.cluster, args.calls),
            ("get_asks limit_count=10", lambda: get_asks(EXCHANGE, "PATTERN0", limit_count=10), args.calls),
            ("get_asks limit_count=1", lambda: get_asks(EXCHANGE, "PATTERN0", limit_count=1), args.calls),
            (f"get_asks limit_count=1000 (mean {mean_size:.0f} levels)",
             lambda: get_asks(EXCHANGE, "PATTERN0", limit_count=1000), max(1, args.calls // 50)),
            ("info()", lambda: info(EXCHANGE, "PATTERN0"), args.calls),
            (f"get_asks_many {books} books limit_count=10",
             lambda: get_asks_many(names, limit_count=10), max(1, args.calls // 10)),
        ]
        print(f"ubdcc_local {ubdcc_local.__version__}, Python {sys.version.split()[0]}, "
              f"{args.batches} batches per case, writer at 1000 publishes/s over {books} books")
        print(f"{'case':<44} {'calls/batch':>11} {'median ns':>10} {'p99 ns':>10}")
        for name, call, calls in cases:
            median, p99 = measure(call, calls, args.batches)
            print(f"{name:<44} {calls:>11} {median:>10.0f} {p99:>10.0f}")
    finally:
        stop_writer(proc, segment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
