//! Process-wide list of live [`super::DmaMemory`] regions (IOVA-as-VA), so a host emulator running in the same
//! process can copy GPA-direct data straight out of them instead of making a syscall per range. A region is added
//! when allocated and removed (under the write lock) before its memory can be unmapped; every copy holds the read
//! lock, so a region cannot disappear while it is being copied. Addresses outside every region are refused.

use std::sync::RwLock;

/// `(start, len)` of every live region; a handful per device, so a linear scan is cheapest.
static REGIONS: RwLock<Vec<(usize, usize)>> = RwLock::new(Vec::new());

fn inside(regions: &[(usize, usize)], addr: u64, len: usize) -> Option<usize> {
    let a = usize::try_from(addr).ok()?;
    regions
        .iter()
        .any(|&(s, l)| a >= s && a - s <= l && len <= l - (a - s))
        .then_some(a)
}

/// Add `[start, start + len)`.
///
/// # Safety
/// The range must stay mapped readable and writable until [`unregister`] is called with `start`.
pub(super) unsafe fn register(start: usize, len: usize) {
    if len == 0 || start.checked_add(len).is_none() {
        return;
    }
    REGIONS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push((start, len));
}

/// Remove the region starting at `start`; returns once no copy from it is in progress.
pub(super) fn unregister(start: usize) {
    REGIONS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&(s, _)| s != start);
}

/// Whether `[addr, addr + len)` lies entirely inside one live DMA region of this process.
pub fn is_dma(addr: u64, len: usize) -> bool {
    inside(
        &REGIONS.read().unwrap_or_else(|p| p.into_inner()),
        addr,
        len,
    )
    .is_some()
}

/// Copy `dst.len()` bytes at virtual address `addr` when the range lies inside one live DMA region; false (and
/// nothing copied) otherwise. Never touches memory outside the registered regions.
pub fn copy_from_dma(addr: u64, dst: &mut [u8]) -> bool {
    let regions = REGIONS.read().unwrap_or_else(|p| p.into_inner());
    let Some(a) = inside(&regions, addr, dst.len()) else {
        return false;
    };
    // SAFETY: the range lies inside a registered region, which stays mapped while we hold the read lock
    // (`unregister` takes the write lock before the memory can be unmapped); `dst` is our own buffer, not DMA
    // memory, so the two cannot overlap. The peer may write concurrently: the bytes are data to be validated.
    unsafe { std::ptr::copy_nonoverlapping(a as *const u8, dst.as_mut_ptr(), dst.len()) };
    true
}

/// Copy `src` to virtual address `addr` when the range lies inside one live DMA region; false otherwise.
pub fn copy_to_dma(addr: u64, src: &[u8]) -> bool {
    let regions = REGIONS.read().unwrap_or_else(|p| p.into_inner());
    let Some(a) = inside(&regions, addr, src.len()) else {
        return false;
    };
    // SAFETY: as in `copy_from_dma`; the region is mapped writable and `src` is a distinct buffer.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), a as *mut u8, src.len()) };
    true
}
