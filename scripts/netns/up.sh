#!/usr/bin/env bash
# Builds a small network of "machines" for the migration tests: one network
# namespace per machine, each with a veth link (eth0) to a bridge in a hub
# namespace, on 10.77.0.0/24. Root only. Idempotent: an existing network of
# the same prefix is removed first.
#
#     scripts/netns/up.sh [PREFIX] [MACHINE...]     (defaults: ferrite server a b)
#
# Machine M is namespace PREFIX-M with address 10.77.0.(10 + its position):
# with the defaults, server 10.77.0.10, a 10.77.0.11, b 10.77.0.12. Run a
# command on it with `ip netns exec PREFIX-M CMD`; cut its link with
# scripts/netns/link.sh PREFIX M down (and up again). scripts/netns/down.sh
# PREFIX removes everything.
set -euo pipefail

prefix=${1:-ferrite}
shift || true
machines=("$@")
[ ${#machines[@]} -gt 0 ] || machines=(server a b)
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "netns/up: needs root (ip netns)" >&2
    exit 2
fi
"$here/down.sh" "$prefix" 2>/dev/null || true

hub=$prefix-hub
ip netns add "$hub"
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
ip -n "$hub" link set lo up

n=10
for machine in "${machines[@]}"; do
    ns=$prefix-$machine
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # The pair is made in the machine and its peer moved to the hub.
    ip -n "$ns" link add eth0 type veth peer name "v-$machine" netns "$hub"
    ip -n "$ns" addr add "10.77.0.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$hub" link set "v-$machine" master br0
    ip -n "$hub" link set "v-$machine" up
    echo "$machine 10.77.0.$n $ns"
    n=$((n + 1))
done
