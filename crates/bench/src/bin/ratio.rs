//! Prints a markdown table of Ferrite's and wasmi's median wall time per
//! workload and their ratio, plus the geometric mean of the ratios.
//!
//! ```text
//! cargo run --release -p ferrite-bench --bin ratio [-- RUNS]
//! ```
//!
//! Method: each engine instantiates the workload once and is checked to return
//! the same result; after one warm-up call each, the engines run the workload
//! `RUNS` times (default 11) alternately, so that a burst of load from other
//! processes hits both about equally, and the table reports the median of each.
//! On a shared machine the ratios are more trustworthy than the absolute times.

use ferrite_bench::{BenchError, FerriteRunner, WasmiRunner, Workload, WORKLOADS};
use std::time::{Duration, Instant};

const RUNS_DEFAULT: usize = 11;
/// Bounds the run count given on the command line.
const RUNS_MAX: usize = 1_000;

fn main() -> Result<(), BenchError> {
    let runs = match std::env::args().nth(1) {
        None => RUNS_DEFAULT,
        Some(arg) => arg
            .parse()
            .map_err(|e| format!("RUNS must be a count: {arg:?}: {e}"))?,
    };
    if runs == 0 || runs > RUNS_MAX {
        return Err(format!("RUNS must be between 1 and {RUNS_MAX}, got {runs}").into());
    }
    println!("| workload | ferrite ms | wasmi ms | ratio (ferrite/wasmi) |");
    println!("|----------|-----------:|---------:|----------------------:|");
    let mut log_ratio_sum = 0.0;
    for workload in WORKLOADS {
        let (ferrite, wasmi) = measure(workload, runs)?;
        let ratio = ferrite.as_secs_f64() / wasmi.as_secs_f64();
        log_ratio_sum += ratio.ln();
        println!(
            "| {} ({}) | {:.1} | {:.1} | {ratio:.2} |",
            workload.name,
            workload.arg,
            ferrite.as_secs_f64() * 1e3,
            wasmi.as_secs_f64() * 1e3,
        );
    }
    let geomean = (log_ratio_sum / WORKLOADS.len() as f64).exp();
    println!("| **geometric mean** | | | **{geomean:.2}** |");
    println!();
    println!("median of {runs} alternating runs per engine");
    Ok(())
}

/// The median wall time of `runs` calls in Ferrite and in wasmi.
fn measure(workload: &Workload, runs: usize) -> Result<(Duration, Duration), BenchError> {
    let wasm = workload.wasm();
    let mut ferrite = FerriteRunner::new(&wasm)?;
    let mut wasmi = WasmiRunner::new(&wasm)?;
    // The warm-up calls double as the agreement check.
    let expected = wasmi.run(workload.arg)?;
    let actual = ferrite.run(workload.arg)?;
    assert_eq!(
        actual, expected,
        "{}: ferrite and wasmi disagree",
        workload.name
    );
    let mut times_ferrite = Vec::with_capacity(runs);
    let mut times_wasmi = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let result = ferrite.run(workload.arg)?;
        times_ferrite.push(start.elapsed());
        assert_eq!(
            result, expected,
            "{}: ferrite is not deterministic",
            workload.name
        );
        let start = Instant::now();
        let result = wasmi.run(workload.arg)?;
        times_wasmi.push(start.elapsed());
        assert_eq!(
            result, expected,
            "{}: wasmi is not deterministic",
            workload.name
        );
    }
    Ok((median(&mut times_ferrite), median(&mut times_wasmi)))
}

/// The median (the upper one for an even count) of a non-empty sample.
fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}
