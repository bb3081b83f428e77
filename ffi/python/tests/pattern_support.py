"""Helpers of the ubdcc_local tests: the pattern writer process and the pattern's expected levels.

The pattern (shm-layout/src/test_pattern.rs): version ``k`` has ``500 + k % 500`` levels per side
(capped at the segment's levels per side); with ``a = k % 1_000_000``:

    ask level i:  price 100000 + a % 1000 + i,  quantity (a * 1000 + i) / 1000
    bid level i:  price  99000 - a % 1000 - i,  quantity (a * 1000 + i) / 1000

Level 0's quantity is exactly ``a``, so one side read alone tells which version it must be; any
read mixing two versions (a torn read) breaks the relation somewhere.
"""

from __future__ import annotations

import glob
import itertools
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[3]
EXCHANGE = "binance.com"
READY_TIMEOUT_S = 120.0  # generous: a loaded 2-core machine may be building in parallel

_cluster_counter = itertools.count()


def unique_cluster() -> str:
    """A cluster name no other test (or test run) uses: ``py<pid>x<n>``."""
    return f"py{os.getpid()}x{next(_cluster_counter)}"


def ubdcc_bin() -> str:
    return os.environ.get("UBDCC_BIN", str(REPO / "target" / "debug" / "ubdcc"))


def market(i: int) -> str:
    return f"PATTERN{i}"


class PatternWriter:
    """A running ``ubdcc shm test-pattern`` process, ready (every book published) once built."""

    def __init__(self, cluster: str, *, books: int = 4, levels: int = 1000, rate: int = 0,
                 duration: int = 0, dcn: str = "pattern") -> None:
        binary = ubdcc_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"pattern writer {binary} not found: build it with `cargo build -p ubdcc` "
                               "or point UBDCC_BIN at it")
        self.cluster, self.books, self.levels, self.dcn = cluster, books, levels, dcn
        self.segment = f"ubdcc.{cluster}.{dcn}"
        cmd = [binary, "shm", "test-pattern", "--cluster", cluster, "--dcn", dcn, "--books", str(books),
               "--levels", str(levels), "--rate", str(rate), "--duration", str(duration)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            # Reads stdout to its end so the writer never blocks on a full pipe.
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name=f"pattern-writer-{cluster}", daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise RuntimeError(f"pattern writer not ready after {READY_TIMEOUT_S} s: {cmd}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                self.close()
                raise RuntimeError(f"pattern writer exited ({code}) before it was ready: {cmd}")
            if line.startswith("ready "):
                assert line.split()[1] == self.segment, line
                return

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Kills the writer (stopped or not) and removes the segment it leaves behind."""
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL also ends a SIGSTOPped process
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        remove_segment(self.segment)


def remove_segment(segment: str) -> None:
    """Unlinks what a killed writer leaves in /dev/shm: its segment (and a half-built temporary)."""
    for path in [f"/dev/shm/{segment}", *glob.glob(f"/dev/shm/{glob.escape(segment)}.creating-*")]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def level_count(a: int, levels_per_side: int) -> int:
    """Levels per side of a version with ``k % 1_000_000 == a`` (``k % 500 == a % 500``)."""
    return min(500 + a % 500, levels_per_side)


def pattern_side(a: int, side: str, levels_per_side: int) -> list[list[float]]:
    """The whole side of version ``a``, as the reader returns it."""
    base = a % 1000
    count = level_count(a, levels_per_side)
    if side == "asks":
        return [[float(100000 + base + i), (a * 1000 + i) / 1000] for i in range(count)]
    return [[float(99000 - base - i), (a * 1000 + i) / 1000] for i in range(count)]


def select(levels: list[list[float]], limit_count: Optional[int], threshold_volume: Optional[float]) -> list[list[float]]:
    """The REST API's level selection (shm-layout/src/query.rs), written out in Python."""
    taken = []
    total = 0.0
    for price, quantity in levels:
        if limit_count is not None and len(taken) >= limit_count:
            break
        if threshold_volume is not None:
            notional = price * quantity
            if not (total == 0.0 or total + notional <= threshold_volume):
                break
            total += notional
        taken.append([price, quantity])
    return taken


def expected(levels: list[list[float]], side: str, limit_count: Optional[int],
             threshold_volume: Optional[float], levels_per_side: int) -> list[list[float]]:
    """What a read of ``side`` with these parameters must have returned, given the version its first
    level names. Comparing ``levels == expected(...)`` checks the exact values, the length (a full
    side when unlimited), and the threshold rule at the boundary."""
    if not levels:
        if limit_count != 0:
            raise AssertionError(f"empty read (limit_count={limit_count}, threshold_volume={threshold_volume})")
        return []
    a = int(levels[0][1])
    return select(pattern_side(a, side, levels_per_side), limit_count, threshold_volume)


def retrying(call, *args, attempts: int = 100, **kwargs):
    """``call(*args, **kwargs)``, retried while it raises ``ReadContended``.

    A read gives up with ReadContended when the book changed during all of its bounded attempts,
    which happens when the writer is preempted inside a write section (a loaded machine). The API
    documents it as retryable; tests that are not about it retry."""
    import ubdcc_local

    for _ in range(attempts - 1):
        try:
            return call(*args, **kwargs)
        except ubdcc_local.ReadContended:
            time.sleep(0.001)
    return call(*args, **kwargs)


def retrying_many(call, books, attempts: int = 100, **kwargs):
    """A batch read, repeated while any item is a ``ReadContended`` instance."""
    import ubdcc_local

    for _ in range(attempts - 1):
        results = call(books, **kwargs)
        if not any(isinstance(item, ubdcc_local.ReadContended) for item in results):
            return results
        time.sleep(0.001)
    return call(books, **kwargs)
