//! Executions: a wasm call in progress, as plain data, and the interpreter that
//! advances it.
//!
//! An [`Execution`] owns its value stack (64-bit cells) and its call frames
//! (function, instruction index, frame base). Nothing else describes where the
//! computation is, so an execution can be stopped after any instruction budget,
//! resumed later, and (in later issues) saved and restored. Wasm-to-wasm calls push
//! a frame; they never recurse on the host stack.

use crate::{
    ops,
    store::{FuncEntity, InstanceEntity, TableEntity},
    translate::CompiledFunc,
    trap::BacktraceFrame,
    Error, Func, HostFuncId, Instance, Store, Trap, Value,
};
use ferrite_core::{StackLimits, TrapCode};
use ferrite_heap::LinearMemory;
use ferrite_ir::Instr;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// One activation of a wasm function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The function being executed.
    pub func: Func,
    /// Index of the next instruction to execute in the function's code.
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
    /// [`RunOutcome::Interrupted`] at the next loop back-edge or call.
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
    /// Budget is charged at loop back-edges (the length of the loop body) and calls
    /// (one), which is also where the interrupt flag is polled; a run that stops
    /// for budget or interrupt continues exactly where it stopped.
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
    enter_frame(stack, frames, limits, compiled, func, base)
}

#[inline]
fn enter_frame(
    stack: &mut Vec<u64>,
    frames: &mut Vec<Frame>,
    limits: StackLimits,
    compiled: &crate::translate::CompiledFunc,
    func: Func,
    base: usize,
) -> Result<(), TrapCode> {
    let end = base + usize::from(compiled.frame_slots);
    if frames.len() >= limits.call_depth_max as usize || end > limits.value_slots_max as usize {
        return Err(TrapCode::StackExhausted);
    }
    if stack.len() < end {
        grow_stack(stack, end, limits);
    }
    if compiled.locals > 0 {
        let locals = base + usize::from(compiled.params)..base + compiled.const_base();
        stack[locals].fill(0);
    }
    if !compiled.consts.is_empty() {
        let consts = base + compiled.const_base();
        stack[consts..consts + compiled.consts.len()].copy_from_slice(&compiled.consts);
    }
    frames.push(Frame {
        func,
        ip: 0,
        base: base as u32,
    });
    Ok(())
}

#[cold]
#[inline(never)]
fn grow_stack(stack: &mut Vec<u64>, end: usize, limits: StackLimits) {
    let target = end
        .max(stack.len() * 2)
        .max(1024)
        .min(limits.value_slots_max as usize);
    stack.resize(target.max(end), 0);
}

fn table<'a>(
    tables: &'a mut [TableEntity],
    inst: &InstanceEntity,
    index: impl Into<u32>,
) -> &'a mut TableEntity {
    &mut tables[inst.tables[index.into() as usize].0 as usize]
}

