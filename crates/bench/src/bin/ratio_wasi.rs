//! Prints a markdown table of Ferrite's and wasmi's median wall time per C
//! workload (`crates/bench/wasi/*.wasm`, WASI commands) and their ratio, plus the
//! geometric mean of the ratios.
//!
//! ```text
//! cargo run --release -p ferrite-bench --bin ratio_wasi [-- RUNS [SCALE]]
//! ```
//!
//! Method as in `ratio`: each engine decodes and translates the module once; a
//! run instantiates it with a fresh WASI context (stdout captured in memory) and
//! runs `_start` to the end. Both engines must print the same checksum line and
//! exit with status 0. After one warm-up run each (the agreement check), the
//! engines run each workload `RUNS` times (default 3) alternately and the table
//! reports the median of each. SCALE (default 1) is the programs' argument.

use ferrite_bench::{
    wasi::{CWorkload, CommandOutput, FerriteCommand, WasmiCommand, C_WORKLOADS},
    BenchError,
};
use std::time::{Duration, Instant};

const RUNS_DEFAULT: usize = 3;
/// Bounds the run count given on the command line.
const RUNS_MAX: usize = 100;
/// Bounds the scale given on the command line (the work grows linearly with it).
const SCALE_MAX: u32 = 100;

fn main() -> Result<(), BenchError> {
    let runs = parse_arg(1, RUNS_DEFAULT, RUNS_MAX, "RUNS")?;
    let scale = parse_arg(2, 1, SCALE_MAX as usize, "SCALE")?.to_string();
    println!("| workload | ferrite ms | wasmi ms | ratio (ferrite/wasmi) |");
    println!("|----------|-----------:|---------:|----------------------:|");
    let mut log_ratio_sum = 0.0;
    for workload in C_WORKLOADS {
        let (ferrite, wasmi) = measure(workload, &scale, runs)?;
        let ratio = ferrite.as_secs_f64() / wasmi.as_secs_f64();
        log_ratio_sum += ratio.ln();
        println!(
            "| {} | {:.0} | {:.0} | {ratio:.2} |",
            workload.name,
            ferrite.as_secs_f64() * 1e3,
            wasmi.as_secs_f64() * 1e3,
        );
    }
    let geomean = (log_ratio_sum / C_WORKLOADS.len() as f64).exp();
    println!("| **geometric mean** | | | **{geomean:.2}** |");
    println!();
    println!("median of {runs} alternating runs per engine, scale {scale}");
    Ok(())
}

/// The command-line argument at `index`, a count from 1 to `max`, or `default`.
fn parse_arg(index: usize, default: usize, max: usize, name: &str) -> Result<usize, BenchError> {
    let value = match std::env::args().nth(index) {
        None => default,
        Some(arg) => arg
            .parse()
            .map_err(|e| format!("{name} must be a count: {arg:?}: {e}"))?,
    };
    if value == 0 || value > max {
        return Err(format!("{name} must be between 1 and {max}, got {value}").into());
    }
    Ok(value)
}

/// The median wall time of `runs` runs in Ferrite and in wasmi.
fn measure(
    workload: &CWorkload,
    scale: &str,
    runs: usize,
) -> Result<(Duration, Duration), BenchError> {
    let ferrite = FerriteCommand::new(workload.wasm, workload.name, &[scale])?;
    let wasmi = WasmiCommand::new(workload.wasm, workload.name, &[scale])?;
    // The warm-up runs double as the agreement check.
    let expected = wasmi.run()?;
    assert_eq!(expected.status, 0, "{}: wasmi exit status", workload.name);
    assert!(
        expected.stdout.starts_with(workload.name.as_bytes()),
        "{}: unexpected output {:?}",
        workload.name,
        String::from_utf8_lossy(&expected.stdout)
    );
    check(workload, "ferrite", &ferrite.run()?, &expected);
    let mut times_ferrite = Vec::with_capacity(runs);
    let mut times_wasmi = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let output = ferrite.run()?;
        times_ferrite.push(start.elapsed());
        check(workload, "ferrite", &output, &expected);
        let start = Instant::now();
        let output = wasmi.run()?;
        times_wasmi.push(start.elapsed());
        check(workload, "wasmi", &output, &expected);
    }
    Ok((median(&mut times_ferrite), median(&mut times_wasmi)))
}

fn check(workload: &CWorkload, engine: &str, actual: &CommandOutput, expected: &CommandOutput) {
    assert_eq!(
        actual,
        expected,
        "{}: {engine} disagrees: {:?} vs {:?}",
        workload.name,
        String::from_utf8_lossy(&actual.stdout),
        String::from_utf8_lossy(&expected.stdout)
    );
}

/// The median (the upper one for an even count) of a non-empty sample.
fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
