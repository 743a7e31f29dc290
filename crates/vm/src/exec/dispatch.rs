//! The interpreter's dispatch: one handler function per instruction, each ending in
//! a call of the next instruction's handler.
//!
//! A handler receives the interpreter's hot state as arguments, which the calling
//! convention keeps in registers: the context (everything else, behind a pointer),
//! the instruction pointer, a pointer to slot 0 of the current frame, the current
//! memory, and the remaining fuel and chain budget (one [`Meter`]). It executes
//! its instruction and ends by calling the next instruction's handler, whose
//! address starts the next instruction (direct threading, see `code`). In
//! optimized builds that call is a sibling call, compiled to a jump: the state
//! never leaves registers and there is no central `match`.
//!
//! Nothing relies on the sibling-call optimization for correctness. The handlers
//! of loop back-edges, calls, returns and `Tick`s spend one unit of the *chain
//! budget* (see [`Meter`]); when it runs out, the handler stores the state in the
//! context and returns to the trampoline ([`run`]), which starts a new chain. The
//! translator puts a `Tick` wherever more than `translate::CHAIN_RUN_MAX` other
//! handlers could run in a row (straight-line code, forward jumps, branches not
//! taken: all forward, so the longest such run is a property of the code). So even
//! when the calls are real calls (debug builds), at most
//! `CHAIN_MAX * (CHAIN_RUN_MAX + 1)` handler frames are ever on the host stack,
//! and the handlers that do most of the work pay nothing for the budget.
//!
//! This module, `code` and `handlers` are the dispatch modules where `unsafe` is
//! allowed: unchecked reads of instructions, slots and the current memory,
//! justified by `translate::verify`, `code::lower` and the frame set-up in
//! `enter_wasm`.

use super::{
    code::{payload, CodeUnit},
    handlers, Exit, Frame,
};
use crate::{
    store::{FuncEntity, GlobalEntity, InstanceEntity, TableEntity},
    translate::{CompiledFunc, INIT_CELLS_MIN},
    Func, Instance,
};
use ferrite_core::{StackLimits, TrapCode};
use ferrite_heap::LinearMemory;
use ferrite_ir::Slot;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// Budget-spending handlers per chain before control returns to the trampoline:
/// bounds the host stack use of a chain when calls are not turned into jumps, to
/// `CHAIN_MAX * (CHAIN_RUN_MAX + 1)` handler frames.
///
/// Debug builds, where no call becomes a jump and a handler frame takes up to
/// 1.2 KiB (measured), use a small budget: at most about 300 KiB of stack. An
/// optimized build that somehow missed a jump would use at most 32 * 65 frames of
/// a few dozen bytes. The trampoline round trip is a few instructions, so the
/// budget costs nothing measurable either way.
pub(super) const CHAIN_MAX: u32 = if cfg!(debug_assertions) { 4 } else { 32 };

/// What a chain of handlers reports to the trampoline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// The chain budget ran out; the state is saved in the context: continue.
    Yield,
    /// Execution stopped; the reason is in `Ctx::exit`.
    Stop,
}

