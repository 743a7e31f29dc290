//! A [`LinearMemory`] with a page store: attaching and detaching the store,
//! fault-in, eviction, dirty tracking and write-back, and the fault and bulk
//! paths that go with them.
//!
//! Everything here runs off the hit path: loads and stores that hit the TLB never
//! get here, and the plain (unbacked) paths test `backing.is_some()` only once
//! they are already slow.
//!
//! Bulk operations work one page chunk at a time and never hold a frame across a
//! fault: `copy_within` reads each piece of the source into a buffer before it
//! faults the target in. So a pool of one frame is enough for every operation,
//! and no frame needs pinning.

use super::{offset_of, page_of, room_above, room_below, LinearMemory, PageChunks};
use crate::{
    backing::Backing,
    frame_pool::{FrameIndex, Span},
    out_of_bounds, EvictionPolicy, HeapError, OutOfBounds, PageStore, PageStoreError, PAGE_SIZE,
};
use ferrite_core::PageIndex;
use std::sync::Arc;

/// What a fault is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reading: a page the store never held reads as zeros and gets no frame.
    Read,
    /// Writing part of the page: its stored contents are read first.
    Write,
    /// Writing every byte of the page: its stored contents are not read.
    Overwrite,
}

/// Bytes of the buffer `copy_within` moves each piece through.
const COPY_PIECE_BYTES: usize = if PAGE_SIZE < 4096 { PAGE_SIZE } else { 4096 };

impl LinearMemory {
    /// Makes `store` the backing store of this memory, holding at most
    /// `frames_max` pages resident (the physical heap divided by [`PAGE_SIZE`];
    /// `None`: no limit, but still backed).
    ///
    /// Pages resident now (data segments of a fresh instance) count as dirty: the
    /// store does not hold them yet. If they exceed the limit, pages are evicted
    /// (written back) down to it. A memory attached right after
    /// `instantiate_for_restore` has no resident pages: every page faults in
    /// lazily from the store, and pages the store never held read as zeros
    /// without I/O.
    ///
    /// # Errors
    /// [`HeapError::StoreAttached`] if the memory has a store already,
    /// [`HeapError::PageSizeMismatch`] if `store` pages are not [`PAGE_SIZE`]
    /// bytes, [`HeapError::FramesMaxZero`] for a limit of zero (nothing changes
    /// in these cases), and [`HeapError::Storage`] if a write-back fails (the
    /// store stays attached and the memory is poisoned).
    pub fn attach_store(
        &mut self,
        store: PageStore,
        frames_max: Option<usize>,
    ) -> Result<(), HeapError> {
        if self.backing.is_some() {
            return Err(HeapError::StoreAttached);
        }
        if store.page_size() != PAGE_SIZE {
            return Err(HeapError::PageSizeMismatch {
                page_size: store.page_size(),
            });
        }
        if frames_max == Some(0) {
            return Err(HeapError::FramesMaxZero);
        }
        let mut store = store;
        store.fit_chunks_to_frames(frames_max);
        let mut backing = Backing::new(store, frames_max);
        for (page, frame) in self.table.mapped() {
            backing.map(frame, page, true);
        }
        self.backing = Some(Box::new(backing));
        // The cached translations stay valid (every resident page is dirty, so its
        // store tag may stay), but start from a clean slate: cheap, and it keeps
        // the store-tag invariant independent of what happened before.
        self.tlb.flush();
        while self.frames.len() > self.backing().frames_max {
            let frame = self.choose_victim();
            self.evict(frame).map_err(|_| self.storage_heap_error())?;
            self.frames.release(frame);
        }
        Ok(())
    }

