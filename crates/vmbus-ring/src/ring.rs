//! One direction of a VMBus ring: a 4096-byte header page then the data area.
//!
//! Header words (u32, reached only through atomics): write index @0, read index @4,
//! interrupt mask @8, pending-send size @12, feature bits @64. Indices are byte offsets into the
//! data area; packets wrap at its end, so every copy here may be split in two.

use crate::error::RingError;
use crate::shared::SharedMem;

/// Size of the header page in front of the data area.
pub const HEADER_SIZE: usize = 4096;
/// Header offset of the producer's write index.
pub const WRITE_INDEX_OFFSET: usize = 0;
/// Header offset of the consumer's read index.
pub const READ_INDEX_OFFSET: usize = 4;
/// Header offset of the interrupt mask (set by the consumer: "do not signal me").
pub const INTERRUPT_MASK_OFFSET: usize = 8;
/// Header offset of the pending-send size (set by a blocked producer: bytes it needs).
pub const PENDING_SEND_SIZE_OFFSET: usize = 12;
/// Header offset of the feature bits.
pub const FEATURE_BITS_OFFSET: usize = 64;
/// Feature bit 0: the pending-send-size protocol is in use.
pub const FEATURE_PENDING_SEND_SIZE: u32 = 1;

/// One direction of a ring over shared memory (header page + data area).
#[derive(Clone, Debug)]
pub struct Ring {
    header: SharedMem,
    data: SharedMem,
    data_size: u32,
}

impl Ring {
    /// Wrap `mem`: 4096 header bytes followed by a data area whose size is a non-zero multiple of
    /// 4096 below 2^32.
    pub fn new(mem: SharedMem) -> Result<Ring, RingError> {
        let len = mem.len();
        let bad = RingError::BadSize { len };
        let data_len = len.checked_sub(HEADER_SIZE).ok_or(bad)?;
        if data_len == 0 || !data_len.is_multiple_of(4096) || u32::try_from(data_len).is_err() {
            return Err(bad);
        }
        let header = mem.subrange(0, HEADER_SIZE)?;
        for off in [
            WRITE_INDEX_OFFSET,
            READ_INDEX_OFFSET,
            INTERRUPT_MASK_OFFSET,
            PENDING_SEND_SIZE_OFFSET,
            FEATURE_BITS_OFFSET,
        ] {
            header.load_u32(off)?;
        }
        let data = mem.subrange(HEADER_SIZE, data_len)?;
        Ok(Ring {
            header,
            data,
            data_size: data_len as u32,
        })
    }

    fn load(&self, off: usize) -> u32 {
        // Offsets are constants checked (in bounds, aligned) by `new`.
        self.header
            .load_u32(off)
            .expect("ring header checked in Ring::new")
    }

    fn store(&self, off: usize, value: u32) {
        self.header
            .store_u32(off, value)
            .expect("ring header checked in Ring::new")
    }

    /// Size of the data area in bytes.
    pub fn data_size(&self) -> u32 {
        self.data_size
    }

    /// The producer's write index as stored (unvalidated).
    pub fn write_index(&self) -> u32 {
        self.load(WRITE_INDEX_OFFSET)
    }

    /// Store the write index (release). Normally only [`RingWriter`](crate::RingWriter) does this.
    pub fn set_write_index(&self, value: u32) {
        self.store(WRITE_INDEX_OFFSET, value)
    }

    /// The consumer's read index as stored (unvalidated).
    pub fn read_index(&self) -> u32 {
        self.load(READ_INDEX_OFFSET)
    }

    /// Store the read index (release). Normally only [`RingReader`](crate::RingReader) does this.
    pub fn set_read_index(&self, value: u32) {
        self.store(READ_INDEX_OFFSET, value)
    }

    /// The consumer's interrupt mask (non-zero: the producer must not signal).
    pub fn interrupt_mask(&self) -> u32 {
        self.load(INTERRUPT_MASK_OFFSET)
    }

