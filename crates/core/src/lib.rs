//! Ferrite's shared vocabulary: value types, typed indices, limits and trap codes.
//!
//! Every other Ferrite crate speaks in these terms. This crate performs no I/O and
//! depends on nothing but `thiserror`, so that the engine, the virtual heap and the
//! store agree on names without depending on one another.
//!
//! ```
//! use ferrite_core::{StackLimits, TrapCode};
//! let limits = StackLimits::default();
//! assert!(limits.call_depth_max > 0);
//! assert_eq!(TrapCode::IntegerDivideByZero.message(), "integer divide by zero");
//! ```

mod limits;
mod trap;
mod value;

pub use limits::{StackLimits, WASM_PAGES_MAX, WASM_PAGE_SIZE};
pub use trap::TrapCode;
pub use value::{Ieee32, Ieee64, RefType, ValType};

/// Declares a typed index newtype over `u32`.
macro_rules! typed_index {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u32);

        impl $name {
            /// The index as a `usize`, for indexing host-side vectors.
            #[inline(always)]
            pub fn as_usize(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}

typed_index! {
    /// Index of a function in a module's function index space (imports first).
    FuncIdx,
    /// Index of a function type in a module's type section.
    TypeIdx,
    /// Index of a table in a module's table index space.
    TableIdx,
    /// Index of a global in a module's global index space.
    GlobalIdx,
    /// Index of an element segment in a module.
    ElemIdx,
    /// Index of a data segment in a module.
    DataIdx,
    /// Index of a page of a linear memory (see `ferrite_heap::PAGE_SIZE`).
    PageIndex,
}
