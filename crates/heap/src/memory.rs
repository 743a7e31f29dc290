//! [`LinearMemory`]: the page table, frame pool and TLB composed into a wasm memory.

use crate::{
    frame_pool::{FrameIndex, FramePool},
    out_of_bounds,
    page_table::PageTable,
    tlb::Tlb,
    HeapError, OutOfBounds, PAGE_MASK, PAGE_SIZE, PAGE_SIZE_LOG2,
};
use ferrite_core::{PageIndex, WASM_PAGES_MAX, WASM_PAGE_SIZE};

/// A WebAssembly linear memory backed by lazily allocated pages.
///
/// Addresses are `u64` byte addresses: the VM adds a 32-bit pointer and a 32-bit
/// offset without overflow, so addresses up to about 2^33 reach here and are checked.
/// Every access is bounds-checked as a whole before it has any effect.
///
/// Invariants:
/// - `size_bytes == size_wasm_pages * WASM_PAGE_SIZE <= 4 GiB`;
/// - every page with a frame lies below `size_bytes` (memories never shrink);
/// - every TLB entry agrees with the page table (see [`Tlb`]).
pub struct LinearMemory {
    /// Current size in bytes; first, as the hot path reads it on every access.
    size_bytes: u64,
    tlb: Tlb,
    frames: FramePool,
    table: PageTable,
    size_wasm_pages: u32,
    maximum_wasm_pages: Option<u32>,
}

impl LinearMemory {
    /// Creates a memory of `initial_wasm_pages` wasm pages that may grow up to
    /// `maximum_wasm_pages` (or to 4 GiB when `None`). Allocates no frames.
    ///
    /// # Errors
    /// [`HeapError`] if either size exceeds 65536 wasm pages or the initial size
    /// exceeds the maximum.
    pub fn new(
        initial_wasm_pages: u32,
        maximum_wasm_pages: Option<u32>,
    ) -> Result<Self, HeapError> {
        if initial_wasm_pages > WASM_PAGES_MAX {
            return Err(HeapError::InitialAboveLimit {
                initial: initial_wasm_pages,
            });
        }
        if let Some(maximum) = maximum_wasm_pages {
            if maximum > WASM_PAGES_MAX {
                return Err(HeapError::MaximumAboveLimit { maximum });
            }
            if initial_wasm_pages > maximum {
                return Err(HeapError::InitialAboveMaximum {
                    initial: initial_wasm_pages,
                    maximum,
                });
            }
        }
        Ok(Self {
            size_bytes: u64::from(initial_wasm_pages) * WASM_PAGE_SIZE,
            tlb: Tlb::default(),
            frames: FramePool::default(),
            table: PageTable::default(),
            size_wasm_pages: initial_wasm_pages,
            maximum_wasm_pages,
        })
    }

    /// Current size in wasm pages (the result of `memory.size`).
    #[inline]
    pub fn size_wasm_pages(&self) -> u32 {
        self.size_wasm_pages
    }

    /// Current size in bytes.
    #[inline]
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The declared maximum size in wasm pages, if any.
    pub fn maximum_wasm_pages(&self) -> Option<u32> {
        self.maximum_wasm_pages
    }

    /// Grows the memory by `delta_wasm_pages` with `memory.grow` semantics.
    ///
    /// Returns the old size in wasm pages, or `None` (and changes nothing) if the new
    /// size would exceed the maximum or 65536 wasm pages. `grow(0)` returns the size.
    /// Allocates nothing for the new pages: they read as zeros until written.
    pub fn grow(&mut self, delta_wasm_pages: u32) -> Option<u32> {
        let size_old = self.size_wasm_pages;
        let size_new = size_old.checked_add(delta_wasm_pages)?;
        let size_max = self
            .maximum_wasm_pages
            .unwrap_or(WASM_PAGES_MAX)
            .min(WASM_PAGES_MAX);
        if size_new > size_max {
            return None;
        }
        // No TLB invalidation: growing appends unmapped pages and remaps none, and the
        // TLB caches mapped pages only. The page table grows lazily when a new page is
        // first mapped, so nothing is allocated here.
        self.size_wasm_pages = size_new;
        self.size_bytes = u64::from(size_new) * WASM_PAGE_SIZE;
        Some(size_old)
    }

