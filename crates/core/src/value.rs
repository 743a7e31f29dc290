/// A WebAssembly value type of the 2.0 core (no `v128`: SIMD is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValType {
    I32,
    I64,
    F32,
    F64,
    FuncRef,
    ExternRef,
}

/// A reference type: the element type of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefType {
    FuncRef,
    ExternRef,
}

impl From<RefType> for ValType {
    fn from(ty: RefType) -> Self {
        match ty {
            RefType::FuncRef => ValType::FuncRef,
            RefType::ExternRef => ValType::ExternRef,
        }
    }
}

impl std::fmt::Display for ValType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

/// The bits of an `f32`, kept as bits so that NaN payloads survive every move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ieee32(pub u32);

/// The bits of an `f64`, kept as bits so that NaN payloads survive every move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ieee64(pub u64);

impl Ieee32 {
    /// The value as a Rust float.
    pub fn to_float(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl Ieee64 {
    /// The value as a Rust float.
    pub fn to_float(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl From<f32> for Ieee32 {
    fn from(value: f32) -> Self {
        Self(value.to_bits())
    }
}

impl From<f64> for Ieee64 {
    fn from(value: f64) -> Self {
        Self(value.to_bits())
    }
}
