#!/usr/bin/env bash
# wrk against `GET /get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10` on restapi
# (local shared-memory path) and on a standalone DCN, each without and with a slowloris of
# 2 000 half-open connections (issue 10, item 5). Everything runs on this machine against
# `ubdcc sim` (release build), with the servers' default limits.
#
#   benches/slowloris_wrk.sh [seconds per run (default 15)] [half-open connections (default 2000)]
#
# 15 s per run: longer than the default head timeout (10 s), so each attacked run includes the
# moment the server closes all the half-open connections at once and the attacker reopens them.
#
# The attacker (inline Python below) keeps that many connections open, each with a request head
# it never finishes, and opens a new one for each the server closes, as a real slowloris does. One
# load: 1 thread, 4 connections (latency). Prints a Markdown table and how many connections the
# server closed on the attacker during the run. Needs wrk (Debian: wrk) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
half_open="${2:-2000}"
cluster="slow$$"
# shellcheck source=support/cluster.sh
source benches/support/cluster.sh
# The attacker's sockets plus wrk's: more than the usual soft limit of 1 024.
ulimit -n "$(ulimit -Hn)"

start sim sim --port 0 --markets 2 --rate 10 && sim=$address
start dcn dcn --standalone --cluster "$cluster" --port 0 \
    --markets binance.com:SIM0USDT,binance.com:SIM1USDT \
    --exchange-endpoint "binance.com=http://$sim" && dcn=$address
# No mgmt: restapi answers from the DCN's segment; its registration attempts go nowhere.
start restapi restapi --cluster "$cluster" --port 0 --mgmt-url http://127.0.0.1:9 && api=$address

path="/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10"
for target in "$api" "$dcn"; do
    wait_served "$target" "$path"
done

# The attacker: holds argv[2] half-open connections to argv[1] until SIGTERM, replacing each one
# the server closes; prints "ready" once all are open, and on SIGTERM how many the server closed.
cat >"$work/attacker.py" <<'EOF'
import selectors, signal, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2])
partial = b"GET /get_asks?exchange=binance.com&market=SIM0USDT HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"
selector = selectors.DefaultSelector()
closed = 0
def open_one():
    s = socket.create_connection((host, int(port)))
    s.sendall(partial)
    selector.register(s, selectors.EVENT_READ)
def stop(*_):
    print(closed, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
for _ in range(count):
    open_one()
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        selector.unregister(key.fileobj)
        key.fileobj.close()
        closed += 1
        open_one()
EOF

echo "| target | slowloris | req/s | p50 | p99 | wrk errors |"
echo "|---|---|---|---|---|---|"
for target in "restapi (local shared memory)|$api" "DCN|$dcn"; do
    name=${target%%|*}
    address=${target##*|}
    echo "| $name | none | $(measure "http://$address$path") |"
    python3 "$work/attacker.py" "$address" "$half_open" >"$work/attacker" &
    attacker_pid=$!
    pids+=("$attacker_pid")
    until grep -q ready "$work/attacker" 2>/dev/null; do sleep 0.05; done
    row=$(measure "http://$address$path")
    kill "$attacker_pid"
    wait "$attacker_pid" || true
    echo "| $name | $half_open half-open | $row |"
    echo "  (the server closed $(tail -n 1 "$work/attacker") half-open connections during the run)" >&2
done