/// The function that executes one instruction and continues with the next.
pub(super) type Handler = fn(&mut Ctx<'_>, Pc, Regs, Mem, Meter) -> Flow;

/// The remaining fuel and chain budget, packed into one register: the fuel in the
/// high bits, the chain budget in the low [`CHAIN_BITS`] (so that a handler needs
/// one argument register for both, leaving one more for its own work).
///
/// The fuel is capped at 2^55 - 1 units (the value stays positive as an `i64`),
/// which at a billion units a second lasts a year: a budget of `u64::MAX` still
/// means "unlimited" in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meter(i64);

/// Bits of the chain budget in a [`Meter`].
const CHAIN_BITS: u32 = 8;
const CHAIN_MASK: i64 = (1 << CHAIN_BITS) - 1;
const _: () = assert!((CHAIN_MAX as i64) <= CHAIN_MASK);

impl Meter {
    /// A meter with `fuel` (at least 1, capped) and an empty chain budget.
    fn new(fuel: u64) -> Meter {
        let fuel = fuel.clamp(1, (i64::MAX >> CHAIN_BITS) as u64) as i64;
        Meter(fuel << CHAIN_BITS)
    }

    /// The same fuel with a full chain budget, for a new chain.
    #[inline(always)]
    fn with_fresh_chain(self) -> Meter {
        Meter((self.0 & !CHAIN_MASK) | i64::from(CHAIN_MAX))
    }

    #[inline(always)]
    pub(super) fn chain_spent(self) -> bool {
        self.0 & CHAIN_MASK == 0
    }

    /// One unit of chain budget less; the budget is not spent (`chain_spent`).
    #[inline(always)]
    pub(super) fn spend_chain(self) -> Meter {
        Meter(self.0 - 1)
    }

    /// Charges `cost` fuel, or `None` if that leaves none: execution stops then
    /// (the fuel saturates at zero, as a budget does). `cost` is at most 2^32.
    #[inline(always)]
    pub(super) fn charge(self, cost: u64) -> Option<Meter> {
        self.charge_precomputed(Meter::charge_of(cost))
    }

    /// `cost` fuel as the value [`Self::charge_precomputed`] subtracts (so that
    /// code can hold it ready: see `BrLoop`).
    #[inline(always)]
    pub(super) fn charge_of(cost: u64) -> i64 {
        (cost as i64) << CHAIN_BITS
    }

    /// Charges fuel given as [`Self::charge_of`] computes it.
    #[inline(always)]
    pub(super) fn charge_precomputed(self, charge: i64) -> Option<Meter> {
        // Fuel left after the charge must be at least 1 unit: the difference must
        // exceed the chain bits (it is negative when the charge exceeds the fuel,
        // which cannot wrap: both are far below 2^63).
        let left = self.0 - charge;
        (left > CHAIN_MASK).then_some(Meter(left))
    }
}

/// Hides a constant from the optimizer, so that a cold function returning it
/// stays a tail call (a known constant result turns `return f()` into
/// `f(); return constant`, which costs every caller a stack frame).
#[inline(always)]
fn opaque(flow: Flow) -> Flow {
    std::hint::black_box(flow)
}

/// Position of an instruction: a pointer to its first unit in the current
/// function's code.
///
/// Invariant: a `Pc` that is read points at the first unit of an instruction of
/// the current code, as written by `code::lower`. It starts at 0 or a saved
/// position, and only ever moves past the instruction it points at (to the next
/// one, after one that is not an unconditional transfer) or to a branch target;
/// `translate::verify` checks that branch targets are in the code and that the
/// code ends with an unconditional transfer, and `lower` converts both to units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pc(pub(super) *const CodeUnit);

impl Pc {
    /// The handler of the instruction at this position.
    #[inline(always)]
    fn handler(self) -> Handler {
        // SAFETY: see the type invariant; `lower` writes a `Handler` at the start
        // of every instruction.
        unsafe { self.0.cast::<Handler>().read() }
    }

    /// The operands of the instruction at this position, whose payload type is
    /// `P`.
    ///
    /// # Safety
    /// The instruction at this position has the payload `P`: the caller is its
    /// handler (`lower` pairs each handler with its own instruction's payload).
    #[inline(always)]
    pub(super) unsafe fn operands<P: Copy>(self) -> P {
        // SAFETY: see the type invariant and the caller's contract: `lower` wrote
        // a `P` (align 1) right after the handler address.
        unsafe { self.0.cast::<u8>().add(8).cast::<P>().read() }
    }

    /// The instruction `units` code units on: the next instruction after one of
    /// that size.
    #[inline(always)]
    pub(super) fn skip(self, units: usize) -> Pc {
        Pc(self.0.wrapping_add(units))
    }

    /// The instruction `offset` bytes away (a branch target: branch offsets in
    /// the executable code are in bytes, see `code::lower`).
    #[inline(always)]
    pub(super) fn jump(self, offset: i32) -> Pc {
        Pc(self.0.cast::<u8>().wrapping_offset(offset as isize).cast())
    }
}

/// Slot 0 of the current frame.
///
/// Invariant: the frame's `frame_slots` cells lie within the value stack
/// (`enter_wasm`, `Ctx::load_frame`), and the stack is not reallocated while a
/// `Regs` for it is in use (calls that grow it recompute `Regs`).
/// `translate::verify` checks that every slot operand is below `frame_slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Regs(*mut u64);

impl Regs {
    /// Reads a slot.
    #[inline(always)]
    pub(super) fn get(self, slot: Slot) -> u64 {
        // SAFETY: see the type invariant.
        unsafe { *self.0.add(slot.index()) }
    }

    /// Writes a slot.
    #[inline(always)]
    pub(super) fn set(self, slot: Slot, value: u64) {
        // SAFETY: see the type invariant.
        unsafe { *self.0.add(slot.index()) = value }
    }

    /// Copies `len` slots from `source` to `target` (overlap allowed).
    #[inline(always)]
    pub(super) fn copy_span(self, target: Slot, source: Slot, len: u16) {
        // SAFETY: see the type invariant; `verify` checks both spans lie within the
        // frame. `ptr::copy` allows overlap.
        unsafe {
            std::ptr::copy(
                self.0.add(source.index()),
                self.0.add(target.index()),
                usize::from(len),
            );
        }
    }
}

/// The memory of the current instance (an empty one if it has none).
///
/// Invariant: points to a `LinearMemory` that lives for the whole of `execute`
/// and that nothing else accesses while handlers run (the store's memories are
/// reached only through `Ctx`'s raw pointer during execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mem(*mut LinearMemory);

impl Mem {
    /// The memory, for the duration of one access.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(super) fn get<'m>(self) -> &'m mut LinearMemory {
        // SAFETY: see the type invariant. Handlers use the reference within one
        // instruction and never hold two at once.
        unsafe { &mut *self.0 }
    }
}

