//! The executable form of a function: direct-threaded code.
//!
//! The translator's bytecode ([`Instr`], an enum) is lowered once into a sequence
//! of 16-byte [`CodeUnit`]s. An instruction starts a unit with the address of its
//! handler (8 bytes), followed by its operands packed in table order (the
//! instruction's [`payload`] struct). Most instructions fit one unit; the few
//! whose operands exceed 8 bytes (`call_indirect`, some table operations) run on
//! into the next unit, which is never executed. A handler reads its operands at a
//! fixed offset from the instruction pointer and continues with the handler whose
//! address starts the next instruction: `jmp *(pc)`, with no opcode table.
//!
//! Branch offsets count bytes and saved positions count units, not instructions.
//!
//! This is a dispatch module: the unsafe reads of handlers and operands rely on
//! the layout written by [`lower`] (see [`super::dispatch::Pc`]).

use super::{
    dispatch::{Handler, Meter},
    handlers,
};
use ferrite_ir::Instr;

/// One 16-byte unit of executable code. Plain bytes: units written by [`lower`]
/// hold a handler address (with its provenance) and operand bytes.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub(crate) struct CodeUnit([u64; 2]);

impl std::fmt::Debug for CodeUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}:{:016x}", self.0[0], self.0[1])
    }
}

/// Bytes of a code unit; branch offsets count bytes, so that a jump is one add.
const UNIT_BYTES: i64 = 16;

/// Bytes of a unit before the operands: the handler address.
const HANDLER_BYTES: usize = 8;
const _: () = assert!(std::mem::size_of::<Handler>() == HANDLER_BYTES);
const _: () = assert!(std::mem::size_of::<CodeUnit>() == 16);

/// The operands of every instruction, packed in table order (no padding, align 1):
/// what a handler reads at `HANDLER_BYTES` into its first unit.
pub(super) mod payload {
    use ferrite_ir::{Slot, TrapCode};

