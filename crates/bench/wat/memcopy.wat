;; Bulk memory.copy: 8 MiB of memory. The start function fills region A
;; (the first 4 MiB) with a pattern; A is never written again. Round r of
;; run(n) copies almost 4 MiB: even rounds from A into region B (the last
;; 4 MiB), odd rounds within B with overlapping source and target (memmove).
;; Offsets shift every round so that copies are unaligned. Every value read
;; comes from A through copies made by the same call, so the result depends on
;; n only, not on earlier calls.
(module
  (memory 128)
  (func $init
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 0x400000)))
        (i32.store (local.get $i) (i32.mul (local.get $i) (i32.const 0x01000193)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next))))
  (start $init)
  (func (export "run") (param $n i32) (result i64)
    (local $round i32) (local $shift i32) (local $target i32) (local $sum i64)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $round) (local.get $n)))
        (local.set $shift (i32.and (i32.mul (local.get $round) (i32.const 37)) (i32.const 0xfff)))
        (local.set $target (i32.add (i32.const 0x400000) (local.get $shift)))
        (if (i32.and (local.get $round) (i32.const 1))
          (then (memory.copy (local.get $target) (i32.const 0x401000) (i32.const 0x3fe000)))
          (else (memory.copy (local.get $target) (local.get $shift) (i32.const 0x3fe000))))
        (local.set $sum (i64.add (i64.rotl (local.get $sum) (i64.const 7))
          (i64.add (i64.load32_u offset=0x777 (local.get $target))
                   (i64.load32_u offset=0x3f0000 (local.get $target)))))
        (local.set $round (i32.add (local.get $round) (i32.const 1)))
        (br $next)))
    (local.get $sum)))
