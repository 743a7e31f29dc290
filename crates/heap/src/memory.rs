//! [`LinearMemory`]: the page table, frame pool and TLB composed into a wasm memory.

use crate::{
    backing::Backing,
    frame_pool::{FrameIndex, FramePool, Span},
    out_of_bounds,
    page_table::PageTable,
    tlb::Tlb,
    HeapError, HeapStats, OutOfBounds, PAGE_MASK, PAGE_SIZE, PAGE_SIZE_LOG2,
};
use ferrite_core::{PageIndex, WASM_PAGES_MAX, WASM_PAGE_SIZE};

mod backed;

/// A WebAssembly linear memory backed by lazily allocated pages.
///
/// Addresses are `u64` byte addresses: the VM adds a 32-bit pointer and a 32-bit
/// offset without overflow, so addresses up to about 2^33 reach here and are checked.
/// Every access is bounds-checked as a whole before it has any effect.
///
/// Without a page store, every page that was written keeps its frame (is
/// *resident*) for the life of the memory. With one ([`Self::attach_store`]), the
/// memory is a cache of the store's pages holding at most `frames_max` frames: a
/// non-resident page faults in from the store (or as zeros if the store never
/// held it), and a full pool evicts a page, writing it back first if it is dirty.
///
/// Invariants:
/// - `size_bytes == size_wasm_pages * WASM_PAGE_SIZE <= 4 GiB`;
/// - every page with a frame lies below `size_bytes` (memories never shrink);
/// - every TLB entry agrees with the page table (see `Tlb`), so a TLB hit is in
///   bounds: the hot path checks nothing else. **Unmapping or remapping a page, or
///   freeing or reusing a frame, must evict the page from the TLB first**
///   (`Tlb::evict`, [`Self::flush_tlb`]);
/// - with a store, the TLB's store tag is set only for dirty pages, so a store hit
///   never needs to mark anything; **marking pages clean must clear the store
///   tags** (`Tlb::clear_store_tags`);
/// - with a frame limit, at most `frames_max` frames are in use after every
///   operation.
pub struct LinearMemory {
    /// The hot path of every access indexes it (an interpreter keeps a pointer to
    /// the memory in a register and reaches the TLB at a fixed offset).
    tlb: Tlb,
    /// Current size in bytes; read on the fault path and by bulk operations.
    size_bytes: u64,
    frames: FramePool,
    table: PageTable,
    size_wasm_pages: u32,
    maximum_wasm_pages: Option<u32>,
    /// The page store and paging state; `None` for a plain in-memory heap, which
    /// takes the original run-by-run paths (checked on cold paths only).
    backing: Option<Box<Backing>>,
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
            backing: None,
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

    /// Number of pages (of [`PAGE_SIZE`]) that have a frame (are resident).
    pub fn resident_pages(&self) -> usize {
        self.frames.len()
    }

    /// The resident pages, in ascending order (for a prefetch record; see
    /// [`Self::prefetch`]).
    pub fn resident_page_list(&self) -> Vec<u32> {
        self.table.mapped().map(|(page, _)| page.0).collect()
    }

    /// Number of resident pages that differ from the store: those
    /// [`Self::write_back_dirty`] would write. Without a store, every resident page.
    pub fn dirty_pages(&self) -> usize {
        match &self.backing {
            Some(backing) => backing.dirty_pages(),
            None => self.frames.len(),
        }
    }

    /// Paging counters and residency, for `--stats` (counters stay zero without a
    /// store).
    pub fn stats(&self) -> HeapStats {
        match &self.backing {
            Some(backing) => backing.stats(self.frames.len()),
            None => HeapStats {
                resident_pages: self.frames.len(),
                dirty_pages: self.frames.len(),
                ..HeapStats::default()
            },
        }
    }

