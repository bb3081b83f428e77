# Shared by the wrk benches (`benches/*_wrk.sh`): builds the release binary, starts `ubdcc` roles
# as background processes with their output in a temporary folder, removes everything on exit,
# waits for a path to be served, and runs wrk. Source it after setting `cluster`:
#
#   cluster="name$$"; source benches/support/cluster.sh
#
# Needs wrk (Debian: wrk).
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --bin ubdcc >&2
ubdcc=target/release/ubdcc
work=$(mktemp -d)
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

# Waits up to 30 s until `http://<address><path>` answers OK; exits the bench otherwise.
wait_served() {
    local address=$1 path=$2
    for _ in $(seq 1 300); do
        curl -sf "http://$address$path" | grep -q '"result":"OK"' && return 0
        sleep 0.1
    done
    echo "$address$path is not served" >&2
    exit 1
}

# Runs wrk on `url` with `threads` and `connections` for $seconds; prints
# "req/s | p50 | p99 | errors".
measure() {
    local url=$1 threads=${2:-1} connections=${3:-4}
    wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$url" >"$work/wrk.out"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$work/wrk.out")
    echo "$rps | $p50 | $p99 | ${errors:-none}"
}
