//! The pool of page frames: the host memory that backs resident pages.

use crate::PAGE_SIZE;

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
/// A fixed-size array rather than `Box<[u8]>` so that the compiler knows the length on
/// the hot path and can drop the bounds checks of masked in-page offsets.
pub(crate) type Frame = Box<[u8; PAGE_SIZE]>;

/// Owns every frame of a linear memory.
///
/// Frames are only ever added today; the eviction issue will add a free list. The
/// pool never holds more frames than the memory has pages (the caller allocates a
/// frame only for an unmapped page), so it is bounded by `WASM_PAGES_MAX` wasm pages.
#[derive(Default)]
pub(crate) struct FramePool {
    frames: Vec<Frame>,
}

impl FramePool {
    /// Allocates a zeroed frame and returns its index.
    pub(crate) fn allocate(&mut self) -> FrameIndex {
        // Bounded by the page count (at most 2^20), far below the index space.
        assert!(
            self.frames.len() < u32::MAX as usize,
            "frame pool exhausted u32 indices"
        );
        let index = FrameIndex(self.frames.len() as u32);
        // `vec![0; n]` goes through the zeroed allocator, which gets fresh pages from
        // the OS without touching them.
        let Ok(frame) = Frame::try_from(vec![0u8; PAGE_SIZE].into_boxed_slice()) else {
            unreachable!("a PAGE_SIZE vector converts to a PAGE_SIZE array");
        };
        self.frames.push(frame);
        index
    }

    /// The frame at `index`.
    #[inline(always)]
    pub(crate) fn frame(&self, index: FrameIndex) -> &[u8; PAGE_SIZE] {
        &self.frames[index.as_usize()]
    }

    /// The frame at `index`, for writing.
    #[inline(always)]
    pub(crate) fn frame_mut(&mut self, index: FrameIndex) -> &mut [u8; PAGE_SIZE] {
        &mut self.frames[index.as_usize()]
    }

    /// Two distinct frames, the first for reading and the second for writing.
    pub(crate) fn frame_pair_mut(
        &mut self,
        source: FrameIndex,
        target: FrameIndex,
    ) -> (&[u8; PAGE_SIZE], &mut [u8; PAGE_SIZE]) {
        assert_ne!(source, target, "frame_pair_mut needs two distinct frames");
        let Ok([source, target]) = self
            .frames
            .get_disjoint_mut([source.as_usize(), target.as_usize()])
        else {
            unreachable!("frame indices come from the page table and are distinct");
        };
        (source, target)
    }

    /// Number of frames allocated.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}

impl std::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePool")
            .field("frames", &self.frames.len())
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
        let (source, target) = pool.frame_pair_mut(first, second);
        target[..8].copy_from_slice(&source[..8]);
        assert_eq!(pool.frame(second)[7], 9);
        assert_eq!(pool.len(), 2);
    }
}
