//! Values and handles to the entities of a [`Store`](crate::Store).

use ferrite_core::{Ieee32, Ieee64, ValType};
use std::fmt;

macro_rules! handle {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        ///
        /// A handle is an index into the store that created it; it is plain data.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) u32);

        impl $name {
            /// The handle's index within its store.
            pub fn index(self) -> u32 {
                self.0
            }
        }
    )*};
}

handle! {
    /// A function (wasm or host) of a store.
    Func,
    /// A table of a store.
    Table,
    /// A linear memory of a store.
    Memory,
    /// A global of a store.
    Global,
    /// A module instance of a store.
    Instance,
}

/// Identifies a host function to the embedder: when wasm calls it, the execution
/// stops with [`RunOutcome::HostCall`](crate::RunOutcome::HostCall) carrying this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostFuncId(pub u32);

/// An opaque host reference, carried by `externref` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternRef(pub u32);

/// A WebAssembly value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(Ieee32),
    F64(Ieee64),
    FuncRef(Option<Func>),
    ExternRef(Option<ExternRef>),
}

impl Value {
    /// The value's type.
    pub fn ty(&self) -> ValType {
        match self {
            Value::I32(_) => ValType::I32,
            Value::I64(_) => ValType::I64,
            Value::F32(_) => ValType::F32,
            Value::F64(_) => ValType::F64,
            Value::FuncRef(_) => ValType::FuncRef,
            Value::ExternRef(_) => ValType::ExternRef,
        }
    }

    /// The zero value (or null reference) of `ty`.
    pub fn default_of(ty: ValType) -> Value {
        match ty {
            ValType::I32 => Value::I32(0),
            ValType::I64 => Value::I64(0),
            ValType::F32 => Value::F32(Ieee32(0)),
            ValType::F64 => Value::F64(Ieee64(0)),
            ValType::FuncRef => Value::FuncRef(None),
            ValType::ExternRef => Value::ExternRef(None),
        }
    }

    /// The value's bits in a 64-bit slot cell: numbers by their bits, references
    /// as index + 1 with 0 for null.
    pub fn to_cell(self) -> u64 {
        match self {
            Value::I32(v) => u64::from(v as u32),
            Value::I64(v) => v as u64,
            Value::F32(v) => u64::from(v.0),
            Value::F64(v) => v.0,
            Value::FuncRef(r) => r.map_or(0, |f| u64::from(f.0) + 1),
            Value::ExternRef(r) => r.map_or(0, |e| u64::from(e.0) + 1),
        }
    }

    /// The value of type `ty` held in a slot cell.
    pub fn from_cell(ty: ValType, cell: u64) -> Value {
        let reference = |cell: u64| (cell != 0).then(|| (cell - 1) as u32);
        match ty {
            ValType::I32 => Value::I32(cell as u32 as i32),
            ValType::I64 => Value::I64(cell as i64),
            ValType::F32 => Value::F32(Ieee32(cell as u32)),
            ValType::F64 => Value::F64(Ieee64(cell)),
            ValType::FuncRef => Value::FuncRef(reference(cell).map(Func)),
            ValType::ExternRef => Value::ExternRef(reference(cell).map(ExternRef)),
        }
    }
}

impl fmt::Display for Value {
    /// Integers in signed decimal and floats as Rust prints them, as
    /// `wasmtime run --invoke` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{}", v.to_float()),
            Value::F64(v) => write!(f, "{}", v.to_float()),
            Value::FuncRef(None) => f.write_str("<null funcref>"),
            Value::ExternRef(None) => f.write_str("<null externref>"),
            Value::FuncRef(Some(func)) => write!(f, "funcref({})", func.0),
            Value::ExternRef(Some(r)) => write!(f, "externref({})", r.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip() {
        let values = [
            Value::I32(-1),
            Value::I64(i64::MIN),
            Value::F32(Ieee32(0x7fc0_0001)),
            Value::F64(Ieee64(0xfff8_0000_0000_0001)),
            Value::FuncRef(None),
            Value::FuncRef(Some(Func(0))),
            Value::ExternRef(Some(ExternRef(41))),
        ];
        for value in values {
            assert_eq!(Value::from_cell(value.ty(), value.to_cell()), value);
        }
    }
}
