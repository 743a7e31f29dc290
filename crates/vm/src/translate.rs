//! Translation of a function body from WebAssembly's stack form to Ferrite's
//! register-style bytecode (see `ferrite_ir`).
//!
//! The translator keeps a compile-time operand stack of [`Operand`]s. A value that
//! was computed lives in its *canonical slot* (`temp_base + stack position`); a
//! `local.get` or a constant is not copied anywhere but referred to in place, and
//! copied into its canonical slot only when that is needed ("materialized"): before
//! the local is overwritten, at block boundaries, and for call arguments.
//!
//! Invariants:
//! - At every label (block end, loop header, else) every operand of the label's
//!   values is in its canonical slot, so that all paths agree on where values are.
//! - On entry to a block no operand refers to a local, so a `local.set` inside the
//!   block never needs a conditionally executed copy for an operand outside it.
//! - A call's arguments are in consecutive canonical slots; the callee's frame
//!   starts at the first of them, so arguments and results are never copied.

use crate::{types::FuncType, Error};
use ferrite_core::TrapCode;
use ferrite_ir::{Instr, Slot};
use std::collections::HashMap;
use wasmparser::{BinaryReaderError, BlockType, FunctionBody, Operator};

/// What the translator needs to know about the module.
#[derive(Debug)]
pub(crate) struct ModuleEnv<'a> {
    pub types: &'a [FuncType],
    pub funcs: &'a [u32],
    pub imported_funcs: u32,
}

/// A translated function.
#[derive(Debug)]
pub(crate) struct CompiledFunc {
    pub code: Box<[Instr]>,
    /// Constant cells, copied into slots `params + locals ..` on entry.
    pub consts: Box<[u64]>,
    /// Number of parameters (slots `0..params`).
    pub params: u16,
    /// Number of declared locals, zeroed on entry, following the parameters.
    pub locals: u16,
    /// Slots the frame needs in all.
    pub frame_slots: u16,
}

impl CompiledFunc {
    /// The first constant slot.
    pub fn const_base(&self) -> usize {
        usize::from(self.params) + usize::from(self.locals)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// In its canonical slot.
    Temp,
    /// The current value of a local, not copied.
    Local(u16),
    /// A constant slot.
    Const(u16),
}

/// A branch condition, possibly fused with the comparison that computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    Nez(Slot),
    Eqz(Slot),
    Cmp(Cmp, Slot, Slot),
}

macro_rules! comparisons {
    ($($name:ident => $branch:ident, $negated:ident;)*) => {
        /// An integer comparison that a conditional branch can be fused with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Cmp { $($name),* }

        impl Cmp {
            /// The comparison with the opposite outcome (exact for integers).
            fn negate(self) -> Cmp {
                match self { $(Cmp::$name => Cmp::$negated),* }
            }

            fn branch(self, lhs: Slot, rhs: Slot, target: u32) -> Instr {
                match self { $(Cmp::$name => Instr::$branch { lhs, rhs, target }),* }
            }

            /// The comparison an instruction computes: `(cmp, dst, lhs, rhs)`.
            fn of(instr: Instr) -> Option<(Cmp, Slot, Slot, Slot)> {
                match instr {
                    $(Instr::$name { dst, lhs, rhs } => Some((Cmp::$name, dst, lhs, rhs)),)*
                    _ => None,
                }
            }
        }
    };
}

comparisons! {
    I32Eq => BrI32Eq, I32Ne; I32Ne => BrI32Ne, I32Eq;
    I32LtS => BrI32LtS, I32GeS; I32GeS => BrI32GeS, I32LtS;
    I32LtU => BrI32LtU, I32GeU; I32GeU => BrI32GeU, I32LtU;
    I32GtS => BrI32GtS, I32LeS; I32LeS => BrI32LeS, I32GtS;
    I32GtU => BrI32GtU, I32LeU; I32LeU => BrI32LeU, I32GtU;
    I64Eq => BrI64Eq, I64Ne; I64Ne => BrI64Ne, I64Eq;
    I64LtS => BrI64LtS, I64GeS; I64GeS => BrI64GeS, I64LtS;
    I64LtU => BrI64LtU, I64GeU; I64GeU => BrI64GeU, I64LtU;
    I64GtS => BrI64GtS, I64LeS; I64LeS => BrI64LeS, I64GtS;
    I64GtU => BrI64GtU, I64LeU; I64LeU => BrI64LeU, I64GtU;
}