    /// Removes the backing store and returns it; the memory is a plain in-memory
    /// heap again. Every page the store holds and that is not resident is
    /// faulted in first (without a frame limit), so the contents are kept; dirty
    /// pages are not written back (call [`Self::write_back_dirty`] before, if the
    /// store should have them). `Ok(None)` if there was no store.
    ///
    /// # Errors
    /// [`HeapError::Storage`] if a page cannot be read, or the memory was
    /// poisoned already; the store then stays attached.
    pub fn detach_store(&mut self) -> Result<Option<PageStore>, HeapError> {
        let Some(backing) = self.backing.as_deref_mut() else {
            return Ok(None);
        };
        backing.frames_max = usize::MAX;
        for page in 0..self.page_count() as u32 {
            let page = PageIndex(page);
            if self.table.get(page).is_none() {
                self.frame_for(page, Access::Read, || true)
                    .map_err(|_| self.storage_heap_error())?;
            }
        }
        if let Some(error) = &self.backing().error {
            return Err(HeapError::Storage(error.clone()));
        }
        let backing = self.backing.take().expect("checked above");
        // Store tags were set for dirty pages only; without a store every page
        // takes stores without notice, and refills will say so.
        self.tlb.flush();
        Ok(Some(backing.store))
    }

    /// The backing store, if any (the checkpoint layer calls `commit_maps` and
    /// `committed` on it, after [`Self::write_back_dirty`]).
    pub fn store_mut(&mut self) -> Option<&mut PageStore> {
        self.backing
            .as_deref_mut()
            .map(|backing| &mut backing.store)
    }

    /// The backing store, if any.
    pub fn page_store(&self) -> Option<&PageStore> {
        self.backing.as_deref().map(|backing| &backing.store)
    }

    /// The frame limit, if the memory has a store and a limit.
    pub fn frames_max(&self) -> Option<usize> {
        self.backing.as_deref().and_then(Backing::frames_max)
    }

    /// Chooses the eviction policy (no effect without a store). The default,
    /// [`EvictionPolicy::Clock`], is the measured best; the others exist for the
    /// measurement.
    pub fn set_eviction_policy(&mut self, policy: EvictionPolicy) {
        if let Some(backing) = self.backing.as_deref_mut() {
            backing.policy = policy;
        }
    }

    /// Writes every dirty resident page to the store (waiting for the writes
    /// under way) and marks it clean; returns how many were written. A checkpoint calls this before
    /// `PageStore::commit_maps`. Pages stay resident. `Ok(0)` without a store.
    ///
    /// # Errors
    /// [`HeapError::Storage`] if a write fails (the error is latched and the
    /// memory poisoned) or the memory was poisoned already.
    pub fn write_back_dirty(&mut self) -> Result<usize, HeapError> {
        let Some(backing) = self.backing.as_deref_mut() else {
            return Ok(0);
        };
        if let Some(error) = &backing.error {
            return Err(HeapError::Storage(error.clone()));
        }
        // The pages become clean: the next store to each must miss and mark it
        // dirty again. Cleared first, so that no store tag survives even if a
        // write below fails (which flushes the TLB anyway).
        self.tlb.clear_store_tags();
        let dirty = backing.dirty_frames();
        for &(page, frame) in &dirty {
            let backing = self.backing.as_deref_mut().expect("checked above");
            if let Err(error) = backing.store.write_page(page.0, self.frames.frame(frame)) {
                self.latch(error);
                return Err(self.storage_heap_error());
            }
            backing.clean(frame);
            backing.write_backs += 1;
        }
        // Segments are put while pages are written: their failures, too,
        // belong to this write-back.
        let backing = self.backing.as_deref_mut().expect("checked above");
        if let Err(error) = backing.store.finish_writes() {
            self.latch(error);
            return Err(self.storage_heap_error());
        }
        Ok(dirty.len())
    }

    /// Faults in the given pages (those below the memory size, not resident and
    /// held by the store) while free frames last, without evicting anything;
    /// returns how many were read. Best effort: a storage error stops it (and is
    /// latched, as for any fault). Does nothing without a store.
    pub fn prefetch(&mut self, pages: &[u32]) -> usize {
        let mut fetched = 0;
        for &page in pages {
            let Some(backing) = self.backing.as_deref() else {
                break;
            };
            if backing.error.is_some() || self.frames.len() >= backing.frames_max {
                break;
            }
            let page = PageIndex(page);
            if page.as_usize() >= self.page_count() || self.table.get(page).is_some() {
                continue;
            }
            if let Ok(Some(_)) = self.frame_for(page, Access::Read, || true) {
                fetched += 1;
            }
        }
        fetched
    }

