//! Parsing wasm values from command-line text.
//!
//! Integers are accepted in the signed or the unsigned range of their type
//! (`4294967295` and `-1` are the same `i32`), in decimal or with a `0x` prefix in
//! hexadecimal, with an optional sign in front of either. Floats go through Rust's
//! parser, which also takes `nan`, `inf`, `-inf` and `infinity` in any case, and
//! rounds out-of-range literals to infinity, as `wasmtime run --invoke` does.

use ferrite_vm::{Ieee32, Ieee64, ValType, Value};
use std::fmt;

/// Why the arguments of a call could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// The number of arguments differs from the number of parameters.
    Count {
        expected: Vec<ValType>,
        given: usize,
    },
    /// One argument (0-based `position`) is not a value of its parameter's type.
    Value {
        position: usize,
        text: String,
        ty: ValType,
        problem: ValueProblem,
    },
}

/// What is wrong with one argument's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    /// The text is not a number of the parameter's kind.
    Syntax,
    /// An integer outside both the signed and the unsigned range of its type.
    OutOfRange,
    /// A reference type, which has no command-line spelling.
    Reference,
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Count { expected, given } => {
                let types: Vec<_> = expected.iter().map(ToString::to_string).collect();
                let noun = if expected.len() == 1 {
                    "argument"
                } else {
                    "arguments"
                };
                write!(
                    f,
                    "expected {} {noun} ({}), got {given}",
                    expected.len(),
                    types.join(", ")
                )
            }
            ArgsError::Value {
                position,
                text,
                ty,
                problem,
            } => {
                let number = position + 1;
                match problem {
                    ValueProblem::Syntax => {
                        let expected = match ty {
                            ValType::F32 | ValType::F64 => "a decimal number, nan, inf or -inf",
                            _ => "a decimal integer or 0x-prefixed hexadecimal integer",
                        };
                        write!(
                            f,
                            "argument {number} `{text}` is not a valid {ty}: expected {expected}"
                        )
                    }
                    ValueProblem::OutOfRange => {
                        let (min, max) = int_range(*ty);
                        write!(
                            f,
                            "argument {number} `{text}` is out of range for {ty} ({min} to {max})"
                        )
                    }
                    ValueProblem::Reference => write!(
                        f,
                        "argument {number} has type {ty}, which cannot be given on the command line"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses `texts` as the arguments of a function with parameter types `params`.
///
/// # Errors
/// If the counts differ or an argument is not a value of its parameter's type.
pub fn parse_args(texts: &[String], params: &[ValType]) -> Result<Vec<Value>, ArgsError> {
    if texts.len() != params.len() {
        return Err(ArgsError::Count {
            expected: params.to_vec(),
            given: texts.len(),
        });
    }
    texts
        .iter()
        .zip(params)
        .enumerate()
        .map(|(position, (text, ty))| {
            parse_value(text, *ty).map_err(|problem| ArgsError::Value {
                position,
                text: text.clone(),
                ty: *ty,
                problem,
            })
        })
        .collect()
}

/// Parses one value of type `ty`.
///
/// # Errors
/// What is wrong with the text.
pub fn parse_value(text: &str, ty: ValType) -> Result<Value, ValueProblem> {
    match ty {
        // Truncating to the low bits maps the unsigned range onto the signed one.
        ValType::I32 => parse_int(text, 32).map(|v| Value::I32(v as i32)),
        ValType::I64 => parse_int(text, 64).map(|v| Value::I64(v as i64)),
        ValType::F32 => parse_float::<f32>(text).map(|v| Value::F32(Ieee32::from(v))),
        ValType::F64 => parse_float::<f64>(text).map(|v| Value::F64(Ieee64::from(v))),
        ValType::FuncRef | ValType::ExternRef => Err(ValueProblem::Reference),
    }
}

/// The accepted range of an integer type: signed minimum to unsigned maximum.
fn int_range(ty: ValType) -> (i128, i128) {
    let bits = if ty == ValType::I32 { 32 } else { 64 };
    (-(1_i128 << (bits - 1)), (1_i128 << bits) - 1)
}

/// An integer of `bits` bits, as a value between the signed minimum and the
/// unsigned maximum of that width.
fn parse_int(text: &str, bits: u32) -> Result<i128, ValueProblem> {
    debug_assert!(bits == 32 || bits == 64);
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = match unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        Some(hex) => (16, hex),
        None => (10, unsigned),
    };
    // `from_str_radix` would accept a second sign; allow digits only.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(ValueProblem::Syntax);
    }
    // Only an overflow of u128 itself can fail here: the digits are checked.
    let magnitude = u128::from_str_radix(digits, radix).map_err(|_| ValueProblem::OutOfRange)?;
    let magnitude = i128::try_from(magnitude).map_err(|_| ValueProblem::OutOfRange)?;
    let value = if negative { -magnitude } else { magnitude };
    let (min, max) = int_range(if bits == 32 {
        ValType::I32
    } else {
        ValType::I64
    });
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ValueProblem::OutOfRange)
    }
}

