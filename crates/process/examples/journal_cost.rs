//! The file journal's cost (issue 8, item 1), measured side by side in one run
//! and printed as a Markdown table for `docs/performance.md`: a persistent
//! process that appends a line to a file (append mode, flushed each time),
//! checkpointed every 100 ms of running, with the journal that rolls its files
//! back and without it. Two paces: a line a millisecond (the program sleeps
//! between lines) and as fast as it can (every write pays the journal's check).
//!
//! ```sh
//! cargo run --release -p ferrite-process --example journal_cost [DIR]
//! ```
//!
//! The directory (default `target/journal-cost`, on the repository's disk)
//! holds the store, the journal and the files; it is emptied first. Runs of the
//! two variants alternate, and the median of `RUNS` is reported.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{LocalStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
use ferrite_wasi::{Preopen, WasiConfig};
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const RUNS: usize = 5;
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// What one run measured.
struct Run {
    elapsed: Duration,
    checkpoints: u64,
    records: u64,
    syncs: u64,
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/journal-cost"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let module =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi/appender.wasm"))
            .unwrap();
    println!("| workload | no journal | journal | ratio | journal records, syncs per run | checkpoints per run |");
    println!("|---|---|---|---|---|---|");
    for (workload, (label, lines, pause_us)) in [
        ("2000 lines, one a millisecond", "2000", "1000"),
        ("200000 lines, no pause", "200000", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut plain, mut journaled) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let work = dir.join(format!("{workload}-{run}"));
            plain.push(measure(&work, &module, &[lines, pause_us], false));
            journaled.push(measure(&work, &module, &[lines, pause_us], true));
            eprintln!(
                "{label}: run {run}: {:.3} s without, {:.3} s with the journal",
                plain[run].elapsed.as_secs_f64(),
                journaled[run].elapsed.as_secs_f64()
            );
        }
        let median = |runs: &mut Vec<Run>| {
            runs.sort_by_key(|run| run.elapsed);
            runs.swap_remove(runs.len() / 2)
        };
        let (plain, journaled) = (median(&mut plain), median(&mut journaled));
        println!(
            "| {label} | {:.3} s | {:.3} s | {:.3} | {}, {} | {} |",
            plain.elapsed.as_secs_f64(),
            journaled.elapsed.as_secs_f64(),
            journaled.elapsed.as_secs_f64() / plain.elapsed.as_secs_f64(),
            journaled.records,
            journaled.syncs,
            journaled.checkpoints,
        );
    }
}

/// Runs the appender once as a persistent process, with or without journal.
fn measure(dir: &Path, module: &[u8], args: &[&str], journal: bool) -> Run {
    let work = dir.join(if journal { "journal" } else { "plain" });
    let files = work.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let backend: Arc<dyn StorageBackend> = Arc::new(LocalStore::open(work.join("store")).unwrap());
    let mut wasi_args = vec!["appender".to_string()];
    wasi_args.extend(args.iter().map(ToString::to_string));
    let launch = Launch {
        wasi: WasiConfig {
            args: wasi_args,
            env: Vec::new(),
            preopens: vec![Preopen {
                host_path: std::path::absolute(&files).unwrap(),
                guest_path: "/out".into(),
            }],
        },
        export: None,
        args: Vec::new(),
        ..Launch::invoke("appender", module.to_vec(), "_start", Vec::new())
    };
    let options = ProcessOptions {
        journal_dir: journal.then(|| work.join("journal")),
        ..ProcessOptions::default()
    };
    let began = Instant::now();
    let mut process = Process::start(backend, None, launch, &options).unwrap();
    let flag = process.interrupt_handle();
    let done = Arc::new(AtomicBool::new(false));
    let timer = {
        let (flag, done) = (flag.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                flag.store(true, Ordering::Relaxed);
            }
        })
    };
    let outcome = loop {
        match process.run().unwrap() {
            Outcome::Interrupted => {
                flag.store(false, Ordering::Relaxed);
                process.checkpoint().unwrap();
            }
            other => break other,
        }
    };
    process.finish(&outcome).unwrap();
    let elapsed = began.elapsed();
    done.store(true, Ordering::Relaxed);
    timer.join().unwrap();
    assert!(
        matches!(outcome, Outcome::Exited(0) | Outcome::Returned(_)),
        "{outcome:?}"
    );
    let stats = process.stats();
    let journal_stats = process.journal_stats().unwrap_or_default();
    Run {
        elapsed,
        checkpoints: stats.checkpoints,
        records: journal_stats.records,
        syncs: journal_stats.syncs,
    }
}