    /// The storage error that poisoned this memory, if any. Once set, every fault
    /// fails (the access returns [`OutOfBounds`]; a VM should report this error
    /// instead of an out-of-bounds trap).
    pub fn storage_error(&self) -> Option<&PageStoreError> {
        self.backing.as_deref()?.error.as_deref()
    }

    /// The storage error, the first time it is asked for; `None` after that (or if
    /// there is none). The memory stays poisoned.
    pub fn take_storage_error(&mut self) -> Option<Arc<PageStoreError>> {
        let backing = self.backing.as_deref_mut()?;
        if backing.error_taken {
            return None;
        }
        backing.error_taken = true;
        backing.error.clone()
    }

    fn backing(&self) -> &Backing {
        self.backing.as_deref().expect("a memory with a store")
    }

    fn backing_mut(&mut self) -> &mut Backing {
        self.backing.as_deref_mut().expect("a memory with a store")
    }

    /// The latched error as a [`HeapError`].
    fn storage_heap_error(&self) -> HeapError {
        HeapError::Storage(self.backing().error.clone().expect("a latched error"))
    }

    /// Latches the first storage error and poisons the memory: the TLB is flushed
    /// so that every access takes the fault path, which fails from now on.
    #[cold]
    #[inline(never)]
    fn latch(&mut self, error: PageStoreError) -> OutOfBounds {
        let backing = self.backing_mut();
        if backing.error.is_none() {
            backing.error = Some(Arc::new(error));
        }
        self.tlb.flush();
        out_of_bounds()
    }

    /// The resident frame of the in-bounds `page` for `access`, faulting the page
    /// in (and evicting another) if needed. `None` if the page needs no frame: a
    /// read of a page the store never held, or a write that `writes_zeros` says
    /// stores only zeros into one.
    fn frame_for(
        &mut self,
        page: PageIndex,
        access: Access,
        writes_zeros: impl FnOnce() -> bool,
    ) -> Result<Option<FrameIndex>, OutOfBounds> {
        let backing = self.backing.as_deref_mut().expect("a memory with a store");
        if backing.error.is_some() {
            return Err(out_of_bounds());
        }
        if let Some(frame) = self.table.get(page) {
            backing.touch(frame, access != Access::Read);
            return Ok(Some(frame));
        }
        let never_written = backing.store.page_never_written(page.0);
        if never_written && (access == Access::Read || writes_zeros()) {
            return Ok(None);
        }
        let (frame, zeroed) = self.take_frame()?;
        let read = !never_written && access != Access::Overwrite;
        let backing = self.backing.as_deref_mut().expect("a memory with a store");
        if read {
            match backing
                .store
                .read_page(page.0, self.frames.frame_mut(frame))
            {
                Ok(true) => backing.page_faults += 1,
                Ok(false) if access == Access::Read => {
                    // Never written after all (its map chunk had to be loaded to
                    // know): reads as zeros without a frame.
                    self.frames.release(frame);
                    return Ok(None);
                }
                Ok(false) => backing.zero_fills += 1,
                Err(error) => {
                    self.frames.release(frame);
                    return Err(self.latch(error));
                }
            }
        } else if never_written && access != Access::Overwrite {
            if !zeroed {
                self.frames.frame_mut(frame).fill(0);
            }
            backing.zero_fills += 1;
        }
        // An `Overwrite` leaves the frame as it was: the caller writes every byte
        // of it before anything can read it.
        self.table.map(page, frame, self.page_count());
        let backing = self.backing.as_deref_mut().expect("a memory with a store");
        backing.map(frame, page, access != Access::Read);
        Ok(Some(frame))
    }

    /// A frame for a page about to be faulted in: a new (zeroed) one while the
    /// pool is below its limit, else the frame of an evicted page (holding that
    /// page's bytes). Returns the frame and whether it is zeroed.
    fn take_frame(&mut self) -> Result<(FrameIndex, bool), OutOfBounds> {
        if self.frames.len() < self.backing().frames_max {
            return Ok((self.frames.allocate(), true));
        }
        let frame = self.choose_victim();
        self.evict(frame)?;
        Ok((frame, false))
    }

    /// The frame to evict next, under the memory's policy.
    fn choose_victim(&mut self) -> FrameIndex {
        let backing = self.backing.as_deref_mut().expect("a memory with a store");
        backing.choose_victim(&mut self.tlb)
    }

