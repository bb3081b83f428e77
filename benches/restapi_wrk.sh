#!/usr/bin/env bash
# wrk against `GET /get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10` three ways:
#   restapi reading shared memory (local path), restapi asking the DCN over HTTP (remote path),
#   and the DCN itself. Everything runs on this machine against `ubdcc sim` (release build).
#
#   benches/restapi_wrk.sh [seconds per run (default 10)]
#
# Two loads per target: "moderate" (1 thread, 4 connections) for latency, and "saturating"
# (2 threads, 64 connections) for throughput. Prints a Markdown table. Needs wrk (Debian: wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --bin ubdcc >&2
ubdcc=target/release/ubdcc
work=$(mktemp -d)
cluster="wrk$$"
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work" /dev/shm/ubdcc."$cluster".* 2>/dev/null || true
}
trap cleanup EXIT

# Starts `ubdcc <args>` with its output in $work/<name>; sets $address to where it listens.
# (Not called in a subshell, so its pid reaches the cleanup.)
start() {
    local name=$1
    shift
    "$ubdcc" --log-level warn "$@" >"$work/$name" 2>"$work/$name.err" &
    pids+=($!)
    until grep -q "listening on" "$work/$name" 2>/dev/null; do sleep 0.05; done
    address=$(awk '/listening on/ {print $3; exit}' "$work/$name")
}

start sim sim --port 0 --markets 4 --rate 10 && sim=$address
start mgmt mgmt --port 0 --ephemeral --recovery-window-ms 0 && mgmt=$address
start dcn dcn --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" \
    --exchange-endpoint "binance.com=http://$sim" && dcn=$address
start local restapi --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" && local_api=$address
start remote restapi --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" --no-local-reads \
    && remote_api=$address

curl -sf "http://$local_api/create_depthcache?exchange=binance.com&market=SIM0USDT" >/dev/null
path="/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10"
for _ in $(seq 1 300); do
    curl -sf "http://$remote_api$path" | grep -q '"result":"OK"' && break
    sleep 0.1
done
curl -sf "http://$remote_api$path" | grep -q '"result":"OK"' || { echo "book not served" >&2; exit 1; }

# Runs wrk; prints "req/s | p50 | p99".
measure() {
    local url=$1 threads=$2 connections=$3
    wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$url" >"$work/wrk.out"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out")
    [ -z "$errors" ] || echo "wrk: $errors" >&2
    echo "$rps | $p50 | $p99"
}

echo "| path | load | req/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for target in "restapi, local shared memory|$local_api" "restapi, remote over HTTP|$remote_api" "DCN directly|$dcn"; do
    name=${target%%|*}
    address=${target##*|}
    echo "| $name | moderate (1 thread, 4 connections) | $(measure "http://$address$path" 1 4) |"
    echo "| $name | saturating (2 threads, 64 connections) | $(measure "http://$address$path" 2 64) |"
done
