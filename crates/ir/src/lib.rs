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
//! A frame is laid out as `[params | locals | operand stack | constants]`, all
//! 64-bit cells. Branch targets are absolute instruction indices within the function.
//!
//! The instruction set is declared once, as a table, by [`define_isa!`]; the enum and
//! its slot visitor are generated from it.
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
}

impl Field for Slot {
    #[inline]
    fn visit(&mut self, name: &'static str, f: &mut impl FnMut(&'static str, &mut Slot)) {
        f(name, self);
    }
}

macro_rules! immediate_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            #[inline]
            fn visit(&mut self, _: &'static str, _: &mut impl FnMut(&'static str, &mut Slot)) {}
        }
    )*};
}
immediate_field!(u16, u32, TrapCode);

/// Declares the instruction set: one line per instruction, its fields, and its doc.
///
/// A field named `dst` is the instruction's result slot; every other `Slot` field
/// is an input.
#[macro_export]
macro_rules! define_isa {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $fty:ty),* $(,)? } ),* $(,)?) => {
        /// One instruction of Ferrite's bytecode. See the crate docs for the frame model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Instr {
            $( $(#[$doc])* $name { $($field: $fty),* } ),*
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
        }
    };
}

mod isa;
pub use isa::Instr;

impl Instr {
    /// The branch target of a branch instruction, for patching forward branches.
    pub fn branch_target_mut(&mut self) -> Option<&mut u32> {
        match self {
            Instr::Br { target }
            | Instr::BrLoop { target }
            | Instr::BrIfNez { target, .. }
            | Instr::BrIfEqz { target, .. }
            | Instr::BrI32Eq { target, .. }
            | Instr::BrI32Ne { target, .. }
            | Instr::BrI32LtS { target, .. }
            | Instr::BrI32LtU { target, .. }
            | Instr::BrI32GtS { target, .. }
            | Instr::BrI32GtU { target, .. }
            | Instr::BrI32LeS { target, .. }
            | Instr::BrI32LeU { target, .. }
            | Instr::BrI32GeS { target, .. }
            | Instr::BrI32GeU { target, .. }
            | Instr::BrI64Eq { target, .. }
            | Instr::BrI64Ne { target, .. }
            | Instr::BrI64LtS { target, .. }
            | Instr::BrI64LtU { target, .. }
            | Instr::BrI64GtS { target, .. }
            | Instr::BrI64GtU { target, .. }
            | Instr::BrI64LeS { target, .. }
            | Instr::BrI64LeU { target, .. }
            | Instr::BrI64GeS { target, .. }
            | Instr::BrI64GeU { target, .. } => Some(target),
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
    fn branch_targets_are_patchable() {
        let mut br = Instr::BrIfEqz {
            cond: Slot(3),
            target: 0,
        };
        *br.branch_target_mut().expect("branch") = 42;
        assert_eq!(
            br,
            Instr::BrIfEqz {
                cond: Slot(3),
                target: 42
            }
        );
        assert!((Instr::Return {}).branch_target_mut().is_none());
    }
}
