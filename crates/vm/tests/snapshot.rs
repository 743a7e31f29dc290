//! Store images: what a checkpoint records of globals, tables, segments and memory
//! sizes, applied to a store rebuilt from the same module.

#![allow(clippy::unwrap_used)]

use ferrite_vm::{Config, Extern, HostFuncId, Module, Store, Trap, Value};

const WAT: &str = r#"
(module
  (memory (export "mem") 1 10)
  (table (export "t") 2 8 funcref)
  (global $g (export "g") (mut i64) (i64.const 5))
  (func $f (result i32) i32.const 42)
  (elem declare func $f)
  (data $d "passive")
  (func (export "step")
    global.get $g i64.const 10 i64.mul global.set $g
    i32.const 1 memory.grow drop
    ref.func $f i32.const 3 table.grow drop
    data.drop $d))
"#;

fn no_host(_: &mut Store, _: HostFuncId, _: &[Value]) -> Result<Vec<Value>, Trap> {
    unreachable!()
}

#[test]
fn image_restores_globals_tables_segments_and_sizes() {
    let module = Module::from_text_or_binary(WAT.as_bytes()).unwrap();
    let mut store = Store::new(Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    let Some(Extern::Func(step)) = store.get_export(instance, "step") else {
        panic!()
    };
    store.invoke(step, &[], &mut no_host).unwrap();
    let image = store.image();

    let mut restored = Store::new(Config::default());
    let instance = restored.instantiate_for_restore(&module, &[]).unwrap();
    restored.apply_image(&image).unwrap();
    assert_eq!(restored.image(), image);
    let Some(Extern::Global(g)) = restored.get_export(instance, "g") else {
        panic!()
    };
    assert_eq!(restored.global_get(g), Value::I64(50));
    let Some(Extern::Memory(mem)) = restored.get_export(instance, "mem") else {
        panic!()
    };
    assert_eq!(restored.memory(mem).size_wasm_pages(), 2);
    let Some(Extern::Table(t)) = restored.get_export(instance, "t") else {
        panic!()
    };
    assert_eq!(restored.table_size(t), 5);
    // Running on from the restored state continues where the original was.
    let Some(Extern::Func(step)) = restored.get_export(instance, "step") else {
        panic!()
    };
    restored.invoke(step, &[], &mut no_host).unwrap();
    assert_eq!(restored.global_get(g), Value::I64(500));
}

#[test]
fn an_image_of_another_module_is_refused() {
    let module = Module::from_text_or_binary(WAT.as_bytes()).unwrap();
    let mut store = Store::new(Config::default());
    store.instantiate(&module, &[]).unwrap();
    let image = store.image();
    let other = Module::from_text_or_binary(b"(module (global (mut i32) (i32.const 0)))").unwrap();
    let mut restored = Store::new(Config::default());
    restored.instantiate_for_restore(&other, &[]).unwrap();
    assert!(restored.apply_image(&image).is_err());
}