/// Everything a handler may need besides its register arguments.
pub(super) struct Ctx<'a> {
    /// Start of the current function's code, for positions.
    pub(super) code: *const CodeUnit,
    /// The current instance.
    pub(super) inst: &'a InstanceEntity,
    pub(super) instance: Instance,
    /// The functions the current instance defines (after its imports), as
    /// `CallInternal` numbers them, and their code: cached with the instance.
    /// Both have one entry per function the module defines (asserted in
    /// `switch_instance_slow`).
    pub(super) defined_funcs: &'a [Func],
    pub(super) defined_code: &'a [CompiledFunc],
    pub(super) interrupt: &'a AtomicBool,
    pub(super) stack: &'a mut Vec<u64>,
    /// `stack.len()` capped at the value-slot limit: a frame ending at or below it
    /// fits without further checks.
    pub(super) slots_ready: usize,
    pub(super) frames: &'a mut Vec<Frame>,
    /// `frames.capacity()` capped at the call depth limit: a frame can be pushed
    /// without further checks while `frames.len()` is below it.
    frames_ready: usize,
    /// The code of each caller whose callee's frame was pushed during this run,
    /// innermost last (null for a caller in another instance), so that a return
    /// finds its caller's code without looking it up through the function. It
    /// mirrors the top `returns.len()` frames of `frames`: every call pushes one
    /// entry, every return pops one; frames from earlier runs have none. Derived
    /// state, dropped when the run ends.
    returns: Vec<*const CodeUnit>,
    pub(super) funcs: &'a [FuncEntity],
    pub(super) instances: &'a [InstanceEntity],
    memories: *mut LinearMemory,
    memories_len: usize,
    no_memory: *mut LinearMemory,
    pub(super) tables: &'a mut [TableEntity],
    pub(super) globals: &'a mut [GlobalEntity],
    pub(super) elems: &'a mut [Box<[u64]>],
    pub(super) datas: &'a mut [Arc<[u8]>],
    pub(super) limits: StackLimits,
    /// The register state of a chain that yielded: where the next chain starts.
    resume: (Pc, Regs, Mem, Meter),
    /// Why execution stopped (set with `Flow::Stop`).
    exit: Option<Result<Exit, TrapCode>>,
}

