;; A long computation over a large heap: STEPS read-modify-writes at
;; pseudo-random words of a heap of MIB MiB, then the sum of one word per 4 KiB.
;; Its state is in the heap, a global and the locals of a running loop: a good
;; process to stop, kill and resume.
;;
;;   ferrite run --name churn --checkpoint-every 1s --physical-heap 1MiB \
;;       --invoke churn examples/churn.wat 50000000 64
(module
  (memory (export "memory") 1)
  (global $x (mut i32) (i32.const 1))
  (func (export "churn") (param $steps i32) (param $mib i32) (result i64)
    (local $i i32) (local $addr i32) (local $bytes i32) (local $sum i64)
    local.get $mib i32.const 16 i32.mul i32.const 1 i32.sub memory.grow
    i32.const -1 i32.eq
    if i64.const -1 return end
    local.get $mib i32.const 20 i32.shl local.set $bytes
    block $done
      local.get $steps i32.eqz br_if $done
      loop $step
        ;; x = x * 1103515245 + 12345; addr = a word below $bytes
        global.get $x i32.const 1103515245 i32.mul i32.const 12345 i32.add global.set $x
        global.get $x i32.const 4 i32.shr_u local.get $bytes i32.rem_u i32.const -8 i32.and
        local.set $addr
        local.get $addr
        local.get $addr i64.load local.get $i i64.extend_i32_u i64.add i64.const 1 i64.add
        i64.store
        local.get $i i32.const 1 i32.add local.tee $i
        local.get $steps i32.lt_u br_if $step
      end
    end
    i32.const 0 local.set $addr
    loop $pages
      local.get $sum local.get $addr i64.load i64.add local.set $sum
      local.get $addr i32.const 4096 i32.add local.tee $addr
      local.get $bytes i32.lt_u br_if $pages
    end
    local.get $sum))
