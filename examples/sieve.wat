;; The sieve of Eratosthenes in linear memory: how many primes are below N?
;;
;;   cargo run --release -p ferrite-cli -- run --invoke count_primes examples/sieve.wat 1000000
;;   78498
;;
;; One byte per number (0 = still a candidate, 1 = composite). Memory grows to fit
;; N; an N that needs more memory than the module may have traps with
;; "unreachable".
(module $sieve
  (memory 1 1024) ;; at most 64 MiB, so N up to 67108864

  (func $count_primes (export "count_primes") (param $n i32) (result i32)
    (local $i i32) (local $multiple i32) (local $count i32)
    (if (i32.le_u (local.get $n) (i32.const 2)) (then (return (i32.const 0))))
    (call $reserve (local.get $n))
    (call $clear (local.get $n))
    (local.set $i (i32.const 2))
    (block $done
      (loop $next_candidate
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eqz (i32.load8_u (local.get $i)))
          (then
            (local.set $count (i32.add (local.get $count) (i32.const 1)))
            ;; Cross out i*i, i*i + i, ... (64-bit product: i*i may overflow i32).
            (if (i64.lt_u (i64.mul (i64.extend_i32_u (local.get $i))
                                   (i64.extend_i32_u (local.get $i)))
                          (i64.extend_i32_u (local.get $n)))
              (then
                (local.set $multiple (i32.mul (local.get $i) (local.get $i)))
                (block $crossed
                  (loop $cross
                    (br_if $crossed (i32.ge_u (local.get $multiple) (local.get $n)))
                    (i32.store8 (local.get $multiple) (i32.const 1))
                    (local.set $multiple (i32.add (local.get $multiple) (local.get $i)))
                    (br $cross)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next_candidate)))
    (local.get $count))

  ;; Grows memory to hold at least $bytes bytes, or traps.
  (func $reserve (param $bytes i32)
    (local $pages_needed i32)
    (local.set $pages_needed
      (i32.wrap_i64 (i64.shr_u (i64.add (i64.extend_i32_u (local.get $bytes))
                                        (i64.const 65535))
                               (i64.const 16))))
    (if (i32.gt_u (local.get $pages_needed) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages_needed) (memory.size)))
                    (i32.const -1))
          (then unreachable)))))

  ;; Marks 0 .. $n as candidates again, so repeated calls start clean.
  (func $clear (param $n i32)
    (memory.fill (i32.const 0) (i32.const 0) (local.get $n)))
)
