;; Multiple results and every number type: each result is printed on its own line.
;;
;;   cargo run --release -p ferrite-cli -- run --invoke divmod examples/multi.wat 17 5
;;   3
;;   2
;;
;;   cargo run --release -p ferrite-cli -- run --invoke split examples/multi.wat -2.75
;;   -2
;;   -0.75
;;   -2.75
(module $multi
  ;; Signed quotient and remainder.
  (func (export "divmod") (param $a i32) (param $b i32) (result i32 i32)
    (i32.div_s (local.get $a) (local.get $b))
    (i32.rem_s (local.get $a) (local.get $b)))

  ;; The integer part (truncated toward zero), the fractional part, and the input as f32.
  (func (export "split") (param $x f64) (result i64 f64 f32)
    (local $whole f64)
    (local.set $whole (f64.trunc (local.get $x)))
    (i64.trunc_sat_f64_s (local.get $whole))
    (f64.sub (local.get $x) (local.get $whole))
    (f32.demote_f64 (local.get $x)))
)
