//! Side-by-side benchmarks of Ferrite against wasmi.
//!
//! Every workload is a `.wat` module in `crates/bench/wat/` exporting
//! `run: (i32) -> i64`; the argument scales the work and the result is a checksum
//! that both engines must agree on. The same module runs in both engines, each
//! instantiated once (start function included), and only the `run` call is
//! measured.
//!
//! ```no_run
//! use ferrite_bench::{FerriteRunner, WasmiRunner, WORKLOADS};
//!
//! let fib = &WORKLOADS[0];
//! let wasm = fib.wasm();
//! let mut ferrite = FerriteRunner::new(&wasm)?;
//! let mut wasmi = WasmiRunner::new(&wasm)?;
//! assert_eq!(ferrite.run(fib.arg)?, wasmi.run(fib.arg)?);
//! # Ok::<(), ferrite_bench::BenchError>(())
//! ```
//!
//! Two drivers use this crate: `benches/workloads.rs` (criterion, one group per
//! workload with functions `ferrite` and `wasmi`, `cargo bench -p ferrite-bench`)
//! and `src/bin/ratio.rs` (a markdown table of median times and ratios,
//! `cargo run --release -p ferrite-bench --bin ratio`). The C workloads of
//! `wasi/` (WASI commands, see [`wasi`]) have their own table,
//! `cargo run --release -p ferrite-bench --bin ratio_wasi`.

use ferrite_vm::{Extern, HostFuncId, Store, Trap, TrapCode, Value};

pub mod wasi;

/// An error of either engine, or a workload module that does not fit the harness.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// One benchmark program.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Short name, also the criterion group name.
    pub name: &'static str,
    /// The module in the text format.
    pub wat: &'static str,
    /// The argument of `run`, chosen so that one call takes a few tens of
    /// milliseconds in Ferrite.
    pub arg: i32,
}

impl Workload {
    /// The module in the binary format.
    ///
    /// # Panics
    /// If the checked-in text does not parse (a bug in this crate).
    pub fn wasm(&self) -> Vec<u8> {
        wat::parse_str(self.wat).unwrap_or_else(|e| panic!("{}.wat: {e}", self.name))
    }
}

/// All workloads, in the order they are reported.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "fib",
        wat: include_str!("../wat/fib.wat"),
        arg: 28,
    },
    Workload {
        name: "loops",
        wat: include_str!("../wat/loops.wat"),
        arg: 20_000,
    },
    Workload {
        name: "sort",
        wat: include_str!("../wat/sort.wat"),
        arg: 60_000,
    },
    Workload {
        name: "hash",
        wat: include_str!("../wat/hash.wat"),
        arg: 50_000,
    },
    Workload {
        name: "matmul",
        wat: include_str!("../wat/matmul.wat"),
        arg: 100,
    },
    Workload {
        name: "memcopy",
        wat: include_str!("../wat/memcopy.wat"),
        arg: 300,
    },
];

/// The name of the function every workload exports.
const ENTRY: &str = "run";

/// A workload instantiated in Ferrite.
#[derive(Debug)]
pub struct FerriteRunner {
    store: Store,
    run: ferrite_vm::Func,
}

/// Workload modules import nothing, so no host function can be called.
fn no_host_functions(_: &mut Store, _: HostFuncId, _: &[Value]) -> Result<Vec<Value>, Trap> {
    Err(Trap::new(TrapCode::HostFailure))
}

impl FerriteRunner {
    /// Decodes and instantiates `wasm` (running its start function).
    ///
    /// # Errors
    /// If the module is invalid, its start function traps, or it does not export
    /// a function `run`.
    pub fn new(wasm: &[u8]) -> Result<Self, BenchError> {
        let module = ferrite_vm::Module::new(wasm)?;
        let mut store = Store::new(ferrite_vm::Config::default());
        let instance = store.instantiate_and_start(&module, &[], &mut no_host_functions)?;
        let Some(Extern::Func(run)) = store.get_export(instance, ENTRY) else {
            return Err(format!("no exported function `{ENTRY}`").into());
        };
        Ok(Self { store, run })
    }

