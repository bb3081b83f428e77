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
cluster="wrk$$"
# shellcheck source=support/cluster.sh
source benches/support/cluster.sh

start sim sim --port 0 --markets 4 --rate 10 && sim=$address
start mgmt mgmt --port 0 --ephemeral --recovery-window-ms 0 && mgmt=$address
start dcn dcn --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" \
    --exchange-endpoint "binance.com=http://$sim" && dcn=$address
start local restapi --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" && local_api=$address
start remote restapi --cluster "$cluster" --port 0 --mgmt-url "http://$mgmt" --no-local-reads \
    && remote_api=$address

curl -sf "http://$local_api/create_depthcache?exchange=binance.com&market=SIM0USDT" >/dev/null
path="/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=10"
wait_served "$remote_api" "$path"

echo "| path | load | req/s | p50 | p99 | wrk errors |"
echo "|---|---|---|---|---|---|"
for target in "restapi, local shared memory|$local_api" "restapi, remote over HTTP|$remote_api" "DCN directly|$dcn"; do
    name=${target%%|*}
    address=${target##*|}
    echo "| $name | moderate (1 thread, 4 connections) | $(measure "http://$address$path" 1 4) |"
    echo "| $name | saturating (2 threads, 64 connections) | $(measure "http://$address$path" 2 64) |"
done
