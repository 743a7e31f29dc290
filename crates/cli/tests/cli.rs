//! Scenarios for the `ferrite` binary: the shipped examples, value printing, traps,
//! and every way a run can be refused.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// wasmtime's status for a trap: 128 + SIGABRT on unix, 3 on Windows.
const TRAP_STATUS: i32 = if cfg!(windows) { 3 } else { 134 };

fn ferrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .output()
        .expect("ferrite runs")
}

fn example(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    root.to_str().expect("ASCII path").to_owned()
}

/// Writes `contents` to a fresh file ending in `name`; returns its path.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}-{unique}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("temp file");
    path
}

/// Runs `ferrite run [options] <wat in a temp file> [args]`.
fn run_wat(wat: &str, options: &[&str], args: &[&str]) -> Output {
    let path = temp_file("module.wat", wat.as_bytes());
    let path = path.to_str().expect("ASCII path");
    let mut all = vec!["run"];
    all.extend_from_slice(options);
    all.push(path);
    all.extend_from_slice(args);
    ferrite(&all)
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> &str {
    std::str::from_utf8(&output.stderr).expect("UTF-8 stderr")
}

/// Asserts a successful run that printed exactly `expected` and nothing on stderr.
#[track_caller]
fn assert_prints(output: &Output, expected: &str) {
    assert_eq!(stderr(output), "", "stderr");
    assert_eq!(stdout(output), expected, "stdout");
    assert_eq!(output.status.code(), Some(0), "status");
}

/// Asserts a refused run: status `code`, nothing on stdout, and exactly the one
/// line `error: <expected>` on stderr.
#[track_caller]
fn assert_error_line(output: &Output, code: i32, expected: &str) {
    assert_eq!(stderr(output), format!("error: {expected}\n"), "stderr");
    assert_eq!(stdout(output), "", "stdout");
    assert_eq!(output.status.code(), Some(code), "status");
}

/// Identity functions for every number type.
const ECHO: &str = r#"(module
    (func (export "i32") (param i32) (result i32) local.get 0)
    (func (export "i64") (param i64) (result i64) local.get 0)
    (func (export "f32") (param f32) (result f32) local.get 0)
    (func (export "f64") (param f64) (result f64) local.get 0)
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "nothing"))
    (memory (export "mem") 1))"#;

fn echo(func: &str, arg: &str) -> Output {
    run_wat(ECHO, &["--invoke", func], &[arg])
}

#[test]
fn example_fib() {
    assert_prints(
        &ferrite(&["run", "--invoke", "fib", &example("fib.wat"), "30"]),
        "832040\n",
    );
    assert_prints(
        &ferrite(&["run", "--invoke", "fib", &example("fib.wat"), "92"]),
        "7540113804746346429\n",
    );
    assert_prints(
        &ferrite(&[
            "run",
            "--invoke",
            "fib_recursive",
            &example("fib.wat"),
            "20",
        ]),
        "6765\n",
    );
}

#[test]
fn example_sieve() {
    let sieve = example("sieve.wat");
    assert_prints(
        &ferrite(&["run", "--invoke", "count_primes", &sieve, "100"]),
        "25\n",
    );
    assert_prints(
        &ferrite(&["run", "--invoke", "count_primes", &sieve, "2"]),
        "0\n",
    );
    assert_prints(
        &ferrite(&["run", "--invoke", "count_primes", &sieve, "100000"]),
        "9592\n",
    );
}

#[test]
fn example_multi_prints_one_result_per_line() {
    let multi = example("multi.wat");
    assert_prints(
        &ferrite(&["run", "--invoke", "divmod", &multi, "17", "5"]),
        "3\n2\n",
    );
    assert_prints(
        &ferrite(&["run", "--invoke", "divmod", &multi, "-17", "5"]),
        "-3\n-2\n",
    );
    assert_prints(
        &ferrite(&["run", "--invoke", "split", &multi, "-2.75"]),
        "-2\n-0.75\n-2.75\n",
    );
}

