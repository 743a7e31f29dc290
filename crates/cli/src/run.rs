//! `ferrite run`: load a module, link WASI preview1, instantiate it, call one
//! export, print the results.
//!
//! Exit statuses, chosen to match `wasmtime run`:
//!
//! | status | meaning                                                                 |
//! |--------|-------------------------------------------------------------------------|
//! | 0      | the function returned; its results are on stdout, one per line         |
//! | N      | the program called `proc_exit(N)` (N below 126)                         |
//! | 1      | the file, module, export, arguments or a `--dir` are unusable (one      |
//! |        | `error:` line), or `proc_exit` was given 126 or more                    |
//! | 2      | the command line itself is wrong (clap errors, invalid stack limits):   |
//! |        | found before FILE is opened                                             |
//! | 134    | wasm trapped (128 + SIGABRT, as wasmtime; 3 on Windows, as wasmtime)    |

use crate::{
    args::parse_args,
    persist::{run_named, run_scratch, PersistOptions, Prepared},
};
use clap::Args;
use ferrite_vm::{
    Config, Error, Execution, Extern, ExternType, Func, FuncType, Memory, Module, RunOutcome,
    StackLimits, Store, Trap, Value,
};
use ferrite_wasi::{LinkError, Preopen, ProcExit, WasiConfig, WasiCtx};
use std::{
    fs::File,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

/// The export called when `--invoke` is not given (the WASI command entry point).
const ENTRY_POINT: &str = "_start";

/// The largest module file read. Bounds the host allocation when FILE is huge or
/// endless (`/dev/zero`); far above any real module.
const MODULE_BYTES_MAX: u64 = 256 << 20;

/// Trap backtraces print at most this many frames: a runaway recursion has up to
/// `--max-call-depth` of them, and the innermost ones are the informative ones.
const BACKTRACE_FRAMES_MAX: usize = 32;

/// Run a WebAssembly module (`.wasm` or `.wat`).
///
/// The module's imports are satisfied from WASI preview1 (`wasi_snapshot_preview1`),
/// it is instantiated and its start function (if any) is run. Then `_start` is
/// called, with ARGS as the program's arguments; or, with `--invoke`, the export
/// NAME is called with ARGS as its parameters and each result is printed on its
/// own line: integers in signed decimal, floats as Rust prints them (`1.5`, `-0`,
/// `inf`, `NaN`).
///
/// The program sees only the directories given with `--dir`; stdin, stdout and
/// stderr are ferrite's own.
///
/// Exit status: 0 on success; N if the program called `proc_exit(N)`; 1 if the
/// file, module, export, arguments or a directory are unusable; 2 for command-line
/// errors; 134 (3 on Windows) if the wasm code traps, as with wasmtime.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Give the program access to the host directory HOST, under the name GUEST
    /// (default: HOST as written). Repeatable. Paths outside the given
    /// directories, absolute or through `..` or symlinks, are unreachable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,

    /// Set the environment variable NAME to VAL for the program; `--env NAME`
    /// passes ferrite's own value of NAME, if any. Repeatable. The program sees no
    /// other variables.
    #[arg(long = "env", value_name = "NAME[=VAL]")]
    pub envs: Vec<String>,

    /// The program name the program sees as `argv[0]` (default: FILE as written).
    #[arg(long, value_name = "NAME")]
    pub argv0: Option<String>,

    /// Call the exported function NAME instead of `_start`.
    ///
    /// ARGS are parsed according to its parameter types: i32 and i64 in decimal
    /// (signed or unsigned range) or `0x` hexadecimal; f32 and f64 as decimal
    /// numbers, `nan`, `inf` or `-inf`.
    #[arg(long, value_name = "NAME")]
    pub invoke: Option<String>,

    /// The deepest wasm call nesting allowed before trapping with "call stack
    /// exhausted".
    #[arg(long, value_name = "N", default_value_t = StackLimits::default().call_depth_max)]
    pub max_call_depth: u32,

    /// The most 64-bit value stack slots (locals and operands of all frames
    /// together) allowed before trapping with "call stack exhausted".
    #[arg(long, value_name = "N", default_value_t = StackLimits::default().value_slots_max)]
    pub max_value_stack: u32,

    /// Run as the persistent process NAME: its state is checkpointed to the store
    /// (at start, every `--checkpoint-every`, on `ferrite checkpoint NAME`, on
    /// SIGTERM or SIGINT, and at its end) and `ferrite resume NAME` continues it
    /// after a stop, a crash or a power loss.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub persist: PersistOptions,

    /// The module to run: a binary `.wasm` or a text `.wat` file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The program's arguments; with `--invoke`, the arguments of the function,
    /// one per parameter. Everything after FILE is an argument, so options of the
    /// program and negative numbers need no `--`.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// How a run ended without failing.
#[derive(Debug)]
enum Finish {
    /// The called function returned these results.
    Returned(Vec<Value>),
    /// The program called `proc_exit`.
    Exited(ProcExit),
}

/// Why `ferrite run` failed.
#[derive(Debug)]
enum Failure {
    /// The command line is inconsistent (exit 2).
    Usage(String),
    /// Something outside the wasm code's control is unusable (exit 1).
    Unusable(String),
    /// The wasm code trapped.
    Trap(Trap),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::Trap(trap) => Failure::Trap(trap),
            other => Failure::Unusable(other.to_string()),
        }
    }
}

