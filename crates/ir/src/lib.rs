//! Ferrite's internal bytecode.
//!
//! WebAssembly is a stack machine, but the height of its operand stack is known at
//! every instruction. The translator in `ferrite-vm` therefore gives every operand
//! stack position, local and constant a fixed *slot* in the function's frame, and
//! every [`Instr`] names its inputs and its result by slot. An interpreter for this
//! form does one dispatch per useful operation instead of several pushes and pops,
//! and a position in the code is a plain `u32`, which is what lets an execution be
//! saved at any instruction.
//!
//! A frame is laid out as `[params | locals | constants | operand stack]`, all
//! 64-bit cells. Branch targets are offsets in instructions relative to the branch
//! itself, so that an interpreter jumps with one add to its instruction pointer.
//!
//! The instruction set is declared once, as a table, in [`for_each_instr!`]; the
//! enum, its [`Opcode`] and its slot visitor are generated from it by
//! [`define_isa!`], and an interpreter can generate its handler table from the same
//! table (the table macro calls back any macro with the whole table).
//!
//! ```
//! use ferrite_ir::{Instr, Slot};
//! let mut add = Instr::I32Add { dst: Slot(2), lhs: Slot(0), rhs: Slot(1) };
//! let mut inputs = Vec::new();
//! add.visit_slots_mut(|name, slot| if name != "dst" { inputs.push(slot.0) });
//! assert_eq!(inputs, vec![0, 1]);
//! ```

pub use ferrite_core::TrapCode;

/// A cell of the current frame, counted from the frame's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Slot(pub u16);

impl Slot {
    /// The largest number of slots a frame may have.
    pub const FRAME_SLOTS_MAX: usize = u16::MAX as usize;

    /// The slot as an index into the frame.
    #[inline(always)]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A field of an instruction: slots are visited, immediates are not.
pub trait Field {
    /// Calls `f` with `name` and the slot if this field is a slot.
    fn visit(&mut self, name: &'static str, f: &mut impl FnMut(&'static str, &mut Slot));

    /// Some value of the field's type, for [`Instr::example`].
    fn example() -> Self;
}

impl Field for Slot {
    #[inline]
    fn visit(&mut self, name: &'static str, f: &mut impl FnMut(&'static str, &mut Slot)) {
        f(name, self);
    }

    fn example() -> Self {
        Slot(1)
    }
}

impl Field for TrapCode {
    #[inline]
    fn visit(&mut self, _: &'static str, _: &mut impl FnMut(&'static str, &mut Slot)) {}

    fn example() -> Self {
        TrapCode::Unreachable
    }
}

macro_rules! immediate_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            #[inline]
            fn visit(&mut self, _: &'static str, _: &mut impl FnMut(&'static str, &mut Slot)) {}

            fn example() -> Self {
                1
            }
        }
    )*};
}
immediate_field!(u8, u16, i16, u32, i32);

/// Declares the instruction set: one line per instruction, its fields, and its doc.
///
/// A field named `dst` is the instruction's result slot; every other `Slot` field
/// is an input. Called by [`for_each_instr!`] with the table.
#[macro_export]
macro_rules! define_isa {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $fty:ty),* $(,)? } ),* $(,)?) => {
        /// One instruction of Ferrite's bytecode. See the crate docs for the frame model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Instr {
            $( $(#[$doc])* $name { $($field: $fty),* } ),*
        }

        /// The opcode of each [`Instr`] variant: its discriminant, in table order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u16)]
        pub enum Opcode {
            $( $(#[$doc])* $name ),*
        }

        impl Instr {
            /// Calls `f` with the field name and a mutable reference of each slot field.
            pub fn visit_slots_mut(&mut self, mut f: impl FnMut(&'static str, &mut Slot)) {
                match self {
                    $( Instr::$name { $($field),* } => {
                        $( Field::visit($field, stringify!($field), &mut f); )*
                    } )*
                }
            }

            /// The instruction's mnemonic, for disassembly and diagnostics.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Instr::$name { .. } => stringify!($name), )*
                }
            }

            /// The instruction's opcode.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $( Instr::$name { .. } => Opcode::$name, )*
                }
            }
        }

        impl Instr {
            /// An instruction with opcode `opcode` and some operands (for tests that
            /// go over every instruction).
            pub fn example(opcode: Opcode) -> Instr {
                match opcode {
                    $( Opcode::$name => Instr::$name { $($field: <$fty as Field>::example()),* }, )*
                }
            }
        }

        impl Opcode {
            /// Every opcode, in table order (`ALL[op as usize] == op`).
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name),*];
        }
    };
}

mod isa;
pub use isa::{Instr, Opcode};

