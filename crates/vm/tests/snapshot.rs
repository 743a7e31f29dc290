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

/// Recursion, loops, memory and host calls: a computation whose state is spread
/// over frames, the value stack, globals and memory.
const WORKLOAD: &str = r#"
(module
  (import "env" "twice" (func $twice (param i32) (result i32)))
  (memory (export "mem") 1)
  (global $acc (mut i64) (i64.const 0))
  (func $fib (param i32) (result i32)
    local.get 0 i32.const 2 i32.lt_u
    if (result i32) local.get 0
    else
      local.get 0 i32.const 1 i32.sub call $fib
      local.get 0 i32.const 2 i32.sub call $fib i32.add
    end)
  (func (export "run") (param $n i32) (result i64 i32)
    (local $i i32)
    loop $l
      ;; mem[i] = fib(i % 8) + twice(i)
      local.get $i i32.const 4 i32.mul
      local.get $i i32.const 7 i32.and call $fib
      local.get $i call $twice i32.add
      i32.store
      global.get $acc
      local.get $i i32.const 4 i32.mul i32.load i64.extend_i32_u
      i64.add global.set $acc
      local.get $i i32.const 1 i32.add local.tee $i
      local.get $n i32.lt_u br_if $l
    end
    global.get $acc
    local.get $n i32.const 4 i32.mul i32.const 4 i32.sub i32.load))
"#;

/// Runs `run(n)` to the end, answering `twice`, in slices of `budget`; after
/// every slice with `restart`, the whole state is imaged, serialized, and
/// restored into a fresh store whose memory is copied byte by byte.
fn run_workload(n: i32, budget: u64, restart: bool) -> (Vec<Value>, u32) {
    use ferrite_vm::{Execution, ExecutionImage, FuncType, RunOutcome, StoreImage, ValType};
    let module = Module::from_text_or_binary(WORKLOAD.as_bytes()).unwrap();
    let build = |store: &mut Store| {
        let twice = store.alloc_host_func(
            &FuncType::new([ValType::I32], [ValType::I32]),
            HostFuncId(7),
        );
        vec![Extern::Func(twice)]
    };
    let mut store = Store::new(Config::default());
    let imports = build(&mut store);
    let instance = store.instantiate(&module, &imports).unwrap();
    let Some(Extern::Func(run)) = store.get_export(instance, "run") else {
        panic!()
    };
    let mut execution = Execution::new(&store, run, &[Value::I32(n)]).unwrap();
    let mut host_calls = 0;
    loop {
        match execution.run(&mut store, budget).unwrap() {
            RunOutcome::Finished(results) => return (results, host_calls),
            RunOutcome::HostCall { id, args } => {
                assert_eq!(id, HostFuncId(7));
                let Value::I32(x) = args[0] else { panic!() };
                host_calls += 1;
                execution
                    .resume_host(&store, &[Value::I32(x.wrapping_mul(2))])
                    .unwrap();
            }
            RunOutcome::OutOfBudget | RunOutcome::Interrupted => {}
        }
        if restart {
            let exec_bytes = postcard::to_allocvec(&execution.image(&store)).unwrap();
            let store_bytes = postcard::to_allocvec(&store.image()).unwrap();
            let Some(Extern::Memory(mem)) = store.get_export(instance, "mem") else {
                panic!()
            };
            let mut contents = vec![0; store.memory(mem).size_bytes() as usize];
            store.memory_mut(mem).read(0, &mut contents).unwrap();

            let mut fresh = Store::new(Config::default());
            let imports = build(&mut fresh);
            let restored = fresh.instantiate_for_restore(&module, &imports).unwrap();
            assert_eq!(restored, instance);
            let image: StoreImage = postcard::from_bytes(&store_bytes).unwrap();
            fresh.apply_image(&image).unwrap();
            fresh.memory_mut(mem).write(0, &contents).unwrap();
            let image: ExecutionImage = postcard::from_bytes(&exec_bytes).unwrap();
            execution = Execution::from_image(&fresh, &image).unwrap();
            assert_eq!(execution.image(&fresh), image);
            store = fresh;
        }
    }
}

#[test]
fn an_execution_restored_after_every_slice_ends_as_an_uninterrupted_one() {
    let (expected, calls) = run_workload(300, u64::MAX, false);
    assert_eq!(calls, 300);
    for budget in [1, 7, 50, 1000] {
        assert_eq!(
            run_workload(300, budget, true),
            (expected.clone(), 300),
            "budget {budget}"
        );
    }
}

#[test]
fn an_execution_image_of_another_engine_or_module_is_refused() {
    use ferrite_vm::{Execution, FrameImage};
    let module = Module::from_text_or_binary(WAT.as_bytes()).unwrap();
    let mut store = Store::new(Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    let Some(Extern::Func(step)) = store.get_export(instance, "step") else {
        panic!()
    };
    let execution = Execution::new(&store, step, &[]).unwrap();
    let image = execution.image(&store);
    assert!(Execution::from_image(&store, &image).is_ok());

    let mut other_engine = image.clone();
    other_engine.engine = "ferrite-vm 0.0.0 ir 0".into();
    let error = Execution::from_image(&store, &other_engine).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot be resumed by this build"),
        "{error}"
    );

    let mut bad_ip = image.clone();
    bad_ip.frames[0].ip = 1 << 30;
    assert!(Execution::from_image(&store, &bad_ip).is_err());
    let mut bad_func = image.clone();
    bad_func.frames.push(FrameImage {
        func: 999,
        ip: 0,
        base: 0,
    });
    assert!(Execution::from_image(&store, &bad_func).is_err());
    let mut bad_base = image;
    bad_base.frames[0].base = 1_000_000;
    assert!(Execution::from_image(&store, &bad_base).is_err());
}
