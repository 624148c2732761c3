//! Memory the host may read or write by address (RNDIS control messages, GPA-direct sends).
//!
//! An anonymous shared mapping (another process, such as the emulator, can reach it through
//! `/proc/<pid>/mem`), locked when possible. Its I/O address is either the virtual address
//! (IOVA-as-VA, as DPDK without hugepages) or the physical one from the pagemap, in 4 KiB frames.
//! IOVA-as-VA blocks are listed in a process-wide [`registry`] while they live, so an in-process host
//! emulator can copy GPA-direct data from them directly.

use std::os::fd::AsFd;

use vmbus_ring::SharedMem;

use crate::error::UioError;
use crate::mapping::{Mapping, page_size};
use crate::pagemap::PagemapReader;

pub mod registry;

/// The VMBus page size: GPA ranges and PFNs are in these units whatever the CPU's page size.
pub const HV_PAGE: u64 = 4096;

/// How I/O addresses are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovaMode {
    /// I/O address = virtual address.
    Va,
    /// I/O address = physical address (pagemap; needs CAP_SYS_ADMIN, memory locked).
    Pa,
}

/// A block of DMA-able memory.
#[derive(Debug)]
pub struct DmaMemory {
    /// The memory itself.
    pub mem: SharedMem,
    mode: IovaMode,
    locked: bool,
    /// Pa mode: the frame of every 4 KiB page, in 4 KiB units.
    frames: Vec<u64>,
    /// The memfd behind the memory, kept by [`DmaMemory::alloc_remappable`] for [`DmaMemory::remap`].
    file: Option<std::fs::File>,
}

impl DmaMemory {
    /// Allocate at least `len` bytes (rounded up to the system page size), zeroed.
    pub fn alloc(len: usize, mode: IovaMode) -> Result<Self, UioError> {
        Self::alloc_inner(len, mode, false)
    }

    /// [`DmaMemory::alloc`], keeping the memory's file open so [`DmaMemory::remap`] can map it again (one more
    /// descriptor while the block lives).
    pub fn alloc_remappable(len: usize, mode: IovaMode) -> Result<Self, UioError> {
        Self::alloc_inner(len, mode, true)
    }

    fn alloc_inner(len: usize, mode: IovaMode, keep_file: bool) -> Result<Self, UioError> {
        let page = page_size();
        let rounded = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| UioError::Invalid(format!("DMA length {len} overflows")))?;
        let (map, file) = Mapping::anonymous(rounded)?;
        let file = keep_file.then_some(file);
        let locked = match map.lock() {
            Ok(()) => true,
            // Physical addresses of unlocked memory may change: refuse; VA mode does not care.
            Err(err) if mode == IovaMode::Pa => return Err(err),
            Err(_) => false,
        };
        let mem = map.into_shared();
        // Touch every page so it is present before we look it up (and so mlock-less memory is
        // at least faulted in).
        for off in (0..rounded).step_by(page) {
            mem.write(off, &[0]).map_err(UioError::mem("DMA memory"))?;
        }
        let frames = match mode {
            IovaMode::Va => Vec::new(),
            IovaMode::Pa => {
                let reader = PagemapReader::open_self()?;
                frames_4k(&reader, mem.as_ptr() as u64, rounded as u64)?
            }
        };
        if mode == IovaMode::Va {
            // SAFETY: `mem` keeps the mapping alive at least as long as `self`, and `Drop` unregisters it first.
            unsafe { registry::register(mem.as_ptr() as usize, mem.len()) };
        }
        Ok(Self {
            mem,
            mode,
            locked,
            frames,
            file,
        })
    }

    /// A second mapping of the same pages at a new address (writes through either are seen by both; I/O addresses
    /// stay those of [`DmaMemory::mem`]). Each call maps afresh, so no two callers get the same address. Only for
    /// blocks from [`DmaMemory::alloc_remappable`].
    pub fn remap(&self) -> Result<SharedMem, UioError> {
        let file = self.file.as_ref().ok_or_else(|| {
            UioError::Invalid("DMA block was not allocated remappable".to_string())
        })?;
        let path = std::path::Path::new("memfd:netvsc-dma");
        Ok(Mapping::map_fd(file.as_fd(), self.mem.len(), 0, path)?.into_shared())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// True when empty (never: allocations are at least one page).
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// The address mode.
    pub fn mode(&self) -> IovaMode {
        self.mode
    }

    /// Whether `mlock` succeeded.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// I/O address of byte `offset`, or `None` past the end.
    pub fn try_iova(&self, offset: usize) -> Option<u64> {
        if offset >= self.len() {
            return None;
        }
        Some(match self.mode {
            IovaMode::Va => self.mem.as_ptr() as u64 + offset as u64,
            IovaMode::Pa => {
                self.frames[offset / HV_PAGE as usize] * HV_PAGE + offset as u64 % HV_PAGE
            }
        })
    }

    /// I/O address of byte `offset`.
    ///
    /// # Panics
    /// When `offset >= len()` (a caller bug, never peer input).
    pub fn iova(&self, offset: usize) -> u64 {
        self.try_iova(offset)
            .unwrap_or_else(|| panic!("DMA offset {offset} beyond {} bytes", self.len()))
    }

    /// 4 KiB frame number of the page holding `offset` (for GPA ranges), or `None` past the end.
    pub fn try_pfn(&self, offset: usize) -> Option<u64> {
        self.try_iova(offset).map(|a| a / HV_PAGE)
    }

    /// 4 KiB frame number of the page holding `offset`.
    ///
    /// # Panics
    /// When `offset >= len()`.
    pub fn pfn(&self, offset: usize) -> u64 {
        self.iova(offset) / HV_PAGE
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        if self.mode == IovaMode::Va {
            registry::unregister(self.mem.as_ptr() as usize);
        }
    }
}