impl Cond {
    fn negate(self) -> Cond {
        match self {
            Cond::Nez(slot) => Cond::Eqz(slot),
            Cond::Eqz(slot) => Cond::Nez(slot),
            Cond::Cmp(cmp, lhs, rhs) => Cond::Cmp(cmp.negate(), lhs, rhs),
        }
    }

    fn branch(self, target: u32) -> Instr {
        match self {
            Cond::Nez(cond) => Instr::BrIfNez { cond, target },
            Cond::Eqz(cond) => Instr::BrIfEqz { cond, target },
            Cond::Cmp(cmp, lhs, rhs) => cmp.branch(lhs, rhs, target),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ControlKind {
    Func,
    Block,
    Loop { header: u32 },
    If { jump_to_else: Option<usize> },
    Else,
}

#[derive(Debug)]
struct Control {
    kind: ControlKind,
    /// Operand stack height below the block's parameters.
    height: usize,
    params: usize,
    results: usize,
    /// Forward branches to this block's end.
    patches: Vec<usize>,
}

impl Control {
    fn label_arity(&self) -> usize {
        match self.kind {
            ControlKind::Loop { .. } => self.params,
            _ => self.results,
        }
    }
}

type Translation<T> = Result<Result<T, Error>, BinaryReaderError>;

/// Translates one validated function body.
pub(crate) fn translate_function(
    env: &ModuleEnv<'_>,
    func_index: u32,
    body: &FunctionBody<'_>,
) -> Translation<CompiledFunc> {
    let ty = &env.types[env.funcs[func_index as usize] as usize];
    let params = ty.params().len();
    let mut locals = 0usize;
    for entry in body.get_locals_reader()? {
        let (count, _) = entry?;
        locals += count as usize;
    }
    let consts = collect_consts(body)?;
    let temp_base = params + locals + consts.len();
    if temp_base >= Slot::FRAME_SLOTS_MAX {
        return Ok(Err(too_large(func_index)));
    }
    let mut translator = Translator {
        env,
        code: Vec::new(),
        stack: Vec::new(),
        control: vec![Control {
            kind: ControlKind::Func,
            height: 0,
            params: 0,
            results: ty.results().len(),
            patches: Vec::new(),
        }],
        const_slots: consts
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, i as u16))
            .collect(),
        const_base: params + locals,
        temp_base,
        height_max: 0,
        reachable: true,
        dead_depth: 0,
        last_producer: None,
    };
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let op = reader.read()?;
        if let Err(error) = translator.operator(&op) {
            return Ok(Err(error));
        }
        if translator.control.is_empty() {
            break;
        }
    }
    let frame_slots = temp_base + translator.height_max + 1;
    if frame_slots > Slot::FRAME_SLOTS_MAX {
        return Ok(Err(too_large(func_index)));
    }
    let compiled = CompiledFunc {
        code: translator.code.into_boxed_slice(),
        consts: consts.into_boxed_slice(),
        params: params as u16,
        locals: locals as u16,
        frame_slots: frame_slots as u16,
    };
    verify(&compiled);
    Ok(Ok(compiled))
}

/// Checks the invariants the interpreter's unchecked accesses rely on: every slot
/// operand and copied span lies within the frame, every branch target and
/// `br_table` entry is in the code, and the code ends with an unconditional
/// transfer, so execution never runs past it.
///
/// # Panics
/// If the translator broke an invariant (a bug, never bad input).
fn verify(func: &CompiledFunc) {
    let (slots, len) = (func.frame_slots, func.code.len());
    assert!(func.const_base() + func.consts.len() <= usize::from(slots));
    let terminates = |instr: &Instr| {
        matches!(
            instr,
            Instr::Br { .. }
                | Instr::BrLoop { .. }
                | Instr::Return {}
                | Instr::ReturnSlot { .. }
                | Instr::Trap { .. }
        )
    };
    assert!(
        func.code.last().is_some_and(terminates),
        "code must end with a transfer"
    );
    for (at, instr) in func.code.iter().enumerate() {
        let mut instr = *instr;
        instr.visit_slots_mut(|_, slot| assert!(slot.0 < slots, "slot {slot:?} out of frame"));
        if let Some(target) = instr.branch_target_mut() {
            assert!((*target as usize) < len, "branch target out of code");
        }
        match instr {
            Instr::CopySpan {
                target,
                source,
                len,
            } => {
                assert!(target.0 as usize + len as usize <= usize::from(slots));
                assert!(source.0 as usize + len as usize <= usize::from(slots));
            }
            Instr::BrTable { len: entries, .. } => {
                assert!(entries >= 1 && at + (entries as usize) < len);
                let table = &func.code[at + 1..=at + entries as usize];
                assert!(table.iter().all(|entry| matches!(entry, Instr::Br { .. })));
            }
            _ => {}
        }
    }
}

