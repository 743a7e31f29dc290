//! A memory backed by a page store whose page is corrupt: the access that
//! faults it in stops the execution with the storage error, not a wasm trap.

#![allow(clippy::unwrap_used)]

use ferrite_pagestore::{MemStore, PageMapRef, PageStore, StorageBackend};
use ferrite_vm::{Config, Error, Execution, Extern, Module, Store, Value};
use std::sync::Arc;

#[test]
fn a_corrupt_page_is_a_storage_error() {
    let page_size = ferrite_heap::PAGE_SIZE;
    let memory_store = Arc::new(MemStore::new());
    let backend: Arc<dyn StorageBackend> = memory_store.clone();
    let mut pages = PageStore::open(backend.clone(), "p/", page_size, 0, PageMapRef::default());
    pages.write_page(3, &vec![9; page_size]).unwrap();
    let map = pages.commit_maps().unwrap();
    let segment = backend.list("p/segments/").unwrap().remove(0);
    assert!(memory_store.flip_bit(&segment, 200, 0));

    let module = Module::from_text_or_binary(
        br#"(module (memory (export "m") 1)
              (func (export "peek") (param i32) (result i32) local.get 0 i32.load))"#,
    )
    .unwrap();
    let mut store = Store::new(Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    let (Some(Extern::Memory(memory)), Some(Extern::Func(peek))) = (
        store.get_export(instance, "m"),
        store.get_export(instance, "peek"),
    ) else {
        panic!()
    };
    let reopened = PageStore::open(backend, "p/", page_size, 1, map);
    store
        .memory_mut(memory)
        .attach_store(reopened, Some(2))
        .unwrap();

    // A page the store never held reads as zeros.
    let mut ok = Execution::new(&store, peek, &[Value::I32(0)]).unwrap();
    assert!(matches!(
        ok.run(&mut store, u64::MAX).unwrap(),
        ferrite_vm::RunOutcome::Finished(v) if v == [Value::I32(0)]
    ));
    // The corrupt one is never read as data.
    let addr = 3 * page_size as i32;
    let mut bad = Execution::new(&store, peek, &[Value::I32(addr)]).unwrap();
    match bad.run(&mut store, u64::MAX) {
        Err(Error::Storage(message)) => assert!(message.contains("corrupt"), "{message}"),
        other => panic!("{other:?}"),
    }
}
