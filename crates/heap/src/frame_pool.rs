//! The pool of page frames: the host memory that backs resident pages.
//!
//! This is one of the two frame-mapping modules (with `tlb`) allowed to use
//! `unsafe`: frames live in raw allocations (*slabs*) so that the TLB may keep
//! pointers into them and bulk operations may copy across adjacent frames with one
//! `memmove`.
//!
//! Frames are carved from slabs of [`SLAB_FRAMES`] frames, in allocation order, so
//! pages written in ascending order (the common case: initialization, sequential
//! writes, the targets of a bulk copy) get adjacent frames, and a bulk operation
//! over them is one host copy per slab instead of one per page. A slab is
//! allocated zeroed; the host commits its pages only when they are first written,
//! so a slab's frames that are not handed out yet cost address space only.

use crate::PAGE_SIZE;
use std::{alloc::Layout, ptr::NonNull};

/// Bytes per slab: 4 MiB of address space per allocation (measured on the
/// `memcopy` benchmark: 1 MiB slabs copy 5% slower, as the host copies in smaller
/// pieces).
const SLAB_BYTES: usize = 4 << 20;

/// Frames per slab.
pub(crate) const SLAB_FRAMES: usize = SLAB_BYTES / PAGE_SIZE;
const _: () = assert!(SLAB_FRAMES >= 1 && SLAB_BYTES.is_multiple_of(PAGE_SIZE));

/// Index of a frame in the [`FramePool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FrameIndex(pub(crate) u32);

impl FrameIndex {
    /// The index as a `usize`, for indexing the pool.
    #[inline(always)]
    pub(crate) fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// One page of host memory.
///
/// A fixed-size array rather than `[u8]` so that the compiler knows the length on
/// the hot path and can drop the bounds checks of masked in-page offsets.
pub(crate) type Frame = [u8; PAGE_SIZE];

/// A range of frame bytes: `len` bytes from byte `offset` of frame `frame`, which
/// may run on into the frames that follow it in its slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) frame: FrameIndex,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// Owns every frame of a linear memory.
///
/// Frames are carved from slabs in order and never returned to the host before
/// the pool is dropped; a frame given back with [`FramePool::release`] (a memory
/// with a frame limit evicting down to it) goes to a free list and is handed out
/// again, zeroed, before a new one is carved. The caller allocates a frame only
/// for an unmapped page, so the pool never holds more frames than the memory has
/// pages: at most `WASM_PAGES_MAX` wasm pages' worth.
///
/// Invariants:
/// - `slabs[s]` is a zeroed allocation of `SLAB_FRAMES` frames (layout
///   [`FramePool::slab_layout`]), owned by the pool alone and freed once, in `Drop`;
/// - frame `i` is frame `i % SLAB_FRAMES` of slab `i / SLAB_FRAMES`, and frames
///   `0..carved` have been handed out (`carved <= slabs.len() * SLAB_FRAMES`);
///   those in `free` are not in use, every other one is;
/// - a frame never moves (growing `slabs` moves the pointers, not the slabs), so
///   a pointer from [`FramePool::frame_ptr`] stays valid while the pool lives.
///   **Releasing or reusing a frame (eviction) must first evict its page from
///   every TLB that may hold its pointer**, or a hit would reach another page's
///   data (`LinearMemory::flush_tlb`, `Tlb::evict`).
///
/// # Safety
///
/// `FramePool` is `Send` and `Sync` by `unsafe impl`: it owns its slabs alone, as
/// a `Vec<Box<[Frame]>>` would, and gives out frame references only through
/// `&self` (shared) and `&mut self` (unique).
#[derive(Default)]
pub(crate) struct FramePool {
    slabs: Vec<NonNull<Frame>>,
    /// Frames carved from the slabs so far.
    carved: usize,
    /// Carved frames not in use, handed out again first.
    free: Vec<FrameIndex>,
}

// SAFETY: the pool owns its slabs exclusively (like `Vec<Box<[Frame]>>`, which is
// `Send`); the raw pointers are only an ownership encoding, and sending the pool
// sends the frames with it.
unsafe impl Send for FramePool {}
// SAFETY: `&FramePool` only reads frames (shared reads of plain bytes), as
// `&Vec<Box<[Frame]>>` would; writes need `&mut FramePool`.
unsafe impl Sync for FramePool {}

impl FramePool {
    fn slab_layout() -> Layout {
        // At most the allocator's minimum alignment: then `alloc_zeroed` is
        // `calloc`, which gets a large block as fresh zero pages from the OS
        // without touching them. (A larger alignment makes the global allocator
        // zero the block itself, committing every page: measured as 4 MiB of
        // `memset` per slab.)
        Layout::from_size_align(SLAB_FRAMES * PAGE_SIZE, 16).expect("a valid slab layout")
    }

