//! The consumer side. `read` copies the descriptor out, validates it, copies the whole packet
//! into the caller's scratch buffer and validates the sub-header there (no value is read twice);
//! `commit` publishes the batch with one read-index store and says whether a producer blocked on
//! `pending_send_size` must be woken.
//!
//! Flags: any bit other than bit 0 is rejected as corrupt (as OpenVMM does; DPDK ignores them).
//! No peer sets other bits, so one that does is not speaking this protocol.

use std::sync::atomic::{Ordering, fence};

use zerocopy::FromBytes;

use crate::error::{CorruptField, Corruption, ReadError};
use crate::packet::{
    DESCRIPTOR_SIZE, FLAG_COMPLETION_REQUESTED, GpaDirectHeader, GpaRanges, IncomingPacket,
    KIND_HEADER_SIZE, PacketDescriptor, PacketKind, TRAILER_SIZE, TYPE_COMPLETION, TYPE_GPA_DIRECT,
    TYPE_INBAND, TYPE_TRANSFER_PAGES, TransferPageHeader, TransferRanges,
};
use crate::ring::{FEATURE_PENDING_SEND_SIZE, Ring};

/// Single consumer of one ring direction.
#[derive(Debug)]
pub struct RingReader {
    ring: Ring,
    /// Read index as of the last commit (what the producer can see).
    committed: u32,
    /// Read index after the packets read since (private).
    next: u32,
    /// Last validated write index loaded from the producer.
    cached_write: u32,
}

impl RingReader {
    /// Consumer over `ring`, continuing from the read index stored in its header. The stored
    /// value is validated on the first read.
    pub fn new(ring: Ring) -> Self {
        let r = ring.read_index();
        Self {
            ring,
            committed: r,
            next: r,
            cached_write: r,
        }
    }

