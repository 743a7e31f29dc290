#!/usr/bin/env bash
# Installs what scripts/netns/up.sh needs: `ip` (iproute2, with netns and
# bridge support) from Debian's packages. Idempotent: returns at once when it
# is there. Needs root (or sudo).
set -euo pipefail
if command -v ip >/dev/null && ip netns list >/dev/null 2>&1; then
    exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "netns/install: installing iproute2" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends iproute2 >&2
