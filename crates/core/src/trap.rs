/// Why a WebAssembly execution trapped.
///
/// The messages are the ones the WebAssembly specification test suite expects, so a
/// user sees the same words as in other runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TrapCode {
    #[error("unreachable")]
    Unreachable,
    #[error("integer divide by zero")]
    IntegerDivideByZero,
    #[error("integer overflow")]
    IntegerOverflow,
    #[error("invalid conversion to integer")]
    InvalidConversionToInteger,
    #[error("out of bounds memory access")]
    MemoryOutOfBounds,
    #[error("out of bounds table access")]
    TableOutOfBounds,
    #[error("undefined element")]
    UndefinedElement,
    #[error("uninitialized element")]
    UninitializedElement,
    #[error("indirect call type mismatch")]
    IndirectCallTypeMismatch,
    #[error("call stack exhausted")]
    StackExhausted,
    /// A host function reported a failure of its own.
    #[error("host function failed")]
    HostFailure,
}

impl TrapCode {
    /// The human-readable reason, as the spec test suite spells it.
    pub fn message(self) -> &'static str {
        match self {
            TrapCode::Unreachable => "unreachable",
            TrapCode::IntegerDivideByZero => "integer divide by zero",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::InvalidConversionToInteger => "invalid conversion to integer",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::TableOutOfBounds => "out of bounds table access",
            TrapCode::UndefinedElement => "undefined element",
            TrapCode::UninitializedElement => "uninitialized element",
            TrapCode::IndirectCallTypeMismatch => "indirect call type mismatch",
            TrapCode::StackExhausted => "call stack exhausted",
            TrapCode::HostFailure => "host function failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TrapCode;

    #[test]
    fn display_matches_message() {
        for code in [
            TrapCode::Unreachable,
            TrapCode::MemoryOutOfBounds,
            TrapCode::StackExhausted,
        ] {
            assert_eq!(code.to_string(), code.message());
        }
    }
}