/// The interpreter loop: runs the top frame until the call stack is empty, the
/// fuel is spent, the interrupt flag is seen, a host function is called, or a trap.
#[allow(clippy::too_many_arguments)]
fn execute(
    stack: &mut Vec<u64>,
    frames: &mut Vec<Frame>,
    store: &mut Store,
    limits: StackLimits,
    mut fuel: u64,
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
    let funcs: &[FuncEntity] = funcs;
    let instances: &[InstanceEntity] = instances;
    let mut no_memory = LinearMemory::new(0, Some(0)).expect("an empty memory is valid");

    let frame = *frames.last().expect("execute needs a frame");
    // The next instruction, as a pointer into `code` (the position is
    // `pc - code.as_ptr()`, see `ip!`).
    let mut pc: *const Instr;
    let mut base: usize;
    let mut code: &[Instr];
    let mut cur_instance = Instance(u32::MAX);
    let mut inst: &InstanceEntity = &instances[0];
    let mut mem: &mut LinearMemory = &mut no_memory;
    // Slot 0 of the current frame. Recomputed whenever `stack` may have been
    // reallocated (a call) or the frame changes (call, return): see `load_frame`.
    let mut regs: *mut u64;

    // Loads the cached state of the frame on top of `frames`. Invalidates the
    // cached code, instance and memory: they belong to the frame's function.
    // Makes `instance` current: caches its entity and its memory. Called when a
    // call or return crosses into another instance; the cached memory belongs to
    // the instance, so it is invalidated here.
    macro_rules! switch_instance {
        ($instance:expr) => {{
            let instance: Instance = $instance;
            if instance != cur_instance {
                cur_instance = instance;
                inst = &instances[instance.0 as usize];
                mem = match inst.memory {
                    Some(memory) => &mut memories[memory.0 as usize],
                    None => &mut no_memory,
                };
            }
        }};
    }
    // Enters the code of a frame at instruction `ip` with slot 0 at `base`.
    // Invalidates `regs`: the stack may have been reallocated by a call.
    macro_rules! enter_code {
        ($compiled:expr, $ip:expr, $base:expr) => {{
            let compiled: &CompiledFunc = $compiled;
            code = &compiled.code;
            debug_assert!(($ip as usize) < code.len());
            // SAFETY: saved positions are instruction indices within the code.
            pc = unsafe { code.as_ptr().add($ip as usize) };
            base = $base;
            debug_assert!(base + usize::from(compiled.frame_slots) <= stack.len());
            // SAFETY: `enter_frame` made `stack` hold the frame's slots, so `base` is
            // in bounds (or one past the end for an empty frame).
            regs = unsafe { stack.as_mut_ptr().add(base) };
        }};
    }
    // Loads the cached state of a frame: its code, position and instance.
    macro_rules! load_frame {
        ($frame:expr) => {{
            let f: Frame = $frame;
            let FuncEntity::Wasm {
                module,
                code: index,
                instance,
                ..
            } = &funcs[f.func.0 as usize]
            else {
                unreachable!("frames hold wasm functions only")
            };
            switch_instance!(*instance);
            enter_code!(&module.code[*index as usize], f.ip, f.base as usize);
        }};
    }
    load_frame!(frame);

    // A slot of the current frame, as a place.
    macro_rules! r {
        ($slot:expr) => {
            // SAFETY: `regs` points at slot 0 of the current frame, whose
            // `frame_slots` cells lie within `stack` (`enter_frame`), and the
            // translator verified that every slot operand is below `frame_slots`
            // (`translate::verify`).
            (*unsafe { &mut *regs.add($slot.index()) })
        };
    }
    // The index of the instruction `pc` points at.
    macro_rules! ip {
        () => {
            // SAFETY: `pc` and `code` point into the same code slice.
            unsafe { pc.offset_from(code.as_ptr()) as usize }
        };
    }
    // Jumps to instruction `target` of the current code.
    macro_rules! jump {
        ($target:expr) => {
            // SAFETY: branch targets are verified to be within the code
            // (`translate::verify`).
            pc = unsafe { code.as_ptr().add($target as usize) }
        };
    }
    macro_rules! save_ip {
        ($ip:expr) => {
            if let Some(top) = frames.last_mut() {
                top.ip = $ip as u32;
            }
        };
    }
    macro_rules! trap {
        ($code:expr) => {{
            save_ip!(ip!() - 1);
            return Err($code);
        }};
    }
    macro_rules! tri {
        ($e:expr) => {
            match $e {
                Ok(value) => value,
                Err(code) => trap!(code),
            }
        };
    }
    macro_rules! i32_un {
        ($dst:ident, $src:ident, |$a:ident| $e:expr) => {{
            let $a = r!($src) as u32;
            r!($dst) = u64::from(($e) as u32);
        }};
    }
    macro_rules! i64_un {
        ($dst:ident, $src:ident, |$a:ident| $e:expr) => {{
            let $a = r!($src);
            r!($dst) = ($e) as u64;
        }};
    }
    macro_rules! i32_bin {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = r!($lhs) as u32;
            let $b = r!($rhs) as u32;
            r!($dst) = u64::from(($e) as u32);
        }};
    }
    macro_rules! i64_bin {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = r!($lhs);
            let $b = r!($rhs);
            r!($dst) = ($e) as u64;
        }};
    }
    macro_rules! f32_un {
        ($dst:ident, $src:ident, |$a:ident| $e:expr) => {{
            let $a = f32::from_bits(r!($src) as u32);
            r!($dst) = u64::from(f32::to_bits($e));
        }};
    }
    macro_rules! f64_un {
        ($dst:ident, $src:ident, |$a:ident| $e:expr) => {{
            let $a = f64::from_bits(r!($src));
            r!($dst) = f64::to_bits($e);
        }};
    }
    macro_rules! f32_bin {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = f32::from_bits(r!($lhs) as u32);
            let $b = f32::from_bits(r!($rhs) as u32);
            r!($dst) = u64::from(f32::to_bits($e));
        }};
    }
    macro_rules! f64_bin {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = f64::from_bits(r!($lhs));
            let $b = f64::from_bits(r!($rhs));
            r!($dst) = f64::to_bits($e);
        }};
    }
    macro_rules! f32_cmp {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = f32::from_bits(r!($lhs) as u32);
            let $b = f32::from_bits(r!($rhs) as u32);
            r!($dst) = u64::from($e);
        }};
    }
    macro_rules! f64_cmp {
        ($dst:ident, $lhs:ident, $rhs:ident, |$a:ident, $b:ident| $e:expr) => {{
            let $a = f64::from_bits(r!($lhs));
            let $b = f64::from_bits(r!($rhs));
            r!($dst) = u64::from($e);
        }};
    }
    macro_rules! load {
        ($dst:ident, $ptr:ident, $offset:ident, $n:literal, |$b:ident| $e:expr) => {{
            let addr = u64::from(r!($ptr) as u32) + u64::from($offset);
            match mem.load::<$n>(addr) {
                Ok($b) => r!($dst) = $e,
                Err(_) => trap!(TrapCode::MemoryOutOfBounds),
            }
        }};
    }
    macro_rules! store {
        ($ptr:ident, $value:ident, $offset:ident, |$v:ident| $e:expr) => {{
            let addr = u64::from(r!($ptr) as u32) + u64::from($offset);
            let $v = r!($value);
            if mem.store(addr, $e).is_err() {
                trap!(TrapCode::MemoryOutOfBounds);
            }
        }};
    }
    // Charges fuel and polls the interrupt flag at a back-edge or call; the state
    // is consistent (ip is the next instruction to run), so stopping is safe.
    macro_rules! checkpoint_point {
        ($cost:expr) => {{
            fuel = fuel.saturating_sub($cost);
            if fuel == 0 {
                save_ip!(ip!());
                return Ok(Exit::OutOfFuel);
            }
            if interrupt.load(Ordering::Relaxed) {
                save_ip!(ip!());
                return Ok(Exit::Interrupted);
            }
        }};
    }
    // A taken conditional branch; a backward one is a loop back-edge.
    macro_rules! branch_if {
        ($cond:expr, $target:expr) => {{
            if $cond {
                let target = $target as usize;
                let ip = ip!();
                jump!(target);
                if target < ip {
                    checkpoint_point!((ip - target) as u64);
                }
            }
        }};
    }
    macro_rules! call {
        ($callee:expr, $base:expr) => {{
            let callee: Func = $callee;
            let callee_base = base + $base.index();
            save_ip!(ip!());
            match &funcs[callee.0 as usize] {
                FuncEntity::Wasm {
                    module,
                    code: index,
                    instance,
                    ..
                } => {
                    let compiled = &module.code[*index as usize];
                    tri!(enter_frame(
                        stack,
                        frames,
                        limits,
                        compiled,
                        callee,
                        callee_base
                    ));
                    switch_instance!(*instance);
                    enter_code!(compiled, 0, callee_base);
                    checkpoint_point!(1);
                }
                FuncEntity::Host { id, .. } => {
                    return Ok(Exit::HostCall {
                        func: callee,
                        id: *id,
                        base: callee_base,
                    });
                }
            }
        }};
    }

    loop {
        debug_assert!(ip!() < code.len());
        // SAFETY: `pc` starts at 0 or a saved position and only ever becomes a
        // verified branch target or the next instruction; the translator verified
        // that targets are in bounds and that no path runs past the last
        // instruction (`translate::verify`).
        let instr = unsafe { &*pc };
        // SAFETY: as above; at most one past the last instruction, never read there.
        pc = unsafe { pc.add(1) };
        match *instr {
            Instr::Trap { code } => trap!(code),
            Instr::Br { target } => jump!(target),
            Instr::BrLoop { target } => {
                let cost = (ip!() - target as usize) as u64;
                jump!(target);
                checkpoint_point!(cost);
            }
            Instr::BrIfNez { cond, target } => branch_if!(r!(cond) as u32 != 0, target),
            Instr::BrIfEqz { cond, target } => branch_if!(r!(cond) as u32 == 0, target),
            Instr::BrI32Eq { lhs, rhs, target } => {
                branch_if!(r!(lhs) as u32 == r!(rhs) as u32, target);
            }
            Instr::BrI32Ne { lhs, rhs, target } => {
                branch_if!(r!(lhs) as u32 != r!(rhs) as u32, target);
            }
            Instr::BrI32LtS { lhs, rhs, target } => {
                branch_if!((r!(lhs) as i32) < r!(rhs) as i32, target);
            }
            Instr::BrI32LtU { lhs, rhs, target } => {
                branch_if!((r!(lhs) as u32) < r!(rhs) as u32, target);
            }
            Instr::BrI32GtS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i32 > r!(rhs) as i32, target);
            }
            Instr::BrI32GtU { lhs, rhs, target } => {
                branch_if!(r!(lhs) as u32 > r!(rhs) as u32, target);
            }
            Instr::BrI32LeS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i32 <= r!(rhs) as i32, target);
            }
            Instr::BrI32LeU { lhs, rhs, target } => {
                branch_if!(r!(lhs) as u32 <= r!(rhs) as u32, target);
            }
            Instr::BrI32GeS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i32 >= r!(rhs) as i32, target);
            }
            Instr::BrI32GeU { lhs, rhs, target } => {
                branch_if!(r!(lhs) as u32 >= r!(rhs) as u32, target);
            }
            Instr::BrI64Eq { lhs, rhs, target } => branch_if!(r!(lhs) == r!(rhs), target),
            Instr::BrI64Ne { lhs, rhs, target } => branch_if!(r!(lhs) != r!(rhs), target),
            Instr::BrI64LtS { lhs, rhs, target } => {
                branch_if!((r!(lhs) as i64) < r!(rhs) as i64, target);
            }
            Instr::BrI64LtU { lhs, rhs, target } => branch_if!(r!(lhs) < r!(rhs), target),
            Instr::BrI64GtS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i64 > r!(rhs) as i64, target);
            }
            Instr::BrI64GtU { lhs, rhs, target } => branch_if!(r!(lhs) > r!(rhs), target),
            Instr::BrI64LeS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i64 <= r!(rhs) as i64, target);
            }
            Instr::BrI64LeU { lhs, rhs, target } => branch_if!(r!(lhs) <= r!(rhs), target),
            Instr::BrI64GeS { lhs, rhs, target } => {
                branch_if!(r!(lhs) as i64 >= r!(rhs) as i64, target);
            }
            Instr::BrI64GeU { lhs, rhs, target } => branch_if!(r!(lhs) >= r!(rhs), target),
            Instr::BrTable { index, len } => {
                let entry = (r!(index) as u32).min(len - 1) as usize;
                // SAFETY: the `len` entries follow the `BrTable` (`translate::verify`).
                pc = unsafe { pc.add(entry) };
            }
            Instr::Copy { dst, src } => r!(dst) = r!(src),
            Instr::CopySpan {
                target,
                source,
                len,
            } => {
                // SAFETY: both ranges lie within the frame (`translate::verify`);
                // `ptr::copy` allows them to overlap.
                unsafe {
                    std::ptr::copy(
                        regs.add(source.index()),
                        regs.add(target.index()),
                        usize::from(len),
                    );
                }
            }
            Instr::ReturnSlot { src } => {
                r!(ferrite_ir::Slot(0)) = r!(src);
                frames.pop();
                match frames.last() {
                    Some(caller) => load_frame!(*caller),
                    None => return Ok(Exit::Finished),
                }
            }
            Instr::Return {} => {
                frames.pop();
                match frames.last() {
                    Some(caller) => load_frame!(*caller),
                    None => return Ok(Exit::Finished),
                }
            }
            Instr::CallInternal {
                func,
                base: callee_base,
            } => {
                // Same instance: no instance switch, no function table lookup.
                let callee = inst.funcs[(inst.module.imported_funcs + func) as usize];
                let compiled = &inst.module.code[func as usize];
                let callee_base = base + callee_base.index();
                save_ip!(ip!());
                tri!(enter_frame(
                    stack,
                    frames,
                    limits,
                    compiled,
                    callee,
                    callee_base
                ));
                enter_code!(compiled, 0, callee_base);
                checkpoint_point!(1);
            }
            Instr::CallImport {
                func,
                base: callee_base,
            } => {
                call!(inst.funcs[func as usize], callee_base);
            }
            Instr::CallIndirect {
                type_index,
                table: t,
                index,
                base: callee_base,
            } => {
                let entity = &tables[inst.tables[t as usize].0 as usize];
                let Some(&cell) = entity.cells.get(r!(index) as u32 as usize) else {
                    trap!(TrapCode::UndefinedElement)
                };
                if cell == 0 {
                    trap!(TrapCode::UninitializedElement);
                }
                let callee = Func((cell - 1) as u32);
                if funcs[callee.0 as usize].sig() != inst.types[type_index as usize] {
                    trap!(TrapCode::IndirectCallTypeMismatch);
                }
                call!(callee, callee_base);
            }
            Instr::Select {
                dst,
                cond,
                if_true,
                if_false,
            } => {
                r!(dst) = if r!(cond) as u32 != 0 {
                    r!(if_true)
                } else {
                    r!(if_false)
                };
            }
            Instr::RefIsNull { dst, src } => r!(dst) = u64::from(r!(src) == 0),
            Instr::RefFunc { dst, func } => r!(dst) = u64::from(inst.funcs[func as usize].0) + 1,
            Instr::GlobalGet { dst, global } => {
                r!(dst) = globals[inst.globals[global as usize].0 as usize].cell;
            }
            Instr::GlobalSet { src, global } => {
                globals[inst.globals[global as usize].0 as usize].cell = r!(src);
            }
            Instr::TableGet {
                dst,
                index,
                table: t,
            } => {
                let entity = table(tables, inst, t);
                if let Some(&cell) = entity.cells.get(r!(index) as u32 as usize) {
                    r!(dst) = cell
                } else {
                    trap!(TrapCode::TableOutOfBounds)
                }
            }
            Instr::TableSet {
                index,
                value,
                table: t,
            } => {
                let value = r!(value);
                let entity = table(tables, inst, t);
                if let Some(cell) = entity.cells.get_mut(r!(index) as u32 as usize) {
                    *cell = value
                } else {
                    trap!(TrapCode::TableOutOfBounds)
                }
            }
            Instr::TableSize { dst, table: t } => {
                r!(dst) = table(tables, inst, t).cells.len() as u64;
            }
            Instr::TableGrow {
                dst,
                init,
                delta,
                table: t,
            } => {
                let (init, delta) = (r!(init), r!(delta) as u32);
                let old = table(tables, inst, t).grow(delta, init);
                r!(dst) = u64::from(old.unwrap_or(u32::MAX));
            }
            Instr::TableFill {
                index,
                value,
                len,
                table: t,
            } => {
                let (start, value, len) = (r!(index) as u32 as usize, r!(value), r!(len) as u32);
                let entity = table(tables, inst, t);
                let Some(cells) = entity.cells.get_mut(start..start + len as usize) else {
                    trap!(TrapCode::TableOutOfBounds)
                };
                cells.fill(value);
            }
            Instr::TableCopy {
                target,
                source,
                len,
                target_table,
                source_table,
            } => {
                let (target, source) = (r!(target) as u32 as usize, r!(source) as u32 as usize);
                let len = r!(len) as u32 as usize;
                let source_cells = &table(tables, inst, source_table).cells;
                let Some(cells) = source_cells.get(source..source + len) else {
                    trap!(TrapCode::TableOutOfBounds)
                };
                let cells = cells.to_vec();
                let target_cells = &mut table(tables, inst, target_table).cells;
                let Some(slice) = target_cells.get_mut(target..target + len) else {
                    trap!(TrapCode::TableOutOfBounds)
                };
                slice.copy_from_slice(&cells);
            }
            Instr::TableInit {
                target,
                source,
                len,
                table: t,
                elem,
            } => {
                let (target, source) = (r!(target) as u32 as usize, r!(source) as u32 as usize);
                let len = r!(len) as u32 as usize;
                let segment = &elems[inst.elems[elem as usize] as usize];
                let Some(cells) = segment.get(source..source + len) else {
                    trap!(TrapCode::TableOutOfBounds)
                };
                let entity = table(tables, inst, t);
                let Some(slice) = entity.cells.get_mut(target..target + len) else {
                    trap!(TrapCode::TableOutOfBounds)
                };
                slice.copy_from_slice(cells);
            }
            Instr::ElemDrop { elem } => elems[inst.elems[elem as usize] as usize] = Box::new([]),
            Instr::MemorySize { dst } => r!(dst) = u64::from(mem.size_wasm_pages()),
            Instr::MemoryGrow { dst, delta } => {
                let old = mem.grow(r!(delta) as u32);
                r!(dst) = u64::from(old.unwrap_or(u32::MAX));
            }
            Instr::MemoryFill {
                address,
                value,
                len,
            } => {
                let (address, value) = (r!(address) as u32, r!(value) as u8);
                if mem
                    .fill(u64::from(address), value, u64::from(r!(len) as u32))
                    .is_err()
                {
                    trap!(TrapCode::MemoryOutOfBounds);
                }
            }
            Instr::MemoryCopy {
                target,
                source,
                len,
            } => {
                let (target, source) = (r!(target) as u32, r!(source) as u32);
                let len = u64::from(r!(len) as u32);
                if mem
                    .copy_within(u64::from(target), u64::from(source), len)
                    .is_err()
                {
                    trap!(TrapCode::MemoryOutOfBounds);
                }
            }
            Instr::MemoryInit {
                target,
                source,
                len,
                data,
            } => {
                let (target, source) = (r!(target) as u32, r!(source) as u32 as usize);
                let len = r!(len) as u32 as usize;
                let segment = &datas[inst.datas[data as usize] as usize];
                let Some(bytes) = segment.get(source..source + len) else {
                    trap!(TrapCode::MemoryOutOfBounds)
                };
                if mem.write(u64::from(target), bytes).is_err() {
                    trap!(TrapCode::MemoryOutOfBounds);
                }
            }
            Instr::DataDrop { data } => datas[inst.datas[data as usize] as usize] = Arc::new([]),

            Instr::I32Load { dst, ptr, offset } => {
                load!(dst, ptr, offset, 4, |b| u64::from(u32::from_le_bytes(b)));
            }
            Instr::I64Load { dst, ptr, offset } => {
                load!(dst, ptr, offset, 8, |b| u64::from_le_bytes(b));
            }
            Instr::F32Load { dst, ptr, offset } => {
                load!(dst, ptr, offset, 4, |b| u64::from(u32::from_le_bytes(b)));
            }
            Instr::F64Load { dst, ptr, offset } => {
                load!(dst, ptr, offset, 8, |b| u64::from_le_bytes(b));
            }
            Instr::I32Load8S { dst, ptr, offset } => {
                load!(dst, ptr, offset, 1, |b| u64::from(
                    i8::from_le_bytes(b) as i32 as u32
                ));
            }
            Instr::I32Load8U { dst, ptr, offset } => {
                load!(dst, ptr, offset, 1, |b| u64::from(b[0]));
            }
            Instr::I32Load16S { dst, ptr, offset } => {
                load!(dst, ptr, offset, 2, |b| u64::from(
                    i16::from_le_bytes(b) as i32 as u32
                ));
            }
            Instr::I32Load16U { dst, ptr, offset } => {
                load!(dst, ptr, offset, 2, |b| u64::from(u16::from_le_bytes(b)));
            }
            Instr::I64Load8S { dst, ptr, offset } => {
                load!(dst, ptr, offset, 1, |b| i8::from_le_bytes(b) as i64 as u64);
            }
            Instr::I64Load8U { dst, ptr, offset } => {
                load!(dst, ptr, offset, 1, |b| u64::from(b[0]));
            }
            Instr::I64Load16S { dst, ptr, offset } => {
                load!(dst, ptr, offset, 2, |b| i16::from_le_bytes(b) as i64 as u64);
            }
            Instr::I64Load16U { dst, ptr, offset } => {
                load!(dst, ptr, offset, 2, |b| u64::from(u16::from_le_bytes(b)));
            }
            Instr::I64Load32S { dst, ptr, offset } => {
                load!(dst, ptr, offset, 4, |b| i32::from_le_bytes(b) as i64 as u64);
            }
            Instr::I64Load32U { dst, ptr, offset } => {
                load!(dst, ptr, offset, 4, |b| u64::from(u32::from_le_bytes(b)));
            }
            Instr::I32Store { ptr, value, offset } | Instr::F32Store { ptr, value, offset } => {
                store!(ptr, value, offset, |v| (v as u32).to_le_bytes());
            }
            Instr::I64Store { ptr, value, offset } | Instr::F64Store { ptr, value, offset } => {
                store!(ptr, value, offset, |v| v.to_le_bytes());
            }
            Instr::I32Store8 { ptr, value, offset } | Instr::I64Store8 { ptr, value, offset } => {
                store!(ptr, value, offset, |v| [v as u8]);
            }
            Instr::I32Store16 { ptr, value, offset } | Instr::I64Store16 { ptr, value, offset } => {
                store!(ptr, value, offset, |v| (v as u16).to_le_bytes());
            }
            Instr::I64Store32 { ptr, value, offset } => {
                store!(ptr, value, offset, |v| (v as u32).to_le_bytes());
            }

            Instr::I32Eqz { dst, src } => i32_un!(dst, src, |a| a == 0),
            Instr::I64Eqz { dst, src } => i64_un!(dst, src, |a| a == 0),
            Instr::I32Clz { dst, src } => i32_un!(dst, src, |a| a.leading_zeros()),
            Instr::I32Ctz { dst, src } => i32_un!(dst, src, |a| a.trailing_zeros()),
            Instr::I32Popcnt { dst, src } => i32_un!(dst, src, |a| a.count_ones()),
            Instr::I64Clz { dst, src } => i64_un!(dst, src, |a| a.leading_zeros()),
            Instr::I64Ctz { dst, src } => i64_un!(dst, src, |a| a.trailing_zeros()),
            Instr::I64Popcnt { dst, src } => i64_un!(dst, src, |a| a.count_ones()),
            Instr::F32Abs { dst, src } => {
                r!(dst) = u64::from(r!(src) as u32 & 0x7fff_ffff);
            }
            Instr::F32Neg { dst, src } => r!(dst) = u64::from(r!(src) as u32 ^ 0x8000_0000),
            Instr::F32Ceil { dst, src } => f32_un!(dst, src, |a| ops::f32_quiet(a.ceil())),
            Instr::F32Floor { dst, src } => f32_un!(dst, src, |a| ops::f32_quiet(a.floor())),
            Instr::F32Trunc { dst, src } => f32_un!(dst, src, |a| ops::f32_quiet(a.trunc())),
            Instr::F32Nearest { dst, src } => {
                f32_un!(dst, src, |a| ops::f32_quiet(a.round_ties_even()))
            }
            Instr::F32Sqrt { dst, src } => f32_un!(dst, src, |a| a.sqrt()),
            Instr::F64Abs { dst, src } => r!(dst) = r!(src) & 0x7fff_ffff_ffff_ffff,
            Instr::F64Neg { dst, src } => r!(dst) = r!(src) ^ 0x8000_0000_0000_0000,
            Instr::F64Ceil { dst, src } => f64_un!(dst, src, |a| ops::f64_quiet(a.ceil())),
            Instr::F64Floor { dst, src } => f64_un!(dst, src, |a| ops::f64_quiet(a.floor())),
            Instr::F64Trunc { dst, src } => f64_un!(dst, src, |a| ops::f64_quiet(a.trunc())),
            Instr::F64Nearest { dst, src } => {
                f64_un!(dst, src, |a| ops::f64_quiet(a.round_ties_even()))
            }
            Instr::F64Sqrt { dst, src } => f64_un!(dst, src, |a| a.sqrt()),
            Instr::I32TruncF32S { dst, src } => {
                let v = tri!(ops::i32_trunc_f32_s(f32::from_bits(r!(src) as u32)));
                r!(dst) = u64::from(v as u32);
            }
            Instr::I32TruncF32U { dst, src } => {
                r!(dst) = u64::from(tri!(ops::i32_trunc_f32_u(f32::from_bits(r!(src) as u32))));
            }
            Instr::I32TruncF64S { dst, src } => {
                let v = tri!(ops::i32_trunc_f64_s(f64::from_bits(r!(src))));
                r!(dst) = u64::from(v as u32);
            }
            Instr::I32TruncF64U { dst, src } => {
                r!(dst) = u64::from(tri!(ops::i32_trunc_f64_u(f64::from_bits(r!(src)))));
            }
            Instr::I64ExtendI32S { dst, src } => r!(dst) = r!(src) as u32 as i32 as i64 as u64,
            Instr::I64ExtendI32U { dst, src } => r!(dst) = u64::from(r!(src) as u32),
            Instr::I64TruncF32S { dst, src } => {
                r!(dst) = tri!(ops::i64_trunc_f32_s(f32::from_bits(r!(src) as u32))) as u64;
            }
            Instr::I64TruncF32U { dst, src } => {
                r!(dst) = tri!(ops::i64_trunc_f32_u(f32::from_bits(r!(src) as u32)));
            }
            Instr::I64TruncF64S { dst, src } => {
                r!(dst) = tri!(ops::i64_trunc_f64_s(f64::from_bits(r!(src)))) as u64;
            }
            Instr::I64TruncF64U { dst, src } => {
                r!(dst) = tri!(ops::i64_trunc_f64_u(f64::from_bits(r!(src))));
            }
            Instr::F32ConvertI32S { dst, src } => {
                r!(dst) = u64::from((r!(src) as u32 as i32 as f32).to_bits());
            }
            Instr::F32ConvertI32U { dst, src } => {
                r!(dst) = u64::from((r!(src) as u32 as f32).to_bits());
            }
            Instr::F32ConvertI64S { dst, src } => {
                r!(dst) = u64::from((r!(src) as i64 as f32).to_bits());
            }
            Instr::F32ConvertI64U { dst, src } => r!(dst) = u64::from((r!(src) as f32).to_bits()),
            Instr::F32DemoteF64 { dst, src } => {
                r!(dst) = u64::from((f64::from_bits(r!(src)) as f32).to_bits());
            }
            Instr::F64ConvertI32S { dst, src } => {
                r!(dst) = f64::from(r!(src) as u32 as i32).to_bits();
            }
            Instr::F64ConvertI32U { dst, src } => r!(dst) = f64::from(r!(src) as u32).to_bits(),
            Instr::F64ConvertI64S { dst, src } => r!(dst) = (r!(src) as i64 as f64).to_bits(),
            Instr::F64ConvertI64U { dst, src } => r!(dst) = (r!(src) as f64).to_bits(),
            Instr::F64PromoteF32 { dst, src } => {
                r!(dst) = f64::from(f32::from_bits(r!(src) as u32)).to_bits();
            }
            Instr::I32Extend8S { dst, src } => i32_un!(dst, src, |a| a as i8 as i32),
            Instr::I32Extend16S { dst, src } => i32_un!(dst, src, |a| a as i16 as i32),
            Instr::I64Extend8S { dst, src } => i64_un!(dst, src, |a| a as i8 as i64),
            Instr::I64Extend16S { dst, src } => i64_un!(dst, src, |a| a as i16 as i64),
            Instr::I64Extend32S { dst, src } => i64_un!(dst, src, |a| a as i32 as i64),
            Instr::I32TruncSatF32S { dst, src } => {
                r!(dst) = u64::from(f32::from_bits(r!(src) as u32) as i32 as u32);
            }
            Instr::I32TruncSatF32U { dst, src } => {
                r!(dst) = u64::from(f32::from_bits(r!(src) as u32) as u32);
            }
            Instr::I32TruncSatF64S { dst, src } => {
                r!(dst) = u64::from(f64::from_bits(r!(src)) as i32 as u32);
            }
            Instr::I32TruncSatF64U { dst, src } => {
                r!(dst) = u64::from(f64::from_bits(r!(src)) as u32);
            }
            Instr::I64TruncSatF32S { dst, src } => {
                r!(dst) = f32::from_bits(r!(src) as u32) as i64 as u64;
            }
            Instr::I64TruncSatF32U { dst, src } => r!(dst) = f32::from_bits(r!(src) as u32) as u64,
            Instr::I64TruncSatF64S { dst, src } => r!(dst) = f64::from_bits(r!(src)) as i64 as u64,
            Instr::I64TruncSatF64U { dst, src } => r!(dst) = f64::from_bits(r!(src)) as u64,

            Instr::I32Eq { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a == b),
            Instr::I32Ne { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a != b),
            Instr::I32LtS { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| (a as i32) < b as i32);
            }
            Instr::I32LtU { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a < b),
            Instr::I32GtS { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a as i32 > b as i32),
            Instr::I32GtU { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a > b),
            Instr::I32LeS { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a as i32 <= b as i32),
            Instr::I32LeU { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a <= b),
            Instr::I32GeS { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a as i32 >= b as i32),
            Instr::I32GeU { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a >= b),
            Instr::I64Eq { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a == b),
            Instr::I64Ne { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a != b),
            Instr::I64LtS { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| (a as i64) < b as i64);
            }
            Instr::I64LtU { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a < b),
            Instr::I64GtS { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a as i64 > b as i64),
            Instr::I64GtU { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a > b),
            Instr::I64LeS { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a as i64 <= b as i64),
            Instr::I64LeU { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a <= b),
            Instr::I64GeS { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a as i64 >= b as i64),
            Instr::I64GeU { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a >= b),
            Instr::F32Eq { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a == b),
            Instr::F32Ne { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a != b),
            Instr::F32Lt { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a < b),
            Instr::F32Gt { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a > b),
            Instr::F32Le { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a <= b),
            Instr::F32Ge { dst, lhs, rhs } => f32_cmp!(dst, lhs, rhs, |a, b| a >= b),
            Instr::F64Eq { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a == b),
            Instr::F64Ne { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a != b),
            Instr::F64Lt { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a < b),
            Instr::F64Gt { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a > b),
            Instr::F64Le { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a <= b),
            Instr::F64Ge { dst, lhs, rhs } => f64_cmp!(dst, lhs, rhs, |a, b| a >= b),

            Instr::I32Add { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.wrapping_add(b)),
            Instr::I32Sub { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.wrapping_sub(b)),
            Instr::I32Mul { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.wrapping_mul(b)),
            Instr::I32DivS { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| tri!(ops::i32_div_s(
                    a as i32, b as i32
                )));
            }
            Instr::I32DivU { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| tri!(ops::i32_div_u(a, b)));
            }
            Instr::I32RemS { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| tri!(ops::i32_rem_s(
                    a as i32, b as i32
                )));
            }
            Instr::I32RemU { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| tri!(ops::i32_rem_u(a, b)));
            }
            Instr::I32And { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a & b),
            Instr::I32Or { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a | b),
            Instr::I32Xor { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a ^ b),
            Instr::I32Shl { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.wrapping_shl(b)),
            Instr::I32ShrS { dst, lhs, rhs } => {
                i32_bin!(dst, lhs, rhs, |a, b| (a as i32).wrapping_shr(b));
            }
            Instr::I32ShrU { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.wrapping_shr(b)),
            Instr::I32Rotl { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.rotate_left(b)),
            Instr::I32Rotr { dst, lhs, rhs } => i32_bin!(dst, lhs, rhs, |a, b| a.rotate_right(b)),
            Instr::I64Add { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a.wrapping_add(b)),
            Instr::I64Sub { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a.wrapping_sub(b)),
            Instr::I64Mul { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a.wrapping_mul(b)),
            Instr::I64DivS { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| tri!(ops::i64_div_s(
                    a as i64, b as i64
                )));
            }
            Instr::I64DivU { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| tri!(ops::i64_div_u(a, b)));
            }
            Instr::I64RemS { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| tri!(ops::i64_rem_s(
                    a as i64, b as i64
                )));
            }
            Instr::I64RemU { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| tri!(ops::i64_rem_u(a, b)));
            }
            Instr::I64And { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a & b),
            Instr::I64Or { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a | b),
            Instr::I64Xor { dst, lhs, rhs } => i64_bin!(dst, lhs, rhs, |a, b| a ^ b),
            Instr::I64Shl { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| a.wrapping_shl(b as u32));
            }
            Instr::I64ShrS { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| (a as i64).wrapping_shr(b as u32));
            }
            Instr::I64ShrU { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| a.wrapping_shr(b as u32));
            }
            Instr::I64Rotl { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| a.rotate_left((b & 63) as u32));
            }
            Instr::I64Rotr { dst, lhs, rhs } => {
                i64_bin!(dst, lhs, rhs, |a, b| a.rotate_right((b & 63) as u32));
            }
            Instr::F32Add { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| a + b),
            Instr::F32Sub { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| a - b),
            Instr::F32Mul { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| a * b),
            Instr::F32Div { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| a / b),
            Instr::F32Min { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| ops::f32_min(a, b)),
            Instr::F32Max { dst, lhs, rhs } => f32_bin!(dst, lhs, rhs, |a, b| ops::f32_max(a, b)),
            Instr::F32Copysign { dst, lhs, rhs } => {
                let (a, b) = (r!(lhs) as u32, r!(rhs) as u32);
                r!(dst) = u64::from((a & 0x7fff_ffff) | (b & 0x8000_0000));
            }
            Instr::F64Add { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| a + b),
            Instr::F64Sub { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| a - b),
            Instr::F64Mul { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| a * b),
            Instr::F64Div { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| a / b),
            Instr::F64Min { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| ops::f64_min(a, b)),
            Instr::F64Max { dst, lhs, rhs } => f64_bin!(dst, lhs, rhs, |a, b| ops::f64_max(a, b)),
            Instr::F64Copysign { dst, lhs, rhs } => {
                let (a, b) = (r!(lhs), r!(rhs));
                r!(dst) = (a & 0x7fff_ffff_ffff_ffff) | (b & 0x8000_0000_0000_0000);
            }
        }
    }
}