/// The parts of the store the interpreter uses.
pub(super) struct StoreParts<'a> {
    pub(super) funcs: &'a [FuncEntity],
    pub(super) instances: &'a [InstanceEntity],
    pub(super) memories: &'a mut [LinearMemory],
    pub(super) tables: &'a mut [TableEntity],
    pub(super) globals: &'a mut [GlobalEntity],
    pub(super) elems: &'a mut [Box<[u64]>],
    pub(super) datas: &'a mut [Arc<[u8]>],
}

/// Runs the frame on top of `frames` until execution stops: the trampoline that
/// starts each chain of handlers.
pub(super) fn run(
    stack: &mut Vec<u64>,
    frames: &mut Vec<Frame>,
    store: StoreParts<'_>,
    limits: StackLimits,
    fuel: u64,
    interrupt: &AtomicBool,
) -> Result<Exit, TrapCode> {
    let StoreParts {
        funcs,
        instances,
        memories,
        tables,
        globals,
        elems,
        datas,
    } = store;
    let mut no_memory = LinearMemory::new(0, Some(0)).expect("an empty memory is valid");
    let top = *frames.last().expect("run needs a frame");
    let mut ctx = Ctx {
        code: std::ptr::null(),
        inst: &instances[0],
        instance: Instance(u32::MAX),
        defined_funcs: &[],
        defined_code: &[],
        interrupt,
        slots_ready: stack.len().min(limits.value_slots_max as usize),
        stack,
        frames_ready: frames.capacity().min(limits.call_depth_max as usize),
        returns: Vec::new(),
        frames,
        funcs,
        instances,
        memories_len: memories.len(),
        memories: memories.as_mut_ptr(),
        no_memory: &raw mut no_memory,
        tables,
        globals,
        elems,
        datas,
        limits,
        resume: (
            Pc(std::ptr::null()),
            Regs(std::ptr::null_mut()),
            Mem(std::ptr::null_mut()),
            Meter::new(fuel),
        ),
        exit: None,
    };
    let mem = ctx.switch_instance(ctx.instance_of(top.func), Mem(std::ptr::null_mut()));
    let (pc, regs) = ctx.load_frame(top);
    ctx.resume = (pc, regs, mem, Meter::new(fuel));
    loop {
        let (pc, regs, mem, meter) = ctx.resume;
        // Loop back-edges and calls poll the interrupt flag (`checkpoint`); this
        // poll, at the start of `run` and between chains, is the backstop: a flag
        // raised before `run` stops it before any instruction runs.
        if ctx.interrupt.load(Ordering::Relaxed) {
            ctx.interrupted(pc);
            return ctx.exit.take().expect("an interrupted chain says why");
        }
        if pc.handler()(&mut ctx, pc, regs, mem, meter.with_fresh_chain()) == Flow::Stop {
            return ctx.exit.take().expect("a stopped chain says why");
        }
    }
}

/// Continues with the instruction at `pc`, after a non-control instruction: calls
/// its handler. Inlined into the tail of every handler, where the call becomes a
/// jump.
#[inline(always)]
pub(super) fn next(ctx: &mut Ctx<'_>, pc: Pc, regs: Regs, mem: Mem, meter: Meter) -> Flow {
    pc.handler()(ctx, pc, regs, mem, meter)
}

/// Continues with the instruction at `pc` after a control instruction: spends one
/// unit of the chain budget, or returns to the trampoline when it is spent.
#[inline(always)]
pub(super) fn next_counted(ctx: &mut Ctx<'_>, pc: Pc, regs: Regs, mem: Mem, meter: Meter) -> Flow {
    if meter.chain_spent() {
        return ctx.yield_chain(pc, regs, mem, meter);
    }
    next(ctx, pc, regs, mem, meter.spend_chain())
}

