//! Files roll back with the process: a named process killed with `kill -9` and
//! resumed leaves the files of its preopened directories exactly as an
//! uninterrupted run does (appends are not done twice, truncations, renames,
//! creations and removals after the checkpoint are undone first).

#![allow(clippy::unwrap_used)]

#[path = "../../wasi/tests/support/tree.rs"]
mod support;
use support::tree;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/wasi")
        .join(name)
        .display()
        .to_string()
}

/// A fresh, empty directory.
fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("files-tests")
        .join(format!("{}-{unique}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn ferrite(args: &[&str]) -> Output {
    Command::new(FERRITE).args(args).output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(FERRITE)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// The regression of issue 8: a program appending to a file (append mode),
/// killed after the checkpoint and resumed, appended the lines written since
/// the checkpoint a second time.
#[test]
fn appends_after_the_checkpoint_are_not_done_twice() {
    let base = temp_dir("appends");
    let (out, store) = (base.join("out"), base.join("store"));
    fs::create_dir_all(&out).unwrap();
    let dir = format!("{}::/out", out.display());
    let store = store.to_str().unwrap();
    let appender = fixture("appender.wasm");
    let mut child = spawn(&[
        "run",
        "--store",
        store,
        "--name",
        "a",
        "--checkpoint-every",
        "150ms",
        "--dir",
        &dir,
        &appender,
        "600",
    ]);
    let log = out.join("log.txt");
    let began = Instant::now();
    while lines(&log) < 250 {
        assert!(began.elapsed() < Duration::from_mins(1), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = ferrite(&["resume", "--store", store, "a"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let expected: String = (1..=600).fold(String::new(), |mut all, i| {
        writeln!(all, "line {i}").unwrap();
        all
    });
    assert_eq!(fs::read_to_string(&log).unwrap(), expected);
    // `rm` takes the process's journal with it.
    let journal = base.join("store/journals/a");
    assert!(journal.is_dir());
    let removed = ferrite(&["rm", "--store", store, "a"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(!journal.exists());
    fs::remove_dir_all(base).unwrap();
}

/// The "done when" of issue 8, in the test suite: a program that appends to a
/// log, rewrites a result file, replaces a state file by renaming, overwrites
/// slots of a binary file in place, and creates and removes directories, killed
/// with `kill -9` at twenty seeded random moments and resumed each time, exits
/// with the uninterrupted run's status and leaves exactly its files.
#[test]
fn a_program_killed_twenty_times_leaves_the_files_of_an_uninterrupted_run() {
    const ROUNDS: &str = "300";
    let base = temp_dir("ledger");
    let (plain, kept) = (base.join("plain"), base.join("kept"));
    fs::create_dir_all(&plain).unwrap();
    fs::create_dir_all(&kept).unwrap();
    let ledger = fixture("ledger.wasm");
    let uninterrupted = ferrite(&[
        "run",
        "--dir",
        &format!("{}::/out", plain.display()),
        &ledger,
        ROUNDS,
    ]);
    assert!(
        text(&uninterrupted.stdout).contains("done: "),
        "{}",
        text(&uninterrupted.stderr)
    );

    let store = base.join("store");
    let store = store.to_str().unwrap();
    let dir = format!("{}::/out", kept.display());
    let mut child = spawn(&[
        "run",
        "--store",
        store,
        "--name",
        "ledger",
        "--checkpoint-every",
        "40ms",
        "--dir",
        &dir,
        &ledger,
        ROUNDS,
    ]);
    // The first kill must come after the first checkpoint: a process killed
    // while it starts has nothing to resume (on a loaded machine that takes
    // longer than the first delay).
    let manifests = base.join("store/procs/ledger/manifests");
    let began = Instant::now();
    while fs::read_dir(&manifests).map_or(0, |dir| {
        dir.filter(|e| e.as_ref().unwrap().file_name().len() == 16)
            .count()
    }) == 0
    {
        assert!(
            began.elapsed() < Duration::from_mins(1),
            "no first checkpoint"
        );
        sleep(Duration::from_millis(5));
    }
    let mut seed: u64 = 0x5eed_f11e;
    let mut kills = 0;
    for _ in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        sleep(Duration::from_millis(30 + (seed >> 33) % 120));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = spawn(&["resume", "--store", store, "ledger"]);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        uninterrupted.status.code(),
        "after {kills} kills: {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(kills >= 10, "only {kills} kills: the run ended too soon");
    let (expected, found) = (tree(&plain), tree(&kept));
    let names =
        |t: &[(String, Option<Vec<u8>>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&found), names(&expected), "after {kills} kills");
    assert!(found == expected, "contents differ after {kills} kills");
    fs::remove_dir_all(base).unwrap();
}
