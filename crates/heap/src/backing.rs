//! The state of a memory with a backing store: per-frame residency, reference
//! and dirty bits, the eviction policy, the latched storage error and counters.
//!
//! Metadata is kept per *frame*, not per page: a bounded heap then costs a few
//! bytes per frame, whatever its size, and the only per-page state is the page
//! table's 4-byte entry. Whether a non-resident page has a stored version is the
//! page store's business (`PageStore::page_never_written`).

use crate::{frame_pool::FrameIndex, tlb::Tlb, EvictionPolicy, HeapStats, PageStoreError};
use ferrite_core::PageIndex;
use ferrite_pagestore::PageStore;
use std::sync::Arc;

/// What the memory knows about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameState {
    /// The page the frame holds, or [`FrameState::FREE`].
    page: u32,
    /// Used since the eviction sweep last passed (set on the fault path only).
    referenced: bool,
    /// Differs from the page's version in the store.
    dirty: bool,
}

impl FrameState {
    /// Page of a frame that holds none: never a page index (below 2^20).
    const FREE: u32 = u32::MAX;

    const UNUSED: Self = Self {
        page: Self::FREE,
        referenced: false,
        dirty: false,
    };
}

/// The backing store of a memory and what goes with it.
///
/// Invariants (checked by `LinearMemory`'s debug assertions and tests):
/// - `frames[f].page == p` exactly when the page table maps `p` to frame `f`;
/// - `dirty` counts the frames whose state is dirty;
/// - once `error` is set it stays set: the memory is poisoned.
#[derive(Debug)]
pub(crate) struct Backing {
    pub(crate) store: PageStore,
    /// Most frames in use at once; `usize::MAX` when unbounded.
    pub(crate) frames_max: usize,
    bounded: bool,
    pub(crate) policy: EvictionPolicy,
    /// Indexed by `FrameIndex`, as long as the pool has carved frames.
    frames: Vec<FrameState>,
    dirty: usize,
    /// The next frame the CLOCK or FIFO hand looks at.
    hand: usize,
    /// State of the xorshift generator of [`EvictionPolicy::Random`].
    rng: u64,
    /// The first storage error; never cleared (fail-stop).
    pub(crate) error: Option<Arc<PageStoreError>>,
    /// Whether `take_storage_error` handed `error` out already.
    pub(crate) error_taken: bool,
    pub(crate) page_faults: u64,
    pub(crate) zero_fills: u64,
    pub(crate) evictions: u64,
    pub(crate) write_backs: u64,
}

impl Backing {
    pub(crate) fn new(store: PageStore, frames_max: Option<usize>) -> Self {
        Self {
            store,
            frames_max: frames_max.unwrap_or(usize::MAX),
            bounded: frames_max.is_some(),
            policy: EvictionPolicy::default(),
            frames: Vec::new(),
            dirty: 0,
            hand: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            error: None,
            error_taken: false,
            page_faults: 0,
            zero_fills: 0,
            evictions: 0,
            write_backs: 0,
        }
    }

    /// The frame limit as configured.
    pub(crate) fn frames_max(&self) -> Option<usize> {
        self.bounded.then_some(self.frames_max)
    }

    fn state(&mut self, frame: FrameIndex) -> &mut FrameState {
        let index = frame.as_usize();
        if index >= self.frames.len() {
            self.frames.resize(index + 1, FrameState::UNUSED);
        }
        &mut self.frames[index]
    }

    /// Records that `frame` now holds `page`, dirty or not, and was just used.
    pub(crate) fn map(&mut self, frame: FrameIndex, page: PageIndex, dirty: bool) {
        let state = self.state(frame);
        assert_eq!(state.page, FrameState::FREE, "{frame:?} is in use");
        *state = FrameState {
            page: page.0,
            referenced: true,
            dirty,
        };
        self.dirty += usize::from(dirty);
    }

    /// Records that `frame` holds no page any more.
    pub(crate) fn unmap(&mut self, frame: FrameIndex) {
        let state = std::mem::replace(self.state(frame), FrameState::UNUSED);
        assert_ne!(state.page, FrameState::FREE, "{frame:?} is not in use");
        self.dirty -= usize::from(state.dirty);
    }

