//! Executions: a wasm call in progress, as plain data, and the interpreter that
//! advances it.
//!
//! An [`Execution`] owns its value stack (64-bit cells) and its call frames
//! (function, code position, frame base). Nothing else describes where the
//! computation is, so an execution can be stopped after any instruction budget,
//! resumed later, and (in later issues) saved and restored. Wasm-to-wasm calls push
//! a frame; they never recurse on the host stack.
//!
//! The interpreter is in the submodules: `code` (the direct-threaded form a
//! function's bytecode is lowered to), `dispatch` (the handlers' calling scheme,
//! the trampoline, calls and returns) and `handlers` (one function per
//! instruction). They are the only modules of the crate with `unsafe` code.

pub(crate) mod code;
mod dispatch;
mod handlers;

use crate::{store::FuncEntity, trap::BacktraceFrame, Error, Func, HostFuncId, Store, Trap, Value};
use ferrite_core::{StackLimits, TrapCode};
use serde::{Deserialize, Serialize};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// One activation of a wasm function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The function being executed.
    pub func: Func,
    /// Position of the next instruction to execute in the function's executable
    /// code, in code units (16 bytes; most instructions take one, see
    /// `exec::code`). Deterministic for a given module: the same translation
    /// gives the same positions.
    pub ip: u32,
    /// Index of the frame's slot 0 in the value stack.
    pub base: u32,
}

/// Why [`Execution::run`] returned.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The call returned these results.
    Finished(Vec<Value>),
    /// The instruction budget is spent; call `run` again to continue.
    OutOfBudget,
    /// The interrupt flag was raised; the flag is cleared and `run` may continue.
    Interrupted,
    /// Wasm called a host function: answer with [`Execution::resume_host`].
    HostCall { id: HostFuncId, args: Vec<Value> },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Ready to run wasm code.
    Ready,
    /// A call of a host function is pending (the top-level function itself is a
    /// host function): `run` reports it.
    HostCallPending {
        id: HostFuncId,
        func: Func,
        base: u32,
    },
    /// Waiting for [`Execution::resume_host`] to supply the results.
    AwaitingHost { func: Func, base: u32 },
    /// Done: finished or trapped.
    Done,
}

/// A call in progress. All of its state is plain data.
#[derive(Debug)]
pub struct Execution {
    stack: Vec<u64>,
    frames: Vec<Frame>,
    state: State,
    func: Func,
    limits: StackLimits,
    interrupt: Arc<AtomicBool>,
}

enum Exit {
    Finished,
    OutOfFuel,
    Interrupted,
    HostCall {
        func: Func,
        id: HostFuncId,
        base: usize,
    },
}

impl Execution {
    /// Prepares a call of `func` with `args`.
    ///
    /// # Errors
    /// [`Error::Usage`] if the arguments do not match the function's parameters;
    /// [`Error::Trap`] if the first frame does not fit the stack limits.
    pub fn new(store: &Store, func: Func, args: &[Value]) -> Result<Self, Error> {
        let ty = store.func_type(func);
        if args.len() != ty.params().len()
            || args
                .iter()
                .zip(ty.params())
                .any(|(arg, param)| arg.ty() != *param)
        {
            let given: Vec<_> = args.iter().map(|a| a.ty().to_string()).collect();
            return Err(Error::usage(format!(
                "function of type {ty} called with arguments ({})",
                given.join(", ")
            )));
        }
        let limits = store.config.stack_limits;
        let mut execution = Self {
            stack: args.iter().map(|arg| arg.to_cell()).collect(),
            frames: Vec::new(),
            state: State::Ready,
            func,
            limits,
            interrupt: Arc::new(AtomicBool::new(false)),
        };
        match &store.funcs[func.0 as usize] {
            FuncEntity::Host { id, .. } => {
                execution.state = State::HostCallPending {
                    id: *id,
                    func,
                    base: 0,
                };
            }
            FuncEntity::Wasm { .. } => {
                push_frame(
                    &mut execution.stack,
                    &mut execution.frames,
                    limits,
                    store,
                    func,
                    0,
                )
                .map_err(Trap::new)?;
            }
        }
        Ok(execution)
    }

    /// A flag that, when set from any thread, makes `run` return
    /// [`RunOutcome::Interrupted`] soon: the interpreter polls it when it starts
    /// and at every loop back-edge and call, points where execution resumes
    /// exactly.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Uses `flag` as the interrupt flag (to share one flag among executions).
    pub fn set_interrupt_handle(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = flag;
    }

