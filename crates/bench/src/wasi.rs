//! The C workloads of `crates/bench/wasi/`: WASI commands run to completion in
//! Ferrite (with `ferrite_wasi`) and in wasmi (with `wasmi_wasi`).
//!
//! Each program prints one checksum line on stdout. Both runners capture stdout
//! in memory instead of printing it, so that the two engines do the same host
//! work and the driver can check that they print the same line. A run includes
//! instantiation and `_start`; decoding and translating the module happen once,
//! in `new`, and are not part of a run.

use crate::BenchError;
use ferrite_vm::{Config, Execution, Extern, Memory, Module, RunOutcome, Store, Value};
use ferrite_wasi::{Errno, WasiConfig, WasiCtx, WasiFunc};
use wasmi_wasi::wasi_common::pipe::WritePipe;

/// One C workload: a WASI command built from `wasi/<name>.c`.
#[derive(Debug, Clone, Copy)]
pub struct CWorkload {
    /// The program's name (its file name without extension).
    pub name: &'static str,
    /// The built module (`scripts/build-wasi-fixtures.sh`).
    pub wasm: &'static [u8],
}

/// All C workloads, in the order they are reported.
pub const C_WORKLOADS: &[CWorkload] = &[
    CWorkload {
        name: "compute",
        wasm: include_bytes!("../wasi/compute.wasm"),
    },
    CWorkload {
        name: "hashing",
        wasm: include_bytes!("../wasi/hashing.wasm"),
    },
    CWorkload {
        name: "sorting",
        wasm: include_bytes!("../wasi/sorting.wasm"),
    },
    CWorkload {
        name: "hashtable",
        wasm: include_bytes!("../wasi/hashtable.wasm"),
    },
    CWorkload {
        name: "pointer_chase",
        wasm: include_bytes!("../wasi/pointer_chase.wasm"),
    },
    CWorkload {
        name: "streaming",
        wasm: include_bytes!("../wasi/streaming.wasm"),
    },
];

/// The WASI command entry point.
const ENTRY: &str = "_start";

/// Bounds the captured stdout of one run (the workloads print one line).
const STDOUT_BYTES_MAX: usize = 1 << 16;

/// What a finished command left behind: its exit status and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
}

/// A C workload decoded and translated for Ferrite.
#[derive(Debug)]
pub struct FerriteCommand {
    module: Module,
    args: Vec<String>,
}

impl FerriteCommand {
    /// Decodes and translates `wasm`, to be run with `argv` `[name, args..]`.
    ///
    /// # Errors
    /// If the module is invalid.
    pub fn new(wasm: &[u8], name: &str, args: &[&str]) -> Result<Self, BenchError> {
        let module = Module::new(wasm)?;
        let args = std::iter::once(name)
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        Ok(Self { module, args })
    }

    /// Instantiates the module in a new store and runs `_start` to the end.
    ///
    /// # Errors
    /// If linking or instantiation fails, the module has no `_start` or memory, or
    /// the program traps.
    pub fn run(&self) -> Result<CommandOutput, BenchError> {
        let mut store = Store::new(Config::default());
        let imports = ferrite_wasi::link(&mut store, &self.module)?;
        let instance = store.instantiate(&self.module, &imports)?;
        let Some(Extern::Memory(memory)) = store.get_export(instance, "memory") else {
            return Err("no exported memory".into());
        };
        let Some(Extern::Func(start)) = store.get_export(instance, ENTRY) else {
            return Err(format!("no exported function `{ENTRY}`").into());
        };
        let mut wasi = WasiCtx::new(WasiConfig {
            args: self.args.clone(),
            ..WasiConfig::default()
        })?;
        let mut stdout = Vec::new();
        let mut execution = Execution::new(&store, start, &[])?;
        let status = loop {
            match execution.run(&mut store, u64::MAX)? {
                RunOutcome::HostCall { id, args } => {
                    let func = ferrite_wasi::host_func(id).ok_or("not a WASI function")?;
                    let results = if func == WasiFunc::FdWrite && arg_u32(&args, 0) == 1 {
                        capture_stdout(&mut store, memory, &args, &mut stdout)?
                    } else {
                        match wasi.call(Some(store.memory_mut(memory)), func, &args) {
                            Ok(results) => results,
                            Err(exit) => break exit.status,
                        }
                    };
                    execution.resume_host(&store, &results)?;
                }
                RunOutcome::Finished(_) => break 0,
                RunOutcome::OutOfBudget | RunOutcome::Interrupted => {}
            }
        };
        Ok(CommandOutput { status, stdout })
    }
}

