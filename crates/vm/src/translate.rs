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

use crate::{
    exec::code::{lower, CodeUnit},
    types::FuncType,
    Error,
};
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

/// The fewest cells a non-empty `CompiledFunc::init` has (see
/// `translate_function`).
pub(crate) const INIT_CELLS_MIN: usize = 8;

/// A translated function.
#[derive(Debug)]
pub(crate) struct CompiledFunc {
    /// The executable code (`exec::code`), lowered from the bytecode.
    pub code: Box<[CodeUnit]>,
    /// The bytecode, kept for tests that inspect the translation.
    #[cfg(test)]
    pub instrs: Box<[Instr]>,
    /// The initial cells of the slots after the parameters: zeros for the declared
    /// locals, then the constants (the frame layout is
    /// `[params | locals | constants | operand stack]`); unless empty, padded with
    /// zeros to at least [`INIT_CELLS_MIN`] cells. Entering a frame copies this to slot
    /// `params`, one copy for both; `frame_slots` covers it.
    pub init: Box<[u64]>,
    /// Number of parameters (slots `0..params`).
    pub params: u16,
    /// Slots the frame needs in all.
    pub frame_slots: u16,
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
    /// The i32 in the slot is not zero.
    Nez(Slot),
    /// The i32 in the slot is zero.
    Eqz(Slot),
    /// The i64 in the slot is not zero.
    Nez64(Slot),
    /// The i64 in the slot is zero.
    Eqz64(Slot),
    Cmp(Cmp, Slot, Slot),
    /// `lhs & rhs` is zero or not.
    Test(BitTest, Slot, Slot),
}

/// A branch condition on `lhs & rhs` (`if (x & mask)`, `if !(x & mask)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitTest {
    I32AndNez,
    I32AndEqz,
    I64AndNez,
    I64AndEqz,
}

impl BitTest {
    fn negate(self) -> BitTest {
        match self {
            BitTest::I32AndNez => BitTest::I32AndEqz,
            BitTest::I32AndEqz => BitTest::I32AndNez,
            BitTest::I64AndNez => BitTest::I64AndEqz,
            BitTest::I64AndEqz => BitTest::I64AndNez,
        }
    }

    /// The fused branch to the absolute position `target` (see `Translator::code`).
    fn branch(self, lhs: Slot, rhs: Slot, target: u32) -> Instr {
        let offset = target as i32;
        match self {
            BitTest::I32AndNez => Instr::BrI32AndNez { lhs, rhs, offset },
            BitTest::I32AndEqz => Instr::BrI32AndEqz { lhs, rhs, offset },
            BitTest::I64AndNez => Instr::BrI64AndNez { lhs, rhs, offset },
            BitTest::I64AndEqz => Instr::BrI64AndEqz { lhs, rhs, offset },
        }
    }
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

            /// The fused branch to the absolute position `target` (see `Translator::code`).
            fn branch(self, lhs: Slot, rhs: Slot, target: u32) -> Instr {
                let offset = target as i32;
                match self { $(Cmp::$name => Instr::$branch { lhs, rhs, offset }),* }
            }

