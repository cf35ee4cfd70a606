#!/usr/bin/env bash
# Mutation testing of src/ipc and src/schedule with cargo-mutants, sized for a 2-core machine.
#
# The ~1 800 mutants of src/ipc and src/schedule cost 20–40 s each here (an incremental
# rebuild with the `mutants` profile, then the group's tests): a day of machine time. So
# the work is split in groups, each one (files, the test targets that exercise them), and
# sampled by file (issue 16):
# * the heart files — robust, semaphore, pipe-queue, shm-queue, turnstile — in full
#   (SAMPLE=1 by default);
# * every other file in a 1-in-4 round-robin shard (SAMPLE=4, SHARD=0..3): round-robin
#   over the group's mutants, listed file by file, takes a quarter of each file.
#
#   scripts/mutants.sh GROUP...                 # results in target/mutants-out/<group>[-k-of-n]/
#   SHARD=1 scripts/mutants.sh lock             # the second quarter of the lock family
#   RE='robust.rs:227:36' scripts/mutants.sh robust   # only the mutants matching (--re;
#                                               # one regex a line)
#   BASELINE=skip scripts/mutants.sh robust     # only once the group's tests pass unmutated
#   ITERATE=1 scripts/mutants.sh pipe-queue     # go on from a run that was stopped
#   scripts/mutants.sh --list                   # the groups, their files and tests
#   LIST=1 scripts/mutants.sh sampled           # the mutants a run would test, nothing run
#
# GROUP is a group name, `heart`, `sampled` or `all`. Each group's tests take < ~60 s on
# the unmutated tree (timings in docs/notes/issue-16-mutants.md). Record each run's
# counts in docs/notes/issue-16-mutants.md so the shards add up across sessions.
#
# It mutates the source tree in place (no 4 GB target copy per run), so run it in a
# scratch worktree with a clean tree, and do not edit src/ while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export IPCBENCH_RUN=${IPCBENCH_RUN:-mut$$}
timeout=${TIMEOUT:-120}

# name | file globs (a leading ! excludes) | cargo test target arguments | test binary
# arguments (e.g. --skip for a slow test that exercises nothing of the group)
groups=(
    # Heart files, in full.
    "robust|src/ipc/lock/robust.rs|--lib --test lock --test sync --test queue_recovery --test filestore"
    "semaphore|src/ipc/sync/semaphore.rs|--lib --test sync --test schedule_points|--skip the_ipcbench_binary_finds_the_torn_get_in_a_few_cases"
    "pipe-queue|src/ipc/queue/pipe.rs|--lib --test queue --test queue_recovery --test schedule_points|--skip the_ipcbench_binary_finds_the_torn_get_in_a_few_cases"
    "shm-queue|src/ipc/queue/shm.rs|--lib --test queue --test queue_shm --test queue_recovery --test schedule_points|--skip the_ipcbench_binary_finds_the_torn_get_in_a_few_cases"
    "turnstile|src/schedule/mod.rs|--lib --test schedule_points --test scenarios"
    # Every other file, 1 in 4.
    "ipc-top|src/ipc/*.rs|--lib --test pipe --test pipe_basics --test wire_limits --test filestore --test sync --test queue --test process"
    "lock|src/ipc/lock/*.rs !src/ipc/lock/robust.rs|--lib --test lock --test filestore"
    "sync|src/ipc/sync/*.rs !src/ipc/sync/semaphore.rs|--lib --test sync"
    "queue|src/ipc/queue/*.rs !src/ipc/queue/pipe.rs !src/ipc/queue/shm.rs|--lib --test queue --test queue_shm --test queue_recovery"
    "manager|src/ipc/manager/*.rs|--lib --test manager --test wire_limits"
    "pool|src/ipc/pool/*.rs|--lib --test pool"
    "schedule-points|src/schedule/points.rs|--lib --test schedule_points --test scenarios"
)
heart="robust semaphore pipe-queue shm-queue turnstile"
sampled="ipc-top lock sync queue manager pool schedule-points"

field() { # field GROUP N: the Nth |-field of GROUP's row
    local row
    for row in "${groups[@]}"; do
        if [ "${row%%|*}" = "$1" ]; then
            echo "$row" | cut -d'|' -f"$2"
            return
        fi
    done
    return 1
}

if [ "${1:-}" = "--list" ]; then
    for row in "${groups[@]}"; do echo "$row"; done | column -t -s'|'
    exit 0