/// Charges `cost` fuel at a loop back-edge or call and polls the interrupt flag;
/// `pc` is the next instruction to run, where a stopped execution resumes.
/// Returns the flow to return if execution stops here.
#[inline(always)]
pub(super) fn checkpoint(ctx: &mut Ctx<'_>, pc: Pc, meter: &mut Meter, cost: u64) -> Option<Flow> {
    let Some(charged) = meter.charge(cost) else {
        return Some(ctx.out_of_fuel(pc));
    };
    if ctx.interrupt_raised() {
        return Some(ctx.interrupted(pc));
    }
    *meter = charged;
    None
}

impl<'a> Ctx<'a> {
    /// The position of the instruction at `pc` in the current code, in units.
    fn ip_of(&self, pc: Pc) -> u32 {
        // SAFETY: `pc` points into the current code, which starts at `self.code`.
        unsafe { pc.0.offset_from(self.code) as u32 }
    }

    #[cold]
    #[inline(never)]
    fn yield_chain(&mut self, pc: Pc, regs: Regs, mem: Mem, meter: Meter) -> Flow {
        self.resume = (pc, regs, mem, meter);
        opaque(Flow::Yield)
    }

    /// Stops with `exit`; `pc` is where the top frame resumes.
    #[cold]
    #[inline(never)]
    pub(super) fn stop_at(&mut self, pc: Pc, exit: Exit) -> Flow {
        let ip = self.ip_of(pc);
        self.top_frame().ip = ip;
        self.exit = Some(Ok(exit));
        opaque(Flow::Stop)
    }

    /// Stops for lack of fuel; `pc` is where the top frame resumes. (A function of
    /// its own rather than `stop_at(pc, Exit::OutOfFuel)`, so that the hot caller
    /// builds no `Exit` on its stack.)
    #[cold]
    #[inline(never)]
    pub(super) fn out_of_fuel(&mut self, pc: Pc) -> Flow {
        self.stop_at(pc, Exit::OutOfFuel)
    }

    /// Whether the interrupt flag is raised: one load, polled at every loop
    /// back-edge and call.
    ///
    /// `Relaxed` is enough: the flag carries no data, and a raised flag stays
    /// raised until the run that sees it stops (`Execution::run` lowers it after
    /// that), so a store from another thread is seen at the first check after it
    /// becomes visible and is never lost.
    #[inline(always)]
    pub(super) fn interrupt_raised(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }

    /// Stops for the interrupt flag; `pc` is where the top frame resumes.
    #[cold]
    #[inline(never)]
    pub(super) fn interrupted(&mut self, pc: Pc) -> Flow {
        self.stop_at(pc, Exit::Interrupted)
    }

    /// Stops with exit `exit` without touching the frames (they are up to date).
    #[cold]
    #[inline(never)]
    pub(super) fn stop(&mut self, exit: Exit) -> Flow {
        self.exit = Some(Ok(exit));
        opaque(Flow::Stop)
    }

    /// Traps with `code` at the instruction at `pc`.
    #[cold]
    #[inline(never)]
    pub(super) fn trap(&mut self, pc: Pc, code: TrapCode) -> Flow {
        let ip = self.ip_of(pc);
        self.top_frame().ip = ip;
        self.exit = Some(Err(code));
        opaque(Flow::Stop)
    }

    /// The frame of the running function.
    #[inline(always)]
    pub(super) fn top_frame(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("a running function has a frame")
    }

    /// The instance of the wasm function `func`.
    fn instance_of(&self, func: Func) -> Instance {
        match &self.funcs[func.0 as usize] {
            FuncEntity::Wasm { instance, .. } => *instance,
            FuncEntity::Host { .. } => unreachable!("frames hold wasm functions only"),
        }
    }