    /// Allocates a zeroed frame and returns its index: a released one if any,
    /// else the next one of the current slab.
    pub(crate) fn allocate(&mut self) -> FrameIndex {
        if let Some(index) = self.free.pop() {
            self.frame_mut(index).fill(0);
            return index;
        }
        // Bounded by the page count (at most 2^20), far below the index space.
        assert!(
            self.carved < u32::MAX as usize,
            "frame pool exhausted u32 indices"
        );
        if self.carved == self.slabs.len() * SLAB_FRAMES {
            // SAFETY: the layout has a non-zero size.
            let slab = unsafe { std::alloc::alloc_zeroed(Self::slab_layout()) };
            let Some(slab) = NonNull::new(slab.cast::<Frame>()) else {
                std::alloc::handle_alloc_error(Self::slab_layout())
            };
            self.slabs.push(slab);
        }
        let index = FrameIndex(self.carved as u32);
        self.carved += 1;
        index
    }

    /// Gives the unused frame `index` back (its page was unmapped and evicted from
    /// the TLB). Its bytes stay committed host memory until the pool is dropped.
    pub(crate) fn release(&mut self, index: FrameIndex) {
        assert!(
            index.as_usize() < self.carved,
            "frame {index:?} is not allocated"
        );
        debug_assert!(
            !self.free.contains(&index),
            "frame {index:?} released twice"
        );
        self.free.push(index);
    }

    /// A raw pointer to the first byte of the frame at `index`, valid for reads and
    /// writes of `PAGE_SIZE` bytes while the pool lives (frames are returned to
    /// the host only when the pool is dropped).
    #[inline]
    pub(crate) fn frame_ptr(&self, index: FrameIndex) -> NonNull<u8> {
        let index = index.as_usize();
        assert!(index < self.carved, "frame {index} is not allocated");
        let slab = self.slabs[index / SLAB_FRAMES];
        // SAFETY: `index % SLAB_FRAMES < SLAB_FRAMES` frames into a slab of
        // `SLAB_FRAMES` frames (type invariant).
        unsafe { slab.add(index % SLAB_FRAMES) }.cast()
    }

    /// The frame at `index`.
    #[inline(always)]
    pub(crate) fn frame(&self, index: FrameIndex) -> &Frame {
        // SAFETY: an allocated frame (checked by `frame_ptr`) of `PAGE_SIZE` bytes;
        // the shared borrow of `self` rules out a concurrent `&mut` to it.
        unsafe { self.frame_ptr(index).cast::<Frame>().as_ref() }
    }

    /// The frame at `index`, for writing.
    #[inline(always)]
    pub(crate) fn frame_mut(&mut self, index: FrameIndex) -> &mut Frame {
        // SAFETY: as in `frame`; the unique borrow of `self` rules out any other
        // reference to the frame for the lifetime of the result.
        unsafe { self.frame_ptr(index).cast::<Frame>().as_mut() }
    }

    /// How many frames from `frame` on (itself included) lie in its slab: a span
    /// may run over that many consecutive frames.
    #[inline]
    pub(crate) fn room_above(frame: FrameIndex) -> usize {
        SLAB_FRAMES - frame.as_usize() % SLAB_FRAMES
    }

    /// How many frames from `frame` down (itself included) lie in its slab.
    #[inline]
    pub(crate) fn room_below(frame: FrameIndex) -> usize {
        frame.as_usize() % SLAB_FRAMES + 1
    }

    /// A pointer to the start of `span`, after checking that it lies within
    /// allocated frames of one slab.
    fn span_ptr(&self, span: Span) -> NonNull<u8> {
        let frame = span.frame.as_usize();
        let frames = (span.offset + span.len).div_ceil(PAGE_SIZE).max(1);
        assert!(
            frame + frames <= self.carved
                && frame % SLAB_FRAMES + frames <= SLAB_FRAMES
                && span.offset < PAGE_SIZE,
            "{span:?} leaves its slab"
        );
        // SAFETY: `offset < PAGE_SIZE` bytes into an allocated frame.
        unsafe { self.frame_ptr(span.frame).add(span.offset) }
    }

    /// Copies `source.len` bytes from `source` to `target` as `memmove` does
    /// (the spans may overlap); both spans have the same length.
    pub(crate) fn copy(&mut self, source: Span, target: Span) {
        assert_eq!(source.len, target.len, "spans of a copy have one length");
        let (from, to) = (self.span_ptr(source), self.span_ptr(target));
        // SAFETY: both spans lie within allocated frames of one slab each
        // (`span_ptr`), so they are valid for `len` bytes; `ptr::copy` allows
        // overlap. The unique borrow of `self` rules out references to frames.
        unsafe { std::ptr::copy(from.as_ptr(), to.as_ptr(), source.len) };
    }

    /// Sets the bytes of `span` to `byte`.
    pub(crate) fn fill(&mut self, span: Span, byte: u8) {
        let to = self.span_ptr(span);
        // SAFETY: as in `copy`.
        unsafe { std::ptr::write_bytes(to.as_ptr(), byte, span.len) };
    }

