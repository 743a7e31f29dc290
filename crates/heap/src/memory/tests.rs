//! Tests of `LinearMemory` against a plain byte-vector model.

#![allow(clippy::unwrap_used, reason = "tests panic on failure by design")]

use super::*;

const SIZE_ONE_WASM_PAGE: u64 = WASM_PAGE_SIZE;
const PAGE: u64 = PAGE_SIZE as u64;

/// A `LinearMemory` checked against a plain byte vector.
struct Model {
    memory: LinearMemory,
    bytes: Vec<u8>,
}

impl Model {
    fn new(initial_wasm_pages: u32, maximum_wasm_pages: Option<u32>) -> Self {
        let memory = LinearMemory::new(initial_wasm_pages, maximum_wasm_pages).unwrap();
        let bytes = vec![0; memory.size_bytes() as usize];
        Self { memory, bytes }
    }

    fn in_bounds(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| end <= self.bytes.len() as u64)
    }

    fn load<const N: usize>(&mut self, addr: u64) {
        let actual = self.memory.load::<N>(addr);
        if self.in_bounds(addr, N as u64) {
            let start = addr as usize;
            assert_eq!(
                actual.unwrap()[..],
                self.bytes[start..start + N],
                "load {N} at {addr:#x}"
            );
        } else {
            assert_eq!(actual, Err(OutOfBounds), "load {N} at {addr:#x}");
        }
    }

    fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) {
        let actual = self.memory.store(addr, bytes);
        if self.in_bounds(addr, N as u64) {
            assert_eq!(actual, Ok(()), "store {N} at {addr:#x}");
            self.bytes[addr as usize..][..N].copy_from_slice(&bytes);
        } else {
            assert_eq!(actual, Err(OutOfBounds), "store {N} at {addr:#x}");
        }
    }

    fn read(&mut self, addr: u64, len: usize) {
        let mut buf = vec![0xAA; len];
        let actual = self.memory.read(addr, &mut buf);
        if self.in_bounds(addr, len as u64) {
            assert_eq!(actual, Ok(()));
            assert!(
                buf == self.bytes[addr as usize..][..len],
                "read {len} at {addr:#x}"
            );
        } else {
            assert_eq!(actual, Err(OutOfBounds), "read {len} at {addr:#x}");
            assert!(
                buf.iter().all(|&byte| byte == 0xAA),
                "failed read touched the buffer"
            );
        }
    }

    fn write(&mut self, addr: u64, data: &[u8]) {
        let actual = self.memory.write(addr, data);
        if self.in_bounds(addr, data.len() as u64) {
            assert_eq!(actual, Ok(()));
            self.bytes[addr as usize..][..data.len()].copy_from_slice(data);
        } else {
            assert_eq!(
                actual,
                Err(OutOfBounds),
                "write {} at {addr:#x}",
                data.len()
            );
        }
    }

    fn fill(&mut self, addr: u64, byte: u8, len: u64) {
        let actual = self.memory.fill(addr, byte, len);
        if self.in_bounds(addr, len) {
            assert_eq!(actual, Ok(()));
            self.bytes[addr as usize..][..len as usize].fill(byte);
        } else {
            assert_eq!(actual, Err(OutOfBounds), "fill {len} at {addr:#x}");
        }
    }

    fn copy_within(&mut self, dst: u64, src: u64, len: u64) {
        let actual = self.memory.copy_within(dst, src, len);
        if self.in_bounds(dst, len) && self.in_bounds(src, len) {
            assert_eq!(actual, Ok(()));
            let (dst, src, len) = (dst as usize, src as usize, len as usize);
            self.bytes.copy_within(src..src + len, dst);
        } else {
            assert_eq!(
                actual,
                Err(OutOfBounds),
                "copy {len} from {src:#x} to {dst:#x}"
            );
        }
    }

    fn grow(&mut self, delta: u32) {
        let old = self.memory.size_wasm_pages();
        match self.memory.grow(delta) {
            Some(size) => {
                assert_eq!(size, old);
                self.bytes.resize(self.memory.size_bytes() as usize, 0);
            }
            None => assert_eq!(self.memory.size_wasm_pages(), old),
        }
        assert_eq!(self.memory.size_bytes(), self.bytes.len() as u64);
    }

    /// Compares the whole memory and checks that zero pages hold no frames they do
    /// not need: every resident page must have been written, so resident pages never
    /// exceed the pages of the model.
    fn check_all(&mut self) {
        let mut buf = vec![0; self.bytes.len()];
        self.memory.read(0, &mut buf).unwrap();
        if let Some(index) = buf.iter().zip(&self.bytes).position(|(a, b)| a != b) {
            panic!("memory differs from model at {index:#x}");
        }
        assert!(self.memory.resident_pages() as u64 <= self.bytes.len() as u64 / PAGE);
    }
}

