//! Reading (and writing) guest memory named by GPA-direct ranges. With DPDK's IOVA-as-VA, `pfn * 4096 + offset` is
//! a virtual address in the guest's process, so the host copies through `process_vm_readv`/`process_vm_writev`,
//! falling back to `/proc/<pid>/mem`. The kernel checks every address, so a hostile or buggy guest's bad address
//! becomes a typed [`GuestMemError::Fault`], never a SIGSEGV in the host. For an in-process guest, live DMA blocks
//! (`vmbus_uio::dma::registry`) and ranges registered with [`GuestMemory::register_region`] are copied directly
//! instead; [`GuestMemory::read_ranges`] gathers a whole GPA-direct packet with one syscall per 64 ranges.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{OnceLock, RwLock};
use vmbus_ring::GpaRange;
use vmbus_uio::dma::registry;

/// Ranges gathered per `process_vm_readv` call (the kernel allows 1024).
const IOV_BATCH: usize = 64;

/// Guest page size used to turn a pfn into an address.
pub const GUEST_PAGE_SIZE: u64 = 4096;

/// A guest memory access that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuestMemError {
    /// pfn × 4096 + offset + len does not fit the address space.
    #[error("guest address pfn {pfn:#x} offset {offset:#x} len {len} overflows")]
    Overflow {
        /// Page frame number.
        pfn: u64,
        /// Offset in the page.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// The caller's buffer is shorter than `len`.
    #[error("buffer of {have} bytes is too small for a {len}-byte guest access")]
    BufferTooSmall {
        /// Bytes needed.
        len: u32,
        /// Bytes available.
        have: usize,
    },
    /// The address is not mapped (readable/writable) in the guest.
    #[error("guest address {addr:#x}+{len} is not mapped in process {pid}")]
    Fault {
        /// Process.
        pid: u32,
        /// Start address.
        addr: u64,
        /// Length.
        len: usize,
    },
    /// Only part of the range could be copied (it runs into an unmapped page).
    #[error(
        "only {done} of {len} bytes at guest address {addr:#x} in process {pid} could be copied"
    )]
    Partial {
        /// Process.
        pid: u32,
        /// Start address.
        addr: u64,
        /// Length asked for.
        len: usize,
        /// Bytes copied.
        done: usize,
    },
    /// The guest process is gone.
    #[error("guest process {pid} does not exist")]
    NoProcess {
        /// Process.
        pid: u32,
    },
    /// Any other OS error.
    #[error("cannot access memory of process {pid} at {addr:#x}: {source}")]
    Io {
        /// Process.
        pid: u32,
        /// Start address.
        addr: u64,
        /// The OS error.
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// process_vm_readv/writev, then /proc/<pid>/mem if the syscall is unavailable or refused.
    Auto,
    /// /proc/<pid>/mem only.
    ProcMem,
}

/// Access to one guest process's memory.
#[derive(Debug)]
pub struct GuestMemory {
    pid: u32,
    in_process: bool,
    method: Method,
    regions: RwLock<Vec<(usize, usize)>>,
    proc_mem: OnceLock<Result<File, io::ErrorKind>>,
}

impl GuestMemory {
    /// The guest runs in this process (e.g. our own driver in a test).
    pub fn in_process() -> Self {
        Self::new(std::process::id(), true)
    }

    /// The guest is process `pid` (e.g. `ControlPage::guest_pid()` of an interposed DPDK).
    pub fn process(pid: u32) -> Self {
        Self::new(pid, pid == std::process::id())
    }

    fn new(pid: u32, in_process: bool) -> Self {
        Self {
            pid,
            in_process,
            method: Method::Auto,
            regions: RwLock::new(Vec::new()),
            proc_mem: OnceLock::new(),
        }
    }

    /// Use `/proc/<pid>/mem` only (the fallback path), e.g. where `process_vm_readv` is filtered.
    pub fn use_proc_mem(mut self) -> Self {
        self.method = Method::ProcMem;
        self
    }

    /// The guest's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Register `[start, start + len)` of this process as DMA memory the guest hands to the host; in-process reads
    /// and writes that fall entirely inside a registered range are plain memory copies (no syscall).
    ///
    /// # Safety
    /// Until [`GuestMemory::unregister_region`] is called (or this value is dropped), the range must stay mapped and
    /// readable and writable. A direct copy is only safe for such memory: anything else may fault.
    pub unsafe fn register_region(&self, start: usize, len: usize) {
        if len == 0 || start.checked_add(len).is_none() {
            return;
        }
        self.regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((start, len));
    }