fi
if [ $# -eq 0 ]; then
    echo "usage: scripts/mutants.sh GROUP... (a group, heart, sampled or all; --list shows the groups)" >&2
    exit 2
fi

names=()
for arg in "$@"; do
    case $arg in
        heart) names+=($heart) ;;
        sampled) names+=($sampled) ;;
        all) names+=($heart $sampled) ;;
        *)
            if ! field "$arg" 1 >/dev/null; then
                echo "mutants.sh: unknown group '$arg' (scripts/mutants.sh --list)" >&2
                exit 2
            fi
            names+=("$arg")
            ;;
    esac
done

if [ -z "${LIST:-}" ] && { ! git diff --quiet || ! git diff --cached --quiet; }; then
    echo "mutants.sh: the tree has uncommitted changes; commit them first (cargo-mutants edits src/ in place)" >&2
    exit 2
fi

run_group() {
    local name=$1 sample=$2 shard=$3
    local files tests test_args args=() f out
    files=$(field "$name" 2)
    tests=$(field "$name" 3)
    test_args=$(field "$name" 4)
    # The globs are cargo-mutants' to match, not the shell's.
    set -f
    for f in $files; do
        case $f in
            !*) args+=(-e "${f#!}") ;;
            *) args+=(-f "$f") ;;
        esac
    done
    set +f
    out="target/mutants-out/$name"
    if [ "$sample" -gt 1 ]; then
        args+=(--shard "$shard/$sample" --sharding round-robin)
        out="$out-$shard-of-$sample"
    fi
    # EXCLUDE_RE skips mutants (one regex a line), e.g. those a stopped run has tested.
    if [ -n "${EXCLUDE_RE:-}" ]; then
        while IFS= read -r f; do [ -z "$f" ] || args+=("--exclude-re=$f"); done <<<"$EXCLUDE_RE"
    fi
    # ITERATE=1 goes on from the group's previous run: it skips what that run caught.
    if [ -n "${ITERATE:-}" ]; then args+=(--iterate); fi
    if [ -n "${RE:-}" ]; then
        while IFS= read -r f; do [ -z "$f" ] || args+=("--re=$f"); done <<<"$RE"
        out="$out-re"
    fi
    if [ -n "${LIST:-}" ]; then # the mutants this run would test, nothing run
        cargo mutants --list "${args[@]}"
        return
    fi
    mkdir -p "$out"
    echo "== $name: $files against $tests $test_args (sample 1 in $sample, shard $shard) -> $out" >&2
    # The test targets go to the build too (--cargo-arg, not after `--`): cargo-mutants
    # otherwise builds every target for each mutant, which triples its cost here.
    for f in $tests; do args+=("--cargo-arg=$f"); done
    if [ -n "$test_args" ]; then
        args+=("--cargo-test-arg=--")
        for f in $test_args; do args+=("--cargo-test-arg=$f"); done
    fi
    nice -n 19 cargo mutants --in-place --profile mutants --baseline "${BASELINE:-run}" \
        --no-shuffle "${args[@]}" --timeout "$timeout" --build-timeout 600 \
        --output "$out" || true
    git checkout -- src
    # A mutant may break the cleanup itself: report what this run left, then remove it.
    .ci/hygiene || true
    for pid in $(grep -l -a "IPCBENCH_RUN=$IPCBENCH_RUN" /proc/[0-9]*/environ 2>/dev/null |
        sed 's|/proc/\([0-9]*\)/environ|\1|'); do
        case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in */target/*) kill -KILL "$pid" ;; esac
    done
    rm -rf /dev/shm/ipcbench-"$IPCBENCH_RUN"-* /dev/shm/ipcbench-"$IPCBENCH_RUN"p* \
      "${TMPDIR:-/tmp}"/ipcbench-"$IPCBENCH_RUN"-* "${TMPDIR:-/tmp}"/ipcbench-"$IPCBENCH_RUN"p*
    for outcome in caught missed timeout unviable; do
        printf '%-9s %s\n' "$outcome" "$(wc -l <"$out/mutants.out/$outcome.txt" 2>/dev/null || echo 0)"
    done
}

for name in "${names[@]}"; do
    case " $heart " in
        *" $name "*) run_group "$name" "${SAMPLE:-1}" "${SHARD:-0}" ;;
        *) run_group "$name" "${SAMPLE:-4}" "${SHARD:-0}" ;;
    esac
done
