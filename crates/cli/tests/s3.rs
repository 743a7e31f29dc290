//! Processes in object storage, end to end through the `ferrite` binary,
//! against the project's Ceph RADOS Gateway (`scripts/s3/up.sh`; these tests
//! fail, never skip, without its `AWS_*` variables): a heap larger than the
//! physical heap killed with `kill -9` a dozen times and resumed on a fresh
//! local cache each time; a second runner refused while one runs; a store
//! sealed with a key holding no byte of the program's data in the clear;
//! `ps`, `inspect` and `rm` on the bucket.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::ProcessStore;
use ferrite_pagestore::StorageBackend;
use ferrite_remote::{S3Options, S3Store};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    thread::sleep,
    time::{Duration, Instant},
};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");

#[path = "support/gateway.rs"]
mod gateway;
use gateway::{env, fresh_url};

/// A fresh directory (not created) for a local cache or a key file.
fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("s3-tests")
        .join(format!(
            "{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

/// The raw bucket prefix (no cache, no key), to look at what is stored.
fn raw(url: &str) -> Arc<dyn StorageBackend> {
    Arc::new(S3Store::open(url, &S3Options::default()).unwrap())
}

/// The newest committed epoch of process `name` (0 if none).
fn newest_epoch(store: &Arc<dyn StorageBackend>, name: &str) -> u64 {
    ProcessStore::new(store.clone(), name)
        .unwrap()
        .epochs()
        .unwrap()
        .last()
        .copied()
        .unwrap_or(0)
}

/// The churn example: random read-modify-writes over a heap of `CHURN_MIB`
/// MiB, larger than the physical heap the runs get.
const CHURN_STEPS: &str = "300000";
const CHURN_MIB: &str = "40";
const PHYSICAL: &str = "32MiB";

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

/// Waits until `child` has committed a checkpoint after `after`, or ended;
/// returns the newest epoch.
fn wait_for_checkpoint(
    child: &mut Child,
    store: &Arc<dyn StorageBackend>,
    after: u64,
) -> Option<u64> {
    let began = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        let epoch = newest_epoch(store, "job");
        if epoch > after {
            return Some(epoch);
        }
        assert!(
            began.elapsed() < Duration::from_mins(2),
            "no checkpoint after {after} in two minutes"
        );
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_a_dozen_times_over_s3_on_a_fresh_cache_each_time() {
    const KILLS: usize = 12;
    let expected = churn_expected();
    let url = fresh_url("kill");
    let store = raw(&url);
    let churn = example("churn.wat");
    let mut caches = Vec::new();
    let mut cache = temp_dir("cache");
    caches.push(cache.clone());
    let mut child = spawn(&[
        "run",
        "--name",
        "job",
        "--store",
        &url,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--physical-heap",
        PHYSICAL,
        "--checkpoint-every",
        "300ms",
        "--lease",
        "2s",
        "--invoke",
        "churn",
        churn.to_str().unwrap(),
        CHURN_STEPS,
        CHURN_MIB,
    ]);
    let mut seed = 0x9E37_79B9_u32;
    let mut epoch = 0;
    for kill in 1..=KILLS {
        // Each runner commits a checkpoint of its own before it dies.
        let Some(newer) = wait_for_checkpoint(&mut child, &store, epoch) else {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the process ended before kill {kill}: make the run longer\n{}",
                text(&out.stderr)
            )
        };
        epoch = newer;
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        sleep(Duration::from_millis(u64::from(seed % 400)));
        child.kill().unwrap();
        child.wait().unwrap();
        cache = temp_dir("cache");
        caches.push(cache.clone());
        child = spawn(&[
            "resume",
            "job",
            "--store",
            &url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--lease",
            "2s",
        ]);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected, "{}", text(&out.stderr));
    // The last runner read through its own cache, which started empty.
    assert!(cache.exists());
    let ps = ferrite(&["ps", "--store", &url]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert!(
        text(&ps.stdout).contains("returned"),
        "{}",
        text(&ps.stdout)
    );
    for dir in caches {
        let _ = fs::remove_dir_all(dir);
    }
}

#[test]
fn a_second_runner_is_refused_while_one_runs() {
    let url = fresh_url("second");
    let store = raw(&url);
    let cache = temp_dir("cache");
    let churn = example("churn.wat");
    let mut child = spawn(&[
        "run",
        "--name",
        "job",
        "--store",
        &url,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--checkpoint-every",
        "200ms",
        "--lease",
        "2s",
        "--invoke",
        "churn",
        churn.to_str().unwrap(),
        "200000000",
        "4",
    ]);
    wait_for_checkpoint(&mut child, &store, 1).expect("the runner checkpoints");
    let began = Instant::now();
    let second = ferrite(&["resume", "job", "--store", &url, "--lease", "2s"]);
    assert!(!second.status.success());
    let message = text(&second.stderr);
    assert!(message.contains("already running"), "{message}");
    // Refused once a renewal was seen, not after waiting the lease out.
    assert!(began.elapsed() < Duration::from_secs(10));
    let ps = ferrite(&["ps", "--store", &url]);
    assert!(text(&ps.stdout).contains("running"), "{}", text(&ps.stdout));
    // Stopped by SIGTERM: checkpointed, lease released, resumable at once.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    let ps = ferrite(&["ps", "--store", &url]);
    assert!(text(&ps.stdout).contains("stopped"), "{}", text(&ps.stdout));
    let rm = ferrite(&["rm", "job", "--store", &url]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(store.list("procs/job/").unwrap().is_empty());
    let _ = fs::remove_dir_all(cache);
}

/// A module that writes a recognizable text all over a heap of 2 MiB, then
/// returns a checksum of it.
const MARKER_WAT: &str = r#"
(module
  (memory 32)
  (data (i32.const 0) "FERRITE-CLEARTEXT-MARKER-0123456789")
  (func (export "spread") (result i32)
    (local $at i32) (local $sum i32)
    ;; Copy the 35-byte marker every 64 bytes up to 2 MiB.
    i32.const 64 local.set $at
    loop $copy
      local.get $at i32.const 0 i32.const 35 memory.copy
      local.get $at i32.const 64 i32.add local.tee $at
      i32.const 2097088 i32.lt_u br_if $copy
    end
    i32.const 0 local.set $at
    loop $sum
      local.get $sum local.get $at i32.load8_u i32.add local.set $sum
      local.get $at i32.const 1 i32.add local.tee $at
      i32.const 2097152 i32.lt_u br_if $sum
    end
    local.get $sum))
"#;

const MARKER: &[u8] = b"FERRITE-CLEARTEXT-MARKER";

/// Whether any object below the prefix holds `MARKER`.
fn marker_stored(store: &Arc<dyn StorageBackend>) -> bool {
    store.list("").unwrap().iter().any(|key| {
        store
            .get(key, None)
            .unwrap()
            .windows(MARKER.len())
            .any(|w| w == MARKER)
    })
}

#[test]
fn with_a_key_no_object_holds_the_programs_data_in_the_clear() {
    let dir = temp_dir("key");
    fs::create_dir_all(&dir).unwrap();
    let module = dir.join("marker.wat");
    fs::write(&module, MARKER_WAT).unwrap();
    let key = dir.join("key");
    fs::write(&key, "7".repeat(64)).unwrap();
    let run = |url: &str, with_key: bool| {
        let cache = dir.join(if with_key {
            "cache-sealed"
        } else {
            "cache-plain"
        });
        let mut args = vec![
            "run",
            "--name",
            "marked",
            "--store",
            url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--invoke",
            "spread",
            module.to_str().unwrap(),
        ];
        if with_key {
            args.extend(["--key-file", key.to_str().unwrap()]);
        }
        let out = ferrite(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // Without a key the marker is in the bucket (the check can fail)...
    let plain = fresh_url("plain");
    let result = run(&plain, false);
    assert!(marker_stored(&raw(&plain)));
    // ... with one, no object has it, and the result is the same.
    let sealed = fresh_url("sealed");
    assert_eq!(run(&sealed, true), result);
    let store = raw(&sealed);
    assert!(!store.list("procs/marked/segments/").unwrap().is_empty());
    assert!(!marker_stored(&store));
    // Nor does the local cache, which holds what the store holds (the
    // unsealed run's cache does: the check can fail).
    let holds_marker = |cache: &str| {
        walk(&dir.join(cache)).iter().any(|file| {
            fs::read(file)
                .unwrap()
                .windows(MARKER.len())
                .any(|w| w == MARKER)
        })
    };
    assert!(holds_marker("cache-plain"));
    assert!(!walk(&dir.join("cache-sealed")).is_empty());
    assert!(!holds_marker("cache-sealed"));
    // Without the key, or with another, one clear error.
    let inspect = ferrite(&["inspect", "marked", "--store", &sealed]);
    assert!(!inspect.status.success());
    assert!(
        text(&inspect.stderr).contains("sealed"),
        "{}",
        text(&inspect.stderr)
    );
    let other = dir.join("other");
    fs::write(&other, "8".repeat(64)).unwrap();
    let inspect = ferrite(&[
        "inspect",
        "marked",
        "--store",
        &sealed,
        "--key-file",
        other.to_str().unwrap(),
    ]);
    assert!(!inspect.status.success());
    assert!(
        text(&inspect.stderr).contains("wrong key"),
        "{}",
        text(&inspect.stderr)
    );
    let _ = fs::remove_dir_all(dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn a_wrong_endpoint_or_bucket_is_one_clear_error() {
    let out = Command::new(FERRITE)
        .args(["ps", "--store", "s3://ferrite-no-such-bucket/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = text(&out.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("bucket"), "{message}");
    for (variable, value, hint) in [
        ("AWS_SECRET_ACCESS_KEY", "wrong", "credentials were refused"),
        (
            "AWS_ENDPOINT_URL",
            "http://127.0.0.1:1",
            "endpoint cannot be reached",
        ),
    ] {
        let out = Command::new(FERRITE)
            .args(["ps", "--store", &fresh_url("bad")])
            .env(variable, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let message = text(&out.stderr);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(hint), "{message}");
    }
}

#[test]
fn two_resumers_race_fifty_times_and_exactly_one_runs_each_time() {
    const ROUNDS: usize = 50;
    let url = fresh_url("race");
    let store = raw(&url);
    let churn = example("churn.wat");
    let first = spawn(&[
        "run",
        "--name",
        "job",
        "--store",
        &url,
        "--cache-size",
        "0",
        "--lease",
        "2s",
        "--invoke",
        "churn",
        churn.to_str().unwrap(),
        "2000000000",
        "2",
    ]);
    let stop = |child: Child| {
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    };
    let began = Instant::now();
    while newest_epoch(&store, "job") == 0 {
        assert!(began.elapsed() < Duration::from_mins(1), "never started");
        sleep(Duration::from_millis(20));
    }
    stop(first);
    for round in 0..ROUNDS {
        let before = newest_epoch(&store, "job");
        let resume = || {
            spawn(&[
                "resume",
                "job",
                "--store",
                &url,
                "--cache-size",
                "0",
                "--lease",
                "2s",
            ])
        };
        let (mut a, mut b) = (resume(), resume());
        // One is refused; the other runs until it is stopped.
        let began = Instant::now();
        let (winner, loser) = loop {
            if a.try_wait().unwrap().is_some() {
                break (b, a);
            }
            if b.try_wait().unwrap().is_some() {
                break (a, b);
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "round {round}: neither resumer was refused"
            );
            sleep(Duration::from_millis(10));
        };
        let refused = loser.wait_with_output().unwrap();
        assert_eq!(refused.status.code(), Some(1), "round {round}");
        assert!(
            text(&refused.stderr).contains("already running"),
            "round {round}: {}",
            text(&refused.stderr)
        );
        stop(winner);
        // The winner's final checkpoint, and no one else's.
        assert_eq!(newest_epoch(&store, "job"), before + 1, "round {round}");
    }
}

#[test]
fn through_a_faulty_network_nothing_is_lost_and_one_runner_runs() {
    use ferrite_chaos::{FaultPlan, Proxy};
    let endpoint = env("AWS_ENDPOINT_URL");
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream).unwrap();
    let expected = churn_expected();
    let url = fresh_url("chaos");
    let store = raw(&url);
    let churn = example("churn.wat");
    let through_proxy = |args: &[&str]| {
        Command::new(FERRITE)
            .args(args)
            .env("AWS_ENDPOINT_URL", proxy.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let cache = temp_dir("cache");
    let common = [
        "--store",
        &url,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--lease",
        "2s",
    ];
    // Open cleanly (the create-only probe is not what is tested here), then
    // every fault from the first checkpoint on.
    let mut args = vec!["run", "--name", "job"];
    args.extend(common);
    args.extend([
        "--physical-heap",
        PHYSICAL,
        "--checkpoint-every",
        "300ms",
        "--invoke",
        "churn",
        churn.to_str().unwrap(),
        CHURN_STEPS,
        CHURN_MIB,
    ]);
    let mut child = through_proxy(&args);
    let mut epoch = wait_for_checkpoint(&mut child, &store, 0).unwrap();
    proxy.set_plan(FaultPlan {
        seed: 7,
        drop_before: 0.02,
        lose_answer: 0.02,
        error_500: 0.02,
        error_503: 0.03,
        delay: 0.05,
        delay_ms_max: 200,
    });
    for _ in 0..3 {
        let Some(newer) = wait_for_checkpoint(&mut child, &store, epoch) else {
            break;
        };
        epoch = newer;
        child.kill().unwrap();
        child.wait().unwrap();
        // A second resumer alongside: at most one of them runs.
        let mut args = vec!["resume", "job"];
        args.extend(common);
        child = the_one_that_runs(through_proxy(&args), through_proxy(&args));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expected, "{}", text(&out.stderr));
    let counts = proxy.counts();
    assert!(
        counts.dropped_before + counts.answers_lost + counts.errors_500 + counts.errors_503 > 0,
        "{counts:?}"
    );
    let _ = fs::remove_dir_all(cache);
}

/// Of two resumers of one process, waits for one to be refused (it fails) and
/// returns the other, still running (or finished).
fn the_one_that_runs(mut a: Child, mut b: Child) -> Child {
    let began = Instant::now();
    loop {
        if let Some(status) = a.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1), "a refused resumer fails");
            return b;
        }
        if let Some(status) = b.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1), "a refused resumer fails");
            return a;
        }
        assert!(
            began.elapsed() < Duration::from_mins(1),
            "neither resumer was refused"
        );
        sleep(Duration::from_millis(20));
    }
}