    macro_rules! payloads {
        ($( $(#[$doc:meta])* $name:ident { $($field:ident : $fty:ty),* $(,)? } ),* $(,)?) => {$(
            #[derive(Debug, Clone, Copy)]
            #[repr(C, packed)]
            pub(crate) struct $name { $(pub(crate) $field: $fty),* }

            impl $name {
                /// Code units the instruction takes.
                pub(crate) const UNITS: usize =
                    (super::HANDLER_BYTES + std::mem::size_of::<Self>()).div_ceil(16);
            }
        )*};
    }
    ferrite_ir::for_each_instr!(payloads);
}

/// Writes the handler `handler` and the operands `operands` at unit `at`.
fn emit<P: Copy>(code: &mut [CodeUnit], at: usize, handler: Handler, operands: P) {
    let units = (HANDLER_BYTES + std::mem::size_of::<P>()).div_ceil(16);
    assert!(at + units <= code.len(), "instruction runs past the code");
    // SAFETY: the `units` units from `at` lie within `code` (asserted); the handler
    // is written at the start of the first (units are 16-byte aligned) and the
    // operands (align 1) right after it, within those units.
    unsafe {
        let start = code.as_mut_ptr().add(at);
        start.cast::<Handler>().write(handler);
        let operands_at = start.cast::<u8>().add(HANDLER_BYTES);
        operands_at.cast::<P>().write_unaligned(operands);
    }
}

/// The handler and code units of an instruction.
fn handler_of(instr: &Instr) -> (Handler, usize) {
    macro_rules! dispatch_of {
        ($( $(#[$doc:meta])* $name:ident { $($field:ident : $fty:ty),* $(,)? } ),* $(,)?) => {
            match instr {
                $(Instr::$name { .. } => (handlers::$name as Handler, payload::$name::UNITS),)*
            }
        };
    }
    ferrite_ir::for_each_instr!(dispatch_of)
}

/// Encodes `instr` (with branch offsets already in units) at unit `at`.
fn encode(code: &mut [CodeUnit], at: usize, instr: Instr) {
    macro_rules! encode_all {
        ($( $(#[$doc:meta])* $name:ident { $($field:ident : $fty:ty),* $(,)? } ),* $(,)?) => {
            match instr {
                $(Instr::$name { $($field),* } => {
                    emit(code, at, handlers::$name, payload::$name { $($field),* });
                })*
            }
        };
    }
    ferrite_ir::for_each_instr!(encode_all);
}

/// The fuel a backward branch by `offset` bytes (of executable code) charges: the
/// length of the loop body in code units, at least 1.
#[inline(always)]
pub(super) fn back_edge_cost(offset: i32) -> u64 {
    (1 - i64::from(offset) / UNIT_BYTES) as u64
}

/// The fuel a loop back-edge by `offset` units charges, as the `Meter` value to
/// subtract (see [`back_edge_cost`]).
///
/// # Panics
/// If the loop body is longer than the charge can say (2^23 units, far more than
/// a wasm function body of at most 7 654 321 bytes translates to).
fn back_edge_charge(offset: i64) -> i32 {
    let cost = 1 - offset;
    i32::try_from(Meter::charge_of(cost as u64)).expect("loop body fits the charge")
}

/// Lowers verified bytecode to executable code: every instruction becomes its
/// handler and operands, branch offsets are converted from instructions to bytes
/// of code, and the fuel charge of every loop back-edge is computed.
///
/// # Panics
/// If a branch target is outside the code (`translate::verify` rules that out).
pub(crate) fn lower(instrs: &[Instr]) -> Box<[CodeUnit]> {
    let mut starts = Vec::with_capacity(instrs.len() + 1);
    let mut units = 0;
    for instr in instrs {
        starts.push(units);
        units += handler_of(instr).1;
    }
    starts.push(units);
    let mut code = vec![CodeUnit([0; 2]); units].into_boxed_slice();
    for (index, (instr, &at)) in instrs.iter().zip(&starts).enumerate() {
        let mut instr = *instr;
        if let Some(offset) = instr.branch_offset_mut() {
            let target = usize::try_from(index as i64 + i64::from(*offset))
                .ok()
                .filter(|target| *target < instrs.len())
                .expect("branch target within the code");
            let units = starts[target] as i64 - at as i64;
            if let Instr::BrLoop { charge, .. } = &mut instr {
                *charge = back_edge_charge(units);
            }
            if let Some(offset) = instr.branch_offset_mut() {
                *offset = i32::try_from(units * UNIT_BYTES).expect("code fits i32 byte offsets");
            }
        }
        encode(&mut code, at, instr);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_ir::{Slot, TrapCode};

    #[test]
    fn instructions_are_handler_and_packed_operands() {
        assert_eq!(payload::I64Add::UNITS, 1);
        assert_eq!(payload::Return::UNITS, 1);
        assert_eq!(payload::BrI64EqImm::UNITS, 1);
        assert_eq!(payload::I32Load::UNITS, 1);
        assert_eq!(payload::CallInternal::UNITS, 1);
        assert_eq!(payload::CallIndirect::UNITS, 2);
        let instrs = [
            Instr::I64Add {
                dst: Slot(1),
                lhs: Slot(2),
                rhs: Slot(3),
            },
            Instr::CallIndirect {
                type_index: 7,
                table: 8,
                index: Slot(9),
                base: Slot(10),
            },
            Instr::BrIfEqz {
                cond: Slot(4),
                offset: -2,
            },
            Instr::Trap {
                code: TrapCode::Unreachable,
            },
        ];
        let code = lower(&instrs);
        assert_eq!(code.len(), 5);
        // SAFETY: unit 3 starts the branch, written by `lower`.
        let branch = unsafe {
            code.as_ptr()
                .add(3)
                .cast::<u8>()
                .add(HANDLER_BYTES)
                .cast::<payload::BrIfEqz>()
                .read()
        };
        let (cond, offset) = (branch.cond, branch.offset);
        assert_eq!((cond, offset), (Slot(4), -3 * 16), "offset counts bytes");
        // SAFETY: unit 1 starts the indirect call, whose operands run into unit 2.
        let call = unsafe {
            code.as_ptr()
                .add(1)
                .cast::<u8>()
                .add(HANDLER_BYTES)
                .cast::<payload::CallIndirect>()
                .read()
        };
        let (type_index, table, index, base) = (call.type_index, call.table, call.index, call.base);
        assert_eq!((type_index, table, index, base), (7, 8, Slot(9), Slot(10)));
    }
}
