#!/usr/bin/env bash
# Installs what scripts/s3/up.sh needs: a monitor, an OSD and the RADOS Gateway
# from Debian's packages, and a curl that signs requests (SigV4, curl >= 7.75).
# Idempotent: when everything is present it returns at once without touching apt.
# Needs root (or sudo). Prints the time it took on stderr.
set -euo pipefail

started_s=$(date +%s.%N)
say() { echo "s3/install: $*" >&2; }

needed=()
command -v ceph-mon >/dev/null || needed+=(ceph-mon)
command -v ceph-osd >/dev/null || needed+=(ceph-osd)
command -v radosgw >/dev/null || needed+=(radosgw)
command -v curl >/dev/null || needed+=(curl)

if [ ${#needed[@]} -eq 0 ]; then
    say "already installed"
    exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
say "installing ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
# Ask for the whole set: apt keeps what is already there and brings the rest.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd curl >&2
elapsed_s=$(awk -v a="$started_s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
say "installed in ${elapsed_s} s"