    /// The call frames, outermost first.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The value stack cells in use by the frames.
    pub fn stack(&self) -> &[u64] {
        &self.stack
    }

    /// Runs for about `budget` instructions (at least one loop iteration or call).
    ///
    /// Budget is charged at loop back-edges (the length of the loop body, in code
    /// units) and calls (one); the interrupt flag is polled at every loop
    /// back-edge and call, and when `run` starts (see [`Self::interrupt_handle`]).
    /// A run that stops for budget or interrupt continues exactly where it
    /// stopped.
    ///
    /// # Errors
    /// [`Error::Trap`] if execution traps (the execution is then done);
    /// [`Error::Usage`] if the execution is waiting for host results or is done.
    pub fn run(&mut self, store: &mut Store, budget: u64) -> Result<RunOutcome, Error> {
        match self.state {
            State::Ready => {}
            State::HostCallPending { id, func, base } => {
                let args = self.host_args(store, func, base as usize);
                self.state = State::AwaitingHost { func, base };
                return Ok(RunOutcome::HostCall { id, args });
            }
            State::AwaitingHost { .. } => {
                return Err(Error::usage("execution is waiting for host call results"))
            }
            State::Done => return Err(Error::usage("execution has already finished")),
        }
        let exit = execute(
            &mut self.stack,
            &mut self.frames,
            store,
            self.limits,
            budget.max(1),
            &self.interrupt,
        );
        match exit {
            Ok(Exit::Finished) => {
                self.state = State::Done;
                Ok(RunOutcome::Finished(self.results(store)))
            }
            Ok(Exit::OutOfFuel) => Ok(RunOutcome::OutOfBudget),
            Ok(Exit::Interrupted) => {
                self.interrupt.store(false, Ordering::Relaxed);
                Ok(RunOutcome::Interrupted)
            }
            Ok(Exit::HostCall { func, id, base }) => {
                let args = self.host_args(store, func, base);
                self.state = State::AwaitingHost {
                    func,
                    base: base as u32,
                };
                Ok(RunOutcome::HostCall { id, args })
            }
            Err(code) => {
                self.state = State::Done;
                // A page that could not be read or written back surfaces as an
                // out-of-bounds access; the memory latched the real cause.
                if code == TrapCode::MemoryOutOfBounds {
                    if let Some(error) = store.memories.iter().find_map(|m| m.storage_error()) {
                        return Err(Error::Storage(error.to_string()));
                    }
                }
                Err(Trap::with_backtrace(code, self.backtrace(store)).into())
            }
        }
    }

    /// Supplies the results of the pending host call.
    ///
    /// # Errors
    /// [`Error::Usage`] if no host call is pending or the results do not match the
    /// host function's result types.
    pub fn resume_host(&mut self, store: &Store, results: &[Value]) -> Result<(), Error> {
        let State::AwaitingHost { func, base } = self.state else {
            return Err(Error::usage("no host call is pending"));
        };
        let ty = store.func_type(func);
        if results.len() != ty.results().len()
            || results.iter().zip(ty.results()).any(|(v, t)| v.ty() != *t)
        {
            return Err(Error::usage(format!(
                "host function of type {ty} returned {results:?}"
            )));
        }
        let base = base as usize;
        if self.stack.len() < base + results.len() {
            self.stack.resize(base + results.len(), 0);
        }
        for (i, value) in results.iter().enumerate() {
            self.stack[base + i] = value.to_cell();
        }
        if self.frames.is_empty() {
            // The top-level function was the host function itself.
            self.state = State::Done;
            self.stack.truncate(results.len());
        } else {
            self.state = State::Ready;
        }
        Ok(())
    }

    /// Captures the execution as plain data, for a checkpoint.
    ///
    /// Only the value-stack cells the frames use are kept. The image describes
    /// positions in this build's executable code, so it is resumed by the same
    /// Ferrite version on the same module (see [`ExecutionImage::ENGINE`]).
    pub fn image(&self, store: &Store) -> ExecutionImage {
        let used = self.stack_in_use(store);
        ExecutionImage {
            engine: ExecutionImage::ENGINE.to_string(),
            func: self.func.0,
            frames: self
                .frames
                .iter()
                .map(|frame| FrameImage {
                    func: frame.func.0,
                    ip: frame.ip,
                    base: frame.base,
                })
                .collect(),
            stack: self.stack[..used].to_vec(),
            state: match self.state {
                State::Ready => StateImage::Ready,
                State::HostCallPending { id, func, base } => StateImage::HostCallPending {
                    id: id.0,
                    func: func.0,
                    base,
                },
                State::AwaitingHost { func, base } => {
                    StateImage::AwaitingHost { func: func.0, base }
                }
                State::Done => StateImage::Done,
            },
        }
    }

