//! The producer side. `try_write` copies a packet after a private cursor; `commit` publishes the
//! whole batch with one write-index store and tells the caller whether to signal the consumer:
//! never when the consumer set `interrupt_mask`, otherwise only when the ring was empty before.

use std::sync::atomic::{Ordering, fence};

use crate::error::{CorruptField, Corruption, WriteError};
use crate::packet::{
    DESCRIPTOR_SIZE, FLAG_COMPLETION_REQUESTED, GpaDirectHeader, KIND_HEADER_SIZE, OutgoingKind,
    OutgoingPacket, PacketDescriptor, TRAILER_SIZE, TransferPageHeader,
};
use crate::ring::Ring;
use zerocopy::IntoBytes;

/// Largest packet (header + payload, padded) a descriptor can describe: `len8` is a u16.
const MAX_LEN8_BYTES: u64 = u16::MAX as u64 * 8;

/// Single producer of one ring direction. Wrap it in a `Mutex` to share it between threads.
#[derive(Debug)]
pub struct RingWriter {
    ring: Ring,
    /// Write index as of the last commit (what the consumer can see).
    committed: u32,
    /// Write index after the packets written since (private).
    next: u32,
    /// Last read index loaded from the consumer; only ever a lower bound on its progress.
    cached_read: u32,
}

impl RingWriter {
    /// Producer over `ring`, continuing from the write index stored in its header. The stored
    /// value is validated on the first write.
    pub fn new(ring: Ring) -> Self {
        let w = ring.write_index();
        let r = ring.read_index();
        Self {
            ring,
            committed: w,
            next: w,
            cached_read: r,
        }
    }

    /// The ring this writer produces into.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Largest header + payload length (before padding) this ring accepts at all.
    pub fn max_packet_len(&self) -> u32 {
        // The ring never fills completely: free > total, so total <= size - 8.
        let by_ring = self.ring.data_size() as u64 - 2 * TRAILER_SIZE as u64;
        by_ring.min(MAX_LEN8_BYTES) as u32
    }

    fn load_read_index(&mut self) -> Result<u32, WriteError> {
        let r = self.ring.read_index();
        if !self.ring.index_ok(r) {
            return Err(Corruption::new(CorruptField::ReadIndex, self.next, r as u64).into());
        }
        self.cached_read = r;
        Ok(r)
    }

    fn check_own_index(&self) -> Result<(), WriteError> {
        if self.ring.index_ok(self.next) {
            Ok(())
        } else {
            Err(Corruption::new(CorruptField::WriteIndex, self.next, self.next as u64).into())
        }
    }

    /// Free bytes between the private cursor and read index `r` (0 if `r` is not a valid index,
    /// which forces a reload and validation of the peer's value).
    fn free(&self, r: u32) -> u32 {
        if !self.ring.index_ok(r) {
            return 0;
        }
        self.ring.data_size() - self.ring.distance(r, self.next)
    }

    /// Largest ring size (padded packet + trailer, see [`crate::packet::ring_size`]) that
    /// `try_write` would accept right now; 0 if the peer's read index is corrupt.
    pub fn available(&self) -> u32 {
        if self.check_own_index().is_err() {
            return 0;
        }
        // `free` returns 0 for an invalid read index.
        self.free(self.ring.read_index())
            .saturating_sub(TRAILER_SIZE as u32)
    }

