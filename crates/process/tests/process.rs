//! Processes over in-memory and fault-injecting stores: checkpoints, crashes at
//! every point, resumes, corruption, fencing. The property checked each time: a
//! resumed run ends with exactly the result of an uninterrupted one, and no
//! committed checkpoint is lost.

#![allow(clippy::unwrap_used)]

use ferrite_ckpt::ProcessStore;
use ferrite_pagestore::{Fault, FaultyStore, MemStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessError, ProcessOptions};
use ferrite_vm::Value;
use std::sync::Arc;

/// Scatters `n` read-modify-writes over a 4 MiB heap (1024 pages) with a
/// pseudo-random walk, then sums one word of every page: a working set far
/// larger than the few frames the tests allow.
const CHURN: &str = r#"
(module
  (memory 64)
  (global $x (mut i32) (i32.const 1))
  (func (export "churn") (param $n i32) (result i64)
    (local $i i32) (local $addr i32) (local $sum i64)
    loop $l
      global.get $x i32.const 1103515245 i32.mul i32.const 12345 i32.add global.set $x
      global.get $x i32.const 8 i32.shr_u i32.const 4194296 i32.rem_u i32.const -4 i32.and
      local.set $addr
      local.get $addr
      local.get $addr i32.load local.get $i i32.add i32.const 1 i32.add
      i32.store
      local.get $sum local.get $addr i64.load32_u i64.add local.set $sum
      local.get $i i32.const 1 i32.add local.tee $i local.get $n i32.lt_u br_if $l
    end
    i32.const 0 local.set $i
    loop $pages
      local.get $sum local.get $i i32.load i64.extend_i32_u i64.add local.set $sum
      local.get $i i32.const 4096 i32.add local.tee $i i32.const 4194304 i32.lt_u br_if $pages
    end
    local.get $sum))
"#;

const N: i32 = 3000;

fn launch(name: &str) -> Launch {
    Launch::invoke(
        name,
        wat::parse_str(CHURN).unwrap(),
        "churn",
        vec![Value::I32(N)],
    )
}

fn options(frames: u64) -> ProcessOptions {
    ProcessOptions {
        physical_heap_bytes: Some(frames * ferrite_heap::PAGE_SIZE as u64),
        ..ProcessOptions::default()
    }
}

/// The result of an uninterrupted run with an unbounded heap and no store.
fn expected() -> Value {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let plain = ProcessOptions {
        persistent: false,
        ..ProcessOptions::default()
    };
    let mut process = Process::start(backend, None, launch("plain"), &plain).unwrap();
    match process.run().unwrap() {
        Outcome::Returned(results) => results[0],
        other => panic!("{other:?}"),
    }
}