#[cold]
fn too_large(func_index: u32) -> Error {
    Error::Limit(format!(
        "function {func_index} needs more than {} frame slots",
        Slot::FRAME_SLOTS_MAX
    ))
}

/// The distinct constants of a body, in order of first use.
fn collect_consts(body: &FunctionBody<'_>) -> Result<Vec<u64>, BinaryReaderError> {
    let mut seen = std::collections::HashSet::new();
    let mut consts = Vec::new();
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let cell = match reader.read()? {
            Operator::I32Const { value } => u64::from(value as u32),
            Operator::I64Const { value } => value as u64,
            Operator::F32Const { value } => u64::from(value.bits()),
            Operator::F64Const { value } => value.bits(),
            Operator::RefNull { .. } => 0,
            _ => continue,
        };
        if seen.insert(cell) {
            consts.push(cell);
        }
    }
    Ok(consts)
}

struct Translator<'a> {
    env: &'a ModuleEnv<'a>,
    code: Vec<Instr>,
    stack: Vec<Operand>,
    control: Vec<Control>,
    const_slots: HashMap<u64, u16>,
    const_base: usize,
    temp_base: usize,
    height_max: usize,
    /// False after an unconditional branch, until the next label.
    reachable: bool,
    /// Blocks opened in unreachable code, skipped without translation.
    dead_depth: u32,
    /// The last instruction, if it wrote the canonical slot of the stack top.
    last_producer: Option<usize>,
}

macro_rules! unary_ops {
    ($self:ident, $op:ident; $($name:ident),* $(,)?) => {
        match $op {
            $( Operator::$name => return { $self.unary(|dst, src| Instr::$name { dst, src }); Ok(()) }, )*
            _ => {}
        }
    };
}

macro_rules! binary_ops {
    ($self:ident, $op:ident; $($name:ident),* $(,)?) => {
        match $op {
            $( Operator::$name => return {
                $self.binary(|dst, lhs, rhs| Instr::$name { dst, lhs, rhs });
                Ok(())
            }, )*
            _ => {}
        }
    };
}

macro_rules! load_ops {
    ($self:ident, $op:ident; $($name:ident),* $(,)?) => {
        match $op {
            $( Operator::$name { memarg } => return {
                let offset = memarg.offset as u32;
                $self.unary(|dst, ptr| Instr::$name { dst, ptr, offset });
                Ok(())
            }, )*
            _ => {}
        }
    };
}

macro_rules! store_ops {
    ($self:ident, $op:ident; $($name:ident),* $(,)?) => {
        match $op {
            $( Operator::$name { memarg } => return {
                let offset = memarg.offset as u32;
                let value = $self.pop();
                let ptr = $self.pop();
                $self.emit(Instr::$name { ptr, value, offset });
                Ok(())
            }, )*
            _ => {}
        }
    };
}