            /// The instruction that computes the comparison into `dst`.
            fn compute(self, dst: Slot, lhs: Slot, rhs: Slot) -> Instr {
                match self { $(Cmp::$name => Instr::$name { dst, lhs, rhs }),* }
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
            Cond::Nez64(slot) => Cond::Eqz64(slot),
            Cond::Eqz64(slot) => Cond::Nez64(slot),
            Cond::Cmp(cmp, lhs, rhs) => Cond::Cmp(cmp.negate(), lhs, rhs),
            Cond::Test(test, lhs, rhs) => Cond::Test(test.negate(), lhs, rhs),
        }
    }

    /// The branch to the absolute position `target` (see `Translator::code`).
    fn branch(self, target: u32) -> Instr {
        let offset = target as i32;
        match self {
            Cond::Nez(cond) => Instr::BrIfNez { cond, offset },
            Cond::Eqz(cond) => Instr::BrIfEqz { cond, offset },
            Cond::Nez64(cond) => Instr::BrI64Nez { cond, offset },
            Cond::Eqz64(cond) => Instr::BrI64Eqz { cond, offset },
            Cond::Cmp(cmp, lhs, rhs) => cmp.branch(lhs, rhs, target),
            Cond::Test(test, lhs, rhs) => test.branch(lhs, rhs, target),
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
        prev_producer: None,
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
    let mut code = translator.code;
    let const_base = params + locals;
    let const_of = |slot: Slot| {
        let index = slot.index().checked_sub(const_base)?;
        consts.get(index).copied()
    };
    let mut immediates = 0;
    for instr in &mut code {
        let with = with_immediate(*instr, const_of);
        immediates += usize::from(with != *instr);
        *instr = with;
    }
    // Only an immediate can leave a constant unread (`collect_consts` collects
    // the constants the body reads).
    let (consts, unused) = if immediates > 0 {
        drop_unused_consts(&mut code, consts, const_base)
    } else {
        (consts, 0)
    };
    let frame_slots = frame_slots - unused;
    let code = rewrite(code, const_base + consts.len());
    let mut code = bound_chain_runs(code);
    relativize_branches(&mut code);
    // Unless empty, padded with zeros to `INIT_CELLS_MIN`, and the frame made large
    // enough, so that a call can copy that many cells without looking at the
    // length: the extra cells land on operand stack slots, which are written
    // before they are read.
    let mut init: Vec<u64> = std::iter::repeat_n(0, locals)
        .chain(consts.iter().copied())
        .collect();
    if !init.is_empty() && init.len() < INIT_CELLS_MIN {
        init.resize(INIT_CELLS_MIN, 0);
    }
    let frame_slots = frame_slots.max(params + init.len());
    if frame_slots > Slot::FRAME_SLOTS_MAX {
        return Ok(Err(too_large(func_index)));
    }
    let init = init.into_boxed_slice();
    let defined_funcs = env.funcs.len() - env.imported_funcs as usize;
    verify(&code, frame_slots, const_base + consts.len(), defined_funcs);
    let compiled = CompiledFunc {
        code: lower(&code),
        #[cfg(test)]
        instrs: code.into_boxed_slice(),
        init,
        params: params as u16,
        frame_slots: frame_slots as u16,
    };
    Ok(Ok(compiled))
}

/// The form of `instr` with an immediate operand, if it has one and an operand is
/// the constant `const_of` finds in that slot (and fits the immediate): the value
/// is then read from the instruction instead of a slot. Commutative operations
/// and comparisons (mirrored) take a constant on either side.
fn with_immediate(instr: Instr, const_of: impl Fn(Slot) -> Option<u64>) -> Instr {
    // Every i32 constant fits (the immediate holds its bits); an i64 constant
    // fits when it is a sign-extended i32.
    let imm32 = |slot| const_of(slot).map(|cell| cell as u32 as i32);
    let imm64 = |slot| const_of(slot).and_then(|cell| i32::try_from(cell as i64).ok());
    // Branch immediates are 16 bits (so that a branch fits one code unit): the
    // constant must be a sign-extended i16 as an i32 or i64 respectively.
    let branch32 = |slot| imm32(slot).and_then(|imm| i16::try_from(imm).ok());
    let branch64 = |slot| imm64(slot).and_then(|imm| i16::try_from(imm).ok());
    macro_rules! binary {
        ($($op:ident => $imm_op:ident, $imm:ident, $commutative:literal;)*) => {
            match instr {
                $(Instr::$op { dst, lhs, rhs } => {
                    if let Some(imm) = $imm(rhs) {
                        return Instr::$imm_op { dst, lhs, imm };
                    }
                    if let (true, Some(imm)) = ($commutative, $imm(lhs)) {
                        return Instr::$imm_op { dst, lhs: rhs, imm };
                    }
                    return instr;
                })*
                _ => {}
            }
        };
    }
    binary! {
        I32Add => I32AddImm, imm32, true;
        I32Mul => I32MulImm, imm32, true;
        I32And => I32AndImm, imm32, true;
        I32Or => I32OrImm, imm32, true;
        I32Xor => I32XorImm, imm32, true;
        I32Shl => I32ShlImm, imm32, false;
        I32ShrS => I32ShrSImm, imm32, false;
        I32ShrU => I32ShrUImm, imm32, false;
        I64Add => I64AddImm, imm64, true;
        I64Mul => I64MulImm, imm64, true;
        I64And => I64AndImm, imm64, true;
        I64Or => I64OrImm, imm64, true;
        I64Xor => I64XorImm, imm64, true;
        I64Shl => I64ShlImm, imm64, false;
        I64ShrS => I64ShrSImm, imm64, false;
        I64ShrU => I64ShrUImm, imm64, false;
    }
    // `x - c` is `x + (-c)`.
    match instr {
        Instr::I32Sub { dst, lhs, rhs } => {
            if let Some(imm) = imm32(rhs) {
                return Instr::I32AddImm {
                    dst,
                    lhs,
                    imm: imm.wrapping_neg(),
                };
            }
        }
        Instr::I64Sub { dst, lhs, rhs } => {
            if let Some(imm) = imm64(rhs).and_then(i32::checked_neg) {
                return Instr::I64AddImm { dst, lhs, imm };
            }
        }
        _ => {}
    }
    // Branches: `c op x` is `x mirrored-op c`.
    macro_rules! branches {
        ($($op:ident, $mirrored:ident => $imm_op:ident, $mirrored_imm_op:ident, $imm:ident;)*) => {
            match instr {
                $(Instr::$op { lhs, rhs, offset } => {
                    if let Some(imm) = $imm(rhs) {
                        return Instr::$imm_op { lhs, imm, offset };
                    }
                    if let Some(imm) = $imm(lhs) {
                        return Instr::$mirrored_imm_op { lhs: rhs, imm, offset };
                    }
                })*
                _ => {}
            }
        };
    }
    branches! {
        BrI32Eq, BrI32Eq => BrI32EqImm, BrI32EqImm, branch32;
        BrI32Ne, BrI32Ne => BrI32NeImm, BrI32NeImm, branch32;
        BrI32LtS, BrI32GtS => BrI32LtSImm, BrI32GtSImm, branch32;
        BrI32LtU, BrI32GtU => BrI32LtUImm, BrI32GtUImm, branch32;
        BrI32GtS, BrI32LtS => BrI32GtSImm, BrI32LtSImm, branch32;
        BrI32GtU, BrI32LtU => BrI32GtUImm, BrI32LtUImm, branch32;
        BrI32LeS, BrI32GeS => BrI32LeSImm, BrI32GeSImm, branch32;
        BrI32LeU, BrI32GeU => BrI32LeUImm, BrI32GeUImm, branch32;
        BrI32GeS, BrI32LeS => BrI32GeSImm, BrI32LeSImm, branch32;
        BrI32GeU, BrI32LeU => BrI32GeUImm, BrI32LeUImm, branch32;
        BrI32AndNez, BrI32AndNez => BrI32AndNezImm, BrI32AndNezImm, branch32;
        BrI32AndEqz, BrI32AndEqz => BrI32AndEqzImm, BrI32AndEqzImm, branch32;
        BrI64Eq, BrI64Eq => BrI64EqImm, BrI64EqImm, branch64;
        BrI64Ne, BrI64Ne => BrI64NeImm, BrI64NeImm, branch64;
        BrI64LtS, BrI64GtS => BrI64LtSImm, BrI64GtSImm, branch64;
        BrI64LtU, BrI64GtU => BrI64LtUImm, BrI64GtUImm, branch64;
        BrI64GtS, BrI64LtS => BrI64GtSImm, BrI64LtSImm, branch64;
        BrI64GtU, BrI64LtU => BrI64GtUImm, BrI64LtUImm, branch64;
        BrI64LeS, BrI64GeS => BrI64LeSImm, BrI64GeSImm, branch64;
        BrI64LeU, BrI64GeU => BrI64LeUImm, BrI64GeUImm, branch64;
        BrI64GeS, BrI64LeS => BrI64GeSImm, BrI64LeSImm, branch64;
        BrI64GeU, BrI64LeU => BrI64GeUImm, BrI64LeUImm, branch64;
        BrI64AndNez, BrI64AndNez => BrI64AndNezImm, BrI64AndNezImm, branch64;
        BrI64AndEqz, BrI64AndEqz => BrI64AndEqzImm, BrI64AndEqzImm, branch64;
    }
    instr
}

/// Drops the constants no instruction reads any more (they became immediates):
/// renumbers the constant slots densely and moves the operand stack down by the
/// number dropped. Returns the constants kept and that number.
fn drop_unused_consts(
    code: &mut [Instr],
    consts: Vec<u64>,
    const_base: usize,
) -> (Vec<u64>, usize) {
    let temp_base = const_base + consts.len();
    let mut used = vec![false; consts.len()];
    for instr in code.iter_mut() {
        instr.visit_slots_mut(|_, slot| {
            if (const_base..temp_base).contains(&slot.index()) {
                used[slot.index() - const_base] = true;
            }
        });
    }
    let unused = used.iter().filter(|used| !**used).count();
    if unused == 0 {
        return (consts, 0);
    }
    // The new slot of each kept constant.
    let mut renumbered = vec![0u16; consts.len()];
    let mut kept = Vec::with_capacity(consts.len() - unused);
    for (index, cell) in consts.into_iter().enumerate() {
        if used[index] {
            renumbered[index] = (const_base + kept.len()) as u16;
            kept.push(cell);
        }
    }
    for instr in code.iter_mut() {
        instr.visit_slots_mut(|_, slot| {
            let index = slot.index();
            if index >= temp_base {
                *slot = Slot((index - unused) as u16);
            } else if index >= const_base {
                *slot = Slot(renumbered[index - const_base]);
            }
        });
    }
    (kept, unused)
}

/// What becomes of one instruction when [`rebuild`] rebuilds the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep,
    Delete,
    /// Replaced by this instruction.
    Replace(Instr),
    /// Replaced by a copy of the `len` instructions at `start`.
    Copy {
        start: u32,
        len: u32,
    },
    /// Preceded by a `Tick`.
    Tick,
}