impl Instr {
    /// The branch offset of a branch instruction (relative to the branch itself),
    /// for patching forward branches.
    pub fn branch_offset_mut(&mut self) -> Option<&mut i32> {
        // The branches are declared together, from `Br` to `BrI64GeUImm`: one range
        // check rules out every other instruction before the (large) `match`.
        let opcode = self.opcode() as u16;
        if !(Opcode::Br as u16..=Opcode::BrI64GeUImm as u16).contains(&opcode) {
            return None;
        }
        match self {
            Instr::Br { offset }
            | Instr::BrLoop { offset, .. }
            | Instr::BrIfNez { offset, .. }
            | Instr::BrIfEqz { offset, .. }
            | Instr::BrI64Nez { offset, .. }
            | Instr::BrI64Eqz { offset, .. }
            | Instr::BrI32AndNez { offset, .. }
            | Instr::BrI32AndEqz { offset, .. }
            | Instr::BrI64AndNez { offset, .. }
            | Instr::BrI64AndEqz { offset, .. }
            | Instr::BrI32AndNezImm { offset, .. }
            | Instr::BrI32AndEqzImm { offset, .. }
            | Instr::BrI32EqImm { offset, .. }
            | Instr::BrI32NeImm { offset, .. }
            | Instr::BrI32LtSImm { offset, .. }
            | Instr::BrI32LtUImm { offset, .. }
            | Instr::BrI32GtSImm { offset, .. }
            | Instr::BrI32GtUImm { offset, .. }
            | Instr::BrI32LeSImm { offset, .. }
            | Instr::BrI32LeUImm { offset, .. }
            | Instr::BrI32GeSImm { offset, .. }
            | Instr::BrI32GeUImm { offset, .. }
            | Instr::BrI64AndNezImm { offset, .. }
            | Instr::BrI64AndEqzImm { offset, .. }
            | Instr::BrI64EqImm { offset, .. }
            | Instr::BrI64NeImm { offset, .. }
            | Instr::BrI64LtSImm { offset, .. }
            | Instr::BrI64LtUImm { offset, .. }
            | Instr::BrI64GtSImm { offset, .. }
            | Instr::BrI64GtUImm { offset, .. }
            | Instr::BrI64LeSImm { offset, .. }
            | Instr::BrI64LeUImm { offset, .. }
            | Instr::BrI64GeSImm { offset, .. }
            | Instr::BrI64GeUImm { offset, .. }
            | Instr::BrI32Eq { offset, .. }
            | Instr::BrI32Ne { offset, .. }
            | Instr::BrI32LtS { offset, .. }
            | Instr::BrI32LtU { offset, .. }
            | Instr::BrI32GtS { offset, .. }
            | Instr::BrI32GtU { offset, .. }
            | Instr::BrI32LeS { offset, .. }
            | Instr::BrI32LeU { offset, .. }
            | Instr::BrI32GeS { offset, .. }
            | Instr::BrI32GeU { offset, .. }
            | Instr::BrI64Eq { offset, .. }
            | Instr::BrI64Ne { offset, .. }
            | Instr::BrI64LtS { offset, .. }
            | Instr::BrI64LtU { offset, .. }
            | Instr::BrI64GtS { offset, .. }
            | Instr::BrI64GtU { offset, .. }
            | Instr::BrI64LeS { offset, .. }
            | Instr::BrI64LeU { offset, .. }
            | Instr::BrI64GeS { offset, .. }
            | Instr::BrI64GeU { offset, .. } => Some(offset),
            _ => None,
        }
    }

    /// The result slot, if the instruction writes one slot named `dst`.
    pub fn result_slot(&mut self) -> Option<Slot> {
        let mut result = None;
        self.visit_slots_mut(|name, slot| {
            if name == "dst" {
                result = Some(*slot);
            }
        });
        result
    }

    /// Redirects the result of the instruction to `target`; returns false if the
    /// instruction has no result slot.
    pub fn set_result_slot(&mut self, target: Slot) -> bool {
        let mut found = false;
        self.visit_slots_mut(|name, slot| {
            if name == "dst" {
                *slot = target;
                found = true;
            }
        });
        found
    }
}

/// The size of one instruction; kept small because code density is dispatch speed.
const _: () = assert!(std::mem::size_of::<Instr>() <= 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_slot_is_dst_only() {
        let mut add = Instr::I32Add {
            dst: Slot(7),
            lhs: Slot(7),
            rhs: Slot(8),
        };
        assert_eq!(add.result_slot(), Some(Slot(7)));
        assert!(add.set_result_slot(Slot(1)));
        assert_eq!(
            add,
            Instr::I32Add {
                dst: Slot(1),
                lhs: Slot(7),
                rhs: Slot(8)
            }
        );
        let mut store = Instr::I32Store {
            ptr: Slot(0),
            value: Slot(1),
            offset: 4,
        };
        assert!(store.result_slot().is_none());
    }

    #[test]
    fn branch_offsets_are_patchable() {
        let mut br = Instr::BrIfEqz {
            cond: Slot(3),
            offset: 0,
        };
        *br.branch_offset_mut().expect("branch") = -42;
        assert_eq!(
            br,
            Instr::BrIfEqz {
                cond: Slot(3),
                offset: -42
            }
        );
        assert!((Instr::Return {}).branch_offset_mut().is_none());
    }

    #[test]
    fn branches_are_the_instructions_with_an_offset() {
        let mut branches = 0;
        for &opcode in Opcode::ALL {
            let mut instr = Instr::example(opcode);
            assert_eq!(instr.opcode(), opcode);
            let mut offsets = 0;
            instr.visit_slots_mut(|_, _| {});
            if let Some(offset) = instr.branch_offset_mut() {
                assert_eq!(*offset, 1, "{opcode:?}: the offset is the `offset` field");
                offsets += 1;
            }
            let declared = format!("{instr:?}").contains("offset: 1,")
                || format!("{instr:?}").ends_with("offset: 1 }");
            let memory = instr.name().contains("Load") || instr.name().contains("Store");
            assert_eq!(
                offsets == 1,
                declared && !memory,
                "{opcode:?} has a branch offset exactly when it is a branch"
            );
            branches += offsets;
        }
        assert_eq!(branches, 54, "every branch (update when adding some)");
    }

    #[test]
    fn opcodes_are_table_positions() {
        assert_eq!(Opcode::ALL[0], Opcode::Trap);
        for (index, opcode) in Opcode::ALL.iter().enumerate() {
            assert_eq!(*opcode as usize, index);
        }
        let add = Instr::I64Add {
            dst: Slot(1),
            lhs: Slot(2),
            rhs: Slot(3),
        };
        assert_eq!(add.opcode(), Opcode::I64Add);
    }
}
