;; Programs that trap, to show trap reports:
;;
;;   cargo run --release -p ferrite-cli -- run --invoke average examples/trap.wat 10 0
;;   error: wasm trap: integer divide by zero
;;   wasm backtrace:
;;       0: trap!divide
;;       1: trap!average
;;
;; The `$names` below end up in the module's name section, which is where the
;; backtrace's function names come from. Running the file without --invoke calls
;; `_start`, which reaches an `unreachable` three calls deep.
(module $trap
  (func $divide (param $dividend i32) (param $divisor i32) (result i32)
    (i32.div_s (local.get $dividend) (local.get $divisor)))

  ;; The mean of $count values summing to $sum: traps when $count is 0.
  (func $average (export "average") (param $sum i32) (param $count i32) (result i32)
    (call $divide (local.get $sum) (local.get $count)))

  (func $check_invariant
    unreachable)

  (func $process
    (call $check_invariant))

  (func $_start (export "_start")
    (call $process))

  ;; Recurses until the call stack is exhausted.
  (func $runaway (export "runaway") (param $depth i64) (result i64)
    (call $runaway (i64.add (local.get $depth) (i64.const 1))))
)
