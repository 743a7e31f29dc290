//! The RADOS Gateway stopped under a running process for longer than its
//! lease, then started again (`scripts/s3/restart-gateway.sh`): the process
//! pauses, says so, takes its lease back and ends with the uninterrupted
//! run's result. A test binary of its own, so that no other test meets the
//! outage (cargo runs test binaries one after another).
//!
//! Needs the gateway of `scripts/s3/up.sh` and its `FERRITE_S3_DIR`; fails,
//! never skips, without them.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::ProcessStore;
use ferrite_pagestore::StorageBackend;
use ferrite_remote::{S3Options, S3Store};
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    thread::sleep,
    time::{Duration, Instant},
};

const FERRITE: &str = env!("CARGO_BIN_EXE_ferrite");

#[path = "support/gateway.rs"]
mod gateway;
use gateway::{env, fresh_url};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_gateway_restarted_under_a_process_costs_a_pause_and_nothing_else() {
    let cluster = env("FERRITE_S3_DIR");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let churn = root.join("examples/churn.wat");
    let churn = churn.to_str().unwrap();
    let (steps, mib) = ("300000", "40");
    let expected = Command::new(FERRITE)
        .args(["run", "--invoke", "churn", churn, steps, mib])
        .output()
        .unwrap();
    assert!(expected.status.success());
    let url = fresh_url("restart");
    let cache =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("restart-{}", std::process::id()));
    let child = Command::new(FERRITE)
        .args([
            "run",
            "--name",
            "job",
            "--store",
            &url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--physical-heap",
            "32MiB",
            "--checkpoint-every",
            "300ms",
            "--lease",
            "2s",
            "--invoke",
            "churn",
            churn,
            steps,
            mib,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Running and checkpointing before the gateway goes away.
    let store: Arc<dyn StorageBackend> =
        Arc::new(S3Store::open(&url, &S3Options::default()).unwrap());
    let process = ProcessStore::new(store, "job").unwrap();
    let began = Instant::now();
    while process.epochs().unwrap().len() < 2 {
        assert!(began.elapsed() < Duration::from_mins(1), "no checkpoints");
        sleep(Duration::from_millis(50));
    }
    // Down for three times the lease.
    let restart = Command::new(root.join("scripts/s3/restart-gateway.sh"))
        .args([&cluster, "6"])
        .status()
        .unwrap();
    assert!(restart.success());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout), text(&expected.stdout), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(stderr.contains("answers again"), "{stderr}");
    let _ = std::fs::remove_dir_all(cache);
}