    /// Set (1) or clear (0) the interrupt mask, followed by a full fence so that a re-check of
    /// the indices afterwards cannot be ordered before it.
    pub fn set_interrupt_mask(&self, masked: bool) {
        self.store(INTERRUPT_MASK_OFFSET, masked as u32);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes a blocked producer waits for (0: not waiting).
    pub fn pending_send_size(&self) -> u32 {
        self.load(PENDING_SEND_SIZE_OFFSET)
    }

    /// Set the pending-send size (followed by a full fence).
    pub fn set_pending_send_size(&self, bytes: u32) {
        self.store(PENDING_SEND_SIZE_OFFSET, bytes);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Feature bits (bit 0: pending-send size supported).
    pub fn feature_bits(&self) -> u32 {
        self.load(FEATURE_BITS_OFFSET)
    }

    /// Store the feature bits.
    pub fn set_feature_bits(&self, bits: u32) {
        self.store(FEATURE_BITS_OFFSET, bits)
    }

    /// The whole data area (for tests and peers that inspect raw bytes).
    pub fn data(&self) -> &SharedMem {
        &self.data
    }

    /// True when `index` is a valid cursor: inside the data area and 8-byte aligned.
    pub(crate) fn index_ok(&self, index: u32) -> bool {
        index < self.data_size && index.is_multiple_of(8)
    }

    /// Bytes from `from` forward to `to`, modulo the data size. Meaningful only for valid
    /// indices; wrapping arithmetic keeps any other input from panicking.
    pub(crate) fn distance(&self, from: u32, to: u32) -> u32 {
        if to >= from {
            to - from
        } else {
            self.data_size.wrapping_sub(from).wrapping_add(to)
        }
    }

    /// `index + len` modulo the data size (`index < size`, `len <= size`).
    pub(crate) fn advance(&self, index: u32, len: u32) -> u32 {
        let end = index as u64 + len as u64;
        let size = self.data_size as u64;
        (if end >= size { end - size } else { end }) as u32
    }

    /// Copy `dst.len()` bytes starting at data offset `at`, wrapping at the end.
    /// Callers guarantee `at < data_size` and `dst.len() <= data_size`.
    pub(crate) fn copy_out(&self, at: u32, dst: &mut [u8]) {
        let first = ((self.data_size - at) as usize).min(dst.len());
        let (a, b) = dst.split_at_mut(first);
        self.data
            .read(at as usize, a)
            .expect("ring copy inside the data area");
        if !b.is_empty() {
            self.data
                .read(0, b)
                .expect("ring copy inside the data area");
        }
    }

    /// Copy `src` to data offset `at`, wrapping at the end; returns the offset after it.
    /// Callers guarantee `at < data_size` and `src.len() <= data_size`.
    pub(crate) fn copy_in(&self, at: u32, src: &[u8]) -> u32 {
        let first = ((self.data_size - at) as usize).min(src.len());
        let (a, b) = src.split_at(first);
        self.data
            .write(at as usize, a)
            .expect("ring copy inside the data area");
        if !b.is_empty() {
            self.data
                .write(0, b)
                .expect("ring copy inside the data area");
        }
        self.advance(at, src.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_validated() {
        for bad in [0usize, 4096, 4096 + 8, 4096 + 4095, 4096 * 2 + 1] {
            assert!(
                matches!(
                    Ring::new(SharedMem::alloc(bad)),
                    Err(RingError::BadSize { .. })
                ),
                "{bad}"
            );
        }
        let ring = Ring::new(SharedMem::alloc(4096 * 3)).unwrap();
        assert_eq!(ring.data_size(), 8192);
    }

    #[test]
    fn header_fields_live_at_their_offsets() {
        let mem = SharedMem::alloc(8192);
        let ring = Ring::new(mem.clone()).unwrap();
        ring.set_write_index(0x11);
        ring.set_read_index(0x22);
        ring.set_interrupt_mask(true);
        ring.set_pending_send_size(0x44);
        ring.set_feature_bits(1);
        let words: Vec<u32> = [0, 4, 8, 12, 64]
            .iter()
            .map(|&o| mem.load_u32(o).unwrap())
            .collect();
        assert_eq!(words, [0x11, 0x22, 1, 0x44, 1]);
    }

    #[test]
    fn copies_wrap_at_the_end_of_the_data_area() {
        let mem = SharedMem::alloc(8192);
        let ring = Ring::new(mem.clone()).unwrap();
        let src: Vec<u8> = (0..24u8).collect();
        assert_eq!(ring.copy_in(4096 - 8, &src), 16);
        let mut tail = [0u8; 8];
        mem.read(8192 - 8, &mut tail).unwrap();
        assert_eq!(&tail, &src[..8]);
        let mut head = [0u8; 16];
        mem.read(4096, &mut head).unwrap();
        assert_eq!(&head, &src[8..]);
        let mut back = [0u8; 24];
        ring.copy_out(4096 - 8, &mut back);
        assert_eq!(&back[..], &src[..]);
    }
}