fn parse_float<F: std::str::FromStr>(text: &str) -> Result<F, ValueProblem> {
    text.parse().map_err(|_| ValueProblem::Syntax)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house style 14).
mod tests {
    use super::*;

    fn i32_of(text: &str) -> Result<i32, ValueProblem> {
        match parse_value(text, ValType::I32)? {
            Value::I32(v) => Ok(v),
            other => panic!("not an i32: {other:?}"),
        }
    }

    fn i64_of(text: &str) -> Result<i64, ValueProblem> {
        match parse_value(text, ValType::I64)? {
            Value::I64(v) => Ok(v),
            other => panic!("not an i64: {other:?}"),
        }
    }

    fn f32_bits(text: &str) -> Result<u32, ValueProblem> {
        match parse_value(text, ValType::F32)? {
            Value::F32(v) => Ok(v.0),
            other => panic!("not an f32: {other:?}"),
        }
    }

    fn f64_bits(text: &str) -> Result<u64, ValueProblem> {
        match parse_value(text, ValType::F64)? {
            Value::F64(v) => Ok(v.0),
            other => panic!("not an f64: {other:?}"),
        }
    }

    #[test]
    fn i32_decimal_signed_and_unsigned() {
        assert_eq!(i32_of("0"), Ok(0));
        assert_eq!(i32_of("42"), Ok(42));
        assert_eq!(i32_of("+42"), Ok(42));
        assert_eq!(i32_of("-5"), Ok(-5));
        assert_eq!(i32_of("-0"), Ok(0));
        assert_eq!(i32_of("-2147483648"), Ok(i32::MIN));
        assert_eq!(i32_of("2147483647"), Ok(i32::MAX));
        assert_eq!(i32_of("2147483648"), Ok(i32::MIN));
        assert_eq!(i32_of("4294967295"), Ok(-1));
        assert_eq!(i32_of("007"), Ok(7));
    }

    #[test]
    fn i32_hexadecimal() {
        assert_eq!(i32_of("0xff"), Ok(255));
        assert_eq!(i32_of("0XFF"), Ok(255));
        assert_eq!(i32_of("0xffffffff"), Ok(-1));
        assert_eq!(i32_of("0x80000000"), Ok(i32::MIN));
        assert_eq!(i32_of("-0x10"), Ok(-16));
        assert_eq!(i32_of("-0x80000000"), Ok(i32::MIN));
    }

    #[test]
    fn i32_out_of_range() {
        assert_eq!(i32_of("4294967296"), Err(ValueProblem::OutOfRange));
        assert_eq!(i32_of("-2147483649"), Err(ValueProblem::OutOfRange));
        assert_eq!(i32_of("0x100000000"), Err(ValueProblem::OutOfRange));
        assert_eq!(i32_of("-0x80000001"), Err(ValueProblem::OutOfRange));
        // Past u128: still a range problem, not a panic.
        assert_eq!(i32_of(&"9".repeat(60)), Err(ValueProblem::OutOfRange));
        assert_eq!(
            i32_of(&format!("0x{}", "f".repeat(40))),
            Err(ValueProblem::OutOfRange)
        );
    }

    #[test]
    fn integer_syntax_errors() {
        for text in [
            "", "-", "+", "0x", "-0x", "abc", "1.5", "1e3", "--5", "+-5", "-+5", "0x+5", "0x-5",
            " 5", "5 ", "1_000", "0b101", "ff",
        ] {
            assert_eq!(i32_of(text), Err(ValueProblem::Syntax), "{text:?}");
            assert_eq!(i64_of(text), Err(ValueProblem::Syntax), "{text:?}");
        }
    }

