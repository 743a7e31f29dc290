//! Scenario tests of the execution model: slicing, interrupts, host calls, limits.

#![allow(clippy::unwrap_used)]

use ferrite_vm::{
    Config, Error, Execution, Extern, Func, FuncType, HostFuncId, Module, RunOutcome, StackLimits,
    Store, Trap, TrapCode, ValType, Value,
};
use std::sync::atomic::Ordering;

const FIB: &str = r#"
(module $fibs
  (func $fib (export "fib") (param i64) (result i64)
    local.get 0
    i64.const 2
    i64.lt_u
    if (result i64)
      local.get 0
    else
      local.get 0
      i64.const 1
      i64.sub
      call $fib
      local.get 0
      i64.const 2
      i64.sub
      call $fib
      i64.add
    end)
  (func (export "sum") (param $n i32) (result i64) (local $acc i64)
    block $done
      loop $next
        local.get $n
        i32.eqz
        br_if $done
        local.get $acc
        local.get $n
        i64.extend_i32_u
        i64.add
        local.set $acc
        local.get $n
        i32.const 1
        i32.sub
        local.set $n
        br $next
      end
    end
    local.get $acc)
  (func $deep (export "deep") (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add
    call $deep)
  (func $div (export "div") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.div_s)
  (func (export "div_outer") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $div))
"#;

fn no_host(_: &mut Store, _: HostFuncId, _: &[Value]) -> Result<Vec<Value>, Trap> {
    unreachable!("no host functions")
}

fn setup(wat: &str, config: Config) -> (Store, ferrite_vm::Instance) {
    let module = Module::from_text_or_binary(wat.as_bytes()).unwrap();
    let mut store = Store::new(config);
    let instance = store.instantiate(&module, &[]).unwrap();
    (store, instance)
}

fn func(store: &Store, instance: ferrite_vm::Instance, name: &str) -> Func {
    match store.get_export(instance, name) {
        Some(Extern::Func(func)) => func,
        other => panic!("export {name} is {other:?}"),
    }
}

#[test]
fn recursive_fib() {
    let (mut store, instance) = setup(FIB, Config::default());
    let fib = func(&store, instance, "fib");
    let results = store.invoke(fib, &[Value::I64(20)], &mut no_host).unwrap();
    assert_eq!(results, vec![Value::I64(6765)]);
}

#[test]
fn sliced_run_matches_uninterrupted_run() {
    let (mut store, instance) = setup(FIB, Config::default());
    let fib = func(&store, instance, "fib");
    let expected = store.invoke(fib, &[Value::I64(18)], &mut no_host).unwrap();
    for budget in [1, 7, 100, 1000] {
        let mut execution = Execution::new(&store, fib, &[Value::I64(18)]).unwrap();
        let mut slices = 0;
        let results = loop {
            match execution.run(&mut store, budget).unwrap() {
                RunOutcome::Finished(results) => break results,
                RunOutcome::OutOfBudget => slices += 1,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(results, expected, "budget {budget}");
        assert!(slices > 0, "budget {budget} should need several slices");
    }
}

#[test]
fn loop_back_edges_charge_budget() {
    let (mut store, instance) = setup(FIB, Config::default());
    let sum = func(&store, instance, "sum");
    let mut execution = Execution::new(&store, sum, &[Value::I32(10_000)]).unwrap();
    let mut slices = 0;
    let results = loop {
        match execution.run(&mut store, 1_000).unwrap() {
            RunOutcome::Finished(results) => break results,
            RunOutcome::OutOfBudget => slices += 1,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(results, vec![Value::I64(50_005_000)]);
    assert!(
        slices >= 10,
        "a 10k-iteration loop needs many 1k slices, got {slices}"
    );
}

#[test]
fn interrupt_flag_stops_and_resumes() {
    let (mut store, instance) = setup(FIB, Config::default());
    let sum = func(&store, instance, "sum");
    let mut execution = Execution::new(&store, sum, &[Value::I32(1000)]).unwrap();
    execution.interrupt_handle().store(true, Ordering::Relaxed);
    assert_eq!(
        execution.run(&mut store, u64::MAX).unwrap(),
        RunOutcome::Interrupted
    );
    assert_eq!(
        execution.run(&mut store, u64::MAX).unwrap(),
        RunOutcome::Finished(vec![Value::I64(500_500)])
    );
}

#[test]
fn runaway_recursion_is_a_trap() {
    let config = Config {
        stack_limits: StackLimits {
            call_depth_max: 5000,
            value_slots_max: 1 << 20,
        },
    };
    let (mut store, instance) = setup(FIB, config);
    let deep = func(&store, instance, "deep");
    match store.invoke(deep, &[Value::I32(0)], &mut no_host) {
        Err(Error::Trap(trap)) => assert_eq!(trap.code(), TrapCode::StackExhausted),
        other => panic!("expected stack exhaustion, got {other:?}"),
    }
}

#[test]
fn trap_has_named_backtrace() {
    let (mut store, instance) = setup(FIB, Config::default());
    let outer = func(&store, instance, "div_outer");
    let Err(Error::Trap(trap)) = store.invoke(outer, &[Value::I32(1), Value::I32(0)], &mut no_host)
    else {
        panic!("expected a trap")
    };
    assert_eq!(trap.code(), TrapCode::IntegerDivideByZero);
    let names: Vec<_> = trap
        .backtrace()
        .iter()
        .map(|f| f.func_name.clone())
        .collect();
    assert_eq!(names[0].as_deref(), Some("div"));
    assert_eq!(trap.backtrace().len(), 2);
    assert_eq!(trap.backtrace()[0].module_name.as_deref(), Some("fibs"));
}

#[test]
fn host_calls_suspend_the_execution() {
    let wat = r#"
      (module
        (import "host" "double" (func $double (param i32) (result i32)))
        (func (export "quad") (param i32) (result i32)
          local.get 0 call $double call $double))"#;
    let module = Module::from_text_or_binary(wat.as_bytes()).unwrap();
    let mut store = Store::new(Config::default());
    let ty = FuncType::new([ValType::I32], [ValType::I32]);
    let double = store.alloc_host_func(&ty, HostFuncId(7));
    let instance = store.instantiate(&module, &[Extern::Func(double)]).unwrap();
    let quad = func(&store, instance, "quad");
    let mut execution = Execution::new(&store, quad, &[Value::I32(5)]).unwrap();
    let mut calls = 0;
    let results = loop {
        match execution.run(&mut store, u64::MAX).unwrap() {
            RunOutcome::HostCall { id, args } => {
                assert_eq!(id, HostFuncId(7));
                let Value::I32(x) = args[0] else {
                    panic!("i32 expected")
                };
                calls += 1;
                execution.resume_host(&store, &[Value::I32(x * 2)]).unwrap();
            }
            RunOutcome::Finished(results) => break results,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((calls, results), (2, vec![Value::I32(20)]));
}

#[test]
fn sparse_four_gib_memory_costs_a_few_pages() {
    let wat = r#"
      (module (memory (export "mem") 1 65536)
        (func (export "go") (result i32)
          i32.const 65535 memory.grow drop
          i32.const 0xfffffff0 i32.const 7 i32.store
          i32.const 0x80000000 i32.const 9 i32.store
          i32.const 0xfffffff0 i32.load
          i32.const 0x80000000 i32.load
          i32.add
          i32.const 0x40000000 i32.load
          i32.add))"#;
    let (mut store, instance) = setup(wat, Config::default());
    let go = func(&store, instance, "go");
    assert_eq!(
        store.invoke(go, &[], &mut no_host).unwrap(),
        vec![Value::I32(16)]
    );
    let Some(Extern::Memory(memory)) = store.get_export(instance, "mem") else {
        panic!()
    };
    assert_eq!(store.memory(memory).size_bytes(), 1 << 32);
    assert_eq!(store.memory(memory).resident_pages(), 2);
}

#[test]
fn simd_is_reported_as_unsupported() {
    let wat = r#"(module (func (result v128) v128.const i64x2 0 0))"#;
    match Module::from_text_or_binary(wat.as_bytes()) {
        Err(Error::Unsupported(feature)) => assert_eq!(feature, "simd"),
        other => panic!("expected unsupported simd, got {other:?}"),
    }
}
