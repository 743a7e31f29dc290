//! Interrupts raised from another thread: they stop loops and recursion that never
//! return on their own, and an interrupted execution resumes exactly where it
//! stopped (issue 2: the flag is checked at every loop back-edge and call).

#![allow(clippy::unwrap_used)]

use ferrite_vm::{Execution, Extern, Func, Instance, Module, RunOutcome, Store, Value};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

const PROGRAMS: &str = r#"
(module
  (global $iterations (export "iterations") (mut i64) (i64.const 0))
  ;; A tight loop that never ends: one back-edge, one global update.
  (func (export "spin")
    loop $again
      global.get $iterations
      i64.const 1
      i64.add
      global.set $iterations
      br $again
    end)
  ;; Recursion `depth` calls deep and back, forever.
  (func $descend (param $depth i32)
    local.get $depth
    if
      local.get $depth
      i32.const 1
      i32.sub
      call $descend
    end)
  (func (export "recurse_forever") (param $depth i32)
    loop $again
      local.get $depth
      call $descend
      global.get $iterations
      i64.const 1
      i64.add
      global.set $iterations
      br $again
    end)
  ;; A finite mix of both: `rounds` times, recursion to `depth` and a loop of
  ;; `depth` steps, mixed into a checksum.
  (func $fold (param $depth i32) (param $acc i64) (result i64)
    local.get $depth
    i32.eqz
    if (result i64)
      local.get $acc
    else
      local.get $depth
      i32.const 1
      i32.sub
      local.get $acc
      i64.const 31
      i64.mul
      local.get $depth
      i64.extend_i32_u
      i64.add
      call $fold
    end)
  (func (export "mixed") (param $rounds i32) (param $depth i32) (result i64)
    (local $acc i64) (local $i i32)
    loop $round
      local.get $depth
      local.get $acc
      call $fold
      local.set $acc
      i32.const 0
      local.set $i
      loop $step
        local.get $acc
        i64.const 7
        i64.rotl
        local.get $i
        i64.extend_i32_u
        i64.xor
        local.set $acc
        local.get $i
        i32.const 1
        i32.add
        local.tee $i
        local.get $depth
        i32.lt_u
        br_if $step
      end
      local.get $rounds
      i32.const 1
      i32.sub
      local.tee $rounds
      br_if $round
    end
    local.get $acc))
"#;

fn setup() -> (Store, Instance) {
    let module = Module::from_text_or_binary(PROGRAMS.as_bytes()).unwrap();
    let mut store = Store::new(ferrite_vm::Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    (store, instance)
}

fn func(store: &Store, instance: Instance, name: &str) -> Func {
    match store.get_export(instance, name) {
        Some(Extern::Func(func)) => func,
        other => panic!("export {name} is {other:?}"),
    }
}

fn iterations(store: &Store, instance: Instance) -> i64 {
    let Some(Extern::Global(global)) = store.get_export(instance, "iterations") else {
        panic!("no global `iterations`");
    };
    match store.global_get(global) {
        Value::I64(n) => n,
        other => panic!("iterations is {other:?}"),
    }
}

/// Raises `flag` from another thread after `delay`.
fn raise_later(flag: Arc<AtomicBool>, delay: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(delay);
        flag.store(true, Ordering::Relaxed);
    })
}

/// Runs `execution` without budget limit until another thread's interrupt stops
/// it, three times over, and checks that it made progress each time.
fn interrupt_three_times(store: &mut Store, instance: Instance, execution: &mut Execution) {
    let mut before = iterations(store, instance);
    for _ in 0..3 {
        let raiser = raise_later(execution.interrupt_handle(), Duration::from_millis(20));
        assert_eq!(
            execution.run(store, u64::MAX).unwrap(),
            RunOutcome::Interrupted
        );
        raiser.join().unwrap();
        assert!(
            !execution.interrupt_handle().load(Ordering::Relaxed),
            "the flag is lowered once seen"
        );
        let after = iterations(store, instance);
        assert!(after > before, "the program ran: {before} -> {after}");
        before = after;
    }
}

#[test]
fn interrupt_from_another_thread_stops_a_tight_infinite_loop() {
    let (mut store, instance) = setup();
    let spin = func(&store, instance, "spin");
    let mut execution = Execution::new(&store, spin, &[]).unwrap();
    interrupt_three_times(&mut store, instance, &mut execution);
}

#[test]
fn interrupt_from_another_thread_stops_deep_recursion() {
    let (mut store, instance) = setup();
    let recurse = func(&store, instance, "recurse_forever");
    let mut execution = Execution::new(&store, recurse, &[Value::I32(20_000)]).unwrap();
    interrupt_three_times(&mut store, instance, &mut execution);
}

#[test]
fn interrupted_execution_resumes_to_the_same_result() {
    let (mut store, instance) = setup();
    let mixed = func(&store, instance, "mixed");
    let args = [Value::I32(400), Value::I32(5_000)];
    let mut execution = Execution::new(&store, mixed, &args).unwrap();
    let RunOutcome::Finished(expected) = execution.run(&mut store, u64::MAX).unwrap() else {
        panic!("an uninterrupted run finishes");
    };

    let mut execution = Execution::new(&store, mixed, &args).unwrap();
    let flag = execution.interrupt_handle();
    let done = Arc::new(AtomicBool::new(false));
    let raiser = {
        let done = done.clone();
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                flag.store(true, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let mut interrupts = 0;
    let results = loop {
        match execution.run(&mut store, u64::MAX).unwrap() {
            RunOutcome::Finished(results) => break results,
            RunOutcome::Interrupted => interrupts += 1,
            other => panic!("unexpected {other:?}"),
        }
    };
    done.store(true, Ordering::Relaxed);
    raiser.join().unwrap();
    assert_eq!(results, expected);
    assert!(interrupts > 0, "the run was never interrupted");
}
