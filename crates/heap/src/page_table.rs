//! The page table: which frame, if any, backs each page of a linear memory.

use crate::frame_pool::FrameIndex;
use ferrite_core::PageIndex;

/// Maps each [`PageIndex`] to the [`FrameIndex`] backing it, or to nothing (the
/// page is not resident).
///
/// An unmapped page reads as zeros, or, in a memory with a backing store, as the
/// store's version of it. The table is a dense vector that grows lazily up
/// to the highest mapped page, so a memory that grows to 4 GiB but touches only its
/// first pages costs a few entries (a fully mapped 4 GiB memory with 4 KiB pages costs
/// 1M entries, 4 MiB).
#[derive(Debug, Default)]
pub(crate) struct PageTable {
    /// `entries[page]` is the frame of `page`, or [`PageTable::UNMAPPED`].
    entries: Vec<u32>,
}

impl PageTable {
    /// Sentinel of an unmapped entry. Never a valid frame: the pool holds at most one
    /// frame per page, and pages number fewer than 2^20.
    const UNMAPPED: u32 = u32::MAX;

    /// The frame backing `page`, if any.
    #[inline]
    pub(crate) fn get(&self, page: PageIndex) -> Option<FrameIndex> {
        match self.entries.get(page.as_usize()) {
            Some(&frame) if frame != Self::UNMAPPED => Some(FrameIndex(frame)),
            _ => None,
        }
    }

    /// How many pages from `page` on (at most `limit`) are mapped to consecutive
    /// frames, starting with the frame of `page`: 0 if `page` is unmapped. A bulk
    /// operation over them can treat their frames as one run (if the frames are
    /// adjacent in memory too, see `FramePool::room_above`).
    pub(crate) fn consecutive_above(&self, page: PageIndex, limit: usize) -> usize {
        let start = page.as_usize();
        let Some(&first) = self.entries.get(start) else {
            return 0;
        };
        if first == Self::UNMAPPED {
            return 0;
        }
        let end = start.saturating_add(limit).min(self.entries.len());
        // `UNMAPPED` is `u32::MAX`, so `first + n` never matches it for `n >= 1`.
        self.entries[start..end]
            .iter()
            .zip(first..)
            .take_while(|(frame, expected)| **frame == *expected)
            .count()
    }

    /// How many pages from `page` down (at most `limit`) are mapped to
    /// consecutive frames, ending with the frame of `page`: 0 if `page` is
    /// unmapped.
    pub(crate) fn consecutive_below(&self, page: PageIndex, limit: usize) -> usize {
        let end = page.as_usize() + 1;
        let Some(&last) = self.entries.get(end - 1) else {
            return 0;
        };
        if last == Self::UNMAPPED {
            return 0;
        }
        let start = end.saturating_sub(limit);
        self.entries[start..end]
            .iter()
            .rev()
            .zip((0..=last).rev())
            .take_while(|(frame, expected)| **frame == *expected)
            .count()
    }

    /// Whether all of the `count` pages from `first` on are mapped.
    pub(crate) fn all_mapped(&self, first: PageIndex, count: usize) -> bool {
        let start = first.as_usize();
        self.entries
            .get(start..start + count)
            .is_some_and(|entries| entries.iter().all(|&frame| frame != Self::UNMAPPED))
    }

    /// Maps the unmapped `page` to `frame`. `page_count` is the size of the memory in
    /// pages and caps the growth of the table.
    pub(crate) fn map(&mut self, page: PageIndex, frame: FrameIndex, page_count: usize) {
        assert!(
            page.as_usize() < page_count,
            "mapping {page:?} beyond {page_count} pages"
        );
        assert_ne!(
            frame.0,
            Self::UNMAPPED,
            "frame index collides with the sentinel"
        );
        let index = page.as_usize();
        if index >= self.entries.len() {
            // Double (like `Vec`), but never past the memory size, so a full table is
            // exactly `page_count` entries.
            let len = (index + 1).max(self.entries.len() * 2).min(page_count);
            self.entries.reserve_exact(len - self.entries.len());
            self.entries.resize(len, Self::UNMAPPED);
        }
        let entry = &mut self.entries[index];
        assert_eq!(*entry, Self::UNMAPPED, "{page:?} is already mapped");
        *entry = frame.0;
    }
}

