;; Memory-heavy sort: fills n pseudo-random i32 (xorshift32) at address 0, sorts
;; them in place with a recursive quicksort (Hoare partition, middle pivot), checks
;; that the array is sorted and returns a position-weighted checksum (-1 if not
;; sorted). n is at most 4 Mi elements (16 MiB of memory).
(module
  (memory 256)
  (func $fill (param $n i32)
    (local $i i32) (local $x i32)
    (local.set $x (i32.const 2463534242))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
        (i32.store (i32.shl (local.get $i) (i32.const 2)) (local.get $x))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  ;; Sorts the elements with indices lo..=hi (signed compare).
  (func $quicksort (param $lo i32) (param $hi i32)
    (local $i i32) (local $j i32) (local $pivot i32) (local $t i32)
    (loop $tail
      (if (i32.ge_s (local.get $lo) (local.get $hi)) (then (return)))
      (local.set $pivot (i32.load (i32.shl
        (i32.add (local.get $lo) (i32.shr_u (i32.sub (local.get $hi) (local.get $lo)) (i32.const 1)))
        (i32.const 2))))
      (local.set $i (i32.sub (local.get $lo) (i32.const 1)))
      (local.set $j (i32.add (local.get $hi) (i32.const 1)))
      (block $partitioned
        (loop $scan
          (loop $left
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $left (i32.lt_s (i32.load (i32.shl (local.get $i) (i32.const 2)))
                                   (local.get $pivot))))
          (loop $right
            (local.set $j (i32.sub (local.get $j) (i32.const 1)))
            (br_if $right (i32.gt_s (i32.load (i32.shl (local.get $j) (i32.const 2)))
                                    (local.get $pivot))))
          (br_if $partitioned (i32.ge_s (local.get $i) (local.get $j)))
          (local.set $t (i32.load (i32.shl (local.get $i) (i32.const 2))))
          (i32.store (i32.shl (local.get $i) (i32.const 2))
                     (i32.load (i32.shl (local.get $j) (i32.const 2))))
          (i32.store (i32.shl (local.get $j) (i32.const 2)) (local.get $t))
          (br $scan)))
      ;; Recurse into the left part, loop on the right part.
      (call $quicksort (local.get $lo) (local.get $j))
      (local.set $lo (i32.add (local.get $j) (i32.const 1)))
      (br $tail)))
  (func $checksum (param $n i32) (result i64)
    (local $i i32) (local $sum i64) (local $prev i32) (local $x i32)
    (local.set $prev (i32.const 0x80000000))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $x (i32.load (i32.shl (local.get $i) (i32.const 2))))
        (if (i32.lt_s (local.get $x) (local.get $prev)) (then (return (i64.const -1))))
        (local.set $prev (local.get $x))
        (local.set $sum (i64.add (local.get $sum)
          (i64.mul (i64.extend_i32_s (local.get $x)) (i64.extend_i32_u (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $sum))
  (func (export "run") (param $n i32) (result i64)
    (call $fill (local.get $n))
    (call $quicksort (i32.const 0) (i32.sub (local.get $n) (i32.const 1)))
    (call $checksum (local.get $n))))
