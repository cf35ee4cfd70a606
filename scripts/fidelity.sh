#!/usr/bin/env bash
# Fidelity of ipcbench's raw pipe round trip against an independent tool,
# `perf bench sched pipe` (what lmbench's lat_pipe measures too), on this machine, in
# both placements:
#   same CPU : taskset -c 0 for perf; ipcbench pins both processes to CPU 0.
#   two CPUs : perf's two processes are pinned to CPU 0 and CPU 1 (taskset -p on each
#              once perf has forked); ipcbench pins them to CPU 0 and CPU 1.
# perf reports total time / round trips, i.e. a mean, so ipcbench's mean is compared
# (its median is printed too). Each tool runs RUNS times, alternating; the best run of
# each (the least disturbed by other load) is compared, and the median run is shown.
# Target: within 15% (ratio 0.85..1.15).
# Usage: scripts/fidelity.sh [RUNS] [PERF_ROUND_TRIPS]   (defaults 5 and 20000)
# Needs root or sudo to install linux-perf when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
loops="${2:-20000}"

if ! perf bench sched pipe -l 1000 >/dev/null 2>&1; then
    echo "installing linux-perf ..." >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >&2 && $sudo_cmd apt-get install -y -qq linux-perf >&2
fi
command -v jq >/dev/null || { echo "fidelity.sh needs jq (apt-get install jq)" >&2; exit 2; }
cpus=$(nproc)

# perf bench sched pipe: microseconds per round trip.
perf_same() {
    taskset -c 0 perf bench sched pipe -l "$loops" 2>&1 | awk '/usecs\/op/ {print $1}'
}
perf_cross() {
    local out child=""; out=$(mktemp)
    taskset -c 0,1 perf bench sched pipe -l "$loops" >"$out" 2>&1 &
    local perf_pid=$!
    # Pin the two sides apart as soon as perf has forked its second process.
    for _ in $(seq 200); do
        child=$(pgrep -P "$perf_pid" | head -1 || true)
        [ -n "$child" ] && break
        sleep 0.01
    done
    if [ -n "$child" ]; then
        taskset -pc 0 "$perf_pid" >/dev/null
        taskset -pc 1 "$child" >/dev/null || true
    else
        echo "warning: could not find perf's second process; two-CPU figure is unpinned" >&2
    fi
    wait "$perf_pid"
    awk '/usecs\/op/ {print $1}' "$out"; rm -f "$out"
}
# ipcbench's raw pipe round trip in one placement: "mean_us p50_us".
ipcbench_run() {
    local json; json=$(mktemp --suffix=.json)
    ./target/release/ipcbench bench --quick --filter "calibration/pipe-roundtrip/$1" \
        --json "$json" >/dev/null 2>&1
    jq -r '.latency[0].percentiles | "\(.mean / 1000) \(.p50 / 1000)"' "$json"
    rm -f "$json"
}
best() { sort -g | head -1; }
middle() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

cargo build --release --quiet
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $cpus CPUs; $runs runs of each tool"
printf '%-10s %18s %18s %14s %8s %s\n' placement "perf mean (us)" "ipcbench mean" "ipcbench p50" ratio "(best runs; median runs in brackets)"
fail=0
for placement in same-cpu cross-cpu; do
    if [ "$placement" = cross-cpu ] && [ "$cpus" -lt 2 ]; then
        echo "cross-cpu: skipped (one CPU)"; continue
    fi
    perf_all=(); mean_all=(); p50_all=()
    for _ in $(seq "$runs"); do
        if [ "$placement" = same-cpu ]; then perf_all+=("$(perf_same)"); else perf_all+=("$(perf_cross)"); fi
        read -r mean p50 < <(ipcbench_run "$placement")
        mean_all+=("$mean"); p50_all+=("$p50")
    done
    perf_best=$(printf '%s\n' "${perf_all[@]}" | best)
    mean_best=$(printf '%s\n' "${mean_all[@]}" | best)
    p50_best=$(printf '%s\n' "${p50_all[@]}" | best)
    perf_mid=$(printf '%s\n' "${perf_all[@]}" | middle)
    mean_mid=$(printf '%s\n' "${mean_all[@]}" | middle)
    ratio=$(awk -v a="$mean_best" -v b="$perf_best" 'BEGIN {printf "%.3f", a / b}')
    ratio_mid=$(awk -v a="$mean_mid" -v b="$perf_mid" 'BEGIN {printf "%.3f", a / b}')
    verdict=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.85 && r <= 1.15) ? "within 15%" : "OUTSIDE 15%"}')
    [ "$verdict" = "within 15%" ] || fail=1
    printf '%-10s %9.2f [%6.2f] %9.2f [%6.2f] %14.2f %8s [%s]  %s\n' "$placement" \
        "$perf_best" "$perf_mid" "$mean_best" "$mean_mid" "$p50_best" "$ratio" "$ratio_mid" "$verdict"
done
exit $fail