    /// The ring this reader consumes from.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    fn corrupt(&self, what: CorruptField, value: u64) -> ReadError {
        ReadError::Corrupt(Corruption::new(what, self.next, value))
    }

    fn load_write_index(&mut self) -> Result<u32, ReadError> {
        let w = self.ring.write_index();
        if !self.ring.index_ok(w) {
            return Err(self.corrupt(CorruptField::WriteIndex, w as u64));
        }
        self.cached_write = w;
        Ok(w)
    }

    /// Bytes published by the producer and not yet read (0 if either index is corrupt).
    pub fn bytes_available(&self) -> u32 {
        let w = self.ring.write_index();
        if !self.ring.index_ok(self.next) || !self.ring.index_ok(w) {
            return 0;
        }
        self.ring.distance(self.next, w)
    }

    /// Read the next packet into `scratch` (grown if too small, never shrunk) and return a view
    /// of it. The read index moves only at [`commit`](Self::commit).
    pub fn read<'b>(&mut self, scratch: &'b mut Vec<u8>) -> Result<IncomingPacket<'b>, ReadError> {
        if !self.ring.index_ok(self.next) {
            return Err(self.corrupt(CorruptField::ReadIndex, self.next as u64));
        }
        // The cached write index is a packet boundary the producer published; reload only when
        // we have caught up with it.
        let mut avail = 0;
        if self.ring.index_ok(self.cached_write) {
            avail = self.ring.distance(self.next, self.cached_write);
        }
        if avail == 0 {
            let w = self.load_write_index()?;
            avail = self.ring.distance(self.next, w);
            if avail == 0 {
                return Err(ReadError::Empty);
            }
        }
        if avail < (DESCRIPTOR_SIZE + TRAILER_SIZE) as u32 {
            return Err(self.corrupt(CorruptField::Truncated, avail as u64));
        }

        let mut raw = [0u8; DESCRIPTOR_SIZE];
        self.ring.copy_out(self.next, &mut raw);
        let desc = PacketDescriptor::read_from_bytes(&raw).expect("descriptor is 16 bytes");
        let ty = desc.packet_type;
        if !matches!(
            ty,
            TYPE_INBAND | TYPE_TRANSFER_PAGES | TYPE_GPA_DIRECT | TYPE_COMPLETION
        ) {
            return Err(self.corrupt(CorruptField::PacketType, ty as u64));
        }
        if desc.offset8 < 2 {
            return Err(self.corrupt(CorruptField::HeaderTooShort, desc.offset8 as u64));
        }
        if desc.offset8 > desc.len8 {
            return Err(self.corrupt(CorruptField::HeaderBeyondPacket, desc.offset8 as u64));
        }
        let len = desc.len8 as u32 * 8;
        if len + TRAILER_SIZE as u32 > avail {
            return Err(self.corrupt(CorruptField::PacketBeyondData, desc.len8 as u64));
        }
        if desc.flags & !FLAG_COMPLETION_REQUESTED != 0 {
            return Err(self.corrupt(CorruptField::Flags, desc.flags as u64));
        }
        let header_len = desc.offset8 as usize * 8;
        if matches!(ty, TYPE_TRANSFER_PAGES | TYPE_GPA_DIRECT) && header_len < KIND_HEADER_SIZE {
            return Err(self.corrupt(CorruptField::KindHeaderTooShort, desc.offset8 as u64));
        }

        let len = len as usize;
        if scratch.len() < len {
            scratch.resize(len, 0);
        }
        self.ring.copy_out(self.next, &mut scratch[..len]);
        let bytes = &scratch[..len];
        let payload = &bytes[header_len..];
        let kind = match ty {
            TYPE_INBAND => PacketKind::InBand { payload },
            TYPE_COMPLETION => PacketKind::Completion { payload },
            TYPE_TRANSFER_PAGES => {
                let (sub, rest) = TransferPageHeader::read_from_prefix(&bytes[DESCRIPTOR_SIZE..])
                    .expect("header length checked");
                let ranges = ranges_in(rest, header_len, sub.count, 8)
                    .ok_or_else(|| self.corrupt(CorruptField::RangeCount, sub.count as u64))?;
                PacketKind::TransferPages {
                    set_id: sub.set_id,
                    ranges: TransferRanges::new(ranges),
                    payload,
                }
            }
            _ => {
                let (sub, rest) = GpaDirectHeader::read_from_prefix(&bytes[DESCRIPTOR_SIZE..])
                    .expect("header length checked");
                if sub.count == 0 {
                    return Err(self.corrupt(CorruptField::GpaRangeCountZero, 0));
                }
                let ranges = ranges_in(rest, header_len, sub.count, 16)
                    .ok_or_else(|| self.corrupt(CorruptField::RangeCount, sub.count as u64))?;
                PacketKind::GpaDirect {
                    ranges: GpaRanges::new(ranges),
                    payload,
                }
            }
        };
        self.next = self.ring.advance(self.next, (len + TRAILER_SIZE) as u32);
        Ok(IncomingPacket {
            trans_id: desc.trans_id,
            completion_requested: desc.flags & FLAG_COMPLETION_REQUESTED != 0,
            kind,
        })
    }

    /// Publish the reads since the last commit with one read-index store. Returns true when the
    /// producer must be signalled: feature bit 0 is set, `pending_send_size` (low 3 bits masked
    /// off: some peers write size − 1) is non-zero, and this batch moved the free space from
    /// `free <= pending` to `free > pending`.
    pub fn commit(&mut self) -> bool {
        if self.next == self.committed {
            return false;
        }
        let consumed = self.ring.distance(self.committed, self.next);
        self.ring.set_read_index(self.next);
        self.committed = self.next;
        fence(Ordering::SeqCst);
        if self.ring.feature_bits() & FEATURE_PENDING_SEND_SIZE == 0 {
            return false;
        }
        let pending = self.ring.pending_send_size() & !7;
        if pending == 0 {
            return false;
        }
        let w = self.ring.write_index();
        if !self.ring.index_ok(w) {
            return false;
        }
        let free_after = self.ring.data_size() - self.ring.distance(self.next, w);
        let free_before = free_after.saturating_sub(consumed);
        free_before <= pending && pending < free_after
    }

    /// Forget reads since the last commit: they will be read again.
    pub fn revert(&mut self) {
        self.next = self.committed;
    }
}

/// The `count` ranges of `size` bytes at the start of `rest` (the bytes after the 24-byte
/// kind header), if they fit inside the `header_len`-byte header.
fn ranges_in(rest: &[u8], header_len: usize, count: u32, size: usize) -> Option<&[u8]> {
    let bytes = (count as usize).checked_mul(size)?;
    if KIND_HEADER_SIZE.checked_add(bytes)? > header_len {
        return None;
    }
    rest.get(..bytes)
}