    /// Forget a region registered with `start`.
    pub fn unregister_region(&self, start: usize) {
        self.regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&(s, _)| s != start);
    }

    fn registered(&self, addr: usize, len: usize) -> bool {
        self.in_process
            && self
                .regions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|&(s, l)| addr >= s && addr - s <= l && len <= l - (addr - s))
    }

    fn address(pfn: u64, offset: u32, len: u32, have: usize) -> Result<usize, GuestMemError> {
        if have < len as usize {
            return Err(GuestMemError::BufferTooSmall { len, have });
        }
        pfn.checked_mul(GUEST_PAGE_SIZE)
            .and_then(|a| a.checked_add(u64::from(offset)))
            .filter(|a| a.checked_add(u64::from(len)).is_some())
            .and_then(|a| usize::try_from(a).ok())
            .filter(|a| a.checked_add(len as usize).is_some())
            .ok_or(GuestMemError::Overflow { pfn, offset, len })
    }

    /// Copy `len` bytes at guest address `pfn × 4096 + offset` into `out[..len]`.
    pub fn read(
        &self,
        pfn: u64,
        offset: u32,
        len: u32,
        out: &mut [u8],
    ) -> Result<(), GuestMemError> {
        let addr = Self::address(pfn, offset, len, out.len())?;
        self.read_at(addr as u64, &mut out[..len as usize])
    }

    /// Copy `src[..len]` to guest address `pfn × 4096 + offset`.
    pub fn write(&self, pfn: u64, offset: u32, len: u32, src: &[u8]) -> Result<(), GuestMemError> {
        let addr = Self::address(pfn, offset, len, src.len())?;
        self.write_at(addr as u64, &src[..len as usize])
    }

    /// Copy `out.len()` bytes at guest virtual address `addr`.
    pub fn read_at(&self, addr: u64, out: &mut [u8]) -> Result<(), GuestMemError> {
        if out.is_empty() {
            return Ok(());
        }
        if self.in_process && registry::copy_from_dma(addr, out) {
            return Ok(());
        }
        let a = usize::try_from(addr).map_err(|_| self.fault(addr, out.len()))?;
        if self.registered(a, out.len()) {
            // SAFETY: the range lies inside a region the caller of `register_region` promised stays mapped and
            // readable; `out` is a distinct local buffer, so the ranges cannot overlap.
            unsafe { std::ptr::copy_nonoverlapping(a as *const u8, out.as_mut_ptr(), out.len()) };
            return Ok(());
        }
        let len = out.len();
        self.transfer(addr, len, Dir::Read(out))
    }

    /// Copy `src` to guest virtual address `addr`.
    pub fn write_at(&self, addr: u64, src: &[u8]) -> Result<(), GuestMemError> {
        if src.is_empty() {
            return Ok(());
        }
        if self.in_process && registry::copy_to_dma(addr, src) {
            return Ok(());
        }
        let a = usize::try_from(addr).map_err(|_| self.fault(addr, src.len()))?;
        if self.registered(a, src.len()) {
            // SAFETY: the range lies inside a region the caller of `register_region` promised stays mapped and
            // writable; `src` is a distinct buffer, so the ranges cannot overlap.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), a as *mut u8, src.len()) };
            return Ok(());
        }
        self.transfer(addr, src.len(), Dir::Write(src))
    }

    /// Copy GPA ranges back to back into `out`; returns the number of bytes written. In-process DMA memory is
    /// copied directly; the other ranges are gathered with one `process_vm_readv` per [`IOV_BATCH`] ranges (and
    /// retried one by one for a precise error when a batch comes up short).
    pub fn read_ranges(
        &self,
        ranges: impl Iterator<Item = GpaRange>,
        out: &mut [u8],
    ) -> Result<usize, GuestMemError> {
        let mut batch = [(0u64, 0usize, 0usize); IOV_BATCH];
        let mut n = 0;
        let mut at = 0usize;
        for r in ranges {
            let len = r.len as usize;
            let have = out.len() - at;
            let addr = Self::address(r.pfn, r.offset, r.len, have)? as u64;
            let dst = &mut out[at..at + len];
            let direct = self.in_process
                && (registry::copy_from_dma(addr, dst) || self.copy_registered(addr, dst));
            if !direct && len > 0 {
                batch[n] = (addr, at, len);
                n += 1;
                if n == IOV_BATCH {
                    self.read_batch(&batch[..n], out)?;
                    n = 0;
                }
            }
            at += len;
        }
        if n > 0 {
            self.read_batch(&batch[..n], out)?;
        }
        Ok(at)
    }

    fn copy_registered(&self, addr: u64, dst: &mut [u8]) -> bool {
        match usize::try_from(addr) {
            Ok(a) if self.registered(a, dst.len()) => {
                // SAFETY: as in `read_at`: inside a region its registrant keeps mapped; `dst` is a local buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(a as *const u8, dst.as_mut_ptr(), dst.len())
                };
                true
            }
            _ => false,
        }
    }

    /// Read `(addr, out offset, len)` ranges with one syscall; fall back to one range at a time.
    fn read_batch(
        &self,
        batch: &[(u64, usize, usize)],
        out: &mut [u8],
    ) -> Result<(), GuestMemError> {
        if self.method == Method::Auto {
            let base = out.as_mut_ptr();
            let empty = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            let mut local = [empty; IOV_BATCH];
            let mut remote = [empty; IOV_BATCH];
            let mut total = 0;
            for (i, &(addr, at, len)) in batch.iter().enumerate() {
                // `at + len <= out.len()` was checked by the caller, so this stays inside `out`.
                local[i].iov_base = base.wrapping_add(at).cast();
                local[i].iov_len = len;
                remote[i].iov_base = addr as usize as *mut libc::c_void;
                remote[i].iov_len = len;
                total += len;
            }
            let k = batch.len() as libc::c_ulong;
            // SAFETY: every local iovec lies inside `out`, which we borrow mutably for the call; the kernel
            // checks the remote addresses and reports EFAULT/short counts instead of touching unmapped memory.
            let got = unsafe {
                libc::process_vm_readv(
                    self.pid as libc::pid_t,
                    local.as_ptr(),
                    k,
                    remote.as_ptr(),
                    k,
                    0,
                )
            };
            if got >= 0 && got as usize == total {
                return Ok(());
            }
        }
        for &(addr, at, len) in batch {
            self.read_at(addr, &mut out[at..at + len])?;
        }
        Ok(())
    }

    fn fault(&self, addr: u64, len: usize) -> GuestMemError {
        GuestMemError::Fault {
            pid: self.pid,
            addr,
            len,
        }
    }

    fn transfer(&self, addr: u64, len: usize, mut dir: Dir<'_>) -> Result<(), GuestMemError> {
        if self.method == Method::Auto {
            match self.vm_syscall(addr, &mut dir) {
                Ok(done) if done == len => return Ok(()),
                Ok(0) => return Err(self.fault(addr, len)),
                Ok(done) => {
                    return Err(GuestMemError::Partial {
                        pid: self.pid,
                        addr,
                        len,
                        done,
                    });
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EFAULT) => return Err(self.fault(addr, len)),
                    Some(libc::ESRCH) => return Err(GuestMemError::NoProcess { pid: self.pid }),
                    // Syscall filtered or not permitted: try /proc/<pid>/mem.
                    Some(libc::ENOSYS | libc::EPERM) => {}
                    _ => {
                        return Err(GuestMemError::Io {
                            pid: self.pid,
                            addr,
                            source: e,
                        });
                    }
                },
            }
        }
        self.proc_mem_transfer(addr, len, dir)
    }

    fn vm_syscall(&self, addr: u64, dir: &mut Dir<'_>) -> io::Result<usize> {
        let (local_base, len) = match dir {
            Dir::Read(b) => (b.as_mut_ptr().cast::<libc::c_void>(), b.len()),
            Dir::Write(b) => (b.as_ptr().cast_mut().cast::<libc::c_void>(), b.len()),
        };
        let local = libc::iovec {
            iov_base: local_base,
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: len,
        };
        let pid = self.pid as libc::pid_t;
        // SAFETY: `local` describes a buffer we own for the whole call (written only for reads, where it is
        // `&mut`); the remote address is checked by the kernel, which returns EFAULT instead of touching memory
        // that is not mapped in the target.
        let n = unsafe {
            match dir {
                Dir::Read(_) => libc::process_vm_readv(pid, &local, 1, &remote, 1, 0),
                Dir::Write(_) => libc::process_vm_writev(pid, &local, 1, &remote, 1, 0),
            }
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn proc_mem_transfer(&self, addr: u64, len: usize, dir: Dir<'_>) -> Result<(), GuestMemError> {
        let file = self
            .proc_mem
            .get_or_init(|| {
                File::options()
                    .read(true)
                    .write(true)
                    .open(format!("/proc/{}/mem", self.pid))
                    .map_err(|e| e.kind())
            })
            .as_ref()
            .map_err(|&kind| match kind {
                io::ErrorKind::NotFound => GuestMemError::NoProcess { pid: self.pid },
                _ => GuestMemError::Io {
                    pid: self.pid,
                    addr,
                    source: io::Error::from(kind),
                },
            })?;
        let res = match dir {
            Dir::Read(buf) => file.read_at(buf, addr),
            Dir::Write(buf) => file.write_at(buf, addr),
        };
        match res {
            Ok(n) if n == len => Ok(()),
            Ok(0) => Err(self.fault(addr, len)),
            Ok(done) => Err(GuestMemError::Partial {
                pid: self.pid,
                addr,
                len,
                done,
            }),
            // /proc/<pid>/mem reports an unmapped address as EIO.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EFAULT)) => {
                Err(self.fault(addr, len))
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(GuestMemError::NoProcess { pid: self.pid })
            }
            Err(source) => Err(GuestMemError::Io {
                pid: self.pid,
                addr,
                source,
            }),
        }
    }
}

