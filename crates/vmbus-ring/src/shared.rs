//! Memory that a peer may write at any moment (a mapped ring, receive or send buffer).
//!
//! [`SharedMem`] is a bounds-checked window over such memory. It never hands out `&[u8]` into it:
//! every access is a copy made with volatile or atomic operations, so a concurrent (or hostile)
//! writer can change what we copy but can never make us read or write outside the window.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Owner of a memory region (a mapping, a heap block) that a [`SharedMem`] keeps alive.
///
/// # Safety
/// For as long as the owner lives, `as_ptr() .. as_ptr() + len()` must be valid for reads and
/// writes, must not move, and `as_ptr()` must be aligned to 8 bytes.
pub unsafe trait MemoryOwner: Send + Sync + 'static {
    /// Start of the region.
    fn as_ptr(&self) -> *mut u8;
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// True when the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An access to shared memory that could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The access does not lie inside the region.
    #[error("access of {len} bytes at offset {offset} is outside a {size}-byte shared region")]
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// Size of the region.
        size: usize,
    },
    /// An atomic access was not naturally aligned.
    #[error("atomic access at offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// Offset asked for.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
}

/// A cloneable, bounds-checked window over shared memory.
#[derive(Clone)]
pub struct SharedMem {
    base: NonNull<u8>,
    len: usize,
    owner: Arc<dyn MemoryOwner>,
}

// SAFETY: the window only performs volatile/atomic copies through a raw pointer whose validity is
// guaranteed by the `MemoryOwner` contract; it holds no references into the memory.
unsafe impl Send for SharedMem {}
// SAFETY: as above; concurrent copies through raw pointers are how peers share this memory.
unsafe impl Sync for SharedMem {}

impl fmt::Debug for SharedMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMem")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

/// Zeroed heap memory, page aligned: the backing for tests, benches and in-process peers.
pub struct HeapMem {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the block is exclusively owned and only accessed through raw pointers by SharedMem.
unsafe impl Send for HeapMem {}
// SAFETY: as above.
unsafe impl Sync for HeapMem {}

impl HeapMem {
    /// Allocate `len` zeroed bytes aligned to 4096.
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1), 4096).expect("heap region size overflow");
        // SAFETY: the layout has a nonzero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, layout }
    }
}

impl Drop for HeapMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the allocation is valid, fixed and 4096-aligned for the owner's lifetime.
unsafe impl MemoryOwner for HeapMem {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl SharedMem {
    /// A window over the whole of `owner`'s region.
    pub fn new(owner: Arc<dyn MemoryOwner>) -> Self {
        let base = NonNull::new(owner.as_ptr()).expect("MemoryOwner returned a null pointer");
        let len = owner.len();
        Self { base, len, owner }
    }

    /// Zeroed, page-aligned heap memory of `len` bytes.
    pub fn alloc(len: usize) -> Self {
        let mut mem = Self::new(Arc::new(HeapMem::new(len)));
        mem.len = len;
        mem
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first byte, for address arithmetic (DMA addresses, external buffers).
    /// Never dereference it outside the crates that own shared memory.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The owner that keeps this memory alive.
    pub fn owner(&self) -> &Arc<dyn MemoryOwner> {
        &self.owner
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MemError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(MemError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    fn check_atomic(&self, offset: usize, align: usize) -> Result<(), MemError> {
        self.check(offset, align)?;
        if !(self.base.as_ptr() as usize + offset).is_multiple_of(align) {
            return Err(MemError::Misaligned { offset, align });
        }
        Ok(())
    }

    /// A narrower window `offset .. offset + len` sharing the same owner.
    pub fn subrange(&self, offset: usize, len: usize) -> Result<SharedMem, MemError> {
        self.check(offset, len)?;
        // SAFETY: offset + len <= self.len, so the result stays inside the owner's region.
        let base = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) };
        Ok(SharedMem {
            base,
            len,
            owner: self.owner.clone(),
        })
    }

    /// Copy `dst.len()` bytes starting at `offset` out of shared memory.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.check(offset, dst.len())?;
        // SAFETY: the range was bounds-checked above and the owner keeps it valid.
        unsafe { volatile_copy_out(self.base.as_ptr().add(offset), dst) };
        Ok(())
    }