fn arg_u32(args: &[Value], index: usize) -> u32 {
    match args.get(index) {
        Some(Value::I32(value)) => *value as u32,
        _ => u32::MAX,
    }
}

/// `fd_write(1, iovs, iovs_len, nwritten)` into `stdout` instead of the process's
/// stdout: gathers the buffers and reports them all written.
fn capture_stdout(
    store: &mut Store,
    memory: Memory,
    args: &[Value],
    stdout: &mut Vec<u8>,
) -> Result<Vec<Value>, BenchError> {
    let memory = store.memory_mut(memory);
    let (iovs, count, nwritten) = (arg_u32(args, 1), arg_u32(args, 2), arg_u32(args, 3));
    let mut written = 0u32;
    for i in 0..count {
        let mut iov = [0u8; 8];
        memory.read(u64::from(iovs) + u64::from(i) * 8, &mut iov)?;
        let [p0, p1, p2, p3, l0, l1, l2, l3] = iov;
        let (ptr, len) = (
            u32::from_le_bytes([p0, p1, p2, p3]),
            u32::from_le_bytes([l0, l1, l2, l3]),
        );
        if stdout.len() + len as usize > STDOUT_BYTES_MAX {
            return Err("the program printed too much".into());
        }
        let start = stdout.len();
        stdout.resize(start + len as usize, 0);
        memory.read(u64::from(ptr), &mut stdout[start..])?;
        written += len;
    }
    memory.write(u64::from(nwritten), &written.to_le_bytes())?;
    Ok(vec![Value::I32(i32::from(Errno::Success.code()))])
}

/// The store data of a wasmi command: its WASI context.
struct WasmiHost {
    wasi: wasmi_wasi::WasiCtx,
}

/// A C workload compiled for wasmi.
#[derive(Debug)]
pub struct WasmiCommand {
    engine: wasmi::Engine,
    module: wasmi::Module,
    args: Vec<String>,
}

impl WasmiCommand {
    /// Compiles `wasm` eagerly (so that runs translate nothing), to be run with
    /// `argv` `[name, args..]`.
    ///
    /// # Errors
    /// If the module is invalid.
    pub fn new(wasm: &[u8], name: &str, args: &[&str]) -> Result<Self, BenchError> {
        let mut config = wasmi::Config::default();
        config.compilation_mode(wasmi::CompilationMode::Eager);
        let engine = wasmi::Engine::new(&config);
        let module = wasmi::Module::new(&engine, wasm)?;
        let args = std::iter::once(name)
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        Ok(Self {
            engine,
            module,
            args,
        })
    }

    /// Instantiates the module in a new store and runs `_start` to the end.
    ///
    /// # Errors
    /// If linking or instantiation fails or the program traps.
    pub fn run(&self) -> Result<CommandOutput, BenchError> {
        let stdout = WritePipe::new_in_memory();
        let wasi = wasmi_wasi::WasiCtxBuilder::new()
            .args(&self.args)?
            .stdout(Box::new(stdout.clone()))
            .build();
        let mut store = wasmi::Store::new(&self.engine, WasmiHost { wasi });
        let mut linker = wasmi::Linker::<WasmiHost>::new(&self.engine);
        wasmi_wasi::add_to_linker(&mut linker, |host: &mut WasmiHost| &mut host.wasi)?;
        let instance = linker.instantiate_and_start(&mut store, &self.module)?;
        let start = instance.get_typed_func::<(), ()>(&store, ENTRY)?;
        let status = match start.call(&mut store, ()) {
            Ok(()) => 0,
            Err(error) => match error.i32_exit_status() {
                Some(status) => status as u32,
                None => return Err(error.into()),
            },
        };
        drop(store);
        let stdout = stdout
            .try_into_inner()
            .map_err(|_| "wasmi's stdout is still shared")?
            .into_inner();
        Ok(CommandOutput { status, stdout })
    }
}