    /// Makes `instance` current and returns its memory (`mem` if it is current
    /// already). Every call or return across instances comes through here: the
    /// cached instance and memory belong to the instance, so they are replaced.
    #[inline(always)]
    pub(super) fn switch_instance(&mut self, instance: Instance, mem: Mem) -> Mem {
        if instance == self.instance {
            return mem;
        }
        self.switch_instance_slow(instance)
    }

    #[cold]
    #[inline(never)]
    fn switch_instance_slow(&mut self, instance: Instance) -> Mem {
        let instances: &'a [InstanceEntity] = self.instances;
        self.instance = instance;
        self.inst = &instances[instance.0 as usize];
        let imported = self.inst.module.imported_funcs as usize;
        self.defined_funcs = &self.inst.funcs[imported..];
        self.defined_code = &self.inst.module.code;
        // `CallInternal` indexes both unchecked with a function index that
        // `translate::verify` checked against the module's defined functions.
        let defined = self.inst.module.funcs.len() - imported;
        assert!(
            self.defined_funcs.len() == defined && self.defined_code.len() == defined,
            "an instance has one function and one translation per defined function"
        );
        match self.inst.memory {
            Some(memory) => {
                let index = memory.0 as usize;
                assert!(index < self.memories_len, "instance memory out of store");
                // SAFETY: `index` is within the store's memories (asserted), which
                // outlive the execution.
                Mem(unsafe { self.memories.add(index) })
            }
            None => Mem(self.no_memory),
        }
    }

    /// Enters `frame` (already on top of `frames`, in the current instance):
    /// caches its code and returns its instruction pointer and slot 0.
    #[inline(always)]
    fn enter_code(&mut self, compiled: &CompiledFunc, ip: u32, base: usize) -> (Pc, Regs) {
        debug_assert!((ip as usize) < compiled.code.len());
        debug_assert!(base + usize::from(compiled.frame_slots) <= self.stack.len());
        self.code = compiled.code.as_ptr();
        let pc = Pc(self.code.wrapping_add(ip as usize));
        // SAFETY: the frame's slots lie within the stack (`enter_wasm` or
        // `Execution::new` made room), so `base` is in bounds or one past the end.
        let regs = Regs(unsafe { self.stack.as_mut_ptr().add(base) });
        (pc, regs)
    }

    /// Loads the state of `frame`, whose instance is current.
    #[inline(always)]
    pub(super) fn load_frame(&mut self, frame: Frame) -> (Pc, Regs) {
        let funcs: &'a [FuncEntity] = self.funcs;
        let FuncEntity::Wasm { module, code, .. } = &funcs[frame.func.0 as usize] else {
            unreachable!("frames hold wasm functions only")
        };
        self.enter_code(&module.code[*code as usize], frame.ip, frame.base as usize)
    }

    /// Returns from the running function to its caller (results are in place).
    ///
    /// The fast path returns within the instance; everything else goes through
    /// cold functions called in tail position, so that the hot path keeps no
    /// value alive across a call (and saves no registers).
    #[inline(always)]
    pub(super) fn return_to_caller(&mut self, mem: Mem, meter: Meter) -> Flow {
        let len = self.frames.len();
        if len <= 1 {
            return self.finish();
        }
        let caller = self.frames[len - 2];
        if let Some(code) = self.returns.pop() {
            if !code.is_null() {
                // A caller in this instance whose code is known: no lookup.
                self.frames.truncate(len - 1);
                self.code = code;
                let pc = Pc(code.wrapping_add(caller.ip as usize));
                // SAFETY: the caller's frame lies within the stack (its slots were
                // made room for when it was entered), so `base` is in bounds.
                let regs = Regs(unsafe { self.stack.as_mut_ptr().add(caller.base as usize) });
                return next_counted(self, pc, regs, mem, meter);
            }
        }
        let funcs: &'a [FuncEntity] = self.funcs;
        let FuncEntity::Wasm {
            module,
            code,
            instance,
            ..
        } = &funcs[caller.func.0 as usize]
        else {
            unreachable!("frames hold wasm functions only")
        };
        if *instance != self.instance {
            return self.return_across_instances(meter);
        }
        self.frames.truncate(len - 1);
        let (pc, regs) = self.enter_code(
            &module.code[*code as usize],
            caller.ip,
            caller.base as usize,
        );
        next_counted(self, pc, regs, mem, meter)
    }

