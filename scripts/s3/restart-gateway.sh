#!/usr/bin/env bash
# Stops the RADOS Gateway of the cluster scripts/s3/up.sh started in DIR, keeps
# it down for SECONDS (default 5), then starts it again with the same
# configuration and waits until it answers HTTP. The monitor and the OSD keep
# running: what a client sees is an S3 endpoint that goes away and comes back.
# For the outage tests (crates/cli/tests/s3_restart.rs).
#
#     scripts/s3/restart-gateway.sh "$FERRITE_S3_DIR" 5
set -euo pipefail

dir=${1:-${FERRITE_S3_DIR:-}}
down_for=${2:-5}
conf=$dir/ceph.conf
pid_file=$dir/run/client.rgw.pid
if [ -z "$dir" ] || [ ! -f "$conf" ] || [ ! -f "$pid_file" ]; then
    echo "s3/restart-gateway: '$dir' is not a running cluster of scripts/s3/up.sh" >&2
    exit 2
fi
port=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\).*$/\1/p' "$conf")
pid=$(cat "$pid_file")
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
echo "s3/restart-gateway: gateway stopped; down for $down_for s" >&2
sleep "$down_for"
radosgw -c "$conf" -n client.rgw 2>>"$dir/log/setup.log"
for _ in $(seq 1 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        echo "s3/restart-gateway: gateway answers again" >&2
        exit 0
    fi
    sleep 0.1
done
echo "s3/restart-gateway: the gateway did not come back" >&2
exit 1