    /// Calls `run(arg)`.
    ///
    /// # Errors
    /// If the call traps or `run` does not have type `(i32) -> i64`.
    pub fn run(&mut self, arg: i32) -> Result<i64, BenchError> {
        let results = self
            .store
            .invoke(self.run, &[Value::I32(arg)], &mut no_host_functions)?;
        match results.as_slice() {
            [Value::I64(result)] => Ok(*result),
            other => Err(format!("`{ENTRY}` returned {other:?}, expected one i64").into()),
        }
    }
}

/// A workload instantiated in wasmi.
#[derive(Debug)]
pub struct WasmiRunner {
    store: wasmi::Store<()>,
    run: wasmi::TypedFunc<i32, i64>,
}

impl WasmiRunner {
    /// Compiles (eagerly, so that no translation happens in measured calls) and
    /// instantiates `wasm`, running its start function.
    ///
    /// # Errors
    /// If the module is invalid, its start function traps, or it does not export
    /// `run: (i32) -> i64`.
    pub fn new(wasm: &[u8]) -> Result<Self, BenchError> {
        let mut config = wasmi::Config::default();
        config.compilation_mode(wasmi::CompilationMode::Eager);
        let engine = wasmi::Engine::new(&config);
        let module = wasmi::Module::new(&engine, wasm)?;
        let mut store = wasmi::Store::new(&engine, ());
        let linker = wasmi::Linker::<()>::new(&engine);
        let instance = linker.instantiate_and_start(&mut store, &module)?;
        let run = instance.get_typed_func::<i32, i64>(&store, ENTRY)?;
        Ok(Self { store, run })
    }

    /// Calls `run(arg)`.
    ///
    /// # Errors
    /// If the call traps.
    pub fn run(&mut self, arg: i32) -> Result<i64, BenchError> {
        Ok(self.run.call(&mut self.store, arg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `workload` with `arg` in both engines and returns the agreed result.
    fn agreed(name: &str, arg: i32) -> i64 {
        let workload = WORKLOADS
            .iter()
            .find(|w| w.name == name)
            .expect("known workload");
        let wasm = workload.wasm();
        let ferrite = FerriteRunner::new(&wasm)
            .expect("ferrite")
            .run(arg)
            .expect("ferrite run");
        let wasmi = WasmiRunner::new(&wasm)
            .expect("wasmi")
            .run(arg)
            .expect("wasmi run");
        assert_eq!(ferrite, wasmi, "{name}({arg})");
        ferrite
    }

    #[test]
    fn workloads_compute_what_they_claim() {
        assert_eq!(agreed("fib", 20), 6765);
        // Stopping times of 1..=3 are 0, 1, 7; the checksum is (0 << 10) + (1 << 5) + 7.
        assert_eq!(agreed("loops", 3), 39);
        assert_ne!(agreed("sort", 1000), -1, "the array is sorted");
        let hash = agreed("hash", 1000);
        let misses = hash >> 40;
        assert!(
            misses > 900 && misses <= 1000,
            "most unrelated keys miss: {misses}"
        );
        // All-ones matrices would give n^3; these give a fixed, non-trivial sum.
        assert!(f64::from_bits(agreed("matmul", 10) as u64).is_finite());
        assert_ne!(agreed("memcopy", 3), 0);
    }

    #[test]
    fn workload_results_do_not_depend_on_earlier_calls() {
        for workload in WORKLOADS {
            let mut ferrite = FerriteRunner::new(&workload.wasm()).expect("ferrite");
            let first = ferrite.run(3).expect("first call");
            assert_eq!(
                ferrite.run(3).expect("second call"),
                first,
                "{}",
                workload.name
            );
        }
    }
}
