#!/usr/bin/env bash
# Removes the network scripts/netns/up.sh built with PREFIX (default ferrite):
# every namespace named PREFIX-*, after killing what still runs in them.
set -uo pipefail
prefix=${1:-ferrite}
for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns"
done