    /// Evicts the page held by `frame`: writes it back if dirty, then drops its
    /// translation and unmaps it. The frame stays allocated for the caller to
    /// reuse or release. On a failed write-back the page stays resident and dirty.
    fn evict(&mut self, frame: FrameIndex) -> Result<(), OutOfBounds> {
        let backing = self.backing.as_deref_mut().expect("a memory with a store");
        let page = backing.page(frame);
        if backing.is_dirty(frame) {
            if let Err(error) = backing.store.write_page(page.0, self.frames.frame(frame)) {
                return Err(self.latch(error));
            }
            backing.write_backs += 1;
        }
        backing.unmap(frame);
        backing.evictions += 1;
        // Invalidate before the frame is reused: a TLB hit on `page` would
        // otherwise reach the next page's data.
        self.tlb.evict(page);
        let unmapped = self.table.unmap(page);
        debug_assert_eq!(unmapped, frame, "frame state and page table disagree");
        Ok(())
    }

    /// The fault path of a load from a memory with a store (bounds checked).
    pub(super) fn load_backed<const N: usize>(
        &mut self,
        addr: u64,
    ) -> Result<[u8; N], OutOfBounds> {
        let mut bytes = [0; N];
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            self.read_backed(addr, &mut bytes)?;
            return Ok(bytes);
        }
        let Some(frame) = self.frame_for(page, Access::Read, || true)? else {
            return Ok(bytes);
        };
        // Refill the TLB; for stores too only if the page is dirty already.
        let writable = self.backing().is_dirty(frame);
        self.tlb
            .insert(page, self.frames.frame_ptr(frame), writable);
        Ok(self.tlb.load(addr).expect("a refilled TLB entry hits"))
    }

    /// The fault path of a store to a memory with a store (bounds checked): also
    /// where a clean page becomes dirty.
    pub(super) fn store_backed<const N: usize>(
        &mut self,
        addr: u64,
        bytes: [u8; N],
    ) -> Result<(), OutOfBounds> {
        let (page, offset) = (page_of(addr), offset_of(addr));
        if offset + N > PAGE_SIZE {
            return self.write_backed(addr, &bytes);
        }
        if let Some(frame) = self.frame_for(page, Access::Write, || super::is_zero(&bytes))? {
            // The page is dirty now, so stores may hit it until it is cleaned.
            self.tlb.insert(page, self.frames.frame_ptr(frame), true);
            let stored = self.tlb.store(addr, bytes);
            debug_assert!(stored, "a refilled TLB entry hits");
        }
        Ok(())
    }

    /// [`Self::read`] with a store, page chunk by page chunk (bounds checked).
    pub(super) fn read_backed(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        for chunk in PageChunks::new(addr, buf.len() as u64) {
            let target = &mut buf[chunk.done as usize..][..chunk.len];
            match self.frame_for(chunk.page, Access::Read, || true)? {
                Some(frame) => {
                    target.copy_from_slice(&self.frames.frame(frame)[chunk.offset..][..chunk.len]);
                }
                None => target.fill(0),
            }
        }
        Ok(())
    }

    /// [`Self::write`] with a store, page chunk by page chunk (bounds checked).
    pub(super) fn write_backed(&mut self, addr: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        for chunk in PageChunks::new(addr, data.len() as u64) {
            let source = &data[chunk.done as usize..][..chunk.len];
            let access = chunk_access(chunk.len);
            if let Some(frame) = self.frame_for(chunk.page, access, || super::is_zero(source))? {
                self.frames.frame_mut(frame)[chunk.offset..][..chunk.len].copy_from_slice(source);
            }
        }
        Ok(())
    }

    /// [`Self::fill`] with a store, page chunk by page chunk (bounds checked).
    pub(super) fn fill_backed(&mut self, addr: u64, byte: u8, len: u64) -> Result<(), OutOfBounds> {
        for chunk in PageChunks::new(addr, len) {
            let access = chunk_access(chunk.len);
            if let Some(frame) = self.frame_for(chunk.page, access, || byte == 0)? {
                self.frames.frame_mut(frame)[chunk.offset..][..chunk.len].fill(byte);
            }
        }
        Ok(())
    }

    /// Faults in every non-resident page of `[dst, dst + len)` for writing, in
    /// ascending order, if the physical heap has a free frame for each (never
    /// evicting). Pages that end up not written keep their zeros.
    pub(super) fn fault_in_copy_targets(&mut self, dst: u64, len: u64) -> Result<(), OutOfBounds> {
        let (first, last) = (page_of(dst).0, page_of(dst + len - 1).0);
        let missing = (first..=last)
            .filter(|&page| self.table.get(PageIndex(page)).is_none())
            .count();
        let free = self.backing().frames_max.saturating_sub(self.frames.len());
        if missing == 0 || missing > free {
            return Ok(());
        }
        for page in first..=last {
            if self.table.get(PageIndex(page)).is_none() {
                self.frame_for(PageIndex(page), Access::Write, || false)?;
            }
        }
        Ok(())
    }

    /// [`Self::copy_within`] with a store (bounds checked, `len > 0`): in pieces
    /// within one source page and one target page, each read into a buffer
    /// before the target is faulted in, so that the target's fault may evict the
    /// source. Copying upwards walks from the end, so that no piece overwrites
    /// source bytes a later piece still reads; downwards from the start.
    pub(super) fn copy_backed(&mut self, dst: u64, src: u64, len: u64) -> Result<(), OutOfBounds> {
        let mut buffer = [0; COPY_PIECE_BYTES];
        let mut done = 0;
        while done < len {
            let rest = len - done;
            let (source, target, piece) = if dst < src {
                let piece = rest
                    .min(room_above(src + done))
                    .min(room_above(dst + done))
                    .min(COPY_PIECE_BYTES as u64);
                (src + done, dst + done, piece)
            } else {
                let piece = rest
                    .min(room_below(src + rest))
                    .min(room_below(dst + rest))
                    .min(COPY_PIECE_BYTES as u64);
                (src + rest - piece, dst + rest - piece, piece)
            };
            done += piece;
            let (from, to) = (
                self.table.get(page_of(source)),
                self.table.get(page_of(target)),
            );
            // Zeros onto a page that reads as zeros: nothing to do.
            if from.is_none() && to.is_none() {
                let backing = self.backing.as_deref().expect("a memory with a store");
                if backing.error.is_none()
                    && backing.store.page_never_written(page_of(source).0)
                    && backing.store.page_never_written(page_of(target).0)
                {
                    continue;
                }
            }
            // Both pages resident (the common case when the working set fits):
            // one `memmove` between their frames, no buffer.
            if let (Some(from), Some(to)) = (from, to) {
                let backing = self.backing.as_deref_mut().expect("a memory with a store");
                if backing.error.is_none() {
                    backing.touch(from, false);
                    backing.touch(to, true);
                    let span = |frame, addr| Span {
                        frame,
                        offset: offset_of(addr),
                        len: piece as usize,
                    };
                    self.frames.copy(span(from, source), span(to, target));
                    continue;
                }
            }
            let buffer = &mut buffer[..piece as usize];
            self.read_backed(source, buffer)?;
            self.write_backed(target, buffer)?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl LinearMemory {
    /// Asserts the paging invariants (tests call it after every operation).
    pub(super) fn check_paging_invariants(&self) {
        let Some(backing) = self.backing.as_deref() else {
            return;
        };
        let mapped: Vec<_> = self.table.mapped().collect();
        assert_eq!(
            mapped.len(),
            self.frames.len(),
            "page table and pool disagree"
        );
        assert!(
            self.frames.len() <= backing.frames_max,
            "frame limit exceeded"
        );
        let mut dirty = 0;
        for (page, frame) in mapped {
            assert_eq!(
                backing.page(frame),
                page,
                "frame state and page table disagree"
            );
            if backing.is_dirty(frame) {
                dirty += 1;
            } else {
                assert!(
                    !self.tlb.contains_for_store(page),
                    "clean {page:?} takes stores"
                );
            }
        }
        assert_eq!(dirty, backing.dirty_pages(), "dirty count");
    }
}

/// How a bulk operation faults in a page it writes `len` bytes of.
fn chunk_access(len: usize) -> Access {
    if len == PAGE_SIZE {
        Access::Overwrite
    } else {
        Access::Write
    }
}