    /// The page `frame` holds.
    pub(crate) fn page(&self, frame: FrameIndex) -> PageIndex {
        let page = self.frames[frame.as_usize()].page;
        assert_ne!(page, FrameState::FREE, "{frame:?} is not in use");
        PageIndex(page)
    }

    /// Records a use of the resident `frame`: referenced, and dirty if `write`.
    #[inline]
    pub(crate) fn touch(&mut self, frame: FrameIndex, write: bool) {
        let state = &mut self.frames[frame.as_usize()];
        state.referenced = true;
        if write && !state.dirty {
            state.dirty = true;
            self.dirty += 1;
        }
    }

    pub(crate) fn is_dirty(&self, frame: FrameIndex) -> bool {
        self.frames[frame.as_usize()].dirty
    }

    /// Marks the dirty `frame` clean (its page was written to the store).
    pub(crate) fn clean(&mut self, frame: FrameIndex) {
        let state = &mut self.frames[frame.as_usize()];
        debug_assert!(state.dirty, "{frame:?} is clean already");
        state.dirty = false;
        self.dirty -= 1;
    }

    pub(crate) fn dirty_pages(&self) -> usize {
        self.dirty
    }

    /// The dirty frames and their pages, in ascending page order (deterministic,
    /// and pages near each other end up near each other in the store).
    pub(crate) fn dirty_frames(&self) -> Vec<(PageIndex, FrameIndex)> {
        let mut dirty: Vec<_> = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, state)| state.dirty)
            .map(|(frame, state)| (PageIndex(state.page), FrameIndex(frame as u32)))
            .collect();
        dirty.sort_unstable();
        dirty
    }

    /// The frame to evict next under the policy. The caller guarantees that some
    /// frame is in use. May drop pages from `tlb` (CLOCK clears their use).
    pub(crate) fn choose_victim(&mut self, tlb: &mut Tlb) -> FrameIndex {
        let count = self.frames.len();
        assert!(
            self.frames
                .iter()
                .any(|state| state.page != FrameState::FREE),
            "no frame to evict"
        );
        match self.policy {
            EvictionPolicy::Clock => self.sweep(count, Some(tlb)),
            EvictionPolicy::ClockWithoutTlb => self.sweep(count, None),
            EvictionPolicy::Fifo => self.next_in_use(count, |_| false),
            EvictionPolicy::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                self.hand = (self.rng % count as u64) as usize;
                self.next_in_use(count, |_| false)
            }
        }
    }

    /// CLOCK: the first frame from the hand on that is neither referenced nor,
    /// when `tlb` is given, cached in it; frames passed over lose both. Ends
    /// within two turns: after one every frame is unreferenced and uncached.
    fn sweep(&mut self, count: usize, mut tlb: Option<&mut Tlb>) -> FrameIndex {
        self.next_in_use(count, |state| {
            let page = PageIndex(state.page);
            let cached = tlb.as_ref().is_some_and(|tlb| tlb.contains(page));
            if !state.referenced && !cached {
                return false;
            }
            state.referenced = false;
            if let Some(tlb) = tlb.as_mut() {
                // A TLB hit sets no reference bit: clear the page's use by dropping
                // it from the TLB, so that its next access faults and sets the bit.
                tlb.evict(page);
            }
            true
        })
    }

    /// Advances the hand to the first frame in use that `skip` (which may update
    /// the frame's state) does not pass over, returns it and moves the hand past.
    fn next_in_use(
        &mut self,
        count: usize,
        mut skip: impl FnMut(&mut FrameState) -> bool,
    ) -> FrameIndex {
        // Two turns suffice for CLOCK and one for the others; more is a bug.
        for _ in 0..=2 * count {
            let frame = self.hand % count;
            self.hand = (frame + 1) % count;
            let state = &mut self.frames[frame];
            if state.page != FrameState::FREE && !skip(state) {
                return FrameIndex(frame as u32);
            }
        }
        unreachable!("the eviction sweep found no victim in two turns")
    }

    /// The counters, with the residency figures the caller knows.
    pub(crate) fn stats(&self, resident_pages: usize) -> HeapStats {
        HeapStats {
            page_faults: self.page_faults,
            zero_fills: self.zero_fills,
            evictions: self.evictions,
            write_backs: self.write_backs,
            resident_pages,
            dirty_pages: self.dirty,
            frames_max: self.frames_max(),
        }
    }
}
