//! A direct-mapped software TLB in front of the page table: the hot path of every
//! load and store.
//!
//! This is one of the two frame-mapping modules (with `frame_pool`) allowed to use
//! `unsafe`: a hit reads or writes the frame through a cached raw pointer, with no
//! other check. Measured effect: see `docs/design.md`, "Linear memory".

use crate::{PAGE_SIZE, PAGE_SIZE_LOG2};
use ferrite_core::PageIndex;
use std::ptr::NonNull;

/// Number of TLB entries; a power of two so that the slot is `page & mask`.
pub(crate) const TLB_ENTRIES: usize = 64;
const TLB_MASK: usize = TLB_ENTRIES - 1;
const _: () = assert!(TLB_ENTRIES.is_power_of_two() && TLB_ENTRIES >= 2);

/// Caches recent page-to-frame translations of *resident* pages only.
///
/// Each entry has two tags: the load tag (`pages`) and the store tag
/// (`store_pages`). Both share the entry's bias, so a load hit and a store hit are
/// each one tag compare and an add. The store tag is set only for pages that may
/// be written without telling the memory: every resident page of a memory without
/// a store, and the *dirty* pages of a memory with one. A store to a clean page of
/// a backed memory therefore misses once, takes the fault path that marks the page
/// dirty, and hits from then on; that is how dirty tracking costs the hit path
/// nothing.
///
/// Invariants (what makes a hit need no other check):
/// - every load tag `page` with bias `bias` agrees with the page table: `page` is
///   resident, and `bias + page * PAGE_SIZE` is its frame, live and `PAGE_SIZE`
///   bytes long;
/// - a store tag is either [`Tlb::EMPTY`] or equal to the load tag of its entry,
///   and then the page is writable without notice (unbacked, or dirty);
/// - every cached page lies below the memory size (resident pages always do, and
///   memories never shrink), so a hit is in bounds without a bounds check;
/// - because the TLB holds only resident pages, mapping a new page or growing the
///   memory never makes an entry stale.
///
/// **Events that must invalidate**: unmapping or remapping a page (eviction,
/// restore), freeing or reusing a frame ([`Tlb::evict`] or [`Tlb::flush`]), and
/// marking a page clean ([`Tlb::clear_store_tags`], or a store would not mark it
/// dirty again).
///
/// # Safety
///
/// `Tlb` is `Send` and `Sync` by `unsafe impl`: its pointers point into frames
/// owned by the same `LinearMemory`, move with it, and are only dereferenced
/// through `&self` (reads) or `&mut self` (writes) of that memory.
///
/// The entries are kept as parallel arrays (tags and biases) rather than an array
/// of tuples: a lookup then indexes both with the same scaled index, which the
/// compiler folds into the two loads (measured: two instructions less per access).
#[derive(Debug)]
pub(crate) struct Tlb {
    /// The load tag: the page each entry translates, or [`Tlb::EMPTY`].
    pages: [u64; TLB_ENTRIES],
    /// The store tag: the entry's page if stores may hit it, or [`Tlb::EMPTY`].
    store_pages: [u64; TLB_ENTRIES],
    /// The frame's address minus the page's first guest address (a wrapping
    /// pointer): the host address of guest address `a` in this page is
    /// `bias.wrapping_add(a)`, so a hit needs no masking.
    biases: [*mut u8; TLB_ENTRIES],
}

// SAFETY: the cached pointers point into frames owned by the same `LinearMemory`
// (its `FramePool`, which is `Send`); they move with it and are only dereferenced
// through `&self`/`&mut self` of that memory.
unsafe impl Send for Tlb {}
// SAFETY: `&Tlb` only reads through the pointers (`load`); writing needs `&mut Tlb`.
unsafe impl Sync for Tlb {}

impl Tlb {
    /// Tag of an empty entry: never a real page, since a memory has at most 2^20.
    const EMPTY: u64 = u64::MAX;

