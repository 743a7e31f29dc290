//! `tests/wasi/mover.wasm`, the program the migration tests move: where it
//! is, and a wait for its progress.

use std::{
    fs,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

/// The mover's module.
pub fn mover() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/wasi/mover.wasm")
}

/// Waits until the mover's log in `out` (its `/out`) shows `batches`
/// batches done; fails after two minutes.
pub fn wait_for_batches(out: &Path, batches: usize) {
    let began = Instant::now();
    while fs::read_to_string(out.join("log.txt")).map_or(0, |log| log.lines().count()) < batches {
        assert!(
            began.elapsed() < Duration::from_mins(2),
            "the mover did not get going"
        );
        sleep(Duration::from_millis(20));
    }
}