/// A memory of at least `pages` heap pages, whatever `PAGE_SIZE` is.
fn memory_of_pages(pages: u64) -> LinearMemory {
    LinearMemory::new((pages * PAGE).div_ceil(WASM_PAGE_SIZE) as u32, None).unwrap()
}

/// Simple xorshift64 PRNG, so the tests need no `rand`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

#[test]
fn new_checks_limits() {
    assert_eq!(
        LinearMemory::new(2, Some(1)).unwrap_err(),
        HeapError::InitialAboveMaximum {
            initial: 2,
            maximum: 1
        }
    );
    assert_eq!(
        LinearMemory::new(0, Some(65_537)).unwrap_err(),
        HeapError::MaximumAboveLimit { maximum: 65_537 }
    );
    assert_eq!(
        LinearMemory::new(65_537, None).unwrap_err(),
        HeapError::InitialAboveLimit { initial: 65_537 }
    );
    let memory = LinearMemory::new(65_536, Some(65_536)).unwrap();
    assert_eq!(memory.size_bytes(), 1 << 32);
    assert_eq!(memory.maximum_wasm_pages(), Some(65_536));
    assert_eq!(memory.resident_pages(), 0);
    let debug = format!("{memory:?}");
    assert!(debug.contains("size_wasm_pages: 65536"), "{debug}");
}

#[test]
fn empty_memory_rejects_every_access() {
    let mut memory = LinearMemory::new(0, None).unwrap();
    assert_eq!(memory.load::<1>(0), Err(OutOfBounds));
    assert_eq!(memory.load::<8>(0), Err(OutOfBounds));
    assert_eq!(memory.store(0, [1u8]), Err(OutOfBounds));
    assert_eq!(memory.read(0, &mut [0; 1]), Err(OutOfBounds));
    assert_eq!(memory.write(0, &[1]), Err(OutOfBounds));
    assert_eq!(memory.fill(0, 1, 1), Err(OutOfBounds));
    assert_eq!(memory.copy_within(0, 0, 1), Err(OutOfBounds));
    // Zero-length accesses at the end of memory are in bounds; past it they are not.
    assert_eq!(memory.read(0, &mut []), Ok(()));
    assert_eq!(memory.write(0, &[]), Ok(()));
    assert_eq!(memory.fill(0, 1, 0), Ok(()));
    assert_eq!(memory.copy_within(0, 0, 0), Ok(()));
    assert_eq!(memory.read(1, &mut []), Err(OutOfBounds));
    assert_eq!(memory.write(1, &[]), Err(OutOfBounds));
    assert_eq!(memory.fill(1, 1, 0), Err(OutOfBounds));
    assert_eq!(memory.copy_within(1, 0, 0), Err(OutOfBounds));
    assert_eq!(memory.copy_within(0, 1, 0), Err(OutOfBounds));
    assert_eq!(memory.resident_pages(), 0);
}

