//! Moving processes between runners that share a store in object storage,
//! end to end through the `ferrite` binary, against the project's Ceph RADOS
//! Gateway (`scripts/s3/up.sh`; these tests fail, never skip, without its
//! `AWS_*` variables): a live take-over while the process runs, two
//! take-overs at once, a cold move with `ferrite checkpoint --stop`, and a
//! checkpoint asked for through the store.
//!
//! Every run is of `tests/wasi/mover.wasm`, which keeps its heap dirty and
//! appends a numbered line to a file after every batch of steps: its last
//! line says whether the file holds each batch once and in order (two runners
//! at once would repeat batches) and a checksum of everything it computed, so
//! each test compares it with an uninterrupted run's.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

#[path = "support/mover.rs"]
mod mover;
use mover::{mover, wait_for_batches};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");

#[path = "support/gateway.rs"]
mod gateway;
use gateway::fresh_url;

/// The mover's heap (MiB), larger than the physical heap of the runs.
const MOVER_MIB: &str = "48";
const PHYSICAL: &str = "24MiB";
/// Its pace (MiB dirtied per second) and length (4 KiB pages written): about
/// 12 s when paced.
const MOVER_RATE: &str = "16";
const MOVER_STEPS: &str = "50000";

fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("migrate-tests")
        .join(format!(
            "{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output of an uninterrupted run (pace 0: as fast as it goes).
fn expected() -> String {
    let out_dir = temp_dir("expected");
    let out = Command::new(FERRITE)
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/out", out_dir.display()))
        .args([mover().to_str().unwrap(), MOVER_MIB, "0", MOVER_STEPS])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("log ok"), "{stdout}");
    stdout
}

/// One machine's runner options: the store and its own local cache.
struct Machine {
    url: String,
    cache: PathBuf,
}

impl Machine {
    fn new(url: &str, label: &str) -> Self {
        Self {
            url: url.to_string(),
            cache: temp_dir(label),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(FERRITE);
        command.args(args).args([
            "--store",
            &self.url,
            "--cache-dir",
            self.cache.to_str().unwrap(),
            "--lease",
            "3s",
        ]);
        command
    }

    /// Starts process `job` running the mover, its files in `out`.
    fn run_mover(&self, out: &Path) -> Child {
        self.command(&["run", "--name", "job", "--physical-heap", PHYSICAL])
            .arg("--dir")
            .arg(format!("{}::/out", out.display()))
            .args([
                mover().to_str().unwrap(),
                MOVER_MIB,
                MOVER_RATE,
                MOVER_STEPS,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

#[test]
fn a_running_process_moves_live_and_ends_as_if_it_never_moved() {
    let expected = expected();
    let url = fresh_url("take-over");
    let out = temp_dir("out");
    let (a, b) = (Machine::new(&url, "a"), Machine::new(&url, "b"));
    let runner_a = a.run_mover(&out);
    wait_for_batches(&out, 8);
    let taker = b.output(&["resume", "job", "--take-over", "--stats"]);
    let moved = runner_a.wait_with_output().unwrap();
    let (a_err, b_err) = (text(&moved.stderr), text(&taker.stderr));
    assert!(moved.status.success(), "A: {a_err}");
    assert!(a_err.contains("job moved to"), "A: {a_err}");
    assert!(
        text(&moved.stdout).is_empty(),
        "A must not finish the program"
    );
    assert!(taker.status.success(), "B: {b_err}");
    assert!(b_err.contains("taken over from"), "B: {b_err}");
    assert!(b_err.contains("downtime"), "B: {b_err}");
    assert!(b_err.contains("take-over     downtime"), "B: {b_err}");
    assert_eq!(text(&taker.stdout), expected, "B: {b_err}");
}

#[test]
fn of_two_take_overs_at_once_one_wins() {
    let expected = expected();
    let url = fresh_url("two-takers");
    let out = temp_dir("out");
    let (a, b, c) = (
        Machine::new(&url, "a"),
        Machine::new(&url, "b"),
        Machine::new(&url, "c"),
    );
    let runner_a = a.run_mover(&out);
    wait_for_batches(&out, 8);
    let takers = [
        b.spawn(&["resume", "job", "--take-over"]),
        c.spawn(&["resume", "job", "--take-over"]),
    ];
    let outputs: Vec<Output> = takers
        .into_iter()
        .map(|t| t.wait_with_output().unwrap())
        .collect();
    let moved = runner_a.wait_with_output().unwrap();
    assert!(moved.status.success(), "A: {}", text(&moved.stderr));
    let winners: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one taker runs the process: {:?}",
        outputs.iter().map(|o| text(&o.stderr)).collect::<Vec<_>>()
    );
    assert_eq!(text(&winners[0].stdout), expected);
    let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
    let loser_err = text(&loser.stderr);
    assert!(
        loser_err.contains("another take-over of process job is under way")
            || loser_err.contains("already running")
            || loser_err.contains("handed over to"),
        "{loser_err}"
    );
}

#[test]
fn a_process_stopped_through_the_store_resumes_on_another_machine() {
    let expected = expected();
    let url = fresh_url("cold");
    let out = temp_dir("out");
    let (a, b) = (Machine::new(&url, "a"), Machine::new(&url, "b"));
    let runner_a = a.run_mover(&out);
    wait_for_batches(&out, 8);
    // A checkpoint asked from elsewhere, and the process goes on.
    let asked = b.output(&["checkpoint", "job"]);
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    assert!(
        text(&asked.stdout).starts_with("checkpoint "),
        "{}",
        text(&asked.stdout)
    );
    let stop = b.output(&["checkpoint", "job", "--stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(text(&stop.stdout).contains("the process stopped"));
    let stopped = runner_a.wait_with_output().unwrap();
    assert_eq!(
        stopped.status.code(),
        Some(143),
        "{}",
        text(&stopped.stderr)
    );
    assert!(text(&stopped.stderr).contains("stopped on request"));
    let resumed = b.output(&["resume", "job"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(text(&resumed.stdout), expected);
    // Nothing runs it now: a checkpoint request is refused at once.
    let none = b.output(&["checkpoint", "job"]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("not running"),
        "{}",
        text(&none.stderr)
    );
}