    /// The return from the last frame: execution finished.
    #[cold]
    #[inline(never)]
    fn finish(&mut self) -> Flow {
        self.frames.pop();
        self.stop(Exit::Finished)
    }

    /// A return into a frame of another instance.
    #[cold]
    #[inline(never)]
    fn return_across_instances(&mut self, meter: Meter) -> Flow {
        self.frames.pop();
        let caller = *self.top_frame();
        let mem = self.switch_instance_slow(self.instance_of(caller.func));
        let (pc, regs) = self.load_frame(caller);
        next_counted(self, pc, regs, mem, meter)
    }

    /// Calls the wasm function `callee` (compiled as `compiled`, in instance
    /// `instance`) from the call instruction at `pc`, with its frame at slot
    /// `base` of the current frame.
    ///
    /// The fast path is a call within the instance whose frame fits the stack and
    /// the frame vector as they are, has few cells to initialize, and neither
    /// stops for fuel or the interrupt flag. All of that is checked first;
    /// everything else takes `enter_wasm_slow`, called in tail position with few
    /// arguments, so that the fast path is straight-line code that keeps nothing
    /// alive across a call.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enter_wasm(
        &mut self,
        pc: Pc,
        return_pc: Pc,
        mem: Mem,
        meter: Meter,
        callee: Func,
        compiled: &'a CompiledFunc,
        instance: Instance,
        base: Slot,
    ) -> Flow {
        let len = self.frames.len();
        debug_assert!(len >= 1, "a running function has a frame");
        // SAFETY: a running function has a frame, so `len - 1` is in bounds.
        let callee_base =
            unsafe { self.frames.get_unchecked(len - 1) }.base as usize + base.index();
        let end = callee_base + usize::from(compiled.frame_slots);
        let init = &compiled.init;
        let charged = meter.charge(1);
        if instance != self.instance
            || end > self.slots_ready
            || len >= self.frames_ready
            || init.len() > INIT_CELLS_MIN
            || charged.is_none()
            || self.interrupt_raised()
            || self.returns.len() == self.returns.capacity()
        {
            return self.enter_wasm_slow(pc, mem, meter, callee, base);
        }
        let Some(meter) = charged else {
            unreachable!("checked above")
        };
        // SAFETY: `pc` points into the current code, which starts at `self.code`;
        // `len >= 1` (a running function has a frame) and
        // `len < frames_ready <= frames.capacity()`, so both frame accesses are
        // within the allocation and the new length covers initialized elements.
        unsafe {
            let frames = self.frames.as_mut_ptr();
            (*frames.add(len - 1)).ip = return_pc.0.offset_from(self.code) as u32;
            frames.add(len).write(Frame {
                func: callee,
                ip: 0,
                base: callee_base as u32,
            });
            self.frames.set_len(len + 1);
            // SAFETY: `returns.len() < returns.capacity()` (checked above).
            let returns = self.returns.len();
            self.returns.as_mut_ptr().add(returns).write(self.code);
            self.returns.set_len(returns + 1);
        }
        // SAFETY: `end <= slots_ready <= stack.len()`, and the initialized cells
        // (locals and constants) lie within the frame (`frame_slots` covers
        // `params + init.len()`, see `translate_function`); `init.len()` is 0 or
        // `INIT_CELLS_MIN` here (checked above; never between).
        let regs = unsafe {
            let regs = self.stack.as_mut_ptr().add(callee_base);
            if !init.is_empty() {
                let target = regs.add(usize::from(compiled.params));
                std::ptr::copy_nonoverlapping(init.as_ptr(), target, INIT_CELLS_MIN);
            }
            Regs(regs)
        };
        self.code = compiled.code.as_ptr();
        next_counted(self, Pc(self.code), regs, mem, meter)
    }

    /// `enter_wasm` for the rare cases: another instance, a stack or frame vector
    /// to grow, the stack limits, many cells to initialize, or a stop for fuel or interrupt.
    #[cold]
    #[inline(never)]
    fn enter_wasm_slow(
        &mut self,
        pc: Pc,
        mem: Mem,
        mut meter: Meter,
        callee: Func,
        base: Slot,
    ) -> Flow {
        let funcs: &'a [FuncEntity] = self.funcs;
        let FuncEntity::Wasm {
            module,
            code,
            instance,
            ..
        } = &funcs[callee.0 as usize]
        else {
            unreachable!("enter_wasm calls wasm functions only")
        };
        let compiled = &module.code[*code as usize];
        let return_ip = self.ip_of(pc.skip(code_units_of_call(pc)));
        let top = self.top_frame();
        top.ip = return_ip;
        let callee_base = top.base as usize + base.index();
        let end = callee_base + usize::from(compiled.frame_slots);
        if self.frames.len() >= self.limits.call_depth_max as usize
            || (end > self.slots_ready && !self.grow_stack(end))
        {
            return self.trap(pc, TrapCode::StackExhausted);
        }
        let init = callee_base + usize::from(compiled.params);
        self.stack[init..init + compiled.init.len()].copy_from_slice(&compiled.init);
        self.frames.push(Frame {
            func: callee,
            ip: 0,
            base: callee_base as u32,
        });
        let caller_code = if *instance == self.instance {
            self.code
        } else {
            std::ptr::null()
        };
        self.returns.push(caller_code);
        self.frames_ready = self
            .frames
            .capacity()
            .min(self.limits.call_depth_max as usize);
        let mem = self.switch_instance(*instance, mem);
        let (pc, regs) = self.enter_code(compiled, 0, callee_base);
        if let Some(flow) = checkpoint(self, pc, &mut meter, 1) {
            return flow;
        }
        next_counted(self, pc, regs, mem, meter)
    }

    /// Makes the stack hold at least `end` cells; false if that exceeds the limit.
    fn grow_stack(&mut self, end: usize) -> bool {
        let max = self.limits.value_slots_max as usize;
        if end > max {
            return false;
        }
        if self.stack.len() < end {
            let target = end.max(self.stack.len() * 2).max(1024).min(max);
            self.stack.resize(target, 0);
        }
        self.slots_ready = self.stack.len().min(max);
        true
    }
}