    /// Number of pages (of [`PAGE_SIZE`]) that have a frame allocated.
    pub fn resident_pages(&self) -> usize {
        self.frames.len()
    }

    /// Loads the `N` bytes at `addr` (little-endian order is the caller's business:
    /// the bytes come back in memory order). `N` is at most 16; the VM uses 1, 2, 4, 8.
    ///
    /// Takes `&mut self` because a TLB miss refills the TLB. Never allocates.
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size.
    #[inline(always)]
    pub fn load<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        // `saturating_add` cannot overflow, and saturates to a value above any size.
        if addr.saturating_add(N as u64) > self.size_bytes {
            return Err(out_of_bounds());
        }
        if let Some(frame) = self.tlb.lookup(page_of(addr)) {
            // `first_chunk` fails exactly when the access straddles into the next page.
            if let Some(bytes) = self.frames.frame(frame)[offset_of(addr)..].first_chunk::<N>() {
                return Ok(*bytes);
            }
        }
        Ok(self.load_slow(addr))
    }

    /// Stores the `N` bytes `bytes` at `addr`, in memory order. `N` is at most 16.
    ///
    /// Allocates a zeroed frame when the page has none and `bytes` is not all zeros.
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size; nothing is written.
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> Result<(), OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        if addr.saturating_add(N as u64) > self.size_bytes {
            return Err(out_of_bounds());
        }
        if let Some(frame) = self.tlb.lookup(page_of(addr)) {
            let frame = self.frames.frame_mut(frame);
            if let Some(target) = frame[offset_of(addr)..].first_chunk_mut::<N>() {
                *target = bytes;
                return Ok(());
            }
        }
        self.store_slow(addr, bytes);
        Ok(())
    }

    /// Copies `buf.len()` bytes starting at `addr` into `buf`. Never allocates.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; `buf` is untouched.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check_range(addr, buf.len() as u64)?;
        self.read_in_bounds(addr, buf);
        Ok(())
    }

    /// Copies `data` into memory starting at `addr`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; nothing is written.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        self.check_range(addr, data.len() as u64)?;
        self.write_in_bounds(addr, data);
        Ok(())
    }

    /// Sets `len` bytes starting at `addr` to `byte` (`memory.fill`). Filling with
    /// zeros allocates nothing.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; nothing is written.
    pub fn fill(&mut self, addr: u64, byte: u8, len: u64) -> Result<(), OutOfBounds> {
        self.check_range(addr, len)?;
        for chunk in PageChunks::new(addr, len) {
            if let Some(frame) = self.frame_for_write(chunk.page, |_| byte == 0) {
                self.frames.frame_mut(frame)[chunk.offset..][..chunk.len].fill(byte);
            }
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` to `dst` (`memory.copy`); overlapping ranges
    /// behave like `memmove`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if either range exceeds the memory size; nothing is written.
    pub fn copy_within(&mut self, dst: u64, src: u64, len: u64) -> Result<(), OutOfBounds> {
        self.check_range(src, len)?;
        self.check_range(dst, len)?;
        if dst == src {
            return Ok(());
        }
        // Copy in pieces that lie within one source and one target page. Copying
        // upwards walks from the end so that no piece overwrites source bytes that a
        // later piece still has to read; copying downwards walks from the start.
        if dst < src {
            let mut done = 0;
            while done < len {
                let (source, target) = (src + done, dst + done);
                let piece = room_above(source).min(room_above(target)).min(len - done);
                self.copy_piece(target, source, piece as usize);
                done += piece;
            }
        } else {
            let mut rest = len;
            while rest > 0 {
                let (source_end, target_end) = (src + rest, dst + rest);
                let piece = room_below(source_end).min(room_below(target_end)).min(rest);
                self.copy_piece(target_end - piece, source_end - piece, piece as usize);
                rest -= piece;
            }
        }
        Ok(())
    }

    /// `Ok` if `[addr, addr + len)` lies within the memory; `len == 0` at the end of
    /// memory is in bounds, any address beyond it is not.
    #[inline]
    fn check_range(&self, addr: u64, len: u64) -> Result<(), OutOfBounds> {
        match addr.checked_add(len) {
            Some(end) if end <= self.size_bytes => Ok(()),
            _ => Err(out_of_bounds()),
        }
    }

    /// Number of heap pages of the current size.
    fn page_count(&self) -> usize {
        (self.size_bytes >> PAGE_SIZE_LOG2) as usize
    }

    /// The fault path of [`Self::load`]: TLB miss or access straddling two pages.
    #[cold]
    #[inline(never)]
    fn load_slow<const N: usize>(&mut self, addr: u64) -> [u8; N] {
        let mut bytes = [0; N];
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            self.read_in_bounds(addr, &mut bytes);
        } else if let Some(frame) = self.table.get(page) {
            // Refill the TLB: `page` is mapped, so the entry stays valid until the page
            // is unmapped. An unmapped page is not cached (it reads as zeros here), so
            // that the first store to it faults and allocates.
            self.tlb.insert(page, frame);
            bytes.copy_from_slice(&self.frames.frame(frame)[offset..][..N]);
        }
        bytes
    }

    /// The fault path of [`Self::store`]: TLB miss, unmapped page or access straddling
    /// two pages.
    #[cold]
    #[inline(never)]
    fn store_slow<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) {
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            self.write_in_bounds(addr, &bytes);
        } else if let Some(frame) = self.frame_for_write(page, |_| is_zero(&bytes)) {
            // Refill the TLB: `page` is mapped now (see `load_slow`).
            self.tlb.insert(page, frame);
            self.frames.frame_mut(frame)[offset..][..N].copy_from_slice(&bytes);
        }
    }

    /// Copies the in-bounds range at `addr` into `buf`, page chunk by page chunk.
    fn read_in_bounds(&self, addr: u64, buf: &mut [u8]) {
        for chunk in PageChunks::new(addr, buf.len() as u64) {
            let target = &mut buf[chunk.done as usize..][..chunk.len];
            match self.table.get(chunk.page) {
                Some(frame) => {
                    target.copy_from_slice(&self.frames.frame(frame)[chunk.offset..][..chunk.len]);
                }
                None => target.fill(0),
            }
        }
    }

    /// Copies `data` into the in-bounds range at `addr`, page chunk by page chunk.
    fn write_in_bounds(&mut self, addr: u64, data: &[u8]) {
        for chunk in PageChunks::new(addr, data.len() as u64) {
            let source = &data[chunk.done as usize..][..chunk.len];
            if let Some(frame) = self.frame_for_write(chunk.page, |_| is_zero(source)) {
                self.frames.frame_mut(frame)[chunk.offset..][..chunk.len].copy_from_slice(source);
            }
        }
    }

    /// Copies `len` bytes from `source` to `target`; neither range crosses a page
    /// boundary, and both are in bounds.
    fn copy_piece(&mut self, target: u64, source: u64, len: usize) {
        let (source_page, source_offset) = (page_of(source), offset_of(source));
        let (target_page, target_offset) = (page_of(target), offset_of(target));
        debug_assert!(source_offset + len <= PAGE_SIZE && target_offset + len <= PAGE_SIZE);
        let Some(source_frame) = self.table.get(source_page) else {
            // The source reads as zeros: zero the target if it has a frame.
            if let Some(target_frame) = self.table.get(target_page) {
                self.frames.frame_mut(target_frame)[target_offset..][..len].fill(0);
            }
            return;
        };
        let source_is_zero =
            |frames: &FramePool| is_zero(&frames.frame(source_frame)[source_offset..][..len]);
        let Some(target_frame) = self.frame_for_write(target_page, source_is_zero) else {
            return;
        };
        if source_frame == target_frame {
            let frame = self.frames.frame_mut(source_frame);
            frame.copy_within(source_offset..source_offset + len, target_offset);
        } else {
            let (source, target) = self.frames.frame_pair_mut(source_frame, target_frame);
            target[target_offset..][..len].copy_from_slice(&source[source_offset..][..len]);
        }
    }

    /// The frame to write into `page`, allocating one if the page is unmapped, unless
    /// `writes_zeros` says the write would store only zeros (which an unmapped page
    /// already reads as). `None` means the write can be skipped.
    fn frame_for_write(
        &mut self,
        page: PageIndex,
        writes_zeros: impl FnOnce(&FramePool) -> bool,
    ) -> Option<FrameIndex> {
        match self.table.get(page) {
            Some(frame) => Some(frame),
            None if writes_zeros(&self.frames) => None,
            None => Some(self.allocate(page)),
        }
    }

    /// Maps the unmapped `page` to a fresh zeroed frame.
    #[cold]
    fn allocate(&mut self, page: PageIndex) -> FrameIndex {
        // No TLB invalidation: the TLB caches mapped pages only, so it cannot hold
        // `page`, and mapping `page` changes no other translation.
        debug_assert_eq!(self.tlb.lookup(page), None, "TLB caches unmapped {page:?}");
        let frame = self.frames.allocate();
        self.table.map(page, frame, self.page_count());
        frame
    }
}

impl std::fmt::Debug for LinearMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearMemory")
            .field("size_wasm_pages", &self.size_wasm_pages)
            .field("maximum_wasm_pages", &self.maximum_wasm_pages)
            .field("resident_pages", &self.resident_pages())
            .field("page_size", &PAGE_SIZE)
            .finish_non_exhaustive()
    }
}

/// The page of the in-bounds address `addr`.
#[inline(always)]
fn page_of(addr: u64) -> PageIndex {
    // In bounds means below 4 GiB, so the page index fits `u32` (asserted in lib.rs).
    PageIndex((addr >> PAGE_SIZE_LOG2) as u32)
}

/// The offset of `addr` within its page.
#[inline(always)]
fn offset_of(addr: u64) -> usize {
    addr as usize & PAGE_MASK
}

/// Bytes from `addr` to the end of its page (1 to `PAGE_SIZE`).
fn room_above(addr: u64) -> u64 {
    (PAGE_SIZE - offset_of(addr)) as u64
}

/// Bytes from the start of the page of the last byte before `end` up to `end`
/// (1 to `PAGE_SIZE`); `end` is at least 1.
fn room_below(end: u64) -> u64 {
    offset_of(end - 1) as u64 + 1
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// The part of an address range that lies within one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    page: PageIndex,
    /// Offset of the chunk within its page.
    offset: usize,
    /// Length of the chunk, 1 to `PAGE_SIZE`.
    len: usize,
    /// Bytes of the range before this chunk.
    done: u64,
}

/// Splits the in-bounds range `[start, end)` into per-page chunks, in order.
#[derive(Debug)]
struct PageChunks {
    start: u64,
    next: u64,
    end: u64,
}

impl PageChunks {
    fn new(addr: u64, len: u64) -> Self {
        Self {
            start: addr,
            next: addr,
            end: addr + len,
        }
    }
}

impl Iterator for PageChunks {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next >= self.end {
            return None;
        }
        let len = room_above(self.next).min(self.end - self.next);
        let chunk = Chunk {
            page: page_of(self.next),
            offset: offset_of(self.next),
            len: len as usize,
            done: self.next - self.start,
        };
        self.next += len;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests;