    /// The host address of the `N` bytes at guest address `addr`, if they lie in
    /// one page that `tags` caches: one tag compare.
    ///
    /// The slot is chosen by the page of the first byte and its tag is compared
    /// with the page of the last byte. An access within one page hits exactly when
    /// that page is cached. One that straddles pages `p` and `p + 1` looks in the
    /// slot of `p`, which can only hold a page congruent to `p` modulo
    /// `TLB_ENTRIES`, never `p + 1`, so it misses.
    #[inline(always)]
    fn translate<const N: usize>(
        tags: &[u64; TLB_ENTRIES],
        biases: &[*mut u8; TLB_ENTRIES],
        addr: u64,
    ) -> Option<*mut u8> {
        const { assert!(N >= 1 && N <= PAGE_SIZE) };
        let slot = (addr >> PAGE_SIZE_LOG2) as usize & TLB_MASK;
        // The VM's addresses are below 2^34 (a 32-bit pointer plus a 32-bit offset).
        // For the last `N - 1` addresses of the `u64` range the sum wraps to below
        // `PAGE_SIZE`, page 0, but those addresses pick the last slot (their page is
        // all ones), which never holds page 0: still a miss.
        let last_page = addr.wrapping_add(N as u64 - 1) >> PAGE_SIZE_LOG2;
        (tags[slot] == last_page).then(|| biases[slot].wrapping_add(addr as usize))
    }

    /// The `N` bytes at `addr` if the TLB maps them.
    #[inline(always)]
    pub(crate) fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let host = Self::translate::<N>(&self.pages, &self.biases, addr)?;
        // SAFETY: a hit means the `N` bytes lie within one cached page, whose frame
        // is live (type invariant); `read_unaligned` has no alignment requirement.
        // No reference to the frame is live: frame references borrow the memory
        // that owns this TLB, and so does this call.
        Some(unsafe { host.cast::<[u8; N]>().read_unaligned() })
    }

    /// Stores `bytes` at `addr` if the TLB maps them for stores; false on a miss.
    #[inline(always)]
    pub(crate) fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> bool {
        let Some(host) = Self::translate::<N>(&self.store_pages, &self.biases, addr) else {
            return false;
        };
        // SAFETY: as in `load` (a store tag equals its entry's load tag, so the
        // frame is live); the frame is writable (it belongs to a resident page,
        // and frames are never shared between pages).
        unsafe { host.cast::<[u8; N]>().write_unaligned(bytes) };
        true
    }

    /// Whether `page` is cached (for assertions and tests).
    pub(crate) fn contains(&self, page: PageIndex) -> bool {
        self.pages[page.as_usize() & TLB_MASK] == u64::from(page.0)
    }

    /// Whether `page` is cached for stores (for assertions and tests).
    #[cfg(test)]
    pub(crate) fn contains_for_store(&self, page: PageIndex) -> bool {
        self.store_pages[page.as_usize() & TLB_MASK] == u64::from(page.0)
    }

    /// Caches the translation of the resident `page` to the frame at `frame`,
    /// replacing the slot's occupant; for loads, and for stores too if `writable`.
    ///
    /// The caller guarantees the invariants: `page` is mapped to that frame and
    /// lies below the memory size, and if `writable`, stores to it need no notice.
    #[inline]
    pub(crate) fn insert(&mut self, page: PageIndex, frame: NonNull<u8>, writable: bool) {
        let first = u64::from(page.0) << PAGE_SIZE_LOG2;
        let slot = page.as_usize() & TLB_MASK;
        self.pages[slot] = u64::from(page.0);
        self.store_pages[slot] = if writable {
            u64::from(page.0)
        } else {
            Self::EMPTY
        };
        self.biases[slot] = frame.as_ptr().wrapping_sub(first as usize);
    }

    /// Forgets the translation of `page`, if cached (before it is unmapped or its
    /// frame reused).
    #[inline]
    pub(crate) fn evict(&mut self, page: PageIndex) {
        let slot = page.as_usize() & TLB_MASK;
        if self.pages[slot] == u64::from(page.0) {
            self.pages[slot] = Self::EMPTY;
            self.store_pages[slot] = Self::EMPTY;
        }
    }

    /// Forgets every store tag (after pages were marked clean), keeping the load
    /// tags: the next store to each page misses once and marks it dirty again.
    pub(crate) fn clear_store_tags(&mut self) {
        self.store_pages = [Self::EMPTY; TLB_ENTRIES];
    }

    /// Forgets every translation.
    pub(crate) fn flush(&mut self) {
        *self = Self::default();
    }
}

