#!/usr/bin/env python3
"""One DCN holding 1000 books at 10 messages/s each from `ubdcc sim`: its CPU share and the time
from the simulator's event to the book being visible in shared memory.

    cargo build --release --bin ubdcc && pip install ./ffi/python
    python3 benches/dcn_load.py [--books-per-family 334] [--rate 10] [--seconds 30]

The simulator and this script's sampler are pinned to CPU 0 and the DCN to CPU 1 (`--cpu 1`), so
the DCN's share of its core is measured alone. Latency is sampled by polling books through `ubdcc_local`:
- engine time: the DCN's receive time to its publish time (ns clocks of one process);
- event-to-visible: the simulator's event time `E` (whole milliseconds) to the moment a reader
  sees the new version, so it carries up to 1 ms of quantisation;
- event-to-receive: `E` to the DCN's receive time (the socket read that completed the event):
  the simulator's own time to make and send a tick, and the kernel, which the DCN does not
  control (it splits event-to-visible into the simulator's part and the DCN's).
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

import ubdcc_local

ROOT = pathlib.Path(__file__).resolve().parent.parent
UBDCC = str(ROOT / "target/release/ubdcc")
CLUSTER = f"load{os.getpid()}"
TICKS = os.sysconf("SC_CLK_TCK")


def start(args, cpu):
    proc = subprocess.Popen(["taskset", "-c", str(cpu), UBDCC, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        sys.exit(f"{args[0]} did not start: {line!r}")
    return proc, line.split()[2]


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--books-per-family", type=int, default=334)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--dump", help="write each sample (seen Unix ns, market, engine us, visible ms) to this file")
    opts = parser.parse_args()
    n = opts.books_per_family
    sim, sim_address = start(["sim", "--port", "0", "--markets", str(n), "--rate", str(opts.rate), "--options-snapshot-lag-ms", "0"], 0)
    markets = [("binance.com", f"SIM{i}USDT") for i in range(n)]
    markets += [("binance.com-futures", f"SIM{i}USDT") for i in range(n)]
    markets += [("binance.com-vanilla-options", f"SIM{i}-260626-{10000 + 500 * i}-C") for i in range(n - 2)]
    url = f"http://{sim_address}"
    endpoints = [arg for e in ("binance.com", "binance.com-futures", "binance.com-vanilla-options") for arg in ("--exchange-endpoint", f"{e}={url}")]
    dcn, _ = start(["dcn", "--standalone", "--cluster", CLUSTER, "--port", "0", "--cpu", "1", "--weight-share", "0.9", "--max-books", "1100",
                    "--markets", ",".join(f"{e}:{s}" for e, s in markets), *endpoints], 1)
    try:
        reader = ubdcc_local.Reader(CLUSTER)
        started = time.monotonic()
        while True:
            synced = sum(1 for b in reader.list() if b["status"] == "synced")
            print(f"\r{synced}/{len(markets)} books synced after {time.monotonic() - started:.0f} s", end="", flush=True)
            if synced == len(markets):
                break
            time.sleep(2)
        print()

        before, t0 = cpu_seconds(dcn.pid), time.monotonic()
        time.sleep(opts.seconds)
        share = (cpu_seconds(dcn.pid) - before) / (time.monotonic() - t0)
        print(f"DCN CPU: {share * 100:.1f}% of one core for {len(markets)} books at {opts.rate} messages/s each")

        # The sampler runs beside the simulator, never on the DCN's core, and sleeps between
        # rounds: a busy-polling reader on CPU 1 took half the DCN's core whenever the kernel
        # put it there, and its time slices showed up as the DCN's p99.
        os.sched_setaffinity(0, {0})
        sample = markets[:: max(1, len(markets) // 50)]
        last = {}
        engine_us, visible_ms, arrival_ms, samples, ticks = [], [], [], [], {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for exchange, symbol in sample:
                try:
                    info = reader.info(exchange, symbol)
                except ubdcc_local.UbdccError:
                    continue
                seen_ns = time.time_ns()
                if last.get((exchange, symbol)) != info["last_update_id"]:
                    if (exchange, symbol) in last:
                        engine_us.append((info["publish_time_ns"] - info["receive_time_ns"]) / 1000)
                        visible_ms.append((seen_ns - info["event_time_ms"] * 1_000_000) / 1e6)
                        arrival_ms.append((info["receive_time_ns"] - info["event_time_ms"] * 1_000_000) / 1e6)
                        samples.append((seen_ns, f"{exchange}:{symbol}", engine_us[-1], visible_ms[-1]))
                        ticks.setdefault(info["event_time_ms"], []).append((info["receive_time_ns"], info["publish_time_ns"]))
                    last[(exchange, symbol)] = info["last_update_id"]
            time.sleep(0.0005)
        print(f"engine receive->publish: p50 {statistics.median(engine_us):.1f} us, p90 {percentile(engine_us, 0.9):.1f} us, p99 {percentile(engine_us, 0.99):.1f} us, max {max(engine_us):.1f} us ({len(engine_us)} updates)")
        if opts.dump:
            with open(opts.dump, "w") as out:
                out.writelines(f"{seen} {market} {engine:.1f} {visible:.3f}\n" for seen, market, engine, visible in samples)
        print(f"event time->visible in shm: p50 {statistics.median(visible_ms):.2f} ms, p99 {percentile(visible_ms, 0.99):.2f} ms")
        print(f"event time->DCN receive: p50 {statistics.median(arrival_ms):.2f} ms, p99 {percentile(arrival_ms, 0.99):.2f} ms")
        # A tick's events share `E`: from the first sampled one read to the last one published is
        # how long the DCN takes to take in and apply a burst, wherever its events waited (in
        # the DCN after their read, or in the kernel's socket buffer before it).
        bursts = [(max(p for _, p in t) - min(r for r, _ in t)) / 1e6 for t in ticks.values() if len(t) >= 10]
        if bursts:
            print(f"tick burst, first sampled receive->last sampled publish: p50 {statistics.median(bursts):.2f} ms, p99 {percentile(bursts, 0.99):.2f} ms ({len(bursts)} ticks)")
    finally:
        dcn.terminate()
        dcn.wait()
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