impl PageTable {
    /// Unmaps the mapped `page` and returns the frame that backed it. The caller
    /// must have evicted `page` from the TLB first.
    pub(crate) fn unmap(&mut self, page: PageIndex) -> FrameIndex {
        let entry = self
            .entries
            .get_mut(page.as_usize())
            .filter(|entry| **entry != Self::UNMAPPED);
        let Some(entry) = entry else {
            panic!("unmapping {page:?}, which is not mapped");
        };
        FrameIndex(std::mem::replace(entry, Self::UNMAPPED))
    }

    /// Every mapped page with its frame, in ascending page order.
    pub(crate) fn mapped(&self) -> impl Iterator<Item = (PageIndex, FrameIndex)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, &frame)| frame != Self::UNMAPPED)
            .map(|(page, &frame)| (PageIndex(page as u32), FrameIndex(frame)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_pages_read_as_none_and_table_grows_lazily() {
        let mut table = PageTable::default();
        assert_eq!(table.get(PageIndex(5)), None);
        table.map(PageIndex(5), FrameIndex(0), 100);
        assert_eq!(table.get(PageIndex(5)), Some(FrameIndex(0)));
        assert_eq!(table.get(PageIndex(4)), None);
        assert_eq!(table.entries.len(), 6);
        table.map(PageIndex(6), FrameIndex(1), 100);
        assert_eq!(table.entries.len(), 12);
        table.map(PageIndex(99), FrameIndex(2), 100);
        assert_eq!(table.entries.len(), 100);
        assert_eq!(table.get(PageIndex(99)), Some(FrameIndex(2)));
    }

    #[test]
    fn runs_of_consecutive_frames() {
        let mut table = PageTable::default();
        for (page, frame) in [(2, 7), (3, 8), (4, 9), (5, 3), (6, 4)] {
            table.map(PageIndex(page), FrameIndex(frame), 100);
        }
        assert_eq!(table.consecutive_above(PageIndex(2), 10), 3);
        assert_eq!(table.consecutive_above(PageIndex(2), 2), 2);
        assert_eq!(table.consecutive_above(PageIndex(5), 10), 2);
        assert_eq!(table.consecutive_above(PageIndex(1), 10), 0);
        assert_eq!(table.consecutive_above(PageIndex(50), 10), 0);
        assert_eq!(table.consecutive_below(PageIndex(4), 10), 3);
        assert_eq!(table.consecutive_below(PageIndex(4), 1), 1);
        assert_eq!(table.consecutive_below(PageIndex(6), 10), 2);
        assert_eq!(table.consecutive_below(PageIndex(7), 10), 0);
        assert!(table.all_mapped(PageIndex(2), 5));
        assert!(!table.all_mapped(PageIndex(1), 2));
        assert!(!table.all_mapped(PageIndex(6), 2));
    }

    #[test]
    fn unmapping_frees_the_entry() {
        let mut table = PageTable::default();
        table.map(PageIndex(3), FrameIndex(1), 8);
        table.map(PageIndex(1), FrameIndex(0), 8);
        assert_eq!(
            table.mapped().collect::<Vec<_>>(),
            [(PageIndex(1), FrameIndex(0)), (PageIndex(3), FrameIndex(1))]
        );
        assert_eq!(table.unmap(PageIndex(3)), FrameIndex(1));
        assert_eq!(table.get(PageIndex(3)), None);
        table.map(PageIndex(3), FrameIndex(5), 8);
        assert_eq!(table.get(PageIndex(3)), Some(FrameIndex(5)));
    }

    #[test]
    #[should_panic(expected = "not mapped")]
    fn unmapping_an_unmapped_page_is_a_bug() {
        PageTable::default().unmap(PageIndex(2));
    }

    #[test]
    #[should_panic(expected = "already mapped")]
    fn mapping_twice_is_a_bug() {
        let mut table = PageTable::default();
        table.map(PageIndex(1), FrameIndex(0), 4);
        table.map(PageIndex(1), FrameIndex(1), 4);
    }
}
