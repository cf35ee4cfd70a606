#!/usr/bin/env bash
# Mutation testing of src/ipc and src/schedule with cargo-mutants, sized for a 2-core machine.
#
# A full run is ~1 300 mutants; even with the incremental `mutants` profile (a mutant
# rebuilds in ~17 s) that is many hours here, so by default this tests a systematic
# sample: every Nth mutant (round-robin sharding) of each group, each group against the
# test targets that exercise it. Pass SAMPLE=1 for the full run.
#
#   scripts/mutants.sh [ipc|ipc-families|ipc-top|schedule|all]   # results in target/mutants-out/<group>/
#   SAMPLE=10 SHARD=0 scripts/mutants.sh ipc  # shard 0 of 10 (default); 1..9 are the others
#
# It mutates the source tree in place (no 4 GB target copy per run), so run it in a
# scratch worktree: `git worktree add ../mutants && cd ../mutants && scripts/mutants.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

group=${1:-all}
sample=${SAMPLE:-10}
shard=${SHARD:-0}
export IPCBENCH_RUN=${IPCBENCH_RUN:-mut$$}

if ! git diff --quiet; then
    echo "mutants.sh: the tree has uncommitted changes; run it in a clean scratch worktree" >&2
    exit 2
fi

run_group() {
    local name=$1 files=$2 tests=$3
    local args=() f
    # The globs are cargo-mutants' to match, not the shell's.
    set -f
    for f in $files; do args+=(-f "$f"); done
    set +f
    local shard_args=()
    if [ "$sample" -gt 1 ]; then shard_args=(--shard "$shard/$sample" --sharding round-robin); fi
    mkdir -p "target/mutants-out/$name"
    # shellcheck disable=SC2086
    cargo mutants --in-place --profile mutants --baseline skip --no-shuffle \
        "${shard_args[@]}" "${args[@]}" \
        --timeout 180 --build-timeout 600 \
        --output "target/mutants-out/$name" -- $tests || true
    git checkout -- src
    # A mutant may break the cleanup itself: report what this run left, then remove it.
    .ci/hygiene || true
    for pid in $(grep -l -a "IPCBENCH_RUN=$IPCBENCH_RUN" /proc/[0-9]*/environ 2>/dev/null |
        sed 's|/proc/\([0-9]*\)/environ|\1|'); do
        case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in */target/*) kill -KILL "$pid" ;; esac
    done
    rm -rf /dev/shm/ipcbench-"$IPCBENCH_RUN"-* "${TMPDIR:-/tmp}"/ipcbench-"$IPCBENCH_RUN"-*
}

# Every ipc family's mutants face every non-scenario test target (~20 s together): a
# mutant in futex.rs or shm.rs is as likely to be caught by the lock tests as the queue's.
ipc_tests="--lib --test pipe --test pipe_basics --test queue --test lock --test sync --test manager --test pool --test filestore --test process"
# The turnstile is exercised by the scenario tests (~45 s) and its own unit tests.
schedule_tests="--lib --test scenarios"

case $group in
    ipc) run_group ipc 'src/ipc/**' "$ipc_tests" ;;
    # The same, split in two: the family modules, and the files directly under src/ipc.
    ipc-families) run_group ipc-families 'src/ipc/*/**' "$ipc_tests" ;;
    ipc-top) run_group ipc-top 'src/ipc/*.rs' "$ipc_tests" ;;
    schedule) run_group schedule 'src/schedule/**' "$schedule_tests" ;;
    all)
        run_group schedule 'src/schedule/**' "$schedule_tests"
        run_group ipc 'src/ipc/**' "$ipc_tests"
        ;;
    *) echo "mutants.sh: unknown group '$group' (ipc, ipc-families, ipc-top, schedule or all)" >&2; exit 2 ;;
esac

for d in target/mutants-out/*/mutants.out; do
    [ -d "$d" ] || continue
    echo "== $d"
    for outcome in caught missed timeout unviable; do
        printf '%-9s %s\n' "$outcome" "$(wc -l <"$d/$outcome.txt" 2>/dev/null || echo 0)"
    done
done
