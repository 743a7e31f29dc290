//! Ferrite's virtual heap: a WebAssembly linear memory made of lazily allocated pages.
//!
//! A [`LinearMemory`] is a sequence of fixed-size pages of [`PAGE_SIZE`] bytes. A page
//! table maps each page to a frame of host memory, or to nothing: a page that was never
//! written with a non-zero byte has no frame and reads as zeros. Growing a memory to
//! 4 GiB therefore costs nothing until the program writes to it. Loads and stores go
//! through a small software TLB that caches only mapped pages below the memory
//! size, so a hit is one tag compare (no separate bounds check) and the access
//! through a cached frame pointer; everything else takes a cold fault path.
//! Frames are carved in page order from large slabs, so pages written in order sit
//! in adjacent frames and bulk operations copy over them in one host `memmove`.
//!
//! ```
//! use ferrite_heap::{LinearMemory, OutOfBounds};
//!
//! let mut memory = LinearMemory::new(1, Some(65_536))?;
//! assert_eq!(memory.grow(65_535), Some(1)); // 4 GiB, nothing allocated yet
//! memory.store(0xFFFF_FFF0, 0xDEAD_BEEF_u32.to_le_bytes())?;
//! assert_eq!(memory.load::<4>(0xFFFF_FFF0)?, 0xDEAD_BEEF_u32.to_le_bytes());
//! assert_eq!(memory.load::<8>(1 << 31)?, [0; 8]); // untouched memory reads as zeros
//! assert_eq!(memory.load::<4>(0xFFFF_FFFD), Err(OutOfBounds));
//! assert_eq!(memory.resident_pages(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Operation                      | Cost                                                  |
//! |--------------------------------|-------------------------------------------------------|
//! | `load` / `store`, TLB hit      | one tag compare, memory access                        |
//! | `load` / `store`, TLB miss     | bounds check, page-table lookup, TLB refill (cold)    |
//! | access straddling two pages    | two page-chunk copies (cold path)                     |
//! | first non-zero write to a page | a frame of the current zeroed 4 MiB slab              |
//! | `grow`                         | O(1); allocates nothing                               |
//! | `fill`/`copy_within`           | one `memset`/`memmove` per run of adjacent frames     |
//! | `read`/`write`                 | one page-table lookup and one `memcpy` per page chunk |
//! | page table                     | 4 bytes per page up to the highest written page       |
//!
//! The page size was chosen by measurement (the `ratio` benchmark of
//! `ferrite-bench`): with bulk operations working on runs of adjacent frames,
//! 4 KiB, 16 KiB and 64 KiB pages ran within measurement noise of each other
//! except for random accesses over a large memory (the `hash` workload, where
//! larger pages miss the TLB less: 5% fewer instructions with 64 KiB pages); the
//! smallest page wins for residency and for the granularity of later checkpoints.

mod frame_pool;
mod memory;
mod page_table;
mod tlb;

pub use memory::LinearMemory;

use ferrite_core::{WASM_PAGES_MAX, WASM_PAGE_SIZE};

/// Log2 of [`PAGE_SIZE`]. Any value in `12..=16` works; the whole crate (and its
/// tests) is written against the constant.
pub const PAGE_SIZE_LOG2: u32 = 12;

/// Size in bytes of a heap page, the unit of allocation (not the wasm page of
/// `memory.grow`, which is [`WASM_PAGE_SIZE`] and a multiple of this).
pub const PAGE_SIZE: usize = 1 << PAGE_SIZE_LOG2;

/// Mask of the in-page offset of an address.
const PAGE_MASK: usize = PAGE_SIZE - 1;

/// Heap pages per wasm page.
const PAGES_PER_WASM_PAGE: u64 = WASM_PAGE_SIZE / PAGE_SIZE as u64;

const _: () = assert!(PAGE_SIZE_LOG2 >= 12 && PAGE_SIZE_LOG2 <= 16);
const _: () = assert!(WASM_PAGE_SIZE.is_multiple_of(PAGE_SIZE as u64));
// Page indices of a full 4 GiB memory fit a `u32` with room for the sentinels.
const _: () = assert!((WASM_PAGES_MAX as u64) * PAGES_PER_WASM_PAGE < u32::MAX as u64);

/// A memory access outside the bounds of the linear memory.
///
/// Carries no data so that `Result<T, OutOfBounds>` is as small as `T` plus a tag;
/// the VM turns it into `TrapCode::MemoryOutOfBounds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("out of bounds memory access")]
pub struct OutOfBounds;

const _: () = assert!(std::mem::size_of::<OutOfBounds>() == 0);

/// Why a [`LinearMemory`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeapError {
    /// The initial size exceeds the 4 GiB of a 32-bit memory.
    #[error("initial memory size of {initial} pages exceeds the limit of {WASM_PAGES_MAX} pages")]
    InitialAboveLimit { initial: u32 },
    /// The maximum size exceeds the 4 GiB of a 32-bit memory.
    #[error("maximum memory size of {maximum} pages exceeds the limit of {WASM_PAGES_MAX} pages")]
    MaximumAboveLimit { maximum: u32 },
    /// The initial size exceeds the declared maximum.
    #[error("initial memory size of {initial} pages exceeds the maximum of {maximum} pages")]
    InitialAboveMaximum { initial: u32, maximum: u32 },
}

/// The error of every out-of-bounds access; cold so that callers lay out the
/// in-bounds path as the fall-through.
#[cold]
#[inline(never)]
fn out_of_bounds() -> OutOfBounds {
    OutOfBounds
}
