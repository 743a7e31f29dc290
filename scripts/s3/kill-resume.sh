#!/usr/bin/env bash
# Issue 9's "done when", by hand: a process in object storage with a heap
# larger than its physical heap, killed with `kill -9` a dozen times, each
# time after its current runner committed a checkpoint of its own, resumed
# each time on a fresh cache directory; halfway, a second `ferrite resume`
# while it runs must be refused. Prints the result against the uninterrupted
# run's. Needs a gateway's variables (scripts/s3/up.sh) in the environment and
# a release build (cargo build --release -p ferrite-cli).
#
#     set -a; . ./s3.env; set +a
#     scripts/s3/kill-resume.sh [STEPS] [MIB] [KILLS]     (3000000 256 12: about 12 minutes)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
ferrite=$root/target/release/ferrite
churn=$root/examples/churn.wat
steps=${1:-3000000} mib=${2:-256} kills=${3:-12}
store=s3://${AWS_BUCKET:?set the gateway variables first}/kill-resume-$$-$(date +%s)
caches=$(mktemp -d)
trap 'rm -rf "$caches"' EXIT

expected=$("$ferrite" run --invoke churn "$churn" "$steps" "$mib")
checkpoints() { "$ferrite" ps --store "$store" | awk 'NR == 2 { print $(NF - 2) }'; }
start=$(date +%s)
"$ferrite" run --name job --store "$store" --cache-dir "$caches/0" --physical-heap 32MiB \
    --checkpoint-every 2s --invoke churn "$churn" "$steps" "$mib" >"$caches/out" 2>"$caches/err" &
pid=$!
last=0
for kill in $(seq 1 "$kills"); do
    while :; do
        kill -0 "$pid" 2>/dev/null || { echo "the run ended before kill $kill: give more STEPS" >&2; exit 1; }
        count=$(checkpoints)
        [ -n "$count" ] && [ "$count" -gt "$last" ] && break
        sleep 0.2
    done
    last=$count
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    "$ferrite" resume job --store "$store" --cache-dir "$caches/$kill" --stats >"$caches/out" 2>"$caches/err" &
    pid=$!
    echo "kill $kill after checkpoint $last; resumed on a fresh cache as pid $pid"
    if [ "$kill" = $(( (kills + 1) / 2 )) ]; then
        while [ "$(checkpoints)" = "$last" ]; do sleep 0.2; done
        if "$ferrite" resume job --store "$store" --cache-dir "$caches/second" 2>"$caches/second.err"; then
            echo "a second resume ran while the process was running" >&2; exit 1
        fi
        echo "second resume refused: $(tail -1 "$caches/second.err")"
        last=$(checkpoints)
    fi
done
wait "$pid"
result=$(cat "$caches/out")
echo "result $result, uninterrupted $expected, $(( $(date +%s) - start )) s"
grep -E 'resume |local cache|checkpoints' "$caches/err" || true
"$ferrite" ps --store "$store"
[ "$result" = "$expected" ]