    /// Rebuilds an execution from `image`, in a store instantiated from the same
    /// module with the same imports (see [`Store::instantiate_for_restore`]).
    ///
    /// The image is checked against the store before it is used: functions exist
    /// and have the right kind, every frame lies within the stack limits, every
    /// position lies within its function's code.
    ///
    /// # Errors
    /// [`Error::Usage`] if the image was taken by another engine version, or does
    /// not fit this store.
    pub fn from_image(store: &Store, image: &ExecutionImage) -> Result<Self, Error> {
        if image.engine != ExecutionImage::ENGINE {
            return Err(Error::usage(format!(
                "the execution state was saved by engine {}, this is {}; \
                 it cannot be resumed by this build",
                image.engine,
                ExecutionImage::ENGINE
            )));
        }
        let bad =
            |what: &str| Error::usage(format!("execution state does not fit the module: {what}"));
        let limits = store.config.stack_limits;
        let func_of = |index: u32| {
            ((index as usize) < store.funcs.len())
                .then_some(Func(index))
                .ok_or_else(|| bad("function index out of range"))
        };
        let func = func_of(image.func)?;
        if image.frames.len() > limits.call_depth_max as usize
            || image.stack.len() > limits.value_slots_max as usize
        {
            return Err(bad("more frames or stack than the limits allow"));
        }
        let mut frames = Vec::with_capacity(image.frames.len());
        let mut base_min = 0;
        for frame in &image.frames {
            let frame_func = func_of(frame.func)?;
            let Some((compiled, _)) = store.compiled(frame_func) else {
                return Err(bad("a frame runs a host function"));
            };
            let end = frame.base as usize + usize::from(compiled.frame_slots);
            if (frame.base as usize) < base_min
                || end > image.stack.len()
                || frame.ip as usize >= compiled.code.len()
            {
                return Err(bad("a frame lies outside its stack or code"));
            }
            base_min = frame.base as usize;
            frames.push(Frame {
                func: frame_func,
                ip: frame.ip,
                base: frame.base,
            });
        }
        let host_call = |func: u32, base: u32| -> Result<Func, Error> {
            let func = func_of(func)?;
            let ty = store.func_type(func);
            let cells = ty.params().len().max(ty.results().len());
            if !matches!(store.funcs[func.0 as usize], FuncEntity::Host { .. })
                || base as usize + cells > limits.value_slots_max as usize
            {
                return Err(bad("a pending host call does not fit"));
            }
            Ok(func)
        };
        let state = match image.state {
            StateImage::Ready if frames.is_empty() => return Err(bad("no frame to run")),
            StateImage::Ready => State::Ready,
            StateImage::HostCallPending { id, func, base } => State::HostCallPending {
                id: HostFuncId(id),
                func: host_call(func, base)?,
                base,
            },
            StateImage::AwaitingHost { func, base } => State::AwaitingHost {
                func: host_call(func, base)?,
                base,
            },
            StateImage::Done => State::Done,
        };
        let mut stack = image.stack.clone();
        if let State::HostCallPending { func, base, .. } | State::AwaitingHost { func, base } =
            state
        {
            let ty = store.func_type(func);
            let end = base as usize + ty.params().len().max(ty.results().len());
            if stack.len() < end {
                stack.resize(end, 0);
            }
        }
        Ok(Self {
            stack,
            frames,
            state,
            func,
            limits,
            interrupt: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Value-stack cells in use: up to the end of the last-ending frame, or of the
    /// pending host call's arguments and results.
    fn stack_in_use(&self, store: &Store) -> usize {
        // A callee's frame may end before its caller's (its base lies in the
        // caller's operand slots), so every frame counts.
        let frames_end = self
            .frames
            .iter()
            .map(|frame| {
                let (compiled, _) = store
                    .compiled(frame.func)
                    .expect("frames run wasm functions");
                frame.base as usize + usize::from(compiled.frame_slots)
            })
            .max()
            .unwrap_or(0);
        let host_end = match self.state {
            State::HostCallPending { func, base, .. } | State::AwaitingHost { func, base } => {
                let ty = store.func_type(func);
                base as usize + ty.params().len().max(ty.results().len())
            }
            // A finished call keeps its results at the bottom of the stack.
            State::Done => store.func_type(self.func).results().len(),
            State::Ready => 0,
        };
        frames_end.max(host_end).min(self.stack.len())
    }

    /// The results of a finished top-level host call, if that is what finished.
    pub fn host_results(&self, store: &Store) -> Option<Vec<Value>> {
        (self.state == State::Done && self.frames.is_empty()).then(|| self.results(store))
    }

    fn host_args(&self, store: &Store, func: Func, base: usize) -> Vec<Value> {
        let ty = store.func_type(func);
        ty.params()
            .iter()
            .enumerate()
            .map(|(i, ty)| Value::from_cell(*ty, self.stack[base + i]))
            .collect()
    }

    fn results(&self, store: &Store) -> Vec<Value> {
        let ty = store.func_type(self.func);
        ty.results()
            .iter()
            .enumerate()
            .map(|(i, ty)| Value::from_cell(*ty, self.stack[i]))
            .collect()
    }

    fn backtrace(&self, store: &Store) -> Vec<BacktraceFrame> {
        self.frames
            .iter()
            .rev()
            .take(BACKTRACE_FRAMES_MAX)
            .filter_map(|frame| match &store.funcs[frame.func.0 as usize] {
                FuncEntity::Wasm { module, code, .. } => {
                    let func_index = module.imported_funcs + code;
                    Some(BacktraceFrame {
                        func_index,
                        func_name: module.names.funcs.get(&func_index).cloned(),
                        module_name: module.names.module.clone(),
                    })
                }
                FuncEntity::Host { .. } => None,
            })
            .collect()
    }
}

/// An [`Execution`] as plain data: what a checkpoint stores.
///
/// Functions are store indices (deterministic for a store instantiated the same
/// way); positions are code units of this engine's translation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionImage {
    /// The engine that took the image ([`ExecutionImage::ENGINE`]).
    pub engine: String,
    /// The function called at the top level.
    pub func: u32,
    /// The call frames, outermost first.
    pub frames: Vec<FrameImage>,
    /// The value-stack cells in use.
    pub stack: Vec<u64>,
    /// Whether wasm code or a host call comes next.
    pub state: StateImage,
}

impl ExecutionImage {
    /// Identifies the translation that code positions refer to: images are only
    /// resumed by the engine version that took them. Bump `ir` when the
    /// translation changes within a release.
    pub const ENGINE: &'static str = concat!("ferrite-vm ", env!("CARGO_PKG_VERSION"), " ir 1");
}

/// One frame of an [`ExecutionImage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameImage {
    pub func: u32,
    pub ip: u32,
    pub base: u32,
}

/// What an [`ExecutionImage`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateImage {
    Ready,
    HostCallPending { id: u32, func: u32, base: u32 },
    AwaitingHost { func: u32, base: u32 },
    Done,
}