#[test]
fn example_trap_reports_reason_and_named_backtrace() {
    let output = ferrite(&[
        "run",
        "--invoke",
        "average",
        &example("trap.wat"),
        "10",
        "0",
    ]);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: wasm trap: integer divide by zero\n\
         wasm backtrace:\n    0: trap!divide\n    1: trap!average\n"
    );
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn example_trap_without_invoke_runs_start_export() {
    let output = ferrite(&["run", &example("trap.wat")]);
    assert_eq!(
        stderr(&output),
        "error: wasm trap: unreachable\n\
         wasm backtrace:\n    0: trap!check_invariant\n    1: trap!process\n    2: trap!_start\n"
    );
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn runaway_recursion_backtrace_is_truncated() {
    let output = ferrite(&[
        "run",
        "--max-call-depth",
        "1000",
        "--invoke",
        "runaway",
        &example("trap.wat"),
        "0",
    ]);
    let stderr = stderr(&output);
    assert!(stderr.starts_with("error: wasm trap: call stack exhausted\nwasm backtrace:\n"));
    assert!(stderr.contains("\n   31: trap!runaway\n  ... "), "{stderr}");
    assert!(stderr.ends_with(" more frames\n"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2 + 32 + 1);
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn integers_print_in_signed_decimal() {
    assert_prints(&echo("i32", "-5"), "-5\n");
    assert_prints(&echo("i32", "4294967295"), "-1\n");
    assert_prints(&echo("i32", "2147483648"), "-2147483648\n");
    assert_prints(&echo("i32", "0x7fffffff"), "2147483647\n");
    assert_prints(&echo("i32", "-0x10"), "-16\n");
    assert_prints(
        &echo("i64", "-9223372036854775808"),
        "-9223372036854775808\n",
    );
    assert_prints(&echo("i64", "9223372036854775807"), "9223372036854775807\n");
    assert_prints(&echo("i64", "18446744073709551615"), "-1\n");
    assert_prints(&echo("i64", "0x8000000000000000"), "-9223372036854775808\n");
}

#[test]
fn floats_print_as_rust_does() {
    assert_prints(&echo("f32", "1.5"), "1.5\n");
    assert_prints(&echo("f32", "-0"), "-0\n");
    assert_prints(&echo("f32", "0.1"), "0.1\n");
    assert_prints(&echo("f32", "inf"), "inf\n");
    assert_prints(&echo("f32", "-inf"), "-inf\n");
    assert_prints(&echo("f32", "nan"), "NaN\n");
    assert_prints(&echo("f32", "1e40"), "inf\n");
    assert_prints(&echo("f64", "0.1"), "0.1\n");
    assert_prints(&echo("f64", "-0.0"), "-0\n");
    assert_prints(&echo("f64", "NaN"), "NaN\n");
    assert_prints(&echo("f64", "1e21"), "1000000000000000000000\n");
    // The smallest subnormal: Rust prints every digit, never an exponent.
    assert_prints(
        &echo("f64", "5e-324"),
        &format!(
            "{}
",
            f64::from_bits(1)
        ),
    );
}

#[test]
fn multi_value_results_print_on_separate_lines() {
    let wat = r#"(module (func (export "all") (result i32 i64 f32 f64 f64)
        i32.const -1
        i64.const -9223372036854775808
        f32.const -0
        f64.const nan
        f64.const -inf))"#;
    assert_prints(
        &run_wat(wat, &["--invoke", "all"], &[]),
        "-1\n-9223372036854775808\n-0\nNaN\n-inf\n",
    );
}

#[test]
fn no_results_print_nothing() {
    assert_prints(&run_wat(ECHO, &["--invoke", "nothing"], &[]), "");
}

#[test]
fn start_function_runs_before_invoke() {
    let wat = r#"(module
        (global $ready (mut i32) (i32.const 0))
        (func $init (global.set $ready (i32.const 7)))
        (start $init)
        (func (export "ready") (result i32) global.get $ready))"#;
    assert_prints(&run_wat(wat, &["--invoke", "ready"], &[]), "7\n");
}

