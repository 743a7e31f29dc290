#!/usr/bin/env bash
# Starts a throw-away, one-node Ceph on 127.0.0.1 for the S3 tests of
# ferrite-remote: one monitor, one OSD and a RADOS Gateway, with a user and an
# empty bucket. Install the packages first with scripts/s3/install.sh.
#
# On success it prints, on stdout, the variables that object_store's
# `AmazonS3Builder::from_env()` reads (endpoint, region, keys, bucket,
# AWS_ALLOW_HTTP=true) plus FERRITE_S3_DIR, the cluster's directory, which
# scripts/s3/down.sh takes to stop it:
#
#     scripts/s3/up.sh > s3.env && set -a && . ./s3.env && set +a
#     ...
#     scripts/s3/down.sh "$FERRITE_S3_DIR"
#
# Progress and the time it took go to stderr. Settings (environment):
#   FERRITE_S3_PORT    first of the ports it uses (40400): monitor msgr2 on it,
#                      msgr1 on +1, the gateway's HTTP on +80
#   FERRITE_S3_BUCKET  bucket to create (ferrite-test)
#   FERRITE_S3_OSD     bluestore (a sparse 4 GiB file, the default) or memstore
#   FERRITE_S3_DIR     directory for the cluster (a new one under $TMPDIR)
#
# Nothing here is for production: authentication between the daemons is off,
# one copy of every object, everything on loopback.
set -euo pipefail

port=${FERRITE_S3_PORT:-40400}
bucket=${FERRITE_S3_BUCKET:-ferrite-test}
osd_store=${FERRITE_S3_OSD:-bluestore}
mon_v2=$port
mon_v1=$((port + 1))
http_port=$((port + 80))
here=$(cd "$(dirname "$0")" && pwd)
started_s=$(date +%s.%N)

say() { echo "s3/up: $*" >&2; }
since_start() { awk -v a="$started_s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# Runs "$@" until it succeeds, at most $1 times, $2 seconds apart.
retry() {
    local tries=$1 pause=$2
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" && return 0
        sleep "$pause"
    done
    return 1
}

for cmd in monmaptool ceph-mon ceph-osd radosgw radosgw-admin ceph curl; do
    command -v "$cmd" >/dev/null || { say "$cmd is missing: run scripts/s3/install.sh"; exit 1; }
done
for p in "$mon_v2" "$mon_v1" "$http_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        say "port $p is taken (another cluster? set FERRITE_S3_PORT)"
        exit 1
    fi
done

dir=${FERRITE_S3_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ferrite-s3.XXXXXX")}
mkdir -p "$dir"/{mon,osd,run,log}
on_failure() {
    say "failed at line $1; daemon logs are kept in $dir/log"
    FERRITE_S3_KEEP=1 "$here/down.sh" "$dir" || true
}
trap 'on_failure $LINENO' ERR

fsid=$(cat /proc/sys/kernel/random/uuid)
conf=$dir/ceph.conf
mon_addrs="[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]"
cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = $mon_addrs
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
# No cephx: a throw-away cluster on loopback.
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
# Without cephx the messenger cannot run its "secure" mode, which the gateway
# asks for by default: every connection uses "crc" instead.
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
# One OSD: one copy, few placement groups, placement across OSDs, not hosts.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# The monitor stops itself when its disk looks full; a test machine's disk
# may be fuller than Ceph likes, and this cluster holds little.
mon data avail warn = 1
mon data avail crit = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
keyring = /dev/null

[mon]
mon data = $dir/mon
mon cluster log file = $dir/log/cluster.log

[osd]
osd data = $dir/osd
osd objectstore = $osd_store
bluestore block path = $dir/osd.block
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
memstore device bytes = 2147483648
osd op num shards = 1
osd op num threads per shard = 2
osd memory target = 1073741824

[client.rgw]
# Without tcp_nodelay each answer on a reused connection waits about 40 ms
# for the client's delayed ACK (Nagle's algorithm): 44 ms per small GET
# instead of 3 (measured with curl on three requests over one connection).
rgw frontends = beast endpoint=127.0.0.1:$http_port tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw thread pool size = 32
CONF

# Monitor: a map with the one monitor, its store, then the daemon.
monmaptool --create --addv a "$mon_addrs" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" 2>>"$dir/log/setup.log"
ceph-mon -c "$conf" -i a 2>>"$dir/log/setup.log"
ceph -c "$conf" --connect-timeout 30 status >/dev/null
say "monitor up after $(since_start) s"

# OSD: registered with the monitor (which picks its id, 0), formatted, started.
osd_id=$(ceph -c "$conf" osd create)
ceph-osd -c "$conf" -i "$osd_id" --mkfs >/dev/null 2>>"$dir/log/setup.log"
ceph-osd -c "$conf" -i "$osd_id" 2>>"$dir/log/setup.log"
osd_is_up() { ceph -c "$conf" osd stat 2>/dev/null | grep -q ' 1 up'; }
retry 300 0.2 osd_is_up || { say "the OSD did not come up"; false; }
say "OSD up after $(since_start) s"

# Gateway, a user with fresh keys, and the bucket. The gateway creates its
# pools on first use, so the user creation is retried until they exist.
radosgw -c "$conf" -n client.rgw 2>>"$dir/log/setup.log"
access_key=FERRITE$(od -An -vtx1 -N8 /dev/urandom | tr -d ' \n' | tr a-f A-F)
secret_key=$(od -An -vtx1 -N20 /dev/urandom | tr -d ' \n')
create_user() {
    radosgw-admin -c "$conf" user create --uid=ferrite --display-name=ferrite \
        --access-key="$access_key" --secret="$secret_key" >/dev/null 2>>"$dir/log/setup.log"
}
retry 120 0.5 create_user || { say "could not create the gateway user"; false; }
endpoint=http://127.0.0.1:$http_port
# A SigV4-signed PUT of the bucket; the gateway wants the payload hash header,
# here that of the empty body.
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
create_bucket() {
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$bucket" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
        -H "x-amz-content-sha256: $empty_sha256") || true
    [ "$status" = 200 ]
}
retry 300 0.2 create_bucket || { say "could not create bucket $bucket"; false; }
say "gateway up with bucket $bucket at $endpoint, in $(since_start) s"

cat <<ENV
AWS_ENDPOINT_URL=$endpoint
AWS_ALLOW_HTTP=true
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=$access_key
AWS_SECRET_ACCESS_KEY=$secret_key
AWS_BUCKET=$bucket
FERRITE_S3_DIR=$dir
ENV
