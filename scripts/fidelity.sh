#!/usr/bin/env bash
# Fidelity of ipcbench's raw pipe round trip against an independent tool,
# `perf bench sched pipe` (what lmbench's lat_pipe measures too), on this machine, in
# both placements:
#   same CPU : taskset -c 0 for perf; ipcbench pins both processes to CPU 0.
#   two CPUs : perf's two processes are pinned to CPU 0 and CPU 1 (taskset -p on each
#              once perf has forked); ipcbench pins them to CPU 0 and CPU 1.
# perf reports total time / round trips, i.e. a mean, so ipcbench's mean is compared
# (its median is printed too). Target: within 15% (ratio 0.85..1.15).
# Usage: scripts/fidelity.sh [ROUND_TRIPS]   (default 200000 for perf)
# Needs root or sudo to install linux-perf when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
loops="${1:-200000}"

if ! perf bench sched pipe -l 1000 >/dev/null 2>&1; then
    echo "installing linux-perf ..." >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >&2 && $sudo_cmd apt-get install -y -qq linux-perf >&2
fi
command -v jq >/dev/null || { echo "fidelity.sh needs jq (apt-get install jq)" >&2; exit 2; }
cpus=$(nproc)

# perf bench sched pipe, usecs per round trip.
perf_same() {
    taskset -c 0 perf bench sched pipe -l "$loops" 2>&1 | awk '/usecs\/op/ {print $1}'
}
perf_cross() {
    local out; out=$(mktemp)
    taskset -c 0,1 perf bench sched pipe -l "$loops" >"$out" 2>&1 &
    local perf_pid=$!
    # Pin the two sides apart as soon as perf has forked its second process.
    for _ in $(seq 200); do
        child=$(pgrep -P "$perf_pid" | head -1 || true)
        [ -n "$child" ] && break
        sleep 0.01
    done
    if [ -n "${child:-}" ]; then
        taskset -pc 0 "$perf_pid" >/dev/null
        taskset -pc 1 "$child" >/dev/null
    else
        echo "warning: could not find perf's second process; two-CPU figure is unpinned" >&2
    fi
    wait "$perf_pid"
    awk '/usecs\/op/ {print $1}' "$out"; rm -f "$out"
}

cargo build --release --quiet
json=$(mktemp --suffix=.json)
trap 'rm -f "$json"' EXIT
./target/release/ipcbench bench --quick --filter calibration/pipe-roundtrip --json "$json" >/dev/null

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $cpus CPUs (figures are noisy under load)"
printf '%-10s %16s %18s %18s %10s\n' placement "perf (us, mean)" "ipcbench (us,mean)" "ipcbench (us,p50)" "ratio"
fail=0
for placement in same-cpu cross-cpu; do
    if [ "$placement" = cross-cpu ] && [ "$cpus" -lt 2 ]; then
        echo "cross-cpu: skipped (one CPU)"; continue
    fi
    if [ "$placement" = same-cpu ]; then perf_us=$(perf_same); else perf_us=$(perf_cross); fi
    sel=".latency[] | select(.workload == \"calibration/pipe-roundtrip/$placement\") | .percentiles"
    mean_us=$(jq -r "$sel | .mean / 1000" "$json")
    p50_us=$(jq -r "$sel | .p50 / 1000" "$json")
    ratio=$(awk -v a="$mean_us" -v b="$perf_us" 'BEGIN {printf "%.3f", a / b}')
    verdict=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.85 && r <= 1.15) ? "within 15%" : "OUTSIDE 15%"}')
    [ "$verdict" = "within 15%" ] || fail=1
    printf '%-10s %16.2f %18.2f %18.2f %10s  %s\n' "$placement" "$perf_us" "$mean_us" "$p50_us" "$ratio" "$verdict"
done
exit $fail
