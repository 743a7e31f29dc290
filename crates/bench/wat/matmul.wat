;; Matrix multiply: C = A * B for n x n f64 matrices in linear memory
;; (A at 0, B after it, C after B; n at most 200), with A and B filled from
;; their indices. Returns the bits of the sum of C's elements.
(module
  (memory 16)
  (func (export "run") (param $n i32) (result i64)
    (local $a i32) (local $b i32) (local $c i32) (local $bytes i32)
    (local $i i32) (local $j i32) (local $k i32) (local $acc f64) (local $sum f64)
    (local.set $bytes (i32.shl (i32.mul (local.get $n) (local.get $n)) (i32.const 3)))
    (local.set $b (local.get $bytes))
    (local.set $c (i32.shl (local.get $bytes) (i32.const 1)))
    ;; A[i] = (i mod 17) / 8 - 1, B[i] = (i mod 13) / 4 - 1.5, row-major over i.
    (block $done
      (loop $fill
        (br_if $done (i32.ge_u (local.get $i) (i32.mul (local.get $n) (local.get $n))))
        (f64.store (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 3)))
          (f64.sub (f64.div (f64.convert_i32_u (i32.rem_u (local.get $i) (i32.const 17)))
                            (f64.const 8)) (f64.const 1)))
        (f64.store (i32.add (local.get $b) (i32.shl (local.get $i) (i32.const 3)))
          (f64.sub (f64.div (f64.convert_i32_u (i32.rem_u (local.get $i) (i32.const 13)))
                            (f64.const 4)) (f64.const 1.5)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $fill)))
    (local.set $i (i32.const 0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $cols_done
          (loop $cols
            (br_if $cols_done (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $acc (f64.const 0))
            (local.set $k (i32.const 0))
            (block $dot_done
              (loop $dot
                (br_if $dot_done (i32.ge_u (local.get $k) (local.get $n)))
                (local.set $acc (f64.add (local.get $acc)
                  (f64.mul
                    (f64.load (i32.add (local.get $a) (i32.shl
                      (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $k)) (i32.const 3))))
                    (f64.load (i32.add (local.get $b) (i32.shl
                      (i32.add (i32.mul (local.get $k) (local.get $n)) (local.get $j)) (i32.const 3)))))))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $dot)))
            (f64.store (i32.add (local.get $c) (i32.shl
              (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $j)) (i32.const 3)))
              (local.get $acc))
            (local.set $sum (f64.add (local.get $sum) (local.get $acc)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $cols)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows)))
    (i64.reinterpret_f64 (local.get $sum))))