/// The most frames a trap's backtrace keeps (the innermost ones): a runaway
/// recursion must not turn into a huge allocation.
pub const BACKTRACE_FRAMES_MAX: usize = 100;

/// Pushes a frame for wasm function `func` at stack index `base`: zeroes its
/// locals and loads its constants.
fn push_frame(
    stack: &mut Vec<u64>,
    frames: &mut Vec<Frame>,
    limits: StackLimits,
    store: &Store,
    func: Func,
    base: usize,
) -> Result<(), TrapCode> {
    let (compiled, _) = store
        .compiled(func)
        .expect("push_frame is only called for wasm functions");
    let end = base + usize::from(compiled.frame_slots);
    if frames.len() >= limits.call_depth_max as usize || end > limits.value_slots_max as usize {
        return Err(TrapCode::StackExhausted);
    }
    if stack.len() < end {
        stack.resize(end.max(1024).min(limits.value_slots_max as usize), 0);
    }
    let init = base + usize::from(compiled.params);
    stack[init..init + compiled.init.len()].copy_from_slice(&compiled.init);
    frames.push(Frame {
        func,
        ip: 0,
        base: base as u32,
    });
    Ok(())
}

/// The interpreter loop: runs the top frame until the call stack is empty, the
/// fuel is spent, the interrupt flag is seen, a host function is called, or a trap.
fn execute(
    stack: &mut Vec<u64>,
    frames: &mut Vec<Frame>,
    store: &mut Store,
    limits: StackLimits,
    fuel: u64,
    interrupt: &AtomicBool,
) -> Result<Exit, TrapCode> {
    let Store {
        funcs,
        instances,
        memories,
        tables,
        globals,
        elems,
        datas,
        ..
    } = store;
    let parts = dispatch::StoreParts {
        funcs,
        instances,
        memories,
        tables,
        globals,
        elems,
        datas,
    };
    dispatch::run(stack, frames, parts, limits, fuel, interrupt)
}
