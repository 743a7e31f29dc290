;; Fibonacci numbers, two ways.
;;
;;   cargo run --release -p ferrite-cli -- run --invoke fib examples/fib.wat 30
;;   832040
;;
;; `fib` is iterative (fast for any n; wraps modulo 2^64 past fib(92)).
;; `fib_recursive` is the exponential textbook definition: a call-heavy benchmark
;; (`--invoke fib_recursive examples/fib.wat 30` makes about 2.7 million calls).
(module $fib
  (func $fib (export "fib") (param $n i64) (result i64)
    (local $a i64) (local $b i64) (local $next i64)
    (local.set $b (i64.const 1))
    (block $done
      (loop $step
        (br_if $done (i64.le_s (local.get $n) (i64.const 0)))
        (local.set $next (i64.add (local.get $a) (local.get $b)))
        (local.set $a (local.get $b))
        (local.set $b (local.get $next))
        (local.set $n (i64.sub (local.get $n) (i64.const 1)))
        (br $step)))
    (local.get $a))

  (func $fib_recursive (export "fib_recursive") (param $n i64) (result i64)
    (if (result i64) (i64.lt_s (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else
        (i64.add
          (call $fib_recursive (i64.sub (local.get $n) (i64.const 1)))
          (call $fib_recursive (i64.sub (local.get $n) (i64.const 2)))))))
)
