//! Virtual → physical translation through a pagemap file (`/proc/self/pagemap`): one
//! little-endian u64 per virtual page at `(va / page_size) * 8`; bit 63 = present, bit 62 =
//! swapped, bits 0–54 = PFN. Without CAP_SYS_ADMIN the kernel reports PFN 0 for present pages.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::UioError;
use crate::mapping::page_size;

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const PFN_MASK: u64 = (1 << 55) - 1;

/// What one pagemap entry says about its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// In memory at this page frame (0 when hidden from the caller).
    Present {
        /// Page frame number, in units of the system page size.
        pfn: u64,
    },
    /// Swapped out.
    Swapped,
    /// Never touched / not mapped.
    NotPresent,
}

/// Decode a raw entry.
pub fn decode_entry(raw: u64) -> PageState {
    if raw & PRESENT != 0 {
        PageState::Present {
            pfn: raw & PFN_MASK,
        }
    } else if raw & SWAPPED != 0 {
        PageState::Swapped
    } else {
        PageState::NotPresent
    }
}

/// The PFN of a present page, `None` when swapped or not present (PFN 0 = hidden is returned as is).
pub fn parse_entry(raw: u64) -> Option<u64> {
    match decode_entry(raw) {
        PageState::Present { pfn } => Some(pfn),
        _ => None,
    }
}

/// Reads entries of a pagemap file.
#[derive(Debug)]
pub struct PagemapReader {
    file: File,
    path: PathBuf,
    page_size: u64,
}

impl PagemapReader {
    /// Open any pagemap-format file whose entries describe pages of `page_size` bytes.
    pub fn open(path: &Path, page_size: u64) -> Result<Self, UioError> {
        if page_size == 0 || !page_size.is_power_of_two() {
            return Err(UioError::Invalid(format!(
                "page size {page_size} is not a power of two"
            )));
        }
        let file = File::open(path).map_err(|e| UioError::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            page_size,
        })
    }

    /// `/proc/self/pagemap` with the system page size.
    pub fn open_self() -> Result<Self, UioError> {
        Self::open(Path::new("/proc/self/pagemap"), page_size() as u64)
    }

    /// Page size the entries describe.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The raw entry for the page holding `va`.
    pub fn entry(&self, va: u64) -> Result<u64, UioError> {
        let mut buf = [0u8; 8];
        let offset = (va / self.page_size) * 8;
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| UioError::io(&self.path, e))?;
        Ok(u64::from_le_bytes(buf))
    }

    /// The page frame (in units of [`Self::page_size`]) of the page holding `va`.
    pub fn pfn(&self, va: u64) -> Result<u64, UioError> {
        let not_present = |state| UioError::PageNotPresent {
            path: self.path.clone(),
            va,
            state,
        };
        match decode_entry(self.entry(va)?) {
            PageState::Present { pfn: 0 } => Err(UioError::PhysUnavailable {
                path: self.path.clone(),
            }),
            PageState::Present { pfn } => Ok(pfn),
            PageState::Swapped => Err(not_present("swapped out")),
            PageState::NotPresent => Err(not_present("not present")),
        }
    }

    /// Physical address of `va` (frame × page size + offset in page).
    pub fn phys_addr(&self, va: u64) -> Result<u64, UioError> {
        Ok(self.pfn(va)? * self.page_size + va % self.page_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse fake pagemap with `entries` at the slots of the given virtual addresses.
    fn fake(entries: &[(u64, u64)], page: u64) -> (tempfile::NamedTempFile, PagemapReader) {
        let file = tempfile::NamedTempFile::new().unwrap();
        for (va, raw) in entries {
            file.as_file()
                .write_all_at(&raw.to_le_bytes(), (va / page) * 8)
                .unwrap();
        }
        let reader = PagemapReader::open(file.path(), page).unwrap();
        (file, reader)
    }

    #[test]
    fn entries_decode() {
        assert_eq!(
            decode_entry(PRESENT | 0x1234),
            PageState::Present { pfn: 0x1234 }
        );
        // Flag bits 55..=61 are not part of the PFN.
        assert_eq!(parse_entry(PRESENT | (0x7f << 55) | 42), Some(42));
        assert_eq!(parse_entry(PRESENT | PFN_MASK), Some(PFN_MASK));
        assert_eq!(decode_entry(SWAPPED | 0x55), PageState::Swapped);
        assert_eq!(parse_entry(SWAPPED | 0x55), None);
        assert_eq!(parse_entry(0), None);
        assert_eq!(parse_entry(PRESENT), Some(0));
    }

    #[test]
    fn fake_pagemap_translates_addresses() {
        let va_a = 0x7f12_3456_7000u64;
        let va_b = va_a + 0x1000;
        let va_swapped = va_a + 0x5000;
        let va_hidden = va_a + 0x9000;
        let (_f, r) = fake(
            &[
                (va_a, PRESENT | 0xabcde),
                (va_b, PRESENT | (1 << 61) | 0x42),
                (va_swapped, SWAPPED | 0x77),
                (va_hidden, PRESENT),
            ],
            4096,
        );
        assert_eq!(r.entry(va_a + 0xfff).unwrap(), PRESENT | 0xabcde);
        assert_eq!(r.pfn(va_a + 17).unwrap(), 0xabcde);
        assert_eq!(r.phys_addr(va_a + 0x123).unwrap(), 0xabcde123);
        assert_eq!(r.phys_addr(va_b).unwrap(), 0x42000);
        // A hole in the sparse file reads as zero: not present.
        assert!(matches!(
            r.pfn(va_a + 0x2000),
            Err(UioError::PageNotPresent {
                state: "not present",
                ..
            })
        ));
        assert!(matches!(
            r.pfn(va_swapped),
            Err(UioError::PageNotPresent { state: "swapped out", va, .. }) if va == va_swapped
        ));
        let err = r.pfn(va_hidden).unwrap_err();
        assert!(
            err.to_string()
                .contains("physical addresses unavailable (need CAP_SYS_ADMIN)")
        );
        // Past the end of the file: an I/O error naming the file.
        let err = r.pfn(va_a + 0x100_0000).unwrap_err();
        assert!(
            matches!(&err, UioError::Io { path, .. } if path == _f.path()),
            "{err}"
        );
    }

    #[test]
    fn larger_pages_index_by_their_own_size() {
        let page = 65536;
        let va = 0x4000_0000u64;
        let (_f, r) = fake(&[(va, PRESENT | 3)], page);
        assert_eq!(r.pfn(va + 0xfffe).unwrap(), 3);
        assert_eq!(r.phys_addr(va + 0x1234).unwrap(), 3 * 65536 + 0x1234);
        assert!(PagemapReader::open(_f.path(), 3000).is_err());
    }

    #[test]
    fn own_pagemap_is_readable() {
        let r = PagemapReader::open_self().unwrap();
        let local = 5u64;
        let raw = r.entry(&local as *const u64 as u64).unwrap();
        // The stack page is in use, so it is present (its PFN may be hidden).
        assert!(parse_entry(raw).is_some(), "{raw:#x}");
    }
}
