//! A small direct-mapped software TLB in front of the page table.

use crate::frame_pool::FrameIndex;
use ferrite_core::PageIndex;

/// Number of TLB entries; a power of two so that the slot is `page & mask`.
const TLB_ENTRIES: usize = 64;
const TLB_MASK: usize = TLB_ENTRIES - 1;
const _: () = assert!(TLB_ENTRIES.is_power_of_two());

/// One cached translation.
#[derive(Debug, Clone, Copy)]
struct TlbEntry {
    /// The page this entry translates, or [`Tlb::EMPTY`].
    page: PageIndex,
    frame: FrameIndex,
}

/// Caches recent page-to-frame translations of *mapped* pages only.
///
/// Invariant: every entry `(page, frame)` agrees with the page table. Because the TLB
/// holds only mapped pages, a hit is valid for both loads and stores, and mapping a
/// new page never makes an entry stale. Any event that unmaps or remaps a page (future
/// eviction, restore) must evict that page's entry or replace the whole TLB.
#[derive(Debug)]
pub(crate) struct Tlb {
    entries: [TlbEntry; TLB_ENTRIES],
}

impl Tlb {
    /// Tag of an empty entry: never a real page, since a memory has fewer than 2^20.
    const EMPTY: PageIndex = PageIndex(u32::MAX);

    /// The frame of `page` if cached: one compare plus indexing.
    #[inline(always)]
    pub(crate) fn lookup(&self, page: PageIndex) -> Option<FrameIndex> {
        let entry = &self.entries[page.as_usize() & TLB_MASK];
        (entry.page == page).then_some(entry.frame)
    }

    /// Caches the translation of the mapped `page`, replacing the slot's occupant.
    #[inline]
    pub(crate) fn insert(&mut self, page: PageIndex, frame: FrameIndex) {
        debug_assert_ne!(page, Self::EMPTY);
        self.entries[page.as_usize() & TLB_MASK] = TlbEntry { page, frame };
    }
}

impl Default for Tlb {
    fn default() -> Self {
        Self {
            entries: [TlbEntry {
                page: Self::EMPTY,
                frame: FrameIndex(0),
            }; TLB_ENTRIES],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_lookup_and_conflict() {
        let mut tlb = Tlb::default();
        assert_eq!(tlb.lookup(PageIndex(3)), None);
        tlb.insert(PageIndex(3), FrameIndex(7));
        assert_eq!(tlb.lookup(PageIndex(3)), Some(FrameIndex(7)));
        // Same slot, different tag: the newer translation evicts the older one.
        tlb.insert(PageIndex(3 + TLB_ENTRIES as u32), FrameIndex(8));
        assert_eq!(tlb.lookup(PageIndex(3)), None);
        assert_eq!(
            tlb.lookup(PageIndex(3 + TLB_ENTRIES as u32)),
            Some(FrameIndex(8))
        );
    }
}