#[test]
fn start_function_trap_is_a_trap() {
    let wat = r#"(module (func $init unreachable) (start $init) (func (export "f")))"#;
    let output = run_wat(wat, &["--invoke", "f"], &[]);
    assert_eq!(
        stderr(&output),
        "error: wasm trap: unreachable\nwasm backtrace:\n    0: <module>!init\n"
    );
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn backtrace_without_names_uses_indices() {
    // A binary module without a name section.
    let wasm = wat::parse_str(r#"(module (func unreachable) (func (export "f") call 0))"#)
        .expect("valid text");
    let path = temp_file("anonymous.wasm", &wasm);
    let output = ferrite(&["run", "--invoke", "f", path.to_str().expect("ASCII path")]);
    assert_eq!(
        stderr(&output),
        "error: wasm trap: unreachable\nwasm backtrace:\n    \
         0: <module>!<wasm function 0>\n    1: <module>!<wasm function 1>\n"
    );
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn binary_modules_run() {
    let wasm = wat::parse_str(ECHO).expect("valid text");
    let path = temp_file("echo.wasm", &wasm);
    let output = ferrite(&[
        "run",
        "--invoke",
        "add",
        path.to_str().expect("ASCII path"),
        "2",
        "40",
    ]);
    assert_prints(&output, "42\n");
}

#[test]
fn call_depth_flag_limits_recursion() {
    let fib = example("fib.wat");
    let deep = [
        "run",
        "--max-call-depth",
        "10",
        "--invoke",
        "fib_recursive",
        &fib,
        "20",
    ];
    let output = ferrite(&deep);
    assert!(stderr(&output).starts_with("error: wasm trap: call stack exhausted\n"));
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
    let enough = [
        "run",
        "--max-call-depth",
        "25",
        "--invoke",
        "fib_recursive",
        &fib,
        "20",
    ];
    assert_prints(&ferrite(&enough), "6765\n");
}

#[test]
fn value_stack_flag_limits_recursion() {
    let wat = r#"(module (func $r (export "r") (param i32) (result i32)
        local.get 0 i32.eqz if (result i32) i32.const 0 else
        local.get 0 i32.const 1 i32.sub call $r i32.const 1 i32.add end))"#;
    assert_prints(&run_wat(wat, &["--invoke", "r"], &["5000"]), "5000\n");
    let output = run_wat(
        wat,
        &["--max-value-stack", "1024", "--invoke", "r"],
        &["5000"],
    );
    assert!(stderr(&output).starts_with("error: wasm trap: call stack exhausted\n"));
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn invalid_stack_limits_are_usage_errors() {
    let fib = example("fib.wat");
    assert_error_line(
        &ferrite(&["run", "--max-call-depth", "0", "--invoke", "fib", &fib, "1"]),
        2,
        "call depth limit must be between 1 and 16777216, got 0",
    );
    assert_error_line(
        &ferrite(&[
            "run",
            "--max-value-stack",
            "5",
            "--invoke",
            "fib",
            &fib,
            "1",
        ]),
        2,
        "value stack limit must be between 1024 and 1073741824 slots, got 5",
    );
    let output = ferrite(&[
        "run",
        "--max-call-depth",
        "lots",
        "--invoke",
        "fib",
        &fib,
        "1",
    ]);
    assert!(
        stderr(&output).starts_with("error: invalid value 'lots'"),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn missing_file() {
    assert_error_line(
        &ferrite(&["run", "/nonexistent/dir/module.wasm"]),
        1,
        "cannot read /nonexistent/dir/module.wasm: No such file or directory (os error 2)",
    );
}

#[test]
fn directory_instead_of_file() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let output = ferrite(&["run", dir]);
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with(&format!("error: cannot read {dir}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn malformed_binary_module() {
    let path = temp_file("bad.wasm", b"\0asm\x01\0\0\0\xff");
    assert_error_line(
        &ferrite(&["run", path.to_str().expect("ASCII path")]),
        1,
        "invalid module: malformed section id (at offset 0x8)",
    );
}

#[test]
fn malformed_text_module_names_file_and_position() {
    let path = temp_file("bad.wat", b"(module\n  (func i32.bogus))\n");
    let path = path.to_str().expect("ASCII path");
    let output = ferrite(&["run", path]);
    let stderr = stderr(&output);
    assert!(stderr.starts_with("error: malformed module: "), "{stderr}");
    assert!(stderr.contains(&format!("--> {path}:2:9\n")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stdout(&output), "");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn invalid_module_fails_validation() {
    let output = run_wat("(module (func (result i32) i64.const 1))", &[], &[]);
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: invalid module: type mismatch"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn simd_is_unsupported() {
    let wat = r#"(module (func (export "f") (result v128) v128.const i32x4 1 2 3 4))"#;
    let output = run_wat(wat, &["--invoke", "f"], &[]);
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: unsupported feature: simd"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn imports_are_refused_before_running() {
    let wat = r#"(module
        (import "env" "log" (func (param i32)))
        (import "env" "mem" (memory 1))
        (func (export "f")))"#;
    assert_error_line(
        &run_wat(wat, &["--invoke", "f"], &[]),
        1,
        "module imports env::log (function), which ferrite run cannot provide yet",
    );
    let wat = r#"(module (import "wasi_snapshot_preview1" "memory" (memory 1)))"#;
    assert_error_line(
        &run_wat(wat, &[], &[]),
        1,
        "module imports wasi_snapshot_preview1::memory (memory), which ferrite run cannot \
         provide yet",
    );
}

#[test]
fn unknown_export() {
    assert_error_line(
        &run_wat(ECHO, &["--invoke", "nope"], &[]),
        1,
        "module has no export named `nope`",
    );
}

#[test]
fn export_that_is_not_a_function() {
    assert_error_line(
        &run_wat(ECHO, &["--invoke", "mem"], &[]),
        1,
        "export `mem` is a memory, not a function",
    );
}

#[test]
fn no_start_export_without_invoke() {
    assert_error_line(
        &run_wat(ECHO, &[], &[]),
        1,
        "module has no _start export; use --invoke NAME",
    );
}

#[test]
fn args_without_invoke_go_to_the_program() {
    // Without --invoke, ARGS are the WASI program's arguments (issue 3): `_start`
    // runs (and here traps) whatever they are.
    let output = ferrite(&["run", &example("trap.wat"), "1", "--not-an-option"]);
    assert!(stderr(&output).starts_with("error: wasm trap: unreachable\n"));
    assert_eq!(output.status.code(), Some(TRAP_STATUS));
}

#[test]
fn wrong_argument_count() {
    assert_error_line(
        &run_wat(ECHO, &["--invoke", "add"], &["1"]),
        1,
        "invalid arguments for `add`: expected 2 arguments (i32, i32), got 1",
    );
    assert_error_line(
        &run_wat(ECHO, &["--invoke", "add"], &["1", "2", "3"]),
        1,
        "invalid arguments for `add`: expected 2 arguments (i32, i32), got 3",
    );
}

#[test]
fn bad_argument_text() {
    assert_error_line(
        &echo("i32", "twelve"),
        1,
        "invalid arguments for `i32`: argument 1 `twelve` is not a valid i32: expected a \
         decimal integer or 0x-prefixed hexadecimal integer",
    );
    assert_error_line(
        &echo("i32", "4294967296"),
        1,
        "invalid arguments for `i32`: argument 1 `4294967296` is out of range for i32 \
         (-2147483648 to 4294967295)",
    );
    assert_error_line(
        &echo("f64", "1.2.3"),
        1,
        "invalid arguments for `f64`: argument 1 `1.2.3` is not a valid f64: expected a \
         decimal number, nan, inf or -inf",
    );
}

#[test]
fn reference_parameters_cannot_be_given() {
    let wat = r#"(module (func (export "f") (param externref)))"#;
    assert_error_line(
        &run_wat(wat, &["--invoke", "f"], &["0"]),
        1,
        "invalid arguments for `f`: argument 1 has type externref, which cannot be given on \
         the command line",
    );
}

#[test]
fn argument_errors_come_before_the_start_function() {
    // The start function would trap; the argument error is reported instead.
    let wat = r#"(module (func $init unreachable) (start $init)
        (func (export "f") (param i32)))"#;
    assert_error_line(
        &run_wat(wat, &["--invoke", "f"], &["x"]),
        1,
        "invalid arguments for `f`: argument 1 `x` is not a valid i32: expected a decimal \
         integer or 0x-prefixed hexadecimal integer",
    );
}

#[test]
fn help_documents_the_run_options() {
    let output = ferrite(&["run", "--help"]);
    let help = stdout(&output);
    for needle in [
        "--invoke <NAME>",
        "--max-call-depth <N>",
        "--max-value-stack <N>",
        "<FILE>",
        "[ARGS]...",
        "134",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
    assert_eq!(output.status.code(), Some(0));

    let output = ferrite(&["--help"]);
    assert!(stdout(&output).contains("run"), "{}", stdout(&output));
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn version() {
    let output = ferrite(&["--version"]);
    assert_prints(&output, &format!("ferrite {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let output = ferrite(&[]);
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("Usage: ferrite"),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(2));
}
