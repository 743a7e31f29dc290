//! Numeric semantics of WebAssembly operators that Rust's operators do not give
//! directly: traps, NaN and signed-zero rules, checked float-to-int conversions.

use ferrite_core::TrapCode;

#[inline]
pub(crate) fn i32_div_s(a: i32, b: i32) -> Result<i32, TrapCode> {
    match b {
        0 => Err(TrapCode::IntegerDivideByZero),
        -1 if a == i32::MIN => Err(TrapCode::IntegerOverflow),
        _ => Ok(a / b),
    }
}

#[inline]
pub(crate) fn i64_div_s(a: i64, b: i64) -> Result<i64, TrapCode> {
    match b {
        0 => Err(TrapCode::IntegerDivideByZero),
        -1 if a == i64::MIN => Err(TrapCode::IntegerOverflow),
        _ => Ok(a / b),
    }
}

macro_rules! unsigned_div_rem {
    ($($div:ident, $rem:ident, $srem:ident, $ty:ty, $sty:ty;)*) => {$(
        #[inline]
        pub(crate) fn $div(a: $ty, b: $ty) -> Result<$ty, TrapCode> {
            a.checked_div(b).ok_or(TrapCode::IntegerDivideByZero)
        }

        #[inline]
        pub(crate) fn $rem(a: $ty, b: $ty) -> Result<$ty, TrapCode> {
            a.checked_rem(b).ok_or(TrapCode::IntegerDivideByZero)
        }

        #[inline]
        pub(crate) fn $srem(a: $sty, b: $sty) -> Result<$sty, TrapCode> {
            if b == 0 {
                return Err(TrapCode::IntegerDivideByZero);
            }
            Ok(a.wrapping_rem(b))
        }
    )*};
}

unsigned_div_rem! {
    i32_div_u, i32_rem_u, i32_rem_s, u32, i32;
    i64_div_u, i64_rem_u, i64_rem_s, u64, i64;
}

macro_rules! float_min_max {
    ($($min:ident, $max:ident, $ty:ty;)*) => {$(
        /// `min` with NaN propagation and `-0 < +0`.
        #[inline]
        pub(crate) fn $min(a: $ty, b: $ty) -> $ty {
            if a.is_nan() || b.is_nan() {
                return a + b;
            }
            if a == b {
                // Equal values differ at most in the sign of zero: prefer -0.
                return <$ty>::from_bits(a.to_bits() | b.to_bits());
            }
            if a < b { a } else { b }
        }

        /// `max` with NaN propagation and `-0 < +0`.
        #[inline]
        pub(crate) fn $max(a: $ty, b: $ty) -> $ty {
            if a.is_nan() || b.is_nan() {
                return a + b;
            }
            if a == b {
                return <$ty>::from_bits(a.to_bits() & b.to_bits());
            }
            if a > b { a } else { b }
        }
    )*};
}

float_min_max! {
    f32_min, f32_max, f32;
    f64_min, f64_max, f64;
}

/// Quiets a NaN result: Rust's rounding functions pass a signalling NaN through,
/// but WebAssembly requires an arithmetic (quiet) NaN.
#[inline]
pub(crate) fn f32_quiet(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(x.to_bits() | 0x0040_0000)
    } else {
        x
    }
}

/// See [`f32_quiet`].
#[inline]
pub(crate) fn f64_quiet(x: f64) -> f64 {
    if x.is_nan() {
        f64::from_bits(x.to_bits() | 0x0008_0000_0000_0000)
    } else {
        x
    }
}

macro_rules! trunc {
    ($($name:ident, $float:ty, $int:ty, $lo:expr, $hi:expr;)*) => {$(
        /// Truncation that traps on NaN and on results out of the target range.
        /// `$lo` is the smallest accepted truncated value, `$hi` the exclusive bound.
        #[inline]
        pub(crate) fn $name(x: $float) -> Result<$int, TrapCode> {
            if x.is_nan() {
                return Err(TrapCode::InvalidConversionToInteger);
            }
            let t = x.trunc();
            if !($lo..$hi).contains(&t) {
                return Err(TrapCode::IntegerOverflow);
            }
            Ok(t as $int)
        }
    )*};
}

trunc! {
    i32_trunc_f32_s, f32, i32, -2147483648.0_f32, 2147483648.0_f32;
    i32_trunc_f32_u, f32, u32, 0.0_f32, 4294967296.0_f32;
    i32_trunc_f64_s, f64, i32, -2147483648.0_f64, 2147483648.0_f64;
    i32_trunc_f64_u, f64, u32, 0.0_f64, 4294967296.0_f64;
    i64_trunc_f32_s, f32, i64, -9223372036854775808.0_f32, 9223372036854775808.0_f32;
    i64_trunc_f32_u, f32, u64, 0.0_f32, 18446744073709551616.0_f32;
    i64_trunc_f64_s, f64, i64, -9223372036854775808.0_f64, 9223372036854775808.0_f64;
    i64_trunc_f64_u, f64, u64, 0.0_f64, 18446744073709551616.0_f64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_traps() {
        assert_eq!(i32_div_s(i32::MIN, -1), Err(TrapCode::IntegerOverflow));
        assert_eq!(i32_div_s(1, 0), Err(TrapCode::IntegerDivideByZero));
        assert_eq!(i32_rem_s(i32::MIN, -1), Ok(0));
        assert_eq!(i64_div_u(7, 2), Ok(3));
    }

    #[test]
    fn min_max_zero_and_nan() {
        assert!(f32_min(-0.0, 0.0).is_sign_negative());
        assert!(f32_max(-0.0, 0.0).is_sign_positive());
        assert!(f64_min(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn trunc_bounds() {
        assert_eq!(i32_trunc_f32_u(-0.9), Ok(0));
        assert_eq!(i32_trunc_f32_u(-1.0), Err(TrapCode::IntegerOverflow));
        assert_eq!(i32_trunc_f64_s(-2147483648.9), Ok(i32::MIN));
        assert_eq!(i32_trunc_f64_s(2147483647.9), Ok(i32::MAX));
        assert_eq!(
            i64_trunc_f64_s(f64::NAN),
            Err(TrapCode::InvalidConversionToInteger)
        );
    }
}
