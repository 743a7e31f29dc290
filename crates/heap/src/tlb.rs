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

/// Caches recent page-to-frame translations of *mapped* pages only.
///
/// Invariants (what makes a hit need no other check):
/// - every entry `(page, bias)` agrees with the page table: `page` is mapped, and
///   `bias + page * PAGE_SIZE` is its frame, live and `PAGE_SIZE` bytes long;
/// - every cached page lies below the memory size (mapped pages always do, and
///   memories never shrink), so a hit is in bounds without a bounds check;
/// - because the TLB holds only mapped pages, a hit is valid for loads and stores,
///   and mapping a new page or growing the memory never makes an entry stale.
///
/// **Events that must flush** ([`Tlb::flush`]): unmapping or remapping a page
/// (eviction, restore), and freeing or reusing a frame. Today frames are freed
/// only when the memory is dropped, and the TLB is dropped with it.
///
/// # Safety
///
/// `Tlb` is `Send` and `Sync` by `unsafe impl`: its pointers point into frames
/// owned by the same `LinearMemory`, move with it, and are only dereferenced
/// through `&self` (reads) or `&mut self` (writes) of that memory.
///
/// The entries are kept as two arrays (tags and biases) rather than an array of
/// pairs: a lookup then indexes both with the same scaled index, which the
/// compiler folds into the two loads (measured: two instructions less per access).
#[derive(Debug)]
pub(crate) struct Tlb {
    /// The page each entry translates, or [`Tlb::EMPTY`].
    pages: [u64; TLB_ENTRIES],
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
    /// one cached page: one tag compare.
    ///
    /// The slot is chosen by the page of the first byte and its tag is compared
    /// with the page of the last byte. An access within one page hits exactly when
    /// that page is cached. One that straddles pages `p` and `p + 1` looks in the
    /// slot of `p`, which can only hold a page congruent to `p` modulo
    /// `TLB_ENTRIES`, never `p + 1`, so it misses.
    #[inline(always)]
    fn translate<const N: usize>(&self, addr: u64) -> Option<*mut u8> {
        const { assert!(N >= 1 && N <= PAGE_SIZE) };
        let slot = (addr >> PAGE_SIZE_LOG2) as usize & TLB_MASK;
        // The VM's addresses are below 2^34 (a 32-bit pointer plus a 32-bit offset).
        // For the last `N - 1` addresses of the `u64` range the sum wraps to below
        // `PAGE_SIZE`, page 0, but those addresses pick the last slot (their page is
        // all ones), which never holds page 0: still a miss.
        let last_page = addr.wrapping_add(N as u64 - 1) >> PAGE_SIZE_LOG2;
        (self.pages[slot] == last_page).then(|| self.biases[slot].wrapping_add(addr as usize))
    }

    /// The `N` bytes at `addr` if the TLB maps them.
    #[inline(always)]
    pub(crate) fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let host = self.translate::<N>(addr)?;
        // SAFETY: a hit means the `N` bytes lie within one cached page, whose frame
        // is live (type invariant); `read_unaligned` has no alignment requirement.
        // No reference to the frame is live: frame references borrow the memory
        // that owns this TLB, and so does this call.
        Some(unsafe { host.cast::<[u8; N]>().read_unaligned() })
    }

    /// Stores `bytes` at `addr` if the TLB maps them; false on a miss.
    #[inline(always)]
    pub(crate) fn store<const N: usize>(&mut self, addr: u64, bytes: [u8; N]) -> bool {
        let Some(host) = self.translate::<N>(addr) else {
            return false;
        };
        // SAFETY: as in `load`; the frame is writable (it belongs to a mapped page,
        // and frames are never shared between pages).
        unsafe { host.cast::<[u8; N]>().write_unaligned(bytes) };
        true
    }

    /// Whether `page` is cached (for assertions and tests).
    pub(crate) fn contains(&self, page: PageIndex) -> bool {
        self.pages[page.as_usize() & TLB_MASK] == u64::from(page.0)
    }

    /// Caches the translation of the mapped `page` to the frame at `frame`,
    /// replacing the slot's occupant.
    ///
    /// The caller guarantees the invariants: `page` is mapped to that frame and
    /// lies below the memory size.
    #[inline]
    pub(crate) fn insert(&mut self, page: PageIndex, frame: NonNull<u8>) {
        let first = u64::from(page.0) << PAGE_SIZE_LOG2;
        let slot = page.as_usize() & TLB_MASK;
        self.pages[slot] = u64::from(page.0);
        self.biases[slot] = frame.as_ptr().wrapping_sub(first as usize);
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
        tlb.insert(PageIndex(3), NonNull::from(&mut first[0]));
        assert!(tlb.store(base + 8, [1u8, 2, 3, 4]));
        assert_eq!(tlb.load::<4>(base + 8), Some([1, 2, 3, 4]));
        // Same slot, different tag: the newer translation evicts the older one.
        let other = PageIndex(3 + TLB_ENTRIES as u32);
        tlb.insert(other, NonNull::from(&mut second[0]));
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
        tlb.insert(PageIndex(0), NonNull::from(&mut first[0]));
        tlb.insert(PageIndex(1), NonNull::from(&mut second[0]));
        let end = PAGE_SIZE as u64;
        assert_eq!(tlb.load::<8>(end - 8), Some([0; 8]));
        for addr in end - 7..end {
            assert_eq!(tlb.load::<8>(addr), None, "straddling load at {addr}");
            assert!(!tlb.store(addr, [1u8; 8]), "straddling store at {addr}");
        }
        assert_eq!(tlb.load::<8>(end), Some([0; 8]));
        assert!(first.iter().chain(second.iter()).all(|&byte| byte == 0));
    }
}