    /// Whether every byte of `span` is zero.
    pub(crate) fn is_zero(&self, span: Span) -> bool {
        let from = self.span_ptr(span);
        // SAFETY: the span lies within allocated frames of one slab (`span_ptr`);
        // the shared borrow of `self` rules out writes while the slice lives.
        let bytes = unsafe { std::slice::from_raw_parts(from.as_ptr(), span.len) };
        bytes.iter().all(|&byte| byte == 0)
    }

    /// Number of frames in use (allocated and not released).
    pub(crate) fn len(&self) -> usize {
        self.carved - self.free.len()
    }

    /// Number of frames carved from slabs: frame indices are below it.
    #[cfg(test)]
    pub(crate) fn carved(&self) -> usize {
        self.carved
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        for slab in self.slabs.drain(..) {
            // SAFETY: every slab came from `alloc_zeroed` with `slab_layout` and is
            // freed only here, once.
            unsafe { std::alloc::dealloc(slab.as_ptr().cast(), Self::slab_layout()) };
        }
    }
}

impl std::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePool")
            .field("frames", &self.len())
            .field("carved", &self.carved)
            .field("free", &self.free.len())
            .field("slabs", &self.slabs.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_returns_zeroed_frames_with_sequential_indices() {
        let mut pool = FramePool::default();
        let first = pool.allocate();
        let second = pool.allocate();
        assert_eq!((first, second), (FrameIndex(0), FrameIndex(1)));
        assert!(pool.frame(second).iter().all(|&byte| byte == 0));
        pool.frame_mut(first)[7] = 9;
        assert_eq!(pool.frame(first)[7], 9);
        assert_eq!(pool.frame(second)[7], 0);
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn frames_do_not_move_when_the_pool_grows() {
        let mut pool = FramePool::default();
        let first = pool.allocate();
        let pointer = pool.frame_ptr(first);
        for _ in 0..2 * SLAB_FRAMES {
            pool.allocate();
        }
        assert_eq!(pool.frame_ptr(first), pointer);
        // SAFETY: the frame is live and no reference to it exists right now.
        unsafe { pointer.as_ptr().add(PAGE_SIZE - 1).write(5) };
        assert_eq!(pool.frame(first)[PAGE_SIZE - 1], 5);
    }

    #[test]
    fn spans_run_across_adjacent_frames_of_a_slab_only() {
        let mut pool = FramePool::default();
        for _ in 0..SLAB_FRAMES + 2 {
            pool.allocate();
        }
        let last = FrameIndex(SLAB_FRAMES as u32 - 1);
        let next = FrameIndex(SLAB_FRAMES as u32);
        assert_eq!(FramePool::room_above(FrameIndex(0)), SLAB_FRAMES);
        assert_eq!(
            FramePool::room_above(last),
            1,
            "slabs are separate allocations"
        );
        assert_eq!(FramePool::room_below(last), SLAB_FRAMES);
        assert_eq!(FramePool::room_below(next), 1);
        let across = Span {
            frame: FrameIndex(0),
            offset: PAGE_SIZE - 2,
            len: 4,
        };
        pool.fill(across, 7);
        assert_eq!(pool.frame(FrameIndex(0))[PAGE_SIZE - 2..], [7, 7]);
        assert_eq!(pool.frame(FrameIndex(1))[..3], [7, 7, 0]);
        let target = Span {
            frame: FrameIndex(5),
            offset: 1,
            len: 4,
        };
        pool.copy(across, target);
        assert_eq!(pool.frame(FrameIndex(5))[..6], [0, 7, 7, 7, 7, 0]);
        assert!(!pool.is_zero(target));
        assert!(pool.is_zero(Span {
            frame: FrameIndex(6),
            offset: 0,
            len: PAGE_SIZE,
        }));
    }

    #[test]
    #[should_panic(expected = "leaves its slab")]
    fn spans_may_not_leave_their_slab() {
        let mut pool = FramePool::default();
        for _ in 0..=SLAB_FRAMES {
            pool.allocate();
        }
        pool.fill(
            Span {
                frame: FrameIndex(SLAB_FRAMES as u32 - 1),
                offset: PAGE_SIZE - 1,
                len: 2,
            },
            1,
        );
    }

    #[test]
    fn released_frames_are_reused_zeroed() {
        let mut pool = FramePool::default();
        let first = pool.allocate();
        let second = pool.allocate();
        pool.frame_mut(first)[3] = 4;
        pool.release(first);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.carved(), 2);
        assert_eq!(pool.allocate(), first);
        assert!(pool.frame(first).iter().all(|&byte| byte == 0));
        assert_eq!(pool.allocate(), FrameIndex(second.0 + 1));
        assert_eq!(pool.len(), 3);
    }
}
