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
//! | with a store: miss on a page   | one `PageStore::read_page`, or a zeroed frame if the  |
//! |   not resident                 | store never held it; a write-back if the victim is dirty |
//! | with a store: first store to a | one fault-path pass that marks it dirty (then stores  |
//! |   clean page                   | hit the TLB's store tag)                              |
//! | with a store: bulk operations  | page by page through a one-page buffer                |
//! | `write_back_dirty`             | one `PageStore::write_page` per dirty page            |
//!
//! With a [`PageStore`] attached ([`LinearMemory::attach_store`]), the memory holds
//! at most `frames_max` pages resident: a miss faults the page in from the store,
//! a full pool evicts a page under CLOCK (writing it back first if dirty), and a
//! storage error poisons the memory (see [`LinearMemory::storage_error`]). A
//! memory without a store behaves and performs as it did before stores existed.
//!
//! ```
//! use ferrite_heap::{LinearMemory, PageStore, PAGE_SIZE};
//! use ferrite_pagestore::{MemStore, PageMapRef, StorageBackend};
//! use std::sync::Arc;
//!
//! let backend: Arc<dyn StorageBackend> = Arc::new(MemStore::new());
//! let store = PageStore::open(backend, "procs/demo/", PAGE_SIZE, 0, PageMapRef::default());
//! let mut memory = LinearMemory::new(16, None)?; // 1 MiB
//! memory.attach_store(store, Some(4))?; // at most 4 pages resident
//! for page in 0..64u64 {
//!     memory.store(page * PAGE_SIZE as u64, [page as u8 + 1])?;
//! }
//! assert_eq!(memory.resident_pages(), 4);
//! assert_eq!(memory.load::<1>(0)?, [1]); // faulted back in from the store
//! memory.write_back_dirty()?; // before a checkpoint's `commit_maps`
//! assert_eq!(memory.dirty_pages(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The page size was chosen by measurement (the `ratio` benchmark of
//! `ferrite-bench`): with bulk operations working on runs of adjacent frames,
//! 4 KiB, 16 KiB and 64 KiB pages ran within measurement noise of each other
//! except for random accesses over a large memory (the `hash` workload, where
//! larger pages miss the TLB less: 5% fewer instructions with 64 KiB pages); the
//! smallest page wins for residency and for the granularity of later checkpoints.

mod backing;
mod frame_pool;
mod memory;
mod page_table;
mod tlb;

pub use ferrite_pagestore::{PageStore, PageStoreError};
pub use memory::LinearMemory;

use ferrite_core::{WASM_PAGES_MAX, WASM_PAGE_SIZE};
use std::sync::Arc;

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

/// Why a [`LinearMemory`] could not be created, attached to a store, or written
/// back.
///
/// `Clone` and `PartialEq` like a plain value: a [`HeapError::Storage`] shares its
/// error (an `Arc`, since I/O errors cannot be cloned), and two of them are equal
/// when they are the same latched error.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A frame limit of zero: a backed memory needs at least one frame.
    #[error("the physical heap must hold at least one page of {PAGE_SIZE} bytes")]
    FramesMaxZero,
    /// The page store was opened with another page size than [`PAGE_SIZE`].
    #[error("the page store's page size {page_size} differs from the heap's {PAGE_SIZE}")]
    PageSizeMismatch { page_size: usize },
    /// [`LinearMemory::attach_store`] on a memory that already has a store.
    #[error("the memory already has a page store")]
    StoreAttached,
    /// Reading or writing the backing store failed, now or earlier: the memory is
    /// poisoned (see [`LinearMemory::storage_error`]).
    #[error("storage error: {0}")]
    Storage(Arc<PageStoreError>),
}

impl PartialEq for HeapError {
    fn eq(&self, other: &Self) -> bool {
        use HeapError::*;
        match (self, other) {
            (InitialAboveLimit { initial: a }, InitialAboveLimit { initial: b }) => a == b,
            (MaximumAboveLimit { maximum: a }, MaximumAboveLimit { maximum: b }) => a == b,
            (
                InitialAboveMaximum {
                    initial: a,
                    maximum: m,
                },
                InitialAboveMaximum {
                    initial: b,
                    maximum: n,
                },
            ) => a == b && m == n,
            (FramesMaxZero, FramesMaxZero) | (StoreAttached, StoreAttached) => true,
            (PageSizeMismatch { page_size: a }, PageSizeMismatch { page_size: b }) => a == b,
            (Storage(a), Storage(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for HeapError {}

/// Which resident page a full physical heap evicts to make room.
///
/// The default, [`EvictionPolicy::Clock`], won the measurement of
/// `examples/eviction_policy.rs`; the others are kept so that the measurement
/// can be repeated (`cargo run --release -p ferrite-heap --example
/// eviction_policy`). The policy runs only on the fault path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// CLOCK (second chance) over the frames, with a reference bit set on every
    /// fault-path access. TLB hits set no bit, so a page the TLB caches counts as
    /// referenced; the sweep clears it by dropping the page from the TLB, and its
    /// next access takes the fault path (cheap: the page is resident) and sets
    /// the bit again, as an OS clears a page's accessed bit and flushes its TLB
    /// entry.
    #[default]
    Clock,
    /// CLOCK with reference bits only: a page used only through TLB hits looks
    /// unreferenced.
    ClockWithoutTlb,
    /// First in, first out: the frame that was filled longest ago.
    Fifo,
    /// A pseudo-random resident frame (fixed seed: runs are reproducible).
    Random,
}

/// Paging counters and the state of the physical heap, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Pages read from the backing store (faults on pages it holds a version of).
    pub page_faults: u64,
    /// Pages given a zeroed frame without reading: the store never held them.
    pub zero_fills: u64,
    /// Resident pages evicted to make room (each written back first if dirty).
    pub evictions: u64,
    /// Pages written to the store: dirty evictions and [`LinearMemory::write_back_dirty`].
    pub write_backs: u64,
    /// Pages with a frame now.
    pub resident_pages: usize,
    /// Resident pages that differ from the store (all resident pages when there
    /// is no store).
    pub dirty_pages: usize,
    /// The frame limit, if the memory has a store and a limit.
    pub frames_max: Option<usize>,
}

/// The error of every out-of-bounds access; cold so that callers lay out the
/// in-bounds path as the fall-through.
#[cold]
#[inline(never)]
fn out_of_bounds() -> OutOfBounds {
    OutOfBounds
}