    /// Copy `packet` into the ring after the last written packet. It becomes visible to the
    /// consumer only at [`commit`](Self::commit).
    pub fn try_write(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), WriteError> {
        let header_len = packet.kind.header_len();
        let len = header_len + packet.payload_len();
        let padded = len.div_ceil(8) * 8;
        let max = self.max_packet_len();
        if padded > max as u64 {
            return Err(WriteError::TooLarge {
                len: len.min(u32::MAX as u64) as u32,
                max,
            });
        }
        let total = padded as u32 + TRAILER_SIZE as u32;
        self.check_own_index()?;
        if self.free(self.cached_read) <= total {
            let r = self.load_read_index()?;
            if self.free(r) <= total {
                return Err(WriteError::Full { needed: total });
            }
        }

        let start = self.next;
        let desc = PacketDescriptor {
            packet_type: packet.kind.packet_type(),
            offset8: (header_len / 8) as u16,
            len8: (padded / 8) as u16,
            flags: if packet.completion_requested {
                FLAG_COMPLETION_REQUESTED
            } else {
                0
            },
            trans_id: packet.trans_id,
        };
        let mut head = [0u8; KIND_HEADER_SIZE];
        head[..DESCRIPTOR_SIZE].copy_from_slice(desc.as_bytes());
        let mut at = match packet.kind {
            OutgoingKind::InBand | OutgoingKind::Completion => {
                self.ring.copy_in(start, &head[..DESCRIPTOR_SIZE])
            }
            OutgoingKind::TransferPages { set_id, ranges } => {
                let sub = TransferPageHeader {
                    set_id,
                    sender_owns: 0,
                    reserved: 0,
                    count: ranges.len() as u32,
                };
                head[DESCRIPTOR_SIZE..].copy_from_slice(sub.as_bytes());
                let at = self.ring.copy_in(start, &head);
                self.ring.copy_in(at, ranges.as_bytes())
            }
            OutgoingKind::GpaDirect { ranges } => {
                let sub = GpaDirectHeader {
                    reserved: 0,
                    count: ranges.len() as u32,
                };
                head[DESCRIPTOR_SIZE..].copy_from_slice(sub.as_bytes());
                let at = self.ring.copy_in(start, &head);
                self.ring.copy_in(at, ranges.as_bytes())
            }
        };
        for piece in packet.payload {
            at = self.ring.copy_in(at, piece);
        }
        // Zero padding, then the trailer: u64 whose upper half is the packet's start offset.
        let pad = (padded - len) as usize;
        let mut tail = [0u8; 16];
        tail[pad..pad + 8].copy_from_slice(&((start as u64) << 32).to_le_bytes());
        self.next = self.ring.copy_in(at, &tail[..pad + 8]);
        Ok(())
    }

    /// Publish every packet written since the last commit with one write-index store.
    /// Returns true when the consumer must be signalled (protocol.md §1.2): after a full fence,
    /// false if its `interrupt_mask` is set, else true only if the ring was empty before this
    /// batch (old write index == read index). Returns false when nothing was written.
    pub fn commit(&mut self) -> bool {
        if self.next == self.committed {
            return false;
        }
        let old = self.committed;
        // Release: the packet bytes are visible before the index that covers them.
        self.ring.set_write_index(self.next);
        self.committed = self.next;
        fence(Ordering::SeqCst);
        if self.ring.interrupt_mask() != 0 {
            return false;
        }
        self.ring.read_index() == old
    }

    /// Forget packets written since the last commit.
    pub fn revert(&mut self) {
        self.next = self.committed;
    }

    /// Bytes written but not yet committed.
    pub fn uncommitted(&self) -> u32 {
        if self.ring.index_ok(self.committed) && self.ring.index_ok(self.next) {
            self.ring.distance(self.committed, self.next)
        } else {
            0
        }
    }

    /// Ask the consumer to signal once more than `needed` bytes are free (sets
    /// `pending_send_size`, then re-checks). Returns true if the room is already there, in which
    /// case the request has been withdrawn and the caller should retry instead of sleeping.
    /// Commit before calling this: the consumer only sees committed data.
    pub fn request_space(&mut self, needed: u32) -> Result<bool, WriteError> {
        self.ring.set_pending_send_size(needed);
        let r = self.load_read_index()?;
        self.check_own_index()?;
        if self.free(r) > needed {
            self.ring.set_pending_send_size(0);
            return Ok(true);
        }
        Ok(false)
    }

    /// Withdraw a [`request_space`](Self::request_space) (sets `pending_send_size` to 0).
    pub fn clear_space_request(&self) {
        self.ring.set_pending_send_size(0);
    }
}