    /// Copy `src` into shared memory at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), MemError> {
        self.check(offset, src.len())?;
        // SAFETY: the range was bounds-checked above and the owner keeps it valid.
        unsafe { volatile_copy_in(self.base.as_ptr().add(offset), src) };
        Ok(())
    }

    /// Set `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MemError> {
        self.check(offset, len)?;
        for i in 0..len {
            // SAFETY: offset + i < offset + len, which was bounds-checked above.
            unsafe { self.base.as_ptr().add(offset + i).write_volatile(byte) };
        }
        Ok(())
    }

    /// Copy a bytes-only value (`zerocopy::FromBytes`) out of shared memory.
    pub fn read_obj<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> Result<T, MemError> {
        let mut value = T::new_zeroed();
        self.read(offset, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Copy a bytes-only value into shared memory.
    pub fn write_obj<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) -> Result<(), MemError> {
        self.write(offset, value.as_bytes())
    }

    fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, MemError> {
        self.check_atomic(offset, 4)?;
        // SAFETY: in bounds and 4-aligned (checked); AtomicU32 has the layout of u32 and any bit
        // pattern is valid. The reference lives no longer than `self`, which keeps the owner alive.
        Ok(unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) })
    }

    fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, MemError> {
        self.check_atomic(offset, 8)?;
        // SAFETY: in bounds and 8-aligned (checked); see `atomic_u32`.
        Ok(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast()) })
    }

    /// Atomically load a u32 (acquire).
    pub fn load_u32(&self, offset: usize) -> Result<u32, MemError> {
        Ok(self.atomic_u32(offset)?.load(Ordering::Acquire))
    }

    /// Atomically store a u32 (release).
    pub fn store_u32(&self, offset: usize, value: u32) -> Result<(), MemError> {
        self.atomic_u32(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Atomically OR bits into a u32; returns the previous value.
    pub fn fetch_or_u32(&self, offset: usize, bits: u32) -> Result<u32, MemError> {
        Ok(self.atomic_u32(offset)?.fetch_or(bits, Ordering::SeqCst))
    }

    /// Atomically clear bits in a u32; returns the previous value.
    pub fn fetch_and_u32(&self, offset: usize, mask: u32) -> Result<u32, MemError> {
        Ok(self.atomic_u32(offset)?.fetch_and(mask, Ordering::SeqCst))
    }

    /// Atomically swap a u32; returns the previous value.
    pub fn swap_u32(&self, offset: usize, value: u32) -> Result<u32, MemError> {
        Ok(self.atomic_u32(offset)?.swap(value, Ordering::SeqCst))
    }

    /// Atomically load a u64 (acquire).
    pub fn load_u64(&self, offset: usize) -> Result<u64, MemError> {
        Ok(self.atomic_u64(offset)?.load(Ordering::Acquire))
    }

    /// Atomically store a u64 (release).
    pub fn store_u64(&self, offset: usize, value: u64) -> Result<(), MemError> {
        self.atomic_u64(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Atomically add to a u64; returns the previous value.
    pub fn fetch_add_u64(&self, offset: usize, value: u64) -> Result<u64, MemError> {
        Ok(self.atomic_u64(offset)?.fetch_add(value, Ordering::SeqCst))
    }
}

/// Copy from peer memory to a private buffer: 8-byte volatile loads where the peer side is
/// aligned (four per loop turn), single bytes at the edges.
///
/// # Safety
/// `src .. src + dst.len()` must be valid for reads.
unsafe fn volatile_copy_out(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let d = dst.as_mut_ptr();
    let head = (src.align_offset(8)).min(len);
    let mut i = 0;
    while i < head {
        // SAFETY: i < len: in the caller-guaranteed source range and inside `dst`.
        unsafe { d.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
    while i + 32 <= len {
        // SAFETY: src + i is 8-aligned (head consumed the misalignment); i + 32 <= len keeps all
        // four words in range on both sides; `dst` is private, so unaligned plain stores are fine.
        unsafe {
            let s = src.add(i).cast::<u64>();
            let (a, b, c, e) = (
                s.read_volatile(),
                s.add(1).read_volatile(),
                s.add(2).read_volatile(),
                s.add(3).read_volatile(),
            );
            let o = d.add(i).cast::<u64>();
            o.write_unaligned(a);
            o.add(1).write_unaligned(b);
            o.add(2).write_unaligned(c);
            o.add(3).write_unaligned(e);
        }
        i += 32;
    }
    while i + 8 <= len {
        // SAFETY: as above, one word.
        unsafe {
            let w = src.add(i).cast::<u64>().read_volatile();
            d.add(i).cast::<u64>().write_unaligned(w);
        }
        i += 8;
    }
    while i < len {
        // SAFETY: i < len, in range on both sides.
        unsafe { d.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// Copy a private buffer into peer memory; the mirror of [`volatile_copy_out`].
///
/// # Safety
/// `dst .. dst + src.len()` must be valid for writes.
unsafe fn volatile_copy_in(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let s = src.as_ptr();
    let head = (dst.align_offset(8)).min(len);
    let mut i = 0;
    while i < head {
        // SAFETY: i < len, in range on both sides.
        unsafe { dst.add(i).write_volatile(s.add(i).read()) };
        i += 1;
    }
    while i + 32 <= len {
        // SAFETY: dst + i is 8-aligned; i + 32 <= len keeps all four words in range on both
        // sides; `src` is private, so unaligned plain loads are fine.
        unsafe {
            let p = s.add(i).cast::<u64>();
            let (a, b, c, e) = (
                p.read_unaligned(),
                p.add(1).read_unaligned(),
                p.add(2).read_unaligned(),
                p.add(3).read_unaligned(),
            );
            let o = dst.add(i).cast::<u64>();
            o.write_volatile(a);
            o.add(1).write_volatile(b);
            o.add(2).write_volatile(c);
            o.add(3).write_volatile(e);
        }
        i += 32;
    }
    while i + 8 <= len {
        // SAFETY: as above, one word.
        unsafe {
            let w = s.add(i).cast::<u64>().read_unaligned();
            dst.add(i).cast::<u64>().write_volatile(w);
        }
        i += 8;
    }
    while i < len {
        // SAFETY: i < len, in range on both sides.
        unsafe { dst.add(i).write_volatile(s.add(i).read()) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip_at_every_alignment() {
        let mem = SharedMem::alloc(256);
        for off in 0..16 {
            for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 40, 64, 100, 200] {
                let src: Vec<u8> = (0..len).map(|i| (i * 7 + off) as u8).collect();
                mem.write(off, &src).unwrap();
                let mut dst = vec![0u8; len];
                mem.read(off, &mut dst).unwrap();
                assert_eq!(src, dst, "off {off} len {len}");
            }
        }
    }

    #[test]
    fn bounds_and_alignment_are_enforced() {
        let mem = SharedMem::alloc(64);
        let mut buf = [0u8; 8];
        assert!(matches!(
            mem.read(60, &mut buf),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(matches!(
            mem.read(usize::MAX, &mut buf),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(matches!(mem.load_u32(2), Err(MemError::Misaligned { .. })));
        assert!(matches!(
            mem.load_u32(64),
            Err(MemError::OutOfBounds { .. })
        ));
        let sub = mem.subrange(16, 16).unwrap();
        sub.store_u32(0, 0xdead_beef).unwrap();
        assert_eq!(mem.load_u32(16).unwrap(), 0xdead_beef);
        assert!(sub.subrange(8, 9).is_err());
    }
}
