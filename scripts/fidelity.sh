#!/usr/bin/env bash
# Fidelity of ipcbench's raw baselines against an independent tool, `perf bench`, on this
# machine, in one sitting:
#   (a) the raw pipe round trip vs `perf bench sched pipe` (what lmbench's lat_pipe
#       measures too), in both placements:
#         same CPU : taskset -c 0 for perf; ipcbench pins both processes to CPU 0.
#         two CPUs : perf's two processes are pinned to CPU 0 and CPU 1 (taskset -p on
#                    each once perf has forked); ipcbench pins them to CPU 0 and CPU 1.
#       perf reports total time / round trips, a mean, so ipcbench's mean is compared.
#   (b) memcpy bandwidth vs `perf bench mem memcpy -f default -s 32MB -l 32`: glibc's
#       memcpy (which Rust's copy_from_slice calls) of a 32 MiB buffer, larger than the
#       caches, faulted in before the clock starts, 32 copies per run — ipcbench's memcpy
#       calibration in its full profile. perf's GB is 2^30 bytes; both are shown in GiB/s.
#   (c) N×M messages vs `perf bench sched messaging -g 1 -l 1000` (hackbench: a group of
#       20 senders each writing 1000 rounds of a 100-byte message to each of 20
#       receivers, 40 processes), with -p (pipes) and without (Unix stream socketpairs),
#       against ipcbench's calibration/{pipe,unix-socket}-messaging, which does the same
#       (full profile: 1000 loops, see measure::calibration::catalogue::MESSAGING_LOOPS); both give the total
#       seconds from the start signal to the last worker reaped.
# Each tool runs RUNS times, alternating. One run of memcpy or messaging is the median
# of 5 repeats for both tools (ipcbench's full profile repeats 5 times). The
# best run of each tool (the least disturbed by other load) is compared; the median run
# is shown in brackets. Target: within 10% (ratio ipcbench/perf 0.90..1.10); exit 0 only
# when every comparison is within it, 1 otherwise, 2 when a tool is missing.
# Usage: scripts/fidelity.sh [RUNS] [PERF_ROUND_TRIPS]   (defaults 5 and 20000)
# Needs root or sudo to install linux-perf when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
loops="${2:-20000}"
tolerance=0.10

if ! perf bench sched pipe -l 1000 >/dev/null 2>&1; then
    echo "installing linux-perf ..." >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq >&2 && $sudo_cmd apt-get install -y -qq linux-perf >&2
fi
command -v perf >/dev/null || { echo "fidelity.sh needs perf (apt-get install linux-perf)" >&2; exit 2; }
command -v jq >/dev/null || { echo "fidelity.sh needs jq (apt-get install jq)" >&2; exit 2; }
cpus=$(nproc)

# A copy of the binary, so a rebuild during the run does not replace it under us.
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/ipcbench" "$work/ipcbench"

