#!/usr/bin/env bash
# Stops the cluster scripts/s3/up.sh started in DIR (its daemons' pid files are
# in DIR/run) and removes DIR, unless FERRITE_S3_KEEP=1 (to read the logs).
#
#     scripts/s3/down.sh "$FERRITE_S3_DIR"
set -uo pipefail

dir=${1:-${FERRITE_S3_DIR:-}}
if [ -z "$dir" ] || [ ! -d "$dir/run" ]; then
    echo "s3/down: '$dir' is not a cluster directory of scripts/s3/up.sh" >&2
    exit 2
fi

pids=()
for pid_file in "$dir"/run/*.pid; do
    [ -f "$pid_file" ] && pids+=("$(cat "$pid_file")")
done
alive() {
    local pid
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
# Ten seconds to stop cleanly, then no more waiting.
for _ in $(seq 1 50); do alive || break; sleep 0.2; done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done

if [ "${FERRITE_S3_KEEP:-0}" = 1 ]; then
    echo "s3/down: stopped ${#pids[@]} daemon(s); kept $dir" >&2
else
    rm -rf -- "$dir"
    echo "s3/down: stopped ${#pids[@]} daemon(s)" >&2
fi
