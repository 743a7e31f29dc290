//! Persistent processes end to end, through the `ferrite` binary: `run --name`,
//! signals, `ferrite checkpoint`, `kill -9` at random moments, `resume`,
//! `resume --all`, corruption, and bounded physical heaps. The property checked
//! each time: the resumed run ends with the uninterrupted run's result.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A fresh, empty directory for a store (not created).
fn temp_store(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("persist-tests")
        .join(format!("{}-{unique}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn ferrite(args: &[&str]) -> Output {
    Command::new(FERRITE).args(args).output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(FERRITE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The churn example's arguments: steps and heap MiB. Long enough in a debug
/// build (about two seconds) to be interrupted many times.
const CHURN_STEPS: &str = "1500000";
const CHURN_MIB: &str = "4";

fn churn_expected() -> String {
    let churn = example("churn.wat");
    let out = ferrite(&[
        "run",
        "--invoke",
        "churn",
        churn.to_str().unwrap(),
        CHURN_STEPS,
        CHURN_MIB,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The number of committed manifests of process `name` (named by their epoch
/// in 16 hex digits; temporaries of a write in progress are not counted).
fn epochs(store: &Path, name: &str) -> usize {
    fs::read_dir(store.join("procs").join(name).join("manifests")).map_or(0, |dir| {
        dir.filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit())
        })
        .count()
    })
}

/// Waits until process `name` has at least `count` manifests.
fn wait_for_checkpoints(store: &Path, name: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while epochs(store, name) < count {
        assert!(Instant::now() < deadline, "no checkpoint of {name}");
        sleep(Duration::from_millis(5));
    }
}

fn churn_run_args<'a>(store: &'a str, name: &'a str, churn: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--store",
        store,
        "--name",
        name,
        "--physical-heap",
        "2MiB",
        "--checkpoint-every",
        "20ms",
        "--invoke",
        "churn",
        churn,
        CHURN_STEPS,
        CHURN_MIB,
    ]
}

#[test]
fn a_named_run_returns_and_a_resume_reports_the_same_outcome() {
    let store = temp_store("named");
    let store = store.to_str().unwrap();
    let fib = example("fib.wat");
    let out = ferrite(&[
        "run",
        "--store",
        store,
        "--name",
        "fib",
        "--invoke",
        "fib",
        fib.to_str().unwrap(),
        "25",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "75025\n");
    let ps = text(&ferrite(&["ps", "--store", store]).stdout);
    assert!(ps.contains("fib") && ps.contains("returned"), "{ps}");
    let again = ferrite(&["resume", "--store", store, "fib"]);
    assert!(again.status.success());
    assert_eq!(text(&again.stdout), "75025\n");
    assert!(text(&again.stderr).contains("already finished"));
    // The name is taken now.
    let out = ferrite(&[
        "run",
        "--store",
        store,
        "--name",
        "fib",
        "--invoke",
        "fib",
        fib.to_str().unwrap(),
        "25",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_checkpoints_and_stops_and_resume_finishes_the_run() {
    let expected = churn_expected();
    let store = temp_store("sigterm");
    let churn = example("churn.wat");
    let args = churn_run_args(store.to_str().unwrap(), "c", churn.to_str().unwrap());
    let child = spawn(&args);
    wait_for_checkpoints(&store, "c", 2);
    send_signal(child.id(), libc_signal::TERM);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    // The run takes seconds; the signal comes after two checkpoints.
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM after checkpoint"),
        "{stderr}"
    );
    let ps = text(&ferrite(&["ps", "--store", store.to_str().unwrap()]).stdout);
    assert!(ps.contains("stopped"), "{ps}");
    // No flags: the resume keeps the run's physical heap and checkpoint period.
    let out = ferrite(&["resume", "--store", store.to_str().unwrap(), "c", "--stats"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected);
    let stats = text(&out.stderr);
    assert!(stats.contains("limit 512"), "{stats}");
    let checkpoints: u64 = stats
        .lines()
        .find_map(|line| line.trim().strip_prefix("checkpoints"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(checkpoints > 1, "{stats}");
}

#[test]
fn checkpoint_command_and_a_second_runner_are_handled() {
    let store = temp_store("request");
    let churn = example("churn.wat");
    let mut args = churn_run_args(store.to_str().unwrap(), "c", churn.to_str().unwrap());
    // No timer: only requested checkpoints.
    args.drain(7..9);
    let mut child = spawn(&args);
    wait_for_checkpoints(&store, "c", 1);
    let out = ferrite(&["checkpoint", "--store", store.to_str().unwrap(), "c"]);
    // The run takes seconds: it is still running when asked.
    assert!(child.try_wait().unwrap().is_none(), "the run ended early");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("checkpoint "),
        "{}",
        text(&out.stdout)
    );
    let second = ferrite(&["resume", "--store", store.to_str().unwrap(), "c"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("already running"),
        "{}",
        text(&second.stderr)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let out = ferrite(&["checkpoint", "--store", store.to_str().unwrap(), "c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );
}

/// `kill -9` a dozen times at pseudo-random moments (a fixed seed, so a failure
/// reproduces), resuming after each; the last resume runs to the end.
#[test]
fn kill_9_a_dozen_times_then_resume_gives_the_uninterrupted_result() {
    let expected = churn_expected();
    let store = temp_store("kill9");
    let store_arg = store.to_str().unwrap();
    let churn = example("churn.wat");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut child = spawn(&churn_run_args(store_arg, "k", churn.to_str().unwrap()));
    let mut kills = 0;
    while kills < 12 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 150);
        sleep(delay);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        child = spawn(&[
            "resume",
            "--store",
            store_arg,
            "k",
            "--prefetch",
            "--physical-heap",
            "2MiB",
            "--checkpoint-every",
            "20ms",
        ]);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "after {kills} kills: {}",
        text(&out.stderr)
    );
    // A resume that found the process finished reports the same outcome.
    assert_eq!(text(&out.stdout), expected, "after {kills} kills");
    let out = ferrite(&["resume", "--store", store_arg, "k"]);
    assert_eq!(text(&out.stdout), expected);
    assert!(kills >= 6, "the run ended after only {kills} kills");
}

#[test]
fn a_bounded_physical_heap_gives_the_unbounded_result() {
    let fill = example("fill.wat");
    let fill = fill.to_str().unwrap();
    let plain = ferrite(&["run", "--invoke", "fill", fill, "8"]);
    assert!(plain.status.success());
    let bounded = ferrite(&[
        "run",
        "--physical-heap",
        "256KiB",
        "--stats",
        "--invoke",
        "fill",
        fill,
        "8",
    ]);
    assert!(bounded.status.success(), "{}", text(&bounded.stderr));
    assert_eq!(bounded.stdout, plain.stdout);
    let stats = text(&bounded.stderr);
    assert!(
        stats.contains("evictions") && stats.contains("limit 64"),
        "{stats}"
    );
}

#[test]
fn damaged_checkpoints_are_reported_never_trusted() {
    let store = temp_store("damaged");
    let store_arg = store.to_str().unwrap();
    let churn = example("churn.wat");
    let child = spawn(&churn_run_args(store_arg, "d", churn.to_str().unwrap()));
    wait_for_checkpoints(&store, "d", 3);
    send_signal(child.id(), libc_signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    // A flipped bit in the newest manifest: the resume falls back to the one
    // before and says so.
    let manifests = store.join("procs/d/manifests");
    let mut names: Vec<_> = fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let newest = names.last().unwrap().clone();
    flip_bit(&newest, 40);
    let mut resumed = spawn(&["resume", "--store", store_arg, "d"]);
    let mut stderr = BufReader::new(resumed.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("is damaged"), "{line}");
    resumed.kill().unwrap();
    resumed.wait().unwrap();
    // Every stored page damaged: the run stops with a clear error.
    for entry in fs::read_dir(store.join("procs/d/segments")).unwrap() {
        flip_bit(&entry.unwrap().path(), 100);
    }
    let out = ferrite(&[
        "resume",
        "--store",
        store_arg,
        "d",
        "--physical-heap",
        "64KiB",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(stderr.contains("the store is damaged"), "{stderr}");
    assert!(!stderr.contains("is intact"), "{stderr}");
}

#[test]
fn resume_all_restarts_every_stopped_process() {
    let store = temp_store("all");
    let store_arg = store.to_str().unwrap();
    let fib = example("fib.wat");
    let fib = fib.to_str().unwrap();
    // Two processes stopped by SIGTERM right after their first checkpoint, one
    // finished: `--all` resumes the two.
    for name in ["a", "b"] {
        let child = spawn(&[
            "run",
            "--store",
            store_arg,
            "--name",
            name,
            "--invoke",
            "fib_recursive",
            fib,
            "38",
        ]);
        wait_for_checkpoints(&store, name, 1);
        send_signal(child.id(), libc_signal::TERM);
        let out = child.wait_with_output().unwrap();
        // The run takes over a second; the signal comes at its start.
        assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    }
    let done = ferrite(&[
        "run", "--store", store_arg, "--name", "c", "--invoke", "fib", fib, "5",
    ]);
    assert!(done.status.success());
    let out = ferrite(&["resume", "--all", "--store", store_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ps = text(&ferrite(&["ps", "--store", store_arg]).stdout);
    assert_eq!(ps.matches("returned").count(), 3, "{ps}");
}

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    let offset = offset.min(bytes.len() - 1);
    bytes[offset] ^= 0x10;
    // The store's objects are read-only once written.
    let mut permissions = fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    fs::set_permissions(path, permissions).unwrap();
    fs::write(path, bytes).unwrap();
}

mod libc_signal {
    pub const TERM: i32 = 15;
}

fn send_signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A WASI program that prints and writes a file while it computes, killed with
/// SIGKILL a few times and resumed: it exits with the uninterrupted run's status
/// and last line, and its file (rewritten at checkpointed offsets, not rolled
/// back) ends up identical.
#[test]
fn a_wasi_program_killed_and_resumed_ends_as_uninterrupted() {
    let journal = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi/journal.wasm");
    let journal = journal.to_str().unwrap();
    let base = temp_store("journal");
    let (plain_dir, kept_dir) = (base.join("plain"), base.join("kept"));
    fs::create_dir_all(&plain_dir).unwrap();
    fs::create_dir_all(&kept_dir).unwrap();
    let dir_arg = |dir: &Path| format!("{}::/out", dir.display());
    let plain = ferrite(&["run", "--dir", &dir_arg(&plain_dir), journal, "250"]);
    let plain_stdout = text(&plain.stdout);
    assert!(plain_stdout.ends_with('\n') && plain_stdout.contains("done: "));

    let store = base.join("store");
    let store_arg = store.to_str().unwrap();
    let kept_arg = dir_arg(&kept_dir);
    let mut child = spawn(&[
        "run",
        "--store",
        store_arg,
        "--name",
        "j",
        "--physical-heap",
        "16MiB",
        "--checkpoint-every",
        "30ms",
        "--dir",
        &kept_arg,
        journal,
        "250",
    ]);
    let mut kills = 0;
    for delay in [150, 90, 260, 120, 200] {
        sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        child = spawn(&[
            "resume",
            "--store",
            store_arg,
            "j",
            "--physical-heap",
            "16MiB",
            "--checkpoint-every",
            "30ms",
        ]);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        plain.status.code(),
        "{}",
        text(&out.stderr)
    );
    let last = |s: &str| s.lines().last().unwrap_or("").to_string();
    assert_eq!(
        last(&text(&out.stdout)),
        last(&plain_stdout),
        "after {kills} kills"
    );
    assert_eq!(
        fs::read(kept_dir.join("journal.txt")).unwrap(),
        fs::read(plain_dir.join("journal.txt")).unwrap(),
        "after {kills} kills"
    );
    assert!(kills >= 2, "only {kills} kills");
}

/// `--dir` with a relative path: the resume, from another working directory,
/// reopens the same directory.
#[test]
fn relative_preopens_survive_a_resume_from_elsewhere() {
    let journal = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi/journal.wasm");
    let base = temp_store("relative");
    fs::create_dir_all(base.join("work/out")).unwrap();
    fs::create_dir_all(base.join("elsewhere")).unwrap();
    let store = base.join("store");
    let child = Command::new(FERRITE)
        .current_dir(base.join("work"))
        .args(["run", "--store", store.to_str().unwrap(), "--name", "r"])
        .args(["--checkpoint-every", "20ms", "--dir", "out::/out"])
        .arg(&journal)
        .arg("250")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_checkpoints(&store, "r", 2);
    send_signal(child.id(), libc_signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let resumed = Command::new(FERRITE)
        .current_dir(base.join("elsewhere"))
        .args(["resume", "--store", store.to_str().unwrap(), "r"])
        .output()
        .unwrap();
    assert!(
        !text(&resumed.stderr).contains("warning"),
        "{}",
        text(&resumed.stderr)
    );
    assert!(
        text(&resumed.stdout).contains("done: "),
        "{}",
        text(&resumed.stdout)
    );
    let journal = fs::read_to_string(base.join("work/out/journal.txt")).unwrap();
    assert!(journal.contains("round 250: "), "{journal}");
    assert!(!base.join("elsewhere/out").exists());
}

/// CRC-32C (Castagnoli), bit by bit: the manifest checksum, for tests only.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Gives a manifest file a valid checksum again after a change, so that the
/// change reaches the decoder (as another build's layout would).
fn reseal(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len();
    let crc = crc32c(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_manifest_whose_body_does_not_decode_stops_resume_until_a_rollback_is_asked_for() {
    let store = temp_store("undecodable");
    let store_arg = store.to_str().unwrap();
    let churn = example("churn.wat");
    let child = spawn(&churn_run_args(store_arg, "u", churn.to_str().unwrap()));
    wait_for_checkpoints(&store, "u", 3);
    send_signal(child.id(), libc_signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let manifests = store.join("procs/u/manifests");
    let mut names: Vec<_> = fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let (newest, previous) = (&names[names.len() - 1], &names[names.len() - 2]);
    let mut bytes = fs::read(manifests.join(newest)).unwrap();
    bytes[28] = 0xff;
    fs::write(manifests.join(newest), bytes).unwrap();
    reseal(&manifests.join(newest));
    let segments_before = fs::read_dir(store.join("procs/u/segments"))
        .unwrap()
        .count();

    let out = ferrite(&["resume", "--store", store_arg, "u"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let previous_epoch = u64::from_str_radix(previous, 16).unwrap();
    assert!(
        stderr.contains(&format!("procs/u/manifests/{newest}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "ferrite resume u --from-checkpoint {previous_epoch}"
        )),
        "{stderr}"
    );
    assert!(manifests.join(newest).exists(), "nothing moved");
    let segments_after = fs::read_dir(store.join("procs/u/segments"))
        .unwrap()
        .count();
    assert_eq!(segments_after, segments_before, "nothing deleted");

    let mut resumed = spawn(&[
        "resume",
        "--store",
        store_arg,
        "u",
        "--from-checkpoint",
        &previous_epoch.to_string(),
    ]);
    let mut stderr = BufReader::new(resumed.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("set aside under procs/u/quarantine/00000001/"),
        "{line}"
    );
    resumed.kill().unwrap();
    resumed.wait().unwrap();
    assert!(store
        .join("procs/u/quarantine/00000001/manifests")
        .join(newest)
        .exists());
}

#[test]
fn a_truncated_committed_segment_is_damage_not_an_io_error() {
    let store = temp_store("truncated");
    let store_arg = store.to_str().unwrap();
    let churn = example("churn.wat");
    let child = spawn(&churn_run_args(store_arg, "t", churn.to_str().unwrap()));
    wait_for_checkpoints(&store, "t", 2);
    send_signal(child.id(), libc_signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    for entry in fs::read_dir(store.join("procs/t/segments")).unwrap() {
        let path = entry.unwrap().path();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(100).unwrap();
    }
    let out = ferrite(&[
        "resume",
        "--store",
        store_arg,
        "t",
        "--physical-heap",
        "64KiB",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the store is damaged"), "{stderr}");
    assert!(stderr.contains("procs/t/segments/"), "{stderr}");
    assert!(!stderr.contains("is intact"), "{stderr}");
}

/// A store named by a relative path of one component (`--store st`) that does
/// not exist yet is created in the working directory (its parent, `.`, synced).
#[test]
fn a_new_store_at_a_relative_path_is_created() {
    let base = temp_store("relative-store");
    fs::create_dir_all(&base).unwrap();
    let out = Command::new(FERRITE)
        .current_dir(&base)
        .args(["run", "--store", "st", "--name", "r", "--invoke", "fib"])
        .arg(example("fib.wat"))
        .arg("20")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6765\n");
    assert!(base.join("st/procs/r/manifests").is_dir());
}