impl Default for Tlb {
    fn default() -> Self {
        Self {
            pages: [Self::EMPTY; TLB_ENTRIES],
            store_pages: [Self::EMPTY; TLB_ENTRIES],
            biases: [std::ptr::null_mut(); TLB_ENTRIES],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame-sized buffer standing in for a frame of the pool.
    fn frame() -> Box<[u8; PAGE_SIZE]> {
        Box::new([0; PAGE_SIZE])
    }

    #[test]
    fn insert_load_store_and_conflict() {
        let (mut first, mut second) = (frame(), frame());
        let mut tlb = Tlb::default();
        let page = 3u64;
        let base = page << PAGE_SIZE_LOG2;
        assert_eq!(tlb.load::<4>(base), None);
        tlb.insert(PageIndex(3), NonNull::from(&mut first[0]), true);
        assert!(tlb.store(base + 8, [1u8, 2, 3, 4]));
        assert_eq!(tlb.load::<4>(base + 8), Some([1, 2, 3, 4]));
        // Same slot, different tag: the newer translation evicts the older one.
        let other = PageIndex(3 + TLB_ENTRIES as u32);
        tlb.insert(other, NonNull::from(&mut second[0]), true);
        assert_eq!(tlb.load::<4>(base + 8), None);
        assert!(!tlb.contains(PageIndex(3)) && tlb.contains(other));
        assert_eq!(
            tlb.load::<4>(u64::from(other.0) << PAGE_SIZE_LOG2),
            Some([0; 4])
        );
        assert_eq!(first[8..12], [1, 2, 3, 4]);
        tlb.flush();
        assert!(!tlb.contains(other));
    }

    #[test]
    fn accesses_that_straddle_a_page_miss() {
        let (mut first, mut second) = (frame(), frame());
        let mut tlb = Tlb::default();
        tlb.insert(PageIndex(0), NonNull::from(&mut first[0]), true);
        tlb.insert(PageIndex(1), NonNull::from(&mut second[0]), true);
        let end = PAGE_SIZE as u64;
        assert_eq!(tlb.load::<8>(end - 8), Some([0; 8]));
        for addr in end - 7..end {
            assert_eq!(tlb.load::<8>(addr), None, "straddling load at {addr}");
            assert!(!tlb.store(addr, [1u8; 8]), "straddling store at {addr}");
        }
        assert_eq!(tlb.load::<8>(end), Some([0; 8]));
        assert!(first.iter().chain(second.iter()).all(|&byte| byte == 0));
    }

    #[test]
    fn store_tags_are_separate_from_load_tags() {
        let mut first = frame();
        let mut tlb = Tlb::default();
        let base = 5u64 << PAGE_SIZE_LOG2;
        tlb.insert(PageIndex(5), NonNull::from(&mut first[0]), false);
        assert_eq!(tlb.load::<2>(base), Some([0; 2]));
        assert!(!tlb.store(base, [1u8, 2]), "a clean page misses for stores");
        assert!(!tlb.contains_for_store(PageIndex(5)));
        tlb.insert(PageIndex(5), NonNull::from(&mut first[0]), true);
        assert!(tlb.store(base, [1u8, 2]));
        assert_eq!(tlb.load::<2>(base), Some([1, 2]));
        tlb.clear_store_tags();
        assert!(!tlb.store(base, [3u8, 4]));
        assert_eq!(tlb.load::<2>(base), Some([1, 2]), "load tags survive");
        tlb.evict(PageIndex(5 + TLB_ENTRIES as u32));
        assert!(
            tlb.contains(PageIndex(5)),
            "evicting another page keeps the slot"
        );
        tlb.evict(PageIndex(5));
        assert_eq!(tlb.load::<2>(base), None);
        assert_eq!(first[..2], [1, 2]);
    }
}