    /// Loads the `N` bytes at `addr` (little-endian order is the caller's business:
    /// the bytes come back in memory order). `N` is at most 16; the VM uses 1, 2, 4, 8.
    ///
    /// The hit path is the TLB's tag compare alone: the TLB caches only mapped pages
    /// below the memory size, so a hit needs no bounds check. Takes `&mut self`
    /// because a TLB miss refills the TLB. Without a store, never allocates; with
    /// one, a miss may fault the page in (and evict another).
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size, or after a storage
    /// error (see [`Self::storage_error`]).
    #[inline(always)]
    pub fn load<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        match self.tlb.load::<N>(addr) {
            Some(bytes) => Ok(bytes),
            None => self.load_slow(addr),
        }
    }

    /// Stores the `N` bytes `bytes` at `addr`, in memory order. `N` is at most 16.
    ///
    /// Allocates a zeroed frame when the page has none and `bytes` is not all zeros.
    /// The hit path is one tag compare, as for loads: with a page store, the TLB
    /// caches only dirty pages for stores, so a hit needs no dirty marking.
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size; nothing is written.
    /// Also after a storage error (see [`Self::storage_error`]).
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> Result<(), OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        if self.tlb.store(addr, bytes) {
            return Ok(());
        }
        self.store_slow(addr, bytes)
    }

    /// The hit path of [`Self::load`] alone: the bytes if the TLB maps them, `None`
    /// on a miss (out of bounds, unmapped, not cached or straddling pages), when
    /// the caller falls back to [`Self::load`]. Lets an interpreter keep the miss
    /// out of line.
    #[inline(always)]
    pub fn load_cached<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        self.tlb.load::<N>(addr)
    }

    /// The hit path of [`Self::store`] alone: true if the TLB mapped the bytes and
    /// they are stored, false on a miss, when the caller falls back to
    /// [`Self::store`] (nothing was written).
    #[inline(always)]
    pub fn store_cached<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> bool {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        self.tlb.store(addr, bytes)
    }

    /// [`Self::load`] after a miss of [`Self::load_cached`]: the fault path alone,
    /// so that an interpreter's out-of-line miss path does not look in the TLB
    /// again.
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size.
    #[inline]
    pub fn load_uncached<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        self.load_slow(addr)
    }

    /// [`Self::store`] after a miss of [`Self::store_cached`] (see
    /// [`Self::load_uncached`]).
    ///
    /// # Errors
    /// [`OutOfBounds`] if `addr + N` exceeds the memory size; nothing is written.
    #[inline]
    pub fn store_uncached<const N: usize>(
        &mut self,
        addr: u64,
        bytes: [u8; N],
    ) -> Result<(), OutOfBounds> {
        const { assert!(N >= 1 && N <= 16, "accesses are 1 to 16 bytes") };
        self.store_slow(addr, bytes)
    }

    /// Forgets every cached translation.
    ///
    /// The memory itself evicts single entries before it unmaps a page or reuses
    /// a frame (eviction) and clears store tags when it marks pages clean, so
    /// callers need this only to drop translations wholesale. **Any new code that
    /// unmaps or remaps a page, or frees or reuses a frame, must evict the page's
    /// entry or call this first**: a hit would otherwise read or write a stale or
    /// reused frame.
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// Copies `buf.len()` bytes starting at `addr` into `buf`. Without a store,
    /// never allocates; with one, faults pages in one at a time.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; `buf` is untouched.
    /// Also after a storage error (see [`Self::storage_error`]), which may leave
    /// `buf` partly written.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check_range(addr, buf.len() as u64)?;
        if self.backing.is_some() {
            return self.read_backed(addr, buf);
        }
        self.read_in_bounds(addr, buf);
        Ok(())
    }

    /// Copies `data` into memory starting at `addr`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; nothing is written.
    /// Also after a storage error (see [`Self::storage_error`]), which may leave
    /// the range partly written; the memory is poisoned then, so no access sees it.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        self.check_range(addr, data.len() as u64)?;
        if self.backing.is_some() {
            return self.write_backed(addr, data);
        }
        self.write_in_bounds(addr, data);
        Ok(())
    }

    /// Sets `len` bytes starting at `addr` to `byte` (`memory.fill`). Filling with
    /// zeros allocates nothing.
    ///
    /// Works run by run: pages mapped to adjacent frames are filled with one host
    /// `memset` (see `FramePool`). With a store, works page by page, faulting in
    /// only pages that are partly filled.
    ///
    /// # Errors
    /// [`OutOfBounds`] if the range exceeds the memory size; nothing is written.
    /// Also after a storage error, as [`Self::write`].
    pub fn fill(&mut self, addr: u64, byte: u8, len: u64) -> Result<(), OutOfBounds> {
        self.check_range(addr, len)?;
        if self.backing.is_some() {
            return self.fill_backed(addr, byte, len);
        }
        if byte != 0 {
            // Map the unmapped pages first, in ascending order, so that they get
            // adjacent frames and the fill below runs over them at once.
            for chunk in PageChunks::new(addr, len) {
                if self.table.get(chunk.page).is_none() {
                    self.allocate(chunk.page);
                }
            }
        }
        let mut done = 0;
        while done < len {
            let (target, piece) = self.run_above(addr + done, len - done);
            // An unmapped page is left alone: it already reads as the zeros written.
            if let Some(target) = target {
                self.frames.fill(target.span(piece), byte);
            }
            done += piece;
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` to `dst` (`memory.copy`); overlapping ranges
    /// behave like `memmove`.
    ///
    /// Works run by run: a piece that lies in pages mapped to adjacent frames on
    /// both sides is one host `memmove`. Target pages are mapped first, in
    /// ascending order, so that the pages a copy creates get adjacent frames.
    /// With a store, copies in pieces within one source and one target page
    /// through a buffer, so that a pool of a single frame suffices.
    ///
    /// # Errors
    /// [`OutOfBounds`] if either range exceeds the memory size; nothing is written.
    /// Also after a storage error, as [`Self::write`].
    pub fn copy_within(&mut self, dst: u64, src: u64, len: u64) -> Result<(), OutOfBounds> {
        self.check_range(src, len)?;
        self.check_range(dst, len)?;
        if dst == src || len == 0 {
            return Ok(());
        }
        if self.backing.is_some() && !self.resident_for_copy(dst, src, len) {
            // Fault the target pages in ascending order while there is room, so
            // that they get adjacent frames and later copies run frame run by
            // frame run; else copy page by page.
            self.fault_in_copy_targets(dst, len)?;
            if !self.resident_for_copy(dst, src, len) {
                return self.copy_backed(dst, src, len);
            }
        }
        self.map_copy_targets(dst, src, len);
        self.copy_runs(dst, src, len);
        Ok(())
    }

    /// With a store: whether every page of both ranges is resident (and the
    /// store has not failed), in which case they are touched (the target pages
    /// marked dirty) and the copy can run frame run by frame run as without a
    /// store. The common case when the working set fits the physical heap.
    fn resident_for_copy(&mut self, dst: u64, src: u64, len: u64) -> bool {
        let pages = |addr: u64| {
            let first = page_of(addr);
            (first, (page_of(addr + len - 1).0 - first.0) as usize + 1)
        };
        let ((source, sources), (target, targets)) = (pages(src), pages(dst));
        if !self.table.all_mapped(source, sources) || !self.table.all_mapped(target, targets) {
            return false;
        }
        let Some(backing) = self.backing.as_deref_mut() else {
            return false;
        };
        if backing.error.is_some() {
            return false;
        }
        for (first, count, write) in [(source, sources, false), (target, targets, true)] {
            for page in first.0..first.0 + count as u32 {
                let frame = self.table.get(PageIndex(page)).expect("checked mapped");
                backing.touch(frame, write);
            }
        }
        true
    }

    /// The copy of [`Self::copy_within`] once every target page that receives a
    /// non-zero byte is mapped.
    fn copy_runs(&mut self, dst: u64, src: u64, len: u64) {
        // Copy in pieces that lie within one source and one target run. Copying
        // upwards walks from the end so that no piece overwrites source bytes that a
        // later piece still has to read; copying downwards walks from the start.
        if dst < src {
            let mut done = 0;
            while done < len {
                let (source, piece) = self.run_above(src + done, len - done);
                let (target, piece) = self.run_above(dst + done, piece);
                self.copy_run(source, target, piece);
                done += piece;
            }
        } else {
            let mut rest = len;
            while rest > 0 {
                let (_, piece) = self.run_below(src + rest, rest);
                let (target, piece) = self.run_below(dst + rest, piece);
                let (source, _) = self.run_below(src + rest, piece);
                self.copy_run(source, target, piece);
                rest -= piece;
            }
        }
    }

    /// Maps every unmapped page of the target range `[dst, dst + len)` that the copy
    /// from `src` will write a non-zero byte to (judged on the source as it is
    /// before the copy, which is what `memmove` semantics copy), in ascending page
    /// order. A target page left unmapped receives only zeros, which it reads as.
    fn map_copy_targets(&mut self, dst: u64, src: u64, len: u64) {
        let (first, last) = (page_of(dst), page_of(dst + len - 1));
        if self
            .table
            .all_mapped(first, (last.0 - first.0) as usize + 1)
        {
            return;
        }
        for chunk in PageChunks::new(dst, len) {
            if self.table.get(chunk.page).is_some() {
                continue;
            }
            let source = src + chunk.done;
            let mut checked = 0;
            let mut zeros = true;
            while zeros && checked < chunk.len as u64 {
                let (run, piece) = self.run_above(source + checked, chunk.len as u64 - checked);
                zeros = run.is_none_or(|run| self.frames.is_zero(run.span(piece)));
                checked += piece;
            }
            if !zeros {
                self.allocate(chunk.page);
            }
        }
    }

    /// Copies one piece of a copy: `len` bytes from the `source` run to the `target`
    /// run (either unmapped when `None`).
    fn copy_run(&mut self, source: Option<RunStart>, target: Option<RunStart>, len: u64) {
        match (source, target) {
            (Some(source), Some(target)) => {
                self.frames.copy(source.span(len), target.span(len));
            }
            // The source reads as zeros.
            (None, Some(target)) => self.frames.fill(target.span(len), 0),
            // `map_copy_targets` left the target unmapped: it receives zeros only.
            (_, None) => {}
        }
    }

    /// The run that starts at the in-bounds `addr`: where it starts if its page is
    /// mapped, and how many bytes from `addr` (at most `limit`) it has. A mapped
    /// run goes on while the next page is mapped to the next frame of the same
    /// slab (adjacent in memory); an unmapped one ends with its page.
    fn run_above(&self, addr: u64, limit: u64) -> (Option<RunStart>, u64) {
        let page = page_of(addr);
        let first = room_above(addr);
        let Some(frame) = self.table.get(page) else {
            return (None, first.min(limit));
        };
        let pages = 1 + (limit.saturating_sub(first)).div_ceil(PAGE_SIZE as u64) as usize;
        let pages = pages.min(FramePool::room_above(frame));
        let run = self.table.consecutive_above(page, pages);
        let len = first + (run as u64 - 1) * PAGE_SIZE as u64;
        let start = RunStart {
            frame,
            offset: offset_of(addr),
        };
        (Some(start), len.min(limit))
    }

    /// The run that ends at the in-bounds `end` (exclusive, at least 1), walking
    /// down: as [`Self::run_above`], with the start of its last `len` bytes.
    fn run_below(&self, end: u64, limit: u64) -> (Option<RunStart>, u64) {
        let page = page_of(end - 1);
        let last_bytes = room_below(end);
        let Some(last) = self.table.get(page) else {
            return (None, last_bytes.min(limit));
        };
        let pages = 1 + (limit.saturating_sub(last_bytes)).div_ceil(PAGE_SIZE as u64) as usize;
        let pages = pages.min(FramePool::room_below(last));
        let run = self.table.consecutive_below(page, pages);
        let len = (last_bytes + (run as u64 - 1) * PAGE_SIZE as u64).min(limit);
        let start = end - len;
        // The run's frames are consecutive, one per page.
        let frame = FrameIndex(last.0 - (page.0 - page_of(start).0));
        let start = RunStart {
            frame,
            offset: offset_of(start),
        };
        (Some(start), len)
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

    /// The fault path of [`Self::load`]: out of bounds, TLB miss, unmapped page or
    /// access straddling two pages.
    #[cold]
    #[inline(never)]
    fn load_slow<const N: usize>(&mut self, addr: u64) -> Result<[u8; N], OutOfBounds> {
        // `saturating_add` cannot overflow, and saturates to a value above any size.
        if addr.saturating_add(N as u64) > self.size_bytes {
            return Err(out_of_bounds());
        }
        if self.backing.is_some() {
            return self.load_backed(addr);
        }
        let mut bytes = [0; N];
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            self.read_in_bounds(addr, &mut bytes);
        } else if let Some(frame) = self.table.get(page) {
            // Refill the TLB: `page` is mapped and below the size, so the entry stays
            // valid until the page is unmapped. An unmapped page is not cached (it
            // reads as zeros here), so that the first store to it faults and
            // allocates. Then the access hits.
            // Without a store every resident page takes stores without notice.
            self.tlb.insert(page, self.frames.frame_ptr(frame), true);
            return Ok(self.tlb.load(addr).expect("a refilled TLB entry hits"));
        }
        Ok(bytes)
    }

    /// The fault path of [`Self::store`]: out of bounds, TLB miss, unmapped page or
    /// access straddling two pages.
    #[cold]
    #[inline(never)]
    fn store_slow<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> Result<(), OutOfBounds> {
        if addr.saturating_add(N as u64) > self.size_bytes {
            return Err(out_of_bounds());
        }
        if self.backing.is_some() {
            return self.store_backed(addr, bytes);
        }
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            self.write_in_bounds(addr, &bytes);
        } else if let Some(frame) = self.frame_for_write(page, |_| is_zero(&bytes)) {
            // Refill the TLB: `page` is mapped now (see `load_slow`).
            self.tlb.insert(page, self.frames.frame_ptr(frame), true);
            let stored = self.tlb.store(addr, bytes);
            debug_assert!(stored, "a refilled TLB entry hits");
        }
        Ok(())
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
        debug_assert!(!self.tlb.contains(page), "TLB caches unmapped {page:?}");
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
            .field("backed", &self.backing.is_some())
            .field("frames_max", &self.frames_max())
            .field("poisoned", &self.storage_error().is_some())
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

/// Where a run of adjacent frames starts: a frame and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunStart {
    frame: FrameIndex,
    offset: usize,
}

impl RunStart {
    /// The first `len` bytes of the run (the caller got `len` from the run).
    fn span(self, len: u64) -> Span {
        Span {
            frame: self.frame,
            offset: self.offset,
            len: len as usize,
        }
    }
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
