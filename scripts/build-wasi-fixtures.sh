#!/usr/bin/env bash
# Rebuilds the WASI test programs tests/wasi/*.c and the benchmark workloads
# crates/bench/wasi/*.c into the committed .wasm files beside them, so that the
# test suite and the benchmarks need no C compiler.
#
# Needs zig's clang and wasi-libc: `pip install ziglang` (0.17.1 built the
# committed fixtures). Afterwards run scripts/bless-wasi-expected.sh if the
# programs' output changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! python3 -m ziglang version >/dev/null 2>&1; then
    echo "error: zig is not installed; run: pip install ziglang" >&2
    exit 1
fi
for dir in tests/wasi crates/bench/wasi; do
    cd "$root/$dir"
    for source in *.c; do
        program="${source%.c}.wasm"
        echo "building $dir/$program"
        # -O2 and stripped: small fixtures; wasm32-wasi targets WASI preview1.
        python3 -m ziglang cc -target wasm32-wasi -O2 -s -Wall -Werror -I. "$source" -o "$program"
    done
done
