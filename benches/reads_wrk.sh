#!/usr/bin/env bash
# The reads beyond one side (issue 14) under wrk, against restapi's local shared-memory path:
# `get_asks` (the reference), `get_book`, `get_fill_price` and `get_depth_stats` of one book at
# moderate load (1 thread, 4 connections), and `get_bbo` of every market of a 1 000-book cluster
# in one answer (1 thread, 1 connection: the latency of one whole answer). Everything runs on this
# machine against `ubdcc sim` (release build); the books start from 100-level snapshots so that
# 1 000 of them sync within one minute of the simulator's 6 000 weight.
#
#   benches/reads_wrk.sh [seconds per run (default 10)] [books (default 1000)]
#
# Prints a Markdown table. Needs wrk (Debian: wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
books="${2:-1000}"
cluster="reads$$"
# shellcheck source=support/cluster.sh
source benches/support/cluster.sh

start sim sim --port 0 --markets "$books" --rate 10 && sim=$address
start mgmt mgmt --port 0 --ephemeral --recovery-window-ms 0 --no-market-check && mgmt=$address
start dcn dcn --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" --weight-share 0.9 \
    --initial-depth 100 --max-books "$books" --exchange-endpoint "binance.com=http://$sim" \
    && dcn=$address
start local restapi --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" && api=$address

markets=$(seq -s, -f 'SIM%.0fUSDT' 0 $((books - 1)))
curl -sf -X POST "http://$api/create_depthcaches" -H 'content-type: application/json' \
    -d "{\"exchange\":\"binance.com\",\"markets\":\"$markets\",\"desired_quantity\":1}" >/dev/null
last="SIM$((books - 1))USDT"
echo "waiting for $books books to sync..." >&2
for _ in $(seq 1 1800); do
    synced=$({ curl -sf "http://$api/get_bbo?exchange=binance.com" || true; } \
        | { grep -o '"last_update_id"' || true; } | wc -l)
    [ "$synced" -ge "$books" ] && break
    sleep 0.1
done
echo "$synced of $books books synced" >&2
wait_served "$api" "/get_asks?exchange=binance.com&market=$last&limit_count=1"

book="exchange=binance.com&market=SIM0USDT"
echo "| read | load | req/s | p50 | p99 | wrk errors |"
echo "|---|---|---|---|---|---|"
for read in "get_asks|/get_asks?$book&limit_count=10" \
    "get_book|/get_book?$book&limit_count=10" \
    "get_fill_price|/get_fill_price?$book&side=buy&quantity=10" \
    "get_depth_stats|/get_depth_stats?$book&limit_count=10"; do
    echo "| ${read%%|*} | 1 thread, 4 connections | $(measure "http://$api${read##*|}" 1 4) |"
done
echo "| get_bbo, all $books markets | 1 thread, 1 connection | $(measure "http://$api/get_bbo?exchange=binance.com" 1 1) |"