/// Rebuilds `code` with the `edits` (one per instruction, or none at all for no
/// change), remapping the absolute branch targets of every instruction emitted:
/// target `i` becomes the position of the first instruction emitted for `i`, or
/// for the next one if `i` was deleted.
fn rebuild(code: Vec<Instr>, edits: &[Edit]) -> Vec<Instr> {
    if edits.iter().all(|edit| *edit == Edit::Keep) {
        return code;
    }
    let emitted = |edit: &Edit| match *edit {
        Edit::Keep | Edit::Replace(_) => 1,
        Edit::Delete => 0,
        Edit::Copy { len, .. } => len as usize,
        Edit::Tick => 2,
    };
    let mut starts = Vec::with_capacity(code.len() + 1);
    let mut position = 0;
    for edit in edits {
        starts.push(position as i32);
        position += emitted(edit);
    }
    starts.push(position as i32);
    let mut rebuilt = Vec::with_capacity(position);
    let mut push = |mut instr: Instr| {
        if let Some(target) = instr.branch_offset_mut() {
            *target = starts[*target as usize];
        }
        rebuilt.push(instr);
    };
    for (instr, edit) in code.iter().zip(edits) {
        match *edit {
            Edit::Keep => push(*instr),
            Edit::Delete => {}
            Edit::Replace(with) => push(with),
            Edit::Copy { start, len } => {
                for &copied in &code[start as usize..][..len as usize] {
                    push(copied);
                }
            }
            Edit::Tick => {
                push(Instr::Tick {});
                push(*instr);
            }
        }
    }
    rebuilt
}

/// Which instructions are branch targets (of absolute targets), and which are
/// `br_table` entries.
fn targets_and_entries(code: &[Instr]) -> (Vec<bool>, Vec<bool>) {
    let mut targets = vec![false; code.len()];
    let mut entries = vec![false; code.len()];
    for (at, instr) in code.iter().enumerate() {
        let mut instr = *instr;
        if let Some(target) = instr.branch_offset_mut() {
            targets[*target as usize] = true;
        }
        if let Instr::BrTable { len, .. } = instr {
            entries[at + 1..=at + len as usize].fill(true);
        }
    }
    (targets, entries)
}

/// Applies the peephole rewrites that change the number of instructions: fused
/// address computations ([`fuse_addressing`]) and copied tails
/// ([`duplicate_short_tails`]), in one rebuild (they touch disjoint instructions:
/// memory accesses and their operands, unconditional jumps).
fn rewrite(code: Vec<Instr>, temp_base: usize) -> Vec<Instr> {
    let (targets, entries) = targets_and_entries(&code);
    let mut edits = vec![Edit::Keep; code.len()];
    fuse_addressing(&code, temp_base, &targets, &mut edits);
    duplicate_short_tails(&code, &entries, &mut edits);
    rebuild(code, &edits)
}

macro_rules! addressing_forms {
    (
        loads { $($load:ident, $load_shl:ident, $load_add_shl:ident;)* }
        stores { $($store:ident, $store_shl:ident, $store_add_shl:ident;)* }
    ) => {
        /// The address operand of a plain load or store.
        fn address_of(instr: &Instr) -> Option<Slot> {
            match *instr {
                $(Instr::$load { ptr, .. } => Some(ptr),)*
                $(Instr::$store { ptr, .. } => Some(ptr),)*
                _ => None,
            }
        }

        /// The access `instr` at `(ptr << shift) + offset` instead of `ptr + offset`,
        /// if the offset fits the indexed form.
        fn with_shl(instr: Instr, ptr: Slot, shift: u8) -> Option<Instr> {
            match instr {
                $(Instr::$load { dst, offset, .. } => {
                    let offset = u16::try_from(offset).ok()?;
                    Some(Instr::$load_shl { dst, ptr, offset, shift })
                })*
                $(Instr::$store { value, offset, .. } => {
                    let offset = u16::try_from(offset).ok()?;
                    Some(Instr::$store_shl { ptr, value, offset, shift })
                })*
                _ => None,
            }
        }

        /// The access `instr` at `base + (index << shift) + offset`, if the offset
        /// fits the indexed form.
        fn with_add_shl(instr: Instr, base: Slot, index: Slot, shift: u8) -> Option<Instr> {
            match instr {
                $(Instr::$load { dst, offset, .. } => {
                    let offset = u8::try_from(offset).ok()?;
                    Some(Instr::$load_add_shl { dst, base, index, shift, offset })
                })*
                $(Instr::$store { value, offset, .. } => {
                    let offset = u8::try_from(offset).ok()?;
                    Some(Instr::$store_add_shl { base, index, value, shift, offset })
                })*
                _ => None,
            }
        }
    };
}

addressing_forms! {
    loads {
        I32Load, I32LoadShl, I32LoadAddShl;
        I64Load, I64LoadShl, I64LoadAddShl;
        F32Load, F32LoadShl, F32LoadAddShl;
        F64Load, F64LoadShl, F64LoadAddShl;
        I32Load8S, I32Load8SShl, I32Load8SAddShl;
        I32Load8U, I32Load8UShl, I32Load8UAddShl;
        I32Load16S, I32Load16SShl, I32Load16SAddShl;
        I32Load16U, I32Load16UShl, I32Load16UAddShl;
        I64Load8S, I64Load8SShl, I64Load8SAddShl;
        I64Load8U, I64Load8UShl, I64Load8UAddShl;
        I64Load16S, I64Load16SShl, I64Load16SAddShl;
        I64Load16U, I64Load16UShl, I64Load16UAddShl;
        I64Load32S, I64Load32SShl, I64Load32SAddShl;
        I64Load32U, I64Load32UShl, I64Load32UAddShl;
    }
    stores {
        I32Store, I32StoreShl, I32StoreAddShl;
        I64Store, I64StoreShl, I64StoreAddShl;
        F32Store, F32StoreShl, F32StoreAddShl;
        F64Store, F64StoreShl, F64StoreAddShl;
        I32Store8, I32Store8Shl, I32Store8AddShl;
        I32Store16, I32Store16Shl, I32Store16AddShl;
        I64Store8, I64Store8Shl, I64Store8AddShl;
        I64Store16, I64Store16Shl, I64Store16AddShl;
        I64Store32, I64Store32Shl, I64Store32AddShl;
    }
}

/// The slot `instr` writes its result to, if it has one.
fn result_of(mut instr: Instr) -> Option<Slot> {
    instr.result_slot()
}

/// How far back from a memory access the instruction computing its address may
/// be (a store's value is computed between the two).
const ADDRESS_WINDOW: usize = 6;

