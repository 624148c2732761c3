//! One `mmap`ed region owned by a [`vmbus_ring::MemoryOwner`]: unmapped when the last
//! [`SharedMem`] over it is dropped, so closing a device leaks no mapping.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use vmbus_ring::{MemoryOwner, SharedMem};

use crate::error::UioError;

/// The system page size (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .unwrap_or(4096)
}

/// A live `mmap` of `len` bytes.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only reached through raw pointers (SharedMem copies, atomics); the
// region itself is process-wide and not tied to a thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)`.
    pub(crate) fn map_fd(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u64,
        path: &Path,
    ) -> Result<Self, UioError> {
        let offset = libc::off_t::try_from(offset).map_err(|_| {
            UioError::Invalid(format!("{}: offset {offset} too large", path.display()))
        })?;
        Self::mmap(len, libc::MAP_SHARED, fd.as_raw_fd(), offset, path)
    }

    /// Shared memory of our own, zero filled: a sealed memfd (see [`crate::memfd`]) mapped `MAP_SHARED`, so a peer
    /// that reaches it (through `/proc/<pid>/map_files`) can read and write it but never shrink it under us or
    /// under another reader. The mapping keeps the memory once the descriptor is closed.
    /// Returns the memfd too: mapping it again gives a second view of the same pages (drop it to close it).
    pub(crate) fn anonymous(len: usize) -> Result<(Self, std::fs::File), UioError> {
        let file = crate::memfd::sealed("netvsc-dma", len as u64)?;
        let map = Self::mmap(
            len,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
            Path::new("memfd:netvsc-dma"),
        )?;
        Ok((map, file))
    }

    fn mmap(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: libc::off_t,
        path: &Path,
    ) -> Result<Self, UioError> {
        if len == 0 {
            return Err(UioError::Invalid(format!(
                "{}: cannot map 0 bytes",
                path.display()
            )));
        }
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no existing memory is
        // affected; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(UioError::sys("mmap", path));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| UioError::sys("mmap", path))?;
        Ok(Self { ptr, len })
    }

    /// Lock the pages in memory (`mlock`); they are unlocked by `munmap`.
    pub(crate) fn lock(&self) -> Result<(), UioError> {
        // SAFETY: the range is exactly our live mapping.
        if unsafe { libc::mlock(self.ptr.as_ptr().cast(), self.len) } != 0 {
            return Err(UioError::sys("mlock", "DMA memory"));
        }
        Ok(())
    }

    /// Atomically add to the u32 at `offset` (a control-page counter); returns the old value.
    pub(crate) fn fetch_add_u32(&self, offset: usize, value: u32) -> Option<u32> {
        if offset.checked_add(4)? > self.len || !offset.is_multiple_of(4) {
            return None;
        }
        // SAFETY: in bounds and 4-aligned (the mapping is page aligned); AtomicU32 has the
        // layout of u32 and the mapping outlives the reference, which ends in this call.
        let cell = unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) };
        Some(cell.fetch_add(value, Ordering::SeqCst))
    }

    /// Wrap into a shared window (the window keeps the mapping alive).
    pub(crate) fn into_shared(self) -> SharedMem {
        SharedMem::new(Arc::new(self))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mmap returned; nothing refers to it any more (every
        // SharedMem over it holds the Arc that is being dropped).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: mmap returns page-aligned memory that stays valid and fixed until Drop unmaps it.
unsafe impl MemoryOwner for Mapping {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}
