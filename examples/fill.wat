;; Fills a heap of N MiB and checks it: writes a value derived from its address
;; into every 8-byte word, then reads every word back into a checksum.
;;
;;   ferrite run --invoke fill examples/fill.wat 1024                          (1 GiB)
;;   ferrite run --physical-heap 32MiB --invoke fill examples/fill.wat 1024    (same result)
(module
  (memory (export "memory") 1)
  (func (export "fill") (param $mib i32) (result i64)
    (local $addr i32) (local $end i32) (local $sum i64)
    ;; Grow to $mib MiB (16 wasm pages each); -1 if the memory cannot grow.
    local.get $mib i32.const 16 i32.mul i32.const 1 i32.sub memory.grow
    i32.const -1 i32.eq
    if i64.const -1 return end
    local.get $mib i32.const 20 i32.shl local.set $end
    ;; Write pass.
    loop $write
      local.get $addr
      local.get $addr i64.extend_i32_u i64.const 0x9E3779B97F4A7C15 i64.mul
      i64.store
      local.get $addr i32.const 8 i32.add local.tee $addr
      local.get $end i32.ne br_if $write
    end
    ;; Read pass.
    i32.const 0 local.set $addr
    loop $read
      local.get $sum
      local.get $addr i64.load i64.const 31 i64.rotl
      i64.add local.set $sum
      local.get $addr i32.const 8 i32.add local.tee $addr
      local.get $end i32.ne br_if $read
    end
    local.get $sum))