impl Translator<'_> {
    fn slot_at(&self, position: usize) -> Slot {
        Slot((self.temp_base + position) as u16)
    }

    fn slot_of(&self, position: usize) -> Slot {
        match self.stack[position] {
            Operand::Temp => self.slot_at(position),
            Operand::Local(local) => Slot(local),
            Operand::Const(index) => Slot((self.const_base + usize::from(index)) as u16),
        }
    }

    fn emit(&mut self, instr: Instr) -> usize {
        self.code.push(instr);
        self.last_producer = None;
        self.code.len() - 1
    }

    /// Emits an instruction whose result is the canonical slot of the new stack top.
    fn emit_producer(&mut self, instr: Instr) {
        self.code.push(instr);
        self.last_producer = Some(self.code.len() - 1);
    }

    fn push(&mut self, operand: Operand) {
        self.stack.push(operand);
        self.height_max = self.height_max.max(self.stack.len());
    }

    /// Pushes a computed value; returns its canonical slot.
    fn push_temp(&mut self) -> Slot {
        self.push(Operand::Temp);
        self.slot_at(self.stack.len() - 1)
    }

    fn pop(&mut self) -> Slot {
        let slot = self.slot_of(self.stack.len() - 1);
        self.stack.pop();
        slot
    }

    /// Pops an i32 condition. If the instruction just emitted computed it with a
    /// comparison or `eqz`, that instruction is removed and fused into the branch.
    fn pop_cond(&mut self) -> Cond {
        let top = self.stack.len() - 1;
        let slot = self.pop();
        let fusable = self.stack.len() == top
            && self
                .last_producer
                .is_some_and(|at| at + 1 == self.code.len());
        if !fusable {
            return Cond::Nez(slot);
        }
        let last = *self.code.last().expect("a producer was emitted");
        let fused = match last {
            Instr::I32Eqz { dst, src } if dst == slot => Some(Cond::Eqz(src)),
            _ => match Cmp::of(last) {
                Some((cmp, dst, lhs, rhs)) if dst == slot => Some(Cond::Cmp(cmp, lhs, rhs)),
                _ => None,
            },
        };
        match fused {
            Some(cond) => {
                self.code.pop();
                self.last_producer = None;
                cond
            }
            None => Cond::Nez(slot),
        }
    }

    fn here(&self) -> u32 {
        self.code.len() as u32
    }

    fn patch(&mut self, at: usize, target: u32) {
        if let Some(slot) = self.code[at].branch_target_mut() {
            *slot = target;
        }
    }

    fn bind_here(&mut self, at: usize) {
        let here = self.here();
        self.patch(at, here);
    }

    /// Copies the operand at `position` into its canonical slot.
    fn materialize(&mut self, position: usize) {
        if self.stack[position] != Operand::Temp {
            let src = self.slot_of(position);
            let dst = self.slot_at(position);
            self.emit(Instr::Copy { dst, src });
            self.stack[position] = Operand::Temp;
        }
    }

    fn materialize_top(&mut self, count: usize) {
        let len = self.stack.len();
        for position in len - count..len {
            self.materialize(position);
        }
    }

    /// Materializes every operand that refers to `local` (or to any local).
    fn materialize_locals(&mut self, local: Option<u16>, below: usize) {
        for position in 0..below {
            if let Operand::Local(l) = self.stack[position] {
                if local.is_none_or(|wanted| wanted == l) {
                    self.materialize(position);
                }
            }
        }
    }

    fn unary(&mut self, make: impl FnOnce(Slot, Slot) -> Instr) {
        let src = self.pop();
        let dst = self.push_temp();
        self.emit_producer(make(dst, src));
    }

    fn binary(&mut self, make: impl FnOnce(Slot, Slot, Slot) -> Instr) {
        let rhs = self.pop();
        let lhs = self.pop();
        let dst = self.push_temp();
        self.emit_producer(make(dst, lhs, rhs));
    }

    fn block_arity(&self, ty: BlockType) -> (usize, usize) {
        match ty {
            BlockType::Empty => (0, 0),
            BlockType::Type(_) => (0, 1),
            BlockType::FuncType(index) => {
                let ty = &self.env.types[index as usize];
                (ty.params().len(), ty.results().len())
            }
        }
    }

    fn enter_block(&mut self, kind: ControlKind, ty: BlockType) -> usize {
        let (params, results) = self.block_arity(ty);
        let len = self.stack.len();
        self.materialize_locals(None, len);
        self.materialize_top(params);
        self.last_producer = None;
        let height = len - params;
        self.control.push(Control {
            kind,
            height,
            params,
            results,
            patches: Vec::new(),
        });
        self.control.len() - 1
    }

    fn label_slot(&self, frame: &Control) -> Slot {
        self.slot_at(frame.height)
    }

    /// Emits a return of the values on top of the stack.
    fn emit_return(&mut self) {
        let count = self.control[0].results;
        match count {
            0 => {
                self.emit(Instr::Return {});
            }
            1 => {
                let src = self.slot_of(self.stack.len() - 1);
                self.emit(Instr::ReturnSlot { src });
            }
            _ => {
                self.materialize_top(count);
                let source = self.slot_at(self.stack.len() - count);
                if source != Slot(0) {
                    self.emit(Instr::CopySpan {
                        target: Slot(0),
                        source,
                        len: count as u16,
                    });
                }
                self.emit(Instr::Return {});
            }
        }
    }

    /// Emits the copy of the branch values of a branch to `depth`, if one is needed.
    fn branch_copy(&mut self, depth: usize) -> Option<Instr> {
        let frame = &self.control[self.control.len() - 1 - depth];
        let arity = frame.label_arity();
        let target = self.label_slot(frame);
        let position = self.stack.len() - arity;
        match arity {
            0 => None,
            1 => {
                let src = self.slot_of(position);
                (src != target).then_some(Instr::Copy { dst: target, src })
            }
            _ => {
                let source = self.slot_at(position);
                (source != target).then_some(Instr::CopySpan {
                    target,
                    source,
                    len: arity as u16,
                })
            }
        }
    }

    /// Emits the jump of a branch to `depth` (values already in place).
    fn branch_jump(&mut self, depth: usize, cond: Option<Cond>) {
        let index = self.control.len() - 1 - depth;
        let instr = match (self.control[index].kind, cond) {
            (ControlKind::Loop { header }, None) => Instr::BrLoop { target: header },
            (ControlKind::Loop { header }, Some(cond)) => cond.branch(header),
            (_, None) => Instr::Br { target: 0 },
            (_, Some(cond)) => cond.branch(0),
        };
        let at = self.emit(instr);
        if !matches!(self.control[index].kind, ControlKind::Loop { .. }) {
            self.control[index].patches.push(at);
        }
    }

    /// A branch to the label `depth` levels out, taken if `cond` (when given) is non-zero.
    fn branch(&mut self, depth: usize, cond: Option<Cond>) {
        let index = self.control.len() - 1 - depth;
        if self.control[index].kind == ControlKind::Func {
            // Materialize before the conditional skip: copies emitted after it would
            // run on the taken path only, yet mark the operands canonical for both.
            let results = self.control[0].results;
            if results > 1 {
                self.materialize_top(results);
            }
            let skip = cond.map(|cond| self.emit(cond.negate().branch(0)));
            self.emit_return();
            if let Some(skip) = skip {
                self.bind_here(skip);
            }
            return;
        }
        let arity = self.control[index].label_arity();
        if arity > 1 {
            self.materialize_top(arity);
        }
        match self.branch_copy(depth) {
            None => self.branch_jump(depth, cond),
            Some(copy) => {
                let skip = cond.map(|cond| self.emit(cond.negate().branch(0)));
                self.emit(copy);
                self.branch_jump(depth, None);
                if let Some(skip) = skip {
                    self.bind_here(skip);
                }
            }
        }
    }

    fn br_table(&mut self, targets: &wasmparser::BrTable<'_>) -> Result<(), BinaryReaderError> {
        let index = self.pop();
        let mut depths = Vec::with_capacity(targets.len() as usize + 1);
        for target in targets.targets() {
            depths.push(target? as usize);
        }
        depths.push(targets.default() as usize);
        let frame = &self.control[self.control.len() - 1 - depths[depths.len() - 1]];
        let arity = if frame.kind == ControlKind::Func {
            frame.results
        } else {
            frame.label_arity()
        };
        if arity > 1 {
            self.materialize_top(arity);
        }
        self.emit(Instr::BrTable {
            index,
            len: depths.len() as u32,
        });
        let mut trampolines: Vec<(usize, Vec<usize>)> = Vec::new();
        for &depth in &depths {
            let frame = &self.control[self.control.len() - 1 - depth];
            let direct = frame.kind != ControlKind::Func
                && !matches!(frame.kind, ControlKind::Loop { .. })
                && self.branch_copy(depth).is_none();
            if direct {
                self.branch_jump(depth, None);
            } else {
                let at = self.emit(Instr::Br { target: 0 });
                match trampolines.iter_mut().find(|(d, _)| *d == depth) {
                    Some((_, entries)) => entries.push(at),
                    None => trampolines.push((depth, vec![at])),
                }
            }
        }
        for (depth, entries) in trampolines {
            for entry in entries {
                self.bind_here(entry);
            }
            self.branch(depth, None);
        }
        Ok(())
    }

    fn call(&mut self, type_index: u32, make: impl FnOnce(Slot) -> Instr) {
        let ty = &self.env.types[type_index as usize];
        let (params, results) = (ty.params().len(), ty.results().len());
        self.materialize_top(params);
        let base = self.slot_at(self.stack.len() - params);
        self.stack.truncate(self.stack.len() - params);
        self.emit(make(base));
        for _ in 0..results {
            self.push_temp();
        }
    }

    fn local_set(&mut self, local: u16, tee: bool) {
        let top = self.stack.len() - 1;
        if self.stack[top] == Operand::Local(local) {
            if !tee {
                self.stack.pop();
            }
            return;
        }
        let pending = self.stack[..top].contains(&Operand::Local(local));
        let produced_here = self.stack[top] == Operand::Temp
            && self.last_producer == Some(self.code.len() - 1)
            && self.code.last_mut().and_then(Instr::result_slot) == Some(self.slot_at(top));
        if produced_here && !pending {
            // Retarget the producer: the value is computed straight into the local.
            if let Some(last) = self.code.last_mut() {
                last.set_result_slot(Slot(local));
            }
            self.last_producer = None;
            if tee {
                self.stack[top] = Operand::Local(local);
            } else {
                self.stack.pop();
            }
            return;
        }
        self.materialize_locals(Some(local), top);
        let src = self.slot_of(top);
        self.emit(Instr::Copy {
            dst: Slot(local),
            src,
        });
        if !tee {
            self.stack.pop();
        }
    }

    fn end(&mut self) {
        if self.control.len() == 1 {
            if self.reachable {
                self.emit_return();
            }
            self.control.pop();
            return;
        }
        let frame = self.control.pop().expect("validated: end matches a block");
        if self.reachable {
            self.materialize_top(frame.results);
        }
        let mut reachable = self.reachable || !frame.patches.is_empty();
        if let ControlKind::If {
            jump_to_else: Some(at),
        } = frame.kind
        {
            self.bind_here(at);
            reachable = true;
        }
        for at in frame.patches {
            self.bind_here(at);
        }
        self.stack.truncate(frame.height);
        for _ in 0..frame.results {
            self.push_temp();
        }
        self.reachable = reachable;
        self.last_producer = None;
    }

    fn else_(&mut self) {
        let index = self.control.len() - 1;
        let results = self.control[index].results;
        if self.reachable {
            self.materialize_top(results);
            let at = self.emit(Instr::Br { target: 0 });
            self.control[index].patches.push(at);
        }
        if let ControlKind::If {
            jump_to_else: Some(at),
        } = self.control[index].kind
        {
            self.bind_here(at);
        }
        self.control[index].kind = ControlKind::Else;
        let (height, params) = (self.control[index].height, self.control[index].params);
        self.stack.truncate(height);
        for _ in 0..params {
            self.push_temp();
        }
        self.reachable = true;
        self.last_producer = None;
    }

    fn unreachable_code(&mut self) {
        self.reachable = false;
        let height = self.control.last().map_or(0, |frame| frame.height);
        self.stack.truncate(height.min(self.stack.len()));
    }

    fn push_const(&mut self, cell: u64) {
        let index = self.const_slots[&cell];
        self.push(Operand::Const(index));
    }

    fn operator(&mut self, op: &Operator<'_>) -> Result<(), Error> {
        if !self.reachable {
            match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                    self.dead_depth += 1;
                    return Ok(());
                }
                Operator::Else if self.dead_depth == 0 => {}
                Operator::End if self.dead_depth == 0 => {}
                Operator::End => {
                    self.dead_depth -= 1;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
        unary_ops!(self, op;
            I32Eqz, I64Eqz, I32Clz, I32Ctz, I32Popcnt, I64Clz, I64Ctz, I64Popcnt,
            F32Abs, F32Neg, F32Ceil, F32Floor, F32Trunc, F32Nearest, F32Sqrt,
            F64Abs, F64Neg, F64Ceil, F64Floor, F64Trunc, F64Nearest, F64Sqrt,
            I32TruncF32S, I32TruncF32U, I32TruncF64S, I32TruncF64U, I64ExtendI32S, I64ExtendI32U,
            I64TruncF32S, I64TruncF32U, I64TruncF64S, I64TruncF64U,
            F32ConvertI32S, F32ConvertI32U, F32ConvertI64S, F32ConvertI64U, F32DemoteF64,
            F64ConvertI32S, F64ConvertI32U, F64ConvertI64S, F64ConvertI64U, F64PromoteF32,
            I32Extend8S, I32Extend16S, I64Extend8S, I64Extend16S, I64Extend32S,
            I32TruncSatF32S, I32TruncSatF32U, I32TruncSatF64S, I32TruncSatF64U,
            I64TruncSatF32S, I64TruncSatF32U, I64TruncSatF64S, I64TruncSatF64U,
        );
        binary_ops!(self, op;
            I32Eq, I32Ne, I32LtS, I32LtU, I32GtS, I32GtU, I32LeS, I32LeU, I32GeS, I32GeU,
            I64Eq, I64Ne, I64LtS, I64LtU, I64GtS, I64GtU, I64LeS, I64LeU, I64GeS, I64GeU,
            F32Eq, F32Ne, F32Lt, F32Gt, F32Le, F32Ge, F64Eq, F64Ne, F64Lt, F64Gt, F64Le, F64Ge,
            I32Add, I32Sub, I32Mul, I32DivS, I32DivU, I32RemS, I32RemU, I32And, I32Or, I32Xor,
            I32Shl, I32ShrS, I32ShrU, I32Rotl, I32Rotr,
            I64Add, I64Sub, I64Mul, I64DivS, I64DivU, I64RemS, I64RemU, I64And, I64Or, I64Xor,
            I64Shl, I64ShrS, I64ShrU, I64Rotl, I64Rotr,
            F32Add, F32Sub, F32Mul, F32Div, F32Min, F32Max, F32Copysign,
            F64Add, F64Sub, F64Mul, F64Div, F64Min, F64Max, F64Copysign,
        );
        load_ops!(self, op;
            I32Load, I64Load, F32Load, F64Load, I32Load8S, I32Load8U, I32Load16S, I32Load16U,
            I64Load8S, I64Load8U, I64Load16S, I64Load16U, I64Load32S, I64Load32U,
        );
        store_ops!(self, op;
            I32Store, I64Store, F32Store, F64Store, I32Store8, I32Store16,
            I64Store8, I64Store16, I64Store32,
        );
        self.other_operator(op)
    }

    fn other_operator(&mut self, op: &Operator<'_>) -> Result<(), Error> {
        match *op {
            Operator::Nop => {}
            Operator::Unreachable => {
                self.emit(Instr::Trap {
                    code: TrapCode::Unreachable,
                });
                self.unreachable_code();
            }
            Operator::Block { blockty } => {
                self.enter_block(ControlKind::Block, blockty);
            }
            Operator::Loop { blockty } => {
                let header = self.here();
                let index = self.enter_block(ControlKind::Loop { header }, blockty);
                // Materializing may have emitted copies: the header is after them.
                self.control[index].kind = ControlKind::Loop {
                    header: self.here(),
                };
            }
            Operator::If { blockty } => {
                let cond = self.pop_cond();
                let index = self.enter_block(ControlKind::If { jump_to_else: None }, blockty);
                let at = self.emit(cond.negate().branch(0));
                self.control[index].kind = ControlKind::If {
                    jump_to_else: Some(at),
                };
            }
            Operator::Else => self.else_(),
            Operator::End => self.end(),
            Operator::Br { relative_depth } => {
                self.branch(relative_depth as usize, None);
                self.unreachable_code();
            }
            Operator::BrIf { relative_depth } => {
                let cond = self.pop_cond();
                self.branch(relative_depth as usize, Some(cond));
                self.last_producer = None;
            }
            Operator::BrTable { ref targets } => {
                self.br_table(targets)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                self.unreachable_code();
            }
            Operator::Return => {
                self.emit_return();
                self.unreachable_code();
            }
            Operator::Call { function_index } => {
                let type_index = self.env.funcs[function_index as usize];
                let imported = self.env.imported_funcs;
                self.call(type_index, |base| {
                    if function_index < imported {
                        Instr::CallImport {
                            func: function_index,
                            base,
                        }
                    } else {
                        Instr::CallInternal {
                            func: function_index - imported,
                            base,
                        }
                    }
                });
            }
            Operator::CallIndirect {
                type_index,
                table_index,
            } => {
                let index = self.pop();
                self.call(type_index, |base| Instr::CallIndirect {
                    type_index,
                    table: table_index,
                    index,
                    base,
                });
            }
            Operator::Drop => {
                self.stack.pop();
            }
            Operator::Select | Operator::TypedSelect { .. } => {
                let cond = self.pop();
                let if_false = self.pop();
                let if_true = self.pop();
                let dst = self.push_temp();
                self.emit_producer(Instr::Select {
                    dst,
                    cond,
                    if_true,
                    if_false,
                });
            }
            Operator::LocalGet { local_index } => self.push(Operand::Local(local_index as u16)),
            Operator::LocalSet { local_index } => self.local_set(local_index as u16, false),
            Operator::LocalTee { local_index } => self.local_set(local_index as u16, true),
            Operator::GlobalGet { global_index } => {
                let dst = self.push_temp();
                self.emit_producer(Instr::GlobalGet {
                    dst,
                    global: global_index,
                });
            }
            Operator::GlobalSet { global_index } => {
                let src = self.pop();
                self.emit(Instr::GlobalSet {
                    src,
                    global: global_index,
                });
            }
            Operator::I32Const { value } => self.push_const(u64::from(value as u32)),
            Operator::I64Const { value } => self.push_const(value as u64),
            Operator::F32Const { value } => self.push_const(u64::from(value.bits())),
            Operator::F64Const { value } => self.push_const(value.bits()),
            // Reinterpretations and wrapping keep the cell's bits: i32 and f32 consumers
            // read only the low 32 bits of a cell.
            Operator::I32WrapI64
            | Operator::I32ReinterpretF32
            | Operator::I64ReinterpretF64
            | Operator::F32ReinterpretI32
            | Operator::F64ReinterpretI64 => {}
            _ => return self.memory_or_table_operator(op),
        }
        Ok(())
    }

    fn memory_or_table_operator(&mut self, op: &Operator<'_>) -> Result<(), Error> {
        match *op {
            Operator::MemorySize { .. } => {
                let dst = self.push_temp();
                self.emit_producer(Instr::MemorySize { dst });
            }
            Operator::MemoryGrow { .. } => {
                self.unary(|dst, delta| Instr::MemoryGrow { dst, delta });
            }
            Operator::MemoryFill { .. } => {
                let (len, value, address) = (self.pop(), self.pop(), self.pop());
                self.emit(Instr::MemoryFill {
                    address,
                    value,
                    len,
                });
            }
            Operator::MemoryCopy { .. } => {
                let (len, source, target) = (self.pop(), self.pop(), self.pop());
                self.emit(Instr::MemoryCopy {
                    target,
                    source,
                    len,
                });
            }
            Operator::MemoryInit { data_index, .. } => {
                let (len, source, target) = (self.pop(), self.pop(), self.pop());
                self.emit(Instr::MemoryInit {
                    target,
                    source,
                    len,
                    data: data_index,
                });
            }
            Operator::DataDrop { data_index } => {
                self.emit(Instr::DataDrop { data: data_index });
            }
            Operator::TableGet { table } => {
                self.unary(|dst, index| Instr::TableGet { dst, index, table });
            }
            Operator::TableSet { table } => {
                let (value, index) = (self.pop(), self.pop());
                self.emit(Instr::TableSet {
                    index,
                    value,
                    table,
                });
            }
            Operator::TableSize { table } => {
                let dst = self.push_temp();
                self.emit_producer(Instr::TableSize { dst, table });
            }
            Operator::TableGrow { table } => {
                self.binary(|dst, init, delta| Instr::TableGrow {
                    dst,
                    init,
                    delta,
                    table,
                });
            }
            Operator::TableFill { table } => {
                let (len, value, index) = (self.pop(), self.pop(), self.pop());
                self.emit(Instr::TableFill {
                    index,
                    value,
                    len,
                    table,
                });
            }
            Operator::TableCopy {
                dst_table,
                src_table,
            } => {
                let (len, source, target) = (self.pop(), self.pop(), self.pop());
                let (target_table, source_table) = (table_u16(dst_table)?, table_u16(src_table)?);
                self.emit(Instr::TableCopy {
                    target,
                    source,
                    len,
                    target_table,
                    source_table,
                });
            }
            Operator::TableInit { elem_index, table } => {
                let (len, source, target) = (self.pop(), self.pop(), self.pop());
                let (table, elem) = (table_u16(table)?, table_u16(elem_index)?);
                self.emit(Instr::TableInit {
                    target,
                    source,
                    len,
                    table,
                    elem,
                });
            }
            Operator::ElemDrop { elem_index } => {
                self.emit(Instr::ElemDrop { elem: elem_index });
            }
            Operator::RefNull { .. } => self.push_const(0),
            Operator::RefIsNull => self.unary(|dst, src| Instr::RefIsNull { dst, src }),
            Operator::RefFunc { function_index } => {
                let dst = self.push_temp();
                self.emit_producer(Instr::RefFunc {
                    dst,
                    func: function_index,
                });
            }
            ref other => {
                return Err(Error::Unsupported(format!("operator {other:?}")));
            }
        }
        Ok(())
    }
}

fn table_u16(index: u32) -> Result<u16, Error> {
    u16::try_from(index).map_err(|_| Error::Limit(format!("table or segment index {index}")))
}