/// Code units of the call instruction at `pc` (its handler tells which call).
fn code_units_of_call(pc: Pc) -> usize {
    let handler = pc.handler();
    if std::ptr::fn_addr_eq(handler, handlers::CallIndirect as Handler) {
        payload::CallIndirect::UNITS
    } else if std::ptr::fn_addr_eq(handler, handlers::CallImport as Handler) {
        payload::CallImport::UNITS
    } else {
        debug_assert!(std::ptr::fn_addr_eq(
            handler,
            handlers::CallInternal as Handler
        ));
        payload::CallInternal::UNITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_charges_fuel_and_counts_the_chain() {
        let meter = Meter::new(10).with_fresh_chain();
        assert!(!meter.chain_spent());
        let charged = meter.charge(9).expect("one unit left");
        assert_eq!(charged.charge(1), None, "the last unit stops");
        assert_eq!(meter.charge(10), None);
        assert_eq!(meter.charge(11), None);
        let mut chain = Meter::new(1).with_fresh_chain();
        for _ in 0..CHAIN_MAX {
            assert!(!chain.chain_spent());
            chain = chain.spend_chain();
        }
        assert!(chain.chain_spent());
        assert_eq!(
            Meter::new(u64::MAX).charge(u64::from(u32::MAX)).map(|_| ()),
            Some(())
        );
    }
}