#[test]
fn grow_has_memory_grow_semantics() {
    let mut memory = LinearMemory::new(1, Some(3)).unwrap();
    assert_eq!(memory.grow(0), Some(1));
    assert_eq!(memory.grow(1), Some(1));
    assert_eq!(memory.grow(2), None);
    assert_eq!(memory.size_wasm_pages(), 2);
    assert_eq!(memory.grow(1), Some(2));
    assert_eq!(memory.grow(1), None);
    assert_eq!(memory.grow(0), Some(3));
    assert_eq!(memory.grow(u32::MAX), None);
    assert_eq!(memory.size_bytes(), 3 * SIZE_ONE_WASM_PAGE);

    let mut unbounded = LinearMemory::new(0, None).unwrap();
    assert_eq!(unbounded.grow(65_537), None);
    assert_eq!(unbounded.grow(65_536), Some(0));
    assert_eq!(unbounded.grow(1), None);
    assert_eq!(unbounded.resident_pages(), 0);
}

#[test]
fn grow_keeps_contents_and_cached_translations() {
    let mut model = Model::new(1, None);
    model.store(8, [1u8, 2, 3, 4]);
    model.load::<4>(8); // Cached in the TLB now.
    model.grow(2);
    model.load::<4>(8);
    model.store(SIZE_ONE_WASM_PAGE + 3, 7u64.to_le_bytes());
    model.load::<8>(SIZE_ONE_WASM_PAGE + 3);
    model.check_all();
}

fn each_width_around_page_boundaries<const N: usize>(model: &mut Model, rng: &mut XorShift) {
    for boundary in [
        PAGE,
        2 * PAGE,
        SIZE_ONE_WASM_PAGE,
        SIZE_ONE_WASM_PAGE + PAGE,
    ] {
        for addr in boundary - N as u64 - 2..=boundary + 2 {
            let bytes: [u8; N] = std::array::from_fn(|_| rng.byte() | 1);
            model.store(addr, bytes);
            model.load::<N>(addr);
            model.load::<N>(addr + 1);
            model.load::<N>(addr - 1);
        }
    }
}

#[test]
fn loads_and_stores_of_each_width_at_and_across_page_boundaries() {
    let mut model = Model::new(2, None);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    each_width_around_page_boundaries::<1>(&mut model, &mut rng);
    each_width_around_page_boundaries::<2>(&mut model, &mut rng);
    each_width_around_page_boundaries::<4>(&mut model, &mut rng);
    each_width_around_page_boundaries::<8>(&mut model, &mut rng);
    each_width_around_page_boundaries::<16>(&mut model, &mut rng);
    model.check_all();
}

#[test]
fn straddling_store_into_unmapped_pages_allocates_both() {
    let mut memory = memory_of_pages(4);
    let value = 0x0102_0304_0506_0708_u64.to_le_bytes();
    memory.store(PAGE - 3, value).unwrap();
    assert_eq!(memory.resident_pages(), 2);
    assert_eq!(memory.load::<8>(PAGE - 3), Ok(value));
    assert_eq!(memory.load::<4>(PAGE - 3), Ok([8, 7, 6, 5]));
    assert_eq!(memory.load::<2>(PAGE - 1), Ok([6, 5]));
    // Only the high byte is non-zero: just the second page needs a frame.
    let mut memory = memory_of_pages(4);
    memory
        .store(2 * PAGE - 1, 0x0100_u16.to_le_bytes())
        .unwrap();
    assert_eq!(memory.resident_pages(), 1);
    assert_eq!(memory.load::<2>(2 * PAGE - 1), Ok([0, 1]));
}

#[test]
fn out_of_bounds_at_the_end_of_memory() {
    let mut model = Model::new(1, None);
    let size = model.memory.size_bytes();
    model.store(size - 4, [1u8, 2, 3, 4]);
    model.load::<4>(size - 4);
    model.load::<4>(size - 1);
    model.load::<4>(size - 3);
    model.load::<1>(size - 1);
    model.load::<1>(size);
    model.load::<8>(size - 8);
    model.load::<8>(size - 7);
    // A failed store has no partial effect, even on its in-bounds part.
    model.store(size - 2, [9u8, 9, 9, 9]);
    model.store(size - 1, [9u8, 9]);
    model.load::<4>(size - 4);
    model.read(size - 4, 4);
    model.read(size - 4, 5);
    model.read(size, 0);
    model.read(size + 1, 0);
    model.write(size - 2, &[5, 5, 5]);
    model.fill(size - 2, 5, 3);
    model.copy_within(size - 2, 0, 3);
    model.copy_within(0, size - 2, 3);
    model.copy_within(size, 0, 0);
    model.copy_within(0, size + 1, 0);
    model.check_all();
}

