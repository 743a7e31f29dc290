//! Ad-hoc timing of a few workloads (the real benchmark is `ferrite-bench`).
#![allow(clippy::unwrap_used)]
use ferrite_vm::{Config, Extern, HostFuncId, Module, Store, Trap, Value};
use std::time::Instant;

fn main() {
    let wat = r#"
    (module
      (func $fib (export "fib") (param i32) (result i32)
        local.get 0 i32.const 2 i32.lt_u
        if (result i32) local.get 0
        else local.get 0 i32.const 1 i32.sub call $fib local.get 0 i32.const 2 i32.sub call $fib i32.add end)
      (func (export "loop") (param $n i32) (result i32) (local $acc i32)
        block $done loop $next
          local.get $n i32.eqz br_if $done
          local.get $acc local.get $n i32.xor i32.const 3 i32.mul local.set $acc
          local.get $n i32.const 1 i32.sub local.set $n
          br $next end end
        local.get $acc))"#;
    let module = Module::from_text_or_binary(wat.as_bytes()).unwrap();
    let mut store = Store::new(Config::default());
    let instance = store.instantiate(&module, &[]).unwrap();
    let mut host =
        |_: &mut Store, _: HostFuncId, _: &[Value]| -> Result<Vec<Value>, Trap> { unreachable!() };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: Vec<(&str, i32)> = if args.len() == 2 {
        vec![(args[0].as_str(), args[1].parse().unwrap())]
    } else {
        vec![("fib", 30), ("loop", 100_000_000)]
    };
    for (name, arg) in runs {
        let Some(Extern::Func(f)) = store.get_export(instance, name) else {
            panic!()
        };
        let start = Instant::now();
        let r = store.invoke(f, &[Value::I32(arg)], &mut host).unwrap();
        println!("{name}({arg}) = {:?} in {:?}", r, start.elapsed());
    }
}