/// Fuses the address computations `x << k` and `b + (x << k)` (and `b + x`) into
/// the memory access that uses them, as compilers emit them for array indexing:
/// one instruction instead of two or three.
///
/// A computation is fused when its result is a temporary (a canonical operand
/// stack slot, `>= temp_base`) that only the access reads: the access pops it. The
/// instructions between the computation and the access (a store's value) must not
/// be control instructions, branch targets, or write the computation's operands,
/// since the access now reads those operands itself, later.
fn fuse_addressing(code: &[Instr], temp_base: usize, targets: &[bool], edits: &mut [Edit]) {
    for at in 0..code.len() {
        let Some(ptr) = address_of(&code[at]) else {
            continue;
        };
        if ptr.index() < temp_base || targets[at] {
            continue;
        }
        // The instruction that computed `ptr`, and those since.
        let Some(producer) = (at.saturating_sub(ADDRESS_WINDOW)..at)
            .rev()
            .take_while(|&before| {
                before + 1 == at || !(is_control(&code[before + 1]) || targets[before + 1])
            })
            .find(|&before| result_of(code[before]) == Some(ptr))
        else {
            continue;
        };
        let between = &code[producer + 1..at];
        let unwritten = |slot: Slot| {
            between.iter().all(|instr| {
                !matches!(instr, Instr::CopySpan { .. })
                    && !is_control(instr)
                    && result_of(*instr) != Some(slot)
            })
        };
        let is_temp = |slot: Slot| slot.index() >= temp_base;
        let (first, fused) = match code[producer] {
            Instr::I32ShlImm { lhs, imm, .. } if unwritten(lhs) => {
                (producer, with_shl(code[at], lhs, (imm & 31) as u8))
            }
            Instr::I32Add { lhs, rhs, .. } if producer > 0 && !targets[producer] => {
                // `b + (x << k)` when the shift computed an operand just before;
                // `b + x` (shift 0) otherwise.
                match code[producer - 1] {
                    Instr::I32ShlImm {
                        dst,
                        lhs: index,
                        imm,
                    } if is_temp(dst) && (dst == lhs || dst == rhs) => {
                        let base = if dst == lhs { rhs } else { lhs };
                        let fused = (unwritten(base) && unwritten(index))
                            .then(|| with_add_shl(code[at], base, index, (imm & 31) as u8))
                            .flatten();
                        (producer - 1, fused)
                    }
                    _ => {
                        let fused = (unwritten(lhs) && unwritten(rhs))
                            .then(|| with_add_shl(code[at], lhs, rhs, 0))
                            .flatten();
                        (producer, fused)
                    }
                }
            }
            _ => continue,
        };
        let Some(fused) = fused else {
            continue;
        };
        if edits[first..=producer]
            .iter()
            .any(|edit| *edit != Edit::Keep)
        {
            continue;
        }
        edits[first..=producer].fill(Edit::Delete);
        edits[at] = Edit::Replace(fused);
    }
}

/// The most instructions [`duplicate_short_tails`] copies in place of a jump.
const TAIL_MAX: usize = 3;

/// Replaces an unconditional forward jump to a short tail (at most [`TAIL_MAX`]
/// instructions ending in an unconditional transfer, such as a loop latch
/// `i += 1; br loop` or a `return`) by a copy of that tail, saving the jump.
/// `br_table` entries stay jumps (the table needs one instruction per entry).
fn duplicate_short_tails(code: &[Instr], entries: &[bool], edits: &mut [Edit]) {
    let ends_tail = |instr: &Instr| {
        matches!(
            instr,
            Instr::Br { .. }
                | Instr::BrLoop { .. }
                | Instr::Return {}
                | Instr::ReturnSlot { .. }
                | Instr::Trap { .. }
        )
    };
    for (at, instr) in code.iter().enumerate() {
        let Instr::Br { offset: target } = *instr else {
            continue;
        };
        if entries[at] {
            continue;
        }
        let tail = &code[target as usize..];
        let Some(end) = tail.iter().take(TAIL_MAX).position(ends_tail) else {
            continue;
        };
        // A copied back-edge must still jump back: the jump may precede the loop
        // it lands in (a block just before a loop whose header is the back-edge).
        let backward = match tail[end] {
            Instr::BrLoop { offset: header, .. } => header as usize <= at,
            _ => true,
        };
        if backward && tail[..end].iter().all(|instr| !is_control(instr)) {
            edits[at] = Edit::Copy {
                start: target as u32,
                len: end as u32 + 1,
            };
        }
    }
}

/// Whether `instr` is a control instruction: a branch, call, return or trap.
pub(crate) fn is_control(instr: &Instr) -> bool {
    let mut instr = *instr;
    instr.branch_offset_mut().is_some()
        || matches!(
            instr,
            Instr::Trap { .. }
                | Instr::Tick {}
                | Instr::BrTable { .. }
                | Instr::Return {}
                | Instr::ReturnSlot { .. }
                | Instr::CallInternal { .. }
                | Instr::CallImport { .. }
                | Instr::CallIndirect { .. }
        )
}

/// The most instructions that do not spend chain budget the interpreter may run in
/// a row (see `exec::dispatch`): it bounds the host stack a chain of handlers
/// uses when their calls are not turned into jumps.
pub(crate) const CHAIN_RUN_MAX: usize = 64;

/// Whether the handler of `instr` spends chain budget on every way out of it:
/// `Tick`, loop back-edges, calls (on entry and on return), returns and traps.
/// A conditional branch spends it only when it jumps backward.
fn spends_chain(instr: &Instr) -> bool {
    matches!(
        instr,
        Instr::Tick {}
            | Instr::BrLoop { .. }
            | Instr::Return {}
            | Instr::ReturnSlot { .. }
            | Instr::CallInternal { .. }
            | Instr::CallImport { .. }
            | Instr::CallIndirect { .. }
            | Instr::Trap { .. }
    )
}

/// For each instruction, the most handlers that can run in a row without spending
/// chain budget, ending with its own (0 if it spends some), given that
/// `tick_before(at, run)` puts a `Tick` in front of instruction `at` (asked with
/// the run it would otherwise end, plus one for a `br_table`, which decides for
/// its entries). Works on absolute branch targets:
/// the edges that spend no budget (falling through, jumping forward, `br_table`)
/// all go forward, so one pass in code order sees every predecessor first.
fn chain_runs(
    code: &[Instr],
    target_of: impl Fn(usize, i32) -> usize,
    mut tick_before: impl FnMut(usize, usize) -> bool,
) -> Vec<usize> {
    let mut reach = vec![0; code.len() + 1];
    let mut runs = vec![0; code.len()];
    // The entries of the last `br_table` run up to here: a `Tick` may not go
    // between a table and its entries, so the table decides for them.
    let mut entries_end = 0;
    for (at, instr) in code.iter().enumerate() {
        let margin = match instr {
            Instr::BrTable { .. } => 2,
            _ => 1,
        };
        if at >= entries_end && !spends_chain(instr) && tick_before(at, reach[at] + margin) {
            reach[at] = 0;
        }
        let run = if spends_chain(instr) {
            0
        } else {
            reach[at] + 1
        };
        runs[at] = run;
        let falls_through =
            !matches!(instr, Instr::Br { .. } | Instr::BrTable { .. }) && !spends_chain(instr);
        if falls_through {
            reach[at + 1] = reach[at + 1].max(run);
        }
        let mut jump = *instr;
        if let Some(offset) = jump.branch_offset_mut() {
            let target = target_of(at, *offset);
            if target > at && !spends_chain(instr) {
                reach[target] = reach[target].max(run);
            }
        }
        if let Instr::BrTable { len, .. } = instr {
            entries_end = at + 1 + *len as usize;
            for entry in &mut reach[at + 1..entries_end] {
                *entry = (*entry).max(run);
            }
        }
    }
    runs
}