#[test]
fn huge_addresses_are_out_of_bounds_without_overflow() {
    let mut memory = LinearMemory::new(65_536, None).unwrap();
    let size = memory.size_bytes();
    for addr in [
        size,
        size + 1,
        (1 << 33) - 8,
        1 << 33,
        (1 << 33) + 0xFFFF,
        u64::MAX - 3,
        u64::MAX,
    ] {
        assert_eq!(memory.load::<1>(addr), Err(OutOfBounds), "{addr:#x}");
        assert_eq!(memory.load::<8>(addr), Err(OutOfBounds), "{addr:#x}");
        assert_eq!(memory.store(addr, [1u8; 4]), Err(OutOfBounds), "{addr:#x}");
        assert_eq!(
            memory.read(addr, &mut [0; 2]),
            Err(OutOfBounds),
            "{addr:#x}"
        );
        assert_eq!(memory.write(addr, &[1; 2]), Err(OutOfBounds), "{addr:#x}");
        assert_eq!(memory.fill(addr, 1, 2), Err(OutOfBounds), "{addr:#x}");
        assert_eq!(
            memory.copy_within(addr, 0, 2),
            Err(OutOfBounds),
            "{addr:#x}"
        );
        assert_eq!(
            memory.copy_within(0, addr, 2),
            Err(OutOfBounds),
            "{addr:#x}"
        );
    }
    assert_eq!(memory.fill(0, 1, u64::MAX), Err(OutOfBounds));
    assert_eq!(memory.fill(1, 1, u64::MAX), Err(OutOfBounds));
    assert_eq!(memory.copy_within(1, 0, u64::MAX), Err(OutOfBounds));
    assert_eq!(memory.resident_pages(), 0);
}

#[test]
fn sparse_four_gib_memory_costs_only_written_pages() {
    let mut memory = LinearMemory::new(0, None).unwrap();
    assert_eq!(memory.grow(65_536), Some(0));
    let size = memory.size_bytes();
    assert_eq!(size, 1 << 32);
    let addrs = [0, size / 2 + 12_345, size - 1];
    for (addr, byte) in addrs.iter().zip([0x11u8, 0x22, 0x33]) {
        memory.store(*addr, [byte]).unwrap();
    }
    assert_eq!(memory.resident_pages(), 3);
    for (addr, byte) in addrs.iter().zip([0x11u8, 0x22, 0x33]) {
        assert_eq!(memory.load::<1>(*addr), Ok([byte]));
    }
    // Reads, loads and zero fills of untouched memory allocate nothing.
    assert_eq!(memory.load::<8>(size / 4), Ok([0; 8]));
    let mut buf = vec![0xFF; 3 * PAGE_SIZE];
    memory.read(size / 4 - 5, &mut buf).unwrap();
    assert!(buf.iter().all(|&byte| byte == 0));
    memory.fill(PAGE, 0, size / 4).unwrap(); // Spans 1 GiB, all unmapped.
    memory.copy_within(size / 8, size / 4, 1 << 20).unwrap();
    assert_eq!(memory.resident_pages(), 3);
    assert_eq!(memory.load::<1>(size / 2 + 12_345), Ok([0x22]));
}