/// 4 KiB frame numbers of `len` bytes at `va` (page aligned), looking up each system page of
/// `reader.page_size()` bytes once and splitting it into 4 KiB frames.
pub(crate) fn frames_4k(reader: &PagemapReader, va: u64, len: u64) -> Result<Vec<u64>, UioError> {
    let page = reader.page_size();
    let per_page = (page / HV_PAGE).max(1);
    let mut frames = Vec::with_capacity((len / HV_PAGE) as usize);
    let mut at = va;
    while at < va + len {
        let first = reader.pfn(at)? * per_page + (at % page) / HV_PAGE;
        let in_this_page = ((page - at % page) / HV_PAGE).min((va + len - at) / HV_PAGE);
        frames.extend((0..in_this_page).map(|i| first + i));
        at += in_this_page * HV_PAGE;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// The host reaches DMA memory through `/proc/<pid>/map_files` (or reads it in process): a peer's truncate of
    /// it must fail, so neither we nor an in-process emulator reading it can be killed with SIGBUS.
    #[test]
    fn dma_memory_cannot_be_shrunk_by_a_peer() {
        let dma = DmaMemory::alloc(3 * 4096, IovaMode::Va).unwrap();
        let start = dma.mem.as_ptr() as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{start:x}-")))
            .expect("the DMA mapping is listed");
        assert!(line.contains("/memfd:netvsc-dma"), "{line}");
        let range = line.split_whitespace().next().unwrap();
        match std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/map_files/{range}"))
        {
            Ok(peer) => {
                let e = peer.set_len(0).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(crate::memfd::seals(&peer), crate::memfd::SEALS);
            }
            // map_files needs CAP_SYS_ADMIN; without it no peer can reach the memory by a path at all.
            Err(e) => {
                eprintln!("map_files not open to this process ({e}); seals checked by memfd tests")
            }
        }
        dma.mem.write(dma.len() - 1, &[7]).unwrap();
        let mut b = [0u8];
        dma.mem.read(dma.len() - 1, &mut b).unwrap();
        assert_eq!(b, [7], "still mapped and usable");
    }

    #[test]
    fn a_remapped_view_shares_the_pages_at_another_address() {
        let dma = DmaMemory::alloc_remappable(2 * 4096, IovaMode::Va).unwrap();
        let a = dma.remap().unwrap();
        let b = dma.remap().unwrap();
        assert_eq!(a.len(), dma.len());
        assert_ne!(a.as_ptr(), dma.mem.as_ptr());
        assert_ne!(a.as_ptr(), b.as_ptr(), "every view is a fresh mapping");
        a.write(4097, b"view").unwrap();
        let mut seen = [0u8; 4];
        dma.mem.read(4097, &mut seen).unwrap();
        assert_eq!(&seen, b"view");
        dma.mem.write(10, b"back").unwrap();
        b.read(10, &mut seen).unwrap();
        assert_eq!(&seen, b"back");
        // The view outlives the block (it holds its own mapping).
        drop(dma);
        a.read(4097, &mut seen).unwrap();
        assert_eq!(&seen, b"view");
        let plain = DmaMemory::alloc(4096, IovaMode::Va).unwrap();
        assert!(matches!(plain.remap(), Err(UioError::Invalid(_))));
    }

    #[test]
    fn va_mode_addresses_are_virtual() {
        let dma = DmaMemory::alloc(10_000, IovaMode::Va).unwrap();
        assert_eq!(dma.len() % page_size(), 0);
        assert!(dma.len() >= 10_000);
        let base = dma.mem.as_ptr() as u64;
        assert_eq!(base % HV_PAGE, 0);
        assert_eq!(dma.iova(0), base);
        assert_eq!(dma.iova(5000), base + 5000);
        assert_eq!(dma.pfn(4095), base / 4096);
        assert_eq!(dma.pfn(4096), base / 4096 + 1);
        assert_eq!(dma.try_iova(dma.len()), None);
        // Writes through the window land at the virtual address iova() names.
        dma.mem.write(4100, b"hello").unwrap();
        let mut copy = [0u8; 5];
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        mem.read_exact_at(&mut copy, dma.iova(4100)).unwrap();
        assert_eq!(&copy, b"hello");
    }

    #[test]
    fn va_blocks_are_registered_while_they_live() {
        let dma = DmaMemory::alloc(8192, IovaMode::Va).unwrap();
        let base = dma.iova(0);
        dma.mem.write(100, b"dma!").unwrap();
        assert!(registry::is_dma(base, dma.len()));
        assert!(!registry::is_dma(base + 8190, 4), "straddles the end");
        assert!(!registry::is_dma(base.wrapping_sub(4096), 4));
        let mut out = [0u8; 4];
        assert!(registry::copy_from_dma(base + 100, &mut out));
        assert_eq!(&out, b"dma!");
        assert!(registry::copy_to_dma(base + 200, b"back"));
        let mut seen = [0u8; 4];
        dma.mem.read(200, &mut seen).unwrap();
        assert_eq!(&seen, b"back");
        // Out-of-region addresses are refused without being touched.
        assert!(!registry::copy_from_dma(0, &mut out));
        assert!(!registry::copy_from_dma(u64::MAX - 2, &mut out));
        // Keep the mapping alive (so no other allocation can reuse the address) and drop the block.
        let keep = dma.mem.clone();
        drop(dma);
        assert!(!registry::is_dma(base, 4));
        assert!(!registry::copy_from_dma(base + 100, &mut out));
        drop(keep);
    }

    #[test]
    fn pa_mode_matches_pagemap_or_says_why_not() {
        match DmaMemory::alloc(3 * 4096, IovaMode::Pa) {
            Ok(dma) => {
                assert!(dma.is_locked());
                let reader = PagemapReader::open_self().unwrap();
                for off in [0usize, 4095, 4096, 8191, 3 * 4096 - 1] {
                    let va = dma.mem.as_ptr() as u64 + off as u64;
                    assert_eq!(dma.iova(off), reader.phys_addr(va).unwrap(), "offset {off}");
                    assert_eq!(dma.pfn(off), reader.phys_addr(va).unwrap() / 4096);
                }
            }
            Err(UioError::PhysUnavailable { .. }) => {}
            // mlock refused (RLIMIT_MEMLOCK) is also an honest refusal for PA mode.
            Err(UioError::Sys { call: "mlock", .. }) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }

    #[test]
    fn frames_split_large_pages_into_4k_units() {
        let page = 16384u64;
        let va = 0x10_0000u64;
        let file = tempfile::NamedTempFile::new().unwrap();
        for (i, pfn) in [(0u64, 100u64), (1, 7)] {
            let raw = (1u64 << 63) | pfn;
            file.as_file()
                .write_all_at(&raw.to_le_bytes(), ((va / page) + i) * 8)
                .unwrap();
        }
        let reader = PagemapReader::open(file.path(), page).unwrap();
        let frames = frames_4k(&reader, va, 2 * page).unwrap();
        assert_eq!(frames, vec![400, 401, 402, 403, 28, 29, 30, 31]);
        // Starting in the middle of a large page.
        let frames = frames_4k(&reader, va + 8192, 12288).unwrap();
        assert_eq!(frames, vec![402, 403, 28]);
    }
}