# perf bench sched pipe: microseconds per round trip.
perf_pipe_same() {
    taskset -c 0 perf bench sched pipe -l "$loops" 2>&1 | awk '/usecs\/op/ {print $1}'
}
perf_pipe_cross() {
    local out="$work/perf-pipe.out" child=""
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
    awk '/usecs\/op/ {print $1}' "$out"
}
# perf bench mem memcpy: GiB/s.
perf_memcpy() {
    perf bench mem memcpy -f default -s 32MB -l 32 2>&1 | awk '/GB\/sec/ {print $1}'
}
# perf bench sched messaging: total seconds; $1 is "-p" for pipes or empty for sockets.
perf_messaging() {
    perf bench sched messaging -g 1 -l 1000 $1 2>&1 | awk '/Total time/ {print $3}'
}
# ipcbench run of the workloads matching $1 (quick profile unless $2 is "full"); the
# results JSON on stdout.
ipcbench_json() {
    local json="$work/run.json" profile=(--quick)
    [ "${2:-}" = full ] && profile=()
    "$work/ipcbench" bench "${profile[@]}" --filter "$1" --json "$json" >/dev/null 2>&1 || {
        echo "ipcbench bench --filter $1 failed" >&2; return 1; }
    cat "$json"
}
ipcbench_pipe() { # mean round trip, µs
    ipcbench_json "calibration/pipe-roundtrip/$1" | jq -r '.latency[0].percentiles.mean / 1000'
}
ipcbench_memcpy() { # GiB/s, median of the full profile's 5 repeats of 32 copies
    ipcbench_json calibration/memcpy full | jq -r '.calibration[0].value / 1073741824'
}
ipcbench_messaging() { # total seconds, median of the full profile's 5 repeats
    ipcbench_json "calibration/$1-messaging" full | jq -r '.calibration[0].value / 1e9'
}
# median_of N COMMAND...: the median of N runs of COMMAND's figure.
median_of() {
    local n=$1 all=(); shift
    for _ in $(seq "$n"); do all+=("$("$@")"); done
    printf '%s\n' "${all[@]}" | middle
}
lowest() { sort -g | head -1; }
highest() { sort -g | tail -1; }
middle() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $cpus CPUs; $runs runs of each tool"
printf '%-30s %-6s %20s %20s %16s  %s\n' comparison unit "perf best [median]" \
    "ipcbench best [med]" "ratio [median]" verdict
fail=0
# compare NAME UNIT BEST(lowest|highest) PERF_COMMAND -- IPCBENCH_COMMAND
compare() {
    local name=$1 unit=$2 pick=$3; shift 3
    local perf_cmd=() ipc_cmd=()
    while [ "$1" != -- ]; do perf_cmd+=("$1"); shift; done; shift
    ipc_cmd=("$@")
    local perf_all=() ipc_all=() p i
    for _ in $(seq "$runs"); do
        p=$("${perf_cmd[@]}"); i=$("${ipc_cmd[@]}")
        [ -n "$p" ] && [ -n "$i" ] || { echo "$name: a tool gave no figure" >&2; fail=1; return; }
        perf_all+=("$p"); ipc_all+=("$i")
    done
    local perf_best ipc_best perf_mid ipc_mid
    perf_best=$(printf '%s\n' "${perf_all[@]}" | "$pick")
    ipc_best=$(printf '%s\n' "${ipc_all[@]}" | "$pick")
    perf_mid=$(printf '%s\n' "${perf_all[@]}" | middle)
    ipc_mid=$(printf '%s\n' "${ipc_all[@]}" | middle)
    local ratio ratio_mid verdict
    ratio=$(awk -v a="$ipc_best" -v b="$perf_best" 'BEGIN {printf "%.3f", a / b}')
    ratio_mid=$(awk -v a="$ipc_mid" -v b="$perf_mid" 'BEGIN {printf "%.3f", a / b}')
    verdict=$(awk -v r="$ratio" -v t="$tolerance" \
        'BEGIN {print (r >= 1 - t && r <= 1 + t) ? "within 10%" : "OUTSIDE 10%"}')
    [ "$verdict" = "within 10%" ] || fail=1
    printf '%-30s %-6s %9.3f [%8.3f] %9.3f [%8.3f] %7s [%6s]  %s\n' "$name" "$unit" \
        "$perf_best" "$perf_mid" "$ipc_best" "$ipc_mid" "$ratio" "$ratio_mid" "$verdict"
}

compare "pipe round trip same-cpu" "us" lowest perf_pipe_same -- ipcbench_pipe same-cpu
if [ "$cpus" -ge 2 ]; then
    compare "pipe round trip cross-cpu" "us" lowest perf_pipe_cross -- ipcbench_pipe cross-cpu
else
    echo "pipe round trip cross-cpu: skipped (one CPU)"
fi
compare "memcpy 32 MiB" "GiB/s" highest median_of 5 perf_memcpy -- ipcbench_memcpy
compare "messaging -g1 -l1000 pipes" "s" lowest median_of 5 perf_messaging -p -- ipcbench_messaging pipe
compare "messaging -g1 -l1000 sockets" "s" lowest median_of 5 perf_messaging "" -- ipcbench_messaging unix-socket
exit $fail
