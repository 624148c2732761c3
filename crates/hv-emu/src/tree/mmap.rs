//! Shared file mappings: each backing file of the emulated tree is mapped `MAP_SHARED`, so the host's view and the
//! guest's (which maps the same file, directly or through the interposer) are the same page-cache pages.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use vmbus_ring::{MemoryOwner, SharedMem};

/// A read/write `MAP_SHARED` mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; all access goes through raw pointers (SharedMem copies with
// volatile/atomic operations), which is the sharing model for memory a peer writes concurrently anyway.
unsafe impl Send for MappedFile {}
// SAFETY: as above.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Map `len` bytes of `file` from offset 0, read/write and shared. `len` must be non-zero.
    pub fn map(file: &File, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty file",
            ));
        }
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no existing memory is replaced; the fd is
        // valid for the duration of the call and the mapping outlives it independently.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }

    /// Open `path` read/write and map all of it.
    pub fn map_path(path: &Path) -> io::Result<Self> {
        let file = File::options().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        Self::map(&file, len)
    }

    /// Map `path` and wrap it as a [`SharedMem`] window.
    pub fn shared(path: &Path) -> io::Result<SharedMem> {
        Ok(SharedMem::new(Arc::new(Self::map_path(path)?)))
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `map`, and no SharedMem outlives its owner.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// SAFETY: the mapping is valid for reads and writes for `len` bytes until drop, never moves, and mmap returns
// page-aligned (hence 8-aligned) addresses.
unsafe impl MemoryOwner for MappedFile {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}