#[test]
fn zero_writes_into_unmapped_pages_allocate_nothing() {
    let mut memory = memory_of_pages(4);
    memory.store(5, 0u64.to_le_bytes()).unwrap();
    memory.store(PAGE - 2, [0u8; 4]).unwrap();
    memory.write(3 * PAGE - 7, &[0; 100]).unwrap();
    memory.fill(0, 0, SIZE_ONE_WASM_PAGE).unwrap();
    memory.copy_within(0, PAGE, 2 * PAGE).unwrap();
    assert_eq!(memory.resident_pages(), 0);
    // A zero fill over a mapped page still zeroes it.
    memory.store(PAGE + 1, [7u8]).unwrap();
    memory.fill(PAGE, 0, 4).unwrap();
    assert_eq!(memory.load::<4>(PAGE), Ok([0; 4]));
    assert_eq!(memory.resident_pages(), 1);
}

#[test]
fn store_after_load_of_an_unmapped_page_is_visible() {
    // The load slow path must not cache the unmapped page as a zero page.
    let mut memory = memory_of_pages(4);
    assert_eq!(memory.load::<4>(PAGE + 8), Ok([0; 4]));
    memory.store(PAGE + 8, [1u8, 2, 3, 4]).unwrap();
    assert_eq!(memory.load::<4>(PAGE + 8), Ok([1, 2, 3, 4]));
}

#[test]
fn tlb_conflicts_keep_translations_apart() {
    // Three pages that share a TLB slot; alternate between them.
    let next = crate::tlb::Tlb::next_page_in_slot;
    let (first, second) = (1, next(1));
    let third = next(second);
    let wasm_pages = ((third + 1) * PAGE).div_ceil(WASM_PAGE_SIZE) as u32;
    let mut model = Model::new(wasm_pages, None);
    for round in 0..3u8 {
        for page in [first, second, third, first, third] {
            model.store(
                page * PAGE + u64::from(round),
                [(page as u8).wrapping_add(round + 1)],
            );
            model.load::<1>(page * PAGE + u64::from(round));
            model.load::<4>(page * PAGE);
        }
    }
    model.check_all();
}

#[test]
fn flushing_the_tlb_keeps_contents() {
    let mut model = Model::new(2, None);
    model.store(PAGE - 2, [1u8, 2, 3, 4]);
    model.store(3 * PAGE + 5, 9u64.to_le_bytes());
    model.load::<8>(3 * PAGE + 5); // Cached in the TLB now.
    model.memory.flush_tlb();
    model.load::<8>(3 * PAGE + 5);
    model.store(3 * PAGE + 6, [7u8]);
    model.memory.flush_tlb();
    model.check_all();
}

#[test]
fn cached_pages_at_the_end_of_memory_still_trap_beyond_it() {
    // The hit path has no bounds check: a cached last page must not let an access
    // past the end of memory through.
    let mut model = Model::new(1, None);
    let end = SIZE_ONE_WASM_PAGE;
    model.store(end - 8, [0xAB; 8]);
    model.load::<8>(end - 8);
    for addr in end - 7..end + 2 {
        model.load::<8>(addr);
        model.store(addr, [1u8; 8]);
        model.load::<1>(addr);
    }
    model.check_all();
}

#[test]
fn bulk_operations_across_page_boundaries() {
    let mut model = Model::new(2, None);
    let data: Vec<u8> = (0..3 * PAGE_SIZE + 17)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    model.write(PAGE - 5, &data);
    model.read(PAGE - 9, 2 * PAGE_SIZE + 30);
    model.fill(3 * PAGE - 1, 0xAB, PAGE + 2);
    model.fill(2 * PAGE + 7, 0, PAGE);
    model.read(0, 5 * PAGE_SIZE);
    model.write(SIZE_ONE_WASM_PAGE - 3, &data[..PAGE_SIZE]);
    model.check_all();
}

