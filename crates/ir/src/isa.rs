//! The instruction set table. Each line generates one `Instr` variant.

use crate::{Field, Slot, TrapCode};

/// Calls the macro `$m` with the instruction set table: one line per instruction,
/// `Name { field: Type, .. }`, with its doc comment. [`define_isa!`] generates the
/// bytecode types from it; an interpreter generates its handler table from it.
#[macro_export]
macro_rules! for_each_instr {
    ($m:ident) => {
        $m! {
            /// Traps with `code`.
            Trap { code: TrapCode },
            /// Does nothing but spend a unit of the interpreter's chain budget:
            /// the translator inserts it to bound the runs of instructions that do
            /// not (see `ferrite-vm`'s dispatch).
            Tick {},
            /// Jumps by `offset`.
            Br { offset: i32 },
            /// Jumps back by `offset` to a loop header, charging the interpreter's
            /// fuel `charge` (in whatever form the interpreter wants it; the
            /// translator leaves it 0).
            BrLoop { offset: i32, charge: i32 },
            /// Jumps by `offset` if `cond` (i32) is not zero (a backward jump charges fuel).
            BrIfNez { cond: Slot, offset: i32 },
            /// Jumps by `offset` if `cond` (i32) is zero (a backward jump charges fuel).
            BrIfEqz { cond: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs Eq rhs` (i32); a backward jump charges fuel.
            BrI32Eq { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs Ne rhs` (i32); a backward jump charges fuel.
            BrI32Ne { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LtS rhs` (i32); a backward jump charges fuel.
            BrI32LtS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LtU rhs` (i32); a backward jump charges fuel.
            BrI32LtU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GtS rhs` (i32); a backward jump charges fuel.
            BrI32GtS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GtU rhs` (i32); a backward jump charges fuel.
            BrI32GtU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LeS rhs` (i32); a backward jump charges fuel.
            BrI32LeS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LeU rhs` (i32); a backward jump charges fuel.
            BrI32LeU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GeS rhs` (i32); a backward jump charges fuel.
            BrI32GeS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GeU rhs` (i32); a backward jump charges fuel.
            BrI32GeU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs Eq rhs` (i64); a backward jump charges fuel.
            BrI64Eq { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs Ne rhs` (i64); a backward jump charges fuel.
            BrI64Ne { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LtS rhs` (i64); a backward jump charges fuel.
            BrI64LtS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LtU rhs` (i64); a backward jump charges fuel.
            BrI64LtU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GtS rhs` (i64); a backward jump charges fuel.
            BrI64GtS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GtU rhs` (i64); a backward jump charges fuel.
            BrI64GtU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LeS rhs` (i64); a backward jump charges fuel.
            BrI64LeS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs LeU rhs` (i64); a backward jump charges fuel.
            BrI64LeU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GeS rhs` (i64); a backward jump charges fuel.
            BrI64GeS { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs GeU rhs` (i64); a backward jump charges fuel.
            BrI64GeU { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `cond` (i64) is not zero (a backward jump charges fuel).
            BrI64Nez { cond: Slot, offset: i32 },
            /// Jumps by `offset` if `cond` (i64) is zero (a backward jump charges fuel).
            BrI64Eqz { cond: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs & rhs` (i32) is not zero; a backward jump charges fuel.
            BrI32AndNez { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs & rhs` (i32) is zero; a backward jump charges fuel.
            BrI32AndEqz { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs & rhs` (i64) is not zero; a backward jump charges fuel.
            BrI64AndNez { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs & rhs` (i64) is zero; a backward jump charges fuel.
            BrI64AndEqz { lhs: Slot, rhs: Slot, offset: i32 },
            /// Jumps by `offset` if `lhs & imm` (i32) is not zero; a backward jump charges fuel.
            BrI32AndNezImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs & imm` (i32) is zero; a backward jump charges fuel.
            BrI32AndEqzImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs & imm` (i64) is not zero; a backward jump charges fuel.
            BrI64AndNezImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs & imm` (i64) is zero; a backward jump charges fuel.
            BrI64AndEqzImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs Eq imm` (i32); a backward jump charges fuel.
            BrI32EqImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs Ne imm` (i32); a backward jump charges fuel.
            BrI32NeImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LtS imm` (i32); a backward jump charges fuel.
            BrI32LtSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LtU imm` (i32); a backward jump charges fuel.
            BrI32LtUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GtS imm` (i32); a backward jump charges fuel.
            BrI32GtSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GtU imm` (i32); a backward jump charges fuel.
            BrI32GtUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LeS imm` (i32); a backward jump charges fuel.
            BrI32LeSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LeU imm` (i32); a backward jump charges fuel.
            BrI32LeUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GeS imm` (i32); a backward jump charges fuel.
            BrI32GeSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GeU imm` (i32); a backward jump charges fuel.
            BrI32GeUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs Eq imm` (i64); a backward jump charges fuel.
            BrI64EqImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs Ne imm` (i64); a backward jump charges fuel.
            BrI64NeImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LtS imm` (i64); a backward jump charges fuel.
            BrI64LtSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LtU imm` (i64); a backward jump charges fuel.
            BrI64LtUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GtS imm` (i64); a backward jump charges fuel.
            BrI64GtSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GtU imm` (i64); a backward jump charges fuel.
            BrI64GtUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LeS imm` (i64); a backward jump charges fuel.
            BrI64LeSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs LeU imm` (i64); a backward jump charges fuel.
            BrI64LeUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GeS imm` (i64); a backward jump charges fuel.
            BrI64GeSImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps by `offset` if `lhs GeU imm` (i64); a backward jump charges fuel.
            BrI64GeUImm { lhs: Slot, imm: i16, offset: i32 },
            /// Jumps to the `min(index, len - 1)`-th of the `len` `Br` instructions that follow.
            BrTable { index: Slot, len: u32 },
            /// Copies one slot.
            Copy { dst: Slot, src: Slot },
            /// Copies `len` consecutive slots, lowest first (`dst <= src` or disjoint).
            CopySpan { target: Slot, source: Slot, len: u16 },
            /// Returns from the function; results are already in slots `0..n`.
            Return {},
            /// Copies `src` to slot 0 and returns.
            ReturnSlot { src: Slot },
            /// Calls function `func` of this module's code, with the callee frame starting at `base`.
            CallInternal { func: u32, base: Slot },
            /// Calls imported function `func` (an index into the instance's functions).
            CallImport { func: u32, base: Slot },
            /// Calls the function at `index` of table `table`, checking it has type `type_index`.
            CallIndirect { type_index: u32, table: u32, index: Slot, base: Slot },
            /// `dst = cond != 0 ? if_true : if_false`.
            Select { dst: Slot, cond: Slot, if_true: Slot, if_false: Slot },
            /// `dst = src is null`.
            RefIsNull { dst: Slot, src: Slot },
            /// `dst = reference to function func`.
            RefFunc { dst: Slot, func: u32 },
            /// Reads global `global`.
            GlobalGet { dst: Slot, global: u32 },
            /// Writes global `global`.
            GlobalSet { src: Slot, global: u32 },
            /// Reads an element of table `table`.
            TableGet { dst: Slot, index: Slot, table: u32 },
            /// Writes an element of table `table`.
            TableSet { index: Slot, value: Slot, table: u32 },
            /// Size of table `table` in elements.
            TableSize { dst: Slot, table: u32 },
            /// Grows table `table` by `delta` elements of `init`; `dst` is the old size or -1.
            TableGrow { dst: Slot, init: Slot, delta: Slot, table: u32 },
            /// Fills `len` elements of table `table` from `index` with `value`.
            TableFill { index: Slot, value: Slot, len: Slot, table: u32 },
            /// Copies `len` elements between tables.
            TableCopy { target: Slot, source: Slot, len: Slot, target_table: u16, source_table: u16 },
            /// Copies `len` elements of segment `elem` into table `table`.
            TableInit { target: Slot, source: Slot, len: Slot, table: u16, elem: u16 },
            /// Drops element segment `elem`.
            ElemDrop { elem: u32 },
            /// Size of the memory in wasm pages.
            MemorySize { dst: Slot },
            /// Grows the memory by `delta` wasm pages; `dst` is the old size or -1.
            MemoryGrow { dst: Slot, delta: Slot },
            /// Fills `len` bytes at `address` with `value`.
            MemoryFill { address: Slot, value: Slot, len: Slot },
            /// Copies `len` bytes within the memory.
            MemoryCopy { target: Slot, source: Slot, len: Slot },
            /// Copies `len` bytes of data segment `data` into the memory.
            MemoryInit { target: Slot, source: Slot, len: Slot, data: u32 },
            /// Drops data segment `data`.
            DataDrop { data: u32 },
            /// Loads from `ptr + offset`.
            I32Load { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            F32Load { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            F64Load { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I32Load8S { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I32Load8U { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I32Load16S { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I32Load16U { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load8S { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load8U { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load16S { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load16U { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load32S { dst: Slot, ptr: Slot, offset: u32 },
            /// Loads from `ptr + offset`.
            I64Load32U { dst: Slot, ptr: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I32Store { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I64Store { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            F32Store { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            F64Store { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I32Store8 { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I32Store16 { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I64Store8 { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I64Store16 { ptr: Slot, value: Slot, offset: u32 },
            /// Stores `value` at `ptr + offset`.
            I64Store32 { ptr: Slot, value: Slot, offset: u32 },
            /// `I32Load` from `(ptr << shift) + offset` (an indexed array access).
            I32LoadShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I32Load` from `base + (index << shift) + offset` (an indexed array access).
            I32LoadAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load` from `(ptr << shift) + offset` (an indexed array access).
            I64LoadShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load` from `base + (index << shift) + offset` (an indexed array access).
            I64LoadAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `F32Load` from `(ptr << shift) + offset` (an indexed array access).
            F32LoadShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `F32Load` from `base + (index << shift) + offset` (an indexed array access).
            F32LoadAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `F64Load` from `(ptr << shift) + offset` (an indexed array access).
            F64LoadShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `F64Load` from `base + (index << shift) + offset` (an indexed array access).
            F64LoadAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I32Load8S` from `(ptr << shift) + offset` (an indexed array access).
            I32Load8SShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I32Load8S` from `base + (index << shift) + offset` (an indexed array access).
            I32Load8SAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I32Load8U` from `(ptr << shift) + offset` (an indexed array access).
            I32Load8UShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I32Load8U` from `base + (index << shift) + offset` (an indexed array access).
            I32Load8UAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I32Load16S` from `(ptr << shift) + offset` (an indexed array access).
            I32Load16SShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I32Load16S` from `base + (index << shift) + offset` (an indexed array access).
            I32Load16SAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I32Load16U` from `(ptr << shift) + offset` (an indexed array access).
            I32Load16UShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I32Load16U` from `base + (index << shift) + offset` (an indexed array access).
            I32Load16UAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load8S` from `(ptr << shift) + offset` (an indexed array access).
            I64Load8SShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load8S` from `base + (index << shift) + offset` (an indexed array access).
            I64Load8SAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load8U` from `(ptr << shift) + offset` (an indexed array access).
            I64Load8UShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load8U` from `base + (index << shift) + offset` (an indexed array access).
            I64Load8UAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load16S` from `(ptr << shift) + offset` (an indexed array access).
            I64Load16SShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load16S` from `base + (index << shift) + offset` (an indexed array access).
            I64Load16SAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load16U` from `(ptr << shift) + offset` (an indexed array access).
            I64Load16UShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load16U` from `base + (index << shift) + offset` (an indexed array access).
            I64Load16UAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load32S` from `(ptr << shift) + offset` (an indexed array access).
            I64Load32SShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load32S` from `base + (index << shift) + offset` (an indexed array access).
            I64Load32SAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I64Load32U` from `(ptr << shift) + offset` (an indexed array access).
            I64Load32UShl { dst: Slot, ptr: Slot, offset: u16, shift: u8 },
            /// `I64Load32U` from `base + (index << shift) + offset` (an indexed array access).
            I64Load32UAddShl { dst: Slot, base: Slot, index: Slot, shift: u8, offset: u8 },
            /// `I32Store` to `(ptr << shift) + offset` (an indexed array access).
            I32StoreShl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I32Store` to `base + (index << shift) + offset` (an indexed array access).
            I32StoreAddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I64Store` to `(ptr << shift) + offset` (an indexed array access).
            I64StoreShl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I64Store` to `base + (index << shift) + offset` (an indexed array access).
            I64StoreAddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `F32Store` to `(ptr << shift) + offset` (an indexed array access).
            F32StoreShl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `F32Store` to `base + (index << shift) + offset` (an indexed array access).
            F32StoreAddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `F64Store` to `(ptr << shift) + offset` (an indexed array access).
            F64StoreShl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `F64Store` to `base + (index << shift) + offset` (an indexed array access).
            F64StoreAddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I32Store8` to `(ptr << shift) + offset` (an indexed array access).
            I32Store8Shl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I32Store8` to `base + (index << shift) + offset` (an indexed array access).
            I32Store8AddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I32Store16` to `(ptr << shift) + offset` (an indexed array access).
            I32Store16Shl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I32Store16` to `base + (index << shift) + offset` (an indexed array access).
            I32Store16AddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I64Store8` to `(ptr << shift) + offset` (an indexed array access).
            I64Store8Shl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I64Store8` to `base + (index << shift) + offset` (an indexed array access).
            I64Store8AddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I64Store16` to `(ptr << shift) + offset` (an indexed array access).
            I64Store16Shl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I64Store16` to `base + (index << shift) + offset` (an indexed array access).
            I64Store16AddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `I64Store32` to `(ptr << shift) + offset` (an indexed array access).
            I64Store32Shl { ptr: Slot, value: Slot, offset: u16, shift: u8 },
            /// `I64Store32` to `base + (index << shift) + offset` (an indexed array access).
            I64Store32AddShl { base: Slot, index: Slot, value: Slot, shift: u8, offset: u8 },
            /// `dst = op(src)`.
            I32Eqz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Eqz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32Clz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32Ctz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32Popcnt { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Clz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Ctz { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Popcnt { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Abs { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Neg { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Ceil { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Floor { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Trunc { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Nearest { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32Sqrt { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Abs { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Neg { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Ceil { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Floor { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Trunc { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Nearest { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64Sqrt { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncF32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncF32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncF64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncF64U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64ExtendI32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64ExtendI32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncF32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncF32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncF64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncF64U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32ConvertI32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32ConvertI32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32ConvertI64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32ConvertI64U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F32DemoteF64 { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64ConvertI32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64ConvertI32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64ConvertI64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64ConvertI64U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            F64PromoteF32 { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32Extend8S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32Extend16S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Extend8S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Extend16S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64Extend32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncSatF32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncSatF32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncSatF64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I32TruncSatF64U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncSatF32S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncSatF32U { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncSatF64S { dst: Slot, src: Slot },
            /// `dst = op(src)`.
            I64TruncSatF64U { dst: Slot, src: Slot },
            /// `dst = lhs op rhs`.
            I32Eq { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Ne { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32LtS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32LtU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32GtS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32GtU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32LeS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32LeU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32GeS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32GeU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Eq { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Ne { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64LtS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64LtU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64GtS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64GtU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64LeS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64LeU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64GeS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64GeU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Eq { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Ne { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Lt { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Gt { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Le { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Ge { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Eq { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Ne { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Lt { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Gt { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Le { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Ge { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Add { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Sub { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Mul { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32DivS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32DivU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32RemS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32RemU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32And { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Or { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Xor { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Shl { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32ShrS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32ShrU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Rotl { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I32Rotr { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Add { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Sub { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Mul { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64DivS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64DivU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64RemS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64RemU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64And { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Or { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Xor { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Shl { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64ShrS { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64ShrU { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Rotl { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            I64Rotr { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op imm`, with the immediate.
            I32AddImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32MulImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32AndImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32OrImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32XorImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32ShlImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32ShrSImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate.
            I32ShrUImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64AddImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64MulImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64AndImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64OrImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64XorImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64ShlImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64ShrSImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op imm`, with the immediate, sign-extended.
            I64ShrUImm { dst: Slot, lhs: Slot, imm: i32 },
            /// `dst = lhs op rhs`.
            F32Add { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Sub { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Mul { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Div { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Min { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Max { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F32Copysign { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Add { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Sub { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Mul { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Div { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Min { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Max { dst: Slot, lhs: Slot, rhs: Slot },
            /// `dst = lhs op rhs`.
            F64Copysign { dst: Slot, lhs: Slot, rhs: Slot },
        }
    };
}

for_each_instr!(define_isa);