fn returned(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Returned(results) => results[0],
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bounded_heap_gives_the_unbounded_result() {
    let expected = expected();
    for frames in [2, 3, 16] {
        let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
        let mut process = Process::start(backend, None, launch("p"), &options(frames)).unwrap();
        assert_eq!(
            returned(process.run().unwrap()),
            expected,
            "{frames} frames"
        );
        let stats = process.stats();
        assert!(
            stats.heap.evictions > 0 && stats.heap.write_backs > 0,
            "{stats:?}"
        );
        assert!(stats.heap.resident_pages <= frames as usize, "{stats:?}");
    }
}

/// Runs in slices; after every slice a checkpoint, then a "crash" (the process is
/// dropped) and a resume from the store.
#[test]
fn resumed_after_every_checkpoint_ends_as_uninterrupted() {
    let expected = expected();
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut process = Process::start(backend.clone(), None, launch("p"), &options(4)).unwrap();
    let mut resumes = 0;
    let result = loop {
        match process.run_for(2_000).unwrap() {
            Outcome::Interrupted => {}
            outcome => break returned(outcome),
        }
        process.checkpoint().unwrap();
        drop(process);
        let (resumed, report) = Process::resume(backend.clone(), None, "p", &options(4)).unwrap();
        assert!(report.skipped.is_empty());
        process = resumed;
        resumes += 1;
    };
    assert!(resumes > 5, "only {resumes} resumes");
    assert_eq!(result, expected);
}

/// Work done after the last checkpoint (pages evicted into the epoch being
/// built) is lost on a crash, and the resumed run redoes it.
#[test]
fn a_crash_between_checkpoints_loses_only_uncommitted_work() {
    let expected = expected();
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut process = Process::start(backend.clone(), None, launch("p"), &options(3)).unwrap();
    for round in 0..6 {
        assert_eq!(process.run_for(1_500).unwrap(), Outcome::Interrupted);
        if round % 2 == 0 {
            process.checkpoint().unwrap();
        }
    }
    assert!(process.stats().heap.write_backs > 0);
    drop(process); // crash: the last two slices were never committed
    let (mut process, _) = Process::resume(backend, None, "p", &options(3)).unwrap();
    assert_eq!(returned(process.run().unwrap()), expected);
}

/// Every write of a checkpointing run fails in turn, in four ways: the failed
/// checkpoint stops the process, and a resume from the intact store finishes
/// with the uninterrupted result.
#[test]
fn a_failed_checkpoint_leaves_the_last_one_intact() {
    let expected = expected();
    for fault in [
        Fault::IoError,
        Fault::NoSpace,
        Fault::Crash,
        Fault::CrashAfter,
    ] {
        let mut failed_runs = 0;
        for at in 1..40 {
            let memory = Arc::new(MemStore::new());
            let faulty: Arc<dyn StorageBackend> =
                Arc::new(FaultyStore::new(memory.clone(), at, fault));
            let failed = (|| {
                let mut process = Process::start(faulty, None, launch("p"), &options(4))?;
                loop {
                    match process.run_for(3_000)? {
                        Outcome::Interrupted => {
                            process.checkpoint()?;
                        }
                        outcome => {
                            process.finish(&outcome)?;
                            return Ok::<_, ProcessError>(false);
                        }
                    }
                }
            })();
            if matches!(failed, Ok(false)) {
                continue; // fewer writes than `at`
            }
            failed_runs += 1;
            let backend: Arc<dyn StorageBackend> = memory;
            match Process::resume(backend.clone(), None, "p", &options(4)) {
                Ok((mut process, _)) => {
                    assert_eq!(
                        returned(process.run().unwrap()),
                        expected,
                        "{fault:?} at {at}"
                    );
                }
                // The very first checkpoint never committed: nothing to resume.
                Err(ProcessError::NoCheckpoint(_)) => {
                    let store = ProcessStore::new(backend, "p").unwrap();
                    assert!(store.recover().unwrap().manifest.is_none());
                }
                Err(other) => panic!("{fault:?} at {at}: {other}"),
            }
        }
        // The run writes more often than that: every fault hit it.
        assert_eq!(failed_runs, 39, "{fault:?}");
    }
}

/// A flipped bit in a stored page is reported as corruption, never run on.
#[test]
fn a_corrupt_page_stops_the_process_with_a_clear_error() {
    let memory = Arc::new(MemStore::new());
    let backend: Arc<dyn StorageBackend> = memory.clone();
    let mut process = Process::start(backend.clone(), None, launch("p"), &options(4)).unwrap();
    assert_eq!(process.run_for(20_000).unwrap(), Outcome::Interrupted);
    process.checkpoint().unwrap();
    drop(process);
    for key in backend.list("procs/p/segments/").unwrap() {
        // Past the segment header: inside the first page record.
        assert!(memory.flip_bit(&key, 200, 1));
    }
    let (mut process, _) = Process::resume(backend, None, "p", &options(4)).unwrap();
    let error = process.run().unwrap_err();
    assert!(
        matches!(&error, ProcessError::Corrupt(message) if message.contains("corrupt")),
        "{error}"
    );
    // Stopped for good: no further run or checkpoint on corrupt state.
    assert!(matches!(process.run(), Err(ProcessError::Poisoned(_))));
    assert!(matches!(
        process.checkpoint(),
        Err(ProcessError::Poisoned(_))
    ));
}

/// Two runners of one process (a lock bypassed, or two machines): the second to
/// commit an epoch is fenced off and stops.
#[test]
fn a_second_runner_is_fenced() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut first = Process::start(backend.clone(), None, launch("p"), &options(4)).unwrap();
    let (mut second, _) = Process::resume(backend.clone(), None, "p", &options(4)).unwrap();
    first.run_for(1_000).unwrap();
    first.checkpoint().unwrap();
    second.run_for(1_000).unwrap();
    let error = second.checkpoint().unwrap_err();
    assert!(error.to_string().contains("another runner"), "{error}");
}