#[test]
fn overlapping_copies_in_both_directions() {
    let mut model = Model::new(2, None);
    let data: Vec<u8> = (0..4 * PAGE_SIZE).map(|i| (i % 253) as u8 + 1).collect();
    model.write(PAGE + 3, &data);
    for (dst, src, len) in [
        (PAGE + 10, PAGE + 3, 3 * PAGE),    // upwards, small shift
        (PAGE + 1, PAGE + 10, 3 * PAGE),    // downwards, small shift
        (2 * PAGE - 1, PAGE, 2 * PAGE + 5), // upwards, shift just under a page
        (PAGE, 2 * PAGE + 1, 2 * PAGE),     // downwards, shift just over a page
        (PAGE + 100, PAGE + 100, PAGE),     // onto itself
        (3 * PAGE + 5, 3 * PAGE + 4, 10),   // within one page, upwards
        (3 * PAGE + 4, 3 * PAGE + 5, 10),   // within one page, downwards
        (7 * PAGE + 2, PAGE + 3, 2 * PAGE), // disjoint, into unmapped pages
        (8 * PAGE, 12 * PAGE, 2 * PAGE),    // unmapped source over mapped target
    ] {
        model.copy_within(dst, src, len);
        model.check_all();
    }
}

#[test]
fn randomized_operations_match_a_byte_vector() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut model = Model::new(1, Some(4));
    for step in 0..20_000 {
        let size = model.bytes.len() as u64;
        // Mostly near page boundaries, sometimes anywhere, sometimes past the end.
        let mut addr = || match rng.below(4) {
            0 | 1 => (rng.below(size / PAGE + 1) * PAGE).saturating_sub(8) + rng.below(16),
            2 => rng.below(size + 1),
            _ => size - rng.below(16) + rng.below(32),
        };
        let (a, b) = (addr(), addr());
        let len = match rng.below(3) {
            0 => rng.below(16),
            1 => rng.below(2 * PAGE),
            _ => rng.below(PAGE / 4),
        };
        let byte = if rng.below(3) == 0 { 0 } else { rng.byte() };
        match rng.below(14) {
            0 => model.load::<1>(a),
            1 => model.load::<2>(a),
            2 => model.load::<4>(a),
            3 => model.load::<8>(a),
            4 => model.store(a, [byte]),
            5 => model.store(a, [byte, rng.byte()]),
            6 => model.store(a, (rng.next() as u32 & 0xFF00_FF00).to_le_bytes()),
            7 => model.store(a, rng.next().to_le_bytes()),
            8 => model.read(a, len as usize),
            9 => {
                let data: Vec<u8> = (0..len).map(|_| rng.byte() & byte).collect();
                model.write(a, &data);
            }
            10 => model.fill(a, byte, len),
            11 | 12 => model.copy_within(a, b, len),
            _ => model.grow(rng.below(2) as u32),
        }
        if step % 1000 == 0 {
            model.check_all();
        }
    }
    model.check_all();
}

#[test]
fn bulk_operations_over_runs_of_adjacent_frames_match_a_byte_vector() {
    // More pages than one slab of frames holds, written mostly in ascending order
    // so that runs of adjacent frames form, then copied and filled in long pieces
    // (overlapping both ways, across slab boundaries, from and into unmapped pages).
    let slab_bytes = (crate::frame_pool::SLAB_FRAMES * PAGE_SIZE) as u64;
    let wasm_pages = (3 * slab_bytes).div_ceil(WASM_PAGE_SIZE) as u32;
    let mut model = Model::new(wasm_pages, None);
    let size = model.bytes.len() as u64;
    let mut rng = XorShift(0x0DDB_1A5E_5BAD_5EED);
    for page in 0..size / PAGE / 2 {
        if rng.below(8) != 0 {
            model.store(page * PAGE + rng.below(PAGE - 8), rng.next().to_le_bytes());
        }
    }
    for step in 0..400 {
        let len = rng.below(slab_bytes + 3 * PAGE);
        let (a, b) = (rng.below(size - len), rng.below(size - len));
        match rng.below(4) {
            0 => model.fill(a, if rng.below(2) == 0 { 0 } else { rng.byte() }, len),
            1 => model.copy_within(a, a + rng.below(3 * PAGE).min(size - len - a), len),
            _ => model.copy_within(a, b, len),
        }
        if step % 50 == 0 {
            model.check_all();
        }
    }
    model.check_all();
}

mod backed;
