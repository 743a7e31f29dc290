//! WASI programs of our own (C, compiled to wasm32-wasi, under `tests/wasi/`),
//! run by the `ferrite` binary, their stdout and exit status compared with
//! `tests/wasi/expected/`. The cases are listed in `tests/wasi/cases.txt`.
//!
//! `FERRITE_WASI_RUNTIME=/path/to/wasmtime` runs the cases whose expected output
//! came from wasmtime with that runtime instead, to check they still agree;
//! `FERRITE_WASI_BLESS=1` rewrites the expected files from the runtime's output
//! (`scripts/bless-wasi-expected.sh` does both for every case).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi")
}

/// One line of `cases.txt`.
#[derive(Debug)]
struct Case {
    name: String,
    program: String,
    stdin: Option<String>,
    expected_from: String,
    options: Vec<String>,
    args: Vec<String>,
}

fn words(field: &str) -> Vec<String> {
    field
        .split_whitespace()
        .map(|word| {
            if word == "\\e" {
                String::new()
            } else {
                word.replace("\\s", " ")
            }
        })
        .collect()
}

fn case(name: &str) -> Case {
    let manifest = fs::read_to_string(fixtures().join("cases.txt")).expect("cases.txt");
    let line = manifest
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .find(|line| line.split('|').next().map(str::trim) == Some(name))
        .unwrap_or_else(|| panic!("no case `{name}` in cases.txt"));
    let fields: Vec<&str> = line.split('|').map(str::trim).collect();
    assert_eq!(fields.len(), 6, "case `{name}`: expected 6 fields: {line}");
    Case {
        name: fields[0].to_owned(),
        program: fields[1].to_owned(),
        stdin: (fields[2] != "-").then(|| fields[2].to_owned()),
        expected_from: fields[3].to_owned(),
        options: words(fields[4]),
        args: words(fields[5]),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fresh working directory for one run of `case`.
fn workdir(case: &Case) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wasi-cases")
        .join(format!("{}-{}-{unique}", case.name, std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let seed = fixtures().join("data").join(&case.name);
    if seed.is_dir() {
        copy_tree(&seed, &root.join("scratch"));
    } else {
        fs::create_dir_all(root.join("scratch")).expect("scratch");
    }
    fs::create_dir_all(root.join("outside")).expect("outside");
    fs::write(root.join("outside/secret.txt"), "secret\n").expect("secret");
    fs::copy(fixtures().join(&case.program), root.join(&case.program)).expect("program");
    root
}

/// Runs `case` with `runtime`; its stdout followed by the exit status line.
fn run(case: &Case, runtime: &Path) -> String {
    let root = workdir(case);
    let stdin = match &case.stdin {
        Some(file) => {
            Stdio::from(fs::File::open(fixtures().join("data").join(file)).expect("stdin"))
        }
        None => Stdio::null(),
    };
    let output = Command::new(runtime)
        .current_dir(&root)
        .arg("run")
        .args(&case.options)
        .arg(&case.program)
        .args(&case.args)
        .stdin(stdin)
        .output()
        .expect("runtime runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = output
        .status
        .code()
        .map_or_else(|| "killed by a signal".to_owned(), |code| code.to_string());
    text.push_str("--- exit status ");
    text.push_str(&status);
    text.push('\n');
    let _ = fs::remove_dir_all(&root);
    text
}

/// Runs a case and compares with its expected file (or rewrites it).
fn check(name: &str) {
    let case = case(name);
    let other_runtime = std::env::var_os("FERRITE_WASI_RUNTIME").map(PathBuf::from);
    let runtime = match &other_runtime {
        Some(runtime) if case.expected_from == "wasmtime" => runtime.clone(),
        Some(_) => {
            println!("case `{name}` is ferrite's own; not run with FERRITE_WASI_RUNTIME");
            return;
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_ferrite")),
    };
    let actual = run(&case, &runtime);
    let expected_path = fixtures().join("expected").join(format!("{name}.out"));
    if std::env::var_os("FERRITE_WASI_BLESS").is_some() {
        // Each expected file comes from the runtime the manifest names.
        let ours = other_runtime.is_none() && case.expected_from == "ferrite";
        if ours || other_runtime.is_some() {
            fs::write(&expected_path, &actual).expect("write expected");
        }
        return;
    }
    let expected = fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
    if actual != expected {
        let mut diff = String::new();
        for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
            if a != e {
                let line = i + 1;
                let _ = writeln!(diff, "line {line}:\n  expected: {e}\n  actual:   {a}");
            }
        }
        panic!(
            "case `{name}` with {}: output differs from {}\n{diff}\n--- actual:\n{actual}",
            runtime.display(),
            expected_path.display()
        );
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

cases!(
    demo,
    fs,
    escape,
    clocks,
    stdio,
    stdio_exit_code,
    args,
    trap,
    divergent
);

#[test]
fn every_case_has_a_test_and_a_fixture() {
    let manifest = fs::read_to_string(fixtures().join("cases.txt")).expect("cases.txt");
    let this = include_str!("wasi.rs");
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let case = case(line.split('|').next().expect("name").trim());
        assert!(
            fixtures().join(&case.program).is_file(),
            "{} missing",
            case.program
        );
        let source = case.program.replace(".wasm", ".c");
        assert!(fixtures().join(&source).is_file(), "{source} missing");
        let listed = this
            .split("cases!(")
            .nth(1)
            .and_then(|list| list.split(')').next())
            .is_some_and(|list| list.split(',').any(|name| name.trim() == case.name));
        assert!(listed, "case `{}` has no test", case.name);
    }
}

fn ferrite_wat(wat: &str, options: &[&str]) -> std::process::Output {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasi-wat");
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!(
        "{}-{}.wat",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, wat).expect("wat");
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .arg("run")
        .args(options)
        .arg(&path)
        .output()
        .expect("ferrite runs")
}

#[track_caller]
fn assert_error(output: &std::process::Output, status: i32, message: &str) {
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: {message}\n")
    );
    assert_eq!(output.status.code(), Some(status));
}

#[test]
fn unknown_wasi_function_is_a_link_error() {
    let wat = r#"(module (import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32)))
        (func (export "_start")))"#;
    assert_error(
        &ferrite_wat(wat, &[]),
        1,
        "module imports wasi_snapshot_preview1::fd_frobnicate, which is not a WASI preview1 function",
    );
}

#[test]
fn wasi_function_with_wrong_type_is_a_link_error() {
    let wat = r#"(module (import "wasi_snapshot_preview1" "fd_close" (func (param i64) (result i32)))
        (func (export "_start")))"#;
    assert_error(
        &ferrite_wat(wat, &[]),
        1,
        "module imports wasi_snapshot_preview1::fd_close with type (i64) -> (i32), but WASI \
         preview1 defines it as (i32) -> (i32)",
    );
}

/// `proc_exit(N)` from a hand-written module: status N below 126, else an error.
const EXIT_WAT: &str = r#"(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start") (param) i32.const STATUS call $exit unreachable))"#;

#[test]
fn proc_exit_status_becomes_the_exit_status() {
    for status in [0, 1, 7, 125] {
        let output = ferrite_wat(&EXIT_WAT.replace("STATUS", &status.to_string()), &[]);
        assert_eq!(output.status.code(), Some(status), "{output:?}");
        assert!(output.stderr.is_empty());
    }
    assert_error(
        &ferrite_wat(&EXIT_WAT.replace("STATUS", "126"), &[]),
        1,
        "exit with invalid exit status outside of [0..126)",
    );
}

#[test]
fn proc_exit_from_the_start_function_and_invoke() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (func $init i32.const 9 call $exit)
        (start $init)
        (func (export "_start")))"#;
    assert_eq!(ferrite_wat(wat, &[]).status.code(), Some(9));
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (func (export "f") (result i32) i32.const 4 call $exit i32.const 0))"#;
    let output = ferrite_wat(wat, &["--invoke", "f"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        output.stdout.is_empty(),
        "no results are printed after proc_exit"
    );
}

#[test]
fn missing_preopen_directory() {
    let output = ferrite_wat(
        &EXIT_WAT.replace("STATUS", "0"),
        &["--dir", "/nonexistent/dir"],
    );
    assert_error(
        &output,
        1,
        "cannot open directory /nonexistent/dir: No such file or directory (os error 2)",
    );
}

#[test]
fn malformed_dir_option_is_a_usage_error() {
    let output = ferrite_wat(&EXIT_WAT.replace("STATUS", "0"), &["--dir", "::/guest"]);
    assert_error(&output, 2, "--dir `::/guest`: expected HOST or HOST::GUEST");
}

#[test]
fn help_documents_the_wasi_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["run", "--help"])
        .output()
        .expect("ferrite runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--dir <HOST[::GUEST]>",
        "--env <NAME[=VAL]>",
        "--argv0 <NAME>",
        "proc_exit",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}