enum Dir<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(addr: usize) -> (u64, u32) {
        (
            (addr as u64) / GUEST_PAGE_SIZE,
            (addr as u64 % GUEST_PAGE_SIZE) as u32,
        )
    }

    #[test]
    fn reads_and_writes_own_heap_through_the_syscall() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mem = GuestMemory::in_process();
        // A range crossing a page boundary.
        let (pfn, off) = split(data.as_ptr() as usize + 4000);
        let mut out = vec![0u8; 300];
        mem.read(pfn, off, 300, &mut out).unwrap();
        assert_eq!(&out[..], &data[4000..4300]);
        let mut target = vec![0u8; 64];
        let (pfn, off) = split(target.as_mut_ptr() as usize);
        mem.write(pfn, off, 5, b"hello world").unwrap();
        assert_eq!(&target[..6], b"hello\0");
    }

    #[test]
    fn bad_addresses_are_errors_not_signals() {
        let mem = GuestMemory::in_process();
        let mut out = [0u8; 16];
        assert!(matches!(
            mem.read(0, 0, 16, &mut out),
            Err(GuestMemError::Fault {
                addr: 0,
                len: 16,
                ..
            })
        ));
        assert!(matches!(
            mem.read(1 << 40, 8, 16, &mut out),
            Err(GuestMemError::Fault { .. })
        ));
        assert!(matches!(
            mem.write(0, 64, 4, &out),
            Err(GuestMemError::Fault { .. })
        ));
        assert!(matches!(
            mem.read(u64::MAX, 0, 1, &mut out),
            Err(GuestMemError::Overflow { .. })
        ));
        assert!(matches!(
            mem.read(1, 0, 17, &mut out),
            Err(GuestMemError::BufferTooSmall { len: 17, have: 16 })
        ));
        let proc_mem = GuestMemory::in_process().use_proc_mem();
        assert!(matches!(
            proc_mem.read(0, 0, 16, &mut out),
            Err(GuestMemError::Fault { .. })
        ));
    }

    #[test]
    fn a_range_running_into_an_unmapped_page_is_partial() {
        // Map two pages, unmap the second: a read across the boundary copies only the first part.
        // SAFETY: a fresh anonymous mapping; we only unmap the page we mapped.
        let base = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap(p.cast::<u8>().add(4096).cast(), 4096);
            p as usize
        };
        let mem = GuestMemory::in_process();
        let mut out = [0u8; 200];
        let (pfn, off) = split(base + 4000);
        let err = mem.read(pfn, off, 200, &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                GuestMemError::Partial {
                    done: 96,
                    len: 200,
                    ..
                }
            ),
            "{err:?}"
        );
        // SAFETY: unmapping the first page we mapped above.
        unsafe { libc::munmap(base as *mut libc::c_void, 4096) };
    }

    #[test]
    fn registered_regions_are_copied_directly() {
        let mut buf = vec![0u8; 8192];
        buf[100..104].copy_from_slice(b"dma!");
        let mem = GuestMemory::in_process().use_proc_mem();
        let start = buf.as_mut_ptr() as usize;
        // SAFETY: `buf` outlives every access below and is unregistered before it is dropped.
        unsafe { mem.register_region(start, buf.len()) };
        assert!(mem.registered(start + 100, 4));
        assert!(!mem.registered(start + 8190, 4), "straddles the end");
        let mut out = [0u8; 4];
        let (pfn, off) = split(start + 100);
        mem.read(pfn, off, 4, &mut out).unwrap();
        assert_eq!(&out, b"dma!");
        mem.write(pfn, off, 4, b"back").unwrap();
        mem.unregister_region(start);
        assert!(!mem.registered(start + 100, 4));
        assert_eq!(&buf[100..104], b"back");
    }

    fn range(addr: usize, len: u32) -> GpaRange {
        let (pfn, offset) = split(addr);
        GpaRange { len, offset, pfn }
    }

    #[test]
    fn read_ranges_gathers_dma_memory_and_batches_the_rest() {
        use vmbus_uio::{DmaMemory, IovaMode};
        let dma = DmaMemory::alloc(8192, IovaMode::Va).unwrap();
        let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 13) as u8).collect();
        dma.mem.write(0, &pattern).unwrap();
        let heap: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 1) as u8).collect();
        let dma_base = dma.iova(0) as usize;
        let heap_base = heap.as_ptr() as usize;
        // 150 ranges alternating between DMA memory (direct copy) and the heap (syscall batches of 64).
        let mut ranges = Vec::new();
        let mut want = Vec::new();
        for i in 0..150usize {
            let (len, off) = (17 + i % 40, (i * 53) % 4000);
            if i % 2 == 0 {
                ranges.push(range(dma_base + off, len as u32));
                want.extend_from_slice(&pattern[off..off + len]);
            } else {
                ranges.push(range(heap_base + off * 4, len as u32));
                want.extend_from_slice(&heap[off * 4..off * 4 + len]);
            }
        }
        for mem in [
            GuestMemory::in_process(),
            GuestMemory::in_process().use_proc_mem(),
        ] {
            let mut out = vec![0u8; want.len()];
            assert_eq!(
                mem.read_ranges(ranges.iter().copied(), &mut out).unwrap(),
                want.len()
            );
            assert_eq!(out, want);
        }
        // A hostile range among good ones is a typed error; a too-small buffer is refused.
        let bad = [
            range(heap_base, 8),
            GpaRange {
                len: 8,
                offset: 0,
                pfn: 0,
            },
        ];
        let mut out = [0u8; 16];
        let err = GuestMemory::in_process().read_ranges(bad.into_iter(), &mut out);
        assert!(
            matches!(err, Err(GuestMemError::Fault { addr: 0, .. })),
            "{err:?}"
        );
        let err = GuestMemory::in_process().read_ranges(ranges.iter().copied(), &mut out);
        assert!(
            matches!(err, Err(GuestMemError::BufferTooSmall { .. })),
            "{err:?}"
        );
    }

    /// Fork a child that overwrites a buffer (so its copy differs from ours) and waits; read its memory.
    #[test]
    fn reads_and_writes_a_child_process() {
        let mut buf = vec![0u8; 4096];
        let addr = buf.as_mut_ptr() as usize;
        let mut fds = [0; 2];
        // SAFETY: plain pipe creation into a local array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only writes to memory it owns (its copy of `buf`), writes one byte to a pipe and
        // sleeps: all async-signal-safe, no allocation, so forking a multithreaded test process is sound.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: see above; `addr` is this process's copy of `buf`.
            unsafe {
                for i in 0..4096 {
                    *(addr as *mut u8).add(i) = (i % 251) as u8;
                }
                libc::write(fds[1], b"x".as_ptr().cast(), 1);
                libc::sleep(30);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a local.
        assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1);
        for mem in [
            GuestMemory::process(pid as u32),
            GuestMemory::process(pid as u32).use_proc_mem(),
        ] {
            let mut out = vec![0u8; 1000];
            let (pfn, off) = split(addr + 3000);
            mem.read(pfn, off, 1000, &mut out).unwrap();
            assert!(
                // Bytes 0..4 may hold the previous iteration's "ping".
                out.iter()
                    .enumerate()
                    .skip(4)
                    .all(|(i, &v)| v == ((3000 + i) % 251) as u8)
            );
            assert!(
                buf[3000..4000].iter().all(|&v| v == 0),
                "our copy is untouched"
            );
            let mut gathered = vec![0u8; 1000];
            let parts = [range(addr + 3000, 500), range(addr + 3500, 500)];
            mem.read_ranges(parts.into_iter(), &mut gathered).unwrap();
            assert_eq!(
                gathered, out,
                "one syscall for both ranges reads the same bytes"
            );
            mem.write(pfn, off, 4, b"ping").unwrap();
            let mut back = [0u8; 4];
            mem.read(pfn, off, 4, &mut back).unwrap();
            assert_eq!(&back, b"ping");
            let mut bad = [0u8; 8];
            assert!(matches!(
                mem.read(0, 0, 8, &mut bad),
                Err(GuestMemError::Fault { .. })
            ));
        }
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let gone = GuestMemory::process(pid as u32);
        let mut out = [0u8; 8];
        let (pfn, off) = split(addr);
        assert!(matches!(
            gone.read(pfn, off, 8, &mut out),
            Err(GuestMemError::NoProcess { .. })
        ));
        drop(buf);
    }
}