/// Puts a `Tick` in front of every instruction that could otherwise end a run of
/// more than [`CHAIN_RUN_MAX`] handlers that spend no chain budget (a path of
/// straight-line code, forward jumps and branches not taken). Branches to such an
/// instruction land on its `Tick`.
fn bound_chain_runs(code: Vec<Instr>) -> Vec<Instr> {
    let mut edits = vec![Edit::Keep; code.len()];
    chain_runs(
        &code,
        |_, target| target as usize,
        |at, run| {
            let tick = run > CHAIN_RUN_MAX;
            if tick {
                edits[at] = Edit::Tick;
            }
            tick
        },
    );
    rebuild(code, &edits)
}

/// Turns the absolute branch targets the translator works with into the offsets
/// the bytecode holds (relative to each branch).
fn relativize_branches(code: &mut [Instr]) {
    for (at, instr) in code.iter_mut().enumerate() {
        if let Some(offset) = instr.branch_offset_mut() {
            *offset -= at as i32;
        }
    }
}

/// Checks the invariants the interpreter's unchecked accesses rely on: every slot
/// operand and copied span lies within the frame, every branch target and
/// `br_table` entry is in the code, and the code ends with an unconditional
/// transfer, so execution never runs past it. Also checks what bounds the
/// interpreter's stack use and fuel accounting: no run of handlers that spend no
/// chain budget is longer than [`CHAIN_RUN_MAX`], `Br` jumps forward and
/// `BrLoop` backward. And `CallInternal` calls one of the module's
/// `defined_funcs` functions.
///
/// # Panics
/// If the translator broke an invariant (a bug, never bad input).
fn verify(code: &[Instr], frame_slots: usize, const_end: usize, defined_funcs: usize) {
    let (slots, len) = (frame_slots as u16, code.len());
    assert!(const_end <= frame_slots && frame_slots <= Slot::FRAME_SLOTS_MAX);
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
        code.last().is_some_and(terminates),
        "code must end with a transfer"
    );
    for (at, instr) in code.iter().enumerate() {
        let mut instr = *instr;
        instr.visit_slots_mut(|_, slot| assert!(slot.0 < slots, "slot {slot:?} out of frame"));
        if let Some(offset) = instr.branch_offset_mut() {
            let target = at as i64 + i64::from(*offset);
            assert!(
                (0..len as i64).contains(&target),
                "branch target out of code"
            );
        }
        match instr {
            // Unconditional forward jumps charge no fuel, so they must not close a
            // loop; loop back-edges charge it.
            Instr::Br { offset } => assert!(offset > 0, "Br must jump forward"),
            // The interpreter indexes the instance's functions unchecked.
            Instr::CallInternal { func, .. } => {
                assert!(
                    (func as usize) < defined_funcs,
                    "call of an undefined function"
                );
            }
            Instr::BrLoop { offset, .. } => assert!(offset <= 0, "BrLoop must jump backward"),
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
                let table = &code[at + 1..=at + entries as usize];
                assert!(table.iter().all(|entry| matches!(entry, Instr::Br { .. })));
            }
            _ => {}
        }
    }
    // Relative targets, checked to be in the code above.
    let runs = chain_runs(
        code,
        |at, offset| (at as i64 + i64::from(offset)) as usize,
        |_, _| false,
    );
    let longest = runs.iter().copied().max().unwrap_or(0);
    assert!(longest <= CHAIN_RUN_MAX, "chain run of {longest} handlers");
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
    /// The code so far. Branches hold *absolute* targets (instruction indices) in
    /// their `offset` field until `relativize_branches` runs at the end.
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
    /// The instruction before `last_producer`, if it also was a producer (of the
    /// value `last_producer` consumed, when the slots say so).
    prev_producer: Option<usize>,
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
        self.forget_producers();
        self.code.len() - 1
    }

    /// Emits an instruction whose result is the canonical slot of the new stack top.
    fn emit_producer(&mut self, instr: Instr) {
        self.code.push(instr);
        self.prev_producer = self.last_producer;
        self.last_producer = Some(self.code.len() - 1);
    }

    /// Forgets which instructions produced the top values: after an instruction
    /// that is not a producer, a label, or a retargeted result.
    fn forget_producers(&mut self) {
        self.last_producer = None;
        self.prev_producer = None;
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

    /// Pops an i32 condition. If the instruction just emitted computed it (a
    /// comparison, `eqz` or `and`), that instruction is removed and fused into the
    /// branch; so is an `and` or comparison just before an `eqz` that tests it.
    fn pop_cond(&mut self) -> Cond {
        let slot = self.pop();
        let Some(cond) = self.fuse_last(slot) else {
            return Cond::Nez(slot);
        };
        // `eqz` of a value computed in the same canonical slot just before: that
        // value is dead after the `eqz`, so its producer can be fused as well.
        let inner = match cond {
            Cond::Eqz(src) | Cond::Eqz64(src) if src == slot => self.fuse_last(slot),
            _ => None,
        };
        match (cond, inner) {
            (Cond::Eqz(_), Some(Cond::Cmp(cmp, lhs, rhs))) => Cond::Cmp(cmp.negate(), lhs, rhs),
            (Cond::Eqz(_), Some(Cond::Test(test @ BitTest::I32AndNez, lhs, rhs)))
            | (Cond::Eqz64(_), Some(Cond::Test(test @ BitTest::I64AndNez, lhs, rhs))) => {
                Cond::Test(test.negate(), lhs, rhs)
            }
            (Cond::Eqz(_), Some(Cond::Eqz(src))) => Cond::Nez(src),
            (Cond::Eqz(_), Some(Cond::Eqz64(src))) => Cond::Nez64(src),
            (_, Some(inner)) => {
                // Not a pair that fuses: put the inner producer back.
                self.unfuse(inner, slot);
                cond
            }
            (_, None) => cond,
        }
    }

    /// If the last instruction is the producer of `slot` (nothing emitted or
    /// bound since) and computes a condition a branch can test directly, removes
    /// it and returns that condition.
    fn fuse_last(&mut self, slot: Slot) -> Option<Cond> {
        let at = self.code.len().checked_sub(1)?;
        if self.last_producer != Some(at) {
            return None;
        }
        let cond = match self.code[at] {
            Instr::I32Eqz { dst, src } if dst == slot => Cond::Eqz(src),
            Instr::I64Eqz { dst, src } if dst == slot => Cond::Eqz64(src),
            Instr::I32And { dst, lhs, rhs } if dst == slot => {
                Cond::Test(BitTest::I32AndNez, lhs, rhs)
            }
            Instr::I64And { dst, lhs, rhs } if dst == slot => {
                Cond::Test(BitTest::I64AndNez, lhs, rhs)
            }
            last => match Cmp::of(last) {
                Some((cmp, dst, lhs, rhs)) if dst == slot => Cond::Cmp(cmp, lhs, rhs),
                _ => return None,
            },
        };
        self.code.pop();
        self.last_producer = self.prev_producer.take();
        Some(cond)
    }

    /// Undoes `fuse_last`: re-emits the producer of `slot` that computed `cond`.
    fn unfuse(&mut self, cond: Cond, slot: Slot) {
        let instr = match cond {
            Cond::Eqz(src) => Instr::I32Eqz { dst: slot, src },
            Cond::Eqz64(src) => Instr::I64Eqz { dst: slot, src },
            Cond::Test(BitTest::I32AndNez, lhs, rhs) => Instr::I32And {
                dst: slot,
                lhs,
                rhs,
            },
            Cond::Test(BitTest::I64AndNez, lhs, rhs) => Instr::I64And {
                dst: slot,
                lhs,
                rhs,
            },
            Cond::Cmp(cmp, lhs, rhs) => cmp.compute(slot, lhs, rhs),
            other => unreachable!("fuse_last never returns {other:?}"),
        };
        self.code.push(instr);
    }

    fn here(&self) -> u32 {
        self.code.len() as u32
    }

    fn patch(&mut self, at: usize, target: u32) {
        if let Some(offset) = self.code[at].branch_offset_mut() {
            *offset = target as i32;
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
        self.forget_producers();
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
            (ControlKind::Loop { header }, None) => Instr::BrLoop {
                offset: header as i32,
                charge: 0,
            },
            (ControlKind::Loop { header }, Some(cond)) => cond.branch(header),
            (_, None) => Instr::Br { offset: 0 },
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
                let at = self.emit(Instr::Br { offset: 0 });
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
            self.forget_producers();
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
        self.forget_producers();
    }

    fn else_(&mut self) {
        let index = self.control.len() - 1;
        let results = self.control[index].results;
        if self.reachable {
            self.materialize_top(results);
            let at = self.emit(Instr::Br { offset: 0 });
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
        self.forget_producers();
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
                self.forget_producers();
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

#[cfg(test)]
mod tests {
    use crate::Module;
    use ferrite_ir::Instr;
    use std::fmt::Write as _;

    /// A listing of every function's translated code, for reading hot loops.
    fn disassemble(module: &Module) -> String {
        let mut out = String::new();
        for (index, func) in module.inner.code.iter().enumerate() {
            let _ = writeln!(
                out,
                "func {index}: params {} init {:?} frame_slots {}",
                func.params, func.init, func.frame_slots
            );
            for (at, instr) in func.instrs.iter().enumerate() {
                let _ = writeln!(out, "  {at:4}: {instr:?}");
            }
        }
        out
    }

    #[test]
    fn long_runs_get_ticks_and_branches_still_land() {
        // (x + 1 + 1 ...) 100 times, with a branch over the whole sum.
        let adds = "local.get 0 i32.const 1 i32.add local.set 0 ".repeat(100);
        let wat = format!(
            r#"(module (func (export "f") (param i32) (result i32)
                 block local.get 0 i32.eqz br_if 0 {adds} end local.get 0))"#
        );
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        let code = &module.inner.code[0].instrs;
        assert!(code.contains(&Instr::Tick {}));
        let mut store = crate::Store::new(crate::Config::default());
        let instance = store.instantiate(&module, &[]).expect("instantiates");
        let Some(crate::Extern::Func(f)) = store.get_export(instance, "f") else {
            panic!("exports f")
        };
        let mut host =
            |_: &mut crate::Store,
             _: crate::HostFuncId,
             _: &[crate::Value]|
             -> Result<Vec<crate::Value>, crate::Trap> { unreachable!("no imports") };
        for (arg, expected) in [(0, 0), (5, 105)] {
            let results = store
                .invoke(f, &[crate::Value::I32(arg)], &mut host)
                .expect("runs");
            assert_eq!(results, vec![crate::Value::I32(expected)]);
        }
    }

    #[test]
    fn runs_through_forward_branches_get_ticks_too() {
        // 100 `if`s in a row: no straight run is long, but the path through all of
        // them (branches not taken, or taken forward) is.
        let ifs = "local.get 0 i32.const 7 i32.and if local.get 1 i32.const 3 i32.add \
                   local.set 1 end "
            .repeat(100);
        let wat = format!(
            r#"(module (func (export "f") (param i32 i32) (result i32)
                 {ifs} local.get 1))"#
        );
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        let code = &module.inner.code[0].instrs;
        let ticks = code
            .iter()
            .filter(|instr| **instr == Instr::Tick {})
            .count();
        assert!(ticks >= 100 * 2 / super::CHAIN_RUN_MAX, "{ticks} ticks");
        let mut store = crate::Store::new(crate::Config::default());
        let instance = store.instantiate(&module, &[]).expect("instantiates");
        let Some(crate::Extern::Func(f)) = store.get_export(instance, "f") else {
            panic!("exports f")
        };
        let mut host =
            |_: &mut crate::Store,
             _: crate::HostFuncId,
             _: &[crate::Value]|
             -> Result<Vec<crate::Value>, crate::Trap> { unreachable!("no imports") };
        for (arg, expected) in [(0, 1), (5, 301)] {
            let results = store
                .invoke(
                    f,
                    &[crate::Value::I32(arg), crate::Value::I32(1)],
                    &mut host,
                )
                .expect("runs");
            assert_eq!(results, vec![crate::Value::I32(expected)]);
        }
    }

    /// Whether an instruction with this mnemonic prefix is in the translation of
    /// function `index`.
    fn translates_to(module: &Module, index: usize, prefix: &str) -> bool {
        module.inner.code[index]
            .instrs
            .iter()
            .any(|instr| instr.name().starts_with(prefix))
    }

    /// The functions of `wat` (all `(param i64 i64) (result i64)`, exported as
    /// `f0`, `f1`, ...) on every pair of `inputs`, in Ferrite and in wasmi: the
    /// results, or whether each trapped, must agree.
    fn agree_with_wasmi(wat: &str, funcs: usize, inputs: &[i64]) {
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        let mut store = crate::Store::new(crate::Config::default());
        let instance = store.instantiate(&module, &[]).expect("instantiates");
        let engine = wasmi::Engine::default();
        let wasm = wat::parse_str(wat).expect("valid text");
        let peer_module = wasmi::Module::new(&engine, &wasm).expect("wasmi decodes");
        let mut peer_store = wasmi::Store::new(&engine, ());
        let peer = wasmi::Linker::<()>::new(&engine)
            .instantiate_and_start(&mut peer_store, &peer_module)
            .expect("wasmi instantiates");
        let mut host =
            |_: &mut crate::Store,
             _: crate::HostFuncId,
             _: &[crate::Value]|
             -> Result<Vec<crate::Value>, crate::Trap> { unreachable!("no imports") };
        for index in 0..funcs {
            let name = format!("f{index}");
            let Some(crate::Extern::Func(f)) = store.get_export(instance, &name) else {
                panic!("exports {name}")
            };
            let peer_f = peer.get_func(&peer_store, &name).expect("wasmi export");
            for &a in inputs {
                for &b in inputs {
                    let ours = store
                        .invoke(f, &[crate::Value::I64(a), crate::Value::I64(b)], &mut host)
                        .ok()
                        .map(|results| results[0]);
                    let mut out = [wasmi::Val::I64(0)];
                    let theirs = peer_f
                        .call(
                            &mut peer_store,
                            &[wasmi::Val::I64(a), wasmi::Val::I64(b)],
                            &mut out,
                        )
                        .ok()
                        .map(|()| match out[0] {
                            wasmi::Val::I64(v) => crate::Value::I64(v),
                            ref other => panic!("unexpected {other:?}"),
                        });
                    assert_eq!(ours, theirs, "{name}({a}, {b}): {}", wat_func(wat, index));
                }
            }
        }
    }

    /// The text of function `index` of `wat`, for failure messages.
    fn wat_func(wat: &str, index: usize) -> &str {
        let marker = format!("(export \"f{index}\")");
        let start = wat.find(&marker).unwrap_or(0);
        let end = wat[start..]
            .find("(func")
            .map_or(wat.len(), |end| start + end);
        &wat[start..end]
    }

    /// A module of `(param i64 i64) (result i64)` functions with the given bodies
    /// (`$a`, `$b` are the parameters, `$x`, `$y` their low halves as i32 locals).
    fn module_of(bodies: &[String]) -> String {
        let mut wat = String::from(
            "(module (memory 1 1) (data (i32.const 0) \"\\01\\82\\03\\f4\\05\\06\\97\\08\")\n",
        );
        for (index, body) in bodies.iter().enumerate() {
            let _ = writeln!(
                wat,
                "(func (export \"f{index}\") (param $a i64) (param $b i64) (result i64) \
                 (local $x i32) (local $y i32) \
                 (local.set $x (i32.wrap_i64 (local.get $a))) \
                 (local.set $y (i32.wrap_i64 (local.get $b))) {body})"
            );
        }
        wat.push(')');
        wat
    }

    const INPUTS: &[i64] = &[
        0,
        1,
        2,
        5,
        7,
        -1,
        -2,
        32767,
        32768,
        -32769,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0001,
        i64::MIN,
    ];

    #[test]
    fn fused_branches_agree_with_wasmi() {
        let conds = [
            "(i32.eqz (i32.and (local.get $x) (local.get $y)))",
            "(i32.and (local.get $x) (local.get $y))",
            "(i32.and (local.get $x) (i32.const 6))",
            "(i32.eqz (i32.and (i32.const -3) (local.get $y)))",
            "(i64.eqz (local.get $a))",
            "(i32.eqz (i64.eqz (local.get $a)))",
            "(i64.eqz (i64.and (local.get $a) (local.get $b)))",
            "(i32.eqz (i64.eqz (i64.and (local.get $a) (i64.const 1))))",
            "(i32.eqz (i32.lt_s (local.get $x) (local.get $y)))",
            "(i32.eqz (i64.ge_u (local.get $a) (local.get $b)))",
            "(i32.lt_s (local.get $x) (i32.const 5))",
            "(i32.lt_s (i32.const 5) (local.get $x))",
            "(i32.gt_u (local.get $x) (i32.const -1))",
            "(i32.le_u (i32.const -2) (local.get $y))",
            "(i32.ne (local.get $x) (i32.const 32767))",
            "(i32.ge_s (local.get $x) (i32.const 32768))",
            "(i64.eq (local.get $a) (i64.const 1))",
            "(i64.le_s (i64.const -40000) (local.get $a))",
            "(i64.gt_u (local.get $b) (i64.const -32768))",
            "(i64.lt_s (local.get $a) (i64.const 0x80000000))",
        ];
        let mut bodies = Vec::new();
        for cond in conds {
            bodies.push(format!(
                "(if (result i64) {cond} (then (i64.const 1)) (else (i64.const 0)))"
            ));
            bodies.push(format!(
                "(block (result i64) (drop (br_if 0 (i64.const 7) {cond})) (i64.const 3))"
            ));
            // A backward conditional branch: count the iterations of a loop that
            // runs while the condition holds, at most 3 times.
            bodies.push(format!(
                "(local.set $x (i32.const 0)) \
                 (loop $l (local.set $x (i32.add (local.get $x) (i32.const 1))) \
                   (br_if $l (i32.and (i32.lt_u (local.get $x) (i32.const 3)) {cond}))) \
                 (i64.extend_i32_u (local.get $x))"
            ));
        }
        let wat = module_of(&bodies);
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        assert!(translates_to(&module, 0, "BrI32AndNez"));
        assert!(translates_to(&module, 6 * 3, "BrI64AndNez"));
        assert!(translates_to(&module, 10 * 3, "BrI32GeSImm"));
        agree_with_wasmi(&wat, bodies.len(), INPUTS);
    }

    #[test]
    fn immediate_operands_agree_with_wasmi() {
        let mut bodies = Vec::new();
        for op in [
            "add", "sub", "mul", "and", "or", "xor", "shl", "shr_s", "shr_u",
        ] {
            for c in ["0", "1", "-1", "31", "33", "0x7fffffff", "-0x80000000"] {
                bodies.push(format!(
                    "(i64.extend_i32_u (i32.{op} (local.get $x) (i32.const {c})))"
                ));
                bodies.push(format!(
                    "(i64.extend_i32_u (i32.{op} (i32.const {c}) (local.get $x)))"
                ));
            }
            for c in [
                "1",
                "-1",
                "63",
                "65",
                "0x7fffffff",
                "-0x80000000",
                "0x80000000",
                "-0x80000001",
                "0x123456789",
            ] {
                bodies.push(format!("(i64.{op} (local.get $a) (i64.const {c}))"));
                bodies.push(format!("(i64.{op} (i64.const {c}) (local.get $a))"));
            }
        }
        let wat = module_of(&bodies);
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        assert!(translates_to(&module, 1, "I32AddImm"));
        agree_with_wasmi(&wat, bodies.len(), INPUTS);
    }

    #[test]
    fn fused_addressing_agrees_with_wasmi() {
        let mut bodies = Vec::new();
        let loads = [
            ("i64.load", ""),
            ("i32.load", "i64.extend_i32_u"),
            ("i32.load8_s", "i64.extend_i32_s"),
            ("i32.load16_u", "i64.extend_i32_u"),
            ("i64.load32_s", ""),
            ("f64.load", "i64.reinterpret_f64"),
            ("f32.load", "i64.extend_i32_u (i32.reinterpret_f32"),
        ];
        for (load, convert) in loads {
            let converted = |access: String| match convert {
                "" => access,
                _ if convert.contains('(') => format!("({convert} {access}))"),
                _ => format!("({convert} {access})"),
            };
            for (shift, offset) in [(0, 0), (2, 4), (3, 255), (1, 65535), (2, 65536), (33, 1)] {
                let address = format!("(i32.shl (local.get $x) (i32.const {shift}))");
                bodies.push(converted(format!("({load} offset={offset} {address})")));
                let address = format!("(i32.add (local.get $y) {address})");
                bodies.push(converted(format!("({load} offset={offset} {address})")));
            }
            let address = "(i32.add (local.get $x) (local.get $y))";
            bodies.push(converted(format!("({load} {address})")));
        }
        for (store, value, load) in [
            (
                "i32.store",
                "(i32.add (local.get $y) (i32.const 1))",
                "i64.load32_u",
            ),
            ("i64.store8", "(local.get $b)", "i64.load"),
            ("i32.store16", "(local.get $y)", "i64.load16_s"),
            (
                "f64.store",
                "(f64.convert_i64_s (local.get $b))",
                "i64.load",
            ),
        ] {
            for (shift, offset) in [(0, 0), (2, 3), (3, 256), (31, 0)] {
                let address = format!("(i32.shl (local.get $x) (i32.const {shift}))");
                bodies.push(format!(
                    "({store} offset={offset} {address} {value}) \
                     ({load} offset={offset} {address})"
                ));
                let address = format!("(i32.add (i32.const 64) {address})");
                bodies.push(format!(
                    "({store} offset={offset} {address} {value}) \
                     ({load} offset={offset} {address})"
                ));
            }
        }
        // The value expression writes the local the address was computed from:
        // the address must be the one computed first.
        bodies.push(
            "(i32.store (i32.shl (local.get $x) (i32.const 2)) (local.tee $x (i32.const 8))) \
             (i64.load32_u (i32.const 32))"
                .to_string(),
        );
        let wat = module_of(&bodies);
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("valid module");
        assert!(translates_to(&module, 2, "I64LoadShl"));
        assert!(translates_to(&module, 3, "I64LoadAddShl"));
        let inputs: Vec<i64> = [0, 1, 2, 3, 5, 8, 100, 8190, 16383, 16384, -1, 0x7fff_ffff]
            .into_iter()
            .collect();
        agree_with_wasmi(&wat, bodies.len(), &inputs);
    }

    #[test]
    fn duplicated_tails_agree_with_wasmi() {
        let bodies = [
            // An if/else whose join is a loop latch (copied into the `then` arm).
            "(local.set $y (i32.const 0)) \
             (block $done (loop $l \
               (br_if $done (i32.ge_u (local.get $y) (i32.const 10))) \
               (if (i32.and (local.get $y) (i32.const 1)) \
                 (then (local.set $x (i32.add (local.get $x) (local.get $y)))) \
                 (else (local.set $x (i32.mul (local.get $x) (i32.const 3))))) \
               (local.set $y (i32.add (local.get $y) (i32.const 1))) \
               (br $l))) \
             (i64.extend_i32_u (local.get $x))"
                .to_string(),
            // A jump to a return.
            "(if (result i64) (i32.eqz (local.get $x)) (then (local.get $b)) \
               (else (i64.add (local.get $a) (local.get $b))))"
                .to_string(),
        ];
        let wat = module_of(&bodies);
        agree_with_wasmi(&wat, bodies.len(), INPUTS);
    }

    /// Found by the differential test (seed 2703): a jump to the end of a block
    /// just before a loop whose first instruction is its back-edge. The short tail
    /// the jump lands on runs into that back-edge, so copying the tail in place of
    /// the jump would put a back-edge before its loop.
    #[test]
    fn seed2703_jump_to_a_tail_ending_in_the_back_edge_of_a_later_loop() {
        let wat = r#"(module (func (export "f") (param i32)
            (block (br 0))
            (local.set 0 (i32.add (local.get 0) (i32.const 1)))
            (loop (br 0))))"#;
        let module = Module::from_text_or_binary(wat.as_bytes()).expect("translates");
        let mut store = crate::Store::new(crate::Config::default());
        let instance = store.instantiate(&module, &[]).expect("instantiates");
        let Some(crate::Extern::Func(f)) = store.get_export(instance, "f") else {
            panic!("exports f")
        };
        let mut execution =
            crate::Execution::new(&store, f, &[crate::Value::I32(1)]).expect("starts");
        let outcome = execution.run(&mut store, 1000).expect("runs");
        assert_eq!(outcome, crate::RunOutcome::OutOfBudget, "an endless loop");
    }

    /// Found translating Yosys: a `br_table` at the end of a run as long as the
    /// limit; the `Tick` must go before the table, not between it and its entries.
    #[test]
    fn ticks_never_split_a_br_table_from_its_entries() {
        for adds in super::CHAIN_RUN_MAX - 3..super::CHAIN_RUN_MAX + 3 {
            let body = "local.get 0 i32.const 1 i32.add local.set 0 ".repeat(adds);
            let wat = format!(
                r#"(module (func (export "f") (param i32) (result i32)
                     (block (block (block {body}
                       (br_table 0 1 2 (i32.and (local.get 0) (i32.const 3))))
                       (return (i32.const 10)))
                       (return (i32.const 20)))
                     (i32.const 30)))"#
            );
            let module = Module::from_text_or_binary(wat.as_bytes()).expect("translates");
            let mut store = crate::Store::new(crate::Config::default());
            let instance = store.instantiate(&module, &[]).expect("instantiates");
            let Some(crate::Extern::Func(f)) = store.get_export(instance, "f") else {
                panic!("exports f")
            };
            let mut host = |_: &mut crate::Store,
                            _: crate::HostFuncId,
                            _: &[crate::Value]|
             -> Result<Vec<crate::Value>, crate::Trap> {
                unreachable!("no imports")
            };
            for arg in 0..4 {
                let expected = [10, 20, 30, 30][(arg + adds as i32) as usize & 3];
                let results = store
                    .invoke(f, &[crate::Value::I32(arg)], &mut host)
                    .expect("runs");
                assert_eq!(results, vec![crate::Value::I32(expected)], "{adds} adds");
            }
        }
    }

    /// Prints the translation of the `.wat` file named by `FERRITE_DUMP_WAT`:
    /// `FERRITE_DUMP_WAT=path cargo test -p ferrite-vm dump -- --ignored --nocapture`.
    #[test]
    #[ignore = "a debugging aid, run on demand"]
    fn dump() {
        let path = std::env::var("FERRITE_DUMP_WAT").expect("FERRITE_DUMP_WAT names a .wat file");
        let text = std::fs::read(&path).expect("readable .wat file");
        let module = Module::from_text_or_binary(&text).expect("valid module");
        println!("{}", disassemble(&module));
    }
}