/// Runs the command and reports the outcome; returns the process exit status.
pub fn main(options: &RunOptions) -> ExitCode {
    let persistent = options.name.is_some();
    if !persistent && options.persist.checkpoint_every.is_some() {
        eprintln!("error: --checkpoint-every needs --name: only named processes are checkpointed");
        return ExitCode::from(2);
    }
    if persistent || options.persist.physical_heap.is_some() || options.persist.stats {
        let prepared = match prepare(options) {
            Ok(prepared) => prepared,
            Err(failure) => return report_failure(failure),
        };
        return match &options.name {
            Some(name) => run_named(name, prepared, &options.persist),
            None => run_scratch(prepared, &options.persist),
        };
    }
    match execute(options) {
        Ok(Finish::Returned(results)) => print_results(&results),
        Ok(Finish::Exited(exit)) => exit_code(exit),
        Err(failure) => report_failure(failure),
    }
}

fn report_failure(failure: Failure) -> ExitCode {
    match failure {
        Failure::Usage(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Failure::Unusable(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
        Failure::Trap(trap) => {
            print_trap(&trap);
            trap_exit_code()
        }
    }
}

/// Everything a process needs, checked before anything runs.
fn prepare(options: &RunOptions) -> Result<Prepared, Failure> {
    let stack_limits = StackLimits {
        call_depth_max: options.max_call_depth,
        value_slots_max: options.max_value_stack,
    };
    stack_limits.validate().map_err(Failure::Usage)?;
    if let Some(name) = &options.name {
        ferrite_ckpt::check_process_name(name).map_err(|e| Failure::Usage(e.to_string()))?;
    }
    let name = options.invoke.as_deref().unwrap_or(ENTRY_POINT);
    let wasi = wasi_config(options)?;
    let bytes = read_module(&options.file)
        .map_err(|e| Failure::Unusable(format!("cannot read {}: {e}", options.file.display())))?;
    let (binary, module) = load_module(&options.file, &bytes)?;
    let ty = export_func_type(&module, name, options.invoke.is_some())?;
    let invoke_args: &[String] = if options.invoke.is_some() {
        &options.args
    } else {
        &[]
    };
    let args = parse_args(invoke_args, ty.params())
        .map_err(|e| Failure::Unusable(format!("invalid arguments for `{name}`: {e}")))?;
    let invocation = ferrite_ckpt::Invocation {
        export: options.invoke.clone(),
        args: options.args.clone(),
        flags: std::collections::BTreeMap::new(),
    };
    Ok(Prepared {
        launch: ferrite_process::Launch {
            name: String::new(),
            module: binary,
            export: options.invoke.clone(),
            args,
            wasi,
            invocation,
        },
        stack_limits,
    })
}

/// Loads, checks, links, instantiates and calls; how the call ended.
fn execute(options: &RunOptions) -> Result<Finish, Failure> {
    let stack_limits = StackLimits {
        call_depth_max: options.max_call_depth,
        value_slots_max: options.max_value_stack,
    };
    stack_limits.validate().map_err(Failure::Usage)?;
    let name = options.invoke.as_deref().unwrap_or(ENTRY_POINT);
    let config = wasi_config(options)?;

    let bytes = read_module(&options.file)
        .map_err(|e| Failure::Unusable(format!("cannot read {}: {e}", options.file.display())))?;
    let (_, module) = load_module(&options.file, &bytes)?;
    let mut store = Store::new(Config { stack_limits });
    let imports = ferrite_wasi::link(&mut store, &module).map_err(link_failure)?;
    // Everything that can be checked without running code is checked before the
    // start function runs.
    let ty = export_func_type(&module, name, options.invoke.is_some())?;
    let invoke_args: &[String] = if options.invoke.is_some() {
        &options.args
    } else {
        &[]
    };
    let args = parse_args(invoke_args, ty.params())
        .map_err(|e| Failure::Unusable(format!("invalid arguments for `{name}`: {e}")))?;
    let mut wasi = WasiCtx::new(config).map_err(|e| Failure::Unusable(e.to_string()))?;

    let instance = store.instantiate(&module, &imports)?;
    let memory = match store.get_export(instance, "memory") {
        Some(Extern::Memory(memory)) => Some(memory),
        _ => None,
    };
    let mut process = Process {
        store: &mut store,
        wasi: &mut wasi,
        memory,
    };
    if let Some(start) = process.store.start_func(instance) {
        if let Finish::Exited(exit) = process.call(start, &[])? {
            return Ok(Finish::Exited(exit));
        }
    }
    let Some(Extern::Func(func)) = process.store.get_export(instance, name) else {
        unreachable!("export `{name}` was checked to be a function")
    };
    process.call(func, &args)
}

/// The WASI view of the command line: argv, environment and preopens.
fn wasi_config(options: &RunOptions) -> Result<WasiConfig, Failure> {
    let argv0 = options
        .argv0
        .clone()
        .unwrap_or_else(|| options.file.display().to_string());
    let mut args = vec![argv0];
    if options.invoke.is_none() {
        args.extend(options.args.iter().cloned());
    }
    let env = options
        .envs
        .iter()
        .filter_map(|spec| match spec.split_once('=') {
            Some((key, value)) => Some((key.to_owned(), value.to_owned())),
            // `--env NAME` passes the host's value, as wasmtime does.
            None => std::env::var(spec).ok().map(|value| (spec.clone(), value)),
        })
        .collect();
    let preopens = options
        .dirs
        .iter()
        .map(|spec| {
            let (host, guest) = spec.split_once("::").unwrap_or((spec, spec));
            if host.is_empty() || guest.is_empty() {
                return Err(Failure::Usage(format!(
                    "--dir `{spec}`: expected HOST or HOST::GUEST"
                )));
            }
            Ok(Preopen {
                host_path: PathBuf::from(host),
                guest_path: guest.to_owned(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(WasiConfig {
        args,
        env,
        preopens,
    })
}

/// The message for an import WASI cannot satisfy.
fn link_failure(error: LinkError) -> Failure {
    let message = match error {
        LinkError::Foreign { module, name, kind } => {
            format!(
                "module imports {module}::{name} ({kind}), which ferrite run cannot provide yet"
            )
        }
        LinkError::NotAFunction { name, kind } => format!(
            "module imports {}::{name} ({kind}), which ferrite run cannot provide yet",
            ferrite_wasi::abi::MODULE
        ),
        other => other.to_string(),
    };
    Failure::Unusable(message)
}

/// A WASI process: the store, the host, and the memory the host functions use.
struct Process<'a> {
    store: &'a mut Store,
    wasi: &'a mut WasiCtx,
    memory: Option<Memory>,
}

impl Process<'_> {
    /// Calls `func` with `args` to completion, answering its WASI calls.
    fn call(&mut self, func: Func, args: &[Value]) -> Result<Finish, Failure> {
        let mut execution = Execution::new(self.store, func, args)?;
        loop {
            match execution.run(self.store, u64::MAX)? {
                RunOutcome::Finished(results) => return Ok(Finish::Returned(results)),
                RunOutcome::OutOfBudget | RunOutcome::Interrupted => {}
                RunOutcome::HostCall { id, args } => {
                    let Some(wasi_func) = ferrite_wasi::host_func(id) else {
                        unreachable!("host function {id:?} was not created by ferrite_wasi::link")
                    };
                    let memory = self.memory.map(|memory| self.store.memory_mut(memory));
                    match self.wasi.call(memory, wasi_func, &args) {
                        Ok(results) => execution.resume_host(self.store, &results)?,
                        Err(exit) => return Ok(Finish::Exited(exit)),
                    }
                    if let Some(results) = execution.host_results(self.store) {
                        return Ok(Finish::Returned(results));
                    }
                }
            }
        }
    }
}

/// The status of a run that ended in `proc_exit`.
pub(crate) fn exit_code(exit: ProcExit) -> ExitCode {
    // WASI statuses are 0 to 125; wasmtime refuses the rest, and so does ferrite.
    match u8::try_from(exit.status) {
        Ok(status) if status < 126 => ExitCode::from(status),
        _ => {
            eprintln!("error: exit with invalid exit status outside of [0..126)");
            ExitCode::FAILURE
        }
    }
}

/// The file's bytes, at most [`MODULE_BYTES_MAX`] of them.
fn read_module(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MODULE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MODULE_BYTES_MAX {
        return Err(io::Error::other(format!(
            "file is larger than {} MiB, the largest module ferrite runs",
            MODULE_BYTES_MAX >> 20
        )));
    }
    Ok(bytes)
}

/// Decodes, validates and translates a `.wasm` or `.wat` file's bytes.
fn load_module(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Module), Failure> {
    // The same steps as `Module::from_text_or_binary`, but the text parser is told
    // the path, so that its diagnostics point at `FILE:line:column`.
    let binary = wat::Parser::new()
        .parse_bytes(Some(path), bytes)
        .map_err(|e| Error::Malformed(e.to_string()))?;
    let module = Module::new(&binary)?;
    Ok((binary.into_owned(), module))
}

/// The signature of the function exported as `name`.
fn export_func_type(module: &Module, name: &str, invoked: bool) -> Result<FuncType, Failure> {
    match module.export_type(name) {
        Some(ExternType::Func(ty)) => Ok(ty),
        Some(other) => Err(Failure::Unusable(format!(
            "export `{name}` is a {}, not a function",
            other.kind()
        ))),
        None if invoked => Err(Failure::Unusable(format!(
            "module has no export named `{name}`"
        ))),
        None => Err(Failure::Unusable(format!(
            "module has no {ENTRY_POINT} export; use --invoke NAME"
        ))),
    }
}

/// Prints one result per line on stdout.
pub(crate) fn print_results(results: &[Value]) -> ExitCode {
    let mut text = String::new();
    for value in results {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nobody is left to tell.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write results: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the trap reason and the innermost frames of its backtrace on stderr.
pub(crate) fn print_trap(trap: &Trap) {
    // Nothing useful can be done if stderr itself is gone.
    let _ = write_trap(&mut io::stderr().lock(), trap);
}

fn write_trap(out: &mut impl Write, trap: &Trap) -> io::Result<()> {
    // `Error`'s rendering carries the "wasm trap: " prefix.
    writeln!(out, "error: {}", Error::Trap(trap.clone()))?;
    let lines = trap.backtrace_lines();
    if !lines.is_empty() {
        writeln!(out, "wasm backtrace:")?;
    }
    for line in lines.iter().take(BACKTRACE_FRAMES_MAX) {
        writeln!(out, "{line}")?;
    }
    if lines.len() > BACKTRACE_FRAMES_MAX {
        writeln!(
            out,
            "  ... {} more frames",
            lines.len() - BACKTRACE_FRAMES_MAX
        )?;
    }
    Ok(())
}

/// The status of a trapped run, as wasmtime: it reports traps like an abort.
pub(crate) fn trap_exit_code() -> ExitCode {
    if cfg!(windows) {
        ExitCode::from(3)
    } else {
        ExitCode::from(128 + 6) // 128 + SIGABRT
    }
}
