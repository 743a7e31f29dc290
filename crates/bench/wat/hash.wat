;; Hash table: open addressing with linear probing in linear memory. Table of
;; 2^20 slots of (key i32, value i32), key 0 = empty. run(n) clears the table,
;; inserts n pseudo-random non-zero keys (adding to the value of keys seen
;; before), then looks up 2n keys (half of them inserted, half most likely not)
;; and returns a checksum of the values found and the number of misses.
;; n must stay well below 2^20.
(module
  (memory 128)
  (global $mask i32 (i32.const 0xfffff))
  (func $hash (param $key i32) (result i32)
    (i32.and (i32.shr_u (i32.mul (local.get $key) (i32.const 0x9e3779b1)) (i32.const 7))
             (global.get $mask)))
  ;; The slot address of $key: where it is, or the empty slot where it belongs.
  (func $find (param $key i32) (result i32)
    (local $slot i32) (local $k i32)
    (local.set $slot (call $hash (local.get $key)))
    (loop $probe
      (local.set $k (i32.load (i32.shl (local.get $slot) (i32.const 3))))
      (if (i32.and (i32.ne (local.get $k) (local.get $key)) (i32.ne (local.get $k) (i32.const 0)))
        (then
          (local.set $slot (i32.and (i32.add (local.get $slot) (i32.const 1)) (global.get $mask)))
          (br $probe))))
    (i32.shl (local.get $slot) (i32.const 3)))
  (func $insert (param $key i32) (param $value i32)
    (local $addr i32)
    (local.set $addr (call $find (local.get $key)))
    (i32.store (local.get $addr) (local.get $key))
    (i32.store offset=4 (local.get $addr)
      (i32.add (i32.load offset=4 (local.get $addr)) (local.get $value))))
  (func $lookup (param $key i32) (result i32)
    (local $addr i32)
    (local.set $addr (call $find (local.get $key)))
    (if (result i32) (i32.eqz (i32.load (local.get $addr)))
      (then (i32.const -1))
      (else (i32.load offset=4 (local.get $addr)))))
  (func $next_key (param $x i32) (result i32)
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
    (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
    (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
  (func (export "run") (param $n i32) (result i64)
    (local $i i32) (local $x i32) (local $v i32) (local $sum i64) (local $misses i64)
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 0x800000))
    (local.set $x (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $x (call $next_key (local.get $x)))
        (call $insert (local.get $x) (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; Replay the same key sequence (hits) interleaved with unrelated keys (misses).
    (local.set $x (i32.const 1))
    (local.set $i (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $x (call $next_key (local.get $x)))
        (local.set $v (call $lookup (local.get $x)))
        (local.set $sum (i64.add (local.get $sum) (i64.extend_i32_s (local.get $v))))
        (local.set $v (call $lookup (i32.or (i32.mul (local.get $x) (i32.const 7)) (i32.const 1))))
        (if (i32.eq (local.get $v) (i32.const -1))
          (then (local.set $misses (i64.add (local.get $misses) (i64.const 1))))
          (else (local.set $sum (i64.add (local.get $sum) (i64.extend_i32_s (local.get $v))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i64.add (i64.shl (local.get $misses) (i64.const 40)) (local.get $sum))))
