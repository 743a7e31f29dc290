#!/usr/bin/env bash
# The live-migration numbers of docs/performance.md, between machines: three
# network namespaces (scripts/netns/up.sh) for a heap server and machines a
# and b. A process whose heap is MIB MiB and which keeps dirtying RATE MiB/s
# (tests/wasi/mover.wasm) runs on a for WARMUP seconds; then `ferrite resume
# --take-over` on b moves it. Prints a's and b's reports (downtime, rounds and
# where each round's pause went, when b took the lease,
# time since the request), then a plain copy of the first round's pages (the
# heap that was dirty when b asked) from a to b over raw TCP on the same
# links, and checks that b ends with the uninterrupted run's output.
#
#     scripts/netns/migrate-numbers.sh [MIB [RATE [WARMUP]]]   (defaults 1024 64 20)
#
# Root only (ip netns); needs openssl for the test certificates. Builds the
# release binary first.
set -euo pipefail

mib=${1:-1024}
rate=${2:-64}
warmup=${3:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=fnum$$
say() { echo "migrate-numbers: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "needs root (ip netns)"
    exit 2
fi
command -v openssl >/dev/null || { say "needs openssl (apt-get install openssl)"; exit 2; }

(cd "$root" && cargo build --release -q -p ferrite-cli)
ferrite=$root/target/release/ferrite
mover=$root/tests/wasi/mover.wasm
work=$(mktemp -d "${TMPDIR:-/tmp}/ferrite-migrate-numbers.XXXXXX")
cleanup() {
    "$here/down.sh" "$prefix" 2>/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

"$here/up.sh" "$prefix" server a b >/dev/null
server_ip=10.77.0.10 b_ip=10.77.0.12
on() { local machine=$1; shift; ip netns exec "$prefix-$machine" "$@"; }

# A private CA and a certificate for the server's address.
(
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj /CN=ferrite-numbers-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout server.key -out server.csr -subj "/CN=$server_ip" 2>/dev/null
    printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n' "$server_ip" >ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext -out server.pem 2>/dev/null
)
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "t1 $(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$work/tokens"

on server "$ferrite" serve --listen "$server_ip:7421" --data "$work/data" \
    --tokens "$work/tokens" --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
    --report-every 0 2>"$work/server.err" &
on a bash -c "for i in \$(seq 100); do (echo >/dev/tcp/$server_ip/7421) 2>/dev/null && exit 0; sleep 0.1; done; exit 1" \
    || { say "the server did not start:"; cat "$work/server.err" >&2; exit 1; }

# Long enough to outlast the warm-up and the move.
steps=$(( (warmup + 30) * rate * 256 ))
say "the uninterrupted run ($mib MiB heap, $steps steps, unpaced)"
mkdir -p "$work/expected" "$work/out"
"$ferrite" run --dir "$work/expected::/out" "$mover" "$mib" 0 "$steps" >"$work/expected.out"

url=ferrite://$server_ip:7421/t1
store=(--store "$url" --ca-cert "$work/ca.pem")
say "a runs the process, dirtying $rate MiB/s of its $mib MiB heap, for $warmup s"
on a env FERRITE_TOKEN="$token" HOME="$work/home-a" "$ferrite" run --name big --stats "${store[@]}" \
    --cache-dir "$work/cache-a" --dir "$work/out::/out" "$mover" "$mib" "$rate" "$steps" \
    >"$work/a.out" 2>"$work/a.err" &
runner_a=$!
sleep "$warmup"
say "b takes it over"
on b env FERRITE_TOKEN="$token" HOME="$work/home-b" "$ferrite" resume big --take-over --stats \
    "${store[@]}" --cache-dir "$work/cache-b" >"$work/b.out" 2>"$work/b.err" || {
    cat "$work/b.err" >&2
    exit 1
}
wait "$runner_a" || { say "a failed:"; cat "$work/a.err" >&2; exit 1; }

echo "== a"
grep -E "moved to|^  round|^  hand-over" "$work/a.err"
echo "== b"
grep -E "taken over|take-over|downtime|heap server|local cache|resume " "$work/b.err"
if cmp -s "$work/b.out" "$work/expected.out"; then
    echo "result: $(cat "$work/b.out") (the uninterrupted run's)"
else
    say "b's result differs from the uninterrupted run's:"
    cat "$work/b.out" "$work/expected.out" >&2
    exit 1
fi

# A plain copy of the heap that was dirty when b asked (round 1) from a to b.
first_round=$(sed -n 's/.*rounds: \([0-9]*\).*/\1/p' "$work/b.err")
bytes=$(( ${first_round:-0} * 4096 ))
receiver='
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7500)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    n += len(d)
c.sendall(b"k"); print(n)'
sender='
import socket, sys, time
n = int(sys.argv[2]); block = bytes(1 << 20); t = time.monotonic()
c = socket.create_connection((sys.argv[1], 7500)); left = n
while left > 0:
    k = min(left, len(block)); c.sendall(block[:k]); left -= k
c.shutdown(socket.SHUT_WR); c.recv(1)
print("%.3f" % (time.monotonic() - t))'
on b python3 -c "$receiver" "$b_ip" >"$work/recv.out" &
receiver_pid=$!
until grep -q ready "$work/recv.out" 2>/dev/null; do sleep 0.05; done
seconds=$(on a python3 -c "$sender" "$b_ip" "$bytes")
wait "$receiver_pid"
echo "== plain copy of the first round ($first_round pages, $((bytes >> 20)) MiB) from a to b over raw TCP: $seconds s"
