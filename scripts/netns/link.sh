#!/usr/bin/env bash
# Takes the link of machine M of the network PREFIX down or up, as a pulled
# cable: scripts/netns/link.sh PREFIX M down|up
set -euo pipefail
prefix=$1 machine=$2 state=$3
case $state in up|down) ;; *) echo "netns/link: up or down, not $state" >&2; exit 2 ;; esac
ip -n "$prefix-hub" link set "v-$machine" "$state"