    #[test]
    fn i64_extremes() {
        assert_eq!(i64_of("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(i64_of("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(i64_of("18446744073709551615"), Ok(-1));
        assert_eq!(i64_of("0xffffffffffffffff"), Ok(-1));
        assert_eq!(i64_of("0x8000000000000000"), Ok(i64::MIN));
        assert_eq!(
            i64_of("18446744073709551616"),
            Err(ValueProblem::OutOfRange)
        );
        assert_eq!(
            i64_of("-9223372036854775809"),
            Err(ValueProblem::OutOfRange)
        );
    }

    #[test]
    fn floats() {
        assert_eq!(f32_bits("1.5"), Ok(1.5_f32.to_bits()));
        assert_eq!(f32_bits("-0"), Ok(0x8000_0000));
        assert_eq!(f32_bits("inf"), Ok(f32::INFINITY.to_bits()));
        assert_eq!(f32_bits("-inf"), Ok(f32::NEG_INFINITY.to_bits()));
        assert_eq!(f32_bits("infinity"), Ok(f32::INFINITY.to_bits()));
        assert_eq!(f32_bits("1e40"), Ok(f32::INFINITY.to_bits()));
        assert!(f32::from_bits(f32_bits("nan").unwrap()).is_nan());
        assert!(f32::from_bits(f32_bits("NaN").unwrap()).is_nan());
        assert_eq!(f64_bits("0.1"), Ok(0.1_f64.to_bits()));
        assert_eq!(f64_bits("-2.5e-3"), Ok((-2.5e-3_f64).to_bits()));
        assert_eq!(f64_bits("42"), Ok(42.0_f64.to_bits()));
        assert!(f64::from_bits(f64_bits("nan").unwrap()).is_nan());
        // Parsed directly as f32, not rounded twice through f64.
        assert_eq!(f32_bits("16777217"), Ok(16_777_216_f32.to_bits()));
    }

    #[test]
    fn float_syntax_errors() {
        for text in ["", "abc", "1.5.2", "0x10", "1,5", " 1"] {
            assert_eq!(f32_bits(text), Err(ValueProblem::Syntax), "{text:?}");
            assert_eq!(f64_bits(text), Err(ValueProblem::Syntax), "{text:?}");
        }
    }

    #[test]
    fn references_cannot_be_spelled() {
        assert_eq!(
            parse_value("0", ValType::FuncRef),
            Err(ValueProblem::Reference)
        );
        assert_eq!(
            parse_value("null", ValType::ExternRef),
            Err(ValueProblem::Reference)
        );
    }

    #[test]
    fn args_match_params() {
        let texts: Vec<String> = ["-1", "0x10", "2.5", "inf"].map(String::from).to_vec();
        let params = [ValType::I32, ValType::I64, ValType::F32, ValType::F64];
        assert_eq!(
            parse_args(&texts, &params),
            Ok(vec![
                Value::I32(-1),
                Value::I64(16),
                Value::F32(Ieee32::from(2.5_f32)),
                Value::F64(Ieee64::from(f64::INFINITY)),
            ])
        );
        assert_eq!(parse_args(&[], &[]), Ok(vec![]));
    }

    #[test]
    fn args_errors_read_well() {
        let one = vec!["1".to_string()];
        let count = parse_args(&one, &[ValType::I32, ValType::F64]).unwrap_err();
        assert_eq!(count.to_string(), "expected 2 arguments (i32, f64), got 1");
        let count = parse_args(&[], &[ValType::I64]).unwrap_err();
        assert_eq!(count.to_string(), "expected 1 argument (i64), got 0");
        let count = parse_args(&one, &[]).unwrap_err();
        assert_eq!(count.to_string(), "expected 0 arguments (), got 1");

        let texts = vec!["1".to_string(), "x".to_string()];
        let bad = parse_args(&texts, &[ValType::I32, ValType::I32]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "argument 2 `x` is not a valid i32: expected a decimal integer or 0x-prefixed \
             hexadecimal integer"
        );
        let big = vec!["4294967296".to_string()];
        let bad = parse_args(&big, &[ValType::I32]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "argument 1 `4294967296` is out of range for i32 (-2147483648 to 4294967295)"
        );
        let bad = parse_args(&one, &[ValType::ExternRef]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "argument 1 has type externref, which cannot be given on the command line"
        );
    }
}