#[test]
fn start_refuses_an_existing_name_and_resume_a_finished_one() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut process = Process::start(backend.clone(), None, launch("p"), &options(8)).unwrap();
    let outcome = process.run().unwrap();
    process.finish(&outcome).unwrap();
    drop(process);
    assert!(matches!(
        Process::start(backend.clone(), None, launch("p"), &options(8)),
        Err(ProcessError::Exists(_))
    ));
    match Process::resume(backend.clone(), None, "p", &options(8)) {
        Err(ProcessError::Finished { status, .. }) => {
            assert_eq!(status, outcome.status());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Process::resume(backend, None, "nobody", &options(8)),
        Err(ProcessError::NoCheckpoint(_))
    ));
}

/// A resume reads nothing up front; `prefetch` reads the pages that were
/// resident at the checkpoint (up to the physical heap) and the run still ends
/// with the uninterrupted result.
#[test]
fn resume_is_lazy_and_prefetch_reads_the_resident_pages() {
    let expected = expected();
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let mut process = Process::start(backend.clone(), None, launch("p"), &options(8)).unwrap();
    assert_eq!(process.run_for(5_000).unwrap(), Outcome::Interrupted);
    process.checkpoint().unwrap();
    drop(process);

    let (lazy, _) = Process::resume(backend.clone(), None, "p", &options(8)).unwrap();
    let stats = lazy.stats();
    assert_eq!((stats.heap.page_faults, stats.heap.resident_pages), (0, 0));
    drop(lazy);

    let (mut process, _) = Process::resume(backend, None, "p", &options(8)).unwrap();
    let mut reports = Vec::new();
    let read = process
        .prefetch(&mut |done, total| reports.push((done, total)))
        .unwrap();
    assert!(read > 0 && read <= 8, "{read}");
    assert_eq!(process.stats().heap.resident_pages, read);
    let (done, total) = *reports.last().unwrap();
    assert!(done <= total && total >= read);
    assert_eq!(returned(process.run().unwrap()), expected);
}

/// Recovery writes too (it sets a damaged manifest aside and removes the
/// remains of an uncommitted checkpoint); a crash or error at any of those
/// writes leaves a store that the next resume recovers from, to the same end.
#[test]
fn a_crash_during_recovery_is_recovered_from() {
    let expected = expected();
    for fault in [Fault::IoError, Fault::Crash, Fault::CrashAfter] {
        for at in 1..5 {
            let memory = Arc::new(MemStore::new());
            let backend: Arc<dyn StorageBackend> = memory.clone();
            let mut process =
                Process::start(backend.clone(), None, launch("p"), &options(4)).unwrap();
            for _ in 0..3 {
                assert_eq!(process.run_for(2_000).unwrap(), Outcome::Interrupted);
                process.checkpoint().unwrap();
            }
            // Work after the last checkpoint, evicted into the next epoch's
            // objects, then a crash; and the newest manifest damaged.
            assert_eq!(process.run_for(4_000).unwrap(), Outcome::Interrupted);
            drop(process);
            let newest = backend.list("procs/p/manifests/").unwrap().pop().unwrap();
            assert!(memory.flip_bit(&newest, 30, 2));

            let faulty: Arc<dyn StorageBackend> =
                Arc::new(FaultyStore::new(memory.clone(), at, fault));
            // Whatever this attempt does, it must not hurt the store.
            if let Ok((mut process, _)) = Process::resume(faulty, None, "p", &options(4)) {
                let _ = process.run_for(3_000);
            }
            let (mut process, report) =
                Process::resume(backend.clone(), None, "p", &options(4)).unwrap();
            assert_eq!(report.epoch, 3, "{fault:?} at {at}");
            assert_eq!(
                returned(process.run().unwrap()),
                expected,
                "{fault:?} at {at}"
            );
        }
    }
}

/// A resume keeps the physical heap the process started with unless it is
/// given another.
#[test]
fn a_resume_keeps_the_recorded_physical_heap() {
    let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
    let process = Process::start(backend.clone(), None, launch("p"), &options(4)).unwrap();
    drop(process);
    let (process, _) =
        Process::resume(backend.clone(), None, "p", &ProcessOptions::default()).unwrap();
    assert_eq!(process.stats().heap.frames_max, Some(4));
    drop(process);
    let (process, _) = Process::resume(backend, None, "p", &options(9)).unwrap();
    assert_eq!(process.stats().heap.frames_max, Some(9));
}
