#!/usr/bin/env python3
"""Recording's cost at 1000 books x 10 events/s, and replay at 10x (issue 17).

    cargo build --release --bin ubdcc
    python3 benches/record_load.py [--books-per-family 334] [--rate 10] [--seconds 30] [--speed 10]

Three runs against `ubdcc sim` (pinned to CPU 0), each DCN pinned to CPU 1 (`--cpu 1`: the
recorder's thread inherits the pin, so its work counts against the DCN's core):
1. a DCN keeping the books, no recording: its CPU share over --seconds once every book is synced;
2. the same with `--record DIR`: its CPU share, the recorder thread's own share, and the bytes
   the recording grew by, as MB per hour;
3. `ubdcc replay DIR --speed 10` serving run 2's recording to a fresh DCN keeping the same books:
   whether the replay kept 10x the recorded pace (wall time from its first subscription to its
   end against the recording's span / speed), and the CPU shares of the replay and the DCN.
Books start shallow (`--initial-depth 100`) in every run so that they sync within seconds.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
UBDCC = os.environ.get("UBDCC_BIN", str(ROOT / "target/release/ubdcc"))
TICKS = os.sysconf("SC_CLK_TCK")


def start(args, cpu, stderr=subprocess.DEVNULL):
    proc = subprocess.Popen(["taskset", "-c", str(cpu), UBDCC, *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        sys.exit(f"{args[0]} did not start: {line!r}")
    return proc, line.split()[2]


def cpu_seconds(pid, tid=None):
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = pathlib.Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def recorder_thread(pid):
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip().startswith("ubdcc-recorder"):
            return task.name
    return None


def dir_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).iterdir() if f.is_file())


def markets_of(n):
    markets = [("binance.com", f"SIM{i}USDT") for i in range(n)]
    markets += [("binance.com-futures", f"SIM{i}USDT") for i in range(n)]
    markets += [("binance.com-vanilla-options", f"SIM{i}-260626-{10000 + 500 * i}-C") for i in range(n - 2)]
    return markets


def dcn(cluster, address, markets, extra=()):
    url = f"http://{address}"
    endpoints = [arg for e in ("binance.com", "binance.com-futures", "binance.com-vanilla-options") for arg in ("--exchange-endpoint", f"{e}={url}")]
    proc, _ = start(["dcn", "--standalone", "--cluster", cluster, "--port", "0", "--cpu", "1", "--weight-share", "0.9", "--max-books", "1100",
                     "--initial-depth", "100", "--levels", "100", "--markets", ",".join(f"{e}:{s}" for e, s in markets), *endpoints, *extra], 1)
    return proc


def synced_books(cluster):
    listing = subprocess.run([UBDCC, "shm", "list", "--cluster", cluster], capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines() if line.rstrip().endswith(" synced"))


def wait_synced(cluster, total, limit=600):
    started = time.monotonic()
    while time.monotonic() - started < limit:
        synced = synced_books(cluster)
        print(f"\r  {synced}/{total} books synced after {time.monotonic() - started:.0f} s", end="", flush=True)
        if synced == total:
            print()
            return
        time.sleep(2)
    sys.exit("\nbooks did not sync")


def stop(proc):
    proc.terminate()
    proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--books-per-family", type=int, default=334)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--speed", type=float, default=10)
    opts = parser.parse_args()
    markets = markets_of(opts.books_per_family)
    n = opts.books_per_family
    recording = tempfile.mkdtemp(prefix="ubdcc-record-bench-")
    sim, sim_address = start(["sim", "--port", "0", "--markets", str(n), "--rate", str(opts.rate), "--options-snapshot-lag-ms", "0"], 0)
    try:
        print(f"1. {len(markets)} books at {opts.rate} events/s, not recording")
        cluster = f"recbench0{os.getpid()}"
        plain = dcn(cluster, sim_address, markets)
        wait_synced(cluster, len(markets))
        before, t0 = cpu_seconds(plain.pid), time.monotonic()
        time.sleep(opts.seconds)
        share_plain = (cpu_seconds(plain.pid) - before) / (time.monotonic() - t0)
        stop(plain)
        print(f"  DCN CPU: {share_plain * 100:.1f}% of one core")

        print(f"2. the same, recording into {recording}")
        cluster = f"recbench1{os.getpid()}"
        recorder = dcn(cluster, sim_address, markets, ["--record", os.path.join(recording, "dcn")])
        wait_synced(cluster, len(markets))
        tid = recorder_thread(recorder.pid)
        rec_dir = os.path.join(recording, "dcn")
        before, thread_before, bytes_before, t0 = cpu_seconds(recorder.pid), cpu_seconds(recorder.pid, tid), dir_bytes(rec_dir), time.monotonic()
        time.sleep(opts.seconds)
        elapsed = time.monotonic() - t0
        share_rec = (cpu_seconds(recorder.pid) - before) / elapsed
        share_thread = (cpu_seconds(recorder.pid, tid) - thread_before) / elapsed
        mb_per_hour = (dir_bytes(rec_dir) - bytes_before) / elapsed * 3600 / 1e6
        stop(recorder)
        print(f"  DCN CPU: {share_rec * 100:.1f}% of one core (+{(share_rec - share_plain) * 100:.1f} points); the recorder thread {share_thread * 100:.1f}%")
        print(f"  recording: {mb_per_hour:.0f} MB per hour ({dir_bytes(rec_dir) / 1e6:.1f} MB in all)")
    finally:
        stop(sim)

    print(f"3. replaying the recording at {opts.speed}x into a fresh DCN")
    replay, replay_address = start(["replay", rec_dir, "--port", "0", "--speed", str(opts.speed)], 0, stderr=subprocess.PIPE)
    events = {}

    def watch():
        for line in replay.stderr:
            for key in ("replay clock started", "replay finished"):
                if key in line and key not in events:
                    events[key] = time.monotonic()
                    if key == "replay finished":
                        events["line"] = line.strip()

    threading.Thread(target=watch, daemon=True).start()
    cluster = f"recbench2{os.getpid()}"
    fresh = dcn(cluster, replay_address, markets)
    replay_before, fresh_before, t0 = cpu_seconds(replay.pid), cpu_seconds(fresh.pid), time.monotonic()
    deadline = time.monotonic() + 600
    while "replay finished" not in events and time.monotonic() < deadline:
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    replay_share = (cpu_seconds(replay.pid) - replay_before) / elapsed
    fresh_share = (cpu_seconds(fresh.pid) - fresh_before) / elapsed
    synced = synced_books(cluster)
    stop(fresh)
    stop(replay)
    if "replay finished" in events and "replay clock started" in events:
        wall = events["replay finished"] - events["replay clock started"]
        print(f"  {events['line']}")
        print(f"  replayed in {wall:.1f} s of wall time; the replay's CPU {replay_share * 100:.0f}% of a core, the DCN's {fresh_share * 100:.0f}%; {synced}/{len(markets)} books synced at the end")
    else:
        print("  the replay did not finish within 600 s")
    shutil.rmtree(recording, ignore_errors=True)


if __name__ == "__main__":
    main()
