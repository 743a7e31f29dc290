//! A real process checkpointed into a sealed store (`SealedStore`, encryption
//! at rest): it resumes and ends as an uninterrupted run, and no byte the
//! medium holds contains the plaintext the program wrote into its heap.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{MemStore, SealKey, SealedStore, StorageBackend};
use ferrite_process::{Launch, Outcome, Process, ProcessOptions};
use ferrite_vm::Value;
use std::sync::Arc;

/// What the program writes over its 1 MiB heap, 16 bytes at a time.
const SECRET: &[u8; 16] = b"SECRET-PATTERN-7";

/// Fills the heap with `SECRET` (two i64 stores per 16 bytes, so the pattern
/// is not in the module's bytes), then sums one word per page.
const FILL: &str = r#"
(module
  (memory 16)
  (func (export "fill") (result i64)
    (local $addr i32) (local $sum i64)
    loop $l
      local.get $addr i64.const 5777366553695831379 i64.store
      local.get $addr i64.const 3975920161295455297 i64.store offset=8
      local.get $addr i32.const 16 i32.add local.tee $addr i32.const 1048576 i32.lt_u br_if $l
    end
    i32.const 0 local.set $addr
    loop $pages
      local.get $sum local.get $addr i64.load i64.add local.set $sum
      local.get $addr i32.const 4096 i32.add local.tee $addr i32.const 1048576 i32.lt_u br_if $pages
    end
    local.get $sum))
"#;

fn launch() -> Launch {
    Launch::invoke("p", wat::parse_str(FILL).unwrap(), "fill", Vec::new())
}

/// Runs the program in slices with a checkpoint and a resume after each; the
/// result.
fn run_checkpointed(backend: &Arc<dyn StorageBackend>) -> Vec<Value> {
    let options = ProcessOptions::default();
    let mut process = Process::start(Arc::clone(backend), None, launch(), &options).unwrap();
    let mut checkpoints = 0;
    loop {
        match process.run_for(50_000).unwrap() {
            Outcome::Interrupted => {}
            Outcome::Returned(results) => {
                assert!(checkpoints > 2, "{checkpoints} checkpoints");
                return results;
            }
            other => panic!("{other:?}"),
        }
        process.checkpoint().unwrap();
        checkpoints += 1;
        drop(process);
        process = Process::resume(Arc::clone(backend), None, "p", &options)
            .unwrap()
            .0;
    }
}

fn holds_secret(memory: &MemStore) -> Vec<String> {
    let keys = memory.list("").unwrap();
    keys.into_iter()
        .filter(|key| {
            let bytes = memory.get(key, None).unwrap();
            bytes.windows(SECRET.len()).any(|w| w == SECRET)
        })
        .collect()
}

#[test]
fn a_sealed_store_holds_no_heap_plaintext() {
    let plain = Arc::new(MemStore::new());
    let expected = run_checkpointed(&(Arc::clone(&plain) as Arc<dyn StorageBackend>));
    // The scan sees the pattern where the store is not sealed.
    assert!(!holds_secret(&plain).is_empty());

    let memory = Arc::new(MemStore::new());
    let key = SealKey::from_bytes([42; 32]);
    let sealed = SealedStore::open(Arc::clone(&memory), &key).unwrap();
    let backend: Arc<dyn StorageBackend> = Arc::new(sealed);
    assert_eq!(run_checkpointed(&backend), expected);
    assert!(memory.list("procs/p/segments/").unwrap().len() > 1);
    assert_eq!(holds_secret(&memory), Vec::<String>::new());
}
